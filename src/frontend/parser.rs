//! Sluice's statement parser: sqlparser's `Parser` plus the statements and
//! clauses of Flink SQL (and a few of RisingWave) that sqlparser lacks.
//!
//! Statements are parsed once into [`Statement`] and then dispatched by the
//! session. Our own grammar covers `CREATE TABLE/SOURCE` with computed columns
//! and `WATERMARK FOR`, `CREATE MATERIALIZED VIEW ... [EMIT ON WINDOW CLOSE]`,
//! `DROP`, `SHOW`, `DESCRIBE`, `SET`; everything else is handed to sqlparser
//! and later planned by DataFusion.
//!
//! Flink's window TVF `TABLE(TUMBLE(TABLE t, ...))` does not parse in
//! sqlparser because of the inner `TABLE t` argument. We fix that on the token
//! stream (never on the text): the inner `TABLE` keyword token is dropped and
//! every other token keeps its original location, so error positions stay
//! right.

use sqlparser::ast;
use sqlparser::dialect::Dialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer, Word};

pub use crate::dataflow::plan::EmitMode;
use crate::error::{Error, Result};
use crate::frontend::dialect::SluiceDialect;

/// The dialect Sluice parses with: generic, so that both Flink's backquoted
/// identifiers and Postgres's `::` casts and `OPERATOR(...)` work, with
/// Postgres's `^`, `#` and select lists (see `frontend::dialect`).
pub fn dialect() -> &'static dyn Dialect {
    static DIALECT: SluiceDialect = SluiceDialect::new();
    &DIALECT
}

/// How deeply a statement may nest: expressions, parentheses, CASE,
/// subqueries, chains of operators (`1 + 1 + ...` is as deep as it is
/// long). Deeper statements get `54001 statement too complex` before any
/// tree of them is built, so no step that walks the tree (parse, plan,
/// optimize, run, drop) can run out of stack. Connection and dataflow
/// threads have stacks sized for this depth
/// ([`crate::options::THREAD_STACK_BYTES`]).
pub const MAX_NESTING: usize = 2048;

/// A parsed statement.
#[derive(Debug, Clone)]
pub enum Statement {
    /// `CREATE TABLE ... WITH ('connector' = ...)` or `CREATE SOURCE ...`.
    CreateSource(Box<CreateSource>),
    /// `CREATE MATERIALIZED VIEW name AS query`.
    CreateView(Box<CreateView>),
    /// `CREATE SINK name FROM view WITH (...)`.
    CreateSink(Box<CreateSink>),
    /// `CREATE [TEMPORARY] VIEW name [(columns)] AS query`: a logical view,
    /// a named query expanded where it is used.
    CreateLogicalView(Box<CreateLogicalView>),
    /// `SUBSCRIBE [TO] view`: the view's rows as they are committed.
    Subscribe { view: String },
    /// `EXPLAIN CREATE MATERIALIZED VIEW ...`.
    ExplainView(Box<CreateView>),
    Drop {
        kind: ObjectKind,
        name: String,
        if_exists: bool,
    },
    /// `SHOW TABLES`, `SHOW SOURCES`, `SHOW MATERIALIZED VIEWS`.
    ShowObjects(ObjectKind),
    /// `ALTER MATERIALIZED VIEW name PAUSE | RESUME [FROM SAVEPOINT s]`.
    AlterView { name: String, action: ViewAction },
    /// `CREATE SAVEPOINT name FOR MATERIALIZED VIEW view`.
    CreateSavepoint { name: String, view: String },
    /// `DROP SAVEPOINT [IF EXISTS] name`.
    DropSavepoint { name: String, if_exists: bool },
    /// `SHOW SAVEPOINTS`.
    ShowSavepoints,
    /// `EXECUTE STATEMENT SET BEGIN` or `BEGIN STATEMENT SET`: the INSERTs
    /// up to `END` start together.
    BeginStatementSet,
    /// `SHOW JOBS`: materialized views, sinks and INSERT jobs.
    ShowJobs,
    /// `STOP JOB 'name'` or `DROP JOB [IF EXISTS] name`: ends a sink's or an
    /// INSERT's job.
    StopJob { name: String, if_exists: bool },
    /// `DESCRIBE name`.
    Describe(String),
    /// `SET name = value`.
    SetVariable { name: String, value: String },
    /// `RESET name`, `RESET 'flink.option'`, `RESET [ALL]` (None).
    ResetVariable(Option<String>),
    /// `SHOW name`, `SHOW ALL`.
    ShowVariable(String),
    /// `BEGIN`, `COMMIT`, `ROLLBACK`, `SAVEPOINT`, `RELEASE`, `ROLLBACK TO`:
    /// transactions on ordinary tables.
    Transaction(TransactionOp),
    /// `CREATE USER | ROLE name [WITH] options`.
    CreateUser {
        name: String,
        if_not_exists: bool,
        options: crate::auth::UserOptions,
        /// `CREATE USER` may log in unless it says NOLOGIN; `CREATE ROLE`
        /// not unless it says LOGIN.
        login: bool,
    },
    /// `ALTER USER | ROLE name [WITH] options`.
    AlterUser {
        name: String,
        options: crate::auth::UserOptions,
    },
    /// `DROP USER | ROLE [IF EXISTS] name [, ...]`.
    DropUser { names: Vec<String>, if_exists: bool },
    /// `DEALLOCATE [PREPARE] name | ALL`: forgets prepared statements
    /// (None: all of them).
    Deallocate(Option<String>),
    /// `DECLARE name CURSOR [WITH HOLD] FOR query | SUBSCRIBE view`.
    DeclareCursor(Box<DeclareCursor>),
    /// `FETCH [direction] [FROM | IN] name [WITH (timeout = ...)]`, or
    /// `MOVE` (`fetch` false: the rows are skipped, not returned).
    Fetch {
        cursor: String,
        direction: Direction,
        fetch: bool,
        /// How long a FETCH from a subscription waits for rows (None: until
        /// there are some).
        timeout: Option<std::time::Duration>,
    },
    /// `CLOSE name | ALL` (None: all cursors).
    CloseCursor(Option<String>),
    /// Anything DataFusion runs: SELECT, VALUES, EXPLAIN SELECT, ...
    Query(Box<ast::Statement>),
}

/// `DECLARE name CURSOR ... FOR ...`.
#[derive(Debug, Clone)]
pub struct DeclareCursor {
    pub name: String,
    /// The statement's text.
    pub text: String,
    /// `WITH HOLD`: it outlives its transaction.
    pub hold: bool,
    pub source: CursorSource,
}

#[derive(Debug, Clone)]
pub enum CursorSource {
    Query(Box<ast::Statement>),
    /// `SUBSCRIBE [TO] view`: the view's changes, as they commit.
    Subscribe(String),
}

/// Where a FETCH or MOVE goes, as Postgres has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// `NEXT`, `n`, `ALL`, `FORWARD [n | ALL]` (None: all).
    Forward(Option<u64>),
    /// `PRIOR`, `BACKWARD [n | ALL]`, a negative count.
    Backward(Option<u64>),
    /// `ABSOLUTE n`, `FIRST` (1), `LAST` (-1).
    Absolute(i64),
    /// `RELATIVE n`.
    Relative(i64),
}

