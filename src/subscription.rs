//! What `SUBSCRIBE view` shows, as Arrow batches: each change's operation
//! (`op`), then the view's columns. For views whose rows never change once
//! shown, each row committed is an `insert`. For views whose rows change,
//! first every row the view has as an `upsert`, then each change as it
//! commits: `upsert` (the key's row is now this one) or `delete` (the key's
//! row is gone; the key's columns are set, the others null), as
//! Materialize's upsert envelope. Changes are those between two
//! checkpoints: a row added and deleted in between shows only as its
//! delete.
//!
//! The wire server streams these as COPY data (`SUBSCRIBE`), or hands them
//! out by `FETCH` from a cursor (`DECLARE c CURSOR FOR SUBSCRIBE view`),
//! for clients that cannot read a COPY stream.

use std::sync::Arc;

use arrow::array::{new_null_array, Array, ArrayRef, RecordBatch, StringArray};
use arrow::compute::interleave;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::error::Result;
use crate::state::view::{Feed, KeyedChanges};

/// What `SUBSCRIBE` streams: a view's committed log, from its beginning.
pub struct Subscription {
    pub view: String,
    pub feed: Feed,
    pub shards: usize,
    pub schema: SchemaRef,
}

/// A subscription being read: where each shard's reading stands.
pub struct ChangeReader {
    sub: Subscription,
    /// The next entry of each shard's log.
    next: Vec<u64>,
    /// Whether the rows the view had at the start were read (views whose
    /// rows change start with them).
    started: bool,
    /// `op`, then the view's columns.
    schema: SchemaRef,
}

impl ChangeReader {
    pub fn new(sub: Subscription) -> Self {
        let mut fields = vec![Field::new("op", DataType::Utf8, false)];
        fields.extend(
            sub.schema
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true)),
        );
        ChangeReader {
            next: vec![0; sub.shards],
            started: false,
            schema: Arc::new(Schema::new(fields)),
            sub,
        }
    }

    /// `op`, then the view's columns.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// What was committed since the last call (at first, for views whose
    /// rows change, every row the view has); empty when nothing was.
    pub fn poll(&mut self) -> Result<Vec<RecordBatch>> {
        let mut out = Vec::new();
        let schema = self.schema.clone();
        let view_schema = self.sub.schema.clone();
        if let (Feed::Changes(changes), false) = (&self.sub.feed, self.started) {
            for (shard, next) in self.next.iter_mut().enumerate() {
                *next = changes.snapshot(shard, |c| {
                    out.push(keyed(&c, &view_schema, &schema)?);
                    Ok(())
                })?;
            }
        }
        self.started = true;
        match &self.sub.feed {
            Feed::Appends(log) => log.read_turn(&mut self.next, |_, _, batch| {
                out.push(with_op("insert", &batch, &schema)?);
                Ok(())
            }),
            Feed::Changes(changes) => changes.read_turn(&mut self.next, |_, _, c| {
                out.push(keyed(&c, &view_schema, &schema)?);
                Ok(())
            }),
        }?;
        out.retain(|b| b.num_rows() > 0);
        Ok(out)
    }
}

/// `batch` with an `op` column in front.
fn with_op(op: &str, batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let mut columns: Vec<ArrayRef> = vec![Arc::new(StringArray::from(vec![op; batch.num_rows()]))];
    columns.extend(batch.columns().iter().cloned());
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// A view's keyed changes: `upsert` and the new row, or `delete` and the
/// key's columns among the view's (the others null).
fn keyed(changes: &KeyedChanges, view: &SchemaRef, schema: &SchemaRef) -> Result<RecordBatch> {
    let n = changes.rows_at.len();
    let ops: Vec<&str> = changes
        .rows_at
        .iter()
        .map(|at| if at.is_some() { "upsert" } else { "delete" })
        .collect();
    let mut columns: Vec<ArrayRef> = vec![Arc::new(StringArray::from(ops))];
    for (i, field) in view.fields().iter().enumerate() {
        let rows = changes.rows.column(i);
        let keys: ArrayRef = match changes.keys.schema().index_of(field.name()) {
            Ok(k) => changes.keys.column(k).clone(),
            Err(_) => new_null_array(field.data_type(), n),
        };
        // Per change: the new row's value, or the deleted key's.
        let picks: Vec<(usize, usize)> = changes
            .rows_at
            .iter()
            .enumerate()
            .map(|(change, at)| match at {
                Some(row) => (0, *row),
                None => (1, change),
            })
            .collect();
        columns.push(interleave(
            &[rows.as_ref(), keys.as_ref() as &dyn Array],
            &picks,
        )?);
    }
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}
