//! Flink's built-in scalar functions that DataFusion lacks or spells
//! differently, with Flink's semantics: Java date-time patterns, 0-based
//! `SPLIT_INDEX`, `REGEXP_EXTRACT`'s group 0 default, `DAYOFWEEK` counting
//! from Sunday, and NULL (not a failed job) for a bad row: a value out of
//! range, a regex that does not compile, `MOD` by zero.
//!
//! Each function is a [`FlinkFunction`]: its name, how it coerces its
//! arguments, its return type and a batch kernel. The README's "Flink
//! functions" table lists them, DataFusion's that Flink shares, and the
//! ones refused by name.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int32Builder, Int64Array, Int64Builder, StringBuilder,
};
use arrow::datatypes::{DataType, Float64Type, Int64Type, TimeUnit, TimestampMicrosecondType};
use chrono::{Datelike, NaiveDateTime, Timelike};
use datafusion::common::{plan_err, DataFusionError, Result as DfResult, ScalarValue};
use datafusion::logical_expr::expr::Case;
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::type_coercion::binary::type_union_resolution;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use super::java_time::{from_micros, Pattern};
use crate::error::Error;
use crate::frontend::types::UTC;

type Coerce = fn(&[DataType]) -> DfResult<Vec<DataType>>;
type Returns = fn(&[DataType]) -> DataType;
type Eval = fn(&[ArrayRef], usize) -> DfResult<ArrayRef>;
type Simplify = fn(Vec<Expr>) -> DfResult<ExprSimplifyResult>;

/// One of Flink's functions. Two are the same function when their names
/// are.
#[derive(Debug)]
pub struct FlinkFunction {
    name: &'static str,
    signature: Signature,
    coerce: Coerce,
    returns: Returns,
    eval: Eval,
    simplify: Option<Simplify>,
}

impl PartialEq for FlinkFunction {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for FlinkFunction {}

impl std::hash::Hash for FlinkFunction {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl FlinkFunction {
    fn new(name: &'static str, coerce: Coerce, returns: Returns, eval: Eval) -> Self {
        FlinkFunction {
            name,
            signature: Signature::user_defined(Volatility::Immutable),
            coerce,
            returns,
            eval,
            simplify: None,
        }
    }

    fn volatile(mut self) -> Self {
        self.signature = Signature::user_defined(Volatility::Volatile);
        self
    }

    fn simplified(mut self, simplify: Simplify) -> Self {
        self.simplify = Some(simplify);
        self
    }
}

impl ScalarUDFImpl for FlinkFunction {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        (self.coerce)(arg_types).map_err(|e| match e {
            DataFusionError::Plan(m) => {
                DataFusionError::Plan(format!("function {}: {m}", self.name))
            }
            e => e,
        })
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        Ok((self.returns)(arg_types))
    }

    fn simplify(&self, args: Vec<Expr>, _info: &SimplifyContext) -> DfResult<ExprSimplifyResult> {
        match self.simplify {
            Some(f) => f(args),
            None => Ok(ExprSimplifyResult::Original(args)),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let rows = if scalar { 1 } else { args.number_rows };
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let arrays: Vec<ArrayRef> = arrays
            .into_iter()
            .map(|a| {
                if a.len() == rows {
                    a
                } else {
                    a.slice(0, rows.min(a.len()))
                }
            })
            .collect();
        let out = (self.eval)(&arrays, rows)?;
        if scalar {
            Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?))
        } else {
            Ok(ColumnarValue::Array(out))
        }
    }
}

