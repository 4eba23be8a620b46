//! Nexmark benchmark: Nexmark's queries as written (tests/data/nexmark,
//! only their `${...}` placeholders filled), each over the same bounded
//! `nexmark` events, through the real server.
//!
//! Run: `cargo bench --bench nexmark` (a release build). Settings by
//! environment: `QUERIES` (e.g. `q0,q5`; default: every query Sluice runs),
//! `EVENTS` (default 10000000), `TPS` (Nexmark's `${TPS}`, the events' rate
//! in event time; default 10000000, as in Nexmark's own suites),
//! `PARALLELISM`, `CHECKPOINT_INTERVAL` and `STATE_CACHE` (server),
//! `CHECK_EVENTS` (default 100000; 0 for no check), and `SOURCE`:
//! `nexmark` (default: the `nexmark` connector) or `files`, the same
//! events read from a JSON file, which is written first (once) into
//! `target/bench-data/nexmark-<EVENTS>/`, with its DDL as `_ddl.sql`:
//! what `benches/flink/nexmark.sh` gives Flink. (Their times are spaced
//! by 10000000 events per second, whatever `TPS`.)
//!
//! Per query: a fresh server, `ddl_gen.sql` and `ddl_views.sql`, then the
//! query file (its sink table and its INSERT), timed from the INSERT until
//! its job has read the last event and made its last write. Reports
//! events/s, the server's CPU seconds (user + system) per million events,
//! and its peak memory (VmHWM). A query Sluice refuses is reported with
//! the reason. Then the answer of each query that does not depend on
//! timing is checked: its SELECT as a materialized view over `CHECK_EVENTS`
//! events equals DataFusion's batch answer over the same events.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::bench::{cpu_seconds, env, peak_memory_mib, server_flags};
use common::{wait_finished_within, TestServer};

/// One query's run.
enum Outcome {
    Ran {
        seconds: f64,
        cpu_seconds: f64,
        peak_mib: f64,
        rows_out: String,
    },
    Refused(String),
}

fn queries() -> Vec<usize> {
    match std::env::var("QUERIES") {
        Err(_) => common::nexmark::ACCEPTED.to_vec(),
        Ok(list) => list
            .split(',')
            .map(|q| {
                q.trim()
                    .trim_start_matches(['q', 'Q'])
                    .parse()
                    .expect("QUERIES: a list such as q0,q5")
            })
            .collect(),
    }
}

async fn run(q: usize, ddl: &str) -> Outcome {
    let data = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    common::nexmark::write_side_input(out.path());
    let flags = server_flags();
    let flags: Vec<&str> = flags.iter().map(|s| s.as_str()).collect();
    let server = TestServer::start_in(&data.path().join("data"), &flags);
    let client = server.client().await;
    client.batch_execute(ddl).await.unwrap();
    let cpu_before = cpu_seconds(server.pid());
    let started = Instant::now();
    if let Err(e) = client
        .batch_execute(&common::nexmark::query(q, out.path()))
        .await
    {
        return Outcome::Refused(common::describe_error(&e));
    }
    // The INSERT's job, as sluice.jobs names it.
    let job = format!("__sink_insert_into_nexmark_q{q}");
    wait_finished_within(&client, &job, Duration::from_secs(3600)).await;
    let seconds = started.elapsed().as_secs_f64();
    let rows_out = common::rows(
        &client,
        &format!("SELECT rows_out FROM sluice.jobs WHERE name = '{job}'"),
    )
    .await
    .into_iter()
    .flatten()
    .next()
    .unwrap_or_default();
    Outcome::Ran {
        seconds,
        cpu_seconds: cpu_seconds(server.pid()) - cpu_before,
        peak_mib: peak_memory_mib(server.pid()),
        rows_out,
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("nexmark: bench");
        return;
    }
    let events = env("EVENTS", 10_000_000) as u64;
    let tps = env("TPS", 10_000_000) as u64;
    let check_events = env("CHECK_EVENTS", 100_000) as u64;
    let queries = queries();
    let ddl = match std::env::var("SOURCE").as_deref() {
        Ok("files") => {
            let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join(format!("target/bench-data/nexmark-{events}"));
            common::nexmark::export(events, &dir);
            println!("events in {}", dir.display());
            std::fs::read_to_string(dir.join("_ddl.sql")).unwrap()
        }
        Ok("nexmark") | Err(_) => common::nexmark::ddl(events, tps, None, "datagen"),
        Ok(other) => panic!("SOURCE: nexmark or files, not {other}"),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut table = vec![
        "| query | events | seconds | events/s | CPU s per M events | peak memory | rows out |"
            .to_string(),
        "|---|---|---|---|---|---|---|".to_string(),
    ];
    for &q in &queries {
        let line = match runtime.block_on(run(q, &ddl)) {
            Outcome::Ran {
                seconds,
                cpu_seconds,
                peak_mib,
                rows_out,
            } => format!(
                "| q{q} | {events} | {seconds:.2} | {:.0} | {:.2} | {peak_mib:.0} MiB | {rows_out} |",
                events as f64 / seconds,
                cpu_seconds / (events as f64 / 1e6),
            ),
            Outcome::Refused(why) => format!("| q{q} | refused: {why} | | | | | |"),
        };
        println!("{line}");
        table.push(line);
    }
    println!("\n{}", table.join("\n"));
    let checked: Vec<usize> = queries
        .iter()
        .copied()
        .filter(|q| common::nexmark::TIMELESS.contains(q))
        .collect();
    if check_events == 0 || checked.is_empty() {
        return;
    }
    let answers = runtime.block_on(common::nexmark::streaming_and_batch(check_events, &checked));
    for (q, view, batch) in answers {
        assert_eq!(
            view, batch,
            "q{q}: the view's rows and DataFusion's batch answer"
        );
        println!(
            "q{q}: {} rows over {check_events} events, equal to DataFusion's batch answer",
            batch.len()
        );
    }
}
