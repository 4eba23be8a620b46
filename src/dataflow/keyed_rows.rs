//! KeyedRows: the rows one side of a regular join (no time bound) holds,
//! by join key, in a state table, so that they may exceed memory and a
//! checkpoint writes only what changed.
//!
//! Every row of a side may meet any row of the other side to come, so the
//! rows stay until the other side ends. A key's rows are a list of chunks
//! of Arrow's row format, each at most [`CHUNK_BYTES`] (or one row): chunk
//! i of a key is the key under window id i of the table. Chunk 0 starts
//! with the number of chunks. A batch appends each key's new rows at once
//! to its last chunk (copying at most one chunk per key and batch, however
//! many rows the key has), and a checkpoint writes the chunks that changed:
//! for a key with many rows, its last one or two.
//!
//! The table's windows are chunk numbers, not times: nothing expires by
//! watermark.

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::SchemaRef;
use arrow::row::{Row, RowConverter, Rows};

use crate::error::{Error, Result};
use crate::state::table::{StateTable, WindowId};
use crate::state::view::row_codec;
use crate::state::Writes;

/// The size a chunk grows to before the next starts.
const CHUNK_BYTES: usize = 8 << 10;
/// The chunk count at the start of chunk 0.
const HEADER: usize = 4;

pub struct KeyedRows {
    table: StateTable,
    codec: RowConverter,
    schema: SchemaRef,
}

