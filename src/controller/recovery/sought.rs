//! What a search looks for: the time [`Window`] and the certificate ([`Sought`]), with the
//! fingerprints the index keeps.

use super::RECOVERY_SKEW;
use crate::pki::{CertInfo, San};
use sha2::{Digest as _, Sha256};
use std::time::Duration;

/// What the index keeps of one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Entry {
    /// NCP's `notBeforeDate` (or the certificate's own), ms since the epoch; `None` when neither
    /// could be read.
    pub not_before_ms: Option<i64>,
    /// What the certificate certifies; `None` when its PEM could not be read (it never matches).
    pub fingerprint: Option<Fingerprint>,
}

/// Truncated SHA-256 fingerprints of a certificate's key and SAN set, and whether it is a CA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Fingerprint {
    /// Of the SubjectPublicKeyInfo DER.
    pub key: u128,
    /// Of the sorted, deduplicated SANs.
    pub sans: u128,
    /// basicConstraints cA.
    pub is_ca: bool,
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The notBefore range (ms since the epoch, both ends included) in which a lost certificate can lie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Earliest notBefore.
    pub since_ms: i64,
    /// Latest notBefore.
    pub until_ms: i64,
}

impl Window {
    /// Around a signing that started at `at_ms`: the settle window either side, widened by
    /// [`RECOVERY_SKEW`].
    #[must_use]
    pub fn around(at_ms: i64, settle: Duration) -> Self {
        let margin = millis(settle + RECOVERY_SKEW);
        Self {
            since_ms: at_ms.saturating_sub(margin),
            until_ms: at_ms.saturating_add(margin),
        }
    }

    /// A signing that started somewhere between `from_ms` and `to_ms`, widened by [`RECOVERY_SKEW`].
    #[must_use]
    pub fn between(from_ms: i64, to_ms: i64) -> Self {
        let margin = millis(RECOVERY_SKEW);
        Self {
            since_ms: from_ms.saturating_sub(margin),
            until_ms: to_ms.saturating_add(margin),
        }
    }

    /// The same window, `extra` wider on both sides (for a clock-skew tolerance above
    /// [`RECOVERY_SKEW`]: NCP's clock that far ahead of ours or behind).
    #[must_use]
    pub fn widened(self, extra: Duration) -> Self {
        let margin = millis(extra);
        Self {
            since_ms: self.since_ms.saturating_sub(margin),
            until_ms: self.until_ms.saturating_add(margin),
        }
    }

    pub(super) fn is_older(self, not_before_ms: Option<i64>) -> bool {
        not_before_ms.is_some_and(|nb| nb < self.since_ms)
    }

    pub(super) fn is_newer(self, not_before_ms: Option<i64>) -> bool {
        not_before_ms.is_some_and(|nb| nb > self.until_ms)
    }

    /// Whether a certificate with this notBefore cannot be the one (an unknown notBefore can).
    pub(super) fn excludes(self, not_before_ms: Option<i64>) -> bool {
        self.is_older(not_before_ms) || self.is_newer(not_before_ms)
    }
}

/// The certificate looked for.
#[derive(Debug, Clone)]
pub struct Sought {
    spki_der: Vec<u8>,
    /// The exact SAN set, when it matters.
    sans: Option<Vec<San>>,
    ca: bool,
    key_fp: u128,
    sans_fp: Option<u128>,
}

pub(super) fn fp(data: &[u8]) -> u128 {
    let digest = Sha256::digest(data);
    let mut first = [0u8; 16];
    first.copy_from_slice(&digest[..16]);
    u128::from_be_bytes(first)
}

pub(super) fn sans_fp(sans: &[San]) -> u128 {
    let mut names: Vec<String> = sans.iter().map(|s| format!("{s:?}")).collect();
    names.sort_unstable();
    names.dedup();
    fp(names.join("\u{0}").as_bytes())
}

impl Sought {
    /// An end-entity certificate for this key with exactly these SANs.
    #[must_use]
    pub fn key_and_sans(spki_der: &[u8], sans: &[San]) -> Self {
        Self {
            spki_der: spki_der.to_vec(),
            sans: Some(sans.to_vec()),
            ca: false,
            key_fp: fp(spki_der),
            sans_fp: Some(sans_fp(sans)),
        }
    }

    /// A CA certificate for this key.
    #[must_use]
    pub fn ca_key(spki_der: &[u8]) -> Self {
        Self {
            spki_der: spki_der.to_vec(),
            sans: None,
            ca: true,
            key_fp: fp(spki_der),
            sans_fp: None,
        }
    }

    /// Whether `cert` is the one.
    #[must_use]
    pub fn matches(&self, cert: &CertInfo) -> bool {
        cert.public_key.spki_der() == self.spki_der.as_slice()
            && (!self.ca || cert.is_ca)
            && self.sans.as_ref().is_none_or(|want| {
                want.iter().all(|s| cert.sans.contains(s))
                    && cert.sans.iter().all(|s| want.contains(s))
            })
    }

    pub(super) fn matches_entry(&self, entry: &Entry) -> bool {
        entry.fingerprint.is_some_and(|f| {
            f.key == self.key_fp
                && (!self.ca || f.is_ca)
                && self.sans_fp.is_none_or(|want| want == f.sans)
        })
    }
}

/// What the index keeps of a certificate NCP gave.
pub(super) fn entry_of(cert: &crate::ncp::types::EndCert) -> Entry {
    let parsed = crate::pki::parse_certificates_pem(&cert.cert_pem)
        .ok()
        .and_then(|c| c.into_iter().next());
    let own_not_before = parsed
        .as_ref()
        .map(|c| c.not_before.unix_timestamp().saturating_mul(1000));
    Entry {
        // The certificate's own notBefore first: the list's `notBeforeDate` is the endpoint's word.
        not_before_ms: own_not_before.or(cert.not_before_date),
        fingerprint: parsed.map(|c| Fingerprint {
            key: fp(c.public_key.spki_der()),
            sans: sans_fp(&c.sans),
            is_ca: c.is_ca,
        }),
    }
}
