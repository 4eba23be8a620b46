//! A job: the running dataflow of one view.
//!
//! With parallelism P, a job runs P readers (threads: reading and decoding),
//! P pipelines (tasks: watermarks, windows, filters, partial aggregation)
//! and, for aggregations, P final aggregation tasks, each owning the groups
//! that hash to it. Channels are bounded, so a slow operator slows its
//! source and memory stays bounded.
//!
//! A checkpoint coordinator (see `checkpoint.rs`) commits the job's state
//! every `checkpoint_interval`; a job started again resumes from its last
//! committed epoch, and a job whose sources had ended is not run again.
//!
//! A supervisor watches the tasks: when one fails the job is marked failed
//! with the error (and stops); when all end, the job is finished. Dropping
//! the job stops everything.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator};
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

use crate::connector::print::Printer;
use crate::connector::{ConnectorSpec, EventSender, ReaderContext};
use crate::dataflow::checkpoint::{Acks, CheckpointHandle, CheckpointSettings, Coordinator};
use crate::dataflow::materialize::Materialize;
use crate::dataflow::message::Envelope;
use crate::dataflow::message::Message;
use crate::dataflow::owner::{run_owner, Outgoing, Owner, OwnerOutput};
use crate::dataflow::partial_aggregate::PartialAggregate;
use crate::dataflow::physical::{physical_expr, PhysicalAggregate, PhysicalOp};
use crate::dataflow::pipeline::{
    Downstream, JobPhysical, Pipeline, PipelineCheckpoint, WatermarkFn,
};
use crate::dataflow::plan::{Side, SourcePlan, StatelessOp, StreamPlan, ViewRows, WindowPlan};
use crate::dataflow::prepare::Preparer;
use crate::dataflow::retract::PriorRows;
use crate::dataflow::stream_join::{Alignment, JoinOutput, Onward, PhysicalJoin, StreamJoin};
use crate::dataflow::top_n::{PhysicalRank, TopN};
use crate::dataflow::watermark::WatermarkCombiner;
use crate::dataflow::window_aggregate::{AggregateOutput, WindowAggregate};
use crate::error::{Error, Result};
use crate::metrics::{DeadLetterQueue, JobMetrics, Part};
use crate::state::checkpoint::{JobKeys, Restored};
use crate::state::table::StateTable;
use crate::state::view::{Durable, Rows, ViewStore};
use crate::state::Store;
use crate::state::Writes;
use arrow::array::RecordBatch;

/// Messages buffered between two operators.
const CHANNEL_CAPACITY: usize = 16;
/// Batches buffered between a reader and its pipeline.
const SOURCE_CHANNEL_CAPACITY: usize = 4;
/// How far in event time a side of a join may run ahead of the other,
/// beyond the join's interval.
const ALIGNMENT_DRIFT_MS: i64 = 2_000;

/// How jobs run (server settings).
#[derive(Debug, Clone)]
pub struct JobConfig {
    pub parallelism: usize,
    /// `batch.size`: rows per batch at most.
    pub batch_size: usize,
    /// `batch.linger`: how long a partial batch waits for more rows.
    pub linger: Duration,
    /// How often partial aggregates are flushed and watermarks forwarded:
    /// the freshness of in-progress results.
    pub flush_interval: Duration,
    /// `--state-cache`: the memory a job's state (aggregation state and
    /// view rows) may use for rows the store already has.
    pub state_cache_bytes: usize,
}

impl Default for JobConfig {
    fn default() -> Self {
        JobConfig {
            parallelism: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            batch_size: 8192,
            linger: Duration::from_millis(10),
            flush_interval: Duration::from_millis(100),
            state_cache_bytes: 1 << 30,
        }
    }
}

/// Where a job keeps its state, and how often it checkpoints.
#[derive(Clone)]
pub struct Durability {
    pub store: Arc<Store>,
    pub keys: JobKeys,
    pub settings: Arc<CheckpointSettings>,
}

