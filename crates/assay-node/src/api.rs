//! The HTTP API: native `/v1` (ingest, ledger), the Prometheus query API under
//! `/api/v1`, and `/healthz`, `/metrics`.
//!
//! Every error is JSON `{"error": "...", "detail": ...}`; under `/api/v1` it also carries
//! Prometheus' `status` and `errorType` so Grafana and promtool read it. A rejected
//! request changes nothing; an accepted write is answered only once durable.

use crate::params::{parse_duration_ms, Params};
use crate::sequencer::{CommitError, Receipt, Sequencer, Shared};
use crate::wall_clock_ms;
use assay_ingest::{IngestError, IngestErrorKind};
use assay_ledger::{Entry, LedgerError};
use assay_tsdb::promql::{self, QueryError, QueryErrorKind};
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde_json::{json, Value};
use std::sync::Arc;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// Ledger, views, metrics.
    pub shared: Arc<Shared>,
    /// Where writes go.
    pub sequencer: Sequencer,
    /// Input limits.
    pub limits: assay_ingest::Limits,
    /// Longest a query may run, ms (`tsdb.query_timeout_ms`).
    pub query_timeout_ms: u64,
    /// Remote write's series labels validated under `limits`, shared by all requests.
    pub series_cache: Arc<assay_ingest::SeriesCache>,
}

/// The whole API.
pub fn router(state: AppState) -> Router {
    let body_max = state.limits.body_bytes_max;
    Router::new()
        .route("/", get(index))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/v1/push", post(push))
        .route("/v1/import/prometheus", post(import_prometheus))
        .route("/api/v1/import/prometheus", post(import_prometheus))
        .route("/api/v1/write", post(remote_write))
        .route("/write", post(influx_write))
        .route("/api/v2/write", post(influx_write))
        .route("/v1/ci/junit", post(ci_junit))
        .route("/v1/ledger/checkpoint", get(checkpoint))
        .route("/v1/ledger/key", get(key))
        .route("/v1/ledger/entries/{index}", get(entry))
        .route("/v1/ledger/proof/inclusion", get(inclusion_proof))
        .route("/v1/ledger/proof/consistency", get(consistency_proof))
        .route("/api/v1/query", get(query).post(query))
        .route("/api/v1/query_range", get(query_range).post(query_range))
        .route("/api/v1/labels", get(labels).post(labels))
        .route("/api/v1/label/{name}/values", get(label_values))
        .route("/api/v1/series", get(series).post(series))
        .route("/api/v1/metadata", get(metadata))
        .route("/api/v1/status/buildinfo", get(buildinfo))
        .layer(DefaultBodyLimit::max(body_max))
        .with_state(state)
}

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    error: String,
    detail: Value,
    /// Prometheus `errorType`, for `/api/v1` routes.
    prom: Option<&'static str>,
}

impl ApiError {
    fn new(status: StatusCode, error: impl Into<String>) -> ApiError {
        ApiError {
            status,
            error: error.into(),
            detail: Value::Null,
            prom: None,
        }
    }

    fn bad(error: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, error)
    }

    fn prom(mut self) -> ApiError {
        self.prom = Some(match self.status.as_u16() {
            400 => "bad_data",
            422 => "execution",
            503 => "unavailable",
            _ => "internal",
        });
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"error": self.error, "detail": self.detail});
        if let Some(t) = self.prom {
            body["status"] = json!("error");
            body["errorType"] = json!(t);
        }
        (self.status, Json(body)).into_response()
    }
}

