//! SQL functions Sluice adds to DataFusion's: Flink's time functions, used in
//! computed columns of sources and in queries alike.
//!
//! Both the streaming planner and the ad-hoc query engine register
//! [`register_all`] on their DataFusion sessions, so an expression means the
//! same thing in a view and in a SELECT.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Int64Type, TimeUnit};
use datafusion::common::{exec_err, plan_err, Result as DfResult, ScalarValue};
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::frontend::types::UTC;

mod extreme;
mod flink;
mod java_time;
pub mod windows;
pub use extreme::retract_extreme;

/// The catalog and default schema name of every Sluice session.
pub const CATALOG: &str = "sluice";
pub const DEFAULT_SCHEMA: &str = "public";

/// A DataFusion session configured the Sluice way: our catalog name, string
/// types as `Utf8` (not views), spans for error positions, and Sluice's
/// functions. Used for planning views and for running queries, so that SQL
/// means the same in both.
pub fn session_context() -> SessionContext {
    let mut config = SessionConfig::new()
        .with_default_catalog_and_schema(CATALOG, DEFAULT_SCHEMA)
        .with_information_schema(true);
    let options = config.options_mut();
    options.sql_parser.map_string_types_to_utf8view = false;
    options.sql_parser.collect_spans = true;
    // Decimal literals are exact (`0.908 * price` is a DECIMAL), as in
    // Flink and Postgres.
    options.sql_parser.parse_float_as_decimal = true;
    options.execution.time_zone = Some(UTC.to_string());
    let ctx = SessionContext::new_with_config(config);
    let mut state = ctx.state();
    register_all(&mut state).expect("registering built-in functions cannot fail");
    SessionContext::new_with_state(state)
}

/// Registers every Sluice function on a DataFusion function registry.
pub fn register_all(registry: &mut dyn FunctionRegistry) -> DfResult<()> {
    registry.register_udf(Arc::new(ScalarUDF::from(ToTimestampLtz::new())))?;
    registry.register_udf(Arc::new(ScalarUDF::from(Proctime::new())))?;
    registry.register_udf(Arc::new(ScalarUDF::from(Power::new())))?;
    registry.register_udf(Arc::new(ScalarUDF::from(windows::Windows::new())))?;
    for f in flink::all() {
        registry.register_udf(Arc::new(f))?;
    }
    Ok(())
}

/// `POWER(x, y)` (and Postgres's `x ^ y`): a double precision, as Flink's
/// POWER and Postgres's `^` on integers and floats return (DataFusion's own
/// keeps integers integral, so `2 ^ -1` would be 0).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Power {
    signature: Signature,
    aliases: Vec<String>,
}

impl Power {
    pub fn new() -> Self {
        Power {
            signature: Signature::user_defined(Volatility::Immutable),
            aliases: vec!["pow".into()],
        }
    }
}

impl Default for Power {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for Power {
    fn name(&self) -> &str {
        "power"
    }

    fn aliases(&self) -> &[String] {
        &self.aliases
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        if arg_types.len() != 2 {
            return plan_err!("power takes 2 arguments, got {}", arg_types.len());
        }
        for t in arg_types {
            if !t.is_numeric() && !t.is_null() {
                return plan_err!("power expects numbers, got {t}");
            }
        }
        Ok(vec![DataType::Float64, DataType::Float64])
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        if let [ColumnarValue::Scalar(base), ColumnarValue::Scalar(exponent)] = args.args.as_slice()
        {
            let value = match (base, exponent) {
                (ScalarValue::Float64(Some(b)), ScalarValue::Float64(Some(e))) => Some(b.powf(*e)),
                _ => None,
            };
            return Ok(ColumnarValue::Scalar(ScalarValue::Float64(value)));
        }
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let out: arrow::array::Float64Array = arrow::compute::binary(
            arrays[0].as_primitive::<arrow::datatypes::Float64Type>(),
            arrays[1].as_primitive::<arrow::datatypes::Float64Type>(),
            f64::powf,
        )?;
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

/// `PROCTIME()`: Flink's processing-time attribute, the time now as a
/// `TIMESTAMP_LTZ(3)`. As a computed column `pt AS PROCTIME()` of a source,
/// windows over `pt` are processing-time windows: a view's pipeline stamps
/// each row when it processes it, and its watermark follows the clock.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Proctime {
    signature: Signature,
}

impl Proctime {
    pub fn new() -> Self {
        Proctime {
            signature: Signature::exact(vec![], Volatility::Volatile),
        }
    }
}

impl Default for Proctime {
    fn default() -> Self {
        Self::new()
    }
}

/// The time now in ms since the epoch.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl ScalarUDFImpl for Proctime {
    fn name(&self) -> &str {
        "proctime"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Timestamp(TimeUnit::Millisecond, Some(UTC.into())))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let now = now_ms();
        let times = TimestampMillisecondArray::from_value(now, args.number_rows);
        Ok(ColumnarValue::Array(Arc::new(times.with_timezone(UTC))))
    }
}

/// `TO_TIMESTAMP_LTZ(epoch, precision)`: Flink's conversion of an epoch number
/// to a `TIMESTAMP_LTZ(3)`; precision 0 means seconds, 3 milliseconds (the
/// default).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ToTimestampLtz {
    signature: Signature,
}

impl ToTimestampLtz {
    pub fn new() -> Self {
        ToTimestampLtz {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl Default for ToTimestampLtz {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for ToTimestampLtz {
    fn name(&self) -> &str {
        "to_timestamp_ltz"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        match arg_types.len() {
            1 | 2 => {}
            n => return plan_err!("to_timestamp_ltz takes 1 or 2 arguments, got {n}"),
        }
        for t in arg_types {
            if !t.is_integer() && !t.is_null() {
                return plan_err!("to_timestamp_ltz expects integer arguments, got {t}");
            }
        }
        Ok(vec![DataType::Int64; arg_types.len()])
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Timestamp(TimeUnit::Millisecond, Some(UTC.into())))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let scale = match args.args.get(1) {
            None => 1,
            Some(ColumnarValue::Scalar(ScalarValue::Int64(Some(0)))) => 1000,
            Some(ColumnarValue::Scalar(ScalarValue::Int64(Some(3)))) => 1,
            Some(other) => {
                return exec_err!(
                    "to_timestamp_ltz precision must be the literal 0 or 3, got {other:?}"
                )
            }
        };
        let tz: Arc<str> = UTC.into();
        match &args.args[0] {
            ColumnarValue::Scalar(v) => {
                let ms = match v {
                    ScalarValue::Int64(v) => v.map(|v| v.saturating_mul(scale)),
                    _ => None,
                };
                Ok(ColumnarValue::Scalar(ScalarValue::TimestampMillisecond(
                    ms,
                    Some(tz),
                )))
            }
            ColumnarValue::Array(a) => {
                let values = a.as_primitive::<Int64Type>();
                let out: TimestampMillisecondArray = if scale == 1 {
                    values.reinterpret_cast()
                } else {
                    values.unary::<_, arrow::datatypes::TimestampMillisecondType>(|v| {
                        v.saturating_mul(scale)
                    })
                };
                let out: ArrayRef = Arc::new(out.with_timezone(tz));
                debug_assert_eq!(out.len(), a.len());
                Ok(ColumnarValue::Array(out))
            }
        }
    }
}
