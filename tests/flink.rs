//! Flink SQL scripts as written: Flink's spelling of names and types.
//!
//! - Names as the DDL spells them reach the data: `itemName VARCHAR` reads
//!   the JSON key `itemName`, `` `dateTime` `` the key `dateTime`, and ROW
//!   fields likewise, while queries name the columns by any of those
//!   spellings (unquoted and backquoted names fold to lower case). A
//!   declared column that no record carries is NULL and shows as a
//!   `missing_fields` warning in `sluice.jobs`.
//! - `ROW<...>`, `ROW(...)`, `ARRAY<...>` and `MAP<...>` column types, read
//!   from JSON objects, with nested access in views and queries.

mod common;

use std::io::Write as _;
use std::time::Duration;

use common::{execute, rows, wait_finished, TestServer};

/// Auctions in Nexmark's spelling: camelCase keys, a nested seller object.
fn write_auctions(path: &std::path::Path, n: i64) {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for i in 0..n {
        writeln!(
            file,
            r#"{{"id": {i}, "itemName": "item-{i}", "initialBid": {}, "dateTime": "2026-01-01 00:{:02}:{:02}", "seller": {{"id": {}, "emailAddress": "s{}@x.org", "dateTime": "2026-01-01 00:00:00"}}, "tags": ["t{}", "u"], "attrs": {{"colour": "c{}"}}}}"#,
            i * 10,
            (i / 60) % 60,
            i % 60,
            i % 7,
            i % 7,
            i % 3,
            i % 2,
        )
        .unwrap();
    }
    file.flush().unwrap();
}

#[tokio::test]
async fn names_as_declared_reach_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("auctions.json");
    let n = 3000i64;
    write_auctions(&path, n);
    let server = TestServer::start();
    let client = server.client().await;
    execute(
        &client,
        &format!(
            "CREATE TABLE auction (
                id BIGINT,
                itemName VARCHAR,
                `initialBid` BIGINT,
                `dateTime` TIMESTAMP(3),
                seller ROW<id BIGINT, emailAddress VARCHAR, `dateTime` TIMESTAMP(3)>,
                tags ARRAY<STRING>,
                attrs MAP<STRING, STRING>,
                reserve BIGINT,
                WATERMARK FOR `dateTime` AS `dateTime` - INTERVAL '4' SECOND
            ) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json')",
            path.display()
        ),
    )
    .await;
    // Every spelling of a name is the same column.
    execute(
        &client,
        "CREATE MATERIALIZED VIEW totals AS
         SELECT count(itemName) AS items, count(ITEMNAME) AS items2,
                sum(`initialBid`) AS bids, sum(initialbid) AS bids2,
                count(seller.emailAddress) AS emails, max(seller.`dateTime`) AS seller_time,
                max(`dateTime`) AS last, count(reserve) AS reserves
         FROM auction",
    )
    .await;
    execute(
        &client,
        "CREATE MATERIALIZED VIEW per_seller AS
         SELECT seller.id AS seller, count(*) AS n, max(itemName) AS top
         FROM auction GROUP BY seller.id",
    )
    .await;
    wait_finished(&client, "totals").await;
    wait_finished(&client, "per_seller").await;

    let bids: i64 = (0..n).map(|i| i * 10).sum();
    let last = format!(
        "2026-01-01 00:{:02}:{:02}",
        ((n - 1) / 60) % 60,
        (n - 1) % 60
    );
    assert_eq!(
        rows(&client, "SELECT * FROM totals").await,
        vec![vec![
            n.to_string(),
            n.to_string(),
            bids.to_string(),
            bids.to_string(),
            n.to_string(),
            "2026-01-01 00:00:00".to_string(),
            last,
            "0".to_string(),
        ]]
    );
    let mut expected: Vec<Vec<String>> = (0..7)
        .map(|s| {
            let ids: Vec<i64> = (0..n).filter(|i| i % 7 == s).collect();
            let top = ids.iter().map(|i| format!("item-{i}")).max().unwrap();
            vec![s.to_string(), ids.len().to_string(), top]
        })
        .collect();
    expected.sort();
    assert_eq!(
        rows(&client, "SELECT * FROM per_seller ORDER BY seller").await,
        expected
    );

    // The column no record carries is named in a warning, with its rows.
    let warnings = rows(
        &client,
        "SELECT warnings FROM sluice.jobs WHERE name = 'totals'",
    )
    .await;
    let warning = &warnings[0][0];
    assert!(
        warning.starts_with(&format!("missing_fields: reserve ({n} rows)")),
        "{warning}"
    );
    // The others are not named.
    assert!(!warning.contains("itemName"), "{warning}");

    // DESCRIBE shows SQL names and nested types.
    let described = rows(&client, "DESCRIBE auction").await;
    let types: Vec<(String, String)> = described
        .iter()
        .map(|r| (r[0].clone(), r[1].clone()))
        .collect();
    assert_eq!(
        types,
        vec![
            ("id".into(), "BIGINT".into()),
            ("itemname".into(), "STRING".into()),
            ("initialbid".into(), "BIGINT".into()),
            ("datetime".into(), "TIMESTAMP(3)".into()),
            (
                "seller".into(),
                "ROW<id BIGINT, emailaddress STRING, datetime TIMESTAMP(3)>".into()
            ),
            ("tags".into(), "ARRAY<STRING>".into()),
            ("attrs".into(), "MAP<STRING, STRING>".into()),
            ("reserve".into(), "BIGINT".into()),
        ]
    );
}

#[tokio::test]
async fn nested_types_nest_and_close_with_shifts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested.json");
    std::fs::write(
        &path,
        "{\"Outer\": {\"innerRow\": {\"deepValue\": 7, \"List\": [1, 2, 3]}, \"k\": \"a\"}}\n\
         {\"Outer\": {\"innerRow\": {\"deepValue\": 5, \"List\": []}, \"k\": \"b\"}}\n",
    )
    .unwrap();
    let server = TestServer::start();
    let client = server.client().await;
    // `>>` closes two types; ROW(...) is Flink's other spelling.
    execute(
        &client,
        &format!(
            "CREATE TABLE nested (
                Outer ROW<innerRow ROW(deepValue INT, List ARRAY<BIGINT>), k STRING>
            ) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json')",
            path.display()
        ),
    )
    .await;
    execute(
        &client,
        "CREATE MATERIALIZED VIEW deep AS
         SELECT outer.k AS k, outer.innerRow.deepValue AS v, cardinality(Outer.innerrow.list) AS n
         FROM nested",
    )
    .await;
    wait_finished(&client, "deep").await;
    assert_eq!(
        rows(&client, "SELECT * FROM deep ORDER BY k").await,
        vec![vec!["a", "7", "3"], vec!["b", "5", "0"]]
    );
    // A ROW field named twice is refused.
    let err = client
        .batch_execute(
            "CREATE TABLE twice (r ROW<a INT, A BIGINT>) WITH ('connector' = 'filesystem', 'path' = '/nonexistent', 'format' = 'json')",
        )
        .await
        .unwrap_err();
    let db = err.as_db_error().unwrap();
    assert_eq!(db.code().code(), "42701", "{}", db.message());
}

