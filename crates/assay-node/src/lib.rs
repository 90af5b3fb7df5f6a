//! An Assay node: the ledger, the solo sequencer, the views and the HTTP API wired
//! together. Start reading at [`Node::open`] and [`Node::serve`].
//!
//! Data directory layout:
//!
//! ```text
//! <data_dir>/LOCK                  held (flock) by the one process using the directory
//! <data_dir>/node.key              Ed25519 signer key (C2SP note key text), mode 0600
//! <data_dir>/ledger/*.seg          segment files (see assay_ledger::segment)
//! <data_dir>/ledger/checkpoint     last persisted signed checkpoint
//! <data_dir>/views/views.snapshot  views at some block (a cache: dropped when it disagrees)
//! ```

pub mod api;
pub mod config;
pub mod identity;
pub mod metrics;
pub mod params;
pub mod rules;
pub mod sequencer;
pub mod views;

use assay_ledger::merkle::Hash;
use assay_ledger::note::Verifier;
use assay_ledger::scan::{scan, ScanChecks, ScanError, TornTail};
use assay_ledger::storage::FsStorage;
use assay_ledger::{Ledger, LedgerError};
use config::NodeConfig;
use sequencer::{Sequencer, SequencerSettings, Shared};
use std::future::Future;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use views::{ViewError, Views};

/// How often the settling thread looks for newly sealed chunks when none were waiting
/// (a 15 s scrape interval seals a fleet's chunks in bursts; a backlog waits this long).
const SETTLE_IDLE: Duration = Duration::from_millis(20);

/// A node's background thread (if it runs) and the sender whose drop stops it.
type BackgroundThread = (
    std::sync::mpsc::Sender<()>,
    Option<std::thread::JoinHandle<()>>,
);

