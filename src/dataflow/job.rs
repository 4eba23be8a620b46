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
use datafusion::physical_expr::PhysicalExpr;
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

use crate::connector::print::Printer;
use crate::connector::{ConnectorSpec, EventSender, ReaderContext};
use crate::dataflow::checkpoint::{Acks, CheckpointHandle, CheckpointSettings, Coordinator};
use crate::dataflow::materialize::Materialize;
use crate::dataflow::merge::Merge;
use crate::dataflow::message::Envelope;
use crate::dataflow::message::Message;
use crate::dataflow::owner::{run_owner, Outgoing, Owner, OwnerOutput, RowsOut};
use crate::dataflow::partial_aggregate::{Onward, PartialAggregate};
use crate::dataflow::physical::{physical_expr, PhysicalAggregate, PhysicalOp};
use crate::dataflow::pipeline::{
    Downstream, JobPhysical, Pipeline, PipelineCheckpoint, WatermarkFn,
};
use crate::dataflow::plan::{
    AggregatePlan, Node, NodeKind, RankPlan, Side, SourcePlan, StatelessOp, StreamJoinPlan,
    StreamPlan, ViewRows, WindowPlan,
};
use crate::dataflow::prepare::Preparer;
use crate::dataflow::retract::PriorRows;
use crate::dataflow::stream_join::{Alignment, PhysicalJoin, StreamJoin};
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
        // The stages: each scan runs P readers and pipelines, each other
        // node P owner instances.
        let nodes = plan.root.walk();
        let scans = nodes.iter().filter(|n| n.as_scan().is_some()).count();
        let stateful = nodes.len() - scans;
        let metrics = Arc::new(JobMetrics::new(&plan.view, p * scans, p * stateful));
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
                    .take(p)
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
        let (coordinator, acks, barriers, checkpoints) = Coordinator::new(
            keys,
            store.clone(),
            p,
            p * nodes.len(),
            last_epoch,
            durability.settings.clone(),
            metrics.clone(),
        );
        let mut builder = Builder {
            state,
            runtime,
            config,
            view_name: plan.view.clone(),
            p,
            store: store.clone(),
            keys,
            restored: &restored,
            resumed: last_epoch > 0,
            cache,
            metrics: metrics.clone(),
            dead_letters,
            view: view.clone(),
            tasks: JoinSet::new(),
            acks: acks.into_iter(),
            barriers,
            output_watermarks: Arc::new(Mutex::new(WatermarkCombiner::new(p))),
            aggregates_total: nodes
                .iter()
                .filter(|n| matches!(n.kind, NodeKind::Aggregate { .. }))
                .count(),
            numbered: Numbered::default(),
        };
        builder.build(&plan.root, Outlet::View, Late::Kept, None)?;
        let mut tasks = builder.tasks;
        tasks.spawn_on(coordinator.run(), runtime);
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

/// Where a stage's rows go.
enum Outlet {
    /// Into the view (the root's rows).
    View,
    /// Partially aggregated, each group to the aggregation instance that
    /// owns it.
    Aggregate {
        aggregate: Arc<PhysicalAggregate>,
        owners: Vec<mpsc::Sender<Envelope>>,
        /// The number of the stage's first instance among the owners'
        /// inputs.
        from: usize,
    },
    /// Each row to the instance that owns its key (a join's side, a top-N's
    /// partition).
    Keyed {
        keys: Vec<Arc<dyn PhysicalExpr>>,
        owners: Vec<mpsc::Sender<Envelope>>,
        from: usize,
    },
    /// Instance i's rows to owner i, as its input `from` (a union's
    /// inputs).
    Forward {
        owners: Vec<mpsc::Sender<Envelope>>,
        from: usize,
    },
}

impl Outlet {
    /// How instance `i` of a stage sends its rows to the owners
    /// downstream, and to which; None into the view.
    fn onward(&self, i: usize) -> Result<Option<(Onward, OwnerOutput)>> {
        Ok(match self {
            Outlet::View => None,
            Outlet::Aggregate {
                aggregate,
                owners,
                from,
            } => Some((
                Onward::Aggregate {
                    partial: PartialAggregate::new(aggregate.clone())?,
                    routing: aggregate.routing.clone(),
                },
                OwnerOutput {
                    instance: from + i,
                    owners: owners.clone(),
                },
            )),
            Outlet::Keyed { keys, owners, from } => Some((
                Onward::Partition { keys: keys.clone() },
                OwnerOutput {
                    instance: from + i,
                    owners: owners.clone(),
                },
            )),
            // No keys and one owner: every row to it.
            Outlet::Forward { owners, from } => Some((
                Onward::Partition { keys: Vec::new() },
                OwnerOutput {
                    instance: *from,
                    owners: vec![owners[i].clone()],
                },
            )),
        })
    }
}

