//! `queries`: dashboard query latency over `/api/v1/query_range`, the same on any server.
//!
//! Each query is run once untimed (warm caches, as a refreshing dashboard has) and then
//! `reps` times (2 when a run takes over 10 s); median and p90 of the timed runs are reported, with the number of series
//! and points returned so results can be compared across servers. A query a server refuses
//! (4xx, e.g. an unsupported function) is reported as `unsupported` with its error text, one
//! it refuses on a resource limit (422) as `refused`.

use crate::http::{encode_query_value, Conn, Target};
use crate::stats::round3;
use anyhow::Result;
use serde_json::json;
use std::time::{Duration, Instant};

/// The ten dashboard queries over the fleet of [`crate::series`].
pub const DASHBOARD: [(&str, &str); 10] = [
    (
        "q1_rate_sum_by_job",
        "sum by (job) (rate(http_requests_total[5m]))",
    ),
    (
        "q2_histogram_quantile",
        "histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))",
    ),
    (
        "q3_topk_cpu",
        "topk(5, sum by (instance) (rate(node_cpu_seconds_total{mode!=\"idle\"}[5m])))",
    ),
    (
        "q4_avg_over_time",
        "avg_over_time(node_memory_MemAvailable_bytes[10m])",
    ),
    ("q5_count_by_region", "count by (region) (node_load1)"),
    (
        "q6_regex_net_rate",
        "sum by (instance) (rate(node_network_receive_bytes_total{device=~\"eth.*\"}[5m]))",
    ),
    (
        "q7_error_ratio",
        "sum(rate(http_requests_total{code=~\"5..\"}[5m])) / sum(rate(http_requests_total[5m]))",
    ),
    (
        "q8_max_over_time_filter",
        "max_over_time(node_load1{region=\"eu-west\",env=\"prod\"}[1h])",
    ),
    (
        "q9_increase_disk",
        "sum by (instance) (increase(node_disk_io_time_seconds_total[1h]))",
    ),
    (
        "q10_cpu_busy",
        "1 - avg by (instance) (rate(node_cpu_seconds_total{mode=\"idle\"}[5m]))",
    ),
];

/// Parameters of one run.
#[derive(Clone, Debug)]
pub struct QueriesParams {
    /// Server.
    pub target: Target,
    /// Range start and end, ms since the epoch.
    pub start_ms: i64,
    /// Range end.
    pub end_ms: i64,
    /// Step, seconds.
    pub step_s: u64,
    /// Timed repetitions per query.
    pub reps: usize,
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    let r = (q * sorted.len() as f64).ceil() as usize;
    sorted[r.clamp(1, sorted.len()) - 1]
}

/// Series and points in a `query_range` answer.
fn shape(body: &[u8]) -> (usize, usize) {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let result = v["data"]["result"].as_array().cloned().unwrap_or_default();
    let points = result
        .iter()
        .map(|s| s["values"].as_array().map_or(0, Vec::len))
        .sum();
    (result.len(), points)
}

/// Runs the dashboard; returns (human summary, JSON line).
pub async fn run(p: QueriesParams) -> Result<(String, serde_json::Value)> {
    let mut conn = Conn::connect(&p.target).await?;
    let mut human = format!(
        "query_range over {:.1} h, step {} s, {} timed runs each (after one untimed)\n",
        (p.end_ms - p.start_ms) as f64 / 3.6e6,
        p.step_s,
        p.reps
    );
    let mut results = serde_json::Map::new();
    for (name, q) in DASHBOARD {
        let path = format!(
            "/api/v1/query_range?query={}&start={:.3}&end={:.3}&step={}",
            encode_query_value(q),
            p.start_ms as f64 / 1000.0,
            p.end_ms as f64 / 1000.0,
            p.step_s
        );
        let mut times = Vec::new();
        let mut outcome = json!(null);
        let mut reps = p.reps;
        let mut i = 0;
        while i <= reps {
            let t = Instant::now();
            let r = match conn.get(&path).await {
                Ok(r) => r,
                Err(e) => {
                    let _ = conn.reconnect().await;
                    outcome = json!({"status": "error", "error": format!("{e:#}")});
                    break;
                }
            };
            let dt = t.elapsed();
            if r.status != 200 {
                let text: String = String::from_utf8_lossy(&r.body).chars().take(200).collect();
                // 422 is a query the server runs but refuses on a resource limit (Prometheus
                // API: "execution"); other 4xx are queries it cannot parse or evaluate.
                let status = if r.status == 422 {
                    "refused"
                } else if (400..500).contains(&r.status) {
                    "unsupported"
                } else {
                    "error"
                };
                outcome = json!({"status": status, "http": r.status, "error": text});
                break;
            }
            if i == 0 {
                let (series, points) = shape(&r.body);
                outcome = json!({"status": "ok", "series": series, "points": points});
            } else {
                times.push(dt.as_secs_f64() * 1000.0);
            }
            // Bounded: a slow query gets fewer runs, and one over 2 min no more.
            if dt > Duration::from_secs(120) {
                break;
            }
            if dt > Duration::from_secs(10) {
                reps = reps.min(2);
            }
            i += 1;
        }
        if !times.is_empty() {
            times.sort_by(f64::total_cmp);
            outcome["p50_ms"] = round3(percentile(&times, 0.5)).into();
            outcome["p90_ms"] = round3(percentile(&times, 0.9)).into();
            outcome["runs"] = times.len().into();
        }
        human.push_str(&format!("{name:26} {outcome}\n"));
        results.insert(name.to_string(), outcome);
    }
    let json = json!({
        "bench": "queries",
        "start_ms": p.start_ms,
        "end_ms": p.end_ms,
        "step_s": p.step_s,
        "reps": p.reps,
        "queries": results,
    });
    Ok((human, json))
}
