//! The events the controllers publish: typed type, reason and action, and the related object (the
//! issuer of a request, the Secret of an intermediate) where there is one.

use crate::reason::Reason;
use k8s_openapi::api::core::v1::ObjectReference;
pub use kube::runtime::events::EventType;

/// What the controller was doing when it published an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventAction {
    /// Signing a request.
    Sign,
    /// Revoking a deleted request's certificate.
    Revoke,
    /// Checking an issuer's NCP CA.
    CheckCA,
    /// Keeping a subordinate issuer's intermediate.
    ProvisionIntermediate,
}

impl EventAction {
    /// The action as written.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Sign => "Sign",
            Self::Revoke => "Revoke",
            Self::CheckCA => "CheckCA",
            Self::ProvisionIntermediate => "ProvisionIntermediate",
        }
    }
}

/// An event to publish on an object.
#[derive(Debug, Clone)]
pub struct Note {
    /// Normal or Warning.
    pub type_: EventType,
    /// Why.
    pub reason: Reason,
    /// What happened, for people (cut to the API server's limit when published).
    pub text: String,
    /// What the controller was doing.
    pub action: EventAction,
    /// The related object, when there is one.
    pub related: Option<ObjectReference>,
}

impl Note {
    /// A Normal event.
    #[must_use]
    pub fn normal(reason: Reason, text: impl Into<String>, action: EventAction) -> Self {
        Self {
            type_: EventType::Normal,
            reason,
            text: text.into(),
            action,
            related: None,
        }
    }

    /// A Warning event.
    #[must_use]
    pub fn warning(reason: Reason, text: impl Into<String>, action: EventAction) -> Self {
        Self {
            type_: EventType::Warning,
            ..Self::normal(reason, text, action)
        }
    }

    /// The same event, naming `related` as its related object.
    #[must_use]
    pub fn about(mut self, related: Option<ObjectReference>) -> Self {
        self.related = related;
        self
    }
}

/// Longest event note we publish (the API server refuses notes over 1 kB).
pub const MAX_EVENT_NOTE: usize = 1000;

/// `s` cut to at most `max` bytes on a character boundary, with an ellipsis when cut.
#[must_use]
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_notes_are_cut_on_a_character_boundary() {
        assert_eq!(truncate("abc", 5), "abc");
        assert_eq!(truncate("aé", 2), "a…");
    }
}
