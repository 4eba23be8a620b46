//! The `filesystem` connector: a bounded source over a file or a directory of
//! files, in JSON (one object per line) or CSV.
//!
//! Splits: every file is a split; a file of at least [`PARALLEL_FILE_BYTES`]
//! is cut into one byte range per instance so that all cores decode it. A
//! range owns the records that start inside it. Files are taken in name
//! order and spread over the instances; an instance reads its splits one
//! after another, and only the split being read holds back its watermark.
//! When every split is read, the source's watermark goes to +infinity, which
//! closes every window.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::{Path, PathBuf};

use arrow::datatypes::SchemaRef;

use crate::connector::format::{decode_records, split_lines, FormatSpec, RecordDecoder};
use crate::connector::{EventSender, ReaderContext, SourceEvent, SourceReader, SPLIT_DONE};
use crate::error::{Error, Result};
use crate::options::Options;

/// Files at least this large are read in parallel, one byte range per
/// instance.
pub const PARALLEL_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// How much of a file is read at once.
const CHUNK_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct FileSpec {
    /// `path`: a file or a directory.
    pub path: PathBuf,
    pub format: FormatSpec,
}

impl FileSpec {
    pub fn from_options(opts: &mut Options, _schema: &SchemaRef) -> Result<Self> {
        let path = crate::connector::file_sink::local_path(&opts.require("path")?)?;
        // How a table's rows are written into partitions (INSERT INTO it).
        opts.take_prefixed("partition.");
        let format = FormatSpec::from_options(opts)?;
        Ok(FileSpec { path, format })
    }

    /// The files to read, in name order.
    pub fn files(&self) -> Result<Vec<(PathBuf, u64)>> {
        let meta = std::fs::metadata(&self.path).map_err(|e| {
            Error::invalid_parameter(format!(
                "could not open path \"{}\": {}",
                self.path.display(),
                crate::error::postgres_style(&e.to_string())
            ))
        })?;
        if meta.is_file() {
            return Ok(vec![(self.path.clone(), meta.len())]);
        }
        let mut files = Vec::new();
        for entry in std::fs::read_dir(&self.path)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') || name.starts_with('_') {
                continue;
            }
            let meta = entry.metadata()?;
            if meta.is_file() {
                files.push((entry.path(), meta.len()));
            }
        }
        files.sort();
        Ok(files)
    }
}

/// A byte range of one file.
#[derive(Debug, Clone)]
struct FileSplit {
    path: PathBuf,
    range: Range<u64>,
}

/// Cuts the files into splits and returns those of `instance`.
fn splits_of(files: &[(PathBuf, u64)], instance: usize, parallelism: usize) -> Vec<FileSplit> {
    let mut all = Vec::new();
    for (path, len) in files {
        let pieces = if *len >= PARALLEL_FILE_BYTES {
            parallelism as u64
        } else {
            1
        };
        let step = len.div_ceil(pieces).max(1);
        let mut start = 0;
        while start < *len || (start == 0 && *len == 0) {
            let end = (start + step).min(*len);
            all.push(FileSplit {
                path: path.clone(),
                range: start..end,
            });
            if end == *len {
                break;
            }
            start = end;
        }
    }
    all.into_iter()
        .enumerate()
        .filter(|(i, _)| i % parallelism == instance)
        .map(|(_, s)| s)
        .collect()
}

pub struct FileReader {
    spec: FileSpec,
    ctx: ReaderContext,
    decoder: RecordDecoder,
}

impl FileReader {
    pub fn new(spec: FileSpec, ctx: ReaderContext) -> Result<Self> {
        let decoder = RecordDecoder::new(
            spec.format.clone(),
            ctx.schema.clone(),
            ctx.declared.clone(),
        );
        Ok(FileReader { spec, ctx, decoder })
    }

