//! The `filesystem` sink: writes the rows of a view to files under a
//! directory, one JSON object per line or CSV (`INSERT INTO` a filesystem
//! table, or `CREATE SINK ... WITH ('connector' = 'filesystem', ...)`).
//!
//! It reads what the view's checkpoints commit (the view's log, see
//! `view.rs`), so only views whose rows never change are written: no
//! aggregation, or final window rows. Every rollover interval, each shard's
//! new batches become one file per partition, named after the sink, the
//! shard and the first batch it holds: `part-<sink>-<shard>-<batch>.json`.
//! A file is written as `.part-...inprogress` (hidden: readers skip names
//! that start with a dot), synced, then renamed into place.
//!
//! Exactly-once: before it writes a round of files, the sink saves the
//! batch ranges they hold in the store; after renaming them, it saves the
//! positions past them. After a crash between the two it writes the same
//! ranges again under the same names, which replaces whatever the crash
//! left. So every committed row is in exactly one file.
//!
//! `PARTITIONED BY (a, b)` puts each row under `a=<value>/b=<value>/`, as
//! Flink does, and leaves those columns out of the file (they are in its
//! path). A NULL value goes to `__DEFAULT_PARTITION__`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, RecordBatch, UInt32Array};
use arrow::compute::{concat_batches, take_record_batch};
use arrow::datatypes::{Schema, SchemaRef};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use serde::{Deserialize, Serialize};

use crate::connector::format::FormatSpec;
use crate::connector::Worker;
use crate::error::{Error, Result};
use crate::metrics::{JobMetrics, Part};
use crate::options::Options;
use crate::state::view::ViewLog;
use crate::state::Store;

/// Flink's default rollover interval is 30 minutes; a streaming SQL server
/// that serves its results at once takes seconds.
const DEFAULT_ROLLOVER: Duration = Duration::from_secs(10);
/// Batches of one shard a file holds at most.
const BATCHES_PER_FILE: usize = 1024;
/// How often a stopping sink looks at its flag while it waits.
const NAP: Duration = Duration::from_millis(50);
/// The directory of rows whose partition value is NULL (Flink's
/// `partition.default-name`).
const DEFAULT_PARTITION: &str = "__DEFAULT_PARTITION__";

#[derive(Debug, Clone)]
pub struct FileSinkSpec {
    pub path: PathBuf,
    pub format: FormatSpec,
    /// The columns whose values name each row's directory.
    pub partitions: Vec<String>,
    pub rollover: Duration,
}

