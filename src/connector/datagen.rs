//! The `datagen` connector: generated rows, so that Sluice can be tried with
//! no Kafka and no data at hand.
//!
//! Columns are filled by name and type with a realistic telecom call-record
//! stream: `cell_id` over 500 cells with skewed (Zipf) load, `msisdn` over
//! 100 000 subscribers, `status` (`ok`, `dropped`, `failed`, `busy`),
//! `duration_ms` (log-normal, about 90 s; 0 for failed and busy calls) and
//! the event time (any TIMESTAMP column, or a BIGINT column whose name says
//! time: epoch milliseconds). Event times follow the wall clock at
//! `rows-per-second`, out of order by up to 3 s, and about 0.2% of events
//! are 10 to 60 s late. For the Yahoo streaming benchmark's ad events,
//! `event_type` is `view`, `click` or `purchase`, and `ad_id` and
//! `campaign_id` come from 1000 ads in 100 campaigns. Other columns get
//! random values of their type.
//!
//! Options: `rows-per-second` (default 10000, over all instances) and
//! `number-of-rows` (unbounded if absent).

use std::sync::{Arc, OnceLock};

use arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder, Float64Builder,
    Int16Builder, Int32Builder, Int64Builder, Int8Builder, StringBuilder,
};
use arrow::datatypes::{DataType, Field, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::connector::generator::{self, Pace};
use crate::connector::{EventSender, ReaderContext, SourceReader};
use crate::error::{Error, Result};
use crate::options::Options;

/// The name of a generator instance's one split.
const GENERATOR_SPLIT: &str = "generator";

const CELLS: usize = 500;
const SUBSCRIBERS: usize = 100_000;
/// The Zipf exponent of the load over cells.
const CELL_SKEW: f64 = 1.1;
/// Events arrive up to this much out of order.
const MAX_DISORDER_MS: i64 = 3_000;
/// The share of events that arrive very late.
const LATE_FRACTION: f64 = 0.002;

#[derive(Debug, Clone)]
pub struct DatagenSpec {
    pub rows_per_second: u64,
    pub number_of_rows: Option<u64>,
    /// Columns generated as sequences (Flink's `'fields.<column>.kind' =
    /// 'sequence'`): the column's index and the sequence's first value. Row
    /// i (counted over all instances) gets start + i, whatever the batches.
    sequences: Vec<(usize, i64)>,
}

impl DatagenSpec {
    pub fn from_options(opts: &mut Options, schema: &SchemaRef) -> Result<Self> {
        let rows_per_second = opts.take_u64("rows-per-second")?.unwrap_or(10_000);
        if rows_per_second == 0 {
            return Err(Error::invalid_parameter(
                "option 'rows-per-second' of connector \"datagen\" must be at least 1",
            ));
        }
        let mut number_of_rows = opts.take_u64("number-of-rows")?;
        let mut sequences = Vec::new();
        for (index, field) in schema.fields().iter().enumerate() {
            let key = |what: &str| format!("fields.{}.{what}", field.name());
            let kind = take_any_case(opts, &key("kind"));
            match kind.as_deref().map(str::to_ascii_lowercase).as_deref() {
                None | Some("random") => {}
                Some("sequence") => {
                    if !(field.data_type().is_integer() || field.data_type() == &DataType::Utf8) {
                        return Err(Error::invalid_parameter(format!(
                            "a sequence column of connector \"datagen\" is an integer or a string, and \"{}\" is not",
                            field.name()
                        )));
                    }
                    let bound = |what: &str, value: Option<String>| -> Result<i64> {
                        let value = value.ok_or_else(|| {
                            Error::invalid_parameter(format!(
                                "a sequence column of connector \"datagen\" needs '{}'",
                                key(what)
                            ))
                        })?;
                        value.trim().parse().map_err(|_| {
                            Error::invalid_parameter(format!(
                                "invalid '{}' \"{value}\": expected an integer",
                                key(what)
                            ))
                        })
                    };
                    let start = bound("start", take_any_case(opts, &key("start")))?;
                    let end = bound("end", take_any_case(opts, &key("end")))?;
                    if end < start {
                        return Err(Error::invalid_parameter(format!(
                            "'{}' is before '{}'",
                            key("end"),
                            key("start")
                        )));
                    }
                    // The source ends with the sequence, as Flink's does.
                    let rows = (end - start) as u64 + 1;
                    number_of_rows = Some(number_of_rows.map_or(rows, |n| n.min(rows)));
                    sequences.push((index, start));
                }
                Some(other) => {
                    return Err(Error::invalid_parameter(format!(
                        "invalid '{}' \"{other}\"; use random or sequence",
                        key("kind")
                    )))
                }
            }
        }
        Ok(DatagenSpec {
            rows_per_second,
            number_of_rows,
            sequences,
        })
    }
}

/// Takes option `key`, matching the column name in it in any case (the DDL
/// may spell it `callId`, the schema folds it).
fn take_any_case(opts: &mut Options, key: &str) -> Option<String> {
    opts.take_matching(|k| k.eq_ignore_ascii_case(key))
}

/// The columns of a datagen table declared without a column list.
pub const DEFAULT_COLUMNS: &str = "event_time BIGINT, cell_id STRING, msisdn STRING, \
     status STRING, duration_ms INT, ts AS TO_TIMESTAMP_LTZ(event_time, 3), \
     WATERMARK FOR ts AS ts - INTERVAL '5' SECOND";

/// How one column is generated.
#[derive(Debug, Clone, Copy)]
enum ColumnGen {
    EventTime,
    CellId,
    Msisdn,
    Status,
    Duration,
    /// Yahoo streaming benchmark: view / click / purchase.
    EventType,
    AdId,
    CampaignId,
    Random,
    /// `'fields.<column>.kind' = 'sequence'`: its first value.
    Sequence(i64),
}

const ADS: usize = 1000;
const ADS_PER_CAMPAIGN: usize = 10;
const EVENT_TYPES: [&str; 3] = ["view", "click", "purchase"];

fn column_gen(field: &Field) -> ColumnGen {
    let name = field.name().to_ascii_lowercase();
    let t = field.data_type();
    match t {
        DataType::Timestamp(..) => ColumnGen::EventTime,
        DataType::Int64 if name.contains("time") || name == "ts" || name.ends_with("_ts") => {
            ColumnGen::EventTime
        }
        DataType::Utf8 if name.contains("cell") => ColumnGen::CellId,
        DataType::Utf8
            if name.contains("msisdn")
                || name.contains("subscriber")
                || name.contains("caller") =>
        {
            ColumnGen::Msisdn
        }
        DataType::Utf8 if name.contains("status") => ColumnGen::Status,
        DataType::Utf8 if name == "event_type" => ColumnGen::EventType,
        DataType::Utf8 if name == "ad_id" => ColumnGen::AdId,
        DataType::Utf8 if name == "campaign_id" => ColumnGen::CampaignId,
        _ if name.contains("duration") && (t.is_integer() || t.is_floating()) => {
            ColumnGen::Duration
        }
        _ => ColumnGen::Random,
    }
}

struct Names {
    ads: Vec<String>,
    campaigns: Vec<String>,
    cells: Vec<String>,
    subscribers: Vec<String>,
    /// Cumulative Zipf weights over cells, normalized to 1.
    cell_cdf: Vec<f64>,
}

fn names() -> &'static Names {
    static NAMES: OnceLock<Names> = OnceLock::new();
    NAMES.get_or_init(|| {
        let cells = (1..=CELLS).map(|i| format!("cell-{i:04}")).collect();
        let subscribers = (0..SUBSCRIBERS)
            .map(|i| format!("3467{:08}", (i as u64 * 7_919_993) % 100_000_000))
            .collect();
        let weights: Vec<f64> = (1..=CELLS)
            .map(|k| 1.0 / (k as f64).powf(CELL_SKEW))
            .collect();
        let total: f64 = weights.iter().sum();
        let mut acc = 0.0;
        let cell_cdf = weights
            .iter()
            .map(|w| {
                acc += w / total;
                acc
            })
            .collect();
        Names {
            ads: (0..ADS).map(|i| format!("ad-{i:04}")).collect(),
            campaigns: (0..ADS / ADS_PER_CAMPAIGN)
                .map(|i| format!("camp-{i:03}"))
                .collect(),
            cells,
            subscribers,
            cell_cdf,
        }
    })
}

