//! PartialAggregate: the first phase of a two-phase aggregation, inside each
//! instance's pipeline.
//!
//! Input: rows (with window columns when windowed).
//! Output: partial states, one row per group seen since the last flush:
//! `[group columns..., state columns...]`, routed by the hash of the group's
//! routing columns to the instance of [`WindowAggregate`] that owns it.
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

use crate::dataflow::physical::{
    apply_all, evaluate_all, evaluate_mask, per_row_on_error, BadRows, PhysicalAggregate,
    PhysicalOp,
};
use crate::error::Result;
use datafusion::physical_expr::PhysicalExpr;

/// Flush early when this many groups are pending.
pub const MAX_PENDING_GROUPS: usize = 64 * 1024;

/// The hash that routes a group to its owner: fixed, so every instance (and
/// later every server) agrees.
pub(crate) const ROUTING_HASH: RandomState = RandomState::with_seed(0x51_u64 << 32 | 0xCE);

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
}

impl PartialAggregate {
    pub fn new(agg: Arc<PhysicalAggregate>) -> Result<Self> {
        Ok(PartialAggregate {
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
        let keys = evaluate_all(&self.agg.group_exprs, batch)?;
        let mut args = Vec::with_capacity(self.agg.functions.len());
        let mut filters = Vec::with_capacity(self.agg.functions.len());
        for f in &self.agg.functions {
            args.push(evaluate_all(&f.args, batch)?);
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
        Ok(Some(RecordBatch::try_new(
            self.agg.partial_schema.clone(),
            columns,
        )?))
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
    let columns: Vec<ArrayRef> = routing.iter().map(|i| batch.column(*i).clone()).collect();
    route_by(batch, &columns, owners, hashes)
}

/// Splits a batch by owner: by the hash of `keys`, the values of an
/// expression per row. Without keys, every row goes to the first owner.
/// Routes rows to the owners of their keys: the operations `ops` first,
/// then each row to the owner of its `keys` (over the rows the operations
/// make), handed to `send` with the owner's number. Returns the rows whose
/// expressions could not be evaluated; the others go on.
pub fn route_rows(
    batch: &RecordBatch,
    ops: &[PhysicalOp],
    keys: &[Arc<dyn PhysicalExpr>],
    owners: usize,
    hashes: &mut Vec<u64>,
    mut send: impl FnMut(usize, RecordBatch),
) -> Result<BadRows> {
    let (parts, bad) = per_row_on_error(batch, |b| {
        let rows = apply_all(ops, b.clone())?;
        let arrays = evaluate_all(keys, &rows)?;
        Ok((rows, arrays))
    })?;
    for (rows, arrays) in parts {
        if rows.num_rows() == 0 {
            continue;
        }
        for (owner, part) in route_by(&rows, &arrays, owners, hashes)?
            .into_iter()
            .enumerate()
        {
            if let Some(part) = part {
                send(owner, part);
            }
        }
    }
    Ok(bad)
}

pub fn route_by(
    batch: &RecordBatch,
    keys: &[ArrayRef],
    owners: usize,
    hashes: &mut Vec<u64>,
) -> Result<Vec<Option<RecordBatch>>> {
    if owners == 1 || keys.is_empty() {
        let mut parts = vec![None; owners];
        parts[0] = Some(batch.clone());
        return Ok(parts);
    }
    hashes.clear();
    hashes.resize(batch.num_rows(), 0);
    create_hashes(keys, &ROUTING_HASH, hashes)?;
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

/// How rows go on to the owner instances downstream.
pub enum Onward {
    /// Pre-aggregated, each group to the aggregation instance that owns
    /// it, by its routing group columns.
    Aggregate {
        partial: PartialAggregate,
        routing: Vec<usize>,
    },
    /// Each row to the instance that owns its key (a join's side, a
    /// top-N's partition).
    Partition { keys: Vec<Arc<dyn PhysicalExpr>> },
}

impl Onward {
    /// Sends `rows`, through `ops`, to their owners among `owners` (into
    /// `outbox`); returns the rows whose expressions failed. With `sign`,
    /// rows that change: added (+1) or taken back (-1) from the
    /// aggregation above (see `frontend/retract.rs`).
    pub fn send(
        &mut self,
        rows: &RecordBatch,
        ops: &[PhysicalOp],
        sign: Option<i64>,
        owners: usize,
        hashes: &mut Vec<u64>,
        outbox: &mut Vec<crate::dataflow::owner::Outgoing>,
    ) -> Result<BadRows> {
        use crate::dataflow::message::Message;
        match self {
            Onward::Aggregate { partial, routing } => {
                let (parts, bad) = per_row_on_error(rows, |b| {
                    let rows = apply_all(ops, b.clone())?;
                    match sign {
                        Some(sign) => {
                            partial.inputs(&crate::dataflow::retract::with_sign(rows, sign)?)
                        }
                        None => partial.inputs(&rows),
                    }
                })?;
                for inputs in parts {
                    partial.update(inputs)?;
                }
                if let Some(states) = partial.flush()? {
                    let parts = route(&states, routing, owners, hashes)?;
                    for (owner, part) in parts.into_iter().enumerate() {
                        if let Some(part) = part {
                            outbox.push((Some(owner), Message::Batch(part)));
                        }
                    }
                }
                Ok(bad)
            }
            Onward::Partition { .. } if sign.is_some() => Err(crate::error::Error::internal(
                "rows that change sent to a stage that takes only rows added",
            )),
            Onward::Partition { keys } => {
                route_rows(rows, ops, keys, owners, hashes, |owner, part| {
                    outbox.push((Some(owner), Message::Batch(part)))
                })
            }
        }
    }
}
