//! `INSERT INTO table SELECT ...` into a table with a connector (Flink's
//! way to start a job): the query runs as a sink of the table's connector,
//! writing its rows into the table's topic, files or log.
//!
//! As in Flink, the query's columns go to the table's columns by position
//! (or to those of the column list, the others NULL), each cast to the
//! column's type where its type differs, under the column's name as the
//! table declares it (`dateTime`, the key a JSON record is written with).

use arrow::datatypes::{DataType, Schema};
use sqlparser::ast::{self, Spanned};

use crate::error::{sqlstate, Error, Result};
use crate::frontend::parser::{ColumnKind, CreateSource};

/// A column the INSERT writes: its name as declared, its type as declared
/// (SQL), and as bound (Arrow).
pub struct TargetColumn {
    pub name: String,
    pub declared: String,
    pub sql_type: ast::DataType,
    pub data_type: DataType,
    /// The type as records spell it: ROW fields named as declared
    /// (`emailAddress`), which is how they are written.
    pub written: DataType,
}

/// The columns of table `create` an INSERT writes (its physical ones;
/// computed columns are computed when it is read), with their bound types
/// from `physical`.
pub fn target_columns(create: &CreateSource, physical: &Schema) -> Vec<TargetColumn> {
    create
        .columns
        .iter()
        .filter_map(|c| match &c.kind {
            ColumnKind::Physical { data_type, .. } => Some((c, data_type)),
            ColumnKind::Computed(_) => None,
        })
        .zip(physical.fields())
        .map(|((c, sql_type), field)| TargetColumn {
            name: c.name.clone(),
            declared: c.declared.clone(),
            sql_type: sql_type.clone(),
            data_type: field.data_type().clone(),
            written: crate::frontend::types::declared_type(sql_type)
                .unwrap_or_else(|_| field.data_type().clone()),
        })
        .collect()
}

/// The query of an INSERT, refusing what a continuous INSERT cannot do.
pub fn query_of(insert: &ast::Insert, table: &str) -> Result<ast::Query> {
    let refuse = |what: &str| {
        Err(Error::not_supported(format!(
            "{what} is not supported for \"{table}\", a table with a connector: INSERT INTO {table} SELECT ... starts a job that writes into it"
        )))
    };
    if insert.overwrite {
        return refuse("INSERT OVERWRITE");
    }
    if insert.partitioned.is_some() {
        return refuse("INSERT INTO ... PARTITION (...)");
    }
    if insert.on.is_some() || insert.returning.is_some() {
        return refuse("ON CONFLICT and RETURNING");
    }
    match insert.source.as_deref() {
        None => refuse("INSERT without a query"),
        Some(q) if matches!(q.body.as_ref(), ast::SetExpr::Values(_)) => Err(Error::not_supported(
            format!("INSERT INTO \"{table}\" VALUES: a table with a connector takes the rows of a continuous query (INSERT INTO {table} SELECT ...); write the rows to its topic or files, or into an ordinary table"),
        )),
        Some(q) => Ok(q.clone()),
    }
}

/// The query's text in `sql` (the client's text, which may hold more
/// statements) and its 1-based position there, so that errors point into
/// the INSERT: from where the query starts to the end of its statement. Its
/// SQL form when the parser left no span.
pub fn query_text(query: &ast::Query, sql: &str) -> (String, Option<usize>) {
    let span = query.span();
    let Some(start) =
        crate::error::char_position(sql, span.start.line as usize, span.start.column as usize)
    else {
        return (query.to_string(), None);
    };
    let rest: String = sql.chars().skip(start - 1).collect();
    let Ok(tokens) =
        sqlparser::tokenizer::Tokenizer::new(crate::frontend::parser::dialect(), &rest)
            .tokenize_with_location()
    else {
        return (query.to_string(), None);
    };
    let mut depth = 0i32;
    let end = tokens.iter().find(|t| {
        match t.token {
            sqlparser::tokenizer::Token::LParen => depth += 1,
            sqlparser::tokenizer::Token::RParen => depth -= 1,
            _ => {}
        }
        depth == 0 && t.token == sqlparser::tokenizer::Token::SemiColon
    });
    let text = match end {
        Some(t) => {
            let end = crate::error::char_position(
                &rest,
                t.span.start.line as usize,
                t.span.start.column as usize,
            )
            .unwrap_or(rest.chars().count() + 1);
            rest.chars().take(end - 1).collect()
        }
        None => rest,
    };
    (text.trim_end().to_string(), Some(start))
}

