//! Pure decisions of the PodCertificateRequest signer: whether a request is final ([`is_final`]),
//! whether the issuer's policy admits it ([`admit`]), whether its key and proof of possession are
//! usable ([`check_key`]), what the certificate says ([`identity_sans`], [`lifetime`],
//! [`begin_refresh_at`]) and, with what the fetch phase found, what the reconcile does ([`plan`]).
//!
//! Only what the API server verified is trusted: the pod, its service account and node were checked
//! by the NodeRestriction admission plugin; `unverifiedUserAnnotations` are never read.

use super::status::Outcome;
use crate::api::issuer::PodCertificatePolicy;
use crate::controller::certificate_request::{IssuerLookup, IssuerView, Readiness};
use crate::controller::csr::decide::SignerRef;
use crate::controller::delays::{ISSUER_WAIT, MIN_BACKOFF};
use crate::controller::period::{self, DurationError};
use crate::pki::{EcCurve, KeyAlgorithm, PublicKeyInfo, San};
use crate::reason::Reason;
use k8s_openapi::api::certificates::v1beta1::PodCertificateRequest;
use rustls::pki_types::alg_id;
use std::time::Duration;

/// The SPIFFE trust domain when the policy names none.
pub const DEFAULT_TRUST_DOMAIN: &str = "cluster.local";
/// The longest lifetime when the policy names none.
pub const DEFAULT_MAX_DURATION: Duration = Duration::from_secs(24 * 3600);
/// The shortest lifetime the API server accepts.
pub const MIN_LIFETIME: Duration = Duration::from_secs(3600);
/// How far from either end of the validity `beginRefreshAt` must stay (API server validation).
pub const REFRESH_MARGIN: Duration = Duration::from_secs(600);
/// Why a remote issuer cannot serve PodCertificateRequests (also in the docs).
pub const NEEDS_SUBORDINATE: &str = "PodCertificateRequests carry a public key and a proof of possession but no CSR, and NCP signs only CSRs signed by the key: only an issuer in subordinate mode (spec.subordinate, an NCP-anchored intermediate signing in the cluster) can serve them";
/// The key types we sign, as named in messages.
pub const SUPPORTED_KEYS: &str = "ECDSA P-256, ECDSA P-384, RSA 3072, RSA 4096";

/// Whether the request is final (Issued, Denied or Failed, or a chain already written).
#[must_use]
pub fn is_final(pcr: &PodCertificateRequest) -> bool {
    pcr.status.as_ref().is_some_and(|s| {
        s.certificate_chain.as_ref().is_some_and(|c| !c.is_empty())
            || s.conditions.as_ref().is_some_and(|cs| {
                cs.iter().any(|c| {
                    matches!(c.type_.as_str(), "Issued" | "Denied" | "Failed") && c.status == "True"
                })
            })
    })
}

/// Why the policy refuses a request (the request is Denied with this message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    /// The issuer has no policy.
    #[error(
        "{kind} {name:?} has no spec.podCertificates policy: it serves no PodCertificateRequests"
    )]
    NoPolicy {
        /// Issuer kind.
        kind: &'static str,
        /// Issuer name.
        name: String,
    },
    /// A PrivateCA serves only its own namespace.
    #[error(
        "PrivateCA {name:?} in namespace {issuer_namespace} serves pods of its own namespace only, not of {namespace}"
    )]
    OtherNamespace {
        /// Issuer name.
        name: String,
        /// The issuer's namespace.
        issuer_namespace: String,
        /// The request's namespace.
        namespace: String,
    },
    /// The namespace is not in the policy.
    #[error("namespace {0} is not in spec.podCertificates.namespaces")]
    Namespace(String),
    /// The service account is not in the policy.
    #[error("service account {0} is not in spec.podCertificates.serviceAccounts")]
    ServiceAccount(String),
}

