//! SQL types (Flink's spelling and Postgres's) to Arrow types.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Fields, TimeUnit};
use sqlparser::ast::{self, ExactNumberInfo, TimezoneInfo};

use crate::error::{Error, Result};

/// The time zone Sluice gives `TIMESTAMP_LTZ` values: instants are stored as
/// UTC and shown in UTC (the session time zone is UTC).
pub const UTC: &str = "+00:00";

/// Maps a declared column type to its Arrow type, with ROW fields named as
/// SQL names them (folded to lower case unless double-quoted).
pub fn arrow_type(t: &ast::DataType) -> Result<DataType> {
    spelled_type(t, Spelling::Sql)
}

/// Maps a declared column type to the Arrow type of its records: ROW fields
/// named as the statement spells them (`emailAddress`), which is how the
/// records (JSON objects) name them.
pub fn declared_type(t: &ast::DataType) -> Result<DataType> {
    spelled_type(t, Spelling::Declared)
}

#[derive(Clone, Copy)]
enum Spelling {
    Sql,
    Declared,
}

fn spelled_type(t: &ast::DataType, spelling: Spelling) -> Result<DataType> {
    use ast::DataType as T;
    Ok(match t {
        T::Struct(fields, _) => {
            let mut out = Vec::with_capacity(fields.len());
            for (i, f) in fields.iter().enumerate() {
                let name = match (&f.field_name, spelling) {
                    (Some(n), Spelling::Sql) => crate::frontend::parser::normalize_ident(n),
                    (Some(n), Spelling::Declared) => n.value.clone(),
                    (None, _) => format!("f{i}"),
                };
                if out.iter().any(|o: &Field| o.name() == &name) {
                    return Err(Error::user(
                        crate::error::sqlstate::DUPLICATE_COLUMN,
                        format!("field \"{name}\" appears twice in a ROW type"),
                    ));
                }
                out.push(Field::new(
                    name,
                    spelled_type(&f.field_type, spelling)?,
                    true,
                ));
            }
            DataType::Struct(Fields::from(out))
        }
        T::Array(
            ast::ArrayElemTypeDef::AngleBracket(e)
            | ast::ArrayElemTypeDef::SquareBracket(e, _)
            | ast::ArrayElemTypeDef::Parenthesis(e),
        ) => DataType::List(Arc::new(Field::new_list_field(
            spelled_type(e, spelling)?,
            true,
        ))),
        T::Map(k, v) => {
            let entries = Field::new(
                "entries",
                DataType::Struct(Fields::from(vec![
                    Field::new("key", spelled_type(k, spelling)?, false),
                    Field::new("value", spelled_type(v, spelling)?, true),
                ])),
                false,
            );
            DataType::Map(Arc::new(entries), false)
        }
        T::Boolean | T::Bool => DataType::Boolean,
        T::TinyInt(_) => DataType::Int8,
        T::SmallInt(_) | T::Int2(_) => DataType::Int16,
        T::Int(_) | T::Integer(_) | T::Int4(_) => DataType::Int32,
        T::BigInt(_) | T::Int8(_) | T::Int64 => DataType::Int64,
        T::Float(_) | T::Real | T::Float4 => DataType::Float32,
        T::Double(_) | T::DoublePrecision | T::Float8 | T::Float64 => DataType::Float64,
        T::Decimal(info) | T::Numeric(info) | T::Dec(info) => decimal(info)?,
        T::String(_)
        | T::Varchar(_)
        | T::CharVarying(_)
        | T::CharacterVarying(_)
        | T::Text
        | T::Char(_)
        | T::Character(_) => DataType::Utf8,
        T::Bytea | T::Bytes(_) | T::Varbinary(_) | T::Binary(_) => DataType::Binary,
        T::Date => DataType::Date32,
        T::Timestamp(precision, tz) => {
            let unit = time_unit(*precision)?;
            match tz {
                TimezoneInfo::WithTimeZone | TimezoneInfo::Tz => {
                    DataType::Timestamp(unit, Some(UTC.into()))
                }
                _ => DataType::Timestamp(unit, None),
            }
        }
        T::TimestampNtz(precision) => DataType::Timestamp(time_unit(*precision)?, None),
        T::Custom(name, modifiers) => {
            let name = name.to_string().to_uppercase();
            match name.as_str() {
                "TIMESTAMP_LTZ" => {
                    let precision = match modifiers.first() {
                        Some(p) => Some(p.parse::<u64>().map_err(|_| {
                            Error::syntax(format!("invalid precision \"{p}\" for TIMESTAMP_LTZ"))
                        })?),
                        None => None,
                    };
                    DataType::Timestamp(time_unit(precision)?, Some(UTC.into()))
                }
                "STRING" => DataType::Utf8,
                _ => {
                    return Err(Error::user(
                        crate::error::sqlstate::UNDEFINED_OBJECT,
                        format!("type \"{}\" does not exist", name.to_lowercase()),
                    ))
                }
            }
        }
        other => {
            return Err(Error::not_supported(format!(
                "column type {other} is not supported"
            )))
        }
    })
}

