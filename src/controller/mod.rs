//! The controllers and what they share: the context, NCP clients built from issuer specs, and the
//! issuer-level errors.

pub mod certificate_request;
pub mod conditions;
pub mod issuer;
pub mod recovery;
pub mod subordinate;

use crate::api::IssuerSpec;
use crate::ncp::{self, CallObserver, ClientConfig, Credentials, NcpError};
use base64::Engine as _;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Field manager of every server-side apply we make.
pub const FIELD_MANAGER: &str = "ncp-pca-issuer";

/// Settings of the running controllers.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Namespace where `ClusterPrivateCA` credentials live.
    pub cluster_resource_namespace: String,
    /// How often a Ready issuer is checked again.
    pub issuer_recheck_interval: Duration,
    /// Timeout of one NCP request.
    pub ncp_request_timeout: Duration,
    /// How long a CertificateRequest may keep failing with retryable errors before it fails for good.
    pub max_retry_duration: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            cluster_resource_namespace: "cert-manager".into(),
            issuer_recheck_interval: Duration::from_secs(300),
            ncp_request_timeout: Duration::from_secs(30),
            max_retry_duration: Duration::from_secs(3600),
        }
    }
}

/// What every reconcile gets.
pub struct Context {
    /// The Kubernetes client.
    pub client: kube::Client,
    /// Settings.
    pub settings: Settings,
    /// NCP clients by endpoint, trust and credentials.
    pub ncp_clients: NcpClientCache,
    /// Events.
    pub recorder: kube::runtime::events::Recorder,
    /// Metrics.
    pub metrics: crate::metrics::Metrics,
    /// Intermediates of subordinate issuers.
    pub subordinates: subordinate::SignerCache,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Longest event note we publish (the API server refuses notes over 1 kB).
const MAX_EVENT_NOTE: usize = 1000;

impl Context {
    /// Publishes an event on `object` (Warning or Normal); a failure to publish is logged, never fatal.
    pub async fn publish(
        &self,
        object: &k8s_openapi::api::core::v1::ObjectReference,
        warning: bool,
        reason: &str,
        note: &str,
        action: &str,
    ) {
        let event = kube::runtime::events::Event {
            type_: if warning {
                kube::runtime::events::EventType::Warning
            } else {
                kube::runtime::events::EventType::Normal
            },
            reason: reason.to_string(),
            note: Some(truncate(note, MAX_EVENT_NOTE)),
            action: action.to_string(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, object).await {
            tracing::warn!(error = %e, kind = ?object.kind, namespace = ?object.namespace, name = ?object.name, reason, "cannot publish event");
        }
    }
}

/// `s` cut to at most `max` bytes on a character boundary, with an ellipsis when cut.
fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Why an issuer cannot be used; each knows its condition reason and whether a retry soon may help.
#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    /// The credentials Secret is missing.
    #[error("credentials secret {namespace}/{name} not found")]
    SecretNotFound {
        /// Namespace searched (the only one this issuer kind may read).
        namespace: String,
        /// Secret name.
        name: String,
    },
    /// A key is missing or empty in the credentials Secret.
    #[error("credentials secret {namespace}/{name} has no non-empty key {key:?}")]
    SecretKeyMissing {
        /// Namespace.
        namespace: String,
        /// Secret name.
        name: String,
        /// The missing key.
        key: String,
    },
    /// A key holds something that cannot be a credential (not UTF-8, or surrounded by whitespace only).
    #[error("credentials secret {namespace}/{name} key {key:?} is not valid text")]
    SecretKeyMalformed {
        /// Namespace.
        namespace: String,
        /// Secret name.
        name: String,
        /// The key.
        key: String,
    },
    /// `spec.caBundle` is not base64.
    #[error("spec.caBundle is not valid base64: {0}")]
    CaBundle(String),
    /// Reading the Secret failed.
    #[error("cannot read credentials secret {namespace}/{name}: {source}")]
    SecretRead {
        /// Namespace.
        namespace: String,
        /// Secret name.
        name: String,
        /// The cause.
        source: kube::Error,
    },
    /// The NCP call failed.
    #[error(transparent)]
    Ncp(#[from] NcpError),
}

impl IssuerError {
    /// The condition / event reason.
    #[must_use]
    pub fn reason(&self) -> &'static str {
        match self {
            Self::SecretNotFound { .. } => "CredentialsNotFound",
            Self::SecretKeyMissing { .. } | Self::SecretKeyMalformed { .. } => "CredentialsInvalid",
            Self::CaBundle(_) => "InvalidSpec",
            Self::SecretRead { .. } => "CredentialsUnreadable",
            Self::Ncp(e) if e.is_auth_failure() => "AuthenticationFailed",
            Self::Ncp(e) if e.is_ca_not_found() => "CANotFound",
            Self::Ncp(NcpError::InvalidRequest { .. }) => "InvalidSpec",
            Self::Ncp(
                NcpError::Connect { .. } | NcpError::Timeout { .. } | NcpError::Transport { .. },
            ) => "EndpointUnreachable",
            Self::Ncp(_) => "NcpError",
        }
    }

