//! Plans `CREATE MATERIALIZED VIEW` into a streaming plan.
//!
//! DataFusion does the SQL work: name resolution, type checking and
//! coercion, aggregate functions. We register the view's source in a private
//! planning session (with the window columns added when the query uses a
//! window function), let `SqlToRel` and the analyzer produce a typed logical
//! plan, and then recognize the shapes a streaming job can run:
//!
//! ```text
//! [Projection | Filter]*            post: SELECT list, HAVING
//!   [Aggregate]                     windowed or updating aggregation
//!     [Projection | Filter]*        pre: WHERE, expressions
//!       TableScan(source)
//! ```
//!
//! The source may be a view whose rows never change, read from its log
//! (see [`view_source`]). Instead of one source, `pre` may stand on a join
//! of two streams, each side a source with its own window, filters and
//! projections (see `stream_join.rs`). Anything else (ORDER BY, LIMIT,
//! window functions, outer joins without a time bound) is refused with a `0A000`
//! error that names the construct.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchema, DFSchemaRef};
use datafusion::datasource::empty::EmptyTable;
use datafusion::logical_expr::{
    EmptyRelation, Expr, JoinType, LogicalPlan, LogicalPlanBuilder, Operator,
};
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DFStatement;
use sqlparser::ast;

use crate::connector::view::ViewSpec;
use crate::connector::{ConnectorSpec, SourceSpec};
use crate::dataflow::lookup_join::JoinKind;
use crate::dataflow::plan::LookupJoinPlan;
use crate::dataflow::plan::{
    AggregatePlan, ColumnSource, EmitMode, FireTime, Node, NodeKind, Rowtime, SessionGroups,
    SourcePlan, StatelessOp, StreamPlan, ViewRows, WindowPlan,
};
use crate::dataflow::window::WindowKind;
use crate::error::{sqlstate, Error, Result};
use crate::frontend::parser::CreateView;
use crate::frontend::window::{extract_windows, WindowCall};
use crate::options::Options;
use crate::state::reference::ReferenceTable;

/// What a name in a view's FROM clause refers to.
pub enum Relation {
    /// A source table, or a view read as one (see [`view_source`]).
    Source(Arc<SourcePlan>),
    /// An ordinary table (joined with the stream).
    Table(Arc<ReferenceTable>),
    /// A view that other views cannot read, and why.
    View(String),
    Unknown,
}

pub const WINDOW_START: &str = "window_start";
pub const WINDOW_END: &str = "window_end";
pub const WINDOW_TIME: &str = "window_time";