/// Flink's functions in a view, against answers computed here from the
/// same events: DATE_FORMAT with Java patterns (which DataFusion's own
/// date_format read as chrono patterns, returning the pattern itself),
/// HOUR, MOD, SPLIT_INDEX, REGEXP_EXTRACT.
#[tokio::test]
async fn flink_functions_in_a_view() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bids.json");
    let n = 5000i64;
    let start = chrono::NaiveDate::from_ymd_opt(2026, 2, 27)
        .unwrap()
        .and_hms_opt(20, 0, 0)
        .unwrap();
    let event = |i: i64| {
        let ts = start + chrono::Duration::seconds(i * 61);
        let url = format!(
            "https://www.nexmark.com/d{}/e{}/f{}/item.htm?query=1&channel_id={}",
            i % 3,
            i % 5,
            i % 2,
            i % 11
        );
        (ts, url)
    };
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    for i in 0..n {
        let (ts, url) = event(i);
        writeln!(
            file,
            r#"{{"id": {i}, "url": "{url}", "dateTime": "{}"}}"#,
            ts.format("%Y-%m-%d %H:%M:%S")
        )
        .unwrap();
    }
    file.flush().unwrap();
    let server = TestServer::start();
    let client = server.client().await;
    execute(
        &client,
        &format!(
            "CREATE TABLE bid (id BIGINT, url VARCHAR, `dateTime` TIMESTAMP(3),
                WATERMARK FOR `dateTime` AS `dateTime` - INTERVAL '4' SECOND)
             WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json')",
            path.display()
        ),
    )
    .await;
    execute(
        &client,
        "CREATE MATERIALIZED VIEW daily AS
         SELECT DATE_FORMAT(`dateTime`, 'yyyy-MM-dd') AS `day`, HOUR(`dateTime`) AS h,
                count(*) AS n, sum(MOD(id, 7)) AS m,
                max(SPLIT_INDEX(url, '/', 3)) AS dir1,
                max(REGEXP_EXTRACT(url, '(&|^)channel_id=([^&]*)', 2)) AS channel,
                max(DATE_FORMAT(`dateTime`, 'HH:mm')) AS last_minute
         FROM bid
         GROUP BY DATE_FORMAT(`dateTime`, 'yyyy-MM-dd'), HOUR(`dateTime`)",
    )
    .await;
    wait_finished(&client, "daily").await;

    use chrono::Timelike as _;
    /// count, sum of MOD, max dir, max channel, max minute
    type Group = (i64, i64, String, String, String);
    let mut groups: std::collections::BTreeMap<(String, u32), Group> = Default::default();
    for i in 0..n {
        let (ts, url) = event(i);
        let g = groups
            .entry((ts.format("%Y-%m-%d").to_string(), ts.hour()))
            .or_insert((0, 0, String::new(), String::new(), String::new()));
        g.0 += 1;
        g.1 += i % 7;
        let dir = url.split('/').nth(3).unwrap().to_string();
        let channel = url.rsplit("channel_id=").next().unwrap().to_string();
        g.2 = g.2.clone().max(dir);
        g.3 = g.3.clone().max(channel);
        g.4 = g.4.clone().max(ts.format("%H:%M").to_string());
    }
    let expected: Vec<Vec<String>> = groups
        .into_iter()
        .map(|((day, h), (n, m, dir, channel, minute))| {
            vec![
                day,
                h.to_string(),
                n.to_string(),
                m.to_string(),
                dir,
                channel,
                minute,
            ]
        })
        .collect();
    assert!(expected.len() > 24, "the events span days and hours");
    assert_eq!(
        rows(&client, "SELECT * FROM daily ORDER BY day, h").await,
        expected
    );
}

