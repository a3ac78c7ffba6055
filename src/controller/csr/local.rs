//! Signing a CSR in the cluster with a subordinate issuer's intermediate: no NCP call, no start
//! marker (NCP's issuance limit and double-signing concern do not apply); the issued write is
//! conditional on the CSR being unchanged since it was read.

use super::decide::{requested_duration, requests_ca};
use super::sign::{parse_csr, rfc3339, usages};
use super::status::Outcome;
use crate::controller::certificate_request::IssuerView;
use crate::controller::delays::ISSUER_WAIT;
use crate::controller::period::local_validity;
use crate::controller::{Context, subordinate};
use crate::pki::{IssueOptions, Usages, assemble};
use crate::reason::Reason;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use time::OffsetDateTime;

/// Why a subordinate issuer refuses a CA request (also in docs/kubernetes-native-signing.md).
pub const IS_CA_REFUSED: &str = "a subordinate issuer signs end-entity certificates only: use an issuer without spec.subordinate for CA certificates (NCP Sign Sub Csr)";

/// Signs the CSR in the cluster with the subordinate issuer's intermediate.
pub(super) async fn sign(
    csr: &CertificateSigningRequest,
    ctx: &Context,
    issuer: &IssuerView,
) -> Outcome {
    let Some(sub) = &issuer.spec.subordinate else {
        // The plan sends only subordinate issuers here.
        return Outcome::requeue(ISSUER_WAIT);
    };
    let request = match parse_csr(csr) {
        Ok(r) => r,
        Err(e) => return Outcome::failed(Reason::InvalidRequest, &e.to_string()),
    };
    if requests_ca(csr) || request.requests_ca() {
        return Outcome::failed(Reason::CARequestRefused, IS_CA_REFUSED);
    }
    let usages = match Usages::from_cert_manager(usages(csr)) {
        Ok(u) => u,
        Err(e) => return Outcome::failed(Reason::InvalidRequest, &format!("spec.usages: {e}")),
    };
    let requested = match requested_duration(csr) {
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
            return Outcome::waiting(&format!("waiting for the intermediate: {why}"), ISSUER_WAIT);
        }
    };
    let intermediate = &signer.intermediate;
    let now = OffsetDateTime::now_utc();
    let Ok((validity, clamped)) =
        local_validity(requested, now, intermediate.certificate().not_after)
    else {
        return Outcome::waiting(
            "waiting for the intermediate: it has expired and is being renewed",
            ISSUER_WAIT,
        );
    };
    let mut opts = IssueOptions::new(validity);
    opts.usages = Some(usages);
    let leaf = match request.sign_leaf(&intermediate.signer, &opts) {
        Ok(c) => c,
        Err(e) => {
            return Outcome::failed(Reason::SigningFailed, &format!("cannot sign the CSR: {e}"));
        }
    };
    let chain = [
        intermediate.chain_pem.clone(),
        intermediate.root_pem.clone(),
    ];
    let issued = match assemble(request.public_key().spki_der(), &leaf.to_pem(), &chain, now) {
        Ok(i) => i,
        Err(e) => {
            return Outcome::failed(
                Reason::CertificateUnusable,
                &format!("locally signed certificate: {e}"),
            );
        }
    };
    let note = format!(
        "certificate signed in the cluster by intermediate {}, serial {}, valid until {}{}",
        intermediate.certificate().serial.to_colon_hex(),
        issued.serial,
        rfc3339(issued.not_after),
        if clamped {
            " (shortened to the intermediate's end)"
        } else {
            ""
        }
    );
    // Conditional: a reconcile working from a stale copy must not sign and write again.
    Outcome::issued(issued, &note, csr.metadata.resource_version.clone())
}