/// Why a node could not start, stop cleanly, rebuild or be audited.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The data directory could not be created or read.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The node key is missing, invalid or does not match the config.
    #[error(transparent)]
    Identity(#[from] identity::IdentityError),
    /// The ledger is damaged or unreadable.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The views could not be built.
    #[error(transparent)]
    Views(#[from] ViewError),
    /// Serving failed.
    #[error("serving HTTP: {0}")]
    Serve(std::io::Error),
    /// A rule file is missing or invalid.
    #[error("{0}")]
    Rules(String),
    /// Another process holds the data directory.
    #[error("data directory {0} is in use by another assay process (its LOCK file is held); stop that process or pick another --data-dir")]
    Locked(String),
}

/// The wall clock in ms since the Unix epoch: ingest's "now" and a new block's time. The
/// node's only clock read; nothing applied from the ledger calls it.
pub(crate) fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Takes the data directory's exclusive lock, released when the returned file is dropped
/// (or the process dies), so two processes never write one ledger.
pub fn lock_data_dir(dir: &Path) -> Result<std::fs::File, NodeError> {
    let path = dir.join("LOCK");
    let io = |source| NodeError::DataDir {
        path: path.display().to_string(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(NodeError::Locked(dir.display().to_string())),
        Err(std::fs::TryLockError::Error(e)) => Err(io(e)),
    }
}

/// An opened node, ready to serve.
pub struct Node {
    config: NodeConfig,
    rules: Vec<assay_rules::RuleGroup>,
    shared: Arc<Shared>,
    _lock: std::fs::File,
}

impl Node {
    /// Opens the data directory: creates it and the key on first start, recovers the
    /// ledger (truncating a torn last block), loads or rebuilds the views.
    pub fn open(config: NodeConfig) -> Result<Node, NodeError> {
        let rules = rules::load(&config.rule_files)?;
        let lock = lock_data_dir(&config.data_dir)?;
        let signer = identity::load_or_create(&config.key_file(), &config.origin)?;
        let storage =
            FsStorage::open(&config.ledger_dir()).map_err(|source| NodeError::DataDir {
                path: config.ledger_dir().display().to_string(),
                source,
            })?;
        let (ledger, recovery) = Ledger::open(storage, signer, config.ledger.ledger())?;
        tracing::info!(
            entries = recovery.entries,
            blocks = recovery.blocks,
            truncated = recovery.truncated.is_some(),
            "ledger recovered"
        );
        let views = Views::open(&config.views_dir(), &ledger, config.tsdb.retention())?;
        let shared = Arc::new(Shared {
            ledger: RwLock::new(ledger),
            views: RwLock::new(views),
            metrics: Default::default(),
        });
        Ok(Node {
            config,
            rules,
            shared,
            _lock: lock,
        })
    }

    /// The shared state (ledger, views, metrics).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Serves the API on `listener` until `shutdown` resolves; then finishes in-flight
    /// requests, commits what is queued, persists the checkpoint and a views snapshot.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), NodeError> {
        let persist = Duration::from_millis(self.config.ledger.checkpoint_persist_ms);
        let (sequencer, thread) = Sequencer::start(
            self.shared.clone(),
            SequencerSettings {
                queue_max: self.config.ledger.queue_batches_max,
                persist_every: persist,
                out_of_order_window_ms: self.config.tsdb.out_of_order_window_ms,
                rules: self.rules.clone(),
            },
        );
        let state = api::AppState {
            shared: self.shared.clone(),
            sequencer,
            limits: self.config.limits.clone(),
            query_timeout_ms: self.config.tsdb.query_timeout_ms,
            series_cache: Arc::new(self.config.ingest.series_cache(&self.config.limits)),
        };
        let app = api::router(state);
        let (stop_snapshots, snapshots) = self.start_snapshots();
        let (stop_packing, packing) = self.start_packing();
        let (stop_settling, settling) = self.start_settling();
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await;
        drop(stop_snapshots);
        drop(stop_packing);
        drop(stop_settling);
        for t in [snapshots, packing, settling].into_iter().flatten() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
        // The router (and with it every sequencer handle) is gone: the thread drains and exits.
        let joined = tokio::task::spawn_blocking(move || thread.join()).await;
        if !matches!(joined, Ok(Ok(()))) {
            tracing::error!("the sequencer thread panicked");
        }
        served.map_err(NodeError::Serve)?;
        self.pack_at_stop();
        self.save_snapshot();
        tracing::info!("stopped cleanly");
        Ok(())
    }

    /// Settles the chunks the views seal (re-encodes them in the smaller encoding) off the
    /// sequencer's path, until the returned sender is dropped.
    fn start_settling(&self) -> BackgroundThread {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let shared = self.shared.clone();
        let thread = std::thread::Builder::new()
            .name("assay-settle".into())
            .spawn(move || loop {
                // A full batch means more are waiting: go on at once.
                let wait = if views::settle_chunks(&shared.views) == views::SETTLE_BATCH_CHUNKS {
                    Duration::ZERO
                } else {
                    SETTLE_IDLE
                };
                match stopped.recv_timeout(wait) {
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
            })
            .expect("spawning the settling thread");
        (stop, Some(thread))
    }

    /// Snapshots the views every `tsdb.snapshot_every_ms` while blocks are committed,
    /// until the returned sender is dropped.
    fn start_snapshots(&self) -> BackgroundThread {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let every = self.config.tsdb.snapshot_every_ms;
        if every == 0 {
            return (stop, None);
        }
        let shared = self.shared.clone();
        let dir = self.config.views_dir();
        let window = self.config.tsdb.out_of_order_window_ms;
        let mut last_height = shared.views.read().expect("views lock").height;
        let mut next_file = assay_tsdb::chunk_file::chunk_file_ids(&views::chunk_dir(&dir))
            .ok()
            .and_then(|ids| ids.last().copied())
            .map_or(0, |id| id + 1);
        let thread = std::thread::Builder::new()
            .name("assay-snapshot".into())
            .spawn(move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(Duration::from_millis(every))
                {
                    if shared.views.read().expect("views lock").height == last_height {
                        continue;
                    }
                    let started = std::time::Instant::now();
                    // Chunks the out-of-order window can no longer change go to disk first,
                    // so the snapshot refers to them instead of copying them.
                    let before = shared
                        .views
                        .read()
                        .expect("views lock")
                        .last_block_time_ms
                        .saturating_sub(window);
                    match views::offload_chunks(
                        &shared.views,
                        &dir,
                        &mut next_file,
                        before,
                        256 << 20,
                    ) {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(chunks = n, "sealed chunks moved to disk"),
                        Err(e) => tracing::warn!(error = %e, "moving chunks to disk failed"),
                    }
                    let (height, bytes, files) = {
                        let views = shared.views.read().expect("views lock");
                        (
                            views.height,
                            views.snapshot_bytes(),
                            views.tsdb.chunk_files(),
                        )
                    };
                    let encoded = started.elapsed();
                    let saved = Views::write_snapshot(&dir, &bytes).and_then(|()| {
                        assay_tsdb::chunk_file::remove_unreferenced(&views::chunk_dir(&dir), &files)
                            .map_err(views::ViewError::from)
                    });
                    match saved {
                        Ok(removed) => {
                            last_height = height;
                            tracing::info!(
                                height,
                                bytes = bytes.len(),
                                chunk_files = files.len(),
                                chunk_files_removed = removed,
                                encode_ms = encoded.as_millis() as u64,
                                total_ms = started.elapsed().as_millis() as u64,
                                "views snapshot saved"
                            );
                        }
                        Err(e) => tracing::warn!(error = %e, "periodic views snapshot failed"),
                    }
                }
            })
            .expect("spawning the snapshot thread");
        (stop, Some(thread))
    }

    /// Packs sealed ledger segments (`assay_ledger::pack`) as they fill, until the returned
    /// sender is dropped. Reading and installing take the ledger lock; packing does not.
    fn start_packing(&self) -> BackgroundThread {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        if !self.config.ledger.pack_segments {
            return (stop, None);
        }
        let shared = self.shared.clone();
        let options = self.config.ledger.pack_options();
        let thread = std::thread::Builder::new()
            .name("assay-pack".into())
            .spawn(move || loop {
                let next = shared
                    .ledger
                    .read()
                    .expect("ledger lock")
                    .unpacked_segments()
                    .first()
                    .copied();
                let Some(seq) = next else {
                    match stopped.recv_timeout(Duration::from_secs(1)) {
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
                        _ => return,
                    }
                };
                if !matches!(stopped.try_recv(), Err(std::sync::mpsc::TryRecvError::Empty)) {
                    return;
                }
                let started = std::time::Instant::now();
                // One statement per lock: the read guard must be gone before packing starts,
                // and the pack is written and synced without the lock (only renamed under
                // it), so blocks are not held up.
                let (raw, stager) = {
                    let ledger = shared.ledger.read().expect("ledger lock");
                    (ledger.segment_bytes(seq), ledger.pack_stager())
                };
                let packed = raw
                    .and_then(|raw| {
                        assay_ledger::pack::pack_segment(&raw, &options)
                            .map_err(|e| assay_ledger::LedgerError::Pack(e.to_string()))
                    })
                    .and_then(|pack| {
                        stager.stage(&assay_ledger::pack::pack_name(seq), &pack)?;
                        let raw = (shared.ledger.write().expect("ledger lock"))
                            .install_staged_pack(seq, &pack)?;
                        // Unlinking 64 MiB took ~20 ms: not under the lock either.
                        Ok(stager.remove(&raw)?)
                    });
                match packed {
                    Ok(()) => tracing::debug!(
                        segment = seq,
                        ms = started.elapsed().as_millis() as u64,
                        "packing took"
                    ),
                    Err(e) => {
                        // The raw segment stays; packing is retried after a restart.
                        tracing::error!(segment = seq, error = %e, "packing a ledger segment failed; packing stops");
                        return;
                    }
                }
            })
            .expect("spawning the packing thread");
        (stop, Some(thread))
    }

    /// A clean stop ends the segment being appended to (if it holds a MiB or more) and packs
    /// every full segment, so a stopped node's ledger is packs and a near-empty segment.
    fn pack_at_stop(&self) {
        if !self.config.ledger.pack_segments {
            return;
        }
        let options = self.config.ledger.pack_options();
        let started = std::time::Instant::now();
        let mut ledger = self.shared.ledger.write().expect("ledger lock");
        let packed = ledger
            .end_segment(1 << 20)
            .and_then(|_| ledger.pack_sealed_segments(&options));
        match packed {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                segments = n,
                ms = started.elapsed().as_millis() as u64,
                "ledger segments packed at stop"
            ),
            Err(e) => tracing::warn!(error = %e, "packing at stop failed; the segments stay raw"),
        }
    }

    fn save_snapshot(&self) {
        let views = self.shared.views.read().expect("views lock");
        match views.save_snapshot(&self.config.views_dir()) {
            Ok(()) => tracing::info!(height = views.height, "views snapshot saved"),
            Err(e) => {
                tracing::warn!(error = %e, "saving the views snapshot failed; the next start replays the ledger")
            }
        }
    }
}

