//! The `nexmark` connector: Nexmark's auction events (people, auctions and
//! bids, 1:3:46 by default), as Flink's nexmark source makes them, in
//! Flink's table shape:
//!
//! ```sql
//! CREATE TABLE datagen (event_type INT, person ROW<id BIGINT, name VARCHAR, ...>,
//!   auction ROW<...>, bid ROW<...>, ...) WITH ('connector' = 'nexmark', ...)
//! ```
//!
//! The events come from the `nexmark` crate, the reference generator's
//! port (hot auctions, bidders and sellers; each event a function of its
//! number, so the same for any parallelism). Instance i of p makes events
//! i, i + p, ... As in Flink, `events.num` bounds the stream (0: unbounded)
//! and, unless `rate.limited`, events are made as fast as the job takes
//! them: the rates only space their timestamps.
//!
//! A row holds one event: `event_type` (0 person, 1 auction, 2 bid) and
//! that event's ROW; the other two ROWs are NULL. Columns and ROW fields are
//! matched by name (any case), so a table may declare fewer of them.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray, StructArray,
    TimestampMillisecondArray,
};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{DataType, Field, Fields, SchemaRef, TimeUnit};
use nexmark::config::{NexmarkConfig, RateShape};
use nexmark::event::Event;
use nexmark::EventGenerator;

use crate::connector::generator::{self, Pace};
use crate::connector::{EventSender, ReaderContext, SourceReader};
use crate::error::{Error, Result};
use crate::options::Options;

/// The name of a generator instance's one split.
const GENERATOR_SPLIT: &str = "nexmark";

#[derive(Debug, Clone)]
pub struct NexmarkSpec {
    first_rate: usize,
    next_rate: usize,
    rate_shape: RateShape,
    rate_period: usize,
    rate_limited: bool,
    /// `events.num`: None for an unbounded stream.
    pub events: Option<u64>,
    person_proportion: usize,
    auction_proportion: usize,
    bid_proportion: usize,
    hot_auction_ratio: usize,
    hot_bidder_ratio: usize,
    hot_seller_ratio: usize,
    person_avg_size: usize,
    auction_avg_size: usize,
    bid_avg_size: usize,
}

/// The ROW columns and the fields each may have (lower case).
const PERSON: &[&str] = &[
    "id",
    "name",
    "emailaddress",
    "creditcard",
    "city",
    "state",
    "datetime",
    "extra",
];
const AUCTION: &[&str] = &[
    "id",
    "itemname",
    "description",
    "initialbid",
    "reserve",
    "datetime",
    "expires",
    "seller",
    "category",
    "extra",
];
const BID: &[&str] = &[
    "auction", "bidder", "price", "channel", "url", "datetime", "extra",
];

