//! Postgres's rules for ad-hoc queries, applied to the statement before
//! DataFusion plans it:
//!
//! - **Output column names.** An expression without an alias is named as
//!   Postgres names it (`count(*)` is `count`, `sum(kpi.calls)` is `sum`,
//!   `x::int` is `x`, a literal or an operator is `?column?`), in every
//!   select list, so that a subquery's columns can be named by them. Names
//!   may repeat in a result (`SELECT 1, 1`): DataFusion wants them unique,
//!   so a repeated one gets an internal alias, and the result's columns are
//!   renamed back ([`Names`]).
//! - **Integer literals.** A bare integer literal in the result that fits
//!   in 32 bits is an `integer` (`SELECT 1` is int4, as in Postgres).
//!   Literals inside expressions keep DataFusion's 64 bits, so arithmetic
//!   on them cannot overflow where Postgres's would not.
//! - **Typed parameters.** A parameter whose type the client declared (its
//!   OID in Parse) is read as that type: `$1` becomes `CAST($1 AS type)`,
//!   so `WHERE calls < $1` with a `float8` 1.5 compares as numbers with a
//!   fraction, as in Postgres. Undeclared parameters take the type
//!   DataFusion infers from where they stand, or text.
//! - **The session's values.** `current_user`, `session_user` and `user`
//!   are the session's user, `pg_backend_pid()` its connection's number,
//!   `current_setting('name')` the setting's value, as literals;
//!   `set_config('name', 'value', is_local)` is its value, and the session
//!   takes the setting once the statement has run.
//! - **Functions in FROM.** A set-returning function's column is named
//!   after its alias, or the function (`FROM generate_series(1, 3) AS i`
//!   has a column `i`); a scalar function in FROM is a one-row relation of
//!   its value (`FROM string_to_array('a,b', ',') s`), as Grafana's queries
//!   use them.
//! - **Subqueries in ORDER BY** (Grafana sorts the schemas of its search
//!   path first so): DataFusion runs them only in the select list, so the
//!   query becomes `SELECT <its columns> FROM (<it, with the ORDER BY
//!   expression as a column>) ORDER BY <that column>`.
//! - **`x IN (subquery)` in a select list** (DataFusion runs IN subqueries
//!   in filters only): `array_has((SELECT array_agg(v) FROM (subquery)
//!   AS s(v)), x)`, the same test as a scalar subquery.
//! - **Array literals in text** (`'{r,p,""}'::text[]`, `x = ANY('{a,b}')`,
//!   as psycopg writes lists into SQL): read as Postgres reads them, an
//!   array of the elements (DataFusion would make a one-element list of the
//!   whole text).
//! - **`LIKE ... ESCAPE 'c'`.** DataFusion escapes with backslashes only:
//!   another escape character is turned into backslashes by Postgres's own
//!   `like_escape(pattern, 'c')`, whatever the pattern is.

use std::collections::HashMap;
use std::ops::ControlFlow;

use arrow::datatypes::{DataType, TimeUnit};
use sqlparser::ast::{
    self, Expr, Ident, ObjectNamePart, SelectItem, SetExpr, Value, VisitMut, VisitorMut,
};

/// The names a query's result columns are shown with, when they differ
/// from the names DataFusion planned them by (repeated names).
#[derive(Debug, Clone, Default)]
pub struct Names(pub Option<Vec<String>>);

/// What the rewrite tells of the query: the display names of its result's
/// columns, if they could be told without planning, and the settings its
/// `set_config` calls make.
#[derive(Debug, Clone, Default)]
pub struct Rewritten {
    pub names: Names,
    pub settings: Vec<(String, String)>,
}

