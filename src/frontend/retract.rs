//! Aggregations over a view whose rows change.
//!
//! Such a view is read as its changes by key. The pipeline keeps each
//! upstream key's last row, so a change becomes the old row with sign -1
//! (when the key had one) and the new row with sign +1 (unless the key was
//! deleted), in a column `__sign`. Aggregates that can take rows back by
//! adding are rewritten into sums of signed values, so the usual two-phase
//! aggregation runs them unchanged:
//!
//! ```text
//! COUNT(x)  ->  SUM(__sign) FILTER (WHERE x IS NOT NULL), 0 when NULL
//! SUM(x)    ->  SUM(±x), and n = SUM(__sign) FILTER (WHERE x IS NOT NULL):
//!               NULL when n = 0
//! AVG(x)    ->  SUM(±x) / n
//! MIN, MAX  ->  the multiset of values with their counts (`retract_min`)
//! ```
//!
//! A hidden `SUM(__sign)` counts each group's rows: a group whose last row
//! is taken back is deleted from the view. A projection after the
//! aggregation turns the sums into the functions' results, under the names
//! and types the query gave them.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::{Column, DFSchema, DFSchemaRef};
use datafusion::execution::SessionState;
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::{lit, when, EmptyRelation, Expr, LogicalPlan, LogicalPlanBuilder};

use crate::dataflow::plan::StatelessOp;
use crate::dataflow::retract::SIGN;
use crate::error::{Error, Result};
use crate::frontend::planner::AggregateNode;

/// The rewritten aggregation, and the projection that finishes its results.
pub struct Retracting {
    pub aggregate: AggregateNode,
    pub finish: StatelessOp,
    /// Which aggregate counts each group's rows.
    pub rows_count: usize,
}

