//! The server's state, shared by every connection: the store, the catalog,
//! the running jobs, the dead-letter queue, the dataflow runtime and the
//! query engine.
//!
//! DDL is serialized (one statement at a time changes the catalog); queries
//! run concurrently. At start the catalog's statements are run again, in
//! creation order, so sources come back and views start running again.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use parking_lot::{Mutex, RwLock};
use tokio::runtime::Runtime;

use crate::catalog::{Catalog, Entry, Origin, RecordKind};
use crate::connector::file_sink;
use crate::connector::kafka_sink;
use crate::connector::sink::SinkSpec;
use crate::connector::upsert_kafka::{self, UpsertKafkaSpec};
use crate::connector::ConnectorSpec;
use crate::connector::Worker;
use crate::dataflow::checkpoint::CheckpointSettings;
use crate::dataflow::job::{Durability, Job, JobConfig};
use crate::dataflow::plan::{StreamPlan, ViewRows};
use crate::error::{sqlstate, Error, Result};
use crate::frontend::ddl::{bind_source, bind_table, is_keyed_table};
use crate::frontend::insert;
use crate::frontend::parser::{
    self, CreateLogicalView, CreateSink, CreateSource, CreateView, ObjectKind, Statement,
    ViewAction,
};
use crate::frontend::planner::{self, plan_view};
use crate::metrics::{DeadLetter, DeadLetterQueue, JobMetrics, JobStatus};
use crate::query::{QueryEngine, Relation, Relations};
use crate::session::Subscription;
use crate::state::checkpoint::{jobs_with_state, JobKeys, Restored, SavepointRecord};
use crate::state::reference::ReferenceTable;
use crate::state::view::{ChangeLog, Feed, ViewLog};
use crate::state::{Store, Writes};
use sqlparser::ast;

/// How long a shutdown waits for the jobs' last checkpoint.
const SHUTDOWN_CHECKPOINT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a shutdown waits for the views' tasks to end.
const SHUTDOWN_STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long PAUSE and CREATE SAVEPOINT wait for a view's checkpoint.
const VIEW_CHECKPOINT_TIMEOUT: Duration = Duration::from_secs(30);

const SAVEPOINT_PREFIX: &str = "savepoint/";

/// The meta key that says view `id` is paused.
fn paused_key(id: u64) -> String {
    format!("paused/{id:020}")
}

fn savepoint_key(name: &str) -> String {
    format!("{SAVEPOINT_PREFIX}{name}")
}

/// Server settings that shape the database.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub job: JobConfig,
    /// How many dead letters are kept (over all jobs).
    pub dead_letter_capacity: usize,
    /// How often jobs checkpoint (`checkpoint_interval`); zero for never.
    pub checkpoint_interval: Duration,
}

pub struct Database {
    store: Arc<Store>,
    /// Users and their password verifiers.
    users: Arc<crate::auth::Users>,
    checkpoints: Arc<CheckpointSettings>,
    catalog: RwLock<Catalog>,
    jobs: Mutex<HashMap<String, Job>>,
    /// The running sinks, by name.
    sinks: Mutex<HashMap<String, Worker>>,
    /// The loaders of upsert-kafka tables, by table name.
    loaders: Mutex<HashMap<String, Worker>>,
    dead_letters: Arc<DeadLetterQueue>,
    /// Where jobs run: separate from the connections' runtime, so a busy job
    /// never delays a query.
    runtime: Mutex<Option<Runtime>>,
    runtime_handle: tokio::runtime::Handle,
    job_config: JobConfig,
    query: QueryEngine,
    /// Serializes DDL.
    ddl: tokio::sync::Mutex<()>,
}

/// Who reads a view's committed log (their refusals are worded for them).
enum LogReader {
    Sink,
    Subscribe,
}

/// One line of `DESCRIBE`.
pub struct ColumnInfo {
    pub name: String,
    pub data_type: String,
    pub nullable: bool,
    /// How the column is made: a computed expression, the watermark.
    pub extra: Option<String>,
}

