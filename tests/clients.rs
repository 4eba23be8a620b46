//! The clients applications use, each as it is used, against a server as
//! deployed: passwords and TLS (every client connects verifying the
//! server's certificate, with its password). psycopg 3, psycopg2,
//! SQLAlchemy and pandas (in `~/.cache/sluice-tools/venv`), node-postgres
//! (in `~/.cache/sluice-tools/node`) and the JDBC driver (Debian's
//! libpostgresql-jdbc-java), installed by `scripts/install-test-tools.sh`
//! and `.ci/run`. Each expectation is what Postgres 15 answers to the same
//! script.

mod common;

use std::process::Command;

use common::{execute, python, wait_finished, SecureServer};

/// Runs a client's script from `tests/clients` with `program` against the
/// server (the port its one argument, libpq's variables in its
/// environment), checks that it succeeded and returns the JSON it printed.
fn run_client(server: &SecureServer, mut program: Command, script: &str) -> serde_json::Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients")
        .join(script);
    let out = program
        .arg(&path)
        .arg(server.port().to_string())
        .envs(server.libpq_env())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "could not run {script} (scripts/install-test-tools.sh installs the clients): {e}"
            )
        });
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{script} failed:\n{}\n{}",
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).expect("json")
}

/// The tables and view the catalog clients (JDBC, pgcli) look at: a table
/// of every common type with a primary key, a datagen stream and a view.
async fn catalog_fixture(client: &tokio_postgres::Client) {
    execute(
        client,
        "CREATE TABLE cells (cell_id TEXT PRIMARY KEY, capacity INT, ratio DOUBLE PRECISION,
           price DECIMAL(10,2), active BOOLEAN, since TIMESTAMP(3), day DATE, note TEXT)",
    )
    .await;
    execute(
        client,
        "CREATE TABLE calls WITH ('connector' = 'datagen', 'rows-per-second' = '10')",
    )
    .await;
    execute(
        client,
        "CREATE MATERIALIZED VIEW kpi AS SELECT cell_id, COUNT(*) AS calls FROM calls GROUP BY cell_id",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg_simple_extended_and_binary() {
    let server = SecureServer::start();
    let client = server.client().await;
    common::create_small_calls(&client).await;
    execute(
        &client,
        "CREATE MATERIALIZED VIEW kpi AS SELECT window_start, cell_id, COUNT(*) AS calls,
           SUM(duration_ms) AS total_ms, AVG(duration_ms) AS avg_ms
         FROM TABLE(TUMBLE(TABLE calls, DESCRIPTOR(ts), INTERVAL '10' SECOND))
         GROUP BY window_start, window_end, cell_id",
    )
    .await;
    wait_finished(&client, "kpi").await;
    let got = run_client(&server, Command::new(python()), "psycopg_check.py");
    let want = serde_json::json!({
        "server_version": "15.0 (Sluice)",
        "tls": true,
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
    let server = SecureServer::start();
    let got = run_client(&server, Command::new(python()), "psycopg_serving.py");
    let want = serde_json::json!({
        "tls": true,
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
    let server = SecureServer::start();
    let client = server.client().await;
    common::create_small_calls(&client).await;
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
    let got = run_client(&server, Command::new(python()), "sqlalchemy_check.py");
    let expected = |tables: &[&str], written: i64| {
        serde_json::json!({
            "version": true,
            "tls": true,
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

/// node-postgres as services use it: every parameter sent untyped (the
/// server infers it, `= ANY($1)` an array), named prepared statements,
/// transactions, errors. The expected values are what Postgres 15 answers
/// to the same script.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_postgres() {
    let server = SecureServer::start();
    let home = std::env::var("HOME").expect("HOME");
    let mut node = Command::new("node");
    node.env(
        "NODE_MODULES_DIR",
        std::path::PathBuf::from(home).join(".cache/sluice-tools/node/node_modules"),
    );
    let got = run_client(&server, node, "node_pg_check.js");
    let want = serde_json::json!({
        "tls": true,
        "lt": [{"id": 1}, {"id": 2}],
        "fraction": ["22P02", "invalid input syntax for type bigint: \"20.5\""],
        "text": [{"id": 2}],
        "plus": [{"x": "42"}],
        "any": [{"id": 1}, {"id": 3}],
        "nulls": [{"id": 2}, {"id": 4}],
        "bigint": [{"x": "18014398509481986"}],
        "timestamp": true,
        "after": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}, {"id": 3, "name": "c"}],
        "error": ["42703", "column \"nope\" does not exist", 8],
    });
    assert_eq!(got, want);
}

/// The PostgreSQL JDBC driver (DBeaver's, DataGrip's, Metabase's):
/// DatabaseMetaData as tools read it, transaction isolation, prepared
/// statements of every type (setBigDecimal, setTimestamp, setDate,
/// setArray, setNull), fetching in rounds, rollback. Compiled and run with
/// the JDK's javac and Debian's driver jar.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jdbc() {
    let driver = std::path::Path::new("/usr/share/java/postgresql.jar");
    assert!(
        driver.exists(),
        "the JDBC driver is missing (apt-get install libpostgresql-jdbc-java)"
    );
    let server = SecureServer::start();
    let client = server.client().await;
    catalog_fixture(&client).await;
    execute(
        &client,
        "INSERT INTO cells VALUES ('a', 100, 0.5, 9.99, false, '2024-01-01 00:00:00', '2024-01-01', 'first')",
    )
    .await;
    let classes = tempfile::tempdir().unwrap();
    let source =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/JdbcCheck.java");
    let compiled = Command::new("javac")
        .arg("-d")
        .arg(classes.path())
        .arg(&source)
        .output()
        .expect("javac");
    assert!(
        compiled.status.success(),
        "{}",
        String::from_utf8_lossy(&compiled.stderr)
    );
    let url = format!(
        "jdbc:postgresql://127.0.0.1:{}/sluice?sslmode=verify-full&sslrootcert={}",
        server.port(),
        server.cert.display()
    );
    let out = Command::new("java")
        .arg("-cp")
        .arg(format!("{}:{}", classes.path().display(), driver.display()))
        .arg("JdbcCheck")
        .args([url.as_str(), "sluice", common::PASSWORD])
        .output()
        .expect("java");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "JDBC failed:\n{}\n{}",
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    // Postgres 15's answers to the same program (its materialized view
    // over a table; Sluice's over the calls stream, which lists too).
    let want = "\
product: PostgreSQL
schemas: true true
tables: [kpi|MATERIALIZED VIEW, calls|TABLE, cells|TABLE]
columns: [cell_id|text|12|0, capacity|int4|4|1, ratio|float8|8|1, price|numeric|2|1, active|bool|-7|1, since|timestamp|93|1, day|date|91|1, note|text|12|1]
view_columns: [cell_id|text, calls|int8]
primary_keys: [cell_id|1|cells_pkey]
index_info: [cells_pkey|f|cell_id]
imported_keys: []
functions: []
type_info: true true true
isolation: 2
insert: 1
decimal_plus: 2.5
select: [a|100|0.5|9.99|false|2024-01-01 00:00:00.0|2024-01-01|first, x|7|0.25|12.50|true|2024-01-02 03:04:05.678|2024-02-29|null]
array: [a, x]
fetch_size: [a, x]
after_rollback: [2]
";
    assert_eq!(stdout, want);
}

/// pgcli as it starts and runs: the catalog queries it completes names
/// from, its completions, and its backslash commands. The expected values
/// are Postgres 15's answers, but for one: a COUNT column of a Sluice
/// view is NOT NULL (Postgres's materialized views declare none).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgcli() {
    let server = SecureServer::start();
    let client = server.client().await;
    catalog_fixture(&client).await;
    let got = run_client(&server, Command::new(python()), "pgcli_check.py");
    let want = serde_json::json!({
        "search_path": ["pg_catalog", "public"],
        "tables": ["calls", "cells"],
        "views": ["kpi"],
        "complete_relation": ["calls", "cells"],
        "complete_view": ["kpi"],
        "complete_column": ["capacity"],
        "\\dt": [["public", "calls", "table"], ["public", "cells", "table"]],
        "\\dm": [["public", "kpi", "materialized view"]],
        "\\dv": [],
        "\\df": [],
        "\\d+ cells": [
            ["cell_id", "text", " not null"], ["capacity", "integer", ""],
            ["ratio", "double precision", ""], ["price", "numeric(10,2)", ""],
            ["active", "boolean", ""], ["since", "timestamp(3) without time zone", ""],
            ["day", "date", ""], ["note", "text", ""]
        ],
        "\\d kpi": [["cell_id", "text", ""], ["calls", "bigint", " not null"]],
    });
    assert_eq!(got, want);
}

/// psycopg2 as applications use it (the simple protocol; parameters
/// interpolated into the text): parameters, executemany, named cursors,
/// copy_expert both ways, transactions and savepoints. The expected values
/// are Postgres 15's answers to the same script.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg2() {
    let server = SecureServer::start();
    let got = run_client(&server, Command::new(python()), "psycopg2_check.py");
    let want = serde_json::json!({
        "tls": true,
        "select": [[1, "1.50", "a'b", "2024-01-02 03:04:05"], [3, "3.00", "c", "None"]],
        "params": ["2.50", "yx", "None"],
        "named_cursor": [1, 2, 3],
        "copy_out": "id,name\n1,a'b\n2,b\n3,c\n",
        "copy_in": 2,
        "duplicate": "23505",
        "failed_block": "25P02",
        "rows": [[1, "a'b"], [2, "b"], [3, "c"], [4, "d"], [5, "e,f"], [6, "kept"]],
    });
    assert_eq!(got, want);
}
