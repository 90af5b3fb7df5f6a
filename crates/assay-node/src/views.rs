//! Views: state derived from the ledger alone (today the time-series view).
//!
//! Invariant: [`Views::apply_block`] is a pure function of the view state and the block
//! (its header and decoded entries): no clock, no randomness, no I/O. Two nodes that
//! apply the same blocks hold the same state, which [`Views::digest`] shows.
//!
//! Snapshots only make restarts fast. A snapshot names the block it was taken after
//! (height and hash); it is used only when the ledger holds that very block, and is
//! otherwise discarded and the views are rebuilt by replaying the ledger.

use assay_ledger::merkle::Hash;
use assay_ledger::scan::BlockSummary;
use assay_ledger::storage::Storage;
use assay_ledger::{Entry, Ledger, LedgerError, SeriesResolver};
use assay_tsdb::Tsdb;
use sha2::{Digest, Sha256};
use std::path::Path;

const SNAPSHOT_MAGIC: &[u8; 8] = b"ASSAYVW2";
/// Retention runs when a block's time enters a new period of this length.
const RETENTION_PERIOD_MS: i64 = 60_000;
/// File name of the views snapshot inside the views directory.
pub const SNAPSHOT_FILE: &str = "views.snapshot";

/// Where the views keep chunk files (inside the views directory).
pub fn chunk_dir(views_dir: &Path) -> std::path::PathBuf {
    views_dir.join("chunks")
}

/// Moves the view's sealed chunks whose newest sample is older than `before_ms` into a new
/// chunk file (at most `bytes_max` per call), holding the views lock only to copy them out
/// and to swap them in. Returns how many chunks moved.
pub fn offload_chunks(
    views: &std::sync::RwLock<Views>,
    views_dir: &Path,
    next_file_id: &mut u64,
    before_ms: i64,
    bytes_max: usize,
) -> Result<usize, ViewError> {
    // Only settled chunks go to files; settle what waits rather than skip it.
    while settle_chunks(views) == SETTLE_BATCH_CHUNKS {}
    let items = views
        .read()
        .expect("views lock")
        .tsdb
        .chunks_to_offload(before_ms, bytes_max);
    if items.is_empty() {
        return Ok(0);
    }
    let mut writer = assay_tsdb::chunk_file::ChunkFileWriter::new(*next_file_id);
    *next_file_id += 1;
    let offsets: Vec<usize> = items.iter().map(|it| writer.push(it.bytes())).collect();
    let file = writer.finish(&chunk_dir(views_dir))?;
    let moved = views
        .write()
        .expect("views lock")
        .tsdb
        .install_offloaded(&items, &offsets, &file);
    Ok(moved)
}

/// Chunks settled per round of [`settle_chunks`] (~12 ms of encoding at ~12 µs per chunk,
/// done without the lock; each round takes the views' write lock twice, briefly).
pub const SETTLE_BATCH_CHUNKS: usize = 1024;

/// Settles up to [`SETTLE_BATCH_CHUNKS`] chunks the views sealed (see
/// `Tsdb::unsettled_chunks`), holding the write lock only to take them and to put the
/// results in place. Returns how many were taken: fewer than the batch means none are
/// left.
pub fn settle_chunks(views: &std::sync::RwLock<Views>) -> usize {
    let taken = views
        .write()
        .expect("views lock")
        .tsdb
        .unsettled_chunks(SETTLE_BATCH_CHUNKS);
    let n = taken.len();
    if n > 0 {
        let settled: Vec<_> = taken.into_iter().map(|c| c.settle()).collect();
        views
            .write()
            .expect("views lock")
            .tsdb
            .install_settled(settled);
    }
    n
}

/// Everything queries read.
pub struct Views {
    /// The time-series view.
    pub tsdb: Tsdb,
    /// Blocks applied.
    pub height: u64,
    /// Entries applied.
    pub size: u64,
    /// Hash of the last block applied (zeros before the first).
    pub last_block_hash: Hash,
    /// Time of the last block applied (0 before the first): retention's clock.
    pub last_block_time_ms: i64,
    /// What the time-series view keeps; part of the view's definition (replicas agree on it).
    pub retention: assay_tsdb::Retention,
}

impl Default for Views {
    fn default() -> Self {
        Views {
            tsdb: Tsdb::new(),
            height: 0,
            size: 0,
            last_block_hash: [0; 32],
            last_block_time_ms: 0,
            retention: assay_tsdb::Retention::default(),
        }
    }
}

