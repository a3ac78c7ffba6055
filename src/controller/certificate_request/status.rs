//! Writing a request's status (server-side apply of our `Ready` condition and fields only) and events.

use super::RequestError;
use crate::api::certmanager::{CertificateRequest, RequestCondition};
use crate::controller::{Context, FIELD_MANAGER};
use base64::Engine as _;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource as _, ResourceExt as _};

/// The Ready condition and fields to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    status: &'static str,
    reason: String,
    message: String,
    certificate_pem: Option<String>,
    ca_pem: Option<String>,
    failed: bool,
    /// Apply only if the request is still at this resourceVersion.
    resource_version: Option<String>,
}

impl Update {
    /// A Ready condition only.
    #[must_use]
    pub fn condition(status: &'static str, reason: &str, message: &str) -> Self {
        Self {
            status,
            reason: reason.to_string(),
            message: message.to_string(),
            certificate_pem: None,
            ca_pem: None,
            failed: false,
            resource_version: None,
        }
    }

    /// `Ready=False` with `reason` (Failed or Denied) and `failureTime`.
    #[must_use]
    pub fn failed(reason: &str, message: &str) -> Self {
        Self {
            failed: true,
            ..Self::condition("False", reason, message)
        }
    }

    /// `Ready=True/Issued` with the certificate chain and the CA.
    #[must_use]
    pub fn issued(certificate_pem: String, ca_pem: String, message: &str) -> Self {
        Self {
            certificate_pem: Some(certificate_pem),
            ca_pem: Some(ca_pem),
            ..Self::condition("True", super::reason::ISSUED, message)
        }
    }
}

/// Builds the apply patch; `None` when the request already says exactly this.
#[must_use]
pub fn patch_body(
    cr: &CertificateRequest,
    update: &Update,
    now: Timestamp,
) -> Option<serde_json::Value> {
    let existing = cr.condition("Ready");
    let unchanged = existing.is_some_and(|c| {
        c.status == update.status
            && c.reason.as_deref() == Some(update.reason.as_str())
            && c.message.as_deref() == Some(update.message.as_str())
    });
    if unchanged && update.certificate_pem.is_none() && !update.failed {
        return None;
    }
    let transition = match existing {
        Some(c) if c.status == update.status => c.last_transition_time.clone().unwrap_or(Time(now)),
        _ => Time(now),
    };
    let condition = RequestCondition {
        type_: "Ready".into(),
        status: update.status.into(),
        reason: Some(update.reason.clone()),
        message: Some(update.message.clone()),
        last_transition_time: Some(transition),
        // cert-manager's CertificateRequest conditions have no observedGeneration field.
        observed_generation: None,
    };
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let mut status = serde_json::json!({ "conditions": [condition] });
    if let (Some(cert), Some(ca)) = (&update.certificate_pem, &update.ca_pem) {
        status["certificate"] = b64(cert).into();
        status["ca"] = b64(ca).into();
    }
    if update.failed {
        // failureTime is set once.
        let at = cr
            .status
            .as_ref()
            .and_then(|s| s.failure_time.clone())
            .unwrap_or(Time(now));
        status["failureTime"] = serde_json::to_value(at).unwrap_or_default();
    }
    let mut body = serde_json::json!({
        "apiVersion": "cert-manager.io/v1",
        "kind": "CertificateRequest",
        "status": status,
    });
    if let Some(rv) = &update.resource_version {
        body["metadata"] = serde_json::json!({ "resourceVersion": rv });
    }
    Some(body)
}

