//! The Postgres wire protocol as clients use it: tokio-postgres prepared
//! statements (extended protocol, binary results), types, errors with
//! positions, restart persistence, clean shutdown, and psql itself.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{execute, job_status, rows, wait_finished, wait_until, TestServer};
use tokio_postgres::types::Type;

const CALLS: &str = "CREATE TABLE calls (
  event_time BIGINT, cell_id STRING, status STRING, duration_ms INT,
  ts AS TO_TIMESTAMP_LTZ(event_time, 3),
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
) WITH ('connector' = 'filesystem', 'path' = '${DATA}/calls_small.json', 'format' = 'json')";

fn calls_sql() -> String {
    CALLS.replace("${DATA}", &common::data_dir().display().to_string())
}

/// psql connected to the server as user sluice, without a psqlrc.
fn psql(port: u16) -> Command {
    let mut command = Command::new("psql");
    command
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-U", "sluice", "-d", "sluice", "-X"])
        .env("PGCONNECT_TIMEOUT", "10");
    command
}

/// Runs psql with `args`, `stdin` on its input; what it printed, output
/// then errors.
fn psql_output(port: u16, args: &[&str], stdin: &str) -> String {
    use std::io::Write as _;
    let mut child = psql(port)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

const KPI: &str = "CREATE MATERIALIZED VIEW kpi AS
SELECT window_start, window_end, cell_id, COUNT(*) AS calls, SUM(duration_ms) AS total_ms,
       AVG(duration_ms) AS avg_ms, CAST(SUM(duration_ms) AS DECIMAL(12, 2)) / 7 AS sevenths,
       MAX(status = 'ok') AS any_ok
FROM TABLE(TUMBLE(TABLE calls, DESCRIPTOR(ts), INTERVAL '10' SECOND))
GROUP BY window_start, window_end, cell_id";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_with_parameters_and_binary_types() {
    let server = TestServer::start();
    let client = server.client().await;
    execute(&client, &calls_sql()).await;
    execute(&client, KPI).await;
    wait_finished(&client, "kpi").await;

    let stmt = client
        .prepare(
            "SELECT window_start, window_end, cell_id, calls, total_ms, avg_ms, sevenths, any_ok, \
                  CAST(window_start AS TIMESTAMPTZ) AS start_tz \
                  FROM kpi WHERE cell_id = $1 AND calls >= $2 ORDER BY window_start",
        )
        .await
        .expect("prepare");
    assert_eq!(stmt.params(), &[Type::TEXT, Type::INT8]);
    let types: Vec<Type> = stmt.columns().iter().map(|c| c.type_().clone()).collect();
    assert_eq!(
        types,
        vec![
            Type::TIMESTAMP,
            Type::TIMESTAMP,
            Type::TEXT,
            Type::INT8,
            Type::INT8,
            Type::FLOAT8,
            Type::NUMERIC,
            Type::BOOL,
            Type::TIMESTAMPTZ
        ]
    );
    let result = client.query(&stmt, &[&"a", &2i64]).await.expect("query");
    assert_eq!(result.len(), 2);
    let first = &result[0];
    let start: chrono::NaiveDateTime = first.get(0);
    assert_eq!(start.to_string(), "2024-01-01 00:00:00");
    let end: chrono::NaiveDateTime = first.get(1);
    assert_eq!(end.to_string(), "2024-01-01 00:00:10");
    assert_eq!(first.get::<_, &str>(2), "a");
    assert_eq!(first.get::<_, i64>(3), 2);
    assert_eq!(first.get::<_, i64>(4), 300);
    assert_eq!(first.get::<_, f64>(5), 150.0);
    assert!(first.get::<_, bool>(7));
    let start_tz: chrono::DateTime<chrono::Utc> = first.get(8);
    assert_eq!(start_tz.timestamp_millis(), 1_704_067_200_000);
    // NUMERIC arrives in binary; compare through its text form.
    let text = rows(
        &client,
        "SELECT sevenths FROM kpi WHERE cell_id = 'a' ORDER BY window_start LIMIT 1",
    )
    .await;
    assert!(text[0][0].starts_with("42.857"), "{:?}", text);

    // The same prepared statement again, with other parameters.
    let result = client.query(&stmt, &[&"c", &1i64]).await.expect("query");
    assert_eq!(result.len(), 1);
    assert_eq!(result[0].get::<_, i64>(4), 160);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_carry_sqlstate_and_position() {
    let server = TestServer::start();
    let client = server.client().await;
    execute(&client, &calls_sql()).await;

    let sql = "SELECT nope FROM calls";
    let err = client.simple_query(sql).await.unwrap_err();
    let db = err.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "42703");
    assert_eq!(db.message(), "column \"nope\" does not exist");
    assert_eq!(
        db.position(),
        Some(&tokio_postgres::error::ErrorPosition::Original(8))
    );

    let sql = "CREATE MATERIALIZED VIEW v AS SELECT cell_id FROM calls WHERE";
    let err = client.simple_query(sql).await.unwrap_err();
    let db = err.as_db_error().unwrap();
    assert_eq!(db.code().code(), "42601");
    assert_eq!(
        db.position(),
        Some(&tokio_postgres::error::ErrorPosition::Original(
            sql.len() as u32 + 1
        ))
    );

    // The extended protocol reports errors at parse time, with position.
    let err = client
        .prepare("SELECT * FROM missing_view")
        .await
        .unwrap_err();
    let db = err.as_db_error().unwrap();
    assert_eq!(db.code().code(), "42P01");
    assert_eq!(
        db.position(),
        Some(&tokio_postgres::error::ErrorPosition::Original(15))
    );

    // A failed statement leaves the connection usable.
    assert_eq!(
        rows(&client, "SELECT 1 + 1").await,
        vec![vec!["2".to_string()]]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn definitions_survive_a_restart_and_views_run_again() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let expected;
    {
        let mut server = TestServer::start_in(&dir, &[]);
        let client = server.client().await;
        execute(&client, &calls_sql()).await;
        execute(&client, KPI).await;
        wait_finished(&client, "kpi").await;
        expected = rows(&client, "SELECT * FROM kpi ORDER BY window_start, cell_id").await;
        assert_eq!(expected.len(), 6);
        assert!(
            server.stop(),
            "SIGTERM must stop the server cleanly:\n{}",
            server.log()
        );
    }
    let server = TestServer::start_in(&dir, &[]);
    let client = server.client().await;
    assert_eq!(
        rows(&client, "SHOW TABLES").await,
        vec![vec!["calls".to_string()]]
    );
    assert_eq!(
        rows(&client, "SHOW MATERIALIZED VIEWS").await,
        vec![vec!["kpi".to_string()]]
    );
    wait_finished(&client, "kpi").await;
    assert_eq!(
        rows(&client, "SELECT * FROM kpi ORDER BY window_start, cell_id").await,
        expected
    );
    // A dropped view stays dropped.
    execute(&client, "DROP MATERIALIZED VIEW kpi").await;
    drop(client);
    drop(server);
    let server = TestServer::start_in(&dir, &[]);
    let client = server.client().await;
    assert!(rows(&client, "SHOW MATERIALIZED VIEWS").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_of_an_unknown_format_is_refused_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("db"), b"not a directory").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("could not open the data directory"),
        "{stderr}"
    );
}

