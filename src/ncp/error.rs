//! Errors of NCP calls, each knowing whether it is worth retrying.

use super::messages::MessageId;
use super::operation::Operation;
use crate::reason::Reason;

/// An NCP call failed.
#[derive(Debug, thiserror::Error)]
pub enum NcpError {
    /// The Private CA service answered with an error envelope.
    #[error("{op}: ncp service error {code} (http {http_status}): {msg}")]
    Service {
        /// The operation.
        op: Operation,
        /// HTTP status.
        http_status: u16,
        /// The envelope's `code`.
        code: String,
        /// The envelope's `msg`, verbatim.
        msg: String,
        /// Which documented message `msg` is, when it is one (decided when the answer is decoded).
        known: Option<MessageId>,
    },
    /// The API gateway rejected the request (authentication, throttling, routing).
    #[error("{op}: ncp gateway error {error_code} (http {http_status}): {message}{}", details_suffix(details.as_deref()))]
    Gateway {
        /// The operation.
        op: Operation,
        /// HTTP status.
        http_status: u16,
        /// Gateway `errorCode`.
        error_code: String,
        /// Gateway `message`.
        message: String,
        /// Gateway `details`, when given.
        details: Option<String>,
        /// `Retry-After`, in seconds, when given.
        retry_after_secs: Option<u64>,
    },
    /// No answer within the request timeout; the call may or may not have taken effect.
    #[error("{op}: ncp request timed out after {timeout_ms} ms")]
    Timeout {
        /// The operation.
        op: Operation,
        /// The timeout that elapsed.
        timeout_ms: u64,
    },
    /// The connection could not be established, so the request never reached the service.
    #[error("{op}: cannot connect to ncp endpoint: {message}")]
    Connect {
        /// The operation.
        op: Operation,
        /// The cause.
        message: String,
    },
    /// The connection broke after the request was sent; the call may or may not have taken effect.
    #[error("{op}: ncp transport error: {message}")]
    Transport {
        /// The operation.
        op: Operation,
        /// The cause.
        message: String,
    },
    /// The answer could not be understood.
    #[error("{op}: cannot decode ncp answer (http {http_status}): {message}")]
    Decode {
        /// The operation.
        op: Operation,
        /// HTTP status.
        http_status: u16,
        /// What was wrong.
        message: String,
    },
    /// The endpoint answered with a redirect; redirects are never followed (they would carry the
    /// signed headers to another host, and let an endpoint read any URL back through us).
    #[error(
        "{op}: the ncp endpoint answered with a redirect (http {http_status}), which is not followed: spec.endpoint must be the API's own URL"
    )]
    Redirected {
        /// The operation.
        op: Operation,
        /// HTTP status (3xx).
        http_status: u16,
    },
    /// The answer was longer than the limit; reading stopped there.
    #[error("{op}: the ncp answer (http {http_status}) is larger than the limit of {limit_bytes} bytes{}", received_suffix(*received_bytes))]
    AnswerTooLarge {
        /// The operation.
        op: Operation,
        /// HTTP status.
        http_status: u16,
        /// The limit (`--ncp-max-answer-bytes`).
        limit_bytes: u64,
        /// The declared length, when the answer declared one.
        received_bytes: Option<u64>,
    },
    /// The request was not sent because an argument is unusable (bad endpoint, empty path parameter).
    #[error("{op}: invalid request: {message}")]
    InvalidRequest {
        /// The operation.
        op: Operation,
        /// What was wrong.
        message: String,
    },
}

/// ` (details)` when the gateway gave any: it tells a bad signature from a clock skew.
fn details_suffix(details: Option<&str>) -> String {
    match details.map(str::trim) {
        Some(d) if !d.is_empty() => format!(" ({d})"),
        _ => String::new(),
    }
}

/// ` (it declared N bytes)` when the answer declared its length.
fn received_suffix(received: Option<u64>) -> String {
    received.map_or_else(String::new, |n| format!(" (it declared {n} bytes)"))
}

