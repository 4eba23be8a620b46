//! Other clients than tokio-postgres and psql: psycopg 3 (installed by
//! `scripts/install-test-tools.sh` into `~/.cache/sluice-tools/venv`).

mod common;

use std::process::Command;

use common::{execute, python, wait_finished, TestServer};

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

/// psycopg as applications use it: parameters of every type in text and
/// binary, executemany, COPY in and out in text, CSV and binary,
/// server-side cursors (fetched in rounds, WITH HOLD, scrolled), and
/// transactions with autocommit off (psycopg's default), savepoints
/// through nested `transaction()` blocks. Each answer is the one Postgres
/// 15 gives to the same script.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg_parameters_and_transactions() {
    let server = TestServer::start();
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/psycopg_serving.py");
    let out = Command::new(python())
        .arg(&script)
        .arg(server.port().to_string())
        .output()
        .expect("python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "psycopg failed:\n{}\n{}",
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    let got: serde_json::Value = serde_json::from_str(stdout.trim()).expect("json");
    let want = serde_json::json!({
        "float_lt": 1,
        "decimal_times_two": "2.50",
        "float_times_two": 2.5,
        "int_param": 42,
        "none": null,
        "text": "b",
        "list": 2,
        "interval": "2024-01-02 02:00:00",
        "date": "2024-02-29",
        "bad_number": ["22P02", "invalid input syntax for type bigint: \"1.5x\""],
        "binary_float_lt": 1,
        "binary_decimal": "2.50",
        "after_executemany": 5,
        "copy_in_rowcount": 2,
        "copy_csv": "id,note\n1,tab\there\n2,\n3,back\\slash\n4,\"a,b\"\n5,\n",
        "copy_text_lines": ["1\ttab\\there", "2\t\\N", "3\tback\\\\slash", "4\ta,b", "5\t\\N"],
        "copy_binary": [[1, "tab\there"], [2, null], [3, "back\\slash"], [4, "a,b"], [5, null]],
        "server_cursor": [[2, null], [3, "back\\slash"], [4, "a,b"], [5, null]],
        "held_cursor": [1, 4, 2, [[3], [4], [5]]],
        "duplicate": "23505",
        "in_failed_block": "25P02",
        "names": ["kept", "block"],
    });
    assert_eq!(got, want);
}

/// SQLAlchemy 2 and pandas with both Postgres drivers: connect, reflect
/// (inspect, autoload), read views into DataFrames, write a DataFrame into
/// a table. The expected values are what Postgres 15 answers to the same
/// script (the view's NOT NULL columns aside: Postgres's materialized
/// views have none).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlalchemy_and_pandas() {
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
        "CREATE MATERIALIZED VIEW kpi AS SELECT window_start, cell_id, COUNT(*) AS calls, AVG(duration_ms) AS avg_ms
         FROM TABLE(TUMBLE(TABLE calls, DESCRIPTOR(ts), INTERVAL '10' SECOND))
         GROUP BY window_start, window_end, cell_id",
    )
    .await;
    execute(
        &client,
        "CREATE TABLE cells (cell_id STRING PRIMARY KEY, region STRING)",
    )
    .await;
    wait_finished(&client, "kpi").await;
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/sqlalchemy_check.py");
    let out = Command::new(python())
        .arg(&script)
        .arg(server.port().to_string())
        .output()
        .expect("python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "sqlalchemy failed:\n{}\n{}",
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    let got: serde_json::Value = serde_json::from_str(stdout.trim()).expect("json");
    let expected = |tables: &[&str], written: i64| {
        serde_json::json!({
            "version": true,
            "one": 1,
            "schemas": ["public", "sluice"],
            "tables": tables,
            "views": [],
            "materialized_views": ["kpi"],
            "columns": [
                ["window_start", "TIMESTAMP", false],
                ["cell_id", "TEXT", true],
                ["calls", "BIGINT", false],
                ["avg_ms", "DOUBLE PRECISION", true],
            ],
            "cells_pk": ["cell_id"],
            "cells_indexes": [],
            "view_definition": true,
            "autoload": ["window_start", "cell_id", "calls", "avg_ms"],
            "select": [["a", 2], ["a", 2], ["b", 1]],
            "read_sql": [["cell_id", "calls"], 6, "int64"],
            "read_sql_table": ["avg_ms", "calls", "cell_id", "window_start"],
            "to_sql": [written, {"cell_id": ["a", "b", "c"], "score": [1.5, 2.5, 3.5]}],
        })
    };
    // psycopg's executemany through SQLAlchemy reports -1 rows, as it
    // does against Postgres.
    assert_eq!(got["psycopg"], expected(&["calls", "cells"], -1));
    assert_eq!(
        got["psycopg2"],
        expected(&["calls", "cells", "scores_psycopg"], 3)
    );
}
