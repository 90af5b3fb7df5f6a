//! `pack`: the ledger's packed segments on the remote-write fleet, in process.
//!
//! Builds the ledger a node would write under `remote-write` (the same [`Fleet`], its
//! series split over `connections`, each connection's stream cut into requests of `batch`
//! samples, the connections' requests interleaved into blocks), on disk in a scratch
//! directory, then packs every full segment and reports bytes per sample raw and packed,
//! and the time to pack and to unpack (what a restart's scan pays).

use crate::series::Fleet;
use crate::stats::round3;
use anyhow::{Context, Result};
use assay_ledger::ledger::{Ledger, LedgerConfig};
use assay_ledger::note::Signer;
use assay_ledger::pack::{pack_segment, unpack_all, PackOptions};
use assay_ledger::segment::{read_record, RecordType};
use assay_ledger::storage::FsStorage;
use assay_ledger::{Entry, Labels, SampleBatch, SeriesRef};
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};

/// Parameters of one run.
#[derive(Clone, Debug)]
pub struct PackParams {
    /// Active series.
    pub series: u64,
    /// Samples per series.
    pub rounds: u64,
    /// Samples per request (entry).
    pub batch: usize,
    /// Connections whose requests interleave.
    pub connections: u64,
    /// Sample time between rounds, ms.
    pub interval_ms: i64,
    /// Segment size limit, bytes.
    pub segment_bytes: u64,
    /// How packs are made.
    pub options: PackOptions,
    /// Scratch directory (a fresh subdirectory is made and removed).
    pub dir: std::path::PathBuf,
    /// Every series inline in every entry (as before series references), instead of by
    /// reference to its first inline appearance as the node writes them.
    pub inline: bool,
}

