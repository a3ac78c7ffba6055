//! The event of an issuer's `Ready` change (pure).

use crate::api::IssuerStatus;
use crate::controller::conditions::{self, ConditionStatus, Desired};
use crate::controller::events::{EventAction, Note};

/// The event of a `Ready` change (status or reason) from `old` to `ready` (pure): Normal when it
/// turned True, Warning otherwise; `None` when `Ready` says the same as before.
#[must_use]
pub fn ready_event(old: &IssuerStatus, ready: &Desired) -> Option<Note> {
    let unchanged = conditions::find(&old.conditions, conditions::READY)
        .is_some_and(|c| c.status == ready.status.as_str() && c.reason == ready.reason.as_str());
    if unchanged {
        return None;
    }
    Some(if ready.status == ConditionStatus::True {
        Note::normal(ready.reason, ready.message.clone(), EventAction::CheckCA)
    } else {
        Note::warning(ready.reason, ready.message.clone(), EventAction::CheckCA)
    })
}
