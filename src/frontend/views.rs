//! Logical views (`CREATE VIEW`): named queries, expanded where they are
//! used, as in Flink and Postgres. A reference to a view in a query's FROM
//! clause becomes the view's query as a derived table under the view's name
//! (or the reference's alias), so the planners see one query: a
//! materialized view over a logical view is planned as if the view's query
//! were written in place, and so is an ad-hoc query.
//!
//! A view's columns are named as Flink names them: a select item that is a
//! field path (`person.id`, `t.person.id`) is named by its last part (`id`)
//! when no other item has that name.

use std::ops::ControlFlow;
use std::sync::Arc;

use sqlparser::ast::{self, Expr, SelectItem, SetExpr, TableFactor, VisitMut, VisitorMut};

use crate::error::{Error, Result};
use crate::frontend::parser::normalize_object_name;

/// How many views one statement may expand, nested ones included (a guard:
/// views cannot reference themselves, as a view names only what exists).
const MAX_EXPANSIONS: usize = 1000;

/// Names the unnamed field-path items of a query's select list (and of
/// every nested query) by their last part, where that name is free.
pub fn name_field_paths(query: &mut ast::Query) {
    struct Namer;
    impl VisitorMut for Namer {
        type Break = ();
        fn pre_visit_query(&mut self, query: &mut ast::Query) -> ControlFlow<()> {
            if let SetExpr::Select(select) = query.body.as_mut() {
                name_items(&mut select.projection);
            }
            ControlFlow::Continue(())
        }
    }
    let _ = query.visit(&mut Namer);
}

fn name_items(items: &mut [SelectItem]) {
    let named = |item: &SelectItem| -> Option<String> {
        match item {
            SelectItem::ExprWithAlias { alias, .. } => Some(alias.value.to_lowercase()),
            SelectItem::UnnamedExpr(Expr::Identifier(i)) => Some(i.value.to_lowercase()),
            SelectItem::UnnamedExpr(Expr::CompoundIdentifier(parts)) => {
                parts.last().map(|p| p.value.to_lowercase())
            }
            _ => None,
        }
    };
    let names: Vec<Option<String>> = items.iter().map(named).collect();
    for (i, item) in items.iter_mut().enumerate() {
        let SelectItem::UnnamedExpr(Expr::CompoundIdentifier(parts)) = item else {
            continue;
        };
        let Some(last) = parts.last().cloned() else {
            continue;
        };
        let unique = names
            .iter()
            .enumerate()
            .all(|(j, n)| j == i || n.as_deref() != Some(&last.value.to_lowercase()));
        if parts.len() >= 2 && unique {
            let expr = Expr::CompoundIdentifier(std::mem::take(parts));
            *item = SelectItem::ExprWithAlias { expr, alias: last };
        }
    }
}