impl From<IngestError> for ApiError {
    fn from(e: IngestError) -> ApiError {
        let status = match e.kind {
            IngestErrorKind::BadRequest => StatusCode::BAD_REQUEST,
            IngestErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        };
        ApiError {
            status,
            error: e.message,
            detail: e.detail,
            prom: None,
        }
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> ApiError {
        let status = match e.kind {
            QueryErrorKind::BadData => StatusCode::BAD_REQUEST,
            QueryErrorKind::Execution => StatusCode::UNPROCESSABLE_ENTITY,
            QueryErrorKind::Timeout => StatusCode::SERVICE_UNAVAILABLE,
        };
        let mut err = ApiError::new(status, e.message).prom();
        err.prom = Some(e.kind.as_str());
        err
    }
}

impl From<LedgerError> for ApiError {
    fn from(e: LedgerError) -> ApiError {
        match e {
            LedgerError::NoEntry { .. } => ApiError::new(StatusCode::NOT_FOUND, e.to_string()),
            LedgerError::Proof(_) => ApiError::bad(e.to_string()),
            _ => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        }
    }
}

impl From<CommitError> for ApiError {
    fn from(e: CommitError) -> ApiError {
        let status = match e {
            CommitError::Busy(_) | CommitError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            CommitError::Ledger(_) => StatusCode::INTERNAL_SERVER_ERROR,
            CommitError::Conflict(_) => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, e.to_string())
    }
}

/// Reads a write's body after its head passed: a declared length over the limit is
/// answered 413 before a byte of the body is read (as a proxy would), so the client sees
/// the answer instead of a connection closed mid-upload.
async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let too_large = |what: String| {
        let mut e = ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("{what} body_bytes_max = {limit} bytes; split the upload"),
        );
        e.detail = json!({"body_bytes_max": limit});
        e
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = declared.filter(|&len| len > limit as u64) {
        return Err(too_large(format!("the body is {len} bytes, over")));
    }
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let over = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if over {
            too_large("the body exceeds".into())
        } else {
            ApiError::bad(format!("reading the request body: {e}"))
        }
    })
}

/// Accepts a missing Content-Type or one of `allowed` (parameters such as charset ignored).
fn check_content_type(headers: &HeaderMap, allowed: &[&str]) -> Result<(), ApiError> {
    let Some(ct) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let essence = ct
        .to_str()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if allowed.contains(&essence.as_str()) {
        return Ok(());
    }
    let mut e = ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        format!(
            "Content-Type `{essence}` is not accepted here; send one of: {}",
            allowed.join(", ")
        ),
    );
    e.detail = json!({"content_type": essence, "accepted": allowed});
    Err(e)
}

/// The one shape of every ingest endpoint: check the media type, parse (pure; a
/// rejection writes nothing), commit, and hand back the receipt once durable. `parse`
/// returns `None` for a request with nothing to store (a metadata-only remote write).
async fn accept(
    state: &AppState,
    endpoint: &str,
    headers: &HeaderMap,
    body: Body,
    media: Option<&[&str]>,
    parse: impl FnOnce(&[u8]) -> Result<Option<Entry>, IngestError>,
) -> Result<Option<(Receipt, usize)>, ApiError> {
    let result: Result<Option<(Receipt, usize)>, ApiError> = async {
        if let Some(media) = media {
            check_content_type(headers, media)?;
        }
        check_identity_encoding(headers, endpoint == "remote_write")?;
        let body = read_body(headers, body, state.limits.body_bytes_max).await?;
        let Some(entry) = parse(&body)? else {
            return Ok(None);
        };
        let samples = entry.batch().len();
        let r: Receipt = state.sequencer.commit(entry).await?;
        Ok(Some((r, samples)))
    }
    .await;
    if let Err(e) = &result {
        state.shared.metrics.rejected(endpoint, e.status.as_u16());
    }
    result
}

/// The receipt Assay's own write endpoints answer with.
fn receipt_json(accepted: Option<(Receipt, usize)>) -> Json<Value> {
    let Some((r, samples)) = accepted else {
        return Json(json!({"samples": 0}));
    };
    Json(json!({
        "index": r.index,
        "leaf_hash": hex::encode(r.leaf_hash),
        "height": r.height,
        "tree_size": r.tree_size,
        "samples": samples,
    }))
}

/// Bodies come uncompressed, except remote write's snappy; anything else is 415 rather
/// than a confusing parse error.
fn check_identity_encoding(headers: &HeaderMap, snappy: bool) -> Result<(), ApiError> {
    let Some(enc) = headers.get(header::CONTENT_ENCODING) else {
        return Ok(());
    };
    let enc = enc.to_str().unwrap_or("").trim().to_ascii_lowercase();
    if enc == "identity" || (snappy && enc == "snappy") {
        return Ok(());
    }
    let accepted = if snappy { "snappy" } else { "identity (none)" };
    let mut e = ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        format!("Content-Encoding `{enc}` is not accepted here; send {accepted}"),
    );
    e.detail = json!({"content_encoding": enc});
    Err(e)
}

