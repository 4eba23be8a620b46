//! The SQL dialect Sluice parses with: sqlparser's generic dialect (Flink's
//! backquoted identifiers and Postgres's `::` casts both read), with two
//! Postgres rules of its own:
//!
//! - `^` is exponentiation (`2 ^ 10` is 1024), binding tighter than `*` and
//!   left-associative, and `#` is bitwise XOR; the generic dialect reads
//!   `^` as XOR and has no `#`;
//! - a trailing comma in a select list (`SELECT 1,`) is a syntax error;
//!
//! and Flink's `JSON_VALUE` clauses (`RETURNING`, `ON EMPTY`, `ON ERROR`),
//! see `json_value.rs`.
//!
//! Everything else is the generic dialect's: [`SluiceDialect`] forwards each
//! rule the generic dialect sets and reports itself as that dialect, so the
//! parser's own checks for "the generic dialect" still hold.

use std::any::TypeId;

use sqlparser::ast::{BinaryOperator, Expr};
use sqlparser::dialect::{Dialect, GenericDialect, Precedence};
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::Token;

#[derive(Debug)]
pub struct SluiceDialect {
    generic: GenericDialect,
}

/// Forwards the generic dialect's `fn name(&self) -> bool` rules.
macro_rules! generic_rules {
    ($($name:ident),* $(,)?) => {
        $(fn $name(&self) -> bool {
            self.generic.$name()
        })*
    };
}

impl Default for SluiceDialect {
    fn default() -> Self {
        Self::new()
    }
}

impl SluiceDialect {
    pub const fn new() -> Self {
        SluiceDialect {
            generic: GenericDialect {},
        }
    }

    /// `^` binds tighter than `*` (Postgres), as tight as `AT TIME ZONE`.
    fn power_precedence(&self) -> u8 {
        self.prec_value(Precedence::AtTz)
    }
}

impl Dialect for SluiceDialect {
    fn dialect(&self) -> TypeId {
        TypeId::of::<GenericDialect>()
    }

    fn is_delimited_identifier_start(&self, ch: char) -> bool {
        self.generic.is_delimited_identifier_start(ch)
    }

    fn is_identifier_start(&self, ch: char) -> bool {
        self.generic.is_identifier_start(ch)
    }

    fn is_identifier_part(&self, ch: char) -> bool {
        self.generic.is_identifier_part(ch)
    }

    fn supports_projection_trailing_commas(&self) -> bool {
        false
    }

    /// Flink's `JSON_VALUE(... RETURNING type ... ON EMPTY ... ON ERROR)`.
    fn parse_prefix(&self, parser: &mut Parser) -> Option<Result<Expr, ParserError>> {
        crate::frontend::json_value::parse(parser)
    }

    fn get_next_precedence(&self, parser: &Parser) -> Option<Result<u8, ParserError>> {
        match parser.peek_token_ref().token {
            Token::Caret => Some(Ok(self.power_precedence())),
            Token::Sharp => Some(Ok(self.prec_value(Precedence::Caret))),
            _ => None,
        }
    }

    fn parse_infix(
        &self,
        parser: &mut Parser,
        expr: &Expr,
        precedence: u8,
    ) -> Option<Result<Expr, ParserError>> {
        let op = match parser.peek_token_ref().token {
            Token::Caret => BinaryOperator::PGExp,
            Token::Sharp => BinaryOperator::PGBitwiseXor,
            _ => return None,
        };
        parser.next_token();
        Some(
            parser
                .parse_subexpr(precedence)
                .map(|right| Expr::BinaryOp {
                    left: Box::new(expr.clone()),
                    op,
                    right: Box::new(right),
                }),
        )
    }

