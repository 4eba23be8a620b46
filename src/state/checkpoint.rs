//! The layout of a job's checkpointed state in the `state` column family,
//! and loading it back.
//!
//! Every key starts with the job's prefix (`j` and the job id, the view's
//! catalog number, so a view dropped and created again never sees the old
//! one's state), then a kind byte:
//!
//! | kind | key after the kind            | value                               |
//! |------|-------------------------------|-------------------------------------|
//! | `E`  | (none)                        | [`EpochRecord`] as JSON             |
//! | `S`  | instance, split name          | position, split watermark (2 × i64) |
//! | `W`  | instance                      | the final aggregation's watermark   |
//! | `C`  | part (see `metrics::Part`)    | its counters (4 × u64)              |
//! | `A`  | instance, window, group key   | the group's accumulator states      |
//! | `V`  | shard, group key              | the view's row for the group        |
//! | `P`  | shard, sequence number        | a batch of an append-only view (IPC)|
//!
//! Integers are big-endian (windows with the sign bit flipped) so that keys
//! sort by them: a fired window's state is one range delete.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::state::{Store, Writes};

/// What an epoch's commit says about the job as a whole.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: u64,
    /// The job's parallelism: state is kept per instance, so a restored job
    /// keeps it.
    pub parallelism: usize,
    /// The job's sources have ended and every result is in the view.
    pub finished: bool,
}

/// A named savepoint: a copy of a view's state at one checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavepointRecord {
    pub name: String,
    pub view: String,
    /// The view's definition: a savepoint starts only the same query.
    pub sql: String,
    /// Where its state is (`JobKeys::savepoint(id)`).
    pub id: u64,
    pub epoch: u64,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
}

/// The keys of one job's state (or of a savepoint: a copy of a job's state
/// under a prefix of its own, same layout after it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobKeys {
    /// `j` for a job, `s` for a savepoint.
    tag: u8,
    id: u64,
}

/// A split's saved progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitState {
    /// Where the split goes on reading (connector-specific: the next Kafka
    /// offset, the byte offset of the next line, the next generated row).
    pub position: i64,
    /// The largest watermark its rows had made.
    pub watermark: i64,
}

/// The window id as a key part that sorts like the number.
pub fn window_bytes(window: i64) -> [u8; 8] {
    ((window as u64) ^ (1 << 63)).to_be_bytes()
}

pub fn window_from(bytes: &[u8]) -> Result<i64> {
    let raw: [u8; 8] = bytes
        .try_into()
        .map_err(|_| Error::internal("a saved window id is not 8 bytes"))?;
    Ok((u64::from_be_bytes(raw) ^ (1 << 63)) as i64)
}

fn i64_from(bytes: &[u8]) -> Result<i64> {
    let raw: [u8; 8] = bytes
        .try_into()
        .map_err(|_| Error::internal("a saved number is not 8 bytes"))?;
    Ok(i64::from_be_bytes(raw))
}

impl JobKeys {
    pub fn new(id: u64) -> Self {
        JobKeys { tag: b'j', id }
    }

    /// The keys of savepoint `id`.
    pub fn savepoint(id: u64) -> Self {
        JobKeys { tag: b's', id }
    }

    /// Every key of the job starts with this.
    pub fn prefix(&self) -> Vec<u8> {
        let mut k = Vec::with_capacity(24);
        k.push(self.tag);
        k.extend_from_slice(&self.id.to_be_bytes());
        k
    }

    /// Replaces everything under `to` with a copy of everything under
    /// `from`, as of one consistent moment (a committed epoch of `from`),
    /// atomically, however large the state (see [`Store::copy_prefix`]).
    pub fn copy(store: &Store, from: JobKeys, to: JobKeys) -> Result<()> {
        store.copy_prefix(&from.prefix(), &to.prefix())
    }

    fn kind(&self, kind: u8) -> Vec<u8> {
        let mut k = self.prefix();
        k.push(kind);
        k
    }

    fn instance(&self, kind: u8, instance: usize) -> Vec<u8> {
        let mut k = self.kind(kind);
        k.extend_from_slice(&(instance as u32).to_be_bytes());
        k
    }

    pub fn epoch(&self) -> Vec<u8> {
        self.kind(b'E')
    }

    pub fn split(&self, instance: usize, name: &str) -> Vec<u8> {
        let mut k = self.instance(b'S', instance);
        k.extend_from_slice(name.as_bytes());
        k
    }

    pub fn split_value(state: SplitState) -> Vec<u8> {
        let mut v = state.position.to_be_bytes().to_vec();
        v.extend_from_slice(&state.watermark.to_be_bytes());
        v
    }

    /// The counters of a part of the job (by its slot).
    pub fn counters(&self, slot: usize) -> Vec<u8> {
        self.instance(b'C', slot)
    }

