//! Plans a join of two streams: an interval join or a window join, the
//! joins whose state the watermarks bound (Flink's two kinds), inner or
//! outer (an outer join's ON takes only the keys and the time bound); or,
//! with neither, a regular inner join, which keeps every row for any row
//! to come (its pairs have no event time).
//!
//! The join's conditions (ON, and an inner join's WHERE right above it)
//! are sorted into three kinds: equalities between the two sides (the keys
//! rows are exchanged by), comparisons of the two sides' event times (the
//! interval), and the rest (a filter on the joined rows). Without an
//! interval, the keys must pair the two sides' windows (`window_end`, or
//! `window_start` of windows of one size): a window join, whose rows meet
//! only in the same window.

use std::collections::HashMap;

use arrow::datatypes::Schema;
use datafusion::common::{Column, DFSchemaRef};
use datafusion::logical_expr::Expr;
use datafusion::logical_expr::{Between, BinaryExpr, ExprSchemable, JoinType, Operator};

use crate::dataflow::plan::{
    literal_interval_ms, JoinTime, Node, Side, StatelessOp, StreamJoinPlan,
};
use crate::dataflow::window::WindowKind;
use crate::error::{sqlstate, Error, Result};
use crate::frontend::planner::{
    check_exprs, key_pair, JoinNode, Shape, WINDOW_END, WINDOW_START, WINDOW_TIME,
};

const NO_TIME_BOUND_EXAMPLES: &str = "a time bound: an interval on both event times (a.ts BETWEEN b.ts - INTERVAL '1' MINUTE AND b.ts + INTERVAL '1' MINUTE), or the same window on both sides (a.window_start = b.window_start AND a.window_end = b.window_end)";

