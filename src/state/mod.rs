//! Durable state: one RocksDB under `--data-dir`, and the in-memory contents
//! of views.
//!
//! The column family `meta` holds the catalog (the statements that created
//! each source and view) and the data format version. The column family
//! `state` holds what checkpoints save (see [`checkpoint`]): every job's
//! operator state, view contents and source positions under the job's key
//! prefix, each epoch written as ONE atomic write batch ([`Writes`]).
//!
//! Only this module names `rocksdb`.

pub mod checkpoint;
pub mod table;
pub mod view;

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

const META_CF: &str = "meta";
const STATE_CF: &str = "state";
const FORMAT_KEY: &str = "format";
/// The on-disk format this build writes. A data dir of another format is
/// refused at start rather than misread.
const FORMAT_VERSION: &str = "sluice-1";

/// The durable store of one server.
pub struct Store {
    db: rocksdb::DB,
    path: PathBuf,
}

impl Store {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Store> {
        std::fs::create_dir_all(dir).map_err(|e| {
            Error::external(format!(
                "could not create data directory \"{}\": {}",
                dir.display(),
                crate::error::postgres_style(&e.to_string())
            ))
        })?;
        let path = dir.join("db");
        let mut opts = rocksdb::Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        let cfs = [META_CF, STATE_CF]
            .into_iter()
            .map(|name| rocksdb::ColumnFamilyDescriptor::new(name, rocksdb::Options::default()))
            .collect::<Vec<_>>();
        let db = rocksdb::DB::open_cf_descriptors(&opts, &path, cfs).map_err(|e| {
            Error::external(format!(
                "could not open the data directory \"{}\": {}",
                dir.display(),
                crate::error::postgres_style(e.as_ref())
            ))
        })?;
        let store = Store { db, path };
        match store.get_meta(FORMAT_KEY)? {
            None => store.put_meta(FORMAT_KEY, FORMAT_VERSION.as_bytes())?,
            Some(v) if v == FORMAT_VERSION.as_bytes() => {}
            Some(v) => {
                return Err(Error::external(format!(
                    "the data directory \"{}\" holds data of format \"{}\", but this Sluice reads \"{FORMAT_VERSION}\"",
                    dir.display(),
                    String::from_utf8_lossy(&v)
                )))
            }
        }
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn meta(&self) -> &rocksdb::ColumnFamily {
        self.db
            .cf_handle(META_CF)
            .expect("the meta column family is created at open")
    }

    pub fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.db
            .get_cf(self.meta(), key)
            .map_err(|e| Error::external(format!("could not read \"{key}\" from the store: {e}")))
    }

    /// Writes a key durably (the write-ahead log is synced).
    pub fn put_meta(&self, key: &str, value: &[u8]) -> Result<()> {
        let mut opts = rocksdb::WriteOptions::default();
        opts.set_sync(true);
        self.db
            .put_cf_opt(self.meta(), key, value, &opts)
            .map_err(|e| Error::external(format!("could not write \"{key}\" to the store: {e}")))
    }

    pub fn delete_meta(&self, key: &str) -> Result<()> {
        let mut opts = rocksdb::WriteOptions::default();
        opts.set_sync(true);
        self.db
            .delete_cf_opt(self.meta(), key, &opts)
            .map_err(|e| Error::external(format!("could not delete \"{key}\" from the store: {e}")))
    }

    fn state(&self) -> &rocksdb::ColumnFamily {
        self.db
            .cf_handle(STATE_CF)
            .expect("the state column family is created at open")
    }

    /// Writes a set of changes to state atomically and durably: all of them
    /// or, after a crash at any moment, none.
    pub fn commit(&self, writes: &Writes) -> Result<()> {
        let cf = self.state();
        let mut batch = rocksdb::WriteBatch::default();
        for op in &writes.ops {
            match op {
                WriteOp::Put(k, v) => batch.put_cf(cf, k, v),
                WriteOp::Delete(k) => batch.delete_cf(cf, k),
                WriteOp::DeleteRange(from, to) => batch.delete_range_cf(cf, from, to),
            }
        }
        let mut opts = rocksdb::WriteOptions::default();
        opts.set_sync(true);
        self.db
            .write_opt(batch, &opts)
            .map_err(|e| Error::external(format!("could not commit a checkpoint: {e}")))
    }

    /// Calls `f` on every state (key, value) whose key starts with `prefix`,
    /// in key order, as of one moment: commits made meanwhile are not seen,
    /// so what is read belongs to one committed epoch.
    pub fn scan_state(
        &self,
        prefix: &[u8],
        mut f: impl FnMut(&[u8], &[u8]) -> Result<()>,
    ) -> Result<()> {
        self.scan_state_while(prefix, |k, v| f(k, v).map(|()| true))
    }

