//! The Postgres wire server: a listener, one task per connection, a
//! connection limit, and a shutdown signal.
//!
//! Only this module names `pgwire`. `connection` runs one client's
//! connection (TLS, the startup, the message loop over a stream whose
//! query texts are checked to be UTF-8); `handler` speaks the protocol and
//! hands statements to the connection's session (COPY FROM STDIN
//! included); `encode` turns Arrow batches into Postgres rows; `copy`
//! writes and reads COPY data; `params`
//! reads bound parameters; `subscribe`
//! streams a SUBSCRIBE's rows as COPY data.

pub mod connection;
pub mod copy;
pub mod encode;
pub mod handler;
pub mod params;
pub mod subscribe;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use pgwire::tokio::tokio_rustls::rustls;
use pgwire::tokio::TlsAcceptor;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::database::Database;
use crate::error::{Error, Result};
pub use handler::AuthMethod;
use handler::{Connection, Handlers, Startup};

/// The version Sluice reports as `server_version`: clients such as psql pick
/// their catalog queries by it.
pub const SERVER_VERSION: &str = "15.0 (Sluice)";

/// Connections served at once; more wait in the accept backlog.
const MAX_CONNECTIONS: usize = 1000;

/// How the server meets its clients.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: String,
    pub auth: AuthMethod,
    /// PEM files of the certificate chain and its private key: TLS is
    /// offered when both are given.
    pub tls_cert: Option<std::path::PathBuf>,
    pub tls_key: Option<std::path::PathBuf>,
    /// Plain (not TLS) connections are refused.
    pub tls_required: bool,
}

pub struct Server {
    listener: TcpListener,
    db: Arc<Database>,
    tls: Option<TlsAcceptor>,
    startup: Arc<Startup>,
    cancels: Arc<pgwire::api::ConnectionManager>,
    /// Whether clients get in without passwords (`--auth trust`).
    trusted: bool,
}

impl Server {
    /// Listens as `config` says, after checking that it is safe: trust
    /// (no passwords) only on loopback addresses, passwords only with a
    /// user who can log in, TLS only with a certificate.
    pub async fn bind(config: &ServerConfig, db: Arc<Database>) -> Result<Server> {
        let addr = &config.listen;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| Error::external(format!("could not listen on {addr}: {e}")))?;
        let local = listener.local_addr()?;
        match config.auth {
            AuthMethod::Trust if !local.ip().is_loopback() => {
                return Err(Error::external(format!(
                    "refusing to listen on {local} without passwords: --auth trust lets anyone who reaches the address in as any user, so it is allowed on loopback addresses only; start with --auth password (and --superuser NAME with its password in SLUICE_PASSWORD)"
                )));
            }
            AuthMethod::Password if !db.users().any_can_log_in() => {
                return Err(Error::external(
                    "--auth password needs a user who can log in: start with --superuser NAME and its password in SLUICE_PASSWORD",
                ));
            }
            _ => {}
        }
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(tls_acceptor(cert, key)?),
            (None, None) if config.tls_required => {
                return Err(Error::external(
                    "--tls-required needs --tls-cert and --tls-key",
                ))
            }
            (None, None) => None,
            _ => return Err(Error::external("TLS needs both --tls-cert and --tls-key")),
        };
        let cancels = Arc::new(pgwire::api::ConnectionManager::new());
        let startup = Arc::new(Startup::new(
            config.auth,
            db.users().clone(),
            config.tls_required,
            cancels.clone(),
        ));
        Ok(Server {
            listener,
            db,
            tls,
            startup,
            cancels,
            trusted: config.auth == AuthMethod::Trust,
        })
    }

    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// Serves connections until `shutdown` completes.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<()> {
        let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        tokio::pin!(shutdown);
        loop {
            let permit = tokio::select! {
                _ = &mut shutdown => break,
                permit = limit.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            };
            let (socket, peer) = tokio::select! {
                _ = &mut shutdown => break,
                accepted = self.listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        continue;
                    }
                },
            };
            let _ = socket.set_nodelay(true);
            let handlers = Handlers {
                connection: Arc::new(Connection::new(self.db.clone(), self.trusted)),
                startup: self.startup.clone(),
                cancels: self.cancels.clone(),
            };
            let tls = self.tls.clone();
            tokio::spawn(async move {
                tracing::debug!(%peer, "connection opened");
                if let Err(e) = connection::serve(socket, tls, handlers).await {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                drop(permit);
            });
        }
        tracing::info!("stopped accepting connections");
        Ok(())
    }
}

/// The TLS acceptor of a certificate chain and its key, in PEM files.
fn tls_acceptor(cert: &std::path::Path, key: &std::path::Path) -> Result<TlsAcceptor> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|e| {
            Error::external(format!(
                "could not read \"{}\": {}",
                path.display(),
                crate::error::postgres_style(&e.to_string())
            ))
        })
    };
    let bad = |path: &std::path::Path, e: String| {
        Error::external(format!("could not read \"{}\" as PEM: {e}", path.display()))
    };
    let certs = CertificateDer::pem_slice_iter(&read(cert)?)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| bad(cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(bad(cert, "it holds no certificate".into()));
    }
    let key_der =
        PrivateKeyDer::from_pem_slice(&read(key)?).map_err(|e| bad(key, e.to_string()))?;
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| Error::external(format!("could not use the TLS certificate: {e}")))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
