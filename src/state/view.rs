//! The contents of a materialized view: what `SELECT` reads.
//!
//! A view is split into shards, one per instance of the job's last operator,
//! so writers never contend; readers take a snapshot of every shard.
//!
//! - Keyed views (aggregations whose rows change) hold one row per key (the group key, encoded
//!   as an Arrow row). Upserts append the new rows as a segment and point the
//!   key at them; the rows they replace become dead and are compacted away
//!   once they outnumber the live ones, so an update costs O(changed rows).
//! - Append-only views (filters, projections, final window rows) keep the
//!   batches as written, numbered: a log, which a view over the view reads
//!   once committed ([`ViewLog`]).
//!
//! Each shard remembers what changed since the last checkpoint, and
//! [`ViewStore::checkpoint`] writes just that into the epoch's write batch:
//! the rows of changed keys (encoded in Arrow's row format) or the batches
//! appended. With a store, a shard keeps in memory at most its cache size of
//! rows the store has committed (as the state tables do, see `table.rs`);
//! the others are read from the store when the view is queried.

use std::collections::VecDeque;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::compute::interleave_record_batch;
use arrow::datatypes::SchemaRef;
use arrow::row::{RowConverter, SortField};
use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::state::checkpoint::JobKeys;
use crate::state::index::{hash_key, KeyIndex, KeyLog, Saved};
use crate::state::{Store, Writes};

/// Rows decoded from the store per batch when a query reads them.
const READ_BATCH_ROWS: usize = 8192;
/// How many entries of a keyed shard's changes are kept (checkpoints that
/// changed rows: about an hour at the default interval). A sink that falls
/// further behind fails, naming why.
pub const CHANGES_KEPT: u64 = 3600;
/// The length that marks a deleted key in a changes entry.
const DELETED: u32 = u32::MAX;
/// What an index entry costs in memory besides its key: the entry (40
/// bytes at the hash table's usual load), the rounding of the key's
/// allocation, and its share of the change log.
const INDEX_OVERHEAD: usize = 88;

pub struct ViewStore {
    schema: SchemaRef,
    shards: Vec<Mutex<Shard>>,
    /// Whether its shards are keyed (else append-only), as made.
    keyed: bool,
    /// Encodes rows for checkpoints.
    codec: Arc<RowConverter>,
    durable: Option<Durable>,
    /// What becomes of the rows written (kept, unless the view is a
    /// sink's that discards or prints them).
    rows: Rows,
}

/// What a view does with the rows its job writes.
pub enum Rows {
    /// Keeps them: what `SELECT` reads, sinks write and views over it read.
    Kept,
    /// Lets them go: the view of a `blackhole` sink.
    Discarded,
    /// Prints them to the log and lets them go: the view of a `print` sink.
    Printed(crate::connector::print::Printer),
}

/// Where a view's checkpoints go, and how much of what they saved each
/// shard keeps in memory.
pub struct Durable {
    pub store: Arc<Store>,
    pub keys: JobKeys,
    pub cache_bytes: usize,
}

enum Shard {
    Append(AppendShard),
    Keyed(KeyedShard),
}

#[derive(Default)]
struct AppendShard {
    /// The batches in memory: sequence numbers `first..`.
    batches: VecDeque<RecordBatch>,
    first: usize,
    /// Batches below this sequence number were written by a checkpoint...
    saved: usize,
    /// ...and below this one, committed.
    committed: usize,
    bytes: usize,
}

/// The segment of a deleted key: its entry stays (as a tombstone) until the
/// store's delete is committed, so that a query does not read the row back
/// from the store meanwhile.
const TOMBSTONE: u32 = u32::MAX;

/// Where a key's live row is: a row of a segment.
#[derive(Debug, Clone, Copy)]
struct Slot {
    segment: u32,
    row: u32,
}

impl Slot {
    fn is_live(&self) -> bool {
        self.segment != TOMBSTONE
    }
}

#[derive(Default)]
struct KeyedShard {
    segments: Vec<RecordBatch>,
    /// Every key in memory (live, or deleted and not yet committed so).
    index: KeyIndex<Slot>,
    /// Rows of the segments that no key points at any more.
    dead: usize,
    /// Entries of deleted keys.
    tombstones: usize,
    /// Keys changed since the last checkpoint (each once: when it becomes
    /// dirty).
    changed: KeyLog,
    /// Keys the last checkpoint wrote (committed when the next comes).
    in_flight: KeyLog,
    /// Some rows are only in the store.
    spilled: bool,
    /// Memory of the segments.
    segment_bytes: usize,
    /// The sequence number of its next changes entry.
    change_seq: u64,
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
    pub fn new(
        schema: SchemaRef,
        shards: usize,
        keyed: bool,
        durable: Option<Durable>,
    ) -> Result<Self> {
        let codec = Arc::new(row_codec(&schema)?);
        let shards = (0..shards.max(1))
            .map(|_| {
                Mutex::new(if keyed {
                    Shard::Keyed(KeyedShard::default())
                } else {
                    Shard::Append(AppendShard::default())
                })
            })
            .collect();
        Ok(ViewStore {
            schema,
            shards,
            keyed,
            codec,
            durable,
            rows: Rows::Kept,
        })
    }