/// Applies the rules above to a query statement.
pub fn rewrite(
    statement: &mut ast::Statement,
    declared: &[Option<DataType>],
    scope: &super::Scope,
) -> crate::error::Result<Rewritten> {
    let _ = statement.visit(&mut Aliases);
    if let ast::Statement::Query(query) = statement {
        order_by_subqueries(query);
    }
    let _ = statement.visit(&mut SelectListInSubqueries);
    let mut values = SessionValues {
        scope,
        settings: Vec::new(),
        error: None,
    };
    let _ = statement.visit(&mut values);
    if let Some(e) = values.error {
        return Err(e);
    }
    let settings = values.settings;
    let _ = statement.visit(&mut LikeEscapes);
    let _ = statement.visit(&mut ArrayLiterals);
    let _ = statement.visit(&mut FromFunctions);
    if declared.iter().any(Option::is_some) {
        let _ = statement.visit(&mut TypedParameters { declared });
    }
    let names = match statement {
        ast::Statement::Query(q) => Names(top_level_names(&mut q.body)),
        _ => Names(None),
    };
    Ok(Rewritten { names, settings })
}

/// Whether an expression holds a subquery.
fn has_subquery(expr: &Expr) -> bool {
    struct Finder(bool);
    impl ast::Visitor for Finder {
        type Break = ();
        fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
            if matches!(
                expr,
                Expr::Subquery(_) | Expr::InSubquery { .. } | Expr::Exists { .. }
            ) {
                self.0 = true;
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        }
    }
    let mut finder = Finder(false);
    let _ = ast::Visit::visit(expr, &mut finder);
    finder.0
}

/// Moves ORDER BY expressions that hold a subquery into the select list of
/// an inner query (see the module doc). Only for a plain SELECT whose
/// columns all have names (after [`Aliases`]).
fn order_by_subqueries(query: &mut ast::Query) {
    let Some(ast::OrderBy {
        kind: ast::OrderByKind::Expressions(items),
        ..
    }) = &query.order_by
    else {
        return;
    };
    if !items.iter().any(|i| has_subquery(&i.expr)) {
        return;
    }
    let SetExpr::Select(select) = query.body.as_ref() else {
        return;
    };
    let mut names = Vec::with_capacity(select.projection.len());
    for item in &select.projection {
        match item {
            SelectItem::ExprWithAlias { alias, .. } => names.push(alias.clone()),
            SelectItem::UnnamedExpr(e) => match column_name(e) {
                Some(n) => names.push(Ident::with_quote('"', n)),
                None => return,
            },
            _ => return,
        }
    }
    let mut inner = query.clone();
    inner.order_by = None;
    inner.limit_clause = None;
    inner.fetch = None;
    let SetExpr::Select(inner_select) = inner.body.as_mut() else {
        return;
    };
    let mut order = Vec::with_capacity(items.len());
    for (k, item) in items.iter().enumerate() {
        if has_subquery(&item.expr) {
            let hidden = Ident::with_quote('"', format!("__sluice_order_{k}"));
            inner_select.projection.push(SelectItem::ExprWithAlias {
                expr: item.expr.clone(),
                alias: hidden.clone(),
            });
            let mut outer = item.clone();
            outer.expr = Expr::Identifier(hidden);
            order.push(outer.to_string());
        } else {
            order.push(item.to_string());
        }
    }
    let mut sql = format!(
        "SELECT {} FROM ({inner}) AS __sluice_ordered ORDER BY {}",
        names
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        order.join(", ")
    );
    if let Some(limit) = &query.limit_clause {
        sql.push_str(&format!(" {limit}"));
    }
    if let Ok(parsed) = crate::frontend::parser::parse_one(&sql) {
        if let crate::frontend::parser::Statement::Query(statement) = parsed.statement {
            if let ast::Statement::Query(rewritten) = *statement {
                *query = *rewritten;
            }
        }
    }
}

/// IN subqueries in select lists, as scalar subqueries (see the module
/// doc).
struct SelectListInSubqueries;

impl VisitorMut for SelectListInSubqueries {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut ast::Query) -> ControlFlow<()> {
        if let SetExpr::Select(select) = query.body.as_mut() {
            for item in select.projection.iter_mut() {
                if let SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } = item
                {
                    let _ = e.visit(&mut InSubqueryToArray);
                }
            }
        }
        ControlFlow::Continue(())
    }
}

struct InSubqueryToArray;

