//! `latency`: open-loop push at a target rate; time from push start to queryable.
//!
//! Push `k` is due at `start + k · batch / rate`. A dispatcher hands due pushes to a pool
//! of connections; latencies are measured from the *due* time, so a push that waits for a
//! free connection (the node falling behind) counts its wait (no coordinated omission).
//! Every push carries one marker sample `bench_marker{run,seq}`; for every
//! `sample_every`-th push, after the 2xx, the worker queries `/api/v1/query` for that
//! marker until it is visible and records due-time → visible.

use crate::body::{BatchBody, BodySpec};
use crate::http::{encode_query_value, Conn, Target};
use crate::ingest::BATCH_SAMPLES_MAX;
use crate::stats::{now_unix_ms, round3, Summary, Unit};
use anyhow::{bail, Result};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Mutex};

/// Connections in the pool; a push finding none free waits (and its wait is measured).
pub const CONNECTIONS_MAX: usize = 256;
/// Queries per marker before it is declared lost.
const VISIBILITY_POLLS_MAX: u32 = 10_000;
/// Pause between visibility polls.
const VISIBILITY_POLL_PAUSE: Duration = Duration::from_micros(200);

/// Parameters of one latency run.
#[derive(Clone, Debug)]
pub struct LatencyParams {
    /// Node to push to.
    pub target: Target,
    /// Target samples per second.
    pub rate: u64,
    /// Samples per push (the marker included).
    pub batch: usize,
    /// Length of the schedule.
    pub duration: Duration,
    /// Distinct data series cycled through.
    pub series: u64,
    /// Query visibility of every n-th push.
    pub sample_every: u64,
    /// Connections in the pool.
    pub connections: usize,
}

#[derive(Default)]
struct Observed {
    push: Vec<Duration>,
    visible: Vec<Duration>,
    polls: u64,
    lost: u64,
    errors: u64,
    ok_samples: u64,
}

/// Runs the schedule and returns (human summary, JSON line).
pub async fn run(p: LatencyParams) -> Result<(String, serde_json::Value)> {
    if p.batch < 2 || p.batch > BATCH_SAMPLES_MAX {
        bail!(
            "--batch {} is out of range: use 2..={BATCH_SAMPLES_MAX} (one sample is the marker)",
            p.batch
        );
    }
    if p.rate < p.batch as u64 {
        bail!(
            "--rate {} is below one batch per second (--batch {})",
            p.rate,
            p.batch
        );
    }
    if p.connections == 0 || p.connections > CONNECTIONS_MAX {
        bail!(
            "--connections {} is out of range: use 1..={CONNECTIONS_MAX}",
            p.connections
        );
    }
    let interval = Duration::from_secs_f64(p.batch as f64 / p.rate as f64);
    let pushes = (p.duration.as_secs_f64() / interval.as_secs_f64()).floor() as u64;
    let run_id = format!("{:x}", now_unix_ms());
    let spec = BodySpec {
        run: run_id.clone(),
        metric: "bench_latency".into(),
        client: 0,
        samples: p.batch - 1,
        series: p.series,
        ts_start_ms: now_unix_ms() - 60_000,
        marker: true,
    };
    let (tx, rx) = mpsc::channel::<(u64, Instant)>(pushes as usize + 1);
    let rx = Arc::new(Mutex::new(rx));
    let mut workers = Vec::new();
    for _ in 0..p.connections {
        let conn = Conn::connect(&p.target).await?;
        let body = BatchBody::new(&spec)?;
        workers.push(tokio::spawn(worker(
            conn,
            body,
            rx.clone(),
            run_id.clone(),
            p.sample_every,
        )));
    }
    let start = Instant::now();
    for k in 0..pushes {
        let due = start + interval.mul_f64(k as f64);
        tokio::time::sleep_until(due.into()).await;
        tx.send((k, due)).await?;
    }
    drop(tx);
    let mut all = Observed::default();
    for w in workers {
        let o = w.await?;
        all.push.extend(o.push);
        all.visible.extend(o.visible);
        all.polls += o.polls;
        all.lost += o.lost;
        all.errors += o.errors;
        all.ok_samples += o.ok_samples;
    }
    Ok(report(&p, pushes, all, start.elapsed()))
}

async fn worker(
    mut conn: Conn,
    mut body: BatchBody,
    rx: Arc<Mutex<mpsc::Receiver<(u64, Instant)>>>,
    run_id: String,
    sample_every: u64,
) -> Observed {
    let mut o = Observed::default();
    loop {
        let next = rx.lock().await.recv().await;
        let Some((k, due)) = next else { break };
        let ts_ms = now_unix_ms();
        body.fill(k);
        body.set_marker(k, ts_ms);
        match conn.post_json("/v1/push", body.bytes()).await {
            Ok(r) if (200..300).contains(&r.status) => {
                o.push.push(due.elapsed());
                o.ok_samples += body.samples() as u64;
            }
            _ => {
                o.errors += 1;
                let _ = conn.reconnect().await;
                continue;
            }
        }
        if k % sample_every.max(1) != 0 {
            continue;
        }
        let query = format!("bench_marker{{run=\"{run_id}\",seq=\"{k:08}\"}}");
        let path = format!(
            "/api/v1/query?query={}&time={}.{:03}",
            encode_query_value(&query),
            ts_ms / 1000,
            ts_ms % 1000
        );
        let mut found = false;
        for _ in 0..VISIBILITY_POLLS_MAX {
            o.polls += 1;
            if let Ok(r) = conn.get(&path).await {
                if r.status == 200 && has_result(&r.body) {
                    found = true;
                    break;
                }
            }
            tokio::time::sleep(VISIBILITY_POLL_PAUSE).await;
        }
        if found {
            o.visible.push(due.elapsed());
        } else {
            o.lost += 1;
        }
    }
    o
}

/// Whether a Prometheus query answer holds at least one series.
fn has_result(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["data"]["result"].as_array().map(|a| !a.is_empty()))
        .unwrap_or(false)
}

fn report(
    p: &LatencyParams,
    pushes: u64,
    mut o: Observed,
    elapsed: Duration,
) -> (String, serde_json::Value) {
    let push = Summary::of(&mut o.push);
    let visible = Summary::of(&mut o.visible);
    let achieved = o.ok_samples as f64 / elapsed.as_secs_f64();
    let human = format!(
        "latency rate={} batch={}: achieved {:.0} samples/s ({} of {} pushes ok, {} errors)\n  \
         push→2xx    {}\n  push→visible {}; {} polls, {} never visible",
        p.rate,
        p.batch,
        achieved,
        push.count,
        pushes,
        o.errors,
        push.human(Unit::Millis),
        visible.human(Unit::Millis),
        o.polls,
        o.lost
    );
    let json = json!({
        "bench": "latency",
        "rate_target": p.rate,
        "batch": p.batch,
        "connections": p.connections,
        "duration_s": round3(elapsed.as_secs_f64()),
        "pushes": pushes,
        "achieved_samples_per_s": achieved.round(),
        "errors": o.errors,
        "push_to_2xx": push.json(Unit::Millis),
        "push_to_visible": visible.json(Unit::Millis),
        "visibility_polls": o.polls,
        "never_visible": o.lost,
    });
    (human, json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_answers_count_only_when_a_series_is_present() {
        assert!(has_result(
            br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"1"]}]}}"#
        ));
        assert!(!has_result(
            br#"{"status":"success","data":{"resultType":"vector","result":[]}}"#
        ));
        assert!(!has_result(b"not json"));
    }
}