/// Each function in an ad-hoc query, against answers written by hand
/// from Flink's documentation.
#[tokio::test]
async fn flink_functions_in_queries() {
    let server = TestServer::start();
    let client = server.client().await;
    let ts = "timestamp '2026-03-07 14:05:09.123'";
    let cases: Vec<(String, &str)> = vec![
        (format!("DATE_FORMAT({ts}, 'yyyy-MM-dd')"), "2026-03-07"),
        (format!("DATE_FORMAT({ts}, 'HH:mm:ss.SSS')"), "14:05:09.123"),
        (
            format!("DATE_FORMAT({ts}, 'EEE, d MMM yy h a')"),
            "Sat, 7 Mar 26 2 PM",
        ),
        (
            "DATE_FORMAT('2026-03-07 14:05:09', 'yyyyMMdd')".into(),
            "20260307",
        ),
        ("MOD(10, 3)".into(), "1"),
        ("MOD(-7, 3)".into(), "-1"),
        ("MOD(7, 0)".into(), "NULL"),
        ("SPLIT_INDEX('a/b/c', '/', 0)".into(), "a"),
        ("SPLIT_INDEX('a/b/c', '/', 2)".into(), "c"),
        ("SPLIT_INDEX('a/b/c', '/', 3)".into(), "NULL"),
        ("SPLIT_INDEX('a/b/c', '/', -1)".into(), "NULL"),
        (
            "REGEXP_EXTRACT('foo=1&channel_id=abc', '(&|^)channel_id=([^&]*)', 2)".into(),
            "abc",
        ),
        ("REGEXP_EXTRACT('abc123def', '[0-9]+')".into(), "123"),
        ("REGEXP_EXTRACT('abc', 'z(.)', 1)".into(), "NULL"),
        ("REGEXP_EXTRACT('abc', '(', 1)".into(), "NULL"),
        ("REGEXP('abc', 'b.')".into(), "t"),
        ("REGEXP('abc', '^b')".into(), "f"),
        (format!("HOUR({ts})"), "14"),
        (format!("MINUTE({ts})"), "5"),
        (format!("SECOND({ts})"), "9"),
        (format!("YEAR({ts})"), "2026"),
        (format!("QUARTER({ts})"), "1"),
        (format!("MONTH({ts})"), "3"),
        (format!("WEEK({ts})"), "10"),
        (format!("DAYOFYEAR({ts})"), "66"),
        (format!("DAYOFMONTH({ts})"), "7"),
        (format!("DAYOFWEEK({ts})"), "7"),
        ("DAYOFWEEK(date '2026-03-08')".into(), "1"),
        ("FROM_UNIXTIME(0)".into(), "1970-01-01 00:00:00"),
        (
            "FROM_UNIXTIME(1700000000, 'yyyy/MM/dd HH')".into(),
            "2023/11/14 22",
        ),
        ("UNIX_TIMESTAMP('1970-01-02 00:00:00')".into(), "86400"),
        (
            "UNIX_TIMESTAMP('20260101', 'yyyyMMdd')".into(),
            "1767225600",
        ),
        ("UNIX_TIMESTAMP('not a time')".into(), "NULL"),
        ("LOCATE('b', 'abcb')".into(), "2"),
        ("LOCATE('b', 'abcb', 3)".into(), "4"),
        ("LOCATE('z', 'abc')".into(), "0"),
        ("LOCATE('é', 'aéb')".into(), "2"),
        ("IF(1 > 2, 'a', 'b')".into(), "b"),
        ("IF(NULL, 1, 2)".into(), "2"),
        ("IF(false, 1 / 0, 3)".into(), "3"),
        (
            "JSON_VALUE('{\"a\": {\"b\": [1, \"x\"]}}', '$.a.b[1]')".into(),
            "x",
        ),
        ("JSON_VALUE('{\"a\": 1.5}', '$.a')".into(), "1.5"),
        ("JSON_VALUE('{\"a\": {}}', '$.a')".into(), "NULL"),
        ("JSON_VALUE('not json', '$.a')".into(), "NULL"),
        (
            "JSON_QUERY('{\"a\": {\"b\": [1]}}', '$.a')".into(),
            "{\"b\":[1]}",
        ),
        ("JSON_QUERY('{\"a\": 1}', '$.a')".into(), "NULL"),
        // RETURNING, ON EMPTY and ON ERROR (both NULL by default).
        (
            "JSON_VALUE('{\"a\": 5}', '$.a' RETURNING INT) + 1".into(),
            "6",
        ),
        (
            "JSON_VALUE('{\"a\": 1.5}', '$.a' RETURNING DOUBLE) * 2".into(),
            "3",
        ),
        (
            "JSON_VALUE('{\"a\": true}', '$.a' RETURNING BOOLEAN)".into(),
            "t",
        ),
        (
            "JSON_VALUE('{\"a\": \"x\"}', '$.a' RETURNING INT)".into(),
            "NULL",
        ),
        (
            "JSON_VALUE('{\"a\": \"x\"}', '$.a' RETURNING INT DEFAULT -1 ON ERROR)".into(),
            "-1",
        ),
        (
            "JSON_VALUE('{\"a\": 5}', '$.b' RETURNING INT DEFAULT 0 ON EMPTY)".into(),
            "0",
        ),
        (
            "JSON_VALUE('{\"a\": null}', '$.a' DEFAULT 'none' ON EMPTY)".into(),
            "none",
        ),
        (
            "JSON_VALUE('bad', '$.a' DEFAULT 'e' ON EMPTY DEFAULT 'bad' ON ERROR)".into(),
            "bad",
        ),
        (
            "JSON_VALUE('{\"a\": [1]}', '$.a' NULL ON EMPTY DEFAULT 'arr' ON ERROR)".into(),
            "arr",
        ),
        (
            "JSON_VALUE('{\"a\": 5}', '$.a' ERROR ON EMPTY ERROR ON ERROR)".into(),
            "5",
        ),
        // Java patterns; by default yyyy-MM-dd HH:mm:ss (with a fraction,
        // or a date alone); NULL for text that does not match.
        (
            "TO_TIMESTAMP('2024-03-05 10:20:30')".into(),
            "2024-03-05 10:20:30",
        ),
        (
            "TO_TIMESTAMP('2024-03-05 10:20:30.5')".into(),
            "2024-03-05 10:20:30.5",
        ),
        ("TO_TIMESTAMP('2024-03-05')".into(), "2024-03-05 00:00:00"),
        (
            "TO_TIMESTAMP('05/03/2024 10h', 'dd/MM/yyyy HH''h''')".into(),
            "2024-03-05 10:00:00",
        ),
        ("TO_TIMESTAMP('garbage')".into(), "NULL"),
        ("TO_DATE('2024-03-05')".into(), "2024-03-05"),
        ("TO_DATE('20240305', 'yyyyMMdd')".into(), "2024-03-05"),
        ("TO_DATE('5 Mar 2024', 'd MMM yyyy')".into(), "2024-03-05"),
        ("TO_DATE('x')".into(), "NULL"),
        // Postgres's: seconds since the epoch.
        ("to_timestamp(1.5)".into(), "1970-01-01 00:00:01.5+00"),
        ("CHAR_LENGTH('héllo')".into(), "5"),
        ("INSTR('abc', 'c')".into(), "3"),
        ("CONCAT_WS('-', 'a', 'b')".into(), "a-b"),
    ];
    for (expr, expected) in &cases {
        let got = rows(&client, &format!("SELECT {expr}")).await;
        assert_eq!(got[0][0], *expected, "{expr}");
    }
    // A bad pattern is refused with its letter named; an unknown function
    // by name.
    let err = client
        .simple_query("SELECT DATE_FORMAT(now(), 'yyyy-MM-dd T')")
        .await
        .unwrap_err();
    let db = err.as_db_error().unwrap();
    assert_eq!(db.code().code(), "22023");
    assert!(db.message().contains("'T'"), "{}", db.message());
    for (sql, why) in [
        (
            "JSON_VALUE('{\"a\": 5}', '$.b' ERROR ON EMPTY)",
            "no SQL/JSON item at $.b",
        ),
        (
            "JSON_VALUE('{\"a\": [1]}', '$.a' ERROR ON ERROR)",
            "is not a scalar",
        ),
    ] {
        let err = client
            .simple_query(&format!("SELECT {sql}"))
            .await
            .unwrap_err();
        let db = err.as_db_error().unwrap();
        assert_eq!(db.code().code(), "22000", "{sql}");
        assert!(db.message().contains(why), "{sql}: {}", db.message());
    }
    let err = client
        .simple_query("SELECT JSON_VALUE('{}', '$.a' DEFAULT 1 ON ERROR DEFAULT 2 ON EMPTY)")
        .await
        .unwrap_err();
    assert_eq!(err.as_db_error().unwrap().code().code(), "42601");
    let err = client
        .simple_query("SELECT JSON_QUERY('{}', '$.a' WITH WRAPPER)")
        .await
        .unwrap_err();
    let db = err.as_db_error().unwrap();
    assert_eq!(db.code().code(), "42601");
    assert!(db.message().contains("WRAPPER"), "{}", db.message());
    let err = client
        .simple_query("SELECT CURRENT_WATERMARK(now())")
        .await
        .unwrap_err();
    assert_eq!(err.as_db_error().unwrap().code().code(), "42883");
}

