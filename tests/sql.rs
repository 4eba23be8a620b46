//! Everyday continuous queries beyond one aggregation over one source,
//! each against an answer computed independently: DataFusion's batch
//! answer of the same SELECT over the same events (Nexmark's generator,
//! fixed in time), or rows written here by hand.

mod common;

use common::{rows, wait_finished, TestServer};

/// A server with Nexmark's tables and views over `events` events (fixed
/// in time from `base_time`), and a client of it.
async fn nexmark_server(
    events: u64,
    base_time: Option<&str>,
) -> (TestServer, tokio_postgres::Client) {
    let server = TestServer::start();
    let client = server.client().await;
    client
        .batch_execute(&common::nexmark::ddl(events, 10_000, base_time, "datagen"))
        .await
        .unwrap();
    (server, client)
}

/// Each of `selects`, over 10,000 Nexmark events, as a view equals
/// DataFusion's batch answer, which has a few rows at least.
async fn equal_the_batch_answers(selects: &[String]) {
    let answers = common::nexmark::views_and_batch(10_000, selects).await;
    for (sql, (view, batch)) in selects.iter().zip(answers) {
        assert!(batch.len() > 5, "{sql}: {} rows", batch.len());
        assert_eq!(view, batch, "{sql}");
    }
}

/// Server flags of the tests that kill a job mid-run: small batches,
/// frequent checkpoints, and a state cache far smaller than the state.
const TINY_CACHE: [&str; 8] = [
    "--parallelism",
    "2",
    "--batch-size",
    "64",
    "--checkpoint-interval",
    "50ms",
    "--state-cache",
    "64KiB",
];

/// Runs `ddl` in a server in `dir` ([`TINY_CACHE`]), kills the server once
/// view `watched` has made 3 checkpoints (while it still runs, before it
/// has read all its `total` rows), and starts it again in `dir`: the
/// server and a client, once every one of `views` has finished.
async fn killed_and_restarted(
    dir: &std::path::Path,
    ddl: &str,
    watched: &str,
    total: i64,
    views: &[&str],
) -> (TestServer, tokio_postgres::Client) {
    let mut server = TestServer::start_in(dir, &TINY_CACHE);
    let client = server.client().await;
    client.batch_execute(ddl).await.unwrap();
    common::wait_checkpoints(&client, watched, 3).await;
    let before = rows(
        &client,
        &format!("SELECT status, rows_in FROM sluice.jobs WHERE name = '{watched}'"),
    )
    .await;
    server.kill();
    assert_eq!(before[0][0], "running", "killed while it ran: {before:?}");
    assert!(
        before[0][1].parse::<i64>().unwrap() < total,
        "killed before it read everything: {before:?}"
    );
    drop(client);
    let server = TestServer::start_in(dir, &TINY_CACHE);
    let client = server.client().await;
    for view in views {
        wait_finished(&client, view).await;
    }
    (server, client)
}

/// `SELECT DISTINCT`, a `GROUP BY` without aggregates (Nexmark q8's
/// sides) and `WITH` queries run as views, and equal DataFusion's batch
/// answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distinct_groups_without_aggregates_and_with_equal_the_batch_answers() {
    let selects: Vec<String> = [
        "SELECT DISTINCT bidder, channel FROM bid",
        "SELECT auction FROM bid GROUP BY auction",
        "SELECT DISTINCT seller, category FROM auction WHERE category <> 10",
        "SELECT DISTINCT MOD(price, 7) AS m FROM bid",
        "WITH b AS (SELECT * FROM bid WHERE price > 1000)
         SELECT auction, COUNT(*) AS n, MAX(price) AS top FROM b GROUP BY auction",
        // A CTE named as the view it reads, and one over another, with
        // column names.
        "WITH bid AS (SELECT auction, price * 2 AS p FROM bid),
              big (a, p) AS (SELECT auction, p FROM bid WHERE p > 5000)
         SELECT DISTINCT a FROM big",
        "SELECT * FROM (WITH s AS (SELECT seller FROM auction) SELECT seller, COUNT(*) AS n FROM s GROUP BY seller) t WHERE n > 1",
    ]
    .map(String::from)
    .to_vec();
    equal_the_batch_answers(&selects).await;
}

/// Regular joins of two streams (no time bound: every row is kept for any
/// row to come; Nexmark q3 and q20), also with a condition beyond the
/// keys and aggregated, equal DataFusion's batch answers; an outer one is
/// refused, naming why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regular_joins_equal_the_batch_answers() {
    let selects: Vec<String> = [
        "SELECT P.name, A.id, A.category FROM auction AS A JOIN person AS P ON A.seller = P.id
         WHERE A.category IN (10, 11)",
        "SELECT B.auction, B.price, A.seller FROM bid AS B JOIN auction AS A
         ON B.auction = A.id AND B.price > A.reserve",
        "SELECT A.seller, COUNT(*) AS bids, MAX(B.price) AS top
         FROM bid AS B JOIN auction AS A ON B.auction = A.id GROUP BY A.seller",
    ]
    .map(String::from)
    .to_vec();
    equal_the_batch_answers(&selects).await;
    let (_server, client) = nexmark_server(100, None).await;
    let err = client
        .simple_query(
            "CREATE MATERIALIZED VIEW lonely AS SELECT A.id, P.name FROM auction AS A
             LEFT JOIN person AS P ON A.seller = P.id",
        )
        .await
        .unwrap_err();
    let text = common::describe_error(&err);
    assert!(
        text.starts_with("0A000")
            && text.contains("outer join of two streams without a time bound"),
        "{text}"
    );
}

