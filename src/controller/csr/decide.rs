//! Pure decisions of the CertificateSigningRequest signer: which issuer a signer name names
//! ([`SignerRef::parse`]), what state a CSR is in ([`next`]), what it asks for ([`requested_duration`],
//! [`requests_ca`]) and, with what the fetch phase found, what the reconcile does ([`plan`]).

use super::status::Outcome;
use crate::api::annotations::{ANNOTATION_CA_TAG, ANNOTATION_SERIAL, ANNOTATION_SIGNING_STARTED};
use crate::api::{ClusterPrivateCA, IssuerResource as _, PrivateCA};
use crate::controller::certificate_request::decide::NcpStep;
use crate::controller::certificate_request::{IssuerLookup, IssuerView, Readiness};
use crate::controller::conditions::ConditionStatus;
use crate::controller::delays::{ISSUER_WAIT, MIN_BACKOFF, STALE_RETRY};
use crate::controller::period::{self, DurationError};
use crate::reason::Reason;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use std::time::Duration;

/// Signer names of `PrivateCA`s: `privatecas.pca.ncp-issuer.dev/<namespace>.<name>`.
pub const PRIVATE_CA_SIGNERS: &str = "privatecas.pca.ncp-issuer.dev";
/// Signer names of `ClusterPrivateCA`s: `clusterprivatecas.pca.ncp-issuer.dev/<name>`.
pub const CLUSTER_PRIVATE_CA_SIGNERS: &str = "clusterprivatecas.pca.ncp-issuer.dev";
/// The API group of the `signers` resource a requester must be allowed to `reference`.
pub const SIGNERS_GROUP: &str = "pca.ncp-issuer.dev";
/// cert-manager's annotation asking for a CA certificate (`"true"`).
pub const ANNOTATION_REQUEST_IS_CA: &str = "experimental.cert-manager.io/request-is-ca";
/// cert-manager's annotation with the requested lifetime (a Go duration); preferred over
/// `spec.expirationSeconds`, as cert-manager's own CSR signers prefer it.
pub const ANNOTATION_REQUEST_DURATION: &str = "experimental.cert-manager.io/request-duration";

/// The issuer a signer name names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignerRef {
    /// A `PrivateCA`.
    PrivateCA {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// A `ClusterPrivateCA`.
    ClusterPrivateCA {
        /// Its name.
        name: String,
    },
}

impl SignerRef {
    /// The issuer named by `signer_name`; `None` when the name is not one of ours (or malformed).
    /// Namespaces cannot contain dots, so a PrivateCA's name is what follows the first dot.
    #[must_use]
    pub fn parse(signer_name: &str) -> Option<Self> {
        let (domain, path) = signer_name.split_once('/')?;
        if path.is_empty() || path.contains('/') {
            return None;
        }
        match domain {
            PRIVATE_CA_SIGNERS => {
                let (namespace, name) = path.split_once('.')?;
                (!namespace.is_empty() && !name.is_empty()).then(|| Self::PrivateCA {
                    namespace: namespace.to_string(),
                    name: name.to_string(),
                })
            }
            CLUSTER_PRIVATE_CA_SIGNERS => Some(Self::ClusterPrivateCA {
                name: path.to_string(),
            }),
            _ => None,
        }
    }

    /// The signer name of this issuer.
    #[must_use]
    pub fn signer_name(&self) -> String {
        match self {
            Self::PrivateCA { namespace, name } => {
                format!("{PRIVATE_CA_SIGNERS}/{namespace}.{name}")
            }
            Self::ClusterPrivateCA { name } => format!("{CLUSTER_PRIVATE_CA_SIGNERS}/{name}"),
        }
    }

    /// `PrivateCA` or `ClusterPrivateCA`.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::PrivateCA { .. } => PrivateCA::KIND,
            Self::ClusterPrivateCA { .. } => ClusterPrivateCA::KIND,
        }
    }

    /// The issuer's namespace (none for a `ClusterPrivateCA`).
    #[must_use]
    pub fn namespace(&self) -> Option<&str> {
        match self {
            Self::PrivateCA { namespace, .. } => Some(namespace),
            Self::ClusterPrivateCA { .. } => None,
        }
    }

    /// The issuer's name.
    #[must_use]
    pub fn name(&self) -> &str {
        match self {
            Self::PrivateCA { name, .. } | Self::ClusterPrivateCA { name } => name,
        }
    }
}