/// Nexmark's shape: one source of three event kinds in ROW columns, a
/// computed event time over them, and a logical view per kind. Views over
/// the logical views equal answers computed here; the logical views show
/// in SHOW VIEWS, DESCRIBE, psql's \dv (pg_class) and information_schema,
/// survive a restart, and hold their source from being dropped.
#[tokio::test]
async fn logical_views_expand_where_they_are_used() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.json");
    let n = 3000i64;
    let kind = |i: i64| match i % 50 {
        0 => 0,
        1..=3 => 1,
        _ => 2,
    };
    let time = |i: i64| format!("2026-01-01 00:{:02}:{:02}", (i / 60) % 60, i % 60);
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    for i in 0..n {
        let line = match kind(i) {
            0 => format!(
                r#"{{"event_type": 0, "person": {{"id": {i}, "name": "p{i}", "state": "OR", "dateTime": "{}"}}}}"#,
                time(i)
            ),
            1 => format!(
                r#"{{"event_type": 1, "auction": {{"id": {i}, "seller": {}, "category": 10, "dateTime": "{}"}}}}"#,
                i % 7,
                time(i)
            ),
            _ => format!(
                r#"{{"event_type": 2, "bid": {{"auction": {}, "bidder": {}, "price": {i}, "dateTime": "{}"}}}}"#,
                i % 13,
                i % 17,
                time(i)
            ),
        };
        writeln!(file, "{line}").unwrap();
    }
    file.flush().unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut server = TestServer::start_in(data.path(), &[]);
    let client = server.client().await;
    execute(
        &client,
        &format!(
            "CREATE TABLE datagen (
                event_type INT,
                person ROW<id BIGINT, name VARCHAR, state VARCHAR, `dateTime` TIMESTAMP(3)>,
                auction ROW<id BIGINT, seller BIGINT, category BIGINT, `dateTime` TIMESTAMP(3)>,
                bid ROW<auction BIGINT, bidder BIGINT, price BIGINT, `dateTime` TIMESTAMP(3)>,
                `dateTime` AS CASE WHEN event_type = 0 THEN person.`dateTime`
                                   WHEN event_type = 1 THEN auction.`dateTime`
                                   ELSE bid.`dateTime` END,
                WATERMARK FOR `dateTime` AS `dateTime` - INTERVAL '4' SECOND
            ) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
            CREATE VIEW bid AS
                SELECT bid.auction, bid.bidder, bid.price, `dateTime` FROM datagen WHERE event_type = 2;
            CREATE TEMPORARY VIEW person (pid, pname, `dateTime`) AS
                SELECT person.id, person.name, `dateTime` FROM datagen WHERE event_type = 0;
            CREATE VIEW cheap AS SELECT auction, price FROM bid WHERE price < 1000;",
            path.display()
        ),
    )
    .await;
    execute(
        &client,
        "CREATE MATERIALIZED VIEW per_auction AS
            SELECT auction, count(*) AS n, max(price) AS top FROM bid GROUP BY auction;
         CREATE MATERIALIZED VIEW q2 AS SELECT auction, price FROM bid WHERE MOD(auction, 5) = 0;
         CREATE MATERIALIZED VIEW people AS SELECT count(*) AS n, max(pname) AS last FROM person;
         CREATE MATERIALIZED VIEW cheap_count AS SELECT count(*) AS n FROM cheap;
         CREATE MATERIALIZED VIEW euros AS SELECT sum(0.908 * price) AS s FROM bid",
    )
    .await;
    for v in ["per_auction", "q2", "people", "cheap_count", "euros"] {
        wait_finished(&client, v).await;
    }
    let bids: Vec<i64> = (0..n).filter(|i| kind(*i) == 2).collect();
    let mut expected: Vec<Vec<String>> = (0..13)
        .map(|a| {
            let prices: Vec<i64> = bids.iter().copied().filter(|i| i % 13 == a).collect();
            vec![
                a.to_string(),
                prices.len().to_string(),
                prices.iter().max().unwrap().to_string(),
            ]
        })
        .collect();
    expected.sort_by_key(|r| r[0].parse::<i64>().unwrap());
    let (bids, expected) = (&bids, &expected);
    let check = |client: tokio_postgres::Client| async move {
        assert_eq!(
            rows(&client, "SELECT * FROM per_auction ORDER BY auction").await,
            *expected
        );
        let q2 = bids.iter().filter(|i| (*i % 13) % 5 == 0).count();
        assert_eq!(
            rows(&client, "SELECT count(*) FROM q2").await,
            vec![vec![q2.to_string()]]
        );
        let people: Vec<i64> = (0..n).filter(|i| kind(*i) == 0).collect();
        let last = people.iter().map(|i| format!("p{i}")).max().unwrap();
        assert_eq!(
            rows(&client, "SELECT * FROM people").await,
            vec![vec![people.len().to_string(), last]]
        );
        let cheap = bids.iter().filter(|i| **i < 1000).count();
        assert_eq!(
            rows(&client, "SELECT * FROM cheap_count").await,
            vec![vec![cheap.to_string()]]
        );
        // The catalog shows them.
        assert_eq!(
            rows(&client, "SHOW VIEWS").await,
            vec![vec!["bid"], vec!["cheap"], vec!["person"]]
        );
        assert_eq!(
            rows(
                &client,
                "SELECT relname FROM pg_class WHERE relkind = 'v' ORDER BY relname"
            )
            .await,
            vec![vec!["bid"], vec!["cheap"], vec!["person"]]
        );
        let described: Vec<String> = rows(&client, "DESCRIBE person")
            .await
            .into_iter()
            .map(|r| format!("{} {}", r[0], r[1]))
            .collect();
        assert_eq!(
            described,
            vec!["pid BIGINT", "pname STRING", "datetime TIMESTAMP(3)"]
        );
        let definition = rows(
            &client,
            "SELECT view_definition FROM information_schema.views WHERE table_name = 'cheap'",
        )
        .await;
        assert!(definition[0][0].contains("price < 1000"), "{definition:?}");
        client
    };
    let client = check(client).await;
    // Decimal literals are exact: 0.908 * price is DECIMAL(23, 3), as in
    // Flink (a DOUBLE would not sum to these digits).
    let milli: i64 = bids.iter().map(|p| p * 908).sum();
    assert_eq!(
        rows(&client, "SELECT s FROM euros").await,
        vec![vec![format!("{}.{:03}", milli / 1000, milli % 1000)]]
    );

    // A view's source cannot be dropped under it; a view under another
    // view neither.
    for (drop, code) in [("DROP TABLE datagen", "2BP01"), ("DROP VIEW bid", "2BP01")] {
        let err = client.batch_execute(drop).await.unwrap_err();
        assert_eq!(err.as_db_error().unwrap().code().code(), code, "{drop}");
    }
    // A window over a logical view moves onto its source (Nexmark q5, q7):
    // bids per auction and 10-second window, against the events.
    execute(
        &client,
        "CREATE MATERIALIZED VIEW per_window AS
         SELECT auction, count(*) AS n, window_start
         FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(`dateTime`), INTERVAL '10' SECOND))
         GROUP BY auction, window_start, window_end",
    )
    .await;
    wait_finished(&client, "per_window").await;
    let mut windows: std::collections::BTreeMap<(i64, i64), i64> = Default::default();
    for i in bids {
        *windows.entry((i % 13, i / 10)).or_default() += 1;
    }
    let squares: i64 = windows.values().map(|n| n * n).sum();
    assert_eq!(
        rows(
            &client,
            "SELECT count(*), sum(n), sum(n * n) FROM per_window"
        )
        .await,
        vec![vec![
            windows.len().to_string(),
            bids.len().to_string(),
            squares.to_string()
        ]]
    );
    // Flink's older GROUP BY TUMBLE(...) over the view (Nexmark q11's form)
    // gives the same windows.
    execute(
        &client,
        "CREATE MATERIALIZED VIEW per_group_window AS
         SELECT B.auction, count(*) AS n, TUMBLE_START(B.`dateTime`, INTERVAL '10' SECOND) AS ws
         FROM bid B
         GROUP BY B.auction, TUMBLE(B.`dateTime`, INTERVAL '10' SECOND)",
    )
    .await;
    wait_finished(&client, "per_group_window").await;
    assert_eq!(
        rows(
            &client,
            "SELECT count(*), sum(n), sum(n * n) FROM per_group_window"
        )
        .await,
        vec![vec![
            windows.len().to_string(),
            bids.len().to_string(),
            squares.to_string()
        ]]
    );
    execute(&client, "DROP MATERIALIZED VIEW per_group_window").await;
    // A window on a column the view computes is refused, naming why.
    execute(
        &client,
        "CREATE VIEW shifted AS SELECT auction, `dateTime` + INTERVAL '1' SECOND AS t FROM bid",
    )
    .await;
    let err = client
        .batch_execute(
            "CREATE MATERIALIZED VIEW w AS SELECT count(*) AS n FROM TABLE(TUMBLE(TABLE shifted, DESCRIPTOR(t), INTERVAL '10' SECOND)) GROUP BY window_start, window_end",
        )
        .await
        .unwrap_err();
    let db = err.as_db_error().unwrap();
    assert_eq!(db.code().code(), "0A000");
    assert!(db.message().contains("\"shifted\""), "{}", db.message());
    execute(&client, "DROP VIEW shifted").await;

    // Everything survives a restart.
    drop(client);
    assert!(server.stop());
    let server = TestServer::start_in(data.path(), &[]);
    let client = server.client().await;
    let client = check(client).await;
    execute(
        &client,
        "DROP MATERIALIZED VIEW cheap_count; DROP VIEW cheap",
    )
    .await;
    assert_eq!(
        rows(&client, "SHOW VIEWS").await,
        vec![vec!["bid"], vec!["person"]]
    );
}

