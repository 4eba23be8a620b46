//! Throughput benchmark: a TUMBLE 10 s count/sum/avg per key over JSON call
//! events, from a file and from Kafka, through the real server.
//!
//! Run: `scripts/install-test-tools.sh && cargo bench --bench throughput`
//! (a release build). Settings by environment: `EVENTS` (default 5000000),
//! `KEYS` (distinct cells, default 1000), `PARTITIONS` (Kafka, default 4),
//! `PARALLELISM` (server, default: the number of cores), `SKIP_KAFKA=1`,
//! `CHECKPOINT_INTERVAL` (server, default 1s; 0 for none), `STATE_CACHE`
//! (server, default 1GiB). `RECOVERY=1`
//! runs the recovery benchmark instead (see `recovery_benchmark`).
//! `LIVE=1` runs the live benchmark instead (see `live_benchmark`).
//! `WINDOW=HOP|CUMULATE|SESSION` runs the view over that window instead of
//! TUMBLE (HOP 2 s/10 s, CUMULATE 2 s/10 s, SESSION 1 s per cell).
//! `CHAIN=1` (file only) puts a view between the source and the windowed
//! view: `calls_in`, a projection, which the windowed view reads from its
//! committed log (a view over a view).
//! `JOIN=1` (file only) runs an interval join instead: the file read as two
//! sources, each call joined with the calls of its cell within 500 ms of it
//! (about two pairs per event), the pairs counted per cell in the same view
//! (events/s counts the rows of both sides).
//! `RETRACT=1` (file only) aggregates a view whose rows change: `per_cell`
//! counts calls per cell (no window), and `kpi` counts the cells per ten
//! calls over it, taking each cell's old row back as its counts change
//! (use many `KEYS` and a short `CHECKPOINT_INTERVAL` to stress it).
//! `SINK=at-least-once|exactly-once` runs the sink benchmark instead (see
//! `sink_benchmark`).
//! `MEMORY_LIMIT=512MiB` runs the server in a memory cgroup with that cap
//! (Linux cgroup v1, as root): the kernel kills it if it goes over.
//!
//! Reports events/s (rows read from the source and aggregated, until the
//! result is complete and queryable), the server's peak memory (VmHWM), and
//! the delay from the final watermark to a queryable result.

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::bench::{cpu_seconds, env, peak_memory_mib, server_flags};
use common::kafka::Broker;
use common::{execute, rows, TestServer};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rdkafka::producer::{BaseRecord, Producer};

const BASE_MS: i64 = 1_704_067_200_000;

/// Event i: time advances 1 ms per event (1000 events per event-time
/// second), disorder up to 2 s, no late events (delay 5 s).
fn event(i: usize, keys: usize, rng: &mut StdRng, out: &mut Vec<u8>) {
    let ts = BASE_MS + i as i64 - rng.random_range(0..2_000);
    let cell = rng.random_range(0..keys);
    let status = if rng.random_range(0..100) < 93 {
        "ok"
    } else {
        "failed"
    };
    let duration = rng.random_range(0..300_000);
    let _ = write!(
        out,
        r#"{{"event_time": {ts}, "cell_id": "cell-{cell:05}", "msisdn": "3467{:08}", "status": "{status}", "duration_ms": {duration}}}"#,
        rng.random_range(0..100_000_000u32)
    );
}

fn data_file(events: usize, keys: usize) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("bench-data");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("calls-{events}-{keys}.json"));
    if !path.exists() {
        let started = Instant::now();
        let tmp = path.with_extension("tmp");
        let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp).unwrap());
        let mut rng = StdRng::seed_from_u64(42);
        let mut line = Vec::with_capacity(256);
        for i in 0..events {
            line.clear();
            event(i, keys, &mut rng, &mut line);
            line.push(b'\n');
            w.write_all(&line).unwrap();
        }
        w.flush().unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        eprintln!("generated {} in {:.1?}", path.display(), started.elapsed());
    }
    path
}

