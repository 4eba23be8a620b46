//! Schemas whose tables are built from the server's catalog each time a
//! query reads them: `sluice` (the system tables), `pg_catalog` and
//! `information_schema`.

use std::fmt;
use std::sync::{Arc, Weak};

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::common::Result as DfResult;
use datafusion::datasource::MemTable;

use crate::query::Relations;

/// Builds a table of the schema from the catalog: its columns and their
/// values, or `None` if the schema has no such table.
pub type Build = fn(&str, &dyn Relations) -> Option<(SchemaRef, Vec<ArrayRef>)>;

/// A table that is read live rather than built (`pg_cursors` reads the
/// querying session's scope).
pub type Live = fn() -> Arc<dyn TableProvider>;

pub struct BuiltSchema {
    name: &'static str,
    tables: &'static [&'static str],
    build: Build,
    live: &'static [(&'static str, Live)],
    relations: Weak<dyn Relations>,
}

impl BuiltSchema {
    pub fn new(
        name: &'static str,
        tables: &'static [&'static str],
        build: Build,
        live: &'static [(&'static str, Live)],
        relations: Weak<dyn Relations>,
    ) -> Self {
        BuiltSchema {
            name,
            tables,
            build,
            live,
            relations,
        }
    }
}

impl fmt::Debug for BuiltSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BuiltSchema({})", self.name)
    }
}

#[async_trait]
impl SchemaProvider for BuiltSchema {
    fn table_names(&self) -> Vec<String> {
        self.tables.iter().map(|t| t.to_string()).collect()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        if let Some((_, live)) = self.live.iter().find(|(table, _)| *table == name) {
            return Ok(Some(live()));
        }
        let Some(relations) = self.relations.upgrade() else {
            return Ok(None);
        };
        let Some((schema, columns)) = (self.build)(name, relations.as_ref()) else {
            return Ok(None);
        };
        let batch = RecordBatch::try_new(schema.clone(), columns)?;
        Ok(Some(Arc::new(MemTable::try_new(
            schema,
            vec![vec![batch]],
        )?)))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.tables.contains(&name)
    }
}
