//! The Kafka sink: writes the rows of a view to a topic, one JSON object
//! per message (`CREATE SINK name FROM view WITH ('connector' = 'kafka',
//! ...)`).
//!
//! A sink reads the view's committed log, as a view over a view does (see
//! `view.rs`): only views whose rows never change once shown (no
//! aggregation, or final window rows) have one, and they are written
//! append-only. Each upstream shard's position (the next batch) is saved in
//! the store once the broker has acknowledged every message before it, so a
//! restart resends at most what was unacknowledged: at-least-once.
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
use crate::state::view::ViewLog;
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
    log: ViewLog,
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
    let mut saved: Vec<u64> = match store.get_meta(&positions_key(id))? {
        Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            Error::external(format!(
                "the positions of sink \"{name}\" are unreadable: {e}"
            ))
        })?,
        None => Vec::new(),
    };
    saved.resize(shards, 0);
    let metrics = Arc::new(JobMetrics::new(name, 1));
    let mut writer = Writer {
        topic: spec.topic,
        producer,
        log,
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
    log: ViewLog,
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
            let sent = self.log.read_turn(&mut next, |_, batch| self.send(&batch));
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
        let mut lines = Vec::new();
        {
            let mut writer = arrow::json::LineDelimitedWriter::new(&mut lines);
            writer.write(batch)?;
            writer.finish()?;
        }
        let mut rows = 0u64;
        for line in lines.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let mut record = BaseRecord::<(), [u8]>::to(&self.topic).payload(line);
            loop {
                match self.producer.send(record) {
                    Ok(()) => break,
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
            rows += 1;
        }
        let c = self.metrics.part(Part::Reader(0));
        c.rows_in.fetch_add(rows, Ordering::Relaxed);
        c.rows_out.fetch_add(rows, Ordering::Relaxed);
        Ok(())
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