/// Joins and aggregations over the final rows of windowed aggregations
/// (a view's plan is a tree: Nexmark q5, q7 and q8 in small windows, the
/// share of each auction in its window's bids, an aggregation of an
/// aggregation, windowed or not) and a join of three streams equal
/// DataFusion's batch answers (which reads a window table function as the
/// rows unnested into their windows). 10,000 events span one second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_and_aggregations_of_windowed_aggregations_equal_the_batch_answers() {
    let per_auction = |size: &str| {
        format!(
            "SELECT auction, COUNT(*) AS num, window_start AS starttime, window_end AS endtime
             FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '{size}' SECOND))
             GROUP BY auction, window_start, window_end"
        )
    };
    let selects: Vec<String> = vec![
        // q7: the bids at their 100 ms window's highest price.
        "SELECT B.auction, B.price, B.bidder, B.dateTime
         FROM bid B JOIN (
           SELECT MAX(price) AS maxprice, window_end AS dateTime
           FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '0.1' SECOND))
           GROUP BY window_start, window_end) B1
         ON B.price = B1.maxprice
         WHERE B.dateTime BETWEEN B1.dateTime - INTERVAL '0.1' SECOND AND B1.dateTime"
            .to_string(),
        // q8: the people who opened an auction in the window they joined.
        "SELECT P.id, P.name, P.starttime
         FROM (SELECT id, name, window_start AS starttime, window_end AS endtime
               FROM TABLE(TUMBLE(TABLE person, DESCRIPTOR(dateTime), INTERVAL '0.2' SECOND))
               GROUP BY id, name, window_start, window_end) P
         JOIN (SELECT seller, window_start AS starttime, window_end AS endtime
               FROM TABLE(TUMBLE(TABLE auction, DESCRIPTOR(dateTime), INTERVAL '0.2' SECOND))
               GROUP BY seller, window_start, window_end) A
         ON P.id = A.seller AND P.starttime = A.starttime AND P.endtime = A.endtime"
            .to_string(),
        // q5: the auctions with the most bids of each hopping window.
        "SELECT AuctionBids.auction, AuctionBids.num, AuctionBids.starttime
         FROM (SELECT auction, COUNT(*) AS num, window_start AS starttime, window_end AS endtime
               FROM TABLE(HOP(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '0.05' SECOND, INTERVAL '0.2' SECOND))
               GROUP BY auction, window_start, window_end) AS AuctionBids
         JOIN (SELECT MAX(CountBids.num) AS maxn, CountBids.starttime, CountBids.endtime
               FROM (SELECT COUNT(*) AS num, window_start AS starttime, window_end AS endtime
                     FROM TABLE(HOP(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '0.05' SECOND, INTERVAL '0.2' SECOND))
                     GROUP BY auction, window_start, window_end) AS CountBids
               GROUP BY CountBids.starttime, CountBids.endtime) AS MaxBids
         ON AuctionBids.starttime = MaxBids.starttime AND AuctionBids.endtime = MaxBids.endtime
            AND AuctionBids.num >= MaxBids.maxn"
            .to_string(),
        // Each auction's share of its window's bids: a join of two
        // aggregations of the same windows.
        "SELECT a.window_start, a.auction, a.bids, t.bids AS all_bids,
                CAST(a.bids AS DOUBLE) / t.bids AS share
         FROM (SELECT window_start, window_end, auction, COUNT(*) AS bids
               FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '0.01' SECOND))
               GROUP BY window_start, window_end, auction) a
         JOIN (SELECT window_start, window_end, COUNT(*) AS bids
               FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '0.01' SECOND))
               GROUP BY window_start, window_end) t
         ON a.window_start = t.window_start AND a.window_end = t.window_end"
            .to_string(),
        // An aggregation of each window's rows by auction, per window...
        format!(
            "SELECT starttime, MAX(num) AS top, COUNT(*) AS auctions, SUM(num) AS bids
             FROM ({}) GROUP BY starttime, endtime",
            per_auction("0.05")
        ),
        // ... and over all windows (its rows change).
        format!(
            "SELECT num, COUNT(*) AS windows FROM ({}) GROUP BY num",
            per_auction("0.01")
        ),
        // Three streams joined.
        "SELECT P.name, A.id, B.price FROM bid B JOIN auction A ON B.auction = A.id
         JOIN person P ON A.seller = P.id"
            .to_string(),
    ];
    equal_the_batch_answers(&selects).await;
}