impl VisitorMut for InSubqueryToArray {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        let Expr::InSubquery {
            expr: needle,
            subquery,
            negated,
        } = expr
        else {
            return ControlFlow::Continue(());
        };
        let sql = format!(
            "{}array_has((SELECT array_agg(__in_value) FROM ({subquery}) AS __in(__in_value)), {needle})",
            if *negated { "NOT " } else { "" }
        );
        let parsed = sqlparser::parser::Parser::new(crate::frontend::parser::dialect())
            .try_with_sql(&sql)
            .and_then(|mut p| p.parse_expr());
        if let Ok(replacement) = parsed {
            *expr = replacement;
        }
        ControlFlow::Continue(())
    }
}

/// Names each unaliased item of every select list as Postgres does.
struct Aliases;

impl VisitorMut for Aliases {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut ast::Query) -> ControlFlow<()> {
        name_select_lists(&mut query.body);
        ControlFlow::Continue(())
    }
}

fn name_select_lists(body: &mut SetExpr) {
    match body {
        SetExpr::Select(select) => {
            let mut used: HashMap<String, usize> = HashMap::new();
            for item in select.projection.iter_mut() {
                let (name, explicit) = match item {
                    SelectItem::UnnamedExpr(e) => match column_name(e) {
                        Some(n) => (n, true),
                        None => (figure_name(e), false),
                    },
                    SelectItem::ExprWithAlias { alias, .. } => (alias_name(alias), true),
                    _ => continue,
                };
                let seen = used.entry(name.clone()).or_insert(0);
                *seen += 1;
                let unique = if *seen == 1 {
                    name
                } else {
                    internal_alias(&name, *seen)
                };
                if *seen == 1 && explicit {
                    continue;
                }
                let expr = match std::mem::replace(item, SelectItem::Wildcard(Default::default())) {
                    SelectItem::UnnamedExpr(e) => e,
                    SelectItem::ExprWithAlias { expr, .. } => expr,
                    other => {
                        *item = other;
                        continue;
                    }
                };
                *item = SelectItem::ExprWithAlias {
                    expr,
                    alias: Ident::with_quote('"', unique),
                };
            }
        }
        SetExpr::SetOperation { left, right, .. } => {
            name_select_lists(left);
            name_select_lists(right);
        }
        _ => {}
    }
}

/// The internal alias of the `n`th column named `name` in one select list;
/// [`display_name`] gives `name` back.
fn internal_alias(name: &str, n: usize) -> String {
    format!("{name}\u{0}{n}")
}

/// The name a column is shown with.
pub fn display_name(internal: &str) -> &str {
    internal.split('\u{0}').next().unwrap_or(internal)
}

fn alias_name(alias: &Ident) -> String {
    crate::frontend::parser::normalize_ident(alias)
}

/// The name of a plain column reference (DataFusion names it so already).
fn column_name(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Identifier(id) => Some(alias_name(id)),
        Expr::CompoundIdentifier(ids) => ids.last().map(alias_name),
        _ => None,
    }
}

/// Postgres's name for an unaliased result column (its FigureColname).
fn figure_name(expr: &Expr) -> String {
    fn inner(expr: &Expr) -> Option<String> {
        Some(match expr {
            Expr::Identifier(_) | Expr::CompoundIdentifier(_) => column_name(expr)?,
            Expr::Nested(e) => return inner(e),
            Expr::Function(f) => match f.name.0.last()? {
                ObjectNamePart::Identifier(id) => alias_name(id),
                _ => return None,
            },
            Expr::Cast {
                expr, data_type, ..
            } => match inner(expr) {
                Some(name) => name,
                None => type_name(data_type)?,
            },
            Expr::Case { .. } => "case".into(),
            Expr::Exists { .. } => "exists".into(),
            Expr::Array(_) => "array".into(),
            Expr::Extract { .. } => "extract".into(),
            Expr::Substring { .. } => "substring".into(),
            Expr::Trim { .. } => "btrim".into(),
            Expr::Position { .. } => "position".into(),
            Expr::Overlay { .. } => "overlay".into(),
            Expr::Ceil { .. } => "ceil".into(),
            Expr::Floor { .. } => "floor".into(),
            Expr::Interval(_) => "interval".into(),
            Expr::TypedString(t) => type_name(&t.data_type)?,
            Expr::Value(v) => match &v.value {
                Value::Boolean(_) => "bool".into(),
                _ => return None,
            },
            Expr::Subquery(q) => match q.body.as_ref() {
                SetExpr::Select(s) => match s.projection.first()? {
                    SelectItem::ExprWithAlias { alias, .. } => alias_name(alias),
                    SelectItem::UnnamedExpr(e) => return inner(e),
                    _ => return None,
                },
                _ => return None,
            },
            _ => return None,
        })
    }
    inner(expr).unwrap_or_else(|| "?column?".into())
}

