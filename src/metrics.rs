//! Prometheus metrics (`OpenMetrics` text on `/metrics`): NCP calls, certificates, reconciles, issuer
//! readiness and leadership. Every name starts with [`PREFIX`] and an underscore.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `ncp_pca_issuer_ncp_requests_total` | counter | `operation`, `outcome` (`success` or the error's reason) |
//! | `ncp_pca_issuer_ncp_request_duration_seconds` | histogram | `operation` |
//! | `ncp_pca_issuer_certificates_issued_total` | counter | `issuer_kind` |
//! | `ncp_pca_issuer_certificates_failed_total` | counter | `issuer_kind`, `reason` |
//! | `ncp_pca_issuer_certificates_revoked_total` | counter | `issuer_kind` |
//! | `ncp_pca_issuer_reconcile_total` | counter | `controller`, `result` |
//! | `ncp_pca_issuer_reconcile_duration_seconds` | histogram | `controller` |
//! | `ncp_pca_issuer_issuer_ready` | gauge (1/0) | `kind`, `namespace` (empty for cluster-scoped), `name` |
//! | `ncp_pca_issuer_leader` | gauge (1/0) | |

use crate::ncp::{CallObserver, Operation};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tracing::error;

/// The prefix of every metric name (followed by `_`).
pub const PREFIX: &str = "ncp_pca_issuer";

