//! Prometheus remote write 1.0: a snappy block-compressed protobuf `prometheus.WriteRequest`.
//!
//! [`proto`] holds the messages (written by hand with `prost`, field numbers as in Prometheus'
//! `prompb/remote.proto` and `prompb/types.proto`), for clients and tests that *encode*
//! requests ([`encode_remote_write`]). Parsing does not decode into those structs: it walks the
//! wire format itself, borrowing label strings from the decompressed buffer, because prost
//! would first allocate every repeated message (an empty `TimeSeries` is 2 bytes on the wire
//! and ~100 in memory, so 64 MiB of them is gigabytes) before any limit could be checked.
//! The walk checks the limits as it goes and builds each series' labels once.

use assay_ledger::{Labels, SampleBatch, METRIC_NAME_LABEL};
use prost::Message;

use crate::series_cache::SeriesCache;
use crate::validate::{check_metric_name, BatchBuilder, SeriesLabels};
use crate::{IngestError, IngestErrorKind, Limits};

/// The protobuf messages of remote write 1.0 (package `prometheus`).
pub mod proto {
    /// The request body (before snappy): series and, periodically, metric metadata.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct WriteRequest {
        /// The series with their samples.
        #[prost(message, repeated, tag = "1")]
        pub timeseries: Vec<TimeSeries>,
        /// Metric metadata (type, help, unit); Prometheus sends it in separate requests.
        #[prost(message, repeated, tag = "3")]
        pub metadata: Vec<MetricMetadata>,
    }

    /// One series: its labels (including `__name__`) and samples.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TimeSeries {
        /// Labels, sorted by name by Prometheus (Assay does not require the order).
        #[prost(message, repeated, tag = "1")]
        pub labels: Vec<Label>,
        /// Float samples.
        #[prost(message, repeated, tag = "2")]
        pub samples: Vec<Sample>,
        /// Exemplars: counted and ignored by Assay.
        #[prost(message, repeated, tag = "3")]
        pub exemplars: Vec<Exemplar>,
        /// Native histograms: rejected by Assay.
        #[prost(message, repeated, tag = "4")]
        pub histograms: Vec<Histogram>,
    }

    /// A label pair.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Label {
        /// Label name.
        #[prost(string, tag = "1")]
        pub name: String,
        /// Label value.
        #[prost(string, tag = "2")]
        pub value: String,
    }

    /// A float sample.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sample {
        /// The value (a stale marker is the NaN with bits `0x7ff0000000000002`).
        #[prost(double, tag = "1")]
        pub value: f64,
        /// Milliseconds since the Unix epoch.
        #[prost(int64, tag = "2")]
        pub timestamp: i64,
    }

    /// An exemplar (a trace reference attached to a sample).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Exemplar {
        /// Exemplar labels, e.g. `trace_id`.
        #[prost(message, repeated, tag = "1")]
        pub labels: Vec<Label>,
        /// The exemplar's value.
        #[prost(double, tag = "2")]
        pub value: f64,
        /// Milliseconds since the Unix epoch.
        #[prost(int64, tag = "3")]
        pub timestamp: i64,
    }

    /// A native histogram; only its timestamp is modelled, since Assay rejects them.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Histogram {
        /// Milliseconds since the Unix epoch.
        #[prost(int64, tag = "15")]
        pub timestamp: i64,
    }

    /// Type, help and unit of a metric family.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MetricMetadata {
        /// A [`MetricType`] value.
        #[prost(enumeration = "MetricType", tag = "1")]
        pub r#type: i32,
        /// The metric family's name.
        #[prost(string, tag = "2")]
        pub metric_family_name: String,
        /// Help text.
        #[prost(string, tag = "4")]
        pub help: String,
        /// Unit, e.g. `seconds`.
        #[prost(string, tag = "5")]
        pub unit: String,
    }

    /// The metric types of [`MetricMetadata`].
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum MetricType {
        /// Not known.
        Unknown = 0,
        /// Counter.
        Counter = 1,
        /// Gauge.
        Gauge = 2,
        /// Histogram (classic).
        Histogram = 3,
        /// Gauge histogram.
        Gaugehistogram = 4,
        /// Summary.
        Summary = 5,
        /// Info.
        Info = 6,
        /// State set.
        Stateset = 7,
    }
}

/// A parsed remote write request.
#[derive(Clone, Debug, PartialEq)]
pub struct RemoteWrite {
    /// The samples; empty for a metadata-only request.
    pub batch: SampleBatch,
    /// The metadata as sent (not validated: it is advisory).
    pub metadata: Vec<proto::MetricMetadata>,
    /// How many exemplars were sent and ignored.
    pub exemplars_ignored: usize,
}

/// Encodes a request as a sender does: protobuf, then snappy block format.
pub fn encode_remote_write(request: &proto::WriteRequest) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(&request.encode_to_vec())
        .expect("snappy compresses any input under 4 GiB")
}

/// Parses a remote write body into samples and metadata, or names what is wrong and where.
pub fn parse_remote_write(
    body: &[u8],
    now_ms: i64,
    limits: &Limits,
) -> Result<RemoteWrite, IngestError> {
    parse(body, now_ms, limits, None)
}

/// [`parse_remote_write`] with a [`SeriesCache`] shared across requests: series whose label
/// bytes were validated before (under the same limits) skip decoding and validation. The
/// result, errors included, is the same as without the cache. A cache made for other limits
/// is not used.
pub fn parse_remote_write_cached(
    body: &[u8],
    now_ms: i64,
    limits: &Limits,
    cache: &SeriesCache,
) -> Result<RemoteWrite, IngestError> {
    let cache = (cache.limits() == limits).then_some(cache);
    parse(body, now_ms, limits, cache)
}

fn parse(
    body: &[u8],
    now_ms: i64,
    limits: &Limits,
    cache: Option<&SeriesCache>,
) -> Result<RemoteWrite, IngestError> {
    // The decoded body is only read while parsing: decode into this thread's buffer,
    // reused from request to request (a fresh one was paid for in page faults each time).
    DECODED.with_borrow_mut(|decoded| {
        let n = decompress(body, limits, decoded)?;
        let result = parse_decoded(&decoded[..n], now_ms, limits, cache);
        if decoded.capacity() > DECODED_KEPT_MAX {
            *decoded = Vec::new();
        }
        result
    })
}

