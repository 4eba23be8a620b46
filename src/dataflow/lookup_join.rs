//! LookupJoin: enriches stream rows with the matching row of an ordinary
//! table (`JOIN cells c ON e.cell_id = c.cell_id`, or Flink's temporal join
//! `JOIN cells FOR SYSTEM_TIME AS OF e.ts AS c ON ...`).
//!
//! Input: rows of the stream side.
//! Output: each row joined with the table row whose join keys equal its
//! own (inner: rows without one are dropped; left: kept with nulls), the
//! columns in the join's order.
//! State: none of its own. It reads the table's current snapshot for each
//! batch: a change to the table applies to the rows processed after it
//! (processing-time semantics, as Flink's lookup joins; replayed rows after
//! a recovery see the table as it is then).
//! Watermarks: passes them on (it runs in the pipeline).
//! Checkpoint: nothing to save.
//!
//! The table side's key expressions are evaluated once per table version
//! into a hash index of encoded keys; the stream side's, per batch, are
//! cast to the same types and looked up, so matching is vectorized but for
//! the hash probe.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, UInt32Array};
use arrow::compute::{cast, take};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::row::{RowConverter, SortField};
use datafusion::physical_expr::PhysicalExpr;
use parking_lot::Mutex;

use crate::dataflow::physical::{evaluate, evaluate_all};
use crate::error::Result;
use crate::state::reference::{ReferenceTable, Snapshot};

/// Which stream rows a join keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    Inner,
    /// Every stream row, with nulls where the table has no match.
    Left,
}

pub struct LookupJoin {
    pub table: Arc<ReferenceTable>,
    pub kind: JoinKind,
    /// The stream side's key expressions, over its rows.
    pub stream_keys: Vec<Arc<dyn PhysicalExpr>>,
    /// The table side's, over the table's rows.
    pub table_keys: Vec<Arc<dyn PhysicalExpr>>,
    /// Whether the stream is the join's left side (its columns first).
    pub stream_left: bool,
    /// The join's output columns.
    pub schema: SchemaRef,
    index: Mutex<Option<Arc<TableIndex>>>,
}

/// A table version's rows by encoded join key.
struct TableIndex {
    snapshot: Arc<Snapshot>,
    key_types: Vec<DataType>,
    codec: RowConverter,
    rows: HashMap<Box<[u8]>, u32>,
}

impl LookupJoin {
    pub fn new(
        table: Arc<ReferenceTable>,
        kind: JoinKind,
        stream_keys: Vec<Arc<dyn PhysicalExpr>>,
        table_keys: Vec<Arc<dyn PhysicalExpr>>,
        stream_left: bool,
        schema: SchemaRef,
    ) -> Self {
        LookupJoin {
            table,
            kind,
            stream_keys,
            table_keys,
            stream_left,
            schema,
            index: Mutex::new(None),
        }
    }

    /// The index of the table's current version (made once per version).
    fn index(&self) -> Result<Arc<TableIndex>> {
        let snapshot = self.table.snapshot();
        let mut cached = self.index.lock();
        if let Some(index) = cached.as_ref() {
            if Arc::ptr_eq(&index.snapshot, &snapshot) {
                return Ok(index.clone());
            }
        }
        let keys = evaluate_all(&self.table_keys, &snapshot.batch)?;
        let key_types: Vec<DataType> = keys.iter().map(|k| k.data_type().clone()).collect();
        let codec = RowConverter::new(key_types.iter().cloned().map(SortField::new).collect())?;
        let encoded = codec.convert_columns(&keys)?;
        let mut rows = HashMap::with_capacity(encoded.num_rows());
        for (i, key) in encoded.iter().enumerate() {
            // A key with a null matches nothing.
            if keys.iter().all(|k| k.is_valid(i)) {
                rows.insert(Box::from(key.data()), i as u32);
            }
        }
        let index = Arc::new(TableIndex {
            snapshot,
            key_types,
            codec,
            rows,
        });
        *cached = Some(index.clone());
        Ok(index)
    }

    pub fn apply(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let index = self.index()?;
        let keys: Vec<ArrayRef> = self
            .stream_keys
            .iter()
            .zip(&index.key_types)
            .map(|(e, t)| {
                let k = evaluate(e, batch)?;
                Ok(if k.data_type() == t { k } else { cast(&k, t)? })
            })
            .collect::<Result<_>>()?;
        let encoded = index.codec.convert_columns(&keys)?;
        let mut stream_rows: Vec<u32> = Vec::with_capacity(batch.num_rows());
        let mut table_rows: Vec<Option<u32>> = Vec::with_capacity(batch.num_rows());
        for (i, key) in encoded.iter().enumerate() {
            let found = if keys.iter().all(|k| k.is_valid(i)) {
                index.rows.get(key.data()).copied()
            } else {
                None
            };
            if found.is_some() || self.kind == JoinKind::Left {
                stream_rows.push(i as u32);
                table_rows.push(found);
            }
        }
        let stream_rows = UInt32Array::from(stream_rows);
        let table_rows = UInt32Array::from(table_rows);
        let stream: Vec<ArrayRef> = batch
            .columns()
            .iter()
            .map(|c| take(c, &stream_rows, None))
            .collect::<std::result::Result<_, _>>()?;
        let table: Vec<ArrayRef> = index
            .snapshot
            .batch
            .columns()
            .iter()
            .map(|c| take(c, &table_rows, None))
            .collect::<std::result::Result<_, _>>()?;
        let columns = if self.stream_left {
            stream.into_iter().chain(table).collect()
        } else {
            table.into_iter().chain(stream).collect()
        };
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}
