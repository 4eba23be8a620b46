//! End to end with a real Kafka-protocol broker (tansu): multi-partition
//! topics, out-of-order and late events, bad messages, a missing topic.
//! Every result is compared with an answer computed independently: a
//! reference implementation of the lateness rule (DESIGN §3), or DataFusion's
//! batch GROUP BY over the same rows.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::kafka::Broker;
use common::{execute, rows, wait_for_rows, wait_until, TestServer};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const BASE_MS: i64 = 1_704_067_200_000; // 2024-01-01 00:00:00 UTC
const DELAY_MS: i64 = 5_000;

#[derive(Clone, Debug)]
struct Event {
    partition: i32,
    ts: i64,
    cell: String,
    status: &'static str,
    duration: i32,
}

impl Event {
    fn json(&self) -> String {
        format!(
            r#"{{"event_time": {}, "cell_id": "{}", "status": "{}", "duration_ms": {}}}"#,
            self.ts, self.cell, self.status, self.duration
        )
    }
}

/// Events per partition in send order: time moves forward with jitter up to
/// `disorder_ms`; with `late`, some events are far behind.
fn events(
    seed: u64,
    partitions: i32,
    per_partition: usize,
    disorder_ms: i64,
    late: bool,
) -> Vec<Event> {
    let mut rng = StdRng::seed_from_u64(seed);
    let statuses = ["ok", "ok", "ok", "dropped", "failed"];
    let mut out = Vec::new();
    for p in 0..partitions {
        let mut t = BASE_MS + rng.random_range(0..3_000);
        for _ in 0..per_partition {
            t += rng.random_range(0..400);
            let mut ts = t - rng.random_range(0..=disorder_ms);
            if late && rng.random_range(0..100) < 4 {
                ts = t - rng.random_range(15_000..40_000);
            }
            out.push(Event {
                partition: p,
                ts,
                cell: format!("cell-{}", rng.random_range(0..7)),
                status: statuses[rng.random_range(0..statuses.len())],
                duration: rng.random_range(0..10_000),
            });
        }
    }
    out
}

/// One event per partition far in the future: moves every partition's
/// watermark past the data, so every window of the data fires.
fn flush_events(partitions: i32, after: i64) -> Vec<Event> {
    (0..partitions)
        .map(|p| Event {
            partition: p,
            ts: after + 3_600_000,
            cell: "flush".into(),
            status: "ok",
            duration: 0,
        })
        .collect()
}

type Windows = BTreeMap<(i64, i64, String), (i64, i64)>;

/// A continuously updated TUMBLE view and a final-only HOP view, both of
/// calls and duration per cell (compared with `reference`).
const TUMBLE_VIEW: &str = "CREATE MATERIALIZED VIEW tumble AS
     SELECT window_start, window_end, cell_id, COUNT(*) AS calls, SUM(duration_ms) AS total_ms
     FROM TABLE(TUMBLE(TABLE calls, DESCRIPTOR(ts), INTERVAL '10' SECOND))
     GROUP BY window_start, window_end, cell_id";
const HOP_VIEW: &str = "CREATE MATERIALIZED VIEW hop AS
     SELECT window_start, window_end, cell_id, COUNT(*) AS calls, SUM(duration_ms) AS total_ms
     FROM TABLE(HOP(TABLE calls, DESCRIPTOR(ts), INTERVAL '5' SECOND, INTERVAL '20' SECOND))
     GROUP BY window_start, window_end, cell_id EMIT ON WINDOW CLOSE";
/// Cascading windows (a view over a view): the final 10 s rows, then 30 s
/// windows over their window_time.
const FINAL_VIEW: &str = "CREATE MATERIALIZED VIEW tumble_final AS
     SELECT window_start AS ws, window_time AS rowtime, cell_id, COUNT(*) AS calls,
            SUM(duration_ms) AS total_ms
     FROM TABLE(TUMBLE(TABLE calls, DESCRIPTOR(ts), INTERVAL '10' SECOND))
     GROUP BY window_start, window_end, cell_id EMIT ON WINDOW CLOSE";
const CASCADE_VIEW: &str = "CREATE MATERIALIZED VIEW cascade AS
     SELECT window_start, window_end, cell_id, SUM(calls) AS calls, SUM(total_ms) AS total_ms
     FROM TABLE(TUMBLE(TABLE tumble_final, DESCRIPTOR(rowtime), INTERVAL '30' SECOND))
     GROUP BY window_start, window_end, cell_id";

/// The cascade's reference: the 10 s windows summed into 30 s ones.
fn cascade_reference(tumble: &Windows) -> Windows {
    let mut out = Windows::new();
    for ((_, end, cell), (n, sum)) in tumble {
        let start = (end - 1) - (end - 1).rem_euclid(30_000);
        let w = out
            .entry((start, start + 30_000, cell.clone()))
            .or_insert((0, 0));
        w.0 += n;
        w.1 += sum;
    }
    out
}

/// The reference: per partition, a row is late for a window when the
/// watermark made by the rows before it (max ts - delay) has reached the
/// window's end - 1 ms (plus the allowed lateness). Returns (start, end,
/// cell) -> (count, sum) and the number of rows late for at least one
/// window.
fn reference(events: &[Event], slide: i64, size: i64) -> (Windows, usize) {
    reference_with_lateness(events, slide, size, 0)
}

fn reference_with_lateness(
    events: &[Event],
    slide: i64,
    size: i64,
    lateness: i64,
) -> (Windows, usize) {
    let mut out = Windows::new();
    let mut late_rows = 0;
    let mut running: BTreeMap<i32, i64> = BTreeMap::new();
    for e in events {
        let before = *running.get(&e.partition).unwrap_or(&i64::MIN);
        let mut start = e.ts - e.ts.rem_euclid(slide);
        let mut late = false;
        while start > e.ts - size {
            let end = start + size;
            if before != i64::MIN && end - 1 + lateness <= before {
                late = true;
            } else {
                let w = out.entry((start, end, e.cell.clone())).or_insert((0, 0));
                w.0 += 1;
                w.1 += e.duration as i64;
            }
            start -= slide;
        }
        late_rows += late as usize;
        let r = running.entry(e.partition).or_insert(i64::MIN);
        *r = (*r).max(e.ts - DELAY_MS);
    }
    (out, late_rows)
}

/// Sessions per cell with a 2 s gap, shown once closed.
const SESSION_VIEW: &str = "CREATE MATERIALIZED VIEW sessions AS
     SELECT window_start, window_end, cell_id, COUNT(*) AS calls, SUM(duration_ms) AS total_ms
     FROM TABLE(SESSION(TABLE calls PARTITION BY cell_id, DESCRIPTOR(ts), INTERVAL '2' SECOND))
     GROUP BY window_start, window_end, cell_id EMIT ON WINDOW CLOSE";

/// The sessions reference: per partition, a row is late when the watermark
/// made by the rows before it has reached its own window's end - 1 ms
/// (`ts + gap - 1`); the sessions are those of the other rows, per cell.
fn session_reference(events: &[Event], gap: i64) -> (Windows, usize) {
    let mut running: BTreeMap<i32, i64> = BTreeMap::new();
    let mut on_time: BTreeMap<&str, Vec<&Event>> = BTreeMap::new();
    let mut late = 0;
    for e in events {
        let before = running.entry(e.partition).or_insert(i64::MIN);
        if *before != i64::MIN && e.ts + gap - 1 <= *before {
            late += 1;
        } else {
            on_time.entry(e.cell.as_str()).or_default().push(e);
        }
        *before = (*before).max(e.ts - DELAY_MS);
    }
    let mut out = Windows::new();
    for (cell, mut rows) in on_time {
        rows.sort_by_key(|e| e.ts);
        let mut current: Option<(i64, i64, i64, i64)> = None; // start, last, count, sum
        for e in rows {
            current = match current {
                Some((s, last, n, sum)) if e.ts - last < gap => {
                    Some((s, e.ts, n + 1, sum + e.duration as i64))
                }
                other => {
                    if let Some((s, last, n, sum)) = other {
                        out.insert((s, last + gap, cell.to_string()), (n, sum));
                    }
                    Some((e.ts, e.ts, 1, e.duration as i64))
                }
            };
        }
        if let Some((s, last, n, sum)) = current {
            out.insert((s, last + gap, cell.to_string()), (n, sum));
        }
    }
    (out, late)
}

fn source_sql(topic: &str, broker: &Broker) -> String {
    format!(
        "CREATE TABLE calls (
           event_time BIGINT, cell_id STRING, status STRING, duration_ms INT,
           ts AS TO_TIMESTAMP_LTZ(event_time, 3),
           WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
         ) WITH ('connector' = 'kafka', 'topic' = '{topic}',
                 'properties.bootstrap.servers' = '{}',
                 'scan.startup.mode' = 'earliest-offset', 'format' = 'json')",
        broker.addr
    )
}

fn ms(text: &str) -> i64 {
    chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .and_utc()
        .timestamp_millis()
}

