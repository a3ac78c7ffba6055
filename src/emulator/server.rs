//! The HTTP side: routing, the gateway (authentication, injected faults), dispatch to the operations,
//! counters; plus the test-control endpoints and the unauthenticated `/ext/` downloads.

use super::auth;
use super::clock::wall_ms;
use super::faults::{DEFAULT_HUGE_BODY_BYTES, DEFAULT_NON_JSON_BODY, FaultKind, FaultRule};
use super::ops;
use super::request::{Call, parse_query};
use super::response::{GatewayError, service_error, success};
use super::routes::{self, Route};
use super::state::{Shared, internal};
use crate::ncp::messages;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State as AxumState};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt as _;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// The router: one fallback handler, so unknown paths get the gateway's 404 and the raw
/// request-target is available for signature checks.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

async fn handle(AxumState(shared): AxumState<Arc<Shared>>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    if let Some(rest) = path.strip_prefix("/_emulator/") {
        if shared.config.test_controls {
            return control(&shared, rest, req).await;
        }
        return GatewayError::not_found().into_response();
    }
    if let Some(rest) = path.strip_prefix("/ext/") {
        return ext(shared, req.method(), rest).await;
    }
    match routes::match_route(req.method(), &path) {
        Some(route) => api(shared, route, req).await,
        None => {
            tracing::info!(method = %req.method(), %path, "no operation at this method and path; answering 404");
            GatewayError::not_found().into_response()
        }
    }
}

/// Why a request body could not be read.
enum BodyError {
    /// Longer than the limit.
    TooLarge,
    /// The connection broke or ended before the declared length.
    Broken(String),
}

/// Reads a body of at most `limit` bytes, telling a body that is too long from one cut short.
async fn read_body(body: Body, limit: usize) -> Result<Vec<u8>, BodyError> {
    let mut stream = body.into_data_stream();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| BodyError::Broken(e.to_string()))?;
        if out.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Whether the request declares a body longer than `limit` (answered at once, before `100 Continue`).
fn declares_too_large(req: &Request, limit: usize) -> bool {
    req.headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .is_some_and(|len| len > u64::try_from(limit).unwrap_or(u64::MAX))
}

/// Holds a request until the emulator stops (a client sees a timeout).
async fn hold(shared: &Shared) -> Response {
    let mut rx = shared.shutdown.subscribe();
    let _ = rx.wait_for(|stopped| *stopped).await;
    GatewayError::endpoint_error().into_response()
}

