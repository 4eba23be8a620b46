//! What operators send each other (DESIGN §2).

use arrow::record_batch::RecordBatch;

#[derive(Debug, Clone)]
pub enum Message {
    /// Rows (or, between the two phases of an aggregation, partial states).
    Batch(RecordBatch),
    /// Every row with event time <= this (ms since the epoch) has been sent.
    /// `i64::MAX` ends the stream.
    Watermark(i64),
    /// The sender has no active input for now: it must not hold back the
    /// watermark of operators downstream until it sends again.
    Idle,
    /// Everything before this belongs to checkpoint epoch N; everything
    /// after, to the next (see `checkpoint.rs`).
    Barrier(u64),
}

/// A message on an exchange, tagged with the instance that sent it.
#[derive(Debug)]
pub struct Envelope {
    pub from: usize,
    pub message: Message,
}