impl Database {
    pub async fn open(config: Config) -> Result<Arc<Database>> {
        let store = Arc::new(Store::open(&config.data_dir)?);
        let users = Arc::new(crate::auth::Users::open(store.clone())?);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.job.parallelism.max(1))
            .thread_name("sluice-dataflow")
            .thread_stack_size(crate::options::THREAD_STACK_BYTES)
            .enable_all()
            .build()
            .map_err(|e| Error::external(format!("could not start the dataflow runtime: {e}")))?;
        let runtime_handle = runtime.handle().clone();
        let db = Arc::new_cyclic(|weak: &Weak<Database>| {
            let relations: Weak<dyn Relations> = weak.clone();
            Database {
                store,
                users,
                checkpoints: Arc::new(CheckpointSettings::new(config.checkpoint_interval)),
                catalog: RwLock::new(Catalog::default()),
                jobs: Mutex::new(HashMap::new()),
                sinks: Mutex::new(HashMap::new()),
                loaders: Mutex::new(HashMap::new()),
                dead_letters: Arc::new(DeadLetterQueue::new(config.dead_letter_capacity)),
                runtime: Mutex::new(Some(runtime)),
                runtime_handle,
                job_config: config.job.clone(),
                query: QueryEngine::new(relations),
                ddl: tokio::sync::Mutex::new(()),
            }
        });
        db.restore().await?;
        Ok(db)
    }

    pub fn users(&self) -> &Arc<crate::auth::Users> {
        &self.users
    }

    pub fn query_engine(&self) -> &QueryEngine {
        &self.query
    }

    pub fn job_config(&self) -> &JobConfig {
        &self.job_config
    }

    /// The checkpoint settings every job follows.
    pub fn checkpoint_settings(&self) -> &CheckpointSettings {
        &self.checkpoints
    }

    /// Runs the persisted catalog statements again.
    async fn restore(&self) -> Result<()> {
        let records = self.catalog.write().load(&self.store)?;
        let mut views = 0;
        for (seq, record) in &records {
            let origin = Origin::Restored(*seq);
            let parsed = parser::parse_one(&record.sql).map_err(|e| {
                Error::external(format!("could not restore \"{}\": {e}", record.name))
            })?;
            let restored = match (&record.kind, &parsed.statement) {
                (RecordKind::Source, Statement::CreateSource(c)) => {
                    self.add_source(c, &record.sql, &record.sql, origin)
                }
                (RecordKind::Table, Statement::CreateSource(c)) => {
                    self.add_table(c, &record.sql, origin)
                }
                (RecordKind::Sink, Statement::CreateSink(c)) => {
                    self.add_sink(c, &record.sql, origin)
                }
                (RecordKind::MaterializedView, Statement::CreateView(v)) => {
                    views += 1;
                    self.add_view(v, &record.sql, origin).await
                }
                (RecordKind::View, Statement::CreateLogicalView(v)) => {
                    self.add_logical_view(v, &record.sql, origin).await
                }
                _ => Err(Error::internal("catalog record of the wrong kind")),
            };
            restored.map_err(|e| {
                Error::external(format!("could not restore \"{}\": {e}", record.name))
            })?;
        }
        if !records.is_empty() {
            tracing::info!(objects = records.len(), views, "catalog restored");
        }
        // State of views that no longer exist (dropped while a checkpoint
        // was being committed) is garbage.
        let live: Vec<u64> = records.iter().map(|(seq, _)| *seq).collect();
        let mut writes = Writes::default();
        for id in jobs_with_state(&self.store)? {
            if !live.contains(&id) {
                JobKeys::new(id).delete_all(&mut writes);
            }
        }
        if !writes.is_empty() {
            self.store.commit(writes)?;
        }
        Ok(())
    }

    /// `CREATE TABLE/SOURCE`; false if it existed and IF NOT EXISTS was given.
    /// `sql` is the client's text (for error positions), `text` the
    /// statement's own (persisted).
    pub async fn create_source(
        &self,
        create: &CreateSource,
        sql: &str,
        text: &str,
    ) -> Result<bool> {
        let _ddl = self.ddl.lock().await;
        if create.if_not_exists && self.catalog.read().get(&create.name).is_some() {
            return Ok(false);
        }
        if is_keyed_table(create) {
            self.add_table(create, text, Origin::New(&self.store))?;
        } else {
            self.add_source(create, sql, text, Origin::New(&self.store))?;
        }
        Ok(true)
    }

    /// An ordinary table: its rows come back from the store.
    fn add_table(&self, create: &CreateSource, text: &str, origin: Origin<'_>) -> Result<()> {
        self.catalog
            .read()
            .check_free(&create.name)
            .map_err(|e| e.at(create.name_position))?;
        let def = bind_table(create)?;
        let upsert = match create.options.is_empty() {
            true => None,
            false => Some(UpsertKafkaSpec::from_options(
                &create.options,
                &def.schema,
                def.declared.clone(),
                &def.key,
            )?),
        };
        let id = match origin {
            Origin::Restored(seq) => seq,
            // DDL is serialized: the table will get this number.
            Origin::New(_) => self.catalog.read().next_seq(),
        };
        // An upsert-kafka table reads its topic again from the beginning.
        let fresh = matches!(origin, Origin::New(_)) || upsert.is_some();
        let table = Arc::new(ReferenceTable::open(
            &def.name,
            def.schema,
            def.key,
            self.store.clone(),
            id,
            fresh,
        )?);
        let topic = upsert.as_ref().map(|u| u.topic.clone());
        if let Some(spec) = upsert {
            let loader =
                upsert_kafka::start(&create.name, spec, table.clone(), self.dead_letters.clone())?;
            self.loaders.lock().insert(create.name.clone(), loader);
        }
        self.catalog
            .write()
            .add_table(table, topic, &create.name, text, origin)?;
        tracing::info!(table = %create.name, "table created");
        Ok(())
    }

    /// Plans an INSERT, UPDATE or DELETE on an ordinary table, reading the
    /// tables as `scope` shows them (a transaction's own changes). The
    /// caller applies the change, or keeps it in its transaction; it holds
    /// the returned guard until then, so that no other change to tables
    /// comes in between (an UPDATE's rows cannot change meanwhile).
    pub async fn plan_dml(
        &self,
        statement: &sqlparser::ast::Statement,
        scope: &crate::query::Scope,
        params: &crate::query::Parameters,
    ) -> Result<(
        Arc<ReferenceTable>,
        crate::dml::Planned,
        tokio::sync::MutexGuard<'_, ()>,
    )> {
        let name = crate::dml::target(statement)?;
        let guard = self.ddl.lock().await;
        let table = self.ordinary_table(&name)?;
        let planned =
            crate::dml::plan(&self.query, scope, &table, &name, statement, params).await?;
        Ok((table, planned, guard))
    }

    /// Serializes a transaction's commit with DDL and other changes to
    /// tables.
    pub async fn table_lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.ddl.lock().await
    }

    /// `CREATE SINK name FROM view WITH (...)`; false if it existed and IF
    /// NOT EXISTS was given.
    pub async fn create_sink(&self, create: &CreateSink, text: &str) -> Result<bool> {
        let _ddl = self.ddl.lock().await;
        if create.if_not_exists && self.catalog.read().get(&create.name).is_some() {
            return Ok(false);
        }
        self.add_sink_with_query(create, text).await?;
        Ok(true)
    }

    /// Adds sink `create`, with its own view when it has a query (`AS
    /// query`): the query runs as the sink's view, which the sink writes
    /// (and DROP SINK drops); both are kept as the statements that make
    /// them.
    async fn add_sink_with_query(&self, create: &CreateSink, text: &str) -> Result<()> {
        let spec = SinkSpec::from_options(&create.options)?;
        let Some((query, position)) = &create.query else {
            if !spec.reads_commits() {
                return Err(Error::not_supported(format!(
                    "a {} sink takes a query of its own: CREATE SINK {} AS SELECT ... WITH (...), or INSERT INTO a {} table",
                    spec.connector(),
                    create.name,
                    spec.connector()
                )));
            }
            return self.add_sink(create, text, Origin::New(&self.store));
        };
        self.catalog
            .read()
            .check_free(&create.name)
            .map_err(|e| e.at(create.name_position))?;
        let view = sink_view_name(&create.name);
        let view_options = spec.view_options(&create.name);
        let with = match view_options.is_empty() {
            true => String::new(),
            false => format!("WITH ({}) ", options_text(&view_options)),
        };
        let prefix = format!("CREATE MATERIALIZED VIEW {} {with}AS ", quote_ident(&view));
        let view_sql = format!("{prefix}{query}");
        // Errors in the query point into the CREATE SINK statement.
        let shift = position.map_or(0, |p| p as isize - prefix.chars().count() as isize - 1);
        let parsed = parser::parse_one(&view_sql).map_err(|e| e.shifted(shift))?;
        let Statement::CreateView(view_create) = parsed.statement else {
            return Err(Error::internal("a sink's query did not parse as a view"));
        };
        self.add_view(&view_create, &view_sql, Origin::New(&self.store))
            .await
            .map_err(|e| e.shifted(shift))?;
        let sink = CreateSink {
            from: view.clone(),
            query: None,
            from_position: None,
            ..create.clone()
        };
        if let Err(e) = self.add_sink(&sink, &sink_text(create, &view), Origin::New(&self.store)) {
            self.drop_locked(ObjectKind::MaterializedView, &view, true)
                .await?;
            return Err(e);
        }
        Ok(())
    }

    /// Whether `INSERT INTO name` starts a job (a table with a connector)
    /// rather than changing an ordinary table's rows.
    pub fn insert_starts_job(&self, name: &str) -> bool {
        match self.catalog.read().get(name) {
            Some(Entry::Source(s)) => matches!(
                s.plan.spec.connector,
                ConnectorSpec::Kafka(_)
                    | ConnectorSpec::Filesystem(_)
                    | ConnectorSpec::WriteOnly(_)
            ),
            // An upsert-kafka table, written through its topic.
            Some(Entry::Table(t)) => t.topic.is_some(),
            _ => false,
        }
    }

    /// `INSERT INTO table SELECT ...` into a table with a connector: starts
    /// a job, a sink of the table's connector running the query (see
    /// `frontend::insert`). Returns the job's name: `insert_into_<table>`,
    /// numbered from 2 when that is taken.
    pub async fn start_insert(&self, insert: &ast::Insert, sql: &str) -> Result<String> {
        let table = crate::dml::target(&ast::Statement::Insert(insert.clone()))?;
        let _ddl = self.ddl.lock().await;
        let (table_sql, physical) = match self.catalog.read().get(&table) {
            Some(Entry::Source(s)) => (s.sql.clone(), s.plan.physical.clone()),
            // An upsert-kafka table: written into its topic, which it follows.
            Some(Entry::Table(t)) if t.topic.is_some() => (t.sql.clone(), t.table.schema().clone()),
            _ => return Err(Error::undefined_table(&table)),
        };
        let Statement::CreateSource(declared) = parser::parse_one(&table_sql)?.statement else {
            return Err(Error::internal(format!(
                "table \"{table}\" was not kept as a CREATE TABLE"
            )));
        };
        let options = insert::sink_options(&declared)?;
        let target = insert::target_columns(&declared, &physical);
        let listed = match insert.columns.is_empty() {
            true => None,
            false => Some(
                insert
                    .columns
                    .iter()
                    .map(|c| {
                        let name = parser::normalize_object_name(c);
                        target.iter().position(|t| t.name == name).ok_or_else(|| {
                            Error::user(
                                sqlstate::UNDEFINED_COLUMN,
                                format!("column \"{name}\" of relation \"{table}\" does not exist"),
                            )
                        })
                    })
                    .collect::<Result<Vec<usize>>>()?,
            ),
        };
        let mut query = insert::query_of(insert, &table)?;
        let job = self.job_name(&table);
        // The query as written, planned first: its columns, and its errors
        // with positions in the INSERT.
        let (text, position) = insert::query_text(&query, sql);
        let produced = match self.probe(&job, &text, position).await {
            // Columns of an INSERT's query may share names.
            Err(e) if e.sqlstate() == sqlstate::AMBIGUOUS_COLUMN => {
                match insert::with_unique_names(&query) {
                    Some(renamed) => self.probe(&job, &renamed.to_string(), None).await?,
                    None => return Err(e),
                }
            }
            other => other?,
        };
        insert::fit_to_target(&mut query, &produced, &target, listed.as_deref(), &table)?;
        let sink = CreateSink {
            name: job.clone(),
            if_not_exists: false,
            from: String::new(),
            query: Some((query.to_string(), None)),
            options,
            name_position: None,
            from_position: None,
        };
        self.add_sink_with_query(&sink, "").await?;
        tracing::info!(job = %job, table = %table, "INSERT job started");
        Ok(job)
    }

    /// `SHOW JOBS`: a row per job a user started, by name: each
    /// materialized view's, and each sink's or INSERT's (with the job of its
    /// own query, whose rows it counts in).
    pub fn job_list(&self) -> Vec<JobRow> {
        let catalog = self.catalog.read();
        let jobs = self.jobs.lock();
        let sinks = self.sinks.lock();
        let mut rows = Vec::new();
        for (name, entry) in catalog.entries() {
            match entry {
                Entry::View(_) if !name.starts_with(SINK_VIEW_PREFIX) => {
                    if let Some(job) = jobs.get(name) {
                        let (status, error) = job.metrics.status();
                        let totals = job.metrics.totals();
                        rows.push(JobRow {
                            name: name.clone(),
                            status: status.as_str().to_string(),
                            error,
                            writes: format!("materialized view \"{name}\""),
                            rows_in: totals[0],
                            rows_out: totals[1],
                        });
                    }
                }
                Entry::Sink(sink) => {
                    let own = (sink.from == sink_view_name(name))
                        .then(|| jobs.get(&sink.from))
                        .flatten();
                    let run = sinks.get(name);
                    let view_status = own.map(|j| j.metrics.status());
                    let run_status = run.map(|r| r.metrics.status());
                    let (status, error) = match (view_status, run_status) {
                        (Some(v), _) if v.0 == JobStatus::Failed => v,
                        (_, Some(r)) => r,
                        (Some(v), None) => v,
                        (None, None) => (JobStatus::Failed, Some("the sink has no job".into())),
                    };
                    let rows_in = own
                        .map(|j| j.metrics.totals()[0])
                        .or_else(|| run.map(|r| r.metrics.totals()[0]))
                        .unwrap_or(0);
                    let rows_out = run
                        .map(|r| r.metrics.totals()[1])
                        .or_else(|| own.map(|j| j.metrics.totals()[1]))
                        .unwrap_or(0);
                    rows.push(JobRow {
                        name: name.clone(),
                        status: status.as_str().to_string(),
                        error,
                        writes: sink.spec.describe(),
                        rows_in,
                        rows_out,
                    });
                }
                _ => {}
            }
        }
        rows
    }

    /// `STOP JOB name` / `DROP JOB name`: ends a sink's or an INSERT's job
    /// (dropping the sink, and its own view); false if there was none and
    /// `if_exists`.
    pub async fn stop_job_named(&self, name: &str, if_exists: bool) -> Result<bool> {
        let kind = self.catalog.read().get(name).map(|e| e.kind());
        match kind {
            Some(ObjectKind::Sink) => self.drop_object(ObjectKind::Sink, name, false).await,
            Some(ObjectKind::MaterializedView) => Err(Error::user(
                "42809",
                format!("\"{name}\" is a materialized view: DROP MATERIALIZED VIEW {name} ends its job, and ALTER MATERIALIZED VIEW {name} PAUSE pauses it"),
            )),
            None if if_exists => Ok(false),
            _ => Err(Error::user(
                sqlstate::UNDEFINED_OBJECT,
                format!("job \"{name}\" does not exist (SHOW JOBS lists them)"),
            )),
        }
    }

    /// The columns of `query` (1-based `position` in the client's text),
    /// planned as the view of job `job` would be; its errors point into the
    /// client's text.
    async fn probe(&self, job: &str, query: &str, position: Option<usize>) -> Result<SchemaRef> {
        let prefix = format!(
            "CREATE MATERIALIZED VIEW {} AS ",
            quote_ident(&sink_view_name(job))
        );
        let probe_sql = format!("{prefix}{query}");
        let shift = position.map_or(0, |p| p as isize - prefix.chars().count() as isize - 1);
        let Statement::CreateView(probe) = parser::parse_one(&probe_sql)
            .map_err(|e| e.shifted(shift))?
            .statement
        else {
            return Err(Error::internal("an INSERT's query did not parse as a view"));
        };
        let plan = self
            .plan(&probe, &probe_sql)
            .await
            .map_err(|e| e.shifted(shift))?;
        Ok(plan.output)
    }

    /// A free name for a job writing into `table`.
    fn job_name(&self, table: &str) -> String {
        let catalog = self.catalog.read();
        let base = format!("insert_into_{table}");
        let taken = |n: &str| catalog.get(n).is_some() || catalog.get(&sink_view_name(n)).is_some();
        if !taken(&base) {
            return base;
        }
        (2..)
            .map(|i| format!("{base}_{i}"))
            .find(|n| !taken(n))
            .expect("some number is free")
    }

    /// Starts a sink writing its view's committed log (or, for print and
    /// blackhole sinks, whose views do the work, just records it).
    fn add_sink(&self, create: &CreateSink, text: &str, origin: Origin<'_>) -> Result<()> {
        self.catalog
            .read()
            .check_free(&create.name)
            .map_err(|e| e.at(create.name_position))?;
        let spec = SinkSpec::from_options(&create.options)?;
        let id = match origin {
            Origin::Restored(seq) => seq,
            Origin::New(_) => {
                // DDL is serialized: the sink will get this number.
                let id = self.catalog.read().next_seq();
                kafka_sink::forget(&self.store, id)?;
                file_sink::forget(&self.store, id)?;
                id
            }
        };
        let log = match spec.reads_commits() {
            true => Some(
                self.committed_log(&create.from, LogReader::Sink)
                    .map_err(|e| e.at(create.from_position))?,
            ),
            false => None,
        };
        let run = match (&spec, log) {
            (SinkSpec::Kafka(kafka), Some(log)) => Some(kafka_sink::start(
                &create.name,
                id,
                kafka.clone(),
                log.feed,
                log.shards,
                &log.schema,
                self.store.clone(),
            )?),
            (SinkSpec::Filesystem(files), Some(log)) => {
                let Feed::Appends(appends) = log.feed else {
                    return Err(Error::not_supported(format!(
                        "a filesystem sink writes rows that never change, and the rows of \"{}\" change (an aggregation without a window, or with EMIT before the window closes); write it to Kafka, or window it",
                        create.from
                    ))
                    .at(create.from_position));
                };
                let upstream = self
                    .jobs
                    .lock()
                    .get(&create.from)
                    .map(|j| j.metrics.clone());
                Some(file_sink::start(
                    &create.name,
                    id,
                    files.clone(),
                    appends,
                    log.shards,
                    log.schema,
                    self.store.clone(),
                    upstream,
                )?)
            }
            // Print and blackhole sinks: their views do the work.
            _ => None,
        };
        self.catalog
            .write()
            .add_sink(&create.name, &create.from, spec, text, origin)?;
        if let Some(run) = run {
            self.sinks.lock().insert(create.name.clone(), run);
        }
        tracing::info!(sink = %create.name, view = %create.from, "sink created");
        Ok(())
    }

    /// `SUBSCRIBE TO view`: its committed log, to stream.
    pub fn subscribe(&self, view: &str) -> Result<Subscription> {
        self.committed_log(view, LogReader::Subscribe)
    }

    /// What `view`'s checkpoints commit, for a sink or a subscription: the
    /// log of rows added, or the changes of a view whose rows change.
    fn committed_log(&self, view: &str, reader: LogReader) -> Result<Subscription> {
        let (plan, id, _) = self.view_entry(view)?;
        if self.checkpoints.interval().is_none() {
            return Err(Error::not_supported(match reader {
                LogReader::Sink => format!(
                    "a sink of \"{view}\" writes what its checkpoints commit, and checkpoints are off (SET checkpoint_interval = '1s')"
                ),
                LogReader::Subscribe => format!(
                    "SUBSCRIBE streams what the checkpoints of \"{view}\" commit, and checkpoints are off (SET checkpoint_interval = '1s')"
                ),
            }));
        }
        let shards = self
            .jobs
            .lock()
            .get(view)
            .map(|j| j.view.shard_count())
            .ok_or_else(|| Error::internal(format!("view \"{view}\" has no job")))?;
        let keys = JobKeys::new(id);
        let feed = match plan.key_schema() {
            None => Feed::Appends(ViewLog::new(self.store.clone(), keys, plan.output.clone())?),
            Some(key) => Feed::Changes(ChangeLog::new(
                self.store.clone(),
                keys,
                plan.output.clone(),
                key,
            )?),
        };
        Ok(Subscription {
            view: view.to_string(),
            feed,
            shards,
            schema: plan.output.clone(),
        })
    }

    /// The ordinary table `name`, or why there is none.
    pub fn ordinary_table(&self, name: &str) -> Result<Arc<ReferenceTable>> {
        match self.catalog.read().get(name) {
            Some(Entry::Table(t)) => match &t.topic {
                None => Ok(t.table.clone()),
                Some(topic) => Err(Error::not_supported(format!(
                    "\"{name}\" follows Kafka topic \"{topic}\" (upsert-kafka): change its rows there"
                ))),
            },
            Some(Entry::Source(_)) => Err(Error::not_supported(format!(
                "\"{name}\" is a source: its rows come from its connector; only ordinary tables (CREATE TABLE without a connector) take INSERT, UPDATE, DELETE and COPY"
            ))),
            Some(Entry::View(_)) => Err(Error::user(
                "42809",
                format!("\"{name}\" is a materialized view: its rows come from its query"),
            )),
            Some(Entry::LogicalView(_)) => Err(Error::user(
                "42809",
                format!("\"{name}\" is a view: its rows come from its query"),
            )),
            Some(Entry::Sink(_)) | None => Err(Error::undefined_table(name)),
        }
    }

    fn add_source(
        &self,
        create: &CreateSource,
        sql: &str,
        text: &str,
        origin: Origin<'_>,
    ) -> Result<()> {
        self.catalog
            .read()
            .check_free(&create.name)
            .map_err(|e| e.at(create.name_position))?;
        let state = crate::functions::session_context().state();
        let plan = Arc::new(bind_source(&state, create, sql)?);
        if create
            .options
            .iter()
            .any(|(k, _)| k.starts_with("sink.") || k.starts_with("partition."))
        {
            SinkSpec::from_options(&insert::sink_options(create)?)?;
        }
        self.catalog.write().add_source(plan, text, origin)?;
        tracing::info!(source = %create.name, "source created");
        Ok(())
    }

    /// `CREATE MATERIALIZED VIEW`; false if it existed and IF NOT EXISTS was
    /// given.
    pub async fn create_view(&self, create: &CreateView, sql: &str) -> Result<bool> {
        if create.name.starts_with(SINK_VIEW_PREFIX) {
            return Err(Error::user(
                "42939",
                format!(
                    "view names starting with \"{SINK_VIEW_PREFIX}\" are reserved for the queries of sinks (CREATE SINK ... AS)"
                ),
            ));
        }
        let _ddl = self.ddl.lock().await;
        if create.if_not_exists && self.catalog.read().get(&create.name).is_some() {
            return Ok(false);
        }
        self.add_view(create, sql, Origin::New(&self.store)).await?;
        Ok(true)
    }

    /// `CREATE VIEW`: a logical view. Returns false if it existed and IF
    /// NOT EXISTS was given.
    pub async fn create_logical_view(
        &self,
        create: &CreateLogicalView,
        text: &str,
    ) -> Result<bool> {
        let _ddl = self.ddl.lock().await;
        if create.if_not_exists && self.catalog.read().get(&create.name).is_some() {
            return Ok(false);
        }
        self.add_logical_view(create, text, Origin::New(&self.store))
            .await?;
        Ok(true)
    }

    async fn add_logical_view(
        &self,
        create: &CreateLogicalView,
        text: &str,
        origin: Origin<'_>,
    ) -> Result<()> {
        self.catalog
            .read()
            .check_free(&create.name)
            .map_err(|e| e.at(create.name_position))?;
        let mut query = (*create.query).clone();
        crate::frontend::views::name_field_paths(&mut query);
        if !create.columns.is_empty() {
            // v (a, b) AS query: the query's columns renamed.
            let columns: Vec<String> = create.columns.iter().map(|c| quote_ident(c)).collect();
            let wrapped = format!(
                "SELECT * FROM ({query}) AS {} ({})",
                quote_ident(&create.name),
                columns.join(", ")
            );
            query = match parser::parse_one(&wrapped)?.statement {
                Statement::Query(q) => match *q {
                    ast::Statement::Query(q) => *q,
                    _ => return Err(Error::internal("a view's query did not parse")),
                },
                _ => return Err(Error::internal("a view's query did not parse")),
            };
        }
        let reads = crate::frontend::views::relations_read(&query);
        // Planned now, to check it and to know its columns.
        let statement = ast::Statement::Query(Box::new(query.clone()));
        let planned = self
            .query
            .plan(&statement, text, &crate::query::Scope::default(), &[])
            .await?;
        let schema = planned.schema();
        self.catalog.write().add_logical_view(
            &create.name,
            Arc::new(query),
            schema,
            reads,
            text,
            origin,
        )?;
        Ok(())
    }

    async fn plan(&self, create: &CreateView, sql: &str) -> Result<StreamPlan> {
        self.catalog.read().check_free(&create.name)?;
        // Logical views are expanded in place.
        let mut expanded = create.clone();
        let views: HashMap<String, Arc<ast::Query>> = self
            .catalog
            .read()
            .entries()
            .filter_map(|(name, e)| match e {
                Entry::LogicalView(v) => Some((name.clone(), v.query.clone())),
                _ => None,
            })
            .collect();
        // Flink's GROUP BY TUMBLE/HOP/SESSION(...) becomes a window over
        // the relation it names first, so that a window over a logical view
        // can move onto the view's source.
        crate::frontend::group_window::rewrite_group_windows(&mut expanded.query, sql)?;
        crate::frontend::views::expand(expanded.query.as_mut(), &|name| views.get(name).cloned())?;
        crate::frontend::views::name_field_paths(&mut expanded.query);
        let create = &expanded;
        // A snapshot of the catalog, so that planning does not hold a lock.
        let snapshot: HashMap<String, Entry> = self
            .catalog
            .read()
            .entries()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let shards: HashMap<String, usize> = self
            .jobs
            .lock()
            .iter()
            .map(|(name, job)| (name.clone(), job.view.shard_count()))
            .collect();
        let lookup = |name: &str| {
            match snapshot.get(name) {
            Some(Entry::Source(s)) => match &s.plan.spec.connector {
                ConnectorSpec::WriteOnly(sink) => planner::Relation::View(
                    crate::connector::write_only(name, sink).to_string(),
                ),
                _ => planner::Relation::Source(s.plan.clone()),
            },
            Some(Entry::Table(t)) => planner::Relation::Table(t.table.clone()),
            Some(Entry::Sink(_)) => planner::Relation::View(format!(
                "\"{name}\" is a sink: it writes rows out, and has none to read"
            )),
            Some(Entry::LogicalView(_)) => planner::Relation::View(format!(
                "windows over the logical view \"{name}\" are not supported yet: name its source in the window (TUMBLE(TABLE source, ...)) and filter after it"
            )),
            Some(Entry::View(_)) if self.checkpoints.interval().is_none() => {
                planner::Relation::View(format!(
                    "a view over \"{name}\" reads what its checkpoints commit, and checkpoints are off (SET checkpoint_interval = '1s')"
                ))
            }
            Some(Entry::View(v)) if v.plan.rows != ViewRows::Kept => planner::Relation::View(format!(
                "\"{name}\" is the query of a print or blackhole sink, which keeps no rows"
            )),
            Some(entry @ Entry::View(v)) => match shards.get(name) {
                Some(shards) => match planner::view_source(&v.plan, entry.seq(), *shards) {
                    Ok(source) => planner::Relation::Source(Arc::new(source)),
                    Err(e) => planner::Relation::View(e.to_string()),
                },
                None => planner::Relation::View(format!("materialized view \"{name}\" has no job")),
            },
            None => planner::Relation::Unknown,
        }
        };
        let plan = plan_view(create, sql, &lookup).await?;
        if plan.rows != ViewRows::Kept && !create.name.starts_with(SINK_VIEW_PREFIX) {
            return Err(Error::invalid_parameter(
                "option 'rows' is for the views of sinks; a print or blackhole sink takes it from its connector",
            ));
        }
        Ok(plan)
    }

    /// Starts the job of view `id`, from its last checkpoint if it has one.
    fn start_job(&self, plan: Arc<StreamPlan>, id: u64, paused: bool) -> Result<Job> {
        let state = crate::functions::session_context().state();
        let durability = Durability {
            store: self.store.clone(),
            keys: JobKeys::new(id),
            settings: self.checkpoints.clone(),
        };
        Job::start(
            plan,
            &state,
            &self.runtime_handle,
            &self.job_config,
            self.dead_letters.clone(),
            &durability,
            paused,
        )
    }

    /// A view's plan, job id and definition; 42P01 if there is no such view.
    fn view_entry(&self, name: &str) -> Result<(Arc<StreamPlan>, u64, String)> {
        match self.catalog.read().get(name) {
            Some(entry @ Entry::View(v)) => Ok((v.plan.clone(), entry.seq(), v.sql.clone())),
            Some(_) => Err(Error::user(
                "42809",
                format!("\"{name}\" is not a materialized view"),
            )),
            None => Err(Error::user(
                sqlstate::UNDEFINED_TABLE,
                format!("materialized view \"{name}\" does not exist"),
            )),
        }
    }

    /// Takes a checkpoint of a running view and waits for its commit.
    async fn checkpoint_view(&self, name: &str) -> Result<()> {
        // The job stays in the map while we wait: take what waiting needs.
        let wait = self
            .jobs
            .lock()
            .get(name)
            .and_then(|j| j.checkpoint_waiter());
        if let Some(wait) = wait {
            if !wait.checkpoint_now(VIEW_CHECKPOINT_TIMEOUT).await {
                return Err(Error::external(format!(
                    "could not take a checkpoint of materialized view \"{name}\" in time"
                )));
            }
        }
        Ok(())
    }

    /// Stops a view's job and waits until it writes nothing more.
    async fn stop_job(&self, name: &str) {
        let job = self.jobs.lock().remove(name);
        if let Some(job) = job {
            job.stop().await;
        }
    }

    /// `ALTER MATERIALIZED VIEW name PAUSE | RESUME [FROM SAVEPOINT s]`.
    pub async fn alter_view(&self, name: &str, action: &ViewAction) -> Result<()> {
        let _ddl = self.ddl.lock().await;
        let (plan, id, sql) = self.view_entry(name)?;
        let status = self.jobs.lock().get(name).map(|j| j.metrics.status().0);
        match action {
            ViewAction::Pause => {
                match status {
                    Some(JobStatus::Paused) => return Ok(()),
                    Some(JobStatus::Finished) => {
                        return Err(Error::user(
                            "55000",
                            format!(
                                "materialized view \"{name}\" is finished: its sources have ended"
                            ),
                        ))
                    }
                    _ => {}
                }
                self.checkpoint_view(name).await?;
                // Marked first: if the store cannot be written, the view
                // goes on as it was.
                self.store.put_meta(&paused_key(id), b"paused")?;
                self.stop_job(name).await;
                let job = self.start_job(plan, id, true)?;
                self.jobs.lock().insert(name.to_string(), job);
                tracing::info!(view = %name, "paused");
            }
            ViewAction::Resume { savepoint: None } => {
                if matches!(status, Some(JobStatus::Running | JobStatus::Finished)) {
                    return Ok(());
                }
                self.store.delete_meta(&paused_key(id))?;
                self.stop_job(name).await;
                let job = self.start_job(plan, id, false)?;
                self.jobs.lock().insert(name.to_string(), job);
                tracing::info!(view = %name, "resumed");
            }
            ViewAction::Resume {
                savepoint: Some(savepoint),
            } => {
                let dependents = self.catalog.read().dependents(name);
                if let Some(over) = dependents.first() {
                    // Going back would take back rows the views and sinks
                    // over it have already read.
                    let kind = self
                        .catalog
                        .read()
                        .get(over)
                        .map(|e| e.kind().name())
                        .unwrap_or("materialized view");
                    return Err(Error::user(
                        "55000",
                        format!(
                            "materialized view \"{name}\" cannot go back to a savepoint while {kind} \"{over}\" reads it"
                        ),
                    )
                    .with_hint("drop the views and sinks over it first"));
                }
                let record = self.savepoint(savepoint)?;
                if record.sql != sql {
                    return Err(Error::user(
                        "55000",
                        format!(
                            "savepoint \"{savepoint}\" was taken of another definition of materialized view \"{}\"",
                            record.view
                        ),
                    )
                    .with_hint("a savepoint can start a view defined by the same statement"));
                }
                self.stop_job(name).await;
                let copied =
                    JobKeys::copy(&self.store, JobKeys::savepoint(record.id), JobKeys::new(id))
                        .and_then(|()| self.store.delete_meta(&paused_key(id)));
                if let Err(e) = copied {
                    // The copy is one atomic write: the view's state is
                    // either the savepoint's or its own. It comes back
                    // paused, as the failed statement leaves it.
                    let _ = self.store.put_meta(&paused_key(id), b"paused");
                    let job = self.start_job(plan, id, true)?;
                    self.jobs.lock().insert(name.to_string(), job);
                    return Err(e);
                }
                let job = self.start_job(plan, id, false)?;
                self.jobs.lock().insert(name.to_string(), job);
                tracing::info!(view = %name, %savepoint, epoch = record.epoch, "resumed from savepoint");
            }
        }
        Ok(())
    }

    fn savepoint(&self, name: &str) -> Result<SavepointRecord> {
        let Some(bytes) = self.store.get_meta(&savepoint_key(name))? else {
            return Err(Error::user(
                "42704",
                format!("savepoint \"{name}\" does not exist"),
            ));
        };
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::external(format!("savepoint \"{name}\" is unreadable: {e}")))
    }

    /// Every savepoint, by name.
    pub fn savepoints(&self) -> Result<Vec<SavepointRecord>> {
        self.store
            .scan_meta(SAVEPOINT_PREFIX)?
            .into_iter()
            .map(|(k, v)| {
                serde_json::from_slice(&v)
                    .map_err(|e| Error::external(format!("the savepoint {k} is unreadable: {e}")))
            })
            .collect()
    }

    /// `CREATE SAVEPOINT name FOR MATERIALIZED VIEW view`: a named copy of
    /// the view's state as of a checkpoint taken now.
    pub async fn create_savepoint(&self, name: &str, view: &str) -> Result<()> {
        let _ddl = self.ddl.lock().await;
        let (_, id, sql) = self.view_entry(view)?;
        if self.store.get_meta(&savepoint_key(name))?.is_some() {
            return Err(Error::user(
                "42710",
                format!("savepoint \"{name}\" already exists"),
            ));
        }
        self.checkpoint_view(view).await?;
        let savepoint_id = self
            .savepoints()?
            .iter()
            .map(|s| s.id + 1)
            .max()
            .unwrap_or(1);
        let keys = JobKeys::savepoint(savepoint_id);
        JobKeys::copy(&self.store, JobKeys::new(id), keys)?;
        let Some(saved) = Restored::load(&self.store, keys)? else {
            keys.delete_from(&self.store)?;
            return Err(Error::user(
                "55000",
                format!("materialized view \"{view}\" has no checkpoint yet (checkpoints are off)"),
            )
            .with_hint("SET checkpoint_interval = '1s'"));
        };
        let record = SavepointRecord {
            name: name.to_string(),
            view: view.to_string(),
            sql,
            id: savepoint_id,
            epoch: saved.record.epoch,
            created_at: chrono::Utc::now().timestamp_millis(),
        };
        let value = serde_json::to_vec(&record).map_err(|e| Error::internal(e.to_string()))?;
        self.store.put_meta(&savepoint_key(name), &value)?;
        tracing::info!(%view, savepoint = %name, epoch = record.epoch, "savepoint taken");
        Ok(())
    }

    /// `DROP SAVEPOINT`; false if it did not exist and IF EXISTS was given.
    pub async fn drop_savepoint(&self, name: &str, if_exists: bool) -> Result<bool> {
        let _ddl = self.ddl.lock().await;
        let record = match self.savepoint(name) {
            Ok(r) => r,
            Err(_) if if_exists => return Ok(false),
            Err(e) => return Err(e),
        };
        JobKeys::savepoint(record.id).delete_from(&self.store)?;
        self.store.delete_meta(&savepoint_key(name))?;
        Ok(true)
    }

    async fn add_view(&self, create: &CreateView, sql: &str, origin: Origin<'_>) -> Result<()> {
        let plan = Arc::new(self.plan(create, sql).await?);
        let id = match origin {
            Origin::Restored(seq) => seq,
            Origin::New(_) => {
                // A file source's path is there (a table written by INSERT
                // need not have one until it is read).
                for source in plan.sources() {
                    source.spec.check()?;
                }
                // DDL is serialized: the view will get this number.
                let id = self.catalog.read().next_seq();
                JobKeys::new(id).delete_from(&self.store)?;
                id
            }
        };
        let paused = matches!(origin, Origin::Restored(_))
            && self.store.get_meta(&paused_key(id))?.is_some();
        let job = self.start_job(plan.clone(), id, paused)?;
        self.catalog.write().add_view(plan, &create.sql, origin)?;
        self.jobs.lock().insert(create.name.clone(), job);
        tracing::info!(view = %create.name, "materialized view created");
        Ok(())
    }

    /// `EXPLAIN CREATE MATERIALIZED VIEW`: the operator graph.
    pub async fn explain_view(&self, create: &CreateView, sql: &str) -> Result<String> {
        let plan = self.plan(create, sql).await?;
        Ok(plan.explain(self.job_config.parallelism))
    }

    /// `DROP ...`; false if it did not exist and IF EXISTS was given.
    pub async fn drop_object(&self, kind: ObjectKind, name: &str, if_exists: bool) -> Result<bool> {
        let _ddl = self.ddl.lock().await;
        let dropped = self.drop_locked(kind, name, if_exists).await?;
        // A sink made by CREATE SINK ... AS takes its own view with it.
        if dropped && kind == ObjectKind::Sink {
            self.drop_locked(ObjectKind::MaterializedView, &sink_view_name(name), true)
                .await?;
        }
        Ok(dropped)
    }

    /// DROP, with the DDL lock held.
    async fn drop_locked(&self, kind: ObjectKind, name: &str, if_exists: bool) -> Result<bool> {
        let Some(removed) = self.remove_from_catalog(kind, name, if_exists)? else {
            return Ok(false);
        };
        self.stop_job(name).await;
        self.dead_letters.remove_job(name);
        match &removed {
            Entry::View(_) => {
                let seq = removed.seq();
                JobKeys::new(seq).delete_from(&self.store)?;
                self.store.delete_meta(&paused_key(seq))?;
            }
            Entry::Table(t) => {
                let loader = self.loaders.lock().remove(name);
                if let Some(loader) = loader {
                    tokio::task::block_in_place(|| loader.stop());
                }
                t.table.delete_all()?
            }
            Entry::Sink(_) => {
                let run = self.sinks.lock().remove(name);
                if let Some(run) = run {
                    tokio::task::block_in_place(|| run.stop());
                }
                kafka_sink::forget(&self.store, removed.seq())?;
                file_sink::forget(&self.store, removed.seq())?;
            }
            Entry::Source(_) | Entry::LogicalView(_) => {}
        }
        tracing::info!(object = %name, "dropped");
        Ok(true)
    }

    /// Removes an object of `kind` from the catalog (checking what DROP
    /// checks); None if it did not exist and `if_exists`.
    fn remove_from_catalog(
        &self,
        kind: ObjectKind,
        name: &str,
        if_exists: bool,
    ) -> Result<Option<Entry>> {
        let mut catalog = self.catalog.write();
        let Some(entry) = catalog.get(name) else {
            if if_exists {
                return Ok(None);
            }
            return Err(match kind {
                ObjectKind::MaterializedView | ObjectKind::Sink => Error::user(
                    sqlstate::UNDEFINED_TABLE,
                    format!("{} \"{name}\" does not exist", kind.name()),
                ),
                _ => Error::undefined_table(name),
            });
        };
        let actual = entry.kind();
        let matches = match kind {
            ObjectKind::MaterializedView | ObjectKind::Sink | ObjectKind::View => actual == kind,
            ObjectKind::Table | ObjectKind::Source => {
                matches!(actual, ObjectKind::Table | ObjectKind::Source)
            }
        };
        if !matches {
            let hint = match actual {
                ObjectKind::MaterializedView => "DROP MATERIALIZED VIEW",
                ObjectKind::View => "DROP VIEW",
                ObjectKind::Sink => "DROP SINK",
                _ => "DROP TABLE",
            };
            return Err(
                Error::user("42809", format!("\"{name}\" is not a {}", kind.name()))
                    .with_hint(format!("use {hint} {name}")),
            );
        }
        let dependents = catalog.dependents(name);
        if let Some(dependent) = dependents.first() {
            let what = match actual {
                ObjectKind::MaterializedView => "materialized view",
                ObjectKind::View => "view",
                _ => "table",
            };
            let by = catalog
                .get(dependent)
                .map(|e| e.kind().name())
                .unwrap_or("materialized view");
            return Err(Error::user(
                sqlstate::DEPENDENT_OBJECTS_STILL_EXIST,
                format!("cannot drop {what} \"{name}\" because {by} \"{dependent}\" depends on it"),
            )
            .with_hint("drop the views and sinks that read it first"));
        }
        catalog.remove(name, &self.store)
    }

    /// Names of the objects of a kind (tables and sources are the same).
    pub fn object_names(&self, kind: ObjectKind) -> Vec<String> {
        let want = match kind {
            ObjectKind::MaterializedView | ObjectKind::Sink | ObjectKind::View => kind,
            _ => ObjectKind::Source,
        };
        self.catalog
            .read()
            .entries()
            .filter(|(name, e)| match e.kind() {
                ObjectKind::Table => want == ObjectKind::Source,
                // A sink's own view goes with the sink.
                ObjectKind::MaterializedView => {
                    want == ObjectKind::MaterializedView && !name.starts_with(SINK_VIEW_PREFIX)
                }
                k => k == want,
            })
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// The columns of a source or view, for `DESCRIBE`.
    pub fn describe(&self, name: &str) -> Result<Vec<ColumnInfo>> {
        let catalog = self.catalog.read();
        let entry = catalog
            .get(name)
            .ok_or_else(|| Error::undefined_table(name))?;
        let (schema, extras): (SchemaRef, Vec<Option<String>>) = match entry {
            Entry::LogicalView(v) => (v.schema.clone(), vec![None; v.schema.fields().len()]),
            Entry::Sink(s) => {
                return Err(Error::user(
                    "42809",
                    format!(
                        "\"{name}\" is a sink (of \"{}\" to {}): it has no columns of its own",
                        s.from,
                        s.spec.describe()
                    ),
                ))
            }
            Entry::Source(s) => {
                let extras = s
                    .plan
                    .columns
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        let computed = match c {
                            crate::dataflow::plan::ColumnSource::Computed { sql, .. } => {
                                Some(format!("AS {sql}"))
                            }
                            crate::dataflow::plan::ColumnSource::Physical(_) => None,
                        };
                        let watermark = s
                            .plan
                            .rowtime
                            .as_ref()
                            .filter(|r| r.index == i)
                            .map(|r| format!("WATERMARK AS {}", r.watermark_sql));
                        match (computed, watermark) {
                            (Some(a), Some(b)) => Some(format!("{a}; {b}")),
                            (a, b) => a.or(b),
                        }
                    })
                    .collect();
                (s.plan.schema.clone(), extras)
            }
            Entry::Table(t) => {
                let schema = t.table.schema().clone();
                let extras = (0..schema.fields().len())
                    .map(|i| {
                        t.table
                            .key()
                            .contains(&i)
                            .then(|| "PRIMARY KEY".to_string())
                    })
                    .collect();
                (schema, extras)
            }
            Entry::View(v) => (
                v.plan.output.clone(),
                vec![None; v.plan.output.fields().len()],
            ),
        };
        Ok(schema
            .fields()
            .iter()
            .zip(extras)
            .map(|(f, extra)| ColumnInfo {
                name: f.name().clone(),
                data_type: crate::frontend::types::sql_name(f.data_type()),
                nullable: f.is_nullable(),
                extra,
            })
            .collect())
    }

    /// The statement that created an object.
    pub fn definition(&self, name: &str) -> Option<String> {
        match self.catalog.read().get(name)? {
            Entry::Source(s) => Some(s.sql.clone()),
            Entry::Table(t) => Some(t.sql.clone()),
            Entry::View(v) => Some(v.sql.clone()),
            Entry::Sink(s) => Some(s.sql.clone()),
            Entry::LogicalView(v) => Some(v.sql.clone()),
        }
    }

    /// Takes a last checkpoint of every job (so a restart goes on from
    /// here), then stops every job and the dataflow runtime.
    pub async fn shutdown(&self) {
        let jobs: Vec<Job> = self.jobs.lock().drain().map(|(_, j)| j).collect();
        if self.checkpoints.interval().is_some() {
            let waits = jobs
                .iter()
                .map(|j| j.checkpoint_now(SHUTDOWN_CHECKPOINT_TIMEOUT));
            let done = futures::future::join_all(waits).await;
            let missed = done.iter().filter(|ok| !**ok).count();
            if missed > 0 {
                tracing::warn!(
                    views = missed,
                    "no final checkpoint in time; those views go on from their previous one"
                );
            }
        }
        // Sinks save what the broker has acknowledged.
        let workers: Vec<Worker> = self
            .sinks
            .lock()
            .drain()
            .chain(self.loaders.lock().drain())
            .map(|(_, w)| w)
            .collect();
        tokio::task::block_in_place(|| workers.into_iter().for_each(Worker::stop));
        // Wait until no task of any job runs (none is left writing); a job
        // stuck past the timeout is left to the runtime's shutdown.
        let stops = futures::future::join_all(jobs.into_iter().map(|j| j.stop()));
        if tokio::time::timeout(SHUTDOWN_STOP_TIMEOUT, stops)
            .await
            .is_err()
        {
            tracing::warn!("some views did not stop in time");
        }
        if let Some(runtime) = self.runtime.lock().take() {
            runtime.shutdown_background();
        }
        self.store.shut_down();
    }
}

