//! Nexmark's files as tests and benchmarks send them (tests/data/nexmark,
//! unchanged but for their `${...}` placeholders), and the check of a
//! query's streaming answer against DataFusion's batch answer over the same
//! events.

use std::path::Path;

use super::{rows, wait_finished, TestServer};

/// The queries Sluice runs as written, as of this commit; the list may
/// only grow.
pub const ACCEPTED: &[usize] = &[0, 1, 2, 10, 15, 16, 17, 21, 22];

/// The accepted queries whose answer does not depend on timing (on when
/// rows arrive, or on processing time): all of them so far.
pub const TIMELESS: &[usize] = ACCEPTED;

/// Nexmark's `ddl_gen.sql` and `ddl_views.sql`: `events` events timed
/// `tps` per second, the views over `table`. With `base_time`, the events
/// are fixed in time (Sluice's `base-time` option), so that two jobs see
/// the same ones.
pub fn ddl(events: u64, tps: u64, base_time: Option<&str>, table: &str) -> String {
    let dir = super::data_dir().join("nexmark");
    let mut gen = std::fs::read_to_string(dir.join("ddl_gen.sql")).unwrap();
    if let Some(t) = base_time {
        gen = gen.replace(
            "'connector' = 'nexmark',",
            &format!("'connector' = 'nexmark', 'base-time' = '{t}',"),
        );
    }
    let views = std::fs::read_to_string(dir.join("ddl_views.sql")).unwrap();
    format!("{gen};\n{views}")
        .replace("${TPS}", &tps.to_string())
        .replace("${EVENTS_NUM}", &events.to_string())
        .replace("${PERSON_PROPORTION}", "1")
        .replace("${AUCTION_PROPORTION}", "3")
        .replace("${BID_PROPORTION}", "46")
        .replace("${NEXMARK_TABLE}", table)
}

/// Query file `q`, its output under `out` (q10's files, q13's side input).
pub fn query(q: usize, out: &Path) -> String {
    let dir = super::data_dir().join("nexmark");
    std::fs::read_to_string(dir.join(format!("q{q}.sql")))
        .unwrap()
        .replace("${NEXMARK_DIR}", &out.display().to_string())
        .replace("${FLINK_HOME}", &out.display().to_string())
        .replace("${SUBMIT_TIME}", "t")
}

/// The query of a Nexmark file: its INSERT's SELECT, as written.
pub fn select(q: usize) -> String {
    let text = query(q, Path::new("/unused"));
    let insert = format!("INSERT INTO nexmark_q{q}");
    let at = text.find(&insert).unwrap() + insert.len();
    text[at..].trim().trim_end_matches(';').to_string()
}

/// Runs each of `queries` (their SELECTs as written) as a materialized view
/// over `events` events, and the same SELECT in batch (DataFusion, through
/// an ad-hoc query) over a materialized view of the same events in a second
/// server. Returns, per query, the view's rows and the batch rows, sorted.
pub async fn streaming_and_batch(
    events: u64,
    queries: &[usize],
) -> Vec<(usize, Vec<Vec<String>>, Vec<Vec<String>>)> {
    const BASE: &str = "2024-01-01 00:00:00";
    let streaming = TestServer::start();
    let stream = streaming.client().await;
    stream
        .batch_execute(&ddl(events, 10_000, Some(BASE), "datagen"))
        .await
        .unwrap();
    for q in queries {
        let sql = format!("CREATE MATERIALIZED VIEW q{q} AS {}", select(*q));
        stream.batch_execute(&sql).await.unwrap();
    }
    let batch_server = TestServer::start();
    let batch = batch_server.client().await;
    let (gen, views) = split_views(&ddl(events, 10_000, Some(BASE), "nexmark_events"));
    batch.batch_execute(&gen).await.unwrap();
    batch
        .batch_execute("CREATE MATERIALIZED VIEW nexmark_events AS SELECT * FROM datagen")
        .await
        .unwrap();
    batch.batch_execute(&views).await.unwrap();
    wait_finished(&batch, "nexmark_events").await;
    let mut out = Vec::new();
    for q in queries {
        wait_finished(&stream, &format!("q{q}")).await;
        let mut view = rows(&stream, &format!("SELECT * FROM q{q}")).await;
        let mut answer = rows(&batch, &select(*q)).await;
        view.sort();
        answer.sort();
        out.push((*q, view, answer));
    }
    out
}

/// `ddl_gen.sql` and `ddl_views.sql`, apart.
fn split_views(ddl: &str) -> (String, String) {
    let at = ddl.find("CREATE VIEW").unwrap();
    (ddl[..at].to_string(), ddl[at..].to_string())
}