pub struct Job {
    pub plan: Arc<StreamPlan>,
    pub metrics: Arc<JobMetrics>,
    pub view: Arc<ViewStore>,
    /// None for a job restored as finished or paused (nothing runs).
    checkpoints: Option<CheckpointHandle>,
    supervisor: JoinHandle<()>,
    /// Tells the supervisor to stop every task and wait for them.
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Job {
    fn drop(&mut self) {
        // Aborting the supervisor drops its JoinSet, which aborts every task;
        // the readers stop when their channels close.
        self.supervisor.abort();
    }
}

impl Job {
    pub fn start(
        plan: Arc<StreamPlan>,
        state: &SessionState,
        runtime: &tokio::runtime::Handle,
        config: &JobConfig,
        dead_letters: Arc<DeadLetterQueue>,
        durability: &Durability,
        paused: bool,
    ) -> Result<Job> {
        let store = &durability.store;
        let keys = durability.keys;
        let restored = Restored::load(store, keys)?.unwrap_or_default();
        let last_epoch = restored.record.epoch;
        // State is kept per instance: a restored job keeps its parallelism.
        let p = match restored.record.parallelism {
            0 => config.parallelism.max(1),
            p => p,
        };
        let physical = Arc::new(physical_plan(state, &plan)?);
        // Each input: its source, how its rows are processed, and its
        // preparer (a join has two; the right side's pipelines are numbered
        // after the left side's).
        let mut inputs: Vec<(&SourcePlan, Arc<JobPhysical>, Arc<Preparer>)> = vec![(
            &plan.source,
            physical.clone(),
            Arc::new(Preparer::new(state, &plan.source)?),
        )];
        let join = match &plan.join {
            Some(j) => {
                let right = &j.right;
                inputs.push((
                    &right.source,
                    Arc::new(input_physical(
                        state,
                        &right.source,
                        right.window.as_ref(),
                        &right.pre,
                        j.right_time.is_some(),
                    )?),
                    Arc::new(Preparer::new(state, &right.source)?),
                ));
                Some(Arc::new(PhysicalJoin::new(state, j)?))
            }
            None => None,
        };
        let metrics = Arc::new(JobMetrics::new(&plan.view, p * inputs.len()));
        // A job's cache is shared by its view shards and state tables.
        let cache = config.state_cache_bytes / (2 * p);
        let durable = Durable {
            store: store.clone(),
            keys,
            cache_bytes: plan.rows_cache.map_or(cache, |c| (c / p).min(cache)),
        };
        let rows = match &plan.rows {
            ViewRows::Kept => Rows::Kept,
            ViewRows::Discarded => Rows::Discarded,
            ViewRows::Printed { identifier } => {
                Rows::Printed(Printer::new(identifier, plan.key_schema().as_ref())?)
            }
        };
        let view = Arc::new(
            ViewStore::new(plan.output.clone(), p, !plan.appends_only(), Some(durable))?
                .with_rows(rows),
        );
        if last_epoch > 0 {
            view.restore()?;
            for (slot, values) in &restored.counters {
                if let Some(c) = metrics.parts().get(*slot) {
                    c.restore(*values);
                }
            }
            tracing::info!(view = %plan.view, epoch = last_epoch, "restored from checkpoint");
        }
        if restored.record.finished || paused {
            if restored.record.finished {
                metrics.advance_watermark(i64::MAX);
                metrics.set_finished();
            } else {
                if let Some(w) = restored
                    .aggregate_watermarks
                    .iter()
                    .min()
                    .filter(|w| **w != i64::MIN)
                {
                    metrics.advance_watermark(*w);
                }
                metrics.set_paused();
            }
            return Ok(Job {
                plan,
                metrics,
                view,
                checkpoints: None,
                supervisor: runtime.spawn(async {}),
                stop: None,
            });
        }
        let mut tasks: JoinSet<Result<()>> = JoinSet::new();
        let rank = match &plan.rank {
            Some(r) => Some(Arc::new(PhysicalRank::new(state, r)?)),
            None => None,
        };
        let finals = p * (usize::from(physical.aggregate.is_some()) + usize::from(rank.is_some()));
        let joins = if join.is_some() { p } else { 0 };
        let pipelines = p * inputs.len();
        let (coordinator, acks, barriers, checkpoints) = Coordinator::new(
            keys,
            store.clone(),
            p,
            pipelines + joins + finals,
            last_epoch,
            durability.settings.clone(),
            metrics.clone(),
        );
        let mut acks = acks.into_iter();
        let mut pipeline_acks: Vec<Acks> = (0..pipelines)
            .map(|_| acks.next().expect("an ack per pipeline"))
            .collect();
        let output_watermarks = Arc::new(Mutex::new(WatermarkCombiner::new(p)));

        // Top-N instances, each fed by every pipeline (or by every join
        // instance, or by every final aggregation instance).
        let mut rank_owners: Vec<mpsc::Sender<Envelope>> = Vec::new();
        if let Some(rank) = &rank {
            for i in 0..p {
                let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
                rank_owners.push(tx);
                let out = Materialize::new(
                    view.clone(),
                    i,
                    Part::Final(i),
                    physical.post.clone(),
                    metrics.clone(),
                    dead_letters.clone(),
                );
                let table = StateTable::resume(store.clone(), keys.rank(i), cache, last_epoch > 0)?;
                let mut operator = TopN::new(rank.clone(), table, out, metrics.clone())?;
                if last_epoch > 0 {
                    operator.restore_watermark(
                        restored
                            .aggregate_watermarks
                            .get(i)
                            .copied()
                            .unwrap_or(i64::MIN),
                    );
                }
                let owner = FinalTopN {
                    operator,
                    watermarks: WatermarkCombiner::new(p),
                    keys,
                    instance: i,
                    // Over an aggregation, the aggregation's watermark is
                    // the one saved.
                    saves_watermark: physical.aggregate.is_none(),
                };
                let acks = acks.next().expect("an ack per top-N instance");
                tasks.spawn_on(run_owner(rx, owner, p, acks, None), runtime);
            }
        }
        // Final aggregation instances, each fed by every pipeline (or by
        // every join instance).
        let mut owners: Vec<mpsc::Sender<Envelope>> = Vec::new();
        if let Some(agg) = &physical.aggregate {
            let emit = match &rank {
                // A window top-N ranks each window's final rows.
                Some(_) => crate::dataflow::plan::EmitMode::OnWindowClose,
                None => plan.emit,
            };
            for i in 0..p {
                let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
                owners.push(tx);
                let (out, output) = match (&rank, &plan.rank) {
                    (Some(rank), Some(rank_plan)) => (
                        AggregateOutput::Rank {
                            ops: Arc::new(
                                rank_plan
                                    .ops
                                    .iter()
                                    .map(|op| PhysicalOp::new(state, op))
                                    .collect::<Result<Vec<_>>>()?,
                            ),
                            keys: rank.partition.clone(),
                            owners: rank_owners.len(),
                            outbox: Vec::new(),
                            hashes: Vec::new(),
                            part: Part::Final(i),
                            metrics: metrics.clone(),
                            dead_letters: dead_letters.clone(),
                        },
                        Some(OwnerOutput {
                            instance: i,
                            owners: rank_owners.clone(),
                        }),
                    ),
                    _ => (
                        AggregateOutput::View(Materialize::new(
                            view.clone(),
                            i,
                            Part::Final(i),
                            physical.post.clone(),
                            metrics.clone(),
                            dead_letters.clone(),
                        )),
                        None,
                    ),
                };
                let table =
                    StateTable::resume(store.clone(), keys.aggregate(i), cache, last_epoch > 0)?;
                let mut operator =
                    WindowAggregate::new(agg.clone(), emit, table, out, metrics.clone())?;
                if last_epoch > 0 {
                    let watermark = restored
                        .aggregate_watermarks
                        .get(i)
                        .copied()
                        .unwrap_or(i64::MIN);
                    operator.restore_watermark(watermark);
                }
                let owner = FinalAggregate {
                    operator,
                    watermarks: WatermarkCombiner::new(p),
                    keys,
                    instance: i,
                };
                let acks = acks.next().expect("an ack per final instance");
                tasks.spawn_on(run_owner(rx, owner, p, acks, output), runtime);
            }
        } else {
            owners = std::mem::take(&mut rank_owners);
        }
        drop(rank_owners);
        // Join instances, each fed by every pipeline of both sides; they
        // write the view, or feed the final aggregation or the top-N.
        if let Some((join, join_plan)) = join.as_ref().zip(plan.join.as_ref()) {
            let ops = Arc::new(
                join_plan
                    .ops
                    .iter()
                    .map(|op| PhysicalOp::new(state, op))
                    .collect::<Result<Vec<_>>>()?,
            );
            let finals = std::mem::take(&mut owners);
            for i in 0..p {
                let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
                owners.push(tx);
                let onward = match (&physical.aggregate, &rank) {
                    (Some(agg), _) => Some(Onward::Aggregate {
                        partial: PartialAggregate::new(agg.clone())?,
                        routing: agg.routing.clone(),
                    }),
                    (None, Some(rank)) => Some(Onward::Partition {
                        keys: rank.partition.clone(),
                    }),
                    (None, None) => None,
                };
                let (out, output) = match onward {
                    None => (
                        JoinOutput::View(Materialize::new(
                            view.clone(),
                            i,
                            Part::Final(i),
                            ops.clone(),
                            metrics.clone(),
                            dead_letters.clone(),
                        )),
                        None,
                    ),
                    Some(onward) => (
                        JoinOutput::Owners {
                            ops: ops.clone(),
                            onward,
                            owners: finals.len(),
                            dead_letters: dead_letters.clone(),
                            sent: i64::MIN,
                        },
                        Some(OwnerOutput {
                            instance: i,
                            owners: finals.clone(),
                        }),
                    ),
                };
                let mut operator = StreamJoin::new(
                    join.clone(),
                    i,
                    p,
                    out,
                    output_watermarks.clone(),
                    metrics.clone(),
                    keys,
                    store,
                    cache / 2,
                    last_epoch > 0,
                )?;
                if last_epoch > 0 {
                    operator.restore(store)?;
                }
                let acks = acks.next().expect("an ack per join instance");
                tasks.spawn_on(run_owner(rx, operator, 2 * p, acks, output), runtime);
            }
        }
        tasks.spawn_on(coordinator.run(), runtime);
        // The sides of a join run at most the interval plus 2 s apart in
        // event time.
        let alignment = plan.join.as_ref().map(|j| {
            Arc::new(Alignment::new(
                p,
                ALIGNMENT_DRIFT_MS.saturating_add(j.upper_ms.saturating_sub(j.lower_ms)),
            ))
        });
        for (side, (source, side_physical, preparer)) in inputs.iter().enumerate() {
            for i in 0..p {
                // The pipeline's number in the job.
                let n = side * p + i;
                let splits: HashMap<String, _> =
                    restored.splits.get(n).cloned().unwrap_or_default();
                let (tx, rx) = mpsc::channel(SOURCE_CHANNEL_CAPACITY);
                let reader = source.spec.create_reader(ReaderContext {
                    job: plan.view.clone(),
                    instance: i,
                    parallelism: p,
                    part: n,
                    schema: source.physical.clone(),
                    declared: source.declared.clone(),
                    batch_size: config.batch_size,
                    linger: config.linger,
                    metrics: metrics.clone(),
                    dead_letters: dead_letters.clone(),
                    preparer: preparer.clone(),
                    barriers: barriers.clone(),
                    resume: splits
                        .iter()
                        .map(|(k, v)| (k.clone(), v.position))
                        .collect(),
                    store: store.clone(),
                    alignment: alignment.clone(),
                })?;
                std::thread::Builder::new()
                    .name(format!("sluice-read-{n}"))
                    .stack_size(crate::options::THREAD_STACK_BYTES)
                    .spawn(move || {
                        let out = EventSender::new(tx);
                        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            reader.run(&out)
                        })) {
                            Ok(Ok(())) => {}
                            Ok(Err(e)) => out.fail(e),
                            Err(_) => out.fail(Error::internal("a source reader panicked")),
                        }
                    })
                    .map_err(|e| {
                        Error::external(format!("could not start a reader thread: {e}"))
                    })?;
                let downstream = match (&physical.aggregate, &join) {
                    (None, None) if rank.is_some() => Downstream::Keyed {
                        keys: rank.as_ref().expect("a top-N").partition.clone(),
                        owners: owners.clone(),
                        pending: vec![Vec::new(); owners.len()],
                    },
                    (_, Some(join)) => Downstream::Keyed {
                        keys: join
                            .keys(if side == 0 { Side::Left } else { Side::Right })
                            .to_vec(),
                        owners: owners.clone(),
                        pending: vec![Vec::new(); owners.len()],
                    },
                    (Some(agg), None) => Downstream::Aggregate {
                        partial: PartialAggregate::new(agg.clone())?,
                        owners: owners.clone(),
                    },
                    (None, None) => Downstream::Append {
                        out: Materialize::new(
                            view.clone(),
                            i,
                            Part::Pipeline(i),
                            physical.post.clone(),
                            metrics.clone(),
                            dead_letters.clone(),
                        ),
                        watermark: output_watermarks.clone(),
                    },
                };
                let watermarks = splits.into_iter().map(|(k, v)| (k, v.watermark)).collect();
                let pipeline = Pipeline::new(
                    n,
                    side_physical.clone(),
                    downstream,
                    metrics.clone(),
                    dead_letters.clone(),
                    config.flush_interval,
                    PipelineCheckpoint {
                        keys,
                        acks: pipeline_acks.remove(0),
                        restored: watermarks,
                    },
                );
                // Aggregating a view whose rows change: the pipeline keeps
                // its rows to take them back.
                let prior = match (&physical.aggregate, plan.source.changes()) {
                    (Some(_), Some(_)) => Some(PriorRows::new(
                        store.clone(),
                        keys.prior_rows(n),
                        cache,
                        source.schema.clone(),
                        last_epoch > 0,
                    )?),
                    _ => None,
                };
                tasks.spawn_on(
                    pipeline.align(alignment.clone()).retract(prior).run(rx),
                    runtime,
                );
            }
        }
        drop(owners);
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let supervisor = runtime.spawn(supervise(tasks, metrics.clone(), stopped));
        Ok(Job {
            plan,
            metrics,
            view,
            checkpoints: Some(checkpoints),
            supervisor,
            stop: Some(stop),
        })
    }

    /// Stops every task and waits until none runs: after this, the job
    /// writes nothing more to the store.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.supervisor).await;
    }

    /// A handle to ask for a checkpoint and wait for it, without holding
    /// the job; None when it does not run (finished, paused, failed): then
    /// it has nothing more to save.
    pub fn checkpoint_waiter(&self) -> Option<CheckpointHandle> {
        self.checkpoints
            .clone()
            .filter(|_| self.metrics.status().0 == crate::metrics::JobStatus::Running)
    }

    /// Takes a checkpoint now and waits (up to `timeout`) for its commit.
    /// True if it was committed (or the job has nothing more to save).
    pub async fn checkpoint_now(&self, timeout: Duration) -> bool {
        match self.checkpoint_waiter() {
            Some(c) => c.checkpoint_now(timeout).await,
            None => true,
        }
    }
}