async fn push(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let limits = &s.limits;
    let media: &[&str] = &["application/json"];
    accept(&s, "push", &headers, body, Some(media), |b| {
        assay_ingest::parse_json_push(b, wall_clock_ms(), limits).map(|b| Some(Entry::Samples(b)))
    })
    .await
    .map(receipt_json)
}

async fn import_prometheus(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let limits = &s.limits;
    let media: &[&str] = &["text/plain"];
    let mut metadata = Vec::new();
    let accepted = accept(&s, "import_prometheus", &headers, body, Some(media), |b| {
        let (batch, meta) =
            assay_ingest::parse_prometheus_text_with_metadata(b, wall_clock_ms(), limits)?;
        metadata = meta;
        Ok(Some(Entry::Samples(batch)))
    })
    .await?;
    commit_metadata(&s, "import_prometheus", metadata).await?;
    Ok(receipt_json(accepted))
}

/// Commits metadata as its own entry after a write's samples (Prometheus sends it in
/// requests of its own): if it fails, the sender retries the whole request, and the
/// samples, already held, pass again as exact duplicates. Nothing to commit when the
/// view already holds every record as its newest for that metric.
async fn commit_metadata(
    s: &AppState,
    endpoint: &str,
    records: Vec<assay_ledger::MetricMetadata>,
) -> Result<(), ApiError> {
    let records: Vec<_> = {
        let views = s.shared.views.read().expect("views lock");
        records
            .into_iter()
            .filter(|m| !views.tsdb.metadata_is_newest(m))
            .collect()
    };
    if records.is_empty() {
        return Ok(());
    }
    s.sequencer
        .commit(Entry::metadata(records))
        .await
        .map(|_| ())
        .map_err(|e| {
            let e = ApiError::from(e);
            s.shared.metrics.rejected(endpoint, e.status.as_u16());
            e
        })
}

