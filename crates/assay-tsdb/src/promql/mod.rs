//! A PromQL evaluator over a [`Tsdb`], with Prometheus' HTTP API result shapes.
//!
//! Parsing is `promql-parser`'s; evaluation is ours. A range query evaluates the expression
//! as an instant query at each step, except that its selectors and range functions of a
//! selector (`rate`, `*_over_time`, …) outside subqueries are computed series at a time
//! for all steps in one pass over each series' samples (`steps.rs`); the results, and the
//! samples counted against [`QUERY_SAMPLES_LOADED_MAX`], are those of the per-step
//! evaluation (a query failing at a step may hit the sample limit first). Each operator and function follows the Prometheus
//! 3 implementation of the same name (`promql/engine.go`, `functions.go`, `quantile.go`):
//! same algorithms, so the same floats (Kahan sums, extrapolation, interpolation).
//!
//! # Supported
//! - Selectors with all four matchers, `offset`, `@` (incl. `start()`/`end()`), number and
//!   string literals, parentheses, unary minus.
//! - Binary operators `+ - * / % ^ atan2`, comparisons with and without `bool`, `and or
//!   unless`; vector matching `on`/`ignoring`, `group_left`/`group_right` with extra labels,
//!   and Prometheus' matching errors ("many-to-many matching not allowed", "multiple matches
//!   for labels").
//! - Aggregations `sum avg min max count group stddev stdvar topk bottomk limitk quantile
//!   count_values` with `by`/`without`.
//! - Functions: `rate increase delta irate idelta deriv predict_linear changes resets`,
//!   `{sum,avg,min,max,count,last,first,present,quantile,stddev,stdvar,mad,absent}_over_time`,
//!   `ts_of_{min,max,first,last}_over_time`, `double_exponential_smoothing`,
//!   `histogram_quantile` and `histogram_fraction` (classic `le` buckets), `absent` (labels
//!   from equality matchers), `label_replace label_join`, `abs ceil floor
//!   round clamp clamp_min clamp_max sgn exp ln log2 log10 sqrt`, trigonometry (`sin` … `atanh
//!   deg rad pi`), `time timestamp vector scalar`, `sort sort_desc sort_by_label
//!   sort_by_label_desc`, the date functions (`year` … `minute`, default `vector(time())`),
//!   `start() end() range() step() min_of max_of`.
//! - Subqueries `expr[range:step]`, steps aligned to multiples of the step in absolute time;
//!   without a step, [`SUBQUERY_DEFAULT_STEP_MS`] (Prometheus' default evaluation interval).
//!
//! Semantics follow Prometheus 3: the instant-vector lookback window and range windows are
//! left-open, `(t - window, t]`; a sample whose value is Prometheus' stale marker ends a
//! series (it is never returned); `__name__` is dropped by functions (except
//! `last_over_time`, `first_over_time`, `label_*`, `sort*`), arithmetic, `bool` comparisons
//! and aggregations without `by (__name__)` (`topk`/`bottomk` keep all labels). An instant
//! query's vector is sorted by labels unless the outermost expression is `sort*`,
//! `topk` or `bottomk`, whose order Prometheus returns; range queries are sorted by labels.
//!
//! # Not supported
//! Native histograms: `histogram_count sum avg stddev stdvar` return an empty vector (Assay
//! stores only floats, which Prometheus skips there). `limit_ratio` (it samples
//! by Prometheus' label hash), `info` and the `fill` modifiers are a
//! [`QueryError`] naming the feature. `start_timestamp` returns an empty vector (Assay keeps
//! no start timestamps).
//!
//! # Known differences from Prometheus
//! - No annotations (warnings/infos), e.g. for φ outside [0, 1] or non-monotonic buckets.
//! - Experimental functions (`sort_by_label*`, `double_exponential_smoothing`,
//!   `mad_over_time`, `first_over_time`, `ts_of_*`, `limitk`, `start()` …) are always
//!   enabled.
//! - Ties keep the input (label) order where Prometheus' unstable sorts may not: `sort*`,
//!   and `topk`/`bottomk` among equal values; `topk`/`bottomk` groups come in the order of
//!   their first series by labels.
//! - Date functions of NaN, ±Inf or values beyond ±2^63 s return Assay's proleptic
//!   Gregorian date of `i64::MIN` seconds, not Go's `time` package's.
//! - `count_values` accepts any non-empty label name (as Prometheus 3's UTF-8 names).
//! - `histogram_fraction` on classic buckets is recent in Prometheus; where a bound falls
//!   in a bucket of infinite width Assay counts none of it (Prometheus' arithmetic gives
//!   NaN), and the lowest bucket starts at 0 when its bound is positive.
//! - Limits: [`QUERY_SERIES_TOUCHED_MAX`], [`QUERY_SAMPLES_LOADED_MAX`],
//!   [`QUERY_SUBQUERY_STEPS_MAX`] and the others below are Assay's, with Assay's messages.
//!   A deadline ([`QueryOptions`]; the API's `timeout`, default 2 min as Prometheus) fails
//!   the query with Prometheus' `timeout` error.

