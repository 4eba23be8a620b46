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
//!   are the session's user, as a literal.
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

/// Applies the rules above to a query statement; returns the display names
/// of its result's columns, if they could be told without planning.
pub fn rewrite(
    statement: &mut ast::Statement,
    declared: &[Option<DataType>],
    scope: &super::Scope,
) -> Names {
    let _ = statement.visit(&mut Aliases);
    let _ = statement.visit(&mut SessionValues { scope });
    let _ = statement.visit(&mut LikeEscapes);
    if declared.iter().any(Option::is_some) {
        let _ = statement.visit(&mut TypedParameters { declared });
    }
    let query = match statement {
        ast::Statement::Query(q) => q,
        _ => return Names(None),
    };
    Names(top_level_names(&mut query.body))
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
}

impl VisitorMut for SessionValues<'_> {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        let Expr::Function(f) = expr else {
            return ControlFlow::Continue(());
        };
        let no_arguments = match &f.args {
            ast::FunctionArguments::None => true,
            ast::FunctionArguments::List(l) => l.args.is_empty(),
            ast::FunctionArguments::Subquery(_) => false,
        };
        let name = f.name.to_string().to_ascii_lowercase();
        let name = name.trim_start_matches("pg_catalog.");
        if no_arguments
            && matches!(
                name,
                "current_user" | "session_user" | "user" | "current_role"
            )
        {
            *expr = Expr::Value(Value::SingleQuotedString(self.scope.user.clone()).into());
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
        let n = rewrite(&mut q, &[], &crate::query::Scope::default());
        (q.to_string(), n.0)
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
    fn declared_parameters_are_cast() {
        let parsed = crate::frontend::parser::parse_one("SELECT $1 * 2, $2").unwrap();
        let crate::frontend::parser::Statement::Query(mut q) = parsed.statement else {
            panic!()
        };
        rewrite(
            &mut q,
            &[Some(DataType::Float64), None],
            &crate::query::Scope::default(),
        );
        let sql = q.to_string();
        assert!(sql.contains("CAST($1 AS DOUBLE PRECISION) * 2"), "{sql}");
        assert!(sql.contains("$2 AS"), "{sql}");
    }
}
