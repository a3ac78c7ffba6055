//! The start marker's side of the NCP steps: what the marker says ([`read_marker`]), where to look
//! for the certificate of a request whose signing answer was lost ([`window`]), what a search that
//! found nothing means ([`after_not_found`]) — pure decisions — and [`recover_by_key`], which runs the
//! search and says what follows (the writes are the caller's).
//!
//! A marker that cannot be read, or that lies further in the future than clock skew explains, says
//! nothing about when signing started, so "not found" can never prove that it did not: such a request
//! gets a Warning event at once, is searched for since its creation within the retry budget, and
//! fails with a clear message when the budget ends. It is never signed a second time.

use super::decide::request_age;
use super::metadata::request_name;
use super::status::Outcome;
use crate::api::annotations::ANNOTATION_SIGNING_STARTED;
use crate::api::certmanager::CertificateRequest;
use crate::controller::Context;
use crate::controller::delays::{RECOVERY_CONTINUE, RESIGN_AFTER_CLEAR};
use crate::controller::events::{EventAction, Note};
use crate::controller::failure::{AfterFailure, retry_within_budget};
use crate::controller::recovery::{
    RECOVERY_SKEW, Recovered, Search, Sought, Window, extra_skew, find_issued, settle_window,
};
use crate::ncp::{self, NcpError};
use crate::pki::Csr;
use crate::reason::Reason;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::ResourceExt as _;
use std::time::Duration;

/// What the start marker says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Marker {
    /// Signing started at this time.
    At(Timestamp),
    /// It is not a time.
    Unparsable,
    /// It lies further in the future than [`RECOVERY_SKEW`].
    Future(Timestamp),
}

/// Reads the marker's value at `now`; `None` without a marker.
pub(crate) fn read_marker(value: Option<&str>, now: Timestamp) -> Option<Marker> {
    let value = value?;
    let Ok(at) = value.trim().parse::<Timestamp>() else {
        return Some(Marker::Unparsable);
    };
    let skew = SignedDuration::try_from(RECOVERY_SKEW).unwrap_or(SignedDuration::MAX);
    if at.duration_since(now) > skew {
        return Some(Marker::Future(at));
    }
    Some(Marker::At(at))
}

/// The marker of `cr`.
fn marker_of(cr: &CertificateRequest, now: Timestamp) -> Option<Marker> {
    read_marker(
        cr.annotations()
            .get(ANNOTATION_SIGNING_STARTED)
            .map(String::as_str),
        now,
    )
}

/// Where the certificate can lie: around the marker; for an unusable marker, anywhere since the
/// request was created (since `now` less the retry budget when that is unknown).
pub(crate) fn window(
    marker: Marker,
    created: Option<Timestamp>,
    now: Timestamp,
    settle: Duration,
    max_retry: Duration,
    extra_skew: Duration,
) -> Window {
    let window = match marker {
        Marker::At(at) => Window::around(at.as_millisecond(), settle),
        Marker::Unparsable | Marker::Future(_) => {
            let budget = i64::try_from(max_retry.as_millis()).unwrap_or(i64::MAX);
            let from = created.map_or_else(
                || now.as_millisecond().saturating_sub(budget),
                Timestamp::as_millisecond,
            );
            // Open-ended, so that the window (and where an unfinished search stopped) stays the
            // same from one reconcile to the next.
            Window::between(from, i64::MAX / 2)
        }
    };
    window.widened(extra_skew)
}

/// What the reconcile does after a complete search found nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AfterNotFound {
    /// The signing call may still be running inside NCP: search again after this long.
    Wait(Duration),
    /// NCP certainly did not sign: clear the marker and sign again.
    Resign,
    /// The marker is unusable: `Pending` with this message (and a Warning event), search again after
    /// this long.
    Retry {
        /// The status message.
        message: String,
        /// The wait.
        after: Duration,
    },
    /// The marker is unusable and the retry budget is spent: `Failed` with this message.
    Fail {
        /// The status message.
        message: String,
    },
}

/// What is wrong with an unusable marker.
fn marker_problem(marker: Marker) -> String {
    let what = match marker {
        Marker::Future(at) => format!(
            "lies in the future ({at}, more than {}s ahead of our clock)",
            RECOVERY_SKEW.as_secs()
        ),
        Marker::Unparsable | Marker::At(_) => "is not a time".to_string(),
    };
    format!("the signing-started marker (annotation {ANNOTATION_SIGNING_STARTED}) {what}")
}

/// Why an unusable marker keeps the request from being signed (stable across attempts, so that a
/// retry writes no status and publishes no event).
pub(super) fn unusable_message(marker: Marker, ca_tag: &str) -> String {
    format!(
        "{}: NCP may have signed already, so the request is not signed again; looking for its \
         certificate by key in NCP CA {ca_tag} since the request was created",
        marker_problem(marker)
    )
}

/// Says that the request is being recovered (stable across attempts: the status is written and the
/// Normal event published once), so that it never sits in `Initializing` unexplained.
pub(super) fn recovering_message(marker: Marker, ca_tag: &str) -> String {
    let since = match marker {
        Marker::At(at) => format!(" at {at}"),
        Marker::Unparsable | Marker::Future(_) => String::new(),
    };
    format!(
        "signing started{since} but its answer was not recorded: looking for the certificate by key in \
         NCP CA {ca_tag} before any second signing"
    )
}