    /// Whether a retry soon may help (otherwise the issuer waits for a change or the periodic check).
    #[must_use]
    pub fn is_transient(&self) -> bool {
        match self {
            Self::SecretRead { .. } => true,
            Self::Ncp(e) => e.is_retryable(),
            _ => false,
        }
    }
}

/// NCP clients, cached so a reconcile does not rebuild TLS configuration and connection pools.
///
/// Each issuer (its owner id, see [`subordinate::owner_id`]) holds exactly one client; issuers whose
/// endpoint, trust, credentials and timeout are the same share it. A client is dropped, with its
/// connection pool, as soon as no issuer holds it: when its issuer asks with something different
/// (rotated credentials, a new endpoint), and when its issuer is deleted ([`NcpClientCache::remove`],
/// [`NcpClientCache::retain`]).
#[derive(Default)]
pub struct NcpClientCache {
    clients: Mutex<Clients>,
    observer: Option<Arc<dyn CallObserver>>,
}

/// The cache's maps: which digest each issuer holds, and each digest's client and holder count.
#[derive(Default)]
struct Clients {
    by_owner: HashMap<String, [u8; 32]>,
    by_digest: HashMap<[u8; 32], (ncp::Client, usize)>,
}

impl Clients {
    /// `owner` lets go of its client; the client goes when nobody holds it.
    fn release(&mut self, owner: &str) -> bool {
        let Some(digest) = self.by_owner.remove(owner) else {
            return false;
        };
        if let Some((_, holders)) = self.by_digest.get_mut(&digest) {
            *holders -= 1;
            if *holders == 0 {
                self.by_digest.remove(&digest);
            }
        }
        true
    }
}

impl std::fmt::Debug for NcpClientCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NcpClientCache")
            .field("clients", &self.len())
            .finish_non_exhaustive()
    }
}

