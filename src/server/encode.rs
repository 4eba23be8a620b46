//! Arrow to the Postgres wire: column types and the text and binary
//! encodings of values.
//!
//! Rows are encoded straight from the Arrow arrays into the `DataRow`
//! buffers, one column encoder per column, with no intermediate values.

use std::fmt::Write as _;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::*;
use bytes::{BufMut, BytesMut};
use pgwire::api::portal::Format;
use pgwire::api::results::{FieldFormat, FieldInfo};
use pgwire::api::Type;
use pgwire::messages::data::DataRow;

use crate::error::{Error, Result};

/// Microseconds from the Unix epoch to the Postgres epoch (2000-01-01).
pub(crate) const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
/// Days from the Unix epoch to the Postgres epoch.
pub(crate) const PG_EPOCH_DAYS: i32 = 10_957;

/// The Postgres type a column is sent as.
pub fn pg_type(t: &DataType) -> Type {
    match t {
        DataType::Boolean => Type::BOOL,
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => Type::INT2,
        DataType::Int32 | DataType::UInt16 => Type::INT4,
        DataType::Int64 | DataType::UInt32 => Type::INT8,
        DataType::UInt64 | DataType::Decimal128(..) | DataType::Decimal256(..) => Type::NUMERIC,
        DataType::Float16 | DataType::Float32 => Type::FLOAT4,
        DataType::Float64 => Type::FLOAT8,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Type::TEXT,
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => Type::BYTEA,
        DataType::Date32 | DataType::Date64 => Type::DATE,
        DataType::Timestamp(_, None) => Type::TIMESTAMP,
        DataType::Timestamp(_, Some(_)) => Type::TIMESTAMPTZ,
        DataType::Time32(_) | DataType::Time64(_) => Type::TIME,
        DataType::Interval(_) | DataType::Duration(_) => Type::INTERVAL,
        DataType::List(item) | DataType::LargeList(item) | DataType::FixedSizeList(item, _) => {
            array_of(pg_type(item.data_type()))
        }
        _ => Type::TEXT,
    }
}

/// The array type of an element type (text arrays for the others).
fn array_of(element: Type) -> Type {
    match element {
        Type::BOOL => Type::BOOL_ARRAY,
        Type::INT2 => Type::INT2_ARRAY,
        Type::INT4 => Type::INT4_ARRAY,
        Type::INT8 => Type::INT8_ARRAY,
        Type::FLOAT4 => Type::FLOAT4_ARRAY,
        Type::FLOAT8 => Type::FLOAT8_ARRAY,
        Type::NUMERIC => Type::NUMERIC_ARRAY,
        Type::BYTEA => Type::BYTEA_ARRAY,
        Type::DATE => Type::DATE_ARRAY,
        Type::TIME => Type::TIME_ARRAY,
        Type::TIMESTAMP => Type::TIMESTAMP_ARRAY,
        Type::TIMESTAMPTZ => Type::TIMESTAMPTZ_ARRAY,
        Type::INTERVAL => Type::INTERVAL_ARRAY,
        _ => Type::TEXT_ARRAY,
    }
}

/// The row description of a result.
pub fn field_infos(schema: &Schema, format: &Format) -> Vec<FieldInfo> {
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            FieldInfo::new(
                f.name().clone(),
                None,
                None,
                pg_type(f.data_type()),
                format.format_for(i),
            )
        })
        .collect()
}

/// Encodes every row of `batches`.
pub fn encode_rows(batches: &[RecordBatch], fields: &[FieldInfo]) -> Result<Vec<DataRow>> {
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    let mut out = Vec::with_capacity(rows);
    let mut buf = BytesMut::with_capacity(256);
    let mut scratch = String::new();
    for batch in batches {
        let encoders = batch
            .columns()
            .iter()
            .zip(fields)
            .map(|(array, field)| ColumnEncoder::new(array.clone(), field.format()))
            .collect::<Result<Vec<_>>>()?;
        for row in 0..batch.num_rows() {
            for enc in &encoders {
                enc.encode(row, &mut buf, &mut scratch)?;
            }
            out.push(DataRow::new(buf.split(), encoders.len() as i16));
        }
    }
    Ok(out)
}

