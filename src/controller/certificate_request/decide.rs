//! Pure decisions of the CertificateRequest controller: what to do next with a request, how a
//! duration becomes NCP's `period`, and how NCP's answer becomes `status.certificate` / `status.ca`.

use crate::api::certmanager::CertificateRequest;
use crate::pki::{CertInfo, parse_certificates_pem, verify_chain};
use std::time::Duration;

/// Annotation written before the NCP signing call: signing may have happened from here on.
pub const ANNOTATION_SIGNING_STARTED: &str = "pca.ncp-issuer.dev/signing-started";
/// Annotation with the serial NCP gave the certificate.
pub const ANNOTATION_SERIAL: &str = "pca.ncp-issuer.dev/serial";
/// Annotation with the CA tag that signed (for recovery and revocation).
pub const ANNOTATION_CA_TAG: &str = "pca.ncp-issuer.dev/ca-tag";
/// Finalizer that revokes the certificate on deletion (per the issuer's revocation policy).
pub const FINALIZER_REVOKE: &str = "pca.ncp-issuer.dev/revoke";

/// cert-manager's default lifetime when `spec.duration` is unset.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(90 * 24 * 3600);
/// NCP's longest period, in days.
pub const MAX_PERIOD_DAYS: u64 = 3650;
const DAY: u64 = 24 * 3600;

/// What to do with a request now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Not for us, or already final: leave it alone.
    Ignore,
    /// Set `Ready=Unknown/Initializing` first.
    Initialize,
    /// Not approved yet: wait for cert-manager's approver (a change will trigger us again).
    AwaitApproval,
    /// Denied: `Ready=False/Denied`, `failureTime`.
    MarkDenied,
    /// A certificate was signed and its serial recorded: fetch it and finish.
    RecoverBySerial {
        /// CA tag.
        ca_tag: String,
        /// Serial.
        serial: String,
    },
    /// Signing started but no serial was recorded: look for the certificate in NCP before signing again.
    RecoverByKey {
        /// CA tag.
        ca_tag: String,
    },
    /// Nothing signed yet: validate, mark, sign.
    Sign,
}

/// Reasons of the Ready condition, as cert-manager defines them.
pub mod reason {
    /// First touch.
    pub const INITIALIZING: &str = "Initializing";
    /// Waiting on something (issuer, retryable error).
    pub const PENDING: &str = "Pending";
    /// Failed for good.
    pub const FAILED: &str = "Failed";
    /// Denied by an approver.
    pub const DENIED: &str = "Denied";
    /// Issued.
    pub const ISSUED: &str = "Issued";
}

/// Decides the next step for a request already known to be ours.
#[must_use]
pub fn next(cr: &CertificateRequest) -> Next {
    if let Some(ready) = cr.condition("Ready") {
        let final_state = ready.status == "True"
            || matches!(
                ready.reason.as_deref(),
                Some(reason::FAILED | reason::DENIED)
            );
        if final_state {
            return Next::Ignore;
        }
    }
    if cr.condition_true("Denied") {
        return Next::MarkDenied;
    }
    if cr.condition("Ready").is_none() {
        return Next::Initialize;
    }
    if !cr.condition_true("Approved") {
        return Next::AwaitApproval;
    }
    let annotations = cr.metadata.annotations.clone().unwrap_or_default();
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

/// Why a duration cannot be mapped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Not a Go duration.
    #[error("spec.duration {0:?} is not a duration")]
    Unparsable(String),
    /// The CA expires within a day.
    #[error(
        "the CA expires at {ca_not_after}, less than a day from now: NCP cannot issue for a shorter period"
    )]
    CaExpiresTooSoon {
        /// The CA's NotAfter.
        ca_not_after: String,
    },
}

/// Parses a Go duration (`"2160h0m0s"`, `"1h30m"`, `"90s"`, `"1.5h"`).
///
/// # Errors
/// When the text is not a positive duration.
pub fn parse_go_duration(text: &str) -> Result<Duration, DurationError> {
    let err = || DurationError::Unparsable(text.to_string());
    let s = text.trim();
    if s.is_empty() || s.starts_with('-') {
        return Err(err());
    }
    let s = s.strip_prefix('+').unwrap_or(s);
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(err)?;
        if num_len == 0 {
            return Err(err());
        }
        let value: f64 = rest[..num_len].parse().map_err(|_| err())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(err()),
        };
        total += value * scale;
        rest = &rest[unit_len..];
    }
    if !total.is_finite() || total > 1e12 {
        return Err(err());
    }
    Ok(Duration::from_secs_f64(total))
}

