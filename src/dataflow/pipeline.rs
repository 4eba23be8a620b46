//! Pipeline: the chained operators of one instance, from its reader to the
//! exchange (or, for views without aggregation, to the view).
//!
//! Input: prepared rows of the instance's splits, in split order.
//! Output: partial aggregate states and watermarks to every instance of the
//! final aggregation; or rows appended to the view.
//! State: each split's watermark (the largest its rows have made), and the
//! partial aggregate of the rows since the last flush.
//! Watermarks: the minimum over the instance's active splits (see
//! `watermark.rs`), forwarded after every flush, so an owner never sees a
//! watermark before the rows it covers.
//! Checkpoint: on a barrier from its reader, it flushes its partial
//! aggregate (so it has no state of its own to save), saves each split's
//! position and watermark (and, without aggregation, its view shard), and
//! passes the barrier on.
//!
//! Operators chained here, in order: Watermark (per-row watermark values),
//! WindowAssign (window columns; with a windowed aggregation, rows late for
//! a window are dropped and counted), the filters and projections before the
//! aggregation, then PartialAggregate or Materialize.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Array, RecordBatch, TimestampMillisecondArray};
use arrow::datatypes::DataType;
use datafusion::physical_expr::PhysicalExpr;
use parking_lot::Mutex;
use tokio::sync::mpsc;

use crate::connector::{SourceEvent, SPLIT_DONE};
use crate::dataflow::checkpoint::{save_counters, Acks, MemoryControl};
use crate::dataflow::materialize::Materialize;
use crate::dataflow::message::{Envelope, Message};
use crate::dataflow::partial_aggregate::{route, route_rows, PartialAggregate, MAX_PENDING_GROUPS};
use crate::dataflow::physical::{
    apply_all, dead_letter, evaluate, millis, per_row_on_error, BadRows, PhysicalAggregate,
    PhysicalOp,
};
use crate::dataflow::plan::WindowPlan;
use crate::dataflow::prepare::take_rows;
use crate::dataflow::retract::PriorRows;
use crate::dataflow::stream_join::Alignment;
use crate::dataflow::watermark::{InstanceTime, SplitClocks, WatermarkCombiner};
use crate::dataflow::window::{assign_windows, Assignment};
use crate::error::{Error, Result};
use crate::metrics::{DeadLetterQueue, JobMetrics, Part};
use crate::state::checkpoint::{JobKeys, SplitState};
use crate::state::Writes;

/// What a job's instances share: the physical form of its plan.
pub struct JobPhysical {
    /// The event-time column's index and the watermark expression.
    pub rowtime: Option<(usize, WatermarkFn)>,
    pub window: Option<WindowPlan>,
    /// Whether rows late for their window are dropped, and after how long
    /// (the allowed lateness, ms).
    pub late_after: Option<i64>,
    /// Whether rows without window at or below their split's watermark are
    /// dropped (and counted): the sides of an interval join.
    pub drop_late: bool,
    pub pre: Vec<PhysicalOp>,
    pub aggregate: Option<Arc<PhysicalAggregate>>,
    pub post: Arc<Vec<PhysicalOp>>,
    /// The source's `scan.watermark.idle-timeout`.
    pub idle_timeout: Option<Duration>,
    /// The source's connector (to describe a row's position).
    pub connector: crate::connector::ConnectorSpec,
    /// The processing-time column the view's windows are on: stamped here,
    /// and the watermark follows the clock.
    pub proctime: Option<usize>,
}

/// How a pipeline takes part in checkpoints.
pub struct PipelineCheckpoint {
    pub keys: JobKeys,
    pub acks: Acks,
    /// Split name -> its watermark when the last checkpoint was taken.
    pub restored: HashMap<String, i64>,
}

/// How a row's watermark is made from it.
pub enum WatermarkFn {
    /// The event time minus a fixed delay in ms (the usual case).
    Delay(i64),
    /// Any other watermark expression.
    Expr(Arc<dyn PhysicalExpr>),
    /// Not made from rows: the reader sends each split's watermark (a view
    /// over a view goes by its upstream's).
    Given,
}

