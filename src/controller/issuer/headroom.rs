//! Warnings before trouble (pure): the `Headroom` condition, its Warning events, and the per-issuer
//! gauges. NCP caps each CA at a number of issuances and every CA expires; `Ready` turns False only
//! once that has happened (`SigningLimitReached`, `CAExpired`). `Headroom` turns False before: when the
//! CA has used [`NEAR_PERCENT`] or [`CRITICAL_PERCENT`] of its cap, when the CA has less than the
//! warning window (`--expiry-warning-days`) left, and, in subordinate mode, when the in-cluster
//! intermediate has less than that left and its renewal is overdue (an intermediate renewed on time
//! never warns, however short its life).

use crate::api::SubordinateStatus;
use crate::api::issuer::CaSummary;
use crate::controller::conditions::{self, ConditionStatus, Desired};
use crate::controller::context::Settings;
use crate::controller::events::{EventAction, Note};
use crate::metrics::IssuerGauges;
use crate::reason::Reason;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use std::time::Duration;

/// The `Headroom` condition type.
pub const HEADROOM: &str = "Headroom";

/// Share of the cap (percent) past which `Headroom` warns with `SigningLimitNear`.
pub const NEAR_PERCENT: i64 = 80;
/// Share of the cap (percent) past which `Headroom` warns with `SigningLimitCritical`.
pub const CRITICAL_PERCENT: i64 = 95;

/// What `Headroom` is measured against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// NCP's cap of issuances per CA.
    pub signing_limit: i64,
    /// Warn when the CA or the intermediate has less than this left.
    pub expiry_warning: Duration,
}

impl From<&Settings> for Limits {
    fn from(s: &Settings) -> Self {
        Self {
            signing_limit: s.signing_limit,
            expiry_warning: s.expiry_warning,
        }
    }
}

/// What [`assess`] found: the condition (none while nothing is known), its concerns and the gauges.
#[derive(Debug, Clone, PartialEq)]
pub struct Headroom {
    /// The `Headroom` condition.
    pub condition: Option<Desired>,
    /// The concerns it states, most urgent first.
    pub concerns: Vec<Concern>,
    /// The per-issuer gauges.
    pub gauges: IssuerGauges,
}

/// [`concerns`], [`condition`] and [`gauges`] of an issuer (`ready`: its `Ready` is True) (pure).
#[must_use]
pub fn assess(
    ca_tag: &str,
    ready: bool,
    ca: Option<&CaSummary>,
    intermediate: Option<&SubordinateStatus>,
    settings: &Settings,
    now: Timestamp,
) -> Headroom {
    let limits = Limits::from(settings);
    let concerns = concerns(ca_tag, ca, intermediate, &limits, now);
    let known = ca.is_some() || intermediate.is_some();
    Headroom {
        condition: condition(ca_tag, known, &concerns, &limits),
        gauges: gauges(ready, ca, intermediate, &limits),
        concerns,
    }
}

impl Headroom {
    /// [`events`] from the `old` conditions to this.
    #[must_use]
    pub fn events(
        &self,
        old: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    ) -> Vec<Note> {
        events(old, self.condition.as_ref(), &self.concerns)
    }
}

/// One reason for concern; its text is stable (no counts), so the condition changes only when the
/// situation does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Concern {
    /// Why.
    pub reason: Reason,
    /// What, for people.
    pub text: String,
}

fn parse(t: &str) -> Option<Timestamp> {
    t.parse().ok()
}

fn days(d: Duration) -> u64 {
    d.as_secs() / 86_400
}