impl Relations for Database {
    fn users(&self) -> Vec<crate::auth::User> {
        self.users.list()
    }

    fn logical_view(&self, name: &str) -> Option<Arc<ast::Query>> {
        match self.catalog.read().get(name)? {
            Entry::LogicalView(v) => Some(v.query.clone()),
            _ => None,
        }
    }

    fn view_query(&self, name: &str) -> Option<String> {
        let sql = match self.catalog.read().get(name)? {
            Entry::LogicalView(v) => return Some(v.query.to_string()),
            Entry::View(v) => v.sql.clone(),
            _ => return None,
        };
        match parser::parse_one(&sql).ok()?.statement {
            Statement::CreateView(v) => Some(v.query.to_string()),
            _ => None,
        }
    }

    fn relation(&self, name: &str) -> Option<Relation> {
        let catalog = self.catalog.read();
        match catalog.get(name)? {
            Entry::Source(s) => Some(Relation::Source(s.plan.schema.clone())),
            Entry::LogicalView(v) => Some(Relation::Logical(v.schema.clone())),
            Entry::Table(t) => Some(Relation::Table(t.table.clone())),
            Entry::Sink(_) => None,
            Entry::View(_) => self
                .jobs
                .lock()
                .get(name)
                .map(|j| Relation::View(j.view.clone())),
        }
    }

