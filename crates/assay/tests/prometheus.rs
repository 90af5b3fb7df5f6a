//! Assay beside a real Prometheus (Debian's `prometheus` package): Prometheus scrapes itself
//! and Assay, remote-writes everything to Assay, and `promtool query` gets the same answers
//! from both. Also the remote-write and Influx endpoints' status codes, which senders act on.
//!
//! The Prometheus test needs `/usr/bin/prometheus` and `/usr/bin/promtool`
//! (`apt-get install prometheus`; `scripts/test.sh` installs them). Without them it is
//! skipped, unless `ASSAY_REQUIRE_PROMETHEUS=1` (CI), where it fails.

use assay_ingest::remote_write::proto::{Label, Sample, TimeSeries, WriteRequest};
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::*;

/// A Prometheus server on 127.0.0.1, killed on drop.
struct PrometheusProc {
    child: Child,
    url: String,
}

impl Drop for PrometheusProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Both binaries, or `None` (skip) when they are missing and not required.
fn prometheus_binaries() -> Option<(&'static str, &'static str)> {
    let (prom, tool) = ("/usr/bin/prometheus", "/usr/bin/promtool");
    if Path::new(prom).exists() && Path::new(tool).exists() {
        return Some((prom, tool));
    }
    assert!(
        std::env::var("ASSAY_REQUIRE_PROMETHEUS").is_err(),
        "ASSAY_REQUIRE_PROMETHEUS is set but {prom} / {tool} are missing: apt-get install prometheus"
    );
    eprintln!("skipped: {prom} not installed (apt-get install prometheus)");
    None
}

