//! Pure decisions of subordinate mode: reading and checking the intermediate's Secret, when to renew
//! it, how long a failed attempt is waited out, and what the status says.

use crate::api::annotations::ANNOTATION_RENEW;
use crate::api::{SubordinateSpec, SubordinateStatus};
use crate::controller::delays::UNUSABLE_ANSWER_RETRY;
use crate::controller::period::parse_go_duration;
use crate::ncp::types::KeyType;
use crate::pki::{
    CertInfo, ChainError, Name, NameAttr, PrivateKey, Signer, parse_certificates_pem, verify_chain,
};
use k8s_openapi::jiff::Timestamp;
use sha2::{Digest as _, Sha256};
use std::time::Duration;
use time::OffsetDateTime;

/// Secret key of the intermediate's private key.
pub const KEY_TLS_KEY: &str = "tls.key";
/// Secret key of the intermediate and the chain above it, root excluded.
pub const KEY_TLS_CRT: &str = "tls.crt";
/// Secret key of the NCP root.
pub const KEY_CA_CRT: &str = "ca.crt";
/// Secret key of the next intermediate's key while NCP signs it (kept so that a lost answer is
/// recovered rather than signed twice).
pub const KEY_PENDING_KEY: &str = "pending.key";
/// Default life of the intermediate.
pub const DEFAULT_INTERMEDIATE_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// The settings of an intermediate, resolved from the spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    /// Key type.
    pub key_type: KeyType,
    /// Subject.
    pub subject: Name,
    /// Requested life.
    pub duration: Duration,
    /// Renewal margin; `None`: a third of the life.
    pub renew_before: Option<Duration>,
}

/// Why `spec.subordinate` cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// `duration` is not a Go duration.
    #[error("spec.subordinate.duration {0:?} is not a duration")]
    Duration(String),
    /// `renewBefore` is not a Go duration.
    #[error("spec.subordinate.renewBefore {0:?} is not a duration")]
    RenewBefore(String),
}

impl Wanted {
    /// Resolves `spec` for the issuer named `issuer_name`.
    ///
    /// # Errors
    /// When a duration does not parse.
    pub fn from_spec(spec: &SubordinateSpec, issuer_name: &str) -> Result<Self, SpecError> {
        let duration = match spec.duration.as_deref() {
            Some(d) => parse_go_duration(d).map_err(|_| SpecError::Duration(d.to_string()))?,
            None => DEFAULT_INTERMEDIATE_DURATION,
        };
        let renew_before = spec
            .renew_before
            .as_deref()
            .map(|d| parse_go_duration(d).map_err(|_| SpecError::RenewBefore(d.to_string())))
            .transpose()?;
        let mut subject = Name::new();
        let given = spec.subject.clone().unwrap_or_default();
        for (attr, values) in [
            (NameAttr::Country, &given.countries),
            (NameAttr::StateOrProvince, &given.provinces),
            (NameAttr::Locality, &given.localities),
            (NameAttr::Organization, &given.organizations),
            (NameAttr::OrganizationalUnit, &given.organizational_units),
        ] {
            for v in values {
                subject.push(attr.clone(), v.clone());
            }
        }
        let cn = given
            .common_name
            .filter(|c| !c.trim().is_empty())
            .unwrap_or_else(|| format!("{issuer_name} intermediate"));
        subject.push(NameAttr::CommonName, cn);
        Ok(Self {
            key_type: spec.key_algorithm.key_type(),
            subject,
            duration,
            renew_before,
        })
    }

    /// Digest of what shapes the intermediate itself (key type and subject), kept on the Secret.
    #[must_use]
    pub fn digest(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.key_type.as_str());
        h.update([0]);
        h.update(self.subject.to_string());
        let d = h.finalize();
        d.iter().take(8).map(|b| format!("{b:02x}")).collect()
    }
}

/// The intermediate as read from its Secret, checked: the key is the certificate's, the certificate is
/// a CA and chains to the root in `ca.crt`.
#[derive(Debug)]
pub struct Intermediate {
    /// Key and certificate.
    pub signer: Signer,
    /// `tls.crt`: the intermediate, then what lies between it and the root.
    pub chain_pem: String,
    /// `ca.crt`: the root.
    pub root_pem: String,
    /// SHA-256 (hex) of the root's DER.
    pub root_sha256: String,
}

impl Intermediate {
    /// The intermediate's certificate.
    #[must_use]
    pub fn certificate(&self) -> &CertInfo {
        self.signer.certificate()
    }
}