/// Plans a view. `lookup` resolves names in the catalog.
pub async fn plan_view(
    create: &CreateView,
    sql: &str,
    lookup: &(dyn Fn(&str) -> Relation + Sync),
) -> Result<StreamPlan> {
    let mut options = Options::new(
        format!("materialized view \"{}\"", create.name),
        &create.options,
    );
    let allowed_lateness = options.take_duration("allowed-lateness")?;
    let rows = match options.take("rows").as_deref() {
        None => ViewRows::Kept,
        Some("discard") => ViewRows::Discarded,
        Some("print") => ViewRows::Printed {
            identifier: options
                .take("print-identifier")
                .unwrap_or_else(|| create.name.clone()),
        },
        Some(other) => {
            return Err(Error::invalid_parameter(format!(
                "invalid 'rows' \"{other}\"; use discard or print"
            )))
        }
    };
    let rows_cache = options
        .take("rows-cache")
        .map(|v| crate::options::parse_bytes(&v).map_err(Error::invalid_parameter))
        .transpose()?;
    options.finish()?;
    let ctx = crate::functions::session_context();
    let state = ctx.state();
    let mut query = create.query.clone();
    crate::frontend::views::inline_ctes(&mut query)?;
    refuse_over(&query, sql)?;
    refuse_intersect(&query)?;
    crate::frontend::group_window::rewrite_group_windows(&mut query, sql)?;
    let (windows, tables) = extract_windows(&state, &mut query, sql)?;

    // The sources and tables the query names: each window call is planned
    // as a table of its own (a source may be read through several windows,
    // and plainly).
    let mut names: Vec<(String, Option<usize>)> = windows
        .iter()
        .map(|w| (w.source.clone(), w.position))
        .chain(tables.iter().map(|t| (t.name.clone(), t.position)))
        .collect();
    names.dedup_by(|a, b| a.0 == b.0);
    let mut sources: HashMap<String, Arc<SourcePlan>> = HashMap::new();
    let mut joined: HashMap<String, Arc<ReferenceTable>> = HashMap::new();
    for (name, position) in &names {
        match lookup(name) {
            Relation::Table(table) => {
                joined.insert(name.clone(), table);
            }
            Relation::Source(s) => {
                sources.insert(name.clone(), s);
            }
            Relation::View(why) => return Err(Error::not_supported(why).at(*position)),
            Relation::Unknown => {
                if name.starts_with("sluice.")
                    || name.starts_with("pg_catalog.")
                    || name.starts_with("information_schema.")
                {
                    return Err(Error::not_supported(format!(
                        "materialized views over system tables are not supported (\"{name}\")"
                    ))
                    .at(*position));
                }
                return Err(Error::undefined_table(name).at(*position));
            }
        }
    }
    if sources.is_empty() {
        return Err(Error::not_supported(
            "a materialized view must read from a source table",
        ));
    }
    // Each source as the view reads it, by the name it is planned by:
    // through a window, or plainly.
    let mut inputs: HashMap<String, Node> = HashMap::new();
    for call in &windows {
        let source = sources.get(&call.source).ok_or_else(|| {
            Error::not_supported(format!(
                "a window over the table \"{}\": windows read streams",
                call.source
            ))
            .at(call.position)
        })?;
        let window = window_plan(call, source)?;
        register(&ctx, &call.name, window.output.clone())?;
        inputs.insert(
            call.name.clone(),
            Node::scan((**source).clone(), Some(window), Vec::new()),
        );
    }
    for table in &tables {
        if let Some(source) = sources.get(&table.name) {
            if !inputs.contains_key(&table.name) {
                register(&ctx, &table.name, source.schema.clone())?;
                inputs.insert(
                    table.name.clone(),
                    Node::scan((**source).clone(), None, Vec::new()),
                );
            }
        }
    }
    for (name, table) in &joined {
        register(&ctx, name, table.schema().clone())?;
    }

    let statement = DFStatement::Statement(Box::new(ast::Statement::Query(query)));
    let plan = state
        .statement_to_plan(statement)
        .await
        .map_err(|e| Error::from_datafusion(e, sql))?;
    let plan = state
        .analyzer()
        .execute_and_check(plan, state.config_options(), |_, _| {})
        .map_err(|e| Error::from_datafusion(e, sql))?;
    let plan = rewritten(plan)?;
    let shape = walk(&plan, &joined)?;
    let query_schema = plan.schema().clone();
    let output = Arc::new(Schema::new(
        plan.schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect::<Vec<Field>>(),
    ));
    check_output_names(&output)?;

    let mut shape = shape;
    if let Some(agg) = shape.aggregate.take() {
        shape.aggregate = Some(finish_aggregate(agg, &mut shape.post)?);
    }
    let (rank, between) = match shape.rank.take() {
        Some(window) => (
            Some(rank_plan(window, &shape.post)?),
            std::mem::take(&mut shape.between),
        ),
        None => (None, Vec::new()),
    };
    // With a join of two streams, the operations on its rows (before any
    // aggregation) are the join's.
    let (join, join_ops) = match shape.join.take() {
        Some(node) => {
            if allowed_lateness.is_some() {
                return Err(Error::not_supported(
                    "'allowed-lateness' is not supported over a join of two streams: its sides drop late rows",
                ));
            }
            let (join, residual) = crate::frontend::stream_join::plan_join(*node, &inputs)?;
            let ops: Vec<StatelessOp> = residual
                .into_iter()
                .chain(std::mem::take(&mut shape.pre))
                .collect();
            (Some(join), ops)
        }
        None => (None, Vec::new()),
    };
    // The rows the view reads without a join: a scan, or an aggregation
    // below its aggregation.
    let scan = match (&join, shape.below.take(), shape.union.take()) {
        (Some(_), _, _) => None,
        (None, Some(below), _) => Some(crate::frontend::stream_join::plan_side(
            *below, &inputs, true,
        )?),
        (None, None, Some((shapes, schema))) => Some(crate::frontend::stream_join::plan_union(
            shapes, &schema, &inputs,
        )?),
        (None, None, None) => {
            let name = shape
                .scan
                .as_ref()
                .ok_or_else(|| Error::internal("a view reads no source"))?;
            Some(inputs.remove(name).ok_or_else(|| {
                Error::not_supported(format!(
                    "a materialized view must read from a source table, not only \"{name}\""
                ))
            })?)
        }
    };
    // The source the view reads, through its window: a join's left side's
    // when it is a scan.
    let (source, window) = match scan.as_ref().or(join.as_ref().map(|j| &j.left)) {
        Some(node) => match node.as_scan() {
            Some((source, window)) => (Some(source.clone()), window.cloned()),
            None => (None, None),
        },
        None => (None, None),
    };
    // A view whose rows change can be filtered, projected and aggregated
    // by a view over it (its changes pass through by its key, or are
    // taken back from the aggregates); it cannot be joined yet.
    let read: Vec<&SourcePlan> = scan
        .iter()
        .chain(join.iter().flat_map(|j| [&j.left, &j.right]))
        .flat_map(|n| n.walk())
        .filter_map(|n| n.as_scan().map(|(s, _)| s))
        .collect();
    // The name of what gives rows that change: a view read as its
    // changes, or an aggregation (without windows) under the view's.
    let updating: Option<String> = read
        .into_iter()
        .find(|s| s.changes().is_some())
        .map(|s| s.name.clone())
        .or_else(|| {
            scan.as_ref()
                .filter(|n| n.as_scan().is_none() && !n.appends_only())
                .map(|_| "the aggregation under it".to_string())
        });
    let mut rows_count = None;
    if let Some(upstream) = &updating {
        let what = if join.is_some() {
            Some("joins of two streams")
        } else if shape
            .pre
            .iter()
            .any(|op| matches!(op, StatelessOp::LookupJoin(_)))
        {
            Some("joins with tables")
        } else {
            None
        };
        let what = what.or(rank.as_ref().map(|_| "window functions (OVER)"));
        if let Some(what) = what {
            return Err(Error::not_supported(format!(
                "{what} over \"{}\" are not supported yet: its rows change; a view over it can filter, project and aggregate its rows, or read a view of final rows (EMIT ON WINDOW CLOSE)",
                upstream
            )));
        }
        if let Some(agg) = &shape.aggregate {
            let rewritten = crate::frontend::retract::rewrite(&state, agg, upstream)?;
            shape.aggregate = Some(rewritten.aggregate);
            shape.post.insert(0, rewritten.finish);
            rows_count = Some(rewritten.rows_count);
        }
    }
    let pre: Vec<StatelessOp> = match &join {
        Some(_) => Vec::new(),
        None => std::mem::take(&mut shape.pre),
    };
    let mut join = join;
    let time_attribute = match &mut join {
        // Rows that move in rank are updated: no time attribute; the top-N
        // goes by the joined rows' watermark.
        Some(j) if rank.is_some() => {
            j.output_time = Some(crate::dataflow::plan::Side::Left);
            None
        }
        Some(j) if shape.aggregate.is_none() => {
            let (name, side) = crate::frontend::stream_join::time_attribute(j, &join_ops, &output);
            j.output_time = side;
            name
        }
        Some(j) => {
            // Aggregated: the view's watermark is that of the pairs'
            // window_time (both sides' times for window joins).
            j.output_time = Some(crate::dataflow::plan::Side::Left);
            time_attribute(
                &join_ops,
                shape.aggregate.as_ref(),
                &shape.post,
                source.as_ref(),
                window.as_ref(),
                &output,
            )
        }
        // Rows that move in rank are updated: no time attribute.
        None if rank.is_some() => None,
        None => time_attribute(
            &pre,
            shape.aggregate.as_ref(),
            &shape.post,
            source.as_ref(),
            window.as_ref(),
            &output,
        ),
    };
    let before_aggregate: &[StatelessOp] = match &join {
        Some(_) => &join_ops,
        None => &pre,
    };
    let mut emit = create.emit;
    if let Some(every) = &create.emit_every {
        let every_ms = crate::frontend::window::interval_ms(&state, every, sql)?;
        if every_ms <= 0 {
            return Err(Error::invalid_parameter(
                "EMIT EVERY needs a positive interval",
            ));
        }
        emit = EmitMode::Every { every_ms };
    }
    let mut aggregate = match shape.aggregate {
        None => None,
        Some(agg) => Some(AggregatePlan {
            rows_count,
            // A window top-N ranks each window's final rows.
            emit: if rank.is_some() {
                EmitMode::OnWindowClose
            } else {
                emit
            },
            ..match scan.as_ref().filter(|n| n.as_scan().is_none()) {
                // Over an aggregation: windowed if it groups by the
                // windows the rows below carry.
                Some(below) => aggregate_plan(&agg, before_aggregate, below.window(), false)?,
                None => aggregate_plan(
                    &agg,
                    before_aggregate,
                    window
                        .as_ref()
                        .zip(source.as_ref().map(|s| s.name.as_str())),
                    true,
                )?,
            }
        }),
    };
    if let Some(lateness) = allowed_lateness {
        match aggregate.as_mut() {
            Some(agg) if agg.fire_time.is_some() => {
                agg.allowed_lateness = i64::try_from(lateness.as_millis()).unwrap_or(i64::MAX)
            }
            _ => {
                return Err(Error::not_supported(
                    "'allowed-lateness' needs a windowed aggregation (GROUP BY window_start, window_end)",
                ))
            }
        }
    }
    if let (Some(rank), Some(agg)) = (&rank, &aggregate) {
        over_windows(
            rank,
            agg,
            &between,
            &create.emit_every,
            create.emit,
            allowed_lateness.is_some(),
        )?;
    }
    let mut rank = rank;
    if let (Some(rank), Some(window)) = (rank.as_mut(), &window) {
        rank.window_end = window_end(rank, &window.kind);
    }
    let windowed = aggregate
        .as_ref()
        .map(|a| a.fire_time.is_some())
        .unwrap_or(false);
    match emit {
        EmitMode::OnWindowClose if !windowed => return Err(Error::not_supported(
            "EMIT ON WINDOW CLOSE needs a windowed aggregation (GROUP BY window_start, window_end)",
        )),
        EmitMode::Every { .. } if !windowed => {
            return Err(Error::not_supported(
                "EMIT EVERY needs a windowed aggregation (GROUP BY window_start, window_end)",
            ))
        }
        _ => {}
    }
    let cumulate = window
        .as_ref()
        .is_some_and(|w| matches!(w.kind, WindowKind::Cumulate { .. }));
    // The tree, from the sources up: the scan or the join, the aggregation,
    // the top-N; the operations after the last are the view's.
    let mut root = match join {
        Some(j) => Node {
            kind: NodeKind::Join(Box::new(j)),
            ops: join_ops,
        },
        None => {
            let mut node = scan.ok_or_else(|| Error::internal("a view reads no source"))?;
            node.ops.extend(pre);
            node
        }
    };
    let mut post = shape.post;
    if let Some(plan) = aggregate {
        let ops = match &rank {
            Some(_) => between,
            None => std::mem::take(&mut post),
        };
        root = Node {
            kind: NodeKind::Aggregate {
                input: Box::new(root),
                plan: Box::new(plan),
            },
            ops,
        };
    }
    if let Some(plan) = rank {
        root = Node {
            kind: NodeKind::Rank {
                input: Box::new(root),
                plan: Box::new(plan),
            },
            ops: std::mem::take(&mut post),
        };
    }
    if !post.is_empty() {
        return Err(Error::internal("operations after the view's rows"));
    }
    let mut plan = StreamPlan {
        view: create.name.clone(),
        root,
        output,
        time_attribute,
        rows,
        rows_cache,
    };
    if !create.columns.is_empty() {
        rename_columns(&mut plan, &create.columns, query_schema)?;
    }
    if let NodeKind::Rank { plan: rank, .. } = &plan.root.kind {
        // The view's rows are keyed by the partition and the row number:
        // it must show them. Of a window's start and end, one is enough
        // (the end gives the start; the start gives the end but of
        // CUMULATE windows).
        let names: Vec<String> = rank
            .key
            .iter()
            .map(|i| rank.output.field(*i).name().clone())
            .collect();
        let shown = plan.shown_names(names.clone());
        let is_shown = |name: &str| {
            names
                .iter()
                .zip(&shown)
                .any(|(n, s)| n == name && s.is_some())
        };
        let implied = |name: &str| match name {
            WINDOW_START => is_shown(WINDOW_END),
            WINDOW_END => !cumulate && is_shown(WINDOW_START),
            _ => false,
        };
        let row_number = rank.output.fields().len() - 1;
        let mut key = Vec::with_capacity(rank.key.len());
        for ((i, name), shown) in rank.key.iter().zip(&names).zip(&shown) {
            if shown.is_some() {
                key.push(*i);
            } else if !implied(name) {
                let what = if *i == row_number {
                    "its row number (the partition's rows are keyed by it)".to_string()
                } else {
                    format!("its partition column \"{name}\" (its rows are keyed by it)")
                };
                return Err(Error::not_supported(format!(
                    "a view of the first rows of each partition (ROW_NUMBER() OVER) must show {what}"
                )));
            }
        }
        if let NodeKind::Rank { plan: rank, .. } = &mut plan.root.kind {
            rank.key = key;
        }
    }
    Ok(plan)
}