/// The window of the benchmark's view (`WINDOW`: TUMBLE, HOP, CUMULATE or
/// SESSION), and the windows whose counts add up to every event once.
fn window() -> (&'static str, &'static str) {
    match std::env::var("WINDOW").as_deref().unwrap_or("TUMBLE") {
        "TUMBLE" => (
            "TUMBLE(TABLE calls, DESCRIPTOR(ts), INTERVAL '10' SECOND)",
            "TRUE",
        ),
        // Each event in 5 windows, counted once in those starting at a
        // multiple of 10 s.
        "HOP" => (
            "HOP(TABLE calls, DESCRIPTOR(ts), INTERVAL '2' SECOND, INTERVAL '10' SECOND)",
            "CAST(window_start AS BIGINT) % 10000 = 0",
        ),
        // Each event in the full 10 s window once.
        "CUMULATE" => (
            "CUMULATE(TABLE calls, DESCRIPTOR(ts), INTERVAL '2' SECOND, INTERVAL '10' SECOND)",
            "window_end = window_start + INTERVAL '10' SECOND",
        ),
        // About one event per cell per second: sessions of a few events.
        "SESSION" => (
            "SESSION(TABLE calls PARTITION BY cell_id, DESCRIPTOR(ts), INTERVAL '1' SECOND)",
            "TRUE",
        ),
        other => panic!("WINDOW: TUMBLE, HOP, CUMULATE or SESSION, not {other}"),
    }
}

/// Whether the benchmark is the interval join (`JOIN=1`).
fn joined() -> bool {
    std::env::var("JOIN").is_ok()
}

const JOIN_VIEW: &str = "CREATE MATERIALIZED VIEW kpi AS
     SELECT a.cell_id, COUNT(*) AS pairs, SUM(b.duration_ms) AS total_ms FROM calls a JOIN calls2 b
       ON a.cell_id = b.cell_id AND a.ts BETWEEN b.ts - INTERVAL '500' MILLISECOND AND b.ts + INTERVAL '500' MILLISECOND
     GROUP BY a.cell_id";

/// Whether the windowed view reads a view over the source (`CHAIN=1`).
fn chained() -> bool {
    std::env::var("CHAIN").is_ok()
}

/// Whether the view aggregates an updating view (`RETRACT=1`).
fn retracting() -> bool {
    std::env::var("RETRACT").is_ok()
}

const RETRACT_VIEWS: [&str; 2] = [
    "CREATE MATERIALIZED VIEW per_cell AS
     SELECT cell_id, COUNT(*) AS calls, SUM(duration_ms) AS total_ms FROM calls GROUP BY cell_id",
    "CREATE MATERIALIZED VIEW kpi AS
     SELECT calls / 10 AS tens, COUNT(*) AS cells, SUM(calls) AS calls, SUM(total_ms) AS total_ms
     FROM per_cell GROUP BY calls / 10",
];

const CHAIN_VIEW: &str = "CREATE MATERIALIZED VIEW calls_in AS
     SELECT cell_id, msisdn, status, duration_ms, ts FROM calls";

fn view_sql() -> String {
    let sql = format!(
        "CREATE MATERIALIZED VIEW kpi AS
         SELECT window_start, window_end, cell_id, COUNT(*) AS calls, SUM(duration_ms) AS total_ms,
                AVG(duration_ms) AS avg_ms
         FROM TABLE({})
         GROUP BY window_start, window_end, cell_id
         EMIT ON WINDOW CLOSE",
        window().0
    );
    if chained() {
        sql.replace("TABLE calls", "TABLE calls_in")
    } else {
        sql
    }
}

/// A source `name` over the benchmark's file.
fn file_source(name: &str, path: &std::path::Path) -> String {
    format!(
        "CREATE TABLE {name} ({}) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json')",
        columns(),
        path.display()
    )
}

