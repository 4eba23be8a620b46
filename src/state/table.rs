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
//!
//! Values are never empty: an empty value in memory is a removed row (a
//! tombstone), which hides the stored row until a checkpoint deletes it and
//! commits.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use crate::error::Result;
use crate::state::checkpoint::{window_bytes, window_from};
use crate::state::index::{hash_key, KeyIndex, KeyLog, Saved};
use crate::state::{Store, Writes};

/// Rows are grouped by this: a window's end, or `i64::MAX` for state that
/// never expires.
pub type WindowId = i64;

/// Rows taken out of a table: (encoded key, encoded value).
pub type WindowRows = Vec<(Box<[u8]>, Box<[u8]>)>;

/// What a row costs in memory besides its bytes: its index entry (48 bytes
/// at the hash table's usual load), the rounding of its two allocations,
/// and its share of the change log.
const ROW_OVERHEAD: usize = 112;

#[derive(Default)]
struct Window {
    rows: KeyIndex<Box<[u8]>>,
    /// Some rows of the window are in the store only.
    spilled: bool,
}

pub struct StateTable {
    windows: BTreeMap<WindowId, Window>,
    /// Rows in memory, and their size.
    rows: usize,
    bytes: usize,
    /// Windows removed since the last checkpoint.
    removed: Vec<WindowId>,
    /// Keys changed since the last checkpoint, and those the last one wrote
    /// (committed when the next comes), by window.
    changed: KeyLog,
    in_flight: KeyLog,
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
            removed: Vec::new(),
            changed: KeyLog::default(),
            in_flight: KeyLog::default(),
            store,
            prefix,
            cache_bytes,
        }
    }

    /// A table under `prefix` in `store`: opened from what a checkpoint
    /// saved if the job has one (`saved`), otherwise empty.
    pub fn resume(
        store: Arc<Store>,
        prefix: Vec<u8>,
        cache_bytes: usize,
        saved: bool,
    ) -> Result<Self> {
        if saved {
            StateTable::open(store, prefix, cache_bytes)
        } else {
            Ok(StateTable::new(Some(store), prefix, cache_bytes))
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
                    spilled: true,
                    ..Window::default()
                },
            );
            let Some(next) = window.checked_add(1) else {
                break;
            };
            from = table.window_prefix(next);
        }
        Ok(table)
    }

    fn window_prefix(&self, window: WindowId) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.prefix.len() + 8);
        k.extend_from_slice(&self.prefix);
        k.extend_from_slice(&window_bytes(window));
        k
    }

    fn key(&self, window: WindowId, key: &[u8]) -> Vec<u8> {
        let mut k = self.window_prefix(window);
        k.extend_from_slice(key);
        k
    }

    /// The memory its rows take, as a share of its cache (0 without a
    /// store: then nothing can be evicted, and nothing is measured).
    pub fn cache_use(&self) -> f64 {
        match self.store {
            Some(_) => self.bytes as f64 / self.cache_bytes.max(1) as f64,
            None => 0.0,
        }
    }

    /// Rows in memory.
    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0 && self.windows.values().all(|w| !w.spilled)
    }

    /// Whether some rows are only in the store (else every row is in
    /// memory, and [`fetch`](Self::fetch) has nothing to do).
    pub fn spilled(&self) -> bool {
        self.store.is_some() && self.windows.values().any(|w| w.spilled)
    }

    /// Makes sure the rows of these (window, key) pairs that exist are in
    /// memory, reading the store for those of spilled windows.
    pub fn fetch<'a>(&mut self, wanted: impl Iterator<Item = (WindowId, &'a [u8])>) -> Result<()> {
        if !self.spilled() {
            return Ok(());
        }
        let Some(store) = self.store.clone() else {
            return Ok(());
        };
        let mut missing: Vec<(WindowId, Vec<u8>)> = Vec::new();
        for (window, key) in wanted {
            if let Some(w) = self.windows.get(&window) {
                if w.spilled && w.rows.get(hash_key(key), key).is_none() {
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
                self.insert(window, row_key, &value, Saved::Committed);
            }
        }
        Ok(())
    }

    /// The row, if it is in memory (see [`fetch`](Self::fetch)).
    pub fn get(&self, window: WindowId, key: &[u8]) -> Option<&[u8]> {
        let e = self.windows.get(&window)?.rows.get(hash_key(key), key)?;
        e.used.store(true, Relaxed);
        Some(e.value.as_ref()).filter(|v| !v.is_empty())
    }

    /// Sets a row; `value` must not be empty.
    pub fn put(&mut self, window: WindowId, key: &[u8], value: &[u8]) {
        debug_assert!(!value.is_empty(), "state values are never empty");
        self.insert(window, key, value, Saved::Dirty);
    }

    /// Removes a row (it may be in the store only).
    pub fn remove(&mut self, window: WindowId, key: &[u8]) {
        let Some(w) = self.windows.get(&window) else {
            return;
        };
        let in_memory = w.rows.get(hash_key(key), key).is_some();
        if in_memory || w.spilled {
            self.insert(window, key, &[], Saved::Dirty);
        }
    }

    /// Puts a row in memory; `Saved::Dirty` marks it changed.
    fn insert(&mut self, window: WindowId, key: &[u8], value: &[u8], saved: Saved) {
        let w = self.windows.entry(window).or_default();
        let hash = hash_key(key);
        let (e, new) = w.rows.entry(hash, key, saved, || Box::from(value));
        e.used.store(true, Relaxed);
        if new {
            self.rows += 1;
            self.bytes += key.len() + value.len() + ROW_OVERHEAD;
            if saved == Saved::Dirty {
                self.changed.push(window, hash, key);
                self.changed.bound(self.rows);
            }
            return;
        }
        if e.value.len() == value.len() {
            e.value.copy_from_slice(value);
        } else {
            self.bytes = self.bytes + value.len() - e.value.len();
            e.value = Box::from(value);
        }
        if saved == Saved::Dirty {
            e.mark_dirty(&mut self.changed, window);
            self.changed.bound(self.rows);
        }
    }

    /// The windows whose id is at most `up_to`, oldest first.
    pub fn windows_up_to(&self, up_to: WindowId) -> Vec<WindowId> {
        self.windows.range(..=up_to).map(|(w, _)| *w).collect()
    }

    /// Adds to `out` the stored rows of a window that are not in memory
    /// (`rows`, whose tombstones hide their stored rows).
    fn read_stored(
        &self,
        window: WindowId,
        rows: &KeyIndex<Box<[u8]>>,
        out: &mut WindowRows,
    ) -> Result<()> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        let prefix = self.window_prefix(window);
        store.scan_state(&prefix, |k, v| {
            let key = &k[prefix.len()..];
            if rows.get(hash_key(key), key).is_none() {
                out.push((Box::from(key), Box::from(v)));
            }
            Ok(())
        })
    }

    /// A copy of a window's rows (reading those only in the store).
    pub fn read_window(&self, window: WindowId) -> Result<WindowRows> {
        let Some(w) = self.windows.get(&window) else {
            return Ok(Vec::new());
        };
        let mut out: WindowRows = Vec::with_capacity(w.rows.len());
        if w.spilled {
            self.read_stored(window, &w.rows, &mut out)?;
        }
        out.extend(
            w.rows
                .iter()
                .filter(|e| !e.value.is_empty())
                .map(|e| (e.key.clone(), e.value.clone())),
        );
        Ok(out)
    }

    /// Removes and returns a window's rows (reading those only in the
    /// store).
    pub fn take_window(&mut self, window: WindowId) -> Result<WindowRows> {
        let Window { rows, spilled } = self.windows.remove(&window).unwrap_or_default();
        self.rows -= rows.len();
        self.bytes -= rows
            .iter()
            .map(|e| e.key.len() + e.value.len() + ROW_OVERHEAD)
            .sum::<usize>();
        let mut out: WindowRows = Vec::with_capacity(rows.len());
        if spilled {
            self.read_stored(window, &rows, &mut out)?;
        }
        out.extend(
            rows.into_entries()
                .filter(|e| !e.value.is_empty())
                .map(|e| (e.key, e.value)),
        );
        self.removed.push(window);
        Ok(out)
    }

    /// Removes every row, without reading those only in the store.
    pub fn clear(&mut self) {
        let windows = std::mem::take(&mut self.windows);
        self.removed.extend(windows.into_keys());
        self.rows = 0;
        self.bytes = 0;
    }

    /// The last checkpoint is committed: the rows it wrote may leave memory
    /// (and some do, if memory holds more than the cache).
    pub fn committed(&mut self) {
        self.mark_committed();
        self.evict();
    }

    fn mark_committed(&mut self) {
        for (k, key) in self.in_flight.iter() {
            if let Some(e) = self
                .windows
                .get_mut(&k.group)
                .and_then(|w| w.rows.get_mut(k.hash, key))
            {
                if e.saved == Saved::InFlight {
                    e.saved = Saved::Committed;
                }
            }
        }
        // Removals the store has now: their tombstones go.
        for (k, key) in self.in_flight.iter() {
            let Some(w) = self.windows.get_mut(&k.group) else {
                continue;
            };
            let gone = w
                .rows
                .get(k.hash, key)
                .map(|e| e.saved == Saved::Committed && e.value.is_empty())
                .unwrap_or(false);
            if gone {
                w.rows.remove(k.hash, key);
                self.rows -= 1;
                self.bytes -= key.len() + ROW_OVERHEAD;
            }
        }
        self.in_flight.clear();
    }

    /// Writes what changed since the last checkpoint, in key order. The
    /// last checkpoint must be committed (one is in flight at a time).
    pub fn checkpoint(&mut self, writes: &mut Writes) {
        self.mark_committed();
        for window in std::mem::take(&mut self.removed) {
            let from = self.window_prefix(window);
            let to = match window.checked_add(1) {
                Some(next) => self.window_prefix(next),
                None => {
                    let mut end = self.prefix.clone();
                    end.extend_from_slice(&[0xff; 9]);
                    end
                }
            };
            writes.delete_range(from, to);
        }
        self.changed
            .rebuild(self.windows.iter().map(|(id, w)| (*id, &w.rows)));
        // Rows of windows fired since are gone: their keys are skipped.
        for k in self.changed.sorted() {
            let key = self.changed.key(&k);
            let Some(e) = self
                .windows
                .get_mut(&k.group)
                .and_then(|w| w.rows.get_mut(k.hash, key))
            else {
                continue;
            };
            if e.saved != Saved::Dirty {
                continue;
            }
            e.saved = Saved::InFlight;
            let parts: [&[u8]; 3] = [&self.prefix, &window_bytes(k.group), key];
            if e.value.is_empty() {
                writes.delete_parts(&parts);
            } else {
                writes.put_parts(&parts, &e.value);
            }
        }
        std::mem::swap(&mut self.changed, &mut self.in_flight);
        self.changed.clear();
        self.evict();
    }

    /// Drops committed rows from memory while it holds more than the cache
    /// size (down to three quarters of it, so that this runs rarely). Rows
    /// used since the last pass get a second chance (a clock): a first
    /// pass evicts the others and clears their mark, a second (only if the
    /// first freed too little) evicts any committed row.
    pub fn evict(&mut self) {
        if self.bytes <= self.cache_bytes || self.store.is_none() {
            return;
        }
        let target = self.cache_bytes / 4 * 3;
        for second_chance in [true, false] {
            for (id, window) in self.windows.iter_mut() {
                if self.bytes <= target {
                    return;
                }
                let before = window.rows.len();
                let mut freed = 0;
                window.rows.retain(|e| {
                    if self.bytes - freed <= target || e.saved != Saved::Committed {
                        return true;
                    }
                    if second_chance && e.used.swap(false, Relaxed) {
                        return true;
                    }
                    freed += e.key.len() + e.value.len() + ROW_OVERHEAD;
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
        let n = w.len();
        store.commit(w).unwrap();
        n
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
    fn removed_rows_hide_stored_ones_until_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let mut t = StateTable::new(Some(store.clone()), b"r/".to_vec(), usize::MAX);
        t.put(i64::MAX, b"a", b"1");
        t.put(i64::MAX, b"b", b"2");
        t.put(5, b"c", b"3");
        commit(&mut t, &store);
        t.remove(i64::MAX, b"a");
        t.remove(5, b"c");
        assert_eq!(t.get(i64::MAX, b"a"), None);
        assert!(t.take_window(5).unwrap().is_empty());
        commit(&mut t, &store);
        // Committed with the next checkpoint: the tombstone leaves memory.
        commit(&mut t, &store);
        assert_eq!(t.len(), 1);
        let mut back = StateTable::open(store.clone(), b"r/".to_vec(), usize::MAX).unwrap();
        back.fetch([(i64::MAX, &b"a"[..]), (i64::MAX, &b"b"[..])].into_iter())
            .unwrap();
        assert_eq!(back.get(i64::MAX, b"a"), None);
        assert_eq!(back.get(i64::MAX, b"b"), Some(&b"2"[..]));
        // Removed while only in the store (spilled): hidden, then deleted.
        back.remove(i64::MAX, b"b");
        back.fetch(std::iter::once((i64::MAX, &b"b"[..]))).unwrap();
        assert_eq!(back.get(i64::MAX, b"b"), None);
        commit(&mut back, &store);
        let again = StateTable::open(store, b"r/".to_vec(), usize::MAX).unwrap();
        assert!(again.windows_up_to(i64::MAX).is_empty(), "nothing left");
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
        let seven = all.iter().find(|(k, _)| k[..] == key(7)[..]);
        assert_eq!(seven.map(|(_, v)| &v[..]), Some(&b"v2"[..]));
    }

    /// Rows read since the last eviction pass stay in memory; the others
    /// go first.
    #[test]
    fn rows_read_since_the_last_eviction_stay() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let row = 4 + 2 + ROW_OVERHEAD;
        let mut t = StateTable::new(Some(store.clone()), b"c/".to_vec(), 40 * row);
        let key = |i: u32| i.to_be_bytes();
        // Whether a row is in memory, without marking it used.
        let held =
            |t: &StateTable, i: u32| t.windows[&1].rows.get(hash_key(&key(i)), &key(i)).is_some();
        for i in 0..50u32 {
            t.put(1, &key(i), b"v1");
        }
        commit(&mut t, &store);
        commit(&mut t, &store);
        // A pass found every row just used: it cleared the marks, then
        // evicted 20 rows down to three quarters of the cache.
        let kept: Vec<u32> = (0..50).filter(|i| held(&t, *i)).collect();
        assert_eq!(kept.len(), 30);
        for i in &kept[..10] {
            assert!(t.get(1, &key(*i)).is_some());
        }
        for i in 50..70u32 {
            t.put(1, &key(i), b"v1");
        }
        commit(&mut t, &store);
        assert!(
            kept[..10].iter().all(|i| held(&t, *i)),
            "the rows read stay"
        );
        assert!(kept[10..].iter().all(|i| !held(&t, *i)), "the others go");
    }
}
