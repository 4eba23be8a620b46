//! The streaming plan of a view: what the frontend's planner produces and a
//! job runs.
//!
//! A plan is a straight line: a source, an optional window assignment, the
//! filters and projections before aggregation, an optional (windowed)
//! aggregation, and the projections and filters after it (HAVING and the
//! SELECT list). Expressions are DataFusion logical expressions, already
//! type-checked, with the schema they are evaluated against; a job turns them
//! into physical expressions and accumulators when it starts.

use std::fmt::Write as _;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::common::DFSchemaRef;
use datafusion::logical_expr::Expr;

use crate::connector::SourceSpec;
use crate::dataflow::lookup_join::JoinKind;
use crate::dataflow::window::WindowKind;
use crate::state::reference::ReferenceTable;

/// When a windowed view shows a window's row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EmitMode {
    /// In-progress windows are shown and updated continuously (default).
    #[default]
    OnUpdate,
    /// Only final rows of closed windows are shown (`EMIT ON WINDOW CLOSE`).
    OnWindowClose,
    /// In-progress windows are shown as of at most `every_ms` ago, and
    /// final rows when they close (`EMIT EVERY interval`): early results of
    /// long windows at a bounded update rate.
    Every { every_ms: i64 },
}

impl EmitMode {
    /// Whether each change of a group shows at once.
    pub fn on_update(&self) -> bool {
        *self == EmitMode::OnUpdate
    }
}

/// A source table as a job needs it.
#[derive(Debug, Clone)]
pub struct SourcePlan {
    pub name: String,
    pub spec: SourceSpec,
    /// The physical (decoded) columns.
    pub physical: SchemaRef,
    /// The physical columns named as the records name them: as the DDL
    /// spells them, before SQL folds the names (`itemName`, not
    /// `itemname`). Same types as `physical`, ROW fields spelled likewise.
    pub declared: SchemaRef,
    pub physical_df: DFSchemaRef,
    /// Every column, physical and computed, in declaration order.
    pub schema: SchemaRef,
    pub schema_df: DFSchemaRef,
    /// For each column of `schema`: where its values come from.
    pub columns: Vec<ColumnSource>,
    pub rowtime: Option<Rowtime>,
    /// The processing-time column (`pt AS PROCTIME()`), if any.
    pub proctime: Option<usize>,
}