/// Aggregations of an aggregation whose rows change (no windows), in one
/// view: each change of a group below takes its old row back from the
/// group above and adds the new one (Nexmark q4, a histogram of bids per
/// auction, with a HAVING below and without GROUP BY above) equal
/// DataFusion's batch answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregations_of_changing_aggregations_equal_the_batch_answers() {
    let selects: Vec<String> = [
        // q4 per seller (q4 itself has 5 categories: see
        // `accepted_nexmark_queries_equal_the_batch_answers`).
        "SELECT Q.seller, AVG(Q.final) AS avg_final, COUNT(*) AS auctions
         FROM (SELECT MAX(B.price) AS final, A.seller
               FROM auction A, bid B
               WHERE A.id = B.auction AND B.dateTime BETWEEN A.dateTime AND A.expires
               GROUP BY A.id, A.seller) Q
         GROUP BY Q.seller",
        "SELECT n, COUNT(*) AS auctions, MIN(auction) AS first, SUM(n) AS bids
         FROM (SELECT auction, COUNT(*) AS n FROM bid GROUP BY auction) GROUP BY n",
        "SELECT auction % 10 AS a, COUNT(*) AS busy, SUM(n) AS bids
         FROM (SELECT channel, auction, COUNT(*) AS n FROM bid GROUP BY channel, auction
               HAVING COUNT(*) > 1)
         GROUP BY auction % 10",
    ]
    .map(String::from)
    .to_vec();
    equal_the_batch_answers(&selects).await;
    // One group above (no GROUP BY): one row.
    let one = "SELECT COUNT(*) AS bidders, SUM(top) AS total, MIN(top) AS least, MAX(top) AS most
         FROM (SELECT bidder, MAX(price) AS top FROM bid GROUP BY bidder)"
        .to_string();
    let answers = common::nexmark::views_and_batch(10_000, std::slice::from_ref(&one)).await;
    let (view, batch) = &answers[0];
    assert_eq!(batch.len(), 1, "{batch:?}");
    assert_eq!(view, batch, "{one}");
}

/// UNION ALL (a merge of its inputs' rows), UNION (the same, grouped),
/// aggregated, joined, and over three inputs, equal DataFusion's batch
/// answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unions_equal_the_batch_answers() {
    let selects: Vec<String> = [
        "SELECT auction AS id, price AS v, 'bid' AS kind FROM bid WHERE price > 10000
         UNION ALL SELECT id, reserve, 'auction' FROM auction",
        "SELECT id, COUNT(*) AS n, MAX(v) AS top
         FROM (SELECT auction AS id, price AS v FROM bid UNION ALL SELECT id, initialBid FROM auction)
         GROUP BY id",
        "SELECT seller AS who FROM auction UNION SELECT id FROM person",
        "SELECT u.id, u.v, A.category
         FROM (SELECT auction AS id, price AS v FROM bid UNION ALL SELECT id, reserve FROM auction) u
         JOIN auction A ON u.id = A.id",
        "SELECT bidder AS who, 1 AS n FROM bid WHERE MOD(auction, 3) = 0
         UNION ALL SELECT seller, 2 FROM auction
         UNION ALL SELECT id, 3 FROM person",
    ]
    .map(String::from)
    .to_vec();
    equal_the_batch_answers(&selects).await;
    let (_server, client) = nexmark_server(100, None).await;
    for op in ["INTERSECT", "EXCEPT"] {
        let err = client
            .simple_query(&format!(
                "CREATE MATERIALIZED VIEW x AS SELECT seller FROM auction {op} SELECT id FROM person"
            ))
            .await
            .unwrap_err();
        let text = common::describe_error(&err);
        assert!(
            text.starts_with("0A000") && text.contains(&format!("{op} is not supported")),
            "{text}"
        );
    }
}