/// Where an instance's rows go.
pub enum Downstream {
    /// To the owners of their groups.
    Aggregate {
        partial: PartialAggregate,
        owners: Vec<mpsc::Sender<Envelope>>,
    },
    /// To the owners of their keys (a join of two streams: its keys; a
    /// top-N: its partition).
    Keyed {
        /// The key expressions (of this side of a join).
        keys: Vec<Arc<dyn PhysicalExpr>>,
        owners: Vec<mpsc::Sender<Envelope>>,
        /// Rows routed but not sent yet, by owner.
        pending: Vec<Vec<RecordBatch>>,
    },
    /// Straight into the view.
    Append {
        out: Materialize,
        /// The job's watermark over all instances.
        watermark: Arc<Mutex<WatermarkCombiner>>,
    },
}

pub struct Pipeline {
    instance: usize,
    /// Its number among the inputs of the instances downstream.
    sender: usize,
    job: Arc<JobPhysical>,
    clocks: SplitClocks,
    assignment: Assignment,
    downstream: Downstream,
    metrics: Arc<JobMetrics>,
    dead_letters: Arc<DeadLetterQueue>,
    flush_interval: Duration,
    /// The last watermark sent downstream.
    sent: i64,
    idle_sent: bool,
    hashes: Vec<u64>,
    /// The reader's splits, by name (for checkpoints).
    split_names: Vec<String>,
    /// Split name -> its watermark when the last checkpoint was taken.
    restored: HashMap<String, i64>,
    keys: JobKeys,
    acks: Acks,
    memory: MemoryControl,
    /// For a side of a join: where it publishes its watermark, so that its
    /// reader waits while it runs ahead of the other side.
    alignment: Option<Arc<Alignment>>,
    /// Aggregating a view whose rows change: the last row of each of its
    /// keys, taken back when the key changes.
    prior: Option<PriorRows>,
}

