//! The canonical traversal of a [`Tsdb`] (its digest) and its snapshot bytes.
//!
//! # Digest
//!
//! SHA-256 over: series count, then per series in ascending label order its labels, the
//! sample counts of its sealed chunks, its sample count and samples (timestamp delta as a
//! zig-zag varint, value bits), then the metadata (below). It depends only on the state —
//! samples, chunk layout, metadata — never on series ids or where chunk bytes live.
//!
//! # Snapshot, version 6
//!
//! Integers are unsigned LEB128 varints in their shortest form unless stated.
//!
//! ```text
//! snapshot := magic:"ASTS" version:u8(=6) body checksum:[u8;32]   (SHA-256 of body)
//! body     := series_count series{series_count} metric_count metric{metric_count}
//! series   := label_count (name:str value:str){label_count}
//!             chunk_count chunk{chunk_count} head_count head
//! head     := len chunk_bytes{len}                (nothing when head_count = 0)
//! chunk    := 0x00 count len chunk_bytes{len}                                (inline)
//!           | 0x01 count gap:zz span len file:varint offset:varint crc32:u32le
//!                                                                   (in a chunk file)
//! chunk_bytes := 0x01 xor_bit_stream | 0x02 timestamps_column values_column
//! metric   := name:str record_count (type:u8 help:str unit:str){record_count}
//! str      := len bytes(UTF-8)        zz := zig-zag varint
//! ```
//!
//! Series are in ascending label order, each with at least one sample. Chunks are the
//! sealed chunks, oldest first: each holds 1..=240 samples and starts after the previous
//! one ends; an inline chunk's bytes (an encoding byte, then Prometheus' XOR layout or
//! `assay_columns`' packed timestamps and values) must decode to exactly its count and
//! nothing more, and give its time range; a file chunk's time range is `min_t` = the previous
//! chunk's `max_t` (0 for the first) + `gap`, `max_t` = `min_t` + `span`, and its bytes must
//! lie in the chunk file, match the CRC-32 and start with a known encoding byte (its time
//! range is not re-derived from them: that would read every chunk file at start; the
//! snapshot's SHA-256 covers it). The open chunk's samples follow (fewer than
//! `HEAD_SAMPLES_MAX`, timestamps increasing and after the last chunk's `max_t`), as a
//! chunk's bytes (this build writes the open chunk's XOR stream as it holds it). Metrics
//! (metadata) are in ascending name order, each with 1..=`RECORDS_PER_METRIC_MAX` distinct
//! records, oldest first.
//!
//! Version 6 stores the open chunk's bytes and chunk time ranges as above; version 5,
//! still read, stored each open-chunk sample as `ts_delta:zz value:f64-le-bits` (the first
//! delta from the last chunk's `max_t`, or 0) and every chunk as
//! `kind count min_t:zz max_t:zz len …` (an inline chunk's range checked against its
//! bytes). Version 5 added the chunk encoding byte (version 4 chunks were untagged XOR);
//! older versions are refused and the node rebuilds the view from the ledger.

use sha2::{Digest, Sha256};

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use crate::chunk::Chunk;
use crate::chunk_file::ChunkFile;
use crate::metadata::{MetadataRecord, MetadataStore, RECORDS_PER_METRIC_MAX};
use crate::store::{SampleStore, CHUNK_LEN_MAX, HEAD_SAMPLES_MAX};
use crate::{SeriesEntry, Tsdb};
use assay_ledger::Labels;

/// Version byte of the snapshot encoding this build writes and reads.
pub const SNAPSHOT_VERSION: u8 = 6;
/// The oldest snapshot version this build still reads (older ones: rebuild from the ledger).
pub const SNAPSHOT_VERSION_OLDEST: u8 = 5;
const MAGIC: &[u8; 4] = b"ASTS";
/// Hard cap on labels per series the decoder accepts (as the ledger's entry decoder).
const SNAPSHOT_LABELS_PER_SERIES_MAX: usize = assay_ledger::entry::ENTRY_LABELS_PER_SERIES_MAX;

