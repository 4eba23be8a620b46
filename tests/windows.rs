//! Every window kind and spelling against DataFusion's batch answer.
//!
//! Property: for any order of events whose disorder stays below the
//! watermark delay (so no row is late), a streaming window view equals the
//! batch GROUP BY over the same rows; and with late rows, it equals the batch
//! GROUP BY over the rows that were not late, where DataFusion judges
//! lateness itself: each row's watermark is the largest event time before it
//! (a window function over the file's order) minus the delay, and a row
//! misses a window whose end - 1 ms that watermark has reached (for
//! sessions, its own window `[ts, ts + gap)`). Each case draws a random stream (row
//! count, pace, disorder, delay, window sizes and offset) from a seed, writes
//! it to a file read as one split, creates TUMBLE, HOP, CUMULATE and SESSION
//! views in both the TVF and Flink's group-window spelling, and compares each
//! with DataFusion computing the windows its own way: `date_bin` and a cross
//! join with the window numbers; for sessions, `LAG` over each cell's rows in
//! time order. Views over views are in each case too: HOP windows over a
//! view that renames the event time, and 2× TUMBLE windows over the final
//! rows of a TUMBLE view (Flink's cascading windows), whose batch answer is
//! DataFusion's GROUP BY over its GROUP BY.

mod common;

use std::io::Write as _;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Array, StringArray, TimestampMillisecondArray};
use arrow::record_batch::RecordBatch;
use common::{batch_rows, execute, rows, wait_finished, TestServer};
use datafusion::prelude::SessionContext;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const BASE_MS: i64 = 1_704_067_200_000; // 2024-01-01 00:00:00 UTC
const CASES: u64 = 8;

struct Event {
    ts: i64,
    cell: String,
    status: &'static str,
    duration: i32,
}

/// One drawn case: the stream and the windows over it.
struct Case {
    events: Vec<Event>,
    /// Watermark delay; 0 means `WATERMARK FOR ts AS ts` over strictly
    /// ascending times.
    delay_s: i64,
    tumble_s: i64,
    tumble_offset_s: i64,
    slide_s: i64,
    hop_s: i64,
    step_s: i64,
    cumulate_s: i64,
    gap_ms: i64,
}

/// A random case; with `late`, about 5% of the rows come far behind.
fn draw(seed: u64, late: bool) -> Case {
    let mut rng = StdRng::seed_from_u64(seed);
    let delay_s = if late {
        [2, 5][rng.random_range(0..2)]
    } else {
        [0, 2, 5][rng.random_range(0..3)]
    };
    let disorder_ms = if delay_s == 0 {
        0
    } else {
        rng.random_range(0..delay_s * 1000)
    };
    let n = rng.random_range(200..1500);
    let pace_ms = rng.random_range(1..300);
    // About a cell's mean spacing (5 cells, pace / 2 per row): some
    // sessions of one row, some long.
    let gap_ms = (pace_ms * rng.random_range(1..6)).max(20);
    let statuses = ["ok", "ok", "dropped", "failed"];
    let mut t = BASE_MS + rng.random_range(0..10_000);
    let mut events = Vec::with_capacity(n);
    for _ in 0..n {
        // Strictly ascending without delay; else anywhere in the disorder.
        t += if delay_s == 0 {
            rng.random_range(1..=pace_ms)
        } else {
            rng.random_range(0..=pace_ms)
        };
        let behind = if late && rng.random_range(0..100) < 5 {
            // Far behind, or just behind the watermark: within a gap of
            // it, a row may reach into a session that has just fired.
            delay_s * 1000
                + if rng.random_bool(0.5) {
                    rng.random_range(0..20_000)
                } else {
                    rng.random_range(0..2 * gap_ms)
                }
        } else {
            rng.random_range(0..=disorder_ms)
        };
        events.push(Event {
            ts: t - behind,
            cell: format!("cell-{}", rng.random_range(0..5)),
            status: statuses[rng.random_range(0..statuses.len())],
            duration: rng.random_range(0..10_000),
        });
    }
    let slide_s = [1, 2, 5][rng.random_range(0..3)];
    let step_s = [1, 2, 5][rng.random_range(0..3)];
    let tumble_s = [1, 2, 5, 10][rng.random_range(0..4)];
    Case {
        events,
        delay_s,
        tumble_s,
        tumble_offset_s: rng.random_range(0..tumble_s),
        slide_s,
        hop_s: slide_s * rng.random_range(2..5),
        step_s,
        cumulate_s: step_s * rng.random_range(2..5),
        gap_ms,
    }
}