/// What `ALTER MATERIALIZED VIEW` does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ViewAction {
    /// Checkpoint, then stop reading; the rows stay queryable.
    Pause,
    /// Go on from the last checkpoint, or from a savepoint.
    Resume { savepoint: Option<String> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransactionOp {
    Begin,
    Commit,
    Rollback,
    /// `SAVEPOINT name`.
    Savepoint(String),
    /// `RELEASE [SAVEPOINT] name`.
    Release(String),
    /// `ROLLBACK [WORK | TRANSACTION] TO [SAVEPOINT] name`.
    RollbackTo(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    /// A source or table (Flink calls a Kafka-backed stream a table).
    Table,
    Source,
    MaterializedView,
    Sink,
    /// A logical view (`CREATE VIEW`).
    View,
}

impl ObjectKind {
    pub fn name(self) -> &'static str {
        match self {
            ObjectKind::View => "view",
            ObjectKind::Table => "table",
            ObjectKind::Source => "source",
            ObjectKind::MaterializedView => "materialized view",
            ObjectKind::Sink => "sink",
        }
    }
}

/// `CREATE TABLE name (columns, computed columns, WATERMARK) WITH (options)`.
#[derive(Debug, Clone)]
pub struct CreateSource {
    pub name: String,
    pub if_not_exists: bool,
    /// Columns in declaration order, physical and computed.
    pub columns: Vec<ColumnDecl>,
    pub watermark: Option<WatermarkDecl>,
    pub primary_key: Vec<String>,
    /// `PARTITIONED BY (a, b)`: the columns whose values name the
    /// directories a filesystem table's rows are written to, with their
    /// positions.
    pub partitioned_by: Vec<(String, Option<usize>)>,
    /// `WITH (...)` options, keys lowercased, in order.
    pub options: Vec<(String, String)>,
    /// Whether the column list was given at all (datagen may omit it).
    pub has_column_list: bool,
    /// 1-based position of the table name in the statement text.
    pub name_position: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct ColumnDecl {
    /// The column's SQL name: folded to lower case unless double-quoted.
    pub name: String,
    /// The name as the statement spells it, which is the field's name in
    /// the records (a JSON key): `itemName` reads the key `itemName`.
    pub declared: String,
    pub kind: ColumnKind,
    /// 1-based position of the column name in the statement text.
    pub position: Option<usize>,
}

#[derive(Debug, Clone)]
pub enum ColumnKind {
    Physical {
        data_type: ast::DataType,
        not_null: bool,
    },
    /// `name AS expr`.
    Computed(Box<ast::Expr>),
}

/// `WATERMARK FOR column AS expr`.
#[derive(Debug, Clone)]
pub struct WatermarkDecl {
    pub column: String,
    pub expr: ast::Expr,
    pub position: Option<usize>,
}

/// `CREATE MATERIALIZED VIEW name [(column, ...)] [WITH (options)] AS query
/// [EMIT ...]`.
#[derive(Debug, Clone)]
pub struct CreateView {
    pub name: String,
    pub if_not_exists: bool,
    pub options: Vec<(String, String)>,
    pub query: Box<ast::Query>,
    /// `CREATE MATERIALIZED VIEW name (a, b) AS ...`: new names of the
    /// query's first columns.
    pub columns: Vec<String>,
    pub emit: EmitMode,
    /// `EMIT EVERY interval`: the interval (the planner makes `emit` of it).
    pub emit_every: Option<ast::Expr>,
    /// The statement text, as persisted in the catalog.
    pub sql: String,
}

/// `CREATE SINK [IF NOT EXISTS] name FROM view WITH (options)`, or
/// `CREATE SINK [IF NOT EXISTS] name AS query WITH (options)`.
#[derive(Debug, Clone)]
pub struct CreateSink {
    pub name: String,
    pub if_not_exists: bool,
    /// The view whose rows it writes (empty for `AS query`).
    pub from: String,
    /// `AS query`: the query's text, and its 1-based position in the
    /// statement.
    pub query: Option<(String, Option<usize>)>,
    pub options: Vec<(String, String)>,
    /// 1-based positions of the sink's and the view's names.
    pub name_position: Option<usize>,
    pub from_position: Option<usize>,
}

/// `CREATE [TEMPORARY] VIEW [IF NOT EXISTS] name [(columns)] AS query`.
#[derive(Debug, Clone)]
pub struct CreateLogicalView {
    pub name: String,
    pub if_not_exists: bool,
    /// Names for the query's columns, if given.
    pub columns: Vec<String>,
    pub query: Box<ast::Query>,
    /// 1-based position of the view's name.
    pub name_position: Option<usize>,
}

/// A parsed statement with its text.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub statement: Statement,
    /// The text of this statement alone (for persistence and messages).
    pub text: String,
}

/// Parses `sql`, which may hold several statements separated by `;`.
pub fn parse(sql: &str) -> Result<Vec<Parsed>> {
    let tokens = Tokenizer::new(dialect(), sql)
        .tokenize_with_location()
        .map_err(|e| Error::from_parser(ParserError::TokenizerError(e.to_string()), sql))?;
    check_nesting(&tokens, sql)?;
    let tokens = session_partition_by(drop_inner_table_keyword(drop_system_time(
        split_type_brackets(fold_backquoted(tokens)),
    )));
    let mut parser = Parser::new(dialect())
        .with_recursion_limit(MAX_NESTING)
        .with_tokens_with_locations(tokens);
    let mut out = Vec::new();
    loop {
        while parser.consume_token(&Token::SemiColon) {}
        if parser.peek_token().token == Token::EOF {
            break;
        }
        let start = parser.peek_token().span.start;
        let statement = parse_statement(&mut parser, sql).map_err(|e| into_error(e, sql))?;
        let end = parser.peek_token().span.start;
        if matches!(statement, Statement::BeginStatementSet) {
            // `EXECUTE STATEMENT SET BEGIN INSERT ...`: the first INSERT
            // follows without a semicolon.
            let text = slice_between(sql, start, end, false);
            out.push(Parsed { statement, text });
            continue;
        }
        let token = parser.peek_token().token;
        if token != Token::SemiColon && token != Token::EOF {
            let found = parser.peek_token();
            return Err(
                Error::syntax(format!("syntax error at or near \"{}\"", found.token))
                    .at(location_to_pos(sql, found.span.start)),
            );
        }
        let text = slice_between(sql, start, end, token == Token::EOF);
        out.push(Parsed { statement, text });
    }
    Ok(out)
}

/// Parses a single statement; errors if `sql` holds none or several.
pub fn parse_one(sql: &str) -> Result<Parsed> {
    let mut all = parse(sql)?;
    match all.len() {
        1 => Ok(all.remove(0)),
        0 => Err(Error::syntax("empty statement")),
        _ => Err(Error::syntax("expected a single statement")),
    }
}

fn into_error(err: ParseFailure, sql: &str) -> Error {
    match err {
        ParseFailure::Parser(e) => Error::from_parser(e, sql),
        ParseFailure::Sluice(e) => e,
    }
}

/// Our parse functions fail either with a sqlparser error (positions as
/// line/column) or with a finished Sluice error.
enum ParseFailure {
    Parser(ParserError),
    Sluice(Error),
}

impl From<ParserError> for ParseFailure {
    fn from(e: ParserError) -> Self {
        ParseFailure::Parser(e)
    }
}

impl From<Error> for ParseFailure {
    fn from(e: Error) -> Self {
        ParseFailure::Sluice(e)
    }
}

type PResult<T> = std::result::Result<T, ParseFailure>;

fn location_to_pos(sql: &str, loc: sqlparser::tokenizer::Location) -> Option<usize> {
    crate::error::char_position(sql, loc.line as usize, loc.column as usize)
}

fn byte_offset(sql: &str, loc: sqlparser::tokenizer::Location) -> usize {
    let Some(pos) = location_to_pos(sql, loc) else {
        return sql.len();
    };
    sql.char_indices()
        .nth(pos - 1)
        .map(|(i, _)| i)
        .unwrap_or(sql.len())
}

fn slice_between(
    sql: &str,
    start: sqlparser::tokenizer::Location,
    end: sqlparser::tokenizer::Location,
    to_end: bool,
) -> String {
    let a = byte_offset(sql, start);
    let b = if to_end {
        sql.len()
    } else {
        byte_offset(sql, end)
    };
    sql.get(a..b.max(a)).unwrap_or("").trim().to_string()
}

/// Refuses statements that may nest deeper than [`MAX_NESTING`], judged on
/// the tokens. The bound is an upper one on the depth of the tree the
/// parser would build: within each comma-separated part of a parenthesis
/// (or bracket, or CASE ... END), every operator may add a level (a chain
/// `a + b + c` nests to the left), and each parenthesized group adds its
/// own depth plus one. Long flat lists (`IN (1, 2, ...)`, many columns,
/// many VALUES rows) stay shallow.
fn check_nesting(tokens: &[TokenWithSpan], sql: &str) -> Result<()> {
    /// One open parenthesis (or the statement itself): the operators of
    /// its current part, and the deepest group met in that part.
    #[derive(Default)]
    struct Level {
        operators: usize,
        deepest_group: usize,
    }
    let mut levels = vec![Level::default()];
    for token in tokens {
        let opens = matches!(token.token, Token::LParen | Token::LBracket)
            || is_keyword(&token.token, Keyword::CASE);
        let closes = matches!(token.token, Token::RParen | Token::RBracket)
            || is_keyword(&token.token, Keyword::END);
        let level = levels
            .last_mut()
            .expect("the statement's level is never popped");
        if opens {
            levels.push(Level::default());
        } else if closes {
            if levels.len() > 1 {
                let group = levels.pop().expect("more than one level");
                let depth = group.operators + group.deepest_group + 1;
                let parent = levels.last_mut().expect("the statement's level");
                parent.deepest_group = parent.deepest_group.max(depth);
            }
        } else if matches!(token.token, Token::Comma | Token::SemiColon)
            || [Keyword::WHEN, Keyword::THEN, Keyword::ELSE]
                .iter()
                .any(|k| is_keyword(&token.token, *k))
        {
            *level = Level::default();
        } else if is_operator(&token.token) {
            level.operators += 1;
        }
        let depth: usize = levels
            .iter()
            .map(|l| l.operators + l.deepest_group + 1)
            .sum();
        if depth > MAX_NESTING {
            return Err(too_complex().at(location_to_pos(sql, token.span.start)));
        }
    }
    Ok(())
}

/// `54001`: a statement nests too deeply to be run.
pub fn too_complex() -> Error {
    Error::user(
        crate::error::sqlstate::STATEMENT_TOO_COMPLEX,
        format!("statement too complex: it nests deeper than {MAX_NESTING} levels"),
    )
    .with_hint(
        "write long lists of alternatives as IN (...) or = ANY(array), and split long chains of operators",
    )
}

/// Tokens that may wrap what came before them in a new tree node: infix,
/// prefix and postfix operators, and the keywords that act as operators or
/// join relations one after the other.
fn is_operator(token: &Token) -> bool {
    match token {
        Token::Word(w) if w.quote_style.is_none() => matches!(
            w.keyword,
            Keyword::AND
                | Keyword::OR
                | Keyword::NOT
                | Keyword::XOR
                | Keyword::IS
                | Keyword::IN
                | Keyword::LIKE
                | Keyword::ILIKE
                | Keyword::SIMILAR
                | Keyword::RLIKE
                | Keyword::REGEXP
                | Keyword::BETWEEN
                | Keyword::OVERLAPS
                | Keyword::COLLATE
                | Keyword::AT
                | Keyword::DIV
                | Keyword::OPERATOR
                | Keyword::UNION
                | Keyword::EXCEPT
                | Keyword::INTERSECT
                | Keyword::MINUS
                | Keyword::JOIN
                | Keyword::ANY
                | Keyword::ALL
                | Keyword::SOME
                | Keyword::EXISTS
        ),
        Token::Word(_)
        | Token::Number(..)
        | Token::Char(_)
        | Token::SingleQuotedString(_)
        | Token::DoubleQuotedString(_)
        | Token::NationalStringLiteral(_)
        | Token::EscapedStringLiteral(_)
        | Token::HexStringLiteral(_)
        | Token::Placeholder(_)
        | Token::Whitespace(_)
        | Token::Comma
        | Token::SemiColon
        | Token::LParen
        | Token::RParen
        | Token::LBracket
        | Token::RBracket
        | Token::LBrace
        | Token::RBrace
        | Token::EOF => false,
        // A qualified name's dots do not nest.
        Token::Period => false,
        // Every other symbol: arithmetic, comparison, casts, subscripts,
        // JSON and Postgres operators.
        _ => true,
    }
}

/// Flink's backquoted identifiers (`` `dateTime` ``) quote a name that is
/// a keyword, and match the unquoted spelling, as in Flink. So they fold to
/// lower case as unquoted names do, and stay quoted (a keyword stays a
/// name): `` `dateTime` `` is `"datetime"`, the same column as `dateTime`.
/// Double-quoted names keep their case, as in Postgres.
fn fold_backquoted(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    tokens
        .into_iter()
        .map(|mut t| {
            if let Token::Word(w) = &t.token {
                if w.quote_style == Some('`') {
                    t.token = Token::make_word(&w.value.to_lowercase(), Some('"'));
                }
            }
            t
        })
        .collect()
}

/// A name as the statement spells it, before folding: the text of the
/// token at `span`, without its quotes.
fn declared_spelling(sql: &str, span: sqlparser::tokenizer::Span, word: &Word) -> String {
    if word.quote_style.is_none() {
        return word.value.clone();
    }
    let text = &sql[byte_offset(sql, span.start)..byte_offset(sql, span.end)];
    match text.chars().next() {
        Some('`') if text.len() >= 2 => text[1..text.len() - 1].replace("``", "`"),
        _ => word.value.clone(),
    }
}

/// A declared name: its SQL name and its spelling in the statement.
fn parse_declared_name(parser: &mut Parser, sql: &str) -> PResult<(String, ast::Ident)> {
    let tok = parser.peek_token();
    let ident = parser.parse_identifier()?;
    let spelled = match &tok.token {
        Token::Word(w) => declared_spelling(sql, tok.span, w),
        _ => ident.value.clone(),
    };
    let name = normalize_ident(&ident);
    // Kept as spelled, quoted only if the SQL name keeps its case.
    let quote_style = if name == spelled {
        ident.quote_style
    } else {
        None
    };
    Ok((
        name,
        ast::Ident {
            value: spelled,
            quote_style,
            span: ident.span,
        },
    ))
}

/// A column type: Flink's `ROW<name type, ...>` (or `ROW(...)`),
/// `ARRAY<type>` and `MAP<key, value>`, nested as deep as they go, or any
/// type sqlparser reads. A ROW field's name is kept as spelled, with its
/// quote style: [`crate::frontend::types::arrow_type`] folds it.
fn parse_column_type(parser: &mut Parser, sql: &str) -> PResult<ast::DataType> {
    let tok = parser.peek_token();
    let next = parser.peek_nth_token(1).token;
    let angle = next == Token::Lt;
    if is_word(&tok.token, "ROW") && (angle || next == Token::LParen) {
        parser.next_token();
        parser.next_token();
        let mut fields = Vec::new();
        if !close_type_bracket(parser, angle) {
            loop {
                let (_, name) = parse_declared_name(parser, sql)?;
                let field_type = parse_column_type(parser, sql)?;
                if parser.parse_keyword(Keyword::COMMENT) {
                    parser.parse_literal_string()?;
                }
                fields.push(ast::StructField {
                    field_name: Some(name),
                    field_type,
                    options: None,
                });
                if parser.consume_token(&Token::Comma) {
                    continue;
                }
                if close_type_bracket(parser, angle) {
                    break;
                }
                return Err(ParserError::ParserError(format!(
                    "expected , or {} after a ROW field, found {}",
                    if angle { ">" } else { ")" },
                    parser.peek_token().token
                ))
                .into());
            }
        }
        let kind = if angle {
            ast::StructBracketKind::AngleBrackets
        } else {
            ast::StructBracketKind::Parentheses
        };
        return Ok(ast::DataType::Struct(fields, kind));
    }
    if is_word(&tok.token, "ARRAY") && angle {
        parser.next_token();
        parser.next_token();
        let element = parse_column_type(parser, sql)?;
        if !close_type_bracket(parser, true) {
            return Err(ParserError::ParserError(format!(
                "expected > after ARRAY<type, found {}",
                parser.peek_token().token
            ))
            .into());
        }
        return Ok(ast::DataType::Array(ast::ArrayElemTypeDef::AngleBracket(
            Box::new(element),
        )));
    }
    if is_word(&tok.token, "MAP") && angle {
        parser.next_token();
        parser.next_token();
        let key = parse_column_type(parser, sql)?;
        parser.expect_token(&Token::Comma)?;
        let value = parse_column_type(parser, sql)?;
        if !close_type_bracket(parser, true) {
            return Err(ParserError::ParserError(format!(
                "expected > after MAP<key, value, found {}",
                parser.peek_token().token
            ))
            .into());
        }
        return Ok(ast::DataType::Map(Box::new(key), Box::new(value)));
    }
    Ok(parser.parse_data_type()?)
}

/// Consumes the `>` (or `)`) that closes a nested type. A `>>` closes two:
/// the second is put back as a `>` for the enclosing type.
fn close_type_bracket(parser: &mut Parser, angle: bool) -> bool {
    if !angle {
        return parser.consume_token(&Token::RParen);
    }
    parser.consume_token(&Token::Gt)
}

/// Splits the `>>` that closes two nested types (`ROW<a ARRAY<INT>>`) into
/// two `>`: inside `ROW<`, `ARRAY<` and `MAP<` it is never a shift.
fn split_type_brackets(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    let significant = |t: &TokenWithSpan| !matches!(t.token, Token::Whitespace(_));
    let mut out: Vec<TokenWithSpan> = Vec::with_capacity(tokens.len());
    let mut depth = 0usize;
    for tok in tokens {
        match tok.token {
            Token::Lt => {
                let opens = out.iter().rev().find(|t| significant(t)).is_some_and(|t| {
                    is_word(&t.token, "ROW")
                        || is_word(&t.token, "ARRAY")
                        || is_word(&t.token, "MAP")
                });
                if opens {
                    depth += 1;
                }
                out.push(tok);
            }
            Token::Gt if depth > 0 => {
                depth -= 1;
                out.push(tok);
            }
            Token::ShiftRight if depth >= 2 => {
                depth -= 2;
                let half = TokenWithSpan {
                    token: Token::Gt,
                    span: tok.span,
                };
                out.push(half.clone());
                out.push(half);
            }
            _ => out.push(tok),
        }
    }
    out
}

/// Drops the `TABLE` keyword in `TUMBLE(TABLE t, ...)` (and HOP, CUMULATE,
/// SESSION), Flink's way of passing a table to a window TVF.
fn drop_inner_table_keyword(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    let significant = |t: &TokenWithSpan| !matches!(t.token, Token::Whitespace(_));
    let mut out: Vec<TokenWithSpan> = Vec::with_capacity(tokens.len());
    for tok in tokens {
        if is_keyword(&tok.token, Keyword::TABLE) {
            let mut prev = out.iter().rev().filter(|t| significant(t));
            let paren = prev
                .next()
                .map(|t| t.token == Token::LParen)
                .unwrap_or(false);
            let func = prev
                .next()
                .map(|t| is_window_function_name(&t.token))
                .unwrap_or(false);
            if paren && func {
                continue;
            }
        }
        out.push(tok);
    }
    out
}

/// Drops Flink's temporal-join clause `FOR SYSTEM_TIME AS OF e.ts` after a
/// table name (sqlparser's generic dialect does not read it): a join with an
/// ordinary table is a lookup of the table's current rows either way (see
/// `dataflow/lookup_join.rs`).
fn drop_system_time(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    let significant = |t: &TokenWithSpan| !matches!(t.token, Token::Whitespace(_));
    let word = |t: &TokenWithSpan, w: &str| matches!(&t.token, Token::Word(x) if x.quote_style.is_none() && x.value.eq_ignore_ascii_case(w));
    let mut out = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        if word(&tokens[i], "FOR") {
            // The next significant tokens: SYSTEM_TIME AS OF name(.name)*.
            let next: Vec<usize> = (i + 1..tokens.len())
                .filter(|j| significant(&tokens[*j]))
                .take(3)
                .collect();
            let clause = next.len() == 3
                && word(&tokens[next[0]], "SYSTEM_TIME")
                && word(&tokens[next[1]], "AS")
                && word(&tokens[next[2]], "OF");
            if clause {
                let mut j = next[2] + 1;
                while j < tokens.len() && !significant(&tokens[j]) {
                    j += 1;
                }
                // The time attribute: a (qualified) column name.
                let mut expect_name = true;
                while j < tokens.len() {
                    match (&tokens[j].token, expect_name) {
                        (Token::Word(_), true) => expect_name = false,
                        (Token::Period, false) => expect_name = true,
                        _ => break,
                    }
                    j += 1;
                }
                out.push(TokenWithSpan {
                    token: Token::Whitespace(sqlparser::tokenizer::Whitespace::Space),
                    span: tokens[i].span,
                });
                i = j;
                continue;
            }
        }
        out.push(tokens[i].clone());
        i += 1;
    }
    out
}