/// Every Flink function, to register.
pub fn all() -> Vec<ScalarUDF> {
    let mut out = vec![
        FlinkFunction::new("date_format", date_format_args, utf8, date_format),
        FlinkFunction::new("mod", numbers_2, numeric_result, modulo),
        FlinkFunction::new("split_index", split_index_args, utf8, split_index),
        FlinkFunction::new("regexp_extract", regexp_extract_args, utf8, regexp_extract),
        FlinkFunction::new("from_unixtime", from_unixtime_args, utf8, from_unixtime),
        FlinkFunction::new("unix_timestamp", unix_timestamp_args, int64, unix_timestamp).volatile(),
        FlinkFunction::new("locate", locate_args, int32, locate),
        FlinkFunction::new("if", if_args, if_result, if_eval).simplified(if_to_case),
        FlinkFunction::new("regexp", strings_2, boolean, regexp),
        FlinkFunction::new(
            "to_timestamp",
            to_timestamp_args,
            to_timestamp_result,
            to_timestamp,
        ),
        FlinkFunction::new("to_date", to_date_args, date, to_date),
        FlinkFunction::new("json_value", strings_2, utf8, json_value),
        FlinkFunction::new("json_query", strings_2, utf8, json_query),
        FlinkFunction::new("json_value_state", strings_2, utf8, json_value_state),
        FlinkFunction::new("json_value_raise", strings_2, utf8, json_value_raise),
    ];
    for (name, eval) in TIME_PARTS {
        out.push(FlinkFunction::new(name, one_time, int64, *eval));
    }
    out.into_iter().map(ScalarUDF::from).collect()
}

/// Flink's functions that take a date or timestamp and return a part of
/// it, as a BIGINT.
const TIME_PARTS: &[(&str, Eval)] = &[
    ("year", |a, _| time_part(&a[0], |t| t.year() as i64)),
    ("quarter", |a, _| {
        time_part(&a[0], |t| (t.month0() / 3 + 1) as i64)
    }),
    ("month", |a, _| time_part(&a[0], |t| t.month() as i64)),
    ("week", |a, _| {
        time_part(&a[0], |t| t.iso_week().week() as i64)
    }),
    ("dayofyear", |a, _| time_part(&a[0], |t| t.ordinal() as i64)),
    ("dayofmonth", |a, _| time_part(&a[0], |t| t.day() as i64)),
    ("dayofweek", |a, _| {
        time_part(&a[0], |t| t.weekday().number_from_sunday() as i64)
    }),
    ("hour", |a, _| time_part(&a[0], |t| t.hour() as i64)),
    ("minute", |a, _| time_part(&a[0], |t| t.minute() as i64)),
    ("second", |a, _| time_part(&a[0], |t| t.second() as i64)),
];

// Return types.

fn utf8(_: &[DataType]) -> DataType {
    DataType::Utf8
}

fn int64(_: &[DataType]) -> DataType {
    DataType::Int64
}

fn int32(_: &[DataType]) -> DataType {
    DataType::Int32
}

fn boolean(_: &[DataType]) -> DataType {
    DataType::Boolean
}

fn date(_: &[DataType]) -> DataType {
    DataType::Date32
}

/// `TO_TIMESTAMP(text [, pattern])` is Flink's TIMESTAMP(3);
/// `TO_TIMESTAMP(seconds)`, Postgres's, a TIMESTAMP WITH TIME ZONE.
fn to_timestamp_result(args: &[DataType]) -> DataType {
    match args[0] {
        DataType::Float64 => DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into())),
        _ => DataType::Timestamp(TimeUnit::Millisecond, None),
    }
}

fn numeric_result(args: &[DataType]) -> DataType {
    args[0].clone()
}

fn if_result(args: &[DataType]) -> DataType {
    args[1].clone()
}

// Argument coercions.

const MICROS: DataType = DataType::Timestamp(TimeUnit::Microsecond, None);

fn arity(args: &[DataType], range: std::ops::RangeInclusive<usize>) -> DfResult<()> {
    if range.contains(&args.len()) {
        return Ok(());
    }
    let want = if range.start() == range.end() {
        range.start().to_string()
    } else {
        format!("{} to {}", range.start(), range.end())
    };
    plan_err!("takes {want} arguments, got {}", args.len())
}

fn time_or_text(t: &DataType) -> DfResult<DataType> {
    match t {
        DataType::Timestamp(..)
        | DataType::Date32
        | DataType::Date64
        | DataType::Utf8
        | DataType::LargeUtf8
        | DataType::Utf8View
        | DataType::Null => Ok(MICROS),
        other => plan_err!("expects a timestamp, got {other}"),
    }
}

fn text(t: &DataType) -> DfResult<DataType> {
    match t {
        DataType::Utf8
        | DataType::LargeUtf8
        | DataType::Utf8View
        | DataType::Null
        | DataType::Dictionary(..) => Ok(DataType::Utf8),
        other => plan_err!("expects a string, got {other}"),
    }
}

fn integer(t: &DataType) -> DfResult<DataType> {
    if t.is_integer() || t.is_null() {
        Ok(DataType::Int64)
    } else {
        plan_err!("expects an integer, got {t}")
    }
}

