//! Postgres functions that tools call and DataFusion lacks or spells
//! differently: `current_schemas`, `array_lower`, `array_upper`,
//! `parse_ident`, `localtimestamp`, and `to_char` with Postgres's patterns
//! (`YYYY-MM-DD HH24:MI:SS`; DataFusion's own takes strftime's).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int32Array, StringArray, StringBuilder};
use arrow::datatypes::{DataType, Field, TimeUnit};
use datafusion::common::{exec_err, Result as DfResult, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};
use datafusion::prelude::SessionContext;

/// What a function returns, from its argument types.
type Returns = fn(&[DataType]) -> DataType;
/// Its body: the arguments (as arrays of the call's rows) to the result.
type Body = fn(&[ArrayRef], usize) -> DfResult<ArrayRef>;

#[derive(Debug)]
struct Function {
    name: &'static str,
    signature: Signature,
    returns: Returns,
    body: Body,
}

impl PartialEq for Function {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for Function {}

impl std::hash::Hash for Function {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl ScalarUDFImpl for Function {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        Ok((self.returns)(arg_types))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let rows = if arrays.is_empty() {
            args.number_rows
        } else {
            arrays[0].len()
        };
        let out = (self.body)(&arrays, rows)?;
        if scalar && !args.args.is_empty() {
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?));
        }
        Ok(ColumnarValue::Array(out))
    }
}

fn text_list() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
}

fn texts_per_row(values: Vec<Option<Vec<String>>>) -> ArrayRef {
    let mut builder = arrow::array::ListBuilder::new(StringBuilder::new());
    for v in values {
        match v {
            Some(items) => {
                for item in items {
                    builder.values().append_value(item);
                }
                builder.append(true);
            }
            None => builder.append(false),
        }
    }
    Arc::new(builder.finish())
}

/// The lengths of a list column's values (None where null).
fn list_lengths(array: &ArrayRef) -> DfResult<Vec<Option<usize>>> {
    let lengths = |offsets: Vec<usize>| -> Vec<Option<usize>> {
        (0..array.len())
            .map(|i| (!array.is_null(i)).then(|| offsets[i + 1] - offsets[i]))
            .collect()
    };
    Ok(match array.data_type() {
        DataType::List(_) => lengths(
            array
                .as_list::<i32>()
                .offsets()
                .iter()
                .map(|o| *o as usize)
                .collect(),
        ),
        DataType::LargeList(_) => lengths(
            array
                .as_list::<i64>()
                .offsets()
                .iter()
                .map(|o| *o as usize)
                .collect(),
        ),
        DataType::Null => vec![None; array.len()],
        other => return exec_err!("expected an array, got {other}"),
    })
}

/// The struct of `_pg_expandarray`: an element `x` and its subscript `n`.
fn expanded(list: DataType) -> DataType {
    let item = match list {
        DataType::List(f) | DataType::LargeList(f) => f.data_type().clone(),
        _ => DataType::Null,
    };
    let fields = vec![
        Field::new("x", item, true),
        Field::new("n", DataType::Int32, false),
    ];
    DataType::List(Arc::new(Field::new(
        "item",
        DataType::Struct(fields.into()),
        true,
    )))
}

/// Each array as a list of (element, subscript) structs.
fn expand_array(array: &ArrayRef) -> DfResult<ArrayRef> {
    let lengths = list_lengths(array)?;
    let values = match array.data_type() {
        DataType::List(_) => array.as_list::<i32>().values().clone(),
        DataType::LargeList(_) => array.as_list::<i64>().values().clone(),
        _ => arrow::array::new_null_array(&DataType::Null, 0),
    };
    let offsets: Vec<usize> = match array.data_type() {
        DataType::List(_) => array
            .as_list::<i32>()
            .offsets()
            .iter()
            .map(|o| *o as usize)
            .collect(),
        DataType::LargeList(_) => array
            .as_list::<i64>()
            .offsets()
            .iter()
            .map(|o| *o as usize)
            .collect(),
        _ => vec![0; array.len() + 1],
    };
    let subscripts: Int32Array = (0..values.len())
        .map(|i| {
            // The subscript of element i within its own array.
            let row = offsets.partition_point(|o| *o <= i).saturating_sub(1);
            Some((i - offsets[row]) as i32 + 1)
        })
        .collect();
    let DataType::List(item) = expanded(array.data_type().clone()) else {
        unreachable!("expanded gives a list")
    };
    let DataType::Struct(fields) = item.data_type().clone() else {
        unreachable!("of structs")
    };
    let structs = arrow::array::StructArray::new(fields, vec![values, Arc::new(subscripts)], None);
    let nulls: Vec<bool> = lengths.iter().map(|l| l.is_some()).collect();
    Ok(Arc::new(arrow::array::ListArray::new(
        item,
        arrow::buffer::OffsetBuffer::new(
            offsets.iter().map(|o| *o as i32).collect::<Vec<_>>().into(),
        ),
        Arc::new(structs),
        Some(nulls.into()),
    )))
}

