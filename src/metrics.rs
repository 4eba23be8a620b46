//! What a running job reports about itself: counters, status, watermark, the
//! bounded dead-letter queue and per-partition Kafka positions.
//!
//! Connectors and operators write these (lock-free counters on the hot path);
//! the system tables `sluice.jobs`, `sluice.dead_letters` and
//! `sluice.kafka_partitions` read them.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use parking_lot::Mutex;

/// The status of a job, as shown in `sluice.jobs.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    Running,
    /// Every bounded source was read to the end and every result emitted.
    Finished,
    /// The job stopped because of an error (shown in `sluice.jobs.error`).
    Failed,
    /// Stopped by `ALTER MATERIALIZED VIEW ... PAUSE`; its rows stay.
    Paused,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Running => "running",
            JobStatus::Finished => "finished",
            JobStatus::Failed => "failed",
            JobStatus::Paused => "paused",
        }
    }
}

/// The counters of one part of a job. Each part (a reader, a pipeline, a
/// final aggregation instance) counts on its own, so that what it has
/// counted up to a checkpoint barrier is saved with that checkpoint and the
/// counters stay exact across a crash (rows read again are not counted
/// twice).
#[derive(Debug, Default)]
pub struct Counters {
    /// Rows read from the source and decoded.
    pub rows_in: AtomicU64,
    /// Rows written to the view (inserts and updates).
    pub rows_out: AtomicU64,
    /// Rows dropped because their window had already fired.
    pub late_rows: AtomicU64,
    /// Records that could not be decoded or lacked an event time.
    pub bad_rows: AtomicU64,
}

impl Counters {
    /// rows_in, rows_out, late_rows, bad_rows.
    pub fn snapshot(&self) -> [u64; 4] {
        [
            self.rows_in.load(Ordering::Relaxed),
            self.rows_out.load(Ordering::Relaxed),
            self.late_rows.load(Ordering::Relaxed),
            self.bad_rows.load(Ordering::Relaxed),
        ]
    }

    pub fn restore(&self, values: [u64; 4]) {
        self.rows_in.store(values[0], Ordering::Relaxed);
        self.rows_out.store(values[1], Ordering::Relaxed);
        self.late_rows.store(values[2], Ordering::Relaxed);
        self.bad_rows.store(values[3], Ordering::Relaxed);
    }
}

/// A part of a job with counters of its own, by instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Reader(usize),
    Pipeline(usize),
    Final(usize),
}

/// Counters and state of one job (one materialized view).
#[derive(Debug)]
pub struct JobMetrics {
    pub name: String,
    /// The job's parallelism: the parts are numbered by it.
    parallelism: usize,
    /// Readers, then pipelines, then final aggregation instances.
    parts: Vec<Counters>,
    /// The job's event-time watermark in ms since the epoch (i64::MIN: none yet).
    pub watermark: AtomicI64,
    /// The last committed checkpoint: its epoch, how long it took from
    /// the barrier to the commit, and the bytes it wrote.
    pub checkpoint_epoch: AtomicU64,
    pub checkpoint_ms: AtomicU64,
    pub checkpoint_bytes: AtomicU64,
    state: Mutex<StatusState>,
    pub partitions: Mutex<Vec<PartitionStatus>>,
    /// The most recent late rows (at most [`JobMetrics::LATE_ROWS_KEPT`]).
    late: Mutex<VecDeque<LateRow>>,
    /// Declared columns that no record of a batch carried (a JSON key the
    /// records spell differently): column -> rows read without it.
    missing_fields: Mutex<std::collections::BTreeMap<String, u64>>,
}

/// A row dropped because its window had fired (past the allowed lateness).
#[derive(Debug, Clone)]
pub struct LateRow {
    /// Where it came from: `partition-2 offset 42`, `calls.json byte 1234`.
    pub position: String,
    pub event_time_ms: i64,
    /// The window it missed (none for a row of an interval join).
    pub window_start_ms: Option<i64>,
    pub window_end_ms: Option<i64>,
    /// The watermark it was judged by: its split's, made by the rows before.
    pub watermark_ms: i64,
    pub seen_at_ms: i64,
}

