//! Assay's time-series view: a series index and compressed samples derived from the
//! ledger, metric metadata, retention, admission of new writes, and a PromQL evaluator.
//!
//! Start reading at [`Tsdb`] (the view, `apply_batch`) and [`promql::instant_query`].
//! Where things live: `store.rs` (a series' samples: sealed chunks from `chunk.rs` — the
//! smaller of Gorilla XOR and `assay_columns` columns, tagged by an encoding byte — on the
//! heap or in `chunk_file.rs` files, and an open XOR chunk), `admit.rs` (which writes Prometheus would refuse), `metadata.rs`,
//! `snapshot.rs` (the canonical traversal: digest and snapshot bytes), `promql/`.
//!
//! # Invariants
//! - **Apply is pure.** [`Tsdb::apply_batch`], [`Tsdb::apply_metadata`] and
//!   [`Tsdb::enforce_retention`] (given a block's time) read no clock, no randomness and no
//!   I/O, and never fail: every batch the ledger committed is applied. Replicas applying the
//!   same batches in ledger order hold equal states and equal [`Tsdb::digest`]s, however the
//!   samples were split into batches.
//! - **Order of writes.** Samples may arrive out of timestamp order; they are inserted in
//!   order. A second sample at a timestamp a series already has *replaces* the value: the
//!   later write in ledger order wins. Values keep their exact bits (NaN payloads included).
//!   (The node's [`Admission`] keeps such writes out of the ledger in the first place.)
//! - **The chunk layout is state.** Which samples share a chunk follows from the order of
//!   writes; retention drops whole chunks, so the digest and snapshots include the layout
//!   and a restored view drops exactly what a replayed one does.
//! - **No map iteration order leaks.** The index uses ordered maps only; series ids are
//!   assigned in first-write ledger order; the digest and snapshots walk series sorted by
//!   labels and samples by timestamp.
//! - **A series exists only with samples.** Retention may leave a series it emptied in the
//!   index until enough are dead to rebuild it ([`Tsdb::enforce_retention`]); such a series
//!   is invisible to queries, to [`Tsdb::series_count`], the digest and snapshots.
//! - **Snapshots are never trusted over the ledger.** [`Tsdb::decode_snapshot`] checks
//!   version, checksum and every canonical rule, and rejects anything else without
//!   panicking; the snapshot checksum is the state digest.
//!
//! The tsdb never writes the ledger and knows nothing of blocks: the node feeds it batches
//! and block times.
//!
//! # Limits
//! Apply has none of its own: ingest bounds batches before they reach the ledger. Queries
//! are bounded by [`promql::QUERY_SERIES_TOUCHED_MAX`], [`promql::QUERY_SAMPLES_LOADED_MAX`],
//! [`promql::RANGE_QUERY_POINTS_MAX`], [`promql::QUERY_BYTES_MAX`],
//! [`promql::QUERY_EXPR_DEPTH_MAX`] and [`MATCHER_REGEX_BYTES_MAX`]; metadata by
//! [`METRICS_MAX`] and [`RECORDS_PER_METRIC_MAX`].
//!
//! # Memory
//! Samples are compressed: sealed chunks about 1.2 bytes each on the bench fleet (columns;
//! XOR took 3.8), plus 48 bytes of bookkeeping per chunk. Sealed chunks can be
//! moved to memory-mapped chunk files (`chunk_file.rs`, driven by the node), after which
//! they cost page cache, not heap; the heap holds the series index, the open chunks and
//! recent sealed chunks. A view rebuilt by replaying the ledger holds every chunk on the
//! heap until the node's first snapshot pass moves them.
//!
//! # Not here (yet)
//! Native histograms.

mod admit;
mod chunk;
pub mod chunk_file;
mod matcher;
mod metadata;
pub mod promql;
mod snapshot;
mod store;

use std::collections::BTreeMap;

use assay_ledger::{Labels, SampleBatch, SeriesRef};

pub use admit::{Admission, AdmissionBuffers, Admitted, Conflict};
pub use matcher::{MatchOp, Matcher, MATCHER_REGEX_BYTES_MAX};
pub use metadata::{MetadataRecord, METRICS_MAX, RECORDS_PER_METRIC_MAX};
pub use snapshot::{SnapshotError, SNAPSHOT_VERSION};
use store::SampleStore;

