//! Tests of the view: apply order, determinism, snapshots, metadata queries.

use assay_ledger::{Labels, SampleBatch};
use expect_test::{expect, Expect};

use crate::promql::parse_selector;
use crate::{Retention, SettledChunk, SnapshotError, Tsdb, UnsettledChunk};

fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::new(
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
    )
    .unwrap()
}

/// A fixed list of writes: three series, out-of-order and repeated timestamps.
fn writes() -> Vec<(Labels, i64, f64)> {
    let cpu_a = labels(&[("__name__", "cpu"), ("host", "a")]);
    let cpu_b = labels(&[("__name__", "cpu"), ("host", "b")]);
    let up = labels(&[("__name__", "up"), ("job", "api")]);
    vec![
        (cpu_b.clone(), 2_000, 0.5),
        (cpu_a.clone(), 1_000, 1.0),
        (up.clone(), 1_000, 1.0),
        (cpu_a.clone(), 3_000, 3.0),
        (cpu_a.clone(), 2_000, 2.0),  // out of order
        (cpu_b.clone(), 2_000, 0.75), // same timestamp: the later write wins
        (up.clone(), 5_000, f64::NAN),
        (cpu_b, 9_000, -0.0),
    ]
}

fn apply_split(writes: &[(Labels, i64, f64)], batch_len: usize) -> Tsdb {
    let mut db = Tsdb::new();
    for chunk in writes.chunks(batch_len) {
        let mut batch = SampleBatch::new();
        for (l, t, v) in chunk {
            batch.push(l.clone(), *t, *v);
        }
        db.apply_batch(&batch);
    }
    db
}

fn dump(db: &Tsdb) -> String {
    let mut out = String::new();
    for e in db.sorted_series() {
        let samples: Vec<String> = e.samples.iter().map(|(t, v)| format!("{t}:{v}")).collect();
        out.push_str(&format!("{:?} {}\n", e.labels.pairs(), samples.join(" ")));
    }
    out
}