/// Names the view's first columns as its column list does (`CREATE
/// MATERIALIZED VIEW v (a, b) AS ...`): a projection after the view's last
/// operation.
fn rename_columns(plan: &mut StreamPlan, names: &[String], query: DFSchemaRef) -> Result<()> {
    if names.len() > query.fields().len() {
        return Err(Error::syntax(format!(
            "CREATE MATERIALIZED VIEW names {} columns, but its query has {}",
            names.len(),
            query.fields().len()
        )));
    }
    let renamed: Vec<Field> = query
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| match names.get(i) {
            Some(name) => f.as_ref().clone().with_name(name),
            None => f.as_ref().clone(),
        })
        .collect();
    let output = Arc::new(Schema::new(renamed));
    check_output_names(&output)?;
    let exprs: Vec<Expr> = query
        .iter()
        .zip(output.fields())
        .map(|((qualifier, field), to)| {
            Expr::Column(Column::new(qualifier.cloned(), field.name())).alias(to.name())
        })
        .collect();
    let project = StatelessOp::Project {
        exprs,
        input: query.clone(),
        output: Arc::new(DFSchema::try_from(output.as_ref().clone())?),
    };
    if let Some(time) = plan.time_attribute.as_mut() {
        if let Some(i) = query.index_of_column_by_name(None, time) {
            *time = output.field(i).name().clone();
        }
    }
    plan.root.ops.push(project);
    plan.output = output;
    Ok(())
}

/// The top-N of `ROW_NUMBER() OVER (PARTITION BY ... ORDER BY ...)`, kept
/// while at most N by a filter among `post`.
fn rank_plan(
    window: datafusion::logical_expr::logical_plan::Window,
    post: &[StatelessOp],
) -> Result<crate::dataflow::plan::RankPlan> {
    use datafusion::logical_expr::WindowFunctionDefinition;
    let [expr] = window.window_expr.as_slice() else {
        return Err(Error::not_supported(
            "several window functions (OVER) in one query are not supported in a materialized view yet",
        ));
    };
    let Expr::WindowFunction(f) = expr.clone().unalias() else {
        return Err(Error::internal(format!(
            "window expression {expr} is not a window function"
        )));
    };
    let name = match &f.fun {
        WindowFunctionDefinition::WindowUDF(udf) => udf.name().to_string(),
        WindowFunctionDefinition::AggregateUDF(udf) => {
            return Err(Error::not_supported(format!(
            "aggregates over a window ({}(...) OVER) are not supported in materialized views yet",
            udf.name()
        )))
        }
    };
    if name != "row_number" {
        return Err(Error::not_supported(format!(
            "the window function {name}() is not supported in materialized views yet; ROW_NUMBER() is"
        )));
    }
    for p in &f.params.partition_by {
        if !matches!(p, Expr::Column(_)) {
            return Err(Error::not_supported(format!(
                "ROW_NUMBER() partitioned by an expression ({p}) is not supported in a materialized view yet; partition by columns"
            )));
        }
    }
    if f.params.order_by.is_empty() {
        return Err(Error::not_supported(
            "ROW_NUMBER() without ORDER BY is not supported in a materialized view: the order decides which rows are kept",
        ));
    }
    check_exprs(
        &f.params
            .order_by
            .iter()
            .map(|s| s.expr.clone())
            .collect::<Vec<_>>(),
    )?;
    let output = window.schema.clone();
    let rank_index = output.fields().len() - 1;
    let (qualifier, field) = output.qualified_field(rank_index);
    let column = Column::new(qualifier.cloned(), field.name());
    let Some(limit) = rank_limit(column, post) else {
        return Err(Error::not_supported(
            "ROW_NUMBER() in a materialized view needs a filter keeping the first rows (WHERE row_num <= N): without it every row of a partition would be renumbered by each row that enters",
        ));
    };
    let mut key: Vec<usize> = f
        .params
        .partition_by
        .iter()
        .map(|p| match p {
            Expr::Column(c) => output.index_of_column(c).map_err(Error::from),
            _ => Err(Error::internal("partition by a non-column")),
        })
        .collect::<Result<_>>()?;
    if limit != 1 {
        key.push(rank_index);
    }
    Ok(crate::dataflow::plan::RankPlan {
        window_end: None,
        input: window.input.schema().clone(),
        partition: f.params.partition_by.clone(),
        order: f.params.order_by.clone(),
        limit,
        output,
        key,
    })
}

/// Refuses a top-N over an aggregation unless it is Flink's window top-N:
/// over windows that close (not sessions), each window a partition of its
/// own. Then the aggregation passes on each window's final rows when it
/// closes, and the top-N ranks them (the view shows a window's first rows
/// once it has closed).
fn over_windows(
    rank: &crate::dataflow::plan::RankPlan,
    agg: &AggregatePlan,
    between: &[StatelessOp],
    emit_every: &Option<ast::Expr>,
    emit: EmitMode,
    lateness: bool,
) -> Result<()> {
    let not_yet = |why: &str| {
        Err(Error::not_supported(format!(
            "a top-N over an aggregation {why} is not supported in a materialized view yet; rank the rows of windows, partitioned by window_start and window_end"
        )))
    };
    if agg.fire_time.is_none() || agg.session.is_some() {
        return not_yet("without TUMBLE, HOP or CUMULATE windows (its rows change)");
    }
    if lateness || emit_every.is_some() || emit != EmitMode::default() {
        return not_yet("with EMIT or 'allowed-lateness' (its windows' rows show when they close)");
    }
    // The window columns, as the top-N's rows call them.
    let windows: Vec<String> = agg
        .group_exprs
        .iter()
        .enumerate()
        .filter(
            |(_, e)| matches!(e, Expr::Column(c) if c.name == WINDOW_START || c.name == WINDOW_END),
        )
        .map(|(i, _)| agg.output.field(i).name().clone())
        .collect();
    let names = follow_names(between, windows);
    if !rank
        .partition
        .iter()
        .any(|p| matches!(p, Expr::Column(c) if names.contains(&c.name)))
    {
        return not_yet("whose partition leaves out its window");
    }
    Ok(())
}

/// For a top-N per window (partitioned by `window_end`, or `window_start`
/// of windows that are not sessions): where each partition's window ends.
fn window_end(rank: &crate::dataflow::plan::RankPlan, kind: &WindowKind) -> Option<FireTime> {
    let at = |name: &str| {
        rank.partition.iter().find_map(|p| match p {
            Expr::Column(c) if c.name == name => {
                let i = rank.input.index_of_column(c).ok()?;
                matches!(rank.input.field(i).data_type(), DataType::Timestamp(..)).then_some(i)
            }
            _ => None,
        })
    };
    if let Some(i) = at(WINDOW_END) {
        return Some(FireTime {
            group_index: i,
            add_ms: 0,
        });
    }
    if matches!(kind, WindowKind::Session { .. }) {
        return None;
    }
    // The last window starting there ends a size later.
    at(WINDOW_START).map(|i| FireTime {
        group_index: i,
        add_ms: kind.size(),
    })
}