/// The content type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Bucket bounds, in seconds, of the NCP request histogram (NCP answers in tens to hundreds of ms;
/// the client's timeouts are tens of seconds).
const NCP_DURATION_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Bucket bounds, in seconds, of the reconcile histogram (a reconcile may include NCP calls).
const RECONCILE_DURATION_BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NcpCallLabels {
    operation: &'static str,
    outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IssuerKindLabels {
    issuer_kind: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailedLabels {
    issuer_kind: String,
    reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReconcileLabels {
    controller: String,
    result: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ControllerLabels {
    controller: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IssuerLabels {
    kind: String,
    namespace: String,
    name: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn ncp_histogram() -> Histogram {
    Histogram::new(NCP_DURATION_BUCKETS)
}

fn reconcile_histogram() -> Histogram {
    Histogram::new(RECONCILE_DURATION_BUCKETS)
}

#[derive(Debug)]
struct Inner {
    registry: Registry,
    ncp_requests: Family<NcpCallLabels, Counter>,
    ncp_duration: HistogramFamily<OperationLabels>,
    issued: Family<IssuerKindLabels, Counter>,
    failed: Family<FailedLabels, Counter>,
    revoked: Family<IssuerKindLabels, Counter>,
    reconciles: Family<ReconcileLabels, Counter>,
    reconcile_duration: HistogramFamily<ControllerLabels>,
    issuer_ready: Family<IssuerLabels, Gauge>,
    /// The issuers that have an `issuer_ready` series (a `Family` cannot be listed), for
    /// [`Metrics::retain_issuers`].
    issuers: Mutex<HashSet<IssuerLabels>>,
    leader: Gauge,
}

/// The operator's metrics and their registry. Cheap to clone: clones share the same metrics.
#[derive(Debug, Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered under [`PREFIX`] (`leader` starts at 0).
    #[must_use]
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix(PREFIX);
        let ncp_requests = Family::<NcpCallLabels, Counter>::default();
        registry.register(
            "ncp_requests",
            "NCP Private CA HTTP calls, by operation and outcome",
            ncp_requests.clone(),
        );
        let ncp_duration: HistogramFamily<OperationLabels> =
            Family::new_with_constructor(ncp_histogram);
        registry.register_with_unit(
            "ncp_request_duration",
            "Latency of NCP Private CA HTTP calls",
            Unit::Seconds,
            ncp_duration.clone(),
        );
        let issued = Family::<IssuerKindLabels, Counter>::default();
        registry.register(
            "certificates_issued",
            "Certificates issued for CertificateRequests",
            issued.clone(),
        );
        let failed = Family::<FailedLabels, Counter>::default();
        registry.register(
            "certificates_failed",
            "CertificateRequests that ended Failed, by reason",
            failed.clone(),
        );
        let revoked = Family::<IssuerKindLabels, Counter>::default();
        registry.register(
            "certificates_revoked",
            "Certificates revoked on deletion",
            revoked.clone(),
        );
        let reconciles = Family::<ReconcileLabels, Counter>::default();
        registry.register(
            "reconcile",
            "Reconciliations, by controller and result",
            reconciles.clone(),
        );
        let reconcile_duration: HistogramFamily<ControllerLabels> =
            Family::new_with_constructor(reconcile_histogram);
        registry.register_with_unit(
            "reconcile_duration",
            "Duration of reconciliations",
            Unit::Seconds,
            reconcile_duration.clone(),
        );
        let issuer_ready = Family::<IssuerLabels, Gauge>::default();
        registry.register(
            "issuer_ready",
            "Whether an issuer is Ready (1) or not (0)",
            issuer_ready.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "Whether this replica is the leader (1) or not (0)",
            leader.clone(),
        );
        Self {
            inner: Arc::new(Inner {
                registry,
                ncp_requests,
                ncp_duration,
                issued,
                failed,
                revoked,
                reconciles,
                reconcile_duration,
                issuer_ready,
                issuers: Mutex::default(),
                leader,
            }),
        }
    }

    /// Counts one NCP HTTP call and records its latency.
    pub fn observe_ncp_call(&self, op: Operation, outcome: &str, elapsed: Duration) {
        self.inner
            .ncp_requests
            .get_or_create(&NcpCallLabels {
                operation: op.name(),
                outcome: outcome.to_string(),
            })
            .inc();
        self.inner
            .ncp_duration
            .get_or_create(&OperationLabels {
                operation: op.name(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Counts a certificate issued through an issuer of `issuer_kind` (`PrivateCA` or
    /// `ClusterPrivateCA`).
    pub fn certificate_issued(&self, issuer_kind: &str) {
        self.inner
            .issued
            .get_or_create(&IssuerKindLabels {
                issuer_kind: issuer_kind.to_string(),
            })
            .inc();
    }

    /// Counts a `CertificateRequest` that ended Failed, with its condition `reason` (a bounded set
    /// of `PascalCase` reasons, never a free-form message).
    pub fn certificate_failed(&self, issuer_kind: &str, reason: &str) {
        self.inner
            .failed
            .get_or_create(&FailedLabels {
                issuer_kind: issuer_kind.to_string(),
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Counts a certificate revoked on deletion.
    pub fn certificate_revoked(&self, issuer_kind: &str) {
        self.inner
            .revoked
            .get_or_create(&IssuerKindLabels {
                issuer_kind: issuer_kind.to_string(),
            })
            .inc();
    }

    /// Counts one reconciliation of `controller` ending in `result` (`ok` or `error`) and records
    /// how long it took.
    pub fn observe_reconcile(&self, controller: &str, result: &str, elapsed: Duration) {
        self.inner
            .reconciles
            .get_or_create(&ReconcileLabels {
                controller: controller.to_string(),
                result: result.to_string(),
            })
            .inc();
        self.inner
            .reconcile_duration
            .get_or_create(&ControllerLabels {
                controller: controller.to_string(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Sets whether the issuer `kind` `namespace/name` is Ready (`namespace` empty for a
    /// `ClusterPrivateCA`).
    pub fn set_issuer_ready(&self, kind: &str, namespace: &str, name: &str, ready: bool) {
        let labels = issuer_labels(kind, namespace, name);
        let mut issuers = self.issuers();
        self.inner
            .issuer_ready
            .get_or_create(&labels)
            .set(i64::from(ready));
        issuers.insert(labels);
    }

    /// Drops the series of a deleted issuer (its `issuer_ready` gauge); true if it existed.
    pub fn remove_issuer(&self, kind: &str, namespace: &str, name: &str) -> bool {
        let labels = issuer_labels(kind, namespace, name);
        let mut issuers = self.issuers();
        issuers.remove(&labels);
        self.inner.issuer_ready.remove(&labels)
    }

    /// Drops the series of every issuer of `kind` for which `keep(namespace, name)` is false (after
    /// a re-list, for issuers deleted while the watch was down); returns how many were dropped.
    pub fn retain_issuers(&self, kind: &str, keep: impl Fn(&str, &str) -> bool) -> usize {
        let mut issuers = self.issuers();
        let gone: Vec<IssuerLabels> = issuers
            .iter()
            .filter(|l| l.kind == kind && !keep(&l.namespace, &l.name))
            .cloned()
            .collect();
        for labels in &gone {
            issuers.remove(labels);
            self.inner.issuer_ready.remove(labels);
        }
        gone.len()
    }

    /// The issuer set, locked; held across the matching `Family` update so the two agree.
    fn issuers(&self) -> std::sync::MutexGuard<'_, HashSet<IssuerLabels>> {
        self.inner
            .issuers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Sets whether this replica is the leader.
    pub fn set_leader(&self, leader: bool) {
        self.inner.leader.set(i64::from(leader));
    }

    /// Every metric as `OpenMetrics` text (ending in `# EOF`), served with [`CONTENT_TYPE`].
    #[must_use]
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail and our metrics encode infallibly; should that ever
        // change, say so rather than serve a silently truncated page.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.inner.registry) {
            error!(error = %e, "cannot encode metrics");
        }
        out
    }
}

fn issuer_labels(kind: &str, namespace: &str, name: &str) -> IssuerLabels {
    IssuerLabels {
        kind: kind.to_string(),
        namespace: namespace.to_string(),
        name: name.to_string(),
    }
}

impl CallObserver for Metrics {
    fn observe(&self, op: Operation, outcome: &str, elapsed: Duration) {
        self.observe_ncp_call(op, outcome, elapsed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line_value(text: &str, prefix: &str) -> Option<String> {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .map(str::to_string)
    }

    #[test]
    fn ncp_calls_are_counted_by_operation_and_outcome_with_latency() {
        let m = Metrics::new();
        let observer: Arc<dyn CallObserver> = Arc::new(m.clone());
        observer.observe(Operation::SignEndCsr, "success", Duration::from_millis(40));
        observer.observe(Operation::SignEndCsr, "success", Duration::from_millis(60));
        observer.observe(Operation::GetCa, "NcpThrottled", Duration::from_millis(5));
        let text = m.encode();
        assert_eq!(
            line_value(
                &text,
                r#"ncp_pca_issuer_ncp_requests_total{operation="sign_end_csr",outcome="success"}"#
            )
            .as_deref(),
            Some("2")
        );
        assert_eq!(
            line_value(
                &text,
                r#"ncp_pca_issuer_ncp_requests_total{operation="get_ca",outcome="NcpThrottled"}"#
            )
            .as_deref(),
            Some("1")
        );
        assert_eq!(
            line_value(
                &text,
                r#"ncp_pca_issuer_ncp_request_duration_seconds_count{operation="sign_end_csr"}"#
            )
            .as_deref(),
            Some("2")
        );
        assert_eq!(
            line_value(
                &text,
                r#"ncp_pca_issuer_ncp_request_duration_seconds_bucket{le="0.05",operation="sign_end_csr"}"#
            )
            .as_deref(),
            Some("1")
        );
        assert!(text.contains("# TYPE ncp_pca_issuer_ncp_request_duration_seconds histogram"));
        assert!(text.contains("# UNIT ncp_pca_issuer_ncp_request_duration_seconds seconds"));
    }

    #[test]
    fn certificate_and_reconcile_outcomes_are_counted() {
        let m = Metrics::new();
        m.certificate_issued("ClusterPrivateCA");
        m.certificate_issued("ClusterPrivateCA");
        m.certificate_failed("PrivateCA", "UnsupportedKey");
        m.certificate_revoked("PrivateCA");
        m.observe_reconcile("certificaterequest", "success", Duration::from_millis(3));
        let text = m.encode();
        for (series, value) in [
            (
                r#"ncp_pca_issuer_certificates_issued_total{issuer_kind="ClusterPrivateCA"}"#,
                "2",
            ),
            (
                r#"ncp_pca_issuer_certificates_failed_total{issuer_kind="PrivateCA",reason="UnsupportedKey"}"#,
                "1",
            ),
            (
                r#"ncp_pca_issuer_certificates_revoked_total{issuer_kind="PrivateCA"}"#,
                "1",
            ),
            (
                r#"ncp_pca_issuer_reconcile_total{controller="certificaterequest",result="success"}"#,
                "1",
            ),
            (
                r#"ncp_pca_issuer_reconcile_duration_seconds_count{controller="certificaterequest"}"#,
                "1",
            ),
        ] {
            assert_eq!(
                line_value(&text, series).as_deref(),
                Some(value),
                "{series} in\n{text}"
            );
        }
    }

    #[test]
    fn issuer_readiness_is_a_gauge_that_disappears_when_the_issuer_is_removed() {
        let m = Metrics::new();
        let series =
            r#"ncp_pca_issuer_issuer_ready{kind="PrivateCA",namespace="team-a",name="ca"}"#;
        m.set_issuer_ready("PrivateCA", "team-a", "ca", true);
        assert_eq!(line_value(&m.encode(), series).as_deref(), Some("1"));
        m.set_issuer_ready("PrivateCA", "team-a", "ca", false);
        assert_eq!(line_value(&m.encode(), series).as_deref(), Some("0"));
        assert!(m.remove_issuer("PrivateCA", "team-a", "ca"));
        assert_eq!(line_value(&m.encode(), series), None);
        assert!(!m.remove_issuer("PrivateCA", "team-a", "ca"));
    }

    #[test]
    fn retain_issuers_drops_only_the_unkept_issuers_of_that_kind() {
        let m = Metrics::new();
        m.set_issuer_ready("PrivateCA", "a", "kept", true);
        m.set_issuer_ready("PrivateCA", "a", "gone", true);
        m.set_issuer_ready("ClusterPrivateCA", "", "gone", false);
        assert_eq!(
            m.retain_issuers("PrivateCA", |ns, name| ns == "a" && name == "kept"),
            1
        );
        let text = m.encode();
        assert!(
            text.contains(
                r#"ncp_pca_issuer_issuer_ready{kind="PrivateCA",namespace="a",name="kept"} 1"#
            ),
            "{text}"
        );
        assert!(!text.contains(r#"name="gone"} 1"#), "{text}");
        assert!(
            text.contains(
                r#"ncp_pca_issuer_issuer_ready{kind="ClusterPrivateCA",namespace="",name="gone"} 0"#
            ),
            "{text}"
        );
        // A removed issuer is no longer known, so it is not counted twice.
        assert_eq!(m.retain_issuers("PrivateCA", |_, _| false), 1);
        assert_eq!(m.retain_issuers("PrivateCA", |_, _| false), 0);
    }

    #[test]
    fn every_metric_name_carries_the_prefix() {
        let m = Metrics::new();
        m.observe_ncp_call(Operation::GetCa, "success", Duration::from_millis(1));
        m.certificate_issued("PrivateCA");
        m.certificate_failed("PrivateCA", "Denied");
        m.certificate_revoked("PrivateCA");
        m.observe_reconcile("PrivateCA", "ok", Duration::from_millis(1));
        m.set_issuer_ready("PrivateCA", "a", "b", true);
        let text = m.encode();
        let mut families = 0;
        for line in text.lines().filter(|l| !l.is_empty() && *l != "# EOF") {
            let name = line
                .strip_prefix("# TYPE ")
                .or_else(|| line.strip_prefix("# HELP "))
                .or_else(|| line.strip_prefix("# UNIT "))
                .unwrap_or(line);
            families += usize::from(line.starts_with("# TYPE "));
            assert!(name.starts_with("ncp_pca_issuer_"), "{line}");
        }
        assert_eq!(families, 9, "{text}");
    }

    #[test]
    fn the_leader_gauge_starts_at_zero_and_follows_leadership() {
        let m = Metrics::new();
        assert_eq!(
            line_value(&m.encode(), "ncp_pca_issuer_leader ").as_deref(),
            Some("0")
        );
        m.set_leader(true);
        assert_eq!(
            line_value(&m.encode(), "ncp_pca_issuer_leader ").as_deref(),
            Some("1")
        );
    }

    #[test]
    fn clones_share_one_registry_and_the_text_is_openmetrics() {
        let m = Metrics::new();
        #[allow(clippy::redundant_clone)] // the point: a clone writes to the same registry
        m.clone().certificate_issued("PrivateCA");
        let text = m.encode();
        assert!(
            text.contains(r#"ncp_pca_issuer_certificates_issued_total{issuer_kind="PrivateCA"} 1"#)
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
