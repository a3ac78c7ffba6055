//! What every reconcile gets: the Kubernetes client, the settings, the NCP clients, the event
//! recorder, the metrics and the intermediates of subordinate issuers.

use super::clients::NcpClientCache;
use super::events;
use super::signers::SignerCache;
use crate::ncp::CallObserver;
use std::sync::Arc;
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
    pub subordinates: SignerCache,
    /// Certificates recently read by recovery searches, per NCP CA.
    pub recovery: super::recovery::RecoveryIndex,
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
        subordinates: SignerCache::default(),
        recovery: super::recovery::RecoveryIndex::default(),
    })
}