/// The concerns about `ca` (and the intermediate), most urgent first (pure).
#[must_use]
pub fn concerns(
    ca_tag: &str,
    ca: Option<&CaSummary>,
    intermediate: Option<&SubordinateStatus>,
    limits: &Limits,
    now: Timestamp,
) -> Vec<Concern> {
    let window = SignedDuration::try_from(limits.expiry_warning).unwrap_or(SignedDuration::MAX);
    let soon = |t: Timestamp| now.duration_until(t) < window;
    let (mut cap, mut ca_expiry, mut sub_expiry) = (None, None, None);
    if let Some(ca) = ca {
        let used = ca.signing_count.saturating_mul(100);
        let limit = limits.signing_limit;
        let percent = if used >= limit.saturating_mul(CRITICAL_PERCENT) {
            Some((Reason::SigningLimitCritical, CRITICAL_PERCENT))
        } else if used >= limit.saturating_mul(NEAR_PERCENT) {
            Some((Reason::SigningLimitNear, NEAR_PERCENT))
        } else {
            None
        };
        cap = percent.map(|(reason, p)| Concern {
            reason,
            text: format!(
                "NCP CA {ca_tag} has used {p} % or more of the {limit} issuances NCP allows a CA \
                 (status.ca.issuancesRemaining says how many are left); move to a new CA before it \
                 stops signing"
            ),
        });
        ca_expiry = ca
            .not_after
            .as_deref()
            .and_then(parse)
            .filter(|t| soon(*t))
            .map(|t| Concern {
                reason: Reason::CAExpiringSoon,
                text: format!(
                    "NCP CA {ca_tag} expires at {t}, less than {} days from now; move to a new CA \
                 before then",
                    days(limits.expiry_warning)
                ),
            });
    }
    if let Some(sub) = intermediate {
        let overdue = parse(&sub.renewal_time).is_none_or(|r| r <= now);
        sub_expiry = parse(&sub.not_after)
            .filter(|t| overdue && soon(*t))
            .map(|t| Concern {
                reason: Reason::IntermediateExpiringSoon,
                text: format!(
                    "the intermediate in Secret {} expires at {t}, less than {} days from now, and \
                     its renewal (due at {}) has not happened yet",
                    sub.secret_name,
                    days(limits.expiry_warning),
                    sub.renewal_time
                ),
            });
    }
    let critical = cap
        .as_ref()
        .is_some_and(|c| c.reason == Reason::SigningLimitCritical);
    let (first_cap, last_cap) = if critical { (cap, None) } else { (None, cap) };
    [first_cap, ca_expiry, sub_expiry, last_cap]
        .into_iter()
        .flatten()
        .collect()
}

/// The `Headroom` condition for `concerns` (pure); `None` while nothing is known of the CA or an
/// intermediate (the condition is then left out).
#[must_use]
pub fn condition(
    ca_tag: &str,
    known: bool,
    concerns: &[Concern],
    limits: &Limits,
) -> Option<Desired> {
    if !known {
        return None;
    }
    Some(match concerns.first() {
        Some(first) => Desired {
            type_: HEADROOM,
            status: ConditionStatus::False,
            reason: first.reason,
            message: concerns
                .iter()
                .map(|c| c.text.as_str())
                .collect::<Vec<_>>()
                .join("; "),
        },
        None => Desired {
            type_: HEADROOM,
            status: ConditionStatus::True,
            reason: Reason::AmpleHeadroom,
            message: format!(
                "NCP CA {ca_tag} has used less than {NEAR_PERCENT} % of the {} issuances NCP \
                 allows, and neither it nor an intermediate expires within {} days",
                limits.signing_limit,
                days(limits.expiry_warning)
            ),
        },
    })
}

/// The events of a `Headroom` change (pure): a Warning for each concern the old condition did not
/// already state, a Normal one when `Headroom` turned True again.
#[must_use]
pub fn events(
    old: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    new: Option<&Desired>,
    concerns: &[Concern],
) -> Vec<Note> {
    let previous = conditions::find(old, HEADROOM);
    let Some(new) = new else { return Vec::new() };
    if new.status == ConditionStatus::True {
        return match previous {
            Some(p) if p.status == ConditionStatus::False.as_str() => vec![Note::normal(
                new.reason,
                new.message.clone(),
                EventAction::CheckCA,
            )],
            _ => Vec::new(),
        };
    }
    let stated = previous
        .filter(|p| p.status == ConditionStatus::False.as_str())
        .map(|p| p.message.as_str())
        .unwrap_or_default();
    concerns
        .iter()
        .filter(|c| !stated.contains(c.text.as_str()))
        .map(|c| Note::warning(c.reason, c.text.clone(), EventAction::CheckCA))
        .collect()
}

/// The per-issuer gauges (pure): readiness, what NCP last said of the CA, and the intermediate.
#[must_use]
pub fn gauges(
    ready: bool,
    ca: Option<&CaSummary>,
    intermediate: Option<&SubordinateStatus>,
    limits: &Limits,
) -> IssuerGauges {
    let seconds = |t: &str| parse(t).map(Timestamp::as_second);
    IssuerGauges {
        ready,
        ca_not_after: ca.and_then(|c| c.not_after.as_deref()).and_then(seconds),
        ca_signing_count: ca.map(|c| c.signing_count),
        ca_issuances_remaining: ca.map(|c| c.issuances_remaining),
        ca_signing_limit: ca.map(|_| limits.signing_limit),
        intermediate_not_after: intermediate.and_then(|s| seconds(&s.not_after)),
        intermediate_renewal: intermediate.and_then(|s| seconds(&s.renewal_time)),
    }
}

#[cfg(test)]
mod tests;
