//! Flink's group windows, rewritten into window table functions.
//!
//! `SELECT k, TUMBLE_START(ts, size), COUNT(*) FROM t GROUP BY TUMBLE(ts,
//! size), k` means the same as the TVF form: the FROM becomes `TUMBLE(t, ts,
//! size)`, the group window becomes `window_start, window_end`, and the
//! auxiliary functions `<KIND>_START`, `<KIND>_END` and `<KIND>_ROWTIME`
//! become `window_start`, `window_end` and `window_time`. Likewise
//! `HOP(ts, slide, size)` and `SESSION(ts, gap)`, whose sessions are per the
//! other group columns (its `PARTITION BY`). The rewritten query then
//! goes through [`extract_windows`](crate::frontend::window::extract_windows)
//! like any other, so both spellings share every check.

use std::ops::ControlFlow;

use sqlparser::ast::{
    self, Expr as SqlExpr, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr, Ident,
    ObjectName, ObjectNamePart, SetExpr, Spanned, TableFactor, VisitMut, VisitorMut,
};

use crate::error::{Error, Result};
use crate::frontend::parser::{normalize_ident, PARTITION_BY_ARG};
use crate::frontend::planner::{WINDOW_END, WINDOW_START, WINDOW_TIME};
use crate::frontend::window::table_function;

const KINDS: [&str; 3] = ["TUMBLE", "HOP", "SESSION"];

/// A group window found in a GROUP BY.
struct GroupWindow {
    kind: &'static str,
    args: Vec<FunctionArg>,
}

/// Rewrites a group window of `query`'s SELECT, if it has one, into the
/// window table function of its FROM.
pub fn rewrite_group_windows(query: &mut ast::Query, sql: &str) -> Result<()> {
    let window = match query.body.as_mut() {
        SetExpr::Select(select) => {
            let window = take_group_window(select, sql)?;
            group_by_window_time(select, window.is_some());
            window
        }
        _ => None,
    };
    let mut aux = Auxiliary {
        window: window.as_ref(),
        sql,
    };
    match query.visit(&mut aux) {
        ControlFlow::Break(e) => Err(*e),
        ControlFlow::Continue(()) => Ok(()),
    }
}

fn position(sql: &str, span: sqlparser::tokenizer::Span) -> Option<usize> {
    crate::error::char_position(sql, span.start.line as usize, span.start.column as usize)
}

fn kind_of(name: &ObjectName) -> Option<&'static str> {
    let n = name.to_string().to_ascii_uppercase();
    KINDS.into_iter().find(|k| *k == n)
}

/// Finds the group window of `select`, replaces it by `window_start,
/// window_end` and the FROM table by the window function over it.
fn take_group_window(select: &mut ast::Select, sql: &str) -> Result<Option<GroupWindow>> {
    let GroupByExpr::Expressions(exprs, _) = &mut select.group_by else {
        return Ok(None);
    };
    let mut found: Option<(usize, &'static str, ObjectName, Vec<FunctionArg>)> = None;
    for (i, e) in exprs.iter().enumerate() {
        let SqlExpr::Function(f) = e else { continue };
        let Some(kind) = kind_of(&f.name) else {
            continue;
        };
        if found.is_some() {
            return Err(
                Error::not_supported("a view can GROUP BY one group window only")
                    .at(position(sql, e.span())),
            );
        }
        let args = match &f.args {
            FunctionArguments::List(l) => l.args.clone(),
            _ => Vec::new(),
        };
        found = Some((i, kind, f.name.clone(), args));
    }
    let Some((index, kind, name, args)) = found else {
        return Ok(None);
    };
    let at = position(sql, name.span());
    let expected = match kind {
        "TUMBLE" => "TUMBLE(ts, size)",
        "HOP" => "HOP(ts, slide, size)",
        _ => "SESSION(ts, gap)",
    };
    let (min, max) = match kind {
        "HOP" => (3, 4),
        _ => (2, 3),
    };
    if args.len() < min || args.len() > max {
        return Err(Error::syntax(format!(
            "the group window {kind} takes {min} or {max} arguments, got {}: {expected}",
            args.len()
        ))
        .at(at));
    }
    // The time column, unqualified: the window function names it alone.
    let mut call_args = args.clone();
    call_args[0] = match &args[0] {
        FunctionArg::Unnamed(FunctionArgExpr::Expr(SqlExpr::CompoundIdentifier(parts))) => {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(SqlExpr::Identifier(
                parts
                    .last()
                    .cloned()
                    .expect("a compound identifier has parts"),
            )))
        }
        other => other.clone(),
    };
    // The FROM: exactly one table, which the window function reads.
    let one_table = select.from.len() == 1 && select.from[0].joins.is_empty();
    let table = match &mut select.from.first_mut().map(|t| &mut t.relation) {
        Some(TableFactor::Table {
            name: table,
            args: None,
            alias,
            ..
        }) if one_table => Some((table.clone(), alias.clone())),
        _ => None,
    };
    let Some((table, alias)) = table else {
        return Err(Error::not_supported(format!(
            "GROUP BY {kind}(...) needs exactly one table in FROM"
        ))
        .at(at));
    };
    let table_expr = match table.0.as_slice() {
        [ObjectNamePart::Identifier(i)] => SqlExpr::Identifier(i.clone()),
        parts => SqlExpr::CompoundIdentifier(
            parts.iter().filter_map(|p| p.as_ident().cloned()).collect(),
        ),
    };
    call_args.insert(0, FunctionArg::Unnamed(FunctionArgExpr::Expr(table_expr)));
    if kind == "SESSION" {
        // Sessions are per group: the other group columns partition them.
        let mut keys = Vec::new();
        for (i, e) in exprs.iter().enumerate() {
            if i == index {
                continue;
            }
            match e {
                SqlExpr::Identifier(_) | SqlExpr::CompoundIdentifier(_) => {
                    keys.push(FunctionArg::Unnamed(FunctionArgExpr::Expr(e.clone())))
                }
                other => {
                    return Err(Error::not_supported(format!(
                    "GROUP BY SESSION(...) with the expression {other}: group sessions by columns"
                ))
                    .at(position(sql, other.span())))
                }
            }
        }
        if !keys.is_empty() {
            let partition = SqlExpr::Function(ast::Function {
                name: ObjectName(vec![ObjectNamePart::Identifier(Ident::new(
                    PARTITION_BY_ARG,
                ))]),
                uses_odbc_syntax: false,
                parameters: FunctionArguments::None,
                args: FunctionArguments::List(ast::FunctionArgumentList {
                    duplicate_treatment: None,
                    args: keys,
                    clauses: Vec::new(),
                }),
                filter: None,
                null_treatment: None,
                over: None,
                within_group: Vec::new(),
            });
            call_args.insert(1, FunctionArg::Unnamed(FunctionArgExpr::Expr(partition)));
        }
    }
    select.from[0].relation = table_function(name, Some(call_args), alias);
    exprs.splice(
        index..=index,
        [
            SqlExpr::Identifier(Ident::new(WINDOW_START)),
            SqlExpr::Identifier(Ident::new(WINDOW_END)),
        ],
    );
    Ok(Some(GroupWindow { kind, args }))
}