impl Pipeline {
    /// Pipeline `instance` of the job, input `sender` of the instances
    /// downstream.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        instance: usize,
        sender: usize,
        job: Arc<JobPhysical>,
        downstream: Downstream,
        metrics: Arc<JobMetrics>,
        dead_letters: Arc<DeadLetterQueue>,
        flush_interval: Duration,
        checkpoint: PipelineCheckpoint,
    ) -> Self {
        let PipelineCheckpoint {
            keys,
            acks,
            restored,
        } = checkpoint;
        Pipeline {
            instance,
            sender,
            clocks: SplitClocks::new(job.idle_timeout),
            job,
            assignment: Assignment::default(),
            downstream,
            metrics,
            dead_letters,
            flush_interval,
            sent: i64::MIN,
            idle_sent: false,
            hashes: Vec::new(),
            split_names: Vec::new(),
            restored,
            keys,
            memory: acks.memory(),
            acks,
            alignment: None,
            prior: None,
        }
    }

    /// Keeps the upstream's rows, to take them back from its aggregates.
    pub fn retract(mut self, prior: Option<PriorRows>) -> Self {
        self.prior = prior;
        self
    }

    /// Publishes its watermarks to keep the sides of a join aligned.
    pub fn align(mut self, alignment: Option<Arc<Alignment>>) -> Self {
        self.alignment = alignment;
        self
    }

    fn publish(&self, watermark: i64) {
        if let Some(a) = &self.alignment {
            a.publish(self.sender, watermark);
        }
    }

    /// Publishes its event time now: an idle instance holds no one back.
    fn publish_time(&self, time: InstanceTime) {
        match time {
            InstanceTime::Watermark(w) => self.publish(w),
            InstanceTime::Idle(_) => self.publish(i64::MAX),
            InstanceTime::Unknown => {}
        }
    }

    /// Runs until the source ends (or the job is stopped).
    pub async fn run(mut self, mut source: mpsc::Receiver<Result<SourceEvent>>) -> Result<()> {
        let mut tick = tokio::time::interval(self.flush_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                event = source.recv() => match event {
                    Some(Ok(event)) => self.on_event(event).await?,
                    Some(Err(e)) => return Err(e),
                    None => break,
                },
                _ = tick.tick() => self.on_tick().await?,
                () = self.memory.committed() => {
                    if let Downstream::Append { out, .. } = &self.downstream {
                        out.committed()?;
                        self.memory.observe(out.cache_use());
                    }
                    if let Some(prior) = &mut self.prior {
                        prior.committed();
                        self.memory.observe(prior.cache_use());
                    }
                }
            }
        }
        // The source has ended: emit everything and close every window.
        self.publish(i64::MAX);
        self.flush().await?;
        self.send_all(Message::Watermark(i64::MAX)).await;
        if let Downstream::Append { watermark, .. } = &self.downstream {
            if let Some(w) = watermark.lock().on_watermark(self.instance, i64::MAX) {
                self.metrics.advance_watermark(w);
            }
        }
        // The reader has ended: its counters are final.
        let writes = if self.acks.saving() {
            let done = vec![SPLIT_DONE; self.split_names.len()];
            let counted = self.metrics.part(Part::Reader(self.instance)).snapshot();
            self.checkpoint(&done, counted)?
        } else {
            Writes::default()
        };
        self.acks.ended(writes);
        Ok(())
    }

    /// What this instance saves with a checkpoint: each split's position
    /// and watermark, its reader's counters as of the barrier (`counted`)
    /// and its own, and, without aggregation, its view shard.
    fn checkpoint(&mut self, positions: &[i64], counted: [u64; 4]) -> Result<Writes> {
        let mut writes = Writes::default();
        let i = self.instance;
        save_counters(
            &self.metrics,
            Part::Reader(i),
            counted,
            &self.keys,
            &mut writes,
        );
        let own = self.counters().snapshot();
        save_counters(
            &self.metrics,
            Part::Pipeline(i),
            own,
            &self.keys,
            &mut writes,
        );
        for (split, (name, position)) in self.split_names.iter().zip(positions).enumerate() {
            let state = SplitState {
                position: *position,
                watermark: self.clocks.watermark(split),
            };
            writes.put(
                self.keys.split(self.instance, name),
                JobKeys::split_value(state),
            );
        }
        if let Downstream::Append { out, watermark } = &self.downstream {
            // The job's watermark: an idle instance must not hold back the
            // views over this one. Once this instance has ended its shard
            // gets no more rows.
            let w = if positions.iter().all(|p| *p == SPLIT_DONE) {
                i64::MAX
            } else {
                watermark.lock().current()
            };
            out.checkpoint(w, &mut writes)?;
        }
        if let Some(prior) = &mut self.prior {
            prior.checkpoint(&mut writes);
        }
        Ok(writes)
    }

    async fn on_event(&mut self, event: SourceEvent) -> Result<()> {
        match event {
            SourceEvent::Assigned { names } => {
                tracing::debug!(
                    instance = self.instance,
                    splits = names.len(),
                    "splits assigned"
                );
                let now = Instant::now();
                self.clocks.assign(names.len(), now);
                for (split, name) in names.iter().enumerate() {
                    if let Some(w) = self.restored.get(name) {
                        *self.clocks.running(split, now) = *w;
                    }
                }
                self.split_names = names;
            }
            SourceEvent::Barrier {
                epoch,
                positions,
                counted,
            } => {
                // Partial states go to their owners before the barrier.
                self.flush().await?;
                let writes = self.checkpoint(&positions, counted)?;
                self.acks.epoch(epoch, writes);
                self.memory.checkpointed(epoch);
                self.send_all(Message::Barrier(epoch)).await;
                // The owners count this instance active again after its
                // barrier: say idle again if it still is.
                self.idle_sent = false;
            }
            SourceEvent::Rows {
                split,
                batch,
                positions,
            } => {
                self.on_rows(split, batch, &positions)?;
                let flush = match &self.downstream {
                    Downstream::Aggregate { partial, .. } => {
                        partial.pending_groups() >= MAX_PENDING_GROUPS
                    }
                    Downstream::Keyed { .. } => {
                        // Its reader reads on only while it is not ahead
                        // of the other side.
                        self.publish_time(self.clocks.current(Instant::now()));
                        true
                    }
                    Downstream::Append { .. } => false,
                };
                if flush {
                    self.flush().await?;
                }
            }
            SourceEvent::Changes { split, changes } => {
                // Aggregated: each change takes the key's old row back
                // (sign -1) and adds its new one (sign +1).
                if let Some(prior) = &mut self.prior {
                    let old = prior.replace(&changes)?;
                    self.memory.observe(prior.cache_use());
                    let signed = old.map(|rows| (rows, -1)).into_iter();
                    for (rows, sign) in signed.chain([(changes.rows, 1)]) {
                        let (parts, bad) =
                            per_row_on_error(&rows, |b| apply_all(&self.job.pre, b.clone()))?;
                        // A row taken back that fails was a dead letter
                        // when it was added.
                        if sign > 0 {
                            self.dead_letter_rows(split, bad);
                        }
                        for part in parts {
                            self.aggregate(
                                split,
                                crate::dataflow::retract::with_sign(part, sign)?,
                            )?;
                        }
                    }
                    return Ok(());
                }
                // A view over a view whose rows change: its rows follow
                // the upstream's, by key (filters and projections are the
                // view's post operations: a row filtered out is deleted).
                if let Downstream::Append { out, .. } = &self.downstream {
                    let mut upserted: Vec<&[u8]> = Vec::new();
                    let mut deleted: Vec<&[u8]> = Vec::new();
                    for (key, at) in changes.key_bytes.iter().zip(&changes.rows_at) {
                        match at {
                            Some(_) => upserted.push(key),
                            None => deleted.push(key),
                        }
                    }
                    if !deleted.is_empty() {
                        out.delete(&deleted)?;
                    }
                    if !upserted.is_empty() {
                        out.upsert(&upserted, changes.rows)?;
                    }
                    self.memory.observe(out.cache_use());
                }
            }
            SourceEvent::CaughtUp { split } => {
                tracing::debug!(instance = self.instance, split, "split caught up");
                self.clocks.caught_up(split)
            }
            SourceEvent::SplitEnd { split } => self.clocks.ended(split),
            SourceEvent::Watermark { split, watermark } => {
                let running = self.clocks.running(split, Instant::now());
                *running = (*running).max(watermark);
            }
        }
        Ok(())
    }

    fn on_rows(&mut self, split: usize, batch: RecordBatch, positions: &[i64]) -> Result<()> {
        let now = Instant::now();
        let batch = match self.job.proctime {
            Some(index) => stamp_time(batch, index)?,
            None => batch,
        };
        let batch = match &self.job.rowtime {
            None => batch,
            Some((index, watermark)) => {
                let ts = millis(batch.column(*index))?;
                let marks: Cow<'_, [i64]> = match watermark {
                    WatermarkFn::Delay(ms) => {
                        Cow::Owned(ts.iter().map(|t| t.saturating_sub(*ms)).collect())
                    }
                    WatermarkFn::Expr(e) => Cow::Owned(millis(&evaluate(e, &batch)?)?.into_owned()),
                    WatermarkFn::Given => Cow::Owned(vec![i64::MIN; ts.len()]),
                };
                let running = self.clocks.running(split, now);
                match &self.job.window {
                    None if self.job.drop_late => {
                        // Each row is judged by the watermark the rows
                        // before it made.
                        let mut late = Vec::new();
                        for (row, (t, mark)) in ts.iter().zip(marks.iter()).enumerate() {
                            if *t <= *running {
                                late.push((row, *running));
                            }
                            *running = (*running).max(*mark);
                        }
                        if late.is_empty() {
                            batch
                        } else {
                            self.count_late_rows(split, &ts, positions, &late);
                            let mut keep = vec![true; batch.num_rows()];
                            for (row, _) in &late {
                                keep[*row] = false;
                            }
                            arrow::compute::filter_record_batch(
                                &batch,
                                &arrow::array::BooleanArray::from(keep),
                            )?
                        }
                    }
                    None => {
                        if let Some(max) = marks.iter().max() {
                            *running = (*running).max(*max);
                        }
                        batch
                    }
                    Some(window) => {
                        assign_windows(
                            &window.kind,
                            &ts,
                            &marks,
                            running,
                            self.job.late_after,
                            &mut self.assignment,
                        );
                        self.count_late(split, &ts, positions);
                        with_windows(&batch, window, &self.assignment)?
                    }
                }
            }
        };
        // A row whose expressions cannot be evaluated becomes a dead letter;
        // the others go on.
        let (parts, bad) = per_row_on_error(&batch, |b| apply_all(&self.job.pre, b.clone()))?;
        self.dead_letter_rows(split, bad);
        let batch = match parts.len() {
            0 => return Ok(()),
            1 => parts.into_iter().next().expect("one part"),
            _ => arrow::compute::concat_batches(&parts[0].schema(), &parts)?,
        };
        if batch.num_rows() == 0 {
            return Ok(());
        }
        match &mut self.downstream {
            Downstream::Aggregate { .. } => self.aggregate(split, batch),
            Downstream::Append { out, .. } => {
                out.append(batch)?;
                self.memory.observe(out.cache_use());
                Ok(())
            }
            Downstream::Keyed {
                keys,
                owners,
                pending,
            } => {
                // A row whose keys cannot be evaluated becomes a dead
                // letter; the others go to their owners.
                let bad = route_rows(
                    &batch,
                    &[],
                    keys,
                    owners.len(),
                    &mut self.hashes,
                    |owner, part| pending[owner].push(part),
                )?;
                self.dead_letter_rows(split, bad);
                Ok(())
            }
        }
    }

    /// Adds rows to the partial aggregate.
    fn aggregate(&mut self, split: usize, batch: RecordBatch) -> Result<()> {
        let Downstream::Aggregate { partial, .. } = &mut self.downstream else {
            return Err(Error::internal(
                "rows to aggregate in a view without aggregation",
            ));
        };
        let (inputs, bad) = per_row_on_error(&batch, |b| partial.inputs(b))?;
        for input in inputs {
            partial.update(input)?;
        }
        self.dead_letter_rows(split, bad);
        Ok(())
    }

    /// This pipeline's counters.
    fn counters(&self) -> &crate::metrics::Counters {
        self.metrics.part(Part::Pipeline(self.instance))
    }

    fn dead_letter_rows(&self, split: usize, bad: BadRows) {
        for (row, error) in bad {
            dead_letter(
                &self.dead_letters,
                &self.metrics,
                Part::Pipeline(self.instance),
                format!("a row of split {split} of instance {}", self.instance),
                &row,
                &error,
            );
        }
    }

    /// Counts the rows that missed at least one of their windows, and keeps
    /// them for `sluice.late_rows` (one entry per window missed).
    fn count_late(&self, split: usize, ts: &[i64], positions: &[i64]) {
        let late = &self.assignment.late;
        if late.is_empty() {
            return;
        }
        let rows = 1 + late.windows(2).filter(|w| w[0].0 != w[1].0).count();
        self.keep_late(
            split,
            ts,
            positions,
            rows,
            late.iter()
                .map(|(row, start, end, w)| (*row as usize, Some((*start, *end)), *w)),
        );
    }

    /// Counts rows dropped as late without a window (the sides of an
    /// interval join), each with the watermark it was judged by.
    fn count_late_rows(&self, split: usize, ts: &[i64], positions: &[i64], late: &[(usize, i64)]) {
        self.keep_late(
            split,
            ts,
            positions,
            late.len(),
            late.iter().map(|(row, w)| (*row, None, *w)),
        );
    }

    /// Counts `rows` late rows and keeps `late` (row, window missed,
    /// watermark) for `sluice.late_rows`: the last of them, as many as are
    /// kept.
    fn keep_late(
        &self,
        split: usize,
        ts: &[i64],
        positions: &[i64],
        rows: usize,
        late: impl ExactSizeIterator<Item = (usize, Option<(i64, i64)>, i64)>,
    ) {
        let older = late
            .len()
            .saturating_sub(crate::metrics::JobMetrics::LATE_ROWS_KEPT);
        let late = late.skip(older);
        self.counters()
            .late_rows
            .fetch_add(rows as u64, Ordering::Relaxed);
        let split_name = self
            .split_names
            .get(split)
            .map(String::as_str)
            .unwrap_or("?");
        let now = chrono::Utc::now().timestamp_millis();
        self.metrics.keep_late(
            late.map(|(row, window, watermark)| crate::metrics::LateRow {
                position: match positions.get(row) {
                    Some(p) => self.job.connector.describe_position(split_name, *p),
                    None => split_name.to_string(),
                },
                event_time_ms: ts[row],
                window_start_ms: window.map(|w| w.0),
                window_end_ms: window.map(|w| w.1),
                watermark_ms: watermark,
                seen_at_ms: now,
            }),
        );
    }

    async fn on_tick(&mut self) -> Result<()> {
        self.flush().await?;
        if self.job.proctime.is_some() {
            // Every row processed from now on is stamped later than this.
            self.clocks.advance_all(crate::functions::now_ms() - 1);
        }
        let time = self.clocks.current(Instant::now());
        if let Downstream::Append { watermark, .. } = &self.downstream {
            let mut combined = watermark.lock();
            let advanced = match time {
                InstanceTime::Watermark(w) => combined.on_watermark(self.instance, w),
                InstanceTime::Idle(last) => {
                    if let Some(w) = last {
                        combined.on_watermark(self.instance, w);
                    }
                    combined.on_idle(self.instance)
                }
                InstanceTime::Unknown => None,
            }
            .or(Some(combined.current()).filter(|w| *w != i64::MIN));
            if let Some(w) = advanced {
                self.metrics.advance_watermark(w);
            }
            return Ok(());
        }
        self.publish_time(time);
        match time {
            InstanceTime::Watermark(w) if w > self.sent => {
                tracing::trace!(instance = self.instance, watermark = w, "watermark");
                self.sent = w;
                self.idle_sent = false;
                self.send_all(Message::Watermark(w)).await;
            }
            InstanceTime::Idle(last) if !self.idle_sent => {
                // First the watermark its idle splits made, then idleness.
                if let Some(w) = last.filter(|w| *w > self.sent) {
                    self.sent = w;
                    self.send_all(Message::Watermark(w)).await;
                }
                tracing::debug!(instance = self.instance, "instance idle");
                self.idle_sent = true;
                self.send_all(Message::Idle).await;
            }
            _ => {}
        }
        Ok(())
    }

    /// Sends the pending partial states (or join rows) to their owners.
    async fn flush(&mut self) -> Result<()> {
        if let Downstream::Keyed {
            owners, pending, ..
        } = &mut self.downstream
        {
            for (owner, batches) in owners.iter().zip(pending.iter_mut()) {
                for batch in batches.drain(..) {
                    let envelope = Envelope {
                        from: self.sender,
                        message: Message::Batch(batch),
                    };
                    if owner.send(envelope).await.is_err() {
                        return Err(Error::internal("an instance downstream stopped early"));
                    }
                }
            }
            self.idle_sent = false;
            return Ok(());
        }
        let Downstream::Aggregate { partial, owners } = &mut self.downstream else {
            return Ok(());
        };
        let Some(batch) = partial.flush()? else {
            return Ok(());
        };
        let routing = &self
            .job
            .aggregate
            .as_ref()
            .expect("aggregate downstream has a plan")
            .routing;
        let parts = route(&batch, routing, owners.len(), &mut self.hashes)?;
        self.idle_sent = false;
        for (owner, part) in parts.into_iter().enumerate() {
            if let Some(part) = part {
                let envelope = Envelope {
                    from: self.sender,
                    message: Message::Batch(part),
                };
                if owners[owner].send(envelope).await.is_err() {
                    return Err(Error::internal("an aggregation instance stopped early"));
                }
            }
        }
        Ok(())
    }

    async fn send_all(&mut self, message: Message) {
        let owners = match &self.downstream {
            Downstream::Aggregate { owners, .. } | Downstream::Keyed { owners, .. } => owners,
            Downstream::Append { .. } => return,
        };
        {
            for owner in owners {
                let _ = owner
                    .send(Envelope {
                        from: self.sender,
                        message: message.clone(),
                    })
                    .await;
            }
        }
    }
}

