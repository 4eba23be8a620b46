//! Java date-time patterns (`yyyy-MM-dd HH:mm:ss`), as Flink's
//! `DATE_FORMAT`, `FROM_UNIXTIME` and `UNIX_TIMESTAMP` take them
//! (`java.time.format.DateTimeFormatter` letters). A pattern is compiled
//! once into [`Pattern`], then formats (or parses) each row with no
//! allocation but the output.
//!
//! Values are UTC: Sluice's session time zone is UTC, so zone letters
//! print UTC (`Z` is `+0000`, `X` is `Z`, `z` is `UTC`).

use std::fmt::Write as _;

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, Timelike, Utc};

/// A compiled pattern: literal text and fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Pattern {
    items: Vec<Item>,
}

#[derive(Debug, Clone, PartialEq)]
enum Item {
    Literal(String),
    /// A field letter repeated `count` times.
    Field(char, usize),
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

impl Pattern {
    /// Compiles a pattern; an unknown letter is an error naming it.
    pub fn compile(pattern: &str) -> Result<Pattern, String> {
        let mut items = Vec::new();
        let mut chars = pattern.chars().peekable();
        let mut literal = String::new();
        while let Some(c) = chars.next() {
            if c == '\'' {
                // 'text' is literal; '' is a quote.
                if chars.peek() == Some(&'\'') {
                    chars.next();
                    literal.push('\'');
                    continue;
                }
                loop {
                    match chars.next() {
                        None => return Err(format!("unterminated quote in pattern \"{pattern}\"")),
                        Some('\'') if chars.peek() == Some(&'\'') => {
                            chars.next();
                            literal.push('\'');
                        }
                        Some('\'') => break,
                        Some(c) => literal.push(c),
                    }
                }
                continue;
            }
            if c.is_ascii_alphabetic() {
                if !"GuyDMLdQqYwWEecFaBhKkHmsSAnNVvzOXxZ".contains(c) {
                    return Err(format!(
                        "unknown pattern letter '{c}' in \"{pattern}\" (Java DateTimeFormatter letters)"
                    ));
                }
                if !literal.is_empty() {
                    items.push(Item::Literal(std::mem::take(&mut literal)));
                }
                let mut count = 1;
                while chars.peek() == Some(&c) {
                    chars.next();
                    count += 1;
                }
                items.push(Item::Field(c, count));
                continue;
            }
            if c == '[' || c == ']' {
                // Optional sections: always printed when formatting.
                continue;
            }
            literal.push(c);
        }
        if !literal.is_empty() {
            items.push(Item::Literal(literal));
        }
        Ok(Pattern { items })
    }

    /// Appends `t` (UTC), with `nanos` of its second, formatted to `out`.
    pub fn format(&self, t: &NaiveDateTime, out: &mut String) {
        for item in &self.items {
            match item {
                Item::Literal(s) => out.push_str(s),
                Item::Field(c, n) => format_field(*c, *n, t, out),
            }
        }
    }

