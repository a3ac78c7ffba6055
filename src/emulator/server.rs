//! The HTTP side: routing, the gateway (authentication, injected faults), dispatch to the operations,
//! counters; plus the test-control endpoints and the unauthenticated `/ext/` downloads.

use super::auth;
use super::clock::{Clock, wall_ms};
use super::config::EmulatorConfig;
use super::faults::{FaultKind, FaultRule, Faults};
use super::ops;
use super::persist;
use super::request::{Call, parse_query};
use super::response::{GatewayError, service_error, success};
use super::routes::{self, Route};
use super::state::{State, internal};
use super::stats::Stats;
use crate::ncp::messages;
use axum::Router;
use axum::extract::{Request, State as AxumState};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::watch;

/// Everything the handlers share.
pub(crate) struct Shared {
    pub config: EmulatorConfig,
    pub base_url: String,
    pub state: Mutex<State>,
    pub stats: Mutex<Stats>,
    pub faults: Faults,
    pub clock: Clock,
    /// Flips to `true` when the server stops: releases the requests held by timeout faults.
    pub shutdown: watch::Sender<bool>,
}

impl Shared {
    pub(crate) fn new(config: EmulatorConfig, base_url: String, state: State) -> Self {
        Self {
            config,
            base_url,
            state: Mutex::new(state),
            stats: Mutex::new(Stats::default()),
            faults: Faults::default(),
            clock: Clock::default(),
            shutdown: watch::channel(false).0,
        }
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn stats(&self) -> MutexGuard<'_, Stats> {
        self.stats.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Saves the state file when something changed. A failed save is logged, not reported to the
    /// client: the change has happened in memory either way.
    pub(crate) fn persist_if_dirty(&self) {
        let mut st = self.state();
        if !st.dirty {
            return;
        }
        st.dirty = false;
        if let Some(path) = &self.config.state_file
            && let Err(e) = persist::save(path, &st)
        {
            tracing::error!(error = %e, path = %path.display(), "cannot save emulator state");
        }
    }

    /// Forgets every CA, counter and fault, and resets the clock.
    pub(crate) fn reset(&self) {
        {
            let mut st = self.state();
            *st = State::default();
            st.dirty = true;
        }
        self.persist_if_dirty();
        *self.stats() = Stats::default();
        self.faults.clear();
        self.clock.reset();
        tracing::info!("emulator reset");
    }
}

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
        None => GatewayError::not_found().into_response(),
    }
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
        Some(FaultKind::Latency | FaultKind::CommitThenLoseResponse) | None => {}
    }

    let query = parse_query(req.uri().query());
    let body = match axum::body::to_bytes(req.into_body(), shared.config.max_body_bytes).await {
        Ok(b) => b.to_vec(),
        Err(_) => {
            shared.stats().entry(op).rejected += 1;
            return GatewayError::too_large().into_response();
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
        Ok(data) => success(data),
        Err(m) => service_error(m),
    }
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
