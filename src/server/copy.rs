//! COPY's data on the wire: rows out in text, CSV or Postgres's binary
//! format (one CopyData message per row), and binary rows in.

use std::sync::Arc;

use arrow::array::{Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use bytes::{BufMut, Bytes, BytesMut};
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
    let columns = schema.fields().len();
    let mut messages: Vec<CopyData> = Vec::new();
    let mut line: Vec<u8> = Vec::new();
    let mut value = String::new();
    if options.header && options.format != Format::Binary {
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
    }
    let mut binary = BytesMut::new();
    if options.format == Format::Binary {
        binary.extend_from_slice(SIGNATURE);
        binary.put_i32(0);
        binary.put_i32(0);
    }
    for batch in batches {
        let nulls: Vec<_> = batch.columns().iter().map(|c| c.logical_nulls()).collect();
        for row in 0..batch.num_rows() {
            match options.format {
                Format::Binary => {
                    binary.put_i16(columns as i16);
                    for (array, nulls) in batch.columns().iter().zip(&nulls) {
                        if nulls.as_ref().is_some_and(|n| n.is_null(row)) {
                            binary.put_i32(-1);
                            continue;
                        }
                        let at = binary.len();
                        binary.put_i32(0);
                        write_binary(array, row, &mut binary)?;
                        let len = (binary.len() - at - 4) as i32;
                        binary[at..at + 4].copy_from_slice(&len.to_be_bytes());
                    }
                    messages.push(CopyData::new(binary.split().freeze()));
                }
                Format::Text | Format::Csv => {
                    for (i, (array, nulls)) in batch.columns().iter().zip(&nulls).enumerate() {
                        if i > 0 {
                            line.push(options.delimiter);
                        }
                        if nulls.as_ref().is_some_and(|n| n.is_null(row)) {
                            line.extend_from_slice(options.null.as_bytes());
                            continue;
                        }
                        value.clear();
                        write_text(array, row, &mut value)?;
                        match options.format {
                            Format::Csv => {
                                escape_csv(&value, options.delimiter, &options.null, &mut line)
                            }
                            _ => escape_text(&value, options.delimiter, &mut line),
                        }
                    }
                    line.push(b'\n');
                    messages.push(CopyData::new(Bytes::from(std::mem::take(&mut line))));
                }
            }
        }
    }
    if !binary.is_empty() {
        // No rows: the header alone.
        messages.push(CopyData::new(binary.freeze()));
    }
    if !line.is_empty() {
        // No rows: the header line alone.
        messages.push(CopyData::new(Bytes::from(line)));
    }
    let format = match options.format {
        Format::Binary => 1,
        _ => 0,
    };
    Ok(CopyResponse::new(
        format,
        columns,
        stream::iter(messages.into_iter().map(Ok)),
    ))
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