async fn api(shared: Arc<Shared>, route: Route, req: Request) -> Response {
    let op = route.op;
    let target = req.uri().path_and_query().map_or_else(
        || req.uri().path().to_string(),
        |pq| pq.as_str().to_string(),
    );
    shared.stats().entry(op).total += 1;

    // Before authentication and before the body is read, so `Expect: 100-continue` gets no 100.
    if declares_too_large(&req, shared.config.max_body_bytes) {
        shared.stats().entry(op).rejected += 1;
        tracing::info!(%op, "declared body over the limit; answering 413");
        return GatewayError::too_large().into_response();
    }

    if let Err(e) = auth::authenticate(
        &shared.config,
        req.method().as_str(),
        &target,
        req.headers(),
        wall_ms(),
        routes::is_write(op),
    ) {
        tracing::info!(%op, error_code = e.error_code, details = %e.details, "gateway rejected request");
        shared.stats().entry(op).rejected += 1;
        return e.into_response();
    }

    let fault = shared.faults.decide(op);
    if fault.latency_ms > 0 || fault.action.is_some() {
        shared.stats().faults_injected += 1;
        tracing::info!(%op, latency_ms = fault.latency_ms, action = ?fault.action, "injecting fault");
    }
    if fault.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(fault.latency_ms)).await;
    }
    match fault.action {
        Some(FaultKind::Error500) => {
            shared.stats().entry(op).error += 1;
            return service_error(messages::TEMPORARILY_UNAVAILABLE);
        }
        Some(FaultKind::Throttle429) => {
            shared.stats().entry(op).rejected += 1;
            return GatewayError::throttled(fault.retry_after_secs).into_response();
        }
        Some(FaultKind::Unavailable503) => {
            shared.stats().entry(op).rejected += 1;
            return GatewayError::endpoint_error().into_response();
        }
        Some(FaultKind::Timeout) => {
            shared.stats().entry(op).lost += 1;
            return hold(&shared).await;
        }
        Some(FaultKind::Redirect) => {
            shared.stats().entry(op).rejected += 1;
            let location = fault.location.as_deref().unwrap_or("http://127.0.0.1:1/");
            return redirect(location);
        }
        Some(FaultKind::HugeBody) => {
            shared.stats().entry(op).rejected += 1;
            return huge_body(fault.body_bytes.unwrap_or(DEFAULT_HUGE_BODY_BYTES));
        }
        Some(FaultKind::NonJsonBody) => {
            shared.stats().entry(op).rejected += 1;
            let body = fault
                .body
                .unwrap_or_else(|| DEFAULT_NON_JSON_BODY.to_string());
            let mut resp = (StatusCode::OK, body).into_response();
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            return resp;
        }
        Some(FaultKind::Latency | FaultKind::CommitThenLoseResponse) | None => {}
    }

    let query = parse_query(req.uri().query());
    let body = match read_body(req.into_body(), shared.config.max_body_bytes).await {
        Ok(b) => b,
        Err(BodyError::TooLarge) => {
            shared.stats().entry(op).rejected += 1;
            tracing::info!(%op, "body over the limit; answering 413");
            return GatewayError::too_large().into_response();
        }
        Err(BodyError::Broken(cause)) => {
            shared.stats().entry(op).rejected += 1;
            tracing::info!(%op, error = %cause, "request body cut short; answering 400");
            return GatewayError::bad_request("the request body ended before its declared length")
                .into_response();
        }
    };
    let call = Call {
        op,
        ca_tag: route.ca_tag,
        serial: route.serial,
        id_no: route.id_no,
        query,
        body,
    };
    let lose_response = fault.action == Some(FaultKind::CommitThenLoseResponse);
    let worker = Arc::clone(&shared);
    // The counters are updated in the blocking task: they stay right even when the client gives up
    // (and the connection, with this handler, goes away) before the operation finishes.
    let result = tokio::task::spawn_blocking(move || {
        let result = ops::execute(&worker, &call);
        let mut stats = worker.stats();
        let counts = stats.entry(op);
        if result.is_ok() {
            counts.success += 1;
        } else {
            counts.error += 1;
        }
        if lose_response {
            counts.lost += 1;
        }
        result
    })
    .await
    .unwrap_or_else(|e| Err(internal("operation task failed", e)));
    match &result {
        Ok(_) => tracing::info!(%op, "operation succeeded"),
        Err(m) => tracing::info!(%op, code = m.code, msg = m.msg, "operation failed"),
    }
    if lose_response {
        tracing::info!(%op, "operation committed; withholding the response");
        return hold(&shared).await;
    }
    match result {
        Ok(data) => success(&data),
        Err(m) => service_error(m),
    }
}

/// `302 Found` to `location`.
fn redirect(location: &str) -> Response {
    let mut resp = StatusCode::FOUND.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, value);
    }
    resp
}

/// `200` with `bytes` bytes of a JSON envelope that never ends in time, streamed in 64 KiB chunks
/// (the emulator holds one chunk, whatever the size).
fn huge_body(bytes: u64) -> Response {
    const CHUNK: usize = 64 * 1024;
    static FILL: [u8; CHUNK] = [b'A'; CHUNK];
    let head: &'static [u8] = br#"{"code":"SUCCESS","msg":"Success","data":""#;
    let first = axum::body::Bytes::from_static(head);
    let rest = bytes.saturating_sub(head.len() as u64);
    let chunks = futures::stream::unfold(rest, |left| async move {
        if left == 0 {
            return None;
        }
        let n = usize::try_from(left.min(CHUNK as u64)).unwrap_or(CHUNK);
        Some((
            Ok::<_, std::io::Error>(axum::body::Bytes::from_static(&FILL[..n])),
            left - n as u64,
        ))
    });
    let stream = futures::stream::once(async move { Ok(first) }).chain(chunks);
    let mut resp = (StatusCode::OK, Body::from_stream(stream)).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn control_error(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, axum::Json(json!({"error": msg.into()}))).into_response()
}