/// Replaces every reference to a logical view in `statement` by the view's
/// query (nested views too). `lookup` gives a view's query by name. Returns
/// the names of the views expanded.
pub fn expand<V: VisitMut>(
    statement: &mut V,
    lookup: &dyn Fn(&str) -> Option<Arc<ast::Query>>,
) -> Result<Vec<String>> {
    struct Expander<'a> {
        lookup: &'a dyn Fn(&str) -> Option<Arc<ast::Query>>,
        expanded: Vec<String>,
        /// CTE names in scope shadow views.
        ctes: Vec<Vec<String>>,
    }
    impl VisitorMut for Expander<'_> {
        type Break = Error;
        fn pre_visit_query(&mut self, query: &mut ast::Query) -> ControlFlow<Error> {
            let name = |c: &ast::Cte| crate::frontend::parser::normalize_ident(&c.alias.name);
            let Some(with) = query.with.as_mut() else {
                self.ctes.push(Vec::new());
                return ControlFlow::Continue(());
            };
            if with.recursive {
                self.ctes.push(with.cte_tables.iter().map(name).collect());
                return ControlFlow::Continue(());
            }
            // A CTE's own query sees the CTEs before it, not itself: in
            // `WITH bid AS (SELECT ... FROM bid)` the inner `bid` is the
            // view. (The visitor then visits them again, finding nothing.)
            self.ctes.push(Vec::new());
            for cte in with.cte_tables.iter_mut() {
                cte.query.visit(self)?;
                let n = name(cte);
                self.ctes.last_mut().expect("pushed").push(n);
            }
            ControlFlow::Continue(())
        }
        fn post_visit_query(&mut self, _query: &mut ast::Query) -> ControlFlow<Error> {
            self.ctes.pop();
            ControlFlow::Continue(())
        }
        fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<Error> {
            if let TableFactor::TableFunction { expr, alias } = factor {
                return match window_over_view(expr, alias, self.lookup) {
                    Ok(Some(derived)) => {
                        *factor = derived;
                        ControlFlow::Continue(())
                    }
                    Ok(None) => ControlFlow::Continue(()),
                    Err(e) => ControlFlow::Break(e),
                };
            }
            let TableFactor::Table {
                name, alias, args, ..
            } = factor
            else {
                return ControlFlow::Continue(());
            };
            if let Some(table_args) = args {
                // `SESSION(v, ...)` as Flink's GROUP BY SESSION(...) is
                // rewritten: a window function called like a table.
                let call = Expr::Function(ast::Function {
                    name: name.clone(),
                    uses_odbc_syntax: false,
                    parameters: ast::FunctionArguments::None,
                    args: ast::FunctionArguments::List(ast::FunctionArgumentList {
                        duplicate_treatment: None,
                        args: table_args.args.clone(),
                        clauses: Vec::new(),
                    }),
                    filter: None,
                    null_treatment: None,
                    over: None,
                    within_group: Vec::new(),
                });
                return match window_over_view(&call, alias, self.lookup) {
                    Ok(Some(derived)) => {
                        *factor = derived;
                        ControlFlow::Continue(())
                    }
                    Ok(None) => ControlFlow::Continue(()),
                    Err(e) => ControlFlow::Break(e),
                };
            }
            let view = normalize_object_name(name);
            if self.ctes.iter().flatten().any(|c| *c == view) {
                return ControlFlow::Continue(());
            }
            let Some(query) = (self.lookup)(&view) else {
                return ControlFlow::Continue(());
            };
            if self.expanded.len() >= MAX_EXPANSIONS {
                return ControlFlow::Break(crate::frontend::parser::too_complex());
            }
            self.expanded.push(view.clone());
            let alias = alias.take().unwrap_or_else(|| alias_named(&view));
            // The visitor goes on into the new subquery, expanding the
            // views it names in turn.
            *factor = TableFactor::Derived {
                lateral: false,
                subquery: Box::new((*query).clone()),
                alias: Some(alias),
                sample: None,
            };
            ControlFlow::Continue(())
        }
    }
    let mut expander = Expander {
        lookup,
        expanded: Vec::new(),
        ctes: Vec::new(),
    };
    match statement.visit(&mut expander) {
        ControlFlow::Break(e) => Err(e),
        ControlFlow::Continue(()) => Ok(expander.expanded),
    }
}

/// `AS "name"`: what a relation is called when a rewrite puts another in
/// its place.
pub(crate) fn alias_named(name: &str) -> ast::TableAlias {
    ast::TableAlias {
        explicit: true,
        name: ast::Ident::with_quote('"', name),
        columns: Vec::new(),
        at: None,
    }
}

