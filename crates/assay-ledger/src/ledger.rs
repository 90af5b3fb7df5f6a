//! The ledger: append blocks durably, serve entries, proofs and checkpoints.
//!
//! [`Ledger::append_block`] writes a block's records and syncs them before it returns;
//! blocks are written strictly one after another (the next block's bytes are not
//! written before the previous block's sync returned), which is what lets recovery
//! call any damage in the last block a torn write (see [`crate::scan`]).
//!
//! After any storage error the ledger refuses further appends: after a failed fsync the
//! file's contents are unknown, and only a restart (recovery) may decide what is there.

use crate::entry::ENTRY_BYTES_MAX;
use crate::merkle::{leaf_hash, Hash, MerkleTree, ProofError};
use crate::note::{Checkpoint, Signer};
use crate::pack::{pack_name, read_dict, read_index, read_section, PackIndex, SeriesDict};
use crate::scan::{
    scan, BlockSummary, EntryLocation, ScanChecks, ScanError, SegmentInfo, TornTail,
    CHECKPOINT_FILE,
};
use crate::segment::{
    put_record, segment_name, BlockHeader, RecordType, Seal, SegmentHeader, RECORD_HEADER_BYTES,
};
use crate::storage::{FileBytes, Storage};
use base64::Engine as _;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// Limits of the ledger's files and blocks.
#[derive(Clone, Debug)]
pub struct LedgerConfig {
    /// A new segment starts once the current one would grow past this.
    pub segment_bytes_max: u64,
    /// Entries per block at most.
    pub block_entries_max: usize,
    /// Encoded bytes per block at most (one entry may exceed it alone).
    pub block_bytes_max: usize,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        LedgerConfig {
            // Packing works on whole segments and the last one stays raw (~15 B per
            // remote-write sample with series references), so smaller segments keep the
            // raw tail small.
            segment_bytes_max: 64 << 20,
            block_entries_max: 4096,
            block_bytes_max: 64 << 20,
        }
    }
}

/// Why an append or a read failed.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// Opening found damage or could not read.
    #[error(transparent)]
    Scan(#[from] ScanError),
    /// A storage operation failed; the ledger accepts no more appends.
    #[error("ledger storage failed, restart the node to recover: {0}")]
    Io(#[from] std::io::Error),
    /// Reading stored bytes failed (the ledger keeps running).
    #[error("reading the ledger: {0}")]
    Read(std::io::Error),
    /// An earlier storage error stopped the ledger.
    #[error("the ledger stopped after a storage error; restart the node to recover")]
    Stopped,
    /// The block is empty or over a limit.
    #[error("block rejected: {0}")]
    Block(String),
    /// No entry at that index.
    #[error("entry {index} does not exist (the ledger holds {size} entries)")]
    NoEntry {
        /// Requested index.
        index: u64,
        /// Entries in the ledger.
        size: u64,
    },
    /// A proof request is out of range.
    #[error(transparent)]
    Proof(#[from] ProofError),
    /// A segment could not be packed (it stays raw).
    #[error("packing a ledger segment: {0}")]
    Pack(String),
}

/// What [`Ledger::open`] found and did.
#[derive(Clone, Debug, Default)]
pub struct Recovery {
    /// Entries recovered.
    pub entries: u64,
    /// Blocks recovered.
    pub blocks: u64,
    /// An unacknowledged half-written block that was truncated.
    pub truncated: Option<TornTail>,
}

/// A checkpoint with its signed-note text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedCheckpoint {
    /// The parsed checkpoint.
    pub checkpoint: Checkpoint,
    /// The signed note (body, blank line, signature line).
    pub note: String,
}

/// The append-only ledger over one storage directory.
pub struct Ledger<S: Storage> {
    storage: S,
    signer: Signer,
    config: LedgerConfig,
    segments: Vec<SegmentInfo>,
    locations: Vec<EntryLocation>,
    blocks: Vec<BlockSummary>,
    tree: MerkleTree,
    stopped: bool,
    pack_cache: Mutex<PackCache>,
    /// The block being written, reused from block to block: a fresh buffer of a block's
    /// size (megabytes under load) was paid for again in page faults every block.
    write_buf: Vec<u8>,
}

/// A write buffer larger than this is not kept after its block.
const WRITE_BUF_KEPT_MAX: usize = 16 << 20;

/// Entry `index` of a ledger whose segments and entry locations are these: from the raw
/// segment, or from the frame of its pack that holds it (through `cache`).
fn read_entry<S: Storage>(
    storage: &S,
    segments: &[SegmentInfo],
    locations: &[EntryLocation],
    cache: &Mutex<PackCache>,
    index: u64,
) -> Result<Vec<u8>, LedgerError> {
    let loc = locations.get(index as usize).ok_or(LedgerError::NoEntry {
        index,
        size: locations.len() as u64,
    })?;
    let seg = &segments[loc.segment as usize];
    if let Some(pack) = &seg.pack {
        let f = pack
            .frame_of(loc.offset)
            .ok_or_else(|| invalid(format!("{}: no frame holds entry {index}", seg.name)))?;
        let frame = pack_frame(storage, segments, cache, loc.segment, pack, f)?;
        let start = (loc.offset - pack.frames[f].raw_start) as usize;
        return frame
            .get(start..start + loc.len as usize)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| invalid(format!("{}: entry {index} overruns its frame", seg.name)));
    }
    storage
        .read_at(&seg.name, loc.offset, loc.len as usize)
        .map_err(LedgerError::Read)
}

