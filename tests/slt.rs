//! SQL behaviour: every `tests/slt/*.slt` file, each against a fresh server,
//! over the Postgres protocol.

mod common;

use common::TestServer;

macro_rules! slt {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let tmp = tempfile::tempdir().unwrap();
            let server = TestServer::start_in(&tmp.path().join("data"), &["--parallelism", "2"]);
            let client = server.client().await;
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/slt")
                .join(concat!(stringify!($name), ".slt"));
            common::slt::run_file(&path, &client).await;
        }
    )*};
}

slt!(windows, ddl, views, tables, joins, sinks, flink);