fn one_time(args: &[DataType]) -> DfResult<Vec<DataType>> {
    arity(args, 1..=1)?;
    Ok(vec![time_or_text(&args[0])?])
}

fn date_format_args(args: &[DataType]) -> DfResult<Vec<DataType>> {
    arity(args, 2..=2)?;
    Ok(vec![time_or_text(&args[0])?, text(&args[1])?])
}

fn strings_2(args: &[DataType]) -> DfResult<Vec<DataType>> {
    arity(args, 2..=2)?;
    args.iter().map(text).collect()
}

fn numbers_2(args: &[DataType]) -> DfResult<Vec<DataType>> {
    arity(args, 2..=2)?;
    for t in args {
        if !t.is_numeric() && !t.is_null() {
            return plan_err!("expects numbers, got {t}");
        }
    }
    if args.iter().all(|t| t.is_integer() || t.is_null()) {
        Ok(vec![DataType::Int64; 2])
    } else {
        Ok(vec![DataType::Float64; 2])
    }
}

fn split_index_args(args: &[DataType]) -> DfResult<Vec<DataType>> {
    arity(args, 3..=3)?;
    Ok(vec![text(&args[0])?, text(&args[1])?, integer(&args[2])?])
}

fn regexp_extract_args(args: &[DataType]) -> DfResult<Vec<DataType>> {
    arity(args, 2..=3)?;
    let mut out = vec![text(&args[0])?, text(&args[1])?];
    if let Some(t) = args.get(2) {
        out.push(integer(t)?);
    }
    Ok(out)
}

fn to_timestamp_args(args: &[DataType]) -> DfResult<Vec<DataType>> {
    arity(args, 1..=2)?;
    if args.len() == 1 && args[0].is_numeric() {
        return Ok(vec![DataType::Float64]);
    }
    args.iter().map(text).collect()
}

fn to_date_args(args: &[DataType]) -> DfResult<Vec<DataType>> {
    arity(args, 1..=2)?;
    args.iter().map(text).collect()
}

fn from_unixtime_args(args: &[DataType]) -> DfResult<Vec<DataType>> {
    arity(args, 1..=2)?;
    let mut out = vec![integer(&args[0])?];
    if let Some(t) = args.get(1) {
        out.push(text(t)?);
    }
    Ok(out)
}

fn unix_timestamp_args(args: &[DataType]) -> DfResult<Vec<DataType>> {
    arity(args, 0..=2)?;
    args.iter().map(text).collect()
}

fn locate_args(args: &[DataType]) -> DfResult<Vec<DataType>> {
    arity(args, 2..=3)?;
    let mut out = vec![text(&args[0])?, text(&args[1])?];
    if let Some(t) = args.get(2) {
        out.push(integer(t)?);
    }
    Ok(out)
}

fn if_args(args: &[DataType]) -> DfResult<Vec<DataType>> {
    arity(args, 3..=3)?;
    if !matches!(args[0], DataType::Boolean | DataType::Null) {
        return plan_err!("expects a boolean condition, got {}", args[0]);
    }
    let Some(common) = type_union_resolution(&args[1..]) else {
        return plan_err!("has branches of types {} and {}", args[1], args[2]);
    };
    Ok(vec![DataType::Boolean, common.clone(), common])
}

// Kernels.

/// The value of a scalar string argument, if the argument is one value
/// for every row (so a pattern is compiled once).
fn constant(a: &ArrayRef, rows: usize) -> Option<Option<&str>> {
    let s = a.as_string::<i32>();
    if rows == 1 || (s.len() > 0 && s.null_count() == 0 && all_equal(s)) {
        return Some((!s.is_null(0)).then(|| s.value(0)));
    }
    None
}

fn all_equal(s: &arrow::array::StringArray) -> bool {
    let first = s.value(0);
    (1..s.len()).all(|i| s.value(i) == first)
}

fn time_part(a: &ArrayRef, part: impl Fn(&NaiveDateTime) -> i64) -> DfResult<ArrayRef> {
    let micros = a.as_primitive::<TimestampMicrosecondType>();
    let out: Int64Array = micros
        .iter()
        .map(|v| v.and_then(from_micros).map(|t| part(&t)))
        .collect();
    Ok(Arc::new(out))
}