/// `array_lower(a, 1)`: 1 for a non-empty array; `array_upper(a, 1)`: its
/// length (NULL for an empty array or another dimension, as in Postgres).
fn array_bound(arrays: &[ArrayRef], upper: bool) -> DfResult<ArrayRef> {
    let lengths = list_lengths(&arrays[0])?;
    let dims = arrays[1].as_primitive::<arrow::datatypes::Int64Type>();
    let out: Int32Array = lengths
        .iter()
        .enumerate()
        .map(
            |(i, len)| match (len, dims.is_valid(i).then(|| dims.value(i))) {
                (Some(n), Some(1)) if *n > 0 => Some(if upper { *n as i32 } else { 1 }),
                _ => None,
            },
        )
        .collect();
    Ok(Arc::new(out))
}

/// `parse_ident('a."B c".d')`: the parts of a qualified name, unquoted
/// parts folded to lower case.
fn parse_ident(text: &str) -> Option<Vec<String>> {
    let mut parts = Vec::new();
    let mut chars = text.trim().chars().peekable();
    loop {
        let mut part = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next()? {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        part.push('"');
                    }
                    '"' => break,
                    c => part.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek() {
                if *c == '.' || c.is_whitespace() {
                    break;
                }
                part.extend(c.to_lowercase());
                chars.next();
            }
            if part.is_empty() {
                return None;
            }
        }
        parts.push(part);
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.next() {
            None => return Some(parts),
            Some('.') => {}
            Some(_) => return None,
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
    }
}

