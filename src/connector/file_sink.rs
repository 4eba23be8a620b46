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
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, RecordBatch, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::datatypes::{Schema, SchemaRef};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use serde::{Deserialize, Serialize};

use crate::connector::format::FormatSpec;
use crate::connector::Worker;
use crate::error::{Error, Result};
use crate::metrics::{JobMetrics, JobStatus, Part};
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
    /// When a partition is complete, and marked so with a success file.
    pub commit: Option<PartitionCommit>,
}

/// Flink's partition commit with its `success-file` policy: an empty
/// `_SUCCESS` file in a partition's directory says that no more rows will
/// come into it.
#[derive(Debug, Clone)]
pub struct PartitionCommit {
    /// `partition-time`: once the watermark passes the partition's time
    /// (from `partition.time-extractor.timestamp-pattern`, `$dt $hm:00`)
    /// plus the delay. `process-time`: the delay after its first rows.
    pub partition_time: Option<String>,
    pub delay: Duration,
    pub file_name: String,
}

impl PartitionCommit {
    fn from_options(opts: &mut Options) -> Result<Option<Self>> {
        let trigger = opts.take("sink.partition-commit.trigger");
        let delay = opts.take_duration("sink.partition-commit.delay")?;
        let policy = opts.take("sink.partition-commit.policy.kind");
        let file_name = opts.take("sink.partition-commit.success-file.name");
        let pattern = opts.take("partition.time-extractor.timestamp-pattern");
        if let Some(kind) = opts.take("partition.time-extractor.kind") {
            if !kind.eq_ignore_ascii_case("default") {
                return Err(Error::not_supported(format!(
                    "'partition.time-extractor.kind' = '{kind}': Sluice has the default extractor (a timestamp pattern)"
                )));
            }
        }
        if let Some(zone) = opts.take("sink.partition-commit.watermark-time-zone") {
            if !zone.eq_ignore_ascii_case("utc") {
                return Err(Error::not_supported(format!(
                    "'sink.partition-commit.watermark-time-zone' = '{zone}': partition times are UTC"
                )));
            }
        }
        for key in [
            "partition.time-extractor.timestamp-formatter",
            "partition.time-extractor.class",
        ] {
            if opts.take(key).is_some() {
                return Err(Error::not_supported(format!(
                    "'{key}': partition times are read with 'partition.time-extractor.timestamp-pattern' as yyyy-MM-dd HH:mm:ss"
                )));
            }
        }
        let Some(policy) = policy else {
            if trigger.is_some() || delay.is_some() {
                return Err(Error::invalid_parameter(
                    "a partition commit needs 'sink.partition-commit.policy.kind' = 'success-file'",
                ));
            }
            return Ok(None);
        };
        for kind in policy.split(',').map(|k| k.trim().to_ascii_lowercase()) {
            if kind != "success-file" {
                return Err(Error::not_supported(format!(
                    "'sink.partition-commit.policy.kind' '{kind}': Sluice commits partitions with success files ('success-file'); it has no metastore"
                )));
            }
        }
        let partition_time = match trigger.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("process-time") => None,
            Some("partition-time") => Some(pattern.unwrap_or_default()),
            Some(other) => {
                return Err(Error::invalid_parameter(format!(
                    "invalid 'sink.partition-commit.trigger' \"{other}\"; use partition-time or process-time"
                )))
            }
        };
        Ok(Some(PartitionCommit {
            partition_time,
            delay: delay.unwrap_or(Duration::ZERO),
            file_name: file_name.unwrap_or_else(|| "_SUCCESS".into()),
        }))
    }

    /// When the partition with these values (column, value) may be
    /// committed, in ms since the epoch; None if its time cannot be read
    /// from them.
    fn time(&self, values: &[(String, String)]) -> Option<i64> {
        let delay = self.delay.as_millis() as i64;
        let Some(pattern) = &self.partition_time else {
            return Some(chrono::Utc::now().timestamp_millis() + delay);
        };
        let text = match pattern.is_empty() {
            // Flink's default: the first partition value is the time.
            true => values.first()?.1.clone(),
            false => {
                let mut text = pattern.clone();
                // Longer names first, so that $dt does not eat $dtx.
                let mut sorted: Vec<&(String, String)> = values.iter().collect();
                sorted.sort_by_key(|(c, _)| std::cmp::Reverse(c.len()));
                for (column, value) in sorted {
                    text = text.replace(&format!("${column}"), value);
                }
                text
            }
        };
        let time = chrono::NaiveDateTime::parse_from_str(text.trim(), "%Y-%m-%d %H:%M:%S")
            .ok()
            .or_else(|| {
                chrono::NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
                    .ok()
                    .and_then(|d| d.and_hms_opt(0, 0, 0))
            })?;
        Some(time.and_utc().timestamp_millis() + delay)
    }
}

