//! The start marker's side of the NCP steps: when signing started, and recovery by public key of a
//! certificate whose signing answer was lost (the marker is set, no serial was recorded).

use super::error::RequestError;
use super::metadata::request_name;
use super::ncp_steps::{after_ncp_failure, clear_marker, finish, record_serial};
use super::status::Outcome;
use crate::api::annotations::ANNOTATION_SIGNING_STARTED;
use crate::api::certmanager::CertificateRequest;
use crate::controller::Context;
use crate::controller::delays::RESIGN_AFTER_CLEAR;
use crate::controller::recovery::{Recovered, find_issued, settle_window};
use crate::ncp::{self, NcpError};
use crate::pki::Csr;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt as _;
use std::time::Duration;

/// How long ago the start marker was written (zero when unreadable: wait the whole window).
fn marker_age(cr: &CertificateRequest) -> Duration {
    marker_time(cr)
        .and_then(|t| Duration::try_from(Timestamp::now().duration_since(t)).ok())
        .unwrap_or_default()
}

fn marker_time(cr: &CertificateRequest) -> Option<Timestamp> {
    cr.annotations()
        .get(ANNOTATION_SIGNING_STARTED)
        .and_then(|t| t.parse::<Timestamp>().ok())
}

/// Recovers the certificate of a request whose signing started but whose serial was never recorded:
/// finishes with it when NCP has it, clears the marker (so that the request is signed again) once
/// "not found" proves that the signing never took effect.
pub(super) async fn recover_by_key(
    cr: &CertificateRequest,
    ctx: &Context,
    ncp: &ncp::Client,
    ca_tag: &str,
    csr: &Csr,
) -> Result<Outcome, RequestError> {
    match find_by_key(cr, ncp, ca_tag, csr).await {
        Ok(Some(found)) => {
            tracing::info!(request = %request_name(cr), serial = %found.serial, "recovered a certificate whose signing answer was lost");
            record_serial(cr, ctx, ca_tag, &found.serial).await?;
            Ok(finish(
                cr,
                csr,
                &found.cert_pem,
                &found.chain,
                &found.serial,
            ))
        }
        Ok(None) => {
            // A call that timed out may still be running inside NCP: only once the marker is
            // older than the settle window is "not found" proof that it never took effect.
            let settle = settle_window(ctx);
            let age = marker_age(cr);
            if age < settle {
                return Ok(Outcome::requeue(settle - age));
            }
            // NCP has no certificate for this key since the marker: signing again is safe.
            clear_marker(cr, ctx).await?;
            Ok(Outcome::requeue(RESIGN_AFTER_CLEAR))
        }
        Err(e) => Ok(after_ncp_failure(cr, ctx, &e)),
    }
}

/// Looks for a certificate with the CSR's public key and SANs issued since the start marker.
async fn find_by_key(
    cr: &CertificateRequest,
    ncp: &ncp::Client,
    ca_tag: &str,
    csr: &Csr,
) -> Result<Option<Recovered>, NcpError> {
    let started = marker_time(cr).map_or(0, |t| t.as_millisecond());
    find_issued(ncp, ca_tag, started, |c| {
        c.public_key.spki_der() == csr.public_key().spki_der()
            && csr.sans().iter().all(|san| c.sans.contains(san))
            && c.sans.iter().all(|san| csr.sans().contains(san))
    })
    .await
}