/// The join, and the filter on joined rows of its conditions that are
/// neither keys nor the interval. `inputs` are the scans of the sources
/// the view reads, by name.
pub(crate) fn plan_join(
    node: JoinNode,
    inputs: &HashMap<String, Node>,
) -> Result<(StreamJoinPlan, Option<StatelessOp>)> {
    let JoinNode {
        join,
        conditions,
        left,
        right,
    } = node;
    let semi = join.join_type == JoinType::LeftSemi;
    let (outer_left, outer_right) = match join.join_type {
        JoinType::Inner | JoinType::LeftSemi => (false, false),
        JoinType::Left => (true, false),
        JoinType::Right => (false, true),
        JoinType::Full => (true, true),
        JoinType::RightSemi | JoinType::LeftAnti | JoinType::RightAnti => {
            return Err(Error::not_supported(
                "a NOT IN or NOT EXISTS subquery over a stream (an anti join of two streams) is not supported yet: a row shown would have to be taken back when a match comes; subqueries over ordinary tables are",
            ))
        }
        other => {
            return Err(Error::not_supported(format!(
                "{} JOIN of two streams is not supported; use JOIN, LEFT, RIGHT or FULL JOIN",
                other.to_string().to_uppercase()
            )))
        }
    };
    let left_in = plan_side(left, inputs, false)?;
    let right_in = plan_side(right, inputs, false)?;
    let ls = join.left.schema().clone();
    let rs = join.right.schema().clone();

    let mut keys: Vec<(Expr, Expr)> = join.on.clone();
    let mut bounds: Vec<Bound> = Vec::new();
    let mut rest: Vec<Expr> = Vec::new();
    let filter = join
        .filter
        .iter()
        .flat_map(datafusion::logical_expr::utils::split_conjunction)
        .cloned();
    for conjunct in filter.chain(conditions) {
        if let Some(pair) = key_pair(&conjunct, &ls, &rs) {
            keys.push(pair);
        } else if let Some(bound) = time_bound(&conjunct, &ls, &rs) {
            bounds.push(bound);
        } else {
            rest.push(conjunct);
        }
    }
    let (left_keys, right_keys): (Vec<Expr>, Vec<Expr>) = keys.iter().cloned().unzip();
    check_exprs(&left_keys)?;
    check_exprs(&right_keys)?;
    check_exprs(&rest)?;
    for (l, r) in &keys {
        let (lt, rt) = (l.get_type(&ls)?, r.get_type(&rs)?);
        if lt != rt {
            return Err(Error::user(
                sqlstate::DATATYPE_MISMATCH,
                format!("the join keys {l} ({lt}) and {r} ({rt}) have different types; cast one"),
            ));
        }
    }

    let (left_time, right_time, lower_ms, upper_ms, windowed) = if bounds.is_empty() {
        match window_times(&keys, &ls, &left_in, &rs, &right_in)? {
            Some((l, r)) => (Some(l), Some(r), 0, 0, true),
            // A regular join: every row is kept, for any row to come.
            None if outer_left || outer_right => {
                return Err(Error::not_supported(format!(
                    "an outer join of two streams without a time bound is not supported yet: a row shown padded would have to be taken back when a match comes; join with JOIN, or give {NO_TIME_BOUND_EXAMPLES}"
                )))
            }
            None if keys.is_empty() => {
                return Err(Error::not_supported(
                    "a join of two streams needs equal keys (a cross join keeps every pair of rows)",
                ))
            }
            None => (None, None, i64::MIN, i64::MAX, false),
        }
    } else {
        let first = &bounds[0];
        if let Some(other) = bounds.iter().find(|b| {
            b.left.flat_name() != first.left.flat_name()
                || b.right.flat_name() != first.right.flat_name()
        }) {
            return Err(Error::not_supported(format!(
                "an interval join compares one time column of each side, not {} - {} and {} - {}",
                first.left, first.right, other.left, other.right
            )));
        }
        let lower = bounds.iter().map(|b| b.lower).max().expect("a bound");
        let upper = bounds.iter().map(|b| b.upper).min().expect("a bound");
        if lower == i64::MIN || upper == i64::MAX {
            return Err(Error::not_supported(format!(
                "an interval join needs a lower and an upper bound on {} - {}; give {NO_TIME_BOUND_EXAMPLES}",
                first.left, first.right
            )));
        }
        let l = event_time(&first.left, &ls, &left_in)?;
        let r = event_time(&first.right, &rs, &right_in)?;
        (Some(l), Some(r), lower, upper, false)
    };
    if semi && (windowed || left_time.is_some() || !rest.is_empty()) {
        return Err(Error::not_supported(
            "an IN or EXISTS subquery over a stream may relate its rows to the view's only by equalities, with no time bound or window (WHERE s.id = e.id)",
        ));
    }
    if (outer_left || outer_right) && !rest.is_empty() {
        // A condition that decides whether two rows meet is not a filter
        // on the joined rows of an outer join.
        return Err(Error::not_supported(
            "an outer join of two streams takes only equal keys and the time bound in its ON; filter its rows in WHERE",
        ));
    }
    let residual =
        datafusion::logical_expr::utils::conjunction(rest).map(|predicate| StatelessOp::Filter {
            predicate,
            input: join.schema.clone(),
        });
    let plan = StreamJoinPlan {
        left: left_in,
        right: right_in,
        left_schema: ls,
        right_schema: rs,
        left_keys,
        right_keys,
        left_time,
        right_time,
        lower_ms,
        upper_ms,
        windowed,
        outer_left,
        outer_right,
        semi,
        output: join.schema.clone(),
        output_time: None,
    };
    Ok((plan, residual))
}

/// A side of a join of two streams: a source read through an optional
/// window, its filters and projections; a join of two streams; or the final
/// rows of a windowed aggregation of either (a join after GROUP BY).
///
/// With `changes_ok` (the rows under a view's aggregation, which takes
/// rows back), its aggregation may be one whose rows change.
pub(crate) fn plan_side(
    shape: Shape,
    inputs: &HashMap<String, Node>,
    changes_ok: bool,
) -> Result<Node> {
    if shape.rank.is_some() {
        return Err(Error::not_supported(
            "a join of the first rows of each partition (ROW_NUMBER() OVER) is not supported yet: its rows move in rank",
        ));
    }
    let Shape {
        pre,
        aggregate,
        post,
        scan,
        join,
        below,
        union,
        ..
    } = shape;
    let mut input = match (join, below, union) {
        (_, Some(below), _) => plan_side(*below, inputs, false)?,
        (None, None, Some((shapes, schema))) => plan_union(shapes, &schema, inputs)?,
        (Some(node), None, _) => {
            let (join, residual) = plan_join(*node, inputs)?;
            Node {
                kind: crate::dataflow::plan::NodeKind::Join(Box::new(join)),
                ops: residual.into_iter().collect(),
            }
        }
        (None, None, None) => {
            let name = scan.ok_or_else(|| Error::internal("a side of a join reads no table"))?;
            inputs.get(&name).cloned().ok_or_else(|| {
                Error::not_supported("each side of a join of two streams must read a source")
            })?
        }
    };
    input.ops.extend(pre);
    let Some(agg) = aggregate else {
        return Ok(input);
    };
    let mut post = post;
    let agg = crate::frontend::planner::finish_aggregate(agg, &mut post)?;
    let mut plan = crate::frontend::planner::aggregate_plan(
        &agg,
        &input.ops,
        input.window(),
        input.as_scan().is_some(),
    )?;
    if plan.fire_time.is_some() {
        // Windows show their rows when they close, as Flink's window
        // aggregations do: final rows.
        plan.emit = crate::dataflow::plan::EmitMode::OnWindowClose;
    }
    if !plan.final_rows_only() && !changes_ok {
        return Err(Error::not_supported(
            "an aggregation below a join or another aggregation must be over TUMBLE, HOP or CUMULATE windows (GROUP BY window_start, window_end), whose rows are final when their window closes: the rows of other aggregations change, and joining or aggregating changing rows in one view is not supported yet",
        ));
    }
    Ok(Node {
        kind: crate::dataflow::plan::NodeKind::Aggregate {
            input: Box::new(input),
            plan: Box::new(plan),
        },
        ops: post,
    })
}