/// The raw records of frame `f` of packed segment `seg`, through the cache.
fn pack_frame<S: Storage>(
    storage: &S,
    segments: &[SegmentInfo],
    cache: &Mutex<PackCache>,
    seg: u32,
    pack: &PackIndex,
    f: usize,
) -> Result<Arc<Vec<u8>>, LedgerError> {
    let mut cache = cache.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, bytes)) = cache.frames.iter().find(|(k, _)| *k == (seg, f)) {
        return Ok(bytes.clone());
    }
    let name = &segments[seg as usize].name;
    let section = |s: &crate::pack::SectionRef, what: &str| -> Result<Vec<u8>, LedgerError> {
        // Read just the section; offsets in `SectionRef` are file offsets.
        let z = storage
            .read_at(name, s.offset, s.len as usize)
            .map_err(LedgerError::Read)?;
        let shifted = crate::pack::SectionRef { offset: 0, ..*s };
        read_section(&z, &shifted, what).map_err(|e| invalid(format!("{name}: {e}")))
    };
    let dict = match &cache.dict {
        Some((s, d)) if *s == seg => d.clone(),
        _ => {
            let body = section(&pack.dict, "series dictionary")?;
            let d = Arc::new(read_dict(&body).map_err(|e| invalid(format!("{name}: {e}")))?);
            cache.dict = Some((seg, d.clone()));
            d
        }
    };
    let body = section(&pack.frames[f].section, &format!("frame {f}"))?;
    let raw = crate::pack::unpack_frame(&body, &dict, &pack.frames[f])
        .map_err(|e| invalid(format!("{name}: {e}")))?;
    let raw = Arc::new(raw);
    if cache.frames.len() == PACK_CACHE_FRAMES {
        cache.frames.pop_front();
    }
    cache.frames.push_back(((seg, f), raw.clone()));
    Ok(raw)
}

/// Reads the entries of a ledger that a [`scan`](crate::scan::scan) found, without opening
/// it (nothing is written: an audit reads a stopped node's directory as it is).
pub struct ScannedEntries<'a, S: Storage> {
    storage: &'a S,
    scanned: &'a crate::scan::Scanned,
    cache: Mutex<PackCache>,
}

impl<'a, S: Storage> ScannedEntries<'a, S> {
    /// A reader of the entries `scanned` (the result of scanning `storage`) locates.
    pub fn new(storage: &'a S, scanned: &'a crate::scan::Scanned) -> Self {
        ScannedEntries {
            storage,
            scanned,
            cache: Mutex::new(PackCache::default()),
        }
    }

    /// Entry `index`'s bytes.
    pub fn entry(&self, index: u64) -> Result<Vec<u8>, LedgerError> {
        read_entry(
            self.storage,
            &self.scanned.segments,
            &self.scanned.locations,
            &self.cache,
            index,
        )
    }

    /// Entries located (sealed ones).
    pub fn len(&self) -> u64 {
        self.scanned.locations.len() as u64
    }

    /// True when no entry is located.
    pub fn is_empty(&self) -> bool {
        self.scanned.locations.is_empty()
    }
}

/// Frames of packed segments decoded for reads, newest last; a read of an old entry
/// decodes its whole frame, so reads of its neighbours (a block, a replay) reuse it.
#[derive(Default)]
struct PackCache {
    dict: Option<(u32, Arc<SeriesDict>)>,
    frames: VecDeque<(FrameKey, Arc<Vec<u8>>)>,
}

