//! The system tables in schema `sluice`, built from live job metrics each
//! time a query reads them:
//!
//! - `sluice.savepoints`: one row per savepoint: its view, epoch and time;
//! - `sluice.jobs`: one row per view: status, row counters, watermark, error,
//!   the last committed checkpoint (epoch, duration, bytes);
//! - `sluice.dead_letters`: the most recent records that could not be used;
//! - `sluice.late_rows`: per view, the most recent rows dropped as late:
//!   where each came from, its event time, the window it missed and the
//!   watermark it was judged by;
//! - `sluice.kafka_partitions`: per Kafka partition, the next offset to read,
//!   the partition's high watermark and the lag.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use arrow::array::{ArrayRef, Int32Array, Int64Array, StringArray, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::frontend::types::UTC;
use crate::query::built::BuiltSchema;
use crate::query::Relations;

pub const TABLES: &[&str] = &[
    "jobs",
    "dead_letters",
    "late_rows",
    "kafka_partitions",
    "savepoints",
];

/// The schema `sluice`, its tables built from the live metrics at each
/// query.
pub fn schema(relations: Weak<dyn Relations>) -> BuiltSchema {
    BuiltSchema::new("sluice", TABLES, build, &[], relations)
}

fn build(table: &str, relations: &dyn Relations) -> Option<(SchemaRef, Vec<ArrayRef>)> {
    Some((schema_of(table)?, rows(table, relations)))
}

fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some(UTC.into()))
}

/// The columns of a system table.
pub fn schema_of(table: &str) -> Option<SchemaRef> {
    let fields = match table {
        "jobs" => vec![
            Field::new("name", DataType::Utf8, false),
            Field::new("source", DataType::Utf8, false),
            Field::new("status", DataType::Utf8, false),
            Field::new("rows_in", DataType::Int64, false),
            Field::new("rows_out", DataType::Int64, false),
            Field::new("late_rows", DataType::Int64, false),
            Field::new("bad_rows", DataType::Int64, false),
            Field::new("watermark", ts_type(), true),
            Field::new("error", DataType::Utf8, true),
            Field::new("checkpoint_epoch", DataType::Int64, false),
            Field::new("checkpoint_ms", DataType::Int64, false),
            Field::new("checkpoint_bytes", DataType::Int64, false),
            Field::new("warnings", DataType::Utf8, true),
        ],
        "dead_letters" => vec![
            Field::new("job", DataType::Utf8, false),
            Field::new("position", DataType::Utf8, false),
            Field::new("raw", DataType::Utf8, false),
            Field::new("error", DataType::Utf8, false),
            Field::new("seen_at", ts_type(), false),
        ],
        "late_rows" => vec![
            Field::new("job", DataType::Utf8, false),
            Field::new("position", DataType::Utf8, false),
            Field::new("event_time", ts_type(), false),
            Field::new("window_start", ts_type(), true),
            Field::new("window_end", ts_type(), true),
            Field::new("watermark", ts_type(), false),
            Field::new("seen_at", ts_type(), false),
        ],
        "kafka_partitions" => vec![
            Field::new("job", DataType::Utf8, false),
            Field::new("topic", DataType::Utf8, false),
            Field::new("partition", DataType::Int32, false),
            Field::new("offset", DataType::Int64, true),
            Field::new("high_watermark", DataType::Int64, true),
            Field::new("lag", DataType::Int64, true),
        ],
        "savepoints" => vec![
            Field::new("name", DataType::Utf8, false),
            Field::new("job", DataType::Utf8, false),
            Field::new("epoch", DataType::Int64, false),
            Field::new("created_at", ts_type(), false),
        ],
        _ => return None,
    };
    Some(Arc::new(Schema::new(fields)))
}

fn strings<'a>(values: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(values.collect::<StringArray>())
}

/// One counter of every job, as a column.
fn counter<T>(
    jobs: &[(Arc<JobMetrics>, T)],
    field: impl Fn(&JobMetrics) -> &std::sync::atomic::AtomicU64,
) -> ArrayRef {
    Arc::new(Int64Array::from_iter_values(
        jobs.iter()
            .map(|(m, _)| field(m).load(Ordering::Relaxed) as i64),
    ))
}

/// Column `i` of every job's totals (rows_in, rows_out, late_rows, bad_rows).
fn total<T>(jobs: &[(Arc<JobMetrics>, T)], i: usize) -> ArrayRef {
    Arc::new(Int64Array::from_iter_values(
        jobs.iter().map(|(m, _)| m.totals()[i] as i64),
    ))
}

