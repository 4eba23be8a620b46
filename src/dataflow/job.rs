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

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use datafusion::common::ScalarValue;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator};
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

use crate::connector::{ConnectorSpec, EventSender, ReaderContext};
use crate::dataflow::checkpoint::{Acks, CheckpointHandle, CheckpointSettings, Coordinator};
use crate::dataflow::materialize::Materialize;
use crate::dataflow::message::{Envelope, Message};
use crate::dataflow::partial_aggregate::PartialAggregate;
use crate::dataflow::physical::{physical_expr, PhysicalAggregate, PhysicalOp};
use crate::dataflow::pipeline::{
    Downstream, JobPhysical, Pipeline, PipelineCheckpoint, WatermarkFn,
};
use crate::dataflow::plan::StreamPlan;
use crate::dataflow::prepare::Preparer;
use crate::dataflow::watermark::WatermarkCombiner;
use crate::dataflow::window_aggregate::WindowAggregate;
use crate::error::{Error, Result};
use crate::metrics::{DeadLetterQueue, JobMetrics, Part};
use crate::state::checkpoint::{JobKeys, Restored};
use crate::state::table::StateTable;
use crate::state::view::{Durable, ViewStore};
use crate::state::Store;

/// Messages buffered between two operators.
const CHANNEL_CAPACITY: usize = 16;
/// Batches buffered between a reader and its pipeline.
const SOURCE_CHANNEL_CAPACITY: usize = 4;

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
        let preparer = Arc::new(Preparer::new(state, &plan.source)?);
        let metrics = Arc::new(JobMetrics::new(&plan.view, p));
        // A job's cache is shared by its view shards and state tables.
        let cache = config.state_cache_bytes / (2 * p);
        let durable = Durable {
            store: store.clone(),
            keys,
            cache_bytes: cache,
        };
        let view = Arc::new(ViewStore::new(
            plan.output.clone(),
            p,
            !plan.appends_only(),
            Some(durable),
        )?);
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
        let finals = if physical.aggregate.is_some() { p } else { 0 };
        let (coordinator, acks, barriers, checkpoints) = Coordinator::new(
            keys,
            store.clone(),
            p,
            p + finals,
            last_epoch,
            durability.settings.clone(),
            metrics.clone(),
        );
        let mut acks = acks.into_iter();
        let mut pipeline_acks: Vec<Acks> = (0..p)
            .map(|_| acks.next().expect("an ack per pipeline"))
            .collect();

        // Final aggregation instances, each fed by every pipeline.
        let mut owners: Vec<mpsc::Sender<Envelope>> = Vec::new();
        if let Some(agg) = &physical.aggregate {
            for i in 0..p {
                let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
                owners.push(tx);
                let out = Materialize::new(
                    view.clone(),
                    i,
                    Part::Final(i),
                    physical.post.clone(),
                    metrics.clone(),
                    dead_letters.clone(),
                );
                let table = if last_epoch > 0 {
                    StateTable::open(store.clone(), keys.aggregate(i), cache)?
                } else {
                    StateTable::new(Some(store.clone()), keys.aggregate(i), cache)
                };
                let mut operator =
                    WindowAggregate::new(agg.clone(), plan.emit, table, out, metrics.clone())?;
                if last_epoch > 0 {
                    let watermark = restored
                        .aggregate_watermarks
                        .get(i)
                        .copied()
                        .unwrap_or(i64::MIN);
                    operator.restore_watermark(watermark);
                }
                let checkpoint = FinalCheckpoint {
                    keys,
                    instance: i,
                    acks: acks.next().expect("an ack per final instance"),
                };
                tasks.spawn_on(run_final(rx, operator, p, checkpoint), runtime);
            }
        }
        tasks.spawn_on(coordinator.run(), runtime);
        let append_watermark = Arc::new(Mutex::new(WatermarkCombiner::new(p)));
        for i in 0..p {
            let splits: HashMap<String, _> = restored.splits.get(i).cloned().unwrap_or_default();
            let (tx, rx) = mpsc::channel(SOURCE_CHANNEL_CAPACITY);
            let reader = plan.source.spec.create_reader(ReaderContext {
                job: plan.view.clone(),
                instance: i,
                parallelism: p,
                schema: plan.source.physical.clone(),
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
            })?;
            std::thread::Builder::new()
                .name(format!("sluice-read-{i}"))
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
                .map_err(|e| Error::external(format!("could not start a reader thread: {e}")))?;
            let downstream = match &physical.aggregate {
                Some(agg) => Downstream::Aggregate {
                    partial: PartialAggregate::new(agg.clone())?,
                    owners: owners.clone(),
                },
                None => Downstream::Append {
                    out: Materialize::new(
                        view.clone(),
                        i,
                        Part::Pipeline(i),
                        physical.post.clone(),
                        metrics.clone(),
                        dead_letters.clone(),
                    ),
                    watermark: append_watermark.clone(),
                },
            };
            let watermarks = splits.into_iter().map(|(k, v)| (k, v.watermark)).collect();
            let pipeline = Pipeline::new(
                i,
                physical.clone(),
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
            tasks.spawn_on(pipeline.run(rx), runtime);
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
            match right.as_ref() {
                Expr::Literal(ScalarValue::IntervalMonthDayNano(Some(v)), _)
                    if v.months == 0 && v.nanoseconds % 1_000_000 == 0 =>
                {
                    Some(v.days as i64 * 86_400_000 + v.nanoseconds / 1_000_000)
                }
                Expr::Literal(ScalarValue::IntervalDayTime(Some(v)), _) => {
                    Some(v.days as i64 * 86_400_000 + v.milliseconds as i64)
                }
                _ => None,
            }
        }
        _ => None,
    }
}