fn date_format(a: &[ArrayRef], rows: usize) -> DfResult<ArrayRef> {
    let times = a[0].as_primitive::<TimestampMicrosecondType>();
    let formats = a[1].as_string::<i32>();
    let fixed = match constant(&a[1], rows) {
        Some(Some(p)) => Some(Pattern::compile(p).map_err(bad_pattern)?),
        Some(None) => return Ok(arrow::array::new_null_array(&DataType::Utf8, rows)),
        None => None,
    };
    let mut out = StringBuilder::with_capacity(rows, rows * 16);
    let mut text = String::with_capacity(32);
    for i in 0..rows {
        let t = (!times.is_null(i))
            .then(|| from_micros(times.value(i)))
            .flatten();
        let (Some(t), false) = (t, formats.is_null(i)) else {
            out.append_null();
            continue;
        };
        text.clear();
        match &fixed {
            Some(p) => p.format(&t, &mut text),
            None => match Pattern::compile(formats.value(i)) {
                Ok(p) => p.format(&t, &mut text),
                Err(_) => {
                    out.append_null();
                    continue;
                }
            },
        }
        out.append_value(&text);
    }
    Ok(Arc::new(out.finish()))
}

fn bad_pattern(message: String) -> DataFusionError {
    DataFusionError::External(Box::new(Error::invalid_parameter(message)))
}

fn modulo(a: &[ArrayRef], _: usize) -> DfResult<ArrayRef> {
    // MOD by zero is NULL: one bad row never fails a job.
    let zero: ArrayRef = match a[1].data_type() {
        DataType::Int64 => Arc::new(Int64Array::from(vec![0; 1])),
        _ => Arc::new(arrow::array::Float64Array::from(vec![0.0; 1])),
    };
    let is_zero = arrow::compute::kernels::cmp::eq(&a[1], &arrow::array::Scalar::new(zero))?;
    let divisor = arrow::compute::nullif(&a[1], &is_zero)?;
    Ok(match a[0].data_type() {
        DataType::Int64 => Arc::new(arrow::compute::binary::<_, _, _, Int64Type>(
            a[0].as_primitive::<Int64Type>(),
            divisor.as_primitive::<Int64Type>(),
            |x, y| if y == 0 { 0 } else { x.wrapping_rem(y) },
        )?),
        _ => Arc::new(arrow::compute::binary::<_, _, _, Float64Type>(
            a[0].as_primitive::<Float64Type>(),
            divisor.as_primitive::<Float64Type>(),
            |x, y| x % y,
        )?),
    })
}

fn split_index(a: &[ArrayRef], rows: usize) -> DfResult<ArrayRef> {
    let (s, sep, index) = (
        a[0].as_string::<i32>(),
        a[1].as_string::<i32>(),
        a[2].as_primitive::<Int64Type>(),
    );
    let mut out = StringBuilder::with_capacity(rows, rows * 8);
    for i in 0..rows {
        if s.is_null(i) || sep.is_null(i) || index.is_null(i) || index.value(i) < 0 {
            out.append_null();
            continue;
        }
        let (text, sep, n) = (s.value(i), sep.value(i), index.value(i) as usize);
        let part = if sep.is_empty() {
            (n == 0).then_some(text)
        } else {
            text.split(sep).nth(n)
        };
        out.append_option(part);
    }
    Ok(Arc::new(out.finish()))
}

/// Compiles each distinct pattern once per batch (a literal: once).
struct RegexCache {
    last: Option<(String, Option<regex::Regex>)>,
}

impl RegexCache {
    fn new() -> Self {
        RegexCache { last: None }
    }

    fn get(&mut self, pattern: &str) -> Option<&regex::Regex> {
        if self.last.as_ref().map(|(p, _)| p.as_str()) != Some(pattern) {
            self.last = Some((pattern.to_string(), regex::Regex::new(pattern).ok()));
        }
        self.last.as_ref().and_then(|(_, r)| r.as_ref())
    }
}