    pub fn counters_value(values: [u64; 4]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_be_bytes()).collect()
    }

    pub fn aggregate_watermark(&self, instance: usize) -> Vec<u8> {
        self.instance(b'W', instance)
    }

    /// The prefix of the aggregation state of one instance.
    pub fn aggregate(&self, instance: usize) -> Vec<u8> {
        self.instance(b'A', instance)
    }

    /// The prefix of the top-N state of one instance (see
    /// `dataflow::top_n`).
    pub fn rank(&self, instance: usize) -> Vec<u8> {
        self.instance(b'T', instance)
    }

    /// The rows a join instance holds of one side (0: left, 1: right), and
    /// which of them have met a row of the other side (2: left, 3: right).
    pub fn join_rows(&self, instance: usize, side: u8) -> Vec<u8> {
        let mut k = self.instance(b'J', instance);
        k.push(side);
        k
    }

    /// The prefix of the rows a regular join instance holds of one side
    /// (0: left, 1: right), by key (see `dataflow::keyed_rows`).
    pub fn join_state(&self, instance: usize, side: u8) -> Vec<u8> {
        self.join_rows(instance, side + 4)
    }

    /// The last row of each group of an aggregation instance whose rows
    /// the aggregation above takes back when they change (see
    /// `dataflow::retract`).
    pub fn last_rows(&self, instance: usize) -> Vec<u8> {
        self.instance(b'L', instance)
    }

    /// The upstream rows a pipeline instance keeps to take them back from
    /// its aggregates (see `dataflow::retract`).
    pub fn prior_rows(&self, instance: usize) -> Vec<u8> {
        self.instance(b'R', instance)
    }

    /// The prefix of a keyed view shard.
    pub fn view_rows(&self, shard: usize) -> Vec<u8> {
        self.instance(b'V', shard)
    }

    pub fn view_row(&self, shard: usize, key: &[u8]) -> Vec<u8> {
        let mut k = self.view_rows(shard);
        k.extend_from_slice(key);
        k
    }

    /// The watermark a view shard had at the checkpoint.
    pub fn view_watermark(&self, shard: usize) -> Vec<u8> {
        self.instance(b'M', shard)
    }

    /// The prefix of a keyed view shard's changes: one entry per checkpoint
    /// that changed rows, by sequence number (see `state::view`).
    pub fn view_changes(&self, shard: usize) -> Vec<u8> {
        self.instance(b'D', shard)
    }

    pub fn view_change(&self, shard: usize, seq: u64) -> Vec<u8> {
        let mut k = self.view_changes(shard);
        k.extend_from_slice(&seq.to_be_bytes());
        k
    }

    /// The sequence number of a keyed view shard's next changes entry.
    pub fn view_change_next(&self, shard: usize) -> Vec<u8> {
        self.instance(b'N', shard)
    }

    /// The prefix of an append-only view shard.
    pub fn view_batches(&self, shard: usize) -> Vec<u8> {
        self.instance(b'P', shard)
    }

    pub fn view_batch(&self, shard: usize, seq: u64) -> Vec<u8> {
        let mut k = self.view_batches(shard);
        k.extend_from_slice(&seq.to_be_bytes());
        k
    }

    /// Removes all of the job's state.
    pub fn delete_all(&self, writes: &mut Writes) {
        let mut end = self.prefix();
        end.push(0xff);
        writes.delete_range(self.prefix(), end);
    }

    /// Removes all of the job's state from the store now.
    pub fn delete_from(&self, store: &Store) -> Result<()> {
        let mut writes = Writes::default();
        self.delete_all(&mut writes);
        store.commit(writes)
    }
}

/// What a job finds of its last committed checkpoint when it starts.
#[derive(Debug, Default)]
pub struct Restored {
    pub record: EpochRecord,
    /// Per instance: split name -> its state.
    pub splits: Vec<HashMap<String, SplitState>>,
    /// Per final-aggregation instance.
    pub aggregate_watermarks: Vec<i64>,
    /// (slot, counters) of the job's parts.
    pub counters: Vec<(usize, [u64; 4])>,
}

