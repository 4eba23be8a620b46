//! One error type for all of Sluice.
//!
//! Errors are grouped by who must act: the user (their SQL or options are
//! wrong, or ask for something Sluice cannot do yet), an external system
//! (Kafka, the filesystem, the disk), or Sluice itself (a bug). Each error
//! carries the Postgres SQLSTATE it is reported with, so the wire server maps
//! an error to the protocol in one place ([`Error::sqlstate`]).
//!
//! Messages follow Postgres style: lowercase, no trailing period, and they say
//! what was being done (`could not decode message at offset 42 of topic
//! "calls": ...`).

use datafusion::error::DataFusionError;
use sqlparser::parser::ParserError;

/// SQLSTATE codes Sluice reports (see the Postgres "Error Codes" appendix).
pub mod sqlstate {
    pub const SYNTAX_ERROR: &str = "42601";
    pub const UNDEFINED_TABLE: &str = "42P01";
    pub const UNDEFINED_COLUMN: &str = "42703";
    pub const UNDEFINED_FUNCTION: &str = "42883";
    pub const UNDEFINED_OBJECT: &str = "42704";
    pub const AMBIGUOUS_COLUMN: &str = "42702";
    pub const DUPLICATE_TABLE: &str = "42P07";
    pub const DATATYPE_MISMATCH: &str = "42804";
    pub const INVALID_COLUMN_DEFINITION: &str = "42611";
    pub const GROUPING_ERROR: &str = "42803";
    pub const INVALID_PARAMETER_VALUE: &str = "22023";
    pub const DATA_EXCEPTION: &str = "22000";
    pub const DIVISION_BY_ZERO: &str = "22012";
    pub const DEPENDENT_OBJECTS_STILL_EXIST: &str = "2BP01";
    pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
    pub const INSUFFICIENT_RESOURCES: &str = "53000";
    pub const SYSTEM_ERROR: &str = "58000";
    pub const CONNECTION_FAILURE: &str = "08006";
    pub const INTERNAL_ERROR: &str = "XX000";
    pub const QUERY_CANCELED: &str = "57014";
    pub const STATEMENT_TOO_COMPLEX: &str = "54001";
    pub const CHARACTER_NOT_IN_REPERTOIRE: &str = "22021";
    pub const INVALID_TEXT_REPRESENTATION: &str = "22P02";
    pub const NUMERIC_VALUE_OUT_OF_RANGE: &str = "22003";
    pub const IN_FAILED_TRANSACTION: &str = "25P02";
    pub const ACTIVE_TRANSACTION: &str = "25001";
    pub const NO_ACTIVE_TRANSACTION: &str = "25P01";
    pub const INVALID_SAVEPOINT: &str = "3B001";
    pub const INVALID_PASSWORD: &str = "28P01";
    pub const INVALID_AUTHORIZATION: &str = "28000";
    pub const INSUFFICIENT_PRIVILEGE: &str = "42501";
    pub const DUPLICATE_OBJECT: &str = "42710";
    pub const DUPLICATE_COLUMN: &str = "42701";
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The user must act: the SQL, an option or an argument is wrong, or asks
    /// for something Sluice does not do yet.
    #[error("{message}")]
    User {
        code: &'static str,
        message: String,
        /// 1-based character position in the statement text, when known.
        position: Option<usize>,
        hint: Option<String>,
    },
    /// An external system failed: Kafka, the filesystem, the disk.
    #[error("{message}")]
    External { code: &'static str, message: String },
    /// A bug in Sluice: an invariant did not hold.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn user(code: &'static str, message: impl Into<String>) -> Self {
        Error::User {
            code,
            message: message.into(),
            position: None,
            hint: None,
        }
    }

    pub fn syntax(message: impl Into<String>) -> Self {
        Self::user(sqlstate::SYNTAX_ERROR, message)
    }

    pub fn undefined_table(name: &str) -> Self {
        Self::user(
            sqlstate::UNDEFINED_TABLE,
            format!("relation \"{name}\" does not exist"),
        )
    }

    pub fn undefined_column(name: &str) -> Self {
        Self::user(
            sqlstate::UNDEFINED_COLUMN,
            format!("column \"{name}\" does not exist"),
        )
    }

    pub fn duplicate(kind: &str, name: &str) -> Self {
        Self::user(
            sqlstate::DUPLICATE_TABLE,
            format!("{kind} \"{name}\" already exists"),
        )
    }

