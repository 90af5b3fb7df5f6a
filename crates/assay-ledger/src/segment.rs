//! The segment file format: framed, checksummed records.
//!
//! ```text
//! segment  := record*                  (the first record is a Header)
//! record   := len:u32le crc:u32le type:u8 payload[len]
//! crc      := CRC-32 (IEEE) over type ‖ payload
//! Header   (type 1) := "ASSAYSEG" format:u16le(=1) seq:u64le first_index:u64le
//! Entry    (type 2) := the entry's canonical bytes (see `entry`)
//! Seal     (type 3) := BlockHeader (fixed 172 bytes, below) block_sig[64] checkpoint_sig[64]
//! ```
//!
//! A block is its entries' records followed by one Seal; a block never spans two
//! segments. The Seal's `block_sig` is the node's Ed25519 signature over the block hash
//! and `checkpoint_sig` its signature over the C2SP checkpoint body for
//! (`tree_size`, `tree_root`), so every block carries a checkpoint anyone can check.

use crate::merkle::Hash;
use sha2::{Digest, Sha256};

/// Bytes in a record's frame before the payload (len, crc, type).
pub const RECORD_HEADER_BYTES: usize = 9;
/// Largest payload a record may carry; bounds what the reader allocates.
pub const RECORD_PAYLOAD_BYTES_MAX: usize = crate::entry::ENTRY_BYTES_MAX;
/// Magic at the start of every segment's Header record.
pub const SEGMENT_MAGIC: &[u8; 8] = b"ASSAYSEG";
/// Segment format version written in the Header.
pub const SEGMENT_FORMAT: u16 = 1;
/// Encoded size of a [`BlockHeader`].
pub const BLOCK_HEADER_BYTES: usize = 8 + 8 + 32 + 8 + 4 + 32 + 8 + 32 + 8 + 32;
/// Encoded size of a [`Seal`] payload.
pub const SEAL_BYTES: usize = BLOCK_HEADER_BYTES + 64 + 64;

/// What a record holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordType {
    /// The segment's first record.
    Header = 1,
    /// One ledger entry.
    Entry = 2,
    /// Closes a block.
    Seal = 3,
}

/// Appends one framed record to `out`.
pub fn put_record(out: &mut Vec<u8>, ty: RecordType, payload: &[u8]) {
    assert!(
        payload.len() <= RECORD_PAYLOAD_BYTES_MAX,
        "record payload over the limit"
    );
    let mut crc = crc32fast::Hasher::new();
    crc.update(&[ty as u8]);
    crc.update(payload);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.push(ty as u8);
    out.extend_from_slice(payload);
}

/// A record read back from a segment.
#[derive(Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// Its type.
    pub ty: RecordType,
    /// Its payload.
    pub payload: &'a [u8],
    /// Offset of the record's frame in the file.
    pub offset: usize,
    /// Offset just past the record.
    pub end: usize,
}

/// Why the bytes at an offset are not a valid record.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("record frame is cut short by the end of the file")]
    Truncated,
    #[error("record length {0} exceeds the limit")]
    Length(u32),
    #[error("record checksum mismatch")]
    Checksum,
    #[error("record type {0} is unknown")]
    Type(u8),
}

/// Reads the record at `offset`.
pub fn read_record(bytes: &[u8], offset: usize) -> Result<Record<'_>, RecordError> {
    let head = bytes
        .get(offset..offset + RECORD_HEADER_BYTES)
        .ok_or(RecordError::Truncated)?;
    let len = u32::from_le_bytes(head[0..4].try_into().expect("4 bytes"));
    let crc = u32::from_le_bytes(head[4..8].try_into().expect("4 bytes"));
    let ty = head[8];
    if len as usize > RECORD_PAYLOAD_BYTES_MAX {
        return Err(RecordError::Length(len));
    }
    let start = offset + RECORD_HEADER_BYTES;
    let payload = bytes
        .get(start..start + len as usize)
        .ok_or(RecordError::Truncated)?;
    let mut h = crc32fast::Hasher::new();
    h.update(&[ty]);
    h.update(payload);
    if h.finalize() != crc {
        return Err(RecordError::Checksum);
    }
    let ty = match ty {
        1 => RecordType::Header,
        2 => RecordType::Entry,
        3 => RecordType::Seal,
        t => return Err(RecordError::Type(t)),
    };
    Ok(Record {
        ty,
        payload,
        offset,
        end: start + len as usize,
    })
}

/// The first record of a segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Segment sequence number, from 0, gapless.
    pub seq: u64,
    /// Index of the first entry stored in the segment.
    pub first_index: u64,
}

impl SegmentHeader {
    /// Payload bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(26);
        out.extend_from_slice(SEGMENT_MAGIC);
        out.extend_from_slice(&SEGMENT_FORMAT.to_le_bytes());
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.extend_from_slice(&self.first_index.to_le_bytes());
        out
    }

    /// Parses a Header payload.
    pub fn decode(p: &[u8]) -> Option<SegmentHeader> {
        if p.len() != 26 || &p[..8] != SEGMENT_MAGIC {
            return None;
        }
        if u16::from_le_bytes(p[8..10].try_into().ok()?) != SEGMENT_FORMAT {
            return None;
        }
        Some(SegmentHeader {
            seq: u64::from_le_bytes(p[10..18].try_into().ok()?),
            first_index: u64::from_le_bytes(p[18..26].try_into().ok()?),
        })
    }
}

