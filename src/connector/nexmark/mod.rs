//! The `nexmark` connector: Nexmark's auction events (people, auctions and
//! bids, 1:3:46 by default), as Flink's nexmark source makes them, in
//! Flink's table shape:
//!
//! ```sql
//! CREATE TABLE datagen (event_type INT, person ROW<id BIGINT, name VARCHAR, ...>,
//!   auction ROW<...>, bid ROW<...>, ...) WITH ('connector' = 'nexmark', ...)
//! ```
//!
//! The events are made by [`events::Generator`] (hot auctions, bidders
//! and sellers; each event a function of its number, so the same for any
//! parallelism). Instance i of p makes events i, i + p, ... As in Flink,
//! `events.num` bounds the stream (0: unbounded) and, unless
//! `rate.limited`, events are made as fast as the job takes them:
//! `first-event.rate` only spaces their times. As in Flink's generator,
//! `next-event.rate`, `rate.shape` and `rate.period` are checked and have
//! no effect. Sluice adds `base-time`, the time of the first event: with it
//! every job over the table sees the same events (without it, the first
//! event is at the job's start, as in Flink).
//!
//! A row holds one event: `event_type` (0 person, 1 auction, 2 bid) and
//! that event's ROW; the other two ROWs are NULL. Columns and ROW fields are
//! matched by name (any case), so a table may declare fewer of them.

mod events;

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StructArray};
use arrow::datatypes::{DataType, Fields, SchemaRef};

use crate::connector::generator::{self, Pace};
use crate::connector::{EventSender, ReaderContext, SourceReader};
use crate::error::{Error, Result};
use crate::options::Options;
use events::{Events, Generator, Kind, Settings, AUCTION_FIELDS, BID_FIELDS, PERSON_FIELDS};

/// The name of a generator instance's one split.
const GENERATOR_SPLIT: &str = "nexmark";

#[derive(Debug, Clone)]
pub struct NexmarkSpec {
    settings: Settings,
    rate_limited: bool,
    /// `events.num`: None for an unbounded stream.
    pub events: Option<u64>,
    /// `base-time` (Sluice's): the time of the first event, in ms since
    /// the epoch. None: the job's start, as in Flink.
    base_ms: Option<u64>,
}

impl NexmarkSpec {
    pub fn from_options(opts: &mut Options, schema: &SchemaRef) -> Result<Self> {
        check_schema(schema)?;
        let count = |opts: &mut Options, key: &str, default: u64| -> Result<u64> {
            Ok(opts.take_u64(key)?.unwrap_or(default))
        };
        let size = |opts: &mut Options, key: &str, default: u64| -> Result<u64> {
            match opts.take(key) {
                None => Ok(default),
                Some(v) => crate::options::parse_bytes(&v)
                    .map(|n| n as u64)
                    .map_err(|e| Error::invalid_parameter(format!("invalid '{key}': {e}"))),
            }
        };
        match opts
            .take("rate.shape")
            .map(|s| s.to_ascii_lowercase())
            .as_deref()
        {
            None | Some("square") | Some("sine") => {}
            Some(other) => {
                return Err(Error::invalid_parameter(format!(
                    "invalid 'rate.shape' \"{other}\"; use square or sine"
                )))
            }
        }
        opts.take_duration("rate.period")?;
        let next_rate = count(opts, "next-event.rate", 10_000)?;
        let settings = Settings {
            rate: count(opts, "first-event.rate", 10_000)?,
            person_proportion: count(opts, "person.proportion", 1)?,
            auction_proportion: count(opts, "auction.proportion", 3)?,
            bid_proportion: count(opts, "bid.proportion", 46)?,
            hot_auction_ratio: count(opts, "bid.hot-ratio.auctions", 2)?,
            hot_bidder_ratio: count(opts, "bid.hot-ratio.bidders", 4)?,
            hot_seller_ratio: count(opts, "auction.hot-ratio.sellers", 4)?,
            person_avg_size: size(opts, "person.avg-size", 200)?,
            auction_avg_size: size(opts, "auction.avg-size", 500)?,
            bid_avg_size: size(opts, "bid.avg-size", 100)?,
        };
        let base_ms = opts.take("base-time").map(|v| base_time(&v)).transpose()?;
        let spec = NexmarkSpec {
            base_ms,
            rate_limited: opts.take_bool("rate.limited")?.unwrap_or(false),
            events: opts.take_u64("events.num")?.filter(|n| *n > 0),
            settings,
        };
        for key in ["keep-alive", "stop-at", "max-emit-speed"] {
            if let Some(v) = opts.take(key) {
                return Err(Error::not_supported(format!(
                    "'{key}' = '{v}' of connector \"nexmark\" is not supported: the stream ends after 'events.num' events, or never"
                )));
            }
        }
        let s = &spec.settings;
        if s.rate == 0 || next_rate == 0 {
            return Err(Error::invalid_parameter(
                "the event rates of connector \"nexmark\" must be at least 1",
            ));
        }
        // Auctions have sellers and bids have bidders and auctions, so
        // there must be people and auctions.
        if s.person_proportion == 0 || s.auction_proportion == 0 {
            return Err(Error::invalid_parameter(
                "'person.proportion' and 'auction.proportion' of connector \"nexmark\" must be at least 1",
            ));
        }
        for (key, ratio) in [
            ("bid.hot-ratio.auctions", s.hot_auction_ratio),
            ("bid.hot-ratio.bidders", s.hot_bidder_ratio),
            ("auction.hot-ratio.sellers", s.hot_seller_ratio),
        ] {
            if ratio == 0 {
                return Err(Error::invalid_parameter(format!(
                    "'{key}' of connector \"nexmark\" must be at least 1"
                )));
            }
        }
        Ok(spec)
    }