/// What `assay rebuild` did.
#[derive(Clone, Debug)]
pub struct RebuildReport {
    /// Blocks replayed.
    pub blocks: u64,
    /// Entries replayed.
    pub entries: u64,
    /// Series in the rebuilt time-series view.
    pub series: usize,
    /// Samples in it.
    pub samples: u64,
    /// Digest of the rebuilt views.
    pub digest: Hash,
}

/// Drops the views and replays the whole ledger into fresh ones, then snapshots them.
pub fn rebuild(config: &NodeConfig) -> Result<RebuildReport, NodeError> {
    let _lock = lock_data_dir(&config.data_dir)?;
    let signer = identity::load_or_create(&config.key_file(), &config.origin)?;
    let storage = FsStorage::open(&config.ledger_dir()).map_err(|source| NodeError::DataDir {
        path: config.ledger_dir().display().to_string(),
        source,
    })?;
    let (ledger, _) = Ledger::open(storage, signer, config.ledger.ledger())?;
    let snapshot = config.views_dir().join(views::SNAPSHOT_FILE);
    match std::fs::remove_file(&snapshot) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(NodeError::DataDir {
                path: snapshot.display().to_string(),
                source,
            })
        }
    }
    let mut views = Views::new(config.tsdb.retention());
    views.catch_up(&ledger)?;
    views.save_snapshot(&config.views_dir())?;
    Ok(RebuildReport {
        blocks: views.height,
        entries: views.size,
        series: views.tsdb.series_count(),
        samples: views.tsdb.sample_count(),
        digest: views.digest(),
    })
}

