//! What every reconcile gets: the Kubernetes client, the settings, the NCP clients, the event
//! recorder, the metrics and the intermediates of subordinate issuers.

use super::clients::NcpClientCache;
use super::events;
use super::fairness::Fairness;
use super::signers::SignerCache;
use crate::ncp::CallObserver;
use std::sync::Arc;
use std::time::Duration;

/// NCP's limit of issuances per CA (the default of `--signing-limit`).
pub const NCP_SIGNING_LIMIT: i64 = 30_000;

/// Field manager of every server-side apply we make.
pub const FIELD_MANAGER: &str = "ncp-pca-issuer";

/// Default CertificateRequest workers (`--concurrency`): with the fairness bounds no issuer holds
/// more than its share, so this can be larger than the 8 it was before them.
pub const DEFAULT_WORKERS: u16 = 16;
/// Default tolerance of a certificate whose validity starts in the future (`--clock-skew-tolerance-seconds`).
pub const DEFAULT_CLOCK_SKEW_TOLERANCE: Duration = Duration::from_secs(300);

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
    /// NCP's cap of issuances per CA (the `Headroom` condition and the remaining-issuances gauge).
    pub signing_limit: i64,
    /// How long before the CA's or the intermediate's expiry `Headroom` warns.
    pub expiry_warning: Duration,
    /// Largest NCP answer body read (longer ones are cut off while read).
    pub ncp_max_answer_bytes: usize,
    /// CertificateRequest workers (the controller's concurrency); the fairness bounds are shares of it.
    pub workers: u16,
    /// Share of the workers one issuer may hold with NCP calls, in percent.
    pub issuer_share_percent: u8,
    /// Share of the workers the issuers of one user-set endpoint may hold, in percent.
    pub endpoint_share_percent: u8,
    /// How far in the future an issued certificate's validity may start (NCP's clock ahead of ours)
    /// and still be accepted as issued; beyond it the request retries.
    pub clock_skew_tolerance: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            cluster_resource_namespace: "cert-manager".into(),
            issuer_recheck_interval: Duration::from_secs(300),
            ncp_request_timeout: Duration::from_secs(30),
            max_retry_duration: Duration::from_secs(3600),
            signing_limit: NCP_SIGNING_LIMIT,
            expiry_warning: Duration::from_secs(30 * 86_400),
            ncp_max_answer_bytes: crate::ncp::client::DEFAULT_MAX_ANSWER_BYTES,
            workers: DEFAULT_WORKERS,
            issuer_share_percent: super::fairness::DEFAULT_ISSUER_SHARE_PERCENT,
            endpoint_share_percent: super::fairness::DEFAULT_ENDPOINT_SHARE_PERCENT,
            clock_skew_tolerance: DEFAULT_CLOCK_SKEW_TOLERANCE,
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
    /// Bounds on the NCP calls in flight per issuer and per endpoint.
    pub fairness: Fairness,
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
        ncp_clients: NcpClientCache::with_observer(Some(observer))
            .with_max_answer_bytes(settings.ncp_max_answer_bytes),
        fairness: Fairness::new(
            settings.workers,
            settings.issuer_share_percent,
            settings.endpoint_share_percent,
        ),
        metrics,
        subordinates: SignerCache::default(),
        recovery: super::recovery::RecoveryIndex::default(),
        settings,
    })
}