/// The values of one generated row that other columns depend on.
struct RowDraw {
    event_time_ms: i64,
    status: usize,
    duration_ms: i64,
    /// The ad of an ad event (its campaign is ad / ADS_PER_CAMPAIGN).
    ad: usize,
}

const STATUSES: [&str; 4] = ["ok", "dropped", "failed", "busy"];

pub struct DatagenReader {
    spec: DatagenSpec,
    ctx: ReaderContext,
    gens: Vec<ColumnGen>,
    rng: StdRng,
}

impl DatagenReader {
    pub fn new(spec: DatagenSpec, ctx: ReaderContext) -> Self {
        let mut gens: Vec<ColumnGen> = ctx.schema.fields().iter().map(|f| column_gen(f)).collect();
        for (index, start) in &spec.sequences {
            gens[*index] = ColumnGen::Sequence(*start);
        }
        let rng = StdRng::seed_from_u64(0x5EED_0000 + ctx.instance as u64);
        DatagenReader {
            spec,
            ctx,
            gens,
            rng,
        }
    }

    fn draw(&mut self, nominal_ms: i64) -> RowDraw {
        let late = self.rng.random::<f64>() < LATE_FRACTION;
        let event_time_ms = if late {
            nominal_ms - self.rng.random_range(10_000..60_000)
        } else {
            nominal_ms - self.rng.random_range(0..=MAX_DISORDER_MS)
        };
        let p: f64 = self.rng.random();
        let status = if p < 0.92 {
            0
        } else if p < 0.95 {
            1
        } else if p < 0.98 {
            2
        } else {
            3
        };
        let duration_ms = if status >= 2 {
            0
        } else {
            // Log-normal around 90 s (Box-Muller for the normal draw).
            let u1: f64 = self.rng.random::<f64>().max(1e-12);
            let u2: f64 = self.rng.random();
            let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
            (90_000.0 * (0.8 * z).exp()).min(3_600_000.0) as i64
        };
        RowDraw {
            event_time_ms,
            status,
            duration_ms,
            ad: self.rng.random_range(0..ADS),
        }
    }