/// A windowed GROUP BY without aggregates (each side of Nexmark q8) gives
/// each group of each window once, also over a WITH query. Ids 1..=3000,
/// one every 10 ms: window `w` (1 s) holds ids 100w..100w+99, whose
/// residues are computed here by hand.
#[tokio::test]
async fn a_windowed_group_without_aggregates_lists_each_group_once() {
    let server = TestServer::start();
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE ids (id BIGINT, ts AS TO_TIMESTAMP_LTZ(id * 10, 3), WATERMARK FOR ts AS ts)
               WITH ('connector' = 'datagen', 'number-of-rows' = '3000',
                     'fields.id.kind' = 'sequence', 'fields.id.start' = '1', 'fields.id.end' = '3000');
             CREATE MATERIALIZED VIEW groups AS
               SELECT MOD(id, 4) AS r, window_start
               FROM TABLE(TUMBLE(TABLE ids, DESCRIPTOR(ts), INTERVAL '1' SECOND))
               GROUP BY MOD(id, 4), window_start, window_end;
             CREATE MATERIALIZED VIEW even_groups AS
               WITH even AS (SELECT * FROM ids WHERE MOD(id, 2) = 0)
               SELECT MOD(id, 4) AS r, window_start
               FROM TABLE(TUMBLE(TABLE even, DESCRIPTOR(ts), INTERVAL '1' SECOND))
               GROUP BY MOD(id, 4), window_start, window_end;",
        )
        .await
        .unwrap();
    // The same, over a WITH query: the window moves onto its source.
    for (view, ids) in [("groups", 1), ("even_groups", 2)] {
        wait_finished(&client, view).await;
        let got = rows(
            &client,
            &format!(
                "SELECT r, EXTRACT(EPOCH FROM window_start)::BIGINT FROM {view} ORDER BY 2, 1"
            ),
        )
        .await;
        let mut want = Vec::new();
        for w in 0..=30i64 {
            let mut residues: Vec<i64> = (1..=3000i64)
                .filter(|id| id % ids == 0 && id * 10 / 1000 == w)
                .map(|id| id % 4)
                .collect();
            residues.sort();
            residues.dedup();
            for r in residues {
                want.push(vec![r.to_string(), w.to_string()]);
            }
        }
        assert_eq!(got, want, "{view}");
    }
}

/// Top-N per partition and deduplication (`ROW_NUMBER() OVER` kept while
/// at most N; Nexmark q18 and q19), also over a join (q9), equal
/// DataFusion's batch answers. The columns compared do not depend on how
/// ties are broken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_n_and_deduplication_equal_the_batch_answers() {
    let selects: Vec<String> = [
        // The three highest bids of each auction.
        "SELECT auction, price, rn FROM (SELECT auction, price,
           ROW_NUMBER() OVER (PARTITION BY auction ORDER BY price DESC) AS rn FROM bid)
         WHERE rn <= 3",
        // Keep last: each bidder's last bid on each auction.
        "SELECT bidder, auction, dateTime FROM (SELECT *,
           ROW_NUMBER() OVER (PARTITION BY bidder, auction ORDER BY dateTime DESC) AS rn FROM bid)
         WHERE rn = 1",
        // Keep first, by two keys; the row number not shown.
        "SELECT seller, id, category FROM (SELECT seller, id, category,
           ROW_NUMBER() OVER (PARTITION BY seller ORDER BY dateTime, id) AS rn FROM auction)
         WHERE rn <= 1",
        // One partition: the seven highest bids, and a filter after the
        // ranking.
        "SELECT price, rn FROM (SELECT price,
           ROW_NUMBER() OVER (ORDER BY price DESC) AS rn FROM bid) t
         WHERE rn < 8 AND price > 1000",
        // Over a join (Nexmark q9's shape): each auction's highest bid
        // while it was open.
        "SELECT id, seller, price FROM (SELECT A.id, A.seller, B.price,
           ROW_NUMBER() OVER (PARTITION BY A.id ORDER BY B.price DESC, B.dateTime ASC) AS rn
           FROM auction A, bid B
           WHERE A.id = B.auction AND B.dateTime BETWEEN A.dateTime AND A.expires)
         WHERE rn <= 1",
        // Over filtered and computed rows.
        "SELECT b, p, n FROM (SELECT bidder AS b, price * 2 AS p,
           ROW_NUMBER() OVER (PARTITION BY bidder ORDER BY price * 2 ASC) AS n
           FROM bid WHERE channel <> 'Google') WHERE 2 >= n",
    ]
    .map(String::from)
    .to_vec();
    equal_the_batch_answers(&selects).await;
}

/// What a top-N view cannot be is refused with 0A000, naming why.
#[tokio::test]
async fn top_n_refusals_name_why() {
    let (_server, client) = nexmark_server(100, None).await;
    for (sql, why) in [
        (
            "SELECT * FROM (SELECT auction, RANK() OVER (PARTITION BY auction ORDER BY price) AS r FROM bid) WHERE r <= 2",
            "window functions other than ROW_NUMBER()",
        ),
        (
            "SELECT * FROM (SELECT auction, ROW_NUMBER() OVER (PARTITION BY auction ORDER BY price) AS r FROM bid)",
            "needs a filter keeping the first rows",
        ),
        (
            "SELECT auction FROM (SELECT auction, ROW_NUMBER() OVER (PARTITION BY auction ORDER BY price) AS r FROM bid) WHERE r <= 2",
            "must show its row number",
        ),
        (
            "SELECT price FROM (SELECT price, ROW_NUMBER() OVER (PARTITION BY auction ORDER BY price) AS r FROM bid) WHERE r = 1",
            "must show its partition column \"auction\"",
        ),
        (
            "SELECT * FROM (SELECT auction, ROW_NUMBER() OVER (PARTITION BY auction) AS r FROM bid) WHERE r = 1",
            "without ORDER BY",
        ),
    ] {
        let err = client
            .simple_query(&format!("CREATE MATERIALIZED VIEW v AS {sql}"))
            .await
            .unwrap_err();
        let text = common::describe_error(&err);
        assert!(text.starts_with("0A000") && text.contains(why), "{sql}: {text}");
    }
}

