//! Assay's ingest parsers: turn what a client uploads into a [`SampleBatch`] (or, for a CI
//! report, an [`Entry::CiReport`]) or reject it with a precise reason.
//!
//! Every parser is a pure function of `(body, now_ms, limits)` (and a format's own options):
//! no clock, no I/O. A rejected
//! input returns `Err` and nothing else, so a node never writes half a batch. Errors carry an
//! [`IngestErrorKind`] (HTTP 400 or 413), a message that names the offending field, line and
//! column, or element, and the same location as structured `detail`.
//!
//! # Formats
//!
//! * **JSON push** ([`parse_json_push`]):
//!   `{"samples":[{"name":"cpu_load","labels":{"host":"a"},"value":0.42,"timestamp_ms":1700000000000}]}`.
//!   `labels` and `timestamp_ms` are optional (a missing timestamp is `now_ms`); unknown fields
//!   are rejected; an empty `samples` list is rejected. JSON numbers cannot carry NaN or
//!   infinities, so `value` may also be one of the strings `"NaN"`, `"+Inf"`, `"-Inf"` (exactly
//!   these, as Prometheus' HTTP API writes them); any other string is rejected. A label
//!   repeated inside one `labels` object is rejected rather than last-one-wins. Errors name the
//!   field path (`samples[3].labels.host`) and, for syntax and type errors, serde's line and
//!   column.
//! * **Prometheus text exposition format 0.0.4** ([`parse_prometheus_text`]), what exporters
//!   serve on `/metrics`: `# HELP` / `# TYPE` lines (names and types checked), other comments,
//!   and `name{label="value",...} value [timestamp_ms]` lines. Label values take the escapes
//!   `\\`, `\"` and `\n` (any other escape is rejected, as in Prometheus); values take any float
//!   Rust parses plus `NaN`, `+Inf`, `-Inf`; histogram and summary lines are plain samples.
//!   Lines may end in `\r\n`. A hand-written parser (no regex); errors name line and column
//!   (1-based, column counted in characters).
//! * **Prometheus remote write 1.0** ([`parse_remote_write`]): a `prometheus.WriteRequest`
//!   protobuf compressed with snappy's block format (not the framed one). The snappy header's
//!   length is checked against `remote_write_decoded_bytes_max` (413) before anything is
//!   allocated, so a small body cannot claim gigabytes. The protobuf is walked by hand rather
//!   than decoded into prost structs, because prost would allocate ~50× the wire size for
//!   empty repeated messages before any limit applies; [`remote_write::proto`] has the
//!   messages (prost-derived, field numbers as in Prometheus' `prompb`) for senders and tests,
//!   and [`encode_remote_write`] encodes a request as Prometheus does. Unknown fields are
//!   skipped, as protobuf readers do. The `__name__` label is the metric name; all other
//!   labels obey the shared rules below, so relabel away any other `__`-prefixed label before
//!   sending. Sample values keep their exact bits (Prometheus' stale marker is the NaN
//!   `0x7ff0000000000002`). Decisions:
//!   - *Exemplars* are counted ([`RemoteWrite::exemplars_ignored`]) and dropped: Assay
//!     stores no traces, and Prometheus sends them only with `send_exemplars: true`.
//!   - *Native histograms* are rejected (400, naming the series): dropping them silently
//!     would lose data the sender meant to keep; Prometheus sends them only with
//!     `send_native_histograms: true`.
//!   - *Metadata* is returned as sent ([`RemoteWrite::metadata`], not validated, at most
//!     `samples_per_batch_max` entries, else 413). A request with no series (Prometheus sends
//!     metadata on its own, periodically) or no body at all is accepted with an empty batch,
//!     unlike the JSON push. A series with no sample (exemplars only) is skipped.
//!   - Errors name the place as a path in the message and in `detail.field`
//!     (`timeseries[3].labels[1]: label name ...`); wire-level errors start
//!     with `snappy:` or `protobuf:`.
//!   - A series with several samples clones its labels for all but the last sample (the
//!     batch owns one `Labels` per sample pushed); Prometheus mostly sends one per series.
//! * **InfluxDB line protocol** ([`parse_influx_line`]), as Telegraf writes it:
//!   `measurement,tag=v field=1.5,count=3i,up=t,msg="x" 1700000000000000000`. Full syntax:
//!   escapes (`\,` `\ ` in the measurement, also `\=` in tag keys, tag values and field
//!   keys, `\"` and `\\` in string values, any other backslash is literal), comments,
//!   blank lines, `\r\n`, string values spanning lines. Field types: float (no NaN or
//!   infinity, as in InfluxDB), integer `1i`, unsigned `1u`, boolean
//!   (`t T true True TRUE f F false False FALSE`), string. Timestamps are in the
//!   [`InfluxPrecision`] of the `precision` query parameter ([`InfluxPrecision::from_query`]:
//!   `ns` (default), `us`, `ms`, `s`, and v1's `n`, `u`), converted to ms rounding down; a
//!   missing one is `now_ms`. Mapping, as Prometheus' influxdb_exporter does:
//!   - Each numeric field is one sample of the metric `{measurement}_{field}`, or just
//!     `{measurement}` when the field is named `value`. Booleans are 1 and 0. Integers are
//!     stored as f64 (exact up to 2^53).
//!   - String fields have no number to store: they are skipped and counted
//!     ([`InfluxLines::string_fields_skipped`]); a line of only strings adds nothing.
//!   - Tags become labels. Metric and tag names are sanitized, not rejected: every character
//!     outside `[a-zA-Z0-9_]` (including `:`, `.`, `-` and non-ASCII) becomes `_`, and a
//!     leading digit gets a `_` before it. Tag keys that collide after that (`a-b`, `a_b`),
//!     or start with `__`, are rejected as in the other formats. A tag with an empty value
//!     is a syntax error, as in InfluxDB.
//!   - An empty body is accepted with an empty batch (InfluxDB answers 204 to it).
//!   - Errors name line and column (1-based, characters) of the offending token.
//! * **JUnit XML** ([`parse_junit`]), see below.
//!
//! # Validation shared by all formats
//!
//! Metric names match `[a-zA-Z_:][a-zA-Z0-9_:]*` ([`validate_metric_name`]); label names match
//! `[a-zA-Z_][a-zA-Z0-9_]*` and must not start with `__`, which is reserved for Assay's own
//! labels such as `__name__` ([`validate_label_name`]). A label repeated in one series is
//! rejected. A label with an empty value is the same series as no label at all (as in
//! Prometheus), so it is dropped. The same series at the same timestamp twice in one batch is
//! rejected (which of the two values is meant is unknowable). Timestamps must lie in
//! `[now_ms - timestamp_past_ms_max, now_ms + timestamp_future_ms_max]`. The [`Limits`] bound
//! everything else; exceeding `samples_per_batch_max`, `junit_testcases_max` or
//! `remote_write_decoded_bytes_max` is 413, every other rejection is 400. Influx line protocol
//! differs in one way: it sanitizes metric and tag names instead of rejecting them (see above).
//!
//! # JUnit XML → KPIs
//!
//! A report becomes the series `ci_tests`, `ci_tests_passed`, `ci_tests_failed`,
//! `ci_tests_errored`, `ci_tests_skipped` and `ci_test_duration_seconds`, labelled `pipeline`,
//! `job`, `run` (from [`CiRun`]), all at `now_ms`: once for the whole report (no `suite` label)
//! and once per `<testsuite>` with `suite="<its name>"`. The entry keeps the SHA-256 of the raw
//! body so the report itself can be proved later.
//!
//! Decisions, taken after reading what pytest (xunit1/xunit2), cargo-nextest, jest-junit,
//! gotestsum and Maven Surefire actually write (fixtures in `tests/fixtures/junit/`):
//!
//! * **Counts come from `<testcase>` elements, not from the runners' `tests=`/`failures=`
//!   attributes**, which disagree between runners (jest-junit leaves todo tests out of
//!   `tests=`, nextest leaves ignored tests out entirely, pytest counts xfail as skipped). Each
//!   testcase has exactly one outcome: errored if it has an `<error>` child, else failed if it
//!   has `<failure>`, else skipped if it has `<skipped>`, else passed. So `ci_tests` is always
//!   the sum of the four outcome series. A jest `test.todo` is written by jest-junit as a
//!   testcase with no child, so it counts as passed; nextest omits ignored tests, so they are
//!   not counted at all.
//! * **A build failure must not vanish.** gotestsum reports a package that fails to compile
//!   only in the root's `errors="1"`, with no testcase. The report's errored total is
//!   therefore `max(errored testcases, the root element's errors attribute)`, and the
//!   difference is added to the report's `ci_tests` as well (each such error is a test that
//!   could not run). It belongs to no suite, so per-suite series do not include it.
//! * **Nested suites:** a testcase counts for its innermost `<testsuite>` only, so per-suite
//!   series add up to the totals (except the uncounted root errors above). Every suite gets
//!   series, even with zero testcases (a suite that failed to load must stay visible). Suites
//!   with the same name (two jest files with the same top `describe`) are summed into one
//!   series; a suite without a `name` is reported as `suite="<unnamed>"`.
//! * **Duration** is the sum of the testcases' `time=` (seconds), not any suite's or the
//!   root's `time=`: runners mean different things by those (wall time, per process, or
//!   absent). Every `time=` attribute in the report must be a non-negative finite decimal
//!   number (commas as thousands separators, which old Surefire versions write, are
//!   accepted); anything else is a 400 naming line and column.
//! * Accepted roots: `<testsuites>` (pytest, nextest, jest, gotestsum) and a bare `<testsuite>`
//!   (one Surefire file per class). The body must be UTF-8 with a single root; text outside
//!   it, a truncated document, or malformed XML is a 400 naming line and column. In
//!   attribute values, entities other than the five predefined ones are rejected; a DTD is
//!   never read or expanded.
//! * Bounds: at most `junit_testcases_max` testcases (413), [`JUNIT_SUITES_MAX`] suites (413)
//!   and [`JUNIT_DEPTH_MAX`] nested elements (400); the derived batch also obeys
//!   `samples_per_batch_max`.

