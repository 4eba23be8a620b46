//! The in-memory index of state tables and keyed views: keys (bytes) to
//! values, each entry knowing whether the store has it, plus a log of the
//! keys changed since the last checkpoint.
//!
//! A checkpoint must visit only what changed, never everything in memory:
//! a changed key is noted once, when its entry becomes dirty, in a
//! [`KeyLog`] (one buffer, no allocation per key). Every entry keeps its
//! hash, so growing the index, checkpoints and the log's lookups never hash
//! a key again.
//!
//! An entry's [`Saved`] state decides whether it may leave memory: only
//! rows the store has committed can be evicted (an epoch written by a
//! checkpoint is committed when the next barrier comes, since one epoch is
//! in flight at a time).

use std::hash::BuildHasher;
use std::sync::atomic::AtomicBool;
use std::sync::LazyLock;

use hashbrown::hash_table::{Entry as Slot, HashTable};

/// Where an entry in memory stands with respect to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Saved {
    /// The store has it committed: it may leave memory.
    Committed,
    /// Changed since the last checkpoint.
    Dirty,
    /// Written by the last checkpoint, committed when the next one comes.
    InFlight,
}

pub struct Entry<V> {
    pub hash: u64,
    pub key: Box<[u8]>,
    pub value: V,
    pub saved: Saved,
    /// Read or written since the last eviction pass looked at it: it gets
    /// a second chance to stay in memory (see `StateTable::evict`).
    pub used: AtomicBool,
}

/// The seed of every index's hash, random per process (group keys come
/// from user data).
static HASHER: LazyLock<foldhash::fast::RandomState> = LazyLock::new(Default::default);

/// The hash of a key in every [`KeyIndex`].
pub fn hash_key(key: &[u8]) -> u64 {
    HASHER.hash_one(key)
}

/// Keys to values, with each entry's hash kept.
pub struct KeyIndex<V> {
    table: HashTable<Entry<V>>,
}

impl<V> Default for KeyIndex<V> {
    fn default() -> Self {
        KeyIndex {
            table: HashTable::new(),
        }
    }
}

impl<V> KeyIndex<V> {
    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    pub fn get(&self, hash: u64, key: &[u8]) -> Option<&Entry<V>> {
        self.table.find(hash, |e| e.hash == hash && *e.key == *key)
    }

    pub fn get_mut(&mut self, hash: u64, key: &[u8]) -> Option<&mut Entry<V>> {
        self.table
            .find_mut(hash, |e| e.hash == hash && *e.key == *key)
    }

    /// The entry of `key`, made with `value()` (and `saved`) if absent; true
    /// if it was made.
    pub fn entry(
        &mut self,
        hash: u64,
        key: &[u8],
        saved: Saved,
        value: impl FnOnce() -> V,
    ) -> (&mut Entry<V>, bool) {
        match self
            .table
            .entry(hash, |e| e.hash == hash && *e.key == *key, |e| e.hash)
        {
            Slot::Occupied(o) => (o.into_mut(), false),
            Slot::Vacant(v) => {
                let entry = v.insert(Entry {
                    hash,
                    key: Box::from(key),
                    value: value(),
                    saved,
                    used: AtomicBool::new(true),
                });
                (entry.into_mut(), true)
            }
        }
    }

    /// Adds an entry known to be absent.
    pub fn insert_new(&mut self, hash: u64, key: Box<[u8]>, value: V, saved: Saved) {
        let entry = Entry {
            hash,
            key,
            value,
            saved,
            used: AtomicBool::new(true),
        };
        self.table.insert_unique(hash, entry, |e| e.hash);
    }

    pub fn remove(&mut self, hash: u64, key: &[u8]) -> Option<Entry<V>> {
        self.table
            .find_entry(hash, |e| e.hash == hash && *e.key == *key)
            .ok()
            .map(|o| o.remove().0)
    }

    pub fn retain(&mut self, f: impl FnMut(&mut Entry<V>) -> bool) {
        self.table.retain(f);
    }

