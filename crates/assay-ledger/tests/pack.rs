//! Packed segments: same entries, same proofs, far fewer bytes; damage is named; a crash
//! between writing a pack and removing its raw segment loses nothing.

use assay_ledger::ledger::{Ledger, LedgerConfig};
use assay_ledger::pack::{
    pack_name, pack_segment, read_dict, read_index, read_section, unpack_all, unpack_frame,
    PackError, PackOptions,
};
use assay_ledger::scan::{scan, ScanChecks};
use assay_ledger::storage::{SimRng, SimStorage, Storage};
use assay_ledger::{Entry, Labels, MetricMetadata, MetricType, SampleBatch, SeriesRef};

fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::new(
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
    )
    .unwrap()
}

/// One scrape of `hosts` × 20 series at time `t`, as a remote-write request carries it;
/// `by_reference`: most series given by reference to entry 0 (the first such scrape), as a
/// node writes series it knows.
fn scrape(hosts: u32, round: i64, rng: &mut SimRng, by_reference: bool) -> Vec<u8> {
    let mut b = SampleBatch::new();
    for h in 0..hosts {
        for m in 0..20 {
            let l = labels(&[
                ("__name__", "node_cpu_seconds_total"),
                ("cpu", &m.to_string()),
                ("instance", &format!("host-{h}:9100")),
                ("job", "node"),
                ("mode", "user"),
            ]);
            let v = (round * 1000 + rng.below(900) as i64) as f64 / 100.0;
            b.push(l, 1_700_000_000_000 + round * 15_000, v);
        }
    }
    if by_reference {
        let refs = (0..b.series().len() as u32)
            .map(|position| (position % 7 != 3).then_some(SeriesRef { entry: 0, position }))
            .collect();
        b.set_series_refs(refs);
    }
    Entry::Samples(b).encode()
}

fn other_entries(rng: &mut SimRng) -> Vec<Vec<u8>> {
    let mut report = SampleBatch::new();
    report.push(
        labels(&[("__name__", "ci_tests_failed"), ("pipeline", "web")]),
        1_700_000_000_000,
        rng.below(5) as f64,
    );
    // Values a decimal coding must keep bit for bit.
    let mut odd = SampleBatch::new();
    for (i, v) in [f64::NAN, -0.0, f64::INFINITY, 1e300, 5e-324, 0.1 + 0.2]
        .into_iter()
        .enumerate()
    {
        odd.push(labels(&[("__name__", "odd")]), i as i64 - 3, v);
    }
    odd.push(
        labels(&[("__name__", "odd")]),
        9,
        f64::from_bits(0x7ff0_0000_0000_0002),
    );
    vec![
        Entry::CiReport {
            report_sha256: [7; 32],
            batch: report,
        }
        .encode(),
        Entry::metadata(vec![MetricMetadata {
            metric: "node_cpu_seconds_total".into(),
            kind: MetricType::Counter,
            help: "Seconds the CPUs spent in each mode.".into(),
            unit: String::new(),
        }])
        .encode(),
        Entry::Samples(odd).encode(),
    ]
}

fn ledger(segment_bytes_max: u64) -> (Ledger<SimStorage>, Vec<Vec<u8>>, LedgerConfig) {
    let signer = assay_ledger::note::Signer::from_seed("pack.assay/ledger", [3; 32]).unwrap();
    let config = LedgerConfig {
        segment_bytes_max,
        block_entries_max: 8,
        block_bytes_max: 1 << 20,
    };
    let (mut l, _) = Ledger::open(SimStorage::new(), signer, config.clone()).unwrap();
    let mut rng = SimRng::new(11);
    let mut all = Vec::new();
    for round in 0..120 {
        let mut block = vec![
            scrape(25, round, &mut rng, round > 0),
            scrape(25, round, &mut rng, false),
        ];
        if round % 10 == 0 {
            block.extend(other_entries(&mut rng));
        }
        let refs: Vec<&[u8]> = block.iter().map(Vec::as_slice).collect();
        l.append_block(1_700_000_000_000 + round * 15_000, &refs)
            .unwrap();
        all.extend(block);
    }
    (l, all, config)
}

fn raw_bytes(disk: &SimStorage, suffix: &str) -> usize {
    disk.list()
        .unwrap()
        .iter()
        .filter(|n| n.ends_with(suffix))
        .map(|n| disk.len(n).unwrap())
        .sum()
}

