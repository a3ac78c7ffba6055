//! A PodCertificateRequest's result: what a reconcile ends with ([`Outcome`]), the pure
//! [`status_body`], and [`write`], the one function that writes a PodCertificateRequest's status
//! (server-side apply of the chain, its times and the `Issued`, `Denied` or `Failed` condition).

use crate::controller::events::{EventAction, Note};
use crate::controller::{Context, FIELD_MANAGER};
use crate::reason::Reason;
use k8s_openapi::api::certificates::v1beta1::PodCertificateRequest;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource as _, ResourceExt as _};

/// The status to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// `Denied=True`: the policy refuses the request.
    Denied {
        /// Why, for people.
        message: String,
    },
    /// `Failed=True` with `reason`.
    Failed {
        /// Why.
        reason: Reason,
        /// What happened, for people.
        message: String,
    },
    /// `Issued=True` with the chain and its times.
    Issued {
        /// Leaf, then intermediates (PEM).
        chain: String,
        /// The leaf's notBefore.
        not_before: Timestamp,
        /// When the kubelet should start refreshing.
        begin_refresh_at: Timestamp,
        /// The leaf's notAfter.
        not_after: Timestamp,
        /// Write only if the request is still at this resourceVersion.
        resource_version: Option<String>,
    },
}

/// What a reconcile ends with (the shape both native signers share).
pub type Outcome = crate::controller::request_outcome::Outcome<Update>;

impl Outcome {
    /// Denied by the policy.
    #[must_use]
    pub fn denied(message: &str) -> Self {
        Self::await_change()
            .with_update(Update::Denied {
                message: message.to_string(),
            })
            .with_event(Note::warning(
                Reason::PodCertificatePolicyDenied,
                message,
                EventAction::Sign,
            ))
    }

    /// Failed for good.
    #[must_use]
    pub fn failed(reason: Reason, message: &str) -> Self {
        Self::await_change()
            .with_update(Update::Failed {
                reason,
                message: message.to_string(),
            })
            .with_event(Note::warning(reason, message, EventAction::Sign))
    }

    /// Issued, with a Normal event `note`.
    #[must_use]
    pub fn issued(update: Update, note: &str) -> Self {
        Self::await_change()
            .with_update(update)
            .with_event(Note::normal(Reason::Issued, note, EventAction::Sign))
    }
}

fn condition(type_: &str, reason: Reason, message: &str, now: Timestamp) -> serde_json::Value {
    serde_json::json!({
        "type": type_, "status": "True", "reason": reason.as_str(), "message": message,
        "lastTransitionTime": Time(now),
    })
}

/// The apply body of `update`.
#[must_use]
pub fn status_body(
    pcr: &PodCertificateRequest,
    update: &Update,
    now: Timestamp,
) -> serde_json::Value {
    let mut body = serde_json::json!({
        "apiVersion": "certificates.k8s.io/v1beta1", "kind": "PodCertificateRequest",
        "metadata": {"name": pcr.name_any(), "namespace": pcr.namespace()},
    });
    body["status"] = match update {
        Update::Denied { message } => serde_json::json!({"conditions": [
            condition("Denied", Reason::PodCertificatePolicyDenied, message, now)]}),
        Update::Failed { reason, message } => {
            serde_json::json!({"conditions": [condition("Failed", *reason, message, now)]})
        }
        Update::Issued {
            chain,
            not_before,
            begin_refresh_at,
            not_after,
            resource_version,
        } => {
            if let Some(rv) = resource_version {
                body["metadata"]["resourceVersion"] = rv.clone().into();
            }
            serde_json::json!({
                "certificateChain": chain,
                "notBefore": Time(*not_before), "beginRefreshAt": Time(*begin_refresh_at),
                "notAfter": Time(*not_after),
                "conditions": [condition("Issued", Reason::Issued, "certificate signed in the cluster", now)],
            })
        }
    };
    body
}

/// Why a PodCertificateRequest's status could not be written; retried by the error policy.
#[derive(Debug, thiserror::Error)]
#[error("write status of PodCertificateRequest {request}: {source}")]
pub struct WriteStatusError {
    /// `namespace/name`.
    pub request: String,
    /// The cause.
    pub source: kube::Error,
}

/// Applies `outcome`: the one place that writes a PodCertificateRequest's status; events follow a
/// successful write (or stand alone when there is none).
///
/// # Errors
/// When the API server refuses the write.
pub async fn write(
    pcr: &PodCertificateRequest,
    ctx: &Context,
    outcome: Outcome,
    issuer_kind: &str,
) -> Result<Action, WriteStatusError> {
    let (update, events, then) = outcome.into_parts();
    if let Some(update) = &update {
        let namespace = pcr.namespace().unwrap_or_default();
        let body = status_body(pcr, update, Timestamp::now());
        let api: Api<PodCertificateRequest> = Api::namespaced(ctx.client.clone(), &namespace);
        match api
            .patch_status(
                &pcr.name_any(),
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&body),
            )
            .await
        {
            Ok(_) => match update {
                Update::Issued { .. } => ctx.metrics.certificate_issued(issuer_kind),
                Update::Failed { reason, .. } => {
                    ctx.metrics.certificate_failed(issuer_kind, reason.as_str());
                }
                Update::Denied { .. } => {}
            },
            // Next: the watch brings the newer request; the requeue is a safety net.
            Err(kube::Error::Api(s)) if s.code == 409 => {
                return Ok(Action::requeue(crate::controller::delays::STALE_RETRY));
            }
            Err(source) => {
                return Err(WriteStatusError {
                    request: format!("{namespace}/{}", pcr.name_any()),
                    source,
                });
            }
        }
    }
    for note in events {
        ctx.publish(&pcr.object_ref(&()), note).await;
    }
    Ok(then)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_issued_body_has_the_chain_its_times_one_issued_condition_and_the_precondition() {
        let pcr: PodCertificateRequest = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {"signerName": "s/x", "podName": "p", "podUID": "u", "serviceAccountName": "sa",
                     "serviceAccountUID": "su", "nodeName": "n", "nodeUID": "nu",
                     "pkixPublicKey": "", "proofOfPossession": ""}
        }))
        .expect("pcr");
        let t = |s: i64| Timestamp::from_second(s).expect("time");
        let update = Update::Issued {
            chain: "CHAIN".into(),
            not_before: t(0),
            begin_refresh_at: t(2700),
            not_after: t(3600),
            resource_version: Some("9".into()),
        };
        let body = status_body(&pcr, &update, t(0));
        assert_eq!(body["metadata"]["resourceVersion"], "9");
        assert_eq!(body["status"]["certificateChain"], "CHAIN");
        assert_eq!(body["status"]["beginRefreshAt"], "1970-01-01T00:45:00Z");
        assert_eq!(body["status"]["conditions"][0]["type"], "Issued");
        let denied = status_body(
            &pcr,
            &Update::Denied {
                message: "m".into(),
            },
            t(0),
        );
        assert_eq!(denied["status"]["conditions"][0]["type"], "Denied");
        assert!(denied["status"].get("certificateChain").is_none());
    }
}
