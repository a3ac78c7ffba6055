//! The operator's HTTP endpoints: `/livez`, `/readyz` and `/metrics`.
//!
//! - `/livez` answers 200 while the process runs.
//! - `/readyz` answers 503 until every watch behind the controllers (`PrivateCA`,
//!   `ClusterPrivateCA`, `CertificateRequest`, Secret metadata; see [`crate::watches`]) has listed
//!   its kind, then 200 for good. Every replica runs those watches, the follower included, so a
//!   follower is ready on the same terms as the leader; an identity that may not list one of the
//!   kinds never becomes ready.
//! - `/metrics` serves [`Metrics`] as `OpenMetrics` text; with `--metrics-auth` (off by default) only
//!   to a bearer token that Kubernetes authenticates (TokenReview) and authorises for `get` on the
//!   non-resource URL `/metrics` (SubjectAccessReview), as controller-runtime's secure metrics do.
//!   The probes stay open: the kubelet sends no token.
//!
//! Probes never depend on NCP: an unreachable NCP endpoint makes issuers not Ready, it must not make
//! Kubernetes restart the pod or pull it out of service.

use crate::metrics::{self, Metrics};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::future::BoxFuture;
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
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
    /// Who may read `/metrics`; `None`: anyone who reaches the port.
    pub metrics_auth: Option<MetricsAuth>,
}

/// Whether a bearer token may read `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Authenticated and authorised.
    Allowed,
    /// Not authenticated (an unknown or expired token): 401.
    Unauthenticated,
    /// Authenticated, but not allowed `get` on `/metrics`: 403.
    Forbidden,
    /// The reviews could not be made (API server unreachable): 503, not cached.
    Unavailable,
}

/// Decides on bearer tokens (Kubernetes' reviews in production, a fake in tests).
pub trait TokenAuthorizer: Send + Sync {
    /// The verdict on `token`.
    fn review<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Verdict>;
}

/// How long a verdict allowing a token is reused: scrapes come every few seconds, reviews cost two
/// API calls each.
pub const VERDICT_TTL: Duration = Duration::from_secs(60);
/// How long a refusal is reused: short, so that a scraper bound to the reader role just now gets in
/// soon, yet a stream of bad tokens does not become a stream of reviews.
pub const REFUSAL_TTL: Duration = Duration::from_secs(5);
/// Most verdicts cached (a token sprayer must not grow the cache without bound).
const MAX_VERDICTS: usize = 256;

/// `/metrics` authentication and authorisation, with verdicts cached per token digest for
/// [`VERDICT_TTL`]. Cheap to clone.
#[derive(Clone)]
pub struct MetricsAuth {
    authorizer: Arc<dyn TokenAuthorizer>,
    verdicts: Arc<Mutex<Verdicts>>,
}

/// Verdicts by token digest, with when they were made.
type Verdicts = HashMap<[u8; 32], (Verdict, Instant)>;

impl std::fmt::Debug for MetricsAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsAuth").finish_non_exhaustive()
    }
}

impl MetricsAuth {
    /// Verdicts from `authorizer`.
    #[must_use]
    pub fn new(authorizer: Arc<dyn TokenAuthorizer>) -> Self {
        Self {
            authorizer,
            verdicts: Arc::default(),
        }
    }

    /// Verdicts from the API server of `client`: TokenReview, then SubjectAccessReview.
    #[must_use]
    pub fn kubernetes(client: kube::Client) -> Self {
        Self::new(Arc::new(KubeReviews(client)))
    }

    /// The verdict on a request's headers.
    async fn check(&self, headers: &HeaderMap) -> Verdict {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty());
        let Some(token) = token else {
            return Verdict::Unauthenticated;
        };
        // Only the digest is kept: the token itself is a credential.
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let lock = || {
            self.verdicts
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        if let Some((verdict, at)) = lock().get(&digest)
            && at.elapsed() < ttl(*verdict)
        {
            return *verdict;
        }
        let verdict = self.authorizer.review(token).await;
        if verdict != Verdict::Unavailable {
            let mut verdicts = lock();
            verdicts.retain(|_, (verdict, at)| at.elapsed() < ttl(*verdict));
            if verdicts.len() >= MAX_VERDICTS {
                verdicts.clear();
            }
            verdicts.insert(digest, (verdict, Instant::now()));
        }
        verdict
    }
}