/// A block's header: what the block hash covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockHeader {
    /// Block number, from 0.
    pub height: u64,
    /// Block time, ms since the Unix epoch; never decreases. Apply reads time only here.
    pub time_ms: i64,
    /// Hash of the previous block (zeros for block 0).
    pub prev_hash: Hash,
    /// Index of the block's first entry.
    pub first_index: u64,
    /// Number of entries in the block (at least 1).
    pub entry_count: u32,
    /// RFC 6962 root over the block's entries alone.
    pub entries_root: Hash,
    /// Entries in the whole ledger after this block.
    pub tree_size: u64,
    /// RFC 6962 root over the whole ledger after this block.
    pub tree_root: Hash,
    /// Reserved for the consensus round that ordered the block (0 for solo).
    pub round: u64,
    /// Reserved for the hash of the consensus certificate (zeros for solo).
    pub certificate_hash: Hash,
}

impl BlockHeader {
    /// Fixed-size canonical bytes.
    pub fn encode(&self) -> [u8; BLOCK_HEADER_BYTES] {
        let mut out = [0u8; BLOCK_HEADER_BYTES];
        let mut at = 0;
        let mut put = |b: &[u8]| {
            out[at..at + b.len()].copy_from_slice(b);
            at += b.len();
        };
        put(&self.height.to_le_bytes());
        put(&self.time_ms.to_le_bytes());
        put(&self.prev_hash);
        put(&self.first_index.to_le_bytes());
        put(&self.entry_count.to_le_bytes());
        put(&self.entries_root);
        put(&self.tree_size.to_le_bytes());
        put(&self.tree_root);
        put(&self.round.to_le_bytes());
        put(&self.certificate_hash);
        out
    }

    /// Parses the fixed-size bytes.
    pub fn decode(p: &[u8]) -> Option<BlockHeader> {
        if p.len() != BLOCK_HEADER_BYTES {
            return None;
        }
        let u64_at = |i: usize| u64::from_le_bytes(p[i..i + 8].try_into().expect("8 bytes"));
        let hash_at = |i: usize| -> Hash { p[i..i + 32].try_into().expect("32 bytes") };
        Some(BlockHeader {
            height: u64_at(0),
            time_ms: u64_at(8) as i64,
            prev_hash: hash_at(16),
            first_index: u64_at(48),
            entry_count: u32::from_le_bytes(p[56..60].try_into().expect("4 bytes")),
            entries_root: hash_at(60),
            tree_size: u64_at(92),
            tree_root: hash_at(100),
            round: u64_at(132),
            certificate_hash: hash_at(140),
        })
    }

    /// SHA-256 over a domain tag and the encoded header.
    pub fn hash(&self) -> Hash {
        let mut h = Sha256::new();
        h.update(b"assay-block-v1\0");
        h.update(self.encode());
        h.finalize().into()
    }
}

/// A block's closing record: header and the two signatures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seal {
    /// The header.
    pub header: BlockHeader,
    /// Ed25519 over `header.hash()`.
    pub block_sig: [u8; 64],
    /// Ed25519 over the checkpoint body for (`tree_size`, `tree_root`).
    pub checkpoint_sig: [u8; 64],
}

impl Seal {
    /// Payload bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(SEAL_BYTES);
        out.extend_from_slice(&self.header.encode());
        out.extend_from_slice(&self.block_sig);
        out.extend_from_slice(&self.checkpoint_sig);
        out
    }

    /// Parses a Seal payload.
    pub fn decode(p: &[u8]) -> Option<Seal> {
        if p.len() != SEAL_BYTES {
            return None;
        }
        Some(Seal {
            header: BlockHeader::decode(&p[..BLOCK_HEADER_BYTES])?,
            block_sig: p[BLOCK_HEADER_BYTES..BLOCK_HEADER_BYTES + 64]
                .try_into()
                .ok()?,
            checkpoint_sig: p[BLOCK_HEADER_BYTES + 64..].try_into().ok()?,
        })
    }
}

/// File name of segment `seq`: zero-padded so names sort in order.
pub fn segment_name(seq: u64) -> String {
    format!("{seq:020}.seg")
}

/// The sequence number in a segment file name.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    parse_numbered_name(name, ".seg")
}

/// The number in a name of 20 digits then `suffix`.
pub(crate) fn parse_numbered_name(name: &str, suffix: &str) -> Option<u64> {
    let digits = name.strip_suffix(suffix)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_roundtrip_and_damage() {
        let mut buf = Vec::new();
        put_record(&mut buf, RecordType::Entry, b"hello");
        let r = read_record(&buf, 0).unwrap();
        assert_eq!(
            (r.ty, r.payload, r.end),
            (RecordType::Entry, &b"hello"[..], buf.len())
        );
        for i in 0..buf.len() {
            for bit in 0..8 {
                let mut bad = buf.clone();
                bad[i] ^= 1 << bit;
                assert!(
                    read_record(&bad, 0).is_err(),
                    "flip at byte {i} bit {bit} went unnoticed"
                );
            }
        }
        assert_eq!(
            read_record(&buf[..buf.len() - 1], 0),
            Err(RecordError::Truncated)
        );
    }

    #[test]
    fn header_roundtrip() {
        let h = BlockHeader {
            height: 7,
            time_ms: -3,
            prev_hash: [1; 32],
            first_index: 9,
            entry_count: 2,
            entries_root: [2; 32],
            tree_size: 11,
            tree_root: [3; 32],
            round: 0,
            certificate_hash: [0; 32],
        };
        assert_eq!(BlockHeader::decode(&h.encode()), Some(h.clone()));
        let s = Seal {
            header: h,
            block_sig: [4; 64],
            checkpoint_sig: [5; 64],
        };
        assert_eq!(Seal::decode(&s.encode()), Some(s));
        assert_eq!(parse_segment_name(&segment_name(42)), Some(42));
        assert_eq!(parse_segment_name("42.seg"), None);
    }
}
