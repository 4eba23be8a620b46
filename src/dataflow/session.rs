//! Session windows: how a partition's sessions merge (DESIGN §3).
//!
//! A row at `ts` opens the window `[ts, ts + gap)`; windows of one partition
//! that overlap merge into one session `[first ts, last ts + gap)`, so two
//! rows closer than `gap` share a session and a row can bridge two sessions
//! into one. A session fires when the watermark reaches its end - 1 ms; a
//! row whose own window has fired is late. The sessions are those of all
//! rows that are not late: a row that is not late but reaches into a fired
//! session joins it and updates it (Flink would start a new session, which
//! makes its answer depend on timing).
//!
//! The live sessions of a partition are one value in the state table: this
//! module encodes them and merges new windows into them. Pure functions.

use arrow::array::{ArrayRef, TimestampMillisecondArray};
use arrow::datatypes::Schema;

use crate::dataflow::plan::SessionGroups;
use crate::error::{Error, Result};

/// A live session: its window and its encoded aggregate state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub start: i64,
    pub end: i64,
    pub state: Box<[u8]>,
}

/// Encodes a partition's sessions: per session its start, end, state length
/// (big endian) and state.
pub fn encode(sessions: &[Session]) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(sessions.iter().map(|s| 20 + s.state.len()).sum::<usize>() + 1);
    for s in sessions {
        out.extend_from_slice(&s.start.to_be_bytes());
        out.extend_from_slice(&s.end.to_be_bytes());
        out.extend_from_slice(&(s.state.len() as u32).to_be_bytes());
        out.extend_from_slice(&s.state);
    }
    out
}

pub fn decode(mut bytes: &[u8]) -> Result<Vec<Session>> {
    let corrupt = || Error::internal("a stored session list is corrupt");
    let mut out = Vec::new();
    while !bytes.is_empty() {
        if bytes.len() < 20 {
            return Err(corrupt());
        }
        let start = i64::from_be_bytes(bytes[..8].try_into().expect("8 bytes"));
        let end = i64::from_be_bytes(bytes[8..16].try_into().expect("8 bytes"));
        let len = u32::from_be_bytes(bytes[16..20].try_into().expect("4 bytes")) as usize;
        let state = bytes.get(20..20 + len).ok_or_else(corrupt)?;
        out.push(Session {
            start,
            end,
            state: Box::from(state),
        });
        bytes = &bytes[20 + len..];
    }
    Ok(out)
}

/// Where the windows of a merge went.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Merged {
    /// The resulting sessions' windows, by start.
    pub windows: Vec<(i64, i64)>,
    /// For each existing session, its resulting session.
    pub existing: Vec<usize>,
    /// For each new window, its resulting session.
    pub incoming: Vec<usize>,
}

/// Merges new windows into a partition's existing (disjoint) sessions:
/// windows that overlap, directly or through others, become one session.
pub fn merge(existing: &[(i64, i64)], incoming: &[(i64, i64)]) -> Merged {
    // (start, end, existing?, index), by start.
    let mut all: Vec<(i64, i64, bool, usize)> = existing
        .iter()
        .enumerate()
        .map(|(i, w)| (w.0, w.1, true, i))
        .chain(
            incoming
                .iter()
                .enumerate()
                .map(|(i, w)| (w.0, w.1, false, i)),
        )
        .collect();
    all.sort_unstable();
    let mut out = Merged {
        windows: Vec::new(),
        existing: vec![0; existing.len()],
        incoming: vec![0; incoming.len()],
    };
    for (start, end, is_existing, index) in all {
        match out.windows.last_mut() {
            // Overlapping: [a, b) and [start, end) with start < b.
            Some(last) if start < last.1 => last.1 = last.1.max(end),
            _ => out.windows.push((start, end)),
        }
        let at = out.windows.len() - 1;
        if is_existing {
            out.existing[index] = at;
        } else {
            out.incoming[index] = at;
        }
    }
    out
}

/// The group columns of sessions of `windows`: their start, end and time
/// columns from the windows, every other (partition) column `i` from
/// `partition(i)`.
pub fn group_columns(
    schema: &Schema,
    groups: &SessionGroups,
    windows: &[(i64, i64)],
    mut partition: impl FnMut(usize) -> Result<ArrayRef>,
) -> Result<Vec<ArrayRef>> {
    let mut columns = Vec::with_capacity(schema.fields().len());
    for (i, field) in schema.fields().iter().enumerate() {
        let ms: Option<Vec<i64>> = if i == groups.start {
            Some(windows.iter().map(|w| w.0).collect())
        } else if i == groups.end {
            Some(windows.iter().map(|w| w.1).collect())
        } else if Some(i) == groups.time {
            Some(windows.iter().map(|w| w.1 - 1).collect())
        } else {
            None
        };
        columns.push(match ms {
            Some(ms) => {
                arrow::compute::cast(&TimestampMillisecondArray::from(ms), field.data_type())?
            }
            None => partition(i)?,
        });
    }
    Ok(columns)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_row_bridges_two_sessions() {
        // Sessions [0, 10) and [20, 30); a row at 8 with gap 15 spans both.
        let m = merge(&[(0, 10), (20, 30)], &[(8, 23)]);
        assert_eq!(m.windows, vec![(0, 30)]);
        assert_eq!(m.existing, vec![0, 0]);
        assert_eq!(m.incoming, vec![0]);
        // Touching is not overlapping: rows exactly gap apart stay apart.
        let m = merge(&[(0, 10)], &[(10, 20), (35, 45)]);
        assert_eq!(m.windows, vec![(0, 10), (10, 20), (35, 45)]);
        assert_eq!(m.incoming, vec![1, 2]);
    }

    #[test]
    fn sessions_survive_encoding() {
        let sessions = vec![
            Session {
                start: -5,
                end: 10,
                state: Box::from(&b"abc"[..]),
            },
            Session {
                start: 20,
                end: 30,
                state: Box::from(&b""[..]),
            },
        ];
        assert_eq!(decode(&encode(&sessions)).unwrap(), sessions);
        assert!(decode(&[1, 2, 3]).is_err());
    }

    /// Sessions by definition: sort all row times, cut where the next is
    /// at least `gap` after the previous.
    fn by_definition(times: &[i64], gap: i64) -> Vec<(i64, i64)> {
        let mut t = times.to_vec();
        t.sort_unstable();
        let mut out: Vec<(i64, i64)> = Vec::new();
        for ts in t {
            match out.last_mut() {
                Some(last) if ts < last.1 => last.1 = last.1.max(ts + gap),
                _ => out.push((ts, ts + gap)),
            }
        }
        out
    }

    proptest! {
        #[test]
        fn merging_in_any_pieces_gives_the_sessions_of_all_rows(
            times in proptest::collection::vec(0i64..500, 1..60),
            gap in 1i64..40,
            cuts in proptest::collection::vec(0usize..60, 0..5),
        ) {
            // Feed the rows in pieces, merging each into what came before.
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(times.len())).collect();
            cuts.push(times.len());
            cuts.sort_unstable();
            let mut sessions: Vec<(i64, i64)> = Vec::new();
            let mut from = 0;
            for cut in cuts {
                let piece: Vec<(i64, i64)> = times[from..cut].iter().map(|t| (*t, t + gap)).collect();
                from = cut;
                let m = merge(&sessions, &piece);
                for (i, w) in sessions.iter().enumerate() {
                    let into = m.windows[m.existing[i]];
                    prop_assert!(into.0 <= w.0 && w.1 <= into.1);
                }
                sessions = m.windows;
            }
            prop_assert_eq!(sessions, by_definition(&times, gap));
        }
    }
}