    /// Generates rows with global indices `first, first + step, ...` (`n` of them).
    fn batch(&mut self, start_ms: i64, first: u64, step: u64, n: usize) -> Result<RecordBatch> {
        let names = names();
        let rps = self.spec.rows_per_second as f64;
        let draws: Vec<RowDraw> = (0..n as u64)
            .map(|k| {
                let index = first + k * step;
                let nominal = start_ms + (index as f64 * 1000.0 / rps) as i64;
                self.draw(nominal)
            })
            .collect();
        let schema = self.ctx.schema.clone();
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
        for (field, gen) in schema.fields().iter().zip(self.gens.clone()) {
            let array: ArrayRef = match gen {
                ColumnGen::EventTime => event_time_array(field.data_type(), &draws)?,
                ColumnGen::CellId => {
                    let mut b = StringBuilder::with_capacity(n, n * 9);
                    for _ in 0..n {
                        let u: f64 = self.rng.random();
                        let i = names.cell_cdf.partition_point(|c| *c < u).min(CELLS - 1);
                        b.append_value(&names.cells[i]);
                    }
                    Arc::new(b.finish())
                }
                ColumnGen::Msisdn => {
                    let mut b = StringBuilder::with_capacity(n, n * 12);
                    for _ in 0..n {
                        b.append_value(&names.subscribers[self.rng.random_range(0..SUBSCRIBERS)]);
                    }
                    Arc::new(b.finish())
                }
                ColumnGen::Status => {
                    let mut b = StringBuilder::with_capacity(n, n * 4);
                    for d in &draws {
                        b.append_value(STATUSES[d.status]);
                    }
                    Arc::new(b.finish())
                }
                ColumnGen::Duration => {
                    numeric_array(field.data_type(), draws.iter().map(|d| d.duration_ms))?
                }
                ColumnGen::EventType => {
                    let mut b = StringBuilder::with_capacity(n, n * 5);
                    for _ in 0..n {
                        b.append_value(EVENT_TYPES[self.rng.random_range(0..EVENT_TYPES.len())]);
                    }
                    Arc::new(b.finish())
                }
                ColumnGen::AdId => {
                    let mut b = StringBuilder::with_capacity(n, n * 7);
                    for d in &draws {
                        b.append_value(&names.ads[d.ad]);
                    }
                    Arc::new(b.finish())
                }
                ColumnGen::CampaignId => {
                    let mut b = StringBuilder::with_capacity(n, n * 8);
                    for d in &draws {
                        b.append_value(&names.campaigns[d.ad / ADS_PER_CAMPAIGN]);
                    }
                    Arc::new(b.finish())
                }
                ColumnGen::Random => random_array(field.data_type(), n, &mut self.rng)?,
                ColumnGen::Sequence(start) => {
                    let values = (0..n as u64).map(|k| start + (first + k * step) as i64);
                    match field.data_type() {
                        DataType::Utf8 => Arc::new(
                            values
                                .map(|v| Some(v.to_string()))
                                .collect::<arrow::array::StringArray>(),
                        ),
                        t => numeric_array(t, values)?,
                    }
                }
            };
            columns.push(array);
        }
        Ok(RecordBatch::try_new(schema, columns)?)
    }
}

