//! The `kafka` connector: an unbounded source over every partition of a
//! topic.
//!
//! Partitions are spread over the instances (partition p goes to instance
//! p mod P) and read with `assign()`, not a consumer-group subscription: the
//! positions belong to Sluice (Flink's Kafka source works the same way), and
//! no group rebalance can stall a job. Each partition is a split with its own
//! watermark; reaching the end of a partition marks it caught up, which lets
//! it go idle after `scan.watermark.idle-timeout`.
//!
//! An unreachable broker or a missing topic is reported on the job's status
//! and retried; nothing is lost when it comes back.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::datatypes::SchemaRef;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::connector::format::{decode_records, FormatSpec, RecordDecoder};
use crate::connector::{EventSender, ReaderContext, SourceEvent, SourceReader};
use crate::error::{Error, Result};
use crate::metrics::JobMetrics;
use crate::options::Options;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartupMode {
    EarliestOffset,
    LatestOffset,
    GroupOffsets,
}

impl StartupMode {
    pub fn as_str(self) -> &'static str {
        match self {
            StartupMode::EarliestOffset => "earliest-offset",
            StartupMode::LatestOffset => "latest-offset",
            StartupMode::GroupOffsets => "group-offsets",
        }
    }
}

#[derive(Debug, Clone)]
pub struct KafkaSpec {
    pub topic: String,
    pub bootstrap_servers: String,
    pub group_id: Option<String>,
    pub startup: StartupMode,
    pub format: FormatSpec,
    /// Other `properties.*` options, passed to librdkafka as they are.
    pub properties: Vec<(String, String)>,
}

impl KafkaSpec {
    pub fn from_options(opts: &mut Options, _schema: &SchemaRef) -> Result<Self> {
        let topic = opts.require("topic")?;
        let mut properties = opts.take_prefixed("properties.");
        let take_prop = |props: &mut Vec<(String, String)>, key: &str| {
            props
                .iter()
                .position(|(k, _)| k == key)
                .map(|i| props.remove(i).1)
        };
        let bootstrap_servers =
            take_prop(&mut properties, "bootstrap.servers").ok_or_else(|| {
                Error::invalid_parameter(
                    "connector \"kafka\" requires option 'properties.bootstrap.servers'",
                )
            })?;
        let group_id = take_prop(&mut properties, "group.id");
        let startup = match opts
            .take("scan.startup.mode")
            .unwrap_or_else(|| "group-offsets".into())
            .to_ascii_lowercase()
            .as_str()
        {
            "earliest-offset" => StartupMode::EarliestOffset,
            "latest-offset" => StartupMode::LatestOffset,
            "group-offsets" => StartupMode::GroupOffsets,
            other @ ("timestamp" | "specific-offsets") => {
                return Err(Error::not_supported(format!(
                    "scan.startup.mode '{other}' is not supported yet"
                )))
            }
            other => {
                return Err(Error::invalid_parameter(format!(
                    "unknown scan.startup.mode '{other}'; use earliest-offset, latest-offset or group-offsets"
                )))
            }
        };
        // The message key is for writing (INSERT INTO keys each message by
        // 'key.fields'); the value holds every column, which is what is read.
        opts.take("key.fields");
        opts.take("key.format");
        if let Some(include) = opts.take("value.fields-include") {
            if !include.eq_ignore_ascii_case("all") {
                return Err(Error::not_supported(format!(
                    "'value.fields-include' = '{include}': Sluice reads every column from the message value (ALL)"
                )));
            }
        }
        let format = FormatSpec::from_options(opts)?;
        Ok(KafkaSpec {
            topic,
            bootstrap_servers,
            group_id,
            startup,
            format,
            properties,
        })
    }
}

/// Answers a checkpoint barrier, if one is asked for, by a reader that has
/// no split to read; false if the pipeline is gone.
fn empty_barrier(ctx: &ReaderContext, seen: &mut u64, out: &EventSender) -> bool {
    match ctx.barriers.poll(seen) {
        Some(epoch) => out.send(ctx.barrier(epoch, Vec::new())),
        None => true,
    }
}

/// A partition's split name in checkpoints.
fn partition_name(partition: i32) -> String {
    format!("partition-{partition}")
}

