//! Reading a ledger directory back: the one routine behind crash recovery and the
//! offline audit (`assay verify`).
//!
//! [`scan`] never writes. It checks every record's checksum, every block's chain link,
//! entries root and tree root, and (when asked) every entry's canonical encoding and
//! every signature. It separates two kinds of damage:
//!
//! - a **torn tail**: the end of the last segment after its last valid block holds an
//!   unsealed or damaged block. Blocks are written one at a time, each synced before the
//!   next is written, so only the last block can be half-written by a crash, and it was
//!   never acknowledged. Recovery truncates it and logs what it dropped.
//! - **corruption**: anything else (a bad record in an older segment, damage followed by
//!   a later valid block, a broken chain link, a persisted checkpoint the data no longer
//!   matches). The node refuses to start and names the first bad entry or block.

use crate::entry::Entry;
use crate::merkle::{leaf_hash, Hash, MerkleTree};
use crate::note::{Checkpoint, Verifier};
use crate::pack::{parse_pack_name, PackIndex};
use crate::segment::{
    parse_segment_name, read_record, BlockHeader, RecordError, RecordType, Seal, SegmentHeader,
    RECORD_HEADER_BYTES, SEAL_BYTES,
};
use crate::storage::Storage;

/// Name of the file holding the last checkpoint the node persisted (a signed note).
pub const CHECKPOINT_FILE: &str = "checkpoint";

/// Where an entry's bytes are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryLocation {
    /// Index into the segment list.
    pub segment: u32,
    /// Offset of the entry's payload in the segment file.
    pub offset: u64,
    /// Payload length.
    pub len: u32,
}

/// What a scan keeps of each block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockSummary {
    /// The block's header.
    pub header: BlockHeader,
    /// `header.hash()`.
    pub hash: Hash,
    /// Signature over the checkpoint body at `header.tree_size`.
    pub checkpoint_sig: [u8; 64],
}

/// One segment file as scanned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentInfo {
    /// File name.
    pub name: String,
    /// Sequence number.
    pub seq: u64,
    /// Bytes of valid records (after truncating any torn tail).
    pub len: u64,
    /// Whether the segment's header record is present (false only for an emptied last segment).
    pub has_header: bool,
    /// The pack's index when the segment is stored packed (`name` is then the pack file).
    pub pack: Option<std::sync::Arc<PackIndex>>,
}

/// An unacknowledged, half-written last block found at the end of the last segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    /// Segment file name.
    pub segment: String,
    /// Where the valid data ends (truncate here).
    pub offset: u64,
    /// Bytes after `offset`.
    pub bytes: u64,
    /// Complete entry records in the dropped block.
    pub entries: u64,
    /// Why the tail is not a complete block.
    pub reason: String,
}

/// Everything recovered from a ledger directory.
pub struct Scanned {
    /// Segments in order.
    pub segments: Vec<SegmentInfo>,
    /// Every entry's location, by index.
    pub locations: Vec<EntryLocation>,
    /// Every block.
    pub blocks: Vec<BlockSummary>,
    /// The tree over every sealed entry.
    pub tree: MerkleTree,
    /// A half-written last block, if any.
    pub torn: Option<TornTail>,
    /// The persisted checkpoint, if the file exists.
    pub persisted: Option<Checkpoint>,
    /// Sealed entries that give series by reference (kind 0x04), by index: what an audit
    /// must resolve.
    pub entries_with_references: Vec<u64>,
    /// Packs whose raw segment still exists (an install cut short by a crash): the raw
    /// segment was read; the pack may be removed.
    pub stale_packs: Vec<String>,
}

/// Damage that is not a torn tail: the ledger cannot be trusted until an operator acts.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{segment} offset {offset}{}: {what}", place(*.entry, *.block))]
pub struct Corruption {
    /// Segment file name (or the checkpoint file).
    pub segment: String,
    /// Byte offset of the bad record in that file.
    pub offset: u64,
    /// Index of the bad entry, when the damage is in one.
    pub entry: Option<u64>,
    /// Height of the bad block, when known.
    pub block: Option<u64>,
    /// What is wrong.
    pub what: String,
}

fn place(entry: Option<u64>, block: Option<u64>) -> String {
    match (entry, block) {
        (Some(e), Some(b)) => format!(" (entry {e}, block {b})"),
        (Some(e), None) => format!(" (entry {e})"),
        (None, Some(b)) => format!(" (block {b})"),
        (None, None) => String::new(),
    }
}

