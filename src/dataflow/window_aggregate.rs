//! WindowAggregate: the second (final) phase of an aggregation; each
//! instance owns the groups whose routing hash points to it.
//!
//! Input: partial states from every pipeline instance, and their
//! watermarks.
//! Output: result rows to [`Materialize`]: on every change of a group (the
//! default), or only when its window fires (`EMIT ON WINDOW CLOSE`); under
//! a top-N per window, each window's final rows when it fires, to the
//! top-N instances that own their partitions (see [`AggregateOutput`]).
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

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::row::{RowConverter, Rows, SortField};
use datafusion::logical_expr::GroupsAccumulator;

use crate::dataflow::checkpoint::save_counters;
use crate::dataflow::materialize::Materialize;
use crate::dataflow::message::Message;
use crate::dataflow::owner::Outgoing;
use crate::dataflow::partial_aggregate::Onward;
use crate::dataflow::physical::{millis, PhysicalAggregate, PhysicalOp};
use crate::dataflow::plan::EmitMode;
use crate::dataflow::retract::PriorRows;
use crate::dataflow::session::{self, Session};
use crate::dataflow::window::has_fired;
use crate::error::{Error, Result};
use crate::metrics::{DeadLetterQueue, JobMetrics, Part};
use crate::state::checkpoint::JobKeys;
use crate::state::table::{StateTable, WindowId, WindowRows};
use crate::state::Writes;

/// Where an aggregation's result rows go.
pub enum AggregateOutput {
    /// Into the view, through what comes after the aggregation.
    View(Materialize),
    /// Each closed window's final rows, through the operations after the
    /// aggregation, to the owner instances downstream (a top-N's, a
    /// join's, another aggregation's).
    Owners {
        ops: Arc<Vec<PhysicalOp>>,
        onward: Onward,
        /// When its rows change and the aggregation above takes them back:
        /// each group's last row (a change sends it with sign -1, then the
        /// new row with +1).
        prior: Option<Box<PriorRows>>,
        owners: usize,
        outbox: Vec<Outgoing>,
        hashes: Vec<u64>,
        /// The counters of the part it runs in.
        part: Part,
        metrics: Arc<JobMetrics>,
        dead_letters: Arc<DeadLetterQueue>,
    },
}

impl AggregateOutput {
    fn counters(&self) -> &crate::metrics::Counters {
        match self {
            AggregateOutput::View(view) => view.counters(),
            AggregateOutput::Owners { part, metrics, .. } => metrics.part(*part),
        }
    }

    fn upsert(&mut self, keys: &[&[u8]], results: RecordBatch) -> Result<()> {
        match self {
            AggregateOutput::View(view) => view.upsert(keys, results),
            AggregateOutput::Owners {
                ops,
                onward,
                prior,
                owners,
                outbox,
                hashes,
                part,
                metrics,
                dead_letters,
            } => {
                let sign = match prior {
                    Some(prior) => {
                        if let Some(old) = prior.upsert(keys, &results)? {
                            // A row that failed when it was added was a
                            // dead letter then.
                            onward.send(&old, ops, Some(-1), *owners, hashes, outbox)?;
                        }
                        Some(1)
                    }
                    None => None,
                };
                let bad = onward.send(&results, ops, sign, *owners, hashes, outbox)?;
                for (row, error) in bad {
                    crate::dataflow::physical::dead_letter(
                        dead_letters,
                        metrics,
                        *part,
                        format!("a result row of view {}", metrics.name),
                        &row,
                        &error,
                    );
                }
                Ok(())
            }
        }
    }

    fn delete(&mut self, keys: &[&[u8]]) -> Result<()> {
        match self {
            AggregateOutput::View(view) => view.delete(keys),
            AggregateOutput::Owners {
                ops,
                onward,
                prior: Some(prior),
                owners,
                outbox,
                hashes,
                ..
            } => {
                if let Some(old) = prior.delete(keys)? {
                    onward.send(&old, ops, Some(-1), *owners, hashes, outbox)?;
                }
                Ok(())
            }
            AggregateOutput::Owners { prior: None, .. } => Err(Error::internal(
                "the final rows of a closed window were taken back",
            )),
        }
    }