/// `IN`, `NOT IN`, `EXISTS` and `NOT EXISTS` subqueries over an ordinary
/// table (decorrelated into semi and anti joins with it, each stream row
/// checked against the table as it is when the row comes), and joins with
/// it on columns that are not its key, equal DataFusion's batch answers;
/// `NOT IN` a subquery with a NULL keeps no row, as in SQL; a subquery over
/// a stream is refused, naming why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_and_exists_subqueries_over_a_table_equal_the_batch_answers() {
    let tables = "CREATE TABLE hot (id BIGINT PRIMARY KEY, label STRING, n BIGINT);
        INSERT INTO hot VALUES (1000, 'a', 1), (1001, 'b', NULL), (1005, 'c', 1),
          (1010, NULL, 2), (1100, 'd', 2), (1207, 'e', 0);";
    let selects: Vec<String> = [
        "SELECT auction, bidder, price FROM bid WHERE auction IN (SELECT id FROM hot)",
        "SELECT auction, price FROM bid WHERE auction IN (SELECT id FROM hot WHERE label <> 'a')",
        "SELECT auction, price FROM bid b WHERE EXISTS
           (SELECT 1 FROM hot h WHERE h.id = b.auction AND h.label IN ('b', 'c', 'e'))",
        "SELECT auction, price FROM bid WHERE auction NOT IN (SELECT id FROM hot WHERE n > 2)",
        "SELECT auction, price FROM bid b WHERE NOT EXISTS (SELECT 1 FROM hot h WHERE h.id = b.auction)",
        "SELECT auction, COUNT(*) AS bids, MAX(price) AS top FROM bid
         WHERE auction IN (SELECT id FROM hot) GROUP BY auction",
        // Joins on a column that is not the table's key meet every row
        // with the key.
        "SELECT b.auction, b.price, h.label FROM bid b JOIN hot h ON b.auction % 3 = h.n",
        "SELECT b.auction, b.bidder, h.id FROM bid b LEFT JOIN hot h ON b.auction % 5 = h.n",
        "SELECT auction, price FROM bid WHERE price > 1000 AND auction + 0 NOT IN (SELECT n FROM hot)",
    ]
    .map(String::from)
    .to_vec();
    let answers = common::nexmark::views_and_batch_with(10_000, tables, &selects).await;
    for (i, (sql, (view, batch))) in selects.iter().zip(answers).enumerate() {
        if i == selects.len() - 1 {
            // hot.n holds a NULL: NOT IN is never true.
            assert!(batch.is_empty() && view.is_empty(), "{sql}: {view:?}");
            continue;
        }
        assert!(batch.len() > 5, "{sql}: {} rows", batch.len());
        assert_eq!(view, batch, "{sql}");
    }
    let (_server, client) = nexmark_server(100, None).await;
    let err = client
        .simple_query(
            "CREATE MATERIALIZED VIEW v AS SELECT auction FROM bid WHERE auction NOT IN (SELECT id FROM auction)",
        )
        .await
        .unwrap_err();
    let db = err.as_db_error().unwrap();
    assert_eq!(db.code().code(), "0A000");
    assert!(
        db.message().contains("subquery over a stream"),
        "{}",
        db.message()
    );
}

/// `IN` and `EXISTS` subqueries over a stream (semi joins of two streams:
/// a row goes out once, as soon as a row of the subquery with its key has
/// come, whichever came first) equal DataFusion's batch answers, also
/// aggregated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_and_exists_subqueries_over_a_stream_equal_the_batch_answers() {
    let selects: Vec<String> = [
        "SELECT auction, bidder, price FROM bid WHERE auction IN (SELECT id FROM auction WHERE category = 10)",
        "SELECT id, seller, category FROM auction a WHERE EXISTS (SELECT 1 FROM bid b WHERE b.auction = a.id AND b.price > 5000)",
        "SELECT bidder, COUNT(*) AS bids FROM bid WHERE bidder IN (SELECT id FROM person WHERE state <> 'OR') GROUP BY bidder",
    ]
    .map(String::from)
    .to_vec();
    equal_the_batch_answers(&selects).await;
}

