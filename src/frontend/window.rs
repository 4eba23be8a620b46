//! Window table functions in a view's FROM clause.
//!
//! All spellings mean the same window:
//! - Flink TVF: `TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), size [, offset]))`,
//!   `TABLE(HOP(TABLE t, DESCRIPTOR(ts), slide, size [, offset]))`,
//!   `TABLE(CUMULATE(TABLE t, DESCRIPTOR(ts), step, size [, offset]))` (the
//!   parser drops the inner `TABLE`);
//!   `TABLE(SESSION(TABLE t [PARTITION BY k | (k, ...)], DESCRIPTOR(ts), gap))`;
//! - RisingWave: `TUMBLE(t, ts, size)`, `HOP(t, ts, slide, size)`.
//!
//! Each call is replaced in the AST by a reference to its source table (with
//! the call's alias), and the planning session registers that name with the
//! window columns added. So `calls.cell_id` and unqualified names keep
//! working.

use std::ops::ControlFlow;
use std::sync::Arc;

use arrow::array::RecordBatchOptions;
use arrow::datatypes::{DataType, Schema};
use arrow::record_batch::RecordBatch;
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::ColumnarValue;
use sqlparser::ast::{
    self, Expr as SqlExpr, FunctionArg, FunctionArgExpr, FunctionArguments, ObjectName,
    ObjectNamePart, SetExpr, Spanned, TableFactor, VisitMut, VisitorMut,
};

use crate::dataflow::window::WindowKind;
use crate::error::{Error, Result};
use crate::frontend::parser::{normalize_object_name, PARTITION_BY_ARG};

/// A window call found in a query.
#[derive(Debug, Clone)]
pub struct WindowCall {
    pub source: String,
    /// The name its rows are planned by: one of its own for each call, so
    /// that a source may be read through several windows, and plainly,
    /// in one query (its alias is still the source's name).
    pub name: String,
    /// SESSION's `PARTITION BY` columns.
    pub partition: Vec<String>,
    /// The time column, as named in the call.
    pub time_column: String,
    pub kind: WindowKind,
    /// 1-based position of the call, for errors.
    pub position: Option<usize>,
}

/// A plain table referenced by a query.
#[derive(Debug, Clone)]
pub struct TableRef {
    pub name: String,
    pub position: Option<usize>,
}

/// Replaces the window calls of `query` by references to their sources.
/// Returns the calls and the plain tables referenced.
pub fn extract_windows(
    state: &SessionState,
    query: &mut ast::Query,
    sql: &str,
) -> Result<(Vec<WindowCall>, Vec<TableRef>)> {
    let mut v = Extractor {
        state,
        sql,
        windows: Vec::new(),
        tables: Vec::new(),
    };
    if let ControlFlow::Break(e) = query.visit(&mut v) {
        return Err(*e);
    }
    let (mut windows, tables) = (v.windows, v.tables);
    // A source read through one window alone is planned by its own name.
    let mut renamed: Vec<(String, String)> = Vec::new();
    for i in 0..windows.len() {
        let source = &windows[i].source;
        let alone = windows.iter().filter(|w| &w.source == source).count() == 1
            && !tables.iter().any(|t| &t.name == source);
        if alone {
            renamed.push((windows[i].name.clone(), source.clone()));
            windows[i].name = source.clone();
        }
    }
    if !renamed.is_empty() {
        let _ = query.visit(&mut Renamer { renamed: &renamed });
    }
    Ok((windows, tables))
}

/// Renames the table factors of planned names to their sources' names.
struct Renamer<'a> {
    renamed: &'a [(String, String)],
}

impl VisitorMut for Renamer<'_> {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        if let TableFactor::Table {
            name, args: None, ..
        } = factor
        {
            let current = normalize_object_name(name);
            if let Some((_, to)) = self.renamed.iter().find(|(from, _)| *from == current) {
                *name = ObjectName(vec![ObjectNamePart::Identifier(ast::Ident::with_quote(
                    '"', to,
                ))]);
            }
        }
        ControlFlow::Continue(())
    }
}