thread_local! {
    /// [`parse`]'s decoded body, kept between requests up to [`DECODED_KEPT_MAX`] bytes.
    static DECODED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A decoded-body buffer larger than this is freed after its request.
const DECODED_KEPT_MAX: usize = 8 << 20;

fn parse_decoded(
    decoded: &[u8],
    now_ms: i64,
    limits: &Limits,
    cache: Option<&SeriesCache>,
) -> Result<RemoteWrite, IngestError> {
    let mut parsed = RemoteWrite {
        batch: SampleBatch::new(),
        metadata: Vec::new(),
        exemplars_ignored: 0,
    };
    let mut builder = BatchBuilder::with_capacity(limits, now_ms, decoded.len() / 64);
    let mut series_index = 0;
    // The sample fields of the series being added, reused from series to series.
    let mut samples = Vec::new();
    let mut request = Wire::new(decoded);
    // A series is added once the field after it has been read, so that the cache slot of
    // the next series' key is being loaded while this one is added (see `SeriesCache`).
    // Errors keep their order: a pending series is added before anything else is looked at.
    let mut pending: Option<(&[u8], Option<CacheKey>)> = None;
    loop {
        let field = request.next_field();
        let next_series = match &field {
            Ok(Some((1, Value::Bytes(series)))) => Some(*series),
            _ => None,
        };
        let next_key = next_series.zip(cache).map(|(series, c)| {
            let end = label_prefix_end(series);
            (end, c.prefetch(&series[..end]))
        });
        if let Some((series, key)) = pending.take() {
            parsed.exemplars_ignored += add_series(
                series,
                key,
                series_index,
                limits,
                cache,
                &mut samples,
                &mut builder,
            )?;
            series_index += 1;
        }
        if let Some(series) = next_series {
            pending = Some((series, next_key));
            continue;
        }
        let Some((tag, value)) = field.map_err(|e| proto_error("", e))? else {
            break;
        };
        match (tag, value) {
            (3, Value::Bytes(meta)) => {
                if parsed.metadata.len() >= limits.samples_per_batch_max {
                    let what = format!(
                        "more than samples_per_batch_max = {} entries; split the upload",
                        limits.samples_per_batch_max
                    );
                    return Err(error_at(
                        IngestErrorKind::PayloadTooLarge,
                        "metadata",
                        &what,
                    ));
                }
                let path = format!("metadata[{}]", parsed.metadata.len());
                let m = proto::MetricMetadata::decode(meta)
                    .map_err(|e| proto_error(&path, e.to_string()))?;
                parsed.metadata.push(m);
            }
            (1 | 3, _) => return Err(proto_error("", wrong_wire_type(tag))),
            _ => {} // Unknown fields are skipped, as protobuf readers do.
        }
    }
    parsed.batch = builder.finish();
    Ok(parsed)
}

/// The snappy block into the start of `out`, bounded by `remote_write_decoded_bytes_max`
/// before anything is allocated; returns its length. `out` only grows: bytes past the
/// length are a previous request's (zeroing a reused buffer for each request cost as much
/// as a tenth of the decompression).
fn decompress(body: &[u8], limits: &Limits, out: &mut Vec<u8>) -> Result<usize, IngestError> {
    let snappy = |e: snap::Error| {
        IngestError::new(
            IngestErrorKind::BadRequest,
            format!(
                "snappy: {e}; send the protobuf compressed in snappy block format (not framed)"
            ),
            serde_json::json!({"field": "", "stage": "snappy"}),
        )
    };
    let len = snap::raw::decompress_len(body).map_err(snappy)?;
    if len > limits.remote_write_decoded_bytes_max {
        return Err(IngestError::new(
            IngestErrorKind::PayloadTooLarge,
            format!(
                "snappy: the body decompresses to {len} bytes, over \
                 remote_write_decoded_bytes_max = {}; send fewer samples per request",
                limits.remote_write_decoded_bytes_max
            ),
            serde_json::json!({"field": "", "stage": "snappy"}),
        ));
    }
    if out.len() < len {
        out.resize(len, 0);
    }
    snap::raw::Decoder::new()
        .decompress(body, &mut out[..len])
        .map_err(snappy)
}

/// Where in the request an error lies, rendered like `timeseries[3].labels[1]`.
enum Path {
    Series(usize),
    Label(usize, usize),
    Sample(usize, usize),
}

impl std::fmt::Display for Path {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Path::Series(s) => write!(f, "timeseries[{s}]"),
            Path::Label(s, l) => write!(f, "timeseries[{s}].labels[{l}]"),
            Path::Sample(s, i) => write!(f, "timeseries[{s}].samples[{i}]"),
        }
    }
}

fn error_at(kind: IngestErrorKind, path: &str, what: &str) -> IngestError {
    IngestError::new(
        kind,
        format!("{path}: {what}"),
        serde_json::json!({ "field": path }),
    )
}

fn proto_error(path: &str, what: impl std::fmt::Display) -> IngestError {
    let message = if path.is_empty() {
        format!("protobuf: {what}")
    } else {
        format!("protobuf: {path}: {what}")
    };
    IngestError::new(
        IngestErrorKind::BadRequest,
        message,
        serde_json::json!({"field": path, "stage": "protobuf"}),
    )
}

fn wrong_wire_type(tag: u32) -> String {
    format!("field {tag} has the wrong wire type")
}

/// A series' key in the [`SeriesCache`]: the end of its label prefix, and the prefix's hash
/// from [`SeriesCache::prefetch`].
type CacheKey = (usize, u64);

/// One series: its labels (from the cache, or decoded and checked in one pass that also
/// checks the structure), then its samples; `key` is `Some` whenever `cache` is.
/// Returns the number of exemplars ignored.
fn add_series<'a>(
    bytes: &'a [u8],
    key: Option<CacheKey>,
    s: usize,
    limits: &Limits,
    cache: Option<&SeriesCache>,
    samples: &mut Vec<&'a [u8]>,
    builder: &mut BatchBuilder<'_>,
) -> Result<usize, IngestError> {
    samples.clear();
    let hit = cache.zip(key).and_then(|(c, (end, key_hash))| {
        let (labels, hash) = c.get_hashed(&bytes[..end], key_hash)?;
        Some((end, labels, hash))
    });
    let mut plain = [(0i64, 0f64); PLAIN_SAMPLES_MAX];
    let shortcut = hit
        .as_ref()
        .and_then(|(end, _, _)| plain_samples(&bytes[*end..], &mut plain));
    if let Some(n) = shortcut {
        let (_, labels, hash) = hit.expect("the shortcut follows a cache hit");
        // The first sample takes the looked-up labels; the others are of the same series.
        let mut labels = Some(labels);
        for (sample_index, &(ts, v)) in plain[..n].iter().enumerate() {
            push_sample(
                builder,
                &mut labels,
                hash,
                Path::Sample(s, sample_index),
                ts,
                v,
            )?;
        }
        return Ok(0);
    }
    let walked = match hit {
        // `None` from the walk: a label after other fields, which the full walk checks.
        Some((end, labels, hash)) => walk_after_labels(bytes, end, s, samples)?
            .map(|exemplars| (exemplars, Some((labels, hash)))),
        None => None,
    };
    let (exemplars, labels) = match walked {
        Some(w) => w,
        None => {
            samples.clear();
            walk_series(bytes, s, limits, cache, samples)?
        }
    };
    if samples.is_empty() {
        return Ok(exemplars); // Exemplar-only series carry no sample to store.
    }
    let (labels, hash) = labels.expect("a series with samples has labels, or the walk failed");
    let mut labels = Some(labels);
    // The walk checked the structure (all of it, before any sample is looked at).
    for (sample_index, sample) in samples.iter().enumerate() {
        let at = Path::Sample(s, sample_index);
        let (ts, v) = decode_sample(sample).map_err(|e| proto_error(&at.to_string(), e))?;
        push_sample(builder, &mut labels, hash, at, ts, v)?;
    }
    Ok(exemplars)
}

