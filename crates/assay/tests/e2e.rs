//! End-to-end tests: the real `assay` binary, started as a process on 127.0.0.1,
//! driven over HTTP and through its CLI.

use assay_ledger::merkle::{leaf_hash, verify_consistency, verify_inclusion, Hash};
use assay_ledger::note::{open_checkpoint, Verifier};
use base64::Engine as _;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;
use common::*;

/// Runs the CLI with `--json`: the exit code and standard output as JSON (logs go to
/// standard error, which scripts do not parse).
fn cli_json(args: &[&str]) -> (i32, Value) {
    let out = Command::new(BIN).arg("--json").args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!("`assay --json {args:?}` printed no single JSON value on stdout ({e}): {stdout}")
    });
    (out.status.code().unwrap_or(-1), v)
}

fn cli(args: &[&str]) -> (i32, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn b64(h: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(h)
}

fn hashes(v: &Value) -> Vec<Hash> {
    v["hashes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            base64::engine::general_purpose::STANDARD
                .decode(h.as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap()
        })
        .collect()
}

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../assay-ingest/tests/fixtures")
        .join(rel)
}

#[test]
fn push_query_prove_and_reject() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProc::start(dir.path(), &[]);
    let t = now_ms();
    let body = json!({"samples": [
        {"name": "cpu_load", "labels": {"host": "a"}, "value": 0.5, "timestamp_ms": t - 1000},
        {"name": "cpu_load", "labels": {"host": "b"}, "value": 1.5, "timestamp_ms": t - 1000},
    ]});
    let (code, r) = node.post("/v1/push", "application/json", body.to_string().as_bytes());
    assert_eq!(code, 200, "{r}");
    assert_eq!(
        (
            r["index"].as_u64(),
            r["height"].as_u64(),
            r["samples"].as_u64()
        ),
        (Some(0), Some(0), Some(2))
    );

    // Queryable as soon as the push is answered.
    let sum = node.query("sum(cpu_load)");
    assert_eq!(sum[0]["value"][1], "2");
    let by = node.query("cpu_load > 1");
    assert_eq!(by.as_array().unwrap().len(), 1);
    assert_eq!(by[0]["metric"]["host"], "b");
    // Grafana posts forms: the same API over POST application/x-www-form-urlencoded.
    let form = format!(
        "query={}&start={}&end={}&step=1",
        enc("sum(cpu_load)"),
        (t - 3000) as f64 / 1000.0,
        t as f64 / 1000.0
    );
    let (code, r) = node.post(
        "/api/v1/query_range",
        "application/x-www-form-urlencoded",
        form.as_bytes(),
    );
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["data"]["resultType"], "matrix");
    let points = r["data"]["result"][0]["values"].as_array().unwrap();
    // Steps t-3s..t; the samples (at t-1s) are visible at the steps t-1s and t only.
    assert_eq!(points.len(), 2, "{r}");
    assert!(points.iter().all(|p| p[1] == "2"), "{r}");
    let labels = node.get_json("/api/v1/labels");
    assert_eq!(labels["data"], json!(["__name__", "host"]));
    let values = node.get_json("/api/v1/label/host/values");
    assert_eq!(values["data"], json!(["a", "b"]));
    let series = node.get_json(&format!(
        "/api/v1/series?match[]={}",
        enc("cpu_load{host=\"a\"}")
    ));
    assert_eq!(
        series["data"],
        json!([{"__name__": "cpu_load", "host": "a"}])
    );

    // The Prometheus text format and a real JUnit report.
    let prom = "# TYPE build_seconds gauge\nbuild_seconds{repo=\"assay\"} 42.5\n";
    let (code, r) = node.post(
        "/v1/import/prometheus",
        "text/plain; version=0.0.4",
        prom.as_bytes(),
    );
    assert_eq!((code, r["index"].as_u64()), (200, Some(1)), "{r}");
    // Its `# TYPE` line is metadata, committed as entry 2 after the samples.
    let meta = node.get_json("/api/v1/metadata?metric=build_seconds");
    assert_eq!(
        meta["data"]["build_seconds"],
        json!([{"type": "gauge", "help": "", "unit": ""}])
    );
    match assay_ledger::Entry::decode(&node.get("/v1/ledger/entries/2").1).unwrap() {
        assay_ledger::Entry::Metadata(m) => assert_eq!(m[0].metric, "build_seconds"),
        other => panic!("entry 2 is {other:?}"),
    }
    // Sent again, unchanged, it is not written again.
    let (code, r) = node.post("/v1/import/prometheus", "text/plain", prom.as_bytes());
    assert_eq!((code, r["index"].as_u64()), (200, Some(3)), "{r}");
    let report = std::fs::read(fixture("junit/pytest-xunit2.xml")).unwrap();
    let (code, r) = node.post(
        "/v1/ci/junit?pipeline=web&job=test&run=77",
        "application/xml",
        &report,
    );
    assert_eq!((code, r["index"].as_u64()), (200, Some(4)), "{r}");
    let tests = node.query("ci_tests{pipeline=\"web\",run=\"77\",suite=\"\"}");
    assert_eq!(tests.as_array().unwrap().len(), 1, "{tests}");
    assert!(
        tests[0]["value"][1]
            .as_str()
            .unwrap()
            .parse::<f64>()
            .unwrap()
            > 0.0
    );
    let entry = node.get("/v1/ledger/entries/4").1;
    match assay_ledger::Entry::decode(&entry).unwrap() {
        assay_ledger::Entry::CiReport { report_sha256, .. } => {
            use sha2::Digest;
            assert_eq!(
                report_sha256.as_slice(),
                sha2::Sha256::digest(&report).as_slice()
            );
        }
        other => panic!("entry 2 is {other:?}"),
    }

    // Rejected input: precise errors, nothing written.
    let size_before = node.get_json("/healthz")["entries"].as_u64().unwrap();
    let bad = json!({"samples": [{"name": "ok", "value": 1}, {"name": "x", "labels": {"bad-name": "v"}, "value": 1}]});
    let (code, r) = node.post("/v1/push", "application/json", bad.to_string().as_bytes());
    assert_eq!(code, 400);
    assert!(r["error"].as_str().unwrap().contains("samples[1]"), "{r}");
    let (code, r) = node.post("/v1/push", "text/csv", b"a,b");
    assert_eq!(code, 415, "{r}");
    let (code, r) = node.post(
        "/v1/import/prometheus",
        "text/plain",
        b"up 1\nup{a=\"1\" 2\n",
    );
    assert_eq!(code, 400);
    assert!(r["error"].as_str().unwrap().contains("line 2"), "{r}");
    let (code, r) = node.post(
        "/v1/ci/junit?pipeline=p&job=j&run=1",
        "application/xml",
        b"<testsuite><testcase name=\"a\"",
    );
    assert_eq!(code, 400, "{r}");
    assert!(r["error"].as_str().unwrap().contains("line"), "{r}");
    let (code, _) = node.post("/v1/ci/junit?pipeline=p", "application/xml", &report);
    assert_eq!(code, 400);
    // Over body_bytes_max (32 MiB): the node answers 413 from the declared length and
    // closes, so send only the head (a client streaming 33 MiB would hit a closed socket).
    let (code, body) = node.post_head_only("/v1/push", "application/json", (33 << 20) as u64);
    assert_eq!(code, 413, "{body}");
    assert!(
        body.contains("over body_bytes_max = 33554432 bytes"),
        "{body}"
    );
    // Conflicts with held samples, as Prometheus refuses them: a different value at a held
    // timestamp, and a sample older than the out-of-order window (1 h by default).
    for (ts, value, why) in [
        (t - 1000, 0.75, "duplicate sample for timestamp"),
        (t - 2 * 3_600_000, 0.5, "out of order sample"),
    ] {
        let late = json!({"samples": [
            {"name": "fresh", "value": 1, "timestamp_ms": t},
            {"name": "cpu_load", "labels": {"host": "a"}, "value": value, "timestamp_ms": ts},
        ]});
        let (code, r) = node.post("/v1/push", "application/json", late.to_string().as_bytes());
        assert_eq!(code, 400, "{r}");
        let error = r["error"].as_str().unwrap();
        assert!(
            error.contains(why) && error.contains("cpu_load{host=\"a\"}"),
            "{r}"
        );
    }
    assert_eq!(
        node.query("fresh"),
        json!([]),
        "half of a refused batch was applied"
    );
    let (code, body) = node.get(&format!("/api/v1/query?query={}", enc("sum(")));
    assert_eq!(code, 400);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["errorType"],
        "bad_data"
    );
    // A query past its `timeout` is a 503 `timeout`, as Prometheus answers.
    let (code, body) = node.get(&format!(
        "/api/v1/query?query={}&timeout=0s",
        enc("sum(cpu_load)")
    ));
    assert_eq!(code, 503, "{}", String::from_utf8_lossy(&body));
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["errorType"],
        "timeout"
    );
    assert_eq!(
        node.get_json("/healthz")["entries"].as_u64().unwrap(),
        size_before,
        "a rejected request wrote"
    );

    // Proofs against the signed checkpoint, checked here with the library...
    let key = String::from_utf8(node.get("/v1/ledger/key").1).unwrap();
    let verifier = Verifier::from_key_text(key.trim()).unwrap();
    let note = String::from_utf8(node.get("/v1/ledger/checkpoint").1).unwrap();
    let cp = open_checkpoint(&note, &verifier).unwrap();
    assert_eq!(cp.size, 5);
    for i in 0..5u64 {
        let entry = node.get(&format!("/v1/ledger/entries/{i}")).1;
        let p = node.get_json(&format!(
            "/v1/ledger/proof/inclusion?index={i}&tree_size={}",
            cp.size
        ));
        verify_inclusion(&leaf_hash(&entry), i, cp.size, &hashes(&p), &cp.root).unwrap();
    }
    let c = node.get_json("/v1/ledger/proof/consistency?from=1&to=5");
    let old_root: Hash = {
        let e0 = node.get("/v1/ledger/entries/0").1;
        leaf_hash(&e0)
    };
    verify_consistency(1, 5, &old_root, &cp.root, &hashes(&c)).unwrap();
    assert_eq!(node.get("/v1/ledger/entries/99").0, 404);
    assert_eq!(
        node.get("/v1/ledger/proof/inclusion?index=7&tree_size=5").0,
        400
    );

    // ...with the CLI...
    let (code, out) = cli(&[
        "proof",
        "--index",
        "1",
        "--server",
        &node.url,
        "--key",
        key.trim(),
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("is included in checkpoint"), "{out}");
    let (code, out) = cli_json(&["query", "sum(cpu_load)", "--server", &node.url]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out["data"]["result"][0]["value"][1], "2");
    let (code, out) = cli(&[
        "proof",
        "--index",
        "1",
        "--server",
        &node.url,
        "--key",
        "other.example/x+00000000+AXm1Vi6P5lT5QHixEuipi6eQH4U65pW+1+DjkQutBJZk",
    ]);
    assert_ne!(code, 0, "a foreign key must not verify: {out}");

    // ...and with Go's sumdb/note and sumdb/tlog, which share no code with Assay.
    match std::env::var("TLOGCHECK") {
        Ok(tool) => {
            let entry = node.get("/v1/ledger/entries/1").1;
            let p = node.get_json(&format!(
                "/v1/ledger/proof/inclusion?index=1&tree_size={}",
                cp.size
            ));
            let d = dir.path();
            std::fs::write(d.join("note"), &note).unwrap();
            std::fs::write(d.join("entry"), &entry).unwrap();
            std::fs::write(
                d.join("proof.json"),
                json!({"hashes": p["hashes"]}).to_string(),
            )
            .unwrap();
            let run = |index: &str| {
                Command::new(&tool)
                    .args([
                        key.trim(),
                        d.join("note").to_str().unwrap(),
                        d.join("entry").to_str().unwrap(),
                        index,
                        d.join("proof.json").to_str().unwrap(),
                    ])
                    .output()
                    .unwrap()
            };
            let ok = run("1");
            assert!(
                ok.status.success(),
                "Go verifier rejected Assay's proof: {}",
                String::from_utf8_lossy(&ok.stderr)
            );
            let wrong = run("0");
            assert!(
                !wrong.status.success(),
                "Go verifier accepted a proof for the wrong index"
            );
        }
        Err(_) => assert!(
            std::env::var("ASSAY_REQUIRE_INTEROP").is_err(),
            "ASSAY_REQUIRE_INTEROP is set but TLOGCHECK is not"
        ),
    }
    let _ = b64(&[]);
    node.stop();
}