/// NCP `period` for a request: whole days rounded up, clamped to 1..=3650 and to the CA's remaining
/// life (whole days, rounded down, so the certificate never outlives the CA).
///
/// # Errors
/// When the CA expires within a day.
pub fn period_days(
    requested: Duration,
    now_unix: i64,
    ca_not_after_unix: Option<i64>,
) -> Result<u64, DurationError> {
    let days = requested.as_secs().div_ceil(DAY).clamp(1, MAX_PERIOD_DAYS);
    let Some(ca_end) = ca_not_after_unix else {
        return Ok(days);
    };
    let left = u64::try_from(ca_end.saturating_sub(now_unix)).unwrap_or(0) / DAY;
    if left < 1 {
        return Err(DurationError::CaExpiresTooSoon {
            ca_not_after: k8s_openapi::jiff::Timestamp::from_second(ca_end)
                .map(|t| t.to_string())
                .unwrap_or_else(|_| ca_end.to_string()),
        });
    }
    Ok(days.min(left))
}

/// Validity of a certificate signed in the cluster: from `now` for `requested`, ending no later than the
/// intermediate (`ca_not_after`). Returns the window and whether it was shortened.
///
/// # Errors
/// When the intermediate has already expired.
pub fn local_validity(
    requested: Duration,
    now: time::OffsetDateTime,
    ca_not_after: time::OffsetDateTime,
) -> Result<(crate::pki::Validity, bool), crate::pki::PkiError> {
    let wanted = time::Duration::try_from(requested)
        .ok()
        .and_then(|d| now.checked_add(d))
        .unwrap_or(ca_not_after);
    let clamped = wanted > ca_not_after;
    crate::pki::Validity::new(now, wanted.min(ca_not_after)).map(|v| (v, clamped))
}

/// Why NCP's answer cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The certificate or the chain does not parse.
    #[error("ncp returned an unparsable certificate: {0}")]
    Parse(String),
    /// The certificate's key is not the CSR's.
    #[error("ncp returned a certificate for a different public key than the request's")]
    KeyMismatch,
    /// The chain does not verify.
    #[error("ncp returned a chain that does not verify: {0}")]
    Verify(String),
    /// NCP returned no certificate.
    #[error("ncp returned no certificate")]
    Empty,
}

/// What goes into the request's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    /// Leaf then intermediates (PEM), never the self-signed root.
    pub certificate_pem: String,
    /// The root (PEM).
    pub ca_pem: String,
    /// End of the leaf's validity.
    pub not_after: time::OffsetDateTime,
    /// Colon-hex serial of the leaf.
    pub serial: String,
    /// The leaf, DER.
    pub leaf_der: Vec<u8>,
}

/// Builds `status.certificate` and `status.ca` from NCP's certificate and chain (any order), after
/// checking that the certificate carries the expected key (the CSR's, as DER SubjectPublicKeyInfo) and
/// that the chain verifies to a root.
///
/// # Errors
/// When anything does not parse, the key differs from the CSR's, or the chain does not verify.
pub fn assemble(
    spki_der: &[u8],
    certificate_pem: &str,
    chain_pems: &[String],
    now: time::OffsetDateTime,
) -> Result<Issued, ChainError> {
    let leaf = parse_certificates_pem(certificate_pem)
        .map_err(|e| ChainError::Parse(e.to_string()))?
        .into_iter()
        .next()
        .ok_or(ChainError::Empty)?;
    if leaf.public_key.spki_der() != spki_der {
        return Err(ChainError::KeyMismatch);
    }
    let mut pool: Vec<CertInfo> = Vec::new();
    for pem in chain_pems {
        for cert in parse_certificates_pem(pem).map_err(|e| ChainError::Parse(e.to_string()))? {
            if cert.der != leaf.der && !pool.iter().any(|c| c.der == cert.der) {
                pool.push(cert);
            }
        }
    }
    // Trust anchors: the self-signed certificates NCP sent; when there is none (an intermediate whose
    // root lives elsewhere), the top of what was sent.
    let (mut roots, mut intermediates): (Vec<CertInfo>, Vec<CertInfo>) =
        pool.into_iter().partition(CertInfo::is_self_signed);
    if roots.is_empty() {
        let top = intermediates
            .iter()
            .position(|c| {
                !intermediates
                    .iter()
                    .any(|o| o.der != c.der && c.issuer == o.subject)
            })
            .ok_or_else(|| ChainError::Verify("no issuer certificate in the chain".into()))?;
        roots.push(intermediates.remove(top));
    }
    let path = verify_chain(&leaf, &intermediates, &roots, now)
        .map_err(|e| ChainError::Verify(e.to_string()))?;
    let Some((root, above_leaf)) = path.split_last() else {
        return Err(ChainError::Verify("the certificate is its own root".into()));
    };
    let mut certificate_pem = leaf.to_pem();
    for c in above_leaf {
        certificate_pem.push_str(&c.to_pem());
    }
    Ok(Issued {
        certificate_pem,
        ca_pem: root.to_pem(),
        not_after: leaf.not_after,
        serial: leaf.serial.to_string(),
        leaf_der: leaf.der.clone(),
    })
}