/// Why bytes are not a snapshot this build can load.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SnapshotError {
    #[error("snapshot does not start with the magic bytes \"ASTS\": not a tsdb snapshot")]
    Magic,
    #[error("snapshot version {0} is not supported (this build reads versions {SNAPSHOT_VERSION_OLDEST} to {SNAPSHOT_VERSION}); rebuild the view from the ledger")]
    Version(u8),
    #[error("snapshot checksum does not match its contents: the file is corrupt, rebuild the view from the ledger")]
    Checksum,
    #[error("snapshot is truncated at byte {0}")]
    Truncated(usize),
    #[error("varint at byte {0} is not minimal or overflows")]
    Varint(usize),
    #[error("string at byte {0} is not UTF-8")]
    Utf8(usize),
    #[error("{what} at byte {at} exceeds its limit")]
    Limit { what: &'static str, at: usize },
    #[error("series {series}: labels are invalid: {reason}")]
    Labels { series: usize, reason: String },
    #[error("series {0} is not after the previous series in label order")]
    SeriesOrder(usize),
    #[error("series {0} has no sample")]
    SeriesEmpty(usize),
    #[error("series {0}: its chunk lengths do not fit its sample count")]
    Layout(usize),
    #[error("metadata of metric {0}: out of name order, empty, or records missing, repeated or too many")]
    Metadata(usize),
    #[error("series {series}, chunk {chunk}: {reason}")]
    Chunk {
        series: usize,
        chunk: usize,
        reason: String,
    },
    #[error("series {series}, open chunk: {reason}")]
    Head { series: usize, reason: String },
    #[error("series {series}, sample {sample}: timestamp does not increase or overflows")]
    TimestampOrder { series: usize, sample: usize },
    #[error("{0} bytes trail the snapshot body")]
    Trailing(usize),
}

/// Where canonical bytes go: a buffer or a hash.
trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

impl Sink for Sha256 {
    fn put(&mut self, bytes: &[u8]) {
        self.update(bytes);
    }
}

fn put_varint(out: &mut impl Sink, mut v: u64) {
    let mut buf = [0u8; 10];
    let mut n = 0;
    while v >= 0x80 {
        buf[n] = (v as u8) | 0x80;
        v >>= 7;
        n += 1;
    }
    buf[n] = v as u8;
    out.put(&buf[..=n]);
}

