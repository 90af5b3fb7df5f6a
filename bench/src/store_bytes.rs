//! `assay-bench store-bytes`: bytes per sample of the fleet's samples (`series.rs`, the
//! remote-write load's data) as column-codec columns, as Gorilla XOR chunks, and in a view.
//!
//! In process, no network and no disk: it generates `series × samples` samples at the
//! fleet's scrape interval (exact timestamps, as the remote-write load sends them), cuts
//! each series into columns of [`COLUMN_SAMPLES`] samples (a sealed chunk's length) for the
//! codec figures, and applies everything to a `Tsdb` for the view's figures.

use crate::series::Fleet;
use anyhow::Result;
use assay_ledger::{Labels, SampleBatch};
use serde_json::json;

/// Samples per column: the view's sealed chunk length.
const COLUMN_SAMPLES: usize = 120;

/// What to measure.
pub struct StoreBytesParams {
    /// Series of the fleet.
    pub series: u64,
    /// Samples per series.
    pub samples: u64,
    /// Scrape interval, ms.
    pub interval_ms: i64,
}

/// Encoded bytes of the columns, by encoder.
#[derive(Default)]
struct ColumnBytes {
    ts_varint: usize,
    ts_packed: usize,
    values_varint: usize,
    values_packed: usize,
}

impl ColumnBytes {
    fn add(&mut self, ts: &[i64], vs: &[f64]) {
        let mut out = Vec::new();
        assay_columns::encode_timestamps(ts, &mut out);
        self.ts_varint += out.len();
        out.clear();
        assay_columns::encode_timestamps_packed(ts, &mut out);
        self.ts_packed += out.len();
        out.clear();
        assay_columns::encode_values(vs, &mut out);
        self.values_varint += out.len();
        out.clear();
        assay_columns::encode_values_packed(vs, &mut out);
        self.values_packed += out.len();
    }
}

fn labels(fleet: &Fleet, s: u64) -> Result<Labels> {
    let pairs = fleet
        .labels(s)
        .into_iter()
        .map(|l| (l.name, l.value))
        .collect();
    Ok(Labels::new(pairs)?)
}

/// Measures and returns the human summary and the JSON line.
pub fn run(p: &StoreBytesParams) -> Result<(String, serde_json::Value)> {
    let fleet = Fleet::new(p.interval_ms as f64 / 1000.0);
    let t0 = 1_700_000_000_000i64;
    let mut cols = ColumnBytes::default();
    // Packed value bytes and samples by metric name: where the bytes go.
    let mut by_name: std::collections::BTreeMap<String, (usize, usize)> = Default::default();
    let mut db = assay_tsdb::Tsdb::new();
    let mut apply = std::time::Duration::ZERO;
    for s in 0..p.series {
        let mut cursor = fleet.cursor(s);
        let ts: Vec<i64> = (0..p.samples as i64)
            .map(|r| t0 + r * p.interval_ms)
            .collect();
        let vs: Vec<f64> = ts.iter().map(|_| fleet.next_value(&mut cursor)).collect();
        let before = cols.values_packed;
        for (t, v) in ts.chunks(COLUMN_SAMPLES).zip(vs.chunks(COLUMN_SAMPLES)) {
            cols.add(t, v);
        }
        let l = labels(&fleet, s)?;
        let name = by_name
            .entry(l.metric_name().unwrap_or_default().to_string())
            .or_default();
        name.0 += cols.values_packed - before;
        name.1 += vs.len();
        let mut batch = SampleBatch::with_capacity(ts.len());
        for (&t, &v) in ts.iter().zip(&vs) {
            batch.push(l.clone(), t, v);
        }
        let t = std::time::Instant::now();
        db.apply_batch(&batch);
        apply += t.elapsed();
    }
    // The node settles sealed chunks on another thread; sizes are of settled chunks.
    let t = std::time::Instant::now();
    db.settle_all();
    apply += t.elapsed();
    // Best of three: the views lock is held this long at every snapshot.
    let mut snapshot_time = std::time::Duration::MAX;
    let mut snapshot_bytes = 0;
    for _ in 0..3 {
        let t = std::time::Instant::now();
        snapshot_bytes = db.encode_snapshot().len();
        snapshot_time = snapshot_time.min(t.elapsed());
    }
    let n = (p.series * p.samples) as f64;
    let per = |b: usize| b as f64 / n;
    let st = db.chunk_stats();
    let sealed_per = st.sealed_bytes as f64 / st.sealed_samples.max(1) as f64;
    let human = format!(
        "store-bytes series={} samples={} interval={} ms: {} samples\n\
         columns of {COLUMN_SAMPLES}, B/sample: timestamps varint {:.3}, packed {:.3}; \
         values varint {:.3}, packed {:.3}; total varint {:.3}, packed {:.3}\n\
         view: sample_bytes {} B = {:.3} B/sample; sealed chunks {} ({} as columns) holding {} samples in {} B \
         = {:.3} B/sample; open chunks {} samples in {} B\n\
         apply {:.0} ns/sample (one series per batch, sealing included); snapshot {} B = {:.3} B/sample, \
         encoded in {:.1} ms",
        p.series,
        p.samples,
        p.interval_ms,
        n,
        per(cols.ts_varint),
        per(cols.ts_packed),
        per(cols.values_varint),
        per(cols.values_packed),
        per(cols.ts_varint + cols.values_varint),
        per(cols.ts_packed + cols.values_packed),
        db.sample_bytes(),
        per(db.sample_bytes()),
        st.sealed_chunks,
        st.sealed_columns_chunks,
        st.sealed_samples,
        st.sealed_bytes,
        sealed_per,
        st.head_samples,
        st.head_bytes,
        apply.as_nanos() as f64 / n,
        snapshot_bytes,
        per(snapshot_bytes),
        snapshot_time.as_secs_f64() * 1e3,
    );
    let mut names: Vec<(String, (usize, usize))> = by_name.into_iter().collect();
    names.sort_by_key(|(_, (bytes, _))| std::cmp::Reverse(*bytes));
    let breakdown: Vec<String> = names
        .iter()
        .map(|(n, (b, k))| {
            format!(
                "{n} {:.2} B/sample ({:.0} %)",
                *b as f64 / *k as f64,
                100.0 * *b as f64 / cols.values_packed as f64
            )
        })
        .collect();
    let human = format!("{human}\npacked values by metric: {}", breakdown.join(", "));
    let json = json!({
        "bench": "store-bytes",
        "series": p.series,
        "samples": p.samples,
        "interval_ms": p.interval_ms,
        "columns_ts_varint_bytes": cols.ts_varint,
        "columns_ts_packed_bytes": cols.ts_packed,
        "columns_values_varint_bytes": cols.values_varint,
        "columns_values_packed_bytes": cols.values_packed,
        "view_sample_bytes": db.sample_bytes(),
        "view_sealed_chunks": st.sealed_chunks,
        "view_sealed_columns_chunks": st.sealed_columns_chunks,
        "view_sealed_samples": st.sealed_samples,
        "view_sealed_bytes": st.sealed_bytes,
        "view_head_samples": st.head_samples,
        "view_head_bytes": st.head_bytes,
        "apply_ns_per_sample": apply.as_nanos() as f64 / n,
        "snapshot_bytes": snapshot_bytes,
        "snapshot_encode_ms": snapshot_time.as_secs_f64() * 1e3,
    });
    Ok((human, json))
}
