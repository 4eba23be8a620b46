//! A state table: the keyed state of one operator, grouped by window so that
//! a fired window is removed in one step.
//!
//! Keys and values are bytes (Arrow's row format, see the operators). This
//! is the in-memory table; the RocksDB-backed one with a bounded cache comes
//! with checkpoints (issue 3) behind the same operations.

use std::collections::{BTreeMap, HashMap};

/// Rows are grouped by this: a window's end, or `i64::MAX` for state that
/// never expires.
pub type WindowId = i64;

/// The rows of one window: encoded key -> encoded value.
pub type WindowRows = HashMap<Box<[u8]>, Box<[u8]>, foldhash::fast::RandomState>;

#[derive(Default)]
pub struct MemStateTable {
    windows: BTreeMap<WindowId, WindowRows>,
    rows: usize,
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
        rows
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
}