/// The name of the argument `SESSION(TABLE t PARTITION BY k, ...)` becomes.
pub const PARTITION_BY_ARG: &str = "__partition_by";

/// Rewrites `SESSION(t PARTITION BY k, ...)` (after the inner `TABLE` is
/// dropped) into `SESSION(t, __partition_by(k), ...)`, which sqlparser
/// reads as a call; `PARTITION BY (a, b)` likewise. The new tokens take the
/// location of `PARTITION`.
fn session_partition_by(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    let significant = |t: &TokenWithSpan| !matches!(t.token, Token::Whitespace(_));
    let mut out: Vec<TokenWithSpan> = Vec::with_capacity(tokens.len() + 4);
    let mut iter = tokens.into_iter().peekable();
    while let Some(tok) = iter.next() {
        if !is_keyword(&tok.token, Keyword::PARTITION) {
            out.push(tok);
            continue;
        }
        let mut prev = out.iter().rev().filter(|t| significant(t));
        let after_table = matches!(prev.next().map(|t| &t.token), Some(Token::Word(_)))
            && prev.next().map(|t| t.token == Token::LParen).unwrap_or(false)
            && prev
                .next()
                .map(|t| matches!(&t.token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case("SESSION")))
                .unwrap_or(false);
        if !after_table {
            out.push(tok);
            continue;
        }
        // PARTITION [ws] BY [ws]
        let mut skipped = Vec::new();
        while iter.peek().map(|t| !significant(t)).unwrap_or(false) {
            skipped.extend(iter.next());
        }
        if !iter
            .peek()
            .map(|t| is_keyword(&t.token, Keyword::BY))
            .unwrap_or(false)
        {
            out.push(tok);
            out.extend(skipped);
            continue;
        }
        iter.next();
        while iter.peek().map(|t| !significant(t)).unwrap_or(false) {
            iter.next();
        }
        let at = |token: Token| TokenWithSpan {
            token,
            span: tok.span,
        };
        out.push(at(Token::Comma));
        out.push(at(Token::make_word(PARTITION_BY_ARG, None)));
        if iter
            .peek()
            .map(|t| t.token == Token::LParen)
            .unwrap_or(false)
        {
            // PARTITION BY (a, b): the parenthesized list is the call's.
            continue;
        }
        // PARTITION BY a or a.b: up to the next comma or parenthesis.
        out.push(at(Token::LParen));
        while let Some(t) = iter.next_if(|t| !matches!(t.token, Token::Comma | Token::RParen)) {
            out.push(t);
        }
        out.push(at(Token::RParen));
    }
    out
}

