//! A connection's session: runs parsed statements against the database.
//!
//! Statements are parsed once (`frontend::parser`) and matched here by kind;
//! the wire server only translates between the protocol and [`Outcome`]s.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::LogicalPlan;
use sqlparser::ast;

use crate::database::Database;
use crate::error::{Error, Result};
use crate::frontend::parser::{ObjectKind, Parsed, Statement, TransactionOp};

/// What a statement produced.
pub enum Outcome {
    Rows {
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
    },
    /// A command tag (`CREATE TABLE`, `SET`...) with a row count for those
    /// that have one.
    Command { tag: String, rows: Option<usize> },
    /// `COPY ... FROM STDIN`: the client sends the data next.
    CopyIn(crate::dml::CopyIn),
    /// `SUBSCRIBE`: the view's rows, streamed until the client goes away.
    Subscribe(Subscription),
}

/// What `SUBSCRIBE` streams: a view's committed log, from its beginning.
pub struct Subscription {
    pub view: String,
    pub feed: crate::state::view::Feed,
    pub shards: usize,
    pub schema: SchemaRef,
}

/// What a statement will take and give, before it runs (for `Describe` in
/// the extended protocol).
pub struct Description {
    /// Parameter types, in order; None where unknown.
    pub parameters: Vec<Option<DataType>>,
    /// Result columns; None for statements without rows.
    pub columns: Option<SchemaRef>,
}

pub struct Session {
    db: Arc<Database>,
    /// Variables set with SET.
    vars: BTreeMap<String, String>,
}

fn text_schema(names: &[&str]) -> SchemaRef {
    Arc::new(Schema::new(
        names
            .iter()
            .map(|n| Field::new(*n, DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ))
}

fn describe_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("type", DataType::Utf8, false),
        Field::new("nullable", DataType::Boolean, false),
        Field::new("extra", DataType::Utf8, true),
    ]))
}

fn text_rows(schema: SchemaRef, columns: Vec<Vec<Option<String>>>) -> Result<Outcome> {
    let arrays: Vec<ArrayRef> = columns
        .into_iter()
        .map(|c| Arc::new(StringArray::from(c)) as ArrayRef)
        .collect();
    let batch = RecordBatch::try_new(schema.clone(), arrays)?;
    Ok(Outcome::Rows {
        schema,
        batches: vec![batch],
    })
}

/// The columns of `SHOW SAVEPOINTS`.
const SAVEPOINT_COLUMNS: &[&str] = &["name", "job", "epoch", "created_at"];

/// The names of the checkpoint interval (ours, and Flink's). It is a
/// server setting: SET changes it for every job.
const CHECKPOINT_INTERVAL_NAMES: &[&str] = &[
    "checkpoint_interval",
    "checkpoint.interval",
    "execution.checkpointing.interval",
];

/// Server settings a client may read with SHOW (and that SET may change).
const DEFAULT_VARS: &[(&str, &str)] = &[
    ("application_name", ""),
    ("client_encoding", "UTF8"),
    ("datestyle", "ISO, MDY"),
    ("extra_float_digits", "1"),
    ("integer_datetimes", "on"),
    ("intervalstyle", "postgres"),
    ("search_path", "public"),
    ("server_encoding", "UTF8"),
    ("server_version", crate::server::SERVER_VERSION),
    ("server_version_num", "150000"),
    ("standard_conforming_strings", "on"),
    ("timezone", "UTC"),
    ("transaction_isolation", "read committed"),
];

impl Session {
    pub fn new(db: Arc<Database>) -> Self {
        Session {
            db,
            vars: BTreeMap::new(),
        }
    }