/// What a scan does with rows late for the stage above it.
#[derive(Debug, Clone, Copy)]
enum Late {
    /// Nothing: every row counts.
    Kept,
    /// Rows late for their window (past this allowed lateness, ms) are
    /// dropped and counted.
    ForWindow(i64),
    /// A side of a join: with a time bound (`timed`), rows late for their
    /// window or at or below their split's watermark are dropped.
    JoinSide { timed: bool },
}

/// How many stages of each kind have been built: each stage's instances
/// are numbered after those of the stages of its kind before it (their
/// state's keys, their counters).
#[derive(Default)]
struct Numbered {
    scans: usize,
    aggregates: usize,
    ranks: usize,
    joins: usize,
    unions: usize,
}

/// Builds a job's stages from the root of its plan down.
struct Builder<'a> {
    state: &'a SessionState,
    runtime: &'a tokio::runtime::Handle,
    config: &'a JobConfig,
    view_name: String,
    p: usize,
    store: Arc<Store>,
    keys: JobKeys,
    restored: &'a Restored,
    resumed: bool,
    cache: usize,
    metrics: Arc<JobMetrics>,
    dead_letters: Arc<DeadLetterQueue>,
    view: Arc<ViewStore>,
    tasks: JoinSet<Result<()>>,
    acks: std::vec::IntoIter<Acks>,
    barriers: Arc<crate::dataflow::checkpoint::BarrierTrigger>,
    /// The view's watermark over the instances that write it.
    output_watermarks: Arc<Mutex<WatermarkCombiner>>,
    aggregates_total: usize,
    numbered: Numbered,
}