struct Extractor<'a> {
    state: &'a SessionState,
    sql: &'a str,
    windows: Vec<WindowCall>,
    tables: Vec<TableRef>,
}

impl VisitorMut for Extractor<'_> {
    type Break = Box<Error>;

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<Self::Break> {
        if let TableFactor::Table {
            name, args: None, ..
        } = factor
        {
            self.tables.push(TableRef {
                name: normalize_object_name(name),
                position: self.pos(name.span()),
            });
        }
        let call = window_call_of(factor);
        let Some((name, args, alias, span)) = call else {
            return ControlFlow::Continue(());
        };
        match self.window_call(&name, &args, span) {
            Ok(mut call) => {
                call.name = format!("{}#{}", call.source, self.windows.len() + 1);
                let alias =
                    alias.unwrap_or_else(|| crate::frontend::views::alias_named(&call.source));
                *factor = table_factor(&call.name, Some(alias));
                self.windows.push(call);
                ControlFlow::Continue(())
            }
            Err(e) => ControlFlow::Break(Box::new(e)),
        }
    }
}

/// The window table function a table factor calls, if any: its name,
/// arguments, alias and place.
type CallOf = (
    ObjectName,
    Vec<FunctionArg>,
    Option<ast::TableAlias>,
    sqlparser::tokenizer::Span,
);

fn window_call_of(factor: &TableFactor) -> Option<CallOf> {
    match factor {
        TableFactor::TableFunction { expr, alias } => match expr {
            SqlExpr::Function(f) if is_window_name(&f.name) => {
                let args = match &f.args {
                    FunctionArguments::List(l) => l.args.clone(),
                    _ => Vec::new(),
                };
                Some((f.name.clone(), args, alias.clone(), expr.span()))
            }
            _ => None,
        },
        TableFactor::Table {
            name,
            args: Some(args),
            alias,
            ..
        } if is_window_name(name) => {
            Some((name.clone(), args.args.clone(), alias.clone(), name.span()))
        }
        _ => None,
    }
}

fn is_window_name(name: &ObjectName) -> bool {
    let n = name.to_string().to_ascii_uppercase();
    matches!(n.as_str(), "TUMBLE" | "HOP" | "CUMULATE" | "SESSION")
}

/// `SELECT * FROM name [AS alias]`'s table factor.
fn table_factor(name: &str, alias: Option<ast::TableAlias>) -> TableFactor {
    table_function(
        ObjectName(vec![ObjectNamePart::Identifier(ast::Ident::with_quote(
            '"', name,
        ))]),
        None,
        alias,
    )
}

/// A table factor `name[(args)] [AS alias]`: a table, or with arguments a
/// table function such as `TUMBLE(t, ts, size)`.
pub fn table_function(
    name: ObjectName,
    args: Option<Vec<FunctionArg>>,
    alias: Option<ast::TableAlias>,
) -> TableFactor {
    TableFactor::Table {
        name,
        alias,
        args: args.map(|args| ast::TableFunctionArgs {
            args,
            settings: None,
        }),
        with_hints: Vec::new(),
        version: None,
        with_ordinality: false,
        partitions: Vec::new(),
        json_path: None,
        sample: None,
        index_hints: Vec::new(),
    }
}

