//! Signing in the cluster with a subordinate issuer's intermediate (design.md §5): the contract of
//! signing through NCP (approval, reasons, chain, duration clamped to the signer's life), with no NCP
//! call, no start marker and no revocation finalizer (NCP cannot revoke what it did not sign).

use super::issuers::IssuerView;
use super::ncp_steps::{parse_csr, requested_duration};
use super::status::Outcome;
use crate::api::certmanager::CertificateRequest;
use crate::controller::delays::ISSUER_WAIT;
use crate::controller::period::local_validity;
use crate::controller::{Context, subordinate};
use crate::pki::{IssueOptions, Usages, assemble};
use crate::reason::Reason;
use time::OffsetDateTime;

/// Why subordinate mode refuses `isCA` requests (also in the README).
pub const IS_CA_REFUSED: &str = "a subordinate issuer signs end-entity certificates only: a CA below the in-cluster intermediate would sign outside NCP's view and limits; use an issuer without spec.subordinate for CA certificates (NCP Sign Sub Csr)";

/// Signs the request locally.
pub(super) async fn sign(cr: &CertificateRequest, ctx: &Context, issuer: &IssuerView) -> Outcome {
    let Some(sub) = &issuer.spec.subordinate else {
        // The plan sends only subordinate issuers here.
        return Outcome::requeue(ISSUER_WAIT);
    };
    let csr = match parse_csr(cr) {
        Ok(csr) => csr,
        Err(e) => return Outcome::failed(Reason::InvalidRequest, &e.to_string()),
    };
    if cr.spec.is_ca || csr.requests_ca() {
        return Outcome::failed(Reason::CARequestRefused, IS_CA_REFUSED);
    }
    let usages = match Usages::from_cert_manager(&cr.spec.usages) {
        Ok(u) => u,
        Err(e) => return Outcome::failed(Reason::InvalidRequest, &format!("spec.usages: {e}")),
    };
    let requested = match requested_duration(cr) {
        Ok(d) => d,
        Err(e) => return Outcome::failed(Reason::InvalidRequest, &e.to_string()),
    };
    let signer = match subordinate::signer_for(
        ctx,
        &issuer.owner,
        &issuer.secret_namespace,
        &sub.secret_name,
        issuer.subordinate_root.as_deref(),
    )
    .await
    {
        Ok(s) => s,
        // Next: the issuer's status change (a new intermediate) wakes us; the requeue is a safety net.
        Err(why) => {
            return Outcome::pending(&format!("waiting for the intermediate: {why}"), ISSUER_WAIT);
        }
    };
    let intermediate = &signer.intermediate;
    let now = OffsetDateTime::now_utc();
    let Ok((validity, clamped)) =
        local_validity(requested, now, intermediate.certificate().not_after)
    else {
        return Outcome::pending(
            "waiting for the intermediate: it has expired and is being renewed",
            ISSUER_WAIT,
        );
    };
    let mut opts = IssueOptions::new(validity);
    opts.usages = Some(usages);
    let leaf = match csr.sign_leaf(&intermediate.signer, &opts) {
        Ok(c) => c,
        Err(e) => {
            return Outcome::failed(
                Reason::SigningFailed,
                &format!("cannot sign the request: {e}"),
            );
        }
    };
    let chain = [
        intermediate.chain_pem.clone(),
        intermediate.root_pem.clone(),
    ];
    let issued = match assemble(csr.public_key().spki_der(), &leaf.to_pem(), &chain, now) {
        Ok(i) => i,
        Err(e) => {
            return Outcome::failed(
                Reason::CertificateUnusable,
                &format!("locally signed certificate: {e}"),
            );
        }
    };
    let rfc = |t: OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    };
    let note = format!(
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
    // not sign and write again (a lost race looks again soon, see `status::write`).
    Outcome::issued(issued, &note, cr.metadata.resource_version.clone())
}