/// Runs the measurement and returns (human summary, JSON line).
pub fn run(p: &PackParams) -> Result<(String, serde_json::Value)> {
    let dir = p
        .dir
        .join(format!("assay-pack-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let result = measure(p, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn measure(p: &PackParams, dir: &Path) -> Result<(String, serde_json::Value)> {
    let fleet = Fleet::new(p.interval_ms as f64 / 1000.0);
    let labels: Vec<Labels> = (0..p.series)
        .map(|s| {
            Labels::new(
                fleet
                    .labels(s)
                    .into_iter()
                    .map(|l| (l.name, l.value))
                    .collect(),
            )
        })
        .collect::<Result<_, _>>()?;
    let signer = Signer::from_seed("bench.assay/ledger", [1; 32])?;
    let config = LedgerConfig {
        segment_bytes_max: p.segment_bytes,
        ..LedgerConfig::default()
    };
    let (mut ledger, _) = Ledger::open(FsStorage::open(dir)?, signer, config.clone())?;
    // Each connection's stream: its series round by round, cut into requests.
    let mut streams: Vec<(Vec<u64>, Vec<_>, u64, usize)> = (0..p.connections)
        .map(|c| {
            let mine: Vec<u64> = (c..p.series).step_by(p.connections as usize).collect();
            let cursors = mine.iter().map(|&s| fleet.cursor(s)).collect();
            (mine, cursors, 0u64, 0usize)
        })
        .collect();
    let start_ms = 1_700_000_000_000i64;
    let mut samples = 0u64;
    // As the node writes them: a series goes by reference to its first inline appearance
    // (known from the blocks before; `by_series[s]`), unless `--inline`.
    let mut by_series: Vec<Option<SeriesRef>> = vec![None; p.series as usize];
    let t = Instant::now();
    loop {
        let first_index = ledger.size();
        let mut block = Vec::new();
        let mut pending: Vec<Vec<usize>> = Vec::new();
        for (mine, cursors, round, at) in streams.iter_mut() {
            if *round >= p.rounds || mine.is_empty() {
                continue;
            }
            let mut b = SampleBatch::with_capacity(p.batch);
            let mut ids = Vec::with_capacity(p.batch);
            while b.len() < p.batch && *round < p.rounds {
                let v = fleet.next_value(&mut cursors[*at]);
                let ts = start_ms + *round as i64 * p.interval_ms;
                b.push(labels[mine[*at] as usize].clone(), ts, v);
                if ids.len() < b.series().len() {
                    ids.push(mine[*at] as usize);
                }
                *at += 1;
                if *at == mine.len() {
                    *at = 0;
                    *round += 1;
                }
            }
            samples += b.len() as u64;
            if !p.inline {
                b.set_series_refs(ids.iter().map(|&s| by_series[s]).collect());
            }
            pending.push(ids);
            block.push(Entry::Samples(b).encode());
        }
        if block.is_empty() {
            break;
        }
        let refs: Vec<&[u8]> = block.iter().map(Vec::as_slice).collect();
        ledger.append_block(start_ms, &refs)?;
        for (e, ids) in pending.drain(..).enumerate() {
            for (position, s) in ids.into_iter().enumerate() {
                by_series[s].get_or_insert(SeriesRef {
                    entry: first_index + e as u64,
                    position: position as u32,
                });
            }
        }
    }
    let written = t.elapsed();
    // What a restart pays to scan the raw ledger (every record checked, the tree rebuilt).
    let signer = ledger.signer().clone();
    drop(ledger);
    let t = Instant::now();
    let (mut ledger, _) = Ledger::open(FsStorage::open(dir)?, signer.clone(), config.clone())?;
    let open_raw = t.elapsed();
    let seqs = ledger.unpacked_segments();
    let (mut raw_bytes, mut pack_bytes, mut packed_samples) = (0u64, 0u64, 0u64);
    let (mut pack_time, mut unpack_time) = (Duration::ZERO, Duration::ZERO);
    for &seq in &seqs {
        let raw = ledger.segment_bytes(seq)?;
        packed_samples += count_samples(&raw)?;
        let t = Instant::now();
        let pack = pack_segment(&raw, &p.options)?;
        pack_time += t.elapsed();
        let t = Instant::now();
        let back = unpack_all(&pack)?;
        unpack_time += t.elapsed();
        anyhow::ensure!(
            back[..] == raw[..],
            "segment {seq} did not unpack to its bytes"
        );
        raw_bytes += raw.len() as u64;
        pack_bytes += pack.len() as u64;
        ledger.install_pack(seq, &pack)?;
    }
    drop(ledger);
    let t = Instant::now();
    let (ledger, _) = Ledger::open(FsStorage::open(dir)?, signer, config)?;
    let open_packed = t.elapsed();
    drop(ledger);
    anyhow::ensure!(
        packed_samples > 0,
        "no segment filled: raise --rounds or lower --segment-bytes"
    );
    let raw_bps = raw_bytes as f64 / packed_samples as f64;
    let pack_bps = pack_bytes as f64 / packed_samples as f64;
    let pack_rate = packed_samples as f64 / pack_time.as_secs_f64();
    let unpack_rate = packed_samples as f64 / unpack_time.as_secs_f64();
    let human = format!(
        "{samples} samples written in {:.1} s; {} full segments ({packed_samples} samples) packed: \
         raw {raw_bps:.2} B/sample → packed {pack_bps:.3} B/sample ({:.0}×); pack {:.2} M samples/s \
         ({:.1} MB/s raw), unpack {:.2} M samples/s ({:.1} MB/s raw); one core; \
         open (scan) {:.2} s raw → {:.2} s packed",
        written.as_secs_f64(),
        seqs.len(),
        raw_bps / pack_bps,
        pack_rate / 1e6,
        raw_bytes as f64 / pack_time.as_secs_f64() / 1e6,
        unpack_rate / 1e6,
        raw_bytes as f64 / unpack_time.as_secs_f64() / 1e6,
        open_raw.as_secs_f64(),
        open_packed.as_secs_f64(),
    );
    let j = json!({
        "bench": "pack", "series": p.series, "rounds": p.rounds, "batch": p.batch,
        "connections": p.connections, "segment_bytes": p.segment_bytes,
        "frame_bytes": p.options.frame_bytes, "level": p.options.level,
        "samples": samples, "packed_segments": seqs.len(), "packed_samples": packed_samples,
        "raw_bytes": raw_bytes, "pack_bytes": pack_bytes,
        "raw_bytes_per_sample": round3(raw_bps), "pack_bytes_per_sample": round3(pack_bps),
        "pack_samples_per_s": pack_rate.round(), "unpack_samples_per_s": unpack_rate.round(),
        "open_raw_s": round3(open_raw.as_secs_f64()), "open_packed_s": round3(open_packed.as_secs_f64()),
    });
    Ok((human, j))
}

/// Samples in a raw segment's entries.
fn count_samples(raw: &[u8]) -> Result<u64> {
    let (mut at, mut n) = (0, 0u64);
    while at < raw.len() {
        let r = read_record(raw, at)?;
        if r.ty == RecordType::Entry {
            n += Entry::validate(r.payload)? as u64;
        }
        at = r.end;
    }
    Ok(n)
}
