//! Sources: where rows come from, and how raw records become Arrow batches.
//!
//! A source table's `WITH (...)` options are parsed once into a
//! [`SourceSpec`]. When a job starts, the source creates one [`SourceReader`]
//! per parallel instance; each reader owns some of the source's splits (Kafka
//! partitions, file byte ranges, a generator) and runs on its own thread,
//! reading and decoding (see [`format`]) into batches of the source's physical
//! columns, which it sends to its instance's pipeline as [`SourceEvent`]s.
//!
//! Each split has a name (`partition-3`, a file and byte range,
//! `generator`) and a position (an `i64` whose meaning is the connector's).
//! When a checkpoint is asked for, a reader sends a barrier carrying the
//! position of each of its splits, in line with its rows; after a restart,
//! it resumes each split from the position saved for its name.
//!
//! Readers never stop on a bad record: it is counted in the job's `bad_rows`,
//! kept in the dead-letter queue with its position, and skipped. Readers of
//! unbounded sources never stop on an unreachable broker either: they report
//! the problem on the job's status and retry.
//!
//! Only `kafka.rs` names `rdkafka`.

pub mod datagen;
pub mod file_sink;
pub mod filesystem;
pub mod format;
pub mod generator;
pub mod kafka;
pub mod kafka_sink;
pub mod nexmark;
pub mod print;
pub mod sink;
pub mod upsert_kafka;
pub mod view;

use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use tokio::sync::mpsc;

use crate::dataflow::checkpoint::BarrierTrigger;
use crate::error::{Error, Result};
use crate::metrics::{DeadLetterQueue, JobMetrics};
use crate::options::Options;

/// The position of a split that has been read to its end.
pub const SPLIT_DONE: i64 = i64::MAX;

pub use format::FormatSpec;

/// A source's connector and its options, validated.
#[derive(Debug, Clone)]
pub struct SourceSpec {
    pub connector: ConnectorSpec,
    /// `scan.watermark.idle-timeout`: a split that has caught up and sent
    /// nothing for this long stops holding back the watermark. `None`
    /// disables idleness detection.
    pub idle_timeout: Option<Duration>,
}

/// The default `scan.watermark.idle-timeout`: an idle Kafka partition stops
/// holding back windows after this long (Flink's default is to wait forever,
/// a top complaint of its users).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub enum ConnectorSpec {
    Kafka(kafka::KafkaSpec),
    Filesystem(filesystem::FileSpec),
    Datagen(datagen::DatagenSpec),
    Nexmark(nexmark::NexmarkSpec),
    /// Another view's log (a view over a view; never from WITH options).
    View(view::ViewSpec),
    /// A table that can only be written (`print`, `blackhole`): INSERT INTO
    /// it runs a sink (see [`sink::SinkSpec`]).
    WriteOnly(sink::SinkSpec),
}

impl ConnectorSpec {
    pub fn name(&self) -> &'static str {
        match self {
            ConnectorSpec::Kafka(_) => "kafka",
            ConnectorSpec::Filesystem(_) => "filesystem",
            ConnectorSpec::Datagen(_) => "datagen",
            ConnectorSpec::Nexmark(_) => "nexmark",
            ConnectorSpec::View(_) => "view",
            ConnectorSpec::WriteOnly(s) => s.connector(),
        }
    }

    /// Whether the source ends (then its final watermark closes every window).
    pub fn is_bounded(&self) -> bool {
        match self {
            ConnectorSpec::Kafka(_) => false,
            ConnectorSpec::Filesystem(_) => true,
            ConnectorSpec::Datagen(d) => d.number_of_rows.is_some(),
            ConnectorSpec::Nexmark(n) => n.events.is_some(),
            ConnectorSpec::View(v) => v.bounded,
            ConnectorSpec::WriteOnly(_) => true,
        }
    }

    /// A one-line description for EXPLAIN.
    /// A row's position in its split, as dead letters show positions:
    /// `topic calls partition 2 offset 42`, `file /data/calls.json byte
    /// 1234` (where its record starts), `row 17` (a generated row).
    pub fn describe_position(&self, split: &str, position: i64) -> String {
        match self {
            ConnectorSpec::Kafka(k) => format!(
                "topic {} {} offset {position}",
                k.topic,
                split.replace('-', " ")
            ),
            ConnectorSpec::Filesystem(_) => {
                let path = split.rsplit_once('@').map(|(p, _)| p).unwrap_or(split);
                format!("file {path} byte {position}")
            }
            ConnectorSpec::Datagen(_) => format!("row {position}"),
            ConnectorSpec::Nexmark(_) => format!("event {position}"),
            ConnectorSpec::View(v) => format!(
                "view {} {} batch {position}",
                v.view,
                split.replace('-', " ")
            ),
            ConnectorSpec::WriteOnly(_) => format!("row {position}"),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            ConnectorSpec::Kafka(k) => format!(
                "KafkaSource: topic={} servers={} startup={} format={}",
                k.topic,
                k.bootstrap_servers,
                k.startup.as_str(),
                k.format.name()
            ),
            ConnectorSpec::Filesystem(f) => {
                format!(
                    "FileSource: path={} format={}",
                    f.path.display(),
                    f.format.name()
                )
            }
            ConnectorSpec::Datagen(d) => format!(
                "DatagenSource: rows-per-second={} number-of-rows={}",
                d.rows_per_second,
                d.number_of_rows
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| "unbounded".into())
            ),
            ConnectorSpec::View(v) => format!("ViewSource: view={} shards={}", v.view, v.shards),
            ConnectorSpec::Nexmark(n) => format!(
                "NexmarkSource: events={}",
                n.events
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| "unbounded".into())
            ),
            ConnectorSpec::WriteOnly(s) => format!("{} table (written only)", s.connector()),
        }
    }
}

