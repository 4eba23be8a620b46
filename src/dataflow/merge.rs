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

use crate::dataflow::owner::{Outgoing, Owner, RowsOut};
use crate::dataflow::watermark::WatermarkCombiner;
use crate::error::Result;
use crate::metrics::{JobMetrics, Part};
use crate::state::checkpoint::JobKeys;
use crate::state::Writes;

pub struct Merge {
    /// The union's columns.
    schema: SchemaRef,
    out: RowsOut,
    watermarks: WatermarkCombiner,
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
        out: RowsOut,
        instance: usize,
        output_watermarks: Arc<Mutex<WatermarkCombiner>>,
        metrics: Arc<JobMetrics>,
        keys: JobKeys,
    ) -> Self {
        Merge {
            schema,
            out,
            watermarks: WatermarkCombiner::new(inputs),
            instance,
            output_watermarks,
            metrics,
            keys,
        }
    }

    fn advance(&mut self, combined: Option<i64>) {
        if let Some(w) = combined {
            self.out
                .watermark(w, self.instance, &self.output_watermarks, &self.metrics);
        }
    }
}

impl Owner for Merge {
    fn on_batch(&mut self, from: usize, batch: RecordBatch) -> Result<()> {
        self.watermarks.on_data(from);
        // Each input names its columns as its own query does.
        let batch = RecordBatch::try_new(self.schema.clone(), batch.columns().to_vec())?;
        let what = format!("a row of the union in instance {}", self.instance);
        self.out
            .send(batch, &self.metrics, Part::Final(self.instance), &what)
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
        let watermark = self.watermarks.current();
        self.out.checkpoint(
            || watermark,
            &self.metrics,
            Part::Final(self.instance),
            &self.keys,
            writes,
        )
    }

    fn committed(&mut self) -> Result<()> {
        self.out.committed()
    }

    fn cache_use(&self) -> f64 {
        self.out.cache_use()
    }

    fn take_outbox(&mut self, into: &mut Vec<Outgoing>) {
        self.out.take_outbox(into);
    }

    fn after_checkpoint(&mut self, epoch: u64) {
        self.out.after_checkpoint(epoch);
    }
}
