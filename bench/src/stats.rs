//! Latency summaries and the small parsers the subcommands share.

use std::time::Duration;

/// Summary of a set of durations, in microseconds.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// Number of observations.
    pub count: usize,
    /// Arithmetic mean.
    pub mean_us: f64,
    /// Median (nearest rank).
    pub p50_us: f64,
    /// 99th percentile (nearest rank).
    pub p99_us: f64,
    /// Largest observation.
    pub max_us: f64,
}

impl Summary {
    /// Summarizes `samples` (sorted in place); all zero when empty.
    pub fn of(samples: &mut [Duration]) -> Summary {
        if samples.is_empty() {
            return Summary {
                count: 0,
                mean_us: 0.0,
                p50_us: 0.0,
                p99_us: 0.0,
                max_us: 0.0,
            };
        }
        samples.sort_unstable();
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        let total: f64 = samples.iter().map(|d| us(*d)).sum();
        Summary {
            count: samples.len(),
            mean_us: total / samples.len() as f64,
            p50_us: us(samples[rank(samples.len(), 0.50)]),
            p99_us: us(samples[rank(samples.len(), 0.99)]),
            max_us: us(samples[samples.len() - 1]),
        }
    }

    /// The summary as a JSON object with the given unit suffix (`us` or `ms`).
    pub fn json(&self, unit: Unit) -> serde_json::Value {
        let s = unit.suffix();
        let mut m = serde_json::Map::new();
        m.insert("count".into(), self.count.into());
        m.insert(format!("mean_{s}"), round3(unit.of_us(self.mean_us)).into());
        m.insert(format!("p50_{s}"), round3(unit.of_us(self.p50_us)).into());
        m.insert(format!("p99_{s}"), round3(unit.of_us(self.p99_us)).into());
        m.insert(format!("max_{s}"), round3(unit.of_us(self.max_us)).into());
        m.into()
    }

    /// `p50 … p99 … max …` in the given unit, for the human summary.
    pub fn human(&self, unit: Unit) -> String {
        let s = unit.suffix();
        format!(
            "mean {:.3} {s}, p50 {:.3} {s}, p99 {:.3} {s}, max {:.3} {s} (n={})",
            unit.of_us(self.mean_us),
            unit.of_us(self.p50_us),
            unit.of_us(self.p99_us),
            unit.of_us(self.max_us),
            self.count
        )
    }
}

/// Unit a summary is printed in.
#[derive(Clone, Copy, Debug)]
pub enum Unit {
    /// Microseconds.
    Micros,
    /// Milliseconds.
    Millis,
}

impl Unit {
    fn suffix(self) -> &'static str {
        match self {
            Unit::Micros => "us",
            Unit::Millis => "ms",
        }
    }

    fn of_us(self, us: f64) -> f64 {
        match self {
            Unit::Micros => us,
            Unit::Millis => us / 1000.0,
        }
    }
}

/// Index of the nearest-rank percentile `q` in a sorted slice of `len > 0` items.
fn rank(len: usize, q: f64) -> usize {
    let r = (q * len as f64).ceil() as usize;
    r.clamp(1, len) - 1
}

/// Rounds to three decimals, so JSON lines stay readable.
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Parses a duration such as `10s`, `500ms`, `2m` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (num, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else {
        (t, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a duration: write e.g. 10s, 500ms or 2m"))?;
    if !(v.is_finite() && v > 0.0) {
        return Err(format!("duration `{text}` must be positive"));
    }
    Ok(Duration::from_secs_f64(v * scale))
}

/// Peak resident set size of this process in bytes (Linux `VmHWM`), if readable.
pub fn peak_rss_bytes() -> Option<u64> {
    peak_rss_bytes_of("self")
}

/// Peak resident set size of process `pid` (`self` or a number) in bytes (`VmHWM`).
pub fn peak_rss_bytes_of(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// CPU seconds (user + system) this process has used, from `/proc/self/stat` (Linux).
pub fn process_cpu_seconds() -> Option<f64> {
    process_cpu_seconds_of("self")
}

/// CPU seconds (user + system, all threads) process `pid` (`self` or a number) has used.
pub fn process_cpu_seconds_of(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesized command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut f = rest.split_whitespace().skip(11);
    let utime: f64 = f.next()?.parse().ok()?;
    let stime: f64 = f.next()?.parse().ok()?;
    // USER_HZ is 100 on every Linux ABI Assay targets.
    Some((utime + stime) / 100.0)
}

/// Milliseconds since the Unix epoch.
pub fn now_unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Small deterministic PRNG (xorshift64*): benchmarks need repeatable, cheap indices.
pub struct Rng(u64);

impl Rng {
    /// A generator from a non-zero seed (zero is replaced).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-ish value in `0..n` (`n > 0`); the modulo bias is irrelevant at these sizes.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut d: Vec<Duration> = (1..=100).rev().map(Duration::from_micros).collect();
        let s = Summary::of(&mut d);
        assert_eq!(
            (s.count, s.p50_us, s.p99_us, s.max_us, s.mean_us),
            (100, 50.0, 99.0, 100.0, 50.5)
        );
        let mut one = vec![Duration::from_millis(3)];
        assert_eq!(Summary::of(&mut one).p99_us, 3000.0);
        assert_eq!(Summary::of(&mut []).count, 0);
    }

    #[test]
    fn cpu_time_grows_with_work() {
        // Spin until 20 ms of CPU are counted; a deadline in wall time (not a fixed spin)
        // keeps this honest on a loaded machine, where 50 ms of wall may be 5 ms of CPU.
        let before = process_cpu_seconds().unwrap();
        let t = std::time::Instant::now();
        let mut x = 0u64;
        let mut after = before;
        while after < before + 0.02 && t.elapsed() < Duration::from_secs(20) {
            for _ in 0..100_000 {
                x = x.wrapping_add(std::hint::black_box(1));
            }
            after = process_cpu_seconds().unwrap();
        }
        assert!(x > 0);
        assert!(after >= before + 0.02, "{before} → {after}");
    }

    #[test]
    fn durations_parse_with_units_and_reject_nonsense() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("ten").is_err());
    }
}
