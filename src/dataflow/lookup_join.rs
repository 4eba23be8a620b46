//! LookupJoin: enriches stream rows with the matching row of an ordinary
//! table (`JOIN cells c ON e.cell_id = c.cell_id`, or Flink's temporal join
//! `JOIN cells FOR SYSTEM_TIME AS OF e.ts AS c ON ...`).
//!
//! Input: rows of the stream side.
//! Output: each row joined with each table row whose join keys equal its
//! own (inner: rows without one are dropped; left: kept with nulls), the
//! columns in the join's order; for semi and anti joins (`IN` and `EXISTS`
//! subqueries over the table) the rows that have a match, or none, alone.
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

use crate::dataflow::physical::{apply_all, evaluate, evaluate_all, PhysicalOp};
use crate::error::Result;
use crate::state::reference::{ReferenceTable, Snapshot};

/// Which stream rows a join keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    Inner,
    /// Every stream row, with nulls where the table has no match.
    Left,
    /// The stream rows that have a match, alone (`IN (SELECT ...)`,
    /// `EXISTS`).
    Semi,
    /// The stream rows that have none, alone (`NOT EXISTS`; `NOT IN` is
    /// `null_aware`: a row whose key is null has none, and no row has none
    /// while the table's keys hold a null).
    Anti {
        null_aware: bool,
    },
}

pub struct LookupJoin {
    pub table: Arc<ReferenceTable>,
    pub kind: JoinKind,
    /// The stream side's key expressions, over its rows.
    pub stream_keys: Vec<Arc<dyn PhysicalExpr>>,
    /// The operations on the table's rows before the join (a subquery's
    /// filter and projection).
    pub table_ops: Vec<PhysicalOp>,
    /// The table side's, over the table's rows after `table_ops`.
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
    /// Its rows after the operations on them.
    batch: RecordBatch,
    /// Whether a row's key holds a null.
    null_key: bool,
    key_types: Vec<DataType>,
    codec: RowConverter,
    /// A key's last row; `next` chains each row to the previous one with
    /// its key (a join on columns that are not the primary key meets
    /// several rows).
    rows: HashMap<Box<[u8]>, u32>,
    next: Vec<u32>,
}

/// The end of a chain of rows.
const NONE: u32 = u32::MAX;

impl LookupJoin {
    pub fn new(
        table: Arc<ReferenceTable>,
        kind: JoinKind,
        stream_keys: Vec<Arc<dyn PhysicalExpr>>,
        table_ops: Vec<PhysicalOp>,
        table_keys: Vec<Arc<dyn PhysicalExpr>>,
        stream_left: bool,
        schema: SchemaRef,
    ) -> Self {
        LookupJoin {
            table,
            kind,
            stream_keys,
            table_ops,
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
        let batch = apply_all(&self.table_ops, snapshot.batch.clone())?;
        let keys = evaluate_all(&self.table_keys, &batch)?;
        let key_types: Vec<DataType> = keys.iter().map(|k| k.data_type().clone()).collect();
        let codec = RowConverter::new(key_types.iter().cloned().map(SortField::new).collect())?;
        let encoded = codec.convert_columns(&keys)?;
        let mut rows = HashMap::with_capacity(encoded.num_rows());
        let mut next = vec![NONE; encoded.num_rows()];
        let mut null_key = false;
        for (i, key) in encoded.iter().enumerate() {
            // A key with a null matches nothing.
            if keys.iter().all(|k| k.is_valid(i)) {
                if let Some(previous) = rows.insert(Box::from(key.data()), i as u32) {
                    next[i] = previous;
                }
            } else {
                null_key = true;
            }
        }
        let index = Arc::new(TableIndex {
            snapshot,
            batch,
            null_key,
            key_types,
            codec,
            rows,
            next,
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
            let valid = keys.iter().all(|k| k.is_valid(i));
            let found = if valid {
                index.rows.get(key.data()).copied()
            } else {
                None
            };
            let keep = match self.kind {
                JoinKind::Inner | JoinKind::Semi => found.is_some(),
                JoinKind::Left => true,
                JoinKind::Anti { null_aware: false } => found.is_none(),
                JoinKind::Anti { null_aware: true } => valid && !index.null_key && found.is_none(),
            };
            if !keep {
                continue;
            }
            match (self.kind, found) {
                // One row per table row met.
                (JoinKind::Inner | JoinKind::Left, Some(mut at)) => {
                    while at != NONE {
                        stream_rows.push(i as u32);
                        table_rows.push(Some(at));
                        at = index.next[at as usize];
                    }
                }
                _ => {
                    stream_rows.push(i as u32);
                    table_rows.push(found);
                }
            }
        }
        let stream_rows = UInt32Array::from(stream_rows);
        if matches!(self.kind, JoinKind::Semi | JoinKind::Anti { .. }) {
            let columns = batch
                .columns()
                .iter()
                .map(|c| take(c, &stream_rows, None))
                .collect::<std::result::Result<_, _>>()?;
            return Ok(RecordBatch::try_new(self.schema.clone(), columns)?);
        }
        let table_rows = UInt32Array::from(table_rows);
        let stream: Vec<ArrayRef> = batch
            .columns()
            .iter()
            .map(|c| take(c, &stream_rows, None))
            .collect::<std::result::Result<_, _>>()?;
        let table: Vec<ArrayRef> = index
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