fn columns() -> &'static str {
    "event_time BIGINT, cell_id STRING, msisdn STRING, status STRING, duration_ms INT,
     ts AS TO_TIMESTAMP_LTZ(event_time, 3), WATERMARK FOR ts AS ts - INTERVAL '5' SECOND"
}

struct Result {
    name: String,
    events: usize,
    seconds: f64,
    peak_mib: f64,
    /// The server's CPU time (user + system) until the result was complete:
    /// steadier than events/s on a shared machine.
    cpu_seconds: f64,
    final_delay_ms: Option<f64>,
    /// From producing an event to seeing it in a continuously updated view.
    freshness_ms: Option<f64>,
    /// The job's checkpoints: how many, the last one's duration and size.
    checkpoints: String,
}

/// A job's checkpoints as the server reports them.
async fn checkpoints_of(client: &tokio_postgres::Client, job: &str) -> String {
    let r = rows(
        client,
        &format!("SELECT checkpoint_epoch, checkpoint_ms, checkpoint_bytes FROM sluice.jobs WHERE name = '{job}'"),
    )
    .await;
    match r.first() {
        Some(r) if r[0] != "0" => format!(
            "{} (last: {} ms, {} KiB)",
            r[0],
            r[1],
            r[2].parse::<u64>().unwrap_or(0) / 1024
        ),
        _ => "none".into(),
    }
}

fn start_in(dir: &std::path::Path) -> TestServer {
    let flags = server_flags();
    let flags: Vec<&str> = flags.iter().map(|s| s.as_str()).collect();
    let server = TestServer::start_in(dir, &flags);
    if let Some(cgroup) = memory_cap() {
        std::fs::write(cgroup.join("cgroup.procs"), server.pid().to_string())
            .expect("moving the server into the memory cgroup");
    }
    server
}

/// With `MEMORY_LIMIT` (bytes, or a size like `512MiB`), a memory cgroup
/// (v1, as root) that caps the server: past the cap the kernel kills it,
/// and the benchmark fails.
fn memory_cap() -> Option<std::path::PathBuf> {
    let limit = std::env::var("MEMORY_LIMIT").ok()?;
    let (number, unit) = limit.split_at(
        limit
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(limit.len()),
    );
    let scale: u64 = match unit {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        other => panic!("MEMORY_LIMIT: unknown unit {other}"),
    };
    let bytes = number.parse::<u64>().expect("MEMORY_LIMIT: a number") * scale;
    let dir = std::path::PathBuf::from(format!(
        "/sys/fs/cgroup/memory/sluice-bench-{}",
        std::process::id()
    ));
    if !dir.exists() {
        std::fs::create_dir(&dir).expect("creating a memory cgroup (cgroup v1, as root)");
        std::fs::write(dir.join("memory.limit_in_bytes"), bytes.to_string())
            .expect("setting the memory limit");
    }
    Some(dir)
}

/// A release server on a fresh data directory.
fn start_server() -> (tempfile::TempDir, TestServer) {
    let tmp = tempfile::tempdir().unwrap();
    let server = start_in(&tmp.path().join("data"));
    (tmp, server)
}

async fn total_calls(client: &tokio_postgres::Client) -> i64 {
    rows(
        client,
        &format!(
            "SELECT COALESCE(SUM(calls), 0) FROM kpi WHERE {}",
            window().1
        ),
    )
    .await[0][0]
        .parse()
        .unwrap()
}