    /// The same view, doing `rows` with the rows written.
    pub fn with_rows(self, rows: Rows) -> Self {
        ViewStore { rows, ..self }
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
        match &self.rows {
            Rows::Kept => {}
            Rows::Discarded => return,
            Rows::Printed(printer) => return printer.inserts(&batch),
        }
        match &mut *self.shards[shard].lock() {
            Shard::Append(s) => {
                s.bytes += batch.get_array_memory_size();
                s.batches.push_back(batch);
            }
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
        match &self.rows {
            Rows::Kept => {}
            Rows::Discarded => return Ok(()),
            Rows::Printed(printer) => {
                printer.deletes(deleted)?;
                printer.updates(&batch);
                return Ok(());
            }
        }
        let mut guard = self.shards[shard].lock();
        let Shard::Keyed(s) = &mut *guard else {
            unreachable!("upsert into an append-only view is a planner bug")
        };
        for key in deleted {
            s.delete(key);
        }
        if batch.num_rows() > 0 {
            let segment = s.segments.len() as u32;
            for (row, key) in keys.iter().enumerate() {
                s.set(key, segment, row as u32);
            }
            s.segment_bytes += batch.get_array_memory_size();
            s.segments.push(batch);
        }
        if s.dead > s.live().max(1024) {
            s.compact(&self.schema)?;
        }
        Ok(())
    }

    /// What a query reads, one [`ShardScan`] per shard: the rows in memory
    /// now, and a reader of those only in the store. Memory stays bounded
    /// however large the view: the stored rows are read batch by batch as
    /// the query asks for them.
    pub fn scan(&self) -> Result<Vec<ShardScan>> {
        let mut out = Vec::with_capacity(self.shards.len());
        for (shard, cell) in self.shards.iter().enumerate() {
            let mut guard = cell.lock();
            let scan = match &mut *guard {
                Shard::Append(s) => ShardScan {
                    batches: s.batches.iter().cloned().collect(),
                    stored: match (&self.durable, s.first) {
                        (Some(d), first) if first > 0 => Some(self.stored(
                            d,
                            d.keys.view_batches(shard),
                            Stored::Batches {
                                below: first as u64,
                            },
                        )),
                        _ => None,
                    },
                },
                Shard::Keyed(s) => {
                    if s.dead > 0 {
                        s.compact(&self.schema)?;
                    }
                    let stored = match (&self.durable, s.spilled) {
                        (Some(d), true) => {
                            // Memory has the newer row of these keys, or
                            // they were deleted since.
                            let mut skip: Vec<Box<[u8]>> =
                                s.index.iter().map(|e| e.key.clone()).collect();
                            skip.sort_unstable();
                            let skip = Arc::new(skip);
                            Some(self.stored(d, d.keys.view_rows(shard), Stored::Rows { skip }))
                        }
                        _ => None,
                    };
                    ShardScan {
                        batches: s.segments.clone(),
                        stored,
                    }
                }
            };
            out.push(scan);
        }
        Ok(out)
    }

    fn stored(&self, d: &Durable, prefix: Vec<u8>, kind: Stored) -> StoredRows {
        StoredRows {
            store: d.store.clone(),
            prefix,
            kind,
            codec: self.codec.clone(),
            schema: self.schema.clone(),
        }
    }

    /// Every current row, one list of batches per shard (read at once: for
    /// tests and small views).
    pub fn snapshot(&self) -> Result<Vec<Vec<RecordBatch>>> {
        self.scan()?
            .into_iter()
            .map(|scan| {
                let mut batches = Vec::new();
                if let Some(stored) = &scan.stored {
                    let mut cursor = stored.cursor();
                    while let Some(batch) = cursor.next_batch()? {
                        batches.push(batch);
                    }
                }
                batches.extend(scan.batches);
                Ok(batches)
            })
            .collect()
    }

    /// Whether rows are kept by key (else the view is an append-only log).
    pub fn is_keyed(&self) -> bool {
        self.keyed
    }

    /// Writes what changed in a shard since the last checkpoint, and the
    /// shard's watermark (every row it will get from now on is later, but
    /// for late rows), then lets go of committed rows beyond the cache size.
    pub fn checkpoint(&self, shard: usize, watermark: i64, writes: &mut Writes) -> Result<()> {
        let Some(d) = &self.durable else {
            return Ok(());
        };
        let keys = &d.keys;
        writes.put(keys.view_watermark(shard), watermark.to_be_bytes());
        let mut guard = self.shards[shard].lock();
        match &mut *guard {
            Shard::Append(s) => {
                // The previous checkpoint is committed now.
                s.committed = s.saved;
                let end = s.first + s.batches.len();
                for seq in s.saved..end {
                    let value = encode_batch(&self.codec, &s.batches[seq - s.first])?;
                    writes.put(keys.view_batch(shard, seq as u64), value);
                }
                s.saved = end;
                s.evict(d.cache_bytes);
            }
            Shard::Keyed(s) => {
                s.committed();
                s.write_changes(&self.codec, keys, shard, writes)?;
                s.evict(&self.schema, d.cache_bytes)?;
            }
        }
        Ok(())
    }

    /// Opens the contents saved by [`checkpoint`](Self::checkpoint): keyed
    /// rows are read into memory up to the cache size, the rest (and the
    /// batches of append-only views) are read when queried.
    pub fn restore(&self) -> Result<()> {
        let Some(d) = &self.durable else {
            return Ok(());
        };
        let parser = self.codec.parser();
        for (shard, cell) in self.shards.iter().enumerate() {
            let mut guard = cell.lock();
            match &mut *guard {
                Shard::Append(s) => {
                    let mut count = 0;
                    d.store.scan_state(&d.keys.view_batches(shard), |_, _| {
                        count += 1;
                        Ok(())
                    })?;
                    (s.first, s.saved, s.committed) = (count, count, count);
                }
                Shard::Keyed(s) => {
                    s.change_seq =
                        read_u64(&d.store, &d.keys.view_change_next(shard))?.unwrap_or(0);
                    let prefix = d.keys.view_rows(shard);
                    let mut entries: Vec<SavedRow> = Vec::new();
                    let mut bytes = 0;
                    let mut spilled = false;
                    // Rows beyond the cache stay in the store, unread.
                    d.store.scan_state_while(&prefix, |k, v| {
                        if bytes > d.cache_bytes {
                            spilled = true;
                            return Ok(false);
                        }
                        let key = &k[prefix.len()..];
                        bytes += key.len() + v.len() + INDEX_OVERHEAD;
                        entries.push((Box::from(key), Box::from(v)));
                        Ok(true)
                    })?;
                    s.spilled = spilled;
                    if entries.is_empty() {
                        continue;
                    }
                    let columns = self
                        .codec
                        .convert_rows(entries.iter().map(|(_, v)| parser.parse(v)))?;
                    let batch = RecordBatch::try_new(self.schema.clone(), columns)?;
                    s.segment_bytes = batch.get_array_memory_size();
                    s.segments = vec![batch];
                    for (row, (key, _)) in entries.into_iter().enumerate() {
                        let slot = Slot {
                            segment: 0,
                            row: row as u32,
                        };
                        s.index
                            .insert_new(hash_key(&key), key, slot, Saved::Committed);
                    }
                }
            }
        }
        Ok(())
    }

    /// The memory a shard's rows take, as a share of its cache (0 without
    /// a store).
    pub fn cache_use(&self, shard: usize) -> f64 {
        let Some(d) = &self.durable else {
            return 0.0;
        };
        let bytes = match &*self.shards[shard].lock() {
            Shard::Keyed(k) => k.bytes(),
            Shard::Append(a) => a.bytes,
        };
        bytes as f64 / d.cache_bytes.max(1) as f64
    }

    /// The shard's last checkpoint is committed: the rows it wrote may
    /// leave memory (and some do, if the shard holds more than its cache).
    pub fn committed(&self, shard: usize) -> Result<()> {
        let Some(d) = &self.durable else {
            return Ok(());
        };
        match &mut *self.shards[shard].lock() {
            Shard::Append(s) => {
                s.committed = s.saved;
                s.evict(d.cache_bytes);
            }
            Shard::Keyed(s) => {
                s.committed();
                s.evict(&self.schema, d.cache_bytes)?;
            }
        }
        Ok(())
    }

    /// Rows in memory.
    pub fn rows_in_memory(&self) -> usize {
        self.shards
            .iter()
            .map(|s| match &*s.lock() {
                Shard::Append(a) => a.batches.iter().map(|b| b.num_rows()).sum(),
                Shard::Keyed(k) => k.live(),
            })
            .sum()
    }
}

/// The committed log of an append-only view, as a view over it reads it:
/// each shard's batches in order (by sequence number), and the watermark the
/// shard had at the last committed checkpoint. What it reads was committed
/// together, so a reader never sees rows a crash could take back.
pub struct ViewLog {
    store: Arc<Store>,
    keys: JobKeys,
    schema: SchemaRef,
    codec: RowConverter,
}

impl ViewLog {
    /// Batches a reader takes from one shard at a time, so that no shard
    /// waits behind another's backlog.
    pub const BATCHES_PER_TURN: usize = 16;

