//! Materialize: the last operator of every job; writes the view.
//!
//! Input: result rows (for aggregations: one row per changed group, with its
//! key).
//! Output: the view's contents (`state::view::ViewStore`).
//! State: the view itself, one shard per instance.
//! Watermarks: reports the job's watermark.
//! Checkpoint: what changed in its view shard since the last checkpoint.
//!
//! For aggregations it applies what comes after the aggregation (HAVING and
//! the SELECT list) as an upsert: a group that no longer passes HAVING is
//! deleted from the view. Final window rows (`EMIT ON WINDOW CLOSE`) never
//! change, so those views append them (a log that views over them read).
//! Checkpoints also save the watermark the instance had, which views over
//! this one go by.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::compute::filter_record_batch;

use crate::dataflow::physical::{
    apply_all, dead_letter, evaluate_mask, per_row_on_error, PhysicalOp,
};
use crate::error::{Error, Result};
use crate::metrics::{Counters, DeadLetterQueue, JobMetrics, Part};
use crate::state::view::ViewStore;
use crate::state::Writes;

pub struct Materialize {
    view: Arc<ViewStore>,
    shard: usize,
    /// The part of the job it runs in (whose counters it adds to).
    part: Part,
    post: Arc<Vec<PhysicalOp>>,
    metrics: Arc<JobMetrics>,
    dead_letters: Arc<DeadLetterQueue>,
}

impl Materialize {
    pub fn new(
        view: Arc<ViewStore>,
        shard: usize,
        part: Part,
        post: Arc<Vec<PhysicalOp>>,
        metrics: Arc<JobMetrics>,
        dead_letters: Arc<DeadLetterQueue>,
    ) -> Self {
        Materialize {
            view,
            shard,
            part,
            post,
            metrics,
            dead_letters,
        }
    }

    /// Counts and keeps a result row that could not be finished.
    pub fn dead_letter(&self, row: &RecordBatch, error: Error) {
        dead_letter(
            &self.dead_letters,
            &self.metrics,
            self.part,
            format!("a result row of view {}", self.metrics.name),
            row,
            &error,
        );
    }

    /// The counters of the part it runs in.
    pub fn counters(&self) -> &Counters {
        self.metrics.part(self.part)
    }

    /// Saves what changed in its shard since the last checkpoint, with
    /// the watermark its rows have reached (what views over this view go
    /// by).
    pub fn checkpoint(&self, watermark: i64, writes: &mut Writes) -> Result<()> {
        self.view.checkpoint(self.shard, watermark, writes)
    }

    /// The memory its view shard takes, as a share of its cache.
    pub fn cache_use(&self) -> f64 {
        self.view.cache_use(self.shard)
    }

    /// Its shard's last checkpoint is committed.
    pub fn committed(&self) -> Result<()> {
        self.view.committed(self.shard)
    }

    /// Appends rows to an append-only view.
    pub fn append(&self, batch: RecordBatch) -> Result<()> {
        let (parts, bad) = per_row_on_error(&batch, |b| apply_all(&self.post, b.clone()))?;
        for (row, error) in bad {
            self.dead_letter(&row, error);
        }
        for part in parts {
            self.counters()
                .rows_out
                .fetch_add(part.num_rows() as u64, Ordering::Relaxed);
            self.view.append(self.shard, part);
        }
        Ok(())
    }

    /// Sets the rows of the groups `keys` (row i of `results` belongs to
    /// `keys[i]`). A group whose row cannot be finished (its expressions
    /// fail) keeps its previous row and becomes a dead letter. A view of
    /// final rows only (see `StreamPlan::appends_only`) appends them.
    pub fn upsert(&self, keys: &[&[u8]], results: RecordBatch) -> Result<()> {
        if !self.view.is_keyed() {
            return self.append(results);
        }
        if self.try_upsert(keys, results.clone()).is_ok() {
            return Ok(());
        }
        for (i, key) in keys.iter().enumerate() {
            let row = results.slice(i, 1);
            if let Err(e) = self.try_upsert(&[key], row.clone()) {
                self.dead_letter(&row, e);
            }
        }
        Ok(())
    }

    /// Deletes the rows of the groups `keys` (none of a view of final
    /// rows: a group that fails HAVING was never appended).
    pub fn delete(&self, keys: &[&[u8]]) -> Result<()> {
        if !self.view.is_keyed() {
            return Ok(());
        }
        let empty = RecordBatch::new_empty(self.view.schema().clone());
        self.view.upsert(self.shard, &[], empty, keys)
    }

    fn try_upsert(&self, keys: &[&[u8]], results: RecordBatch) -> Result<()> {
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
                other => batch = other.apply(&batch)?,
            }
        }
        self.counters()
            .rows_out
            .fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
        self.view.upsert(self.shard, &live, batch, &deleted)
    }
}
