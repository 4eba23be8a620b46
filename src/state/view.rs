//! The contents of a materialized view: what `SELECT` reads.
//!
//! A view is split into shards, one per instance of the job's last operator,
//! so writers never contend; readers take a snapshot of every shard.
//!
//! - Keyed views (aggregations) hold one row per key (the group key, encoded
//!   as an Arrow row). Upserts append the new rows as a segment and point the
//!   key at them; the rows they replace become dead and are compacted away
//!   once they outnumber the live ones, so an update costs O(changed rows).
//! - Append-only views (filters, projections) keep the batches as written.
//!
//! The contents live in memory. Each shard remembers what changed since the
//! last checkpoint, and [`ViewStore::checkpoint`] writes just that into the
//! epoch's write batch: the rows of changed keys (encoded in Arrow's row
//! format) or the batches appended. [`ViewStore::restore`] reads them back.

use std::collections::{HashMap, HashSet};

use arrow::array::RecordBatch;
use arrow::compute::interleave_record_batch;
use arrow::datatypes::SchemaRef;
use arrow::row::{RowConverter, SortField};
use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::state::checkpoint::JobKeys;
use crate::state::{Store, Writes};

pub struct ViewStore {
    schema: SchemaRef,
    shards: Vec<Mutex<Shard>>,
    /// Encodes rows for checkpoints.
    codec: RowConverter,
}

enum Shard {
    Append(AppendShard),
    Keyed(KeyedShard),
}

#[derive(Default)]
struct AppendShard {
    batches: Vec<RecordBatch>,
    /// How many of `batches` the last checkpoint saved.
    saved: usize,
}

#[derive(Default)]
struct KeyedShard {
    segments: Vec<RecordBatch>,
    /// key -> (segment, row) of its live row.
    index: HashMap<Box<[u8]>, (u32, u32), foldhash::fast::RandomState>,
    dead: usize,
    /// Keys set or deleted since the last checkpoint.
    changed: HashSet<Box<[u8]>, foldhash::fast::RandomState>,
}

impl std::fmt::Debug for ViewStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ViewStore")
            .field("columns", &self.schema.fields().len())
            .field("shards", &self.shards.len())
            .finish()
    }
}