    pub fn new(store: Arc<Store>, keys: JobKeys, schema: SchemaRef) -> Result<Self> {
        Ok(ViewLog {
            codec: row_codec(&schema)?,
            store,
            keys,
            schema,
        })
    }

    /// The shard's watermark as of the last committed checkpoint (None
    /// before its first).
    pub fn watermark(&self, shard: usize) -> Result<Option<i64>> {
        let key = self.keys.view_watermark(shard);
        let value = self.store.get_states(std::iter::once(key.as_slice()))?;
        match value.into_iter().next().flatten() {
            None => Ok(None),
            Some(v) => {
                let raw: [u8; 8] = v
                    .as_slice()
                    .try_into()
                    .map_err(|_| Error::internal("a saved view watermark is corrupt"))?;
                Ok(Some(i64::from_be_bytes(raw)))
            }
        }
    }

    /// One turn over every shard: calls `f(shard, seq, batch)` on each shard's
    /// next committed batches (up to [`Self::BATCHES_PER_TURN`]), from
    /// `next[shard]` on, moving `next[shard]` past each batch `f` took.
    /// Returns whether there were any.
    pub fn read_turn(
        &self,
        next: &mut [u64],
        mut f: impl FnMut(usize, u64, RecordBatch) -> Result<()>,
    ) -> Result<bool> {
        let mut any = false;
        for (shard, next) in next.iter_mut().enumerate() {
            let mut batches = Vec::new();
            self.read(shard, *next, Self::BATCHES_PER_TURN, |seq, batch| {
                batches.push((seq, batch));
                Ok(())
            })?;
            for (seq, batch) in batches {
                f(shard, seq, batch)?;
                *next = seq + 1;
                any = true;
            }
        }
        Ok(any)
    }

    /// The sequence number after the shard's last committed batch, going
    /// from `from` over at most `max` batches, without decoding them.
    pub fn end(&self, shard: usize, from: u64, max: usize) -> Result<u64> {
        let prefix = self.keys.view_batches(shard);
        let start = self.keys.view_batch(shard, from);
        let (mut end, mut seen) = (from, 0);
        self.store.scan_state_from(&prefix, &start, |k, _| {
            end = seq_of(&k[prefix.len()..])? + 1;
            seen += 1;
            Ok(seen < max)
        })?;
        Ok(end)
    }