fn start_prometheus(bin: &str, dir: &Path, assay_addr: &str) -> PrometheusProc {
    let port = free_port();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
         scrape_configs:\n\
         \x20 - job_name: prometheus\n    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n\
         \x20 - job_name: assay\n    static_configs: [{{targets: ['{assay_addr}']}}]\n\
         remote_write:\n\
         \x20 - url: http://{assay_addr}/api/v1/write\n\
         \x20   queue_config: {{batch_send_deadline: 200ms, min_backoff: 50ms, max_backoff: 1s}}\n\
         \x20   metadata_config: {{send_interval: 1s}}\n"
    );
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let child = Command::new(bin)
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("prom-data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("starting prometheus");
    let p = PrometheusProc {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while ureq::get(&format!("{}/-/ready", p.url)).call().is_err() {
        assert!(Instant::now() < deadline, "prometheus not ready in 60 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    p
}

/// `promtool query …` output, lines sorted (series order is not part of the answer).
fn promtool(tool: &str, args: &[&str]) -> String {
    let out = Command::new(tool).arg("query").args(args).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "promtool {args:?}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort_unstable();
    lines.join("\n")
}

#[test]
fn prometheus_remote_writes_to_assay_and_promtool_gets_the_same_answers() {
    let Some((prom_bin, tool)) = prometheus_binaries() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProc::start(dir.path(), &[]);
    let assay_addr = node.url.trim_start_matches("http://").to_string();
    let prom = start_prometheus(prom_bin, dir.path(), &assay_addr);

    // Wait for six scrapes of each job to arrive (Prometheus starts scraping after a
    // random offset), then pick an evaluation time that both hold in full: a little in the
    // past, off the second grid (scrape timestamps are ms-precise).
    let deadline = Instant::now() + Duration::from_secs(60);
    while node
        .query("count_over_time(up[1m]) >= 6")
        .as_array()
        .map_or(0, Vec::len)
        < 2
    {
        assert!(
            Instant::now() < deadline,
            "six scrapes of both jobs did not reach Assay in 60 s; prometheus log:\n{}",
            std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let t_ms = (now_ms() - 1_500) / 1000 * 1000 + 321;
    loop {
        // Remote write lags the scrapes: wait until Assay holds samples after t for both
        // jobs (the series API lists series with samples in the range).
        let newest = node.get_json(&format!(
            "/api/v1/series?match[]=up&start={:.3}",
            (t_ms + 1_000) as f64 / 1000.0
        ));
        if newest["data"].as_array().is_some_and(|a| a.len() == 2) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Assay did not receive Prometheus' samples in 60 s: {newest}; prometheus log:\n{}",
            std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let time = format!("--time={:.3}", t_ms as f64 / 1000.0);
    let (start, end) = (
        format!("--start={:.3}", (t_ms - 4_000) as f64 / 1000.0),
        format!("--end={:.3}", t_ms as f64 / 1000.0),
    );
    let queries = [
        "up",
        "count by (job) (up)",
        "scrape_samples_scraped",
        "sum by (job) (scrape_series_added)",
        "prometheus_build_info",
        "assay_ledger_entries > 0",
        // A window that starts after the counters' first scrape: Prometheus 3 (Assay) and
        // 2.42 apply rate's zero-point and extrapolation-threshold rules in a different
        // order, which shows only when the range reaches back to a counter's start (a
        // documented difference; see the tsdb crate docs).
        "rate(prometheus_tsdb_head_samples_appended_total[3s])",
        "increase(prometheus_http_requests_total[3s])",
        "max_over_time(scrape_duration_seconds[5s]) > 0",
    ];
    let mut compared = 0;
    for q in queries {
        let from_prom = promtool(tool, &["instant", &time, &prom.url, q]);
        let from_assay = promtool(tool, &["instant", &time, &node.url, q]);
        assert!(!from_prom.is_empty(), "{q}: Prometheus returned nothing");
        assert_eq!(from_assay, from_prom, "instant query {q} at {t_ms}");
        compared += 1;
    }
    for q in ["up", "count by (job) (up)"] {
        let args = |url: &str| promtool(tool, &["range", &start, &end, "--step=1s", url, q]);
        let from_prom = args(&prom.url);
        assert!(from_prom.contains("@["), "{q}: {from_prom}");
        assert_eq!(args(&node.url), from_prom, "range query {q}");
        compared += 1;
    }
    assert_eq!(compared, queries.len() + 2);

    // Metadata travels too (its own remote-write requests, every second here), and the
    // metadata API answers as Prometheus' does.
    let path = "/api/v1/metadata?metric=prometheus_http_requests_total";
    let (_, want) = response(ureq::get(&format!("{}{path}", prom.url)).call());
    let want: Value = serde_json::from_slice(&want).unwrap();
    assert_eq!(
        want["data"]["prometheus_http_requests_total"][0]["type"],
        "counter"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = node.get_json(path);
        if got == want {
            break;
        }
        assert!(Instant::now() < deadline, "metadata: {got} vs {want}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let info = node.get_json("/api/v1/status/buildinfo");
    assert_eq!(info["data"]["version"], "3.0.0", "{info}");
    // Prometheus' own metrics say nothing failed: every sample it sent was accepted.
    let (_, body) = response(
        ureq::get(&format!(
            "{}/api/v1/query?query=sum(prometheus_remote_storage_samples_failed_total)",
            prom.url
        ))
        .call(),
    );
    let failed: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(failed["data"]["result"][0]["value"][1], "0", "{failed}");
    drop(prom);
    node.stop();
}

fn series(name: &str, host: &str, samples: &[(i64, f64)]) -> TimeSeries {
    TimeSeries {
        labels: vec![
            Label {
                name: "__name__".into(),
                value: name.into(),
            },
            Label {
                name: "host".into(),
                value: host.into(),
            },
        ],
        samples: samples
            .iter()
            .map(|&(timestamp, value)| Sample { value, timestamp })
            .collect(),
        ..Default::default()
    }
}

fn remote_write(node: &NodeProc, body: &[u8], content_type: &str) -> (u16, String) {
    let r = ureq::post(&format!("{}/api/v1/write", node.url))
        .set("Content-Type", content_type)
        .set("Content-Encoding", "snappy")
        .set("X-Prometheus-Remote-Write-Version", "0.1.0")
        .send_bytes(body);
    let (code, bytes) = response(r);
    (code, String::from_utf8_lossy(&bytes).to_string())
}

#[test]
fn remote_write_and_influx_answer_with_the_codes_senders_act_on() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProc::start(dir.path(), &[]);
    let t = now_ms() - 60_000;
    let proto = "application/x-protobuf";
    let write = |ts: Vec<TimeSeries>| {
        assay_ingest::encode_remote_write(&WriteRequest {
            timeseries: ts,
            ..Default::default()
        })
    };

    let ok = write(vec![
        series("rw_load", "a", &[(t, 1.0), (t + 15_000, 2.0)]),
        series("rw_load", "b", &[(t, 5.0)]),
    ]);
    assert_eq!(remote_write(&node, &ok, proto), (204, String::new()));
    let got = node.query_at("sum(rw_load)", Some(t + 15_000));
    assert_eq!(got[0]["value"][1], "7", "{got}");
    // A retry of the same request (its answer was lost) succeeds and changes nothing.
    assert_eq!(remote_write(&node, &ok, proto).0, 204);
    assert_eq!(
        node.query_at("sum(rw_load)", Some(t + 15_000))[0]["value"][1],
        "7"
    );
    // The retry found both series in the parser's series cache.
    let metrics = String::from_utf8(node.get("/metrics").1).unwrap();
    for line in [
        "assay_remote_write_series_cache_lookups_total 4",
        "assay_remote_write_series_cache_hits_total 2",
        "assay_remote_write_series_cache_entries 2",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }

    let entries = node.get_json("/healthz")["entries"].as_u64().unwrap();
    // What the sender must drop (4xx), with a reason it can log; nothing is written.
    let conflict = write(vec![
        series("rw_new", "a", &[(t, 1.0)]),
        series("rw_load", "a", &[(t + 15_000, 9.0)]),
    ]);
    let (code, body) = remote_write(&node, &conflict, proto);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("duplicate sample for timestamp"), "{body}");
    let too_old = write(vec![series("rw_load", "b", &[(t - 2 * 3_600_000, 1.0)])]);
    let (code, body) = remote_write(&node, &too_old, proto);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("out of order sample"), "{body}");
    let (code, body) = remote_write(&node, b"\xff\x00garbage", proto);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("snappy"), "{body}");
    // Remote write 2.0 gets 415, so a 2.0 sender falls back to 1.0.
    let v2 = "application/x-protobuf;proto=io.prometheus.write.v2.Request";
    let (code, body) = remote_write(&node, &ok, v2);
    assert_eq!(code, 415, "{body}");
    assert_eq!(
        node.get_json("/healthz")["entries"].as_u64().unwrap(),
        entries
    );
    assert_eq!(node.query("rw_new"), json!([]));

    // Influx line protocol, as Telegraf sends it (1.x and 2.x paths).
    let secs = t / 1000 + 1;
    let lines = format!("cpu,host=a usage_idle=97.5,usage_user=1i {secs}\n");
    let r = ureq::post(&format!("{}/write?db=telegraf&precision=s", node.url))
        .send_bytes(lines.as_bytes());
    assert_eq!(response(r).0, 204);
    let got = node.query_at("cpu_usage_idle", Some(secs * 1000));
    assert_eq!(
        got[0]["metric"],
        json!({"__name__": "cpu_usage_idle", "host": "a"})
    );
    assert_eq!(got[0]["value"][1], "97.5");
    let r = ureq::post(&format!(
        "{}/api/v2/write?org=o&bucket=b&precision=ms",
        node.url
    ))
    .send_bytes(b"mem used=5 not-a-timestamp\n");
    let (code, body) = response(r);
    assert_eq!(code, 400);
    assert!(
        String::from_utf8_lossy(&body).contains("line 1"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    let r = ureq::post(&format!("{}/write?precision=fortnights", node.url)).send_bytes(b"m v=1\n");
    assert_eq!(response(r).0, 400);
    node.stop();
}
