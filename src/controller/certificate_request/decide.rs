//! Pure decisions of the CertificateRequest controller: what state a request is in ([`next`]) and,
//! with what the fetch phase found of its issuer, what the reconcile does ([`plan`]): write an
//! [`Outcome`] straight away, sign in the cluster, or talk to NCP.

use super::issuers::{IssuerLookup, IssuerView, Readiness};
use super::status::Outcome;
use crate::api::annotations::{ANNOTATION_CA_TAG, ANNOTATION_SERIAL, ANNOTATION_SIGNING_STARTED};
use crate::api::certmanager::CertificateRequest;
use crate::controller::conditions::ConditionStatus;
use crate::controller::delays::{APPROVAL_GRACE, ISSUER_WAIT, MIN_BACKOFF, STALE_RETRY};
use crate::reason::Reason;
use k8s_openapi::jiff::Timestamp;
use std::time::Duration;

/// What to do with a request now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Not for us, or already final: leave it alone.
    Ignore,
    /// Set `Ready=Unknown/Initializing` first.
    Initialize,
    /// Not approved yet: wait for cert-manager's approver (a change will trigger us again).
    AwaitApproval,
    /// Denied: `Ready=False/Denied`, `failureTime`.
    MarkDenied,
    /// A certificate was signed and its serial recorded: fetch it and finish.
    RecoverBySerial {
        /// CA tag.
        ca_tag: String,
        /// Serial.
        serial: String,
    },
    /// Signing started but no serial was recorded: look for the certificate in NCP before signing again.
    RecoverByKey {
        /// CA tag.
        ca_tag: String,
    },
    /// Nothing signed yet: validate, mark, sign.
    Sign,
}

/// Decides the next step for a request already known to be ours.
#[must_use]
pub fn next(cr: &CertificateRequest) -> Next {
    if let Some(ready) = cr.condition("Ready") {
        let final_state = ConditionStatus::parse(&ready.status) == ConditionStatus::True
            || ready.reason.as_deref() == Some(Reason::Failed.as_str())
            || ready.reason.as_deref() == Some(Reason::Denied.as_str());
        if final_state {
            return Next::Ignore;
        }
    }
    if cr.condition_true("Denied") {
        return Next::MarkDenied;
    }
    // A request signed at first sight has no Ready condition until its Issued write: with our
    // annotations on it, it is past the first touch (recovery below), whatever the cache shows.
    if cr.condition("Ready").is_none() && !has_signing_annotations(cr) {
        return Next::Initialize;
    }
    if !cr.condition_true("Approved") {
        return Next::AwaitApproval;
    }
    let annotations = cr.metadata.annotations.clone().unwrap_or_default();
    let ca_tag = annotations
        .get(ANNOTATION_CA_TAG)
        .cloned()
        .unwrap_or_default();
    if let Some(serial) = annotations.get(ANNOTATION_SERIAL).filter(|s| !s.is_empty()) {
        return Next::RecoverBySerial {
            ca_tag,
            serial: serial.clone(),
        };
    }
    if annotations.contains_key(ANNOTATION_SIGNING_STARTED) {
        return Next::RecoverByKey { ca_tag };
    }
    Next::Sign
}

/// What the fetch phase observed: the request (read fresh from the API server when `refreshed`), its
/// issuer, and the time.
#[derive(Debug, Clone)]
pub struct Observed<'a> {
    /// The request.
    pub cr: &'a CertificateRequest,
    /// Whether `cr` was read fresh because the cached copy asked for recovery (see [`needs_fresh_read`]).
    pub refreshed: bool,
    /// Its issuer, as far as the decision needs it (see [`issuer_needed`]).
    pub issuer: IssuerLookup,
    /// Now.
    pub now: Timestamp,
}

/// What NCP is asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NcpStep {
    /// Mark, then sign.
    Sign,
    /// Signing started but no serial was recorded: look for the certificate by key.
    RecoverByKey {
        /// CA tag of the marker (the issuer's when empty).
        ca_tag: String,
    },
    /// The serial was recorded: fetch the certificate.
    RecoverBySerial {
        /// CA tag (the issuer's when empty).
        ca_tag: String,
        /// Serial.
        serial: String,
    },
}

/// What the reconcile does.
#[derive(Debug, Clone)]
pub enum Plan {
    /// Write this outcome; nothing is signed.
    Write(Outcome),
    /// Sign in the cluster with the subordinate issuer's intermediate.
    SignLocally(Box<IssuerView>),
    /// Sign through NCP, or recover a certificate NCP already signed.
    Ncp(Box<IssuerView>, NcpStep),
}

/// How much of the issuer the decision for a request in state `next` needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssuerNeed {
    /// None.
    None,
    /// Only whether the cache holds it Ready (the first touch: for the subordinate fast path).
    CachedOnly,
    /// The issuer, read fresh unless Ready in the cache.
    Full,
}

/// How much of the issuer [`plan`] needs for a request in state `next`.
#[must_use]
pub fn issuer_needed(next: &Next) -> IssuerNeed {
    match next {
        Next::Initialize => IssuerNeed::CachedOnly,
        Next::Sign | Next::RecoverByKey { .. } | Next::RecoverBySerial { .. } => IssuerNeed::Full,
        Next::Ignore | Next::AwaitApproval | Next::MarkDenied => IssuerNeed::None,
    }
}

/// Whether the request must be read fresh before deciding: recovery asks NCP, and the watch cache can
/// lag behind our own writes (a reconcile queued by the start marker may still see the marker without
/// the serial, or the serial without the Issued status, after the request was finished).
#[must_use]
pub fn needs_fresh_read(next: &Next) -> bool {
    matches!(
        next,
        Next::RecoverByKey { .. } | Next::RecoverBySerial { .. }
    )
}

