//! Judging one answer: the envelope, the fields against their shape, what our client decodes, or the
//! documented error it should be. Pure: an answer in, rows out.

use super::probe::Answer;
use super::report::{Raw, Row, Section, redact};
use super::shape::{self, Kind};
use crate::ncp::NcpError;
use crate::ncp::client::decode_raw_answer;
use crate::ncp::messages::ServiceMessage;
use crate::ncp::types::SUCCESS;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// What a failed or unexpected answer was, in a few words (never a certificate or a key: only the
/// envelope's code and message or the gateway's error).
#[must_use]
pub fn describe(answer: &Answer) -> String {
    let Some(json) = &answer.json else {
        return format!(
            "HTTP {}, not JSON ({} bytes)",
            answer.http_status,
            answer.bytes.len()
        );
    };
    if let Some(error) = json.get("error") {
        let code = match error.get("errorCode") {
            Some(Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
            None => "?".into(),
        };
        let message = error.get("message").and_then(Value::as_str).unwrap_or("");
        let details = error
            .get("details")
            .and_then(Value::as_str)
            .map(|d| format!(" ({d})"))
            .unwrap_or_default();
        let denied = if code == "210" || answer.http_status == 403 {
            "; permission denied: the sub account's policy does not allow this operation"
        } else {
            ""
        };
        return format!(
            "HTTP {}, gateway errorCode {code} {message}{details}{denied}",
            answer.http_status
        );
    }
    let field = |name: &str| json.get(name).and_then(Value::as_str).unwrap_or("?");
    format!(
        "HTTP {}, code {}, msg {:?}",
        answer.http_status,
        field("code"),
        field("msg")
    )
}

/// Records the redacted raw answer in the section.
pub fn record(section: &mut Section, answer: &Answer) {
    let body = match &answer.json {
        Some(json) => redact(json),
        None => Value::String(format!("<{} bytes, not JSON>", answer.bytes.len())),
    };
    section.raw.push(Raw {
        request: answer.request.clone(),
        http_status: answer.http_status,
        body,
    });
}

/// A row for a call that got no answer.
#[must_use]
pub fn no_answer(check: &str, expectation: &str, err: &NcpError) -> Row {
    Row::judged(check, expectation, format!("no answer: {err}"), false)
}

/// Judges a success answer: envelope, fields against `kind`, then what our client decodes (and
/// `missing` says it lacks). Returns the decoded value when there is one.
pub fn success<T: DeserializeOwned>(
    section: &mut Section,
    result: &Result<Answer, NcpError>,
    kind: Kind,
    missing: impl Fn(&T) -> Option<&'static str>,
) -> Option<T> {
    let expectation = "HTTP 200, code SUCCESS, msg \"Success\"";
    let answer = match result {
        Ok(a) => a,
        Err(e) => {
            section.push(no_answer("envelope", expectation, e));
            return None;
        }
    };
    record(section, answer);
    let envelope_ok = answer.http_status == 200
        && answer.json.as_ref().is_some_and(|j| {
            j.get("code").and_then(Value::as_str) == Some(SUCCESS)
                && j.get("msg").and_then(Value::as_str) == Some("Success")
        });
    section.push(Row::judged(
        "envelope",
        expectation,
        describe(answer),
        envelope_ok,
    ));
    let json = answer.json.as_ref()?;
    if !envelope_ok {
        return None;
    }
    let mut findings: Vec<shape::Finding> = json
        .as_object()
        .map(|m| {
            m.keys()
                .filter(|k| !["code", "msg", "data"].contains(&k.as_str()))
                .map(|k| shape::Finding::Unknown(k.clone()))
                .collect()
        })
        .unwrap_or_default();
    match json.get("data") {
        None => findings.push(shape::Finding::Missing("data".into())),
        Some(data) => findings.extend(shape::compare(kind, data, "data")),
    }
    section.rows.extend(field_rows(kind, &findings));
    decode(section, answer, kind, missing)
}

/// The `fields` rows: one per finding, or one saying all is as expected.
#[must_use]
pub fn field_rows(kind: Kind, findings: &[shape::Finding]) -> Vec<Row> {
    if findings.is_empty() {
        return vec![Row::judged(
            "fields",
            format!(
                "data is {} with the fields our client relies on, their JSON types, and no other",
                match kind {
                    Kind::Arr(_) => "an array",
                    Kind::Obj(_) => "an object",
                    Kind::Str => "a string",
                    Kind::Num => "a number",
                    Kind::Null => "null",
                }
            ),
            format!("as expected ({} fields)", kind.field_count()),
            true,
        )];
    }
    findings
        .iter()
        .map(|f| {
            let expectation = match f {
                shape::Finding::Missing(_) => "every field our client relies on is present",
                shape::Finding::Unknown(_) => "only fields our types know",
                shape::Finding::WrongType { .. } => {
                    "each field has the JSON type our emulator sends"
                }
            };
            Row::judged("fields", expectation, f.to_string(), false)
        })
        .collect()
}

fn decode<T: DeserializeOwned>(
    section: &mut Section,
    answer: &Answer,
    kind: Kind,
    missing: impl Fn(&T) -> Option<&'static str>,
) -> Option<T> {
    let expectation = if kind == Kind::Null {
        "our client accepts it (no data)"
    } else {
        "our client decodes it, with everything the operation must return"
    };
    match decode_raw_answer::<T>(answer.op, answer.http_status, None, &answer.bytes) {
        Ok(Some(value)) => match missing(&value) {
            None => {
                section.push(Row::judged("decode", expectation, "decoded", true));
                Some(value)
            }
            Some(field) => {
                section.push(Row::judged(
                    "decode",
                    expectation,
                    format!("decoded without {field}"),
                    false,
                ));
                None
            }
        },
        Ok(None) => {
            section.push(Row::judged(
                "decode",
                expectation,
                "no data",
                kind == Kind::Null,
            ));
            None
        }
        Err(e) => {
            section.push(Row::judged("decode", expectation, e.to_string(), false));
            None
        }
    }
}

/// Judges an answer that must be the documented error `expected`: HTTP status, code and the
/// verbatim message. Returns whether it was.
pub fn error(
    section: &mut Section,
    check: &str,
    result: &Result<Answer, NcpError>,
    expected: ServiceMessage,
) -> bool {
    let expectation = format!(
        "HTTP {}, code {}, msg {:?}",
        expected.http_status, expected.code, expected.msg
    );
    let answer = match result {
        Ok(a) => a,
        Err(e) => {
            section.push(no_answer(check, &expectation, e));
            return false;
        }
    };
    record(section, answer);
    let field = |name: &str| {
        answer
            .json
            .as_ref()
            .and_then(|j| j.get(name))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let ok = answer.http_status == expected.http_status
        && field("code").as_deref() == Some(expected.code)
        && field("msg").as_deref() == Some(expected.msg);
    section.push(Row::judged(check, expectation, describe(answer), ok));
    ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::conformance::report::Verdict;
    use crate::ncp::Operation;
    use crate::ncp::messages;
    use crate::ncp::types::{CaDetail, Complete as _};
    use serde_json::json;

    fn answer(op: Operation, status: u16, body: &Value) -> Result<Answer, NcpError> {
        Ok(Answer {
            op,
            request: "GET /api/v1/x".into(),
            http_status: status,
            bytes: body.to_string().into_bytes(),
            json: Some(body.clone()),
        })
    }

    fn ca(extra: Option<(&str, Value)>) -> Value {
        let mut info = json!({
            "caId": 1, "caTag": "t-1", "alias": "a", "memo": "", "caType": "PRIVATE_ROOT",
            "status": "ACTIVE", "signingCount": 0, "rgstDate": 1, "statusUpdateDate": 1,
            "nrn": "n", "urlInfo": {"ocsp": [], "crl": ["c"], "ca": ["a"]}
        });
        if let Some((k, v)) = extra {
            info[k] = v;
        }
        json!({"code": "SUCCESS", "msg": "Success", "data": {"caInfo": info, "caCertInfo": {
            "caCertId": 2, "commonName": "r", "issuerName": "r", "notBeforeDate": 1,
            "notAfterDate": 2, "publicKeyAlgorithm": "EC", "signatureAlgorithm": "s",
            "serialNo": "0a", "certPem": "p", "chainPem": "p"
        }}})
    }

    fn judge(body: &Value) -> (Section, Option<CaDetail>) {
        let mut s = Section::new("get_ca", "Get CA");
        let decoded = success::<CaDetail>(
            &mut s,
            &answer(Operation::GetCa, 200, body),
            shape::CA_DETAIL,
            CaDetail::missing,
        );
        (s, decoded)
    }

    fn deviating(s: &Section) -> Vec<String> {
        s.rows
            .iter()
            .filter(|r| r.verdict == Verdict::Deviates)
            .map(|r| format!("{}: {}", r.check, r.answer))
            .collect()
    }

    #[test]
    fn a_conforming_answer_passes_every_check_and_is_decoded() {
        let (s, decoded) = judge(&ca(None));
        assert!(s.conforms(), "{:?}", s.rows);
        assert_eq!(decoded.unwrap().ca_info.ca_tag, "t-1");
        assert_eq!(s.raw.len(), 1);
    }

    #[test]
    fn an_extra_field_is_reported_as_unknown() {
        let (s, _) = judge(&ca(Some(("keyUsage", json!("x")))));
        assert_eq!(
            deviating(&s),
            ["fields: unknown field data.caInfo.keyUsage (our types do not know it)"]
        );
    }

    #[test]
    fn a_missing_field_is_reported_and_one_our_client_needs_fails_the_decoding() {
        let mut body = ca(None);
        body["data"]["caInfo"]
            .as_object_mut()
            .unwrap()
            .remove("caTag");
        let (s, decoded) = judge(&body);
        assert!(decoded.is_none());
        assert_eq!(
            deviating(&s),
            [
                "fields: missing field data.caInfo.caTag",
                "decode: decoded without caInfo.caTag"
            ]
        );
    }

    #[test]
    fn a_field_of_another_type_is_reported_even_when_our_client_tolerates_it() {
        let (s, decoded) = judge(&ca(Some(("signingCount", json!("3")))));
        assert_eq!(decoded.unwrap().ca_info.signing_count, Some(3));
        assert_eq!(
            deviating(&s),
            ["fields: data.caInfo.signingCount: expected number, got string"]
        );
    }

    #[test]
    fn an_error_or_gateway_answer_where_success_is_expected_deviates_and_names_the_denial() {
        let mut s = Section::new("get_ca", "Get CA");
        let denied = json!({"error": {"errorCode": "210", "message": "Permission Denied"}});
        let got = success::<CaDetail>(
            &mut s,
            &answer(Operation::GetCa, 401, &denied),
            shape::CA_DETAIL,
            CaDetail::missing,
        );
        assert!(got.is_none());
        let rows = deviating(&s);
        assert_eq!(rows.len(), 1);
        assert!(rows[0].contains("permission denied"), "{rows:?}");
    }

    #[test]
    fn a_different_error_message_status_or_code_is_reported() {
        let expected = messages::CERT_NOT_FOUND;
        let body = |msg: &str, code: &str| json!({"code": code, "msg": msg, "data": null});
        let cases = [
            (400, body(expected.msg, expected.code), true),
            (400, body("Certificate not found.", expected.code), false),
            (404, body(expected.msg, expected.code), false),
            (400, body(expected.msg, "NOT_EXIST_CERT"), false),
            (
                200,
                json!({"code": "SUCCESS", "msg": "Success", "data": null}),
                false,
            ),
        ];
        for (status, body, ok) in cases {
            let mut s = Section::new("errors", "Errors");
            let judged = error(
                &mut s,
                "unknown_serial",
                &answer(Operation::GetEndCert, status, &body),
                expected,
            );
            assert_eq!(judged, ok, "{body}");
            assert_eq!(s.conforms(), ok, "{body}");
        }
    }

    #[test]
    fn an_extra_envelope_field_and_a_non_null_data_of_a_write_are_reported() {
        let mut s = Section::new("rotate_crl", "Rotate CRL");
        let body = json!({"code": "SUCCESS", "msg": "Success", "data": {"x": 1}, "traceId": "t"});
        success::<Value>(
            &mut s,
            &answer(Operation::RotateCrl, 200, &body),
            shape::NONE,
            |_| None,
        );
        let rows = deviating(&s);
        assert!(
            rows.iter().any(|r| r.contains("unknown field traceId")),
            "{rows:?}"
        );
        assert!(
            rows.iter()
                .any(|r| r.contains("data: expected null, got object")),
            "{rows:?}"
        );
    }
}
