//! The `print` sink connector: each row a view gets, written to the server
//! log as Flink's print connector writes it to standard out: `+I[1, a]` for
//! a row added, `+U[...]` for a group's new row, `-D[...]` (the group's
//! key) for a group removed, after the sink's `print-identifier` and `> `.
//!
//! Rows are printed as the job makes them, before its checkpoint commits
//! them: after a crash, the rows since the last checkpoint are printed
//! again (at-least-once, as Flink's print sink).

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::SchemaRef;
use arrow::row::{RowConverter, SortField};
use arrow::util::display::{ArrayFormatter, FormatOptions};

use crate::error::{Error, Result};

/// Where the printed lines go in the log.
const TARGET: &str = "print";

pub struct Printer {
    /// What each line starts with (`print-identifier`, by default the
    /// sink's name).
    identifier: String,
    /// Decodes the keys of removed groups (None: the view's rows are never
    /// removed).
    keys: Option<RowConverter>,
}

impl Printer {
    pub fn new(identifier: &str, key_schema: Option<&SchemaRef>) -> Result<Self> {
        let keys = match key_schema {
            None => None,
            Some(schema) => Some(RowConverter::new(
                schema
                    .fields()
                    .iter()
                    .map(|f| SortField::new(f.data_type().clone()))
                    .collect(),
            )?),
        };
        Ok(Printer {
            identifier: identifier.to_string(),
            keys,
        })
    }

    /// Rows added.
    pub fn inserts(&self, batch: &RecordBatch) {
        self.print("+I", batch.columns());
    }

    /// Groups' new rows.
    pub fn updates(&self, batch: &RecordBatch) {
        self.print("+U", batch.columns());
    }

    /// Groups removed, by their encoded keys.
    pub fn deletes(&self, keys: &[&[u8]]) -> Result<()> {
        let Some(codec) = self.keys.as_ref().filter(|_| !keys.is_empty()) else {
            return Ok(());
        };
        let parser = codec.parser();
        let rows: Vec<_> = keys.iter().map(|k| parser.parse(k)).collect();
        let columns = codec.convert_rows(rows)?;
        self.print("-D", &columns);
        Ok(())
    }

    fn print(&self, kind: &str, columns: &[ArrayRef]) {
        let Some(rows) = columns.first().map(|c| c.len()) else {
            return;
        };
        let options = FormatOptions::default().with_null("null");
        let formatters: Vec<ArrayFormatter> = match columns
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<std::result::Result<_, _>>()
        {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(target: TARGET, error = %Error::from(e), "a row could not be printed");
                return;
            }
        };
        for row in 0..rows {
            let values: Vec<String> = formatters
                .iter()
                .map(|f| f.value(row).to_string())
                .collect();
            tracing::info!(target: TARGET, "{}> {kind}[{}]", self.identifier, values.join(", "));
        }
    }
}
