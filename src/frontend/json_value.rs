//! Flink's `JSON_VALUE(json, path [RETURNING type] [behavior ON EMPTY]
//! [behavior ON ERROR])`, where a behavior is `NULL`, `ERROR` or
//! `DEFAULT expr`. The parser reads the clauses and writes the call as
//! plain SQL over three functions (see `functions/flink.rs`):
//! `JSON_VALUE(json, path)`, the scalar found, as text;
//! `JSON_VALUE_STATE(json, path)`, whether a value was found (`value`),
//! none (`empty`: a missing path or a JSON null) or the text is bad
//! (`error`: not JSON, or an object or array at the path); and
//! `JSON_VALUE_RAISE(json, path)`, which fails with why, for `ERROR`:
//!
//! ```sql
//! CASE JSON_VALUE_STATE(j, p)
//!   WHEN 'empty' THEN <on empty>
//!   WHEN 'error' THEN <on error>
//!   ELSE <the value cast to the type; a failed cast is an error too>
//! END
//! ```
//!
//! As in Flink, both behaviors default to `NULL` and the type to `STRING`.
//! In a continuous query a row that fails (`ERROR`) is a dead letter; the
//! job goes on.

use sqlparser::ast::{self, Expr};
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::Token;

use crate::frontend::parser::function_call;

/// What a clause does with a row that has no value or a bad one.
enum Behavior {
    Null,
    Error,
    Default(Box<Expr>),
}

/// Parses `JSON_VALUE(...)` if it comes next and has clauses; None leaves
/// the parser where it was (a plain call, or something else). The clauses
/// of `JSON_QUERY` are refused by name.
pub fn parse(parser: &mut Parser) -> Option<Result<Expr, ParserError>> {
    let function = match &parser.peek_nth_token_ref(0).token {
        Token::Word(w) if w.quote_style.is_none() => w.value.to_ascii_lowercase(),
        _ => return None,
    };
    if parser.peek_nth_token_ref(1).token != Token::LParen {
        return None;
    }
    let start = parser.index();
    let parsed = match function.as_str() {
        "json_value" => parse_call(parser),
        "json_query" => refuse_query_clauses(parser),
        _ => return None,
    };
    match parsed {
        // Without clauses the call is an ordinary function call.
        Ok(None) => {
            while parser.index() > start {
                parser.prev_token();
            }
            None
        }
        Ok(Some(e)) => Some(Ok(e)),
        Err(e) => Some(Err(e)),
    }
}

/// `JSON_QUERY(json, path)` alone is a plain call; with clauses, an error
/// that names them.
fn refuse_query_clauses(parser: &mut Parser) -> Result<Option<Expr>, ParserError> {
    parser.next_token();
    parser.expect_token(&Token::LParen)?;
    parser.parse_expr()?;
    parser.expect_token(&Token::Comma)?;
    parser.parse_expr()?;
    if parser.peek_token_ref().token == Token::RParen {
        return Ok(None);
    }
    parser.expected(
        ") after JSON_QUERY's path: its RETURNING, WRAPPER, ON EMPTY and ON ERROR clauses are not supported yet (it gives the object or array found as JSON text, else NULL)",
        parser.peek_token(),
    )
}

fn parse_call(parser: &mut Parser) -> Result<Option<Expr>, ParserError> {
    parser.next_token();
    parser.expect_token(&Token::LParen)?;
    let json = parser.parse_expr()?;
    parser.expect_token(&Token::Comma)?;
    let path = parser.parse_expr()?;
    let returning = match parser.parse_keyword(Keyword::RETURNING) {
        true => Some(parser.parse_data_type()?),
        false => None,
    };
    let mut on_empty = None;
    let mut on_error = None;
    while parser.peek_token_ref().token != Token::RParen {
        let behavior = if parser.parse_keyword(Keyword::NULL) {
            Behavior::Null
        } else if parser.parse_keyword(Keyword::ERROR) {
            Behavior::Error
        } else if parser.parse_keyword(Keyword::DEFAULT) {
            Behavior::Default(Box::new(parser.parse_expr()?))
        } else {
            return parser.expected(
                "RETURNING, NULL, ERROR or DEFAULT ... ON EMPTY | ON ERROR, or )",
                parser.peek_token(),
            );
        };
        parser.expect_keyword_is(Keyword::ON)?;
        let slot = match parser.expect_one_of_keywords(&[Keyword::EMPTY, Keyword::ERROR])? {
            Keyword::EMPTY if on_empty.is_none() && on_error.is_none() => &mut on_empty,
            Keyword::ERROR if on_error.is_none() => &mut on_error,
            _ => {
                return parser.expected(
                    "at most one ON EMPTY, then at most one ON ERROR",
                    parser.peek_token(),
                )
            }
        };
        *slot = Some(behavior);
    }
    parser.expect_token(&Token::RParen)?;
    if returning.is_none() && on_empty.is_none() && on_error.is_none() {
        return Ok(None);
    }
    let returning = returning.unwrap_or(ast::DataType::String(None));
    Ok(Some(rewrite(
        json,
        path,
        returning,
        on_empty.unwrap_or(Behavior::Null),
        on_error.unwrap_or(Behavior::Null),
    )))
}

fn rewrite(
    json: Expr,
    path: Expr,
    returning: ast::DataType,
    on_empty: Behavior,
    on_error: Behavior,
) -> Expr {
    let call = |name: &str| function_call(name, vec![json.clone(), path.clone()]);
    let cast = |kind: ast::CastKind, expr: Expr| Expr::Cast {
        kind,
        expr: Box::new(expr),
        data_type: returning.clone(),
        array: false,
        format: None,
    };
    let otherwise = |behavior: &Behavior| match behavior {
        Behavior::Null => cast(ast::CastKind::Cast, Expr::value(ast::Value::Null)),
        Behavior::Error => cast(ast::CastKind::Cast, call("json_value_raise")),
        Behavior::Default(e) => cast(ast::CastKind::Cast, (**e).clone()),
    };
    let value = call("json_value");
    let found = match &on_error {
        Behavior::Null => cast(ast::CastKind::TryCast, value),
        Behavior::Error => cast(ast::CastKind::Cast, value),
        // The value is there, so a NULL is a failed cast.
        Behavior::Default(_) => function_call(
            "coalesce",
            vec![cast(ast::CastKind::TryCast, value), otherwise(&on_error)],
        ),
    };
    let text = |s: &str| Expr::value(ast::Value::SingleQuotedString(s.into()));
    Expr::Case {
        case_token: ast::helpers::attached_token::AttachedToken::empty(),
        end_token: ast::helpers::attached_token::AttachedToken::empty(),
        operand: Some(Box::new(call("json_value_state"))),
        conditions: vec![
            ast::CaseWhen {
                condition: text("empty"),
                result: otherwise(&on_empty),
            },
            ast::CaseWhen {
                condition: text("error"),
                result: otherwise(&on_error),
            },
        ],
        else_result: Some(Box::new(found)),
    }
}