/// The least N of the filters `rank <= N` (or `< N + 1`, `= N`) on the row
/// number `rank` among `post`, following it through the projections.
fn rank_limit(mut rank: Column, post: &[StatelessOp]) -> Option<usize> {
    let mut limit: Option<usize> = None;
    for op in post {
        match op {
            StatelessOp::Filter { predicate, .. } => {
                for conjunct in datafusion::logical_expr::utils::split_conjunction(predicate) {
                    if let Some(n) = rank_bound(conjunct, &rank) {
                        limit = Some(limit.map_or(n, |l| l.min(n)));
                    }
                }
            }
            StatelessOp::Project { exprs, output, .. } => {
                let Some(i) = exprs
                    .iter()
                    .position(|e| matches!(e.clone().unalias(), Expr::Column(c) if c == rank))
                else {
                    // No longer shown: no filter above can name it.
                    return limit;
                };
                let (qualifier, field) = output.qualified_field(i);
                rank = Column::new(qualifier.cloned(), field.name());
            }
            StatelessOp::LookupJoin(_) => return limit,
        }
    }
    limit
}

/// N if `conjunct` keeps only row numbers up to N.
fn rank_bound(conjunct: &Expr, rank: &Column) -> Option<usize> {
    let Expr::BinaryExpr(b) = conjunct else {
        return None;
    };
    let bare = |e: &Expr| -> Expr {
        let mut e = e.clone();
        while let Expr::Cast(c) = e {
            e = *c.expr;
        }
        e
    };
    let number = |e: &Expr| -> Option<i64> {
        match bare(e) {
            Expr::Literal(v, _) => v.cast_to(&DataType::Int64).ok().and_then(|v| match v {
                datafusion::common::ScalarValue::Int64(n) => n,
                _ => None,
            }),
            _ => None,
        }
    };
    let is_rank = |e: &Expr| matches!(bare(e), Expr::Column(c) if &c == rank);
    // As `rank op n`.
    let (op, n) = if is_rank(&b.left) {
        (b.op, number(&b.right)?)
    } else if is_rank(&b.right) {
        (b.op.swap()?, number(&b.left)?)
    } else {
        return None;
    };
    let n = match op {
        Operator::LtEq | Operator::Eq => n,
        Operator::Lt => n - 1,
        _ => return None,
    };
    Some(n.max(0) as usize)
}

/// Refuses a window function other than `ROW_NUMBER()` (the top-N and
/// deduplication) wherever it stands in the query, naming it: in a
/// subquery it would otherwise be planned away and surface as a missing
/// column.
fn refuse_over(query: &ast::Query, sql: &str) -> Result<()> {
    let mut found = None;
    let _ = ast::visit_expressions(query, |e| {
        if let ast::Expr::Function(f) = e {
            if f.over.is_some() && !f.name.to_string().eq_ignore_ascii_case("row_number") {
                found = Some((f.name.to_string(), sqlparser::ast::Spanned::span(e)));
                return std::ops::ControlFlow::Break(());
            }
        }
        std::ops::ControlFlow::Continue(())
    });
    match found {
        None => Ok(()),
        Some((name, span)) => Err(Error::not_supported(format!(
            "window functions other than ROW_NUMBER() ({name}() OVER ...) are not supported in materialized views yet: OVER aggregates come with the changelog dataflow; use TUMBLE, HOP, CUMULATE or SESSION windows"
        ))
        .at(crate::error::char_position(
            sql,
            span.start.line as usize,
            span.start.column as usize,
        ))),
    }
}

/// Refuses INTERSECT and EXCEPT by name (DataFusion would plan them as a
/// semi or anti join of distinct rows, refused for less telling reasons).
fn refuse_intersect(query: &ast::Query) -> Result<()> {
    let mut found = None;
    fn find(set: &ast::SetExpr, found: &mut Option<&'static str>) {
        match set {
            ast::SetExpr::SetOperation {
                op, left, right, ..
            } => {
                match op {
                    ast::SetOperator::Intersect => *found = Some("INTERSECT"),
                    ast::SetOperator::Except | ast::SetOperator::Minus => *found = Some("EXCEPT"),
                    _ => {}
                }
                find(left, found);
                find(right, found);
            }
            ast::SetExpr::Query(q) => find(&q.body, found),
            _ => {}
        }
    }
    find(&query.body, &mut found);
    match found {
        None => Ok(()),
        Some(op) => Err(Error::not_supported(format!(
            "{op} is not supported in materialized views yet: a row shown would have to be taken back when its match comes or goes; UNION and UNION ALL are"
        ))),
    }
}

/// The output column that is a time attribute: the source's event time (or
/// a window's `window_time`) passed through unchanged, or, after a windowed
/// aggregation, its `window_time` group column (Flink's rules).
fn time_attribute(
    pre: &[StatelessOp],
    aggregate: Option<&AggregateNode>,
    post: &[StatelessOp],
    source: Option<&SourcePlan>,
    window: Option<&WindowPlan>,
    output: &Schema,
) -> Option<String> {
    let mut names: Vec<String> = Vec::new();
    if let Some(rt) = source.and_then(|s| s.rowtime.as_ref()) {
        if !window.is_some_and(|w| w.processing_time) {
            names.push(rt.column.clone());
        }
    }
    if window.is_some() {
        names.push(WINDOW_TIME.to_string());
    }
    let names = follow_names(pre, names);
    let names = match aggregate {
        None => names,
        Some(agg) => {
            let grouped = agg
                .group_exprs
                .iter()
                .enumerate()
                .filter_map(|(i, e)| match e {
                    Expr::Column(c) if c.name == WINDOW_TIME && names.contains(&c.name) => {
                        Some(agg.output.field(i).name().clone())
                    }
                    _ => None,
                })
                .collect();
            follow_names(post, grouped)
        }
    };
    output
        .fields()
        .iter()
        .map(|f| f.name())
        .find(|n| names.contains(n))
        .cloned()
}

/// The names the columns `names` have after each projection of `ops`
/// (those a projection drops are gone).
fn follow_names(ops: &[StatelessOp], names: Vec<String>) -> Vec<String> {
    ops.iter().fold(names, |names, op| match op {
        StatelessOp::Filter { .. } | StatelessOp::LookupJoin(_) => names,
        StatelessOp::Project { exprs, output, .. } => exprs
            .iter()
            .enumerate()
            .filter_map(|(i, e)| match e.clone().unalias() {
                Expr::Column(c) if names.contains(&c.name) => Some(output.field(i).name().clone()),
                _ => None,
            })
            .collect(),
    })
}

/// A view as the source of a view over it (see `connector/view.rs`): its
/// columns, and its time attribute with the view's own watermark, read
/// from its log; or, for a view whose rows change, its changes by key.
/// `job` is the view's job and `shards` its parallelism.
pub fn view_source(view: &StreamPlan, job: u64, shards: usize) -> Result<SourcePlan> {
    let name = &view.view;
    // A view whose rows change is read as its changes: no time attribute.
    let changes = view.key_schema();
    let schema = view.output.clone();
    let schema_df: DFSchemaRef =
        Arc::new(DFSchema::try_from_qualified_schema(name.as_str(), &schema)?);
    let rowtime = match &view.time_attribute {
        _ if changes.is_some() => None,
        None => None,
        Some(column) => Some(Rowtime {
            column: column.clone(),
            index: schema.index_of(column)?,
            watermark: Expr::Column(Column::new(Some(name.as_str()), column)),
            watermark_sql: format!("the watermark of \"{name}\""),
        }),
    };
    Ok(SourcePlan {
        name: name.clone(),
        spec: SourceSpec {
            connector: ConnectorSpec::View(ViewSpec {
                view: name.clone(),
                job,
                shards,
                bounded: view.bounded(),
                changes,
            }),
            idle_timeout: None,
        },
        physical: schema.clone(),
        declared: schema.clone(),
        physical_df: schema_df.clone(),
        columns: (0..schema.fields().len())
            .map(ColumnSource::Physical)
            .collect(),
        schema,
        schema_df,
        rowtime,
        proctime: None,
    })
}

/// Registers `name` in the planning session with the given columns.
fn register(ctx: &SessionContext, name: &str, schema: SchemaRef) -> Result<()> {
    ctx.register_table(name, Arc::new(EmptyTable::new(schema)))
        .map_err(|e| Error::internal(format!("could not register \"{name}\" for planning: {e}")))?;
    Ok(())
}

