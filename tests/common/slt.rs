//! A small sqllogictest runner: SQL behaviour in `tests/slt/*.slt`, run over
//! the Postgres protocol against the real server.
//!
//! Records, separated by blank lines:
//!
//! ```text
//! statement ok
//! <sql>
//!
//! statement error <text the "SQLSTATE: message" must contain>
//! <sql>
//!
//! query <column types, e.g. TIR> [rowsort]
//! <sql>
//! ----
//! <expected rows, columns separated by one space; NULL for null>
//!
//! wait finished <view>       (until the job over a bounded source is done)
//! ```
//!
//! `${DATA}` in SQL is the tests' data directory. With `SLT_COMPLETE=1` the
//! expected rows are rewritten from the actual ones (review the diff!).

use std::path::Path;

use tokio_postgres::{Client, SimpleQueryMessage};

use super::{describe_error, wait_finished};

enum Record {
    Statement {
        sql: String,
        error: Option<String>,
    },
    Query {
        sql: String,
        sort: bool,
        expected: Vec<String>,
        expected_at: usize,
    },
    WaitFinished(String),
}

struct Located {
    line: usize,
    record: Record,
}

fn parse(text: &str) -> Vec<Located> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim_end();
        if line.trim().is_empty() || line.starts_with('#') {
            i += 1;
            continue;
        }
        let start = i + 1;
        let header: Vec<&str> = line.split_whitespace().collect();
        i += 1;
        let mut sql = Vec::new();
        while i < lines.len() && !lines[i].trim().is_empty() && lines[i].trim() != "----" {
            sql.push(lines[i]);
            i += 1;
        }
        let sql = sql.join("\n");
        let record = match header[0] {
            "statement" if header.get(1) == Some(&"ok") => Record::Statement { sql, error: None },
            "statement" if header.get(1) == Some(&"error") => Record::Statement {
                sql,
                error: Some(line.splitn(3, ' ').nth(2).unwrap_or("").trim().to_string()),
            },
            "query" => {
                let sort = header.contains(&"rowsort");
                let mut expected = Vec::new();
                let mut expected_at = i;
                if i < lines.len() && lines[i].trim() == "----" {
                    i += 1;
                    expected_at = i;
                    while i < lines.len() && !lines[i].trim().is_empty() {
                        expected.push(lines[i].trim_end().to_string());
                        i += 1;
                    }
                }
                Record::Query {
                    sql,
                    sort,
                    expected,
                    expected_at,
                }
            }
            "wait" if header.get(1) == Some(&"finished") => {
                Record::WaitFinished(header[2].to_string())
            }
            other => panic!("line {start}: unknown record {other}"),
        };
        out.push(Located {
            line: start,
            record,
        });
    }
    out
}

async fn query_rows(client: &Client, sql: &str) -> Result<Vec<String>, String> {
    let messages = client
        .simple_query(sql)
        .await
        .map_err(|e| describe_error(&e))?;
    Ok(messages
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(
                (0..r.len())
                    .map(|i| match r.get(i) {
                        None => "NULL".to_string(),
                        Some("") => "(empty)".to_string(),
                        Some(v) => v.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            _ => None,
        })
        .collect())
}

/// Runs one file against a server; panics at the first difference.
pub async fn run_file(path: &Path, client: &Client) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let data = super::data_dir();
    let complete = std::env::var("SLT_COMPLETE").is_ok();
    let mut rewrites: Vec<(usize, usize, Vec<String>)> = Vec::new();
    let name = path.display();
    for Located { line, record } in parse(&text) {
        match record {
            Record::Statement { sql, error } => {
                let sql = sql.replace("${DATA}", &data.display().to_string());
                let result = client.simple_query(&sql).await;
                match (result, error) {
                    (Ok(_), None) => {}
                    (Err(e), None) => panic!(
                        "{name}:{line}: statement failed: {}\n{sql}",
                        describe_error(&e)
                    ),
                    (Ok(_), Some(want)) => {
                        panic!("{name}:{line}: statement succeeded, expected error {want}\n{sql}")
                    }
                    (Err(e), Some(want)) => {
                        let got = describe_error(&e);
                        assert!(got.contains(&want), "{name}:{line}: expected error containing\n  {want}\ngot\n  {got}\n{sql}");
                    }
                }
            }
            Record::Query {
                sql,
                sort,
                expected,
                expected_at,
            } => {
                let sql = sql.replace("${DATA}", &data.display().to_string());
                let mut actual = query_rows(client, &sql)
                    .await
                    .unwrap_or_else(|e| panic!("{name}:{line}: query failed: {e}\n{sql}"));
                let mut expected: Vec<String> = expected
                    .iter()
                    .map(|e| e.replace("${DATA}", &data.display().to_string()))
                    .collect();
                if sort {
                    actual.sort();
                    expected.sort();
                }
                if complete {
                    rewrites.push((expected_at, expected.len(), actual));
                    continue;
                }
                if actual != expected {
                    panic!(
                        "{name}:{line}: results differ\n{sql}\n--- expected\n{}\n--- actual\n{}",
                        expected.join("\n"),
                        actual.join("\n")
                    );
                }
            }
            Record::WaitFinished(view) => wait_finished(client, &view).await,
        }
    }
    if complete && !rewrites.is_empty() {
        let mut lines: Vec<String> = text.lines().map(|l| l.to_string()).collect();
        for (at, len, rows) in rewrites.into_iter().rev() {
            lines.splice(at..at + len, rows);
        }
        std::fs::write(path, lines.join("\n") + "\n").expect("rewrite slt");
    }
}