    pub fn iter(&self) -> impl Iterator<Item = &Entry<V>> {
        self.table.iter()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Entry<V>> {
        self.table.iter_mut()
    }

    pub fn into_entries(self) -> impl Iterator<Item = Entry<V>> {
        self.table.into_iter()
    }
}

impl<V> Entry<V> {
    /// Marks the entry changed, noting its key in `log` (under `group`) the
    /// first time since the last checkpoint.
    pub fn mark_dirty(&mut self, log: &mut KeyLog, group: i64) {
        if self.saved != Saved::Dirty {
            self.saved = Saved::Dirty;
            log.push(group, self.hash, &self.key);
        }
    }
}

/// Keys noted one after the other in one buffer, each with a group (a
/// window, for state tables) and its hash.
///
/// A log never holds more than about half as many keys as its index: past
/// that (many keys changed, or no checkpoint for a long time, or checkpoints
/// off) it stops noting keys and says so, and the next checkpoint finds the
/// changed entries by a scan of the index instead ([`KeyLog::rebuild`]).
#[derive(Debug, Default)]
pub struct KeyLog {
    bytes: Vec<u8>,
    keys: Vec<LoggedKey>,
    /// Keys were left out: the log must be rebuilt from the index.
    overflowed: bool,
}

/// A log may always hold this many keys.
const LOG_MIN_KEYS: usize = 4096;

#[derive(Debug, Clone, Copy)]
pub struct LoggedKey {
    pub group: i64,
    pub hash: u64,
    start: u32,
    len: u32,
}

impl KeyLog {
    pub fn push(&mut self, group: i64, hash: u64, key: &[u8]) {
        if self.overflowed {
            return;
        }
        self.keys.push(LoggedKey {
            group,
            hash,
            start: self.bytes.len() as u32,
            len: key.len() as u32,
        });
        self.bytes.extend_from_slice(key);
    }

    pub fn key(&self, k: &LoggedKey) -> &[u8] {
        &self.bytes[k.start as usize..(k.start + k.len) as usize]
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (LoggedKey, &[u8])> {
        self.keys.iter().map(|k| (*k, self.key(k)))
    }

    /// The keys sorted by (group, key): the order RocksDB inserts fastest.
    pub fn sorted(&self) -> Vec<LoggedKey> {
        let mut keys = self.keys.clone();
        keys.sort_unstable_by(|a, b| {
            a.group
                .cmp(&b.group)
                .then_with(|| self.key(a).cmp(self.key(b)))
        });
        keys
    }

    pub fn clear(&mut self) {
        self.bytes.clear();
        self.keys.clear();
        self.overflowed = false;
    }

    /// Stops noting keys if the log holds more than half as many as the
    /// `entries` of its index.
    pub fn bound(&mut self, entries: usize) {
        if self.keys.len() > LOG_MIN_KEYS.max(entries / 2) {
            self.bytes = Vec::new();
            self.keys = Vec::new();
            self.overflowed = true;
        }
    }

    /// Notes again every changed entry of `index` (under `group`) if keys
    /// were left out.
    pub fn rebuild<'a, V: 'a>(&mut self, indexes: impl Iterator<Item = (i64, &'a KeyIndex<V>)>) {
        if !self.overflowed {
            return;
        }
        self.clear();
        for (group, index) in indexes {
            for e in index.iter().filter(|e| e.saved == Saved::Dirty) {
                self.push(group, e.hash, &e.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_found_by_key_and_noted_once_when_dirty() {
        let mut index: KeyIndex<u32> = KeyIndex::default();
        let mut log = KeyLog::default();
        for key in [&b"b"[..], b"a", b"b"] {
            let h = hash_key(key);
            let (e, _) = index.entry(h, key, Saved::Committed, || 0);
            e.value += 1;
            e.mark_dirty(&mut log, 7);
        }
        assert_eq!(index.len(), 2);
        assert_eq!(index.get(hash_key(b"b"), b"b").map(|e| e.value), Some(2));
        let sorted: Vec<&[u8]> = log.sorted().iter().map(|k| log.key(k)).collect();
        assert_eq!(sorted, vec![&b"a"[..], b"b"]);
        // Too many keys for the index: the log is rebuilt from it.
        log.bound(0);
        for i in 0..5000u32 {
            log.push(0, 0, &i.to_be_bytes());
        }
        log.bound(index.len());
        assert!(log.is_empty());
        log.rebuild(std::iter::once((7, &index)));
        assert_eq!(log.len(), 2);
        assert!(index.remove(hash_key(b"a"), b"a").is_some());
        assert!(index.get(hash_key(b"a"), b"a").is_none());
    }
}
