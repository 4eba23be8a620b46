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
//! With `'sink.delivery-guarantee' = 'exactly-once'` the sink writes in
//! Kafka transactions, one per round of reading what the view committed (at
//! most one second of it). A transaction's last message carries a header,
//! `sluice-sink`, with the positions after it; it is sent once the broker
//! has every other message of the transaction, and then the transaction is
//! committed. The positions are thus committed with the messages, in Kafka,
//! atomically. On start (and after any failure) the sink takes over its
//! transactional id, which aborts a transaction left open, and reads its
//! topic back with `isolation.level = read_committed` from the offsets it
//! last saved: the newest header of its own tells where to go on. So a
//! `read_committed` consumer sees every row once, whatever crashed when.
//! The offsets and positions saved in the store only shorten that read.
//!
//! Only this file and `kafka.rs` name `rdkafka`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use arrow::array::{Array, AsArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Schema};
use parking_lot::Mutex;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Message};
use serde::{Deserialize, Serialize};

use crate::connector::upsert_kafka::KeyFormat;
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
    /// With `'sink.delivery-guarantee' = 'exactly-once'`: the prefix of its
    /// transactional id (`'sink.transactional-id-prefix'`, by default
    /// `sluice`; the sink's name follows it).
    pub transactional: Option<String>,
    /// `'key.fields'` and `'key.format'`: the columns each message is keyed
    /// by (an upsert-kafka table's primary key), instead of a changing
    /// view's group columns.
    pub key: Option<MessageKey>,
}

/// The columns a message key holds, and how it is written.
#[derive(Debug, Clone)]
pub struct MessageKey {
    pub fields: Vec<String>,
    /// A JSON object of the columns, or (`raw`) the one column's text: as
    /// an upsert-kafka table reads its keys.
    pub format: KeyFormat,
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
        let prefix = opts.take("sink.transactional-id-prefix");
        let transactional = match opts.take("sink.delivery-guarantee").as_deref() {
            None | Some("at-least-once") => None,
            Some("exactly-once") => Some(prefix.unwrap_or_else(|| "sluice".to_string())),
            Some(other) => {
                return Err(Error::invalid_parameter(format!(
                "invalid 'sink.delivery-guarantee' \"{other}\"; use at-least-once or exactly-once"
            )))
            }
        };
        let key = MessageKey::from_options(&mut opts)?;
        let properties = opts.take_prefixed("properties.");
        opts.finish()?;
        Ok(KafkaSinkSpec {
            topic,
            bootstrap_servers,
            properties,
            transactional,
            key,
        })
    }
}

impl MessageKey {
    /// Flink's `'key.fields'` (`a;b`) with `'key.format'` (json or raw).
    fn from_options(opts: &mut Options) -> Result<Option<Self>> {
        let format = opts.take("key.format");
        let Some(fields) = opts.take("key.fields") else {
            return match format {
                None => Ok(None),
                Some(_) => Err(Error::invalid_parameter(
                    "'key.format' needs 'key.fields': the columns the message key holds",
                )),
            };
        };
        let fields: Vec<String> = fields.split(';').map(|f| f.trim().to_string()).collect();
        let format = match format.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("json") => KeyFormat::Json,
            Some("raw") if fields.len() == 1 => KeyFormat::Raw,
            Some("raw") => {
                return Err(Error::invalid_parameter(
                    "'key.format' = 'raw' takes one column in 'key.fields'",
                ))
            }
            Some(other) => {
                return Err(Error::invalid_parameter(format!(
                    "'key.format' \"{other}\" is not supported; use json or raw"
                )))
            }
        };
        if fields.iter().any(String::is_empty) {
            return Err(Error::invalid_parameter(
                "'key.fields' names the key's columns, separated by ';'",
            ));
        }
        Ok(Some(MessageKey { fields, format }))
    }

    /// Where its fields are among `columns`, in its order; None if one
    /// is not there.
    fn positions(&self, columns: &Schema) -> Option<Vec<usize>> {
        self.fields
            .iter()
            .map(|f| {
                columns.index_of(f).ok().or_else(|| {
                    columns
                        .fields()
                        .iter()
                        .position(|c| c.name().eq_ignore_ascii_case(f))
                })
            })
            .collect()
    }

    /// Where its fields are in what `feed` gives: among the rows of a view
    /// whose rows never change, or, for one whose rows change, exactly the
    /// columns it keys its changes by (a deleted row has only those).
    fn positions_in(&self, feed: &Feed, rows: &Schema) -> Result<Vec<usize>> {
        let names = |s: &Schema| {
            s.fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        match feed {
            Feed::Appends(_) => self.positions(rows).ok_or_else(|| {
                Error::user(
                    crate::error::sqlstate::UNDEFINED_COLUMN,
                    format!(
                        "a column of the message key ({}) is not among the rows' columns ({})",
                        self.fields.join(", "),
                        names(rows)
                    ),
                )
            }),
            Feed::Changes(changes) => {
                let by = changes.key_schema();
                match self.positions(by) {
                    Some(p) if p.len() == by.fields().len() => Ok(p),
                    _ => Err(Error::not_supported(format!(
                        "the query's rows change by ({}), and the message key is ({}): each key's last row is written under its key, so the query must group by the key's columns",
                        names(by),
                        self.fields.join(", ")
                    ))),
                }
            }
        }
    }
}