/// Prometheus remote write 1.0: 204 once durable; 400 (the sender drops the request) for
/// malformed input and for samples Prometheus would refuse; 503 (it retries) when busy.
async fn remote_write(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    // Remote write 2.0 names its message in the content type; answering 415 makes a
    // 2.0 sender fall back to 1.0, as the specification asks.
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if ct.contains("io.prometheus.write.v2.Request") {
        s.shared.metrics.rejected("remote_write", 415);
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "remote write 2.0 (io.prometheus.write.v2.Request) is not supported; send 1.0 \
             (prometheus.WriteRequest)",
        ));
    }
    let limits = &s.limits;
    let media: &[&str] = &["application/x-protobuf"];
    let mut metadata = Vec::new();
    accept(&s, "remote_write", &headers, body, Some(media), |b| {
        let w =
            assay_ingest::parse_remote_write_cached(b, wall_clock_ms(), limits, &s.series_cache)?;
        metadata = w.metadata;
        Ok((!w.batch.is_empty()).then_some(Entry::Samples(w.batch)))
    })
    .await?;
    commit_metadata(&s, "remote_write", metadata_records(metadata)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Remote-write metadata as ledger records; types Assay does not know become `unknown`.
fn metadata_records(
    from: Vec<assay_ingest::remote_write::proto::MetricMetadata>,
) -> Vec<assay_ledger::MetricMetadata> {
    from.into_iter()
        .map(|m| assay_ledger::MetricMetadata {
            kind: u8::try_from(m.r#type)
                .ok()
                .and_then(assay_ledger::MetricType::from_u8)
                .unwrap_or(assay_ledger::MetricType::Unknown),
            metric: m.metric_family_name,
            help: m.help,
            unit: m.unit,
        })
        .collect()
}

/// Prometheus' `/api/v1/metadata` (`metric`, `limit`, `limit_per_metric`).
async fn metadata(
    State(s): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let p = Params::parse(q.as_deref(), None);
    let limit = |name: &str| -> Result<usize, ApiError> {
        match p.get(name) {
            None | Some("") => Ok(usize::MAX),
            Some(v) => match v.parse::<i64>() {
                Ok(n) if n <= 0 => Ok(usize::MAX),
                Ok(n) => Ok(n as usize),
                Err(_) => {
                    Err(ApiError::bad(format!("invalid {name} `{v}`: give an integer")).prom())
                }
            },
        }
    };
    let (metric_limit, per_metric) = (limit("limit")?, limit("limit_per_metric")?);
    let views = s.shared.views.read().expect("views lock");
    let mut data = serde_json::Map::new();
    for (metric, records) in views
        .tsdb
        .metadata(p.get("metric"), metric_limit, per_metric)
    {
        let list: Vec<Value> = records
            .iter()
            .map(|r| json!({"type": r.kind.as_str(), "help": r.help, "unit": r.unit}))
            .collect();
        data.insert(metric.to_string(), Value::Array(list));
    }
    Ok(Json(json!({"status": "success", "data": data})))
}

/// Prometheus' `/api/v1/status/buildinfo`: Grafana reads `version` to pick features, so
/// it names the Prometheus API level Assay follows (3.0); Assay's own version is beside it.
async fn buildinfo() -> Json<Value> {
    Json(json!({"status": "success", "data": {
        "version": "3.0.0",
        "revision": "",
        "branch": "",
        "buildUser": "",
        "buildDate": "",
        "goVersion": "",
        "application": "assay",
        "assayVersion": env!("CARGO_PKG_VERSION"),
    }}))
}

/// InfluxDB line protocol (`/write` of 1.x, `/api/v2/write` of 2.x): 204 once durable.
/// The database, org and bucket parameters are accepted and ignored (one namespace).
async fn influx_write(
    State(s): State<AppState>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let p = Params::parse(q.as_deref(), None);
    let precision = match p.get("precision") {
        None => Ok(assay_ingest::InfluxPrecision::Nanoseconds),
        Some(v) => assay_ingest::InfluxPrecision::from_query(v).map_err(ApiError::from),
    };
    let precision = match precision {
        Ok(p) => p,
        Err(e) => {
            s.shared.metrics.rejected("influx_write", e.status.as_u16());
            return Err(e);
        }
    };
    let limits = &s.limits;
    // Telegraf and curl send assorted content types; line protocol has no registered one.
    accept(&s, "influx_write", &headers, body, None, |b| {
        let lines = assay_ingest::parse_influx_line(b, wall_clock_ms(), precision, limits)?;
        Ok((!lines.batch.is_empty()).then_some(Entry::Samples(lines.batch)))
    })
    .await
    .map(|_| StatusCode::NO_CONTENT)
}

async fn ci_junit(
    State(s): State<AppState>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let p = Params::parse(q.as_deref(), None);
    let run = (|| {
        Ok::<_, String>(assay_ingest::CiRun {
            pipeline: p.required("pipeline")?.to_string(),
            job: p.required("job")?.to_string(),
            run: p.required("run")?.to_string(),
        })
    })()
    .map_err(ApiError::bad);
    let limits = &s.limits;
    let media = ["application/xml", "text/xml"];
    match run {
        Ok(run) => accept(&s, "ci_junit", &headers, body, Some(&media), |b| {
            assay_ingest::parse_junit(b, &run, wall_clock_ms(), limits).map(Some)
        })
        .await
        .map(receipt_json),
        Err(e) => {
            s.shared.metrics.rejected("ci_junit", 400);
            Err(e)
        }
    }
}

async fn index() -> Response {
    let html = "<!doctype html><title>Assay</title><h1>Assay node</h1><ul>\
        <li><a href=\"/v1/ledger/checkpoint\">/v1/ledger/checkpoint</a> signed checkpoint</li>\
        <li><a href=\"/v1/ledger/key\">/v1/ledger/key</a> checkpoint verifier key</li>\
        <li><a href=\"/api/v1/labels\">/api/v1/labels</a> Prometheus API</li>\
        <li><a href=\"/metrics\">/metrics</a> the node's own metrics</li>\
        <li><a href=\"/healthz\">/healthz</a></li></ul>";
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
}

async fn healthz(State(s): State<AppState>) -> Json<Value> {
    let (size, height) = {
        let l = s.shared.ledger.read().expect("ledger lock");
        (l.size(), l.height())
    };
    Json(json!({"status": "ok", "entries": size, "height": height}))
}

async fn metrics(State(s): State<AppState>) -> Response {
    let (size, height) = {
        let l = s.shared.ledger.read().expect("ledger lock");
        (l.size(), l.height())
    };
    let tsdb = {
        let v = s.shared.views.read().expect("views lock");
        crate::metrics::TsdbGauges {
            series: v.tsdb.series_count(),
            samples: v.tsdb.sample_count(),
            sample_bytes: v.tsdb.sample_bytes(),
            unsettled_chunks: v.tsdb.unsettled_len(),
        }
    };
    let text = s
        .shared
        .metrics
        .render(size, height, tsdb, s.series_cache.stats());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn checkpoint(State(s): State<AppState>) -> Response {
    let note = s
        .shared
        .ledger
        .read()
        .expect("ledger lock")
        .checkpoint()
        .note;
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], note).into_response()
}

async fn key(State(s): State<AppState>) -> Response {
    let key = s
        .shared
        .ledger
        .read()
        .expect("ledger lock")
        .signer()
        .verifier()
        .to_key_text();
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{key}\n"),
    )
        .into_response()
}