impl KeyedRows {
    pub fn new(table: StateTable, schema: SchemaRef) -> Result<Self> {
        Ok(KeyedRows {
            codec: row_codec(&schema)?,
            table,
            schema,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Chunks (in memory) of the table.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Makes sure every chunk of these keys that exists is in memory.
    fn fetch<'a>(&mut self, keys: impl Iterator<Item = &'a [u8]> + Clone) -> Result<()> {
        if !self.table.spilled() {
            return Ok(());
        }
        self.table.fetch(keys.clone().map(|k| (0, k)))?;
        let table = &self.table;
        let rest: Vec<(WindowId, &[u8])> = keys
            .flat_map(|k| (1..chunks(table, k)).map(move |c| (c as WindowId, k)))
            .collect();
        self.table.fetch(rest.into_iter())
    }

    /// The rows held under each of `keys` (None: a row that meets none):
    /// for each row found, the number of the key it was found under, and
    /// the rows' columns. None when no key has rows.
    pub fn find(
        &mut self,
        keys: &Rows,
        valid: impl Fn(usize) -> bool,
    ) -> Result<Option<(Vec<u32>, Vec<ArrayRef>)>> {
        if self.table.is_empty() {
            return Ok(None);
        }
        let wanted = (0..keys.num_rows())
            .filter(|i| valid(*i))
            .map(|i| keys.row(i).data());
        self.fetch(wanted.clone())?;
        let parser = self.codec.parser();
        let mut at: Vec<u32> = Vec::new();
        let mut found: Vec<Row<'_>> = Vec::new();
        for (i, key) in (0..keys.num_rows()).filter(|i| valid(*i)).zip(wanted) {
            for c in 0..chunks(&self.table, key) {
                let chunk = self
                    .table
                    .get(c as WindowId, key)
                    .ok_or_else(|| Error::internal("a join key's chunk is missing"))?;
                let body = if c == 0 { &chunk[HEADER..] } else { chunk };
                for row in rows_of(body) {
                    at.push(i as u32);
                    found.push(parser.parse(row));
                }
            }
        }
        if at.is_empty() {
            return Ok(None);
        }
        let columns = self.codec.convert_rows(found)?;
        Ok(Some((at, columns)))
    }

    /// Adds the rows of `batch` whose key (`keys`, same rows) is `valid`.
    pub fn insert(
        &mut self,
        batch: &RecordBatch,
        keys: &Rows,
        valid: impl Fn(usize) -> bool,
    ) -> Result<()> {
        let mut order: Vec<usize> = (0..batch.num_rows()).filter(|i| valid(*i)).collect();
        if order.is_empty() {
            return Ok(());
        }
        // Each key's rows together, in arrival order.
        order.sort_by(|a, b| keys.row(*a).cmp(&keys.row(*b)).then(a.cmp(b)));
        let rows = self.codec.convert_columns(batch.columns())?;
        self.fetch(order.iter().map(|i| keys.row(*i).data()))?;
        let mut start = 0;
        while start < order.len() {
            let key = keys.row(order[start]);
            let end = start
                + order[start..]
                    .iter()
                    .take_while(|i| keys.row(**i) == key)
                    .count();
            self.append(
                key.data(),
                order[start..end].iter().map(|i| rows.row(*i).data()),
            )?;
            start = end;
        }
        Ok(())
    }

    /// Lets go of every row of the keys of `keys` that are `valid`.
    pub fn remove(&mut self, keys: &Rows, valid: impl Fn(usize) -> bool) -> Result<()> {
        let wanted = (0..keys.num_rows())
            .filter(|i| valid(*i))
            .map(|i| keys.row(i).data());
        self.fetch(wanted.clone())?;
        for key in wanted {
            for c in (0..chunks(&self.table, key)).rev() {
                self.table.remove(c as WindowId, key);
            }
        }
        Ok(())
    }

    /// Appends rows to a key's last chunk, starting chunks as they fill.
    fn append<'a>(&mut self, key: &[u8], rows: impl Iterator<Item = &'a [u8]>) -> Result<()> {
        let before = chunks(&self.table, key).max(1);
        let mut chunk = before - 1;
        let mut buf: Vec<u8> = match self.table.get(chunk as WindowId, key) {
            Some(v) => v.to_vec(),
            None if chunk == 0 => vec![0; HEADER],
            None => return Err(Error::internal("a join key's last chunk is missing")),
        };
        for row in rows {
            let empty = buf.len() == if chunk == 0 { HEADER } else { 0 };
            if !empty && buf.len() + 4 + row.len() > CHUNK_BYTES {
                self.put(chunk, key, &mut buf, before);
                chunk += 1;
                buf.clear();
            }
            let len =
                u32::try_from(row.len()).map_err(|_| Error::internal("a join row over 4 GiB"))?;
            buf.extend_from_slice(&len.to_be_bytes());
            buf.extend_from_slice(row);
        }
        let after = chunk + 1;
        self.put(chunk, key, &mut buf, after);
        if after != before && chunk != 0 {
            let mut first = self
                .table
                .get(0, key)
                .ok_or_else(|| Error::internal("a join key's first chunk is missing"))?
                .to_vec();
            self.put(0, key, &mut first, after);
        }
        Ok(())
    }

    /// Writes a chunk (chunk 0 with the count of chunks).
    fn put(&mut self, chunk: u32, key: &[u8], buf: &mut [u8], count: u32) {
        if chunk == 0 {
            buf[..HEADER].copy_from_slice(&count.to_be_bytes());
        }
        self.table.put(chunk as WindowId, key, buf);
    }

    /// Lets every row go (the other side has ended: none can meet them).
    pub fn clear(&mut self) {
        self.table.clear();
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    pub fn checkpoint(&mut self, writes: &mut Writes) {
        self.table.checkpoint(writes);
    }

    pub fn committed(&mut self) {
        self.table.committed();
    }

    pub fn cache_use(&self) -> f64 {
        self.table.cache_use()
    }
}

/// The number of chunks of a key (0 if it has none in memory).
fn chunks(table: &StateTable, key: &[u8]) -> u32 {
    table
        .get(0, key)
        .and_then(|v| v.get(..HEADER))
        .map(|h| u32::from_be_bytes(h.try_into().expect("four bytes")))
        .unwrap_or(0)
}

/// The rows of a chunk's body: each its length (4 bytes), then its bytes.
fn rows_of(mut body: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        let len = u32::from_be_bytes(body.get(..4)?.try_into().ok()?) as usize;
        let row = body.get(4..4 + len)?;
        body = &body[4 + len..];
        Some(row)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::row::SortField;
    use std::sync::Arc;

    fn batch(ids: &[i64], names: &[&str]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(ids.to_vec())),
                Arc::new(StringArray::from(names.to_vec())),
            ],
        )
        .unwrap()
    }

    fn keys(b: &RecordBatch) -> Rows {
        RowConverter::new(vec![SortField::new(DataType::Int64)])
            .unwrap()
            .convert_columns(&[b.column(0).clone()])
            .unwrap()
    }

    /// Many rows of one key span chunks, and all of them are found, in
    /// order, for each probe of the key; a key without rows finds none.
    #[test]
    fn a_keys_rows_span_chunks_and_are_all_found() {
        let first = batch(&[1, 2, 1], &["a", "b", "c"]);
        let mut held = KeyedRows::new(StateTable::in_memory(), first.schema()).unwrap();
        held.insert(&first, &keys(&first), |_| true).unwrap();
        let long = "x".repeat(3000);
        for _ in 0..10 {
            let more = batch(&[1, 1], &[&long, "d"]);
            held.insert(&more, &keys(&more), |_| true).unwrap();
        }
        assert!(chunks(&held.table, keys(&first).row(0).data()) > 3);
        let probe = batch(&[1, 3, 2, 1], &["", "", "", ""]);
        let (at, columns) = held.find(&keys(&probe), |i| i != 3).unwrap().unwrap();
        let names = columns[1].as_any().downcast_ref::<StringArray>().unwrap();
        let of_one: Vec<&str> = (0..at.len())
            .filter(|i| at[*i] == 0)
            .map(|i| names.value(i))
            .collect();
        assert_eq!(of_one.len(), 22);
        assert_eq!(&of_one[..3], ["a", "c", long.as_str()]);
        assert_eq!(of_one[21], "d");
        let of_two: Vec<&str> = (0..at.len())
            .filter(|i| at[*i] == 2)
            .map(|i| names.value(i))
            .collect();
        assert_eq!(of_two, ["b"]);
        assert!(at.iter().all(|i| *i == 0 || *i == 2));
        held.clear();
        assert!(held.find(&keys(&probe), |_| true).unwrap().is_none());
    }
}
