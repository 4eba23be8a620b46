//! Ad-hoc queries: DataFusion over the live contents of views.
//!
//! The session's catalog `sluice` has the schema `public`, which resolves
//! names against the server's catalog at planning time (each view is a
//! [`ViewTable`] that scans the view's current rows), the schema `sluice`
//! with the system tables, and `pg_catalog` for Postgres clients. The full
//! SELECT language of DataFusion works on them: joins between views, ORDER
//! BY, LIMIT, window functions, aggregates.

mod built;
pub mod information_schema;
pub mod pg_catalog;
pub mod pg_functions;
pub mod postgres;
pub mod system;

use std::fmt;
use std::sync::{Arc, Weak};

use std::collections::HashMap;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, SchemaProvider, Session, TableProvider};
use datafusion::common::{DataFusionError, ScalarValue};
use datafusion::datasource::TableType;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DFStatement;
use futures::StreamExt;
use sqlparser::ast;

use crate::error::{Error, Result};
use crate::metrics::{DeadLetter, JobMetrics};
use crate::state::reference::{ReferenceTable, Snapshot};
use crate::state::view::{ShardScan, ViewStore};

/// What the query engine needs from the server: its relations and jobs.
pub trait Relations: Send + Sync + 'static {
    fn relation(&self, name: &str) -> Option<Relation>;
    fn relation_names(&self) -> Vec<String>;
    /// Every job, with the name of its source.
    fn jobs(&self) -> Vec<(Arc<JobMetrics>, String)>;
    fn dead_letters(&self) -> Vec<DeadLetter>;
    fn savepoints(&self) -> Vec<crate::state::checkpoint::SavepointRecord>;
    /// The users (roles) of the server.
    fn users(&self) -> Vec<crate::auth::User>;
    /// The query of a materialized or logical view, as SQL text.
    fn view_query(&self, name: &str) -> Option<String>;
    /// The query of a logical view, to expand where it is named.
    fn logical_view(&self, name: &str) -> Option<Arc<ast::Query>>;
}

#[derive(Clone)]
pub enum Relation {
    View(Arc<ViewStore>),
    /// An ordinary table: its rows now.
    Table(Arc<crate::state::reference::ReferenceTable>),
    /// A streaming source: it has a schema but no stored rows.
    Source(SchemaRef),
    /// A logical view (its references are expanded before planning; this
    /// gives its columns to the catalog tables).
    Logical(SchemaRef),
}

/// Runs queries.
pub struct QueryEngine {
    ctx: SessionContext,
    /// The catalog, for the logical views a query names.
    relations: Weak<dyn Relations>,
}

/// What one session's queries see that others' do not: the rows of
/// ordinary tables as its transaction has them, where they differ from the
/// committed rows (its own changes, not yet committed), and who it is (for
/// `current_user`).
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub tables: HashMap<String, Arc<Snapshot>>,
    pub user: String,
    /// The session's open cursors (`pg_cursors`).
    pub cursors: Vec<CursorInfo>,
    /// The connection's number (`pg_backend_pid()`).
    pub pid: i32,
    /// The session's settings, by lower-case name (`current_setting`).
    pub settings: std::collections::BTreeMap<String, String>,
}

/// An open cursor, as `pg_cursors` shows it.
#[derive(Debug, Clone)]
pub struct CursorInfo {
    pub name: String,
    /// The DECLARE statement's text.
    pub statement: String,
    pub holdable: bool,
    pub scrollable: bool,
}

/// A statement's `$1..$n`: their values, and the types the client declared
/// for them (None where it declared none).
#[derive(Debug, Clone, Default)]
pub struct Parameters {
    pub values: Vec<ScalarValue>,
    pub declared: Vec<Option<DataType>>,
}

/// A planned query, with the names its result's columns are shown by.
#[derive(Debug, Clone)]
pub struct Planned {
    pub plan: LogicalPlan,
    names: postgres::Names,
    /// The settings its `set_config` calls make, once it has run.
    pub settings: Vec<(String, String)>,
}

impl Planned {
    /// The result's columns, as the client sees them.
    pub fn schema(&self) -> SchemaRef {
        rename(Arc::new(self.plan.schema().as_arrow().clone()), &self.names)
    }

    /// The types of `$1..$n` (None where neither declared nor inferred).
    pub fn parameter_types(&self) -> Result<Vec<Option<DataType>>> {
        let types = self.plan.get_parameter_types()?;
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
            if i > 0 {
                out[i - 1] = t;
            }
        }
        Ok(out)
    }

    /// Fills in the parameters' values.
    pub fn bind(mut self, values: Vec<ScalarValue>, sql: &str) -> Result<Planned> {
        if !values.is_empty() {
            self.plan = self
                .plan
                .with_param_values(values)
                .map_err(|e| Error::from_datafusion(e, sql))?;
        }
        Ok(self)
    }
}