mod aggregate;
mod binary;
mod calendar;
mod eval;
mod functions;
mod labels;
mod over_time;
mod parse;
mod quantile;
mod steps;

use crate::{Matcher, Tsdb};

/// Instant-vector lookback: the newest sample at most this old is a series' value.
pub const LOOKBACK_DELTA_MS: i64 = 5 * 60 * 1000;
/// Step of a subquery written without one (`x[5m:]`), as Prometheus' default global
/// evaluation interval.
pub const SUBQUERY_DEFAULT_STEP_MS: i64 = 60 * 1000;
/// Inner evaluations all subqueries of a query may run, summed over steps.
pub const QUERY_SUBQUERY_STEPS_MAX: u64 = 1_000_000;
/// Distinct series a query may select, summed over its selectors.
pub const QUERY_SERIES_TOUCHED_MAX: usize = 100_000;
/// Samples a query may read, summed over all selectors and steps (a step's windows count
/// at every step). Prometheus' `query.max-samples` (50 M) counts the samples held at once,
/// about one step's windows; summed over the 1,440 steps of a 24 h dashboard at 60 s, its
/// equal is far larger, so this bound is 500 M: `rate(x[5m])` over 24 h × 10k series at 15 s
/// scrapes is about 290 M.
pub const QUERY_SAMPLES_LOADED_MAX: u64 = 500_000_000;
/// Steps per range query, as Prometheus' 11,000 points per series.
pub const RANGE_QUERY_POINTS_MAX: i64 = 11_000;
/// Length of a query text.
pub const QUERY_BYTES_MAX: usize = 16 * 1024;
/// Nesting depth of a query expression (bounds the evaluator's recursion).
pub const QUERY_EXPR_DEPTH_MAX: usize = 128;

/// Result labels: plain sorted pairs, since results may lack `__name__`.
pub type ResultLabels = Vec<(String, String)>;

/// One element of an instant vector.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Sorted label pairs.
    pub labels: ResultLabels,
    /// Evaluation time, ms since the Unix epoch.
    pub t_ms: i64,
    /// The value.
    pub v: f64,
}

/// One series of a matrix.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// Sorted label pairs.
    pub labels: ResultLabels,
    /// `(t_ms, v)` in increasing time.
    pub points: Vec<(i64, f64)>,
}

/// A query result.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A number at an evaluation time.
    Scalar { t_ms: i64, v: f64 },
    /// A string literal at an evaluation time.
    String { t_ms: i64, v: String },
    /// Instant vector, sorted by labels.
    Vector(Vec<Sample>),
    /// Range vector or range-query result, sorted by labels.
    Matrix(Vec<Series>),
}

/// Which Prometheus API error type a query failure maps to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueryErrorKind {
    /// The query or its parameters are malformed or unsupported (HTTP 400 `bad_data`).
    BadData,
    /// The query is valid but failed while running, e.g. on a limit (HTTP 422 `execution`).
    Execution,
    /// The query ran past its deadline (HTTP 503 `timeout`, as Prometheus).
    Timeout,
}

