//! Window math: which windows an event time belongs to, and which of them a
//! watermark has already fired (DESIGN §3). Pure functions; times are
//! milliseconds since the epoch, windows half-open `[start, end)`.

/// A window definition of a view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    /// `TUMBLE(size, offset)`: start = ts - floormod(ts - offset, size).
    Tumble { size: i64, offset: i64 },
    /// `HOP(slide, size, offset)`: every start s ≡ offset (mod slide) with
    /// s <= ts < s + size.
    Hop { slide: i64, size: i64, offset: i64 },
    /// `CUMULATE(step, size, offset)`: the tumbling window of `size`
    /// containing ts, cut into `[start, start + k·step)`, k = 1..size/step;
    /// a row belongs to each of them that contains it.
    Cumulate { step: i64, size: i64, offset: i64 },
    /// `SESSION(gap)`: a row opens `[ts, ts + gap)`; the aggregation merges
    /// the overlapping windows of a key into sessions (see `session.rs`).
    Session { gap: i64 },
}

/// Floor modulo: the result has the sign of `b` (so negative times work).
pub fn floor_mod(a: i64, b: i64) -> i64 {
    a.rem_euclid(b)
}

impl WindowKind {
    pub fn size(&self) -> i64 {
        match self {
            WindowKind::Tumble { size, .. }
            | WindowKind::Hop { size, .. }
            | WindowKind::Cumulate { size, .. } => *size,
            WindowKind::Session { gap } => *gap,
        }
    }

    /// The kind's SQL name.
    pub fn name(&self) -> &'static str {
        match self {
            WindowKind::Tumble { .. } => "TUMBLE",
            WindowKind::Hop { .. } => "HOP",
            WindowKind::Cumulate { .. } => "CUMULATE",
            WindowKind::Session { .. } => "SESSION",
        }
    }

    /// Whether every window has the same size, so its end follows from its
    /// start (not so for CUMULATE and SESSION).
    pub fn fixed_size(&self) -> bool {
        !matches!(
            self,
            WindowKind::Cumulate { .. } | WindowKind::Session { .. }
        )
    }

    /// The most windows one row can belong to.
    pub fn max_windows_per_row(&self) -> usize {
        match self {
            WindowKind::Tumble { .. } | WindowKind::Session { .. } => 1,
            WindowKind::Hop { slide, size, .. } => (size + slide - 1).div_euclid(*slide) as usize,
            WindowKind::Cumulate { step, size, .. } => (size + step - 1).div_euclid(*step) as usize,
        }
    }

    /// Calls `f(start, end)` for every window containing `ts`, latest start
    /// first (for CUMULATE, whose windows share a start: latest end first).
    #[inline]
    pub fn for_each_window(&self, ts: i64, mut f: impl FnMut(i64, i64)) {
        match *self {
            WindowKind::Tumble { size, offset } => {
                let start = ts - floor_mod(ts - offset, size);
                f(start, start + size);
            }
            WindowKind::Session { gap } => f(ts, ts.saturating_add(gap)),
            WindowKind::Hop {
                slide,
                size,
                offset,
            } => {
                let mut start = ts - floor_mod(ts - offset, slide);
                while start > ts - size {
                    f(start, start + size);
                    start -= slide;
                }
            }
            WindowKind::Cumulate { step, size, offset } => {
                let start = ts - floor_mod(ts - offset, size);
                // The first end after ts, then every step up to the size.
                let first = start + (ts - start).div_euclid(step) * step + step;
                let mut end = start + size;
                while end >= first {
                    f(start, end);
                    end -= step;
                }
            }
        }
    }

    /// A description for EXPLAIN: `TUMBLE(size=60000 ms)`.
    pub fn describe(&self) -> String {
        match self {
            WindowKind::Tumble { size, offset } if *offset == 0 => {
                format!("TUMBLE(size={})", fmt_ms(*size))
            }
            WindowKind::Tumble { size, offset } => {
                format!("TUMBLE(size={}, offset={})", fmt_ms(*size), fmt_ms(*offset))
            }
            WindowKind::Hop {
                slide,
                size,
                offset,
            } if *offset == 0 => format!("HOP(slide={}, size={})", fmt_ms(*slide), fmt_ms(*size)),
            WindowKind::Hop {
                slide,
                size,
                offset,
            } => format!(
                "HOP(slide={}, size={}, offset={})",
                fmt_ms(*slide),
                fmt_ms(*size),
                fmt_ms(*offset)
            ),
            WindowKind::Session { gap } => format!("SESSION(gap={})", fmt_ms(*gap)),
            WindowKind::Cumulate { step, size, offset } if *offset == 0 => {
                format!("CUMULATE(step={}, size={})", fmt_ms(*step), fmt_ms(*size))
            }
            WindowKind::Cumulate { step, size, offset } => format!(
                "CUMULATE(step={}, size={}, offset={})",
                fmt_ms(*step),
                fmt_ms(*size),
                fmt_ms(*offset)
            ),
        }
    }
}

