//! A job: the running dataflow of one view.
//!
//! With parallelism P, a job runs P readers (threads: reading and decoding),
//! P pipelines (tasks: watermarks, windows, filters, partial aggregation)
//! and, for aggregations, P final aggregation tasks, each owning the groups
//! that hash to it. Channels are bounded, so a slow operator slows its
//! source and memory stays bounded.
//!
//! A supervisor watches the tasks: when one fails the job is marked failed
//! with the error (and stops); when all end, the job is finished. Dropping
//! the job stops everything.

use std::sync::Arc;
use std::time::Duration;

use datafusion::common::ScalarValue;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator};
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

use crate::connector::{EventSender, ReaderContext};
use crate::dataflow::materialize::Materialize;
use crate::dataflow::message::{Envelope, Message};
use crate::dataflow::partial_aggregate::PartialAggregate;
use crate::dataflow::physical::{physical_expr, PhysicalAggregate, PhysicalOp};
use crate::dataflow::pipeline::{Downstream, JobPhysical, Pipeline, WatermarkFn};
use crate::dataflow::plan::StreamPlan;
use crate::dataflow::prepare::Preparer;
use crate::dataflow::watermark::WatermarkCombiner;
use crate::dataflow::window_aggregate::WindowAggregate;
use crate::error::{Error, Result};
use crate::metrics::{DeadLetterQueue, JobMetrics};
use crate::state::view::ViewStore;

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
        }
    }
}

pub struct Job {
    pub plan: Arc<StreamPlan>,
    pub metrics: Arc<JobMetrics>,
    pub view: Arc<ViewStore>,
    supervisor: JoinHandle<()>,
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
    ) -> Result<Job> {
        let p = config.parallelism.max(1);
        let physical = Arc::new(physical_plan(state, &plan)?);
        let preparer = Arc::new(Preparer::new(state, &plan.source)?);
        let metrics = Arc::new(JobMetrics::new(&plan.view));
        let view = Arc::new(ViewStore::new(
            plan.output.clone(),
            p,
            plan.aggregate.is_some(),
        ));
        let mut tasks: JoinSet<Result<()>> = JoinSet::new();

        // Final aggregation instances, each fed by every pipeline.
        let mut owners: Vec<mpsc::Sender<Envelope>> = Vec::new();
        if let Some(agg) = &physical.aggregate {
            for i in 0..p {
                let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
                owners.push(tx);
                let out = Materialize::new(
                    view.clone(),
                    i,
                    physical.post.clone(),
                    metrics.clone(),
                    dead_letters.clone(),
                );
                let operator = WindowAggregate::new(agg.clone(), plan.emit, out, metrics.clone())?;
                tasks.spawn_on(run_final(rx, operator, p), runtime);
            }
        }
        let append_watermark = Arc::new(Mutex::new(WatermarkCombiner::new(p)));
        for i in 0..p {
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
                        physical.post.clone(),
                        metrics.clone(),
                        dead_letters.clone(),
                    ),
                    watermark: append_watermark.clone(),
                },
            };
            let pipeline = Pipeline::new(
                i,
                physical.clone(),
                plan.source.spec.idle_timeout,
                downstream,
                metrics.clone(),
                dead_letters.clone(),
                config.flush_interval,
            );
            tasks.spawn_on(pipeline.run(rx), runtime);
        }
        drop(owners);
        let supervisor = runtime.spawn(supervise(tasks, metrics.clone()));
        Ok(Job {
            plan,
            metrics,
            view,
            supervisor,
        })
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
    let rowtime = match &plan.source.rowtime {
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
        drops_late: plan.drops_late_rows(),
        pre,
        aggregate,
        post: Arc::new(post),
    })
}

async fn run_final(
    mut input: mpsc::Receiver<Envelope>,
    mut operator: WindowAggregate,
    inputs: usize,
) -> Result<()> {
    let mut watermarks = WatermarkCombiner::new(inputs);
    while let Some(envelope) = input.recv().await {
        match envelope.message {
            Message::Batch(batch) => {
                watermarks.on_data(envelope.from);
                operator.on_partial(batch)?;
            }
            Message::Watermark(w) => {
                if let Some(combined) = watermarks.on_watermark(envelope.from, w) {
                    operator.on_watermark(combined)?;
                }
            }
            Message::Idle => {
                if let Some(combined) = watermarks.on_idle(envelope.from) {
                    operator.on_watermark(combined)?;
                }
            }
        }
    }
    Ok(())
}

async fn supervise(mut tasks: JoinSet<Result<()>>, metrics: Arc<JobMetrics>) {
    while let Some(result) = tasks.join_next().await {
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
        tasks.abort_all();
        return;
    }
    tracing::info!(job = %metrics.name, "job finished");
    metrics.set_finished();
}
