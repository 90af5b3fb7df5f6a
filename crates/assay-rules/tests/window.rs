//! Event-time windows: batches of `(series, t, v)` in ledger order in, results out.

use assay_ledger::{Labels, SampleBatch};
use assay_rules::{WindowAggregator, WindowResult, WindowSpec};
use expect_test::{expect, Expect};

/// `name{a=1,b=2}` → labels.
fn labels(series: &str) -> Labels {
    let (name, rest) = series.split_once('{').unwrap_or((series, "}"));
    let mut pairs = vec![("__name__".to_string(), name.to_string())];
    for kv in rest
        .trim_end_matches('}')
        .split(',')
        .filter(|s| !s.is_empty())
    {
        let (k, v) = kv.split_once('=').unwrap();
        pairs.push((k.to_string(), v.to_string()));
    }
    Labels::new(pairs).unwrap()
}

fn batch(samples: &[(&str, i64, f64)]) -> SampleBatch {
    let mut b = SampleBatch::new();
    for (s, t, v) in samples {
        b.push(labels(s), *t, *v);
    }
    b
}

fn show(r: &WindowResult) -> String {
    let key: Vec<String> = r.key.iter().map(|(n, v)| format!("{n}={v}")).collect();
    let a = &r.aggregate;
    format!(
        "  [{},{}) {{{}}} rev{}: count={} sum={} min={} max={} last={}@{} avg={}\n",
        r.start_ms,
        r.end_ms,
        key.join(","),
        r.revision,
        a.count,
        a.sum,
        a.min,
        a.max,
        a.last,
        a.last_ms,
        a.avg()
    )
}

/// Feeds each batch in turn; prints what each emitted, then the counters.
fn check(spec: WindowSpec, batches: &[&[(&str, i64, f64)]], expect: Expect) {
    let mut w = WindowAggregator::new(spec).unwrap();
    let mut out = String::new();
    for (i, b) in batches.iter().enumerate() {
        let mut results = Vec::new();
        w.push_batch(&batch(b), &mut results);
        out += &format!("batch {i} (watermark {:?})\n", w.watermark_ms());
        out.extend(results.iter().map(show));
    }
    out += &format!("open windows {}\n{:#?}\n", w.open_windows(), w.stats());
    expect.assert_eq(&out);
}

fn spec(delay_ms: i64, lateness_ms: i64) -> WindowSpec {
    WindowSpec {
        watermark_delay_ms: delay_ms,
        allowed_lateness_ms: lateness_ms,
        ..WindowSpec::tumbling(60_000, &["job"])
    }
}

