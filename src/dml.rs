//! INSERT, UPDATE and DELETE on ordinary tables.
//!
//! DataFusion does the SQL: an INSERT's rows are its query's result; an
//! UPDATE's new rows are `SELECT <SET expressions or the old columns> FROM t
//! WHERE ...`; a DELETE's keys are `SELECT * FROM t WHERE ...`, all run by
//! the query engine over the table's rows as the statement's transaction
//! sees them. Each statement becomes one [`Change`], which the session
//! applies to the table at once, or keeps in its transaction until COMMIT
//! (see `state/reference.rs`). Statements on tables are serialized with
//! DDL, so an UPDATE's rows cannot change between its SELECT and its write.

use std::sync::Arc;

use arrow::array::{new_null_array, ArrayRef, RecordBatch};
use arrow::compute::{cast_with_options, concat_batches, CastOptions};
use arrow::datatypes::{DataType, SchemaRef};
use sqlparser::ast;

use crate::error::{sqlstate, Error, Result};
use crate::frontend::parser::{self, Statement};
use crate::query::{QueryEngine, Scope};
use crate::state::reference::{Change, ReferenceTable};

/// A DML statement made ready: the table, the change it makes, and its
/// command tag.
pub struct Planned {
    pub table: String,
    pub tag: &'static str,
    pub change: Change,
}

/// The name a DML statement changes.
pub fn target(statement: &ast::Statement) -> Result<String> {
    let name = match statement {
        ast::Statement::Insert(insert) => match &insert.table {
            ast::TableObject::TableName(name) => name.clone(),
            other => {
                return Err(Error::not_supported(format!(
                    "INSERT INTO {other} is not supported"
                )))
            }
        },
        ast::Statement::Update(update) => match &update.table.relation {
            ast::TableFactor::Table { name, .. } if update.table.joins.is_empty() => name.clone(),
            _ => return Err(Error::not_supported("UPDATE of a join is not supported")),
        },
        ast::Statement::Delete(delete) => {
            let (ast::FromTable::WithFromKeyword(tables) | ast::FromTable::WithoutKeyword(tables)) =
                &delete.from;
            match tables.as_slice() {
                [t] if t.joins.is_empty() => match &t.relation {
                    ast::TableFactor::Table { name, .. } => name.clone(),
                    _ => {
                        return Err(Error::not_supported(
                            "DELETE from this relation is not supported",
                        ))
                    }
                },
                _ => {
                    return Err(Error::not_supported(
                        "DELETE from several tables is not supported",
                    ))
                }
            }
        }
        _ => return Err(Error::internal("not a DML statement")),
    };
    Ok(parser::normalize_object_name(&name))
}

/// Makes the change of an INSERT, UPDATE or DELETE on `table` (named
/// `name`), reading the tables as `scope` shows them. `params` are the
/// values of `$1..$n`.
pub async fn plan(
    engine: &QueryEngine,
    scope: &Scope,
    table: &Arc<ReferenceTable>,
    name: &str,
    statement: &ast::Statement,
    params: &crate::query::Parameters,
) -> Result<Planned> {
    let query = |sql: String| async move { query(engine, scope, &sql, params).await };
    match statement {
        ast::Statement::Insert(insert) => {
            refuse(insert.returning.is_some(), "INSERT ... RETURNING")?;
            refuse(insert.on.is_some(), "INSERT ... ON CONFLICT")?;
            let Some(source) = &insert.source else {
                return Err(Error::not_supported("INSERT without VALUES or a query"));
            };
            let rows = query(source.to_string()).await?;
            let columns: Vec<String> = insert
                .columns
                .iter()
                .map(parser::normalize_object_name)
                .collect();
            let rows = conform(&rows, &columns, table.schema(), name)?;
            Ok(Planned {
                table: name.to_string(),
                // Postgres's tag: INSERT oid rows.
                tag: "INSERT 0",
                change: Change::Insert(rows),
            })
        }
        ast::Statement::Update(update) => {
            refuse(update.returning.is_some(), "UPDATE ... RETURNING")?;
            refuse(update.from.is_some(), "UPDATE ... FROM")?;
            let schema = table.schema();
            let mut set: Vec<Option<String>> = vec![None; schema.fields().len()];
            for a in &update.assignments {
                let ast::AssignmentTarget::ColumnName(column) = &a.target else {
                    return Err(Error::not_supported("UPDATE of a tuple of columns"));
                };
                let column = parser::normalize_object_name(column);
                let i = schema
                    .index_of(&column)
                    .map_err(|_| Error::undefined_column(&column))?;
                if table.key().contains(&i) {
                    return Err(Error::not_supported(format!(
                        "UPDATE of the primary key column \"{column}\" is not supported; DELETE the row and INSERT it again"
                    )));
                }
                set[i] = Some(a.value.to_string());
            }
            let list: Vec<String> = schema
                .fields()
                .iter()
                .zip(&set)
                .map(|(f, value)| {
                    let column = quote(f.name());
                    match value {
                        Some(v) => format!("({v}) AS {column}"),
                        None => column,
                    }
                })
                .collect();
            let rows = query(format!(
                "SELECT {} FROM {}{}",
                list.join(", "),
                quote(name),
                where_clause(&update.selection)
            ))
            .await?;
            let rows = conform(&rows, &[], schema, name)?;
            Ok(Planned {
                table: name.to_string(),
                tag: "UPDATE",
                change: Change::Upsert(rows),
            })
        }
        ast::Statement::Delete(delete) => {
            refuse(delete.returning.is_some(), "DELETE ... RETURNING")?;
            refuse(delete.using.is_some(), "DELETE ... USING")?;
            let rows = query(format!(
                "SELECT * FROM {}{}",
                quote(name),
                where_clause(&delete.selection)
            ))
            .await?;
            let rows = conform(&rows, &[], table.schema(), name)?;
            Ok(Planned {
                table: name.to_string(),
                tag: "DELETE",
                change: Change::DeleteKeys(table.key_columns_of(&rows)),
            })
        }
        _ => Err(Error::internal("not a DML statement")),
    }
}

