//! A state table: the keyed state of one operator, grouped by window so that
//! a fired window is removed in one step.
//!
//! Keys and values are bytes (Arrow's row format, see the operators). The
//! rows live in the store as of the last committed checkpoint, under the
//! table's key prefix (window, then row key); memory holds the rows changed
//! since then and a cache of the others, bounded by the table's cache size.
//! [`StateTable::checkpoint`] writes what changed into the epoch's write
//! batch. A row is evicted from memory only once the store has it
//! committed: not changed since the last checkpoint, and not written by it
//! either (that epoch is committed when the next barrier comes, since only
//! one epoch is in flight at a time). A window some of whose rows are only
//! in the store is marked spilled; reading a row of it that is not in memory
//! reads the store.
//!
//! Without checkpoints nothing is ever committed, so nothing is evicted:
//! state larger than memory needs checkpoints.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use crate::error::Result;
use crate::state::checkpoint::{window_bytes, window_from};
use crate::state::{Store, Writes};

/// Rows are grouped by this: a window's end, or `i64::MAX` for state that
/// never expires.
pub type WindowId = i64;

/// The rows of one window: encoded key -> encoded value.
pub type WindowRows = HashMap<Box<[u8]>, Box<[u8]>, foldhash::fast::RandomState>;

type KeySet = HashSet<Box<[u8]>, foldhash::fast::RandomState>;

/// What a row costs in memory besides its bytes (map entry, boxes).
const ROW_OVERHEAD: usize = 64;

#[derive(Default)]
struct Window {
    rows: WindowRows,
    /// Some rows of the window are in the store only.
    spilled: bool,
}

pub struct StateTable {
    windows: BTreeMap<WindowId, Window>,
    /// Rows in memory, and their size.
    rows: usize,
    bytes: usize,
    /// Keys written since the last checkpoint, by window.
    dirty: HashMap<WindowId, KeySet>,
    /// Keys the last checkpoint wrote (committed when the next comes).
    in_flight: HashMap<WindowId, KeySet>,
    /// Windows removed since the last checkpoint.
    removed: Vec<WindowId>,
    /// Where the committed rows are, and under which prefix.
    store: Option<Arc<Store>>,
    prefix: Vec<u8>,
    /// Bytes of rows memory may hold (changed rows do not count against
    /// it: they cannot be evicted).
    cache_bytes: usize,
}

impl StateTable {
    /// A table only in memory (tests, and operators without checkpoints).
    pub fn in_memory() -> Self {
        StateTable::new(None, Vec::new(), usize::MAX)
    }

    /// A table whose committed rows are in `store` under `prefix`.
    pub fn new(store: Option<Arc<Store>>, prefix: Vec<u8>, cache_bytes: usize) -> Self {
        StateTable {
            windows: BTreeMap::new(),
            rows: 0,
            bytes: 0,
            dirty: HashMap::new(),
            in_flight: HashMap::new(),
            removed: Vec::new(),
            store,
            prefix,
            cache_bytes,
        }
    }

    /// Opens the rows a checkpoint saved: their windows are known, their
    /// rows are read when needed.
    pub fn open(store: Arc<Store>, prefix: Vec<u8>, cache_bytes: usize) -> Result<Self> {
        let mut table = StateTable::new(Some(store.clone()), prefix.clone(), cache_bytes);
        let mut from = prefix.clone();
        while let Some(key) = store.next_state_key(&from)? {
            if !key.starts_with(&prefix) {
                break;
            }
            let window = window_from(key.get(prefix.len()..prefix.len() + 8).unwrap_or_default())?;
            table.windows.insert(
                window,
                Window {
                    rows: WindowRows::default(),
                    spilled: true,
                },
            );
            let Some(next) = window.checked_add(1) else {
                break;
            };
            from = table.key(next, &[]);
        }
        Ok(table)
    }

