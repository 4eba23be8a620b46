//! From the plan's logical expressions to DataFusion physical expressions and
//! accumulators, built once when a job starts and shared by its instances.

use std::borrow::Cow;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch};
use arrow::compute::filter_record_batch;
use arrow::compute::kernels::filter::prep_null_mask_filter;
use arrow::datatypes::{
    DataType, Field, FieldRef, Schema, SchemaRef, TimeUnit, TimestampMillisecondType,
};
use datafusion::common::DFSchemaRef;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::simplify::SimplifyContext;
use datafusion::logical_expr::{EmitTo, Expr, GroupsAccumulator};
use datafusion::optimizer::simplify_expressions::ExprSimplifier;
use datafusion::physical_expr::aggregate::{AggregateFunctionExpr, LoweredAggregateBuilder};
use datafusion::physical_expr::{GroupsAccumulatorAdapter, PhysicalExpr};

use crate::dataflow::lookup_join::LookupJoin;
use crate::dataflow::plan::{AggregatePlan, FireTime, SessionGroups, StatelessOp};
use crate::error::{Error, Result};

/// Turns a planned expression into a physical one: simplified (so that
/// functions like `now()` become constants) and coerced.
pub fn physical_expr(
    state: &SessionState,
    expr: &Expr,
    schema: &DFSchemaRef,
) -> Result<Arc<dyn PhysicalExpr>> {
    let ctx = SimplifyContext::builder()
        .with_schema(schema.clone())
        .with_config_options(Arc::new(state.config_options().as_ref().clone()))
        .build();
    let simplified = ExprSimplifier::new(ctx).simplify(expr.clone())?;
    Ok(state.create_physical_expr(simplified, schema)?)
}

pub fn evaluate(expr: &Arc<dyn PhysicalExpr>, batch: &RecordBatch) -> Result<ArrayRef> {
    Ok(expr.evaluate(batch)?.into_array(batch.num_rows())?)
}

/// Each of `exprs` over `batch`.
pub fn evaluate_all(exprs: &[Arc<dyn PhysicalExpr>], batch: &RecordBatch) -> Result<Vec<ArrayRef>> {
    exprs.iter().map(|e| evaluate(e, batch)).collect()
}

/// A boolean predicate as a filter mask where NULL means false.
pub fn evaluate_mask(expr: &Arc<dyn PhysicalExpr>, batch: &RecordBatch) -> Result<BooleanArray> {
    let array = evaluate(expr, batch)?;
    let mask = array.as_boolean_opt().ok_or_else(|| {
        Error::internal(format!("a predicate evaluated to {}", array.data_type()))
    })?;
    Ok(if mask.null_count() > 0 {
        prep_null_mask_filter(mask)
    } else {
        mask.clone()
    })
}

/// A filter, a projection or a lookup join, ready to run on batches.
pub enum PhysicalOp {
    Filter(Arc<dyn PhysicalExpr>),
    Project {
        exprs: Vec<Arc<dyn PhysicalExpr>>,
        schema: SchemaRef,
    },
    LookupJoin(Box<LookupJoin>),
}

impl PhysicalOp {
    pub fn new(state: &SessionState, op: &StatelessOp) -> Result<Self> {
        Ok(match op {
            StatelessOp::Filter { predicate, input } => {
                PhysicalOp::Filter(physical_expr(state, predicate, input)?)
            }
            StatelessOp::Project {
                exprs,
                input,
                output,
            } => PhysicalOp::Project {
                exprs: exprs
                    .iter()
                    .map(|e| physical_expr(state, e, input))
                    .collect::<Result<_>>()?,
                schema: nullable_schema(output.as_arrow()),
            },
            StatelessOp::LookupJoin(j) => PhysicalOp::LookupJoin(Box::new(LookupJoin::new(
                j.table.clone(),
                j.kind,
                j.stream_keys
                    .iter()
                    .map(|e| physical_expr(state, e, &j.stream))
                    .collect::<Result<_>>()?,
                j.table_ops
                    .iter()
                    .map(|op| PhysicalOp::new(state, op))
                    .collect::<Result<_>>()?,
                j.table_keys
                    .iter()
                    .map(|e| physical_expr(state, e, &j.table_schema))
                    .collect::<Result<_>>()?,
                j.stream_left,
                nullable_schema(j.output.as_arrow()),
            ))),
        })
    }

    pub fn apply(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        match self {
            PhysicalOp::Filter(predicate) => {
                let mask = evaluate_mask(predicate, batch)?;
                Ok(filter_record_batch(batch, &mask)?)
            }
            PhysicalOp::Project { exprs, schema } => {
                let columns = evaluate_all(exprs, batch)?;
                Ok(RecordBatch::try_new(schema.clone(), columns)?)
            }
            PhysicalOp::LookupJoin(join) => join.apply(batch),
        }
    }
}