    fn checkpoint(&mut self, watermark: i64, writes: &mut Writes) -> Result<()> {
        match self {
            AggregateOutput::View(view) => view.checkpoint(watermark, writes),
            AggregateOutput::Owners { prior, .. } => {
                if let Some(prior) = prior {
                    prior.checkpoint(writes);
                }
                Ok(())
            }
        }
    }

    fn cache_use(&self) -> f64 {
        match self {
            AggregateOutput::View(view) => view.cache_use(),
            AggregateOutput::Owners { prior, .. } => prior.as_ref().map_or(0.0, |p| p.cache_use()),
        }
    }

    fn committed(&mut self) -> Result<()> {
        match self {
            AggregateOutput::View(view) => view.committed(),
            AggregateOutput::Owners { prior, .. } => {
                if let Some(prior) = prior {
                    prior.committed();
                }
                Ok(())
            }
        }
    }

    /// Whether it sends its rows to owners downstream.
    pub fn forwards(&self) -> bool {
        matches!(self, AggregateOutput::Owners { .. })
    }

    /// Messages for the owners downstream; `watermark` goes after the rows
    /// before it.
    pub fn push(&mut self, message: Message) {
        if let AggregateOutput::Owners { outbox, .. } = self {
            outbox.push((None, message));
        }
    }

    pub fn take_outbox(&mut self, into: &mut Vec<Outgoing>) {
        if let AggregateOutput::Owners { outbox, .. } = self {
            into.append(outbox);
        }
    }
}

/// Rows per result batch when a large window fires.
const FIRE_BATCH_ROWS: usize = 8192;

/// The window id of groups that never fire (aggregations without window).
const NO_WINDOW: WindowId = WindowId::MAX;

/// For SESSION windows: the window id of each partition's live sessions
/// (one row per partition, see `session.rs`); the rows under a session's
/// end are timers, naming the partitions that have a session ending there.
const SESSIONS: WindowId = WindowId::MAX;
const TIMER: &[u8] = &[1];

/// A session of a batch: its start, its end, and a row of its partition.
type SessionAt = (i64, i64, usize);
/// Timers are grouped by the second: a timer under id t asks to look at a
/// partition when the watermark reaches `[t - TIMER_MS, t)`.
const TIMER_MS: i64 = 1000;

/// The timer id that asks to look at a partition at time `t`.
fn timer_at(t: i64) -> WindowId {
    t.div_euclid(TIMER_MS)
        .saturating_add(1)
        .saturating_mul(TIMER_MS)
        .min(SESSIONS - 1)
}

pub struct WindowAggregate {
    agg: Arc<PhysicalAggregate>,
    emit: EmitMode,
    table: StateTable,
    keys: RowConverter,
    states: RowConverter,
    accumulators: Vec<Box<dyn GroupsAccumulator>>,
    watermark: i64,
    pub out: AggregateOutput,
    metrics: Arc<JobMetrics>,
    identity: Vec<usize>,
    /// For SESSION windows: the partition columns' row format (None when
    /// the sessions are not partitioned).
    partitions: Option<RowConverter>,
    /// With `EMIT EVERY`: groups of in-progress windows changed since they
    /// last showed.
    early: HashSet<(WindowId, Box<[u8]>)>,
    /// With `EMIT EVERY` over sessions: partitions whose in-progress
    /// sessions changed, and the rows of sessions merged into others since
    /// (they may have shown).
    early_partitions: HashSet<Box<[u8]>>,
    early_deletes: Vec<Box<[u8]>>,
}