/// Dense series number, assigned in first-write ledger order.
pub type SeriesId = u32;

/// One indexed series: its identity and its samples.
#[derive(Clone, Debug)]
struct SeriesEntry {
    labels: Labels,
    samples: SampleStore,
    /// The first inline appearance of the series in the ledger that this view applied,
    /// which a writer may refer to instead of repeating the labels. Not view state: not in
    /// the digest or the snapshot (a view restored from one learns it again).
    def: Option<SeriesRef>,
}

/// Asks the CPU to bring `entry` (both its cache lines) into the caches.
fn prefetch_entry(entry: &SeriesEntry) {
    let p = (entry as *const SeriesEntry).cast::<u8>();
    chunk::prefetch(p);
    chunk::prefetch(p.wrapping_add(64));
}

/// The time-series view: series index, postings and per-series samples.
#[derive(Clone, Debug, Default)]
pub struct Tsdb {
    /// Indexed by `SeriesId`.
    series: Vec<SeriesEntry>,
    by_labels: assay_ledger::SeriesIndex,
    /// Each series' `labels.addr()` (alive as long as the series is, so the allocation
    /// cannot have been reused by other labels), so labels from the same parse-cache entry
    /// match from this dense array without touching the series' entry or its labels.
    addrs: Vec<usize>,
    /// label name -> label value -> series ids (ascending).
    postings: BTreeMap<String, BTreeMap<String, Vec<SeriesId>>>,
    sample_count: u64,
    /// Series retention emptied that are still indexed (see [`Tsdb::enforce_retention`]).
    empty_series: usize,
    /// Metric metadata from metadata entries.
    metadata: metadata::MetadataStore,
    /// `(series, min_t)` of sealed chunks not settled yet, oldest first (every unsettled
    /// chunk is listed; an entry whose chunk changed since is skipped). Not state: the
    /// digest and snapshots see chunks settled (see [`Tsdb::unsettled_chunks`]).
    unsettled: std::collections::VecDeque<(SeriesId, i64)>,
}

/// Most sealed chunks left unsettled; beyond it apply settles a chunk as it seals it
/// (about 0.5 KiB each, so the backlog a slow settler leaves stays near 32 MiB). This
/// crate's unit tests use 64, to reach it with few series.
pub const UNSETTLED_CHUNKS_MAX: usize = if cfg!(test) { 64 } else { 1 << 16 };

/// A sealed chunk copied out to be settled off the writer's path (see
/// [`Tsdb::unsettled_chunks`]).
#[derive(Clone, Debug)]
pub struct UnsettledChunk {
    series: SeriesId,
    chunk: chunk::Chunk,
}

/// An [`UnsettledChunk`] and its settled form, for [`Tsdb::install_settled`].
#[derive(Clone, Debug)]
pub struct SettledChunk {
    series: SeriesId,
    unsettled: chunk::Chunk,
    settled: chunk::Chunk,
}

impl UnsettledChunk {
    /// Computes the settled form (the smaller encoding); a pure function of the chunk.
    pub fn settle(self) -> SettledChunk {
        let settled = self.chunk.settled().unwrap_or_else(|| self.chunk.clone());
        SettledChunk {
            series: self.series,
            unsettled: self.chunk,
            settled,
        }
    }
}

/// A sealed chunk on its way to a chunk file (see [`Tsdb::chunks_to_offload`]).
#[derive(Clone, Debug)]
pub struct OffloadItem {
    series: SeriesId,
    labels: Labels,
    chunk: chunk::Chunk,
}

impl OffloadItem {
    /// The compressed bytes to write.
    pub fn bytes(&self) -> &[u8] {
        self.chunk.bytes()
    }
}