/// Every JSON line of every file under `dir` (recursively), with the
/// directories it is under; fails on a file left in progress.
fn written_files(dir: &std::path::Path) -> Vec<(String, serde_json::Value)> {
    read_files(dir, true)
}

/// The JSON lines of the files under `dir` a reader sees now: a sink may
/// be writing a hidden `.inprogress` file, which readers skip.
fn committed_files(dir: &std::path::Path) -> Vec<(String, serde_json::Value)> {
    read_files(dir, false)
}

fn read_files(dir: &std::path::Path, finished: bool) -> Vec<(String, serde_json::Value)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if name.ends_with(".inprogress") {
                assert!(!finished, "left in progress: {name}");
                continue;
            }
            let parent = path
                .parent()
                .unwrap()
                .strip_prefix(dir)
                .unwrap()
                .to_string_lossy()
                .to_string();
            for line in std::fs::read_to_string(&path).unwrap().lines() {
                out.push((parent.clone(), serde_json::from_str(line).unwrap()));
            }
        }
    }
    out
}

/// Flink's way to start jobs: INSERT INTO sink tables. A partitioned
/// filesystem table gets each row once, under its partition's directory,
/// across a SIGKILL; a print table's rows are in the log (at least once);
/// a blackhole table's job counts them. The rows are a datagen sequence,
/// so the answer is computed here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insert_into_sink_tables_writes_each_row_once_across_a_kill() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let out = tmp.path().join("out");
    let flags = ["--checkpoint-interval", "200ms"];
    let mut server = TestServer::start_in(&data, &flags);
    let client = server.client().await;
    execute(
        &client,
        "CREATE TABLE gen (id BIGINT, cell_id STRING, duration_ms INT)
         WITH ('connector' = 'datagen', 'rows-per-second' = '3000',
               'fields.id.kind' = 'sequence', 'fields.id.start' = '1', 'fields.id.end' = '30000')",
    )
    .await;
    execute(
        &client,
        &format!(
            "CREATE TABLE calls_out (`callId` BIGINT, `cellId` STRING, part STRING)
             PARTITIONED BY (part)
             WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json',
                   'sink.rolling-policy.rollover-interval' = '300ms',
                   'sink.partition-commit.policy.kind' = 'success-file')",
            out.display()
        ),
    )
    .await;
    execute(
        &client,
        "CREATE TABLE shown (id BIGINT, n INT) WITH ('connector' = 'print');
         CREATE TABLE discard (id BIGINT) WITH ('connector' = 'blackhole');
         INSERT INTO calls_out
           SELECT id, CONCAT('c', CAST(MOD(id, 7) AS STRING)), CAST(MOD(id, 3) AS STRING)
           FROM gen WHERE MOD(id, 10) <> 0;
         INSERT INTO shown SELECT id, duration_ms FROM gen WHERE MOD(id, 1000) = 7;
         INSERT INTO discard SELECT id FROM gen",
    )
    .await;
    let expected: Vec<(i64, String)> = (1..=30000i64)
        .filter(|id| id % 10 != 0)
        .map(|id| (id, format!("c{}", id % 7)))
        .collect();
    common::wait_rows_out(&client, "insert_into_calls_out", 1000).await;
    let status = common::job_status(&client, "__sink_insert_into_calls_out")
        .await
        .0;
    let log_before = server.log();
    server.kill();
    assert_eq!(status, "running", "killed while rows still came");
    drop(client);

    let server = TestServer::start_in(&data, &flags);
    let client = server.client().await;
    for job in ["calls_out", "shown", "discard"] {
        wait_finished(&client, &format!("__sink_insert_into_{job}")).await;
    }
    common::wait_until(
        Duration::from_secs(60),
        "the files to hold every row",
        || async { committed_files(&out).len() >= expected.len() },
    )
    .await;
    let mut got: Vec<(i64, String)> = written_files(&out)
        .iter()
        .map(|(dir, v)| {
            let id = v["callId"].as_i64().unwrap();
            assert_eq!(dir, &format!("part={}", id % 3), "row {v}");
            assert!(v.get("part").is_none(), "partition columns are in the path");
            (id, v["cellId"].as_str().unwrap().to_string())
        })
        .collect();
    got.sort();
    assert_eq!(got.len(), expected.len(), "one line per row");
    assert!(got == expected, "the files hold the query's rows");

    // Each partition is committed with a success file (process-time, no
    // delay: once its first rows are written).
    for part in 0..3 {
        let success = out.join(format!("part={part}")).join("_SUCCESS");
        assert!(success.exists(), "{} is there", success.display());
    }

    // SHOW JOBS counts them; the blackhole's job took every row.
    let jobs = rows(&client, "SHOW JOBS").await;
    let job = |name: &str| jobs.iter().find(|r| r[0] == name).unwrap().clone();
    assert_eq!(job("insert_into_calls_out")[4], expected.len().to_string());
    assert_eq!(job("insert_into_discard")[3], "30000");
    assert_eq!(job("insert_into_discard")[2], "nowhere (blackhole)");

    // The print sink's rows are in the log, as Flink prints them: each at
    // least once (the rows since the last checkpoint are printed again).
    let log = format!("{log_before}\n{}", server.log());
    let mut printed: Vec<i64> = log
        .lines()
        .filter_map(|l| l.split_once("insert_into_shown> +I[").map(|(_, rest)| rest))
        .map(|rest| rest.split(',').next().unwrap().parse().unwrap())
        .collect();
    printed.sort();
    printed.dedup();
    let sevens: Vec<i64> = (0..30).map(|k| k * 1000 + 7).collect();
    assert_eq!(printed, sevens, "every row printed");

    // Stopping a job ends it; the files stay.
    execute(&client, "STOP JOB 'insert_into_calls_out'").await;
    assert!(rows(&client, "SHOW JOBS")
        .await
        .iter()
        .all(|r| r[0] != "insert_into_calls_out"));
    assert_eq!(written_files(&out).len(), expected.len());
}