    /// Reads one split from byte `from` (a line start, or the start of its
    /// range); false if the pipeline has gone away.
    fn read_split(
        &self,
        index: usize,
        split: &FileSplit,
        from: u64,
        progress: &mut Progress,
        out: &EventSender,
    ) -> Result<bool> {
        let open_error = |e: std::io::Error| {
            Error::external(format!(
                "could not read file \"{}\": {}",
                split.path.display(),
                crate::error::postgres_style(&e.to_string())
            ))
        };
        let mut file = File::open(&split.path).map_err(open_error)?;
        let mut pos = from;
        // A range that does not start the file begins after the first line
        // break at or after its start - 1: the record cut by the boundary
        // belongs to the previous range.
        if pos > 0 {
            file.seek(SeekFrom::Start(pos - 1)).map_err(open_error)?;
            let mut skipped = 0u64;
            let mut byte = [0u8; 1];
            loop {
                if file.read(&mut byte).map_err(open_error)? == 0 {
                    return Ok(true);
                }
                skipped += 1;
                if byte[0] == b'\n' {
                    break;
                }
            }
            pos = pos - 1 + skipped;
        }
        let skip_header =
            from == 0 && matches!(&self.spec.format, FormatSpec::Csv(c) if c.ignore_first_line);
        let lines = std::cell::RefCell::new(LineCounter::new(&split.path, pos));
        let mut buf: Vec<u8> = Vec::with_capacity(CHUNK_BYTES + 4096);
        let mut ranges = Vec::new();
        let mut first_chunk = true;
        let mut eof = false;
        // Records whose first byte is before `range.end` belong to us.
        while !eof {
            let old = buf.len();
            buf.resize(old + CHUNK_BYTES, 0);
            let n = file.read(&mut buf[old..]).map_err(open_error)?;
            buf.truncate(old + n);
            if n == 0 {
                eof = true;
                if !buf.is_empty() && *buf.last().expect("non-empty") != b'\n' {
                    buf.push(b'\n');
                }
            }
            let consumed = split_lines(&buf, &mut ranges);
            if first_chunk && skip_header && !ranges.is_empty() {
                ranges.remove(0);
            }
            first_chunk = false;
            // Stop at the first record that starts beyond our range.
            let limit = split.range.end.saturating_sub(pos) as usize;
            let ours = ranges.iter().take_while(|r| r.start < limit).count();
            let past_end = ours < ranges.len() || pos + consumed as u64 >= split.range.end;
            ranges.truncate(ours);
            for chunk in ranges.chunks(self.ctx.batch_size) {
                // Computed only for dead letters.
                let position = |i: usize| match lines.borrow_mut().line_at(chunk[i].start, &buf) {
                    Ok(line) => format!("file {} line {}", split.path.display(), line),
                    Err(_) => format!(
                        "file {} byte {}",
                        split.path.display(),
                        pos + chunk[i].start as u64
                    ),
                };
                let batch = decode_records(&self.ctx, &self.decoder, &buf, chunk, &position)?;
                if let Some((batch, records)) = batch {
                    let positions = records
                        .iter()
                        .map(|r| (pos + chunk[*r].start as u64) as i64)
                        .collect();
                    if !out.send(SourceEvent::Rows {
                        split: index,
                        batch,
                        positions,
                    }) {
                        return Ok(false);
                    }
                }
                // The next line starts after this chunk's last line break.
                let last = chunk.last().expect("chunks are not empty").end;
                let newline = if buf.get(last) == Some(&b'\r') { 2 } else { 1 };
                progress.positions[index] = (pos + (last + newline) as u64) as i64;
                if !progress.barrier(&self.ctx, out) {
                    return Ok(false);
                }
            }
            if past_end {
                break;
            }
            lines.borrow_mut().advance(&buf[..consumed]);
            buf.drain(..consumed);
            pos += consumed as u64;
        }
        Ok(true)
    }
}

fn count_newlines(bytes: &[u8]) -> u64 {
    memchr::memchr_iter(b'\n', bytes).count() as u64
}

/// Line numbers for dead letters: counted from the start of the split's
/// buffer; for a split that does not start the file, the lines before it are
/// counted once, when first needed.
struct LineCounter {
    path: PathBuf,
    /// Byte offset in the file of the start of the current buffer.
    buffer_offset: u64,
    /// Line number (1-based) of the start of the buffer, once known.
    buffer_line: Option<u64>,
}

