//! Ledger entries and their canonical binary encoding.
//!
//! An entry is one accepted write (a push batch, a CI report). Its bytes are what the
//! Merkle tree hashes, so the encoding is **canonical**: one value has exactly one
//! encoding, forever, and the decoder rejects every other byte string.
//!
//! # Encoding, version 1
//!
//! All integers are unsigned LEB128 varints in their shortest form unless stated.
//!
//! ```text
//! entry      := version:u8(=1) kind:u8 body
//! kind 0x01  := samples                          (a push: JSON, Prometheus text)
//! kind 0x02  := report_sha256:[u8;32] samples    (a CI report; the raw report's SHA-256)
//! kind 0x03  := meta_count metadata{meta_count}  (metric metadata, e.g. from remote write)
//! kind 0x04  := samples_r                        (a push naming known series by reference)
//! metadata   := metric:str type:u8 help:str unit:str
//! samples    := series_count series{series_count} sample_count sample{sample_count}
//! series     := label_count (name:str value:str){label_count}
//! samples_r  := series_count series_r{series_count} sample_count sample{sample_count}
//! series_r   := series                                   (inline, as in kind 0x01)
//!             | 0 entry:varint position:varint           (a reference, see below)
//! str        := len bytes(UTF-8)
//! sample     := series_ref ts_delta:zigzag-varint value:f64-le-bits(8 bytes)
//! ```
//!
//! Canonical rules the decoder enforces: labels of a series are sorted by name with no
//! duplicates and include a non-empty `__name__`; series are distinct and listed in the
//! order samples first reference them, and every series is referenced; `ts_delta` is the
//! sample's timestamp (ms since the Unix epoch) minus the previous sample's (the first
//! sample's minus 0); metadata records are sorted by all four fields with no duplicates,
//! metric names are non-empty and `type` is a [`MetricType`]; varints are minimal; no bytes
//! trail the entry. Values keep their
//! exact IEEE-754 bits (NaN payloads included).
//!
//! # Series references (kind 0x04)
//!
//! Remote write sends every series again with every scrape; written inline, its labels were
//! ~70 of the ~90 bytes per sample that the ledger hashed, wrote and packed. A
//! [`SeriesRef`] `(entry, position)` names *the inline series at `position` of the entry
//! at leaf index `entry`* — an earlier entry of kind 0x01, 0x02 or 0x04 — so a series the
//! ledger already holds costs a few bytes. Which series are written by reference is the
//! writer's choice (the node uses each series' first inline appearance it knows of); the
//! entry's meaning is fixed by the ledger alone, and a reader resolves a reference by
//! reading the entry it names (whose inclusion is proven like any other). Rules: a label
//! count of 0 marks a reference (an inline series has at least `__name__`); a kind 0x04
//! entry holds at least one reference (else it is written as kind 0x01); references are
//! distinct; a reference names an inline series of an entry before this one, and resolved,
//! every series of the entry is still distinct (checked by
//! [`Entry::decode_resolved`], which knows the ledger; [`Entry::decode`] rejects an entry
//! with references, [`Entry::validate`] checks everything the bytes alone can tell).

use std::hash::{Hash, Hasher};

/// Version byte of the current entry encoding.
pub const ENTRY_VERSION: u8 = 1;
/// Hard cap on an encoded entry, a safety bound for the decoder and the segment reader.
pub const ENTRY_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Hard cap on labels per series the decoder accepts (ingest applies a tighter limit).
pub const ENTRY_LABELS_PER_SERIES_MAX: usize = 1024;

/// The label that carries a series' metric name, as in Prometheus.
pub const METRIC_NAME_LABEL: &str = "__name__";

/// A series identity: label pairs sorted by name, names unique, `__name__` included.
///
/// The pairs sit behind an `Arc`, so a clone (one per sample in a batch, one per view or
/// cache that keeps the series) is a reference count, and two clones compare equal by
/// pointer before any string is compared. All names and values are one string with their
/// end offsets beside it (two allocations, not one per string: a node holding a million
/// series spent ~0.4 GB on per-string allocations). Equality and order are those of the
/// pairs, `(name, value)` in name order.
#[derive(Clone)]
pub struct Labels(std::sync::Arc<LabelsInner>);

struct LabelsInner {
    /// Per pair: the end of its name, then the end of its value, in `text`.
    ends: Box<[u32]>,
    /// Names and values, concatenated in pair order.
    text: Box<str>,
}

impl PartialEq for Labels {
    fn eq(&self, other: &Labels) -> bool {
        // The same boundaries in the same text are the same pairs.
        std::sync::Arc::ptr_eq(&self.0, &other.0)
            || (self.0.ends == other.0.ends && self.0.text == other.0.text)
    }
}

impl Eq for Labels {}

impl PartialOrd for Labels {
    fn partial_cmp(&self, other: &Labels) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Labels {
    fn cmp(&self, other: &Labels) -> std::cmp::Ordering {
        self.pairs().cmp(other.pairs())
    }
}

impl Hash for Labels {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Consistent with `eq`; only ever hashed in memory (`SeriesIndex::hash`).
        self.0.ends.hash(state);
        self.0.text.hash(state);
    }
}

impl std::fmt::Debug for Labels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Labels").field(&self.pairs()).finish()
    }
}

/// The pairs of a [`Labels`], in name order.
#[derive(Clone)]
pub struct LabelPairs<'a> {
    labels: &'a LabelsInner,
    next: usize,
    end: usize,
}

impl std::fmt::Debug for LabelPairs<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.clone()).finish()
    }
}

impl<'a> Iterator for LabelPairs<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<(&'a str, &'a str)> {
        if self.next == self.end {
            return None;
        }
        let pair = self.labels.pair(self.next);
        self.next += 1;
        Some(pair)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.end - self.next;
        (n, Some(n))
    }
}

impl DoubleEndedIterator for LabelPairs<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        if self.next == self.end {
            return None;
        }
        self.end -= 1;
        Some(self.labels.pair(self.end))
    }
}

impl ExactSizeIterator for LabelPairs<'_> {}

impl LabelsInner {
    fn pair(&self, i: usize) -> (&str, &str) {
        let start = if i == 0 {
            0
        } else {
            self.ends[2 * i - 1] as usize
        };
        let name_end = self.ends[2 * i] as usize;
        let value_end = self.ends[2 * i + 1] as usize;
        (&self.text[start..name_end], &self.text[name_end..value_end])
    }

    fn len(&self) -> usize {
        self.ends.len() / 2
    }
}

