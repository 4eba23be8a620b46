//! The `sluice` binary: flags, logging, start the server.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use sluice::database::{Config, Database};
use sluice::dataflow::job::JobConfig;
use sluice::server::{AuthMethod, Server, ServerConfig};

/// jemalloc keeps freed memory for reuse: the large buffers of each
/// checkpoint do not fault in fresh zeroed pages every time, and the many
/// small allocations of state rows are cheaper than with the system
/// allocator.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's settings: freed pages go back to the system within a second
/// (the default is ten), by a background thread, so the memory the process
/// holds follows what the state cache allows rather than its past peaks.
#[export_name = "_rjem_malloc_conf"]
static MALLOC_CONF: ConfString =
    ConfString(c"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:1000".as_ptr());

/// A C string in a static (jemalloc reads `malloc_conf` as `const char *`).
#[repr(transparent)]
struct ConfString(*const std::ffi::c_char);

// SAFETY: it points to a string literal, never written.
unsafe impl Sync for ConfString {}

/// RocksDB and librdkafka allocate with the C library's malloc: by default
/// it keeps one arena per thread that ever allocated, and memory freed in
/// one is not reused by another. Two arenas keep that fragmentation small.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn limit_malloc_arenas() {
    const M_ARENA_MAX: i32 = -8;
    extern "C" {
        fn mallopt(param: i32, value: i32) -> i32;
    }
    // SAFETY: called first thing in main, before any other thread runs.
    unsafe {
        mallopt(M_ARENA_MAX, 2);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}

/// Sluice: a streaming SQL server. Connect with psql, declare sources and
/// materialized views in Flink SQL, query live results.
#[derive(Parser, Debug)]
#[command(name = "sluice", version)]
struct Args {
    /// Address to serve the Postgres protocol on.
    #[arg(long, env = "SLUICE_LISTEN", default_value = "127.0.0.1:5433")]
    listen: String,

    /// Directory for durable state (catalog, RocksDB).
    #[arg(long, env = "SLUICE_DATA_DIR", default_value = "./sluice-data")]
    data_dir: PathBuf,

    /// Parallel instances per job (default: the number of cores).
    #[arg(long)]
    parallelism: Option<usize>,

    /// Rows per batch at most (batch.size).
    #[arg(long, default_value_t = 8192)]
    batch_size: usize,

    /// How long a partial batch may wait for more rows (batch.linger), e.g. 10ms.
    #[arg(long, default_value = "10ms", value_parser = duration)]
    batch_linger: Duration,

    /// How often in-progress results are refreshed and watermarks forwarded, e.g. 100ms.
    #[arg(long, default_value = "100ms", value_parser = duration)]
    flush_interval: Duration,

    /// How often views checkpoint their state, views and source positions
    /// (exactly-once recovery), e.g. 1s; 0 turns checkpoints off.
    #[arg(long, default_value = "1s", value_parser = duration)]
    checkpoint_interval: Duration,

    /// Memory each view may use for state and rows that checkpoints have
    /// saved (the rest stays in RocksDB), e.g. 512MiB.
    #[arg(long, default_value = "1GiB", value_parser = sluice::options::parse_bytes)]
    state_cache: usize,

    /// How many dead letters (bad records) are kept for sluice.dead_letters.
    #[arg(long, default_value_t = 10_000)]
    dead_letters: usize,

    /// How clients prove who they are: `trust` (any user, no password;
    /// loopback addresses only) or `password` (SCRAM-SHA-256).
    #[arg(long, default_value = "trust", value_parser = auth_method)]
    auth: AuthMethod,

    /// Makes this user a superuser who logs in with the password in
    /// SLUICE_PASSWORD (created if new, its password set if not).
    #[arg(long)]
    superuser: Option<String>,

    /// The --superuser's password.
    #[arg(long, env = "SLUICE_PASSWORD", hide_env_values = true, hide = true)]
    password: Option<String>,

    /// PEM file of the server's TLS certificate chain (with --tls-key).
    #[arg(long)]
    tls_cert: Option<PathBuf>,

    /// PEM file of the TLS certificate's private key.
    #[arg(long)]
    tls_key: Option<PathBuf>,

    /// Refuses connections that do not use TLS.
    #[arg(long)]
    tls_required: bool,

    /// Log filter (tracing env-filter syntax); RUST_LOG overrides it.
    #[arg(long, default_value = "info")]
    log: String,
}

fn auth_method(text: &str) -> Result<AuthMethod, String> {
    match text {
        "trust" => Ok(AuthMethod::Trust),
        "password" => Ok(AuthMethod::Password),
        other => Err(format!("unknown method \"{other}\": use trust or password")),
    }
}

fn duration(text: &str) -> Result<Duration, String> {
    sluice::options::parse_duration(text)
}

/// Installs the SIGTERM and Ctrl-C handlers now (a signal that comes before
/// the server first waits for it is kept, not fatal) and returns what
/// resolves on the first of them.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
        let mut int = signal(SignalKind::interrupt()).expect("installing a SIGINT handler");
        async move {
            tokio::select! {
                _ = term.recv() => {},
                _ = int.recv() => {},
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn main() -> ExitCode {
    limit_malloc_arenas();
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&args.log));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .thread_stack_size(sluice::options::THREAD_STACK_BYTES)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sluice: could not start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut job = JobConfig::default();
    if let Some(p) = args.parallelism {
        job.parallelism = p.max(1);
    }
    job.batch_size = args.batch_size.max(1);
    job.linger = args.batch_linger;
    job.flush_interval = args.flush_interval.max(Duration::from_millis(1));
    job.state_cache_bytes = args.state_cache.max(1);
    let config = Config {
        data_dir: args.data_dir.clone(),
        job,
        dead_letter_capacity: args.dead_letters.max(1),
        checkpoint_interval: args.checkpoint_interval,
    };
    let result = runtime.block_on(async {
        let shutdown = shutdown_signal();
        let db = Database::open(config).await?;
        if let Some(name) = &args.superuser {
            let Some(password) = args.password.as_deref().filter(|p| !p.is_empty()) else {
                db.shutdown().await;
                return Err(sluice::error::Error::external(
                    "--superuser needs its password in the environment variable SLUICE_PASSWORD",
                ));
            };
            db.users().ensure_superuser(name, password)?;
            tracing::info!(user = %name, "superuser set");
        }
        let server_config = ServerConfig {
            listen: args.listen.clone(),
            auth: args.auth,
            tls_cert: args.tls_cert.clone(),
            tls_key: args.tls_key.clone(),
            tls_required: args.tls_required,
        };
        let server = match Server::bind(&server_config, db.clone()).await {
            Ok(s) => s,
            Err(e) => {
                db.shutdown().await;
                return Err(e);
            }
        };
        let addr = server.local_addr()?;
        tracing::info!(%addr, data_dir = %args.data_dir.display(), "sluice is listening");
        server.serve(shutdown).await?;
        db.shutdown().await;
        Ok::<_, sluice::error::Error>(())
    });
    runtime.shutdown_timeout(Duration::from_secs(2));
    match result {
        Ok(()) => {
            tracing::info!("sluice stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = %e, "sluice failed");
            eprintln!("sluice: {e}");
            ExitCode::FAILURE
        }
    }
}