/// The delay of the usual watermark `ts - INTERVAL '5' SECOND` (or `ts`), so
/// that it is computed as a subtraction of milliseconds rather than with
/// calendar intervals. Only for whole milliseconds, where both agree.
fn fixed_delay(expr: &Expr, rowtime: &str) -> Option<i64> {
    match expr {
        Expr::Column(c) if c.name == rowtime => Some(0),
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Minus,
            right,
        }) => {
            let Expr::Column(c) = left.as_ref() else {
                return None;
            };
            if c.name != rowtime {
                return None;
            }
            crate::dataflow::plan::literal_interval_ms(right)
        }
        _ => None,
    }
}

/// Builds the physical form of a plan, shared by all instances (for a join
/// of two streams, of its left input).
fn physical_plan(state: &SessionState, plan: &StreamPlan) -> Result<JobPhysical> {
    let mut physical = input_physical(
        state,
        &plan.source,
        plan.window.as_ref(),
        &plan.pre,
        plan.join.as_ref().is_some_and(|j| j.left_time.is_some()),
    )?;
    if plan.join.is_none() {
        physical.late_after = plan.drops_late_rows().then(|| plan.allowed_lateness());
    }
    // Over a view whose rows change, rows are upserted by the upstream's
    // key: its filters and projections are applied as the view's post
    // operations (a row filtered out is deleted).
    let post = match plan.source.changes() {
        Some(_) if plan.aggregate.is_none() => std::mem::take(&mut physical.pre),
        _ => plan
            .post
            .iter()
            .map(|op| PhysicalOp::new(state, op))
            .collect::<Result<Vec<_>>>()?,
    };
    physical.post = Arc::new(post);
    physical.aggregate = match &plan.aggregate {
        Some(a) => Some(Arc::new(PhysicalAggregate::new(state, a)?)),
        None => None,
    };
    Ok(physical)
}

