//! `ingest`: closed-loop durable-ingest throughput.
//!
//! Each client owns one keep-alive connection and one pre-serialized body, and sends the
//! next batch as soon as the previous one is answered. Only 2xx answers count: Assay
//! answers once the batch is fsynced and applied, so samples/s here is durable throughput.

use crate::body::{BatchBody, BodySpec};
use crate::http::{Conn, Target};
use crate::node;
use crate::stats::{now_unix_ms, process_cpu_seconds, round3, Summary, Unit};
use anyhow::{bail, Result};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Most samples Assay accepts in one push (`samples_per_batch_max`).
pub const BATCH_SAMPLES_MAX: usize = 100_000;
/// Most concurrent clients (connections) one generator opens.
pub const CLIENTS_MAX: u32 = 1024;
/// Timestamps may run at most this far ahead of the wall clock (the node allows 10 min).
const TS_AHEAD_MS_MAX: i64 = 9 * 60 * 1000;
/// Failed requests after which a client gives up, so a broken node ends the run
/// (a warm-up with a persistent 4xx would otherwise never finish).
const CLIENT_ERRORS_MAX: u64 = 1000;
/// Back-off after a 503 (queue full), so a saturated node is not hammered in a spin.
const BUSY_BACKOFF: Duration = Duration::from_millis(2);

/// Parameters of one ingest run.
#[derive(Clone, Debug)]
pub struct IngestParams {
    /// Node to push to.
    pub target: Target,
    /// Samples per request.
    pub batch: usize,
    /// Concurrent closed-loop clients.
    pub clients: u32,
    /// Timed window.
    pub duration: Duration,
    /// Untimed passes over every client's series before the timed window.
    pub warmup_rounds: u64,
    /// Distinct series in total, split evenly over clients; each client gets at least
    /// `batch`, so no request repeats a series (every sample is its own series, as in a
    /// scrape: the per-series cost of the node is fully exercised).
    pub series: u64,
}

/// What one client saw.
#[derive(Default)]
struct ClientResult {
    ok_requests: u64,
    ok_samples: u64,
    errors: BTreeMap<String, u64>,
    latencies: Vec<Duration>,
    fill_time: Duration,
    /// CPU seconds the whole generator used in the window (user + system).
    cpu: Option<f64>,
}

/// Runs the load and returns (human summary, JSON line).
pub async fn run(p: IngestParams) -> Result<(String, serde_json::Value)> {
    if p.batch == 0 || p.batch > BATCH_SAMPLES_MAX {
        bail!(
            "--batch {} is out of range: use 1..={BATCH_SAMPLES_MAX}",
            p.batch
        );
    }
    if p.clients == 0 || p.clients > CLIENTS_MAX {
        bail!(
            "--clients {} is out of range: use 1..={CLIENTS_MAX}",
            p.clients
        );
    }
    let series_per_client = p.series.div_ceil(u64::from(p.clients)).max(p.batch as u64);
    // A fresh `run` label per run: earlier runs' series never receive older timestamps.
    let run_id = format!("{:x}", now_unix_ms());
    let ts_start_ms = now_unix_ms() - 60_000;
    let mut conns = Vec::new();
    let mut bodies = Vec::new();
    for c in 0..p.clients {
        conns.push(Conn::connect(&p.target).await?);
        bodies.push(BatchBody::new(&BodySpec {
            run: run_id.clone(),
            metric: "bench_ingest".into(),
            client: c,
            samples: p.batch,
            series: series_per_client,
            ts_start_ms,
            marker: false,
        })?);
    }
    // Warm-up: each client first pushes `warmup_rounds` passes over its series, untimed,
    // so the timed window measures appends to existing series, not series creation.
    let warmup_batches = p.warmup_rounds * series_per_client.div_ceil(p.batch as u64);
    let warm_start = Instant::now();
    let far = warm_start + Duration::from_secs(86_400);
    let (warm, mut clients) = phase(
        conns.into_iter().zip(bodies).map(|(c, b)| (c, b, 0)),
        far,
        warmup_batches,
    )
    .await?;
    let warmup = (
        warm_start.elapsed(),
        warm.ok_samples,
        warm.errors.values().sum::<u64>(),
    );

    let before = node::scrape(&p.target).await?;
    let cpu_before = process_cpu_seconds();
    let start = Instant::now();
    let (mut total, rest) = phase(clients.drain(..), start + p.duration, u64::MAX).await?;
    drop(rest);
    let elapsed = start.elapsed();
    total.cpu = process_cpu_seconds().map(|c| c - cpu_before.unwrap_or(0.0));
    let after = node::scrape(&p.target).await?;
    Ok(report(
        &p,
        series_per_client,
        total,
        elapsed,
        warmup,
        &before,
        &after,
    ))
}

