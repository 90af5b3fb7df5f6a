//! The solo sequencer: orders accepted batches into blocks with group commit.
//!
//! Requests queue on a bounded channel. One thread takes everything queued (up to the
//! block limits), appends it as one block (one write, one fsync for all of them),
//! applies the block to the views, then answers every request. So concurrent writers
//! share an fsync, a request waits at most for the block being written plus its own,
//! and a client hears "ok" only once its entry is durable and queryable.
//!
//! A BFT sequencer for clusters replaces this file's loop, not its interface.

use crate::metrics::Metrics;
use crate::views::Views;
use assay_ledger::merkle::Hash;
use assay_ledger::storage::FsStorage;
use assay_ledger::{Entry, Ledger};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Where an accepted entry landed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// Leaf index of the entry.
    pub index: u64,
    /// Its RFC 6962 leaf hash.
    pub leaf_hash: Hash,
    /// Height of the block holding it.
    pub height: u64,
    /// Tree size after that block.
    pub tree_size: u64,
}

/// Why an entry was not committed.
#[derive(Clone, Debug, thiserror::Error)]
pub enum CommitError {
    /// The queue is full; the client should retry later.
    #[error("the commit queue is full ({0} batches waiting); retry shortly")]
    Busy(usize),
    /// The ledger failed and stopped; nothing more is accepted until restart.
    #[error("{0}")]
    Ledger(String),
    /// The node is shutting down.
    #[error("the node is shutting down")]
    ShuttingDown,
    /// The batch conflicts with samples already held (out of order, or a different value
    /// at a held timestamp); the client must not retry it unchanged.
    #[error("{0}")]
    Conflict(#[from] assay_tsdb::Conflict),
}

struct Proposal {
    /// The entry's encoding once admitted (the sequencer writes known series by reference,
    /// which needs the views); before, an empty buffer to write it into.
    bytes: Vec<u8>,
    /// What [`Entry::encoded_len_bound`] says of `entry`, for the block's byte budget.
    bytes_bound: usize,
    entry: Entry,
    reply: oneshot::Sender<Reply>,
}

/// The outcome, and the entry handed back so the requester frees it (freeing a large
/// batch's strings on the sequencer thread would delay every later block) and its bytes'
/// buffer to encode the next entry into.
type Reply = (Result<Receipt, CommitError>, Option<Entry>, Vec<u8>);

thread_local! {
    /// Buffers entries were encoded into, for the next entries encoded on this thread: a
    /// fresh buffer of an entry's size (hundreds of kilobytes under remote-write load) was
    /// paid for in page faults every request.
    static ENTRY_BUFFERS: std::cell::RefCell<Vec<Vec<u8>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Buffers kept per thread, and the largest kept.
const ENTRY_BUFFERS_KEPT: usize = 8;
const ENTRY_BUFFER_KEPT_MAX_BYTES: usize = 4 << 20;

impl Proposal {
    fn answer(self, result: Result<Receipt, CommitError>) {
        let _ = self.reply.send((result, Some(self.entry), self.bytes));
    }
}

/// The handle request handlers use.
#[derive(Clone)]
pub struct Sequencer {
    tx: SyncSender<Proposal>,
    queue_max: usize,
}

/// How the sequencer queues, admits and persists.
#[derive(Clone, Debug)]
pub struct SequencerSettings {
    /// Requests waiting for a block; beyond it requests get [`CommitError::Busy`].
    pub queue_max: usize,
    /// Interval between rewrites of the checkpoint file (at least 10 ms).
    pub persist_every: Duration,
    /// Admission's out-of-order window, ms (see [`assay_tsdb::Admission`]).
    pub out_of_order_window_ms: i64,
    /// Recording-rule groups to evaluate (see [`crate::rules`]).
    pub rules: Vec<assay_rules::RuleGroup>,
}

/// Shared state the sequencer writes and handlers read.
pub struct Shared {
    /// The ledger.
    pub ledger: RwLock<Ledger<FsStorage>>,
    /// The views.
    pub views: RwLock<Views>,
    /// Counters.
    pub metrics: Metrics,
}

impl Sequencer {
    /// Starts the sequencer thread; it stops once every handle is dropped and the
    /// queue is drained.
    pub fn start(
        shared: Arc<Shared>,
        settings: SequencerSettings,
    ) -> (Sequencer, std::thread::JoinHandle<()>) {
        let queue_max = settings.queue_max;
        let (tx, rx) = std::sync::mpsc::sync_channel(queue_max);
        let thread = std::thread::Builder::new()
            .name("assay-sequencer".into())
            .spawn(move || run(&shared, rx, settings))
            .expect("spawning the sequencer thread");
        (Sequencer { tx, queue_max }, thread)
    }

    /// Queues an entry and waits until it is durable and applied.
    pub async fn commit(&self, entry: Entry) -> Result<Receipt, CommitError> {
        let bytes = ENTRY_BUFFERS.with_borrow_mut(Vec::pop).unwrap_or_default();
        let (reply, rx) = oneshot::channel();
        match self.tx.try_send(Proposal {
            bytes,
            bytes_bound: entry.encoded_len_bound(),
            entry,
            reply,
        }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(CommitError::Busy(self.queue_max)),
            Err(TrySendError::Disconnected(_)) => return Err(CommitError::ShuttingDown),
        }
        let (result, entry, bytes) =
            rx.await
                .unwrap_or((Err(CommitError::ShuttingDown), None, Vec::new()));
        drop(entry);
        if bytes.capacity() <= ENTRY_BUFFER_KEPT_MAX_BYTES {
            ENTRY_BUFFERS.with_borrow_mut(|kept| {
                if kept.len() < ENTRY_BUFFERS_KEPT {
                    kept.push(bytes);
                }
            });
        }
        result
    }
}

fn run(shared: &Shared, rx: Receiver<Proposal>, settings: SequencerSettings) {
    let persist_every = settings.persist_every.max(Duration::from_millis(10));
    // The schedule continues after the last block the views hold, so a restart does not
    // evaluate again what was recorded before it.
    let started_after_ms = shared.views.read().expect("views lock").last_block_time_ms;
    let mut rules = (!settings.rules.is_empty())
        .then(|| assay_rules::RuleEngine::after_block(settings.rules.clone(), started_after_ms));
    let window = settings.out_of_order_window_ms;
    // Rules also run while no writes arrive: the queue is polled at least this often.
    let poll = if rules.is_some() {
        persist_every.min(Duration::from_secs(1))
    } else {
        persist_every
    };
    let (entries_max, bytes_max) = {
        let l = shared.ledger.read().expect("ledger lock");
        (l.config().block_entries_max, l.config().block_bytes_max)
    };
    let mut failed: Option<String> = None;
    let mut admission_buffers = assay_tsdb::AdmissionBuffers::default();
    let mut checkpoint = CheckpointSchedule {
        every: persist_every,
        last: Instant::now(),
        dirty: false,
    };
    loop {
        // Waking up when idle lets the checkpoint file catch up with the last blocks.
        let first = match rx.recv_timeout(poll) {
            Ok(p) => p,
            Err(RecvTimeoutError::Timeout) => {
                if let (Some(engine), None) = (rules.as_mut(), &failed) {
                    if let Err(why) =
                        crate::rules::run_due(shared, engine, crate::wall_clock_ms(), window)
                    {
                        tracing::error!(error = %why, "ledger append failed; the node accepts no more writes until restarted");
                        failed = Some(why);
                    } else {
                        checkpoint.dirty = true;
                    }
                }
                checkpoint.persist_if_due(shared, failed.is_some());
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let mut bytes = first.bytes_bound;
        let mut batch = vec![first];
        while batch.len() < entries_max && bytes < bytes_max {
            match rx.try_recv() {
                Ok(p) => {
                    bytes += p.bytes_bound;
                    batch.push(p);
                }
                Err(_) => break,
            }
        }
        if let Some(why) = &failed {
            for p in batch {
                p.answer(Err(CommitError::Ledger(why.clone())));
            }
            continue;
        }
        let (batch, resolved) = admit(shared, batch, window, &mut admission_buffers);
        if batch.is_empty() {
            continue;
        }
        let bytes: Vec<&[u8]> = batch.iter().map(|p| p.bytes.as_slice()).collect();
        let entries: Vec<&Entry> = batch.iter().map(|p| &p.entry).collect();
        // Event time of the block's oldest sample, for late-sample corrections of rules.
        let earliest = rules.as_ref().and_then(|_| {
            entries
                .iter()
                .flat_map(|e| e.batch().samples())
                .map(|s| s.timestamp_ms)
                .min()
        });
        match commit_entries(shared, &bytes, &entries, &resolved) {
            Ok((block_time, receipts)) => {
                checkpoint.dirty = true;
                for (p, r) in batch.into_iter().zip(receipts) {
                    p.answer(Ok(r));
                }
                if let Some(engine) = rules.as_mut() {
                    // Late samples first: evaluations made before this block re-run with
                    // them; then what this block makes due (which sees them already).
                    let corrected = earliest.map_or(Ok(()), |t| {
                        let not_before =
                            block_time.saturating_sub(window).max(started_after_ms + 1);
                        crate::rules::correct_late(shared, engine, t, not_before, window)
                    });
                    if let Err(why) = corrected
                        .and_then(|()| crate::rules::run_due(shared, engine, block_time, window))
                    {
                        tracing::error!(error = %why, "ledger append failed; the node accepts no more writes until restarted");
                        failed = Some(why);
                    }
                }
            }
            Err(why) => {
                tracing::error!(error = %why, "ledger append failed; the node accepts no more writes until restarted");
                for p in batch {
                    p.answer(Err(CommitError::Ledger(why.clone())));
                }
                failed = Some(why);
            }
        }
        checkpoint.persist_if_due(shared, failed.is_some());
    }
    // Shutting down: whatever was committed is vouched for by the checkpoint file.
    checkpoint.every = Duration::ZERO;
    checkpoint.persist_if_due(shared, failed.is_some());
}

/// When the checkpoint file is rewritten: at most every `every`, and only after new blocks.
struct CheckpointSchedule {
    every: Duration,
    last: Instant,
    dirty: bool,
}

impl CheckpointSchedule {
    /// Persists the latest checkpoint if blocks were committed since the last write and
    /// `every` has passed; never after the ledger failed (it refuses writes then).
    fn persist_if_due(&mut self, shared: &Shared, ledger_failed: bool) {
        if !self.dirty || ledger_failed || self.last.elapsed() < self.every {
            return;
        }
        if let Err(e) = shared
            .ledger
            .write()
            .expect("ledger lock")
            .persist_checkpoint()
        {
            tracing::error!(error = %e, "persisting the checkpoint failed");
        }
        self.last = Instant::now();
        self.dirty = false;
    }
}

/// Per admitted entry, the series ids admission found in the view (see
/// `assay_tsdb::Admitted`).
type Resolved = Vec<Vec<Option<assay_tsdb::SeriesId>>>;

/// Answers the proposals that conflict with the view (or with one admitted before them in
/// this block) and returns the rest, in order, with the series ids found for them.
fn admit(
    shared: &Shared,
    batch: Vec<Proposal>,
    window_ms: i64,
    buffers: &mut assay_tsdb::AdmissionBuffers,
) -> (Vec<Proposal>, Resolved) {
    // Verdicts first, while the admission borrows the batches; then move them.
    let (verdicts, resolved): (Vec<Result<(), assay_tsdb::Conflict>>, Resolved) = {
        let views = shared.views.read().expect("views lock");
        let mut admission =
            assay_tsdb::Admission::with_buffers(&views.tsdb, window_ms, std::mem::take(buffers));
        let verdicts = batch
            .iter()
            .map(|p| admission.admit(p.entry.batch()))
            .collect();
        let admitted = admission.finish();
        *buffers = admitted.buffers;
        (verdicts, admitted.resolved)
    };
    let mut admitted = Vec::with_capacity(batch.len());
    for (p, verdict) in batch.into_iter().zip(verdicts) {
        match verdict {
            Ok(()) => admitted.push(p),
            Err(conflict) => p.answer(Err(CommitError::Conflict(conflict))),
        }
    }
    debug_assert_eq!(admitted.len(), resolved.len());
    encode_admitted(shared, &mut admitted, &resolved);
    (admitted, resolved)
}

/// Encodes each admitted entry, writing a series by reference where the views know an
/// entry that lists it inline (what a reference may name, so any such entry will do).
fn encode_admitted(shared: &Shared, admitted: &mut [Proposal], resolved: &Resolved) {
    let views = shared.views.read().expect("views lock");
    for (p, ids) in admitted.iter_mut().zip(resolved) {
        if let Entry::Samples(batch) = &mut p.entry {
            views.tsdb.refer_known_series(batch, ids);
        }
        p.entry.encode_into(&mut p.bytes);
    }
}

/// Appends one block of `entries` (`refs` are their encodings) and applies it to the
/// views (`resolved`: the series ids admission found, per entry, or empty); the block's
/// time and a receipt per entry. Only the sequencer thread calls it, and nothing changes
/// the views between its admission and this.
pub(crate) fn commit_entries(
    shared: &Shared,
    refs: &[&[u8]],
    entries: &[&Entry],
    resolved: &[Vec<Option<assay_tsdb::SeriesId>>],
) -> Result<(i64, Vec<Receipt>), String> {
    debug_assert_eq!(refs.len(), entries.len());
    let started = Instant::now();
    let now_ms = crate::wall_clock_ms();
    let (block, leaves) = {
        let mut ledger = shared.ledger.write().expect("ledger lock");
        let block = ledger
            .append_block(now_ms, refs)
            .map_err(|e| e.to_string())?;
        let first = block.header.first_index;
        let leaves: Vec<Hash> = (0..refs.len() as u64)
            .map(|i| ledger.tree().leaf(first + i).expect("leaf just appended"))
            .collect();
        (block, leaves)
    };
    let durable = started.elapsed();
    shared
        .views
        .write()
        .expect("views lock")
        .apply_block_resolved(&block, entries.iter().copied(), resolved);
    let samples: usize = entries.iter().map(|e| e.batch().len()).sum();
    shared.metrics.block_committed(
        entries.len(),
        samples,
        refs.iter().map(|r| r.len()).sum(),
        durable,
        started.elapsed(),
    );
    let receipts = leaves
        .into_iter()
        .enumerate()
        .map(|(i, leaf_hash)| Receipt {
            index: block.header.first_index + i as u64,
            leaf_hash,
            height: block.header.height,
            tree_size: block.header.tree_size,
        })
        .collect();
    Ok((block.header.time_ms, receipts))
}
