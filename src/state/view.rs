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
//! The contents live in memory for now; checkpoints to RocksDB come with
//! exactly-once state (issue 3).

use std::collections::HashMap;

use arrow::array::RecordBatch;
use arrow::compute::interleave_record_batch;
use arrow::datatypes::SchemaRef;
use parking_lot::Mutex;

use crate::error::Result;

pub struct ViewStore {
    schema: SchemaRef,
    shards: Vec<Mutex<Shard>>,
}

enum Shard {
    Append(AppendShard),
    Keyed(KeyedShard),
}

#[derive(Default)]
struct AppendShard {
    batches: Vec<RecordBatch>,
}

#[derive(Default)]
struct KeyedShard {
    segments: Vec<RecordBatch>,
    /// key -> (segment, row) of its live row.
    index: HashMap<Box<[u8]>, (u32, u32), foldhash::fast::RandomState>,
    dead: usize,
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
    pub fn new(schema: SchemaRef, shards: usize, keyed: bool) -> Self {
        let shards = (0..shards.max(1))
            .map(|_| {
                Mutex::new(if keyed {
                    Shard::Keyed(KeyedShard::default())
                } else {
                    Shard::Append(AppendShard::default())
                })
            })
            .collect();
        ViewStore { schema, shards }
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
            }
        }
        if batch.num_rows() > 0 {
            let segment = s.segments.len() as u32;
            for (row, key) in keys.iter().enumerate() {
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

impl KeyedShard {
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
        let store = ViewStore::new(batch(&[]).schema(), 1, true);
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
        let store = ViewStore::new(batch(&[]).schema(), 2, false);
        store.append(0, batch(&[1, 2]));
        store.append(1, batch(&[3]));
        assert_eq!(values(&store), vec![1, 2, 3]);
    }
}
