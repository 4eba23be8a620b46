//! WindowAggregate: the second (final) phase of an aggregation; each
//! instance owns the groups whose routing hash points to it.
//!
//! Input: partial states from every pipeline instance, and their
//! watermarks.
//! Output: result rows to [`Materialize`]: on every change of a group (the
//! default), or only when its window fires (`EMIT ON WINDOW CLOSE`).
//! State: the state table `agg` of (window end, group key) -> accumulator
//! state, both encoded in Arrow's row format. A change costs O(changed
//! groups): their states are decoded, merged with the incoming partial
//! states by DataFusion's accumulators, and encoded again.
//! Watermarks: the minimum over its inputs that are not idle; a window fires
//! when the watermark reaches its end - 1 ms, and its state is removed.
//! Checkpoint: the state table's changes since the last checkpoint, its
//! watermark, and its view shard.
//!
//! A partial state for a window that has already fired can only come from a
//! split that was idle and came back; it is counted as late and dropped.
//!
//! [`Materialize`]: crate::dataflow::materialize::Materialize

use std::sync::atomic::Ordering;
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{DataType, TimestampMillisecondType};
use arrow::row::{RowConverter, Rows, SortField};
use datafusion::logical_expr::GroupsAccumulator;

use crate::dataflow::checkpoint::save_counters;
use crate::dataflow::materialize::Materialize;
use crate::dataflow::physical::PhysicalAggregate;
use crate::dataflow::plan::EmitMode;
use crate::dataflow::window::has_fired;
use crate::error::{Error, Result};
use crate::metrics::{JobMetrics, Part};
use crate::state::checkpoint::JobKeys;
use crate::state::table::{StateTable, WindowId, WindowRows};
use crate::state::Writes;

/// Rows per result batch when a large window fires.
const FIRE_BATCH_ROWS: usize = 8192;

/// The window id of groups that never fire (aggregations without window).
const NO_WINDOW: WindowId = WindowId::MAX;

pub struct WindowAggregate {
    agg: Arc<PhysicalAggregate>,
    emit: EmitMode,
    table: StateTable,
    keys: RowConverter,
    states: RowConverter,
    accumulators: Vec<Box<dyn GroupsAccumulator>>,
    watermark: i64,
    out: Materialize,
    metrics: Arc<JobMetrics>,
    identity: Vec<usize>,
}

impl WindowAggregate {
    pub fn new(
        agg: Arc<PhysicalAggregate>,
        emit: EmitMode,
        table: StateTable,
        out: Materialize,
        metrics: Arc<JobMetrics>,
    ) -> Result<Self> {
        let keys = RowConverter::new(
            agg.group_schema
                .fields()
                .iter()
                .map(|f| SortField::new(f.data_type().clone()))
                .collect(),
        )?;
        let state_fields: Vec<SortField> = agg
            .partial_schema
            .fields()
            .iter()
            .skip(agg.group_count())
            .map(|f| SortField::new(f.data_type().clone()))
            .collect();
        let states = RowConverter::new(state_fields).map_err(|e| {
            Error::not_supported(format!("an aggregate's state cannot be stored: {e}"))
        })?;
        Ok(WindowAggregate {
            accumulators: agg.accumulators()?,
            agg,
            emit,
            table,
            keys,
            states,
            watermark: i64::MIN,
            out,
            metrics,
            identity: Vec::new(),
        })
    }

    /// Goes on from the watermark a checkpoint saved (its state table was
    /// opened from the same checkpoint).
    pub fn restore_watermark(&mut self, watermark: i64) {
        self.watermark = watermark;
        if watermark != i64::MIN {
            self.metrics.advance_watermark(watermark);
        }
    }

    /// Saves what changed since the last checkpoint.
    pub fn checkpoint(
        &mut self,
        keys: &JobKeys,
        instance: usize,
        writes: &mut Writes,
    ) -> Result<()> {
        self.table.checkpoint(writes);
        writes.put(
            keys.aggregate_watermark(instance),
            self.watermark.to_be_bytes(),
        );
        let counted = self.out.counters().snapshot();
        save_counters(&self.metrics, Part::Final(instance), counted, keys, writes);
        self.out.checkpoint(writes)
    }

    /// The memory of its state or of its view shard, whichever is fuller,
    /// as a share of its cache.
    pub fn cache_use(&self) -> f64 {
        self.table.cache_use().max(self.out.cache_use())
    }

    /// Its last checkpoint is committed: what it wrote may leave memory.
    pub fn committed(&mut self) -> Result<()> {
        self.table.committed();
        self.out.committed()
    }

    /// The window (end) of each row of partial states.
    fn windows_of(&self, batch: &RecordBatch) -> Result<Option<Vec<WindowId>>> {
        let Some(fire) = self.agg.fire_time else {
            return Ok(None);
        };
        let column = batch.column(fire.group_index);
        if !matches!(column.data_type(), DataType::Timestamp(..)) {
            return Err(Error::internal(format!(
                "window column of type {}",
                column.data_type()
            )));
        }
        let ms = arrow::compute::cast(
            column,
            &DataType::Timestamp(arrow::datatypes::TimeUnit::Millisecond, None),
        )?;
        let ms = ms.as_primitive::<TimestampMillisecondType>();
        Ok(Some(ms.values().iter().map(|v| v + fire.add_ms).collect()))
    }