/// How thorough a scan is.
#[derive(Clone, Copy, Debug)]
pub struct ScanChecks<'a> {
    /// Decode every entry and require canonical bytes.
    pub decode_entries: bool,
    /// Verify every block and checkpoint signature with this key.
    pub signatures: Option<&'a Verifier>,
}

/// Reads the directory and checks it; see the module docs for what counts as damage.
pub fn scan<S: Storage>(
    storage: &S,
    origin: &str,
    checks: ScanChecks<'_>,
) -> Result<Scanned, ScanError> {
    let files = storage.list().map_err(ScanError::Io)?;
    let raw: std::collections::BTreeSet<u64> =
        files.iter().filter_map(|n| parse_segment_name(n)).collect();
    let mut stale_packs = Vec::new();
    let mut names: Vec<(u64, String)> = Vec::new();
    for n in files {
        if let Some(s) = parse_segment_name(&n) {
            names.push((s, n));
        } else if let Some(s) = parse_pack_name(&n) {
            if raw.contains(&s) {
                stale_packs.push(n);
            } else {
                names.push((s, n));
            }
        }
    }
    names.sort();
    let mut st = ScanState {
        origin,
        checks,
        out: Scanned {
            segments: Vec::new(),
            locations: Vec::new(),
            blocks: Vec::new(),
            tree: MerkleTree::new(),
            torn: None,
            persisted: None,
            entries_with_references: Vec::new(),
            stale_packs,
        },
        pending: Vec::new(),
    };
    let count = names.len();
    for (i, (seq, name)) in names.into_iter().enumerate() {
        if seq != i as u64 {
            return Err(corrupt(
                &name,
                0,
                None,
                None,
                format!("segment sequence gap: expected {i}, found {seq}"),
            )
            .into());
        }
        let bytes = storage.read(&name).map_err(ScanError::Io)?;
        if name.ends_with(".pack") {
            // A pack is always an older segment: its raw bytes must be whole sealed blocks.
            let unpacked = crate::pack::read_index(&bytes).and_then(|index| {
                crate::pack::unpack_all(&bytes).map(|raw| (std::sync::Arc::new(index), raw))
            });
            let (index, raw) =
                unpacked.map_err(|e| corrupt(&name, 0, None, None, e.to_string()))?;
            st.segment(i as u32, name, &raw, false)?;
            st.out.segments.last_mut().expect("segment pushed").pack = Some(index);
        } else {
            st.segment(i as u32, name, &bytes, i + 1 == count)?;
        }
        // One line per segment (64 MiB each by default): progress for a long recovery or audit.
        tracing::info!(
            segment = i + 1,
            segments = count,
            entries = st.out.tree.size(),
            blocks = st.out.blocks.len(),
            "ledger segment checked"
        );
    }
    st.persisted_checkpoint(storage)?;
    Ok(st.out)
}

/// Why a scan failed.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// The storage could not be read.
    #[error("reading the ledger directory: {0}")]
    Io(std::io::Error),
    /// Damage that is not a torn tail.
    #[error("ledger corrupt: {0}")]
    Corrupt(#[from] Corruption),
}

fn corrupt(
    seg: &str,
    offset: usize,
    entry: Option<u64>,
    block: Option<u64>,
    what: String,
) -> Corruption {
    Corruption {
        segment: seg.to_string(),
        offset: offset as u64,
        entry,
        block,
        what,
    }
}

struct ScanState<'a> {
    origin: &'a str,
    checks: ScanChecks<'a>,
    out: Scanned,
    /// Entries of the block being read: (location, leaf hash, gives series by reference).
    pending: Vec<(EntryLocation, Hash, bool)>,
}

