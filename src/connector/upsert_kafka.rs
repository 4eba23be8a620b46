//! The upsert-kafka connector: a table kept equal to the latest value per
//! key of a changelog topic (`CREATE TABLE cells (cell_id STRING PRIMARY
//! KEY, ...) WITH ('connector' = 'upsert-kafka', ...)`), as Flink's.
//!
//! A message with a value sets its key's row (the value holds every
//! column, the key's too); a message without one (a tombstone) deletes the
//! row of its key, read from the message key (`key.format`: a JSON object
//! of the key columns, or `raw`: the key's text, for a one-column key).
//!
//! `INSERT INTO` the table writes its topic: a Kafka sink keyed by the
//! primary key (see `kafka_sink.rs`), whose messages the table then reads.
//!
//! The table is an ordinary table (see `state/reference.rs`) that a loader
//! thread changes, round by round, in the topic's order; streams join it
//! like any table. At start the loader reads the topic from its beginning
//! (a compacted topic holds the latest value of each key), so the table
//! never depends on offsets of its own.
//!
//! Only this file, `kafka.rs` and `kafka_sink.rs` name `rdkafka`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::SchemaRef;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::Message;

use crate::connector::Worker;
use crate::error::{Error, Result};
use crate::metrics::{DeadLetterQueue, JobMetrics, Part};
use crate::options::Options;
use crate::state::reference::ReferenceTable;

/// Messages applied to the table at most per round.
const ROUND_MESSAGES: usize = 10_000;
/// How long a round waits for more messages.
const ROUND_LINGER: Duration = Duration::from_millis(50);

/// How a message key is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFormat {
    /// A JSON object of the key columns.
    Json,
    /// The key's bytes as text (a one-column text key).
    Raw,
}

/// An upsert-kafka table's options, validated.
#[derive(Debug, Clone)]
pub struct UpsertKafkaSpec {
    pub topic: String,
    pub bootstrap_servers: String,
    pub properties: Vec<(String, String)>,
    pub key_format: KeyFormat,
    /// The columns as the records (JSON objects) name them: as declared.
    pub records: SchemaRef,
}

impl UpsertKafkaSpec {
    pub fn from_options(
        entries: &[(String, String)],
        schema: &SchemaRef,
        records: SchemaRef,
        key: &[usize],
    ) -> Result<Self> {
        let mut opts = Options::new("connector \"upsert-kafka\"", entries);
        opts.take("connector");
        let topic = opts.require("topic")?;
        let bootstrap_servers = opts.require("properties.bootstrap.servers")?;
        let json = |what: &str, value: Option<String>| -> Result<()> {
            match value {
                Some(v) if !v.eq_ignore_ascii_case("json") => Err(Error::invalid_parameter(
                    format!("'{what}' \"{v}\" is not supported; upsert-kafka values are json"),
                )),
                _ => Ok(()),
            }
        };
        json("value.format", opts.take("value.format"))?;
        json("format", opts.take("format"))?;
        let key_format = match opts.take("key.format").as_deref() {
            None | Some("json") => KeyFormat::Json,
            Some("raw") => {
                let text = key.len() == 1
                    && matches!(
                        schema.field(key[0]).data_type(),
                        arrow::datatypes::DataType::Utf8
                    );
                if !text {
                    return Err(Error::invalid_parameter(
                        "'key.format' = 'raw' needs a primary key of one STRING column",
                    ));
                }
                KeyFormat::Raw
            }
            Some(other) => {
                return Err(Error::invalid_parameter(format!(
                    "'key.format' \"{other}\" is not supported; use json or raw"
                )))
            }
        };
        // How INSERT INTO the table writes its topic (a Kafka sink, which
        // checks them when it starts).
        opts.take("sink.delivery-guarantee");
        opts.take("sink.transactional-id-prefix");
        let properties = opts.take_prefixed("properties.");
        opts.finish()?;
        Ok(UpsertKafkaSpec {
            topic,
            bootstrap_servers,
            properties,
            key_format,
            records,
        })
    }
}

/// Starts the loader of table `name`: a thread applying the topic to it.
pub fn start(
    name: &str,
    spec: UpsertKafkaSpec,
    table: Arc<ReferenceTable>,
    dead_letters: Arc<DeadLetterQueue>,
) -> Result<Worker> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &spec.bootstrap_servers)
        .set("group.id", format!("sluice-table-{name}"))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("fetch.wait.max.ms", "100");
    for (k, v) in &spec.properties {
        config.set(k, v);
    }
    let consumer: BaseConsumer = config
        .create()
        .map_err(|e| Error::invalid_parameter(format!("invalid table properties: {e}")))?;
    let metrics = Arc::new(JobMetrics::new(name, 1, 1));
    let mut loader = Loader {
        name: name.to_string(),
        spec,
        table,
        consumer,
        metrics: metrics.clone(),
        dead_letters,
        assigned: false,
    };
    Worker::spawn(
        format!("sluice-table-{name}"),
        "table loader",
        metrics,
        move |stop| loader.run(stop),
    )
}

/// One change read from the topic.
enum Change {
    Set(Vec<u8>),
    Delete(Vec<u8>),
}

struct Loader {
    name: String,
    spec: UpsertKafkaSpec,
    table: Arc<ReferenceTable>,
    consumer: BaseConsumer,
    metrics: Arc<JobMetrics>,
    dead_letters: Arc<DeadLetterQueue>,
    assigned: bool,
}

