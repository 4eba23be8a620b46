//! Test helpers: the real `sluice` binary on a free port with its own data
//! directory, real Postgres clients, and (in `kafka`) a real Kafka-protocol
//! broker.

#![allow(dead_code)]

pub mod bench;
pub mod kafka;
pub mod nexmark;
pub mod slt;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

/// A running `sluice` server.
pub struct TestServer {
    child: Option<Child>,
    pub addr: String,
    pub data_dir: PathBuf,
    /// Keeps a temporary data directory alive.
    _tmp: Option<tempfile::TempDir>,
    log: Arc<Mutex<Vec<String>>>,
}

impl TestServer {
    /// Starts a server with a fresh data directory.
    pub fn start() -> TestServer {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().join("data");
        let mut s = TestServer::start_in(&dir, &[]);
        s._tmp = Some(tmp);
        s
    }

    /// Starts a server on `data_dir` with extra flags.
    pub fn start_in(data_dir: &Path, flags: &[&str]) -> TestServer {
        TestServer::start_with(data_dir, flags, &[])
    }

    /// Starts a server on `data_dir` with extra flags and environment
    /// variables (`SLUICE_PASSWORD`).
    pub fn start_with(data_dir: &Path, flags: &[&str], envs: &[(&str, &str)]) -> TestServer {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(flags)
            .envs(envs.iter().copied())
            .env(
                "RUST_LOG",
                std::env::var("SLUICE_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting sluice");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("sluice is listening") {
                    if let Some(addr) = line
                        .split("addr=")
                        .nth(1)
                        .and_then(|s| s.split_whitespace().next())
                    {
                        if let Some(tx) = tx.take() {
                            let _ = tx.send(addr.to_string());
                        }
                    }
                }
                sink.lock().unwrap().push(line);
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                panic!("sluice did not start:\n{}", log.lock().unwrap().join("\n"));
            }
        };
        TestServer {
            child: Some(child),
            addr,
            data_dir: data_dir.to_path_buf(),
            _tmp: None,
            log,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.rsplit(':').next().unwrap().parse().unwrap()
    }

    pub async fn client(&self) -> Client {
        let (host, port) = self.addr.rsplit_once(':').unwrap();
        let conn = format!("host={host} port={port} user=sluice dbname=sluice");
        let (client, connection) = tokio_postgres::connect(&conn, NoTls)
            .await
            .expect("connect");
        tokio::spawn(async move {
            let _ = connection.await;
        });
        client
    }

    /// A client logged in as `user` with `password`; the error if the
    /// server refuses it.
    pub async fn client_as(
        &self,
        user: &str,
        password: &str,
    ) -> Result<Client, tokio_postgres::Error> {
        let (host, port) = self.addr.rsplit_once(':').unwrap();
        let conn =
            format!("host={host} port={port} user={user} password='{password}' dbname=sluice");
        let (client, connection) = tokio_postgres::connect(&conn, NoTls).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Stops with SIGTERM and waits; returns whether it exited cleanly.
    pub fn stop(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        unsafe {
            libc_kill(child.id() as i32, 15);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        false
    }

    /// Kills with SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The rows of a query DataFusion runs in batch (the independent answer
/// streaming results are compared with), as text.
pub async fn batch_rows(ctx: &datafusion::prelude::SessionContext, sql: &str) -> Vec<Vec<String>> {
    let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    let mut out = Vec::new();
    for b in batches {
        for row in 0..b.num_rows() {
            out.push(
                b.columns()
                    .iter()
                    .map(|c| arrow::util::display::array_value_to_string(c, row).unwrap())
                    .collect(),
            );
        }
    }
    out
}

/// Runs a simple query and returns its rows as text (NULL as "NULL").
pub async fn rows(client: &Client, sql: &str) -> Vec<Vec<String>> {
    match client.simple_query(sql).await {
        Ok(messages) => messages
            .into_iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::Row(r) => Some(
                    (0..r.len())
                        .map(|i| r.get(i).unwrap_or("NULL").to_string())
                        .collect(),
                ),
                _ => None,
            })
            .collect(),
        Err(e) => panic!("query failed: {sql}\n{}", describe_error(&e)),
    }
}

pub async fn execute(client: &Client, sql: &str) {
    if let Err(e) = client.simple_query(sql).await {
        panic!("statement failed: {sql}\n{}", describe_error(&e));
    }
}

pub fn describe_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    }
}