impl SourcePlan {
    /// For a view whose rows change, read by a view over it: its key
    /// columns (it is read as its changes, by key).
    pub fn changes(&self) -> Option<&SchemaRef> {
        match &self.spec.connector {
            crate::connector::ConnectorSpec::View(v) => v.changes.as_ref(),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub enum ColumnSource {
    /// Column i of the physical schema.
    Physical(usize),
    /// A computed column: an expression over the physical schema, and the
    /// expression as written.
    Computed { expr: Expr, sql: String },
}

/// The event-time column of a source and its watermark.
#[derive(Debug, Clone)]
pub struct Rowtime {
    pub column: String,
    /// Index in the source's full schema.
    pub index: usize,
    /// The watermark expression, over the full schema.
    pub watermark: Expr,
    /// The watermark as written, for EXPLAIN and DESCRIBE.
    pub watermark_sql: String,
}

/// A stateless operation on batches.
#[derive(Debug, Clone)]
pub enum StatelessOp {
    Filter {
        predicate: Expr,
        input: DFSchemaRef,
    },
    Project {
        exprs: Vec<Expr>,
        input: DFSchemaRef,
        output: DFSchemaRef,
    },
    /// Each row joined with the matching row of an ordinary table.
    LookupJoin(Box<LookupJoinPlan>),
}

/// A join of the stream with an ordinary table on equal keys.
#[derive(Debug, Clone)]
pub struct LookupJoinPlan {
    pub table_name: String,
    pub table: Arc<ReferenceTable>,
    pub kind: JoinKind,
    /// Key expressions over the stream side (`stream`) and over the table
    /// side (`table_schema`), pairwise equal.
    pub stream_keys: Vec<Expr>,
    pub table_keys: Vec<Expr>,
    pub stream: DFSchemaRef,
    /// The operations on the table's rows before the join (a subquery's
    /// filter and projection), from the scan up; `table_schema` is their
    /// output.
    pub table_ops: Vec<StatelessOp>,
    pub table_schema: DFSchemaRef,
    /// Whether the stream is the join's left side.
    pub stream_left: bool,
    pub output: DFSchemaRef,
}

impl StatelessOp {
    pub fn describe(&self) -> String {
        match self {
            StatelessOp::Filter { predicate, .. } => format!("Filter: {predicate}"),
            StatelessOp::Project { exprs, .. } => {
                let list: Vec<String> = exprs.iter().map(|e| e.to_string()).collect();
                format!("Project: {}", list.join(", "))
            }
            StatelessOp::LookupJoin(j) => {
                let on: Vec<String> = j
                    .stream_keys
                    .iter()
                    .zip(&j.table_keys)
                    .map(|(s, t)| format!("{s} = {t}"))
                    .collect();
                let kind = match j.kind {
                    JoinKind::Inner => "inner",
                    JoinKind::Left => "left",
                    JoinKind::Semi => "semi",
                    JoinKind::Anti { .. } => "anti",
                };
                format!(
                    "LookupJoin: {kind} with table {} on {}",
                    j.table_name,
                    on.join(" AND ")
                )
            }
        }
    }
}

/// Window assignment: adds `window_start`, `window_end`, `window_time`.
#[derive(Debug, Clone)]
pub struct WindowPlan {
    pub kind: WindowKind,
    /// Index of the time column in the source schema.
    pub time_index: usize,
    /// The source schema plus the window columns.
    pub output: SchemaRef,
    /// SESSION's `PARTITION BY` columns.
    pub partition: Vec<String>,
    /// Over the processing-time column: the pipeline stamps each row's time
    /// and its watermark follows the clock.
    pub processing_time: bool,
}

/// The group columns of an aggregation over SESSION windows: each partition
/// (the other group columns) has its own sessions.
#[derive(Debug, Clone)]
pub struct SessionGroups {
    /// The session gap, ms.
    pub gap: i64,
    pub start: usize,
    pub end: usize,
    pub time: Option<usize>,
    pub partition: Vec<usize>,
}

/// Where an aggregation's window end is: the value of a group column plus
/// an offset (0 for `window_end`, the size for `window_start`).
#[derive(Debug, Clone, Copy)]
pub struct FireTime {
    pub group_index: usize,
    pub add_ms: i64,
}

#[derive(Debug, Clone)]
pub struct AggregatePlan {
    /// The rows entering the aggregation.
    pub input: DFSchemaRef,
    pub group_exprs: Vec<Expr>,
    pub aggr_exprs: Vec<Expr>,
    /// `[group columns..., aggregate results...]`.
    pub output: DFSchemaRef,
    /// For windowed aggregations: how to find each group's window end.
    pub fire_time: Option<FireTime>,
    /// Which group columns route a group to its owner instance (the non-window
    /// ones; all of them if there are none, but none for sessions).
    pub routing: Vec<usize>,
    /// For aggregations over SESSION windows.
    pub session: Option<SessionGroups>,
    /// How long after it fires a window still takes late rows (ms, the
    /// view's `allowed-lateness`).
    pub allowed_lateness: i64,
    /// Over a view whose rows change (see `frontend/retract.rs`): which
    /// aggregate counts each group's rows; a group left without rows is
    /// deleted.
    pub rows_count: Option<usize>,
    /// When a group's row shows (windowed aggregations).
    pub emit: EmitMode,
}

/// A node of a view's plan, which is a tree from the sources up to the
/// view's rows: an operator, and the filters, projections and lookup joins
/// on the rows it gives (`ops`, in order). A job runs each node as a stage
/// of P instances, joined to the stage above by an exchange on the keys
/// that stage needs (see `job.rs`).
#[derive(Debug, Clone)]
pub struct Node {
    pub kind: NodeKind,
    pub ops: Vec<StatelessOp>,
}

// A plan is made once per view: the size of a scan does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum NodeKind {
    /// A source, read through an optional window: P readers and pipelines.
    Scan {
        source: SourcePlan,
        window: Option<WindowPlan>,
    },
    /// A join of two streams.
    Join(Box<StreamJoinPlan>),
    /// An aggregation (windowed or not) of its input's rows.
    Aggregate {
        input: Box<Node>,
        plan: Box<AggregatePlan>,
    },
    /// Top-N per partition of its input's rows.
    Rank {
        input: Box<Node>,
        plan: Box<RankPlan>,
    },
    /// The rows of all its inputs (`UNION ALL`), as `schema`'s columns.
    Union {
        inputs: Vec<Node>,
        schema: SchemaRef,
    },
}

impl Node {
    pub fn scan(source: SourcePlan, window: Option<WindowPlan>, ops: Vec<StatelessOp>) -> Node {
        Node {
            kind: NodeKind::Scan { source, window },
            ops,
        }
    }

    /// The nodes whose rows it takes (the left side of a join first).
    pub fn inputs(&self) -> Vec<&Node> {
        match &self.kind {
            NodeKind::Scan { .. } => Vec::new(),
            NodeKind::Join(j) => vec![&j.left, &j.right],
            NodeKind::Aggregate { input, .. } | NodeKind::Rank { input, .. } => vec![input],
            NodeKind::Union { inputs, .. } => inputs.iter().collect(),
        }
    }

    /// The node and every node below it, each before its inputs (left
    /// first): the order in which a job numbers its stages.
    pub fn walk(&self) -> Vec<&Node> {
        let mut nodes = vec![self];
        for input in self.inputs() {
            nodes.extend(input.walk());
        }
        nodes
    }

    /// The source and window of a scan.
    pub fn as_scan(&self) -> Option<(&SourcePlan, Option<&WindowPlan>)> {
        match &self.kind {
            NodeKind::Scan { source, window } => Some((source, window.as_ref())),
            _ => None,
        }
    }

    /// The window whose columns its rows carry, and the source it is
    /// over: a scan's, passed through the final rows of windowed
    /// aggregations (grouped by the window's columns, a window's row comes
    /// once the watermark passes its end, as the window's rows did).
    pub fn window(&self) -> Option<(&WindowPlan, &str)> {
        match &self.kind {
            NodeKind::Scan { source, window } => window.as_ref().map(|w| (w, source.name.as_str())),
            NodeKind::Aggregate { input, plan } if plan.final_rows_only() => input.window(),
            _ => None,
        }
    }

    /// Whether each of its rows, once given, never changes: scans of
    /// sources (not of a view whose rows change), joins of such rows, and
    /// windowed aggregations that give only final rows (`EMIT ON WINDOW
    /// CLOSE`, no allowed lateness; not sessions, whose fired rows a
    /// bridging row can still merge).
    pub fn appends_only(&self) -> bool {
        match &self.kind {
            NodeKind::Scan { source, .. } => source.changes().is_none(),
            NodeKind::Join(_) => true,
            NodeKind::Union { inputs, .. } => inputs.iter().all(|n| n.appends_only()),
            NodeKind::Aggregate { plan, .. } => plan.final_rows_only(),
            // Its rows move in rank.
            NodeKind::Rank { .. } => false,
        }
    }

    /// The operators from the sources up to the rows it gives, indented
    /// from `depth` on, the nearest first; `late` says what happens to a
    /// scan's late rows.
    fn explain(&self, late: &str, parallelism: usize, mut depth: usize, out: &mut String) {
        let line = |out: &mut String, depth: usize, text: String| {
            let _ = writeln!(out, "{}{}", "  ".repeat(depth), text);
        };
        for op in self.ops.iter().rev() {
            line(out, depth, op.describe());
            depth += 1;
        }
        let list = |exprs: &[Expr]| -> String {
            exprs
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        match &self.kind {
            NodeKind::Scan { source, window } => {
                explain_scan(source, window.as_ref(), late, parallelism, depth, out)
            }
            NodeKind::Aggregate { input, plan } => {
                let aggs = list(&plan.aggr_exprs);
                let groups: Vec<String> = plan.group_exprs.iter().map(|e| e.to_string()).collect();
                let kind = if plan.fire_time.is_some() {
                    "WindowAggregate"
                } else {
                    "Aggregate"
                };
                line(
                    out,
                    depth,
                    format!("{kind}(final): parallelism={parallelism} aggregates=[{aggs}]"),
                );
                let routing: Vec<String> =
                    plan.routing.iter().map(|i| groups[*i].clone()).collect();
                line(
                    out,
                    depth + 1,
                    if routing.is_empty() {
                        "Exchange: single (every group to one instance)".to_string()
                    } else {
                        format!("Exchange: hash({})", routing.join(", "))
                    },
                );
                line(
                    out,
                    depth + 2,
                    format!(
                        "{kind}(partial): parallelism={parallelism} group=[{}]",
                        groups.join(", ")
                    ),
                );
                let late = match plan.allowed_lateness {
                    _ if plan.fire_time.is_none() => String::new(),
                    0 => " late=drop-and-count".to_string(),
                    ms => format!(
                        " late=update-for {} then drop-and-count",
                        crate::dataflow::window::fmt_ms(ms)
                    ),
                };
                input.explain(&late, parallelism, depth + 3, out);
            }
            NodeKind::Rank { input, plan } => {
                let order: Vec<String> = plan.order.iter().map(|s| s.to_string()).collect();
                line(
                    out,
                    depth,
                    format!(
                        "TopN: first {} by [{}] of each partition [{}], parallelism={parallelism}, state {} rows per partition{}",
                        plan.limit,
                        order.join(", "),
                        list(&plan.partition),
                        plan.limit,
                        if plan.window_end.is_some() {
                            " of the open windows"
                        } else {
                            ""
                        }
                    ),
                );
                line(
                    out,
                    depth + 1,
                    if plan.partition.is_empty() {
                        "Exchange: single (every row to one instance)".to_string()
                    } else {
                        format!("Exchange: hash({})", list(&plan.partition))
                    },
                );
                let late = if plan.window_end.is_some() {
                    " late=drop-and-count"
                } else {
                    ""
                };
                input.explain(late, parallelism, depth + 2, out);
            }
            NodeKind::Union { inputs, .. } => {
                line(
                    out,
                    depth,
                    format!("Union: {} inputs, parallelism={parallelism}", inputs.len()),
                );
                for input in inputs {
                    line(out, depth + 1, "Exchange: forward".to_string());
                    input.explain(late, parallelism, depth + 2, out);
                }
            }
            NodeKind::Join(join) => {
                let on: Vec<String> = join
                    .left_keys
                    .iter()
                    .zip(&join.right_keys)
                    .map(|(l, r)| format!("{l} = {r}"))
                    .collect();
                let fmt = crate::dataflow::window::fmt_ms;
                let regular = join.left_time.is_none();
                let (kind, bound, state) = match (join.windowed, regular) {
                    (true, _) => (
                        "WindowJoin",
                        String::new(),
                        "state bounded by the watermarks",
                    ),
                    (false, true) if join.semi => (
                        "RegularJoin",
                        String::new(),
                        "the left rows still unmatched and one right row per key kept",
                    ),
                    (false, true) => (
                        "RegularJoin",
                        String::new(),
                        "every row kept (state grows with the streams)",
                    ),
                    (false, false) => (
                        "IntervalJoin",
                        format!(
                            ", left time - right time in [{}, {}]",
                            fmt(join.lower_ms),
                            fmt(join.upper_ms)
                        ),
                        "state bounded by the watermarks",
                    ),
                };
                line(
                    out,
                    depth,
                    format!(
                        "{kind}: {} on {}{bound}, parallelism={parallelism}, {state}",
                        match (join.outer_left, join.outer_right) {
                            _ if join.semi => "semi",
                            (false, false) => "inner",
                            (true, false) => "left outer",
                            (false, true) => "right outer",
                            (true, true) => "full outer",
                        },
                        on.join(" AND "),
                    ),
                );
                // A regular join takes every row, the late ones too.
                let late = if regular { "" } else { " late=drop-and-count" };
                for (input, keys) in [
                    (&join.left, &join.left_keys),
                    (&join.right, &join.right_keys),
                ] {
                    line(out, depth + 1, format!("Exchange: hash({})", list(keys)));
                    input.explain(late, parallelism, depth + 2, out);
                }
            }
        }
    }
}

/// The operators of a scan, from its window down to its source.
fn explain_scan(
    source: &SourcePlan,
    window: Option<&WindowPlan>,
    late: &str,
    parallelism: usize,
    mut depth: usize,
    out: &mut String,
) {
    let mut lines: Vec<String> = Vec::new();
    if let Some(w) = window {
        let partition = if w.partition.is_empty() {
            String::new()
        } else {
            format!(" partition by {}", w.partition.join(", "))
        };
        lines.push(format!(
            "WindowAssign: {}{partition} on {}{late}",
            w.kind.describe(),
            source.schema.field(w.time_index).name()
        ));
    }
    if let Some(rt) = &source.rowtime {
        let late = if window.is_none() { late } else { "" };
        lines.push(format!(
            "Watermark: {} ({}){late}",
            rt.column, rt.watermark_sql
        ));
    }
    let computed: Vec<String> = source
        .schema
        .fields()
        .iter()
        .zip(&source.columns)
        .filter_map(|(f, c)| match c {
            ColumnSource::Computed { sql, .. } => Some(format!("{} = {sql}", f.name())),
            ColumnSource::Physical(_) => None,
        })
        .collect();
    if !computed.is_empty() {
        lines.push(format!("Compute: {}", computed.join(", ")));
    }
    lines.push(format!(
        "{} parallelism={parallelism}",
        source.spec.connector.describe()
    ));
    for line in lines {
        let _ = writeln!(out, "{}{}", "  ".repeat(depth), line);
        depth += 1;
    }
}

/// Which side of a join of two streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Left,
    Right,
}

/// The time of a row entering a join of two streams: a column of the rows
/// plus an offset (the event time; for window joins `window_end` - 1 ms, or
/// `window_start` + size - 1 ms: the window's `window_time`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinTime {
    pub index: usize,
    pub add_ms: i64,
}

/// A join of two streams whose state the watermarks bound: an interval
/// join (`l.ts BETWEEN r.ts - INTERVAL ... AND r.ts + INTERVAL ...`) or a
/// window join (the same window on both sides, `l.window_start =
/// r.window_start AND l.window_end = r.window_end`). A pair of rows with
/// equal keys whose times satisfy `lower_ms <= left time - right time <=
/// upper_ms` is one output row; outer joins add the rows that meet none.
#[derive(Debug, Clone)]
pub struct StreamJoinPlan {
    /// The two sides' rows.
    pub left: Node,
    pub right: Node,
    /// The rows entering the join on each side.
    pub left_schema: DFSchemaRef,
    pub right_schema: DFSchemaRef,
    /// Key expressions over each side's rows, pairwise equal.
    pub left_keys: Vec<Expr>,
    pub right_keys: Vec<Expr>,
    /// Each side's time; None for a regular join (no time bound: every row
    /// may meet any row to come, and the pairs have no time attribute).
    pub left_time: Option<JoinTime>,
    pub right_time: Option<JoinTime>,
    pub lower_ms: i64,
    pub upper_ms: i64,
    /// Whether it joins rows of the same window (a window join).
    pub windowed: bool,
    /// Outer joins: whether the left (LEFT, FULL) or right (RIGHT, FULL)
    /// side's rows that meet none show too, padded with nulls, once they
    /// can meet none any more.
    pub outer_left: bool,
    pub outer_right: bool,
    /// A semi join (`IN` or `EXISTS` over a stream, regular): each left row
    /// once, alone, as soon as a right row with its key has come.
    pub semi: bool,
    /// The joined rows: the left side's columns, then the right side's
    /// (for a semi join, the left side's only).
    pub output: DFSchemaRef,
    /// The side whose time the view's time attribute is, if it has one:
    /// the view's watermark is made for it.
    pub output_time: Option<Side>,
}

/// Top-N per partition: `ROW_NUMBER() OVER (PARTITION BY p ORDER BY o)`
/// kept while at most `limit` (the filter on it above). Each partition's
/// first `limit` rows by the order, each with its row number; a row that
/// enters pushes the rows after it one place down (their row numbers
/// change, the last leaves). Deduplication is its `limit` 1 (keep first
/// with `ORDER BY` time ascending, keep last descending).
#[derive(Debug, Clone)]
pub struct RankPlan {
    /// The rows entering.
    pub input: DFSchemaRef,
    /// Columns of `input`.
    pub partition: Vec<Expr>,
    pub order: Vec<datafusion::logical_expr::SortExpr>,
    pub limit: usize,
    /// `input`'s columns, then the row number.
    pub output: DFSchemaRef,
    /// The columns of `output` its rows are keyed by: the partition's, and
    /// the row number's unless `limit` is 1.
    pub key: Vec<usize>,
    /// A top-N per window: where each partition's window end is (a column
    /// of `input` plus an offset); the partition goes when it closes.
    pub window_end: Option<FireTime>,
}

/// The column `e` shows as it is, or cast from one integer type to
/// another (INSERT casts a row number to the sink's BIGINT).
fn shown_column(e: &Expr, input: &DFSchemaRef) -> Option<datafusion::common::Column> {
    use datafusion::logical_expr::ExprSchemable;
    match e.clone().unalias() {
        Expr::Column(c) => Some(c),
        Expr::Cast(cast) => match cast.expr.as_ref() {
            Expr::Column(c)
                if cast.field.data_type().is_integer()
                    && cast.expr.get_type(input).is_ok_and(|t| t.is_integer()) =>
            {
                Some(c.clone())
            }
            _ => None,
        },
        _ => None,
    }
}

/// What a view does with its rows (see [`crate::state::view::Rows`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ViewRows {
    Kept,
    /// A `blackhole` sink's view.
    Discarded,
    /// A `print` sink's view: lines start with `identifier`.
    Printed {
        identifier: String,
    },
}