/// `UNION ALL` of its inputs' rows, each planned as a side is.
pub(crate) fn plan_union(
    shapes: Vec<Shape>,
    schema: &DFSchemaRef,
    inputs: &HashMap<String, Node>,
) -> Result<Node> {
    let nodes = shapes
        .into_iter()
        .map(|s| plan_side(s, inputs, false))
        .collect::<Result<Vec<_>>>()?;
    for node in &nodes {
        if !node.appends_only() {
            return Err(Error::not_supported(
                "UNION ALL of rows that change (a view read as its changes) is not supported yet",
            ));
        }
    }
    Ok(Node {
        kind: crate::dataflow::plan::NodeKind::Union {
            inputs: nodes,
            schema: std::sync::Arc::new(schema.as_arrow().clone()),
        },
        ops: Vec::new(),
    })
}

/// `lower <= left - right <= upper` on two time columns (an open end is
/// i64::MIN or i64::MAX).
struct Bound {
    left: Column,
    right: Column,
    lower: i64,
    upper: i64,
}

/// A comparison of a time column of each side, each plus or minus an
/// interval: `a.ts >= b.ts - INTERVAL '1' MINUTE`, or a BETWEEN of such.
fn time_bound(conjunct: &Expr, ls: &DFSchemaRef, rs: &DFSchemaRef) -> Option<Bound> {
    let (op, a, b) = match conjunct {
        Expr::Between(Between {
            expr,
            negated: false,
            low,
            high,
        }) => {
            let low = compare(Operator::GtEq, expr, low, ls, rs)?;
            let high = compare(Operator::LtEq, expr, high, ls, rs)?;
            if low.left.flat_name() != high.left.flat_name()
                || low.right.flat_name() != high.right.flat_name()
            {
                return None;
            }
            return Some(Bound {
                lower: low.lower.max(high.lower),
                upper: low.upper.min(high.upper),
                ..low
            });
        }
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => (*op, left, right),
        _ => return None,
    };
    compare(op, a, b, ls, rs)
}

fn compare(op: Operator, a: &Expr, b: &Expr, ls: &DFSchemaRef, rs: &DFSchemaRef) -> Option<Bound> {
    let (ca, oa) = time_term(a)?;
    let (cb, ob) = time_term(b)?;
    // Only timestamps are times (a comparison of other columns is a
    // condition on the pair).
    let is_time = |c: &Column| {
        [ls, rs].iter().any(|s| {
            s.qualified_field_from_column(c).is_ok_and(|(_, f)| {
                matches!(f.data_type(), arrow::datatypes::DataType::Timestamp(..))
            })
        })
    };
    if !is_time(&ca) || !is_time(&cb) {
        return None;
    }
    // As `left - right op value`.
    let (left, right, op, value) = if ls.has_column(&ca) && rs.has_column(&cb) {
        (ca, cb, op, ob.checked_sub(oa)?)
    } else if rs.has_column(&ca) && ls.has_column(&cb) {
        (cb, ca, op.swap()?, oa.checked_sub(ob)?)
    } else {
        return None;
    };
    let (lower, upper) = match op {
        Operator::Eq => (value, value),
        Operator::LtEq => (i64::MIN, value),
        Operator::Lt => (i64::MIN, value - 1),
        Operator::GtEq => (value, i64::MAX),
        Operator::Gt => (value + 1, i64::MAX),
        _ => return None,
    };
    Some(Bound {
        left,
        right,
        lower,
        upper,
    })
}

