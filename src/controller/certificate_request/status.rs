//! A request's status: what to write ([`Update`], built by the pure [`patch_body`]), what a reconcile
//! ends with ([`Outcome`]: a status update, events, a requeue), and [`write`], the one function that
//! writes a CertificateRequest's status (server-side apply of our `Ready` condition and fields only).

use super::error::RequestError;
use crate::api::certmanager::{CertificateRequest, RequestCondition};
use crate::controller::conditions::{ConditionStatus, READY};
use crate::controller::delays::STALE_RETRY;
use crate::controller::events::{EventAction, Note};
use crate::controller::{Context, FIELD_MANAGER};
use crate::pki::Issued;
use crate::reason::Reason;
use base64::Engine as _;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource as _, ResourceExt as _};
use std::time::Duration;

/// The Ready condition and fields to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    status: ConditionStatus,
    reason: Reason,
    message: String,
    chain: Option<Chain>,
    /// Set for final failures (Failed, Denied): `failureTime` is written, and the cause is the
    /// failure counter's label.
    failure: Option<Reason>,
    /// Apply only if the request is still at this resourceVersion.
    resource_version: Option<String>,
}

/// `status.certificate` and `status.ca`, PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Chain {
    certificate_pem: String,
    ca_pem: String,
}

impl Update {
    /// A Ready condition only.
    #[must_use]
    pub fn condition(status: ConditionStatus, reason: Reason, message: &str) -> Self {
        Self {
            status,
            reason,
            message: message.to_string(),
            chain: None,
            failure: None,
            resource_version: None,
        }
    }

    /// `Ready=False` with `reason` (Failed or Denied) and `failureTime`; `cause` says why, for the
    /// failure counter.
    #[must_use]
    pub fn failed(reason: Reason, cause: Reason, message: &str) -> Self {
        Self {
            failure: Some(cause),
            ..Self::condition(ConditionStatus::False, reason, message)
        }
    }

    /// `Ready=True/Issued` with the certificate chain and the CA.
    #[must_use]
    pub fn issued(certificate_pem: String, ca_pem: String, message: &str) -> Self {
        Self {
            chain: Some(Chain {
                certificate_pem,
                ca_pem,
            }),
            ..Self::condition(ConditionStatus::True, Reason::Issued, message)
        }
    }

    /// The condition's reason.
    #[must_use]
    pub fn reason(&self) -> Reason {
        self.reason
    }

    /// Whether the update ends the request (Issued, Failed, Denied).
    #[must_use]
    pub fn is_final(&self) -> bool {
        self.chain.is_some() || self.failure.is_some()
    }

    /// The same update, applied only if the request is still at `resource_version`.
    #[must_use]
    pub fn if_unchanged_since(mut self, resource_version: Option<String>) -> Self {
        self.resource_version = resource_version;
        self
    }
}

/// Builds the apply patch; `None` when the request already says exactly this.
#[must_use]
pub fn patch_body(
    cr: &CertificateRequest,
    update: &Update,
    now: Timestamp,
) -> Option<serde_json::Value> {
    let existing = cr.condition(READY);
    let unchanged = existing.is_some_and(|c| {
        c.status == update.status.as_str()
            && c.reason.as_deref() == Some(update.reason.as_str())
            && c.message.as_deref() == Some(update.message.as_str())
    });
    if unchanged && update.chain.is_none() && update.failure.is_none() {
        return None;
    }
    let transition = match existing {
        Some(c) if c.status == update.status.as_str() => {
            c.last_transition_time.clone().unwrap_or(Time(now))
        }
        _ => Time(now),
    };
    let condition = RequestCondition {
        type_: READY.into(),
        status: update.status.as_str().into(),
        reason: Some(update.reason.as_str().into()),
        message: Some(update.message.clone()),
        last_transition_time: Some(transition),
        // cert-manager's CertificateRequest conditions have no observedGeneration field.
        observed_generation: None,
    };
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let mut status = serde_json::json!({ "conditions": [condition] });
    if let Some(chain) = &update.chain {
        status["certificate"] = b64(&chain.certificate_pem).into();
        status["ca"] = b64(&chain.ca_pem).into();
    }
    if update.failure.is_some() {
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

/// When the request is looked at again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requeue {
    /// When it (or its issuer) changes.
    OnChange,
    /// After this long (or sooner, on a change).
    After(Duration),
}

/// What a reconcile ends with: at most one status update, the events that go with it (published only
/// when the update was written, or when there is none), and when to look again.
#[derive(Debug, Clone)]
pub struct Outcome {
    update: Option<Update>,
    events: Vec<Note>,
    requeue: Requeue,
    /// The serial NCP gave for the certificate in `update`, recorded on the request only when the
    /// status write fails (the at-most-once rule's fallback, see [`Outcome::recording_serial_if_unwritten`]).
    serial_if_unwritten: Option<SerialRecord>,
}

/// A serial to record on the request, with the CA tag it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerialRecord {
    /// The CA tag.
    pub ca_tag: String,
    /// The serial, as NCP gave it.
    pub serial: String,
}