/// Whether `policy` admits the request for `signer`.
///
/// # Errors
/// The denial.
pub fn admit(
    policy: Option<&PodCertificatePolicy>,
    signer: &SignerRef,
    pcr: &PodCertificateRequest,
) -> Result<(), Denial> {
    let Some(policy) = policy else {
        return Err(Denial::NoPolicy {
            kind: signer.kind(),
            name: signer.name().to_string(),
        });
    };
    let namespace = pcr.metadata.namespace.clone().unwrap_or_default();
    if let Some(issuer_namespace) = signer.namespace()
        && issuer_namespace != namespace
    {
        return Err(Denial::OtherNamespace {
            name: signer.name().to_string(),
            issuer_namespace: issuer_namespace.to_string(),
            namespace,
        });
    }
    if !policy.namespaces.is_empty() && !policy.namespaces.contains(&namespace) {
        return Err(Denial::Namespace(namespace));
    }
    let sa = &pcr.spec.service_account_name;
    if !policy.service_accounts.is_empty() && !policy.service_accounts.contains(sa) {
        return Err(Denial::ServiceAccount(sa.clone()));
    }
    Ok(())
}

/// Why the request's key cannot be signed (the request Fails with this message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyProblem {
    /// Not a key type we sign.
    #[error("unsupported key {0}: this signer signs {SUPPORTED_KEYS}")]
    Unsupported(String),
    /// The proof of possession does not verify.
    #[error("the proof of possession does not verify against spec.pkixPublicKey and the pod's UID")]
    ProofOfPossession,
}

/// The request's key, once its type is one we sign and its proof of possession (a signature of the
/// pod UID: ECDSA with SHA-256, or RSA PKCS #1 v1.5 with SHA-256, as KEP-4317 defines it) verifies.
///
/// # Errors
/// Why the key cannot be used.
pub fn check_key(pcr: &PodCertificateRequest) -> Result<PublicKeyInfo, KeyProblem> {
    let key = PublicKeyInfo::from_spki_der(&pcr.spec.pkix_public_key.0)
        .map_err(|e| KeyProblem::Unsupported(e.to_string()))?;
    let supported = matches!(
        key.algorithm(),
        KeyAlgorithm::Ec(EcCurve::P256 | EcCurve::P384) | KeyAlgorithm::Rsa { bits: 3072 | 4096 }
    );
    if !supported {
        return Err(KeyProblem::Unsupported(key.algorithm().to_string()));
    }
    let signature_alg = match key.algorithm() {
        KeyAlgorithm::Rsa { .. } => alg_id::RSA_PKCS1_SHA256,
        KeyAlgorithm::Ec(_) => alg_id::ECDSA_SHA256,
    };
    let key_bits = rcgen::PublicKeyData::der_bytes(&key).to_vec();
    let message = pcr.spec.pod_uid.as_bytes();
    let proof = &pcr.spec.proof_of_possession.0;
    let verified = rustls::crypto::aws_lc_rs::default_provider()
        .signature_verification_algorithms
        .all
        .iter()
        .filter(|a| a.signature_alg_id() == signature_alg)
        .any(|a| a.verify_signature(&key_bits, message, proof).is_ok());
    if verified {
        Ok(key)
    } else {
        Err(KeyProblem::ProofOfPossession)
    }
}

/// The SANs of the certificate: the SPIFFE URI of the pod's service account, then the policy's DNS
/// names with the pod's verified identity filled in.
#[must_use]
pub fn identity_sans(policy: &PodCertificatePolicy, pcr: &PodCertificateRequest) -> Vec<San> {
    let namespace = pcr.metadata.namespace.clone().unwrap_or_default();
    let sa = &pcr.spec.service_account_name;
    let trust_domain = policy
        .trust_domain
        .as_deref()
        .unwrap_or(DEFAULT_TRUST_DOMAIN);
    let mut sans = vec![San::Uri(format!(
        "spiffe://{trust_domain}/ns/{namespace}/sa/{sa}"
    ))];
    for template in &policy.dns_names {
        let name = template
            .replace("$(serviceAccount)", sa)
            .replace("$(namespace)", &namespace)
            .replace("$(podName)", &pcr.spec.pod_name);
        let san = San::Dns(name);
        if !sans.contains(&san) {
            sans.push(san);
        }
    }
    sans
}

/// The lifetime asked for: the policy's longest (default 24 h), shortened to the request's
/// `maxExpirationSeconds` (default 24 h, as the API server defaults it).
///
/// # Errors
/// When the policy's `maxDuration` is not a duration.
pub fn lifetime(
    policy: &PodCertificatePolicy,
    pcr: &PodCertificateRequest,
) -> Result<Duration, DurationError> {
    let longest = match policy.max_duration.as_deref() {
        Some(d) => period::parse_go_duration(d)?,
        None => DEFAULT_MAX_DURATION,
    };
    let asked = pcr
        .spec
        .max_expiration_seconds
        .and_then(|s| u64::try_from(s).ok())
        .map_or(DEFAULT_MAX_DURATION, Duration::from_secs);
    Ok(longest.min(asked))
}