/// The `nexmark` connector in Flink's table shape, under Nexmark's own DDL:
/// people, auctions and bids in the 1:3:46 mix, ids as the reference
/// generator numbers them (people and auctions from 1000, one of each per
/// 50 events), bids on those auctions and by those people, the same events
/// whatever the parallelism.
#[tokio::test]
async fn the_nexmark_connector_makes_the_reference_events() {
    let events = 50_000u64;
    let mut answers = Vec::new();
    for parallelism in ["1", "2"] {
        let data = tempfile::tempdir().unwrap();
        let server = TestServer::start_in(data.path(), &["--parallelism", parallelism]);
        let client = server.client().await;
        client
            .batch_execute(&common::nexmark::ddl(events, 10_000_000, None, "datagen"))
            .await
            .unwrap();
        execute(
            &client,
            "CREATE MATERIALIZED VIEW mix AS SELECT event_type, COUNT(*) AS n FROM datagen GROUP BY event_type;
             CREATE MATERIALIZED VIEW people AS SELECT COUNT(*) AS n, MIN(id) AS lo, MAX(id) AS hi, COUNT(DISTINCT id) AS ids, SUM(CASE WHEN emailAddress LIKE '%@%' THEN 1 ELSE 0 END) AS emails FROM person;
             CREATE MATERIALIZED VIEW auctions AS SELECT COUNT(*) AS n, MIN(id) AS lo, MAX(id) AS hi, SUM(CASE WHEN expires > `dateTime` THEN 1 ELSE 0 END) AS later, MIN(seller) AS s_lo FROM auction;
             CREATE MATERIALIZED VIEW bids AS SELECT COUNT(*) AS n, MIN(auction) AS a_lo, MIN(bidder) AS b_lo, SUM(auction) AS a_sum, SUM(price) AS p_sum, COUNT(DISTINCT channel) AS channels FROM bid",
        )
        .await;
        for v in ["mix", "people", "auctions", "bids"] {
            wait_finished(&client, v).await;
        }
        let mix = rows(&client, "SELECT event_type, n FROM mix ORDER BY event_type").await;
        assert_eq!(
            mix,
            vec![vec!["0", "1000"], vec!["1", "3000"], vec!["2", "46000"]],
            "the 1:3:46 mix"
        );
        let people = rows(&client, "SELECT n, lo, hi, ids, emails FROM people").await;
        assert_eq!(people, vec![vec!["1000", "1000", "1999", "1000", "1000"]]);
        let auctions = rows(
            &client,
            "SELECT n, lo, hi, later, s_lo >= 1000 FROM auctions",
        )
        .await;
        assert_eq!(auctions, vec![vec!["3000", "1000", "3999", "3000", "t"]]);
        let bids = rows(
            &client,
            "SELECT n, a_lo >= 1000, b_lo >= 1000, a_sum, p_sum, channels FROM bids",
        )
        .await;
        assert_eq!(bids[0][..3], ["46000", "t", "t"]);
        answers.push((people, auctions, bids));
    }
    assert_eq!(
        answers[0], answers[1],
        "the same events with 1 and 2 instances"
    );
}

/// Nexmark q0 to q22 as written (only the `${...}` placeholders filled):
/// each runs, or is refused with 0A000 naming what is missing. The queries
/// that run never become fewer, and none of their jobs fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nexmark_queries_run_as_written_or_are_refused_by_name() {
    let data = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    common::nexmark::write_side_input(out.path());
    let server = TestServer::start_in(data.path(), &[]);
    let client = server.client().await;
    client
        .batch_execute(&common::nexmark::ddl(5_000, 1_000_000, None, "datagen"))
        .await
        .unwrap();
    let mut accepted = Vec::new();
    let mut table = Vec::new();
    for q in 0..=22usize {
        let text = common::nexmark::query(q, out.path());
        match client.batch_execute(&text).await {
            Ok(()) => {
                accepted.push(q);
                table.push(format!("q{q}: runs"));
            }
            Err(e) => {
                let db = e.as_db_error().expect("a server error");
                let code = db.code().code().to_string();
                table.push(format!("q{q}: {code} {}", db.message()));
                assert_eq!(
                    code,
                    "0A000",
                    "q{q} is refused naming the construct: {}",
                    db.message()
                );
            }
        }
    }
    eprintln!("{}", table.join("\n"));
    for q in common::nexmark::ACCEPTED {
        assert!(
            accepted.contains(q),
            "q{q} ran before:\n{}",
            table.join("\n")
        );
    }
    // Every accepted query's job runs to its end.
    for job in rows(&client, "SELECT name FROM sluice.jobs").await {
        if job[0].starts_with("__sink_") {
            wait_finished(&client, &job[0]).await;
        }
    }
}

