//! The NCP signing steps of the CSR signer, with the at-most-once rule of CertificateRequests
//! (start marker before the call, serial right after, recovery by serial or by key before any second
//! signing); signing in the cluster is in `local`. Each returns the
//! [`Outcome`] the reconcile writes; their own writes are the CSR's at-most-once annotations only.

use super::decide::{requested_duration, requests_ca};
use super::error::CsrError;
use super::status::Outcome;
use crate::api::annotations::{ANNOTATION_CA_TAG, ANNOTATION_SERIAL, ANNOTATION_SIGNING_STARTED};
use crate::controller::Context;
use crate::controller::certificate_request::IssuerView;
use crate::controller::certificate_request::decide::NcpStep;
use crate::controller::certificate_request::marker::{
    self, AfterNotFound, Marker, after_not_found, read_marker,
};
use crate::controller::delays::{
    CLIENT_WAIT, CONFLICT_RETRY, ISSUER_WAIT, RECOVERY_CONTINUE, RESIGN_AFTER_CLEAR,
};
use crate::controller::events::{EventAction, Note};
use crate::controller::failure::{AfterFailure, FailCause, after_failure, after_not_yet_valid};
use crate::controller::period::period_days;
use crate::controller::recovery::{Search, Sought, Window, extra_skew, find_issued, settle_window};
use crate::ncp::types::{IssuedCert, KeyType, Period};
use crate::ncp::{self, NcpError};
use crate::pki::{AssembleError, Csr, assemble_with_skew, missing_usages};
use crate::reason::Reason;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt as _;
use kube::api::{Api, Patch, PatchParams};
use std::time::Duration;
use time::OffsetDateTime;

/// Why `spec.request` cannot be signed; the CSR fails with this message.
#[derive(Debug, thiserror::Error)]
pub(super) enum BadRequest {
    /// Not PEM text.
    #[error("spec.request is not a PEM CSR")]
    NotPem,
    /// Not a valid CSR.
    #[error("spec.request is not a valid CSR: {0}")]
    Csr(crate::pki::PkiError),
}

pub(super) fn parse_csr(csr: &CertificateSigningRequest) -> Result<Csr, BadRequest> {
    let text = std::str::from_utf8(&csr.spec.request.0).map_err(|_| BadRequest::NotPem)?;
    Csr::from_pem(text).map_err(BadRequest::Csr)
}

pub(super) fn usages(csr: &CertificateSigningRequest) -> &[String] {
    csr.spec.usages.as_deref().unwrap_or_default()
}

fn age(csr: &CertificateSigningRequest) -> Duration {
    csr.metadata
        .creation_timestamp
        .as_ref()
        .and_then(|t| Duration::try_from(Timestamp::now().duration_since(t.0)).ok())
        .unwrap_or_default()
}