/// The message keys of a batch's rows.
enum Keys {
    Json(JsonLines),
    Raw(StringArray),
}

impl Keys {
    /// The keys of `batch`'s rows: its columns at `positions`.
    fn of(batch: &RecordBatch, positions: &[usize], format: KeyFormat) -> Result<Self> {
        let key = batch.project(positions)?;
        Ok(match format {
            KeyFormat::Json => Keys::Json(JsonLines::of(&key)?),
            KeyFormat::Raw => {
                let text = arrow::compute::cast(key.column(0), &DataType::Utf8)?;
                Keys::Raw(text.as_string::<i32>().clone())
            }
        })
    }

    fn get(&self, i: usize) -> Option<&[u8]> {
        match self {
            Keys::Json(lines) => Some(lines.line(i)),
            Keys::Raw(text) => text.is_valid(i).then(|| text.value(i).as_bytes()),
        }
    }
}

/// Notes failed deliveries, so positions past them are not saved, and, in
/// transactions, the last offset written in each partition.
struct Deliveries {
    failed: AtomicBool,
    /// None when offsets are not needed (at-least-once).
    offsets: Option<Mutex<HashMap<i32, i64>>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(m) => {
                if let Some(offsets) = &self.offsets {
                    let mut offsets = offsets.lock();
                    let last = offsets.entry(m.partition()).or_insert(m.offset());
                    *last = (*last).max(m.offset());
                }
            }
            Err((e, _)) => {
                tracing::debug!(error = %e, "a sink message was not delivered");
                self.failed.store(true, Ordering::Relaxed);
            }
        }
    }
}

/// Where a sink's positions are saved.
fn positions_key(id: u64) -> String {
    format!("sink/{id:020}")
}

/// The header of the last message of each transaction of an exactly-once
/// sink: a [`Marker`] as JSON.
const MARKER: &str = "sluice-sink";
/// The header of every message of an exactly-once sink: where it comes
/// from (see [`Position`]).
const POSITION: &str = "sluice-pos";

/// Where an exactly-once sink's message comes from: the sink, the view's
/// shard, the batch (or changes entry) in it, and the row in that. A
/// message of a view's snapshot has none (it is not read again the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Position {
    sink: u64,
    shard: u32,
    seq: u64,
    row: u32,
}

impl Position {
    fn encode(&self) -> [u8; 24] {
        let mut b = [0u8; 24];
        b[..8].copy_from_slice(&self.sink.to_be_bytes());
        b[8..12].copy_from_slice(&self.shard.to_be_bytes());
        b[12..20].copy_from_slice(&self.seq.to_be_bytes());
        b[20..].copy_from_slice(&self.row.to_be_bytes());
        b
    }

    fn decode(b: &[u8]) -> Option<Position> {
        if b.len() != 24 {
            return None;
        }
        Some(Position {
            sink: u64::from_be_bytes(b[..8].try_into().ok()?),
            shard: u32::from_be_bytes(b[8..12].try_into().ok()?),
            seq: u64::from_be_bytes(b[12..20].try_into().ok()?),
            row: u32::from_be_bytes(b[20..].try_into().ok()?),
        })
    }
}

