//! The steps that talk to NCP: sign (after recording that signing started), and recovery of a
//! certificate whose answer was lost, by serial or by public key, before any second signing. Each
//! returns the [`Outcome`] the reconcile writes; their own writes are the request's at-most-once
//! metadata only (start marker with finalizer, serial, cleared marker).

use super::decide::{NcpStep, request_age};
use super::error::RequestError;
use super::issuers::IssuerView;
use super::marker::{self, Recovery};
use super::metadata::{merge_metadata, record_serial, request_name};
use super::status::Outcome;
use crate::api::RevocationPolicy;
use crate::api::annotations::{ANNOTATION_CA_TAG, ANNOTATION_SIGNING_STARTED, FINALIZER_REVOKE};
use crate::api::certmanager::CertificateRequest;
use crate::controller::Context;
use crate::controller::delays::{CLIENT_WAIT, CONFLICT_RETRY, ISSUER_WAIT, RESIGN_AFTER_CLEAR};
use crate::controller::events::{EventAction, Note};
use crate::controller::failure::{AfterFailure, FailCause, after_failure, after_not_yet_valid};
use crate::controller::period::{self, period_days};
use crate::ncp::types::{IssuedCert, KeyType, Period};
use crate::ncp::{self, NcpError};
use crate::pki::{AssembleError, Csr, assemble_with_skew, missing_usages};
use crate::reason::Reason;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt as _;
use std::time::Duration;

