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
//! Each shard remembers what changed since the last checkpoint, and
//! [`ViewStore::checkpoint`] writes just that into the epoch's write batch:
//! the rows of changed keys (encoded in Arrow's row format) or the batches
//! appended. With a store, a shard keeps in memory at most its cache size of
//! rows the store has committed (as the state tables do, see `table.rs`);
//! the others are read from the store when the view is queried.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::compute::interleave_record_batch;
use arrow::datatypes::SchemaRef;
use arrow::row::{RowConverter, SortField};
use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::state::checkpoint::JobKeys;
use crate::state::{Store, Writes};

/// Rows decoded from the store per batch when a query reads them.
const READ_BATCH_ROWS: usize = 8192;
/// What an index entry costs in memory besides its key.
const INDEX_OVERHEAD: usize = 48;

type KeySet = HashSet<Box<[u8]>, foldhash::fast::RandomState>;

pub struct ViewStore {
    schema: SchemaRef,
    shards: Vec<Mutex<Shard>>,
    /// Encodes rows for checkpoints.
    codec: RowConverter,
    durable: Option<Durable>,
}

/// Where a view's checkpoints go, and how much of what they saved each
/// shard keeps in memory.
pub struct Durable {
    pub store: Arc<Store>,
    pub keys: JobKeys,
    pub cache_bytes: usize,
}

enum Shard {
    Append(AppendShard),
    Keyed(KeyedShard),
}

#[derive(Default)]
struct AppendShard {
    /// The batches in memory: sequence numbers `first..`.
    batches: VecDeque<RecordBatch>,
    first: usize,
    /// Batches below this sequence number were written by a checkpoint...
    saved: usize,
    /// ...and below this one, committed.
    committed: usize,
    bytes: usize,
}