/// Formats milliseconds in the largest whole unit: `5 s`, `1 min`, `250 ms`.
pub fn fmt_ms(ms: i64) -> String {
    const UNITS: [(i64, &str); 5] = [
        (86_400_000, "d"),
        (3_600_000, "h"),
        (60_000, "min"),
        (1_000, "s"),
        (1, "ms"),
    ];
    for (unit, name) in UNITS {
        if ms != 0 && ms % unit == 0 {
            return format!("{} {name}", ms / unit);
        }
    }
    format!("{ms} ms")
}

/// Whether a window ending at `end` has fired under watermark `wm`: every row
/// with ts <= wm has arrived, so [start, end) is complete when wm >= end - 1.
#[inline]
pub fn has_fired(end: i64, wm: i64) -> bool {
    wm != i64::MIN && end.saturating_sub(1) <= wm
}

/// The windows of a batch of rows, each judged for lateness on its own.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// For each output row, the input row it comes from.
    pub rows: Vec<u32>,
    pub starts: Vec<i64>,
    pub ends: Vec<i64>,
    /// Rows dropped because their window had fired: (row, window start,
    /// window end, the watermark it was judged by).
    pub late: Vec<(u32, i64, i64, i64)>,
}

/// Assigns the windows of rows with event times `ts`, in split order.
/// `watermark_values[i]` is the watermark row i makes (its watermark
/// expression); `running` is the split's watermark before the first row and
/// is advanced past every row. With `lateness` (the allowed lateness, ms), a
/// row's window is late when the watermark made by the rows before it (an
/// exclusive running max) fired it more than that long ago, so the result
/// never depends on how rows are batched.
pub fn assign_windows(
    kind: &WindowKind,
    ts: &[i64],
    watermark_values: &[i64],
    running: &mut i64,
    lateness: Option<i64>,
    out: &mut Assignment,
) {
    out.rows.clear();
    out.starts.clear();
    out.ends.clear();
    out.late.clear();
    for (i, (&t, &w)) in ts.iter().zip(watermark_values).enumerate() {
        let (before, allowed) = match lateness {
            Some(ms) => (*running, ms),
            None => (i64::MIN, 0),
        };
        kind.for_each_window(t, |start, end| {
            if has_fired(end.saturating_add(allowed), before) {
                out.late.push((i as u32, start, end, before));
            } else {
                out.rows.push(i as u32);
                out.starts.push(start);
                out.ends.push(end);
            }
        });
        if w > *running {
            *running = w;
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn windows(kind: WindowKind, ts: i64) -> Vec<(i64, i64)> {
        let mut v = Vec::new();
        kind.for_each_window(ts, |s, e| v.push((s, e)));
        v
    }

    #[test]
    fn tumble_handles_negative_times_and_offsets() {
        let k = WindowKind::Tumble {
            size: 10,
            offset: 0,
        };
        assert_eq!(windows(k, 0), vec![(0, 10)]);
        assert_eq!(windows(k, 9), vec![(0, 10)]);
        assert_eq!(windows(k, 10), vec![(10, 20)]);
        assert_eq!(windows(k, -1), vec![(-10, 0)]);
        let k = WindowKind::Tumble {
            size: 10,
            offset: 3,
        };
        assert_eq!(windows(k, 2), vec![(-7, 3)]);
        assert_eq!(windows(k, 3), vec![(3, 13)]);
    }

    #[test]
    fn hop_windows_latest_first() {
        let k = WindowKind::Hop {
            slide: 5,
            size: 15,
            offset: 0,
        };
        assert_eq!(windows(k, 12), vec![(10, 25), (5, 20), (0, 15)]);
        assert_eq!(k.max_windows_per_row(), 3);
    }

    #[test]
    fn lateness_uses_the_watermark_before_each_row() {
        let k = WindowKind::Tumble {
            size: 10,
            offset: 0,
        };
        // Watermark = ts - 2. Row 2 (ts 25) makes wm 23, firing [10, 20);
        // row 3 (ts 15) is then late; row 1 (ts 19) was not.
        let ts = [5, 19, 25, 15, 20];
        let wm: Vec<i64> = ts.iter().map(|t| t - 2).collect();
        let mut running = i64::MIN;
        let mut out = Assignment::default();
        assign_windows(&k, &ts, &wm, &mut running, Some(0), &mut out);
        assert_eq!(out.rows, vec![0, 1, 2, 4]);
        assert_eq!(out.late, vec![(3, 10, 20, 23)]);
        assert_eq!(running, 23);
        // Allowed 5 ms late, [10, 20) takes rows until wm 24: row 3 counts;
        // allowed 4 ms, until wm 23 (excluded): it does not.
        let mut running = i64::MIN;
        assign_windows(&k, &ts, &wm, &mut running, Some(5), &mut out);
        assert_eq!(out.rows, vec![0, 1, 2, 3, 4]);
        assert!(out.late.is_empty());
        let mut running = i64::MIN;
        assign_windows(&k, &ts, &wm, &mut running, Some(4), &mut out);
        assert_eq!(out.late, vec![(3, 10, 20, 23)]);
    }

    #[test]
    fn cumulate_windows_share_their_start() {
        let k = WindowKind::Cumulate {
            step: 10,
            size: 30,
            offset: 0,
        };
        assert_eq!(windows(k, 0), vec![(0, 30), (0, 20), (0, 10)]);
        assert_eq!(windows(k, 12), vec![(0, 30), (0, 20)]);
        assert_eq!(windows(k, 29), vec![(0, 30)]);
        assert_eq!(windows(k, 30), vec![(30, 60), (30, 50), (30, 40)]);
        assert_eq!(windows(k, -1), vec![(-30, 0)]);
        assert_eq!(k.max_windows_per_row(), 3);
    }

    fn brute_force(kind: WindowKind, ts: i64) -> Vec<(i64, i64)> {
        if let WindowKind::Cumulate { step, size, offset } = kind {
            // Every window [s, s + k·step) with s ≡ offset (mod size).
            let mut v = Vec::new();
            for s in ts - 2 * size..=ts {
                if floor_mod(s - offset, size) != 0 {
                    continue;
                }
                for k in 1..=size / step {
                    if s <= ts && ts < s + k * step {
                        v.push((s, s + k * step));
                    }
                }
            }
            v.sort_by(|a, b| b.cmp(a));
            return v;
        }
        let (slide, size, offset) = match kind {
            WindowKind::Tumble { size, offset } => (size, size, offset),
            WindowKind::Hop {
                slide,
                size,
                offset,
            } => (slide, size, offset),
            WindowKind::Cumulate { .. } | WindowKind::Session { .. } => unreachable!(),
        };
        let mut v: Vec<(i64, i64)> = (ts - size - 2 * slide..=ts + slide)
            .filter(|s| floor_mod(s - offset, slide) == 0 && *s <= ts && ts < s + size)
            .map(|s| (s, s + size))
            .collect();
        v.sort_by(|a, b| b.cmp(a));
        v
    }

    proptest! {
        #[test]
        fn windows_contain_ts_and_match_the_definition(
            ts in -10_000i64..10_000,
            slide in 1i64..50,
            mult in 1i64..5,
            extra in 0i64..3,
            offset in -100i64..100,
        ) {
            let hop = WindowKind::Hop { slide, size: slide * mult + extra, offset };
            prop_assert_eq!(windows(hop, ts), brute_force(hop, ts));
            let tumble = WindowKind::Tumble { size: slide * mult, offset };
            prop_assert_eq!(windows(tumble, ts), brute_force(tumble, ts));
            let cumulate = WindowKind::Cumulate { step: slide, size: slide * mult, offset };
            prop_assert_eq!(windows(cumulate, ts), brute_force(cumulate, ts));
        }

        #[test]
        fn batching_does_not_change_lateness(
            ts in proptest::collection::vec(0i64..1000, 1..200),
            cut in 0usize..200,
        ) {
            let k = WindowKind::Hop { slide: 20, size: 60, offset: 0 };
            let wm: Vec<i64> = ts.iter().map(|t| t - 30).collect();
            let mut whole = Assignment::default();
            let mut running = i64::MIN;
            assign_windows(&k, &ts, &wm, &mut running, Some(0), &mut whole);
            let cut = cut.min(ts.len());
            let mut running2 = i64::MIN;
            let mut a = Assignment::default();
            let mut b = Assignment::default();
            assign_windows(&k, &ts[..cut], &wm[..cut], &mut running2, Some(0), &mut a);
            assign_windows(&k, &ts[cut..], &wm[cut..], &mut running2, Some(0), &mut b);
            prop_assert_eq!(running, running2);
            prop_assert_eq!(whole.rows.len(), a.rows.len() + b.rows.len());
            prop_assert_eq!(whole.late.len(), a.late.len() + b.late.len());
            let joined: Vec<i64> = a.starts.iter().chain(b.starts.iter()).copied().collect();
            prop_assert_eq!(whole.starts, joined);
        }
    }
}
