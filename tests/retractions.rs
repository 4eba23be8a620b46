//! Aggregations over views whose rows change, against DataFusion's batch
//! answer.
//!
//! Property: a view that aggregates an updating view (its rows move
//! between groups as they change, and leave it when HAVING drops them)
//! ends equal to the batch query that nests the same two aggregations over
//! the same events, and so does a view that aggregates that view in turn.
//! Each case draws events (keys, values with some NULLs, the HAVING cap)
//! from a seed and writes them to a file; small batches and frequent
//! checkpoints make the upstream commit many versions of each row, each of
//! which the aggregation over it must take back.
//!
//! And: the rows an aggregation keeps to take back survive SIGKILL: killed
//! after checkpoints were committed and started again on the same data
//! directory, the views end with the same answer.

mod common;

use std::io::Write as _;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Array};
use arrow::record_batch::RecordBatch;
use common::{batch_rows, execute, rows, wait_finished, TestServer};
use datafusion::prelude::SessionContext;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const CASES: u64 = 4;

struct Case {
    keys: Vec<i32>,
    values: Vec<Option<i32>>,
    /// Keys leave the upstream view at this many events.
    cap: i64,
}

fn draw(seed: u64, n: usize) -> Case {
    let mut rng = StdRng::seed_from_u64(seed);
    let keys = rng.random_range(20..400);
    let per_key = n as i64 / keys as i64;
    Case {
        keys: (0..n).map(|_| rng.random_range(0..keys)).collect(),
        values: (0..n)
            .map(|_| (rng.random_range(0..10) > 0).then(|| rng.random_range(-500..1000)))
            .collect(),
        cap: rng.random_range(per_key / 2..per_key * 2 + 2),
    }
}

