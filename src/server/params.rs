//! Bound parameters: the values a client sends for `$1..$n`, in Postgres's
//! text or binary form, read as the type the client declared (or, where it
//! declared none, the type the statement gives the parameter).
//!
//! Text is read strictly, as Postgres reads it: `1.5` for an `integer` is
//! `22P02 invalid input syntax for type integer: "1.5"`, never a silently
//! truncated 1. Arrays come as Postgres's `{...}` text or its binary array
//! form, intervals as Postgres writes them (`1 day 02:00:00`, `3 mons`)
//! or in binary.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, IntervalMonthDayNano, TimeUnit};
use datafusion::common::ScalarValue as S;
use pgwire::api::Type;
use postgres_types::Kind;

use super::encode::{PG_EPOCH_DAYS, PG_EPOCH_MICROS};
use crate::error::{sqlstate, Error, Result};

/// The Arrow type a parameter of Postgres type `t` is read as.
pub fn arrow_type_of(t: &Type) -> Option<DataType> {
    if let Kind::Array(element) = t.kind() {
        let item = arrow_type_of(element)?;
        return Some(DataType::List(Arc::new(Field::new("item", item, true))));
    }
    Some(match *t {
        Type::BOOL => DataType::Boolean,
        Type::INT2 => DataType::Int16,
        Type::INT4 => DataType::Int32,
        Type::INT8 => DataType::Int64,
        Type::FLOAT4 => DataType::Float32,
        Type::FLOAT8 => DataType::Float64,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::JSON | Type::JSONB => {
            DataType::Utf8
        }
        Type::BYTEA => DataType::Binary,
        Type::TIMESTAMP => DataType::Timestamp(TimeUnit::Microsecond, None),
        Type::TIMESTAMPTZ => DataType::Timestamp(
            TimeUnit::Microsecond,
            Some(crate::frontend::types::UTC.into()),
        ),
        Type::DATE => DataType::Date32,
        Type::TIME => DataType::Time64(TimeUnit::Microsecond),
        Type::INTERVAL => DataType::Interval(arrow::datatypes::IntervalUnit::MonthDayNano),
        Type::NUMERIC => DataType::Decimal128(38, 10),
        _ => return None,
    })
}

/// The Postgres name of a type in messages (`integer`, `bigint`).
fn type_name(t: &Type) -> String {
    match *t {
        Type::INT2 => "smallint".into(),
        Type::INT4 => "integer".into(),
        Type::INT8 => "bigint".into(),
        Type::FLOAT4 => "real".into(),
        Type::FLOAT8 => "double precision".into(),
        Type::BOOL => "boolean".into(),
        Type::TIMESTAMP => "timestamp".into(),
        Type::TIMESTAMPTZ => "timestamp with time zone".into(),
        _ => t.name().to_string(),
    }
}

fn invalid_text(t: &Type, text: &str) -> Error {
    Error::user(
        sqlstate::INVALID_TEXT_REPRESENTATION,
        format!("invalid input syntax for type {}: \"{text}\"", type_name(t)),
    )
}

fn invalid_binary(t: &Type) -> Error {
    Error::user(
        "22P03",
        format!(
            "incorrect binary data format in a parameter of type {}",
            type_name(t)
        ),
    )
}

/// Reads one bound parameter. `pg` is its Postgres type (as declared, or
/// as the server described it), `target` the Arrow type it is used as.
pub fn decode_parameter(
    bytes: Option<&[u8]>,
    binary: bool,
    pg: &Type,
    target: Option<&DataType>,
) -> Result<S> {
    let target = target
        .cloned()
        .or_else(|| arrow_type_of(pg))
        .unwrap_or(DataType::Utf8);
    let Some(b) = bytes else {
        return Ok(S::try_from(&target).unwrap_or(S::Null));
    };
    let value = if binary {
        from_binary(b, pg)?
    } else {
        let text = std::str::from_utf8(b).map_err(|_| {
            Error::user(
                sqlstate::CHARACTER_NOT_IN_REPERTOIRE,
                "invalid byte sequence for encoding \"UTF8\" in a parameter",
            )
        })?;
        from_text(text, pg, &target)?
    };
    if value.data_type() == target || matches!(target, DataType::Decimal128(..)) {
        return Ok(value);
    }
    value.cast_to(&target).map_err(|_| {
        Error::user(
            sqlstate::DATATYPE_MISMATCH,
            format!(
                "a parameter of type {} cannot be used as {}",
                type_name(pg),
                crate::frontend::types::sql_name(&target)
            ),
        )
    })
}

