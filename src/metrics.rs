//! Prometheus metrics (`OpenMetrics` text on `/metrics`): NCP calls, certificates, reconciles, issuer
//! readiness, the CAs' and intermediates' remaining capacity and lifetime, leadership, the build and
//! the process. Every name starts with [`PREFIX`] and an underscore; the issuer kind is always the
//! `issuer_kind` label. Families whose label values are known in advance (issuer kinds, NCP operations,
//! failure reasons, controllers) are exported with zero values from the start, so queries need no
//! `or vector(0)`; per-issuer series appear with the issuer's first check and go with the issuer.
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
//! | `ncp_pca_issuer_issuer_ready` | gauge (1/0) | `issuer_kind`, `namespace` (empty for cluster-scoped), `name` |
//! | `ncp_pca_issuer_ca_not_after_timestamp_seconds` | gauge | same as `issuer_ready` |
//! | `ncp_pca_issuer_ca_signing_count` | gauge | same |
//! | `ncp_pca_issuer_ca_issuances_remaining` | gauge | same |
//! | `ncp_pca_issuer_ca_signing_limit` | gauge | same |
//! | `ncp_pca_issuer_intermediate_not_after_timestamp_seconds` | gauge | same (subordinate mode) |
//! | `ncp_pca_issuer_intermediate_renewal_timestamp_seconds` | gauge | same (subordinate mode) |
//! | `ncp_pca_issuer_leader` | gauge (1/0) | |
//! | `ncp_pca_issuer_build_info` | gauge (1) | `version` |
//! | `ncp_pca_issuer_process_resident_memory_bytes` | gauge | |
//! | `ncp_pca_issuer_process_cpu_seconds_total` | counter | |
//! | `ncp_pca_issuer_process_open_fds` | gauge | |
//! | `ncp_pca_issuer_process_max_fds` | gauge | |

mod process;

use crate::ncp::{CallObserver, Operation};
use crate::reason::Reason;
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

/// The two issuer kinds, the values of every `issuer_kind` label.
pub const ISSUER_KINDS: [&str; 2] = ["PrivateCA", "ClusterPrivateCA"];

/// The `controller` label values of the reconcile metrics.
pub const CONTROLLERS: [&str; 3] = ["PrivateCA", "ClusterPrivateCA", "CertificateRequest"];

/// The `result` label values of the reconcile counter.
pub const RECONCILE_RESULTS: [&str; 2] = ["ok", "error"];

/// The reasons a `CertificateRequest` ends Failed with (the failure counter's `reason` values).
pub const FAILURE_REASONS: [Reason; 8] = [
    Reason::InvalidRequest,
    Reason::UnsupportedKey,
    Reason::CARequestRefused,
    Reason::NcpRefused,
    Reason::RetryBudgetSpent,
    Reason::CertificateUnusable,
    Reason::CertificateGone,
    Reason::SigningFailed,
];

/// The `outcome` of a successful NCP call.
pub const SUCCESS: &str = "success";
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
    issuer_kind: String,
    namespace: String,
    name: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn ncp_histogram() -> Histogram {
    Histogram::new(NCP_DURATION_BUCKETS)
}

fn reconcile_histogram() -> Histogram {
    Histogram::new(RECONCILE_DURATION_BUCKETS)
}

/// What the per-issuer gauges say of one issuer. `None` means not known (NCP never described the
/// CA, or the issuer has no intermediate): such a gauge has no series rather than a made-up 0, which
/// an expiry alert would read as "expired in 1970".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IssuerGauges {
    /// `Ready=True`.
    pub ready: bool,
    /// The NCP CA's NotAfter, unix seconds.
    pub ca_not_after: Option<i64>,
    /// How many certificates the NCP CA has signed.
    pub ca_signing_count: Option<i64>,
    /// How many more it may sign under NCP's cap.
    pub ca_issuances_remaining: Option<i64>,
    /// NCP's cap per CA, as the operator counts it (`--signing-limit`).
    pub ca_signing_limit: Option<i64>,
    /// The in-cluster intermediate's NotAfter, unix seconds (subordinate mode).
    pub intermediate_not_after: Option<i64>,
    /// When the intermediate is due to be replaced, unix seconds (subordinate mode).
    pub intermediate_renewal: Option<i64>,
}