async fn file_benchmark(events: usize, keys: usize) -> Result {
    let path = data_file(events, keys);
    let (_tmp, server) = start_server();
    let client = server.client().await;
    execute(&client, &file_source("calls", &path)).await;
    if joined() {
        execute(&client, &file_source("calls2", &path)).await;
    }
    let started = Instant::now();
    if chained() {
        execute(&client, CHAIN_VIEW).await;
    }
    let view = if joined() {
        JOIN_VIEW.to_string()
    } else if retracting() {
        execute(&client, RETRACT_VIEWS[0]).await;
        RETRACT_VIEWS[1].to_string()
    } else {
        view_sql()
    };
    execute(&client, &view).await;
    common::wait_finished(&client, "kpi").await;
    let seconds = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(server.pid());
    if joined() {
        let counted = rows(
            &client,
            "SELECT rows_in, late_rows, (SELECT SUM(pairs) FROM kpi) FROM sluice.jobs WHERE name = 'kpi'",
        )
        .await;
        println!("join: rows_in, late_rows, pairs: {:?}", counted[0]);
        assert_eq!(counted[0][0], (2 * events).to_string(), "both sides read");
        assert_eq!(counted[0][1], "0", "no late rows");
    } else if retracting() {
        let counted = rows(
            &client,
            "SELECT name, rows_in, rows_out FROM sluice.jobs WHERE name IN ('per_cell', 'kpi') ORDER BY name",
        )
        .await;
        println!("retract: (view, rows_in, rows_out): {counted:?}");
        let total = number(&client, "SELECT SUM(calls) FROM kpi").await;
        assert_eq!(total as usize, events, "every event counted exactly once");
    } else {
        let total = total_calls(&client).await;
        assert_eq!(total as usize, events, "every event counted exactly once");
    }
    Result {
        name: if chained() {
            "file (JSON), through a view".into()
        } else if joined() {
            "file (JSON), interval join of two sources".into()
        } else if retracting() {
            "file (JSON), aggregation over an updating view".into()
        } else {
            "file (JSON)".into()
        },
        events: if joined() { 2 * events } else { events },
        seconds,
        peak_mib: peak_memory_mib(server.pid()),
        cpu_seconds: cpu,
        final_delay_ms: None,
        freshness_ms: None,
        checkpoints: checkpoints_of(&client, "kpi").await,
    }
}

/// The Kafka sink: a view of every event of the file (`SELECT *`, not
/// timed) written to a 4-partition topic by a sink with the given delivery
/// guarantee. Reports messages/s from creating the sink until it has sent
/// every row (with exactly-once, its last transaction commits within the
/// next round), and the server's CPU time per million messages over that
/// span.
async fn sink_benchmark(events: usize, keys: usize, guarantee: &str) {
    let path = data_file(events, keys);
    let broker = Broker::start();
    broker.create_topic("out", 4);
    let (_tmp, server) = start_server();
    let client = server.client().await;
    execute(&client, &file_source("calls", &path)).await;
    execute(
        &client,
        "CREATE MATERIALIZED VIEW calls_all AS SELECT cell_id, msisdn, status, duration_ms, ts FROM calls",
    )
    .await;
    common::wait_finished(&client, "calls_all").await;
    let cpu_before = cpu_seconds(server.pid());
    let started = Instant::now();
    execute(
        &client,
        &format!(
            "CREATE SINK out FROM calls_all WITH ('connector' = 'kafka', 'topic' = 'out',
               'properties.bootstrap.servers' = '{}', 'format' = 'json',
               'sink.delivery-guarantee' = '{guarantee}')",
            broker.addr
        ),
    )
    .await;
    loop {
        let sent = number(
            &client,
            "SELECT rows_out FROM sluice.jobs WHERE name = 'out'",
        )
        .await;
        if sent as usize >= events {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(server.pid()) - cpu_before;
    println!("\n| sink | messages | seconds | messages/s | CPU s per M messages | peak memory |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| {guarantee} | {events} | {seconds:.2} | {:.0} | {:.2} | {:.0} MiB |",
        events as f64 / seconds,
        cpu / (events as f64 / 1e6),
        peak_memory_mib(server.pid())
    );
}

/// Produces the benchmark's events to topic `calls` (not timed as Sluice's
/// throughput).
fn produce(broker: &Broker, events: usize, keys: usize, partitions: i32) {
    let started = Instant::now();
    {
        let producer: rdkafka::producer::BaseProducer = rdkafka::config::ClientConfig::new()
            .set("bootstrap.servers", &broker.addr)
            .set("linger.ms", "20")
            .set("batch.num.messages", "10000")
            .set("queue.buffering.max.messages", "1000000")
            .create()
            .unwrap();
        let mut rng = StdRng::seed_from_u64(42);
        let mut line = Vec::with_capacity(256);
        for i in 0..events {
            line.clear();
            event(i, keys, &mut rng, &mut line);
            let partition = (i % partitions as usize) as i32;
            let mut record = BaseRecord::<(), [u8]>::to("calls")
                .partition(partition)
                .payload(&line[..]);
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((_, r)) => {
                        record = r;
                        producer.poll(Duration::from_millis(5));
                    }
                }
            }
            if i % 1000 == 0 {
                producer.poll(Duration::ZERO);
            }
        }
        producer.flush(Duration::from_secs(300)).unwrap();
    }
    eprintln!(
        "produced {events} events to {partitions} partitions in {:.1?}",
        started.elapsed()
    );
}