/// The types of an INSERT's, UPDATE's or DELETE's `$1..$n`, as Postgres
/// infers them: declared by the client, else the type of the column a
/// parameter is inserted into or set to, else what the statement's WHERE
/// (planned as a query) tells, else unknown (None: text).
pub async fn parameter_types(
    engine: &QueryEngine,
    db: &crate::database::Database,
    statement: &ast::Statement,
    declared: &[Option<DataType>],
) -> Result<Vec<Option<DataType>>> {
    let name = target(statement)?;
    let table = db.ordinary_table(&name)?;
    let schema = table.schema().clone();
    let mut types: Vec<Option<DataType>> = declared.to_vec();
    let mut set = |expr: &ast::Expr, column: Option<&str>| {
        let (Some(n), Some(column)) = (placeholder_number(expr), column) else {
            return;
        };
        if let Ok(field) = schema.field_with_name(column) {
            if types.len() < n {
                types.resize(n, None);
            }
            if types[n - 1].is_none() {
                types[n - 1] = Some(field.data_type().clone());
            }
        }
    };
    let mut selection = None;
    match statement {
        ast::Statement::Insert(insert) => {
            let columns: Vec<String> = if insert.columns.is_empty() {
                schema.fields().iter().map(|f| f.name().clone()).collect()
            } else {
                insert
                    .columns
                    .iter()
                    .map(parser::normalize_object_name)
                    .collect()
            };
            if let Some(ast::SetExpr::Values(values)) =
                insert.source.as_ref().map(|q| q.body.as_ref())
            {
                for row in &values.rows {
                    for (expr, column) in row.iter().zip(&columns) {
                        set(expr, Some(column));
                    }
                }
            }
        }
        ast::Statement::Update(update) => {
            for a in &update.assignments {
                if let ast::AssignmentTarget::ColumnName(column) = &a.target {
                    set(&a.value, Some(&parser::normalize_object_name(column)));
                }
            }
            selection = update.selection.clone();
        }
        ast::Statement::Delete(delete) => selection = delete.selection.clone(),
        _ => {}
    }
    if let Some(selection) = selection {
        let sql = format!("SELECT 1 FROM {} WHERE {selection}", quote(&name));
        let parsed = parser::parse_one(&sql).map_err(|e| e.without_position())?;
        if let Statement::Query(query) = parsed.statement {
            let planned = engine
                .plan(&query, &sql, &Scope::default(), &types)
                .await
                .map_err(|e| e.without_position())?;
            for (i, t) in planned.parameter_types()?.into_iter().enumerate() {
                if types.len() <= i {
                    types.resize(i + 1, None);
                }
                if types[i].is_none() {
                    types[i] = t;
                }
            }
        }
    }
    // Parameters elsewhere (in the VALUES' expressions, a SET's
    // expression): at least as many as the statement names.
    let highest = highest_placeholder(statement);
    if types.len() < highest {
        types.resize(highest, None);
    }
    Ok(types)
}