/// Adds one sample of the series at `at` to the batch, naming `at` if it is refused. The
/// series' first sample takes `labels`; once they are taken, a sample is another of the
/// series of the sample added last (no clone, hash or lookup of the labels).
fn push_sample(
    builder: &mut BatchBuilder<'_>,
    labels: &mut Option<Labels>,
    hash: u64,
    at: Path,
    ts: i64,
    v: f64,
) -> Result<(), IngestError> {
    let pushed = match labels.take() {
        Some(labels) => builder.push_hashed(labels, hash, Some(ts), v),
        None => builder.push_again(Some(ts), v),
    };
    pushed.map_err(|r| {
        let (kind, why) = r.describe();
        error_at(kind, &at.to_string(), &why)
    })
}

/// The end of the series' leading run of label fields (0 when it has none, or when the
/// run is malformed: then the full walk names the error). This prefix, as raw bytes, is
/// the series' key in the [`SeriesCache`].
fn label_prefix_end(bytes: &[u8]) -> usize {
    // Every series is looked up by this prefix, so the common shape — tag byte 0x0a (field
    // 1, length-delimited) and a one-byte length — is skipped without the general walk;
    // anything else is left to it, which gives the same answer for the same bytes.
    let mut pos = 0;
    while let Some(&[0x0a, len]) = bytes.get(pos..pos + 2) {
        let end = pos + 2 + len as usize;
        if len >= 0x80 || end > bytes.len() {
            break;
        }
        pos = end;
    }
    // A one-byte key of another field (the sample that usually follows) ends the run as
    // the general walk would, without it.
    match bytes.get(pos) {
        None => pos,
        Some(&key) if key < 0x80 && key >> 3 != 1 => pos,
        Some(_) => label_prefix_end_from(bytes, pos),
    }
}

/// Most samples [`plain_samples`] reads from one series.
const PLAIN_SAMPLES_MAX: usize = 8;

/// The samples of a series whose fields after its labels are only `Sample`s with both their
/// fields, in field order and one-byte lengths — what Prometheus sends (one sample per
/// series and request), at most [`PLAIN_SAMPLES_MAX`] of them, into `out`; their number.
/// `None` for any other shape, which the general walk ([`walk_after_labels`] and
/// [`decode_sample`]) reads instead, to the same result.
fn plain_samples(mut rest: &[u8], out: &mut [(i64, f64); PLAIN_SAMPLES_MAX]) -> Option<usize> {
    let mut n = 0;
    while !rest.is_empty() {
        let [0x12, len, 0x09, v0, v1, v2, v3, v4, v5, v6, v7, 0x10, ..] = *rest else {
            return None;
        };
        // The sample holds the 11 bytes matched and at least one of the timestamp.
        let end = usize::from(len) + 2;
        if !(11..0x80).contains(&len) || end > rest.len() || n == PLAIN_SAMPLES_MAX {
            return None;
        }
        let ts = &rest[12..end];
        let mut wire = Wire::new(ts);
        let t = wire.varint().ok()?;
        if wire.pos != ts.len() {
            return None;
        }
        out[n] = (
            t as i64,
            f64::from_bits(u64::from_le_bytes([v0, v1, v2, v3, v4, v5, v6, v7])),
        );
        n += 1;
        rest = &rest[end..];
    }
    (n > 0).then_some(n)
}

/// [`label_prefix_end`] by the general field walk, from `pos` (the end of a label run).
fn label_prefix_end_from(bytes: &[u8], pos: usize) -> usize {
    let mut wire = Wire::new(bytes);
    wire.pos = pos;
    let mut end = pos;
    while let Ok(Some((1, Value::Bytes(_)))) = wire.next_field() {
        end = wire.pos;
    }
    end
}

/// The walk of a series whose first `from` bytes are cached labels: checks the rest's
/// structure as [`walk_series`] would, collects the sample fields and counts exemplars;
/// `None` when a label field follows other fields (not cached: the full walk must check it).
fn walk_after_labels<'a>(
    bytes: &'a [u8],
    from: usize,
    s: usize,
    samples: &mut Vec<&'a [u8]>,
) -> Result<Option<usize>, IngestError> {
    let path = Path::Series(s);
    let mut exemplars = 0;
    let mut wire = Wire::new(bytes);
    wire.pos = from;
    while let Some((tag, value)) = wire
        .next_field()
        .map_err(|e| proto_error(&path.to_string(), e))?
    {
        match (tag, value) {
            (1, Value::Bytes(_)) => return Ok(None),
            (2, Value::Bytes(sample)) => samples.push(sample),
            (3, Value::Bytes(_)) => exemplars += 1,
            (4, Value::Bytes(_)) => return Err(histograms_error(&path)),
            (1..=4, _) => return Err(proto_error(&path.to_string(), wrong_wire_type(tag))),
            _ => {}
        }
    }
    Ok(Some(exemplars))
}

fn histograms_error(path: &Path) -> IngestError {
    error_at(
        IngestErrorKind::BadRequest,
        &format!("{path}.histograms"),
        "native histograms are not supported; set `send_native_histograms: false` \
         in the sender's remote_write config",
    )
}

/// Exemplars counted and, when the series has samples, its labels and their hash.
type Walked = (usize, Option<(Labels, u64)>);

