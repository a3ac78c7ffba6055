//! A routed API call and lenient access to its query and JSON body.
//!
//! The body is read as loose JSON: numeric-looking fields are accepted as strings or numbers (the
//! docs send `"period": "30"`, some clients send `30`), as a Java service would coerce them.

use crate::ncp::messages::{self, ServiceMessage};
use crate::ncp::operation::Operation;
use serde_json::{Map, Value};

/// One API call after routing and authentication.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub op: Operation,
    pub ca_tag: Option<String>,
    pub serial: Option<String>,
    pub id_no: Option<String>,
    pub query: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// A JSON object body.
pub(crate) type Body = Map<String, Value>;

impl Call {
    /// The caTag path parameter ("caTag is missing." when empty).
    pub(crate) fn tag(&self) -> Result<&str, ServiceMessage> {
        match self.ca_tag.as_deref() {
            Some(t) if !t.is_empty() => Ok(t),
            _ => Err(messages::CA_TAG_MISSING),
        }
    }

    /// The first value of a query parameter.
    pub(crate) fn query(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The body as a JSON object: empty → "The request body is missing.", anything but a JSON
    /// object → "Invalid request.".
    pub(crate) fn body(&self) -> Result<Body, ServiceMessage> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Err(messages::BODY_MISSING);
        }
        match serde_json::from_slice::<Value>(&self.body) {
            Ok(Value::Object(map)) => Ok(map),
            _ => Err(messages::INVALID_REQUEST),
        }
    }
}

/// A string field: strings as they are, numbers and booleans as text, null or absent as `None`,
/// arrays and objects → "Invalid request.".
pub(crate) fn str_field(body: &Body, key: &str) -> Result<Option<String>, ServiceMessage> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(Value::Bool(b)) => Ok(Some(b.to_string())),
        Some(_) => Err(messages::INVALID_REQUEST),
    }
}

/// A string field that must be present and non-blank, else `missing`.
pub(crate) fn required(
    body: &Body,
    key: &str,
    missing: ServiceMessage,
) -> Result<String, ServiceMessage> {
    match str_field(body, key)? {
        Some(s) if !s.trim().is_empty() => Ok(s),
        _ => Err(missing),
    }
}

/// Splits and percent-decodes a query string.
pub(crate) fn parse_query(query: Option<&str>) -> Vec<(String, String)> {
    query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (
                percent_decode(&k.replace('+', " ")),
                percent_decode(&v.replace('+', " ")),
            )
        })
        .collect()
}

/// Decodes `%XX` escapes; malformed escapes are kept as they are.
pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(body: &str) -> Call {
        Call {
            op: Operation::CreateCa,
            ca_tag: None,
            serial: None,
            id_no: None,
            query: parse_query(Some("caType=PRIVATE_SUB&issuerTag=ab%2Dcd&x")),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn bodies_are_objects_or_the_documented_errors() {
        assert_eq!(call("  ").body().unwrap_err(), messages::BODY_MISSING);
        assert_eq!(call("{").body().unwrap_err(), messages::INVALID_REQUEST);
        assert_eq!(call("[1]").body().unwrap_err(), messages::INVALID_REQUEST);
        let b = call(r#"{"period": 30, "alias": "x", "o": {}}"#)
            .body()
            .unwrap();
        assert_eq!(str_field(&b, "period").unwrap().as_deref(), Some("30"));
        assert_eq!(str_field(&b, "nope").unwrap(), None);
        assert_eq!(str_field(&b, "o").unwrap_err(), messages::INVALID_REQUEST);
    }

    #[test]
    fn query_strings_are_split_and_decoded() {
        let c = call("{}");
        assert_eq!(c.query("caType"), Some("PRIVATE_SUB"));
        assert_eq!(c.query("issuerTag"), Some("ab-cd"));
        assert_eq!(c.query("x"), Some(""));
        assert_eq!(percent_decode("a%3Ab%zz%4"), "a:b%zz%4");
    }
}
