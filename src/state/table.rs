//! A state table: the keyed state of one operator, grouped by window so that
//! a fired window is removed in one step.
//!
//! Keys and values are bytes (Arrow's row format, see the operators). The
//! table lives in memory and remembers what changed since the last
//! checkpoint: [`MemStateTable::checkpoint`] writes just that (the groups
//! changed, the windows removed) under a key prefix of the state store, and
//! [`MemStateTable::restore`] reads it back.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::error::Result;
use crate::state::checkpoint::{window_bytes, window_from};
use crate::state::{Store, Writes};

/// Rows are grouped by this: a window's end, or `i64::MAX` for state that
/// never expires.
pub type WindowId = i64;

/// The rows of one window: encoded key -> encoded value.
pub type WindowRows = HashMap<Box<[u8]>, Box<[u8]>, foldhash::fast::RandomState>;

type KeySet = HashSet<Box<[u8]>, foldhash::fast::RandomState>;

#[derive(Default)]
pub struct MemStateTable {
    windows: BTreeMap<WindowId, WindowRows>,
    rows: usize,
    /// Keys written since the last checkpoint, by window.
    dirty: HashMap<WindowId, KeySet>,
    /// Windows removed since the last checkpoint.
    removed: Vec<WindowId>,
}

impl MemStateTable {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    pub fn get(&self, window: WindowId, key: &[u8]) -> Option<&[u8]> {
        self.windows.get(&window)?.get(key).map(|v| v.as_ref())
    }

    pub fn put(&mut self, window: WindowId, key: &[u8], value: &[u8]) {
        let dirty = self.dirty.entry(window).or_default();
        if !dirty.contains(key) {
            dirty.insert(Box::from(key));
        }
        self.put_clean(window, key, value);
    }

    /// Puts a row that the store already has (restoring).
    fn put_clean(&mut self, window: WindowId, key: &[u8], value: &[u8]) {
        let rows = self.windows.entry(window).or_default();
        match rows.get_mut(key) {
            Some(old) if old.len() == value.len() => old.copy_from_slice(value),
            Some(old) => *old = Box::from(value),
            None => {
                rows.insert(Box::from(key), Box::from(value));
                self.rows += 1;
            }
        }
    }

    /// The windows whose id is at most `up_to`, oldest first.
    pub fn windows_up_to(&self, up_to: WindowId) -> Vec<WindowId> {
        self.windows.range(..=up_to).map(|(w, _)| *w).collect()
    }

    /// Removes and returns a window's rows.
    pub fn take_window(&mut self, window: WindowId) -> WindowRows {
        let rows = self.windows.remove(&window).unwrap_or_default();
        self.rows -= rows.len();
        self.dirty.remove(&window);
        self.removed.push(window);
        rows
    }

    /// Writes what changed since the last checkpoint under `prefix`: a key
    /// is `prefix`, the window (see [`window_bytes`]), then the row's key.
    pub fn checkpoint(&mut self, prefix: &[u8], writes: &mut Writes) {
        let key_of = |window: WindowId, key: &[u8]| {
            let mut k = Vec::with_capacity(prefix.len() + 8 + key.len());
            k.extend_from_slice(prefix);
            k.extend_from_slice(&window_bytes(window));
            k.extend_from_slice(key);
            k
        };
        for window in self.removed.drain(..) {
            let from = key_of(window, &[]);
            let to = match window.checked_add(1) {
                Some(next) => key_of(next, &[]),
                None => {
                    let mut end = prefix.to_vec();
                    end.extend_from_slice(&[0xff; 9]);
                    end
                }
            };
            writes.delete_range(from, to);
        }
        for (window, keys) in self.dirty.drain() {
            let Some(rows) = self.windows.get(&window) else {
                continue;
            };
            for key in keys {
                if let Some(value) = rows.get(&key) {
                    writes.put(key_of(window, &key), value.to_vec());
                }
            }
        }
    }

    /// Loads the rows saved under `prefix` by [`checkpoint`](Self::checkpoint).
    pub fn restore(&mut self, store: &Store, prefix: &[u8]) -> Result<()> {
        store.scan_state(prefix, |k, v| {
            let rest = &k[prefix.len()..];
            let window = window_from(rest.get(..8).unwrap_or_default())?;
            self.put_clean(window, &rest[8..], v);
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_expire_in_order() {
        let mut t = MemStateTable::new();
        t.put(20, b"a", b"1");
        t.put(10, b"a", b"2");
        t.put(10, b"a", b"33");
        t.put(30, b"b", b"4");
        assert_eq!(t.len(), 3);
        assert_eq!(t.get(10, b"a"), Some(&b"33"[..]));
        assert_eq!(t.windows_up_to(20), vec![10, 20]);
        assert_eq!(t.take_window(10).len(), 1);
        assert_eq!(t.len(), 2);
        assert_eq!(t.get(10, b"a"), None);
    }

    #[test]
    fn checkpoints_write_changes_and_restore_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut t = MemStateTable::new();
        t.put(10, b"a", b"1");
        t.put(20, b"b", b"2");
        t.put(i64::MAX, b"c", b"3");
        let mut w = Writes::default();
        t.checkpoint(b"p/", &mut w);
        store.commit(&w).unwrap();
        // Window 10 fires, b changes: only that is written.
        t.take_window(10);
        t.put(20, b"b", b"22");
        let mut w = Writes::default();
        t.checkpoint(b"p/", &mut w);
        assert_eq!(w.len(), 2);
        store.commit(&w).unwrap();
        let mut back = MemStateTable::new();
        back.restore(&store, b"p/").unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back.get(20, b"b"), Some(&b"22"[..]));
        assert_eq!(back.get(i64::MAX, b"c"), Some(&b"3"[..]));
        assert_eq!(back.get(10, b"a"), None);
    }
}