fn push_loop(
    url: String,
    worker: usize,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<(u64, String)>>>,
) {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(10))
        .build();
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let t = now_ms();
        let samples: Vec<Value> =
            (0..200).map(|i| json!({"name": "load_test", "labels": {"worker": worker.to_string(), "i": i.to_string()}, "value": n, "timestamp_ms": t})).collect();
        let body = json!({ "samples": samples }).to_string();
        match agent
            .post(&format!("{url}/v1/push"))
            .set("Content-Type", "application/json")
            .send_string(&body)
        {
            Ok(resp) => {
                let r: Value = serde_json::from_reader(resp.into_reader()).unwrap();
                acked.lock().unwrap().push((
                    r["index"].as_u64().unwrap(),
                    r["leaf_hash"].as_str().unwrap().to_string(),
                ));
            }
            Err(_) => return, // the node died under us: this batch was never acknowledged
        }
        n += 1;
    }
}

/// Four clients push 200-sample batches until `end` has been done to the node, `after`
/// the load started; returns the batches acknowledged with a 2xx, as (index, leaf hash).
fn acked_under_load(
    node: NodeProc,
    after: Duration,
    end: impl FnOnce(NodeProc),
) -> Vec<(u64, String)> {
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let (url, stop, acked) = (node.url.clone(), stop.clone(), acked.clone());
            std::thread::spawn(move || push_loop(url, w, stop, acked))
        })
        .collect();
    std::thread::sleep(after);
    end(node);
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 10,
        "only {} batches were acknowledged under load",
        acked.len()
    );
    acked
}

