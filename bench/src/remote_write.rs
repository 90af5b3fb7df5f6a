//! `remote-write`: Prometheus remote write 1.0 load, the same bytes for any receiver.
//!
//! The fleet of [`crate::series`] is split over N connections (series `s` belongs to
//! connection `s % N`), so each series' samples travel on one connection, in time order,
//! one request after the other: no receiver sees an out-of-order sample. Each connection's
//! sample stream is round-major (every one of its series at round 0, then round 1, …, one
//! round every `interval` of sample time) and cut into requests of `batch` samples; every
//! request is encoded (protobuf + snappy) before the clock starts, so the generator only
//! writes bytes while timing. Connections may not run more than `max_lead_rounds` rounds
//! ahead of the slowest one, because Prometheus refuses samples older than its head's
//! newest minus an hour ("out of bounds"), whoever sent them.
//!
//! With `--server-pid` the server's CPU seconds (all threads, /proc/PID/stat) over the
//! timed run and its peak RSS (VmHWM) are reported too.

use crate::http::{Conn, Target};
use crate::series::{Cursor, Fleet};
use crate::stats::{
    now_unix_ms, peak_rss_bytes_of, process_cpu_seconds, process_cpu_seconds_of, round3, Summary,
    Unit,
};
use anyhow::{bail, Context, Result};
use assay_ingest::remote_write::{encode_remote_write, proto};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Headers of a remote write 1.0 request.
const HEADERS: &str = "Content-Type: application/x-protobuf\r\nContent-Encoding: snappy\r\nX-Prometheus-Remote-Write-Version: 0.1.0\r\nUser-Agent: assay-bench\r\n";
/// Failed requests after which a connection stops (a broken receiver ends the run).
const CONN_ERRORS_MAX: u64 = 200;
/// Pre-encoded bytes the generator may hold.
const ENCODED_BYTES_MAX: usize = 8 << 30;

/// Parameters of one run.
#[derive(Clone, Debug)]
pub struct RemoteWriteParams {
    /// Receiver.
    pub target: Target,
    /// Request path, e.g. `/api/v1/write`.
    pub path: String,
    /// Concurrent connections.
    pub connections: usize,
    /// Samples per request.
    pub batch: usize,
    /// Active series.
    pub series: u64,
    /// Scrape rounds: every series gets this many samples.
    pub rounds: u64,
    /// Sample time between rounds, ms.
    pub interval_ms: i64,
    /// Timestamp of round 0, ms; default: so that the last round lands 1 min before now.
    pub start_ms: Option<i64>,
    /// The receiver's process id, for its CPU time and peak RSS.
    pub server_pid: Option<u32>,
    /// How many rounds a connection may run ahead of the slowest.
    pub max_lead_rounds: u64,
}

/// One pre-encoded request.
struct Request {
    body: Vec<u8>,
    samples: u64,
    /// The newest round whose samples it carries.
    last_round: u64,
}

#[derive(Default)]
struct ConnResult {
    ok_samples: u64,
    ok_requests: u64,
    errors: BTreeMap<String, u64>,
    first_error: BTreeMap<String, String>,
    latencies: Vec<Duration>,
}

/// The timestamp of round 0 for `p`.
pub fn start_ms(p: &RemoteWriteParams) -> i64 {
    p.start_ms
        .unwrap_or_else(|| now_unix_ms() - 60_000 - p.interval_ms * p.rounds as i64)
}

/// The snappy-compressed bodies a single connection would send for the whole fleet
/// (`series` series × `rounds` rounds, `batch` samples each), for in-process benchmarks.
pub fn fleet_bodies(
    series: u64,
    rounds: u64,
    batch: usize,
    interval_ms: i64,
    t0: i64,
) -> Vec<Vec<u8>> {
    let p = RemoteWriteParams {
        target: Target {
            authority: String::new(),
        },
        path: String::new(),
        connections: 1,
        batch,
        series,
        rounds,
        interval_ms,
        start_ms: Some(t0),
        server_pid: None,
        max_lead_rounds: rounds,
    };
    let fleet = Fleet::new(interval_ms as f64 / 1000.0);
    encode_connection(&p, &fleet, 0, t0)
        .into_iter()
        .map(|r| r.body)
        .collect()
}