/// Why a Secret holds no usable intermediate. Messages never include key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretProblem {
    /// Nothing provisioned yet (absent Secret, or no key and certificate in it).
    #[error("no intermediate has been provisioned yet")]
    Empty,
    /// `tls.key` does not parse.
    #[error("tls.key is not a usable private key")]
    KeyUnreadable,
    /// `tls.crt` or `ca.crt` does not parse.
    #[error("{0} does not hold a readable certificate")]
    CertUnreadable(&'static str),
    /// The key is not the certificate's.
    #[error("tls.key does not match the certificate in tls.crt")]
    KeyMismatch,
    /// The certificate is not a CA.
    #[error("the certificate in tls.crt is not a CA certificate")]
    NotCa,
    /// The chain does not verify to `ca.crt` (or the intermediate expired).
    #[error("tls.crt does not verify up to ca.crt: {0}")]
    Chain(ChainError),
}

/// Lower-case hex SHA-256.
#[must_use]
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn text(data: Option<&[u8]>) -> &str {
    data.and_then(|b| std::str::from_utf8(b).ok()).unwrap_or("")
}

/// Reads and checks an intermediate from the Secret's `tls.key`, `tls.crt` and `ca.crt`.
///
/// # Errors
/// What is wrong with it.
pub fn read_intermediate(
    tls_key: Option<&[u8]>,
    tls_crt: Option<&[u8]>,
    ca_crt: Option<&[u8]>,
    now: OffsetDateTime,
) -> Result<Intermediate, SecretProblem> {
    let (key_pem, chain_pem, root_pem) = (text(tls_key), text(tls_crt), text(ca_crt));
    if key_pem.trim().is_empty() && chain_pem.trim().is_empty() {
        return Err(SecretProblem::Empty);
    }
    let key = PrivateKey::from_pem(key_pem).map_err(|_| SecretProblem::KeyUnreadable)?;
    let mut chain = parse_certificates_pem(chain_pem)
        .ok()
        .filter(|c| !c.is_empty())
        .ok_or(SecretProblem::CertUnreadable(KEY_TLS_CRT))?;
    let roots = parse_certificates_pem(root_pem)
        .ok()
        .filter(|c| !c.is_empty())
        .ok_or(SecretProblem::CertUnreadable(KEY_CA_CRT))?;
    let cert = chain.remove(0);
    if !cert.is_ca {
        return Err(SecretProblem::NotCa);
    }
    // The root the chain actually reaches is the one pinned (not merely the first in ca.crt).
    let root_sha256 = verify_chain(&cert, &chain, &roots, now)
        .map_err(SecretProblem::Chain)?
        .last()
        .map_or_else(|| sha256_hex(&cert.der), |root| sha256_hex(&root.der));
    let signer = Signer::new(key, cert).map_err(|_| SecretProblem::KeyMismatch)?;
    Ok(Intermediate {
        signer,
        chain_pem: chain_pem.to_string(),
        root_pem: root_pem.to_string(),
        root_sha256,
    })
}

/// When an intermediate valid from `not_before` to `not_after` is renewed: `renew_before` ahead of its
/// end (a third of its life when unset), but never before a third of its life has passed, so that a
/// margin close to the whole life cannot make it renew over and over.
#[must_use]
pub fn renewal_time(
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    renew_before: Option<Duration>,
) -> OffsetDateTime {
    let life = (not_after - not_before).max(time::Duration::ZERO);
    let margin = renew_before
        .and_then(|d| time::Duration::try_from(d).ok())
        .unwrap_or(life / 3)
        .min(life * 2 / 3);
    not_after - margin
}

/// Why a new intermediate is needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Why {
    /// There is none yet.
    Missing,
    /// The one in the Secret cannot be used.
    Invalid(SecretProblem),
    /// The key type or subject in the spec changed.
    SpecChanged,
    /// It was not issued by the NCP CA the spec names (`caTag` changed, or the CA was replaced).
    NotFromCa,
    /// Its renewal time has come.
    RenewalDue,
    /// The renew annotation asked for it.
    Requested(String),
}

impl Why {
    /// Whether the current intermediate may go on signing until its replacement is stored: yes when it
    /// is merely due (renewal, rotation asked, new key type or subject), no when it is not the one the
    /// spec names (another `caTag`).
    #[must_use]
    pub fn current_still_signs(&self) -> bool {
        matches!(
            self,
            Self::SpecChanged | Self::RenewalDue | Self::Requested(_)
        )
    }
}

impl std::fmt::Display for Why {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing => write!(f, "no intermediate yet"),
            Self::Invalid(p) => write!(f, "the intermediate's secret is unusable: {p}"),
            Self::SpecChanged => write!(f, "spec.subordinate key algorithm or subject changed"),
            Self::NotFromCa => write!(
                f,
                "the intermediate was not issued by the NCP CA in spec.caTag"
            ),
            Self::RenewalDue => write!(f, "the intermediate reached its renewal time"),
            Self::Requested(v) => write!(f, "renewal requested ({ANNOTATION_RENEW}={v})"),
        }
    }
}