struct ColumnEncoder {
    array: ArrayRef,
    /// Which values are NULL, as the array means it (a `NullArray`, the
    /// type of `SELECT NULL`, has no null buffer but is all nulls).
    nulls: Option<arrow::buffer::NullBuffer>,
    binary: bool,
}

impl ColumnEncoder {
    fn new(array: ArrayRef, format: FieldFormat) -> Result<Self> {
        // Types sent as TEXT are always in text form.
        let binary = format == FieldFormat::Binary && pg_type(array.data_type()) != Type::TEXT;
        Ok(ColumnEncoder {
            nulls: array.logical_nulls(),
            array,
            binary,
        })
    }

    /// Writes the length-prefixed value of `row`.
    fn encode(&self, row: usize, buf: &mut BytesMut, scratch: &mut String) -> Result<()> {
        if self.nulls.as_ref().is_some_and(|n| n.is_null(row)) {
            buf.put_i32(-1);
            return Ok(());
        }
        let at = buf.len();
        buf.put_i32(0);
        if self.binary {
            write_binary(&self.array, row, buf)?;
        } else {
            scratch.clear();
            write_text(&self.array, row, scratch)?;
            buf.put_slice(scratch.as_bytes());
        }
        let len = (buf.len() - at - 4) as i32;
        buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
        Ok(())
    }
}

fn unsupported(t: &DataType) -> Error {
    Error::not_supported(format!("values of type {t} cannot be sent to the client"))
}

/// The value of `row` as microseconds since the Unix epoch.
fn timestamp_micros(array: &ArrayRef, unit: &TimeUnit, row: usize) -> i64 {
    match unit {
        TimeUnit::Second => array
            .as_primitive::<TimestampSecondType>()
            .value(row)
            .saturating_mul(1_000_000),
        TimeUnit::Millisecond => array
            .as_primitive::<TimestampMillisecondType>()
            .value(row)
            .saturating_mul(1_000),
        TimeUnit::Microsecond => array.as_primitive::<TimestampMicrosecondType>().value(row),
        TimeUnit::Nanosecond => array
            .as_primitive::<TimestampNanosecondType>()
            .value(row)
            .div_euclid(1_000),
    }
}

/// A time of day in microseconds since midnight.
fn time_micros(array: &ArrayRef, row: usize) -> i64 {
    match array.data_type() {
        DataType::Time32(TimeUnit::Second) => {
            array.as_primitive::<Time32SecondType>().value(row) as i64 * 1_000_000
        }
        DataType::Time32(_) => {
            array.as_primitive::<Time32MillisecondType>().value(row) as i64 * 1000
        }
        DataType::Time64(TimeUnit::Microsecond) => {
            array.as_primitive::<Time64MicrosecondType>().value(row)
        }
        _ => array.as_primitive::<Time64NanosecondType>().value(row) / 1000,
    }
}

fn date_days(array: &ArrayRef, row: usize) -> i32 {
    match array.data_type() {
        DataType::Date32 => array.as_primitive::<Date32Type>().value(row),
        _ => array
            .as_primitive::<Date64Type>()
            .value(row)
            .div_euclid(86_400_000) as i32,
    }
}