impl Extractor<'_> {
    fn pos(&self, span: sqlparser::tokenizer::Span) -> Option<usize> {
        crate::error::char_position(
            self.sql,
            span.start.line as usize,
            span.start.column as usize,
        )
    }

    fn window_call(
        &self,
        name: &ObjectName,
        args: &[FunctionArg],
        span: sqlparser::tokenizer::Span,
    ) -> Result<WindowCall> {
        let position = self.pos(span);
        let kind_name = name.to_string().to_ascii_uppercase();
        let mut exprs: Vec<&SqlExpr> = args
            .iter()
            .map(|a| match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Ok(e),
                _ => Err(Error::not_supported(format!(
                    "named or wildcard arguments of {kind_name} are not supported"
                ))
                .at(position)),
            })
            .collect::<Result<_>>()?;
        // SESSION(TABLE t PARTITION BY k, ...), as the parser rewrote it.
        let mut partition = Vec::new();
        if let Some(SqlExpr::Function(f)) = exprs.get(1) {
            if f.name.to_string() == PARTITION_BY_ARG {
                if kind_name != "SESSION" {
                    return Err(Error::syntax(format!(
                        "PARTITION BY is for SESSION windows, not {kind_name}"
                    ))
                    .at(self.pos(f.span())));
                }
                let FunctionArguments::List(l) = &f.args else {
                    return Err(Error::syntax("PARTITION BY needs columns").at(position));
                };
                for a in &l.args {
                    let column = match a {
                        FunctionArg::Unnamed(FunctionArgExpr::Expr(SqlExpr::Identifier(i))) => {
                            crate::frontend::parser::normalize_ident(i)
                        }
                        FunctionArg::Unnamed(FunctionArgExpr::Expr(
                            SqlExpr::CompoundIdentifier(parts),
                        )) => parts
                            .last()
                            .map(crate::frontend::parser::normalize_ident)
                            .unwrap_or_default(),
                        other => {
                            return Err(Error::syntax(format!(
                                "PARTITION BY takes column names, got {other}"
                            ))
                            .at(self.pos(other.span())))
                        }
                    };
                    partition.push(column);
                }
                exprs.remove(1);
            }
        }
        let (min, max, usage) = match kind_name.as_str() {
            "TUMBLE" => (3, 4, "TUMBLE(TABLE t, DESCRIPTOR(ts), size [, offset])"),
            "HOP" => (4, 5, "HOP(TABLE t, DESCRIPTOR(ts), slide, size [, offset])"),
            "SESSION" => (
                3,
                3,
                "SESSION(TABLE t [PARTITION BY k], DESCRIPTOR(ts), gap)",
            ),
            _ => (
                4,
                5,
                "CUMULATE(TABLE t, DESCRIPTOR(ts), step, size [, offset])",
            ),
        };
        if exprs.len() < min || exprs.len() > max {
            let count = if min == max {
                format!("{min}")
            } else {
                format!("{min} or {max}")
            };
            return Err(Error::syntax(format!(
                "{kind_name} takes {count} arguments, got {}: {usage}",
                exprs.len()
            ))
            .at(position));
        }
        let source = match exprs[0] {
            SqlExpr::Identifier(i) => {
                normalize_object_name(&ObjectName(vec![ObjectNamePart::Identifier(i.clone())]))
            }
            SqlExpr::CompoundIdentifier(parts) => normalize_object_name(&ObjectName(
                parts
                    .iter()
                    .cloned()
                    .map(ObjectNamePart::Identifier)
                    .collect(),
            )),
            other => {
                return Err(Error::syntax(format!(
                    "the first argument of {kind_name} must be a table, got {other}"
                ))
                .at(self.pos(other.span())))
            }
        };
        let time_column = match exprs[1] {
            SqlExpr::Identifier(i) => crate::frontend::parser::normalize_ident(i),
            SqlExpr::Function(f) if f.name.to_string().eq_ignore_ascii_case("DESCRIPTOR") => {
                match &f.args {
                    FunctionArguments::List(l) if l.args.len() == 1 => match &l.args[0] {
                        FunctionArg::Unnamed(FunctionArgExpr::Expr(SqlExpr::Identifier(i))) => {
                            crate::frontend::parser::normalize_ident(i)
                        }
                        _ => {
                            return Err(Error::syntax("DESCRIPTOR takes one column name")
                                .at(self.pos(exprs[1].span())))
                        }
                    },
                    _ => {
                        return Err(Error::syntax("DESCRIPTOR takes one column name")
                            .at(self.pos(exprs[1].span())))
                    }
                }
            }
            other => {
                return Err(Error::syntax(format!(
                    "the second argument of {kind_name} must be the time column, as DESCRIPTOR(ts) or ts, got {other}"
                ))
                .at(self.pos(other.span())))
            }
        };
        let interval = |i: usize, what: &str| -> Result<i64> {
            let e = exprs[i];
            let ms =
                interval_ms(self.state, e, self.sql).map_err(|err| err.at(self.pos(e.span())))?;
            if ms <= 0 && what != "offset" {
                return Err(Error::invalid_parameter(format!(
                    "the {what} of a {kind_name} window must be positive"
                ))
                .at(self.pos(e.span())));
            }
            Ok(ms)
        };
        let kind = if kind_name == "TUMBLE" {
            let size = interval(2, "size")?;
            let offset = if exprs.len() == 4 {
                interval(3, "offset")?
            } else {
                0
            };
            WindowKind::Tumble { size, offset }
        } else if kind_name == "SESSION" {
            WindowKind::Session {
                gap: interval(2, "gap")?,
            }
        } else {
            // HOP(slide, size) and CUMULATE(step, size): a step and a size
            // that is a multiple of it.
            let step_name = if kind_name == "HOP" { "slide" } else { "step" };
            let step = interval(2, step_name)?;
            let size = interval(3, "size")?;
            let offset = if exprs.len() == 5 {
                interval(4, "offset")?
            } else {
                0
            };
            if size % step != 0 {
                return Err(Error::invalid_parameter(format!(
                    "the size of a {kind_name} window must be a multiple of its {step_name}, got size {} and {step_name} {}",
                    crate::dataflow::window::fmt_ms(size),
                    crate::dataflow::window::fmt_ms(step)
                ))
                .at(self.pos(exprs[3].span())));
            }
            if kind_name == "HOP" {
                WindowKind::Hop {
                    slide: step,
                    size,
                    offset,
                }
            } else {
                WindowKind::Cumulate { step, size, offset }
            }
        };
        Ok(WindowCall {
            name: source.clone(),
            source,
            partition,
            time_column,
            kind,
            position,
        })
    }
}