impl LineCounter {
    fn new(path: &Path, offset: u64) -> Self {
        LineCounter {
            path: path.to_path_buf(),
            buffer_offset: offset,
            buffer_line: (offset == 0).then_some(1),
        }
    }

    /// The line number of byte `at` of the current buffer.
    fn line_at(&mut self, at: usize, buf: &[u8]) -> Result<u64> {
        let base = match self.buffer_line {
            Some(l) => l,
            None => {
                let mut file = File::open(&self.path)?;
                let mut remaining = self.buffer_offset;
                let mut count = 1u64;
                let mut block = vec![0u8; 1 << 20];
                while remaining > 0 {
                    let want = remaining.min(block.len() as u64) as usize;
                    let n = file.read(&mut block[..want])?;
                    if n == 0 {
                        break;
                    }
                    count += count_newlines(&block[..n]);
                    remaining -= n as u64;
                }
                self.buffer_line = Some(count);
                count
            }
        };
        Ok(base + count_newlines(&buf[..at]))
    }

    fn advance(&mut self, consumed: &[u8]) {
        self.buffer_offset += consumed.len() as u64;
        if let Some(l) = &mut self.buffer_line {
            *l += count_newlines(consumed);
        }
    }
}

/// Where each split of a reader is, for barriers.
struct Progress {
    positions: Vec<i64>,
    seen: u64,
}

impl Progress {
    /// Sends a barrier if one was asked for; false if the pipeline is gone.
    fn barrier(&mut self, ctx: &ReaderContext, out: &EventSender) -> bool {
        match ctx.poll_barrier(&mut self.seen) {
            Some(epoch) => out.send(ctx.barrier(epoch, self.positions.clone())),
            None => true,
        }
    }
}

impl FileSplit {
    /// The split's name in checkpoints.
    fn name(&self) -> String {
        format!("{}@{}", self.path.display(), self.range.start)
    }
}

impl SourceReader for FileReader {
    fn run(self: Box<Self>, out: &EventSender) -> Result<()> {
        let files = self.spec.files()?;
        let splits = splits_of(&files, self.ctx.instance, self.ctx.parallelism);
        let names: Vec<String> = splits.iter().map(FileSplit::name).collect();
        let mut progress = Progress {
            positions: splits
                .iter()
                .zip(&names)
                .map(|(s, name)| {
                    self.ctx
                        .resume_position(name)
                        .unwrap_or(s.range.start as i64)
                })
                .collect(),
            seen: self.ctx.barriers.current(),
        };
        if !out.send(SourceEvent::Assigned { names }) {
            return Ok(());
        }
        for (i, split) in splits.iter().enumerate() {
            let from = progress.positions[i];
            if from != SPLIT_DONE
                && !self.read_split(i, split, from.max(0) as u64, &mut progress, out)?
            {
                return Ok(());
            }
            progress.positions[i] = SPLIT_DONE;
            if !out.send(SourceEvent::SplitEnd { split: i }) || !progress.barrier(&self.ctx, out) {
                return Ok(());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_files_are_cut_into_one_range_per_instance() {
        let files = vec![
            (PathBuf::from("a"), 10),
            (PathBuf::from("b"), PARALLEL_FILE_BYTES + 1),
        ];
        let s0 = splits_of(&files, 0, 2);
        let s1 = splits_of(&files, 1, 2);
        assert_eq!(s0.len() + s1.len(), 3);
        let mut b_ranges: Vec<Range<u64>> = s0
            .iter()
            .chain(s1.iter())
            .filter(|s| s.path == Path::new("b"))
            .map(|s| s.range.clone())
            .collect();
        b_ranges.sort_by_key(|r| r.start);
        assert_eq!(b_ranges[0].start, 0);
        assert_eq!(b_ranges[0].end, b_ranges[1].start);
        assert_eq!(b_ranges[1].end, PARALLEL_FILE_BYTES + 1);
    }
}
