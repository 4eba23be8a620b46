//! `SUBSCRIBE TO view` as a COPY stream: the subscription's changes
//! (`crate::subscription`) as `COPY ... TO STDOUT` data in Postgres's text
//! format (tab-separated, `\N` for null), which psql prints as it arrives
//! and every driver can read as a stream (tokio-postgres' `copy_out`,
//! psycopg's `copy`). Each line starts with the change's operation
//! (`insert`, `upsert` or `delete`), then the view's columns.

use std::fmt::Debug;
use std::time::Duration;

use futures::{Sink, SinkExt};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::copy::CopyOutResponse;
use pgwire::messages::PgWireBackendMessage;

use super::copy::CopyWriter;
use crate::copy::{Format, Options};
use crate::subscription::{ChangeReader, Subscription};

/// How often a subscription that has caught up looks for new rows.
pub const POLL: Duration = Duration::from_millis(50);

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
    let mut reader = ChangeReader::new(sub);
    let columns = reader.schema().fields().len();
    client
        .send(PgWireBackendMessage::CopyOutResponse(CopyOutResponse::new(
            0,
            columns as i16,
            vec![0; columns],
        )))
        .await?;
    let mut writer = CopyWriter::new(Options {
        format: Format::Text,
        delimiter: b'\t',
        header: false,
        null: "\\N".into(),
    });
    let mut lines = Vec::new();
    loop {
        let batches = reader.poll().map_err(super::handler::user_error)?;
        if batches.is_empty() {
            tokio::time::sleep(POLL).await;
            continue;
        }
        for batch in &batches {
            writer
                .rows(batch, &mut lines)
                .map_err(super::handler::user_error)?;
        }
        for line in lines.drain(..) {
            client.feed(PgWireBackendMessage::CopyData(line)).await?;
        }
        client.flush().await?;
    }
}
