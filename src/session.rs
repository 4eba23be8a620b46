//! A connection's session: runs parsed statements against the database.
//!
//! Statements are parsed once (`frontend::parser`) and matched here by kind;
//! the wire server only translates between the protocol and [`Outcome`]s.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, BooleanArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use sqlparser::ast;

use crate::database::Database;
use crate::error::{sqlstate, Error, Result};
use crate::frontend::parser::{ObjectKind, Parsed, Statement, TransactionOp};
use crate::query::{Parameters, Scope};
use crate::state::reference::{Change, PendingKeys, ReferenceTable, Snapshot};

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
    CopyIn(crate::copy::CopyIn),
    /// `COPY ... TO STDOUT`: rows to send as COPY data.
    CopyOut {
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
        options: crate::copy::Options,
    },
    /// `SUBSCRIBE`: the view's rows, streamed until the client goes away.
    Subscribe(Subscription),
    /// `DEALLOCATE`: the connection forgets prepared statements (None: all).
    Deallocate(Option<String>),
    /// `FETCH`: rows of a cursor (tagged `FETCH n`).
    Fetched {
        schema: SchemaRef,
        batch: RecordBatch,
    },
}

pub use crate::subscription::Subscription;

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
    /// The user the connection logged in as.
    user: String,
    /// The connection's number (its cancel key's process id).
    pid: i32,
    /// Whether the server lets anyone in without a password (`--auth
    /// trust`): then a user the catalog does not know may do anything.
    trusted: bool,
    /// The open transaction block (BEGIN ... COMMIT), if any.
    transaction: Option<Transaction>,
    /// In a statement set (`EXECUTE STATEMENT SET BEGIN`): the INSERTs so
    /// far, each with the client's text it came in, to start at `END`.
    statement_set: Option<Vec<(ast::Insert, String)>>,
    /// Notices and warnings for the client, sent before the statement's
    /// result.
    notices: Vec<Notice>,
    /// Open cursors, by name.
    cursors: std::collections::HashMap<String, crate::cursor::Cursor>,
}

/// A message for the client that is not an error.
#[derive(Debug, Clone)]
pub struct Notice {
    /// `NOTICE` or `WARNING`.
    pub severity: &'static str,
    pub code: &'static str,
    pub message: String,
}

/// Where a session stands with transactions, as ReadyForQuery reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionState {
    Idle,
    InBlock,
    /// A statement of the block failed: until ROLLBACK, nothing runs.
    Failed,
}

/// A transaction block's changes to ordinary tables, not yet visible to
/// other sessions: per table, its rows as the transaction sees them and
/// the keys it changed. COMMIT writes the changed keys' rows in one atomic
/// write; ROLLBACK drops them. DDL is not part of it (it applies at once).
#[derive(Default)]
struct Transaction {
    tables: BTreeMap<String, Pending>,
    /// `SAVEPOINT`s: their names and the tables as they were.
    savepoints: Vec<(String, BTreeMap<String, Pending>)>,
    failed: bool,
}

#[derive(Clone)]
struct Pending {
    table: Arc<ReferenceTable>,
    rows: Arc<Snapshot>,
    keys: PendingKeys,
}

impl Transaction {
    fn scope(&self, user: &str) -> Scope {
        Scope {
            user: user.to_string(),
            tables: self
                .tables
                .iter()
                .map(|(name, p)| (name.clone(), p.rows.clone()))
                .collect(),
            ..Scope::default()
        }
    }

    /// Applies a statement's change to the transaction's rows of `table`.
    fn apply(&mut self, name: &str, table: &Arc<ReferenceTable>, change: &Change) -> Result<usize> {
        let pending = self
            .tables
            .entry(name.to_string())
            .or_insert_with(|| Pending {
                table: table.clone(),
                rows: table.snapshot(),
                keys: PendingKeys::default(),
            });
        let (rows, count) = pending
            .table
            .preview(&pending.rows, change, &mut pending.keys)?;
        pending.rows = Arc::new(rows);
        Ok(count)
    }
}