/// Every acknowledged entry is in the node's ledger, byte for byte (same leaf hash).
fn assert_all_present(node: &NodeProc, acked: &[(u64, String)]) {
    for (index, leaf) in acked {
        let (code, entry) = node.get(&format!("/v1/ledger/entries/{index}"));
        assert_eq!(code, 200, "acknowledged entry {index} is missing");
        assert_eq!(
            &hex::encode(leaf_hash(&entry)),
            leaf,
            "acknowledged entry {index} changed"
        );
    }
}

#[test]
fn kill9_loses_nothing_acknowledged_and_verify_catches_a_flipped_byte() {
    let dir = tempfile::tempdir().unwrap();
    // Raw segments, so the test can find an entry's bytes in the file and flip one (the
    // packed case: `a_node_packs_full_segments_and_still_serves_and_verifies_every_entry`).
    let config = dir.path().join("assay.toml");
    std::fs::write(&config, "[ledger]\npack_segments = false\n").unwrap();
    let args = ["--config", config.to_str().unwrap()];
    let node = NodeProc::start(dir.path(), &args);
    let acked = acked_under_load(node, Duration::from_millis(1500), NodeProc::kill9);

    let node = NodeProc::start(dir.path(), &args);
    assert_all_present(&node, &acked);
    let total = node.query("count(load_test)");
    assert!(
        total[0]["value"][1]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 200,
        "{total}"
    );
    node.stop();

    let data = dir.path().join("data");
    let (code, out) = cli(&["verify", "--data-dir", data.to_str().unwrap()]);
    assert_eq!(code, 0, "verify after kill -9 and restart: {out}");
    assert!(out.contains("ledger intact"), "{out}");

    // Flip one byte inside an early entry: verify must fail and name that entry.
    let seg = data.join("ledger/00000000000000000000.seg");
    let mut bytes = std::fs::read(&seg).unwrap();
    let target = acked.iter().map(|a| a.0).min().unwrap().max(1);
    let entry = {
        let node = NodeProc::start(dir.path(), &args);
        let e = node.get(&format!("/v1/ledger/entries/{target}")).1;
        node.stop();
        e
    };
    let at = bytes
        .windows(entry.len())
        .position(|w| w == entry.as_slice())
        .expect("entry bytes are in the segment");
    bytes[at + entry.len() / 2] ^= 0x20;
    std::fs::write(&seg, &bytes).unwrap();
    let (code, out) = cli(&["verify", "--data-dir", data.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("entry {target}")),
        "verify must name entry {target}: {out}"
    );
    let (code, out) = cli_json(&["verify", "--data-dir", data.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert_eq!(out["entry"], json!(target), "{out}");
    // The node refuses to start on a damaged ledger.
    let status = Command::new(BIN)
        .args([
            "serve",
            "--data-dir",
            data.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(3));
}

#[test]
fn periodic_snapshot_lets_a_restart_after_kill9_replay_only_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("assay.toml");
    std::fs::write(&config, "[tsdb]\nsnapshot_every_ms = 100\n").unwrap();
    let args = ["--config", config.to_str().unwrap()];
    let node = NodeProc::start(dir.path(), &args);
    let t = now_ms();
    let push = |node: &NodeProc, i: i64| {
        let body =
            json!({"samples": [{"name": "snap", "value": i, "timestamp_ms": t - 10_000 + i}]});
        let (code, r) = node.post("/v1/push", "application/json", body.to_string().as_bytes());
        assert_eq!(code, 200, "{r}");
    };
    // Three hours ago, every 15 s: sealed chunks older than the out-of-order window, which
    // the snapshot thread moves to a chunk file before it snapshots.
    let old: Vec<Value> = (0..400)
        .map(|i| json!({"name": "old", "value": i, "timestamp_ms": t - 3 * 3_600_000 + i * 15_000}))
        .collect();
    let body = json!({ "samples": old }).to_string();
    let (code, r) = node.post("/v1/push", "application/json", body.as_bytes());
    assert_eq!(code, 200, "{r}");
    for i in 0..3 {
        push(&node, i);
    }
    // The snapshot file names the height it was taken at (bytes 8..16 after the magic).
    let snapshot = dir.path().join("data/views/views.snapshot");
    let deadline = Instant::now() + Duration::from_secs(20);
    let height = loop {
        let h = std::fs::read(&snapshot)
            .ok()
            .map(|b| u64::from_le_bytes(b[8..16].try_into().unwrap()));
        if h == Some(4) {
            break 4;
        }
        assert!(
            Instant::now() < deadline,
            "no snapshot at height 4 within 20 s: {h:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let chunk_files: Vec<String> = std::fs::read_dir(dir.path().join("data/views/chunks"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert!(
        chunk_files.iter().any(|f| f.ends_with(".chunks")),
        "{chunk_files:?}"
    );
    // Files hold settled chunks only; nothing is left to settle.
    let metrics = String::from_utf8(node.get("/metrics").1).unwrap();
    assert!(
        metrics.contains("\nassay_tsdb_unsettled_chunks 0\n"),
        "{metrics}"
    );
    // A write after the snapshot, then a crash: the restart loads a snapshot and replays
    // only the blocks after it, and the data of both is there.
    push(&node, 3);
    node.kill9();
    let node = NodeProc::start(dir.path(), &args);
    assert_eq!(node.query("count_over_time(snap[1m])")[0]["value"][1], "4");
    // The old samples come back from the chunk file the snapshot refers to.
    let at = t - 3 * 3_600_000 + 399 * 15_000;
    let old_count = node.query_at("count_over_time(old[2h])", Some(at));
    assert_eq!(old_count[0]["value"][1], "400", "{old_count}");
    node.stop();
    let log = std::fs::read_to_string(dir.path().join("node.log")).unwrap();
    let ready = log
        .lines()
        .filter(|l| l.contains("views ready"))
        .nth(1)
        .expect("second start logged views ready");
    let field = |name: &str| -> u64 {
        let at = ready.find(&format!("{name}=")).expect(name) + name.len() + 1;
        ready[at..].split(' ').next().unwrap().parse().unwrap()
    };
    // The snapshot thread may have caught the fourth block too before the kill.
    let (from, replayed) = (field("snapshot_height"), field("replayed_blocks"));
    assert!(from >= height && from + replayed == 5, "{ready}");
}

#[test]
fn recording_rules_record_into_the_ledger_and_later_rules_see_earlier_results() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rules.yml"),
        "groups:\n\
         - name: jobs\n\
        \x20 interval: 1s\n\
        \x20 rules:\n\
        \x20 - record: job:up_test:sum\n\
        \x20   expr: sum by (job) (up_test)\n\
        \x20 - record: job:up_test:double\n\
        \x20   expr: job:up_test:sum * 2\n\
        \x20   labels: {team: core}\n",
    )
    .unwrap();
    let config = dir.path().join("assay.toml");
    let rules = dir.path().join("rules.yml");
    std::fs::write(
        &config,
        format!("rule_files = [{:?}]\n", rules.to_str().unwrap()),
    )
    .unwrap();
    let node = NodeProc::start(dir.path(), &["--config", config.to_str().unwrap()]);
    let t = now_ms();
    let body = json!({"samples": [
        {"name": "up_test", "labels": {"job": "a", "i": "1"}, "value": 1, "timestamp_ms": t},
        {"name": "up_test", "labels": {"job": "a", "i": "2"}, "value": 2, "timestamp_ms": t},
    ]});
    let (code, r) = node.post("/v1/push", "application/json", body.to_string().as_bytes());
    assert_eq!(code, 200, "{r}");
    // Rules run once a second even with no further writes; wait for an evaluation after t.
    let deadline = Instant::now() + Duration::from_secs(20);
    let double = loop {
        let d = node.query("job:up_test:double");
        if d.as_array().is_some_and(|a| !a.is_empty()) {
            break d;
        }
        assert!(Instant::now() < deadline, "no recorded series in 20 s");
        std::thread::sleep(Duration::from_millis(100));
    };
    // The second rule saw the first one's result of the same evaluation: 2 × (1 + 2).
    assert_eq!(
        double[0]["metric"],
        json!({"__name__": "job:up_test:double", "job": "a", "team": "core"})
    );
    assert_eq!(double[0]["value"][1], "6", "{double}");
    // Results are ledger entries like any write: find them by decoding the entries.
    let size = node.get_json("/healthz")["entries"].as_u64().unwrap();
    let recorded: Vec<String> = (1..size)
        .filter_map(|i| {
            assay_ledger::Entry::decode(&node.get(&format!("/v1/ledger/entries/{i}")).1).ok()
        })
        .flat_map(|e| {
            e.batch()
                .series()
                .iter()
                .map(|l| l.metric_name().unwrap().to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        recorded.iter().any(|n| n == "job:up_test:sum"),
        "{recorded:?}"
    );
    assert!(
        recorded.iter().any(|n| n == "job:up_test:double"),
        "{recorded:?}"
    );
    node.stop();
    let (code, out) = cli(&["check-rules", rules.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ok, 1 groups, 2 rules"), "{out}");

    // A broken rule file stops the node at start, naming the problem.
    std::fs::write(
        &rules,
        "groups:\n- name: x\n  rules:\n  - record: 1bad\n    expr: up\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args([
            "serve",
            "--config",
            config.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("rules.yml") && err.contains("1bad"), "{err}");
    let (code, out) = cli_json(&["check-rules", rules.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(out["files"][0]["ok"], false, "{out}");
    assert!(
        out["files"][0]["errors"][0]
            .as_str()
            .unwrap()
            .contains("1bad"),
        "{out}"
    );
}

#[test]
fn sigterm_right_after_the_url_is_printed_is_a_clean_stop() {
    // The signal handlers are installed before the URL is printed: a supervisor that
    // stops the node as soon as it is up gets exit 0, not death by SIGTERM.
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..5 {
        NodeProc::start(dir.path(), &[]).stop();
    }
}

#[test]
fn restart_and_rebuild_give_the_same_state() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProc::start(dir.path(), &[]);
    let t = now_ms();
    for i in 0..20 {
        let body = json!({"samples": [{"name": "reqs", "labels": {"i": (i % 3).to_string()}, "value": i, "timestamp_ms": t - 60_000 + i * 1000}]});
        assert_eq!(
            node.post("/v1/push", "application/json", body.to_string().as_bytes())
                .0,
            200
        );
    }
    // A series the ledger holds already is written by reference to the entry that lists
    // it inline (kind 0x04), a few bytes instead of its labels; resolved against the entry
    // it names (fetched like any entry, and provable like any), it is the pushed series.
    let entry = |i: u64| node.get(&format!("/v1/ledger/entries/{i}")).1;
    let (first, again) = (entry(0), entry(3));
    assert_eq!((first[1], again[1]), (0x01, 0x04));
    assert!(
        again.len() + 10 < first.len(),
        "{} vs {}",
        again.len(),
        first.len()
    );
    assert!(assay_ledger::Entry::decode(&again).is_err());
    let decoded = assay_ledger::Entry::decode_resolved(&again, &mut |r| {
        assert_eq!((r.entry, r.position), (0, 0));
        let named = assay_ledger::Entry::inline_series(&entry(r.entry)).unwrap();
        named
            .into_iter()
            .find(|(p, _)| *p == r.position)
            .map(|(_, l)| l)
    })
    .unwrap();
    let series = decoded.batch().series();
    assert_eq!(
        (series[0].metric_name(), series[0].get("i")),
        (Some("reqs"), Some("0"))
    );
    assert_eq!(decoded.batch().samples()[0].value, 3.0);
    // `assay proof` proves the entries a proven entry refers to, in the same checkpoint.
    let (code, out) = cli_json(&["proof", "--index", "3", "--server", &node.url]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        (&out["ok"], &out["samples"], &out["references"]),
        (&json!(true), &json!(1), &json!([0]))
    );
    // The data directory belongs to the running node: verify and a second node refuse it.
    let data = dir.path().join("data");
    let (code, out) = cli(&["verify", "--data-dir", data.to_str().unwrap()]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("in use by another assay process"), "{out}");
    let before = node.query_at("sum(reqs)", Some(t));
    assert_eq!(before[0]["value"][1], "54", "{before}");
    node.stop();
    let node = NodeProc::start(dir.path(), &[]);
    assert_eq!(node.query_at("sum(reqs)", Some(t)), before);
    node.stop();
    let (code, a) = cli_json(&["rebuild", "--data-dir", data.to_str().unwrap()]);
    assert_eq!(code, 0, "{a}");
    let (code, b) = cli_json(&["rebuild", "--data-dir", data.to_str().unwrap()]);
    assert_eq!(code, 0, "{b}");
    assert_eq!(a["digest"], b["digest"]);
    assert_eq!(a["entries"], json!(20));
    let node = NodeProc::start(dir.path(), &[]);
    assert_eq!(node.query_at("sum(reqs)", Some(t)), before);
    node.stop();
}

#[test]
fn sigterm_under_load_finishes_in_flight_batches_and_loses_none() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProc::start(dir.path(), &[]);
    // SIGTERM while the clients keep pushing: the node must exit 0 (stop() asserts it).
    let acked = acked_under_load(node, Duration::from_millis(1000), NodeProc::stop);

    // A clean stop leaves no torn tail: verify passes before any restart.
    let data = dir.path().join("data");
    let (code, out) = cli(&["verify", "--data-dir", data.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");

    let node = NodeProc::start(dir.path(), &[]);
    assert_all_present(&node, &acked);
    node.stop();
}

#[test]
fn a_node_packs_full_segments_and_still_serves_and_verifies_every_entry() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("assay.toml");
    // Tiny segments so a few pushes fill several; packing starts within a second.
    std::fs::write(&config, "[ledger]\nsegment_bytes_max = 4096\n").unwrap();
    let args = ["--config", config.to_str().unwrap()];
    let node = NodeProc::start(dir.path(), &args);
    let t = now_ms();
    let mut entries = Vec::new();
    for i in 0..40 {
        let samples: Vec<Value> = (0..20)
            .map(|h| json!({"name": "packed_load", "labels": {"host": format!("h{h}")}, "value": i * 100 + h, "timestamp_ms": t - 60_000 + i * 1000}))
            .collect();
        let body = json!({ "samples": samples }).to_string();
        let (code, r) = node.post("/v1/push", "application/json", body.as_bytes());
        assert_eq!(code, 200, "{r}");
        let index = r["index"].as_u64().unwrap();
        entries.push((index, node.get(&format!("/v1/ledger/entries/{index}")).1));
    }
    let ledger = dir.path().join("data/ledger");
    let packs = || {
        std::fs::read_dir(&ledger)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".pack")
            })
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while packs() < 3 {
        assert!(Instant::now() < deadline, "fewer than 3 packs after 20 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The same bytes come back from the packs, and proofs still check out.
    for (index, bytes) in &entries {
        let (code, got) = node.get(&format!("/v1/ledger/entries/{index}"));
        assert_eq!((code, &got), (200, bytes), "entry {index}");
    }
    assert_eq!(node.query("count(packed_load)")[0]["value"][1], "20");
    node.kill9();
    let node = NodeProc::start(dir.path(), &args);
    let (code, got) = node.get(&format!("/v1/ledger/entries/{}", entries[1].0));
    assert_eq!((code, &got), (200, &entries[1].1));
    assert_eq!(
        node.query("sum(count_over_time(packed_load[2m]))")[0]["value"][1],
        "800"
    );
    node.stop();
    let data = dir.path().join("data");
    let (code, out) = cli(&["verify", "--data-dir", data.to_str().unwrap()]);
    assert_eq!(code, 0, "verify over packed segments: {out}");
    assert!(out.contains("ledger intact"), "{out}");
    // A flipped byte in a pack is caught and the pack named.
    let pack = ledger.join("00000000000000000001.pack");
    let mut bytes = std::fs::read(&pack).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    std::fs::write(&pack, &bytes).unwrap();
    let (code, out) = cli(&["verify", "--data-dir", data.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("00000000000000000001.pack"), "{out}");
}

#[test]
fn late_samples_correct_recorded_results_without_double_counting() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yml");
    std::fs::write(
        &rules,
        "groups:\n- name: late\n  interval: 1s\n  rules:\n  - record: late:sum\n    expr: sum(late_test)\n",
    )
    .unwrap();
    let config = dir.path().join("assay.toml");
    std::fs::write(
        &config,
        format!("rule_files = [{:?}]\n", rules.to_str().unwrap()),
    )
    .unwrap();
    let node = NodeProc::start(dir.path(), &["--config", config.to_str().unwrap()]);
    let t = now_ms();
    let push = |host: &str, value: i64, at: i64| {
        let body = json!({"samples": [{"name": "late_test", "labels": {"host": host}, "value": value, "timestamp_ms": at}]});
        let (code, r) = node.post("/v1/push", "application/json", body.to_string().as_bytes());
        assert_eq!(code, 200, "{r}");
    };
    push("a", 1, t - 20_000);
    // A few evaluations see only host a.
    let window = "[30s]";
    let count = |q: &str| -> f64 {
        let r = node.query(q);
        r.get(0)
            .map_or(0.0, |s| s["value"][1].as_str().unwrap().parse().unwrap())
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while count(&format!("count_over_time(late:sum{window})")) < 3.0 {
        assert!(
            Instant::now() < deadline,
            "fewer than 3 evaluations in 20 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(count(&format!("max_over_time(late:sum{window})")), 1.0);
    // Host b was offline: its sample is older than every evaluation so far (and than a's).
    let evaluations = count(&format!("count_over_time(late:sum{window})"));
    push("b", 2, t - 21_000);
    // Every evaluation is corrected to 1 + 2 (the push is answered before rules run, so
    // wait for it); none counts b twice.
    let deadline = Instant::now() + Duration::from_secs(20);
    while count(&format!("min_over_time(late:sum{window})")) != 3.0 {
        assert!(
            Instant::now() < deadline,
            "not corrected in 20 s: {}",
            node.query(&format!("late:sum{window}"))
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(count(&format!("max_over_time(late:sum{window})")), 3.0);
    assert!(count(&format!("count_over_time(late:sum{window})")) >= evaluations);
    let metrics = String::from_utf8(node.get("/metrics").1).unwrap();
    let corrected: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("assay_rule_samples_corrected_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(corrected >= 3.0, "{corrected}");
    node.stop();
}