/// Why views could not be rebuilt.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    /// Reading the ledger failed.
    #[error("replaying the ledger: {0}")]
    Ledger(#[from] LedgerError),
    /// An entry in the ledger does not decode (the audit would also report it).
    #[error("entry {index} does not decode: {message}")]
    Entry {
        /// The entry's index.
        index: u64,
        /// The decoder's message.
        message: String,
    },
    /// Writing the snapshot failed.
    #[error("writing the views snapshot: {0}")]
    Io(#[from] std::io::Error),
}

impl Views {
    /// Empty views keeping what `retention` says.
    pub fn new(retention: assay_tsdb::Retention) -> Views {
        Views {
            retention,
            ..Views::default()
        }
    }

    /// Applies one block's entries, in order. Must be called for blocks in height order.
    pub fn apply_block<'a>(
        &mut self,
        block: &BlockSummary,
        entries: impl IntoIterator<Item = &'a Entry>,
    ) {
        self.apply_block_resolved(block, entries, &[]);
    }

    /// [`Views::apply_block`] given, per entry, the series ids admission found for it
    /// (`assay_tsdb::Admitted::resolved`; shorter or empty: none known).
    pub fn apply_block_resolved<'a>(
        &mut self,
        block: &BlockSummary,
        entries: impl IntoIterator<Item = &'a Entry>,
        resolved: &[Vec<Option<assay_tsdb::SeriesId>>],
    ) {
        assert_eq!(
            block.header.height, self.height,
            "blocks are applied in order"
        );
        assert_eq!(
            block.header.first_index, self.size,
            "blocks are applied without gaps"
        );
        let mut n = 0u64;
        for entry in entries {
            match entry {
                Entry::Metadata(records) => self.tsdb.apply_metadata(records),
                _ => {
                    let hints = resolved.get(n as usize).map_or(&[][..], |r| &r[..]);
                    let index = block.header.first_index + n;
                    self.tsdb.apply_entry_batch(entry.batch(), hints, index)
                }
            }
            n += 1;
        }
        assert_eq!(
            n, block.header.entry_count as u64,
            "every entry of the block is applied"
        );
        // Once per minute of block time, never by the wall clock: replicas drop the same.
        let t = block.header.time_ms;
        let period = |ms: i64| ms.div_euclid(RETENTION_PERIOD_MS);
        if period(t) > period(self.last_block_time_ms) {
            self.tsdb.enforce_retention(t, &self.retention);
        }
        self.height += 1;
        self.size += n;
        self.last_block_hash = block.hash;
        self.last_block_time_ms = self.last_block_time_ms.max(t);
    }

    /// Replays every block the views have not applied yet.
    pub fn catch_up<S: Storage>(&mut self, ledger: &Ledger<S>) -> Result<u64, ViewError> {
        let start = self.height;
        let total = ledger.height();
        let mut resolver = SeriesResolver::default();
        let read = |i: u64| ledger.entry(i).map_err(|e| e.to_string());
        let mut last_report = std::time::Instant::now();
        for block in &ledger.blocks()[start as usize..] {
            // Progress for long replays; the clock only paces log lines, never the apply.
            if last_report.elapsed() >= std::time::Duration::from_secs(5) {
                tracing::info!(
                    height = self.height,
                    of = total,
                    entries = self.size,
                    "replaying the ledger into the views"
                );
                last_report = std::time::Instant::now();
            }
            let mut entries = Vec::with_capacity(block.header.entry_count as usize);
            for (i, bytes) in ledger
                .block_entries(block.header.height)?
                .into_iter()
                .enumerate()
            {
                let index = block.header.first_index + i as u64;
                let e = resolver
                    .decode(&read, index, &bytes)
                    .map_err(|message| ViewError::Entry { index, message })?;
                entries.push(e);
            }
            self.apply_block(block, &entries);
        }
        Ok(self.height - start)
    }

    /// A digest of the whole view state and the position it was applied to.
    pub fn digest(&self) -> Hash {
        let mut h = Sha256::new();
        h.update(self.height.to_le_bytes());
        h.update(self.size.to_le_bytes());
        h.update(self.last_block_hash);
        h.update(self.last_block_time_ms.to_le_bytes());
        h.update(self.tsdb.digest());
        h.finalize().into()
    }

    /// Writes a snapshot atomically, then deletes chunk files it does not refer to.
    pub fn save_snapshot(&self, dir: &Path) -> Result<(), ViewError> {
        Views::write_snapshot(dir, &self.snapshot_bytes())?;
        assay_tsdb::chunk_file::remove_unreferenced(&chunk_dir(dir), &self.tsdb.chunk_files())?;
        Ok(())
    }

    /// The snapshot file's bytes: encoding needs the views, writing them does not, so a
    /// live node holds the views lock only for this part.
    pub fn snapshot_bytes(&self) -> Vec<u8> {
        let tsdb = self.tsdb.encode_snapshot();
        let mut out = Vec::with_capacity(tsdb.len() + 96);
        out.extend_from_slice(SNAPSHOT_MAGIC);
        out.extend_from_slice(&self.height.to_le_bytes());
        out.extend_from_slice(&self.size.to_le_bytes());
        out.extend_from_slice(&self.last_block_hash);
        out.extend_from_slice(&self.last_block_time_ms.to_le_bytes());
        out.extend_from_slice(&tsdb);
        let sum: [u8; 32] = Sha256::digest(&out).into();
        out.extend_from_slice(&sum);
        out
    }

    /// Replaces the snapshot file with `bytes` (from [`Views::snapshot_bytes`]) atomically.
    pub fn write_snapshot(dir: &Path, out: &[u8]) -> Result<(), ViewError> {
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join(format!("{SNAPSHOT_FILE}.tmp"));
        std::fs::write(&tmp, out)?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, dir.join(SNAPSHOT_FILE))?;
        std::fs::File::open(dir)?.sync_all()?;
        Ok(())
    }

    /// Loads the snapshot if it is intact and matches a block the ledger holds;
    /// otherwise says why not (the caller rebuilds).
    pub fn load_snapshot<S: Storage>(
        dir: &Path,
        ledger: &Ledger<S>,
        retention: assay_tsdb::Retention,
    ) -> Result<Views, String> {
        let bytes =
            std::fs::read(dir.join(SNAPSHOT_FILE)).map_err(|e| format!("no snapshot: {e}"))?;
        if bytes.len() < 8 + 8 + 8 + 32 + 8 + 32 || &bytes[..8] != SNAPSHOT_MAGIC {
            return Err("snapshot header is malformed".into());
        }
        let (body, sum) = bytes.split_at(bytes.len() - 32);
        if Sha256::digest(body).as_slice() != sum {
            return Err("snapshot checksum mismatch".into());
        }
        let height = u64::from_le_bytes(body[8..16].try_into().expect("8 bytes"));
        let size = u64::from_le_bytes(body[16..24].try_into().expect("8 bytes"));
        let hash: Hash = body[24..56].try_into().expect("32 bytes");
        let time = i64::from_le_bytes(body[56..64].try_into().expect("8 bytes"));
        let matches = match height {
            0 => size == 0,
            h => ledger
                .blocks()
                .get(h as usize - 1)
                .is_some_and(|b| b.hash == hash && b.header.tree_size == size),
        };
        if !matches {
            return Err(format!(
                "snapshot at height {height} does not match the ledger"
            ));
        }
        let chunks = chunk_dir(dir);
        let tsdb = Tsdb::decode_snapshot(&body[64..], Some(&chunks))
            .map_err(|e| format!("snapshot: {e}"))?;
        Ok(Views {
            tsdb,
            height,
            size,
            last_block_hash: hash,
            last_block_time_ms: time,
            retention,
        })
    }

    /// Views for `ledger`: from the snapshot when it matches, then caught up by replay.
    pub fn open<S: Storage>(
        dir: &Path,
        ledger: &Ledger<S>,
        retention: assay_tsdb::Retention,
    ) -> Result<Views, ViewError> {
        let mut views = match Views::load_snapshot(dir, ledger, retention) {
            Ok(v) => v,
            Err(why) => {
                if ledger.height() > 0 {
                    tracing::info!(reason = %why, "rebuilding views from the ledger");
                }
                Views::new(retention)
            }
        };
        let from = views.height;
        let replayed = views.catch_up(ledger)?;
        tracing::info!(
            snapshot_height = from,
            replayed_blocks = replayed,
            height = views.height,
            "views ready"
        );
        Ok(views)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use assay_ledger::note::Signer;
    use assay_ledger::storage::{SimRng, SimStorage};
    use assay_ledger::{Labels, LedgerConfig, SampleBatch};

    fn ledger_with_blocks(seed: u64, blocks: usize) -> Ledger<SimStorage> {
        ledger_with_timed_blocks(seed, blocks, 1)
    }

    /// Blocks `step_ms` apart; samples up to 50 s before their block's time.
    fn ledger_with_timed_blocks(seed: u64, blocks: usize, step_ms: i64) -> Ledger<SimStorage> {
        let signer = Signer::from_seed("test.assay/views", [3; 32]).unwrap();
        let (mut ledger, _) =
            Ledger::open(SimStorage::new(), signer, LedgerConfig::default()).unwrap();
        let mut rng = SimRng::new(seed);
        for b in 0..blocks {
            let entries: Vec<Vec<u8>> = (0..1 + rng.below(4))
                .map(|_| {
                    let mut batch = SampleBatch::new();
                    for _ in 0..1 + rng.below(20) {
                        let host = format!("h{}", rng.below(5));
                        let labels = Labels::new(vec![
                            ("__name__".into(), "m".into()),
                            ("host".into(), host),
                        ])
                        .unwrap();
                        // Out-of-order and repeated timestamps on purpose: apply must order them the same way.
                        let t = b as i64 * step_ms - 1_000 * rng.below(50) as i64;
                        batch.push(labels, t, rng.below(100) as f64);
                    }
                    Entry::Samples(batch).encode()
                })
                .collect();
            let refs: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
            ledger.append_block(b as i64 * step_ms, &refs).unwrap();
        }
        ledger
    }

    /// Applies the ledger's first `n` blocks to `views`, as a node that stopped there.
    fn apply_first(views: &mut Views, ledger: &Ledger<SimStorage>, n: usize) {
        let mut resolver = SeriesResolver::default();
        let read = |i: u64| ledger.entry(i).map_err(|e| e.to_string());
        for block in &ledger.blocks()[..n] {
            let first = block.header.first_index;
            let entries: Vec<Entry> = ledger
                .block_entries(block.header.height)
                .unwrap()
                .iter()
                .enumerate()
                .map(|(i, b)| resolver.decode(&read, first + i as u64, b).unwrap())
                .collect();
            views.apply_block(block, &entries);
        }
    }

    /// The samples of [`ledger_with_timed_blocks`] (same seed), appended as the sequencer
    /// writes them: a series the live views know an inline entry of goes by reference.
    /// Returns the ledger, the live views and how many entries hold references.
    fn ledger_by_reference(seed: u64, blocks: usize) -> (Ledger<SimStorage>, Views, usize) {
        let inline = ledger_with_blocks(seed, blocks);
        let signer = Signer::from_seed("test.assay/views", [3; 32]).unwrap();
        let (mut ledger, _) =
            Ledger::open(SimStorage::new(), signer, LedgerConfig::default()).unwrap();
        let mut live = Views::default();
        let mut with_refs = 0;
        for block in inline.blocks() {
            let mut entries: Vec<Entry> = inline
                .block_entries(block.header.height)
                .unwrap()
                .iter()
                .map(|b| Entry::decode(b).unwrap())
                .collect();
            for e in &mut entries {
                if let Entry::Samples(batch) = e {
                    let refs = batch
                        .series()
                        .iter()
                        .map(|l| live.tsdb.series_def_of(l))
                        .collect();
                    batch.set_series_refs(refs);
                    with_refs += usize::from(!batch.series_refs().is_empty());
                }
            }
            let bytes: Vec<Vec<u8>> = entries.iter().map(Entry::encode).collect();
            let refs: Vec<&[u8]> = bytes.iter().map(Vec::as_slice).collect();
            let summary = ledger.append_block(block.header.time_ms, &refs).unwrap();
            live.apply_block(&summary, &entries);
        }
        (ledger, live, with_refs)
    }

    #[test]
    fn series_given_by_reference_give_the_state_of_inline_series() {
        let (ledger, live, with_refs) = ledger_by_reference(7, 40);
        assert!(with_refs > 30, "{with_refs} entries hold references");
        let mut replayed = Views::default();
        replayed.catch_up(&ledger).unwrap();
        assert_eq!(replayed.digest(), live.digest());
        let mut inline = Views::default();
        inline.catch_up(&ledger_with_blocks(7, 40)).unwrap();
        assert_eq!(replayed.tsdb.digest(), inline.tsdb.digest());
        // The replay learns the same first inline appearances the live views did.
        let labels = Labels::new(vec![
            ("__name__".into(), "m".into()),
            ("host".into(), "h1".into()),
        ])
        .unwrap();
        let def = live.tsdb.series_def_of(&labels);
        assert!(def.is_some());
        assert_eq!(replayed.tsdb.series_def_of(&labels), def);
        // Resumed from a snapshot, which keeps no references: replaying the tail still
        // resolves the references into entries before the snapshot.
        let mut partial = Views::default();
        apply_first(&mut partial, &ledger, 20);
        let dir = tempfile::tempdir().unwrap();
        partial.save_snapshot(dir.path()).unwrap();
        let mut resumed = Views::load_snapshot(dir.path(), &ledger, Default::default()).unwrap();
        assert_eq!(resumed.tsdb.series_def_of(&labels), None);
        resumed.catch_up(&ledger).unwrap();
        assert_eq!(resumed.digest(), live.digest());
    }

    #[test]
    fn a_reference_to_a_later_entry_or_to_a_reference_stops_the_replay_naming_it() {
        let (ledger, _, _) = ledger_by_reference(7, 3);
        let last = ledger.size();
        let m = |host: &str| {
            Labels::new(vec![
                ("__name__".into(), "m".into()),
                ("host".into(), host.into()),
            ])
            .unwrap()
        };
        // Entry `last` refers to itself; then to a position of entry 0 it does not have.
        for (entry, position, why) in [
            (last, 0, "is not before it"),
            (0, 999, "does not list it inline"),
        ] {
            let (mut bad, _, _) = ledger_by_reference(7, 3);
            let mut batch = SampleBatch::new();
            batch.push(m("h9"), 5, 1.0);
            batch.set_series_refs(vec![Some(assay_ledger::SeriesRef { entry, position })]);
            let bytes = Entry::Samples(batch).encode();
            bad.append_block(10, &[&bytes]).unwrap();
            let mut v = Views::default();
            let err = v.catch_up(&bad).unwrap_err().to_string();
            assert!(
                err.contains(&format!("entry {last}")) && err.contains(why),
                "{err}"
            );
        }
    }

    #[test]
    fn applying_the_same_blocks_twice_gives_the_same_state() {
        let ledger = ledger_with_blocks(7, 40);
        let mut a = Views::default();
        a.catch_up(&ledger).unwrap();
        let mut b = Views::default();
        b.catch_up(&ledger).unwrap();
        assert_eq!(a.digest(), b.digest());
        assert_eq!(a.tsdb.digest(), b.tsdb.digest());
        assert!(a.tsdb.sample_count() > 0);

        // Different blocks give a different state: the digest can fail.
        let mut c = Views::default();
        c.catch_up(&ledger_with_blocks(8, 40)).unwrap();
        assert_ne!(a.digest(), c.digest());
    }

    #[test]
    fn retention_follows_block_time_and_resumes_from_a_snapshot_identically() {
        // 200 blocks 30 s apart (100 minutes), each series written ~5 times a minute.
        let ledger = ledger_with_timed_blocks(5, 200, 30_000);
        let retention = assay_tsdb::Retention {
            time_ms: 10 * 60_000,
            bytes: 0,
        };
        let replay = || {
            let mut v = Views::new(retention);
            v.catch_up(&ledger).unwrap();
            v
        };
        let (a, b) = (replay(), replay());
        assert_eq!(a.digest(), b.digest());
        let mut all = Views::default();
        all.catch_up(&ledger).unwrap();
        assert!(
            a.tsdb.sample_count() < all.tsdb.sample_count() / 2,
            "{} of {} samples kept",
            a.tsdb.sample_count(),
            all.tsdb.sample_count()
        );

        let dir = tempfile::tempdir().unwrap();
        let mut partial = Views::new(retention);
        apply_first(&mut partial, &ledger, 117);
        partial.save_snapshot(dir.path()).unwrap();
        let resumed = Views::open(dir.path(), &ledger, retention).unwrap();
        assert_eq!(resumed.height, 200);
        assert_eq!(resumed.digest(), a.digest());
    }

    #[test]
    fn snapshot_resumes_to_the_same_state_as_a_full_replay() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = ledger_with_blocks(11, 30);
        let mut partial = Views::default();
        apply_first(&mut partial, &ledger, 12);
        partial.save_snapshot(dir.path()).unwrap();
        let resumed = Views::open(dir.path(), &ledger, Default::default()).unwrap();
        let mut full = Views::default();
        full.catch_up(&ledger).unwrap();
        assert_eq!(resumed.height, 30);
        assert_eq!(resumed.digest(), full.digest());

        // A snapshot that does not match the ledger is ignored, not trusted.
        let other = ledger_with_blocks(12, 30);
        assert!(Views::load_snapshot(dir.path(), &other, Default::default()).is_err());
        let mut bytes = std::fs::read(dir.path().join(SNAPSHOT_FILE)).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 1;
        std::fs::write(dir.path().join(SNAPSHOT_FILE), bytes).unwrap();
        let err = Views::load_snapshot(dir.path(), &ledger, Default::default())
            .err()
            .expect("a damaged snapshot is refused");
        assert!(err.contains("checksum"), "{err}");
    }
}