impl Outcome {
    /// Nothing to write; look again on a change.
    #[must_use]
    pub fn await_change() -> Self {
        Self {
            update: None,
            events: Vec::new(),
            requeue: Requeue::OnChange,
            serial_if_unwritten: None,
        }
    }

    /// Nothing to write; look again after `after`.
    #[must_use]
    pub fn requeue(after: Duration) -> Self {
        Self {
            requeue: Requeue::After(after),
            ..Self::await_change()
        }
    }

    /// First touch: `Ready=Unknown/Initializing`. The write is itself a change: the next reconcile
    /// moves on.
    #[must_use]
    pub fn initializing() -> Self {
        Self::await_change().with_update(Update::condition(
            ConditionStatus::Unknown,
            Reason::Initializing,
            "request received",
        ))
    }

    /// `Ready=False/Pending` with `message`, looked at again after `after`.
    #[must_use]
    pub fn pending(message: &str, after: Duration) -> Self {
        Self::requeue(after).with_update(Update::condition(
            ConditionStatus::False,
            Reason::Pending,
            message,
        ))
    }

    /// [`Outcome::pending`], with a Warning event of `reason` when the message is new (a retry with
    /// the same message writes nothing and says nothing).
    #[must_use]
    pub fn pending_with_warning(message: &str, reason: Reason, after: Duration) -> Self {
        Self::pending(message, after).with_event(Note::warning(reason, message, EventAction::Sign))
    }

    /// Final failure: `Ready=False/Failed`, `failureTime`, a Warning event, counted under `cause`.
    #[must_use]
    pub fn failed(cause: Reason, message: &str) -> Self {
        Self::await_change()
            .with_update(Update::failed(Reason::Failed, cause, message))
            .with_event(Note::warning(Reason::Failed, message, EventAction::Sign))
    }

    /// Denied by an approver: `Ready=False/Denied`, `failureTime`, a Warning event.
    #[must_use]
    pub fn denied() -> Self {
        Self::await_change()
            .with_update(Update::failed(
                Reason::Denied,
                Reason::Denied,
                "the request was denied by an approver",
            ))
            .with_event(Note::warning(
                Reason::Denied,
                "the request was denied; nothing was signed",
                EventAction::Sign,
            ))
    }

    /// Issued: `Ready=True/Issued` with the chain, a Normal event with `note`. With
    /// `resource_version`, the write applies only if the request is unchanged since it was read.
    #[must_use]
    pub fn issued(issued: Issued, note: &str, resource_version: Option<String>) -> Self {
        Self::await_change()
            .with_update(
                Update::issued(
                    issued.certificate_pem,
                    issued.ca_pem,
                    "Certificate fetched from issuer successfully",
                )
                .if_unchanged_since(resource_version),
            )
            .with_event(Note::normal(Reason::Issued, note, EventAction::Sign))
    }

    /// The same outcome with `update` as its status update.
    #[must_use]
    pub fn with_update(mut self, update: Update) -> Self {
        self.update = Some(update);
        self
    }

