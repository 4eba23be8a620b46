//! Owner instances: the operators that own keys (a final aggregation, a
//! join of two streams), each fed by every pipeline instance whose rows
//! hash to it, and the loop that runs them: it combines their inputs'
//! messages, aligns checkpoint barriers, and sends on what they make for
//! owners downstream.

use std::collections::VecDeque;
use std::time::Duration;

use arrow::array::RecordBatch;
use tokio::sync::mpsc;

use crate::dataflow::checkpoint::Acks;
use crate::dataflow::message::{Envelope, Message};
use crate::error::{Error, Result};
use crate::state::Writes;

/// A message for the owners downstream: to one, or to all (None).
pub type Outgoing = (Option<usize>, Message);

/// An operator that owns keys: it takes the rows of every pipeline
/// instance whose keys hash to it (a final aggregation, a join).
pub trait Owner {
    fn on_batch(&mut self, from: usize, batch: RecordBatch) -> Result<()>;
    fn on_watermark(&mut self, from: usize, watermark: i64) -> Result<()>;
    fn on_idle(&mut self, from: usize) -> Result<()>;
    /// Rows of input `from` may wait behind its barrier: until they are
    /// taken, it must hold the watermark back even if it was idle (it says
    /// idle again after the barrier if it still is).
    fn on_barrier(&mut self, from: usize);
    fn checkpoint(&mut self, writes: &mut Writes) -> Result<()>;
    fn committed(&mut self) -> Result<()>;
    fn cache_use(&self) -> f64;
    /// EMIT EVERY: how often in-progress results show.
    fn early_every(&self) -> Option<Duration> {
        None
    }
    fn emit_early(&mut self) -> Result<()> {
        Ok(())
    }
    /// Messages for the owners downstream (to one, or to all).
    fn take_outbox(&mut self, _into: &mut Vec<Outgoing>) {}
    /// Its state for `epoch` is saved.
    fn after_checkpoint(&mut self, _epoch: u64) {}
}

/// Where an owner instance sends what it makes for owners downstream (a
/// join's pre-aggregated pairs): its number, and the owners.
pub struct OwnerOutput {
    pub instance: usize,
    pub owners: Vec<mpsc::Sender<Envelope>>,
}

/// Runs an owner instance fed by `inputs` pipelines: aligns their
/// checkpoint barriers. Once an input's barrier has come, its messages
/// wait (in arrival order) until every other input's barrier has come too
/// or that input has ended; then the instance saves its state for the
/// epoch and takes the waiting messages.
pub async fn run_owner(
    mut input: mpsc::Receiver<Envelope>,
    mut operator: impl Owner,
    inputs: usize,
    acks: Acks,
    output: Option<OwnerOutput>,
) -> Result<()> {
    let mut outbox: Vec<Outgoing> = Vec::new();
    let result = owner_loop(
        &mut input,
        &mut operator,
        inputs,
        acks,
        &output,
        &mut outbox,
    )
    .await;
    // What is left to send (the end's watermark) goes before the channels
    // close.
    send_outbox(&mut operator, &output, &mut outbox).await?;
    result
}

/// Sends the operator's messages for the owners downstream.
async fn send_outbox(
    operator: &mut impl Owner,
    output: &Option<OwnerOutput>,
    outbox: &mut Vec<Outgoing>,
) -> Result<()> {
    operator.take_outbox(outbox);
    let Some(output) = output else {
        outbox.clear();
        return Ok(());
    };
    for (to, message) in outbox.drain(..) {
        let targets = match to {
            Some(owner) => owner..owner + 1,
            None => 0..output.owners.len(),
        };
        for owner in targets {
            let envelope = Envelope {
                from: output.instance,
                message: message.clone(),
            };
            if output.owners[owner].send(envelope).await.is_err() {
                return Err(Error::internal("an aggregation instance stopped early"));
            }
        }
    }
    Ok(())
}

