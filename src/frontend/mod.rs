//! From SQL text to typed statements and plans; pure (no I/O).
//!
//! `parser` turns text into [`parser::Statement`]s (sqlparser plus Flink's
//! DDL and window syntax), `ddl` binds `CREATE TABLE` to a source definition,
//! `window` and `planner` turn `CREATE MATERIALIZED VIEW` into a streaming
//! plan, with DataFusion doing the type checking.

pub mod ddl;
pub mod parser;
pub mod planner;
pub mod types;
pub mod window;
