//! NCP API Gateway request signing (signature v2).
//!
//! `stringToSign = METHOD SP REQUEST_URI LF TIMESTAMP LF ACCESS_KEY`, signed with HMAC-SHA256 under the
//! secret key and encoded as standard Base64 with padding. `REQUEST_URI` is the path plus `?query` when a
//! query is present, byte for byte as sent on the wire.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;

/// Header carrying the request time in milliseconds since the Unix epoch.
pub const HEADER_TIMESTAMP: &str = "x-ncp-apigw-timestamp";
/// Header carrying the access key.
pub const HEADER_ACCESS_KEY: &str = "x-ncp-iam-access-key";
/// Header carrying the v2 signature.
pub const HEADER_SIGNATURE_V2: &str = "x-ncp-apigw-signature-v2";
/// Header name NAVER's Go SDK uses for the same HMAC.
pub const HEADER_SIGNATURE_V1: &str = "x-ncp-apigw-signature-v1";

/// The NCP secret key: never printed by `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey(String);

impl SecretKey {
    /// Wraps a secret key.
    #[must_use]
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The key material, for computing signatures only.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// From a command-line flag or environment variable (clap parses it through this).
impl From<String> for SecretKey {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

/// An access key and its secret key.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The access key id (not secret; it is sent in a header).
    pub access_key: String,
    /// The secret key.
    pub secret_key: SecretKey,
}

impl Credentials {
    /// Builds credentials from an access key and a secret key.
    #[must_use]
    pub fn new(access_key: impl Into<String>, secret_key: impl Into<String>) -> Self {
        Self {
            access_key: access_key.into(),
            secret_key: SecretKey::new(secret_key),
        }
    }

    /// Signs a request (see [`signature`]).
    #[must_use]
    pub fn sign(&self, method: &str, request_uri: &str, timestamp_ms: &str) -> String {
        signature(
            self.secret_key.expose(),
            method,
            request_uri,
            timestamp_ms,
            &self.access_key,
        )
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key", &self.access_key)
            .field("secret_key", &self.secret_key)
            .finish()
    }
}

/// The exact string that is signed.
#[must_use]
pub fn string_to_sign(
    method: &str,
    request_uri: &str,
    timestamp_ms: &str,
    access_key: &str,
) -> String {
    format!("{method} {request_uri}\n{timestamp_ms}\n{access_key}")
}

/// Base64(HMAC-SHA256(secret_key, stringToSign)).
#[must_use]
pub fn signature(
    secret_key: &str,
    method: &str,
    request_uri: &str,
    timestamp_ms: &str,
    access_key: &str,
) -> String {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail here.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret_key.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC-SHA256 accepts any key length"));
    mac.update(string_to_sign(method, request_uri, timestamp_ms, access_key).as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Compares two signatures in constant time.
#[must_use]
pub fn signatures_match(expected: &str, presented: &str) -> bool {
    let (a, b) = (expected.as_bytes(), presented.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const AK: &str = "AKIAEXAMPLEACCESSKEY";
    const SK: &str = "SECRETEXAMPLEKEY0123456789abcdefghijklmn";
    const TS: &str = "1700000000000";

    #[test]
    fn documented_vector_for_a_get_with_a_query_string_matches() {
        assert_eq!(
            signature(SK, "GET", "/api/v1/ca?pageNo=1", TS, AK),
            "Y1Z+CDzGDuGjXrb6SLNNjQchp634QZx5wZ98W6Voucs="
        );
    }

    #[test]
    fn documented_vector_for_a_post_matches() {
        assert_eq!(
            signature(SK, "POST", "/api/v1/ca/12345678-abcdefgh/cert/sign", TS, AK),
            "V3mm3VQcuB6t8siaEhkJphuBU8oceBIsolvWuB7belo="
        );
    }

    #[test]
    fn documented_vector_for_a_get_without_query_matches() {
        assert_eq!(
            signature(SK, "GET", "/api/v1/ca", TS, AK),
            "Qfa56G3wm/tfFHfmmYLOOE7aZLX7WUELzMnlhVJAK3s="
        );
    }

    #[test]
    fn string_to_sign_has_no_trailing_newline() {
        assert_eq!(
            string_to_sign("GET", "/a?b=1", "1", "k"),
            "GET /a?b=1\n1\nk"
        );
    }

    #[test]
    fn debug_output_of_credentials_never_shows_the_secret_key() {
        let creds = Credentials::new(AK, SK);
        let shown = format!("{creds:?}");
        assert!(shown.contains(AK));
        assert!(!shown.contains(SK), "{shown}");
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn signature_comparison_rejects_different_and_truncated_values() {
        assert!(signatures_match("abc=", "abc="));
        assert!(!signatures_match("abc=", "abd="));
        assert!(!signatures_match("abc=", "abc"));
    }
}
