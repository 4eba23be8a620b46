//! PriorRows: the last row of each key of rows that change, kept so that
//! each change can take the key's old row back from the aggregates above
//! (see `frontend/retract.rs`): by the pipeline of a view that aggregates a
//! view whose rows change, and by an aggregation whose rows another
//! aggregation of the view aggregates (its groups' last rows).
//!
//! Input: the upstream's changes (each key with its new row, or deleted).
//! Output: the old rows of the changed keys that had one.
//! State: the upstream rows of the keys this instance reads (the upstream
//! shards it owns), by key; a state table, so they may exceed memory.
//! Watermarks: none (a view whose rows change has no event time).
//! Checkpoint: what changed since the last checkpoint, with the pipeline's
//! positions in the upstream's changes.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, SchemaRef};
use arrow::row::RowConverter;

use crate::error::Result;
use crate::state::table::{StateTable, WindowId};
use crate::state::view::{row_codec, KeyedChanges};
use crate::state::{Store, Writes};

/// The column of each row's sign in an aggregation over a view whose rows
/// change: +1 added, -1 taken back.
pub const SIGN: &str = "__sign";

/// Its rows never expire: they are all under one window id.
const ALL: WindowId = WindowId::MAX;

pub struct PriorRows {
    table: StateTable,
    codec: RowConverter,
    schema: SchemaRef,
}

impl PriorRows {
    /// Its rows under `prefix` in `store`, as the last checkpoint saved
    /// them (`restore`), or none.
    pub fn new(
        store: Arc<Store>,
        prefix: Vec<u8>,
        cache_bytes: usize,
        schema: SchemaRef,
        restore: bool,
    ) -> Result<Self> {
        Ok(PriorRows {
            table: StateTable::resume(store, prefix, cache_bytes, restore)?,
            codec: row_codec(&schema)?,
            schema,
        })
    }

    /// Applies the changes; returns the rows they replace or delete (None
    /// when no changed key had a row).
    pub fn replace(&mut self, changes: &KeyedChanges) -> Result<Option<RecordBatch>> {
        self.apply(
            changes.key_bytes.iter().map(|k| k.as_ref()),
            &changes.rows,
            changes.rows_at.iter().copied(),
        )
    }

    /// Key i's new row is row i of `rows`; returns the rows they replace.
    pub fn upsert(&mut self, keys: &[&[u8]], rows: &RecordBatch) -> Result<Option<RecordBatch>> {
        self.apply(keys.iter().copied(), rows, (0..keys.len()).map(Some))
    }

    /// The keys are deleted; returns the rows they had.
    pub fn delete(&mut self, keys: &[&[u8]]) -> Result<Option<RecordBatch>> {
        let none = RecordBatch::new_empty(self.schema.clone());
        self.apply(keys.iter().copied(), &none, keys.iter().map(|_| None))
    }

    /// Each key's new row (its row in `rows`), or its delete (None).
    fn apply<'k>(
        &mut self,
        keys: impl Iterator<Item = &'k [u8]> + Clone,
        rows: &RecordBatch,
        rows_at: impl Iterator<Item = Option<usize>>,
    ) -> Result<Option<RecordBatch>> {
        self.table.fetch(keys.clone().map(|k| (ALL, k)))?;
        let parser = self.codec.parser();
        let mut old = Vec::new();
        for key in keys.clone() {
            if let Some(row) = self.table.get(ALL, key) {
                old.push(parser.parse(row).owned());
            }
        }
        let new = self.codec.convert_columns(rows.columns())?;
        for (key, at) in keys.zip(rows_at) {
            match at {
                Some(i) => self.table.put(ALL, key, new.row(i).as_ref()),
                None => self.table.remove(ALL, key),
            }
        }
        if old.is_empty() {
            return Ok(None);
        }
        let columns = self.codec.convert_rows(old.iter().map(|r| r.row()))?;
        Ok(Some(RecordBatch::try_new(self.schema.clone(), columns)?))
    }

    pub fn checkpoint(&mut self, writes: &mut Writes) {
        self.table.checkpoint(writes);
    }

    pub fn committed(&mut self) {
        self.table.committed();
    }

    pub fn cache_use(&self) -> f64 {
        self.table.cache_use()
    }
}

/// The rows with a last column `__sign`: +1 for rows added, -1 for rows
/// taken back (see `frontend/retract.rs`).
pub fn with_sign(batch: RecordBatch, sign: i64) -> Result<RecordBatch> {
    let mut fields: Vec<arrow::datatypes::FieldRef> =
        batch.schema().fields().iter().cloned().collect();
    fields.push(Arc::new(arrow::datatypes::Field::new(
        crate::dataflow::retract::SIGN,
        DataType::Int64,
        false,
    )));
    let mut columns = batch.columns().to_vec();
    columns.push(Arc::new(arrow::array::Int64Array::from_value(
        sign,
        batch.num_rows(),
    )));
    Ok(RecordBatch::try_new(
        Arc::new(arrow::datatypes::Schema::new(fields)),
        columns,
    )?)
}
