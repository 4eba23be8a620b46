//! Joins of two streams against DataFusion's batch answer.
//!
//! Property: for any two streams whose disorder stays below the watermark
//! delay, an interval join view and a window join view equal the batch join
//! of the same rows; with late rows, they equal the batch join of the rows
//! on time, where DataFusion judges lateness itself: each row's watermark is
//! the largest event time before it in its file minus the delay, an
//! interval join's row is late at or below it, and a window join's row
//! misses each window whose end - 1 ms it has reached. Each case draws two
//! streams (keys, pace, disorder, delay, interval bounds, window sizes) from
//! a seed and writes each to a file.
//!
//! And: a join's state survives SIGKILL. A join killed after checkpoints
//! were committed and started again on the same data directory ends with
//! every pair exactly once.

mod common;

use std::io::Write as _;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Array, Int64Array};
use arrow::record_batch::RecordBatch;
use common::{batch_rows, execute, rows, wait_finished, TestServer};
use datafusion::prelude::SessionContext;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const BASE_MS: i64 = 1_704_067_200_000; // 2024-01-01 00:00:00 UTC
const CASES: u64 = 6;

struct Event {
    ts: i64,
    key: i32,
    value: i32,
}

/// A stream: ascending times with disorder below `delay_s` (and, with
/// `late`, about 5% of rows far behind).
fn stream(rng: &mut StdRng, n: usize, delay_s: i64, keys: i32, late: bool) -> Vec<Event> {
    let pace_ms = rng.random_range(1..200);
    let mut t = BASE_MS + rng.random_range(0..5_000);
    (0..n)
        .map(|_| {
            // Strictly ascending without delay: a row at the watermark is late.
            t += rng.random_range(if delay_s == 0 { 1 } else { 0 }..=pace_ms);
            let behind = if late && rng.random_range(0..100) < 5 {
                delay_s * 1000 + rng.random_range(0..10_000)
            } else if delay_s == 0 {
                0
            } else {
                rng.random_range(0..delay_s * 1000)
            };
            Event {
                ts: t - behind,
                key: rng.random_range(0..keys),
                value: rng.random_range(0..1000),
            }
        })
        .collect()
}

fn write(path: &std::path::Path, events: &[Event]) {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for (seq, e) in events.iter().enumerate() {
        writeln!(
            file,
            r#"{{"seq": {seq}, "event_time": {}, "k": {}, "v": {}}}"#,
            e.ts, e.key, e.value
        )
        .unwrap();
    }
    file.flush().unwrap();
}

fn batch_of(events: &[Event]) -> RecordBatch {
    RecordBatch::try_from_iter(vec![
        (
            "seq",
            Arc::new(Int64Array::from_iter_values(0..events.len() as i64)) as ArrayRef,
        ),
        (
            "t",
            Arc::new(Int64Array::from_iter_values(events.iter().map(|e| e.ts))) as ArrayRef,
        ),
        (
            "k",
            Arc::new(Int32Array::from_iter_values(events.iter().map(|e| e.key))) as ArrayRef,
        ),
        (
            "v",
            Arc::new(Int32Array::from_iter_values(events.iter().map(|e| e.value))) as ArrayRef,
        ),
    ])
    .unwrap()
}

fn source_sql(name: &str, path: &std::path::Path, delay_s: i64) -> String {
    let watermark = match delay_s {
        0 => "ts".to_string(),
        d => format!("ts - INTERVAL '{d}' SECOND"),
    };
    format!(
        "CREATE TABLE {name} (seq BIGINT, event_time BIGINT, k INT, v INT,
           ts AS TO_TIMESTAMP_LTZ(event_time, 3), WATERMARK FOR ts AS {watermark})
         WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json')",
        path.display()
    )
}

/// Each row with the watermark before it (`wm`, NULL for the first).
fn with_watermarks(table: &str, delay_ms: i64) -> String {
    format!(
        "(SELECT seq, t, k, v,
                 MAX(t - {delay_ms}) OVER (ORDER BY seq ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS wm
          FROM {table})"
    )
}

/// The rows that are on time: above the watermark before them.
fn on_time(table: &str, delay_ms: i64) -> String {
    format!(
        "(SELECT * FROM {} x WHERE x.wm IS NULL OR x.t > x.wm)",
        with_watermarks(table, delay_ms)
    )
}