/// Flink's legacy filesystem options (Nexmark's q13 declares its side
/// input with them) read the file as the current ones do; legacy options
/// of other connectors are refused, naming the current ones.
#[tokio::test]
async fn legacy_filesystem_options_read_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("side.txt");
    std::fs::write(&path, "1;one\n2;two\n3;three\n").unwrap();
    let server = TestServer::start();
    let client = server.client().await;
    client
        .batch_execute(&format!(
            "CREATE TABLE side (key BIGINT, `value` VARCHAR) WITH (
               'connector.type' = 'filesystem', 'connector.path' = 'file://{}',
               'format.type' = 'csv', 'format.field-delimiter' = ';',
               'connector.property-version' = '1');
             CREATE MATERIALIZED VIEW side_rows AS SELECT key, `value` FROM side;",
            path.display()
        ))
        .await
        .unwrap();
    wait_finished(&client, "side_rows").await;
    let mut got = rows(&client, "SELECT * FROM side_rows").await;
    got.sort();
    assert_eq!(got, [["1", "one"], ["2", "two"], ["3", "three"]]);
    let err = client
        .simple_query(
            "CREATE TABLE k (a INT) WITH ('connector.type' = 'kafka', 'connector.topic' = 't')",
        )
        .await
        .unwrap_err();
    let db = err.as_db_error().unwrap();
    assert_eq!(db.code().code(), "0A000");
    assert!(
        db.message().contains("'connector.type' = 'kafka'") && db.message().contains("'topic'"),
        "{}",
        db.message()
    );
}

/// Nexmark q1, q2, q11, q21 and q22 as written, run as views over the
/// `nexmark` connector, equal the answers computed here from the reference
/// generator's events (the `nexmark` crate, directly).
#[tokio::test]
async fn nexmark_queries_equal_the_answers_from_the_generator() {
    use nexmark::event::Event;
    let events = 20_000u64;
    let bids: Vec<nexmark::event::Bid> =
        nexmark::EventGenerator::new(nexmark::config::NexmarkConfig::default())
            .take(events as usize)
            .filter_map(|e| match e {
                Event::Bid(b) => Some(b),
                _ => None,
            })
            .collect();
    let server = TestServer::start();
    let client = server.client().await;
    client
        .batch_execute(&common::nexmark::ddl(events, 1_000_000, None, "datagen"))
        .await
        .unwrap();
    for q in [1, 2, 11, 21, 22] {
        execute(
            &client,
            &format!(
                "CREATE MATERIALIZED VIEW q{q} AS {}",
                common::nexmark::select(q)
            ),
        )
        .await;
    }
    for q in [1, 2, 11, 21, 22] {
        wait_finished(&client, &format!("q{q}")).await;
    }
    let sorted = |mut v: Vec<Vec<String>>| {
        v.sort();
        v
    };
    // q1: prices in euros, exactly.
    let cents: i64 = bids.iter().map(|b| b.price as i64 * 908).sum();
    assert_eq!(
        rows(&client, "SELECT COUNT(*), SUM(price) FROM q1").await,
        vec![vec![
            bids.len().to_string(),
            format!("{}.{:03}", cents / 1000, cents % 1000)
        ]]
    );
    // q2: the bids on every 123rd auction.
    let want: Vec<Vec<String>> = bids
        .iter()
        .filter(|b| b.auction % 123 == 0)
        .map(|b| vec![b.auction.to_string(), b.price.to_string()])
        .collect();
    assert!(!want.is_empty());
    assert_eq!(
        sorted(rows(&client, "SELECT auction, price FROM q2").await),
        sorted(want)
    );
    // q11: each bidder's bids in sessions of bids less than 10 s apart.
    // The connector spaces these events 1 µs apart (TPS 1,000,000), so
    // each bidder has one session: all its bids, ending 10 s after the
    // last.
    let mut want: std::collections::BTreeMap<String, u64> = Default::default();
    for b in &bids {
        *want.entry(b.bidder.to_string()).or_default() += 1;
    }
    let want: Vec<Vec<String>> = want
        .into_iter()
        .map(|(bidder, n)| vec![bidder, n.to_string(), "t".to_string()])
        .collect();
    assert!(want.len() > 10);
    assert_eq!(
        sorted(
            rows(
                &client,
                "SELECT bidder, bid_count,
                   endtime - starttime BETWEEN INTERVAL '10' SECOND AND INTERVAL '10.1' SECOND
                 FROM q11"
            )
            .await
        ),
        sorted(want)
    );
    // q21: a channel id from the channel's name or the URL.
    let re = regex::Regex::new("(&|^)channel_id=([^&]*)").unwrap();
    let want: Vec<Vec<String>> = bids
        .iter()
        .filter_map(|b| {
            let id = match b.channel.to_lowercase().as_str() {
                "apple" => Some("0".to_string()),
                "google" => Some("1".to_string()),
                "facebook" => Some("2".to_string()),
                "baidu" => Some("3".to_string()),
                _ => re
                    .captures(&b.url)
                    .and_then(|c| c.get(2))
                    .map(|m| m.as_str().to_string()),
            }?;
            Some(vec![
                b.auction.to_string(),
                b.bidder.to_string(),
                b.price.to_string(),
                b.channel.clone(),
                id,
            ])
        })
        .collect();
    assert!(!want.is_empty());
    assert_eq!(
        sorted(
            rows(
                &client,
                "SELECT auction, bidder, price, channel, channel_id FROM q21"
            )
            .await
        ),
        sorted(want)
    );
    // q22: the URL's directories (SPLIT_INDEX counts from 0).
    let want: Vec<Vec<String>> = bids
        .iter()
        .map(|b| {
            let parts: Vec<&str> = b.url.split('/').collect();
            let dir = |i: usize| parts.get(i).map_or("NULL".to_string(), |s| s.to_string());
            vec![
                b.auction.to_string(),
                b.bidder.to_string(),
                b.price.to_string(),
                b.channel.clone(),
                dir(3),
                dir(4),
                dir(5),
            ]
        })
        .collect();
    assert_eq!(
        sorted(
            rows(
                &client,
                "SELECT auction, bidder, price, channel, dir1, dir2, dir3 FROM q22"
            )
            .await
        ),
        sorted(want)
    );
}