#[derive(Debug)]
struct StatusState {
    status: JobStatus,
    /// A failure, or a problem being retried (an unreachable broker).
    error: Option<String>,
}

/// Position of one Kafka partition of a job's source.
#[derive(Debug, Clone)]
pub struct PartitionStatus {
    pub topic: String,
    pub partition: i32,
    /// The offset of the next record to read (-1 before the first fetch).
    pub offset: i64,
    /// The partition's high watermark as last reported by the broker (-1 unknown).
    pub high_watermark: i64,
}

impl JobMetrics {
    /// The metrics of a job of `parallelism` pipelines (and as many
    /// readers) and `finals` owner instances.
    pub fn new(name: &str, parallelism: usize, finals: usize) -> Self {
        let parallelism = parallelism.max(1);
        JobMetrics {
            name: name.to_string(),
            parallelism,
            parts: (0..2 * parallelism + finals.max(parallelism))
                .map(|_| Counters::default())
                .collect(),
            watermark: AtomicI64::new(i64::MIN),
            checkpoint_epoch: AtomicU64::new(0),
            checkpoint_ms: AtomicU64::new(0),
            checkpoint_bytes: AtomicU64::new(0),
            state: Mutex::new(StatusState {
                status: JobStatus::Running,
                error: None,
            }),
            partitions: Mutex::new(Vec::new()),
            late: Mutex::new(VecDeque::new()),
            missing_fields: Mutex::new(Default::default()),
        }
    }

    /// Counts `rows` rows read without the field `column`.
    pub fn count_missing_field(&self, column: &str, rows: u64) {
        *self
            .missing_fields
            .lock()
            .entry(column.to_string())
            .or_default() += rows;
    }

    /// What is wrong with the job's input but does not stop it, for
    /// `sluice.jobs.warnings`: `missing_fields: itemName (12000 rows)`.
    pub fn warnings(&self) -> Option<String> {
        let missing = self.missing_fields.lock();
        if missing.is_empty() {
            return None;
        }
        let fields: Vec<String> = missing
            .iter()
            .map(|(c, n)| format!("{c} ({n} rows)"))
            .collect();
        Some(format!(
            "missing_fields: {}: no record has these fields, so they read as NULL; check the column names against the records",
            fields.join(", ")
        ))
    }

    /// Late rows kept per view for `sluice.late_rows`.
    pub const LATE_ROWS_KEPT: usize = 1000;

    /// Keeps late rows, forgetting the oldest beyond the bound (they stay
    /// counted in `late_rows`).
    pub fn keep_late(&self, rows: impl Iterator<Item = LateRow>) {
        let mut q = self.late.lock();
        for row in rows {
            if q.len() == Self::LATE_ROWS_KEPT {
                q.pop_front();
            }
            q.push_back(row);
        }
    }

    pub fn late_rows(&self) -> Vec<LateRow> {
        self.late.lock().iter().cloned().collect()
    }

    pub fn status(&self) -> (JobStatus, Option<String>) {
        let s = self.state.lock();
        (s.status, s.error.clone())
    }

    pub fn set_finished(&self) {
        let mut s = self.state.lock();
        if s.status == JobStatus::Running {
            s.status = JobStatus::Finished;
            s.error = None;
        }
    }

    pub fn set_paused(&self) {
        let mut s = self.state.lock();
        s.status = JobStatus::Paused;
        s.error = None;
    }

    pub fn set_failed(&self, error: String) {
        let mut s = self.state.lock();
        s.status = JobStatus::Failed;
        s.error = Some(error);
    }

    /// Reports a problem that is being retried (the job keeps running), or
    /// clears it with `None`.
    pub fn set_problem(&self, problem: Option<String>) {
        let mut s = self.state.lock();
        if s.status == JobStatus::Running {
            s.error = problem;
        }
    }