impl ScanState<'_> {
    fn segment(
        &mut self,
        seg: u32,
        name: String,
        bytes: &[u8],
        is_last: bool,
    ) -> Result<(), Corruption> {
        let mut info = SegmentInfo {
            name: name.clone(),
            seq: seg as u64,
            len: 0,
            has_header: false,
            pack: None,
        };
        let mut offset = 0usize;
        let mut block_start = 0usize;
        while offset < bytes.len() {
            let rec = match read_record(bytes, offset) {
                Ok(r) => r,
                Err(e) => {
                    if !is_last {
                        return Err(self.bad_record(&name, offset, &e));
                    }
                    self.torn_tail(&name, bytes, block_start, offset, e.to_string())?;
                    info.len = block_start as u64;
                    self.out.segments.push(info);
                    return Ok(());
                }
            };
            match rec.ty {
                RecordType::Header if offset == 0 => {
                    let h = SegmentHeader::decode(rec.payload).ok_or_else(|| {
                        corrupt(&name, 0, None, None, "segment header is malformed".into())
                    })?;
                    if h.seq != seg as u64 || h.first_index != self.out.tree.size() {
                        let what = format!(
                            "segment header says seq {} first entry {}, expected seq {seg} first entry {}",
                            h.seq,
                            h.first_index,
                            self.out.tree.size()
                        );
                        return Err(corrupt(&name, 0, None, None, what));
                    }
                    info.has_header = true;
                    block_start = rec.end;
                }
                _ if offset == 0 => {
                    return Err(corrupt(
                        &name,
                        0,
                        None,
                        None,
                        "segment does not start with a header record".into(),
                    ))
                }
                RecordType::Header => {
                    return Err(corrupt(
                        &name,
                        offset,
                        None,
                        None,
                        "a second segment header".into(),
                    ));
                }
                RecordType::Entry => self.entry(seg, &name, rec.offset, rec.payload)?,
                RecordType::Seal => {
                    self.seal(&name, rec.offset, rec.payload)?;
                    block_start = rec.end;
                }
            }
            offset = rec.end;
        }
        if !self.pending.is_empty() {
            if !is_last {
                let what = format!(
                    "{} entries at the end of the segment are not sealed by a block",
                    self.pending.len()
                );
                return Err(corrupt(
                    &name,
                    block_start,
                    Some(self.next_index()),
                    None,
                    what,
                ));
            }
            self.torn_tail(
                &name,
                bytes,
                block_start,
                bytes.len(),
                "the last block has no seal".into(),
            )?;
        }
        info.len = block_start as u64;
        self.out.segments.push(info);
        Ok(())
    }

    fn next_index(&self) -> u64 {
        self.out.tree.size() + self.pending.len() as u64
    }

    fn bad_record(&self, name: &str, offset: usize, e: &RecordError) -> Corruption {
        let entry = (offset > 0).then(|| self.next_index());
        let block = Some(self.out.blocks.len() as u64);
        corrupt(
            name,
            offset,
            entry,
            block,
            format!("{e} (a record in the middle of the ledger is damaged)"),
        )
    }

    /// Damage or an unsealed block at the end of the last segment: a torn tail if no
    /// later block was sealed after it, corruption otherwise.
    fn torn_tail(
        &mut self,
        name: &str,
        bytes: &[u8],
        block_start: usize,
        bad: usize,
        reason: String,
    ) -> Result<(), Corruption> {
        let seals_after = count_seals_after(bytes, bad);
        // The open block's own seal may have reached the disk before its entries did; a
        // second seal means a block after the damage was completed, so this is no tear.
        if seals_after >= 2 {
            return Err(corrupt(
                name,
                bad,
                Some(self.next_index()),
                Some(self.out.blocks.len() as u64),
                format!("{reason}, and {seals_after} sealed blocks follow the damage"),
            ));
        }
        self.out.torn = Some(TornTail {
            segment: name.to_string(),
            offset: block_start as u64,
            bytes: (bytes.len() - block_start) as u64,
            entries: self.pending.len() as u64,
            reason,
        });
        self.pending.clear();
        Ok(())
    }

    fn entry(
        &mut self,
        seg: u32,
        name: &str,
        offset: usize,
        payload: &[u8],
    ) -> Result<(), Corruption> {
        let index = self.next_index();
        if self.checks.decode_entries {
            if let Err(e) = Entry::validate(payload) {
                return Err(corrupt(
                    name,
                    offset,
                    Some(index),
                    None,
                    format!("entry is not canonical: {e}"),
                ));
            }
        }
        let loc = EntryLocation {
            segment: seg,
            offset: (offset + RECORD_HEADER_BYTES) as u64,
            len: payload.len() as u32,
        };
        let refers = Entry::has_series_references(payload);
        self.pending.push((loc, leaf_hash(payload), refers));
        Ok(())
    }

    fn seal(&mut self, name: &str, offset: usize, payload: &[u8]) -> Result<(), Corruption> {
        let height = self.out.blocks.len() as u64;
        let bad = |what: String| corrupt(name, offset, None, Some(height), what);
        let seal = Seal::decode(payload).ok_or_else(|| bad("block seal is malformed".into()))?;
        let h = &seal.header;
        let (prev_hash, prev_time) = match self.out.blocks.last() {
            Some(b) => (b.hash, b.header.time_ms),
            None => ([0; 32], i64::MIN),
        };
        let first = self.out.tree.size();
        let n = self.pending.len() as u64;
        let mut block_tree = MerkleTree::new();
        for (_, leaf, _) in &self.pending {
            block_tree.push(*leaf);
        }
        // Messages are built only for a failing check: this runs once per block at start-up.
        let failed = if h.height != height {
            Some(format!(
                "block height {} where {height} was expected",
                h.height
            ))
        } else if h.prev_hash != prev_hash {
            Some("previous-block hash does not match the block before".into())
        } else if h.time_ms < prev_time {
            Some(format!(
                "block time {} goes back before {prev_time}",
                h.time_ms
            ))
        } else if n == 0 || h.first_index != first || u64::from(h.entry_count) != n {
            Some(format!(
                "block claims entries {}..+{} but {n} entries from {first} precede its seal",
                h.first_index, h.entry_count
            ))
        } else if h.entries_root != block_tree.root() {
            Some("entries root does not match the block's entries".into())
        } else if h.tree_size != first + n {
            Some(format!(
                "tree size {} where {} was expected",
                h.tree_size,
                first + n
            ))
        } else {
            None
        };
        if let Some(what) = failed {
            return Err(bad(what));
        }
        for (loc, leaf, refers) in self.pending.drain(..) {
            if refers {
                let index = self.out.locations.len() as u64;
                self.out.entries_with_references.push(index);
            }
            self.out.tree.push(leaf);
            self.out.locations.push(loc);
        }
        if h.tree_root != self.out.tree.root() {
            return Err(bad(
                "tree root does not match the entries (an entry was altered)".into(),
            ));
        }
        let hash = h.hash();
        if let Some(v) = self.checks.signatures {
            if v.verify(&hash, &seal.block_sig).is_err() {
                return Err(bad(
                    "block signature does not verify with the node key".into()
                ));
            }
            let body = Checkpoint {
                origin: self.origin.to_string(),
                size: h.tree_size,
                root: h.tree_root,
                extensions: vec![],
            }
            .body();
            if v.verify(body.as_bytes(), &seal.checkpoint_sig).is_err() {
                return Err(bad(
                    "checkpoint signature does not verify with the node key".into(),
                ));
            }
        }
        self.out.blocks.push(BlockSummary {
            header: seal.header,
            hash,
            checkpoint_sig: seal.checkpoint_sig,
        });
        Ok(())
    }

    /// The persisted checkpoint must describe a prefix of what was recovered: recovery
    /// may drop an unacknowledged tail, never what a checkpoint already vouched for.
    fn persisted_checkpoint<S: Storage>(&mut self, storage: &S) -> Result<(), Corruption> {
        let text = match storage.read(CHECKPOINT_FILE) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(corrupt(
                    CHECKPOINT_FILE,
                    0,
                    None,
                    None,
                    format!("unreadable: {e}"),
                ))
            }
        };
        let bad = |what: String| corrupt(CHECKPOINT_FILE, 0, None, None, what);
        let text = String::from_utf8(text).map_err(|_| bad("not UTF-8".into()))?;
        let body_end = text
            .find("\n\n")
            .ok_or_else(|| bad("not a signed note".into()))?
            + 1;
        let cp = Checkpoint::parse_body(&text[..body_end]).map_err(|e| bad(e.to_string()))?;
        if let Some(v) = self.checks.signatures {
            crate::note::open_checkpoint(&text, v).map_err(|e| bad(format!("signature: {e}")))?;
        }
        let size = self.out.tree.size();
        if cp.size > size {
            return Err(bad(format!(
                "the persisted checkpoint covers {} entries but only {size} are intact: acknowledged entries are missing or damaged",
                cp.size
            )));
        }
        let root = self
            .out
            .tree
            .root_at(cp.size)
            .map_err(|e| bad(e.to_string()))?;
        if root != cp.root {
            return Err(bad(format!(
                "the ledger's root at size {} differs from the persisted checkpoint",
                cp.size
            )));
        }
        self.out.persisted = Some(cp);
        Ok(())
    }
}