/// Why the request itself cannot be signed; the request fails with this message.
#[derive(Debug, thiserror::Error)]
pub(super) enum BadRequest {
    /// `spec.request` is not PEM text.
    #[error("spec.request is not a PEM CSR")]
    NotPem,
    /// `spec.request` is not a valid CSR.
    #[error("spec.request is not a valid CSR: {0}")]
    Csr(crate::pki::PkiError),
    /// `spec.duration` cannot be used.
    #[error(transparent)]
    Duration(#[from] period::DurationError),
}

/// The request's CSR.
pub(super) fn parse_csr(cr: &CertificateRequest) -> Result<Csr, BadRequest> {
    let text = std::str::from_utf8(&cr.spec.request.0).map_err(|_| BadRequest::NotPem)?;
    Csr::from_pem(text).map_err(BadRequest::Csr)
}

/// The request's duration, cert-manager's default when unset.
pub(super) fn requested_duration(cr: &CertificateRequest) -> Result<Duration, BadRequest> {
    Ok(match cr.spec.duration.as_deref() {
        Some(d) => period::parse_go_duration(d)?,
        None => period::DEFAULT_DURATION,
    })
}

/// Runs a signing or recovery step.
pub(super) async fn run(
    cr: &CertificateRequest,
    ctx: &Context,
    issuer: &IssuerView,
    step: NcpStep,
) -> Result<Outcome, RequestError> {
    let csr = match parse_csr(cr) {
        Ok(csr) => csr,
        Err(e) => return Ok(Outcome::failed(Reason::InvalidRequest, &e.to_string())),
    };
    let Some(ncp) = ctx.ncp_clients.current(&issuer.owner, issuer.generation) else {
        // The issuer's health check has not built a client for this generation yet (just started,
        // or its spec just changed): no write, look again shortly. Requests never read the Secret.
        return Ok(Outcome::requeue(CLIENT_WAIT));
    };
    let ca_tag_or_issuers = |ca_tag: String| {
        if ca_tag.is_empty() {
            issuer.spec.ca_tag.clone()
        } else {
            ca_tag
        }
    };
    match step {
        NcpStep::RecoverBySerial { ca_tag, serial } => {
            let ca_tag = ca_tag_or_issuers(ca_tag);
            Ok(match ncp.get_end_cert(&ca_tag, &serial).await {
                Ok(cert) => finish(cr, ctx, &csr, &cert.cert_pem, &cert.ca_chain, &serial),
                Err(e) if e.is_cert_not_found() => Outcome::failed(
                    Reason::CertificateGone,
                    &format!(
                        "certificate {serial} recorded on this request no longer exists in NCP CA {ca_tag}"
                    ),
                ),
                Err(e) => after_ncp_failure(cr, ctx, &e),
            })
        }
        NcpStep::RecoverByKey { ca_tag } => {
            let ca_tag = ca_tag_or_issuers(ca_tag);
            Ok(
                match marker::recover_by_key(cr, ctx, &ncp, &ca_tag, &csr).await {
                    Recovery::Found(found) => {
                        tracing::info!(request = %request_name(cr), serial = %found.serial, "recovered a certificate whose signing answer was lost");
                        record_serial(&ctx.client, cr, &ca_tag, &found.serial).await?;
                        finish(cr, ctx, &csr, &found.cert_pem, &found.chain, &found.serial)
                    }
                    Recovery::Resign => {
                        clear_marker(cr, ctx).await?;
                        Outcome::requeue(RESIGN_AFTER_CLEAR)
                    }
                    Recovery::Failed(e) => after_ncp_failure(cr, ctx, &e),
                    Recovery::Then(outcome) => outcome,
                },
            )
        }
        NcpStep::Sign => sign(cr, ctx, issuer, &ncp, &csr).await,
    }
}

async fn sign(
    cr: &CertificateRequest,
    ctx: &Context,
    issuer: &IssuerView,
    ncp: &ncp::Client,
    csr: &Csr,
) -> Result<Outcome, RequestError> {
    let algorithm = csr.public_key().algorithm();
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
    let requested = match requested_duration(cr) {
        Ok(d) => d,
        Err(e) => return Ok(Outcome::failed(Reason::InvalidRequest, &e.to_string())),
    };
    let now = Timestamp::now().as_second();
    let days = match period_days(requested, now, issuer.ca_not_after_unix) {
        Ok(d) => d,
        Err(e) => return Ok(Outcome::failed(Reason::InvalidRequest, &e.to_string())),
    };
    let ca_tag = issuer.spec.ca_tag.clone();
    // Record that signing starts before calling NCP: from here on a retry recovers instead of signing.
    let hold = issuer.spec.revocation_policy != RevocationPolicy::Never;
    match mark_started(cr, ctx, &ca_tag, hold).await {
        Ok(()) => {}
        // Someone else changed the request in between (another replica, cert-manager): look again.
        Err(e) if e.is_conflict() => return Ok(Outcome::requeue(CONFLICT_RETRY)),
        Err(e) => return Err(e),
    }
    let csr_pem = csr.to_pem();
    let days32 = u32::try_from(days).unwrap_or(u32::MAX);
    let result = if cr.spec.is_ca {
        ncp.sign_sub_csr(&ca_tag, &csr_pem, days32).await
    } else {
        ncp.sign_end_csr(&ca_tag, &csr_pem, Some(Period::Days(days32)))
            .await
    };
    match result {
        Ok(IssuedCert {
            certificate,
            ca_chain,
            serial_no,
            ..
        }) => {
            let outcome = finish(cr, ctx, csr, &certificate, &ca_chain, &serial_no);
            if outcome
                .update()
                .is_some_and(|u| u.reason() == Reason::Issued)
            {
                // The Issued status carries the certificate (and so its serial); only if that
                // write fails is the serial recorded, and if that is lost too, the next reconcile
                // finds the certificate by its key.
                Ok(outcome.recording_serial_if_unwritten(&ca_tag, &serial_no))
            } else {
                // Signed but not used (not yet valid: NCP's clock ahead; or unusable): the serial
                // is recorded, so a retry reads the certificate back by serial and a deletion can
                // revoke it.
                record_serial(&ctx.client, cr, &ca_tag, &serial_no).await?;
                Ok(outcome)
            }
        }
        Err(e) => {
            if e.is_issuer_level() {
                // The issuer's problem (credentials, CA): its controller checks it again, once for
                // however many requests fail like this.
                ctx.ncp_clients.ask_recheck(&issuer.owner);
            }
            let outcome = after_ncp_failure(cr, ctx, &e);
            // NCP certainly did not sign: the marker goes, so that a retry signs instead of searching
            // NCP (not needed when the request fails for good).
            if !e.may_have_applied() && outcome.update().is_none_or(|u| !u.is_final()) {
                clear_marker(cr, ctx).await?;
            }
            Ok(outcome)
        }
    }
}

/// The Issued outcome for NCP's answer, once the chain verifies and carries the CSR's key; a
/// certificate whose validity starts later than the clock-skew tolerance allows is waited for.
fn finish(
    cr: &CertificateRequest,
    ctx: &Context,
    csr: &Csr,
    cert_pem: &str,
    chain: &[String],
    serial: &str,
) -> Outcome {
    let now = time::OffsetDateTime::now_utc();
    let tolerance = ctx.settings.clock_skew_tolerance;
    let issued = match assemble_with_skew(
        csr.public_key().spki_der(),
        cert_pem,
        chain,
        now,
        time::Duration::try_from(tolerance).unwrap_or(time::Duration::ZERO),
    ) {
        Ok(i) => i,
        Err(AssembleError::NotYetValid { detail, not_before }) => {
            // NCP signed; its clock is ahead of ours. The serial is recorded, so the retry reads the
            // certificate back instead of signing again.
            let starts_in = Duration::try_from(not_before - now).unwrap_or_default();
            let msg = format!(
                "certificate {serial}: {detail}; NCP's clock is ahead of ours by more than the {}s tolerance, so the certificate is used once it is valid",
                tolerance.as_secs()
            );
            return match after_not_yet_valid(starts_in.saturating_sub(tolerance)) {
                AfterFailure::Retry { after } => {
                    Outcome::pending_with_warning(&msg, Reason::CertificateNotYetValid, after)
                }
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
    let not_after = issued
        .not_after
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let missing = missing_usages(&cr.spec.usages, &issued.leaf_der);
    let note =
        format!("certificate issued by NCP Private CA, serial {serial}, valid until {not_after}");
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
fn after_ncp_failure(cr: &CertificateRequest, ctx: &Context, e: &NcpError) -> Outcome {
    let age = request_age(cr, Timestamp::now());
    let budget = ctx.settings.max_retry_duration;
    match after_failure(e, age, budget) {
        AfterFailure::WaitForIssuer => {
            // A problem of the issuer rather than of this request: the request waits, as it does
            // while its issuer is not Ready.
            let msg = format!("waiting for the issuer: {e}");
            Outcome::pending_with_warning(&msg, e.reason(), ISSUER_WAIT)
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
        AfterFailure::Fail {
            cause: FailCause::RetryBudgetSpent | FailCause::NotValidForTooLong,
        } => Outcome::failed(
            Reason::RetryBudgetSpent,
            &format!("giving up after {}s of retries: {e}", budget.as_secs()),
        ),
        // The message stays the same across attempts, so a retry writes no status and the backoff
        // holds.
        AfterFailure::Retry { after } => {
            Outcome::pending_with_warning(&format!("{e}; retrying with backoff"), e.reason(), after)
        }
    }
}

/// Writes the start marker (and, when the policy may revoke, the revocation finalizer), conditional on
/// the request being unchanged since we read it.
async fn mark_started(
    cr: &CertificateRequest,
    ctx: &Context,
    ca_tag: &str,
    hold: bool,
) -> Result<(), RequestError> {
    let mut patch = serde_json::json!({
        "metadata": {
            "resourceVersion": cr.resource_version(),
            "annotations": {
                ANNOTATION_SIGNING_STARTED: Timestamp::now().to_string(),
                ANNOTATION_CA_TAG: ca_tag,
            }
        }
    });
    if hold && !cr.finalizers().iter().any(|f| f == FINALIZER_REVOKE) {
        // A merge patch replaces the whole list: keep everyone else's finalizers.
        let mut finalizers = cr.finalizers().to_vec();
        finalizers.push(FINALIZER_REVOKE.to_string());
        patch["metadata"]["finalizers"] = serde_json::json!(finalizers);
    }
    merge_metadata(&ctx.client, cr, &patch)
        .await
        .map_err(|source| RequestError::WriteMarker {
            request: request_name(cr),
            source,
        })
}

async fn clear_marker(cr: &CertificateRequest, ctx: &Context) -> Result<(), RequestError> {
    let patch =
        serde_json::json!({"metadata": {"annotations": {ANNOTATION_SIGNING_STARTED: null}}});
    merge_metadata(&ctx.client, cr, &patch)
        .await
        .map_err(|source| RequestError::ClearMarker {
            request: request_name(cr),
            source,
        })
}