/// Encodes connection `c`'s requests.
fn encode_connection(p: &RemoteWriteParams, fleet: &Fleet, c: usize, t0: i64) -> Vec<Request> {
    let mine: Vec<u64> = (c as u64..p.series).step_by(p.connections).collect();
    let labels: Vec<Vec<proto::Label>> = mine.iter().map(|&s| fleet.labels(s)).collect();
    let mut cursors: Vec<Cursor> = mine.iter().map(|&s| fleet.cursor(s)).collect();
    let total = mine.len() as u64 * p.rounds;
    let mut out = Vec::new();
    let mut k = 0u64;
    // Index into `timeseries` of each of my series in the request being built.
    let mut slot: Vec<u32> = vec![u32::MAX; mine.len()];
    while k < total {
        let end = (k + p.batch as u64).min(total);
        let mut req = proto::WriteRequest::default();
        let mut used = Vec::new();
        for i in k..end {
            let pos = (i % mine.len() as u64) as usize;
            let round = i / mine.len() as u64;
            let v = fleet.next_value(&mut cursors[pos]);
            if slot[pos] == u32::MAX {
                slot[pos] = req.timeseries.len() as u32;
                used.push(pos);
                req.timeseries.push(proto::TimeSeries {
                    labels: labels[pos].clone(),
                    ..Default::default()
                });
            }
            req.timeseries[slot[pos] as usize]
                .samples
                .push(proto::Sample {
                    value: v,
                    timestamp: t0 + round as i64 * p.interval_ms,
                });
        }
        for pos in used {
            slot[pos] = u32::MAX;
        }
        out.push(Request {
            body: encode_remote_write(&req),
            samples: end - k,
            last_round: (end - 1) / mine.len() as u64,
        });
        k = end;
    }
    out
}