mod influx;
mod json;
mod junit;
mod prometheus;
pub mod remote_write;
mod series_cache;
mod validate;

pub use assay_ledger::{Entry, Labels, SampleBatch};
pub use influx::{parse_influx_line, InfluxLines, InfluxPrecision};
pub use json::parse_json_push;
pub use junit::{parse_junit, CiRun, JUNIT_DEPTH_MAX, JUNIT_SUITES_MAX};
pub use prometheus::{parse_prometheus_text, parse_prometheus_text_with_metadata};
pub use remote_write::{
    encode_remote_write, parse_remote_write, parse_remote_write_cached, RemoteWrite,
};
pub use series_cache::{
    SeriesCache, SeriesCacheStats, SERIES_CACHE_BYTES_MAX, SERIES_CACHE_ENTRIES_MAX,
    SERIES_CACHE_SHARDS,
};
pub use validate::{validate_label_name, validate_metric_name};

/// Bounds every parser enforces; exceeding one is an error, never a truncation.
/// It is also the `[limits]` table of the node's TOML config (every key optional).
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest request body in bytes; the HTTP layer answers 413 above it.
    pub body_bytes_max: usize,
    /// Most samples one request may carry (JSON, text) or derive (JUnit); over it is 413.
    pub samples_per_batch_max: usize,
    /// Most labels one series may carry, not counting the metric name.
    pub labels_per_series_max: usize,
    /// Longest label name, and longest metric name, in bytes.
    pub label_name_bytes_max: usize,
    /// Longest label value in bytes (also bounds `pipeline`/`job`/`run` and suite names).
    pub label_value_bytes_max: usize,
    /// How far past `now_ms` a sample's timestamp may lie (clock skew allowance), in ms.
    pub timestamp_future_ms_max: i64,
    /// How far before `now_ms` a sample's timestamp may lie (agent spool replay), in ms.
    pub timestamp_past_ms_max: i64,
    /// Most `<testcase>` elements one JUnit report may hold; over it is 413.
    pub junit_testcases_max: usize,
    /// Largest decompressed remote write body in bytes, checked against the snappy header
    /// before anything is allocated; over it is 413. The default, 64 MiB, holds a full batch
    /// of `samples_per_batch_max` samples of series with a few hundred bytes of labels each
    /// (Prometheus sends at most `max_samples_per_send`, a few thousand by default).
    pub remote_write_decoded_bytes_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            body_bytes_max: 32 << 20,
            samples_per_batch_max: 100_000,
            labels_per_series_max: 40,
            label_name_bytes_max: 256,
            label_value_bytes_max: 4096,
            timestamp_future_ms_max: 10 * 60 * 1000,
            timestamp_past_ms_max: 31 * 24 * 60 * 60 * 1000,
            junit_testcases_max: 200_000,
            remote_write_decoded_bytes_max: 64 << 20,
        }
    }
}

