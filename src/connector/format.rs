//! Record formats: JSON (one object per record) and CSV, decoded into Arrow
//! batches by arrow-json and arrow-csv.
//!
//! A chunk of records is decoded in one call (the fast path). Only when that
//! fails, or yields a different number of rows than records, are the records
//! decoded one by one to find the bad ones (the slow path), which become dead
//! letters; the good ones are decoded again together. So one bad record costs
//! one slow chunk and never stops the job.

use std::ops::Range;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, ListArray, MapArray, StructArray};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;

use crate::connector::ReaderContext;
use crate::error::{postgres_style, Error, Result};
use crate::options::Options;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormatSpec {
    Json(JsonSpec),
    Csv(CsvSpec),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonSpec {
    /// `json.timestamp-format.standard` = 'ISO-8601': times are written
    /// `2024-01-01T00:00:00.123`; by default (SQL) `2024-01-01 00:00:00.123`,
    /// as Flink writes them. Either is read.
    pub iso_times: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvSpec {
    /// `csv.field-delimiter`, default `,`.
    pub delimiter: u8,
    /// `csv.quote-character`, default `"`.
    pub quote: u8,
    /// `csv.ignore-first-line`: skip a header line at the start of each file.
    pub ignore_first_line: bool,
}

impl FormatSpec {
    pub fn name(&self) -> &'static str {
        match self {
            FormatSpec::Json(_) => "json",
            FormatSpec::Csv(_) => "csv",
        }
    }

    /// Parses `format` and the `json.*` / `csv.*` options.
    pub fn from_options(opts: &mut Options) -> Result<Self> {
        let format = opts.take("format").unwrap_or_else(|| "json".into());
        match format.to_ascii_lowercase().as_str() {
            "json" => {
                let standard = opts.take("json.timestamp-format.standard");
                let iso_times = match standard.as_deref().map(str::to_ascii_uppercase).as_deref() {
                    None | Some("SQL") => false,
                    Some("ISO-8601") => true,
                    Some(_) => {
                        return Err(Error::invalid_parameter(format!(
                            "invalid 'json.timestamp-format.standard' \"{}\"; use SQL or ISO-8601",
                            standard.unwrap_or_default()
                        )))
                    }
                };
                Ok(FormatSpec::Json(JsonSpec { iso_times }))
            }
            "csv" => {
                let delimiter = single_byte(
                    opts.take("csv.field-delimiter"),
                    b',',
                    "csv.field-delimiter",
                )?;
                let quote = single_byte(
                    opts.take("csv.quote-character"),
                    b'"',
                    "csv.quote-character",
                )?;
                let ignore_first_line = opts.take_bool("csv.ignore-first-line")?.unwrap_or(false);
                Ok(FormatSpec::Csv(CsvSpec {
                    delimiter,
                    quote,
                    ignore_first_line,
                }))
            }
            other => Err(Error::invalid_parameter(format!(
                "unknown format \"{other}\"; Sluice reads json and csv"
            ))),
        }
    }
}

fn single_byte(value: Option<String>, default: u8, key: &str) -> Result<u8> {
    match value {
        None => Ok(default),
        Some(v) => {
            let v = if v == "\\t" { "\t".to_string() } else { v };
            match v.as_bytes() {
                [b] => Ok(*b),
                _ => Err(Error::invalid_parameter(format!(
                    "option '{key}' must be a single character, got '{v}'"
                ))),
            }
        }
    }
}

/// Decodes records of one format into batches of a fixed schema.
pub struct RecordDecoder {
    format: FormatSpec,
    /// The columns as SQL names them: the batches' schema.
    schema: SchemaRef,
    /// The same columns named as the records spell them (JSON keys).
    declared: SchemaRef,
}

/// The outcome of decoding a chunk of records.
pub struct Decoded {
    /// One row per good record, in record order.
    pub batch: RecordBatch,
    /// For row i of `batch`, the index of its record; `None` when every
    /// record decoded (row i is record i).
    pub record_of_row: Option<Vec<usize>>,
    /// Records that could not be decoded: (record index, error).
    pub bad: Vec<(usize, String)>,
    /// Columns that no record carried (JSON only: a key that appears
    /// nowhere in the records), by index. Their values are NULL.
    pub missing: Vec<usize>,
}

impl RecordDecoder {
    /// `declared` names the columns of `schema` as the records spell
    /// them; the batches come out named as `schema` names them.
    pub fn new(format: FormatSpec, schema: SchemaRef, declared: SchemaRef) -> Self {
        RecordDecoder {
            format,
            schema,
            declared,
        }
    }

    /// Decodes the records `buf[r]` for each range `r` of `records`. Every
    /// record must end just before a `\n` in `buf` (records are lines).
    pub fn decode(&self, buf: &[u8], records: &[Range<usize>]) -> Result<Decoded> {
        if records.is_empty() {
            return Ok(Decoded {
                batch: RecordBatch::new_empty(self.schema.clone()),
                record_of_row: None,
                bad: Vec::new(),
                missing: Vec::new(),
            });
        }
        let span = records[0].start..records[records.len() - 1].end + 1;
        let mut decoded = match self.decode_bytes(&buf[span.clone()], records.len()) {
            Ok(batch) if batch.num_rows() == records.len() => Decoded {
                batch,
                record_of_row: None,
                bad: Vec::new(),
                missing: Vec::new(),
            },
            _ => self.decode_slowly(buf, records)?,
        };
        decoded.missing = self.missing_columns(&decoded.batch, &buf[span]);
        Ok(decoded)
    }

    /// The JSON columns that are NULL in every row because no record has
    /// their key: a spelling the records do not use. Only columns that are
    /// all NULL are searched for, so this costs nothing on good data.
    fn missing_columns(&self, batch: &RecordBatch, bytes: &[u8]) -> Vec<usize> {
        if !matches!(self.format, FormatSpec::Json(_)) || batch.num_rows() == 0 {
            return Vec::new();
        }
        let mut missing = Vec::new();
        for (i, column) in batch.columns().iter().enumerate() {
            if column.null_count() < batch.num_rows() {
                continue;
            }
            let key = format!("\"{}\"", self.declared.field(i).name());
            if memchr::memmem::find(bytes, key.as_bytes()).is_none() {
                missing.push(i);
            }
        }
        missing
    }

    /// Decodes records one at a time to find the bad ones, then the good
    /// ones together.
    fn decode_slowly(&self, buf: &[u8], records: &[Range<usize>]) -> Result<Decoded> {
        let mut good = Vec::with_capacity(records.len());
        let mut bad = Vec::new();
        let mut one = Vec::new();
        for (i, r) in records.iter().enumerate() {
            one.clear();
            one.extend_from_slice(&buf[r.clone()]);
            one.push(b'\n');
            match self.decode_bytes(&one, 1) {
                Ok(b) if b.num_rows() == 1 => good.push(i),
                Ok(b) if b.num_rows() == 0 => bad.push((i, "the record is empty".to_string())),
                Ok(_) => bad.push((i, "the record holds more than one value".to_string())),
                Err(e) => bad.push((i, e.to_string())),
            }
        }
        let mut joined = Vec::new();
        for &i in &good {
            joined.extend_from_slice(&buf[records[i].clone()]);
            joined.push(b'\n');
        }
        let batch = self.decode_bytes(&joined, good.len())?;
        if batch.num_rows() != good.len() {
            return Err(Error::internal(format!(
                "decoding {} good records gave {} rows",
                good.len(),
                batch.num_rows()
            )));
        }
        Ok(Decoded {
            batch,
            record_of_row: Some(good),
            bad,
            missing: Vec::new(),
        })
    }

    fn decode_bytes(&self, bytes: &[u8], expected_rows: usize) -> Result<RecordBatch> {
        let batch = self.decode_declared(bytes, expected_rows)?;
        if Arc::ptr_eq(&self.declared, &self.schema) || self.declared == self.schema {
            return Ok(batch);
        }
        respell(batch, &self.schema)
    }

    /// Decodes into the columns as the records spell them.
    fn decode_declared(&self, bytes: &[u8], expected_rows: usize) -> Result<RecordBatch> {
        let batch_size = expected_rows.max(1) + 1;
        match &self.format {
            FormatSpec::Json(_) => {
                let mut decoder = arrow::json::ReaderBuilder::new(self.declared.clone())
                    .with_batch_size(batch_size)
                    .build_decoder()?;
                let mut rest = bytes;
                let mut batches = Vec::new();
                while !rest.is_empty() {
                    let read = decoder.decode(rest).map_err(decode_error)?;
                    if read == 0 {
                        match decoder.flush().map_err(decode_error)? {
                            Some(b) => batches.push(b),
                            None => break,
                        }
                    }
                    rest = &rest[read..];
                }
                if let Some(b) = decoder.flush().map_err(decode_error)? {
                    batches.push(b);
                }
                concat(&self.declared, batches)
            }
            FormatSpec::Csv(csv) => {
                let mut decoder = arrow::csv::ReaderBuilder::new(self.declared.clone())
                    .with_header(false)
                    .with_delimiter(csv.delimiter)
                    .with_quote(csv.quote)
                    .with_batch_size(batch_size)
                    .build_decoder();
                let mut rest = bytes;
                let mut batches = Vec::new();
                loop {
                    let read = decoder.decode(rest).map_err(decode_error)?;
                    rest = &rest[read..];
                    if read == 0 || decoder.capacity() == 0 {
                        match decoder.flush().map_err(decode_error)? {
                            Some(b) => batches.push(b),
                            None => break,
                        }
                    }
                }
                concat(&self.declared, batches)
            }
        }
    }
}

/// Renames the columns of `batch` (and the fields of its ROW columns, at
/// any depth) to those of `schema`, which has the same types but for the
/// names. No values are copied.
pub fn respell(batch: RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| respell_array(c, f.data_type()))
        .collect::<Vec<_>>();
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

fn respell_array(array: &ArrayRef, to: &DataType) -> ArrayRef {
    if array.data_type() == to {
        return array.clone();
    }
    match (array.data_type(), to) {
        (DataType::Struct(_), DataType::Struct(fields)) => {
            let s = array.as_struct();
            let children = s
                .columns()
                .iter()
                .zip(fields)
                .map(|(c, f)| respell_array(c, f.data_type()))
                .collect();
            Arc::new(StructArray::new(
                fields.clone(),
                children,
                s.nulls().cloned(),
            ))
        }
        (DataType::List(_), DataType::List(field)) => {
            let l = array.as_list::<i32>();
            Arc::new(ListArray::new(
                field.clone(),
                l.offsets().clone(),
                respell_array(l.values(), field.data_type()),
                l.nulls().cloned(),
            ))
        }
        (DataType::Map(_, _), DataType::Map(field, sorted)) => {
            let m = array.as_map();
            let entries = respell_array(
                &(Arc::new(m.entries().clone()) as ArrayRef),
                field.data_type(),
            );
            Arc::new(MapArray::new(
                field.clone(),
                m.offsets().clone(),
                entries.as_struct().clone(),
                m.nulls().cloned(),
                *sorted,
            ))
        }
        _ => array.clone(),
    }
}

fn concat(schema: &SchemaRef, batches: Vec<RecordBatch>) -> Result<RecordBatch> {
    match batches.len() {
        0 => Ok(RecordBatch::new_empty(schema.clone())),
        1 => Ok(batches.into_iter().next().expect("one batch")),
        _ => Ok(arrow::compute::concat_batches(schema, &batches)?),
    }
}

fn decode_error(e: arrow::error::ArrowError) -> Error {
    let text = e.to_string();
    let text = text
        .strip_prefix("Json error: ")
        .map(|t| format!("invalid JSON: {}", postgres_style(t)))
        .or_else(|| {
            text.strip_prefix("Csv error: ")
                .map(|t| format!("invalid CSV: {}", postgres_style(t)))
        })
        .or_else(|| {
            text.strip_prefix("Parser error: ")
                .map(|t| format!("invalid value: {}", postgres_style(t)))
        })
        .unwrap_or(text);
    Error::user(
        crate::error::sqlstate::DATA_EXCEPTION,
        postgres_style(&text),
    )
}

/// The ranges of the non-blank lines of `buf` (without their `\n`); a last
/// line without `\n` is not included (it is incomplete). Returns the ranges
/// and the length of the consumed prefix (up to and including the last `\n`).
pub fn split_lines(buf: &[u8], ranges: &mut Vec<Range<usize>>) -> usize {
    ranges.clear();
    let mut start = 0;
    for nl in memchr::memchr_iter(b'\n', buf) {
        let mut end = nl;
        if end > start && buf[end - 1] == b'\r' {
            end -= 1;
        }
        if !buf[start..end].iter().all(|b| b.is_ascii_whitespace()) {
            ranges.push(start..end);
        }
        start = nl + 1;
    }
    start
}

/// Decodes `records` of `buf`, prepares the rows (computed columns, event
/// time check) and turns every bad record into a dead letter described by
/// `position(record index)`. Returns the good rows, or `None` if there are
/// none.
pub fn decode_records(
    ctx: &ReaderContext,
    decoder: &RecordDecoder,
    buf: &[u8],
    records: &[Range<usize>],
    position: &dyn Fn(usize) -> String,
) -> Result<Option<(RecordBatch, Vec<usize>)>> {
    let decoded = decoder.decode(buf, records)?;
    for &i in &decoded.missing {
        ctx.metrics.count_missing_field(
            decoder.declared.field(i).name(),
            decoded.batch.num_rows() as u64,
        );
    }
    for (i, error) in &decoded.bad {
        ctx.dead_letter(position(*i), &buf[records[*i].clone()], error.clone());
    }
    if decoded.batch.num_rows() == 0 {
        return Ok(None);
    }
    let decoded_rows = decoded.batch.num_rows();
    let prepared = ctx.preparer.prepare(decoded.batch)?;
    for (row, reason) in &prepared.rejected {
        let record = match &decoded.record_of_row {
            Some(map) => map[*row],
            None => *row,
        };
        ctx.dead_letter(
            position(record),
            &buf[records[record].clone()],
            reason.clone(),
        );
    }
    let rows = prepared.batch.num_rows();
    ctx.counters()
        .rows_in
        .fetch_add(rows as u64, std::sync::atomic::Ordering::Relaxed);
    if rows == 0 {
        return Ok(None);
    }
    // The record of each row that is left.
    let mut rejected = prepared.rejected.iter().map(|(r, _)| *r).peekable();
    let mut records = Vec::with_capacity(rows);
    for row in 0..decoded_rows {
        if rejected.peek() == Some(&row) {
            rejected.next();
            continue;
        }
        records.push(match &decoded.record_of_row {
            Some(map) => map[row],
            None => row,
        });
    }
    debug_assert_eq!(records.len(), rows);
    Ok(Some((prepared.batch, records)))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{DataType, Field, Int32Type, Schema};

    use super::*;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int32, true),
            Field::new("b", DataType::Utf8, true),
        ]))
    }

    fn lines(text: &str) -> (Vec<u8>, Vec<Range<usize>>) {
        let buf = text.as_bytes().to_vec();
        let mut ranges = Vec::new();
        split_lines(&buf, &mut ranges);
        (buf, ranges)
    }

    fn json_decoder() -> RecordDecoder {
        RecordDecoder::new(
            FormatSpec::Json(JsonSpec { iso_times: false }),
            schema(),
            schema(),
        )
    }

    #[test]
    fn json_fast_path() {
        let (buf, ranges) = lines("{\"a\": 1, \"b\": \"x\"}\n{\"a\": 2}\n");
        let d = json_decoder().decode(&buf, &ranges).unwrap();
        assert_eq!(d.batch.num_rows(), 2);
        assert!(d.record_of_row.is_none());
        assert!(d.batch.column(1).is_null(1));
    }

    #[test]
    fn json_bad_records_are_singled_out() {
        let (buf, ranges) = lines(
            "{\"a\": 1}\nnot json\n{\"a\": \"abc\"}\n[1, 2]\n{\"a\": 5}\n{\"a\": 6}{\"a\": 7}\n",
        );
        let d = json_decoder().decode(&buf, &ranges).unwrap();
        assert_eq!(d.batch.num_rows(), 2);
        assert_eq!(d.record_of_row, Some(vec![0, 4]));
        let bad: Vec<usize> = d.bad.iter().map(|(i, _)| *i).collect();
        assert_eq!(bad, vec![1, 2, 3, 5]);
        let a = d.batch.column(0).as_primitive::<Int32Type>();
        assert_eq!(a.value(1), 5);
        for (_, e) in &d.bad {
            assert!(e.chars().next().unwrap().is_lowercase(), "{e}");
        }
    }

    #[test]
    fn csv_records() {
        let spec = FormatSpec::Csv(CsvSpec {
            delimiter: b',',
            quote: b'"',
            ignore_first_line: false,
        });
        let (buf, ranges) = lines("1,x\nzz,y\n3,\"q,r\"\n");
        let d = RecordDecoder::new(spec, schema(), schema())
            .decode(&buf, &ranges)
            .unwrap();
        assert_eq!(d.batch.num_rows(), 2);
        assert_eq!(d.bad.len(), 1);
        assert_eq!(d.bad[0].0, 1);
        assert_eq!(d.batch.column(1).as_string::<i32>().value(1), "q,r");
    }

    #[test]
    fn split_lines_skips_blanks_and_keeps_partial_tail() {
        let mut ranges = Vec::new();
        let consumed = split_lines(b"a\r\n\n  \nbb\ncc", &mut ranges);
        assert_eq!(ranges, vec![0..1, 7..9]);
        assert_eq!(consumed, 10);
    }
}