impl Restored {
    /// Loads the job's last committed checkpoint, if it has one. The
    /// operators load their own tables (they are the large part).
    pub fn load(store: &Store, keys: JobKeys) -> Result<Option<Restored>> {
        let mut record: Option<EpochRecord> = None;
        store.scan_state(&keys.epoch(), |_, v| {
            record = Some(serde_json::from_slice(v).map_err(|e| {
                Error::external(format!("the saved checkpoint of a view is unreadable: {e}"))
            })?);
            Ok(())
        })?;
        let Some(record) = record else {
            return Ok(None);
        };
        let p = record.parallelism.max(1);
        // Pipelines by number: a join's right side numbers its own after
        // the left side's.
        let mut splits: Vec<HashMap<String, SplitState>> = vec![HashMap::new(); p];
        let prefix = keys.kind(b'S');
        store.scan_state(&prefix, |k, v| {
            let corrupt = || Error::internal("a saved split key is corrupt");
            let instance = k
                .get(prefix.len()..prefix.len() + 4)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map(u32::from_be_bytes)
                .ok_or_else(corrupt)? as usize;
            let name = String::from_utf8_lossy(&k[prefix.len() + 4..]).into_owned();
            if v.len() != 16 {
                return Err(Error::internal("a saved split state is not 16 bytes"));
            }
            let state = SplitState {
                position: i64_from(&v[..8])?,
                watermark: i64_from(&v[8..])?,
            };
            if splits.len() <= instance {
                splits.resize(instance + 1, HashMap::new());
            }
            splits[instance].insert(name, state);
            Ok(())
        })?;
        // By slot: a stage's instances are numbered after those of the
        // stages of its kind before it.
        let mut aggregate_watermarks = vec![i64::MIN; p];
        let prefix = keys.kind(b'W');
        store.scan_state(&prefix, |k, v| {
            let slot = k
                .get(prefix.len()..prefix.len() + 4)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map(u32::from_be_bytes)
                .ok_or_else(|| Error::internal("a saved watermark key is corrupt"))?
                as usize;
            if aggregate_watermarks.len() <= slot {
                aggregate_watermarks.resize(slot + 1, i64::MIN);
            }
            aggregate_watermarks[slot] = i64_from(v)?;
            Ok(())
        })?;
        let mut counters = Vec::new();
        let prefix = keys.kind(b'C');
        store.scan_state(&prefix, |k, v| {
            let slot = k
                .get(prefix.len()..prefix.len() + 4)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map(u32::from_be_bytes)
                .ok_or_else(|| Error::internal("a saved counters key is corrupt"))?;
            if v.len() != 32 {
                return Err(Error::internal("saved counters are not 32 bytes"));
            }
            let mut values = [0u64; 4];
            for (i, value) in values.iter_mut().enumerate() {
                *value = i64_from(&v[i * 8..i * 8 + 8])? as u64;
            }
            counters.push((slot as usize, values));
            Ok(())
        })?;
        Ok(Some(Restored {
            record,
            splits,
            aggregate_watermarks,
            counters,
        }))
    }
}

/// The ids of the jobs that have state.
pub fn jobs_with_state(store: &Store) -> Result<Vec<u64>> {
    let mut ids = Vec::new();
    let mut from = vec![b'j'];
    while let Some(key) = store.next_state_key(&from)? {
        if key.len() < 9 || key[0] != b'j' {
            break;
        }
        let id = u64::from_be_bytes(key[1..9].try_into().expect("8 bytes"));
        ids.push(id);
        if id == u64::MAX {
            break;
        }
        from = JobKeys::new(id + 1).prefix();
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_keys_sort_like_windows() {
        let mut ws = vec![i64::MIN, -5, -1, 0, 1, 1_700_000_000_000, i64::MAX];
        let mut keys: Vec<[u8; 8]> = ws.iter().map(|w| window_bytes(*w)).collect();
        keys.sort();
        ws.sort();
        let back: Vec<i64> = keys.iter().map(|k| window_from(k).unwrap()).collect();
        assert_eq!(back, ws);
    }

    #[test]
    fn a_copy_replaces_the_target_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (job, savepoint) = (JobKeys::new(1), JobKeys::savepoint(1));
        let mut w = Writes::default();
        for i in 0..1000u32 {
            w.put(job.view_row(0, &i.to_be_bytes()), i.to_le_bytes());
        }
        // The target has rows the copy must remove.
        w.put(savepoint.view_row(0, b"stale"), b"x");
        w.put(savepoint.aggregate(3), b"y");
        store.commit(w).unwrap();
        JobKeys::copy(&store, job, savepoint).unwrap();
        let all = |keys: JobKeys| {
            let mut v = Vec::new();
            let prefix = keys.prefix();
            store
                .scan_state(&prefix, |k, val| {
                    v.push((k[prefix.len()..].to_vec(), val.to_vec()));
                    Ok(())
                })
                .unwrap();
            v
        };
        assert_eq!(all(savepoint).len(), 1000);
        assert_eq!(all(savepoint), all(job));
        // Copying nothing leaves nothing.
        JobKeys::copy(&store, JobKeys::new(9), savepoint).unwrap();
        assert!(all(savepoint).is_empty());
        assert_eq!(all(job).len(), 1000);
    }

    #[test]
    fn a_jobs_state_is_found_and_deleted_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (a, b) = (JobKeys::new(3), JobKeys::new(4));
        let mut w = Writes::default();
        w.put(a.aggregate(0), b"s");
        w.put(a.epoch(), b"{}");
        w.put(b.view_row(1, b"k"), b"r");
        store.commit(w).unwrap();
        assert_eq!(jobs_with_state(&store).unwrap(), vec![3, 4]);
        let mut w = Writes::default();
        a.delete_all(&mut w);
        store.commit(w).unwrap();
        assert_eq!(jobs_with_state(&store).unwrap(), vec![4]);
    }
}