#[derive(Debug, Clone)]
pub struct StreamPlan {
    pub view: String,
    /// The operators, from the view's rows down to the sources.
    pub root: Node,
    /// The view's columns.
    pub output: SchemaRef,
    /// The output column that is a time attribute (Flink's rowtime): the
    /// source's event time passed through, or `window_time` of a windowed
    /// aggregation. A view over this view can window over it, and its
    /// watermark is this view's.
    pub time_attribute: Option<String>,
    /// Kept, unless the view is a print or blackhole sink's.
    pub rows: ViewRows,
    /// `'rows-cache'`: the memory the view's rows may take (the rest is in
    /// RocksDB), if less than their share of the server's `--state-cache`.
    /// A sink's own view takes little: only its sink reads its rows, just
    /// behind it.
    pub rows_cache: Option<usize>,
}

impl StreamPlan {
    /// Whether each row of the view, once shown, never changes (see
    /// [`Node::appends_only`]). Such a view is stored as an append-only
    /// log, which views over it read.
    pub fn appends_only(&self) -> bool {
        self.root.appends_only()
    }

    /// The source a view without join reads: the scan below its top
    /// aggregation or top-N, if any.
    pub fn scan(&self) -> Option<(&SourcePlan, Option<&WindowPlan>)> {
        let mut node = &self.root;
        loop {
            match &node.kind {
                NodeKind::Scan { source, window } => return Some((source, window.as_ref())),
                NodeKind::Aggregate { input, .. } | NodeKind::Rank { input, .. } => node = input,
                NodeKind::Join(_) | NodeKind::Union { .. } => return None,
            }
        }
    }