#[test]
fn packed_segments_serve_the_same_entries_and_proofs_in_a_fraction_of_the_bytes() {
    let (mut l, all, config) = ledger(256 << 10);
    let samples: usize = all.iter().map(|e| Entry::validate(e).unwrap()).sum();
    let root = l.tree().root();
    let proof = l.inclusion_proof(17, l.size()).unwrap();
    let sealed = l.unpacked_segments();
    assert!(sealed.len() >= 3, "{sealed:?}");
    let raw_before = raw_bytes(l.storage(), ".seg");
    let packed = l.pack_sealed_segments(&PackOptions::default()).unwrap();
    assert_eq!(packed, sealed.len());
    assert!(l.unpacked_segments().is_empty());
    // The same bytes from the packs, in any order of reads.
    for i in (0..all.len()).rev().step_by(7).chain(0..all.len()) {
        assert_eq!(l.entry(i as u64).unwrap(), all[i], "entry {i}");
    }
    assert_eq!(l.inclusion_proof(17, l.size()).unwrap(), proof);
    let disk = l.storage().clone();
    let pack_bytes = raw_bytes(&disk, ".pack");
    let raw_left = raw_bytes(&disk, ".seg");
    let packed_raw = raw_before - raw_left;
    let per_sample = pack_bytes as f64 / (samples as f64 * packed_raw as f64 / raw_before as f64);
    eprintln!(
        "packed {packed_raw} raw bytes into {pack_bytes} ({:.1}×), ≈{per_sample:.2} B/sample",
        packed_raw as f64 / pack_bytes as f64
    );
    assert!(
        pack_bytes * 10 < packed_raw,
        "packing saved too little: {packed_raw} → {pack_bytes}"
    );
    // A restart reads the packs back; the audit decodes every entry and checks signatures.
    let signer = l.signer().clone();
    drop(l);
    let (l, rec) = Ledger::open(disk.clone(), signer.clone(), config).unwrap();
    assert_eq!((rec.entries, l.tree().root()), (all.len() as u64, root));
    assert_eq!(l.entry(3).unwrap(), all[3]);
    let v = signer.verifier();
    let scanned = scan(
        &disk,
        signer.name(),
        ScanChecks {
            decode_entries: true,
            signatures: Some(&v),
        },
    )
    .unwrap();
    // An audit reads the entries back from the scan alone (packs included), as the ledger.
    let entries = assay_ledger::ScannedEntries::new(&disk, &scanned);
    assert_eq!(entries.len(), all.len() as u64);
    for i in (0..all.len()).rev() {
        assert_eq!(entries.entry(i as u64).unwrap(), all[i], "entry {i}");
    }
}

#[test]
fn a_damaged_pack_is_named_and_stops_the_node() {
    let (mut l, _, config) = ledger(256 << 10);
    l.pack_sealed_segments(&PackOptions::default()).unwrap();
    let signer = l.signer().clone();
    let disk = l.into_storage();
    let name = pack_name(1);
    let len = disk.len(&name).unwrap();
    for at in [12, len / 2, len - 20, len - 1] {
        let bad = disk.crash(&mut SimRng::new(0));
        bad.flip_bit(&name, at, 2);
        let err = Ledger::open(bad, signer.clone(), config.clone())
            .err()
            .expect("a damaged pack must not open")
            .to_string();
        assert!(err.contains(&name), "byte {at}: {err}");
    }
}

#[test]
fn a_pack_whose_raw_segment_survived_a_crash_is_dropped() {
    let (l, all, config) = ledger(256 << 10);
    let signer = l.signer().clone();
    let raw = l.segment_bytes(0).unwrap();
    let mut disk = l.into_storage();
    // The crash came after the pack was written, before the raw segment was removed.
    disk.write_atomic(
        &pack_name(0),
        &pack_segment(&raw, &PackOptions::default()).unwrap(),
    )
    .unwrap();
    let (l, _) = Ledger::open(disk.clone(), signer, config).unwrap();
    assert!(disk.len(&pack_name(0)).is_none(), "stale pack kept");
    assert_eq!(l.entry(0).unwrap(), all[0]);
    assert_eq!(l.unpacked_segments()[0], 0);
}