    pub fn not_supported(message: impl Into<String>) -> Self {
        Self::user(sqlstate::FEATURE_NOT_SUPPORTED, message)
    }

    pub fn invalid_parameter(message: impl Into<String>) -> Self {
        Self::user(sqlstate::INVALID_PARAMETER_VALUE, message)
    }

    pub fn external(message: impl Into<String>) -> Self {
        Error::External {
            code: sqlstate::SYSTEM_ERROR,
            message: message.into(),
        }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Error::Internal(message.into())
    }

    /// Attaches a 1-based character position in the statement text, unless
    /// the error already has one.
    pub fn at(mut self, pos: Option<usize>) -> Self {
        if let Error::User { position, .. } = &mut self {
            if position.is_none() {
                *position = pos;
            }
        }
        self
    }

    /// Drops the position (for statements Sluice made up, whose positions
    /// mean nothing to the user).
    pub fn without_position(mut self) -> Self {
        if let Error::User { position, .. } = &mut self {
            *position = None;
        }
        self
    }

    pub fn with_hint(mut self, text: impl Into<String>) -> Self {
        if let Error::User { hint, .. } = &mut self {
            *hint = Some(text.into());
        }
        self
    }

    /// Prefixes the message with what was being done.
    pub fn context(self, what: impl std::fmt::Display) -> Self {
        match self {
            Error::User {
                code,
                message,
                position,
                hint,
            } => Error::User {
                code,
                message: format!("{what}: {message}"),
                position,
                hint,
            },
            Error::External { code, message } => Error::External {
                code,
                message: format!("{what}: {message}"),
            },
            Error::Internal(m) => Error::Internal(format!("{what}: {m}")),
        }
    }

    /// The SQLSTATE this error is reported with.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            Error::User { code, .. } | Error::External { code, .. } => code,
            Error::Internal(_) => sqlstate::INTERNAL_ERROR,
        }
    }

    /// The error with its position moved by `by` characters (for SQL that
    /// was part of a larger statement).
    pub fn shifted(mut self, by: isize) -> Self {
        if let Error::User {
            position: Some(p), ..
        } = &mut self
        {
            *p = p.saturating_add_signed(by).max(1);
        }
        self
    }

    pub fn position(&self) -> Option<usize> {
        match self {
            Error::User { position, .. } => *position,
            _ => None,
        }
    }

    pub fn hint(&self) -> Option<&str> {
        match self {
            Error::User { hint, .. } => hint.as_deref(),
            _ => None,
        }
    }

    /// Converts a DataFusion error raised while planning or running the
    /// statement `sql`, locating the offending name in `sql` where possible.
    pub fn from_datafusion(err: DataFusionError, sql: &str) -> Self {
        let located = locate_datafusion_error(&err, sql);
        match err {
            DataFusionError::SQL(e, _) => Error::from_parser(*e, sql),
            err => Error::from(err).at(located),
        }
    }
}

/// Lowercases the first character of a message, Postgres style, unless the
/// first word is an acronym or identifier in capitals ("SQL", "JSON").
pub fn postgres_style(message: &str) -> String {
    let trimmed = message.trim().trim_end_matches('.');
    let first_word = trimmed.split_whitespace().next().unwrap_or("");
    let is_acronym = first_word.len() > 1 && first_word.chars().all(|c| !c.is_lowercase());
    let mut chars = trimmed.chars();
    match chars.next() {
        Some(c) if !is_acronym => c.to_lowercase().chain(chars).collect(),
        _ => trimmed.to_string(),
    }
}

impl Error {
    /// Converts a sqlparser error for the statement text `sql`, turning the
    /// parser's line/column into the 1-based character position the wire
    /// protocol reports.
    pub fn from_parser(err: ParserError, sql: &str) -> Self {
        let text = match &err {
            ParserError::TokenizerError(m) | ParserError::ParserError(m) => m.clone(),
            ParserError::RecursionLimitExceeded => return crate::frontend::parser::too_complex(),
        };
        let (message, line_col) = split_location(&text);
        let position = match line_col {
            Some((line, col)) => char_position(sql, line, col),
            // The end of the text has no location: Postgres points past it.
            None if message.ends_with("found: EOF") => Some(sql.chars().count() + 1),
            None => None,
        };
        Error::syntax(syntax_message(&message)).at(position)
    }
}

