//! Deterministic crash simulation of the ledger's storage (after TigerBeetle's VOPR and
//! FoundationDB's simulator).
//!
//! Each seed drives a run on [`SimStorage`]: random blocks are appended, checkpoints
//! persisted, and the process "crashes" at a random storage step (the failing write may
//! land in part), after which the disk loses unsynced bytes, keeps a random prefix of
//! them and may zero or scramble part of that prefix. After every recovery it checks:
//! - every acknowledged entry is present, byte for byte, at its index;
//! - nothing unacknowledged is half-present: past the acknowledged entries there is
//!   either nothing or exactly the whole block whose append was cut;
//! - the tree root equals a root recomputed independently from the entries, and the
//!   persisted checkpoint and the last block's checkpoint match the tree;
//! - a full audit (canonical entries, every signature) passes.
//!
//! Runs also pack sealed segments now and then (`assay_ledger::pack`), so crashes land
//! in the middle of packing too, and entries are read back from packs.
//!
//! `ASSAY_SIM_SEEDS=N` sets how many seeds run (default 1000; CI), `ASSAY_SIM_SEED=S`
//! replays one seed. Millions of seeds:
//! `ASSAY_SIM_SEEDS=1000000 cargo test --release -p assay-ledger --test crash_simulation`.

use assay_ledger::ledger::{Ledger, LedgerConfig, LedgerError};
use assay_ledger::merkle::{leaf_hash, MerkleTree};
use assay_ledger::note::{open_checkpoint, Signer};
use assay_ledger::pack::PackOptions;
use assay_ledger::scan::{scan, ScanChecks};
use assay_ledger::storage::{SimRng, SimStorage};
use assay_ledger::{Entry, Labels, SampleBatch};

fn random_entry(rng: &mut SimRng) -> Vec<u8> {
    let mut batch = SampleBatch::new();
    let n = 1 + rng.below(8);
    for _ in 0..n {
        let host = format!("h{}", rng.below(4));
        let labels = Labels::new(vec![
            ("__name__".into(), "load".into()),
            ("host".into(), host),
        ])
        .unwrap();
        batch.push(
            labels,
            1_700_000_000_000 + rng.below(1_000_000) as i64,
            rng.below(1000) as f64 / 8.0,
        );
    }
    Entry::Samples(batch).encode()
}

struct Run {
    rng: SimRng,
    signer: Signer,
    config: LedgerConfig,
    /// Acknowledged entries, by index.
    acked: Vec<Vec<u8>>,
    /// The block whose append failed at the crash, if any.
    in_flight: Option<Vec<Vec<u8>>>,
    /// Recoveries that truncated a torn tail.
    torn: u64,
    /// Recoveries that found a cut block whole on disk.
    whole: u64,
}

