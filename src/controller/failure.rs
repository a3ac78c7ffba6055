//! What a signer does after an NCP call failed: one pure classifier for NCP end-entity signing, NCP
//! CA signing and the subordinate provisioner alike.

use super::delays::{MAX_BACKOFF, NOT_YET_VALID_FLOOR, NOT_YET_VALID_MAX_WAIT, backoff};
use crate::ncp::NcpError;
use std::time::Duration;

/// What to do after a failed NCP call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// The issuer, not the request, is at fault (credentials, CA not ACTIVE, signing limit): wait for
    /// the issuer, as while it is not Ready.
    WaitForIssuer,
    /// Try again after this long.
    Retry {
        /// The wait.
        after: Duration,
    },
    /// Give up: the request fails for good.
    Fail {
        /// Why.
        cause: FailCause,
    },
}

/// Why a failure is final.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailCause {
    /// NCP refused the request (a 4xx validation error, an unusable argument).
    Refused,
    /// The failures were retryable, but they went on for longer than the retry budget.
    RetryBudgetSpent,
    /// The signed certificate starts so far in the future that the signer's clock is broken.
    NotValidForTooLong,
}

/// Classifies a failure of a request `age` old, with `max_retry` the retry budget (counted from the
/// request's creation, so the backoff needs no state of its own). A server's `Retry-After` is honoured
/// when it asks for longer than the backoff, up to [`MAX_BACKOFF`]: the endpoint is user-set, so its
/// answer must not park a request past our own bound.
#[must_use]
pub fn after_failure(error: &NcpError, age: Duration, max_retry: Duration) -> AfterFailure {
    if error.is_issuer_level() {
        return AfterFailure::WaitForIssuer;
    }
    if !error.is_worth_retrying() {
        return AfterFailure::Fail {
            cause: FailCause::Refused,
        };
    }
    let asked = Duration::from_secs(error.retry_after_secs().unwrap_or(0)).min(MAX_BACKOFF);
    retry_within_budget(age, max_retry, asked)
}

/// After a retryable failure of a request `age` old (an NCP error, or a search that could not
/// settle the request's fate): retry after the backoff (at least `at_least`) within the retry budget
/// `max_retry`, fail once it is spent.
#[must_use]
pub fn retry_within_budget(age: Duration, max_retry: Duration, at_least: Duration) -> AfterFailure {
    if age > max_retry {
        return AfterFailure::Fail {
            cause: FailCause::RetryBudgetSpent,
        };
    }
    AfterFailure::Retry {
        after: backoff(age).max(at_least),
    }
}

