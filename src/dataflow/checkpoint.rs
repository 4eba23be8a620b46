//! Checkpoints of a job: barriers, acknowledgements and the atomic commit of
//! each epoch (DESIGN §5).
//!
//! Every `checkpoint_interval` the [`Coordinator`] asks for a new epoch
//! through the job's [`BarrierTrigger`]. Each reader, between two batches,
//! sends a barrier carrying its splits' positions, in line with its rows.
//! A pipeline that receives it flushes its partial aggregates, saves its
//! splits' positions and watermarks (and, without aggregation, its view
//! shard) and passes the barrier on to every final aggregation instance. An
//! instance with the barrier from every input (aligned: rows of inputs whose
//! barrier came first wait until the others' come) saves its state and its
//! view shard. Each participant sends its [`Writes`] to the coordinator;
//! when every participant has (or has ended), the coordinator commits them,
//! with the epoch record, as one RocksDB write batch. A crash at any moment
//! leaves the last committed epoch whole: state, view contents and source
//! positions that agree with each other.
//!
//! One epoch is in flight at a time. A participant that ends (its bounded
//! input is done) sends its final writes once; they count for every later
//! epoch. When all have ended, a last epoch marks the job finished.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch, Notify};

use crate::error::{Error, Result};
use crate::metrics::{JobMetrics, Part};
use crate::state::checkpoint::{EpochRecord, JobKeys};
use crate::state::{Store, Writes};

/// How readers learn that a checkpoint was asked for, and that they must
/// wait before reading more.
#[derive(Debug)]
pub struct BarrierTrigger {
    requested: AtomicU64,
    /// Participants holding more than their memory allows until a
    /// checkpoint lets them evict (see [`MemoryPressure`]): while any does,
    /// readers send barriers but read nothing.
    holders: AtomicUsize,
}

/// How often a held reader looks for barriers.
const HELD_POLL: Duration = Duration::from_millis(2);

impl BarrierTrigger {
    pub fn new(last_committed: u64) -> Self {
        BarrierTrigger {
            requested: AtomicU64::new(last_committed),
            holders: AtomicUsize::new(0),
        }
    }

    /// The epoch asked for, if newer than `seen` (which it then becomes).
    /// Readers call it between batches: it returns at once, except while a
    /// participant holds the sources, when it waits for a barrier to send
    /// or for the hold to end.
    pub fn poll(&self, seen: &mut u64) -> Option<u64> {
        loop {
            let requested = self.requested.load(Ordering::Acquire);
            if requested > *seen {
                *seen = requested;
                return Some(requested);
            }
            if self.holders.load(Ordering::Acquire) == 0 {
                return None;
            }
            std::thread::sleep(HELD_POLL);
        }
    }

    /// The epoch readers start from (none newer is asked for yet).
    pub fn current(&self) -> u64 {
        self.requested.load(Ordering::Acquire)
    }

    fn request(&self, epoch: u64) {
        self.requested.store(epoch, Ordering::Release);
    }
}

enum Ack {
    Epoch {
        participant: usize,
        epoch: u64,
        writes: Writes,
    },
    Ended {
        participant: usize,
        writes: Writes,
    },
}

/// How a participant (a pipeline or final aggregation instance) hands its
/// writes to the coordinator.
pub struct Acks {
    participant: usize,
    tx: mpsc::UnboundedSender<Ack>,
    settings: Arc<CheckpointSettings>,
    cache_full: Arc<Notify>,
    /// The last committed epoch.
    committed: watch::Receiver<u64>,
    trigger: Arc<BarrierTrigger>,
}

impl Acks {
    /// Whether checkpoints are on: with them off, a participant that ends
    /// need not gather its final writes (they would not be committed).
    pub fn saving(&self) -> bool {
        self.settings.interval().is_some()
    }

    /// How the participant keeps its memory bounded.
    pub fn memory(&self) -> MemoryControl {
        MemoryControl {
            cache_full: self.cache_full.clone(),
            asked: false,
            commits: self.committed.clone(),
            in_flight: None,
            pressure: MemoryPressure {
                trigger: self.trigger.clone(),
                settings: self.settings.clone(),
                held: false,
            },
        }
    }

    /// The participant's writes for `epoch`, taken at its barrier.
    pub fn epoch(&self, epoch: u64, writes: Writes) {
        let _ = self.tx.send(Ack::Epoch {
            participant: self.participant,
            epoch,
            writes,
        });
    }