#[test]
fn tumbling_emits_when_watermark_passes_end() {
    check(
        spec(0, 0),
        &[
            &[
                ("m{job=a,i=1}", 0, 1.0),
                ("m{job=a,i=2}", 30_000, 2.0),
                ("m{job=b}", 59_999, 5.0),
            ],
            &[("m{job=a,i=1}", 60_000, 7.0)],
            &[("m{job=a,i=1}", 59_000, 100.0)],
            &[("m{job=a,i=1}", 125_000, 1.0), ("m{i=9}", 125_001, 3.0)],
        ],
        expect![[r#"
            batch 0 (watermark Some(59999))
            batch 1 (watermark Some(60000))
              [0,60000) {job=a} rev0: count=2 sum=3 min=1 max=2 last=2@30000 avg=1.5
              [0,60000) {job=b} rev0: count=1 sum=5 min=5 max=5 last=5@59999 avg=5
            batch 2 (watermark Some(60000))
            batch 3 (watermark Some(125001))
              [60000,120000) {job=a} rev0: count=1 sum=7 min=7 max=7 last=7@60000 avg=7
            open windows 1
            WindowStats {
                counted: 6,
                filtered: 0,
                duplicates: 0,
                replacements: 0,
                too_late: 1,
                stale_markers: 0,
                out_of_range: 0,
                dropped_open_windows: 0,
                dropped_keys: 0,
                dropped_samples: 0,
                dropped_series: 0,
                emitted: 3,
                updates: 0,
            }
        "#]],
    );
}

#[test]
fn late_samples_update_without_double_counting() {
    check(
        spec(0, 120_000),
        &[
            &[("m{job=a,i=1}", 10_000, 1.0), ("m{job=a,i=2}", 10_000, 2.0)],
            // Completes [0,60000): revision 0.
            &[("m{job=a,i=1}", 70_000, 1.0)],
            // Late, within lateness: a new sample updates the window (revision 1).
            &[("m{job=a,i=3}", 20_000, 4.0)],
            // A retried write (same series, time, value): nothing changes, nothing emitted.
            &[("m{job=a,i=3}", 20_000, 4.0), ("m{job=a,i=1}", 10_000, 1.0)],
            // A different value at the same series and time replaces the old one.
            &[("m{job=a,i=2}", 10_000, -5.0)],
            // Two changes in one batch: one update carrying both.
            &[
                ("m{job=a,i=4}", 30_000, 10.0),
                ("m{job=a,i=4}", 30_000, 11.0),
            ],
            // Watermark 180000 closes [0,60000) (end + lateness): later samples are too late.
            &[
                ("m{job=a,i=1}", 180_000, 1.0),
                ("m{job=a,i=5}", 40_000, 1.0),
            ],
        ],
        expect![[r#"
            batch 0 (watermark Some(10000))
            batch 1 (watermark Some(70000))
              [0,60000) {job=a} rev0: count=2 sum=3 min=1 max=2 last=2@10000 avg=1.5
            batch 2 (watermark Some(70000))
              [0,60000) {job=a} rev1: count=3 sum=7 min=1 max=4 last=4@20000 avg=2.3333333333333335
            batch 3 (watermark Some(70000))
            batch 4 (watermark Some(70000))
              [0,60000) {job=a} rev2: count=3 sum=0 min=-5 max=4 last=4@20000 avg=0
            batch 5 (watermark Some(70000))
              [0,60000) {job=a} rev3: count=4 sum=11 min=-5 max=11 last=11@30000 avg=2.75
            batch 6 (watermark Some(180000))
              [60000,120000) {job=a} rev0: count=1 sum=1 min=1 max=1 last=1@70000 avg=1
            open windows 2
            WindowStats {
                counted: 6,
                filtered: 0,
                duplicates: 2,
                replacements: 2,
                too_late: 1,
                stale_markers: 0,
                out_of_range: 0,
                dropped_open_windows: 0,
                dropped_keys: 0,
                dropped_samples: 0,
                dropped_series: 0,
                emitted: 2,
                updates: 3,
            }
        "#]],
    );
}

#[test]
fn watermark_delay_holds_emission() {
    check(
        spec(30_000, 0),
        &[
            &[("m{job=a}", 50_000, 1.0), ("m{job=a}", 80_000, 2.0)],
            // Out of order but before the watermark passed the end: in the first emission.
            &[("m{job=a}", 55_000, 3.0), ("m{job=a}", 90_000, 4.0)],
            &[("m{job=a}", 58_000, 3.0)],
        ],
        expect![[r#"
            batch 0 (watermark Some(50000))
            batch 1 (watermark Some(60000))
              [0,60000) {job=a} rev0: count=2 sum=4 min=1 max=3 last=3@55000 avg=2
            batch 2 (watermark Some(60000))
            open windows 1
            WindowStats {
                counted: 4,
                filtered: 0,
                duplicates: 0,
                replacements: 0,
                too_late: 1,
                stale_markers: 0,
                out_of_range: 0,
                dropped_open_windows: 0,
                dropped_keys: 0,
                dropped_samples: 0,
                dropped_series: 0,
                emitted: 1,
                updates: 0,
            }
        "#]],
    );
}

#[test]
fn hopping_windows_and_nan() {
    check(
        WindowSpec {
            hop_ms: 20_000,
            ..WindowSpec::tumbling(60_000, &["job"])
        },
        &[
            &[
                ("m{job=a}", 25_000, 1.0),
                ("m{job=a,i=2}", 30_000, f64::NAN),
                // A Prometheus stale marker is skipped.
                (
                    "m{job=a,i=3}",
                    30_000,
                    f64::from_bits(0x7ff0_0000_0000_0002),
                ),
            ],
            &[("m{job=a}", 100_000, 2.0)],
        ],
        expect![[r#"
            batch 0 (watermark Some(30000))
            batch 1 (watermark Some(100000))
              [-20000,40000) {job=a} rev0: count=2 sum=NaN min=1 max=1 last=NaN@30000 avg=NaN
              [0,60000) {job=a} rev0: count=2 sum=NaN min=1 max=1 last=NaN@30000 avg=NaN
              [20000,80000) {job=a} rev0: count=2 sum=NaN min=1 max=1 last=NaN@30000 avg=NaN
            open windows 3
            WindowStats {
                counted: 9,
                filtered: 0,
                duplicates: 0,
                replacements: 0,
                too_late: 0,
                stale_markers: 1,
                out_of_range: 0,
                dropped_open_windows: 0,
                dropped_keys: 0,
                dropped_samples: 0,
                dropped_series: 0,
                emitted: 3,
                updates: 0,
            }
        "#]],
    );
}

#[test]
fn bounds_drop_and_count() {
    check(
        WindowSpec {
            open_windows_max: 2,
            keys_per_window_max: 1,
            samples_per_window_max: 2,
            series_max: 3,
            allowed_lateness_ms: 1_000_000,
            metric: Some("m".into()),
            ..WindowSpec::tumbling(60_000, &["job"])
        },
        &[&[
            ("m{job=a}", 0, 1.0),
            ("m{job=b}", 1, 1.0),
            ("other{job=a}", 2, 1.0),
            ("m{job=a}", 60_000, 1.0),
            ("m{job=a}", 120_000, 1.0),
            ("m{job=c}", 60_001, 1.0),
            ("m{job=d}", 60_002, 1.0),
            ("m{job=a}", 10_000, 2.0),
            ("m{job=a}", 20_000, 3.0),
        ]],
        expect![[r#"
            batch 0 (watermark Some(120000))
              [0,60000) {job=a} rev0: count=2 sum=3 min=1 max=2 last=2@10000 avg=1.5
              [60000,120000) {job=a} rev0: count=1 sum=1 min=1 max=1 last=1@60000 avg=1
            open windows 2
            WindowStats {
                counted: 3,
                filtered: 1,
                duplicates: 0,
                replacements: 0,
                too_late: 0,
                stale_markers: 0,
                out_of_range: 0,
                dropped_open_windows: 1,
                dropped_keys: 2,
                dropped_samples: 1,
                dropped_series: 1,
                emitted: 2,
                updates: 0,
            }
        "#]],
    );
}

#[test]
fn spec_errors() {
    let bad = |s: WindowSpec| WindowAggregator::new(s).unwrap_err().to_string();
    let base = WindowSpec::tumbling(60_000, &[]);
    let got = [
        bad(WindowSpec {
            size_ms: 0,
            ..base.clone()
        }),
        bad(WindowSpec {
            hop_ms: 120_000,
            ..base.clone()
        }),
        bad(WindowSpec {
            hop_ms: 900,
            ..base.clone()
        }),
        bad(WindowSpec {
            allowed_lateness_ms: -1,
            ..base.clone()
        }),
        bad(WindowSpec {
            series_max: 0,
            ..base.clone()
        }),
    ]
    .join("\n");
    expect![[r#"
        invalid window spec: size_ms and hop_ms must be positive
        invalid window spec: hop_ms must not exceed size_ms (samples would fall between windows)
        invalid window spec: size_ms / hop_ms exceeds WINDOWS_PER_SAMPLE_MAX
        invalid window spec: watermark_delay_ms and allowed_lateness_ms must not be negative
        invalid window spec: limits must be positive"#]]
    .assert_eq(&got);
}

/// A pseudo-random stream with duplicates, replacements and late samples.
fn stream(seed: u64, n: usize) -> Vec<SampleBatch> {
    let mut x = seed;
    let mut next = move || {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        x >> 33
    };
    let mut batches = Vec::new();
    let mut b = SampleBatch::new();
    for i in 0..n {
        let t = (i as i64) * 1_000 - (next() % 4 == 0) as i64 * (next() % 150_000) as i64;
        let series = format!("m{{job=j{},i={}}}", next() % 3, next() % 5);
        b.push(labels(&series), t.max(0) / 500 * 500, (next() % 4) as f64);
        if b.len() == 7 {
            batches.push(std::mem::take(&mut b));
        }
    }
    batches.push(b);
    batches
}

#[test]
fn same_input_same_output_and_digest() {
    let run = |batches: &[SampleBatch]| {
        let mut w = WindowAggregator::new(spec(5_000, 90_000)).unwrap();
        let mut out = Vec::new();
        for b in batches {
            w.push_batch(b, &mut out);
        }
        (out, w.digest(), w.stats())
    };
    let batches = stream(7, 3_000);
    let (a, da, sa) = run(&batches);
    let (b, db, sb) = run(&batches);
    assert_eq!(a, b);
    assert_eq!(da, db);
    assert_eq!(sa, sb);
    assert!(sa.updates > 0 && sa.duplicates > 0 && sa.replacements > 0 && sa.too_late > 0);
    let (_, dc, _) = run(&stream(8, 3_000));
    assert_ne!(da, dc);
}

/// The newest revision of every window equals a from-scratch aggregate over the last
/// value written per (series, timestamp), counting only samples not too late.
#[test]
fn updates_converge_to_exact_totals() {
    let batches = stream(11, 5_000);
    let lateness = 1_000_000_000; // nothing is too late: every sample must be counted
    let mut w = WindowAggregator::new(spec(0, lateness)).unwrap();
    let mut out = Vec::new();
    for b in &batches {
        w.push_batch(b, &mut out);
    }
    // Flush: one sample far ahead completes every window.
    w.push_batch(&batch(&[("m{job=j0,i=0}", 1 << 40, 0.0)]), &mut out);
    let mut newest = std::collections::BTreeMap::new();
    for r in &out {
        newest.insert((r.start_ms, r.key.clone()), (r.revision, r.aggregate));
    }
    let mut last_write = std::collections::BTreeMap::new();
    for b in &batches {
        for (l, t, v) in b.iter() {
            last_write.insert((l.clone(), t), v);
        }
    }
    type WindowKey = (i64, Vec<(String, String)>);
    let mut expected: std::collections::BTreeMap<WindowKey, (u64, f64)> = Default::default();
    for ((l, t), v) in &last_write {
        let key = vec![("job".to_string(), l.get("job").unwrap().to_string())];
        let e = expected
            .entry((t.div_euclid(60_000) * 60_000, key))
            .or_default();
        e.0 += 1;
        e.1 += v;
    }
    assert_eq!(
        newest.len(),
        expected.len(),
        "one result per window and key"
    );
    for (k, (count, sum)) in expected {
        let (_, a) = newest[&k];
        assert_eq!(a.count, count, "{k:?}");
        // Small integers: the sum is exact in any order.
        assert_eq!(a.sum, sum, "{k:?}");
    }
    assert!(
        out.iter().any(|r| r.revision > 0),
        "the stream has late samples"
    );
}

/// Sweeping forgotten series between batches never forgets one an open window holds:
/// retried writes of 2,000 series after a sweep are still recognised.
#[test]
fn sweep_keeps_series_of_open_windows() {
    let mut w = WindowAggregator::new(spec(0, 600_000)).unwrap();
    let series: Vec<String> = (0..2_000).map(|i| format!("m{{job=a,i={i}}}")).collect();
    let first: Vec<(&str, i64, f64)> = series.iter().map(|s| (s.as_str(), 1_000, 1.0)).collect();
    let mut out = Vec::new();
    w.push_batch(&batch(&first), &mut out);
    // Closes nothing (lateness 10 minutes) but emits [0,60000).
    w.push_batch(&batch(&[("m{job=a,i=0}", 70_000, 1.0)]), &mut out);
    w.push_batch(&batch(&first), &mut out);
    let s = w.stats();
    assert_eq!((s.counted, s.duplicates, s.updates), (2_001, 2_000, 0));
    // Once the window closes, its series are forgotten at the next sweep.
    let churn: Vec<String> = (0..3_000).map(|i| format!("n{{job=b,i={i}}}")).collect();
    let churn: Vec<(&str, i64, f64)> = churn.iter().map(|s| (s.as_str(), 700_000, 1.0)).collect();
    w.push_batch(&batch(&churn), &mut out);
    let before = w.digest();
    w.push_batch(&batch(&first), &mut out);
    assert_eq!(
        w.stats().too_late,
        2_000,
        "closed window: the retries are too late"
    );
    assert_ne!(before, w.digest());
    assert_eq!(out.iter().map(|r| r.aggregate.count).sum::<u64>(), 2_001);
}

/// Timestamps at the ends of i64 neither panic nor wrap around.
#[test]
fn extreme_timestamps() {
    let mut w = WindowAggregator::new(WindowSpec {
        hop_ms: 30_000,
        allowed_lateness_ms: i64::MAX,
        ..WindowSpec::tumbling(60_000, &["job"])
    })
    .unwrap();
    let mut out = Vec::new();
    w.push_batch(
        &batch(&[
            ("m{job=a}", i64::MIN, 1.0),
            ("m{job=a}", i64::MAX, 2.0),
            ("m{job=a}", -(1 << 53), 3.0),
            ("m{job=a}", 1 << 53, 4.0),
        ]),
        &mut out,
    );
    let mut got: String = out.iter().map(show).collect();
    got += &format!("out of range: {}\n", w.stats().out_of_range);
    expect![[r#"
          [-9007199254800000,-9007199254740000) {job=a} rev0: count=1 sum=3 min=3 max=3 last=3@-9007199254740992 avg=3
          [-9007199254770000,-9007199254710000) {job=a} rev0: count=1 sum=3 min=3 max=3 last=3@-9007199254740992 avg=3
        out of range: 2
    "#]].assert_eq(&got);
}
