//! StreamJoin: joins two streams on equal keys, for pairs whose times are
//! close (interval joins) or in the same window (window joins), or for
//! every pair (regular joins: no times, open bounds, so a side's rows go
//! only once the other side has ended); each instance owns the keys whose
//! routing hash points to it.
//!
//! Input: rows of both sides from every pipeline instance of each (left
//! instances first, then right), and their watermarks.
//! Output: each pair of rows with equal keys and `lower <= left time - right
//! time <= upper` (for window joins both times are `window_time`, and equal)
//! as one row, once: to [`Materialize`] (append-only: a pair is final when
//! its second row arrives); or, when the view aggregates the pairs, through
//! the operations on joined rows into a partial aggregate whose states go
//! to the final aggregation instances that own their groups, followed by
//! the join's output watermark and checkpoint barriers. Outer joins also
//! output each row of a kept side (LEFT: the left, RIGHT: the right, FULL:
//! both) that met none, padded with nulls, once it expires (below).
//! State: each side's rows that a row of the other side may still match,
//! with an index on their keys and time buckets (at least the interval
//! wide, so a row probes only the rows its interval covers), and whether
//! each has met a row. A row arriving probes the other side's rows, then
//! joins its own side's. A regular join's sides keep every row by key in
//! state tables instead (see [`KeyedRows`]), which may exceed memory.
//! Watermarks: one per side (the minimum over that side's inputs that are
//! not idle). A future row of the right side has a time above the right
//! watermark WR, so a left row of time t can never meet another once
//! `t <= WR + lower`, and a right row once `t <= WL - upper`: they are let
//! go (in bulk, when half of a side's rows can go). Rows that arrive late
//! (at or below their split's watermark) were dropped and counted by their
//! pipeline, so no pair is missed. The view's watermark is, for a left time
//! attribute, `min(WL, WR + lower)`, the least left time a pair still to
//! come can have (for a right one, `min(WR, WL - upper)`).
//! Checkpoint: both sides' rows, whole (they are bounded by the watermarks
//! and the interval), with their met flags, or for a regular join what
//! changed in its state tables; and its view shard.
//!
//! [`Alignment`] keeps the two sides' readers close in event time, so that
//! a side read faster does not pile up rows the other cannot meet yet.
//!
//! [`Materialize`]: crate::dataflow::materialize::Materialize

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, UInt32Array};
use arrow::compute::{filter_record_batch, interleave, take};
use arrow::datatypes::SchemaRef;
use arrow::row::{RowConverter, Rows, SortField};
use datafusion::common::hash_utils::create_hashes;
use datafusion::execution::session_state::SessionState;
use datafusion::physical_expr::PhysicalExpr;
use parking_lot::Mutex;

use std::sync::atomic::Ordering;

use crate::dataflow::keyed_rows::KeyedRows;

use crate::dataflow::owner::{Outgoing, Owner, RowsOut};
use crate::dataflow::partial_aggregate::ROUTING_HASH;
use crate::dataflow::physical::{evaluate_all, millis, physical_expr};
use crate::dataflow::plan::{JoinTime, Side, StreamJoinPlan};
use crate::dataflow::watermark::WatermarkCombiner;
use crate::error::{Error, Result};
use crate::metrics::{JobMetrics, Part};
use crate::state::checkpoint::JobKeys;
use crate::state::table::StateTable;
use crate::state::view::{decode_batch, encode_batch, row_codec};
use crate::state::{Store, Writes};

/// The physical form of a join of two streams, shared by its instances.
pub struct PhysicalJoin {
    left_keys: Vec<Arc<dyn PhysicalExpr>>,
    right_keys: Vec<Arc<dyn PhysicalExpr>>,
    left_time: Option<JoinTime>,
    right_time: Option<JoinTime>,
    lower_ms: i64,
    upper_ms: i64,
    left_schema: SchemaRef,
    right_schema: SchemaRef,
    output: SchemaRef,
    output_time: Side,
    /// Outer joins: the sides whose rows that meet none are kept, padded.
    outer_left: bool,
    outer_right: bool,
    /// A semi join (see [`StreamJoinPlan::semi`]).
    semi: bool,
}

impl PhysicalJoin {
    pub fn new(state: &SessionState, plan: &StreamJoinPlan) -> Result<Self> {
        let exprs = |keys: &[datafusion::logical_expr::Expr], schema| -> Result<Vec<_>> {
            keys.iter()
                .map(|k| physical_expr(state, k, schema))
                .collect()
        };
        Ok(PhysicalJoin {
            left_keys: exprs(&plan.left_keys, &plan.left_schema)?,
            right_keys: exprs(&plan.right_keys, &plan.right_schema)?,
            left_time: plan.left_time,
            right_time: plan.right_time,
            lower_ms: plan.lower_ms,
            upper_ms: plan.upper_ms,
            left_schema: Arc::new(plan.left_schema.as_arrow().clone()),
            right_schema: Arc::new(plan.right_schema.as_arrow().clone()),
            output: Arc::new(plan.output.as_arrow().clone()),
            output_time: plan.output_time.unwrap_or(Side::Left),
            outer_left: plan.outer_left,
            outer_right: plan.outer_right,
            semi: plan.semi,
        })
    }

