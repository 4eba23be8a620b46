//! The Postgres protocol handlers of one connection: startup, simple query,
//! extended query (parse / bind / describe / execute).

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;

use arrow::datatypes::DataType;
use async_trait::async_trait;
use futures::{stream, Sink, SinkExt};
use pgwire::api::auth::mechanism::AuthMechanismFactory;
use pgwire::api::auth::sasl::scram::ScramAuth;
use pgwire::api::auth::{
    protocol_negotiation, save_startup_parameters_to_metadata, AuthDriver, AuthOutcome,
    ServerParameterProvider, StartupHandler,
};
use pgwire::api::cancel::{CancelHandler, DefaultCancelHandler};
use pgwire::api::copy::CopyHandler;
use pgwire::api::copy::{send_copy_both_response, send_copy_in_response, send_copy_out_response};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{
    send_describe_response, send_execution_response, send_query_response, send_ready_for_query,
    ExtendedQueryHandler, SimpleQueryHandler,
};
use pgwire::api::results::{
    CopyResponse, DescribePortalResponse, FieldInfo, QueryResponse, Response, Tag,
};
use pgwire::api::stmt::QueryParser;
use pgwire::api::stmt::StoredStatement;
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, PgWireServerHandlers, Type};
use pgwire::api::{ConnectionHandle, ConnectionManager, PgWireConnectionState};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::copy::{CopyData, CopyDone, CopyFail};
use pgwire::messages::extendedquery::{
    Describe, Parse, ParseComplete, Sync as SyncMessage, TARGET_TYPE_BYTE_PORTAL,
};
use pgwire::messages::response::{EmptyQueryResponse, TransactionStatus};
use pgwire::messages::simplequery::Query;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use tokio::sync::Mutex;

use crate::copy::CopyIn;
use crate::database::Database;
use crate::error::Error;
use crate::frontend::parser::{self, Parsed};
use crate::query::Parameters;
use crate::server::encode::{encode_rows, field_infos, pg_type};
use crate::server::params::{arrow_type_of, decode_parameter};
use crate::session::{Description, Outcome, Session, TransactionState};

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
    session: Arc<Mutex<Session>>,
    parser: Arc<StatementParser>,
    /// Whether the server lets users in without passwords.
    trusted: bool,
    /// A `COPY ... FROM STDIN` receiving its data, and the data so far.
    copying: parking_lot::Mutex<Option<(CopyIn, Vec<u8>)>>,
    /// The names of the statements the client prepared (for `DEALLOCATE
    /// ALL`).
    prepared: parking_lot::Mutex<std::collections::HashSet<String>>,
    /// Statements `DEALLOCATE` forgot, to drop from the store once the
    /// statement is done.
    forgotten: parking_lot::Mutex<Vec<String>>,
}

impl Connection {
    pub fn new(db: Arc<Database>, trusted: bool) -> Self {
        let session = Arc::new(Mutex::new(Session::new(db.clone())));
        Connection {
            parser: Arc::new(StatementParser {
                session: session.clone(),
            }),
            session,
            trusted,
            copying: parking_lot::Mutex::new(None),
            prepared: parking_lot::Mutex::new(std::collections::HashSet::new()),
            forgotten: parking_lot::Mutex::new(Vec::new()),
        }
    }

    /// `DEALLOCATE`: the statements to forget (`forget` then drops them
    /// from the connection's store).
    fn deallocate(&self, name: Option<String>) -> PgWireResult<Response> {
        let mut prepared = self.prepared.lock();
        let tag = match name {
            Some(name) => {
                if !prepared.remove(&name) {
                    return Err(user_error(Error::user(
                        "26000",
                        format!("prepared statement \"{name}\" does not exist"),
                    )));
                }
                self.forgotten.lock().push(name);
                "DEALLOCATE"
            }
            None => {
                self.forgotten.lock().extend(prepared.drain());
                "DEALLOCATE ALL"
            }
        };
        Ok(Response::Execution(Tag::new(tag)))
    }