    /// The average time between events (of the first rate), in ms.
    fn inter_event_ms(&self) -> f64 {
        1000.0 / self.settings.rate as f64
    }
}

/// `base-time`: a UTC time (`2024-01-01 00:00:00[.fff]`) or ms since the
/// epoch.
fn base_time(text: &str) -> Result<u64> {
    if let Ok(ms) = text.trim().parse::<u64>() {
        return Ok(ms);
    }
    chrono::NaiveDateTime::parse_from_str(text.trim(), "%Y-%m-%d %H:%M:%S%.f")
        .ok()
        .and_then(|t| u64::try_from(t.and_utc().timestamp_millis()).ok())
        .ok_or_else(|| {
            Error::invalid_parameter(format!(
                "invalid 'base-time' \"{text}\": use a UTC time such as 2024-01-01 00:00:00, or ms since the epoch"
            ))
        })
}

/// Checks that the table's columns are ones the connector makes.
fn check_schema(schema: &SchemaRef) -> Result<()> {
    for field in schema.fields() {
        let name = field.name().to_ascii_lowercase();
        let known = match name.as_str() {
            "event_type" => {
                if !field.data_type().is_integer() {
                    return Err(shape_error(&format!("\"{}\" is an INT", field.name())));
                }
                continue;
            }
            "person" => PERSON_FIELDS,
            "auction" => AUCTION_FIELDS,
            "bid" => BID_FIELDS,
            _ => {
                return Err(shape_error(&format!(
                    "it makes no column \"{}\"",
                    field.name()
                )))
            }
        };
        let DataType::Struct(fields) = field.data_type() else {
            return Err(shape_error(&format!("\"{}\" is a ROW<...>", field.name())));
        };
        for f in fields {
            if !known.contains(&f.name().to_ascii_lowercase().as_str()) {
                return Err(shape_error(&format!(
                    "{} has no field \"{}\" (it has {})",
                    field.name(),
                    f.name(),
                    known.join(", ")
                )));
            }
        }
    }
    Ok(())
}

fn shape_error(why: &str) -> Error {
    Error::invalid_parameter(format!(
        "connector \"nexmark\" makes the columns event_type INT, person ROW<...>, auction ROW<...> and bid ROW<...> (nexmark's ddl_gen.sql): {why}"
    ))
}

pub struct NexmarkReader {
    spec: NexmarkSpec,
    ctx: ReaderContext,
}

impl NexmarkReader {
    pub fn new(spec: NexmarkSpec, ctx: ReaderContext) -> Self {
        NexmarkReader { spec, ctx }
    }

    /// The rows of `events`, in the table's columns.
    fn batch(&self, mut events: Events) -> Result<RecordBatch> {
        let schema = self.ctx.schema.clone();
        let columns = schema
            .fields()
            .iter()
            .map(|field| {
                let kind = match field.name().to_ascii_lowercase().as_str() {
                    "event_type" => return as_type(Arc::new(events.kinds()), field.data_type()),
                    "person" => Kind::Person,
                    "auction" => Kind::Auction,
                    _ => Kind::Bid,
                };
                let DataType::Struct(fields) = field.data_type() else {
                    return Err(Error::internal("a nexmark ROW column is not a struct"));
                };
                row_column(&mut events, kind, fields)
            })
            .collect::<Result<Vec<ArrayRef>>>()?;
        Ok(RecordBatch::try_new(schema, columns)?)
    }
}

/// The ROW column of `kind`: the fields the table declares, cast to their
/// declared types, NULL in the rows of other kinds.
fn row_column(events: &mut Events, kind: Kind, fields: &Fields) -> Result<ArrayRef> {
    let nulls = events.nulls(kind);
    let children = fields
        .iter()
        .map(|f| {
            let values = events.take(kind, &f.name().to_ascii_lowercase(), &nulls);
            as_type(values, f.data_type())
        })
        .collect::<Result<Vec<ArrayRef>>>()?;
    Ok(Arc::new(StructArray::try_new(
        fields.clone(),
        children,
        Some(nulls),
    )?))
}

/// `values` as the table declares its column (`event_type INT`, or
/// `BIGINT`), cast only when it differs.
fn as_type(values: ArrayRef, declared: &DataType) -> Result<ArrayRef> {
    Ok(match values.data_type() == declared {
        true => values,
        false => arrow::compute::cast(&values, declared)?,
    })
}

impl SourceReader for NexmarkReader {
    fn run(self: Box<Self>, out: &EventSender) -> Result<()> {
        let pace = Pace {
            total: self.spec.events,
            rows_per_second: self.spec.settings.rate as f64,
            limited: self.spec.rate_limited,
        };
        let ctx = self.ctx.clone();
        let p = ctx.parallelism as u64;
        generator::run(&ctx, out, GENERATOR_SPLIT, pace, |first| {
            // Unless fixed, event times go on from now after a restart.
            let now_ms = chrono::Utc::now().timestamp_millis();
            let base_ms = self.spec.base_ms.unwrap_or(
                (now_ms as f64 - first as f64 * self.spec.inter_event_ms()).max(0.0) as u64,
            );
            let generator = Generator::new(self.spec.settings.clone(), base_ms);
            Ok(move |first, n| self.batch(generator.make(first, p, n)))
        })
    }
}