fn regexp_extract(a: &[ArrayRef], rows: usize) -> DfResult<ArrayRef> {
    let (s, re) = (a[0].as_string::<i32>(), a[1].as_string::<i32>());
    let index = a.get(2).map(|i| i.as_primitive::<Int64Type>());
    let mut cache = RegexCache::new();
    let mut out = StringBuilder::with_capacity(rows, rows * 8);
    for i in 0..rows {
        let group = match index {
            None => Some(0),
            Some(idx) if idx.is_null(i) || idx.value(i) < 0 => None,
            Some(idx) => Some(idx.value(i) as usize),
        };
        let (false, false, Some(group)) = (s.is_null(i), re.is_null(i), group) else {
            out.append_null();
            continue;
        };
        let value = cache
            .get(re.value(i))
            .and_then(|r| r.captures(s.value(i)))
            .and_then(|c| c.get(group))
            .map(|m| m.as_str());
        out.append_option(value);
    }
    Ok(Arc::new(out.finish()))
}

fn regexp(a: &[ArrayRef], rows: usize) -> DfResult<ArrayRef> {
    let (s, re) = (a[0].as_string::<i32>(), a[1].as_string::<i32>());
    let mut cache = RegexCache::new();
    let out: BooleanArray = (0..rows)
        .map(|i| {
            if s.is_null(i) || re.is_null(i) {
                return None;
            }
            cache.get(re.value(i)).map(|r| r.is_match(s.value(i)))
        })
        .collect();
    Ok(Arc::new(out))
}

const DEFAULT_PATTERN: &str = "yyyy-MM-dd HH:mm:ss";

fn from_unixtime(a: &[ArrayRef], rows: usize) -> DfResult<ArrayRef> {
    let seconds = a[0].as_primitive::<Int64Type>();
    let pattern = match a.get(1).map(|f| constant(f, rows)) {
        None => Some(DEFAULT_PATTERN),
        Some(Some(p)) => p,
        Some(None) => {
            return plan_err!("from_unixtime takes a constant format");
        }
    };
    let Some(pattern) = pattern else {
        return Ok(arrow::array::new_null_array(&DataType::Utf8, rows));
    };
    let pattern = Pattern::compile(pattern).map_err(bad_pattern)?;
    let mut out = StringBuilder::with_capacity(rows, rows * 20);
    let mut text = String::new();
    for v in seconds.iter() {
        match v
            .and_then(|s| s.checked_mul(1_000_000))
            .and_then(from_micros)
        {
            Some(t) => {
                text.clear();
                pattern.format(&t, &mut text);
                out.append_value(&text);
            }
            None => out.append_null(),
        }
    }
    Ok(Arc::new(out.finish()))
}

fn unix_timestamp(a: &[ArrayRef], rows: usize) -> DfResult<ArrayRef> {
    if a.is_empty() {
        let now = chrono::Utc::now().timestamp();
        return Ok(Arc::new(Int64Array::from(vec![now; rows])));
    }
    let s = a[0].as_string::<i32>();
    let pattern = match a.get(1).map(|f| constant(f, rows)) {
        None => Some(DEFAULT_PATTERN),
        Some(Some(p)) => p,
        Some(None) => return plan_err!("unix_timestamp takes a constant format"),
    };
    let Some(pattern) = pattern else {
        return Ok(arrow::array::new_null_array(&DataType::Int64, rows));
    };
    let pattern = Pattern::compile(pattern).map_err(bad_pattern)?;
    let mut out = Int64Builder::with_capacity(rows);
    for v in s.iter() {
        out.append_option(
            v.and_then(|v| pattern.parse(v))
                .map(|t| t.and_utc().timestamp()),
        );
    }
    Ok(Arc::new(out.finish()))
}

/// Parses each text with the pattern `a[1]` (a constant; by default
/// `default`, chosen per text), giving None where it does not match.
fn parse_times<'a>(
    a: &'a [ArrayRef],
    rows: usize,
    function: &str,
    default: fn(&str) -> &'static str,
) -> DfResult<Box<dyn Iterator<Item = Option<NaiveDateTime>> + 'a>> {
    let texts = a[0].as_string::<i32>();
    let Some(pattern) = a.get(1) else {
        let mut compiled: std::collections::HashMap<&'static str, Pattern> = Default::default();
        return Ok(Box::new(texts.iter().map(move |v| {
            let v = v?;
            let p = default(v);
            let pattern = match compiled.entry(p) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(Pattern::compile(p).expect("a default pattern compiles"))
                }
            };
            pattern.parse(v)
        })));
    };
    let pattern = match constant(pattern, rows) {
        Some(Some(p)) => Pattern::compile(p).map_err(bad_pattern)?,
        Some(None) => return Ok(Box::new(texts.iter().map(|_| None))),
        None => return plan_err!("{function} takes a constant format"),
    };
    Ok(Box::new(
        texts.iter().map(move |v| v.and_then(|v| pattern.parse(v))),
    ))
}