fn window_plan(call: &WindowCall, source: &SourcePlan) -> Result<WindowPlan> {
    let time_index = source.schema.index_of(&call.time_column).map_err(|_| {
        Error::undefined_column(&call.time_column)
            .context(format!("in the window of \"{}\"", source.name))
            .at(call.position)
    })?;
    let processing_time = source.proctime == Some(time_index);
    match &source.rowtime {
        _ if processing_time => {}
        Some(rt) if rt.index == time_index => {}
        Some(rt) => {
            return Err(Error::user(
                sqlstate::DATATYPE_MISMATCH,
                format!(
                    "windows must be on the event time column \"{}\" (or a PROCTIME() column) of \"{}\", not \"{}\"",
                    rt.column, source.name, call.time_column
                ),
            )
            .at(call.position))
        }
        None if matches!(source.spec.connector, ConnectorSpec::View(_)) => {
            return Err(Error::user(
                sqlstate::DATATYPE_MISMATCH,
                format!(
                    "materialized view \"{}\" has no time attribute to window over: select its event time column, or window_time of its windows, in it",
                    source.name
                ),
            )
            .at(call.position))
        }
        None => {
            return Err(Error::user(
                sqlstate::DATATYPE_MISMATCH,
                format!(
                    "\"{}\" has no event time: declare WATERMARK FOR {} AS ... in CREATE TABLE {}, or window over a processing-time column pt AS PROCTIME()",
                    source.name, call.time_column, source.name
                ),
            )
            .at(call.position))
        }
    }
    let time_type = match source.schema.field(time_index).data_type() {
        DataType::Timestamp(_, tz) => DataType::Timestamp(TimeUnit::Millisecond, tz.clone()),
        other => {
            return Err(Error::internal(format!(
                "event time column of type {other} passed validation"
            )))
        }
    };
    let mut fields: Vec<Field> = source
        .schema
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    for name in [WINDOW_START, WINDOW_END, WINDOW_TIME] {
        if fields.iter().any(|f| f.name() == name) {
            return Err(Error::user(
                sqlstate::AMBIGUOUS_COLUMN,
                format!(
                    "source \"{}\" already has a column \"{name}\", which the window adds",
                    source.name
                ),
            ));
        }
    }
    fields.push(Field::new(
        WINDOW_START,
        DataType::Timestamp(TimeUnit::Millisecond, None),
        false,
    ));
    fields.push(Field::new(
        WINDOW_END,
        DataType::Timestamp(TimeUnit::Millisecond, None),
        false,
    ));
    fields.push(Field::new(WINDOW_TIME, time_type, false));
    Ok(WindowPlan {
        kind: call.kind,
        time_index,
        output: Arc::new(Schema::new(fields)),
        partition: call.partition.clone(),
        processing_time,
    })
}

pub struct AggregateNode {
    pub input: DFSchemaRef,
    pub group_exprs: Vec<Expr>,
    pub aggr_exprs: Vec<Expr>,
    pub output: DFSchemaRef,
}

pub(crate) struct Shape {
    pub pre: Vec<StatelessOp>,
    pub aggregate: Option<AggregateNode>,
    /// A window function (`ROW_NUMBER() OVER`), over the aggregation if
    /// there is one.
    pub rank: Option<datafusion::logical_expr::logical_plan::Window>,
    /// The operations between the aggregation and the top-N above it.
    between: Vec<StatelessOp>,
    pub post: Vec<StatelessOp>,
    /// The table the rows come from (without a join of two streams).
    pub scan: Option<String>,
    /// A join of two streams below `pre` (there is no aggregation then).
    pub join: Option<Box<JoinNode>>,
    /// An aggregation below the aggregation (the shape of the rows it
    /// aggregates).
    pub below: Option<Box<Shape>>,
    /// `UNION ALL` below `pre`: its inputs, and its columns.
    pub union: Option<(Vec<Shape>, DFSchemaRef)>,
}

/// A join of two streams, as found in the plan.
pub(crate) struct JoinNode {
    pub join: datafusion::logical_expr::Join,
    /// The conditions of the WHERE right above it (an inner join's WHERE
    /// is one with its ON).
    pub conditions: Vec<Expr>,
    pub left: Shape,
    pub right: Shape,
}

/// Recognizes the plan's shape, from the root down. `tables` are the
/// ordinary tables the view may join.
fn walk(plan: &LogicalPlan, tables: &HashMap<String, Arc<ReferenceTable>>) -> Result<Shape> {
    let mut above: Vec<StatelessOp> = Vec::new();
    let mut below: Vec<StatelessOp> = Vec::new();
    let mut aggregate = None;
    let mut node = plan;
    let mut scan_name = None;
    let mut stream_join = None;
    let mut rank = None;
    let mut beneath = None;
    let mut union = None;
    // Between a top-N and the aggregation below it.
    let mut between: Vec<StatelessOp> = Vec::new();
    loop {
        let ops = if aggregate.is_some() {
            &mut below
        } else if rank.is_some() {
            &mut between
        } else {
            &mut above
        };
        match node {
            LogicalPlan::Projection(p) => {
                check_exprs(&p.expr)?;
                ops.push(StatelessOp::Project {
                    exprs: p.expr.clone(),
                    input: p.input.schema().clone(),
                    output: p.schema.clone(),
                });
                node = &p.input;
            }
            LogicalPlan::Filter(f) => {
                check_exprs(std::slice::from_ref(&f.predicate))?;
                ops.push(StatelessOp::Filter {
                    predicate: f.predicate.clone(),
                    input: f.input.schema().clone(),
                });
                node = &f.input;
            }
            LogicalPlan::SubqueryAlias(a) => node = &a.input,
            LogicalPlan::Aggregate(_) if aggregate.is_some() => {
                // An aggregation over an aggregation: the rows
                // below are a shape of their own.
                beneath = Some(Box::new(walk(node, tables)?));
                break;
            }
            LogicalPlan::Aggregate(a) => {
                for g in &a.group_expr {
                    if matches!(g, Expr::GroupingSet(_)) {
                        return Err(Error::not_supported(
                            "GROUPING SETS, ROLLUP and CUBE are not supported in materialized views yet",
                        ));
                    }
                }
                check_exprs(&a.group_expr)?;
                for e in &a.aggr_expr {
                    check_aggregate(e)?;
                }
                aggregate = Some(AggregateNode {
                    input: a.input.schema().clone(),
                    group_exprs: a.group_expr.clone(),
                    aggr_exprs: a.aggr_expr.clone(),
                    output: a.schema.clone(),
                });
                node = &a.input;
            }
            LogicalPlan::TableScan(scan) => {
                if !scan.filters.is_empty() || scan.fetch.is_some() {
                    return Err(Error::internal("unoptimized plan has scan filters"));
                }
                scan_name = Some(scan.table_name.table().to_string());
                break;
            }
            LogicalPlan::Sort(_) => {
                return Err(Error::not_supported(
                    "ORDER BY is not supported in a materialized view; order the rows when you query it",
                ))
            }
            LogicalPlan::Limit(_) => {
                return Err(Error::not_supported(
                    "LIMIT is not supported in a materialized view; limit the rows when you query it",
                ))
            }
            LogicalPlan::Join(join) => {
                let (stream, stream_left, table_side) =
                    match (lookup_side(&join.left, tables), lookup_side(&join.right, tables)) {
                        (None, Some(t)) => (&join.left, true, t),
                        (Some(t), None) => (&join.right, false, t),
                        (Some(_), Some(_)) => {
                            return Err(Error::not_supported(
                                "a join of two ordinary tables is not supported in a materialized view; join a stream with a table",
                            ))
                        }
                        (None, None) => {
                            // The WHERE right above the join is part of its
                            // condition (for inner joins).
                            let mut conditions = Vec::new();
                            if join.join_type == JoinType::Inner {
                                if let Some(StatelessOp::Filter { predicate, input }) = ops.last() {
                                    if input == &join.schema {
                                        conditions = datafusion::logical_expr::utils::split_conjunction(predicate)
                                            .into_iter()
                                            .cloned()
                                            .collect();
                                        ops.pop();
                                    }
                                }
                            }
                            let side = |plan: &LogicalPlan| walk(plan, tables);
                            stream_join = Some(Box::new(JoinNode {
                                join: join.clone(),
                                conditions,
                                left: side(&join.left)?,
                                right: side(&join.right)?,
                            }));
                            break;
                        }
                    };
                if aggregate.is_none() && has_aggregate(node) {
                    return Err(Error::not_supported(
                        "a join with a table after GROUP BY is not supported in a materialized view yet; join before aggregating",
                    ));
                }
                let kind = match (join.join_type, stream_left) {
                    (JoinType::Inner, _) => JoinKind::Inner,
                    (JoinType::Left, true) | (JoinType::Right, false) => JoinKind::Left,
                    // IN and EXISTS subqueries over a table, decorrelated.
                    (JoinType::LeftSemi, true) | (JoinType::RightSemi, false) => JoinKind::Semi,
                    (JoinType::LeftAnti, true) | (JoinType::RightAnti, false) => JoinKind::Anti {
                        null_aware: join.null_aware,
                    },
                    (other, _) => {
                        return Err(Error::not_supported(format!(
                            "{} JOIN with a table is not supported in a materialized view; use JOIN, or LEFT JOIN with the stream on the left",
                            other.to_string().to_uppercase()
                        )))
                    }
                };
                // SqlToRel leaves ON's equalities in the filter: take
                // those between a column of each side as keys.
                let (on, filter) = equi_keys(join);
                if on.is_empty() {
                    return Err(Error::not_supported(
                        "a join with a table needs equal keys (ON e.cell_id = c.cell_id)",
                    ));
                }
                if let Some(filter) = &filter {
                    if kind == JoinKind::Left {
                        return Err(Error::not_supported(
                            "a LEFT JOIN with a table takes only equalities in its ON clause",
                        ));
                    }
                    if matches!(kind, JoinKind::Semi | JoinKind::Anti { .. }) {
                        return Err(Error::not_supported(
                            "a subquery over a table may relate its rows to the stream's only by equalities (WHERE t.id = e.id)",
                        ));
                    }
                    check_exprs(std::slice::from_ref(filter))?;
                    ops.push(StatelessOp::Filter {
                        predicate: filter.clone(),
                        input: join.schema.clone(),
                    });
                }
                // A subquery's filter and projection on the table's rows
                // are checked as the stream's are.
                for op in &table_side.ops {
                    match op {
                        StatelessOp::Filter { predicate, .. } => {
                            check_exprs(std::slice::from_ref(predicate))?
                        }
                        StatelessOp::Project { exprs, .. } => check_exprs(exprs)?,
                        StatelessOp::LookupJoin(_) => {}
                    }
                }
                let (stream_keys, table_keys): (Vec<Expr>, Vec<Expr>) = on
                    .iter()
                    .map(|(l, r)| if stream_left { (l.clone(), r.clone()) } else { (r.clone(), l.clone()) })
                    .unzip();
                check_exprs(&stream_keys)?;
                ops.push(StatelessOp::LookupJoin(Box::new(LookupJoinPlan {
                    table_name: table_side.name,
                    table: table_side.table,
                    kind,
                    stream_keys,
                    table_keys,
                    stream: stream.schema().clone(),
                    table_ops: table_side.ops,
                    table_schema: table_side.plan.schema().clone(),
                    stream_left,
                    output: join.schema.clone(),
                })));
                node = stream;
            }
            LogicalPlan::Union(u) => {
                let shapes = u
                    .inputs
                    .iter()
                    .map(|input| walk(input, tables))
                    .collect::<Result<Vec<_>>>()?;
                union = Some((shapes, u.schema.clone()));
                break;
            }
            LogicalPlan::Window(w) => {
                if aggregate.is_some() {
                    return Err(Error::not_supported(
                        "an aggregation over a window function (OVER) is not supported in a materialized view yet",
                    ));
                }
                if rank.is_some() {
                    return Err(Error::not_supported(
                        "a window function (OVER) over another is not supported in a materialized view yet",
                    ));
                }
                rank = Some(w.clone());
                node = &w.input;
            }
            LogicalPlan::Distinct(_) => {
                return Err(Error::not_supported(
                    "SELECT DISTINCT is not supported in materialized views yet; use GROUP BY",
                ))
            }
            LogicalPlan::Unnest(_) => {
                return Err(Error::not_supported("UNNEST is not supported in materialized views yet"))
            }
            LogicalPlan::Values(_) | LogicalPlan::EmptyRelation(_) => {
                return Err(Error::not_supported("a materialized view must read from a source table"))
            }
            other => {
                return Err(Error::not_supported(format!(
                    "{} is not supported in materialized views",
                    other.display()
                )))
            }
        }
    }
    above.reverse();
    between.reverse();
    below.reverse();
    let (pre, between, post) = match (&aggregate, &rank) {
        (Some(_), _) => (below, between, above),
        (None, Some(_)) => (between, Vec::new(), above),
        (None, None) => (above, Vec::new(), Vec::new()),
    };
    Ok(Shape {
        pre,
        aggregate,
        rank,
        between,
        post,
        scan: scan_name,
        join: stream_join,
        below: beneath,
        union,
    })
}

