//! The canonical traversal of a [`Tsdb`]: its digest and its snapshot bytes.
//!
//! # Snapshot, version 2
//!
//! Integers are unsigned LEB128 varints in their shortest form unless stated.
//!
//! ```text
//! snapshot := magic:"ASTS" version:u8(=2) body checksum:[u8;32]   (SHA-256 of body)
//! body     := series_count series{series_count} metric_count metric{metric_count}
//! metric   := name:str record_count (type:u8 help:str unit:str){record_count}
//! series   := label_count (name:str value:str){label_count}
//!             chunk_count chunk_len{chunk_count} sample_count sample{sample_count}
//! str      := len bytes(UTF-8)
//! sample   := ts_delta:zigzag-varint value:f64-le-bits(8 bytes)
//! ```
//!
//! Series are in ascending label order, each with at least one sample; timestamps strictly
//! increase within a series. `chunk_len`s are the sample counts of the series' sealed
//! chunks, oldest first (each at least 1); the samples after them are the open chunk's,
//! fewer than `HEAD_SAMPLES_MAX`. The chunk layout is state: retention drops whole chunks,
//! so two views with the same samples in different chunks would diverge later. Metrics
//! (metadata) are in ascending name order, each with 1..=`RECORDS_PER_METRIC_MAX` distinct
//! records, oldest first (`ts_delta` is the difference to the previous sample's, the
//! first one's to 0). The digest of a view is the SHA-256 of its body, so it equals the
//! checksum of its snapshot and depends only on the state, never on series ids.

use sha2::{Digest, Sha256};

use crate::metadata::{MetadataRecord, MetadataStore, RECORDS_PER_METRIC_MAX};
use crate::store::{SampleStore, CHUNK_LEN_MAX, HEAD_SAMPLES_MAX};
use crate::{SeriesEntry, Tsdb};
use assay_ledger::Labels;

/// Version byte of the snapshot encoding this build writes and reads.
pub const SNAPSHOT_VERSION: u8 = 3;
const MAGIC: &[u8; 4] = b"ASTS";
/// Hard cap on labels per series the decoder accepts (as the ledger's entry decoder).
const SNAPSHOT_LABELS_PER_SERIES_MAX: usize = assay_ledger::entry::ENTRY_LABELS_PER_SERIES_MAX;

/// Why bytes are not a snapshot this build can load.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SnapshotError {
    #[error("snapshot does not start with the magic bytes \"ASTS\": not a tsdb snapshot")]
    Magic,
    #[error("snapshot version {0} is not supported (this build reads version {SNAPSHOT_VERSION}); rebuild the view from the ledger")]
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
    let mut out = Vec::with_capacity(64 + db.sample_count() as usize * 10);
    out.extend_from_slice(MAGIC);
    out.push(SNAPSHOT_VERSION);
    let body_start = out.len();
    write_body(db, &mut out);
    let checksum: [u8; 32] = Sha256::digest(&out[body_start..]).into();
    out.extend_from_slice(&checksum);
    out
}

pub(crate) fn decode(bytes: &[u8]) -> Result<Tsdb, SnapshotError> {
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err(SnapshotError::Magic);
    }
    let version = *bytes
        .get(MAGIC.len())
        .ok_or(SnapshotError::Truncated(MAGIC.len()))?;
    if version != SNAPSHOT_VERSION {
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
    let entries = read_body(&mut r)?;
    let metadata = read_metadata(&mut r)?;
    if r.at != body_end {
        return Err(SnapshotError::Trailing(body_end - r.at));
    }
    let mut db = Tsdb::from_sorted_series(entries);
    db.metadata = metadata;
    Ok(db)
}

fn read_body(r: &mut Reader<'_>) -> Result<Vec<SeriesEntry>, SnapshotError> {
    let series_count = r.count("series count", 2)?;
    let mut entries: Vec<SeriesEntry> = Vec::with_capacity(series_count);
    for i in 0..series_count {
        let labels = read_labels(r, i)?;
        if entries.last().is_some_and(|prev| prev.labels >= labels) {
            return Err(SnapshotError::SeriesOrder(i));
        }
        let chunk_count = r.count("chunk count", 1)?;
        let mut lens = Vec::with_capacity(chunk_count);
        for _ in 0..chunk_count {
            let at = r.at;
            match r.varint()? {
                n @ 1..=CHUNK_LEN_MAX => lens.push(n as usize),
                _ => {
                    return Err(SnapshotError::Limit {
                        what: "chunk length",
                        at,
                    })
                }
            }
        }
        let sample_count = r.count("sample count", 9)?;
        if sample_count == 0 {
            return Err(SnapshotError::SeriesEmpty(i));
        }
        let sealed: usize = lens.iter().sum();
        if sealed > sample_count || sample_count - sealed >= HEAD_SAMPLES_MAX {
            return Err(SnapshotError::Layout(i));
        }
        let mut points: Vec<(i64, f64)> = Vec::with_capacity(sample_count);
        let mut prev: Option<i64> = None;
        for j in 0..sample_count {
            let delta = unzigzag(r.varint()?);
            let ts = prev.unwrap_or(0).checked_add(delta);
            let ts = ts.filter(|&t| prev.is_none_or(|p| t > p));
            let ts = ts.ok_or(SnapshotError::TimestampOrder {
                series: i,
                sample: j,
            })?;
            prev = Some(ts);
            let value = f64::from_bits(u64::from_le_bytes(r.array8()?));
            points.push((ts, value));
        }
        let samples = SampleStore::from_layout(&points, &lens);
        debug_assert!(samples.is_sorted_unique() && samples.len() == sample_count);
        entries.push(SeriesEntry { labels, samples });
    }
    Ok(entries)
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
            let kind =
                assay_ledger::MetricType::from_u8(r.array1()?).ok_or(SnapshotError::Limit {
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

    fn array1(&mut self) -> Result<u8, SnapshotError> {
        let b = *self
            .bytes
            .get(self.at)
            .ok_or(SnapshotError::Truncated(self.at))?;
        self.at += 1;
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
