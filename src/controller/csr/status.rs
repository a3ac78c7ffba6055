//! A CSR's result: what a reconcile ends with ([`Outcome`]: at most one status update, events, a
//! requeue), the pure [`status_body`], and [`write`], the one function that writes a
//! CertificateSigningRequest's status (server-side apply of our `Failed` condition or of
//! `status.certificate`; the Approved and Denied conditions are the approver's and never ours).

use super::error::CsrError;
use crate::controller::events::{EventAction, Note};
use crate::controller::{Context, FIELD_MANAGER};
use crate::pki::Issued;
use crate::reason::Reason;
use base64::Engine as _;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource as _, ResourceExt as _};

/// cert-manager's annotation with the root of a signed CSR (base64 PEM), where its own CSR signers
/// put it.
pub const ANNOTATION_CSR_CA: &str = "experimental.cert-manager.io/ca";

/// The status to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// `Failed=True` with `reason` and `message`.
    Failed {
        /// Why.
        reason: Reason,
        /// What happened, for people.
        message: String,
    },
    /// `status.certificate` (leaf, then intermediates) and the root in cert-manager's CA annotation.
    Issued {
        /// Leaf and intermediates, PEM.
        certificate_pem: String,
        /// The root, PEM.
        ca_pem: String,
        /// Write only if the CSR is still at this resourceVersion.
        resource_version: Option<String>,
    },
}

/// What a reconcile ends with (the shape both native signers share).
pub type Outcome = crate::controller::request_outcome::Outcome<Update>;

impl Outcome {
    /// Failed for good: `Failed=True` with `reason`, a Warning event.
    #[must_use]
    pub fn failed(reason: Reason, message: &str) -> Self {
        Self::await_change()
            .with_update(Update::Failed {
                reason,
                message: message.to_string(),
            })
            .with_event(Note::warning(reason, message, EventAction::Sign))
    }

    /// Signed: the certificate and root, a Normal event with `note`; with `resource_version`, only if
    /// the CSR is unchanged since it was read.
    #[must_use]
    pub fn issued(issued: Issued, note: &str, resource_version: Option<String>) -> Self {
        Self::await_change()
            .with_update(Update::Issued {
                certificate_pem: issued.certificate_pem,
                ca_pem: issued.ca_pem,
                resource_version,
            })
            .with_event(Note::normal(Reason::Issued, note, EventAction::Sign))
    }
}

/// The apply body of `update` (for `Issued`, the status part); `None` when the CSR already says
/// exactly this.
#[must_use]
pub fn status_body(
    csr: &CertificateSigningRequest,
    update: &Update,
    now: k8s_openapi::jiff::Timestamp,
) -> Option<serde_json::Value> {
    let status = match update {
        Update::Failed { reason, message } => {
            let existing = csr
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .and_then(|cs| cs.iter().find(|c| c.type_ == "Failed"));
            if existing.is_some_and(|c| {
                c.status == "True"
                    && c.reason.as_deref() == Some(reason.as_str())
                    && c.message.as_deref() == Some(message.as_str())
            }) {
                return None;
            }
            let at =
                serde_json::to_value(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now))
                    .unwrap_or_default();
            serde_json::json!({"conditions": [{
                "type": "Failed", "status": "True", "reason": reason.as_str(), "message": message,
                "lastUpdateTime": at, "lastTransitionTime": at,
            }]})
        }
        Update::Issued {
            certificate_pem, ..
        } => serde_json::json!({
            "certificate": base64::engine::general_purpose::STANDARD.encode(certificate_pem)
        }),
    };
    Some(serde_json::json!({
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": csr.name_any()},
        "status": status,
    }))
}

fn api(ctx: &Context) -> Api<CertificateSigningRequest> {
    Api::all(ctx.client.clone())
}