    pub fn record_checkpoint(&self, epoch: u64, took: std::time::Duration, bytes: u64) {
        self.checkpoint_epoch.store(epoch, Ordering::Relaxed);
        self.checkpoint_ms
            .store(took.as_millis() as u64, Ordering::Relaxed);
        self.checkpoint_bytes.store(bytes, Ordering::Relaxed);
    }

    /// The number of a part (its counters' index).
    pub fn slot(&self, part: Part) -> usize {
        let p = self.parallelism;
        match part {
            Part::Reader(i) => i,
            Part::Pipeline(i) => p + i,
            Part::Final(i) => 2 * p + i,
        }
    }

    pub fn part(&self, part: Part) -> &Counters {
        &self.parts[self.slot(part)]
    }

    /// The counters by slot, for restoring them.
    pub fn parts(&self) -> &[Counters] {
        &self.parts
    }

    /// The job's totals: rows_in, rows_out, late_rows, bad_rows.
    pub fn totals(&self) -> [u64; 4] {
        self.parts.iter().fold([0; 4], |mut sum, c| {
            for (s, v) in sum.iter_mut().zip(c.snapshot()) {
                *s += v;
            }
            sum
        })
    }

    pub fn advance_watermark(&self, wm: i64) {
        self.watermark.fetch_max(wm, Ordering::Relaxed);
    }

    pub fn update_partition(&self, topic: &str, partition: i32, offset: i64, high_watermark: i64) {
        let mut parts = self.partitions.lock();
        match parts
            .iter_mut()
            .find(|p| p.partition == partition && p.topic == topic)
        {
            Some(p) => {
                p.offset = offset;
                if high_watermark >= 0 {
                    p.high_watermark = high_watermark;
                }
            }
            None => parts.push(PartitionStatus {
                topic: topic.to_string(),
                partition,
                offset,
                high_watermark,
            }),
        }
    }
}

/// A record that could not be used, kept for inspection.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub job: String,
    /// Where the record came from: `topic calls partition 2 offset 42`,
    /// `file /data/calls.json line 17`.
    pub position: String,
    /// The record's text (truncated to [`DeadLetterQueue::MAX_RAW_BYTES`]).
    pub raw: String,
    pub error: String,
    /// When it was seen, ms since the epoch.
    pub seen_at_ms: i64,
}

/// A bounded queue of the most recent dead letters of all jobs; the oldest
/// are dropped first (they stay counted in `bad_rows`).
#[derive(Debug)]
pub struct DeadLetterQueue {
    capacity: usize,
    entries: Mutex<VecDeque<DeadLetter>>,
}

impl DeadLetterQueue {
    pub const MAX_RAW_BYTES: usize = 4096;

    pub fn new(capacity: usize) -> Self {
        DeadLetterQueue {
            capacity,
            entries: Mutex::new(VecDeque::new()),
        }
    }

    pub fn push(&self, job: &str, position: String, raw: &[u8], error: String) {
        let cut = raw.len().min(Self::MAX_RAW_BYTES);
        let letter = DeadLetter {
            job: job.to_string(),
            position,
            raw: String::from_utf8_lossy(&raw[..cut]).into_owned(),
            error,
            seen_at_ms: chrono::Utc::now().timestamp_millis(),
        };
        let mut q = self.entries.lock();
        if q.len() == self.capacity {
            q.pop_front();
        }
        q.push_back(letter);
    }

    pub fn snapshot(&self) -> Vec<DeadLetter> {
        self.entries.lock().iter().cloned().collect()
    }

    /// Forgets the dead letters of a dropped job.
    pub fn remove_job(&self, job: &str) {
        self.entries.lock().retain(|d| d.job != job);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_letter_queue_is_bounded_and_keeps_the_newest() {
        let q = DeadLetterQueue::new(2);
        for i in 0..3 {
            q.push("j", format!("offset {i}"), b"x", "bad".into());
        }
        let all = q.snapshot();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].position, "offset 1");
    }

    #[test]
    fn finished_does_not_override_failed() {
        let m = JobMetrics::new("j", 1, 1);
        m.set_failed("boom".into());
        m.set_finished();
        assert_eq!(m.status().0, JobStatus::Failed);
    }
}
