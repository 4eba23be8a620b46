//! Watermarks: per split, per instance, and combined over the inputs of an
//! operator (DESIGN §3).
//!
//! Each split tracks the largest watermark its rows have made. An instance's
//! watermark is the minimum over its active splits; a split that has caught
//! up (reached the end of its Kafka partition) and sent nothing for the idle
//! timeout is not active until it sends again, so an idle partition cannot
//! stall every window. An operator with several inputs takes the minimum
//! over its inputs that are not idle. When every input is idle, nothing is
//! pending below any of their watermarks, so the maximum of them stands (as
//! Flink's watermark valve does); without this, the last windows would wait
//! forever for an input that has nothing more to say.

use std::time::{Duration, Instant};

/// What an instance can say about its event time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceTime {
    /// Splits not known yet, or no split has made a watermark yet.
    Unknown,
    Watermark(i64),
    /// No split is active: the instance must not hold back others. Carries
    /// the largest watermark of its idle splits, if any made one.
    Idle(Option<i64>),
}

#[derive(Debug, Clone)]
struct SplitClock {
    /// The largest watermark the split's rows have made.
    running: i64,
    caught_up: bool,
    ended: bool,
    /// When the split last sent rows (or was assigned).
    last_data: Instant,
}

/// The watermark state of the splits of one instance.
#[derive(Debug)]
pub struct SplitClocks {
    splits: Vec<SplitClock>,
    assigned: bool,
    idle_timeout: Option<Duration>,
}

impl SplitClocks {
    pub fn new(idle_timeout: Option<Duration>) -> Self {
        SplitClocks {
            splits: Vec::new(),
            assigned: false,
            idle_timeout,
        }
    }

    pub fn assign(&mut self, count: usize, now: Instant) {
        self.assigned = true;
        self.splits = vec![
            SplitClock {
                running: i64::MIN,
                caught_up: false,
                ended: false,
                last_data: now,
            };
            count
        ];
    }

    /// The split's running watermark, to be advanced by its rows.
    pub fn running(&mut self, split: usize, now: Instant) -> &mut i64 {
        let clock = &mut self.splits[split];
        clock.caught_up = false;
        clock.last_data = now;
        &mut clock.running
    }

    /// Moves every split's watermark up to `wm` (processing time: the
    /// clock), without counting as data.
    pub fn advance_all(&mut self, wm: i64) {
        for clock in &mut self.splits {
            clock.running = clock.running.max(wm);
        }
    }

    /// The largest watermark the split's rows have made.
    pub fn watermark(&self, split: usize) -> i64 {
        self.splits
            .get(split)
            .map(|c| c.running)
            .unwrap_or(i64::MIN)
    }

    pub fn caught_up(&mut self, split: usize) {
        if let Some(c) = self.splits.get_mut(split) {
            c.caught_up = true;
        }
    }

    pub fn ended(&mut self, split: usize) {
        if let Some(c) = self.splits.get_mut(split) {
            c.ended = true;
        }
    }

    /// Every split has ended (an instance without splits is idle, not ended:
    /// a Kafka instance may own no partition).
    pub fn all_ended(&self) -> bool {
        self.assigned && !self.splits.is_empty() && self.splits.iter().all(|s| s.ended)
    }

    fn is_idle(&self, clock: &SplitClock, now: Instant) -> bool {
        match self.idle_timeout {
            Some(timeout) => clock.caught_up && now.duration_since(clock.last_data) >= timeout,
            None => false,
        }
    }