impl Labels {
    /// Builds a label set from pairs in any order; fails on a duplicate or empty name.
    pub fn new(mut pairs: Vec<(String, String)>) -> Result<Labels, EntryError> {
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        Labels::from_sorted(pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())))
    }

    /// Builds a label set from pairs already sorted by name (checked); fails on a
    /// duplicate, unsorted or empty name.
    pub fn from_sorted<'a>(
        pairs: impl ExactSizeIterator<Item = (&'a str, &'a str)> + Clone,
    ) -> Result<Labels, EntryError> {
        let bytes: usize = pairs.clone().map(|(n, v)| n.len() + v.len()).sum();
        assert!(bytes <= u32::MAX as usize, "label text over 4 GiB");
        let mut text = String::with_capacity(bytes);
        let mut ends = Vec::with_capacity(2 * pairs.len());
        let mut previous: Option<&str> = None;
        for (n, v) in pairs {
            if n.is_empty() {
                return Err(EntryError::EmptyLabelName);
            }
            match previous {
                Some(p) if p == n => return Err(EntryError::DuplicateLabel(n.to_string())),
                Some(p) if p > n => return Err(EntryError::UnsortedLabels(n.to_string())),
                _ => {}
            }
            previous = Some(n);
            text.push_str(n);
            ends.push(text.len() as u32);
            text.push_str(v);
            ends.push(text.len() as u32);
        }
        let labels = Labels(std::sync::Arc::new(LabelsInner {
            ends: ends.into(),
            text: text.into(),
        }));
        if labels.metric_name().is_none_or(str::is_empty) {
            return Err(EntryError::MissingMetricName);
        }
        Ok(labels)
    }

    /// Label pairs, sorted by name.
    pub fn pairs(&self) -> LabelPairs<'_> {
        LabelPairs {
            labels: &self.0,
            next: 0,
            end: self.0.len(),
        }
    }

    /// The pairs as owned strings.
    pub fn to_vec(&self) -> Vec<(String, String)> {
        self.pairs()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True for no pairs (never for a built label set: `__name__` is required).
    pub fn is_empty(&self) -> bool {
        self.0.len() == 0
    }

    /// Bytes of all names and values together.
    pub fn text_len(&self) -> usize {
        self.0.text.len()
    }

    /// Where the shared pairs live: equal for clones of one label set (an identity for
    /// pointer comparisons, never dereferenced).
    pub fn addr(&self) -> usize {
        std::sync::Arc::as_ptr(&self.0) as usize
    }

    /// The value of label `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        let (mut lo, mut hi) = (0, self.0.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            let (n, v) = self.0.pair(mid);
            match n.cmp(name) {
                std::cmp::Ordering::Equal => return Some(v),
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
            }
        }
        None
    }

    /// The metric name (`__name__`).
    pub fn metric_name(&self) -> Option<&str> {
        self.get(METRIC_NAME_LABEL)
    }
}

/// A series given by reference: the inline series at `position` (0-based, in the entry's
/// series list) of the entry at leaf index `entry` (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesRef {
    /// Leaf index of the entry that lists the series inline.
    pub entry: u64,
    /// The series' position in that entry's series list.
    pub position: u32,
}

/// One sample of a batch: which series (index into [`SampleBatch::series`]), when, what.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    /// Index into the batch's series list.
    pub series: u32,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// The value; compared by bits in [`SampleBatch`] equality.
    pub value: f64,
}

/// Samples with their series listed once, in first-reference order.
#[derive(Clone, Debug, Default)]
pub struct SampleBatch {
    series: Vec<Labels>,
    samples: Vec<Sample>,
    index: SeriesIndex,
    /// `SeriesIndex::hash` of each series, so views need not hash the labels again.
    hashes: Vec<u64>,
    /// How each series is written in the ledger: by reference, or inline (`None`); empty
    /// when all are inline (see [`SampleBatch::set_series_refs`]).
    series_refs: Vec<Option<SeriesRef>>,
}

impl PartialEq for SampleBatch {
    fn eq(&self, other: &Self) -> bool {
        self.series == other.series
            && self.series_refs == other.series_refs
            && self.samples.len() == other.samples.len()
            && self.samples.iter().zip(&other.samples).all(|(a, b)| {
                a.series == b.series
                    && a.timestamp_ms == b.timestamp_ms
                    && a.value.to_bits() == b.value.to_bits()
            })
    }
}

impl SampleBatch {
    /// An empty batch.
    pub fn new() -> SampleBatch {
        SampleBatch::default()
    }

    /// An empty batch with room for `samples` samples (and as many series), so building
    /// a large batch does not regrow its vectors and tables.
    pub fn with_capacity(samples: usize) -> SampleBatch {
        SampleBatch {
            series: Vec::with_capacity(samples),
            samples: Vec::with_capacity(samples),
            index: SeriesIndex::with_capacity(samples),
            hashes: Vec::with_capacity(samples),
            series_refs: Vec::new(),
        }
    }

    /// Appends one sample, registering its series on first use.
    pub fn push(&mut self, labels: Labels, timestamp_ms: i64, value: f64) {
        let hash = SeriesIndex::hash(&labels);
        self.push_hashed(labels, hash, timestamp_ms, value);
    }

    /// [`SampleBatch::push`] for a caller that knows `hash` = [`SeriesIndex::hash`]`(&labels)`
    /// already (a parser's series cache), so the labels are not hashed again.
    pub fn push_hashed(&mut self, labels: Labels, hash: u64, timestamp_ms: i64, value: f64) {
        debug_assert_eq!(hash, SeriesIndex::hash(&labels), "hash of other labels");
        let known = &self.series;
        let next = known.len() as u32;
        let series = match self
            .index
            .get_or_insert(hash, next, |id| known[id as usize] == labels)
        {
            Some(i) => i,
            None => {
                self.series.push(labels);
                self.hashes.push(hash);
                next
            }
        };
        self.samples.push(Sample {
            series,
            timestamp_ms,
            value,
        });
    }

    /// Appends a sample of the series of the last sample appended (remote write lists a
    /// series' samples together): no labels to clone, hash or look up.
    ///
    /// # Panics
    /// If the batch has no sample yet.
    pub fn push_again(&mut self, timestamp_ms: i64, value: f64) {
        let series = self
            .samples
            .last()
            .expect("push_again follows a sample")
            .series;
        self.samples.push(Sample {
            series,
            timestamp_ms,
            value,
        });
    }

    /// Distinct series, in first-reference order.
    pub fn series(&self) -> &[Labels] {
        &self.series
    }

