//! `assay-bench pipeline`: the node's per-sample CPU cost with no network and no disk.
//!
//! Runs the same steps a push takes — parse and validate the JSON body
//! (`assay_ingest::parse_json_push`), encode the entry, hash it as a leaf, apply it to a
//! `Tsdb` — on one thread over pre-built bodies, and reports ns per sample for each step.
//! Being free of I/O and of the load generator, it is the steadiest figure on a shared
//! machine: use it to compare code changes to the ingest path.

use crate::body::{BatchBody, BodySpec};
use anyhow::{anyhow, Result};
use assay_ledger::{merkle::leaf_hash, Entry};
use serde_json::json;
use std::time::{Duration, Instant};

/// What to run.
pub struct PipelineParams {
    /// Samples per body.
    pub batch: usize,
    /// Bodies pushed through (each a new batch of series × time).
    pub rounds: u64,
    /// Distinct series; when larger than `batch`, batches cycle through them.
    pub series: u64,
    /// Remote-write bodies of the node_exporter-like fleet instead of JSON (`rounds` is then
    /// the scrape rounds), parsed with a series cache and admitted as the sequencer does.
    pub remote_write: bool,
}

/// Runs the steps and returns the human summary and the JSON line.
pub fn run(p: &PipelineParams) -> Result<(String, serde_json::Value)> {
    if p.remote_write {
        return run_remote_write(p);
    }
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    let spec = BodySpec {
        run: "pipeline".into(),
        metric: "bench_pipeline".into(),
        client: 0,
        samples: p.batch,
        series: p.series,
        ts_start_ms: now_ms - 60_000,
        marker: false,
    };
    let mut body = BatchBody::new(&spec)?;
    let limits = assay_ingest::Limits::default();
    let mut db = assay_tsdb::Tsdb::new();
    let (mut parse, mut encode, mut hash, mut apply) = (
        Duration::ZERO,
        Duration::ZERO,
        Duration::ZERO,
        Duration::ZERO,
    );
    let mut samples = 0u64;
    for round in 0..p.rounds {
        body.fill(round);
        let t0 = Instant::now();
        let batch = assay_ingest::parse_json_push(body.bytes(), now_ms, &limits)
            .map_err(|e| anyhow!("{e}"))?;
        let t1 = Instant::now();
        let entry = Entry::Samples(batch);
        let bytes = entry.encode();
        let t2 = Instant::now();
        std::hint::black_box(leaf_hash(&bytes));
        let t3 = Instant::now();
        db.apply_batch(entry.batch());
        // Apply includes settling what it sealed (another thread's work in the node).
        db.settle_all();
        let t4 = Instant::now();
        samples += entry.batch().len() as u64;
        drop(entry);
        parse += t1 - t0;
        encode += t2 - t1;
        hash += t3 - t2;
        apply += t4 - t3;
    }
    let per = |d: Duration| d.as_nanos() as f64 / samples as f64;
    let total = per(parse + encode + hash + apply);
    let human = format!(
        "pipeline batch={} rounds={} series={}: {samples} samples, per sample: parse+validate {:.0} ns, encode {:.0} ns, leaf hash {:.0} ns, apply {:.0} ns; total {:.0} ns ({:.0} samples/s on one core); tsdb {} series",
        p.batch,
        p.rounds,
        p.series,
        per(parse),
        per(encode),
        per(hash),
        per(apply),
        total,
        1e9 / total,
        db.series_count()
    );
    let json = json!({
        "bench": "pipeline", "batch": p.batch, "rounds": p.rounds, "series": p.series, "samples": samples,
        "parse_ns_per_sample": per(parse), "encode_ns_per_sample": per(encode),
        "leaf_hash_ns_per_sample": per(hash), "apply_ns_per_sample": per(apply),
        "total_ns_per_sample": total,
    });
    Ok((human, json))
}