fn put_str(out: &mut impl Sink, s: &str) {
    put_varint(out, s.len() as u64);
    out.put(s.as_bytes());
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn write_body(db: &Tsdb, out: &mut impl Sink) {
    put_varint(out, db.series_count() as u64);
    for e in db.sorted_series() {
        put_varint(out, e.labels.pairs().len() as u64);
        for (n, v) in e.labels.pairs() {
            put_str(out, n);
            put_str(out, v);
        }
        let lens = e.samples.sealed_lens();
        put_varint(out, lens.len() as u64);
        for n in lens {
            put_varint(out, n as u64);
        }
        put_varint(out, e.samples.len() as u64);
        let mut prev = 0i64;
        for (ts, v) in e.samples.iter() {
            put_varint(out, zigzag(ts.wrapping_sub(prev)));
            prev = ts;
            out.put(&v.to_bits().to_le_bytes());
        }
    }
    write_metadata(db, out);
}

fn write_metadata(db: &Tsdb, out: &mut impl Sink) {
    put_varint(out, db.metadata.by_metric.len() as u64);
    for (name, records) in &db.metadata.by_metric {
        put_str(out, name);
        put_varint(out, records.len() as u64);
        for r in records {
            out.put(&[r.kind as u8]);
            put_str(out, &r.help);
            put_str(out, &r.unit);
        }
    }
}

pub(crate) fn digest(db: &Tsdb) -> [u8; 32] {
    let mut h = Sha256::new();
    write_body(db, &mut h);
    h.finalize().into()
}

pub(crate) fn encode(db: &Tsdb) -> Vec<u8> {
    let sealed_inline: usize = db
        .series
        .iter()
        .flat_map(|e| e.samples.sealed())
        .filter(|c| c.file_ref().is_none())
        .map(|c| c.byte_len() + 12)
        .sum();
    let heads: usize = db
        .series
        .iter()
        .map(|e| e.samples.head().chunk_bytes_len())
        .sum();
    let inline = sealed_inline + heads;
    let mut out = Vec::with_capacity(64 + inline + db.series.len() * 200);
    out.extend_from_slice(MAGIC);
    out.push(SNAPSHOT_VERSION);
    let body_start = out.len();
    put_varint(&mut out, db.series_count() as u64);
    for e in db.sorted_series() {
        put_varint(&mut out, e.labels.pairs().len() as u64);
        for (n, v) in e.labels.pairs() {
            put_str(&mut out, n);
            put_str(&mut out, v);
        }
        let sealed = e.samples.sealed();
        put_varint(&mut out, sealed.len() as u64);
        let mut prev_max_t = 0;
        for c in sealed {
            // Snapshots hold chunks settled, as a replica that settled them all would.
            let settled = c.settled();
            let c = settled.as_ref().unwrap_or(c);
            out.push(u8::from(c.file_ref().is_some()));
            put_varint(&mut out, c.len() as u64);
            match c.file_ref() {
                None => {
                    put_varint(&mut out, c.byte_len() as u64);
                    out.extend_from_slice(c.bytes());
                }
                Some((file, offset, _)) => {
                    put_varint(&mut out, zigzag(c.min_t().wrapping_sub(prev_max_t)));
                    let span = i128::from(c.max_t()) - i128::from(c.min_t());
                    put_varint(&mut out, span as u64);
                    put_varint(&mut out, c.byte_len() as u64);
                    put_varint(&mut out, file);
                    put_varint(&mut out, offset as u64);
                    out.extend_from_slice(&crc32fast::hash(c.bytes()).to_le_bytes());
                }
            }
            prev_max_t = c.max_t();
        }
        // The open chunk as the bytes it holds (compressed, copied as they are: encoding
        // them afresh would hold the views lock longer). Version 5's 8 raw bytes a value
        // made the open chunks a third of a young view's snapshot.
        let head = e.samples.head();
        put_varint(&mut out, head.len() as u64);
        if head.len() > 0 {
            put_varint(&mut out, head.chunk_bytes_len() as u64);
            head.put_chunk_bytes(&mut out);
        }
    }
    write_metadata(db, &mut out);
    let checksum: [u8; 32] = Sha256::digest(&out[body_start..]).into();
    out.extend_from_slice(&checksum);
    out
}

pub(crate) fn decode(bytes: &[u8], chunk_dir: Option<&Path>) -> Result<Tsdb, SnapshotError> {
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err(SnapshotError::Magic);
    }
    let version = *bytes
        .get(MAGIC.len())
        .ok_or(SnapshotError::Truncated(MAGIC.len()))?;
    if !(SNAPSHOT_VERSION_OLDEST..=SNAPSHOT_VERSION).contains(&version) {
        return Err(SnapshotError::Version(version));
    }
    let body_start = MAGIC.len() + 1;
    let body_end = bytes.len().checked_sub(32).filter(|&e| e >= body_start);
    let body_end = body_end.ok_or(SnapshotError::Truncated(bytes.len()))?;
    let checksum: [u8; 32] = Sha256::digest(&bytes[body_start..body_end]).into();
    if checksum[..] != bytes[body_end..] {
        return Err(SnapshotError::Checksum);
    }
    // The checksum only proves the bytes are what some writer wrote: still check every
    // canonical rule, since a snapshot must never load a state the ledger could not yield.
    let mut r = Reader {
        bytes: &bytes[..body_end],
        at: body_start,
    };
    let mut files = ChunkFiles {
        dir: chunk_dir,
        open: HashMap::new(),
    };
    let entries = read_body(&mut r, &mut files, version)?;
    let metadata = read_metadata(&mut r)?;
    if r.at != body_end {
        return Err(SnapshotError::Trailing(body_end - r.at));
    }
    let mut db = Tsdb::from_sorted_series(entries);
    db.metadata = metadata;
    Ok(db)
}

