//! Packed segments: a sealed segment's records stored column by column and compressed.
//!
//! Packing is a storage codec, not a new ledger format: `unpack(pack(raw)) == raw`, byte
//! for byte (records, frames and CRCs included), and [`pack_segment`] checks it before it
//! returns. Entry bytes, leaf hashes, blocks and proofs are those of the raw segment, and
//! an [`EntryLocation`](crate::scan::EntryLocation) keeps its offset *in the raw segment*;
//! reading it from a pack decodes the frame holding that offset.
//!
//! Why columns: an entry stores each value as 8 raw bytes and lists its series' labels, or
//! (kind 0x04) a reference for each series the ledger already holds (~73 B per remote-write
//! sample inline, ~15 with references). A pack lists each distinct label block or reference
//! once per segment (the series dictionary) and stores each series' timestamps and values as columns
//! (delta-of-delta times, decimal values; `assay-columns`) before zstd, so a sample costs
//! about what it costs in a time-series store.
//!
//! ```text
//! pack     := magic:"ASSAYPAK" format:u16le(=1) section* index index_len:u32le index_crc:u32le magic
//! section  := one zstd frame (the dictionary, or one frame of records)
//! index    := raw_len dict:section_ref frame_count (raw_start:varint section_ref){frame_count}
//! section_ref := offset len crc32(of the compressed bytes) raw_len      (all varints)
//! dict     := count (len label_block){count}            label_block as an entry's series
//!                                                        (series_r: a reference, in kind 0x04)
//! frame    := stream{6}, each len:varint bytes, in this order:
//!   tags   := one byte per record: 0 = stored as is, 1 = samples entry, 2 = CI-report entry,
//!             3 = samples entry with series references (kind 0x04)
//!   raw    := per tag 0: type:u8 len payload; per tag 2: report_sha256[32]
//!   shape  := per tag 1|2|3: series_count sample_count zigzag(dict_id − previous dict_id){series_count}
//!   refs   := per sample: zigzag(series_ref − (previous series_ref + 1)), per entry from −1
//!   times  := per dictionary id present in the frame, ascending: that series' timestamps
//!   values := the same order: that series' values
//! ```
//!
//! A frame holds whole blocks, at least one, and about `frame_bytes` of raw segment, so a
//! read decodes one frame and a scan one frame at a time. An entry the packer cannot
//! re-create exactly (metadata entries, anything unusual) is stored as is.

use crate::entry::{put_varint, unzigzag, zigzag, KIND_CI_REPORT, KIND_SAMPLES, KIND_SAMPLES_REFS};
use crate::segment::{put_record, read_record, RecordType};

/// Magic at both ends of a pack file.
pub const PACK_MAGIC: &[u8; 8] = b"ASSAYPAK";
/// Pack format version.
pub const PACK_FORMAT: u16 = 1;
/// Bytes after the index: index_len, index_crc, magic.
const FOOTER_BYTES: usize = 4 + 4 + 8;
/// Largest raw size a section may claim: bounds what an unpacker allocates.
pub const SECTION_RAW_BYTES_MAX: u64 = 1 << 30;
/// Largest series count a dictionary may claim.
const DICT_SERIES_MAX: u64 = 1 << 26;

/// How [`pack_segment`] packs.
#[derive(Clone, Debug)]
pub struct PackOptions {
    /// A frame ends after the block that takes it past this many raw bytes.
    pub frame_bytes: usize,
    /// zstd level.
    pub level: i32,
}

impl Default for PackOptions {
    fn default() -> Self {
        PackOptions {
            frame_bytes: 8 << 20,
            level: 3,
        }
    }
}

/// Why a pack could not be made or read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PackError {
    /// The raw segment is not whole sealed blocks.
    #[error("segment cannot be packed: {0}")]
    Unpackable(String),
    /// The pack's bytes are damaged or not a pack.
    #[error("pack damaged: {0}")]
    Damaged(String),
    /// Packing did not reproduce the raw bytes (a bug; the raw segment stays).
    #[error("pack check failed: unpacking gives different bytes at raw offset {0}")]
    Mismatch(u64),
}

fn damaged(what: impl Into<String>) -> PackError {
    PackError::Damaged(what.into())
}

/// Where a compressed section is in the pack file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SectionRef {
    /// Offset in the pack file.
    pub offset: u64,
    /// Compressed bytes.
    pub len: u64,
    /// CRC-32 of the compressed bytes.
    pub crc: u32,
    /// Bytes after decompression.
    pub raw_len: u64,
}