/// The physical form of one input: its watermarks, window and operations
/// on its rows. The sides of a join with a time bound (`join_side`) drop
/// their late rows: those late for their window, or without window, those
/// at or below their split's watermark. A regular join takes every row.
fn input_physical(
    state: &SessionState,
    source: &SourcePlan,
    window: Option<&WindowPlan>,
    pre: &[StatelessOp],
    join_side: bool,
) -> Result<JobPhysical> {
    // Processing-time windows: rows are stamped as they are processed, and
    // each stamp - 1 ms is its watermark (time only moves forward, but the
    // rows of a batch share their stamp).
    let proctime = window.filter(|w| w.processing_time).map(|w| w.time_index);
    let rowtime = match &source.rowtime {
        _ if proctime.is_some() => proctime.map(|index| (index, WatermarkFn::Delay(1))),
        Some(rt) if matches!(source.spec.connector, ConnectorSpec::View(_)) => {
            Some((rt.index, WatermarkFn::Given))
        }
        Some(rt) => {
            let watermark = match fixed_delay(&rt.watermark, &rt.column) {
                Some(ms) => WatermarkFn::Delay(ms),
                None => WatermarkFn::Expr(physical_expr(state, &rt.watermark, &source.schema_df)?),
            };
            Some((rt.index, watermark))
        }
        None => None,
    };
    let pre = pre
        .iter()
        .map(|op| PhysicalOp::new(state, op))
        .collect::<Result<Vec<_>>>()?;
    Ok(JobPhysical {
        drop_late: join_side && window.is_none() && rowtime.is_some(),
        late_after: (join_side && window.is_some()).then_some(0),
        rowtime,
        window: window.cloned(),
        pre,
        aggregate: None,
        post: Arc::new(Vec::new()),
        idle_timeout: source.spec.idle_timeout,
        connector: source.spec.connector.clone(),
        proctime,
    })
}

