//! From SQL text to typed statements and plans; pure (no I/O).
//!
//! `parser` turns text into [`parser::Statement`]s (sqlparser plus Flink's
//! DDL and window syntax), `ddl` binds `CREATE TABLE` to a source definition,
//! `group_window` rewrites Flink's group windows into window functions,
//! `window` and `planner` turn `CREATE MATERIALIZED VIEW` into a streaming
//! plan, with DataFusion doing the type checking; `stream_join` plans the
//! joins of two streams in it.

pub mod ddl;
pub mod dialect;
pub mod group_window;
pub mod insert;
pub mod json_value;
pub mod parser;
pub mod planner;
pub mod retract;
pub mod stream_join;
pub mod types;
pub mod views;
pub mod window;
