//! The Postgres protocol handlers of one connection: startup, simple query,
//! extended query (parse / bind / describe / execute).

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::{stream, Sink, SinkExt};
use pgwire::api::auth::{
    finish_authentication, protocol_negotiation, save_startup_parameters_to_metadata,
    ServerParameterProvider, StartupHandler,
};
use pgwire::api::cancel::{CancelHandler, DefaultCancelHandler};
use pgwire::api::copy::CopyHandler;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{CopyResponse, FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::ConnectionManager;
use pgwire::api::{ClientInfo, ClientPortalStore, PgWireServerHandlers, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::copy::{CopyData, CopyDone, CopyFail};
use pgwire::messages::startup::SecretKey;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use tokio::sync::Mutex;

use crate::database::Database;
use crate::dml::CopyIn;
use crate::error::Error;
use crate::frontend::parser::{self, Parsed};
use crate::server::encode::{decode_parameter, encode_rows, field_infos, pg_type};
use crate::session::{Description, Outcome, Session};

/// The Postgres error a Sluice error is sent as.
pub fn error_info(e: &Error) -> ErrorInfo {
    let mut info = ErrorInfo::new("ERROR".into(), e.sqlstate().into(), e.to_string());
    info.position = e.position().map(|p| p.to_string());
    info.hint = e.hint().map(|h| h.to_string());
    info
}

pub fn user_error(e: Error) -> PgWireError {
    PgWireError::UserError(Box::new(error_info(&e)))
}

/// Everything one connection needs.
pub struct Connection {
    session: Mutex<Session>,
    parser: Arc<StatementParser>,
    db: Arc<Database>,
    /// A `COPY ... FROM STDIN` receiving its data, and the data so far.
    copying: parking_lot::Mutex<Option<(CopyIn, Vec<u8>)>>,
}

impl Connection {
    pub fn new(db: Arc<Database>) -> Self {
        Connection {
            session: Mutex::new(Session::new(db.clone())),
            parser: Arc::new(StatementParser { db: db.clone() }),
            db,
            copying: parking_lot::Mutex::new(None),
        }
    }

    fn outcome_response(&self, outcome: Outcome, format: &Format) -> PgWireResult<Response> {
        if let Outcome::CopyIn(copy) = outcome {
            let columns = copy.columns.len();
            *self.copying.lock() = Some((copy, Vec::new()));
            // Text format; the column count is informative.
            return Ok(Response::CopyIn(CopyResponse::new(
                0,
                columns,
                stream::empty(),
            )));
        }
        outcome_response(outcome, format)
    }
}

#[async_trait]
impl CopyHandler for Connection {
    async fn on_copy_data<C>(&self, _client: &mut C, copy_data: CopyData) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let Some((_, data)) = self.copying.lock().as_mut() {
            data.extend_from_slice(&copy_data.data);
        }
        Ok(())
    }

    async fn on_copy_done<C>(&self, client: &mut C, _done: CopyDone) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let Some((copy, data)) = self.copying.lock().take() else {
            return Err(user_error(Error::internal(
                "COPY data without a COPY statement",
            )));
        };
        let rows = self.db.copy_in(&copy, &data).await.map_err(user_error)?;
        let tag = Tag::new("COPY").with_rows(rows);
        client
            .send(PgWireBackendMessage::CommandComplete(tag.into()))
            .await?;
        Ok(())
    }

    async fn on_copy_fail<C>(&self, _client: &mut C, fail: CopyFail) -> PgWireError
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.copying.lock().take();
        user_error(Error::user(
            crate::error::sqlstate::QUERY_CANCELED,
            format!("COPY was stopped by the client: {}", fail.message),
        ))
    }
}