/// How long `verdict` is reused.
fn ttl(verdict: Verdict) -> Duration {
    if verdict == Verdict::Allowed {
        VERDICT_TTL
    } else {
        REFUSAL_TTL
    }
}

/// TokenReview + SubjectAccessReview against the API server.
struct KubeReviews(kube::Client);

impl TokenAuthorizer for KubeReviews {
    fn review<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Verdict> {
        Box::pin(async move {
            use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
            use k8s_openapi::api::authorization::v1::{
                NonResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
            };
            use kube::api::{Api, PostParams};
            let review = TokenReview {
                spec: TokenReviewSpec {
                    token: Some(token.to_string()),
                    ..TokenReviewSpec::default()
                },
                ..TokenReview::default()
            };
            let reviewed = match Api::<TokenReview>::all(self.0.clone())
                .create(&PostParams::default(), &review)
                .await
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics: TokenReview failed");
                    return Verdict::Unavailable;
                }
            };
            let status = reviewed.status.unwrap_or_default();
            let Some(user) = status.user.filter(|_| status.authenticated == Some(true)) else {
                return Verdict::Unauthenticated;
            };
            let access = SubjectAccessReview {
                spec: SubjectAccessReviewSpec {
                    user: user.username,
                    groups: user.groups,
                    uid: user.uid,
                    extra: user.extra,
                    non_resource_attributes: Some(NonResourceAttributes {
                        path: Some("/metrics".into()),
                        verb: Some("get".into()),
                    }),
                    ..SubjectAccessReviewSpec::default()
                },
                ..SubjectAccessReview::default()
            };
            match Api::<SubjectAccessReview>::all(self.0.clone())
                .create(&PostParams::default(), &access)
                .await
            {
                Ok(r) if r.status.as_ref().is_some_and(|s| s.allowed) => Verdict::Allowed,
                Ok(_) => Verdict::Forbidden,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics: SubjectAccessReview failed");
                    Verdict::Unavailable
                }
            }
        })
    }
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

async fn metrics(State(state): State<ServerState>, headers: HeaderMap) -> Response {
    if let Some(auth) = &state.metrics_auth {
        let refused = match auth.check(&headers).await {
            Verdict::Allowed => None,
            Verdict::Unauthenticated => Some((StatusCode::UNAUTHORIZED, "unauthorized\n")),
            Verdict::Forbidden => Some((StatusCode::FORBIDDEN, "forbidden\n")),
            Verdict::Unavailable => Some((
                StatusCode::SERVICE_UNAVAILABLE,
                "cannot review the token now\n",
            )),
        };
        if let Some(refused) = refused {
            return refused.into_response();
        }
    }
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        state.metrics.encode(),
    )
        .into_response()
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

    /// Allows `good`, forbids `other`, does not know anything else; counts reviews.
    struct Fake(std::sync::atomic::AtomicUsize);

    impl TokenAuthorizer for Fake {
        fn review<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Verdict> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                match token {
                    "good" => Verdict::Allowed,
                    "other" => Verdict::Forbidden,
                    _ => Verdict::Unauthenticated,
                }
            })
        }
    }

    #[tokio::test]
    async fn with_metrics_auth_only_an_authorised_token_reads_metrics_and_probes_stay_open() {
        let fake = Arc::new(Fake(std::sync::atomic::AtomicUsize::new(0)));
        let state = ServerState {
            metrics_auth: Some(MetricsAuth::new(fake.clone())),
            ..ServerState::default()
        };
        state.readiness.set_ready();
        let server = Running::start(state).await;
        let with = |token: &'static str| {
            server
                .http
                .get(format!("http://{}/metrics", server.addr))
                .bearer_auth(token)
                .send()
        };
        assert_eq!(server.get("/metrics").await.status(), 401);
        assert_eq!(with("nobody").await.unwrap().status(), 401);
        assert_eq!(with("other").await.unwrap().status(), 403);
        let ok = with("good").await.unwrap();
        assert_eq!(ok.status(), 200);
        assert!(ok.text().await.unwrap().ends_with("# EOF\n"));
        assert_eq!(with("good").await.unwrap().status(), 200);
        assert_eq!(
            fake.0.load(Ordering::SeqCst),
            3,
            "a verdict is reused within its TTL"
        );
        assert_eq!(server.get("/livez").await.status(), 200);
        assert_eq!(server.get("/readyz").await.status(), 200);
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