impl QueryErrorKind {
    /// The Prometheus API `errorType` string.
    pub fn as_str(self) -> &'static str {
        match self {
            QueryErrorKind::BadData => "bad_data",
            QueryErrorKind::Execution => "execution",
            QueryErrorKind::Timeout => "timeout",
        }
    }
}

/// Why a query failed; parse errors start with `line:column:` of the offending input.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct QueryError {
    /// The API error type.
    pub kind: QueryErrorKind,
    /// Human-readable reason.
    pub message: String,
}

impl QueryError {
    /// A `bad_data` error.
    pub fn bad_data(message: impl Into<String>) -> QueryError {
        QueryError {
            kind: QueryErrorKind::BadData,
            message: message.into(),
        }
    }

    /// An `execution` error.
    pub fn execution(message: impl Into<String>) -> QueryError {
        QueryError {
            kind: QueryErrorKind::Execution,
            message: message.into(),
        }
    }

    fn unsupported(feature: &str) -> QueryError {
        QueryError::bad_data(format!(
            "{feature} is not supported by Assay's PromQL engine yet"
        ))
    }
}

/// Parses a series selector such as `up{job=~"api|web"}` (the `match[]` API parameter).
pub fn parse_selector(s: &str) -> Result<Vec<Matcher>, QueryError> {
    parse::selector(s)
}

/// Per-query options of the API (rules and tests use the defaults).
#[derive(Clone, Copy, Debug, Default)]
pub struct QueryOptions {
    /// The query fails with [`QueryErrorKind::Timeout`] once this has passed.
    pub deadline: Option<std::time::Instant>,
}

/// Evaluates `query` at `at_ms`.
pub fn instant_query(db: &Tsdb, query: &str, at_ms: i64) -> Result<Value, QueryError> {
    instant_query_with(db, query, at_ms, QueryOptions::default())
}

/// [`instant_query`] with options.
pub fn instant_query_with(
    db: &Tsdb,
    query: &str,
    at_ms: i64,
    options: QueryOptions,
) -> Result<Value, QueryError> {
    let expr = parse::query(query)?;
    let mut ev = eval::Evaluator::new(db, at_ms, at_ms).with_deadline(options.deadline);
    ev.instant(&expr, at_ms)
}

/// Evaluates `query` at every `step_ms` from `start_ms` to `end_ms`; the result is a matrix.
pub fn range_query(
    db: &Tsdb,
    query: &str,
    start_ms: i64,
    end_ms: i64,
    step_ms: i64,
) -> Result<Value, QueryError> {
    range_query_with(
        db,
        query,
        start_ms,
        end_ms,
        step_ms,
        QueryOptions::default(),
    )
}

/// [`range_query`] with options.
pub fn range_query_with(
    db: &Tsdb,
    query: &str,
    start_ms: i64,
    end_ms: i64,
    step_ms: i64,
    options: QueryOptions,
) -> Result<Value, QueryError> {
    if step_ms <= 0 {
        return Err(QueryError::bad_data(
            "zero or negative query resolution step widths are not accepted. Try a positive integer",
        ));
    }
    if end_ms < start_ms {
        return Err(QueryError::bad_data(
            "end timestamp must not be before start time",
        ));
    }
    let points = (end_ms as i128 - start_ms as i128) / step_ms as i128 + 1;
    if points > RANGE_QUERY_POINTS_MAX as i128 {
        return Err(QueryError::execution(format!(
            "exceeded maximum resolution of {RANGE_QUERY_POINTS_MAX} points per timeseries ({points} asked). Try decreasing the query resolution (?step=XX)"
        )));
    }
    let expr = parse::query(query)?;
    let mut ev = eval::Evaluator::new(db, start_ms, end_ms).with_deadline(options.deadline);
    ev.range(&expr, start_ms, end_ms, step_ms)
}

