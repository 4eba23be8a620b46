//! Cursors, as Postgres and Materialize have them: `DECLARE c CURSOR FOR
//! query`, then `FETCH` and `MOVE` through its rows, `CLOSE`; and
//! `DECLARE c CURSOR FOR SUBSCRIBE view`, whose `FETCH` hands out the
//! view's changes as they commit, for drivers that cannot read the COPY
//! stream a plain `SUBSCRIBE` is (JDBC, node-postgres).
//!
//! A query cursor holds its rows (a query's result is computed whole, as
//! for any query); it moves both ways. A subscription cursor reads on as
//! it is fetched from: forward only; `FETCH` waits until there is a row,
//! or for `WITH (timeout = '1s')` at most that long.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use arrow::array::{RecordBatch, UInt32Array};
use arrow::compute::{concat_batches, take_record_batch};
use arrow::datatypes::SchemaRef;

use crate::error::{Error, Result};
use crate::frontend::parser::Direction;
use crate::subscription::ChangeReader;

/// How often a FETCH from a subscription that has caught up looks again.
const POLL: Duration = Duration::from_millis(50);

pub struct Cursor {
    /// The DECLARE statement (for `pg_cursors`).
    pub statement: String,
    /// `WITH HOLD`: it outlives the transaction that declared it.
    pub hold: bool,
    /// Whether the open transaction block declared it (ROLLBACK closes it).
    pub in_block: bool,
    rows: Rows,
}

enum Rows {
    /// A query's rows, and where the cursor stands: 0 before the first,
    /// `n + 1` after the last, else on row `position` (from 1).
    Query { rows: RecordBatch, position: usize },
    Subscribe {
        reader: ChangeReader,
        /// Rows read from the subscription and not yet fetched.
        pending: VecDeque<RecordBatch>,
    },
}

impl Cursor {
    pub fn query(
        statement: String,
        schema: &SchemaRef,
        batches: &[RecordBatch],
        hold: bool,
        in_block: bool,
    ) -> Result<Cursor> {
        Ok(Cursor {
            statement,
            hold,
            in_block,
            rows: Rows::Query {
                rows: concat_batches(schema, batches)?,
                position: 0,
            },
        })
    }

    pub fn subscribe(
        statement: String,
        reader: ChangeReader,
        hold: bool,
        in_block: bool,
    ) -> Cursor {
        Cursor {
            statement,
            hold,
            in_block,
            rows: Rows::Subscribe {
                reader,
                pending: VecDeque::new(),
            },
        }
    }

    /// Whether it moves backward too (a query's rows).
    pub fn scrollable(&self) -> bool {
        matches!(self.rows, Rows::Query { .. })
    }

    pub fn schema(&self) -> SchemaRef {
        match &self.rows {
            Rows::Query { rows, .. } => rows.schema(),
            Rows::Subscribe { reader, .. } => reader.schema().clone(),
        }
    }

    /// Moves as `direction` says; returns the rows it moved over, in the
    /// order it met them (FETCH returns them; MOVE counts them).
    pub async fn fetch(
        &mut self,
        direction: Direction,
        timeout: Option<Duration>,
    ) -> Result<RecordBatch> {
        match &mut self.rows {
            Rows::Query { rows, position } => {
                let (indices, next) = moves(*position, rows.num_rows(), direction);
                *position = next;
                let indices = UInt32Array::from(indices);
                Ok(take_record_batch(rows, &indices)?)
            }
            Rows::Subscribe { reader, pending } => {
                let limit = match direction {
                    Direction::Forward(limit) => limit,
                    _ => {
                        return Err(Error::user(
                            "55000",
                            "a cursor of a subscription can only fetch forward",
                        ))
                    }
                };
                fetch_changes(reader, pending, limit, timeout).await
            }
        }
    }
}