/// (segment, frame number).
type FrameKey = (u32, usize);

/// Decoded frames kept for reads (each up to a frame's raw size, 32 MiB by default).
const PACK_CACHE_FRAMES: usize = 2;

fn invalid(e: impl std::fmt::Display) -> LedgerError {
    LedgerError::Read(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        e.to_string(),
    ))
}

impl<S: Storage> Ledger<S> {
    /// Opens the ledger, recovering from a crash: a torn last block is truncated and
    /// logged; any other damage is an error naming it.
    pub fn open(
        mut storage: S,
        signer: Signer,
        config: LedgerConfig,
    ) -> Result<(Ledger<S>, Recovery), LedgerError> {
        let checks = ScanChecks {
            decode_entries: false,
            signatures: None,
        };
        let scanned = scan(&storage, signer.name(), checks)?;
        if let Some(t) = &scanned.torn {
            tracing::warn!(
                segment = %t.segment, offset = t.offset, bytes = t.bytes, entries = t.entries, reason = %t.reason,
                "truncating an unacknowledged half-written block at the end of the ledger"
            );
            storage.truncate(&t.segment, t.offset)?;
        }
        for stale in &scanned.stale_packs {
            tracing::warn!(file = %stale, "removing a pack whose install a crash cut short (the raw segment is kept)");
            storage.remove(stale)?;
        }
        let recovery = Recovery {
            entries: scanned.tree.size(),
            blocks: scanned.blocks.len() as u64,
            truncated: scanned.torn.clone(),
        };
        let mut ledger = Ledger {
            storage,
            signer,
            config,
            segments: scanned.segments,
            locations: scanned.locations,
            blocks: scanned.blocks,
            tree: scanned.tree,
            stopped: false,
            pack_cache: Mutex::new(PackCache::default()),
            write_buf: Vec::new(),
        };
        ledger.ensure_segment()?;
        Ok((ledger, recovery))
    }

    /// Makes sure the last segment exists and starts with its header.
    fn ensure_segment(&mut self) -> Result<(), LedgerError> {
        if self.segments.is_empty() {
            let name = segment_name(0);
            self.storage.create(&name)?;
            self.segments.push(SegmentInfo {
                name,
                seq: 0,
                len: 0,
                has_header: false,
                pack: None,
            });
        }
        let last = self.segments.last_mut().expect("one segment exists");
        if !last.has_header {
            let mut buf = Vec::new();
            let header = SegmentHeader {
                seq: last.seq,
                first_index: self.tree.size(),
            };
            put_record(&mut buf, RecordType::Header, &header.encode());
            self.storage.append(&last.name, &buf)?;
            self.storage.sync(&last.name)?;
            last.len = buf.len() as u64;
            last.has_header = true;
        }
        Ok(())
    }

    /// Entries in the ledger.
    pub fn size(&self) -> u64 {
        self.tree.size()
    }

    /// Blocks in the ledger.
    pub fn height(&self) -> u64 {
        self.blocks.len() as u64
    }

    /// Every block, in order.
    pub fn blocks(&self) -> &[BlockSummary] {
        &self.blocks
    }

    /// The ledger's limits.
    pub fn config(&self) -> &LedgerConfig {
        &self.config
    }

    /// The signing identity (its name is the checkpoint origin).
    pub fn signer(&self) -> &Signer {
        &self.signer
    }

    /// The Merkle tree over all entries.
    pub fn tree(&self) -> &MerkleTree {
        &self.tree
    }

    /// Appends one block holding `entries` (encoded), durably. `time_ms` is raised to
    /// the previous block's time if it is earlier, so block time never decreases.
    pub fn append_block(
        &mut self,
        time_ms: i64,
        entries: &[&[u8]],
    ) -> Result<BlockSummary, LedgerError> {
        if self.stopped {
            return Err(LedgerError::Stopped);
        }
        self.check_block(entries)?;
        let before = self.tree.size();
        let result = self.write_block(time_ms, entries);
        if result.is_err() {
            self.stopped = true;
            self.tree.truncate(before);
        }
        result
    }

    fn check_block(&self, entries: &[&[u8]]) -> Result<(), LedgerError> {
        if entries.is_empty() || entries.len() > self.config.block_entries_max {
            let max = self.config.block_entries_max;
            return Err(LedgerError::Block(format!(
                "{} entries; a block holds 1..={max}",
                entries.len()
            )));
        }
        if let Some(e) = entries
            .iter()
            .find(|e| e.is_empty() || e.len() > ENTRY_BYTES_MAX)
        {
            return Err(LedgerError::Block(format!(
                "an entry of {} bytes; entries hold 1..={ENTRY_BYTES_MAX}",
                e.len()
            )));
        }
        Ok(())
    }