#[derive(Default)]
struct KeyedShard {
    segments: Vec<RecordBatch>,
    /// key -> (segment, row) of its live row.
    index: HashMap<Box<[u8]>, (u32, u32), foldhash::fast::RandomState>,
    dead: usize,
    /// Keys set or deleted since the last checkpoint.
    changed: KeySet,
    /// Keys the last checkpoint wrote (committed when the next comes).
    in_flight: KeySet,
    /// Some rows are only in the store.
    spilled: bool,
    /// Memory of the segments.
    segment_bytes: usize,
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
    pub fn new(
        schema: SchemaRef,
        shards: usize,
        keyed: bool,
        durable: Option<Durable>,
    ) -> Result<Self> {
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
            durable,
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
            Shard::Append(s) => {
                s.bytes += batch.get_array_memory_size();
                s.batches.push_back(batch);
            }
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
            let removed = s.index.remove(*key).is_some();
            if removed {
                s.dead += 1;
            }
            // A key only in the store is deleted there at the checkpoint.
            if removed || s.spilled {
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
            s.segment_bytes += batch.get_array_memory_size();
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
        for (shard, cell) in self.shards.iter().enumerate() {
            let mut guard = cell.lock();
            let mut batches = Vec::new();
            match &mut *guard {
                Shard::Append(s) => {
                    if let (Some(d), true) = (&self.durable, s.first > 0) {
                        let first = s.first as u64;
                        let prefix = d.keys.view_batches(shard);
                        d.store.scan_state(&prefix, |k, v| {
                            if seq_of(&k[prefix.len()..])? < first {
                                batches.push(decode_batch(&self.codec, &self.schema, v)?);
                            }
                            Ok(())
                        })?;
                    }
                    batches.extend(s.batches.iter().cloned());
                }
                Shard::Keyed(s) => {
                    if s.dead > 0 {
                        s.compact(&self.schema)?;
                    }
                    if let (Some(d), true) = (&self.durable, s.spilled) {
                        batches.extend(self.read_spilled(d, shard, s)?);
                    }
                    batches.extend(s.segments.iter().cloned());
                }
            }
            out.push(batches);
        }
        Ok(out)
    }

    /// The rows of a keyed shard that are only in the store.
    fn read_spilled(&self, d: &Durable, shard: usize, s: &KeyedShard) -> Result<Vec<RecordBatch>> {
        let prefix = d.keys.view_rows(shard);
        let parser = self.codec.parser();
        let mut batches = Vec::new();
        let mut pending: Vec<Box<[u8]>> = Vec::new();
        let mut flush = |pending: &mut Vec<Box<[u8]>>| -> Result<()> {
            if pending.is_empty() {
                return Ok(());
            }
            let columns = self
                .codec
                .convert_rows(pending.iter().map(|v| parser.parse(v)))?;
            batches.push(RecordBatch::try_new(self.schema.clone(), columns)?);
            pending.clear();
            Ok(())
        };
        d.store.scan_state(&prefix, |k, v| {
            let key = &k[prefix.len()..];
            // Memory has the newer row, or the key was deleted since.
            if s.index.contains_key(key) || s.changed.contains(key) || s.in_flight.contains(key) {
                return Ok(());
            }
            pending.push(Box::from(v));
            if pending.len() >= READ_BATCH_ROWS {
                flush(&mut pending)?;
            }
            Ok(())
        })?;
        flush(&mut pending)?;
        Ok(batches)
    }

    /// Writes what changed in a shard since the last checkpoint, then lets
    /// go of committed rows beyond the cache size.
    pub fn checkpoint(&self, shard: usize, writes: &mut Writes) -> Result<()> {
        let Some(d) = &self.durable else {
            return Ok(());
        };
        let keys = &d.keys;
        let mut guard = self.shards[shard].lock();
        match &mut *guard {
            Shard::Append(s) => {
                // The previous checkpoint is committed now.
                s.committed = s.saved;
                let end = s.first + s.batches.len();
                for seq in s.saved..end {
                    let value = encode_batch(&self.codec, &s.batches[seq - s.first])?;
                    writes.put(keys.view_batch(shard, seq as u64), value);
                }
                s.saved = end;
                while s.bytes > d.cache_bytes && s.first < s.committed {
                    let b = s
                        .batches
                        .pop_front()
                        .expect("committed batches are in memory");
                    s.bytes -= b.get_array_memory_size();
                    s.first += 1;
                }
            }
            Shard::Keyed(s) => {
                let changed: Vec<Box<[u8]>> = s.changed.drain().collect();
                let mut live = Vec::new();
                for key in &changed {
                    match s.index.get(key) {
                        Some(slot) => live.push((key, (slot.0 as usize, slot.1 as usize))),
                        None => writes.delete(keys.view_row(shard, key)),
                    }
                }
                if !live.is_empty() {
                    let refs: Vec<&RecordBatch> = s.segments.iter().collect();
                    let picks: Vec<(usize, usize)> = live.iter().map(|(_, p)| *p).collect();
                    let rows = interleave_record_batch(&refs, &picks)?;
                    let encoded = self.codec.convert_columns(rows.columns())?;
                    for (i, (key, _)) in live.iter().enumerate() {
                        writes.put(keys.view_row(shard, key), encoded.row(i).as_ref().to_vec());
                    }
                }
                s.in_flight = changed.into_iter().collect();
                s.evict(&self.schema, d.cache_bytes)?;
            }
        }
        Ok(())
    }

    /// Opens the contents saved by [`checkpoint`](Self::checkpoint): keyed
    /// rows are read into memory up to the cache size, the rest (and the
    /// batches of append-only views) are read when queried.
    pub fn restore(&self) -> Result<()> {
        let Some(d) = &self.durable else {
            return Ok(());
        };
        let parser = self.codec.parser();
        for (shard, cell) in self.shards.iter().enumerate() {
            let mut guard = cell.lock();
            match &mut *guard {
                Shard::Append(s) => {
                    let mut count = 0;
                    d.store.scan_state(&d.keys.view_batches(shard), |_, _| {
                        count += 1;
                        Ok(())
                    })?;
                    (s.first, s.saved, s.committed) = (count, count, count);
                }
                Shard::Keyed(s) => {
                    let prefix = d.keys.view_rows(shard);
                    let mut entries: Vec<SavedRow> = Vec::new();
                    let mut bytes = 0;
                    let mut spilled = false;
                    // Rows beyond the cache stay in the store, unread.
                    d.store.scan_state_while(&prefix, |k, v| {
                        if bytes > d.cache_bytes {
                            spilled = true;
                            return Ok(false);
                        }
                        let key = &k[prefix.len()..];
                        bytes += key.len() + v.len() + INDEX_OVERHEAD;
                        entries.push((Box::from(key), Box::from(v)));
                        Ok(true)
                    })?;
                    s.spilled = spilled;
                    if entries.is_empty() {
                        continue;
                    }
                    let columns = self
                        .codec
                        .convert_rows(entries.iter().map(|(_, v)| parser.parse(v)))?;
                    let batch = RecordBatch::try_new(self.schema.clone(), columns)?;
                    s.segment_bytes = batch.get_array_memory_size();
                    s.segments = vec![batch];
                    for (row, (key, _)) in entries.into_iter().enumerate() {
                        s.index.insert(key, (0, row as u32));
                    }
                }
            }
        }
        Ok(())
    }

    /// Rows in memory.
    pub fn rows_in_memory(&self) -> usize {
        self.shards
            .iter()
            .map(|s| match &*s.lock() {
                Shard::Append(a) => a.batches.iter().map(|b| b.num_rows()).sum(),
                Shard::Keyed(k) => k.index.len(),
            })
            .sum()
    }
}

/// A batch's sequence number from its key.
fn seq_of(bytes: &[u8]) -> Result<u64> {
    let raw: [u8; 8] = bytes
        .try_into()
        .map_err(|_| Error::internal("a saved view batch key is corrupt"))?;
    Ok(u64::from_be_bytes(raw))
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
    /// Memory the shard's rows take (an estimate).
    fn bytes(&self) -> usize {
        self.segment_bytes
            + self
                .index
                .keys()
                .next()
                .map_or(0, |k| self.index.len() * (k.len() + INDEX_OVERHEAD))
    }

    /// Lets go of committed rows (neither changed since the last checkpoint
    /// nor written by it) while the shard takes more than `cache_bytes`.
    fn evict(&mut self, schema: &SchemaRef, cache_bytes: usize) -> Result<()> {
        let bytes = self.bytes();
        if bytes <= cache_bytes || self.index.is_empty() {
            return Ok(());
        }
        let per_row = (bytes / self.index.len()).max(1);
        let mut excess = (bytes - cache_bytes / 4 * 3) / per_row;
        let (changed, in_flight) = (&self.changed, &self.in_flight);
        let before = self.index.len();
        self.index.retain(|k, _| {
            if excess == 0 || changed.contains(k) || in_flight.contains(k) {
                return true;
            }
            excess -= 1;
            false
        });
        let evicted = before - self.index.len();
        if evicted > 0 {
            tracing::trace!(rows = evicted, "view rows evicted");
            self.spilled = true;
            self.dead += evicted;
            self.compact(schema)?;
        }
        Ok(())
    }

    fn mark_changed(&mut self, key: &[u8]) {
        if !self.changed.contains(key) {
            self.changed.insert(Box::from(key));
        }
    }

    /// Rewrites the live rows into one segment.
    fn compact(&mut self, schema: &SchemaRef) -> Result<()> {
        if self.index.is_empty() {
            self.segments.clear();
            self.segment_bytes = 0;
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
        self.segment_bytes = batch.get_array_memory_size();
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
        let store = ViewStore::new(batch(&[]).schema(), 1, true, None).unwrap();
        store.upsert(0, &[b"a", b"b"], batch(&[1, 2]), &[]).unwrap();
        store.upsert(0, &[b"a"], batch(&[10]), &[]).unwrap();
        assert_eq!(values(&store), vec![2, 10]);
        store.upsert(0, &[], batch(&[]), &[b"b"]).unwrap();
        assert_eq!(values(&store), vec![10]);
        assert_eq!(store.rows_in_memory(), 1);
        // Many updates of one key stay compact.
        for i in 0..5000 {
            store.upsert(0, &[b"a"], batch(&[i]), &[]).unwrap();
        }
        assert_eq!(values(&store), vec![4999]);
    }

    #[test]
    fn append_views_keep_everything() {
        let store = ViewStore::new(batch(&[]).schema(), 2, false, None).unwrap();
        store.append(0, batch(&[1, 2]));
        store.append(1, batch(&[3]));
        assert_eq!(values(&store), vec![1, 2, 3]);
    }

    fn durable(store: &Arc<Store>, id: u64, cache_bytes: usize) -> Option<Durable> {
        Some(Durable {
            store: store.clone(),
            keys: JobKeys::new(id),
            cache_bytes,
        })
    }

    fn save(view: &ViewStore, store: &Store) {
        let mut w = Writes::default();
        for shard in 0..view.shard_count() {
            view.checkpoint(shard, &mut w).unwrap();
        }
        store.commit(&w).unwrap();
    }

    #[test]
    fn checkpoints_restore_both_kinds_of_view() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let schema = batch(&[]).schema();
        let keyed = ViewStore::new(schema.clone(), 2, true, durable(&store, 1, 1 << 20)).unwrap();
        keyed.upsert(0, &[b"a", b"b"], batch(&[1, 2]), &[]).unwrap();
        keyed.upsert(1, &[b"c"], batch(&[3]), &[]).unwrap();
        save(&keyed, &store);
        keyed.upsert(0, &[b"a"], batch(&[10]), &[b"b"]).unwrap();
        save(&keyed, &store);
        let back = ViewStore::new(schema.clone(), 2, true, durable(&store, 1, 1 << 20)).unwrap();
        back.restore().unwrap();
        assert_eq!(values(&back), vec![3, 10]);
        // The restored keys are the same keys: an upsert replaces.
        back.upsert(0, &[b"a"], batch(&[11]), &[]).unwrap();
        assert_eq!(values(&back), vec![3, 11]);

        let append = ViewStore::new(schema.clone(), 1, false, durable(&store, 2, 1 << 20)).unwrap();
        append.append(0, batch(&[1, 2]));
        save(&append, &store);
        append.append(0, batch(&[3]));
        save(&append, &store);
        let back = ViewStore::new(schema, 1, false, durable(&store, 2, 1 << 20)).unwrap();
        back.restore().unwrap();
        assert_eq!(values(&back), vec![1, 2, 3]);
        back.append(0, batch(&[4]));
        assert_eq!(values(&back), vec![1, 2, 3, 4]);
    }

    #[test]
    fn views_larger_than_their_cache_read_the_rest_from_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let schema = batch(&[]).schema();
        let view = ViewStore::new(schema.clone(), 1, true, durable(&store, 3, 2048)).unwrap();
        let key = |i: i64| i.to_be_bytes();
        let keys: Vec<[u8; 8]> = (0..1000).map(key).collect();
        let refs: Vec<&[u8]> = keys.iter().map(|k| &k[..]).collect();
        view.upsert(0, &refs, batch(&(0..1000).collect::<Vec<_>>()), &[])
            .unwrap();
        save(&view, &store);
        // Changes after the first checkpoint: an update and a delete.
        view.upsert(0, &[&key(5)], batch(&[5000]), &[&key(6)])
            .unwrap();
        save(&view, &store);
        assert!(
            view.rows_in_memory() < 100,
            "{} rows in memory",
            view.rows_in_memory()
        );
        let mut want: Vec<i64> = (0..1000).filter(|i| *i != 5 && *i != 6).collect();
        want.push(5000);
        want.sort();
        assert_eq!(values(&view), want);
        // A delete of a row only in the store, then the same after restore.
        view.upsert(0, &[], batch(&[]), &[&key(900)]).unwrap();
        want.retain(|v| *v != 900);
        assert_eq!(values(&view), want);
        save(&view, &store);
        let back = ViewStore::new(schema.clone(), 1, true, durable(&store, 3, 2048)).unwrap();
        back.restore().unwrap();
        assert_eq!(values(&back), want);

        let append = ViewStore::new(schema, 1, false, durable(&store, 4, 1)).unwrap();
        for i in 0..5 {
            append.append(0, batch(&[i]));
            save(&append, &store);
        }
        assert!(append.rows_in_memory() <= 2);
        assert_eq!(values(&append), vec![0, 1, 2, 3, 4]);
    }
}