/// (months, days, microseconds) of an interval or duration value.
fn interval_parts(array: &ArrayRef, row: usize) -> (i32, i32, i64) {
    match array.data_type() {
        DataType::Interval(IntervalUnit::YearMonth) => (
            array.as_primitive::<IntervalYearMonthType>().value(row),
            0,
            0,
        ),
        DataType::Interval(IntervalUnit::DayTime) => {
            let v = array.as_primitive::<IntervalDayTimeType>().value(row);
            (0, v.days, v.milliseconds as i64 * 1000)
        }
        DataType::Interval(IntervalUnit::MonthDayNano) => {
            let v = array.as_primitive::<IntervalMonthDayNanoType>().value(row);
            (v.months, v.days, v.nanoseconds / 1000)
        }
        DataType::Duration(unit) => {
            let micros = match unit {
                TimeUnit::Second => array
                    .as_primitive::<DurationSecondType>()
                    .value(row)
                    .saturating_mul(1_000_000),
                TimeUnit::Millisecond => array
                    .as_primitive::<DurationMillisecondType>()
                    .value(row)
                    .saturating_mul(1000),
                TimeUnit::Microsecond => array.as_primitive::<DurationMicrosecondType>().value(row),
                TimeUnit::Nanosecond => {
                    array.as_primitive::<DurationNanosecondType>().value(row) / 1000
                }
            };
            (0, 0, micros)
        }
        _ => (0, 0, 0),
    }
}

pub(crate) fn write_binary(array: &ArrayRef, row: usize, buf: &mut BytesMut) -> Result<()> {
    match array.data_type() {
        DataType::Boolean => buf.put_u8(array.as_boolean().value(row) as u8),
        DataType::Int8 => buf.put_i16(array.as_primitive::<Int8Type>().value(row) as i16),
        DataType::Int16 => buf.put_i16(array.as_primitive::<Int16Type>().value(row)),
        DataType::UInt8 => buf.put_i16(array.as_primitive::<UInt8Type>().value(row) as i16),
        DataType::Int32 => buf.put_i32(array.as_primitive::<Int32Type>().value(row)),
        DataType::UInt16 => buf.put_i32(array.as_primitive::<UInt16Type>().value(row) as i32),
        DataType::Int64 => buf.put_i64(array.as_primitive::<Int64Type>().value(row)),
        DataType::UInt32 => buf.put_i64(array.as_primitive::<UInt32Type>().value(row) as i64),
        DataType::UInt64 => numeric_binary(
            array.as_primitive::<UInt64Type>().value(row) as i128,
            0,
            buf,
        ),
        DataType::Float16 => buf.put_f32(array.as_primitive::<Float16Type>().value(row).to_f32()),
        DataType::Float32 => buf.put_f32(array.as_primitive::<Float32Type>().value(row)),
        DataType::Float64 => buf.put_f64(array.as_primitive::<Float64Type>().value(row)),
        DataType::Decimal128(_, s) => {
            numeric_binary(array.as_primitive::<Decimal128Type>().value(row), *s, buf)
        }
        DataType::Binary => buf.put_slice(array.as_binary::<i32>().value(row)),
        DataType::LargeBinary => buf.put_slice(array.as_binary::<i64>().value(row)),
        DataType::BinaryView => buf.put_slice(array.as_binary_view().value(row)),
        DataType::FixedSizeBinary(_) => buf.put_slice(array.as_fixed_size_binary().value(row)),
        DataType::Date32 | DataType::Date64 => buf.put_i32(date_days(array, row) - PG_EPOCH_DAYS),
        DataType::Timestamp(unit, _) => {
            // Postgres's infinities are the extreme values.
            let micros = timestamp_micros(array, unit, row);
            buf.put_i64(match micros {
                i64::MAX | i64::MIN => micros,
                m => m - PG_EPOCH_MICROS,
            })
        }
        DataType::Interval(_) | DataType::Duration(_) => {
            let (months, days, micros) = interval_parts(array, row);
            buf.put_i64(micros);
            buf.put_i32(days);
            buf.put_i32(months);
        }
        DataType::Time32(_) | DataType::Time64(_) => buf.put_i64(time_micros(array, row)),
        DataType::Utf8 => buf.put_slice(array.as_string::<i32>().value(row).as_bytes()),
        DataType::LargeUtf8 => buf.put_slice(array.as_string::<i64>().value(row).as_bytes()),
        DataType::Utf8View => buf.put_slice(array.as_string_view().value(row).as_bytes()),
        DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..) => {
            let values = match array.data_type() {
                DataType::List(_) => array.as_list::<i32>().value(row),
                DataType::LargeList(_) => array.as_list::<i64>().value(row),
                _ => array.as_fixed_size_list().value(row),
            };
            // Postgres's binary array: dimensions, whether there are nulls,
            // the element type, each dimension's length and lower bound,
            // then each element's length (-1 for null) and bytes.
            let nulls = values.logical_nulls();
            let dims = if values.is_empty() { 0 } else { 1 };
            buf.put_i32(dims);
            buf.put_i32(nulls.as_ref().is_some_and(|n| n.null_count() > 0) as i32);
            buf.put_u32(pg_type(values.data_type()).oid());
            if dims == 1 {
                buf.put_i32(values.len() as i32);
                buf.put_i32(1);
            }
            for i in 0..values.len() {
                if nulls.as_ref().is_some_and(|n| n.is_null(i)) {
                    buf.put_i32(-1);
                    continue;
                }
                let at = buf.len();
                buf.put_i32(0);
                write_binary(&values, i, buf)?;
                let len = (buf.len() - at - 4) as i32;
                buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
            }
        }
        other => return Err(unsupported(other)),
    }
    Ok(())
}