/// Waits until `check` returns true, polling; panics after `timeout`.
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        if Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `sql` returns exactly `expected` (rows of text values).
pub async fn wait_for_rows(client: &Client, sql: &str, expected: &[&[&str]], timeout: Duration) {
    let expected: Vec<Vec<String>> = expected
        .iter()
        .map(|r| r.iter().map(|v| v.to_string()).collect())
        .collect();
    let deadline = Instant::now() + timeout;
    loop {
        let actual = rows(client, sql).await;
        if actual == expected {
            return;
        }
        if Instant::now() > deadline {
            panic!("timed out waiting for {sql}\n  want {expected:?}\n  got  {actual:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until job `view` has taken at least `epochs` checkpoints.
pub async fn wait_checkpoints(client: &Client, view: &str, epochs: u64) {
    let sql = format!("SELECT checkpoint_epoch FROM sluice.jobs WHERE name = '{view}'");
    wait_until(Duration::from_secs(60), "a few checkpoints", || async {
        rows(client, &sql).await[0][0].parse::<u64>().unwrap() >= epochs
    })
    .await;
}

/// The status of a job, from `sluice.jobs`.
pub async fn job_status(client: &Client, view: &str) -> (String, Option<String>) {
    let r = rows(
        client,
        &format!("SELECT status, error FROM sluice.jobs WHERE name = '{view}'"),
    )
    .await;
    match r.first() {
        Some(row) => (row[0].clone(), (row[1] != "NULL").then(|| row[1].clone())),
        None => ("missing".into(), None),
    }
}

/// Waits until job `job` (a sink's, or a view's) has written more than
/// `rows` rows.
pub async fn wait_rows_out(client: &Client, job: &str, rows_out: u64) {
    let sql = format!("SELECT rows_out FROM sluice.jobs WHERE name = '{job}'");
    wait_until(
        Duration::from_secs(60),
        &format!("{job} to write {rows_out} rows"),
        || async {
            rows(client, &sql)
                .await
                .first()
                .is_some_and(|r| r[0].parse::<u64>().unwrap_or(0) > rows_out)
        },
    )
    .await;
}

/// Waits until a job over a bounded source has finished.
pub async fn wait_finished(client: &Client, view: &str) {
    wait_finished_within(client, view, Duration::from_secs(120)).await
}

/// Waits until job `view` has finished, for up to `timeout` (panics if it
/// fails, or does not finish in time).
pub async fn wait_finished_within(client: &Client, view: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let (status, error) = job_status(client, view).await;
        match status.as_str() {
            "finished" => return,
            "failed" => panic!("job {view} failed: {error:?}"),
            _ => {}
        }
        if Instant::now() > deadline {
            panic!("job {view} did not finish (status {status}, error {error:?})");
        }
        // Often enough that a benchmark's time is not the poll's.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A server certificate for localhost and 127.0.0.1 and its key, signed by
/// a certificate authority of its own (clients trust the authority's
/// certificate), made by openssl in `dir`: (certificate, key, authority).
pub fn certificate(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=Sluice test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(
        dir.join("server.ext"),
        "basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "server.ext",
        "-out",
        "server.crt",
    ]);
    (
        dir.join("server.crt"),
        dir.join("server.key"),
        dir.join("ca.crt"),
    )
}

/// tokio-postgres over TLS (rustls), verifying the server's certificate.
pub mod tls {
    use std::future::Future;
    use std::io;
    use std::path::Path;
    use std::pin::Pin;
    use std::sync::Arc;
    use std::task::{Context, Poll};

    use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
    use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
    use tokio_rustls::rustls::{ClientConfig, RootCertStore};

    /// Trusts the certificate in `cert` (a PEM file) only.
    #[derive(Clone)]
    pub struct Rustls(Arc<ClientConfig>);

    impl Rustls {
        pub fn trusting(cert: &Path) -> Rustls {
            let mut roots = RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(cert).expect("the certificate") {
                roots.add(c.expect("a certificate")).expect("a root");
            }
            Rustls(Arc::new(
                ClientConfig::builder()
                    .with_root_certificates(roots)
                    .with_no_client_auth(),
            ))
        }
    }

    pub struct Connect {
        config: Arc<ClientConfig>,
        domain: String,
    }

    impl<S> MakeTlsConnect<S> for Rustls
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        type Stream = Stream<S>;
        type TlsConnect = Connect;
        type Error = io::Error;

        fn make_tls_connect(&mut self, domain: &str) -> io::Result<Connect> {
            Ok(Connect {
                config: self.0.clone(),
                domain: domain.to_string(),
            })
        }
    }

    impl<S> TlsConnect<S> for Connect
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        type Stream = Stream<S>;
        type Error = io::Error;
        type Future = Pin<Box<dyn Future<Output = io::Result<Stream<S>>> + Send>>;

        fn connect(self, stream: S) -> Self::Future {
            Box::pin(async move {
                let name = ServerName::try_from(self.domain)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
                let tls = tokio_rustls::TlsConnector::from(self.config)
                    .connect(name, stream)
                    .await?;
                Ok(Stream(tls))
            })
        }
    }

    pub struct Stream<S>(tokio_rustls::client::TlsStream<S>);

    impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Stream<S> {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Pin::new(&mut self.0).poll_read(cx, buf)
        }
    }

    impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Stream<S> {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            Pin::new(&mut self.0).poll_write(cx, buf)
        }

        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.0).poll_flush(cx)
        }

        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.0).poll_shutdown(cx)
        }
    }

    impl<S: AsyncRead + AsyncWrite + Unpin> tokio_postgres::tls::TlsStream for Stream<S> {
        fn channel_binding(&self) -> ChannelBinding {
            ChannelBinding::none()
        }
    }
}