/// Runs the load; returns (human summary, JSON line).
pub async fn run(p: RemoteWriteParams) -> Result<(String, serde_json::Value)> {
    if p.connections == 0 || p.connections > 256 {
        bail!("--connections {} is out of range 1..=256", p.connections);
    }
    if p.batch == 0 || p.series == 0 || p.rounds == 0 {
        bail!("--batch, --series and --rounds must be positive");
    }
    if p.series < p.connections as u64 {
        bail!("--series must be at least --connections");
    }
    let fleet = Fleet::new(p.interval_ms as f64 / 1000.0);
    let t0 = start_ms(&p);
    let encode_start = Instant::now();
    let encoded: Vec<Vec<Request>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..p.connections)
            .map(|c| {
                let (p, fleet) = (&p, &fleet);
                scope.spawn(move || encode_connection(p, fleet, c, t0))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("encoder thread panicked"))
            .collect()
    });
    let encode_s = encode_start.elapsed().as_secs_f64();
    let encoded_bytes: usize = encoded.iter().flatten().map(|r| r.body.len()).sum();
    if encoded_bytes > ENCODED_BYTES_MAX {
        bail!("{encoded_bytes} encoded bytes exceed {ENCODED_BYTES_MAX}: fewer rounds");
    }
    let total_samples: u64 = encoded.iter().flatten().map(|r| r.samples).sum();
    let requests: usize = encoded.iter().map(Vec::len).sum();

    let mut conns = Vec::new();
    for _ in 0..p.connections {
        conns.push(Conn::connect(&p.target).await?);
    }
    let pid = p.server_pid.map(|p| p.to_string());
    let server_cpu0 = pid.as_deref().and_then(process_cpu_seconds_of);
    let gen_cpu0 = process_cpu_seconds();
    let progress: Arc<Vec<AtomicU64>> =
        Arc::new((0..p.connections).map(|_| AtomicU64::new(0)).collect());
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (c, (mut conn, reqs)) in conns.into_iter().zip(encoded).enumerate() {
        let progress = progress.clone();
        let path = p.path.clone();
        let lead = p.max_lead_rounds;
        tasks.push(tokio::spawn(async move {
            let mut r = ConnResult::default();
            let mut failures = 0u64;
            for req in &reqs {
                // Wait for the slowest connection (bounded: it makes progress or fails).
                let wait_start = Instant::now();
                while progress
                    .iter()
                    .map(|a| a.load(Ordering::Relaxed))
                    .min()
                    .unwrap_or(0)
                    + lead
                    < req.last_round
                    && wait_start.elapsed() < Duration::from_secs(60)
                {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                let t = Instant::now();
                match conn.post_with(&path, HEADERS, &req.body).await {
                    Ok(resp) if (200..300).contains(&resp.status) => {
                        r.latencies.push(t.elapsed());
                        r.ok_requests += 1;
                        r.ok_samples += req.samples;
                    }
                    Ok(resp) => {
                        r.latencies.push(t.elapsed());
                        let key = resp.status.to_string();
                        *r.errors.entry(key.clone()).or_default() += 1;
                        r.first_error.entry(key).or_insert_with(|| {
                            String::from_utf8_lossy(&resp.body)
                                .chars()
                                .take(300)
                                .collect()
                        });
                        failures += 1;
                    }
                    Err(e) => {
                        *r.errors.entry("transport".into()).or_default() += 1;
                        r.first_error
                            .entry("transport".into())
                            .or_insert_with(|| format!("{e:#}"));
                        failures += 1;
                        if conn.reconnect().await.is_err() {
                            break;
                        }
                    }
                }
                progress[c].store(req.last_round, Ordering::Relaxed);
                if failures >= CONN_ERRORS_MAX {
                    break;
                }
            }
            // A finished connection must not hold the others back.
            progress[c].store(u64::MAX / 2, Ordering::Relaxed);
            r
        }));
    }
    let mut all = ConnResult::default();
    for t in tasks {
        let r = t.await.context("connection task panicked")?;
        all.ok_samples += r.ok_samples;
        all.ok_requests += r.ok_requests;
        for (k, v) in r.errors {
            *all.errors.entry(k).or_default() += v;
        }
        for (k, v) in r.first_error {
            all.first_error.entry(k).or_insert(v);
        }
        all.latencies.extend(r.latencies);
    }
    let elapsed = start.elapsed().as_secs_f64();
    let gen_cpu = match (gen_cpu0, process_cpu_seconds()) {
        (Some(a), Some(b)) => Some(round3(b - a)),
        _ => None,
    };
    let server_cpu = match (server_cpu0, pid.as_deref().and_then(process_cpu_seconds_of)) {
        (Some(a), Some(b)) => Some(round3(b - a)),
        _ => None,
    };
    let server_rss = pid.as_deref().and_then(peak_rss_bytes_of);
    let lat = Summary::of(&mut all.latencies);
    let sps = all.ok_samples as f64 / elapsed;
    let cpu_per_m = server_cpu
        .filter(|_| all.ok_samples > 0)
        .map(|c| round3(c / (all.ok_samples as f64 / 1e6)));
    let errors: u64 = all.errors.values().sum();
    let human = format!(
        "remote-write {}{}: {} connections, batch {}, {} series × {} rounds ({} s apart) = {} samples in {} requests ({:.1} MB encoded in {:.1} s)\n\
         {:.0} samples/s over {:.2} s; {} errors {:?}\n\
         request latency: {}\n\
         server: {} CPU s ({} CPU s per million samples), peak RSS {} MB; generator {} CPU s{}",
        p.target.authority,
        p.path,
        p.connections,
        p.batch,
        p.series,
        p.rounds,
        p.interval_ms as f64 / 1000.0,
        total_samples,
        requests,
        encoded_bytes as f64 / 1e6,
        encode_s,
        sps,
        elapsed,
        errors,
        all.errors,
        lat.human(Unit::Millis),
        server_cpu.map_or("?".into(), |c| c.to_string()),
        cpu_per_m.map_or("?".into(), |c| c.to_string()),
        server_rss.map_or("?".into(), |b| (b / 1_000_000).to_string()),
        gen_cpu.map_or("?".into(), |c| c.to_string()),
        if all.first_error.is_empty() {
            String::new()
        } else {
            format!("\nfirst error bodies: {:?}", all.first_error)
        }
    );
    let json = json!({
        "bench": "remote_write",
        "path": p.path,
        "connections": p.connections,
        "batch": p.batch,
        "series": p.series,
        "rounds": p.rounds,
        "interval_ms": p.interval_ms,
        "start_ms": t0,
        "end_ms": t0 + (p.rounds as i64 - 1) * p.interval_ms,
        "samples_sent": total_samples,
        "samples_ok": all.ok_samples,
        "requests": requests,
        "encoded_bytes": encoded_bytes,
        "encoded_bytes_per_sample": round3(encoded_bytes as f64 / total_samples as f64),
        "elapsed_s": round3(elapsed),
        "samples_per_s": sps.round(),
        "errors": errors,
        "errors_by_status": all.errors,
        "first_error": all.first_error,
        "latency": lat.json(Unit::Millis),
        "server_cpu_s": server_cpu,
        "server_cpu_s_per_million": cpu_per_m,
        "server_peak_rss_bytes": server_rss,
        "generator_cpu_s": gen_cpu,
    });
    Ok((human, json))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_keep_each_series_in_time_order_and_cover_every_sample() {
        let p = RemoteWriteParams {
            target: Target::parse("http://127.0.0.1:1").unwrap(),
            path: "/api/v1/write".into(),
            connections: 2,
            batch: 7,
            series: 10,
            rounds: 4,
            interval_ms: 15_000,
            start_ms: Some(1_000_000),
            server_pid: None,
            max_lead_rounds: 10,
        };
        let fleet = Fleet::new(15.0);
        let reqs = encode_connection(&p, &fleet, 1, 1_000_000);
        assert_eq!(reqs.iter().map(|r| r.samples).sum::<u64>(), 5 * 4);
        assert_eq!(reqs.last().unwrap().last_round, 3);
        let mut last: BTreeMap<String, i64> = BTreeMap::new();
        for r in &reqs {
            let raw = snap::raw::Decoder::new().decompress_vec(&r.body).unwrap();
            let w = <proto::WriteRequest as prost::Message>::decode(raw.as_slice()).unwrap();
            for ts in w.timeseries {
                let key = format!("{:?}", ts.labels);
                for s in ts.samples {
                    let prev = last.insert(key.clone(), s.timestamp);
                    assert!(prev.is_none_or(|p| p + 15_000 == s.timestamp));
                }
            }
        }
        assert_eq!(last.len(), 5);
        assert!(last.values().all(|&t| t == 1_000_000 + 3 * 15_000));
    }
}
