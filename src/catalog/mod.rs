//! The catalog: the sources, ordinary tables and materialized views of a
//! server.
//!
//! Each object is persisted as the statement that created it (in the store's
//! `meta` column family, in creation order), and restored at start by
//! running those statements again: the definitions are the SQL, so a newer
//! Sluice re-plans them with its own planner.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::connector::sink::SinkSpec;
use crate::dataflow::plan::{SourcePlan, StreamPlan};
use crate::error::{Error, Result};
use crate::frontend::parser::ObjectKind;
use crate::state::reference::ReferenceTable;
use crate::state::Store;

const PREFIX: &str = "catalog/";

#[derive(Debug, Clone)]
pub enum Entry {
    Source(SourceEntry),
    Table(TableEntry),
    View(ViewEntry),
    Sink(SinkEntry),
    LogicalView(LogicalViewEntry),
}

/// A logical view: a named query, expanded where it is used.
#[derive(Debug, Clone)]
pub struct LogicalViewEntry {
    /// The query, with its column names applied (see
    /// [`crate::frontend::views`]).
    pub query: Arc<sqlparser::ast::Query>,
    /// Its columns.
    pub schema: arrow::datatypes::SchemaRef,
    /// The relations the query reads (sources, tables, views).
    pub reads: Vec<String>,
    pub sql: String,
    seq: u64,
}

/// A sink: the view it writes, and where.
#[derive(Debug, Clone)]
pub struct SinkEntry {
    pub from: String,
    pub spec: SinkSpec,
    pub sql: String,
    seq: u64,
}

/// An ordinary table, with its rows.
#[derive(Debug, Clone)]
pub struct TableEntry {
    pub table: Arc<ReferenceTable>,
    /// The changelog topic an upsert-kafka table follows (None for an
    /// ordinary table, which DML changes).
    pub topic: Option<String>,
    pub sql: String,
    seq: u64,
}

#[derive(Debug, Clone)]
pub struct SourceEntry {
    pub plan: Arc<SourcePlan>,
    pub sql: String,
    seq: u64,
}

#[derive(Debug, Clone)]
pub struct ViewEntry {
    pub plan: Arc<StreamPlan>,
    pub sql: String,
    seq: u64,
}

impl Entry {
    pub fn kind(&self) -> ObjectKind {
        match self {
            Entry::Source(_) => ObjectKind::Source,
            Entry::Table(_) => ObjectKind::Table,
            Entry::View(_) => ObjectKind::MaterializedView,
            Entry::Sink(_) => ObjectKind::Sink,
            Entry::LogicalView(_) => ObjectKind::View,
        }
    }

    /// The object's number: its creation order, and a view's job id.
    pub fn seq(&self) -> u64 {
        match self {
            Entry::Source(s) => s.seq,
            Entry::Table(t) => t.seq,
            Entry::View(v) => v.seq,
            Entry::Sink(s) => s.seq,
            Entry::LogicalView(v) => v.seq,
        }
    }
}

/// A persisted catalog object.
#[derive(Debug, Serialize, Deserialize)]
pub struct Record {
    pub kind: RecordKind,
    pub name: String,
    pub sql: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    Source,
    MaterializedView,
    Table,
    Sink,
    View,
}

/// Where an object added to the catalog comes from.
#[derive(Clone, Copy)]
pub enum Origin<'a> {
    /// Created now: persisted under the next number.
    New(&'a Store),
    /// Restored at start: already persisted under this number.
    Restored(u64),
}

#[derive(Default)]
pub struct Catalog {
    entries: BTreeMap<String, Entry>,
    next_seq: u64,
}

fn key(seq: u64) -> String {
    format!("{PREFIX}{seq:020}")
}

impl Catalog {
    /// The persisted records with their numbers, in creation order. Makes
    /// new numbers continue after them.
    pub fn load(&mut self, store: &Store) -> Result<Vec<(u64, Record)>> {
        let records = store
            .scan_meta(PREFIX)?
            .into_iter()
            .map(|(k, v)| {
                let seq: u64 = k[PREFIX.len()..]
                    .parse()
                    .map_err(|_| Error::external(format!("bad catalog key {k}")))?;
                let record = serde_json::from_slice(&v).map_err(|e| {
                    Error::external(format!("the catalog entry {k} is unreadable: {e}"))
                })?;
                Ok((seq, record))
            })
            .collect::<Result<Vec<_>>>()?;
        if let Some((seq, _)) = records.last() {
            self.next_seq = self.next_seq.max(seq + 1);
        }
        Ok(records)
    }

