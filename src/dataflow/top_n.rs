//! TopN: the first N rows of each partition by an order, each with its row
//! number (`ROW_NUMBER() OVER (PARTITION BY p ORDER BY o)` kept while at
//! most N). Deduplication is its N = 1.
//!
//! Input: rows (an append-only stream), routed by their partition columns,
//! so each instance owns its partitions.
//! Output: upserts of the view's rows keyed by partition and row number:
//! a row that enters at place r moves the rows after it one place down, so
//! places r..N of its partition are upserted (the row pushed past N simply
//! stops being any place's row). Each batch's changes go out together:
//! a partition changed by several rows of a batch is upserted once.
//! State: each partition's first N rows, as one value of a state table
//! (see `state::table`): so state larger than memory spills to the store.
//! A row that cannot enter (its partition is full, and it does not sort
//! before the last) costs a look at that value and nothing more.
//! Ties: rows with equal order values keep their arrival order, in the
//! direction of the first ORDER BY key: with `ORDER BY ts DESC` the later
//! of two equal rows comes first (keep last), ascending the earlier (keep
//! first), as Flink's deduplication does.
//! Watermarks: the view's rows have no time attribute; but partitions of
//! a window (partitioned by `window_start` or `window_end`) go once the
//! watermark has passed the window's end: no row comes for them any more
//! (rows late for their window are dropped before), so the state of a
//! top-N per window stays as large as the windows open at once.
//! Checkpoint: the state table's changes, its arrival counter, and the
//! view shard.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, UInt64Array};
use arrow::compute::SortOptions;
use arrow::datatypes::SchemaRef;
use arrow::row::{RowConverter, Rows, SortField};
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::ExprSchemable;
use datafusion::physical_expr::PhysicalExpr;

use crate::dataflow::checkpoint::save_counters;
use crate::dataflow::materialize::Materialize;
use crate::dataflow::physical::{evaluate_all, millis, per_row_on_error, physical_expr};
use crate::dataflow::plan::{FireTime, RankPlan};
use crate::dataflow::window::has_fired;
use crate::error::{Error, Result};
use crate::metrics::{JobMetrics, Part};
use crate::state::checkpoint::JobKeys;
use crate::state::table::{StateTable, WindowId};
use crate::state::Writes;

/// The state table's window of partitions that never expire.
const PARTITIONS: WindowId = i64::MAX;
/// The window holding the arrival counter.
const COUNTER: WindowId = i64::MIN;
const COUNTER_KEY: &[u8] = b"arrivals";

/// The physical form of a [`RankPlan`], shared by its instances.
pub struct PhysicalRank {
    /// Over the rows entering.
    pub partition: Vec<Arc<dyn PhysicalExpr>>,
    order: Vec<Arc<dyn PhysicalExpr>>,
    order_fields: Vec<SortField>,
    /// Whether the first order key is descending (ties: later first).
    descending: bool,
    limit: usize,
    input: SchemaRef,
    output: SchemaRef,
    key: Vec<usize>,
    window_end: Option<FireTime>,
}

impl PhysicalRank {
    pub fn new(state: &SessionState, plan: &RankPlan) -> Result<Self> {
        let input_schema = Arc::new(plan.input.as_arrow().clone());
        let partition = plan
            .partition
            .iter()
            .map(|e| physical_expr(state, e, &plan.input))
            .collect::<Result<Vec<_>>>()?;
        let mut order = Vec::new();
        let mut order_fields = Vec::new();
        for sort in &plan.order {
            let data_type = sort.expr.get_type(&plan.input)?;
            order.push(physical_expr(state, &sort.expr, &plan.input)?);
            order_fields.push(SortField::new_with_options(
                data_type,
                SortOptions {
                    descending: !sort.asc,
                    nulls_first: sort.nulls_first,
                },
            ));
        }
        Ok(PhysicalRank {
            partition,
            order,
            order_fields,
            descending: plan.order.first().is_some_and(|s| !s.asc),
            limit: plan.limit,
            input: input_schema,
            output: Arc::new(plan.output.as_arrow().clone()),
            key: plan.key.clone(),
            window_end: plan.window_end,
        })
    }
}

/// The entries of a partition's value: (sort key, row), in order. A value
/// is each entry's two lengths (u32, little endian) and bytes.
fn entries(value: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    let mut rest = value;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut take = || {
            let (len, tail) = rest.split_at(4);
            let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
            let (bytes, tail) = tail.split_at(len);
            rest = tail;
            bytes
        };
        let sort = take();
        let row = take();
        Some((sort, row))
    })
}