/// One frame: a run of whole blocks of the raw segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameRef {
    /// Offset in the raw segment of the frame's first record.
    pub raw_start: u64,
    /// Its compressed section; `section.raw_len` is the frame body's size, not the records'.
    pub section: SectionRef,
    /// Raw segment bytes the frame's records take.
    pub raw_len: u64,
}

/// A pack's table of contents, read from its footer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackIndex {
    /// Bytes of the raw segment.
    pub raw_len: u64,
    /// The series dictionary.
    pub dict: SectionRef,
    /// Frames in raw order; they tile `0..raw_len`.
    pub frames: Vec<FrameRef>,
}

impl PackIndex {
    /// The frame holding raw offset `offset`.
    pub fn frame_of(&self, offset: u64) -> Option<usize> {
        let i = self.frames.partition_point(|f| f.raw_start <= offset);
        (i > 0 && offset < self.frames[i - 1].raw_start + self.frames[i - 1].raw_len)
            .then_some(i - 1)
    }
}

/// The series dictionary: each series' label block (as an entry encodes it), by id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SeriesDict {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl SeriesDict {
    fn get(&self, id: usize) -> Option<&[u8]> {
        let end = *self.ends.get(id)?;
        let start = if id == 0 { 0 } else { self.ends[id - 1] };
        Some(&self.bytes[start..end])
    }

    /// Number of series.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// True when no series is listed.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
}

// ---------------------------------------------------------------- packing

/// A samples entry taken apart: label blocks (slices of the entry) and samples.
struct SampleEntry<'a> {
    kind: u8,
    report: Option<&'a [u8]>,
    series: Vec<&'a [u8]>,
    /// (series_ref, timestamp, value bits)
    samples: Vec<(u32, i64, u64)>,
}

/// Takes a samples or CI-report entry apart without allocating labels (a series given by
/// reference is its reference's bytes); `None` for any other entry or anything malformed
/// (those are stored as is).
fn split_sample_entry(p: &[u8]) -> Option<SampleEntry<'_>> {
    let mut r = Cursor { bytes: p, at: 0 };
    if r.u8()? != crate::entry::ENTRY_VERSION {
        return None;
    }
    let kind = r.u8()?;
    let report = match kind {
        KIND_SAMPLES | KIND_SAMPLES_REFS => None,
        KIND_CI_REPORT => Some(r.take(32)?),
        _ => return None,
    };
    let series_count = r.count()?;
    let mut series = Vec::with_capacity(series_count);
    for _ in 0..series_count {
        let start = r.at;
        let labels = r.count()?;
        if labels == 0 {
            if kind != KIND_SAMPLES_REFS {
                return None;
            }
            r.varint()?; // entry
            r.varint()?; // position
        }
        for _ in 0..labels * 2 {
            let len = r.count()?;
            r.take(len)?;
        }
        series.push(&p[start..r.at]);
    }
    let sample_count = r.count()?;
    let mut samples = Vec::with_capacity(sample_count);
    let mut prev = 0i64;
    for _ in 0..sample_count {
        let s = r.varint()?;
        if s >= series_count as u64 {
            return None;
        }
        let ts = prev.checked_add(unzigzag(r.varint()?))?;
        prev = ts;
        let bits = u64::from_le_bytes(r.take(8)?.try_into().ok()?);
        samples.push((s as u32, ts, bits));
    }
    (r.at == p.len()).then_some(SampleEntry {
        kind,
        report,
        series,
        samples,
    })
}

/// Writes a samples entry's bytes the way `Entry::encode` does.
fn write_sample_entry(
    out: &mut Vec<u8>,
    kind: u8,
    report: Option<&[u8]>,
    series: &[&[u8]],
    samples: impl ExactSizeIterator<Item = (u32, i64, u64)>,
) {
    out.push(crate::entry::ENTRY_VERSION);
    out.push(kind);
    if let Some(r) = report {
        out.extend_from_slice(r);
    }
    put_varint(out, series.len() as u64);
    for s in series {
        out.extend_from_slice(s);
    }
    put_varint(out, samples.len() as u64);
    let mut prev = 0i64;
    for (s, ts, bits) in samples {
        crate::entry::put_sample(out, s as u64, ts.wrapping_sub(prev), bits);
        prev = ts;
    }
}

/// Per-frame columns of one dictionary series.
#[derive(Default)]
struct Column {
    times: Vec<i64>,
    values: Vec<f64>,
}

