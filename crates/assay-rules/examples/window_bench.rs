//! Throughput of [`WindowAggregator`] on one thread: 10M samples over 10k series (20 jobs),
//! one sample per series every 10 s in batches of 1,000, 1-minute tumbling windows
//! `sum by (job)`, 5 minutes of allowed lateness, and 1% of the samples arriving late
//! (10 s to 2 minutes behind, so most of them correct an already-emitted window).
//!
//! `cargo run --release -p assay-rules --example window_bench [samples]`
//!
//! Only `push_batch` is timed: building the batches is the ledger's and decoder's work.

use std::time::{Duration, Instant};

use assay_ledger::{Labels, SampleBatch};
use assay_rules::{WindowAggregator, WindowSpec};

const SERIES: usize = 10_000;
const JOBS: usize = 20;
const BATCH_SAMPLES: usize = 1_000;
const SCRAPE_MS: i64 = 10_000;

fn main() {
    let total: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("samples: a number"))
        .unwrap_or(10_000_000);
    let series: Vec<Labels> = (0..SERIES)
        .map(|i| {
            Labels::new(vec![
                ("__name__".into(), "http_requests_total".into()),
                ("job".into(), format!("job{}", i % JOBS)),
                ("instance".into(), format!("host{i}:9100")),
            ])
            .expect("valid labels")
        })
        .collect();
    let spec = WindowSpec {
        metric: Some("http_requests_total".into()),
        allowed_lateness_ms: 300_000,
        ..WindowSpec::tumbling(60_000, &["job"])
    };
    let mut agg = WindowAggregator::new(spec).expect("valid spec");
    let mut rng: u64 = 0x5eed;
    let mut results = Vec::new();
    let mut timed = Duration::ZERO;
    let mut late = 0u64;
    let mut pushed = 0usize;
    let t0_ms: i64 = 1_764_000_000_000;
    while pushed < total {
        let round = (pushed / SERIES) as i64;
        let first = pushed % SERIES;
        let n = BATCH_SAMPLES.min(total - pushed).min(SERIES - first);
        let mut batch = SampleBatch::with_capacity(n);
        for (i, labels) in series[first..first + n].iter().enumerate() {
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let mut t = t0_ms + round * SCRAPE_MS + (first + i) as i64;
            if (rng >> 33) % 100 < 1 {
                // Late: 1 to 12 scrapes behind, off the scrape grid (a sample never seen).
                t -= ((rng >> 40) % 12 + 1) as i64 * SCRAPE_MS + SCRAPE_MS / 2;
                late += 1;
            }
            batch.push(labels.clone(), t, (round % 97) as f64);
        }
        let start = Instant::now();
        agg.push_batch(&batch, &mut results);
        timed += start.elapsed();
        pushed += n;
        results.clear();
    }
    let s = agg.stats();
    let per_s = pushed as f64 / timed.as_secs_f64();
    println!("samples       {pushed} ({late} late) over {SERIES} series, {JOBS} jobs");
    println!("push_batch    {:.3} s on one thread", timed.as_secs_f64());
    println!("throughput    {:.0} samples/s", per_s);
    println!(
        "results       {} emitted, {} updates; too late {}, duplicates {}, open windows {}",
        s.emitted,
        s.updates,
        s.too_late,
        s.duplicates,
        agg.open_windows()
    );
    println!("state digest  {}", hex(&agg.digest()));
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