fn is_window_function_name(token: &Token) -> bool {
    match token {
        Token::Word(w) if w.quote_style.is_none() => matches!(
            w.value.to_ascii_uppercase().as_str(),
            "TUMBLE" | "HOP" | "CUMULATE" | "SESSION"
        ),
        _ => false,
    }
}

fn is_keyword(token: &Token, keyword: Keyword) -> bool {
    matches!(token, Token::Word(Word { keyword: k, .. }) if *k == keyword)
}

fn is_word(token: &Token, word: &str) -> bool {
    matches!(token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word))
}

/// `CREATE FUNCTION name AS 'class' [LANGUAGE ...]` (Flink's user-defined
/// functions, in Java, Scala or Python), or Postgres's CREATE FUNCTION:
/// refused, naming what to write instead.
fn refuse_create_function(parser: &mut Parser) -> Error {
    let _ = parser.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = parser
        .parse_object_name(false)
        .map(|n| normalize_object_name(&n))
        .unwrap_or_default();
    let class = match parser.parse_keyword(Keyword::AS) {
        true => parser.parse_literal_string().ok(),
        false => None,
    };
    match class {
        Some(class) => Error::not_supported(format!(
            "CREATE FUNCTION {name} AS '{class}': Sluice runs no Java, Scala or Python functions; write the function's logic as a SQL expression where it is used (Nexmark's count_char(s, 'c') is CHAR_LENGTH(s) - CHAR_LENGTH(REPLACE(s, 'c', ''))), or in a view (CREATE VIEW)"
        )),
        None => Error::not_supported(format!(
            "CREATE FUNCTION {name}: Sluice has no user-defined functions yet; write the logic as a SQL expression, or in a view (CREATE VIEW)"
        )),
    }
}

