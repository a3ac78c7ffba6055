//! What a reconcile of a Kubernetes-native signing request (a CertificateSigningRequest, a
//! PodCertificateRequest) ends with: [`Outcome`], at most one status update of the request's own
//! kind, the events that go with it, and when to look again. Each signer's `status` module names
//! its `Outcome<Update>` and adds the constructors of its kind (failed, issued, denied, …).

use crate::controller::certificate_request::status::Requeue;
use crate::controller::events::{EventAction, Note};
use crate::reason::Reason;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::controller::Action;
use std::time::Duration;

/// What a reconcile ends with: at most one status update `U`, the events that go with it (published
/// only when the update was written, or when there is none), and when to look again.
#[derive(Debug, Clone)]
pub struct Outcome<U> {
    update: Option<U>,
    events: Vec<Note>,
    requeue: Requeue,
}

impl<U> Outcome<U> {
    /// Nothing to write; look again on a change.
    #[must_use]
    pub fn await_change() -> Self {
        Self {
            update: None,
            events: Vec::new(),
            requeue: Requeue::OnChange,
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

    /// Waiting (neither request kind has a pending condition of ours): a Warning event with
    /// `message`, a look again after `after`.
    #[must_use]
    pub fn waiting(message: &str, after: Duration) -> Self {
        Self::requeue(after).with_event(Note::warning(Reason::Pending, message, EventAction::Sign))
    }

    /// The same outcome with `update`.
    #[must_use]
    pub fn with_update(mut self, update: U) -> Self {
        self.update = Some(update);
        self
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
    pub fn update(&self) -> Option<&U> {
        self.update.as_ref()
    }

    /// When to look again.
    #[must_use]
    pub fn requeue_after(&self) -> Requeue {
        self.requeue
    }

    /// The parts, for the one writer of the request's status: the update, the events, and the
    /// action to return once they are written.
    #[must_use]
    pub fn into_parts(self) -> (Option<U>, Vec<Note>, Action) {
        (self.update, self.events, action(self.requeue))
    }
}

/// The controller action for `requeue`.
fn action(requeue: Requeue) -> Action {
    match requeue {
        Requeue::OnChange => Action::await_change(),
        Requeue::After(d) => Action::requeue(d),
    }
}
