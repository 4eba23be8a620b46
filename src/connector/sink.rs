//! What a sink writes to: its connector and options, validated.
//!
//! `kafka` and `filesystem` sinks run on threads of their own, reading what
//! their view's checkpoints commit. `print` and `blackhole` have nothing to
//! commit: their view prints or discards its rows as its job makes them, so
//! they take a query of their own (`CREATE SINK ... AS` or `INSERT INTO`).

use crate::connector::file_sink::FileSinkSpec;
use crate::connector::kafka_sink::KafkaSinkSpec;
use crate::error::{Error, Result};
use crate::options::Options;

/// The memory the rows of a Kafka or filesystem sink's own view may take:
/// the sink reads them just behind the view (the rest is in RocksDB).
const SINK_VIEW_ROWS: &str = "32MiB";

#[derive(Debug, Clone)]
pub enum SinkSpec {
    Kafka(KafkaSinkSpec),
    Filesystem(FileSinkSpec),
    /// Rows go to the server log, each line after `identifier` (the sink's
    /// name unless `print-identifier` says).
    Print {
        identifier: Option<String>,
    },
    Blackhole,
}

impl SinkSpec {
    pub fn from_options(entries: &[(String, String)]) -> Result<Self> {
        let mut opts = Options::new("the sink", entries);
        let connector = opts.require("connector")?;
        let mut opts = Options::new(format!("sink connector \"{connector}\""), entries);
        opts.take("connector");
        let spec = match connector.to_ascii_lowercase().as_str() {
            "kafka" => return Ok(SinkSpec::Kafka(KafkaSinkSpec::from_options(entries)?)),
            "filesystem" => SinkSpec::Filesystem(FileSinkSpec::from_options(&mut opts)?),
            "print" => {
                if opts.take_bool("standard-error")? == Some(true) {
                    return Err(Error::not_supported(
                        "'standard-error' = 'true': a print sink writes to the server log",
                    ));
                }
                SinkSpec::Print {
                    identifier: opts.take("print-identifier"),
                }
            }
            "blackhole" => SinkSpec::Blackhole,
            other => {
                return Err(Error::invalid_parameter(format!(
                    "unknown sink connector \"{other}\"; Sluice has kafka, filesystem, print and blackhole"
                )))
            }
        };
        // Flink's print and filesystem sinks take a parallelism; Sluice's
        // sinks take that of their view.
        if let Some(p) = opts.take("sink.parallelism") {
            return Err(Error::not_supported(format!(
                "'sink.parallelism' = '{p}': a sink runs with its view's parallelism (SET parallelism before CREATE)"
            )));
        }
        opts.finish()?;
        Ok(spec)
    }

    pub fn connector(&self) -> &'static str {
        match self {
            SinkSpec::Kafka(_) => "kafka",
            SinkSpec::Filesystem(_) => "filesystem",
            SinkSpec::Print { .. } => "print",
            SinkSpec::Blackhole => "blackhole",
        }
    }

    /// Where it writes, for messages: `Kafka topic "t"`.
    pub fn describe(&self) -> String {
        match self {
            SinkSpec::Kafka(k) => format!("Kafka topic \"{}\"", k.topic),
            SinkSpec::Filesystem(f) => format!("files under \"{}\"", f.path.display()),
            SinkSpec::Print { .. } => "the server log".into(),
            SinkSpec::Blackhole => "nowhere (blackhole)".into(),
        }
    }

    /// The options its own view takes (`CREATE SINK name AS query`): a
    /// print or blackhole sink's view prints or discards its rows.
    pub fn view_options(&self, sink: &str) -> Vec<(String, String)> {
        match self {
            SinkSpec::Print { identifier } => vec![
                ("rows".into(), "print".into()),
                (
                    "print-identifier".into(),
                    identifier.clone().unwrap_or_else(|| sink.to_string()),
                ),
            ],
            SinkSpec::Blackhole => vec![("rows".into(), "discard".into())],
            // Only the sink reads the rows, just behind the view: they
            // need not stay in memory.
            SinkSpec::Kafka(_) | SinkSpec::Filesystem(_) => {
                vec![("rows-cache".into(), SINK_VIEW_ROWS.into())]
            }
        }
    }

    /// Whether it runs on a thread of its own, reading what its view
    /// commits (else its view does its work).
    pub fn reads_commits(&self) -> bool {
        matches!(self, SinkSpec::Kafka(_) | SinkSpec::Filesystem(_))
    }
}