/// Postgres's binary `numeric`: base-10000 digits with a weight.
pub(crate) fn numeric_binary(unscaled: i128, scale: i8, buf: &mut BytesMut) {
    let negative = unscaled < 0;
    let mut digits_text = unscaled.unsigned_abs().to_string();
    let scale = if scale < 0 {
        digits_text.push_str(&"0".repeat((-scale) as usize));
        0usize
    } else {
        scale as usize
    };
    if digits_text.len() <= scale {
        digits_text = format!(
            "{}{}",
            "0".repeat(scale + 1 - digits_text.len()),
            digits_text
        );
    }
    let (int_part, frac_part) = digits_text.split_at(digits_text.len() - scale);
    let int_pad = (4 - int_part.len() % 4) % 4;
    let frac_pad = (4 - frac_part.len() % 4) % 4;
    let int_digits = format!("{}{}", "0".repeat(int_pad), int_part);
    let frac_digits = format!("{}{}", frac_part, "0".repeat(frac_pad));
    let group = |s: &str| -> Vec<i16> {
        s.as_bytes()
            .chunks(4)
            .map(|c| {
                std::str::from_utf8(c)
                    .expect("digits")
                    .parse::<i16>()
                    .expect("four digits")
            })
            .collect()
    };
    let mut groups = group(&int_digits);
    let mut weight = groups.len() as i16 - 1;
    groups.extend(group(&frac_digits));
    while groups.first() == Some(&0) {
        groups.remove(0);
        weight -= 1;
    }
    while groups.last() == Some(&0) {
        groups.pop();
    }
    if groups.is_empty() {
        weight = 0;
    }
    buf.put_i16(groups.len() as i16);
    buf.put_i16(weight);
    buf.put_u16(if negative && !groups.is_empty() {
        0x4000
    } else {
        0
    });
    buf.put_u16(scale as u16);
    for g in groups {
        buf.put_i16(g);
    }
}

fn float_text(v: f64, out: &mut String) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "Infinity" } else { "-Infinity" });
    } else {
        let abs = v.abs();
        if abs != 0.0 && !(1e-4..1e16).contains(&abs) {
            // Postgres style: 1e+21, 1.5e-05.
            let s = format!("{v:e}");
            let (mantissa, exp) = s.split_once('e').expect("exponent form");
            let exp: i32 = exp.parse().expect("exponent");
            let _ = write!(
                out,
                "{mantissa}e{}{:02}",
                if exp < 0 { '-' } else { '+' },
                exp.abs()
            );
        } else {
            let _ = write!(out, "{v}");
        }
    }
}

