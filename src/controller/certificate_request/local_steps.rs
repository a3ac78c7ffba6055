//! Signing in the cluster with a subordinate issuer's intermediate (design.md §5): the contract of
//! signing through NCP (approval, reasons, chain, duration clamped to the signer's life), with no NCP
//! call, no start marker and no revocation finalizer (NCP cannot revoke what it did not sign).

use super::decide::{self, Issued, reason};
use super::ncp_steps::{fail, parse_csr, requested_duration};
use super::status::{self, Update};
use super::{ISSUER_WAIT, IssuerView, RequestError};
use crate::api::certmanager::CertificateRequest;
use crate::controller::{Context, subordinate};
use crate::pki::{IssueOptions, Usages};
use kube::ResourceExt as _;
use kube::runtime::controller::Action;
use time::OffsetDateTime;

/// Why subordinate mode refuses `isCA` requests (also in the README).
pub const IS_CA_REFUSED: &str = "a subordinate issuer signs end-entity certificates only: a CA below the in-cluster intermediate would sign outside NCP's view and limits; use an issuer without spec.subordinate for CA certificates (NCP Sign Sub Csr)";

/// Signs the request locally.
pub(super) async fn sign(
    cr: &CertificateRequest,
    ctx: &Context,
    issuer: &IssuerView,
    secret_name: &str,
) -> Result<Action, RequestError> {
    let csr = match parse_csr(cr) {
        Ok(csr) => csr,
        Err(msg) => return fail(cr, ctx, &msg).await,
    };
    if cr.spec.is_ca || csr.requests_ca() {
        return fail(cr, ctx, IS_CA_REFUSED).await;
    }
    let usages = match Usages::from_cert_manager(&cr.spec.usages) {
        Ok(u) => u,
        Err(e) => return fail(cr, ctx, &format!("spec.usages: {e}")).await,
    };
    let requested = match requested_duration(cr) {
        Ok(d) => d,
        Err(msg) => return fail(cr, ctx, &msg).await,
    };
    let signer = match subordinate::signer_for(
        ctx,
        &issuer.owner,
        &issuer.secret_namespace,
        secret_name,
        issuer.subordinate_root.as_deref(),
    )
    .await
    {
        Ok(s) => s,
        Err(why) => {
            return wait(cr, ctx, &format!("waiting for the intermediate: {why}")).await;
        }
    };
    let intermediate = &signer.intermediate;
    let now = OffsetDateTime::now_utc();
    let Ok((validity, clamped)) =
        decide::local_validity(requested, now, intermediate.certificate().not_after)
    else {
        return wait(
            cr,
            ctx,
            "waiting for the intermediate: it has expired and is being renewed",
        )
        .await;
    };
    let mut opts = IssueOptions::new(validity);
    opts.usages = Some(usages);
    let leaf = match csr.sign_leaf(&intermediate.signer, &opts) {
        Ok(c) => c,
        Err(e) => return fail(cr, ctx, &format!("cannot sign the request: {e}")).await,
    };
    let chain = [
        intermediate.chain_pem.clone(),
        intermediate.root_pem.clone(),
    ];
    let issued: Issued =
        match decide::assemble(csr.public_key().spki_der(), &leaf.to_pem(), &chain, now) {
            Ok(i) => i,
            Err(e) => return fail(cr, ctx, &format!("locally signed certificate: {e}")).await,
        };
    let rfc = |t: OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    };
    let msg = format!(
        "certificate signed in the cluster by intermediate {}, serial {}, valid until {}{}",
        intermediate.certificate().serial.to_colon_hex(),
        issued.serial,
        rfc(issued.not_after),
        if clamped {
            " (shortened to the intermediate's end)"
        } else {
            ""
        }
    );
    // Conditional: a reconcile working from a cached copy that predates our own Issued write must
    // not sign and write again.
    match status::issued(cr, ctx, issued, &msg, true).await {
        Ok(()) => {}
        Err(RequestError::Kube {
            source: kube::Error::Api(s),
            ..
        }) if s.code == 409 => {
            // Next: the watch brings the newer request (already Issued, or changed by someone else).
            return Ok(Action::requeue(super::STALE_RETRY));
        }
        Err(e) => return Err(e),
    }
    tracing::debug!(namespace = %cr.namespace().unwrap_or_default(), name = %cr.name_any(), "signed locally");
    Ok(Action::await_change())
}

async fn wait(cr: &CertificateRequest, ctx: &Context, msg: &str) -> Result<Action, RequestError> {
    status::apply(cr, ctx, Update::condition("False", reason::PENDING, msg)).await?;
    // Next: the issuer's status change (a new intermediate) wakes us; the requeue is a safety net.
    Ok(Action::requeue(ISSUER_WAIT))
}