/// A top-N and a deduplication killed while they run, with a state cache
/// far smaller than their state, end equal to DataFusion's batch answers:
/// each partition's rows are saved with the checkpoint that took them,
/// and spill to the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_n_killed_and_restarted_with_a_tiny_cache_equals_the_batch_answer() {
    use std::io::Write as _;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let path = tmp.path().join("events.json");
    // 200,000 rows over 5,000 keys; v is a permutation of the row numbers
    // (no ties).
    let n: i64 = 200_000;
    {
        let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        for seq in 0..n {
            let k = (seq * 31 + seq / 7) % 5_000;
            let v = (seq * 7_919) % n;
            writeln!(file, r#"{{"seq": {seq}, "k": {k}, "v": {v}}}"#).unwrap();
        }
    }
    let top = "SELECT k, v, rn FROM (SELECT k, v, ROW_NUMBER() OVER (PARTITION BY k ORDER BY v DESC) AS rn FROM t) WHERE rn <= 3";
    let last = "SELECT k, seq, v FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY k ORDER BY seq DESC) AS rn FROM t) WHERE rn = 1";
    let ddl = format!(
        "CREATE TABLE t (seq BIGINT, k INT, v BIGINT)
           WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
         CREATE MATERIALIZED VIEW top AS {top};
         CREATE MATERIALIZED VIEW last AS {last};",
        path.display()
    );
    let (_server, client) = killed_and_restarted(&dir, &ddl, "top", n, &["top", "last"]).await;
    let ctx = datafusion::prelude::SessionContext::new();
    ctx.register_json(
        "t",
        path.to_str().unwrap(),
        datafusion::prelude::JsonReadOptions::default().file_extension(".json"),
    )
    .await
    .unwrap();
    for (view, sql) in [("top", top), ("last", last)] {
        let mut actual = rows(&client, &format!("SELECT * FROM {view}")).await;
        actual.sort();
        let mut expected = common::batch_rows(&ctx, sql).await;
        expected.sort();
        assert_eq!(actual.len(), expected.len(), "{view}: rows");
        assert!(actual == expected, "{view}: the batch answer");
    }
}

/// A regular join and a semi join (`IN` over a stream) killed while they
/// run, with a state cache far smaller than their state, end equal to
/// DataFusion's batch answers: each side's rows are kept by key in the
/// store (a hot key's rows over many chunks), each checkpoint saves the
/// chunks that changed (and the keys a semi join let go), and the rows
/// spill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_regular_join_killed_and_restarted_with_a_tiny_cache_equals_the_batch_answer() {
    use std::io::Write as _;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    // Left: 40,000 rows, 19 per key over 2,000 keys, and key 7 every
    // 20th row; right: 6,000 rows, 3 per key, and key 7 every 100th (so
    // a key's rows span many chunks).
    let write = |name: &str, n: i64, hot: i64| {
        let path = tmp.path().join(name);
        let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        for seq in 0..n {
            let k = if seq % hot == 0 {
                7
            } else {
                (seq * 31) % 2_000
            };
            writeln!(
                file,
                r#"{{"seq": {seq}, "k": {k}, "note": "row {seq} of {name}"}}"#
            )
            .unwrap();
        }
        path
    };
    let left = write("l.json", 40_000, 20);
    let right = write("r.json", 6_000, 100);
    let join = "SELECT l.k, l.seq AS ls, r.seq AS rs, r.note FROM l JOIN r ON l.k = r.k WHERE l.seq % 3 <> r.seq % 3";
    let semi = "SELECT seq, k, note FROM l WHERE k IN (SELECT k FROM r WHERE seq % 7 = 0)";
    // How many keys have each count of rows: an aggregation of one whose
    // rows change (each key's count moves between the groups above).
    let histogram = "SELECT n, COUNT(*) AS keys, MAX(k) AS top FROM (SELECT k, SUM(seq % 10) AS n FROM l GROUP BY k) GROUP BY n";
    let ddl = format!(
        "CREATE TABLE l (seq BIGINT, k INT, note STRING)
           WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
         CREATE TABLE r (seq BIGINT, k INT, note STRING)
           WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
         CREATE MATERIALIZED VIEW pairs AS {join};
         CREATE MATERIALIZED VIEW semi AS {semi};
         CREATE MATERIALIZED VIEW histogram AS {histogram};",
        left.display(),
        right.display()
    );
    let (_server, client) =
        killed_and_restarted(&dir, &ddl, "pairs", 46_000, &["pairs", "semi", "histogram"]).await;
    let ctx = datafusion::prelude::SessionContext::new();
    for (name, path) in [("l", &left), ("r", &right)] {
        ctx.register_json(
            name,
            path.to_str().unwrap(),
            datafusion::prelude::JsonReadOptions::default().file_extension(".json"),
        )
        .await
        .unwrap();
    }
    let mut actual = rows(&client, "SELECT * FROM pairs").await;
    actual.sort();
    let mut expected = common::batch_rows(&ctx, join).await;
    expected.sort();
    assert!(expected.len() > 100_000, "{} pairs", expected.len());
    assert_eq!(actual.len(), expected.len(), "pairs");
    assert!(actual == expected, "the batch answer");
    let mut actual = rows(&client, "SELECT * FROM semi").await;
    actual.sort();
    let mut expected = common::batch_rows(&ctx, semi).await;
    expected.sort();
    assert!(expected.len() > 5_000, "{} rows", expected.len());
    assert_eq!(actual.len(), expected.len(), "semi: rows");
    assert!(actual == expected, "semi: the batch answer");
    let mut actual = rows(&client, "SELECT * FROM histogram").await;
    actual.sort();
    let mut expected = common::batch_rows(&ctx, histogram).await;
    expected.sort();
    assert!(expected.len() > 3, "{} rows", expected.len());
    assert_eq!(actual, expected, "histogram: the batch answer");
}