    /// How each series is written in the ledger, parallel to [`SampleBatch::series`]:
    /// `Some` by reference, `None` inline; empty when every series is inline.
    pub fn series_refs(&self) -> &[Option<SeriesRef>] {
        &self.series_refs
    }

    /// Whether series `i` is written inline (so an entry holding it can be referenced).
    pub fn is_inline(&self, i: usize) -> bool {
        self.series_refs.get(i).is_none_or(Option::is_none)
    }

    /// Sets how each series is written: `refs[i]` must name an inline series with the same
    /// labels as series `i` (the writer's promise; readers resolve and check it). A list
    /// with no reference is stored as empty, so the batch encodes as kind 0x01.
    pub fn set_series_refs(&mut self, refs: Vec<Option<SeriesRef>>) {
        assert_eq!(
            refs.len(),
            self.series.len(),
            "one reference slot per series"
        );
        self.series_refs = if refs.iter().any(Option::is_some) {
            refs
        } else {
            Vec::new()
        };
    }

    /// [`SeriesIndex::hash`] of each series, parallel to [`SampleBatch::series`].
    pub fn series_hashes(&self) -> &[u64] {
        &self.hashes
    }

    /// Samples in the order they were pushed.
    pub fn samples(&self) -> &[Sample] {
        &self.samples
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// True when the batch holds no sample.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Iterates `(labels, timestamp_ms, value)`.
    pub fn iter(&self) -> impl Iterator<Item = (&Labels, i64, f64)> + '_ {
        self.samples
            .iter()
            .map(|s| (&self.series[s.series as usize], s.timestamp_ms, s.value))
    }
}

/// Maps label sets to dense ids `0..n` without keeping a second copy of the labels:
/// a hash of the labels points at the newest id with that hash, and each id at the
/// previous id with the same hash; the caller compares candidates with its own store.
/// Lookups only, never iterated, so its hash function cannot leak into any result.
#[derive(Clone, Debug, Default)]
pub struct SeriesIndex {
    heads: rustc_hash::FxHashMap<u64, u32>,
    next: Vec<u32>,
}

const SERIES_INDEX_END: u32 = u32::MAX;

impl SeriesIndex {
    /// An empty index with room for `ids` ids.
    pub fn with_capacity(ids: usize) -> SeriesIndex {
        SeriesIndex {
            heads: rustc_hash::FxHashMap::with_capacity_and_hasher(ids, Default::default()),
            next: Vec::with_capacity(ids),
        }
    }

    /// The hash this index files `labels` under.
    pub fn hash(labels: &Labels) -> u64 {
        let mut h = rustc_hash::FxHasher::default();
        labels.hash(&mut h);
        h.finish()
    }

    /// The id with this hash for which `is(id)` holds.
    pub fn get(&self, hash: u64, is: impl Fn(u32) -> bool) -> Option<u32> {
        let mut id = *self.heads.get(&hash)?;
        loop {
            if is(id) {
                return Some(id);
            }
            id = self.next[id as usize];
            if id == SERIES_INDEX_END {
                return None;
            }
        }
    }

    /// [`SeriesIndex::get`], and when no id matches, files `new` (which must be the next
    /// id) under `hash` — one lookup of the hash for both.
    pub fn get_or_insert(&mut self, hash: u64, new: u32, is: impl Fn(u32) -> bool) -> Option<u32> {
        assert_eq!(
            new as usize,
            self.next.len(),
            "series ids are dense and increasing"
        );
        match self.heads.entry(hash) {
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(new);
                self.next.push(SERIES_INDEX_END);
                None
            }
            std::collections::hash_map::Entry::Occupied(mut slot) => {
                let mut id = *slot.get();
                while id != SERIES_INDEX_END {
                    if is(id) {
                        return Some(id);
                    }
                    id = self.next[id as usize];
                }
                let prev = slot.insert(new);
                self.next.push(prev);
                None
            }
        }
    }

    /// Files the next id (ids are dense: `id` must equal the number of ids so far).
    pub fn insert(&mut self, hash: u64, id: u32) {
        assert_eq!(
            id as usize,
            self.next.len(),
            "series ids are dense and increasing"
        );
        let prev = self.heads.insert(hash, id).unwrap_or(SERIES_INDEX_END);
        self.next.push(prev);
    }

    /// Ids filed so far.
    pub fn len(&self) -> usize {
        self.next.len()
    }

    /// Forgets every id, keeping the memory for the next use.
    pub fn clear(&mut self) {
        self.heads.clear();
        self.next.clear();
    }

    /// True before the first id.
    pub fn is_empty(&self) -> bool {
        self.next.is_empty()
    }
}

/// A metric family's type, as Prometheus' remote-write protocol numbers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum MetricType {
    /// Not known.
    Unknown = 0,
    /// Counter.
    Counter = 1,
    /// Gauge.
    Gauge = 2,
    /// Classic histogram.
    Histogram = 3,
    /// Gauge histogram.
    GaugeHistogram = 4,
    /// Summary.
    Summary = 5,
    /// Info.
    Info = 6,
    /// State set.
    StateSet = 7,
}

impl MetricType {
    /// The type for its protocol number.
    pub fn from_u8(v: u8) -> Option<MetricType> {
        use MetricType::*;
        [
            Unknown,
            Counter,
            Gauge,
            Histogram,
            GaugeHistogram,
            Summary,
            Info,
            StateSet,
        ]
        .get(v as usize)
        .copied()
    }

    /// The name Prometheus' metadata API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Unknown => "unknown",
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::GaugeHistogram => "gaugehistogram",
            MetricType::Summary => "summary",
            MetricType::Info => "info",
            MetricType::StateSet => "stateset",
        }
    }
}

/// What a sender says about a metric family: type, help text and unit.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MetricMetadata {
    /// The metric family's name (non-empty).
    pub metric: String,
    /// Its type.
    pub kind: MetricType,
    /// Help text (may be empty).
    pub help: String,
    /// Unit (may be empty).
    pub unit: String,
}

/// Most metadata records one entry may hold (the decoder's safety bound).
pub const ENTRY_METADATA_MAX: usize = 100_000;

/// One ledger entry: what a client wrote, as the ledger stores and hashes it.
#[derive(Clone, Debug, PartialEq)]
pub enum Entry {
    /// Samples pushed as JSON or Prometheus text.
    Samples(SampleBatch),
    /// KPIs derived from a CI report, with the SHA-256 of the raw report.
    CiReport {
        /// SHA-256 of the report exactly as uploaded.
        report_sha256: [u8; 32],
        /// The derived KPIs.
        batch: SampleBatch,
    },
    /// Metric metadata, sorted and distinct (see [`Entry::metadata`]).
    Metadata(Vec<MetricMetadata>),
}

