//! PartialAggregate: the first phase of a two-phase aggregation, inside each
//! instance's pipeline.
//!
//! Input: rows (with window columns when windowed).
//! Output: partial states, one row per group seen since the last flush:
//! `[group columns..., state columns...]`, routed by the hash of the group's
//! routing columns to the instance of [`WindowAggregate`] that owns it. For
//! SESSION windows the overlapping windows of a partition are merged first:
//! one row per piece of a session.
//! State: DataFusion's group hash table and `GroupsAccumulator`s for the rows
//! since the last flush (bounded: flushed every flush interval and when it
//! holds too many groups).
//! Watermarks: none of its own; the pipeline flushes before it forwards one.
//! Checkpoint: flushes (its state is transient).
//!
//! [`WindowAggregate`]: crate::dataflow::window_aggregate::WindowAggregate

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, UInt32Array};
use arrow::compute::take_record_batch;
use datafusion::common::hash_utils::{create_hashes, RandomState};
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};
use datafusion::physical_plan::aggregates::group_values::{new_group_values, GroupValues};
use datafusion::physical_plan::aggregates::order::GroupOrdering;

use arrow::row::{RowConverter, SortField};

use crate::dataflow::physical::{evaluate, evaluate_mask, PhysicalAggregate};
use crate::dataflow::plan::SessionGroups;
use crate::dataflow::window_aggregate::timestamps_ms;
use crate::error::Result;

/// Flush early when this many groups are pending.
pub const MAX_PENDING_GROUPS: usize = 64 * 1024;

/// The hash that routes a group to its owner: fixed, so every instance (and
/// later every server) agrees.
const ROUTING_HASH: RandomState = RandomState::with_seed(0x51_u64 << 32 | 0xCE);

/// The evaluated inputs of an update: group keys, and per function its
/// arguments and FILTER mask.
pub struct UpdateInputs {
    keys: Vec<ArrayRef>,
    args: Vec<Vec<ArrayRef>>,
    filters: Vec<Option<arrow::array::BooleanArray>>,
}

pub struct PartialAggregate {
    agg: Arc<PhysicalAggregate>,
    groups: Box<dyn GroupValues>,
    accumulators: Vec<Box<dyn GroupsAccumulator>>,
    group_ids: Vec<usize>,
    /// For SESSION windows: the partition columns' row format (None when
    /// the sessions are not partitioned).
    partitions: Option<RowConverter>,
}

impl PartialAggregate {
    pub fn new(agg: Arc<PhysicalAggregate>) -> Result<Self> {
        let partitions = match &agg.session {
            Some(session) if !session.partition.is_empty() => Some(RowConverter::new(
                session
                    .partition
                    .iter()
                    .map(|i| SortField::new(agg.group_schema.field(*i).data_type().clone()))
                    .collect(),
            )?),
            _ => None,
        };
        Ok(PartialAggregate {
            partitions,
            groups: new_group_values(agg.group_schema.clone(), &GroupOrdering::None)?,
            accumulators: agg.accumulators()?,
            agg,
            group_ids: Vec::new(),
        })
    }

    pub fn pending_groups(&self) -> usize {
        self.groups.len()
    }

    /// Evaluates everything the update needs (group keys, arguments,
    /// filters) without touching the state, so a failure leaves it intact.
    pub fn inputs(&self, batch: &RecordBatch) -> Result<UpdateInputs> {
        let keys = self
            .agg
            .group_exprs
            .iter()
            .map(|e| evaluate(e, batch))
            .collect::<Result<Vec<ArrayRef>>>()?;
        let mut args = Vec::with_capacity(self.agg.functions.len());
        let mut filters = Vec::with_capacity(self.agg.functions.len());
        for f in &self.agg.functions {
            args.push(
                f.args
                    .iter()
                    .map(|e| evaluate(e, batch))
                    .collect::<Result<Vec<ArrayRef>>>()?,
            );
            filters.push(match &f.filter {
                Some(p) => Some(evaluate_mask(p, batch)?),
                None => None,
            });
        }
        Ok(UpdateInputs {
            keys,
            args,
            filters,
        })
    }

    /// Adds rows to the pending groups.
    pub fn update(&mut self, inputs: UpdateInputs) -> Result<()> {
        if inputs.keys.first().map(|k| k.is_empty()).unwrap_or(true) {
            return Ok(());
        }
        self.groups.intern(&inputs.keys, &mut self.group_ids)?;
        let total = self.groups.len();
        for ((acc, args), filter) in self
            .accumulators
            .iter_mut()
            .zip(&inputs.args)
            .zip(&inputs.filters)
        {
            acc.update_batch(args, &self.group_ids, filter.as_ref(), total)?;
        }
        Ok(())
    }