/// Applies operations in order.
pub fn apply_all(ops: &[PhysicalOp], mut batch: RecordBatch) -> Result<RecordBatch> {
    for op in ops {
        if batch.num_rows() == 0 {
            break;
        }
        batch = op.apply(&batch)?;
    }
    Ok(batch)
}

/// Rows that failed, each with its error.
pub type BadRows = Vec<(RecordBatch, crate::error::Error)>;

/// Runs `f` on a batch; when it fails, runs it row by row, so that one bad
/// row costs a slow batch instead of the job. Returns the results of the
/// good rows (in order) and the rows that failed, with their errors.
pub fn per_row_on_error<T>(
    batch: &RecordBatch,
    f: impl Fn(&RecordBatch) -> Result<T>,
) -> Result<(Vec<T>, BadRows)> {
    match f(batch) {
        Ok(v) => Ok((vec![v], Vec::new())),
        Err(_) => {
            let mut good = Vec::new();
            let mut bad = Vec::new();
            for i in 0..batch.num_rows() {
                let row = batch.slice(i, 1);
                match f(&row) {
                    Ok(v) => good.push(v),
                    Err(e) => bad.push((row, e)),
                }
            }
            Ok((good, bad))
        }
    }
}

/// Counts a row whose expressions could not be evaluated (in the counters
/// of `part`) and keeps it as a dead letter, saying where it was.
pub fn dead_letter(
    dead_letters: &crate::metrics::DeadLetterQueue,
    metrics: &crate::metrics::JobMetrics,
    part: crate::metrics::Part,
    place: String,
    row: &RecordBatch,
    error: &Error,
) {
    metrics
        .part(part)
        .bad_rows
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    dead_letters.push(
        &metrics.name,
        place,
        &row_as_json(row),
        format!("could not evaluate the view's expressions: {error}"),
    );
}

/// A row as one line of JSON (for dead letters).
pub fn row_as_json(row: &RecordBatch) -> Vec<u8> {
    let mut out = Vec::new();
    let mut writer = arrow::json::LineDelimitedWriter::new(&mut out);
    if writer.write(row).is_err() || writer.finish().is_err() {
        return b"(row not printable)".to_vec();
    }
    drop(writer);
    while out.last() == Some(&b'\n') {
        out.pop();
    }
    out
}

/// The same fields, all nullable: results of expressions over streams may
/// be NULL where the planner could not tell.
pub fn nullable_schema(schema: &Schema) -> SchemaRef {
    Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect::<Vec<Field>>(),
    ))
}

/// One aggregate function of an aggregation.
pub struct AggregateFunction {
    pub expr: Arc<AggregateFunctionExpr>,
    /// The arguments, evaluated on the input rows.
    pub args: Vec<Arc<dyn PhysicalExpr>>,
    /// `FILTER (WHERE ...)`.
    pub filter: Option<Arc<dyn PhysicalExpr>>,
    /// Fields of its intermediate state.
    pub state_fields: Vec<FieldRef>,
}

impl AggregateFunction {
    /// A fresh accumulator: DataFusion's vectorized one where the function
    /// has it, else its row accumulator behind the adapter.
    pub fn accumulator(&self) -> Result<Box<dyn GroupsAccumulator>> {
        if self.expr.groups_accumulator_supported() {
            Ok(self.expr.create_groups_accumulator()?)
        } else {
            let expr = self.expr.clone();
            Ok(Box::new(GroupsAccumulatorAdapter::new(move || {
                expr.create_accumulator()
            })))
        }
    }
}

/// An aggregation, ready to run.
pub struct PhysicalAggregate {
    pub group_exprs: Vec<Arc<dyn PhysicalExpr>>,
    /// The group columns.
    pub group_schema: SchemaRef,
    pub functions: Vec<AggregateFunction>,
    /// Partial states: group columns, then every function's state columns.
    pub partial_schema: SchemaRef,
    /// Results: group columns, then one column per function.
    pub output_schema: SchemaRef,
    pub fire_time: Option<FireTime>,
    pub routing: Vec<usize>,
    pub session: Option<SessionGroups>,
    /// See [`AggregatePlan::allowed_lateness`].
    pub allowed_lateness: i64,
    /// See [`AggregatePlan::rows_count`].
    pub rows_count: Option<usize>,
}