#[test]
fn a_pack_staged_off_the_ledger_installs_by_rename_and_a_crash_before_leaves_the_raw_segment() {
    let (mut l, all, config) = ledger(256 << 10);
    let signer = l.signer().clone();
    let pack = pack_segment(&l.segment_bytes(0).unwrap(), &PackOptions::default()).unwrap();
    let stager = l.pack_stager();
    // A staged pack is ignored by an open (a crash before the rename).
    stager.stage(&pack_name(0), &pack).unwrap();
    let disk = l.storage().clone();
    let (reopened, _) = Ledger::open(disk.clone(), signer.clone(), config.clone()).unwrap();
    assert_eq!(reopened.unpacked_segments()[0], 0);
    assert_eq!(reopened.entry(0).unwrap(), all[0]);
    drop(reopened);
    // Committed: the ledger reads the pack, the raw file and the staged copy are gone.
    let ops = disk.ops();
    let raw = l.install_staged_pack(0, &pack).unwrap();
    assert_eq!(disk.ops() - ops, 1, "only a rename under the lock");
    assert_eq!(raw, "00000000000000000000.seg");
    assert_eq!(l.entry(0).unwrap(), all[0], "read from the pack");
    // Until the raw file is removed (as after a crash before), an open keeps the raw one.
    let image = disk.crash(&mut SimRng::new(1));
    assert!(image.len(&raw).is_some() && image.len(&pack_name(0)).is_some());
    let (reopened, _) = Ledger::open(image, signer.clone(), config.clone()).unwrap();
    assert_eq!(reopened.unpacked_segments()[0], 0);
    assert_eq!(reopened.entry(0).unwrap(), all[0]);
    drop(reopened);
    stager.remove(&raw).unwrap();
    assert_eq!(disk.len(&pack_name(0)), Some(pack.len()));
    let names = disk.list().unwrap();
    assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");
    assert!(
        !names.contains(&"00000000000000000000.seg".to_string()),
        "{names:?}"
    );
    for (i, e) in all.iter().enumerate().take(40) {
        assert_eq!(&l.entry(i as u64).unwrap(), e);
    }
    // Nothing staged for the next segment: the install fails and the raw one stays.
    let seq = l.unpacked_segments()[0];
    let next = pack_segment(&l.segment_bytes(seq).unwrap(), &PackOptions::default()).unwrap();
    assert!(l.install_staged_pack(seq, &next).is_err());
    let (l, _) = Ledger::open(disk, signer, config).unwrap();
    assert_eq!(l.unpacked_segments()[0], seq);
    assert_eq!(l.entry(0).unwrap(), all[0]);
}

#[test]
fn only_whole_sealed_blocks_pack() {
    let (l, _, _) = ledger(256 << 10);
    let raw = l.segment_bytes(0).unwrap();
    let err = pack_segment(&raw[..raw.len() - 1], &PackOptions::default()).unwrap_err();
    assert!(
        matches!(&err, PackError::Unpackable(m) if m.contains("cut short")),
        "{err}"
    );
    let last = l.storage().list().unwrap().last().cloned().unwrap();
    let err = l
        .segment_bytes(l.unpacked_segments().len() as u64)
        .unwrap_err();
    assert!(
        err.to_string().contains("not a sealed raw segment"),
        "{err} ({last})"
    );
}

/// Frame bodies are behind a CRC, but the decoder must not trust them anyway: any byte
/// string gives an error or some records, never a panic or a huge allocation.
#[test]
fn mangled_frame_bodies_never_panic() {
    let (l, _, _) = ledger(256 << 10);
    let raw = l.segment_bytes(0).unwrap();
    let pack = pack_segment(
        &raw,
        &PackOptions {
            frame_bytes: 4096,
            level: 1,
        },
    )
    .unwrap();
    assert_eq!(unpack_all(&pack).unwrap(), &raw[..]);
    let index = read_index(&pack).unwrap();
    assert!(index.frames.len() >= 2, "{}", index.frames.len());
    let dict = read_dict(&read_section(&pack, &index.dict, "dict").unwrap()).unwrap();
    let frame = index.frames[1];
    let body = read_section(&pack, &frame.section, "frame").unwrap();
    let mut rng = SimRng::new(5);
    let mut errors = 0;
    for _ in 0..3000 {
        let mut b = body.clone();
        match rng.below(3) {
            0 => {
                let at = rng.below(b.len() as u64) as usize;
                b[at] = rng.next_u64() as u8;
            }
            1 => b.truncate(rng.below(b.len() as u64) as usize),
            _ => {
                let at = rng.below(b.len() as u64) as usize;
                b.insert(at, rng.next_u64() as u8);
            }
        }
        errors += unpack_frame(&b, &dict, &frame).is_err() as usize;
    }
    assert!(
        errors > 2000,
        "only {errors} of 3000 mangled frames were refused"
    );
}

#[test]
fn an_ended_segment_packs_and_appends_continue_in_the_next() {
    let (mut l, mut all, config) = ledger(256 << 10);
    assert!(
        !l.end_segment(u64::MAX).unwrap(),
        "ended below its minimum size"
    );
    assert!(l.end_segment(0).unwrap());
    assert!(!l.end_segment(0).unwrap(), "an empty segment was ended");
    l.pack_sealed_segments(&PackOptions::default()).unwrap();
    let disk = l.storage().clone();
    let raw: Vec<String> = disk
        .list()
        .unwrap()
        .into_iter()
        .filter(|n| n.ends_with(".seg"))
        .collect();
    assert_eq!(raw.len(), 1, "{raw:?}");
    assert!(
        disk.len(&raw[0]).unwrap() < 64,
        "the new segment holds only its header"
    );
    let signer = l.signer().clone();
    drop(l);
    let (mut l, _) = Ledger::open(disk, signer, config).unwrap();
    let e = scrape(3, 500, &mut SimRng::new(1), false);
    l.append_block(1_800_000_000_000, &[&e]).unwrap();
    all.push(e);
    for (i, want) in all.iter().enumerate() {
        assert_eq!(&l.entry(i as u64).unwrap(), want, "entry {i}");
    }
}