/// Evaluates a constant interval expression to milliseconds.
pub fn interval_ms(state: &SessionState, expr: &SqlExpr, sql: &str) -> Result<i64> {
    let empty = DFSchema::empty();
    let logical = state
        .create_logical_expr_from_sql_expr(
            ast::ExprWithAlias {
                expr: expr.clone(),
                alias: None,
            },
            &empty,
        )
        .map_err(|e| Error::from_datafusion(e, sql))?;
    let physical = state
        .create_physical_expr(logical, &empty)
        .map_err(|e| Error::from_datafusion(e, sql))?;
    let batch = RecordBatch::try_new_with_options(
        Arc::new(Schema::empty()),
        vec![],
        &RecordBatchOptions::new().with_row_count(Some(1)),
    )?;
    let value = match physical
        .evaluate(&batch)
        .map_err(|e| Error::from_datafusion(e, sql))?
    {
        ColumnarValue::Scalar(s) => s,
        ColumnarValue::Array(a) => {
            ScalarValue::try_from_array(&a, 0).map_err(|e| Error::from_datafusion(e, sql))?
        }
    };
    let not_interval = || {
        Error::user(
            crate::error::sqlstate::DATATYPE_MISMATCH,
            format!("expected an interval such as INTERVAL '1' MINUTE, got {expr}"),
        )
    };
    match value {
        ScalarValue::IntervalMonthDayNano(Some(v)) => {
            if v.months != 0 {
                return Err(Error::not_supported(
                    "windows measured in months or years are not supported",
                ));
            }
            Ok(v.days as i64 * 86_400_000 + v.nanoseconds.div_euclid(1_000_000))
        }
        ScalarValue::IntervalDayTime(Some(v)) => {
            Ok(v.days as i64 * 86_400_000 + v.milliseconds as i64)
        }
        ScalarValue::IntervalYearMonth(Some(_)) => Err(Error::not_supported(
            "windows measured in months or years are not supported",
        )),
        ScalarValue::DurationMillisecond(Some(v)) => Ok(v),
        ScalarValue::DurationSecond(Some(v)) => Ok(v * 1000),
        ScalarValue::DurationMicrosecond(Some(v)) => Ok(v / 1000),
        ScalarValue::DurationNanosecond(Some(v)) => Ok(v / 1_000_000),
        other if other.data_type() == DataType::Null => Err(not_interval()),
        _ => Err(not_interval()),
    }
}