/// The remote-write path: snappy + protobuf parse with the series cache, admission, entry
/// encoding, leaf hash, apply with admission's series ids and settling the chunks apply
/// sealed (another thread's work in the node), one body at a time.
fn run_remote_write(p: &PipelineParams) -> Result<(String, serde_json::Value)> {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    let interval_ms = 15_000;
    let t0 = now_ms - 60_000 - interval_ms * p.rounds as i64;
    let bodies = crate::remote_write::fleet_bodies(p.series, p.rounds, p.batch, interval_ms, t0);
    let limits = assay_ingest::Limits::default();
    let cache = assay_ingest::SeriesCache::new(&limits);
    let mut db = assay_tsdb::Tsdb::new();
    let mut buffers = assay_tsdb::AdmissionBuffers::default();
    let mut times = [Duration::ZERO; 6];
    let mut samples = 0u64;
    let (mut bytes, mut leaf, mut entry_bytes) = (Vec::new(), 0u64, 0u64);
    for body in &bodies {
        let t0 = Instant::now();
        let parsed = assay_ingest::parse_remote_write_cached(body, now_ms, &limits, &cache)
            .map_err(|e| anyhow!("{e}"))?;
        let mut entry = Entry::Samples(parsed.batch);
        let t1 = Instant::now();
        let admitted = {
            let mut a =
                assay_tsdb::Admission::with_buffers(&db, 3_600_000, std::mem::take(&mut buffers));
            a.admit(entry.batch()).map_err(|e| anyhow!("{e}"))?;
            a.finish()
        };
        buffers = admitted.buffers;
        let t2 = Instant::now();
        // As the sequencer writes it: series the view knows an inline entry of by reference.
        let ids = &admitted.resolved[0];
        if let Entry::Samples(batch) = &mut entry {
            db.refer_known_series(batch, ids);
        }
        entry.encode_into(&mut bytes);
        let t3 = Instant::now();
        std::hint::black_box(leaf_hash(&bytes));
        let t4 = Instant::now();
        db.apply_entry_batch(entry.batch(), ids, leaf);
        leaf += 1;
        let t5 = Instant::now();
        let settled = (db.unsettled_chunks(usize::MAX).into_iter())
            .map(assay_tsdb::UnsettledChunk::settle)
            .collect();
        db.install_settled(settled);
        let t6 = Instant::now();
        entry_bytes += bytes.len() as u64;
        samples += entry.batch().len() as u64;
        for (d, (a, b)) in
            times
                .iter_mut()
                .zip([(t0, t1), (t1, t2), (t2, t3), (t3, t4), (t4, t5), (t5, t6)])
        {
            *d += b - a;
        }
    }
    let per = |d: Duration| d.as_nanos() as f64 / samples.max(1) as f64;
    let total = per(times.iter().sum());
    let stats = cache.stats();
    let human = format!(
        "pipeline remote-write batch={} rounds={} series={}: {samples} samples in {} bodies, per sample: parse {:.0} ns, admit {:.0} ns, encode {:.0} ns, leaf hash {:.0} ns, apply {:.0} ns, settle {:.0} ns; total {:.0} ns ({:.0} samples/s on one core); series cache {} of {} lookups hit; entries {:.1} bytes per sample",
        p.batch,
        p.rounds,
        p.series,
        bodies.len(),
        per(times[0]),
        per(times[1]),
        per(times[2]),
        per(times[3]),
        per(times[4]),
        per(times[5]),
        total,
        1e9 / total,
        stats.hits,
        stats.lookups,
        entry_bytes as f64 / samples.max(1) as f64,
    );
    let json = json!({
        "bench": "pipeline_remote_write", "batch": p.batch, "rounds": p.rounds, "series": p.series,
        "samples": samples, "parse_ns_per_sample": per(times[0]), "admit_ns_per_sample": per(times[1]),
        "encode_ns_per_sample": per(times[2]), "leaf_hash_ns_per_sample": per(times[3]),
        "apply_ns_per_sample": per(times[4]), "settle_ns_per_sample": per(times[5]),
        "total_ns_per_sample": total,
        "series_cache_hits": stats.hits, "series_cache_lookups": stats.lookups,
        "entry_bytes_per_sample": entry_bytes as f64 / samples.max(1) as f64,
    });
    Ok((human, json))
}