/// Statements that run in a failed transaction block: those that end it.
fn ends_failed_block(statement: &Statement) -> bool {
    matches!(
        statement,
        Statement::Transaction(
            TransactionOp::Commit | TransactionOp::Rollback | TransactionOp::RollbackTo(_)
        )
    )
}

/// Statements that change the catalog: they apply at once, also inside a
/// transaction block.
fn is_ddl(statement: &Statement) -> bool {
    matches!(
        statement,
        Statement::CreateSource(_)
            | Statement::CreateView(_)
            | Statement::CreateSink(_)
            | Statement::CreateLogicalView(_)
            | Statement::Drop { .. }
            | Statement::AlterView { .. }
            | Statement::CreateSavepoint { .. }
            | Statement::DropSavepoint { .. }
            | Statement::StopJob { .. }
            | Statement::CreateUser { .. }
            | Statement::AlterUser { .. }
            | Statement::DropUser { .. }
    )
}

/// `statement_timeout`'s value: a number of milliseconds, or a duration
/// with its unit; 0 turns it off.
fn parse_timeout(value: &str) -> Result<Option<Duration>> {
    let value = value.trim();
    let duration = match value.parse::<u64>() {
        Ok(ms) => Duration::from_millis(ms),
        Err(_) => crate::options::parse_duration(value).map_err(|e| {
            Error::invalid_parameter(format!(
                "invalid value for parameter \"statement_timeout\": \"{value}\": {e}"
            ))
        })?,
    };
    Ok((!duration.is_zero()).then_some(duration))
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
const JOB_COLUMNS: &[&str] = &["name", "status", "writes", "rows_in", "rows_out", "error"];

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
    ("search_path", "\"$user\", public"),
    ("server_encoding", "UTF8"),
    ("server_version", crate::server::SERVER_VERSION),
    ("server_version_num", "150000"),
    ("standard_conforming_strings", "on"),
    ("statement_timeout", "0"),
    ("timezone", "UTC"),
    ("transaction_isolation", "read committed"),
    ("default_transaction_isolation", "read committed"),
];

impl Session {
    pub fn new(db: Arc<Database>) -> Self {
        Session {
            db,
            vars: BTreeMap::new(),
            user: String::new(),
            pid: 0,
            trusted: true,
            transaction: None,
            notices: Vec::new(),
            statement_set: None,
            cursors: std::collections::HashMap::new(),
        }
    }

    /// Sets who the session runs as (after the startup), and whether the
    /// server trusts connections without passwords.
    pub fn set_user(&mut self, user: &str, trusted: bool, pid: i32) {
        if self.user != user {
            self.user = user.to_string();
        }
        self.trusted = trusted;
        self.pid = pid;
    }