/// What an offline audit found when the ledger is intact.
#[derive(Clone, Debug)]
pub struct AuditReport {
    /// Segment files checked.
    pub segments: usize,
    /// Bytes of valid records.
    pub bytes: u64,
    /// Entries checked (hash, canonical encoding).
    pub entries: u64,
    /// Blocks checked (chain link, roots, both signatures).
    pub blocks: u64,
    /// The last checkpoint's root.
    pub root: Hash,
    /// The key the signatures were checked with.
    pub key: String,
    /// Size the persisted checkpoint vouched for, if present.
    pub persisted_size: Option<u64>,
    /// An unacknowledged half-written last block (present after a crash, before restart).
    pub torn: Option<TornTail>,
    /// Entries that give series by reference, every reference resolved to an inline series
    /// of an earlier entry and the entry's series distinct once resolved.
    pub entries_with_references: u64,
}

/// Audits a stopped node's data directory: every record checksum, entry encoding,
/// leaf hash, block link, Merkle root and signature, and every series reference (read
/// again from the entries that hold them).
/// `key` is the verifier key to trust; `None` trusts the data directory's own key file.
pub fn audit(data_dir: &Path, key: Option<Verifier>) -> Result<AuditReport, AuditError> {
    let config = NodeConfig {
        data_dir: data_dir.to_path_buf(),
        ..NodeConfig::default()
    };
    let verifier = match key {
        Some(v) => v,
        None => {
            let text = std::fs::read_to_string(config.key_file())
                .map_err(|e| AuditError::Key(format!("{}: {e}", config.key_file().display())))?;
            let signer = assay_ledger::note::Signer::from_key_text(text.trim())
                .map_err(|e| AuditError::Key(e.to_string()))?;
            signer.verifier()
        }
    };
    if !config.ledger_dir().is_dir() {
        return Err(AuditError::Key(format!(
            "{} holds no ledger directory",
            data_dir.display()
        )));
    }
    let _lock = lock_data_dir(data_dir)
        .map_err(|e| AuditError::Key(format!("{e} (verify audits a stopped node)")))?;
    let storage =
        FsStorage::open(&config.ledger_dir()).map_err(|e| AuditError::Key(e.to_string()))?;
    let checks = ScanChecks {
        decode_entries: true,
        signatures: Some(&verifier),
    };
    let s = scan(&storage, verifier.name(), checks)?;
    let entries_with_references = audit_references(&storage, &s)?;
    Ok(AuditReport {
        segments: s.segments.len(),
        bytes: s.segments.iter().map(|g| g.len).sum(),
        entries: s.tree.size(),
        blocks: s.blocks.len() as u64,
        root: s.tree.root(),
        key: verifier.to_key_text(),
        persisted_size: s.persisted.map(|c| c.size),
        torn: s.torn,
        entries_with_references,
    })
}