fn write(path: &std::path::Path, case: &Case) {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for (k, v) in case.keys.iter().zip(&case.values) {
        match v {
            Some(v) => writeln!(file, r#"{{"k": {k}, "v": {v}}}"#).unwrap(),
            None => writeln!(file, r#"{{"k": {k}, "v": null}}"#).unwrap(),
        }
    }
    file.flush().unwrap();
}

fn batch_of(case: &Case) -> RecordBatch {
    RecordBatch::try_from_iter(vec![
        (
            "k",
            Arc::new(Int32Array::from_iter_values(case.keys.iter().copied())) as ArrayRef,
        ),
        (
            "v",
            Arc::new(Int32Array::from(case.values.clone())) as ArrayRef,
        ),
    ])
    .unwrap()
}

/// The upstream view, the views over it, and the queries that read them.
fn views(cap: i64) -> [String; 3] {
    [
        format!(
            "CREATE MATERIALIZED VIEW per_key AS
             SELECT k, COUNT(*) AS n, SUM(v) AS total, MAX(v) AS top
             FROM events GROUP BY k HAVING COUNT(*) < {cap}"
        ),
        "CREATE MATERIALIZED VIEW by_n AS
         SELECT n % 7 AS bucket, COUNT(*) AS keys, SUM(total) AS total,
                AVG(total) AS avg_total, MIN(top) AS low, MAX(top) AS high,
                COUNT(top) AS tops, SUM(n) FILTER (WHERE top > 900) AS high_n
         FROM per_key GROUP BY n % 7"
            .to_string(),
        "CREATE MATERIALIZED VIEW by_keys AS
         SELECT keys % 3 AS m, COUNT(*) AS buckets, SUM(total) AS total, MAX(high) AS high
         FROM by_n GROUP BY keys % 3"
            .to_string(),
    ]
}

const READ_BY_N: &str = "SELECT bucket, keys, total, CAST(ROUND(avg_total * 1000) AS BIGINT), low, high, tops, high_n FROM by_n ORDER BY bucket";
const READ_BY_KEYS: &str = "SELECT m, buckets, total, high FROM by_keys ORDER BY m";

/// The same nested aggregations in batch.
fn reference(cap: i64) -> [String; 2] {
    let per_key = format!(
        "SELECT k, COUNT(*) AS n, SUM(v) AS total, MAX(v) AS top FROM e GROUP BY k HAVING COUNT(*) < {cap}"
    );
    let by_n = format!(
        "SELECT n % 7 AS bucket, COUNT(*) AS keys, SUM(total) AS total, AVG(total) AS avg_total,
                MIN(top) AS low, MAX(top) AS high, COUNT(top) AS tops,
                SUM(n) FILTER (WHERE top > 900) AS high_n
         FROM ({per_key}) GROUP BY n % 7"
    );
    [
        format!(
            "SELECT bucket, keys, total, CAST(ROUND(avg_total * 1000) AS BIGINT), low, high, tops, high_n FROM ({by_n}) ORDER BY bucket"
        ),
        format!(
            "SELECT keys % 3 AS m, COUNT(*), SUM(total), MAX(high) FROM ({by_n}) GROUP BY keys % 3 ORDER BY m"
        ),
    ]
}

const FLAGS: [&str; 6] = [
    "--parallelism",
    "2",
    "--batch-size",
    "64",
    "--checkpoint-interval",
    "50ms",
];

/// Writes the case's events to a file in `dir`, and creates their source
/// and the views over it.
async fn create_views(client: &tokio_postgres::Client, dir: &std::path::Path, case: &Case) {
    let path = dir.join("events.json");
    write(&path, case);
    execute(
        client,
        &format!(
            "CREATE TABLE events (k INT, v INT) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json')",
            path.display()
        ),
    )
    .await;
    for view in views(case.cap) {
        execute(client, &view).await;
    }
}

async fn wait_views(client: &tokio_postgres::Client) {
    for view in ["per_key", "by_n", "by_keys"] {
        wait_finished(client, view).await;
    }
}

async fn expected(case: &Case) -> [Vec<Vec<String>>; 2] {
    let ctx = SessionContext::new();
    ctx.register_batch("e", batch_of(case)).unwrap();
    let [by_n, by_keys] = reference(case.cap);
    [
        batch_rows(&ctx, &by_n).await,
        batch_rows(&ctx, &by_keys).await,
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregations_over_updating_views_equal_the_nested_batch_aggregation() {
    for seed in 0..CASES {
        let case = draw(seed, 20_000);
        let tmp = tempfile::tempdir().unwrap();
        let server = TestServer::start_in(&tmp.path().join("data"), &FLAGS);
        let client = server.client().await;
        create_views(&client, tmp.path(), &case).await;
        wait_views(&client).await;
        let [by_n, by_keys] = expected(&case).await;
        assert!(by_n.len() > 1, "seed {seed}: buckets {by_n:?}");
        assert_eq!(rows(&client, READ_BY_N).await, by_n, "seed {seed}: by_n");
        assert_eq!(
            rows(&client, READ_BY_KEYS).await,
            by_keys,
            "seed {seed}: by_keys"
        );
        // Rows were taken back: the upstream changed some keys more than
        // once.
        let upstream = rows(
            &client,
            "SELECT rows_out FROM sluice.jobs WHERE name = 'per_key'",
        )
        .await;
        let changes: usize = upstream[0][0].parse().unwrap();
        let keys: std::collections::HashSet<i32> = case.keys.iter().copied().collect();
        assert!(
            changes > keys.len(),
            "seed {seed}: the upstream changed rows {changes} times"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aggregation_over_an_updating_view_killed_and_restarted_ends_exact() {
    let case = draw(99, 200_000);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut server = TestServer::start_in(&dir, &FLAGS);
    let client = server.client().await;
    create_views(&client, tmp.path(), &case).await;
    common::wait_checkpoints(&client, "by_n", 3).await;
    let before = rows(
        &client,
        "SELECT status FROM sluice.jobs WHERE name = 'by_n'",
    )
    .await;
    server.kill();
    assert_eq!(before[0][0], "running", "killed while it ran");
    drop(client);
    let server = TestServer::start_in(&dir, &FLAGS);
    let client = server.client().await;
    wait_views(&client).await;
    let [by_n, by_keys] = expected(&case).await;
    assert_eq!(
        rows(&client, READ_BY_N).await,
        by_n,
        "by_n after the restart"
    );
    assert_eq!(
        rows(&client, READ_BY_KEYS).await,
        by_keys,
        "by_keys after the restart"
    );
}
