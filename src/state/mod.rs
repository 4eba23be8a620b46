//! Durable state: one RocksDB under `--data-dir`, and the in-memory contents
//! of views.
//!
//! The column family `meta` holds the catalog (the statements that created
//! each source and view) and the data format version. Checkpointed operator
//! state and view contents come with exactly-once checkpoints (issue 3); the
//! layout is ready for them: one column family per state table, and every
//! checkpoint one atomic write batch.
//!
//! Only this module names `rocksdb`.

pub mod table;
pub mod view;

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

const META_CF: &str = "meta";
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
        let cfs = vec![rocksdb::ColumnFamilyDescriptor::new(
            META_CF,
            rocksdb::Options::default(),
        )];
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