/// Adds `window_time` to a GROUP BY of `window_start, window_end` when the
/// SELECT list or HAVING names it (or a group window's `_ROWTIME` does), as
/// Flink allows: it follows from `window_end`, so the groups stay the same.
fn group_by_window_time(select: &mut ast::Select, group_window: bool) {
    let GroupByExpr::Expressions(exprs, _) = &mut select.group_by else {
        return;
    };
    let names = |e: &SqlExpr, name: &str| match e {
        SqlExpr::Identifier(i) => normalize_ident(i) == name,
        SqlExpr::CompoundIdentifier(parts) => {
            parts.last().map(normalize_ident).as_deref() == Some(name)
        }
        _ => false,
    };
    if !exprs.iter().any(|e| names(e, WINDOW_END)) || exprs.iter().any(|e| names(e, WINDOW_TIME)) {
        return;
    }
    let mut used = false;
    let mut find = |e: &SqlExpr| {
        let rowtime = group_window
            && matches!(e, SqlExpr::Function(f) if f.name.to_string().to_ascii_uppercase().ends_with("_ROWTIME"));
        if names(e, WINDOW_TIME) || rowtime {
            used = true;
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    };
    let _ = sqlparser::ast::visit_expressions(&select.projection, &mut find);
    if let Some(having) = &select.having {
        let _ = sqlparser::ast::visit_expressions(having, &mut find);
    }
    if used {
        exprs.push(SqlExpr::Identifier(Ident::new(WINDOW_TIME)));
    }
}

/// An argument as compared between a group window and its auxiliary
/// functions: the time column by its name alone (`c.ts` is `ts`).
fn arg_key(arg: &FunctionArg) -> String {
    match arg {
        FunctionArg::Unnamed(FunctionArgExpr::Expr(SqlExpr::Identifier(i))) => normalize_ident(i),
        FunctionArg::Unnamed(FunctionArgExpr::Expr(SqlExpr::CompoundIdentifier(parts))) => {
            parts.last().map(normalize_ident).unwrap_or_default()
        }
        other => other.to_string(),
    }
}

/// Replaces the auxiliary functions by window columns.
struct Auxiliary<'a> {
    window: Option<&'a GroupWindow>,
    sql: &'a str,
}