/// Which HTTP status a rejection maps to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IngestErrorKind {
    /// The input is malformed or invalid: HTTP 400.
    BadRequest,
    /// The input exceeds a size limit: HTTP 413.
    PayloadTooLarge,
}

impl IngestErrorKind {
    /// The HTTP status code this kind maps to.
    pub fn http_status(self) -> u16 {
        match self {
            IngestErrorKind::BadRequest => 400,
            IngestErrorKind::PayloadTooLarge => 413,
        }
    }
}

/// Why an upload was rejected: a kind, a human-readable message and its location as data.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct IngestError {
    /// 400 or 413.
    pub kind: IngestErrorKind,
    /// Names the offending field / line and column / element, and what would fix it.
    pub message: String,
    /// The location as data, e.g. `{"line":3,"column":7}` or `{"field":"samples[2].labels.host"}`.
    pub detail: serde_json::Value,
}

impl IngestError {
    pub(crate) fn new(kind: IngestErrorKind, message: String, detail: serde_json::Value) -> Self {
        debug_assert!(!message.is_empty());
        IngestError {
            kind,
            message,
            detail,
        }
    }

    /// A 400 at a line and column of a text body.
    pub(crate) fn at_line(kind: IngestErrorKind, pos: LineColumn, what: &str) -> Self {
        IngestError::new(
            kind,
            format!("line {}, column {}: {what}", pos.line, pos.column),
            serde_json::json!({"line": pos.line, "column": pos.column}),
        )
    }
}