    /// Drops the statements `DEALLOCATE` forgot from the connection's store.
    fn forget<C>(&self, client: &C)
    where
        C: ClientPortalStore,
        C::PortalStore: PortalStore,
    {
        for name in self.forgotten.lock().drain(..) {
            client.portal_store().rm_statement(&name);
        }
    }

    /// The session, running as the user the client logged in as.
    async fn session<C: ClientInfo>(&self, client: &C) -> tokio::sync::MutexGuard<'_, Session> {
        let mut session = self.session.lock().await;
        if let Some(user) = client.metadata().get(pgwire::api::METADATA_USER) {
            session.set_user(user, self.trusted, client.pid_and_secret_key().0);
        }
        session
    }

    fn outcome_response(&self, outcome: Outcome, format: &Format) -> PgWireResult<Response> {
        if let Outcome::CopyIn(copy) = outcome {
            let columns = copy.columns.len();
            let format = (copy.options.format == crate::copy::Format::Binary) as i8;
            *self.copying.lock() = Some((copy, Vec::new()));
            // The column count is informative.
            return Ok(Response::CopyIn(CopyResponse::new(
                format,
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
        let rows = self
            .session(client)
            .await
            .copy_in(&copy, &data, super::copy::copy_in_binary)
            .await
            .map_err(user_error)?;
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
    pub startup: Arc<Startup>,
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
        self.startup.clone()
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        Arc::new(DefaultCancelHandler::new(self.cancels.clone()))
    }

    fn copy_handler(&self) -> Arc<impl CopyHandler> {
        self.connection.clone()
    }
}

/// How clients prove who they are (`--auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// Any user name, no password (loopback addresses only).
    Trust,
    /// A user of the catalog, with its password, over SCRAM-SHA-256.
    Password,
}

/// Startup and authentication, shared by every connection: the protocol
/// version, TLS if required, then trust or a SCRAM-SHA-256 exchange. Each
/// connection's cancel key is registered, so that a running statement (a
/// SUBSCRIBE) can be cancelled.
pub struct Startup {
    driver: AuthDriver<ServerParameters>,
    /// The SCRAM exchange against the catalog's users (`--auth password`).
    scram: Option<ScramAuth>,
    /// Plain connections are refused (`--tls-required`).
    tls_required: bool,
}

impl Startup {
    pub fn new(
        method: AuthMethod,
        users: Arc<crate::auth::Users>,
        tls_required: bool,
        cancels: Arc<ConnectionManager>,
    ) -> Self {
        let scram = (method == AuthMethod::Password)
            .then(|| ScramAuth::new(Arc::new(crate::auth::ScramUsers::new(users))));
        Startup {
            driver: AuthDriver::new(ServerParameters).with_connection_manager(cancels),
            scram,
            tls_required,
        }
    }

    async fn authenticated<C>(&self, client: &mut C, outcome: AuthOutcome) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match outcome {
            AuthOutcome::InProgress => Ok(()),
            AuthOutcome::Authenticated { final_message, .. } => {
                self.driver
                    .complete_authentication(client, final_message)
                    .await
            }
        }
    }
}

/// A FATAL error of the startup, which ends the connection.
fn fatal(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "FATAL".into(),
        code.into(),
        message,
    )))
}

/// Any failure of the password exchange reads the same, whether the user
/// exists or not (as in Postgres).
fn authentication_failed<C: ClientInfo>(client: &C, e: PgWireError) -> PgWireError {
    let user = client
        .metadata()
        .get(pgwire::api::METADATA_USER)
        .cloned()
        .unwrap_or_default();
    tracing::debug!(%user, error = %e, "authentication failed");
    fatal(
        crate::error::sqlstate::INVALID_PASSWORD,
        format!("password authentication failed for user \"{user}\""),
    )
}

struct ServerParameters;