/// Postgres's internal name of a type, as a cast's column is named.
fn type_name(t: &ast::DataType) -> Option<String> {
    use ast::DataType as T;
    Some(
        match t {
            T::Int(_) | T::Integer(_) | T::Int4(_) => "int4",
            T::BigInt(_) | T::Int8(_) => "int8",
            T::SmallInt(_) | T::Int2(_) => "int2",
            T::Real | T::Float4 => "float4",
            T::Double(_) | T::DoublePrecision | T::Float8 | T::Float(_) => "float8",
            T::Text | T::String(_) => "text",
            T::Varchar(_) | T::CharacterVarying(_) => "varchar",
            T::Boolean | T::Bool => "bool",
            T::Numeric(_) | T::Decimal(_) | T::Dec(_) => "numeric",
            T::Date => "date",
            T::Timestamp(_, ast::TimezoneInfo::WithTimeZone | ast::TimezoneInfo::Tz) => {
                "timestamptz"
            }
            T::Timestamp(..) => "timestamp",
            T::Time(..) => "time",
            T::Interval { .. } => "interval",
            T::Bytea => "bytea",
            _ => return None,
        }
        .to_string(),
    )
}

/// The display names of the top-level select list(s), after [`Aliases`];
/// bare integer literals there become `integer`s. None when the names
/// cannot be told without planning (`*`).
fn top_level_names(body: &mut SetExpr) -> Option<Vec<String>> {
    match body {
        SetExpr::Select(select) => {
            let mut names = Vec::with_capacity(select.projection.len());
            for item in select.projection.iter_mut() {
                match item {
                    SelectItem::ExprWithAlias { expr, alias } => {
                        narrow_integer(expr);
                        names.push(display_name(&alias_name(alias)).to_string());
                    }
                    SelectItem::UnnamedExpr(e) => names.push(column_name(e)?),
                    _ => return None,
                }
            }
            Some(names)
        }
        SetExpr::SetOperation { left, right, .. } => {
            // The first branch names the columns (as in Postgres).
            let _ = top_level_names(right);
            top_level_names(left)
        }
        SetExpr::Query(q) => top_level_names(&mut q.body),
        _ => None,
    }
}

/// `1` becomes `CAST(1 AS INTEGER)` when it fits in 32 bits.
fn narrow_integer(expr: &mut Expr) {
    let fits = |text: &str| text.parse::<i32>().is_ok();
    let literal = match expr {
        Expr::Value(v) => matches!(&v.value, Value::Number(n, false) if fits(n)),
        Expr::UnaryOp {
            op: ast::UnaryOperator::Minus,
            expr: inner,
        } => {
            matches!(inner.as_ref(), Expr::Value(v) if matches!(&v.value, Value::Number(n, false) if fits(&format!("-{n}"))))
        }
        _ => false,
    };
    if literal {
        let inner = std::mem::replace(expr, Expr::Value(Value::Null.into()));
        *expr = Expr::Cast {
            kind: ast::CastKind::Cast,
            expr: Box::new(inner),
            data_type: ast::DataType::Integer(None),
            array: false,
            format: None,
        };
    }
}

/// The session's functions become their values.
struct SessionValues<'a> {
    scope: &'a super::Scope,
    /// What `set_config` calls set.
    settings: Vec<(String, String)>,
    error: Option<crate::error::Error>,
}