    fn write_block(
        &mut self,
        time_ms: i64,
        entries: &[&[u8]],
    ) -> Result<BlockSummary, LedgerError> {
        let first_index = self.tree.size();
        let mut block_tree = MerkleTree::new();
        for e in entries {
            let leaf = leaf_hash(e);
            block_tree.push(leaf);
            self.tree.push(leaf);
        }
        let (prev_hash, prev_time) = match self.blocks.last() {
            Some(b) => (b.hash, b.header.time_ms),
            None => ([0; 32], i64::MIN),
        };
        let header = BlockHeader {
            height: self.blocks.len() as u64,
            time_ms: time_ms.max(prev_time),
            prev_hash,
            first_index,
            entry_count: entries.len() as u32,
            entries_root: block_tree.root(),
            tree_size: self.tree.size(),
            tree_root: self.tree.root(),
            round: 0,
            certificate_hash: [0; 32],
        };
        let hash = header.hash();
        let body = self
            .checkpoint_at(header.tree_size, header.tree_root)
            .body();
        let seal = Seal {
            block_sig: self.signer.sign(&hash),
            checkpoint_sig: self.signer.sign(body.as_bytes()),
            header,
        };

        let bytes: usize = entries.iter().map(|e| e.len() + RECORD_HEADER_BYTES).sum();
        let mut buf = std::mem::take(&mut self.write_buf);
        buf.clear();
        buf.reserve(bytes + 512);
        self.roll_segment_if_full(bytes as u64, first_index, &mut buf)?;
        let seg = self.segments.len() - 1;
        let mut locations = Vec::with_capacity(entries.len());
        for e in entries {
            let offset = self.segments[seg].len + (buf.len() + RECORD_HEADER_BYTES) as u64;
            locations.push(EntryLocation {
                segment: seg as u32,
                offset,
                len: e.len() as u32,
            });
            put_record(&mut buf, RecordType::Entry, e);
        }
        put_record(&mut buf, RecordType::Seal, &seal.encode());
        let name = self.segments[seg].name.clone();
        self.storage.append(&name, &buf)?;
        self.storage.sync(&name)?;
        self.segments[seg].len += buf.len() as u64;
        if buf.capacity() <= WRITE_BUF_KEPT_MAX {
            self.write_buf = buf;
        }
        self.locations.extend(locations);
        let summary = BlockSummary {
            header: seal.header,
            hash,
            checkpoint_sig: seal.checkpoint_sig,
        };
        self.blocks.push(summary.clone());
        Ok(summary)
    }

    /// Starts a new segment (its header goes first in `buf`) when the block would push
    /// the current one past its size limit and the current one already holds a block.
    fn roll_segment_if_full(
        &mut self,
        block_bytes: u64,
        first_index: u64,
        buf: &mut Vec<u8>,
    ) -> Result<(), LedgerError> {
        let last = self.segments.last().expect("a segment exists after open");
        if last.len + block_bytes <= self.config.segment_bytes_max
            || !self.last_segment_holds_block()
        {
            return Ok(());
        }
        // The header is written with the block and synced with it; a crash before that
        // leaves an empty last segment, which recovery completes.
        let seq = self.create_next_segment(true)?;
        let header = SegmentHeader { seq, first_index };
        put_record(buf, RecordType::Header, &header.encode());
        Ok(())
    }

    fn checkpoint_at(&self, size: u64, root: Hash) -> Checkpoint {
        Checkpoint {
            origin: self.signer.name().to_string(),
            size,
            root,
            extensions: vec![],
        }
    }

    /// The checkpoint of the last block (the empty tree, signed now, before any block).
    pub fn checkpoint(&self) -> SignedCheckpoint {
        match self.blocks.last() {
            Some(b) => self.block_checkpoint(b),
            None => {
                let cp = self.checkpoint_at(0, self.tree.root());
                let note = cp.sign(&self.signer);
                SignedCheckpoint {
                    checkpoint: cp,
                    note,
                }
            }
        }
    }

