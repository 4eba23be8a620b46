//! The example pipelines in `sql/` run as documented: every statement
//! succeeds and every view produces rows.

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