/// Rewrites an aggregation over the changes of `upstream` (see the module
/// doc).
pub fn rewrite(state: &SessionState, agg: &AggregateNode, upstream: &str) -> Result<Retracting> {
    if agg.input.fields().iter().any(|f| f.name() == SIGN) {
        return Err(Error::not_supported(format!(
            "a column named \"{SIGN}\" is reserved in an aggregation over \"{upstream}\""
        )));
    }
    let sign_schema =
        DFSchema::try_from(Schema::new(vec![Field::new(SIGN, DataType::Int64, false)]))?;
    let input = Arc::new(agg.input.join(&sign_schema)?);
    let sign = || Expr::Column(Column::new_unqualified(SIGN));
    let signed = |x: Expr| -> Result<Expr> {
        Ok(when(sign().lt(lit(0i64)), Expr::Negative(Box::new(x.clone()))).otherwise(x)?)
    };
    let sum = |arg: Expr, filter: Option<Expr>| {
        Expr::AggregateFunction(AggregateFunction::new_udf(
            datafusion::functions_aggregate::sum::sum_udaf(),
            vec![arg],
            false,
            filter.map(Box::new),
            Vec::new(),
            None,
        ))
    };
    let and = |a: Option<Expr>, b: Expr| Some(a.map(|a| a.and(b.clone())).unwrap_or(b));

    let mut aggregates: Vec<Expr> = Vec::new();
    let mut finals: Vec<Expr> = Vec::new();
    let groups = agg.group_exprs.len();
    for (i, e) in agg.aggr_exprs.iter().enumerate() {
        let (qualifier, field) = agg.output.qualified_field(groups + i);
        let Expr::AggregateFunction(f) = e.clone().unalias() else {
            return Err(Error::internal(format!(
                "aggregate expression {e} is not an aggregate function"
            )));
        };
        let name = f.func.name().to_ascii_lowercase();
        if f.params.distinct {
            return Err(Error::not_supported(format!(
                "{}(DISTINCT ...) over \"{upstream}\" is not supported yet: its rows change, and a distinct aggregate cannot take rows back",
                name.to_uppercase()
            )));
        }
        let filter = f.params.filter.map(|b| *b);
        // Rows where every argument is set (what COUNT counts).
        let present = f
            .params
            .args
            .iter()
            .filter(|a| !matches!(a, Expr::Literal(v, _) if !v.is_null()))
            .fold(filter.clone(), |acc, a| and(acc, a.clone().is_not_null()));
        let column =
            |suffix: &str| Expr::Column(Column::new_unqualified(format!("__a{i}_{suffix}")));
        let result = match name.as_str() {
            "count" => {
                aggregates.push(sum(sign(), present).alias(format!("__a{i}_n")));
                datafusion::functions::expr_fn::coalesce(vec![column("n"), lit(0i64)])
            }
            "sum" | "avg" | "mean" => {
                let [x] = f.params.args.as_slice() else {
                    return Err(Error::internal(format!("{name} takes one argument")));
                };
                let x = match name.as_str() {
                    "sum" => x.clone(),
                    _ => Expr::Cast(datafusion::logical_expr::Cast::new(
                        Box::new(x.clone()),
                        DataType::Float64,
                    )),
                };
                aggregates.push(sum(signed(x)?, filter.clone()).alias(format!("__a{i}_s")));
                aggregates.push(sum(sign(), present).alias(format!("__a{i}_n")));
                let value = match name.as_str() {
                    "sum" => column("s"),
                    _ => column("s") / Expr::Cast(datafusion::logical_expr::Cast::new(
                        Box::new(column("n")),
                        DataType::Float64,
                    )),
                };
                when(
                    column("n").is_null().or(column("n").eq(lit(0i64))),
                    Expr::Literal(datafusion::common::ScalarValue::Null, None),
                )
                .otherwise(value)?
            }
            "min" | "max" => {
                let [x] = f.params.args.as_slice() else {
                    return Err(Error::internal(format!("{name} takes one argument")));
                };
                let udaf = crate::functions::retract_extreme(&name == "max");
                aggregates.push(
                    Expr::AggregateFunction(AggregateFunction::new_udf(
                        udaf,
                        vec![x.clone(), sign()],
                        false,
                        filter.map(Box::new),
                        Vec::new(),
                        None,
                    ))
                    .alias(format!("__a{i}_m")),
                );
                column("m")
            }
            other => {
                return Err(Error::not_supported(format!(
                    "{} over \"{upstream}\" is not supported yet: its rows change, and only COUNT, SUM, AVG, MIN and MAX can take rows back",
                    other.to_uppercase()
                )))
            }
        };
        finals.push(
            Expr::Cast(datafusion::logical_expr::Cast::new(
                Box::new(result),
                field.data_type().clone(),
            ))
            .alias_qualified(qualifier.cloned(), field.name()),
        );
    }
    let rows_count = aggregates.len();
    aggregates.push(sum(sign(), None).alias("__rows"));

    let empty = LogicalPlan::EmptyRelation(EmptyRelation {
        produce_one_row: false,
        schema: input,
    });
    let built = LogicalPlanBuilder::from(empty)
        .aggregate(agg.group_exprs.clone(), aggregates)?
        .build()?;
    let group_columns: Vec<Expr> = (0..groups)
        .map(|g| Expr::Column(Column::from(built.schema().qualified_field(g))))
        .collect();
    let plan = LogicalPlanBuilder::from(built)
        .project(group_columns.into_iter().chain(finals))?
        .build()?;
    let plan = state
        .analyzer()
        .execute_and_check(plan, state.config_options(), |_, _| {})?;
    let LogicalPlan::Projection(projection) = &plan else {
        return Err(Error::internal(
            "the rewritten aggregation lost its projection",
        ));
    };
    let LogicalPlan::Aggregate(aggregate) = projection.input.as_ref() else {
        return Err(Error::internal(
            "the rewritten aggregation lost its aggregate",
        ));
    };
    for (new, old) in projection.schema.fields().iter().zip(agg.output.fields()) {
        if new.name() != old.name() || new.data_type() != old.data_type() {
            return Err(Error::internal(format!(
                "the rewritten aggregation changed column {} to {}",
                old, new
            )));
        }
    }
    let output: DFSchemaRef = aggregate.schema.clone();
    Ok(Retracting {
        finish: StatelessOp::Project {
            exprs: projection.expr.clone(),
            input: output.clone(),
            output: projection.schema.clone(),
        },
        aggregate: AggregateNode {
            input: aggregate.input.schema().clone(),
            group_exprs: aggregate.group_expr.clone(),
            aggr_exprs: aggregate.aggr_expr.clone(),
            output,
        },
        rows_count,
    })
}