    /// The participant has ended; these are its last writes.
    pub fn ended(&self, writes: Writes) {
        let _ = self.tx.send(Ack::Ended {
            participant: self.participant,
            writes,
        });
    }
}

/// How a participant keeps its memory bounded. Only rows a committed
/// checkpoint has saved may leave memory, so:
/// - when its rows take more than its cache, it asks for a checkpoint now
///   rather than at the interval: the rate of checkpoints follows the rate
///   of change;
/// - when they take more than twice its cache, it holds the sources (see
///   [`MemoryPressure`]) until a commit lets it evict;
/// - it learns of each commit as it happens and evicts then, not at the
///   next barrier.
pub struct MemoryControl {
    cache_full: Arc<Notify>,
    /// Whether it asked for a checkpoint (once until it takes one).
    asked: bool,
    commits: watch::Receiver<u64>,
    /// The epoch it wrote last, until it is committed.
    in_flight: Option<u64>,
    pressure: MemoryPressure,
}

impl MemoryControl {
    /// Acts on the memory its rows take, as a share of its cache.
    pub fn observe(&mut self, cache_use: f64) {
        if cache_use > 1.0 && !self.asked {
            self.cache_full.notify_one();
            self.asked = true;
        }
        self.pressure.set(cache_use > 2.0);
    }

    /// It has written its state for `epoch`.
    pub fn checkpointed(&mut self, epoch: u64) {
        self.asked = false;
        self.in_flight = Some(epoch);
    }

    /// Waits until the epoch it wrote last is committed (forever if there
    /// is none): then what it wrote may leave memory.
    pub async fn committed(&mut self) {
        let Some(epoch) = self.in_flight else {
            return std::future::pending().await;
        };
        if self.commits.wait_for(|c| *c >= epoch).await.is_err() {
            // The coordinator is gone: the job is stopping.
            return std::future::pending().await;
        }
        self.in_flight = None;
    }
}

/// A participant's hold on its job's sources: while it holds more rows than
/// a checkpoint can let go of soon (twice its cache), the readers stop
/// reading, so memory stays bounded whatever the rate of change; barriers
/// still flow, and the commit they lead to lets it evict and let go.
pub struct MemoryPressure {
    trigger: Arc<BarrierTrigger>,
    settings: Arc<CheckpointSettings>,
    held: bool,
}