/// Applies `update` to the request's status; returns whether anything was written (nothing is when the
/// request already says exactly this).
///
/// # Errors
/// When the API server refuses the write.
pub async fn apply(
    cr: &CertificateRequest,
    ctx: &Context,
    update: Update,
) -> Result<bool, RequestError> {
    let Some(body) = patch_body(cr, &update, Timestamp::now()) else {
        return Ok(false);
    };
    let namespace = cr.namespace().unwrap_or_default();
    let api: Api<CertificateRequest> = Api::namespaced(ctx.client.clone(), &namespace);
    api.patch_status(
        &cr.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map_err(|source| RequestError::Kube {
        what: "status",
        namespace,
        name: cr.name_any(),
        source,
    })?;
    Ok(true)
}

/// Publishes an event on the request (failures to publish are logged, never fatal).
pub async fn event(
    cr: &CertificateRequest,
    ctx: &Context,
    warning: bool,
    reason: &str,
    note: &str,
) {
    ctx.publish(&cr.object_ref(&()), warning, reason, note, "Sign")
        .await;
}

/// Writes an issued certificate (`Ready=True/Issued`), says so in an event, and counts it. With
/// `conditional`, the write applies only if the request is unchanged since `cr` was read (a 409 error
/// otherwise).
///
/// # Errors
/// When the status cannot be written.
pub async fn issued(
    cr: &CertificateRequest,
    ctx: &Context,
    issued: super::decide::Issued,
    note: &str,
    conditional: bool,
) -> Result<(), RequestError> {
    let mut update = Update::issued(
        issued.certificate_pem,
        issued.ca_pem,
        "Certificate fetched from issuer successfully",
    );
    if conditional {
        update.resource_version = cr.metadata.resource_version.clone();
    }
    apply(cr, ctx, update).await?;
    event(cr, ctx, false, super::reason::ISSUED, note).await;
    ctx.metrics
        .certificate_issued(cr.spec.issuer_ref.kind.as_deref().unwrap_or_default());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::certmanager::{CertificateRequestSpec, CertificateRequestStatus};

    fn cr_with_ready(status: &str, reason: &str, message: &str) -> CertificateRequest {
        let mut cr = CertificateRequest::new("r", CertificateRequestSpec::default());
        cr.status = Some(CertificateRequestStatus {
            conditions: vec![RequestCondition {
                type_: "Ready".into(),
                status: status.into(),
                reason: Some(reason.into()),
                message: Some(message.into()),
                last_transition_time: Some(Time(Timestamp::from_second(10).unwrap())),
                observed_generation: None,
            }],
            ..CertificateRequestStatus::default()
        });
        cr
    }

    #[test]
    fn an_unchanged_condition_is_not_written_again() {
        let cr = cr_with_ready("False", "Pending", "waiting");
        assert!(
            patch_body(
                &cr,
                &Update::condition("False", "Pending", "waiting"),
                Timestamp::now()
            )
            .is_none()
        );
        assert!(
            patch_body(
                &cr,
                &Update::condition("False", "Pending", "other"),
                Timestamp::now()
            )
            .is_some()
        );
    }

    #[test]
    fn the_transition_time_is_kept_while_the_status_stays() {
        let cr = cr_with_ready("False", "Pending", "waiting");
        let body = patch_body(
            &cr,
            &Update::failed("Failed", "bad"),
            Timestamp::from_second(99).unwrap(),
        )
        .unwrap();
        assert_eq!(
            body["status"]["conditions"][0]["lastTransitionTime"],
            "1970-01-01T00:00:10Z"
        );
        assert_eq!(body["status"]["failureTime"], "1970-01-01T00:01:39Z");
    }

    #[test]
    fn issued_status_carries_base64_pem_and_only_our_condition() {
        let cr = cr_with_ready("False", "Pending", "waiting");
        let body = patch_body(
            &cr,
            &Update::issued("CERT".into(), "CA".into(), "ok"),
            Timestamp::from_second(99).unwrap(),
        )
        .unwrap();
        assert_eq!(body["status"]["certificate"], "Q0VSVA==");
        assert_eq!(body["status"]["ca"], "Q0E=");
        assert_eq!(body["status"]["conditions"].as_array().unwrap().len(), 1);
        assert_eq!(
            body["status"]["conditions"][0]["lastTransitionTime"],
            "1970-01-01T00:01:39Z"
        );
    }

    #[test]
    fn a_conditional_update_carries_the_resource_version() {
        let cr = cr_with_ready("False", "Pending", "waiting");
        let mut update = Update::issued("CERT".into(), "CA".into(), "ok");
        assert!(
            patch_body(&cr, &update, Timestamp::from_second(99).unwrap()).unwrap()["metadata"]
                .is_null()
        );
        update.resource_version = Some("42".into());
        let body = patch_body(&cr, &update, Timestamp::from_second(99).unwrap()).unwrap();
        assert_eq!(body["metadata"]["resourceVersion"], "42");
    }
}