impl NcpClientCache {
    /// A cache whose clients report calls to `observer`.
    #[must_use]
    pub fn with_observer(observer: Option<Arc<dyn CallObserver>>) -> Self {
        Self {
            clients: Mutex::default(),
            observer,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Clients> {
        self.clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The client of issuer `owner` (its [`subordinate::owner_id`]) for its spec and credentials;
    /// the client it held before is let go when these differ.
    ///
    /// # Errors
    /// When `caBundle` is not base64 or the endpoint is unusable.
    pub fn get(
        &self,
        owner: &str,
        spec: &IssuerSpec,
        credentials: &Credentials,
        request_timeout: Duration,
    ) -> Result<ncp::Client, IssuerError> {
        let endpoint = spec
            .endpoint
            .clone()
            .unwrap_or_else(|| ncp::PUBLIC_ENDPOINT.to_string());
        let bundle = match &spec.ca_bundle {
            Some(b64) if !b64.trim().is_empty() => Some(
                base64::engine::general_purpose::STANDARD
                    .decode(b64.trim())
                    .map_err(|e| IssuerError::CaBundle(e.to_string()))?,
            ),
            _ => None,
        };
        // The digest covers everything that shapes the client, secrets included, so a rotated key
        // gets a new client; only the digest is kept.
        let mut h = Sha256::new();
        for part in [
            endpoint.as_bytes(),
            bundle.as_deref().unwrap_or_default(),
            credentials.access_key.as_bytes(),
            credentials.secret_key.expose().as_bytes(),
            &request_timeout.as_millis().to_le_bytes(),
        ] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part);
        }
        let digest: [u8; 32] = h.finalize().into();
        let mut clients = self.lock();
        if clients.by_owner.get(owner) == Some(&digest)
            && let Some((client, _)) = clients.by_digest.get(&digest)
        {
            return Ok(client.clone());
        }
        let client = match clients.by_digest.get(&digest) {
            Some((client, _)) => client.clone(),
            None => {
                let mut config = ClientConfig::new(credentials.clone()).with_endpoint(endpoint);
                config.ca_bundle_pem = bundle;
                config.request_timeout = request_timeout;
                let mut client = ncp::Client::new(config)?;
                if let Some(observer) = &self.observer {
                    client = client.with_observer(observer.clone());
                }
                client
            }
        };
        clients.release(owner);
        clients
            .by_digest
            .entry(digest)
            .or_insert_with(|| (client.clone(), 0))
            .1 += 1;
        clients.by_owner.insert(owner.to_string(), digest);
        Ok(client)
    }

    /// Forgets the client of a deleted issuer; true if it held one.
    pub fn remove(&self, owner: &str) -> bool {
        self.lock().release(owner)
    }

    /// Forgets the clients of every issuer for which `keep(owner)` is false (after a re-list, for
    /// issuers deleted while the watch was down); returns how many issuers were forgotten.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) -> usize {
        let mut clients = self.lock();
        let gone: Vec<String> = clients
            .by_owner
            .keys()
            .filter(|owner| !keep(owner))
            .cloned()
            .collect();
        for owner in &gone {
            clients.release(owner);
        }
        gone.len()
    }

    /// How many distinct clients are cached.
    #[must_use]
    pub fn len(&self) -> usize {
        self.lock().by_digest.len()
    }

    /// Whether no client is cached.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Reads the access key and secret key from the issuer's credentials Secret, in `namespace` only.
///
/// # Errors
/// When the Secret or a key is missing or unusable.
pub async fn read_credentials(
    client: &kube::Client,
    namespace: &str,
    spec: &IssuerSpec,
) -> Result<Credentials, IssuerError> {
    let secret_ref = &spec.credentials.secret_ref;
    let name = secret_ref.name.clone();
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = api
        .get_opt(&name)
        .await
        .map_err(|source| IssuerError::SecretRead {
            namespace: namespace.to_string(),
            name: name.clone(),
            source,
        })?
        .ok_or_else(|| IssuerError::SecretNotFound {
            namespace: namespace.to_string(),
            name: name.clone(),
        })?;
    let value = |key: &str| -> Result<String, IssuerError> {
        let bytes = secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|b| b.0.clone())
            .or_else(|| {
                secret
                    .string_data
                    .as_ref()
                    .and_then(|d| d.get(key))
                    .map(|s| s.clone().into_bytes())
            })
            .filter(|b| !b.is_empty())
            .ok_or_else(|| IssuerError::SecretKeyMissing {
                namespace: namespace.to_string(),
                name: name.clone(),
                key: key.to_string(),
            })?;
        let text = String::from_utf8(bytes).map_err(|_| IssuerError::SecretKeyMalformed {
            namespace: namespace.to_string(),
            name: name.clone(),
            key: key.to_string(),
        })?;
        // Tolerate a trailing newline from `echo … | kubectl create secret`; refuse blank values.
        let trimmed = text.trim().to_string();
        if trimmed.is_empty() || trimmed.contains(char::is_whitespace) {
            return Err(IssuerError::SecretKeyMalformed {
                namespace: namespace.to_string(),
                name: name.clone(),
                key: key.to_string(),
            });
        }
        Ok(trimmed)
    };
    Ok(Credentials::new(
        value(secret_ref.access_key_key())?,
        value(secret_ref.secret_key_key())?,
    ))
}