/// A function call's arguments, if each is a plain expression.
fn arguments(f: &ast::Function) -> Option<Vec<&Expr>> {
    match &f.args {
        ast::FunctionArguments::None => Some(Vec::new()),
        ast::FunctionArguments::List(l) => l
            .args
            .iter()
            .map(|a| match a {
                ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) => Some(e),
                _ => None,
            })
            .collect(),
        ast::FunctionArguments::Subquery(_) => None,
    }
}

/// The text of a string literal (also cast: `'x'::text`).
fn string_literal(expr: &Expr) -> Option<&str> {
    match expr {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) => Some(s),
            _ => None,
        },
        Expr::Cast { expr, .. } | Expr::Nested(expr) => string_literal(expr),
        _ => None,
    }
}

fn boolean_literal(expr: &Expr) -> Option<bool> {
    match expr {
        Expr::Value(v) => match &v.value {
            Value::Boolean(b) => Some(*b),
            _ => None,
        },
        _ => None,
    }
}

fn text(value: Option<String>) -> Expr {
    let value = match value {
        Some(v) => Value::SingleQuotedString(v),
        None => Value::Null,
    };
    Expr::Cast {
        kind: ast::CastKind::Cast,
        expr: Box::new(Expr::Value(value.into())),
        data_type: ast::DataType::Text,
        array: false,
        format: None,
    }
}

impl VisitorMut for SessionValues<'_> {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        let Expr::Function(f) = expr else {
            return ControlFlow::Continue(());
        };
        let Some(args) = arguments(f) else {
            return ControlFlow::Continue(());
        };
        let name = f.name.to_string().to_ascii_lowercase();
        let name = name.trim_start_matches("pg_catalog.");
        let replacement = match (name, args.as_slice()) {
            ("current_user" | "session_user" | "user" | "current_role", []) => {
                text(Some(self.scope.user.clone()))
            }
            ("pg_backend_pid", []) => {
                Expr::Value(Value::Number(self.scope.pid.to_string(), false).into())
            }
            ("current_setting", [setting, rest @ ..]) => {
                let Some(setting) = string_literal(setting) else {
                    return ControlFlow::Continue(());
                };
                let missing_ok = rest
                    .first()
                    .and_then(|e| boolean_literal(e))
                    .unwrap_or(false);
                let setting = setting.to_ascii_lowercase();
                match self.scope.settings.get(&setting) {
                    Some(v) => text(Some(v.clone())),
                    None if missing_ok => text(None),
                    None => {
                        self.error = Some(crate::error::Error::user(
                            crate::error::sqlstate::UNDEFINED_OBJECT,
                            format!("unrecognized configuration parameter \"{setting}\""),
                        ));
                        return ControlFlow::Break(());
                    }
                }
            }
            ("set_config", [setting, value, _local]) => {
                let (Some(setting), Some(value)) = (string_literal(setting), string_literal(value))
                else {
                    return ControlFlow::Continue(());
                };
                self.settings
                    .push((setting.to_ascii_lowercase(), value.to_string()));
                text(Some(value.to_string()))
            }
            _ => return ControlFlow::Continue(()),
        };
        *expr = replacement;
        ControlFlow::Continue(())
    }
}

/// The functions DataFusion reads as relations in FROM (their one column
/// is named `value`, or after the array's column).
const TABLE_FUNCTIONS: &[&str] = &["generate_series", "range", "unnest"];

/// Functions in FROM, named as Postgres names them (see the module doc).
struct FromFunctions;