impl WindowAggregate {
    pub fn new(
        agg: Arc<PhysicalAggregate>,
        emit: EmitMode,
        table: StateTable,
        out: AggregateOutput,
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
        let partitions = match &agg.session {
            Some(session) if !session.partition.is_empty() => Some(RowConverter::new(
                session
                    .partition
                    .iter()
                    .map(|i| SortField::new(agg.group_schema.field(*i).data_type().clone()))
                    .collect(),
            )?),
            _ => None,
        };
        Ok(WindowAggregate {
            partitions,
            early: HashSet::new(),
            early_partitions: HashSet::new(),
            early_deletes: Vec::new(),
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
        if !self.out.forwards() {
            // (A top-N downstream saves the counters of this part.)
            let counted = self.out.counters().snapshot();
            save_counters(&self.metrics, Part::Final(instance), counted, keys, writes);
        }
        self.out.checkpoint(self.watermark, writes)
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
        let ms = millis(batch.column(fire.group_index))?;
        Ok(Some(ms.iter().map(|v| v + fire.add_ms).collect()))
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
        if self.agg.session.is_some() {
            return self.on_session_partial(batch, windows);
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
        // Shown: every change by default; with EMIT ON WINDOW CLOSE, the
        // changes of windows already shown (late rows, allowed lateness).
        let shown: Vec<usize> = match self.emit {
            EmitMode::OnUpdate => identity.clone(),
            EmitMode::OnWindowClose | EmitMode::Every { .. } => (0..n)
                .filter(|i| has_fired(windows[*i], self.watermark))
                .collect(),
        };
        if let EmitMode::Every { .. } = self.emit {
            // In-progress windows show at the next early emission.
            for (i, window) in windows.iter().enumerate() {
                if !has_fired(*window, self.watermark) {
                    self.early
                        .insert((*window, Box::from(keys.row(i).as_ref())));
                }
            }
        }
        if !shown.is_empty() {
            self.agg
                .merge(&mut self.accumulators, &merged, &identity, n)?;
            let results = self.agg.take_results(&mut self.accumulators)?;
            if let Some(count) = self.agg.rows_count {
                return self.emit_counted(&keys, &windows, group_cols, results, count);
            }
            if shown.len() == n {
                self.emit_rows(&keys, group_cols, results)?;
            } else {
                let group_cols = take_all(&group_cols, &shown)?;
                let keys = self.keys.convert_columns(&group_cols)?;
                self.emit_rows(&keys, group_cols, take_all(&results, &shown)?)?;
            }
        }
        Ok(())
    }

    /// Drops partial states of windows that have already fired.
    fn drop_fired(
        &self,
        batch: RecordBatch,
        windows: Vec<WindowId>,
    ) -> Result<(RecordBatch, Vec<WindowId>)> {
        let expired =
            |w: WindowId| has_fired(w.saturating_add(self.agg.allowed_lateness), self.watermark);
        let late = windows.iter().filter(|w| expired(**w)).count();
        if late == 0 {
            return Ok((batch, windows));
        }
        self.out
            .counters()
            .late_rows
            .fetch_add(late as u64, Ordering::Relaxed);
        let keep: arrow::array::BooleanArray = windows.iter().map(|w| Some(!expired(*w))).collect();
        let kept = windows.into_iter().filter(|w| !expired(*w)).collect();
        Ok((arrow::compute::filter_record_batch(&batch, &keep)?, kept))
    }

    /// Merges partial states of session windows (one `[ts, ts + gap)` per
    /// group) into the live sessions of their partitions.
    fn on_session_partial(&mut self, batch: RecordBatch, ends: Vec<WindowId>) -> Result<()> {
        let session = self.agg.session.clone().expect("a session aggregation");
        let groups = self.agg.group_count();
        let starts = millis(batch.column(session.start))?;
        let partition_rows = match &self.partitions {
            Some(converter) => {
                let columns: Vec<ArrayRef> = session
                    .partition
                    .iter()
                    .map(|i| batch.column(*i).clone())
                    .collect();
                Some(converter.convert_columns(&columns)?)
            }
            None => None,
        };
        let partition = |i: usize| -> &[u8] {
            match &partition_rows {
                Some(rows) => rows.row(i).data(),
                None => &[],
            }
        };
        // The rows of each partition, in order of first appearance.
        let mut order: Vec<&[u8]> = Vec::new();
        let mut rows_of: HashMap<&[u8], Vec<usize>> = HashMap::new();
        for i in 0..batch.num_rows() {
            rows_of
                .entry(partition(i))
                .or_insert_with(|| {
                    order.push(partition(i));
                    Vec::new()
                })
                .push(i);
        }
        self.table.fetch(order.iter().map(|key| (SESSIONS, *key)))?;

        // Merge windows per partition; every changed session is a group.
        let mut row_group = vec![0usize; batch.num_rows()];
        let mut stored: Vec<Box<[u8]>> = Vec::new();
        let mut stored_group: Vec<usize> = Vec::new();
        // Per group: its window and a row of its partition.
        let mut changed: Vec<SessionAt> = Vec::new();
        // Sessions merged into another: (start, end, a row of the partition).
        let mut replaced: Vec<SessionAt> = Vec::new();
        // Per partition: its sessions, a group's state left empty for now.
        let mut lists: Vec<(Vec<Session>, Vec<Option<usize>>)> = Vec::with_capacity(order.len());
        for key in &order {
            let rows = &rows_of[key];
            let existing = match self.table.get(SESSIONS, key) {
                Some(bytes) => session::decode(bytes)?,
                None => Vec::new(),
            };
            let windows: Vec<(i64, i64)> = existing.iter().map(|s| (s.start, s.end)).collect();
            let incoming: Vec<(i64, i64)> = rows.iter().map(|i| (starts[*i], ends[*i])).collect();
            let merged = session::merge(&windows, &incoming);
            let mut touched = vec![false; merged.windows.len()];
            for at in &merged.incoming {
                touched[*at] = true;
            }
            let base = changed.len();
            let mut group_of = vec![None; merged.windows.len()];
            for (at, w) in merged.windows.iter().enumerate() {
                if touched[at] {
                    group_of[at] = Some(changed.len());
                    changed.push((w.0, w.1, rows[0]));
                }
            }
            for (r, at) in rows.iter().zip(&merged.incoming) {
                row_group[*r] = group_of[*at].expect("a touched session");
            }
            let mut list = Vec::with_capacity(merged.windows.len());
            let mut list_groups = Vec::with_capacity(merged.windows.len());
            let mut kept = vec![None; merged.windows.len()];
            for (s, at) in existing.into_iter().zip(&merged.existing) {
                match group_of[*at] {
                    Some(g) => {
                        if (s.start, s.end) != (changed[g].0, changed[g].1) {
                            replaced.push((s.start, s.end, rows[0]));
                        }
                        stored.push(s.state);
                        stored_group.push(g);
                    }
                    None => kept[*at] = Some(s),
                }
            }
            for (at, w) in merged.windows.iter().enumerate() {
                match kept[at].take() {
                    Some(s) => {
                        list.push(s);
                        list_groups.push(None);
                    }
                    None => {
                        list.push(Session {
                            start: w.0,
                            end: w.1,
                            state: Box::default(),
                        });
                        list_groups.push(group_of[at]);
                    }
                }
            }
            debug_assert!(list_groups.iter().flatten().all(|g| *g >= base));
            lists.push((list, list_groups));
        }

        // One merge of the incoming and the stored states into the groups.
        let total = changed.len();
        let incoming: Vec<ArrayRef> = batch.columns()[groups..].to_vec();
        self.agg
            .merge(&mut self.accumulators, &incoming, &row_group, total)?;
        if !stored.is_empty() {
            let parser = self.states.parser();
            let stored = self
                .states
                .convert_rows(stored.iter().map(|b| parser.parse(b)))?;
            self.agg
                .merge(&mut self.accumulators, &stored, &stored_group, total)?;
        }
        let merged = self.agg.take_states(&mut self.accumulators)?;
        let encoded = self.states.convert_columns(&merged)?;
        // Shown: every session by default; with EMIT ON WINDOW CLOSE, only
        // fired ones (a late row changed them, allowed lateness); with EMIT
        // EVERY, in-progress ones at the next early emission.
        let wm = self.watermark;
        let emit = self.emit;
        let shown = |end: i64| emit.on_update() || has_fired(end, wm);
        let early = matches!(emit, EmitMode::Every { .. });
        for (key, (mut list, list_groups)) in order.iter().zip(lists) {
            let mut shows_early = false;
            for (s, g) in list.iter_mut().zip(&list_groups) {
                if let Some(g) = g {
                    s.state = Box::from(encoded.row(*g).as_ref());
                    // A timer: the partition has a session ending here.
                    self.table.put(timer_at(s.end), key, TIMER);
                    shows_early |= early && !shown(s.end);
                }
            }
            self.table.put(SESSIONS, key, &session::encode(&list));
            if shows_early {
                self.early_partitions.insert(Box::from(*key));
            }
        }
        let (gone, merged_away): (Vec<&SessionAt>, Vec<&SessionAt>) =
            replaced.iter().partition(|r| shown(r.1));
        if early && !merged_away.is_empty() {
            // Their rows may have shown early: they go at the next one.
            let (_, keys) = self.session_rows(&batch, &merged_away)?;
            self.early_deletes
                .extend((0..keys.num_rows()).map(|i| Box::from(keys.row(i).data())));
        }
        if !gone.is_empty() {
            let (_, keys) = self.session_rows(&batch, &gone)?;
            let key_refs: Vec<&[u8]> = (0..keys.num_rows()).map(|i| keys.row(i).data()).collect();
            self.out.delete(&key_refs)?;
        }
        let show: Vec<usize> = (0..total).filter(|g| shown(changed[*g].1)).collect();
        if !show.is_empty() {
            let identity: Vec<usize> = self.identity(total).to_vec();
            self.agg
                .merge(&mut self.accumulators, &merged, &identity, total)?;
            let results = take_all(&self.agg.take_results(&mut self.accumulators)?, &show)?;
            let sessions: Vec<&SessionAt> = show.iter().map(|g| &changed[*g]).collect();
            let (columns, keys) = self.session_rows(&batch, &sessions)?;
            self.emit_rows(&keys, columns, results)?;
        }
        Ok(())
    }

    /// The group columns and view keys of sessions `(start, end, row)`:
    /// their windows, and the partition columns of that row of `batch`.
    fn session_rows(
        &self,
        batch: &RecordBatch,
        sessions: &[&SessionAt],
    ) -> Result<(Vec<ArrayRef>, Rows)> {
        let session = self.agg.session.as_ref().expect("a session aggregation");
        let windows: Vec<(i64, i64)> = sessions.iter().map(|s| (s.0, s.1)).collect();
        let picked =
            arrow::array::UInt32Array::from_iter_values(sessions.iter().map(|s| s.2 as u32));
        let columns = session::group_columns(&self.agg.group_schema, session, &windows, |i| {
            Ok(arrow::compute::take(batch.column(i), &picked, None)?)
        })?;
        let keys = self.keys.convert_columns(&columns)?;
        Ok((columns, keys))
    }

    /// Fires the sessions that end by the watermark: their timers name the
    /// partitions to look at.
    fn fire_sessions(&mut self, previous: i64, watermark: i64) -> Result<()> {
        // The partitions whose timers are due: their sessions that fire now
        // show (EMIT ON WINDOW CLOSE); those whose lateness has passed too
        // go. A fired session stays one gap longer: a row that is not late
        // (its own window has not fired) may still reach into it, if the
        // rows of other splits fired it first; it then joins it, so the
        // sessions are those of all rows that were not late, however the
        // splits' watermarks interleave. Each partition looked at gets a
        // timer for its next session to fire or go.
        let session = self.agg.session.as_ref().expect("a session aggregation");
        let lateness = self.agg.allowed_lateness.saturating_add(session.gap);
        let mut partitions: Vec<Box<[u8]>> = Vec::new();
        let due = watermark.saturating_add(1).saturating_add(TIMER_MS);
        for id in self.table.windows_up_to(due) {
            if id == SESSIONS {
                continue;
            }
            partitions.extend(self.table.take_window(id)?.into_iter().map(|(k, _)| k));
        }
        if partitions.is_empty() {
            return Ok(());
        }
        partitions.sort_unstable();
        partitions.dedup();
        self.table
            .fetch(partitions.iter().map(|k| (SESSIONS, &k[..])))?;
        let mut fired: Vec<(usize, Session)> = Vec::new();
        for (p, key) in partitions.iter().enumerate() {
            let Some(bytes) = self.table.get(SESSIONS, key) else {
                continue;
            };
            let sessions = session::decode(bytes)?;
            let count = sessions.len();
            let mut kept = Vec::with_capacity(count);
            let mut next = i64::MAX;
            for s in sessions {
                let shown = has_fired(s.end, watermark);
                if shown && !has_fired(s.end, previous) {
                    fired.push((p, s.clone()));
                }
                let gone = s.end.saturating_add(lateness);
                if !has_fired(gone, watermark) {
                    next = next.min(if shown { gone } else { s.end });
                    kept.push(s);
                }
            }
            if kept.is_empty() {
                self.table.remove(SESSIONS, key);
            } else {
                if kept.len() < count {
                    self.table.put(SESSIONS, key, &session::encode(&kept));
                }
                self.table.put(timer_at(next), key, TIMER);
            }
        }
        if self.emit.on_update() || fired.is_empty() {
            return Ok(());
        }
        self.emit_sessions(&partitions, &fired)
    }

    /// Shows sessions: `(i, session)` is a session of partition
    /// `partitions[i]`.
    fn emit_sessions(
        &mut self,
        partitions: &[Box<[u8]>],
        sessions: &[(usize, Session)],
    ) -> Result<()> {
        for chunk in sessions.chunks(FIRE_BATCH_ROWS) {
            let n = chunk.len();
            let partition_columns: Vec<ArrayRef> = match &self.partitions {
                Some(converter) => {
                    let parser = converter.parser();
                    converter
                        .convert_rows(chunk.iter().map(|(p, _)| parser.parse(&partitions[*p])))?
                }
                None => Vec::new(),
            };
            let state_parser = self.states.parser();
            let states = self
                .states
                .convert_rows(chunk.iter().map(|(_, s)| state_parser.parse(&s.state)))?;
            let identity: Vec<usize> = self.identity(n).to_vec();
            self.agg
                .merge(&mut self.accumulators, &states, &identity, n)?;
            let results = self.agg.take_results(&mut self.accumulators)?;
            let session = self.agg.session.as_ref().expect("a session aggregation");
            let mut partition_columns = partition_columns.into_iter();
            let windows: Vec<(i64, i64)> = chunk.iter().map(|(_, s)| (s.start, s.end)).collect();
            let columns =
                session::group_columns(&self.agg.group_schema, session, &windows, |_| {
                    partition_columns
                        .next()
                        .ok_or_else(|| Error::internal("a session partition column is missing"))
                })?;
            let keys = self.keys.convert_columns(&columns)?;
            self.emit_rows(&keys, columns, results)?;
        }
        Ok(())
    }

    fn emit_rows(
        &mut self,
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

    /// Over rows that can be taken back: a group whose rows are all taken
    /// back (`results[count]` is 0) leaves the state and the view; the
    /// others are upserted.
    fn emit_counted(
        &mut self,
        keys: &Rows,
        windows: &[WindowId],
        group_cols: Vec<ArrayRef>,
        results: Vec<ArrayRef>,
        count: usize,
    ) -> Result<()> {
        let counts = results[count].as_primitive::<arrow::datatypes::Int64Type>();
        let (kept, gone): (Vec<usize>, Vec<usize>) =
            (0..counts.len()).partition(|i| counts.is_valid(*i) && counts.value(*i) != 0);
        if !gone.is_empty() {
            let gone_keys: Vec<&[u8]> = gone.iter().map(|i| keys.row(*i).data()).collect();
            for (i, key) in gone.iter().zip(&gone_keys) {
                self.table.remove(windows[*i], key);
            }
            self.out.delete(&gone_keys)?;
        }
        if kept.len() == counts.len() {
            return self.emit_rows(keys, group_cols, results);
        }
        if !kept.is_empty() {
            let group_cols = take_all(&group_cols, &kept)?;
            let keys = self.keys.convert_columns(&group_cols)?;
            self.emit_rows(&keys, group_cols, take_all(&results, &kept)?)?;
        }
        Ok(())
    }

    /// Advances the watermark and fires the windows it completes.
    pub fn on_watermark(&mut self, watermark: i64) -> Result<()> {
        if watermark <= self.watermark {
            return Ok(());
        }
        let previous = std::mem::replace(&mut self.watermark, watermark);
        self.metrics.advance_watermark(watermark);
        if self.agg.fire_time.is_none() {
            return Ok(());
        }
        if self.agg.session.is_some() {
            if watermark == i64::MAX {
                // The input has ended: no early emission comes any more.
                self.emit_early_sessions()?;
            }
            return self.fire_sessions(previous, watermark);
        }
        // Window [s, e) fires when wm >= e - 1, i.e. e <= wm + 1; its state
        // goes once its allowed lateness has passed too.
        let lateness = self.agg.allowed_lateness;
        if !self.early.is_empty() {
            self.early.retain(|(w, _)| !has_fired(*w, watermark));
        }
        for window in self.table.windows_up_to(watermark.saturating_add(1)) {
            let expired = has_fired(window.saturating_add(lateness), watermark);
            let shows = !self.emit.on_update() && !has_fired(window, previous);
            if expired {
                let rows = self.table.take_window(window)?;
                if shows {
                    self.fire(rows)?;
                }
            } else if shows {
                let rows = self.table.read_window(window)?;
                self.fire(rows)?;
            }
        }
        Ok(())
    }

    /// With `EMIT EVERY`, how often in-progress windows show.
    pub fn early_every(&self) -> Option<std::time::Duration> {
        match self.emit {
            EmitMode::Every { every_ms } => {
                Some(std::time::Duration::from_millis(every_ms.max(1) as u64))
            }
            _ => None,
        }
    }

    /// Shows the groups of in-progress windows changed since the last time
    /// (`EMIT EVERY`).
    pub fn emit_early(&mut self) -> Result<()> {
        if self.agg.session.is_some() {
            return self.emit_early_sessions();
        }
        if self.early.is_empty() {
            return Ok(());
        }
        let mut changed: Vec<(WindowId, Box<[u8]>)> = self.early.drain().collect();
        changed.sort_unstable();
        self.table
            .fetch(changed.iter().map(|(w, k)| (*w, &k[..])))?;
        let rows: WindowRows = changed
            .into_iter()
            .filter_map(|(w, k)| {
                let value = Box::from(self.table.get(w, &k)?);
                Some((k, value))
            })
            .collect();
        self.fire(rows)
    }

    /// Shows the in-progress sessions of the partitions changed since the
    /// last time, after removing the rows of sessions merged into others.
    fn emit_early_sessions(&mut self) -> Result<()> {
        if !self.early_deletes.is_empty() {
            let deletes = std::mem::take(&mut self.early_deletes);
            let refs: Vec<&[u8]> = deletes.iter().map(|k| &k[..]).collect();
            self.out.delete(&refs)?;
        }
        if self.early_partitions.is_empty() {
            return Ok(());
        }
        let mut partitions: Vec<Box<[u8]>> = self.early_partitions.drain().collect();
        partitions.sort_unstable();
        self.table
            .fetch(partitions.iter().map(|k| (SESSIONS, &k[..])))?;
        let mut open: Vec<(usize, Session)> = Vec::new();
        for (p, key) in partitions.iter().enumerate() {
            if let Some(bytes) = self.table.get(SESSIONS, key) {
                for s in session::decode(bytes)? {
                    if !has_fired(s.end, self.watermark) {
                        open.push((p, s));
                    }
                }
            }
        }
        self.emit_sessions(&partitions, &open)
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

/// Rows `rows` of each column.
fn take_all(columns: &[ArrayRef], rows: &[usize]) -> Result<Vec<ArrayRef>> {
    let picked = arrow::array::UInt32Array::from_iter_values(rows.iter().map(|r| *r as u32));
    columns
        .iter()
        .map(|c| Ok(arrow::compute::take(c, &picked, None)?))
        .collect()
}
