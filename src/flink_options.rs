//! Flink's `SET 'key' = 'value'` options: what each does in Sluice.
//!
//! A Flink script starts with SET statements. Those Sluice has a setting
//! for take effect (the checkpoint interval, the time zone); those that
//! tune what Sluice always does, or that it has no use for, are accepted
//! and recorded (`SHOW 'key'` shows them) with a NOTICE that says so and
//! what to use instead; a few that would ask for what Sluice cannot do are
//! refused. The README lists them all.

use crate::error::{Error, Result};

/// What setting a Flink option does.
#[derive(Debug, PartialEq, Eq)]
pub enum Effect {
    /// Sluice applies it (the session's own handling does).
    Applied,
    /// Recorded, with no effect: why, and what to use instead.
    NoEffect(String),
}

/// Options whose key starts so are Flink's (Postgres's settings have no
/// dots).
const FLINK_PREFIXES: &[&str] = &[
    "execution.",
    "table.",
    "pipeline.",
    "parallelism.",
    "state.",
    "sql-client.",
    "restart-strategy.",
    "taskmanager.",
    "jobmanager.",
    "rest.",
];

/// Whether `name` is a Flink option (else a Postgres setting).
pub fn is_flink_option(name: &str) -> bool {
    FLINK_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// What `SET name = value` of a Flink option does, or why it is refused.
pub fn effect(name: &str, value: &str) -> Result<Effect> {
    let v = value.trim().to_ascii_lowercase();
    let none = |why: &str| {
        Ok(Effect::NoEffect(format!(
            "'{name}' has no effect in Sluice: {why}"
        )))
    };
    match name {
        "execution.checkpointing.interval" => Ok(Effect::Applied),
        "table.local-time-zone" => Ok(Effect::Applied),
        "execution.runtime-mode" => match v.as_str() {
            "streaming" => none("every query runs as a stream; one over a bounded source finishes"),
            "batch" | "automatic" => Err(Error::not_supported(format!(
                "'execution.runtime-mode' = '{value}': Sluice runs every query as a stream; a query over a bounded source (a file, datagen with 'number-of-rows') finishes, and SELECT answers at once"
            ))),
            _ => Err(Error::invalid_parameter(format!(
                "invalid 'execution.runtime-mode' \"{value}\"; use streaming"
            ))),
        },
        "execution.checkpointing.mode" => match v.as_str() {
            "exactly_once" | "exactly-once" => none("checkpoints are always exactly-once"),
            "at_least_once" | "at-least-once" => none(
                "checkpoints are always exactly-once (a Kafka sink's guarantee is its 'sink.delivery-guarantee')",
            ),
            _ => Err(Error::invalid_parameter(format!(
                "invalid 'execution.checkpointing.mode' \"{value}\"; use EXACTLY_ONCE"
            ))),
        },
        "parallelism.default" => none(
            "every job runs one instance per core the server was given (sluice --parallelism)",
        ),
        "pipeline.name" => none("a job is named after what it writes (insert_into_<table>; SHOW JOBS)"),
        "table.exec.state.ttl" => none(
            "state is let go when the watermarks show a row can no longer matter; state that grows without bound spills to RocksDB (--state-cache)",
        ),
        "table.exec.source.idle-timeout" => {
            none("give a source 'scan.watermark.idle-timeout' in its WITH options (default 5 s)")
        }
        "table.exec.emit.early-fire.enabled" | "table.exec.emit.early-fire.delay" => none(
            "a window's early rows are EMIT EVERY INTERVAL 'n' SECOND after the view's query",
        ),
        n if n.starts_with("table.exec.mini-batch.") => none(
            "Sluice always processes rows in Arrow batches (sluice --batch-size, --batch-linger)",
        ),
        n if n.starts_with("table.optimizer.") => none(
            "aggregations are always two-phase (partial per instance, final per key)",
        ),
        n if n.starts_with("sql-client.") => none("psql shows the results"),
        n if n.starts_with("state.") => {
            none("state is in RocksDB under --data-dir, checkpoints and savepoints with it")
        }
        n if n.starts_with("restart-strategy.") => {
            none("a failed job stays failed, with its error in sluice.jobs")
        }
        _ => none("Sluice does not know this option; it is recorded only"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_applied_recorded_or_refused() {
        assert_eq!(
            effect("execution.checkpointing.interval", "10s").unwrap(),
            Effect::Applied
        );
        assert!(matches!(
            effect("table.exec.mini-batch.enabled", "true").unwrap(),
            Effect::NoEffect(why) if why.contains("Arrow batches")
        ));
        assert_eq!(
            effect("execution.runtime-mode", "batch")
                .unwrap_err()
                .sqlstate(),
            "0A000"
        );
        assert!(is_flink_option("pipeline.name"));
        assert!(!is_flink_option("extra_float_digits"));
    }
}
