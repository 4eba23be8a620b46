//! Nexmark's events, made straight into Arrow columns.
//!
//! Each event is a function of its number alone: its kind comes from the
//! 1:3:46 cycle (by default), its time from the rate, and its fields from a
//! random generator seeded with the number. So any instance can make any
//! event, and instance i of p makes i, i + p, ...
//!
//! The fields are those of the `nexmark` crate (RisingWave's port of the
//! reference generator): the same draws in the same order from the same
//! generator (rand 0.8's `SmallRng`), bit for bit; a test holds this
//! against the crate. As in the reference (Flink's nexmark), event n is
//! n / rate after the first (rounded to ms). What differs from the
//! crate is the cost: it builds a struct of `String`s per event, which
//! then had to be copied into Arrow. Here each string is written once,
//! into its column's buffer, and a batch allocates nothing per row.

use std::sync::{Arc, OnceLock};

use arrow::array::{ArrayRef, Int32Array, Int64Array, StringArray, TimestampMillisecondArray};
use arrow::buffer::{Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use rand_08::rngs::SmallRng;
use rand_08::seq::SliceRandom;
use rand_08::{Rng, SeedableRng};

/// One person in this many is a hot seller or bidder, one auction in this
/// many a hot auction (the first of each run of this many ids).
const HOT_RUN: u64 = 100;
const FIRST_PERSON_ID: u64 = 1000;
const FIRST_AUCTION_ID: u64 = 1000;
const FIRST_CATEGORY_ID: u64 = 10;
const CATEGORIES: u64 = 5;
const ACTIVE_PEOPLE: u64 = 1000;
const IN_FLIGHT_AUCTIONS: u64 = 100;
const PERSON_ID_LEAD: u64 = 10;
const AUCTION_ID_LEAD: u64 = 10;
/// Half the bids go to one of the hot channels.
const HOT_CHANNEL_RATIO: u64 = 2;
const HOT_CHANNELS: [&str; 4] = ["Google", "Facebook", "Baidu", "Apple"];
const CHANNELS: usize = 10_000;
// Spelled as the reference (Java) generator spells them, which Nexmark's
// queries compare with (q3: `P.state = 'OR'`); the nexmark crate lowers
// their case.
const US_STATES: [&str; 6] = ["AZ", "CA", "ID", "OR", "WA", "WY"];
const US_CITIES: [&str; 10] = [
    "Phoenix",
    "Los Angeles",
    "San Francisco",
    "Boise",
    "Portland",
    "Bend",
    "Redmond",
    "Seattle",
    "Kent",
    "Cheyenne",
];
const FIRST_NAMES: [&str; 11] = [
    "Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter", "Walter",
];
const LAST_NAMES: [&str; 9] = [
    "Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones", "Noris",
];

/// What the generator is asked for (Flink's nexmark options).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Events per second: their times are 1/rate s apart.
    pub rate: u64,
    pub person_proportion: u64,
    pub auction_proportion: u64,
    pub bid_proportion: u64,
    pub hot_auction_ratio: u64,
    pub hot_bidder_ratio: u64,
    pub hot_seller_ratio: u64,
    pub person_avg_size: u64,
    pub auction_avg_size: u64,
    pub bid_avg_size: u64,
}

/// A generator of events, timed from a base time.
#[derive(Debug, Clone)]
pub struct Generator {
    settings: Settings,
    /// Time of event 0, in ms since the epoch.
    base_ms: u64,
    /// The three proportions summed: the length of the kinds' cycle.
    cycle: u64,
    /// Microseconds between events.
    delay_us: f32,
    /// How many events on the in-flight auctions last: an auction's length
    /// is drawn from twice the time they take.
    auction_ahead: u64,
}

/// An event's number and where it is in the kinds' cycle.
#[derive(Debug, Clone, Copy)]
struct Place {
    n: u64,
    /// Whole cycles before it.
    cycles: u64,
    /// Its index in its cycle.
    at: u64,
}

/// An event's kind, as the table's `event_type` column has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Person = 0,
    Auction = 1,
    Bid = 2,
}

impl Generator {
    pub fn new(settings: Settings, base_ms: u64) -> Self {
        Generator {
            cycle: settings.person_proportion
                + settings.auction_proportion
                + settings.bid_proportion,
            delay_us: 1_000_000.0 / settings.rate as f32,
            auction_ahead: IN_FLIGHT_AUCTIONS
                * (settings.person_proportion
                    + settings.auction_proportion
                    + settings.bid_proportion)
                / settings.auction_proportion,
            settings,
            base_ms,
        }
    }