/// A 1-based position in a text body; the column counts characters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LineColumn {
    pub line: usize,
    pub column: usize,
}

impl LineColumn {
    /// The position of byte `offset` in `text` (clamped to its end).
    pub(crate) fn of_offset(text: &[u8], offset: usize) -> LineColumn {
        let before = &text[..offset.min(text.len())];
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        // Count characters, not bytes: continuation bytes (10xxxxxx) do not start a character.
        let column = before[line_start..]
            .iter()
            .filter(|&&b| b & 0xC0 != 0x80)
            .count()
            + 1;
        LineColumn { line, column }
    }
}

/// The position of the first invalid UTF-8 byte, as an error, or the text.
pub(crate) fn utf8_body(body: &[u8]) -> Result<&str, IngestError> {
    std::str::from_utf8(body).map_err(|e| {
        IngestError::at_line(
            IngestErrorKind::BadRequest,
            LineColumn::of_offset(body, e.valid_up_to()),
            "the body is not valid UTF-8; send UTF-8 text",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_column_counts_characters() {
        let text = "ab\nçd\ne".as_bytes();
        assert_eq!(
            LineColumn::of_offset(text, 0),
            LineColumn { line: 1, column: 1 }
        );
        assert_eq!(
            LineColumn::of_offset(text, 3),
            LineColumn { line: 2, column: 1 }
        );
        // 'ç' is two bytes: 'd' is at byte 5, the second character of line 2.
        assert_eq!(
            LineColumn::of_offset(text, 5),
            LineColumn { line: 2, column: 2 }
        );
        assert_eq!(
            LineColumn::of_offset(text, 99),
            LineColumn { line: 3, column: 2 }
        );
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let l = Limits::default();
        assert_eq!(l.timestamp_future_ms_max, 600_000);
        assert_eq!(l.timestamp_past_ms_max, 2_678_400_000);
        assert_eq!(
            (
                l.samples_per_batch_max,
                l.labels_per_series_max,
                l.junit_testcases_max
            ),
            (100_000, 40, 200_000)
        );
        assert_eq!(
            (l.label_name_bytes_max, l.label_value_bytes_max),
            (256, 4096)
        );
        assert_eq!(l.remote_write_decoded_bytes_max, 64 << 20);
    }

    #[test]
    fn error_kinds_map_to_http_statuses() {
        assert_eq!(IngestErrorKind::BadRequest.http_status(), 400);
        assert_eq!(IngestErrorKind::PayloadTooLarge.http_status(), 413);
    }
}
