//! The parsers on what real tools produced: JUnit reports from five runners (see
//! `fixtures/junit/README.md`) and exposition text from two exporters.

use assay_ingest::{parse_junit, parse_prometheus_text, CiRun, Entry, Limits};
use expect_test::{expect, Expect};
use sha2::{Digest, Sha256};

/// An instant after every fixture was made, so no timestamp in them is in the future.
const NOW_MS: i64 = 1_800_000_000_000;

fn fixture(path: &str) -> Vec<u8> {
    let full = format!("{}/tests/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&full).unwrap_or_else(|e| panic!("read {full}: {e}"))
}

fn run() -> CiRun {
    CiRun {
        pipeline: "ci".into(),
        job: "test".into(),
        run: "42".into(),
    }
}

/// Renders a CI report's KPIs as one line per suite (the report's totals first).
fn check_junit(path: &str, expect: Expect) {
    let body = fixture(&format!("junit/{path}"));
    let entry = parse_junit(&body, &run(), NOW_MS, &Limits::default())
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    let Entry::CiReport {
        report_sha256,
        batch,
    } = entry
    else {
        panic!("not a CI report")
    };
    assert_eq!(report_sha256, <[u8; 32]>::from(Sha256::digest(&body)));
    let mut rows: Vec<(String, Vec<String>)> = Vec::new();
    for (labels, ts, value) in batch.iter() {
        assert_eq!(ts, NOW_MS);
        assert_eq!(
            (labels.get("pipeline"), labels.get("job"), labels.get("run")),
            (Some("ci"), Some("test"), Some("42"))
        );
        let suite = labels
            .get("suite")
            .map_or("(report)".to_string(), |s| format!("suite={s:?}"));
        let metric = labels.metric_name().unwrap_or_default();
        let short = match metric {
            "ci_tests" => "tests",
            "ci_test_duration_seconds" => "seconds",
            m => m.trim_start_matches("ci_tests_"),
        };
        let cell = format!("{short}={value}");
        match rows.iter_mut().find(|(s, _)| *s == suite) {
            Some((_, cells)) => cells.push(cell),
            None => rows.push((suite, vec![cell])),
        }
    }
    let text: String = rows
        .iter()
        .map(|(s, cells)| format!("{s}: {}\n", cells.join(" ")))
        .collect();
    expect.assert_eq(&text);
}

#[test]
fn pytest_xunit1() {
    check_junit(
        "pytest-xunit1.xml",
        expect![[r#"
        (report): tests=10 passed=4 failed=2 errored=1 skipped=3 seconds=0.004
        suite="sample": tests=10 passed=4 failed=2 errored=1 skipped=3 seconds=0.004
    "#]],
    );
}

#[test]
fn pytest_xunit2() {
    check_junit(
        "pytest-xunit2.xml",
        expect![[r#"
        (report): tests=10 passed=4 failed=2 errored=1 skipped=3 seconds=0.005
        suite="sample": tests=10 passed=4 failed=2 errored=1 skipped=3 seconds=0.005
    "#]],
    );
}

#[test]
fn nextest() {
    check_junit(
        "nextest.xml",
        expect![[r#"
        (report): tests=5 passed=2 failed=3 errored=0 skipped=0 seconds=2.058
        suite="nextest_sample": tests=5 passed=2 failed=3 errored=0 skipped=0 seconds=2.058
    "#]],
    );
}

#[test]
fn jest_junit() {
    check_junit(
        "jest.xml",
        expect![[r#"
        (report): tests=8 passed=3 failed=3 errored=1 skipped=1 seconds=0.014
        suite="math": tests=5 passed=2 failed=2 errored=0 skipped=1 seconds=0.011
        suite="broken.test.js": tests=2 passed=0 failed=1 errored=1 skipped=0 seconds=0
        suite="undefined": tests=1 passed=1 failed=0 errored=0 skipped=0 seconds=0.003
    "#]],
    );
}

#[test]
fn gotestsum() {
    check_junit(
        "gotestsum.xml",
        expect![[r#"
        (report): tests=7 passed=2 failed=4 errored=0 skipped=1 seconds=0
        suite="example.com/sample/calc": tests=7 passed=2 failed=4 errored=0 skipped=1 seconds=0
    "#]],
    );
}

#[test]
fn gotestsum_build_failure() {
    check_junit(
        "gotestsum-build-failure.xml",
        expect![[r#"
        (report): tests=8 passed=2 failed=4 errored=1 skipped=1 seconds=0
        suite="example.com/sample/calc": tests=7 passed=2 failed=4 errored=0 skipped=1 seconds=0
    "#]],
    );
}

#[test]
fn surefire_bare_testsuite_root() {
    check_junit(
        "surefire-CalcTest.xml",
        expect![[r#"
        (report): tests=5 passed=1 failed=1 errored=1 skipped=2 seconds=0.017
        suite="example.CalcTest": tests=5 passed=1 failed=1 errored=1 skipped=2 seconds=0.017
    "#]],
    );
}

#[test]
fn surefire_passing_class() {
    check_junit(
        "surefire-OtherTest.xml",
        expect![[r#"
        (report): tests=1 passed=1 failed=0 errored=0 skipped=0 seconds=0
        suite="example.OtherTest": tests=1 passed=1 failed=0 errored=0 skipped=0 seconds=0
    "#]],
    );
}

/// Renders how many samples, series and distinct metric names a text body yields.
fn check_text(path: &str, expect: Expect) {
    let body = fixture(&format!("prometheus/{path}"));
    let batch = parse_prometheus_text(&body, NOW_MS, &Limits::default())
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut names: Vec<&str> = batch
        .series()
        .iter()
        .filter_map(|l| l.metric_name())
        .collect();
    names.dedup();
    let mut text = format!(
        "samples={} series={} names={}\n",
        batch.len(),
        batch.series().len(),
        names.len()
    );
    // A few samples in full, to check escapes and special values survive.
    for (labels, ts, value) in batch.iter().filter(|(l, _, _)| {
        matches!(
            l.metric_name(),
            Some(
                "room_temperature_celsius"
                    | "request_latency_seconds_bucket"
                    | "node_os_info"
                    | "node_xfrm_out_error_packets_total"
            )
        )
    }) {
        text.push_str(&format!("{:?} {ts} {value}\n", labels.pairs()));
    }
    expect.assert_eq(&text);
}

#[test]
fn node_exporter_output() {
    check_text(
        "node_exporter-darwin.prom",
        expect![[r#"
        samples=99 series=99 names=52
        [("__name__", "node_os_info"), ("id", "ubuntu"), ("id_like", "debian"), ("name", "Ubuntu"), ("pretty_name", "Ubuntu 20.04.2 LTS"), ("version", "20.04.2 LTS (Focal Fossa)"), ("version_codename", "focal"), ("version_id", "20.04")] 1800000000000 1
        [("__name__", "node_xfrm_out_error_packets_total")] 1800000000000 1000000
    "#]],
    );
}

#[test]
fn python_client_output() {
    check_text(
        "python-client.prom",
        expect![[r#"
        samples=33 series=33 names=20
        [("__name__", "room_temperature_celsius"), ("room", "Bob's \"office\"\\n\nfloor 2")] 1800000000000 21.5
        [("__name__", "room_temperature_celsius"), ("room", "server-room")] 1800000000000 NaN
        [("__name__", "room_temperature_celsius"), ("room", "furnace")] 1800000000000 inf
        [("__name__", "request_latency_seconds_bucket"), ("le", "0.1")] 1800000000000 1
        [("__name__", "request_latency_seconds_bucket"), ("le", "0.5")] 1800000000000 3
        [("__name__", "request_latency_seconds_bucket"), ("le", "1.0")] 1800000000000 4
        [("__name__", "request_latency_seconds_bucket"), ("le", "+Inf")] 1800000000000 5
    "#]],
    );
}