fn parse_statement(parser: &mut Parser, sql: &str) -> PResult<Statement> {
    let first = parser.peek_token().token;
    let second = parser.peek_nth_token(1).token;
    if is_keyword(&first, Keyword::CREATE) {
        parser.next_token();
        let or_replace = parser.parse_keywords(&[Keyword::OR, Keyword::REPLACE]);
        if or_replace {
            return Err(Error::not_supported("create or replace is not supported").into());
        }
        // TEMPORARY tables and views are Flink's spelling of a session's
        // objects; Sluice's are the server's, kept like any other.
        let temporary = parser.parse_keyword(Keyword::TEMPORARY);
        if parser.parse_keyword(Keyword::TABLE) {
            return parse_create_source(parser, sql).map(|c| Statement::CreateSource(Box::new(c)));
        }
        if parser.parse_keyword(Keyword::SOURCE) {
            return parse_create_source(parser, sql).map(|c| Statement::CreateSource(Box::new(c)));
        }
        if parser.parse_keywords(&[Keyword::MATERIALIZED, Keyword::VIEW]) {
            return parse_create_view(parser, sql).map(|v| Statement::CreateView(Box::new(v)));
        }
        let _ = parser.parse_keyword(Keyword::SYSTEM);
        if parser.parse_keyword(Keyword::FUNCTION) {
            return Err(refuse_create_function(parser).into());
        }
        if parser.parse_keyword(Keyword::VIEW) {
            let _ = temporary;
            let if_not_exists =
                parser.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
            let name_position = location_to_pos(sql, parser.peek_token().span.start);
            let name = object_name(parser)?;
            let mut columns = Vec::new();
            if parser.consume_token(&Token::LParen) {
                columns = parser
                    .parse_comma_separated(|p| p.parse_identifier())?
                    .iter()
                    .map(normalize_ident)
                    .collect();
                parser.expect_token(&Token::RParen)?;
            }
            parser.expect_keyword(Keyword::AS)?;
            let query = parser.parse_query()?;
            return Ok(Statement::CreateLogicalView(Box::new(CreateLogicalView {
                name,
                if_not_exists,
                columns,
                query,
                name_position,
            })));
        }
        if temporary {
            let t = parser.peek_token();
            return Err(Error::syntax(format!(
                "expected VIEW after CREATE TEMPORARY, found \"{}\"",
                t.token
            ))
            .at(location_to_pos(sql, t.span.start))
            .into());
        }
        if is_word(&parser.peek_token().token, "SINK") {
            parser.next_token();
            let if_not_exists =
                parser.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
            let name_position = location_to_pos(sql, parser.peek_token().span.start);
            let name = object_name(parser)?;
            if parser.parse_keyword(Keyword::AS) {
                // The query runs up to the statement's last WITH (...)
                // (sqlparser would take it for table hints).
                let start = parser.peek_token().span.start;
                let (mut depth, mut with_at, mut i) = (0i32, None, 0);
                loop {
                    let token = parser.peek_nth_token(i).token;
                    match token {
                        Token::EOF => break,
                        Token::SemiColon if depth == 0 => break,
                        Token::LParen => depth += 1,
                        Token::RParen => depth -= 1,
                        _ if depth == 0
                            && is_keyword(&token, Keyword::WITH)
                            && parser.peek_nth_token(i + 1).token == Token::LParen =>
                        {
                            with_at = Some(i)
                        }
                        _ => {}
                    }
                    i += 1;
                }
                let Some(with_at) = with_at else {
                    return Err(Error::syntax(
                        "expected WITH (...) after the query of CREATE SINK ... AS",
                    )
                    .at(location_to_pos(sql, start))
                    .into());
                };
                let end = parser.peek_nth_token(with_at).span.start;
                let query = slice_between(sql, start, end, false);
                for _ in 0..with_at {
                    parser.next_token();
                }
                parser.expect_keyword(Keyword::WITH)?;
                let options = parse_with_options(parser, sql)?;
                return Ok(Statement::CreateSink(Box::new(CreateSink {
                    name,
                    if_not_exists,
                    from: String::new(),
                    query: Some((query, location_to_pos(sql, start))),
                    options,
                    name_position,
                    from_position: None,
                })));
            }
            parser.expect_keyword(Keyword::FROM)?;
            let from_position = location_to_pos(sql, parser.peek_token().span.start);
            let from = object_name(parser)?;
            parser.expect_keyword(Keyword::WITH)?;
            let options = parse_with_options(parser, sql)?;
            return Ok(Statement::CreateSink(Box::new(CreateSink {
                name,
                if_not_exists,
                from,
                query: None,
                options,
                name_position,
                from_position,
            })));
        }
        if let Some(is_user) = user_or_role(parser) {
            let if_not_exists =
                parser.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
            let name = ident_name(parser)?;
            let options = user_options(parser, sql)?;
            return Ok(Statement::CreateUser {
                name,
                if_not_exists,
                login: options.login.unwrap_or(is_user),
                options,
            });
        }
        if parser.parse_keyword(Keyword::SAVEPOINT) {
            let name = object_name(parser)?;
            parser.expect_keyword(Keyword::FOR)?;
            parser.expect_keywords(&[Keyword::MATERIALIZED, Keyword::VIEW])?;
            let view = object_name(parser)?;
            return Ok(Statement::CreateSavepoint { name, view });
        }
        // Let sqlparser (and then the session) deal with other CREATE forms.
        parser.prev_token();
        return Ok(Statement::Query(Box::new(parser.parse_statement()?)));
    }
    if is_word(&first, "SUBSCRIBE") {
        parser.next_token();
        let _ = parser.parse_keyword(Keyword::TO);
        let view = object_name(parser)?;
        return Ok(Statement::Subscribe { view });
    }
    if is_keyword(&first, Keyword::EXPLAIN) && is_keyword(&second, Keyword::CREATE) {
        parser.next_token();
        parser.next_token();
        parser.expect_keywords(&[Keyword::MATERIALIZED, Keyword::VIEW])?;
        return parse_create_view(parser, sql).map(|v| Statement::ExplainView(Box::new(v)));
    }
    if is_keyword(&first, Keyword::ALTER) && is_keyword(&second, Keyword::MATERIALIZED) {
        parser.next_token();
        parser.expect_keywords(&[Keyword::MATERIALIZED, Keyword::VIEW])?;
        let name = object_name(parser)?;
        let action = if is_word(&parser.peek_token().token, "PAUSE") {
            parser.next_token();
            ViewAction::Pause
        } else if is_word(&parser.peek_token().token, "RESUME") {
            parser.next_token();
            let savepoint = if parser.parse_keywords(&[Keyword::FROM, Keyword::SAVEPOINT]) {
                Some(object_name(parser)?)
            } else {
                None
            };
            ViewAction::Resume { savepoint }
        } else {
            let t = parser.peek_token();
            return Err(Error::syntax(format!(
                "expected PAUSE or RESUME after ALTER MATERIALIZED VIEW {name}, found \"{}\"",
                t.token
            ))
            .at(location_to_pos(sql, t.span.start))
            .into());
        };
        return Ok(Statement::AlterView { name, action });
    }
    if is_keyword(&first, Keyword::ALTER)
        && (is_keyword(&second, Keyword::USER) || is_keyword(&second, Keyword::ROLE))
    {
        parser.next_token();
        parser.next_token();
        let name = ident_name(parser)?;
        let options = user_options(parser, sql)?;
        return Ok(Statement::AlterUser { name, options });
    }
    if is_keyword(&first, Keyword::DROP)
        && (is_keyword(&second, Keyword::USER) || is_keyword(&second, Keyword::ROLE))
    {
        parser.next_token();
        parser.next_token();
        let if_exists = parser.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
        let mut names = vec![ident_name(parser)?];
        while parser.consume_token(&Token::Comma) {
            names.push(ident_name(parser)?);
        }
        return Ok(Statement::DropUser { names, if_exists });
    }
    if is_keyword(&first, Keyword::DROP) && is_keyword(&second, Keyword::SAVEPOINT) {
        parser.next_token();
        parser.next_token();
        let if_exists = parser.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
        let name = object_name(parser)?;
        return Ok(Statement::DropSavepoint { name, if_exists });
    }
    // Flink's statement sets: `EXECUTE STATEMENT SET BEGIN ... END` and
    // `BEGIN STATEMENT SET; ... END;`.
    if is_keyword(&first, Keyword::EXECUTE) && is_word(&second, "STATEMENT") {
        parser.next_token();
        parser.next_token();
        parser.expect_keyword(Keyword::SET)?;
        parser.expect_keyword(Keyword::BEGIN)?;
        return Ok(Statement::BeginStatementSet);
    }
    if is_keyword(&first, Keyword::BEGIN) && is_word(&second, "STATEMENT") {
        parser.next_token();
        parser.next_token();
        parser.expect_keyword(Keyword::SET)?;
        return Ok(Statement::BeginStatementSet);
    }
    if is_keyword(&first, Keyword::DROP) && is_word(&second, "JOB") {
        parser.next_token();
        parser.next_token();
        let if_exists = parser.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
        let name = job_name(parser)?;
        return Ok(Statement::StopJob { name, if_exists });
    }
    if is_word(&first, "STOP") && is_word(&second, "JOB") {
        parser.next_token();
        parser.next_token();
        let name = job_name(parser)?;
        if parser.parse_keyword(Keyword::WITH) {
            let what = parser.next_token().token;
            return Err(Error::not_supported(format!(
                "STOP JOB ... WITH {what}: a job stops where it is; to keep a materialized view's state, CREATE SAVEPOINT s FOR MATERIALIZED VIEW v, or ALTER MATERIALIZED VIEW v PAUSE"
            ))
            .into());
        }
        return Ok(Statement::StopJob {
            name,
            if_exists: false,
        });
    }
    if is_keyword(&first, Keyword::DROP) {
        parser.next_token();
        let _ = parser.parse_keyword(Keyword::TEMPORARY);
        if parser.parse_keyword(Keyword::FUNCTION) {
            return Err(Error::not_supported(
                "DROP FUNCTION: Sluice has no user-defined functions",
            )
            .into());
        }
        let kind = if parser.parse_keywords(&[Keyword::MATERIALIZED, Keyword::VIEW]) {
            ObjectKind::MaterializedView
        } else if parser.parse_keyword(Keyword::VIEW) {
            ObjectKind::View
        } else if parser.parse_keyword(Keyword::TABLE) {
            ObjectKind::Table
        } else if parser.parse_keyword(Keyword::SOURCE) {
            ObjectKind::Source
        } else if is_word(&parser.peek_token().token, "SINK") {
            parser.next_token();
            ObjectKind::Sink
        } else {
            let t = parser.peek_token();
            return Err(Error::syntax(format!(
                "expected TABLE, SOURCE, SINK, VIEW or MATERIALIZED VIEW after DROP, found \"{}\"",
                t.token
            ))
            .at(location_to_pos(sql, t.span.start))
            .into());
        };
        let if_exists = parser.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
        let name = object_name(parser)?;
        // Postgres accepts CASCADE/RESTRICT; Sluice always restricts.
        if parser.parse_keyword(Keyword::CASCADE) {
            return Err(Error::not_supported(
                "drop ... cascade is not supported; drop dependent views first",
            )
            .into());
        }
        let _ = parser.parse_keyword(Keyword::RESTRICT);
        return Ok(Statement::Drop {
            kind,
            name,
            if_exists,
        });
    }
    if is_keyword(&first, Keyword::SHOW) {
        parser.next_token();
        if parser.parse_keyword(Keyword::TABLES) {
            return Ok(Statement::ShowObjects(ObjectKind::Table));
        }
        if is_word(&parser.peek_token().token, "SOURCES") {
            parser.next_token();
            return Ok(Statement::ShowObjects(ObjectKind::Source));
        }
        if parser.parse_keywords(&[Keyword::MATERIALIZED, Keyword::VIEWS]) {
            return Ok(Statement::ShowObjects(ObjectKind::MaterializedView));
        }
        if parser.parse_keyword(Keyword::VIEWS) {
            return Ok(Statement::ShowObjects(ObjectKind::View));
        }
        if is_word(&parser.peek_token().token, "SAVEPOINTS") {
            parser.next_token();
            return Ok(Statement::ShowSavepoints);
        }
        if is_word(&parser.peek_token().token, "JOBS") {
            parser.next_token();
            return Ok(Statement::ShowJobs);
        }
        if is_word(&parser.peek_token().token, "SINKS") {
            parser.next_token();
            return Ok(Statement::ShowObjects(ObjectKind::Sink));
        }
        // Flink quotes its option names: SHOW 'table.exec.state.ttl'.
        if let Token::SingleQuotedString(name) = parser.peek_token().token {
            parser.next_token();
            return Ok(Statement::ShowVariable(name.to_lowercase()));
        }
        let mut name = Vec::new();
        loop {
            match parser.next_token().token {
                Token::Word(w) => name.push(w.value.to_lowercase()),
                Token::Period => name.push(".".into()),
                Token::EOF | Token::SemiColon => {
                    parser.prev_token();
                    break;
                }
                other => {
                    return Err(
                        Error::syntax(format!("syntax error at or near \"{other}\"")).into(),
                    )
                }
            }
        }
        if name.is_empty() {
            return Err(Error::syntax("expected a name after SHOW").into());
        }
        // Postgres's multi-word names of two settings.
        let name = match name.join(" ").as_str() {
            "transaction isolation level" => "transaction_isolation".to_string(),
            "time zone" => "timezone".to_string(),
            _ => name.concat(),
        };
        return Ok(Statement::ShowVariable(name));
    }
    if is_keyword(&first, Keyword::DESCRIBE) || is_keyword(&first, Keyword::DESC) {
        parser.next_token();
        let _ = parser.parse_keyword(Keyword::TABLE);
        return Ok(Statement::Describe(object_name(parser)?));
    }
    if is_keyword(&first, Keyword::SET) {
        parser.next_token();
        // Flink's bare `SET;` lists the options set.
        if matches!(parser.peek_token().token, Token::SemiColon | Token::EOF) {
            return Ok(Statement::ShowVariable("all".into()));
        }
        return parse_set(parser);
    }
    if is_keyword(&first, Keyword::RESET) {
        parser.next_token();
        let name = match parser.next_token().token {
            Token::SingleQuotedString(name) => Some(name.to_lowercase()),
            Token::Word(w) if w.keyword == Keyword::ALL => None,
            Token::Word(w) => Some(w.value.to_lowercase()),
            Token::SemiColon | Token::EOF => {
                parser.prev_token();
                None
            }
            other => {
                return Err(Error::syntax(format!("syntax error at or near \"{other}\"")).into())
            }
        };
        return Ok(Statement::ResetVariable(name));
    }
    if is_keyword(&first, Keyword::BEGIN)
        || (is_keyword(&first, Keyword::START) && is_keyword(&second, Keyword::TRANSACTION))
    {
        skip_to_statement_end(parser);
        return Ok(Statement::Transaction(TransactionOp::Begin));
    }
    if is_keyword(&first, Keyword::COMMIT) || is_keyword(&first, Keyword::END) {
        skip_to_statement_end(parser);
        return Ok(Statement::Transaction(TransactionOp::Commit));
    }
    if is_keyword(&first, Keyword::ROLLBACK) || is_keyword(&first, Keyword::ABORT) {
        parser.next_token();
        let _ = parser.parse_one_of_keywords(&[Keyword::WORK, Keyword::TRANSACTION]);
        if parser.parse_keyword(Keyword::TO) {
            let _ = parser.parse_keyword(Keyword::SAVEPOINT);
            let name = ident_name(parser)?;
            return Ok(Statement::Transaction(TransactionOp::RollbackTo(name)));
        }
        skip_to_statement_end(parser);
        return Ok(Statement::Transaction(TransactionOp::Rollback));
    }
    if is_keyword(&first, Keyword::DECLARE) {
        let start = parser.peek_token().span.start;
        parser.next_token();
        let mut declare = parse_declare(parser, sql)?;
        declare.text = slice_between(sql, start, parser.peek_token().span.start, false);
        return Ok(Statement::DeclareCursor(Box::new(declare)));
    }
    if is_keyword(&first, Keyword::FETCH) || is_word(&first, "MOVE") {
        parser.next_token();
        let fetch = is_keyword(&first, Keyword::FETCH);
        let direction = parse_direction(parser)?;
        let _ = parser.parse_one_of_keywords(&[Keyword::FROM, Keyword::IN]);
        let cursor = ident_name(parser)?;
        let mut timeout = None;
        if fetch && parser.parse_keyword(Keyword::WITH) {
            for (key, value) in parse_with_options(parser, sql)? {
                match key.as_str() {
                    "timeout" => {
                        timeout = Some(crate::options::parse_duration(&value).map_err(|e| {
                            Error::invalid_parameter(format!(
                                "invalid value for the FETCH option \"timeout\": {e}"
                            ))
                        })?)
                    }
                    other => {
                        return Err(Error::invalid_parameter(format!(
                            "FETCH has no option \"{other}\"; it takes timeout"
                        ))
                        .into())
                    }
                }
            }
        }
        return Ok(Statement::Fetch {
            cursor,
            direction,
            fetch,
            timeout,
        });
    }
    if is_keyword(&first, Keyword::CLOSE) {
        parser.next_token();
        if parser.parse_keyword(Keyword::ALL) {
            return Ok(Statement::CloseCursor(None));
        }
        return Ok(Statement::CloseCursor(Some(ident_name(parser)?)));
    }
    if is_keyword(&first, Keyword::DEALLOCATE) {
        parser.next_token();
        let _ = parser.parse_keyword(Keyword::PREPARE);
        if parser.parse_keyword(Keyword::ALL) {
            return Ok(Statement::Deallocate(None));
        }
        return Ok(Statement::Deallocate(Some(ident_name(parser)?)));
    }
    if is_keyword(&first, Keyword::SAVEPOINT) {
        parser.next_token();
        let name = ident_name(parser)?;
        return Ok(Statement::Transaction(TransactionOp::Savepoint(name)));
    }
    if is_keyword(&first, Keyword::RELEASE) {
        parser.next_token();
        let _ = parser.parse_keyword(Keyword::SAVEPOINT);
        let name = ident_name(parser)?;
        return Ok(Statement::Transaction(TransactionOp::Release(name)));
    }
    Ok(Statement::Query(Box::new(parser.parse_statement()?)))
}