    /// The key of a view whose rows change (aggregations, but for final
    /// window rows): its group columns, by which its rows are upserted; for
    /// a top-N its partition and row number; for a view over such a view,
    /// that view's key.
    pub fn key_schema(&self) -> Option<SchemaRef> {
        let fields: Vec<arrow::datatypes::Field> = match &self.root.kind {
            NodeKind::Rank { plan, .. } => plan
                .key
                .iter()
                .map(|i| plan.output.field(*i).as_ref().clone())
                .collect(),
            NodeKind::Scan { source, .. } => return source.changes().cloned(),
            NodeKind::Aggregate { plan, .. } if !plan.final_rows_only() => plan.output.fields()
                [..plan.group_exprs.len()]
                .iter()
                .map(|f| f.as_ref().clone())
                .collect(),
            NodeKind::Aggregate { .. } | NodeKind::Join(_) | NodeKind::Union { .. } => return None,
        };
        Some(self.shown_key(fields))
    }

    /// The key columns of the stateful operator's rows, each under the name
    /// the view shows it by if it shows it (`window_start AS ws`).
    fn shown_key(&self, fields: Vec<arrow::datatypes::Field>) -> SchemaRef {
        let names = self.shown_names(fields.iter().map(|f| f.name().clone()).collect());
        let fields: Vec<arrow::datatypes::Field> = fields
            .into_iter()
            .zip(names)
            .map(|(f, shown)| match shown {
                Some(name) => f.with_name(name),
                None => f,
            })
            .collect();
        Arc::new(arrow::datatypes::Schema::new(fields))
    }