/// `x = ANY($1)` (DataFusion's `array_has($1, x)`): an untyped `$1` is an
/// array of `x`'s type, as Postgres infers it (drivers such as
/// node-postgres send every parameter untyped).
fn infer_array_parameters(plan: LogicalPlan) -> datafusion::common::Result<LogicalPlan> {
    use datafusion::common::tree_node::{Transformed, TreeNode};
    use datafusion::logical_expr::expr::Placeholder;
    use datafusion::logical_expr::{Expr as E, ExprSchemable};
    plan.transform_up_with_subqueries(|node| {
        let schema = match node.inputs().as_slice() {
            [input] => input.schema().clone(),
            _ => return Ok(Transformed::no(node)),
        };
        node.map_expressions(|e| {
            e.transform_up(|e| {
                let E::ScalarFunction(f) = &e else {
                    return Ok(Transformed::no(e));
                };
                if f.name() != "array_has" {
                    return Ok(Transformed::no(e));
                }
                let [E::Placeholder(p), element] = f.args.as_slice() else {
                    return Ok(Transformed::no(e));
                };
                if p.field.is_some() {
                    return Ok(Transformed::no(e));
                }
                let item = element.get_type(&schema)?;
                let list = DataType::List(Arc::new(Field::new("item", item, true)));
                let typed = E::Placeholder(Placeholder::new_with_field(
                    p.id.clone(),
                    Some(Arc::new(Field::new(&p.id, list, true))),
                ));
                let mut f = f.clone();
                f.args[0] = typed;
                Ok(Transformed::yes(E::ScalarFunction(f)))
            })
        })
    })
    .map(|t| t.data)
}

/// `schema` with its columns named as `names` says.
fn rename(schema: SchemaRef, names: &postgres::Names) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let name = match &names.0 {
                Some(n) if n.len() == schema.fields().len() => n[i].as_str(),
                _ => postgres::display_name(f.name()),
            };
            f.as_ref().clone().with_name(name)
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

impl QueryEngine {
    pub fn new(relations: Weak<dyn Relations>) -> Self {
        // Postgres's information schema (ours), not DataFusion's.
        let mut state = crate::functions::session_context().state();
        state.config_mut().options_mut().catalog.information_schema = false;
        let ctx = SessionContext::new_with_state(state);
        let relations_for_functions = relations.clone();
        let relations_for_views = relations.clone();
        let catalog = Arc::new(SluiceCatalog {
            public: Arc::new(PublicSchema {
                relations: relations.clone(),
            }),
            system: Arc::new(system::schema(relations.clone())),
            information_schema: Arc::new(information_schema::schema(relations.clone())),
            pg_catalog: Arc::new(pg_catalog::schema(relations)),
        });
        ctx.register_catalog(crate::functions::CATALOG, catalog);
        pg_catalog::register_functions(&ctx, relations_for_functions);
        pg_functions::register(&ctx);
        QueryEngine {
            ctx,
            relations: relations_for_views,
        }
    }

    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// A session state whose table scans read through `scope`.
    fn state(&self, scope: &Scope) -> datafusion::execution::SessionState {
        let mut state = self.ctx.state();
        state.config_mut().set_extension(Arc::new(scope.clone()));
        state
    }

    /// Plans a query; its parameters stay placeholders (typed as the client
    /// declared them) until [`Planned::bind`].
    pub async fn plan(
        &self,
        statement: &ast::Statement,
        sql: &str,
        scope: &Scope,
        declared: &[Option<DataType>],
    ) -> Result<Planned> {
        let mut statement = pg_catalog::rewrite(statement.clone());
        if let Some(relations) = self.relations.upgrade() {
            crate::frontend::views::expand(&mut statement, &|name| relations.logical_view(name))?;
        }
        crate::frontend::window::windows_as_tables(&self.ctx.state(), &mut statement, sql)?;
        let rewritten = postgres::rewrite(&mut statement, declared, scope)?;
        let plan = self
            .state(scope)
            .statement_to_plan(DFStatement::Statement(Box::new(statement)))
            .await
            .map_err(|e| Error::from_datafusion(e, sql))?;
        let plan = infer_array_parameters(plan).map_err(|e| Error::from_datafusion(e, sql))?;
        Ok(Planned {
            plan,
            names: rewritten.names,
            settings: rewritten.settings,
        })
    }

    /// Runs a planned query to completion.
    pub async fn execute(
        &self,
        planned: Planned,
        sql: &str,
        scope: &Scope,
    ) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        let schema = planned.schema();
        let state = self.state(scope);
        let physical = state
            .create_physical_plan(&planned.plan)
            .await
            .map_err(|e| Error::from_datafusion(e, sql))?;
        let batches = datafusion::physical_plan::collect(physical, state.task_ctx())
            .await
            .map_err(|e| Error::from_datafusion(e, sql))?;
        Ok((schema, batches))
    }
}

#[derive(Debug)]
struct SluiceCatalog {
    public: Arc<PublicSchema>,
    system: Arc<built::BuiltSchema>,
    information_schema: Arc<built::BuiltSchema>,
    pg_catalog: Arc<built::BuiltSchema>,
}

