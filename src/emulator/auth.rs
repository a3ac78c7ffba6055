//! The API gateway's authentication, as NCP's gateway applies it before a request reaches Private CA.
//!
//! In order: all three headers present → timestamp an integer within the allowed skew of the wall
//! clock → known access key → HMAC over `METHOD SP request-target LF timestamp LF access-key`. Every
//! failure is 401 errorCode 200. A viewer key that tries to write gets 401 errorCode 210.
//!
//! Lenient (the default): header `x-ncp-apigw-signature-v2` (documented) or `x-ncp-apigw-signature-v1`
//! (NAVER's Go SDK), each computed over the raw path and query as received, or over the path alone
//! (the Go SDK signs the path before appending the query).
//!
//! Strict (`strict_signing`): only `x-ncp-apigw-signature-v2`, only over the exact request-target.

use super::config::EmulatorConfig;
use super::response::GatewayError;
use crate::ncp::signing::{
    self, Credentials, HEADER_ACCESS_KEY, HEADER_SIGNATURE_V1, HEADER_SIGNATURE_V2,
    HEADER_TIMESTAMP,
};
use axum::http::HeaderMap;

/// What an authenticated key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Everything.
    Full,
    /// Reads only (`NCP_PRIVATE_CA_VIEWER`).
    ReadOnly,
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// Authenticates a request. `target` is the request-target exactly as received (path and query).
pub(crate) fn authenticate(
    config: &EmulatorConfig,
    method: &str,
    target: &str,
    headers: &HeaderMap,
    now_ms: i64,
    is_write: bool,
) -> Result<Access, GatewayError> {
    let timestamp = header(headers, HEADER_TIMESTAMP);
    let access_key = header(headers, HEADER_ACCESS_KEY);
    let accepted: &[&str] = if config.strict_signing {
        &[HEADER_SIGNATURE_V2]
    } else {
        &[HEADER_SIGNATURE_V2, HEADER_SIGNATURE_V1]
    };
    let signatures: Vec<&str> = accepted.iter().filter_map(|h| header(headers, h)).collect();
    let (Some(timestamp), Some(access_key)) = (timestamp, access_key) else {
        let missing = if timestamp.is_none() {
            HEADER_TIMESTAMP
        } else {
            HEADER_ACCESS_KEY
        };
        return Err(GatewayError::authentication_failed(format!(
            "missing header {missing}"
        )));
    };
    if signatures.is_empty() {
        return Err(GatewayError::authentication_failed(format!(
            "missing header {HEADER_SIGNATURE_V2}"
        )));
    }

    let ts: i64 = timestamp
        .parse()
        .map_err(|_| GatewayError::authentication_failed("timestamp is not an integer"))?;
    let skew = now_ms.abs_diff(ts);
    if skew > config.clock_skew_ms.unsigned_abs() {
        return Err(GatewayError::authentication_failed(format!(
            "clock skew: the timestamp differs from the server time by {skew} ms, more than the allowed {} ms; check this machine's clock",
            config.clock_skew_ms
        )));
    }

    let (creds, access): (&Credentials, Access) = if access_key == config.credentials.access_key {
        (&config.credentials, Access::Full)
    } else if let Some(viewer) = config
        .viewer_credentials
        .as_ref()
        .filter(|v| v.access_key == access_key)
    {
        (viewer, Access::ReadOnly)
    } else {
        return Err(GatewayError::authentication_failed("unknown access key"));
    };

    let path_only = target.split_once('?').map_or(target, |(p, _)| p);
    let signed_targets: &[&str] = if config.strict_signing {
        &[target]
    } else {
        &[target, path_only]
    };
    let expected: Vec<String> = signed_targets
        .iter()
        .map(|t| creds.sign(method, t, timestamp))
        .collect();
    let valid = signatures.iter().any(|presented| {
        expected
            .iter()
            .any(|e| signing::signatures_match(e, presented))
    });
    if !valid {
        return Err(GatewayError::authentication_failed(
            "signature mismatch: the signature does not match METHOD, the request-target (path and query) and the timestamp under this access key's secret",
        ));
    }

    if is_write && access == Access::ReadOnly {
        return Err(GatewayError::permission_denied(
            "the access key has read-only permission on Private CA",
        ));
    }
    Ok(access)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderValue, StatusCode};

    const AK: &str = "AKIAEXAMPLEACCESSKEY";
    const SK: &str = "SECRETEXAMPLEKEY0123456789abcdefghijklmn";
    const NOW: i64 = 1_700_000_000_000;

    fn config() -> EmulatorConfig {
        let mut c = EmulatorConfig::new(Credentials::new(AK, SK));
        c.viewer_credentials = Some(Credentials::new("VIEWER", "viewer-secret"));
        c
    }

    fn headers(
        ak: &str,
        sk: &str,
        method: &str,
        signed: &str,
        ts: &str,
        sig_header: &str,
    ) -> HeaderMap {
        let mut h = HeaderMap::new();
        let sig = signing::signature(sk, method, signed, ts, ak);
        h.insert(HEADER_TIMESTAMP, HeaderValue::from_str(ts).unwrap());
        h.insert(HEADER_ACCESS_KEY, HeaderValue::from_str(ak).unwrap());
        h.insert(
            axum::http::HeaderName::from_bytes(sig_header.as_bytes()).unwrap(),
            HeaderValue::from_str(&sig).unwrap(),
        );
        h
    }

    fn check(h: &HeaderMap, target: &str, write: bool) -> Result<Access, GatewayError> {
        authenticate(&config(), "GET", target, h, NOW, write)
    }

    fn assert_auth_failed(r: Result<Access, GatewayError>) {
        let e = r.unwrap_err();
        assert_eq!(e.status, StatusCode::UNAUTHORIZED);
        assert_eq!(e.error_code, "200");
        assert_eq!(e.message, "Authentication Failed");
    }

    #[test]
    fn a_correctly_signed_v2_request_with_a_query_is_accepted() {
        let t = "/api/v1/ca?pageNo=1";
        let h = headers(AK, SK, "GET", t, "1700000000000", HEADER_SIGNATURE_V2);
        assert_eq!(check(&h, t, false).unwrap(), Access::Full);
    }

    #[test]
    fn naver_sdk_style_v1_header_over_the_path_without_query_is_accepted() {
        let h = headers(
            AK,
            SK,
            "GET",
            "/api/v1/ca",
            "1700000000000",
            HEADER_SIGNATURE_V1,
        );
        assert_eq!(
            check(&h, "/api/v1/ca?pageNo=2", false).unwrap(),
            Access::Full
        );
    }

    #[test]
    fn strict_mode_refuses_a_path_only_signature_on_a_query_request_and_the_v1_header() {
        let strict = config().strict();
        let t = "/api/v1/ca?pageNo=2";
        let path_only = headers(
            AK,
            SK,
            "GET",
            "/api/v1/ca",
            "1700000000000",
            HEADER_SIGNATURE_V2,
        );
        assert!(authenticate(&config(), "GET", t, &path_only, NOW, false).is_ok());
        assert_auth_failed(authenticate(&strict, "GET", t, &path_only, NOW, false));
        let v1 = headers(AK, SK, "GET", t, "1700000000000", HEADER_SIGNATURE_V1);
        assert!(authenticate(&config(), "GET", t, &v1, NOW, false).is_ok());
        assert_auth_failed(authenticate(&strict, "GET", t, &v1, NOW, false));
        let exact = headers(AK, SK, "GET", t, "1700000000000", HEADER_SIGNATURE_V2);
        assert_eq!(
            authenticate(&strict, "GET", t, &exact, NOW, false).unwrap(),
            Access::Full
        );
    }

    #[test]
    fn each_missing_header_is_rejected() {
        let t = "/api/v1/ca";
        for name in [HEADER_TIMESTAMP, HEADER_ACCESS_KEY, HEADER_SIGNATURE_V2] {
            let mut h = headers(AK, SK, "GET", t, "1700000000000", HEADER_SIGNATURE_V2);
            h.remove(name);
            assert_auth_failed(check(&h, t, false));
        }
    }

    #[test]
    fn non_integer_and_stale_timestamps_are_rejected() {
        let t = "/api/v1/ca";
        assert_auth_failed(check(
            &headers(AK, SK, "GET", t, "soon", HEADER_SIGNATURE_V2),
            t,
            false,
        ));
        let stale = (NOW - 300_001).to_string();
        assert_auth_failed(check(
            &headers(AK, SK, "GET", t, &stale, HEADER_SIGNATURE_V2),
            t,
            false,
        ));
        let future = (NOW + 300_001).to_string();
        assert_auth_failed(check(
            &headers(AK, SK, "GET", t, &future, HEADER_SIGNATURE_V2),
            t,
            false,
        ));
        let edge = (NOW - 300_000).to_string();
        assert!(
            check(
                &headers(AK, SK, "GET", t, &edge, HEADER_SIGNATURE_V2),
                t,
                false
            )
            .is_ok()
        );
    }

    #[test]
    fn unknown_access_keys_and_bad_signatures_are_rejected() {
        let t = "/api/v1/ca";
        assert_auth_failed(check(
            &headers("OTHER", SK, "GET", t, "1700000000000", HEADER_SIGNATURE_V2),
            t,
            false,
        ));
        assert_auth_failed(check(
            &headers(AK, "wrong", "GET", t, "1700000000000", HEADER_SIGNATURE_V2),
            t,
            false,
        ));
        // Signed for another path or method.
        assert_auth_failed(check(
            &headers(
                AK,
                SK,
                "GET",
                "/api/v1/ca/x",
                "1700000000000",
                HEADER_SIGNATURE_V2,
            ),
            t,
            false,
        ));
        assert_auth_failed(check(
            &headers(AK, SK, "POST", t, "1700000000000", HEADER_SIGNATURE_V2),
            t,
            false,
        ));
    }

    #[test]
    fn the_viewer_key_reads_but_gets_permission_denied_on_writes() {
        let t = "/api/v1/ca";
        let h = headers(
            "VIEWER",
            "viewer-secret",
            "GET",
            t,
            "1700000000000",
            HEADER_SIGNATURE_V2,
        );
        assert_eq!(check(&h, t, false).unwrap(), Access::ReadOnly);
        let e = check(&h, t, true).unwrap_err();
        assert_eq!(
            (e.status, e.error_code, e.message),
            (StatusCode::UNAUTHORIZED, "210", "Permission Denied")
        );
    }
}
