//! Prepare: the first operator, run on each reader's thread.
//!
//! Input: decoded rows of the source's physical columns.
//! Output: rows with every column of the source (computed columns added).
//! State: none.
//! Watermarks: none (the pipeline makes them from the prepared rows).
//! Checkpoint: nothing to save.
//!
//! A row without an event time, or whose computed columns cannot be
//! evaluated, is rejected (and becomes a dead letter at the reader); the
//! other rows of its batch go on.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, UInt32Array};
use arrow::compute::{concat_batches, filter_record_batch, take_record_batch};
use arrow::datatypes::SchemaRef;
use datafusion::execution::session_state::SessionState;
use datafusion::physical_expr::PhysicalExpr;

use crate::connector::{Prepared, RowPreparer};
use crate::dataflow::physical::{evaluate, physical_expr};
use crate::dataflow::plan::{ColumnSource, SourcePlan};
use crate::error::Result;

enum Column {
    Physical(usize),
    Computed(Arc<dyn PhysicalExpr>),
}

pub struct Preparer {
    schema: SchemaRef,
    columns: Vec<Column>,
    /// The event-time column and its name.
    rowtime: Option<(usize, String)>,
}

impl Preparer {
    pub fn new(state: &SessionState, source: &SourcePlan) -> Result<Self> {
        let columns = source
            .columns
            .iter()
            .map(|c| {
                Ok(match c {
                    ColumnSource::Physical(i) => Column::Physical(*i),
                    ColumnSource::Computed { expr, .. } => {
                        Column::Computed(physical_expr(state, expr, &source.physical_df)?)
                    }
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Preparer {
            schema: source.schema.clone(),
            columns,
            rowtime: source.rowtime.as_ref().map(|r| (r.index, r.column.clone())),
        })
    }

    fn compute(&self, physical: &RecordBatch) -> Result<RecordBatch> {
        let columns = self
            .columns
            .iter()
            .map(|c| match c {
                Column::Physical(i) => Ok(physical.column(*i).clone()),
                Column::Computed(e) => evaluate(e, physical),
            })
            .collect::<Result<Vec<ArrayRef>>>()?;
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}

impl RowPreparer for Preparer {
    fn prepare(&self, physical: RecordBatch) -> Result<Prepared> {
        let (batch, mut rejected, kept) = match self.compute(&physical) {
            Ok(b) => (b, Vec::new(), None),
            Err(_) => {
                // Find the rows that fail, one by one.
                let mut good = Vec::new();
                let mut parts = Vec::new();
                let mut rejected = Vec::new();
                for i in 0..physical.num_rows() {
                    match self.compute(&physical.slice(i, 1)) {
                        Ok(b) => {
                            good.push(i as u32);
                            parts.push(b);
                        }
                        Err(e) => rejected.push((i, e.to_string())),
                    }
                }
                let batch = concat_batches(&self.schema, &parts)?;
                (batch, rejected, Some(good))
            }
        };
        let Some((index, name)) = &self.rowtime else {
            return Ok(Prepared { batch, rejected });
        };
        let times = batch.column(*index);
        if times.null_count() == 0 {
            return Ok(Prepared { batch, rejected });
        }
        let original = |row: usize| kept.as_ref().map(|k| k[row] as usize).unwrap_or(row);
        for row in 0..batch.num_rows() {
            if times.is_null(row) {
                rejected.push((
                    original(row),
                    format!("the event time \"{name}\" is missing"),
                ));
            }
        }
        rejected.sort_by_key(|(i, _)| *i);
        let mask = arrow::compute::is_not_null(times)?;
        let batch = filter_record_batch(&batch, &mask)?;
        Ok(Prepared { batch, rejected })
    }
}

/// Rows `indices` of `batch`.
pub fn take_rows(batch: &RecordBatch, indices: &[u32]) -> Result<RecordBatch> {
    let idx = UInt32Array::from(indices.to_vec());
    Ok(take_record_batch(batch, &idx)?)
}