/// A column plus or minus interval literals, and the total offset in ms.
fn time_term(e: &Expr) -> Option<(Column, i64)> {
    match e {
        Expr::Column(c) => Some((c.clone(), 0)),
        Expr::Cast(c) => time_term(&c.expr),
        Expr::TryCast(c) => time_term(&c.expr),
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let (column, offset, ms, sign) = match (time_term(left), literal_interval_ms(right)) {
                (Some((c, o)), Some(ms)) => (c, o, ms, if *op == Operator::Minus { -1 } else { 1 }),
                _ if *op == Operator::Plus => {
                    let (c, o) = time_term(right)?;
                    (c, o, literal_interval_ms(left)?, 1)
                }
                _ => return None,
            };
            if !matches!(op, Operator::Plus | Operator::Minus) {
                return None;
            }
            offset
                .checked_add(ms.checked_mul(sign)?)
                .map(|o| (column, o))
        }
        _ => None,
    }
}

/// The scan column a column of a side's rows is, through the side's
/// projections (by position: aliases rename but keep it).
fn trace(index: usize, input: &Node) -> Option<String> {
    let index = trace_ops(index, &input.ops)?;
    let scan: &Schema = match input.as_scan()? {
        (_, Some(w)) => &w.output,
        (source, None) => &source.schema,
    };
    Some(scan.field(index).name().clone())
}

/// The column of the rows entering `ops` that column `index` of their
/// output is, through projections (by position: aliases rename but keep
/// it).
fn trace_ops(index: usize, ops: &[StatelessOp]) -> Option<usize> {
    let mut index = index;
    for op in ops.iter().rev() {
        match op {
            StatelessOp::Filter { .. } => {}
            StatelessOp::Project { exprs, input, .. } => {
                match exprs.get(index)?.clone().unalias() {
                    Expr::Column(c) => index = input.index_of_column(&c).ok()?,
                    _ => return None,
                }
            }
            StatelessOp::LookupJoin(j) => {
                let table = j.table_schema.fields().len();
                index = if j.stream_left {
                    Some(index).filter(|i| *i < j.stream.fields().len())?
                } else {
                    index.checked_sub(table)?
                };
            }
        }
    }
    Some(index)
}

/// An interval join's time on one side: its source's event time.
fn event_time(column: &Column, schema: &DFSchemaRef, input: &Node) -> Result<JoinTime> {
    let index = schema.index_of_column(column)?;
    let traced = trace(index, input);
    let Some((source, window)) = input.as_scan() else {
        // The final rows of a windowed aggregation: a window's row comes
        // when the watermark passes its end, so its window_end is above the
        // aggregation's watermark, as an event time is.
        if let crate::dataflow::plan::NodeKind::Aggregate { plan, .. } = &input.kind {
            let group = trace_ops(index, &input.ops);
            if let (Some(fire), Some(group)) = (plan.fire_time, group) {
                if fire.group_index == group && fire.add_ms == 0 {
                    return Ok(JoinTime { index, add_ms: 0 });
                }
            }
        }
        return Err(Error::not_supported(format!(
            "an interval join compares event times: {column} of a side that aggregates or joins is not one; compare the window_end of a windowed aggregation, or join on keys alone"
        )));
    };
    match &source.rowtime {
        Some(rt) if window.is_none() && traced.as_deref() == Some(rt.column.as_str()) => {
            Ok(JoinTime { index, add_ms: 0 })
        }
        _ if window.is_some() => Err(Error::not_supported(
            "an interval join reads its sides without windows; for rows of the same window, join on window_start and window_end",
        )),
        Some(rt) => Err(Error::user(
            sqlstate::DATATYPE_MISMATCH,
            format!(
                "an interval join compares event times: {column} is not the event time column \"{}\" of \"{}\"",
                rt.column, source.name
            ),
        )),
        None => Err(Error::user(
            sqlstate::DATATYPE_MISMATCH,
            format!(
                "\"{}\" has no event time for an interval join: declare WATERMARK FOR ... in CREATE TABLE {}",
                source.name, source.name
            ),
        )),
    }
}