pub(crate) const KIND_SAMPLES: u8 = 0x01;
pub(crate) const KIND_CI_REPORT: u8 = 0x02;
const KIND_METADATA: u8 = 0x03;
pub(crate) const KIND_SAMPLES_REFS: u8 = 0x04;

/// The batch of entries that carry no samples.
static EMPTY_BATCH: std::sync::LazyLock<SampleBatch> = std::sync::LazyLock::new(SampleBatch::new);

/// Why bytes are not a canonical entry, or why labels are not a valid set.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EntryError {
    #[error("entry is truncated at byte {0}")]
    Truncated(usize),
    #[error("entry version {0} is not supported (this build reads version {ENTRY_VERSION})")]
    Version(u8),
    #[error("entry kind 0x{0:02x} is unknown")]
    Kind(u8),
    #[error("varint at byte {0} is not minimal or overflows")]
    Varint(usize),
    #[error("string at byte {0} is not UTF-8")]
    Utf8(usize),
    #[error("{what} at byte {at} exceeds its limit")]
    Limit { what: &'static str, at: usize },
    #[error("series {0}: labels are not sorted by name or repeat a name")]
    LabelOrder(usize),
    #[error("series {0} lacks a non-empty __name__ label")]
    SeriesName(usize),
    #[error("series {0} repeats an earlier series")]
    SeriesRepeated(usize),
    #[error("sample {0} references series out of first-use order")]
    SeriesRef(usize),
    #[error("series {0} is never referenced by a sample")]
    SeriesUnused(usize),
    #[error("{0} bytes trail the entry")]
    Trailing(usize),
    #[error("label `{0}` is given twice")]
    DuplicateLabel(String),
    #[error("label `{0}` is out of name order")]
    UnsortedLabels(String),
    #[error("a label name is empty")]
    EmptyLabelName,
    #[error("the metric name (__name__) is missing or empty")]
    MissingMetricName,
    #[error("timestamp overflow at sample {0}")]
    Timestamp(usize),
    #[error("metadata record {0} is not after the previous one, or its metric name is empty")]
    MetadataOrder(usize),
    #[error("metadata record {0} has an unknown metric type")]
    MetadataType(usize),
    #[error("series {0} is given by reference, where the entry's kind allows none")]
    RefNotAllowed(usize),
    #[error("a kind 0x04 entry gives no series by reference; it must be written as kind 0x01")]
    NoRefs,
    #[error(
        "series {series} refers to series {} of entry {}, which could not be resolved \
         (decode it with Entry::decode_resolved and the entries it refers to)",
        reference.position,
        reference.entry
    )]
    Unresolved { series: usize, reference: SeriesRef },
}

impl Entry {
    /// The entry's samples, whatever its kind (none for metadata).
    pub fn batch(&self) -> &SampleBatch {
        match self {
            Entry::Samples(b) | Entry::CiReport { batch: b, .. } => b,
            Entry::Metadata(_) => &EMPTY_BATCH,
        }
    }

    /// A metadata entry: records sorted and deduplicated (the canonical form); records with
    /// an empty metric name are dropped.
    pub fn metadata(mut records: Vec<MetricMetadata>) -> Entry {
        records.retain(|m| !m.metric.is_empty());
        records.sort();
        records.dedup();
        Entry::Metadata(records)
    }

    /// The canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// At least the encoding's length, computed without encoding; with every series
    /// inline (before references are set) it bounds any choice of references too.
    pub fn encoded_len_bound(&self) -> usize {
        let batch = self.batch();
        // Varints counted at their largest; a reference (≤ 16 bytes) within the 25 every
        // series is counted.
        let label_bytes: usize = (batch.series.iter().enumerate())
            .filter(|&(i, _)| batch.is_inline(i))
            .map(|(_, l)| l.text_len() + 20 * l.len())
            .sum();
        let metadata: usize = match self {
            Entry::Metadata(records) => records
                .iter()
                .map(|m| m.metric.len() + m.help.len() + m.unit.len() + 31)
                .sum(),
            _ => 0,
        };
        64 + label_bytes + batch.series.len() * 25 + batch.samples.len() * 28 + metadata
    }

    /// [`Entry::encode`] into `out`, replacing what it held (a caller that encodes many
    /// entries reuses one buffer).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.clear();
        let batch = self.batch();
        // Sized up front so a large batch is written into one allocation rather than a
        // regrown one.
        out.reserve(self.encoded_len_bound());
        out.push(ENTRY_VERSION);
        match self {
            Entry::Samples(b) if b.series_refs.is_empty() => out.push(KIND_SAMPLES),
            Entry::Samples(_) => out.push(KIND_SAMPLES_REFS),
            Entry::CiReport { report_sha256, .. } => {
                assert!(
                    batch.series_refs.is_empty(),
                    "CI reports are written inline"
                );
                out.push(KIND_CI_REPORT);
                out.extend_from_slice(report_sha256);
            }
            Entry::Metadata(records) => {
                debug_assert!(records.windows(2).all(|w| w[0] < w[1]));
                out.push(KIND_METADATA);
                put_varint(out, records.len() as u64);
                for m in records {
                    put_str(out, &m.metric);
                    out.push(m.kind as u8);
                    put_str(out, &m.help);
                    put_str(out, &m.unit);
                }
                return;
            }
        }
        put_varint(out, batch.series.len() as u64);
        for (i, labels) in batch.series.iter().enumerate() {
            if let Some(Some(r)) = batch.series_refs.get(i) {
                out.push(0);
                put_varint(out, r.entry);
                put_varint(out, u64::from(r.position));
                continue;
            }
            put_varint(out, labels.len() as u64);
            for (n, v) in labels.pairs() {
                put_str(out, n);
                put_str(out, v);
            }
        }
        put_varint(out, batch.samples.len() as u64);
        let mut prev = 0i64;
        for s in &batch.samples {
            put_sample(
                out,
                s.series as u64,
                s.timestamp_ms.wrapping_sub(prev),
                s.value.to_bits(),
            );
            prev = s.timestamp_ms;
        }
    }

    /// Decodes canonical bytes; any other byte string is an error naming the offset. An
    /// entry with series references is [`EntryError::Unresolved`]: decode it with
    /// [`Entry::decode_resolved`].
    pub fn decode(bytes: &[u8]) -> Result<Entry, EntryError> {
        Entry::decode_resolved(bytes, &mut |_| None)
    }

    /// Whether `bytes` are an entry of the kind that gives series by reference (kind 0x04;
    /// whether they are canonical is [`Entry::validate`]'s question).
    pub fn has_series_references(bytes: &[u8]) -> bool {
        bytes.get(1) == Some(&KIND_SAMPLES_REFS)
    }

    /// Checks everything about `bytes` that they alone can tell (all of
    /// [`Entry::decode_resolved`]'s rules but that resolved references name series
    /// distinct from the entry's others); returns the number of samples.
    pub fn validate(bytes: &[u8]) -> Result<usize, EntryError> {
        match decode_entry(bytes, Refs::Unresolved)? {
            (Entry::Metadata(_), _) => Ok(0),
            (e, _) => Ok(e.batch().len()),
        }
    }

    /// The inline series of an entry (kinds 0x01, 0x02, 0x04) with their positions: what a
    /// [`SeriesRef`] to this entry can name. Checked as by [`Entry::validate`].
    pub fn inline_series(bytes: &[u8]) -> Result<Vec<(u32, Labels)>, EntryError> {
        let (entry, _) = decode_entry(bytes, Refs::Unresolved)?;
        let batch = entry.batch();
        Ok((0..batch.series.len())
            .filter(|&i| batch.is_inline(i))
            .map(|i| (i as u32, batch.series[i].clone()))
            .collect())
    }

    /// Decodes canonical bytes, asking `resolve` for the labels of each series given by
    /// reference (`None`: unknown, an error). The caller checks that a reference names an
    /// inline series of an earlier entry (it knows this entry's index); this checks that
    /// resolved, the entry's series are distinct.
    pub fn decode_resolved(
        bytes: &[u8],
        resolve: &mut dyn FnMut(SeriesRef) -> Option<Labels>,
    ) -> Result<Entry, EntryError> {
        decode_entry(bytes, Refs::Resolve(resolve)).map(|(e, _)| e)
    }
}