/// A final aggregation instance, with the watermarks of its inputs.
struct FinalAggregate {
    operator: WindowAggregate,
    watermarks: WatermarkCombiner,
    keys: JobKeys,
    instance: usize,
}

impl FinalAggregate {
    /// Fires what the watermark closes; a top-N downstream gets the
    /// watermark after the rows.
    fn advance(&mut self, combined: Option<i64>) -> Result<()> {
        let Some(combined) = combined else {
            return Ok(());
        };
        self.operator.on_watermark(combined)?;
        self.operator.out.push(Message::Watermark(combined));
        Ok(())
    }
}

impl Owner for FinalAggregate {
    fn on_batch(&mut self, from: usize, batch: RecordBatch) -> Result<()> {
        self.watermarks.on_data(from);
        self.operator.on_partial(batch)
    }

    fn on_watermark(&mut self, from: usize, watermark: i64) -> Result<()> {
        let combined = self.watermarks.on_watermark(from, watermark);
        self.advance(combined)
    }

    fn on_idle(&mut self, from: usize) -> Result<()> {
        let combined = self.watermarks.on_idle(from);
        self.advance(combined)
    }

    fn take_outbox(&mut self, into: &mut Vec<Outgoing>) {
        self.operator.out.take_outbox(into);
    }

    fn after_checkpoint(&mut self, epoch: u64) {
        self.operator.out.push(Message::Barrier(epoch));
    }

