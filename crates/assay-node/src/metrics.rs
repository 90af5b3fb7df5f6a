//! Assay's own metrics, rendered in the Prometheus text format at `/metrics`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds (seconds) of the latency histograms' buckets.
const BUCKETS_SECONDS: [f64; 12] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 5.0,
];

#[derive(Default)]
struct Histogram {
    counts: [AtomicU64; 12],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        for (i, b) in BUCKETS_SECONDS.iter().enumerate() {
            if s <= *b {
                self.counts[i].fetch_add(1, Relaxed);
            }
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_micros.fetch_add(d.as_micros() as u64, Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (i, b) in BUCKETS_SECONDS.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{b}\"}} {}",
                self.counts[i].load(Relaxed)
            );
        }
        let n = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {n}");
        let _ = writeln!(
            out,
            "{name}_sum {}",
            self.sum_micros.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count {n}");
    }
}

/// Counters and histograms of one node.
#[derive(Default)]
pub struct Metrics {
    blocks: AtomicU64,
    entries: AtomicU64,
    samples: AtomicU64,
    entry_bytes: AtomicU64,
    rule_samples: AtomicU64,
    rule_failures: AtomicU64,
    rule_corrections: AtomicU64,
    commit_durable: Histogram,
    commit_applied: Histogram,
    /// Rejected requests by endpoint and status.
    rejected: Mutex<std::collections::BTreeMap<(String, u16), u64>>,
}

impl Metrics {
    /// Records one committed block.
    pub fn block_committed(
        &self,
        entries: usize,
        samples: usize,
        bytes: usize,
        durable: Duration,
        applied: Duration,
    ) {
        self.blocks.fetch_add(1, Relaxed);
        self.entries.fetch_add(entries as u64, Relaxed);
        self.samples.fetch_add(samples as u64, Relaxed);
        self.entry_bytes.fetch_add(bytes as u64, Relaxed);
        self.commit_durable.observe(durable);
        self.commit_applied.observe(applied);
    }

    /// Records one recording-rule group evaluation: samples recorded, rules that failed.
    pub fn rules_evaluated(&self, samples: usize, failures: usize) {
        self.rule_samples.fetch_add(samples as u64, Relaxed);
        self.rule_failures.fetch_add(failures as u64, Relaxed);
    }

    /// Records recorded results rewritten because late samples changed them.
    pub fn rules_corrected(&self, samples: usize) {
        self.rule_corrections.fetch_add(samples as u64, Relaxed);
    }

    /// Records a rejected request.
    pub fn rejected(&self, endpoint: &str, status: u16) {
        let mut m = self.rejected.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry((endpoint.to_string(), status)).or_default() += 1;
    }

    /// The text exposition, with gauges supplied by the caller.
    pub fn render(
        &self,
        ledger_entries: u64,
        ledger_height: u64,
        tsdb: TsdbGauges,
        series_cache: assay_ingest::SeriesCacheStats,
    ) -> String {
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        };
        let gauge = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        counter(
            &mut out,
            "assay_blocks_committed_total",
            "Blocks committed since start.",
            self.blocks.load(Relaxed),
        );
        counter(
            &mut out,
            "assay_entries_committed_total",
            "Entries (accepted requests) committed since start.",
            self.entries.load(Relaxed),
        );
        counter(
            &mut out,
            "assay_samples_committed_total",
            "Samples committed since start.",
            self.samples.load(Relaxed),
        );
        counter(
            &mut out,
            "assay_rule_samples_recorded_total",
            "Samples recording rules recorded since start.",
            self.rule_samples.load(Relaxed),
        );
        counter(
            &mut out,
            "assay_rule_evaluation_failures_total",
            "Recording-rule evaluations that recorded nothing (see the log for why).",
            self.rule_failures.load(Relaxed),
        );
        counter(
            &mut out,
            "assay_rule_samples_corrected_total",
            "Recorded results written again because late samples changed them.",
            self.rule_corrections.load(Relaxed),
        );
        counter(
            &mut out,
            "assay_entry_bytes_committed_total",
            "Encoded entry bytes committed since start.",
            self.entry_bytes.load(Relaxed),
        );
        gauge(
            &mut out,
            "assay_ledger_entries",
            "Entries in the ledger.",
            ledger_entries,
        );
        gauge(
            &mut out,
            "assay_ledger_height",
            "Blocks in the ledger.",
            ledger_height,
        );
        gauge(
            &mut out,
            "assay_tsdb_series",
            "Series in the time-series view.",
            tsdb.series as u64,
        );
        gauge(
            &mut out,
            "assay_tsdb_samples",
            "Samples in the time-series view.",
            tsdb.samples,
        );
        gauge(
            &mut out,
            "assay_tsdb_sample_bytes",
            "Bytes the time-series view's samples take in memory (compressed chunks and heads).",
            tsdb.sample_bytes as u64,
        );
        gauge(
            &mut out,
            "assay_tsdb_unsettled_chunks",
            "Sealed chunks waiting to be re-encoded in the smaller encoding (the settling backlog).",
            tsdb.unsettled_chunks as u64,
        );
        counter(
            &mut out,
            "assay_remote_write_series_cache_lookups_total",
            "Remote-write series looked up in the series cache (ingest.series_cache_bytes).",
            series_cache.lookups,
        );
        counter(
            &mut out,
            "assay_remote_write_series_cache_hits_total",
            "Series cache lookups that skipped decoding and checking the labels; a low share of \
             lookups means more active series than ingest.series_cache_bytes holds.",
            series_cache.hits,
        );
        gauge(
            &mut out,
            "assay_remote_write_series_cache_entries",
            "Series the series cache holds.",
            series_cache.entries,
        );
        self.commit_durable.render(
            &mut out,
            "assay_commit_durable_seconds",
            "Time to write and fsync a block.",
        );
        self.commit_applied.render(
            &mut out,
            "assay_commit_applied_seconds",
            "Time to write, fsync and apply a block.",
        );
        let _ = writeln!(out, "# HELP assay_requests_rejected_total Requests rejected, by endpoint and status.\n# TYPE assay_requests_rejected_total counter");
        for ((endpoint, status), n) in self
            .rejected
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "assay_requests_rejected_total{{endpoint=\"{endpoint}\",code=\"{status}\"}} {n}"
            );
        }
        out
    }
}

/// What the time-series view holds, for [`Metrics::render`].
#[derive(Clone, Copy, Debug, Default)]
pub struct TsdbGauges {
    /// Series.
    pub series: usize,
    /// Samples.
    pub samples: u64,
    /// Bytes the samples take in memory.
    pub sample_bytes: usize,
    /// Sealed chunks not settled yet.
    pub unsettled_chunks: usize,
}