    /// What the view calls each of these columns of the rows its top
    /// operator gives (None: it does not show it).
    pub fn shown_names(&self, columns: Vec<String>) -> Vec<Option<String>> {
        let mut names: Vec<Option<String>> = columns.into_iter().map(Some).collect();
        for op in &self.root.ops {
            if let StatelessOp::Project {
                exprs,
                input,
                output,
            } = op
            {
                for name in names.iter_mut() {
                    *name = name.as_ref().and_then(|n| {
                        exprs
                            .iter()
                            .enumerate()
                            .find_map(|(i, e)| match shown_column(e, input) {
                                Some(c) if &c.name == n => Some(output.field(i).name().clone()),
                                _ => None,
                            })
                    });
                }
            }
        }
        names
    }

    /// Whether the view reads `name`: a source, or a table it joins.
    pub fn reads(&self, name: &str) -> bool {
        self.root.walk().iter().any(|node| {
            node.as_scan().is_some_and(|(s, _)| s.name == name)
                || node
                    .ops
                    .iter()
                    .any(|op| matches!(op, StatelessOp::LookupJoin(j) if j.table_name == name))
        })
    }

    /// The sources it reads, in the order its scans are numbered: one, or
    /// more for joins of streams.
    pub fn sources(&self) -> Vec<&SourcePlan> {
        self.root
            .walk()
            .into_iter()
            .filter_map(|n| n.as_scan().map(|(s, _)| s))
            .collect()
    }