/// The windows of each row that it is on time for: HOP(slide, size) (a
/// TUMBLE when they are equal).
fn windows_on_time(table: &str, delay_ms: i64, slide: i64, size: i64) -> String {
    let ks: Vec<String> = (0..size / slide).map(|k| format!("({k})")).collect();
    format!(
        "(SELECT seq, t, k, v, ws, ws + {size} AS we FROM
           (SELECT seq, t, k, v, wm, t - ((t % {slide}) + {slide}) % {slide} - n * {slide} AS ws
            FROM {} r CROSS JOIN (VALUES {}) AS x(n)) w
         WHERE wm IS NULL OR ws + {size} - 1 > wm)",
        with_watermarks(table, delay_ms),
        ks.join(", ")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_disorder_below_the_delay_joins_equal_the_batch_join() {
    joins_equal_the_batch_join(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_late_rows_joins_equal_the_batch_join_of_rows_on_time() {
    joins_equal_the_batch_join(true).await;
}

async fn joins_equal_the_batch_join(late: bool) {
    let tmp = tempfile::tempdir().unwrap();
    // Small batches and frequent watermarks: rows of the two sides and the
    // watermarks that let state go interleave in ever different ways.
    let server = TestServer::start_in(
        &tmp.path().join("data"),
        &[
            "--parallelism",
            "2",
            "--batch-size",
            "16",
            "--flush-interval",
            "1ms",
        ],
    );
    let client = server.client().await;
    let mut late_seen = 0;
    let mut pairs_seen = 0;
    for seed in 0..CASES {
        let mut rng = StdRng::seed_from_u64(seed + if late { 500 } else { 0 });
        let delay_s = if late {
            2
        } else {
            [0, 1, 3][rng.random_range(0..3)]
        };
        let keys = rng.random_range(3..30);
        let (n_left, n_right) = (rng.random_range(200..1200), rng.random_range(200..1200));
        let left = stream(&mut rng, n_left, delay_s, keys, late);
        let right = stream(&mut rng, n_right, delay_s, keys, late);
        let (a, b) = (format!("a{seed}"), format!("b{seed}"));
        for (name, events) in [(&a, &left), (&b, &right)] {
            let path = tmp.path().join(format!("{name}.json"));
            write(&path, events);
            execute(&client, &source_sql(name, &path, delay_s)).await;
        }
        let ctx = SessionContext::new();
        ctx.register_batch("l", batch_of(&left)).unwrap();
        ctx.register_batch("r", batch_of(&right)).unwrap();
        let delay_ms = delay_s * 1000;
        // a.ts - b.ts in [lower, upper] ms, written in Flink's two ways.
        let lower_ms = -rng.random_range(0..4_000);
        let upper_ms = rng.random_range(0..4_000);
        let slide = [1_000, 2_000][rng.random_range(0..2)];
        let size = slide * rng.random_range(1..4);
        let pair = "a_seq, b_seq, k, total";
        let (l, r) = (on_time("l", delay_ms), on_time("r", delay_ms));
        let cases = [
            (
                pair,
                format!("ij{seed}"),
                format!(
                    "CREATE MATERIALIZED VIEW ij{seed} AS
                     SELECT a.seq AS a_seq, b.seq AS b_seq, a.k, a.v + b.v AS total, a.ts AS a_time
                     FROM {a} a JOIN {b} b
                       ON a.k = b.k AND a.ts BETWEEN b.ts + INTERVAL '{lower_ms}' MILLISECOND AND b.ts + INTERVAL '{upper_ms}' MILLISECOND"
                ),
                format!(
                    "SELECT a.seq, b.seq, a.k, a.v + b.v FROM {l} a JOIN {r} b
                     ON a.k = b.k AND a.t - b.t BETWEEN {lower_ms} AND {upper_ms}"
                ),
                format!(
                    "SELECT (SELECT COUNT(*) FROM {} x WHERE x.t <= x.wm) + (SELECT COUNT(*) FROM {} y WHERE y.t <= y.wm)",
                    with_watermarks("l", delay_ms),
                    with_watermarks("r", delay_ms)
                ),
            ),
            (
                pair,
                format!("ijw{seed}"),
                // The WHERE form, with a condition on the pair besides.
                format!(
                    "CREATE MATERIALIZED VIEW ijw{seed} AS
                     SELECT a.seq AS a_seq, b.seq AS b_seq, a.k, a.v + b.v AS total
                     FROM {a} a, {b} b
                     WHERE a.k = b.k AND b.ts >= a.ts - INTERVAL '{upper_ms}' MILLISECOND
                       AND b.ts - INTERVAL '{}' MILLISECOND < a.ts AND a.v > b.v",
                    -lower_ms + 1
                ),
                format!(
                    "SELECT a.seq, b.seq, a.k, a.v + b.v FROM {l} a JOIN {r} b
                     ON a.k = b.k AND a.t - b.t BETWEEN {lower_ms} AND {upper_ms}
                     WHERE a.v > b.v"
                ),
                String::new(),
            ),
            (
                "a_seq, b_seq, k, total, ws",
                format!("wj{seed}"),
                format!(
                    "CREATE MATERIALIZED VIEW wj{seed} AS
                     SELECT a.seq AS a_seq, b.seq AS b_seq, a.k, a.v + b.v AS total,
                            CAST(a.window_start AS BIGINT) AS ws, a.window_time AS pair_time
                     FROM (SELECT * FROM TABLE(HOP(TABLE {a}, DESCRIPTOR(ts), INTERVAL '{slide}' MILLISECOND, INTERVAL '{size}' MILLISECOND))) a
                     JOIN (SELECT * FROM TABLE(HOP(TABLE {b}, DESCRIPTOR(ts), INTERVAL '{slide}' MILLISECOND, INTERVAL '{size}' MILLISECOND))) b
                       ON a.window_start = b.window_start AND a.window_end = b.window_end AND a.k = b.k"
                ),
                format!(
                    "SELECT a.seq, b.seq, a.k, a.v + b.v, a.ws FROM {} a JOIN {} b
                     ON a.k = b.k AND a.ws = b.ws",
                    windows_on_time("l", delay_ms, slide, size),
                    windows_on_time("r", delay_ms, slide, size)
                ),
                String::new(),
            ),
            // Outer joins: rows that meet none show once they can meet
            // none any more, padded with nulls (-1 here).
            (
                pair,
                format!("lij{seed}"),
                format!(
                    "CREATE MATERIALIZED VIEW lij{seed} AS
                     SELECT a.seq AS a_seq, COALESCE(b.seq, -1) AS b_seq, a.k, COALESCE(a.v + b.v, -1) AS total
                     FROM {a} a LEFT JOIN {b} b
                       ON a.k = b.k AND a.ts BETWEEN b.ts + INTERVAL '{lower_ms}' MILLISECOND AND b.ts + INTERVAL '{upper_ms}' MILLISECOND"
                ),
                format!(
                    "SELECT a.seq, COALESCE(b.seq, -1), a.k, COALESCE(a.v + b.v, -1)
                     FROM {l} a LEFT JOIN {r} b
                     ON a.k = b.k AND a.t - b.t BETWEEN {lower_ms} AND {upper_ms}"
                ),
                String::new(),
            ),
            (
                pair,
                format!("fij{seed}"),
                format!(
                    "CREATE MATERIALIZED VIEW fij{seed} AS
                     SELECT COALESCE(a.seq, -1) AS a_seq, COALESCE(b.seq, -1) AS b_seq,
                            COALESCE(a.k, b.k) AS k, COALESCE(a.v + b.v, -1) AS total
                     FROM {a} a FULL JOIN {b} b
                       ON a.k = b.k AND a.ts BETWEEN b.ts + INTERVAL '{lower_ms}' MILLISECOND AND b.ts + INTERVAL '{upper_ms}' MILLISECOND"
                ),
                format!(
                    "SELECT COALESCE(a.seq, -1), COALESCE(b.seq, -1), COALESCE(a.k, b.k), COALESCE(a.v + b.v, -1)
                     FROM {l} a FULL JOIN {r} b
                     ON a.k = b.k AND a.t - b.t BETWEEN {lower_ms} AND {upper_ms}"
                ),
                String::new(),
            ),
            // Aggregations over the joins, in the same view: an updating
            // one per key, and final rows per window and key.
            (
                "k, pairs, total",
                format!("aij{seed}"),
                format!(
                    "CREATE MATERIALIZED VIEW aij{seed} AS
                     SELECT a.k, COUNT(*) AS pairs, SUM(a.v + b.v) AS total
                     FROM {a} a JOIN {b} b
                       ON a.k = b.k AND a.ts BETWEEN b.ts + INTERVAL '{lower_ms}' MILLISECOND AND b.ts + INTERVAL '{upper_ms}' MILLISECOND
                     GROUP BY a.k"
                ),
                format!(
                    "SELECT a.k, COUNT(*), SUM(a.v + b.v) FROM {l} a JOIN {r} b
                     ON a.k = b.k AND a.t - b.t BETWEEN {lower_ms} AND {upper_ms}
                     GROUP BY a.k"
                ),
                String::new(),
            ),
            (
                "ws, k, pairs, total",
                format!("awj{seed}"),
                format!(
                    "CREATE MATERIALIZED VIEW awj{seed} AS
                     SELECT CAST(a.window_start AS BIGINT) AS ws, a.k, COUNT(*) AS pairs, SUM(a.v + b.v) AS total
                     FROM (SELECT * FROM TABLE(HOP(TABLE {a}, DESCRIPTOR(ts), INTERVAL '{slide}' MILLISECOND, INTERVAL '{size}' MILLISECOND))) a
                     JOIN (SELECT * FROM TABLE(HOP(TABLE {b}, DESCRIPTOR(ts), INTERVAL '{slide}' MILLISECOND, INTERVAL '{size}' MILLISECOND))) b
                       ON a.window_start = b.window_start AND a.window_end = b.window_end AND a.k = b.k
                     GROUP BY a.window_start, a.window_end, a.k EMIT ON WINDOW CLOSE"
                ),
                format!(
                    "SELECT a.ws, a.k, COUNT(*), SUM(a.v + b.v) FROM {} a JOIN {} b
                     ON a.k = b.k AND a.ws = b.ws GROUP BY a.ws, a.k",
                    windows_on_time("l", delay_ms, slide, size),
                    windows_on_time("r", delay_ms, slide, size)
                ),
                String::new(),
            ),
        ];
        for (columns, name, sql, batch, late_sql) in &cases {
            execute(&client, sql).await;
            wait_finished(&client, name).await;
            let actual = rows(
                &client,
                &format!("SELECT {columns} FROM {name} ORDER BY {columns}"),
            )
            .await;
            let order: Vec<String> = (1..=columns.split(',').count())
                .map(|i| i.to_string())
                .collect();
            let order = order.join(", ");
            let expected = batch_rows(&ctx, &format!("{batch} ORDER BY {order}")).await;
            assert!(
                expected.len() >= if name.starts_with("aij") { 3 } else { 20 },
                "case {seed} {name}: the batch answer has pairs: {}",
                expected.len()
            );
            pairs_seen += expected.len();
            if actual != expected {
                let only = |x: &[Vec<String>], y: &[Vec<String>]| {
                    x.iter()
                        .filter(|r| !y.contains(r))
                        .take(5)
                        .cloned()
                        .collect::<Vec<_>>()
                };
                panic!(
                    "case {seed} {name} (delay {delay_s} s, [{lower_ms}, {upper_ms}] ms, hop {slide}/{size}): {} rows, batch {}\n  only in the view: {:?}\n  only in batch: {:?}",
                    actual.len(),
                    expected.len(),
                    only(&actual, &expected),
                    only(&expected, &actual)
                );
            }
            if !late_sql.is_empty() {
                let late_rows = batch_rows(&ctx, late_sql).await[0][0].clone();
                if !late {
                    assert_eq!(late_rows, "0", "case {seed}: no late rows in the batch");
                }
                late_seen += late_rows.parse::<usize>().unwrap();
                let counted = rows(
                    &client,
                    &format!("SELECT late_rows, rows_in FROM sluice.jobs WHERE name = '{name}'"),
                )
                .await;
                assert_eq!(
                    counted,
                    vec![vec![late_rows, (left.len() + right.len()).to_string()]],
                    "case {seed} {name}: every row read, the late ones counted"
                );
            }
        }
        // The state is let go: a view over the join reads its pairs with
        // the join's watermark (window_time is its time attribute).
        let over = format!("wj_count{seed}");
        execute(
            &client,
            &format!(
                "CREATE MATERIALIZED VIEW {over} AS
                 SELECT window_start, window_end, COUNT(*) AS pairs
                 FROM TABLE(TUMBLE(TABLE wj{seed}, DESCRIPTOR(pair_time), INTERVAL '{slide}' MILLISECOND))
                 GROUP BY window_start, window_end EMIT ON WINDOW CLOSE"
            ),
        )
        .await;
        wait_finished(&client, &over).await;
        let counted = rows(
            &client,
            &format!(
                "SELECT SUM(pairs), MAX(late_rows) FROM {over}, sluice.jobs WHERE name = '{over}'"
            ),
        )
        .await;
        let pairs = rows(&client, &format!("SELECT COUNT(*) FROM wj{seed}")).await;
        assert_eq!(
            counted,
            vec![vec![pairs[0][0].clone(), "0".to_string()]],
            "case {seed}: a view over the window join counts every pair, none late"
        );
    }
    assert!(pairs_seen > 1000, "the cases join rows: {pairs_seen}");
    if late {
        assert!(late_seen > 50, "the late cases have late rows: {late_seen}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_killed_and_restarted_ends_with_every_pair_exactly_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut rng = StdRng::seed_from_u64(77);
    let n = 60_000;
    let left = stream(&mut rng, n, 1, 500, false);
    let right = stream(&mut rng, n, 1, 500, false);
    let flags = [
        "--parallelism",
        "2",
        "--batch-size",
        "64",
        "--checkpoint-interval",
        "50ms",
    ];
    let mut server = TestServer::start_in(&dir, &flags);
    let client = server.client().await;
    for (name, events) in [("a", &left), ("b", &right)] {
        let path = tmp.path().join(format!("{name}.json"));
        write(&path, events);
        execute(&client, &source_sql(name, &path, 1)).await;
    }
    execute(
        &client,
        "CREATE MATERIALIZED VIEW pairs AS
         SELECT a.seq AS a_seq, b.seq AS b_seq FROM a JOIN b
           ON a.k = b.k AND a.ts BETWEEN b.ts - INTERVAL '2' SECOND AND b.ts + INTERVAL '1' SECOND",
    )
    .await;
    // An outer join: its rows that met none are saved as such.
    execute(
        &client,
        "CREATE MATERIALIZED VIEW left_pairs AS
         SELECT a.seq AS a_seq, COALESCE(b.seq, -1) AS b_seq FROM a LEFT JOIN b
           ON a.k = b.k AND a.ts BETWEEN b.ts - INTERVAL '2' SECOND AND b.ts + INTERVAL '1' SECOND",
    )
    .await;
    // The same pairs counted per key in the view: the join's instances
    // pass their barriers on to the aggregation's.
    execute(
        &client,
        "CREATE MATERIALIZED VIEW pair_counts AS
         SELECT a.k, COUNT(*) AS pairs FROM a JOIN b
           ON a.k = b.k AND a.ts BETWEEN b.ts - INTERVAL '2' SECOND AND b.ts + INTERVAL '1' SECOND
         GROUP BY a.k",
    )
    .await;
    // Killed while it runs, after some checkpoints.
    common::wait_checkpoints(&client, "pairs", 3).await;
    let before = rows(
        &client,
        "SELECT status, rows_in FROM sluice.jobs WHERE name = 'pairs'",
    )
    .await;
    server.kill();
    assert_eq!(before[0][0], "running", "killed while it ran: {before:?}");
    assert!(
        before[0][1].parse::<usize>().unwrap() < 2 * n,
        "killed before it read everything: {before:?}"
    );
    drop(client);
    let server = TestServer::start_in(&dir, &flags);
    let client = server.client().await;
    wait_finished(&client, "pairs").await;
    wait_finished(&client, "pair_counts").await;
    wait_finished(&client, "left_pairs").await;
    let actual = rows(
        &client,
        "SELECT a_seq, b_seq FROM pairs ORDER BY a_seq, b_seq",
    )
    .await;
    let ctx = SessionContext::new();
    ctx.register_batch("l", batch_of(&left)).unwrap();
    ctx.register_batch("r", batch_of(&right)).unwrap();
    let expected = batch_rows(
        &ctx,
        "SELECT l.seq, r.seq FROM l JOIN r ON l.k = r.k AND l.t - r.t BETWEEN -2000 AND 1000 ORDER BY 1, 2",
    )
    .await;
    assert!(expected.len() > 1000, "pairs: {}", expected.len());
    assert_eq!(actual.len(), expected.len(), "every pair exactly once");
    assert!(
        actual == expected,
        "the pairs after the restart equal the batch join"
    );
    let counts = rows(&client, "SELECT k, pairs FROM pair_counts ORDER BY k").await;
    let expected = batch_rows(
        &ctx,
        "SELECT l.k, COUNT(*) FROM l JOIN r ON l.k = r.k AND l.t - r.t BETWEEN -2000 AND 1000 GROUP BY l.k ORDER BY 1",
    )
    .await;
    assert_eq!(
        counts, expected,
        "the counts after the restart equal the batch's"
    );
    let left = rows(
        &client,
        "SELECT a_seq, b_seq FROM left_pairs ORDER BY a_seq, b_seq",
    )
    .await;
    let expected = batch_rows(
        &ctx,
        "SELECT l.seq, COALESCE(r.seq, -1) FROM l LEFT JOIN r ON l.k = r.k AND l.t - r.t BETWEEN -2000 AND 1000 ORDER BY 1, 2",
    )
    .await;
    assert!(expected.iter().any(|r| r[1] == "-1"), "rows that met none");
    assert_eq!(
        left, expected,
        "the outer join after the restart equals the batch's"
    );
}