/// A window over a logical view, `TUMBLE(TABLE v, DESCRIPTOR(c), ...)`,
/// where `v` is `SELECT items FROM source [WHERE p]` and `c` one of the
/// source's columns passed through: the window moves onto the source and the
/// view's query onto the window's rows, `(SELECT items, window_start,
/// window_end[, window_time] FROM TABLE(TUMBLE(TABLE source,
/// DESCRIPTOR(c'), ...)) [WHERE p])`. Rows keep their windows through a
/// filter and a projection, so both are the same. Ok(None): not a window
/// over a view.
fn window_over_view(
    expr: &Expr,
    alias: &Option<ast::TableAlias>,
    lookup: &dyn Fn(&str) -> Option<Arc<ast::Query>>,
) -> Result<Option<TableFactor>> {
    let Expr::Function(call) = expr else {
        return Ok(None);
    };
    let kind = call.name.to_string().to_ascii_uppercase();
    if !matches!(kind.as_str(), "TUMBLE" | "HOP" | "CUMULATE" | "SESSION") {
        return Ok(None);
    }
    let ast::FunctionArguments::List(list) = &call.args else {
        return Ok(None);
    };
    let view = match list.args.first() {
        Some(ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(Expr::Identifier(i)))) => {
            crate::frontend::parser::normalize_ident(i)
        }
        _ => return Ok(None),
    };
    let Some(query) = lookup(&view) else {
        return Ok(None);
    };
    let refuse = |why: &str| {
        Err(Error::not_supported(format!(
            "a {kind} window over the view \"{view}\": {why}; name its source in the window (TUMBLE(TABLE source, ...)) and filter after it"
        )))
    };
    let SetExpr::Select(select) = query.body.as_ref() else {
        return refuse("the view is not a single SELECT");
    };
    let simple = query.with.is_none()
        && query.order_by.is_none()
        && query.limit_clause.is_none()
        && select.from.len() == 1
        && select.from[0].joins.is_empty()
        && select.having.is_none()
        && select.distinct.is_none()
        && matches!(&select.group_by, ast::GroupByExpr::Expressions(e, _) if e.is_empty());
    if !simple {
        return refuse("the view is more than a filter and a projection of one table");
    }
    let TableFactor::Table {
        name: source,
        alias: source_alias,
        args: None,
        ..
    } = &select.from[0].relation
    else {
        return refuse("the view does not read one table");
    };
    // The source column under a view column: a column passed through.
    let wildcard = select.projection.iter().any(|i| {
        matches!(
            i,
            SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)
        )
    });
    let source_column = |column: &str| -> Option<ast::Ident> {
        for item in &select.projection {
            match item {
                SelectItem::UnnamedExpr(Expr::Identifier(i))
                    if crate::frontend::parser::normalize_ident(i) == column =>
                {
                    return Some(i.clone())
                }
                SelectItem::ExprWithAlias {
                    expr: Expr::Identifier(i),
                    alias,
                } if crate::frontend::parser::normalize_ident(alias) == column => {
                    return Some(i.clone())
                }
                _ => {}
            }
        }
        wildcard.then(|| ast::Ident::with_quote('"', column))
    };
    let mut call = call.clone();
    let ast::FunctionArguments::List(list) = &mut call.args else {
        return Ok(None);
    };
    let mut parts: Vec<ast::Ident> = source
        .0
        .iter()
        .filter_map(|p| p.as_ident().cloned())
        .collect();
    let source_expr = if parts.len() == 1 {
        Expr::Identifier(parts.remove(0))
    } else {
        Expr::CompoundIdentifier(parts)
    };
    list.args[0] = ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(source_expr));
    // The time column (`DESCRIPTOR(c)`, or `c` as GROUP BY's form has it)
    // and PARTITION BY columns, as the source names them.
    let column_name = |e: &Expr| match e {
        Expr::Identifier(i) => Some(crate::frontend::parser::normalize_ident(i)),
        Expr::CompoundIdentifier(parts) => {
            parts.last().map(crate::frontend::parser::normalize_ident)
        }
        _ => None,
    };
    for arg in list.args.iter_mut().skip(1) {
        if let ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) = arg {
            if let Some(column) = column_name(e) {
                match source_column(&column) {
                    Some(s) => *e = Expr::Identifier(s),
                    None => {
                        return refuse(&format!(
                            "its column \"{column}\" is computed by the view, not a column of its source"
                        ))
                    }
                }
                continue;
            }
        }
        let ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(Expr::Function(f))) = arg else {
            continue;
        };
        let name = f.name.to_string();
        if !name.eq_ignore_ascii_case("DESCRIPTOR")
            && name != crate::frontend::parser::PARTITION_BY_ARG
        {
            continue;
        }
        let partition = name == crate::frontend::parser::PARTITION_BY_ARG;
        let ast::FunctionArguments::List(inner) = &mut f.args else {
            continue;
        };
        for a in inner.args.iter_mut() {
            let ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) = a else {
                return refuse("its time and key columns must be column names");
            };
            let Some(column) = column_name(e) else {
                return refuse("its time and key columns must be column names");
            };
            match source_column(&column) {
                Some(s) => *e = Expr::Identifier(s),
                // A session's partition is the aggregation's other group
                // columns, named as the view names them (Nexmark q11:
                // `GROUP BY B.bidder, SESSION(...)` over the view `bid`).
                None if partition => *e = Expr::Identifier(ast::Ident::new(column)),
                None => {
                    return refuse(&format!(
                    "its column \"{column}\" is computed by the view, not a column of its source"
                ))
                }
            }
        }
    }
    let mut windowed = (**select).clone();
    windowed.from[0].relation = TableFactor::TableFunction {
        expr: Expr::Function(call),
        alias: source_alias.clone(),
    };
    if !wildcard {
        let mut columns = vec!["window_start", "window_end"];
        if kind != "SESSION" {
            columns.push("window_time");
        }
        for c in columns {
            windowed
                .projection
                .push(SelectItem::UnnamedExpr(Expr::Identifier(ast::Ident::new(
                    c,
                ))));
        }
    }
    let mut subquery = (*query).clone();
    subquery.body = Box::new(SetExpr::Select(Box::new(windowed)));
    Ok(Some(TableFactor::Derived {
        lateral: false,
        subquery: Box::new(subquery),
        alias: Some(alias.clone().unwrap_or_else(|| alias_named(&view))),
        sample: None,
    }))
}