/// Chunk counts and encoded sizes (see [`Tsdb::chunk_stats`]); sizes are the encoded
/// bytes, wherever they live, without per-chunk bookkeeping.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChunkStats {
    /// Sealed chunks, on the heap or in chunk files.
    pub sealed_chunks: u64,
    /// Of them, chunks in the columns encoding (the others are XOR).
    pub sealed_columns_chunks: u64,
    /// Of them, chunks not settled yet (XOR until settled; see [`Tsdb::settle_all`]).
    pub sealed_unsettled_chunks: u64,
    /// Samples in sealed chunks.
    pub sealed_samples: u64,
    /// Encoded bytes of the sealed chunks.
    pub sealed_bytes: u64,
    /// Samples in open chunks.
    pub head_samples: u64,
    /// Heap bytes of the open chunks' bit streams (capacity).
    pub head_bytes: u64,
}

/// How long and how much the view keeps; the ledger itself keeps everything.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Retention {
    /// Samples older than this before the newest block's time are dropped, ms (0: no limit).
    pub time_ms: i64,
    /// The oldest samples are dropped beyond this many bytes of samples (0: no limit).
    pub bytes: usize,
}

impl Tsdb {
    /// An empty view.
    pub fn new() -> Tsdb {
        Tsdb::default()
    }

    /// Applies one committed batch; see the crate docs for ordering rules.
    pub fn apply_batch(&mut self, batch: &SampleBatch) {
        self.apply_batch_resolved(batch, &[]);
    }

    /// [`Tsdb::apply_batch`] given the ids an [`Admission`] found for the batch's series
    /// (`Admitted::resolved`; empty: none known), so each is not looked up twice. A hint
    /// is used only when that id holds these very labels, so the result never depends on
    /// it.
    pub fn apply_batch_resolved(&mut self, batch: &SampleBatch, resolved: &[Option<SeriesId>]) {
        self.apply_resolved(batch, resolved, None);
    }

    /// [`Tsdb::apply_batch_resolved`] for the batch of the ledger entry at leaf index
    /// `entry`: also notes, for each series the entry lists inline, where it does if the
    /// view knew no such place yet (see [`Tsdb::series_def`]).
    pub fn apply_entry_batch(
        &mut self,
        batch: &SampleBatch,
        resolved: &[Option<SeriesId>],
        entry: u64,
    ) {
        self.apply_resolved(batch, resolved, Some(entry));
    }

    /// Where the ledger lists series `id` inline (the first such entry this view applied
    /// since it was made or restored), for a writer to refer to.
    pub fn series_def(&self, id: SeriesId) -> Option<SeriesRef> {
        self.series.get(id as usize).and_then(|e| e.def)
    }

    /// Sets `batch` to write a series by reference where this view knows where the ledger
    /// lists it inline ([`Tsdb::series_def`]; `resolved`: the ids an [`Admission`] found,
    /// as for apply); the others stay inline.
    pub fn refer_known_series(&self, batch: &mut SampleBatch, resolved: &[Option<SeriesId>]) {
        let refs = (0..batch.series().len())
            .map(|i| {
                resolved
                    .get(i)
                    .copied()
                    .flatten()
                    .and_then(|id| self.series_def(id))
            })
            .collect();
        batch.set_series_refs(refs);
    }

    /// [`Tsdb::series_def`] of the series with these labels, if the view holds it.
    pub fn series_def_of(&self, labels: &Labels) -> Option<SeriesRef> {
        let id = self.lookup(labels, assay_ledger::SeriesIndex::hash(labels))?;
        self.series_def(id)
    }

