//! The Postgres wire server: a listener, one task per connection, a
//! connection limit, and a shutdown signal.
//!
//! Only this module names `pgwire`. `handler` speaks the protocol and hands
//! statements to the connection's session (COPY FROM STDIN included);
//! `encode` turns Arrow batches into Postgres rows; `subscribe` streams a
//! SUBSCRIBE's rows as COPY data.

pub mod encode;
pub mod handler;
pub mod subscribe;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::database::Database;
use crate::error::{Error, Result};
use handler::{Connection, Handlers};

/// The version Sluice reports as `server_version`: clients such as psql pick
/// their catalog queries by it.
pub const SERVER_VERSION: &str = "15.0 (Sluice)";

/// Connections served at once; more wait in the accept backlog.
const MAX_CONNECTIONS: usize = 1000;

pub struct Server {
    listener: TcpListener,
    db: Arc<Database>,
}

impl Server {
    pub async fn bind(addr: &str, db: Arc<Database>) -> Result<Server> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| Error::external(format!("could not listen on {addr}: {e}")))?;
        Ok(Server { listener, db })
    }

    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// Serves connections until `shutdown` completes.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<()> {
        let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let cancels = Arc::new(pgwire::api::ConnectionManager::new());
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
                connection: Arc::new(Connection::new(self.db.clone())),
                cancels: cancels.clone(),
            };
            tokio::spawn(async move {
                tracing::debug!(%peer, "connection opened");
                if let Err(e) = pgwire::tokio::process_socket(socket, None, handlers).await {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                drop(permit);
            });
        }
        tracing::info!("stopped accepting connections");
        Ok(())
    }
}