impl SourceSpec {
    /// Parses and validates a source's `WITH (...)` options against its
    /// physical schema.
    pub fn from_options(entries: &[(String, String)], schema: &SchemaRef) -> Result<Self> {
        let mut all = Options::new("the source", entries);
        let connector = all.require("connector").map_err(|_| {
            Error::not_supported(
                "tables without a connector are not supported yet; add WITH ('connector' = 'kafka' | 'filesystem' | 'datagen', ...)",
            )
        })?;
        let mut opts = Options::new(format!("connector \"{connector}\""), entries);
        opts.take("connector");
        let idle_timeout = opts.take_duration("scan.watermark.idle-timeout")?;
        let idle_timeout = match idle_timeout {
            None => Some(DEFAULT_IDLE_TIMEOUT),
            Some(d) if d.is_zero() => None,
            Some(d) => Some(d),
        };
        // `sink.*` options are for writing into the table (INSERT INTO),
        // checked when it is created (see `Database::add_source`).
        opts.take_prefixed("sink.");
        let connector = match connector.to_ascii_lowercase().as_str() {
            "kafka" => ConnectorSpec::Kafka(kafka::KafkaSpec::from_options(&mut opts, schema)?),
            "filesystem" => {
                ConnectorSpec::Filesystem(filesystem::FileSpec::from_options(&mut opts, schema)?)
            }
            "datagen" => {
                ConnectorSpec::Datagen(datagen::DatagenSpec::from_options(&mut opts, schema)?)
            }
            "nexmark" => {
                ConnectorSpec::Nexmark(nexmark::NexmarkSpec::from_options(&mut opts, schema)?)
            }
            "print" | "blackhole" => {
                return Ok(SourceSpec {
                    connector: ConnectorSpec::WriteOnly(sink::SinkSpec::from_options(entries)?),
                    idle_timeout,
                });
            }
            "upsert-kafka" => {
                // Such a table is a keyed table (see `upsert_kafka.rs`),
                // never a stream source.
                return Err(Error::internal(
                    "an upsert-kafka table was bound as a stream source",
                ));
            }
            other => {
                return Err(Error::invalid_parameter(format!(
                    "unknown connector \"{other}\"; Sluice has kafka, upsert-kafka (tables with a PRIMARY KEY), filesystem, datagen and nexmark, and print and blackhole to write to"
                )))
            }
        };
        opts.finish()?;
        Ok(SourceSpec {
            connector,
            idle_timeout,
        })
    }

    /// Checks what can be checked when a view that reads the source is
    /// created (the path of a file source exists: a table that INSERT
    /// writes need not have one before). Not done when a server restores
    /// its catalog: a file gone since then fails the views that read it,
    /// not the server.
    pub fn check(&self) -> Result<()> {
        match &self.connector {
            ConnectorSpec::Filesystem(f) => f.files().map(|_| ()),
            _ => Ok(()),
        }
    }