/// Kafka's murmur2 hash (that of its Java clients' default partitioner),
/// so a keyed message goes where other Kafka producers put that key.
fn murmur2(data: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    let mut h: u32 = 0x9747_b28c ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M) ^ k;
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        for (i, b) in tail.iter().enumerate().rev() {
            h ^= (*b as u32) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^ (h >> 15)
}

/// What a transaction's last message says: whose transaction, its number,
/// and the positions after it.
#[derive(Debug, Serialize, Deserialize)]
struct Marker {
    sink: u64,
    txn: u64,
    next: Vec<u64>,
}

/// What a sink saves in the store (at-least-once: only `next`, saved as a
/// bare list by earlier versions).
#[derive(Debug, Default, Serialize, Deserialize)]
struct Saved {
    /// Per shard: the next batch or changes entry to send.
    next: Vec<u64>,
    /// Exactly-once: the last transaction committed, and the last offset
    /// written in each partition (where reading the topic back starts).
    #[serde(default)]
    txn: u64,
    #[serde(default)]
    offsets: Vec<(i32, i64)>,
}

impl Saved {
    fn load(store: &Store, id: u64, name: &str) -> Result<Option<Saved>> {
        let Some(bytes) = store.get_meta(&positions_key(id))? else {
            return Ok(None);
        };
        let unreadable = |e: serde_json::Error| {
            Error::external(format!(
                "the positions of sink \"{name}\" are unreadable: {e}"
            ))
        };
        match serde_json::from_slice::<Saved>(&bytes) {
            Ok(saved) => Ok(Some(saved)),
            Err(_) => Ok(Some(Saved {
                next: serde_json::from_slice(&bytes).map_err(unreadable)?,
                ..Saved::default()
            })),
        }
    }
}

fn kafka_error(what: &str, e: KafkaError) -> Error {
    Error::external(format!("{what}: {e}"))
}