impl ViewStore {
    pub fn new(schema: SchemaRef, shards: usize, keyed: bool) -> Result<Self> {
        let codec = RowConverter::new(
            schema
                .fields()
                .iter()
                .map(|f| SortField::new(f.data_type().clone()))
                .collect(),
        )
        .map_err(|e| {
            Error::not_supported(format!("the view's columns cannot be checkpointed: {e}"))
        })?;
        let shards = (0..shards.max(1))
            .map(|_| {
                Mutex::new(if keyed {
                    Shard::Keyed(KeyedShard::default())
                } else {
                    Shard::Append(AppendShard::default())
                })
            })
            .collect();
        Ok(ViewStore {
            schema,
            shards,
            codec,
        })
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Appends rows to an append-only view.
    pub fn append(&self, shard: usize, batch: RecordBatch) {
        if batch.num_rows() == 0 {
            return;
        }
        match &mut *self.shards[shard].lock() {
            Shard::Append(s) => s.batches.push(batch),
            Shard::Keyed(_) => unreachable!("append to a keyed view is a planner bug"),
        }
    }

    /// Sets the rows of `keys` (row i of `batch` is the row of `keys[i]`) and
    /// removes the rows of `deleted`.
    pub fn upsert(
        &self,
        shard: usize,
        keys: &[&[u8]],
        batch: RecordBatch,
        deleted: &[&[u8]],
    ) -> Result<()> {
        let mut guard = self.shards[shard].lock();
        let Shard::Keyed(s) = &mut *guard else {
            unreachable!("upsert into an append-only view is a planner bug")
        };
        for key in deleted {
            if s.index.remove(*key).is_some() {
                s.dead += 1;
                s.mark_changed(key);
            }
        }
        if batch.num_rows() > 0 {
            let segment = s.segments.len() as u32;
            for (row, key) in keys.iter().enumerate() {
                s.mark_changed(key);
                match s.index.get_mut(*key) {
                    Some(slot) => {
                        *slot = (segment, row as u32);
                        s.dead += 1;
                    }
                    None => {
                        s.index.insert(Box::from(*key), (segment, row as u32));
                    }
                }
            }
            s.segments.push(batch);
        }
        if s.dead > s.index.len().max(1024) {
            s.compact(&self.schema)?;
        }
        Ok(())
    }

    /// The current rows, one list of batches per shard.
    pub fn snapshot(&self) -> Result<Vec<Vec<RecordBatch>>> {
        let mut out = Vec::with_capacity(self.shards.len());
        for shard in &self.shards {
            let mut guard = shard.lock();
            match &mut *guard {
                Shard::Append(s) => out.push(s.batches.clone()),
                Shard::Keyed(s) => {
                    if s.dead > 0 {
                        s.compact(&self.schema)?;
                    }
                    out.push(s.segments.clone());
                }
            }
        }
        Ok(out)
    }

    /// Writes what changed in a shard since the last checkpoint.
    pub fn checkpoint(&self, shard: usize, keys: &JobKeys, writes: &mut Writes) -> Result<()> {
        let mut guard = self.shards[shard].lock();
        match &mut *guard {
            Shard::Append(s) => {
                for seq in s.saved..s.batches.len() {
                    let value = encode_batch(&self.codec, &s.batches[seq])?;
                    writes.put(keys.view_batch(shard, seq as u64), value);
                }
                s.saved = s.batches.len();
            }
            Shard::Keyed(s) => {
                let changed: Vec<Box<[u8]>> = s.changed.drain().collect();
                let mut live = Vec::new();
                for key in changed {
                    match s.index.get(&key) {
                        Some(slot) => live.push((key, (slot.0 as usize, slot.1 as usize))),
                        None => writes.delete(keys.view_row(shard, &key)),
                    }
                }
                if live.is_empty() {
                    return Ok(());
                }
                let refs: Vec<&RecordBatch> = s.segments.iter().collect();
                let picks: Vec<(usize, usize)> = live.iter().map(|(_, p)| *p).collect();
                let rows = interleave_record_batch(&refs, &picks)?;
                let encoded = self.codec.convert_columns(rows.columns())?;
                for (i, (key, _)) in live.iter().enumerate() {
                    writes.put(keys.view_row(shard, key), encoded.row(i).as_ref().to_vec());
                }
            }
        }
        Ok(())
    }

    /// Loads the contents saved by [`checkpoint`](Self::checkpoint).
    pub fn restore(&self, store: &Store, keys: &JobKeys) -> Result<()> {
        let parser = self.codec.parser();
        for (shard, cell) in self.shards.iter().enumerate() {
            let mut guard = cell.lock();
            match &mut *guard {
                Shard::Append(s) => {
                    store.scan_state(&keys.view_batches(shard), |_, v| {
                        s.batches.push(decode_batch(&self.codec, &self.schema, v)?);
                        Ok(())
                    })?;
                    s.saved = s.batches.len();
                }
                Shard::Keyed(s) => {
                    let prefix = keys.view_rows(shard);
                    let mut entries: Vec<SavedRow> = Vec::new();
                    store.scan_state(&prefix, |k, v| {
                        entries.push((Box::from(&k[prefix.len()..]), Box::from(v)));
                        Ok(())
                    })?;
                    if entries.is_empty() {
                        continue;
                    }
                    let columns = self
                        .codec
                        .convert_rows(entries.iter().map(|(_, v)| parser.parse(v)))?;
                    s.segments = vec![RecordBatch::try_new(self.schema.clone(), columns)?];
                    for (row, (key, _)) in entries.into_iter().enumerate() {
                        s.index.insert(key, (0, row as u32));
                    }
                }
            }
        }
        Ok(())
    }

    pub fn row_count(&self) -> usize {
        self.shards
            .iter()
            .map(|s| match &*s.lock() {
                Shard::Append(a) => a.batches.iter().map(|b| b.num_rows()).sum(),
                Shard::Keyed(k) => k.index.len(),
            })
            .sum()
    }
}

/// A view row as saved: the group key and the encoded row.
type SavedRow = (Box<[u8]>, Box<[u8]>);

/// A batch as a count and length-prefixed rows (Arrow's row format).
fn encode_batch(codec: &RowConverter, batch: &RecordBatch) -> Result<Vec<u8>> {
    let rows = codec.convert_columns(batch.columns())?;
    let mut out = Vec::with_capacity(rows.size() + 4 * batch.num_rows() + 4);
    out.extend_from_slice(&(rows.num_rows() as u32).to_be_bytes());
    for row in rows.iter() {
        let bytes = row.as_ref();
        out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        out.extend_from_slice(bytes);
    }
    Ok(out)
}

fn decode_batch(codec: &RowConverter, schema: &SchemaRef, bytes: &[u8]) -> Result<RecordBatch> {
    let corrupt = || Error::internal("a saved view batch is corrupt");
    let take_u32 = |at: usize| -> Result<usize> {
        let raw: [u8; 4] = bytes
            .get(at..at + 4)
            .ok_or_else(corrupt)?
            .try_into()
            .expect("4 bytes");
        Ok(u32::from_be_bytes(raw) as usize)
    };
    let n = take_u32(0)?;
    let mut at = 4;
    let mut slices = Vec::with_capacity(n);
    for _ in 0..n {
        let len = take_u32(at)?;
        at += 4;
        slices.push(bytes.get(at..at + len).ok_or_else(corrupt)?);
        at += len;
    }
    let parser = codec.parser();
    let columns = codec.convert_rows(slices.into_iter().map(|s| parser.parse(s)))?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

impl KeyedShard {
    fn mark_changed(&mut self, key: &[u8]) {
        if !self.changed.contains(key) {
            self.changed.insert(Box::from(key));
        }
    }

    /// Rewrites the live rows into one segment.
    fn compact(&mut self, schema: &SchemaRef) -> Result<()> {
        if self.index.is_empty() {
            self.segments.clear();
            self.dead = 0;
            return Ok(());
        }
        // Keep the rows in a stable order: by where they were written.
        let mut entries: Vec<&mut (u32, u32)> = self.index.values_mut().collect();
        entries.sort_by_key(|slot| **slot);
        let picks: Vec<(usize, usize)> = entries
            .iter()
            .map(|slot| (slot.0 as usize, slot.1 as usize))
            .collect();
        let refs: Vec<&RecordBatch> = self.segments.iter().collect();
        let batch = if refs.is_empty() {
            RecordBatch::new_empty(schema.clone())
        } else {
            interleave_record_batch(&refs, &picks)?
        };
        for (row, slot) in entries.into_iter().enumerate() {
            *slot = (0, row as u32);
        }
        self.segments = vec![batch];
        self.dead = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{AsArray, Int64Array};
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};

    use super::*;

    fn batch(values: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(values.to_vec()))]).unwrap()
    }

    fn values(store: &ViewStore) -> Vec<i64> {
        let mut v: Vec<i64> = store
            .snapshot()
            .unwrap()
            .into_iter()
            .flatten()
            .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn upserts_replace_and_deletes_remove() {
        let store = ViewStore::new(batch(&[]).schema(), 1, true).unwrap();
        store.upsert(0, &[b"a", b"b"], batch(&[1, 2]), &[]).unwrap();
        store.upsert(0, &[b"a"], batch(&[10]), &[]).unwrap();
        assert_eq!(values(&store), vec![2, 10]);
        store.upsert(0, &[], batch(&[]), &[b"b"]).unwrap();
        assert_eq!(values(&store), vec![10]);
        assert_eq!(store.row_count(), 1);
        // Many updates of one key stay compact.
        for i in 0..5000 {
            store.upsert(0, &[b"a"], batch(&[i]), &[]).unwrap();
        }
        assert_eq!(values(&store), vec![4999]);
    }

    #[test]
    fn append_views_keep_everything() {
        let store = ViewStore::new(batch(&[]).schema(), 2, false).unwrap();
        store.append(0, batch(&[1, 2]));
        store.append(1, batch(&[3]));
        assert_eq!(values(&store), vec![1, 2, 3]);
    }

    fn save(view: &ViewStore, store: &Store, keys: &JobKeys) {
        let mut w = Writes::default();
        for shard in 0..view.shard_count() {
            view.checkpoint(shard, keys, &mut w).unwrap();
        }
        store.commit(&w).unwrap();
    }

    #[test]
    fn checkpoints_restore_both_kinds_of_view() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let schema = batch(&[]).schema();
        let keys = JobKeys::new(1);
        let keyed = ViewStore::new(schema.clone(), 2, true).unwrap();
        keyed.upsert(0, &[b"a", b"b"], batch(&[1, 2]), &[]).unwrap();
        keyed.upsert(1, &[b"c"], batch(&[3]), &[]).unwrap();
        save(&keyed, &store, &keys);
        keyed.upsert(0, &[b"a"], batch(&[10]), &[b"b"]).unwrap();
        save(&keyed, &store, &keys);
        let back = ViewStore::new(schema.clone(), 2, true).unwrap();
        back.restore(&store, &keys).unwrap();
        assert_eq!(values(&back), vec![3, 10]);
        // The restored keys are the same keys: an upsert replaces.
        back.upsert(0, &[b"a"], batch(&[11]), &[]).unwrap();
        assert_eq!(values(&back), vec![3, 11]);

        let keys = JobKeys::new(2);
        let append = ViewStore::new(schema.clone(), 1, false).unwrap();
        append.append(0, batch(&[1, 2]));
        save(&append, &store, &keys);
        append.append(0, batch(&[3]));
        save(&append, &store, &keys);
        let back = ViewStore::new(schema, 1, false).unwrap();
        back.restore(&store, &keys).unwrap();
        assert_eq!(values(&back), vec![1, 2, 3]);
    }
}
