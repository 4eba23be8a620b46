//! Sluice: a streaming SQL server.
//!
//! Users connect with any Postgres client, declare sources (Kafka topics,
//! files, generators) and continuous queries in Flink SQL, and query the
//! always-fresh results as tables. One process, embedded state.
//!
//! The way a statement flows, top to bottom (a module uses only those below
//! it):
//!
//! - [`server`]: the Postgres wire protocol (pgwire): listener, per-connection
//!   handlers, COPY in, SUBSCRIBE streams, Arrow to Postgres encoding.
//! - [`session`]: a connection's state; runs parsed statements;
//!   [`subscription`]: the changes SUBSCRIBE shows, as Arrow batches;
//!   [`cursor`]: DECLARE, FETCH, MOVE and CLOSE.
//! - [`database`]: the server's shared state: catalog, jobs, store, runtime.
//! - [`dml`]: INSERT, UPDATE and DELETE on ordinary tables (run by
//!   DataFusion, applied at once or at the transaction's COMMIT); [`copy`]:
//!   COPY in and out.
//! - [`frontend`]: parse (sqlparser plus Flink's DDL and windows), bind, plan
//!   (DataFusion does the typing); pure.
//! - [`catalog`]: sources, ordinary tables and views, persisted as their
//!   statements.
//! - [`dataflow`]: one job per view, operators on Arrow batches: readers,
//!   watermarks, windows, lookup joins with tables, two-phase aggregation
//!   with DataFusion's accumulators, materialization; checkpoint barriers
//!   and the commit of each epoch.
//! - [`connector`]: Kafka, filesystem and datagen sources, upsert-kafka
//!   tables, the Kafka sink, and the committed log of a view that another
//!   view reads; JSON and CSV.
//! - [`query`]: DataFusion over the views' live contents, system tables,
//!   `pg_catalog`.
//! - [`state`]: RocksDB (catalog, checkpoints, savepoints), the layout of a
//!   view's saved state, state tables and view contents with their bounded
//!   in-memory caches, and the rows of ordinary tables.
//! - [`auth`]: users and their SCRAM-SHA-256 password verifiers.
//! - [`error`], [`metrics`], [`options`], [`functions`]: shared vocabulary.

pub mod auth;
pub mod catalog;
pub mod connector;
pub mod copy;
pub mod cursor;
pub mod database;
pub mod dataflow;
pub mod dml;
pub mod error;
pub mod flink_options;
pub mod frontend;
pub mod functions;
pub mod metrics;
pub mod options;
pub mod query;
pub mod server;
pub mod session;
pub mod state;
pub mod subscription;
