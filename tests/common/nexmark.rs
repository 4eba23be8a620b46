//! Nexmark's files as tests and benchmarks send them (tests/data/nexmark,
//! unchanged but for their `${...}` placeholders), and the check of a
//! query's streaming answer against DataFusion's batch answer over the same
//! events.

use std::path::Path;

use super::{rows, wait_finished, TestServer};

/// The queries Sluice runs as written, as of this commit; the list may
/// only grow.
pub const ACCEPTED: &[usize] = &[
    0, 1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 13, 15, 16, 17, 18, 19, 20, 21, 22,
];

/// The accepted queries whose answer does not depend on timing (on when
/// rows arrive, or on processing time) and that DataFusion can answer in
/// batch: all but q11, whose SESSION windows an ad-hoc query cannot read
/// (`nexmark_queries_equal_the_answers_from_the_generator` checks it).
/// q3 and q20 are regular joins, whose pairs do not depend on when rows
/// come, and so is q13 (bids joined with a file that never changes); q9,
/// q18 and q19 are compared on the columns ties do not decide, see
/// `tie_free`. q5, q7 and q8 join windowed aggregations, whose rows are
/// final when their windows close (the batch side reads the windows as
/// each row unnested into the windows it belongs to). q4 averages each
/// auction's highest bid, which changes as bids come (a regular join).
pub const TIMELESS: &[usize] = &[
    0, 1, 2, 3, 4, 5, 7, 8, 9, 10, 13, 15, 16, 17, 18, 19, 20, 21, 22,
];

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

/// The rows of Nexmark's side input (its `SideInputGenerator`: each
/// number below 10,000 and its text).
pub const SIDE_INPUT_ROWS: usize = 10_000;

/// Writes Nexmark's side input where q13 reads it, `out/data/side_input.txt`
/// (`out` stands for `${FLINK_HOME}`).
pub fn write_side_input(out: &Path) {
    let text: String = (0..SIDE_INPUT_ROWS).map(|i| format!("{i},{i}\n")).collect();
    std::fs::create_dir_all(out.join("data")).unwrap();
    std::fs::write(out.join("data/side_input.txt"), text).unwrap();
}

/// q13's `CREATE TABLE side_input` as written (Flink's legacy options), over
/// the side input under `out`.
pub fn side_input_ddl(out: &Path) -> String {
    let text = query(13, out);
    let at = text.find("CREATE TABLE nexmark_q13").unwrap();
    text[..at].to_string()
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

/// Query `q`'s SELECT as a view takes it: q20's two `dateTime` and two
/// `extra` columns (which its INSERT writes by position) get names of
/// their own.
pub fn view_select(q: usize) -> String {
    let text = select(q);
    match q {
        20 => text
            .replace("A.`dateTime`,", "A.`dateTime` AS a_date_time,")
            .replace("A.extra\n", "A.extra AS a_extra\n"),
        _ => text,
    }
}

/// The time of the first event where tests fix it.
pub const BASE_TIME: &str = "2024-01-01 00:00:00";

/// Nexmark's DDL with its `datagen` table over the JSON files in `dir`
/// (written by [`export`]) instead of the generator: what Flink reads, and
/// Sluice too when the two are compared.
pub fn ddl_over_files(dir: &Path) -> String {
    let (gen, views) = split_views(&ddl(0, 1, None, "datagen"));
    let head = &gen[..gen.find(") WITH (").unwrap()];
    format!(
        "{head}) WITH ('connector' = 'filesystem', 'path' = 'file://{}', 'format' = 'json');\n{views}",
        dir.display()
    )
}

/// A name or city of the `nexmark` crate as the reference generator (and
/// Sluice) spells it: `los angeles` is `Los Angeles`.
fn title_case(text: &str) -> String {
    text.split(' ')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect::<String>())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Writes `events` Nexmark events (from [`BASE_TIME`]) as JSON lines in
/// `dir/events.json`, with [`ddl_over_files`] beside them as `_ddl.sql`;
/// nothing when they are there already. The events come from the `nexmark`
/// crate, whose events Sluice's connector makes field for field (a unit
/// test holds this; names, cities and states spelled as the reference
/// generator spells them), under the field names Nexmark's DDL declares.
pub fn export(events: u64, dir: &Path) {
    use nexmark::event::Event;
    use std::io::Write;
    let done = dir.join("_ddl.sql");
    if done.exists() {
        return;
    }
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let base = chrono::NaiveDateTime::parse_from_str(BASE_TIME, "%Y-%m-%d %H:%M:%S")
        .unwrap()
        .and_utc()
        .timestamp_millis() as u64;
    let config = nexmark::config::NexmarkConfig {
        base_time: base,
        first_rate: 10_000_000,
        next_rate: 10_000_000,
        ..Default::default()
    };
    let time = |ms: u64| {
        chrono::DateTime::from_timestamp_millis(ms as i64)
            .unwrap()
            .format("%Y-%m-%d %H:%M:%S%.3f")
    };
    let file = std::fs::File::create(dir.join("events.json")).unwrap();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    for event in nexmark::EventGenerator::new(config).take(events as usize) {
        match event {
            Event::Person(p) => writeln!(
                out,
                r#"{{"event_type":0,"person":{{"id":{},"name":"{}","emailAddress":"{}","creditCard":"{}","city":"{}","state":"{}","dateTime":"{}","extra":"{}"}}}}"#,
                p.id, title_case(&p.name), p.email_address, p.credit_card, title_case(&p.city),
                p.state.to_uppercase(), time(p.date_time), p.extra
            ),
            Event::Auction(a) => writeln!(
                out,
                r#"{{"event_type":1,"auction":{{"id":{},"itemName":"{}","description":"{}","initialBid":{},"reserve":{},"dateTime":"{}","expires":"{}","seller":{},"category":{},"extra":"{}"}}}}"#,
                a.id, a.item_name, a.description, a.initial_bid, a.reserve, time(a.date_time), time(a.expires), a.seller, a.category, a.extra
            ),
            Event::Bid(b) => writeln!(
                out,
                r#"{{"event_type":2,"bid":{{"auction":{},"bidder":{},"price":{},"channel":"{}","url":"{}","dateTime":"{}","extra":"{}"}}}}"#,
                b.auction, b.bidder, b.price, b.channel, b.url, time(b.date_time), b.extra
            ),
        }
        .unwrap();
    }
    out.flush().unwrap();
    // Hidden from readers of the directory by its leading '_'.
    std::fs::write(&done, ddl_over_files(&dir.join("events.json"))).unwrap();
}

/// Runs each of Nexmark's `queries` (their SELECTs as written) as a
/// materialized view over `events` events, and the same SELECT in batch;
/// see [`views_and_batch`].
pub async fn streaming_and_batch(
    events: u64,
    queries: &[usize],
) -> Vec<(usize, Vec<Vec<String>>, Vec<Vec<String>>)> {
    let selects: Vec<String> = queries.iter().map(|q| view_select(*q)).collect();
    let answers = views_and_batch(events, &selects).await;
    queries
        .iter()
        .zip(answers)
        .map(|(q, (view, batch))| {
            let tie_free = |rows: Vec<Vec<String>>| {
                let mut rows: Vec<Vec<String>> =
                    rows.into_iter().map(|r| tie_free(*q, r)).collect();
                rows.sort();
                rows
            };
            (*q, tie_free(view), tie_free(batch))
        })
        .collect()
}

/// The columns of query `q`'s row that do not depend on which of the rows
/// with equal ORDER BY values a top-N keeps: q18 keeps each bidder's last
/// bid on an auction, and of two bids of the same millisecond the one that
/// came last, which the batch answer cannot know (nor can Flink's be
/// foretold); likewise q19's bids of equal price, and q9's of equal price
/// and time. All columns for the other queries.
fn tie_free(q: usize, row: Vec<String>) -> Vec<String> {
    let keep: &[usize] = match q {
        // the auction's columns, and the highest bid's price
        9 => &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12],
        // auction, bidder, dateTime
        18 => &[0, 1, 5],
        // auction, price, rank_number
        19 => &[0, 2, 7],
        _ => return row,
    };
    keep.iter().map(|i| row[*i].clone()).collect()
}