/// Every Nexmark query Sluice runs, as written, over the same 10,000
/// events, equals DataFusion's batch answer of the same query (an ad-hoc
/// query over a materialized view of the events, in a second server).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_nexmark_queries_equal_the_batch_answers() {
    let answers = common::nexmark::streaming_and_batch(10_000, common::nexmark::TIMELESS).await;
    for (q, view, batch) in answers {
        eprintln!("q{q}: {} rows, first {:?}", batch.len(), batch.first());
        assert!(!batch.is_empty(), "q{q} has an answer");
        assert_eq!(view.len(), batch.len(), "q{q}: rows");
        let only = |a: &[Vec<String>], b: &[Vec<String>]| -> Vec<Vec<String>> {
            a.iter()
                .filter(|r| !b.contains(r))
                .take(5)
                .cloned()
                .collect()
        };
        assert!(
            view == batch,
            "q{q}: only in the view {:?}; only in the batch answer {:?}",
            only(&view, &batch),
            only(&batch, &view)
        );
    }
}

/// The JSON file the benchmarks give Flink holds the `nexmark` connector's
/// events, under Nexmark's field names: the same sums over both.
#[tokio::test]
async fn the_exported_nexmark_events_are_the_connectors() {
    let dir = tempfile::tempdir().unwrap();
    common::nexmark::export(5_000, dir.path());
    let server = TestServer::start();
    let client = server.client().await;
    let over_files = std::fs::read_to_string(dir.path().join("_ddl.sql")).unwrap();
    let (from_files, _) = common::nexmark::split_views(&over_files);
    client
        .batch_execute(&from_files.replace("TABLE datagen", "TABLE from_files"))
        .await
        .unwrap();
    let (generated, _) = common::nexmark::split_views(&common::nexmark::ddl(
        5_000,
        10_000_000,
        Some(common::nexmark::BASE_TIME),
        "x",
    ));
    client.batch_execute(&generated).await.unwrap();
    let sums =
        "SELECT COUNT(*) AS n, SUM(bid.price) AS prices, COUNT(person.emailAddress) AS emails, \
        SUM(auction.reserve) AS reserves, MIN(`dateTime`) AS first, MAX(`dateTime`) AS last, \
        MAX(auction.expires) AS expires, MAX(bid.url) AS url, MAX(auction.itemName) AS item";
    for table in ["from_files", "datagen"] {
        execute(
            &client,
            &format!("CREATE MATERIALIZED VIEW sums_{table} AS {sums} FROM {table}"),
        )
        .await;
    }
    for table in ["from_files", "datagen"] {
        wait_finished(&client, &format!("sums_{table}")).await;
    }
    let from_files = rows(&client, "SELECT * FROM sums_from_files").await;
    assert_eq!(from_files[0][0], "5000");
    assert_eq!(
        from_files,
        rows(&client, "SELECT * FROM sums_datagen").await
    );
}

/// A filesystem sink fed by a bounded query writes its last rows as soon
/// as the query has ended (not at the next rollover), and then shows
/// finished: a finished INSERT job has written every row.
#[tokio::test]
async fn a_finished_file_insert_has_written_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start();
    let client = server.client().await;
    client
        .batch_execute(&format!(
            "CREATE TABLE numbers (id BIGINT) WITH ('connector' = 'datagen', 'number-of-rows' = '1000', \
               'fields.id.kind' = 'sequence', 'fields.id.start' = '1', 'fields.id.end' = '1000');
             CREATE TABLE out (id BIGINT) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
             INSERT INTO out SELECT id FROM numbers;",
            dir.path().display()
        ))
        .await
        .unwrap();
    wait_finished(&client, "insert_into_out").await;
    let mut ids: Vec<i64> = Vec::new();
    for file in std::fs::read_dir(dir.path()).unwrap() {
        let text = std::fs::read_to_string(file.unwrap().path()).unwrap();
        for line in text.lines() {
            let row: serde_json::Value = serde_json::from_str(line).unwrap();
            ids.push(row["id"].as_i64().unwrap());
        }
    }
    ids.sort();
    assert_eq!(ids, (1..=1000).collect::<Vec<i64>>());
}

/// A ROW written by INSERT INTO a filesystem table has its fields named as
/// the table declares them (`emailAddress`, not the folded `emailaddress`),
/// position by position: `ROW(person.id, person.creditCard)` into
/// `ROW<personId, cardNo>`. The values are the source's own.
#[tokio::test]
async fn rows_are_written_with_their_declared_field_names() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start();
    let client = server.client().await;
    let person =
        "ROW<id BIGINT, name VARCHAR, emailAddress VARCHAR, creditCard VARCHAR, city VARCHAR, \
                  state VARCHAR, dateTime TIMESTAMP(3), extra VARCHAR>";
    client
        .batch_execute(&format!(
            "CREATE TABLE nx (event_type INT, person {person}) WITH ('connector' = 'nexmark', 'events.num' = '500');
             CREATE TABLE people (person {person}, pair ROW<personId BIGINT, cardNo STRING>)
               WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
             INSERT INTO people SELECT person, ROW(person.id, person.creditCard) FROM nx WHERE event_type = 0;",
            dir.path().display()
        ))
        .await
        .unwrap();
    wait_finished(&client, "insert_into_people").await;
    let written = written_files(dir.path());
    // 1 person in 50 events.
    assert_eq!(written.len(), 10);
    let names =
        |v: &serde_json::Value| -> Vec<String> { v.as_object().unwrap().keys().cloned().collect() };
    let mut ids = Vec::new();
    for (_, row) in &written {
        let (p, pair) = (&row["person"], &row["pair"]);
        let mut want = vec![
            "id",
            "name",
            "emailAddress",
            "creditCard",
            "city",
            "state",
            "dateTime",
            "extra",
        ];
        want.sort();
        assert_eq!(names(p), want, "{row}");
        assert_eq!(names(pair), ["cardNo", "personId"], "{row}");
        assert_eq!(pair["personId"], p["id"]);
        assert_eq!(pair["cardNo"], p["creditCard"]);
        assert!(p["emailAddress"].as_str().unwrap().contains('@'));
        ids.push(p["id"].as_i64().unwrap());
    }
    ids.sort();
    assert_eq!(ids, (1000..1010).collect::<Vec<i64>>());
}