pub(super) fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Runs a signing or recovery step through NCP.
pub(super) async fn through_ncp(
    csr: &CertificateSigningRequest,
    ctx: &Context,
    issuer: &IssuerView,
    step: NcpStep,
) -> Result<Outcome, CsrError> {
    let request = match parse_csr(csr) {
        Ok(r) => r,
        Err(e) => return Ok(Outcome::failed(Reason::InvalidRequest, &e.to_string())),
    };
    let Some(ncp) = ctx.ncp_clients.current(&issuer.owner, issuer.generation) else {
        // The issuer's health check has not built a client for this generation yet (just started,
        // or its spec just changed): look again shortly. Requests never read the Secret.
        return Ok(Outcome::requeue(CLIENT_WAIT));
    };
    let or_issuers = |ca_tag: String| {
        if ca_tag.is_empty() {
            issuer.spec.ca_tag.clone()
        } else {
            ca_tag
        }
    };
    match step {
        NcpStep::RecoverBySerial { ca_tag, serial } => {
            let ca_tag = or_issuers(ca_tag);
            Ok(match ncp.get_end_cert(&ca_tag, &serial).await {
                Ok(cert) => finish(csr, ctx, &request, &cert.cert_pem, &cert.ca_chain, &serial),
                Err(e) if e.is_cert_not_found() => Outcome::failed(
                    Reason::CertificateGone,
                    &format!(
                        "certificate {serial} recorded on this CSR no longer exists in NCP CA {ca_tag}"
                    ),
                ),
                Err(e) => after_ncp_failure(csr, ctx, &e),
            })
        }
        NcpStep::RecoverByKey { ca_tag } => {
            let ca_tag = or_issuers(ca_tag);
            let now = Timestamp::now();
            // Recovery by key is only planned with a marker; an unusable one searches since creation.
            let marker = read_marker(
                csr.annotations()
                    .get(ANNOTATION_SIGNING_STARTED)
                    .map(String::as_str),
                now,
            )
            .unwrap_or(Marker::Unparsable);
            let settle = settle_window(ctx);
            let max_retry = ctx.settings.max_retry_duration;
            let created = csr.metadata.creation_timestamp.as_ref().map(|t| t.0);
            let window = marker::window(marker, created, now, settle, max_retry, extra_skew(ctx));
            match find_by_key(csr, ctx, &ncp, &ca_tag, &request, window).await {
                Ok(Search::Found(found)) => {
                    tracing::info!(csr = %csr.name_any(), serial = %found.serial, "recovered a certificate whose signing answer was lost");
                    record_serial(csr, ctx, &ca_tag, &found.serial).await?;
                    Ok(finish(
                        csr,
                        ctx,
                        &request,
                        &found.cert_pem,
                        &found.chain,
                        &found.serial,
                    ))
                }
                // The call budget of this reconcile is spent: the search goes on where it stopped.
                Ok(Search::Unfinished) => Ok(Outcome::requeue(RECOVERY_CONTINUE)),
                Ok(Search::NotFound { started_ms }) => {
                    match after_not_found(
                        marker,
                        started_ms,
                        now,
                        settle,
                        age(csr),
                        max_retry,
                        &ca_tag,
                    ) {
                        AfterNotFound::Wait(after) => Ok(Outcome::requeue(after)),
                        AfterNotFound::Resign => {
                            clear_marker(csr, ctx).await?;
                            Ok(Outcome::requeue(RESIGN_AFTER_CLEAR))
                        }
                        AfterNotFound::Retry { message, after } => Ok(Outcome::requeue(after)
                            .with_event(Note::warning(
                                Reason::MarkerUnusable,
                                message,
                                EventAction::Sign,
                            ))),
                        AfterNotFound::Fail { message } => {
                            Ok(Outcome::failed(Reason::RetryBudgetSpent, &message))
                        }
                    }
                }
                Err(e) => Ok(after_ncp_failure(csr, ctx, &e)),
            }
        }
        NcpStep::Sign => sign(csr, ctx, issuer, &ncp, &request).await,
    }
}

