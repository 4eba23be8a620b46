//! Everyday continuous queries beyond one aggregation over one source,
//! each against an answer computed independently: DataFusion's batch
//! answer of the same SELECT over the same events (Nexmark's generator,
//! fixed in time), or rows written here by hand.

mod common;

use common::{rows, wait_finished, TestServer};

/// Each of `selects`, over 10,000 Nexmark events, as a view equals
/// DataFusion's batch answer, which has a few rows at least.
async fn equal_the_batch_answers(selects: &[String]) {
    let answers = common::nexmark::views_and_batch(10_000, selects).await;
    for (sql, (view, batch)) in selects.iter().zip(answers) {
        assert!(batch.len() > 5, "{sql}: {} rows", batch.len());
        assert_eq!(view, batch, "{sql}");
    }
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
    let server = TestServer::start();
    let client = server.client().await;
    client
        .batch_execute(&common::nexmark::ddl(100, 10_000, None, "datagen"))
        .await
        .unwrap();
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