/// A client's connection, body and next batch number, carried from warm-up to the run.
type ClientState = (Conn, BatchBody, u64);

/// Runs every client until `deadline` or `batches_max` successful batches each.
async fn phase(
    clients: impl Iterator<Item = ClientState>,
    deadline: Instant,
    batches_max: u64,
) -> Result<(ClientResult, Vec<ClientState>)> {
    let tasks: Vec<_> = clients
        .map(|(conn, body, next)| tokio::spawn(client(conn, body, next, deadline, batches_max)))
        .collect();
    let mut total = ClientResult::default();
    let mut states = Vec::new();
    for t in tasks {
        let (r, state) = t.await?;
        total.ok_requests += r.ok_requests;
        total.ok_samples += r.ok_samples;
        total.latencies.extend(r.latencies);
        total.fill_time += r.fill_time;
        for (k, v) in r.errors {
            *total.errors.entry(k).or_default() += v;
        }
        states.push(state);
    }
    Ok((total, states))
}

async fn client(
    mut conn: Conn,
    mut body: BatchBody,
    mut batch_no: u64,
    deadline: Instant,
    batches_max: u64,
) -> (ClientResult, ClientState) {
    let mut r = ClientResult::default();
    while Instant::now() < deadline
        && r.ok_requests < batches_max
        && r.errors.values().sum::<u64>() < CLIENT_ERRORS_MAX
    {
        if body.last_ts_ms(batch_no) > now_unix_ms() + TS_AHEAD_MS_MAX {
            // Too few series for this rate: timestamps would leave the node's window.
            *r.errors.entry("series_exhausted".into()).or_default() += 1;
            break;
        }
        let f = Instant::now();
        body.fill(batch_no);
        r.fill_time += f.elapsed();
        let t = Instant::now();
        match conn.post_json("/v1/push", body.bytes()).await {
            Ok(resp) if (200..300).contains(&resp.status) => {
                r.latencies.push(t.elapsed());
                r.ok_requests += 1;
                r.ok_samples += body.samples() as u64;
                batch_no += 1;
            }
            Ok(resp) => {
                *r.errors.entry(resp.status.to_string()).or_default() += 1;
                if resp.status == 503 {
                    tokio::time::sleep(BUSY_BACKOFF).await;
                } else {
                    // A 4xx for this batch would repeat forever; move on to fresh samples.
                    batch_no += 1;
                }
            }
            Err(e) => {
                *r.errors.entry(format!("io: {e}")).or_default() += 1;
                if conn.reconnect().await.is_err() {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
    (r, (conn, body, batch_no))
}

fn report(
    p: &IngestParams,
    series_per_client: u64,
    mut r: ClientResult,
    elapsed: Duration,
    warmup: (Duration, u64, u64),
    before: &node::Scrape,
    after: &node::Scrape,
) -> (String, serde_json::Value) {
    let secs = elapsed.as_secs_f64();
    let lat = Summary::of(&mut r.latencies);
    let samples_per_s = r.ok_samples as f64 / secs;
    let requests_per_s = r.ok_requests as f64 / secs;
    let errors: u64 = r.errors.values().sum();
    let blocks = node::delta(before, after, "assay_blocks_committed_total");
    let entries = node::delta(before, after, "assay_entries_committed_total");
    let server_samples = node::delta(before, after, "assay_samples_committed_total");
    let durable_sum = node::delta(before, after, "assay_commit_durable_seconds_sum");
    let applied_sum = node::delta(before, after, "assay_commit_applied_seconds_sum");
    let per_block = |x: f64| if blocks > 0.0 { x / blocks } else { 0.0 };
    let (warm_time, warm_samples, warm_errors) = warmup;
    let warm_rate = warm_samples as f64 / warm_time.as_secs_f64().max(1e-9);
    let human = format!(
        "ingest batch={} clients={} series={}: warm-up (new series) {warm_samples} samples \
         in {:.2} s = {warm_rate:.0} samples/s, {warm_errors} errors\n  timed: {:.0} samples/s, {:.1} requests/s over {:.2} s; \
         latency {}; errors {errors} {:?}\n  server: {blocks} blocks, {:.1} entries/block, \
         durable {:.3} ms/block, applied {:.3} ms/block, {:.1}% of wall time in commit; \
         generator: {:.2} CPU s ({:.0}% of one core), of which body patching {:.3} s",
        p.batch,
        p.clients,
        series_per_client * u64::from(p.clients),
        warm_time.as_secs_f64(),
        samples_per_s,
        requests_per_s,
        secs,
        lat.human(Unit::Millis),
        r.errors,
        per_block(entries),
        per_block(durable_sum) * 1e3,
        per_block(applied_sum) * 1e3,
        applied_sum / secs * 100.0,
        r.cpu.unwrap_or(0.0),
        r.cpu.unwrap_or(0.0) / secs * 100.0,
        r.fill_time.as_secs_f64(),
    );
    let json = json!({
        "bench": "ingest",
        "batch": p.batch,
        "clients": p.clients,
        "series": series_per_client * u64::from(p.clients),
        "duration_s": round3(secs),
        "samples_ok": r.ok_samples,
        "requests_ok": r.ok_requests,
        "samples_per_s": samples_per_s.round(),
        "requests_per_s": round3(requests_per_s),
        "latency": lat.json(Unit::Millis),
        "errors": errors,
        "errors_by_kind": r.errors,
        "server": {
            "samples_committed": server_samples,
            "blocks": blocks,
            "entries_per_block": round3(per_block(entries)),
            "durable_ms_per_block": round3(per_block(durable_sum) * 1e3),
            "applied_ms_per_block": round3(per_block(applied_sum) * 1e3),
        },
        "warmup": {
            "rounds": p.warmup_rounds,
            "samples": warm_samples,
            "duration_s": round3(warm_time.as_secs_f64()),
            "samples_per_s": warm_rate.round(),
            "errors": warm_errors,
        },
        "generator_fill_s": round3(r.fill_time.as_secs_f64()),
        "generator_cpu_s": r.cpu.map(round3),
    });
    (human, json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A fake node: `/metrics` answers a counter; every third push answers 400, others 200.
    async fn fake_node() -> Target {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let pushes = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                let pushes = pushes.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    loop {
                        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                            let mut chunk = [0u8; 65536];
                            match s.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                            continue;
                        };
                        let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length: "))
                            .map_or(0, |v| v.trim().parse().unwrap());
                        while buf.len() < end + 4 + len {
                            let mut chunk = [0u8; 65536];
                            let n = s.read(&mut chunk).await.unwrap();
                            buf.extend_from_slice(&chunk[..n]);
                        }
                        buf.drain(..end + 4 + len);
                        let (status, body) = if head.starts_with("get /metrics") {
                            ("200 OK", "assay_samples_committed_total 7\n".to_string())
                        } else if pushes.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 3 == 2
                        {
                            ("400 Bad Request", "{}".to_string())
                        } else {
                            ("200 OK", "{}".to_string())
                        };
                        let reply = format!(
                            "HTTP/1.1 {status}\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        s.write_all(reply.as_bytes()).await.unwrap();
                    }
                });
            }
        });
        Target::parse(&format!("http://{addr}")).unwrap()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn counts_only_2xx_and_reports_other_statuses_as_errors() {
        let p = IngestParams {
            target: fake_node().await,
            batch: 10,
            clients: 2,
            duration: Duration::from_millis(200),
            warmup_rounds: 1,
            series: 40,
        };
        let (_, j) = run(p.clone()).await.unwrap();
        let ok = j["requests_ok"].as_u64().unwrap();
        assert!(ok > 10, "{j}");
        assert_eq!(j["samples_ok"].as_u64().unwrap(), ok * 10);
        assert!(j["errors_by_kind"]["400"].as_u64().unwrap() > 0, "{j}");
        // Two clients × 20 series each: one warm-up round is 2 batches of 10 per client.
        assert_eq!(j["warmup"]["samples"], 40);
        assert_eq!(j["series"], 40);
        assert!(run(IngestParams {
            batch: BATCH_SAMPLES_MAX + 1,
            ..p.clone()
        })
        .await
        .is_err());
        assert!(run(IngestParams { clients: 0, ..p }).await.is_err());
    }
}