/// The full walk of a series: decodes and checks each label, checks the structure,
/// collects the sample fields and counts exemplars. Labels that pass are cached when they
/// lead the series.
fn walk_series<'a>(
    bytes: &'a [u8],
    s: usize,
    limits: &Limits,
    cache: Option<&SeriesCache>,
    samples: &mut Vec<&'a [u8]>,
) -> Result<Walked, IngestError> {
    let path = Path::Series(s);
    let mut labels = SeriesLabels::new(limits);
    let mut name: Option<&str> = None;
    let (mut label_index, mut exemplars) = (0, 0);
    // The end of the leading run of label fields; `None` once a label follows another field.
    let (mut prefix_end, mut in_prefix) = (Some(0), true);
    let mut wire = Wire::new(bytes);
    while let Some((tag, value)) = wire
        .next_field()
        .map_err(|e| proto_error(&path.to_string(), e))?
    {
        match (tag, value) {
            (1, Value::Bytes(label)) => {
                // Rendered only on error: no allocation per label on the happy path.
                let at = Path::Label(s, label_index);
                let (n, v) = decode_label(label).map_err(|e| proto_error(&at.to_string(), e))?;
                let bad = |e: String| error_at(IngestErrorKind::BadRequest, &at.to_string(), &e);
                if n == METRIC_NAME_LABEL {
                    if name.is_some() {
                        return Err(bad(format!("label `{n}` is given twice in one series")));
                    }
                    check_metric_name(v, limits).map_err(bad)?;
                    name = Some(v);
                } else {
                    labels.add(n.to_string(), v.to_string()).map_err(bad)?;
                }
                label_index += 1;
                if in_prefix {
                    prefix_end = Some(wire.pos);
                } else {
                    prefix_end = None;
                }
            }
            (2, Value::Bytes(sample)) => samples.push(sample),
            (3, Value::Bytes(_)) => exemplars += 1,
            (4, Value::Bytes(_)) => return Err(histograms_error(&path)),
            (1..=4, _) => return Err(proto_error(&path.to_string(), wrong_wire_type(tag))),
            _ => {}
        }
        if tag != 1 {
            in_prefix = false;
        }
    }
    if samples.is_empty() {
        return Ok((exemplars, None));
    }
    let Some(name) = name else {
        return Err(error_at(
            IngestErrorKind::BadRequest,
            &path.to_string(),
            "series has no `__name__` label; every series needs a metric name",
        ));
    };
    let labels = labels.finish(name);
    let hash = assay_ledger::SeriesIndex::hash(&labels);
    if let (Some(cache), Some(end)) = (cache, prefix_end) {
        cache.insert(&bytes[..end], &labels, hash);
    }
    Ok((exemplars, Some((labels, hash))))
}

/// A `Label` message: name and value, both UTF-8.
fn decode_label(bytes: &[u8]) -> Result<(&str, &str), String> {
    let (mut name, mut value) = ("", "");
    let mut wire = Wire::new(bytes);
    while let Some((tag, v)) = wire.next_field()? {
        match (tag, v) {
            (1, Value::Bytes(b)) => name = utf8(b, "name")?,
            (2, Value::Bytes(b)) => value = utf8(b, "value")?,
            (1 | 2, _) => return Err(wrong_wire_type(tag)),
            _ => {}
        }
    }
    Ok((name, value))
}

fn utf8<'a>(bytes: &'a [u8], what: &str) -> Result<&'a str, String> {
    std::str::from_utf8(bytes).map_err(|_| format!("label {what} is not valid UTF-8"))
}

/// A `Sample` message: (timestamp, value), the value's bits kept exactly (stale markers).
fn decode_sample(bytes: &[u8]) -> Result<(i64, f64), String> {
    let (mut ts, mut value) = (0i64, 0f64);
    let mut wire = Wire::new(bytes);
    while let Some((tag, v)) = wire.next_field()? {
        match (tag, v) {
            (1, Value::Fixed64(bits)) => value = f64::from_bits(bits),
            (2, Value::Varint(n)) => ts = n as i64,
            (1 | 2, _) => return Err(wrong_wire_type(tag)),
            _ => {}
        }
    }
    Ok((ts, value))
}

/// A protobuf field value, by wire type.
#[derive(Clone, Copy)]
enum Value<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32,
}

/// A reader of protobuf fields from a buffer.
struct Wire<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Wire<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Wire { buf, pos: 0 }
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(format!("truncated varint at byte {}", self.pos));
            };
            self.pos += 1;
            n |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err(format!("varint longer than 10 bytes at byte {}", self.pos))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.buf.len())
            .ok_or_else(|| {
                format!(
                    "field of {n} bytes at byte {} runs past the end of its message ({} bytes)",
                    self.pos,
                    self.buf.len()
                )
            })?;
        let bytes = &self.buf[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    /// The next field's tag and value, or `None` at the end.
    fn next_field(&mut self) -> Result<Option<(u32, Value<'a>)>, String> {
        if self.pos == self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let tag = key >> 3;
        if tag == 0 || tag > u64::from(u32::MAX >> 3) {
            return Err(format!("invalid field number {tag}"));
        }
        let tag = tag as u32;
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => Value::Fixed64(u64::from_le_bytes(
                self.take(8)?.try_into().expect("took 8 bytes"),
            )),
            2 => {
                let len = self.varint()?;
                let len = usize::try_from(len).unwrap_or(usize::MAX);
                Value::Bytes(self.take(len)?)
            }
            5 => {
                self.take(4)?;
                Value::Fixed32
            }
            w => return Err(format!("field {tag} has unsupported wire type {w}")),
        };
        Ok(Some((tag, value)))
    }
}

#[cfg(test)]
mod tests {
    use super::proto::*;
    use super::*;
    use expect_test::{expect, Expect};

    const NOW: i64 = 1_700_000_000_000;
    const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

    fn render(result: Result<RemoteWrite, IngestError>) -> String {
        match result {
            Ok(rw) => {
                let mut out: String = rw
                    .batch
                    .iter()
                    .map(|(l, ts, v)| {
                        let pairs: Vec<String> =
                            l.pairs().map(|(n, v)| format!("{n}={v:?}")).collect();
                        format!("{} {ts} {v}\n", pairs.join(","))
                    })
                    .collect();
                for m in &rw.metadata {
                    out += &format!(
                        "metadata {} type={} help={:?} unit={:?}\n",
                        m.metric_family_name, m.r#type, m.help, m.unit
                    );
                }
                out + &format!("exemplars ignored: {}\n", rw.exemplars_ignored)
            }
            Err(e) => format!("{:?} {}\n{}\n", e.kind, e.message, e.detail),
        }
    }

    /// Checks the parse, and that a series cache, cold and then warmed by the same body,
    /// gives the same answer (errors included).
    fn check_body(body: &[u8], limits: &Limits, expect: Expect) {
        let cold = parse_remote_write(body, NOW, limits);
        let cache = SeriesCache::new(limits);
        for _ in 0..2 {
            let cached = parse_remote_write_cached(body, NOW, limits, &cache);
            assert_eq!(cached, cold);
            assert_eq!(hashes(&cached), hashes(&cold));
        }
        expect.assert_eq(&render(cold));
    }

    fn hashes(parsed: &Result<RemoteWrite, IngestError>) -> Option<Vec<u64>> {
        parsed
            .as_ref()
            .ok()
            .map(|p| p.batch.series_hashes().to_vec())
    }