/// The relations a query names (sources, tables, views), as the catalog
/// names them.
pub fn relations_read(query: &ast::Query) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let _ = ast::visit_relations(query, |name| {
        let name = normalize_object_name(name);
        if !out.contains(&name) {
            out.push(name);
        }
        ControlFlow::<()>::Continue(())
    });
    out
}

/// Writes each `WITH` query (a common table expression) of `query`, and of
/// the queries in it, in place where it is used: a reference to it becomes
/// its query as a derived table under its name (or the reference's alias),
/// as a logical view is expanded, and so does a window over it. The
/// streaming planner then sees one query. A CTE may read earlier ones, and
/// a table of its own name (`WITH calls AS (SELECT * FROM calls ...)`).
/// `WITH RECURSIVE` is refused.
pub fn inline_ctes(query: &mut ast::Query) -> Result<()> {
    struct Inliner {
        /// Per enclosing query with a WITH: its CTEs, by name, with their
        /// queries (references in them already written in place).
        scopes: Vec<Vec<(String, ast::TableAlias, Arc<ast::Query>)>>,
        /// Per table factor being visited: whether it is a CTE written in
        /// place, whose tables are tables (not CTEs) whatever their names.
        written: Vec<bool>,
        inside: usize,
        error: Option<Error>,
    }
    impl Inliner {
        fn find(&self, name: &str) -> Option<(&ast::TableAlias, &Arc<ast::Query>)> {
            self.scopes.iter().rev().find_map(|s| {
                s.iter()
                    .rev()
                    .find(|(n, _, _)| n == name)
                    .map(|(_, a, q)| (a, q))
            })
        }

        fn replace(&mut self, factor: &mut TableFactor) -> Result<bool> {
            if self.inside > 0 {
                return Ok(false);
            }
            if let TableFactor::TableFunction { expr, alias } = factor {
                let lookup = |name: &str| self.find(name).map(|(_, q)| q.clone());
                return Ok(match window_over_view(expr, alias, &lookup)? {
                    Some(derived) => {
                        *factor = derived;
                        true
                    }
                    None => false,
                });
            }
            let TableFactor::Table {
                name,
                alias,
                args: None,
                ..
            } = factor
            else {
                return Ok(false);
            };
            if name.0.len() != 1 {
                return Ok(false);
            }
            let Some((cte, body)) = self.find(&normalize_object_name(name)) else {
                return Ok(false);
            };
            let alias = match alias.take() {
                Some(a) if a.columns.is_empty() => ast::TableAlias {
                    columns: cte.columns.clone(),
                    ..a
                },
                Some(a) => a,
                None => cte.clone(),
            };
            *factor = TableFactor::Derived {
                lateral: false,
                subquery: Box::new((**body).clone()),
                alias: Some(alias),
                sample: None,
            };
            Ok(true)
        }
    }
    impl VisitorMut for Inliner {
        type Break = ();
        fn pre_visit_query(&mut self, query: &mut ast::Query) -> ControlFlow<()> {
            let Some(with) = query.with.as_mut() else {
                return ControlFlow::Continue(());
            };
            if with.recursive {
                self.error = Some(Error::not_supported(
                    "WITH RECURSIVE is not supported in a materialized view",
                ));
                return ControlFlow::Break(());
            }
            // Each CTE's own query, with the CTEs before it in scope. The
            // WITH stays, empty, until post_visit_query ends its scope.
            let ctes = std::mem::take(&mut with.cte_tables);
            self.scopes.push(Vec::new());
            for cte in ctes {
                let mut body = *cte.query;
                body.visit(self)?;
                let name = crate::frontend::parser::normalize_ident(&cte.alias.name);
                self.scopes
                    .last_mut()
                    .expect("pushed")
                    .push((name, cte.alias, Arc::new(body)));
            }
            ControlFlow::Continue(())
        }
        fn post_visit_query(&mut self, query: &mut ast::Query) -> ControlFlow<()> {
            if query.with.take().is_some() {
                self.scopes.pop();
            }
            ControlFlow::Continue(())
        }
        fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
            match self.replace(factor) {
                Ok(written) => {
                    self.inside += written as usize;
                    self.written.push(written);
                    ControlFlow::Continue(())
                }
                Err(e) => {
                    self.error = Some(e);
                    ControlFlow::Break(())
                }
            }
        }
        fn post_visit_table_factor(&mut self, _: &mut TableFactor) -> ControlFlow<()> {
            if self.written.pop() == Some(true) {
                self.inside -= 1;
            }
            ControlFlow::Continue(())
        }
    }
    let mut inliner = Inliner {
        scopes: Vec::new(),
        written: Vec::new(),
        inside: 0,
        error: None,
    };
    let _ = query.visit(&mut inliner);
    match inliner.error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frontend::parser::{parse_one, Statement};

    fn query(sql: &str) -> ast::Query {
        match parse_one(sql).unwrap().statement {
            Statement::Query(q) => match *q {
                ast::Statement::Query(q) => *q,
                other => panic!("{other}"),
            },
            _ => panic!("not a query"),
        }
    }

    #[test]
    fn field_paths_are_named_by_their_last_part() {
        let mut q = query("SELECT person.id, person.name, t.person.city, x.id FROM t");
        name_field_paths(&mut q);
        assert_eq!(
            q.to_string(),
            "SELECT person.id, person.name AS name, t.person.city AS city, x.id FROM t"
        );
    }

    #[test]
    fn views_expand_in_place_and_ctes_shadow_them() {
        let v = Arc::new(query("SELECT a FROM src WHERE b = 1"));
        let w = Arc::new(query("SELECT a FROM v"));
        let lookup = |name: &str| match name {
            "v" => Some(v.clone()),
            "w" => Some(w.clone()),
            _ => None,
        };
        let mut q = query("SELECT * FROM w JOIN v AS x ON true");
        let expanded = expand(&mut q, &lookup).unwrap();
        assert_eq!(expanded, vec!["w", "v", "v"]);
        assert_eq!(
            q.to_string(),
            "SELECT * FROM (SELECT a FROM (SELECT a FROM src WHERE b = 1) AS \"v\") AS \"w\" \
             JOIN (SELECT a FROM src WHERE b = 1) AS x ON true"
        );
        let mut q = query("WITH v AS (SELECT 1 AS a) SELECT * FROM v");
        assert!(expand(&mut q, &lookup).unwrap().is_empty());
    }
}
