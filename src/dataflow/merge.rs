//! Merge: the rows of several inputs as one stream (`UNION ALL`).
//!
//! Input: instance i of each input (forwarded, not exchanged: input k's
//! instance i sends everything to merge instance i as input k), and their
//! watermarks.
//! Output: each batch, as the union's columns, through the operations on
//! the union's rows: into the view's shard i, or on to the owners of the
//! stage above (by key, or partially aggregated); then the least watermark
//! of its inputs, and checkpoint barriers.
//! State: none but its view shard.
//! Watermarks: the minimum over its inputs that are not idle.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use parking_lot::Mutex;

use crate::dataflow::checkpoint::save_counters;
use crate::dataflow::materialize::Materialize;
use crate::dataflow::message::Message;
use crate::dataflow::owner::{Outgoing, Owner};
use crate::dataflow::partial_aggregate::Onward;
use crate::dataflow::physical::PhysicalOp;
use crate::dataflow::watermark::WatermarkCombiner;
use crate::error::Result;
use crate::metrics::{DeadLetterQueue, JobMetrics, Part};
use crate::state::checkpoint::JobKeys;
use crate::state::Writes;

/// Where a merge instance's rows go.
pub enum MergeOutput {
    /// Into its view shard (whose operations are the union's).
    View(Materialize),
    /// Through the union's operations to the owners downstream.
    Owners {
        ops: Arc<Vec<PhysicalOp>>,
        onward: Onward,
        owners: usize,
        dead_letters: Arc<DeadLetterQueue>,
        /// The last watermark sent.
        sent: i64,
    },
}

pub struct Merge {
    /// The union's columns.
    schema: SchemaRef,
    out: MergeOutput,
    watermarks: WatermarkCombiner,
    outbox: Vec<Outgoing>,
    hashes: Vec<u64>,
    instance: usize,
    /// The view's watermark over all instances.
    output_watermarks: Arc<Mutex<WatermarkCombiner>>,
    metrics: Arc<JobMetrics>,
    keys: JobKeys,
}

impl Merge {
    /// Instance `instance` (its counters' part, and its view shard) of a
    /// union of `inputs` inputs.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        schema: SchemaRef,
        inputs: usize,
        out: MergeOutput,
        instance: usize,
        output_watermarks: Arc<Mutex<WatermarkCombiner>>,
        metrics: Arc<JobMetrics>,
        keys: JobKeys,
    ) -> Self {
        Merge {
            schema,
            out,
            watermarks: WatermarkCombiner::new(inputs),
            outbox: Vec::new(),
            hashes: Vec::new(),
            instance,
            output_watermarks,
            metrics,
            keys,
        }
    }

    fn advance(&mut self, combined: Option<i64>) {
        let Some(w) = combined else {
            return;
        };
        match &mut self.out {
            MergeOutput::View(_) => {
                if let Some(w) = self.output_watermarks.lock().on_watermark(self.instance, w) {
                    self.metrics.advance_watermark(w);
                }
            }
            MergeOutput::Owners { sent, .. } if w > *sent => {
                *sent = w;
                self.outbox.push((None, Message::Watermark(w)));
            }
            MergeOutput::Owners { .. } => {}
        }
    }
}

impl Owner for Merge {
    fn on_batch(&mut self, from: usize, batch: RecordBatch) -> Result<()> {
        self.watermarks.on_data(from);
        // Each input names its columns as its own query does.
        let batch = RecordBatch::try_new(self.schema.clone(), batch.columns().to_vec())?;
        match &mut self.out {
            MergeOutput::View(view) => view.append(batch),
            MergeOutput::Owners {
                ops,
                onward,
                owners,
                dead_letters,
                ..
            } => {
                let bad = onward.send(
                    &batch,
                    ops,
                    None,
                    *owners,
                    &mut self.hashes,
                    &mut self.outbox,
                )?;
                for (row, error) in bad {
                    crate::dataflow::physical::dead_letter(
                        dead_letters,
                        &self.metrics,
                        Part::Final(self.instance),
                        format!("a row of the union in instance {}", self.instance),
                        &row,
                        &error,
                    );
                }
                Ok(())
            }
        }
    }

    fn on_watermark(&mut self, from: usize, watermark: i64) -> Result<()> {
        let combined = self.watermarks.on_watermark(from, watermark);
        self.advance(combined);
        Ok(())
    }

    fn on_idle(&mut self, from: usize) -> Result<()> {
        let combined = self.watermarks.on_idle(from);
        self.advance(combined);
        Ok(())
    }

    fn on_barrier(&mut self, from: usize) {
        self.watermarks.on_data(from);
    }

    fn checkpoint(&mut self, writes: &mut Writes) -> Result<()> {
        let MergeOutput::View(view) = &self.out else {
            // The owners downstream save what they counted.
            return Ok(());
        };
        let part = Part::Final(self.instance);
        save_counters(
            &self.metrics,
            part,
            self.metrics.part(part).snapshot(),
            &self.keys,
            writes,
        );
        view.checkpoint(self.watermarks.current(), writes)
    }

    fn committed(&mut self) -> Result<()> {
        match &self.out {
            MergeOutput::View(view) => view.committed(),
            MergeOutput::Owners { .. } => Ok(()),
        }
    }

    fn cache_use(&self) -> f64 {
        match &self.out {
            MergeOutput::View(view) => view.cache_use(),
            MergeOutput::Owners { .. } => 0.0,
        }
    }

    fn take_outbox(&mut self, into: &mut Vec<Outgoing>) {
        into.append(&mut self.outbox);
    }

    fn after_checkpoint(&mut self, epoch: u64) {
        if matches!(self.out, MergeOutput::Owners { .. }) {
            self.outbox.push((None, Message::Barrier(epoch)));
        }
    }
}