/// Postgres's wording for sqlparser's "Expected: X, found: Y":
/// `syntax error at or near "Y": expected X` (or `at end of input`).
fn syntax_message(message: &str) -> String {
    if let Some(rest) = message.strip_prefix("Expected: ") {
        if let Some((expected, found)) = rest.rsplit_once(", found: ") {
            let place = if found == "EOF" {
                "at end of input".to_string()
            } else {
                format!("at or near \"{found}\"")
            };
            return format!("syntax error {place}: expected {expected}");
        }
    }
    format!("syntax error: {}", postgres_style(message))
}

/// The 1-based character position of (line, column) in `sql`.
pub fn char_position(sql: &str, line: usize, col: usize) -> Option<usize> {
    if line == 0 || col == 0 {
        return None;
    }
    let mut pos = 0usize;
    for (i, text) in sql.split('\n').enumerate() {
        if i + 1 == line {
            return Some(pos + col.min(text.chars().count() + 1));
        }
        pos += text.chars().count() + 1;
    }
    None
}

/// Splits "message at Line: 1, Column: 15" into the message and (1, 15).
fn split_location(text: &str) -> (String, Option<(usize, usize)>) {
    if let Some(idx) = text.rfind(" at Line: ") {
        let loc = &text[idx + " at Line: ".len()..];
        let mut parts = loc.split(", Column: ");
        let line = parts.next().and_then(|l| l.trim().parse().ok());
        let col = parts.next().and_then(|c| c.trim().parse().ok());
        if let (Some(line), Some(col)) = (line, col) {
            return (text[..idx].to_string(), Some((line, col)));
        }
    }
    (text.to_string(), None)
}

impl From<DataFusionError> for Error {
    fn from(err: DataFusionError) -> Self {
        use datafusion::common::SchemaError;
        match err {
            DataFusionError::SQL(e, _) => Error::from_parser(*e, ""),
            DataFusionError::SchemaError(e, _) => match *e {
                SchemaError::FieldNotFound { field, .. } => Error::undefined_column(&field.name),
                SchemaError::AmbiguousReference { field } => Error::user(
                    sqlstate::AMBIGUOUS_COLUMN,
                    format!("column reference \"{}\" is ambiguous", field.name),
                ),
                SchemaError::DuplicateQualifiedField { name, .. }
                | SchemaError::DuplicateUnqualifiedField { name } => Error::user(
                    sqlstate::AMBIGUOUS_COLUMN,
                    format!("column \"{name}\" is specified more than once"),
                ),
            },
            DataFusionError::Plan(m) => plan_error(&m),
            DataFusionError::NotImplemented(m) => Error::not_supported(postgres_style(&m)),
            DataFusionError::Context(ctx, inner) => Error::from(*inner).context(ctx),
            DataFusionError::Diagnostic(_, inner) => Error::from(*inner),
            DataFusionError::Collection(mut errs) if !errs.is_empty() => {
                Error::from(errs.remove(0))
            }
            DataFusionError::ArrowError(e, _) => arrow_error(&e.to_string()),
            DataFusionError::Execution(m) => arrow_error(&m),
            DataFusionError::ResourcesExhausted(m) => {
                Error::user(sqlstate::INSUFFICIENT_RESOURCES, postgres_style(&m))
            }
            DataFusionError::Shared(inner) => {
                let text = inner.to_string();
                Error::internal(text)
            }
            DataFusionError::External(e) => match e.downcast::<Error>() {
                Ok(e) => *e,
                Err(e) => Error::external(postgres_style(&e.to_string())),
            },
            DataFusionError::IoError(e) => Error::external(postgres_style(&e.to_string())),
            DataFusionError::Internal(m) => Error::internal(m),
            other => Error::internal(other.to_string()),
        }
    }
}

fn plan_error(message: &str) -> Error {
    let lower = postgres_style(message);
    if let Some(rest) = lower.strip_prefix("table '") {
        if let Some(name) = rest.strip_suffix("' not found") {
            let short = name.rsplit('.').next().unwrap_or(name);
            return Error::undefined_table(short);
        }
    }
    if lower.starts_with("invalid function") || lower.contains("no function matches") {
        return Error::user(sqlstate::UNDEFINED_FUNCTION, lower);
    }
    if lower.contains("must appear in the group by clause")
        || lower.contains("must be an aggregate expression or appear in group by")
        || lower.contains("projection references non-aggregate values")
    {
        return Error::user(sqlstate::GROUPING_ERROR, lower);
    }
    if lower.contains("coerce") || lower.contains("cannot infer common") {
        return Error::user(sqlstate::DATATYPE_MISMATCH, lower);
    }
    Error::user(sqlstate::SYNTAX_ERROR, lower)
}