/// Runs each of `selects` over Nexmark's tables and views as a
/// materialized view over `events` events, and the same SELECT in batch
/// (DataFusion, through an ad-hoc query) over a materialized view of the
/// same events in a second server. Returns, per query, the view's rows and
/// the batch rows, sorted.
pub async fn views_and_batch(
    events: u64,
    selects: &[String],
) -> Vec<(Vec<Vec<String>>, Vec<Vec<String>>)> {
    views_and_batch_with(events, "", selects).await
}

/// [`views_and_batch`], with ordinary tables made by `tables` (DDL and
/// INSERTs) in both servers.
pub async fn views_and_batch_with(
    events: u64,
    tables: &str,
    selects: &[String],
) -> Vec<(Vec<Vec<String>>, Vec<Vec<String>>)> {
    let streaming = TestServer::start();
    let stream = streaming.client().await;
    stream
        .batch_execute(&ddl(events, 10_000, Some(BASE_TIME), "datagen"))
        .await
        .unwrap();
    // q13's side input: the file as written in the streaming server, the
    // same rows in an ordinary table for the batch answer.
    let side = tempfile::tempdir().unwrap();
    write_side_input(side.path());
    stream
        .batch_execute(&side_input_ddl(side.path()))
        .await
        .unwrap();
    stream.batch_execute(tables).await.unwrap();
    for (i, sql) in selects.iter().enumerate() {
        let sql = format!("CREATE MATERIALIZED VIEW v{i} AS {sql}");
        if let Err(e) = stream.batch_execute(&sql).await {
            panic!("{sql}: {}", super::describe_error(&e));
        }
    }
    let batch_server = TestServer::start();
    let batch = batch_server.client().await;
    let (gen, views) = split_views(&ddl(events, 10_000, Some(BASE_TIME), "nexmark_events"));
    batch.batch_execute(&gen).await.unwrap();
    batch
        .batch_execute("CREATE MATERIALIZED VIEW nexmark_events AS SELECT * FROM datagen")
        .await
        .unwrap();
    batch.batch_execute(&views).await.unwrap();
    let values: Vec<String> = (0..SIDE_INPUT_ROWS)
        .map(|i| format!("({i}, '{i}')"))
        .collect();
    batch
        .batch_execute(&format!(
            "CREATE TABLE side_input (key BIGINT PRIMARY KEY, `value` VARCHAR);
             INSERT INTO side_input VALUES {};",
            values.join(", ")
        ))
        .await
        .unwrap();
    batch.batch_execute(tables).await.unwrap();
    wait_finished(&batch, "nexmark_events").await;
    let mut out = Vec::new();
    for (i, sql) in selects.iter().enumerate() {
        wait_finished(&stream, &format!("v{i}")).await;
        let mut view = rows(&stream, &format!("SELECT * FROM v{i}")).await;
        let mut answer = rows(&batch, sql).await;
        view.sort();
        answer.sort();
        out.push((view, answer));
    }
    out
}

/// `ddl_gen.sql` and `ddl_views.sql`, apart.
pub fn split_views(ddl: &str) -> (String, String) {
    let at = ddl.find("CREATE VIEW").unwrap();
    (ddl[..at].to_string(), ddl[at..].to_string())
}
