//! SQL behaviour: every `tests/slt/*.slt` file, each against a fresh server,
//! over the Postgres protocol.

mod common;

use common::TestServer;

macro_rules! slt {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let server = TestServer::start();
            let client = server.client().await;
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/slt")
                .join(concat!(stringify!($name), ".slt"));
            common::slt::run_file(&path, &client).await;
        }
    )*};
}

slt!(windows, ddl);