fn event_time_array(t: &DataType, draws: &[RowDraw]) -> Result<ArrayRef> {
    let ms = draws.iter().map(|d| d.event_time_ms);
    Ok(match t {
        DataType::Timestamp(unit, tz) => {
            let tz = tz.clone();
            match unit {
                TimeUnit::Second => Arc::new(
                    ms.map(|v| Some(v / 1000))
                        .collect::<arrow::array::TimestampSecondArray>()
                        .with_timezone_opt(tz),
                ),
                TimeUnit::Millisecond => Arc::new(
                    ms.map(Some)
                        .collect::<arrow::array::TimestampMillisecondArray>()
                        .with_timezone_opt(tz),
                ),
                TimeUnit::Microsecond => Arc::new(
                    ms.map(|v| Some(v * 1000))
                        .collect::<arrow::array::TimestampMicrosecondArray>()
                        .with_timezone_opt(tz),
                ),
                TimeUnit::Nanosecond => Arc::new(
                    ms.map(|v| Some(v * 1_000_000))
                        .collect::<arrow::array::TimestampNanosecondArray>()
                        .with_timezone_opt(tz),
                ),
            }
        }
        other => numeric_array(other, ms)?,
    })
}

fn numeric_array(t: &DataType, values: impl Iterator<Item = i64>) -> Result<ArrayRef> {
    Ok(match t {
        DataType::Int8 => Arc::new(
            values
                .map(|v| Some(v as i8))
                .collect::<arrow::array::Int8Array>(),
        ),
        DataType::Int16 => Arc::new(
            values
                .map(|v| Some(v as i16))
                .collect::<arrow::array::Int16Array>(),
        ),
        DataType::Int32 => Arc::new(
            values
                .map(|v| Some(v as i32))
                .collect::<arrow::array::Int32Array>(),
        ),
        DataType::Int64 => Arc::new(values.map(Some).collect::<arrow::array::Int64Array>()),
        DataType::Float32 => Arc::new(
            values
                .map(|v| Some(v as f32))
                .collect::<arrow::array::Float32Array>(),
        ),
        DataType::Float64 => Arc::new(
            values
                .map(|v| Some(v as f64))
                .collect::<arrow::array::Float64Array>(),
        ),
        other => {
            return Err(Error::internal(format!(
                "datagen cannot make numbers of type {other}"
            )))
        }
    })
}