async fn entry(State(s): State<AppState>, Path(index): Path<String>) -> Result<Response, ApiError> {
    let index: u64 = index.parse().map_err(|_| {
        ApiError::bad(format!(
            "entry index `{index}` is not a non-negative integer"
        ))
    })?;
    let bytes = s.shared.ledger.read().expect("ledger lock").entry(index)?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
}

fn b64_hashes(hashes: &[[u8; 32]]) -> Vec<String> {
    hashes
        .iter()
        .map(|h| base64::engine::general_purpose::STANDARD.encode(h))
        .collect()
}

async fn inclusion_proof(
    State(s): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let p = Params::parse(q.as_deref(), None);
    let index = p.u64_required("index").map_err(ApiError::bad)?;
    let ledger = s.shared.ledger.read().expect("ledger lock");
    let size = p
        .u64("tree_size")
        .map_err(ApiError::bad)?
        .unwrap_or(ledger.size());
    let hashes = ledger.inclusion_proof(index, size)?;
    let leaf = ledger.tree().leaf(index).map(hex::encode);
    Ok(Json(
        json!({"index": index, "tree_size": size, "leaf_hash": leaf, "hashes": b64_hashes(&hashes)}),
    ))
}

async fn consistency_proof(
    State(s): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let p = Params::parse(q.as_deref(), None);
    let from = p.u64_required("from").map_err(ApiError::bad)?;
    let ledger = s.shared.ledger.read().expect("ledger lock");
    let to = p.u64("to").map_err(ApiError::bad)?.unwrap_or(ledger.size());
    let hashes = ledger.consistency_proof(from, to)?;
    Ok(Json(
        json!({"from": from, "to": to, "hashes": b64_hashes(&hashes)}),
    ))
}

fn prom_params(q: Option<String>, headers: &HeaderMap, body: &Bytes) -> Params {
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    Params::parse(q.as_deref(), form.then_some(body.as_ref()))
}

fn success(data: Value) -> Json<Value> {
    Json(json!({"status": "success", "data": data}))
}