impl FileSinkSpec {
    pub fn from_options(opts: &mut Options) -> Result<Self> {
        let path = local_path(&opts.require("path")?)?;
        let commit = opts.take_prefixed("sink.partition-commit.");
        let extractor = opts.take_prefixed("partition.time-extractor.");
        if let Some((key, _)) = commit.first() {
            return Err(Error::not_supported(format!(
                "'sink.partition-commit.{key}': committing partitions (success files, a metastore) is not supported yet; a filesystem sink's files are complete once they have their names"
            )));
        }
        if let Some((key, _)) = extractor.first() {
            return Err(Error::not_supported(format!(
                "'partition.time-extractor.{key}': partition times are for committing partitions, which is not supported yet"
            )));
        }
        // Sluice looks for rows to roll over continuously: any check
        // interval is kept.
        opts.take_duration("sink.rolling-policy.check-interval")?;
        let format = FormatSpec::from_options(opts)?;
        let partitions = opts
            .take("partition.columns")
            .map(|v| {
                v.split(',')
                    .map(|c| c.trim().to_string())
                    .filter(|c| !c.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let rollover = opts
            .take_duration("sink.rolling-policy.rollover-interval")?
            .unwrap_or(DEFAULT_ROLLOVER);
        Ok(FileSinkSpec {
            path,
            format,
            partitions,
            rollover,
        })
    }

    /// Checks the spec against the columns it will write.
    pub fn check(&self, schema: &Schema) -> Result<()> {
        for p in &self.partitions {
            if schema.index_of(p).is_err() {
                return Err(Error::user(
                    crate::error::sqlstate::UNDEFINED_COLUMN,
                    format!("partition column \"{p}\" is not a column of the sink's rows"),
                ));
            }
        }
        if self.partitions.len() == schema.fields().len() {
            return Err(Error::invalid_parameter(
                "a filesystem sink needs a column besides its partition columns",
            ));
        }
        Ok(())
    }
}

/// A local path from a `path` option: a plain path or a `file://` URI.
pub fn local_path(path: &str) -> Result<PathBuf> {
    match path.split_once("://") {
        None => Ok(PathBuf::from(path)),
        Some(("file", rest)) => Ok(PathBuf::from(rest)),
        Some((scheme, _)) => Err(Error::not_supported(format!(
            "path \"{path}\": Sluice reads and writes local files (a path or file://), not {scheme}://"
        ))),
    }
}

/// Where a sink's progress is saved.
fn progress_key(id: u64) -> String {
    format!("filesink/{id:020}")
}

/// A sink's progress: per shard, the next batch to write; the round being
/// written, if one was begun and not finished (shard, first batch, batch
/// after the last); and the rows written before it.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Progress {
    next: Vec<u64>,
    round: Option<Vec<(usize, u64, u64)>>,
    #[serde(default)]
    rows: u64,
}

/// Forgets a dropped sink's progress.
pub fn forget(store: &Store, id: u64) -> Result<()> {
    store.delete_meta(&progress_key(id))
}

/// Starts sink `id` (named `name`): a thread writing the committed
/// batches of `log` (with `shards` shards, rows of `schema`) as files.
pub fn start(
    name: &str,
    id: u64,
    spec: FileSinkSpec,
    log: ViewLog,
    shards: usize,
    schema: SchemaRef,
    store: Arc<Store>,
) -> Result<Worker> {
    spec.check(&schema)?;
    std::fs::create_dir_all(&spec.path).map_err(|e| {
        Error::invalid_parameter(format!(
            "could not create directory \"{}\": {}",
            spec.path.display(),
            crate::error::postgres_style(&e.to_string())
        ))
    })?;
    let metrics = Arc::new(JobMetrics::new(name, 1));
    let mut writer = FileWriter {
        id,
        spec,
        log,
        shards,
        store,
        metrics: metrics.clone(),
    };
    Worker::spawn(format!("sluice-fsink-{id}"), "sink", metrics, move |stop| {
        writer.run(stop)
    })
}

struct FileWriter {
    id: u64,
    spec: FileSinkSpec,
    log: ViewLog,
    shards: usize,
    store: Arc<Store>,
    metrics: Arc<JobMetrics>,
}

impl FileWriter {
    fn run(&mut self, stop: &AtomicBool) -> Result<()> {
        let mut progress = self.load()?;
        progress.next.resize(self.shards, 0);
        self.rows_out().store(progress.rows, Ordering::Relaxed);
        if let Some(round) = progress.round.take() {
            // A crash came in the middle of this round: write it again.
            self.write_round(&round)?;
            self.finish_round(&mut progress, &round)?;
        }
        let mut last = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            if last.elapsed() < self.spec.rollover {
                std::thread::sleep(NAP);
                continue;
            }
            last = Instant::now();
            let round = self.next_round(&progress.next)?;
            if round.is_empty() {
                continue;
            }
            progress.round = Some(round.clone());
            self.save(&progress)?;
            self.write_round(&round)?;
            self.finish_round(&mut progress, &round)?;
        }
        Ok(())
    }

    fn load(&self) -> Result<Progress> {
        match self.store.get_meta(&progress_key(self.id))? {
            None => Ok(Progress::default()),
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                Error::external(format!(
                    "the progress of sink \"{}\" is unreadable: {e}",
                    self.metrics.name
                ))
            }),
        }
    }

    fn save(&self, progress: &Progress) -> Result<()> {
        let value = serde_json::to_vec(progress).map_err(|e| Error::internal(e.to_string()))?;
        self.store.put_meta(&progress_key(self.id), &value)
    }

    fn finish_round(&self, progress: &mut Progress, round: &[(usize, u64, u64)]) -> Result<()> {
        for (shard, _, end) in round {
            progress.next[*shard] = *end;
        }
        progress.round = None;
        progress.rows = self.rows_out().load(Ordering::Relaxed);
        self.save(progress)
    }

    /// The count of rows written, as `sluice.jobs` shows it.
    fn rows_out(&self) -> &std::sync::atomic::AtomicU64 {
        &self.metrics.part(Part::Reader(0)).rows_out
    }

    /// The committed batches not yet written: per shard that has some, its
    /// first and the one after its last (at most a file's worth).
    fn next_round(&self, next: &[u64]) -> Result<Vec<(usize, u64, u64)>> {
        let mut round = Vec::new();
        for (shard, from) in next.iter().enumerate() {
            let mut end = *from;
            self.log.read(shard, *from, BATCHES_PER_FILE, |seq, _| {
                end = seq + 1;
                Ok(())
            })?;
            if end > *from {
                round.push((shard, *from, end));
            }
        }
        Ok(round)
    }

    /// Writes the files of a round: each shard's batches `from..end`, one
    /// file per partition.
    fn write_round(&self, round: &[(usize, u64, u64)]) -> Result<()> {
        let mut rows = 0;
        for (shard, from, end) in round {
            let mut batches = Vec::new();
            self.log
                .read(*shard, *from, (end - from) as usize, |_, batch| {
                    batches.push(batch);
                    Ok(())
                })?;
            let Some(first) = batches.first() else {
                continue;
            };
            let batch = concat_batches(&first.schema(), &batches)?;
            let name = format!("part-{}-{shard}-{from:012}", self.id);
            rows += batch.num_rows() as u64;
            for (dir, part) in self.partition(&batch)? {
                self.write_file(&self.spec.path.join(dir), &name, &part)?;
            }
        }
        // A round written again after a crash was not counted before.
        self.rows_out().fetch_add(rows, Ordering::Relaxed);
        Ok(())
    }

    /// The rows of `batch` by the directory they go to (relative to the
    /// sink's path), without the partition columns.
    fn partition(&self, batch: &RecordBatch) -> Result<Vec<(PathBuf, RecordBatch)>> {
        let schema = batch.schema();
        let data: Vec<usize> = (0..schema.fields().len())
            .filter(|i| !self.spec.partitions.contains(schema.field(*i).name()))
            .collect();
        let data_of = |b: &RecordBatch| b.project(&data);
        if self.spec.partitions.is_empty() {
            return Ok(vec![(PathBuf::new(), batch.clone())]);
        }
        let options = FormatOptions::default();
        let columns: Vec<(&str, ArrayRef)> = self
            .spec
            .partitions
            .iter()
            .map(|p| Ok((p.as_str(), batch.column(schema.index_of(p)?).clone())))
            .collect::<Result<_>>()?;
        let formatters: Vec<ArrayFormatter> = columns
            .iter()
            .map(|(_, c)| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<std::result::Result<_, _>>()?;
        let mut groups: BTreeMap<PathBuf, Vec<u32>> = BTreeMap::new();
        for row in 0..batch.num_rows() {
            let mut dir = PathBuf::new();
            for ((name, column), f) in columns.iter().zip(&formatters) {
                let value = match column.is_null(row) {
                    true => DEFAULT_PARTITION.to_string(),
                    false => escape_path(&f.value(row).to_string()),
                };
                dir.push(format!("{name}={value}"));
            }
            groups.entry(dir).or_default().push(row as u32);
        }
        groups
            .into_iter()
            .map(|(dir, rows)| {
                let part = take_record_batch(batch, &UInt32Array::from(rows))?;
                Ok((dir, data_of(&part)?))
            })
            .collect()
    }

    fn write_file(&self, dir: &Path, name: &str, batch: &RecordBatch) -> Result<()> {
        let failed = |what: &str, e: std::io::Error| {
            Error::external(format!(
                "could not {what} in \"{}\": {}",
                dir.display(),
                crate::error::postgres_style(&e.to_string())
            ))
        };
        std::fs::create_dir_all(dir).map_err(|e| failed("create the directory", e))?;
        let extension = match self.spec.format {
            FormatSpec::Json => "json",
            FormatSpec::Csv(_) => "csv",
        };
        let done = dir.join(format!("{name}.{extension}"));
        let temp = dir.join(format!(".{name}.{extension}.inprogress"));
        let mut file = std::fs::File::create(&temp).map_err(|e| failed("create a file", e))?;
        let mut text = Vec::new();
        match &self.spec.format {
            FormatSpec::Json => {
                let mut writer = arrow::json::LineDelimitedWriter::new(&mut text);
                writer.write(batch)?;
                writer.finish()?;
            }
            FormatSpec::Csv(csv) => {
                let mut writer = arrow::csv::WriterBuilder::new()
                    .with_header(false)
                    .with_delimiter(csv.delimiter)
                    .with_quote(csv.quote)
                    .build(&mut text);
                writer.write(batch)?;
            }
        }
        file.write_all(&text)
            .and_then(|_| file.sync_all())
            .map_err(|e| failed("write a file", e))?;
        std::fs::rename(&temp, &done).map_err(|e| failed("rename a file", e))?;
        Ok(())
    }
}

/// A partition value as a directory name: characters that a path gives
/// meaning to are written `%XX`, as Flink and Hive do.
fn escape_path(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '/' | '\\' | '%' | '=' | ':' | '"' | '#' | '*' | '?' | '\'' | '\n' | '\r' => {
                out.push_str(&format!("%{:02X}", c as u32))
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("%{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    if out.is_empty() || out == "." || out == ".." {
        return format!("%{}", out.len());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_values_escape_path_characters() {
        assert_eq!(escape_path("2024-01-01"), "2024-01-01");
        assert_eq!(escape_path("a/b"), "a%2Fb");
        assert_eq!(escape_path("10:00"), "10%3A00");
        assert_eq!(escape_path(".."), "%2");
    }
}