fn random_array(t: &DataType, n: usize, rng: &mut StdRng) -> Result<ArrayRef> {
    Ok(match t {
        DataType::Boolean => {
            let mut b = BooleanBuilder::with_capacity(n);
            (0..n).for_each(|_| b.append_value(rng.random()));
            Arc::new(b.finish())
        }
        DataType::Int8 => {
            let mut b = Int8Builder::with_capacity(n);
            (0..n).for_each(|_| b.append_value(rng.random_range(0..100)));
            Arc::new(b.finish())
        }
        DataType::Int16 => {
            let mut b = Int16Builder::with_capacity(n);
            (0..n).for_each(|_| b.append_value(rng.random_range(0..1000)));
            Arc::new(b.finish())
        }
        DataType::Int32 => {
            let mut b = Int32Builder::with_capacity(n);
            (0..n).for_each(|_| b.append_value(rng.random_range(0..1000)));
            Arc::new(b.finish())
        }
        DataType::Int64 => {
            let mut b = Int64Builder::with_capacity(n);
            (0..n).for_each(|_| b.append_value(rng.random_range(0..1_000_000)));
            Arc::new(b.finish())
        }
        DataType::Float32 => {
            let mut b = Float32Builder::with_capacity(n);
            (0..n).for_each(|_| b.append_value(rng.random::<f32>() * 100.0));
            Arc::new(b.finish())
        }
        DataType::Float64 => {
            let mut b = Float64Builder::with_capacity(n);
            (0..n).for_each(|_| b.append_value(rng.random::<f64>() * 100.0));
            Arc::new(b.finish())
        }
        DataType::Decimal128(p, s) => {
            let max = 10i128.pow((*p).min(18) as u32);
            let mut b = Decimal128Builder::with_capacity(n).with_precision_and_scale(*p, *s)?;
            (0..n).for_each(|_| b.append_value(rng.random_range(0..max)));
            Arc::new(b.finish())
        }
        DataType::Utf8 => {
            const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
            let mut b = StringBuilder::with_capacity(n, n * 8);
            let mut word = [0u8; 8];
            for _ in 0..n {
                for c in word.iter_mut() {
                    *c = ALPHABET[rng.random_range(0..ALPHABET.len())];
                }
                b.append_value(std::str::from_utf8(&word).expect("ascii"));
            }
            Arc::new(b.finish())
        }
        DataType::Date32 => {
            let mut b = Date32Builder::with_capacity(n);
            (0..n).for_each(|_| b.append_value(19_000 + rng.random_range(0..1000)));
            Arc::new(b.finish())
        }
        other => {
            return Err(Error::not_supported(format!(
                "datagen cannot generate values of type {other}"
            )))
        }
    })
}

impl SourceReader for DatagenReader {
    fn run(mut self: Box<Self>, out: &EventSender) -> Result<()> {
        let pace = Pace {
            total: self.spec.number_of_rows,
            rows_per_second: self.spec.rows_per_second as f64,
            limited: true,
        };
        let ctx = self.ctx.clone();
        let step = ctx.parallelism as u64;
        generator::run(&ctx, out, GENERATOR_SPLIT, pace, |first| {
            // Event times go on from now after a restart.
            let start_ms = chrono::Utc::now().timestamp_millis()
                - (first as f64 * 1000.0 / self.spec.rows_per_second as f64) as i64;
            Ok(move |first, n| self.batch(start_ms, first, step, n))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cell_load_is_skewed() {
        let n = names();
        // The busiest cell carries far more than an even share.
        assert!(n.cell_cdf[0] > 5.0 / CELLS as f64);
        assert!((n.cell_cdf[CELLS - 1] - 1.0).abs() < 1e-9);
    }
}
