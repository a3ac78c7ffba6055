//! The steps that talk to NCP: sign (after recording that signing started), and recovery of a
//! certificate whose answer was lost, by serial or by public key, before any second signing.

use super::decide::{
    self, ANNOTATION_CA_TAG, ANNOTATION_SERIAL, ANNOTATION_SIGNING_STARTED, FINALIZER_REVOKE,
    Issued, Next, reason,
};
use super::status::{self, Update};
use super::{IssuerView, RequestError, backoff, merge_metadata};
use crate::api::certmanager::CertificateRequest;
use crate::controller::Context;
use crate::ncp::types::{IssuedCert, KeyType, Period};
use crate::ncp::{self, NcpError, messages};
use crate::pki::Csr;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt as _;
use kube::runtime::controller::Action;
use std::time::Duration;

use crate::controller::recovery::settle_window;

/// How long ago the start marker was written (zero when unreadable: wait the whole window).
fn marker_age(cr: &CertificateRequest) -> Duration {
    cr.annotations()
        .get(ANNOTATION_SIGNING_STARTED)
        .and_then(|t| t.parse::<Timestamp>().ok())
        .and_then(|t| Duration::try_from(Timestamp::now().duration_since(t)).ok())
        .unwrap_or_default()
}

/// Runs a signing or recovery step.
pub(super) async fn run(
    cr: &CertificateRequest,
    ctx: &Context,
    issuer: &IssuerView,
    ncp: &ncp::Client,
    step: Next,
) -> Result<Action, RequestError> {
    let csr = match parse_csr(cr) {
        Ok(csr) => csr,
        Err(msg) => return fail(cr, ctx, &msg).await,
    };
    match step {
        Next::RecoverBySerial { ca_tag, serial } => {
            let ca_tag = if ca_tag.is_empty() {
                issuer.spec.ca_tag.clone()
            } else {
                ca_tag
            };
            match ncp.get_end_cert(&ca_tag, &serial).await {
                Ok(cert) => finish(cr, ctx, &csr, &cert.cert_pem, &cert.ca_chain, &serial).await,
                Err(e) if e.is_cert_not_found() => {
                    fail(cr, ctx, &format!("certificate {serial} recorded on this request no longer exists in NCP CA {ca_tag}")).await
                }
                Err(e) => retry_or_fail(cr, ctx, &e).await,
            }
        }
        Next::RecoverByKey { ca_tag } => {
            let ca_tag = if ca_tag.is_empty() {
                issuer.spec.ca_tag.clone()
            } else {
                ca_tag
            };
            match find_by_key(cr, ncp, &ca_tag, &csr).await {
                Ok(Some((serial, cert_pem, chain))) => {
                    tracing::info!(name = %cr.name_any(), serial, "recovered a certificate whose signing answer was lost");
                    record_serial(cr, ctx, &ca_tag, &serial).await?;
                    finish(cr, ctx, &csr, &cert_pem, &chain, &serial).await
                }
                Ok(None) => {
                    // A call that timed out may still be running inside NCP: only once the marker is older
                    // than the settle window is "not found" proof that it never took effect.
                    let settle = settle_window(ctx);
                    let age = marker_age(cr);
                    if age < settle {
                        return Ok(Action::requeue(settle - age));
                    }
                    // NCP has no certificate for this key since the marker: signing again is safe.
                    clear_marker(cr, ctx).await?;
                    Ok(Action::requeue(Duration::from_millis(100)))
                }
                Err(e) => retry_or_fail(cr, ctx, &e).await,
            }
        }
        _ => sign(cr, ctx, issuer, ncp, &csr).await,
    }
}

/// The request's duration, cert-manager's default when unset.
pub(super) fn requested_duration(cr: &CertificateRequest) -> Result<Duration, String> {
    match cr.spec.duration.as_deref() {
        Some(d) => decide::parse_go_duration(d).map_err(|e| e.to_string()),
        None => Ok(decide::DEFAULT_DURATION),
    }
}