/// Messages taken from the consumer's queue between two looks at the clock.
const MESSAGES_PER_BURST: usize = 4096;

/// Receives librdkafka's statistics, which carry each partition's high
/// watermark from fetch responses (ListOffsets is not needed for lag).
struct StatsContext {
    metrics: Arc<JobMetrics>,
    topic: String,
    servers: String,
    /// A client error is on the job's status (cleared when a broker is up
    /// again or records arrive).
    problem: Arc<AtomicBool>,
}

impl ClientContext for StatsContext {
    fn error(&self, error: KafkaError, reason: &str) {
        // The end of a partition is news, not an error (librdkafka sometimes
        // reports it globally).
        if matches!(error, KafkaError::PartitionEOF(_))
            || error.to_string().contains("PartitionEOF")
        {
            tracing::debug!(%reason, "kafka partition end");
        } else {
            tracing::warn!(error = %error, %reason, "kafka client error");
            self.metrics.set_problem(Some(format!(
                "kafka at {}: {}; retrying",
                self.servers,
                crate::error::postgres_style(reason)
            )));
            self.problem.store(true, Ordering::Relaxed);
        }
    }

    fn stats(&self, statistics: Statistics) {
        // librdkafka reconnects by itself and tells of a lost broker only in
        // its logs; its statistics say whether any known broker is up.
        let known = statistics.brokers.values().filter(|b| b.nodeid >= 0);
        let (mut any, mut up) = (false, false);
        for b in known {
            any = true;
            up |= b.state == "UP";
        }
        if up {
            if self.problem.swap(false, Ordering::Relaxed) {
                self.metrics.set_problem(None);
            }
        } else if any {
            self.metrics.set_problem(Some(format!(
                "kafka at {}: no broker is reachable; retrying",
                self.servers
            )));
            self.problem.store(true, Ordering::Relaxed);
        }
        let Some(topic) = statistics.topics.get(&self.topic) else {
            return;
        };
        let mut parts = self.metrics.partitions.lock();
        for p in parts.iter_mut().filter(|p| p.topic == self.topic) {
            if let Some(s) = topic.partitions.get(&p.partition) {
                if s.hi_offset >= 0 {
                    p.high_watermark = s.hi_offset;
                }
            }
        }
    }
}

impl ConsumerContext for StatsContext {}

/// Records of one partition waiting to be decoded together.
struct Pending {
    buf: Vec<u8>,
    ranges: Vec<Range<usize>>,
    offsets: Vec<i64>,
    since: Option<Instant>,
}

impl Pending {
    fn new() -> Self {
        Pending {
            buf: Vec::new(),
            ranges: Vec::new(),
            offsets: Vec::new(),
            since: None,
        }
    }
}

pub struct KafkaReader {
    spec: KafkaSpec,
    ctx: ReaderContext,
    decoder: RecordDecoder,
    /// Shared with the client's context: a client error is reported.
    problem: Arc<AtomicBool>,
}

impl KafkaReader {
    pub fn new(spec: KafkaSpec, ctx: ReaderContext) -> Result<Self> {
        let decoder = RecordDecoder::new(
            spec.format.clone(),
            ctx.schema.clone(),
            ctx.declared.clone(),
        );
        Ok(KafkaReader {
            spec,
            ctx,
            decoder,
            problem: Arc::new(AtomicBool::new(false)),
        })
    }

    fn consumer(&self) -> Result<BaseConsumer<StatsContext>> {
        let mut config = ClientConfig::new();
        let group = self
            .spec
            .group_id
            .clone()
            .unwrap_or_else(|| format!("sluice-{}", self.ctx.job));
        config
            .set("bootstrap.servers", &self.spec.bootstrap_servers)
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true")
            .set("statistics.interval.ms", "1000")
            .set("fetch.wait.max.ms", "100")
            // librdkafka stops prefetching once a partition has
            // queued.min.messages waiting and then rests for
            // fetch.queue.backoff.ms (1 s by default): a consumer that
            // drains fast stalls for most of each second (measured on 4
            // partitions: 300 k events/s with the defaults, 1.3 M with a 5 ms
            // backoff). A shallower queue than the default costs no
            // throughput and bounds memory (measured: 286 MB peak vs 490 MB
            // with 1 M messages queued).
            .set("queued.min.messages", "50000")
            .set("queued.max.messages.kbytes", "32768")
            .set("fetch.queue.backoff.ms", "5")
            .set(
                "auto.offset.reset",
                match self.spec.startup {
                    StartupMode::LatestOffset => "latest",
                    _ => "earliest",
                },
            );
        for (k, v) in &self.spec.properties {
            config.set(k, v);
        }
        config
            .create_with_context(StatsContext {
                metrics: self.ctx.metrics.clone(),
                topic: self.spec.topic.clone(),
                servers: self.spec.bootstrap_servers.clone(),
                problem: self.problem.clone(),
            })
            .map_err(|e| Error::invalid_parameter(format!("invalid kafka properties: {e}")))
    }