impl VisitorMut for FromFunctions {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &mut ast::TableFactor) -> ControlFlow<()> {
        let ast::TableFactor::Table {
            name,
            alias,
            args: Some(args),
            ..
        } = factor
        else {
            return ControlFlow::Continue(());
        };
        let function = name.to_string().to_ascii_lowercase();
        let function = function.trim_start_matches("pg_catalog.").to_string();
        // `pg_catalog.generate_series`: DataFusion's functions have no
        // schema.
        if let [schema, _] = name.0.as_slice() {
            if schema.to_string().eq_ignore_ascii_case("pg_catalog") {
                name.0.remove(0);
            }
        }
        if function == "generate_series" {
            widen_integer_arguments(&mut args.args);
        }
        let column = match alias {
            Some(a) if !a.columns.is_empty() => return ControlFlow::Continue(()),
            Some(a) => a.name.clone(),
            None => Ident::new(function.clone()),
        };
        if TABLE_FUNCTIONS.contains(&function.as_str()) {
            *alias = Some(ast::TableAlias {
                explicit: true,
                name: alias
                    .as_ref()
                    .map(|a| a.name.clone())
                    .unwrap_or(column.clone()),
                columns: vec![ast::TableAliasColumnDef {
                    name: column,
                    data_type: None,
                }],
                at: None,
            });
            return ControlFlow::Continue(());
        }
        let arguments: Vec<String> = args.args.iter().map(|a| a.to_string()).collect();
        let sql = format!("SELECT {}({}) AS {}", name, arguments.join(", "), column);
        let Ok(parsed) = crate::frontend::parser::parse_one(&sql) else {
            return ControlFlow::Continue(());
        };
        let crate::frontend::parser::Statement::Query(statement) = parsed.statement else {
            return ControlFlow::Continue(());
        };
        let ast::Statement::Query(subquery) = *statement else {
            return ControlFlow::Continue(());
        };
        *factor = ast::TableFactor::Derived {
            lateral: false,
            subquery,
            alias: Some(ast::TableAlias {
                explicit: true,
                name: column,
                columns: vec![],
                at: None,
            }),
            sample: None,
        };
        ControlFlow::Continue(())
    }
}

/// DataFusion's `generate_series` takes 64-bit integers, and Postgres's
/// `array_lower`, `array_upper` and `array_length` are 32-bit: their calls
/// as bounds are cast (Grafana's table discovery writes
/// `generate_series(array_lower(...), array_upper(...))`).
fn widen_integer_arguments(args: &mut [ast::FunctionArg]) {
    for arg in args {
        let ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(expr)) = arg else {
            continue;
        };
        let integral = matches!(expr, Expr::Function(f) if matches!(
            f.name.to_string().to_ascii_lowercase().as_str(),
            "array_lower" | "array_upper" | "array_length" | "cardinality"
        ));
        if integral {
            let inner = std::mem::replace(expr, Expr::Value(Value::Null.into()));
            *expr = Expr::Cast {
                kind: ast::CastKind::Cast,
                expr: Box::new(inner),
                data_type: ast::DataType::BigInt(None),
                array: false,
                format: None,
            };
        }
    }
}