/// Reads a parameter's text as type `pg` (its Arrow type `target` where
/// `pg` says nothing more).
fn from_text(text: &str, pg: &Type, target: &DataType) -> Result<S> {
    let trimmed = text.trim();
    let bad = || invalid_text(pg, text);
    if let Kind::Array(element) = pg.kind() {
        return array_from_text(text, element);
    }
    Ok(match *pg {
        Type::BOOL => S::Boolean(Some(match trimmed.to_ascii_lowercase().as_str() {
            "t" | "true" | "yes" | "y" | "on" | "1" => true,
            "f" | "false" | "no" | "n" | "off" | "0" => false,
            _ => return Err(bad()),
        })),
        Type::INT2 => S::Int16(Some(trimmed.parse().map_err(|_| bad())?)),
        Type::INT4 => S::Int32(Some(trimmed.parse().map_err(|_| bad())?)),
        Type::INT8 => S::Int64(Some(trimmed.parse().map_err(|_| bad())?)),
        Type::FLOAT4 => S::Float32(Some(parse_float(trimmed).ok_or_else(bad)? as f32)),
        Type::FLOAT8 => S::Float64(Some(parse_float(trimmed).ok_or_else(bad)?)),
        Type::NUMERIC => {
            let (v, scale) = parse_numeric(trimmed).ok_or_else(bad)?;
            S::Decimal128(Some(v), 38, scale)
        }
        Type::INTERVAL => S::IntervalMonthDayNano(Some(parse_interval(trimmed).ok_or_else(bad)?)),
        Type::BYTEA => S::Binary(Some(parse_bytea(text).ok_or_else(bad)?)),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::JSON | Type::JSONB => {
            S::Utf8(Some(text.to_string()))
        }
        Type::DATE => S::Date32(Some(
            parse_timestamp(trimmed)
                .map(|(t, _)| t.date())
                .and_then(|d| {
                    (d - chrono::NaiveDate::from_ymd_opt(1970, 1, 1)?)
                        .num_days()
                        .try_into()
                        .ok()
                })
                .ok_or_else(bad)?,
        )),
        Type::TIMESTAMP => {
            let (t, _) = parse_timestamp(trimmed).ok_or_else(bad)?;
            S::TimestampMicrosecond(Some(t.and_utc().timestamp_micros()), None)
        }
        Type::TIMESTAMPTZ => {
            let (t, offset) = parse_timestamp(trimmed).ok_or_else(bad)?;
            let utc = t - chrono::Duration::seconds(offset.unwrap_or(0) as i64);
            S::TimestampMicrosecond(
                Some(utc.and_utc().timestamp_micros()),
                Some(Arc::from(crate::frontend::types::UTC)),
            )
        }
        _ if *target == DataType::Utf8 => S::Utf8(Some(text.to_string())),
        // Dates, times, timestamps and whatever else the target is: Arrow's
        // strict parse of the text.
        _ => S::Utf8(Some(text.to_string()))
            .cast_to(target)
            .map_err(|_| bad())?,
    })
}

