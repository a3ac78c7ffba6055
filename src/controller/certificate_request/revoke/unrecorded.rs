//! A deleted request whose NCP signing started but whose certificate is recorded nowhere (the answer
//! was lost: a start marker, no serial, no certificate in status). Before the request goes, its
//! certificate is looked for in NCP by key, with the recovery used before any second signing
//! ([`find_issued`]), so that it can be revoked per the policy; and when the request is released
//! without revocation, the Warning names what may be left valid.

use super::super::marker::{Marker, read_marker, window};
use super::Blocked;
use super::issued_serial;
use crate::api::annotations::{ANNOTATION_CA_TAG, ANNOTATION_SIGNING_STARTED};
use crate::api::certmanager::CertificateRequest;
use crate::controller::Context;
use crate::controller::recovery::{Search, Sought, extra_skew, find_issued, settle_window};
use crate::ncp;
use crate::pki::{Csr, parse_certificates_pem};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt as _;
use std::time::Duration;

/// What NCP holds for the request's key.
pub(super) enum Found {
    /// The certificate signed for it.
    Certificate {
        /// Its serial, as NCP names it.
        serial: String,
        /// The leaf, DER.
        leaf_der: Vec<u8>,
    },
    /// Nothing: the signing never took effect.
    Nothing,
}

/// The start marker's text, if signing through NCP started.
pub(super) fn marker(cr: &CertificateRequest) -> Option<&str> {
    cr.metadata
        .annotations
        .as_ref()?
        .get(ANNOTATION_SIGNING_STARTED)
        .map(String::as_str)
}

fn marker_time(cr: &CertificateRequest) -> Option<Timestamp> {
    marker(cr)?.parse().ok()
}

/// The CA tag recorded with the marker.
pub(super) fn ca_tag(cr: &CertificateRequest) -> Option<String> {
    cr.annotations()
        .get(ANNOTATION_CA_TAG)
        .filter(|t| !t.is_empty())
        .cloned()
}

/// Looks in NCP CA `ca_tag` for the certificate signed for the request's key and SANs since its
/// start marker (an unparsable marker searches the whole CA).
///
/// # Errors
/// [`Blocked`] when NCP cannot be asked, or a signing call may still be running in NCP (the marker
/// is younger than the settle window): the finalizer stays, within the bounded retry.
pub(super) async fn recover(
    cr: &CertificateRequest,
    ctx: &Context,
    ncp: &ncp::Client,
    ca_tag: &str,
) -> Result<Found, Blocked> {
    let csr = std::str::from_utf8(&cr.spec.request.0)
        .ok()
        .and_then(|text| Csr::from_pem(text).ok());
    let Some(csr) = csr else {
        // NCP never signs what is not a CSR.
        return Ok(Found::Nothing);
    };
    let now = Timestamp::now();
    let settle = settle_window(ctx);
    // `recover` is only asked for a request with a marker; an unusable one searches since creation.
    let marker = read_marker(marker(cr), now).unwrap_or(Marker::Unparsable);
    // The marker's time window (a certificate of the same key signed later belongs to another request:
    // a Certificate with `rotationPolicy: Never` reuses its key).
    let window = window(
        marker,
        cr.metadata.creation_timestamp.as_ref().map(|t| t.0),
        now,
        settle,
        ctx.settings.max_retry_duration,
        extra_skew(ctx),
    );
    let sought = Sought::key_and_sans(csr.public_key().spki_der(), csr.sans());
    let search_id = format!(
        "revoke/{}/{}",
        super::request_name(cr),
        cr.uid().unwrap_or_default()
    );
    let found = find_issued(ncp, &ctx.recovery, ca_tag, &search_id, window, &sought)
        .await
        .map_err(Blocked::Ncp)?;
    match found {
        Search::Found(found) => {
            let leaf_der = parse_certificates_pem(&found.cert_pem)
                .ok()
                .and_then(|certs| certs.into_iter().next())
                .map(|c| c.der)
                .unwrap_or_default();
            return Ok(Found::Certificate {
                serial: found.serial,
                leaf_der,
            });
        }
        Search::Unfinished => {
            return Err(Blocked::Unsure(
                "the search for its certificate in NCP is not finished (bounded per reconcile)",
            ));
        }
        Search::NotFound { started_ms } => {
            // Only a search that started once any signing call had settled proves that NCP never
            // signed (a search resumed over several reconciles keeps its first start).
            if let Marker::At(at) = marker {
                let settle_ms = i64::try_from(settle.as_millis()).unwrap_or(i64::MAX);
                if started_ms < at.as_millisecond().saturating_add(settle_ms) {
                    return Err(Blocked::Unsure(
                        "its signing call may still be running in NCP (the settle window is not over)",
                    ));
                }
            }
        }
    }
    Ok(Found::Nothing)
}

/// What a release without revocation may leave valid, for the Warning: the request, the CA, and the
/// serial or, when none was recorded, the time window in which NCP may have signed (`settle` after
/// the start marker).
pub(super) fn left_valid(cr: &CertificateRequest, settle: Duration) -> String {
    let request = super::request_name(cr);
    let ca = ca_tag(cr).unwrap_or_else(|| "(unknown)".into());
    if let Some(serial) = issued_serial(cr) {
        return format!(
            "certificate {serial} of CertificateRequest {request} in NCP CA {ca} may still be valid"
        );
    }
    let window = match marker_time(cr) {
        Some(t) => {
            let end = t
                .checked_add(settle)
                .map_or_else(|_| "?".to_string(), |e| e.to_string());
            format!("signed between {t} and {end}")
        }
        None => format!(
            "signed at an unknown time (start marker {:?})",
            marker(cr).unwrap_or_default()
        ),
    };
    format!(
        "a certificate of CertificateRequest {request} in NCP CA {ca}, {window}, serial unknown, may exist and still be valid: look for it in NCP and revoke it by hand"
    )
}