impl Run {
    fn new(seed: u64) -> Run {
        let mut rng = SimRng::new(seed);
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&seed.to_le_bytes());
        let config = LedgerConfig {
            segment_bytes_max: 200 + rng.below(3000),
            block_entries_max: 1 + rng.below(6) as usize,
            block_bytes_max: 1 << 20,
        };
        Run {
            rng,
            signer: Signer::from_seed("sim.assay/ledger", key).unwrap(),
            config,
            acked: vec![],
            in_flight: None,
            torn: 0,
            whole: 0,
        }
    }

    fn go(&mut self) -> Result<(), String> {
        let mut disk = SimStorage::new();
        let lives = 1 + self.rng.below(4);
        for _ in 0..lives {
            let crash_in = self.rng.below(30);
            disk.fail_at(Some(disk.ops() + crash_in));
            match Ledger::open(disk.clone(), self.signer.clone(), self.config.clone()) {
                Ok((mut ledger, recovery)) => {
                    self.torn += recovery.truncated.is_some() as u64;
                    self.check(&ledger)?;
                    self.work(&mut ledger)?;
                }
                // The crash hit recovery itself (its truncation or header write).
                Err(LedgerError::Io(_)) => {}
                Err(e) => return Err(format!("recovery failed: {e}")),
            }
            disk = disk.crash(&mut self.rng);
        }
        let (ledger, _) = Ledger::open(disk, self.signer.clone(), self.config.clone())
            .map_err(|e| format!("final recovery failed: {e}"))?;
        self.check(&ledger)?;
        let v = self.signer.verifier();
        let checks = ScanChecks {
            decode_entries: true,
            signatures: Some(&v),
        };
        scan(ledger.storage(), self.signer.name(), checks)
            .map_err(|e| format!("audit failed: {e}"))?;
        Ok(())
    }

    /// Appends blocks and persists checkpoints until the simulated crash.
    fn work(&mut self, ledger: &mut Ledger<SimStorage>) -> Result<(), String> {
        for _ in 0..12 {
            if self.rng.chance(1, 8) {
                // Packing rewrites sealed segments; a crash may cut it between writing the
                // pack and removing the raw segment.
                let options = PackOptions {
                    frame_bytes: 1 + self.rng.below(2000) as usize,
                    level: 1,
                };
                match ledger.pack_sealed_segments(&options) {
                    Ok(_) => {}
                    Err(LedgerError::Io(_)) => return Ok(()),
                    Err(e) => return Err(format!("packing failed: {e}")),
                }
                continue;
            }
            if self.rng.chance(1, 6) {
                if ledger.persist_checkpoint().is_err() {
                    return Ok(());
                }
                continue;
            }
            let n = 1 + self.rng.below(self.config.block_entries_max as u64) as usize;
            let entries: Vec<Vec<u8>> = (0..n).map(|_| random_entry(&mut self.rng)).collect();
            let refs: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
            match ledger.append_block(1_700_000_000_000 + self.rng.below(5000) as i64, &refs) {
                Ok(b) => {
                    if b.header.first_index != self.acked.len() as u64 {
                        return Err(format!(
                            "block starts at {} after {} acked",
                            b.header.first_index,
                            self.acked.len()
                        ));
                    }
                    self.acked.extend(entries);
                }
                Err(_) => {
                    self.in_flight = Some(entries);
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    fn check(&mut self, ledger: &Ledger<SimStorage>) -> Result<(), String> {
        let size = ledger.size() as usize;
        if size < self.acked.len() {
            return Err(format!(
                "{} entries acknowledged but only {size} recovered",
                self.acked.len()
            ));
        }
        for (i, want) in self.acked.iter().enumerate() {
            let got = ledger
                .entry(i as u64)
                .map_err(|e| format!("entry {i}: {e}"))?;
            if &got != want {
                return Err(format!("acknowledged entry {i} changed"));
            }
        }
        if size > self.acked.len() {
            let block = self.in_flight.take().ok_or(format!(
                "{} entries appeared from nowhere",
                size - self.acked.len()
            ))?;
            if size != self.acked.len() + block.len() {
                return Err(format!(
                    "half a block is present: {} of {} entries",
                    size - self.acked.len(),
                    block.len()
                ));
            }
            for (k, want) in block.iter().enumerate() {
                let got = ledger
                    .entry((self.acked.len() + k) as u64)
                    .map_err(|e| e.to_string())?;
                if &got != want {
                    return Err(format!(
                        "unacknowledged entry {} differs from what was written",
                        self.acked.len() + k
                    ));
                }
            }
            // It reached the disk whole: it is part of the ledger now.
            self.acked.extend(block);
            self.whole += 1;
        }
        self.in_flight = None;
        let mut fresh = MerkleTree::new();
        for e in &self.acked {
            fresh.push(leaf_hash(e));
        }
        if fresh.root() != ledger.tree().root() {
            return Err("tree root differs from the root of the acknowledged entries".into());
        }
        let cp = ledger.checkpoint();
        let opened = open_checkpoint(&cp.note, &self.signer.verifier())
            .map_err(|e| format!("checkpoint note: {e}"))?;
        if opened.size != size as u64 || opened.root != fresh.root() {
            return Err("the last checkpoint does not match the tree".into());
        }
        Ok(())
    }
}

fn seeds() -> Vec<u64> {
    if let Ok(s) = std::env::var("ASSAY_SIM_SEED") {
        return vec![s.parse().expect("ASSAY_SIM_SEED is a number")];
    }
    let n: u64 = std::env::var("ASSAY_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let start: u64 = std::env::var("ASSAY_SIM_SEED_START")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (start..start + n).collect()
}

#[test]
fn crash_simulation() {
    let seeds = seeds();
    let (mut appended, mut torn, mut whole) = (0usize, 0u64, 0u64);
    for &seed in &seeds {
        let outcome = std::panic::catch_unwind(|| {
            let mut run = Run::new(seed);
            run.go().map(|()| (run.acked.len(), run.torn, run.whole))
        });
        match outcome {
            Ok(Ok((n, t, w))) => {
                appended += n;
                torn += t;
                whole += w;
            }
            Ok(Err(msg)) => panic!("seed {seed} failed: {msg}\nreplay: ASSAY_SIM_SEED={seed} cargo test -p assay-ledger --test crash_simulation"),
            Err(_) => panic!("seed {seed} panicked\nreplay: ASSAY_SIM_SEED={seed} cargo test -p assay-ledger --test crash_simulation"),
        }
    }
    // The simulation must actually exercise the ledger, not crash before every write.
    assert!(
        appended > seeds.len(),
        "only {appended} entries over {} seeds",
        seeds.len()
    );
    if seeds.len() >= 100 {
        assert!(
            torn > 0 && whole > 0,
            "faults not exercised: {torn} torn tails, {whole} whole cut blocks"
        );
    }
    eprintln!(
        "crash simulation: {} seeds, {appended} acknowledged entries all recovered, {torn} torn tails truncated, {whole} cut blocks found whole",
        seeds.len()
    );
}

#[test]
fn flipped_bit_is_named_by_the_audit() {
    let signer = Signer::from_seed("flip.assay/ledger", [9; 32]).unwrap();
    let config = LedgerConfig {
        segment_bytes_max: 1 << 20,
        block_entries_max: 4,
        block_bytes_max: 1 << 20,
    };
    let (mut ledger, _) = Ledger::open(SimStorage::new(), signer.clone(), config.clone()).unwrap();
    let mut rng = SimRng::new(1);
    for _ in 0..10 {
        let entries: Vec<Vec<u8>> = (0..3).map(|_| random_entry(&mut rng)).collect();
        let refs: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
        ledger.append_block(1, &refs).unwrap();
    }
    ledger.persist_checkpoint().unwrap();
    let loc_entry = 13u64;
    let offset = {
        let bytes = ledger.entry(loc_entry).unwrap();
        let all =
            assay_ledger::storage::Storage::read(ledger.storage(), "00000000000000000000.seg")
                .unwrap();
        all.windows(bytes.len())
            .position(|w| w == bytes.as_slice())
            .unwrap()
            + 5
    };
    let disk = ledger.into_storage();
    disk.flip_bit("00000000000000000000.seg", offset, 3);
    let v = signer.verifier();
    let err = scan(
        &disk,
        signer.name(),
        ScanChecks {
            decode_entries: true,
            signatures: Some(&v),
        },
    )
    .err()
    .unwrap();
    let msg = err.to_string();
    assert!(msg.contains("(entry 13, block 4)"), "{msg}");
    assert!(msg.contains("checksum"), "{msg}");
    // Startup refuses the same damage.
    assert!(Ledger::open(disk, signer, config).is_err());
}

fn ledger_with(
    blocks: usize,
    segment_bytes_max: u64,
) -> (Ledger<SimStorage>, Signer, LedgerConfig) {
    let signer = Signer::from_seed("cut.assay/ledger", [5; 32]).unwrap();
    let config = LedgerConfig {
        segment_bytes_max,
        block_entries_max: 4,
        block_bytes_max: 1 << 20,
    };
    let (mut ledger, _) = Ledger::open(SimStorage::new(), signer.clone(), config.clone()).unwrap();
    let mut rng = SimRng::new(2);
    for _ in 0..blocks {
        let entries: Vec<Vec<u8>> = (0..2).map(|_| random_entry(&mut rng)).collect();
        let refs: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
        ledger.append_block(1, &refs).unwrap();
    }
    (ledger, signer, config)
}

#[test]
fn a_cut_segment_is_refused_once_a_checkpoint_vouched_for_it() {
    let (mut ledger, signer, config) = ledger_with(10, 1 << 20);
    ledger.persist_checkpoint().unwrap();
    let disk = ledger.into_storage();
    let name = "00000000000000000000.seg";
    let len = disk.len(name).unwrap();
    let mut cut = disk.clone();
    assay_ledger::storage::Storage::truncate(&mut cut, name, (len / 2) as u64).unwrap();
    let err = Ledger::open(cut, signer, config)
        .err()
        .expect("a cut ledger must not open")
        .to_string();
    assert!(
        err.contains("persisted checkpoint covers 20 entries"),
        "{err}"
    );
}

#[test]
fn damage_in_an_older_segment_is_corruption_not_a_torn_tail() {
    let (ledger, signer, config) = ledger_with(12, 600);
    let disk = ledger.into_storage();
    let segments: Vec<String> = assay_ledger::storage::Storage::list(&disk).unwrap();
    assert!(segments.len() >= 3, "{segments:?}");
    // Bit rot in the first segment's last byte (inside its last seal).
    let len = disk.len(&segments[0]).unwrap();
    disk.flip_bit(&segments[0], len - 1, 0);
    let err = Ledger::open(disk, signer, config)
        .err()
        .expect("damage must stop the node")
        .to_string();
    assert!(
        err.contains(&segments[0]) && err.contains("checksum"),
        "{err}"
    );
}