fn push_entry(value: &mut Vec<u8>, sort: &[u8], row: &[u8]) {
    for bytes in [sort, row] {
        value.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        value.extend_from_slice(bytes);
    }
}

/// A row of a partition: its sort key (order values, then arrival) and
/// the row, in Arrow's row format.
type Entry = (Box<[u8]>, Box<[u8]>);

/// A partition changed by the current batch.
struct Changed {
    /// Its entries, at most the limit, in order.
    entries: Vec<Entry>,
    /// The first place whose row changed.
    from: usize,
    window: WindowId,
}

pub struct TopN {
    rank: Arc<PhysicalRank>,
    table: StateTable,
    partitions: RowConverter,
    orders: RowConverter,
    rows: RowConverter,
    keys: RowConverter,
    /// Rows taken so far (their arrival order breaks ties).
    arrivals: u64,
    watermark: i64,
    out: Materialize,
    metrics: Arc<JobMetrics>,
}

impl TopN {
    pub fn new(
        rank: Arc<PhysicalRank>,
        table: StateTable,
        out: Materialize,
        metrics: Arc<JobMetrics>,
    ) -> Result<Self> {
        let sort_fields = |schema: &SchemaRef, columns: &mut dyn Iterator<Item = usize>| {
            columns
                .map(|i| SortField::new(schema.field(i).data_type().clone()))
                .collect::<Vec<_>>()
        };
        let partition_types: Vec<SortField> = rank
            .partition
            .iter()
            .map(|e| Ok(SortField::new(e.data_type(&rank.input)?)))
            .collect::<Result<_>>()?;
        let rows = RowConverter::new(sort_fields(
            &rank.input,
            &mut (0..rank.input.fields().len()),
        ))
        .map_err(|e| Error::not_supported(format!("these rows cannot be kept in a top-N: {e}")))?;
        let keys = RowConverter::new(sort_fields(&rank.output, &mut rank.key.iter().copied()))?;
        let mut top = TopN {
            partitions: RowConverter::new(partition_types)?,
            orders: RowConverter::new(rank.order_fields.clone())?,
            rows,
            keys,
            rank,
            table,
            arrivals: 0,
            watermark: i64::MIN,
            out,
            metrics,
        };
        top.table.fetch(std::iter::once((COUNTER, COUNTER_KEY)))?;
        if let Some(bytes) = top.table.get(COUNTER, COUNTER_KEY) {
            top.arrivals = u64::from_le_bytes(
                bytes
                    .try_into()
                    .map_err(|_| Error::internal("a top-N's arrival counter is damaged"))?,
            );
        }
        Ok(top)
    }

    /// Goes on from the watermark a checkpoint saved.
    pub fn restore_watermark(&mut self, watermark: i64) {
        self.watermark = watermark;
        if watermark != i64::MIN {
            self.metrics.advance_watermark(watermark);
        }
    }

    /// Advances the watermark; the partitions of windows it closes go.
    pub fn on_watermark(&mut self, watermark: i64) -> Result<()> {
        if watermark <= self.watermark {
            return Ok(());
        }
        self.watermark = watermark;
        self.metrics.advance_watermark(watermark);
        if self.rank.window_end.is_some() {
            for window in self.table.windows_up_to(watermark.saturating_add(1)) {
                if window != COUNTER && has_fired(window, watermark) {
                    self.table.take_window(window)?;
                }
            }
        }
        Ok(())
    }

    /// Takes a batch of rows of this instance's partitions.
    pub fn on_rows(&mut self, batch: RecordBatch) -> Result<()> {
        // A row whose order cannot be evaluated becomes a dead letter.
        let (parts, bad) = per_row_on_error(&batch, |b| {
            Ok((b.clone(), evaluate_all(&self.rank.order, b)?))
        })?;
        for (row, error) in bad {
            self.out.dead_letter(&row, error);
        }
        for (batch, order) in parts {
            self.take(&batch, &order)?;
        }
        Ok(())
    }