/// How the decoder treats series references.
enum Refs<'r> {
    /// Resolved by the caller.
    Resolve(&'r mut dyn FnMut(SeriesRef) -> Option<Labels>),
    /// Checked as far as the bytes tell; the batch holds placeholders for their labels.
    Unresolved,
}

/// The entry, and whether its batch is whole (false: placeholders stand for references).
fn decode_entry(bytes: &[u8], refs: Refs<'_>) -> Result<(Entry, bool), EntryError> {
    {
        let mut r = Reader { bytes, at: 0 };
        if bytes.len() > ENTRY_BYTES_MAX {
            return Err(EntryError::Limit {
                what: "entry size",
                at: 0,
            });
        }
        let version = r.u8()?;
        if version != ENTRY_VERSION {
            return Err(EntryError::Version(version));
        }
        let kind = r.u8()?;
        let report_sha256 = match kind {
            KIND_SAMPLES | KIND_SAMPLES_REFS => None,
            KIND_CI_REPORT => Some(r.array32()?),
            KIND_METADATA => {
                let records = decode_metadata(&mut r)?;
                if r.at != bytes.len() {
                    return Err(EntryError::Trailing(bytes.len() - r.at));
                }
                return Ok((Entry::Metadata(records), true));
            }
            k => return Err(EntryError::Kind(k)),
        };
        let refs = (kind == KIND_SAMPLES_REFS).then_some(refs);
        let (batch, whole) = decode_batch(&mut r, refs)?;
        if r.at != bytes.len() {
            return Err(EntryError::Trailing(bytes.len() - r.at));
        }
        let entry = match report_sha256 {
            None => Entry::Samples(batch),
            Some(report_sha256) => Entry::CiReport {
                report_sha256,
                batch,
            },
        };
        Ok((entry, whole))
    }
}

fn decode_metadata(r: &mut Reader<'_>) -> Result<Vec<MetricMetadata>, EntryError> {
    let count = r.count("metadata count")?;
    if count > ENTRY_METADATA_MAX {
        return Err(EntryError::Limit {
            what: "metadata count",
            at: r.at,
        });
    }
    let mut records: Vec<MetricMetadata> = Vec::with_capacity(count);
    for i in 0..count {
        let metric = r.str()?;
        let kind = MetricType::from_u8(r.u8()?).ok_or(EntryError::MetadataType(i))?;
        let help = r.str()?;
        let unit = r.str()?;
        let m = MetricMetadata {
            metric,
            kind,
            help,
            unit,
        };
        if m.metric.is_empty() || records.last().is_some_and(|prev| *prev >= m) {
            return Err(EntryError::MetadataOrder(i));
        }
        records.push(m);
    }
    Ok(records)
}