#[test]
fn apply_orders_samples_and_later_write_wins() {
    let db = apply_split(&writes(), 3);
    assert_eq!(db.series_count(), 3);
    assert_eq!(db.sample_count(), 7);
    expect![[r#"
        [("__name__", "cpu"), ("host", "a")] 1000:1 2000:2 3000:3
        [("__name__", "cpu"), ("host", "b")] 2000:0.75 9000:-0
        [("__name__", "up"), ("job", "api")] 1000:1 5000:NaN
    "#]]
    .assert_eq(&dump(&db));
}

#[test]
fn digest_is_independent_of_batch_split_and_instance() {
    let w = writes();
    let one = apply_split(&w, w.len());
    let digests: Vec<[u8; 32]> = (1..=w.len()).map(|n| apply_split(&w, n).digest()).collect();
    assert!(digests.iter().all(|d| *d == one.digest()));
    // Pinned: a change of the canonical traversal changes every replica's digest.
    expect!["bdb22c8726f61d53"].assert_eq(&hex8(&one.digest()));

    // A different state has a different digest: one value bit, one extra sample.
    let mut other = w.clone();
    other[7].2 = 0.0; // -0.0 -> +0.0
    assert_ne!(apply_split(&other, 2).digest(), one.digest());
    let mut more = apply_split(&w, 2);
    let mut b = SampleBatch::new();
    b.push(labels(&[("__name__", "up"), ("job", "api")]), 6_000, 1.0);
    more.apply_batch(&b);
    assert_ne!(more.digest(), one.digest());
    assert_eq!(Tsdb::new().digest(), Tsdb::new().digest());
}

fn hex8(d: &[u8; 32]) -> String {
    d[..8].iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn snapshot_roundtrip_keeps_the_digest() {
    let mut db = apply_split(&writes(), 2);
    let meta = |metric: &str, help: &str| assay_ledger::MetricMetadata {
        metric: metric.into(),
        kind: assay_ledger::MetricType::Gauge,
        help: help.into(),
        unit: "seconds".into(),
    };
    let before = db.digest();
    db.apply_metadata(&[
        meta("cpu", "CPU time"),
        meta("up", "1 if up"),
        meta("cpu", "CPU"),
    ]);
    assert_ne!(db.digest(), before, "metadata is part of the state");
    let got: Vec<(&str, Vec<&str>)> = db
        .metadata(None, usize::MAX, usize::MAX)
        .into_iter()
        .map(|(m, rs)| (m, rs.iter().map(|r| r.help.as_str()).collect()))
        .collect();
    assert_eq!(
        got,
        [("cpu", vec!["CPU", "CPU time"]), ("up", vec!["1 if up"])]
    );
    assert_eq!(db.metadata(Some("up"), 0, 1).len(), 1);
    assert_eq!(db.metadata(None, 1, 1)[0].1.len(), 1);
    let bytes = db.encode_snapshot();
    let back = Tsdb::decode_snapshot(&bytes, None).unwrap();
    assert_eq!(back.digest(), db.digest());
    assert_eq!(back.series_count(), 3);
    assert_eq!(back.sample_count(), 7);
    assert_eq!(dump(&back), dump(&db));
    assert_eq!(back.metadata(None, 9, 9), db.metadata(None, 9, 9));
    let empty = Tsdb::decode_snapshot(&Tsdb::new().encode_snapshot(), None).unwrap();
    assert_eq!(empty.series_count(), 0);
}

#[test]
fn snapshot_rejects_corruption_without_panicking() {
    let bytes = apply_split(&writes(), 2).encode_snapshot();
    // Every single-bit flip and every truncation is rejected.
    for i in 0..bytes.len() {
        for bit in 0..8 {
            let mut b = bytes.clone();
            b[i] ^= 1 << bit;
            assert!(
                Tsdb::decode_snapshot(&b, None).is_err(),
                "flip of byte {i} bit {bit} accepted"
            );
        }
    }
    for n in 0..bytes.len() {
        assert!(
            Tsdb::decode_snapshot(&bytes[..n], None).is_err(),
            "truncation to {n} accepted"
        );
    }
    let check =
        |b: &[u8], e: Expect| e.assert_eq(&Tsdb::decode_snapshot(b, None).unwrap_err().to_string());
    check(
        b"",
        expect![[r#"snapshot does not start with the magic bytes "ASTS": not a tsdb snapshot"#]],
    );
    check(b"ASTS\x01", expect!["snapshot version 1 is not supported (this build reads versions 5 to 6); rebuild the view from the ledger"]);
    let mut flipped = bytes.clone();
    flipped[8] ^= 1;
    check(&flipped, expect!["snapshot checksum does not match its contents: the file is corrupt, rebuild the view from the ledger"]);
    // A body with a valid checksum but broken canonical rules is still rejected.
    check(
        &with_checksum(&[1, 1, 8]),
        expect!["label count at byte 6 exceeds its limit"],
    );
    check(
        &with_checksum(&[0, 0, 0]),
        expect!["1 bytes trail the snapshot body"],
    );
    // Metadata: a metric with no record, and two metrics out of name order.
    check(
        &with_checksum(&[0, 1, 1, b'a', 0]),
        expect!["metadata of metric 0: out of name order, empty, or records missing, repeated or too many"],
    );
    check(
        &with_checksum(&[0, 2, 1, b'b', 1, 1, 0, 0, 1, b'a', 1, 1, 0, 0]),
        expect!["metadata of metric 1: out of name order, empty, or records missing, repeated or too many"],
    );
    let series = |name: &str, samples: &[u8]| {
        let mut b = vec![1u8, 8];
        b.extend_from_slice(b"__name__");
        b.push(name.len() as u8);
        b.extend_from_slice(name.as_bytes());
        b.push(0); // no sealed chunk: every sample in the open one
        b.extend_from_slice(samples);
        b
    };
    let two = |a: Vec<u8>, b: Vec<u8>| [vec![2u8], a, b].concat();
    let sample = |delta: u8| [vec![delta], vec![0u8; 8]].concat();
    check(
        &with_checksum(&[vec![1u8], series("a", &[0])].concat()),
        expect!["series 0 has no sample"],
    );
    let s1 = [vec![1u8], sample(2)].concat();
    check(
        &with_checksum(&two(series("b", &s1), series("a", &s1))),
        expect!["series 1 is not after the previous series in label order"],
    );
    let dup_ts = [vec![2u8], sample(2), sample(0)].concat();
    check(
        &with_checksum(&[vec![1u8], series("a", &dup_ts)].concat()),
        expect!["series 0, sample 1: timestamp does not increase or overflows"],
    );
    // A sealed chunk entry must be well formed (here: kind 1, sample count 3, and the rest
    // of the bytes read as a time range that does not hold).
    let mut sealed_two = series("a", &[vec![2u8], sample(2), sample(2)].concat());
    sealed_two[12] = 1;
    sealed_two.insert(13, 3);
    check(
        &with_checksum(&[vec![1u8], sealed_two].concat()),
        expect!["series 0, chunk 0: its sample count or time range is invalid"],
    );
    check(
        &with_checksum(
            &[
                vec![1u8, 1, 1],
                b"a".to_vec(),
                vec![1],
                b"x".to_vec(),
                vec![0],
                s1,
            ]
            .concat(),
        ),
        expect!["series 0: labels are invalid: the metric name (__name__) is missing or empty"],
    );
}

/// A version 5 snapshot of `body` (its open chunks: a timestamp delta and 8 value bytes a
/// sample; the cases above spell samples that way).
fn with_checksum(body: &[u8]) -> Vec<u8> {
    with_version(5, body)
}

fn with_version(version: u8, body: &[u8]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let sum: [u8; 32] = Sha256::digest(body).into();
    [b"ASTS".as_slice(), &[version], body, &sum].concat()
}

fn leb128(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zz(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// `db` as version 5 wrote it (no metadata): every chunk with its whole time range, the open
/// chunk's samples raw.
fn encode_version_5(db: &Tsdb) -> Vec<u8> {
    let mut b = Vec::new();
    leb128(&mut b, db.series_count() as u64);
    for e in db.sorted_series() {
        leb128(&mut b, e.labels.pairs().len() as u64);
        for (n, v) in e.labels.pairs() {
            for s in [n, v] {
                leb128(&mut b, s.len() as u64);
                b.extend_from_slice(s.as_bytes());
            }
        }
        leb128(&mut b, e.samples.sealed().len() as u64);
        for c in e.samples.sealed() {
            b.push(u8::from(c.file_ref().is_some()));
            leb128(&mut b, c.len() as u64);
            leb128(&mut b, zz(c.min_t()));
            leb128(&mut b, zz(c.max_t()));
            leb128(&mut b, c.byte_len() as u64);
            match c.file_ref() {
                None => b.extend_from_slice(c.bytes()),
                Some((file, offset, _)) => {
                    leb128(&mut b, file);
                    leb128(&mut b, offset as u64);
                    b.extend_from_slice(&crc32fast::hash(c.bytes()).to_le_bytes());
                }
            }
        }
        let head: Vec<(i64, f64)> = e.samples.head().iter().collect();
        leb128(&mut b, head.len() as u64);
        let mut prev = e.samples.sealed().last().map_or(0, |c| c.max_t());
        for (t, v) in head {
            leb128(&mut b, zz(t - prev));
            prev = t;
            b.extend_from_slice(&v.to_bits().to_le_bytes());
        }
    }
    b.push(0);
    with_version(5, &b)
}

#[test]
fn version_5_snapshots_with_inline_and_mapped_chunks_still_load() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = series_over(3, 125); // 750 samples each: 6 sealed chunks, 30 open
    db.settle_all();
    let items = db.chunks_to_offload(60 * 60_000, usize::MAX);
    assert_eq!(items.len(), 3 * 3, "chunks of 20 minutes before minute 60");
    let mut w = crate::chunk_file::ChunkFileWriter::new(4);
    let offsets: Vec<usize> = items.iter().map(|it| w.push(it.bytes())).collect();
    let file = w.finish(dir.path()).unwrap();
    assert_eq!(db.install_offloaded(&items, &offsets, &file), 9);

    let v5 = encode_version_5(&db);
    let back = Tsdb::decode_snapshot(&v5, Some(dir.path())).unwrap();
    assert_eq!(back.digest(), db.digest());
    assert_eq!(dump(&back), dump(&db));
    let v6 = db.encode_snapshot();
    assert_eq!(back.encode_snapshot(), v6);
    assert_eq!(
        Tsdb::decode_snapshot(&v6, Some(dir.path()))
            .unwrap()
            .digest(),
        db.digest()
    );
    // Version 6 spells time ranges relative, leaves inline ones to the bytes, and packs
    // the open chunk (30 constant samples: 8 value bytes each in version 5).
    assert!(
        v6.len() + 3 * 30 * 8 < v5.len(),
        "{} vs {}",
        v6.len(),
        v5.len()
    );
}

#[test]
fn snapshot_bodies_with_a_valid_checksum_but_any_byte_changed_never_panic() {
    // Inline chunks only: a mapped chunk's time range is taken from the snapshot, not
    // re-derived from the chunk file (that would read every chunk file at start).
    let mut db = series_over(2, 45); // 270 samples each: 2 sealed chunks, 30 open
    db.settle_all();
    let bytes = db.encode_snapshot();
    let body = &bytes[5..bytes.len() - 32];
    let mut rejected = 0;
    for i in 0..body.len() {
        for v in [0u8, 1, 0x7f, 0x80, 0xff, body[i] ^ 1] {
            let mut b = body.to_vec();
            b[i] = v;
            let snapshot = with_version(6, &b);
            match Tsdb::decode_snapshot(&snapshot, None) {
                Err(_) => rejected += 1,
                // Whatever loads is a valid state (the decoder's debug assertion checks the
                // samples' order) that survives its own snapshot. Its bytes may differ: a
                // column in another layout the decoder reads is the same samples.
                Ok(back) => {
                    let again = Tsdb::decode_snapshot(&back.encode_snapshot(), None);
                    assert_eq!(again.unwrap().digest(), back.digest(), "byte {i} = {v}");
                }
            }
        }
    }
    assert!(
        rejected > body.len(),
        "{rejected} of {} rejected",
        body.len() * 6
    );
}

/// One series `a` with no sealed chunk and an open chunk of `head` (count, then its bytes).
fn one_open_series(head: &[u8]) -> Vec<u8> {
    [&[1u8, 1, 8][..], b"__name__", &[1], b"a", &[0], head, &[0]].concat()
}

#[test]
fn snapshot_reads_the_open_chunk_as_chunk_bytes_and_still_reads_version_5() {
    let mut db = Tsdb::new();
    let mut batch = SampleBatch::new();
    for (t, v) in [(1_000, 0.5), (2_000, f64::NAN)] {
        batch.push(labels(&[("__name__", "a")]), t, v);
    }
    db.apply_batch(&batch);
    let v6 = db.encode_snapshot();
    let back = Tsdb::decode_snapshot(&v6, None).unwrap();
    expect![[r#"
        [("__name__", "a")] 1000:0.5 2000:NaN
    "#]]
    .assert_eq(&dump(&back));
    // The same samples as version 5 wrote them: deltas, then 8 bytes of value bits.
    let raw = |delta: u16, v: f64| {
        let mut b = Vec::new();
        leb128(&mut b, u64::from(delta) << 1);
        [b, v.to_bits().to_le_bytes().to_vec()].concat()
    };
    let v5_head = [vec![2u8], raw(1_000, 0.5), raw(1_000, f64::NAN)].concat();
    let v5 = Tsdb::decode_snapshot(&with_version(5, &one_open_series(&v5_head)), None).unwrap();
    assert_eq!(v5.digest(), db.digest());
    assert_eq!(
        v5.encode_snapshot(),
        v6,
        "a version 5 snapshot is rewritten as version 6"
    );
    // An open chunk in the columns encoding reads too (a chunk's bytes, either encoding).
    let mut cols = vec![2u8, 0, 2];
    assay_columns::encode_timestamps_packed(&[1_000, 2_000], &mut cols);
    assay_columns::encode_values_packed(&[0.5, f64::NAN], &mut cols);
    cols[1] = (cols.len() - 2) as u8;
    let from_cols = with_version(6, &one_open_series(&cols));
    assert_eq!(
        Tsdb::decode_snapshot(&from_cols, None).unwrap().digest(),
        db.digest()
    );

    let check = |body: Vec<u8>, e: Expect| {
        e.assert_eq(
            &Tsdb::decode_snapshot(&with_version(6, &body), None)
                .unwrap_err()
                .to_string(),
        )
    };
    // The count says three samples, the bytes hold two.
    let mut short = cols.clone();
    short[0] = 3;
    check(
        one_open_series(&short),
        expect!["series 0, open chunk: bytes at 21 do not decode to 3 samples in time order"],
    );
}

#[test]
fn metadata_queries_filter_by_matchers_and_time() {
    let db = apply_split(&writes(), 4);
    let sel = |s: &str| vec![parse_selector(s).unwrap()];
    let all = i64::MIN..=i64::MAX;
    let (lo, hi) = (*all.start(), *all.end());
    assert_eq!(db.label_names(&[], lo, hi), ["__name__", "host", "job"]);
    assert_eq!(db.label_names(&sel("cpu"), lo, hi), ["__name__", "host"]);
    assert_eq!(db.label_values("host", &[], lo, hi), ["a", "b"]);
    // Only series with a sample in the window count.
    assert_eq!(db.label_values("host", &[], 4_000, 10_000), ["b"]);
    assert_eq!(db.label_values("__name__", &[], 4_000, 5_000), ["up"]);
    assert!(db.label_values("nope", &[], lo, hi).is_empty());
    // Selectors are OR-ed, matchers within one AND-ed.
    let or = [
        parse_selector(r#"cpu{host="a"}"#).unwrap(),
        parse_selector("up").unwrap(),
    ];
    let names: Vec<String> = db
        .series(&or, lo, hi)
        .iter()
        .map(|l| format!("{:?}", l.pairs()))
        .collect();
    expect![[r#"
        [
            "[(\"__name__\", \"cpu\"), (\"host\", \"a\")]",
            "[(\"__name__\", \"up\"), (\"job\", \"api\")]",
        ]
    "#]]
    .assert_debug_eq(&names);
    assert_eq!(
        db.series(&sel(r#"{host!="a", __name__=~"c.*"}"#), lo, hi)
            .len(),
        1
    );
    assert_eq!(
        db.series(&sel(r#"{__name__=~"cpu|up", host=""}"#), lo, hi)
            .len(),
        1
    );
    assert_eq!(
        db.series(&sel(r#"{__name__=~".+", __name__!~"cp"}"#), lo, hi)
            .len(),
        3
    );
    assert!(parse_selector(r#"{__name__!~"cp"}"#).is_err());
    assert!(db.series(&sel(r#"{__name__=~"c"}"#), lo, hi).is_empty());
}

#[test]
fn snapshot_error_is_comparable() {
    assert_eq!(
        Tsdb::decode_snapshot(b"ASTS", None).unwrap_err(),
        SnapshotError::Truncated(4)
    );
}

#[test]
fn series_match_only_their_own_labels() {
    let l = |pairs: &[(&str, &str)]| {
        assay_ledger::Labels::new(
            pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
        )
        .unwrap()
    };
    let a = l(&[("__name__", "m"), ("host", "ab")]);
    let mut db = Tsdb::new();
    let mut b = assay_ledger::SampleBatch::new();
    b.push(a.clone(), 1, 1.0);
    db.apply_batch(&b);
    let hash = |l: &assay_ledger::Labels| assay_ledger::SeriesIndex::hash(l);
    // The same labels: by pointer, and built anew.
    assert_eq!(db.lookup(&a, hash(&a)), Some(0));
    let again = l(&[("__name__", "m"), ("host", "ab")]);
    assert_eq!(db.lookup(&again, hash(&again)), Some(0));
    // Same bytes split differently, a prefix, an extension: all different series, even
    // when they are made to share the candidate's hash chain.
    for other in [
        l(&[("__name__", "m"), ("host", "a"), ("hostb", "")]),
        l(&[("__name__", "m"), ("hos", "tab")]),
        l(&[("__name__", "m")]),
        l(&[("__name__", "m"), ("host", "ab"), ("z", "1")]),
        l(&[("__name__", "m"), ("host", "ac")]),
    ] {
        assert!(!db.is_series(0, &other), "{other:?}");
        assert_eq!(db.lookup(&other, hash(&other)), None, "{other:?}");
    }
}

/// `n` series `m{i="k"}` with samples every 10 s over `0..minutes` minutes.
fn series_over(n: usize, minutes: i64) -> Tsdb {
    let mut db = Tsdb::new();
    for t in (0..minutes * 60_000).step_by(10_000) {
        let mut batch = SampleBatch::new();
        for k in 0..n {
            batch.push(
                labels(&[("__name__", "m"), ("i", &k.to_string())]),
                t,
                k as f64,
            );
        }
        db.apply_batch(&batch);
    }
    db
}

#[test]
fn retention_by_time_drops_old_chunks_and_forgets_dead_series() {
    // Three series over an hour (chunks end at 19:50, 39:50, 59:50, then one sample at
    // 60:00 in the open chunk) and one that stopped after 20 minutes (one chunk).
    let mut db = series_over(3, 60);
    let mut early = SampleBatch::new();
    for t in (0..20 * 60_000).step_by(10_000) {
        early.push(labels(&[("__name__", "m"), ("i", "3")]), t, 3.0);
    }
    db.apply_batch(&early);
    let mut late = SampleBatch::new();
    for k in 0..3 {
        late.push(
            labels(&[("__name__", "m"), ("i", &k.to_string())]),
            3_600_000,
            1.0,
        );
    }
    db.apply_batch(&late);
    assert_eq!((db.series_count(), db.sample_count()), (4, 3 * 361 + 120));
    let keep_all = Retention {
        time_ms: 0,
        bytes: 0,
    };
    assert_eq!(db.enforce_retention(3_600_000, &keep_all), 0);

    // Keep 25 minutes: chunks whose newest sample is before minute 35 go.
    let dropped = db.enforce_retention(
        3_600_000,
        &Retention {
            time_ms: 25 * 60_000,
            bytes: 0,
        },
    );
    assert_eq!(dropped, 4 * 120, "the first chunk of every series");
    assert_eq!((db.series_count(), db.sample_count()), (3, 3 * 241));
    // A quarter of the series died: the index was rebuilt without it.
    assert_eq!(db.series.len(), 3);
    let sel = parse_selector("m").unwrap();
    assert_eq!(db.series(&[sel], i64::MIN, i64::MAX).len(), 3);

    // A snapshot of the pruned view restores the same state.
    let restored = Tsdb::decode_snapshot(&db.encode_snapshot(), None).unwrap();
    assert_eq!(restored.digest(), db.digest());
}

#[test]
fn retention_by_bytes_keeps_the_newest_chunks_within_the_budget() {
    let mut db = series_over(10, 120);
    let before = db.sample_bytes();
    let budget = before / 2;
    let dropped = db.enforce_retention(
        0,
        &Retention {
            time_ms: 0,
            bytes: budget,
        },
    );
    assert!(
        dropped > 0 && db.sample_bytes() <= budget,
        "{} > {budget}",
        db.sample_bytes()
    );
    // Whole minutes of the oldest data went, the newest sample of every series stayed.
    let sel = parse_selector("m").unwrap();
    assert_eq!(db.series(&[sel], 7_190_000, 7_190_000).len(), 10);
    assert_eq!(db.series_count(), 10);
}

#[test]
fn a_series_emptied_by_retention_comes_back_with_a_new_sample() {
    let mut db = series_over(20, 30);
    let mut one = SampleBatch::new();
    one.push(labels(&[("__name__", "m"), ("i", "0")]), 40 * 60_000, 5.0);
    db.apply_batch(&one);
    db.enforce_retention(
        40 * 60_000,
        &Retention {
            time_ms: 60_000,
            bytes: 0,
        },
    );
    // 19 of 20 emptied: the index was rebuilt; now revive one more series.
    assert_eq!(db.series_count(), 1);
    let mut again = SampleBatch::new();
    again.push(labels(&[("__name__", "m"), ("i", "7")]), 41 * 60_000, 7.0);
    db.apply_batch(&again);
    assert_eq!(db.series_count(), 2);
}

#[test]
fn settling_changes_bytes_never_state() {
    // Sealed chunks wait unsettled (the open chunk's XOR bytes) until settled.
    let mut live = series_over(3, 60); // 360 samples each: 3 sealed chunks
    let fresh = live.clone();
    let st = live.chunk_stats();
    assert_eq!((st.sealed_chunks, st.sealed_unsettled_chunks), (9, 9));
    assert_eq!(live.unsettled_len(), 9);
    let (digest, snapshot) = (live.digest(), live.encode_snapshot());

    // Settled off the view in two rounds, with a change between taking and installing.
    let first = live.unsettled_chunks(4);
    assert_eq!((first.len(), live.unsettled_len()), (4, 5));
    let mut late = SampleBatch::new();
    late.push(labels(&[("__name__", "m"), ("i", "0")]), 5, 9.0); // into series 0's first chunk
    let mut changed = live.clone();
    changed.apply_batch(&late);
    let settled: Vec<SettledChunk> = first.into_iter().map(UnsettledChunk::settle).collect();
    assert_eq!(
        changed.install_settled(settled.clone()),
        3,
        "the rewritten chunk is left"
    );
    assert_eq!(live.install_settled(settled.clone()), 4);
    assert_eq!(live.install_settled(settled), 0, "settled already");
    let rest: Vec<SettledChunk> = live
        .unsettled_chunks(100)
        .into_iter()
        .map(UnsettledChunk::settle)
        .collect();
    assert_eq!((rest.len(), live.install_settled(rest)), (5, 5));
    assert_eq!(live.chunk_stats().sealed_unsettled_chunks, 0);
    assert_eq!(live.chunk_stats().sealed_columns_chunks, 9);
    assert!(live.chunk_stats().sealed_bytes < st.sealed_bytes);

    // Not state: same digest and snapshot bytes, settled or not.
    assert_eq!(live.digest(), digest);
    assert_eq!(live.encode_snapshot(), snapshot);
    let mut all = fresh.clone();
    assert_eq!(all.settle_all(), 9);
    assert_eq!(
        (all.digest(), all.encode_snapshot()),
        (digest, snapshot.clone())
    );
    // A restored view holds them settled.
    let back = Tsdb::decode_snapshot(&snapshot, None).unwrap();
    assert_eq!(back.chunk_stats().sealed_unsettled_chunks, 0);

    // Retention by bytes sees settled sizes, so it drops the same however far settling got.
    let keep = Retention {
        time_ms: 0,
        bytes: (live.chunk_stats().sealed_bytes as usize) * 2 / 3,
    };
    let mut unsettled = fresh.clone();
    let now = 60 * 60_000;
    let dropped = live.enforce_retention(now, &keep);
    assert!(dropped > 0);
    assert_eq!(unsettled.enforce_retention(now, &keep), dropped);
    assert_eq!(unsettled.digest(), live.digest());
    // Also while a settler holds some chunks it took (unlisted, not yet settled).
    let mut midway = fresh.clone();
    let taken = midway.unsettled_chunks(5);
    assert_eq!(midway.enforce_retention(now, &keep), dropped);
    assert_eq!(midway.digest(), live.digest());
    let settled: Vec<SettledChunk> = taken.into_iter().map(UnsettledChunk::settle).collect();
    midway.install_settled(settled);
    assert_eq!(midway.encode_snapshot(), live.encode_snapshot());
}

#[test]
fn sealing_beyond_the_unsettled_bound_settles_at_once() {
    let n = crate::UNSETTLED_CHUNKS_MAX + 10;
    let mut db = Tsdb::new();
    for t in 0..120 {
        let mut batch = SampleBatch::new();
        for k in 0..n {
            batch.push(labels(&[("__name__", "m"), ("i", &k.to_string())]), t, 1.0);
        }
        db.apply_batch(&batch);
    }
    let st = db.chunk_stats();
    assert_eq!(st.sealed_chunks, n as u64);
    assert_eq!(
        st.sealed_unsettled_chunks,
        crate::UNSETTLED_CHUNKS_MAX as u64
    );
    assert_eq!(db.unsettled_len(), crate::UNSETTLED_CHUNKS_MAX);
}

#[test]
fn offloaded_chunks_answer_the_same_and_snapshots_refer_to_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = series_over(5, 120); // 720 samples each: 6 sealed chunks, empty open chunk
                                      // Chunks go to files settled only.
    assert_eq!(db.chunks_to_offload(i64::MAX, usize::MAX).len(), 0);
    assert_eq!(db.settle_all(), 5 * 6);
    let before = (db.digest(), db.sample_bytes());
    let query = |db: &Tsdb| {
        crate::promql::to_prometheus_data(
            &crate::promql::range_query(db, "sum(rate(m[5m]))", 600_000, 7_000_000, 60_000)
                .unwrap(),
        )
    };
    let answer = query(&db);

    // Everything older than minute 100 moves to one chunk file.
    let items = db.chunks_to_offload(100 * 60_000, usize::MAX);
    assert_eq!(items.len(), 5 * 5);
    let mut w = crate::chunk_file::ChunkFileWriter::new(7);
    let offsets: Vec<usize> = items.iter().map(|it| w.push(it.bytes())).collect();
    let file = w.finish(dir.path()).unwrap();
    assert_eq!(db.install_offloaded(&items, &offsets, &file), 25);
    assert_eq!(db.chunks_to_offload(100 * 60_000, usize::MAX).len(), 0);
    assert_eq!(db.digest(), before.0, "where bytes live is not state");
    let moved: usize = items.iter().map(|it| it.bytes().len()).sum();
    assert_eq!(
        db.sample_bytes(),
        before.1 - moved,
        "the moved bytes left the heap"
    );
    assert_eq!(query(&db), answer);
    assert_eq!(db.chunk_files().into_iter().collect::<Vec<_>>(), [7]);

    // A chunk that changed after it was copied out is not swapped.
    let mut other = series_over(1, 40);
    other.settle_all();
    let stale = other.chunks_to_offload(i64::MAX, usize::MAX);
    let mut late = SampleBatch::new();
    late.push(labels(&[("__name__", "m"), ("i", "0")]), 5, 9.0);
    other.apply_batch(&late);
    let mut w2 = crate::chunk_file::ChunkFileWriter::new(8);
    let offsets2: Vec<usize> = stale.iter().map(|it| w2.push(it.bytes())).collect();
    let file2 = w2.finish(dir.path()).unwrap();
    assert_eq!(
        other.install_offloaded(&stale, &offsets2, &file2),
        1,
        "only the unchanged chunk"
    );
    // Bytes that are not the chunk's (a wrong offset) are never swapped in.
    let fresh = other.chunks_to_offload(i64::MAX, usize::MAX);
    assert_eq!(
        other.install_offloaded(&fresh, &vec![8; fresh.len()], &file2),
        0
    );

    // The snapshot names the file instead of copying the chunks, and loads from it.
    let snap = db.encode_snapshot();
    assert!(snap.len() < 5 * 120 * 16, "{} bytes", snap.len());
    let back = Tsdb::decode_snapshot(&snap, Some(dir.path())).unwrap();
    assert_eq!(back.digest(), db.digest());
    assert_eq!(query(&back), answer);
    drop(back);
    let err = |snap: &[u8]| {
        Tsdb::decode_snapshot(snap, Some(dir.path()))
            .unwrap_err()
            .to_string()
    };
    expect![
        "series 0, chunk 0: the snapshot refers to chunk files but no chunk directory was given"
    ]
    .assert_eq(&Tsdb::decode_snapshot(&snap, None).unwrap_err().to_string());
    // A flipped byte in the chunk file is caught by the chunk's CRC.
    let path = crate::chunk_file::chunk_file_path(dir.path(), 7);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[crate::chunk_file::CHUNK_FILE_MAGIC.len() + 2] ^= 1;
    drop(file);
    drop(db);
    std::fs::write(&path, &bytes).unwrap();
    expect!["series 0, chunk 0: CRC mismatch in chunk file 7"].assert_eq(&err(&snap));
    std::fs::remove_file(&path).unwrap();
    assert!(
        err(&snap).contains("chunk file 7: No such file"),
        "{}",
        err(&snap)
    );
}