/// The query with each item of its SELECT list named `_c<i>`, so that the
/// columns it gives may share names (`B.dateTime, A.dateTime`), as they may
/// in an INSERT: the table names them. None when its SELECT list has a `*`.
pub fn with_unique_names(query: &ast::Query) -> Option<ast::Query> {
    let mut query = query.clone();
    let ast::SetExpr::Select(select) = query.body.as_mut() else {
        return None;
    };
    for (i, item) in select.projection.iter_mut().enumerate() {
        let expr = match item {
            ast::SelectItem::UnnamedExpr(e) | ast::SelectItem::ExprWithAlias { expr: e, .. } => {
                e.clone()
            }
            _ => return None,
        };
        *item = ast::SelectItem::ExprWithAlias {
            expr,
            alias: ast::Ident::with_quote('"', format!("_c{i}")),
        };
    }
    Some(query)
}

/// Makes `query` give the target's columns: `produced` are its columns as
/// planned; `listed` the target columns an INSERT's column list names, in
/// its order (None: all, in order).
pub fn fit_to_target(
    query: &mut ast::Query,
    produced: &Schema,
    target: &[TargetColumn],
    listed: Option<&[usize]>,
    table: &str,
) -> Result<()> {
    let written: Vec<usize> = match listed {
        Some(l) => l.to_vec(),
        None => (0..target.len()).collect(),
    };
    if produced.fields().len() != written.len() {
        let what = match produced.fields().len() > written.len() {
            true => "more expressions than target columns",
            false => "more target columns than expressions",
        };
        return Err(Error::user(
            sqlstate::SYNTAX_ERROR,
            format!(
                "INSERT has {what}: the query gives {} columns, and \"{table}\" takes {}",
                produced.fields().len(),
                written.len()
            ),
        ));
    }
    let ast::SetExpr::Select(select) = query.body.as_mut() else {
        return Err(Error::not_supported(
            "INSERT INTO a table with a connector takes a SELECT (not a set operation) for now",
        ));
    };
    let exprs = expand_wildcards(&select.projection, produced)?;
    let mut items = Vec::with_capacity(target.len());
    for (i, column) in target.iter().enumerate() {
        let alias = ast::Ident::with_quote('"', column.declared.clone());
        let expr = match written.iter().position(|w| *w == i) {
            Some(p) => {
                let produced_type = produced.field(p).data_type();
                if produced_type.is_nested() {
                    respelled(exprs[p].clone(), produced_type, &column.written)
                } else if same_type(produced_type, &column.data_type) {
                    exprs[p].clone()
                } else {
                    cast(exprs[p].clone(), &column.sql_type)
                }
            }
            None => cast(ast::Expr::value(ast::Value::Null), &column.sql_type),
        };
        items.push(ast::SelectItem::ExprWithAlias { expr, alias });
    }
    select.projection = items;
    Ok(())
}

/// Whether a value of `a` is written as one of `b` without a cast. Nested
/// types are not cast: their fields go by name.
fn same_type(a: &DataType, b: &DataType) -> bool {
    a == b || a.is_nested() || b.is_nested()
}

/// `expr`, a value of `produced`, with the fields of its ROWs (at any
/// depth) named as in `written`, position by position, as Flink writes a
/// ROW into a ROW column: `ROW(a, b)` into `ROW<id, emailAddress>` is
/// written `{"id": .., "emailAddress": ..}`. A NULL ROW stays NULL.
fn respelled(expr: ast::Expr, produced: &DataType, written: &DataType) -> ast::Expr {
    let (DataType::Struct(from), DataType::Struct(to)) = (produced, written) else {
        return expr;
    };
    if from.len() != to.len() || produced == written {
        return expr;
    }
    let call = crate::frontend::parser::function_call;
    let text = |s: &str| ast::Expr::value(ast::Value::SingleQuotedString(s.to_string()));
    let mut args = Vec::with_capacity(2 * to.len());
    for (f, t) in from.iter().zip(to.iter()) {
        let field = call("get_field", vec![expr.clone(), text(f.name())]);
        args.push(text(t.name()));
        args.push(respelled(field, f.data_type(), t.data_type()));
    }
    ast::Expr::Case {
        case_token: ast::helpers::attached_token::AttachedToken::empty(),
        end_token: ast::helpers::attached_token::AttachedToken::empty(),
        operand: None,
        conditions: vec![ast::CaseWhen {
            condition: ast::Expr::IsNull(Box::new(expr)),
            result: ast::Expr::value(ast::Value::Null),
        }],
        else_result: Some(Box::new(call("named_struct", args))),
    }
}

fn cast(expr: ast::Expr, data_type: &ast::DataType) -> ast::Expr {
    ast::Expr::Cast {
        kind: ast::CastKind::Cast,
        expr: Box::new(expr),
        data_type: data_type.clone(),
        array: false,
        format: None,
    }
}

