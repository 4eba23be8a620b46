//! The example pipelines in `sql/` run as documented: every statement
//! succeeds and every view produces rows.

mod common;

use std::time::Duration;

use common::{rows, wait_until, TestServer};

async fn run_example(file: &str, views: &[&str]) {
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
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yahoo_streaming_benchmark() {
    run_example("yahoo_streaming_benchmark.sql", &["campaign_views_10s"]).await;
}
