//! The source of a view over a view: the committed log of the view it reads.
//!
//! A view whose rows never change once shown (see
//! `StreamPlan::appends_only`) is stored as an append-only log, one per
//! shard of its job, written by its checkpoints together with the watermark
//! each shard had. A view over it reads that log like a Kafka topic: each
//! upstream shard is a split (`shard-3`), its position the sequence number
//! of the next batch, and its watermark the upstream's, so windows over the
//! upstream's time attribute close exactly when the upstream says its rows
//! are complete.
//!
//! A view whose rows change (an aggregation, windows in progress) is read
//! as its changes instead (see `state::view::ChangeLog`): first a snapshot
//! of each shard's committed rows, then each checkpoint's entry of changed
//! keys; the split's position is 0 before the snapshot, then 1 + the next
//! entry. The view over it upserts and deletes by the upstream's key.
//!
//! Only committed batches are read: a crash of either view loses nothing and
//! repeats nothing (the reader resumes from its own checkpoint's positions,
//! which never pass what the upstream committed). The price is latency: a
//! row reaches the view over it after the upstream's next checkpoint
//! (`checkpoint_interval`, 1 s by default), as between Flink jobs joined by
//! a transactional Kafka topic.

use std::sync::Arc;
use std::time::Duration;

use crate::connector::{EventSender, ReaderContext, SourceEvent, SourceReader, SPLIT_DONE};
use crate::error::Result;
use crate::state::checkpoint::JobKeys;
use crate::state::view::{ChangeLog, ViewLog};
use crate::state::Store;

/// How often a reader that has caught up looks for newly committed batches.
const POLL: Duration = Duration::from_millis(10);
/// Batches read from one shard before the reader looks at the others (and
/// for barriers) again.
const BATCHES_PER_TURN: usize = ViewLog::BATCHES_PER_TURN;

/// The view a view reads.
#[derive(Debug, Clone)]
pub struct ViewSpec {
    /// The upstream view's name.
    pub view: String,
    /// Its job (where its log is stored).
    pub job: u64,
    /// Its shards (the parallelism of its job).
    pub shards: usize,
    /// Whether the upstream's own sources end (then so does this one).
    pub bounded: bool,
    /// For an upstream whose rows change: its key columns. It is read as
    /// its changes (upserts and deletes by key), not as a log of rows.
    pub changes: Option<arrow::datatypes::SchemaRef>,
}

impl ViewSpec {
    /// `shard-3` for shard 3.
    fn split_name(shard: usize) -> String {
        format!("shard-{shard}")
    }
}

pub struct ViewReader {
    ctx: ReaderContext,
    /// The upstream's log (and its shards' watermarks).
    log: ViewLog,
    /// For an upstream whose rows change: its changes, read instead of
    /// its log.
    changes: Option<ChangeLog>,
    /// The upstream shards this reader owns.
    shards: Vec<usize>,
}

impl ViewReader {
    pub fn new(spec: ViewSpec, ctx: ReaderContext, store: Arc<Store>) -> Result<Self> {
        let keys = JobKeys::new(spec.job);
        let log = ViewLog::new(store.clone(), keys, ctx.schema.clone())?;
        let changes = match spec.changes {
            Some(key) => Some(ChangeLog::new(store, keys, ctx.schema.clone(), key)?),
            None => None,
        };
        let shards = (0..spec.shards)
            .filter(|s| s % ctx.parallelism == ctx.instance)
            .collect();
        Ok(ViewReader {
            ctx,
            log,
            changes,
            shards,
        })
    }
}

/// Where the reader is in one upstream shard.
struct Cursor {
    /// The next batch to read; for changes, 0 until the snapshot of the
    /// shard's rows is read, then 1 + the next entry to read.
    next: u64,
    /// The last watermark sent.
    watermark: i64,
    done: bool,
}