async fn owner_loop(
    input: &mut mpsc::Receiver<Envelope>,
    operator: &mut impl Owner,
    inputs: usize,
    acks: Acks,
    output: &Option<OwnerOutput>,
    outbox: &mut Vec<Outgoing>,
) -> Result<()> {
    let mut ended = vec![false; inputs];
    // The epoch being aligned, and which inputs' barriers have come.
    let mut aligning: Option<u64> = None;
    let mut barrier_from = vec![false; inputs];
    let mut waiting: VecDeque<Envelope> = VecDeque::new();
    let mut memory = acks.memory();
    // EMIT EVERY: in-progress windows show on this clock.
    let mut early = operator.early_every().map(|every| {
        let mut t = tokio::time::interval(every);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    loop {
        let envelope = match waiting.pop_front() {
            Some(e) if aligning.is_none() => e,
            front => {
                if let Some(e) = front {
                    waiting.push_front(e);
                }
                tokio::select! {
                    next = input.recv() => match next {
                        Some(e) => e,
                        None => break,
                    },
                    () = memory.committed() => {
                        operator.committed()?;
                        memory.observe(operator.cache_use());
                        continue;
                    }
                    _ = async { early.as_mut().expect("checked").tick().await }, if early.is_some() => {
                        operator.emit_early()?;
                        continue;
                    }
                }
            }
        };
        let from = envelope.from;
        if aligning.is_some() && barrier_from[from] {
            waiting.push_back(envelope);
            continue;
        }
        match envelope.message {
            Message::Batch(batch) => {
                operator.on_batch(from, batch)?;
                memory.observe(operator.cache_use());
            }
            Message::Watermark(w) => {
                if w == i64::MAX {
                    ended[from] = true;
                }
                operator.on_watermark(from, w)?;
            }
            Message::Idle => operator.on_idle(from)?,
            Message::Barrier(epoch) => {
                aligning = Some(epoch);
                barrier_from[from] = true;
                operator.on_barrier(from);
            }
        }
        if let Some(epoch) = aligning {
            if (0..inputs).all(|i| barrier_from[i] || ended[i]) {
                let mut writes = Writes::default();
                operator.checkpoint(&mut writes)?;
                acks.epoch(epoch, writes);
                memory.checkpointed(epoch);
                operator.after_checkpoint(epoch);
                aligning = None;
                barrier_from.fill(false);
            }
        }
        send_outbox(operator, output, outbox).await?;
    }
    let mut writes = Writes::default();
    if acks.saving() {
        operator.checkpoint(&mut writes)?;
    }
    acks.ended(writes);
    Ok(())
}

/// Where the rows of an owner instance that passes rows on (a join, a
/// union) go: into its view shard (through the view's operations), or
/// through its operations on to the owners of the stage above.
pub enum RowsOut {
    View(crate::dataflow::materialize::Materialize),
    Owners {
        ops: std::sync::Arc<Vec<crate::dataflow::physical::PhysicalOp>>,
        onward: crate::dataflow::partial_aggregate::Onward,
        owners: usize,
        dead_letters: std::sync::Arc<crate::metrics::DeadLetterQueue>,
        /// The last watermark sent.
        sent: i64,
        /// Messages for the owners downstream, not sent yet.
        outbox: Vec<Outgoing>,
        hashes: Vec<u64>,
    },
}

impl RowsOut {
    /// Sends rows on; a row whose expressions cannot be evaluated becomes
    /// a dead letter of `part` (`what` names the row), the others go on.
    pub fn send(
        &mut self,
        rows: RecordBatch,
        metrics: &crate::metrics::JobMetrics,
        part: crate::metrics::Part,
        what: &str,
    ) -> Result<()> {
        match self {
            RowsOut::View(view) => view.append(rows),
            RowsOut::Owners {
                ops,
                onward,
                owners,
                dead_letters,
                outbox,
                hashes,
                ..
            } => {
                let bad = onward.send(&rows, ops, None, *owners, hashes, outbox)?;
                for (row, error) in bad {
                    crate::dataflow::physical::dead_letter(
                        dead_letters,
                        metrics,
                        part,
                        what.to_string(),
                        &row,
                        &error,
                    );
                }
                Ok(())
            }
        }
    }

    /// Its rows to come are above `watermark`: the view's watermark
    /// advances (over all instances, this one's `instance`), or the
    /// owners downstream are told.
    pub fn watermark(
        &mut self,
        watermark: i64,
        instance: usize,
        view_watermarks: &parking_lot::Mutex<crate::dataflow::watermark::WatermarkCombiner>,
        metrics: &crate::metrics::JobMetrics,
    ) {
        match self {
            RowsOut::View(_) => {
                if let Some(w) = view_watermarks.lock().on_watermark(instance, watermark) {
                    metrics.advance_watermark(w);
                }
            }
            RowsOut::Owners { sent, outbox, .. } if watermark > *sent => {
                *sent = watermark;
                outbox.push((None, Message::Watermark(watermark)));
            }
            RowsOut::Owners { .. } => {}
        }
    }

    /// After a checkpoint: the owners downstream get the barrier.
    pub fn after_checkpoint(&mut self, epoch: u64) {
        if let RowsOut::Owners { outbox, .. } = self {
            outbox.push((None, Message::Barrier(epoch)));
        }
    }

    pub fn take_outbox(&mut self, into: &mut Vec<Outgoing>) {
        if let RowsOut::Owners { outbox, .. } = self {
            into.append(outbox);
        }
    }

    /// Saves its view shard, whose rows to come are above `watermark`,
    /// with the counters of `part` (the owners downstream save what they
    /// counted).
    pub fn checkpoint(
        &self,
        watermark: impl FnOnce() -> i64,
        metrics: &crate::metrics::JobMetrics,
        part: crate::metrics::Part,
        keys: &crate::state::checkpoint::JobKeys,
        writes: &mut Writes,
    ) -> Result<()> {
        let RowsOut::View(view) = self else {
            return Ok(());
        };
        crate::dataflow::checkpoint::save_counters(
            metrics,
            part,
            metrics.part(part).snapshot(),
            keys,
            writes,
        );
        view.checkpoint(watermark(), writes)
    }

    /// Its view shard, if it writes one.
    pub fn view(&self) -> Option<&crate::dataflow::materialize::Materialize> {
        match self {
            RowsOut::View(view) => Some(view),
            RowsOut::Owners { .. } => None,
        }
    }

    pub fn committed(&self) -> Result<()> {
        self.view().map_or(Ok(()), |v| v.committed())
    }

    pub fn cache_use(&self) -> f64 {
        self.view().map_or(0.0, |v| v.cache_use())
    }
}
