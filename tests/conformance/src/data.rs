//! The dataset both servers load: deterministic for a seed and an end time.
//!
//! Samples are 15 s apart. Every series but `ongrid_*` is shifted by its own offset of
//! whole seconds plus 125/375/625/875 ms, and queries are evaluated at whole seconds plus
//! 250 ms, so no sample ever sits on a range-window or lookback boundary: Prometheus 2.42's
//! closed windows `[t-r, t]` and Prometheus 3's left-open `(t-r, t]` (Assay's) then select
//! the same samples. `ongrid_*` series sit exactly on the 15 s grid and are queried only by
//! the known-differences corpus (with `offset 250ms` to land windows on samples).

/// Sample interval, ms.
pub const STEP_MS: i64 = 15_000;
/// Sub-second part of every evaluation time, ms (see the module doc).
pub const EVAL_FRACTION_MS: i64 = 250;

/// One series: labels (`__name__` first) and samples in increasing time.
#[derive(Clone, Debug)]
pub struct Series {
    pub labels: Vec<(String, String)>,
    pub samples: Vec<(i64, f64)>,
}

/// All series and the time span they cover.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// First grid point, ms (a whole minute).
    pub start_ms: i64,
    /// End of the data, ms (a whole minute); every sample is before it.
    pub end_ms: i64,
    pub series: Vec<Series>,
}

impl Dataset {
    /// Total samples over all series.
    pub fn sample_count(&self) -> usize {
        self.series.iter().map(|s| s.samples.len()).sum()
    }
}

/// splitmix64: small, seedable, and the same on every platform.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform integer in [lo, hi].
    fn int(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as i64
    }

    /// Uniform in [lo, hi), rounded to 3 decimals so text round-trips are exact in both.
    fn float(&mut self, lo: f64, hi: f64) -> f64 {
        ((lo + (hi - lo) * self.unit()) * 1000.0).round() / 1000.0
    }
}

/// What a series' value does from one sample to the next.
enum Shape {
    /// Counter: increments in [lo, hi] (integers when `int`), reset to 0 at the given indices.
    Counter {
        lo: f64,
        hi: f64,
        int: bool,
        resets: Vec<usize>,
    },
    /// Gauge: a random walk with steps in ±`step`, kept within [lo, hi].
    Walk { lo: f64, hi: f64, step: f64 },
    /// Integer gauge in [lo, hi].
    IntGauge { lo: i64, hi: i64 },
    /// The same value always.
    Constant(f64),
    /// Normal values with NaN / +Inf / -Inf at fixed periods.
    Mixed,
    /// Column `col` of a classic histogram (buckets in `BUCKETS` order, then `_sum`,
    /// `_count`); the columns are generated together so the buckets stay cumulative.
    Histogram { col: usize, reset: bool },
}

/// A series to generate: labels, shape, and which grid points carry a sample.
struct Spec {
    labels: Vec<(String, String)>,
    shape: Shape,
    /// Grid index range [from, to) (fractions of the grid length are resolved by the caller).
    from: usize,
    to: usize,
    /// Every `every`-th grid point only.
    every: usize,
    on_grid: bool,
}

