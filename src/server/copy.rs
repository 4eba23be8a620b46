//! COPY's data on the wire: rows out in text, CSV or Postgres's binary
//! format (one CopyData message per row), and binary rows in.

use std::sync::Arc;

use arrow::array::{Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use bytes::{BufMut, BytesMut};
use datafusion::common::ScalarValue;
use futures::stream;
use pgwire::api::results::CopyResponse;
use pgwire::messages::copy::CopyData;

use super::encode::{pg_type, write_binary, write_text};
use super::params::decode_parameter;
use crate::copy::{escape_csv, escape_text, Format, Options};
use crate::error::{sqlstate, Error, Result};

/// The binary format's header: its signature, flags, and no extension.
const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

/// The rows of `batches` as COPY data, one message per row (pgwire counts
/// them for the `COPY n` tag), the header (binary's signature, a CSV or
/// text header line) in front of the first. (An empty COPY with a header
/// reports one row: the header's message alone.)
pub fn copy_out(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    options: &Options,
) -> Result<CopyResponse> {
    let mut writer = CopyWriter::new(options.clone());
    let mut messages = Vec::new();
    writer.header(schema);
    for batch in batches {
        writer.rows(batch, &mut messages)?;
    }
    messages.extend(writer.finish());
    let format = match options.format {
        Format::Binary => 1,
        _ => 0,
    };
    Ok(CopyResponse::new(
        format,
        schema.fields().len(),
        stream::iter(messages.into_iter().map(Ok)),
    ))
}

/// Writes rows as COPY data, a message per row.
pub struct CopyWriter {
    options: Options,
    /// What goes in front of the next row: the header, until a row takes
    /// it.
    pending: BytesMut,
    value: String,
}

impl CopyWriter {
    pub fn new(options: Options) -> Self {
        CopyWriter {
            options,
            pending: BytesMut::new(),
            value: String::new(),
        }
    }

    /// The binary signature, or a line of column names if asked for.
    pub fn header(&mut self, schema: &SchemaRef) {
        let options = &self.options;
        if options.format == Format::Binary {
            self.pending.extend_from_slice(SIGNATURE);
            self.pending.put_i32(0);
            self.pending.put_i32(0);
            return;
        }
        if !options.header {
            return;
        }
        let mut line = Vec::new();
        for (i, f) in schema.fields().iter().enumerate() {
            if i > 0 {
                line.push(options.delimiter);
            }
            match options.format {
                Format::Csv => escape_csv(f.name(), options.delimiter, &options.null, &mut line),
                _ => escape_text(f.name(), options.delimiter, &mut line),
            }
        }
        line.push(b'\n');
        self.pending.extend_from_slice(&line);
    }

    /// A message per row of `batch`.
    pub fn rows(&mut self, batch: &RecordBatch, out: &mut Vec<CopyData>) -> Result<()> {
        let options = &self.options;
        let nulls: Vec<_> = batch.columns().iter().map(|c| c.logical_nulls()).collect();
        for row in 0..batch.num_rows() {
            let mut message = self.pending.split();
            if options.format == Format::Binary {
                message.put_i16(batch.num_columns() as i16);
            }
            for (i, (array, nulls)) in batch.columns().iter().zip(&nulls).enumerate() {
                let null = nulls.as_ref().is_some_and(|n| n.is_null(row));
                if options.format == Format::Binary {
                    if null {
                        message.put_i32(-1);
                        continue;
                    }
                    let at = message.len();
                    message.put_i32(0);
                    write_binary(array, row, &mut message)?;
                    let len = (message.len() - at - 4) as i32;
                    message[at..at + 4].copy_from_slice(&len.to_be_bytes());
                    continue;
                }
                if i > 0 {
                    message.put_u8(options.delimiter);
                }
                if null {
                    message.extend_from_slice(options.null.as_bytes());
                    continue;
                }
                self.value.clear();
                write_text(array, row, &mut self.value)?;
                let mut field = Vec::new();
                match options.format {
                    Format::Csv => {
                        escape_csv(&self.value, options.delimiter, &options.null, &mut field)
                    }
                    _ => escape_text(&self.value, options.delimiter, &mut field),
                }
                message.extend_from_slice(&field);
            }
            if options.format != Format::Binary {
                message.put_u8(b'\n');
            }
            out.push(CopyData::new(message.freeze()));
        }
        Ok(())
    }

    /// The header, if no row took it (no rows at all).
    pub fn finish(mut self) -> Option<CopyData> {
        (!self.pending.is_empty()).then(|| CopyData::new(self.pending.split().freeze()))
    }
}

/// Binary COPY data (`PGCOPY`) as rows of the given types.
pub fn copy_in_binary(data: &[u8], types: &[DataType]) -> Result<RecordBatch> {
    let bad = |what: &str| {
        Error::user(
            sqlstate::DATA_EXCEPTION,
            format!("COPY binary data: {what}"),
        )
    };
    if !data.starts_with(SIGNATURE) || data.len() < SIGNATURE.len() + 8 {
        return Err(bad("the file's signature is missing"));
    }
    let mut at = SIGNATURE.len() + 4;
    let extension = u32::from_be_bytes(data[at..at + 4].try_into().expect("4 bytes")) as usize;
    at += 4 + extension;
    let pg_types: Vec<_> = types.iter().map(pg_type).collect();
    let mut columns: Vec<Vec<ScalarValue>> = vec![Vec::new(); types.len()];
    let mut row = 0;
    loop {
        let count = data
            .get(at..at + 2)
            .map(|b| i16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| bad("it ends without its trailer"))?;
        at += 2;
        if count == -1 {
            break;
        }
        row += 1;
        if count as usize != types.len() {
            return Err(bad(&format!(
                "row {row} has {count} fields, the table takes {}",
                types.len()
            )));
        }
        for (i, target) in types.iter().enumerate() {
            let len = data
                .get(at..at + 4)
                .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or_else(|| bad(&format!("row {row} ends early")))?;
            at += 4;
            let value = if len < 0 {
                None
            } else {
                let end = at + len as usize;
                let bytes = data
                    .get(at..end)
                    .ok_or_else(|| bad(&format!("row {row} ends early")))?;
                at = end;
                Some(bytes)
            };
            let decoded = decode_parameter(value, true, &pg_types[i], Some(target))
                .map_err(|e| e.context(format!("COPY binary data, row {row}")))?;
            columns[i].push(decoded);
        }
    }
    let arrays = columns
        .into_iter()
        .zip(types)
        .map(|(values, t)| {
            if values.is_empty() {
                Ok(arrow::array::new_empty_array(t))
            } else {
                ScalarValue::iter_to_array(values)
            }
        })
        .collect::<datafusion::common::Result<Vec<_>>>()?;
    let fields: Vec<Field> = arrays
        .iter()
        .enumerate()
        .map(|(i, a)| Field::new(format!("c{i}"), a.data_type().clone(), true))
        .collect();
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int32Array, StringArray};
    use futures::StreamExt;

    fn rows() -> (SchemaRef, RecordBatch) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int32, true),
            Field::new("name", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int32Array::from(vec![Some(1), None])),
                Arc::new(StringArray::from(vec![Some("a\tb"), Some("x,y")])),
            ],
        )
        .unwrap();
        (schema, batch)
    }

    async fn data(response: CopyResponse) -> Vec<u8> {
        let mut out = Vec::new();
        let mut s = response.data_stream;
        while let Some(d) = s.next().await {
            out.extend_from_slice(&d.unwrap().data);
        }
        out
    }

    #[tokio::test]
    async fn text_csv_and_binary_round_trip() {
        let (schema, batch) = rows();
        let options = |format, delimiter: u8, null: &str, header| Options {
            format,
            delimiter,
            header,
            null: null.to_string(),
        };
        let text = data(
            copy_out(
                &schema,
                std::slice::from_ref(&batch),
                &options(Format::Text, b'\t', "\\N", false),
            )
            .unwrap(),
        )
        .await;
        assert_eq!(text, b"1\ta\\tb\n\\N\tx,y\n");
        let csv = data(
            copy_out(
                &schema,
                std::slice::from_ref(&batch),
                &options(Format::Csv, b',', "", true),
            )
            .unwrap(),
        )
        .await;
        assert_eq!(csv, b"id,name\n1,a\tb\n,\"x,y\"\n");
        let binary = data(
            copy_out(
                &schema,
                &[batch],
                &options(Format::Binary, b'\t', "", false),
            )
            .unwrap(),
        )
        .await;
        let back = copy_in_binary(&binary, &[DataType::Int32, DataType::Utf8]).unwrap();
        assert_eq!(
            back.column(0).as_ref(),
            &Int32Array::from(vec![Some(1), None]) as &dyn Array
        );
        assert_eq!(
            back.column(1).as_ref(),
            &StringArray::from(vec!["a\tb", "x,y"]) as &dyn Array
        );
    }
}
