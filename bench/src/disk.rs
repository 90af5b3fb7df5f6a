//! `disk` (ledger bytes per committed sample) and `fsync-probe` (the storage baseline).

use crate::http::Target;
use crate::node;
use crate::stats::{round3, Summary, Unit};
use anyhow::{bail, Context, Result};
use serde_json::json;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// Most fsyncs one probe performs.
pub const FSYNCS_MAX: u32 = 1_000_000;
/// Largest write per fsync in the probe, bytes.
pub const PROBE_WRITE_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Apparent (length) and allocated (blocks) bytes of a directory tree.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskUsage {
    /// Sum of file lengths.
    pub apparent_bytes: u64,
    /// Sum of allocated 512-byte blocks × 512.
    pub allocated_bytes: u64,
    /// Files counted.
    pub files: u64,
}

/// Sums the files under `dir` (symlinks are not followed).
pub fn usage(dir: &Path) -> Result<DiskUsage> {
    let mut u = DiskUsage::default();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in
            std::fs::read_dir(&d).with_context(|| format!("reading directory {}", d.display()))?
        {
            let e = e?;
            let m = e.metadata()?;
            if m.is_dir() {
                stack.push(e.path());
            } else if m.is_file() {
                u.apparent_bytes += m.len();
                u.allocated_bytes += m.blocks() * 512;
                u.files += 1;
            }
        }
    }
    Ok(u)
}

/// Bytes of `data_dir/ledger` per committed sample; samples from `samples` or the node.
pub async fn run(
    data_dir: &Path,
    samples: Option<u64>,
    target: Option<Target>,
) -> Result<(String, serde_json::Value)> {
    let ledger = data_dir.join("ledger");
    let u = usage(&ledger)?;
    let (samples, entry_bytes) = match (samples, target) {
        (Some(s), _) => (s, None),
        (None, Some(t)) => {
            let m = node::scrape(&t).await?;
            let s = m
                .get("assay_samples_committed_total")
                .copied()
                .unwrap_or(0.0) as u64;
            (
                s,
                m.get("assay_entry_bytes_committed_total")
                    .map(|b| *b as u64),
            )
        }
        (None, None) => {
            bail!("give --samples N, or --url of the running node to read its /metrics")
        }
    };
    if samples == 0 {
        bail!("no samples were committed (assay_samples_committed_total is 0): run ingest first, or pass --samples");
    }
    let per = |b: u64| b as f64 / samples as f64;
    let human = format!(
        "disk {}: {} files, {:.1} MB apparent, {:.1} MB allocated, {samples} samples → \
         {:.2} B/sample apparent, {:.2} B/sample allocated{}",
        ledger.display(),
        u.files,
        u.apparent_bytes as f64 / 1e6,
        u.allocated_bytes as f64 / 1e6,
        per(u.apparent_bytes),
        per(u.allocated_bytes),
        entry_bytes.map_or(String::new(), |b| format!(
            ", encoded entries {:.2} B/sample",
            per(b)
        )),
    );
    let json = json!({
        "bench": "disk",
        "ledger_dir": ledger.display().to_string(),
        "files": u.files,
        "apparent_bytes": u.apparent_bytes,
        "allocated_bytes": u.allocated_bytes,
        "samples": samples,
        "bytes_per_sample": round3(per(u.apparent_bytes)),
        "allocated_bytes_per_sample": round3(per(u.allocated_bytes)),
        "entry_bytes_per_sample": entry_bytes.map(|b| round3(per(b))),
    });
    Ok((human, json))
}

/// Appends `bytes` and calls fdatasync, `count` times, in a scratch file under `dir`
/// (the ledger's segment writes use `sync_data` the same way).
pub fn fsync_probe(dir: &Path, count: u32, bytes: usize) -> Result<(String, serde_json::Value)> {
    if count == 0 || count > FSYNCS_MAX {
        bail!("--count {count} is out of range: use 1..={FSYNCS_MAX}");
    }
    if bytes == 0 || bytes > PROBE_WRITE_BYTES_MAX {
        bail!("--bytes {bytes} is out of range: use 1..={PROBE_WRITE_BYTES_MAX}");
    }
    let path = dir.join(format!(".assay-fsync-probe-{}", std::process::id()));
    let result = probe_file(&path, count, bytes);
    let _ = std::fs::remove_file(&path);
    let mut times = result?;
    let total: Duration = times.iter().sum();
    let s = Summary::of(&mut times);
    let per_s = f64::from(count) / total.as_secs_f64();
    let human = format!(
        "fsync-probe {} ({bytes} B appended per fdatasync, {count} times): {:.0} fsyncs/s, {:.1} MB/s; {}",
        dir.display(),
        per_s,
        per_s * bytes as f64 / 1e6,
        s.human(Unit::Micros)
    );
    let json = json!({
        "bench": "fsync_probe",
        "dir": dir.display().to_string(),
        "write_bytes": bytes,
        "count": count,
        "fsyncs_per_s": per_s.round(),
        "mb_per_s": round3(per_s * bytes as f64 / 1e6),
        "fsync": s.json(Unit::Micros),
    });
    Ok((human, json))
}

fn probe_file(path: &Path, count: u32, bytes: usize) -> Result<Vec<Duration>> {
    let mut f = std::fs::File::create(path)
        .with_context(|| format!("creating probe file {}", path.display()))?;
    let data = vec![0xa5u8; bytes];
    let mut times = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let t = Instant::now();
        f.write_all(&data)?;
        f.sync_data()?;
        times.push(t.elapsed());
    }
    Ok(times)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_sums_nested_files() {
        let dir = std::env::temp_dir().join(format!("assay-bench-usage-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("a/b")).unwrap();
        std::fs::write(dir.join("x"), [0u8; 10]).unwrap();
        std::fs::write(dir.join("a/b/y"), [0u8; 5]).unwrap();
        let u = usage(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!((u.apparent_bytes, u.files), (15, 2));
    }

    #[test]
    fn probe_limits_are_checked_at_the_edge() {
        let dir = std::env::temp_dir();
        assert!(fsync_probe(&dir, 0, 4096).is_err());
        assert!(fsync_probe(&dir, FSYNCS_MAX + 1, 4096).is_err());
        assert!(fsync_probe(&dir, 1, PROBE_WRITE_BYTES_MAX + 1).is_err());
        let (_, j) = fsync_probe(&dir, 3, 4096).unwrap();
        assert_eq!(j["fsync"]["count"], 3);
    }
}