    fn check(request: &WriteRequest, expect: Expect) {
        check_body(&encode_remote_write(request), &Limits::default(), expect)
    }

    fn label(name: &str, value: &str) -> Label {
        Label {
            name: name.into(),
            value: value.into(),
        }
    }

    fn sample(value: f64, timestamp: i64) -> Sample {
        Sample { value, timestamp }
    }

    fn series(labels: &[(&str, &str)], samples: Vec<Sample>) -> TimeSeries {
        TimeSeries {
            labels: labels.iter().map(|(n, v)| label(n, v)).collect(),
            samples,
            ..TimeSeries::default()
        }
    }

    fn request(timeseries: Vec<TimeSeries>) -> WriteRequest {
        WriteRequest {
            timeseries,
            metadata: vec![],
        }
    }

    /// `up{} 1 @1700000000000`, encoded by hand from the protobuf spec.
    const UP_PROTOBUF: [u8; 36] = [
        0x0a, 0x22, // WriteRequest.timeseries (field 1, bytes), 34 bytes
        0x0a, 0x0e, // TimeSeries.labels (field 1), 14 bytes
        0x0a, 0x08, b'_', b'_', b'n', b'a', b'm', b'e', b'_', b'_', // Label.name
        0x12, 0x02, b'u', b'p', // Label.value
        0x12, 0x10, // TimeSeries.samples (field 2), 16 bytes
        0x09, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f, // Sample.value (field 1, fixed64) = 1.0
        0x10, 0x80, 0xd0, 0x95, 0xff, 0xbc, 0x31, // Sample.timestamp (field 2, varint)
    ];

    proptest::proptest! {
        #[test]
        fn the_label_prefix_shortcut_ends_where_the_general_walk_does(
            fields in proptest::collection::vec(
                (proptest::prop_oneof![
                    proptest::strategy::Just(0x0au8),
                    proptest::strategy::Just(0x12u8),
                    proptest::strategy::Just(0x8au8),
                    proptest::strategy::Just(0x09u8),
                    proptest::strategy::Just(0x00u8),
                    proptest::strategy::Just(0x1au8),
                ], 0usize..200, 0usize..4),
                0..12,
            )
        ) {
            // Fields of varied tags and lengths, some lengths overlong, some cut short.
            let mut bytes = Vec::new();
            for (tag, len, quirk) in fields {
                bytes.push(tag);
                if tag == 0x8a {
                    bytes.push(0x00); // field 1 with a padded tag
                }
                if quirk == 3 {
                    bytes.extend_from_slice(&[(len as u8) | 0x80, 0x00]); // padded length
                } else {
                    let mut l = Vec::new();
                    prost::encoding::encode_varint(len as u64, &mut l);
                    bytes.extend_from_slice(&l);
                }
                let body = if quirk == 2 { len / 2 } else { len };
                bytes.extend(std::iter::repeat_n(b'x', body));
            }
            proptest::prop_assert_eq!(label_prefix_end(&bytes), label_prefix_end_from(&bytes, 0));
        }

        #[test]
        fn the_plain_samples_shortcut_reads_what_the_general_walk_does(
            samples in proptest::collection::vec(
                (proptest::num::u64::ANY, proptest::num::i64::ANY), 1..4),
            edit in 0usize..6,
            at in 0usize..32,
            byte in proptest::num::u8::ANY,
        ) {
            let mut rest = Vec::new();
            for (i, &(value, timestamp)) in samples.iter().enumerate() {
                let sample = Sample { value: f64::from_bits(value), timestamp };
                let mut body = prost::Message::encode_to_vec(&sample);
                if i == 0 {
                    match edit {
                        1 => body.truncate(at % (body.len() + 1)),
                        2 => body.extend_from_slice(&[0x18, byte]), // an unknown field after
                        3 => { let i = at % body.len(); body[i] = byte; }
                        _ => {}
                    }
                }
                rest.push(0x12);
                prost::encoding::encode_varint(body.len() as u64, &mut rest);
                rest.extend_from_slice(&body);
            }
            if edit == 4 {
                rest.extend_from_slice(&[0x1a, 0x00]); // an exemplar after
            }
            if edit == 5 {
                rest[1] = byte; // the first sample's length
            }
            let general = {
                let mut fields = Vec::new();
                match walk_after_labels(&rest, 0, 0, &mut fields) {
                    Ok(Some(0)) => fields
                        .iter()
                        .map(|f| decode_sample(f).ok().map(|(t, v)| (t, v.to_bits())))
                        .collect::<Option<Vec<_>>>(),
                    _ => None,
                }
            };
            let mut out = [(0, 0.0); PLAIN_SAMPLES_MAX];
            let short = plain_samples(&rest, &mut out)
                .map(|n| out[..n].iter().map(|&(t, v)| (t, v.to_bits())).collect::<Vec<_>>());
            if short.is_some() {
                proptest::prop_assert_eq!(&short, &general);
            }
            // Prometheus' usual shape (both fields set, nothing else) takes the shortcut.
            if edit == 0 && samples.iter().all(|&(v, t)| f64::from_bits(v) != 0.0 && t != 0) {
                let want: Vec<(i64, u64)> = samples.iter().map(|&(v, t)| (t, v)).collect();
                proptest::prop_assert_eq!(short, Some(want));
            }
        }
    }

