//! The controllers and what they share: the context, NCP clients built from issuer specs, and the
//! issuer-level errors.

pub mod certificate_request;
pub mod conditions;
pub mod delays;
pub mod events;
pub mod failure;
pub mod issuer;
pub mod period;
pub mod recovery;
pub mod subordinate;

use crate::api::IssuerSpec;
use crate::ncp::{self, CallObserver, ClientConfig, Credentials, NcpError};
use crate::reason::Reason;
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

impl Context {
    /// Publishes `note` on `object`; a failure to publish is logged, never fatal.
    pub async fn publish(
        &self,
        object: &k8s_openapi::api::core::v1::ObjectReference,
        note: events::Note,
    ) {
        let event = kube::runtime::events::Event {
            type_: note.type_,
            reason: note.reason.as_str().to_string(),
            note: Some(events::truncate(&note.text, events::MAX_EVENT_NOTE)),
            action: note.action.as_str().to_string(),
            secondary: note.related,
        };
        if let Err(e) = self.recorder.publish(&event, object).await {
            tracing::warn!(error = %e, kind = ?object.kind, namespace = ?object.namespace, name = ?object.name, reason = %note.reason, "cannot publish event");
        }
    }
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
    pub fn reason(&self) -> Reason {
        match self {
            Self::SecretNotFound { .. } => Reason::CredentialsNotFound,
            Self::SecretKeyMissing { .. } | Self::SecretKeyMalformed { .. } => {
                Reason::CredentialsInvalid
            }
            Self::CaBundle(_) | Self::Ncp(NcpError::InvalidRequest { .. }) => Reason::InvalidSpec,
            Self::SecretRead { .. } => Reason::CredentialsUnreadable,
            Self::Ncp(e) if e.is_auth_failure() => Reason::AuthenticationFailed,
            Self::Ncp(e) if e.is_ca_not_found() => Reason::CANotFound,
            Self::Ncp(
                NcpError::Connect { .. } | NcpError::Timeout { .. } | NcpError::Transport { .. },
            ) => Reason::EndpointUnreachable,
            Self::Ncp(_) => Reason::NcpError,
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
#[derive(Default)]
pub struct NcpClientCache {
    clients: Mutex<HashMap<[u8; 32], ncp::Client>>,
    observer: Option<Arc<dyn CallObserver>>,
}

impl std::fmt::Debug for NcpClientCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NcpClientCache").finish_non_exhaustive()
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

    /// The client for an issuer spec and its credentials.
    ///
    /// # Errors
    /// When `caBundle` is not base64 or the endpoint is unusable.
    pub fn get(
        &self,
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
        // The key hashes everything that shapes the client, secrets included, so a rotated key gets a
        // new client; only the digest is kept.
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
        let key: [u8; 32] = h.finalize().into();
        let mut clients = self
            .clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(client) = clients.get(&key) {
            return Ok(client.clone());
        }
        let mut config = ClientConfig::new(credentials.clone()).with_endpoint(endpoint);
        config.ca_bundle_pem = bundle;
        config.request_timeout = request_timeout;
        let mut client = ncp::Client::new(config)?;
        if let Some(observer) = &self.observer {
            client = client.with_observer(observer.clone());
        }
        clients.insert(key, client.clone());
        Ok(client)
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

/// Runs the PrivateCA, ClusterPrivateCA and CertificateRequest controllers until `shutdown` resolves.
pub async fn run_all(
    ctx: Arc<Context>,
    concurrency: u16,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let (tx, rx) = tokio::sync::watch::channel(false);
    let signal = move || {
        let mut rx = rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };
    let stopper = async move {
        shutdown.await;
        let _ = tx.send(true);
    };
    tokio::join!(
        stopper,
        issuer::run::<crate::api::PrivateCA>(ctx.clone(), signal()),
        issuer::run::<crate::api::ClusterPrivateCA>(ctx.clone(), signal()),
        certificate_request::run(ctx, concurrency, signal()),
    );
}