/// A query result's success body, written as text (see `promql::prometheus_data_json`).
fn query_success(v: &promql::Value) -> Response {
    let body = format!(
        r#"{{"status":"success","data":{}}}"#,
        promql::prometheus_data_json(v)
    );
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

async fn query(
    State(s): State<AppState>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let p = prom_params(q, &headers, &body);
    let query = p.required("query").map_err(|e| ApiError::bad(e).prom())?;
    let at = p
        .time_ms("time", wall_clock_ms())
        .map_err(|e| ApiError::bad(e).prom())?;
    let options = query_options(&s, &p)?;
    let query = query.to_string();
    run_query(&s, move |db| {
        promql::instant_query_with(db, &query, at, options)
    })
    .await
}

/// Runs a query against the views off the async workers (a long query must not stall
/// request handling, ingest included) and answers with its result.
async fn run_query(
    s: &AppState,
    query: impl FnOnce(&assay_tsdb::Tsdb) -> Result<promql::Value, promql::QueryError> + Send + 'static,
) -> Result<Response, ApiError> {
    let shared = s.shared.clone();
    let v = tokio::task::spawn_blocking(move || {
        let views = shared.views.read().expect("views lock");
        query(&views.tsdb)
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    Ok(query_success(&v))
}

/// The deadline of a query: `tsdb.query_timeout_ms`, or the request's shorter `timeout`.
fn query_options(s: &AppState, p: &Params) -> Result<promql::QueryOptions, ApiError> {
    let mut ms = s.query_timeout_ms;
    if let Some(t) = p.get("timeout") {
        // Prometheus takes float seconds or a duration, zero included ("0s": give up now).
        let zero = t.starts_with('0') && t.bytes().all(|b| b == b'0' || b.is_ascii_alphabetic());
        let asked = match t.parse::<f64>() {
            Ok(secs) if secs.is_finite() && secs >= 0.0 => (secs * 1000.0) as i64,
            _ if zero => 0,
            _ => parse_duration_ms(t)
                .map_err(|e| ApiError::bad(format!("parameter `timeout`: {e}")).prom())?,
        };
        ms = ms.min(asked.max(0) as u64);
    }
    Ok(promql::QueryOptions {
        deadline: Some(std::time::Instant::now() + std::time::Duration::from_millis(ms)),
    })
}

async fn query_range(
    State(s): State<AppState>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let p = prom_params(q, &headers, &body);
    let bad = |e: String| ApiError::bad(e).prom();
    let query = p.required("query").map_err(bad)?;
    let start = p.time_ms("start", i64::MIN).map_err(bad)?;
    let end = p.time_ms("end", i64::MIN).map_err(bad)?;
    if start == i64::MIN || end == i64::MIN {
        return Err(bad("parameters `start` and `end` are required".into()));
    }
    if end < start {
        return Err(bad("`end` is before `start`".into()));
    }
    let step = parse_duration_ms(p.required("step").map_err(bad)?)
        .map_err(|e| bad(format!("parameter `step`: {e}")))?;
    let options = query_options(&s, &p)?;
    let query = query.to_string();
    run_query(&s, move |db| {
        promql::range_query_with(db, &query, start, end, step, options)
    })
    .await
}

type Selectors = Vec<Vec<assay_tsdb::Matcher>>;

fn selectors_and_range(p: &Params) -> Result<(Selectors, i64, i64), ApiError> {
    let mut sel = Vec::new();
    for m in p.all("match[]") {
        sel.push(promql::parse_selector(m)?);
    }
    let bad = |e: String| ApiError::bad(e).prom();
    Ok((
        sel,
        p.time_ms("start", i64::MIN).map_err(bad)?,
        p.time_ms("end", i64::MAX).map_err(bad)?,
    ))
}

async fn labels(
    State(s): State<AppState>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let p = prom_params(q, &headers, &body);
    let (sel, start, end) = selectors_and_range(&p)?;
    let views = s.shared.views.read().expect("views lock");
    Ok(success(json!(views.tsdb.label_names(&sel, start, end))))
}

async fn label_values(
    State(s): State<AppState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let p = Params::parse(q.as_deref(), None);
    let (sel, start, end) = selectors_and_range(&p)?;
    let views = s.shared.views.read().expect("views lock");
    Ok(success(json!(views
        .tsdb
        .label_values(&name, &sel, start, end))))
}

async fn series(
    State(s): State<AppState>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let p = prom_params(q, &headers, &body);
    let (sel, start, end) = selectors_and_range(&p)?;
    if sel.is_empty() {
        return Err(ApiError::bad("at least one `match[]` selector is required").prom());
    }
    let views = s.shared.views.read().expect("views lock");
    let list: Vec<Value> = views
        .tsdb
        .series(&sel, start, end)
        .iter()
        .map(|l| Value::Object(l.pairs().map(|(k, v)| (k.to_string(), json!(v))).collect()))
        .collect();
    Ok(success(Value::Array(list)))
}