/// A Postgres `to_char` pattern as a strftime one (`YYYY-MM-DD HH24:MI`
/// becomes `%Y-%m-%d %H:%M`); text in double quotes is kept as it is.
pub fn strftime_of(pattern: &str) -> String {
    // Longest first, so `YYYY` wins over `YY` and `HH24` over `HH`.
    const FIELDS: &[(&str, &str)] = &[
        ("YYYY", "%Y"),
        ("HH24", "%H"),
        ("HH12", "%I"),
        ("Month", "%B"),
        ("MONTH", "%B"),
        ("month", "%B"),
        ("Day", "%A"),
        ("DAY", "%A"),
        ("day", "%A"),
        ("Mon", "%b"),
        ("MON", "%b"),
        ("mon", "%b"),
        ("DDD", "%j"),
        ("YY", "%y"),
        ("MM", "%m"),
        ("DD", "%d"),
        ("HH", "%I"),
        ("MI", "%M"),
        ("SS", "%S"),
        ("MS", "%3f"),
        ("US", "%6f"),
        ("AM", "%p"),
        ("PM", "%p"),
        ("Dy", "%a"),
        ("DY", "%a"),
        ("dy", "%a"),
        ("TZ", "%Z"),
        ("D", "%u"),
    ];
    let mut out = String::with_capacity(pattern.len() * 2);
    let mut rest = pattern;
    while !rest.is_empty() {
        if let Some(quoted) = rest.strip_prefix('"') {
            let end = quoted.find('"').unwrap_or(quoted.len());
            out.push_str(&quoted[..end].replace('%', "%%"));
            rest = quoted.get(end + 1..).unwrap_or("");
            continue;
        }
        if let Some((field, spec)) = FIELDS.iter().find(|(f, _)| rest.starts_with(f)) {
            out.push_str(spec);
            rest = &rest[field.len()..];
            continue;
        }
        let c = rest.chars().next().expect("rest is not empty");
        if c == '%' {
            out.push_str("%%");
        } else {
            out.push(c);
        }
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// `to_char(timestamp | date, pattern)` with Postgres's patterns.
fn to_char(arrays: &[ArrayRef], rows: usize) -> DfResult<ArrayRef> {
    let times = arrow::compute::cast(
        &arrays[0],
        &DataType::Timestamp(TimeUnit::Microsecond, None),
    )?;
    let times = times.as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
    let patterns = arrays[1].as_string::<i32>();
    let out: StringArray = (0..rows)
        .map(|i| {
            if times.is_null(i) || patterns.is_null(i) {
                return None;
            }
            let t = chrono::DateTime::from_timestamp_micros(times.value(i))?.naive_utc();
            Some(t.format(&strftime_of(patterns.value(i))).to_string())
        })
        .collect();
    Ok(Arc::new(out))
}

pub fn register(ctx: &SessionContext) {
    let functions = [
        // The type of a value, as Postgres names it (`integer`, `text`,
        // `timestamp with time zone`): the type it is sent to clients as.
        Function {
            name: "pg_typeof",
            signature: Signature::any(1, Volatility::Immutable),
            returns: |_| DataType::Utf8,
            body: |arrays, rows| {
                let t = crate::server::encode::pg_type(arrays[0].data_type());
                let name = crate::query::pg_catalog::format_type(i64::from(t.oid()), -1)
                    .unwrap_or_else(|| t.name().to_string());
                Ok(Arc::new(StringArray::from(vec![name; rows])))
            },
        },
        Function {
            name: "current_schemas",
            signature: Signature::any(1, Volatility::Stable),
            returns: |_| text_list(),
            body: |arrays, rows| {
                let implicit = arrays[0].as_boolean_opt();
                Ok(texts_per_row(
                    (0..rows)
                        .map(|i| {
                            let with_implicit =
                                implicit.is_some_and(|b| b.is_valid(i) && b.value(i));
                            let mut schemas = Vec::new();
                            if with_implicit {
                                schemas.push("pg_catalog".to_string());
                            }
                            schemas.push("public".to_string());
                            Some(schemas)
                        })
                        .collect(),
                ))
            },
        },
        Function {
            name: "array_lower",
            signature: Signature::user_defined(Volatility::Immutable),
            returns: |_| DataType::Int32,
            body: |arrays, _| array_bound(arrays, false),
        },
        Function {
            name: "array_upper",
            signature: Signature::user_defined(Volatility::Immutable),
            returns: |_| DataType::Int32,
            body: |arrays, _| array_bound(arrays, true),
        },
        Function {
            name: "parse_ident",
            signature: Signature::one_of(
                vec![
                    TypeSignature::Exact(vec![DataType::Utf8]),
                    TypeSignature::Exact(vec![DataType::Utf8, DataType::Boolean]),
                ],
                Volatility::Immutable,
            ),
            returns: |_| text_list(),
            body: |arrays, _| {
                let text = arrays[0].as_string::<i32>();
                let mut parsed = Vec::with_capacity(text.len());
                for i in 0..text.len() {
                    if text.is_null(i) {
                        parsed.push(None);
                        continue;
                    }
                    match parse_ident(text.value(i)) {
                        Some(p) => parsed.push(Some(p)),
                        None => {
                            return exec_err!(
                                "string is not a valid identifier: \"{}\"",
                                text.value(i)
                            )
                        }
                    }
                }
                Ok(texts_per_row(parsed))
            },
        },
        Function {
            name: "pg_expandarray",
            signature: Signature::any(1, Volatility::Immutable),
            returns: |args| expanded(args.first().cloned().unwrap_or(DataType::Null)),
            body: |arrays, _| expand_array(&arrays[0]),
        },
        Function {
            name: "localtimestamp",
            signature: Signature::nullary(Volatility::Stable),
            returns: |_| DataType::Timestamp(TimeUnit::Microsecond, None),
            body: |_, rows| {
                let now = chrono::Utc::now().timestamp_micros();
                Ok(Arc::new(
                    arrow::array::TimestampMicrosecondArray::from_value(now, rows),
                ))
            },
        },
        Function {
            name: "to_char",
            signature: Signature::user_defined(Volatility::Immutable),
            returns: |_| DataType::Utf8,
            body: to_char,
        },
    ];
    for f in functions {
        ctx.register_udf(ScalarUDF::from(Coerced(f)));
    }
}

/// A function whose arguments are coerced to what its body reads.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Coerced(Function);

impl ScalarUDFImpl for Coerced {
    fn name(&self) -> &str {
        self.0.name()
    }

    fn signature(&self) -> &Signature {
        self.0.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        self.0.return_type(arg_types)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        match (self.0.name, arg_types) {
            ("array_lower" | "array_upper", [list, _]) => Ok(vec![list.clone(), DataType::Int64]),
            ("to_char", [time, _]) if time.is_temporal() => Ok(vec![time.clone(), DataType::Utf8]),
            ("to_char", [other, _]) => {
                exec_err!("to_char takes a timestamp or a date, got {other}")
            }
            (name, args) => exec_err!("{name} does not take {} arguments", args.len()),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        self.0.invoke_with_args(args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idents_parse_as_postgres() {
        assert_eq!(
            parse_ident("public.kpi"),
            Some(vec!["public".into(), "kpi".into()])
        );
        assert_eq!(
            parse_ident("\"My Schema\".\"A\"\"b\""),
            Some(vec!["My Schema".into(), "A\"b".into()])
        );
        assert_eq!(parse_ident("Kpi"), Some(vec!["kpi".into()]));
        assert_eq!(parse_ident("a..b"), None);
    }

    #[test]
    fn to_char_patterns_become_strftime() {
        assert_eq!(strftime_of("YYYY-MM-DD HH24:MI:SS"), "%Y-%m-%d %H:%M:%S");
        assert_eq!(
            strftime_of("DD Mon YYYY \"at\" HH12 AM"),
            "%d %b %Y at %I %p"
        );
        assert_eq!(strftime_of("100%"), "100%%");
    }
}