/// Resolves every series reference of the scanned ledger (entries of kind 0x04); the
/// number of entries that hold references.
fn audit_references(
    storage: &FsStorage,
    scanned: &assay_ledger::scan::Scanned,
) -> Result<u64, AuditError> {
    let entries = assay_ledger::ScannedEntries::new(storage, scanned);
    let read = |i: u64| entries.entry(i).map_err(|e| e.to_string());
    let mut resolver = assay_ledger::SeriesResolver::default();
    let mut last_report = std::time::Instant::now();
    for (n, &index) in scanned.entries_with_references.iter().enumerate() {
        if last_report.elapsed() >= std::time::Duration::from_secs(5) {
            let of = scanned.entries_with_references.len();
            tracing::info!(n, of, "resolving series references");
            last_report = std::time::Instant::now();
        }
        let bytes = read(index).map_err(|message| AuditError::Reference { index, message })?;
        resolver
            .decode(&read, index, &bytes)
            .map_err(|message| AuditError::Reference { index, message })?;
    }
    Ok(scanned.entries_with_references.len() as u64)
}

#[cfg(test)]
mod audit_tests {
    use super::*;
    use assay_ledger::{Entry, Labels, LedgerConfig, SampleBatch, SeriesRef};

    /// A stopped node's data directory whose ledger holds an entry listing `up{i="0"}` and
    /// `up{i="1"}` inline, then one with the same two series, `up{i="1"}` given by
    /// `reference` (the bytes and signatures are intact whatever it names).
    fn data_dir_with_reference(reference: SeriesRef) -> (tempfile::TempDir, Verifier) {
        let dir = tempfile::tempdir().unwrap();
        let signer = assay_ledger::note::Signer::from_seed("audit.assay/ledger", [9; 32]).unwrap();
        let storage = FsStorage::open(&dir.path().join("ledger")).unwrap();
        let (mut ledger, _) =
            Ledger::open(storage, signer.clone(), LedgerConfig::default()).unwrap();
        let up = |i: &str| {
            Labels::new(vec![
                ("__name__".into(), "up".into()),
                ("i".into(), i.into()),
            ])
            .unwrap()
        };
        let (mut first, mut later) = (SampleBatch::new(), SampleBatch::new());
        for i in ["0", "1"] {
            first.push(up(i), 1_000, 1.0);
            later.push(up(i), 2_000, 2.0);
        }
        later.set_series_refs(vec![None, Some(reference)]);
        for e in [first, later] {
            ledger
                .append_block(5, &[&Entry::Samples(e).encode()])
                .unwrap();
        }
        (dir, signer.verifier())
    }

    #[test]
    fn the_audit_resolves_every_series_reference_and_names_an_entry_whose_do_not() {
        let good = SeriesRef {
            entry: 0,
            position: 1,
        };
        let (dir, key) = data_dir_with_reference(good);
        let report = audit(dir.path(), Some(key)).unwrap();
        assert_eq!((report.entries, report.entries_with_references), (2, 1));
        for (entry, position, why) in [
            (0, 7, "does not list it inline"),
            (1, 0, "not before it"),
            // up{i="0"}, which the entry lists inline already.
            (0, 0, "repeats an earlier series"),
        ] {
            let (dir, key) = data_dir_with_reference(SeriesRef { entry, position });
            match audit(dir.path(), Some(key)) {
                Err(AuditError::Reference { index, message }) => {
                    assert_eq!(index, 1);
                    assert!(message.contains(why), "{message}");
                }
                other => panic!("({entry}, {position}): {:?}", other.map(|r| r.entries)),
            }
        }
    }
}

/// Why an audit could not pass.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The key or directory is unusable.
    #[error("{0}")]
    Key(String),
    /// The ledger is damaged.
    #[error(transparent)]
    Scan(#[from] ScanError),
    /// An entry's series references do not resolve (or it cannot be read again).
    #[error("entry {index}: {message}")]
    Reference {
        /// The entry's leaf index.
        index: u64,
        /// What failed.
        message: String,
    },
}
