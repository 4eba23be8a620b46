//! Other clients than tokio-postgres and psql: psycopg 3 (installed by
//! `scripts/install-test-tools.sh` into `~/.cache/sluice-tools/venv`).

mod common;

use std::process::Command;

use common::{execute, wait_finished, TestServer};

fn python() -> std::path::PathBuf {
    if let Ok(p) = std::env::var("SLUICE_TEST_PYTHON") {
        return p.into();
    }
    let home = std::env::var("HOME").expect("HOME");
    std::path::PathBuf::from(home).join(".cache/sluice-tools/venv/bin/python")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg_simple_extended_and_binary() {
    let server = TestServer::start();
    let client = server.client().await;
    let path = common::data_dir().join("calls_small.json");
    execute(
        &client,
        &format!(
            "CREATE TABLE calls (event_time BIGINT, cell_id STRING, status STRING, duration_ms INT,
               ts AS TO_TIMESTAMP_LTZ(event_time, 3), WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
             WITH ('connector' = 'filesystem', 'path' = '{}')",
            path.display()
        ),
    )
    .await;
    execute(
        &client,
        "CREATE MATERIALIZED VIEW kpi AS SELECT window_start, cell_id, COUNT(*) AS calls,
           SUM(duration_ms) AS total_ms, AVG(duration_ms) AS avg_ms
         FROM TABLE(TUMBLE(TABLE calls, DESCRIPTOR(ts), INTERVAL '10' SECOND))
         GROUP BY window_start, window_end, cell_id",
    )
    .await;
    wait_finished(&client, "kpi").await;
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/psycopg_check.py");
    let out = Command::new(python())
        .arg(&script)
        .arg(server.port().to_string())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "could not run {} (scripts/install-test-tools.sh installs it): {e}",
                python().display()
            )
        });
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "psycopg failed:\n{}\n{}",
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    let got: serde_json::Value = serde_json::from_str(stdout.trim()).expect("json");
    let want = serde_json::json!({
        "server_version": "15.0 (Sluice)",
        "text": [
            ["a", 2, 300, 150.0, "2024-01-01T00:00:00"],
            ["a", 2, 310, 155.0, "2024-01-01T00:00:10"],
        ],
        "binary": [["c", 2, 80.0, "2024-01-01T00:00:20"]],
        "error": ["42703", "column \"nope\" does not exist"],
    });
    assert_eq!(got, want);
}
