//! PriorRows: the last row of each key of a view whose rows change, kept by
//! the pipeline of a view that aggregates it, so that each change can take
//! the key's old row back from the aggregates (see `frontend/retract.rs`).
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
use arrow::datatypes::SchemaRef;
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
        self.table
            .fetch(changes.key_bytes.iter().map(|k| (ALL, k.as_ref())))?;
        let parser = self.codec.parser();
        let mut old = Vec::new();
        for key in &changes.key_bytes {
            if let Some(row) = self.table.get(ALL, key) {
                old.push(parser.parse(row).owned());
            }
        }
        let new = self.codec.convert_columns(changes.rows.columns())?;
        for (key, at) in changes.key_bytes.iter().zip(&changes.rows_at) {
            match at {
                Some(i) => self.table.put(ALL, key, new.row(*i).as_ref()),
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