    fn take(&mut self, batch: &RecordBatch, order: &[ArrayRef]) -> Result<()> {
        let n = batch.num_rows();
        if n == 0 || self.rank.limit == 0 {
            return Ok(());
        }
        let partition_cols = evaluate_all(&self.rank.partition, batch)?;
        let partitions = if partition_cols.is_empty() {
            None
        } else {
            Some(self.partitions.convert_columns(&partition_cols)?)
        };
        let partition = |i: usize| -> &[u8] {
            match &partitions {
                Some(rows) => rows.row(i).data(),
                None => &[],
            }
        };
        // Each row's window: its partition's state goes once the
        // watermark has passed the window's end.
        let windows: Vec<WindowId> = match self.rank.window_end {
            Some(end) => millis(batch.column(end.group_index))?
                .iter()
                .map(|t| t.saturating_add(end.add_ms))
                .collect(),
            None => vec![PARTITIONS; n],
        };
        let orders = self.orders.convert_columns(order)?;
        let rows = self.rows.convert_columns(batch.columns())?;
        self.table
            .fetch((0..n).map(|i| (windows[i], partition(i))))?;
        let limit = self.rank.limit;
        let mut changed: HashMap<Box<[u8]>, Changed> = HashMap::new();
        let mut sort = Vec::new();
        for (i, &window) in windows.iter().enumerate() {
            let arrival = self.arrivals;
            self.arrivals += 1;
            sort.clear();
            sort.extend_from_slice(orders.row(i).data());
            let tie = if self.rank.descending {
                !arrival
            } else {
                arrival
            };
            sort.extend_from_slice(&tie.to_be_bytes());
            let key = partition(i);
            if has_fired(window, self.watermark) {
                // Its window has closed (rows late for it are dropped
                // before; this is one more defense).
                continue;
            }
            let state = match changed.get_mut(key) {
                Some(state) => state,
                None => {
                    let stored = self.table.get(window, key);
                    // A full partition whose last row sorts before this one:
                    // nothing changes.
                    if let Some(value) = stored {
                        let mut count = 0;
                        let mut last: &[u8] = &[];
                        for (s, _) in entries(value) {
                            count += 1;
                            last = s;
                        }
                        if count >= limit && sort.as_slice() > last {
                            continue;
                        }
                    }
                    let entries = stored
                        .map(|value| {
                            entries(value)
                                .map(|(s, r)| (Box::from(s), Box::from(r)))
                                .collect()
                        })
                        .unwrap_or_default();
                    changed.entry(Box::from(key)).or_insert(Changed {
                        entries,
                        from: usize::MAX,
                        window,
                    })
                }
            };
            let place = state
                .entries
                .partition_point(|(s, _)| s.as_ref() < sort.as_slice());
            if place >= limit {
                continue;
            }
            state.entries.insert(
                place,
                (Box::from(sort.as_slice()), Box::from(rows.row(i).data())),
            );
            state.entries.truncate(limit);
            state.from = state.from.min(place);
        }
        self.emit(changed)
    }

    /// Saves the changed partitions and upserts their changed places.
    fn emit(&mut self, changed: HashMap<Box<[u8]>, Changed>) -> Result<()> {
        let parser = self.rows.parser();
        let mut shown = Vec::new();
        let mut numbers: Vec<u64> = Vec::new();
        let mut value = Vec::new();
        for (key, state) in &changed {
            if state.from == usize::MAX {
                continue;
            }
            value.clear();
            for (s, r) in &state.entries {
                push_entry(&mut value, s, r);
            }
            self.table.put(state.window, key, &value);
            for (place, (_, row)) in state.entries.iter().enumerate().skip(state.from) {
                shown.push(parser.parse(row));
                numbers.push(place as u64 + 1);
            }
        }
        if shown.is_empty() {
            return Ok(());
        }
        let mut columns = self.rows.convert_rows(shown)?;
        columns.push(Arc::new(UInt64Array::from(numbers)));
        let batch = RecordBatch::try_new(self.rank.output.clone(), columns)?;
        let key_columns: Vec<ArrayRef> = self
            .rank
            .key
            .iter()
            .map(|i| batch.column(*i).clone())
            .collect();
        let keys: Rows = self.keys.convert_columns(&key_columns)?;
        let key_refs: Vec<&[u8]> = (0..keys.num_rows()).map(|i| keys.row(i).data()).collect();
        self.out.upsert(&key_refs, batch)
    }

    /// Saves what changed since the last checkpoint.
    pub fn checkpoint(
        &mut self,
        keys: &JobKeys,
        instance: usize,
        watermark_slot: Option<usize>,
        writes: &mut Writes,
    ) -> Result<()> {
        self.table
            .put(COUNTER, COUNTER_KEY, &self.arrivals.to_le_bytes());
        self.table.checkpoint(writes);
        if let Some(slot) = watermark_slot {
            writes.put(keys.aggregate_watermark(slot), self.watermark.to_be_bytes());
        }
        let counted = self.out.counters().snapshot();
        save_counters(&self.metrics, Part::Final(instance), counted, keys, writes);
        self.out.checkpoint(self.watermark, writes)
    }

    pub fn cache_use(&self) -> f64 {
        self.table.cache_use().max(self.out.cache_use())
    }

    pub fn committed(&mut self) -> Result<()> {
        self.table.committed();
        self.out.committed()
    }
}