fn clock_json(shared: &Shared) -> Value {
    json!({"offset_ms": shared.clock.offset_ms(), "now_ms": shared.clock.now_ms()})
}

async fn control(shared: &Shared, rest: &str, req: Request) -> Response {
    let method = req.method().clone();
    let body = match axum::body::to_bytes(req.into_body(), shared.config.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => return control_error(StatusCode::PAYLOAD_TOO_LARGE, e.to_string()),
    };
    match (method, rest) {
        (Method::GET, "stats") => axum::Json(shared.stats().clone()).into_response(),
        (Method::GET, "faults") => axum::Json(shared.faults.list()).into_response(),
        (Method::POST, "faults") => {
            let rules: Vec<FaultRule> = match serde_json::from_slice::<Value>(&body) {
                Ok(v @ Value::Array(_)) => match serde_json::from_value(v) {
                    Ok(r) => r,
                    Err(e) => return control_error(StatusCode::BAD_REQUEST, e.to_string()),
                },
                Ok(v) => match serde_json::from_value(v) {
                    Ok(r) => vec![r],
                    Err(e) => return control_error(StatusCode::BAD_REQUEST, e.to_string()),
                },
                Err(e) => return control_error(StatusCode::BAD_REQUEST, e.to_string()),
            };
            for rule in rules {
                tracing::info!(?rule, "fault added");
                shared.faults.add(rule);
            }
            axum::Json(json!({"faults": shared.faults.list().len()})).into_response()
        }
        (Method::DELETE, "faults") => {
            shared.faults.clear();
            axum::Json(json!({"faults": 0})).into_response()
        }
        (Method::GET, "clock") => axum::Json(clock_json(shared)).into_response(),
        (Method::POST, "clock") => {
            let advance = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v.get("advance_ms").and_then(Value::as_i64));
            let Some(ms) = advance else {
                return control_error(
                    StatusCode::BAD_REQUEST,
                    "expected {\"advance_ms\": <integer>}",
                );
            };
            shared.clock.advance(ms);
            tracing::info!(
                advance_ms = ms,
                offset_ms = shared.clock.offset_ms(),
                "clock advanced"
            );
            axum::Json(clock_json(shared)).into_response()
        }
        (Method::POST, "reset") => {
            shared.reset();
            axum::Json(json!({"reset": true})).into_response()
        }
        _ => GatewayError::not_found().into_response(),
    }
}

/// `GET /ext/{caTag}/crl` (DER CRL) and `GET /ext/{caTag}/ca` (DER certificate), unauthenticated, as
/// a CRL distribution point and an AIA caIssuers URL are fetched.
async fn ext(shared: Arc<Shared>, method: &Method, rest: &str) -> Response {
    let (tag, what) = match rest.split_once('/') {
        Some((tag, what @ ("crl" | "ca"))) if *method == Method::GET => (tag.to_string(), what),
        _ => return GatewayError::not_found().into_response(),
    };
    let is_crl = what == "crl";
    let worker = Arc::clone(&shared);
    let result = tokio::task::spawn_blocking(move || {
        if is_crl {
            ops::ext_crl_der(&worker, &tag)
        } else {
            ops::ext_ca_der(&worker, &tag)
        }
    })
    .await
    .unwrap_or_else(|e| Err(internal("ext task failed", e)));
    match result {
        Ok(der) => {
            let content_type = if is_crl {
                "application/pkix-crl"
            } else {
                "application/pkix-cert"
            };
            let mut resp = (StatusCode::OK, der).into_response();
            resp.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            resp
        }
        Err(_) => GatewayError::not_found().into_response(),
    }
}