fn arrow_error(message: &str) -> Error {
    let lower = postgres_style(message);
    if lower.contains("divide by zero") {
        return Error::user(sqlstate::DIVISION_BY_ZERO, "division by zero");
    }
    Error::user(sqlstate::DATA_EXCEPTION, lower)
}

/// Finds where in `sql` the name a DataFusion error complains about appears.
fn locate_datafusion_error(err: &DataFusionError, sql: &str) -> Option<usize> {
    use datafusion::common::SchemaError;
    match err {
        DataFusionError::Diagnostic(diag, inner) => diag
            .span
            .as_ref()
            .and_then(|s| char_position(sql, s.start.line as usize, s.start.column as usize))
            .or_else(|| locate_datafusion_error(inner, sql)),
        DataFusionError::Context(_, inner) => locate_datafusion_error(inner, sql),
        DataFusionError::SchemaError(e, _) => match e.as_ref() {
            SchemaError::FieldNotFound { field, .. } => find_word(sql, &field.name),
            SchemaError::AmbiguousReference { field } => find_word(sql, &field.name),
            _ => None,
        },
        DataFusionError::Plan(m) => {
            let rest = m.strip_prefix("table '")?;
            let name = rest.strip_suffix("' not found")?;
            find_word(sql, name.rsplit('.').next().unwrap_or(name))
        }
        _ => None,
    }
}

/// The 1-based character position of the first whole-word, case-insensitive
/// occurrence of `word` in `sql` outside string literals.
pub fn find_word(sql: &str, word: &str) -> Option<usize> {
    if word.is_empty() {
        return None;
    }
    let lower_sql: Vec<char> = sql.to_lowercase().chars().collect();
    let target: Vec<char> = word.to_lowercase().chars().collect();
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut in_string = false;
    let mut i = 0;
    while i < lower_sql.len() {
        let c = lower_sql[i];
        if c == '\'' {
            in_string = !in_string;
        } else if !in_string && lower_sql[i..].starts_with(&target) {
            let before_ok = i == 0 || !is_ident(lower_sql[i - 1]);
            let after = i + target.len();
            let after_ok = after >= lower_sql.len() || !is_ident(lower_sql[after]);
            if before_ok && after_ok {
                return Some(i + 1);
            }
        }
        i += 1;
    }
    None
}

impl From<arrow::error::ArrowError> for Error {
    fn from(err: arrow::error::ArrowError) -> Self {
        arrow_error(&err.to_string())
    }
}

impl From<std::io::Error> for Error {
    fn from(err: std::io::Error) -> Self {
        Error::external(postgres_style(&err.to_string()))
    }
}

impl From<Error> for DataFusionError {
    fn from(err: Error) -> Self {
        DataFusionError::External(Box::new(err))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parser_errors_get_a_character_position() {
        let sql = "SELECT *\nFROM t WHERE";
        let err = sqlparser::parser::Parser::parse_sql(&sqlparser::dialect::GenericDialect {}, sql)
            .unwrap_err();
        let err = Error::from_parser(err, sql);
        assert_eq!(err.sqlstate(), sqlstate::SYNTAX_ERROR);
        assert_eq!(err.position(), Some(sql.chars().count() + 1));
        assert_eq!(
            err.to_string(),
            "syntax error at end of input: expected an expression"
        );
    }

    #[test]
    fn find_word_skips_strings_and_partial_words() {
        assert_eq!(find_word("select 'x', xx, x from t", "x"), Some(17));
        assert_eq!(find_word("SELECT Foo", "foo"), Some(8));
        assert_eq!(find_word("select a", "b"), None);
    }

    #[test]
    fn postgres_style_lowercases_but_keeps_acronyms() {
        assert_eq!(postgres_style("Invalid thing."), "invalid thing");
        assert_eq!(postgres_style("JSON is bad"), "JSON is bad");
    }

    #[test]
    fn char_position_counts_lines() {
        assert_eq!(char_position("ab\ncd", 2, 2), Some(5));
        assert_eq!(char_position("ab", 1, 1), Some(1));
    }
}
