//! `WITH (...)` options: typed access and a clear error for every option that
//! is misspelled, missing or malformed.
//!
//! A consumer takes the options it knows; [`Options::finish`] then rejects
//! whatever is left, as Flink does for unsupported connector options.

use std::time::Duration;

use crate::error::{Error, Result};

/// The stack of every thread that parses, plans or evaluates SQL (the
/// connections' and the dataflow's runtimes, source readers): room for a
/// statement nested [`crate::frontend::parser::MAX_NESTING`] deep in every
/// step that walks it. Only the pages a thread touches take memory.
pub const THREAD_STACK_BYTES: usize = 16 << 20;

pub struct Options {
    /// What the options configure, for messages: `connector "kafka"`.
    subject: String,
    entries: Vec<(String, String)>,
}

impl Options {
    pub fn new(subject: impl Into<String>, entries: &[(String, String)]) -> Self {
        Options {
            subject: subject.into(),
            entries: entries.to_vec(),
        }
    }

    /// Removes and returns an option.
    pub fn take(&mut self, key: &str) -> Option<String> {
        let idx = self.entries.iter().position(|(k, _)| k == key)?;
        Some(self.entries.remove(idx).1)
    }

    /// Removes and returns the first option whose key `matches`.
    pub fn take_matching(&mut self, matches: impl Fn(&str) -> bool) -> Option<String> {
        let idx = self.entries.iter().position(|(k, _)| matches(k))?;
        Some(self.entries.remove(idx).1)
    }

    pub fn require(&mut self, key: &str) -> Result<String> {
        self.take(key).ok_or_else(|| {
            Error::invalid_parameter(format!("{} requires option '{key}'", self.subject))
        })
    }

    /// Removes and returns every option whose key starts with `prefix`, with
    /// the prefix cut off.
    pub fn take_prefixed(&mut self, prefix: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        self.entries.retain(|(k, v)| match k.strip_prefix(prefix) {
            Some(rest) => {
                out.push((rest.to_string(), v.clone()));
                false
            }
            None => true,
        });
        out
    }

    pub fn take_u64(&mut self, key: &str) -> Result<Option<u64>> {
        match self.take(key) {
            None => Ok(None),
            Some(v) => v.trim().parse::<u64>().map(Some).map_err(|_| {
                Error::invalid_parameter(format!(
                    "option '{key}' of {} must be a non-negative integer, got '{v}'",
                    self.subject
                ))
            }),
        }
    }

    pub fn take_bool(&mut self, key: &str) -> Result<Option<bool>> {
        match self.take(key) {
            None => Ok(None),
            Some(v) => match v.trim().to_ascii_lowercase().as_str() {
                "true" => Ok(Some(true)),
                "false" => Ok(Some(false)),
                _ => Err(Error::invalid_parameter(format!(
                    "option '{key}' of {} must be 'true' or 'false', got '{v}'",
                    self.subject
                ))),
            },
        }
    }

    pub fn take_duration(&mut self, key: &str) -> Result<Option<Duration>> {
        match self.take(key) {
            None => Ok(None),
            Some(v) => parse_duration(&v).map(Some).map_err(|e| {
                Error::invalid_parameter(format!("option '{key}' of {}: {e}", self.subject))
            }),
        }
    }

    /// Errors if any option was not taken.
    pub fn finish(self) -> Result<()> {
        match self.entries.first() {
            None => Ok(()),
            Some((k, _)) => Err(Error::invalid_parameter(format!(
                "unknown option '{k}' for {}",
                self.subject
            ))),
        }
    }
}

/// Splits `5 s` or `512MiB` into the number and its unit (trimmed,
/// lowercase); `what` says what the text should have been.
fn number_and_unit(text: &str, what: &str) -> std::result::Result<(f64, String), String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num.parse().map_err(|_| format!("'{text}' is not {what}"))?;
    Ok((value, unit.trim().to_ascii_lowercase()))
}

/// Parses a duration the way Flink writes them: `5 s`, `5s`, `500 ms`,
/// `10 min`, `1 h`, `2 days`, `30 seconds`; a bare number is milliseconds.
pub fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let (value, unit) = number_and_unit(text, "a duration (try '5 s' or '10 min')")?;
    let ms_per_unit = match unit.as_str() {
        "" | "ms" | "milli" | "millis" | "millisecond" | "milliseconds" => 1.0,
        "s" | "sec" | "secs" | "second" | "seconds" => 1_000.0,
        "m" | "min" | "mins" | "minute" | "minutes" => 60_000.0,
        "h" | "hour" | "hours" => 3_600_000.0,
        "d" | "day" | "days" => 86_400_000.0,
        other => return Err(format!("unknown time unit '{other}' in '{text}'")),
    };
    Ok(Duration::from_micros(
        (value * ms_per_unit * 1000.0).round() as u64,
    ))
}

/// Parses a size: `512MiB`, `2 GiB`, `64mb`, `1048576` (bytes).
pub fn parse_bytes(text: &str) -> std::result::Result<usize, String> {
    let (value, unit) = number_and_unit(text, "a size (try '256MiB' or '2GiB')")?;
    let unit_bytes: f64 = match unit.as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        other => return Err(format!("unknown size unit '{other}' in '{text}'")),
    };
    Ok((value * unit_bytes) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_bytes("512MiB"), Ok(512 << 20));
        assert_eq!(parse_bytes("2 GiB"), Ok(2 << 30));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("3 parsecs").is_err());
    }

    #[test]
    fn durations_in_flink_notation() {
        assert_eq!(parse_duration("5 s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(
            parse_duration("500 ms").unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!(parse_duration("10 min").unwrap(), Duration::from_secs(600));
        assert_eq!(
            parse_duration("2 days").unwrap(),
            Duration::from_secs(172_800)
        );
        assert_eq!(parse_duration("250").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5 fortnights").is_err());
    }

    #[test]
    fn unknown_options_are_rejected() {
        let mut o = Options::new(
            "connector \"kafka\"",
            &[("topic".into(), "t".into()), ("tpoic".into(), "x".into())],
        );
        assert_eq!(o.take("topic").as_deref(), Some("t"));
        let err = o.finish().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown option 'tpoic' for connector \"kafka\""
        );
    }
}