/// Whether condition `type_` of the CSR is `True`.
#[must_use]
pub fn condition_true(csr: &CertificateSigningRequest, type_: &str) -> bool {
    csr.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.type_ == type_ && ConditionStatus::parse(&c.status) == ConditionStatus::True
            })
        })
}

/// What to do with a CSR of ours now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Final (signed, Failed or Denied): leave it alone.
    Ignore,
    /// Not approved yet: nothing to do until it is (we never approve).
    AwaitApproval,
    /// NCP signed and the serial was recorded: fetch the certificate and finish.
    RecoverBySerial {
        /// CA tag.
        ca_tag: String,
        /// Serial.
        serial: String,
    },
    /// NCP signing started but no serial was recorded: look for the certificate before signing again.
    RecoverByKey {
        /// CA tag.
        ca_tag: String,
    },
    /// Nothing signed yet.
    Sign,
}

/// Decides the next step for a CSR whose signer name is ours.
#[must_use]
pub fn next(csr: &CertificateSigningRequest) -> Next {
    let signed = csr
        .status
        .as_ref()
        .and_then(|s| s.certificate.as_ref())
        .is_some_and(|c| !c.0.is_empty());
    if signed || condition_true(csr, "Failed") || condition_true(csr, "Denied") {
        return Next::Ignore;
    }
    if !condition_true(csr, "Approved") {
        return Next::AwaitApproval;
    }
    let annotations = csr.metadata.annotations.clone().unwrap_or_default();
    let ca_tag = annotations
        .get(ANNOTATION_CA_TAG)
        .cloned()
        .unwrap_or_default();
    if let Some(serial) = annotations.get(ANNOTATION_SERIAL).filter(|s| !s.is_empty()) {
        return Next::RecoverBySerial {
            ca_tag,
            serial: serial.clone(),
        };
    }
    if annotations.contains_key(ANNOTATION_SIGNING_STARTED) {
        return Next::RecoverByKey { ca_tag };
    }
    Next::Sign
}

/// Whether the CSR must be read fresh before deciding (recovery asks NCP; the cache can lag behind
/// our own writes).
#[must_use]
pub fn needs_fresh_read(next: &Next) -> bool {
    matches!(
        next,
        Next::RecoverByKey { .. } | Next::RecoverBySerial { .. }
    )
}

/// The lifetime asked for: cert-manager's duration annotation, else `spec.expirationSeconds`, else
/// cert-manager's default (90 days).
///
/// # Errors
/// When the annotation is not a Go duration.
pub fn requested_duration(csr: &CertificateSigningRequest) -> Result<Duration, DurationError> {
    let annotation = csr
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_REQUEST_DURATION));
    if let Some(text) = annotation {
        return period::parse_go_duration(text);
    }
    Ok(match csr.spec.expiration_seconds {
        Some(s) => Duration::from_secs(u64::try_from(s).unwrap_or(0)),
        None => period::DEFAULT_DURATION,
    })
}

/// Whether the CSR asks for a CA certificate (cert-manager's `request-is-ca` annotation).
#[must_use]
pub fn requests_ca(csr: &CertificateSigningRequest) -> bool {
    csr.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_REQUEST_IS_CA))
        .is_some_and(|v| v == "true")
}

/// What the SubjectAccessReview said of the requester and the signer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authorization {
    /// Not asked (the step does not need it).
    NotChecked,
    /// The requester may `reference` the signer.
    Allowed,
    /// The requester may not.
    Refused,
    /// The review could not be made.
    Unknown,
}

/// What the fetch phase observed.
#[derive(Debug, Clone)]
pub struct Observed<'a> {
    /// The CSR.
    pub csr: &'a CertificateSigningRequest,
    /// The issuer its signer name names.
    pub signer: &'a SignerRef,
    /// Whether `csr` was read fresh (see [`needs_fresh_read`]).
    pub refreshed: bool,
    /// The issuer.
    pub issuer: IssuerLookup,
    /// Whether the requester may reference the signer.
    pub authorization: Authorization,
}