    /// Creates the reader of instance `ctx.instance` of `ctx.parallelism`.
    pub fn create_reader(&self, ctx: ReaderContext) -> Result<Box<dyn SourceReader>> {
        Ok(match &self.connector {
            ConnectorSpec::Kafka(spec) => Box::new(kafka::KafkaReader::new(spec.clone(), ctx)?),
            ConnectorSpec::Filesystem(spec) => {
                Box::new(filesystem::FileReader::new(spec.clone(), ctx)?)
            }
            ConnectorSpec::Datagen(spec) => {
                Box::new(datagen::DatagenReader::new(spec.clone(), ctx))
            }
            ConnectorSpec::Nexmark(spec) => {
                Box::new(nexmark::NexmarkReader::new(spec.clone(), ctx))
            }
            ConnectorSpec::View(spec) => {
                let store = ctx.store.clone();
                Box::new(view::ViewReader::new(spec.clone(), ctx, store)?)
            }
            ConnectorSpec::WriteOnly(s) => return Err(write_only(&ctx.job, s)),
        })
    }
}

/// Why table `name` (a print or blackhole table) cannot be read.
pub fn write_only(name: &str, spec: &sink::SinkSpec) -> Error {
    Error::not_supported(format!(
        "\"{name}\" is a {} table: it can only be written (INSERT INTO {name} SELECT ...)",
        spec.connector()
    ))
}

/// Everything a reader needs from the job it feeds.
#[derive(Clone)]
pub struct ReaderContext {
    /// The job (view) name, for dead letters and logs.
    pub job: String,
    pub instance: usize,
    pub parallelism: usize,
    /// The job's number of this reader, whose counters it adds to: its
    /// instance, or for the right side of a join, parallelism + instance.
    pub part: usize,
    /// The physical columns to decode into.
    pub schema: SchemaRef,
    /// The same columns named as the records spell them (see
    /// [`crate::dataflow::plan::SourcePlan::declared`]).
    pub declared: SchemaRef,
    /// Rows per batch at most (`batch.size`).
    pub batch_size: usize,
    /// How long a partial batch may wait for more rows (`batch.linger`).
    pub linger: Duration,
    pub metrics: Arc<JobMetrics>,
    pub dead_letters: Arc<DeadLetterQueue>,
    pub preparer: Arc<dyn RowPreparer>,
    /// Asks for checkpoint barriers.
    pub barriers: Arc<BarrierTrigger>,
    /// Split name -> where to resume it (from the last checkpoint).
    pub resume: std::collections::HashMap<String, i64>,
    /// The server's store (where views over views read their upstream).
    pub store: Arc<crate::state::Store>,
    /// For a side of a join of two streams: waits while it runs ahead of
    /// the other side (with its pipeline's number among the join's inputs).
    pub alignment: Option<(Arc<crate::dataflow::stream_join::Alignment>, usize)>,
}

impl ReaderContext {
    /// This reader's counters.
    pub fn counters(&self) -> &crate::metrics::Counters {
        self.metrics.part(crate::metrics::Part::Reader(self.part))
    }

    /// The epoch of a checkpoint barrier to send, if one is asked for
    /// (newer than `seen`, which it then becomes). Readers call it between
    /// batches; a side of a join that runs ahead of the other waits here
    /// (barriers still pass).
    pub fn poll_barrier(&self, seen: &mut u64) -> Option<u64> {
        match &self.alignment {
            None => self.barriers.poll(seen),
            Some((a, n)) => a.wait(*n, || self.barriers.poll(seen)),
        }
    }

    /// A barrier for `epoch` with the splits' positions and what this
    /// reader has counted so far.
    pub fn barrier(&self, epoch: u64, positions: Vec<i64>) -> SourceEvent {
        SourceEvent::Barrier {
            epoch,
            positions,
            counted: self.counters().snapshot(),
        }
    }