    fn relation_names(&self) -> Vec<String> {
        self.catalog
            .read()
            .entries()
            .filter(|(_, e)| !matches!(e, Entry::Sink(_)))
            .map(|(n, _)| n.clone())
            .collect()
    }

    fn jobs(&self) -> Vec<(Arc<JobMetrics>, String)> {
        let mut jobs: Vec<(Arc<JobMetrics>, String)> = self
            .jobs
            .lock()
            .values()
            .map(|j| {
                let sources: Vec<&str> = j.plan.sources().iter().map(|s| s.name.as_str()).collect();
                (j.metrics.clone(), sources.join(", "))
            })
            .collect();
        // A sink's source is the view it writes; a table loader's, its topic.
        let catalog = self.catalog.read();
        for (name, loader) in self.loaders.lock().iter() {
            if let Some(Entry::Table(t)) = catalog.get(name) {
                jobs.push((loader.metrics.clone(), t.topic.clone().unwrap_or_default()));
            }
        }
        for (name, run) in self.sinks.lock().iter() {
            if let Some(Entry::Sink(s)) = catalog.get(name) {
                jobs.push((run.metrics.clone(), s.from.clone()));
            }
        }
        jobs
    }

    fn dead_letters(&self) -> Vec<DeadLetter> {
        self.dead_letters.snapshot()
    }