/// A join's equal keys (left, right), from `on` and from the equalities
/// between the two sides in its filter; and what is left of the filter.
pub(crate) fn equi_keys(
    join: &datafusion::logical_expr::Join,
) -> (Vec<(Expr, Expr)>, Option<Expr>) {
    let mut on = join.on.clone();
    let mut rest = Vec::new();
    if let Some(filter) = &join.filter {
        for conjunct in datafusion::logical_expr::utils::split_conjunction(filter) {
            match key_pair(conjunct, join.left.schema(), join.right.schema()) {
                Some(pair) => on.push(pair),
                None => rest.push(conjunct.clone()),
            }
        }
    }
    (on, datafusion::logical_expr::utils::conjunction(rest))
}

/// If `conjunct` is an equality between an expression of the left side and
/// one of the right, the two (left first).
pub(crate) fn key_pair(
    conjunct: &Expr,
    left: &DFSchemaRef,
    right: &DFSchemaRef,
) -> Option<(Expr, Expr)> {
    let side = |e: &Expr, schema: &DFSchemaRef| {
        let columns = e.column_refs();
        !columns.is_empty() && columns.iter().all(|c| schema.has_column(c))
    };
    let Expr::BinaryExpr(b) = conjunct else {
        return None;
    };
    if b.op != datafusion::logical_expr::Operator::Eq {
        return None;
    }
    let (l, r) = (b.left.as_ref(), b.right.as_ref());
    if side(l, left) && side(r, right) {
        Some((l.clone(), r.clone()))
    } else if side(r, left) && side(l, right) {
        Some((r.clone(), l.clone()))
    } else {
        None
    }
}

/// Whether an aggregation is below this node.
fn has_aggregate(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::Aggregate(_) => true,
        other => other.inputs().iter().any(|p| has_aggregate(p)),
    }
}

/// The table side of a join with an ordinary table.
struct TableSide<'a> {
    name: String,
    table: Arc<ReferenceTable>,
    plan: &'a Arc<LogicalPlan>,
    /// The filters and projections on the table's rows (a subquery's), from
    /// the scan up.
    ops: Vec<StatelessOp>,
}

/// If `plan` is a scan of an ordinary table (under an alias), with filters
/// and projections over it (a subquery's), that side of the join.
fn lookup_side<'a>(
    plan: &'a Arc<LogicalPlan>,
    tables: &HashMap<String, Arc<ReferenceTable>>,
) -> Option<TableSide<'a>> {
    let mut node = plan.as_ref();
    let mut ops = Vec::new();
    loop {
        match node {
            LogicalPlan::SubqueryAlias(a) => node = &a.input,
            LogicalPlan::Filter(f) => {
                ops.push(StatelessOp::Filter {
                    predicate: f.predicate.clone(),
                    input: f.input.schema().clone(),
                });
                node = &f.input;
            }
            LogicalPlan::Projection(p) => {
                ops.push(StatelessOp::Project {
                    exprs: p.expr.clone(),
                    input: p.input.schema().clone(),
                    output: p.schema.clone(),
                });
                node = &p.input;
            }
            LogicalPlan::TableScan(scan) if scan.filters.is_empty() => {
                let name = scan.table_name.table().to_string();
                let table = tables.get(&name)?.clone();
                ops.reverse();
                return Some(TableSide {
                    name,
                    table,
                    plan,
                    ops,
                });
            }
            _ => return None,
        }
    }
}

/// Refuses subqueries inside expressions.
pub(crate) fn check_exprs(exprs: &[Expr]) -> Result<()> {
    for e in exprs {
        let mut found = None;
        e.apply(|e| {
            let what = match e {
                Expr::ScalarSubquery(_) | Expr::InSubquery(_) | Expr::Exists(_) => {
                    Some("subqueries")
                }
                Expr::OuterReferenceColumn(..) => Some("correlated subqueries"),
                Expr::WindowFunction(_) => Some("window functions (OVER)"),
                _ => None,
            };
            if let Some(w) = what {
                found = Some(w);
                return Ok(TreeNodeRecursion::Stop);
            }
            Ok(TreeNodeRecursion::Continue)
        })
        .map_err(|e| Error::internal(e.to_string()))?;
        if let Some(w) = found {
            return Err(Error::not_supported(format!(
                "{w} are not supported in materialized views yet"
            )));
        }
    }
    Ok(())
}