impl VisitorMut for Auxiliary<'_> {
    type Break = Box<Error>;

    fn pre_visit_expr(&mut self, expr: &mut SqlExpr) -> ControlFlow<Self::Break> {
        let SqlExpr::Function(f) = &*expr else {
            return ControlFlow::Continue(());
        };
        let name = f.name.to_string().to_ascii_uppercase();
        let Some((kind, part)) = name.split_once('_') else {
            return ControlFlow::Continue(());
        };
        if !KINDS.contains(&kind) {
            return ControlFlow::Continue(());
        }
        let column = match part {
            "START" => WINDOW_START,
            "END" => WINDOW_END,
            "ROWTIME" => WINDOW_TIME,
            "PROCTIME" => {
                return ControlFlow::Break(Box::new(
                    Error::not_supported(format!("{name} is not supported yet"))
                        .at(position(self.sql, f.name.span())),
                ))
            }
            _ => return ControlFlow::Continue(()),
        };
        let at = position(self.sql, f.name.span());
        let args = match &f.args {
            FunctionArguments::List(l) => l.args.as_slice(),
            _ => &[],
        };
        let same = |w: &GroupWindow| {
            w.kind == kind
                && w.args.len() == args.len()
                && w.args
                    .iter()
                    .zip(args)
                    .all(|(a, b)| arg_key(a) == arg_key(b))
        };
        match self.window {
            Some(w) if same(w) => {
                *expr = SqlExpr::Identifier(Ident::new(column));
                ControlFlow::Continue(())
            }
            Some(w) => ControlFlow::Break(Box::new(
                Error::syntax(format!(
                    "{name} must name the window of the GROUP BY, {}({})",
                    w.kind,
                    w.args
                        .iter()
                        .map(|a| a.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
                .at(at),
            )),
            None => ControlFlow::Break(Box::new(
                Error::user(
                    crate::error::sqlstate::GROUPING_ERROR,
                    format!("{name} needs a GROUP BY {kind}(...) group window"),
                )
                .at(at),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frontend::parser::{parse_one, Statement};

    fn rewrite(sql: &str) -> Result<String> {
        let Statement::CreateView(mut v) = parse_one(sql)?.statement else {
            panic!()
        };
        rewrite_group_windows(&mut v.query, sql)?;
        Ok(v.query.to_string())
    }

    #[test]
    fn group_windows_become_window_functions() {
        let q = rewrite(
            "CREATE MATERIALIZED VIEW v AS SELECT cell_id, TUMBLE_START(ts, INTERVAL '10' SECOND) AS s, \
             TUMBLE_ROWTIME(ts, INTERVAL '10' SECOND) AS t, COUNT(*) FROM calls AS c \
             GROUP BY TUMBLE(c.ts, INTERVAL '10' SECOND), cell_id",
        )
        .unwrap();
        assert_eq!(
            q,
            "SELECT cell_id, window_start AS s, window_time AS t, COUNT(*) \
             FROM TUMBLE(calls, ts, INTERVAL '10' SECOND) AS c \
             GROUP BY window_start, window_end, cell_id, window_time"
        );
        let q = rewrite(
            "CREATE MATERIALIZED VIEW v AS SELECT SESSION_END(ts, INTERVAL '1' MINUTE), c.cell_id, COUNT(*) \
             FROM calls c GROUP BY c.cell_id, SESSION(ts, INTERVAL '1' MINUTE)",
        )
        .unwrap();
        assert_eq!(
            q,
            "SELECT window_end, c.cell_id, COUNT(*) \
             FROM SESSION(calls, __partition_by(c.cell_id), ts, INTERVAL '1' MINUTE) c \
             GROUP BY c.cell_id, window_start, window_end"
        );
        let q = rewrite(
            "CREATE MATERIALIZED VIEW v AS SELECT HOP_END(ts, INTERVAL '5' SECOND, INTERVAL '10' SECOND), COUNT(*) \
             FROM calls GROUP BY HOP(ts, INTERVAL '5' SECOND, INTERVAL '10' SECOND)",
        )
        .unwrap();
        assert_eq!(
            q,
            "SELECT window_end, COUNT(*) FROM HOP(calls, ts, INTERVAL '5' SECOND, INTERVAL '10' SECOND) \
             GROUP BY window_start, window_end"
        );
    }

    #[test]
    fn auxiliary_functions_must_match_the_group_window() {
        let sql =
            "CREATE MATERIALIZED VIEW v AS SELECT TUMBLE_END(ts, INTERVAL '1' MINUTE), COUNT(*) \
                   FROM calls GROUP BY TUMBLE(ts, INTERVAL '10' SECOND)";
        let err = rewrite(sql).unwrap_err();
        assert_eq!(err.sqlstate(), "42601");
        assert_eq!(err.position(), Some(sql.find("TUMBLE_END").unwrap() + 1));
        let err = rewrite(
            "CREATE MATERIALIZED VIEW v AS SELECT HOP_START(ts, INTERVAL '1' MINUTE), COUNT(*) FROM calls GROUP BY cell_id",
        )
        .unwrap_err();
        assert_eq!(err.sqlstate(), "42803");
        let err = rewrite(
            "CREATE MATERIALIZED VIEW v AS SELECT COUNT(*) FROM calls a JOIN calls b ON a.cell_id = b.cell_id \
             GROUP BY TUMBLE(a.ts, INTERVAL '1' MINUTE)",
        )
        .unwrap_err();
        assert_eq!(err.sqlstate(), "0A000");
        let err =
            rewrite("CREATE MATERIALIZED VIEW v AS SELECT COUNT(*) FROM calls GROUP BY TUMBLE(ts)")
                .unwrap_err();
        assert_eq!(err.sqlstate(), "42601");
    }
}
