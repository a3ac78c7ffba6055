//! The operator's HTTP endpoints: `/livez`, `/readyz` and `/metrics`.
//!
//! - `/livez` answers 200 while the process runs.
//! - `/readyz` answers 503 until every watch behind the controllers (`PrivateCA`,
//!   `ClusterPrivateCA`, `CertificateRequest`; see [`crate::watches`]) has listed
//!   its kind, then 200 for good. Every replica runs those watches, the follower included, so a
//!   follower is ready on the same terms as the leader; an identity that may not list one of the
//!   kinds never becomes ready.
//! - `/metrics` serves [`Metrics`] as `OpenMetrics` text.
//!
//! Probes never depend on NCP: an unreachable NCP endpoint makes issuers not Ready, it must not make
//! Kubernetes restart the pod or pull it out of service.

use crate::metrics::{self, Metrics};
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::net::TcpListener;

/// Whether the process is ready to serve: set once the watches behind the controllers have all
/// listed their kinds (by the `controller` subcommand). Cheap to clone; clones share the flag.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// A handle that is not ready yet.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Marks the process ready (for good: a later watch error does not make it unready).
    pub fn set_ready(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Whether [`Readiness::set_ready`] has been called.
    #[must_use]
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// What the endpoints read.
#[derive(Debug, Clone, Default)]
pub struct ServerState {
    /// Served on `/metrics`.
    pub metrics: Metrics,
    /// Answers `/readyz`.
    pub readiness: Readiness,
}

/// The HTTP server failed.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Accepting or serving connections failed.
    #[error("http server failed: {0}")]
    Serve(std::io::Error),
}

/// The routes, for embedding or testing.
pub fn router(state: ServerState) -> Router {
    Router::new()
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// Serves the routes on `listener` until `shutdown` resolves, then finishes the requests in flight.
///
/// # Errors
///
/// [`ServerError::Serve`] when the listener fails.
pub async fn serve<S>(
    listener: TcpListener,
    state: ServerState,
    shutdown: S,
) -> Result<(), ServerError>
where
    S: Future<Output = ()> + Send + 'static,
{
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(ServerError::Serve)
}

/// 200 while the process runs.
async fn livez() -> &'static str {
    "ok\n"
}

/// 200 once ready, 503 before.
async fn readyz(State(state): State<ServerState>) -> (StatusCode, &'static str) {
    if state.readiness.is_ready() {
        (StatusCode::OK, "ok\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: watches not synced\n",
        )
    }
}

async fn metrics(State(state): State<ServerState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        state.metrics.encode(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use std::time::Duration;
    use tokio::sync::oneshot;
    use tokio::task::JoinHandle;

    struct Running {
        addr: SocketAddr,
        stop: oneshot::Sender<()>,
        task: JoinHandle<Result<(), ServerError>>,
        http: reqwest::Client,
    }

    impl Running {
        async fn start(state: ServerState) -> Self {
            crate::telemetry::install_crypto_provider();
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let (stop, stopped) = oneshot::channel::<()>();
            let task = tokio::spawn(serve(listener, state, async {
                let _ = stopped.await;
            }));
            Self {
                addr,
                stop,
                task,
                http: reqwest::Client::new(),
            }
        }

        async fn get(&self, path: &str) -> reqwest::Response {
            self.http
                .get(format!("http://{}{path}", self.addr))
                .send()
                .await
                .unwrap()
        }
    }

    #[tokio::test]
    async fn livez_answers_ok_even_before_ready() {
        let server = Running::start(ServerState::default()).await;
        assert_eq!(server.get("/livez").await.status(), 200);
    }

    #[tokio::test]
    async fn readyz_is_unavailable_until_set_ready_then_ok() {
        let state = ServerState::default();
        let server = Running::start(state.clone()).await;
        assert_eq!(server.get("/readyz").await.status(), 503);
        state.readiness.set_ready();
        assert_eq!(server.get("/readyz").await.status(), 200);
    }

    #[tokio::test]
    async fn metrics_are_served_as_openmetrics_text() {
        let state = ServerState::default();
        state.metrics.certificate_issued("PrivateCA");
        let server = Running::start(state).await;
        let response = server.get("/metrics").await;
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
        );
        let body = response.text().await.unwrap();
        assert!(
            body.contains(r#"ncp_pca_issuer_certificates_issued_total{issuer_kind="PrivateCA"} 1"#)
        );
        assert!(body.ends_with("# EOF\n"));
    }

    #[tokio::test]
    async fn unknown_paths_are_not_found() {
        let server = Running::start(ServerState::default()).await;
        assert_eq!(server.get("/healthz").await.status(), 404);
    }

    #[tokio::test]
    async fn serve_returns_once_shutdown_resolves() {
        let server = Running::start(ServerState::default()).await;
        assert_eq!(server.get("/livez").await.status(), 200);
        server.stop.send(()).unwrap();
        let result = tokio::time::timeout(Duration::from_secs(10), server.task)
            .await
            .expect("serve returns after shutdown")
            .unwrap();
        assert!(result.is_ok());
    }
}
