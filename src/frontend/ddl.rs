//! Binds `CREATE TABLE/SOURCE` to a validated source definition: Arrow
//! types for the declared columns, typed computed columns, the event-time
//! column and its watermark, and the connector options.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::{DFSchema, DFSchemaRef};
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::Expr;
use sqlparser::ast::{self, Spanned};

use crate::connector::datagen::DEFAULT_COLUMNS;
use crate::connector::SourceSpec;
use crate::dataflow::plan::{ColumnSource, Rowtime, SourcePlan};
use crate::error::{sqlstate, Error, Result};
use crate::frontend::parser::{self, ColumnKind, CreateSource, Statement};
use crate::frontend::types::{arrow_type, declared_type, sql_name};

/// Binds a parsed `CREATE TABLE` (whose text is `sql`) to a source plan.
pub fn bind_source(state: &SessionState, create: &CreateSource, sql: &str) -> Result<SourcePlan> {
    refuse_legacy_options(&create.options)?;
    let create = with_default_columns(create)?;
    if create.columns.is_empty() {
        return Err(Error::syntax(format!(
            "table \"{}\" needs at least one column",
            create.name
        ))
        .at(create.name_position));
    }
    // Physical columns, then computed ones over them.
    let mut physical_fields = Vec::new();
    let mut declared_fields = Vec::new();
    for c in &create.columns {
        if let ColumnKind::Physical {
            data_type,
            not_null,
        } = &c.kind
        {
            let t = arrow_type(data_type).map_err(|e| e.at(c.position))?;
            physical_fields.push(Field::new(&c.name, t, !*not_null));
            let t = declared_type(data_type).map_err(|e| e.at(c.position))?;
            declared_fields.push(Field::new(&c.declared, t, !*not_null));
        }
    }
    check_unique(&create)?;
    let physical: SchemaRef = Arc::new(Schema::new(physical_fields));
    let declared: SchemaRef = Arc::new(Schema::new(declared_fields));
    let physical_df: DFSchemaRef = Arc::new(DFSchema::try_from_qualified_schema(
        create.name.as_str(),
        &physical,
    )?);
    let mut fields = Vec::new();
    let mut columns = Vec::new();
    let mut physical_index = 0;
    for c in &create.columns {
        match &c.kind {
            ColumnKind::Physical { .. } => {
                fields.push(physical.field(physical_index).clone());
                columns.push(ColumnSource::Physical(physical_index));
                physical_index += 1;
            }
            ColumnKind::Computed(ast_expr) => {
                let pos = expr_position(sql, ast_expr);
                let expr = to_logical(state, ast_expr, &physical_df, sql, pos)
                    .map_err(|e| e.context(format!("in computed column \"{}\"", c.name)))?;
                let t = expr_type(state, &expr, &physical_df, sql, pos)?;
                fields.push(Field::new(&c.name, t, true));
                columns.push(ColumnSource::Computed {
                    expr,
                    sql: ast_expr.to_string(),
                });
            }
        }
    }
    let schema: SchemaRef = Arc::new(Schema::new(fields));
    let schema_df: DFSchemaRef = Arc::new(DFSchema::try_from_qualified_schema(
        create.name.as_str(),
        &schema,
    )?);
    let rowtime = match &create.watermark {
        None => None,
        Some(wm) => {
            let index = schema.index_of(&wm.column).map_err(|_| {
                Error::undefined_column(&wm.column)
                    .context("in WATERMARK FOR")
                    .at(wm.position)
            })?;
            let t = schema.field(index).data_type();
            if !matches!(t, DataType::Timestamp(..)) {
                return Err(Error::user(
                    sqlstate::DATATYPE_MISMATCH,
                    format!(
                        "the event time column \"{}\" must be a TIMESTAMP or TIMESTAMP_LTZ, not {}",
                        wm.column,
                        sql_name(t)
                    ),
                )
                .with_hint("declare it as TIMESTAMP(3), or compute one: ts AS TO_TIMESTAMP_LTZ(epoch_millis, 3)")
                .at(wm.position));
            }
            let pos = expr_position(sql, &wm.expr);
            let expr = to_logical(state, &wm.expr, &schema_df, sql, pos)
                .map_err(|e| e.context("in WATERMARK FOR"))?;
            let wt = expr_type(state, &expr, &schema_df, sql, pos)?;
            if !matches!(wt, DataType::Timestamp(..)) {
                return Err(Error::user(
                    sqlstate::DATATYPE_MISMATCH,
                    format!(
                        "the watermark expression must be a timestamp, not {}",
                        sql_name(&wt)
                    ),
                )
                .at(pos));
            }
            Some(Rowtime {
                column: wm.column.clone(),
                index,
                watermark: expr,
                watermark_sql: wm.expr.to_string(),
            })
        }
    };
    // `pt AS PROCTIME()`: the processing-time column.
    let proctime = create.columns.iter().position(|c| match &c.kind {
        ColumnKind::Computed(e) => matches!(
            e.as_ref(),
            ast::Expr::Function(f) if f.name.to_string().eq_ignore_ascii_case("proctime")
        ),
        _ => false,
    });
    if let (Some(p), Some(rt)) = (proctime, &rowtime) {
        if p == rt.index {
            return Err(Error::user(
                sqlstate::INVALID_COLUMN_DEFINITION,
                format!(
                    "\"{}\" is a processing-time column (PROCTIME()): it cannot have a watermark",
                    rt.column
                ),
            ));
        }
    }
    let spec = SourceSpec::from_options(&create.options, &physical)?;
    for (column, position) in &create.partitioned_by {
        if !matches!(
            spec.connector,
            crate::connector::ConnectorSpec::Filesystem(_)
        ) {
            return Err(Error::not_supported(format!(
                "PARTITIONED BY is for filesystem tables, and \"{}\" is a {} table",
                create.name,
                spec.connector.name()
            ))
            .at(*position));
        }
        if physical.index_of(column).is_err() {
            return Err(Error::undefined_column(column)
                .context("in PARTITIONED BY")
                .at(*position));
        }
    }
    Ok(SourcePlan {
        proctime,
        name: create.name.clone(),
        spec,
        physical,
        declared,
        physical_df,
        schema,
        schema_df,
        columns,
        rowtime,
    })
}