    /// Every setting's value now, by lower-case name.
    fn settings(&self) -> BTreeMap<String, String> {
        let mut all: BTreeMap<String, String> = DEFAULT_VARS
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        all.extend(self.vars.clone());
        for name in CHECKPOINT_INTERVAL_NAMES {
            if let Some(v) = self.var(name) {
                all.insert(name.to_string(), v);
            }
        }
        all
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    pub fn transaction_state(&self) -> TransactionState {
        match &self.transaction {
            None => TransactionState::Idle,
            Some(t) if t.failed => TransactionState::Failed,
            Some(_) => TransactionState::InBlock,
        }
    }

    /// The notices of the last statements, to send to the client.
    pub fn take_notices(&mut self) -> Vec<Notice> {
        std::mem::take(&mut self.notices)
    }

    fn notice(&mut self, severity: &'static str, code: &'static str, message: impl Into<String>) {
        self.notices.push(Notice {
            severity,
            code,
            message: message.into(),
        });
    }

    /// A statement failed (also before the session ran it: a parse error):
    /// an open transaction block is now failed.
    pub fn failed(&mut self) {
        if let Some(t) = &mut self.transaction {
            t.failed = true;
        }
    }

    fn scope(&self) -> Scope {
        let mut scope = match &self.transaction {
            Some(t) => t.scope(&self.user),
            None => Scope {
                user: self.user.clone(),
                ..Scope::default()
            },
        };
        scope.pid = self.pid;
        scope.settings = self.settings();
        scope.cursors = self
            .cursors
            .iter()
            .map(|(name, c)| crate::query::CursorInfo {
                name: name.clone(),
                statement: c.statement.clone(),
                holdable: c.hold,
                scrollable: c.scrollable(),
            })
            .collect();
        scope
    }

    fn is_superuser(&self) -> bool {
        match self.db.users().get(&self.user) {
            Some(u) => u.superuser,
            None => self.trusted,
        }
    }

    fn require_superuser(&self, what: &str) -> Result<()> {
        if self.is_superuser() {
            return Ok(());
        }
        Err(Error::user(
            sqlstate::INSUFFICIENT_PRIVILEGE,
            format!("permission denied to {what}"),
        )
        .with_hint("only superusers may do this; a user may change its own password"))
    }

    fn statement_timeout(&self) -> Option<Duration> {
        self.vars
            .get("statement_timeout")
            .and_then(|v| parse_timeout(v).ok().flatten())
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
    /// `declared` are the parameter types the client gave (None where it
    /// gave none); the description's parameter types keep them, and infer
    /// the others where the statement tells.
    pub async fn describe(
        &self,
        parsed: &Parsed,
        sql: &str,
        declared: &[Option<DataType>],
    ) -> Result<Description> {
        let none = |columns: Option<SchemaRef>| Description {
            parameters: declared.to_vec(),
            columns,
        };
        Ok(match &parsed.statement {
            Statement::Query(stmt) if is_dml(stmt) => Description {
                parameters: crate::dml::parameter_types(
                    self.db.query_engine(),
                    &self.db,
                    stmt,
                    declared,
                )
                .await?,
                columns: None,
            },
            Statement::Query(stmt) if matches!(**stmt, ast::Statement::Copy { .. }) => none(None),
            Statement::Query(stmt) => {
                check_query(stmt)?;
                let planned = self
                    .db
                    .query_engine()
                    .plan(stmt, sql, &self.scope(), declared)
                    .await?;
                Description {
                    parameters: merge_parameter_types(declared, planned.parameter_types()?),
                    columns: Some(planned.schema()),
                }
            }
            Statement::Fetch {
                cursor,
                fetch: true,
                ..
            } => none(Some(self.cursor(cursor)?.schema())),
            Statement::ExplainView(_) => none(Some(text_schema(&["QUERY PLAN"]))),
            Statement::ShowObjects(_) => none(Some(text_schema(&["name"]))),
            Statement::ShowSavepoints => none(Some(text_schema(SAVEPOINT_COLUMNS))),
            Statement::ShowJobs => none(Some(text_schema(JOB_COLUMNS))),
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
    /// positions). In a failed transaction block only the statements that
    /// end it run (`25P02`); a statement that fails fails its block; a
    /// statement runs at most `statement_timeout` (`57014`).
    pub async fn execute(
        &mut self,
        parsed: &Parsed,
        sql: &str,
        params: Parameters,
    ) -> Result<Outcome> {
        if self.transaction_state() == TransactionState::Failed
            && !ends_failed_block(&parsed.statement)
        {
            return Err(Error::user(
                sqlstate::IN_FAILED_TRANSACTION,
                "current transaction is aborted, commands ignored until end of transaction block",
            ));
        }
        if self.transaction.is_some() && is_ddl(&parsed.statement) {
            self.notice(
                "NOTICE",
                "00000",
                "this statement takes effect at once: Sluice applies DDL outside transactions, so ROLLBACK will not undo it",
            );
        }
        let result = match self.statement_timeout() {
            None => self.run_guarded(parsed, sql, params).await,
            Some(limit) => {
                match tokio::time::timeout(limit, self.run_guarded(parsed, sql, params)).await {
                    Ok(result) => result,
                    Err(_) => Err(Error::user(
                        sqlstate::QUERY_CANCELED,
                        "canceling statement due to statement timeout",
                    )),
                }
            }
        };
        if result.is_err() {
            self.failed();
        }
        result
    }

    /// Runs a statement; a bug that panics while planning or running it
    /// fails the statement (XX000), not the connection.
    async fn run_guarded(
        &mut self,
        parsed: &Parsed,
        sql: &str,
        params: Parameters,
    ) -> Result<Outcome> {
        use futures::FutureExt as _;
        std::panic::AssertUnwindSafe(self.run(parsed, sql, params))
            .catch_unwind()
            .await
            .unwrap_or_else(|panic| {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                tracing::error!(statement = %parsed.text, panic = %what, "a statement panicked");
                Err(Error::internal(format!(
                    "the statement failed on a bug: {what}"
                )))
            })
    }

    async fn run(&mut self, parsed: &Parsed, sql: &str, params: Parameters) -> Result<Outcome> {
        let command = |tag: &str| {
            Ok(Outcome::Command {
                tag: tag.to_string(),
                rows: None,
            })
        };
        if self.statement_set.is_some() {
            return self.in_statement_set(parsed, sql).await;
        }
        match &parsed.statement {
            Statement::BeginStatementSet => {
                if self.transaction.is_some() {
                    return Err(Error::user(
                        sqlstate::ACTIVE_TRANSACTION,
                        "a statement set cannot begin inside a transaction block",
                    ));
                }
                self.statement_set = Some(Vec::new());
                command("BEGIN")
            }
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
            Statement::CreateLogicalView(create) => {
                self.db.create_logical_view(create, &parsed.text).await?;
                command("CREATE VIEW")
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
                    ObjectKind::View => "DROP VIEW",
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
            Statement::ShowJobs => {
                let jobs = self.db.job_list();
                let column = |f: &dyn Fn(&crate::database::JobRow) -> Option<String>| {
                    jobs.iter().map(f).collect::<Vec<_>>()
                };
                text_rows(
                    text_schema(JOB_COLUMNS),
                    vec![
                        column(&|j| Some(j.name.clone())),
                        column(&|j| Some(j.status.clone())),
                        column(&|j| Some(j.writes.clone())),
                        column(&|j| Some(j.rows_in.to_string())),
                        column(&|j| Some(j.rows_out.to_string())),
                        column(&|j| j.error.clone()),
                    ],
                )
            }
            Statement::StopJob { name, if_exists } => {
                if !self.db.stop_job_named(name, *if_exists).await? {
                    self.notice(
                        "NOTICE",
                        "00000",
                        format!("job \"{name}\" does not exist, skipping"),
                    );
                }
                command("STOP JOB")
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
            Statement::ResetVariable(name) => {
                match name {
                    Some(name) if CHECKPOINT_INTERVAL_NAMES.contains(&name.as_str()) => {
                        return Err(Error::not_supported(format!(
                            "RESET {name}: the checkpoint interval is the server's; SET it to the interval wanted"
                        )))
                    }
                    Some(name) => {
                        self.vars.remove(name);
                    }
                    None => self.vars.clear(),
                }
                command("RESET")
            }
            Statement::ShowVariable(name) if name == "all" => {
                let all = self.settings();
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
            Statement::Transaction(op) => {
                let tag = self.transaction_op(op).await?;
                command(tag)
            }
            Statement::Deallocate(name) => Ok(Outcome::Deallocate(name.clone())),
            Statement::DeclareCursor(declare) => {
                self.declare(declare, sql, params).await?;
                command("DECLARE CURSOR")
            }
            Statement::Fetch {
                cursor,
                direction,
                fetch,
                timeout,
            } => {
                let batch = self
                    .cursors
                    .get_mut(cursor)
                    .ok_or_else(|| undefined_cursor(cursor))?
                    .fetch(*direction, *timeout)
                    .await?;
                if *fetch {
                    Ok(Outcome::Fetched {
                        schema: batch.schema(),
                        batch,
                    })
                } else {
                    Ok(Outcome::Command {
                        tag: "MOVE".into(),
                        rows: Some(batch.num_rows()),
                    })
                }
            }
            Statement::CloseCursor(name) => {
                match name {
                    Some(name) => {
                        self.cursors
                            .remove(name)
                            .ok_or_else(|| undefined_cursor(name))?;
                    }
                    None => self.cursors.clear(),
                }
                command(if name.is_some() {
                    "CLOSE CURSOR"
                } else {
                    "CLOSE CURSOR ALL"
                })
            }
            Statement::CreateUser {
                name,
                if_not_exists,
                options,
                login,
            } => {
                self.require_superuser("create role")?;
                if *if_not_exists && self.db.users().get(name).is_some() {
                    self.notice(
                        "NOTICE",
                        sqlstate::DUPLICATE_OBJECT,
                        format!("role \"{name}\" already exists, skipping"),
                    );
                } else {
                    self.db.users().create(name, options, *login)?;
                }
                command("CREATE ROLE")
            }
            Statement::AlterUser { name, options } => {
                let own_password =
                    *name == self.user && options.superuser.is_none() && options.login.is_none();
                if !own_password {
                    self.require_superuser("alter role")?;
                }
                self.db.users().alter(name, options)?;
                command("ALTER ROLE")
            }
            Statement::DropUser { names, if_exists } => {
                self.require_superuser("drop role")?;
                if names.contains(&self.user) {
                    return Err(Error::user("55006", "current user cannot be dropped"));
                }
                for name in names {
                    if !self.db.users().remove(name, *if_exists)? {
                        self.notice(
                            "NOTICE",
                            sqlstate::UNDEFINED_OBJECT,
                            format!("role \"{name}\" does not exist, skipping"),
                        );
                    }
                }
                command("DROP ROLE")
            }
            Statement::Query(stmt) if matches!(**stmt, ast::Statement::Copy { .. }) => {
                match crate::copy::parse(stmt)? {
                    crate::copy::Copy::In(copy) => {
                        self.db.ordinary_table(&copy.table)?;
                        Ok(Outcome::CopyIn(copy))
                    }
                    crate::copy::Copy::Out(out) => {
                        let engine = self.db.query_engine();
                        let scope = self.scope();
                        let query = ast::Statement::Query(out.query);
                        let planned = engine.plan(&query, sql, &scope, &[]).await?;
                        let (schema, batches) = engine.execute(planned, sql, &scope).await?;
                        Ok(Outcome::CopyOut {
                            schema,
                            batches,
                            options: out.options,
                        })
                    }
                }
            }
            Statement::Query(stmt) if is_dml(stmt) => {
                if let ast::Statement::Insert(insert) = stmt.as_ref() {
                    let table = crate::dml::target(stmt)?;
                    if self.db.insert_starts_job(&table) {
                        let job = self.db.start_insert(insert, sql).await?;
                        self.notice(
                            "NOTICE",
                            "00000",
                            format!("job \"{job}\" started: it writes the query's rows into \"{table}\" as they come (SHOW JOBS; STOP JOB '{job}')"),
                        );
                        return Ok(Outcome::Command {
                            tag: "INSERT 0".into(),
                            rows: Some(0),
                        });
                    }
                }
                let scope = self.scope();
                let db = self.db.clone();
                let (table, planned, _tables) = db.plan_dml(stmt, &scope, &params).await?;
                let rows = match &mut self.transaction {
                    Some(t) => t.apply(&planned.table, &table, &planned.change)?,
                    None => table.apply(&planned.change)?,
                };
                Ok(Outcome::Command {
                    tag: planned.tag.to_string(),
                    rows: Some(rows),
                })
            }
            Statement::Query(stmt) => {
                check_query(stmt)?;
                let engine = self.db.query_engine();
                let scope = self.scope();
                let planned = engine
                    .plan(stmt, sql, &scope, &params.declared)
                    .await?
                    .bind(params.values, sql)?;
                let settings = planned.settings.clone();
                let (schema, batches) = engine.execute(planned, sql, &scope).await?;
                for (name, value) in settings {
                    self.set(&name, &value)?;
                }
                Ok(Outcome::Rows { schema, batches })
            }
        }
    }

    /// A statement inside a statement set: an INSERT joins it; `END` starts
    /// its INSERTs, all or none.
    async fn in_statement_set(&mut self, parsed: &Parsed, sql: &str) -> Result<Outcome> {
        match &parsed.statement {
            Statement::Query(stmt) => {
                if let ast::Statement::Insert(insert) = stmt.as_ref() {
                    let table = crate::dml::target(stmt)?;
                    if !self.db.insert_starts_job(&table) {
                        return Err(Error::not_supported(format!(
                            "a statement set holds INSERTs into tables with a connector, and \"{table}\" is not one"
                        )));
                    }
                    let set = self.statement_set.as_mut().expect("in a statement set");
                    set.push((insert.clone(), sql.to_string()));
                    return Ok(Outcome::Command {
                        tag: "INSERT 0".into(),
                        rows: Some(0),
                    });
                }
            }
            Statement::Transaction(TransactionOp::Commit)
                if parsed.text.to_ascii_uppercase().starts_with("END") =>
            {
                let set = self.statement_set.take().unwrap_or_default();
                let mut started = Vec::new();
                for (insert, text) in &set {
                    match self.db.start_insert(insert, text).await {
                        Ok(job) => started.push(job),
                        Err(e) => {
                            for job in &started {
                                self.db.stop_job_named(job, true).await?;
                            }
                            return Err(e.context("the statement set started no job"));
                        }
                    }
                }
                self.notice(
                    "NOTICE",
                    "00000",
                    format!(
                        "statement set started {} jobs: {} (SHOW JOBS)",
                        started.len(),
                        started.join(", ")
                    ),
                );
                return Ok(Outcome::Command {
                    tag: "END".into(),
                    rows: None,
                });
            }
            Statement::Transaction(TransactionOp::Rollback) => {
                self.statement_set = None;
                return Ok(Outcome::Command {
                    tag: "ROLLBACK".into(),
                    rows: None,
                });
            }
            _ => {}
        }
        Err(Error::not_supported(
            "a statement set holds only INSERT INTO statements; END starts them, ROLLBACK forgets them",
        ))
    }

    /// The columns of cursor `name`, if it is open.
    pub fn cursor_schema(&self, name: &str) -> Option<SchemaRef> {
        self.cursors.get(name).map(|c| c.schema())
    }

    fn cursor(&self, name: &str) -> Result<&crate::cursor::Cursor> {
        self.cursors.get(name).ok_or_else(|| undefined_cursor(name))
    }

    /// `DECLARE`: a query's rows, or a subscription, to fetch from.
    async fn declare(
        &mut self,
        declare: &crate::frontend::parser::DeclareCursor,
        sql: &str,
        params: Parameters,
    ) -> Result<()> {
        use crate::frontend::parser::CursorSource;
        let in_block = self.transaction.is_some();
        if !declare.hold && !in_block {
            return Err(Error::user(
                sqlstate::NO_ACTIVE_TRANSACTION,
                "DECLARE CURSOR can only be used in transaction blocks",
            ));
        }
        if self.cursors.contains_key(&declare.name) {
            return Err(Error::user(
                "42P03",
                format!("cursor \"{}\" already exists", declare.name),
            ));
        }
        let statement = declare.text.clone();
        let cursor = match &declare.source {
            CursorSource::Query(query) => {
                check_query(query)?;
                let engine = self.db.query_engine();
                let scope = self.scope();
                let planned = engine
                    .plan(query, sql, &scope, &params.declared)
                    .await?
                    .bind(params.values, sql)?;
                let (schema, batches) = engine.execute(planned, sql, &scope).await?;
                crate::cursor::Cursor::query(statement, &schema, &batches, declare.hold, in_block)?
            }
            CursorSource::Subscribe(view) => crate::cursor::Cursor::subscribe(
                statement,
                crate::subscription::ChangeReader::new(self.db.subscribe(view)?),
                declare.hold,
                in_block,
            ),
        };
        self.cursors.insert(declare.name.clone(), cursor);
        Ok(())
    }

    /// The end of a transaction block closes its cursors: all but those
    /// WITH HOLD at COMMIT, and those it declared at ROLLBACK.
    fn end_block(&mut self, committed: bool) {
        self.cursors
            .retain(|_, c| c.hold && (committed || !c.in_block));
        for c in self.cursors.values_mut() {
            c.in_block = false;
        }
    }

    /// BEGIN, COMMIT, ROLLBACK and savepoints; returns the command tag.
    async fn transaction_op(&mut self, op: &TransactionOp) -> Result<&'static str> {
        Ok(match op {
            TransactionOp::Begin => {
                if self.transaction.is_some() {
                    self.notice(
                        "WARNING",
                        sqlstate::ACTIVE_TRANSACTION,
                        "there is already a transaction in progress",
                    );
                } else {
                    self.transaction = Some(Transaction::default());
                }
                "BEGIN"
            }
            TransactionOp::Commit => match self.transaction.take() {
                None => {
                    self.notice(
                        "WARNING",
                        sqlstate::NO_ACTIVE_TRANSACTION,
                        "there is no transaction in progress",
                    );
                    "COMMIT"
                }
                Some(t) if t.failed => {
                    self.end_block(false);
                    "ROLLBACK"
                }
                Some(t) => {
                    if let Err(e) = self.commit(&t).await {
                        // As after any failure in the block: it must be
                        // rolled back.
                        self.transaction = Some(Transaction { failed: true, ..t });
                        return Err(e);
                    }
                    self.end_block(true);
                    "COMMIT"
                }
            },
            TransactionOp::Rollback => {
                if self.transaction.take().is_none() {
                    self.notice(
                        "WARNING",
                        sqlstate::NO_ACTIVE_TRANSACTION,
                        "there is no transaction in progress",
                    );
                } else {
                    self.end_block(false);
                }
                "ROLLBACK"
            }
            TransactionOp::Savepoint(name) => {
                let t = self.transaction_block("SAVEPOINT")?;
                let tables = t.tables.clone();
                t.savepoints.push((name.clone(), tables));
                "SAVEPOINT"
            }
            TransactionOp::Release(name) => {
                let t = self.transaction_block("RELEASE SAVEPOINT")?;
                let at = savepoint_index(t, name)?;
                t.savepoints.truncate(at);
                "RELEASE"
            }
            TransactionOp::RollbackTo(name) => {
                let t = self.transaction_block("ROLLBACK TO SAVEPOINT")?;
                let at = savepoint_index(t, name)?;
                t.savepoints.truncate(at + 1);
                t.tables = t.savepoints[at].1.clone();
                t.failed = false;
                "ROLLBACK"
            }
        })
    }

    fn transaction_block(&mut self, what: &str) -> Result<&mut Transaction> {
        self.transaction.as_mut().ok_or_else(|| {
            Error::user(
                sqlstate::NO_ACTIVE_TRANSACTION,
                format!("{what} can only be used in transaction blocks"),
            )
        })
    }

    /// Writes a transaction's changes, all tables in one atomic write.
    async fn commit(&self, t: &Transaction) -> Result<()> {
        let _tables = self.db.table_lock().await;
        for (name, pending) in &t.tables {
            let live = self.db.ordinary_table(name).ok();
            if !live.is_some_and(|l| Arc::ptr_eq(&l, &pending.table)) {
                return Err(Error::user(
                    "40001",
                    format!("could not commit: table \"{name}\" was dropped or made again during the transaction"),
                ));
            }
        }
        let changes: Vec<(&ReferenceTable, &Snapshot, &PendingKeys)> = t
            .tables
            .values()
            .map(|p| (p.table.as_ref(), p.rows.as_ref(), &p.keys))
            .collect();
        ReferenceTable::commit_all(&changes)
    }

    /// The rows of a `COPY ... FROM STDIN`, inserted into its table as one
    /// statement (in the transaction block, if one is open); returns the
    /// rows added.
    /// `binary` reads binary COPY data as rows of the given types (the wire
    /// server knows Postgres's binary values).
    pub async fn copy_in(
        &mut self,
        copy: &crate::copy::CopyIn,
        data: &[u8],
        binary: impl Fn(&[u8], &[DataType]) -> Result<RecordBatch>,
    ) -> Result<usize> {
        let db = self.db.clone();
        let result = async {
            let _tables = db.table_lock().await;
            let table = db.ordinary_table(&copy.table)?;
            let rows = match copy.options.format {
                crate::copy::Format::Binary => {
                    let decoded = binary(data, &copy.field_types(table.schema())?)?;
                    copy.conform(&decoded, table.schema())?
                }
                _ => copy.rows(data, table.schema())?,
            };
            let change = Change::Insert(rows);
            match &mut self.transaction {
                Some(t) => t.apply(&copy.table, &table, &change),
                None => table.apply(&change),
            }
        }
        .await;
        if result.is_err() {
            self.failed();
        }
        result
    }

    fn set(&mut self, name: &str, value: &str) -> Result<()> {
        if crate::flink_options::is_flink_option(name) {
            match crate::flink_options::effect(name, value)? {
                crate::flink_options::Effect::Applied => {}
                crate::flink_options::Effect::NoEffect(why) => {
                    self.notice("NOTICE", "00000", why);
                }
            }
            if name == "table.local-time-zone" {
                self.set("timezone", value)?;
            }
        }
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
        if name == "statement_timeout" {
            parse_timeout(value)?;
        }
        if name == "default_transaction_isolation" {
            // The level of the transactions to come, so of the next one.
            self.vars
                .insert("transaction_isolation".into(), value.to_string());
        }
        if name.ends_with("transaction_isolation")
            && matches!(value, "repeatable read" | "serializable")
        {
            self.notice(
                "WARNING",
                "01000",
                format!(
                    "Sluice runs transactions at READ COMMITTED; \"{value}\" is recorded, not enforced"
                ),
            );
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

fn undefined_cursor(name: &str) -> Error {
    Error::user("34000", format!("cursor \"{name}\" does not exist"))
}

/// The parameter types a client is told: those it declared, else those
/// the plan infers.
fn merge_parameter_types(
    declared: &[Option<DataType>],
    inferred: Vec<Option<DataType>>,
) -> Vec<Option<DataType>> {
    let n = declared.len().max(inferred.len());
    (0..n)
        .map(|i| {
            declared
                .get(i)
                .cloned()
                .flatten()
                .or_else(|| inferred.get(i).cloned().flatten())
        })
        .collect()
}

/// Which savepoint of the block is named `name` (the latest of that name).
fn savepoint_index(t: &Transaction, name: &str) -> Result<usize> {
    t.savepoints
        .iter()
        .rposition(|(n, _)| n == name)
        .ok_or_else(|| {
            Error::user(
                sqlstate::INVALID_SAVEPOINT,
                format!("savepoint \"{name}\" does not exist"),
            )
        })
}