/// `n` of an expression that is exactly `$n`.
fn placeholder_number(expr: &ast::Expr) -> Option<usize> {
    match expr {
        ast::Expr::Value(v) => match &v.value {
            ast::Value::Placeholder(p) => p.strip_prefix('$')?.parse().ok().filter(|n| *n > 0),
            _ => None,
        },
        _ => None,
    }
}

/// The highest `$n` a statement names.
fn highest_placeholder(statement: &ast::Statement) -> usize {
    use sqlparser::ast::Visit;
    struct Highest(usize);
    impl ast::Visitor for Highest {
        type Break = ();
        fn pre_visit_expr(&mut self, expr: &ast::Expr) -> std::ops::ControlFlow<()> {
            if let Some(n) = placeholder_number(expr) {
                self.0 = self.0.max(n);
            }
            std::ops::ControlFlow::Continue(())
        }
    }
    let mut h = Highest(0);
    let _ = statement.visit(&mut h);
    h.0
}

fn refuse(present: bool, what: &str) -> Result<()> {
    if present {
        return Err(Error::not_supported(format!("{what} is not supported")));
    }
    Ok(())
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn where_clause(selection: &Option<ast::Expr>) -> String {
    selection
        .as_ref()
        .map(|e| format!(" WHERE {e}"))
        .unwrap_or_default()
}

/// Runs a query made from parts of the user's statement. Its positions
/// would point into the made-up text, so errors carry none.
async fn query(
    engine: &QueryEngine,
    scope: &Scope,
    sql: &str,
    params: &crate::query::Parameters,
) -> Result<RecordBatch> {
    let strip = |e: Error| e.without_position();
    let parsed = parser::parse_one(sql).map_err(strip)?;
    let Statement::Query(statement) = parsed.statement else {
        return Err(Error::internal(format!("\"{sql}\" is not a query")));
    };
    let planned = engine
        .plan(&statement, sql, scope, &params.declared)
        .await
        .and_then(|p| p.bind(params.values.clone(), sql))
        .map_err(strip)?;
    let (schema, batches) = engine.execute(planned, sql, scope).await.map_err(strip)?;
    Ok(concat_batches(&schema, &batches)?)
}

/// The rows as the table's rows: by position, or into the named `columns`
/// (the others null); each cast to its column's type.
pub(crate) fn conform(
    rows: &RecordBatch,
    columns: &[String],
    schema: &SchemaRef,
    table: &str,
) -> Result<RecordBatch> {
    let given = if columns.is_empty() {
        schema.fields().len()
    } else {
        columns.len()
    };
    if rows.num_columns() != given {
        return Err(Error::user(
            sqlstate::SYNTAX_ERROR,
            format!(
                "INSERT has {} expressions but \"{table}\" takes {given} columns",
                rows.num_columns()
            ),
        ));
    }
    let mut out: Vec<Option<ArrayRef>> = vec![None; schema.fields().len()];
    for (j, column) in rows.columns().iter().enumerate() {
        let i = match columns.get(j) {
            None => j,
            Some(name) => schema
                .index_of(name)
                .map_err(|_| Error::undefined_column(name).context(format!("in \"{table}\"")))?,
        };
        let field = schema.field(i);
        let cast = cast_with_options(
            column,
            field.data_type(),
            &CastOptions {
                safe: false,
                ..Default::default()
            },
        )
        .map_err(|e| {
            Error::user(
                sqlstate::DATATYPE_MISMATCH,
                format!(
                    "column \"{}\" of \"{table}\" is {}: {e}",
                    field.name(),
                    crate::frontend::types::sql_name(field.data_type())
                ),
            )
        })?;
        out[i] = Some(cast);
    }
    let arrays: Vec<ArrayRef> = out
        .into_iter()
        .zip(schema.fields())
        .map(|(a, f)| a.unwrap_or_else(|| new_null_array(f.data_type(), rows.num_rows())))
        .collect();
    for (a, f) in arrays.iter().zip(schema.fields()) {
        if !f.is_nullable() && a.null_count() > 0 {
            return Err(Error::user(
                "23502",
                format!(
                    "null value in column \"{}\" of \"{table}\" violates not-null constraint",
                    f.name()
                ),
            ));
        }
    }
    Ok(RecordBatch::try_new(schema.clone(), arrays)?)
}
