//! The two answer shapes: the service envelope `{code, msg, data}` and the gateway error
//! `{"error": {errorCode, message, details}}`.

use crate::ncp::messages::ServiceMessage;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

const JSON: &str = "application/json;charset=UTF-8";

fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut resp = (status, body.to_string()).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON));
    resp
}

/// `200 {"code":"SUCCESS","msg":"Success","data":…}`.
pub(crate) fn success(data: &Value) -> Response {
    json_response(
        StatusCode::OK,
        &json!({"code": crate::ncp::types::SUCCESS, "msg": "Success", "data": data}),
    )
}

/// A service error with its documented status (400, or 500 for the outage message).
pub(crate) fn service_error(m: ServiceMessage) -> Response {
    let status = StatusCode::from_u16(m.http_status).unwrap_or(StatusCode::BAD_REQUEST);
    json_response(status, &json!({"code": m.code, "msg": m.msg, "data": null}))
}

/// A gateway error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GatewayError {
    pub status: StatusCode,
    pub error_code: &'static str,
    pub message: &'static str,
    pub details: String,
    pub retry_after_secs: Option<u64>,
}

impl GatewayError {
    fn new(
        status: StatusCode,
        error_code: &'static str,
        message: &'static str,
        details: impl Into<String>,
    ) -> Self {
        Self {
            status,
            error_code,
            message,
            details: details.into(),
            retry_after_secs: None,
        }
    }

    /// 401 / 200 Authentication Failed.
    pub(crate) fn authentication_failed(details: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "200",
            "Authentication Failed",
            details,
        )
    }

    /// 401 / 210 Permission Denied.
    pub(crate) fn permission_denied(details: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "210",
            "Permission Denied",
            details,
        )
    }

    /// 404 / 300 Not Found Exception.
    pub(crate) fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "300",
            "Not Found Exception",
            "the requested resource does not exist",
        )
    }

    /// 400 / 100 Bad Request Exception (a malformed request, e.g. a body cut short).
    pub(crate) fn bad_request(details: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "100",
            "Bad Request Exception",
            details,
        )
    }

    /// 413 / 430 Request Entity Too Large.
    pub(crate) fn too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "430",
            "Request Entity Too Large",
            "request body too large",
        )
    }

    /// 429 / 410 Throttle Limited, with Retry-After.
    pub(crate) fn throttled(retry_after_secs: u64) -> Self {
        Self {
            retry_after_secs: Some(retry_after_secs),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "410",
                "Throttle Limited",
                "too many requests",
            )
        }
    }

    /// 503 / 500 Endpoint Error.
    pub(crate) fn endpoint_error() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "500",
            "Endpoint Error",
            "the endpoint is unavailable",
        )
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"errorCode": self.error_code, "message": self.message, "details": self.details}});
        let mut resp = json_response(self.status, &body);
        if let Some(secs) = self.retry_after_secs {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}
