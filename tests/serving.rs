//! Serving exactly as Postgres does: what real drivers send and expect.
//! Statements too deep to run are refused (`54001`) and the server goes
//! on; parameters are read as the types the client declares; results are
//! typed and named as Postgres types and names them; transactions on
//! ordinary tables are real; the protocol's edges (invalid UTF-8, old
//! protocol versions, empty queries, statement timeouts) answer as
//! Postgres answers. Every expectation is what Postgres 15 answers.

mod common;

use std::time::Duration;

use common::{describe_error, execute, raw, rows, TestServer};
use tokio_postgres::types::Type;
use tokio_postgres::SimpleQueryMessage;

async fn sqlstate(client: &tokio_postgres::Client, sql: &str) -> String {
    match client.simple_query(sql).await {
        Ok(_) => "ok".into(),
        Err(e) => e
            .as_db_error()
            .map(|d| d.code().code().to_string())
            .unwrap_or_else(|| e.to_string()),
    }
}

/// `1 + 1 + ... + 1` with `n` terms.
fn sum_of_ones(n: usize) -> String {
    let mut s = String::with_capacity(n * 4);
    for i in 0..n {
        if i > 0 {
            s.push_str(" + ");
        }
        s.push('1');
    }
    s
}

fn or_chain(n: usize) -> String {
    (0..n)
        .map(|i| format!("cell_id = 'c{i}'"))
        .collect::<Vec<_>>()
        .join(" OR ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_too_deep_get_54001_and_the_server_goes_on() {
    let server = TestServer::start();
    let client = server.client().await;
    common::create_small_calls(&client).await;
    // Deep as it may be: answered right, in a query and in a view.
    assert_eq!(
        rows(&client, &format!("SELECT {}", sum_of_ones(2000))).await,
        [["2000"]]
    );
    execute(
        &client,
        &format!(
            "CREATE MATERIALIZED VIEW some_cells AS SELECT cell_id, COUNT(*) AS n FROM calls WHERE {} OR cell_id = 'a' GROUP BY cell_id",
            or_chain(1000)
        ),
    )
    .await;
    common::wait_finished(&client, "some_cells").await;
    assert_eq!(
        rows(&client, "SELECT * FROM some_cells").await,
        [["a", "6"]]
    );
    // Too deep, of every kind, at every size: 54001, and the next
    // statement runs.
    let paren = |n: usize| format!("SELECT {}1{}", "(".repeat(n), ")".repeat(n));
    let case = |n: usize| {
        format!(
            "SELECT {}1{}",
            "CASE WHEN true THEN ".repeat(n),
            " END".repeat(n)
        )
    };
    let call = |n: usize| format!("SELECT {}1{}", "abs(".repeat(n), ")".repeat(n));
    let subquery = |n: usize| format!("SELECT {}1{}", "(SELECT ".repeat(n), ")".repeat(n));
    let minus = |n: usize| format!("SELECT {}1", "- ".repeat(n));
    for n in [10_000, 100_000, 1_000_000] {
        let statements = [
            format!("SELECT {}", sum_of_ones(n)),
            format!("SELECT * FROM calls WHERE {}", or_chain(n)),
            format!(
                "CREATE MATERIALIZED VIEW deep AS SELECT * FROM calls WHERE {}",
                or_chain(n)
            ),
            // A syntax error at the end of a deep chain.
            format!("SELECT {} +", sum_of_ones(n)),
            paren(n),
            case(n),
            call(n),
            subquery(n),
            minus(n),
            format!("SELECT 1 {}", "UNION ALL SELECT 1 ".repeat(n)),
        ];
        for sql in statements {
            match client.simple_query(&sql).await {
                Ok(_) => panic!("a statement of {n} levels ran: {}", &sql[..60]),
                Err(e) => {
                    let db = e.as_db_error().unwrap_or_else(|| panic!("{e}"));
                    assert_eq!(
                        db.code().code(),
                        "54001",
                        "{}: {}",
                        &sql[..60],
                        db.message()
                    );
                    assert!(
                        db.message().starts_with("statement too complex"),
                        "{}",
                        db.message()
                    );
                }
            }
            assert_eq!(rows(&client, "SELECT 41 + 1").await, [["42"]]);
        }
    }
    assert!(rows(&client, "SHOW MATERIALIZED VIEWS").await.len() == 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameters_are_read_as_the_types_clients_declare() {
    let server = TestServer::start();
    let client = server.client().await;
    execute(
        &client,
        "CREATE TABLE t (id INT PRIMARY KEY, calls BIGINT, name STRING)",
    )
    .await;
    execute(
        &client,
        "INSERT INTO t VALUES (1, 1, 'a'), (2, 2, 'b'), (3, 60, 'c')",
    )
    .await;
    // A float8 1.5 compares as 1.5, not as a bigint 1.
    let stmt = client
        .prepare_typed(
            "SELECT id FROM t WHERE calls < $1 ORDER BY id",
            &[Type::FLOAT8],
        )
        .await
        .unwrap();
    assert_eq!(stmt.params(), &[Type::FLOAT8]);
    let ids: Vec<i32> = client
        .query(&stmt, &[&1.5f64])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids, [1]);
    // `SELECT $1 * 2` is a double for a double.
    let stmt = client
        .prepare_typed("SELECT $1 * 2", &[Type::FLOAT8])
        .await
        .unwrap();
    assert_eq!(stmt.columns()[0].type_(), &Type::FLOAT8);
    let v: f64 = client.query_one(&stmt, &[&1.25f64]).await.unwrap().get(0);
    assert_eq!(v, 2.5);
    // `SELECT $1` takes the declared type; undeclared, text.
    let stmt = client
        .prepare_typed("SELECT $1", &[Type::INT4])
        .await
        .unwrap();
    assert_eq!(stmt.columns()[0].type_(), &Type::INT4);
    let v: i32 = client.query_one(&stmt, &[&7i32]).await.unwrap().get(0);
    assert_eq!(v, 7);
    let stmt = client.prepare("SELECT $1").await.unwrap();
    assert_eq!(stmt.params(), &[Type::TEXT]);
    // Undeclared: inferred from where it stands.
    let stmt = client
        .prepare("SELECT name FROM t WHERE id = $1")
        .await
        .unwrap();
    assert_eq!(stmt.params(), &[Type::INT4]);
    let name: String = client.query_one(&stmt, &[&2i32]).await.unwrap().get(0);
    assert_eq!(name, "b");
    // Arrays, as a list to match against.
    let stmt = client
        .prepare_typed(
            "SELECT id FROM t WHERE id = ANY($1) ORDER BY id",
            &[Type::INT4_ARRAY],
        )
        .await
        .unwrap();
    let ids: Vec<i32> = client
        .query(&stmt, &[&vec![1i32, 3]])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids, [1, 3]);
    let stmt = client
        .prepare_typed("SELECT $1", &[Type::TEXT_ARRAY])
        .await
        .unwrap();
    let v: Vec<String> = client
        .query_one(&stmt, &[&vec!["x".to_string(), "y z".to_string()]])
        .await
        .unwrap()
        .get(0);
    assert_eq!(v, ["x", "y z"]);
    // INSERT, UPDATE and DELETE take parameters, typed by their columns.
    let inserted = client
        .execute("INSERT INTO t VALUES ($1, $2, $3)", &[&4i32, &4i64, &"d"])
        .await
        .unwrap();
    assert_eq!(inserted, 1);
    let updated = client
        .execute("UPDATE t SET name = $1 WHERE id = $2", &[&"dd", &4i32])
        .await
        .unwrap();
    assert_eq!(updated, 1);
    let deleted = client
        .execute("DELETE FROM t WHERE calls > $1", &[&10i64])
        .await
        .unwrap();
    assert_eq!(deleted, 1);
    assert_eq!(
        rows(&client, "SELECT id, name FROM t ORDER BY id").await,
        [["1", "a"], ["2", "b"], ["4", "dd"]]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_are_typed_and_named_as_postgres_does() {
    let server = TestServer::start();
    let client = server.client().await;
    execute(
        &client,
        "CREATE TABLE kpi (cell STRING PRIMARY KEY, calls BIGINT)",
    )
    .await;
    execute(&client, "INSERT INTO kpi VALUES ('a', 2), ('b', 3)").await;
    // NULL is NULL, not an empty string.
    let messages = client.simple_query("SELECT NULL, NULL AS x").await.unwrap();
    let SimpleQueryMessage::Row(row) = &messages[1] else {
        panic!("{messages:?}")
    };
    assert_eq!(row.get(0), None);
    assert_eq!(row.get(1), None);
    let row = client.query_one("SELECT NULL", &[]).await.unwrap();
    assert_eq!(row.get::<_, Option<String>>(0), None);
    // ^ is power (binding tighter than *), # is XOR.
    assert_eq!(
        rows(&client, "SELECT 2 ^ 10, 2 * 3 ^ 2, 2 ^ -1, 5 # 3").await,
        [["1024", "18", "0.5", "6"]]
    );
    // Types and names of columns.
    let stmt = client.prepare("SELECT 1, 1, 3000000000, count(*), sum(kpi.calls), calls::int, 1::bigint, max(cell) FROM kpi GROUP BY calls").await.unwrap();
    let columns: Vec<(&str, &Type)> = stmt
        .columns()
        .iter()
        .map(|c| (c.name(), c.type_()))
        .collect();
    assert_eq!(
        columns,
        [
            ("?column?", &Type::INT4),
            ("?column?", &Type::INT4),
            ("?column?", &Type::INT8),
            ("count", &Type::INT8),
            ("sum", &Type::INT8),
            ("calls", &Type::INT4),
            ("int8", &Type::INT8),
            ("max", &Type::TEXT),
        ]
    );
    let one: i32 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
    // A subquery's columns are named so too.
    assert_eq!(
        rows(&client, "SELECT count FROM (SELECT count(*) FROM kpi) s").await,
        [["2"]]
    );
    // A trailing comma is a syntax error.
    for sql in ["SELECT 1,", "SELECT 1, FROM kpi"] {
        assert_eq!(sqlstate(&client, sql).await, "42601", "{sql}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_on_tables_commit_or_roll_back_as_one() {
    let server = TestServer::start();
    let a = server.client().await;
    let b = server.client().await;
    execute(&a, "CREATE TABLE cells (id INT PRIMARY KEY, name STRING)").await;
    execute(&a, "INSERT INTO cells VALUES (1, 'one')").await;
    // ROLLBACK undoes; the transaction reads its own writes; others do not
    // see them until COMMIT.
    execute(&a, "BEGIN").await;
    execute(&a, "INSERT INTO cells VALUES (2, 'two')").await;
    execute(&a, "UPDATE cells SET name = 'uno' WHERE id = 1").await;
    assert_eq!(
        rows(&a, "SELECT * FROM cells ORDER BY id").await,
        [["1", "uno"], ["2", "two"]]
    );
    assert_eq!(
        rows(&b, "SELECT * FROM cells ORDER BY id").await,
        [["1", "one"]]
    );
    execute(&a, "ROLLBACK").await;
    assert_eq!(
        rows(&a, "SELECT * FROM cells ORDER BY id").await,
        [["1", "one"]]
    );
    execute(&a, "BEGIN").await;
    execute(&a, "INSERT INTO cells VALUES (2, 'two')").await;
    execute(&a, "DELETE FROM cells WHERE id = 1").await;
    assert_eq!(rows(&b, "SELECT count(*) FROM cells").await, [["1"]]);
    execute(&a, "COMMIT").await;
    assert_eq!(
        rows(&b, "SELECT * FROM cells ORDER BY id").await,
        [["2", "two"]]
    );
    // An error fails the block: 25P02 until ROLLBACK.
    execute(&a, "BEGIN").await;
    execute(&a, "INSERT INTO cells VALUES (3, 'three')").await;
    assert_eq!(sqlstate(&a, "SELECT nope FROM cells").await, "42703");
    assert_eq!(sqlstate(&a, "SELECT 1").await, "25P02");
    assert_eq!(
        sqlstate(&a, "INSERT INTO cells VALUES (4, 'x')").await,
        "25P02"
    );
    // COMMIT of a failed block rolls back.
    let messages = a.simple_query("COMMIT").await.unwrap();
    assert!(matches!(
        &messages[0],
        SimpleQueryMessage::CommandComplete(_)
    ));
    assert_eq!(rows(&b, "SELECT count(*) FROM cells").await, [["1"]]);
    // Savepoints: ROLLBACK TO undoes what came after and recovers a failed
    // block; RELEASE keeps it.
    execute(&a, "BEGIN").await;
    execute(&a, "INSERT INTO cells VALUES (5, 'five')").await;
    execute(&a, "SAVEPOINT s1").await;
    execute(&a, "INSERT INTO cells VALUES (6, 'six')").await;
    assert_eq!(
        sqlstate(&a, "INSERT INTO cells VALUES (6, 'again')").await,
        "23505"
    );
    assert_eq!(sqlstate(&a, "SELECT 1").await, "25P02");
    execute(&a, "ROLLBACK TO SAVEPOINT s1").await;
    execute(&a, "SAVEPOINT s2").await;
    execute(&a, "INSERT INTO cells VALUES (7, 'seven')").await;
    execute(&a, "RELEASE SAVEPOINT s2").await;
    assert_eq!(sqlstate(&a, "ROLLBACK TO s2").await, "3B001");
    execute(&a, "ROLLBACK TO s1").await;
    execute(&a, "INSERT INTO cells VALUES (8, 'eight')").await;
    execute(&a, "COMMIT").await;
    assert_eq!(
        rows(&b, "SELECT id FROM cells ORDER BY id").await,
        [["2"], ["5"], ["8"]]
    );
    assert_eq!(sqlstate(&a, "SAVEPOINT outside").await, "25P01");
    // A key another session inserted meanwhile fails the commit.
    execute(&a, "BEGIN").await;
    execute(&a, "INSERT INTO cells VALUES (9, 'mine')").await;
    execute(&b, "INSERT INTO cells VALUES (9, 'theirs')").await;
    assert_eq!(sqlstate(&a, "COMMIT").await, "23505");
    execute(&a, "ROLLBACK").await;
    assert_eq!(
        rows(&b, "SELECT name FROM cells WHERE id = 9").await,
        [["theirs"]]
    );
    // DDL in a block applies at once, with a notice.
    execute(&a, "BEGIN").await;
    execute(&a, "CREATE TABLE other (x INT PRIMARY KEY)").await;
    execute(&a, "ROLLBACK").await;
    assert_eq!(rows(&b, "SELECT count(*) FROM other").await, [["0"]]);
    // Transactions committed survive a restart.
    drop((a, b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drivers_see_the_transaction_status() {
    let server = TestServer::start();
    let mut client = server.client().await;
    execute(&client, "CREATE TABLE t (id INT PRIMARY KEY)").await;
    // tokio-postgres's transactions: BEGIN, then COMMIT or ROLLBACK on drop.
    {
        let tx = client.transaction().await.unwrap();
        tx.execute("INSERT INTO t VALUES ($1)", &[&1i32])
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    {
        let tx = client.transaction().await.unwrap();
        tx.execute("INSERT INTO t VALUES ($1)", &[&2i32])
            .await
            .unwrap();
        let err = tx
            .execute("INSERT INTO t VALUES ($1)", &[&2i32])
            .await
            .unwrap_err();
        assert_eq!(describe_error(&err).split(':').next(), Some("23505"));
        let err = tx.query("SELECT 1", &[]).await.unwrap_err();
        assert_eq!(describe_error(&err).split(':').next(), Some("25P02"));
    }
    assert_eq!(rows(&client, "SELECT id FROM t").await, [["1"]]);
    // The status byte of ReadyForQuery: I, T, E, and T again after
    // ROLLBACK TO.
    let mut s = raw::startup(&server.addr);
    let status = |m: &[raw::Message]| m.last().map(|(_, b)| b[0] as char);
    assert_eq!(status(&raw::query(&mut s, b"SELECT 1")), Some('I'));
    assert_eq!(status(&raw::query(&mut s, b"BEGIN")), Some('T'));
    assert_eq!(status(&raw::query(&mut s, b"SAVEPOINT a")), Some('T'));
    assert_eq!(status(&raw::query(&mut s, b"SELECT nope")), Some('E'));
    assert_eq!(status(&raw::query(&mut s, b"ROLLBACK TO a")), Some('T'));
    assert_eq!(status(&raw::query(&mut s, b"COMMIT")), Some('I'));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_protocol_edges_answer_as_postgres() {
    let server = TestServer::start();
    let client = server.client().await;
    // Invalid UTF-8 in a query: 22021, in simple and extended queries.
    let mut s = raw::startup(&server.addr);
    let out = raw::query(&mut s, b"SELECT '\xc3\x28'");
    let error = out.iter().find(|(t, _)| *t == b'E').expect("an error");
    assert_eq!(
        raw::error_fields(&error.1),
        (
            "22021".to_string(),
            "invalid byte sequence for encoding \"UTF8\": 0xc3".to_string()
        )
    );
    // A valid query right after.
    let out = raw::query(&mut s, "SELECT 'é'".as_bytes());
    assert!(out
        .iter()
        .any(|(t, b)| *t == b'D' && b.ends_with("é".as_bytes())));
    // A comment alone: EmptyQueryResponse.
    let out = raw::query(&mut s, b"-- nothing here");
    assert!(out.iter().any(|(t, _)| *t == b'I'), "{out:?}");
    let out = raw::query(&mut s, b"/* nor here */ ;");
    assert!(out.iter().any(|(t, _)| *t == b'I'), "{out:?}");
    // Protocol 2.0: a clear error in that protocol's form, then the end.
    {
        use std::io::{Read, Write};
        let mut s = raw::connect(&server.addr);
        let mut packet = vec![0u8; 296];
        packet[..4].copy_from_slice(&296u32.to_be_bytes());
        packet[4..8].copy_from_slice(&0x0002_0000u32.to_be_bytes());
        s.write_all(&packet).unwrap();
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).unwrap();
        assert_eq!(answer[0], b'E');
        let text = String::from_utf8_lossy(&answer[1..]);
        assert!(
            text.contains("unsupported frontend protocol 2.0: server supports 3.0 to 3.0"),
            "{text}"
        );
    }
    // statement_timeout is enforced.
    execute(&client, "SET statement_timeout = 200").await;
    let started = std::time::Instant::now();
    let err = client
        .simple_query("SELECT count(*) FROM generate_series(1, 5000000000)")
        .await
        .unwrap_err();
    let db = err.as_db_error().unwrap();
    assert_eq!(
        (db.code().code(), db.message()),
        ("57014", "canceling statement due to statement timeout")
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    execute(&client, "SET statement_timeout = 0").await;
    assert_eq!(rows(&client, "SELECT 1").await, [["1"]]);
    assert_eq!(
        sqlstate(&client, "SET statement_timeout = 'soon'").await,
        "22023"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_that_cannot_reach_its_broker_says_so() {
    let server = TestServer::start();
    let client = server.client().await;
    execute(
        &client,
        "CREATE TABLE calls WITH ('connector' = 'datagen', 'rows-per-second' = '100')",
    )
    .await;
    execute(&client, "CREATE MATERIALIZED VIEW per_cell AS SELECT cell_id, COUNT(*) AS n FROM calls GROUP BY cell_id").await;
    for guarantee in ["exactly-once", "at-least-once"] {
        let name = format!("out_{}", guarantee.replace('-', "_"));
        execute(
            &client,
            &format!(
                "CREATE SINK {name} FROM per_cell WITH ('connector' = 'kafka', 'topic' = 'kpi',
                   'properties.bootstrap.servers' = '127.0.0.1:1', 'format' = 'json',
                   'sink.delivery-guarantee' = '{guarantee}')"
            ),
        )
        .await;
        common::wait_until(Duration::from_secs(60), "the sink's error", || async {
            let (status, error) = common::job_status(&client, &name).await;
            status == "running" && error.is_some_and(|e| e.contains("could not reach the broker"))
        })
        .await;
    }
}

/// `DECLARE c CURSOR FOR SUBSCRIBE view` and `FETCH`, for drivers that
/// cannot read the COPY stream of a plain SUBSCRIBE: the rows come as
/// ordinary results, in the simple and the extended protocol.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_follows_a_subscription() {
    let server = TestServer::start();
    let client = server.client().await;
    common::create_small_calls(&client).await;
    execute(
        &client,
        "CREATE MATERIALIZED VIEW per_cell AS SELECT cell_id, COUNT(*) AS n FROM calls GROUP BY cell_id",
    )
    .await;
    common::wait_finished(&client, "per_cell").await;
    common::wait_checkpoints(&client, "per_cell", 1).await;
    let want = rows(
        &client,
        "SELECT 'upsert', cell_id, n FROM per_cell ORDER BY cell_id",
    )
    .await;
    // Outside a transaction block: refused, as in Postgres.
    assert_eq!(
        sqlstate(&client, "DECLARE c CURSOR FOR SUBSCRIBE per_cell").await,
        "25P01"
    );
    execute(&client, "BEGIN").await;
    execute(&client, "DECLARE c CURSOR FOR SUBSCRIBE per_cell").await;
    // The extended protocol (tokio-postgres prepares the FETCH).
    let fetched = client
        .query("FETCH 2 c WITH (timeout = '10s')", &[])
        .await
        .unwrap();
    assert_eq!(fetched.len(), 2);
    assert_eq!(fetched[0].columns()[0].name(), "op");
    let mut got: Vec<Vec<String>> = fetched
        .iter()
        .map(|r| {
            vec![
                r.get::<_, String>(0),
                r.get::<_, String>(1),
                r.get::<_, i64>(2).to_string(),
            ]
        })
        .collect();
    // The rest in the simple protocol.
    got.extend(rows(&client, "FETCH ALL c WITH (timeout = '10s')").await);
    got.sort();
    assert_eq!(got, want);
    // Nothing new: an empty answer once the timeout passes.
    let started = std::time::Instant::now();
    assert!(rows(&client, "FETCH ALL c WITH (timeout = '300ms')")
        .await
        .is_empty());
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(sqlstate(&client, "FETCH BACKWARD 1 c").await, "55000");
    execute(&client, "ROLLBACK").await;
    assert_eq!(sqlstate(&client, "FETCH c").await, "34000");
}

/// What tools ask of the catalog and of Postgres's functions, each answer
/// as Postgres 15 gives it (for a Postgres with the same tables): Grafana's
/// version check, table list and column list (its own queries, verbatim),
/// `information_schema` with Postgres's type names, and the functions
/// tools call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queries_tools_send() {
    let server = TestServer::start();
    let client = server.client().await;
    execute(
        &client,
        "CREATE TABLE cells (cell_id STRING PRIMARY KEY, capacity INT)",
    )
    .await;
    execute(
        &client,
        "CREATE TABLE calls WITH ('connector' = 'datagen', 'rows-per-second' = '10')",
    )
    .await;
    execute(
        &client,
        "CREATE MATERIALIZED VIEW kpi AS SELECT cell_id, COUNT(*) AS calls FROM calls GROUP BY cell_id",
    )
    .await;
    let grafana = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/grafana_queries.sql"),
    )
    .unwrap();
    let queries: Vec<&str> = grafana
        .split("\n\n")
        .map(|q| q.trim())
        .filter(|q| !q.is_empty() && !q.starts_with("--"))
        .collect();
    assert_eq!(queries.len(), 4);
    assert_eq!(rows(&client, queries[0]).await, [["1500"]]);
    assert!(rows(&client, queries[1]).await.is_empty());
    // The search path's tables first, unqualified; then the others. The
    // search path is Postgres's `"$user", public`, and user `sluice` has a
    // schema of its name (the system tables'), so they are on it too.
    let tables = rows(&client, queries[2]).await;
    let names: Vec<&str> = tables.iter().map(|t| t[0].as_str()).collect();
    assert_eq!(
        names,
        [
            "calls",
            "cells",
            "dead_letters",
            "jobs",
            "kafka_partitions",
            "kpi",
            "late_rows",
            "savepoints"
        ]
    );
    let other = server.client_as("grafana", "").await.unwrap();
    let tables = rows(&other, queries[2]).await;
    let names: Vec<&str> = tables.iter().map(|t| t[0].as_str()).collect();
    assert_eq!(&names[..3], ["calls", "cells", "kpi"]);
    assert!(
        names[3..].iter().all(|t| t.starts_with("sluice.")),
        "{names:?}"
    );
    let columns = rows(&client, &queries[3].replace("'kpi'", "'cells'")).await;
    assert_eq!(columns, [["cell_id", "text"], ["capacity", "integer"]]);
    assert_eq!(
        rows(
            &client,
            "SELECT column_name, data_type, udt_name, is_nullable FROM information_schema.columns
             WHERE table_name = 'kpi' ORDER BY ordinal_position"
        )
        .await,
        [
            ["cell_id", "text", "text", "YES"],
            ["calls", "bigint", "int8", "NO"]
        ]
    );
    // Functions, as Postgres answers them.
    assert_eq!(
        rows(
            &client,
            "SELECT current_setting('search_path'), current_setting('nope', true) IS NULL,
                    current_schemas(true), array_lower(ARRAY[1,2,3], 1), array_upper(ARRAY[1,2,3], 1),
                    parse_ident('public.\"My Table\"'),
                    to_char(TIMESTAMP '2024-03-05 14:07:09', 'YYYY-MM-DD HH24:MI:SS'),
                    pg_size_pretty(20971520::bigint), pg_backend_pid() > 0"
        )
        .await,
        [[
            "\"$user\", public",
            "t",
            "{pg_catalog,public}",
            "1",
            "3",
            "{public,\"My Table\"}",
            "2024-03-05 14:07:09",
            "20 MB",
            "t"
        ]]
    );
    // pg_typeof names the type a value is sent as.
    assert_eq!(
        rows(
            &client,
            "SELECT pg_typeof(1::int), pg_typeof('a'::text), pg_typeof(1.5), pg_typeof(now()),
                    pg_typeof(1.5::float8), pg_typeof(date '2024-01-01')"
        )
        .await,
        [[
            "integer",
            "text",
            "numeric",
            "timestamp with time zone",
            "double precision",
            "date"
        ]]
    );
    assert_eq!(
        rows(
            &client,
            "SELECT set_config('application_name', 'grafana', false)"
        )
        .await,
        [["grafana"]]
    );
    assert_eq!(rows(&client, "SHOW application_name").await, [["grafana"]]);
    assert_eq!(
        sqlstate(&client, "SELECT current_setting('nope')").await,
        "42704"
    );
    assert_eq!(
        rows(&client, "SELECT i, s[i] FROM generate_series(1, 2) AS i, string_to_array('a,b', ',') s ORDER BY i").await,
        [["1", "a"], ["2", "b"]]
    );
}