impl FileSinkSpec {
    pub fn from_options(opts: &mut Options) -> Result<Self> {
        let path = local_path(&opts.require("path")?)?;
        let commit = PartitionCommit::from_options(opts)?;
        // Sluice looks for rows to roll over continuously: any check
        // interval is kept.
        opts.take_duration("sink.rolling-policy.check-interval")?;
        let format = FormatSpec::from_options(opts)?;
        let partitions: Vec<String> = opts
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
        if commit.is_some() && partitions.is_empty() {
            return Err(Error::invalid_parameter(
                "a partition commit is for a table with PARTITIONED BY",
            ));
        }
        Ok(FileSinkSpec {
            path,
            format,
            partitions,
            rollover,
            commit,
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

/// A partition's values: (column, value as text).
type Values = Vec<(String, String)>;

/// A partition's rows: its directory, its values and the rows without the
/// partition columns.
type Partition = (PathBuf, Values, RecordBatch);

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
    /// Partitions written and not committed yet: their directory (relative
    /// to the path) and when they may be committed (ms since the epoch).
    #[serde(default)]
    pending: BTreeMap<String, i64>,
}

/// Forgets a dropped sink's progress.
pub fn forget(store: &Store, id: u64) -> Result<()> {
    store.delete_meta(&progress_key(id))
}

/// Starts sink `id` (named `name`): a thread writing the committed
/// batches of `log` (with `shards` shards, rows of `schema`) as files.
/// When the job that fills the log (`upstream`) has finished, its last rows
/// are written at once, and the sink then finishes too.
#[allow(clippy::too_many_arguments)]
pub fn start(
    name: &str,
    id: u64,
    spec: FileSinkSpec,
    log: ViewLog,
    shards: usize,
    schema: SchemaRef,
    store: Arc<Store>,
    upstream: Option<Arc<JobMetrics>>,
) -> Result<Worker> {
    spec.check(&schema)?;
    std::fs::create_dir_all(&spec.path).map_err(|e| {
        Error::invalid_parameter(format!(
            "could not create directory \"{}\": {}",
            spec.path.display(),
            crate::error::postgres_style(&e.to_string())
        ))
    })?;
    let metrics = Arc::new(JobMetrics::new(name, 1, 1));
    let mut writer = FileWriter {
        id,
        spec,
        log,
        shards,
        store,
        metrics: metrics.clone(),
        upstream,
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
    /// The job that fills the log: once it has finished, nothing waits for
    /// the rollover interval.
    upstream: Option<Arc<JobMetrics>>,
}

impl FileWriter {
    fn run(&mut self, stop: &AtomicBool) -> Result<()> {
        let mut progress = self.load()?;
        progress.next.resize(self.shards, 0);
        self.rows_out().store(progress.rows, Ordering::Relaxed);
        if let Some(round) = progress.round.take() {
            // A crash came in the middle of this round: write it again.
            let written = self.write_round(&round)?;
            self.note_partitions(&mut progress, written);
            self.finish_round(&mut progress, &round)?;
        }
        let mut last = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let ended = self
                .upstream
                .as_ref()
                .is_some_and(|m| m.status().0 == JobStatus::Finished);
            if !ended && last.elapsed() < self.spec.rollover {
                std::thread::sleep(NAP);
                continue;
            }
            last = Instant::now();
            let round = self.next_round(&progress.next)?;
            if !round.is_empty() {
                progress.round = Some(round.clone());
                self.save(&progress)?;
                let written = self.write_round(&round)?;
                self.note_partitions(&mut progress, written);
                self.finish_round(&mut progress, &round)?;
            }
            self.commit_partitions(&mut progress)?;
            if ended && round.is_empty() {
                if progress.pending.is_empty() {
                    self.metrics.set_finished();
                }
                std::thread::sleep(NAP);
            }
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

    /// Notes the partitions a round wrote, to commit when their time comes.
    fn note_partitions(&self, progress: &mut Progress, written: Vec<(PathBuf, Values)>) {
        let Some(commit) = &self.spec.commit else {
            return;
        };
        for (dir, values) in written {
            let key = dir.to_string_lossy().to_string();
            if progress.pending.contains_key(&key) {
                continue;
            }
            match commit.time(&values) {
                Some(at) => {
                    progress.pending.insert(key, at);
                }
                None => tracing::warn!(
                    sink = %self.metrics.name,
                    partition = %key,
                    "the partition's time cannot be read from its values; it is not committed"
                ),
            }
        }
    }

    /// Writes the success file of each pending partition whose time has
    /// come: the watermark the view committed has passed it (partition-time),
    /// or the clock has (process-time).
    fn commit_partitions(&self, progress: &mut Progress) -> Result<()> {
        let Some(commit) = &self.spec.commit else {
            return Ok(());
        };
        if progress.pending.is_empty() {
            return Ok(());
        }
        let now = match commit.partition_time {
            None => chrono::Utc::now().timestamp_millis(),
            Some(_) => {
                let mut low = i64::MAX;
                for shard in 0..self.shards {
                    low = low.min(self.log.watermark(shard)?.unwrap_or(i64::MIN));
                }
                low
            }
        };
        let due: Vec<String> = progress
            .pending
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(dir, _)| dir.clone())
            .collect();
        if due.is_empty() {
            return Ok(());
        }
        for dir in &due {
            let path = self.spec.path.join(dir).join(&commit.file_name);
            std::fs::File::create(&path).map_err(|e| {
                Error::external(format!(
                    "could not write \"{}\": {}",
                    path.display(),
                    crate::error::postgres_style(&e.to_string())
                ))
            })?;
            progress.pending.remove(dir);
        }
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
            let end = self.log.end(shard, *from, BATCHES_PER_FILE)?;
            if end > *from {
                round.push((shard, *from, end));
            }
        }
        Ok(round)
    }

    /// Writes the files of a round: each shard's batches `from..end`, one
    /// file per partition. Batches are read and written one at a time, so
    /// a round of millions of rows takes the memory of one batch.
    fn write_round(&self, round: &[(usize, u64, u64)]) -> Result<Vec<(PathBuf, Values)>> {
        let mut rows = 0;
        let mut written = Vec::new();
        for (shard, from, end) in round {
            let name = format!("part-{}-{shard}-{from:012}", self.id);
            let mut files: BTreeMap<PathBuf, (Values, PartFile)> = BTreeMap::new();
            self.log
                .read(*shard, *from, (end - from) as usize, |_, batch| {
                    rows += batch.num_rows() as u64;
                    for (dir, values, part) in self.partition(&batch)? {
                        let file = match files.entry(dir) {
                            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                            std::collections::btree_map::Entry::Vacant(e) => {
                                let file =
                                    self.create_file(&self.spec.path.join(e.key()), &name)?;
                                e.insert((values, file))
                            }
                        };
                        self.append(&mut file.1, &part)?;
                    }
                    Ok(())
                })?;
            for (dir, (values, file)) in files {
                file.close()?;
                written.push((dir, values));
            }
        }
        // A round written again after a crash was not counted before.
        self.rows_out().fetch_add(rows, Ordering::Relaxed);
        Ok(written)
    }

    /// The rows of `batch` by the directory they go to (relative to the
    /// sink's path), without the partition columns.
    fn partition(&self, batch: &RecordBatch) -> Result<Vec<Partition>> {
        let schema = batch.schema();
        let data: Vec<usize> = (0..schema.fields().len())
            .filter(|i| !self.spec.partitions.contains(schema.field(*i).name()))
            .collect();
        let data_of = |b: &RecordBatch| b.project(&data);
        if self.spec.partitions.is_empty() {
            return Ok(vec![(PathBuf::new(), Vec::new(), batch.clone())]);
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
        // Rows by their partition values, written into one reused key (no
        // allocation per row): each value after its length, so that no two
        // lists of values share a key. A group's directory is made once.
        let write_value =
            |out: &mut String, column: &ArrayRef, f: &ArrayFormatter, row: usize| match column
                .is_null(row)
            {
                true => out.push_str(DEFAULT_PARTITION),
                false => {
                    let _ = write!(out, "{}", f.value(row));
                }
            };
        let mut index: std::collections::HashMap<String, usize> = Default::default();
        let mut groups: Vec<(PathBuf, Values, Vec<u32>)> = Vec::new();
        let mut key = String::new();
        let mut text = String::new();
        for row in 0..batch.num_rows() {
            key.clear();
            for ((_, column), f) in columns.iter().zip(&formatters) {
                text.clear();
                write_value(&mut text, column, f, row);
                let _ = write!(key, "{}:{text}", text.len());
            }
            let group = match index.get(key.as_str()) {
                Some(g) => *g,
                None => {
                    let mut dir = PathBuf::new();
                    let mut values = Vec::with_capacity(columns.len());
                    for ((name, column), f) in columns.iter().zip(&formatters) {
                        let mut v = String::new();
                        write_value(&mut v, column, f, row);
                        dir.push(format!("{name}={}", escape_path(&v)));
                        values.push((name.to_string(), v));
                    }
                    index.insert(key.clone(), groups.len());
                    groups.push((dir, values, Vec::new()));
                    groups.len() - 1
                }
            };
            groups[group].2.push(row as u32);
        }
        groups.sort_by(|a, b| a.0.cmp(&b.0));
        let whole = groups.len() == 1;
        groups
            .into_iter()
            .map(|(dir, values, rows)| {
                let part = match whole {
                    true => batch.clone(),
                    false => take_record_batch(batch, &UInt32Array::from(rows))?,
                };
                Ok((dir, values, data_of(&part)?))
            })
            .collect()
    }

    /// Opens file `name` of directory `dir`, hidden until it is closed.
    fn create_file(&self, dir: &Path, name: &str) -> Result<PartFile> {
        std::fs::create_dir_all(dir).map_err(|e| file_error("create the directory", dir, e))?;
        let extension = match self.spec.format {
            FormatSpec::Json(_) => "json",
            FormatSpec::Csv(_) => "csv",
        };
        let done = dir.join(format!("{name}.{extension}"));
        let temp = dir.join(format!(".{name}.{extension}.inprogress"));
        let file = std::fs::File::create(&temp).map_err(|e| file_error("create a file", dir, e))?;
        Ok(PartFile {
            writer: std::io::BufWriter::with_capacity(1 << 20, file),
            temp,
            done,
        })
    }

    /// Appends the rows of `batch` to `file`.
    fn append(&self, file: &mut PartFile, batch: &RecordBatch) -> Result<()> {
        let out = &mut file.writer;
        match &self.spec.format {
            FormatSpec::Json(json) => {
                let mut builder = arrow::json::WriterBuilder::new();
                if !json.iso_times {
                    // Flink's SQL spelling of times: `2024-01-01 10:00:00.123`.
                    builder = builder
                        .with_timestamp_format("%Y-%m-%d %H:%M:%S%.3f".into())
                        .with_timestamp_tz_format("%Y-%m-%d %H:%M:%S%.3fZ".into());
                }
                let mut writer = builder.build::<_, arrow::json::writer::LineDelimited>(out);
                writer.write(batch)?;
                writer.finish()?;
            }
            FormatSpec::Csv(csv) => {
                let mut writer = arrow::csv::WriterBuilder::new()
                    .with_header(false)
                    .with_delimiter(csv.delimiter)
                    .with_quote(csv.quote)
                    // Flink's CSV spelling of times: `2024-01-01 10:00:00.123`.
                    .with_timestamp_format("%Y-%m-%d %H:%M:%S%.3f".into())
                    .with_timestamp_tz_format("%Y-%m-%d %H:%M:%S%.3fZ".into())
                    .build(out);
                writer.write(batch)?;
            }
        }
        Ok(())
    }
}

/// A file being written: hidden (`.name.inprogress`) until closed.
struct PartFile {
    writer: std::io::BufWriter<std::fs::File>,
    temp: PathBuf,
    done: PathBuf,
}

impl PartFile {
    /// Syncs the file and renames it into place.
    fn close(self) -> Result<()> {
        let dir = self.temp.parent().unwrap_or(Path::new(""));
        let file = self
            .writer
            .into_inner()
            .map_err(|e| file_error("write a file", dir, e.into_error()))?;
        file.sync_all()
            .map_err(|e| file_error("write a file", dir, e))?;
        std::fs::rename(&self.temp, &self.done).map_err(|e| file_error("rename a file", dir, e))
    }
}

fn file_error(what: &str, dir: &Path, e: std::io::Error) -> Error {
    Error::external(format!(
        "could not {what} in \"{}\": {}",
        dir.display(),
        crate::error::postgres_style(&e.to_string())
    ))
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