/// `DECLARE name [BINARY] [ASENSITIVE | INSENSITIVE] [[NO] SCROLL] CURSOR
/// [WITH | WITHOUT HOLD] FOR query | SUBSCRIBE [TO] view`, after DECLARE.
fn parse_declare(parser: &mut Parser, sql: &str) -> PResult<DeclareCursor> {
    let name = ident_name(parser)?;
    loop {
        let token = parser.peek_token();
        if parser.parse_keyword(Keyword::BINARY) {
            return Err(Error::not_supported("binary cursors are not supported")
                .at(location_to_pos(sql, token.span.start))
                .into());
        }
        if parser
            .parse_one_of_keywords(&[Keyword::ASENSITIVE, Keyword::INSENSITIVE, Keyword::SCROLL])
            .is_some()
            || parser.parse_keywords(&[Keyword::NO, Keyword::SCROLL])
        {
            continue;
        }
        break;
    }
    parser.expect_keyword(Keyword::CURSOR)?;
    let hold = if parser.parse_keywords(&[Keyword::WITH, Keyword::HOLD]) {
        true
    } else {
        let _ = parser.parse_keywords(&[Keyword::WITHOUT, Keyword::HOLD]);
        false
    };
    parser.expect_keyword(Keyword::FOR)?;
    let source = if is_word(&parser.peek_token().token, "SUBSCRIBE") {
        parser.next_token();
        let _ = parser.parse_keyword(Keyword::TO);
        CursorSource::Subscribe(object_name(parser)?)
    } else {
        CursorSource::Query(Box::new(ast::Statement::Query(parser.parse_query()?)))
    };
    Ok(DeclareCursor {
        name,
        text: String::new(),
        hold,
        source,
    })
}

/// A FETCH's or MOVE's direction (NEXT if none is given).
fn parse_direction(parser: &mut Parser) -> PResult<Direction> {
    let count = |parser: &mut Parser| -> PResult<Option<i64>> {
        let negative = parser.consume_token(&Token::Minus);
        match parser.peek_token().token {
            Token::Number(n, _) => {
                parser.next_token();
                let n: i64 = n
                    .parse()
                    .map_err(|_| Error::syntax(format!("invalid count \"{n}\"")))?;
                Ok(Some(if negative { -n } else { n }))
            }
            _ if negative => Err(Error::syntax("expected a count after -").into()),
            _ => Ok(None),
        }
    };
    let signed = |n: i64| {
        if n < 0 {
            Direction::Backward(Some(n.unsigned_abs()))
        } else {
            Direction::Forward(Some(n as u64))
        }
    };
    if parser.parse_keyword(Keyword::NEXT) {
        return Ok(Direction::Forward(Some(1)));
    }
    if parser.parse_keyword(Keyword::PRIOR) {
        return Ok(Direction::Backward(Some(1)));
    }
    if parser.parse_keyword(Keyword::FIRST) {
        return Ok(Direction::Absolute(1));
    }
    if parser.parse_keyword(Keyword::LAST) {
        return Ok(Direction::Absolute(-1));
    }
    if parser.parse_keyword(Keyword::ABSOLUTE) {
        let n = count(parser)?.ok_or_else(|| Error::syntax("expected a count after ABSOLUTE"))?;
        return Ok(Direction::Absolute(n));
    }
    if parser.parse_keyword(Keyword::RELATIVE) {
        let n = count(parser)?.ok_or_else(|| Error::syntax("expected a count after RELATIVE"))?;
        return Ok(Direction::Relative(n));
    }
    if parser.parse_keyword(Keyword::ALL) {
        return Ok(Direction::Forward(None));
    }
    if parser.parse_keyword(Keyword::FORWARD) {
        if parser.parse_keyword(Keyword::ALL) {
            return Ok(Direction::Forward(None));
        }
        return Ok(count(parser)?
            .map(signed)
            .unwrap_or(Direction::Forward(Some(1))));
    }
    if parser.parse_keyword(Keyword::BACKWARD) {
        if parser.parse_keyword(Keyword::ALL) {
            return Ok(Direction::Backward(None));
        }
        return Ok(match count(parser)? {
            Some(n) => signed(-n),
            None => Direction::Backward(Some(1)),
        });
    }
    Ok(count(parser)?
        .map(signed)
        .unwrap_or(Direction::Forward(Some(1))))
}

/// `USER` (true) or `ROLE` (false) after CREATE, consumed.
fn user_or_role(parser: &mut Parser) -> Option<bool> {
    if parser.parse_keyword(Keyword::USER) {
        Some(true)
    } else if parser.parse_keyword(Keyword::ROLE) {
        Some(false)
    } else {
        None
    }
}

/// A name that is one identifier (a role, a savepoint), folded to lower
/// case unless quoted.
fn ident_name(parser: &mut Parser) -> PResult<String> {
    Ok(normalize_ident(&parser.parse_identifier()?))
}

/// The options of `CREATE` / `ALTER USER`: `[WITH] SUPERUSER | NOSUPERUSER
/// | LOGIN | NOLOGIN | [ENCRYPTED] PASSWORD 'text' | PASSWORD NULL ...`.
fn user_options(parser: &mut Parser, sql: &str) -> PResult<crate::auth::UserOptions> {
    let mut options = crate::auth::UserOptions::default();
    let _ = parser.parse_keyword(Keyword::WITH);
    loop {
        let token = parser.peek_token();
        let word = match &token.token {
            Token::EOF | Token::SemiColon => return Ok(options),
            Token::Word(w) if w.quote_style.is_none() => w.value.to_ascii_uppercase(),
            other => {
                return Err(
                    Error::syntax(format!("syntax error at or near \"{other}\""))
                        .at(location_to_pos(sql, token.span.start))
                        .into(),
                )
            }
        };
        parser.next_token();
        match word.as_str() {
            "SUPERUSER" => options.superuser = Some(true),
            "NOSUPERUSER" => options.superuser = Some(false),
            "LOGIN" => options.login = Some(true),
            "NOLOGIN" => options.login = Some(false),
            "ENCRYPTED" | "PASSWORD" => {
                if word == "ENCRYPTED" {
                    parser.expect_keyword(Keyword::PASSWORD)?;
                }
                options.password = Some(if parser.parse_keyword(Keyword::NULL) {
                    None
                } else {
                    Some(parser.parse_literal_string()?)
                });
            }
            other => {
                return Err(Error::not_supported(format!(
                    "role option {other} is not supported; Sluice's users have a password, LOGIN and SUPERUSER"
                ))
                .at(location_to_pos(sql, token.span.start))
                .into())
            }
        }
    }
}