fn check_aggregate(e: &Expr) -> Result<()> {
    let inner = match e {
        Expr::Alias(a) => a.expr.as_ref(),
        other => other,
    };
    match inner {
        Expr::AggregateFunction(f) => {
            // WITHIN GROUP (ORDER BY x) of ordered-set aggregates such as
            // approx_percentile_cont names their input: they need no order.
            if !f.params.order_by.is_empty() && !f.func.supports_within_group_clause() {
                return Err(Error::not_supported(format!(
                    "ordered aggregates ({}) are not supported in materialized views yet",
                    f.func.name()
                )));
            }
            check_exprs(&f.params.args)
        }
        other => Err(Error::internal(format!(
            "aggregate expression {other} is not an aggregate function"
        ))),
    }
}

/// Follows a column of the aggregation's input back through the pre
/// operations to the scan's column name.
fn trace_to_scan(column: &Column, pre: &[StatelessOp]) -> Option<String> {
    let mut name = column.clone();
    for op in pre.iter().rev() {
        if let StatelessOp::Project { exprs, output, .. } = op {
            // A subquery's alias requalifies its columns (`bid.window_start`
            // over `datagen.window_start`): then the name alone decides.
            let idx = output.index_of_column(&name).ok().or_else(|| {
                let mut same = output
                    .fields()
                    .iter()
                    .enumerate()
                    .filter(|(_, f)| f.name() == &name.name);
                match (same.next(), same.next()) {
                    (Some((i, _)), None) => Some(i),
                    _ => None,
                }
            })?;
            let mut expr = &exprs[idx];
            while let Expr::Alias(a) = expr {
                expr = a.expr.as_ref();
            }
            match expr {
                Expr::Column(c) => name = c.clone(),
                _ => return None,
            }
        }
    }
    Some(name.name)
}

pub(crate) fn aggregate_plan(
    agg: &AggregateNode,
    pre: &[StatelessOp],
    window: Option<(&WindowPlan, &str)>,
    must_group_by_window: bool,
) -> Result<AggregatePlan> {
    let mut fire_time = None;
    let mut window_groups = Vec::new();
    let mut session = None;
    if let Some((w, source)) = window {
        let mut start = None;
        let mut end = None;
        let mut time = None;
        let mut others = Vec::new();
        for (i, g) in agg.group_exprs.iter().enumerate() {
            let traced = match g {
                Expr::Column(c) => trace_to_scan(c, pre),
                _ => None,
            };
            match traced.as_deref() {
                Some(WINDOW_END) => {
                    end = Some(i);
                    window_groups.push(i);
                }
                Some(WINDOW_START) => {
                    start = Some(i);
                    window_groups.push(i);
                }
                Some(WINDOW_TIME) => {
                    time = Some(i);
                    window_groups.push(i);
                }
                // A column a view computes is a session partition by the
                // name the view gives it (see `views::window_over_view`).
                _ => others.push((
                    i,
                    traced.or_else(|| match g {
                        Expr::Column(c) => Some(c.name.clone()),
                        _ => None,
                    }),
                )),
            }
        }
        fire_time = match (end, start) {
            (Some(i), _) => Some(FireTime {
                group_index: i,
                add_ms: 0,
            }),
            (None, Some(i)) if w.kind.fixed_size() => Some(FireTime {
                group_index: i,
                add_ms: w.kind.size(),
            }),
            (None, Some(_)) => {
                return Err(Error::user(
                    sqlstate::GROUPING_ERROR,
                    format!(
                        "an aggregation over a {} window must GROUP BY window_end too: its windows share their start",
                        w.kind.name()
                    ),
                ))
            }
            (None, None) if !must_group_by_window => None,
            (None, None) => {
                return Err(Error::user(
                    sqlstate::GROUPING_ERROR,
                    format!(
                        "an aggregation over a window of \"{source}\" must GROUP BY window_start, window_end"
                    ),
                ))
            }
        };
        if let WindowKind::Session { .. } = w.kind {
            let (Some(start), Some(end)) = (start, end) else {
                return Err(Error::user(
                    sqlstate::GROUPING_ERROR,
                    "an aggregation over a SESSION window must GROUP BY window_start, window_end",
                ));
            };
            session = Some(session_groups(start, end, time, &others, w)?);
        }
    }
    let mut routing: Vec<usize> = (0..agg.group_exprs.len())
        .filter(|i| !window_groups.contains(i))
        .collect();
    if routing.is_empty() && session.is_none() {
        routing = (0..agg.group_exprs.len()).collect();
    }
    Ok(AggregatePlan {
        input: agg.input.clone(),
        group_exprs: agg.group_exprs.clone(),
        aggr_exprs: agg.aggr_exprs.clone(),
        output: agg.output.clone(),
        fire_time,
        routing,
        session,
        allowed_lateness: 0,
        rows_count: None,
        emit: EmitMode::default(),
    })
}

/// The group column an aggregation without GROUP BY is given.
pub const ONE_GROUP: &str = "__all";

/// The hidden count of a GROUP BY without aggregates.
const GROUP_ROWS: &str = "__rows";

/// An aggregation without GROUP BY has one group: it gets a constant group
/// column, [`ONE_GROUP`], which a projection after it drops.
/// An aggregation as the job runs it: one without GROUP BY has one
/// group, one without aggregates counts its groups' rows; the projections
/// that give the query's columns go first in `post`.
pub(crate) fn finish_aggregate(
    mut agg: AggregateNode,
    post: &mut Vec<StatelessOp>,
) -> Result<AggregateNode> {
    if agg.group_exprs.is_empty() {
        let drop;
        (agg, drop) = one_group(agg)?;
        post.insert(0, drop);
    }
    if agg.aggr_exprs.is_empty() {
        let drop;
        (agg, drop) = counted(agg)?;
        post.insert(0, drop);
    }
    Ok(agg)
}

fn one_group(agg: AggregateNode) -> Result<(AggregateNode, StatelessOp)> {
    let groups = vec![datafusion::logical_expr::lit(true).alias(ONE_GROUP)];
    let aggregates = agg.aggr_exprs.clone();
    let width = agg.aggr_exprs.len();
    regrouped(agg, groups, aggregates, 1..1 + width)
}

/// A GROUP BY without aggregates (`SELECT DISTINCT`, Nexmark q8's sides)
/// as one that counts its groups' rows, which a projection then drops:
/// every group has a state, and a group whose rows are all taken back
/// (over a view whose rows change) is known to be gone.
fn counted(agg: AggregateNode) -> Result<(AggregateNode, StatelessOp)> {
    let groups = agg.group_exprs.clone();
    let count = datafusion::functions_aggregate::count::count(datafusion::logical_expr::lit(1))
        .alias(GROUP_ROWS);
    let width = agg.group_exprs.len();
    regrouped(agg, groups, vec![count], 0..width)
}

/// `agg` planned again with `groups` and `aggregates`, and the projection
/// after it that keeps its columns `kept` (which give `agg`'s output).
fn regrouped(
    agg: AggregateNode,
    groups: Vec<Expr>,
    aggregates: Vec<Expr>,
    kept: std::ops::Range<usize>,
) -> Result<(AggregateNode, StatelessOp)> {
    let empty = LogicalPlan::EmptyRelation(EmptyRelation {
        produce_one_row: false,
        schema: agg.input.clone(),
    });
    let plan = LogicalPlanBuilder::from(empty)
        .aggregate(groups, aggregates)?
        .build()?;
    let LogicalPlan::Aggregate(a) = &plan else {
        return Err(Error::internal("an aggregation lost its plan"));
    };
    let exprs: Vec<Expr> = kept
        .map(|i| Expr::Column(Column::from(a.schema.qualified_field(i))))
        .collect();
    Ok((
        AggregateNode {
            input: agg.input,
            group_exprs: a.group_expr.clone(),
            aggr_exprs: a.aggr_expr.clone(),
            output: a.schema.clone(),
        },
        StatelessOp::Project {
            exprs,
            input: a.schema.clone(),
            output: agg.output,
        },
    ))
}