/// Chunk files a snapshot refers to, opened once each.
struct ChunkFiles<'a> {
    dir: Option<&'a Path>,
    open: HashMap<u64, Arc<ChunkFile>>,
}

impl ChunkFiles<'_> {
    fn get(&mut self, id: u64) -> Result<Arc<ChunkFile>, String> {
        if let Some(f) = self.open.get(&id) {
            return Ok(f.clone());
        }
        let dir = self
            .dir
            .ok_or("the snapshot refers to chunk files but no chunk directory was given")?;
        let f = Arc::new(ChunkFile::open(dir, id).map_err(|e| format!("chunk file {id}: {e}"))?);
        self.open.insert(id, f.clone());
        Ok(f)
    }
}

fn read_body(
    r: &mut Reader<'_>,
    files: &mut ChunkFiles<'_>,
    version: u8,
) -> Result<Vec<SeriesEntry>, SnapshotError> {
    let series_count = r.count("series count", 2)?;
    let mut entries: Vec<SeriesEntry> = Vec::with_capacity(series_count);
    for i in 0..series_count {
        let labels = read_labels(r, i)?;
        if entries.last().is_some_and(|prev| prev.labels >= labels) {
            return Err(SnapshotError::SeriesOrder(i));
        }
        let chunk_count = r.count("chunk count", if version >= 6 { 4 } else { 6 })?;
        let mut sealed: Vec<Chunk> = Vec::with_capacity(chunk_count);
        for k in 0..chunk_count {
            let bad = |reason: &str| SnapshotError::Chunk {
                series: i,
                chunk: k,
                reason: reason.to_string(),
            };
            let kind = r.u8()?;
            let count = r.varint()?;
            // Version 6 spells a mapped chunk's time range from the chunk before, and an
            // inline chunk's not at all (its bytes hold it); version 5 spelled both whole.
            let range = if version < 6 {
                Some((unzigzag(r.varint()?), unzigzag(r.varint()?)))
            } else if kind == 1 {
                let base = sealed.last().map_or(0, |c| c.max_t());
                let min_t = base.wrapping_add(unzigzag(r.varint()?));
                let max_t = i64::try_from(i128::from(min_t) + i128::from(r.varint()?))
                    .map_err(|_| bad("its time range overflows"))?;
                Some((min_t, max_t))
            } else {
                None
            };
            let len = r.count("chunk length", 1)?;
            if !(1..=CHUNK_LEN_MAX).contains(&count)
                || range.is_some_and(|(min_t, max_t)| min_t > max_t)
            {
                return Err(bad("its sample count or time range is invalid"));
            }
            let chunk = match (kind, range) {
                (0, _) => {
                    let at = r.at;
                    let bytes = r.bytes(len)?;
                    let c = Chunk::from_bytes(bytes.into(), count as u32).ok_or(
                        SnapshotError::Chunk {
                            series: i,
                            chunk: k,
                            reason: format!("bytes at {at} do not decode"),
                        },
                    )?;
                    if range.is_some_and(|range| (c.min_t(), c.max_t()) != range) {
                        return Err(bad("its bytes do not match its time range"));
                    }
                    c
                }
                (1, Some((min_t, max_t))) => {
                    let file = r.varint()?;
                    let offset =
                        usize::try_from(r.varint()?).map_err(|_| bad("offset overflows"))?;
                    let crc = u32::from_le_bytes(r.array4()?);
                    let f = files.get(file).map_err(|e| bad(&e))?;
                    let c = Chunk::mapped(&f, offset, len, min_t, max_t, count as u32).ok_or_else(
                        || bad(&format!("chunk file {file} is shorter than the chunk")),
                    )?;
                    if crc32fast::hash(c.bytes()) != crc {
                        return Err(bad(&format!("CRC mismatch in chunk file {file}")));
                    }
                    if !c.has_known_encoding() {
                        return Err(bad(&format!("unknown encoding in chunk file {file}")));
                    }
                    c
                }
                _ => return Err(bad("unknown chunk kind")),
            };
            if sealed
                .last()
                .is_some_and(|prev| prev.max_t() >= chunk.min_t())
            {
                return Err(bad("it does not start after the previous chunk"));
            }
            sealed.push(chunk);
        }
        // An open chunk's bytes may be a few for any count (constant samples): the bound
        // on its length limits what its decoder allocates.
        let head_count = r.count("sample count", if version >= 6 { 0 } else { 9 })?;
        if head_count >= HEAD_SAMPLES_MAX {
            return Err(SnapshotError::Layout(i));
        }
        if head_count == 0 && sealed.is_empty() {
            return Err(SnapshotError::SeriesEmpty(i));
        }
        let last_sealed = sealed.last().map(|c| c.max_t());
        let head = if version >= 6 {
            read_head_chunk(r, i, head_count, last_sealed)?
        } else {
            read_head_raw(r, i, head_count, last_sealed)?
        };
        let samples = SampleStore::from_parts(sealed, &head);
        debug_assert!(samples.is_sorted_unique());
        entries.push(SeriesEntry {
            labels,
            samples,
            def: None,
        });
    }
    Ok(entries)
}