    /// Takes the partial states of every pending group.
    pub fn flush(&mut self) -> Result<Option<RecordBatch>> {
        if self.groups.is_empty() {
            return Ok(None);
        }
        let mut columns = self.groups.emit(EmitTo::All)?;
        // Emitting does not reset every kind of group table; this does (as
        // DataFusion's own hash aggregation does after emitting all).
        self.groups
            .clear_shrink(MAX_PENDING_GROUPS.min(columns[0].len()));
        columns.extend(self.agg.take_states(&mut self.accumulators)?);
        let batch = RecordBatch::try_new(self.agg.partial_schema.clone(), columns)?;
        match self.agg.session.clone() {
            Some(session) => Ok(Some(self.merge_sessions(batch, &session)?)),
            None => Ok(Some(batch)),
        }
    }

    /// Merges the overlapping session windows of each partition (one per
    /// row time until now), so that the owner gets one partial state per
    /// piece of a session rather than per row.
    fn merge_sessions(
        &mut self,
        batch: RecordBatch,
        session: &SessionGroups,
    ) -> Result<RecordBatch> {
        let n = batch.num_rows();
        let starts = timestamps_ms(batch.column(session.start))?;
        let ends = timestamps_ms(batch.column(session.end))?;
        let keys = match &self.partitions {
            Some(converter) => {
                let columns: Vec<ArrayRef> = session
                    .partition
                    .iter()
                    .map(|i| batch.column(*i).clone())
                    .collect();
                Some(converter.convert_columns(&columns)?)
            }
            None => None,
        };
        let key = |i: usize| -> &[u8] {
            match &keys {
                Some(rows) => rows.row(i).data(),
                None => &[],
            }
        };
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_unstable_by(|a, b| key(*a).cmp(key(*b)).then(starts[*a].cmp(&starts[*b])));
        // (start, end, a row of it) per merged window.
        let mut windows: Vec<(i64, i64, usize)> = Vec::new();
        let mut group_of = vec![0usize; n];
        for i in order {
            match windows.last_mut() {
                Some(last) if key(last.2) == key(i) && starts[i] < last.1 => {
                    last.1 = last.1.max(ends[i]);
                }
                _ => windows.push((starts[i], ends[i], i)),
            }
            group_of[i] = windows.len() - 1;
        }
        if windows.len() == n {
            return Ok(batch);
        }
        let total = windows.len();
        let groups = self.agg.group_count();
        self.agg.merge(
            &mut self.accumulators,
            &batch.columns()[groups..],
            &group_of,
            total,
        )?;
        let picked = UInt32Array::from_iter_values(windows.iter().map(|w| w.2 as u32));
        let spans: Vec<(i64, i64)> = windows.iter().map(|w| (w.0, w.1)).collect();
        let mut columns = crate::dataflow::session::group_columns(
            &self.agg.group_schema,
            session,
            &spans,
            |i| Ok(arrow::compute::take(batch.column(i), &picked, None)?),
        )?;
        columns.extend(self.agg.take_states(&mut self.accumulators)?);
        Ok(RecordBatch::try_new(
            self.agg.partial_schema.clone(),
            columns,
        )?)
    }
}

/// Splits partial states by owner: entry i holds the rows owned by instance
/// i (None when it has none).
pub fn route(
    batch: &RecordBatch,
    routing: &[usize],
    owners: usize,
    hashes: &mut Vec<u64>,
) -> Result<Vec<Option<RecordBatch>>> {
    if owners == 1 {
        return Ok(vec![Some(batch.clone())]);
    }
    hashes.clear();
    hashes.resize(batch.num_rows(), 0);
    let columns: Vec<&ArrayRef> = routing.iter().map(|i| batch.column(*i)).collect();
    create_hashes(columns, &ROUTING_HASH, hashes)?;
    let mut picks: Vec<Vec<u32>> = vec![Vec::new(); owners];
    for (row, h) in hashes.iter().enumerate() {
        picks[(*h % owners as u64) as usize].push(row as u32);
    }
    picks
        .into_iter()
        .map(|rows| {
            if rows.is_empty() {
                Ok(None)
            } else if rows.len() == batch.num_rows() {
                Ok(Some(batch.clone()))
            } else {
                Ok(Some(take_record_batch(batch, &UInt32Array::from(rows))?))
            }
        })
        .collect()
}
