//! `__retract_min(x, sign)` and `__retract_max(x, sign)`: MIN and MAX over
//! rows that can be taken back (see `frontend/retract.rs`). The state is
//! the multiset of values, each with its count (+1 for a row added, -1 for
//! one taken back); the result is the least (greatest) value whose count is
//! positive. Partial states may hold negative counts: a row taken back in
//! one instance may have been added in another's earlier partial.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, Field, FieldRef, Int64Type};
use datafusion::common::{exec_err, Result as DfResult, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Signature, Volatility,
};

/// The UDAF of MIN (`max` false) or MAX over retractable rows.
pub fn retract_extreme(max: bool) -> Arc<AggregateUDF> {
    Arc::new(AggregateUDF::from(RetractExtreme {
        max,
        signature: Signature::any(2, Volatility::Immutable),
    }))
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct RetractExtreme {
    max: bool,
    signature: Signature,
}

impl AggregateUDFImpl for RetractExtreme {
    fn name(&self) -> &str {
        if self.max {
            "__retract_max"
        } else {
            "__retract_min"
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        match arg_types.first() {
            Some(t) => Ok(t.clone()),
            None => exec_err!("{} takes a value and a sign", self.name()),
        }
    }

    fn accumulator(&self, args: AccumulatorArgs) -> DfResult<Box<dyn Accumulator>> {
        Ok(Box::new(Multiset {
            max: self.max,
            data_type: args.return_field.data_type().clone(),
            counts: BTreeMap::new(),
        }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> DfResult<Vec<FieldRef>> {
        let values = args.return_field.data_type().clone();
        Ok(vec![
            Arc::new(Field::new_list(
                format!("{}[values]", args.name),
                Field::new_list_field(values, true),
                true,
            )),
            Arc::new(Field::new_list(
                format!("{}[counts]", args.name),
                Field::new_list_field(DataType::Int64, true),
                true,
            )),
        ])
    }
}

/// A value ordered as SQL orders it (values of one type always compare).
#[derive(Debug, Clone, PartialEq)]
struct Value(ScalarValue);

impl Eq for Value {}

impl PartialOrd for Value {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Value {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0
            .partial_cmp(&other.0)
            .unwrap_or(std::cmp::Ordering::Equal)
    }
}

#[derive(Debug)]
struct Multiset {
    max: bool,
    data_type: DataType,
    counts: BTreeMap<Value, i64>,
}

impl Multiset {
    fn add(&mut self, values: &ArrayRef, counts: impl Fn(usize) -> i64) -> DfResult<()> {
        for i in 0..values.len() {
            if values.is_null(i) {
                continue;
            }
            let value = Value(ScalarValue::try_from_array(values, i)?);
            let count = self.counts.entry(value.clone()).or_insert(0);
            *count += counts(i);
            if *count == 0 {
                self.counts.remove(&value);
            }
        }
        Ok(())
    }
}

impl Accumulator for Multiset {
    fn update_batch(&mut self, values: &[ArrayRef]) -> DfResult<()> {
        let [x, sign] = values else {
            return exec_err!("a retractable MIN or MAX takes a value and a sign");
        };
        let sign = sign.as_primitive::<Int64Type>().clone();
        self.add(x, |i| sign.value(i))
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> DfResult<()> {
        let [values, counts] = states else {
            return exec_err!("a retractable MIN or MAX state has values and counts");
        };
        let (values, counts) = (values.as_list::<i32>(), counts.as_list::<i32>());
        for row in 0..values.len() {
            if values.is_null(row) || counts.is_null(row) {
                continue;
            }
            let counted = counts.value(row);
            let counted = counted.as_primitive::<Int64Type>().clone();
            self.add(&values.value(row), |i| counted.value(i))?;
        }
        Ok(())
    }

    fn state(&mut self) -> DfResult<Vec<ScalarValue>> {
        let values: Vec<ScalarValue> = self.counts.keys().map(|v| v.0.clone()).collect();
        let counts: Vec<ScalarValue> = self
            .counts
            .values()
            .map(|c| ScalarValue::Int64(Some(*c)))
            .collect();
        Ok(vec![
            ScalarValue::List(ScalarValue::new_list_nullable(&values, &self.data_type)),
            ScalarValue::List(ScalarValue::new_list_nullable(&counts, &DataType::Int64)),
        ])
    }

    fn evaluate(&mut self) -> DfResult<ScalarValue> {
        let present = |(v, c): (&Value, &i64)| (*c > 0).then(|| v.0.clone());
        let found = if self.max {
            self.counts.iter().rev().find_map(present)
        } else {
            self.counts.iter().find_map(present)
        };
        match found {
            Some(v) => Ok(v),
            None => ScalarValue::try_from(&self.data_type),
        }
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
            + self
                .counts
                .keys()
                .map(|v| v.0.size() + 8 + 32)
                .sum::<usize>()
    }
}