/// The open chunk's samples, version 6: a chunk's bytes (either encoding), timestamps
/// after the last sealed chunk.
fn read_head_chunk(
    r: &mut Reader<'_>,
    series: usize,
    count: usize,
    last_sealed: Option<i64>,
) -> Result<Vec<(i64, f64)>, SnapshotError> {
    if count == 0 {
        return Ok(Vec::new());
    }
    let len = r.count("open chunk length", 1)?;
    let at = r.at;
    let bytes = r.bytes(len)?;
    let samples = Chunk::decode_bytes(bytes, count as u32).ok_or(SnapshotError::Head {
        series,
        reason: format!("bytes at {at} do not decode to {count} samples in time order"),
    })?;
    if last_sealed.is_some_and(|t| samples[0].0 <= t) {
        return Err(SnapshotError::TimestampOrder { series, sample: 0 });
    }
    Ok(samples)
}

/// The open chunk's samples, version 5: a timestamp delta and 8 value bytes each.
fn read_head_raw(
    r: &mut Reader<'_>,
    series: usize,
    count: usize,
    last_sealed: Option<i64>,
) -> Result<Vec<(i64, f64)>, SnapshotError> {
    let mut head: Vec<(i64, f64)> = Vec::with_capacity(count);
    let mut prev = last_sealed;
    let base = prev.unwrap_or(0);
    for j in 0..count {
        let delta = unzigzag(r.varint()?);
        let ts = prev.unwrap_or(base).checked_add(delta);
        let ts = ts.filter(|&t| prev.is_none_or(|p| t > p));
        let ts = ts.ok_or(SnapshotError::TimestampOrder { series, sample: j })?;
        prev = Some(ts);
        let value = f64::from_bits(u64::from_le_bytes(r.array8()?));
        head.push((ts, value));
    }
    Ok(head)
}