fn rows(table: &str, relations: &dyn Relations) -> Vec<ArrayRef> {
    match table {
        "jobs" => {
            let mut jobs = relations.jobs();
            jobs.sort_by(|a, b| a.0.name.cmp(&b.0.name));
            let status: Vec<_> = jobs.iter().map(|(m, _)| m.status()).collect();
            let wm = |m: &JobMetrics| {
                let w = m.watermark.load(Ordering::Relaxed);
                (w != i64::MIN).then_some(w)
            };
            vec![
                strings(jobs.iter().map(|(m, _)| Some(m.name.as_str()))),
                strings(jobs.iter().map(|(_, s)| Some(s.as_str()))),
                strings(status.iter().map(|(s, _)| Some(s.as_str()))),
                total(&jobs, 0),
                total(&jobs, 1),
                total(&jobs, 2),
                total(&jobs, 3),
                Arc::new(
                    jobs.iter()
                        .map(|(m, _)| wm(m))
                        .collect::<TimestampMillisecondArray>()
                        .with_timezone(UTC),
                ),
                strings(status.iter().map(|(_, e)| e.as_deref())),
                counter(&jobs, |m| &m.checkpoint_epoch),
                counter(&jobs, |m| &m.checkpoint_ms),
                counter(&jobs, |m| &m.checkpoint_bytes),
                Arc::new(
                    jobs.iter()
                        .map(|(m, _)| m.warnings())
                        .collect::<StringArray>(),
                ),
            ]
        }
        "savepoints" => {
            let all = relations.savepoints();
            vec![
                strings(all.iter().map(|s| Some(s.name.as_str()))),
                strings(all.iter().map(|s| Some(s.view.as_str()))),
                Arc::new(Int64Array::from_iter_values(
                    all.iter().map(|s| s.epoch as i64),
                )),
                Arc::new(
                    TimestampMillisecondArray::from_iter_values(all.iter().map(|s| s.created_at))
                        .with_timezone(UTC),
                ),
            ]
        }
        "dead_letters" => {
            let letters = relations.dead_letters();
            vec![
                strings(letters.iter().map(|d| Some(d.job.as_str()))),
                strings(letters.iter().map(|d| Some(d.position.as_str()))),
                strings(letters.iter().map(|d| Some(d.raw.as_str()))),
                strings(letters.iter().map(|d| Some(d.error.as_str()))),
                Arc::new(
                    TimestampMillisecondArray::from_iter_values(
                        letters.iter().map(|d| d.seen_at_ms),
                    )
                    .with_timezone(UTC),
                ),
            ]
        }
        "late_rows" => {
            let mut jobs = relations.jobs();
            jobs.sort_by(|a, b| a.0.name.cmp(&b.0.name));
            let late: Vec<(String, LateRow)> = jobs
                .iter()
                .flat_map(|(m, _)| m.late_rows().into_iter().map(|r| (m.name.clone(), r)))
                .collect();
            let times = |f: fn(&LateRow) -> i64| -> ArrayRef {
                Arc::new(
                    TimestampMillisecondArray::from_iter_values(late.iter().map(|(_, r)| f(r)))
                        .with_timezone(UTC),
                )
            };
            vec![
                strings(late.iter().map(|(j, _)| Some(j.as_str()))),
                strings(late.iter().map(|(_, r)| Some(r.position.as_str()))),
                times(|r| r.event_time_ms),
                Arc::new(
                    TimestampMillisecondArray::from_iter(
                        late.iter().map(|(_, r)| r.window_start_ms),
                    )
                    .with_timezone(UTC),
                ),
                Arc::new(
                    TimestampMillisecondArray::from_iter(late.iter().map(|(_, r)| r.window_end_ms))
                        .with_timezone(UTC),
                ),
                times(|r| r.watermark_ms),
                times(|r| r.seen_at_ms),
            ]
        }
        "kafka_partitions" => {
            let mut parts = Vec::new();
            for (m, _) in relations.jobs() {
                for p in m.partitions.lock().iter() {
                    parts.push((m.name.clone(), p.clone()));
                }
            }
            parts.sort_by(|a, b| (&a.0, a.1.partition).cmp(&(&b.0, b.1.partition)));
            let known = |v: i64| (v >= 0).then_some(v);
            vec![
                strings(parts.iter().map(|(j, _)| Some(j.as_str()))),
                strings(parts.iter().map(|(_, p)| Some(p.topic.as_str()))),
                Arc::new(Int32Array::from_iter_values(
                    parts.iter().map(|(_, p)| p.partition),
                )),
                Arc::new(
                    parts
                        .iter()
                        .map(|(_, p)| known(p.offset))
                        .collect::<Int64Array>(),
                ),
                Arc::new(
                    parts
                        .iter()
                        .map(|(_, p)| known(p.high_watermark))
                        .collect::<Int64Array>(),
                ),
                Arc::new(
                    parts
                        .iter()
                        .map(|(_, p)| match (known(p.offset), known(p.high_watermark)) {
                            (Some(o), Some(h)) => Some((h - o).max(0)),
                            (None, Some(h)) => Some(h),
                            _ => None,
                        })
                        .collect::<Int64Array>(),
                ),
            ]
        }
        _ => Vec::new(),
    }
}

use crate::metrics::{JobMetrics, LateRow};
