//! `__windows(ts, kind, size, step, offset)`: the windows of a TUMBLE, HOP
//! or CUMULATE window table function that each time belongs to, as a list
//! of `{window_start, window_end, window_time}`. An ad-hoc query reads a
//! window table function as its source's rows, each unnested into its
//! windows (see `frontend::window::windows_as_tables`), so that the same
//! SELECT means the same in a view and in batch.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, ListArray, StructArray, TimestampMillisecondArray};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, Fields, TimeUnit, TimestampMillisecondType};
use datafusion::common::{exec_err, plan_err, Result as DfResult, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use crate::dataflow::window::WindowKind;

pub const NAME: &str = "__windows";

/// The kinds' codes, the function's second argument.
pub const TUMBLE: i64 = 0;
pub const HOP: i64 = 1;
pub const CUMULATE: i64 = 2;

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Windows {
    signature: Signature,
}

impl Windows {
    pub fn new() -> Self {
        Windows {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl Default for Windows {
    fn default() -> Self {
        Self::new()
    }
}

/// The fields of one window; `window_time` has the time column's type.
fn window_fields(time: &DataType) -> Fields {
    let time = match time {
        DataType::Timestamp(_, tz) => DataType::Timestamp(TimeUnit::Millisecond, tz.clone()),
        other => other.clone(),
    };
    Fields::from(vec![
        Field::new(
            "window_start",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
        Field::new(
            "window_end",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
        Field::new("window_time", time, false),
    ])
}

fn literal(value: &ColumnarValue) -> DfResult<i64> {
    match value {
        ColumnarValue::Scalar(ScalarValue::Int64(Some(v))) => Ok(*v),
        other => exec_err!("{NAME} takes literal window parameters, got {other:?}"),
    }
}

impl ScalarUDFImpl for Windows {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        let [time, rest @ ..] = arg_types else {
            return plan_err!("{NAME} takes a time and four numbers");
        };
        if rest.len() != 4 || !matches!(time, DataType::Timestamp(..)) {
            return plan_err!("{NAME} takes a timestamp and four numbers, got {arg_types:?}");
        }
        let time = match time {
            DataType::Timestamp(_, tz) => DataType::Timestamp(TimeUnit::Millisecond, tz.clone()),
            other => other.clone(),
        };
        Ok(std::iter::once(time)
            .chain(std::iter::repeat_n(DataType::Int64, 4))
            .collect())
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        let time = arg_types.first().cloned().unwrap_or(DataType::Null);
        Ok(DataType::List(Arc::new(Field::new(
            "item",
            DataType::Struct(window_fields(&time)),
            true,
        ))))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let [time, kind, size, step, offset] = args.args.as_slice() else {
            return exec_err!("{NAME} takes five arguments");
        };
        let (size, step, offset) = (literal(size)?, literal(step)?, literal(offset)?);
        if size <= 0 || step <= 0 {
            return exec_err!("{NAME}: window sizes must be positive");
        }
        let kind = match literal(kind)? {
            TUMBLE => WindowKind::Tumble { size, offset },
            HOP => WindowKind::Hop {
                slide: step,
                size,
                offset,
            },
            CUMULATE => WindowKind::Cumulate { step, size, offset },
            other => return exec_err!("{NAME}: unknown window kind {other}"),
        };
        let times = time.to_array(args.number_rows)?;
        let tz = match times.data_type() {
            DataType::Timestamp(_, tz) => tz.clone(),
            _ => None,
        };
        let times = times.as_primitive::<TimestampMillisecondType>();
        let mut starts = Vec::new();
        let mut ends = Vec::new();
        let mut offsets = Vec::with_capacity(times.len() + 1);
        offsets.push(0i32);
        for i in 0..times.len() {
            if times.is_valid(i) {
                // Earliest window first, as a batch query would list them.
                let at = starts.len();
                kind.for_each_window(times.value(i), |s, e| {
                    starts.push(s);
                    ends.push(e);
                });
                starts[at..].reverse();
                ends[at..].reverse();
            }
            offsets.push(i32::try_from(starts.len()).unwrap_or(i32::MAX));
        }
        let window_times: TimestampMillisecondArray = ends.iter().map(|e| Some(e - 1)).collect();
        let fields = window_fields(times.data_type());
        let columns: Vec<ArrayRef> = vec![
            Arc::new(TimestampMillisecondArray::from(starts)),
            Arc::new(TimestampMillisecondArray::from(ends)),
            Arc::new(window_times.with_timezone_opt(tz)),
        ];
        let windows = StructArray::try_new(fields.clone(), columns, None)?;
        let list = ListArray::try_new(
            Arc::new(Field::new("item", DataType::Struct(fields), true)),
            OffsetBuffer::new(offsets.into()),
            Arc::new(windows),
            times.nulls().cloned(),
        )?;
        Ok(ColumnarValue::Array(Arc::new(list)))
    }
}