#[test]
fn help_documents_every_flag() {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--listen",
        "--data-dir",
        "--parallelism",
        "--batch-size",
        "--batch-linger",
        "--flush-interval",
        "--dead-letters",
        "--log",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
}

/// psql, the client users start with: queries, meta-commands, errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_works() {
    if Command::new("psql").arg("--version").output().is_err() {
        panic!("psql is not installed (apt-get install postgresql-client)");
    }
    let server = TestServer::start();
    let client = server.client().await;
    execute(&client, &calls_sql()).await;
    execute(&client, KPI).await;
    wait_finished(&client, "kpi").await;
    let psql = |args: &[&str]| {
        let out = psql(server.port())
            .args(["-A", "-t"])
            .args(args)
            .output()
            .unwrap();
        (
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (out, err) = psql(&[
        "-c",
        "SELECT cell_id, calls FROM kpi WHERE window_start = '2024-01-01 00:00:00' ORDER BY 1",
    ]);
    assert_eq!(out, "a|2\nb|2\n", "{err}");
    let (_, err) = psql(&["-c", "SELECT * FROM nope"]);
    assert!(err.contains("relation \"nope\" does not exist"), "{err}");
    let (out, err) = psql(&["-c", "\\dt"]);
    assert!(out.contains("calls"), "\\dt: {out}{err}");
    let (out, err) = psql(&["-c", "\\dm"]);
    assert!(out.contains("kpi"), "\\dm: {out}{err}");
    let (out, err) = psql(&["-c", "\\d kpi"]);
    assert!(
        out.contains("window_start") && out.contains("timestamp"),
        "\\d kpi: {out}{err}"
    );
    let (out, err) = psql(&["-c", "\\d calls"]);
    assert!(
        out.contains("timestamp(3) with time zone"),
        "\\d calls: {out}{err}"
    );
    // Every common meta-command answers without an error.
    for command in [
        "\\l",
        "\\dn",
        "\\du",
        "\\di",
        "\\dv",
        "\\d",
        "\\d+ kpi",
        "\\dT",
        "\\dx",
        "\\dp",
        "\\d sluice.jobs",
    ] {
        let (_, err) = psql(&["-c", command]);
        assert!(!err.contains("ERROR"), "{command}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_view_survives_its_file_and_a_new_view_of_it_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let file = tmp.path().join("calls.json");
    std::fs::copy(common::data_dir().join("calls_small.json"), &file).unwrap();
    let query = "SELECT * FROM kpi ORDER BY window_start, cell_id";
    let before = {
        let mut server = TestServer::start_in(&dir, &[]);
        let client = server.client().await;
        execute(
            &client,
            &calls_sql().replace(
                &common::data_dir()
                    .join("calls_small.json")
                    .display()
                    .to_string(),
                &file.display().to_string(),
            ),
        )
        .await;
        execute(&client, KPI).await;
        wait_finished(&client, "kpi").await;
        let before = rows(&client, query).await;
        assert!(server.stop());
        before
    };
    std::fs::remove_file(&file).unwrap();
    let server = TestServer::start_in(&dir, &[]);
    let client = server.client().await;
    // The finished view comes back from its checkpoint: no file needed.
    assert_eq!(common::job_status(&client, "kpi").await.0, "finished");
    assert_eq!(rows(&client, query).await, before);
    // A new view of the source is refused, naming the file, and nothing
    // else fails.
    let err = client
        .batch_execute(&KPI.replace("kpi", "kpi_again"))
        .await
        .unwrap_err();
    let db = err.as_db_error().unwrap();
    assert_eq!(db.code().code(), "22023");
    assert!(db.message().contains("calls.json"), "{}", db.message());
    assert_eq!(
        rows(&client, "SELECT 40 + 2").await,
        vec![vec!["42".to_string()]]
    );
    assert_eq!(rows(&client, query).await, before);
}

/// Runs the server on `dir` expecting it to refuse to start; returns its
/// stderr.
fn refused_start(dir: &std::path::Path) -> String {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(!status.success(), "a refused start exits with an error");
            let mut err = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
            return err;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("sluice started on a data directory it should refuse");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_data_dir_is_refused_at_start_and_left_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    {
        let mut server = TestServer::start_in(&dir, &[]);
        let client = server.client().await;
        execute(&client, &calls_sql()).await;
        assert!(server.stop());
    }
    // Damage the store's manifest pointer.
    let current = dir.join("db").join("CURRENT");
    std::fs::write(&current, b"MANIFEST-999999\n").unwrap();
    let err = refused_start(&dir);
    assert!(
        err.contains("could not open the data directory"),
        "a clear error: {err}"
    );
    // Nothing was reset: the damaged file is as it was.
    assert_eq!(std::fs::read(&current).unwrap(), b"MANIFEST-999999\n");
}

/// A small file system of its own (tmpfs), so that a test can fill it or
/// make it read-only; unmounted when dropped. None where this process may
/// not mount (then the tests that need one say so and skip).
struct SmallDisk {
    path: std::path::PathBuf,
    _tmp: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Option<SmallDisk> {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("disk");
        std::fs::create_dir(&path).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("skipped: this test needs to mount a tmpfs (root, and mount allowed)");
            return None;
        }
        Some(SmallDisk { path, _tmp: tmp })
    }

    fn remount(&self, mode: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,{mode}")])
            .arg(&self.path)
            .status()
            .unwrap();
        assert!(status.success(), "remount {mode}");
    }

    /// Fills the disk with one file; returns it.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let filler = self.path.join("filler");
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![7u8; 64 * 1024];
        while f.write_all(&block).is_ok() {}
        let _ = f.sync_all();
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_or_read_only_disk_is_refused_at_start_and_nothing_is_lost() {
    let Some(disk) = SmallDisk::mount("32m") else {
        return;
    };
    let dir = disk.path.join("data");
    let query = "SELECT * FROM kpi ORDER BY window_start, cell_id";
    let before = {
        let mut server = TestServer::start_in(&dir, &[]);
        let client = server.client().await;
        execute(&client, &calls_sql()).await;
        execute(&client, KPI).await;
        wait_finished(&client, "kpi").await;
        let before = rows(&client, query).await;
        assert!(!before.is_empty());
        assert!(server.stop());
        before
    };
    // No space left: refused with the reason, and the data left alone.
    let filler = disk.fill();
    let err = refused_start(&dir);
    assert!(
        err.contains("could not open the data directory") && err.contains("no space left"),
        "a clear error: {err}"
    );
    std::fs::remove_file(&filler).unwrap();
    // Read-only (as when permissions are missing): refused likewise.
    disk.remount("ro");
    let err = refused_start(&dir);
    assert!(
        err.contains("could not") && err.contains("read-only file system"),
        "a clear error: {err}"
    );
    disk.remount("rw");
    // Once the disk is writable again, everything is there.
    let server = TestServer::start_in(&dir, &[]);
    let client = server.client().await;
    assert_eq!(rows(&client, query).await, before);
}

/// The counted rows of a job and the calls its view adds up to.
async fn counted_and_summed(client: &tokio_postgres::Client) -> (i64, i64) {
    let jobs = rows(
        client,
        "SELECT rows_in - late_rows - bad_rows FROM sluice.jobs WHERE name = 'kpi'",
    )
    .await;
    let sum = rows(client, "SELECT COALESCE(SUM(calls), 0) FROM kpi").await;
    (jobs[0][0].parse().unwrap(), sum[0][0].parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_full_while_running_fails_the_view_clearly_and_a_restart_goes_on() {
    let Some(disk) = SmallDisk::mount("32m") else {
        return;
    };
    let dir = disk.path.join("data");
    let flags = ["--checkpoint-interval", "100ms"];
    let mut server = TestServer::start_in(&dir, &flags);
    let client = server.client().await;
    execute(
        &client,
        "CREATE TABLE calls WITH ('connector' = 'datagen', 'rows-per-second' = '20000')",
    )
    .await;
    execute(
        &client,
        "CREATE MATERIALIZED VIEW kpi AS SELECT window_start, cell_id, COUNT(*) AS calls
         FROM TABLE(TUMBLE(TABLE calls, DESCRIPTOR(ts), INTERVAL '1' SECOND))
         GROUP BY window_start, window_end, cell_id",
    )
    .await;
    let epoch = "SELECT checkpoint_epoch FROM sluice.jobs WHERE name = 'kpi'";
    wait_until(Duration::from_secs(30), "two checkpoints", || async {
        rows(&client, epoch).await[0][0].parse::<u64>().unwrap() >= 2
    })
    .await;
    let filler = disk.fill();
    // The view fails with the reason, and keeps its rows.
    wait_until(Duration::from_secs(30), "the view to fail", || async {
        job_status(&client, "kpi").await.0 == "failed"
    })
    .await;
    let error = job_status(&client, "kpi").await.1.unwrap_or_default();
    assert!(
        error.contains("could not commit a checkpoint") && error.contains("no space left"),
        "{error}"
    );
    assert!(!rows(&client, "SELECT * FROM kpi LIMIT 1").await.is_empty());
    // A statement that must write fails clearly and changes nothing.
    let err = client
        .simple_query("ALTER MATERIALIZED VIEW kpi RESUME")
        .await
        .expect_err("the store cannot be written");
    let message = common::describe_error(&err);
    assert!(message.contains("no space left"), "{message}");
    assert_eq!(job_status(&client, "kpi").await.0, "failed");
    // With space again, a restart goes on from the last checkpoint, and
    // what the view adds up to is exactly what its job counted.
    std::fs::remove_file(&filler).unwrap();
    server.stop();
    let server = TestServer::start_in(&dir, &flags);
    let client = server.client().await;
    let restored = rows(&client, epoch).await[0][0].parse::<u64>().unwrap();
    wait_until(Duration::from_secs(30), "new checkpoints", || async {
        rows(&client, epoch).await[0][0].parse::<u64>().unwrap() >= restored + 2
    })
    .await;
    execute(&client, "ALTER MATERIALIZED VIEW kpi PAUSE").await;
    let (counted, summed) = counted_and_summed(&client).await;
    assert!(counted > 0);
    assert_eq!(summed, counted, "every counted row is in the view, once");
}

/// An ordinary table's rows survive a restart (graceful or SIGKILL: each
/// statement is committed when it returns), and psql sees Postgres's
/// command tags.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_rows_survive_restarts_and_psql_sees_command_tags() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    {
        let mut server = TestServer::start_in(&dir, &[]);
        let psql = |sql: &str| psql_output(server.port(), &["-c", sql], "");
        assert!(
            psql("CREATE TABLE cells (cell_id STRING PRIMARY KEY, region STRING)")
                .contains("CREATE TABLE")
        );
        let out = psql("INSERT INTO cells VALUES ('a', 'north'), ('b', 'south'), ('c', 'east')");
        assert!(out.contains("INSERT 0 3"), "{out}");
        let out = psql("UPDATE cells SET region = 'west' WHERE cell_id = 'c'");
        assert!(out.contains("UPDATE 1"), "{out}");
        let out = psql("DELETE FROM cells WHERE cell_id = 'b'");
        assert!(out.contains("DELETE 1"), "{out}");
        server.kill();
    }
    let mut server = TestServer::start_in(&dir, &[]);
    {
        let client = server.client().await;
        assert_eq!(
            rows(&client, "SELECT * FROM cells ORDER BY cell_id").await,
            vec![vec!["a", "north"], vec!["c", "west"]]
        );
        execute(&client, "INSERT INTO cells VALUES ('d', 'south')").await;
    }
    assert!(server.stop());
    let server = TestServer::start_in(&dir, &[]);
    let client = server.client().await;
    assert_eq!(
        rows(&client, "SELECT cell_id FROM cells ORDER BY cell_id").await,
        vec![vec!["a"], vec!["c"], vec!["d"]]
    );
    // A dropped table's rows are gone with it.
    execute(&client, "DROP TABLE cells").await;
    execute(
        &client,
        "CREATE TABLE cells (cell_id STRING PRIMARY KEY, region STRING)",
    )
    .await;
    assert_eq!(
        rows(&client, "SELECT COUNT(*) FROM cells").await,
        vec![vec!["0"]]
    );
}

/// psql loads reference data with COPY: `\copy` of a CSV file, and text
/// format on standard input; a bad line fails the whole COPY and adds
/// nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_copies_rows_into_a_table() {
    let server = TestServer::start();
    let client = server.client().await;
    execute(
        &client,
        "CREATE TABLE cells (cell_id STRING PRIMARY KEY, region STRING, capacity INT)",
    )
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let csv = tmp.path().join("cells.csv");
    std::fs::write(
        &csv,
        "cell_id,region,capacity\na,\"north, coast\",100\nb,,80\nc,south,\n",
    )
    .unwrap();
    let psql = |args: &[&str], stdin: &str| psql_output(server.port(), args, stdin);
    let out = psql(
        &[
            "-c",
            &format!(
                "\\copy cells FROM '{}' WITH (FORMAT csv, HEADER true)",
                csv.display()
            ),
        ],
        "",
    );
    assert!(out.contains("COPY 3"), "{out}");
    let out = psql(&["-c", "COPY cells FROM STDIN"], "d\teast\t5\ne\t\\N\t6\n");
    assert!(out.contains("COPY 2"), "{out}");
    // A key that exists: the whole COPY fails, f is not added.
    let out = psql(&["-c", "COPY cells FROM STDIN"], "f\twest\t1\na\twest\t2\n");
    assert!(
        out.contains("duplicate key value violates the primary key of \"cells\""),
        "{out}"
    );
    let out = psql(&["-c", "COPY cells FROM STDIN"], "g\twest\tmany\n");
    assert!(
        out.contains("column \"capacity\" of \"cells\" is INT"),
        "{out}"
    );
    let out = psql(&["-c", "COPY cells FROM STDIN"], "h\twest\n");
    assert!(out.contains("line 1: 2 fields, \"cells\" takes 3"), "{out}");
    assert_eq!(
        rows(&client, "SELECT * FROM cells ORDER BY cell_id").await,
        vec![
            vec!["a", "north, coast", "100"],
            vec!["b", "NULL", "80"],
            vec!["c", "south", "NULL"],
            vec!["d", "east", "5"],
            vec!["e", "NULL", "6"],
        ]
    );
    // Named columns, CSV; and the connection goes on after a failed COPY.
    let out = psql(
        &[
            "-c",
            "COPY cells (region, cell_id) FROM STDIN WITH (FORMAT csv)",
            "-c",
            "SELECT COUNT(*) AS n FROM cells",
        ],
        "west,i\n",
    );
    assert!(out.contains("COPY 1") && out.contains(" 6\n"), "{out}");
    let out = psql(
        &[
            "-c",
            "COPY cells FROM STDIN",
            "-c",
            "SELECT COUNT(*) AS n FROM cells",
        ],
        "j\twest\tmany\n",
    );
    assert!(out.contains("is INT") && out.contains(" 6\n"), "{out}");
    assert_eq!(
        rows(&client, "SELECT region FROM cells WHERE cell_id = 'i'").await,
        vec![vec!["west"]]
    );
    // And out: psql's \copy ... TO a local file, COPY TO STDOUT.
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("cells.csv");
    let out = psql(
        &[
            "-c",
            &format!(
                "\\copy (SELECT cell_id, region FROM cells WHERE cell_id < 'c' ORDER BY 1) TO '{}' WITH (FORMAT csv, HEADER)",
                file.display()
            ),
        ],
        "",
    );
    assert!(out.contains("COPY 2"), "{out}");
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "cell_id,region\na,\"north, coast\"\nb,\n"
    );
    let out = psql(&["-c", "COPY cells TO STDOUT"], "");
    assert_eq!(out.lines().count(), 6, "{out}");
}

/// SUBSCRIBE streams a view's rows as COPY text: first those it has, then
/// each new one as it is committed, while the client reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_streams_the_rows_of_a_view() {
    use futures::StreamExt;
    let server = TestServer::start_in(
        &tempfile::tempdir().unwrap().keep().join("data"),
        &["--checkpoint-interval", "100ms"],
    );
    let client = server.client().await;
    // A finished view: its rows, once, in any order.
    execute(&client, &calls_sql()).await;
    execute(
        &client,
        "CREATE MATERIALIZED VIEW answered AS SELECT cell_id, status, duration_ms FROM calls WHERE status <> 'busy'",
    )
    .await;
    wait_finished(&client, "answered").await;
    let mut expected: Vec<String> = rows(&client, "SELECT * FROM answered")
        .await
        .into_iter()
        .map(|r| format!("insert\t{}", r.join("\t")))
        .collect();
    expected.sort();
    let read = |sql: &'static str, n: usize| {
        let server = &server;
        async move {
            let c = server.client().await;
            let stream = c.copy_out(sql).await.unwrap();
            let mut stream = Box::pin(stream);
            let mut lines = Vec::new();
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            let mut text = String::new();
            while lines.len() < n && std::time::Instant::now() < deadline {
                let chunk = tokio::time::timeout(Duration::from_secs(60), stream.next())
                    .await
                    .expect("rows in time")
                    .expect("the stream goes on")
                    .unwrap();
                text.push_str(std::str::from_utf8(&chunk).unwrap());
                while let Some(i) = text.find('\n') {
                    lines.push(text[..i].to_string());
                    text.drain(..=i);
                }
            }
            lines
        }
    };
    let mut got = read("SUBSCRIBE TO answered", expected.len()).await;
    got.sort();
    assert_eq!(got, expected);
    // A live view: new rows keep coming after those it had.
    execute(
        &client,
        "CREATE TABLE gen (cell_id STRING, duration_ms INT) WITH ('connector' = 'datagen', 'rows-per-second' = '200')",
    )
    .await;
    execute(
        &client,
        "CREATE MATERIALIZED VIEW live AS SELECT cell_id, duration_ms FROM gen",
    )
    .await;
    let lines = read("SUBSCRIBE live", 600).await;
    assert_eq!(lines.len(), 600);
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with("insert\tcell-") && l.split('\t').count() == 3),
        "{:?}",
        &lines[..3]
    );
    // psql's Ctrl-C cancels it: psql says so and exits.
    {
        let dir = tempfile::tempdir().unwrap();
        let (out_path, err_path) = (dir.path().join("out"), dir.path().join("err"));
        let mut child = psql(server.port())
            .args(["-c", "SUBSCRIBE live"])
            .stdout(std::fs::File::create(&out_path).unwrap())
            .stderr(std::fs::File::create(&err_path).unwrap())
            .spawn()
            .unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let killed = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while child.try_wait().unwrap().is_none() {
            assert!(std::time::Instant::now() < deadline, "psql did not stop");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let stderr = std::fs::read_to_string(&err_path).unwrap();
        let stdout = std::fs::read_to_string(&out_path).unwrap();
        assert!(
            stderr.contains("canceling statement due to user request"),
            "{stderr}"
        );
        assert!(
            stdout.lines().count() > 10,
            "rows before the cancel: {stdout}"
        );
    }
    // Over the extended protocol too, and the connection goes on.
    {
        let c = server.client().await;
        let token = c.cancel_token();
        let mut stream = Box::pin(c.copy_out("SUBSCRIBE live").await.unwrap());
        stream.next().await.unwrap().unwrap();
        token.cancel_query(tokio_postgres::NoTls).await.unwrap();
        let end = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                match stream.next().await {
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return common::describe_error(&e),
                    None => return "ended without an error".to_string(),
                }
            }
        })
        .await
        .expect("the subscription stops");
        assert!(end.contains("57014"), "{end}");
        assert_eq!(rows(&c, "SELECT 1").await, vec![vec!["1"]]);
    }
    // A view whose rows change: upserts and deletes by key (cells leave
    // the view at 5 calls). Replayed in order, the lines give the view's
    // rows once its source has ended.
    execute(
        &client,
        "CREATE TABLE few (cell_id STRING) WITH ('connector' = 'datagen', 'rows-per-second' = '300', 'number-of-rows' = '2000')",
    )
    .await;
    execute(
        &client,
        "CREATE MATERIALIZED VIEW per_cell AS SELECT cell_id, COUNT(*) AS n FROM few GROUP BY cell_id HAVING COUNT(*) < 5",
    )
    .await;
    // A view over it follows its changes as they commit: its upserts,
    // and its deletes.
    execute(
        &client,
        "CREATE MATERIALIZED VIEW busy AS SELECT cell_id, n * 10 AS n10 FROM per_cell WHERE n >= 3",
    )
    .await;
    let c = server.client().await;
    let mut stream = Box::pin(c.copy_out("SUBSCRIBE per_cell").await.unwrap());
    let mut view: std::collections::BTreeMap<String, String> = Default::default();
    let (mut text, mut deletes) = (String::new(), 0);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let finished = common::job_status(&client, "per_cell").await.0 == "finished";
        let expected: std::collections::BTreeMap<String, String> =
            rows(&client, "SELECT cell_id, n FROM per_cell")
                .await
                .into_iter()
                .map(|r| (r[0].clone(), r[1].clone()))
                .collect();
        if finished && view == expected {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the subscription's rows {} != the view's {}",
            view.len(),
            expected.len()
        );
        if let Ok(chunk) = tokio::time::timeout(Duration::from_millis(300), stream.next()).await {
            text.push_str(std::str::from_utf8(&chunk.unwrap().unwrap()).unwrap());
        }
        while let Some(i) = text.find('\n') {
            let line: Vec<String> = text[..i].split('\t').map(str::to_string).collect();
            text.drain(..=i);
            match line[0].as_str() {
                "upsert" => {
                    view.insert(line[1].clone(), line[2].clone());
                }
                "delete" => {
                    assert_eq!(line[2], "\\N", "a deleted row has only its key");
                    // A row added and deleted between two checkpoints
                    // is deleted without having been shown.
                    view.remove(&line[1]);
                    deletes += 1;
                }
                other => panic!("operation {other}"),
            }
        }
    }
    assert!(deletes > 0, "cells reached 5 calls");
    wait_finished(&client, "busy").await;
    let busy = rows(&client, "SELECT cell_id, n10 FROM busy ORDER BY cell_id").await;
    assert!(!busy.is_empty());
    assert_eq!(
        busy,
        rows(
            &client,
            "SELECT cell_id, n * 10 FROM per_cell WHERE n >= 3 ORDER BY cell_id"
        )
        .await
    );
}