async fn sign(
    csr: &CertificateSigningRequest,
    ctx: &Context,
    issuer: &IssuerView,
    ncp: &ncp::Client,
    request: &Csr,
) -> Result<Outcome, CsrError> {
    let algorithm = request.public_key().algorithm();
    if algorithm.key_type().is_none() {
        let supported: Vec<String> = KeyType::ALL
            .iter()
            .map(|k| crate::pki::KeyAlgorithm::from(*k).to_string())
            .collect();
        let msg = format!(
            "unsupported key {algorithm}: NCP Private CA signs {}",
            supported.join(", ")
        );
        return Ok(Outcome::failed(Reason::UnsupportedKey, &msg));
    }
    let requested = match requested_duration(csr) {
        Ok(d) => d,
        Err(e) => return Ok(Outcome::failed(Reason::InvalidRequest, &e.to_string())),
    };
    let days = match period_days(
        requested,
        Timestamp::now().as_second(),
        issuer.ca_not_after_unix,
    ) {
        Ok(d) => u32::try_from(d).unwrap_or(u32::MAX),
        Err(e) => return Ok(Outcome::failed(Reason::InvalidRequest, &e.to_string())),
    };
    let ca_tag = issuer.spec.ca_tag.clone();
    // The start marker, conditional on the CSR being unchanged since we read it: from here on a retry
    // recovers instead of signing.
    match mark_started(csr, ctx, &ca_tag).await {
        Ok(()) => {}
        Err(e) if e.is_conflict() => return Ok(Outcome::requeue(CONFLICT_RETRY)),
        Err(e) => return Err(e),
    }
    let csr_pem = request.to_pem();
    let result = if requests_ca(csr) {
        ncp.sign_sub_csr(&ca_tag, &csr_pem, days).await
    } else {
        ncp.sign_end_csr(&ca_tag, &csr_pem, Some(Period::Days(days)))
            .await
    };
    match result {
        Ok(IssuedCert {
            certificate,
            ca_chain,
            serial_no,
            ..
        }) => {
            // If this write is lost, the next reconcile finds the certificate by its key.
            record_serial(csr, ctx, &ca_tag, &serial_no).await?;
            Ok(finish(
                csr,
                ctx,
                request,
                &certificate,
                &ca_chain,
                &serial_no,
            ))
        }
        Err(e) => {
            if e.is_issuer_level() {
                // The issuer's problem (credentials, CA): its controller checks it again.
                ctx.ncp_clients.ask_recheck(&issuer.owner);
            }
            let outcome = after_ncp_failure(csr, ctx, &e);
            // NCP certainly did not sign: the marker goes, so that a retry signs instead of searching.
            if !e.may_have_applied() && outcome.update().is_none() {
                clear_marker(csr, ctx).await?;
            }
            Ok(outcome)
        }
    }
}

/// The signed outcome for NCP's answer, once the chain verifies and carries the CSR's key. A validity
/// that starts beyond the clock-skew tolerance (NCP's clock ahead of ours) is waited for: the serial
/// is recorded, so the retry reads the certificate back instead of signing again.
fn finish(
    csr: &CertificateSigningRequest,
    ctx: &Context,
    request: &Csr,
    cert_pem: &str,
    chain: &[String],
    serial: &str,
) -> Outcome {
    let now = OffsetDateTime::now_utc();
    let tolerance = ctx.settings.clock_skew_tolerance;
    let issued = match assemble_with_skew(
        request.public_key().spki_der(),
        cert_pem,
        chain,
        now,
        time::Duration::try_from(tolerance).unwrap_or(time::Duration::ZERO),
    ) {
        Ok(i) => i,
        Err(AssembleError::NotYetValid { detail, not_before }) => {
            let starts_in = std::time::Duration::try_from(not_before - now).unwrap_or_default();
            let msg = format!(
                "certificate {serial}: {detail}; NCP's clock is ahead of ours by more than the {}s tolerance, so the certificate is used once it is valid",
                tolerance.as_secs()
            );
            return match after_not_yet_valid(starts_in.saturating_sub(tolerance)) {
                AfterFailure::Retry { after } => Outcome::requeue(after).with_event(Note::warning(
                    Reason::CertificateNotYetValid,
                    msg,
                    EventAction::Sign,
                )),
                _ => Outcome::failed(Reason::CertificateUnusable, &msg),
            };
        }
        Err(e) => {
            return Outcome::failed(
                Reason::CertificateUnusable,
                &format!("certificate {serial}: {e}"),
            );
        }
    };
    let missing = missing_usages(usages(csr), &issued.leaf_der);
    let note = format!(
        "certificate issued by NCP Private CA, serial {serial}, valid until {}",
        rfc3339(issued.not_after)
    );
    let mut outcome = Outcome::issued(issued, &note, None);
    if !missing.is_empty() {
        outcome = outcome.with_event(Note::warning(
            Reason::UsagesNotHonoured,
            format!(
                "NCP Private CA takes no usage parameter and the issued certificate does not allow: {}",
                missing.join(", ")
            ),
            EventAction::Sign,
        ));
    }
    outcome
}