impl Builder<'_> {
    fn ack(&mut self) -> Result<Acks> {
        self.acks
            .next()
            .ok_or_else(|| Error::internal("a stage without a checkpoint participant"))
    }

    /// The watermark a stateful instance saved at the last checkpoint.
    fn saved_watermark(&self, slot: usize) -> i64 {
        self.restored
            .aggregate_watermarks
            .get(slot)
            .copied()
            .unwrap_or(i64::MIN)
    }

    fn physical_ops(&self, ops: &[StatelessOp]) -> Result<Arc<Vec<PhysicalOp>>> {
        Ok(Arc::new(
            ops.iter()
                .map(|op| PhysicalOp::new(self.state, op))
                .collect::<Result<Vec<_>>>()?,
        ))
    }

    fn materialize(&self, instance: usize, part: Part, ops: Arc<Vec<PhysicalOp>>) -> Materialize {
        Materialize::new(
            self.view.clone(),
            instance,
            part,
            ops,
            self.metrics.clone(),
            self.dead_letters.clone(),
        )
    }

    /// Where instance i of a stage that passes rows on (a join, a union)
    /// sends them: into view shard i, or on to the owners of the stage
    /// above.
    fn rows_out(
        &self,
        outlet: &Outlet,
        i: usize,
        ops: &Arc<Vec<PhysicalOp>>,
    ) -> Result<(RowsOut, Option<OwnerOutput>)> {
        Ok(match outlet.onward(i)? {
            None => (
                RowsOut::View(self.materialize(i, Part::Final(i), ops.clone())),
                None,
            ),
            Some((onward, output)) => (
                RowsOut::Owners {
                    ops: ops.clone(),
                    onward,
                    owners: output.owners.len(),
                    dead_letters: self.dead_letters.clone(),
                    sent: i64::MIN,
                    outbox: Vec::new(),
                    hashes: Vec::new(),
                },
                Some(output),
            ),
        })
    }

    /// P channels into a stage's instances, and their receivers.
    fn channels(&self) -> (Vec<mpsc::Sender<Envelope>>, Vec<mpsc::Receiver<Envelope>>) {
        (0..self.p).map(|_| mpsc::channel(CHANNEL_CAPACITY)).unzip()
    }

    /// Builds `node`'s stage, whose rows go to `outlet`, and the stages
    /// below it. `alignment` keeps a join's two scans close in event time.
    fn build(
        &mut self,
        node: &Node,
        outlet: Outlet,
        late: Late,
        alignment: Option<Arc<Alignment>>,
    ) -> Result<()> {
        match &node.kind {
            NodeKind::Scan { source, window } => {
                self.scan(node, source, window.as_ref(), outlet, late, alignment)
            }
            NodeKind::Aggregate { input, plan } => self.aggregate(node, input, plan, outlet),
            NodeKind::Rank { input, plan } => self.rank(node, input, plan, outlet),
            NodeKind::Join(join) => self.join(node, join, outlet),
            NodeKind::Union { inputs, schema } => self.union(node, inputs, schema, outlet, late),
        }
    }

    fn union(
        &mut self,
        node: &Node,
        inputs: &[Node],
        schema: &arrow::datatypes::SchemaRef,
        outlet: Outlet,
        late: Late,
    ) -> Result<()> {
        let p = self.p;
        let first = self.numbered.unions * p;
        self.numbered.unions += 1;
        let ops = self.physical_ops(&node.ops)?;
        let (senders, receivers) = self.channels();
        for (i, rx) in receivers.into_iter().enumerate() {
            let instance = first + i;
            let (out, output) = self.rows_out(&outlet, i, &ops)?;
            let operator = Merge::new(
                schema.clone(),
                inputs.len(),
                out,
                instance,
                self.output_watermarks.clone(),
                self.metrics.clone(),
                self.keys,
            );
            let acks = self.ack()?;
            self.tasks.spawn_on(
                run_owner(rx, operator, inputs.len(), acks, output),
                self.runtime,
            );
        }
        for (k, input) in inputs.iter().enumerate() {
            let outlet = Outlet::Forward {
                owners: senders.clone(),
                from: k,
            };
            self.build(input, outlet, late, None)?;
        }
        Ok(())
    }

    fn aggregate(
        &mut self,
        node: &Node,
        input: &Node,
        plan: &AggregatePlan,
        outlet: Outlet,
    ) -> Result<()> {
        let p = self.p;
        let first = self.numbered.aggregates * p;
        self.numbered.aggregates += 1;
        let aggregate = Arc::new(PhysicalAggregate::new(self.state, plan)?);
        let ops = self.physical_ops(&node.ops)?;
        let (senders, receivers) = self.channels();
        for (i, rx) in receivers.into_iter().enumerate() {
            let instance = first + i;
            let (out, output) = match outlet.onward(i)? {
                None => (
                    AggregateOutput::View(self.materialize(i, Part::Final(i), ops.clone())),
                    None,
                ),
                Some((onward, output)) => (
                    AggregateOutput::Owners {
                        ops: ops.clone(),
                        onward,
                        // Its rows change: the aggregation above takes a
                        // group's last row back when it changes.
                        prior: match &outlet {
                            Outlet::Aggregate { .. } if !plan.final_rows_only() => {
                                Some(Box::new(PriorRows::new(
                                    self.store.clone(),
                                    self.keys.last_rows(instance),
                                    self.cache,
                                    Arc::new(plan.output.as_arrow().clone()),
                                    self.resumed,
                                )?))
                            }
                            _ => None,
                        },
                        owners: output.owners.len(),
                        outbox: Vec::new(),
                        hashes: Vec::new(),
                        part: Part::Final(instance),
                        metrics: self.metrics.clone(),
                        dead_letters: self.dead_letters.clone(),
                    },
                    Some(output),
                ),
            };
            let table = StateTable::resume(
                self.store.clone(),
                self.keys.aggregate(instance),
                self.cache,
                self.resumed,
            )?;
            let mut operator = WindowAggregate::new(
                aggregate.clone(),
                plan.emit,
                table,
                out,
                self.metrics.clone(),
            )?;
            if self.resumed {
                operator.restore_watermark(self.saved_watermark(instance));
            }
            let owner = FinalAggregate {
                operator,
                watermarks: WatermarkCombiner::new(p),
                keys: self.keys,
                instance,
            };
            let acks = self.ack()?;
            self.tasks
                .spawn_on(run_owner(rx, owner, p, acks, output), self.runtime);
        }
        let late = match plan.fire_time {
            Some(_) => Late::ForWindow(plan.allowed_lateness),
            None => Late::Kept,
        };
        self.build(
            input,
            Outlet::Aggregate {
                aggregate,
                owners: senders,
                from: 0,
            },
            late,
            None,
        )
    }

    fn rank(&mut self, node: &Node, input: &Node, plan: &RankPlan, outlet: Outlet) -> Result<()> {
        let p = self.p;
        let first = self.numbered.ranks * p;
        self.numbered.ranks += 1;
        if !matches!(outlet, Outlet::View) {
            return Err(Error::not_supported(
                "a top-N below another operator is not supported in a materialized view yet",
            ));
        }
        let rank = Arc::new(PhysicalRank::new(self.state, plan)?);
        let ops = self.physical_ops(&node.ops)?;
        // Over an aggregation, the aggregation's watermark is the one saved
        // (its instance i's); otherwise its own, after the aggregations'.
        let over_aggregate = match &input.kind {
            NodeKind::Aggregate { .. } => Some(self.numbered.aggregates * p),
            _ => None,
        };
        let (senders, receivers) = self.channels();
        for (i, rx) in receivers.into_iter().enumerate() {
            let instance = first + i;
            let out = self.materialize(i, Part::Final(i), ops.clone());
            let table = StateTable::resume(
                self.store.clone(),
                self.keys.rank(instance),
                self.cache,
                self.resumed,
            )?;
            let mut operator = TopN::new(rank.clone(), table, out, self.metrics.clone())?;
            let slot = match over_aggregate {
                Some(first_aggregate) => first_aggregate + i,
                None => self.aggregates_total * p + instance,
            };
            if self.resumed {
                operator.restore_watermark(self.saved_watermark(slot));
            }
            let owner = FinalTopN {
                operator,
                watermarks: WatermarkCombiner::new(p),
                keys: self.keys,
                instance,
                watermark_slot: over_aggregate.is_none().then_some(slot),
            };
            let acks = self.ack()?;
            self.tasks
                .spawn_on(run_owner(rx, owner, p, acks, None), self.runtime);
        }
        let late = match plan.window_end {
            Some(_) => Late::ForWindow(0),
            None => Late::Kept,
        };
        self.build(
            input,
            Outlet::Keyed {
                keys: rank.partition.clone(),
                owners: senders,
                from: 0,
            },
            late,
            None,
        )
    }

    fn join(&mut self, node: &Node, plan: &StreamJoinPlan, outlet: Outlet) -> Result<()> {
        let p = self.p;
        let first = self.numbered.joins * p;
        self.numbered.joins += 1;
        let join = Arc::new(PhysicalJoin::new(self.state, plan)?);
        let ops = self.physical_ops(&node.ops)?;
        let (senders, receivers) = self.channels();
        for (i, rx) in receivers.into_iter().enumerate() {
            let instance = first + i;
            let (out, output) = self.rows_out(&outlet, i, &ops)?;
            let mut operator = StreamJoin::new(
                join.clone(),
                instance,
                p,
                out,
                self.output_watermarks.clone(),
                self.metrics.clone(),
                self.keys,
                &self.store,
                self.cache / 2,
                self.resumed,
            )?;
            if self.resumed {
                operator.restore(&self.store)?;
            }
            let acks = self.ack()?;
            self.tasks
                .spawn_on(run_owner(rx, operator, 2 * p, acks, output), self.runtime);
        }
        // Two scans joined run at most the interval plus 2 s apart in
        // event time.
        let alignment = match (plan.left.as_scan(), plan.right.as_scan()) {
            (Some(_), Some(_)) => Some(Arc::new(Alignment::new(
                p,
                ALIGNMENT_DRIFT_MS.saturating_add(plan.upper_ms.saturating_sub(plan.lower_ms)),
            ))),
            _ => None,
        };
        let late = Late::JoinSide {
            timed: plan.left_time.is_some(),
        };
        for (side, input) in [(Side::Left, &plan.left), (Side::Right, &plan.right)] {
            let outlet = Outlet::Keyed {
                keys: join.keys(side).to_vec(),
                owners: senders.clone(),
                from: if side == Side::Left { 0 } else { p },
            };
            self.build(input, outlet, late, alignment.clone())?;
        }
        Ok(())
    }

    fn scan(
        &mut self,
        node: &Node,
        source: &SourcePlan,
        window: Option<&WindowPlan>,
        outlet: Outlet,
        late: Late,
        alignment: Option<Arc<Alignment>>,
    ) -> Result<()> {
        let p = self.p;
        let first = self.numbered.scans * p;
        self.numbered.scans += 1;
        let mut physical = input_physical(self.state, source, window, &node.ops, late)?;
        match &outlet {
            // Over a view whose rows change, rows are upserted by the
            // upstream's key: its filters and projections are the view's
            // (a row filtered out is deleted).
            Outlet::View if source.changes().is_some() => {
                physical.post = Arc::new(std::mem::take(&mut physical.pre));
            }
            Outlet::Aggregate { aggregate, .. } => physical.aggregate = Some(aggregate.clone()),
            _ => {}
        }
        let physical = Arc::new(physical);
        let preparer = Arc::new(Preparer::new(self.state, source)?);
        for i in 0..p {
            // The pipeline's number in the job.
            let n = first + i;
            let splits: HashMap<String, _> =
                self.restored.splits.get(n).cloned().unwrap_or_default();
            let (tx, rx) = mpsc::channel(SOURCE_CHANNEL_CAPACITY);
            let sender = match &outlet {
                Outlet::View => i,
                Outlet::Aggregate { from, .. } | Outlet::Keyed { from, .. } => from + i,
                Outlet::Forward { from, .. } => *from,
            };
            let reader = source.spec.create_reader(ReaderContext {
                job: self.view_name.clone(),
                instance: i,
                parallelism: p,
                part: n,
                schema: source.physical.clone(),
                declared: source.declared.clone(),
                batch_size: self.config.batch_size,
                linger: self.config.linger,
                metrics: self.metrics.clone(),
                dead_letters: self.dead_letters.clone(),
                preparer: preparer.clone(),
                barriers: self.barriers.clone(),
                resume: splits
                    .iter()
                    .map(|(k, v)| (k.clone(), v.position))
                    .collect(),
                store: self.store.clone(),
                alignment: alignment.clone().map(|a| (a, sender)),
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
                .map_err(|e| Error::external(format!("could not start a reader thread: {e}")))?;
            let downstream = match &outlet {
                Outlet::View => Downstream::Append {
                    out: self.materialize(i, Part::Pipeline(i), physical.post.clone()),
                    watermark: self.output_watermarks.clone(),
                },
                Outlet::Aggregate {
                    aggregate, owners, ..
                } => Downstream::Aggregate {
                    partial: PartialAggregate::new(aggregate.clone())?,
                    owners: owners.clone(),
                },
                Outlet::Keyed { keys, owners, .. } => Downstream::Keyed {
                    keys: keys.clone(),
                    owners: owners.clone(),
                    pending: vec![Vec::new(); owners.len()],
                },
                Outlet::Forward { owners, .. } => Downstream::Keyed {
                    keys: Vec::new(),
                    owners: vec![owners[i].clone()],
                    pending: vec![Vec::new()],
                },
            };
            let watermarks = splits.into_iter().map(|(k, v)| (k, v.watermark)).collect();
            let pipeline = Pipeline::new(
                n,
                sender,
                physical.clone(),
                downstream,
                self.metrics.clone(),
                self.dead_letters.clone(),
                self.config.flush_interval,
                PipelineCheckpoint {
                    keys: self.keys,
                    acks: self.ack()?,
                    restored: watermarks,
                },
            );
            // Aggregating a view whose rows change: the pipeline keeps its
            // rows to take them back.
            let prior = match (&outlet, source.changes()) {
                (Outlet::Aggregate { .. }, Some(_)) => Some(PriorRows::new(
                    self.store.clone(),
                    self.keys.prior_rows(n),
                    self.cache,
                    source.schema.clone(),
                    self.resumed,
                )?),
                _ => None,
            };
            self.tasks.spawn_on(
                pipeline.align(alignment.clone()).retract(prior).run(rx),
                self.runtime,
            );
        }
        Ok(())
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

/// The physical form of a scan: its watermarks, window and operations on
/// its rows, and what it does with late rows.
fn input_physical(
    state: &SessionState,
    source: &SourcePlan,
    window: Option<&WindowPlan>,
    pre: &[StatelessOp],
    late: Late,
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
    // The sides of a join with a time bound drop their late rows: those
    // late for their window, or without window, those at or below their
    // split's watermark. A regular join takes every row.
    let (drop_late, late_after) = match late {
        Late::Kept => (false, None),
        Late::ForWindow(ms) => (false, Some(ms)),
        Late::JoinSide { timed } => (
            timed && window.is_none() && rowtime.is_some(),
            (timed && window.is_some()).then_some(0),
        ),
    };
    Ok(JobPhysical {
        drop_late,
        late_after,
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
    /// Where it saves its watermark (over an aggregation, the
    /// aggregation's is the one saved).
    watermark_slot: Option<usize>,
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
            .checkpoint(&self.keys, self.instance, self.watermark_slot, writes)
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