/// Starts sink `id` (named `name`): a thread writing `log`, which has
/// `shards` shards, from the positions it saved.
pub fn start(
    name: &str,
    id: u64,
    spec: KafkaSinkSpec,
    feed: Feed,
    shards: usize,
    schema: &Schema,
    store: Arc<Store>,
) -> Result<Worker> {
    let message_key = match &spec.key {
        Some(key) => Some((key.positions_in(&feed, schema)?, key.format)),
        None => None,
    };
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &spec.bootstrap_servers);
    for (k, v) in &spec.properties {
        config.set(k, v);
    }
    // Reading the topic back (exactly-once) sees what committed.
    let mut read_back = config.clone();
    read_back
        .set("group.id", format!("sluice-sink-{name}"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true");
    config.set("linger.ms", "5");
    if let Some(prefix) = &spec.transactional {
        config
            .set("transactional.id", format!("{prefix}-{name}"))
            .set("transaction.timeout.ms", "120000");
    }
    let producer = create_producer(&config, spec.transactional.is_some())?;
    let saved = Saved::load(&store, id, name)?;
    // A new sink of a view whose rows change first writes every row the
    // view has.
    let snapshot = saved.is_none() && matches!(feed, Feed::Changes(_));
    let mut saved = saved.unwrap_or_default();
    saved.next.resize(shards, 0);
    let metrics = Arc::new(JobMetrics::new(name, 1, 1));
    let mut writer = Writer {
        id,
        topic: spec.topic,
        transactional: spec.transactional.is_some(),
        config,
        read_back,
        producer,
        feed,
        snapshot,
        next: saved.next.clone(),
        saved: saved.next,
        txn: saved.txn,
        held: RefCell::new(None),
        open: Cell::new(false),
        offsets: HashMap::new(),
        partitions: 1,
        written: HashMap::new(),
        store,
        key: positions_key(id),
        metrics: metrics.clone(),
        message_key,
    };
    Worker::spawn(format!("sluice-sink-{id}"), "sink", metrics, move |stop| {
        writer.run(stop)
    })
}

/// A producer; `transactional` ones note the offsets they write.
fn create_producer(config: &ClientConfig, transactional: bool) -> Result<BaseProducer<Deliveries>> {
    config
        .create_with_context(Deliveries {
            failed: AtomicBool::new(false),
            offsets: transactional.then(|| Mutex::new(HashMap::new())),
        })
        .map_err(|e| Error::invalid_parameter(format!("invalid sink properties: {e}")))
}

/// Forgets a dropped sink's positions.
pub fn forget(store: &Store, id: u64) -> Result<()> {
    store.delete_meta(&positions_key(id))
}

/// A message held back: its key and payload (None for a tombstone), its
/// partition and where it comes from.
type Held = (Option<Vec<u8>>, Option<Vec<u8>>, i32, Option<Position>);

struct Writer {
    id: u64,
    topic: String,
    /// Whether it writes in transactions (exactly-once).
    transactional: bool,
    /// The producer's configuration (it is made again after a failure),
    /// and that of the consumer reading the topic back.
    config: ClientConfig,
    read_back: ClientConfig,
    producer: BaseProducer<Deliveries>,
    feed: Feed,
    /// Whether the view's rows are still to be written, before its changes.
    snapshot: bool,
    /// Per shard: the next batch to send, and the next one after the last
    /// acknowledged and saved (committed, for transactions).
    next: Vec<u64>,
    saved: Vec<u64>,
    /// The last transaction committed.
    txn: u64,
    /// In a transaction: the last message, held back to be sent last with
    /// the transaction's marker.
    held: RefCell<Option<Held>>,
    /// Whether a transaction is open (one begins with its first message).
    open: Cell<bool>,
    /// The last offset written in each partition.
    offsets: HashMap<i32, i64>,
    /// The topic's partitions (exactly-once: it picks each message's).
    partitions: i32,
    /// What reading the topic back found written after the last
    /// committed transaction, by (partition, shard): the last (batch, row).
    /// Those messages are not sent again.
    written: HashMap<(i32, u32), (u64, u32)>,
    store: Arc<Store>,
    key: String,
    metrics: Arc<JobMetrics>,
    /// The columns each message is keyed by ('key.fields'): where they are
    /// in a row, or in a change's key; and how the key is written.
    message_key: Option<(Vec<usize>, KeyFormat)>,
}

impl Writer {
    fn run(&mut self, stop: &AtomicBool) -> Result<()> {
        if self.transactional {
            return self.run_transactions(stop);
        }
        // Until the broker answers, the sink's status says it cannot.
        while let Err(e) = self.probe() {
            self.retrying(&e);
            if stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        self.metrics.set_problem(None);
        let mut last_save = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let sent = self.turn()?;
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

    /// Sends what the view committed since the last turn; whether there
    /// was any.
    fn turn(&mut self) -> Result<bool> {
        let mut next = std::mem::take(&mut self.next);
        let sent = match &self.feed {
            Feed::Appends(log) => {
                log.read_turn(&mut next, |shard, seq, batch| self.send(shard, seq, &batch))
            }
            Feed::Changes(changes) if self.snapshot => {
                let mut sent = Ok(true);
                for (shard, next) in next.iter_mut().enumerate() {
                    match changes.snapshot(shard, |c| self.send_changes(None, &c)) {
                        Ok(after) => *next = after,
                        Err(e) => {
                            sent = Err(e);
                            break;
                        }
                    }
                }
                sent
            }
            Feed::Changes(changes) => changes.read_turn(&mut next, |shard, seq, c| {
                self.send_changes(Some((shard, seq)), &c)
            }),
        };
        if matches!(sent, Ok(true)) {
            self.snapshot = false;
        }
        self.next = next;
        sent
    }

    /// Exactly-once: transactions, one after the other; after a failure it
    /// aborts, takes over its transactional id again and reads back where
    /// the last committed transaction ended.
    fn run_transactions(&mut self, stop: &AtomicBool) -> Result<()> {
        let mut recovered = false;
        while !stop.load(Ordering::Relaxed) {
            let result = if recovered {
                self.transaction(stop)
            } else {
                self.recover().map(|()| {
                    recovered = true;
                    true
                })
            };
            match result {
                Ok(true) => self.metrics.set_problem(None),
                Ok(false) => std::thread::sleep(POLL),
                Err(e) => {
                    if self.open.replace(false) {
                        let _ = self.producer.abort_transaction(Duration::from_secs(10));
                    }
                    self.retrying(&e);
                    recovered = false;
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
        Ok(())
    }

    /// Takes over the transactional id (aborting a transaction left open)
    /// and goes on from the last committed transaction's positions.
    fn recover(&mut self) -> Result<()> {
        self.held.take();
        self.open.set(false);
        self.producer = create_producer(&self.config, true)?;
        // A broker that does not answer fails the recovery in seconds, not
        // after the transactions' own timeout.
        self.probe()?;
        self.producer
            .init_transactions(Duration::from_secs(30))
            .map_err(|e| kafka_error("could not start its transactions", e))?;
        let name = self.metrics.name.clone();
        let saved = Saved::load(&self.store, self.id, &name)?;
        let offsets = saved
            .as_ref()
            .map(|s| s.offsets.clone())
            .unwrap_or_default();
        self.offsets = offsets.iter().copied().collect();
        if let Some(saved) = saved {
            self.next = saved.next;
            self.next.resize(self.saved.len(), 0);
            self.txn = saved.txn;
            self.snapshot = false;
        } else {
            self.next = vec![0; self.saved.len()];
        }
        let (marker, partitions, written) = self.read_back(&offsets)?;
        self.partitions = partitions;
        self.written = written;
        if let Some(marker) = marker {
            if marker.txn > self.txn {
                tracing::info!(sink = %name, txn = marker.txn, "going on after the last committed transaction");
                self.txn = marker.txn;
                self.next = marker.next;
                self.snapshot = false;
            }
        }
        self.saved = self.next.clone();
        Ok(())
    }

    /// Reads the topic back from `offsets` (the last offsets saved; other
    /// partitions from their beginning): the newest marker of this sink,
    /// the topic's number of partitions, and the last position of this
    /// sink written in each partition, by shard.
    #[allow(clippy::type_complexity)]
    fn read_back(
        &self,
        offsets: &[(i32, i64)],
    ) -> Result<(Option<Marker>, i32, HashMap<(i32, u32), (u64, u32)>)> {
        let consumer: BaseConsumer = self
            .read_back
            .create()
            .map_err(|e| Error::invalid_parameter(format!("invalid sink properties: {e}")))?;
        let metadata = consumer
            .fetch_metadata(Some(&self.topic), Duration::from_secs(10))
            .map_err(|e| kafka_error("could not read the topic's partitions", e))?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.name() == self.topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if partitions.is_empty() {
            return Err(Error::external("the topic has no partitions"));
        }
        let count = partitions.iter().max().map(|p| p + 1).unwrap_or(1);
        let mut written: HashMap<(i32, u32), (u64, u32)> = HashMap::new();
        let mut list = rdkafka::TopicPartitionList::new();
        for p in &partitions {
            let from = match offsets.iter().find(|(q, _)| q == p) {
                Some((_, o)) => rdkafka::Offset::Offset(*o),
                None => rdkafka::Offset::Beginning,
            };
            list.add_partition_offset(&self.topic, *p, from)
                .map_err(|e| kafka_error("could not read the topic back", e))?;
        }
        consumer
            .assign(&list)
            .map_err(|e| kafka_error("could not read the topic back", e))?;
        let mut open: std::collections::HashSet<i32> = partitions.into_iter().collect();
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut newest: Option<Marker> = None;
        while !open.is_empty() {
            if Instant::now() > deadline {
                return Err(Error::external(
                    "reading the topic back did not reach its end",
                ));
            }
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    let headers: Vec<_> = m.headers().into_iter().flat_map(|h| h.iter()).collect();
                    let position = headers
                        .iter()
                        .filter(|h| h.key == POSITION)
                        .find_map(|h| h.value.and_then(Position::decode));
                    if let Some(pos) = position.filter(|p| p.sink == self.id) {
                        let last = written
                            .entry((m.partition(), pos.shard))
                            .or_insert((pos.seq, pos.row));
                        *last = (*last).max((pos.seq, pos.row));
                    }
                    for header in headers.iter().filter(|h| h.key == MARKER) {
                        let Some(marker) = header
                            .value
                            .and_then(|v| serde_json::from_slice::<Marker>(v).ok())
                        else {
                            continue;
                        };
                        if marker.sink == self.id
                            && newest.as_ref().is_none_or(|n| n.txn < marker.txn)
                        {
                            newest = Some(marker);
                        }
                    }
                }
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    open.remove(&p);
                }
                Some(Err(e)) => return Err(kafka_error("could not read the topic back", e)),
                None => {}
            }
        }
        Ok((newest, count, written))
    }

    /// One transaction: what the view committed, for at most a second;
    /// whether it sent anything.
    fn transaction(&mut self, stop: &AtomicBool) -> Result<bool> {
        let started = Instant::now();
        while self.turn()? {
            self.producer.poll(Duration::ZERO);
            if started.elapsed() >= SAVE_EVERY || stop.load(Ordering::Relaxed) {
                break;
            }
        }
        let Some((key, payload, partition, position)) = self.held.take() else {
            // Nothing sent (entries without rows leave nothing to read
            // again either).
            self.saved = self.next.clone();
            return Ok(false);
        };
        // Its last message, with the marker, once the broker has the rest.
        self.flush(Duration::from_secs(30))?;
        let marker = Marker {
            sink: self.id,
            txn: self.txn + 1,
            next: self.next.clone(),
        };
        let value = serde_json::to_vec(&marker).map_err(|e| Error::internal(e.to_string()))?;
        self.send_record(
            key.as_deref(),
            payload.as_deref(),
            Some(partition),
            position,
            Some(&value),
        )?;
        self.flush(Duration::from_secs(30))?;
        self.producer
            .commit_transaction(Duration::from_secs(60))
            .map_err(|e| kafka_error("could not commit a transaction", e))?;
        self.open.set(false);
        self.txn = marker.txn;
        self.saved = self.next.clone();
        if let Some(offsets) = &self.producer.context().offsets {
            self.offsets
                .extend(offsets.lock().iter().map(|(p, o)| (*p, *o)));
        }
        // Messages before the positions are not sent again.
        let next = &self.next;
        self.written
            .retain(|(_, shard), (seq, _)| next.get(*shard as usize).is_some_and(|n| *seq >= *n));
        let state = Saved {
            next: self.next.clone(),
            txn: self.txn,
            offsets: self.offsets.iter().map(|(p, o)| (*p, *o)).collect(),
        };
        let value = serde_json::to_vec(&state).map_err(|e| Error::internal(e.to_string()))?;
        self.store.put_meta(&self.key, &value)?;
        Ok(true)
    }

    /// Waits (up to `timeout`) until the broker has every message sent.
    fn flush(&self, timeout: Duration) -> Result<()> {
        self.producer
            .flush(timeout)
            .map_err(|e| kafka_error("could not deliver the messages", e))?;
        if self
            .producer
            .context()
            .failed
            .swap(false, Ordering::Relaxed)
        {
            return Err(Error::external("some messages were not delivered"));
        }
        Ok(())
    }

    /// One message per row, keyed if the sink has a key.
    fn send(&self, shard: usize, seq: u64, batch: &RecordBatch) -> Result<()> {
        let lines = JsonLines::of(batch)?;
        let keys = self.keys(batch)?;
        self.produce_all(
            Some((shard, seq)),
            lines.len(),
            |i| keys.as_ref().and_then(|k| k.get(i)),
            |i| Some(lines.line(i)),
        )?;
        self.count(lines.len());
        Ok(())
    }

    /// One message per change: its key, and its new row or none.
    fn send_changes(&self, from: Option<(usize, u64)>, changes: &KeyedChanges) -> Result<()> {
        let keys = match self.keys(&changes.keys)? {
            Some(keys) => keys,
            None => Keys::Json(JsonLines::of(&changes.keys)?),
        };
        let rows = JsonLines::of(&changes.rows)?;
        self.produce_all(
            from,
            changes.rows_at.len(),
            |i| keys.get(i),
            |i| changes.rows_at[i].map(|row| rows.line(row)),
        )?;
        self.count(changes.rows_at.len());
        Ok(())
    }

    /// The message keys of `batch` (rows, or changes' keys) when the sink
    /// has 'key.fields'.
    fn keys(&self, batch: &RecordBatch) -> Result<Option<Keys>> {
        self.message_key
            .as_ref()
            .map(|(positions, format)| Keys::of(batch, positions, *format))
            .transpose()
    }

    fn count(&self, messages: usize) {
        let c = self.metrics.part(Part::Reader(0));
        c.rows_in.fetch_add(messages as u64, Ordering::Relaxed);
        c.rows_out.fetch_add(messages as u64, Ordering::Relaxed);
    }

    /// Sends messages `0..n`, of batch `from` (shard, seq) if it has one.
    /// In a transaction each goes to the partition it picks (by key, or
    /// by position), with its position; those read back as written are
    /// skipped; and the last one is held back (the one held before is sent
    /// first, keeping their order).
    fn produce_all<'a>(
        &self,
        from: Option<(usize, u64)>,
        n: usize,
        key: impl Fn(usize) -> Option<&'a [u8]>,
        payload: impl Fn(usize) -> Option<&'a [u8]>,
    ) -> Result<()> {
        if !self.transactional {
            for i in 0..n {
                self.send_record(key(i), payload(i), None, None, None)?;
            }
            return Ok(());
        }
        for i in 0..n {
            let position = from.map(|(shard, seq)| Position {
                sink: self.id,
                shard: shard as u32,
                seq,
                row: i as u32,
            });
            let partition = match key(i) {
                Some(k) => ((murmur2(k) & 0x7fff_ffff) % self.partitions as u32) as i32,
                None => {
                    ((position.map(|p| p.seq + p.row as u64).unwrap_or(0)) % self.partitions as u64)
                        as i32
                }
            };
            if let Some(p) = position {
                let written = self.written.get(&(partition, p.shard));
                if written.is_some_and(|w| (p.seq, p.row) <= *w) {
                    continue;
                }
            }
            let message = (
                key(i).map(<[u8]>::to_vec),
                payload(i).map(<[u8]>::to_vec),
                partition,
                position,
            );
            if let Some((k, v, partition, position)) = self.held.replace(Some(message)) {
                self.send_record(k.as_deref(), v.as_deref(), Some(partition), position, None)?;
            }
        }
        Ok(())
    }

    /// Queues a message, waiting while the producer's queue is full; with
    /// a position and a marker as headers, if given.
    fn send_record(
        &self,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        partition: Option<i32>,
        position: Option<Position>,
        marker: Option<&[u8]>,
    ) -> Result<()> {
        let mut record = BaseRecord::<[u8], [u8]>::to(&self.topic);
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(payload) = payload {
            record = record.payload(payload);
        }
        if let Some(partition) = partition {
            record = record.partition(partition);
        }
        let encoded = position.map(|p| p.encode());
        if encoded.is_some() || marker.is_some() {
            let mut headers = OwnedHeaders::new();
            if let Some(e) = &encoded {
                headers = headers.insert(Header {
                    key: POSITION,
                    value: Some(&e[..]),
                });
            }
            if let Some(m) = marker {
                headers = headers.insert(Header {
                    key: MARKER,
                    value: Some(m),
                });
            }
            record = record.headers(headers);
        }
        if self.transactional && !self.open.get() {
            self.producer
                .begin_transaction()
                .map_err(|e| kafka_error("could not begin a transaction", e))?;
            self.open.set(true);
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
        match self.flush(Duration::from_secs(10)) {
            Ok(()) => {
                let value =
                    serde_json::to_vec(&self.next).map_err(|e| Error::internal(e.to_string()))?;
                self.store.put_meta(&self.key, &value)?;
                self.saved = self.next.clone();
                self.metrics.set_problem(None);
            }
            Err(e) => {
                self.retrying(&e);
                self.next = self.saved.clone();
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        Ok(())
    }

    /// Whether the broker answers (the topic's metadata, in a few seconds).
    fn probe(&self) -> Result<()> {
        self.producer
            .client()
            .fetch_metadata(Some(&self.topic), Duration::from_secs(5))
            .map(|_| ())
            .map_err(|e| kafka_error("could not reach the broker", e))
    }

    /// Shows on the sink's status that writing failed and is retried.
    fn retrying(&self, why: &Error) {
        self.metrics.set_problem(Some(format!(
            "could not write to topic \"{}\" ({why}); retrying",
            self.topic
        )));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_is_kafkas() {
        // The values of Kafka's own tests of its partitioner's hash.
        for (text, hash) in [
            ("21", -973932308i32),
            ("foobar", -790332482),
            ("a-little-bit-long-string", -985981536),
            ("a-little-bit-longer-string", -1486304829),
            (
                "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58897971,
            ),
            ("abc", 479470107),
        ] {
            assert_eq!(murmur2(text.as_bytes()) as i32, hash, "{text}");
        }
    }

    #[test]
    fn positions_round_trip() {
        let p = Position {
            sink: 7,
            shard: 3,
            seq: 1 << 40,
            row: 9,
        };
        assert_eq!(Position::decode(&p.encode()), Some(p));
        assert_eq!(Position::decode(&[0; 3]), None);
    }
}