/// A samples list; `refs` is `None` for kinds that allow no references. Returns the batch
/// and whether it is whole (no placeholder stands for an unresolved reference).
fn decode_batch(
    r: &mut Reader<'_>,
    mut refs: Option<Refs<'_>>,
) -> Result<(SampleBatch, bool), EntryError> {
    // Every series and sample takes at least one byte, which bounds the counts by the input.
    let series_count = r.count("series count")?;
    let mut batch = SampleBatch::new();
    batch.series.reserve(series_count);
    let mut series_refs: Vec<Option<SeriesRef>> = Vec::new();
    let mut seen_refs: rustc_hash::FxHashSet<SeriesRef> = Default::default();
    let mut whole = true;
    for i in 0..series_count {
        let label_count = r.count("label count")?;
        let labels = if label_count == 0 {
            let Some(mode) = refs.as_mut() else {
                return Err(EntryError::RefNotAllowed(i));
            };
            let entry = r.varint()?;
            let at = r.at;
            let position = u32::try_from(r.varint()?).map_err(|_| EntryError::Varint(at))?;
            let reference = SeriesRef { entry, position };
            if !seen_refs.insert(reference) {
                return Err(EntryError::SeriesRepeated(i));
            }
            if series_refs.len() < i {
                series_refs.resize(i, None);
            }
            series_refs.push(Some(reference));
            match mode {
                Refs::Resolve(resolve) => resolve(reference).ok_or(EntryError::Unresolved {
                    series: i,
                    reference,
                })?,
                Refs::Unresolved => {
                    // Filed (ids are positions) but never a match (see `is_series`), and
                    // the batch is not handed out as a decoded entry.
                    whole = false;
                    batch.index.insert(0, i as u32);
                    batch.hashes.push(0);
                    batch.series.push(unresolved_placeholder());
                    continue;
                }
            }
        } else {
            if label_count > ENTRY_LABELS_PER_SERIES_MAX {
                return Err(EntryError::Limit {
                    what: "label count",
                    at: r.at,
                });
            }
            let mut pairs = Vec::with_capacity(label_count);
            for _ in 0..label_count {
                let n = r.str_ref()?;
                let v = r.str_ref()?;
                pairs.push((n, v));
            }
            match Labels::from_sorted(pairs.iter().copied()) {
                Ok(l) => l,
                Err(EntryError::MissingMetricName) => return Err(EntryError::SeriesName(i)),
                Err(_) => return Err(EntryError::LabelOrder(i)),
            }
        };
        let hash = SeriesIndex::hash(&labels);
        let known = &batch.series;
        if batch
            .index
            .get(hash, |id| {
                is_series(known, &series_refs, whole, id, &labels)
            })
            .is_some()
        {
            return Err(EntryError::SeriesRepeated(i));
        }
        batch.index.insert(hash, i as u32);
        batch.hashes.push(hash);
        batch.series.push(labels);
    }
    let sample_count = r.count("sample count")?;
    batch.samples.reserve(sample_count);
    let mut prev = 0i64;
    let mut referenced = 0u32;
    for i in 0..sample_count {
        let series = r.varint()?;
        if series > referenced as u64 || series >= series_count as u64 {
            return Err(EntryError::SeriesRef(i));
        }
        if series == referenced as u64 {
            referenced += 1;
        }
        let delta = unzigzag(r.varint()?);
        let ts = prev.checked_add(delta).ok_or(EntryError::Timestamp(i))?;
        prev = ts;
        let value = f64::from_bits(u64::from_le_bytes(r.array8()?));
        batch.samples.push(Sample {
            series: series as u32,
            timestamp_ms: ts,
            value,
        });
    }
    if (referenced as usize) < series_count {
        return Err(EntryError::SeriesUnused(referenced as usize));
    }
    if refs.is_some() && series_refs.is_empty() {
        return Err(EntryError::NoRefs);
    }
    if !series_refs.is_empty() {
        series_refs.resize(series_count, None);
        batch.series_refs = series_refs;
    }
    Ok((batch, whole))
}

/// Whether batch series `id` has `labels`; an unresolved reference's placeholder (a
/// reference in a batch that is not whole) has none.
fn is_series(
    known: &[Labels],
    refs: &[Option<SeriesRef>],
    whole: bool,
    id: u32,
    labels: &Labels,
) -> bool {
    let placeholder = !whole && refs.get(id as usize).is_some_and(Option::is_some);
    !placeholder && known[id as usize] == *labels
}

/// What stands for an unresolved reference's labels in a batch only checked.
fn unresolved_placeholder() -> Labels {
    static PLACEHOLDER: std::sync::LazyLock<Labels> = std::sync::LazyLock::new(|| {
        Labels::from_sorted([(METRIC_NAME_LABEL, "unresolved")].into_iter()).expect("valid labels")
    });
    PLACEHOLDER.clone()
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn u8(&mut self) -> Result<u8, EntryError> {
        let b = *self
            .bytes
            .get(self.at)
            .ok_or(EntryError::Truncated(self.at))?;
        self.at += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], EntryError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or(EntryError::Truncated(self.bytes.len()))?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn array32(&mut self) -> Result<[u8; 32], EntryError> {
        Ok(self.take(32)?.try_into().expect("took 32 bytes"))
    }

    fn array8(&mut self) -> Result<[u8; 8], EntryError> {
        Ok(self.take(8)?.try_into().expect("took 8 bytes"))
    }

    fn varint(&mut self) -> Result<u64, EntryError> {
        let start = self.at;
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            let low = (b & 0x7f) as u64;
            if shift == 63 && low > 1 {
                return Err(EntryError::Varint(start));
            }
            value |= low << shift;
            if b & 0x80 == 0 {
                // A zero final byte after the first means the varint was padded.
                if b == 0 && shift > 0 {
                    return Err(EntryError::Varint(start));
                }
                return Ok(value);
            }
        }
        Err(EntryError::Varint(start))
    }

    /// A count of items that each take at least one more byte of input.
    fn count(&mut self, what: &'static str) -> Result<usize, EntryError> {
        let at = self.at;
        let n = self.varint()?;
        if n > (self.bytes.len() - self.at) as u64 {
            return Err(EntryError::Limit { what, at });
        }
        Ok(n as usize)
    }

    fn str(&mut self) -> Result<String, EntryError> {
        self.str_ref().map(str::to_string)
    }

    fn str_ref(&mut self) -> Result<&'a str, EntryError> {
        let len = self.count("string length")?;
        let at = self.at;
        let raw = self.take(len)?;
        std::str::from_utf8(raw).map_err(|_| EntryError::Utf8(at))
    }
}

pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends one sample of an entry: series index and time delta (zig-zag) as varints, then
/// the value's 8 bytes. Gathered in a stack buffer and appended at once: a byte-wise push
/// checks the vector's capacity and stores its length for every byte (the entry encoder and
/// the pack check write ~15 M samples/s between them).
#[inline(always)]
pub(crate) fn put_sample(out: &mut Vec<u8>, series: u64, delta_ms: i64, bits: u64) {
    let mut buf = [0u8; 28];
    let mut n = put_varint_in(&mut buf, 0, series);
    n = put_varint_in(&mut buf, n, zigzag(delta_ms));
    buf[n..n + 8].copy_from_slice(&bits.to_le_bytes());
    // A fixed-size copy and a truncate: a copy of `n + 8` bytes was a call to memcpy, on
    // every sample's path (1 % of ingest CPU).
    out.extend_from_slice(&buf);
    out.truncate(out.len() - (buf.len() - (n + 8)));
}