/// The per-issuer gauge families, all labelled by [`IssuerLabels`].
#[derive(Debug, Default)]
struct IssuerFamilies {
    ready: Family<IssuerLabels, Gauge>,
    ca_not_after: Family<IssuerLabels, Gauge>,
    ca_signing_count: Family<IssuerLabels, Gauge>,
    ca_issuances_remaining: Family<IssuerLabels, Gauge>,
    ca_signing_limit: Family<IssuerLabels, Gauge>,
    intermediate_not_after: Family<IssuerLabels, Gauge>,
    intermediate_renewal: Family<IssuerLabels, Gauge>,
}

impl IssuerFamilies {
    /// Every family but `ready`, with the value `gauges` gives it.
    fn optional(&self, gauges: &IssuerGauges) -> [(&Family<IssuerLabels, Gauge>, Option<i64>); 6] {
        [
            (&self.ca_not_after, gauges.ca_not_after),
            (&self.ca_signing_count, gauges.ca_signing_count),
            (&self.ca_issuances_remaining, gauges.ca_issuances_remaining),
            (&self.ca_signing_limit, gauges.ca_signing_limit),
            (&self.intermediate_not_after, gauges.intermediate_not_after),
            (&self.intermediate_renewal, gauges.intermediate_renewal),
        ]
    }

    /// Drops every series of `labels`; true if the issuer had one.
    fn remove(&self, labels: &IssuerLabels) -> bool {
        let mut removed = self.ready.remove(labels);
        for (family, _) in self.optional(&IssuerGauges::default()) {
            removed |= family.remove(labels);
        }
        removed
    }