    fn var(&self, name: &str) -> Option<String> {
        let name = name.to_ascii_lowercase();
        if CHECKPOINT_INTERVAL_NAMES.contains(&name.as_str()) {
            return Some(match self.db.checkpoint_settings().interval() {
                Some(d) => format!("{}ms", d.as_millis()),
                None => "0".into(),
            });
        }
        self.vars.get(&name).cloned().or_else(|| {
            DEFAULT_VARS
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
    }

    /// Parameter and result types of a statement.
    pub async fn describe(&self, parsed: &Parsed, sql: &str) -> Result<Description> {
        let none = |columns: Option<SchemaRef>| Description {
            parameters: Vec::new(),
            columns,
        };
        Ok(match &parsed.statement {
            Statement::Query(stmt)
                if is_dml(stmt) || matches!(**stmt, ast::Statement::Copy { .. }) =>
            {
                none(None)
            }
            Statement::Query(stmt) => {
                check_query(stmt)?;
                let plan = self.db.query_engine().plan(stmt, sql).await?;
                Description {
                    parameters: parameter_types(&plan)?,
                    columns: Some(Arc::new(plan.schema().as_arrow().clone())),
                }
            }
            Statement::ExplainView(_) => none(Some(text_schema(&["QUERY PLAN"]))),
            Statement::ShowObjects(_) => none(Some(text_schema(&["name"]))),
            Statement::ShowSavepoints => none(Some(text_schema(SAVEPOINT_COLUMNS))),
            Statement::Describe(_) => none(Some(describe_schema())),
            Statement::Subscribe { .. } => none(None),
            Statement::ShowVariable(name) if name == "all" => {
                none(Some(text_schema(&["name", "setting"])))
            }
            Statement::ShowVariable(name) => none(Some(text_schema(&[name.as_str()]))),
            _ => none(None),
        })
    }

    /// Runs one statement. `sql` is the client's whole text (for error
    /// positions).
    pub async fn execute(
        &mut self,
        parsed: &Parsed,
        sql: &str,
        params: Vec<ScalarValue>,
    ) -> Result<Outcome> {
        let command = |tag: &str| {
            Ok(Outcome::Command {
                tag: tag.to_string(),
                rows: None,
            })
        };
        match &parsed.statement {
            Statement::CreateSource(create) => {
                self.db.create_source(create, sql, &parsed.text).await?;
                command("CREATE TABLE")
            }
            Statement::CreateView(create) => {
                self.db.create_view(create, sql).await?;
                command("CREATE MATERIALIZED VIEW")
            }
            Statement::CreateSink(create) => {
                self.db.create_sink(create, &parsed.text).await?;
                command("CREATE SINK")
            }
            Statement::Subscribe { view } => Ok(Outcome::Subscribe(self.db.subscribe(view)?)),
            Statement::ExplainView(create) => {
                let text = self.db.explain_view(create, sql).await?;
                let lines = text.lines().map(|l| Some(l.to_string())).collect();
                text_rows(text_schema(&["QUERY PLAN"]), vec![lines])
            }
            Statement::Drop {
                kind,
                name,
                if_exists,
            } => {
                self.db.drop_object(*kind, name, *if_exists).await?;
                command(match kind {
                    ObjectKind::Table => "DROP TABLE",
                    ObjectKind::Source => "DROP SOURCE",
                    ObjectKind::MaterializedView => "DROP MATERIALIZED VIEW",
                    ObjectKind::Sink => "DROP SINK",
                })
            }
            Statement::ShowObjects(kind) => {
                let names = self.db.object_names(*kind).into_iter().map(Some).collect();
                text_rows(text_schema(&["name"]), vec![names])
            }
            Statement::AlterView { name, action } => {
                self.db.alter_view(name, action).await?;
                command("ALTER MATERIALIZED VIEW")
            }
            Statement::CreateSavepoint { name, view } => {
                self.db.create_savepoint(name, view).await?;
                command("CREATE SAVEPOINT")
            }
            Statement::DropSavepoint { name, if_exists } => {
                self.db.drop_savepoint(name, *if_exists).await?;
                command("DROP SAVEPOINT")
            }
            Statement::ShowSavepoints => {
                let all = self.db.savepoints()?;
                let column = |f: &dyn Fn(&crate::state::checkpoint::SavepointRecord) -> String| {
                    all.iter().map(|s| Some(f(s))).collect::<Vec<_>>()
                };
                let created = |s: &crate::state::checkpoint::SavepointRecord| {
                    chrono::DateTime::from_timestamp_millis(s.created_at)
                        .map(|t| t.format("%Y-%m-%d %H:%M:%S%.3f").to_string())
                        .unwrap_or_default()
                };
                text_rows(
                    text_schema(SAVEPOINT_COLUMNS),
                    vec![
                        column(&|s| s.name.clone()),
                        column(&|s| s.view.clone()),
                        column(&|s| s.epoch.to_string()),
                        column(&created),
                    ],
                )
            }
            Statement::Describe(name) => {
                let columns = self.db.describe(name)?;
                let batch = RecordBatch::try_new(
                    describe_schema(),
                    vec![
                        Arc::new(StringArray::from_iter_values(
                            columns.iter().map(|c| c.name.as_str()),
                        )),
                        Arc::new(StringArray::from_iter_values(
                            columns.iter().map(|c| c.data_type.as_str()),
                        )),
                        Arc::new(BooleanArray::from(
                            columns.iter().map(|c| c.nullable).collect::<Vec<_>>(),
                        )),
                        Arc::new(
                            columns
                                .iter()
                                .map(|c| c.extra.as_deref())
                                .collect::<StringArray>(),
                        ),
                    ],
                )?;
                Ok(Outcome::Rows {
                    schema: describe_schema(),
                    batches: vec![batch],
                })
            }
            Statement::SetVariable { name, value } => {
                self.set(name, value)?;
                command("SET")
            }
            Statement::ShowVariable(name) if name == "all" => {
                let mut all: BTreeMap<String, String> = DEFAULT_VARS
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                all.extend(self.vars.clone());
                let (names, values): (Vec<_>, Vec<_>) =
                    all.into_iter().map(|(k, v)| (Some(k), Some(v))).unzip();
                text_rows(text_schema(&["name", "setting"]), vec![names, values])
            }
            Statement::ShowVariable(name) => {
                let value = self.var(name).ok_or_else(|| {
                    Error::user(
                        crate::error::sqlstate::UNDEFINED_OBJECT,
                        format!("unrecognized configuration parameter \"{name}\""),
                    )
                })?;
                text_rows(text_schema(&[name.as_str()]), vec![vec![Some(value)]])
            }
            Statement::Transaction(op) => command(match op {
                TransactionOp::Begin => "BEGIN",
                TransactionOp::Commit => "COMMIT",
                TransactionOp::Rollback => "ROLLBACK",
            }),
            Statement::Query(stmt) if matches!(**stmt, ast::Statement::Copy { .. }) => {
                let copy = crate::dml::CopyIn::from_statement(stmt)?;
                self.db.ordinary_table(&copy.table)?;
                Ok(Outcome::CopyIn(copy))
            }
            Statement::Query(stmt) if is_dml(stmt) => {
                if !params.is_empty() {
                    return Err(Error::not_supported(
                        "parameters ($1) in INSERT, UPDATE and DELETE are not supported yet",
                    ));
                }
                let done = self.db.execute_dml(stmt).await?;
                Ok(Outcome::Command {
                    tag: done.tag.to_string(),
                    rows: Some(done.rows),
                })
            }
            Statement::Query(stmt) => {
                check_query(stmt)?;
                let engine = self.db.query_engine();
                let mut plan = engine.plan(stmt, sql).await?;
                if !params.is_empty() {
                    plan = plan
                        .with_param_values(params)
                        .map_err(|e| Error::from_datafusion(e, sql))?;
                }
                let (schema, batches) = engine.execute(plan, sql).await?;
                Ok(Outcome::Rows { schema, batches })
            }
        }
    }

    fn set(&mut self, name: &str, value: &str) -> Result<()> {
        if CHECKPOINT_INTERVAL_NAMES.contains(&name) {
            let interval = crate::options::parse_duration(value).map_err(|e| {
                Error::invalid_parameter(format!("invalid value for \"{name}\": {e}"))
            })?;
            self.db.checkpoint_settings().set_interval(interval);
            tracing::info!(
                interval_ms = interval.as_millis() as u64,
                "checkpoint interval set"
            );
            return Ok(());
        }
        if name == "timezone" {
            let utc = ["utc", "etc/utc", "+00:00", "0", "z", "gmt"];
            if !utc.contains(&value.to_ascii_lowercase().as_str()) {
                return Err(Error::not_supported(format!(
                    "time zone \"{value}\" is not supported: Sluice shows times in UTC"
                )));
            }
        }
        self.vars.insert(name.to_string(), value.to_string());
        Ok(())
    }
}

/// Queries run by DataFusion: SELECT, VALUES, EXPLAIN of those. Anything else
/// that reached sqlparser is refused clearly.
fn check_query(statement: &ast::Statement) -> Result<()> {
    match statement {
        ast::Statement::Query(_) => Ok(()),
        ast::Statement::Explain { statement, .. }
            if matches!(**statement, ast::Statement::Query(_)) =>
        {
            Ok(())
        }
        ast::Statement::CreateView { .. } => Err(Error::not_supported(
            "plain views are not supported; use CREATE MATERIALIZED VIEW",
        )),
        other => {
            let text = other.to_string();
            let words: Vec<&str> = text.split_whitespace().take(2).collect();
            Err(Error::not_supported(format!(
                "{} is not supported",
                words.join(" ").to_uppercase()
            )))
        }
    }
}

/// INSERT, UPDATE and DELETE (on ordinary tables).
fn is_dml(statement: &ast::Statement) -> bool {
    matches!(
        statement,
        ast::Statement::Insert(_) | ast::Statement::Update { .. } | ast::Statement::Delete(_)
    )
}

/// Parameter types `$1..$n` of a plan, in order.
fn parameter_types(plan: &LogicalPlan) -> Result<Vec<Option<DataType>>> {
    let types = plan.get_parameter_types()?;
    let mut numbered: Vec<(usize, Option<DataType>)> = types
        .into_iter()
        .filter_map(|(name, t)| {
            name.trim_start_matches('$')
                .parse::<usize>()
                .ok()
                .map(|i| (i, t))
        })
        .collect();
    numbered.sort_by_key(|(i, _)| *i);
    let count = numbered.last().map(|(i, _)| *i).unwrap_or(0);
    let mut out = vec![None; count];
    for (i, t) in numbered {
        out[i - 1] = t;
    }
    Ok(out)
}