/// Builds the shared context; NCP calls are reported to `metrics`.
#[must_use]
pub fn context(
    client: kube::Client,
    settings: Settings,
    metrics: crate::metrics::Metrics,
    instance: Option<String>,
) -> Arc<Context> {
    let reporter = kube::runtime::events::Reporter {
        controller: "ncp-pca-issuer".into(),
        instance,
    };
    let observer: Arc<dyn CallObserver> = Arc::new(metrics.clone());
    Arc::new(Context {
        recorder: kube::runtime::events::Recorder::new(client.clone(), reporter),
        client,
        settings,
        ncp_clients: NcpClientCache::with_observer(Some(observer)),
        metrics,
        subordinates: subordinate::SignerCache::default(),
    })
}

/// Runs the PrivateCA, ClusterPrivateCA and CertificateRequest controllers on the shared `watches`
/// until `term` is cancelled (shutdown, or the end of a leadership term), and forgets the metrics and
/// NCP clients of deleted issuers meanwhile.
pub async fn run_all(
    ctx: Arc<Context>,
    watches: &crate::watches::Watches,
    concurrency: u16,
    term: tokio_util::sync::CancellationToken,
) {
    tokio::join!(
        issuer::run::<crate::api::PrivateCA>(
            ctx.clone(),
            &watches.private_cas,
            &watches.secrets,
            term.clone()
        ),
        issuer::run::<crate::api::ClusterPrivateCA>(
            ctx.clone(),
            &watches.cluster_private_cas,
            &watches.secrets,
            term.clone()
        ),
        certificate_request::run(ctx.clone(), concurrency, watches, term.clone()),
        forget_deleted_issuers(&ctx, watches, term),
    );
}

/// Whenever issuers may have been deleted, drops the `issuer_ready` series and NCP clients of those
/// no longer in the stores.
async fn forget_deleted_issuers(
    ctx: &Context,
    watches: &crate::watches::Watches,
    term: tokio_util::sync::CancellationToken,
) {
    use crate::api::{ClusterPrivateCA, IssuerResource as _, PrivateCA};
    use futures::StreamExt as _;
    use kube::runtime::reflector::ObjectRef;
    let removals = futures::stream::select(
        watches.private_cas.removals(),
        watches.cluster_private_cas.removals(),
    );
    let mut removals = std::pin::pin!(removals.take_until(term.cancelled_owned()));
    let (private_cas, cluster_private_cas) = (
        watches.private_cas.store(),
        watches.cluster_private_cas.store(),
    );
    while removals.next().await.is_some() {
        let series = ctx.metrics.retain_issuers(PrivateCA::KIND, |ns, name| {
            private_cas.get(&ObjectRef::new(name).within(ns)).is_some()
        }) + ctx
            .metrics
            .retain_issuers(ClusterPrivateCA::KIND, |_, name| {
                cluster_private_cas.get(&ObjectRef::new(name)).is_some()
            });
        let live: std::collections::HashSet<String> = private_cas
            .state()
            .iter()
            .map(|i| issuer_owner(&**i))
            .chain(
                cluster_private_cas
                    .state()
                    .iter()
                    .map(|i| issuer_owner(&**i)),
            )
            .collect();
        let clients = ctx.ncp_clients.retain(|owner| live.contains(owner));
        if series + clients > 0 {
            tracing::debug!(series, clients, "forgot deleted issuers");
        }
    }
}