    /// The same outcome, recording `serial` (of CA `ca_tag`) on the request if its status update
    /// cannot be written: a certificate NCP signed is then fetched by serial, not searched for. When
    /// the write succeeds, the Issued status carries the certificate and nothing else is written.
    #[must_use]
    pub fn recording_serial_if_unwritten(mut self, ca_tag: &str, serial: &str) -> Self {
        self.serial_if_unwritten = Some(SerialRecord {
            ca_tag: ca_tag.to_string(),
            serial: serial.to_string(),
        });
        self
    }

    /// The serial recorded if the status update cannot be written.
    #[must_use]
    pub fn serial_if_unwritten(&self) -> Option<&SerialRecord> {
        self.serial_if_unwritten.as_ref()
    }

    /// The same outcome with one more event.
    #[must_use]
    pub fn with_event(mut self, note: Note) -> Self {
        self.events.push(note);
        self
    }

    /// The same outcome, naming `related` (the issuer) on every event that names nothing else.
    #[must_use]
    pub fn about(mut self, related: &ObjectReference) -> Self {
        for note in &mut self.events {
            if note.related.is_none() {
                note.related = Some(related.clone());
            }
        }
        self
    }

    /// The status update, if any.
    #[must_use]
    pub fn update(&self) -> Option<&Update> {
        self.update.as_ref()
    }

    /// When to look again.
    #[must_use]
    pub fn requeue_after(&self) -> Requeue {
        self.requeue
    }
}

/// Applies `outcome` to the request: the one place that writes a CertificateRequest's status. The
/// status is written when it says something new; then the events are published and the issuance
/// counted. A conditional update that lost to a concurrent change writes nothing and looks again soon.
/// When the write fails and the outcome carries a serial ([`Outcome::recording_serial_if_unwritten`]),
/// the serial is recorded on the request before the error is returned.
///
/// # Errors
/// When the API server refuses the write (the error policy retries).
pub async fn write(
    cr: &CertificateRequest,
    ctx: &Context,
    outcome: Outcome,
) -> Result<Action, RequestError> {
    let kind = cr.spec.issuer_ref.kind.as_deref().unwrap_or_default();
    let written = match &outcome.update {
        None => None,
        Some(update) => match patch_body(cr, update, Timestamp::now()) {
            // Nothing new to say: no write, and no event either.
            None => return Ok(action(outcome.requeue)),
            Some(body) => {
                let namespace = cr.namespace().unwrap_or_default();
                let api: Api<CertificateRequest> = Api::namespaced(ctx.client.clone(), &namespace);
                let result = api
                    .patch_status(
                        &cr.name_any(),
                        &PatchParams::apply(FIELD_MANAGER).force(),
                        &Patch::Apply(&body),
                    )
                    .await;
                match result {
                    Ok(_) => Some(update),
                    Err(source) => {
                        let error = RequestError::WriteStatus {
                            request: super::metadata::request_name(cr),
                            source,
                        };
                        if let Some(record) = &outcome.serial_if_unwritten {
                            // Signed, not written: the serial is what the next reconcile finishes
                            // from. If this write fails as well, recovery by key finds it.
                            let recorded = super::metadata::record_serial(
                                &ctx.client,
                                cr,
                                &record.ca_tag,
                                &record.serial,
                            )
                            .await;
                            if let Err(e) = recorded {
                                tracing::warn!(error = %e, "cannot record the serial either; the next reconcile recovers the certificate by its key");
                            }
                        }
                        if update.resource_version.is_some() && error.is_conflict() {
                            // Next: the watch brings the newer request (already written by us, or
                            // changed by someone else); the requeue is a safety net.
                            return Ok(Action::requeue(STALE_RETRY));
                        }
                        return Err(error);
                    }
                }
            }
        },
    };
    for note in outcome.events {
        ctx.publish(&cr.object_ref(&()), note).await;
    }
    match written {
        Some(u) if u.chain.is_some() => ctx.metrics.certificate_issued(kind),
        Some(Update {
            reason: Reason::Failed,
            failure: Some(cause),
            ..
        }) => ctx.metrics.certificate_failed(kind, cause.as_str()),
        _ => {}
    }
    Ok(action(outcome.requeue))
}

fn action(requeue: Requeue) -> Action {
    match requeue {
        Requeue::OnChange => Action::await_change(),
        Requeue::After(d) => Action::requeue(d),
    }
}

#[cfg(test)]
mod tests;
