//! Fault injection for tests: latency, service 500s, gateway throttling and outages, timeouts, and
//! "commit then lose the response".

use crate::ncp::operation::Operation;
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};
use std::sync::Mutex;

/// What a fault does to a matching call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// Delay the answer by `latency_ms` (combines with the other kinds).
    Latency,
    /// Answer the service's 500 "temporarily not available" without running the operation.
    Error500,
    /// Answer the gateway's 429 errorCode 410 "Throttle Limited" with `Retry-After`.
    Throttle429,
    /// Answer the gateway's 503 errorCode 500 "Endpoint Error".
    Unavailable503,
    /// Never answer (the connection is held until the client gives up or the emulator stops); the
    /// operation does not run.
    Timeout,
    /// Run the operation (it takes effect and is counted), then never answer.
    CommitThenLoseResponse,
    /// Answer `302 Found` with `Location: location` (a hostile endpoint); the operation does not run.
    Redirect,
    /// Answer `200` with a JSON-looking body of `body_bytes` bytes (default 256 MiB), streamed in
    /// chunks without a `Content-Length` (a hostile endpoint); the operation does not run.
    HugeBody,
    /// Answer `200` with `text/html` body `body` (default: an HTML page), as a proxy or a service
    /// that is not NCP would; the operation does not run.
    NonJsonBody,
}

/// Default size of a [`FaultKind::HugeBody`] answer: 256 MiB.
pub const DEFAULT_HUGE_BODY_BYTES: u64 = 256 * 1024 * 1024;
/// Default body of a [`FaultKind::NonJsonBody`] answer.
pub const DEFAULT_NON_JSON_BODY: &str =
    "<html><body><h1>Internal page</h1><p>text that must not be read back</p></body></html>";

/// One fault rule. JSON: `{"operation": "sign_end_csr", "kind": "timeout", "probability": 0.5,
/// "count": 2, "latency_ms": 300, "retry_after_secs": 1}`; everything but `kind` is optional.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultRule {
    /// Operation it applies to (its [`Operation::name`]); `None` = every operation.
    #[serde(default, serialize_with = "ser_op", deserialize_with = "de_op")]
    pub operation: Option<Operation>,
    /// What it does.
    pub kind: FaultKind,
    /// Chance of applying to a matching call, 0.0..=1.0 (default 1.0).
    #[serde(default = "one")]
    pub probability: f64,
    /// Applies to this many more matching calls, then expires (default: forever).
    #[serde(default)]
    pub count: Option<u32>,
    /// Delay for [`FaultKind::Latency`], in milliseconds (`ms` is accepted too).
    #[serde(default, alias = "ms")]
    pub latency_ms: u64,
    /// `Retry-After` seconds for [`FaultKind::Throttle429`] (default 1).
    #[serde(default = "one_sec")]
    pub retry_after_secs: u64,
    /// Where a [`FaultKind::Redirect`] points (default `http://127.0.0.1:1/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Size of a [`FaultKind::HugeBody`] answer (default [`DEFAULT_HUGE_BODY_BYTES`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_bytes: Option<u64>,
    /// Body of a [`FaultKind::NonJsonBody`] answer (default [`DEFAULT_NON_JSON_BODY`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

fn one() -> f64 {
    1.0
}

fn one_sec() -> u64 {
    1
}

fn ser_op<S: Serializer>(op: &Option<Operation>, s: S) -> Result<S::Ok, S::Error> {
    match op {
        Some(op) => s.serialize_str(op.name()),
        None => s.serialize_none(),
    }
}

fn de_op<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Operation>, D::Error> {
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(name) => Operation::from_name(&name)
            .map(Some)
            .ok_or_else(|| de::Error::custom(format!("unknown operation {name:?}"))),
    }
}

impl FaultRule {
    /// A rule of `kind` for every operation, always, forever.
    #[must_use]
    pub fn new(kind: FaultKind) -> Self {
        Self {
            operation: None,
            kind,
            probability: 1.0,
            count: None,
            latency_ms: 0,
            retry_after_secs: 1,
            location: None,
            body_bytes: None,
            body: None,
        }
    }

    /// A redirect to `location`.
    #[must_use]
    pub fn redirect(location: impl Into<String>) -> Self {
        Self {
            location: Some(location.into()),
            ..Self::new(FaultKind::Redirect)
        }
    }

    /// An answer of `bytes` bytes, streamed.
    #[must_use]
    pub fn huge_body(bytes: u64) -> Self {
        Self {
            body_bytes: Some(bytes),
            ..Self::new(FaultKind::HugeBody)
        }
    }

    /// A `text/html` answer with `body`.
    #[must_use]
    pub fn non_json_body(body: impl Into<String>) -> Self {
        Self {
            body: Some(body.into()),
            ..Self::new(FaultKind::NonJsonBody)
        }
    }

    /// Restricts the rule to one operation.
    #[must_use]
    pub fn for_operation(mut self, op: Operation) -> Self {
        self.operation = Some(op);
        self
    }

    /// Applies the rule with probability `p`.
    #[must_use]
    pub fn with_probability(mut self, p: f64) -> Self {
        self.probability = p;
        self
    }