    fn register(&self, registry: &mut Registry) {
        registry.register(
            "issuer_ready",
            "Whether an issuer is Ready (1) or not (0)",
            self.ready.clone(),
        );
        registry.register_with_unit(
            "ca_not_after_timestamp",
            "When the issuer's NCP CA expires (unix time)",
            Unit::Seconds,
            self.ca_not_after.clone(),
        );
        registry.register(
            "ca_signing_count",
            "Certificates the issuer's NCP CA has signed, as Get CA counts them",
            self.ca_signing_count.clone(),
        );
        registry.register(
            "ca_issuances_remaining",
            "Certificates the issuer's NCP CA may still sign under NCP's cap per CA",
            self.ca_issuances_remaining.clone(),
        );
        registry.register(
            "ca_signing_limit",
            "NCP's cap of issuances per CA, as the operator counts it",
            self.ca_signing_limit.clone(),
        );
        registry.register_with_unit(
            "intermediate_not_after_timestamp",
            "When a subordinate issuer's in-cluster intermediate expires (unix time)",
            Unit::Seconds,
            self.intermediate_not_after.clone(),
        );
        registry.register_with_unit(
            "intermediate_renewal_timestamp",
            "When a subordinate issuer's intermediate is due to be replaced (unix time)",
            Unit::Seconds,
            self.intermediate_renewal.clone(),
        );
    }
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
    per_issuer: IssuerFamilies,
    /// The issuers that have per-issuer series (a `Family` cannot be listed), for
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
    /// A fresh registry with every metric registered under [`PREFIX`]: `leader` at 0, `build_info`
    /// at 1, and the series of every known label value at 0.
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
        let per_issuer = IssuerFamilies::default();
        per_issuer.register(&mut registry);
        let leader = Gauge::default();
        registry.register(
            "leader",
            "Whether this replica is the leader (1) or not (0)",
            leader.clone(),
        );
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register("build_info", "The operator's version (always 1)", build);
        registry.register_collector(Box::new(process::ProcessCollector));
        let metrics = Self {
            inner: Arc::new(Inner {
                registry,
                ncp_requests,
                ncp_duration,
                issued,
                failed,
                revoked,
                reconciles,
                reconcile_duration,
                per_issuer,
                issuers: Mutex::default(),
                leader,
            }),
        };
        metrics.create_zero_series();
        metrics
    }

    /// Creates, at 0, the series of every label value known in advance (each `get_or_create` guard
    /// is dropped at once: creating the series is the point).
    fn create_zero_series(&self) {
        let inner = &self.inner;
        for op in Operation::ALL {
            drop(inner.ncp_requests.get_or_create(&NcpCallLabels {
                operation: op.name(),
                outcome: SUCCESS.to_string(),
            }));
            drop(inner.ncp_duration.get_or_create(&OperationLabels {
                operation: op.name(),
            }));
        }
        for kind in ISSUER_KINDS {
            let labels = IssuerKindLabels {
                issuer_kind: kind.to_string(),
            };
            drop(inner.issued.get_or_create(&labels));
            drop(inner.revoked.get_or_create(&labels));
            for reason in FAILURE_REASONS {
                drop(inner.failed.get_or_create(&FailedLabels {
                    issuer_kind: kind.to_string(),
                    reason: reason.as_str().to_string(),
                }));
            }
        }
        for controller in CONTROLLERS {
            for result in RECONCILE_RESULTS {
                drop(inner.reconciles.get_or_create(&ReconcileLabels {
                    controller: controller.to_string(),
                    result: result.to_string(),
                }));
            }
            drop(inner.reconcile_duration.get_or_create(&ControllerLabels {
                controller: controller.to_string(),
            }));
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

    /// Sets the per-issuer gauges of the issuer `issuer_kind` `namespace/name` (`namespace` empty
    /// for a `ClusterPrivateCA`); a value that is `None` drops its series.
    pub fn set_issuer(
        &self,
        issuer_kind: &str,
        namespace: &str,
        name: &str,
        gauges: &IssuerGauges,
    ) {
        let labels = issuer_labels(issuer_kind, namespace, name);
        let mut issuers = self.issuers();
        let families = &self.inner.per_issuer;
        families
            .ready
            .get_or_create(&labels)
            .set(i64::from(gauges.ready));
        for (family, value) in families.optional(gauges) {
            match value {
                Some(v) => {
                    family.get_or_create(&labels).set(v);
                }
                None => {
                    family.remove(&labels);
                }
            }
        }
        issuers.insert(labels);
    }

    /// Drops every series of a deleted issuer; true if it had any.
    pub fn remove_issuer(&self, issuer_kind: &str, namespace: &str, name: &str) -> bool {
        let labels = issuer_labels(issuer_kind, namespace, name);
        let mut issuers = self.issuers();
        issuers.remove(&labels);
        self.inner.per_issuer.remove(&labels)
    }

    /// Drops every series of each issuer of `issuer_kind` for which `keep(namespace, name)` is false
    /// (after a re-list, for issuers deleted while the watch was down); returns how many issuers were
    /// dropped.
    pub fn retain_issuers(&self, issuer_kind: &str, keep: impl Fn(&str, &str) -> bool) -> usize {
        let mut issuers = self.issuers();
        let gone: Vec<IssuerLabels> = issuers
            .iter()
            .filter(|l| l.issuer_kind == issuer_kind && !keep(&l.namespace, &l.name))
            .cloned()
            .collect();
        for labels in &gone {
            issuers.remove(labels);
            self.inner.per_issuer.remove(labels);
        }
        gone.len()
    }

    /// The issuer set, locked; held across the matching `Family` updates so the two agree.
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

fn issuer_labels(issuer_kind: &str, namespace: &str, name: &str) -> IssuerLabels {
    IssuerLabels {
        issuer_kind: issuer_kind.to_string(),
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

    fn ready(ready: bool) -> IssuerGauges {
        IssuerGauges {
            ready,
            ..IssuerGauges::default()
        }
    }

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
            r#"ncp_pca_issuer_issuer_ready{issuer_kind="PrivateCA",namespace="team-a",name="ca"}"#;
        m.set_issuer("PrivateCA", "team-a", "ca", &ready(true));
        assert_eq!(line_value(&m.encode(), series).as_deref(), Some("1"));
        m.set_issuer("PrivateCA", "team-a", "ca", &ready(false));
        assert_eq!(line_value(&m.encode(), series).as_deref(), Some("0"));
        assert!(m.remove_issuer("PrivateCA", "team-a", "ca"));
        assert_eq!(line_value(&m.encode(), series), None);
        assert!(!m.remove_issuer("PrivateCA", "team-a", "ca"));
    }

    #[test]
    fn retain_issuers_drops_only_the_unkept_issuers_of_that_kind() {
        let m = Metrics::new();
        m.set_issuer("PrivateCA", "a", "kept", &ready(true));
        m.set_issuer("PrivateCA", "a", "gone", &ready(true));
        m.set_issuer("ClusterPrivateCA", "", "gone", &ready(false));
        assert_eq!(
            m.retain_issuers("PrivateCA", |ns, name| ns == "a" && name == "kept"),
            1
        );
        let text = m.encode();
        assert!(
            text.contains(
                r#"ncp_pca_issuer_issuer_ready{issuer_kind="PrivateCA",namespace="a",name="kept"} 1"#
            ),
            "{text}"
        );
        assert!(!text.contains(r#"name="gone"} 1"#), "{text}");
        assert!(
            text.contains(
                r#"ncp_pca_issuer_issuer_ready{issuer_kind="ClusterPrivateCA",namespace="",name="gone"} 0"#
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
        m.set_issuer("PrivateCA", "a", "b", &full_gauges());
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
        // 16 families of our own, and the process's 4 where /proc can be read.
        let process = if cfg!(target_os = "linux") { 4 } else { 0 };
        assert_eq!(families, 16 + process, "{text}");
    }

    #[test]
    fn families_with_known_label_values_start_at_zero_and_build_info_is_one() {
        let text = Metrics::new().encode();
        for series in [
            r#"ncp_pca_issuer_certificates_issued_total{issuer_kind="PrivateCA"} 0"#,
            r#"ncp_pca_issuer_certificates_revoked_total{issuer_kind="ClusterPrivateCA"} 0"#,
            r#"ncp_pca_issuer_certificates_failed_total{issuer_kind="ClusterPrivateCA",reason="NcpRefused"} 0"#,
            r#"ncp_pca_issuer_certificates_failed_total{issuer_kind="PrivateCA",reason="RetryBudgetSpent"} 0"#,
            r#"ncp_pca_issuer_ncp_requests_total{operation="sign_end_csr",outcome="success"} 0"#,
            r#"ncp_pca_issuer_ncp_request_duration_seconds_count{operation="get_ca"} 0"#,
            r#"ncp_pca_issuer_reconcile_total{controller="CertificateRequest",result="error"} 0"#,
            r#"ncp_pca_issuer_reconcile_duration_seconds_count{controller="ClusterPrivateCA"} 0"#,
            r#"ncp_pca_issuer_leader 0"#,
        ] {
            assert!(text.lines().any(|l| l == series), "{series} in\n{text}");
        }
        let build = format!(
            r#"ncp_pca_issuer_build_info{{version="{}"}} 1"#,
            env!("CARGO_PKG_VERSION")
        );
        assert!(text.lines().any(|l| l == build), "{build} in\n{text}");
    }

    fn per_issuer_series(text: &str, name: &str) -> Vec<String> {
        let needle = format!(r#"name="{name}"}}"#);
        text.lines()
            .filter(|l| l.contains(&needle))
            .map(str::to_string)
            .collect()
    }

    fn full_gauges() -> IssuerGauges {
        IssuerGauges {
            ready: true,
            ca_not_after: Some(1_900_000_000),
            ca_signing_count: Some(24_000),
            ca_issuances_remaining: Some(6_000),
            ca_signing_limit: Some(30_000),
            intermediate_not_after: Some(1_800_000_000),
            intermediate_renewal: Some(1_700_000_000),
        }
    }

    #[test]
    fn every_per_issuer_gauge_is_set_and_unknown_values_have_no_series() {
        let m = Metrics::new();
        m.set_issuer("PrivateCA", "a", "ca", &full_gauges());
        let text = m.encode();
        for (series, value) in [
            ("issuer_ready", "1"),
            ("ca_not_after_timestamp_seconds", "1900000000"),
            ("ca_signing_count", "24000"),
            ("ca_issuances_remaining", "6000"),
            ("ca_signing_limit", "30000"),
            ("intermediate_not_after_timestamp_seconds", "1800000000"),
            ("intermediate_renewal_timestamp_seconds", "1700000000"),
        ] {
            let prefix = format!(
                r#"ncp_pca_issuer_{series}{{issuer_kind="PrivateCA",namespace="a",name="ca"}}"#
            );
            assert_eq!(
                line_value(&text, &prefix).as_deref(),
                Some(value),
                "{prefix} in\n{text}"
            );
        }
        // The intermediate goes (subordinate mode turned off): its series go with it.
        m.set_issuer(
            "PrivateCA",
            "a",
            "ca",
            &IssuerGauges {
                intermediate_not_after: None,
                intermediate_renewal: None,
                ..full_gauges()
            },
        );
        let series = per_issuer_series(&m.encode(), "ca");
        assert_eq!(series.len(), 5, "{series:?}");
        assert!(
            !series.iter().any(|l| l.contains("intermediate")),
            "{series:?}"
        );
    }

    #[test]
    fn removing_an_issuer_prunes_every_one_of_its_series() {
        let m = Metrics::new();
        m.set_issuer("PrivateCA", "a", "one", &full_gauges());
        m.set_issuer("ClusterPrivateCA", "", "two", &full_gauges());
        assert_eq!(per_issuer_series(&m.encode(), "one").len(), 7);
        assert!(m.remove_issuer("PrivateCA", "a", "one"));
        assert_eq!(per_issuer_series(&m.encode(), "one"), Vec::<String>::new());
        assert_eq!(m.retain_issuers("ClusterPrivateCA", |_, _| false), 1);
        assert_eq!(per_issuer_series(&m.encode(), "two"), Vec::<String>::new());
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