impl NcpError {
    /// The operation that failed.
    #[must_use]
    pub fn operation(&self) -> Operation {
        match self {
            Self::Service { op, .. }
            | Self::Gateway { op, .. }
            | Self::Timeout { op, .. }
            | Self::Connect { op, .. }
            | Self::Transport { op, .. }
            | Self::Decode { op, .. }
            | Self::Redirected { op, .. }
            | Self::AnswerTooLarge { op, .. }
            | Self::InvalidRequest { op, .. } => *op,
        }
    }

    /// Whether trying again later may succeed: 5xx, throttling, timeouts, transport failures.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Service { http_status, .. } => *http_status >= 500,
            Self::Gateway { http_status, .. } => *http_status == 429 || *http_status >= 500,
            Self::Timeout { .. } | Self::Connect { .. } | Self::Transport { .. } => true,
            Self::Decode { http_status, .. } | Self::AnswerTooLarge { http_status, .. } => {
                *http_status >= 500 || *http_status == 429
            }
            Self::Redirected { .. } | Self::InvalidRequest { .. } => false,
        }
    }

    /// Whether the request certainly did not take effect, so even a non-idempotent call may be repeated:
    /// the connection never opened, or the gateway throttled it before it reached the service.
    #[must_use]
    pub fn certainly_not_applied(&self) -> bool {
        match self {
            Self::Connect { .. } | Self::InvalidRequest { .. } => true,
            Self::Gateway { http_status, .. } => *http_status == 429 || *http_status == 401,
            _ => false,
        }
    }

    /// Whether an answer that could not be read came with a success status: NCP may have signed.
    fn is_unreadable_success(&self) -> bool {
        matches!(self, Self::Decode { http_status, .. } | Self::AnswerTooLarge { http_status, .. } if (200..300).contains(http_status))
    }

    /// Whether the call may have taken effect in NCP (a certificate may exist): anything that is not
    /// certainly unsent and not a definite refusal. Timeouts, broken connections, 5xx answers and
    /// unreadable success answers may have signed; a 4xx refusal and an unsent request did not.
    #[must_use]
    pub fn may_have_applied(&self) -> bool {
        !self.certainly_not_applied() && (self.is_retryable() || self.is_unreadable_success())
    }

    /// Whether trying again later may succeed for the same request: retryable errors, and unreadable
    /// success answers (the retry then looks for the certificate before any new signing).
    #[must_use]
    pub fn is_worth_retrying(&self) -> bool {
        self.is_retryable() || self.is_unreadable_success()
    }

    /// Whether the failure is the issuer's rather than the request's: credentials or permissions, the
    /// CA not ACTIVE, or the CA's signing limit. Requests then wait, as they do while the issuer is not
    /// Ready.
    #[must_use]
    pub fn is_issuer_level(&self) -> bool {
        self.is_auth_failure()
            || matches!(
                self.known(),
                Some(MessageId::InvalidCaStatus | MessageId::SigningLimitExceeded)
            )
    }

    /// Whether the gateway refused the credentials or their permissions (401/403).
    #[must_use]
    pub fn is_auth_failure(&self) -> bool {
        matches!(
            self,
            Self::Gateway {
                http_status: 401 | 403,
                ..
            }
        )
    }

    /// Which documented service message the answer carried.
    #[must_use]
    pub fn known(&self) -> Option<MessageId> {
        match self {
            Self::Service { known, .. } => *known,
            _ => None,
        }
    }

    /// Whether the service said the CA does not exist.
    #[must_use]
    pub fn is_ca_not_found(&self) -> bool {
        self.known() == Some(MessageId::CaNotFound)
    }

    /// Whether the service said the certificate does not exist.
    #[must_use]
    pub fn is_cert_not_found(&self) -> bool {
        self.known() == Some(MessageId::CertNotFound)
    }

    /// The service's `msg`, verbatim, for service errors.
    #[must_use]
    pub fn service_msg(&self) -> Option<&str> {
        match self {
            Self::Service { msg, .. } => Some(msg),
            _ => None,
        }
    }

    /// Seconds the server asked us to wait before trying again.
    #[must_use]
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Self::Gateway {
                retry_after_secs, ..
            } => *retry_after_secs,
            _ => None,
        }
    }

    /// The reason for events and metric labels.
    #[must_use]
    pub fn reason(&self) -> Reason {
        match self {
            Self::Service { .. } => Reason::NcpServiceError,
            Self::Gateway {
                http_status: 401 | 403,
                ..
            } => Reason::NcpAuthenticationFailed,
            Self::Gateway {
                http_status: 429, ..
            } => Reason::NcpThrottled,
            Self::Gateway { .. } => Reason::NcpGatewayError,
            Self::Timeout { .. } => Reason::NcpTimeout,
            Self::Connect { .. } => Reason::NcpUnreachable,
            Self::Transport { .. } => Reason::NcpTransportError,
            Self::Decode { .. } | Self::Redirected { .. } | Self::AnswerTooLarge { .. } => {
                Reason::NcpBadResponse
            }
            Self::InvalidRequest { .. } => Reason::NcpInvalidRequest,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ncp::messages;

    fn service(status: u16) -> NcpError {
        NcpError::Service {
            op: Operation::SignEndCsr,
            http_status: status,
            code: "X".into(),
            msg: "m".into(),
            known: None,
        }
    }

    fn gateway(status: u16) -> NcpError {
        NcpError::Gateway {
            op: Operation::GetCa,
            http_status: status,
            error_code: "200".into(),
            message: "m".into(),
            details: None,
            retry_after_secs: None,
        }
    }

    #[test]
    fn service_errors_are_retryable_only_when_the_service_failed() {
        assert!(!service(400).is_retryable());
        assert!(service(500).is_retryable());
    }

    #[test]
    fn gateway_throttling_and_5xx_are_retryable_but_auth_failures_are_not() {
        assert!(gateway(429).is_retryable());
        assert!(gateway(503).is_retryable());
        assert!(!gateway(401).is_retryable());
        assert!(gateway(401).is_auth_failure());
        assert!(!gateway(404).is_retryable());
    }

    #[test]
    fn only_unsent_or_throttled_requests_count_as_certainly_not_applied() {
        let timeout = NcpError::Timeout {
            op: Operation::SignEndCsr,
            timeout_ms: 1,
        };
        assert!(timeout.is_retryable());
        assert!(!timeout.certainly_not_applied());
        assert!(gateway(429).certainly_not_applied());
        assert!(!service(500).certainly_not_applied());
    }

    #[test]
    fn a_redirect_is_final_and_an_oversized_answer_is_classified_like_an_unreadable_one() {
        let redirect = NcpError::Redirected {
            op: Operation::SignEndCsr,
            http_status: 302,
        };
        assert!(!redirect.is_retryable());
        assert!(!redirect.may_have_applied());
        assert!(redirect.to_string().contains("not followed"));
        let big = |http_status| NcpError::AnswerTooLarge {
            op: Operation::SignEndCsr,
            http_status,
            limit_bytes: 10,
            received_bytes: Some(11),
        };
        assert!(!big(200).is_retryable());
        assert!(big(200).may_have_applied(), "NCP may have signed");
        assert!(big(200).is_worth_retrying());
        assert!(big(502).is_retryable());
        assert!(!big(400).is_worth_retrying());
        assert_eq!(
            big(200).to_string(),
            "sign_end_csr: the ncp answer (http 200) is larger than the limit of 10 bytes (it declared 11 bytes)"
        );
    }

    #[test]
    fn display_names_the_operation_and_the_verbatim_message() {
        let e = NcpError::Service {
            op: Operation::GetCa,
            http_status: 400,
            code: "NOT_FOUND".into(),
            msg: messages::CA_NOT_FOUND.msg.into(),
            known: Some(MessageId::CaNotFound),
        };
        assert_eq!(
            e.to_string(),
            "Get CA: ncp service error NOT_FOUND (http 400): The CA doesn't exist."
        );
        assert!(e.is_ca_not_found());
    }
}