impl ServerParameterProvider for ServerParameters {
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
        p.insert("scram_iterations".into(), "4096".into());
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
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                if self.tls_required && !client.is_secure() {
                    return Err(fatal(
                        crate::error::sqlstate::INVALID_AUTHORIZATION,
                        "connection refused: this server requires TLS (sslmode=require)".into(),
                    ));
                }
                match &self.scram {
                    None => self.driver.complete_authentication(client, None).await,
                    Some(scram) => {
                        let outcome = self
                            .driver
                            .begin_authentication(client, scram.create())
                            .await
                            .map_err(|e| authentication_failed(client, e))?;
                        self.authenticated(client, outcome).await
                    }
                }
            }
            PgWireFrontendMessage::PasswordMessageFamily(reply) => {
                let outcome = self
                    .driver
                    .advance_authentication(client, reply)
                    .await
                    .map_err(|e| authentication_failed(client, e))?;
                self.authenticated(client, outcome).await
            }
            _ => Ok(()),
        }
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
        Outcome::Fetched { schema, batch } => {
            let fields = Arc::new(field_infos(&schema, format));
            let rows = encode_rows(&[batch], &fields).map_err(user_error)?;
            let mut response = QueryResponse::new(fields, stream::iter(rows.into_iter().map(Ok)));
            response.set_command_tag("FETCH");
            Response::Query(response)
        }
        Outcome::CopyOut {
            schema,
            batches,
            options,
        } => Response::CopyOut(
            super::copy::copy_out(&schema, &batches, &options).map_err(user_error)?,
        ),
        Outcome::Subscribe(_) | Outcome::Deallocate(_) => {
            return Err(user_error(Error::internal(
                "a statement of the connection reached the plain response path",
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

/// Sends the notices a session has for its client.
async fn send_notices<C>(client: &mut C, session: &mut Session) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    for notice in session.take_notices() {
        let info = ErrorInfo::new(notice.severity.into(), notice.code.into(), notice.message);
        client
            .feed(PgWireBackendMessage::NoticeResponse(info.into()))
            .await?;
    }
    Ok(())
}

/// The transaction status ReadyForQuery reports: the session's own.
fn transaction_status(session: &Session) -> TransactionStatus {
    match session.transaction_state() {
        TransactionState::Idle => TransactionStatus::Idle,
        TransactionState::InBlock => TransactionStatus::Transaction,
        TransactionState::Failed => TransactionStatus::Error,
    }
}

#[async_trait]
impl SimpleQueryHandler for Connection {
    /// As pgwire's, but ReadyForQuery reports the session's transaction
    /// status (pgwire's own bookkeeping cannot tell a `ROLLBACK TO` that
    /// recovers a failed block), and the session's notices go first.
    async fn on_query<C>(&self, client: &mut C, query: Query) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if !matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
            return Err(PgWireError::NotReadyForQuery);
        }
        client.set_state(PgWireConnectionState::QueryInProgress);
        let cancel = match client.session_extensions().get::<Arc<ConnectionHandle>>() {
            Some(handle) => Some(handle.start_query().await),
            None => None,
        };
        let responses = match cancel {
            Some(cancel) => {
                match futures::future::select(
                    Box::pin(SimpleQueryHandler::do_query(self, client, &query.query)),
                    cancel,
                )
                .await
                {
                    futures::future::Either::Left((result, _)) => result,
                    futures::future::Either::Right(_) => Err(PgWireError::QueryCanceled),
                }
            }
            None => SimpleQueryHandler::do_query(self, client, &query.query).await,
        };
        let responses = match responses {
            Ok(r) => r,
            Err(e) => {
                self.session.lock().await.failed();
                vec![Response::Error(Box::new(e.into()))]
            }
        };
        for response in responses {
            match response {
                Response::EmptyQuery => {
                    client
                        .feed(PgWireBackendMessage::EmptyQueryResponse(
                            EmptyQueryResponse::new(),
                        ))
                        .await?;
                }
                Response::Query(results) => send_query_response(client, results, true).await?,
                Response::Execution(tag)
                | Response::TransactionStart(tag)
                | Response::TransactionEnd(tag) => send_execution_response(client, tag).await?,
                Response::Error(e) => {
                    client
                        .feed(PgWireBackendMessage::ErrorResponse((*e).into()))
                        .await?;
                }
                Response::CopyIn(result) => {
                    send_copy_in_response(client, result).await?;
                    client.set_state(PgWireConnectionState::CopyInProgress(false));
                }
                Response::CopyOut(result) => send_copy_out_response(client, result).await?,
                Response::CopyBoth(result) => {
                    send_copy_both_response(client, result).await?;
                    client.set_state(PgWireConnectionState::CopyInProgress(false));
                }
            }
        }
        self.forget(client);
        if !matches!(client.state(), PgWireConnectionState::CopyInProgress(_)) {
            client.set_state(PgWireConnectionState::ReadyForQuery);
            let status = transaction_status(&*self.session.lock().await);
            client.set_transaction_status(status);
            send_ready_for_query(client, status).await?;
        }
        Ok(())
    }

    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let Some(e) = super::connection::invalid_utf8(query) {
            return Err(user_error(e));
        }
        let statements = parser::parse(query).map_err(user_error)?;
        if statements.is_empty() {
            // Only comments: Postgres answers EmptyQueryResponse.
            return Ok(vec![Response::EmptyQuery]);
        }
        let mut session = self.session(client).await;
        let mut responses = Vec::with_capacity(statements.len());
        for parsed in &statements {
            // Like Postgres, a failing statement ends the query string.
            let result = session.execute(parsed, query, Parameters::default()).await;
            send_notices(client, &mut session).await?;
            match result {
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
                Ok(Outcome::Deallocate(name)) => match self.deallocate(name) {
                    Ok(r) => responses.push(r),
                    Err(e) => {
                        session.failed();
                        responses.push(Response::Error(Box::new(e.into())));
                        break;
                    }
                },
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
    /// The parameters' types as the client declared them (their OIDs in
    /// Parse); None where it left them to the server.
    pub declared: Vec<Option<Type>>,
    /// Their types as Sluice reads them: declared, else inferred, else
    /// unknown (text).
    pub parameters: Vec<Option<arrow::datatypes::DataType>>,
    pub columns: Option<arrow::datatypes::SchemaRef>,
}

impl Prepared {
    /// The Postgres type of parameter `i`: as declared, else as inferred,
    /// else text.
    fn parameter_type(&self, i: usize) -> Type {
        self.declared
            .get(i)
            .cloned()
            .flatten()
            .or_else(|| {
                self.parameters
                    .get(i)
                    .cloned()
                    .flatten()
                    .map(|t| pg_type(&t))
            })
            .unwrap_or(Type::TEXT)
    }

    /// The Arrow types of the declared parameters.
    fn declared_types(&self) -> Vec<Option<arrow::datatypes::DataType>> {
        self.declared
            .iter()
            .map(|t| t.as_ref().and_then(arrow_type_of))
            .collect()
    }
}

pub struct StatementParser {
    /// The connection's session: it describes statements (a FETCH's
    /// columns are its cursor's), and a statement that fails to parse fails
    /// its transaction block.
    session: Arc<Mutex<Session>>,
}

#[async_trait]
impl QueryParser for StatementParser {
    type Statement = Prepared;

    async fn parse_sql<C>(
        &self,
        _client: &C,
        sql: &str,
        types: &[Option<Type>],
    ) -> PgWireResult<Option<Prepared>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let declared: Vec<Option<Type>> = types
            .iter()
            .map(|t| t.clone().filter(|t| *t != Type::UNKNOWN && t.oid() != 0))
            .collect();
        let result = async {
            if let Some(e) = super::connection::invalid_utf8(sql) {
                return Err(e);
            }
            let mut all = parser::parse(sql)?;
            let parsed = match all.len() {
                0 => return Ok(None),
                1 => all.remove(0),
                _ => {
                    return Err(Error::syntax(
                        "cannot insert multiple commands into a prepared statement",
                    ))
                }
            };
            let declared_arrow: Vec<_> = declared
                .iter()
                .map(|t| t.as_ref().and_then(arrow_type_of))
                .collect();
            // Described by the connection's session: a FETCH's columns are
            // those of its cursor.
            let Description {
                parameters,
                columns,
            } = self
                .session
                .lock()
                .await
                .describe(&parsed, sql, &declared_arrow)
                .await?;
            Ok(Some(Prepared {
                sql: sql.to_string(),
                parsed: Arc::new(parsed),
                declared: declared.clone(),
                parameters,
                columns,
            }))
        }
        .await;
        result.map_err(|e| {
            if let Ok(mut session) = self.session.try_lock() {
                session.failed();
            }
            user_error(e)
        })
    }

    fn get_parameter_types(&self, stmt: &Prepared) -> PgWireResult<Vec<Type>> {
        let n = stmt.declared.len().max(stmt.parameters.len());
        Ok((0..n).map(|i| stmt.parameter_type(i)).collect())
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

    /// As pgwire's, and the statement's name is kept (for `DEALLOCATE ALL`).
    async fn on_parse<C>(&self, client: &mut C, message: Parse) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let name = message.name.clone().unwrap_or_default();
        match StoredStatement::parse(client, &message, self.query_parser()).await? {
            Some(statement) => client.portal_store().put_statement(Arc::new(statement)),
            None => client.portal_store().put_empty_statement(&name),
        }
        if !name.is_empty() {
            self.prepared.lock().insert(name);
        }
        client
            .send(PgWireBackendMessage::ParseComplete(ParseComplete::new()))
            .await?;
        Ok(())
    }

    /// As pgwire's; a portal it does not know may be a cursor (in Postgres
    /// cursors are portals; psycopg describes its server-side cursors so).
    async fn on_describe<C>(&self, client: &mut C, message: Describe) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let (TARGET_TYPE_BYTE_PORTAL, Some(name)) = (message.target_type, &message.name) {
            if client.portal_store().get_portal(name).is_none() {
                let schema = self.session.lock().await.cursor_schema(name);
                if let Some(schema) = schema {
                    let fields = field_infos(&schema, &Format::UnifiedText);
                    return send_describe_response(client, &DescribePortalResponse::new(fields))
                        .await;
                }
            }
        }
        self._on_describe(client, message).await
    }

    /// ReadyForQuery reports the session's transaction status.
    async fn on_sync<C>(&self, client: &mut C, _message: SyncMessage) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        client.portal_store().rm_portal("");
        self.forget(client);
        let status = transaction_status(&*self.session.lock().await);
        client.set_transaction_status(status);
        send_ready_for_query(client, status).await?;
        client.flush().await?;
        Ok(())
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
        let mut values = Vec::with_capacity(portal.parameter_len());
        for i in 0..portal.parameter_len() {
            let pg = prepared.parameter_type(i);
            let target = prepared
                .declared
                .get(i)
                .cloned()
                .flatten()
                .and_then(|t| arrow_type_of(&t))
                .or_else(|| prepared.parameters.get(i).cloned().flatten());
            let value = decode_parameter(
                portal.parameters[i].as_deref(),
                portal.parameter_format.is_binary(i),
                &pg,
                target.as_ref(),
            );
            match value {
                Ok(v) => values.push(v),
                Err(e) => {
                    self.session.lock().await.failed();
                    return Ok(Response::Error(Box::new(error_info(&e))));
                }
            }
        }
        // A declared numeric is read with the scale its value has.
        let declared = prepared
            .declared_types()
            .into_iter()
            .zip(values.iter().map(Some).chain(std::iter::repeat(None)))
            .map(|(t, v)| match (t, v) {
                (Some(DataType::Decimal128(..)), Some(v)) => Some(v.data_type()),
                (t, _) => t,
            })
            .collect();
        let params = Parameters { values, declared };
        let mut session = self.session(client).await;
        let result = session
            .execute(&prepared.parsed, &prepared.sql, params)
            .await;
        send_notices(client, &mut session).await?;
        match result {
            Ok(Outcome::Subscribe(sub)) => {
                drop(session);
                super::subscribe::stream(client, sub).await?;
                Err(user_error(Error::internal("a subscription ended")))
            }
            Ok(Outcome::Deallocate(name)) => self.deallocate(name).or_else(|e| {
                session.failed();
                Ok(Response::Error(Box::new(e.into())))
            }),
            Ok(outcome) => self.outcome_response(outcome, &portal.result_column_format),
            Err(e) => Ok(Response::Error(Box::new(error_info(&e)))),
        }
    }
}