pub(super) fn parse_csr(cr: &CertificateRequest) -> Result<Csr, String> {
    let text = String::from_utf8(cr.spec.request.0.clone())
        .map_err(|_| "spec.request is not a PEM CSR".to_string())?;
    Csr::from_pem(&text).map_err(|e| format!("spec.request is not a valid CSR: {e}"))
}

async fn sign(
    cr: &CertificateRequest,
    ctx: &Context,
    issuer: &IssuerView,
    ncp: &ncp::Client,
    csr: &Csr,
) -> Result<Action, RequestError> {
    let algorithm = csr.public_key().algorithm();
    if algorithm.key_type().is_none() {
        let supported: Vec<String> = KeyType::ALL
            .iter()
            .map(|k| crate::pki::KeyAlgorithm::from(*k).to_string())
            .collect();
        return fail(
            cr,
            ctx,
            &format!(
                "unsupported key {algorithm}: NCP Private CA signs {}",
                supported.join(", ")
            ),
        )
        .await;
    }
    let requested = match requested_duration(cr) {
        Ok(d) => d,
        Err(msg) => return fail(cr, ctx, &msg).await,
    };
    let now = Timestamp::now().as_second();
    let days = match decide::period_days(requested, now, issuer.ca_not_after_unix) {
        Ok(d) => d,
        Err(e) => return fail(cr, ctx, &e.to_string()).await,
    };
    let ca_tag = issuer.spec.ca_tag.clone();
    // Record that signing starts before calling NCP: from here on a retry recovers instead of signing.
    let hold = issuer.spec.revocation_policy != crate::api::RevocationPolicy::Never;
    match mark_started(cr, ctx, &ca_tag, hold).await {
        Ok(()) => {}
        // Someone else changed the request in between (another replica, cert-manager): look again.
        Err(RequestError::Kube {
            source: kube::Error::Api(s),
            ..
        }) if s.code == 409 => return Ok(Action::requeue(Duration::from_millis(200))),
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
            // If this write is lost, the next reconcile finds the certificate by its key.
            record_serial(cr, ctx, &ca_tag, &serial_no).await?;
            finish(cr, ctx, csr, &certificate, &ca_chain, &serial_no).await
        }
        Err(e) => {
            if e.certainly_not_applied() {
                clear_marker(cr, ctx).await?;
            }
            retry_or_fail(cr, ctx, &e).await
        }
    }
}

async fn finish(
    cr: &CertificateRequest,
    ctx: &Context,
    csr: &Csr,
    cert_pem: &str,
    chain: &[String],
    serial: &str,
) -> Result<Action, RequestError> {
    let issued: Issued = match decide::assemble(
        csr.public_key().spki_der(),
        cert_pem,
        chain,
        time::OffsetDateTime::now_utc(),
    ) {
        Ok(i) => i,
        Err(e) => return fail(cr, ctx, &format!("certificate {serial}: {e}")).await,
    };
    let not_after = issued
        .not_after
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let msg =
        format!("certificate issued by NCP Private CA, serial {serial}, valid until {not_after}");
    let missing = decide::missing_usages(&cr.spec.usages, &issued.leaf_der);
    status::issued(cr, ctx, issued, &msg, false).await?;
    if !missing.is_empty() {
        let note = format!(
            "NCP Private CA takes no usage parameter and the issued certificate does not allow: {}",
            missing.join(", ")
        );
        status::event(cr, ctx, true, "UsagesNotHonoured", &note).await;
    }
    Ok(Action::await_change())
}

pub(super) async fn fail(
    cr: &CertificateRequest,
    ctx: &Context,
    msg: &str,
) -> Result<Action, RequestError> {
    status::apply(cr, ctx, Update::failed(reason::FAILED, msg)).await?;
    status::event(cr, ctx, true, reason::FAILED, msg).await;
    ctx.metrics.certificate_failed(
        cr.spec.issuer_ref.kind.as_deref().unwrap_or_default(),
        reason::FAILED,
    );
    // Final: never touched again.
    Ok(Action::await_change())
}