    /// Calls `f` on the shard's committed batches from sequence number
    /// `from` on, in order, at most `max` of them; returns how many it read.
    pub fn read(
        &self,
        shard: usize,
        from: u64,
        max: usize,
        mut f: impl FnMut(u64, RecordBatch) -> Result<()>,
    ) -> Result<usize> {
        let prefix = self.keys.view_batches(shard);
        let start = self.keys.view_batch(shard, from);
        let mut read = 0;
        self.store.scan_state_from(&prefix, &start, |k, v| {
            let seq = seq_of(&k[prefix.len()..])?;
            f(seq, decode_batch(&self.codec, &self.schema, v)?)?;
            read += 1;
            Ok(read < max)
        })?;
        Ok(read)
    }
}

/// What a query reads of one shard.
#[derive(Clone)]
pub struct ShardScan {
    /// The rows in memory when the scan began.
    pub batches: Vec<RecordBatch>,
    /// The rows only in the store, if some are.
    pub stored: Option<StoredRows>,
}

/// The rows of a shard that are only in the store, read in key order, batch
/// by batch. Rows committed while a query reads are seen or not, but never
/// twice: keys memory had when the scan began are skipped.
#[derive(Clone)]
pub struct StoredRows {
    store: Arc<Store>,
    prefix: Vec<u8>,
    kind: Stored,
    codec: Arc<RowConverter>,
    schema: SchemaRef,
}

#[derive(Clone)]
enum Stored {
    /// Keyed rows, but for these keys (sorted).
    Rows { skip: Arc<Vec<Box<[u8]>>> },
    /// The batches of an append-only view below this sequence number.
    Batches { below: u64 },
}

impl StoredRows {
    /// A cursor at the first row.
    pub fn cursor(&self) -> StoredCursor {
        StoredCursor {
            rows: self.clone(),
            from: self.prefix.clone(),
            skip_at: 0,
            done: false,
        }
    }
}

/// Where a read of stored rows is.
pub struct StoredCursor {
    rows: StoredRows,
    /// The first key not read yet.
    from: Vec<u8>,
    skip_at: usize,
    done: bool,
}

impl StoredCursor {
    /// The next batch (at most [`READ_BATCH_ROWS`] rows, or one saved
    /// batch of an append-only view), None at the end.
    pub fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        while !self.done {
            let r = &self.rows;
            let prefix = &r.prefix;
            let mut values: Vec<Box<[u8]>> = Vec::new();
            let mut batch = None;
            let mut last: Option<Vec<u8>> = None;
            let skip_at = &mut self.skip_at;
            r.store.scan_state_from(prefix, &self.from, |k, v| {
                last = Some(k.to_vec());
                let key = &k[prefix.len()..];
                match &r.kind {
                    Stored::Rows { skip } => {
                        while skip.get(*skip_at).is_some_and(|s| **s < *key) {
                            *skip_at += 1;
                        }
                        if skip.get(*skip_at).is_none_or(|s| **s != *key) {
                            values.push(Box::from(v));
                        }
                        Ok(values.len() < READ_BATCH_ROWS)
                    }
                    Stored::Batches { below } => {
                        if seq_of(key)? < *below {
                            batch = Some(decode_batch(&r.codec, &r.schema, v)?);
                        }
                        Ok(batch.is_none())
                    }
                }
            })?;
            match last {
                // The smallest key after the last one read.
                Some(mut key) => {
                    key.push(0);
                    self.from = key;
                }
                None => self.done = true,
            }
            if batch.is_some() {
                return Ok(batch);
            }
            if !values.is_empty() {
                let parser = r.codec.parser();
                let columns = r
                    .codec
                    .convert_rows(values.iter().map(|v| parser.parse(v)))?;
                return Ok(Some(RecordBatch::try_new(r.schema.clone(), columns)?));
            }
        }
        Ok(None)
    }
}

/// A batch's sequence number from its key.
/// The u64 under `key`, if there is one.
fn read_u64(store: &Store, key: &[u8]) -> Result<Option<u64>> {
    match store
        .get_states(std::iter::once(key))?
        .into_iter()
        .next()
        .flatten()
    {
        None => Ok(None),
        Some(v) => seq_of(&v).map(Some),
    }
}

/// What a reader of a view's commits (a sink, a subscription) reads.
pub enum Feed {
    /// Rows added: views whose rows never change, read from their log.
    Appends(ViewLog),
    /// Rows set or deleted by key: views whose rows change.
    Changes(ChangeLog),
}

/// A change as saved: a key (encoded), and its new row (encoded) or none.
type Change<B> = (B, Option<B>);

/// Changes of a keyed view: each change is a key, and its new row or none
/// (deleted).
#[derive(Debug)]
pub struct KeyedChanges {
    /// The key columns of each change (the view's group columns).
    pub keys: RecordBatch,
    /// Each change's key as stored (Arrow's row format).
    pub key_bytes: Vec<Box<[u8]>>,
    /// Per change: its row in `rows`, or None if the key was deleted.
    pub rows_at: Vec<Option<usize>>,
    pub rows: RecordBatch,
}

/// The committed changes of a keyed view: per shard, one entry per
/// checkpoint that changed rows (each changed key once, with its new row or
/// deleted), numbered; the last [`CHANGES_KEPT`] are kept. A reader starts
/// from a snapshot of the shard's rows and goes on with the entries after
/// it, both read as of one commit.
pub struct ChangeLog {
    store: Arc<Store>,
    keys: JobKeys,
    schema: SchemaRef,
    codec: RowConverter,
    key_schema: SchemaRef,
    key_codec: RowConverter,
}

impl ChangeLog {
    pub fn new(
        store: Arc<Store>,
        keys: JobKeys,
        schema: SchemaRef,
        key_schema: SchemaRef,
    ) -> Result<Self> {
        Ok(ChangeLog {
            codec: row_codec(&schema)?,
            key_codec: row_codec(&key_schema)?,
            store,
            keys,
            schema,
            key_schema,
        })
    }

    /// The key columns (the view's group columns).
    pub fn key_schema(&self) -> &SchemaRef {
        &self.key_schema
    }

