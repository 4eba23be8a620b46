//! Passwords and TLS, as Postgres has them: users with SCRAM-SHA-256
//! verifiers, `--auth trust|password`, the first superuser from
//! `--superuser` and `SLUICE_PASSWORD`, TLS with `--tls-cert`/`--tls-key`
//! and `--tls-required`. Tested with psql, tokio-postgres and psycopg.

mod common;

use std::path::Path;
use std::process::Command;

use common::{rows, TestServer};

const ADMIN: &str = "admin";
const SECRET: &str = "s3cret pass";

/// psql's output (stdout then stderr) for `sql`, connected with `conninfo`
/// (a libpq connection string) and `password`.
fn psql(conninfo: &str, password: &str, sql: &str) -> (bool, String) {
    let out = Command::new("psql")
        .args(["-X", "-A", "-t", "-d", conninfo, "-c", sql])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("psql (apt-get install postgresql-client)");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn conninfo(server: &TestServer, user: &str, extra: &str) -> String {
    format!(
        "host=127.0.0.1 port={} user={user} dbname=sluice {extra}",
        server.port()
    )
}

fn start_with_password(dir: &Path, extra: &[&str]) -> TestServer {
    let mut flags = vec!["--auth", "password", "--superuser", ADMIN];
    flags.extend_from_slice(extra);
    TestServer::start_with(dir, &flags, &[("SLUICE_PASSWORD", SECRET)])
}

/// What the server said when it would not start.
fn refused(flags: &[&str], envs: &[(&str, &str)]) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["--data-dir"])
        .arg(tmp.path().join("data"))
        .args(flags)
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    assert!(!out.status.success(), "it started with {flags:?}");
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_over_scram_for_every_client() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let server = start_with_password(&dir, &[]);
    // The superuser logs in, with psql and tokio-postgres.
    let (ok, out) = psql(&conninfo(&server, ADMIN, ""), SECRET, "SELECT 1");
    assert!(ok && out.trim() == "1", "{out}");
    let admin = server
        .client_as(ADMIN, SECRET)
        .await
        .expect("admin logs in");
    // A wrong password and an unknown user get the same answer.
    for (user, password) in [(ADMIN, "wrong"), ("nobody", SECRET)] {
        let err = server.client_as(user, password).await.expect_err("refused");
        let db = err.as_db_error().expect("a server error");
        assert_eq!(db.code().code(), "28P01");
        assert_eq!(
            db.message(),
            format!("password authentication failed for user \"{user}\"")
        );
        let (ok, out) = psql(&conninfo(&server, user, ""), password, "SELECT 1");
        assert!(
            !ok && out.contains("password authentication failed"),
            "{out}"
        );
    }
    // Users: made, listed, their password changed by themselves, dropped.
    common::execute(&admin, "CREATE USER alice WITH PASSWORD 'wonder'").await;
    common::execute(&admin, "CREATE ROLE bob LOGIN PASSWORD 'builder'").await;
    common::execute(&admin, "CREATE ROLE nologin").await;
    let alice = server.client_as("alice", "wonder").await.expect("alice");
    assert_eq!(rows(&alice, "SELECT 2").await, [["2"]]);
    assert!(server.client_as("nologin", "").await.is_err());
    // Not a superuser: no users of her own making.
    let err = alice
        .simple_query("CREATE USER mallory PASSWORD 'x'")
        .await
        .unwrap_err();
    assert_eq!(err.as_db_error().unwrap().code().code(), "42501");
    common::execute(&alice, "ALTER USER alice PASSWORD 'land'").await;
    assert!(server.client_as("alice", "wonder").await.is_err());
    assert!(server.client_as("alice", "land").await.is_ok());
    let (ok, out) = psql(&conninfo(&server, ADMIN, ""), SECRET, "\\du");
    assert!(ok && out.contains("alice") && out.contains("bob"), "{out}");
    // The catalog keeps verifiers, never passwords.
    assert_eq!(
        rows(
            &admin,
            "SELECT rolname, rolpassword FROM pg_roles WHERE rolname = 'bob'"
        )
        .await,
        [["bob", "********"]]
    );
    common::execute(&admin, "DROP USER bob").await;
    assert!(server.client_as("bob", "builder").await.is_err());
    // psycopg, too.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/psycopg_connect.py");
    let out = Command::new(common::python())
        .arg(&script)
        .arg(conninfo(&server, "alice", "password=land"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "alice",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Users survive a restart; the stored verifier is not the password.
    drop((admin, alice));
    let mut server = server;
    assert!(server.stop());
    let server = start_with_password(&dir, &[]);
    assert!(server.client_as("alice", "land").await.is_ok());
    let store = std::fs::read_dir(dir.join("db"))
        .unwrap()
        .filter_map(|e| std::fs::read(e.unwrap().path()).ok())
        .any(|bytes| bytes.windows(4).any(|w| w == b"land"));
    assert!(!store, "a password was stored as it is");
}

#[test]
fn unsafe_starts_are_refused_with_the_reason() {
    let out = refused(&["--listen", "0.0.0.0:0"], &[]);
    assert!(
        out.contains("refusing to listen on 0.0.0.0") && out.contains("--auth password"),
        "{out}"
    );
    let out = refused(&["--listen", "127.0.0.1:0", "--auth", "password"], &[]);
    assert!(out.contains("--superuser"), "{out}");
    let out = refused(&["--listen", "127.0.0.1:0", "--superuser", "x"], &[]);
    assert!(out.contains("SLUICE_PASSWORD"), "{out}");
    let out = refused(&["--listen", "127.0.0.1:0", "--tls-required"], &[]);
    assert!(out.contains("--tls-cert"), "{out}");
    let out = refused(&["--listen", "127.0.0.1:0", "--auth", "nope"], &[]);
    assert!(out.contains("trust or password"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_passwords_and_tls_required() {
    let tmp = tempfile::tempdir().unwrap();
    let (cert, key, ca) = common::certificate(tmp.path());
    let (cert_s, key_s) = (cert.display().to_string(), key.display().to_string());
    let ca_s = ca.display().to_string();
    let server = start_with_password(
        &tmp.path().join("data"),
        &["--tls-cert", &cert_s, "--tls-key", &key_s],
    );
    // psql over TLS: required, and verified against the certificate.
    let (ok, out) = psql(
        &conninfo(&server, ADMIN, "sslmode=require"),
        SECRET,
        "SELECT ssl FROM (SELECT 1) t CROSS JOIN (SELECT true AS ssl) s",
    );
    assert!(ok, "{out}");
    let verify = format!(
        "host=localhost port={} user={ADMIN} dbname=sluice sslmode=verify-full sslrootcert={}",
        server.port(),
        ca_s
    );
    let (ok, out) = psql(&verify, SECRET, "SELECT 42");
    assert!(ok && out.trim() == "42", "{out}");
    // A wrong password over TLS is refused the same way.
    let (ok, out) = psql(
        &conninfo(&server, ADMIN, "sslmode=require"),
        "nope",
        "SELECT 1",
    );
    assert!(
        !ok && out.contains("password authentication failed"),
        "{out}"
    );
    // tokio-postgres over TLS, verifying the certificate.
    let tls = common::tls::Rustls::trusting(&ca);
    let conn = format!(
        "host=127.0.0.1 port={} user={ADMIN} password='{SECRET}' dbname=sluice sslmode=require",
        server.port()
    );
    let (client, connection) = tokio_postgres::connect(&conn, tls.clone()).await.unwrap();
    tokio::spawn(connection);
    assert_eq!(rows(&client, "SELECT 7").await, [["7"]]);
    let wrong = conn.replace(SECRET, "nope");
    let err = tokio_postgres::connect(&wrong, tls)
        .await
        .err()
        .expect("refused");
    assert_eq!(err.as_db_error().unwrap().code().code(), "28P01");
    // psycopg with verify-full.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/psycopg_connect.py");
    let out = Command::new(common::python())
        .arg(&script)
        .arg(format!("{verify} password='{SECRET}'"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        ADMIN,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Plain connections still work without --tls-required...
    let (ok, out) = psql(
        &conninfo(&server, ADMIN, "sslmode=disable"),
        SECRET,
        "SELECT 1",
    );
    assert!(ok, "{out}");
    drop(server);
    // ...and are refused with it.
    let server = start_with_password(
        &tmp.path().join("data2"),
        &["--tls-cert", &cert_s, "--tls-key", &key_s, "--tls-required"],
    );
    let (ok, out) = psql(
        &conninfo(&server, ADMIN, "sslmode=disable"),
        SECRET,
        "SELECT 1",
    );
    assert!(!ok && out.contains("requires TLS"), "{out}");
    let (ok, out) = psql(
        &conninfo(&server, ADMIN, "sslmode=require"),
        SECRET,
        "SELECT 1",
    );
    assert!(ok, "{out}");
}