/// Up to `limit` rows of a subscription (all there are, if None): waits
/// until there is one, or `timeout` has passed.
async fn fetch_changes(
    reader: &mut ChangeReader,
    pending: &mut VecDeque<RecordBatch>,
    limit: Option<u64>,
    timeout: Option<Duration>,
) -> Result<RecordBatch> {
    let schema = reader.schema().clone();
    let deadline = timeout.map(|t| Instant::now() + t);
    let mut out: Vec<RecordBatch> = Vec::new();
    let mut taken: u64 = 0;
    loop {
        pending.extend(reader.poll()?);
        while let Some(batch) = pending.pop_front() {
            let room = limit.map(|l| l - taken).unwrap_or(u64::MAX);
            if room == 0 {
                pending.push_front(batch);
                break;
            }
            let n = batch.num_rows() as u64;
            if n <= room {
                taken += n;
                out.push(batch);
            } else {
                out.push(batch.slice(0, room as usize));
                pending.push_front(batch.slice(room as usize, (n - room) as usize));
                taken += room;
            }
        }
        let full = limit.is_some_and(|l| taken >= l);
        let expired = deadline.is_some_and(|d| Instant::now() >= d);
        if taken > 0 || full || expired {
            return Ok(concat_batches(&schema, &out)?);
        }
        tokio::time::sleep(match deadline {
            Some(d) => POLL.min(d.saturating_duration_since(Instant::now())),
            None => POLL,
        })
        .await;
    }
}

/// Where a move from `position` over `n` rows goes: the rows it passes
/// (0-based indices, in the order met) and the new position, by Postgres's
/// rules (a move that runs out of rows ends before the first or after the
/// last).
fn moves(position: usize, n: usize, direction: Direction) -> (Vec<u32>, usize) {
    let on = |row: usize| (vec![row as u32 - 1], row);
    match direction {
        // A count of 0 fetches the current row again.
        Direction::Forward(Some(0)) | Direction::Backward(Some(0)) => {
            moves(position, n, Direction::Relative(0))
        }
        Direction::Forward(limit) => {
            let start = position.min(n);
            let wanted = limit.map(|l| l as usize).unwrap_or(usize::MAX);
            let end = start.saturating_add(wanted).min(n);
            let rows: Vec<u32> = (start..end).map(|i| i as u32).collect();
            let next = if rows.len() < wanted {
                n + 1
            } else {
                start + wanted
            };
            (rows, next)
        }
        Direction::Backward(limit) => {
            let start = position.min(n + 1);
            let wanted = limit.map(|l| l as usize).unwrap_or(usize::MAX);
            // Rows start - 1 down to 1, at most `wanted`.
            let rows: Vec<u32> = (1..start)
                .rev()
                .take(wanted)
                .map(|r| r as u32 - 1)
                .collect();
            let next = if rows.len() < wanted {
                0
            } else {
                start - wanted
            };
            (rows, next)
        }
        Direction::Absolute(k) => {
            let target = if k >= 0 {
                k as i128
            } else {
                n as i128 + 1 + k as i128
            };
            match target {
                t if t < 1 => (Vec::new(), 0),
                t if t > n as i128 => (Vec::new(), n + 1),
                t => on(t as usize),
            }
        }
        Direction::Relative(0) => match position {
            p if (1..=n).contains(&p) => on(p),
            p => (Vec::new(), p),
        },
        Direction::Relative(k) => {
            let target = position as i128 + k as i128;
            match target {
                t if t < 1 => (Vec::new(), 0),
                t if t > n as i128 => (Vec::new(), n + 1),
                t => on(t as usize),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Direction::*;

    #[test]
    fn moves_follow_postgres() {
        // Five rows, from before the first.
        assert_eq!(moves(0, 5, Forward(Some(2))), (vec![0, 1], 2));
        assert_eq!(moves(2, 5, Forward(None)), (vec![2, 3, 4], 6));
        assert_eq!(moves(6, 5, Forward(Some(1))), (vec![], 6));
        assert_eq!(moves(6, 5, Backward(Some(2))), (vec![4, 3], 4));
        assert_eq!(moves(2, 5, Backward(Some(5))), (vec![0], 0));
        assert_eq!(moves(3, 5, Absolute(-1)), (vec![4], 5));
        assert_eq!(moves(3, 5, Absolute(9)), (vec![], 6));
        assert_eq!(moves(3, 5, Relative(0)), (vec![2], 3));
        assert_eq!(moves(3, 5, Relative(-2)), (vec![0], 1));
        assert_eq!(moves(0, 0, Forward(Some(1))), (vec![], 1));
        assert_eq!(moves(3, 5, Forward(Some(0))), (vec![2], 3));
    }
}