    /// Calls `f` on the shard's committed rows, as changes setting them, in
    /// batches; returns the number of the first changes entry after them.
    pub fn snapshot(
        &self,
        shard: usize,
        mut f: impl FnMut(KeyedChanges) -> Result<()>,
    ) -> Result<u64> {
        let next_key = self.keys.view_change_next(shard);
        let prefix = self.keys.view_rows(shard);
        let mut next = 0;
        let mut entries: Vec<Change<Vec<u8>>> = Vec::new();
        self.store.scan_states(&[&next_key, &prefix], |i, k, v| {
            if i == 0 {
                next = seq_of(v)?;
                return Ok(());
            }
            entries.push((k[prefix.len()..].to_vec(), Some(v.to_vec())));
            if entries.len() >= READ_BATCH_ROWS {
                f(self.decode(&entries)?)?;
                entries.clear();
            }
            Ok(())
        })?;
        if !entries.is_empty() {
            f(self.decode(&entries)?)?;
        }
        Ok(next)
    }

    /// One turn over every shard: calls `f(shard, seq, changes)` on each shard's
    /// next committed entries (up to [`ViewLog::BATCHES_PER_TURN`]) from
    /// `next[shard]` on, moving `next[shard]` past each. Returns whether
    /// there were any. An entry no longer kept is an error.
    pub fn read_turn(
        &self,
        next: &mut [u64],
        mut f: impl FnMut(usize, u64, KeyedChanges) -> Result<()>,
    ) -> Result<bool> {
        let mut any = false;
        for (shard, next) in next.iter_mut().enumerate() {
            for (seq, changes) in self.read(shard, *next, ViewLog::BATCHES_PER_TURN)? {
                f(shard, seq, changes)?;
                *next = seq + 1;
                any = true;
            }
        }
        Ok(any)
    }

    /// The shard's committed entries from number `from` on, at most `max`.
    /// An entry no longer kept is an error.
    pub fn read(&self, shard: usize, from: u64, max: usize) -> Result<Vec<(u64, KeyedChanges)>> {
        let prefix = self.keys.view_changes(shard);
        let mut read: Vec<(u64, KeyedChanges)> = Vec::new();
        self.store
            .scan_state_from(&prefix, &self.keys.view_change(shard, from), |k, v| {
                let seq = seq_of(&k[prefix.len()..])?;
                let want = from + read.len() as u64;
                if seq != want {
                    return Err(Error::external(format!(
                        "the changes this reader needs next (entry {want} of shard {shard}) are no longer kept: it fell more than {CHANGES_KEPT} checkpoints behind"
                    )));
                }
                read.push((seq, self.decode(&parse_changes(v)?)?));
                Ok(read.len() < max)
            })?;
        Ok(read)
    }

    /// Decodes (key, row or None) pairs.
    fn decode<B: AsRef<[u8]>>(&self, entries: &[Change<B>]) -> Result<KeyedChanges> {
        let key_parser = self.key_codec.parser();
        let keys = self
            .key_codec
            .convert_rows(entries.iter().map(|(k, _)| key_parser.parse(k.as_ref())))?;
        let parser = self.codec.parser();
        let rows = self.codec.convert_rows(
            entries
                .iter()
                .filter_map(|(_, r)| r.as_ref())
                .map(|r| parser.parse(r.as_ref())),
        )?;
        let mut at = 0;
        let rows_at = entries
            .iter()
            .map(|(_, r)| {
                r.as_ref().map(|_| {
                    at += 1;
                    at - 1
                })
            })
            .collect();
        Ok(KeyedChanges {
            keys: RecordBatch::try_new(self.key_schema.clone(), keys)?,
            key_bytes: entries.iter().map(|(k, _)| Box::from(k.as_ref())).collect(),
            rows_at,
            rows: RecordBatch::try_new(self.schema.clone(), rows)?,
        })
    }
}

/// The (key, row or None) pairs of a changes entry.
fn parse_changes(bytes: &[u8]) -> Result<Vec<Change<&[u8]>>> {
    let corrupt = || Error::internal("a saved changes entry is corrupt");
    let mut at = 0;
    let take_u32 = |at: &mut usize| -> Result<u32> {
        let raw: [u8; 4] = bytes
            .get(*at..*at + 4)
            .ok_or_else(corrupt)?
            .try_into()
            .expect("4 bytes");
        *at += 4;
        Ok(u32::from_be_bytes(raw))
    };
    let n = take_u32(&mut at)? as usize;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let len = take_u32(&mut at)? as usize;
        let key = bytes.get(at..at + len).ok_or_else(corrupt)?;
        at += len;
        let row = match take_u32(&mut at)? {
            DELETED => None,
            len => {
                let len = len as usize;
                let row = bytes.get(at..at + len).ok_or_else(corrupt)?;
                at += len;
                Some(row)
            }
        };
        out.push((key, row));
    }
    Ok(out)
}

fn seq_of(bytes: &[u8]) -> Result<u64> {
    let raw: [u8; 8] = bytes
        .try_into()
        .map_err(|_| Error::internal("a saved view batch key is corrupt"))?;
    Ok(u64::from_be_bytes(raw))
}

/// The codec of a view's rows in checkpoints.
pub(crate) fn row_codec(schema: &SchemaRef) -> Result<RowConverter> {
    RowConverter::new(
        schema
            .fields()
            .iter()
            .map(|f| SortField::new(f.data_type().clone()))
            .collect(),
    )
    .map_err(|e| Error::not_supported(format!("the view's columns cannot be checkpointed: {e}")))
}

/// A view row as saved: the group key and the encoded row.
type SavedRow = (Box<[u8]>, Box<[u8]>);