/// Builds the physical form of a plan, shared by all instances.
fn physical_plan(state: &SessionState, plan: &StreamPlan) -> Result<JobPhysical> {
    // Processing-time windows: rows are stamped as they are processed, and
    // each stamp - 1 ms is its watermark (time only moves forward, but the
    // rows of a batch share their stamp).
    let proctime = plan
        .window
        .as_ref()
        .filter(|w| w.processing_time)
        .map(|w| w.time_index);
    let rowtime = match &plan.source.rowtime {
        _ if proctime.is_some() => proctime.map(|index| (index, WatermarkFn::Delay(1))),
        Some(rt) if matches!(plan.source.spec.connector, ConnectorSpec::View(_)) => {
            Some((rt.index, WatermarkFn::Given))
        }
        Some(rt) => {
            let watermark = match fixed_delay(&rt.watermark, &rt.column) {
                Some(ms) => WatermarkFn::Delay(ms),
                None => {
                    WatermarkFn::Expr(physical_expr(state, &rt.watermark, &plan.source.schema_df)?)
                }
            };
            Some((rt.index, watermark))
        }
        None => None,
    };
    let pre = plan
        .pre
        .iter()
        .map(|op| PhysicalOp::new(state, op))
        .collect::<Result<Vec<_>>>()?;
    let post = plan
        .post
        .iter()
        .map(|op| PhysicalOp::new(state, op))
        .collect::<Result<Vec<_>>>()?;
    let aggregate = match &plan.aggregate {
        Some(a) => Some(Arc::new(PhysicalAggregate::new(state, a)?)),
        None => None,
    };
    Ok(JobPhysical {
        rowtime,
        window: plan.window.clone(),
        late_after: plan.drops_late_rows().then(|| plan.allowed_lateness()),
        pre,
        aggregate,
        post: Arc::new(post),
        idle_timeout: plan.source.spec.idle_timeout,
        connector: plan.source.spec.connector.clone(),
        proctime,
    })
}

/// What a final aggregation instance needs to take part in checkpoints.
struct FinalCheckpoint {
    keys: JobKeys,
    instance: usize,
    acks: Acks,
}

/// Runs a final aggregation instance: combines its inputs' watermarks and
/// aligns their checkpoint barriers. Once an input's barrier has come, its
/// messages wait (in arrival order) until every other input's barrier has
/// come too or that input has ended; then the instance saves its state for
/// the epoch and takes the waiting messages.
async fn run_final(
    mut input: mpsc::Receiver<Envelope>,
    mut operator: WindowAggregate,
    inputs: usize,
    checkpoint: FinalCheckpoint,
) -> Result<()> {
    let mut watermarks = WatermarkCombiner::new(inputs);
    let mut ended = vec![false; inputs];
    // The epoch being aligned, and which inputs' barriers have come.
    let mut aligning: Option<u64> = None;
    let mut barrier_from = vec![false; inputs];
    let mut waiting: VecDeque<Envelope> = VecDeque::new();
    let mut memory = checkpoint.acks.memory();
    // EMIT EVERY: in-progress windows show on this clock.
    let mut early = operator.early_every().map(|every| {
        let mut t = tokio::time::interval(every);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    loop {
        let envelope = match waiting.pop_front() {
            Some(e) if aligning.is_none() => e,
            front => {
                if let Some(e) = front {
                    waiting.push_front(e);
                }
                tokio::select! {
                    next = input.recv() => match next {
                        Some(e) => e,
                        None => break,
                    },
                    () = memory.committed() => {
                        operator.committed()?;
                        memory.observe(operator.cache_use());
                        continue;
                    }
                    _ = async { early.as_mut().expect("checked").tick().await }, if early.is_some() => {
                        operator.emit_early()?;
                        continue;
                    }
                }
            }
        };
        let from = envelope.from;
        if aligning.is_some() && barrier_from[from] {
            waiting.push_back(envelope);
            continue;
        }
        match envelope.message {
            Message::Batch(batch) => {
                watermarks.on_data(from);
                operator.on_partial(batch)?;
                memory.observe(operator.cache_use());
            }
            Message::Watermark(w) => {
                if w == i64::MAX {
                    ended[from] = true;
                }
                if let Some(combined) = watermarks.on_watermark(from, w) {
                    operator.on_watermark(combined)?;
                }
            }
            Message::Idle => {
                if let Some(combined) = watermarks.on_idle(from) {
                    operator.on_watermark(combined)?;
                }
            }
            Message::Barrier(epoch) => {
                aligning = Some(epoch);
                barrier_from[from] = true;
                // Rows of this input may wait behind its barrier: until they
                // are taken, it must hold the watermark back even if it was
                // idle (it says idle again after the barrier if it still is).
                watermarks.on_data(from);
            }
        }
        if let Some(epoch) = aligning {
            if (0..inputs).all(|i| barrier_from[i] || ended[i]) {
                let mut writes = crate::state::Writes::default();
                operator.checkpoint(&checkpoint.keys, checkpoint.instance, &mut writes)?;
                checkpoint.acks.epoch(epoch, writes);
                memory.checkpointed(epoch);
                aligning = None;
                barrier_from.fill(false);
            }
        }
    }
    let mut writes = crate::state::Writes::default();
    if checkpoint.acks.saving() {
        operator.checkpoint(&checkpoint.keys, checkpoint.instance, &mut writes)?;
    }
    checkpoint.acks.ended(writes);
    Ok(())
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