/// The batch with column `index` set to the time now (processing time).
fn stamp_time(batch: RecordBatch, index: usize) -> Result<RecordBatch> {
    let tz = match batch.schema().field(index).data_type() {
        DataType::Timestamp(_, tz) => tz.clone(),
        other => return Err(Error::internal(format!("processing time of type {other}"))),
    };
    let now = TimestampMillisecondArray::from_value(crate::functions::now_ms(), batch.num_rows())
        .with_timezone_opt(tz);
    let mut columns = batch.columns().to_vec();
    columns[index] = arrow::compute::cast(&now, batch.schema().field(index).data_type())?;
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}

/// The rows of `assignment` with the window columns added.
fn with_windows(
    batch: &RecordBatch,
    window: &WindowPlan,
    assignment: &Assignment,
) -> Result<RecordBatch> {
    let identity = assignment.rows.len() == batch.num_rows()
        && assignment
            .rows
            .iter()
            .enumerate()
            .all(|(i, r)| *r as usize == i);
    let rows = if identity {
        batch.clone()
    } else {
        take_rows(batch, &assignment.rows)?
    };
    let time_tz = match window
        .output
        .field(window.output.fields().len() - 1)
        .data_type()
    {
        DataType::Timestamp(_, tz) => tz.clone(),
        _ => None,
    };
    let mut columns = rows.columns().to_vec();
    columns.push(Arc::new(TimestampMillisecondArray::from(
        assignment.starts.clone(),
    )));
    columns.push(Arc::new(TimestampMillisecondArray::from(
        assignment.ends.clone(),
    )));
    let times: TimestampMillisecondArray = assignment.ends.iter().map(|e| Some(e - 1)).collect();
    columns.push(Arc::new(times.with_timezone_opt(time_tz)));
    debug_assert!(columns.iter().all(|c| c.len() == assignment.rows.len()));
    Ok(RecordBatch::try_new(window.output.clone(), columns)?)
}