/// The password of [`SecureServer`]'s user `sluice`.
pub const PASSWORD: &str = "client test password";

/// A server as deployed: passwords (`--auth password`, user `sluice`) and
/// TLS with a certificate clients verify.
pub struct SecureServer {
    pub server: TestServer,
    /// The certificate clients verify the server with (its authority's).
    pub cert: PathBuf,
    _dir: tempfile::TempDir,
}

impl SecureServer {
    pub fn start() -> SecureServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let (cert, key, ca) = certificate(dir.path());
        let cert_s = cert.display().to_string();
        let key_s = key.display().to_string();
        let server = TestServer::start_with(
            &dir.path().join("data"),
            &[
                "--auth",
                "password",
                "--superuser",
                "sluice",
                "--tls-cert",
                &cert_s,
                "--tls-key",
                &key_s,
            ],
            &[("SLUICE_PASSWORD", PASSWORD)],
        );
        SecureServer {
            server,
            cert: ca,
            _dir: dir,
        }
    }

    /// A tokio-postgres client: TLS verifying the certificate, with the
    /// password.
    pub async fn client(&self) -> Client {
        let conn = format!(
            "host=127.0.0.1 port={} user=sluice password='{PASSWORD}' dbname=sluice sslmode=require",
            self.port()
        );
        let (client, connection) =
            tokio_postgres::connect(&conn, tls::Rustls::trusting(&self.cert))
                .await
                .expect("the test user logs in over TLS");
        tokio::spawn(async move {
            let _ = connection.await;
        });
        client
    }

    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// libpq's environment (psql, psycopg, psycopg2, SQLAlchemy) for the
    /// password and a verified TLS connection.
    pub fn libpq_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("PGPASSWORD", PASSWORD.to_string()),
            ("PGSSLMODE", "verify-full".to_string()),
            ("PGSSLROOTCERT", self.cert.display().to_string()),
        ]
    }
}

