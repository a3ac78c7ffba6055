//! Chain verification: names, signatures, validity and CA flags from a leaf up to a trust anchor.

use super::cert::CertInfo;
use super::error::ChainError;
use super::signature::verify_signed_by;
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

/// Longest chain (excluding the leaf) [`verify_chain`] follows.
pub const MAX_CHAIN_LEN: usize = 8;

fn check_time(
    cert: &CertInfo,
    at: OffsetDateTime,
    not_before_tolerance: Duration,
) -> Result<(), ChainError> {
    let fmt = |t: OffsetDateTime| t.format(&Rfc3339).unwrap_or_else(|_| t.to_string());
    if at + not_before_tolerance < cert.not_before {
        return Err(ChainError::NotYetValid {
            subject: cert.subject.to_string(),
            not_before: fmt(cert.not_before),
        });
    }
    if at > cert.not_after {
        return Err(ChainError::Expired {
            subject: cert.subject.to_string(),
            not_after: fmt(cert.not_after),
        });
    }
    Ok(())
}

fn issued_by(cert: &CertInfo, candidate: &CertInfo) -> bool {
    cert.issuer_raw == candidate.subject_raw || cert.issuer == candidate.subject
}

/// Verifies `leaf` up to one of `roots` through `intermediates`: names, signatures, validity at `at`
/// and that every issuer is a CA. Roots are trust anchors: their own signature is not checked.
///
/// Returns the path above the leaf, `[issuer, …, root]` (empty when the leaf is itself a root).
pub fn verify_chain<'a>(
    leaf: &'a CertInfo,
    intermediates: &'a [CertInfo],
    roots: &'a [CertInfo],
    at: OffsetDateTime,
) -> Result<Vec<&'a CertInfo>, ChainError> {
    verify_chain_with_skew(leaf, intermediates, roots, at, Duration::ZERO)
}

/// [`verify_chain`], where a validity may start up to `not_before_tolerance` after `at` (the signer's
/// clock ahead of ours). Expiry is checked at `at` itself.
pub fn verify_chain_with_skew<'a>(
    leaf: &'a CertInfo,
    intermediates: &'a [CertInfo],
    roots: &'a [CertInfo],
    at: OffsetDateTime,
    not_before_tolerance: Duration,
) -> Result<Vec<&'a CertInfo>, ChainError> {
    let mut path = Vec::new();
    let when = When {
        at,
        not_before_tolerance,
    };
    extend(leaf, intermediates, roots, when, &mut path)?;
    Ok(path)
}

/// The verification time and how far a validity may start after it.
#[derive(Clone, Copy)]
struct When {
    at: OffsetDateTime,
    not_before_tolerance: Duration,
}

fn extend<'a>(
    current: &'a CertInfo,
    intermediates: &'a [CertInfo],
    roots: &'a [CertInfo],
    when: When,
    path: &mut Vec<&'a CertInfo>,
) -> Result<(), ChainError> {
    check_time(current, when.at, when.not_before_tolerance)?;
    if roots.iter().any(|r| r.der == current.der) {
        return Ok(());
    }
    if path.len() >= MAX_CHAIN_LEN {
        return Err(ChainError::TooLong { max: MAX_CHAIN_LEN });
    }
    let mut last_err = ChainError::IssuerNotFound {
        subject: current.subject.to_string(),
        issuer: current.issuer.to_string(),
    };
    for candidate in roots.iter().chain(intermediates) {
        if candidate.der == current.der
            || path.iter().any(|p| p.der == candidate.der)
            || !issued_by(current, candidate)
        {
            continue;
        }
        if verify_signed_by(&current.der, candidate.public_key.spki_der()).is_err() {
            last_err = ChainError::BadSignature {
                subject: current.subject.to_string(),
                issuer: candidate.subject.to_string(),
            };
            continue;
        }
        if !candidate.is_ca || candidate.key_cert_sign == Some(false) {
            last_err = ChainError::NotCa {
                subject: candidate.subject.to_string(),
            };
            continue;
        }
        path.push(candidate);
        match extend(candidate, intermediates, roots, when, path) {
            Ok(()) => return Ok(()),
            Err(e) => {
                path.pop();
                last_err = e;
            }
        }
    }
    Err(last_err)
}