/// A date or timestamp as Postgres reads it (`2024-02-29`, `2024-01-02
/// 03:04:05.678`, a `T` between, a trailing zone: `+00`, `-05:30`, `Z`,
/// `UTC`), and the zone's offset in seconds east, if one was given.
fn parse_timestamp(text: &str) -> Option<(chrono::NaiveDateTime, Option<i32>)> {
    let text = text.trim();
    // The zone: a trailing `Z`/`UTC`/`GMT`, or `+hh[:mm]` / `-hh[:mm]` after
    // the time (a date's own dashes come before it).
    let (body, offset) = if let Some(b) = text
        .strip_suffix('Z')
        .or_else(|| text.strip_suffix("UTC"))
        .or_else(|| text.strip_suffix("GMT"))
    {
        (b.trim_end(), Some(0))
    } else {
        match text.rfind(['+', '-']).filter(|i| *i > 9) {
            Some(i) => {
                let zone = &text[i + 1..];
                let sign = if text.as_bytes()[i] == b'-' { -1 } else { 1 };
                let (h, m) = match zone.split_once(':') {
                    Some((h, m)) => (h.parse::<i32>().ok()?, m.parse::<i32>().ok()?),
                    None if zone.len() == 4 => (zone[..2].parse().ok()?, zone[2..].parse().ok()?),
                    None => (zone.parse::<i32>().ok()?, 0),
                };
                (text[..i].trim_end(), Some(sign * (h * 3600 + m * 60)))
            }
            None => (text, None),
        }
    };
    let body = body.replacen('T', " ", 1);
    let time = chrono::NaiveDateTime::parse_from_str(&body, "%Y-%m-%d %H:%M:%S%.f")
        .or_else(|_| chrono::NaiveDateTime::parse_from_str(&body, "%Y-%m-%d %H:%M"))
        .ok()
        .or_else(|| {
            chrono::NaiveDate::parse_from_str(&body, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        })?;
    Some((time, offset))
}

/// Postgres's float input: numbers, `NaN`, `Infinity`, `-Infinity`.
fn parse_float(text: &str) -> Option<f64> {
    match text.to_ascii_lowercase().as_str() {
        "nan" => Some(f64::NAN),
        "infinity" | "+infinity" | "inf" => Some(f64::INFINITY),
        "-infinity" | "-inf" => Some(f64::NEG_INFINITY),
        t => t
            .parse()
            .ok()
            .filter(|_| !t.contains(|c: char| c.is_alphabetic() && c != 'e')),
    }
}

/// A decimal number's unscaled value and scale: `-1.50` is (-150, 2);
/// `1e3` is (1000, 0).
fn parse_numeric(text: &str) -> Option<(i128, i8)> {
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(i) => (&text[..i], text[i + 1..].parse::<i32>().ok()?),
        None => (text, 0),
    };
    let (negative, digits) = match mantissa.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, mantissa.strip_prefix('+').unwrap_or(mantissa)),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() && fraction.is_empty()
        || !whole
            .bytes()
            .chain(fraction.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let mut value: i128 = 0;
    for b in whole.bytes().chain(fraction.bytes()) {
        value = value.checked_mul(10)?.checked_add((b - b'0') as i128)?;
    }
    let mut scale = fraction.len() as i32 - exponent;
    while scale < 0 {
        value = value.checked_mul(10)?;
        scale += 1;
    }
    // At most 38 digits in all, as Decimal128 holds.
    while scale > 38 || value.unsigned_abs() >= 10u128.pow(38) {
        if scale == 0 {
            return None;
        }
        value /= 10;
        scale -= 1;
    }
    Some((if negative { -value } else { value }, scale as i8))
}

/// Postgres's interval input as its output and clients write it: unit
/// words (`1 year 2 mons 3 days`, `-5 hours`), a `[-]hh:mm:ss[.ffffff]`
/// time, `@` and `ago` as in its verbose style, and ISO 8601 (`P1DT2H`).
fn parse_interval(text: &str) -> Option<IntervalMonthDayNano> {
    if let Some(iso) = text.strip_prefix('P') {
        return parse_iso_interval(iso);
    }
    let mut months: i64 = 0;
    let mut days: i64 = 0;
    let mut micros: i64 = 0;
    let text = text.trim().trim_start_matches('@').trim();
    let (text, ago) = match text.strip_suffix("ago") {
        Some(t) => (t.trim(), true),
        None => (text, false),
    };
    let words: Vec<&str> = text
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|w| !w.is_empty())
        .collect();
    if words.is_empty() {
        return None;
    }
    let mut i = 0;
    while i < words.len() {
        let word = words[i];
        if word.contains(':') {
            micros = micros.checked_add(parse_clock(word)?)?;
            i += 1;
            continue;
        }
        let number: f64 = word.parse().ok()?;
        let unit = words.get(i + 1).map(|u| u.to_ascii_lowercase());
        let unit = match unit.as_deref() {
            None => "second",
            Some("ms" | "msec" | "msecs" | "millisecond" | "milliseconds") => "millisecond",
            Some("us" | "usec" | "usecs" | "microsecond" | "microseconds") => "microsecond",
            Some(u) => u.trim_end_matches('s'),
        };
        let whole = number.trunc() as i64;
        let frac = number.fract();
        match unit {
            "year" | "yr" | "y" => {
                months = months.checked_add(whole.checked_mul(12)? + (frac * 12.0) as i64)?
            }
            "mon" | "month" => {
                months = months.checked_add(whole)?;
                days = days.checked_add((frac * 30.0) as i64)?;
            }
            "week" | "w" => days = days.checked_add(whole.checked_mul(7)?)?,
            "day" | "d" => {
                days = days.checked_add(whole)?;
                micros = micros.checked_add((frac * 86_400e6) as i64)?;
            }
            "hour" | "hr" | "h" => micros = micros.checked_add((number * 3_600e6) as i64)?,
            "minute" | "min" | "m" => micros = micros.checked_add((number * 60e6) as i64)?,
            "second" | "sec" => micros = micros.checked_add((number * 1e6).round() as i64)?,
            "millisecond" => micros = micros.checked_add((number * 1e3) as i64)?,
            "microsecond" => micros = micros.checked_add(number as i64)?,
            _ => return None,
        }
        i += if words.get(i + 1).is_some() { 2 } else { 1 };
    }
    let sign = if ago { -1 } else { 1 };
    Some(IntervalMonthDayNano::new(
        i32::try_from(months * sign).ok()?,
        i32::try_from(days * sign).ok()?,
        micros.checked_mul(1000)?.checked_mul(sign)?,
    ))
}