/// The SELECT list's expressions, one per produced column: a `*` (or
/// `t.*`) stands for the columns it gives, which `produced` names.
fn expand_wildcards(items: &[ast::SelectItem], produced: &Schema) -> Result<Vec<ast::Expr>> {
    let wildcards = items
        .iter()
        .filter(|i| {
            matches!(
                i,
                ast::SelectItem::Wildcard(_) | ast::SelectItem::QualifiedWildcard(..)
            )
        })
        .count();
    if wildcards > 1 {
        return Err(Error::not_supported(
            "INSERT INTO a table with a connector takes at most one * in its SELECT list; name the columns",
        ));
    }
    let spread = produced.fields().len() + 1 - items.len();
    let mut out = Vec::with_capacity(produced.fields().len());
    for item in items {
        match item {
            ast::SelectItem::UnnamedExpr(e) | ast::SelectItem::ExprWithAlias { expr: e, .. } => {
                out.push(e.clone())
            }
            ast::SelectItem::ExprWithAliases { expr, .. } => out.push(expr.clone()),
            ast::SelectItem::Wildcard(_) | ast::SelectItem::QualifiedWildcard(..) => {
                let qualifier = match item {
                    ast::SelectItem::QualifiedWildcard(
                        ast::SelectItemQualifiedWildcardKind::ObjectName(name),
                        _,
                    ) => Some(name.0.clone()),
                    _ => None,
                };
                for field in produced.fields().iter().skip(out.len()).take(spread) {
                    let ident = ast::Ident::with_quote('"', field.name().clone());
                    out.push(match &qualifier {
                        None => ast::Expr::Identifier(ident),
                        Some(parts) => {
                            let mut idents: Vec<ast::Ident> =
                                parts.iter().filter_map(|p| p.as_ident().cloned()).collect();
                            idents.push(ident);
                            ast::Expr::CompoundIdentifier(idents)
                        }
                    });
                }
            }
        }
    }
    Ok(out)
}

/// The options of a sink that writes into table `create`: those of its
/// connector's that concern writing (a Kafka table's `scan.*` options are
/// for reading it), and a filesystem table's partition columns. An
/// upsert-kafka table is written by a Kafka sink keyed by its primary key.
pub fn sink_options(create: &CreateSource) -> Result<Vec<(String, String)>> {
    let connector = create
        .options
        .iter()
        .find(|(k, _)| k == "connector")
        .map(|(_, v)| v.to_ascii_lowercase())
        .unwrap_or_default();
    let writes = |key: &str| match connector.as_str() {
        "kafka" => {
            matches!(
                key,
                "connector" | "topic" | "format" | "key.format" | "key.fields"
            ) || key.starts_with("properties.")
                || key.starts_with("sink.")
        }
        "upsert-kafka" => {
            matches!(key, "topic" | "key.format")
                || key.starts_with("properties.")
                || key.starts_with("sink.")
        }
        "filesystem" => {
            matches!(
                key,
                "connector" | "path" | "format" | "csv.field-delimiter" | "csv.quote-character"
            ) || key.starts_with("sink.")
                || key.starts_with("partition.")
        }
        "print" | "blackhole" => true,
        _ => false,
    };
    if !matches!(
        connector.as_str(),
        "kafka" | "upsert-kafka" | "filesystem" | "print" | "blackhole"
    ) {
        return Err(Error::not_supported(format!(
            "INSERT INTO a {connector} table is not supported: Sluice writes into kafka, upsert-kafka, filesystem, print and blackhole tables"
        )));
    }
    let mut options: Vec<(String, String)> = create
        .options
        .iter()
        .filter(|(k, _)| writes(k))
        .cloned()
        .collect();
    if connector == "upsert-kafka" {
        options.insert(0, ("connector".into(), "kafka".into()));
        options.push((
            "key.fields".into(),
            declared(create, &create.primary_key).join(";"),
        ));
    }
    if !create.partitioned_by.is_empty() {
        let columns: Vec<String> = create
            .partitioned_by
            .iter()
            .map(|(c, _)| c.clone())
            .collect();
        options.push((
            "partition.columns".into(),
            declared(create, &columns).join(","),
        ));
    }
    Ok(options)
}

/// Columns `names` (SQL names) as table `create` declares them.
fn declared(create: &CreateSource, names: &[String]) -> Vec<String> {
    names
        .iter()
        .map(|c| {
            create
                .columns
                .iter()
                .find(|d| &d.name == c)
                .map_or(c.clone(), |d| d.declared.clone())
        })
        .collect()
}
