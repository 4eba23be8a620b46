//! Ordinary tables (`CREATE TABLE` without a connector): reference data that
//! users change with INSERT, UPDATE and DELETE and that streams are joined
//! against.
//!
//! A table's rows are keyed by its primary key. Readers (queries, the
//! joins of running views) take the current [`Snapshot`]: one Arrow batch
//! and an index from encoded key to row, never changed once made; each
//! change makes a new snapshot, so a reader never waits for a writer and
//! never sees half a statement. Reference tables are small next to the
//! streams, so a change rebuilds the batch (O(rows) per statement, not per
//! row changed).
//!
//! Every statement's changes are one atomic write to the store: the rows of
//! the keys it set, deletions of the keys it removed. At start the rows are
//! read back.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, RecordBatch};
use arrow::compute::{concat_batches, filter_record_batch};
use arrow::datatypes::SchemaRef;
use arrow::row::{RowConverter, Rows, SortField};
use parking_lot::{Mutex, RwLock};

use crate::error::{Error, Result};
use crate::state::{Store, Writes};

/// The rows of a table at one moment.
#[derive(Debug)]
pub struct Snapshot {
    pub batch: RecordBatch,
    /// Encoded primary key -> row of `batch`.
    pub index: HashMap<Box<[u8]>, u32>,
}

pub struct ReferenceTable {
    name: String,
    schema: SchemaRef,
    /// The primary key's columns.
    key: Vec<usize>,
    /// Encodes keys (the primary key's columns).
    key_codec: RowConverter,
    /// Encodes whole rows, as saved.
    row_codec: RowConverter,
    store: Arc<Store>,
    /// Where its rows are saved: this prefix and the encoded key.
    prefix: Vec<u8>,
    current: RwLock<Arc<Snapshot>>,
    /// Serializes changes.
    writer: Mutex<()>,
}

impl std::fmt::Debug for ReferenceTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReferenceTable")
            .field("name", &self.name)
            .finish()
    }
}

/// The store prefix of table `id`'s rows.
fn prefix_of(id: u64) -> Vec<u8> {
    let mut p = vec![b't'];
    p.extend_from_slice(&id.to_be_bytes());
    p
}

fn codec(schema: &SchemaRef, columns: &[usize]) -> Result<RowConverter> {
    RowConverter::new(
        columns
            .iter()
            .map(|i| SortField::new(schema.field(*i).data_type().clone()))
            .collect(),
    )
    .map_err(|e| Error::not_supported(format!("columns of this type cannot be stored: {e}")))
}

impl ReferenceTable {
    /// Opens table `id`, with the rows the store has of it (none if
    /// `fresh`: a new table, whose number a dropped one may have left rows
    /// under).
    pub fn open(
        name: &str,
        schema: SchemaRef,
        key: Vec<usize>,
        store: Arc<Store>,
        id: u64,
        fresh: bool,
    ) -> Result<Self> {
        let all: Vec<usize> = (0..schema.fields().len()).collect();
        let table = ReferenceTable {
            name: name.to_string(),
            key_codec: codec(&schema, &key)?,
            row_codec: codec(&schema, &all)?,
            current: RwLock::new(Arc::new(Snapshot {
                batch: RecordBatch::new_empty(schema.clone()),
                index: HashMap::new(),
            })),
            schema,
            key,
            store,
            prefix: prefix_of(id),
            writer: Mutex::new(()),
        };
        if fresh {
            table.delete_all()?;
        }
        let mut saved: Vec<Vec<u8>> = Vec::new();
        table.store.scan_state(&table.prefix, |_, v| {
            saved.push(v.to_vec());
            Ok(())
        })?;
        if !saved.is_empty() {
            let parser = table.row_codec.parser();
            let columns = table
                .row_codec
                .convert_rows(saved.iter().map(|v| parser.parse(v)))?;
            let batch = RecordBatch::try_new(table.schema.clone(), columns)?;
            let index = table.index_of(&batch)?;
            *table.current.write() = Arc::new(Snapshot { batch, index });
        }
        Ok(table)
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// The primary key's columns.
    pub fn key(&self) -> &[usize] {
        &self.key
    }

    /// The rows now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.read().clone()
    }

    /// The key columns of a batch of rows of this table.
    fn key_columns(&self, batch: &RecordBatch) -> Vec<ArrayRef> {
        self.key.iter().map(|i| batch.column(*i).clone()).collect()
    }

    /// The encoded keys of a batch of rows of this table.
    fn keys(&self, batch: &RecordBatch) -> Result<Rows> {
        Ok(self.key_codec.convert_columns(&self.key_columns(batch))?)
    }

    /// Sets the rows of their keys, inserted or replaced; of rows with the
    /// same key the last wins (a changelog's order).
    pub fn upsert(&self, rows: RecordBatch) -> Result<()> {
        self.change(|_| {
            let keys = self.keys(&rows)?;
            let mut last: HashMap<&[u8], usize> = HashMap::with_capacity(rows.num_rows());
            for (i, key) in keys.iter().enumerate() {
                last.insert(key.data(), i);
            }
            let rows = if last.len() < rows.num_rows() {
                let mut keep = vec![false; rows.num_rows()];
                for i in last.values() {
                    keep[*i] = true;
                }
                filter_record_batch(&rows, &BooleanArray::from(keep))?
            } else {
                rows.clone()
            };
            let replaced = self
                .keys(&rows)?
                .iter()
                .map(|k| Box::from(k.data()))
                .collect();
            Ok((replaced, rows))
        })
    }

