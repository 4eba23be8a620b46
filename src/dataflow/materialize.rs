//! Materialize: the last operator of every job; writes the view.
//!
//! Input: result rows (for aggregations: one row per changed group, with its
//! key).
//! Output: the view's contents (`state::view::ViewStore`).
//! State: the view itself, one shard per instance.
//! Watermarks: reports the job's watermark.
//! Checkpoint: the view contents are saved with the checkpoint (issue 3).
//!
//! For aggregations it applies what comes after the aggregation (HAVING and
//! the SELECT list) as an upsert: a group that no longer passes HAVING is
//! deleted from the view.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::compute::filter_record_batch;

use crate::dataflow::physical::{evaluate_mask, PhysicalOp};
use crate::error::Result;
use crate::metrics::JobMetrics;
use crate::state::view::ViewStore;

pub struct Materialize {
    view: Arc<ViewStore>,
    shard: usize,
    post: Arc<Vec<PhysicalOp>>,
    metrics: Arc<JobMetrics>,
}

impl Materialize {
    pub fn new(
        view: Arc<ViewStore>,
        shard: usize,
        post: Arc<Vec<PhysicalOp>>,
        metrics: Arc<JobMetrics>,
    ) -> Self {
        Materialize {
            view,
            shard,
            post,
            metrics,
        }
    }

    /// Appends rows to an append-only view.
    pub fn append(&self, batch: RecordBatch) -> Result<()> {
        let batch = crate::dataflow::physical::apply_all(&self.post, batch)?;
        self.metrics
            .rows_out
            .fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
        self.view.append(self.shard, batch);
        Ok(())
    }

    /// Sets the rows of the groups `keys` (row i of `results` belongs to
    /// `keys[i]`).
    pub fn upsert(&self, keys: &[&[u8]], results: RecordBatch) -> Result<()> {
        let mut batch = results;
        let mut live: Vec<&[u8]> = keys.to_vec();
        let mut deleted: Vec<&[u8]> = Vec::new();
        for op in self.post.iter() {
            match op {
                PhysicalOp::Filter(predicate) => {
                    let mask = evaluate_mask(predicate, &batch)?;
                    if mask.true_count() == mask.len() {
                        continue;
                    }
                    let mut kept = Vec::with_capacity(mask.true_count());
                    for (i, key) in live.iter().enumerate() {
                        if mask.value(i) {
                            kept.push(*key);
                        } else {
                            deleted.push(*key);
                        }
                    }
                    live = kept;
                    batch = filter_record_batch(&batch, &mask)?;
                }
                project @ PhysicalOp::Project { .. } => batch = project.apply(&batch)?,
            }
        }
        self.metrics
            .rows_out
            .fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
        self.view.upsert(self.shard, &live, batch, &deleted)
    }
}
