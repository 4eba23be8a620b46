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
        self.apply(&Change::Upsert(rows)).map(|_| ())
    }

    /// Deletes the rows of these keys (the key columns, in key order);
    /// returns how many there were.
    pub fn delete_keys(&self, key_columns: &[ArrayRef]) -> Result<usize> {
        self.apply(&Change::DeleteKeys(key_columns.to_vec()))
    }

    /// Inserts rows (of the table's schema); a key that exists, or comes
    /// twice, fails the whole statement (`23505`). Returns the rows added.
    pub fn insert(&self, rows: RecordBatch) -> Result<usize> {
        self.apply(&Change::Insert(rows))
    }

    fn index_of(&self, batch: &RecordBatch) -> Result<HashMap<Box<[u8]>, u32>> {
        let keys = self.keys(batch)?;
        Ok(keys
            .iter()
            .enumerate()
            .map(|(i, k)| (Box::from(k.as_ref()), i as u32))
            .collect())
    }

    /// The key columns of rows of this table (an UPDATE's or DELETE's rows,
    /// of which only the keys matter to a delete).
    pub fn key_columns_of(&self, rows: &RecordBatch) -> Vec<ArrayRef> {
        self.key_columns(rows)
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

    /// What `change` does to the rows `current`: the keys whose rows go,
    /// the rows that come in (their keys replace any old row), and the
    /// statement's row count. Pure: nothing is saved.
    fn effect(&self, current: &Snapshot, change: &Change) -> Result<Effect> {
        let effect = match change {
            Change::Insert(rows) => {
                let keys = self.keys(rows)?;
                let mut seen = HashSet::new();
                for (i, key) in keys.iter().enumerate() {
                    if current.index.contains_key(key.data()) || !seen.insert(key.data()) {
                        return Err(self.duplicate(rows, i));
                    }
                }
                Effect {
                    removed: Vec::new(),
                    added: rows.clone(),
                    count: rows.num_rows(),
                }
            }
            Change::Upsert(rows) => {
                let keys = self.keys(rows)?;
                let mut last: HashMap<&[u8], usize> = HashMap::with_capacity(rows.num_rows());
                for (i, key) in keys.iter().enumerate() {
                    last.insert(key.data(), i);
                }
                let added = if last.len() < rows.num_rows() {
                    let mut keep = vec![false; rows.num_rows()];
                    for i in last.values() {
                        keep[*i] = true;
                    }
                    filter_record_batch(rows, &BooleanArray::from(keep))?
                } else {
                    rows.clone()
                };
                Effect {
                    removed: Vec::new(),
                    added,
                    count: rows.num_rows(),
                }
            }
            Change::DeleteKeys(key_columns) => {
                let keys = self.key_codec.convert_columns(key_columns)?;
                let removed: Vec<Box<[u8]>> = keys
                    .iter()
                    .filter(|k| current.index.contains_key(k.data()))
                    .map(|k| Box::from(k.data()))
                    .collect();
                Effect {
                    count: removed.len(),
                    removed,
                    added: RecordBatch::new_empty(self.schema.clone()),
                }
            }
        };
        for c in &self.key {
            if effect.added.column(*c).null_count() > 0 {
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
        Ok(effect)
    }

    /// The rows after an effect, and the writes that save it.
    fn after(&self, current: &Snapshot, effect: &Effect) -> Result<(Snapshot, Writes)> {
        let added_keys = self.keys(&effect.added)?;
        let mut writes = Writes::default();
        for key in &effect.removed {
            writes.delete_parts(&[&self.prefix, key]);
        }
        let encoded = self.row_codec.convert_columns(effect.added.columns())?;
        for (key, row) in added_keys.iter().zip(encoded.iter()) {
            writes.put_parts(&[&self.prefix, key.as_ref()], row.as_ref());
        }
        // The old rows that stay: neither removed nor replaced.
        let mut gone: HashSet<&[u8]> = effect.removed.iter().map(|k| k.as_ref()).collect();
        gone.extend(added_keys.iter().map(|k| k.data()));
        let mut keep = vec![true; current.batch.num_rows()];
        for (key, row) in &current.index {
            if gone.contains(key.as_ref()) {
                keep[*row as usize] = false;
            }
        }
        let kept = filter_record_batch(&current.batch, &BooleanArray::from(keep))?;
        let batch = concat_batches(&self.schema, [&kept, &effect.added])?;
        let index = self.index_of(&batch)?;
        Ok((Snapshot { batch, index }, writes))
    }

    /// Applies one statement's change at once: saved first, in one write
    /// (if the store fails, nothing changed), then visible. Returns the
    /// statement's row count.
    pub fn apply(&self, change: &Change) -> Result<usize> {
        let _writer = self.writer.lock();
        let current = self.snapshot();
        let effect = self.effect(&current, change)?;
        let (after, writes) = self.after(&current, &effect)?;
        self.store.commit(writes)?;
        *self.current.write() = Arc::new(after);
        Ok(effect.count)
    }

    /// A change as a transaction sees it: the rows after it (from the
    /// transaction's rows `rows`), without saving anything. Adds the keys
    /// it changed to `pending`. Returns the statement's row count.
    pub fn preview(
        &self,
        rows: &Snapshot,
        change: &Change,
        pending: &mut PendingKeys,
    ) -> Result<(Snapshot, usize)> {
        let effect = self.effect(rows, change)?;
        let (after, _) = self.after(rows, &effect)?;
        if let Change::Insert(_) = change {
            for key in self.keys(&effect.added)?.iter() {
                if !pending.changed.contains(key.data()) {
                    pending.inserted.insert(Box::from(key.data()));
                }
            }
        }
        pending.changed.extend(effect.removed.iter().cloned());
        pending.changed.extend(
            self.keys(&effect.added)?
                .iter()
                .map(|k| Box::from(k.data())),
        );
        Ok((after, effect.count))
    }

    /// Commits transactions' changes to several tables in one write: each
    /// key a transaction changed takes the row it has in the transaction's
    /// rows (or goes, if it has none there); keys it did not change keep
    /// what others committed meanwhile. A key the transaction inserted that
    /// another has committed since fails the whole commit (`23505`).
    pub fn commit_all(changes: &[(&ReferenceTable, &Snapshot, &PendingKeys)]) -> Result<()> {
        let Some((first, _, _)) = changes.first() else {
            return Ok(());
        };
        // One table at a time takes its writer lock, in name order, so two
        // commits never wait for each other in a circle.
        let mut order: Vec<usize> = (0..changes.len()).collect();
        order.sort_by(|a, b| changes[*a].0.name.cmp(&changes[*b].0.name));
        let _locks: Vec<_> = order.iter().map(|i| changes[*i].0.writer.lock()).collect();
        let mut writes = Writes::default();
        let mut afters = Vec::with_capacity(changes.len());
        for (table, rows, pending) in changes {
            let current = table.snapshot();
            for key in &pending.inserted {
                if current.index.contains_key(key) {
                    if let Some(row) = rows.index.get(key) {
                        return Err(table.duplicate(&rows.batch, *row as usize));
                    }
                }
            }
            let mut removed = Vec::new();
            let mut kept = Vec::new();
            for key in &pending.changed {
                match rows.index.get(key) {
                    Some(row) => kept.push(*row),
                    None => removed.push(key.clone()),
                }
            }
            let added = arrow::compute::take_record_batch(
                &rows.batch,
                &arrow::array::UInt32Array::from(kept),
            )?;
            let effect = Effect {
                removed,
                added,
                count: 0,
            };
            let (after, w) = table.after(&current, &effect)?;
            writes.append(w);
            afters.push(after);
        }
        first.store.commit(writes)?;
        for ((table, _, _), after) in changes.iter().zip(afters) {
            *table.current.write() = Arc::new(after);
        }
        Ok(())
    }
}

/// One statement's change to an ordinary table.
#[derive(Debug, Clone)]
pub enum Change {
    /// New rows; a key that exists fails the statement.
    Insert(RecordBatch),
    /// Rows set by key (UPDATE, and the changelog of upsert tables).
    Upsert(RecordBatch),
    /// Rows deleted by key: the key columns, in key order.
    DeleteKeys(Vec<ArrayRef>),
}

/// What a change does to a table's rows.
struct Effect {
    /// Encoded keys whose rows go.
    removed: Vec<Box<[u8]>>,
    /// Rows that come in; their keys replace any old row.
    added: RecordBatch,
    /// The statement's row count.
    count: usize,
}

/// The keys a transaction changed in one table.
#[derive(Debug, Clone, Default)]
pub struct PendingKeys {
    /// Every key set or deleted.
    pub changed: HashSet<Box<[u8]>>,
    /// The keys it inserted (that it had not changed before): they must
    /// still be free when it commits.
    pub inserted: HashSet<Box<[u8]>>,
}