    /// Deletes the rows of these keys (the key columns, in key order);
    /// returns how many there were.
    pub fn delete_keys(&self, key_columns: &[ArrayRef]) -> Result<usize> {
        let mut deleted = 0;
        self.change(|current| {
            let keys = self.key_codec.convert_columns(key_columns)?;
            let gone: Vec<Box<[u8]>> = keys
                .iter()
                .filter(|k| current.index.contains_key(k.data()))
                .map(|k| Box::from(k.data()))
                .collect();
            deleted = gone.len();
            Ok((gone, RecordBatch::new_empty(self.schema.clone())))
        })?;
        Ok(deleted)
    }

    fn index_of(&self, batch: &RecordBatch) -> Result<HashMap<Box<[u8]>, u32>> {
        let keys = self.keys(batch)?;
        Ok(keys
            .iter()
            .enumerate()
            .map(|(i, k)| (Box::from(k.as_ref()), i as u32))
            .collect())
    }

    /// Inserts rows (of the table's schema); a key that exists, or comes
    /// twice, fails the whole statement (`23505`). Returns the rows added.
    pub fn insert(&self, rows: RecordBatch) -> Result<usize> {
        self.change(|current| {
            let keys = self.keys(&rows)?;
            let mut seen = HashSet::new();
            for (i, key) in keys.iter().enumerate() {
                if current.index.contains_key(key.data()) || !seen.insert(key.data()) {
                    return Err(self.duplicate(&rows, i));
                }
            }
            Ok((Vec::new(), rows.clone()))
        })?;
        Ok(rows.num_rows())
    }

    /// Replaces the rows whose keys `rows` has (they must exist: an update
    /// keeps its keys). Returns the rows changed.
    pub fn update(&self, rows: RecordBatch) -> Result<usize> {
        let n = rows.num_rows();
        self.upsert(rows)?;
        Ok(n)
    }

    /// Deletes the rows with these keys (rows of the table's schema, of
    /// which only the key columns are read). Returns the rows deleted.
    pub fn delete(&self, rows: &RecordBatch) -> Result<usize> {
        self.delete_keys(&self.key_columns(rows))
    }

    /// Removes every saved row (the table is dropped).
    pub fn delete_all(&self) -> Result<()> {
        let mut end = self.prefix.clone();
        end.push(0xff);
        let mut writes = Writes::default();
        writes.delete_range(&self.prefix, end);
        self.store.commit(writes)
    }

    fn duplicate(&self, rows: &RecordBatch, i: usize) -> Error {
        let values: Vec<String> = self
            .key
            .iter()
            .map(|c| {
                arrow::util::display::array_value_to_string(rows.column(*c), i)
                    .unwrap_or_else(|_| "?".into())
            })
            .collect();
        let names: Vec<&str> = self
            .key
            .iter()
            .map(|c| self.schema.field(*c).name().as_str())
            .collect();
        Error::user(
            "23505",
            format!(
                "duplicate key value violates the primary key of \"{}\": ({})=({})",
                self.name,
                names.join(", "),
                values.join(", ")
            ),
        )
    }

    /// Applies one statement's change: `plan` returns the keys whose rows
    /// go away and the rows that come in (their keys replace any old row).
    /// Saved first, in one write: if the store fails, nothing changed.
    fn change(
        &self,
        plan: impl FnOnce(&Snapshot) -> Result<(Vec<Box<[u8]>>, RecordBatch)>,
    ) -> Result<()> {
        let _writer = self.writer.lock();
        let current = self.snapshot();
        let (removed, added) = plan(&current)?;
        for c in &self.key {
            if added.column(*c).null_count() > 0 {
                return Err(Error::user(
                    "23502",
                    format!(
                        "null value in column \"{}\" of \"{}\" violates its primary key",
                        self.schema.field(*c).name(),
                        self.name
                    ),
                ));
            }
        }
        let added_keys = self.keys(&added)?;
        let mut writes = Writes::default();
        for key in &removed {
            writes.delete_parts(&[&self.prefix, key]);
        }
        let encoded = self.row_codec.convert_columns(added.columns())?;
        for (key, row) in added_keys.iter().zip(encoded.iter()) {
            writes.put_parts(&[&self.prefix, key.as_ref()], row.as_ref());
        }
        // The old rows that stay: neither removed nor replaced.
        let mut gone: HashSet<&[u8]> = removed.iter().map(|k| k.as_ref()).collect();
        gone.extend(added_keys.iter().map(|k| k.data()));
        let mut keep = vec![true; current.batch.num_rows()];
        for (key, row) in &current.index {
            if gone.contains(key.as_ref()) {
                keep[*row as usize] = false;
            }
        }
        let kept = filter_record_batch(&current.batch, &BooleanArray::from(keep))?;
        let batch = concat_batches(&self.schema, [&kept, &added])?;
        let index = self.index_of(&batch)?;
        self.store.commit(writes)?;
        *self.current.write() = Arc::new(Snapshot { batch, index });
        Ok(())
    }
}