impl Loader {
    fn run(&mut self, stop: &AtomicBool) -> Result<()> {
        while !stop.load(Ordering::Relaxed) {
            if !self.assigned {
                if let Err(e) = self.assign() {
                    self.metrics.set_problem(Some(e.to_string()));
                    std::thread::sleep(Duration::from_secs(1));
                    continue;
                }
                self.metrics.set_problem(None);
            }
            let mut changes: Vec<(Change, String)> = Vec::new();
            let started = Instant::now();
            while changes.len() < ROUND_MESSAGES && started.elapsed() < ROUND_LINGER {
                match self.consumer.poll(Duration::from_millis(10)) {
                    None => {}
                    Some(Err(e)) => {
                        self.metrics.set_problem(Some(format!(
                            "could not read topic \"{}\": {e}; retrying",
                            self.spec.topic
                        )));
                        break;
                    }
                    Some(Ok(m)) => {
                        let position = format!(
                            "topic {} partition {} offset {}",
                            self.spec.topic,
                            m.partition(),
                            m.offset()
                        );
                        let change = match (m.payload(), m.key()) {
                            (Some(value), _) => Change::Set(value.to_vec()),
                            (None, Some(key)) => Change::Delete(key.to_vec()),
                            (None, None) => {
                                self.bad(
                                    &position,
                                    b"",
                                    "a message with neither key nor value".into(),
                                );
                                continue;
                            }
                        };
                        changes.push((change, position));
                    }
                }
            }
            self.apply(changes)?;
        }
        Ok(())
    }

    /// Reads every partition of the topic from its beginning.
    fn assign(&mut self) -> Result<()> {
        let metadata = self
            .consumer
            .fetch_metadata(Some(&self.spec.topic), Duration::from_secs(5))
            .map_err(|e| {
                Error::external(format!(
                    "could not read topic \"{}\" of table \"{}\": {e}; retrying",
                    self.spec.topic, self.name
                ))
            })?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if partitions.is_empty() {
            return Err(Error::external(format!(
                "topic \"{}\" of table \"{}\" does not exist (yet); retrying",
                self.spec.topic, self.name
            )));
        }
        let mut list = rdkafka::TopicPartitionList::new();
        for p in partitions {
            list.add_partition_offset(&self.spec.topic, p, rdkafka::Offset::Beginning)
                .map_err(|e| Error::internal(e.to_string()))?;
        }
        self.consumer.assign(&list).map_err(|e| {
            Error::external(format!("could not read topic \"{}\": {e}", self.spec.topic))
        })?;
        self.assigned = true;
        Ok(())
    }

    fn bad(&self, position: &str, raw: &[u8], error: String) {
        self.metrics
            .part(Part::Reader(0))
            .bad_rows
            .fetch_add(1, Ordering::Relaxed);
        self.dead_letters
            .push(&self.name, position.to_string(), raw, error);
    }

    /// Applies a round's changes in order: runs of sets as one upsert,
    /// runs of deletes as one delete.
    fn apply(&self, changes: Vec<(Change, String)>) -> Result<()> {
        let mut i = 0;
        while i < changes.len() {
            let set = matches!(changes[i].0, Change::Set(_));
            let mut j = i;
            while j < changes.len() && matches!(changes[j].0, Change::Set(_)) == set {
                j += 1;
            }
            let run = &changes[i..j];
            if set {
                let rows = self.decode(run, &self.spec.records, self.table.schema())?;
                if rows.num_rows() > 0 {
                    self.table.upsert(rows)?;
                }
            } else {
                let keys = self.delete_keys(run)?;
                if keys.first().is_some_and(|k| !k.is_empty()) {
                    self.table.delete_keys(&keys)?;
                }
            }
            self.metrics
                .part(Part::Reader(0))
                .rows_in
                .fetch_add(run.len() as u64, Ordering::Relaxed);
            i = j;
        }
        Ok(())
    }

    /// Decodes JSON objects, whose keys are the names of `records`, into
    /// rows of `schema` (its columns under their SQL names); a bad one
    /// becomes a dead letter.
    fn decode(
        &self,
        run: &[(Change, String)],
        records: &SchemaRef,
        schema: &SchemaRef,
    ) -> Result<RecordBatch> {
        let mut decoder = arrow::json::ReaderBuilder::new(records.clone()).build_decoder()?;
        let mut batches = Vec::new();
        for (change, position) in run {
            let (Change::Set(bytes) | Change::Delete(bytes)) = change;
            let decoded = decoder
                .decode(bytes)
                .map_err(|e| e.to_string())
                .and_then(|_| decoder.flush().map_err(|e| e.to_string()));
            match decoded {
                Ok(Some(batch)) if batch.num_rows() == 1 => batches.push(batch),
                Ok(_) => self.bad(position, bytes, "not one JSON object".into()),
                Err(e) => {
                    self.bad(position, bytes, format!("invalid JSON: {e}"));
                    decoder = arrow::json::ReaderBuilder::new(records.clone()).build_decoder()?;
                }
            }
        }
        let rows = arrow::compute::concat_batches(records, &batches)?;
        crate::connector::format::respell(rows, schema)
    }

    /// The key columns of tombstones.
    fn delete_keys(&self, run: &[(Change, String)]) -> Result<Vec<ArrayRef>> {
        let schema = self.table.schema();
        let key = self.table.key();
        match self.spec.key_format {
            KeyFormat::Raw => {
                let keys: StringArray = run
                    .iter()
                    .map(|(c, _)| {
                        let (Change::Set(b) | Change::Delete(b)) = c;
                        Some(String::from_utf8_lossy(b).into_owned())
                    })
                    .collect();
                Ok(vec![Arc::new(keys) as ArrayRef])
            }
            KeyFormat::Json => {
                let rows = self.decode(
                    run,
                    &Arc::new(self.spec.records.project(key)?),
                    &Arc::new(schema.project(key)?),
                )?;
                Ok(rows.columns().to_vec())
            }
        }
    }
}