    fn on_barrier(&mut self, from: usize) {
        self.watermarks.on_data(from);
    }

    fn checkpoint(&mut self, writes: &mut Writes) -> Result<()> {
        self.operator.checkpoint(&self.keys, self.instance, writes)
    }

    fn committed(&mut self) -> Result<()> {
        self.operator.committed()
    }

    fn cache_use(&self) -> f64 {
        self.operator.cache_use()
    }

    fn early_every(&self) -> Option<Duration> {
        self.operator.early_every()
    }

    fn emit_early(&mut self) -> Result<()> {
        self.operator.emit_early()
    }
}

/// A top-N instance, with the watermarks of its inputs.
struct FinalTopN {
    operator: TopN,
    watermarks: WatermarkCombiner,
    keys: JobKeys,
    instance: usize,
    saves_watermark: bool,
}

impl Owner for FinalTopN {
    fn on_batch(&mut self, from: usize, batch: RecordBatch) -> Result<()> {
        self.watermarks.on_data(from);
        self.operator.on_rows(batch)
    }

    fn on_watermark(&mut self, from: usize, watermark: i64) -> Result<()> {
        match self.watermarks.on_watermark(from, watermark) {
            Some(combined) => self.operator.on_watermark(combined),
            None => Ok(()),
        }
    }