    fn apply_resolved(
        &mut self,
        batch: &SampleBatch,
        resolved: &[Option<SeriesId>],
        entry: Option<u64>,
    ) {
        // Each series' entry and open chunk are usually out of the CPU caches (a batch
        // touches thousands of series once each), and waiting for them was most of
        // apply's time: the entries and chunk tails a few series ahead are prefetched.
        const AHEAD: usize = 8;
        // Resolve each batch series once, then samples are a vector index away.
        let ids: Vec<SeriesId> = batch
            .series()
            .iter()
            .zip(batch.series_hashes())
            .enumerate()
            .map(|(i, (l, &h))| {
                if let Some(&Some(ahead)) = resolved.get(i + AHEAD) {
                    if let Some(e) = self.series.get(ahead as usize) {
                        prefetch_entry(e);
                    }
                }
                let hint = resolved.get(i).copied().flatten();
                let id = match hint.filter(|&id| self.is_series_hinted(id, l)) {
                    Some(id) => {
                        debug_assert_eq!(self.lookup(l, h), Some(id));
                        self.resolve_found(id, l)
                    }
                    None => self.series_id_hashed(l, h),
                };
                // Where the ledger lists the series inline, if this is the first place.
                let def = &mut self.series[id as usize].def;
                if let Some(entry) = entry.filter(|_| def.is_none() && batch.is_inline(i)) {
                    *def = Some(SeriesRef {
                        entry,
                        position: i as u32,
                    });
                }
                id
            })
            .collect();
        let samples = batch.samples();
        for (i, s) in samples.iter().enumerate() {
            if let Some(&ahead) = samples
                .get(i + AHEAD)
                .and_then(|a| ids.get(a.series as usize))
            {
                self.series[ahead as usize].samples.prefetch_head();
            }
            let Some(&id) = ids.get(s.series as usize) else {
                debug_assert!(false, "batch sample references a missing series");
                continue;
            };
            let inserted = self.series[id as usize]
                .samples
                .insert(s.timestamp_ms, s.value);
            self.sample_count += u64::from(inserted.new);
            if inserted.sealed {
                self.note_sealed(id);
            }
        }
    }

    /// Lists the chunk series `id` just sealed as unsettled, or settles it now when
    /// [`UNSETTLED_CHUNKS_MAX`] are listed already.
    fn note_sealed(&mut self, id: SeriesId) {
        let samples = &mut self.series[id as usize].samples;
        if self.unsettled.len() < UNSETTLED_CHUNKS_MAX {
            let min_t = samples.sealed().last().expect("just sealed").min_t();
            self.unsettled.push_back((id, min_t));
        } else {
            samples.settle_last();
        }
    }

    /// Takes up to `max` of the chunks sealed and not settled yet, oldest first, copied so
    /// that [`UnsettledChunk::settle`] can run without the view; [`Tsdb::install_settled`]
    /// puts the results in place. Settling changes bytes, never samples, so when it
    /// happens does not change the state: the digest covers samples, and snapshots and
    /// retention by bytes see every chunk in its settled form.
    pub fn unsettled_chunks(&mut self, max: usize) -> Vec<UnsettledChunk> {
        let mut out = Vec::with_capacity(max.min(self.unsettled.len()));
        while out.len() < max {
            let Some((series, min_t)) = self.unsettled.pop_front() else {
                break;
            };
            let found = self
                .series
                .get(series as usize)
                .and_then(|e| e.samples.unsettled_at(min_t));
            if let Some(chunk) = found {
                out.push(UnsettledChunk {
                    series,
                    chunk: chunk.clone(),
                });
            }
        }
        out
    }

    /// Puts settled chunks in place of the unsettled ones they came from, where those are
    /// still held (an out-of-order write or retention may have replaced or dropped them);
    /// returns how many were.
    pub fn install_settled(&mut self, items: Vec<SettledChunk>) -> usize {
        let mut installed = 0;
        for item in items {
            if let Some(e) = self.series.get_mut(item.series as usize) {
                installed += usize::from(e.samples.install_settled(&item.unsettled, item.settled));
            }
        }
        installed
    }

    /// Settles every listed unsettled chunk in place; returns how many. (Chunks a settler
    /// took with [`Tsdb::unsettled_chunks`] are no longer listed until it installs them;
    /// whatever sizes or writes chunks therefore uses their settled form, not this.)
    pub fn settle_all(&mut self) -> usize {
        let mut n = 0;
        while let Some((series, _)) = self.unsettled.pop_front() {
            if let Some(e) = self.series.get_mut(series as usize) {
                n += e.samples.settle_all();
            }
        }
        n
    }

    /// Sealed chunks listed as not settled yet (some may have been replaced since).
    pub fn unsettled_len(&self) -> usize {
        self.unsettled.len()
    }

    /// The id of an indexed series; `hash` must be `SeriesIndex::hash(labels)`.
    fn lookup(&self, labels: &Labels, hash: u64) -> Option<SeriesId> {
        debug_assert_eq!(hash, assay_ledger::SeriesIndex::hash(labels));
        self.by_labels.get(hash, |id| self.is_series(id, labels))
    }