    /// Like [`scan_state`](Self::scan_state), until `f` returns false.
    pub fn scan_state_while(
        &self,
        prefix: &[u8],
        mut f: impl FnMut(&[u8], &[u8]) -> Result<bool>,
    ) -> Result<()> {
        let snapshot = self.db.snapshot();
        let mode = rocksdb::IteratorMode::From(prefix, rocksdb::Direction::Forward);
        for item in snapshot.iterator_cf(self.state(), mode) {
            let (k, v) =
                item.map_err(|e| Error::external(format!("could not read saved state: {e}")))?;
            if !k.starts_with(prefix) || !f(&k, &v)? {
                break;
            }
        }
        Ok(())
    }

    /// The values of these state keys (None where absent), in one call.
    pub fn get_states<'a>(
        &self,
        keys: impl Iterator<Item = &'a [u8]>,
    ) -> Result<Vec<Option<Vec<u8>>>> {
        let cf = self.state();
        self.db
            .multi_get_cf(keys.map(|k| (cf, k)))
            .into_iter()
            .map(|r| r.map_err(|e| Error::external(format!("could not read saved state: {e}"))))
            .collect()
    }

    /// The first state key at or after `from`, if any.
    pub fn next_state_key(&self, from: &[u8]) -> Result<Option<Vec<u8>>> {
        let mode = rocksdb::IteratorMode::From(from, rocksdb::Direction::Forward);
        match self.db.iterator_cf(self.state(), mode).next() {
            None => Ok(None),
            Some(item) => item
                .map(|(k, _)| Some(k.into_vec()))
                .map_err(|e| Error::external(format!("could not read saved state: {e}"))),
        }
    }

    /// Every (key, value) whose key starts with `prefix`, in key order.
    pub fn scan_meta(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>> {
        let mut out = Vec::new();
        for item in self.db.prefix_iterator_cf(self.meta(), prefix) {
            let (k, v) =
                item.map_err(|e| Error::external(format!("could not scan the store: {e}")))?;
            if !k.starts_with(prefix.as_bytes()) {
                break;
            }
            out.push((String::from_utf8_lossy(&k).into_owned(), v.into_vec()));
        }
        Ok(out)
    }
}

/// Changes to the `state` column family, committed together by
/// [`Store::commit`]. Operators fill them at a checkpoint barrier; the
/// checkpoint coordinator gathers those of a whole job into one.
#[derive(Debug, Default)]
pub struct Writes {
    ops: Vec<WriteOp>,
    bytes: usize,
}

#[derive(Debug)]
enum WriteOp {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    /// Every key in [from, to).
    DeleteRange(Vec<u8>, Vec<u8>),
}

impl Writes {
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.bytes += key.len() + value.len();
        self.ops.push(WriteOp::Put(key, value));
    }

    pub fn delete(&mut self, key: Vec<u8>) {
        self.bytes += key.len();
        self.ops.push(WriteOp::Delete(key));
    }

    /// Deletes every key in [from, to).
    pub fn delete_range(&mut self, from: Vec<u8>, to: Vec<u8>) {
        self.bytes += from.len() + to.len();
        self.ops.push(WriteOp::DeleteRange(from, to));
    }

    /// Adds `other`'s changes after these.
    pub fn append(&mut self, other: Writes) {
        self.bytes += other.bytes;
        self.ops.extend(other.ops);
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The size of the keys and values written.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_survives_reopen_and_scans_by_prefix() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path()).unwrap();
            s.put_meta("catalog/2", b"b").unwrap();
            s.put_meta("catalog/1", b"a").unwrap();
            s.put_meta("other", b"x").unwrap();
        }
        let s = Store::open(dir.path()).unwrap();
        let all = s.scan_meta("catalog/").unwrap();
        assert_eq!(
            all,
            vec![
                ("catalog/1".into(), b"a".to_vec()),
                ("catalog/2".into(), b"b".to_vec())
            ]
        );
        s.delete_meta("catalog/1").unwrap();
        assert_eq!(s.scan_meta("catalog/").unwrap().len(), 1);
    }

    #[test]
    fn writes_commit_together_and_ranges_delete() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let mut w = Writes::default();
        for k in [b"a1", b"a2", b"a3", b"b1"] {
            w.put(k.to_vec(), b"v".to_vec());
        }
        s.commit(&w).unwrap();
        let mut w = Writes::default();
        w.delete_range(b"a2".to_vec(), b"a4".to_vec());
        w.delete(b"b1".to_vec());
        w.put(b"a9".to_vec(), b"w".to_vec());
        s.commit(&w).unwrap();
        let mut seen = Vec::new();
        s.scan_state(b"a", |k, v| {
            seen.push((k.to_vec(), v.to_vec()));
            Ok(())
        })
        .unwrap();
        assert_eq!(
            seen,
            vec![
                (b"a1".to_vec(), b"v".to_vec()),
                (b"a9".to_vec(), b"w".to_vec())
            ]
        );
        assert_eq!(s.next_state_key(b"b").unwrap(), None);
    }

    #[test]
    fn a_data_dir_of_another_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path()).unwrap();
            s.put_meta(FORMAT_KEY, b"sluice-999").unwrap();
        }
        let err = Store::open(dir.path()).err().expect("must fail");
        assert!(err.to_string().contains("sluice-999"), "{err}");
    }
}