impl CatalogProvider for SluiceCatalog {
    fn schema_names(&self) -> Vec<String> {
        vec![
            "public".into(),
            "sluice".into(),
            "pg_catalog".into(),
            "information_schema".into(),
        ]
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        match name {
            "public" => Some(self.public.clone()),
            "sluice" => Some(self.system.clone()),
            "pg_catalog" => Some(self.pg_catalog.clone()),
            "information_schema" => Some(self.information_schema.clone()),
            _ => None,
        }
    }
}

/// The user's relations, resolved against the server's catalog when a query
/// is planned.
struct PublicSchema {
    relations: Weak<dyn Relations>,
}

impl fmt::Debug for PublicSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PublicSchema")
    }
}

#[async_trait]
impl SchemaProvider for PublicSchema {
    fn table_names(&self) -> Vec<String> {
        self.relations
            .upgrade()
            .map(|r| r.relation_names())
            .unwrap_or_default()
    }

    async fn table(
        &self,
        name: &str,
    ) -> datafusion::common::Result<Option<Arc<dyn TableProvider>>> {
        let Some(relations) = self.relations.upgrade() else {
            return Ok(None);
        };
        let Some(relation) = relations.relation(name) else {
            return Ok(None);
        };
        Ok(Some(match relation {
            Relation::View(store) => Arc::new(ViewTable { store }),
            Relation::Table(table) => Arc::new(TableRows {
                name: name.to_string(),
                table,
            }),
            Relation::Source(schema) | Relation::Logical(schema) => Arc::new(SourceTable {
                name: name.to_string(),
                schema,
            }),
        }))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.relations
            .upgrade()
            .map(|r| r.relation(name).is_some())
            .unwrap_or(false)
    }
}

/// A view's current rows.
#[derive(Debug)]
pub struct ViewTable {
    store: Arc<ViewStore>,
}

#[async_trait]
impl TableProvider for ViewTable {
    fn schema(&self) -> SchemaRef {
        self.store.schema().clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> datafusion::common::Result<Arc<dyn ExecutionPlan>> {
        let partitions: Vec<Arc<dyn PartitionStream>> = self
            .store
            .scan()
            .map_err(DataFusionError::from)?
            .into_iter()
            .map(|scan| -> Arc<dyn PartitionStream> {
                Arc::new(ShardStream {
                    schema: self.schema(),
                    scan,
                })
            })
            .collect();
        Ok(Arc::new(StreamingTableExec::try_new(
            self.schema(),
            partitions,
            projection,
            Vec::new(),
            false,
            None,
        )?))
    }
}

/// One shard of a view as a stream: the rows in memory when the query
/// began, then those only in the store, read batch by batch as the query
/// pulls them (so a query over a view larger than memory stays bounded).
struct ShardStream {
    schema: SchemaRef,
    scan: ShardScan,
}

impl fmt::Debug for ShardStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShardStream")
            .field("batches", &self.scan.batches.len())
            .field("stored", &self.scan.stored.is_some())
            .finish()
    }
}

impl PartitionStream for ShardStream {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let memory = futures::stream::iter(self.scan.batches.clone().into_iter().map(Ok));
        let stored = futures::stream::unfold(
            self.scan.stored.as_ref().map(|s| s.cursor()),
            |cursor| async move {
                let mut cursor = cursor?;
                // Reading the store blocks: not on the runtime's threads.
                let (cursor, next) = tokio::task::spawn_blocking(move || {
                    let next = cursor.next_batch();
                    (cursor, next)
                })
                .await
                .ok()?;
                match next {
                    Ok(Some(batch)) => Some((Ok(batch), Some(cursor))),
                    Ok(None) => None,
                    Err(e) => Some((Err(DataFusionError::from(e)), None)),
                }
            },
        );
        Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            memory.chain(stored),
        ))
    }
}

/// An ordinary table's rows: those committed, or those the querying
/// transaction sees ([`Scope`]).
#[derive(Debug)]
struct TableRows {
    name: String,
    table: Arc<ReferenceTable>,
}

#[async_trait]
impl TableProvider for TableRows {
    fn schema(&self) -> SchemaRef {
        self.table.schema().clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::common::Result<Arc<dyn ExecutionPlan>> {
        let rows = state
            .config()
            .get_extension::<Scope>()
            .and_then(|o| o.tables.get(&self.name).cloned())
            .unwrap_or_else(|| self.table.snapshot());
        datafusion::datasource::MemTable::try_new(self.schema(), vec![vec![rows.batch.clone()]])?
            .scan(state, projection, filters, limit)
            .await
    }
}

/// A source table: visible (DESCRIBE, information_schema), not readable.
#[derive(Debug)]
struct SourceTable {
    name: String,
    schema: SchemaRef,
}

#[async_trait]
impl TableProvider for SourceTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        _projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> datafusion::common::Result<Arc<dyn ExecutionPlan>> {
        Err(DataFusionError::from(
            Error::not_supported(format!(
                "\"{}\" is a streaming source and keeps no rows to select",
                self.name
            ))
            .with_hint(format!(
                "create a materialized view over it, e.g. CREATE MATERIALIZED VIEW {0}_all AS SELECT * FROM {0}",
                self.name
            )),
        ))
    }
}