impl PhysicalAggregate {
    pub fn new(state: &SessionState, plan: &AggregatePlan) -> Result<Self> {
        let group_exprs = plan
            .group_exprs
            .iter()
            .map(|e| physical_expr(state, e, &plan.input))
            .collect::<Result<Vec<_>>>()?;
        let output = plan.output.as_arrow();
        let groups = plan.group_exprs.len();
        let group_fields: Vec<Field> = output.fields()[..groups]
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect();
        let input_arrow = plan.input.as_arrow();
        let planning =
            datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext::default();
        let mut functions = Vec::new();
        let mut partial_fields = group_fields.clone();
        for (i, e) in plan.aggr_exprs.iter().enumerate() {
            let lowered = LoweredAggregateBuilder::new(
                e,
                &plan.input,
                input_arrow,
                state.execution_props(),
                &planning,
            )
            .build()?;
            if !lowered.order_bys.is_empty()
                && !lowered.aggregate.fun().supports_within_group_clause()
            {
                return Err(Error::not_supported(
                    "ordered aggregates are not supported yet",
                ));
            }
            let state_fields = lowered.aggregate.state_fields()?;
            for (j, f) in state_fields.iter().enumerate() {
                partial_fields.push(Field::new(format!("s{i}_{j}"), f.data_type().clone(), true));
            }
            functions.push(AggregateFunction {
                args: lowered.aggregate.expressions(),
                expr: lowered.aggregate,
                filter: lowered.filter,
                state_fields,
            });
        }
        Ok(PhysicalAggregate {
            group_exprs,
            group_schema: Arc::new(Schema::new(group_fields)),
            functions,
            partial_schema: Arc::new(Schema::new(partial_fields)),
            output_schema: nullable_schema(output),
            fire_time: plan.fire_time,
            routing: plan.routing.clone(),
            session: plan.session.clone(),
            allowed_lateness: plan.allowed_lateness,
            rows_count: plan.rows_count,
        })
    }

    pub fn group_count(&self) -> usize {
        self.group_exprs.len()
    }

    pub fn accumulators(&self) -> Result<Vec<Box<dyn GroupsAccumulator>>> {
        self.functions.iter().map(|f| f.accumulator()).collect()
    }

    /// The range of partial-state columns holding function `i`'s state.
    pub fn state_columns(&self, i: usize) -> std::ops::Range<usize> {
        let start = self.group_count()
            + self.functions[..i]
                .iter()
                .map(|f| f.state_fields.len())
                .sum::<usize>();
        start..start + self.functions[i].state_fields.len()
    }

    /// Merges partial states into `accumulators`: row r of `states` goes
    /// into group `groups[r]`.
    pub fn merge(
        &self,
        accumulators: &mut [Box<dyn GroupsAccumulator>],
        states: &[ArrayRef],
        groups: &[usize],
        total_groups: usize,
    ) -> Result<()> {
        let base = self.group_count();
        for (i, acc) in accumulators.iter_mut().enumerate() {
            let cols = self.state_columns(i);
            acc.merge_batch(
                &states[cols.start - base..cols.end - base],
                groups,
                total_groups,
            )?;
        }
        Ok(())
    }

    /// Takes the states of all groups, resetting the accumulators.
    pub fn take_states(
        &self,
        accumulators: &mut [Box<dyn GroupsAccumulator>],
    ) -> Result<Vec<ArrayRef>> {
        let mut out = Vec::new();
        for acc in accumulators.iter_mut() {
            out.extend(acc.state(EmitTo::All)?);
        }
        Ok(out)
    }

    /// Takes the results of all groups, resetting the accumulators.
    pub fn take_results(
        &self,
        accumulators: &mut [Box<dyn GroupsAccumulator>],
    ) -> Result<Vec<ArrayRef>> {
        accumulators
            .iter_mut()
            .map(|acc| Ok(acc.evaluate(EmitTo::All)?))
            .collect()
    }
}

/// A timestamp column as milliseconds since the epoch.
pub fn millis(array: &ArrayRef) -> Result<Cow<'_, [i64]>> {
    match array.data_type() {
        DataType::Timestamp(TimeUnit::Millisecond, _) => Ok(Cow::Borrowed(
            array
                .as_primitive::<TimestampMillisecondType>()
                .values()
                .as_ref(),
        )),
        DataType::Timestamp(_, tz) => {
            let cast = arrow::compute::cast(
                array,
                &DataType::Timestamp(TimeUnit::Millisecond, tz.clone()),
            )?;
            Ok(Cow::Owned(
                cast.as_primitive::<TimestampMillisecondType>()
                    .values()
                    .to_vec(),
            ))
        }
        other => Err(Error::internal(format!("a time column of type {other}"))),
    }
}
