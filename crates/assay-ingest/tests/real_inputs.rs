//! The parsers on what real tools produced: JUnit reports from five runners (see
//! `fixtures/junit/README.md`), exposition text from two exporters and Telegraf's line protocol.

use assay_ingest::{
    parse_influx_line, parse_junit, parse_prometheus_text, CiRun, Entry, InfluxPrecision, Limits,
};
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

#[test]
fn telegraf_line_protocol() {
    let body = fixture("influx/telegraf.lp");
    let parsed = parse_influx_line(
        &body,
        NOW_MS,
        InfluxPrecision::Nanoseconds,
        &Limits::default(),
    )
    .unwrap_or_else(|e| panic!("telegraf.lp: {e}"));
    let batch = &parsed.batch;
    let metrics: std::collections::BTreeSet<&str> = batch
        .series()
        .iter()
        .filter_map(|l| l.metric_name())
        .collect();
    let backup = batch
        .iter()
        .find(|(l, _, _)| l.get("path") == Some("/mnt/backup drive"))
        .map(|(l, ts, v)| format!("{l:?} {ts} {v}"));
    let uptime = batch
        .iter()
        .find(|(l, _, _)| l.metric_name() == Some("system_uptime"))
        .map(|(_, ts, v)| format!("{ts} {v}"));
    expect![[r#"
        samples=160 series=150 strings_skipped=1
        cpu_usage_guest cpu_usage_guest_nice cpu_usage_idle cpu_usage_iowait cpu_usage_irq cpu_usage_nice cpu_usage_softirq cpu_usage_steal cpu_usage_system cpu_usage_user disk_free disk_inodes_free disk_inodes_total disk_inodes_used disk_inodes_used_percent disk_total disk_used disk_used_percent diskio_io_time diskio_iops_in_progress diskio_merged_reads diskio_merged_writes diskio_read_bytes diskio_read_time diskio_reads diskio_weighted_io_time diskio_write_bytes diskio_write_time diskio_writes internal_write_buffer_limit internal_write_buffer_size internal_write_errors internal_write_metrics_added internal_write_metrics_dropped internal_write_metrics_filtered internal_write_metrics_written internal_write_startup_errors internal_write_write_time_ns mem_active mem_available mem_available_percent mem_buffered mem_cached mem_commit_limit mem_committed_as mem_dirty mem_free mem_high_free mem_high_total mem_huge_page_size mem_huge_pages_free mem_huge_pages_total mem_inactive mem_low_free mem_low_total mem_mapped mem_page_tables mem_shared mem_slab mem_sreclaimable mem_sunreclaim mem_swap_cached mem_swap_free mem_swap_total mem_total mem_used mem_used_percent mem_vmalloc_chunk mem_vmalloc_total mem_vmalloc_used mem_write_back mem_write_back_tmp net_bytes_recv net_bytes_sent net_drop_in net_drop_out net_err_in net_err_out net_packets_recv net_packets_sent net_speed processes_blocked processes_dead processes_idle processes_paging processes_parked processes_running processes_sleeping processes_stopped processes_total processes_total_threads processes_unknown processes_zombies swap_free swap_in swap_out swap_total swap_used swap_used_percent system_load1 system_load15 system_load5 system_n_cpus system_n_unique_users system_n_users system_uptime
        Some("Labels([(\"__name__\", \"disk_free\"), (\"device\", \"sdb1\"), (\"fstype\", \"xfs\"), (\"host\", \"web-01\"), (\"mode\", \"rw\"), (\"path\", \"/mnt/backup drive\")]) 1799999990000 912345088000")
        Some("1799999990000 1234567")
    "#]].assert_eq(&format!(
        "samples={} series={} strings_skipped={}\n{}\n{backup:?}\n{uptime:?}\n",
        batch.len(),
        batch.series().len(),
        parsed.string_fields_skipped,
        metrics.into_iter().collect::<Vec<_>>().join(" "),
    ));
}