    generic_rules!(
        supports_unicode_string_literal,
        supports_partition_by_after_order_by,
        supports_array_join_syntax,
        supports_group_by_expr,
        supports_group_by_with_modifier,
        supports_left_associative_joins_without_parens,
        supports_connect_by,
        supports_match_recognize,
        supports_pipe_operator,
        supports_start_transaction_modifier,
        supports_window_function_null_treatment_arg,
        supports_dictionary_syntax,
        supports_window_clause_named_window_reference,
        supports_parenthesized_set_variables,
        supports_select_wildcard_except,
        support_map_literal_syntax,
        allow_extract_custom,
        allow_extract_single_quotes,
        supports_extract_comma_syntax,
        supports_create_view_comment_syntax,
        supports_parens_around_table_factor,
        supports_values_as_table_factor,
        supports_create_index_with_clause,
        supports_explain_with_utility_options,
        supports_limit_comma,
        supports_update_order_by,
        supports_from_first_select,
        supports_asc_desc_in_column_definition,
        supports_try_convert,
        supports_bitwise_shift_operators,
        supports_comment_on,
        supports_load_extension,
        supports_named_fn_args_with_assignment_operator,
        supports_struct_literal,
        supports_empty_projections,
        supports_nested_comments,
        supports_multiline_comment_hints,
        supports_user_host_grantee,
        supports_string_escape_constant,
        supports_array_typedef_with_brackets,
        supports_match_against,
        supports_set_names,
        supports_comma_separated_set_assignments,
        supports_filter_during_aggregation,
        supports_select_wildcard_exclude,
        supports_data_type_signed_suffix,
        supports_interval_options,
        supports_quote_delimited_string,
        supports_select_wildcard_replace,
        supports_select_wildcard_ilike,
        supports_select_wildcard_rename,
        supports_optimize_table,
        supports_install,
        supports_detach,
        supports_prewhere,
        supports_with_fill,
        supports_limit_by,
        supports_interpolate,
        supports_settings,
        supports_select_format,
        supports_comment_optimizer_hint,
        supports_constraint_keyword_without_name,
        supports_key_column_option,
        supports_comma_separated_trim,
        supports_cte_without_as,
        supports_select_item_multi_column_alias,
        supports_xml_expressions,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(sql: &str) -> Result<String, ParserError> {
        Parser::parse_sql(&SluiceDialect::new(), sql).map(|s| s[0].to_string())
    }

    #[test]
    fn caret_is_power_and_binds_tighter_than_multiplication() {
        assert_eq!(parse("SELECT 2 * 3 ^ 2").unwrap(), "SELECT 2 * 3 ^ 2");
        let stmt = &Parser::parse_sql(&SluiceDialect::new(), "SELECT 2 * 3 ^ 2 ^ 2").unwrap()[0];
        let sqlparser::ast::Statement::Query(q) = stmt else {
            panic!()
        };
        let sqlparser::ast::SetExpr::Select(s) = q.body.as_ref() else {
            panic!()
        };
        let sqlparser::ast::SelectItem::UnnamedExpr(Expr::BinaryOp { op, right, .. }) =
            &s.projection[0]
        else {
            panic!()
        };
        assert_eq!(*op, BinaryOperator::Multiply);
        // Left-associative: (3 ^ 2) ^ 2.
        let Expr::BinaryOp { op, left, .. } = right.as_ref() else {
            panic!()
        };
        assert_eq!(*op, BinaryOperator::PGExp);
        assert!(matches!(
            left.as_ref(),
            Expr::BinaryOp {
                op: BinaryOperator::PGExp,
                ..
            }
        ));
    }

    #[test]
    fn sharp_is_xor() {
        assert_eq!(parse("SELECT 5 # 3").unwrap(), "SELECT 5 # 3");
    }

    #[test]
    fn trailing_commas_are_refused() {
        assert!(parse("SELECT 1,").is_err());
        assert!(parse("SELECT 1, FROM t").is_err());
        assert!(parse("SELECT 1, 2").is_ok());
    }

    #[test]
    fn generic_rules_still_hold() {
        assert!(parse("SELECT `dateTime` FROM t").is_ok());
        assert!(parse("SELECT x::int FROM t").is_ok());
        assert!(parse("SELECT COUNT(*) FILTER (WHERE x > 1) FROM t").is_ok());
    }
}