    /// The checkpoint a block carries, rebuilt as a signed note from its stored signature.
    pub fn block_checkpoint(&self, b: &BlockSummary) -> SignedCheckpoint {
        let cp = self.checkpoint_at(b.header.tree_size, b.header.tree_root);
        let mut sig = Vec::with_capacity(68);
        sig.extend_from_slice(&self.signer.key_id().to_be_bytes());
        sig.extend_from_slice(&b.checkpoint_sig);
        let b64 = base64::engine::general_purpose::STANDARD.encode(sig);
        let note = format!("{}\n\u{2014} {} {b64}\n", cp.body(), self.signer.name());
        SignedCheckpoint {
            checkpoint: cp,
            note,
        }
    }

    /// Writes the latest checkpoint to the checkpoint file, so recovery can tell that
    /// everything up to it was acknowledged (see [`crate::scan`]).
    pub fn persist_checkpoint(&mut self) -> Result<(), LedgerError> {
        if self.stopped {
            return Err(LedgerError::Stopped);
        }
        let note = self.checkpoint().note;
        self.storage
            .write_atomic(CHECKPOINT_FILE, note.as_bytes())
            .inspect_err(|_| self.stopped = true)?;
        Ok(())
    }

    /// The exact bytes of entry `index`.
    pub fn entry(&self, index: u64) -> Result<Vec<u8>, LedgerError> {
        read_entry(
            &self.storage,
            &self.segments,
            &self.locations,
            &self.pack_cache,
            index,
        )
    }

    /// Ends the segment being appended to when it holds at least `bytes_min` bytes and a
    /// block: the next segment is created with its header, durably, so the ended one can be
    /// packed (a clean stop does this, so a stopped ledger is all packs). True if it did.
    pub fn end_segment(&mut self, bytes_min: u64) -> Result<bool, LedgerError> {
        if self.stopped {
            return Err(LedgerError::Stopped);
        }
        let last = self.segments.last().expect("a segment exists after open");
        if !self.last_segment_holds_block() || last.len < bytes_min {
            return Ok(false);
        }
        self.create_next_segment(false)
            .and_then(|_| self.ensure_segment())
            .inspect_err(|_| self.stopped = true)?;
        Ok(true)
    }

    /// Whether the segment being appended to holds at least one block.
    fn last_segment_holds_block(&self) -> bool {
        self.locations
            .last()
            .is_some_and(|l| l.segment as usize == self.segments.len() - 1)
    }

    /// Creates the file of the segment after the last one (durably) and lists it; its
    /// header is still to be written (`has_header` says whether the caller's next write
    /// carries it). The new segment's sequence number.
    fn create_next_segment(&mut self, has_header: bool) -> Result<u64, LedgerError> {
        let seq = self
            .segments
            .last()
            .expect("a segment exists after open")
            .seq
            + 1;
        let name = segment_name(seq);
        self.storage.create(&name)?;
        self.segments.push(SegmentInfo {
            name,
            seq,
            len: 0,
            has_header,
            pack: None,
        });
        Ok(seq)
    }

    /// Sequence numbers of sealed segments still stored raw (every segment but the one
    /// being appended to), oldest first.
    pub fn unpacked_segments(&self) -> Vec<u64> {
        let n = self.segments.len();
        self.segments[..n.saturating_sub(1)]
            .iter()
            .filter(|s| s.pack.is_none())
            .map(|s| s.seq)
            .collect()
    }

    /// The bytes of sealed raw segment `seq` (mapped where the storage can), to pack outside
    /// any lock: packing is slow.
    pub fn segment_bytes(&self, seq: u64) -> Result<FileBytes, LedgerError> {
        let seg = self.sealed_raw(seq)?;
        self.storage
            .read_sealed(&seg.name, seg.len as usize)
            .map_err(LedgerError::Read)
    }

    fn sealed_raw(&self, seq: u64) -> Result<&SegmentInfo, LedgerError> {
        let last = (self.segments.len() as u64).saturating_sub(1);
        match self.segments.get(seq as usize) {
            Some(s) if seq < last && s.pack.is_none() => Ok(s),
            _ => Err(LedgerError::Pack(format!(
                "segment {seq} is not a sealed raw segment (the last segment is {last})"
            ))),
        }
    }

    /// Stores `pack` (made by [`crate::pack::pack_segment`] from [`Ledger::segment_bytes`])
    /// in place of raw segment `seq`: the pack is written durably, then the raw file removed.
    /// A crash in between leaves both; the next open keeps the raw one.
    pub fn install_pack(&mut self, seq: u64, pack: &[u8]) -> Result<(), LedgerError> {
        let index = self.check_pack(seq, pack)?;
        let name = pack_name(seq);
        self.storage
            .write_atomic(&name, pack)
            .inspect_err(|_| self.stopped = true)?;
        let raw_name = self.swap_in_pack(seq, name, index, pack.len());
        self.storage
            .remove(&raw_name)
            .inspect_err(|_| self.stopped = true)?;
        Ok(())
    }