fn decimal_text(unscaled: i128, scale: i8, out: &mut String) {
    if scale <= 0 {
        let _ = write!(out, "{unscaled}{}", "0".repeat((-scale) as usize));
        return;
    }
    let scale = scale as usize;
    let digits = unscaled.unsigned_abs().to_string();
    let digits = if digits.len() <= scale {
        format!("{}{}", "0".repeat(scale + 1 - digits.len()), digits)
    } else {
        digits
    };
    let (i, f) = digits.split_at(digits.len() - scale);
    if unscaled < 0 {
        out.push('-');
    }
    let _ = write!(out, "{i}.{f}");
}

fn timestamp_text(micros: i64, out: &mut String) {
    if micros == i64::MAX {
        out.push_str("infinity");
        return;
    }
    if micros == i64::MIN {
        out.push_str("-infinity");
        return;
    }
    match chrono::DateTime::from_timestamp_micros(micros) {
        Some(t) => {
            let _ = write!(out, "{}", t.format("%Y-%m-%d %H:%M:%S"));
            let frac = micros.rem_euclid(1_000_000);
            if frac != 0 {
                let f = format!("{frac:06}");
                out.push('.');
                out.push_str(f.trim_end_matches('0'));
            }
        }
        None => out.push_str("infinity"),
    }
}

fn interval_text(months: i32, days: i32, micros: i64, out: &mut String) {
    let mut parts = Vec::new();
    let (years, months) = (months / 12, months % 12);
    let plural = |n: i64, unit: &str| format!("{n} {unit}{}", if n.abs() == 1 { "" } else { "s" });
    if years != 0 {
        parts.push(plural(years as i64, "year"));
    }
    if months != 0 {
        parts.push(plural(months as i64, "mon"));
    }
    if days != 0 {
        parts.push(plural(days as i64, "day"));
    }
    if micros != 0 || parts.is_empty() {
        let sign = if micros < 0 { "-" } else { "" };
        let m = micros.unsigned_abs();
        let (h, rest) = (m / 3_600_000_000, m % 3_600_000_000);
        let (min, rest) = (rest / 60_000_000, rest % 60_000_000);
        let (s, frac) = (rest / 1_000_000, rest % 1_000_000);
        let mut t = format!("{sign}{h:02}:{min:02}:{s:02}");
        if frac != 0 {
            t.push_str(format!(".{frac:06}").trim_end_matches('0'));
        }
        parts.push(t);
    }
    out.push_str(&parts.join(" "));
}