fn time_unit(precision: Option<u64>) -> Result<TimeUnit> {
    Ok(match precision.unwrap_or(3) {
        0..=3 => TimeUnit::Millisecond,
        4..=6 => TimeUnit::Microsecond,
        7..=9 => TimeUnit::Nanosecond,
        p => {
            return Err(Error::invalid_parameter(format!(
                "timestamp precision {p} is out of range 0 to 9"
            )))
        }
    })
}

fn decimal(info: &ExactNumberInfo) -> Result<DataType> {
    let (p, s) = match info {
        ExactNumberInfo::None => (38, 10),
        ExactNumberInfo::Precision(p) => (*p, 0),
        ExactNumberInfo::PrecisionAndScale(p, s) => (*p, *s as u64),
    };
    if !(1..=38).contains(&p) || s > p {
        return Err(Error::invalid_parameter(format!(
            "DECIMAL({p}, {s}) is out of range: precision must be 1 to 38 and scale at most the precision"
        )));
    }
    Ok(DataType::Decimal128(p as u8, s as i8))
}

/// The SQL name Sluice shows for an Arrow type (in DESCRIBE and errors).
pub fn sql_name(t: &DataType) -> String {
    match t {
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Int8 => "TINYINT".into(),
        DataType::Int16 => "SMALLINT".into(),
        DataType::Int32 => "INT".into(),
        DataType::Int64 => "BIGINT".into(),
        DataType::UInt8 | DataType::UInt16 | DataType::UInt32 => "BIGINT".into(),
        DataType::UInt64 => "DECIMAL(20, 0)".into(),
        DataType::Float16 | DataType::Float32 => "FLOAT".into(),
        DataType::Float64 => "DOUBLE".into(),
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => format!("DECIMAL({p}, {s})"),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "STRING".into(),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "BYTES".into(),
        DataType::Date32 | DataType::Date64 => "DATE".into(),
        DataType::Timestamp(unit, tz) => {
            let p = match unit {
                TimeUnit::Second => 0,
                TimeUnit::Millisecond => 3,
                TimeUnit::Microsecond => 6,
                TimeUnit::Nanosecond => 9,
            };
            if tz.is_some() {
                format!("TIMESTAMP_LTZ({p})")
            } else {
                format!("TIMESTAMP({p})")
            }
        }
        DataType::Interval(_) | DataType::Duration(_) => "INTERVAL".into(),
        DataType::List(f) | DataType::LargeList(f) => format!("ARRAY<{}>", sql_name(f.data_type())),
        DataType::Struct(fields) => format!(
            "ROW<{}>",
            fields
                .iter()
                .map(|f| format!("{} {}", quote_name(f.name()), sql_name(f.data_type())))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        DataType::Map(entries, _) => match entries.data_type() {
            DataType::Struct(kv) if kv.len() == 2 => format!(
                "MAP<{}, {}>",
                sql_name(kv[0].data_type()),
                sql_name(kv[1].data_type())
            ),
            _ => "MAP".into(),
        },
        other => other.to_string().to_uppercase(),
    }
}

/// A name as SQL writes it: bare when folding leaves it as it is,
/// double-quoted otherwise.
fn quote_name(name: &str) -> String {
    let bare = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if bare {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frontend::parser::{parse_one, ColumnKind, Statement};

    fn types_of(cols: &str) -> Vec<DataType> {
        let p = parse_one(&format!(
            "CREATE TABLE t ({cols}) WITH ('connector' = 'datagen')"
        ))
        .unwrap();
        let Statement::CreateSource(s) = p.statement else {
            panic!()
        };
        s.columns
            .iter()
            .map(|c| match &c.kind {
                ColumnKind::Physical { data_type, .. } => arrow_type(data_type).unwrap(),
                _ => panic!(),
            })
            .collect()
    }

    #[test]
    fn flink_types_map_to_arrow() {
        let t = types_of(
            "a BOOLEAN, b INT, c BIGINT, d DOUBLE, e DECIMAL(10, 2), f STRING, g VARCHAR(20), \
             h TIMESTAMP(3), i TIMESTAMP_LTZ(3), j SMALLINT",
        );
        assert_eq!(
            t,
            vec![
                DataType::Boolean,
                DataType::Int32,
                DataType::Int64,
                DataType::Float64,
                DataType::Decimal128(10, 2),
                DataType::Utf8,
                DataType::Utf8,
                DataType::Timestamp(TimeUnit::Millisecond, None),
                DataType::Timestamp(TimeUnit::Millisecond, Some(UTC.into())),
                DataType::Int16,
            ]
        );
    }

    #[test]
    fn sql_names_round_trip_for_common_types() {
        assert_eq!(
            sql_name(&DataType::Timestamp(
                TimeUnit::Millisecond,
                Some(UTC.into())
            )),
            "TIMESTAMP_LTZ(3)"
        );
        assert_eq!(sql_name(&DataType::Decimal128(10, 2)), "DECIMAL(10, 2)");
    }
}