/// Postgres's array literal text (`{a,"b c",NULL}`): its elements (None
/// for NULL); None if the text is not one (or is multidimensional).
pub fn parse_array_literal(text: &str) -> Option<Vec<Option<String>>> {
    let inner = text.trim().strip_prefix('{')?.strip_suffix('}')?;
    let mut out = Vec::new();
    let mut chars = inner.chars().peekable();
    while chars.peek().is_some() {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek() == Some(&'"') {
            chars.next();
            let mut value = String::new();
            loop {
                match chars.next()? {
                    '\\' => value.push(chars.next()?),
                    '"' => break,
                    c => value.push(c),
                }
            }
            out.push(Some(value));
        } else {
            let mut value = String::new();
            while let Some(c) = chars.peek() {
                match c {
                    ',' => break,
                    '{' | '"' => return None,
                    _ => {
                        value.push(*c);
                        chars.next();
                    }
                }
            }
            let value = value.trim().to_string();
            if value.is_empty() {
                return None;
            }
            out.push((!value.eq_ignore_ascii_case("null")).then_some(value));
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.next() {
            None | Some(',') => {}
            Some(_) => return None,
        }
    }
    Some(out)
}

/// `ARRAY[...]` of `elements`, each a string literal cast to `element`
/// (or left for DataFusion to coerce, without one).
fn array_of(elements: Vec<Option<String>>, element: Option<&ast::DataType>) -> Expr {
    let elem = elements
        .into_iter()
        .map(|e| {
            let value = Expr::Value(
                match e {
                    Some(s) => Value::SingleQuotedString(s),
                    None => Value::Null,
                }
                .into(),
            );
            match element {
                Some(t) => Expr::Cast {
                    kind: ast::CastKind::Cast,
                    expr: Box::new(value),
                    data_type: t.clone(),
                    array: false,
                    format: None,
                },
                None => value,
            }
        })
        .collect();
    Expr::Array(ast::Array { elem, named: true })
}

/// Array literals written as text (see the module doc).
struct ArrayLiterals;

impl VisitorMut for ArrayLiterals {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        let text_of = |e: &Expr| match e {
            Expr::Value(v) => match &v.value {
                Value::SingleQuotedString(text) => parse_array_literal(text),
                _ => None,
            },
            _ => None,
        };
        match expr {
            Expr::Cast {
                expr: inner,
                data_type: ast::DataType::Array(element),
                ..
            } => {
                let element = match element {
                    ast::ArrayElemTypeDef::SquareBracket(t, _)
                    | ast::ArrayElemTypeDef::AngleBracket(t)
                    | ast::ArrayElemTypeDef::Parenthesis(t) => Some(t.as_ref().clone()),
                    ast::ArrayElemTypeDef::None => None,
                };
                if let Some(elements) = text_of(inner) {
                    *expr = array_of(elements, element.as_ref());
                }
            }
            Expr::AnyOp { right, .. } | Expr::AllOp { right, .. } => {
                if let Some(elements) = text_of(right) {
                    **right = array_of(elements, None);
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

/// `x LIKE p ESCAPE 'c'` becomes `x LIKE like_escape(p, 'c')` (backslash
/// escapes), for every escape character but the backslash.
struct LikeEscapes;

impl VisitorMut for LikeEscapes {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        let (Expr::Like {
            pattern,
            escape_char,
            ..
        }
        | Expr::ILike {
            pattern,
            escape_char,
            ..
        }) = expr
        else {
            return ControlFlow::Continue(());
        };
        let escape = match escape_char.as_ref().map(|v| &v.value) {
            Some(Value::SingleQuotedString(c)) if c != "\\" => c.clone(),
            _ => return ControlFlow::Continue(()),
        };
        let inner = std::mem::replace(pattern.as_mut(), Expr::Value(Value::Null.into()));
        **pattern = Expr::Function(ast::Function {
            name: ast::ObjectName::from(vec![Ident::new("like_escape")]),
            uses_odbc_syntax: false,
            parameters: ast::FunctionArguments::None,
            args: ast::FunctionArguments::List(ast::FunctionArgumentList {
                duplicate_treatment: None,
                args: vec![
                    ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(inner)),
                    ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(Expr::Value(
                        Value::SingleQuotedString(escape).into(),
                    ))),
                ],
                clauses: vec![],
            }),
            filter: None,
            null_treatment: None,
            over: None,
            within_group: vec![],
        });
        *escape_char = None;
        ControlFlow::Continue(())
    }
}

/// `$n` becomes `CAST($n AS type)` for each parameter of a declared type.
struct TypedParameters<'a> {
    declared: &'a [Option<DataType>],
}

impl VisitorMut for TypedParameters<'_> {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        let Expr::Value(v) = expr else {
            return ControlFlow::Continue(());
        };
        let Value::Placeholder(p) = &v.value else {
            return ControlFlow::Continue(());
        };
        let declared = p
            .strip_prefix('$')
            .and_then(|n| n.parse::<usize>().ok())
            .and_then(|n| self.declared.get(n.wrapping_sub(1)))
            .and_then(|t| t.as_ref())
            .and_then(sql_type);
        if let Some(data_type) = declared {
            let placeholder = std::mem::replace(expr, Expr::Value(Value::Null.into()));
            *expr = Expr::Cast {
                kind: ast::CastKind::Cast,
                expr: Box::new(placeholder),
                data_type,
                array: false,
                format: None,
            };
        }
        ControlFlow::Continue(())
    }
}