    /// Where event `n` is in the kinds' cycle (one division per event).
    fn place(&self, n: u64) -> Place {
        Place {
            n,
            cycles: n / self.cycle,
            at: n % self.cycle,
        }
    }

    fn kind_at(&self, e: Place) -> Kind {
        if e.at < self.settings.person_proportion {
            Kind::Person
        } else if e.at < self.settings.person_proportion + self.settings.auction_proportion {
            Kind::Auction
        } else {
            Kind::Bid
        }
    }

    /// The time of event `n`, in ms since the epoch. As in Flink's
    /// generator, only the first rate spaces the times. The arithmetic is
    /// the crate's (f32, rounded), because auction lengths are drawn in a
    /// range that depends on it.
    pub fn time(&self, n: u64) -> u64 {
        self.base_ms + ((n as f32 * self.delay_us) / 1000.0).round() as u64
    }

    /// The id (from 0) of the last person made by event `e` or before it.
    fn last_person(&self, e: Place) -> u64 {
        let s = &self.settings;
        e.cycles * s.person_proportion + e.at.min(s.person_proportion - 1)
    }

    /// The id (from 0) of the last auction made by event `e` or before it.
    fn last_auction(&self, e: Place) -> u64 {
        let s = &self.settings;
        let Place { cycles, at, .. } = e;
        if at < s.person_proportion {
            (cycles - 1) * s.auction_proportion + s.auction_proportion - 1
        } else if at >= s.person_proportion + s.auction_proportion {
            cycles * s.auction_proportion + s.auction_proportion - 1
        } else {
            cycles * s.auction_proportion + at - s.person_proportion
        }
    }

    /// A person active at event `e` (from 0), a little ahead of the last.
    fn some_person(&self, e: Place, rng: &mut SmallRng) -> u64 {
        let people = self.last_person(e) + 1;
        let active = people.min(ACTIVE_PEOPLE);
        people - active + rng.gen_range(0..(active + PERSON_ID_LEAD) as usize) as u64
    }

    /// An auction in flight at event `e` (from 0), a little ahead of the
    /// last.
    fn some_auction(&self, e: Place, rng: &mut SmallRng) -> u64 {
        let last = self.last_auction(e);
        let first = last.saturating_sub(IN_FLIGHT_AUCTIONS);
        first + rng.gen_range(0..(last - first + 1 + AUCTION_ID_LEAD) as usize) as u64
    }

    /// The `count` events first, first + step, ...
    pub fn make(&self, first: u64, step: u64, count: usize) -> Events {
        let mut out = Events::default();
        out.reserve(count, &self.settings);
        for n in (0..count as u64).map(|k| first + k * step) {
            let e = self.place(n);
            let kind = self.kind_at(e);
            out.kinds.push(kind as i32);
            out.times.push(self.time(n) as i64);
            let rng = &mut SmallRng::seed_from_u64(n);
            match kind {
                Kind::Person => self.person(e, rng, &mut out.person),
                Kind::Auction => self.auction(e, rng, &mut out.auction),
                Kind::Bid => self.bid(e, rng, &mut out.bid),
            }
            let rows = out.kinds.len();
            out.person.close(rows);
            out.auction.close(rows);
            out.bid.close(rows);
        }
        out
    }

    fn person(&self, e: Place, rng: &mut SmallRng, p: &mut Columns) {
        p.ints[0].push((self.last_person(e) + FIRST_PERSON_ID) as i64);
        let [name, email, card, city, state, extra] = &mut p.texts[..] else {
            unreachable!("people have six texts")
        };
        name.push(pick(&FIRST_NAMES, rng));
        name.push(b" ");
        name.push(pick(&LAST_NAMES, rng));
        email.push_letters(7, rng);
        email.push(b"@");
        email.push_letters(5, rng);
        email.push(b".com");
        for i in 0..4 {
            if i > 0 {
                card.push(b" ");
            }
            card.push_digits(rng.gen_range(0..10_000), 4);
        }
        city.push(pick(&US_CITIES, rng));
        state.push(pick(&US_STATES, rng));
        let size = 8
            + name.pending()
            + email.pending()
            + card.pending()
            + city.pending()
            + state.pending();
        push_extra(extra, size as u64, self.settings.person_avg_size, rng);
    }