    fn key(&self, window: WindowId, key: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.prefix.len() + 8 + key.len());
        k.extend_from_slice(&self.prefix);
        k.extend_from_slice(&window_bytes(window));
        k.extend_from_slice(key);
        k
    }

    /// Rows in memory.
    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0 && self.windows.values().all(|w| !w.spilled)
    }

    /// Makes sure the rows of these (window, key) pairs that exist are in
    /// memory, reading the store for those of spilled windows.
    pub fn fetch<'a>(&mut self, wanted: impl Iterator<Item = (WindowId, &'a [u8])>) -> Result<()> {
        let Some(store) = self.store.clone() else {
            return Ok(());
        };
        if !self.windows.values().any(|w| w.spilled) {
            return Ok(());
        }
        let mut missing: Vec<(WindowId, Vec<u8>)> = Vec::new();
        for (window, key) in wanted {
            if let Some(w) = self.windows.get(&window) {
                if w.spilled && !w.rows.contains_key(key) {
                    missing.push((window, self.key(window, key)));
                }
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        let found = store.get_states(missing.iter().map(|(_, k)| k.as_slice()))?;
        for ((window, key), value) in missing.into_iter().zip(found) {
            if let Some(value) = value {
                let row_key = &key[self.prefix.len() + 8..];
                self.insert(window, row_key, &value);
            }
        }
        Ok(())
    }

    /// The row, if it is in memory (see [`fetch`](Self::fetch)).
    pub fn get(&self, window: WindowId, key: &[u8]) -> Option<&[u8]> {
        self.windows.get(&window)?.rows.get(key).map(|v| v.as_ref())
    }

    pub fn put(&mut self, window: WindowId, key: &[u8], value: &[u8]) {
        let dirty = self.dirty.entry(window).or_default();
        if !dirty.contains(key) {
            dirty.insert(Box::from(key));
        }
        self.insert(window, key, value);
    }

    /// Puts a row in memory without marking it changed.
    fn insert(&mut self, window: WindowId, key: &[u8], value: &[u8]) {
        let rows = &mut self.windows.entry(window).or_default().rows;
        match rows.get_mut(key) {
            Some(old) if old.len() == value.len() => old.copy_from_slice(value),
            Some(old) => {
                self.bytes = self.bytes + value.len() - old.len();
                *old = Box::from(value);
            }
            None => {
                rows.insert(Box::from(key), Box::from(value));
                self.rows += 1;
                self.bytes += key.len() + value.len() + ROW_OVERHEAD;
            }
        }
    }

    /// The windows whose id is at most `up_to`, oldest first.
    pub fn windows_up_to(&self, up_to: WindowId) -> Vec<WindowId> {
        self.windows.range(..=up_to).map(|(w, _)| *w).collect()
    }

    /// Removes and returns a window's rows (reading those only in the
    /// store).
    pub fn take_window(&mut self, window: WindowId) -> Result<WindowRows> {
        let Window { mut rows, spilled } = self.windows.remove(&window).unwrap_or_default();
        self.rows -= rows.len();
        self.bytes -= rows
            .iter()
            .map(|(k, v)| k.len() + v.len() + ROW_OVERHEAD)
            .sum::<usize>();
        if spilled {
            if let Some(store) = &self.store {
                let prefix = self.key(window, &[]);
                store.scan_state(&prefix, |k, v| {
                    let key = &k[prefix.len()..];
                    if !rows.contains_key(key) {
                        rows.insert(Box::from(key), Box::from(v));
                    }
                    Ok(())
                })?;
            }
        }
        self.dirty.remove(&window);
        self.in_flight.remove(&window);
        self.removed.push(window);
        Ok(rows)
    }

    /// Writes what changed since the last checkpoint.
    pub fn checkpoint(&mut self, writes: &mut Writes) {
        for window in std::mem::take(&mut self.removed) {
            let from = self.key(window, &[]);
            let to = match window.checked_add(1) {
                Some(next) => self.key(next, &[]),
                None => {
                    let mut end = self.prefix.clone();
                    end.extend_from_slice(&[0xff; 9]);
                    end
                }
            };
            writes.delete_range(from, to);
        }
        // The previous checkpoint is committed now: its rows may go.
        self.in_flight.clear();
        for (window, keys) in std::mem::take(&mut self.dirty) {
            let Some(w) = self.windows.get(&window) else {
                continue;
            };
            for key in &keys {
                if let Some(value) = w.rows.get(key) {
                    writes.put(self.key(window, key), value.to_vec());
                }
            }
            self.in_flight.insert(window, keys);
        }
        self.evict();
    }

    /// Drops committed rows from memory while it holds more than the cache
    /// size (down to three quarters of it, so that this runs rarely).
    pub fn evict(&mut self) {
        if self.bytes <= self.cache_bytes || self.store.is_none() {
            return;
        }
        let target = self.cache_bytes / 4 * 3;
        let empty = KeySet::default();
        for (id, window) in self.windows.iter_mut() {
            if self.bytes <= target {
                break;
            }
            let dirty = self.dirty.get(id).unwrap_or(&empty);
            let in_flight = self.in_flight.get(id).unwrap_or(&empty);
            let before = window.rows.len();
            let mut freed = 0;
            window.rows.retain(|k, v| {
                if self.bytes - freed <= target || dirty.contains(k) || in_flight.contains(k) {
                    return true;
                }
                freed += k.len() + v.len() + ROW_OVERHEAD;
                false
            });
            if window.rows.len() < before {
                tracing::trace!(
                    window = id,
                    rows = before - window.rows.len(),
                    "state rows evicted"
                );
                window.spilled = true;
                self.rows -= before - window.rows.len();
                self.bytes -= freed;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_expire_in_order() {
        let mut t = StateTable::in_memory();
        t.put(20, b"a", b"1");
        t.put(10, b"a", b"2");
        t.put(10, b"a", b"33");
        t.put(30, b"b", b"4");
        assert_eq!(t.len(), 3);
        assert_eq!(t.get(10, b"a"), Some(&b"33"[..]));
        assert_eq!(t.windows_up_to(20), vec![10, 20]);
        assert_eq!(t.take_window(10).unwrap().len(), 1);
        assert_eq!(t.len(), 2);
        assert_eq!(t.get(10, b"a"), None);
    }

    fn commit(t: &mut StateTable, store: &Store) -> usize {
        let mut w = Writes::default();
        t.checkpoint(&mut w);
        store.commit(&w).unwrap();
        w.len()
    }

    #[test]
    fn checkpoints_write_changes_and_restore_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let mut t = StateTable::new(Some(store.clone()), b"p/".to_vec(), usize::MAX);
        t.put(10, b"a", b"1");
        t.put(20, b"b", b"2");
        t.put(i64::MAX, b"c", b"3");
        commit(&mut t, &store);
        // Window 10 fires, b changes: only that is written.
        t.take_window(10).unwrap();
        t.put(20, b"b", b"22");
        assert_eq!(commit(&mut t, &store), 2);
        let mut back = StateTable::open(store.clone(), b"p/".to_vec(), usize::MAX).unwrap();
        assert_eq!(back.windows_up_to(i64::MAX), vec![20, i64::MAX]);
        back.fetch([(20, &b"b"[..]), (i64::MAX, &b"c"[..]), (20, &b"x"[..])].into_iter())
            .unwrap();
        assert_eq!(back.get(20, b"b"), Some(&b"22"[..]));
        assert_eq!(back.get(i64::MAX, b"c"), Some(&b"3"[..]));
        assert_eq!(back.get(20, b"x"), None);
        assert_eq!(back.take_window(20).unwrap().len(), 1);
    }

    #[test]
    fn only_committed_rows_leave_memory_and_come_back_when_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let mut t = StateTable::new(Some(store.clone()), b"q/".to_vec(), 10 * ROW_OVERHEAD);
        let key = |i: u32| i.to_be_bytes();
        for i in 0..100u32 {
            t.put(1, &key(i), b"v1");
        }
        // Nothing is committed yet: everything stays.
        t.evict();
        assert_eq!(t.len(), 100);
        commit(&mut t, &store);
        // Written by that checkpoint, maybe not committed yet: stays.
        assert_eq!(t.len(), 100);
        t.put(1, &key(7), b"v2");
        commit(&mut t, &store);
        // The first epoch is committed: its rows go, the changed one stays.
        assert!(t.len() < 20, "{} rows in memory", t.len());
        for i in 0..100u32 {
            t.fetch(std::iter::once((1, &key(i)[..]))).unwrap();
            let want: &[u8] = if i == 7 { b"v2" } else { b"v1" };
            assert_eq!(t.get(1, &key(i)), Some(want), "row {i}");
        }
        let all = t.take_window(1).unwrap();
        assert_eq!(all.len(), 100);
        assert_eq!(all.get(&key(7)[..]).map(|v| &v[..]), Some(&b"v2"[..]));
    }
}