    /// Whether series `id` has these labels: the same shared pairs (labels that came from
    /// the same parse cache entry), else the flat key compared.
    fn is_series(&self, id: SeriesId, labels: &Labels) -> bool {
        self.addrs[id as usize] == labels.addr() || self.series[id as usize].labels == *labels
    }

    /// Whether a hinted id is in range and holds `labels`.
    fn is_series_hinted(&self, id: SeriesId, labels: &Labels) -> bool {
        (id as usize) < self.addrs.len() && self.is_series(id, labels)
    }

    fn series_id(&mut self, labels: &Labels) -> SeriesId {
        self.series_id_hashed(labels, assay_ledger::SeriesIndex::hash(labels))
    }

    /// `hash` must be `SeriesIndex::hash(labels)` (a batch carries it).
    fn series_id_hashed(&mut self, labels: &Labels, hash: u64) -> SeriesId {
        debug_assert_eq!(hash, assay_ledger::SeriesIndex::hash(labels));
        if let Some(id) = self.lookup(labels, hash) {
            return self.resolve_found(id, labels);
        }
        self.create_series(labels, hash)
    }

    /// Series `id`, found holding `labels`, as a batch sample resolves it.
    fn resolve_found(&mut self, id: SeriesId, labels: &Labels) -> SeriesId {
        {
            let held = &mut self.series[id as usize].labels;
            debug_assert!(*held == *labels);
            // Share the batch's pairs (equal, so nothing observable changes): batches from
            // the parser's series cache then match by pointer (see `is_series`), also after
            // a restart built these labels anew.
            if held.addr() != labels.addr() {
                *held = labels.clone();
                self.addrs[id as usize] = labels.addr();
            }
            // Only a batch sample resolves a series, so one retention emptied comes back.
            if self.series[id as usize].samples.is_empty() {
                self.empty_series -= 1;
            }
        }
        id
    }

    /// Indexes a series new to the view.
    fn create_series(&mut self, labels: &Labels, hash: u64) -> SeriesId {
        let id = SeriesId::try_from(self.series.len()).expect("fewer than 2^32 series");
        for (name, value) in labels.pairs() {
            // Look up before inserting: `entry` would copy the strings for every label of
            // every new series, although most names and many values exist already.
            let values = match self.postings.get_mut(name) {
                Some(values) => values,
                None => self.postings.entry(name.to_string()).or_default(),
            };
            match values.get_mut(value) {
                Some(ids) => ids.push(id),
                None => {
                    values.insert(value.to_string(), vec![id]);
                }
            }
        }
        self.by_labels.insert(hash, id);
        self.addrs.push(labels.addr());
        self.series.push(SeriesEntry {
            labels: labels.clone(),
            samples: SampleStore::default(),
            def: None,
        });
        id
    }

    /// SHA-256 over the canonical traversal; equal states have equal digests.
    pub fn digest(&self) -> [u8; 32] {
        snapshot::digest(self)
    }

    /// Number of series (with samples).
    pub fn series_count(&self) -> usize {
        self.series.len() - self.empty_series
    }

    /// Applies one metadata entry's records (see the `metadata` module for what is kept).
    pub fn apply_metadata(&mut self, records: &[assay_ledger::MetricMetadata]) {
        self.metadata.apply(records);
    }

    /// Whether `m` is already the newest record of its metric (writing it again would
    /// change nothing, so senders that repeat metadata every minute do not fill the ledger).
    pub fn metadata_is_newest(&self, m: &assay_ledger::MetricMetadata) -> bool {
        self.metadata
            .by_metric
            .get(&m.metric)
            .and_then(|l| l.last())
            .is_some_and(|r| r.kind == m.kind && r.help == m.help && r.unit == m.unit)
    }