/// Rewrites each TUMBLE, HOP or CUMULATE window table function of an
/// ad-hoc query as its source's rows, each unnested into the windows it
/// belongs to (with `window_start`, `window_end` and `window_time`), so
/// that DataFusion answers it in batch as a view would. SESSION windows
/// depend on the rows around each row: `0A000`.
pub fn windows_as_tables(
    state: &SessionState,
    statement: &mut ast::Statement,
    sql: &str,
) -> Result<()> {
    struct Rewriter<'a> {
        extractor: Extractor<'a>,
    }
    impl VisitorMut for Rewriter<'_> {
        type Break = Box<Error>;

        fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<Self::Break> {
            let call = window_call_of(factor);
            let Some((name, args, alias, span)) = call else {
                return ControlFlow::Continue(());
            };
            match self
                .extractor
                .window_call(&name, &args, span)
                .and_then(|call| windowed_rows(&call, alias))
            {
                Ok(rows) => {
                    *factor = rows;
                    ControlFlow::Continue(())
                }
                Err(e) => ControlFlow::Break(Box::new(e)),
            }
        }
    }
    let mut rewriter = Rewriter {
        extractor: Extractor {
            state,
            sql,
            windows: Vec::new(),
            tables: Vec::new(),
        },
    };
    match statement.visit(&mut rewriter) {
        ControlFlow::Break(e) => Err(*e),
        ControlFlow::Continue(()) => Ok(()),
    }
}