/// Builds the pack of a raw segment (whole sealed blocks) and checks that it unpacks to
/// exactly `raw`.
pub fn pack_segment(raw: &[u8], options: &PackOptions) -> Result<Vec<u8>, PackError> {
    // Frame boundaries: after a Seal, once the frame holds `frame_bytes`.
    let mut records = Vec::new();
    let mut offset = 0;
    while offset < raw.len() {
        let rec = read_record(raw, offset)
            .map_err(|e| PackError::Unpackable(format!("record at offset {offset}: {e}")))?;
        offset = rec.end;
        records.push(rec);
    }
    match records.last() {
        Some(r) if r.ty == RecordType::Seal => {}
        _ => {
            return Err(PackError::Unpackable(
                "the segment does not end with a sealed block".into(),
            ))
        }
    }
    let mut out = Vec::with_capacity(raw.len() / 16);
    out.extend_from_slice(PACK_MAGIC);
    out.extend_from_slice(&PACK_FORMAT.to_le_bytes());
    // Looked up once per series per entry; never iterated, so its order cannot leak.
    let mut dict_ids: rustc_hash::FxHashMap<&[u8], u32> = Default::default();
    let mut dict_order: Vec<&[u8]> = Vec::new();
    let mut frames = Vec::new();
    let mut columns: Vec<Column> = Vec::new();
    #[cfg(debug_assertions)]
    let mut check = Vec::new();
    let mut first = 0;
    while first < records.len() {
        let raw_start = records[first].offset;
        let mut last = first;
        while last + 1 < records.len()
            && !(records[last].ty == RecordType::Seal
                && records[last].end - raw_start >= options.frame_bytes)
        {
            last += 1;
        }
        let frame_records = &records[first..=last];
        let mut s = Streams::default();
        let mut present: Vec<u32> = Vec::new();
        let mut prev_dict = 0i64;
        for rec in frame_records {
            // Shortest varints, whole payload consumed: writing it back gives the same
            // bytes (checked here in debug builds, and for the whole pack by `verify`).
            let entry = (rec.ty == RecordType::Entry)
                .then(|| split_sample_entry(rec.payload))
                .flatten();
            #[cfg(debug_assertions)]
            if let Some(e) = &entry {
                check.clear();
                write_sample_entry(
                    &mut check,
                    e.kind,
                    e.report,
                    &e.series,
                    e.samples.iter().copied(),
                );
                debug_assert!(check == rec.payload, "a split entry writes back unchanged");
            }
            let Some(e) = entry else {
                s.tags.push(0);
                s.raw.push(rec.ty as u8);
                put_varint(&mut s.raw, rec.payload.len() as u64);
                s.raw.extend_from_slice(rec.payload);
                continue;
            };
            s.tags.push(match e.kind {
                KIND_SAMPLES => 1,
                KIND_CI_REPORT => 2,
                _ => 3,
            });
            if let Some(r) = e.report {
                s.raw.extend_from_slice(r);
            }
            put_varint(&mut s.shape, e.series.len() as u64);
            put_varint(&mut s.shape, e.samples.len() as u64);
            let mut ids = Vec::with_capacity(e.series.len());
            for labels in &e.series {
                let next = dict_order.len() as u32;
                let id = *dict_ids.entry(labels).or_insert_with(|| {
                    dict_order.push(labels);
                    next
                });
                put_varint(&mut s.shape, zigzag(id as i64 - prev_dict));
                prev_dict = id as i64;
                ids.push(id);
            }
            let mut prev_ref = -1i64;
            for &(r, ts, bits) in &e.samples {
                put_varint(&mut s.refs, zigzag(r as i64 - (prev_ref + 1)));
                prev_ref = r as i64;
                let id = ids[r as usize] as usize;
                if id >= columns.len() {
                    columns.resize_with(id + 1, Column::default);
                }
                let c = &mut columns[id];
                if c.times.is_empty() {
                    present.push(id as u32);
                }
                c.times.push(ts);
                c.values.push(f64::from_bits(bits));
            }
        }
        present.sort_unstable();
        for &id in &present {
            let c = &mut columns[id as usize];
            assay_columns::encode_timestamps(&c.times, &mut s.times);
            assay_columns::encode_values(&c.values, &mut s.values);
            c.times.clear();
            c.values.clear();
        }
        let body = s.concat();
        let section = put_section(&mut out, &body, options.level)?;
        let raw_end = frame_records.last().expect("at least one record").end;
        frames.push(FrameRef {
            raw_start: raw_start as u64,
            section,
            raw_len: (raw_end - raw_start) as u64,
        });
        first = last + 1;
    }
    let mut dict_body = Vec::new();
    put_varint(&mut dict_body, dict_order.len() as u64);
    for labels in &dict_order {
        put_varint(&mut dict_body, labels.len() as u64);
        dict_body.extend_from_slice(labels);
    }
    let dict = put_section(&mut out, &dict_body, options.level)?;
    let index = PackIndex {
        raw_len: raw.len() as u64,
        dict,
        frames,
    };
    let mut idx = Vec::new();
    put_varint(&mut idx, index.raw_len);
    put_section_ref(&mut idx, &index.dict);
    put_varint(&mut idx, index.frames.len() as u64);
    for f in &index.frames {
        put_varint(&mut idx, f.raw_start);
        put_varint(&mut idx, f.raw_len);
        put_section_ref(&mut idx, &f.section);
    }
    out.extend_from_slice(&idx);
    out.extend_from_slice(&(idx.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&idx).to_le_bytes());
    out.extend_from_slice(PACK_MAGIC);
    // The pack must give back exactly the raw bytes before anyone may delete them.
    verify(&out, raw)?;
    Ok(out)
}