fn skip_to_statement_end(parser: &mut Parser) {
    loop {
        match parser.next_token().token {
            Token::EOF | Token::SemiColon => {
                parser.prev_token();
                return;
            }
            _ => {}
        }
    }
}

/// An object name as Sluice stores it: unquoted parts lowercased, quoted
/// parts kept, schema qualifiers `public.` dropped.
fn object_name(parser: &mut Parser) -> PResult<String> {
    let name = parser.parse_object_name(false)?;
    Ok(normalize_object_name(&name))
}

pub fn normalize_object_name(name: &ast::ObjectName) -> String {
    let parts: Vec<String> = name
        .0
        .iter()
        .filter_map(|p| p.as_ident().map(normalize_ident))
        .collect();
    match parts.as_slice() {
        [schema, rest @ ..]
            if !rest.is_empty()
                && (schema == "public" || schema == "sluice")
                && rest.len() == 1 =>
        {
            if schema == "sluice" {
                format!("sluice.{}", rest[0])
            } else {
                rest[0].clone()
            }
        }
        _ => parts.join("."),
    }
}

/// Unquoted identifiers are case-insensitive (folded to lowercase, as
/// Postgres does); quoted ones keep their case.
pub fn normalize_ident(ident: &ast::Ident) -> String {
    if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_lowercase()
    }
}

fn parse_set(parser: &mut Parser) -> PResult<Statement> {
    // SET [SESSION | LOCAL] name { = | TO } value
    let _ = parser.parse_one_of_keywords(&[Keyword::SESSION, Keyword::LOCAL]);
    // SET [SESSION CHARACTERISTICS AS] TRANSACTION ISOLATION LEVEL ...
    // (JDBC's setTransactionIsolation).
    let characteristics = parser.parse_keywords(&[Keyword::CHARACTERISTICS, Keyword::AS]);
    if parser.parse_keyword(Keyword::TRANSACTION) {
        return Ok(Statement::SetVariable {
            name: if characteristics {
                "default_transaction_isolation".into()
            } else {
                "transaction_isolation".into()
            },
            value: isolation_level(parser)?,
        });
    }
    if parser.parse_keywords(&[Keyword::TIME, Keyword::ZONE]) {
        let value = set_value(parser)?;
        return Ok(Statement::SetVariable {
            name: "timezone".into(),
            value,
        });
    }
    // Flink quotes its option names: SET 'execution.checkpointing.interval' = '10s'.
    let name = match parser.peek_token().token {
        Token::SingleQuotedString(quoted) => {
            parser.next_token();
            quoted.to_lowercase()
        }
        _ => parser
            .parse_object_name(false)?
            .0
            .iter()
            .filter_map(|p| p.as_ident().map(|i| i.value.to_lowercase()))
            .collect::<Vec<_>>()
            .join("."),
    };
    if !parser.consume_token(&Token::Eq) && !parser.parse_keyword(Keyword::TO) {
        let t = parser.peek_token();
        return Err(ParserError::ParserError(format!(
            "Expected: = or TO, found: {} at {}",
            t.token, t.span.start
        ))
        .into());
    }
    let value = set_value(parser)?;
    Ok(Statement::SetVariable { name, value })
}

/// `ISOLATION LEVEL READ COMMITTED | ...` (and `READ WRITE`, `READ ONLY`,
/// which change nothing): the level, lower case.
fn isolation_level(parser: &mut Parser) -> PResult<String> {
    let mut level = "read committed".to_string();
    loop {
        if parser.parse_keywords(&[Keyword::ISOLATION, Keyword::LEVEL]) {
            let mut words = Vec::new();
            while let Token::Word(w) = parser.peek_token().token {
                if w.keyword == Keyword::NoKeyword && w.quote_style.is_some() {
                    break;
                }
                words.push(w.value.to_lowercase());
                parser.next_token();
                if words.len() == 2 || words == ["serializable"] {
                    break;
                }
            }
            level = words.join(" ");
        } else if parser.parse_keywords(&[Keyword::READ, Keyword::WRITE])
            || parser.parse_keywords(&[Keyword::READ, Keyword::ONLY])
            || parser.parse_keywords(&[Keyword::NOT, Keyword::DEFERRABLE])
            || parser.parse_keyword(Keyword::DEFERRABLE)
        {
        } else {
            break;
        }
        let _ = parser.consume_token(&Token::Comma);
    }
    if !matches!(
        level.as_str(),
        "read committed" | "read uncommitted" | "repeatable read" | "serializable"
    ) {
        return Err(Error::syntax(format!("unknown isolation level \"{level}\"")).into());
    }
    Ok(level)
}

/// A SET value: a literal, a word, or a comma-separated list of them.
fn set_value(parser: &mut Parser) -> PResult<String> {
    let mut parts = Vec::new();
    loop {
        let tok = parser.next_token();
        let text = match tok.token {
            Token::SingleQuotedString(s) | Token::DoubleQuotedString(s) => s,
            Token::Number(n, _) => n,
            Token::Minus => {
                let next = parser.next_token();
                format!("-{}", next.token)
            }
            Token::Word(w) => w.value,
            other => {
                return Err(Error::syntax(format!("syntax error at or near \"{other}\"")).into())
            }
        };
        parts.push(text);
        if !parser.consume_token(&Token::Comma) {
            break;
        }
    }
    Ok(parts.join(", "))
}

fn parse_create_source(parser: &mut Parser, sql: &str) -> PResult<CreateSource> {
    let if_not_exists = parser.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name_position = location_to_pos(sql, parser.peek_token().span.start);
    let name = object_name(parser)?;
    let mut columns = Vec::new();
    let mut watermark = None;
    let mut primary_key = Vec::new();
    let has_column_list = parser.consume_token(&Token::LParen);
    if has_column_list {
        loop {
            if parser.consume_token(&Token::RParen) {
                break;
            }
            let tok = parser.peek_token();
            if is_word(&tok.token, "WATERMARK") {
                parser.next_token();
                parser.expect_keyword(Keyword::FOR)?;
                let column_tok = parser.peek_token();
                let column = normalize_ident(&parser.parse_identifier()?);
                parser.expect_keyword(Keyword::AS)?;
                let expr = parser.parse_expr()?;
                if watermark.is_some() {
                    return Err(Error::syntax("a table can have only one WATERMARK clause")
                        .at(location_to_pos(sql, tok.span.start))
                        .into());
                }
                watermark = Some(WatermarkDecl {
                    column,
                    expr,
                    position: location_to_pos(sql, column_tok.span.start),
                });
            } else if is_keyword(&tok.token, Keyword::PRIMARY) {
                parser.next_token();
                parser.expect_keyword(Keyword::KEY)?;
                parser.expect_token(&Token::LParen)?;
                primary_key = parser
                    .parse_comma_separated(|p| p.parse_identifier())?
                    .iter()
                    .map(normalize_ident)
                    .collect();
                parser.expect_token(&Token::RParen)?;
                // Flink requires NOT ENFORCED; accept it either way.
                let _ = parser.parse_keywords(&[Keyword::NOT, Keyword::ENFORCED]);
            } else {
                let (column, key) = parse_column(parser, sql)?;
                if key {
                    primary_key = vec![column.name.clone()];
                }
                columns.push(column);
            }
            if parser.consume_token(&Token::Comma) {
                continue;
            }
            parser.expect_token(&Token::RParen)?;
            break;
        }
    }
    if parser.parse_keyword(Keyword::COMMENT) {
        parser.parse_literal_string()?;
    }
    let mut partitioned_by = Vec::new();
    if parser.parse_keywords(&[Keyword::PARTITIONED, Keyword::BY]) {
        parser.expect_token(&Token::LParen)?;
        loop {
            let position = location_to_pos(sql, parser.peek_token().span.start);
            let (column, _) = parse_declared_name(parser, sql)?;
            partitioned_by.push((column, position));
            if !parser.consume_token(&Token::Comma) {
                break;
            }
        }
        parser.expect_token(&Token::RParen)?;
    }
    let options = if parser.parse_keyword(Keyword::WITH) {
        current_options(parse_with_options(parser, sql)?)
    } else {
        Vec::new()
    };
    Ok(CreateSource {
        name,
        if_not_exists,
        columns,
        watermark,
        primary_key,
        partitioned_by,
        options,
        has_column_list,
        name_position,
    })
}

/// Flink's legacy options of a filesystem table (before Flink 1.11;
/// Nexmark's q13 writes them) as the current ones: `connector.type`,
/// `connector.path`, `format.type` and the CSV format's. Version and
/// schema-derivation options say nothing here and go; any other legacy
/// option stays, to be refused by name.
fn current_options(options: Vec<(String, String)>) -> Vec<(String, String)> {
    let legacy_filesystem = options
        .iter()
        .any(|(k, v)| k == "connector.type" && v.eq_ignore_ascii_case("filesystem"));
    if !legacy_filesystem {
        return options;
    }
    options
        .into_iter()
        .filter_map(|(key, value)| {
            let current = match key.as_str() {
                "connector.type" => "connector",
                "connector.path" => "path",
                "format.type" => "format",
                "format.field-delimiter" => "csv.field-delimiter",
                "format.quote-character" => "csv.quote-character",
                "format.ignore-first-line" => "csv.ignore-first-line",
                "connector.property-version"
                | "format.property-version"
                | "format.derive-schema" => return None,
                _ => return Some((key, value)),
            };
            Some((current.to_string(), value))
        })
        .collect()
}