    /// Finds the topic's partitions; `Err` with a user-facing problem text
    /// when the broker cannot be reached or the topic does not exist.
    fn partitions(
        &self,
        consumer: &BaseConsumer<StatsContext>,
    ) -> std::result::Result<Vec<i32>, String> {
        let metadata = consumer
            .fetch_metadata(Some(&self.spec.topic), Duration::from_secs(5))
            .map_err(|e| {
                format!(
                    "could not reach kafka at {}: {}",
                    self.spec.bootstrap_servers,
                    crate::error::postgres_style(&e.to_string())
                )
            })?;
        let topic = metadata
            .topics()
            .iter()
            .find(|t| t.name() == self.spec.topic)
            .ok_or_else(|| format!("topic \"{}\" does not exist", self.spec.topic))?;
        if topic.error().is_some() || topic.partitions().is_empty() {
            return Err(format!(
                "topic \"{}\" does not exist at {}",
                self.spec.topic, self.spec.bootstrap_servers
            ));
        }
        let mut ids: Vec<i32> = topic.partitions().iter().map(|p| p.id()).collect();
        ids.sort();
        Ok(ids)
    }

    /// Where each partition starts: where the last checkpoint left it, or
    /// else by the startup mode. Resolved to an offset when the broker can
    /// tell, so that a checkpoint taken before the partition's first record
    /// still knows where to go on (with `latest-offset`, "the end" moves).
    fn start_offsets(
        &self,
        consumer: &BaseConsumer<StatsContext>,
        partitions: &[i32],
    ) -> Vec<Offset> {
        let resumed: Vec<Option<i64>> = partitions
            .iter()
            .map(|p| {
                self.ctx
                    .resume_position(&partition_name(*p))
                    .filter(|o| *o >= 0)
            })
            .collect();
        let mut committed: Vec<(i32, i64)> = Vec::new();
        if self.spec.startup == StartupMode::GroupOffsets && resumed.iter().any(|r| r.is_none()) {
            let mut tpl = TopicPartitionList::new();
            for &p in partitions {
                let _ = tpl.add_partition_offset(&self.spec.topic, p, Offset::Stored);
            }
            if let Ok(found) = consumer.committed_offsets(tpl, Duration::from_secs(5)) {
                for e in found.elements() {
                    if let Offset::Offset(o) = e.offset() {
                        committed.push((e.partition(), o));
                    }
                }
            }
        }
        partitions
            .iter()
            .zip(resumed)
            .map(|(&p, resumed)| {
                if let Some(o) = resumed {
                    return Offset::Offset(o);
                }
                let wanted = match self.spec.startup {
                    StartupMode::EarliestOffset => Offset::Beginning,
                    StartupMode::LatestOffset => Offset::End,
                    StartupMode::GroupOffsets => match committed.iter().find(|(q, _)| *q == p) {
                        Some((_, o)) => return Offset::Offset(*o),
                        None => Offset::Beginning,
                    },
                };
                match consumer.fetch_watermarks(&self.spec.topic, p, Duration::from_secs(5)) {
                    Ok((low, high)) => {
                        Offset::Offset(if wanted == Offset::End { high } else { low })
                    }
                    Err(_) => wanted,
                }
            })
            .collect()
    }