/// When the kubelet should start refreshing: three quarters into the validity, kept
/// [`REFRESH_MARGIN`] away from both ends.
#[must_use]
pub fn begin_refresh_at(
    not_before: time::OffsetDateTime,
    not_after: time::OffsetDateTime,
) -> time::OffsetDateTime {
    let margin = time::Duration::try_from(REFRESH_MARGIN).unwrap_or(time::Duration::ZERO);
    let at: time::OffsetDateTime = not_before + (not_after - not_before) * 3 / 4;
    at.min(not_after - margin).max(not_before + margin)
}

/// What the fetch phase observed.
#[derive(Debug, Clone)]
pub struct Observed<'a> {
    /// The request.
    pub pcr: &'a PodCertificateRequest,
    /// The issuer its signer name names.
    pub signer: &'a SignerRef,
    /// The issuer.
    pub issuer: IssuerLookup,
}

/// What the reconcile does.
#[derive(Debug, Clone)]
pub enum Plan {
    /// Write this outcome; nothing is signed.
    Write(Outcome),
    /// Sign in the cluster for `key`, valid for up to `lifetime`, with `sans`.
    Sign {
        /// The issuer.
        issuer: Box<IssuerView>,
        /// The checked key.
        key: Box<PublicKeyInfo>,
        /// The lifetime asked for.
        lifetime: Duration,
        /// The SANs.
        sans: Vec<San>,
    },
}

/// Decides what the reconcile does (pure).
#[must_use]
pub fn plan(observed: Observed<'_>) -> Plan {
    let pcr = observed.pcr;
    if is_final(pcr) {
        // Final: never touched again.
        return Plan::Write(Outcome::await_change());
    }
    let view = match observed.issuer {
        IssuerLookup::Found(view) => view,
        IssuerLookup::Missing => {
            let msg = format!(
                "waiting for {} {:?}: it does not exist",
                observed.signer.kind(),
                observed.signer.name()
            );
            // Next: the issuer watch wakes us when it appears.
            return Plan::Write(Outcome::waiting(&msg, ISSUER_WAIT));
        }
        // Next: a read error is retried soon.
        _ => return Plan::Write(Outcome::requeue(MIN_BACKOFF)),
    };
    if view.spec.subordinate.is_none() {
        let msg = format!("{} {:?}: {NEEDS_SUBORDINATE}", view.kind, view.name);
        return Plan::Write(Outcome::failed(
            Reason::PodCertificateNeedsSubordinate,
            &msg,
        ));
    }
    let policy = view.spec.pod_certificates.clone();
    if let Err(denial) = admit(policy.as_ref(), observed.signer, pcr) {
        return Plan::Write(Outcome::denied(&denial.to_string()));
    }
    let policy = policy.unwrap_or_default();
    let key = match check_key(pcr) {
        Ok(k) => k,
        Err(e @ KeyProblem::Unsupported(_)) => {
            return Plan::Write(Outcome::failed(Reason::UnsupportedKey, &e.to_string()));
        }
        Err(e @ KeyProblem::ProofOfPossession) => {
            return Plan::Write(Outcome::failed(
                Reason::InvalidProofOfPossession,
                &e.to_string(),
            ));
        }
    };
    let lifetime = match lifetime(&policy, pcr) {
        Ok(l) if l < MIN_LIFETIME => {
            let msg = format!(
                "spec.podCertificates.maxDuration is shorter than the {}s the API server requires",
                MIN_LIFETIME.as_secs()
            );
            return Plan::Write(Outcome::failed(Reason::InvalidSpec, &msg));
        }
        Ok(l) => l,
        Err(e) => {
            let msg = format!("spec.podCertificates.maxDuration: {e}");
            return Plan::Write(Outcome::failed(Reason::InvalidSpec, &msg));
        }
    };
    if view.readiness != Readiness::Ready {
        let msg = format!("waiting for {} {:?} to be Ready", view.kind, view.name);
        // Next: the issuer's status change wakes us.
        return Plan::Write(Outcome::waiting(&msg, ISSUER_WAIT));
    }
    Plan::Sign {
        sans: identity_sans(&policy, pcr),
        issuer: view,
        key: Box::new(key),
        lifetime,
    }
}

#[cfg(test)]
mod tests;
