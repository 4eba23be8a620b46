//! `COPY`, both ways, as Postgres has it:
//!
//! - `COPY table [(columns)] FROM STDIN [WITH (...)]`: the client's rows
//!   into an ordinary table, as one statement (a bad line fails it whole,
//!   naming the line). Text (tab-separated, `\N` for null, backslash
//!   escapes), CSV, and binary (decoded by the wire server, which knows
//!   Postgres's binary values).
//! - `COPY table_or_view [(columns)] TO STDOUT` and `COPY (query) TO
//!   STDOUT`: a relation's rows or a query's result to the client, in
//!   text, CSV or binary (psql's `\copy ... TO` and every driver's copy).
//!
//! Options: `FORMAT text | csv | binary`, `DELIMITER`, `NULL`, `HEADER`,
//! and the old spellings (`CSV HEADER`, `BINARY`).

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use sqlparser::ast;

use crate::error::{sqlstate, Error, Result};
use crate::frontend::parser;

/// How rows are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Postgres's text format: delimiter-separated, `\N` for null,
    /// backslash escapes.
    Text,
    Csv,
    /// Postgres's binary format (`PGCOPY`).
    Binary,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub format: Format,
    pub delimiter: u8,
    /// A first line of column names (text and CSV).
    pub header: bool,
    /// The text of a null value.
    pub null: String,
}

/// A parsed COPY statement.
#[derive(Debug, Clone)]
pub enum Copy {
    In(CopyIn),
    Out(CopyOut),
}

/// `COPY table [(columns)] FROM STDIN`, waiting for its data.
#[derive(Debug, Clone)]
pub struct CopyIn {
    pub table: String,
    pub columns: Vec<String>,
    pub options: Options,
}

/// `COPY ... TO STDOUT`: the query whose rows go to the client.
#[derive(Debug, Clone)]
pub struct CopyOut {
    pub query: Box<ast::Query>,
    pub options: Options,
}

