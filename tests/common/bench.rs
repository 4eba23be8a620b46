//! What the benchmarks share: their settings from the environment, and
//! the server's CPU time and peak memory from /proc.

/// The number in environment variable `name`, or `default`.
pub fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The CPU time a process has used so far (user + system), in seconds.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command (which may hold spaces) and its ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    // utime and stime are fields 14 and 15 of stat: 11 and 12 after ')'.
    (ticks(11) + ticks(12)) / 100.0
}

/// The most memory a process has held (VmHWM), in MiB.
pub fn peak_memory_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// The server's flags from the environment (`PARALLELISM`,
/// `CHECKPOINT_INTERVAL`, `STATE_CACHE`).
pub fn server_flags() -> Vec<String> {
    let mut flags = Vec::new();
    for (var, flag) in [
        ("PARALLELISM", "--parallelism"),
        ("CHECKPOINT_INTERVAL", "--checkpoint-interval"),
        ("STATE_CACHE", "--state-cache"),
    ] {
        if let Ok(v) = std::env::var(var) {
            flags.extend([flag.to_string(), v]);
        }
    }
    flags
}
