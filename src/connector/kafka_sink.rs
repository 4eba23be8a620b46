//! The Kafka sink: writes the rows of a view to a topic, one JSON object
//! per message (`CREATE SINK name FROM view WITH ('connector' = 'kafka',
//! ...)`).
//!
//! A sink reads what the view's checkpoints commit. A view whose rows never
//! change once shown (no aggregation, or final window rows) is written
//! append-only from its log, as a view over a view reads it (see
//! `view.rs`). A view whose rows change is written as upserts: the message
//! key is the row's key (its group columns, as a JSON object), the value
//! its new row, or none (a tombstone) when the row is deleted; first every
//! row it has, then its changes as they commit. Each upstream shard's
//! position (the next batch or changes entry) is saved in the store once the
//! broker has acknowledged every message before it, so a restart resends at
//! most what was unacknowledged: at-least-once.
//!
//! Only this file and `kafka.rs` name `rdkafka`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::ClientContext;

use crate::connector::Worker;
use crate::error::{Error, Result};
use crate::metrics::{JobMetrics, Part};
use crate::options::Options;
use crate::state::view::{Feed, KeyedChanges};
use crate::state::Store;

/// How often acknowledged positions are saved while rows flow.
const SAVE_EVERY: Duration = Duration::from_secs(1);
/// How long a sink that has caught up waits before looking again.
const POLL: Duration = Duration::from_millis(20);

/// A Kafka sink's options, validated.
#[derive(Debug, Clone)]
pub struct KafkaSinkSpec {
    pub topic: String,
    pub bootstrap_servers: String,
    /// `properties.*`, passed to librdkafka.
    pub properties: Vec<(String, String)>,
}

impl KafkaSinkSpec {
    pub fn from_options(entries: &[(String, String)]) -> Result<Self> {
        let mut opts = Options::new("the sink", entries);
        let connector = opts.require("connector")?;
        if !connector.eq_ignore_ascii_case("kafka") {
            return Err(Error::invalid_parameter(format!(
                "unknown sink connector \"{connector}\"; Sluice has kafka"
            )));
        }
        let topic = opts.require("topic")?;
        let bootstrap_servers = opts.require("properties.bootstrap.servers")?;
        if let Some(format) = opts.take("format") {
            if !format.eq_ignore_ascii_case("json") {
                return Err(Error::invalid_parameter(format!(
                    "sink format \"{format}\" is not supported; Sluice writes json"
                )));
            }
        }
        match opts.take("sink.delivery-guarantee").as_deref() {
            None | Some("at-least-once") => {}
            Some("exactly-once") => {
                return Err(Error::not_supported(
                    "'sink.delivery-guarantee' = 'exactly-once' is not supported yet; the sink is at-least-once",
                ))
            }
            Some(other) => {
                return Err(Error::invalid_parameter(format!(
                    "invalid 'sink.delivery-guarantee' \"{other}\"; use at-least-once"
                )))
            }
        }
        let properties = opts.take_prefixed("properties.");
        opts.finish()?;
        Ok(KafkaSinkSpec {
            topic,
            bootstrap_servers,
            properties,
        })
    }
}

/// Notes failed deliveries, so positions past them are not saved.
struct Deliveries {
    failed: AtomicBool,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            tracing::debug!(error = %e, "a sink message was not delivered");
            self.failed.store(true, Ordering::Relaxed);
        }
    }
}

/// Where a sink's positions are saved.
fn positions_key(id: u64) -> String {
    format!("sink/{id:020}")
}

/// Starts sink `id` (named `name`): a thread writing `log`, which has
/// `shards` shards, from the positions it saved.
pub fn start(
    name: &str,
    id: u64,
    spec: KafkaSinkSpec,
    feed: Feed,
    shards: usize,
    store: Arc<Store>,
) -> Result<Worker> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &spec.bootstrap_servers)
        .set("linger.ms", "5");
    for (k, v) in &spec.properties {
        config.set(k, v);
    }
    let producer: BaseProducer<Deliveries> = config
        .create_with_context(Deliveries {
            failed: AtomicBool::new(false),
        })
        .map_err(|e| Error::invalid_parameter(format!("invalid sink properties: {e}")))?;
    let (mut saved, snapshot): (Vec<u64>, bool) = match store.get_meta(&positions_key(id))? {
        Some(bytes) => (
            serde_json::from_slice(&bytes).map_err(|e| {
                Error::external(format!(
                    "the positions of sink \"{name}\" are unreadable: {e}"
                ))
            })?,
            false,
        ),
        // A new sink of a view whose rows change first writes every row
        // the view has.
        None => (Vec::new(), matches!(feed, Feed::Changes(_))),
    };
    saved.resize(shards, 0);
    let metrics = Arc::new(JobMetrics::new(name, 1));
    let mut writer = Writer {
        topic: spec.topic,
        producer,
        feed,
        snapshot,
        next: saved.clone(),
        saved,
        store,
        key: positions_key(id),
        metrics: metrics.clone(),
    };
    Worker::spawn(format!("sluice-sink-{id}"), "sink", metrics, move |stop| {
        writer.run(stop)
    })
}