/// Applies `outcome` to the CSR: the one place that writes a CSR's status. For a signed CSR the root
/// goes into cert-manager's CA annotation first (a public certificate: harmless if the status write
/// then fails), then `status.certificate`, both conditional when the outcome asks for it. Events are
/// published once the write succeeded (or when there was none).
///
/// # Errors
/// When the API server refuses a write (the error policy retries).
pub async fn write(
    csr: &CertificateSigningRequest,
    ctx: &Context,
    outcome: Outcome,
    issuer_kind: &str,
) -> Result<Action, CsrError> {
    let name = csr.name_any();
    let (update, events, then) = outcome.into_parts();
    if let Some(update) = &update {
        let Some(mut body) = status_body(csr, update, k8s_openapi::jiff::Timestamp::now()) else {
            // Nothing new to say: no write, no event.
            return Ok(then);
        };
        if let Update::Issued {
            ca_pem,
            resource_version,
            ..
        } = update
        {
            let mut meta = serde_json::json!({"metadata": {"annotations": {
                ANNOTATION_CSR_CA: base64::engine::general_purpose::STANDARD.encode(ca_pem)
            }}});
            if let Some(rv) = resource_version {
                meta["metadata"]["resourceVersion"] = rv.clone().into();
            }
            let annotated = match api(ctx)
                .patch(&name, &PatchParams::default(), &Patch::Merge(&meta))
                .await
            {
                Ok(o) => o,
                // Next: the watch brings the newer CSR (signed by a concurrent reconcile, or changed
                // by someone else); the requeue is a safety net.
                Err(kube::Error::Api(s)) if s.code == 409 && resource_version.is_some() => {
                    return Ok(Action::requeue(crate::controller::delays::STALE_RETRY));
                }
                Err(source) => return Err(CsrError::WriteStatus { csr: name, source }),
            };
            if resource_version.is_some() {
                body["metadata"]["resourceVersion"] = annotated.resource_version().into();
            }
        }
        let written = api(ctx)
            .patch_status(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&body),
            )
            .await;
        match written {
            Ok(_) => match update {
                Update::Issued { .. } => ctx.metrics.certificate_issued(issuer_kind),
                Update::Failed { reason, .. } => {
                    ctx.metrics.certificate_failed(issuer_kind, reason.as_str());
                }
            },
            Err(kube::Error::Api(s)) if s.code == 409 => {
                return Ok(Action::requeue(crate::controller::delays::STALE_RETRY));
            }
            Err(source) => return Err(CsrError::WriteStatus { csr: name, source }),
        }
    }
    for note in events {
        ctx.publish(&csr.object_ref(&()), note).await;
    }
    Ok(then)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csr_with(failed: Option<(&str, &str)>) -> CertificateSigningRequest {
        let conditions: Vec<serde_json::Value> = failed
            .map(|(r, m)| {
                vec![serde_json::json!({"type": "Failed", "status": "True", "reason": r, "message": m})]
            })
            .unwrap_or_default();
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "c"},
            "spec": {"signerName": "clusterprivatecas.pca.ncp-issuer.dev/n", "request": ""},
            "status": {"conditions": conditions}
        }))
        .expect("csr")
    }

    #[test]
    fn a_failure_already_written_is_not_written_again_and_approval_is_never_in_the_body() {
        let now = k8s_openapi::jiff::Timestamp::now();
        let update = Update::Failed {
            reason: Reason::NcpRefused,
            message: "no".into(),
        };
        assert!(status_body(&csr_with(Some(("NcpRefused", "no"))), &update, now).is_none());
        let body = status_body(&csr_with(None), &update, now).expect("a write");
        let conditions = body["status"]["conditions"].as_array().expect("conditions");
        assert_eq!(conditions.len(), 1, "only our Failed condition: {body}");
        assert_eq!(conditions[0]["type"], "Failed");
        assert_eq!(conditions[0]["reason"], "NcpRefused");
    }

    #[test]
    fn a_signed_csr_gets_the_certificate_base64_in_its_status() {
        let update = Update::Issued {
            certificate_pem: "PEM".into(),
            ca_pem: "ROOT".into(),
            resource_version: Some("7".into()),
        };
        let body = status_body(
            &csr_with(None),
            &update,
            k8s_openapi::jiff::Timestamp::now(),
        )
        .expect("a write");
        assert_eq!(body["status"]["certificate"], "UEVN");
        assert!(body["status"].get("conditions").is_none());
    }
}