/// A top-N of each window over a windowed aggregation (Flink's window
/// top-N: the busiest auctions of each 100 ms) ranks each window's final
/// rows once it closes, and one straight over a window's rows ranks them
/// as they come. Each equals DataFusion's batch ranking of the same rows
/// (an ad-hoc query over a view of the aggregation, or of the windows'
/// rows).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_top_n_of_each_window_equals_the_batch_ranking_of_its_aggregation() {
    let (_server, client) = nexmark_server(10_000, Some(common::nexmark::BASE_TIME)).await;
    let counts = "SELECT window_start, window_end, auction, COUNT(*) AS n
        FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '100' MILLISECOND))
        GROUP BY window_start, window_end, auction";
    let rank = |from: &str| {
        format!(
            "SELECT window_start, auction, n, rn FROM (SELECT *,
               ROW_NUMBER() OVER (PARTITION BY window_start, window_end ORDER BY n DESC, auction) AS rn
               FROM ({from}) c) WHERE rn <= 3"
        )
    };
    // And the highest bids of each window, ranked straight from the
    // window's rows.
    let bids = "SELECT window_start, window_end, auction, price
        FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '100' MILLISECOND))";
    let highest = |from: &str| {
        format!(
            "SELECT window_start, price, rn FROM (SELECT *,
               ROW_NUMBER() OVER (PARTITION BY window_start, window_end ORDER BY price DESC) AS rn
               FROM ({from}) b) WHERE rn <= 5"
        )
    };
    client
        .batch_execute(&format!(
            "CREATE MATERIALIZED VIEW counts AS {counts};
             CREATE MATERIALIZED VIEW busiest AS {};
             CREATE MATERIALIZED VIEW bids AS {bids};
             CREATE MATERIALIZED VIEW highest AS {};",
            rank(counts),
            highest(bids)
        ))
        .await
        .unwrap();
    for (view, expected, least) in [
        ("busiest", rank("SELECT * FROM counts"), 30),
        ("highest", highest("SELECT * FROM bids"), 50),
    ] {
        for v in ["counts", "busiest", "bids", "highest"] {
            wait_finished(&client, v).await;
        }
        let mut actual = rows(&client, &format!("SELECT * FROM {view}")).await;
        actual.sort();
        let mut expected = rows(&client, &expected).await;
        expected.sort();
        assert!(expected.len() >= least, "10 windows: {}", expected.len());
        assert_eq!(actual, expected, "{view}");
    }
    let plan = rows(
        &client,
        &format!("EXPLAIN CREATE MATERIALIZED VIEW b2 AS {}", rank(counts)),
    )
    .await;
    let plan: Vec<&str> = plan.iter().map(|r| r[0].trim()).collect();
    let at = |what: &str| plan.iter().position(|l| l.starts_with(what));
    assert!(
        matches!((at("TopN: first 3"), at("WindowAggregate(final)")), (Some(t), Some(a)) if t < a),
        "the top-N ranks the aggregation's rows: {plan:#?}"
    );
    assert!(
        plan.iter()
            .any(|l| l.starts_with("TopN") && l.ends_with("rows per partition of the open windows")),
        "a window's partitions leave when it closes: {plan:#?}"
    );
}