    fn identity(&mut self, n: usize) -> &[usize] {
        if self.identity.len() < n {
            self.identity = (0..n).collect();
        }
        &self.identity[..n]
    }

    /// Merges partial states from a pipeline instance.
    pub fn on_partial(&mut self, batch: RecordBatch) -> Result<()> {
        let (batch, windows) = match self.windows_of(&batch)? {
            Some(w) => self.drop_fired(batch, w)?,
            None => {
                let n = batch.num_rows();
                (batch, vec![NO_WINDOW; n])
            }
        };
        let n = batch.num_rows();
        if n == 0 {
            return Ok(());
        }
        let groups = self.agg.group_count();
        let group_cols: Vec<ArrayRef> = batch.columns()[..groups].to_vec();
        let incoming: Vec<ArrayRef> = batch.columns()[groups..].to_vec();
        let keys = self.keys.convert_columns(&group_cols)?;

        // Merge the incoming states, then the stored ones, group i = row i.
        let identity: Vec<usize> = self.identity(n).to_vec();
        self.agg
            .merge(&mut self.accumulators, &incoming, &identity, n)?;
        self.table.fetch(
            windows
                .iter()
                .enumerate()
                .map(|(i, w)| (*w, keys.row(i).data())),
        )?;
        let parser = self.states.parser();
        let mut stored_rows = Vec::new();
        let mut stored_groups = Vec::new();
        for (i, window) in windows.iter().enumerate() {
            if let Some(bytes) = self.table.get(*window, keys.row(i).as_ref()) {
                stored_rows.push(parser.parse(bytes));
                stored_groups.push(i);
            }
        }
        if !stored_rows.is_empty() {
            let stored = self.states.convert_rows(stored_rows)?;
            self.agg
                .merge(&mut self.accumulators, &stored, &stored_groups, n)?;
        }
        let merged = self.agg.take_states(&mut self.accumulators)?;
        let encoded = self.states.convert_columns(&merged)?;
        for (i, window) in windows.iter().enumerate() {
            self.table
                .put(*window, keys.row(i).as_ref(), encoded.row(i).as_ref());
        }
        if self.emit == EmitMode::OnUpdate {
            self.agg
                .merge(&mut self.accumulators, &merged, &identity, n)?;
            let results = self.agg.take_results(&mut self.accumulators)?;
            self.emit_rows(&keys, group_cols, results)?;
        }
        Ok(())
    }

    /// Drops partial states of windows that have already fired.
    fn drop_fired(
        &self,
        batch: RecordBatch,
        windows: Vec<WindowId>,
    ) -> Result<(RecordBatch, Vec<WindowId>)> {
        let late = windows
            .iter()
            .filter(|w| has_fired(**w, self.watermark))
            .count();
        if late == 0 {
            return Ok((batch, windows));
        }
        self.out
            .counters()
            .late_rows
            .fetch_add(late as u64, Ordering::Relaxed);
        let keep: arrow::array::BooleanArray = windows
            .iter()
            .map(|w| Some(!has_fired(*w, self.watermark)))
            .collect();
        let kept = windows
            .into_iter()
            .filter(|w| !has_fired(*w, self.watermark))
            .collect();
        Ok((arrow::compute::filter_record_batch(&batch, &keep)?, kept))
    }

    fn emit_rows(
        &self,
        keys: &Rows,
        group_cols: Vec<ArrayRef>,
        results: Vec<ArrayRef>,
    ) -> Result<()> {
        let mut columns = group_cols;
        columns.extend(results);
        let batch = RecordBatch::try_new(self.agg.output_schema.clone(), columns)?;
        let key_refs: Vec<&[u8]> = (0..keys.num_rows()).map(|i| keys.row(i).data()).collect();
        self.out.upsert(&key_refs, batch)
    }

    /// Advances the watermark and fires the windows it completes.
    pub fn on_watermark(&mut self, watermark: i64) -> Result<()> {
        if watermark <= self.watermark {
            return Ok(());
        }
        self.watermark = watermark;
        self.metrics.advance_watermark(watermark);
        if self.agg.fire_time.is_none() {
            return Ok(());
        }
        // Window [s, e) fires when wm >= e - 1, i.e. e <= wm + 1.
        for window in self.table.windows_up_to(watermark.saturating_add(1)) {
            let rows = self.table.take_window(window)?;
            if self.emit == EmitMode::OnWindowClose {
                self.fire(rows)?;
            }
        }
        Ok(())
    }

    /// Emits the final rows of a fired window.
    fn fire(&mut self, rows: WindowRows) -> Result<()> {
        for chunk in rows.chunks(FIRE_BATCH_ROWS) {
            let n = chunk.len();
            let key_parser = self.keys.parser();
            let group_cols = self
                .keys
                .convert_rows(chunk.iter().map(|(k, _)| key_parser.parse(k)))?;
            let state_parser = self.states.parser();
            let states = self
                .states
                .convert_rows(chunk.iter().map(|(_, v)| state_parser.parse(v)))?;
            let identity: Vec<usize> = self.identity(n).to_vec();
            self.agg
                .merge(&mut self.accumulators, &states, &identity, n)?;
            let results = self.agg.take_results(&mut self.accumulators)?;
            let keys = self.keys.convert_columns(&group_cols)?;
            self.emit_rows(&keys, group_cols, results)?;
        }
        Ok(())
    }
}
