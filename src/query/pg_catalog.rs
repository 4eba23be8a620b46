//! `pg_catalog` for Postgres clients (psql's `\d`, `\dt`, `\dm`).
//!
//! Not built yet: the schema has no tables and queries pass unchanged.

use std::fmt;
use std::sync::{Arc, Weak};

use async_trait::async_trait;
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::prelude::SessionContext;
use sqlparser::ast;

use crate::query::Relations;

pub struct PgCatalogSchema {
    _relations: Weak<dyn Relations>,
}

impl PgCatalogSchema {
    pub fn new(relations: Weak<dyn Relations>) -> Self {
        PgCatalogSchema { _relations: relations }
    }
}

impl fmt::Debug for PgCatalogSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PgCatalogSchema")
    }
}

#[async_trait]
impl SchemaProvider for PgCatalogSchema {
    fn table_names(&self) -> Vec<String> {
        Vec::new()
    }

    async fn table(&self, _name: &str) -> datafusion::common::Result<Option<Arc<dyn TableProvider>>> {
        Ok(None)
    }

    fn table_exist(&self, _name: &str) -> bool {
        false
    }
}

pub fn register_functions(_ctx: &SessionContext) {}

pub fn rewrite(statement: ast::Statement) -> ast::Statement {
    statement
}