impl MemoryPressure {
    /// Holds the sources while `over` (and checkpoints are on: without them
    /// nothing could ever be evicted, and holding would stop the job).
    pub fn set(&mut self, over: bool) {
        let hold = over && self.settings.interval().is_some();
        if hold == self.held {
            return;
        }
        self.held = hold;
        if hold {
            tracing::debug!("memory full: sources held until a checkpoint");
            self.trigger.holders.fetch_add(1, Ordering::AcqRel);
        } else {
            self.trigger.holders.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Drop for MemoryPressure {
    fn drop(&mut self) {
        self.set(false);
    }
}

/// Shared with the server: the checkpoint interval (`checkpoint_interval`,
/// 0 for none), and a way to ask every job for a checkpoint now.
#[derive(Debug)]
pub struct CheckpointSettings {
    interval_ms: AtomicU64,
}

impl CheckpointSettings {
    pub fn new(interval: Duration) -> Self {
        CheckpointSettings {
            interval_ms: AtomicU64::new(interval.as_millis() as u64),
        }
    }

    pub fn interval(&self) -> Option<Duration> {
        match self.interval_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }

    pub fn set_interval(&self, interval: Duration) {
        self.interval_ms
            .store(interval.as_millis() as u64, Ordering::Relaxed);
    }
}

/// Saves what a part of the job had counted at its barrier.
pub fn save_counters(
    metrics: &JobMetrics,
    part: Part,
    counted: [u64; 4],
    keys: &JobKeys,
    writes: &mut Writes,
) {
    writes.put(
        keys.counters(metrics.slot(part)),
        JobKeys::counters_value(counted),
    );
}

/// How often a coordinator looks at the interval setting.
const SETTINGS_POLL: Duration = Duration::from_millis(500);

/// The epoch being taken.
struct Open {
    epoch: u64,
    started: Instant,
    acked: Vec<bool>,
    writes: Writes,
}

pub struct Coordinator {
    keys: JobKeys,
    store: Arc<Store>,
    parallelism: usize,
    participants: usize,
    trigger: Arc<BarrierTrigger>,
    settings: Arc<CheckpointSettings>,
    metrics: Arc<JobMetrics>,
    rx: mpsc::UnboundedReceiver<Ack>,
    /// Asks for a checkpoint now (graceful shutdown, savepoints).
    now: watch::Receiver<u64>,
    /// Participants whose cache is full ask for one (see [`Acks::cache_full`]).
    cache_full: Arc<Notify>,
    /// The last committed epoch, for those who wait on a checkpoint.
    committed: watch::Sender<u64>,
}

/// What a job keeps of its coordinator: ask for a checkpoint now, and learn
/// when one is committed.
#[derive(Clone)]
pub struct CheckpointHandle {
    now: watch::Sender<u64>,
    committed: watch::Receiver<u64>,
    trigger: Arc<BarrierTrigger>,
}

impl CheckpointHandle {
    /// Asks for a checkpoint and waits until one that started after the
    /// call is committed, or `timeout` passes. True if it was.
    pub async fn checkpoint_now(&self, timeout: Duration) -> bool {
        let mut committed = self.committed.clone();
        // An epoch in flight started before the call: wait for the next.
        let target = self.trigger.current().max(*committed.borrow()) + 1;
        self.now.send_modify(|n| *n += 1);
        tokio::time::timeout(timeout, committed.wait_for(|e| *e >= target))
            .await
            .map(|r| r.is_ok())
            .unwrap_or(false)
    }
}

impl Coordinator {
    /// A coordinator for `participants` participants; returns it with the
    /// acknowledgement channel each participant's [`Acks`] is made from.
    pub fn new(
        keys: JobKeys,
        store: Arc<Store>,
        parallelism: usize,
        participants: usize,
        last_committed: u64,
        settings: Arc<CheckpointSettings>,
        metrics: Arc<JobMetrics>,
    ) -> (
        Coordinator,
        Vec<Acks>,
        Arc<BarrierTrigger>,
        CheckpointHandle,
    ) {
        let (tx, rx) = mpsc::unbounded_channel();
        let cache_full = Arc::new(Notify::new());
        let trigger = Arc::new(BarrierTrigger::new(last_committed));
        let (now_tx, now_rx) = watch::channel(0);
        let (committed_tx, committed_rx) = watch::channel(last_committed);
        let acks = (0..participants)
            .map(|participant| Acks {
                participant,
                tx: tx.clone(),
                settings: settings.clone(),
                cache_full: cache_full.clone(),
                committed: committed_rx.clone(),
                trigger: trigger.clone(),
            })
            .collect();
        let coordinator = Coordinator {
            keys,
            store,
            parallelism,
            participants,
            trigger: trigger.clone(),
            settings,
            metrics,
            rx,
            now: now_rx,
            cache_full,
            committed: committed_tx,
        };
        let handle = CheckpointHandle {
            now: now_tx,
            committed: committed_rx,
            trigger: trigger.clone(),
        };
        (coordinator, acks, trigger, handle)
    }

    pub async fn run(mut self) -> Result<()> {
        let n = self.participants;
        let mut last = self.trigger.current();
        let mut open: Option<Open> = None;
        let mut ended = vec![false; n];
        // Final writes of participants that ended after acknowledging the
        // open epoch: they belong to the next one.
        let mut carry = Writes::default();
        let mut last_start = Instant::now();
        loop {
            if ended.iter().all(|e| *e) && open.is_none() {
                // With checkpoints off nothing is saved, not even the end.
                // (No barrier: the duration reported is the commit's.)
                if self.settings.interval().is_some() {
                    self.commit(last + 1, carry, true, Instant::now())?;
                }
                return Ok(());
            }
            // The interval may change (SET): look again at least this often.
            let due = self.settings.interval().map(|i| last_start + i);
            let wake = due
                .unwrap_or(Instant::now() + SETTINGS_POLL)
                .min(Instant::now() + SETTINGS_POLL);
            tokio::select! {
                _ = tokio::time::sleep_until(wake.into()), if open.is_none() => {
                    if due.is_some_and(|d| Instant::now() >= d) {
                        last_start = Instant::now();
                        open = Some(self.open(last + 1, &mut carry));
                    }
                }
                _ = self.cache_full.notified(), if open.is_none() => {
                    // With checkpoints off nothing can be let go anyway.
                    if self.settings.interval().is_some() {
                        tracing::trace!(job = %self.metrics.name, "checkpoint early: a cache is full");
                        last_start = Instant::now();
                        open = Some(self.open(last + 1, &mut carry));
                    }
                }
                changed = self.now.changed(), if open.is_none() => {
                    if changed.is_err() {
                        // The job is gone.
                        return Ok(());
                    }
                    last_start = Instant::now();
                    open = Some(self.open(last + 1, &mut carry));
                }
                ack = self.rx.recv() => match ack {
                    None => return Ok(()),
                    Some(Ack::Epoch { participant, epoch, writes }) => {
                        let o = open.as_mut().filter(|o| o.epoch == epoch).ok_or_else(|| {
                            Error::internal(format!("an acknowledgement of epoch {epoch}, which is not open"))
                        })?;
                        o.acked[participant] = true;
                        o.writes.append(writes);
                    }
                    Some(Ack::Ended { participant, writes }) => {
                        ended[participant] = true;
                        match open.as_mut() {
                            Some(o) if !o.acked[participant] => o.writes.append(writes),
                            _ => carry.append(writes),
                        }
                    }
                },
            }
            let complete = open
                .as_ref()
                .map(|o| (0..n).all(|p| o.acked[p] || ended[p]))
                .unwrap_or(false);
            if complete {
                let o = open.take().expect("complete implies open");
                last = o.epoch;
                self.commit(o.epoch, o.writes, false, o.started)?;
            }
        }
    }

    fn open(&self, epoch: u64, carry: &mut Writes) -> Open {
        tracing::trace!(job = %self.metrics.name, epoch, "checkpoint started");
        self.trigger.request(epoch);
        Open {
            epoch,
            started: Instant::now(),
            acked: vec![false; self.participants],
            writes: std::mem::take(carry),
        }
    }

    fn commit(
        &self,
        epoch: u64,
        mut writes: Writes,
        finished: bool,
        started: Instant,
    ) -> Result<()> {
        let m = &self.metrics;
        let record = EpochRecord {
            epoch,
            parallelism: self.parallelism,
            finished,
        };
        let value = serde_json::to_vec(&record).map_err(|e| Error::internal(e.to_string()))?;
        writes.put(self.keys.epoch(), value);
        let bytes = writes.bytes();
        // The write (and its sync) blocks this thread, not the runtime: the
        // other operators go on meanwhile. It stays inside the task, so a
        // stopped job never commits afterwards.
        tokio::task::block_in_place(|| self.store.commit(writes))?;
        let took = started.elapsed();
        m.record_checkpoint(epoch, took, bytes as u64);
        tracing::debug!(job = %m.name, epoch, bytes, ms = took.as_millis() as u64, finished, "checkpoint committed");
        let _ = self.committed.send(epoch);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pressure(trigger: &Arc<BarrierTrigger>, interval: Duration) -> MemoryPressure {
        MemoryPressure {
            trigger: trigger.clone(),
            settings: Arc::new(CheckpointSettings::new(interval)),
            held: false,
        }
    }

    #[test]
    fn a_held_source_waits_but_still_sends_barriers() {
        let trigger = Arc::new(BarrierTrigger::new(0));
        let mut seen = 0;
        assert_eq!(trigger.poll(&mut seen), None, "not held: returns at once");
        let mut full = pressure(&trigger, Duration::from_secs(1));
        full.set(true);
        // Held: poll returns only for a barrier...
        let t = trigger.clone();
        let asker = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            t.request(1);
        });
        let started = Instant::now();
        assert_eq!(trigger.poll(&mut seen), Some(1));
        assert!(started.elapsed() >= Duration::from_millis(40));
        asker.join().unwrap();
        // ...or when the hold ends (here: the participant goes away).
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            drop(full);
        });
        assert_eq!(trigger.poll(&mut seen), None);
        releaser.join().unwrap();
    }

    #[test]
    fn without_checkpoints_nothing_is_held() {
        // Nothing could ever be evicted: holding would stop the job.
        let trigger = Arc::new(BarrierTrigger::new(0));
        let mut full = pressure(&trigger, Duration::ZERO);
        full.set(true);
        assert_eq!(trigger.poll(&mut 0), None);
    }
}