fn kafka_source(broker: &Broker) -> String {
    format!(
        "CREATE TABLE calls ({}) WITH ('connector' = 'kafka', 'topic' = 'calls',
           'properties.bootstrap.servers' = '{}', 'scan.startup.mode' = 'earliest-offset', 'format' = 'json')",
        columns(),
        broker.addr
    )
}

/// One number from a query.
async fn number(client: &tokio_postgres::Client, sql: &str) -> i64 {
    rows(client, sql).await[0][0].parse().unwrap()
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_bytes(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

/// Recovery: an updating aggregation per subscriber (millions of keys) over
/// the Kafka events; once a checkpoint holds everything, the server is
/// killed (SIGKILL) and started again. Reports the state's size on disk,
/// the checkpoint that saved it, and the time from the restart until the
/// view is live again with every row.
async fn recovery_benchmark(events: usize, keys: usize) {
    let partitions = env("PARTITIONS", 4) as i32;
    let broker = Broker::start();
    broker.create_topic("calls", partitions as u32);
    produce(&broker, events, keys, partitions);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut server = start_in(&dir);
    let client = server.client().await;
    execute(&client, &kafka_source(&broker)).await;
    execute(
        &client,
        "CREATE MATERIALIZED VIEW subscribers AS
         SELECT msisdn, COUNT(*) AS calls, SUM(duration_ms) AS total_ms FROM calls GROUP BY msisdn",
    )
    .await;
    let job = "FROM sluice.jobs WHERE name = 'subscribers'";
    let started = Instant::now();
    while number(&client, &format!("SELECT rows_in {job}")).await < events as i64 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let read = started.elapsed();
    // Two more checkpoints: the last one holds every row.
    let epoch = number(&client, &format!("SELECT checkpoint_epoch {job}")).await;
    while number(&client, &format!("SELECT checkpoint_epoch {job}")).await < epoch + 2 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let keys_before = number(&client, "SELECT COUNT(*) FROM subscribers").await;
    let checkpoint = checkpoints_of(&client, "subscribers").await;
    let peak = peak_memory_mib(server.pid());
    server.kill();
    let state = dir_bytes(&dir);
    let restarted = Instant::now();
    let server = start_in(&dir);
    let client = server.client().await;
    loop {
        let live = rows(&client, &format!("SELECT status {job}")).await;
        if live.first().is_some_and(|r| r[0] == "running")
            && number(&client, "SELECT COUNT(*) FROM subscribers").await == keys_before
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let to_live = restarted.elapsed();
    let total = number(&client, "SELECT SUM(calls) FROM subscribers").await;
    assert_eq!(
        total as usize, events,
        "every event counted exactly once after the crash"
    );
    let peak_after = peak_memory_mib(server.pid());
    let cap = std::env::var("MEMORY_LIMIT").unwrap_or_else(|_| "none".into());
    println!(
        "\n| keys | events read in | peak memory (reading; after the restart) | memory cap | state on disk | checkpoints | restart to live |\n|---|---|---|---|---|---|---|"
    );
    println!(
        "| {keys_before} | {:.1} s | {peak:.0} MiB; {peak_after:.0} MiB | {cap} | {:.0} MiB | {checkpoint} | {:.1} s |",
        read.as_secs_f64(),
        state as f64 / (1024.0 * 1024.0),
        to_live.as_secs_f64()
    );
}

async fn kafka_benchmark(events: usize, keys: usize) -> Result {
    let partitions = env("PARTITIONS", 4) as i32;
    let broker = Broker::start();
    broker.create_topic("calls", partitions as u32);
    produce(&broker, events, keys, partitions);
    let (_tmp, server) = start_server();
    let client = server.client().await;
    execute(&client, &kafka_source(&broker)).await;
    let started = Instant::now();
    execute(&client, &view_sql()).await;
    loop {
        let r = rows(
            &client,
            "SELECT rows_in FROM sluice.jobs WHERE name = 'kpi'",
        )
        .await;
        if r[0][0].parse::<usize>().unwrap() >= events {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seconds = started.elapsed().as_secs_f64();

    // The final watermark: one event per partition far ahead closes every
    // window of the data; measure until the whole result is queryable.
    let flush: Vec<(i32, String)> = (0..partitions)
        .map(|p| {
            (
                p,
                format!(
                    r#"{{"event_time": {}, "cell_id": "flush", "status": "ok", "duration_ms": 0}}"#,
                    BASE_MS + events as i64 + 3_600_000
                ),
            )
        })
        .collect();
    let sent = Instant::now();
    broker.produce("calls", &flush);
    // Complete when every instance has fired every window of the data: the
    // windows' counts add up to the events (each instance fires its own
    // groups, so one row of the last window is not enough).
    loop {
        let total = total_calls(&client).await;
        if total as usize == events {
            break;
        }
        if sent.elapsed() > Duration::from_secs(60) {
            panic!(
                "every event counted exactly once: {total} of {events}; jobs: {:?}",
                rows(&client, "SELECT name, rows_in, rows_out, late_rows, bad_rows, checkpoint_epoch FROM sluice.jobs").await
            );
        }
    }
    let final_delay_ms = sent.elapsed().as_secs_f64() * 1000.0;
    let cpu = cpu_seconds(server.pid());
    let checkpoints = checkpoints_of(&client, "kpi").await;

    // Freshness: an event's way from the producer to a query, through a
    // continuously updated aggregation (median of 20 probes).
    execute(
        &client,
        "CREATE MATERIALIZED VIEW probes AS SELECT cell_id, COUNT(*) AS n FROM calls
         WHERE cell_id LIKE 'probe-%' GROUP BY cell_id",
    )
    .await;
    let producer = broker.producer();
    let mut delays = Vec::new();
    for i in 0..20 {
        let probe = format!(
            r#"{{"event_time": {}, "cell_id": "probe-{i}", "status": "ok", "duration_ms": 0}}"#,
            BASE_MS + events as i64 + 3_600_000
        );
        let query = format!("SELECT n FROM probes WHERE cell_id = 'probe-{i}'");
        let sent = Instant::now();
        producer
            .send(
                BaseRecord::<(), String>::to("calls")
                    .partition(i % partitions)
                    .payload(&probe),
            )
            .map_err(|(e, _)| e)
            .unwrap();
        producer.flush(Duration::from_secs(10)).unwrap();
        while rows(&client, &query).await.is_empty() {
            assert!(
                sent.elapsed() < Duration::from_secs(30),
                "probe {i} never appeared"
            );
        }
        delays.push(sent.elapsed().as_secs_f64() * 1000.0);
    }
    delays.sort_by(|a, b| a.total_cmp(b));
    Result {
        name: format!("Kafka ({partitions} partitions)"),
        events,
        seconds,
        peak_mib: peak_memory_mib(server.pid()),
        cpu_seconds: cpu,
        final_delay_ms: Some(final_delay_ms),
        freshness_ms: Some(delays[delays.len() / 2]),
        checkpoints,
    }
}

/// Live: a datagen source at `LIVE_RATE` events/s (default 200000) for
/// `LIVE_SECONDS` (default 30), event time moving with the clock, into the
/// KPI view updated continuously; once without checkpoints, once with one
/// every second. Reports the server's CPU time per million events: what
/// checkpoints cost when they save what a second of live data changes.
async fn live_benchmark() {
    let rate = env("LIVE_RATE", 200_000);
    let seconds = env("LIVE_SECONDS", 30);
    println!("\n| checkpoints | events | CPU s per M events | peak memory | checkpoint (last) |\n|---|---|---|---|---|");
    for interval in ["0", "1s"] {
        let tmp = tempfile::tempdir().unwrap();
        let server = TestServer::start_in(
            &tmp.path().join("data"),
            &["--checkpoint-interval", interval],
        );
        let client = server.client().await;
        execute(
            &client,
            &format!(
                "CREATE TABLE calls WITH ('connector' = 'datagen', 'rows-per-second' = '{rate}', 'number-of-rows' = '{}')",
                rate * seconds
            ),
        )
        .await;
        execute(
            &client,
            "CREATE MATERIALIZED VIEW kpi AS
             SELECT window_start, window_end, cell_id, COUNT(*) AS calls,
                    COUNT(*) FILTER (WHERE status <> 'ok') AS failures, AVG(duration_ms) AS avg_ms
             FROM TABLE(TUMBLE(TABLE calls, DESCRIPTOR(ts), INTERVAL '10' SECOND))
             GROUP BY window_start, window_end, cell_id",
        )
        .await;
        common::wait_finished(&client, "kpi").await;
        let cpu = cpu_seconds(server.pid());
        let events = rate * seconds;
        println!(
            "| {interval} | {events} | {:.2} | {:.0} MiB | {} |",
            cpu / (events as f64 / 1e6),
            peak_memory_mib(server.pid()),
            checkpoints_of(&client, "kpi").await
        );
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("throughput: bench");
        return;
    }
    let events = env("EVENTS", 5_000_000);
    let keys = env("KEYS", 1000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    if std::env::var("RECOVERY").is_ok() {
        runtime.block_on(recovery_benchmark(events, keys));
        return;
    }
    if std::env::var("LIVE").is_ok() {
        runtime.block_on(live_benchmark());
        return;
    }
    if let Ok(guarantee) = std::env::var("SINK") {
        runtime.block_on(sink_benchmark(events, keys, &guarantee));
        return;
    }
    let mut results = vec![runtime.block_on(file_benchmark(events, keys))];
    if std::env::var("SKIP_KAFKA").is_err() {
        results.push(runtime.block_on(kafka_benchmark(events, keys)));
    }
    println!(
        "\n| source | events | seconds | events/s | CPU s per M events | peak memory | final watermark to result | event to query (median) | checkpoints |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let ms = |v: Option<f64>| {
        v.map(|d| format!("{d:.0} ms"))
            .unwrap_or_else(|| "n/a".into())
    };
    for r in results {
        println!(
            "| {} | {} | {:.2} | {:.0} | {:.2} | {:.0} MiB | {} | {} | {} |",
            r.name,
            r.events,
            r.seconds,
            r.events as f64 / r.seconds,
            r.cpu_seconds / (r.events as f64 / 1e6),
            r.peak_mib,
            ms(r.final_delay_ms),
            ms(r.freshness_ms),
            r.checkpoints
        );
    }
}