/// What the reconcile does.
#[derive(Debug, Clone)]
pub enum Plan {
    /// Write this outcome; nothing is signed.
    Write(Outcome),
    /// Sign in the cluster with the subordinate issuer's intermediate.
    SignLocally(Box<IssuerView>),
    /// Sign through NCP, or recover a certificate NCP already signed.
    Ncp(Box<IssuerView>, NcpStep),
}

/// Decides what the reconcile does (pure).
#[must_use]
pub fn plan(observed: Observed<'_>) -> Plan {
    let step = next(observed.csr);
    if observed.refreshed && !needs_fresh_read(&step) {
        return Plan::Write(match step {
            // Already final: the cached copy was stale.
            Next::Ignore => Outcome::await_change(),
            // Moved on: the watch event of that change triggers the next reconcile.
            _ => Outcome::requeue(STALE_RETRY),
        });
    }
    let ncp_step = match step {
        // Final, or waiting for an approver: a change wakes us.
        Next::Ignore | Next::AwaitApproval => return Plan::Write(Outcome::await_change()),
        Next::Sign => NcpStep::Sign,
        Next::RecoverByKey { ca_tag } => NcpStep::RecoverByKey { ca_tag },
        Next::RecoverBySerial { ca_tag, serial } => NcpStep::RecoverBySerial { ca_tag, serial },
    };
    if ncp_step == NcpStep::Sign {
        match observed.authorization {
            Authorization::Allowed => {}
            Authorization::Refused => {
                let csr = observed.csr;
                let msg = format!(
                    "requester {:?} may not reference signer {}: it needs RBAC verb \"reference\" on \"signers\" in API group {SIGNERS_GROUP} named {:?} or \"*\"{}",
                    csr.spec.username.as_deref().unwrap_or_default(),
                    observed.signer.signer_name(),
                    observed.signer.name(),
                    observed
                        .signer
                        .namespace()
                        .map(|ns| format!(" in namespace {ns}"))
                        .unwrap_or_default(),
                );
                return Plan::Write(Outcome::failed(Reason::SignerReferenceDenied, &msg));
            }
            // Next: a failed review is retried soon.
            Authorization::Unknown | Authorization::NotChecked => {
                return Plan::Write(Outcome::requeue(MIN_BACKOFF));
            }
        }
    }
    let view = match observed.issuer {
        IssuerLookup::Found(view) => view,
        IssuerLookup::Missing => {
            let msg = format!(
                "waiting for {} {:?}{}: it does not exist",
                observed.signer.kind(),
                observed.signer.name(),
                observed
                    .signer
                    .namespace()
                    .map(|ns| format!(" in namespace {ns}"))
                    .unwrap_or_default()
            );
            // Next: the issuer watch wakes us when it appears; the requeue is a safety net.
            return Plan::Write(Outcome::waiting(&msg, ISSUER_WAIT));
        }
        // Next: a read error is retried soon.
        IssuerLookup::Unreadable | IssuerLookup::NotCached | IssuerLookup::NotNeeded => {
            return Plan::Write(Outcome::requeue(MIN_BACKOFF));
        }
    };
    if ncp_step != NcpStep::Sign {
        // Recovery of a certificate NCP may already have signed: whatever the issuer's state.
        return Plan::Ncp(view, ncp_step);
    }
    if let Readiness::NotReady { why } = &view.readiness {
        let msg = format!(
            "waiting for {} {:?} to be Ready: {why}",
            view.kind, view.name
        );
        // Next: the issuer's status change wakes us; the requeue is a safety net.
        return Plan::Write(Outcome::waiting(&msg, ISSUER_WAIT));
    }
    if view.readiness == Readiness::Unchecked {
        let msg = format!(
            "waiting for {} {:?} to be Ready: it has not been checked yet",
            view.kind, view.name
        );
        return Plan::Write(Outcome::waiting(&msg, ISSUER_WAIT));
    }
    if view.spec.subordinate.is_some() {
        Plan::SignLocally(view)
    } else {
        Plan::Ncp(view, NcpStep::Sign)
    }
}

#[cfg(test)]
mod tests;