    /// Writes staged files for [`Ledger::install_staged_pack`] without the ledger (so
    /// without its lock).
    pub fn pack_stager(&self) -> Box<dyn crate::storage::Stager> {
        self.storage.stager()
    }

    /// [`Ledger::install_pack`] for a pack already written with [`Ledger::pack_stager`]
    /// (staged as [`pack_name`]`(seq)`; `pack` are the bytes staged): only renames it into
    /// place. Returns the raw segment's file, which nothing reads any more, for the caller
    /// to remove with the stager off the lock (until then, or after a crash before, both
    /// files exist and the next open keeps the raw one).
    pub fn install_staged_pack(&mut self, seq: u64, pack: &[u8]) -> Result<String, LedgerError> {
        let index = self.check_pack(seq, pack)?;
        let name = pack_name(seq);
        self.storage
            .commit_staged(&name)
            .inspect_err(|_| self.stopped = true)?;
        let raw_name = self.swap_in_pack(seq, name, index, pack.len());
        self.storage.release(&raw_name);
        Ok(raw_name)
    }

    /// The index of `pack` if it can stand for raw segment `seq`.
    fn check_pack(&self, seq: u64, pack: &[u8]) -> Result<PackIndex, LedgerError> {
        if self.stopped {
            return Err(LedgerError::Stopped);
        }
        let raw_len = self.sealed_raw(seq)?.len;
        let index = read_index(pack).map_err(|e| LedgerError::Pack(e.to_string()))?;
        if index.raw_len != raw_len {
            return Err(LedgerError::Pack(format!(
                "the pack holds {} raw bytes, segment {seq} has {raw_len}",
                index.raw_len
            )));
        }
        Ok(index)
    }

    /// Reads segment `seq` from its pack file `name` (durable) from now on; returns the
    /// raw file's name.
    fn swap_in_pack(
        &mut self,
        seq: u64,
        name: String,
        index: PackIndex,
        pack_bytes: usize,
    ) -> String {
        let seg = &mut self.segments[seq as usize];
        let raw_len = seg.len;
        let raw_name = std::mem::replace(&mut seg.name, name);
        seg.pack = Some(Arc::new(index));
        tracing::info!(
            segment = seq,
            raw_bytes = raw_len,
            pack_bytes,
            "ledger segment packed"
        );
        raw_name
    }

    /// Packs every sealed raw segment now (tests and tools; the node packs off its locks).
    pub fn pack_sealed_segments(
        &mut self,
        options: &crate::pack::PackOptions,
    ) -> Result<usize, LedgerError> {
        let seqs = self.unpacked_segments();
        for &seq in &seqs {
            let raw = self.segment_bytes(seq)?;
            let pack = crate::pack::pack_segment(&raw, options)
                .map_err(|e| LedgerError::Pack(e.to_string()))?;
            self.install_pack(seq, &pack)?;
        }
        Ok(seqs.len())
    }

    /// Entries of the block at `height`, in order.
    pub fn block_entries(&self, height: u64) -> Result<Vec<Vec<u8>>, LedgerError> {
        let b = self
            .blocks
            .get(height as usize)
            .ok_or(LedgerError::NoEntry {
                index: height,
                size: self.height(),
            })?;
        (b.header.first_index..b.header.first_index + b.header.entry_count as u64)
            .map(|i| self.entry(i))
            .collect()
    }

    /// The block holding entry `index`.
    pub fn block_of(&self, index: u64) -> Option<&BlockSummary> {
        let i = self.blocks.partition_point(|b| b.header.tree_size <= index);
        self.blocks.get(i)
    }

    /// Inclusion proof of entry `index` in the tree of `size` entries.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, LedgerError> {
        Ok(self.tree.inclusion_proof(index, size)?)
    }

    /// Consistency proof from the tree of `old` entries to the tree of `new` entries.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, LedgerError> {
        Ok(self.tree.consistency_proof(old, new)?)
    }

    /// The storage (for tests and the simulation).
    pub fn storage(&self) -> &S {
        &self.storage
    }

    /// Gives the storage back.
    pub fn into_storage(self) -> S {
        self.storage
    }
}