    /// Decodes a partition's pending records and sends them.
    fn flush(
        &self,
        split: usize,
        partition: i32,
        pending: &mut Pending,
        out: &EventSender,
    ) -> Result<bool> {
        if pending.ranges.is_empty() {
            return Ok(true);
        }
        let topic = &self.spec.topic;
        let offsets = &pending.offsets;
        let position =
            |i: usize| format!("topic {topic} partition {partition} offset {}", offsets[i]);
        let batch = decode_records(
            &self.ctx,
            &self.decoder,
            &pending.buf,
            &pending.ranges,
            &position,
        )?;
        let next = offsets.last().map(|o| o + 1).unwrap_or(-1);
        self.ctx
            .metrics
            .update_partition(topic, partition, next, -1);
        pending.buf.clear();
        pending.ranges.clear();
        pending.since = None;
        if let Some((batch, records)) = batch {
            let positions = records.iter().map(|r| offsets[*r]).collect();
            pending.offsets.clear();
            return Ok(out.send(SourceEvent::Rows {
                split,
                batch,
                positions,
            }));
        }
        pending.offsets.clear();
        Ok(true)
    }
}

impl SourceReader for KafkaReader {
    fn run(self: Box<Self>, out: &EventSender) -> Result<()> {
        let consumer = self.consumer()?;
        // Find and assign our partitions, retrying until the broker and the
        // topic are there.
        let mut backoff = Duration::from_millis(200);
        let mut seen = self.ctx.barriers.current();
        let partitions = loop {
            match self.partitions(&consumer) {
                Ok(all) => {
                    self.ctx.metrics.set_problem(None);
                    break all;
                }
                Err(problem) => {
                    tracing::warn!(job = %self.ctx.job, %problem, "kafka source not ready; retrying");
                    self.ctx
                        .metrics
                        .set_problem(Some(format!("{problem}; retrying")));
                    let deadline = Instant::now() + backoff;
                    while Instant::now() < deadline {
                        // Checkpoints go on meanwhile: nothing is read yet.
                        if out.is_closed() || !empty_barrier(&self.ctx, &mut seen, out) {
                            return Ok(());
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        };
        let mine: Vec<i32> = partitions
            .into_iter()
            .filter(|p| (*p as usize) % self.ctx.parallelism == self.ctx.instance)
            .collect();
        let starts = self.start_offsets(&consumer, &mine);
        // The next offset of each split (-1: not known yet; the startup mode
        // decides again after a restart).
        let mut next: Vec<i64> = starts
            .iter()
            .map(|o| match o {
                Offset::Offset(o) => *o,
                _ => -1,
            })
            .collect();
        for (&p, &offset) in mine.iter().zip(&next) {
            self.ctx
                .metrics
                .update_partition(&self.spec.topic, p, offset, -1);
        }
        let names = mine.iter().map(|p| partition_name(*p)).collect();
        if !out.send(SourceEvent::Assigned { names }) {
            return Ok(());
        }
        if mine.is_empty() {
            // Nothing to read; answer barriers until the job goes away.
            while !out.is_closed() && empty_barrier(&self.ctx, &mut seen, out) {
                std::thread::sleep(Duration::from_millis(20));
            }
            return Ok(());
        }
        // Partition id -> split index (usize::MAX: not ours).
        let mut split_of =
            vec![usize::MAX; mine.iter().map(|p| *p as usize + 1).max().unwrap_or(0)];
        for (split, p) in mine.iter().enumerate() {
            split_of[*p as usize] = split;
        }
        let split_of = |partition: i32| -> Option<usize> {
            split_of
                .get(partition as usize)
                .copied()
                .filter(|s| *s != usize::MAX)
        };
        let mut assignment = TopicPartitionList::new();
        for (&p, &start) in mine.iter().zip(&starts) {
            let _ = assignment.add_partition_offset(&self.spec.topic, p, start);
        }
        consumer
            .assign(&assignment)
            .map_err(|e| Error::external(format!("could not assign kafka partitions: {e}")))?;
        let mut pending: Vec<Pending> = mine.iter().map(|_| Pending::new()).collect();
        // Whether each split was last reported caught up (reset by new rows).
        let mut caught_up = vec![false; mine.len()];
        let mut last_problem: Option<Instant> = None;
        let mut last_check = Instant::now();
        loop {
            if out.is_closed() {
                return Ok(());
            }
            // Time-based work once per burst of messages, not per message.
            let now = Instant::now();
            for (split, p) in pending.iter_mut().enumerate() {
                if p.since.map(|s| now >= s + self.ctx.linger).unwrap_or(false)
                    && !self.flush(split, mine[split], p, out)?
                {
                    return Ok(());
                }
            }
            if let Some(epoch) = self.ctx.poll_barrier(&mut seen) {
                // Every record polled goes before the barrier.
                for (split, p) in pending.iter_mut().enumerate() {
                    if !self.flush(split, mine[split], p, out)? {
                        return Ok(());
                    }
                }
                if !out.send(self.ctx.barrier(epoch, next.clone())) {
                    return Ok(());
                }
            }
            // A split is caught up when it has read up to the partition's
            // high watermark (from the broker's fetch answers). End-of-partition
            // events say the same but are not always delivered here.
            if now.duration_since(last_check) >= Duration::from_millis(100) {
                last_check = now;
                let positions = self.ctx.metrics.partitions.lock().clone();
                for (split, &partition) in mine.iter().enumerate() {
                    if caught_up[split] || !pending[split].ranges.is_empty() {
                        continue;
                    }
                    let at_end = positions
                        .iter()
                        .find(|p| p.partition == partition && p.topic == self.spec.topic)
                        .map(|p| {
                            p.high_watermark >= 0
                                && (p.offset >= p.high_watermark
                                    || (p.offset < 0 && p.high_watermark == 0))
                        })
                        .unwrap_or(false);
                    if at_end {
                        caught_up[split] = true;
                        if !out.send(SourceEvent::CaughtUp { split }) {
                            return Ok(());
                        }
                    }
                }
            }
            // Wait no longer than the oldest pending batch may linger; then
            // take what is already fetched without waiting.
            let wait = pending
                .iter()
                .filter_map(|p| p.since)
                .map(|s| (s + self.ctx.linger).saturating_duration_since(now))
                .min()
                .unwrap_or(Duration::from_millis(100));
            for i in 0..MESSAGES_PER_BURST {
                let polled = consumer.poll(if i == 0 { wait } else { Duration::ZERO });
                match polled {
                    None => break,
                    Some(Ok(msg)) => {
                        let Some(split) = split_of(msg.partition()) else {
                            continue;
                        };
                        caught_up[split] = false;
                        next[split] = msg.offset() + 1;
                        let p = &mut pending[split];
                        match msg.payload() {
                            Some(payload) => {
                                let start = p.buf.len();
                                p.buf.extend_from_slice(payload);
                                let end = p.buf.len();
                                p.buf.push(b'\n');
                                p.ranges.push(start..end);
                                p.offsets.push(msg.offset());
                                p.since.get_or_insert(now);
                            }
                            None => self.ctx.dead_letter(
                                format!(
                                    "topic {} partition {} offset {}",
                                    self.spec.topic,
                                    msg.partition(),
                                    msg.offset()
                                ),
                                b"",
                                "the message has no value".into(),
                            ),
                        }
                        if last_problem.take().is_some()
                            || self.problem.swap(false, Ordering::Relaxed)
                        {
                            self.ctx.metrics.set_problem(None);
                        }
                        if p.ranges.len() >= self.ctx.batch_size {
                            let partition = msg.partition();
                            drop(msg);
                            if !self.flush(split, partition, &mut pending[split], out)? {
                                return Ok(());
                            }
                        }
                    }
                    Some(Err(KafkaError::PartitionEOF(partition))) => {
                        if let Some(split) = split_of(partition) {
                            if !self.flush(split, partition, &mut pending[split], out)? {
                                return Ok(());
                            }
                            caught_up[split] = true;
                            if !out.send(SourceEvent::CaughtUp { split }) {
                                return Ok(());
                            }
                        }
                    }
                    Some(Err(e)) => {
                        let now = Instant::now();
                        if last_problem
                            .map(|t| now - t > Duration::from_secs(5))
                            .unwrap_or(true)
                        {
                            tracing::warn!(job = %self.ctx.job, error = %e, "kafka consumer error");
                            self.ctx.metrics.set_problem(Some(format!(
                                "kafka at {}: {}; retrying",
                                self.spec.bootstrap_servers,
                                crate::error::postgres_style(&e.to_string())
                            )));
                            last_problem = Some(now);
                        }
                        break;
                    }
                }
            }
        }
    }
}