fn read_metadata(r: &mut Reader<'_>) -> Result<MetadataStore, SnapshotError> {
    let count = r.count("metric count", 3)?;
    let mut store = MetadataStore::default();
    for i in 0..count {
        let name = r.str()?;
        let records = r.count("metadata record count", 3)?;
        if name.is_empty()
            || !(1..=RECORDS_PER_METRIC_MAX).contains(&records)
            || store
                .by_metric
                .last_key_value()
                .is_some_and(|(prev, _)| *prev >= name)
        {
            return Err(SnapshotError::Metadata(i));
        }
        let mut list: Vec<MetadataRecord> = Vec::with_capacity(records);
        for _ in 0..records {
            let at = r.at;
            let kind = assay_ledger::MetricType::from_u8(r.u8()?).ok_or(SnapshotError::Limit {
                what: "metric type",
                at,
            })?;
            let record = MetadataRecord {
                kind,
                help: r.str()?,
                unit: r.str()?,
            };
            if list.contains(&record) {
                return Err(SnapshotError::Metadata(i));
            }
            list.push(record);
        }
        store.by_metric.insert(name, list);
    }
    Ok(store)
}

fn read_labels(r: &mut Reader<'_>, series: usize) -> Result<Labels, SnapshotError> {
    let label_count = r.count("label count", 2)?;
    if label_count > SNAPSHOT_LABELS_PER_SERIES_MAX {
        return Err(SnapshotError::Limit {
            what: "label count",
            at: r.at,
        });
    }
    let mut pairs = Vec::with_capacity(label_count);
    for _ in 0..label_count {
        let n = r.str()?;
        let v = r.str()?;
        pairs.push((n, v));
    }
    // `Labels::new` sorts; a canonical snapshot must already be sorted.
    if pairs.windows(2).any(|w| w[0].0 >= w[1].0) {
        let reason = "not sorted by name or a name repeats".to_string();
        return Err(SnapshotError::Labels { series, reason });
    }
    Labels::new(pairs).map_err(|e| SnapshotError::Labels {
        series,
        reason: e.to_string(),
    })
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn u8(&mut self) -> Result<u8, SnapshotError> {
        let b = *self
            .bytes
            .get(self.at)
            .ok_or(SnapshotError::Truncated(self.at))?;
        self.at += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&[u8], SnapshotError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or(SnapshotError::Truncated(self.bytes.len()))?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn array4(&mut self) -> Result<[u8; 4], SnapshotError> {
        let b = self.bytes(4)?;
        Ok(b.try_into().expect("4 bytes"))
    }

    fn bytes(&mut self, n: usize) -> Result<&[u8], SnapshotError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or(SnapshotError::Truncated(self.bytes.len()))?;
        let b = &self.bytes[self.at..end];
        self.at = end;
        Ok(b)
    }

    fn array8(&mut self) -> Result<[u8; 8], SnapshotError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(a)
    }

    fn varint(&mut self) -> Result<u64, SnapshotError> {
        let start = self.at;
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            let low = (b & 0x7f) as u64;
            if shift == 63 && low > 1 {
                return Err(SnapshotError::Varint(start));
            }
            value |= low << shift;
            if b & 0x80 == 0 {
                // A zero final byte after the first means the varint was padded.
                if b == 0 && shift > 0 {
                    return Err(SnapshotError::Varint(start));
                }
                return Ok(value);
            }
        }
        Err(SnapshotError::Varint(start))
    }

    /// A count of items that each take at least `item_bytes_min` more bytes of input,
    /// which bounds what the decoder allocates by the input size.
    fn count(&mut self, what: &'static str, item_bytes_min: u64) -> Result<usize, SnapshotError> {
        let at = self.at;
        let n = self.varint()?;
        let remaining = (self.bytes.len() - self.at) as u64;
        if n.saturating_mul(item_bytes_min) > remaining {
            return Err(SnapshotError::Limit { what, at });
        }
        Ok(n as usize)
    }

    fn str(&mut self) -> Result<String, SnapshotError> {
        let len = self.count("string length", 1)?;
        let at = self.at;
        let raw = self.take(len)?;
        String::from_utf8(raw.to_vec()).map_err(|_| SnapshotError::Utf8(at))
    }
}