/// Classifies a certificate NCP signed whose validity starts `starts_in` from now, beyond the clock
/// skew tolerance (NCP's clock ahead of ours). Not a refusal and not bound by the retry budget: the
/// certificate becomes usable with time, and failing would make cert-manager sign again. The request
/// is retried when the certificate starts (within [`NOT_YET_VALID_FLOOR`]..[`MAX_BACKOFF`]); only a
/// start further away than [`NOT_YET_VALID_MAX_WAIT`] fails it.
#[must_use]
pub fn after_not_yet_valid(starts_in: Duration) -> AfterFailure {
    if starts_in > NOT_YET_VALID_MAX_WAIT {
        return AfterFailure::Fail {
            cause: FailCause::NotValidForTooLong,
        };
    }
    AfterFailure::Retry {
        after: starts_in.clamp(NOT_YET_VALID_FLOOR, MAX_BACKOFF),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ncp::Operation;
    use crate::ncp::messages::{self, ServiceMessage};

    const OP: Operation = Operation::SignEndCsr;
    const HOUR: Duration = Duration::from_secs(3600);

    fn service(m: ServiceMessage) -> NcpError {
        NcpError::Service {
            op: OP,
            http_status: m.http_status,
            code: m.code.into(),
            msg: m.msg.into(),
            known: Some(m.id),
        }
    }

    fn gateway(status: u16, retry_after_secs: Option<u64>) -> NcpError {
        NcpError::Gateway {
            op: OP,
            http_status: status,
            error_code: "x".into(),
            message: "m".into(),
            details: None,
            retry_after_secs,
        }
    }

    fn decode(status: u16) -> NcpError {
        NcpError::Decode {
            op: OP,
            http_status: status,
            message: "m".into(),
        }
    }

    #[derive(Debug, PartialEq)]
    enum Expect {
        Wait,
        Retry,
        Refused,
    }

    #[test]
    fn each_ncp_error_shape_gets_its_action() {
        let cases: Vec<(&str, NcpError, Expect, bool)> = vec![
            // (what, error, action while young, may have applied)
            ("401 credentials", gateway(401, None), Expect::Wait, false),
            ("403 permissions", gateway(403, None), Expect::Wait, false),
            (
                "CA not ACTIVE",
                service(messages::INVALID_CA_STATUS),
                Expect::Wait,
                false,
            ),
            (
                "signing limit",
                service(messages::SIGNING_LIMIT_EXCEEDED),
                Expect::Wait,
                false,
            ),
            (
                "invalid csr",
                service(messages::INVALID_CSR),
                Expect::Refused,
                false,
            ),
            (
                "invalid period",
                service(messages::INVALID_PERIOD),
                Expect::Refused,
                false,
            ),
            (
                "CA not found",
                service(messages::CA_NOT_FOUND),
                Expect::Refused,
                false,
            ),
            (
                "service 500",
                service(messages::TEMPORARILY_UNAVAILABLE),
                Expect::Retry,
                true,
            ),
            ("429 throttled", gateway(429, None), Expect::Retry, false),
            ("gateway 503", gateway(503, None), Expect::Retry, true),
            ("gateway 404", gateway(404, None), Expect::Refused, false),
            (
                "timeout",
                NcpError::Timeout {
                    op: OP,
                    timeout_ms: 1,
                },
                Expect::Retry,
                true,
            ),
            (
                "connect",
                NcpError::Connect {
                    op: OP,
                    message: "refused".into(),
                },
                Expect::Retry,
                false,
            ),
            (
                "transport",
                NcpError::Transport {
                    op: OP,
                    message: "reset".into(),
                },
                Expect::Retry,
                true,
            ),
            ("unreadable 200", decode(200), Expect::Retry, true),
            ("unreadable 400", decode(400), Expect::Refused, false),
            ("unreadable 502", decode(502), Expect::Retry, true),
            (
                "invalid request",
                NcpError::InvalidRequest {
                    op: OP,
                    message: "x".into(),
                },
                Expect::Refused,
                false,
            ),
        ];
        for (what, error, expect, applied) in cases {
            let got = match after_failure(&error, Duration::ZERO, HOUR) {
                AfterFailure::WaitForIssuer => Expect::Wait,
                AfterFailure::Retry { .. } => Expect::Retry,
                AfterFailure::Fail {
                    cause: FailCause::Refused,
                } => Expect::Refused,
                AfterFailure::Fail { cause } => panic!("{what}: {cause:?}"),
            };
            assert_eq!(got, expect, "{what}");
            assert_eq!(
                error.may_have_applied(),
                applied,
                "{what}: may have applied"
            );
        }
    }

    #[test]
    fn retryable_failures_fail_once_the_budget_is_spent_but_issuer_problems_keep_waiting() {
        let timeout = NcpError::Timeout {
            op: OP,
            timeout_ms: 1,
        };
        assert_eq!(
            after_failure(&timeout, HOUR * 2, HOUR),
            AfterFailure::Fail {
                cause: FailCause::RetryBudgetSpent
            }
        );
        assert_eq!(
            after_failure(&gateway(401, None), HOUR * 2, HOUR),
            AfterFailure::WaitForIssuer
        );
    }

    #[test]
    fn a_certificate_not_valid_yet_waits_for_its_start_within_bounds_and_ignores_the_budget() {
        let s = Duration::from_secs;
        assert_eq!(
            after_not_yet_valid(s(60)),
            AfterFailure::Retry { after: s(60) }
        );
        assert_eq!(
            after_not_yet_valid(Duration::ZERO),
            AfterFailure::Retry {
                after: NOT_YET_VALID_FLOOR
            }
        );
        assert_eq!(
            after_not_yet_valid(s(7200)),
            AfterFailure::Retry { after: MAX_BACKOFF }
        );
        assert_eq!(
            after_not_yet_valid(s(2 * 86_400)),
            AfterFailure::Fail {
                cause: FailCause::NotValidForTooLong
            }
        );
    }

    #[test]
    fn the_backoff_grows_with_age_and_honours_retry_after() {
        let AfterFailure::Retry { after } =
            after_failure(&gateway(429, None), Duration::ZERO, HOUR)
        else {
            panic!("retry expected");
        };
        assert!(after >= Duration::from_secs(5) && after <= Duration::from_secs(6));
        let AfterFailure::Retry { after } =
            after_failure(&gateway(429, Some(120)), Duration::ZERO, HOUR)
        else {
            panic!("retry expected");
        };
        assert_eq!(after, Duration::from_secs(120));
        let AfterFailure::Retry { after } =
            after_failure(&gateway(429, Some(86_400)), Duration::ZERO, HOUR)
        else {
            panic!("retry expected");
        };
        assert_eq!(
            after, MAX_BACKOFF,
            "a day-long Retry-After is cut to our own bound"
        );
    }
}