/// `CREATE MATERIALIZED VIEW v (a, b) AS ...` names the view's first
/// columns (the rest keep the query's names), as in Postgres: for a view
/// of rows, an aggregation (whose key a view over it reads by the new
/// names) and a top-N; too many names is 42601.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_column_list_names_the_views_columns() {
    let (_server, client) = nexmark_server(2_000, Some(common::nexmark::BASE_TIME)).await;
    client
        .batch_execute(
            "CREATE MATERIALIZED VIEW bid_all AS SELECT auction, price, bidder FROM bid;
             CREATE MATERIALIZED VIEW cheap (a, p) AS SELECT auction, price, bidder FROM bid WHERE price < 1000;
             CREATE MATERIALIZED VIEW per_auction (a, n) AS SELECT auction, COUNT(*) FROM bid GROUP BY auction;
             CREATE MATERIALIZED VIEW busy AS SELECT a, n FROM per_auction WHERE n > 2;
             CREATE MATERIALIZED VIEW top (a, p, r) AS SELECT * FROM (SELECT auction, price,
               ROW_NUMBER() OVER (PARTITION BY auction ORDER BY price DESC) AS rn FROM bid) WHERE rn <= 2;",
        )
        .await
        .unwrap();
    for v in ["bid_all", "cheap", "per_auction", "busy", "top"] {
        wait_finished(&client, v).await;
    }
    let columns = |view: &str| {
        format!("SELECT column_name FROM information_schema.columns WHERE table_name = '{view}' ORDER BY ordinal_position")
    };
    for (view, want) in [
        ("cheap", vec!["a", "p", "bidder"]),
        ("per_auction", vec!["a", "n"]),
        ("busy", vec!["a", "n"]),
        ("top", vec!["a", "p", "r"]),
    ] {
        let got: Vec<String> = rows(&client, &columns(view))
            .await
            .into_iter()
            .map(|r| r[0].clone())
            .collect();
        assert_eq!(got, want, "{view}");
    }
    let same = |a: &str, b: &str| {
        let (a, b) = (a.to_string(), b.to_string());
        let client = &client;
        async move {
            let mut x = rows(client, &a).await;
            let mut y = rows(client, &b).await;
            x.sort();
            y.sort();
            assert!(x.len() > 5, "{a}: {} rows", x.len());
            assert_eq!(x, y, "{a}");
        }
    };
    same(
        "SELECT a, p, bidder FROM cheap",
        "SELECT auction, price, bidder FROM bid_all WHERE price < 1000",
    )
    .await;
    same(
        "SELECT a, n FROM busy",
        "SELECT auction, COUNT(*) FROM bid_all GROUP BY auction HAVING COUNT(*) > 2",
    )
    .await;
    let err = client
        .simple_query("CREATE MATERIALIZED VIEW v (a, b, c) AS SELECT auction, price FROM bid")
        .await
        .unwrap_err();
    let text = common::describe_error(&err);
    assert!(
        text.starts_with("42601") && text.contains("names 3 columns"),
        "{text}"
    );
}

/// Randomized: top-Ns of random shapes (N, direction, partitions, a
/// filter before, a second order key) over random rows with many ties
/// equal DataFusion's batch answers, compared on the columns ties do not
/// decide (partition, order values, row number).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_top_ns_equal_the_batch_answers() {
    use rand::{Rng, SeedableRng};
    use std::io::Write as _;
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start();
    let client = server.client().await;
    let ctx = datafusion::prelude::SessionContext::new();
    let mut cases = Vec::new();
    for seed in 0..40u64 {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let rows = rng.random_range(1..4_000);
        let keys = rng.random_range(1..60);
        let values = rng.random_range(1..200);
        let path = tmp.path().join(format!("t{seed}.json"));
        let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        for seq in 0..rows {
            writeln!(
                file,
                r#"{{"seq": {seq}, "k": {}, "v": {}, "w": {}}}"#,
                rng.random_range(0..keys),
                rng.random_range(0..values),
                rng.random_range(0..3)
            )
            .unwrap();
        }
        drop(file);
        let n = rng.random_range(1..6);
        let dir = if rng.random_bool(0.5) { "DESC" } else { "ASC" };
        let partition = match rng.random_range(0..3) {
            0 => "",
            1 => "PARTITION BY k",
            _ => "PARTITION BY k, w",
        };
        let shown = match partition {
            "" => "",
            "PARTITION BY k" => "k, ",
            _ => "k, w, ",
        };
        let filter = if rng.random_bool(0.5) {
            "WHERE v % 7 <> 3"
        } else {
            ""
        };
        let (order, order_shown) = if rng.random_bool(0.5) {
            (format!("v {dir}"), "v")
        } else {
            (format!("w, v {dir}"), "w, v")
        };
        let order_shown = if shown.contains("w") {
            "v"
        } else {
            order_shown
        };
        let bound = if n == 1 && rng.random_bool(0.5) {
            "rn = 1".to_string()
        } else {
            format!("rn <= {n}")
        };
        let sql = format!(
            "SELECT {shown}{order_shown}, rn FROM (SELECT *, ROW_NUMBER() OVER ({partition} ORDER BY {order}) AS rn
               FROM t{seed} {filter}) WHERE {bound}"
        );
        client
            .batch_execute(&format!(
                "CREATE TABLE t{seed} (seq BIGINT, k INT, v BIGINT, w INT)
                   WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
                 CREATE MATERIALIZED VIEW v{seed} AS {sql};",
                path.display()
            ))
            .await
            .unwrap_or_else(|e| panic!("{sql}: {}", common::describe_error(&e)));
        ctx.register_json(
            &format!("t{seed}"),
            path.to_str().unwrap(),
            datafusion::prelude::JsonReadOptions::default().file_extension(".json"),
        )
        .await
        .unwrap();
        cases.push((seed, sql));
    }
    for (seed, sql) in cases {
        wait_finished(&client, &format!("v{seed}")).await;
        let mut actual = rows(&client, &format!("SELECT * FROM v{seed}")).await;
        actual.sort();
        let mut expected = common::batch_rows(&ctx, &sql).await;
        expected.sort();
        assert!(!expected.is_empty(), "{sql}");
        assert_eq!(actual, expected, "case {seed}: {sql}");
    }
}