#[derive(Default)]
struct Streams {
    tags: Vec<u8>,
    raw: Vec<u8>,
    shape: Vec<u8>,
    refs: Vec<u8>,
    times: Vec<u8>,
    values: Vec<u8>,
}

impl Streams {
    fn concat(&self) -> Vec<u8> {
        let parts = [
            &self.tags,
            &self.raw,
            &self.shape,
            &self.refs,
            &self.times,
            &self.values,
        ];
        let mut out = Vec::with_capacity(parts.iter().map(|p| p.len() + 10).sum());
        for p in parts {
            put_varint(&mut out, p.len() as u64);
            out.extend_from_slice(p);
        }
        out
    }
}

fn put_section(out: &mut Vec<u8>, body: &[u8], level: i32) -> Result<SectionRef, PackError> {
    let z = zstd::bulk::compress(body, level)
        .map_err(|e| PackError::Unpackable(format!("zstd: {e}")))?;
    let r = SectionRef {
        offset: out.len() as u64,
        len: z.len() as u64,
        crc: crc32fast::hash(&z),
        raw_len: body.len() as u64,
    };
    out.extend_from_slice(&z);
    Ok(r)
}

fn put_section_ref(out: &mut Vec<u8>, r: &SectionRef) {
    put_varint(out, r.offset);
    put_varint(out, r.len);
    put_varint(out, r.crc as u64);
    put_varint(out, r.raw_len);
}

// ---------------------------------------------------------------- unpacking