    /// Metadata by metric, as Prometheus' `/api/v1/metadata`: `metric` selects one,
    /// `limit` bounds the metrics and `limit_per_metric` the records of each (newest first).
    pub fn metadata(
        &self,
        metric: Option<&str>,
        limit: usize,
        limit_per_metric: usize,
    ) -> Vec<(&str, Vec<&MetadataRecord>)> {
        fn pick<'a>(
            (name, records): (&'a String, &'a Vec<MetadataRecord>),
            per_metric: usize,
        ) -> (&'a str, Vec<&'a MetadataRecord>) {
            (
                name.as_str(),
                records.iter().rev().take(per_metric).collect(),
            )
        }
        let pick = |kv| pick(kv, limit_per_metric);
        match metric {
            Some(m) => self
                .metadata
                .by_metric
                .get_key_value(m)
                .map(pick)
                .into_iter()
                .collect(),
            None => self
                .metadata
                .by_metric
                .iter()
                .take(limit)
                .map(pick)
                .collect(),
        }
    }

    /// Applies retention as of `now_ms` (a block's time, never the wall clock, so replicas
    /// agree): drops chunks entirely older than `now_ms - retention.time_ms`, then the oldest
    /// chunks until the samples take at most `retention.bytes`, and forgets series left
    /// without samples. Returns the samples dropped.
    pub fn enforce_retention(&mut self, now_ms: i64, retention: &Retention) -> u64 {
        let mut cutoff = match retention.time_ms {
            0 => i64::MIN,
            t => now_ms.saturating_sub(t),
        };
        if retention.bytes > 0 {
            // Sizes as every replica sees them, however far its settling got.
            self.settle_all();
            cutoff = cutoff.max(self.cutoff_for_bytes(retention.bytes));
        }
        if cutoff == i64::MIN {
            return 0;
        }
        let mut dropped = 0u64;
        let mut empty = 0usize;
        for e in &mut self.series {
            dropped += e.samples.drop_before(cutoff) as u64;
            empty += usize::from(e.samples.is_empty());
        }
        self.sample_count -= dropped;
        self.empty_series = empty;
        // Rebuilding the index costs a pass over all series: only when a tenth are dead.
        if self.empty_series * 10 > self.series.len() {
            self.forget_empty_series();
        }
        dropped
    }

    /// The oldest cutoff that brings the samples within `bytes`: newest chunks are kept
    /// first, in 1-minute steps of their newest timestamp.
    fn cutoff_for_bytes(&self, bytes: usize) -> i64 {
        const STEP_MS: i64 = 60_000;
        let mut by_minute: BTreeMap<i64, usize> = BTreeMap::new();
        for e in &self.series {
            for (t, b) in e.samples.chunk_sizes() {
                *by_minute.entry(t.div_euclid(STEP_MS)).or_default() += b;
            }
        }
        let mut kept = 0usize;
        for (&minute, &b) in by_minute.iter().rev() {
            kept += b;
            if kept > bytes {
                return (minute + 1).saturating_mul(STEP_MS);
            }
        }
        i64::MIN
    }

    /// Rebuilds the index without the series that hold no samples; ids of the rest are
    /// reassigned in their old order, so the result depends only on the state.
    fn forget_empty_series(&mut self) {
        // The unsettled list names series by id, which the rebuild moves.
        self.settle_all();
        let old = std::mem::take(&mut self.series);
        let samples = self.sample_count;
        let metadata = std::mem::take(&mut self.metadata);
        *self = Tsdb::new();
        self.metadata = metadata;
        for e in old.into_iter().filter(|e| !e.samples.is_empty()) {
            let id = self.series_id(&e.labels);
            self.series[id as usize].samples = e.samples;
        }
        self.sample_count = samples;
    }

    /// Sealed chunks still on the heap whose newest sample is before `before_ms`, copied
    /// out (up to about `bytes_max` bytes) to be written to a chunk file.
    pub fn chunks_to_offload(&self, before_ms: i64, bytes_max: usize) -> Vec<OffloadItem> {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for (id, e) in self.series.iter().enumerate() {
            for c in e.samples.sealed() {
                if c.max_t() >= before_ms {
                    break;
                }
                if c.file_ref().is_some() || !c.is_settled() {
                    continue;
                }
                if bytes >= bytes_max {
                    return out;
                }
                bytes += c.byte_len();
                out.push(OffloadItem {
                    series: id as SeriesId,
                    labels: e.labels.clone(),
                    chunk: c.clone(),
                });
            }
        }
        out
    }

    /// Points the chunks of `items` at their copies in `file` (`offsets[i]` is where item
    /// `i`'s bytes are). A chunk that changed meanwhile (an out-of-order write recompressed
    /// it, retention dropped it) is left alone. Returns how many moved.
    pub fn install_offloaded(
        &mut self,
        items: &[OffloadItem],
        offsets: &[usize],
        file: &std::sync::Arc<chunk_file::ChunkFile>,
    ) -> usize {
        debug_assert_eq!(items.len(), offsets.len());
        let mut moved = 0;
        for (item, &offset) in items.iter().zip(offsets) {
            let Some(e) = self.series.get_mut(item.series as usize) else {
                continue;
            };
            if e.labels != item.labels {
                continue; // the index was rebuilt: ids moved
            }
            let sealed = e.samples.sealed();
            let i = sealed.partition_point(|c| c.min_t() < item.chunk.min_t());
            if sealed.get(i) != Some(&item.chunk) {
                continue;
            }
            let c = &item.chunk;
            let mapped = chunk::Chunk::mapped(
                file,
                offset,
                c.byte_len(),
                c.min_t(),
                c.max_t(),
                c.len() as u32,
            );
            if let Some(mapped) = mapped.filter(|m| m == c) {
                e.samples.replace_sealed(i, mapped);
                moved += 1;
            }
        }
        moved
    }

    /// Ids of the chunk files the view's chunks live in.
    pub fn chunk_files(&self) -> std::collections::BTreeSet<u64> {
        self.series
            .iter()
            .flat_map(|e| e.samples.sealed().iter().filter_map(|c| c.file_ref()))
            .map(|(id, _, _)| id)
            .collect()
    }

    /// Bytes the samples take in memory (compressed chunks and heads; approximate).
    pub fn sample_bytes(&self) -> usize {
        self.series.iter().map(|e| e.samples.memory_bytes()).sum()
    }

    /// The value series `labels` holds at exactly `t_ms`, if any.
    pub fn value_at_exactly(&self, labels: &Labels, t_ms: i64) -> Option<f64> {
        let id = self.lookup(labels, assay_ledger::SeriesIndex::hash(labels))?;
        self.entry(id).samples.value_at(t_ms)
    }

    /// Sizes of the sealed chunks and the open ones, for benchmarks and metrics.
    pub fn chunk_stats(&self) -> ChunkStats {
        let mut st = ChunkStats::default();
        for e in &self.series {
            for c in e.samples.sealed() {
                st.sealed_chunks += 1;
                st.sealed_samples += c.len() as u64;
                st.sealed_bytes += c.byte_len() as u64;
                if c.encoding() == Some(chunk::ChunkEncoding::Columns) {
                    st.sealed_columns_chunks += 1;
                }
                st.sealed_unsettled_chunks += u64::from(!c.is_settled());
            }
            let (head_samples, head_bytes) = e.samples.head_size();
            st.head_samples += head_samples as u64;
            st.head_bytes += head_bytes as u64;
        }
        st
    }

    /// Number of samples (distinct series and timestamp pairs).
    pub fn sample_count(&self) -> u64 {
        self.sample_count
    }

    /// A versioned, checksummed snapshot of the whole view.
    pub fn encode_snapshot(&self) -> Vec<u8> {
        snapshot::encode(self)
    }

    /// Rebuilds a view from [`Tsdb::encode_snapshot`] bytes; rejects anything else.
    /// Chunks the snapshot keeps in chunk files are mapped from `chunk_dir`.
    pub fn decode_snapshot(
        bytes: &[u8],
        chunk_dir: Option<&std::path::Path>,
    ) -> Result<Tsdb, SnapshotError> {
        snapshot::decode(bytes, chunk_dir)
    }

    /// Label names of the series that match and have samples in `start_ms..=end_ms`.
    pub fn label_names(
        &self,
        matchers: &[Vec<Matcher>],
        start_ms: i64,
        end_ms: i64,
    ) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for id in self.select_any(matchers, start_ms, end_ms) {
            names.extend(
                self.series[id as usize]
                    .labels
                    .pairs()
                    .map(|(n, _)| n.to_string()),
            );
        }
        names.sort();
        names.dedup();
        names
    }

    /// Non-empty values of label `name` among the matching series with samples in range.
    pub fn label_values(
        &self,
        name: &str,
        matchers: &[Vec<Matcher>],
        start_ms: i64,
        end_ms: i64,
    ) -> Vec<String> {
        let mut values: Vec<String> = Vec::new();
        for id in self.select_any(matchers, start_ms, end_ms) {
            match self.series[id as usize].labels.get(name) {
                Some(v) if !v.is_empty() => values.push(v.to_string()),
                _ => {}
            }
        }
        values.sort();
        values.dedup();
        values
    }

    /// Label sets of the matching series with samples in range, sorted.
    pub fn series(&self, matchers: &[Vec<Matcher>], start_ms: i64, end_ms: i64) -> Vec<Labels> {
        let mut out: Vec<Labels> = self
            .select_any(matchers, start_ms, end_ms)
            .into_iter()
            .map(|id| self.series[id as usize].labels.clone())
            .collect();
        out.sort();
        out
    }

    /// Ids matching any of the selectors (all series when none) with samples in range.
    fn select_any(&self, selectors: &[Vec<Matcher>], start_ms: i64, end_ms: i64) -> Vec<SeriesId> {
        let mut ids: Vec<SeriesId> = if selectors.is_empty() {
            (0..self.series.len() as SeriesId).collect()
        } else {
            selectors.iter().flat_map(|s| self.select(s)).collect()
        };
        ids.sort_unstable();
        ids.dedup();
        ids.retain(|&id| self.series[id as usize].samples.overlaps(start_ms, end_ms));
        ids
    }

    /// Ids of the series matching every matcher, ascending.
    fn select(&self, matchers: &[Matcher]) -> Vec<SeriesId> {
        // Start from the narrowest postings list a matcher can name, then filter: this
        // is correct for every matcher kind and fast when one matcher is selective.
        let mut candidates: Option<Vec<SeriesId>> = None;
        for m in matchers.iter().filter(|m| !m.matches("")) {
            let ids = self.postings_for(m);
            if candidates.as_ref().is_none_or(|c| ids.len() < c.len()) {
                candidates = Some(ids);
            }
        }
        let candidates = candidates.unwrap_or_else(|| (0..self.series.len() as SeriesId).collect());
        candidates
            .into_iter()
            .filter(|&id| {
                let labels = &self.series[id as usize].labels;
                matchers
                    .iter()
                    .all(|m| m.matches(labels.get(m.name()).unwrap_or("")))
            })
            .collect()
    }

    /// Ids of series whose label `m.name()` has a value `m` accepts (requires a label).
    fn postings_for(&self, m: &Matcher) -> Vec<SeriesId> {
        let Some(values) = self.postings.get(m.name()) else {
            return Vec::new();
        };
        if m.op() == MatchOp::Equal {
            return values.get(m.value()).cloned().unwrap_or_default();
        }
        let mut ids: Vec<SeriesId> = values
            .iter()
            .filter(|(v, _)| m.matches(v))
            .flat_map(|(_, ids)| ids.iter().copied())
            .collect();
        ids.sort_unstable();
        ids
    }

    fn entry(&self, id: SeriesId) -> &SeriesEntry {
        &self.series[id as usize]
    }

    /// Series in label order, for canonical traversals.
    fn sorted_series(&self) -> impl Iterator<Item = &SeriesEntry> + '_ {
        let mut order: Vec<&SeriesEntry> = self
            .series
            .iter()
            .filter(|e| !e.samples.is_empty())
            .collect();
        order.sort_unstable_by(|a, b| a.labels.cmp(&b.labels));
        order.into_iter()
    }

    /// Rebuilds the index from series given in label order (snapshot decode).
    fn from_sorted_series(entries: Vec<SeriesEntry>) -> Tsdb {
        let mut db = Tsdb::new();
        for e in entries {
            let id = db.series_id(&e.labels);
            db.sample_count += e.samples.len() as u64;
            db.series[id as usize].samples = e.samples;
        }
        db
    }
}

#[cfg(test)]
mod tests;