/// A window join's time on each side: `window_end - 1 ms` (or
/// `window_start + size - 1 ms`) of keys that pair the two sides' windows.
/// None when the keys do not pair windows: a regular join.
fn window_times(
    keys: &[(Expr, Expr)],
    ls: &DFSchemaRef,
    left: &Node,
    rs: &DFSchemaRef,
    right: &Node,
) -> Result<Option<(JoinTime, JoinTime)>> {
    let (Some((_, Some(lw))), Some((_, Some(rw)))) = (left.as_scan(), right.as_scan()) else {
        return Ok(None);
    };
    for w in [lw, rw] {
        if matches!(w.kind, WindowKind::Session { .. }) {
            return Err(Error::not_supported(
                "a window join of SESSION windows is not supported: its windows are not known when rows arrive",
            ));
        }
    }
    let time = |e: &Expr, schema: &DFSchemaRef, input: &Node| -> Option<(String, usize)> {
        let Expr::Column(c) = e else { return None };
        let index = schema.index_of_column(c).ok()?;
        Some((trace(index, input)?, index))
    };
    let mut by_start = None;
    for (l, r) in keys {
        let (Some((ln, li)), Some((rn, ri))) = (time(l, ls, left), time(r, rs, right)) else {
            continue;
        };
        if ln == WINDOW_END && rn == WINDOW_END {
            return Ok(Some((
                JoinTime {
                    index: li,
                    add_ms: -1,
                },
                JoinTime {
                    index: ri,
                    add_ms: -1,
                },
            )));
        }
        if ln == WINDOW_START && rn == WINDOW_START {
            by_start = Some((li, ri));
        }
    }
    match by_start {
        Some((li, ri)) if lw.kind.fixed_size() && rw.kind.fixed_size() => Ok(Some((
            JoinTime {
                index: li,
                add_ms: lw.kind.size() - 1,
            },
            JoinTime {
                index: ri,
                add_ms: rw.kind.size() - 1,
            },
        ))),
        Some(_) => Err(Error::not_supported(
            "a window join of CUMULATE windows must join on window_end too: its windows share their start",
        )),
        None => Ok(None),
    }
}

/// The view's time attribute over a join, and its side: an interval join's
/// event time column of either side, or a window join's `window_time`,
/// passed through to the view.
pub fn time_attribute(
    join: &StreamJoinPlan,
    post: &[StatelessOp],
    output: &Schema,
) -> (Option<String>, Option<Side>) {
    let left_len = join.left_schema.fields().len();
    let mut candidates: Vec<(usize, Side)> = Vec::new();
    if join.windowed {
        for (schema, input, side, offset) in [
            (&join.left_schema, &join.left, Side::Left, 0),
            (&join.right_schema, &join.right, Side::Right, left_len),
        ] {
            for i in 0..schema.fields().len() {
                if trace(i, input).as_deref() == Some(WINDOW_TIME) {
                    candidates.push((offset + i, side));
                }
            }
        }
    } else {
        if let Some(t) = join.left_time {
            candidates.push((t.index, Side::Left));
        }
        if let Some(t) = join.right_time {
            candidates.push((left_len + t.index, Side::Right));
        }
    }
    for op in post {
        candidates = match op {
            StatelessOp::Filter { .. } => candidates,
            StatelessOp::LookupJoin(j) if j.stream_left => candidates,
            StatelessOp::LookupJoin(j) => {
                let shift = j.table_schema.fields().len();
                candidates
                    .into_iter()
                    .map(|(i, s)| (i + shift, s))
                    .collect()
            }
            StatelessOp::Project { exprs, input, .. } => exprs
                .iter()
                .enumerate()
                .filter_map(|(i, e)| match e.clone().unalias() {
                    Expr::Column(c) => {
                        let from = input.index_of_column(&c).ok()?;
                        candidates
                            .iter()
                            .find(|(j, _)| *j == from)
                            .map(|(_, side)| (i, *side))
                    }
                    _ => None,
                })
                .collect(),
        };
    }
    // A side's time is null in the rows the other side keeps alone (outer
    // joins): not a time attribute then.
    candidates.retain(|(_, side)| match side {
        Side::Left => !join.outer_right,
        Side::Right => !join.outer_left,
    });
    match candidates.iter().min_by_key(|(i, _)| *i) {
        Some((i, side)) if *i < output.fields().len() => {
            (Some(output.field(*i).name().clone()), Some(*side))
        }
        _ => (None, None),
    }
}