    /// Sends a generated batch of split 0 whose row r has position `first +
    /// r * stride` (datagen, nexmark), without the rows its computed
    /// columns reject; false if the pipeline is gone.
    pub fn send_generated(
        &self,
        out: &EventSender,
        batch: arrow::array::RecordBatch,
        first: i64,
        stride: i64,
    ) -> Result<bool> {
        let n = batch.num_rows();
        let prepared = self.preparer.prepare(batch)?;
        let mut rejected = prepared.rejected.iter().map(|(r, _)| *r).peekable();
        let positions = (0..n)
            .filter(|r| {
                let skip = rejected.peek() == Some(r);
                if skip {
                    rejected.next();
                }
                !skip
            })
            .map(|r| first + r as i64 * stride)
            .collect();
        self.counters().rows_in.fetch_add(
            prepared.batch.num_rows() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        Ok(out.send(SourceEvent::Rows {
            split: 0,
            batch: prepared.batch,
            positions,
        }))
    }

    /// Where the split `name` resumes, if a checkpoint saved it.
    pub fn resume_position(&self, name: &str) -> Option<i64> {
        self.resume.get(name).copied()
    }

    /// Counts and keeps a record that could not be used.
    pub fn dead_letter(&self, position: String, raw: &[u8], error: String) {
        self.counters()
            .bad_rows
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::debug!(job = %self.job, %position, %error, "bad record");
        self.dead_letters.push(&self.job, position, raw, error);
    }
}

/// What a reader sends to its instance's pipeline.
#[derive(Debug)]
pub enum SourceEvent {
    /// The reader owns these splits (by name), numbered 0..n in this order
    /// (sent first, once).
    Assigned { names: Vec<String> },
    /// Rows of one split, in the split's order, with every column of the
    /// source (computed ones included) and an event time on every row; and
    /// each row's position in its split (see
    /// [`ConnectorSpec::describe_position`]).
    Rows {
        split: usize,
        batch: RecordBatch,
        positions: Vec<i64>,
    },
    /// Changes of a view whose rows change, read by a view over it: each
    /// key's new row, or its delete.
    Changes {
        split: usize,
        changes: crate::state::view::KeyedChanges,
    },
    /// The split has no more data for now (a Kafka partition's end).
    CaughtUp { split: usize },
    /// Every later row of the split is later than `watermark` (but for late
    /// rows): for splits whose watermark is given, not made from their rows
    /// (a view over a view goes by its upstream's).
    Watermark { split: usize, watermark: i64 },
    /// The split has ended (bounded sources).
    SplitEnd { split: usize },
    /// A checkpoint barrier: every row of this reader before it belongs to
    /// `epoch`, and split i goes on from `positions[i]` (or is done:
    /// [`SPLIT_DONE`]); `counted` is the reader's counters then.
    Barrier {
        epoch: u64,
        positions: Vec<i64>,
        counted: [u64; 4],
    },
}

/// Turns decoded physical rows into the source's full rows: adds computed
/// columns and rejects rows that cannot be used (no event time). Runs on the
/// reader's thread, where the raw records are still at hand for dead letters.
pub trait RowPreparer: Send + Sync {
    fn prepare(&self, physical: RecordBatch) -> Result<Prepared>;
}

pub struct Prepared {
    /// The good rows, with every column of the source.
    pub batch: RecordBatch,
    /// Rows of the input that were rejected, with the reason.
    pub rejected: Vec<(usize, String)>,
}

/// The sending end of a reader: blocking, for reader threads.
pub struct EventSender {
    tx: mpsc::Sender<Result<SourceEvent>>,
}

impl EventSender {
    pub fn new(tx: mpsc::Sender<Result<SourceEvent>>) -> Self {
        EventSender { tx }
    }

    /// Sends an event, waiting while the pipeline is busy (backpressure).
    /// Returns false when the job is gone and the reader should stop.
    pub fn send(&self, event: SourceEvent) -> bool {
        self.tx.blocking_send(Ok(event)).is_ok()
    }

    /// Reports that the reader failed for good (the job fails).
    pub fn fail(&self, error: Error) {
        let _ = self.tx.blocking_send(Err(error));
    }

    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// A connector's thread of its own, outside any job (a sink, the loader of
/// an upsert-kafka table): it runs until stopped, and its failure marks its
/// metrics failed.
pub struct Worker {
    pub metrics: Arc<JobMetrics>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Worker {
    /// Runs `run` on a thread named `thread_name`; `run` returns once the
    /// flag it is given is set. `what` names it in logs.
    pub fn spawn(
        thread_name: String,
        what: &'static str,
        metrics: Arc<JobMetrics>,
        run: impl FnOnce(&std::sync::atomic::AtomicBool) -> Result<()> + Send + 'static,
    ) -> Result<Worker> {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopping = stop.clone();
        let m = metrics.clone();
        let thread = std::thread::Builder::new()
            .name(thread_name)
            .stack_size(crate::options::THREAD_STACK_BYTES)
            .spawn(move || {
                if let Err(e) = run(&stopping) {
                    tracing::error!(job = %m.name, error = %e, "{what} failed");
                    m.set_failed(e.to_string());
                }
            })
            .map_err(|e| Error::external(format!("could not start a {what} thread: {e}")))?;
        Ok(Worker {
            metrics,
            stop,
            thread: Some(thread),
        })
    }

    /// Asks the thread to stop and waits until it has.
    pub fn stop(mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Reads some splits of a source. Runs on a thread of its own.
pub trait SourceReader: Send {
    /// Reads until every split has ended (bounded sources) or the pipeline
    /// has gone away. Errors are for the unrecoverable; bad records and
    /// unreachable brokers are handled inside.
    fn run(self: Box<Self>, out: &EventSender) -> Result<()>;
}