    /// The number the next object will get (a view's job id).
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.entries.get(name)
    }

    pub fn entries(&self) -> impl Iterator<Item = (&String, &Entry)> {
        self.entries.iter()
    }

    pub fn check_free(&self, name: &str) -> Result<()> {
        match self.entries.get(name) {
            None => Ok(()),
            Some(e) => Err(Error::duplicate(e.kind().name(), name)),
        }
    }

    fn persist(
        &mut self,
        origin: Origin<'_>,
        kind: RecordKind,
        name: &str,
        sql: &str,
    ) -> Result<u64> {
        match origin {
            Origin::Restored(seq) => Ok(seq),
            Origin::New(store) => {
                let seq = self.next_seq;
                let record = Record {
                    kind,
                    name: name.to_string(),
                    sql: sql.to_string(),
                };
                let value =
                    serde_json::to_vec(&record).map_err(|e| Error::internal(e.to_string()))?;
                store.put_meta(&key(seq), &value)?;
                self.next_seq += 1;
                Ok(seq)
            }
        }
    }

    /// Adds an ordinary table (opened as table `self.next_seq()` when new).
    pub fn add_table(
        &mut self,
        table: Arc<ReferenceTable>,
        topic: Option<String>,
        name: &str,
        sql: &str,
        origin: Origin<'_>,
    ) -> Result<()> {
        self.check_free(name)?;
        let seq = self.persist(origin, RecordKind::Table, name, sql)?;
        self.entries.insert(
            name.to_string(),
            Entry::Table(TableEntry {
                table,
                topic,
                sql: sql.to_string(),
                seq,
            }),
        );
        Ok(())
    }

    /// Adds a sink of view `from`.
    pub fn add_sink(
        &mut self,
        name: &str,
        from: &str,
        spec: SinkSpec,
        sql: &str,
        origin: Origin<'_>,
    ) -> Result<u64> {
        self.check_free(name)?;
        let seq = self.persist(origin, RecordKind::Sink, name, sql)?;
        self.entries.insert(
            name.to_string(),
            Entry::Sink(SinkEntry {
                from: from.to_string(),
                spec,
                sql: sql.to_string(),
                seq,
            }),
        );
        Ok(seq)
    }

    /// Adds a source.
    pub fn add_source(
        &mut self,
        plan: Arc<SourcePlan>,
        sql: &str,
        origin: Origin<'_>,
    ) -> Result<()> {
        self.check_free(&plan.name)?;
        let seq = self.persist(origin, RecordKind::Source, &plan.name, sql)?;
        self.entries.insert(
            plan.name.clone(),
            Entry::Source(SourceEntry {
                plan,
                sql: sql.to_string(),
                seq,
            }),
        );
        Ok(())
    }

    pub fn add_view(&mut self, plan: Arc<StreamPlan>, sql: &str, origin: Origin<'_>) -> Result<()> {
        self.check_free(&plan.view)?;
        let seq = self.persist(origin, RecordKind::MaterializedView, &plan.view, sql)?;
        self.entries.insert(
            plan.view.clone(),
            Entry::View(ViewEntry {
                plan,
                sql: sql.to_string(),
                seq,
            }),
        );
        Ok(())
    }

    /// Adds a logical view.
    pub fn add_logical_view(
        &mut self,
        name: &str,
        query: Arc<sqlparser::ast::Query>,
        schema: arrow::datatypes::SchemaRef,
        reads: Vec<String>,
        sql: &str,
        origin: Origin<'_>,
    ) -> Result<()> {
        self.check_free(name)?;
        let seq = self.persist(origin, RecordKind::View, name, sql)?;
        self.entries.insert(
            name.to_string(),
            Entry::LogicalView(LogicalViewEntry {
                query,
                schema,
                reads,
                sql: sql.to_string(),
                seq,
            }),
        );
        Ok(())
    }

    /// The views that read `source` (a source, table or view).
    pub fn dependents(&self, source: &str) -> Vec<String> {
        self.entries
            .iter()
            .filter_map(|(name, e)| match e {
                Entry::View(v) if v.plan.reads(source) => Some(name.clone()),
                Entry::Sink(s) if s.from == source => Some(name.clone()),
                Entry::LogicalView(v) if v.reads.iter().any(|r| r == source) => Some(name.clone()),
                _ => None,
            })
            .collect()
    }

    pub fn remove(&mut self, name: &str, store: &Store) -> Result<Option<Entry>> {
        let Some(entry) = self.entries.get(name) else {
            return Ok(None);
        };
        store.delete_meta(&key(entry.seq()))?;
        Ok(self.entries.remove(name))
    }
}