/// The `data` object of the Prometheus HTTP API for a result, as a JSON value (tests and
/// tools; the API writes [`prometheus_data_json`]).
pub fn to_prometheus_data(v: &Value) -> serde_json::Value {
    serde_json::from_str(&prometheus_data_json(v)).expect("prometheus_data_json writes JSON")
}

/// The `data` object of the Prometheus HTTP API for a result, as JSON text written the way
/// Prometheus writes it: timestamps in seconds with three decimals when not whole (`805.140`),
/// values as strings (`format_value`). Written directly rather than through a
/// `serde_json::Value` tree, which costs an allocation per point of a large matrix.
pub fn prometheus_data_json(v: &Value) -> String {
    let mut out = String::with_capacity(64);
    match v {
        Value::Scalar { t_ms, v } => {
            out.push_str(r#"{"resultType":"scalar","result":"#);
            push_point(&mut out, *t_ms, *v);
        }
        Value::String { t_ms, v } => {
            out.push_str(r#"{"resultType":"string","result":["#);
            push_time(&mut out, *t_ms);
            out.push(',');
            push_json_str(&mut out, v);
            out.push(']');
        }
        Value::Vector(samples) => {
            out.reserve(samples.len() * 64);
            out.push_str(r#"{"resultType":"vector","result":["#);
            push_separated(&mut out, samples, |out, s| {
                out.push_str(r#"{"metric":"#);
                push_labels(out, &s.labels);
                out.push_str(r#","value":"#);
                push_point(out, s.t_ms, s.v);
                out.push('}');
            });
            out.push(']');
        }
        Value::Matrix(series) => {
            let points: usize = series.iter().map(|s| s.points.len()).sum();
            out.reserve(series.len() * 64 + points * 24);
            out.push_str(r#"{"resultType":"matrix","result":["#);
            push_separated(&mut out, series, |out, s| {
                out.push_str(r#"{"metric":"#);
                push_labels(out, &s.labels);
                out.push_str(r#","values":["#);
                push_separated(out, &s.points, |out, &(t, v)| push_point(out, t, v));
                out.push_str("]}");
            });
            out.push(']');
        }
    }
    out.push('}');
    out
}

/// Writes each item with `write`, a comma between each two.
fn push_separated<T>(
    out: &mut String,
    items: impl IntoIterator<Item = T>,
    mut write: impl FnMut(&mut String, T),
) {
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write(out, item);
    }
}

fn push_labels(out: &mut String, labels: &ResultLabels) {
    out.push('{');
    push_separated(out, labels, |out, (n, v)| {
        push_json_str(out, n);
        out.push(':');
        push_json_str(out, v);
    });
    out.push('}');
}

fn push_json_str(out: &mut String, s: &str) {
    out.push_str(&serde_json::to_string(s).expect("a string serializes"));
}

fn push_point(out: &mut String, t_ms: i64, v: f64) {
    out.push('[');
    push_time(out, t_ms);
    out.push_str(",\"");
    out.push_str(&format_value(v));
    out.push_str("\"]");
}

/// Unix seconds: whole seconds without a fraction, else three decimals, as Prometheus'
/// `marshalTimestamp` writes them.
fn push_time(out: &mut String, t_ms: i64) {
    use std::fmt::Write as _;
    let sign = if t_ms < 0 { "-" } else { "" };
    let t = t_ms.unsigned_abs();
    let _ = write!(out, "{sign}{}", t / 1000);
    if !t.is_multiple_of(1000) {
        let _ = write!(out, ".{:03}", t % 1000);
    }
}

/// Go's `strconv.FormatFloat(v, 'f', -1, 64)`, which Prometheus uses for sample values.
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else if v == f64::INFINITY {
        "+Inf".to_string()
    } else if v == f64::NEG_INFINITY {
        "-Inf".to_string()
    } else {
        // Rust's shortest round-trip form, never in exponent notation, as Go's 'f', -1.
        format!("{v}")
    }
}

#[cfg(test)]
mod tests;