/// The handlers of one connection (pgwire asks the factory for them).
pub struct Handlers {
    pub connection: Arc<Connection>,
    /// Every connection's cancel key, shared: a cancel request (psql's
    /// Ctrl-C) comes on a connection of its own.
    pub cancels: Arc<ConnectionManager>,
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.connection.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.connection.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        Arc::new(Startup {
            cancels: self.cancels.clone(),
        })
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        Arc::new(DefaultCancelHandler::new(self.cancels.clone()))
    }

    fn copy_handler(&self) -> Arc<impl CopyHandler> {
        self.connection.clone()
    }
}

/// The next connection's number (its "process id" for cancel requests).
static NEXT_PID: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(1);

/// Trust authentication: any user and database name, no password. Each
/// connection's cancel key is registered, so that a running statement (a
/// SUBSCRIBE) can be cancelled.
struct Startup {
    cancels: Arc<ConnectionManager>,
}

struct Parameters;

impl ServerParameterProvider for Parameters {
    fn server_parameters<C>(&self, client: &C) -> Option<HashMap<String, String>>
    where
        C: ClientInfo,
    {
        let mut p = HashMap::new();
        p.insert("server_version".into(), super::SERVER_VERSION.into());
        p.insert("server_encoding".into(), "UTF8".into());
        p.insert("client_encoding".into(), "UTF8".into());
        p.insert("DateStyle".into(), "ISO, MDY".into());
        p.insert("IntervalStyle".into(), "postgres".into());
        p.insert("TimeZone".into(), "UTC".into());
        p.insert("integer_datetimes".into(), "on".into());
        p.insert("standard_conforming_strings".into(), "on".into());
        p.insert("is_superuser".into(), "on".into());
        p.insert("default_transaction_read_only".into(), "off".into());
        p.insert("in_hot_standby".into(), "off".into());
        if let Some(user) = client.metadata().get(pgwire::api::METADATA_USER) {
            p.insert("session_authorization".into(), user.clone());
        }
        if let Some(app) = client
            .metadata()
            .get(pgwire::api::METADATA_APPLICATION_NAME)
        {
            p.insert("application_name".into(), app.clone());
        }
        Some(p)
    }
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let PgWireFrontendMessage::Startup(ref startup) = message {
            protocol_negotiation(client, startup).await?;
            save_startup_parameters_to_metadata(client, startup);
            // A key of its own (pgwire's default is the same for every
            // connection): a cancel request names the connection it stops.
            let pid = NEXT_PID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let secret = SecretKey::I32(rand::random());
            client.set_pid_and_secret_key(pid, secret.clone());
            let (handle, guard) = self.cancels.register(pid, secret);
            client.session_extensions().insert(handle);
            client.session_extensions().insert(guard);
            finish_authentication(client, &Parameters).await?;
        }
        Ok(())
    }
}

fn outcome_response(outcome: Outcome, format: &Format) -> PgWireResult<Response> {
    Ok(match outcome {
        Outcome::Rows { schema, batches } => {
            let fields = Arc::new(field_infos(&schema, format));
            let rows = encode_rows(&batches, &fields).map_err(user_error)?;
            Response::Query(QueryResponse::new(
                fields,
                stream::iter(rows.into_iter().map(Ok)),
            ))
        }
        Outcome::CopyIn(_) => {
            return Err(user_error(Error::internal(
                "COPY reached the plain response path",
            )))
        }
        Outcome::Subscribe(_) => {
            return Err(user_error(Error::internal(
                "SUBSCRIBE reached the plain response path",
            )))
        }
        Outcome::Command { tag, rows } => {
            let mut t = Tag::new(&tag);
            if let Some(n) = rows {
                t = t.with_rows(n);
            }
            match tag.as_str() {
                "BEGIN" => Response::TransactionStart(t),
                "COMMIT" | "ROLLBACK" => Response::TransactionEnd(t),
                _ => Response::Execution(t),
            }
        }
    })
}