/// Writes `v` as a varint into `buf` at `at` (room for 10 bytes); returns the end.
#[inline(always)]
fn put_varint_in(buf: &mut [u8; 28], mut at: usize, mut v: u64) -> usize {
    while v >= 0x80 {
        buf[at] = (v as u8) | 0x80;
        v >>= 7;
        at += 1;
    }
    buf[at] = v as u8;
    at + 1
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

pub(crate) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

pub(crate) fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels::new(
            pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn encoding_is_stable() {
        let mut b = SampleBatch::new();
        b.push(
            labels(&[("host", "a"), ("__name__", "cpu")]),
            1_700_000_000_000,
            0.5,
        );
        b.push(
            labels(&[("__name__", "cpu"), ("host", "a")]),
            1_700_000_001_000,
            1.0,
        );
        b.push(labels(&[("__name__", "up")]), 1_700_000_000_500, -1.0);
        let bytes = Entry::Samples(b.clone()).encode();
        // These bytes are the format: changing them breaks every existing ledger.
        expect![[r#"
            01010202085f5f6e616d655f5f0363707504686f7374016101085f5f6e616d655f5f027570030080a0abfef962000000000000e0
            3f00d00f000000000000f03f01e707000000000000f0bf"#]]
        .assert_eq(&hex_lines(&bytes));
        assert_eq!(Entry::decode(&bytes).unwrap(), Entry::Samples(b));
    }

    fn hex_lines(b: &[u8]) -> String {
        let h = hex::encode(b);
        h.as_bytes()
            .chunks(104)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn ci_report_roundtrip() {
        let mut b = SampleBatch::new();
        b.push(labels(&[("__name__", "ci_tests")]), 5, 3.0);
        let e = Entry::CiReport {
            report_sha256: [7; 32],
            batch: b,
        };
        assert_eq!(Entry::decode(&e.encode()).unwrap(), e);
    }

    #[test]
    fn metadata_entries_are_canonical() {
        let m = |metric: &str, kind, help: &str| MetricMetadata {
            metric: metric.into(),
            kind,
            help: help.into(),
            unit: String::new(),
        };
        let e = Entry::metadata(vec![
            m("up", MetricType::Gauge, "1 if the target is up"),
            m("", MetricType::Gauge, "dropped: no name"),
            m("http_requests_total", MetricType::Counter, "Requests."),
            m("up", MetricType::Gauge, "1 if the target is up"),
        ]);
        let bytes = e.encode();
        expect![[r#"
            01030213687474705f72657175657374735f746f74616c010952657175657374732e000275700215312069662074686520746172
            67657420697320757000"#]]
        .assert_eq(&hex_lines(&bytes));
        assert_eq!(Entry::decode(&bytes).unwrap(), e);
        assert!(e.batch().is_empty());
        check_err(
            "01 03 01 00 02 00 00",
            expect!["metadata record 0 is not after the previous one, or its metric name is empty"],
        );
        check_err(
            "01 03 01 01 61 09 00 00",
            expect!["metadata record 0 has an unknown metric type"],
        );
        check_err(
            "01 03 02 01 62 00 00 00 01 61 00 00 00",
            expect!["metadata record 1 is not after the previous one, or its metric name is empty"],
        );
        check_err(
            "01 03 01 01 61 00 00 00 ff",
            expect!["1 bytes trail the entry"],
        );
    }

    fn check_err(hex_bytes: &str, expect: expect_test::Expect) {
        let bytes = hex::decode(hex_bytes.replace(' ', "")).unwrap();
        expect.assert_eq(&Entry::decode(&bytes).unwrap_err().to_string());
    }

    #[test]
    fn rejects_non_canonical() {
        check_err("", expect!["entry is truncated at byte 0"]);
        check_err(
            "02 01",
            expect!["entry version 2 is not supported (this build reads version 1)"],
        );
        check_err("01 07", expect!["entry kind 0x07 is unknown"]);
        check_err(
            "01 01 80 00",
            expect!["varint at byte 2 is not minimal or overflows"],
        );
        check_err("01 01 00 00 00", expect!["1 bytes trail the entry"]);
        // Labels out of order: host before __name__ is wrong since '_' < 'h'... use b < a.
        check_err(
            "01 01 01 02 01 62 00 01 61 00 00",
            expect!["series 0: labels are not sorted by name or repeat a name"],
        );
        check_err(
            "01 01 01 01 01 61 01 78 00",
            expect!["series 0 lacks a non-empty __name__ label"],
        );
        check_err(
            "01 01 01 01 08 5f5f6e616d655f5f 01 78 00",
            expect!["series 0 is never referenced by a sample"],
        );
        check_err(
            "01 01 01 01 08 5f5f6e616d655f5f 01 78 01 01 00 0000000000000000",
            expect!["sample 0 references series out of first-use order"],
        );
        check_err(
            "01 01 05",
            expect!["series count at byte 2 exceeds its limit"],
        );
    }

    /// A batch of series `x`, `y`, `z` (one sample each), `y` and `z` by reference.
    fn batch_with_refs() -> (SampleBatch, [Labels; 3], [SeriesRef; 2]) {
        let l = [
            labels(&[("__name__", "x")]),
            labels(&[("__name__", "y")]),
            labels(&[("__name__", "z"), ("k", "v")]),
        ];
        let r = [
            SeriesRef {
                entry: 300,
                position: 2,
            },
            SeriesRef {
                entry: 7,
                position: 0,
            },
        ];
        let mut b = SampleBatch::new();
        for (i, l) in l.iter().enumerate() {
            b.push(l.clone(), 1_000 + i as i64, i as f64);
        }
        b.set_series_refs(vec![None, Some(r[0]), Some(r[1])]);
        (b, l, r)
    }

    #[test]
    fn series_references_encode_compactly_and_decode_resolved() {
        let (b, l, r) = batch_with_refs();
        let bytes = Entry::Samples(b.clone()).encode();
        // x inline; y as entry 300 (a two-byte varint) position 2; z as entry 7 position 0.
        expect!["010403 01085f5f6e616d655f5f0178 00ac0202 000700 03 00d00f0000000000000000 0102000000000000f03f 02020000000000000040"]
            .assert_eq(&[0..3, 3..15, 15..19, 19..22, 22..23, 23..34, 34..44, 44..54]
                .map(|r| hex::encode(&bytes[r]))
                .join(" "));
        assert_eq!(bytes.len(), 54);
        expect!["series 1 refers to series 2 of entry 300, which could not be resolved (decode it with Entry::decode_resolved and the entries it refers to)"]
            .assert_eq(&Entry::decode(&bytes).unwrap_err().to_string());
        assert_eq!(Entry::validate(&bytes), Ok(3));
        assert_eq!(Entry::inline_series(&bytes), Ok(vec![(0, l[0].clone())]));
        let mut asked = Vec::new();
        let decoded = Entry::decode_resolved(&bytes, &mut |x| {
            asked.push(x);
            Some(l[if x == r[0] { 1 } else { 2 }].clone())
        })
        .unwrap();
        assert_eq!(asked, r);
        assert_eq!(decoded, Entry::Samples(b));
        // Resolved to a series the entry lists already: not distinct.
        let repeated = Entry::decode_resolved(&bytes, &mut |_| Some(l[0].clone()));
        assert_eq!(repeated, Err(EntryError::SeriesRepeated(1)));
        assert_eq!(
            Entry::decode_resolved(&bytes, &mut |_| None),
            Err(EntryError::Unresolved {
                series: 1,
                reference: r[0]
            })
        );
    }

    #[test]
    fn a_batch_without_references_is_kind_1_and_references_follow_the_rules() {
        let (mut b, _, _) = batch_with_refs();
        b.set_series_refs(vec![None; 3]);
        assert!(b.series_refs().is_empty());
        assert_eq!(Entry::Samples(b.clone()).encode()[1], KIND_SAMPLES);
        // Kind 0x04 with every series inline has one encoding only: kind 0x01.
        let mut bytes = Entry::Samples(b).encode();
        bytes[1] = KIND_SAMPLES_REFS;
        assert_eq!(Entry::validate(&bytes), Err(EntryError::NoRefs));
        // A reference where the kind allows none, and references repeated.
        check_err(
            "01 01 01 00 07 00 01 00 00 0000000000000000",
            expect!["series 0 is given by reference, where the entry's kind allows none"],
        );
        let repeated =
            "01 04 02 00 07 00 00 07 00 02 00 00 0000000000000000 01 00 0000000000000000";
        let repeated = hex::decode(repeated.replace(' ', "")).unwrap();
        assert_eq!(
            Entry::validate(&repeated),
            Err(EntryError::SeriesRepeated(1))
        );
        check_err(
            "01 04 01 00 07 80 00 01 00 00 0000000000000000",
            expect!["varint at byte 5 is not minimal or overflows"],
        );
        check_err(
            "01 04 01 00 07 8080808010 01 00 00 0000000000000000",
            expect!["varint at byte 5 is not minimal or overflows"],
        );
    }

    #[test]
    fn labels_reject_duplicates_and_missing_name() {
        let dup = Labels::new(vec![("a".into(), "1".into()), ("a".into(), "2".into())]);
        assert_eq!(dup.unwrap_err(), EntryError::DuplicateLabel("a".into()));
        let none = Labels::new(vec![("a".into(), "1".into())]);
        assert_eq!(none.unwrap_err(), EntryError::MissingMetricName);
        let unsorted = Labels::from_sorted([("__name__", "m"), ("b", "1"), ("a", "2")].into_iter());
        assert_eq!(
            unsorted.unwrap_err(),
            EntryError::UnsortedLabels("a".into())
        );
        let empty = Labels::from_sorted([("", "m"), ("__name__", "m")].into_iter());
        assert_eq!(empty.unwrap_err(), EntryError::EmptyLabelName);
    }

    #[test]
    fn labels_compare_and_order_as_their_pairs() {
        let l = |pairs: &[(&str, &str)]| {
            let mut v: Vec<(String, String)> = vec![("__name__".into(), "m".into())];
            v.extend(pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())));
            Labels::new(v).unwrap()
        };
        // The same text with other boundaries, empty values, prefixes, more pairs.
        let sets = [
            l(&[("a", "bc")]),
            l(&[("ab", "c")]),
            l(&[("a", ""), ("b", "c")]),
            l(&[("a", "b")]),
            l(&[("a", "b"), ("c", "")]),
            l(&[]),
            l(&[("b", "")]),
        ];
        for x in &sets {
            for y in &sets {
                let (px, py) = (x.to_vec(), y.to_vec());
                assert_eq!(x == y, px == py, "{x:?} == {y:?}");
                assert_eq!(x.cmp(y), px.cmp(&py), "{x:?} cmp {y:?}");
                if x == y {
                    assert_eq!(SeriesIndex::hash(x), SeriesIndex::hash(y));
                }
            }
        }
        let a = l(&[("instance", "h:9100"), ("job", "node")]);
        assert_eq!(a.get("job"), Some("node"));
        assert_eq!(a.get("instance"), Some("h:9100"));
        assert_eq!(a.get("jo"), None);
        assert_eq!(a.metric_name(), Some("m"));
        assert_eq!(a.len(), 3);
        assert_eq!(a.pairs().next_back(), Some(("job", "node")));
        assert_eq!(
            format!("{a:?}"),
            r#"Labels([("__name__", "m"), ("instance", "h:9100"), ("job", "node")])"#
        );
        let b = a.clone();
        assert_eq!(a.addr(), b.addr());
        assert_ne!(
            a.addr(),
            l(&[("instance", "h:9100"), ("job", "node")]).addr()
        );
    }

    #[test]
    fn series_index_follows_hash_collisions() {
        let mut idx = SeriesIndex::default();
        let names = ["a", "b", "c"];
        // All three share hash 7: lookups must walk the chain and compare.
        for i in 0..3 {
            idx.insert(7, i);
        }
        for (i, n) in names.iter().enumerate() {
            assert_eq!(idx.get(7, |id| names[id as usize] == *n), Some(i as u32));
        }
        assert_eq!(idx.get(7, |_| false), None);
        assert_eq!(idx.get(8, |_| true), None);
        assert_eq!(idx.len(), 3);
    }

    #[test]
    fn get_or_insert_finds_along_the_chain_or_files_the_next_id() {
        let names = ["a", "b", "c", "d"];
        let mut idx = SeriesIndex::default();
        // "a" and "b" share hash 7, "c" has its own; then "a" again is found, "d" filed.
        for (new, hash, name, want) in [
            (0, 7, "a", None),
            (1, 7, "b", None),
            (2, 9, "c", None),
            (3, 7, "a", Some(0)),
            (3, 7, "b", Some(1)),
            (3, 7, "d", None),
        ] {
            let got = idx.get_or_insert(hash, new, |id| names[id as usize] == name);
            assert_eq!(got, want, "{name}");
        }
        assert_eq!(idx.len(), 4);
        assert_eq!(idx.get(7, |id| id == 3), Some(3));
        assert_eq!(idx.get(7, |id| id == 0), Some(0));
        assert_eq!(idx.get(9, |id| id == 2), Some(2));
    }

    #[test]
    fn varint_zigzag_roundtrip() {
        for v in [0i64, 1, -1, 63, -64, i64::MAX, i64::MIN] {
            assert_eq!(unzigzag(zigzag(v)), v);
            let mut out = vec![];
            put_varint(&mut out, zigzag(v));
            let mut r = Reader { bytes: &out, at: 0 };
            assert_eq!(r.varint().unwrap(), zigzag(v));
            assert_eq!(r.at, out.len());
        }
    }
}