/// A job's name: a string (Flink's job ids are) or a name.
fn job_name(parser: &mut Parser) -> PResult<String> {
    if let Token::SingleQuotedString(name) = parser.peek_token().token {
        parser.next_token();
        return Ok(name);
    }
    object_name(parser)
}

/// A column, and whether it declares itself the primary key.
fn parse_column(parser: &mut Parser, sql: &str) -> PResult<(ColumnDecl, bool)> {
    let position = location_to_pos(sql, parser.peek_token().span.start);
    let (name, spelled) = parse_declared_name(parser, sql)?;
    let declared = spelled.value;
    if parser.parse_keyword(Keyword::AS) {
        let expr = parser.parse_expr()?;
        let column = ColumnDecl {
            name,
            declared,
            kind: ColumnKind::Computed(Box::new(expr)),
            position,
        };
        return Ok((column, false));
    }
    let mut key = false;
    let data_type = parse_column_type(parser, sql)?;
    let mut not_null = false;
    loop {
        if parser.parse_keywords(&[Keyword::NOT, Keyword::NULL]) {
            not_null = true;
        } else if parser.parse_keyword(Keyword::NULL) {
            not_null = false;
        } else if parser.parse_keywords(&[Keyword::PRIMARY, Keyword::KEY]) {
            let _ = parser.parse_keywords(&[Keyword::NOT, Keyword::ENFORCED]);
            key = true;
        } else if parser.parse_keyword(Keyword::COMMENT) {
            parser.parse_literal_string()?;
        } else {
            break;
        }
    }
    let column = ColumnDecl {
        name,
        declared,
        kind: ColumnKind::Physical {
            data_type,
            not_null,
        },
        position,
    };
    Ok((column, key))
}

/// `( 'key' = 'value', key = value, ... )`: keys are string literals or
/// (dotted) identifiers; values are literals.
fn parse_with_options(parser: &mut Parser, sql: &str) -> PResult<Vec<(String, String)>> {
    parser.expect_token(&Token::LParen)?;
    let mut options: Vec<(String, String)> = Vec::new();
    if parser.consume_token(&Token::RParen) {
        return Ok(options);
    }
    loop {
        let key_tok = parser.peek_token();
        let key = match parser.next_token().token {
            Token::SingleQuotedString(s) | Token::DoubleQuotedString(s) => s,
            Token::Word(w) => {
                let mut key = w.value;
                while parser.consume_token(&Token::Period) {
                    key.push('.');
                    match parser.next_token().token {
                        Token::Word(w) => key.push_str(&w.value),
                        other => {
                            return Err(Error::syntax(format!(
                                "syntax error at or near \"{other}\""
                            ))
                            .into())
                        }
                    }
                }
                key
            }
            other => {
                return Err(
                    Error::syntax(format!("expected an option name, found \"{other}\""))
                        .at(location_to_pos(sql, key_tok.span.start))
                        .into(),
                )
            }
        };
        parser.expect_token(&Token::Eq)?;
        let value_tok = parser.next_token();
        let value = match value_tok.token {
            Token::SingleQuotedString(s) | Token::DoubleQuotedString(s) => s,
            Token::Number(n, _) => n,
            Token::Word(w) => w.value,
            other => {
                return Err(Error::syntax(format!(
                    "expected a value for option '{key}', found \"{other}\""
                ))
                .at(location_to_pos(sql, value_tok.span.start))
                .into())
            }
        };
        let key = key.to_lowercase();
        if options.iter().any(|(k, _)| *k == key) {
            return Err(Error::syntax(format!("option '{key}' is given twice"))
                .at(location_to_pos(sql, key_tok.span.start))
                .into());
        }
        options.push((key, value));
        if parser.consume_token(&Token::Comma) {
            continue;
        }
        parser.expect_token(&Token::RParen)?;
        break;
    }
    Ok(options)
}

fn parse_create_view(parser: &mut Parser, sql: &str) -> PResult<CreateView> {
    let start = parser.peek_token().span.start;
    let if_not_exists = parser.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = object_name(parser)?;
    let columns = if parser.consume_token(&Token::LParen) {
        let columns = parser.parse_comma_separated(|p| p.parse_identifier())?;
        parser.expect_token(&Token::RParen)?;
        columns.iter().map(normalize_ident).collect()
    } else {
        Vec::new()
    };
    let options = if parser.parse_keyword(Keyword::WITH) {
        parse_with_options(parser, sql)?
    } else {
        Vec::new()
    };
    parser.expect_keyword(Keyword::AS)?;
    let query = parser.parse_query()?;
    let mut emit_every = None;
    let emit = if is_word(&parser.peek_token().token, "EMIT") {
        parser.next_token();
        let tok = parser.peek_token();
        if parser.parse_keywords(&[Keyword::ON, Keyword::WINDOW, Keyword::CLOSE]) {
            EmitMode::OnWindowClose
        } else if parser.parse_keywords(&[Keyword::ON, Keyword::UPDATE]) {
            EmitMode::OnUpdate
        } else if is_word(&tok.token, "EVERY") {
            parser.next_token();
            emit_every = Some(parser.parse_expr()?);
            EmitMode::OnUpdate
        } else {
            return Err(Error::syntax(
                "expected ON WINDOW CLOSE, ON UPDATE or EVERY interval after EMIT",
            )
            .at(location_to_pos(sql, tok.span.start))
            .into());
        }
    } else {
        EmitMode::OnUpdate
    };
    let end = parser.peek_token();
    let text = slice_between(sql, start, end.span.start, end.token == Token::EOF);
    Ok(CreateView {
        name,
        if_not_exists,
        options,
        query,
        columns,
        emit,
        emit_every,
        sql: format!("CREATE MATERIALIZED VIEW {text}"),
    })
}

/// A call of function `name` on `args`, as the parser would write it.
pub fn function_call(name: &str, args: Vec<ast::Expr>) -> ast::Expr {
    ast::Expr::Function(ast::Function {
        name: ast::ObjectName::from(vec![ast::Ident::new(name)]),
        uses_odbc_syntax: false,
        parameters: ast::FunctionArguments::None,
        args: ast::FunctionArguments::List(ast::FunctionArgumentList {
            duplicate_treatment: None,
            args: args
                .into_iter()
                .map(|a| ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(a)))
                .collect(),
            clauses: vec![],
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CALLS: &str = "CREATE TABLE calls (
      event_time BIGINT, cell_id STRING, msisdn STRING, status STRING, duration_ms INT,
      ts AS TO_TIMESTAMP_LTZ(event_time, 3),
      WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
    ) WITH ('connector' = 'kafka', 'topic' = 'calls',
            'properties.bootstrap.servers' = '127.0.0.1:9092',
            'scan.startup.mode' = 'earliest-offset', 'format' = 'json')";

    #[test]
    fn parses_flink_create_table_verbatim() {
        let p = parse_one(CALLS).unwrap();
        let Statement::CreateSource(s) = p.statement else {
            panic!("not a source")
        };
        assert_eq!(s.name, "calls");
        assert_eq!(s.columns.len(), 6);
        assert!(matches!(s.columns[5].kind, ColumnKind::Computed(_)));
        assert_eq!(s.watermark.as_ref().unwrap().column, "ts");
        assert_eq!(s.options[0], ("connector".into(), "kafka".into()));
        assert_eq!(s.options.len(), 5);
    }

    #[test]
    fn parses_flink_window_tvf_with_inner_table() {
        let sql = "CREATE MATERIALIZED VIEW kpi AS SELECT window_start, COUNT(*) FROM \
                   TABLE(TUMBLE(TABLE calls, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) \
                   GROUP BY window_start, window_end EMIT ON WINDOW CLOSE";
        let p = parse_one(sql).unwrap();
        let Statement::CreateView(v) = p.statement else {
            panic!("not a view")
        };
        assert_eq!(v.emit, EmitMode::OnWindowClose);
        assert!(v.query.to_string().contains("TUMBLE(calls, DESCRIPTOR(ts)"));
    }

    #[test]
    fn several_statements_keep_their_text() {
        let all = parse("SELECT 1; SHOW TABLES ;select 2").unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[1].text, "SHOW TABLES");
        assert_eq!(all[2].text, "select 2");
    }

    #[test]
    fn syntax_errors_have_positions() {
        let sql = "CREATE TABLE t (a INT, WATERMARK FOR a) WITH ()";
        let err = parse(sql).unwrap_err();
        assert_eq!(err.sqlstate(), "42601");
        assert_eq!(err.position(), Some(sql.find(')').unwrap() + 1));
    }

    #[test]
    fn set_and_show_variables() {
        let all =
            parse("SET extra_float_digits = 3; SET TIME ZONE 'UTC'; SHOW search_path").unwrap();
        assert!(
            matches!(&all[0].statement, Statement::SetVariable { name, value } if name == "extra_float_digits" && value == "3")
        );
        assert!(
            matches!(&all[1].statement, Statement::SetVariable { name, .. } if name == "timezone")
        );
        assert!(matches!(&all[2].statement, Statement::ShowVariable(n) if n == "search_path"));
    }

    #[test]
    fn drop_and_describe() {
        let all = parse("DROP MATERIALIZED VIEW IF EXISTS Kpi; DESCRIBE calls").unwrap();
        assert!(
            matches!(&all[0].statement, Statement::Drop { kind: ObjectKind::MaterializedView, name, if_exists: true } if name == "kpi")
        );
        assert!(matches!(&all[1].statement, Statement::Describe(n) if n == "calls"));
    }
}