    /// The instance's event time now.
    pub fn current(&self, now: Instant) -> InstanceTime {
        if !self.assigned {
            return InstanceTime::Unknown;
        }
        if self.all_ended() {
            return InstanceTime::Watermark(i64::MAX);
        }
        let mut min: Option<i64> = None;
        let mut idle_max: Option<i64> = None;
        for clock in self.splits.iter().filter(|c| !c.ended) {
            if self.is_idle(clock, now) {
                if clock.running != i64::MIN {
                    idle_max = Some(idle_max.map_or(clock.running, |m: i64| m.max(clock.running)));
                }
                continue;
            }
            min = Some(min.map_or(clock.running, |m: i64| m.min(clock.running)));
        }
        match min {
            None => InstanceTime::Idle(idle_max),
            Some(i64::MIN) => InstanceTime::Unknown,
            Some(wm) => InstanceTime::Watermark(wm),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct InputClock {
    watermark: i64,
    idle: bool,
}

/// The watermark of an operator with several inputs: the minimum over the
/// inputs that are not idle. Never goes back.
#[derive(Debug)]
pub struct WatermarkCombiner {
    inputs: Vec<InputClock>,
    current: i64,
}

impl WatermarkCombiner {
    pub fn new(inputs: usize) -> Self {
        WatermarkCombiner {
            inputs: vec![
                InputClock {
                    watermark: i64::MIN,
                    idle: false,
                };
                inputs
            ],
            current: i64::MIN,
        }
    }

    pub fn current(&self) -> i64 {
        self.current
    }

    /// Input `i` sent rows: it is active again.
    pub fn on_data(&mut self, i: usize) {
        self.inputs[i].idle = false;
    }

    /// Input `i` sent a watermark; returns the new combined watermark if it
    /// advanced.
    pub fn on_watermark(&mut self, i: usize, wm: i64) -> Option<i64> {
        let input = &mut self.inputs[i];
        input.idle = false;
        input.watermark = input.watermark.max(wm);
        self.recompute()
    }

    /// Input `i` became idle; returns the new combined watermark if it
    /// advanced.
    pub fn on_idle(&mut self, i: usize) -> Option<i64> {
        self.inputs[i].idle = true;
        self.recompute()
    }

    fn recompute(&mut self) -> Option<i64> {
        let active_min = self
            .inputs
            .iter()
            .filter(|c| !c.idle)
            .map(|c| c.watermark)
            .min();
        // All idle: nothing is pending below any of their watermarks.
        let candidate = active_min.or_else(|| self.inputs.iter().map(|c| c.watermark).max())?;
        if candidate > self.current {
            self.current = candidate;
            Some(candidate)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_watermark_is_the_minimum_of_active_splits() {
        let t0 = Instant::now();
        let mut c = SplitClocks::new(Some(Duration::from_secs(5)));
        assert_eq!(c.current(t0), InstanceTime::Unknown);
        let mut empty = SplitClocks::new(Some(Duration::from_secs(5)));
        empty.assign(0, t0);
        assert_eq!(empty.current(t0), InstanceTime::Idle(None));
        c.assign(2, t0);
        *c.running(0, t0) = 100;
        assert_eq!(
            c.current(t0),
            InstanceTime::Unknown,
            "split 1 has made no watermark"
        );
        *c.running(1, t0) = 50;
        assert_eq!(c.current(t0), InstanceTime::Watermark(50));
        // Split 1 caught up and stays quiet: after the timeout it is idle.
        c.caught_up(1);
        assert_eq!(
            c.current(t0 + Duration::from_secs(1)),
            InstanceTime::Watermark(50)
        );
        assert_eq!(
            c.current(t0 + Duration::from_secs(6)),
            InstanceTime::Watermark(100)
        );
        // It sends again: active again.
        let t1 = t0 + Duration::from_secs(7);
        *c.running(1, t1) = 60;
        assert_eq!(c.current(t1), InstanceTime::Watermark(60));
        c.ended(0);
        c.ended(1);
        assert_eq!(c.current(t1), InstanceTime::Watermark(i64::MAX));
    }

    #[test]
    fn a_split_with_a_backlog_is_never_idle() {
        let t0 = Instant::now();
        let mut c = SplitClocks::new(Some(Duration::from_millis(1)));
        c.assign(2, t0);
        *c.running(0, t0) = 10;
        *c.running(1, t0) = 20;
        assert_eq!(
            c.current(t0 + Duration::from_secs(60)),
            InstanceTime::Watermark(10)
        );
    }

    #[test]
    fn all_idle_splits_give_their_largest_watermark() {
        let t0 = Instant::now();
        let mut c = SplitClocks::new(Some(Duration::from_secs(1)));
        c.assign(2, t0);
        *c.running(0, t0) = 100;
        c.caught_up(0);
        c.caught_up(1);
        assert_eq!(
            c.current(t0 + Duration::from_secs(2)),
            InstanceTime::Idle(Some(100))
        );
    }

    #[test]
    fn when_every_input_is_idle_the_largest_watermark_stands() {
        // Input 0 made 24 but input 1 (empty) held it back; then both idle.
        let mut w = WatermarkCombiner::new(2);
        assert_eq!(w.on_watermark(0, 24), None);
        assert_eq!(
            w.on_idle(0),
            None,
            "input 1 is active and has made no watermark"
        );
        assert_eq!(w.on_idle(1), Some(24));
    }

    #[test]
    fn combiner_ignores_idle_inputs_and_never_goes_back() {
        let mut w = WatermarkCombiner::new(2);
        assert_eq!(w.on_watermark(0, 10), None);
        assert_eq!(w.on_watermark(1, 5), Some(5));
        assert_eq!(w.on_idle(1), Some(10));
        assert_eq!(
            w.on_watermark(1, 7),
            None,
            "the combined watermark never goes back"
        );
        assert_eq!(w.current(), 10);
        assert_eq!(w.on_watermark(1, 30), None);
        assert_eq!(w.on_watermark(0, 40), Some(30));
    }
}