/// Waits until a job has read `rows_in` rows and its watermark passed `wm`.
async fn wait_caught_up(client: &tokio_postgres::Client, view: &str, rows_in: usize, wm_ms: i64) {
    let sql = format!(
        "SELECT rows_in, CAST(watermark AS BIGINT), status, error FROM sluice.jobs WHERE name = '{view}'"
    );
    let mut last = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let r = rows(client, &sql).await;
        if let Some(row) = r.first() {
            let n: usize = row[0].parse().unwrap();
            let wm: i64 = row[1].parse().unwrap_or(i64::MIN);
            assert_ne!(row[2], "failed", "job {view} failed: {}", row[3]);
            if n == rows_in && wm >= wm_ms {
                // One more flush interval for the last partial states.
                tokio::time::sleep(Duration::from_millis(500)).await;
                return;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "job {view} did not catch up: {r:?}, want rows_in {rows_in} and watermark >= {wm_ms}; last {last:?}"
        );
        last = r;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn view_windows(client: &tokio_postgres::Client, view: &str, cutoff: i64) -> Windows {
    let r = rows(
        client,
        &format!("SELECT window_start, window_end, cell_id, calls, total_ms FROM {view} WHERE cell_id <> 'flush'"),
    )
    .await;
    r.into_iter()
        .map(|row| {
            (
                (ms(&row[0]), ms(&row[1]), row[2].clone()),
                (row[3].parse().unwrap(), row[4].parse().unwrap()),
            )
        })
        .filter(|((s, _, _), _)| *s < cutoff)
        .collect()
}

/// A broker with a 4-partition topic holding `data` plus one far-future
/// event per partition, and a server with the `calls` source over it.
struct Setup {
    broker: Broker,
    data: Vec<Event>,
    /// Every record produced (the data and the flush events).
    produced: usize,
    max_ts: i64,
    server: TestServer,
    client: tokio_postgres::Client,
}

async fn setup(data: Vec<Event>) -> Setup {
    let broker = Broker::start();
    broker.create_topic("calls", 4);
    let max_ts = data.iter().map(|e| e.ts).max().unwrap();
    let mut all = data.clone();
    all.extend(flush_events(4, max_ts));
    broker.produce(
        "calls",
        &all.iter()
            .map(|e| (e.partition, e.json()))
            .collect::<Vec<_>>(),
    );
    let server = TestServer::start();
    let client = server.client().await;
    execute(&client, &source_sql("calls", &broker)).await;
    Setup {
        broker,
        data,
        produced: all.len(),
        max_ts,
        server,
        client,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_over_partitions_with_late_events_match_the_reference() {
    let Setup {
        broker: _broker,
        data,
        produced,
        max_ts,
        server: _server,
        client,
    } = setup(events(7, 4, 600, 3_000, true)).await;
    execute(&client, TUMBLE_VIEW).await;
    execute(&client, HOP_VIEW).await;
    // Windows that take late rows for 8 s more, shown once closed: a late
    // row updates a row already shown.
    execute(
        &client,
        "CREATE MATERIALIZED VIEW lenient WITH ('allowed-lateness' = '8 s') AS
         SELECT window_start, window_end, cell_id, COUNT(*) AS calls, SUM(duration_ms) AS total_ms
         FROM TABLE(TUMBLE(TABLE calls, DESCRIPTOR(ts), INTERVAL '10' SECOND))
         GROUP BY window_start, window_end, cell_id EMIT ON WINDOW CLOSE",
    )
    .await;
    let cutoff = max_ts + 1;
    for view in ["tumble", "hop", "lenient"] {
        wait_caught_up(&client, view, produced, max_ts).await;
    }
    let (expected_lenient, late_lenient) = reference_with_lateness(&data, 10_000, 10_000, 8_000);
    assert_eq!(
        view_windows(&client, "lenient", cutoff).await,
        expected_lenient
    );
    let (expected, late) = reference(&data, 10_000, 10_000);
    assert!(late > 10, "the data must have late rows ({late})");
    assert_eq!(view_windows(&client, "tumble", cutoff).await, expected);
    // The late rows themselves, by position (each misses one window).
    let mut offsets: BTreeMap<i32, i64> = BTreeMap::new();
    let mut running: BTreeMap<i32, i64> = BTreeMap::new();
    let mut late_positions = Vec::new();
    for e in &data {
        let offset = offsets.entry(e.partition).or_insert(0);
        let before = running.entry(e.partition).or_insert(i64::MIN);
        let end = e.ts - e.ts.rem_euclid(10_000) + 10_000;
        if *before != i64::MIN && end - 1 <= *before {
            late_positions.push(format!(
                "topic calls partition {} offset {offset}",
                e.partition
            ));
        }
        *before = (*before).max(e.ts - DELAY_MS);
        *offset += 1;
    }
    late_positions.sort();
    let mut shown: Vec<String> = rows(
        &client,
        "SELECT position FROM sluice.late_rows WHERE job = 'tumble'",
    )
    .await
    .into_iter()
    .map(|r| r[0].clone())
    .collect();
    shown.sort();
    assert_eq!(shown, late_positions);
    let (expected_hop, late_hop) = reference(&data, 5_000, 20_000);
    assert_eq!(view_windows(&client, "hop", cutoff).await, expected_hop);
    let counted = rows(
        &client,
        "SELECT name, late_rows FROM sluice.jobs ORDER BY name",
    )
    .await;
    assert!(
        late_lenient > 0 && late_lenient < late,
        "some late rows are taken, not all ({late_lenient} of {late} still late)"
    );
    assert_eq!(
        counted,
        vec![
            vec!["hop".to_string(), late_hop.to_string()],
            vec!["lenient".to_string(), late_lenient.to_string()],
            vec!["tumble".to_string(), late.to_string()]
        ]
    );

    // Per-partition positions: every record read, nothing left.
    let parts = rows(
        &client,
        "SELECT partition, \"offset\" FROM sluice.kafka_partitions WHERE job = 'tumble' ORDER BY 1",
    )
    .await;
    let per_partition: Vec<Vec<String>> = (0..4)
        .map(|p| {
            vec![
                p.to_string(),
                // The data, and one flush event.
                (data.iter().filter(|e| e.partition == p).count() + 1).to_string(),
            ]
        })
        .collect();
    assert_eq!(parts, per_partition);
    wait_for_rows(
        &client,
        "SELECT SUM(lag) FROM sluice.kafka_partitions WHERE job = 'tumble'",
        &[&["0"]],
        Duration::from_secs(10),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_late_events_streaming_equals_datafusion_batch() {
    // Disorder below the watermark delay: nothing is late.
    let Setup {
        broker: _broker,
        data,
        produced,
        max_ts,
        server: _server,
        client,
    } = setup(events(11, 4, 700, 4_000, false)).await;
    let aggregates = "COUNT(*) AS calls, SUM(duration_ms) AS total_ms, AVG(duration_ms) AS avg_ms, \
                      MIN(duration_ms) AS min_ms, MAX(duration_ms) AS max_ms, \
                      COUNT(*) FILTER (WHERE status <> 'ok') AS failures, COUNT(DISTINCT status) AS statuses, \
                      MEDIAN(duration_ms) AS median_ms, STDDEV(duration_ms) AS stddev_ms";
    execute(
        &client,
        &format!(
            "CREATE MATERIALIZED VIEW tumble AS SELECT window_start, cell_id, {aggregates}
             FROM TABLE(TUMBLE(TABLE calls, DESCRIPTOR(ts), INTERVAL '10' SECOND))
             GROUP BY window_start, window_end, cell_id"
        ),
    )
    .await;
    execute(
        &client,
        &format!(
            "CREATE MATERIALIZED VIEW hop AS SELECT window_start, cell_id, {aggregates}
             FROM TABLE(HOP(TABLE calls, DESCRIPTOR(ts), INTERVAL '5' SECOND, INTERVAL '15' SECOND))
             GROUP BY window_start, window_end, cell_id"
        ),
    )
    .await;
    // Sessions per cell: the rows of one cell come from every partition,
    // so sessions merge across partitions (and batches).
    execute(
        &client,
        "CREATE MATERIALIZED VIEW sessions AS
         SELECT window_start, window_end, cell_id, COUNT(*) AS calls, SUM(duration_ms) AS total_ms
         FROM TABLE(SESSION(TABLE calls PARTITION BY cell_id, DESCRIPTOR(ts), INTERVAL '300' MILLISECOND))
         GROUP BY window_start, window_end, cell_id",
    )
    .await;
    for view in ["tumble", "hop", "sessions"] {
        wait_caught_up(&client, view, produced, max_ts).await;
    }
    assert_eq!(
        rows(&client, "SELECT SUM(late_rows) FROM sluice.jobs").await,
        vec![vec!["0".to_string()]]
    );

    // The same rows in DataFusion, windows by date_bin: the batch answer.
    let ctx = datafusion::prelude::SessionContext::new();
    let cells: Vec<&str> = data.iter().map(|e| e.cell.as_str()).collect();
    let batch = arrow::record_batch::RecordBatch::try_from_iter(vec![
        (
            "ts",
            std::sync::Arc::new(arrow::array::TimestampMillisecondArray::from(
                data.iter().map(|e| e.ts).collect::<Vec<_>>(),
            )) as arrow::array::ArrayRef,
        ),
        (
            "cell_id",
            std::sync::Arc::new(arrow::array::StringArray::from(cells)) as _,
        ),
        (
            "status",
            std::sync::Arc::new(arrow::array::StringArray::from(
                data.iter().map(|e| e.status).collect::<Vec<_>>(),
            )) as _,
        ),
        (
            "duration_ms",
            std::sync::Arc::new(arrow::array::Int32Array::from(
                data.iter().map(|e| e.duration).collect::<Vec<_>>(),
            )) as _,
        ),
    ])
    .unwrap();
    ctx.register_batch("events", batch).unwrap();
    let batch_sql = |slide: &str, step: i64, windows: i64| {
        format!(
            "SELECT to_char(w.window_start, '%Y-%m-%d %H:%M:%S') AS window_start, w.cell_id, {aggregates}
             FROM (SELECT to_timestamp_millis(CAST(date_bin(INTERVAL '{slide}', ts, TIMESTAMP '1970-01-01') AS BIGINT)
                                               - k.k * {step}) AS window_start,
                          cell_id, status, duration_ms
                   FROM events CROSS JOIN (SELECT * FROM (VALUES {}) AS v(k)) k) w
             GROUP BY w.window_start, w.cell_id ORDER BY 1, 2",
            (0..windows).map(|k| format!("({k})")).collect::<Vec<_>>().join(", ")
        )
    };
    for (view, sql) in [
        ("tumble", batch_sql("10 seconds", 10_000, 1)),
        ("hop", batch_sql("5 seconds", 5_000, 3)),
    ] {
        let expected = ctx.sql(&sql).await.unwrap().collect().await.unwrap();
        let expected = arrow::util::pretty::pretty_format_batches(&expected)
            .unwrap()
            .to_string();
        let expected: Vec<Vec<String>> = expected
            .lines()
            .filter(|l| l.starts_with("| "))
            .skip(1)
            .map(|l| {
                l.trim_matches('|')
                    .split('|')
                    .map(|c| c.trim().to_string())
                    .collect()
            })
            .collect();
        let cutoff = chrono::DateTime::from_timestamp_millis(max_ts + 1)
            .unwrap()
            .format("%Y-%m-%d %H:%M:%S%.3f")
            .to_string();
        let actual = rows(
            &client,
            &format!("SELECT * FROM {view} WHERE cell_id <> 'flush' AND window_start < '{cutoff}' ORDER BY 1, 2"),
        )
        .await;
        if actual.len() != expected.len() {
            let keys = |r: &Vec<Vec<String>>| {
                r.iter()
                    .map(|x| (x[0].clone(), x[1].clone()))
                    .collect::<std::collections::BTreeSet<_>>()
            };
            let (ka, ke) = (keys(&actual), keys(&expected));
            panic!(
                "{view}: {} rows, batch {}; only in the view: {:?}; only in batch: {:?}",
                actual.len(),
                expected.len(),
                ka.difference(&ke).collect::<Vec<_>>(),
                ke.difference(&ka).collect::<Vec<_>>()
            );
        }
        assert!(
            actual.len() > 100,
            "{view}: enough windows to mean something"
        );
        for (a, e) in actual.iter().zip(&expected) {
            assert_eq!(a.len(), e.len());
            for (x, y) in a.iter().zip(e) {
                assert!(same(x, y), "{view}: {a:?}\n  batch: {e:?}");
            }
        }
    }

    // Sessions by definition: per cell in time order, a row 300 ms or more
    // after the previous one starts a new session.
    let mut by_cell: BTreeMap<&str, Vec<&Event>> = BTreeMap::new();
    for e in &data {
        by_cell.entry(e.cell.as_str()).or_default().push(e);
    }
    let mut sessions: Vec<(i64, i64, String, i64, i64)> = Vec::new();
    for (cell, mut events) in by_cell {
        events.sort_by_key(|e| e.ts);
        let mut last = i64::MIN;
        for e in events {
            match sessions.last_mut() {
                Some(s) if s.2 == cell && e.ts - last < 300 => {
                    s.1 = e.ts + 300;
                    s.3 += 1;
                    s.4 += e.duration as i64;
                }
                _ => sessions.push((e.ts, e.ts + 300, cell.to_string(), 1, e.duration as i64)),
            }
            last = e.ts;
        }
    }
    sessions.sort();
    let expected: Vec<Vec<String>> = sessions
        .into_iter()
        .map(|(s, e, c, n, sum)| {
            vec![
                s.to_string(),
                e.to_string(),
                c,
                n.to_string(),
                sum.to_string(),
            ]
        })
        .collect();
    let actual = rows(
        &client,
        "SELECT CAST(window_start AS BIGINT), CAST(window_end AS BIGINT), cell_id, calls, total_ms
         FROM sessions WHERE cell_id <> 'flush' ORDER BY 1, 2, 3",
    )
    .await;
    assert!(expected.len() > 100, "sessions: {} only", expected.len());
    assert_eq!(actual.len(), expected.len(), "sessions");
    assert_eq!(actual, expected, "sessions");
}

/// Equal as text, or as numbers up to rounding (the two sides print floats
/// differently); NULL prints as "NULL" in Sluice and "" in Arrow.
fn same(a: &str, b: &str) -> bool {
    if a == b || (a == "NULL" && b.is_empty()) {
        return true;
    }
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0),
        _ => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_are_dead_letters_and_the_job_goes_on() {
    let broker = Broker::start();
    broker.create_topic("calls", 2);
    let good = |p: i32, s: i64| {
        Event {
            partition: p,
            ts: BASE_MS + s * 1000,
            cell: "a".into(),
            status: "ok",
            duration: 1,
        }
        .json()
    };
    let records = vec![
        (0, good(0, 1)),
        (0, "{not json".to_string()),
        (0, good(0, 2)),
        (1, "[1, 2, 3]".to_string()),
        (
            1,
            r#"{"event_time": "yesterday", "cell_id": "a"}"#.to_string(),
        ),
        (1, r#"{"cell_id": "a", "status": "ok"}"#.to_string()),
        (1, good(1, 3)),
        (0, good(0, 100)),
        (1, good(1, 100)),
    ];
    broker.produce("calls", &records);
    let server = TestServer::start();
    let client = server.client().await;
    execute(&client, &source_sql("calls", &broker)).await;
    execute(
        &client,
        "CREATE MATERIALIZED VIEW counts AS SELECT window_start, cell_id, COUNT(*) AS calls
         FROM TABLE(TUMBLE(TABLE calls, DESCRIPTOR(ts), INTERVAL '10' SECOND)) GROUP BY window_start, window_end, cell_id",
    )
    .await;
    wait_for_rows(
        &client,
        "SELECT calls FROM counts WHERE window_start = '2024-01-01 00:00:00'",
        &[&["3"]],
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(
        rows(&client, "SELECT status, rows_in, bad_rows FROM sluice.jobs").await,
        vec![vec![
            "running".to_string(),
            "5".to_string(),
            "4".to_string()
        ]]
    );
    let letters = rows(
        &client,
        "SELECT position, raw, error FROM sluice.dead_letters ORDER BY position",
    )
    .await;
    let positions: Vec<&str> = letters.iter().map(|l| l[0].as_str()).collect();
    assert_eq!(
        positions,
        vec![
            "topic calls partition 0 offset 1",
            "topic calls partition 1 offset 0",
            "topic calls partition 1 offset 1",
            "topic calls partition 1 offset 2",
        ]
    );
    assert_eq!(letters[0][1], "{not json");
    assert!(
        letters[3][2].contains("event time \"ts\" is missing"),
        "{:?}",
        letters[3]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_topic_is_reported_and_retried() {
    let broker = Broker::start();
    let server = TestServer::start();
    let client = server.client().await;
    execute(&client, &source_sql("later", &broker)).await;
    execute(
        &client,
        "CREATE MATERIALIZED VIEW everything AS SELECT cell_id, duration_ms FROM calls",
    )
    .await;
    wait_until(
        Duration::from_secs(30),
        "the problem on the job",
        || async {
            let r = rows(&client, "SELECT status, error FROM sluice.jobs").await;
            r[0][0] == "running" && r[0][1].contains("topic \"later\" does not exist")
        },
    )
    .await;
    // Checkpoints go on while the source waits.
    wait_until(
        Duration::from_secs(30),
        "checkpoints while waiting",
        || async {
            let r = rows(&client, "SELECT checkpoint_epoch FROM sluice.jobs").await;
            r[0][0].parse::<u64>().unwrap() >= 2
        },
    )
    .await;
    broker.create_topic("later", 1);
    broker.produce(
        "later",
        &[(
            0,
            Event {
                partition: 0,
                ts: BASE_MS,
                cell: "x".into(),
                status: "ok",
                duration: 42,
            }
            .json(),
        )],
    );
    wait_for_rows(
        &client,
        "SELECT cell_id, duration_ms FROM everything",
        &[&["x", "42"]],
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(
        rows(&client, "SELECT error FROM sluice.jobs").await,
        vec![vec!["NULL".to_string()]]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_results_of_long_windows_show_every_second() {
    // One-day windows that never close here: EMIT EVERY shows them in
    // progress, refreshed; EMIT ON WINDOW CLOSE shows nothing yet.
    let Setup {
        broker: _broker,
        data,
        produced,
        max_ts,
        server: _server,
        client,
    } = setup(events(5, 4, 300, 2_000, false)).await;
    for (name, emit) in [
        ("early", "EMIT EVERY INTERVAL '1' SECOND"),
        ("closed", "EMIT ON WINDOW CLOSE"),
    ] {
        execute(
            &client,
            &format!(
                "CREATE MATERIALIZED VIEW {name} AS
                 SELECT window_start, cell_id, COUNT(*) AS calls, SUM(duration_ms) AS total_ms
                 FROM TABLE(TUMBLE(TABLE calls, DESCRIPTOR(ts), INTERVAL '1' DAY))
                 GROUP BY window_start, window_end, cell_id {emit}"
            ),
        )
        .await;
    }
    for view in ["early", "closed"] {
        wait_caught_up(&client, view, produced, max_ts).await;
    }
    // Per cell and day (a few rows are from the day before).
    let mut per_cell: BTreeMap<(String, i64), (i64, i64)> = BTreeMap::new();
    for e in &data {
        let day = e.ts - e.ts.rem_euclid(86_400_000);
        let c = per_cell.entry((e.cell.clone(), day)).or_insert((0, 0));
        c.0 += 1;
        c.1 += e.duration as i64;
    }
    let expected: Vec<Vec<String>> = per_cell
        .into_iter()
        .map(|((cell, day), (n, sum))| {
            let day = chrono::DateTime::from_timestamp_millis(day)
                .unwrap()
                .format("%Y-%m-%d %H:%M:%S")
                .to_string();
            vec![day, cell, n.to_string(), sum.to_string()]
        })
        .collect();
    let expected: Vec<Vec<&str>> = expected
        .iter()
        .map(|r| r.iter().map(String::as_str).collect())
        .collect();
    let expected: Vec<&[&str]> = expected.iter().map(|r| r.as_slice()).collect();
    wait_for_rows(
        &client,
        "SELECT * FROM early WHERE cell_id <> 'flush' ORDER BY cell_id, window_start",
        &expected,
        Duration::from_secs(10),
    )
    .await;
    // Only the windows of the day before have closed.
    let closed: Vec<Vec<&str>> = expected
        .iter()
        .filter(|r| r[0] < "2024-01-01")
        .map(|r| r.to_vec())
        .collect();
    assert!(closed.len() < expected.len());
    assert_eq!(
        rows(
            &client,
            "SELECT * FROM closed ORDER BY cell_id, window_start"
        )
        .await,
        closed
    );
}

/// Records of cell "a" for `partition`, one at each of these seconds.
fn one_a_second(partition: i32, seconds: std::ops::RangeInclusive<i64>) -> Vec<(i32, String)> {
    seconds
        .map(|s| {
            let e = Event {
                partition,
                ts: BASE_MS + s * 1000,
                cell: "a".into(),
                status: "ok",
                duration: 1,
            };
            (partition, e.json())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_partition_does_not_stall_windows() {
    let broker = Broker::start();
    // Partition 1 gets nothing at all; partition 0 gets all the data.
    broker.create_topic("calls", 2);
    broker.produce("calls", &one_a_second(0, 0..=29));
    let server = TestServer::start();
    let client = server.client().await;
    execute(
        &client,
        &format!(
            "CREATE TABLE calls (event_time BIGINT, cell_id STRING, status STRING, duration_ms INT,
               ts AS TO_TIMESTAMP_LTZ(event_time, 3), WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
             WITH ('connector' = 'kafka', 'topic' = 'calls', 'properties.bootstrap.servers' = '{}',
                   'scan.startup.mode' = 'earliest-offset', 'scan.watermark.idle-timeout' = '1 s')",
            broker.addr
        ),
    )
    .await;
    execute(
        &client,
        "CREATE MATERIALIZED VIEW closed AS SELECT window_start, COUNT(*) AS calls
         FROM TABLE(TUMBLE(TABLE calls, DESCRIPTOR(ts), INTERVAL '10' SECOND))
         GROUP BY window_start, window_end EMIT ON WINDOW CLOSE",
    )
    .await;
    // Watermark 29 s - 5 s = 24 s closes [0, 10) and [10, 20), not [20, 30).
    let want = vec![
        vec!["2024-01-01 00:00:00".to_string(), "10".to_string()],
        vec!["2024-01-01 00:00:10".to_string(), "10".to_string()],
    ];
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while rows(&client, "SELECT window_start, calls FROM closed ORDER BY 1").await != want {
        if std::time::Instant::now() > deadline {
            panic!(
                "windows did not close: {:?}\n{:?}\n{:?}\n{}",
                rows(&client, "SELECT * FROM closed").await,
                rows(&client, "SELECT * FROM sluice.jobs").await,
                rows(&client, "SELECT * FROM sluice.kafka_partitions").await,
                server.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Partition 1 comes back, at 25 s to 40 s: its rows are judged by its
    // own watermark, not as late, and [20, 30) takes the five up to 29 s;
    // its watermark (35 s) then closes that window.
    broker.produce("calls", &one_a_second(1, 25..=40));
    wait_for_rows(
        &client,
        "SELECT window_start, calls, (SELECT late_rows FROM sluice.jobs) FROM closed ORDER BY 1",
        &[
            &["2024-01-01 00:00:00", "10", "0"],
            &["2024-01-01 00:00:10", "10", "0"],
            &["2024-01-01 00:00:20", "15", "0"],
        ],
        Duration::from_secs(30),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_broker_is_reported_and_never_crashes_the_server() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = TestServer::start();
    let client = server.client().await;
    execute(
        &client,
        &format!(
            "CREATE TABLE calls (event_time BIGINT, cell_id STRING) WITH ('connector' = 'kafka', 'topic' = 'calls',
               'properties.bootstrap.servers' = '127.0.0.1:{port}', 'format' = 'json')"
        ),
    )
    .await;
    execute(
        &client,
        "CREATE MATERIALIZED VIEW v AS SELECT cell_id FROM calls",
    )
    .await;
    wait_until(
        Duration::from_secs(60),
        "the problem on the job",
        || async {
            let r = rows(&client, "SELECT status, error FROM sluice.jobs").await;
            r[0][0] == "running"
                && r[0][1].contains(&format!("could not reach kafka at 127.0.0.1:{port}"))
        },
    )
    .await;
    assert_eq!(
        rows(&client, "SELECT COUNT(*) FROM v").await,
        vec![vec!["0".to_string()]]
    );
}

/// The events in the order they are sent: round robin over the partitions,
/// each partition's own order kept.
fn interleaved(events: &[Event], partitions: i32) -> Vec<Event> {
    let mut queues: Vec<std::collections::VecDeque<&Event>> = (0..partitions)
        .map(|p| events.iter().filter(|e| e.partition == p).collect())
        .collect();
    let mut out = Vec::with_capacity(events.len());
    while queues.iter().any(|q| !q.is_empty()) {
        for q in queues.iter_mut() {
            if let Some(e) = q.pop_front() {
                out.push(e.clone());
            }
        }
    }
    out
}

/// Waits until `view` has read every partition up to `offsets` and its
/// watermark has passed `wm_ms`. (Row counters are not exact across
/// crashes; offsets are.)
async fn wait_read_to(client: &tokio_postgres::Client, view: &str, offsets: &[usize], wm_ms: i64) {
    let want: Vec<Vec<String>> = offsets
        .iter()
        .enumerate()
        .map(|(p, o)| vec![p.to_string(), o.to_string()])
        .collect();
    let parts = format!(
        "SELECT partition, \"offset\" FROM sluice.kafka_partitions WHERE job = '{view}' ORDER BY 1"
    );
    let job = format!(
        "SELECT CAST(watermark AS BIGINT), status, error FROM sluice.jobs WHERE name = '{view}'"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let read = rows(client, &parts).await;
        let state = rows(client, &job).await;
        let wm: i64 = state
            .first()
            .and_then(|r| r[0].parse().ok())
            .unwrap_or(i64::MIN);
        if let Some(r) = state.first() {
            assert_ne!(r[1], "failed", "job {view} failed: {}", r[2]);
        }
        if read == want && wm >= wm_ms {
            tokio::time::sleep(Duration::from_millis(500)).await;
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "job {view} did not catch up: read {read:?} of {want:?}, watermark {wm} < {wm_ms}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Exactly-once recovery the hard way: while events keep arriving on a
/// 4-partition topic (with disorder and late events), the server is killed
/// with SIGKILL at random moments and started again, many times. The views
/// must end up equal to the reference: nothing lost, nothing counted twice,
/// the same rows late. A view over a view (cascading windows) reads the one
/// below it throughout, and must match too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_again_and_again_the_views_still_match_the_reference() {
    killed_again_and_again(&["--checkpoint-interval", "200ms"]).await;
}

/// The same with a state cache far smaller than the state: most window
/// state and view rows live in RocksDB only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_state_larger_than_its_cache_killed_views_still_match_the_reference() {
    killed_again_and_again(&["--checkpoint-interval", "200ms", "--state-cache", "24KiB"]).await;
}

async fn killed_again_and_again(flags: &[&str]) {
    let broker = std::sync::Arc::new(Broker::start());
    broker.create_topic("calls", 4);
    let data = events(11, 4, 1_500, 3_000, true);
    let max_ts = data.iter().map(|e| e.ts).max().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut server = TestServer::start_in(&dir, flags);
    {
        let client = server.client().await;
        // Latest-offset: a restart that did not resume from its checkpoint
        // would lose every event sent before it.
        execute(
            &client,
            &source_without_idleness(&broker).replace("earliest-offset", "latest-offset"),
        )
        .await;
        execute(&client, TUMBLE_VIEW).await;
        execute(&client, HOP_VIEW).await;
        execute(&client, SESSION_VIEW).await;
        execute(&client, FINAL_VIEW).await;
        execute(&client, CASCADE_VIEW).await;
        // Every job knows where the topic ends before events arrive.
        wait_for_rows(
            &client,
            "SELECT COUNT(*) FROM sluice.kafka_partitions WHERE \"offset\" >= 0",
            &[&["16"]],
            Duration::from_secs(30),
        )
        .await;
        // And a checkpoint has saved that.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Events keep arriving while the server is killed and restarted.
    let order = interleaved(&data, 4);
    let producer = {
        let broker = broker.clone();
        std::thread::spawn(move || {
            for chunk in order.chunks(200) {
                let records: Vec<(i32, String)> =
                    chunk.iter().map(|e| (e.partition, e.json())).collect();
                broker.produce("calls", &records);
                std::thread::sleep(Duration::from_millis(150));
            }
        })
    };
    let mut rng = StdRng::seed_from_u64(3);
    let mut kills = 0;
    while !producer.is_finished() || kills < 6 {
        tokio::time::sleep(Duration::from_millis(rng.random_range(150..1_200))).await;
        if kills % 4 == 3 {
            // Now and then a graceful stop (SIGTERM) instead.
            assert!(server.stop(), "a clean exit:\n{}", server.log());
        } else {
            server.kill();
        }
        kills += 1;
        server = TestServer::start_in(&dir, flags);
    }
    producer.join().unwrap();
    let flush = flush_events(4, max_ts);
    broker.produce(
        "calls",
        &flush
            .iter()
            .map(|e| (e.partition, e.json()))
            .collect::<Vec<_>>(),
    );
    let offsets: Vec<usize> = (0..4)
        .map(|p| data.iter().filter(|e| e.partition == p).count() + 1)
        .collect();
    let client = server.client().await;
    for view in ["tumble", "hop", "sessions", "tumble_final"] {
        wait_read_to(&client, view, &offsets, max_ts).await;
    }
    // The view over a view has read every final row below it, and its
    // watermark (the one below's) has passed the data.
    let finals = rows(&client, "SELECT COUNT(*) FROM tumble_final").await[0][0].clone();
    wait_until(
        Duration::from_secs(60),
        "the cascade to catch up",
        || async {
            rows(
                &client,
                "SELECT rows_in, CAST(watermark AS BIGINT) FROM sluice.jobs WHERE name = 'cascade'",
            )
            .await
            .first()
            .is_some_and(|r| r[0] == finals && r[1].parse::<i64>().unwrap_or(i64::MIN) >= max_ts)
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cutoff = max_ts + 1;
    let (expected, late) = reference(&data, 10_000, 10_000);
    assert!(late > 10, "the data must have late rows ({late})");
    assert_eq!(view_windows(&client, "tumble", cutoff).await, expected);
    assert_eq!(
        view_windows(&client, "cascade", cutoff).await,
        cascade_reference(&expected)
    );
    let (expected_hop, late_hop) = reference(&data, 5_000, 20_000);
    assert_eq!(view_windows(&client, "hop", cutoff).await, expected_hop);
    let (expected_sessions, late_sessions) = session_reference(&data, 2_000);
    assert_eq!(
        view_windows(&client, "sessions", cutoff).await,
        expected_sessions
    );
    assert!(kills >= 6);
    // The counters are exact too: each part saved what it had counted at
    // its barrier, so rows read again are not counted twice.
    let read = (data.len() + flush.len()).to_string();
    assert_eq!(
        rows(
            &client,
            "SELECT name, rows_in, late_rows, bad_rows FROM sluice.jobs ORDER BY name"
        )
        .await,
        vec![
            vec!["cascade".to_string(), finals, "0".into(), "0".into()],
            vec![
                "hop".to_string(),
                read.clone(),
                late_hop.to_string(),
                "0".into()
            ],
            vec![
                "sessions".to_string(),
                read.clone(),
                late_sessions.to_string(),
                "0".into()
            ],
            vec![
                "tumble".to_string(),
                read.clone(),
                late.to_string(),
                "0".into()
            ],
            vec![
                "tumble_final".to_string(),
                read,
                late.to_string(),
                "0".into()
            ],
        ]
    );
}

/// The first `n` events of each partition, and the rest.
fn halves(data: &[Event], partitions: i32, n: usize) -> (Vec<Event>, Vec<Event>) {
    let part = |rest: bool| -> Vec<Event> {
        let (skip, take) = if rest { (n, usize::MAX) } else { (0, n) };
        (0..partitions)
            .flat_map(|p| {
                data.iter()
                    .filter(move |e| e.partition == p)
                    .skip(skip)
                    .take(take)
            })
            .cloned()
            .collect()
    };
    (part(false), part(true))
}

fn send(broker: &Broker, events: &[Event]) {
    broker.produce(
        "calls",
        &events
            .iter()
            .map(|e| (e.partition, e.json()))
            .collect::<Vec<_>>(),
    )
}

/// Events per partition.
fn sizes(events: &[Event], partitions: i32) -> Vec<usize> {
    (0..partitions)
        .map(|p| events.iter().filter(|e| e.partition == p).count())
        .collect()
}

/// The `calls` source without idleness, so that results follow the
/// reference's rule, not timing: a partition without new events for a while
/// must not let the others' watermark close windows it still has rows for.
fn source_without_idleness(broker: &Broker) -> String {
    source_sql("calls", broker).replace(
        "'format' = 'json'",
        "'format' = 'json', 'scan.watermark.idle-timeout' = '0'",
    )
}

/// That source, and the continuously updated TUMBLE view `tumble`.
async fn source_and_tumble(client: &tokio_postgres::Client, broker: &Broker) {
    execute(client, &source_without_idleness(broker)).await;
    execute(client, TUMBLE_VIEW).await;
}

/// Pause, resume and savepoints on a live topic: a paused view keeps its
/// rows and reads nothing (also across a restart); resuming goes on where it
/// paused; resuming from a savepoint goes back to it and reads again from
/// there. Every step is compared with the reference over what was read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_resume_and_savepoints_lose_nothing_and_count_nothing_twice() {
    let mut broker = Broker::start();
    broker.create_topic("calls", 2);
    let data = events(21, 2, 400, 3_000, true);
    let (first, second) = halves(&data, 2, 200);
    let all_windows = |events: &[Event]| reference(events, 10_000, 10_000).0;
    send(&broker, &first);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut server = TestServer::start_in(&dir, &[]);
    let client = server.client().await;
    source_and_tumble(&client, &broker).await;
    wait_read_to(&client, "tumble", &[200, 200], i64::MIN).await;
    assert_eq!(
        view_windows(&client, "tumble", i64::MAX).await,
        all_windows(&first)
    );
    execute(
        &client,
        "CREATE SAVEPOINT half FOR MATERIALIZED VIEW tumble",
    )
    .await;
    execute(&client, "ALTER MATERIALIZED VIEW tumble PAUSE").await;
    assert_eq!(common::job_status(&client, "tumble").await.0, "paused");

    // Paused: the rows stay, new events wait; also after a restart.
    send(&broker, &second);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        view_windows(&client, "tumble", i64::MAX).await,
        all_windows(&first)
    );
    assert!(server.stop());
    server = TestServer::start_in(&dir, &[]);
    let client = server.client().await;
    assert_eq!(common::job_status(&client, "tumble").await.0, "paused");
    assert_eq!(
        view_windows(&client, "tumble", i64::MAX).await,
        all_windows(&first)
    );

    execute(&client, "ALTER MATERIALIZED VIEW tumble RESUME").await;
    wait_read_to(&client, "tumble", &[400, 400], i64::MIN).await;
    assert_eq!(
        view_windows(&client, "tumble", i64::MAX).await,
        all_windows(&data)
    );

    // Back to the savepoint: the second half is read again, counted once.
    execute(
        &client,
        "ALTER MATERIALIZED VIEW tumble RESUME FROM SAVEPOINT half",
    )
    .await;
    wait_read_to(&client, "tumble", &[400, 400], i64::MIN).await;
    assert_eq!(
        view_windows(&client, "tumble", i64::MAX).await,
        all_windows(&data)
    );
    assert_eq!(
        rows(&client, "SELECT name, job FROM sluice.savepoints").await,
        vec![vec!["half".to_string(), "tumble".to_string()]]
    );

    // With the broker gone nothing can be read again: the view is exactly
    // the savepoint's.
    broker.stop();
    execute(
        &client,
        "ALTER MATERIALIZED VIEW tumble RESUME FROM SAVEPOINT half",
    )
    .await;
    assert_eq!(
        view_windows(&client, "tumble", i64::MAX).await,
        all_windows(&first)
    );
}

/// The broker unreachable for 20 s (every connection cut, as if it were
/// stopped) and back: the view waits, reports the problem, and goes on;
/// nothing is lost or counted twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_pauses_the_view_and_loses_nothing() {
    let broker = Broker::start_behind_proxy();
    broker.create_topic("calls", 2);
    let data = events(31, 2, 400, 3_000, true);
    let (first, second) = halves(&data, 2, 200);
    send(&broker, &first);
    let server = TestServer::start();
    let client = server.client().await;
    source_and_tumble(&client, &broker).await;
    wait_read_to(&client, "tumble", &sizes(&first, 2), i64::MIN).await;

    broker.cut(true);
    let cut_at = std::time::Instant::now();
    // The problem shows on the job's status.
    wait_until(Duration::from_secs(20), "the outage on the job", || async {
        let (status, error) = common::job_status(&client, "tumble").await;
        status == "running" && error.is_some_and(|e| e.contains("kafka"))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(20).saturating_sub(cut_at.elapsed())).await;
    // The server answers, the view keeps its rows and is still running.
    assert_eq!(
        view_windows(&client, "tumble", i64::MAX).await,
        reference(&first, 10_000, 10_000).0
    );
    assert_eq!(common::job_status(&client, "tumble").await.0, "running");
    broker.cut(false);

    send(&broker, &second);
    wait_read_to(&client, "tumble", &sizes(&data, 2), i64::MIN).await;
    assert_eq!(
        view_windows(&client, "tumble", i64::MAX).await,
        reference(&data, 10_000, 10_000).0
    );
    wait_until(Duration::from_secs(10), "the problem cleared", || async {
        common::job_status(&client, "tumble").await == ("running".to_string(), None)
    })
    .await;
}

/// Enrichment from an ordinary table, live: a change to the table applies
/// to the events read after it, never to rows already shown. Events are
/// produced in three rounds, each after a change of `cells`; the expected
/// rows are written by hand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_changes_apply_to_later_events() {
    let broker = Broker::start();
    broker.create_topic("calls", 1);
    let server = TestServer::start();
    let client = server.client().await;
    execute(&client, &source_sql("calls", &broker)).await;
    execute(
        &client,
        "CREATE TABLE cells (cell_id STRING PRIMARY KEY, region STRING)",
    )
    .await;
    execute(&client, "INSERT INTO cells VALUES ('a', 'north')").await;
    execute(
        &client,
        "CREATE MATERIALIZED VIEW enriched AS
         SELECT e.duration_ms, e.cell_id, c.region
         FROM calls AS e JOIN cells FOR SYSTEM_TIME AS OF e.ts AS c ON e.cell_id = c.cell_id",
    )
    .await;
    let call = |cell: &str, duration: i32| {
        (
            0,
            format!(
                r#"{{"event_time": {}, "cell_id": "{cell}", "status": "ok", "duration_ms": {duration}}}"#,
                BASE_MS + duration as i64 * 1000
            ),
        )
    };
    let view = "SELECT duration_ms, cell_id, region FROM enriched ORDER BY duration_ms";
    // Round 1: a is in the north; b is unknown (an inner join drops it).
    broker.produce("calls", &[call("a", 1), call("b", 2), call("a", 3)]);
    wait_for_rows(
        &client,
        view,
        &[&["1", "a", "north"], &["3", "a", "north"]],
        Duration::from_secs(60),
    )
    .await;
    // Round 2: a moves south, b appears.
    execute(
        &client,
        "UPDATE cells SET region = 'south' WHERE cell_id = 'a'",
    )
    .await;
    execute(&client, "INSERT INTO cells VALUES ('b', 'east')").await;
    broker.produce("calls", &[call("a", 4), call("b", 5)]);
    wait_for_rows(
        &client,
        view,
        &[
            &["1", "a", "north"],
            &["3", "a", "north"],
            &["4", "a", "south"],
            &["5", "b", "east"],
        ],
        Duration::from_secs(60),
    )
    .await;
    // Round 3: a is gone; b's later call still comes through.
    execute(&client, "DELETE FROM cells WHERE cell_id = 'a'").await;
    broker.produce("calls", &[call("a", 6), call("b", 7)]);
    wait_for_rows(
        &client,
        view,
        &[
            &["1", "a", "north"],
            &["3", "a", "north"],
            &["4", "a", "south"],
            &["5", "b", "east"],
            &["7", "b", "east"],
        ],
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(
        rows(
            &client,
            "SELECT rows_in, rows_out FROM sluice.jobs WHERE name = 'enriched'"
        )
        .await,
        vec![vec!["7".to_string(), "5".to_string()]]
    );
}

/// A Kafka sink of final window rows, consumed back from the broker: every
/// row of the view is written exactly once — also across a restart of the
/// server in the middle — and equals the reference.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_writes_every_final_row_once_across_a_restart() {
    let broker = Broker::start();
    broker.create_topic("calls", 4);
    broker.create_topic("kpi_out", 2);
    let data = events(21, 4, 600, 3_000, true);
    let max_ts = data.iter().map(|e| e.ts).max().unwrap();
    let (first, rest) = halves(&data, 4, 300);
    send(&broker, &first);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let flags = ["--checkpoint-interval", "200ms"];
    let sink = format!(
        "CREATE SINK kpi_out FROM tumble_final WITH ('connector' = 'kafka', 'topic' = 'kpi_out',
           'properties.bootstrap.servers' = '{}', 'format' = 'json')",
        broker.addr
    );
    let before: usize = {
        let mut server = TestServer::start_in(&dir, &flags);
        let client = server.client().await;
        execute(&client, &source_without_idleness(&broker)).await;
        execute(&client, FINAL_VIEW).await;
        execute(&client, &sink).await;
        assert_eq!(
            rows(&client, "SHOW SINKS").await,
            vec![vec!["kpi_out".to_string()]]
        );
        wait_until(
            Duration::from_secs(60),
            "the sink to write rows",
            || async {
                rows(
                    &client,
                    "SELECT rows_out FROM sluice.jobs WHERE name = 'kpi_out'",
                )
                .await[0][0]
                    != "0"
            },
        )
        .await;
        assert!(server.stop(), "a clean exit:\n{}", server.log());
        broker.consume("kpi_out", 2, Duration::from_secs(2)).len()
    };
    assert!(before > 0);
    send(&broker, &rest);
    send(&broker, &flush_events(4, max_ts));
    let server = TestServer::start_in(&dir, &flags);
    let client = server.client().await;
    let offsets: Vec<usize> = (0..4)
        .map(|p| data.iter().filter(|e| e.partition == p).count() + 1)
        .collect();
    wait_read_to(&client, "tumble_final", &offsets, max_ts).await;
    let view_rows: usize = rows(&client, "SELECT COUNT(*) FROM tumble_final").await[0][0]
        .parse()
        .unwrap();
    // Its counters start again with the server: the rows written before.
    wait_until(Duration::from_secs(60), "the sink to catch up", || async {
        rows(
            &client,
            "SELECT rows_out FROM sluice.jobs WHERE name = 'kpi_out'",
        )
        .await[0][0]
            .parse::<usize>()
            .unwrap()
            + before
            >= view_rows
    })
    .await;
    let messages = broker.consume("kpi_out", 2, Duration::from_secs(3));
    // Each message is one row: (window end, cell) -> (calls, total).
    let mut written = Windows::new();
    for m in &messages {
        let v: serde_json::Value = serde_json::from_str(m).unwrap_or_else(|e| panic!("{m}: {e}"));
        let start = ms(v["ws"].as_str().unwrap().replace('T', " ").as_str());
        let key = (
            start,
            start + 10_000,
            v["cell_id"].as_str().unwrap().to_string(),
        );
        let value = (
            v["calls"].as_i64().unwrap(),
            v["total_ms"].as_i64().unwrap(),
        );
        assert!(
            written.insert(key.clone(), value).is_none(),
            "{key:?} written twice"
        );
    }
    assert_eq!(messages.len(), view_rows, "one message per row of the view");
    let (expected, _) = reference(&data, 10_000, 10_000);
    written.retain(|(s, _, _), _| *s <= max_ts);
    assert_eq!(written, expected);
    // The sink reads the view: the view cannot be dropped first.
    let err = client
        .simple_query("DROP MATERIALIZED VIEW tumble_final")
        .await
        .unwrap_err();
    assert!(
        common::describe_error(&err).contains("because sink \"kpi_out\" depends on it"),
        "{}",
        common::describe_error(&err)
    );
    execute(&client, "DROP SINK kpi_out").await;
    execute(&client, "DROP MATERIALIZED VIEW tumble_final").await;
}

/// An upsert-kafka table: the latest value per key of a changelog topic,
/// tombstones deleting, usable as reference data for a stream; the same
/// rows after a restart (read again from the topic).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upsert_kafka_table_follows_its_topic() {
    use rdkafka::producer::{BaseRecord, Producer};
    let broker = Broker::start();
    broker.create_topic("cells", 2);
    broker.create_topic("calls", 1);
    let changelog = |changes: &[(&str, Option<&str>)]| {
        let producer = broker.producer();
        for (key, region) in changes {
            let k = format!(r#"{{"cell_id": "{key}"}}"#);
            let v = region.map(|r| format!(r#"{{"cell_id": "{key}", "region": "{r}"}}"#));
            let mut record = BaseRecord::<String, String>::to("cells")
                .key(&k)
                .partition(0);
            if let Some(v) = &v {
                record = record.payload(v);
            }
            producer.send(record).map_err(|(e, _)| e).unwrap();
        }
        producer.flush(Duration::from_secs(30)).unwrap();
    };
    changelog(&[
        ("a", Some("north")),
        ("b", Some("east")),
        ("c", Some("west")),
        ("a", Some("south")),
        ("b", None),
    ]);
    broker.produce("cells", &[(1, "not json".to_string())]);
    let table = format!(
        "CREATE TABLE cells (cell_id STRING PRIMARY KEY, region STRING)
         WITH ('connector' = 'upsert-kafka', 'topic' = 'cells',
               'properties.bootstrap.servers' = '{}', 'key.format' = 'json', 'value.format' = 'json')",
        broker.addr
    );
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let want = [&["a", "south"][..], &["c", "west"][..]];
    {
        let mut server = TestServer::start_in(&dir, &[]);
        let client = server.client().await;
        execute(&client, &table).await;
        wait_for_rows(
            &client,
            "SELECT * FROM cells ORDER BY cell_id",
            &want,
            Duration::from_secs(60),
        )
        .await;
        // Its rows come from the topic only; the bad message is a dead letter.
        let err = client.simple_query("DELETE FROM cells").await.unwrap_err();
        assert!(common::describe_error(&err).contains("follows Kafka topic \"cells\""));
        assert_eq!(
            rows(
                &client,
                "SELECT position FROM sluice.dead_letters WHERE job = 'cells'"
            )
            .await,
            vec![vec!["topic cells partition 1 offset 0".to_string()]]
        );
        // A stream joined with it: calls enriched with the latest region.
        execute(&client, &source_sql("calls", &broker)).await;
        execute(
            &client,
            "CREATE MATERIALIZED VIEW enriched AS SELECT e.cell_id, c.region, e.duration_ms
             FROM calls AS e JOIN cells AS c ON e.cell_id = c.cell_id",
        )
        .await;
        let call = |cell: &str, d: i32| {
            (
                0,
                format!(
                    r#"{{"event_time": {BASE_MS}, "cell_id": "{cell}", "status": "ok", "duration_ms": {d}}}"#
                ),
            )
        };
        broker.produce("calls", &[call("a", 1), call("b", 2), call("c", 3)]);
        wait_for_rows(
            &client,
            "SELECT * FROM enriched ORDER BY duration_ms",
            &[&["a", "south", "1"], &["c", "west", "3"]],
            Duration::from_secs(60),
        )
        .await;
        // A change on the topic reaches the table (and later calls).
        changelog(&[("c", None), ("d", Some("north"))]);
        wait_for_rows(
            &client,
            "SELECT * FROM cells ORDER BY cell_id",
            &[&["a", "south"], &["d", "north"]],
            Duration::from_secs(60),
        )
        .await;
        assert!(server.stop());
    }
    let server = TestServer::start_in(&dir, &[]);
    let client = server.client().await;
    wait_for_rows(
        &client,
        "SELECT * FROM cells ORDER BY cell_id",
        &[&["a", "south"], &["d", "north"]],
        Duration::from_secs(60),
    )
    .await;
    // Raw keys: the message key is the key column's text.
    broker.create_topic("cells_raw", 1);
    let producer = broker.producer();
    for (key, value) in [
        ("x", Some(r#"{"cell_id": "x", "region": "r1"}"#)),
        ("y", Some(r#"{"cell_id": "y", "region": "r2"}"#)),
        ("x", None),
    ] {
        let mut record = BaseRecord::<str, str>::to("cells_raw").key(key);
        if let Some(v) = value {
            record = record.payload(v);
        }
        producer.send(record).map_err(|(e, _)| e).unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    execute(
        &client,
        &table
            .replace("TABLE cells", "TABLE cells_raw")
            .replace("'topic' = 'cells'", "'topic' = 'cells_raw'")
            .replace("'key.format' = 'json'", "'key.format' = 'raw'"),
    )
    .await;
    wait_for_rows(
        &client,
        "SELECT * FROM cells_raw",
        &[&["y", "r2"]],
        Duration::from_secs(60),
    )
    .await;
}

/// A sink of a view whose rows change writes upserts keyed by the view's
/// group columns, and tombstones for rows deleted (here by HAVING): read
/// back in order, the topic holds exactly the view's rows. First the rows
/// the view had when the sink was made, then its changes, across a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upsert_sink_follows_a_view_whose_rows_change() {
    let broker = Broker::start();
    broker.create_topic("per_cell", 3);
    broker.create_topic("per_cell_as", 2);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let flags = ["--checkpoint-interval", "100ms"];
    let sink = format!(
        "CREATE SINK per_cell_out FROM per_cell WITH ('connector' = 'kafka', 'topic' = 'per_cell',
           'properties.bootstrap.servers' = '{}', 'format' = 'json')",
        broker.addr
    );
    {
        let mut server = TestServer::start_in(&dir, &flags);
        let client = server.client().await;
        execute(
            &client,
            "CREATE TABLE gen (cell_id STRING, duration_ms INT)
             WITH ('connector' = 'datagen', 'rows-per-second' = '400', 'number-of-rows' = '4000')",
        )
        .await;
        // Cells leave the view when they reach 8 calls: deletes.
        execute(
            &client,
            "CREATE MATERIALIZED VIEW per_cell AS
             SELECT cell_id, COUNT(*) AS calls, MAX(duration_ms) AS longest
             FROM gen GROUP BY cell_id HAVING COUNT(*) < 8",
        )
        .await;
        wait_until(Duration::from_secs(30), "rows in the view", || async {
            rows(&client, "SELECT COUNT(*) FROM per_cell").await[0][0] != "0"
        })
        .await;
        execute(&client, &sink).await;
        // A view over the view follows its changes, across the restart.
        execute(
            &client,
            "CREATE MATERIALIZED VIEW busy AS SELECT cell_id, calls FROM per_cell WHERE calls >= 4",
        )
        .await;
        // The same query as the sink's own (CREATE SINK ... AS).
        execute(
            &client,
            &format!(
                "CREATE SINK per_cell_as AS
                 SELECT cell_id, COUNT(*) AS calls, MAX(duration_ms) AS longest
                 FROM gen GROUP BY cell_id HAVING COUNT(*) < 8
                 WITH ('connector' = 'kafka', 'topic' = 'per_cell_as',
                       'properties.bootstrap.servers' = '{}', 'format' = 'json')",
                broker.addr
            ),
        )
        .await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(common::job_status(&client, "per_cell").await.0, "running");
        assert!(server.stop(), "a clean exit:\n{}", server.log());
    }
    let server = TestServer::start_in(&dir, &flags);
    let client = server.client().await;
    // Each topic against its view: the sink's own view reads the
    // generator again.
    for (topic, partitions, view) in [
        ("per_cell", 3, "per_cell"),
        ("per_cell_as", 2, "\"__sink_per_cell_as\""),
    ] {
        common::wait_finished(&client, view.trim_matches('"')).await;
        let mut expected: Vec<(String, String)> = rows(
            &client,
            &format!("SELECT cell_id, calls, longest FROM {view}"),
        )
        .await
        .into_iter()
        .map(|r| {
            (
                format!(r#"{{"cell_id":"{}"}}"#, r[0]),
                format!(
                    r#"{{"cell_id":"{}","calls":{},"longest":{}}}"#,
                    r[0], r[1], r[2]
                ),
            )
        })
        .collect();
        expected.sort();
        assert!(expected.len() > 10, "{expected:?}");
        // Some cells reached 8 calls and were deleted: tombstones.
        let mut last: Vec<(String, String)> = Vec::new();
        wait_until(
            Duration::from_secs(60),
            "the topic to hold the view's rows",
            || {
                let messages = broker.consume_keyed(topic, partitions, Duration::from_secs(1));
                let mut latest: std::collections::BTreeMap<String, Option<String>> =
                    Default::default();
                let mut tombstones = 0;
                for (key, value) in messages {
                    tombstones += usize::from(value.is_none());
                    latest.insert(key, value);
                }
                last = latest
                    .into_iter()
                    .filter_map(|(k, v)| v.map(|v| (k, v)))
                    .collect();
                let done = last == expected && tombstones > 0;
                async move { done }
            },
        )
        .await;
        assert_eq!(last, expected, "{topic}");
    }
    common::wait_finished(&client, "busy").await;
    let busy = rows(&client, "SELECT cell_id, calls FROM busy ORDER BY cell_id").await;
    assert!(!busy.is_empty());
    assert_eq!(
        busy,
        rows(
            &client,
            "SELECT cell_id, calls FROM per_cell WHERE calls >= 4 ORDER BY cell_id"
        )
        .await
    );
    // The sink's own view goes with it.
    assert_eq!(
        rows(&client, "SHOW SINKS ").await,
        vec![
            vec!["per_cell_as".to_string()],
            vec!["per_cell_out".to_string()]
        ]
    );
    execute(&client, "DROP SINK per_cell_as").await;
    assert_eq!(
        rows(&client, "SELECT name FROM sluice.jobs ORDER BY name").await,
        vec![
            vec!["busy".to_string()],
            vec!["per_cell".to_string()],
            vec!["per_cell_out".to_string()]
        ]
    );
}

/// A join of two Kafka topics: impressions LEFT JOIN clicks within 10 s,
/// each topic with two partitions read by two instances (the sides'
/// readers kept aligned in event time). Every impression shows once: with
/// each click of its interval, or alone once no click can come for it;
/// equal to the answer computed here from the same events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_of_two_topics_matches_the_reference() {
    let broker = Broker::start();
    broker.create_topic("imps", 2);
    broker.create_topic("clks", 2);
    let mut rng = StdRng::seed_from_u64(5);
    // (imp_id, ts) of impressions, every 100 ms; clicks for about half,
    // 0 to 15 s after (so some miss the 10 s interval); disorder below the
    // 2 s watermark delay within each partition.
    let imps: Vec<(i64, i64)> = (0..600).map(|i| (i, BASE_MS + i * 100)).collect();
    let mut clks: Vec<(i64, i64)> = Vec::new();
    for (id, ts) in &imps {
        if rng.random_bool(0.5) {
            for _ in 0..rng.random_range(1..3) {
                clks.push((*id, ts + rng.random_range(0..15_000)));
            }
        }
    }
    clks.sort_by_key(|(_, ts)| *ts);
    let records = |rows: &[(i64, i64)], rng: &mut StdRng| -> Vec<(i32, String)> {
        let mut keyed: Vec<(i64, (i32, String))> = rows
            .iter()
            .map(|(id, ts)| {
                (
                    ts - rng.random_range(0..1_500),
                    (
                        (id % 2) as i32,
                        format!(r#"{{"id": {id}, "event_time": {ts}}}"#),
                    ),
                )
            })
            .collect();
        keyed.sort_by_key(|(order, _)| *order);
        keyed.into_iter().map(|(_, r)| r).collect()
    };
    broker.produce("imps", &records(&imps, &mut rng));
    broker.produce("clks", &records(&clks, &mut rng));
    // An hour later on every partition: the watermarks pass everything.
    let end = BASE_MS + 3_600_000;
    for topic in ["imps", "clks"] {
        broker.produce(
            topic,
            &[0, 1].map(|p| (p, format!(r#"{{"id": -1, "event_time": {end}}}"#))),
        );
    }
    let server = TestServer::start();
    let client = server.client().await;
    for topic in ["imps", "clks"] {
        execute(
            &client,
            &format!(
                "CREATE TABLE {topic} (id BIGINT, event_time BIGINT,
                   ts AS TO_TIMESTAMP_LTZ(event_time, 3),
                   WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
                 ) WITH ('connector' = 'kafka', 'topic' = '{topic}',
                         'properties.bootstrap.servers' = '{}',
                         'scan.startup.mode' = 'earliest-offset', 'format' = 'json')",
                broker.addr
            ),
        )
        .await;
    }
    execute(
        &client,
        "CREATE MATERIALIZED VIEW clicked AS
         SELECT i.id, COALESCE(c.event_time, -1) AS click
         FROM imps i LEFT JOIN clks c
           ON i.id = c.id AND c.ts BETWEEN i.ts AND i.ts + INTERVAL '10' SECOND",
    )
    .await;
    let mut expected: Vec<Vec<String>> = Vec::new();
    for (id, ts) in &imps {
        let mut clicks: Vec<i64> = clks
            .iter()
            .filter(|(c, t)| c == id && *t >= *ts && *t <= ts + 10_000)
            .map(|(_, t)| *t)
            .collect();
        if clicks.is_empty() {
            clicks.push(-1);
        }
        for click in clicks {
            expected.push(vec![id.to_string(), click.to_string()]);
        }
    }
    expected.sort();
    assert!(expected.iter().any(|r| r[1] == "-1") && expected.iter().any(|r| r[1] != "-1"));
    let sql = "SELECT CAST(id AS VARCHAR), CAST(click AS VARCHAR) FROM clicked WHERE id >= 0";
    wait_until(Duration::from_secs(60), "the join's rows", || async {
        let mut got = rows(&client, sql).await;
        got.sort();
        got.len() >= expected.len()
    })
    .await;
    let mut got = rows(&client, sql).await;
    got.sort();
    assert_eq!(got, expected);
    let counted = rows(
        &client,
        "SELECT late_rows, bad_rows FROM sluice.jobs WHERE name = 'clicked'",
    )
    .await;
    assert_eq!(counted, vec![vec!["0".to_string(), "0".to_string()]]);
}

/// Exactly-once sinks (Kafka transactions) killed while they write, then
/// started again: consumed back with `read_committed`, the topic of a view
/// of rows holds each of its rows once, and the topic of a view whose rows
/// change holds each change once (a cell's count only grows, message
/// after message) and ends at the view's rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_sinks_write_every_row_once_across_a_kill() {
    let broker = Broker::start();
    broker.create_topic("picked_out", 2);
    broker.create_topic("counts_out", 2);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let flags = ["--checkpoint-interval", "200ms"];
    let mut server = TestServer::start_in(&dir, &flags);
    let client = server.client().await;
    execute(
        &client,
        "CREATE TABLE gen (id BIGINT, cell_id STRING, duration_ms INT)
         WITH ('connector' = 'datagen', 'rows-per-second' = '3000', 'number-of-rows' = '30000')",
    )
    .await;
    execute(
        &client,
        "CREATE MATERIALIZED VIEW picked AS SELECT id, cell_id FROM gen WHERE duration_ms > 0",
    )
    .await;
    execute(
        &client,
        "CREATE MATERIALIZED VIEW per_cell AS SELECT cell_id, COUNT(*) AS n FROM gen GROUP BY cell_id",
    )
    .await;
    for (view, topic) in [("picked", "picked_out"), ("per_cell", "counts_out")] {
        execute(
            &client,
            &format!(
                "CREATE SINK {topic} FROM {view} WITH ('connector' = 'kafka', 'topic' = '{topic}',
                   'properties.bootstrap.servers' = '{}', 'format' = 'json',
                   'sink.delivery-guarantee' = 'exactly-once')",
                broker.addr
            ),
        )
        .await;
    }
    wait_until(Duration::from_secs(60), "both sinks to write", || async {
        rows(
            &client,
            "SELECT MIN(rows_out) FROM sluice.jobs WHERE name IN ('picked_out', 'counts_out')",
        )
        .await[0][0]
            .parse::<u64>()
            .unwrap_or(0)
            > 1000
    })
    .await;
    let status = common::job_status(&client, "picked").await.0;
    server.kill();
    assert_eq!(status, "running", "killed while rows still came");
    drop(client);

    let server = TestServer::start_in(&dir, &flags);
    let client = server.client().await;
    common::wait_finished(&client, "picked").await;
    common::wait_finished(&client, "per_cell").await;
    let mut expected: Vec<(i64, String)> = rows(&client, "SELECT id, cell_id FROM picked")
        .await
        .into_iter()
        .map(|r| (r[0].parse().unwrap(), r[1].clone()))
        .collect();
    expected.sort();
    let counts: BTreeMap<String, i64> = rows(&client, "SELECT cell_id, n FROM per_cell")
        .await
        .into_iter()
        .map(|r| (r[0].clone(), r[1].parse().unwrap()))
        .collect();
    assert!(expected.len() > 10_000, "rows: {}", expected.len());

    // Rows: each once.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let written = loop {
        let messages = broker.consume("picked_out", 2, Duration::from_secs(2));
        if messages.len() >= expected.len() || std::time::Instant::now() > deadline {
            break messages;
        }
    };
    let mut got: Vec<(i64, String)> = written
        .iter()
        .map(|m| {
            let v: serde_json::Value = serde_json::from_str(m).unwrap();
            (
                v["id"].as_i64().unwrap(),
                v["cell_id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(got.len(), expected.len(), "one message per row");
    assert!(got == expected, "the topic holds the view's rows");

    // Changes: each once, in order, ending at the view's rows.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let mut last: BTreeMap<String, i64> = BTreeMap::new();
        for (key, value) in broker.consume_keyed("counts_out", 2, Duration::from_secs(2)) {
            let key: serde_json::Value = serde_json::from_str(&key).unwrap();
            let cell = key["cell_id"].as_str().unwrap().to_string();
            let value: serde_json::Value = serde_json::from_str(&value.unwrap()).unwrap();
            let n = value["n"].as_i64().unwrap();
            if let Some(before) = last.insert(cell.clone(), n) {
                assert!(
                    n > before,
                    "cell {cell}: {n} after {before}: a change written twice"
                );
            }
        }
        if last == counts {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the changes end at the view's rows: {} of {} cells",
            last.len(),
            counts.len()
        );
    }
}

/// Flink's way: a Kafka table that INSERT INTO writes, exactly once across
/// a SIGKILL, each JSON object keyed by the table's spelling of its
/// columns. The same table read back by a view holds the same rows. The
/// rows are a datagen sequence, so the answer is computed here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insert_into_a_kafka_table_writes_every_row_once_across_a_kill() {
    let broker = Broker::start();
    broker.create_topic("calls_out", 2);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let flags = ["--checkpoint-interval", "200ms"];
    let mut server = TestServer::start_in(&dir, &flags);
    let client = server.client().await;
    execute(
        &client,
        &format!(
            "CREATE TABLE gen (id BIGINT, cell_id STRING, duration_ms INT)
             WITH ('connector' = 'datagen', 'rows-per-second' = '3000',
                   'fields.id.kind' = 'sequence', 'fields.id.start' = '1', 'fields.id.end' = '30000');
             CREATE TABLE calls_out (`callId` BIGINT, `cellId` STRING, `longCall` BOOLEAN)
             WITH ('connector' = 'kafka', 'topic' = 'calls_out', 'format' = 'json',
                   'properties.bootstrap.servers' = '{}', 'scan.startup.mode' = 'earliest-offset',
                   'sink.delivery-guarantee' = 'exactly-once');
             INSERT INTO calls_out
               SELECT id, CONCAT('c', CAST(MOD(id, 7) AS STRING)), MOD(id, 4) = 0
               FROM gen WHERE MOD(id, 10) <> 0",
            broker.addr
        ),
    )
    .await;
    let expected: Vec<(i64, String, bool)> = (1..=30000i64)
        .filter(|id| id % 10 != 0)
        .map(|id| (id, format!("c{}", id % 7), id % 4 == 0))
        .collect();
    common::wait_rows_out(&client, "insert_into_calls_out", 1000).await;
    let status = common::job_status(&client, "__sink_insert_into_calls_out")
        .await
        .0;
    server.kill();
    assert_eq!(status, "running", "killed while rows still came");
    drop(client);

    let server = TestServer::start_in(&dir, &flags);
    let client = server.client().await;
    common::wait_finished(&client, "__sink_insert_into_calls_out").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let written = loop {
        let messages = broker.consume("calls_out", 2, Duration::from_secs(2));
        if messages.len() >= expected.len() || std::time::Instant::now() > deadline {
            break messages;
        }
    };
    let mut got: Vec<(i64, String, bool)> = written
        .iter()
        .map(|m| {
            let v: serde_json::Value = serde_json::from_str(m).unwrap();
            (
                v["callId"].as_i64().unwrap(),
                v["cellId"].as_str().unwrap().to_string(),
                v["longCall"].as_bool().unwrap(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(got.len(), expected.len(), "one message per row");
    assert!(got == expected, "the topic holds the query's rows");

    // The table reads back what INSERT wrote, under its own names.
    execute(
        &client,
        "CREATE MATERIALIZED VIEW back AS SELECT COUNT(*) AS n, SUM(callid) AS ids, SUM(CASE WHEN longcall THEN 1 ELSE 0 END) AS long_calls FROM calls_out",
    )
    .await;
    let ids: i64 = expected.iter().map(|e| e.0).sum();
    let long_calls = expected.iter().filter(|e| e.2).count();
    common::wait_for_rows(
        &client,
        "SELECT n, ids, long_calls FROM back",
        &[&[
            &expected.len().to_string(),
            &ids.to_string(),
            &long_calls.to_string(),
        ]],
        Duration::from_secs(60),
    )
    .await;
}

/// INSERT INTO an upsert-kafka table writes its topic keyed by the primary
/// key: an aggregation's changes as upserts and tombstones, a query whose
/// rows never change as one upsert per row. The table follows its topic,
/// so it ends up holding the query's rows, computed here by hand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insert_into_an_upsert_kafka_table_writes_upserts_by_its_key() {
    let broker = Broker::start();
    broker.create_topic("per_cell", 2);
    broker.create_topic("doubled", 1);
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(
        &tmp.path().join("data"),
        &["--checkpoint-interval", "100ms"],
    );
    let client = server.client().await;
    // Cell c0 gets ids 7, 14, ..., 3500 (500 rows); the other cells pass
    // 1000 rows and leave the query (HAVING): tombstones.
    execute(
        &client,
        &format!(
            "CREATE TABLE gen (id BIGINT) WITH ('connector' = 'datagen', 'rows-per-second' = '20000',
               'fields.id.kind' = 'sequence', 'fields.id.start' = '1', 'fields.id.end' = '30000');
             CREATE TABLE per_cell (`cellId` STRING, calls BIGINT, ids BIGINT, PRIMARY KEY (`cellId`) NOT ENFORCED)
             WITH ('connector' = 'upsert-kafka', 'topic' = 'per_cell', 'properties.bootstrap.servers' = '{0}',
                   'key.format' = 'json', 'value.format' = 'json');
             CREATE TABLE doubled (k STRING PRIMARY KEY NOT ENFORCED, v BIGINT)
             WITH ('connector' = 'upsert-kafka', 'topic' = 'doubled', 'properties.bootstrap.servers' = '{0}',
                   'key.format' = 'raw', 'value.format' = 'json');
             INSERT INTO per_cell
               SELECT CONCAT('c', CAST(MOD(id, 7) AS STRING)), COUNT(*), SUM(id) FROM gen
               WHERE MOD(id, 7) <> 0 OR id <= 3500
               GROUP BY CONCAT('c', CAST(MOD(id, 7) AS STRING)) HAVING COUNT(*) < 1000;
             INSERT INTO doubled SELECT CONCAT('k', CAST(id AS STRING)), id * 2 FROM gen WHERE id <= 50",
            broker.addr
        ),
    )
    .await;
    let c0: i64 = (1..=500).map(|i| 7 * i).sum();
    wait_for_rows(
        &client,
        "SELECT * FROM per_cell",
        &[&["c0", "500", &c0.to_string()]],
        Duration::from_secs(90),
    )
    .await;
    // The messages: keyed by the key's JSON object, the last of each key
    // a row for c0 and tombstones for the others.
    let mut latest = std::collections::BTreeMap::new();
    for (key, value) in broker.consume_keyed("per_cell", 2, Duration::from_secs(1)) {
        latest.insert(key, value);
    }
    let keys: Vec<&String> = latest.keys().collect();
    let want: Vec<String> = (0..7).map(|c| format!(r#"{{"cellId":"c{c}"}}"#)).collect();
    assert_eq!(keys, want.iter().collect::<Vec<_>>());
    assert_eq!(
        latest[&want[0]].as_deref(),
        Some(format!(r#"{{"cellId":"c0","calls":500,"ids":{c0}}}"#).as_str())
    );
    assert!(latest.values().skip(1).all(Option::is_none), "{latest:?}");

    // One upsert per row, keyed by the key's text.
    let want: Vec<Vec<String>> = (1..=50)
        .map(|i| vec![format!("k{i}"), (2 * i).to_string()])
        .collect();
    let want: Vec<Vec<&str>> = want
        .iter()
        .map(|r| r.iter().map(String::as_str).collect())
        .collect();
    let want: Vec<&[&str]> = want.iter().map(Vec::as_slice).collect();
    let mut sorted = want.clone();
    sorted.sort_by_key(|r| r[0].to_string());
    wait_for_rows(
        &client,
        "SELECT k, v FROM doubled ORDER BY k",
        &sorted,
        Duration::from_secs(60),
    )
    .await;
    let messages = broker.consume_keyed("doubled", 1, Duration::from_secs(1));
    assert_eq!(messages.len(), 50);
    assert!(messages.iter().all(|(k, v)| v
        .as_deref()
        .is_some_and(|v| v.contains(&format!(r#""k":"{k}""#)))));

    // A query that changes by other columns than the key is refused.
    let err = client
        .simple_query("INSERT INTO per_cell SELECT CAST(id AS STRING), COUNT(*), SUM(id) FROM gen GROUP BY id, MOD(id, 2)")
        .await
        .unwrap_err();
    let text = common::describe_error(&err);
    assert!(
        text.starts_with("0A000") && text.contains("change by"),
        "{text}"
    );
}