/// The requested cert-manager usages that the issued certificate does not allow. NCP takes no usage
/// parameter, so this is how a request learns that it got less than it asked for. An absent keyUsage
/// or extendedKeyUsage extension restricts nothing (RFC 5280).
#[must_use]
pub fn missing_usages(requested: &[String], leaf_der: &[u8]) -> Vec<String> {
    use x509_parser::extensions::ParsedExtension;
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(leaf_der) else {
        return requested.to_vec();
    };
    let mut ku = None;
    let mut eku = None;
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::KeyUsage(k) => ku = Some(*k),
            ParsedExtension::ExtendedKeyUsage(e) => eku = Some(e.clone()),
            _ => {}
        }
    }
    let has_ku = |f: fn(&x509_parser::extensions::KeyUsage) -> bool| ku.as_ref().is_none_or(f);
    let has_eku = |f: fn(&x509_parser::extensions::ExtendedKeyUsage) -> bool| {
        eku.as_ref().is_none_or(|e| e.any || f(e))
    };
    requested
        .iter()
        .filter(|usage| {
            let allowed = match usage.as_str() {
                "signing" | "digital signature" => has_ku(|k| k.digital_signature()),
                "content commitment" => has_ku(|k| k.non_repudiation()),
                "key encipherment" => has_ku(|k| k.key_encipherment()),
                "key agreement" => has_ku(|k| k.key_agreement()),
                "data encipherment" => has_ku(|k| k.data_encipherment()),
                "cert sign" => has_ku(|k| k.key_cert_sign()),
                "crl sign" => has_ku(|k| k.crl_sign()),
                "encipher only" => has_ku(|k| k.encipher_only()),
                "decipher only" => has_ku(|k| k.decipher_only()),
                "any" => eku.as_ref().is_none_or(|e| e.any),
                "server auth" => has_eku(|e| e.server_auth),
                "client auth" => has_eku(|e| e.client_auth),
                "code signing" => has_eku(|e| e.code_signing),
                "email protection" | "s/mime" => has_eku(|e| e.email_protection),
                "timestamping" => has_eku(|e| e.time_stamping),
                "ocsp signing" => has_eku(|e| e.ocsp_signing),
                // Usages x509-parser does not name (ipsec, sgc): only an absent extension allows them.
                _ => eku.is_none(),
            };
            !allowed
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::certmanager::{
        CertificateRequestSpec, CertificateRequestStatus, RequestCondition,
    };

    fn cr(
        conditions: &[(&str, &str, Option<&str>)],
        annotations: &[(&str, &str)],
    ) -> CertificateRequest {
        let mut cr = CertificateRequest::new("r", CertificateRequestSpec::default());
        cr.status = Some(CertificateRequestStatus {
            conditions: conditions
                .iter()
                .map(|(t, s, r)| RequestCondition {
                    type_: (*t).into(),
                    status: (*s).into(),
                    reason: r.map(Into::into),
                    ..RequestCondition::default()
                })
                .collect(),
            ..CertificateRequestStatus::default()
        });
        cr.metadata.annotations = Some(
            annotations
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
        );
        cr
    }

    #[test]
    fn a_fresh_request_is_initialized_first() {
        assert_eq!(next(&cr(&[], &[])), Next::Initialize);
    }

    #[test]
    fn an_unapproved_request_is_left_waiting() {
        assert_eq!(
            next(&cr(&[("Ready", "Unknown", Some("Initializing"))], &[])),
            Next::AwaitApproval
        );
    }

    #[test]
    fn a_denied_request_is_marked_denied_even_before_initialisation() {
        assert_eq!(
            next(&cr(&[("Denied", "True", None)], &[])),
            Next::MarkDenied
        );
    }

    #[test]
    fn final_states_are_never_touched_again() {
        assert_eq!(
            next(&cr(&[("Ready", "True", Some("Issued"))], &[])),
            Next::Ignore
        );
        assert_eq!(
            next(&cr(
                &[
                    ("Ready", "False", Some("Failed")),
                    ("Approved", "True", None)
                ],
                &[]
            )),
            Next::Ignore
        );
        assert_eq!(
            next(&cr(
                &[("Ready", "False", Some("Denied")), ("Denied", "True", None)],
                &[]
            )),
            Next::Ignore
        );
    }

    #[test]
    fn an_approved_request_signs_unless_signing_already_started() {
        let approved = [
            ("Ready", "False", Some("Pending")),
            ("Approved", "True", None),
        ];
        assert_eq!(next(&cr(&approved, &[])), Next::Sign);
        assert_eq!(
            next(&cr(
                &approved,
                &[(ANNOTATION_SIGNING_STARTED, "t"), (ANNOTATION_CA_TAG, "ca")]
            )),
            Next::RecoverByKey {
                ca_tag: "ca".into()
            }
        );
        assert_eq!(
            next(&cr(
                &approved,
                &[
                    (ANNOTATION_SIGNING_STARTED, "t"),
                    (ANNOTATION_CA_TAG, "ca"),
                    (ANNOTATION_SERIAL, "0a")
                ]
            )),
            Next::RecoverBySerial {
                ca_tag: "ca".into(),
                serial: "0a".into()
            }
        );
    }

    #[test]
    fn go_durations_parse() {
        assert_eq!(
            parse_go_duration("2160h0m0s").unwrap(),
            Duration::from_secs(2160 * 3600)
        );
        assert_eq!(
            parse_go_duration("1h30m").unwrap(),
            Duration::from_secs(5400)
        );
        assert_eq!(
            parse_go_duration("1.5h").unwrap(),
            Duration::from_secs(5400)
        );
        assert_eq!(parse_go_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_go_duration("0").unwrap(), Duration::ZERO);
        for bad in ["", "-1h", "h", "1x", "1", "abc", "1h-2m"] {
            assert!(parse_go_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn period_rounds_up_and_clamps_to_ncp_limits() {
        let day = 24 * 3600;
        assert_eq!(
            period_days(Duration::from_secs(3600), 0, None).unwrap(),
            1,
            "under a day is one day, not zero"
        );
        assert_eq!(
            period_days(Duration::from_secs(day + 1), 0, None).unwrap(),
            2
        );
        assert_eq!(
            period_days(Duration::from_secs(90 * day), 0, None).unwrap(),
            90
        );
        assert_eq!(
            period_days(Duration::from_secs(5000 * day), 0, None).unwrap(),
            3650
        );
        assert_eq!(period_days(Duration::ZERO, 0, None).unwrap(), 1);
    }

    #[test]
    fn period_never_outlives_the_ca() {
        let day = 24 * 3600;
        let now = 1_000_000;
        assert_eq!(
            period_days(
                Duration::from_secs(90 * day),
                now,
                Some(now + 10 * day as i64 + 5)
            )
            .unwrap(),
            10
        );
        assert!(matches!(
            period_days(Duration::from_secs(day), now, Some(now + 3600)),
            Err(DurationError::CaExpiresTooSoon { .. })
        ));
    }

    fn leaf_with(
        kus: Vec<rcgen::KeyUsagePurpose>,
        ekus: Vec<rcgen::ExtendedKeyUsagePurpose>,
    ) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["a.example".to_string()]).unwrap();
        params.key_usages = kus;
        params.extended_key_usages = ekus;
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn usages_the_certificate_allows_are_not_reported() {
        let der = leaf_with(
            vec![
                rcgen::KeyUsagePurpose::DigitalSignature,
                rcgen::KeyUsagePurpose::KeyEncipherment,
            ],
            vec![
                rcgen::ExtendedKeyUsagePurpose::ServerAuth,
                rcgen::ExtendedKeyUsagePurpose::ClientAuth,
            ],
        );
        let asked: Vec<String> = [
            "digital signature",
            "key encipherment",
            "server auth",
            "client auth",
        ]
        .map(String::from)
        .to_vec();
        assert!(missing_usages(&asked, &der).is_empty());
    }

    #[test]
    fn usages_the_certificate_lacks_are_reported() {
        let der = leaf_with(
            vec![rcgen::KeyUsagePurpose::DigitalSignature],
            vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth],
        );
        let asked: Vec<String> = ["digital signature", "code signing", "cert sign"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            missing_usages(&asked, &der),
            vec!["code signing".to_string(), "cert sign".to_string()]
        );
    }

    #[test]
    fn absent_extensions_restrict_nothing() {
        let der = leaf_with(vec![], vec![]);
        let asked: Vec<String> = ["code signing", "cert sign", "ipsec user"]
            .map(String::from)
            .to_vec();
        assert!(missing_usages(&asked, &der).is_empty());
    }

    #[test]
    fn a_locally_signed_certificate_lasts_as_asked_but_never_past_its_signer() {
        let now = time::macros::datetime!(2026-06-01 00:00 UTC);
        let end = time::macros::datetime!(2026-07-01 00:00 UTC);
        let (v, clamped) = local_validity(Duration::from_secs(3600), now, end).unwrap();
        assert_eq!(
            (v.not_before, v.not_after),
            (now, now + time::Duration::HOUR)
        );
        assert!(!clamped);
        let (v, clamped) = local_validity(DEFAULT_DURATION, now, end).unwrap();
        assert_eq!(v.not_after, end);
        assert!(clamped);
        assert!(local_validity(DEFAULT_DURATION, end, now).is_err());
    }
}
