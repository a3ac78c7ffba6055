//! `metav1.Condition` bookkeeping: a condition keeps its `lastTransitionTime` while its status stays.

use crate::reason::Reason;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// The `Ready` condition type.
pub const READY: &str = "Ready";
/// The `UpstreamReady` condition type (subordinate mode: what NCP says of the CA).
pub const UPSTREAM_READY: &str = "UpstreamReady";

/// A condition's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConditionStatus {
    /// `True`.
    True,
    /// `False`.
    False,
    /// `Unknown`.
    Unknown,
}

impl ConditionStatus {
    /// The status as written.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::True => "True",
            Self::False => "False",
            Self::Unknown => "Unknown",
        }
    }

    /// The status as read; anything else than the three values is `Unknown`.
    #[must_use]
    pub fn parse(text: &str) -> Self {
        match text {
            "True" => Self::True,
            "False" => Self::False,
            _ => Self::Unknown,
        }
    }
}

impl std::fmt::Display for ConditionStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A condition as the controller wants it; times are filled in by [`merge`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    /// Condition type.
    pub type_: &'static str,
    /// Status.
    pub status: ConditionStatus,
    /// Reason.
    pub reason: Reason,
    /// Human-readable message.
    pub message: String,
}

impl Desired {
    /// A `Ready=True` condition.
    #[must_use]
    pub fn ready(reason: Reason, message: impl Into<String>) -> Self {
        Self {
            type_: READY,
            status: ConditionStatus::True,
            reason,
            message: message.into(),
        }
    }

    /// A `Ready=False` condition.
    #[must_use]
    pub fn not_ready(reason: Reason, message: impl Into<String>) -> Self {
        Self {
            type_: READY,
            status: ConditionStatus::False,
            reason,
            message: message.into(),
        }
    }

    /// Whether `existing` already says this (type, status, reason, message).
    #[must_use]
    pub fn is_stated_by(&self, existing: &Condition) -> bool {
        existing.type_ == self.type_
            && existing.status == self.status.as_str()
            && existing.reason == self.reason.as_str()
            && existing.message == self.message
    }
}

/// Replaces (or adds) the condition of `desired.type_` in `existing`, keeping `lastTransitionTime` when
/// the status did not change. Returns the new list; other condition types are kept as they were.
#[must_use]
pub fn merge(
    existing: &[Condition],
    desired: &Desired,
    generation: Option<i64>,
    now: Timestamp,
) -> Vec<Condition> {
    let previous = existing.iter().find(|c| c.type_ == desired.type_);
    let transition = match previous {
        Some(p) if p.status == desired.status.as_str() => p.last_transition_time.clone(),
        _ => Time(now),
    };
    let updated = Condition {
        type_: desired.type_.to_string(),
        status: desired.status.as_str().to_string(),
        reason: desired.reason.as_str().to_string(),
        message: desired.message.clone(),
        observed_generation: generation,
        last_transition_time: transition,
    };
    let mut out: Vec<Condition> = existing
        .iter()
        .filter(|c| c.type_ != desired.type_)
        .cloned()
        .collect();
    out.push(updated);
    out.sort_by(|a, b| a.type_.cmp(&b.type_));
    out
}

/// The condition of `type_`, if present.
#[must_use]
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).unwrap()
    }

    #[test]
    fn a_new_condition_gets_the_current_time_as_transition() {
        let out = merge(
            &[],
            &Desired::ready(Reason::CAActive, "ok"),
            Some(3),
            ts(100),
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].last_transition_time.0, ts(100));
        assert_eq!(out[0].observed_generation, Some(3));
    }

    #[test]
    fn the_transition_time_stays_while_the_status_stays_and_moves_when_it_flips() {
        let first = merge(
            &[],
            &Desired::not_ready(Reason::Pending, "a"),
            Some(1),
            ts(100),
        );
        let same = merge(
            &first,
            &Desired::not_ready(Reason::NcpError, "b"),
            Some(2),
            ts(200),
        );
        assert_eq!(same[0].last_transition_time.0, ts(100));
        assert_eq!(same[0].reason, "NcpError");
        let flipped = merge(
            &same,
            &Desired::ready(Reason::CAActive, "c"),
            Some(2),
            ts(300),
        );
        assert_eq!(flipped[0].last_transition_time.0, ts(300));
    }

    #[test]
    fn other_condition_types_are_kept() {
        let other = Condition {
            type_: "Other".into(),
            status: "True".into(),
            reason: "X".into(),
            message: String::new(),
            observed_generation: None,
            last_transition_time: Time(ts(1)),
        };
        let out = merge(
            std::slice::from_ref(&other),
            &Desired::ready(Reason::CAActive, "m"),
            None,
            ts(2),
        );
        assert_eq!(out.len(), 2);
        assert!(out.contains(&other));
    }
}