    fn savepoints(&self) -> Vec<SavepointRecord> {
        Database::savepoints(self).unwrap_or_default()
    }
}

/// A row of `SHOW JOBS`.
pub struct JobRow {
    pub name: String,
    pub status: String,
    pub error: Option<String>,
    /// Where its rows go: `Kafka topic "t"`, `materialized view "v"`.
    pub writes: String,
    pub rows_in: u64,
    pub rows_out: u64,
}

/// The view that runs the query of `CREATE SINK name AS query`.
pub fn sink_view_name(sink: &str) -> String {
    format!("{SINK_VIEW_PREFIX}{sink}")
}

/// Views whose names start so belong to a sink (`CREATE SINK ... AS`).
pub const SINK_VIEW_PREFIX: &str = "__sink_";

/// An identifier as SQL text, double-quoted.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'key' = 'value', ...` as SQL text.
fn options_text(options: &[(String, String)]) -> String {
    let options: Vec<String> = options
        .iter()
        .map(|(k, v)| format!("{} = {}", quote_literal(k), quote_literal(v)))
        .collect();
    options.join(", ")
}

/// The statement that makes sink `create` from view `from`, as persisted.
fn sink_text(create: &CreateSink, from: &str) -> String {
    format!(
        "CREATE SINK {} FROM {} WITH ({})",
        quote_ident(&create.name),
        quote_ident(from),
        options_text(&create.options)
    )
}

/// A string literal as SQL text.
fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}
