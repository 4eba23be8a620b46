//! `SUBSCRIBE TO view`: the view's rows streamed to the client as its
//! checkpoints commit them, first those it has, then each new one, until
//! the client goes away.
//!
//! The rows travel as `COPY ... TO STDOUT` data in Postgres's text format
//! (tab-separated, `\N` for null), which psql prints as it arrives and
//! every driver can read as a stream (tokio-postgres' `copy_out`, psycopg's
//! `copy`). Each line starts with the change's operation: `insert` (the
//! views that can be subscribed to only add rows, for now).

use std::collections::VecDeque;
use std::time::Duration;

use std::fmt::Debug;

use arrow::array::RecordBatch;
use bytes::Bytes;
use futures::{Sink, SinkExt};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::copy::{CopyData, CopyOutResponse};
use pgwire::messages::PgWireBackendMessage;

use crate::server::encode::write_text;
use crate::session::Subscription;

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
    loop {
        sub.log
            .read_turn(&mut next, |_, batch| push_lines(&batch, &mut lines))
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

/// A line per row of `batch`: the operation, then its values.
fn push_lines(batch: &RecordBatch, lines: &mut VecDeque<Bytes>) -> crate::error::Result<()> {
    for row in 0..batch.num_rows() {
        let mut line = String::from("insert");
        for column in batch.columns() {
            line.push('\t');
            if column.is_null(row) {
                line.push_str("\\N");
            } else {
                let mut text = String::new();
                write_text(column, row, &mut text)?;
                escape(&text, &mut line);
            }
        }
        line.push('\n');
        lines.push_back(Bytes::from(line));
    }
    Ok(())
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