async fn retry_or_fail(
    cr: &CertificateRequest,
    ctx: &Context,
    e: &NcpError,
) -> Result<Action, RequestError> {
    // Problems of the issuer rather than of this request (credentials, the CA's status or its signing
    // limit): the request waits, as it does while its issuer is not Ready.
    let issuer_level = e.is_auth_failure()
        || matches!(
            e.service_msg(),
            Some(m) if m == messages::INVALID_CA_STATUS.msg || m == messages::SIGNING_LIMIT_EXCEEDED.msg
        );
    if issuer_level {
        let msg = format!("waiting for the issuer: {e}");
        if status::apply(cr, ctx, Update::condition("False", reason::PENDING, &msg)).await? {
            status::event(cr, ctx, true, e.reason(), &msg).await;
        }
        return Ok(Action::requeue(super::ISSUER_WAIT));
    }
    // An answer that cannot be read may still mean that NCP signed: ambiguous, so retried (recovery
    // looks for the certificate before any new signing).
    let unreadable_success =
        matches!(e, NcpError::Decode { http_status, .. } if (200..300).contains(http_status));
    if !e.is_retryable() && !unreadable_success {
        let msg = match e.service_msg() {
            Some(m) => format!("NCP refused to sign: {m}"),
            None => e.to_string(),
        };
        return fail(cr, ctx, &msg).await;
    }
    let age = super::request_age(cr);
    if age > ctx.settings.max_retry_duration {
        return fail(
            cr,
            ctx,
            &format!(
                "giving up after {}s of retries: {e}",
                ctx.settings.max_retry_duration.as_secs()
            ),
        )
        .await;
    }
    // The message stays the same across attempts, so a retry writes no status and the backoff holds.
    let msg = format!("{e}; retrying with backoff");
    if status::apply(cr, ctx, Update::condition("False", reason::PENDING, &msg)).await? {
        status::event(cr, ctx, true, e.reason(), &msg).await;
    }
    Ok(Action::requeue(backoff(age)))
}

fn kube_err<'a>(
    cr: &'a CertificateRequest,
    what: &'static str,
) -> impl FnOnce(kube::Error) -> RequestError + 'a {
    move |source| RequestError::Kube {
        what,
        namespace: cr.namespace().unwrap_or_default(),
        name: cr.name_any(),
        source,
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
        .map_err(kube_err(cr, "signing marker"))
}

async fn record_serial(
    cr: &CertificateRequest,
    ctx: &Context,
    ca_tag: &str,
    serial: &str,
) -> Result<(), RequestError> {
    let patch = serde_json::json!({"metadata": {"annotations": {ANNOTATION_SERIAL: serial, ANNOTATION_CA_TAG: ca_tag}}});
    merge_metadata(&ctx.client, cr, &patch)
        .await
        .map_err(kube_err(cr, "serial annotation"))
}

async fn clear_marker(cr: &CertificateRequest, ctx: &Context) -> Result<(), RequestError> {
    let patch =
        serde_json::json!({"metadata": {"annotations": {ANNOTATION_SIGNING_STARTED: null}}});
    merge_metadata(&ctx.client, cr, &patch)
        .await
        .map_err(kube_err(cr, "clear signing marker"))
}

/// Looks for a certificate with the CSR's public key and SANs issued since the start marker.
async fn find_by_key(
    cr: &CertificateRequest,
    ncp: &ncp::Client,
    ca_tag: &str,
    csr: &Csr,
) -> Result<Option<(String, String, Vec<String>)>, NcpError> {
    let started = cr
        .annotations()
        .get(ANNOTATION_SIGNING_STARTED)
        .and_then(|t| t.parse::<Timestamp>().ok())
        .map_or(0, |t| t.as_millisecond());
    crate::controller::recovery::find_issued(ncp, ca_tag, started, |c| {
        c.public_key.spki_der() == csr.public_key().spki_der()
            && csr.sans().iter().all(|san| c.sans.contains(san))
            && c.sans.iter().all(|san| csr.sans().contains(san))
    })
    .await
}