    fn auction(&self, e: Place, rng: &mut SmallRng, a: &mut Columns) {
        let [item, description, extra] = &mut a.texts[..] else {
            unreachable!("auctions have three texts")
        };
        item.push_letters(20, rng);
        description.push_letters(100, rng);
        let initial_bid = price(rng);
        let reserve = initial_bid + price(rng);
        let time = self.time(e.n);
        let horizon = self.time(e.n + self.auction_ahead) - time;
        let expires = time + 1 + rng.gen_range(0..(horizon * 2).max(1));
        let seller = if rng.gen_range(0..self.settings.hot_seller_ratio as usize) > 0 {
            self.last_person(e) / HOT_RUN * HOT_RUN
        } else {
            self.some_person(e, rng)
        };
        let category = FIRST_CATEGORY_ID + rng.gen_range(0..CATEGORIES as usize) as u64;
        let size = 8 + item.pending() + description.pending() + 5 * 8;
        push_extra(extra, size as u64, self.settings.auction_avg_size, rng);
        let values = [
            self.last_auction(e) + FIRST_AUCTION_ID,
            initial_bid,
            reserve,
            expires,
            seller + FIRST_PERSON_ID,
            category,
        ];
        for (column, value) in a.ints.iter_mut().zip(values) {
            column.push(value as i64);
        }
    }

    fn bid(&self, e: Place, rng: &mut SmallRng, b: &mut Columns) {
        let s = &self.settings;
        let auction = if rng.gen_range(0..s.hot_auction_ratio as usize) > 0 {
            self.last_auction(e) / HOT_RUN * HOT_RUN
        } else {
            self.some_auction(e, rng)
        };
        // Hot bidders are the second of their run, so that they are not
        // also the hot sellers.
        let bidder = if rng.gen_range(0..s.hot_bidder_ratio as usize) > 0 {
            self.last_person(e) / HOT_RUN * HOT_RUN + 1
        } else {
            self.some_person(e, rng)
        };
        let price = price(rng);
        let [channel, url, extra] = &mut b.texts[..] else {
            unreachable!("bids have three texts")
        };
        if rng.gen_range(0..HOT_CHANNEL_RATIO as usize) > 0 {
            let i = rng.gen_range(0..HOT_CHANNELS.len());
            channel.push(HOT_CHANNELS[i].as_bytes());
            url.push(hot_urls()[i].as_bytes());
        } else {
            let (name, address) = channels()
                .choose(rng)
                .expect("the channel table is not empty");
            channel.push(name.as_bytes());
            url.push(address.as_bytes());
        }
        push_extra(extra, 32, s.bid_avg_size, rng);
        let values = [auction + FIRST_AUCTION_ID, bidder + FIRST_PERSON_ID, price];
        for (column, value) in b.ints.iter_mut().zip(values) {
            column.push(value as i64);
        }
    }
}

fn pick<'a>(words: &[&'a str], rng: &mut SmallRng) -> &'a [u8] {
    words
        .choose(rng)
        .expect("the word lists are not empty")
        .as_bytes()
}

/// A price in cents, from 1 to 100,000,000, log-uniform.
fn price(rng: &mut SmallRng) -> u64 {
    (10.0_f32.powf(rng.gen::<f32>() * 6.0) * 100.0).round() as u64
}

/// Letters that bring an event of `size` bytes to about `average` (±20%
/// of what is missing); nothing when it is already larger.
fn push_extra(text: &mut Text, size: u64, average: u64, rng: &mut SmallRng) {
    if size > average {
        return;
    }
    let missing = average - size;
    let delta = (missing + 2) / 5;
    let mut length = missing - delta;
    if delta > 0 {
        length += rng.gen_range(0..2 * delta as usize) as u64;
    }
    text.push_letters(length as usize, rng);
}

/// `https://www.nexmark.com/<a>/<b>/<c>/item.htm?query=1`, its three parts
/// random words seeded by `seed`.
fn base_url(seed: u64) -> String {
    let rng = &mut SmallRng::seed_from_u64(seed);
    let mut word = || -> String {
        let length: usize = rng.gen_range(3..5);
        (0..length)
            .map(|_| match rng.gen_range(0..13) {
                0 => '_',
                _ => rng.gen_range(b'a'..=b'z') as char,
            })
            .collect()
    };
    let (a, b, c) = (word(), word(), word());
    format!("https://www.nexmark.com/{a}/{b}/{c}/item.htm?query=1")
}