/// `[-]hh:mm[:ss[.ffffff]]` in microseconds.
fn parse_clock(text: &str) -> Option<i64> {
    let (negative, text) = match text.strip_prefix('-') {
        Some(t) => (true, t),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let parts: Vec<&str> = text.split(':').collect();
    if parts.len() < 2 || parts.len() > 3 {
        return None;
    }
    let hours: i64 = parts[0].parse().ok()?;
    let minutes: i64 = parts[1].parse().ok()?;
    let seconds: f64 = parts.get(2).map(|s| s.parse().ok()).unwrap_or(Some(0.0))?;
    let micros = hours
        .checked_mul(3_600_000_000)?
        .checked_add(minutes * 60_000_000)?
        .checked_add((seconds * 1e6).round() as i64)?;
    Some(if negative { -micros } else { micros })
}

/// ISO 8601 durations after the `P`: `1Y2M3DT4H5M6.5S`, `2W`.
fn parse_iso_interval(text: &str) -> Option<IntervalMonthDayNano> {
    let (date, time) = text.split_once('T').unwrap_or((text, ""));
    let mut months = 0i64;
    let mut days = 0i64;
    let mut micros = 0i64;
    let mut number = String::new();
    for c in date.chars() {
        if c.is_ascii_digit() || c == '-' || c == '.' {
            number.push(c);
            continue;
        }
        let n: i64 = number.parse().ok()?;
        number.clear();
        match c {
            'Y' => months += n * 12,
            'M' => months += n,
            'W' => days += n * 7,
            'D' => days += n,
            _ => return None,
        }
    }
    for c in time.chars() {
        if c.is_ascii_digit() || c == '-' || c == '.' {
            number.push(c);
            continue;
        }
        let n: f64 = number.parse().ok()?;
        number.clear();
        micros += match c {
            'H' => (n * 3_600e6) as i64,
            'M' => (n * 60e6) as i64,
            'S' => (n * 1e6).round() as i64,
            _ => return None,
        };
    }
    if !number.is_empty() {
        return None;
    }
    Some(IntervalMonthDayNano::new(
        i32::try_from(months).ok()?,
        i32::try_from(days).ok()?,
        micros.checked_mul(1000)?,
    ))
}

/// `\x0123abcd` (Postgres's hex form), else the bytes as they are.
fn parse_bytea(text: &str) -> Option<Vec<u8>> {
    let Some(hex) = text.strip_prefix("\\x") else {
        return Some(text.as_bytes().to_vec());
    };
    if hex.len() % 2 != 0 {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
        .collect()
}

/// A one-dimensional array in Postgres's text form: `{1,2,NULL}`,
/// `{"a b","c\"d"}`.
fn array_from_text(text: &str, element: &Type) -> Result<S> {
    let bad = || invalid_text(&Type::from_oid(element.oid()).unwrap_or(Type::TEXT), text);
    let item = arrow_type_of(element).ok_or_else(|| unsupported_array(element))?;
    let inner = text
        .trim()
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .ok_or_else(|| {
            Error::user(
                sqlstate::INVALID_TEXT_REPRESENTATION,
                format!("malformed array literal: \"{text}\""),
            )
        })?;
    let mut values = Vec::new();
    let mut chars = inner.chars().peekable();
    while chars.peek().is_some() {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let (raw, quoted) = if chars.peek() == Some(&'"') {
            chars.next();
            let mut s = String::new();
            loop {
                match chars.next() {
                    Some('\\') => s.push(chars.next().ok_or_else(bad)?),
                    Some('"') => break,
                    Some(c) => s.push(c),
                    None => return Err(bad()),
                }
            }
            (s, true)
        } else {
            let mut s = String::new();
            while let Some(c) = chars.peek() {
                if *c == ',' {
                    break;
                }
                if *c == '{' {
                    return Err(Error::not_supported(
                        "multidimensional array parameters are not supported",
                    ));
                }
                s.push(*c);
                chars.next();
            }
            (s.trim().to_string(), false)
        };
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.next() {
            None | Some(',') => {}
            Some(_) => return Err(bad()),
        }
        if !quoted && raw.eq_ignore_ascii_case("null") {
            values.push(S::try_from(&item).unwrap_or(S::Null));
        } else {
            values.push(from_text(&raw, element, &item)?);
        }
    }
    list(values, &item)
}

fn unsupported_array(element: &Type) -> Error {
    Error::not_supported(format!(
        "array parameters of type {}[] are not supported",
        element.name()
    ))
}

fn list(values: Vec<S>, item: &DataType) -> Result<S> {
    let array = if values.is_empty() {
        arrow::array::new_empty_array(item)
    } else {
        S::iter_to_array(values)?
    };
    Ok(S::List(Arc::new(arrow::array::ListArray::new(
        Arc::new(Field::new("item", item.clone(), true)),
        arrow::buffer::OffsetBuffer::from_lengths([array.len()]),
        array,
        None,
    ))))
}

fn from_binary(b: &[u8], pg: &Type) -> Result<S> {
    let bad = || invalid_binary(pg);
    let fixed = |n: usize| -> Result<&[u8]> {
        if b.len() == n {
            Ok(b)
        } else {
            Err(bad())
        }
    };
    let be8 = || -> Result<[u8; 8]> { Ok(fixed(8)?.try_into().expect("8 bytes")) };
    let be4 = || -> Result<[u8; 4]> { Ok(fixed(4)?.try_into().expect("4 bytes")) };
    if let Kind::Array(element) = pg.kind() {
        return array_from_binary(b, element);
    }
    Ok(match *pg {
        Type::BOOL => S::Boolean(Some(fixed(1)?[0] != 0)),
        Type::INT2 => S::Int16(Some(i16::from_be_bytes(
            fixed(2)?.try_into().expect("2 bytes"),
        ))),
        Type::INT4 => S::Int32(Some(i32::from_be_bytes(be4()?))),
        Type::INT8 => S::Int64(Some(i64::from_be_bytes(be8()?))),
        Type::FLOAT4 => S::Float32(Some(f32::from_be_bytes(be4()?))),
        Type::FLOAT8 => S::Float64(Some(f64::from_be_bytes(be8()?))),
        Type::TIMESTAMP => S::TimestampMicrosecond(
            Some(i64::from_be_bytes(be8()?).saturating_add(PG_EPOCH_MICROS)),
            None,
        ),
        Type::TIMESTAMPTZ => S::TimestampMicrosecond(
            Some(i64::from_be_bytes(be8()?).saturating_add(PG_EPOCH_MICROS)),
            Some(Arc::from(crate::frontend::types::UTC)),
        ),
        Type::DATE => S::Date32(Some(
            i32::from_be_bytes(be4()?).saturating_add(PG_EPOCH_DAYS),
        )),
        Type::TIME => S::Time64Microsecond(Some(i64::from_be_bytes(be8()?))),
        Type::INTERVAL => {
            let b = fixed(16)?;
            let micros = i64::from_be_bytes(b[0..8].try_into().expect("8 bytes"));
            let days = i32::from_be_bytes(b[8..12].try_into().expect("4 bytes"));
            let months = i32::from_be_bytes(b[12..16].try_into().expect("4 bytes"));
            S::IntervalMonthDayNano(Some(IntervalMonthDayNano::new(
                months,
                days,
                micros.checked_mul(1000).ok_or_else(bad)?,
            )))
        }
        Type::NUMERIC => {
            let (v, s) = numeric_from_binary(b).ok_or_else(bad)?;
            S::Decimal128(Some(v), 38, s)
        }
        Type::BYTEA => S::Binary(Some(b.to_vec())),
        _ => S::Utf8(Some(std::str::from_utf8(b).map_err(|_| bad())?.to_string())),
    })
}

/// Postgres's binary array: dimensions, a null flag, the element type,
/// each dimension's length and lower bound, then each element's length
/// (-1 for null) and bytes.
fn array_from_binary(b: &[u8], element: &Type) -> Result<S> {
    let bad = || invalid_binary(element);
    let item = arrow_type_of(element).ok_or_else(|| unsupported_array(element))?;
    let int = |at: usize| -> Result<i32> {
        b.get(at..at + 4)
            .map(|s| i32::from_be_bytes(s.try_into().expect("4 bytes")))
            .ok_or_else(bad)
    };
    let dims = int(0)?;
    let mut at = 12;
    let count = match dims {
        0 => 0,
        1 => {
            let n = int(at)?;
            at += 8;
            usize::try_from(n).map_err(|_| bad())?
        }
        _ => {
            return Err(Error::not_supported(
                "multidimensional array parameters are not supported",
            ))
        }
    };
    let mut values = Vec::with_capacity(count);
    for _ in 0..count {
        let len = int(at)?;
        at += 4;
        if len < 0 {
            values.push(S::try_from(&item).unwrap_or(S::Null));
            continue;
        }
        let end = at + len as usize;
        let bytes = b.get(at..end).ok_or_else(bad)?;
        let value = from_binary(bytes, element)?;
        values.push(if value.data_type() == item {
            value
        } else {
            value.cast_to(&item).map_err(|_| bad())?
        });
        at = end;
    }
    list(values, &item)
}

/// Decodes a binary `numeric` into (unscaled, scale).
fn numeric_from_binary(b: &[u8]) -> Option<(i128, i8)> {
    if b.len() < 8 {
        return None;
    }
    let n = i16::from_be_bytes([b[0], b[1]]) as usize;
    let weight = i16::from_be_bytes([b[2], b[3]]) as i32;
    let sign = u16::from_be_bytes([b[4], b[5]]);
    let dscale = u16::from_be_bytes([b[6], b[7]]) as i32;
    if sign == 0xC000 || b.len() < 8 + 2 * n || dscale > 38 {
        return None;
    }
    let mut value: i128 = 0;
    // value = sum d_i * 10000^(weight - i), scaled by 10^dscale.
    let mut exp10 = 0i32;
    for i in 0..n {
        let d = i16::from_be_bytes([b[8 + 2 * i], b[9 + 2 * i]]) as i128;
        value = value.checked_mul(10_000)?.checked_add(d)?;
        exp10 = (weight - i as i32) * 4;
    }
    // Now value * 10^exp10 is the number; rescale to dscale digits.
    let shift = exp10 + dscale;
    if shift >= 0 {
        value = value.checked_mul(10i128.checked_pow(shift as u32)?)?;
    } else {
        value /= 10i128.checked_pow((-shift) as u32)?;
    }
    if sign == 0x4000 {
        value = -value;
    }
    Some((value, dscale as i8))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    fn text(value: &str, pg: Type) -> Result<S> {
        decode_parameter(Some(value.as_bytes()), false, &pg, None)
    }

    #[test]
    fn text_is_read_strictly() {
        let e = text("1.5", Type::INT8).unwrap_err();
        assert_eq!(e.sqlstate(), "22P02");
        assert_eq!(
            e.to_string(),
            "invalid input syntax for type bigint: \"1.5\""
        );
        assert_eq!(text("1.5", Type::FLOAT8).unwrap(), S::Float64(Some(1.5)));
        assert_eq!(text(" 42 ", Type::INT4).unwrap(), S::Int32(Some(42)));
        assert!(text("12abc", Type::FLOAT8).is_err());
        assert_eq!(text("yes", Type::BOOL).unwrap(), S::Boolean(Some(true)));
    }

    #[test]
    fn numerics_keep_their_scale() {
        assert_eq!(
            text("1.50", Type::NUMERIC).unwrap(),
            S::Decimal128(Some(150), 38, 2)
        );
        assert_eq!(parse_numeric("-0.005"), Some((-5, 3)));
        assert_eq!(parse_numeric("1e3"), Some((1000, 0)));
        assert_eq!(parse_numeric("1.5e-2"), Some((15, 3)));
        assert_eq!(parse_numeric("abc"), None);
        assert_eq!(parse_numeric("."), None);
    }

    #[test]
    fn binary_numeric_round_trips() {
        for (v, s) in [
            (123456789i128, 2i8),
            (-5, 3),
            (0, 2),
            (10_000_000, 0),
            (1, 0),
        ] {
            let mut buf = BytesMut::new();
            super::super::encode::numeric_binary(v, s, &mut buf);
            assert_eq!(numeric_from_binary(&buf), Some((v, s)), "{v} scale {s}");
        }
    }

    #[test]
    fn intervals_as_postgres_writes_them() {
        let i = |t: &str| parse_interval(t).unwrap();
        assert_eq!(
            i("1 day 02:00:00"),
            IntervalMonthDayNano::new(0, 1, 7_200_000_000_000)
        );
        assert_eq!(i("3 mons"), IntervalMonthDayNano::new(3, 0, 0));
        assert_eq!(i("1 year 2 mons"), IntervalMonthDayNano::new(14, 0, 0));
        assert_eq!(
            i("-00:00:01.5"),
            IntervalMonthDayNano::new(0, 0, -1_500_000_000)
        );
        assert_eq!(i("@ 2 days ago"), IntervalMonthDayNano::new(0, -2, 0));
        assert_eq!(
            i("P1DT2H"),
            IntervalMonthDayNano::new(0, 1, 7_200_000_000_000)
        );
        assert_eq!(
            i("90 seconds"),
            IntervalMonthDayNano::new(0, 0, 90_000_000_000)
        );
        assert!(parse_interval("soon").is_none());
    }

    #[test]
    fn arrays_in_text_and_binary() {
        let v = text("{1,NULL,3}", Type::INT4_ARRAY).unwrap();
        assert_eq!(v.to_string(), "[1, , 3]");
        let v = text("{\"a b\",\"c\\\"d\",e}", Type::TEXT_ARRAY).unwrap();
        assert_eq!(v.to_string(), "[a b, c\"d, e]");
        let v = text("{}", Type::INT8_ARRAY).unwrap();
        assert_eq!(v.to_string(), "[]");
        // ndim 1, no nulls, int8, 2 elements from 1: 7 and -1.
        let mut b = Vec::new();
        for x in [1i32, 0, 20, 2, 1] {
            b.extend_from_slice(&x.to_be_bytes());
        }
        for x in [7i64, -1] {
            b.extend_from_slice(&8i32.to_be_bytes());
            b.extend_from_slice(&x.to_be_bytes());
        }
        let v = decode_parameter(Some(&b), true, &Type::INT8_ARRAY, None).unwrap();
        assert_eq!(v.to_string(), "[7, -1]");
    }

    #[test]
    fn dates_and_timestamps_as_jdbc_sends_them() {
        assert_eq!(
            text("2024-02-29 +00", Type::DATE).unwrap(),
            S::Date32(Some(19782))
        );
        let micros = |t: &str, pg| match text(t, pg).unwrap() {
            S::TimestampMicrosecond(Some(m), _) => m,
            other => panic!("{other:?}"),
        };
        let base = micros("2024-01-02 03:04:05.678", Type::TIMESTAMP);
        assert_eq!(base, 1_704_164_645_678_000);
        assert_eq!(micros("2024-01-02 03:04:05.678+00", Type::TIMESTAMP), base);
        assert_eq!(micros("2024-01-02T03:04:05.678Z", Type::TIMESTAMPTZ), base);
        assert_eq!(
            micros("2024-01-02 05:04:05.678+02", Type::TIMESTAMPTZ),
            base
        );
        assert_eq!(
            micros("2024-01-01 21:34:05.678-05:30", Type::TIMESTAMPTZ),
            base
        );
        assert!(text("soon", Type::TIMESTAMP).is_err());
    }

    #[test]
    fn nulls_take_the_target_type() {
        assert_eq!(
            decode_parameter(None, false, &Type::INT4, None).unwrap(),
            S::Int32(None)
        );
    }
}