    /// Whether every source it reads ends.
    pub fn bounded(&self) -> bool {
        self.sources().iter().all(|s| s.spec.connector.is_bounded())
    }

    /// The operator graph, for `EXPLAIN CREATE MATERIALIZED VIEW`.
    pub fn explain(&self, parallelism: usize) -> String {
        let head = match &self.root.kind {
            NodeKind::Aggregate { plan, .. } => format!(
                "Materialize: view={} {}, emit={}",
                self.view,
                if plan.final_rows_only() {
                    "append-only (final rows)"
                } else {
                    "keyed by group"
                },
                match plan.emit {
                    EmitMode::OnUpdate => "on-update".to_string(),
                    EmitMode::OnWindowClose => "on-window-close".to_string(),
                    EmitMode::Every { every_ms } =>
                        format!("every {}", crate::dataflow::window::fmt_ms(every_ms)),
                }
            ),
            NodeKind::Rank { plan, .. } => format!(
                "Materialize: view={} keyed by partition{}",
                self.view,
                if plan.limit == 1 {
                    ""
                } else {
                    " and row number"
                }
            ),
            NodeKind::Scan { source, .. } if source.changes().is_some() => format!(
                "Materialize: view={} upserts by the key of {} (its changes pass through)",
                self.view, source.name
            ),
            _ => format!("Materialize: view={} append-only", self.view),
        };
        let mut out = head;
        out.push('\n');
        self.root.explain("", parallelism, 1, &mut out);
        out
    }
}

impl AggregatePlan {
    /// Whether it gives each group's row once, final, when its window
    /// closes (see [`Node::appends_only`]).
    pub fn final_rows_only(&self) -> bool {
        self.fire_time.is_some()
            && self.session.is_none()
            && self.allowed_lateness == 0
            && self.emit == EmitMode::OnWindowClose
    }
}

pub type StreamPlanRef = Arc<StreamPlan>;

/// The milliseconds of an interval literal of days, hours, minutes,
/// seconds and whole milliseconds (months vary in length: none).
pub fn literal_interval_ms(expr: &Expr) -> Option<i64> {
    use datafusion::common::ScalarValue;
    match expr {
        Expr::Literal(ScalarValue::IntervalMonthDayNano(Some(v)), _)
            if v.months == 0 && v.nanoseconds % 1_000_000 == 0 =>
        {
            Some(v.days as i64 * 86_400_000 + v.nanoseconds / 1_000_000)
        }
        Expr::Literal(ScalarValue::IntervalDayTime(Some(v)), _) => {
            Some(v.days as i64 * 86_400_000 + v.milliseconds as i64)
        }
        _ => None,
    }
}
