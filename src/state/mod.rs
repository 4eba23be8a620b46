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
pub mod index;
pub mod reference;
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

/// The most the write-ahead logs may hold before the oldest is freed by
/// flushing (see `Store::open`).
const MAX_WAL_BYTES: u64 = 64 << 20;

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
        opts.set_db_write_buffer_size(96 << 20);
        // A write-ahead log file can only go once every column family has
        // flushed what it holds of it. The catalog's family is written
        // rarely, so its memtable would pin every log file since its last
        // write (the logs grew to gigabytes): past this size RocksDB
        // flushes the families that hold the oldest log, so the logs stay
        // about this large whatever the write rate.
        opts.set_max_total_wal_size(MAX_WAL_BYTES);
        // State lookups mostly miss (a group seen for the first time, state
        // beyond the cache): a bloom filter answers those without reading
        // the files.
        let mut table = rocksdb::BlockBasedOptions::default();
        table.set_bloom_filter(10.0, false);
        let mut state = rocksdb::Options::default();
        state.set_block_based_table_factory(&table);
        // Memtables hold a checkpoint's writes until they are flushed: cap
        // them, so that memory is bounded by the state cache, not by them.
        state.set_write_buffer_size(32 << 20);
        // Fresh data (flushes, the first compactions) is written
        // uncompressed: checkpoints cost less CPU; older levels, where most
        // bytes end up, are compressed.
        use rocksdb::DBCompressionType::{Lz4, None as Plain};
        state.set_compression_per_level(&[Plain, Plain, Lz4, Lz4, Lz4, Lz4, Lz4]);
        let cfs = vec![
            rocksdb::ColumnFamilyDescriptor::new(META_CF, rocksdb::Options::default()),
            rocksdb::ColumnFamilyDescriptor::new(STATE_CF, state),
        ];
        let db = rocksdb::DB::open_cf_descriptors(&opts, &path, cfs).map_err(|e| {
            Error::external(format!(
                "could not open the data directory \"{}\": {}",
                dir.display(),
                reason(&e)
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

    /// Stops RocksDB's background work (flushes, compactions) and waits for
    /// it, before the process exits: its threads must not outlive the
    /// library's static objects, which the exit destroys. Everything
    /// committed is already durable (each commit is synced).
    pub fn shut_down(&self) {
        self.db.cancel_all_background_work(true);
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
        self.db.get_cf(self.meta(), key).map_err(|e| {
            Error::external(format!(
                "could not read \"{key}\" from the store: {}",
                reason(&e)
            ))
        })
    }

    /// Writes a key durably (the write-ahead log is synced).
    pub fn put_meta(&self, key: &str, value: &[u8]) -> Result<()> {
        let mut opts = rocksdb::WriteOptions::default();
        opts.set_sync(true);
        self.db
            .put_cf_opt(self.meta(), key, value, &opts)
            .map_err(|e| {
                Error::external(format!(
                    "could not write \"{key}\" to the store: {}",
                    reason(&e)
                ))
            })
    }

    pub fn delete_meta(&self, key: &str) -> Result<()> {
        let mut opts = rocksdb::WriteOptions::default();
        opts.set_sync(true);
        self.db.delete_cf_opt(self.meta(), key, &opts).map_err(|e| {
            Error::external(format!(
                "could not delete \"{key}\" from the store: {}",
                reason(&e)
            ))
        })
    }

    fn state(&self) -> &rocksdb::ColumnFamily {
        self.db
            .cf_handle(STATE_CF)
            .expect("the state column family is created at open")
    }

    /// Writes a set of changes to state atomically and durably: all of them
    /// or, after a crash at any moment, none. Each buffer of `writes` is let
    /// go once copied, so the changes are not held twice.
    pub fn commit(&self, writes: Writes) -> Result<()> {
        let cf = self.state();
        // Each record adds a tag, a column family and two lengths.
        let mut batch =
            rocksdb::WriteBatch::with_capacity_bytes(writes.bytes() + 16 * writes.len() + 12);
        for chunk in writes.chunks {
            for (kind, key, value) in chunk.iter() {
                match kind {
                    OpKind::Put => batch.put_cf(cf, key, value),
                    OpKind::Delete => batch.delete_cf(cf, key),
                    OpKind::DeleteRange => batch.delete_range_cf(cf, key, value),
                }
            }
        }
        let mut opts = rocksdb::WriteOptions::default();
        opts.set_sync(true);
        self.db
            .write_opt(batch, &opts)
            .map_err(|e| Error::external(format!("could not commit a checkpoint: {}", reason(&e))))
    }

    /// Replaces every state key under `to` with a copy of those under
    /// `from` (read from one snapshot), atomically and without holding the
    /// copy in memory: the copy is written to a table file, which RocksDB
    /// takes in whole or not at all. The file's range delete of `to` does
    /// not delete the file's own rows.
    pub fn copy_prefix(&self, from: &[u8], to: &[u8]) -> Result<()> {
        let failed = |what: &str, e: rocksdb::Error| {
            Error::external(format!(
                "could not copy saved state ({what}): {}",
                reason(&e)
            ))
        };
        let file = self.path.with_file_name("copy.sst");
        let _ = std::fs::remove_file(&file);
        let opts = rocksdb::Options::default();
        let mut writer = rocksdb::SstFileWriter::create(&opts);
        writer
            .open(&file)
            .map_err(|e| failed("creating a table file", e))?;
        let mut end = to.to_vec();
        end.push(0xff);
        writer
            .delete_range(to, &end)
            .map_err(|e| failed("writing a table file", e))?;
        let mut key = to.to_vec();
        self.scan_state(from, |k, v| {
            key.truncate(to.len());
            key.extend_from_slice(&k[from.len()..]);
            writer
                .put(&key, v)
                .map_err(|e| failed("writing a table file", e))
        })?;
        writer
            .finish()
            .map_err(|e| failed("writing a table file", e))?;
        let mut ingest = rocksdb::IngestExternalFileOptions::default();
        ingest.set_move_files(true);
        let result = self
            .db
            .ingest_external_file_cf_opts(self.state(), &ingest, vec![&file])
            .map_err(|e| failed("taking in the table file", e));
        let _ = std::fs::remove_file(&file);
        result
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
        f: impl FnMut(&[u8], &[u8]) -> Result<bool>,
    ) -> Result<()> {
        self.scan_state_from(prefix, prefix, f)
    }

    /// Like [`scan_state_while`](Self::scan_state_while), from the key
    /// `from` on.
    pub fn scan_state_from(
        &self,
        prefix: &[u8],
        from: &[u8],
        mut f: impl FnMut(&[u8], &[u8]) -> Result<bool>,
    ) -> Result<()> {
        let snapshot = self.db.snapshot();
        let mode = rocksdb::IteratorMode::From(from, rocksdb::Direction::Forward);
        for item in snapshot.iterator_cf(self.state(), mode) {
            let (k, v) = item.map_err(|e| {
                Error::external(format!("could not read saved state: {}", reason(&e)))
            })?;
            if !k.starts_with(prefix) || !f(&k, &v)? {
                break;
            }
        }
        Ok(())
    }

    /// Like [`scan_state`](Self::scan_state) over several prefixes, all as
    /// of one moment: `f(i, key, value)` for the keys under `prefixes[i]`.
    pub fn scan_states(
        &self,
        prefixes: &[&[u8]],
        mut f: impl FnMut(usize, &[u8], &[u8]) -> Result<()>,
    ) -> Result<()> {
        let snapshot = self.db.snapshot();
        for (i, prefix) in prefixes.iter().enumerate() {
            let mode = rocksdb::IteratorMode::From(prefix, rocksdb::Direction::Forward);
            for item in snapshot.iterator_cf(self.state(), mode) {
                let (k, v) = item.map_err(|e| {
                    Error::external(format!("could not read saved state: {}", reason(&e)))
                })?;
                if !k.starts_with(prefix) {
                    break;
                }
                f(i, &k, &v)?;
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
            .map(|r| {
                r.map_err(|e| {
                    Error::external(format!("could not read saved state: {}", reason(&e)))
                })
            })
            .collect()
    }

    /// The first state key at or after `from`, if any.
    pub fn next_state_key(&self, from: &[u8]) -> Result<Option<Vec<u8>>> {
        let mode = rocksdb::IteratorMode::From(from, rocksdb::Direction::Forward);
        match self.db.iterator_cf(self.state(), mode).next() {
            None => Ok(None),
            Some(item) => item.map(|(k, _)| Some(k.into_vec())).map_err(|e| {
                Error::external(format!("could not read saved state: {}", reason(&e)))
            }),
        }
    }

    /// Every (key, value) whose key starts with `prefix`, in key order.
    pub fn scan_meta(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>> {
        let mut out = Vec::new();
        for item in self.db.prefix_iterator_cf(self.meta(), prefix) {
            let (k, v) = item.map_err(|e| {
                Error::external(format!("could not scan the store: {}", reason(&e)))
            })?;
            if !k.starts_with(prefix.as_bytes()) {
                break;
            }
            out.push((String::from_utf8_lossy(&k).into_owned(), v.into_vec()));
        }
        Ok(out)
    }
}

/// A RocksDB error in Postgres style: `io error: No space left on device:
/// While appending to file: ...` becomes `no space left on device: while
/// appending to file: ...` (the kind of error dropped where the reason says
/// it, each part lowercase, paths as they are).
fn reason(e: &rocksdb::Error) -> String {
    let text = e.as_ref();
    let text = text.strip_prefix("IO error: ").unwrap_or(text);
    text.split(": ")
        .map(crate::error::postgres_style)
        .collect::<Vec<_>>()
        .join(": ")
}

/// Changes to the `state` column family, committed together by
/// [`Store::commit`]. Operators fill them at a checkpoint barrier; the
/// checkpoint coordinator gathers those of a whole job into one.
///
/// Keys and values are copied into large buffers, so a change costs no
/// allocation of its own, and gathering moves buffers rather than copying
/// them. RocksDB inserts changes fastest in key order: operators write
/// theirs sorted.
#[derive(Debug, Default)]
pub struct Writes {
    /// Filled one after the other; only the last one grows.
    chunks: Vec<Chunk>,
    bytes: usize,
    len: usize,
}

/// Bytes of keys and values per chunk (a larger change gets a chunk of its
/// own size).
const CHUNK_BYTES: usize = 1 << 20;

#[derive(Debug, Default)]
struct Chunk {
    data: Vec<u8>,
    ops: Vec<WriteOp>,
}

impl Chunk {
    /// The changes in order: kind, key, value (the range's end for a range
    /// delete).
    fn iter(&self) -> impl Iterator<Item = (OpKind, &[u8], &[u8])> {
        self.ops.iter().map(|op| {
            let at = op.at as usize;
            let key_end = at + op.key_len as usize;
            (
                op.kind,
                &self.data[at..key_end],
                &self.data[key_end..key_end + op.value_len as usize],
            )
        })
    }
}

#[derive(Debug, Clone, Copy)]
enum OpKind {
    Put,
    Delete,
    /// Every key in [key, value).
    DeleteRange,
}

/// A change: its kind, and where its key and value are in its chunk's data
/// (the value follows the key).
#[derive(Debug, Clone, Copy)]
struct WriteOp {
    kind: OpKind,
    at: u32,
    key_len: u32,
    value_len: u32,
}

impl Writes {
    fn push(&mut self, kind: OpKind, key: &[&[u8]], value: &[u8]) {
        let size = key.iter().map(|p| p.len()).sum::<usize>() + value.len();
        let fits = self
            .chunks
            .last()
            .is_some_and(|c| c.data.len() + size <= c.data.capacity());
        if !fits {
            self.chunks.push(Chunk {
                data: Vec::with_capacity(size.max(CHUNK_BYTES)),
                ops: Vec::with_capacity(CHUNK_BYTES / 64),
            });
        }
        let chunk = self.chunks.last_mut().expect("a chunk was just made");
        let at = chunk.data.len();
        for part in key {
            chunk.data.extend_from_slice(part);
        }
        let key_len = chunk.data.len() - at;
        chunk.data.extend_from_slice(value);
        chunk.ops.push(WriteOp {
            kind,
            at: at as u32,
            key_len: key_len as u32,
            value_len: value.len() as u32,
        });
        self.bytes += size;
        self.len += 1;
    }

    pub fn put(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        self.push(OpKind::Put, &[key.as_ref()], value.as_ref());
    }

    /// Puts under the key made of `key_parts` one after the other.
    pub fn put_parts(&mut self, key_parts: &[&[u8]], value: &[u8]) {
        self.push(OpKind::Put, key_parts, value);
    }

    pub fn delete(&mut self, key: impl AsRef<[u8]>) {
        self.push(OpKind::Delete, &[key.as_ref()], &[]);
    }

    /// Deletes the key made of `key_parts`.
    pub fn delete_parts(&mut self, key_parts: &[&[u8]]) {
        self.push(OpKind::Delete, key_parts, &[]);
    }

    /// Deletes every key in [from, to).
    pub fn delete_range(&mut self, from: impl AsRef<[u8]>, to: impl AsRef<[u8]>) {
        self.push(OpKind::DeleteRange, &[from.as_ref()], to.as_ref());
    }

    /// Adds `other`'s changes after these (moving its buffers, not copying
    /// them).
    pub fn append(&mut self, other: Writes) {
        self.bytes += other.bytes;
        self.len += other.len;
        self.chunks.extend(other.chunks);
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
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
            w.put(k, b"v");
        }
        s.commit(w).unwrap();
        let mut w = Writes::default();
        w.delete_range(b"a2", b"a4");
        w.delete(b"b1");
        w.put(b"a9", b"w");
        s.commit(w).unwrap();
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