    fn on_idle(&mut self, from: usize) -> Result<()> {
        match self.watermarks.on_idle(from) {
            Some(combined) => self.operator.on_watermark(combined),
            None => Ok(()),
        }
    }

    fn on_barrier(&mut self, from: usize) {
        self.watermarks.on_data(from);
    }

    fn checkpoint(&mut self, writes: &mut Writes) -> Result<()> {
        self.operator
            .checkpoint(&self.keys, self.instance, self.saves_watermark, writes)
    }

    fn committed(&mut self) -> Result<()> {
        self.operator.committed()
    }

    fn cache_use(&self) -> f64 {
        self.operator.cache_use()
    }
}

async fn supervise(
    mut tasks: JoinSet<Result<()>>,
    metrics: Arc<JobMetrics>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    loop {
        let result = tokio::select! {
            next = tasks.join_next() => match next {
                Some(result) => result,
                None => break,
            },
            _ = &mut stop => {
                tasks.shutdown().await;
                return;
            }
        };
        let failure = match result {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => e.to_string(),
            Err(e) if e.is_panic() => {
                let text = e
                    .into_panic()
                    .downcast::<String>()
                    .map(|s| *s)
                    .or_else(|p| p.downcast::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|_| "unknown panic".into());
                format!("internal error: an operator panicked: {text}")
            }
            Err(_) => return,
        };
        tracing::error!(job = %metrics.name, error = %failure, "job failed");
        metrics.set_failed(failure);
        // Wait until every task has stopped: a failed job writes nothing more.
        tasks.shutdown().await;
        return;
    }
    tracing::info!(job = %metrics.name, "job finished");
    metrics.set_finished();
}