const AGGREGATES: &str =
    "COUNT(*) AS calls, SUM(duration_ms) AS total_ms, MIN(duration_ms) AS min_ms, \
                          MAX(duration_ms) AS max_ms, COUNT(DISTINCT status) AS statuses";

/// A view of a case and the DataFusion queries of its answer and of its
/// count of late rows.
struct CaseView {
    name: String,
    sql: String,
    batch: String,
    late: String,
    /// The view it reads, for a view over a view.
    reads: Option<String>,
}

/// The views of a case, upstream views before the views over them.
fn views(case: &Case, source: &str, late: bool) -> Vec<CaseView> {
    let Case {
        tumble_s,
        tumble_offset_s,
        slide_s,
        hop_s,
        step_s,
        cumulate_s,
        gap_ms,
        ..
    } = *case;
    let iv = |s: i64| format!("INTERVAL '{s}' SECOND");
    let tvf = |name: &str, call: String| {
        (
            format!("{source}_{name}"),
            format!(
                "CREATE MATERIALIZED VIEW {source}_{name} AS
                 SELECT window_start, window_end, cell_id, {AGGREGATES}
                 FROM TABLE({call}) GROUP BY window_start, window_end, cell_id"
            ),
        )
    };
    let legacy = |name: &str, kind: &str, args: String, emit: &str| {
        (
            format!("{source}_{name}"),
            format!(
                "CREATE MATERIALIZED VIEW {source}_{name} AS
                 SELECT {kind}_START({args}) AS window_start, {kind}_END({args}) AS window_end,
                        cell_id, {AGGREGATES}
                 FROM {source} GROUP BY {kind}({args}), cell_id {emit}"
            ),
        )
    };
    // Each row with the watermark before it: the largest event time of the
    // rows before it in the file, minus the delay.
    let delay_ms = case.delay_s * 1000;
    let rows = format!(
        "(SELECT t, ts, seq, cell_id, status, duration_ms,
                 MAX(t - {delay_ms}) OVER (ORDER BY seq ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS wm
          FROM (SELECT CAST(ts AS BIGINT) AS t, ts, seq, cell_id, status, duration_ms FROM events) e)"
    );
    // Batch: each row crossed with window numbers k; a window is kept when
    // it contains the row and had not fired before it. Returns the answer
    // and the number of rows that missed a window.
    let batch = |start: String, end: String, ks: std::ops::Range<i64>| {
        let ks: Vec<String> = ks.map(|k| format!("({k})")).collect();
        let windows = format!(
            "(SELECT {start} AS ws, {end} AS we, t, wm, seq, cell_id, status, duration_ms
              FROM {rows} r CROSS JOIN (VALUES {}) AS v(k)) w",
            ks.join(", ")
        );
        (
            format!(
                "SELECT ws, we, cell_id, {AGGREGATES} FROM {windows}
                 WHERE ws <= t AND t < we AND (wm IS NULL OR we - 1 > wm)
                 GROUP BY ws, we, cell_id ORDER BY 1, 2, 3"
            ),
            format!(
                "SELECT COUNT(DISTINCT seq) FROM {windows}
                 WHERE ws <= t AND t < we AND wm IS NOT NULL AND we - 1 <= wm"
            ),
        )
    };
    let bin = |size_s: i64, origin_s: i64| {
        format!(
            "(to_unixtime(date_bin(INTERVAL '{size_s} seconds', ts, to_timestamp_seconds({origin_s}))) * 1000)"
        )
    };
    let tumble_batch = |offset_s: i64| {
        batch(
            bin(tumble_s, offset_s),
            format!("{} + {}", bin(tumble_s, offset_s), tumble_s * 1000),
            0..1,
        )
    };
    let hop_batch = batch(
        format!("{} - k * {}", bin(slide_s, 0), slide_s * 1000),
        format!(
            "{} - k * {} + {}",
            bin(slide_s, 0),
            slide_s * 1000,
            hop_s * 1000
        ),
        0..hop_s / slide_s,
    );
    let cumulate_batch = batch(
        bin(cumulate_s, 0),
        format!("{} + k * {}", bin(cumulate_s, 0), step_s * 1000),
        1..cumulate_s / step_s + 1,
    );
    // Sessions by definition: per cell, in time order, a row more than the
    // gap after the previous one starts a new session.
    // Of the rows that were not late (their own window [t, t + gap) had not
    // fired).
    let on_time = format!("wm IS NULL OR t + {gap_ms} - 1 > wm");
    let session_batch = (
        format!(
            "SELECT MIN(t) AS ws, MAX(t) + {gap_ms} AS we, cell_id, {AGGREGATES} FROM (
               SELECT t, cell_id, status, duration_ms,
                      SUM(CASE WHEN prev IS NULL OR t - prev >= {gap_ms} THEN 1 ELSE 0 END)
                        OVER (PARTITION BY cell_id ORDER BY t ROWS UNBOUNDED PRECEDING) AS sid
               FROM (SELECT t, cell_id, status, duration_ms,
                            LAG(t) OVER (PARTITION BY cell_id ORDER BY t) AS prev
                     FROM {rows} r WHERE {on_time}) e) s
             GROUP BY cell_id, sid ORDER BY 1, 2, 3"
        ),
        format!("SELECT COUNT(*) FROM {rows} r WHERE NOT ({on_time})"),
    );
    let gap = format!("INTERVAL '{gap_ms}' MILLISECOND");
    let with = |(name, sql): (String, String), (batch, late): (String, String)| CaseView {
        name,
        sql,
        batch,
        late,
        reads: None,
    };
    // Views over views, read from the committed log of the view below them
    // while it runs. A view without aggregation passes late rows on, and
    // whether they are late for the windows of the view over it depends on
    // when the one below committed: only without late rows is that view's
    // answer the batch one. Cascading windows are deterministic: final 10 s
    // rows per cell, then twice as long windows over their window_time.
    let mut over_views = Vec::new();
    if !late {
        over_views.push(CaseView {
            name: format!("{source}_pass"),
            sql: format!(
                "CREATE MATERIALIZED VIEW {source}_pass AS
                 SELECT cell_id, status, duration_ms, ts AS call_time FROM {source}"
            ),
            batch: String::new(),
            late: String::new(),
            reads: None,
        });
        let (batch, late) = hop_batch.clone();
        over_views.push(CaseView {
            name: format!("{source}_pass_hop"),
            sql: format!(
                "CREATE MATERIALIZED VIEW {source}_pass_hop AS
                 SELECT window_start, window_end, cell_id, {AGGREGATES}
                 FROM TABLE(HOP(TABLE {source}_pass, DESCRIPTOR(call_time), {}, {}))
                 GROUP BY window_start, window_end, cell_id",
                iv(slide_s),
                iv(hop_s)
            ),
            batch,
            late,
            reads: Some(format!("{source}_pass")),
        });
    }
    let (inner, _) = tumble_batch(0);
    let outer_ms = 2 * tumble_s * 1000;
    over_views.push(CaseView {
        name: format!("{source}_final"),
        sql: format!(
            "CREATE MATERIALIZED VIEW {source}_final AS
             SELECT window_start AS ws, window_time AS rowtime, cell_id, {AGGREGATES}
             FROM TABLE(TUMBLE(TABLE {source}, DESCRIPTOR(ts), {}))
             GROUP BY window_start, window_end, cell_id EMIT ON WINDOW CLOSE",
            iv(tumble_s)
        ),
        batch: String::new(),
        late: String::new(),
        reads: None,
    });
    over_views.push(CaseView {
        name: format!("{source}_cascade"),
        sql: format!(
            "CREATE MATERIALIZED VIEW {source}_cascade AS
             SELECT window_start, window_end, cell_id, SUM(calls) AS calls,
                    SUM(total_ms) AS total_ms, MIN(min_ms) AS min_ms, MAX(max_ms) AS max_ms,
                    MAX(statuses) AS statuses
             FROM TABLE(TUMBLE(TABLE {source}_final, DESCRIPTOR(rowtime), {}))
             GROUP BY window_start, window_end, cell_id",
            iv(2 * tumble_s)
        ),
        batch: format!(
            "SELECT ows, owe, cell_id, SUM(calls), SUM(total_ms), MIN(min_ms),
                    MAX(max_ms), MAX(statuses)
             FROM (SELECT (we - 1) - ((we - 1) % {outer_ms}) AS ows,
                          (we - 1) - ((we - 1) % {outer_ms}) + {outer_ms} AS owe, * FROM ({inner}) i) o
             GROUP BY ows, owe, cell_id ORDER BY 1, 2, 3"
        ),
        // The rows late for the view below it; none for it.
        late: "SELECT 0".to_string(),
        reads: Some(format!("{source}_final")),
    });
    let mut all = vec![
        with(
            tvf(
                "tumble",
                format!(
                    "TUMBLE(TABLE {source}, DESCRIPTOR(ts), {}, {})",
                    iv(tumble_s),
                    iv(tumble_offset_s)
                ),
            ),
            tumble_batch(tumble_offset_s),
        ),
        with(
            legacy(
                "tumble_legacy",
                "TUMBLE",
                format!("ts, {}", iv(tumble_s)),
                "",
            ),
            tumble_batch(0),
        ),
        with(
            tvf(
                "hop",
                format!(
                    "HOP(TABLE {source}, DESCRIPTOR(ts), {}, {})",
                    iv(slide_s),
                    iv(hop_s)
                ),
            ),
            hop_batch.clone(),
        ),
        with(
            legacy(
                "hop_legacy",
                "HOP",
                format!("ts, {}, {}", iv(slide_s), iv(hop_s)),
                "EMIT ON WINDOW CLOSE",
            ),
            hop_batch,
        ),
        with(
            tvf(
                "cumulate",
                format!(
                    "CUMULATE(TABLE {source}, DESCRIPTOR(ts), {}, {})",
                    iv(step_s),
                    iv(cumulate_s)
                ),
            ),
            cumulate_batch,
        ),
        with(
            tvf(
                "session",
                format!("SESSION(TABLE {source} PARTITION BY cell_id, DESCRIPTOR(ts), {gap})"),
            ),
            session_batch.clone(),
        ),
        with(
            legacy(
                "session_legacy",
                "SESSION",
                format!("ts, {gap}"),
                "EMIT ON WINDOW CLOSE",
            ),
            session_batch.clone(),
        ),
        // In-progress sessions shown every 5 ms: those merged into others
        // since must not stay behind.
        with(
            legacy(
                "session_every",
                "SESSION",
                format!("ts, {gap}"),
                "EMIT EVERY INTERVAL '5' MILLISECOND",
            ),
            session_batch,
        ),
    ];
    all.extend(over_views);
    all
}

