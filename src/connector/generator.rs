//! The loop of a generating source (datagen, nexmark): one split per
//! instance; instance i of p makes rows i, i + p, ... (its share of the
//! total, if bounded), in batches, paced to a rate or as fast as the job
//! takes them, with checkpoint barriers between batches. A checkpoint saves
//! how many rows the instance made, so a restart makes the rest.

use std::time::{Duration, Instant};

use arrow::array::RecordBatch;

use crate::connector::{EventSender, ReaderContext, SourceEvent, SPLIT_DONE};
use crate::error::Result;

/// A paced generator waiting for its next rows looks for barriers this
/// often.
const BARRIER_POLL: Duration = Duration::from_millis(20);

pub struct Pace {
    /// Rows over all instances (None: unbounded).
    pub total: Option<u64>,
    /// Rows per second over all instances.
    pub rows_per_second: f64,
    /// Whether rows wait for their time (else they go as fast as taken).
    pub limited: bool,
}

/// Runs the split `split` of `ctx`'s instance. `start(resumed)` is called
/// once with the global index of the first row to make (after a restart,
/// past those made) and returns `make(first, n)`, which makes the n rows
/// with global indices first, first + p, ...
pub fn run<M>(
    ctx: &ReaderContext,
    out: &EventSender,
    split: &str,
    pace: Pace,
    start: impl FnOnce(u64) -> Result<M>,
) -> Result<()>
where
    M: FnMut(u64, usize) -> Result<RecordBatch>,
{
    if !out.send(SourceEvent::Assigned {
        names: vec![split.into()],
    }) {
        return Ok(());
    }
    let p = ctx.parallelism as u64;
    let i = ctx.instance as u64;
    let mine = pace
        .total
        .map(|n| if n > i { (n - i).div_ceil(p) } else { 0 });
    let resumed = match ctx.resume_position(split) {
        Some(SPLIT_DONE) => mine.unwrap_or(0),
        Some(made) => made.max(0) as u64,
        None => 0,
    };
    let mut make = start(i + resumed * p)?;
    let rate = (pace.rows_per_second / p as f64).max(1e-9);
    let per_batch = match pace.limited {
        true => ((rate * ctx.linger.as_secs_f64()) as usize).clamp(1, ctx.batch_size),
        false => ctx.batch_size,
    };
    let started = Instant::now();
    let mut made: u64 = resumed;
    let mut seen = ctx.barriers.current();
    let position = |made: u64| match mine {
        Some(m) if made >= m => SPLIT_DONE,
        _ => made as i64,
    };
    loop {
        let n = match mine {
            Some(m) if made >= m => break,
            Some(m) => per_batch.min((m - made) as usize),
            None => per_batch,
        };
        let due = started + Duration::from_secs_f64((made - resumed + n as u64) as f64 / rate);
        loop {
            if let Some(epoch) = ctx.poll_barrier(&mut seen) {
                if !out.send(ctx.barrier(epoch, vec![position(made)])) {
                    return Ok(());
                }
            }
            let now = Instant::now();
            if !pace.limited || due <= now {
                break;
            }
            std::thread::sleep((due - now).min(BARRIER_POLL));
        }
        let first = i + made * p;
        let batch = make(first, n)?;
        made += n as u64;
        if !ctx.send_generated(out, batch, first as i64, p as i64)? {
            return Ok(());
        }
    }
    out.send(SourceEvent::SplitEnd { split: 0 });
    Ok(())
}