/// The SQL type DataFusion reads as `t`.
fn sql_type(t: &DataType) -> Option<ast::DataType> {
    use ast::DataType as T;
    Some(match t {
        DataType::Boolean => T::Boolean,
        DataType::Int16 => T::SmallInt(None),
        DataType::Int32 => T::Integer(None),
        DataType::Int64 => T::BigInt(None),
        DataType::Float32 => T::Real,
        DataType::Float64 => T::DoublePrecision,
        DataType::Utf8 => T::Text,
        DataType::Binary => T::Bytea,
        DataType::Date32 => T::Date,
        DataType::Time64(_) => T::Time(None, ast::TimezoneInfo::None),
        DataType::Timestamp(TimeUnit::Microsecond, None) => {
            T::Timestamp(None, ast::TimezoneInfo::WithoutTimeZone)
        }
        DataType::Timestamp(TimeUnit::Microsecond, Some(_)) => {
            T::Timestamp(None, ast::TimezoneInfo::WithTimeZone)
        }
        DataType::Decimal128(p, s) => T::Decimal(ast::ExactNumberInfo::PrecisionAndScale(
            *p as u64, *s as i64,
        )),
        DataType::Interval(_) => T::Interval {
            fields: None,
            precision: None,
        },
        DataType::List(item) => T::Array(ast::ArrayElemTypeDef::SquareBracket(
            Box::new(sql_type(item.data_type())?),
            None,
        )),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(sql: &str) -> (String, Option<Vec<String>>) {
        let parsed = crate::frontend::parser::parse_one(sql).unwrap();
        let crate::frontend::parser::Statement::Query(mut q) = parsed.statement else {
            panic!()
        };
        let n = rewrite(&mut q, &[], &crate::query::Scope::default()).unwrap();
        (q.to_string(), n.names.0)
    }

    #[test]
    fn columns_are_named_as_postgres_names_them() {
        let (sql, n) = names("SELECT count(*), sum(kpi.calls), 1, x::int, 1::int, CASE WHEN true THEN 1 END, cell_id, a AS b FROM kpi");
        assert_eq!(
            n.unwrap(),
            ["count", "sum", "?column?", "x", "int4", "case", "cell_id", "b"]
        );
        assert!(sql.contains("count(*) AS \"count\""), "{sql}");
        assert!(sql.contains("CAST(1 AS INTEGER) AS \"?column?\""), "{sql}");
    }

    #[test]
    fn repeated_names_get_internal_aliases() {
        let (sql, n) = names("SELECT 1, 1, count(*), count(x) FROM t");
        assert_eq!(n.unwrap(), ["?column?", "?column?", "count", "count"]);
        assert!(sql.contains("\"?column?\u{0}2\""), "{sql}");
        assert_eq!(display_name("?column?\u{0}2"), "?column?");
    }

    #[test]
    fn subqueries_are_named_and_literals_inside_stay_wide() {
        let (sql, n) = names("SELECT count FROM (SELECT count(*), 1 + 1 FROM t) s");
        assert_eq!(n.unwrap(), ["count"]);
        assert!(sql.contains("count(*) AS \"count\""), "{sql}");
        assert!(sql.contains("1 + 1 AS \"?column?\""), "{sql}");
    }

    #[test]
    fn array_literals_read_as_postgres_reads_them() {
        assert_eq!(
            parse_array_literal("{r,p,\"\"}"),
            Some(vec![
                Some("r".into()),
                Some("p".into()),
                Some(String::new())
            ])
        );
        assert_eq!(
            parse_array_literal("{1, NULL ,\"a\\\"b\"}"),
            Some(vec![Some("1".into()), None, Some("a\"b".into())])
        );
        assert_eq!(parse_array_literal("{}"), Some(vec![]));
        assert_eq!(parse_array_literal("{{1,2}}"), None);
        assert_eq!(parse_array_literal("r,p"), None);
    }

    #[test]
    fn declared_parameters_are_cast() {
        let parsed = crate::frontend::parser::parse_one("SELECT $1 * 2, $2").unwrap();
        let crate::frontend::parser::Statement::Query(mut q) = parsed.statement else {
            panic!()
        };
        rewrite(
            &mut q,
            &[Some(DataType::Float64), None],
            &crate::query::Scope::default(),
        )
        .unwrap();
        let sql = q.to_string();
        assert!(sql.contains("CAST($1 AS DOUBLE PRECISION) * 2"), "{sql}");
        assert!(sql.contains("$2 AS"), "{sql}");
    }
}