/// Reads a pack's index from its footer (`pack` is the whole file).
pub fn read_index(pack: &[u8]) -> Result<PackIndex, PackError> {
    let head = 8 + 2;
    if pack.len() < head + FOOTER_BYTES || &pack[..8] != PACK_MAGIC {
        return Err(damaged("not a pack file (magic missing)"));
    }
    let format = u16::from_le_bytes([pack[8], pack[9]]);
    if format != PACK_FORMAT {
        return Err(damaged(format!(
            "pack format {format} is not supported (this build reads {PACK_FORMAT})"
        )));
    }
    let foot = pack.len() - FOOTER_BYTES;
    if &pack[foot + 8..] != PACK_MAGIC {
        return Err(damaged("pack footer magic missing (file cut short?)"));
    }
    let idx_len = u32::from_le_bytes(pack[foot..foot + 4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(pack[foot + 4..foot + 8].try_into().expect("4 bytes"));
    let idx_start = foot
        .checked_sub(idx_len)
        .filter(|&s| s >= head)
        .ok_or_else(|| damaged("pack index length is out of range"))?;
    let idx = &pack[idx_start..foot];
    if crc32fast::hash(idx) != crc {
        return Err(damaged("pack index checksum mismatch"));
    }
    let mut r = Cursor { bytes: idx, at: 0 };
    let bad = || damaged("pack index is malformed");
    let raw_len = r.varint().ok_or_else(bad)?;
    let dict = section_ref(&mut r, idx_start as u64).ok_or_else(bad)?;
    let count = r.count().ok_or_else(bad)?;
    let mut frames = Vec::with_capacity(count);
    let mut expect_start = 0u64;
    for _ in 0..count {
        let raw_start = r.varint().ok_or_else(bad)?;
        let len = r.varint().ok_or_else(bad)?;
        let section = section_ref(&mut r, idx_start as u64).ok_or_else(bad)?;
        if raw_start != expect_start || len == 0 {
            return Err(damaged("pack frames do not tile the segment"));
        }
        expect_start = raw_start.checked_add(len).ok_or_else(bad)?;
        frames.push(FrameRef {
            raw_start,
            section,
            raw_len: len,
        });
    }
    if r.at != idx.len() || expect_start != raw_len {
        return Err(damaged("pack frames do not tile the segment"));
    }
    Ok(PackIndex {
        raw_len,
        dict,
        frames,
    })
}

fn section_ref(r: &mut Cursor<'_>, limit: u64) -> Option<SectionRef> {
    let s = SectionRef {
        offset: r.varint()?,
        len: r.varint()?,
        crc: u32::try_from(r.varint()?).ok()?,
        raw_len: r.varint()?,
    };
    let end = s.offset.checked_add(s.len)?;
    (s.offset >= 10 && end <= limit && s.raw_len <= SECTION_RAW_BYTES_MAX).then_some(s)
}

/// Decompresses a section, checking its CRC; `what` names it in errors.
pub fn read_section(pack: &[u8], s: &SectionRef, what: &str) -> Result<Vec<u8>, PackError> {
    let z = pack
        .get(s.offset as usize..(s.offset + s.len) as usize)
        .ok_or_else(|| damaged(format!("{what} lies past the end of the file")))?;
    if crc32fast::hash(z) != s.crc {
        return Err(damaged(format!("{what} checksum mismatch")));
    }
    let body = zstd::bulk::decompress(z, s.raw_len as usize)
        .map_err(|e| damaged(format!("{what} does not decompress: {e}")))?;
    if body.len() as u64 != s.raw_len {
        return Err(damaged(format!("{what} decompresses to the wrong size")));
    }
    Ok(body)
}

/// Parses the dictionary section's body.
pub fn read_dict(body: &[u8]) -> Result<SeriesDict, PackError> {
    let mut r = Cursor { bytes: body, at: 0 };
    let bad = || damaged("series dictionary is malformed");
    let count = r.count().ok_or_else(bad)?;
    if count as u64 > DICT_SERIES_MAX {
        return Err(bad());
    }
    let mut dict = SeriesDict {
        bytes: Vec::with_capacity(body.len()),
        ends: Vec::with_capacity(count),
    };
    for _ in 0..count {
        let len = r.count().ok_or_else(bad)?;
        dict.bytes.extend_from_slice(r.take(len).ok_or_else(bad)?);
        dict.ends.push(dict.bytes.len());
    }
    if r.at != body.len() {
        return Err(bad());
    }
    Ok(dict)
}

/// Rebuilds the raw records of one frame from its decompressed body.
pub fn unpack_frame(
    body: &[u8],
    dict: &SeriesDict,
    frame: &FrameRef,
) -> Result<Vec<u8>, PackError> {
    let mut out = Vec::with_capacity(frame.raw_len as usize);
    unpack_frame_into(body, dict, frame, &mut out)?;
    Ok(out)
}

/// [`unpack_frame`], appending to `out`.
pub fn unpack_frame_into(
    body: &[u8],
    dict: &SeriesDict,
    frame: &FrameRef,
    out: &mut Vec<u8>,
) -> Result<(), PackError> {
    out.reserve(frame.raw_len as usize);
    unpack_frame_records(body, dict, frame, |ty, payload| {
        put_record(out, ty, payload);
        Ok(())
    })
}

/// Rebuilds a frame's records and hands each (type, payload) to `sink`, in order; the check
/// before a pack is installed compares them with the raw segment this way, without a
/// frame-sized buffer (fresh pages, which the kernel zeroes, were half of packing's cost).
fn unpack_frame_records(
    body: &[u8],
    dict: &SeriesDict,
    frame: &FrameRef,
    mut sink: impl FnMut(RecordType, &[u8]) -> Result<(), PackError>,
) -> Result<(), PackError> {
    let bad = |what: &str| damaged(format!("frame at raw offset {}: {what}", frame.raw_start));
    let mut r = Cursor { bytes: body, at: 0 };
    let mut stream = || -> Result<&[u8], PackError> {
        let len = r.count().ok_or_else(|| bad("stream length"))?;
        r.take(len).ok_or_else(|| bad("stream cut short"))
    };
    let tags = stream()?;
    let mut raw = Cursor {
        bytes: stream()?,
        at: 0,
    };
    let mut shape = Cursor {
        bytes: stream()?,
        at: 0,
    };
    let mut refs = Cursor {
        bytes: stream()?,
        at: 0,
    };
    let times = stream()?;
    let values = stream()?;
    if r.at != body.len() {
        return Err(bad("bytes after the last stream"));
    }
    // Pass 1: each samples entry's dictionary ids and refs, and samples per series.
    let mut entry_ids: Vec<u32> = Vec::new();
    let mut sample_refs: Vec<u32> = Vec::new();
    let mut counts: Vec<u32> = vec![0; dict.len()];
    let mut prev_dict = 0i64;
    for &tag in tags {
        match tag {
            0 => {
                raw.u8().ok_or_else(|| bad("raw record type"))?;
                let len = raw.count().ok_or_else(|| bad("raw record length"))?;
                raw.take(len).ok_or_else(|| bad("raw record cut short"))?;
            }
            1..=3 => {
                if tag == 2 {
                    raw.take(32).ok_or_else(|| bad("report hash cut short"))?;
                }
                let series = shape.count().ok_or_else(|| bad("series count"))?;
                let samples = shape.varint().ok_or_else(|| bad("sample count"))?;
                if samples > refs.bytes.len() as u64 {
                    return Err(bad("sample count exceeds the refs stream"));
                }
                let first = entry_ids.len();
                for _ in 0..series {
                    let d = shape.varint().ok_or_else(|| bad("dictionary id"))?;
                    let id = prev_dict.wrapping_add(unzigzag(d));
                    if id < 0 || id as usize >= dict.len() {
                        return Err(bad("dictionary id out of range"));
                    }
                    prev_dict = id;
                    entry_ids.push(id as u32);
                }
                let ids = &entry_ids[first..];
                let mut prev_ref = -1i64;
                for _ in 0..samples {
                    let v = refs.varint().ok_or_else(|| bad("series ref"))?;
                    let s = (prev_ref + 1).wrapping_add(unzigzag(v));
                    if s < 0 || s as usize >= ids.len() {
                        return Err(bad("series ref out of range"));
                    }
                    prev_ref = s;
                    sample_refs.push(s as u32);
                    counts[ids[s as usize] as usize] += 1;
                }
            }
            t => return Err(bad(&format!("unknown record tag {t}"))),
        }
    }
    if raw.at != raw.bytes.len() || shape.at != shape.bytes.len() || refs.at != refs.bytes.len() {
        return Err(bad("streams longer than their records"));
    }
    // The columns, series by series in id order.
    let mut starts: Vec<usize> = vec![0; dict.len()];
    let total: usize = counts.iter().map(|&c| c as usize).sum();
    let mut all_times = Vec::with_capacity(total);
    let mut all_values = Vec::with_capacity(total);
    let (mut t_at, mut v_at) = (0, 0);
    for (id, &n) in counts.iter().enumerate() {
        if n == 0 {
            continue;
        }
        starts[id] = all_times.len();
        let (t, used) = assay_columns::decode_timestamps(&times[t_at..], n as usize)
            .map_err(|e| bad(&format!("timestamps of series {id}: {e}")))?;
        t_at += used;
        let (v, used) = assay_columns::decode_values(&values[v_at..], n as usize)
            .map_err(|e| bad(&format!("values of series {id}: {e}")))?;
        v_at += used;
        all_times.extend_from_slice(&t);
        all_values.extend_from_slice(&v);
    }
    if t_at != times.len() || v_at != values.len() {
        return Err(bad("column streams longer than their samples"));
    }
    // Pass 2: the records.
    let mut written = 0usize;
    let mut raw = Cursor {
        bytes: raw.bytes,
        at: 0,
    };
    let mut shape = Cursor {
        bytes: shape.bytes,
        at: 0,
    };
    let (mut id_at, mut ref_at) = (0, 0);
    let mut payload = Vec::new();
    let mut series: Vec<&[u8]> = Vec::new();
    for &tag in tags {
        if tag == 0 {
            let ty = raw.u8().expect("checked in pass 1");
            let len = raw.count().expect("checked in pass 1");
            let bytes = raw.take(len).expect("checked in pass 1");
            let ty = match ty {
                1 => RecordType::Header,
                2 => RecordType::Entry,
                3 => RecordType::Seal,
                t => return Err(bad(&format!("unknown record type {t}"))),
            };
            written += crate::segment::RECORD_HEADER_BYTES + bytes.len();
            sink(ty, bytes)?;
            continue;
        }
        let report = (tag == 2).then(|| raw.take(32).expect("checked in pass 1"));
        let n_series = shape.count().expect("checked in pass 1");
        let n_samples = shape.varint().expect("checked in pass 1") as usize;
        for _ in 0..n_series {
            shape.varint().expect("checked in pass 1");
        }
        let ids = &entry_ids[id_at..id_at + n_series];
        id_at += n_series;
        series.clear();
        series.extend(
            ids.iter()
                .map(|&id| dict.get(id as usize).expect("id checked")),
        );
        let refs = &sample_refs[ref_at..ref_at + n_samples];
        ref_at += n_samples;
        let samples = refs.iter().map(|&s| {
            let id = ids[s as usize] as usize;
            let at = starts[id];
            starts[id] += 1;
            (s, all_times[at], all_values[at].to_bits())
        });
        payload.clear();
        let kind = match tag {
            1 => KIND_SAMPLES,
            2 => KIND_CI_REPORT,
            _ => KIND_SAMPLES_REFS,
        };
        write_sample_entry(&mut payload, kind, report, &series, samples);
        if payload.len() > crate::segment::RECORD_PAYLOAD_BYTES_MAX {
            return Err(bad("an entry exceeds the record size limit"));
        }
        written += crate::segment::RECORD_HEADER_BYTES + payload.len();
        sink(RecordType::Entry, &payload)?;
    }
    if written as u64 != frame.raw_len {
        return Err(bad(&format!(
            "records take {written} bytes, the index says {}",
            frame.raw_len
        )));
    }
    Ok(())
}

/// The whole raw segment a pack holds.
pub fn unpack_all(pack: &[u8]) -> Result<Vec<u8>, PackError> {
    let index = read_index(pack)?;
    let mut out = Vec::with_capacity(index.raw_len as usize);
    unpack_records(pack, &index, |ty, payload| {
        put_record(&mut out, ty, payload);
        Ok(())
    })?;
    Ok(out)
}

/// Checks that `pack` unpacks to exactly `raw`, record by record (no segment-sized buffer).
///
/// `raw`'s records must have passed [`read_record`] (their CRCs checked), as
/// [`pack_segment`]'s first pass does: then a record whose length, type and payload equal
/// the unpacked one's also has the CRC `put_record` would write, so the check compares those
/// in place instead of writing each record out (a copy and a CRC pass over the segment).
fn verify(pack: &[u8], raw: &[u8]) -> Result<(), PackError> {
    use crate::segment::RECORD_HEADER_BYTES;
    let index = read_index(pack)?;
    if index.raw_len != raw.len() as u64 {
        return Err(PackError::Mismatch(index.raw_len.min(raw.len() as u64)));
    }
    // Frames tile the segment from offset 0 (`read_index` checks), so one cursor follows.
    let mut at = 0usize;
    unpack_records(pack, &index, |ty, payload| {
        let end = at + RECORD_HEADER_BYTES + payload.len();
        let same = raw.get(at..end).is_some_and(|want| {
            want[..4] == (payload.len() as u32).to_le_bytes()
                && want[8] == ty as u8
                && want[RECORD_HEADER_BYTES..] == *payload
        });
        if !same {
            // Rare: write the record out to name the first differing byte.
            let mut record = Vec::new();
            put_record(&mut record, ty, payload);
            let want = raw.get(at..).unwrap_or(&[]);
            let same = record.iter().zip(want).take_while(|(a, b)| a == b).count();
            return Err(PackError::Mismatch((at + same) as u64));
        }
        at = end;
        Ok(())
    })
}

/// Every record of `pack`, frame after frame, handed to `sink` as (type, payload).
fn unpack_records(
    pack: &[u8],
    index: &PackIndex,
    mut sink: impl FnMut(RecordType, &[u8]) -> Result<(), PackError>,
) -> Result<(), PackError> {
    let dict = read_dict(&read_section(pack, &index.dict, "series dictionary")?)?;
    for (i, f) in index.frames.iter().enumerate() {
        let body = read_section(pack, &f.section, &format!("frame {i}"))?;
        unpack_frame_records(&body, &dict, f, &mut sink)?;
    }
    Ok(())
}

/// File name of the pack of segment `seq`.
pub fn pack_name(seq: u64) -> String {
    format!("{seq:020}.pack")
}

/// The sequence number in a pack file name.
pub fn parse_pack_name(name: &str) -> Option<u64> {
    crate::segment::parse_numbered_name(name, ".pack")
}

/// A forgiving reader: `None` instead of an error, never a panic.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn u8(&mut self) -> Option<u8> {
        let b = *self.bytes.get(self.at)?;
        self.at += 1;
        Some(b)
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len())?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Some(s)
    }

    /// A varint in its shortest form only (as `put_varint` writes it), so an entry that
    /// [`split_sample_entry`] accepts is written back byte for byte by
    /// [`write_sample_entry`] without writing it to check.
    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            let low = (b & 0x7f) as u64;
            if shift == 63 && low > 1 {
                return None;
            }
            v |= low << shift;
            if b & 0x80 == 0 {
                return (b != 0 || shift == 0).then_some(v);
            }
        }
        None
    }

    /// A count of items that each take at least one byte of what is left.
    fn count(&mut self) -> Option<usize> {
        let n = self.varint()?;
        (n <= (self.bytes.len() - self.at) as u64).then_some(n as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Entry, Labels, SampleBatch};

    #[test]
    fn entries_with_series_references_are_taken_apart_not_stored_as_is() {
        let mut b = SampleBatch::new();
        let up = Labels::new(vec![("__name__".into(), "up".into())]).unwrap();
        let down = Labels::new(vec![("__name__".into(), "down".into())]).unwrap();
        b.push(up, 5, 1.5);
        b.push(down, 5, 2.5);
        let r = crate::SeriesRef {
            entry: 9,
            position: 4,
        };
        b.set_series_refs(vec![None, Some(r)]);
        let bytes = Entry::Samples(b).encode();
        let e = split_sample_entry(&bytes).expect("a kind 0x04 entry splits");
        assert_eq!(e.kind, KIND_SAMPLES_REFS);
        // The reference's bytes stand for the series: label count 0, entry, position.
        assert_eq!(e.series[1], [0, 9, 4]);
        let mut back = Vec::new();
        write_sample_entry(
            &mut back,
            e.kind,
            None,
            &e.series,
            e.samples.iter().copied(),
        );
        assert_eq!(back, bytes);
        // A reference in kind 0x01 is not an entry the packer re-creates.
        let mut wrong = bytes.clone();
        wrong[1] = KIND_SAMPLES;
        assert!(split_sample_entry(&wrong).is_none());
    }

    /// A samples entry of one series and two samples.
    fn small_entry() -> Vec<u8> {
        let mut b = SampleBatch::new();
        let labels = Labels::new(vec![("__name__".into(), "up".into())]).unwrap();
        b.push(labels.clone(), 5, 1.5);
        b.push(labels, 20_000, 2.5);
        Entry::Samples(b).encode()
    }

    #[test]
    fn the_check_names_the_first_byte_a_pack_does_not_give_back() {
        use crate::segment::RECORD_HEADER_BYTES;
        let entry = small_entry();
        let mut raw = Vec::new();
        put_record(&mut raw, RecordType::Entry, &entry);
        put_record(&mut raw, RecordType::Seal, b"a seal");
        let pack = pack_segment(&raw, &PackOptions::default()).unwrap();
        assert!(verify(&pack, &raw).is_ok());
        let mismatch = |at: usize| {
            let mut other = raw.clone();
            other[at] ^= 1;
            match verify(&pack, &other) {
                Err(PackError::Mismatch(o)) => o,
                r => panic!("{r:?}"),
            }
        };
        // The last value byte, the type byte, a length byte, the seal's last byte.
        let last_value = RECORD_HEADER_BYTES + entry.len() - 1;
        assert_eq!(mismatch(last_value), last_value as u64);
        assert_eq!(mismatch(8), 8);
        assert_eq!(mismatch(0), 0);
        assert_eq!(mismatch(raw.len() - 1), raw.len() as u64 - 1);
        // A raw segment longer or shorter than the pack's.
        assert!(matches!(
            verify(&pack, &raw[..raw.len() - 1]),
            Err(PackError::Mismatch(_))
        ));
    }

    #[test]
    fn only_entries_in_their_shortest_form_are_split() {
        let entry = small_entry();
        let split = split_sample_entry(&entry).expect("an encoded entry splits");
        let mut back = Vec::new();
        write_sample_entry(
            &mut back,
            split.kind,
            split.report,
            &split.series,
            split.samples.iter().copied(),
        );
        assert_eq!(back, entry);
        // The series count 1 padded to two bytes: stored as is, never written back shorter.
        let mut padded = entry.clone();
        assert_eq!(padded[2], 1, "the series count follows version and kind");
        padded.splice(2..3, [0x81, 0x00]);
        assert!(split_sample_entry(&padded).is_none());
        // A varint whose tenth byte overflows 64 bits.
        let mut c = Cursor {
            bytes: &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02],
            at: 0,
        };
        assert_eq!(c.varint(), None);
        let mut c = Cursor {
            bytes: &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            at: 0,
        };
        assert_eq!(c.varint(), Some(u64::MAX));
        assert_eq!(Cursor { bytes: &[0], at: 0 }.varint(), Some(0));
    }
}
