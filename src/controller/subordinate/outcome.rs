//! What the issuer says: `Ready` and the intermediate's status for what signs ([`signing`]) or why
//! nothing does, and after a provisioning attempt ([`conclude`], pure), with its events.

use super::decide;
use super::decide::Wanted;
use super::error::SubordinateError;
use super::provision::{Provisioned, sign_backoff};
use super::report::{Job, Outcome};
use crate::api::SubordinateStatus;
use crate::controller::IssuerError;
use crate::controller::conditions::Desired;
use crate::controller::delays::{RENEWAL_FLOOR, TRANSIENT_RETRY};
use crate::controller::events::{EventAction, EventType, Note};
use crate::controller::signers::LocalSigner;
use crate::reason::Reason;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::jiff::Timestamp;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

/// What the issuer says after a provisioning attempt, and the events that go with it.
#[must_use]
pub fn conclude(
    job: &Job,
    result: Result<Provisioned, SubordinateError>,
    now: OffsetDateTime,
    recheck: Duration,
) -> (Outcome, Vec<Note>) {
    let (why, namespace, name) = (&job.why, job.namespace.as_str(), job.name.as_str());
    match result {
        Ok(Provisioned::Done(intermediate)) => {
            let serial = intermediate.certificate().serial.to_colon_hex();
            let (reason, verb) = if job.current.is_some() {
                (Reason::IntermediateRotated, "rotated to")
            } else {
                (Reason::IntermediateIssued, "provisioned")
            };
            let old = job
                .current
                .as_ref()
                .map(|c| {
                    format!(
                        " (was {})",
                        c.intermediate.certificate().serial.to_colon_hex()
                    )
                })
                .unwrap_or_default();
            let mut notes = vec![note(
                EventType::Normal,
                reason,
                namespace,
                name,
                format!(
                    "{why}: {verb} intermediate {serial}{old} signed by NCP CA {}",
                    job.ca_tag
                ),
            )];
            if let Some(old) = &job.renamed_from {
                notes.push(note(EventType::Warning, Reason::IntermediateSecretChanged, namespace, name, format!(
                    "spec.subordinate.secretName changed from {old} to {name}: the intermediate is now in {namespace}/{name}; secret {namespace}/{old} is no longer used but still holds a CA key, delete it"
                )));
            }
            let signer = Arc::new(LocalSigner {
                secret_name: name.to_string(),
                intermediate: *intermediate,
            });
            let outcome = signing(
                signer,
                &job.wanted,
                job.renew_request.clone(),
                None,
                None,
                now,
                recheck,
            );
            (outcome, notes)
        }
        Ok(Provisioned::Wait(after)) => {
            // An absolute time, so that the message (and status) stays the same while waiting.
            let at = k8s_openapi::jiff::SignedDuration::try_from(after)
                .ok()
                .and_then(|d| jiff(now).checked_add(d).ok())
                .unwrap_or(Timestamp::MAX)
                .round(k8s_openapi::jiff::Unit::Second)
                .unwrap_or(Timestamp::MAX);
            let text = format!("{why}; next attempt at {at}");
            let outcome = match &job.current {
                Some(c) => signing(
                    c.clone(),
                    &job.wanted,
                    job.renew_handled.clone(),
                    Some(text),
                    Some(after),
                    now,
                    recheck,
                ),
                None => not_ready(
                    Desired::not_ready(Reason::Provisioning, text),
                    job.previous.clone(),
                    after,
                ),
            };
            (outcome, vec![])
        }
        Err(e) => {
            let notes = vec![note(
                EventType::Warning,
                Reason::IntermediateProvisioningFailed,
                namespace,
                name,
                format!("{why}: {e}"),
            )];
            let retry = retry_after_error(&e, recheck);
            let outcome = match &job.current {
                Some(c) => signing(
                    c.clone(),
                    &job.wanted,
                    job.renew_handled.clone(),
                    Some(format!("renewal failing: {e}")),
                    Some(retry),
                    now,
                    recheck,
                ),
                None => failed(&e, namespace, job.previous.clone(), retry),
            };
            (outcome, notes)
        }
    }
}

/// When to look again after a failed attempt: NCP failures as the shared classifier says (see
/// [`sign_backoff`]), other issuer problems at the periodic check unless transient, the rest (the
/// Secret, key generation, an unusable answer) soon.
fn retry_after_error(e: &SubordinateError, recheck: Duration) -> Duration {
    match e {
        SubordinateError::Issuer(IssuerError::Ncp(n)) => sign_backoff(n, recheck),
        SubordinateError::Issuer(i) if !i.is_transient() => recheck,
        _ => TRANSIENT_RETRY,
    }
}

/// `now` as a jiff timestamp.
pub(super) fn jiff(now: OffsetDateTime) -> Timestamp {
    Timestamp::from_nanosecond(now.unix_timestamp_nanos()).unwrap_or(Timestamp::MAX)
}

/// `Ready=True`, signing with `signer`; requeued at `requeue`, else at the renewal time (not sooner
/// than [`RENEWAL_FLOOR`]) or `recheck`.
pub(super) fn signing(
    signer: Arc<LocalSigner>,
    wanted: &Wanted,
    renew_handled: Option<String>,
    note: Option<String>,
    requeue: Option<Duration>,
    now: OffsetDateTime,
    recheck: Duration,
) -> Outcome {
    let intermediate = &signer.intermediate;
    let status = decide::status_of(&signer.secret_name, intermediate, wanted, renew_handled);
    let message = format!(
        "signing locally with intermediate {} (valid until {}, renewed from {}){}",
        status.serial_number,
        status.not_after,
        status.renewal_time,
        note.map(|n| format!("; {n}")).unwrap_or_default()
    );
    let requeue = requeue.unwrap_or_else(|| {
        let cert = intermediate.certificate();
        let renewal = decide::renewal_time(cert.not_before, cert.not_after, wanted.renew_before);
        let until_renewal = Duration::try_from(renewal - now).unwrap_or_default();
        recheck.min(until_renewal.max(RENEWAL_FLOOR))
    });
    Outcome {
        ready: Desired::ready(Reason::IntermediateReady, message),
        status: Some(status),
        requeue,
        signer: Some(signer),
    }
}

/// Not Ready: nothing signs; the last known intermediate stays in status.
pub(super) fn not_ready(
    ready: Desired,
    previous: Option<SubordinateStatus>,
    requeue: Duration,
) -> Outcome {
    Outcome {
        ready,
        status: previous,
        requeue,
        signer: None,
    }
}

/// Not Ready because of `e`.
pub(super) fn failed(
    e: &SubordinateError,
    namespace: &str,
    previous: Option<SubordinateStatus>,
    requeue: Duration,
) -> Outcome {
    let mut message = e.to_string();
    if e.reason() == Reason::SecretForbidden {
        message.push_str(&format!(
            "; the Helm chart grants Secret writes per namespace: add {namespace:?} to the value subordinate.namespaces"
        ));
    }
    not_ready(Desired::not_ready(e.reason(), message), previous, requeue)
}

/// An event about the intermediate, naming its Secret as the related object.
pub(super) fn note(
    type_: EventType,
    reason: Reason,
    namespace: &str,
    name: &str,
    text: String,
) -> Note {
    let note = Note {
        type_,
        ..Note::normal(reason, text, EventAction::ProvisionIntermediate)
    };
    note.about(Some(ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Secret".into()),
        namespace: Some(namespace.to_string()),
        name: Some(name.to_string()),
        ..ObjectReference::default()
    }))
}

#[cfg(test)]
mod tests;
