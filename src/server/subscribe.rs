//! `SUBSCRIBE TO view`: the view's rows streamed to the client as its
//! checkpoints commit them, first those it has, then each new one, until
//! the client goes away.
//!
//! The rows travel as `COPY ... TO STDOUT` data in Postgres's text format
//! (tab-separated, `\N` for null), which psql prints as it arrives and
//! every driver can read as a stream (tokio-postgres' `copy_out`, psycopg's
//! `copy`). Each line starts with the change's operation, then the view's
//! columns: `insert` for views whose rows never change once shown; for
//! views whose rows change, `upsert` (the row of a key is now this one:
//! first every row the view has, then each change as it commits) and
//! `delete` (the key's row is gone; the line has the key's columns, the
//! others are null), as Materialize's upsert envelope. Changes are those
//! between two checkpoints: a row added and deleted in between shows only
//! as its delete.

use std::collections::VecDeque;
use std::time::Duration;

use std::fmt::Debug;

use arrow::array::RecordBatch;
use bytes::Bytes;
use futures::{Sink, SinkExt};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::copy::{CopyData, CopyOutResponse};
use pgwire::messages::PgWireBackendMessage;

use arrow::array::ArrayRef;
use arrow::datatypes::SchemaRef;

use crate::server::encode::write_text;
use crate::session::Subscription;
use crate::state::view::{Feed, KeyedChanges};

/// How often a subscription that has caught up looks for new rows.
const POLL: Duration = Duration::from_millis(50);
/// Streams the subscription to the client as COPY data, flushing each
/// round's lines, until sending fails (the client has gone) or the
/// statement is cancelled (pgwire then drops this future). Never returns
/// Ok: the statement has no end.
pub async fn stream<C>(client: &mut C, sub: Subscription) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    // The operation, then the view's columns, all text.
    let columns = sub.schema.fields().len() + 1;
    client
        .send(PgWireBackendMessage::CopyOutResponse(CopyOutResponse::new(
            0,
            columns as i16,
            vec![0; columns],
        )))
        .await?;
    let mut next = vec![0; sub.shards];
    let mut lines: VecDeque<Bytes> = VecDeque::new();
    if let Feed::Changes(changes) = &sub.feed {
        // Every row the view has, then its changes after them.
        for (shard, next) in next.iter_mut().enumerate() {
            *next = changes
                .snapshot(shard, |c| push_changes(&c, &sub.schema, &mut lines))
                .map_err(super::handler::user_error)?;
        }
    }
    loop {
        match &sub.feed {
            Feed::Appends(log) => log.read_turn(&mut next, |_, _, batch| {
                push_lines("insert", &batch, 0..batch.num_rows(), &mut lines)
            }),
            Feed::Changes(changes) => changes.read_turn(&mut next, |_, _, c| {
                push_changes(&c, &sub.schema, &mut lines)
            }),
        }
        .map_err(super::handler::user_error)?;
        if lines.is_empty() {
            tokio::time::sleep(POLL).await;
            continue;
        }
        while let Some(line) = lines.pop_front() {
            client
                .feed(PgWireBackendMessage::CopyData(CopyData::new(line)))
                .await?;
        }
        client.flush().await?;
    }
}

/// A line per row `rows` of `batch`: the operation, then its values.
fn push_lines(
    op: &str,
    batch: &RecordBatch,
    rows: impl Iterator<Item = usize>,
    lines: &mut VecDeque<Bytes>,
) -> crate::error::Result<()> {
    let columns: Vec<Option<&ArrayRef>> = batch.columns().iter().map(Some).collect();
    for row in rows {
        lines.push_back(line(op, &columns, row)?);
    }
    Ok(())
}

/// A line per change: `upsert` and the new row, or `delete` and the key's
/// columns among the view's (the others null).
fn push_changes(
    changes: &KeyedChanges,
    schema: &SchemaRef,
    lines: &mut VecDeque<Bytes>,
) -> crate::error::Result<()> {
    let key_columns: Vec<Option<&ArrayRef>> = schema
        .fields()
        .iter()
        .map(|f| {
            changes
                .keys
                .schema()
                .index_of(f.name())
                .ok()
                .map(|i| changes.keys.column(i))
        })
        .collect();
    let row_columns: Vec<Option<&ArrayRef>> = changes.rows.columns().iter().map(Some).collect();
    for (i, at) in changes.rows_at.iter().enumerate() {
        lines.push_back(match at {
            Some(row) => line("upsert", &row_columns, *row)?,
            None => line("delete", &key_columns, i)?,
        });
    }
    Ok(())
}

/// One COPY text line: the operation, then row `row` of each column (null
/// where there is no column).
fn line(op: &str, columns: &[Option<&ArrayRef>], row: usize) -> crate::error::Result<Bytes> {
    let mut line = String::from(op);
    for column in columns {
        line.push('\t');
        match column {
            Some(c) if !c.is_null(row) => {
                let mut text = String::new();
                write_text(c, row, &mut text)?;
                escape(&text, &mut line);
            }
            _ => line.push_str("\\N"),
        }
    }
    line.push('\n');
    Ok(Bytes::from(line))
}

/// COPY text format: backslash, tab, newline and carriage return escaped.
fn escape(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}