/// Valid seal records found after `from`, resynchronising byte by byte. Only frames
/// with a seal's exact length are checksummed, which keeps this linear.
fn count_seals_after(bytes: &[u8], from: usize) -> usize {
    let mut count = 0;
    let mut pos = from + 1;
    while pos + RECORD_HEADER_BYTES + SEAL_BYTES <= bytes.len() {
        let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().expect("4 bytes")) as usize;
        if len == SEAL_BYTES && bytes[pos + 8] == RecordType::Seal as u8 {
            if let Ok(r) = read_record(bytes, pos) {
                count += 1;
                pos = r.end;
                continue;
            }
        }
        pos += 1;
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{Ledger, LedgerConfig};
    use crate::note::Signer;
    use crate::segment::{put_record, read_record, segment_name};
    use crate::storage::{SimStorage, Storage};
    use expect_test::expect;

    /// A three-block ledger on a simulated disk, and its single segment's bytes.
    fn ledger() -> (SimStorage, Signer, Vec<u8>) {
        let signer = Signer::from_seed("scan.assay/test", [4; 32]).unwrap();
        let (mut l, _) =
            Ledger::open(SimStorage::new(), signer.clone(), LedgerConfig::default()).unwrap();
        for b in 0..3u8 {
            l.append_block(1_000 + b as i64, &[&[b, 1][..], &[b, 2][..]])
                .unwrap();
        }
        let disk = l.into_storage();
        let bytes = disk.read(&segment_name(0)).unwrap();
        (disk, signer, bytes)
    }

    /// Rewrites block 1's seal with `edit` applied (and a valid checksum), then audits.
    fn check(edit: impl Fn(&mut Seal), expect: expect_test::Expect) {
        let (_, signer, bytes) = ledger();
        let mut out = Vec::new();
        let mut offset = 0;
        let mut seals = 0;
        while offset < bytes.len() {
            let r = read_record(&bytes, offset).unwrap();
            if r.ty == RecordType::Seal {
                let mut seal = Seal::decode(r.payload).unwrap();
                if seals == 1 {
                    edit(&mut seal);
                }
                seals += 1;
                put_record(&mut out, RecordType::Seal, &seal.encode());
            } else {
                out.extend_from_slice(&bytes[r.offset..r.end]);
            }
            offset = r.end;
        }
        let mut disk = SimStorage::new();
        disk.create(&segment_name(0)).unwrap();
        disk.append(&segment_name(0), &out).unwrap();
        let v = signer.verifier();
        let checks = ScanChecks {
            decode_entries: false,
            signatures: Some(&v),
        };
        let err = match scan(&disk, signer.name(), checks) {
            Ok(_) => "intact".to_string(),
            Err(e) => e.to_string(),
        };
        expect.assert_eq(&err);
    }

    #[test]
    fn every_seal_check_names_the_block() {
        check(|_| {}, expect!["intact"]);
        check(|s| s.header.height += 1, expect!["ledger corrupt: 00000000000000000000.seg offset 388 (block 1): block height 2 where 1 was expected"]);
        check(|s| s.header.prev_hash[0] ^= 1, expect!["ledger corrupt: 00000000000000000000.seg offset 388 (block 1): previous-block hash does not match the block before"]);
        check(|s| s.header.time_ms = 0, expect!["ledger corrupt: 00000000000000000000.seg offset 388 (block 1): block time 0 goes back before 1000"]);
        check(|s| s.header.entry_count = 3, expect!["ledger corrupt: 00000000000000000000.seg offset 388 (block 1): block claims entries 2..+3 but 2 entries from 2 precede its seal"]);
        check(|s| s.header.entries_root[5] ^= 1, expect!["ledger corrupt: 00000000000000000000.seg offset 388 (block 1): entries root does not match the block's entries"]);
        check(|s| s.header.tree_size = 5, expect!["ledger corrupt: 00000000000000000000.seg offset 388 (block 1): tree size 5 where 4 was expected"]);
        check(|s| s.header.tree_root[0] ^= 1, expect!["ledger corrupt: 00000000000000000000.seg offset 388 (block 1): tree root does not match the entries (an entry was altered)"]);
        check(|s| s.block_sig[0] ^= 1, expect!["ledger corrupt: 00000000000000000000.seg offset 388 (block 1): block signature does not verify with the node key"]);
        check(|s| s.checkpoint_sig[9] ^= 1, expect!["ledger corrupt: 00000000000000000000.seg offset 388 (block 1): checkpoint signature does not verify with the node key"]);
    }
}