/// The outcome of a failed NCP call, per the shared classifier.
fn after_ncp_failure(csr: &CertificateSigningRequest, ctx: &Context, e: &NcpError) -> Outcome {
    let budget = ctx.settings.max_retry_duration;
    match after_failure(e, age(csr), budget) {
        AfterFailure::WaitForIssuer => {
            Outcome::waiting(&format!("waiting for the issuer: {e}"), ISSUER_WAIT)
        }
        AfterFailure::Fail {
            cause: FailCause::Refused,
        } => {
            let msg = match e.service_msg() {
                Some(m) => format!("NCP refused to sign: {m}"),
                None => e.to_string(),
            };
            Outcome::failed(Reason::NcpRefused, &msg)
        }
        // (`NotValidForTooLong` comes from the validity check, not from an NCP failure.)
        AfterFailure::Fail {
            cause: FailCause::RetryBudgetSpent | FailCause::NotValidForTooLong,
        } => Outcome::failed(
            Reason::RetryBudgetSpent,
            &format!("giving up after {}s of retries: {e}", budget.as_secs()),
        ),
        AfterFailure::Retry { after } => Outcome::requeue(after).with_event(Note::warning(
            e.reason(),
            format!("{e}; retrying with backoff"),
            EventAction::Sign,
        )),
    }
}

async fn merge(
    ctx: &Context,
    csr: &CertificateSigningRequest,
    patch: &serde_json::Value,
) -> Result<(), kube::Error> {
    Api::<CertificateSigningRequest>::all(ctx.client.clone())
        .patch(
            &csr.name_any(),
            &PatchParams::default(),
            &Patch::Merge(patch),
        )
        .await
        .map(|_| ())
}

async fn mark_started(
    csr: &CertificateSigningRequest,
    ctx: &Context,
    ca_tag: &str,
) -> Result<(), CsrError> {
    let patch = serde_json::json!({"metadata": {
        "resourceVersion": csr.resource_version(),
        "annotations": {
            ANNOTATION_SIGNING_STARTED: Timestamp::now().to_string(),
            ANNOTATION_CA_TAG: ca_tag,
        }
    }});
    merge(ctx, csr, &patch)
        .await
        .map_err(|source| CsrError::WriteMarker {
            csr: csr.name_any(),
            source,
        })
}

async fn record_serial(
    csr: &CertificateSigningRequest,
    ctx: &Context,
    ca_tag: &str,
    serial: &str,
) -> Result<(), CsrError> {
    let patch = serde_json::json!({"metadata": {"annotations": {ANNOTATION_SERIAL: serial, ANNOTATION_CA_TAG: ca_tag}}});
    merge(ctx, csr, &patch)
        .await
        .map_err(|source| CsrError::RecordSerial {
            csr: csr.name_any(),
            source,
        })
}

async fn clear_marker(csr: &CertificateSigningRequest, ctx: &Context) -> Result<(), CsrError> {
    let patch =
        serde_json::json!({"metadata": {"annotations": {ANNOTATION_SIGNING_STARTED: null}}});
    merge(ctx, csr, &patch)
        .await
        .map_err(|source| CsrError::ClearMarker {
            csr: csr.name_any(),
            source,
        })
}

/// A certificate with the CSR's public key and SANs issued in `window`, by the shared bounded search.
async fn find_by_key(
    csr: &CertificateSigningRequest,
    ctx: &Context,
    ncp: &ncp::Client,
    ca_tag: &str,
    request: &Csr,
    window: Window,
) -> Result<Search, NcpError> {
    let sought = Sought::key_and_sans(request.public_key().spki_der(), request.sans());
    let search_id = format!("csr/{}/{}", csr.name_any(), csr.uid().unwrap_or_default());
    find_issued(ncp, &ctx.recovery, ca_tag, &search_id, window, &sought).await
}
