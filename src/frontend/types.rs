//! SQL types (Flink's spelling and Postgres's) to Arrow types.

use arrow::datatypes::{DataType, TimeUnit};
use sqlparser::ast::{self, ExactNumberInfo, TimezoneInfo};

use crate::error::{Error, Result};

/// The time zone Sluice gives `TIMESTAMP_LTZ` values: instants are stored as
/// UTC and shown in UTC (the session time zone is UTC).
pub const UTC: &str = "+00:00";

/// Maps a declared column type to its Arrow type.
pub fn arrow_type(t: &ast::DataType) -> Result<DataType> {
    use ast::DataType as T;
    Ok(match t {
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
        other => other.to_string().to_uppercase(),
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