/// Forgets a dropped sink's positions.
pub fn forget(store: &Store, id: u64) -> Result<()> {
    store.delete_meta(&positions_key(id))
}

struct Writer {
    topic: String,
    producer: BaseProducer<Deliveries>,
    feed: Feed,
    /// Whether the view's rows are still to be written, before its changes.
    snapshot: bool,
    /// Per shard: the next batch to send, and the next one after the last
    /// acknowledged and saved.
    next: Vec<u64>,
    saved: Vec<u64>,
    store: Arc<Store>,
    key: String,
    metrics: Arc<JobMetrics>,
}

impl Writer {
    fn run(&mut self, stop: &AtomicBool) -> Result<()> {
        let mut last_save = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let mut next = std::mem::take(&mut self.next);
            let sent = match &self.feed {
                Feed::Appends(log) => log.read_turn(&mut next, |_, batch| self.send(&batch)),
                Feed::Changes(changes) if self.snapshot => {
                    let mut sent = Ok(true);
                    for (shard, next) in next.iter_mut().enumerate() {
                        match changes.snapshot(shard, |c| self.send_changes(&c)) {
                            Ok(after) => *next = after,
                            Err(e) => {
                                sent = Err(e);
                                break;
                            }
                        }
                    }
                    sent
                }
                Feed::Changes(changes) => {
                    changes.read_turn(&mut next, |_, c| self.send_changes(&c))
                }
            };
            if matches!(sent, Ok(true)) {
                self.snapshot = false;
            }
            self.next = next;
            let sent = sent?;
            self.producer.poll(Duration::ZERO);
            let pending = self.next != self.saved;
            if pending && (!sent || last_save.elapsed() >= SAVE_EVERY) {
                self.acknowledge()?;
                last_save = Instant::now();
            }
            if !sent {
                std::thread::sleep(POLL);
            }
        }
        if self.next != self.saved {
            self.acknowledge()?;
        }
        Ok(())
    }

    /// One message per row.
    fn send(&self, batch: &RecordBatch) -> Result<()> {
        let lines = JsonLines::of(batch)?;
        for i in 0..lines.len() {
            self.produce(None, Some(lines.line(i)))?;
        }
        self.count(lines.len());
        Ok(())
    }

    /// One message per change: its key, and its new row or none.
    fn send_changes(&self, changes: &KeyedChanges) -> Result<()> {
        let keys = JsonLines::of(&changes.keys)?;
        let rows = JsonLines::of(&changes.rows)?;
        for (i, at) in changes.rows_at.iter().enumerate() {
            self.produce(Some(keys.line(i)), at.map(|row| rows.line(row)))?;
        }
        self.count(keys.len());
        Ok(())
    }

    fn count(&self, messages: usize) {
        let c = self.metrics.part(Part::Reader(0));
        c.rows_in.fetch_add(messages as u64, Ordering::Relaxed);
        c.rows_out.fetch_add(messages as u64, Ordering::Relaxed);
    }

    /// Queues a message, waiting while the producer's queue is full.
    fn produce(&self, key: Option<&[u8]>, payload: Option<&[u8]>) -> Result<()> {
        let mut record = BaseRecord::<[u8], [u8]>::to(&self.topic);
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(payload) = payload {
            record = record.payload(payload);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    self.producer.poll(Duration::from_millis(50));
                }
                Err((e, _)) => {
                    return Err(Error::external(format!(
                        "could not write to topic \"{}\": {e}",
                        self.topic
                    )))
                }
            }
        }
    }

    /// Waits until the broker has every message sent, then saves the
    /// positions; if some were not delivered, sends again from the saved
    /// positions (at-least-once).
    fn acknowledge(&mut self) -> Result<()> {
        match self.producer.flush(Duration::from_secs(10)) {
            Ok(())
                if !self
                    .producer
                    .context()
                    .failed
                    .swap(false, Ordering::Relaxed) =>
            {
                let value =
                    serde_json::to_vec(&self.next).map_err(|e| Error::internal(e.to_string()))?;
                self.store.put_meta(&self.key, &value)?;
                self.saved = self.next.clone();
                self.metrics.set_problem(None);
            }
            result => {
                let why = match result {
                    Err(e) => e.to_string(),
                    Ok(()) => "some messages were not delivered".to_string(),
                };
                self.metrics.set_problem(Some(format!(
                    "could not write to topic \"{}\" ({why}); retrying",
                    self.topic
                )));
                self.next = self.saved.clone();
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        Ok(())
    }
}

/// A batch's rows as JSON objects, one per row, in one buffer.
struct JsonLines {
    text: Vec<u8>,
    /// Where each line ends in `text`.
    ends: Vec<usize>,
}

impl JsonLines {
    fn of(batch: &RecordBatch) -> Result<Self> {
        let mut text = Vec::new();
        {
            let mut writer = arrow::json::LineDelimitedWriter::new(&mut text);
            writer.write(batch)?;
            writer.finish()?;
        }
        let ends = text
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .map(|(i, _)| i)
            .collect();
        Ok(JsonLines { text, ends })
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    /// Line `i`, without its line break.
    fn line(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] + 1 };
        &self.text[start..self.ends[i]]
    }
}