    /// Applies the rule to the next `n` matching calls only.
    #[must_use]
    pub fn times(mut self, n: u32) -> Self {
        self.count = Some(n);
        self
    }

    /// A latency rule.
    #[must_use]
    pub fn latency(ms: u64) -> Self {
        Self {
            latency_ms: ms,
            ..Self::new(FaultKind::Latency)
        }
    }

    fn matches(&self, op: Operation) -> bool {
        self.operation.is_none_or(|o| o == op)
    }

    fn fires(&self) -> bool {
        self.probability >= 1.0
            || (self.probability > 0.0 && rand::random::<f64>() < self.probability)
    }
}

/// What to do to one call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Decision {
    pub latency_ms: u64,
    pub action: Option<FaultKind>,
    pub retry_after_secs: u64,
    /// The hostile-answer parameters of the firing rule.
    pub location: Option<String>,
    pub body_bytes: Option<u64>,
    pub body: Option<String>,
}

/// The active rules.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    rules: Mutex<Vec<FaultRule>>,
}

impl Faults {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<FaultRule>> {
        self.rules
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn add(&self, rule: FaultRule) {
        self.lock().push(rule);
    }

    pub(crate) fn clear(&self) {
        self.lock().clear();
    }

    pub(crate) fn list(&self) -> Vec<FaultRule> {
        self.lock().clone()
    }

    /// Decides the faults of one call: every firing latency rule adds its delay; the first firing
    /// other rule (in insertion order) is the action. Counted rules that fire are used up.
    pub(crate) fn decide(&self, op: Operation) -> Decision {
        let mut rules = self.lock();
        let mut decision = Decision::default();
        for rule in rules.iter_mut() {
            let terminal = rule.kind != FaultKind::Latency;
            if !rule.matches(op) || (terminal && decision.action.is_some()) || !rule.fires() {
                continue;
            }
            if terminal {
                decision.action = Some(rule.kind);
                decision.retry_after_secs = rule.retry_after_secs;
                decision.location.clone_from(&rule.location);
                decision.body_bytes = rule.body_bytes;
                decision.body.clone_from(&rule.body);
            } else {
                decision.latency_ms = decision.latency_ms.saturating_add(rule.latency_ms);
            }
            if let Some(n) = rule.count.as_mut() {
                *n = n.saturating_sub(1);
            }
        }
        rules.retain(|r| r.count != Some(0));
        decision
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_rules_expire_and_operation_filters_apply() {
        let f = Faults::default();
        f.add(
            FaultRule::new(FaultKind::Timeout)
                .for_operation(Operation::SignEndCsr)
                .times(2),
        );
        f.add(FaultRule::latency(5));
        assert_eq!(f.decide(Operation::GetCa).action, None);
        assert_eq!(f.decide(Operation::GetCa).latency_ms, 5);
        assert_eq!(
            f.decide(Operation::SignEndCsr).action,
            Some(FaultKind::Timeout)
        );
        assert_eq!(
            f.decide(Operation::SignEndCsr).action,
            Some(FaultKind::Timeout)
        );
        assert_eq!(f.decide(Operation::SignEndCsr).action, None);
        assert_eq!(f.list().len(), 1);
    }

    #[test]
    fn zero_probability_never_fires_and_json_uses_operation_names() {
        let f = Faults::default();
        f.add(FaultRule::new(FaultKind::Error500).with_probability(0.0));
        assert_eq!(f.decide(Operation::GetCa), Decision::default());
        let rule: FaultRule = serde_json::from_str(
            r#"{"operation":"issue_end_cert","kind":"commit_then_lose_response","count":1}"#,
        )
        .unwrap();
        assert_eq!(rule.operation, Some(Operation::IssueEndCert));
        assert_eq!(rule.kind, FaultKind::CommitThenLoseResponse);
        assert!(
            serde_json::from_str::<FaultRule>(r#"{"operation":"nope","kind":"timeout"}"#).is_err()
        );
        let lat: FaultRule = serde_json::from_str(r#"{"kind":"latency","ms":40}"#).unwrap();
        assert_eq!(lat.latency_ms, 40);
        let back = serde_json::to_value(&rule).unwrap();
        assert_eq!(back["operation"], "issue_end_cert");
    }

    #[test]
    fn hostile_answer_rules_carry_their_parameters_to_the_decision() {
        let f = Faults::default();
        let rule: FaultRule =
            serde_json::from_str(r#"{"kind":"huge_body","body_bytes":1024,"count":1}"#).unwrap();
        f.add(rule);
        f.add(FaultRule::redirect("http://127.0.0.1:9/").times(1));
        let d = f.decide(Operation::GetCa);
        assert_eq!(
            (d.action, d.body_bytes),
            (Some(FaultKind::HugeBody), Some(1024))
        );
        let d = f.decide(Operation::GetCa);
        assert_eq!(d.action, Some(FaultKind::Redirect));
        assert_eq!(d.location.as_deref(), Some("http://127.0.0.1:9/"));
        assert_eq!(f.decide(Operation::GetCa), Decision::default());
    }
}