/// A batch as a count and length-prefixed rows (Arrow's row format).
pub(crate) fn encode_batch(codec: &RowConverter, batch: &RecordBatch) -> Result<Vec<u8>> {
    let rows = codec.convert_columns(batch.columns())?;
    let mut out = Vec::with_capacity(rows.size() + 4 * batch.num_rows() + 4);
    out.extend_from_slice(&(rows.num_rows() as u32).to_be_bytes());
    for row in rows.iter() {
        let bytes = row.as_ref();
        out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        out.extend_from_slice(bytes);
    }
    Ok(out)
}

pub(crate) fn decode_batch(
    codec: &RowConverter,
    schema: &SchemaRef,
    bytes: &[u8],
) -> Result<RecordBatch> {
    let corrupt = || Error::internal("a saved view batch is corrupt");
    let take_u32 = |at: usize| -> Result<usize> {
        let raw: [u8; 4] = bytes
            .get(at..at + 4)
            .ok_or_else(corrupt)?
            .try_into()
            .expect("4 bytes");
        Ok(u32::from_be_bytes(raw) as usize)
    };
    let n = take_u32(0)?;
    let mut at = 4;
    let mut slices = Vec::with_capacity(n);
    for _ in 0..n {
        let len = take_u32(at)?;
        at += 4;
        slices.push(bytes.get(at..at + len).ok_or_else(corrupt)?);
        at += len;
    }
    let parser = codec.parser();
    let columns = codec.convert_rows(slices.into_iter().map(|s| parser.parse(s)))?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

impl AppendShard {
    /// Lets go of committed batches, oldest first, while the shard takes
    /// more than `cache_bytes`.
    fn evict(&mut self, cache_bytes: usize) {
        while self.bytes > cache_bytes && self.first < self.committed {
            let b = self
                .batches
                .pop_front()
                .expect("committed batches are in memory");
            self.bytes -= b.get_array_memory_size();
            self.first += 1;
        }
    }
}

impl KeyedShard {
    /// Keys with a row.
    fn live(&self) -> usize {
        self.index.len() - self.tombstones
    }

    /// Points `key` at row `row` of segment `segment`.
    fn set(&mut self, key: &[u8], segment: u32, row: u32) {
        let slot = Slot { segment, row };
        let (e, new) = self.index.entry(hash_key(key), key, Saved::Dirty, || slot);
        if new {
            self.changed.push(0, e.hash, key);
            self.changed.bound(self.index.len());
            return;
        }
        if e.value.is_live() {
            self.dead += 1;
        } else {
            self.tombstones -= 1;
        }
        e.value = slot;
        e.mark_dirty(&mut self.changed, 0);
        self.changed.bound(self.index.len());
    }

    /// Deletes `key`'s row; a key only in the store is deleted there at the
    /// next checkpoint.
    fn delete(&mut self, key: &[u8]) {
        let hash = hash_key(key);
        let tombstone = Slot {
            segment: TOMBSTONE,
            row: 0,
        };
        if let Some(e) = self.index.get_mut(hash, key) {
            if e.value.is_live() {
                e.value = tombstone;
                self.dead += 1;
                self.tombstones += 1;
                e.mark_dirty(&mut self.changed, 0);
            }
        } else if self.spilled {
            self.index.entry(hash, key, Saved::Dirty, || tombstone);
            self.tombstones += 1;
            self.changed.push(0, hash, key);
        }
        self.changed.bound(self.index.len());
    }

    /// The previous checkpoint is committed now: what it wrote may leave
    /// memory, and the tombstones it wrote are done.
    fn committed(&mut self) {
        for (k, key) in self.in_flight.iter() {
            let Some(e) = self.index.get_mut(k.hash, key) else {
                continue;
            };
            if e.saved != Saved::InFlight {
                continue;
            }
            if e.value.is_live() {
                e.saved = Saved::Committed;
            } else {
                self.index.remove(k.hash, key);
                self.tombstones -= 1;
            }
        }
        self.in_flight.clear();
    }

    /// Writes the rows of the keys changed since the last checkpoint (a
    /// delete for deleted keys), in key order, under the shard's rows; and
    /// the same as one entry of its changes, which sinks and subscriptions
    /// read (see [`ChangeLog`]).
    fn write_changes(
        &mut self,
        codec: &RowConverter,
        keys: &JobKeys,
        shard: usize,
        writes: &mut Writes,
    ) -> Result<()> {
        let prefix = &keys.view_rows(shard)[..];
        self.changed.rebuild(std::iter::once((0, &self.index)));
        let order = self.changed.sorted();
        // Each key once: whether it has a row, and where.
        let mut live = Vec::with_capacity(order.len());
        let mut picks = Vec::with_capacity(order.len());
        for k in &order {
            let key = self.changed.key(k);
            let e = self
                .index
                .get_mut(k.hash, key)
                .expect("a changed key stays in the index until its change is committed");
            e.saved = Saved::InFlight;
            live.push(e.value.is_live());
            if e.value.is_live() {
                picks.push((e.value.segment as usize, e.value.row as usize));
            }
        }
        let encoded = match picks.is_empty() {
            true => None,
            false => {
                let refs: Vec<&RecordBatch> = self.segments.iter().collect();
                let batch = interleave_record_batch(&refs, &picks)?;
                Some(codec.convert_columns(batch.columns())?)
            }
        };
        let mut row = 0;
        let mut entry: Vec<u8> = Vec::new();
        if !order.is_empty() {
            entry.extend_from_slice(&(order.len() as u32).to_be_bytes());
        }
        for (k, is_live) in order.iter().zip(live) {
            let key = self.changed.key(k);
            entry.extend_from_slice(&(key.len() as u32).to_be_bytes());
            entry.extend_from_slice(key);
            match (is_live, &encoded) {
                (true, Some(encoded)) => {
                    let encoded_row = encoded.row(row);
                    let bytes = encoded_row.as_ref();
                    writes.put_parts(&[prefix, key], bytes);
                    entry.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
                    entry.extend_from_slice(bytes);
                    row += 1;
                }
                _ => {
                    writes.delete_parts(&[prefix, key]);
                    entry.extend_from_slice(&DELETED.to_be_bytes());
                }
            }
        }
        if !entry.is_empty() {
            let seq = self.change_seq;
            writes.put(keys.view_change(shard, seq), entry);
            writes.put(keys.view_change_next(shard), (seq + 1).to_be_bytes());
            if seq >= CHANGES_KEPT {
                writes.delete_range(
                    keys.view_change(shard, 0),
                    keys.view_change(shard, seq + 1 - CHANGES_KEPT),
                );
            }
            self.change_seq = seq + 1;
        }
        std::mem::swap(&mut self.changed, &mut self.in_flight);
        self.changed.clear();
        Ok(())
    }

    /// Memory the shard's rows take (an estimate).
    fn bytes(&self) -> usize {
        self.segment_bytes
            + self
                .index
                .iter()
                .next()
                .map_or(0, |e| self.index.len() * (e.key.len() + INDEX_OVERHEAD))
    }

    /// Lets go of committed rows (neither changed since the last checkpoint
    /// nor written by it) while the shard takes more than `cache_bytes`.
    fn evict(&mut self, schema: &SchemaRef, cache_bytes: usize) -> Result<()> {
        let bytes = self.bytes();
        if bytes <= cache_bytes || self.index.is_empty() {
            return Ok(());
        }
        let per_row = (bytes / self.index.len()).max(1);
        let mut excess = (bytes - cache_bytes / 4 * 3) / per_row;
        let before = self.index.len();
        self.index.retain(|e| {
            if excess == 0 || e.saved != Saved::Committed {
                return true;
            }
            excess -= 1;
            false
        });
        let evicted = before - self.index.len();
        if evicted > 0 {
            tracing::trace!(rows = evicted, "view rows evicted");
            self.spilled = true;
            self.dead += evicted;
            self.compact(schema)?;
        }
        Ok(())
    }

    /// Rewrites the live rows into one segment.
    fn compact(&mut self, schema: &SchemaRef) -> Result<()> {
        if self.live() == 0 {
            self.segments.clear();
            self.segment_bytes = 0;
            self.dead = 0;
            return Ok(());
        }
        // Keep the rows in a stable order: by where they were written.
        let mut entries: Vec<&mut Slot> = self
            .index
            .iter_mut()
            .map(|e| &mut e.value)
            .filter(|slot| slot.is_live())
            .collect();
        entries.sort_by_key(|slot| (slot.segment, slot.row));
        let picks: Vec<(usize, usize)> = entries
            .iter()
            .map(|slot| (slot.segment as usize, slot.row as usize))
            .collect();
        let refs: Vec<&RecordBatch> = self.segments.iter().collect();
        let batch = if refs.is_empty() {
            RecordBatch::new_empty(schema.clone())
        } else {
            interleave_record_batch(&refs, &picks)?
        };
        for (row, slot) in entries.into_iter().enumerate() {
            *slot = Slot {
                segment: 0,
                row: row as u32,
            };
        }
        self.segment_bytes = batch.get_array_memory_size();
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
        let store = ViewStore::new(batch(&[]).schema(), 1, true, None).unwrap();
        store.upsert(0, &[b"a", b"b"], batch(&[1, 2]), &[]).unwrap();
        store.upsert(0, &[b"a"], batch(&[10]), &[]).unwrap();
        assert_eq!(values(&store), vec![2, 10]);
        store.upsert(0, &[], batch(&[]), &[b"b"]).unwrap();
        assert_eq!(values(&store), vec![10]);
        assert_eq!(store.rows_in_memory(), 1);
        // Many updates of one key stay compact.
        for i in 0..5000 {
            store.upsert(0, &[b"a"], batch(&[i]), &[]).unwrap();
        }
        assert_eq!(values(&store), vec![4999]);
    }

    #[test]
    fn append_views_keep_everything() {
        let store = ViewStore::new(batch(&[]).schema(), 2, false, None).unwrap();
        store.append(0, batch(&[1, 2]));
        store.append(1, batch(&[3]));
        assert_eq!(values(&store), vec![1, 2, 3]);
    }

    fn durable(store: &Arc<Store>, id: u64, cache_bytes: usize) -> Option<Durable> {
        Some(Durable {
            store: store.clone(),
            keys: JobKeys::new(id),
            cache_bytes,
        })
    }

    fn save(view: &ViewStore, store: &Store) {
        save_at(view, store, 0);
    }

    fn save_at(view: &ViewStore, store: &Store, watermark: i64) {
        let mut w = Writes::default();
        for shard in 0..view.shard_count() {
            view.checkpoint(shard, watermark, &mut w).unwrap();
        }
        store.commit(w).unwrap();
    }

    #[test]
    fn the_log_of_an_append_view_holds_what_was_committed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let schema = batch(&[]).schema();
        let view = ViewStore::new(schema.clone(), 2, false, durable(&store, 4, 1 << 20)).unwrap();
        let log = ViewLog::new(store.clone(), JobKeys::new(4), schema).unwrap();
        let read = |shard: usize, from: u64, max: usize| {
            let mut got = Vec::new();
            log.read(shard, from, max, |seq, b| {
                got.push((
                    seq,
                    b.column(0).as_primitive::<Int64Type>().values().to_vec(),
                ));
                Ok(())
            })
            .unwrap();
            got
        };
        assert_eq!(log.watermark(0).unwrap(), None);
        view.append(0, batch(&[1, 2]));
        view.append(1, batch(&[3]));
        save_at(&view, &store, 100);
        // Appended, not committed: not in the log.
        view.append(0, batch(&[4]));
        assert_eq!(read(0, 0, 10), vec![(0, vec![1, 2])]);
        assert_eq!(read(1, 0, 10), vec![(0, vec![3])]);
        assert_eq!(log.watermark(0).unwrap(), Some(100));
        save_at(&view, &store, 200);
        assert_eq!(read(0, 0, 10), vec![(0, vec![1, 2]), (1, vec![4])]);
        assert_eq!(read(0, 1, 10), vec![(1, vec![4])]);
        assert_eq!(read(0, 0, 1), vec![(0, vec![1, 2])]);
        assert_eq!(read(0, 2, 10), vec![]);
        assert_eq!(log.watermark(1).unwrap(), Some(200));
    }

    #[test]
    fn checkpoints_restore_both_kinds_of_view() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let schema = batch(&[]).schema();
        let keyed = ViewStore::new(schema.clone(), 2, true, durable(&store, 1, 1 << 20)).unwrap();
        keyed.upsert(0, &[b"a", b"b"], batch(&[1, 2]), &[]).unwrap();
        keyed.upsert(1, &[b"c"], batch(&[3]), &[]).unwrap();
        save(&keyed, &store);
        keyed.upsert(0, &[b"a"], batch(&[10]), &[b"b"]).unwrap();
        save(&keyed, &store);
        let back = ViewStore::new(schema.clone(), 2, true, durable(&store, 1, 1 << 20)).unwrap();
        back.restore().unwrap();
        assert_eq!(values(&back), vec![3, 10]);
        // The restored keys are the same keys: an upsert replaces.
        back.upsert(0, &[b"a"], batch(&[11]), &[]).unwrap();
        assert_eq!(values(&back), vec![3, 11]);

        let append = ViewStore::new(schema.clone(), 1, false, durable(&store, 2, 1 << 20)).unwrap();
        append.append(0, batch(&[1, 2]));
        save(&append, &store);
        append.append(0, batch(&[3]));
        save(&append, &store);
        let back = ViewStore::new(schema, 1, false, durable(&store, 2, 1 << 20)).unwrap();
        back.restore().unwrap();
        assert_eq!(values(&back), vec![1, 2, 3]);
        back.append(0, batch(&[4]));
        assert_eq!(values(&back), vec![1, 2, 3, 4]);
    }

    #[test]
    fn views_larger_than_their_cache_read_the_rest_from_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let schema = batch(&[]).schema();
        let view = ViewStore::new(schema.clone(), 1, true, durable(&store, 3, 2048)).unwrap();
        let key = |i: i64| i.to_be_bytes();
        let keys: Vec<[u8; 8]> = (0..1000).map(key).collect();
        let refs: Vec<&[u8]> = keys.iter().map(|k| &k[..]).collect();
        view.upsert(0, &refs, batch(&(0..1000).collect::<Vec<_>>()), &[])
            .unwrap();
        save(&view, &store);
        // Changes after the first checkpoint: an update and a delete.
        view.upsert(0, &[&key(5)], batch(&[5000]), &[&key(6)])
            .unwrap();
        save(&view, &store);
        assert!(
            view.rows_in_memory() < 100,
            "{} rows in memory",
            view.rows_in_memory()
        );
        let mut want: Vec<i64> = (0..1000).filter(|i| *i != 5 && *i != 6).collect();
        want.push(5000);
        want.sort();
        assert_eq!(values(&view), want);
        // A delete of a row only in the store, then the same after restore.
        view.upsert(0, &[], batch(&[]), &[&key(900)]).unwrap();
        want.retain(|v| *v != 900);
        assert_eq!(values(&view), want);
        save(&view, &store);
        let back = ViewStore::new(schema.clone(), 1, true, durable(&store, 3, 2048)).unwrap();
        back.restore().unwrap();
        assert_eq!(values(&back), want);

        let append = ViewStore::new(schema, 1, false, durable(&store, 4, 1)).unwrap();
        for i in 0..5 {
            append.append(0, batch(&[i]));
            save(&append, &store);
        }
        assert!(append.rows_in_memory() <= 2);
        assert_eq!(values(&append), vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn a_scan_reads_the_stored_rows_batch_by_batch_without_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let schema = batch(&[]).schema();
        let view = ViewStore::new(schema, 1, true, durable(&store, 5, 4096)).unwrap();
        let n = 3 * READ_BATCH_ROWS as i64 + 17;
        let keys: Vec<[u8; 8]> = (0..n).map(|i| i.to_be_bytes()).collect();
        let refs: Vec<&[u8]> = keys.iter().map(|k| &k[..]).collect();
        view.upsert(0, &refs, batch(&(0..n).collect::<Vec<_>>()), &[])
            .unwrap();
        save(&view, &store);
        save(&view, &store);
        // Some rows change in memory after the scan began being planned:
        // the stored copies of those keys are skipped.
        view.upsert(0, &[&keys[10], &keys[9000]], batch(&[-10, -9000]), &[])
            .unwrap();
        let scans = view.scan().unwrap();
        let stored = scans[0].stored.as_ref().expect("rows only in the store");
        let mut cursor = stored.cursor();
        let mut batches = 0;
        let mut seen: Vec<i64> = scans[0]
            .batches
            .iter()
            .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
            .collect();
        while let Some(b) = cursor.next_batch().unwrap() {
            assert!(b.num_rows() <= READ_BATCH_ROWS);
            batches += 1;
            seen.extend(b.column(0).as_primitive::<Int64Type>().values().iter());
        }
        assert!(batches >= 3, "{batches} batches");
        seen.sort();
        let mut want: Vec<i64> = (0..n).filter(|i| *i != 10 && *i != 9000).collect();
        want.extend([-10, -9000]);
        want.sort();
        assert_eq!(seen, want);
    }
}