impl NexmarkSpec {
    pub fn from_options(opts: &mut Options, schema: &SchemaRef) -> Result<Self> {
        check_schema(schema)?;
        let count = |opts: &mut Options, key: &str, default: u64| -> Result<usize> {
            Ok(opts.take_u64(key)?.unwrap_or(default) as usize)
        };
        let size = |opts: &mut Options, key: &str, default: usize| -> Result<usize> {
            match opts.take(key) {
                None => Ok(default),
                Some(v) => crate::options::parse_bytes(&v)
                    .map_err(|e| Error::invalid_parameter(format!("invalid '{key}': {e}"))),
            }
        };
        let rate_shape = match opts
            .take("rate.shape")
            .map(|s| s.to_ascii_lowercase())
            .as_deref()
        {
            None | Some("square") => RateShape::Square,
            Some("sine") => RateShape::Sine,
            Some(other) => {
                return Err(Error::invalid_parameter(format!(
                    "invalid 'rate.shape' \"{other}\"; use square or sine"
                )))
            }
        };
        let spec = NexmarkSpec {
            first_rate: count(opts, "first-event.rate", 10_000)?,
            next_rate: count(opts, "next-event.rate", 10_000)?,
            rate_shape,
            rate_period: opts
                .take_duration("rate.period")?
                .map_or(600, |d| d.as_secs().max(1) as usize),
            rate_limited: opts.take_bool("rate.limited")?.unwrap_or(false),
            events: opts.take_u64("events.num")?.filter(|n| *n > 0),
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
        for key in ["keep-alive", "stop-at", "max-emit-speed"] {
            if let Some(v) = opts.take(key) {
                return Err(Error::not_supported(format!(
                    "'{key}' = '{v}' of connector \"nexmark\" is not supported: the stream ends after 'events.num' events, or never"
                )));
            }
        }
        if spec.first_rate == 0 || spec.next_rate == 0 {
            return Err(Error::invalid_parameter(
                "the event rates of connector \"nexmark\" must be at least 1",
            ));
        }
        if spec.person_proportion + spec.auction_proportion + spec.bid_proportion == 0 {
            return Err(Error::invalid_parameter(
                "the proportions of connector \"nexmark\" cannot all be 0",
            ));
        }
        Ok(spec)
    }

    /// The generator's configuration, its events timed from `base_ms`.
    fn config(&self, base_ms: u64) -> NexmarkConfig {
        NexmarkConfig {
            first_rate: self.first_rate,
            next_rate: self.next_rate,
            rate_shape: self.rate_shape,
            rate_period: self.rate_period,
            person_proportion: self.person_proportion,
            auction_proportion: self.auction_proportion,
            bid_proportion: self.bid_proportion,
            hot_auction_ratio: self.hot_auction_ratio,
            hot_bidder_ratio: self.hot_bidder_ratio,
            hot_seller_ratio: self.hot_seller_ratio,
            avg_person_byte_size: self.person_avg_size,
            avg_auction_byte_size: self.auction_avg_size,
            avg_bid_byte_size: self.bid_avg_size,
            base_time: base_ms,
            ..NexmarkConfig::default()
        }
    }

    /// The average time between events (of the first rate), in ms.
    fn inter_event_ms(&self) -> f64 {
        1000.0 / self.first_rate as f64
    }
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
            "person" => PERSON,
            "auction" => AUCTION,
            "bid" => BID,
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
    fn batch(&self, events: &[Event]) -> Result<RecordBatch> {
        let schema = self.ctx.schema.clone();
        let columns = schema
            .fields()
            .iter()
            .map(|field| match field.name().to_ascii_lowercase().as_str() {
                "event_type" => {
                    let types = Int32Array::from_iter_values(events.iter().map(|e| match e {
                        Event::Person(_) => 0,
                        Event::Auction(_) => 1,
                        Event::Bid(_) => 2,
                    }));
                    Ok(arrow::compute::cast(&types, field.data_type())?)
                }
                "person" => row_column(
                    field,
                    events,
                    |e| match e {
                        Event::Person(p) => Some(p),
                        _ => None,
                    },
                    person_field,
                ),
                "auction" => row_column(
                    field,
                    events,
                    |e| match e {
                        Event::Auction(a) => Some(a),
                        _ => None,
                    },
                    auction_field,
                ),
                _ => row_column(
                    field,
                    events,
                    |e| match e {
                        Event::Bid(b) => Some(b),
                        _ => None,
                    },
                    bid_field,
                ),
            })
            .collect::<Result<Vec<ArrayRef>>>()?;
        Ok(RecordBatch::try_new(schema, columns)?)
    }
}

/// How a ROW field's value is read from its event, chosen once per column
/// (by the field's name), not per row.
type Accessor<T> = for<'a> fn(&'a T) -> Value<'a>;

/// A value of an event's field, as the column wants it.
enum Value<'a> {
    Int(i64),
    Text(&'a str),
    Time(u64),
}

fn person_field(name: &str) -> Accessor<nexmark::event::Person> {
    match name {
        "id" => |p| Value::Int(p.id as i64),
        "name" => |p| Value::Text(&p.name),
        "emailaddress" => |p| Value::Text(&p.email_address),
        "creditcard" => |p| Value::Text(&p.credit_card),
        "city" => |p| Value::Text(&p.city),
        "state" => |p| Value::Text(&p.state),
        "datetime" => |p| Value::Time(p.date_time),
        _ => |p| Value::Text(&p.extra),
    }
}