/// The Python with psycopg (installed by `scripts/install-test-tools.sh`
/// into `~/.cache/sluice-tools/venv`), or `SLUICE_TEST_PYTHON`.
pub fn python() -> PathBuf {
    if let Ok(p) = std::env::var("SLUICE_TEST_PYTHON") {
        return p.into();
    }
    let home = std::env::var("HOME").expect("HOME");
    PathBuf::from(home).join(".cache/sluice-tools/venv/bin/python")
}

/// The directory of test data files.
pub fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("data")
}

/// Creates `calls`, the small file of calls (`tests/data/calls_small.json`)
/// with its event time `ts` and a watermark 5 s behind it.
pub async fn create_small_calls(client: &Client) {
    execute(
        client,
        &format!(
            "CREATE TABLE calls (event_time BIGINT, cell_id STRING, status STRING, duration_ms INT,
               ts AS TO_TIMESTAMP_LTZ(event_time, 3), WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
             WITH ('connector' = 'filesystem', 'path' = '{}')",
            data_dir().join("calls_small.json").display()
        ),
    )
    .await;
}

/// A client that speaks the protocol byte by byte, for what real clients
/// cannot send (invalid UTF-8, old protocol versions).
pub mod raw {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    /// One backend message: its type byte and body.
    pub type Message = (u8, Vec<u8>);

    pub fn connect(addr: &str) -> TcpStream {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s
    }

    /// A protocol 3.0 startup as user `sluice`, read up to ReadyForQuery.
    pub fn startup(addr: &str) -> TcpStream {
        let mut s = connect(addr);
        let mut body = Vec::new();
        body.extend_from_slice(&196608u32.to_be_bytes());
        for part in ["user", "sluice", "database", "sluice"] {
            body.extend_from_slice(part.as_bytes());
            body.push(0);
        }
        body.push(0);
        let mut packet = ((body.len() + 4) as u32).to_be_bytes().to_vec();
        packet.extend_from_slice(&body);
        s.write_all(&packet).unwrap();
        read_until_ready(&mut s);
        s
    }

    /// Sends a simple Query whose text is `text` (any bytes).
    pub fn query(s: &mut TcpStream, text: &[u8]) -> Vec<Message> {
        let mut m = vec![b'Q'];
        m.extend_from_slice(&((text.len() + 5) as u32).to_be_bytes());
        m.extend_from_slice(text);
        m.push(0);
        s.write_all(&m).unwrap();
        read_until_ready(s)
    }

    pub fn read_message(s: &mut TcpStream) -> Option<Message> {
        let mut head = [0u8; 5];
        s.read_exact(&mut head).ok()?;
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let mut body = vec![0u8; len.saturating_sub(4)];
        s.read_exact(&mut body).ok()?;
        Some((head[0], body))
    }

    pub fn read_until_ready(s: &mut TcpStream) -> Vec<Message> {
        let mut out = Vec::new();
        while let Some(m) = read_message(s) {
            let ready = m.0 == b'Z';
            out.push(m);
            if ready {
                break;
            }
        }
        out
    }

    /// The SQLSTATE and message of an ErrorResponse body.
    pub fn error_fields(body: &[u8]) -> (String, String) {
        let mut code = String::new();
        let mut message = String::new();
        for field in body.split(|b| *b == 0) {
            if let Some((kind, text)) = field.split_first() {
                let text = String::from_utf8_lossy(text).to_string();
                match kind {
                    b'C' => code = text,
                    b'M' => message = text,
                    _ => {}
                }
            }
        }
        (code, message)
    }
}