/// Reads a COPY statement.
pub fn parse(statement: &ast::Statement) -> Result<Copy> {
    let ast::Statement::Copy {
        source,
        to,
        target,
        options,
        legacy_options,
        ..
    } = statement
    else {
        return Err(Error::internal("not a COPY statement"));
    };
    let options = read_options(options, legacy_options)?;
    if *to {
        if !matches!(target, ast::CopyTarget::Stdout) {
            return Err(Error::not_supported(
                "COPY ... TO a file or program is not supported; use TO STDOUT (psql's \\copy writes a local file so)",
            ));
        }
        let query = match source {
            ast::CopySource::Query(query) => query.clone(),
            ast::CopySource::Table {
                table_name,
                columns,
            } => {
                let list = if columns.is_empty() {
                    "*".to_string()
                } else {
                    columns
                        .iter()
                        .map(|c| c.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                let sql = format!("SELECT {list} FROM {table_name}");
                match parser::parse_one(&sql)?.statement {
                    parser::Statement::Query(q) => match *q {
                        ast::Statement::Query(q) => q,
                        _ => return Err(Error::internal("COPY's table made no query")),
                    },
                    _ => return Err(Error::internal("COPY's table made no query")),
                }
            }
        };
        return Ok(Copy::Out(CopyOut { query, options }));
    }
    let ast::CopySource::Table {
        table_name,
        columns,
    } = source
    else {
        return Err(Error::syntax("COPY FROM takes a table, not a query"));
    };
    if !matches!(target, ast::CopyTarget::Stdin) {
        return Err(Error::not_supported(
            "COPY ... FROM a file or program is not supported; use FROM STDIN (psql's \\copy reads a local file so)",
        ));
    }
    Ok(Copy::In(CopyIn {
        table: parser::normalize_object_name(table_name),
        columns: columns.iter().map(parser::normalize_ident).collect(),
        options,
    }))
}

fn single_byte(c: char, what: &str) -> Result<u8> {
    u8::try_from(c)
        .ok()
        .filter(|b| b.is_ascii())
        .ok_or_else(|| Error::invalid_parameter(format!("COPY {what} must be one ASCII character")))
}

fn read_options(
    options: &[ast::CopyOption],
    legacy_options: &[ast::CopyLegacyOption],
) -> Result<Options> {
    let mut format = Format::Text;
    let mut header = false;
    let mut delimiter = None;
    let mut null = None;
    let unsupported = |o: &dyn std::fmt::Display| {
        Error::not_supported(format!("COPY option {o} is not supported"))
    };
    for option in options {
        match option {
            ast::CopyOption::Format(f) => {
                format = match f.value.to_ascii_lowercase().as_str() {
                    "csv" => Format::Csv,
                    "text" => Format::Text,
                    "binary" => Format::Binary,
                    other => {
                        return Err(Error::invalid_parameter(format!(
                            "COPY format \"{other}\" not recognized"
                        )))
                    }
                }
            }
            ast::CopyOption::Delimiter(c) => delimiter = Some(single_byte(*c, "DELIMITER")?),
            ast::CopyOption::Header(h) => header = *h,
            ast::CopyOption::Null(n) => null = Some(n.clone()),
            other => return Err(unsupported(other)),
        }
    }
    for option in legacy_options {
        match option {
            ast::CopyLegacyOption::Csv(csv) => {
                format = Format::Csv;
                for o in csv {
                    match o {
                        ast::CopyLegacyCsvOption::Header => header = true,
                        other => return Err(unsupported(other)),
                    }
                }
            }
            ast::CopyLegacyOption::Binary => format = Format::Binary,
            ast::CopyLegacyOption::Header => header = true,
            ast::CopyLegacyOption::Delimiter(c) => delimiter = Some(single_byte(*c, "DELIMITER")?),
            ast::CopyLegacyOption::Null(n) => null = Some(n.clone()),
            other => return Err(unsupported(other)),
        }
    }
    if format == Format::Binary && (header || delimiter.is_some() || null.is_some()) {
        return Err(Error::user(
            sqlstate::SYNTAX_ERROR,
            "cannot specify DELIMITER, NULL or HEADER in BINARY mode",
        ));
    }
    let (default_delimiter, default_null) = match format {
        Format::Csv => (b',', ""),
        _ => (b'\t', "\\N"),
    };
    Ok(Options {
        format,
        delimiter: delimiter.unwrap_or(default_delimiter),
        header,
        null: null.unwrap_or_else(|| default_null.to_string()),
    })
}

impl CopyIn {
    /// The number of columns a row of data has.
    fn width(&self, schema: &SchemaRef) -> usize {
        if self.columns.is_empty() {
            schema.fields().len()
        } else {
            self.columns.len()
        }
    }

    /// The rows of text or CSV data a client sent, as the table's rows.
    /// Fields are read as text and cast like INSERT's values; a bad line
    /// fails the whole COPY, naming the line.
    pub fn rows(&self, data: &[u8], schema: &SchemaRef) -> Result<RecordBatch> {
        let text = std::str::from_utf8(data).map_err(|e| {
            Error::user(
                sqlstate::CHARACTER_NOT_IN_REPERTOIRE,
                format!("COPY data is not UTF-8: {e}"),
            )
        })?;
        let width = self.width(schema);
        let mut columns: Vec<StringBuilder> = (0..width).map(|_| StringBuilder::new()).collect();
        let csv = self.options.format == Format::Csv;
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(self.options.header)
            .delimiter(self.options.delimiter)
            .quoting(csv)
            .flexible(true)
            .from_reader(text.as_bytes());
        for (n, record) in reader.records().enumerate() {
            let line = n + 1 + self.options.header as usize;
            let record = record.map_err(|e| {
                Error::user(
                    sqlstate::DATA_EXCEPTION,
                    format!("COPY data, line {line}: {e}"),
                )
            })?;
            if record.len() == 1 && record.get(0) == Some("\\.") {
                break;
            }
            if record.len() != width {
                return Err(Error::user(
                    sqlstate::DATA_EXCEPTION,
                    format!(
                        "COPY data, line {line}: {} fields, \"{}\" takes {width}",
                        record.len(),
                        self.table
                    ),
                ));
            }
            for (field, column) in record.iter().zip(columns.iter_mut()) {
                if field == self.options.null {
                    column.append_null();
                } else if csv {
                    column.append_value(field);
                } else {
                    column.append_value(unescape(field));
                }
            }
        }
        let arrays: Vec<ArrayRef> = columns
            .into_iter()
            .map(|mut c| Arc::new(c.finish()) as ArrayRef)
            .collect();
        let fields: Vec<Field> = (0..width)
            .map(|i| Field::new(format!("c{i}"), DataType::Utf8, true))
            .collect();
        let text = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?;
        crate::dml::conform(&text, &self.columns, schema, &self.table)
    }

    /// Rows already decoded (binary COPY), as the table's rows.
    pub fn conform(&self, rows: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
        crate::dml::conform(rows, &self.columns, schema, &self.table)
    }

    /// The types a binary row's fields are read as: the listed columns', or
    /// the table's.
    pub fn field_types(&self, schema: &SchemaRef) -> Result<Vec<DataType>> {
        if self.columns.is_empty() {
            return Ok(schema
                .fields()
                .iter()
                .map(|f| f.data_type().clone())
                .collect());
        }
        self.columns
            .iter()
            .map(|c| {
                schema
                    .field_with_name(c)
                    .map(|f| f.data_type().clone())
                    .map_err(|_| Error::undefined_column(c))
            })
            .collect()
    }
}

/// A text-format field with its backslash escapes read (`\t`, `\n`, `\\`,
/// octal `\123`, hex `\x41`).
fn unescape(field: &str) -> std::borrow::Cow<'_, str> {
    if !field.contains('\\') {
        return field.into();
    }
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some('v') => out.push('\u{b}'),
            Some('x') => {
                let mut value = 0u32;
                let mut digits = 0;
                while digits < 2 {
                    match chars.peek().and_then(|c| c.to_digit(16)) {
                        Some(d) => {
                            value = value * 16 + d;
                            chars.next();
                            digits += 1;
                        }
                        None => break,
                    }
                }
                match (digits, char::from_u32(value)) {
                    (0, _) => out.push('x'),
                    (_, Some(ch)) => out.push(ch),
                    _ => {}
                }
            }
            Some(d @ '0'..='7') => {
                let mut value = d.to_digit(8).expect("an octal digit");
                for _ in 0..2 {
                    match chars.peek().and_then(|c| c.to_digit(8)) {
                        Some(d) => {
                            value = value * 8 + d;
                            chars.next();
                        }
                        None => break,
                    }
                }
                if let Some(ch) = char::from_u32(value) {
                    out.push(ch);
                }
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    out.into()
}

/// A text-format field with its special characters escaped.
pub fn escape_text(value: &str, delimiter: u8, out: &mut Vec<u8>) {
    for b in value.bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' if delimiter == b'\t' => out.extend_from_slice(b"\\t"),
            b if b == delimiter => {
                out.push(b'\\');
                out.push(b);
            }
            b => out.push(b),
        }
    }
}

/// A CSV field, quoted when it must be: when it holds the delimiter, a
/// quote, a line break, or would read as null.
pub fn escape_csv(value: &str, delimiter: u8, null: &str, out: &mut Vec<u8>) {
    let quote = value.is_empty() && null.is_empty()
        || value == null
        || value
            .bytes()
            .any(|b| b == delimiter || b == b'"' || b == b'\n' || b == b'\r');
    if !quote {
        out.extend_from_slice(value.as_bytes());
        return;
    }
    out.push(b'"');
    for b in value.bytes() {
        if b == b'"' {
            out.push(b'"');
        }
        out.push(b);
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_fields_escape_and_unescape() {
        let mut out = Vec::new();
        escape_text("a\tb\\c\nd", b'\t', &mut out);
        assert_eq!(out, b"a\\tb\\\\c\\nd");
        let text = String::from_utf8(out).unwrap();
        assert_eq!(unescape(&text), "a\tb\\c\nd");
        assert_eq!(unescape("\\101\\x42"), "AB");
    }

    #[test]
    fn csv_fields_quote_when_they_must() {
        let field = |v: &str| {
            let mut out = Vec::new();
            escape_csv(v, b',', "", &mut out);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(field("plain"), "plain");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field(""), "\"\"");
    }
}