/// Flink's default: `yyyy-MM-dd HH:mm:ss`, with a fraction of a second if
/// the text has one, or a date alone.
fn default_timestamp_pattern(text: &str) -> &'static str {
    match text.len() {
        10 => "yyyy-MM-dd",
        _ if text.contains('.') => "yyyy-MM-dd HH:mm:ss.SSS",
        _ => DEFAULT_PATTERN,
    }
}

fn to_timestamp(a: &[ArrayRef], rows: usize) -> DfResult<ArrayRef> {
    if a[0].data_type() == &DataType::Float64 {
        let seconds = a[0].as_primitive::<Float64Type>();
        let micros: arrow::array::TimestampMicrosecondArray = seconds
            .iter()
            .map(|s| {
                s.map(|s| s * 1e6)
                    .filter(|m| m.is_finite() && m.abs() < i64::MAX as f64)
                    .map(|m| m.round() as i64)
            })
            .collect();
        return Ok(Arc::new(micros.with_timezone(UTC)));
    }
    let millis: arrow::array::TimestampMillisecondArray =
        parse_times(a, rows, "to_timestamp", default_timestamp_pattern)?
            .map(|t| t.map(|t| t.and_utc().timestamp_millis()))
            .collect();
    Ok(Arc::new(millis))
}

fn to_date(a: &[ArrayRef], rows: usize) -> DfResult<ArrayRef> {
    let days: arrow::array::Date32Array = parse_times(a, rows, "to_date", |_| "yyyy-MM-dd")?
        .map(|t| t.and_then(|t| i32::try_from(t.and_utc().timestamp().div_euclid(86_400)).ok()))
        .collect();
    Ok(Arc::new(days))
}

fn locate(a: &[ArrayRef], rows: usize) -> DfResult<ArrayRef> {
    let (needle, hay) = (a[0].as_string::<i32>(), a[1].as_string::<i32>());
    let from = a.get(2).map(|f| f.as_primitive::<Int64Type>());
    let mut out = Int32Builder::with_capacity(rows);
    for i in 0..rows {
        let start = match from {
            None => Some(1),
            Some(f) if f.is_null(i) => None,
            Some(f) => Some(f.value(i)),
        };
        let (false, false, Some(start)) = (needle.is_null(i), hay.is_null(i), start) else {
            out.append_null();
            continue;
        };
        if start < 1 {
            out.append_value(0);
            continue;
        }
        // Character positions, 1-based; 0 when not found.
        let hay = hay.value(i);
        let skip = hay.char_indices().nth(start as usize - 1).map(|(b, _)| b);
        let found = skip.and_then(|b| hay[b..].find(needle.value(i)).map(|f| b + f));
        out.append_value(match found {
            Some(b) => hay[..b].chars().count() as i32 + 1,
            None => 0,
        });
    }
    Ok(Arc::new(out.finish()))
}

fn if_eval(a: &[ArrayRef], rows: usize) -> DfResult<ArrayRef> {
    let cond = a[0].as_boolean();
    // NULL is not true: the else branch.
    let picks: Vec<(usize, usize)> = (0..rows)
        .map(|i| (usize::from(!(cond.is_valid(i) && cond.value(i))), i))
        .collect();
    Ok(arrow::compute::interleave(&[&a[1], &a[2]], &picks)?)
}

/// `IF(c, a, b)` is `CASE WHEN c THEN a ELSE b END`, so the branch not taken
/// is not evaluated.
fn if_to_case(mut args: Vec<Expr>) -> DfResult<ExprSimplifyResult> {
    let (Some(otherwise), Some(then), Some(when)) = (args.pop(), args.pop(), args.pop()) else {
        return plan_err!("if takes 3 arguments");
    };
    Ok(ExprSimplifyResult::Simplified(Expr::Case(Case::new(
        None,
        vec![(Box::new(when), Box::new(then))],
        Some(Box::new(otherwise)),
    ))))
}