/// What the issuer controller found.
#[derive(Debug)]
pub struct Observed<'a> {
    /// The intermediate, or why there is none.
    pub current: &'a Result<Intermediate, SecretProblem>,
    /// The Secret's settings digest annotation.
    pub spec_digest: Option<&'a str>,
    /// The Secret's annotation naming the CA that signed the intermediate.
    pub signed_by_tag: Option<&'a str>,
    /// `spec.caTag`.
    pub ca_tag: &'a str,
    /// The NCP CA's own certificate (Get CA), when NCP answered.
    pub ncp_ca: Option<&'a CertInfo>,
    /// The issuer's renew annotation.
    pub renew_request: Option<&'a str>,
    /// The renew annotation value the current intermediate satisfies (from the Secret).
    pub renew_handled: Option<&'a str>,
}

/// Whether `cert` was signed by the CA whose certificate is `ca`: names and signature.
#[must_use]
pub fn signed_by(cert: &CertInfo, ca: &CertInfo) -> bool {
    cert.issuer == ca.subject
        && crate::pki::verify_signed_by(&cert.der, ca.public_key.spki_der()).is_ok()
}

/// Whether a new intermediate is needed, and why (`None`: keep the current one).
#[must_use]
pub fn needs_new(observed: &Observed<'_>, wanted: &Wanted, now: OffsetDateTime) -> Option<Why> {
    let current = match observed.current {
        Ok(i) => i,
        Err(SecretProblem::Empty) => return Some(Why::Missing),
        Err(p) => return Some(Why::Invalid(p.clone())),
    };
    if observed.spec_digest != Some(wanted.digest().as_str()) {
        return Some(Why::SpecChanged);
    }
    if observed.signed_by_tag != Some(observed.ca_tag)
        || observed
            .ncp_ca
            .is_some_and(|ca| !signed_by(current.certificate(), ca))
    {
        return Some(Why::NotFromCa);
    }
    if let Some(v) = observed.renew_request
        && !v.is_empty()
        && observed.renew_handled != Some(v)
    {
        return Some(Why::Requested(v.to_string()));
    }
    let cert = current.certificate();
    if now >= renewal_time(cert.not_before, cert.not_after, wanted.renew_before) {
        return Some(Why::RenewalDue);
    }
    None
}

/// What a `retry-after` annotation applies to: these settings, this CA, this renew request. A change
/// of any of them ends the wait.
#[must_use]
pub fn attempt_key(wanted: &Wanted, ca_tag: &str, renew_request: Option<&str>) -> String {
    sha256_hex(
        format!(
            "{}\0{ca_tag}\0{}",
            wanted.digest(),
            renew_request.unwrap_or_default()
        )
        .as_bytes(),
    )[..16]
        .to_string()
}

/// The `retry-after` annotation's value: `<RFC 3339 time> <attempt key>`, `after` from `now`.
#[must_use]
pub fn retry_after_value(now: Timestamp, after: Duration, key: &str) -> String {
    let ms = i64::try_from(after.as_millis()).unwrap_or(i64::MAX);
    let at = now
        .checked_add(k8s_openapi::jiff::SignedDuration::from_millis(ms))
        .unwrap_or(Timestamp::MAX);
    format!("{at} {key}")
}

/// How long a recorded `retry-after` (`value`) still holds at `now`: only for the attempt `key`, and
/// never longer than [`UNUSABLE_ANSWER_RETRY`] (a hand-edited or skewed time cannot block
/// provisioning).
#[must_use]
pub fn still_waiting(value: &str, key: &str, now: Timestamp) -> Option<Duration> {
    let (at, recorded) = value.split_once(' ')?;
    if recorded != key {
        return None;
    }
    let at = at.parse::<Timestamp>().ok()?;
    let wait = Duration::try_from(now.duration_until(at)).ok()?;
    (!wait.is_zero()).then(|| wait.min(UNUSABLE_ANSWER_RETRY))
}

/// Status of an intermediate.
#[must_use]
pub fn status_of(
    secret_name: &str,
    intermediate: &Intermediate,
    wanted: &Wanted,
    last_renew_request: Option<String>,
) -> SubordinateStatus {
    let cert = intermediate.certificate();
    let rfc = |t: OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    };
    SubordinateStatus {
        secret_name: secret_name.to_string(),
        serial_number: cert.serial.to_colon_hex(),
        subject: cert.subject.to_string(),
        key_algorithm: intermediate.signer.key().key_type().as_str().to_string(),
        root_sha256: intermediate.root_sha256.clone(),
        not_before: rfc(cert.not_before),
        not_after: rfc(cert.not_after),
        renewal_time: rfc(renewal_time(
            cert.not_before,
            cert.not_after,
            wanted.renew_before,
        )),
        last_renew_request,
    }
}

#[cfg(test)]
mod tests;