fn hot_urls() -> &'static [String] {
    static URLS: OnceLock<Vec<String>> = OnceLock::new();
    URLS.get_or_init(|| (0..HOT_CHANNELS.len() as u64).map(base_url).collect())
}

/// The 10,000 ordinary channels and their urls (nine in ten with a channel
/// id).
fn channels() -> &'static [(String, String)] {
    static CHANNEL_URLS: OnceLock<Vec<(String, String)>> = OnceLock::new();
    CHANNEL_URLS.get_or_init(|| {
        (0..CHANNELS)
            .map(|i| {
                let mut url = base_url(i as u64);
                if SmallRng::seed_from_u64(i as u64).gen_range(0..10) > 0 {
                    let id = ((i as i32).reverse_bits() as i64).abs();
                    url.push_str(&format!("&channel_id={id}"));
                }
                (format!("channel-{i}"), url)
            })
            .collect()
    })
}

/// A text column being built: the bytes of its values and where each ends.
#[derive(Debug)]
pub struct Text {
    offsets: Vec<i32>,
    bytes: Vec<u8>,
}

impl Default for Text {
    fn default() -> Self {
        Text {
            offsets: vec![0],
            bytes: Vec::new(),
        }
    }
}

impl Text {
    fn push(&mut self, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
    }

    /// `length` random lowercase letters.
    fn push_letters(&mut self, length: usize, rng: &mut SmallRng) {
        // A local copy, which the loop keeps in registers.
        let mut local = rng.clone();
        self.bytes
            .extend((0..length).map(|_| local.gen_range(b'a'..=b'z')));
        *rng = local;
    }

    /// `value` in decimal, zero-padded to `width` digits.
    fn push_digits(&mut self, value: u32, width: usize) {
        let start = self.bytes.len();
        let mut rest = value;
        for _ in 0..width {
            self.bytes.push(b'0' + (rest % 10) as u8);
            rest /= 10;
        }
        self.bytes[start..].reverse();
    }

    /// The length of the value being written.
    fn pending(&self) -> usize {
        self.bytes.len() - *self.offsets.last().expect("offsets start with 0") as usize
    }

    /// Ends the value being written.
    fn close(&mut self) {
        self.offsets.push(self.bytes.len() as i32);
    }

    fn finish(&mut self, nulls: Option<NullBuffer>) -> ArrayRef {
        let offsets = std::mem::replace(&mut self.offsets, vec![0]);
        let bytes = std::mem::take(&mut self.bytes);
        Arc::new(StringArray::new(
            OffsetBuffer::new(ScalarBuffer::from(offsets)),
            Buffer::from_vec(bytes),
            nulls,
        ))
    }
}

/// The columns of one kind of event: its numbers, in the order the kind
/// lists them, and its texts. Rows of other kinds hold 0 and "" and are
/// NULL.
#[derive(Debug)]
pub struct Columns {
    ints: Vec<Vec<i64>>,
    texts: Vec<Text>,
}

impl Columns {
    fn new(ints: usize, texts: usize) -> Self {
        Columns {
            ints: vec![Vec::new(); ints],
            texts: (0..texts).map(|_| Text::default()).collect(),
        }
    }

    /// Ends the row, the `rows`th: columns the event did not write get 0
    /// or "".
    fn close(&mut self, rows: usize) {
        for ints in &mut self.ints {
            if ints.len() < rows {
                ints.push(0);
            }
        }
        for text in &mut self.texts {
            text.close();
        }
    }
}

/// A batch of events being made, column by column.
#[derive(Debug)]
pub struct Events {
    kinds: Vec<i32>,
    /// Every event's time (the dateTime of its kind's ROW).
    times: Vec<i64>,
    person: Columns,
    auction: Columns,
    bid: Columns,
}

impl Default for Events {
    fn default() -> Self {
        Events {
            kinds: Vec::new(),
            times: Vec::new(),
            person: Columns::new(1, 6),
            auction: Columns::new(6, 3),
            bid: Columns::new(3, 3),
        }
    }
}