/// The owner id of an issuer: how the client cache and subordinate Secrets name it.
#[must_use]
pub fn issuer_owner<K: crate::api::IssuerResource>(issuer: &K) -> String {
    subordinate::owner_id(
        K::KIND,
        issuer.meta().namespace.as_deref(),
        &kube::ResourceExt::name_any(issuer),
    )
}

#[cfg(test)]
mod client_cache_tests {
    use super::*;

    fn spec(endpoint: &str) -> IssuerSpec {
        serde_json::from_value(serde_json::json!({
            "caTag": "tag",
            "endpoint": endpoint,
            "credentials": {"secretRef": {"name": "creds"}}
        }))
        .expect("issuer spec")
    }

    const TIMEOUT: Duration = Duration::from_secs(5);

    #[test]
    fn an_issuer_keeps_one_client_and_rotated_credentials_replace_it() {
        let cache = NcpClientCache::default();
        let first = spec("http://127.0.0.1:1");
        let old = Credentials::new("ak", "sk-1");
        cache.get("PrivateCA/a/x", &first, &old, TIMEOUT).unwrap();
        cache.get("PrivateCA/a/x", &first, &old, TIMEOUT).unwrap();
        assert_eq!(cache.len(), 1);
        cache
            .get(
                "PrivateCA/a/x",
                &first,
                &Credentials::new("ak", "sk-2"),
                TIMEOUT,
            )
            .unwrap();
        assert_eq!(cache.len(), 1, "the old client went with the rotation");
        cache
            .get("PrivateCA/a/x", &spec("http://127.0.0.1:2"), &old, TIMEOUT)
            .unwrap();
        assert_eq!(cache.len(), 1, "a new endpoint replaces the client too");
    }

    #[test]
    fn issuers_with_the_same_settings_share_a_client_until_the_last_is_removed() {
        let cache = NcpClientCache::default();
        let spec = spec("http://127.0.0.1:1");
        let creds = Credentials::new("ak", "sk");
        cache.get("PrivateCA/a/x", &spec, &creds, TIMEOUT).unwrap();
        cache
            .get("ClusterPrivateCA/y", &spec, &creds, TIMEOUT)
            .unwrap();
        assert_eq!(cache.len(), 1);
        assert!(cache.remove("PrivateCA/a/x"));
        assert!(!cache.remove("PrivateCA/a/x"));
        assert_eq!(cache.len(), 1, "still held by the other issuer");
        assert!(cache.remove("ClusterPrivateCA/y"));
        assert!(cache.is_empty());
    }

    #[test]
    fn retain_forgets_the_clients_of_issuers_that_are_gone() {
        let cache = NcpClientCache::default();
        let creds = Credentials::new("ak", "sk");
        cache
            .get(
                "PrivateCA/a/x",
                &spec("http://127.0.0.1:1"),
                &creds,
                TIMEOUT,
            )
            .unwrap();
        cache
            .get(
                "PrivateCA/a/y",
                &spec("http://127.0.0.1:2"),
                &creds,
                TIMEOUT,
            )
            .unwrap();
        assert_eq!(cache.retain(|owner| owner == "PrivateCA/a/y"), 1);
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.retain(|_| false), 1);
        assert!(cache.is_empty());
    }

    #[test]
    fn a_bad_ca_bundle_is_an_error_and_leaves_the_held_client_alone() {
        let cache = NcpClientCache::default();
        let creds = Credentials::new("ak", "sk");
        let good = spec("http://127.0.0.1:1");
        cache.get("PrivateCA/a/x", &good, &creds, TIMEOUT).unwrap();
        let mut bad = good.clone();
        bad.ca_bundle = Some("not base64!".into());
        assert!(matches!(
            cache.get("PrivateCA/a/x", &bad, &creds, TIMEOUT),
            Err(IssuerError::CaBundle(_))
        ));
        assert_eq!(cache.len(), 1);
    }
}