fn auction_field(name: &str) -> Accessor<nexmark::event::Auction> {
    match name {
        "id" => |a| Value::Int(a.id as i64),
        "itemname" => |a| Value::Text(&a.item_name),
        "description" => |a| Value::Text(&a.description),
        "initialbid" => |a| Value::Int(a.initial_bid as i64),
        "reserve" => |a| Value::Int(a.reserve as i64),
        "datetime" => |a| Value::Time(a.date_time),
        "expires" => |a| Value::Time(a.expires),
        "seller" => |a| Value::Int(a.seller as i64),
        "category" => |a| Value::Int(a.category as i64),
        _ => |a| Value::Text(&a.extra),
    }
}

fn bid_field(name: &str) -> Accessor<nexmark::event::Bid> {
    match name {
        "auction" => |b| Value::Int(b.auction as i64),
        "bidder" => |b| Value::Int(b.bidder as i64),
        "price" => |b| Value::Int(b.price as i64),
        "channel" => |b| Value::Text(&b.channel),
        "url" => |b| Value::Text(&b.url),
        "datetime" => |b| Value::Time(b.date_time),
        _ => |b| Value::Text(&b.extra),
    }
}

/// A ROW column: its fields from the events of its kind, NULL in the rows
/// of other events.
fn row_column<'a, T: 'a>(
    field: &Field,
    events: &'a [Event],
    of: impl Fn(&'a Event) -> Option<&'a T>,
    accessor: fn(&str) -> Accessor<T>,
) -> Result<ArrayRef> {
    let DataType::Struct(fields) = field.data_type() else {
        return Err(Error::internal("a nexmark ROW column is not a struct"));
    };
    let present: Vec<Option<&T>> = events.iter().map(&of).collect();
    let validity = NullBuffer::from(present.iter().map(Option::is_some).collect::<Vec<_>>());
    let children = fields
        .iter()
        .map(|f| {
            let value = accessor(&f.name().to_ascii_lowercase());
            let values = present.iter().map(|e| e.map(value));
            let array: ArrayRef = match f.data_type() {
                DataType::Utf8 => Arc::new(
                    values
                        .map(|v| match v {
                            Some(Value::Text(t)) => Some(t),
                            _ => None,
                        })
                        .collect::<StringArray>(),
                ),
                DataType::Timestamp(TimeUnit::Millisecond, None) => Arc::new(
                    values
                        .map(|v| match v {
                            Some(Value::Time(t)) => Some(t as i64),
                            _ => None,
                        })
                        .collect::<TimestampMillisecondArray>(),
                ),
                other => {
                    let ints: Int64Array = values
                        .map(|v| match v {
                            Some(Value::Int(i)) => Some(i),
                            Some(Value::Time(t)) => Some(t as i64),
                            _ => None,
                        })
                        .collect();
                    arrow::compute::cast(&ints, other)?
                }
            };
            Ok(array)
        })
        .collect::<Result<Vec<ArrayRef>>>()?;
    let fields: Fields = fields.clone();
    Ok(Arc::new(StructArray::try_new(
        fields,
        children,
        Some(validity),
    )?))
}

impl SourceReader for NexmarkReader {
    fn run(self: Box<Self>, out: &EventSender) -> Result<()> {
        let pace = Pace {
            total: self.spec.events,
            rows_per_second: self.spec.first_rate as f64,
            limited: self.spec.rate_limited,
        };
        let ctx = self.ctx.clone();
        let p = ctx.parallelism as u64;
        generator::run(&ctx, out, GENERATOR_SPLIT, pace, |first| {
            // Event times go on from now after a restart.
            let now_ms = chrono::Utc::now().timestamp_millis();
            let base_ms =
                (now_ms as f64 - first as f64 * self.spec.inter_event_ms()).max(0.0) as u64;
            let mut events = EventGenerator::new(self.spec.config(base_ms))
                .with_offset(first)
                .with_step(p);
            let mut batch = Vec::new();
            Ok(move |_first, n| {
                batch.clear();
                batch.extend(events.by_ref().take(n));
                self.batch(&batch)
            })
        })
    }
}