    /// Parses `text` into a time; fields the pattern lacks default to the
    /// start of 1970-01-01. Returns None when the text does not match.
    pub fn parse(&self, text: &str) -> Option<NaiveDateTime> {
        let (mut year, mut month, mut day) = (1970i32, 1u32, 1u32);
        let (mut hour, mut minute, mut second, mut nanos) = (0u32, 0u32, 0u32, 0u32);
        let mut pm = None;
        let mut rest = text;
        for (i, item) in self.items.iter().enumerate() {
            match item {
                Item::Literal(s) => rest = rest.strip_prefix(s.as_str())?,
                Item::Field(c, n) => {
                    // Adjacent numeric fields (yyyyMMdd) take exactly their
                    // width; otherwise as many digits as there are.
                    let next_is_number =
                        matches!(self.items.get(i + 1), Some(Item::Field(c, _)) if *c != 'a');
                    let width = if next_is_number { *n } else { usize::MAX };
                    if *c == 'a' {
                        let upper = rest.get(..2)?.to_ascii_uppercase();
                        pm = Some(match upper.as_str() {
                            "AM" => false,
                            "PM" => true,
                            _ => return None,
                        });
                        rest = &rest[2..];
                        continue;
                    }
                    if *c == 'M' && *n >= 3 {
                        let (m, len) = MONTHS.iter().enumerate().find_map(|(i, name)| {
                            let name = if *n == 3 { &name[..3] } else { name };
                            rest.get(..name.len())
                                .filter(|r| r.eq_ignore_ascii_case(name))
                                .map(|_| (i as u32 + 1, name.len()))
                        })?;
                        month = m;
                        rest = &rest[len..];
                        continue;
                    }
                    let digits = rest
                        .bytes()
                        .take(width)
                        .take_while(|b| b.is_ascii_digit())
                        .count();
                    if digits == 0 {
                        return None;
                    }
                    let value: u64 = rest[..digits].parse().ok()?;
                    rest = &rest[digits..];
                    match c {
                        'y' | 'u' | 'Y' => {
                            year = if *n == 2 {
                                2000 + value as i32
                            } else {
                                value as i32
                            }
                        }
                        'M' | 'L' => month = value as u32,
                        'd' => day = value as u32,
                        'H' | 'k' => hour = value as u32 % 24,
                        'h' | 'K' => hour = value as u32 % 12,
                        'm' => minute = value as u32,
                        's' => second = value as u32,
                        'S' => nanos = (value * 10u64.pow(9 - digits.min(9) as u32)) as u32,
                        _ => return None,
                    }
                }
            }
        }
        if !rest.is_empty() {
            return None;
        }
        if pm == Some(true) {
            hour += 12;
        }
        NaiveDate::from_ymd_opt(year, month, day)?.and_hms_nano_opt(hour, minute, second, nanos)
    }
}

fn pad(out: &mut String, value: i64, width: usize) {
    let _ = write!(out, "{value:0width$}");
}

fn format_field(c: char, n: usize, t: &NaiveDateTime, out: &mut String) {
    match c {
        'G' => out.push_str(if t.year() > 0 { "AD" } else { "BC" }),
        'y' | 'u' | 'Y' => {
            let year = t.year() as i64;
            if n == 2 {
                pad(out, year.rem_euclid(100), 2)
            } else {
                pad(out, year, n)
            }
        }
        'D' => pad(out, t.ordinal() as i64, n),
        'M' | 'L' => match n {
            1 | 2 => pad(out, t.month() as i64, n),
            3 => out.push_str(&MONTHS[t.month0() as usize][..3]),
            4 => out.push_str(MONTHS[t.month0() as usize]),
            _ => out.push_str(&MONTHS[t.month0() as usize][..1]),
        },
        'd' => pad(out, t.day() as i64, n),
        'Q' | 'q' => match n {
            1 | 2 => pad(out, (t.month0() / 3 + 1) as i64, n),
            3 => {
                let _ = write!(out, "Q{}", t.month0() / 3 + 1);
            }
            _ => {
                let q = ["1st", "2nd", "3rd", "4th"][(t.month0() / 3) as usize];
                let _ = write!(out, "{q} quarter");
            }
        },
        'w' => pad(out, t.iso_week().week() as i64, n),
        'W' => pad(out, t.day().div_ceil(7) as i64, n),
        'F' => pad(out, ((t.day() - 1) / 7 + 1) as i64, n),
        'E' => {
            let day = DAYS[t.weekday().num_days_from_monday() as usize];
            match n {
                1..=3 => out.push_str(&day[..3]),
                4 => out.push_str(day),
                _ => out.push_str(&day[..1]),
            }
        }
        // Localized day of week (Sunday first, as in the US locale).
        'e' | 'c' => pad(out, t.weekday().number_from_sunday() as i64, n),
        'a' => out.push_str(if t.hour() < 12 { "AM" } else { "PM" }),
        'B' => out.push_str(if t.hour() < 12 {
            "in the morning"
        } else {
            "in the afternoon"
        }),
        'H' => pad(out, t.hour() as i64, n),
        'k' => pad(out, if t.hour() == 0 { 24 } else { t.hour() as i64 }, n),
        'K' => pad(out, (t.hour() % 12) as i64, n),
        'h' => {
            let h = t.hour() % 12;
            pad(out, if h == 0 { 12 } else { h as i64 }, n)
        }
        'm' => pad(out, t.minute() as i64, n),
        's' => pad(out, t.second() as i64, n),
        'S' => {
            // The first n digits of the fraction of the second.
            let mut nine = String::with_capacity(9);
            let _ = write!(nine, "{:09}", t.nanosecond() % 1_000_000_000);
            for i in 0..n {
                out.push(nine.as_bytes().get(i).map(|b| *b as char).unwrap_or('0'));
            }
        }
        'A' => pad(
            out,
            t.num_seconds_from_midnight() as i64 * 1000 + (t.nanosecond() / 1_000_000) as i64,
            n,
        ),
        'n' => pad(out, t.nanosecond() as i64, n),
        'N' => pad(
            out,
            t.num_seconds_from_midnight() as i64 * 1_000_000_000 + t.nanosecond() as i64,
            n,
        ),
        'V' | 'v' | 'z' => out.push_str("UTC"),
        'O' => out.push_str("GMT"),
        'X' => out.push('Z'),
        'x' => out.push_str(match n {
            1 => "+00",
            2 | 4 => "+0000",
            _ => "+00:00",
        }),
        'Z' => out.push_str(match n {
            1..=3 => "+0000",
            4 => "GMT",
            _ => "Z",
        }),
        _ => {}
    }
}

/// The UTC date-time of `micros` since the epoch.
pub fn from_micros(micros: i64) -> Option<NaiveDateTime> {
    DateTime::<Utc>::from_timestamp_micros(micros).map(|t| t.naive_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(pattern: &str, t: &str) -> String {
        let t = NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f").unwrap();
        let mut out = String::new();
        Pattern::compile(pattern).unwrap().format(&t, &mut out);
        out
    }

    #[test]
    fn formats_as_java_does() {
        let t = "2026-03-07 14:05:09.123456";
        assert_eq!(fmt("yyyy-MM-dd", t), "2026-03-07");
        assert_eq!(fmt("HH:mm", t), "14:05");
        assert_eq!(fmt("yyyy-MM-dd HH:mm:ss.SSS", t), "2026-03-07 14:05:09.123");
        assert_eq!(fmt("yy/M/d h:m:s a", t), "26/3/7 2:5:9 PM");
        assert_eq!(fmt("EEE, dd MMM yyyy", t), "Sat, 07 Mar 2026");
        assert_eq!(fmt("EEEE MMMM D", t), "Saturday March 66");
        assert_eq!(fmt("'day' d 'of' ''yy", t), "day 7 of '26");
        assert_eq!(fmt("yyyyMMddHHmmss", t), "20260307140509");
        assert_eq!(fmt("SSSSSS", t), "123456");
        assert_eq!(fmt("hh a", "2026-03-07 00:30:00"), "12 AM");
        assert!(Pattern::compile("yyyy-MM-dd T").is_err());
        assert!(Pattern::compile("'open").is_err());
    }

    #[test]
    fn parses_what_it_formats() {
        for (pattern, text) in [
            ("yyyy-MM-dd HH:mm:ss", "2026-03-07 14:05:09"),
            ("yyyyMMddHHmmss", "20260307140509"),
            ("dd MMM yyyy hh:mm a", "07 Mar 2026 02:05 PM"),
            ("yyyy-MM-dd HH:mm:ss.SSS", "2026-03-07 14:05:09.120"),
        ] {
            let p = Pattern::compile(pattern).unwrap();
            let t = p.parse(text).unwrap_or_else(|| panic!("{pattern}: {text}"));
            let mut out = String::new();
            p.format(&t, &mut out);
            assert_eq!(out, text);
        }
        let p = Pattern::compile("yyyy-MM-dd").unwrap();
        assert!(p.parse("2026-13-01").is_none());
        assert!(p.parse("2026-01-01 extra").is_none());
    }
}