impl SourceReader for ViewReader {
    fn run(self: Box<Self>, out: &EventSender) -> Result<()> {
        let names: Vec<String> = self
            .shards
            .iter()
            .map(|s| ViewSpec::split_name(*s))
            .collect();
        let mut cursors: Vec<Cursor> = names
            .iter()
            .map(|name| {
                let resume = self.ctx.resume_position(name);
                Cursor {
                    next: resume.filter(|p| *p != SPLIT_DONE).unwrap_or(0).max(0) as u64,
                    watermark: i64::MIN,
                    done: resume == Some(SPLIT_DONE),
                }
            })
            .collect();
        if !out.send(SourceEvent::Assigned { names }) {
            return Ok(());
        }
        for (split, c) in cursors.iter().enumerate() {
            if c.done && !out.send(SourceEvent::SplitEnd { split }) {
                return Ok(());
            }
        }
        let mut seen = self.ctx.barriers.current();
        loop {
            // Nothing after the last split's end, not even a barrier: its
            // final watermark told the job's owners this instance is done.
            if cursors.iter().all(|c| c.done) {
                return Ok(());
            }
            if let Some(epoch) = self.ctx.poll_barrier(&mut seen) {
                let positions = cursors
                    .iter()
                    .map(|c| if c.done { SPLIT_DONE } else { c.next as i64 })
                    .collect();
                if !out.send(self.ctx.barrier(epoch, positions)) {
                    return Ok(());
                }
            }
            let mut busy = false;
            for (split, (c, shard)) in cursors.iter_mut().zip(&self.shards).enumerate() {
                if c.done {
                    continue;
                }
                // The watermark first: the batches read after it include
                // every batch its checkpoint committed.
                let watermark = self.log.watermark(*shard)?;
                let mut closed = false;
                let read = if let Some(changes) = &self.changes {
                    let mut send = |changes: crate::state::view::KeyedChanges| {
                        self.ctx.counters().rows_in.fetch_add(
                            changes.rows_at.len() as u64,
                            std::sync::atomic::Ordering::Relaxed,
                        );
                        closed |= !out.send(SourceEvent::Changes { split, changes });
                        Ok(())
                    };
                    if c.next == 0 {
                        // First every row it has, then the entries after.
                        c.next = changes.snapshot(*shard, &mut send)? + 1;
                        if closed {
                            return Ok(());
                        }
                        busy = true;
                        continue;
                    }
                    let entries = changes.read(*shard, c.next - 1, BATCHES_PER_TURN)?;
                    let n = entries.len();
                    for (seq, entry) in entries {
                        c.next = seq + 2;
                        send(entry)?;
                    }
                    n
                } else {
                    self.log
                        .read(*shard, c.next, BATCHES_PER_TURN, |seq, batch| {
                            c.next = seq + 1;
                            let prepared = self.ctx.preparer.prepare(batch)?;
                            self.ctx.counters().rows_in.fetch_add(
                                prepared.batch.num_rows() as u64,
                                std::sync::atomic::Ordering::Relaxed,
                            );
                            let rows = prepared.batch.num_rows();
                            if rows > 0 {
                                closed |= !out.send(SourceEvent::Rows {
                                    split,
                                    batch: prepared.batch,
                                    positions: vec![seq as i64; rows],
                                });
                            }
                            Ok(())
                        })?
                };
                if closed {
                    return Ok(());
                }
                if read == BATCHES_PER_TURN {
                    // More may wait: the watermark only once they are read.
                    busy = true;
                    continue;
                }
                if !self.advance(c, split, watermark, out) {
                    return Ok(());
                }
                busy |= read > 0;
            }
            if !busy {
                if out.is_closed() {
                    return Ok(());
                }
                std::thread::sleep(POLL);
            }
        }
    }
}

impl ViewReader {
    /// Once a shard's committed rows are read: sends its watermark, and
    /// ends the split at the upstream's end. False if the pipeline is gone.
    fn advance(
        &self,
        c: &mut Cursor,
        split: usize,
        watermark: Option<i64>,
        out: &EventSender,
    ) -> bool {
        match watermark {
            Some(w) if w > c.watermark => {
                c.watermark = w;
                if !out.send(SourceEvent::Watermark {
                    split,
                    watermark: w,
                }) {
                    return false;
                }
                if w == i64::MAX {
                    c.done = true;
                    return out.send(SourceEvent::SplitEnd { split });
                }
                true
            }
            _ => true,
        }
    }
}
