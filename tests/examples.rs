//! The example pipelines in `sql/` run as documented: every statement
//! succeeds and every view produces rows; the alarms pipeline's output
//! topic is consumed and compared with a reference.

mod common;

use std::time::Duration;

use common::{rows, wait_until, TestServer};

/// Runs an example file and waits until each of `views` has rows; returns
/// the server and a client of it.
async fn run_example(file: &str, views: &[&str]) -> (TestServer, tokio_postgres::Client) {
    let server = TestServer::start();
    let client = server.client().await;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("sql")
        .join(file);
    let sql = std::fs::read_to_string(&path).unwrap();
    if let Err(e) = client.simple_query(&sql).await {
        panic!("{file}: {}", common::describe_error(&e));
    }
    for view in views {
        wait_until(
            Duration::from_secs(60),
            &format!("rows in {view}"),
            || async { rows(&client, &format!("SELECT COUNT(*) FROM {view}")).await[0][0] != "0" },
        )
        .await;
    }
    let statuses = rows(&client, "SELECT DISTINCT status FROM sluice.jobs").await;
    assert_eq!(statuses, vec![vec!["running".to_string()]], "{file}");
    (server, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telecom_kpis() {
    // cell_failures_5m shows final five-minute windows only: too slow to wait for.
    run_example(
        "telecom_kpis.sql",
        &[
            "cell_kpi_1m",
            "cell_alarms",
            "subscriber_sessions",
            "cell_calls_hour_so_far",
            "cells_by_failure_decile",
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yahoo_streaming_benchmark() {
    let (_server, client) =
        run_example("yahoo_streaming_benchmark.sql", &["campaign_views_10s"]).await;
    // The reference table holds the generator's mapping (ad-0123 is in
    // camp-012), so every view joins: each campaign's events are counted,
    // and no ad is left out.
    assert_eq!(
        rows(
            &client,
            "SELECT COUNT(*), MIN(ad_id), MAX(ad_id), COUNT(DISTINCT campaign_id) FROM ad_campaigns"
        )
        .await,
        vec![vec!["1000", "ad-0000", "ad-0999", "100"]]
    );
    assert_eq!(
        rows(
            &client,
            "SELECT campaign_id FROM ad_campaigns WHERE ad_id IN ('ad-0000', 'ad-0123', 'ad-0999') ORDER BY 1"
        )
        .await,
        vec![vec!["camp-000"], vec!["camp-012"], vec!["camp-099"]]
    );
    wait_until(
        Duration::from_secs(60),
        "views of most campaigns",
        || async {
            let n: usize = rows(
                &client,
                "SELECT COUNT(DISTINCT campaign_id) FROM campaign_views_10s",
            )
            .await[0][0]
                .parse()
                .unwrap();
            n >= 90
        },
    )
    .await;
    let unknown = rows(
        &client,
        "SELECT COUNT(*) FROM campaign_views_10s WHERE campaign_id NOT LIKE 'camp-0%'",
    )
    .await;
    assert_eq!(unknown, vec![vec!["0"]]);
}

/// The alarms pipeline end to end: calls on Kafka, per-cell thresholds in a
/// table, final sliding-window alarms consumed back from the `alarms` topic
/// and compared with a reference computed here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarms_reach_their_topic() {
    use std::collections::BTreeSet;
    let broker = common::kafka::Broker::start();
    broker.create_topic("calls", 1);
    broker.create_topic("alarms", 1);
    let server = TestServer::start();
    let client = server.client().await;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sql/alarms.sql");
    let sql = std::fs::read_to_string(&path)
        .unwrap()
        .replace("127.0.0.1:9092", &broker.addr);
    if let Err(e) = client.simple_query(&sql).await {
        panic!("alarms.sql: {}", common::describe_error(&e));
    }
    // Three minutes of calls, in time order: cell i fails on every call
    // whose second is a multiple of 4 + i; cell-0004 is not in the table.
    const BASE_MS: i64 = 1_704_067_200_000;
    let thresholds = [("cell-0001", 5), ("cell-0002", 5), ("cell-0003", 3)];
    let mut calls = Vec::new();
    for second in 0..180i64 {
        for (i, cell) in ["cell-0001", "cell-0002", "cell-0003", "cell-0004"]
            .iter()
            .enumerate()
        {
            let failed = second % (4 + i as i64) == 0;
            calls.push((BASE_MS + second * 1000, cell.to_string(), failed));
        }
    }
    let records: Vec<(i32, String)> = calls
        .iter()
        .map(|(ts, cell, failed)| {
            let status = if *failed { "failed" } else { "ok" };
            (0, format!(r#"{{"event_time": {ts}, "cell_id": "{cell}", "msisdn": "1", "status": "{status}", "duration_ms": 10}}"#))
        })
        .chain(std::iter::once((
            0,
            format!(r#"{{"event_time": {}, "cell_id": "flush", "msisdn": "1", "status": "ok", "duration_ms": 0}}"#, BASE_MS + 3_600_000),
        )))
        .collect();
    broker.produce("calls", &records);
    // The reference: every 1 min window sliding by 10 s that holds a call.
    let mut expected = BTreeSet::new();
    for start in (-50_000..180_000).step_by(10_000) {
        for (cell, threshold) in thresholds {
            let failures = calls
                .iter()
                .filter(|(ts, c, failed)| {
                    *failed && c == cell && (BASE_MS + start..BASE_MS + start + 60_000).contains(ts)
                })
                .count() as i64;
            if failures >= threshold {
                expected.insert((BASE_MS + start, cell.to_string(), failures));
            }
        }
    }
    assert!(
        expected.len() > 20,
        "the data raises alarms: {}",
        expected.len()
    );
    let mut written = BTreeSet::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while written.len() < expected.len() && std::time::Instant::now() < deadline {
        written = broker
            .consume("alarms", 1, Duration::from_secs(1))
            .iter()
            .map(|m| {
                let v: serde_json::Value = serde_json::from_str(m).unwrap();
                let start = chrono::NaiveDateTime::parse_from_str(
                    v["window_start"].as_str().unwrap(),
                    "%Y-%m-%dT%H:%M:%S",
                )
                .unwrap()
                .and_utc()
                .timestamp_millis();
                (
                    start,
                    v["cell_id"].as_str().unwrap().to_string(),
                    v["failures"].as_i64().unwrap(),
                )
            })
            .collect();
    }
    assert_eq!(written, expected);
    assert_eq!(
        broker.consume("alarms", 1, Duration::from_secs(1)).len(),
        expected.len(),
        "each alarm written once"
    );
    // The same alarms are queryable in the view.
    let in_view = rows(&client, "SELECT COUNT(*) FROM cell_alarms_1m").await;
    assert_eq!(in_view, vec![vec![expected.len().to_string()]]);
}