/// The value at `path` (`$.a.b`, `$.a[0]`, `$['a']`) in a JSON text.
fn json_at<'a>(value: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    let mut rest = path.trim().strip_prefix('$')?;
    let mut at = value;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            at = at.get(&r[..end])?;
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            let key = r[..end].trim();
            at = match key.strip_prefix('\'').and_then(|k| k.strip_suffix('\'')) {
                Some(name) => at.get(name)?,
                None => at.get(key.parse::<usize>().ok()?)?,
            };
            rest = &r[end + 1..];
        } else {
            return None;
        }
    }
    Some(at)
}

fn json_apply(
    a: &[ArrayRef],
    rows: usize,
    pick: impl Fn(&serde_json::Value) -> Option<String>,
) -> DfResult<ArrayRef> {
    let (json, path) = (a[0].as_string::<i32>(), a[1].as_string::<i32>());
    let mut out = StringBuilder::with_capacity(rows, rows * 8);
    for i in 0..rows {
        if json.is_null(i) || path.is_null(i) {
            out.append_null();
            continue;
        }
        let value = serde_json::from_str::<serde_json::Value>(json.value(i))
            .ok()
            .and_then(|v| json_at(&v, path.value(i)).and_then(&pick));
        out.append_option(value);
    }
    Ok(Arc::new(out.finish()))
}

/// `JSON_VALUE(json, path)`: the scalar at `path` as a string; NULL for a
/// missing path, an object or an array (Flink's NULL ON EMPTY / ERROR).
fn json_value(a: &[ArrayRef], rows: usize) -> DfResult<ArrayRef> {
    json_apply(a, rows, |v| match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    })
}

/// What `JSON_VALUE(json, path)` finds, for its `ON EMPTY` and `ON ERROR`
/// clauses (see `frontend::json_value`): `value`, `empty` (no item at
/// the path, or a JSON null, as in Flink) or `error` (text that is not
/// JSON, or an object or array at the path).
fn json_value_state(a: &[ArrayRef], rows: usize) -> DfResult<ArrayRef> {
    let (json, path) = (a[0].as_string::<i32>(), a[1].as_string::<i32>());
    let mut out = StringBuilder::with_capacity(rows, rows * 5);
    for i in 0..rows {
        if json.is_null(i) || path.is_null(i) {
            out.append_null();
            continue;
        }
        out.append_value(json_value_found(json.value(i), path.value(i)).0);
    }
    Ok(Arc::new(out.finish()))
}

/// The state of `JSON_VALUE(json, path)`, and why when it is not a value.
fn json_value_found(json: &str, path: &str) -> (&'static str, String) {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(json) else {
        return ("error", "the text is not JSON".into());
    };
    match json_at(&value, path) {
        None | Some(serde_json::Value::Null) => ("empty", format!("no SQL/JSON item at {path}")),
        Some(serde_json::Value::Object(_) | serde_json::Value::Array(_)) => (
            "error",
            format!("the item at {path} is not a scalar (JSON_QUERY returns objects and arrays)"),
        ),
        Some(_) => ("value", String::new()),
    }
}

/// `ERROR ON EMPTY` and `ERROR ON ERROR` of `JSON_VALUE`: fails with what
/// `JSON_VALUE(json, path)` did not find (called on those rows only).
fn json_value_raise(a: &[ArrayRef], rows: usize) -> DfResult<ArrayRef> {
    let (json, path) = (a[0].as_string::<i32>(), a[1].as_string::<i32>());
    for i in 0..rows {
        if json.is_null(i) || path.is_null(i) {
            continue;
        }
        let (state, why) = json_value_found(json.value(i), path.value(i));
        if state != "value" {
            return Err(DataFusionError::External(Box::new(Error::user(
                crate::error::sqlstate::DATA_EXCEPTION,
                format!("JSON_VALUE: {why}"),
            ))));
        }
    }
    Ok(arrow::array::new_null_array(&DataType::Utf8, rows))
}

/// `JSON_QUERY(json, path)`: the object or array at `path` as JSON text.
fn json_query(a: &[ArrayRef], rows: usize) -> DfResult<ArrayRef> {
    json_apply(a, rows, |v| match v {
        serde_json::Value::Object(_) | serde_json::Value::Array(_) => Some(v.to_string()),
        _ => None,
    })
}