/// A field of one of the three ROWs, as Flink's nexmark table names it
/// (lower case).
pub const PERSON_FIELDS: &[&str] = &[
    "id",
    "name",
    "emailaddress",
    "creditcard",
    "city",
    "state",
    "datetime",
    "extra",
];
pub const AUCTION_FIELDS: &[&str] = &[
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
pub const BID_FIELDS: &[&str] = &[
    "auction", "bidder", "price", "channel", "url", "datetime", "extra",
];

/// Where a ROW field's values are in [`Columns`].
enum Slot {
    Int(usize),
    Text(usize),
    Time,
    Expires,
}

fn slot(kind: Kind, field: &str) -> Slot {
    match (kind, field) {
        (_, "datetime") => Slot::Time,
        (Kind::Person, "id") => Slot::Int(0),
        (Kind::Person, "name") => Slot::Text(0),
        (Kind::Person, "emailaddress") => Slot::Text(1),
        (Kind::Person, "creditcard") => Slot::Text(2),
        (Kind::Person, "city") => Slot::Text(3),
        (Kind::Person, "state") => Slot::Text(4),
        (Kind::Person, _) => Slot::Text(5),
        (Kind::Auction, "id") => Slot::Int(0),
        (Kind::Auction, "itemname") => Slot::Text(0),
        (Kind::Auction, "description") => Slot::Text(1),
        (Kind::Auction, "initialbid") => Slot::Int(1),
        (Kind::Auction, "reserve") => Slot::Int(2),
        (Kind::Auction, "expires") => Slot::Expires,
        (Kind::Auction, "seller") => Slot::Int(4),
        (Kind::Auction, "category") => Slot::Int(5),
        (Kind::Auction, _) => Slot::Text(2),
        (Kind::Bid, "auction") => Slot::Int(0),
        (Kind::Bid, "bidder") => Slot::Int(1),
        (Kind::Bid, "price") => Slot::Int(2),
        (Kind::Bid, "channel") => Slot::Text(0),
        (Kind::Bid, "url") => Slot::Text(1),
        (Kind::Bid, _) => Slot::Text(2),
    }
}

impl Events {
    /// Room for `count` events, so that no buffer grows while they are
    /// made: each text gets its kind's share of the events times about its
    /// largest value.
    fn reserve(&mut self, count: usize, s: &Settings) {
        self.kinds.reserve(count);
        self.times.reserve(count);
        let cycle = (s.person_proportion + s.auction_proportion + s.bid_proportion) as usize;
        let share = |proportion: u64| (count * proportion as usize).div_ceil(cycle) + 1;
        let kinds = [
            (
                &mut self.person,
                share(s.person_proportion),
                [16, 17, 19, 13, 2, s.person_avg_size as usize],
            ),
            (
                &mut self.auction,
                share(s.auction_proportion),
                [20, 100, s.auction_avg_size as usize, 0, 0, 0],
            ),
            (
                &mut self.bid,
                share(s.bid_proportion),
                [16, 96, s.bid_avg_size as usize, 0, 0, 0],
            ),
        ];
        for (columns, events, sizes) in kinds {
            for (text, size) in columns.texts.iter_mut().zip(sizes) {
                text.offsets.reserve(count);
                text.bytes.reserve(events * size);
            }
            for ints in &mut columns.ints {
                ints.reserve(count);
            }
        }
    }

    /// The `event_type` column.
    pub fn kinds(&self) -> Int32Array {
        Int32Array::from(self.kinds.clone())
    }

    /// Which rows hold events of `kind`.
    pub fn nulls(&self, kind: Kind) -> NullBuffer {
        NullBuffer::from_iter(self.kinds.iter().map(|&k| k == kind as i32))
    }

    /// The values of `kind`'s `field` (lower case), NULL where `nulls` is.
    /// They are moved out: each field is taken once.
    pub fn take(&mut self, kind: Kind, field: &str, nulls: &NullBuffer) -> ArrayRef {
        let nulls = Some(nulls.clone());
        let columns = match kind {
            Kind::Person => &mut self.person,
            Kind::Auction => &mut self.auction,
            Kind::Bid => &mut self.bid,
        };
        match slot(kind, field) {
            Slot::Int(i) => Arc::new(Int64Array::new(
                std::mem::take(&mut columns.ints[i]).into(),
                nulls,
            )),
            Slot::Expires => Arc::new(TimestampMillisecondArray::new(
                std::mem::take(&mut columns.ints[3]).into(),
                nulls,
            )),
            Slot::Time => Arc::new(TimestampMillisecondArray::new(
                self.times.clone().into(),
                nulls,
            )),
            Slot::Text(i) => columns.texts[i].finish(nulls),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nexmark::event::Event;

    fn settings() -> Settings {
        Settings {
            rate: 10_000,
            person_proportion: 1,
            auction_proportion: 3,
            bid_proportion: 46,
            hot_auction_ratio: 2,
            hot_bidder_ratio: 4,
            hot_seller_ratio: 4,
            person_avg_size: 200,
            auction_avg_size: 500,
            bid_avg_size: 100,
        }
    }

    fn text(columns: &Columns, i: usize, row: usize) -> &str {
        let t = &columns.texts[i];
        let (from, to) = (t.offsets[row] as usize, t.offsets[row + 1] as usize);
        std::str::from_utf8(&t.bytes[from..to]).unwrap()
    }

    /// Every field and time of events `first`, `first + step`, ... is the
    /// `nexmark` crate's, and every time is n / rate after the base,
    /// rounded to ms (within 1 ms: the crate computes in f32).
    fn equal_the_crate(first: u64, step: u64, count: usize) {
        let base = 1_700_000_000_000;
        let generator = Generator::new(settings(), base);
        let events = generator.make(first, step, count);
        let config = nexmark::config::NexmarkConfig {
            base_time: base,
            ..Default::default()
        };
        let reference = nexmark::EventGenerator::new(config)
            .with_offset(first)
            .with_step(step)
            .take(count);
        let (mut people, mut auctions, mut bids) = (0, 0, 0);
        for (row, event) in reference.enumerate() {
            let n = first + row as u64 * step;
            let tenths = n % 10;
            let ms = n / 10 + u64::from(tenths >= 5);
            let time = events.times[row] as u64;
            assert!(time.abs_diff(base + ms) <= 1, "time of event {n}");
            assert_eq!(time, event.timestamp(), "time of event {n}");
            let (p, a, b) = (&events.person, &events.auction, &events.bid);
            match event {
                Event::Person(e) => {
                    people += 1;
                    assert_eq!(events.kinds[row], 0);
                    assert_eq!(p.ints[0][row], e.id as i64);
                    let fields = [
                        &e.name,
                        &e.email_address,
                        &e.credit_card,
                        &e.city,
                        &e.state,
                        &e.extra,
                    ];
                    for (i, want) in fields.into_iter().enumerate() {
                        // Names, cities and states as the reference
                        // generator spells them; the crate lowers them.
                        let got = match i {
                            0 | 3 | 4 => text(p, i, row).to_lowercase(),
                            _ => text(p, i, row).to_string(),
                        };
                        assert_eq!(&got, want, "field {i} of person {n}");
                    }
                    assert_eq!(text(p, 4, row), e.state.to_uppercase());
                }
                Event::Auction(e) => {
                    auctions += 1;
                    assert_eq!(events.kinds[row], 1);
                    let ints = [
                        e.id,
                        e.initial_bid,
                        e.reserve,
                        e.expires as usize,
                        e.seller,
                        e.category,
                    ];
                    for (i, want) in ints.into_iter().enumerate() {
                        assert_eq!(a.ints[i][row], want as i64, "number {i} of auction {n}");
                    }
                    for (i, want) in [&e.item_name, &e.description, &e.extra]
                        .into_iter()
                        .enumerate()
                    {
                        assert_eq!(text(a, i, row), want, "text {i} of auction {n}");
                    }
                }
                Event::Bid(e) => {
                    bids += 1;
                    assert_eq!(events.kinds[row], 2);
                    for (i, want) in [e.auction, e.bidder, e.price].into_iter().enumerate() {
                        assert_eq!(b.ints[i][row], want as i64, "number {i} of bid {n}");
                    }
                    for (i, want) in [&e.channel, &e.url, &e.extra].into_iter().enumerate() {
                        assert_eq!(text(b, i, row), want, "text {i} of bid {n}");
                    }
                }
            }
            for kind in [Kind::Person, Kind::Auction, Kind::Bid] {
                assert_eq!(
                    events.nulls(kind).is_valid(row),
                    generator.kind_at(generator.place(n)) == kind
                );
            }
        }
        assert!(people > 0 && auctions > 0 && bids > 0);
    }

    #[test]
    fn events_equal_the_nexmark_crate() {
        equal_the_crate(0, 1, 20_000);
        // An instance of three, far into the stream.
        equal_the_crate(10_000_001, 3, 5_000);
    }

    #[test]
    fn digits_are_zero_padded() {
        let mut text = Text::default();
        text.push_digits(42, 4);
        text.close();
        text.push_digits(9999, 4);
        text.close();
        let array = text.finish(None);
        let strings = array.as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(strings.value(0), "0042");
        assert_eq!(strings.value(1), "9999");
    }
}