    #[test]
    fn hand_encoded_bytes_match_prost_and_parse() {
        let up = request(vec![series(&[("__name__", "up")], vec![sample(1.0, NOW)])]);
        assert_eq!(up.encode_to_vec(), UP_PROTOBUF);
        let body = snap::raw::Encoder::new()
            .compress_vec(&UP_PROTOBUF)
            .unwrap();
        check_body(
            &body,
            &Limits::default(),
            expect![[r#"
                __name__="up" 1700000000000 1
                exemplars ignored: 0
            "#]],
        );
    }

    #[test]
    fn round_trip_with_labels_specials_and_stale_markers() {
        let req = request(vec![
            series(
                &[
                    ("__name__", "http_requests_total"),
                    ("job", "api"),
                    ("code", "200"),
                    ("empty", ""),
                ],
                vec![sample(1027.0, NOW - 30_000), sample(1030.0, NOW - 15_000)],
            ),
            series(
                &[("instance", "a:9100"), ("__name__", "node_load1")],
                vec![
                    sample(f64::INFINITY, NOW),
                    sample(f64::from_bits(STALE_NAN), NOW + 1),
                ],
            ),
            // An exemplar-only series carries no sample and needs no name.
            TimeSeries {
                exemplars: vec![Exemplar {
                    labels: vec![label("trace_id", "abc")],
                    value: 1.0,
                    timestamp: NOW,
                }],
                ..TimeSeries::default()
            },
        ]);
        check(
            &req,
            expect![[r#"
                __name__="http_requests_total",code="200",job="api" 1699999970000 1027
                __name__="http_requests_total",code="200",job="api" 1699999985000 1030
                __name__="node_load1",instance="a:9100" 1700000000000 inf
                __name__="node_load1",instance="a:9100" 1700000000001 NaN
                exemplars ignored: 1
            "#]],
        );
        let parsed =
            parse_remote_write(&encode_remote_write(&req), NOW, &Limits::default()).unwrap();
        assert_eq!(parsed.batch.samples()[3].value.to_bits(), STALE_NAN);
        assert_eq!(parsed.batch.series().len(), 2);
    }

    #[test]
    fn metadata_only_and_empty_requests_are_accepted() {
        let req = WriteRequest {
            timeseries: vec![],
            metadata: vec![MetricMetadata {
                r#type: MetricType::Counter as i32,
                metric_family_name: "http_requests_total".into(),
                help: "Requests served.".into(),
                unit: "".into(),
            }],
        };
        check(
            &req,
            expect![[r#"
                metadata http_requests_total type=1 help="Requests served." unit=""
                exemplars ignored: 0
            "#]],
        );
        check_body(
            b"",
            &Limits::default(),
            expect![[r#"
                BadRequest snappy: snappy: corrupt input (empty); send the protobuf compressed in snappy block format (not framed)
                {"field":"","stage":"snappy"}
            "#]],
        );
    }

    #[test]
    fn snappy_errors_and_the_decoded_size_bound() {
        check_body(
            b"\xff\xff\xff\xff\xff\xff",
            &Limits::default(),
            expect![[r#"
                BadRequest snappy: snappy: corrupt input (invalid header); send the protobuf compressed in snappy block format (not framed)
                {"field":"","stage":"snappy"}
            "#]],
        );
        // A 5-byte header that claims 1 GiB: refused before any allocation.
        check_body(
            b"\x80\x80\x80\x80\x04",
            &Limits::default(),
            expect![[r#"
                PayloadTooLarge snappy: the body decompresses to 1073741824 bytes, over remote_write_decoded_bytes_max = 67108864; send fewer samples per request
                {"field":"","stage":"snappy"}
            "#]],
        );
        // Uncompressed protobuf sent by mistake.
        check_body(
            &UP_PROTOBUF,
            &Limits::default(),
            expect![[r#"
            BadRequest snappy: snappy: corrupt input (expected valid offset but got offset 3594; dst position: 0); send the protobuf compressed in snappy block format (not framed)
            {"field":"","stage":"snappy"}
        "#]],
        );
        let body = encode_remote_write(&request(vec![series(
            &[("__name__", "up")],
            vec![sample(1.0, NOW)],
        )]));
        let exact = Limits {
            remote_write_decoded_bytes_max: UP_PROTOBUF.len(),
            ..Limits::default()
        };
        assert!(parse_remote_write(&body, NOW, &exact).is_ok());
        let under = Limits {
            remote_write_decoded_bytes_max: UP_PROTOBUF.len() - 1,
            ..Limits::default()
        };
        check_body(
            &body,
            &under,
            expect![[r#"
            PayloadTooLarge snappy: the body decompresses to 36 bytes, over remote_write_decoded_bytes_max = 35; send fewer samples per request
            {"field":"","stage":"snappy"}
        "#]],
        );
    }

    fn check_protobuf(protobuf: &[u8], expect: Expect) {
        let body = snap::raw::Encoder::new().compress_vec(protobuf).unwrap();
        check_body(&body, &Limits::default(), expect);
    }

    #[test]
    fn protobuf_errors_name_the_field() {
        check_protobuf(
            &UP_PROTOBUF[..20],
            expect![[r#"
            BadRequest protobuf: field of 34 bytes at byte 2 runs past the end of its message (20 bytes)
            {"field":"","stage":"protobuf"}
        "#]],
        );
        check_protobuf(
            &UP_PROTOBUF[..35],
            expect![[r#"
            BadRequest protobuf: field of 34 bytes at byte 2 runs past the end of its message (35 bytes)
            {"field":"","stage":"protobuf"}
        "#]],
        );
        check_protobuf(
            b"\x08\x01",
            expect![[r#"
            BadRequest protobuf: field 1 has the wrong wire type
            {"field":"","stage":"protobuf"}
        "#]],
        );
        check_protobuf(
            b"\x0b",
            expect![[r#"
            BadRequest protobuf: field 1 has unsupported wire type 3
            {"field":"","stage":"protobuf"}
        "#]],
        );
        check_protobuf(
            b"\x00",
            expect![[r#"
            BadRequest protobuf: invalid field number 0
            {"field":"","stage":"protobuf"}
        "#]],
        );
        check_protobuf(
            b"\x0a\x04\x0a\x02\x0a\xff",
            expect![[r#"
            BadRequest protobuf: timeseries[0].labels[0]: truncated varint at byte 2
            {"field":"timeseries[0].labels[0]","stage":"protobuf"}
        "#]],
        );
        // A Sample whose value has the varint wire type.
        check_protobuf(
            b"\x0a\x14\x0a\x0e\x0a\x08__name__\x12\x02up\x12\x02\x08\x01",
            expect![[r#"
                BadRequest protobuf: timeseries[0].samples[0]: field 1 has the wrong wire type
                {"field":"timeseries[0].samples[0]","stage":"protobuf"}
            "#]],
        );
        // Unknown fields are skipped at every level.
        let mut with_unknown = UP_PROTOBUF.to_vec();
        with_unknown.extend_from_slice(b"\x2a\x01x\x30\x07\x3d\x01\x02\x03\x04");
        check_protobuf(
            &with_unknown,
            expect![[r#"
            __name__="up" 1700000000000 1
            exemplars ignored: 0
        "#]],
        );
        check_protobuf(
            b"\x0a\x04\x0a\x02\x08\x01",
            expect![[r#"
                BadRequest protobuf: timeseries[0].labels[0]: field 1 has the wrong wire type
                {"field":"timeseries[0].labels[0]","stage":"protobuf"}
            "#]],
        );
        check_protobuf(
            b"\x0a\x06\x0a\x04\x0a\x02\xff\xfe",
            expect![[r#"
            BadRequest protobuf: timeseries[0].labels[0]: label name is not valid UTF-8
            {"field":"timeseries[0].labels[0]","stage":"protobuf"}
        "#]],
        );
    }

    fn check_series(labels: &[(&str, &str)], expect: Expect) {
        let mut ts: Vec<TimeSeries> = (0..3)
            .map(|i| series(&[("__name__", "ok")], vec![sample(1.0, NOW - i)]))
            .collect();
        ts.push(series(labels, vec![sample(2.0, NOW)]));
        check(&request(ts), expect);
    }

    #[test]
    fn label_errors_name_series_and_label() {
        check_series(
            &[("__name__", "a"), ("9x", "1")],
            expect![[r#"
            BadRequest timeseries[3].labels[1]: label name `9x` must match [a-zA-Z_][a-zA-Z0-9_]*
            {"field":"timeseries[3].labels[1]"}
        "#]],
        );
        check_series(
            &[("__name__", "a"), ("__meta_x", "1")],
            expect![[r#"
            BadRequest timeseries[3].labels[1]: label name `__meta_x` is reserved: names starting with `__` are Assay's own; rename it
            {"field":"timeseries[3].labels[1]"}
        "#]],
        );
        check_series(
            &[("__name__", "a"), ("b", "1"), ("b", "2")],
            expect![[r#"
                BadRequest timeseries[3].labels[2]: label `b` is given twice in one series
                {"field":"timeseries[3].labels[2]"}
            "#]],
        );
        check_series(
            &[("__name__", "a"), ("__name__", "b")],
            expect![[r#"
            BadRequest timeseries[3].labels[1]: label `__name__` is given twice in one series
            {"field":"timeseries[3].labels[1]"}
        "#]],
        );
        check_series(
            &[("__name__", "a-b")],
            expect![[r#"
            BadRequest timeseries[3].labels[0]: metric name `a-b` must match [a-zA-Z_:][a-zA-Z0-9_:]*
            {"field":"timeseries[3].labels[0]"}
        "#]],
        );
        check_series(
            &[("__name__", "")],
            expect![[r#"
            BadRequest timeseries[3].labels[0]: metric name is empty
            {"field":"timeseries[3].labels[0]"}
        "#]],
        );
        check_series(
            &[("job", "x")],
            expect![[r#"
            BadRequest timeseries[3]: series has no `__name__` label; every series needs a metric name
            {"field":"timeseries[3]"}
        "#]],
        );
        check_series(
            &[("__name__", "a"), ("", "x")],
            expect![[r#"
            BadRequest timeseries[3].labels[1]: label name is empty
            {"field":"timeseries[3].labels[1]"}
        "#]],
        );
    }

    #[test]
    fn later_samples_of_a_series_join_its_first() {
        // Samples after a series' first are appended to the same series without its labels
        // (`push_again`); a series given twice in one request is still one series.
        let req = request(vec![
            series(
                &[("__name__", "a"), ("x", "1")],
                vec![sample(1.0, NOW - 2), sample(2.0, NOW - 1), sample(3.0, NOW)],
            ),
            series(&[("__name__", "b")], vec![sample(4.0, NOW)]),
            series(&[("__name__", "a"), ("x", "1")], vec![sample(5.0, NOW + 1)]),
        ]);
        check(
            &req,
            expect![[r#"
                __name__="a",x="1" 1699999999998 1
                __name__="a",x="1" 1699999999999 2
                __name__="a",x="1" 1700000000000 3
                __name__="b" 1700000000000 4
                __name__="a",x="1" 1700000000001 5
                exemplars ignored: 0
            "#]],
        );
        let parsed = parse_remote_write(&encode_remote_write(&req), NOW, &Limits::default());
        let series: Vec<u32> = parsed
            .unwrap()
            .batch
            .samples()
            .iter()
            .map(|s| s.series)
            .collect();
        assert_eq!(series, [0, 0, 0, 1, 0]);
        let mut dup = req.clone();
        dup.timeseries[0].samples[2].timestamp = NOW - 2;
        check(
            &dup,
            expect![[r#"
                BadRequest timeseries[0].samples[2]: the same series at the same timestamp was already given by sample 1; send one value per series and timestamp
                {"field":"timeseries[0].samples[2]"}
            "#]],
        );
    }

    #[test]
    fn sample_errors_and_limits() {
        let req = request(vec![series(
            &[("__name__", "a")],
            vec![sample(1.0, NOW), sample(2.0, NOW)],
        )]);
        check(
            &req,
            expect![[r#"
            BadRequest timeseries[0].samples[1]: the same series at the same timestamp was already given by sample 1; send one value per series and timestamp
            {"field":"timeseries[0].samples[1]"}
        "#]],
        );
        let req = request(vec![series(
            &[("__name__", "a")],
            vec![sample(1.0, 1_700_000)],
        )]);
        check(
            &req,
            expect![[r#"
            BadRequest timeseries[0].samples[0]: timestamp 1700000 ms is outside the accepted window [1697321600000, 1700000600000] (now - timestamp_past_ms_max, now + timestamp_future_ms_max); check the sender's clock and that timestamps are in milliseconds
            {"field":"timeseries[0].samples[0]"}
        "#]],
        );
        let req = request(vec![series(&[("__name__", "a")], vec![Sample::default()])]);
        check(
            &req,
            expect![[r#"
            BadRequest timeseries[0].samples[0]: timestamp 0 ms is outside the accepted window [1697321600000, 1700000600000] (now - timestamp_past_ms_max, now + timestamp_future_ms_max); check the sender's clock and that timestamps are in milliseconds
            {"field":"timeseries[0].samples[0]"}
        "#]],
        );
        let limits = Limits {
            samples_per_batch_max: 2,
            labels_per_series_max: 1,
            ..Limits::default()
        };
        let two = request(vec![
            series(&[("__name__", "a"), ("x", "1")], vec![sample(1.0, NOW)]),
            series(&[("__name__", "b")], vec![sample(1.0, NOW)]),
        ]);
        assert_eq!(
            parse_remote_write(&encode_remote_write(&two), NOW, &limits).map(|r| r.batch.len()),
            Ok(2)
        );
        let mut three = two.clone();
        three.timeseries[1].samples.push(sample(2.0, NOW - 1));
        check_body(
            &encode_remote_write(&three),
            &limits,
            expect![[r#"
            PayloadTooLarge timeseries[1].samples[1]: more than samples_per_batch_max = 2 samples; split the upload
            {"field":"timeseries[1].samples[1]"}
        "#]],
        );
        let mut labels = two.clone();
        labels.timeseries[0].labels.push(label("y", "2"));
        check_body(
            &encode_remote_write(&labels),
            &limits,
            expect![[r#"
            BadRequest timeseries[0].labels[2]: series has more than labels_per_series_max = 1 labels; drop some
            {"field":"timeseries[0].labels[2]"}
        "#]],
        );
        let mut metadata = request(vec![]);
        metadata.metadata = vec![MetricMetadata::default(); 3];
        check_body(
            &encode_remote_write(&metadata),
            &limits,
            expect![[r#"
                PayloadTooLarge metadata: more than samples_per_batch_max = 2 entries; split the upload
                {"field":"metadata"}
            "#]],
        );
    }

    #[test]
    fn native_histograms_are_rejected() {
        let mut s = series(&[("__name__", "a")], vec![]);
        s.histograms.push(Histogram { timestamp: NOW });
        check(
            &request(vec![s]),
            expect![[r#"
            BadRequest timeseries[0].histograms: native histograms are not supported; set `send_native_histograms: false` in the sender's remote_write config
            {"field":"timeseries[0].histograms"}
        "#]],
        );
    }

    #[test]
    fn a_large_request_parses() {
        // 20k series of 5 samples, as a busy Prometheus sends them: a sanity check, not a bench.
        let ts: Vec<TimeSeries> = (0..20_000)
            .map(|i| {
                let instance = format!("host-{i}:9100");
                series(
                    &[
                        ("__name__", "node_cpu_seconds_total"),
                        ("instance", &instance),
                        ("mode", "idle"),
                    ],
                    (0..5)
                        .map(|j| sample(f64::from(i * j), NOW - 15_000 * i64::from(j)))
                        .collect(),
                )
            })
            .collect();
        let body = encode_remote_write(&request(ts));
        let parsed = parse_remote_write(&body, NOW, &Limits::default()).unwrap();
        assert_eq!(
            (parsed.batch.len(), parsed.batch.series().len()),
            (100_000, 20_000)
        );
    }

    /// 100 series `up{instance="host-i"}` of one sample each.
    fn fleet(n: usize) -> WriteRequest {
        let ts = (0..n)
            .map(|i| {
                let instance = format!("host-{i}");
                series(
                    &[("__name__", "up"), ("instance", &instance)],
                    vec![sample(1.0, NOW)],
                )
            })
            .collect();
        request(ts)
    }

    #[test]
    fn a_cache_hit_gives_the_cold_parse() {
        let body = encode_remote_write(&fleet(100));
        let cache = SeriesCache::new(&Limits::default());
        let cold = parse_remote_write(&body, NOW, &Limits::default()).unwrap();
        let first = parse_remote_write_cached(&body, NOW, &Limits::default(), &cache).unwrap();
        assert_eq!(cache.len(), 100);
        let hit = parse_remote_write_cached(&body, NOW, &Limits::default(), &cache).unwrap();
        assert_eq!(cache.len(), 100);
        for parsed in [&first, &hit] {
            assert_eq!(parsed, &cold);
            assert_eq!(parsed.batch.series_hashes(), cold.batch.series_hashes());
        }
        // A hit shares the cached pairs instead of building them again.
        let shared = |a: &Labels, b: &Labels| a.addr() == b.addr();
        assert!(shared(&first.batch.series()[7], &hit.batch.series()[7]));
        assert!(!shared(&cold.batch.series()[7], &hit.batch.series()[7]));
    }

    #[test]
    fn the_cache_is_bounded() {
        let cache = SeriesCache::with_bounds(&Limits::default(), 64, usize::MAX / 4);
        let body = encode_remote_write(&fleet(1000));
        for _ in 0..2 {
            let parsed = parse_remote_write_cached(&body, NOW, &Limits::default(), &cache);
            assert_eq!(parsed.map(|p| p.batch.len()), Ok(1000));
            assert!(cache.len() <= 128, "{} entries", cache.len());
        }
    }

    #[test]
    fn a_bad_series_after_cached_ones_is_named() {
        let cache = SeriesCache::new(&Limits::default());
        let mut req = fleet(3);
        parse_remote_write_cached(&encode_remote_write(&req), NOW, &Limits::default(), &cache)
            .unwrap();
        req.timeseries.push(series(
            &[("__name__", "a"), ("9x", "1")],
            vec![sample(1.0, NOW)],
        ));
        // A cached series whose sample is now bad, and one with a label after its sample.
        req.timeseries[1].samples[0].timestamp = 0;
        let render_cached = |req: &WriteRequest| -> String {
            let body = encode_remote_write(req);
            render(parse_remote_write_cached(
                &body,
                NOW,
                &Limits::default(),
                &cache,
            ))
        };
        expect![[r#"
            BadRequest timeseries[1].samples[0]: timestamp 0 ms is outside the accepted window [1697321600000, 1700000600000] (now - timestamp_past_ms_max, now + timestamp_future_ms_max); check the sender's clock and that timestamps are in milliseconds
            {"field":"timeseries[1].samples[0]"}
        "#]]
        .assert_eq(&render_cached(&req));
        req.timeseries[1].samples[0].timestamp = NOW;
        expect![[r#"
            BadRequest timeseries[3].labels[1]: label name `9x` must match [a-zA-Z_][a-zA-Z0-9_]*
            {"field":"timeseries[3].labels[1]"}
        "#]]
        .assert_eq(&render_cached(&req));
    }

    #[test]
    fn a_label_after_the_samples_is_checked_on_a_hit() {
        let cache = SeriesCache::new(&Limits::default());
        let good = fleet(1);
        parse_remote_write_cached(&encode_remote_write(&good), NOW, &Limits::default(), &cache)
            .unwrap();
        // The cached label bytes, then a sample, then a bad label (field 1, bytes).
        let lbl = label("9x", "1").encode_to_vec();
        let mut series_bytes = good.timeseries[0].encode_to_vec();
        series_bytes.push(0x0a);
        series_bytes.push(lbl.len() as u8);
        series_bytes.extend_from_slice(&lbl);
        assert!(series_bytes.len() < 128, "one-byte length");
        let mut req = vec![0x0a, series_bytes.len() as u8];
        req.extend_from_slice(&series_bytes);
        let body = snap::raw::Encoder::new().compress_vec(&req).unwrap();
        expect![[r#"
            BadRequest timeseries[0].labels[2]: label name `9x` must match [a-zA-Z_][a-zA-Z0-9_]*
            {"field":"timeseries[0].labels[2]"}
        "#]]
        .assert_eq(&render(parse_remote_write_cached(
            &body,
            NOW,
            &Limits::default(),
            &cache,
        )));
    }

    #[test]
    fn a_cache_for_other_limits_is_not_used() {
        let cache = SeriesCache::new(&Limits::default());
        let req = request(vec![series(
            &[("__name__", "a"), ("x", "1"), ("y", "2")],
            vec![sample(1.0, NOW)],
        )]);
        let body = encode_remote_write(&req);
        assert!(parse_remote_write_cached(&body, NOW, &Limits::default(), &cache).is_ok());
        let tighter = Limits {
            labels_per_series_max: 1,
            ..Limits::default()
        };
        expect![[r#"
            BadRequest timeseries[0].labels[2]: series has more than labels_per_series_max = 1 labels; drop some
            {"field":"timeseries[0].labels[2]"}
        "#]]
        .assert_eq(&render(parse_remote_write_cached(
            &body, NOW, &tighter, &cache
        )));
    }
}