fn recovering(marker: Marker, ca_tag: &str, after: Duration) -> Outcome {
    let message = recovering_message(marker, ca_tag);
    Outcome::pending(&message, after).with_event(Note::normal(
        Reason::Recovering,
        message,
        EventAction::Sign,
    ))
}

/// Decides what a search that found nothing (it started at `started_ms`) means, at `now`, for a
/// request `age` old.
pub(crate) fn after_not_found(
    marker: Marker,
    started_ms: i64,
    now: Timestamp,
    settle: Duration,
    age: Duration,
    max_retry: Duration,
    ca_tag: &str,
) -> AfterNotFound {
    match marker {
        Marker::At(at) => {
            let settle_ms = i64::try_from(settle.as_millis()).unwrap_or(i64::MAX);
            let settled_ms = at.as_millisecond().saturating_add(settle_ms);
            if started_ms >= settled_ms {
                // The search started once any signing call had settled: NCP has no certificate for
                // this key since the marker, so signing again is safe.
                return AfterNotFound::Resign;
            }
            let left = settled_ms.saturating_sub(now.as_millisecond()).max(0);
            let left = Duration::from_millis(u64::try_from(left).unwrap_or(0));
            // Once settled, the next search is conclusive; not sooner than a moment from now.
            AfterNotFound::Wait(left.max(RESIGN_AFTER_CLEAR))
        }
        Marker::Unparsable | Marker::Future(_) => {
            let message = unusable_message(marker, ca_tag);
            match retry_within_budget(age, max_retry, Duration::ZERO) {
                AfterFailure::Retry { after } => AfterNotFound::Retry { message, after },
                AfterFailure::Fail { .. } | AfterFailure::WaitForIssuer => AfterNotFound::Fail {
                    message: format!(
                        "{}, and no certificate for this request's key was found in NCP CA \
                         {ca_tag} since the request was created, within the retry budget ({}s): \
                         giving up without signing",
                        marker_problem(marker),
                        max_retry.as_secs()
                    ),
                },
            }
        }
    }
}

/// What recovery by key came to; the caller ([`super::ncp_steps`]) makes the writes.
#[derive(Debug)]
pub(super) enum Recovery {
    /// NCP has the certificate: record its serial and finish with it.
    Found(Recovered),
    /// NCP certainly did not sign: clear the marker, then sign again.
    Resign,
    /// NCP could not be asked.
    Failed(NcpError),
    /// End the reconcile with this outcome (a wait, a retry, a final failure).
    Then(Outcome),
}

/// Looks for the certificate of a request whose signing started but whose serial was never
/// recorded, and decides what follows (see [`after_not_found`]).
pub(super) async fn recover_by_key(
    cr: &CertificateRequest,
    ctx: &Context,
    ncp: &ncp::Client,
    ca_tag: &str,
    csr: &Csr,
) -> Recovery {
    let now = Timestamp::now();
    // `next` only asks for recovery by key when there is a marker.
    let marker = marker_of(cr, now).unwrap_or(Marker::Unparsable);
    let settle = settle_window(ctx);
    let max_retry = ctx.settings.max_retry_duration;
    let created = cr.metadata.creation_timestamp.as_ref().map(|t| t.0);
    let window = window(marker, created, now, settle, max_retry, extra_skew(ctx));
    let sought = Sought::key_and_sans(csr.public_key().spki_der(), csr.sans());
    let search_id = format!("{}/{}", request_name(cr), cr.uid().unwrap_or_default());
    let unusable = !matches!(marker, Marker::At(_));
    let started_ms =
        match find_issued(ncp, &ctx.recovery, ca_tag, &search_id, window, &sought).await {
            Ok(Search::Found(found)) => return Recovery::Found(found),
            // Said at once for an unusable marker; the search goes on where it stopped.
            Ok(Search::Unfinished) if unusable => {
                return Recovery::Then(Outcome::pending_with_warning(
                    &unusable_message(marker, ca_tag),
                    Reason::MarkerUnusable,
                    RECOVERY_CONTINUE,
                ));
            }
            Ok(Search::Unfinished) => {
                return Recovery::Then(recovering(marker, ca_tag, RECOVERY_CONTINUE));
            }
            Ok(Search::NotFound { started_ms }) => started_ms,
            Err(e) => return Recovery::Failed(e),
        };
    let age = request_age(cr, now);
    match after_not_found(marker, started_ms, now, settle, age, max_retry, ca_tag) {
        AfterNotFound::Wait(after) => Recovery::Then(recovering(marker, ca_tag, after)),
        AfterNotFound::Resign => Recovery::Resign,
        AfterNotFound::Retry { message, after } => Recovery::Then(Outcome::pending_with_warning(
            &message,
            Reason::MarkerUnusable,
            after,
        )),
        AfterNotFound::Fail { message } => {
            Recovery::Then(Outcome::failed(Reason::RetryBudgetSpent, &message))
        }
    }
}

#[cfg(test)]
mod tests;