/// Flink's legacy connector options that the parser does not translate
/// (those of connectors other than the filesystem's, see
/// `parser::current_options`) are refused, naming the options to write
/// instead.
pub fn refuse_legacy_options(options: &[(String, String)]) -> Result<()> {
    let Some((key, value)) = options
        .iter()
        .find(|(k, _)| k.starts_with("connector.") || k.starts_with("format."))
    else {
        return Ok(());
    };
    Err(Error::not_supported(format!(
        "'{key}' = '{value}' is one of Flink's legacy connector options, of which only the filesystem's are read ('connector.type', 'connector.path', 'format.type', ...); write the current ones, such as 'connector' = 'kafka', 'topic' = '...', 'format' = 'json'"
    )))
}

/// An ordinary table as bound: its columns and primary key.
#[derive(Debug, Clone)]
pub struct TableDef {
    pub name: String,
    pub schema: SchemaRef,
    /// The columns as the statement spells them, which is how records (an
    /// upsert-kafka table's JSON objects) name them.
    pub declared: SchemaRef,
    /// The primary key's columns.
    pub key: Vec<usize>,
}

/// Whether a `CREATE TABLE` declares a table of rows by key: an ordinary
/// table (no connector), or one kept up to date from a changelog topic
/// (`'connector' = 'upsert-kafka'`).
pub fn is_keyed_table(create: &CreateSource) -> bool {
    match create.options.iter().find(|(k, _)| k == "connector") {
        None => true,
        Some((_, v)) => v.eq_ignore_ascii_case("upsert-kafka"),
    }
}