/// The few rewrites of DataFusion's optimizer the streaming planner takes:
/// `SELECT DISTINCT` as the GROUP BY it means, `IN` and `EXISTS` subqueries
/// as the semi and anti joins they mean, and filters pushed down to
/// the rows they test (a join keeps only the rows its WHERE can pass: a
/// regular join's state is that much smaller).
fn rewritten(plan: LogicalPlan) -> Result<LogicalPlan> {
    use datafusion::optimizer::decorrelate_predicate_subquery::DecorrelatePredicateSubquery;
    use datafusion::optimizer::push_down_filter::PushDownFilter;
    use datafusion::optimizer::replace_distinct_aggregate::ReplaceDistinctWithAggregate;
    use datafusion::optimizer::{Optimizer, OptimizerContext};
    let optimizer = Optimizer::with_rules(vec![
        Arc::new(ReplaceDistinctWithAggregate::new()),
        Arc::new(DecorrelatePredicateSubquery::new()),
        Arc::new(PushDownFilter::new()),
    ]);
    Ok(optimizer.optimize(plan, &OptimizerContext::new(), |_, _| {})?)
}

/// The groups of a SESSION aggregation: the non-window group columns must be
/// the window's PARTITION BY columns (the sessions are theirs).
fn session_groups(
    start: usize,
    end: usize,
    time: Option<usize>,
    others: &[(usize, Option<String>)],
    window: &WindowPlan,
) -> Result<SessionGroups> {
    let mut grouped: Vec<&str> = Vec::new();
    for (_, name) in others {
        match name {
            Some(n) => grouped.push(n),
            None => {
                return Err(Error::not_supported(
                    "an aggregation over a SESSION window can GROUP BY columns only, besides the window",
                ))
            }
        }
    }
    let mut a: Vec<&str> = grouped.clone();
    let mut b: Vec<&str> = window.partition.iter().map(|s| s.as_str()).collect();
    a.sort_unstable();
    b.sort_unstable();
    if a != b {
        return Err(Error::user(
            sqlstate::GROUPING_ERROR,
            format!(
                "an aggregation over a SESSION window must GROUP BY its PARTITION BY columns ({}) besides window_start and window_end, got ({})",
                window.partition.join(", "),
                grouped.join(", ")
            ),
        ));
    }
    Ok(SessionGroups {
        gap: window.kind.size(),
        start,
        end,
        time,
        partition: others.iter().map(|(i, _)| *i).collect(),
    })
}

fn check_output_names(schema: &Schema) -> Result<()> {
    for (i, f) in schema.fields().iter().enumerate() {
        if schema.fields()[..i].iter().any(|o| o.name() == f.name()) {
            return Err(Error::user(
                sqlstate::AMBIGUOUS_COLUMN,
                format!(
                    "column \"{}\" appears twice in the view; give one an alias",
                    f.name()
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frontend::ddl::bind_source;
    use crate::frontend::parser::{parse_one, Statement};

    fn source() -> Arc<SourcePlan> {
        let sql = "CREATE TABLE calls (event_time BIGINT, cell_id STRING, status STRING, duration_ms INT, \
                   ts AS TO_TIMESTAMP_LTZ(event_time, 3), WATERMARK FOR ts AS ts - INTERVAL '5' SECOND) \
                   WITH ('connector' = 'datagen')";
        let Statement::CreateSource(c) = parse_one(sql).unwrap().statement else {
            panic!()
        };
        let ctx = crate::functions::session_context();
        Arc::new(bind_source(&ctx.state(), &c, sql).unwrap())
    }

    async fn plan(sql: &str) -> Result<StreamPlan> {
        let Statement::CreateView(v) = parse_one(sql)?.statement else {
            panic!()
        };
        let s = source();
        plan_view(&v, sql, &|name| {
            if name == "calls" {
                Relation::Source(s.clone())
            } else if name == "kpi" {
                Relation::View("\"kpi\" updates its rows".into())
            } else {
                Relation::Unknown
            }
        })
        .await
    }

    #[tokio::test]
    async fn plans_a_windowed_kpi_view() {
        let p = plan(
            "CREATE MATERIALIZED VIEW kpi AS SELECT window_start, window_end, cell_id, COUNT(*) AS calls, \
             COUNT(*) FILTER (WHERE status <> 'ok') AS failures, AVG(duration_ms) AS avg_ms \
             FROM TABLE(TUMBLE(TABLE calls, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) \
             WHERE duration_ms >= 0 GROUP BY window_start, window_end, cell_id EMIT ON WINDOW CLOSE",
        )
        .await
        .unwrap();
        let NodeKind::Aggregate { input, plan: agg } = &p.root.kind else {
            panic!("an aggregation: {:?}", p.root.kind)
        };
        assert_eq!(agg.fire_time.unwrap().group_index, 1);
        assert_eq!(agg.routing, vec![2]);
        assert_eq!(input.ops.len(), 1);
        assert!(agg.final_rows_only());
        let names: Vec<&str> = p
            .output
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        assert_eq!(
            names,
            vec![
                "window_start",
                "window_end",
                "cell_id",
                "calls",
                "failures",
                "avg_ms"
            ]
        );
        let text = p.explain(2);
        assert!(
            text.contains("WindowAssign: TUMBLE(size=1 min) on ts"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn the_key_of_a_view_is_its_group_columns_as_it_shows_them() {
        let p = plan(
            "CREATE MATERIALIZED VIEW v AS SELECT window_start AS ws, cell_id, COUNT(*) AS calls \
             FROM TABLE(TUMBLE(TABLE calls, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) \
             GROUP BY window_start, window_end, cell_id",
        )
        .await
        .unwrap();
        let key = p.key_schema().unwrap();
        let names: Vec<&str> = key.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, vec!["ws", "window_end", "cell_id"]);
        // Final rows never change: no key.
        let p = plan(
            "CREATE MATERIALIZED VIEW v AS SELECT window_start, COUNT(*) AS calls \
             FROM TABLE(TUMBLE(TABLE calls, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) \
             GROUP BY window_start, window_end EMIT ON WINDOW CLOSE",
        )
        .await
        .unwrap();
        assert!(p.key_schema().is_none());
    }

    #[tokio::test]
    async fn refuses_what_it_cannot_do_with_0a000() {
        for (sql, needle) in [
            ("CREATE MATERIALIZED VIEW v AS SELECT * FROM calls ORDER BY cell_id", "ORDER BY"),
            ("CREATE MATERIALIZED VIEW v AS SELECT * FROM calls LIMIT 5", "LIMIT"),
            ("CREATE MATERIALIZED VIEW v AS SELECT a.cell_id FROM calls a LEFT JOIN calls b ON a.cell_id = b.cell_id", "time bound"),
            ("CREATE MATERIALIZED VIEW v AS SELECT * FROM kpi", "updates its rows"),
            ("CREATE MATERIALIZED VIEW v AS SELECT cell_id, ROW_NUMBER() OVER (ORDER BY ts) FROM calls", "WHERE row_num <= N"),
            ("CREATE MATERIALIZED VIEW v AS SELECT cell_id, RANK() OVER (ORDER BY ts) FROM calls", "OVER"),
            ("CREATE MATERIALIZED VIEW v AS SELECT cell_id, COUNT(*) FROM calls GROUP BY cell_id EMIT ON WINDOW CLOSE", "EMIT ON WINDOW CLOSE"),
        ] {
            let err = plan(sql).await.unwrap_err();
            assert_eq!(err.sqlstate(), "0A000", "{sql}: {err}");
            assert!(err.to_string().contains(needle), "{sql}: {err}");
        }
    }

    #[tokio::test]
    async fn user_errors_carry_sqlstates_and_positions() {
        let sql = "CREATE MATERIALIZED VIEW v AS SELECT nope FROM calls";
        let err = plan(sql).await.unwrap_err();
        assert_eq!(err.sqlstate(), "42703");
        assert_eq!(err.position(), Some(sql.find("nope").unwrap() + 1));
        let sql = "CREATE MATERIALIZED VIEW v AS SELECT * FROM missing";
        let err = plan(sql).await.unwrap_err();
        assert_eq!(err.sqlstate(), "42P01");
        assert_eq!(err.position(), Some(sql.find("missing").unwrap() + 1));
        let err = plan(
            "CREATE MATERIALIZED VIEW v AS SELECT cell_id, COUNT(*) FROM TUMBLE(calls, ts, INTERVAL '1' MINUTE) GROUP BY cell_id",
        )
        .await
        .unwrap_err();
        assert_eq!(err.sqlstate(), "42803");
    }
}