/// The rows of a window table function in batch: a derived table of its
/// source's rows unnested into their windows, named as the call was.
fn windowed_rows(call: &WindowCall, alias: Option<ast::TableAlias>) -> Result<TableFactor> {
    use crate::functions::windows::{CUMULATE, HOP, NAME, TUMBLE};
    let (kind, size, step, offset) = match call.kind {
        WindowKind::Tumble { size, offset } => (TUMBLE, size, size, offset),
        WindowKind::Hop {
            slide,
            size,
            offset,
        } => (HOP, size, slide, offset),
        WindowKind::Cumulate { step, size, offset } => (CUMULATE, size, step, offset),
        WindowKind::Session { .. } => {
            return Err(Error::not_supported(
                "SESSION windows in an ad-hoc query are not supported: read a materialized view of the sessions",
            )
            .at(call.position))
        }
    };
    let quoted = |name: &str| format!("\"{}\"", name.replace('"', "\"\""));
    let source: Vec<String> = call.source.split('.').map(quoted).collect();
    let sql = format!(
        "SELECT * FROM (SELECT * EXCLUDE (\"__w\"), \"__w\"['window_start'] AS window_start, \
         \"__w\"['window_end'] AS window_end, \"__w\"['window_time'] AS window_time \
         FROM (SELECT *, unnest({NAME}({}, {kind}, {size}, {step}, {offset})) AS \"__w\" FROM {}) AS \"__rows\") AS \"__windows\"",
        quoted(&call.time_column),
        source.join(".")
    );
    let parsed = crate::frontend::parser::parse_one(&sql)?;
    let crate::frontend::parser::Statement::Query(statement) = parsed.statement else {
        return Err(Error::internal(
            "the rows of a window did not parse as a query",
        ));
    };
    let ast::Statement::Query(query) = *statement else {
        return Err(Error::internal(
            "the rows of a window did not parse as a query",
        ));
    };
    let SetExpr::Select(select) = *query.body else {
        return Err(Error::internal("the rows of a window are not a SELECT"));
    };
    let mut factor = select
        .from
        .into_iter()
        .next()
        .map(|t| t.relation)
        .ok_or_else(|| Error::internal("the rows of a window have no FROM"))?;
    if let TableFactor::Derived { alias: a, .. } = &mut factor {
        let last = call.source.rsplit('.').next().unwrap_or(&call.source);
        *a = Some(alias.unwrap_or_else(|| crate::frontend::views::alias_named(last)));
    }
    Ok(factor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frontend::parser::{parse_one, Statement};

    fn calls(sql: &str) -> Result<(Vec<WindowCall>, String)> {
        let p = parse_one(sql)?;
        let Statement::CreateView(mut v) = p.statement else {
            panic!()
        };
        let ctx = crate::functions::session_context();
        let (w, _) = extract_windows(&ctx.state(), &mut v.query, sql)?;
        Ok((w, v.query.to_string()))
    }

    #[test]
    fn all_spellings_give_the_same_window() {
        let flink = calls(
            "CREATE MATERIALIZED VIEW v AS SELECT * FROM TABLE(TUMBLE(TABLE calls, DESCRIPTOR(ts), INTERVAL '10' SECOND)) AS c",
        )
        .unwrap();
        let rw = calls(
            "CREATE MATERIALIZED VIEW v AS SELECT * FROM TUMBLE(calls, ts, INTERVAL '10 seconds')",
        )
        .unwrap();
        assert_eq!(
            flink.0[0].kind,
            WindowKind::Tumble {
                size: 10_000,
                offset: 0
            }
        );
        assert_eq!(rw.0[0].kind, flink.0[0].kind);
        assert_eq!(flink.0[0].source, "calls");
        assert_eq!(rw.0[0].time_column, "ts");
        assert!(flink.1.contains("FROM \"calls\" AS c"), "{}", flink.1);
        let hop = calls(
            "CREATE MATERIALIZED VIEW v AS SELECT * FROM TABLE(HOP(TABLE calls, DESCRIPTOR(ts), INTERVAL '5' SECOND, INTERVAL '1' MINUTE))",
        )
        .unwrap();
        assert_eq!(
            hop.0[0].kind,
            WindowKind::Hop {
                slide: 5_000,
                size: 60_000,
                offset: 0
            }
        );
    }

    #[test]
    fn sessions_take_their_partition_columns() {
        for sql in [
            "CREATE MATERIALIZED VIEW v AS SELECT * FROM TABLE(SESSION(TABLE calls PARTITION BY cell_id, DESCRIPTOR(ts), INTERVAL '30' SECOND))",
            "CREATE MATERIALIZED VIEW v AS SELECT * FROM TABLE(SESSION(TABLE calls PARTITION BY (cell_id, Status), DESCRIPTOR(ts), INTERVAL '30' SECOND)) AS c",
            "CREATE MATERIALIZED VIEW v AS SELECT * FROM TABLE(SESSION(TABLE calls, DESCRIPTOR(ts), INTERVAL '30' SECOND))",
        ] {
            let (w, query) = calls(sql).unwrap();
            assert_eq!(w[0].kind, WindowKind::Session { gap: 30_000 }, "{sql}");
            assert!(query.contains("FROM \"calls\""), "{query}");
            let want: Vec<&str> = if sql.contains("Status") {
                vec!["cell_id", "status"]
            } else if sql.contains("PARTITION") {
                vec!["cell_id"]
            } else {
                vec![]
            };
            assert_eq!(w[0].partition, want, "{sql}");
        }
    }

    #[test]
    fn bad_window_calls_are_explained() {
        let sql = "CREATE MATERIALIZED VIEW v AS SELECT * FROM TABLE(HOP(TABLE calls, DESCRIPTOR(ts), INTERVAL '7' SECOND, INTERVAL '1' MINUTE))";
        let err = calls(sql).unwrap_err();
        assert!(err.to_string().contains("multiple of its slide"), "{err}");
        // sqlparser's span of an interval starts at its literal.
        assert_eq!(err.position(), Some(sql.find("'1' MINUTE").unwrap() + 1));
        let err = calls("CREATE MATERIALIZED VIEW v AS SELECT * FROM TABLE(CUMULATE(TABLE calls, DESCRIPTOR(ts), INTERVAL '7' SECOND, INTERVAL '1' MINUTE))").unwrap_err();
        assert!(err.to_string().contains("multiple of its step"), "{err}");
        let err = calls("CREATE MATERIALIZED VIEW v AS SELECT * FROM TABLE(SESSION(TABLE calls, DESCRIPTOR(ts)))").unwrap_err();
        assert!(
            err.to_string().contains("SESSION takes 3 arguments"),
            "{err}"
        );
        let err =
            calls("CREATE MATERIALIZED VIEW v AS SELECT * FROM TUMBLE(calls, ts)").unwrap_err();
        assert_eq!(err.sqlstate(), "42601");
    }
}