/// Binds `CREATE TABLE name (columns, PRIMARY KEY (...))` without a
/// connector (reference data changed by INSERT, UPDATE and DELETE) or with
/// the upsert-kafka connector (whose options its loader checks).
pub fn bind_table(create: &CreateSource) -> Result<TableDef> {
    refuse_legacy_options(&create.options)?;
    if let Some((_, position)) = create.partitioned_by.first() {
        return Err(Error::not_supported(format!(
            "PARTITIONED BY is for filesystem tables, and \"{}\" is a keyed table",
            create.name
        ))
        .at(*position));
    }
    let upsert = create.options.iter().any(|(k, _)| k == "connector");
    if !upsert && !create.options.is_empty() {
        return Err(Error::invalid_parameter(format!(
            "table \"{}\" has options but no 'connector': add WITH ('connector' = 'kafka' | 'filesystem' | 'datagen', ...) for a source, or no options for an ordinary table",
            create.name
        ))
        .at(create.name_position));
    }
    if !create.has_column_list || create.columns.is_empty() {
        return Err(Error::syntax(format!(
            "table \"{}\" needs at least one column",
            create.name
        ))
        .at(create.name_position));
    }
    check_unique(create)?;
    if create.watermark.is_some() {
        return Err(Error::not_supported(format!(
            "table \"{}\" has no connector: an ordinary table holds reference data and has no watermark",
            create.name
        )));
    }
    let mut fields = Vec::new();
    let mut declared = Vec::new();
    for c in &create.columns {
        match &c.kind {
            ColumnKind::Physical {
                data_type,
                not_null,
            } => {
                let t = arrow_type(data_type).map_err(|e| e.at(c.position))?;
                let key = create.primary_key.contains(&c.name);
                fields.push(Field::new(&c.name, t, !*not_null && !key));
                let t = declared_type(data_type).map_err(|e| e.at(c.position))?;
                declared.push(Field::new(&c.declared, t, !*not_null && !key));
            }
            ColumnKind::Computed(_) => {
                return Err(Error::not_supported(format!(
                    "computed column \"{}\": an ordinary table has stored columns only",
                    c.name
                ))
                .at(c.position))
            }
        }
    }
    if create.primary_key.is_empty() {
        return Err(Error::not_supported(format!(
            "table \"{}\" needs a PRIMARY KEY: ordinary tables are keyed reference data",
            create.name
        ))
        .at(create.name_position)
        .with_hint("declare it on a column (cell_id STRING PRIMARY KEY) or after them (PRIMARY KEY (a, b))"));
    }
    let schema: SchemaRef = Arc::new(Schema::new(fields));
    let key = create
        .primary_key
        .iter()
        .map(|k| {
            schema
                .index_of(k)
                .map_err(|_| Error::undefined_column(k).context("in the primary key"))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(TableDef {
        name: create.name.clone(),
        schema,
        declared: Arc::new(Schema::new(declared)),
        key,
    })
}

/// A datagen table may omit its column list: it then has the telecom
/// call-record columns.
fn with_default_columns(create: &CreateSource) -> Result<CreateSource> {
    if create.has_column_list {
        return Ok(create.clone());
    }
    let is_datagen = create
        .options
        .iter()
        .any(|(k, v)| k == "connector" && v.eq_ignore_ascii_case("datagen"));
    if !is_datagen {
        return Err(Error::syntax(format!(
            "table \"{}\" needs a column list; only datagen tables may omit it",
            create.name
        ))
        .at(create.name_position));
    }
    let template = parser::parse_one(&format!(
        "CREATE TABLE t ({DEFAULT_COLUMNS}) WITH ('connector' = 'datagen')"
    ))?;
    let Statement::CreateSource(template) = template.statement else {
        return Err(Error::internal(
            "the default datagen columns do not parse as a table",
        ));
    };
    let mut out = create.clone();
    out.columns = template.columns;
    out.watermark = template.watermark;
    out.has_column_list = true;
    Ok(out)
}

fn check_unique(create: &CreateSource) -> Result<()> {
    for (i, c) in create.columns.iter().enumerate() {
        if create.columns[..i].iter().any(|o| o.name == c.name) {
            return Err(Error::user(
                sqlstate::AMBIGUOUS_COLUMN,
                format!("column \"{}\" specified more than once", c.name),
            )
            .at(c.position));
        }
    }
    Ok(())
}

/// The 1-based character position of an expression in `sql`.
pub fn expr_position(sql: &str, expr: &ast::Expr) -> Option<usize> {
    let span = expr.span();
    crate::error::char_position(sql, span.start.line as usize, span.start.column as usize)
}

fn to_logical(
    state: &SessionState,
    expr: &ast::Expr,
    schema: &DFSchema,
    sql: &str,
    pos: Option<usize>,
) -> Result<Expr> {
    state
        .create_logical_expr_from_sql_expr(
            ast::ExprWithAlias {
                expr: expr.clone(),
                alias: None,
            },
            schema,
        )
        .map_err(|e| Error::from_datafusion(e, sql).at(pos))
}

/// The type of `expr` over `schema`, after DataFusion's type coercion.
fn expr_type(
    state: &SessionState,
    expr: &Expr,
    schema: &DFSchemaRef,
    sql: &str,
    pos: Option<usize>,
) -> Result<DataType> {
    let physical = state
        .create_physical_expr(expr.clone(), schema)
        .map_err(|e| Error::from_datafusion(e, sql).at(pos))?;
    physical
        .data_type(schema.as_arrow())
        .map_err(|e| Error::from_datafusion(e, sql).at(pos))
}

#[cfg(test)]
mod tests {
    use arrow::datatypes::TimeUnit;

    use super::*;
    use crate::frontend::parser::parse_one;

    fn bind(sql: &str) -> Result<SourcePlan> {
        let p = parse_one(sql)?;
        let Statement::CreateSource(c) = p.statement else {
            panic!()
        };
        let ctx = crate::functions::session_context();
        bind_source(&ctx.state(), &c, sql)
    }

    #[test]
    fn binds_the_flink_calls_table() {
        let s = bind(
            "CREATE TABLE calls (event_time BIGINT, cell_id STRING, ts AS TO_TIMESTAMP_LTZ(event_time, 3), \
             WATERMARK FOR ts AS ts - INTERVAL '5' SECOND) WITH ('connector' = 'datagen')",
        )
        .unwrap();
        assert_eq!(s.physical.fields().len(), 2);
        assert_eq!(s.schema.fields().len(), 3);
        assert_eq!(
            s.schema.field(2).data_type(),
            &DataType::Timestamp(
                TimeUnit::Millisecond,
                Some(crate::frontend::types::UTC.into())
            )
        );
        assert_eq!(s.rowtime.as_ref().unwrap().index, 2);
    }

    #[test]
    fn datagen_without_columns_gets_the_telecom_schema() {
        let s = bind("CREATE TABLE calls WITH ('connector' = 'datagen')").unwrap();
        let names: Vec<&str> = s
            .schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        assert_eq!(
            names,
            vec![
                "event_time",
                "cell_id",
                "msisdn",
                "status",
                "duration_ms",
                "ts"
            ]
        );
    }

    #[test]
    fn errors_name_the_problem_and_the_place() {
        let sql = "CREATE TABLE t (a BIGINT, ts AS TO_TIMESTAMP_LTZ(b, 3)) WITH ('connector' = 'datagen')";
        let err = bind(sql).unwrap_err();
        assert_eq!(err.sqlstate(), "42703");
        assert!(
            err.to_string().contains("column \"b\" does not exist"),
            "{err}"
        );
        assert_eq!(err.position(), Some(sql.find("b, 3").unwrap() + 1));

        let sql = "CREATE TABLE t (a BIGINT, WATERMARK FOR a AS a) WITH ('connector' = 'datagen')";
        let err = bind(sql).unwrap_err();
        assert_eq!(err.sqlstate(), "42804");

        let err = bind("CREATE TABLE t (a BIGINT) WITH ('connector' = 'kafka', 'topic' = 'x')")
            .unwrap_err();
        assert_eq!(err.sqlstate(), "22023");
        assert!(
            err.to_string().contains("properties.bootstrap.servers"),
            "{err}"
        );

        let err =
            bind("CREATE TABLE t (a BIGINT) WITH ('connector' = 'datagen', 'rows-per-sec' = '5')")
                .unwrap_err();
        assert!(
            err.to_string().contains("unknown option 'rows-per-sec'"),
            "{err}"
        );
    }
}