/// Decides what the reconcile does (pure: every input is in `observed`).
#[must_use]
pub fn plan(observed: Observed<'_>) -> Plan {
    let cr = observed.cr;
    let step = next(cr);
    if observed.refreshed && !needs_fresh_read(&step) {
        return Plan::Write(match step {
            // Already final: the cached copy was stale.
            Next::Ignore => Outcome::await_change(),
            // Moved on otherwise (marker cleared, …): the watch event of that write triggers the
            // next reconcile; the requeue is a safety net.
            _ => Outcome::requeue(STALE_RETRY),
        });
    }
    match step {
        // Final, or waiting for cert-manager's approver: its change wakes us.
        Next::Ignore | Next::AwaitApproval => Plan::Write(Outcome::await_change()),
        Next::MarkDenied => Plan::Write(Outcome::denied()),
        Next::Initialize => first_touch(cr, observed.issuer, observed.now),
        Next::Sign => issuer_gate(cr, observed.issuer, NcpStep::Sign),
        Next::RecoverByKey { ca_tag } => {
            issuer_gate(cr, observed.issuer, NcpStep::RecoverByKey { ca_tag })
        }
        Next::RecoverBySerial { ca_tag, serial } => issuer_gate(
            cr,
            observed.issuer,
            NcpStep::RecoverBySerial { ca_tag, serial },
        ),
    }
}

/// The first touch. With a Ready issuer (as the cache has it), signing finishes within one reconcile
/// (in the cluster, or through NCP after the start marker), so an Initializing status would only be
/// overwritten, at the cost of an API write per certificate (cert-manager's own CA issuer writes
/// none): an approved request is signed at once, and a new one not yet approved gets a moment for
/// cert-manager's approver before it is marked Initializing. An issuer not Ready in the cache means a
/// wait anyway: Initializing first, as cert-manager's contract has it.
fn first_touch(cr: &CertificateRequest, issuer: IssuerLookup, now: Timestamp) -> Plan {
    let fast = match issuer {
        IssuerLookup::Found(view) if view.is_ready() && !has_signing_annotations(cr) => view,
        _ => return Plan::Write(Outcome::initializing()),
    };
    if cr.condition_true("Approved") {
        return if fast.spec.subordinate.is_some() {
            Plan::SignLocally(fast)
        } else {
            // The start marker (conditional on this resourceVersion) is the only write before NCP
            // signs; the Issued status is the next.
            Plan::Ncp(fast, NcpStep::Sign)
        };
    }
    match approval_grace_left(cr, now) {
        // Next: the approval wakes us; otherwise Initializing after the grace.
        Some(left) => Plan::Write(Outcome::requeue(left)),
        None => Plan::Write(Outcome::initializing()),
    }
}

/// Signing waits for a Ready issuer; recovering a certificate that may already exist does not.
fn issuer_gate(cr: &CertificateRequest, issuer: IssuerLookup, step: NcpStep) -> Plan {
    let view = match issuer {
        IssuerLookup::Found(view) => view,
        IssuerLookup::Missing => {
            let r = &cr.spec.issuer_ref;
            let msg = format!(
                "waiting for {} {:?}: it does not exist",
                r.kind.as_deref().unwrap_or_default(),
                r.name
            );
            // Next: the issuer watch wakes us when it appears; the requeue is a safety net.
            return Plan::Write(Outcome::pending(&msg, ISSUER_WAIT));
        }
        // Next: a read error is retried soon.
        IssuerLookup::Unreadable | IssuerLookup::NotCached | IssuerLookup::NotNeeded => {
            return Plan::Write(Outcome::requeue(MIN_BACKOFF));
        }
    };
    if step != NcpStep::Sign {
        // Recovery of a certificate whose answer was lost, from NCP (also for a request that started
        // signing through NCP before subordinate mode was switched on).
        return Plan::Ncp(view, step);
    }
    let why = match &view.readiness {
        Readiness::Ready => None,
        Readiness::NotReady { why } => Some(why.clone()),
        Readiness::Unchecked => Some("it has not been checked yet".to_string()),
    };
    if let Some(why) = why {
        // Next: the issuer's status change wakes us; the requeue is a safety net.
        let msg = format!(
            "waiting for {} {:?} to be Ready: {why}",
            view.kind, view.name
        );
        return Plan::Write(Outcome::pending(&msg, ISSUER_WAIT));
    }
    if view.spec.subordinate.is_some() {
        Plan::SignLocally(view)
    } else {
        Plan::Ncp(view, NcpStep::Sign)
    }
}

/// What is left of [`APPROVAL_GRACE`] for a new request; `None` once it is over, and when the creation
/// time is unknown or ahead of our clock (a skewed clock must not hold Initializing back).
fn approval_grace_left(cr: &CertificateRequest, now: Timestamp) -> Option<Duration> {
    let created = cr.metadata.creation_timestamp.as_ref()?;
    let age = Duration::try_from(now.duration_since(created.0)).ok()?;
    APPROVAL_GRACE
        .checked_sub(age)
        .filter(|left| !left.is_zero())
}

/// Whether a request carries our signing marker or serial (NCP signing started on it).
fn has_signing_annotations(cr: &CertificateRequest) -> bool {
    cr.metadata.annotations.as_ref().is_some_and(|a| {
        a.contains_key(ANNOTATION_SIGNING_STARTED) || a.contains_key(ANNOTATION_SERIAL)
    })
}

/// How long ago the request was created (zero when unknown or in the future).
#[must_use]
pub fn request_age(cr: &CertificateRequest, now: Timestamp) -> Duration {
    cr.metadata
        .creation_timestamp
        .as_ref()
        .and_then(|t| Duration::try_from(now.duration_since(t.0)).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
