//! Times ten Grafana-style dashboard queries as range queries (24 h at 60 s steps) and as
//! instant queries over a synthetic view of 10k series scraped every 15 s.
//!
//! `cargo run --release -p assay-tsdb --example query_bench`
//!
//! At 24 h, six of the queries load more than `QUERY_SAMPLES_LOADED_MAX` samples (a total
//! over all steps, where Prometheus limits the samples held at once) and fail; hence the
//! default of 6 h. Environment: `BENCH_HOURS` (default 6) of data and query range, `BENCH_RUNS` (default 3;
//! the median is printed), `BENCH_ONLY` (run only queries whose text contains it).

use std::time::{Duration, Instant};

use assay_ledger::{Labels, SampleBatch};
use assay_tsdb::promql::{instant_query, range_query, Value};
use assay_tsdb::Tsdb;

const SCRAPE_MS: i64 = 15_000;
const STEP_MS: i64 = 60_000;
/// A round start time, as Grafana aligns ranges to the step.
const T0_MS: i64 = 1_700_000_000_000 - 1_700_000_000_000 % 3_600_000;
const JOBS: [&str; 10] = [
    "api",
    "api-internal",
    "web",
    "worker",
    "db",
    "cache",
    "queue",
    "auth",
    "search",
    "billing",
];
const INSTANCES_PER_JOB: usize = 20;
const CODES: [&str; 4] = ["200", "404", "500", "503"];
const METHODS: [&str; 4] = ["GET", "POST", "PUT", "DELETE"];
const LES: [&str; 12] = [
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf",
];
const QUEUES: usize = 21;

const QUERIES: [&str; 10] = [
    "sum by (job) (rate(http_requests_total[5m]))",
    "histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))",
    "topk(5, sum by (instance) (rate(http_requests_total[5m])))",
    "avg_over_time(queue_depth[10m])",
    "count by (job) (up)",
    r#"sum by (code) (rate(http_requests_total{job=~"api.*", code=~"5.."}[5m]))"#,
    r#"sum(rate(http_requests_total{code=~"5.."}[5m])) / sum(rate(http_requests_total[5m]))"#,
    "max by (job) (queue_depth)",
    "sum by (job) (increase(http_requests_total[10m]))",
    r#"http_requests_total{job=~"api|web", instance=~"inst-1.*", method!="DELETE"}"#,
];

/// A cheap deterministic pseudo-random stream (xorshift64*).
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    let pairs = pairs
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    Labels::new(pairs).expect("valid labels")
}

/// Every series' label set and kind (true: counter).
fn series_set() -> Vec<(Labels, bool)> {
    let mut out = Vec::new();
    for job in JOBS {
        for i in 0..INSTANCES_PER_JOB {
            let inst = format!("inst-{i}");
            let base = [("job", job), ("instance", inst.as_str())];
            for code in CODES {
                for method in METHODS {
                    let mut l = base.to_vec();
                    l.extend([
                        ("__name__", "http_requests_total"),
                        ("code", code),
                        ("method", method),
                    ]);
                    out.push((labels(&l), true));
                }
            }
            for le in LES {
                let mut l = base.to_vec();
                l.extend([
                    ("__name__", "http_request_duration_seconds_bucket"),
                    ("le", le),
                ]);
                out.push((labels(&l), true));
            }
            let mut l = base.to_vec();
            l.push(("__name__", "up"));
            out.push((labels(&l), false));
            for q in 0..QUEUES {
                let queue = format!("q{q}");
                let mut l = base.to_vec();
                l.extend([("__name__", "queue_depth"), ("queue", queue.as_str())]);
                out.push((labels(&l), false));
            }
        }
    }
    out
}

fn build(hours: i64) -> Tsdb {
    let samples = hours * 3_600_000 / SCRAPE_MS;
    let mut db = Tsdb::new();
    let mut noise = Noise(0x9E37_79B9_7F4A_7C15);
    for (k, (l, counter)) in series_set().into_iter().enumerate() {
        let mut batch = SampleBatch::with_capacity(samples as usize);
        let rate = 1.0 + (k % 37) as f64;
        let mut v = 0.0f64;
        for i in 0..samples {
            // Scrapes jitter by a few ms, as real ones do.
            let t = T0_MS + i * SCRAPE_MS + (noise.next() * 20.0) as i64;
            v = if counter {
                // Integer increments; a restart every ~6 h for some series.
                if k % 5 == 0 && i % 1_440 == 1_439 {
                    0.0
                } else {
                    v + (rate * noise.next() * 15.0).round()
                }
            } else if l.pairs().any(|(_, v)| v == "up") {
                f64::from(noise.next() > 0.001)
            } else {
                (100.0 * noise.next()).round()
            };
            batch.push(l.clone(), t, v);
        }
        db.apply_batch(&batch);
    }
    db
}

fn median(mut d: Vec<Duration>) -> Duration {
    d.sort();
    d[d.len() / 2]
}

fn points(v: &Value) -> (usize, usize) {
    match v {
        Value::Matrix(s) => (s.len(), s.iter().map(|s| s.points.len()).sum()),
        Value::Vector(s) => (s.len(), s.len()),
        _ => (1, 1),
    }
}

fn env(name: &str, default: i64) -> i64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let hours = env("BENCH_HOURS", 6);
    let runs = env("BENCH_RUNS", 3).max(1) as usize;
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let t = Instant::now();
    // One more hour of data, so the first step's windows are full.
    let db = build(hours + 1);
    println!(
        "built {} series, {} samples, {} MiB of samples in {:.1?}",
        db.series_count(),
        db.sample_count(),
        db.sample_bytes() >> 20,
        t.elapsed()
    );
    let end = T0_MS + (hours + 1) * 3_600_000;
    let start = end - hours * 3_600_000;
    println!(
        "range: {} steps of {} s; median of {runs}",
        (end - start) / STEP_MS + 1,
        STEP_MS / 1000
    );
    println!(
        "{:>10} {:>10} {:>8} {:>9}  query",
        "range ms", "instant ms", "series", "points"
    );
    for q in QUERIES.iter().filter(|q| q.contains(only.as_str())) {
        let mut range_times = Vec::new();
        let mut instant_times = Vec::new();
        let mut shape = (0, 0);
        for _ in 0..runs {
            let t = Instant::now();
            let r = range_query(&db, q, start, end, STEP_MS);
            range_times.push(t.elapsed());
            match r {
                Ok(r) => shape = points(&r),
                Err(e) => println!("range query {q}: {e}"),
            }
            let t = Instant::now();
            if let Err(e) = instant_query(&db, q, end) {
                println!("instant query {q}: {e}");
            }
            instant_times.push(t.elapsed());
        }
        println!(
            "{:>10.1} {:>10.2} {:>8} {:>9}  {q}",
            median(range_times).as_secs_f64() * 1e3,
            median(instant_times).as_secs_f64() * 1e3,
            shape.0,
            shape.1
        );
    }
}