fn batch_of(events: &[Event]) -> RecordBatch {
    RecordBatch::try_from_iter(vec![
        (
            "seq",
            Arc::new(arrow::array::Int64Array::from_iter_values(
                0..events.len() as i64,
            )) as ArrayRef,
        ),
        (
            "ts",
            Arc::new(TimestampMillisecondArray::from(
                events.iter().map(|e| e.ts).collect::<Vec<_>>(),
            )) as ArrayRef,
        ),
        (
            "cell_id",
            Arc::new(StringArray::from(
                events.iter().map(|e| e.cell.as_str()).collect::<Vec<_>>(),
            )) as _,
        ),
        (
            "status",
            Arc::new(StringArray::from(
                events.iter().map(|e| e.status).collect::<Vec<_>>(),
            )) as _,
        ),
        (
            "duration_ms",
            Arc::new(Int32Array::from(
                events.iter().map(|e| e.duration).collect::<Vec<_>>(),
            )) as _,
        ),
    ])
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_disorder_below_the_delay_every_window_kind_equals_the_batch_answer() {
    every_window_kind_equals_the_batch_answer(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_late_rows_every_window_kind_equals_the_batch_answer_over_rows_on_time() {
    every_window_kind_equals_the_batch_answer(true).await;
}

async fn every_window_kind_equals_the_batch_answer(late: bool) {
    let tmp = tempfile::tempdir().unwrap();
    // Small batches and frequent watermarks: the aggregation sees rows and
    // watermarks interleaved in ever different ways, as a live stream would
    // show them.
    let server = TestServer::start_in(
        &tmp.path().join("data"),
        &[
            "--parallelism",
            "2",
            "--batch-size",
            "16",
            "--flush-interval",
            "1ms",
            // Views over views read what the views below them committed:
            // frequent commits make them read while those still run.
            "--checkpoint-interval",
            "50ms",
        ],
    );
    let client = server.client().await;
    let mut late_seen = 0;
    for seed in 0..CASES {
        let case = draw(seed + if late { 1000 } else { 0 }, late);
        let path = tmp.path().join(format!("case{seed}.json"));
        let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        for e in &case.events {
            writeln!(
                file,
                r#"{{"event_time": {}, "cell_id": "{}", "status": "{}", "duration_ms": {}}}"#,
                e.ts, e.cell, e.status, e.duration
            )
            .unwrap();
        }
        file.flush().unwrap();
        drop(file);
        let source = format!("c{seed}");
        let watermark = match case.delay_s {
            0 => "ts".to_string(),
            d => format!("ts - INTERVAL '{d}' SECOND"),
        };
        execute(
            &client,
            &format!(
                "CREATE TABLE {source} (event_time BIGINT, cell_id STRING, status STRING, duration_ms INT,
                   ts AS TO_TIMESTAMP_LTZ(event_time, 3), WATERMARK FOR ts AS {watermark})
                 WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json')",
                path.display()
            ),
        )
        .await;
        let ctx = SessionContext::new();
        ctx.register_batch("events", batch_of(&case.events))
            .unwrap();
        let views = views(&case, &source, late);
        for v in &views {
            execute(&client, &v.sql).await;
        }
        for v in views.iter().filter(|v| !v.batch.is_empty()) {
            let (name, batch_sql, late_sql) = (&v.name, &v.batch, &v.late);
            wait_finished(&client, name).await;
            // What it read: the source's rows, or every row of the view
            // below it.
            let read = match &v.reads {
                None => case.events.len().to_string(),
                Some(below) => {
                    rows(&client, &format!("SELECT COUNT(*) FROM {below}")).await[0][0].clone()
                }
            };
            let counted = rows(
                &client,
                &format!("SELECT late_rows, rows_in FROM sluice.jobs WHERE name = '{name}'"),
            )
            .await;
            let late_rows = batch_rows(&ctx, late_sql).await[0][0].clone();
            if !late {
                assert_eq!(
                    late_rows, "0",
                    "case {seed} {name}: no late rows in the batch"
                );
            }
            late_seen += late_rows.parse::<usize>().unwrap();
            assert_eq!(
                counted,
                vec![vec![late_rows, read]],
                "case {seed} {name}: every row read, the late ones counted"
            );
            let actual = rows(
                &client,
                &format!(
                    "SELECT CAST(window_start AS BIGINT), CAST(window_end AS BIGINT), cell_id, \
                     calls, total_ms, min_ms, max_ms, statuses FROM {name} ORDER BY 1, 2, 3"
                ),
            )
            .await;
            let expected = batch_rows(&ctx, batch_sql).await;
            assert!(
                expected.len() >= 5 && expected[0][0].parse::<i64>().unwrap() > BASE_MS - 60_000,
                "case {seed} {name}: the batch answer has windows in ms: {:?} (the view's: {:?})",
                expected.first(),
                actual.first()
            );
            if actual != expected {
                let only = |a: &[Vec<String>], b: &[Vec<String>]| {
                    a.iter()
                        .filter(|r| !b.contains(r))
                        .take(5)
                        .cloned()
                        .collect::<Vec<_>>()
                };
                panic!(
                    "case {seed} {name} (delay {} s): {} rows, batch {}\n  only in the view: {:?}\n  only in batch: {:?}",
                    case.delay_s,
                    actual.len(),
                    expected.len(),
                    only(&actual, &expected),
                    only(&expected, &actual)
                );
            }
        }
    }
    if late {
        assert!(
            late_seen > 100,
            "the late cases have late rows: {late_seen}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processing_time_windows_close_on_the_clock() {
    let server = TestServer::start();
    let client = server.client().await;
    execute(
        &client,
        "CREATE TABLE gen (cell_id STRING, duration_ms INT, pt AS PROCTIME())
         WITH ('connector' = 'datagen', 'rows-per-second' = '2000', 'number-of-rows' = '12000')",
    )
    .await;
    let before = chrono::Utc::now().timestamp_millis();
    execute(
        &client,
        "CREATE MATERIALIZED VIEW per_second AS
         SELECT window_start, window_end, COUNT(*) AS calls
         FROM TABLE(TUMBLE(TABLE gen, DESCRIPTOR(pt), INTERVAL '1' SECOND))
         GROUP BY window_start, window_end EMIT ON WINDOW CLOSE",
    )
    .await;
    // The source runs about 6 s: windows close on the clock meanwhile, not
    // only when it ends.
    common::wait_until(
        std::time::Duration::from_secs(10),
        "a closed window while the source runs",
        || async {
            let r = rows(
                &client,
                "SELECT (SELECT COUNT(*) FROM per_second), status FROM sluice.jobs WHERE name = 'per_second'",
            )
            .await;
            assert_ne!(r[0][1], "finished", "no window closed before the end");
            r[0][0] != "0"
        },
    )
    .await;
    wait_finished(&client, "per_second").await;
    let after = chrono::Utc::now().timestamp_millis();
    let windows = rows(
        &client,
        "SELECT CAST(window_start AS BIGINT), CAST(window_end AS BIGINT), calls FROM per_second ORDER BY 1",
    )
    .await;
    let mut total = 0;
    for w in &windows {
        let (start, end, calls): (i64, i64, i64) = (
            w[0].parse().unwrap(),
            w[1].parse().unwrap(),
            w[2].parse().unwrap(),
        );
        assert_eq!(start % 1000, 0, "{w:?}");
        assert_eq!(end - start, 1000, "{w:?}");
        assert!(
            start >= before - 1000 && end <= after + 1000,
            "{w:?} outside [{before}, {after}]"
        );
        total += calls;
    }
    let jobs = rows(
        &client,
        "SELECT rows_in, late_rows, bad_rows FROM sluice.jobs WHERE name = 'per_second'",
    )
    .await;
    assert_eq!(jobs, vec![vec!["12000", "0", "0"]], "no row is late");
    assert_eq!(total, 12000, "every row in exactly one window: {windows:?}");
    assert!(
        windows.len() >= 3,
        "the rows span several seconds: {windows:?}"
    );
}