fn labels(name: &str, pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut l = vec![("__name__".to_string(), name.to_string())];
    l.extend(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    l
}

fn spec(l: Vec<(String, String)>, shape: Shape, n: usize) -> Spec {
    Spec {
        labels: l,
        shape,
        from: 0,
        to: n,
        every: 1,
        on_grid: false,
    }
}

const JOBS: [&str; 2] = ["api", "web"];
const INSTANCES: [&str; 2] = ["10.0.0.1:8080", "10.0.0.2:8080"];
const BUCKETS: [&str; 8] = ["0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "+Inf"];

fn specs(n: usize) -> Vec<Spec> {
    let mut out = Vec::new();
    for (j, &job) in JOBS.iter().enumerate() {
        for (i, &inst) in INSTANCES.iter().enumerate() {
            for code in ["200", "500"] {
                let resets = if j == 0 && i == 1 && code == "200" {
                    vec![n / 3, 2 * n / 3]
                } else {
                    vec![]
                };
                let (lo, hi) = if code == "200" {
                    (5.0, 50.0)
                } else {
                    (0.0, 3.0)
                };
                let l = labels(
                    "http_requests_total",
                    &[("job", job), ("instance", inst), ("code", code)],
                );
                let shape = Shape::Counter {
                    lo,
                    hi,
                    int: true,
                    resets,
                };
                out.push(spec(l, shape, n));
            }
            let resets = if j == 1 && i == 1 {
                vec![n / 2]
            } else {
                vec![]
            };
            let l = labels(
                "process_cpu_seconds_total",
                &[("job", job), ("instance", inst)],
            );
            let shape = Shape::Counter {
                lo: 0.0,
                hi: 1.5,
                int: false,
                resets,
            };
            out.push(spec(l, shape, n));
            let l = labels("queue_depth", &[("job", job), ("instance", inst)]);
            out.push(spec(l, Shape::IntGauge { lo: 0, hi: 20 }, n));
            let version = if i == 0 { "1.2.3" } else { "1.3.0" };
            let l = labels(
                "build_info",
                &[
                    ("job", job),
                    ("instance", inst),
                    ("version", version),
                    ("revision", "abc123"),
                ],
            );
            out.push(spec(l, Shape::Constant(1.0), n));
            let l = labels("up", &[("job", job), ("instance", inst)]);
            let up = if j == 1 && i == 0 { 0.0 } else { 1.0 };
            out.push(spec(l, Shape::Constant(up), n));
        }
        out.extend(histogram(job, j == 1, n));
    }
    for inst in ["n1", "n2"] {
        for sensor in ["cpu", "board"] {
            let l = labels(
                "node_temperature_celsius",
                &[("job", "node"), ("instance", inst), ("sensor", sensor)],
            );
            let shape = Shape::Walk {
                lo: 30.0,
                hi: 90.0,
                step: 1.5,
            };
            out.push(spec(l, shape, n));
        }
    }
    // Pods that come and go: staleness and absent_over_time.
    for (pod, from, to) in [("a", 0, n), ("b", 0, n / 2), ("c", n / 3, 2 * n / 3)] {
        let mut s = spec(
            labels("ephemeral_gauge", &[("pod", pod)]),
            Shape::Walk {
                lo: 0.0,
                hi: 100.0,
                step: 5.0,
            },
            n,
        );
        s.from = from;
        s.to = to;
        out.push(s);
    }
    let special = [
        ("mixed", Shape::Mixed),
        ("nan", Shape::Constant(f64::NAN)),
        ("inf", Shape::Constant(f64::INFINITY)),
        ("zero", Shape::Constant(0.0)),
        (
            "negative",
            Shape::Walk {
                lo: -50.0,
                hi: -0.5,
                step: 2.0,
            },
        ),
    ];
    for (kind, shape) in special {
        out.push(spec(labels("special_values", &[("kind", kind)]), shape, n));
    }
    out.push(spec(
        labels(
            "escaped_labels",
            &[("path", "C:\\dir\\file"), ("quote", "say \"hi\"")],
        ),
        Shape::IntGauge { lo: 0, hi: 9 },
        n,
    ));
    out.push(spec(
        labels("escaped_labels", &[("newline", "a\nb"), ("utf8", "café ☃")]),
        Shape::IntGauge { lo: 0, hi: 9 },
        n,
    ));
    let mut sparse = spec(
        labels("sparse_counter_total", &[("job", "batch")]),
        Shape::Counter {
            lo: 1.0,
            hi: 10.0,
            int: true,
            resets: vec![],
        },
        n,
    );
    sparse.every = 8;
    out.push(sparse);
    // A counter created half-way whose first sample already counts some events (it does
    // not start at 0): known differences only.
    let mut late = spec(
        labels("late_counter_total", &[("job", "batch")]),
        Shape::Counter {
            lo: 1.0,
            hi: 10.0,
            int: true,
            resets: vec![n / 2],
        },
        n,
    );
    late.from = n / 2;
    out.push(late);
    for (name, shape) in [
        (
            "ongrid_counter_total",
            Shape::Counter {
                lo: 1.0,
                hi: 5.0,
                int: true,
                resets: vec![],
            },
        ),
        (
            "ongrid_gauge",
            Shape::Walk {
                lo: 0.0,
                hi: 10.0,
                step: 1.0,
            },
        ),
    ] {
        let mut s = spec(labels(name, &[]), shape, n);
        s.on_grid = true;
        out.push(s);
    }
    out
}

/// A classic histogram: cumulative buckets, `_sum` and `_count`; `reset` restarts it at 3/4.
fn histogram(job: &str, reset: bool, n: usize) -> Vec<Spec> {
    let mut out = Vec::new();
    for (col, &le) in BUCKETS.iter().enumerate() {
        let l = labels(
            "request_duration_seconds_bucket",
            &[("job", job), ("le", le)],
        );
        out.push(spec(l, Shape::Histogram { col, reset }, n));
    }
    for (k, suffix) in ["sum", "count"].iter().enumerate() {
        let name = format!("request_duration_seconds_{suffix}");
        let col = BUCKETS.len() + k;
        out.push(spec(
            labels(&name, &[("job", job)]),
            Shape::Histogram { col, reset },
            n,
        ));
    }
    out
}

/// Observations of one histogram per grid point: cumulative bucket counts, sum, count.
fn histogram_series(rng: &mut Rng, n: usize, reset_at: Option<usize>) -> Vec<Vec<f64>> {
    let bounds = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, f64::INFINITY];
    let mut buckets = [0.0f64; 8];
    let (mut sum, mut count) = (0.0f64, 0.0f64);
    let mut rows = Vec::with_capacity(n);
    for i in 0..n {
        if Some(i) == reset_at {
            buckets = [0.0; 8];
            sum = 0.0;
            count = 0.0;
        }
        for _ in 0..rng.int(0, 30) {
            // Roughly log-uniform between 10 ms and 8 s.
            let x = (0.01f64.ln() + rng.unit() * (8.0f64.ln() - 0.01f64.ln())).exp();
            let x = (x * 1000.0).round() / 1000.0;
            for (b, ub) in buckets.iter_mut().zip(bounds) {
                if x <= ub {
                    *b += 1.0;
                }
            }
            sum += x;
            count += 1.0;
        }
        let mut row = buckets.to_vec();
        row.push((sum * 1000.0).round() / 1000.0);
        row.push(count);
        rows.push(row);
    }
    rows
}

fn next_value(rng: &mut Rng, shape: &Shape, i: usize, prev: f64) -> f64 {
    match shape {
        Shape::Counter {
            lo,
            hi,
            int,
            resets,
        } => {
            let inc = if *int {
                rng.int(*lo as i64, *hi as i64) as f64
            } else {
                rng.float(*lo, *hi)
            };
            if i == 0 {
                // Counters start at 0: a window that begins before a series' first sample
                // then extrapolates the same in Prometheus 2.42 and 3 (see
                // known-differences.txt for one that does not).
                return 0.0;
            }
            let base = if resets.contains(&i) { 0.0 } else { prev };
            ((base + inc) * 1000.0).round() / 1000.0
        }
        Shape::Walk { lo, hi, step } => {
            let start = if i == 0 { (lo + hi) / 2.0 } else { prev };
            let v = start + rng.float(-step, *step);
            (v.clamp(*lo, *hi) * 1000.0).round() / 1000.0
        }
        Shape::IntGauge { lo, hi } => rng.int(*lo, *hi) as f64,
        Shape::Constant(v) => *v,
        Shape::Histogram { .. } => unreachable!("histogram columns come from histogram_series"),
        Shape::Mixed => {
            let v = rng.float(-10.0, 10.0);
            match i {
                i if i % 7 == 3 => f64::NAN,
                i if i % 11 == 5 => f64::INFINITY,
                i if i % 13 == 6 => f64::NEG_INFINITY,
                _ => v,
            }
        }
    }
}

/// `n` values of a non-histogram shape, one per grid point.
fn values(rng: &mut Rng, shape: &Shape, n: usize) -> Vec<f64> {
    let mut prev = 0.0;
    (0..n)
        .map(|i| {
            prev = next_value(rng, shape, i, prev);
            prev
        })
        .collect()
}

/// The dataset for `seed`, `hours` long, ending at `end_ms` (rounded down to a minute).
pub fn generate(seed: u64, end_ms: i64, hours: u32) -> Dataset {
    let end_ms = end_ms - end_ms.rem_euclid(60_000);
    let n = (hours as i64 * 3_600_000 / STEP_MS) as usize;
    let start_ms = end_ms - n as i64 * STEP_MS;
    let mut rng = Rng(seed);
    let specs = specs(n);
    let mut series = Vec::with_capacity(specs.len());
    let mut hist_rows: Vec<Vec<f64>> = Vec::new();
    for (idx, s) in specs.iter().enumerate() {
        let offset_ms = if s.on_grid {
            0
        } else {
            1000 * (1 + idx as i64 % 13) + [125, 375, 625, 875][idx % 4]
        };
        debug_assert!(offset_ms < STEP_MS);
        if let Shape::Histogram { col: 0, reset } = s.shape {
            hist_rows = histogram_series(&mut rng, n, reset.then_some(3 * n / 4));
        }
        // Values are drawn for every grid point, so a series' window does not shift the
        // random stream of the series after it.
        let values: Vec<f64> = match s.shape {
            Shape::Histogram { col, .. } => hist_rows.iter().map(|row| row[col]).collect(),
            _ => values(&mut rng, &s.shape, n),
        };
        let samples = values
            .into_iter()
            .enumerate()
            .filter(|&(i, _)| i >= s.from && i < s.to && (i - s.from) % s.every == 0)
            .map(|(i, v)| (start_ms + i as i64 * STEP_MS + offset_ms, v))
            .collect();
        series.push(Series {
            labels: s.labels.clone(),
            samples,
        });
    }
    Dataset {
        start_ms,
        end_ms,
        series,
    }
}

/// A label value escaped as both text formats want it.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

fn series_prefix(labels: &[(String, String)]) -> String {
    let name = &labels[0].1;
    let rest: Vec<String> = labels[1..]
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    if rest.is_empty() {
        name.clone()
    } else {
        format!("{name}{{{}}}", rest.join(","))
    }
}

/// OpenMetrics text for `promtool tsdb create-blocks-from openmetrics`: timestamps in
/// seconds, series one after another (each in time order), `# EOF` at the end.
pub fn openmetrics(ds: &Dataset) -> String {
    let mut out = String::new();
    for s in &ds.series {
        let prefix = series_prefix(&s.labels);
        for &(t, v) in &s.samples {
            debug_assert!(t >= 0);
            let value = format_value(v);
            out.push_str(&format!("{prefix} {value} {}.{:03}\n", t / 1000, t % 1000));
        }
    }
    out.push_str("# EOF\n");
    out
}

/// Prometheus text format 0.0.4 (timestamps in ms) for Assay's import endpoint, split into
/// bodies of at most `samples_max` samples each.
pub fn prometheus_text_chunks(ds: &Dataset, samples_max: usize) -> Vec<String> {
    assert!(samples_max > 0);
    let mut chunks = Vec::new();
    let mut cur = String::new();
    let mut in_cur = 0;
    for s in &ds.series {
        let prefix = series_prefix(&s.labels);
        for &(t, v) in &s.samples {
            cur.push_str(&format!("{prefix} {} {t}\n", format_value(v)));
            in_cur += 1;
            if in_cur == samples_max {
                chunks.push(std::mem::take(&mut cur));
                in_cur = 0;
            }
        }
    }
    if in_cur > 0 {
        chunks.push(cur);
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_data_and_samples_stay_off_the_eval_grid() {
        let a = generate(7, 1_700_000_123_456, 1);
        let b = generate(7, 1_700_000_123_456, 1);
        assert_eq!(openmetrics(&a), openmetrics(&b));
        assert_eq!(a.end_ms % 60_000, 0);
        for s in &a.series {
            let ongrid = s.labels[0].1.starts_with("ongrid_");
            for &(t, _) in &s.samples {
                assert!(t >= a.start_ms && t < a.end_ms);
                let frac = t.rem_euclid(1000);
                assert_eq!(frac == 0, ongrid, "{:?} at {t}", s.labels);
                assert_ne!(frac, EVAL_FRACTION_MS);
            }
        }
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_end_in_count() {
        let ds = generate(3, 1_700_000_000_000, 1);
        let get = |name: &str, le: Option<&str>| {
            ds.series
                .iter()
                .find(|s| {
                    s.labels[0].1 == name
                        && s.labels.iter().any(|(k, v)| k == "job" && v == "api")
                        && le.is_none_or(|le| s.labels.iter().any(|(k, v)| k == "le" && v == le))
                })
                .unwrap()
                .samples
                .clone()
        };
        let small = get("request_duration_seconds_bucket", Some("0.05"));
        let inf = get("request_duration_seconds_bucket", Some("+Inf"));
        let count = get("request_duration_seconds_count", None);
        for i in 0..small.len() {
            assert!(small[i].1 <= inf[i].1);
            assert_eq!(inf[i].1, count[i].1);
        }
        assert!(count.last().unwrap().1 > 0.0);
    }

    #[test]
    fn label_values_are_escaped_in_both_formats() {
        let ds = generate(1, 1_700_000_000_000, 1);
        let om = openmetrics(&ds);
        assert!(om.contains(r#"path="C:\\dir\\file",quote="say \"hi\"""#));
        assert!(om.contains(r#"newline="a\nb""#));
        assert!(om.ends_with("# EOF\n"));
        let chunks = prometheus_text_chunks(&ds, 1000);
        let lines: usize = chunks.iter().map(|c| c.lines().count()).sum();
        assert_eq!(lines, ds.sample_count());
        assert!(chunks.iter().all(|c| c.lines().count() <= 1000));
    }
}