#[async_trait]
impl SimpleQueryHandler for Connection {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let statements = parser::parse(query).map_err(user_error)?;
        let mut session = self.session.lock().await;
        let mut responses = Vec::with_capacity(statements.len());
        for parsed in &statements {
            // Like Postgres, a failing statement ends the query string.
            match session.execute(parsed, query, Vec::new()).await {
                Ok(Outcome::Subscribe(sub)) => {
                    if statements.len() > 1 {
                        return Err(user_error(Error::not_supported(
                            "SUBSCRIBE must be the only statement of its query",
                        )));
                    }
                    drop(session);
                    super::subscribe::stream(client, sub).await?;
                    return Ok(Vec::new());
                }
                Ok(outcome) => {
                    let copy = matches!(outcome, Outcome::CopyIn(_));
                    responses.push(self.outcome_response(outcome, &Format::UnifiedText)?);
                    if copy {
                        // The data comes next: nothing more runs now.
                        break;
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "statement failed");
                    responses.push(Response::Error(Box::new(error_info(&e))));
                    break;
                }
            }
        }
        Ok(responses)
    }
}

/// A prepared statement: parsed once, described once.
#[derive(Clone)]
pub struct Prepared {
    pub sql: String,
    pub parsed: Arc<Parsed>,
    pub parameters: Vec<Option<arrow::datatypes::DataType>>,
    pub columns: Option<arrow::datatypes::SchemaRef>,
}

pub struct StatementParser {
    db: Arc<Database>,
}

#[async_trait]
impl QueryParser for StatementParser {
    type Statement = Prepared;

    async fn parse_sql<C>(
        &self,
        _client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<Prepared>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let mut all = parser::parse(sql).map_err(user_error)?;
        let parsed = match all.len() {
            0 => return Ok(None),
            1 => all.remove(0),
            _ => {
                return Err(user_error(Error::syntax(
                    "cannot insert multiple commands into a prepared statement",
                )))
            }
        };
        let Description {
            parameters,
            columns,
        } = Session::new(self.db.clone())
            .describe(&parsed, sql)
            .await
            .map_err(user_error)?;
        Ok(Some(Prepared {
            sql: sql.to_string(),
            parsed: Arc::new(parsed),
            parameters,
            columns,
        }))
    }

    fn get_parameter_types(&self, stmt: &Prepared) -> PgWireResult<Vec<Type>> {
        Ok(stmt
            .parameters
            .iter()
            .map(|t| t.as_ref().map(pg_type).unwrap_or(Type::TEXT))
            .collect())
    }

    fn get_result_schema(
        &self,
        stmt: &Prepared,
        format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        Ok(match &stmt.columns {
            Some(schema) => field_infos(schema, format.unwrap_or(&Format::UnifiedBinary)),
            None => Vec::new(),
        })
    }
}

#[async_trait]
impl ExtendedQueryHandler for Connection {
    type Statement = Prepared;
    type QueryParser = StatementParser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        self.parser.clone()
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Prepared>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: pgwire::api::store::PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let prepared = &portal.statement.statement;
        let declared = &portal.statement.parameter_types;
        let mut params = Vec::with_capacity(portal.parameter_len());
        for i in 0..portal.parameter_len() {
            let planned = prepared.parameters.get(i).cloned().flatten();
            let pg = declared
                .get(i)
                .cloned()
                .flatten()
                .filter(|t| *t != Type::UNKNOWN)
                .unwrap_or_else(|| planned.as_ref().map(pg_type).unwrap_or(Type::TEXT));
            let value = decode_parameter(
                portal.parameters[i].as_deref(),
                portal.parameter_format.is_binary(i),
                &pg,
                planned.as_ref(),
            )
            .map_err(user_error)?;
            params.push(value);
        }
        let mut session = self.session.lock().await;
        match session
            .execute(&prepared.parsed, &prepared.sql, params)
            .await
        {
            Ok(Outcome::Subscribe(sub)) => {
                drop(session);
                super::subscribe::stream(client, sub).await?;
                Err(user_error(Error::internal("a subscription ended")))
            }
            Ok(outcome) => self.outcome_response(outcome, &portal.result_column_format),
            Err(e) => Ok(Response::Error(Box::new(error_info(&e)))),
        }
    }
}