    /// The key expressions of one side, over its rows.
    pub fn keys(&self, side: Side) -> &[Arc<dyn PhysicalExpr>] {
        match side {
            Side::Left => &self.left_keys,
            Side::Right => &self.right_keys,
        }
    }

    /// The time at or below which rows of `side` can meet no row of the
    /// other side to come, given the other side's watermark.
    fn expiry(&self, side: Side, other_watermark: i64) -> i64 {
        match side {
            Side::Left => other_watermark.saturating_add(self.lower_ms),
            Side::Right => other_watermark.saturating_sub(self.upper_ms),
        }
    }

    /// The view's watermark: below the time attribute of every pair to come.
    fn output_watermark(&self, left: i64, right: i64) -> i64 {
        match self.output_time {
            Side::Left => left.min(self.expiry(Side::Left, right)),
            Side::Right => right.min(self.expiry(Side::Right, left)),
        }
    }
}

/// Keys are hashed already: the index uses the hash as it is.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, _: &[u8]) {
        unreachable!("only u64 keys are hashed")
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

const NONE: u32 = u32::MAX;

/// The index slot of a key hash in a time bucket: a probe walks only the
/// rows of the buckets its interval covers, not every row of its key (rows
/// far ahead in time, from a backlog, would make each probe long).
fn bucketed(hash: u64, bucket: i64) -> u64 {
    hash ^ (bucket as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// A row in a side's index: where it is, and the previous row with the
/// same key hash.
#[derive(Clone, Copy)]
struct Entry {
    batch: u32,
    row: u32,
    next: u32,
}

struct StoredBatch {
    batch: RecordBatch,
    keys: Rows,
    times: Vec<i64>,
    min_time: i64,
    max_time: i64,
    /// Per row: whether it has met a row of the other side (outer joins
    /// emit the others, padded with nulls, when they expire).
    matched: Vec<bool>,
}

/// The rows one side of an interval or window join holds, with a hash
/// index on their keys and times.
struct SideRows {
    side: Side,
    schema: SchemaRef,
    time: JoinTime,
    keys: Vec<Arc<dyn PhysicalExpr>>,
    codec: RowConverter,
    batches: Vec<StoredBatch>,
    heads: HashMap<u64, u32, BuildHasherDefault<Prehashed>>,
    entries: Vec<Entry>,
    /// Rows of batches whose rows can all go.
    expired_rows: usize,
    /// The width of the index's time buckets: at least the interval's, so
    /// that a probe covers at most two.
    bucket_ms: i64,
    expiry: i64,
    /// Whether its rows that meet none are kept (padded with nulls): the
    /// left side of a LEFT or FULL join, the right side of a RIGHT or FULL
    /// one.
    outer: bool,
}

/// A batch's rows as the join sees them: key hashes, encoded keys (for
/// equality), times, and which rows can match at all (no null key). A
/// regular join's sides find rows by encoded key alone: their probes have
/// no hashes and no times.
struct Probe {
    hashes: Vec<u64>,
    keys: Rows,
    times: Vec<i64>,
    valid: Option<BooleanArray>,
}

/// A batch's rows as a side sees them (see [`Probe`]).
fn probe(
    keys: &[Arc<dyn PhysicalExpr>],
    codec: &RowConverter,
    time: Option<JoinTime>,
    batch: &RecordBatch,
) -> Result<Probe> {
    let arrays = evaluate_all(keys, batch)?;
    let mut hashes = Vec::new();
    if time.is_some() {
        hashes.resize(batch.num_rows(), 0);
        create_hashes(&arrays, &ROUTING_HASH, &mut hashes)?;
    }
    let valid = arrays
        .iter()
        .filter(|a| a.null_count() > 0)
        .map(|a| arrow::compute::is_not_null(a.as_ref()))
        .try_fold(None::<BooleanArray>, |acc, m| -> Result<_> {
            let m = m?;
            Ok(Some(match acc {
                None => m,
                Some(a) => arrow::compute::and(&a, &m)?,
            }))
        })?;
    let times = match time {
        Some(time) => millis(batch.column(time.index))?
            .iter()
            .map(|t| t.saturating_add(time.add_ms))
            .collect(),
        None => Vec::new(),
    };
    Ok(Probe {
        hashes,
        keys: codec.convert_columns(&arrays)?,
        times,
        valid,
    })
}

/// The key codec of a side's join keys.
fn key_codec(keys: &[Arc<dyn PhysicalExpr>], schema: &SchemaRef) -> Result<RowConverter> {
    let fields = keys
        .iter()
        .map(|k| Ok(SortField::new(k.data_type(schema)?)))
        .collect::<Result<Vec<_>>>()?;
    Ok(RowConverter::new(fields)?)
}

impl Probe {
    /// Whether row i's key can meet any (it has no null).
    fn valid(&self, i: usize) -> bool {
        self.valid.as_ref().is_none_or(|v| v.value(i))
    }
}

impl SideRows {
    fn new(side: Side, join: &PhysicalJoin, time: JoinTime) -> Result<Self> {
        let schema = match side {
            Side::Left => join.left_schema.clone(),
            Side::Right => join.right_schema.clone(),
        };
        let keys = join.keys(side).to_vec();
        let outer = match side {
            Side::Left => join.outer_left,
            Side::Right => join.outer_right,
        };
        Ok(SideRows {
            outer,
            side,
            codec: key_codec(&keys, &schema)?,
            schema,
            time,
            keys,
            batches: Vec::new(),
            heads: HashMap::default(),
            entries: Vec::new(),
            expired_rows: 0,
            expiry: i64::MIN,
            bucket_ms: join
                .upper_ms
                .saturating_sub(join.lower_ms)
                .saturating_add(1)
                .max(1000),
        })
    }

    fn rows(&self) -> usize {
        self.entries.len()
    }

    fn probe(&self, batch: &RecordBatch) -> Result<Probe> {
        probe(&self.keys, &self.codec, Some(self.time), batch)
    }

    /// Keeps the rows of `batch` that rows of the other side may still meet
    /// (`matched`: which have met one already). Returns, for an outer side,
    /// the rows that never can and have met none: to emit padded now.
    fn insert(
        &mut self,
        batch: RecordBatch,
        probe: Probe,
        matched: Vec<bool>,
    ) -> Result<Option<RecordBatch>> {
        let keep: Vec<bool> = (0..batch.num_rows())
            .map(|i| {
                probe.valid.as_ref().is_none_or(|v| v.value(i)) && probe.times[i] > self.expiry
            })
            .collect();
        let kept = keep.iter().filter(|k| **k).count();
        let lost = match self.outer && kept < batch.num_rows() {
            true => {
                let mask: BooleanArray = keep
                    .iter()
                    .zip(&matched)
                    .map(|(k, m)| Some(!k && !m))
                    .collect();
                Some(filter_record_batch(&batch, &mask)?).filter(|b| b.num_rows() > 0)
            }
            false => None,
        };
        if kept == 0 {
            return Ok(lost);
        }
        let (batch, probe, matched) = if kept == batch.num_rows() {
            (batch, probe, matched)
        } else {
            let matched = matched
                .iter()
                .zip(&keep)
                .filter(|(_, k)| **k)
                .map(|(m, _)| *m)
                .collect();
            let mask = BooleanArray::from(keep);
            let batch = filter_record_batch(&batch, &mask)?;
            let probe = self.probe(&batch)?;
            (batch, probe, matched)
        };
        let id = u32::try_from(self.batches.len())
            .map_err(|_| Error::internal("a join side holds too many batches"))?;
        for (row, (hash, time)) in probe.hashes.iter().zip(&probe.times).enumerate() {
            let at = self.entries.len() as u32;
            let slot = bucketed(*hash, time.div_euclid(self.bucket_ms));
            let next = self.heads.insert(slot, at).unwrap_or(NONE);
            self.entries.push(Entry {
                batch: id,
                row: row as u32,
                next,
            });
        }
        let max_time = probe.times.iter().copied().max().unwrap_or(i64::MIN);
        let min_time = probe.times.iter().copied().min().unwrap_or(i64::MAX);
        self.batches.push(StoredBatch {
            batch,
            keys: probe.keys,
            times: probe.times,
            min_time,
            max_time,
            matched,
        });
        Ok(lost)
    }

    /// Notes the rows that `pairs` (from [`Self::matches`]) met.
    fn mark(&mut self, pairs: &[(u32, Entry)]) {
        if self.outer {
            for (_, e) in pairs {
                self.batches[e.batch as usize].matched[e.row as usize] = true;
            }
        }
    }

    /// The pairs of the rows of `probe` (the other side's) with these rows:
    /// (probe row, index entry). `other_time - own time`, oriented as
    /// left - right, must be in [lower, upper].
    fn matches(&self, probe: &Probe, lower: i64, upper: i64) -> Vec<(u32, Entry)> {
        let mut pairs = Vec::new();
        if self.entries.is_empty() {
            return pairs;
        }
        for (i, hash) in probe.hashes.iter().enumerate() {
            if probe.valid.as_ref().is_some_and(|v| !v.value(i)) {
                continue;
            }
            // The times of this side's rows it can meet, and their buckets.
            let t = probe.times[i];
            let (from, to) = match self.side {
                Side::Right => (t.saturating_sub(upper), t.saturating_sub(lower)),
                Side::Left => (t.saturating_add(lower), t.saturating_add(upper)),
            };
            let key = probe.keys.row(i);
            for bucket in from.div_euclid(self.bucket_ms)..=to.div_euclid(self.bucket_ms) {
                let Some(head) = self.heads.get(&bucketed(*hash, bucket)) else {
                    continue;
                };
                self.walk(*head, i, key, from, to, &mut pairs);
            }
        }
        pairs
    }

    /// The entries of a chain from `at` on with `key` and a time in
    /// `[from, to]`, paired with probe row `i`.
    fn walk(
        &self,
        mut at: u32,
        i: usize,
        key: arrow::row::Row<'_>,
        from: i64,
        to: i64,
        pairs: &mut Vec<(u32, Entry)>,
    ) {
        while at != NONE {
            let e = self.entries[at as usize];
            let stored = &self.batches[e.batch as usize];
            let t = stored.times[e.row as usize];
            if t > self.expiry && t >= from && t <= to && stored.keys.row(e.row as usize) == key {
                pairs.push((i as u32, e));
            }
            at = e.next;
        }
    }

    /// The columns of the entries `pairs` point to, in order.
    fn gather(&self, pairs: &[(u32, Entry)]) -> Result<Vec<ArrayRef>> {
        let at: Vec<(usize, usize)> = pairs
            .iter()
            .map(|(_, e)| (e.batch as usize, e.row as usize))
            .collect();
        (0..self.schema.fields().len())
            .map(|c| {
                let columns: Vec<&dyn Array> = self
                    .batches
                    .iter()
                    .map(|b| b.batch.column(c).as_ref())
                    .collect();
                Ok(interleave(&columns, &at)?)
            })
            .collect()
    }

    /// Rows at or below `expiry` can meet no row to come: they are let go,
    /// in bulk once half of the rows can.
    /// Returns, for an outer side, the rows that expire now without having
    /// met any: to emit padded.
    fn expire(&mut self, expiry: i64) -> Result<Option<RecordBatch>> {
        if expiry <= self.expiry {
            return Ok(None);
        }
        let lost = match self.outer {
            true => self.unmatched_between(self.expiry, expiry)?,
            false => None,
        };
        self.expiry = expiry;
        self.expired_rows = self
            .batches
            .iter()
            .filter(|b| b.max_time <= expiry)
            .map(|b| b.batch.num_rows())
            .sum();
        if self.expired_rows > 0 && 2 * self.expired_rows >= self.rows() {
            self.compact()?;
        }
        Ok(lost)
    }

    /// Its rows with a time in `(after, upto]` that met none.
    fn unmatched_between(&self, after: i64, upto: i64) -> Result<Option<RecordBatch>> {
        let mut parts = Vec::new();
        for b in &self.batches {
            if b.min_time > upto || b.max_time <= after {
                continue;
            }
            let mask: BooleanArray = b
                .times
                .iter()
                .zip(&b.matched)
                .map(|(t, m)| Some(*t > after && *t <= upto && !m))
                .collect();
            if mask.true_count() > 0 {
                parts.push(filter_record_batch(&b.batch, &mask)?);
            }
        }
        if parts.is_empty() {
            return Ok(None);
        }
        Ok(Some(arrow::compute::concat_batches(&self.schema, &parts)?))
    }

    /// Rebuilds the side from its rows above the expiry, as one batch.
    fn compact(&mut self) -> Result<()> {
        let mut kept = Vec::with_capacity(self.batches.len());
        let mut matched = Vec::new();
        for b in &self.batches {
            if b.max_time <= self.expiry {
                continue;
            }
            let mask: BooleanArray = b.times.iter().map(|t| Some(*t > self.expiry)).collect();
            kept.push(filter_record_batch(&b.batch, &mask)?);
            matched.extend(
                b.times
                    .iter()
                    .zip(&b.matched)
                    .filter(|(t, _)| **t > self.expiry)
                    .map(|(_, m)| *m),
            );
        }
        self.batches.clear();
        self.heads.clear();
        self.entries.clear();
        self.expired_rows = 0;
        let batch = arrow::compute::concat_batches(&self.schema, &kept)?;
        if batch.num_rows() > 0 {
            let probe = self.probe(&batch)?;
            self.insert(batch, probe, matched)?;
        }
        Ok(())
    }

    /// All its rows above the expiry, as one batch, and which have met a
    /// row of the other side.
    fn snapshot(&mut self) -> Result<(RecordBatch, Vec<bool>)> {
        if self.batches.len() > 1 || self.expired_rows > 0 {
            self.compact()?;
        }
        Ok(match self.batches.first() {
            Some(b) => (b.batch.clone(), b.matched.clone()),
            None => (RecordBatch::new_empty(self.schema.clone()), Vec::new()),
        })
    }
}

/// What a side holds: rows the watermarks bound (interval and window
/// joins), indexed in memory and checkpointed whole; or, in a regular join,
/// every row, by key, in a state table (see [`KeyedRows`]).
enum Held {
    Timed(SideRows),
    Keyed(KeyedSide),
}

/// A side of a regular join.
struct KeyedSide {
    rows: KeyedRows,
    keys: Vec<Arc<dyn PhysicalExpr>>,
    codec: RowConverter,
    /// Its rows as an older Sluice saved them (whole, under the side's
    /// key) were restored: the next checkpoint deletes them.
    legacy: bool,
    /// The other side has ended: rows that come meet none, so none are
    /// kept (a stream joined with a file, Nexmark's q13).
    other_ended: bool,
}

impl Held {
    fn new(side: Side, join: &PhysicalJoin, table: StateTable) -> Result<Self> {
        let time = match side {
            Side::Left => join.left_time,
            Side::Right => join.right_time,
        };
        if let Some(time) = time {
            return Ok(Held::Timed(SideRows::new(side, join, time)?));
        }
        let schema = match side {
            Side::Left => join.left_schema.clone(),
            Side::Right => join.right_schema.clone(),
        };
        let keys = join.keys(side).to_vec();
        Ok(Held::Keyed(KeyedSide {
            codec: key_codec(&keys, &schema)?,
            keys,
            rows: KeyedRows::new(table, schema)?,
            legacy: false,
            other_ended: false,
        }))
    }

    fn probe(&self, batch: &RecordBatch) -> Result<Probe> {
        match self {
            Held::Timed(s) => s.probe(batch),
            Held::Keyed(k) => probe(&k.keys, &k.codec, None, batch),
        }
    }

    /// The rows the rows of `probe` (the other side's) meet: for each
    /// pair, the probe row, and the columns of the rows met. None when
    /// there are none.
    fn meet(
        &mut self,
        probe: &Probe,
        join: &PhysicalJoin,
    ) -> Result<Option<(Vec<u32>, Vec<ArrayRef>)>> {
        match self {
            Held::Timed(s) => {
                let pairs = s.matches(probe, join.lower_ms, join.upper_ms);
                if pairs.is_empty() {
                    return Ok(None);
                }
                s.mark(&pairs);
                let columns = s.gather(&pairs)?;
                Ok(Some((pairs.iter().map(|(i, _)| *i).collect(), columns)))
            }
            Held::Keyed(k) => k.rows.find(&probe.keys, |i| probe.valid(i)),
        }
    }

    /// Keeps the rows of `batch` (see [`SideRows::insert`]).
    fn insert(
        &mut self,
        batch: RecordBatch,
        probe: Probe,
        matched: Vec<bool>,
    ) -> Result<Option<RecordBatch>> {
        match self {
            Held::Timed(s) => s.insert(batch, probe, matched),
            Held::Keyed(k) if k.other_ended => Ok(None),
            Held::Keyed(k) => {
                k.rows.insert(&batch, &probe.keys, |i| probe.valid(i))?;
                Ok(None)
            }
        }
    }

    /// The other side's watermark is `other`: rows no row to come can meet
    /// go (in a regular join, all of them once the other side has ended).
    fn expire(
        &mut self,
        join: &PhysicalJoin,
        side: Side,
        other: i64,
    ) -> Result<Option<RecordBatch>> {
        match self {
            Held::Timed(s) => s.expire(join.expiry(side, other)),
            Held::Keyed(k) => {
                if other == i64::MAX && !k.other_ended {
                    k.other_ended = true;
                    k.rows.clear();
                }
                Ok(None)
            }
        }
    }

    /// Rows (timed) or chunks of rows (keyed) in memory.
    fn rows(&self) -> usize {
        match self {
            Held::Timed(s) => s.rows(),
            Held::Keyed(k) => k.rows.len(),
        }
    }

    fn schema(&self) -> &SchemaRef {
        match self {
            Held::Timed(s) => &s.schema,
            Held::Keyed(k) => k.rows.schema(),
        }
    }
}

/// One instance of the join.
pub struct StreamJoin {
    join: Arc<PhysicalJoin>,
    left: Held,
    right: Held,
    /// Per side, the watermarks of its `inputs` pipelines.
    left_watermarks: WatermarkCombiner,
    right_watermarks: WatermarkCombiner,
    inputs: usize,
    out: RowsOut,
    instance: usize,
    /// The view's watermark over all instances.
    output_watermarks: Arc<Mutex<WatermarkCombiner>>,
    metrics: Arc<JobMetrics>,
    keys: JobKeys,
}

impl StreamJoin {
    /// Instance `instance`, fed by `inputs` pipelines on each side; a
    /// regular join's sides keep their rows in `store`, each side in at most
    /// `cache_bytes` of memory, from the last checkpoint's if the job has one
    /// (`saved`; see [`restore`](Self::restore) for the rest).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        join: Arc<PhysicalJoin>,
        instance: usize,
        inputs: usize,
        out: RowsOut,
        output_watermarks: Arc<Mutex<WatermarkCombiner>>,
        metrics: Arc<JobMetrics>,
        keys: JobKeys,
        store: &Arc<Store>,
        cache_bytes: usize,
        saved: bool,
    ) -> Result<Self> {
        let table = |side: Side| {
            let prefix = keys.join_state(instance, side as u8);
            StateTable::resume(store.clone(), prefix, cache_bytes, saved)
        };
        Ok(StreamJoin {
            left: Held::new(Side::Left, &join, table(Side::Left)?)?,
            right: Held::new(Side::Right, &join, table(Side::Right)?)?,
            join,
            left_watermarks: WatermarkCombiner::new(inputs),
            right_watermarks: WatermarkCombiner::new(inputs),
            inputs,
            out,
            instance,
            output_watermarks,
            metrics,
            keys,
        })
    }

    /// Loads the rows an interval or window join held at the last
    /// checkpoint, and those a regular join's side held when an older
    /// Sluice saved them whole.
    pub fn restore(&mut self, store: &Store) -> Result<()> {
        for side in [Side::Left, Side::Right] {
            let key = self.keys.join_rows(self.instance, side as u8);
            let flags_key = self.keys.join_rows(self.instance, side as u8 + 2);
            let held = self.side_mut(side);
            let codec = row_codec(held.schema())?;
            let mut saved = None;
            store.scan_state(&key, |_, v| {
                saved = Some(decode_batch(&codec, held.schema(), v)?);
                Ok(())
            })?;
            let probe = match &saved {
                Some(batch) => Some(held.probe(batch)?),
                None => None,
            };
            match held {
                Held::Timed(rows) => {
                    let mut flags: Option<Vec<bool>> = None;
                    store.scan_state(&flags_key, |_, v| {
                        flags = Some(v.iter().map(|b| *b != 0).collect());
                        Ok(())
                    })?;
                    if let (Some(batch), Some(probe)) = (saved, probe) {
                        let matched = flags.unwrap_or_else(|| vec![false; batch.num_rows()]);
                        if matched.len() != batch.num_rows() {
                            return Err(Error::internal("a join's saved rows and flags differ"));
                        }
                        rows.insert(batch, probe, matched)?;
                    }
                }
                Held::Keyed(k) => {
                    // Saved whole by an older Sluice: held by key now.
                    if let (Some(batch), Some(probe)) = (saved, probe) {
                        k.rows.insert(&batch, &probe.keys, |i| probe.valid(i))?;
                        k.legacy = true;
                    }
                }
            }
        }
        Ok(())
    }

    fn side_mut(&mut self, side: Side) -> &mut Held {
        match side {
            Side::Left => &mut self.left,
            Side::Right => &mut self.right,
        }
    }

    /// The side and the number within it of input `from`.
    fn input(&self, from: usize) -> (Side, usize) {
        if from < self.inputs {
            (Side::Left, from)
        } else {
            (Side::Right, from - self.inputs)
        }
    }

    /// Emits rows of `side` that met no row of the other side (outer
    /// joins), with nulls for the other side's columns.
    fn emit_padded(&mut self, side: Side, rows: Option<RecordBatch>) -> Result<()> {
        let Some(rows) = rows else {
            return Ok(());
        };
        let n = rows.num_rows();
        let fields = self.join.output.fields();
        let left_len = self.join.left_schema.fields().len();
        let nulls = |range: std::ops::Range<usize>| -> Vec<ArrayRef> {
            range
                .map(|i| arrow::array::new_null_array(fields[i].data_type(), n))
                .collect()
        };
        let columns: Vec<ArrayRef> = match side {
            Side::Left => rows
                .columns()
                .iter()
                .cloned()
                .chain(nulls(left_len..fields.len()))
                .collect(),
            Side::Right => nulls(0..left_len)
                .into_iter()
                .chain(rows.columns().iter().cloned())
                .collect(),
        };
        let padded = RecordBatch::try_new(self.join.output.clone(), columns)?;
        self.emit(padded)
    }

    /// Sends joined rows on.
    fn emit(&mut self, pairs: RecordBatch) -> Result<()> {
        let what = format!("a joined row of instance {}", self.instance);
        self.out
            .send(pairs, &self.metrics, Part::Final(self.instance), &what)
    }

    fn advance(&mut self) -> Result<()> {
        let (wl, wr) = (
            self.left_watermarks.current(),
            self.right_watermarks.current(),
        );
        // Rows that expire without having met any are emitted (outer
        // joins) before the watermark that passes them.
        let lost = self.left.expire(&self.join, Side::Left, wr)?;
        self.emit_padded(Side::Left, lost)?;
        let lost = self.right.expire(&self.join, Side::Right, wl)?;
        self.emit_padded(Side::Right, lost)?;
        tracing::trace!(
            instance = self.instance,
            wl,
            wr,
            left = self.left.rows(),
            right = self.right.rows(),
            "join watermarks"
        );
        let out = self.join.output_watermark(wl, wr);
        self.out
            .watermark(out, self.instance, &self.output_watermarks, &self.metrics);
        Ok(())
    }
}

impl StreamJoin {
    /// A semi join's batch. A left row whose key the right side has shown
    /// goes out at once; the others wait, by key, until a right row with
    /// their key comes, which lets them out and keeps its key (one row per
    /// key: what later left rows are checked against). Each left row goes
    /// out once, and no row is kept longer than it can matter.
    fn on_semi_batch(&mut self, side: Side, batch: RecordBatch) -> Result<()> {
        let (Held::Keyed(left), Held::Keyed(right)) = (&mut self.left, &mut self.right) else {
            return Err(Error::internal("a semi join holds its rows by key"));
        };
        match side {
            Side::Left => {
                let probe = probe(&left.keys, &left.codec, None, &batch)?;
                let met = right.rows.find(&probe.keys, |i| probe.valid(i))?;
                let mut waiting = vec![true; batch.num_rows()];
                let out = match met {
                    Some((at, _)) => {
                        for i in &at {
                            waiting[*i as usize] = false;
                        }
                        Some(take_rows(&batch, at)?)
                    }
                    None => None,
                };
                if !left.other_ended {
                    left.rows
                        .insert(&batch, &probe.keys, |i| waiting[i] && probe.valid(i))?;
                }
                match out {
                    Some(rows) => self.emit(rows),
                    None => Ok(()),
                }
            }
            Side::Right => {
                let probe = probe(&right.keys, &right.codec, None, &batch)?;
                // The first row of each key not seen before.
                let known = right.rows.find(&probe.keys, |i| probe.valid(i))?;
                let mut new = vec![true; batch.num_rows()];
                for i in known.map(|(at, _)| at).unwrap_or_default() {
                    new[i as usize] = false;
                }
                let mut seen = std::collections::HashSet::new();
                for (i, fresh) in new.iter_mut().enumerate() {
                    *fresh = *fresh && probe.valid(i) && seen.insert(probe.keys.row(i));
                }
                if !right.other_ended {
                    right.rows.insert(&batch, &probe.keys, |i| new[i])?;
                }
                let met = left.rows.find(&probe.keys, |i| new[i])?;
                let Some((_, columns)) = met else {
                    return Ok(());
                };
                left.rows.remove(&probe.keys, |i| new[i])?;
                let rows = RecordBatch::try_new(self.join.output.clone(), columns)?;
                self.emit(rows)
            }
        }
    }
}

/// The rows of `batch` at `at`, in order.
fn take_rows(batch: &RecordBatch, at: Vec<u32>) -> Result<RecordBatch> {
    let at = UInt32Array::from(at);
    let columns = batch
        .columns()
        .iter()
        .map(|c| take(c.as_ref(), &at, None))
        .collect::<std::result::Result<_, _>>()?;
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}

impl Owner for StreamJoin {
    fn on_batch(&mut self, from: usize, batch: RecordBatch) -> Result<()> {
        let (side, i) = self.input(from);
        if self.join.semi {
            match side {
                Side::Left => self.left_watermarks.on_data(i),
                Side::Right => self.right_watermarks.on_data(i),
            }
            return self.on_semi_batch(side, batch);
        }
        let (own, other) = match side {
            Side::Left => {
                self.left_watermarks.on_data(i);
                (&mut self.left, &mut self.right)
            }
            Side::Right => {
                self.right_watermarks.on_data(i);
                (&mut self.right, &mut self.left)
            }
        };
        let probe = own.probe(&batch)?;
        let Some((at, theirs)) = other.meet(&probe, &self.join)? else {
            let matched = vec![false; batch.num_rows()];
            let lost = own.insert(batch, probe, matched)?;
            return self.emit_padded(side, lost);
        };
        let mut matched = vec![false; batch.num_rows()];
        for i in &at {
            matched[*i as usize] = true;
        }
        let rows = UInt32Array::from(at);
        let mine: Vec<ArrayRef> = batch
            .columns()
            .iter()
            .map(|c| take(c.as_ref(), &rows, None))
            .collect::<std::result::Result<_, _>>()?;
        let columns = match side {
            Side::Left => mine.into_iter().chain(theirs).collect(),
            Side::Right => theirs.into_iter().chain(mine).collect(),
        };
        let pairs = RecordBatch::try_new(self.join.output.clone(), columns)?;
        let lost = own.insert(batch, probe, matched)?;
        self.emit(pairs)?;
        self.emit_padded(side, lost)
    }

    /// Takes the messages for the owners downstream.
    fn take_outbox(&mut self, into: &mut Vec<Outgoing>) {
        self.out.take_outbox(into);
    }

    /// After its checkpoint for `epoch`: the owners downstream align on it.
    fn after_checkpoint(&mut self, epoch: u64) {
        self.out.after_checkpoint(epoch);
    }

    fn on_watermark(&mut self, from: usize, watermark: i64) -> Result<()> {
        let (side, i) = self.input(from);
        let advanced = match side {
            Side::Left => self.left_watermarks.on_watermark(i, watermark),
            Side::Right => self.right_watermarks.on_watermark(i, watermark),
        };
        if advanced.is_some() {
            self.advance()?;
        }
        Ok(())
    }

    fn on_idle(&mut self, from: usize) -> Result<()> {
        let (side, i) = self.input(from);
        let advanced = match side {
            Side::Left => self.left_watermarks.on_idle(i),
            Side::Right => self.right_watermarks.on_idle(i),
        };
        if advanced.is_some() {
            self.advance()?;
        }
        Ok(())
    }

    /// Input `from` has sent a barrier: rows may wait behind it.
    fn on_barrier(&mut self, from: usize) {
        match self.input(from) {
            (Side::Left, i) => self.left_watermarks.on_data(i),
            (Side::Right, i) => self.right_watermarks.on_data(i),
        }
    }

    fn checkpoint(&mut self, writes: &mut Writes) -> Result<()> {
        for side in [Side::Left, Side::Right] {
            let key = self.keys.join_rows(self.instance, side as u8);
            let flags_key = self.keys.join_rows(self.instance, side as u8 + 2);
            let rows = match self.side_mut(side) {
                Held::Timed(rows) => rows,
                Held::Keyed(k) => {
                    k.rows.checkpoint(writes);
                    if std::mem::take(&mut k.legacy) {
                        writes.delete(key);
                        writes.delete(flags_key);
                    }
                    continue;
                }
            };
            let (batch, matched) = rows.snapshot()?;
            if batch.num_rows() == 0 {
                writes.delete(key);
                writes.delete(flags_key);
            } else {
                writes.put(key, encode_batch(&row_codec(&rows.schema)?, &batch)?);
                let flags: Vec<u8> = matched.iter().map(|m| u8::from(*m)).collect();
                writes.put(flags_key, flags);
            }
        }
        // Its shard's rows to come are above its own output watermark
        // (once both sides have ended: none come).
        let (join, left, right) = (&self.join, &self.left_watermarks, &self.right_watermarks);
        self.out.checkpoint(
            || join.output_watermark(left.current(), right.current()),
            &self.metrics,
            Part::Final(self.instance),
            &self.keys,
            writes,
        )
    }

    fn cache_use(&self) -> f64 {
        let view = self.out.cache_use();
        [&self.left, &self.right]
            .into_iter()
            .filter_map(|held| match held {
                Held::Keyed(k) => Some(k.rows.cache_use()),
                Held::Timed(_) => None,
            })
            .fold(view, f64::max)
    }

    fn committed(&mut self) -> Result<()> {
        for held in [&mut self.left, &mut self.right] {
            if let Held::Keyed(k) = held {
                k.rows.committed();
            }
        }
        self.out.committed()
    }
}

/// Keeps the two sides of a join close in event time (Flink's watermark
/// alignment): a side whose watermark runs ahead of the other's by more
/// than a drift waits, so that neither side piles up rows the other cannot
/// meet yet. This matters when both sides have a backlog (a restart, files)
/// and one is read faster. Each side's pipelines publish their watermarks;
/// a reader whose pipeline is ahead of the other side's slowest pipeline
/// waits between batches, still passing checkpoint barriers on. The
/// slowest pipeline of all never waits, so the job always moves.
pub struct Alignment {
    /// Per pipeline (the left side's, then the right side's): its last
    /// watermark; i64::MAX when it is idle or has ended.
    watermarks: Vec<std::sync::atomic::AtomicI64>,
    per_side: usize,
    drift_ms: i64,
}

/// How long a reader that is ahead waits before it looks again.
const ALIGN_POLL: std::time::Duration = std::time::Duration::from_millis(2);

impl Alignment {
    /// For `per_side` pipelines on each side; a side may run `drift_ms`
    /// ahead of the other.
    pub fn new(per_side: usize, drift_ms: i64) -> Self {
        Alignment {
            watermarks: (0..2 * per_side)
                .map(|_| std::sync::atomic::AtomicI64::new(i64::MIN))
                .collect(),
            per_side,
            drift_ms,
        }
    }

    /// Pipeline `n` has reached `watermark`.
    pub fn publish(&self, n: usize, watermark: i64) {
        self.watermarks[n].store(watermark, Ordering::Relaxed);
    }

    /// Whether pipeline `n` is ahead of the other side: its reader waits.
    /// A pipeline without a watermark yet is never ahead; one with a
    /// watermark waits for every pipeline of the other side to have one.
    pub fn ahead(&self, n: usize) -> bool {
        let own = self.watermarks[n].load(Ordering::Relaxed);
        let other = if n < self.per_side {
            self.per_side..2 * self.per_side
        } else {
            0..self.per_side
        };
        let slowest = other
            .map(|i| self.watermarks[i].load(Ordering::Relaxed))
            .min()
            .unwrap_or(i64::MAX);
        own != i64::MIN && own != i64::MAX && own > slowest.saturating_add(self.drift_ms)
    }

    /// Waits while pipeline `n` is ahead, or until `barrier` has a
    /// checkpoint barrier for the reader.
    pub fn wait(&self, n: usize, mut barrier: impl FnMut() -> Option<u64>) -> Option<u64> {
        loop {
            if let Some(epoch) = barrier() {
                return Some(epoch);
            }
            if !self.ahead(n) {
                return None;
            }
            std::thread::sleep(ALIGN_POLL);
        }
    }
}