/// The text form of a value, as Postgres writes it.
pub fn write_text(array: &ArrayRef, row: usize, out: &mut String) -> Result<()> {
    macro_rules! num {
        ($t:ty) => {{
            let _ = write!(out, "{}", array.as_primitive::<$t>().value(row));
        }};
    }
    match array.data_type() {
        DataType::Null => {}
        DataType::Boolean => out.push(if array.as_boolean().value(row) {
            't'
        } else {
            'f'
        }),
        DataType::Int8 => num!(Int8Type),
        DataType::Int16 => num!(Int16Type),
        DataType::Int32 => num!(Int32Type),
        DataType::Int64 => num!(Int64Type),
        DataType::UInt8 => num!(UInt8Type),
        DataType::UInt16 => num!(UInt16Type),
        DataType::UInt32 => num!(UInt32Type),
        DataType::UInt64 => num!(UInt64Type),
        DataType::Float16 => {
            float_text(array.as_primitive::<Float16Type>().value(row).to_f64(), out)
        }
        DataType::Float32 => float_text(array.as_primitive::<Float32Type>().value(row) as f64, out),
        DataType::Float64 => float_text(array.as_primitive::<Float64Type>().value(row), out),
        DataType::Decimal128(_, s) => {
            decimal_text(array.as_primitive::<Decimal128Type>().value(row), *s, out)
        }
        DataType::Utf8 => out.push_str(array.as_string::<i32>().value(row)),
        DataType::LargeUtf8 => out.push_str(array.as_string::<i64>().value(row)),
        DataType::Utf8View => out.push_str(array.as_string_view().value(row)),
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => {
            let bytes: &[u8] = match array.data_type() {
                DataType::Binary => array.as_binary::<i32>().value(row),
                DataType::LargeBinary => array.as_binary::<i64>().value(row),
                DataType::BinaryView => array.as_binary_view().value(row),
                _ => array.as_fixed_size_binary().value(row),
            };
            out.push_str("\\x");
            for b in bytes {
                let _ = write!(out, "{b:02x}");
            }
        }
        DataType::Date32 | DataType::Date64 => {
            let days = date_days(array, row);
            match days
                .checked_add(719_163)
                .and_then(chrono::NaiveDate::from_num_days_from_ce_opt)
            {
                Some(d) => {
                    let _ = write!(out, "{}", d.format("%Y-%m-%d"));
                }
                None => out.push_str("infinity"),
            }
        }
        DataType::Timestamp(unit, tz) => {
            let micros = timestamp_micros(array, unit, row);
            timestamp_text(micros, out);
            if tz.is_some() && micros != i64::MAX && micros != i64::MIN {
                out.push_str("+00");
            }
        }
        DataType::Interval(_) | DataType::Duration(_) => {
            let (months, days, micros) = interval_parts(array, row);
            interval_text(months, days, micros, out);
        }
        DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..) => {
            let values = match array.data_type() {
                DataType::List(_) => array.as_list::<i32>().value(row),
                DataType::LargeList(_) => array.as_list::<i64>().value(row),
                _ => array.as_fixed_size_list().value(row),
            };
            out.push('{');
            for i in 0..values.len() {
                if i > 0 {
                    out.push(',');
                }
                if values.is_null(i) {
                    out.push_str("NULL");
                    continue;
                }
                let mut item = String::new();
                write_text(&values, i, &mut item)?;
                let quote = item.is_empty() || item.contains([',', '{', '}', '"', '\\', ' ']);
                if quote {
                    out.push('"');
                    out.push_str(&item.replace('\\', "\\\\").replace('"', "\\\""));
                    out.push('"');
                } else {
                    out.push_str(&item);
                }
            }
            out.push('}');
        }
        _ => {
            // Anything else (structs, maps) as Arrow's display form.
            let formatter =
                arrow::util::display::ArrayFormatter::try_new(array.as_ref(), &Default::default())?;
            let _ = write!(out, "{}", formatter.value(row));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use arrow::array::{Decimal128Array, Float64Array, TimestampMillisecondArray};

    fn text(array: ArrayRef, row: usize) -> String {
        let mut s = String::new();
        write_text(&array, row, &mut s).unwrap();
        s
    }

    #[test]
    fn text_forms_match_postgres() {
        let ts: ArrayRef = Arc::new(TimestampMillisecondArray::from(vec![1_700_000_000_123, 0]));
        assert_eq!(text(ts.clone(), 0), "2023-11-14 22:13:20.123");
        assert_eq!(text(ts, 1), "1970-01-01 00:00:00");
        let tz: ArrayRef =
            Arc::new(TimestampMillisecondArray::from(vec![0]).with_timezone("+00:00"));
        assert_eq!(text(tz, 0), "1970-01-01 00:00:00+00");
        let f: ArrayRef = Arc::new(Float64Array::from(vec![0.1, 1e21, f64::NAN, 2.5e-5]));
        assert_eq!(text(f.clone(), 0), "0.1");
        assert_eq!(text(f.clone(), 1), "1e+21");
        assert_eq!(text(f.clone(), 2), "NaN");
        assert_eq!(text(f, 3), "2.5e-05");
        let d: ArrayRef = Arc::new(
            Decimal128Array::from(vec![-12345, 5])
                .with_precision_and_scale(10, 3)
                .unwrap(),
        );
        assert_eq!(text(d.clone(), 0), "-12.345");
        assert_eq!(text(d, 1), "0.005");
    }
}
