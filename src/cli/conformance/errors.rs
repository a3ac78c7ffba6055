//! The documented errors `--write` provokes on its throwaway CA, none of which can harm anything:
//! each must come back with the documented HTTP status, code and verbatim message.

use super::expect;
use super::probe::Probe;
use super::report::Section;
use crate::ncp::Operation;
use crate::ncp::messages::{self, ServiceMessage};
use crate::pki::Serial;
use serde_json::{Value, json};

/// One provoked error: the check's name, what is sent, the message expected.
pub struct Provoked {
    /// The check's name.
    pub check: &'static str,
    /// What the request does wrong.
    pub what: &'static str,
    /// The documented answer.
    pub expected: ServiceMessage,
}

/// The errors provoked on an ACTIVE CA, in order.
pub const ON_ACTIVE: &[Provoked] = &[
    Provoked {
        check: "invalid_period",
        what: "Sign End Csr with period \"0\"",
        expected: messages::INVALID_PERIOD,
    },
    Provoked {
        check: "key_type_mismatch",
        what: "Sign End Csr of an EC CSR with keyType \"RSA\", keyBits \"2048\"",
        expected: messages::KEY_TYPE_MISMATCH,
    },
    Provoked {
        check: "unknown_serial",
        what: "Get End Cert of a serial the CA never issued",
        expected: messages::CERT_NOT_FOUND,
    },
    Provoked {
        check: "crl_expiry_too_short",
        what: "Update CRL Config with expiry \"2\" (minimum 3)",
        expected: messages::INVALID_INPUT,
    },
];

/// The error provoked on a DEACTIVATED CA.
pub const ON_DEACTIVATED: Provoked = Provoked {
    check: "sign_refused",
    what: "Sign End Csr while the CA is DEACTIVATED",
    expected: messages::INVALID_CA_STATUS,
};

/// The request of one provoked error: operation, path, body.
fn call_of<'a>(
    check: &str,
    tag: &'a str,
    csr_pem: &str,
    serial: &'a str,
) -> (Operation, Vec<&'a str>, Option<Value>) {
    match check {
        "invalid_period" => (
            Operation::SignEndCsr,
            vec!["ca", tag, "cert", "sign"],
            Some(json!({"csrPem": csr_pem, "period": "0"})),
        ),
        "key_type_mismatch" => (
            Operation::SignEndCsr,
            vec!["ca", tag, "cert", "sign"],
            Some(json!({"csrPem": csr_pem, "period": "1", "keyType": "RSA", "keyBits": "2048"})),
        ),
        "unknown_serial" => (Operation::GetEndCert, vec!["ca", tag, "cert", serial], None),
        "crl_expiry_too_short" => (
            Operation::UpdateCrlConfig,
            vec!["ca", tag, "crl", "config"],
            Some(json!({"expiry": "2"})),
        ),
        // sign_refused
        _ => (
            Operation::SignEndCsr,
            vec!["ca", tag, "cert", "sign"],
            Some(json!({"csrPem": csr_pem, "period": "1"})),
        ),
    }
}

async fn provoke(probe: &Probe, s: &mut Section, p: &Provoked, tag: &str, csr_pem: &str) {
    let serial = Serial::random().to_colon_hex();
    let (op, path, body) = call_of(p.check, tag, csr_pem, &serial);
    let result = probe.call(op, &path, &[], body.as_ref()).await;
    expect::error(s, p.check, &result, p.expected);
}

/// The documented errors on the ACTIVE throwaway CA.
pub async fn documented(probe: &Probe, tag: &str, csr_pem: &str) -> Section {
    let mut s = Section::new(
        "write.errors",
        "Documented errors provoked on the throwaway CA",
    );
    for p in ON_ACTIVE {
        provoke(probe, &mut s, p, tag, csr_pem).await;
        if let Some(row) = s.rows.last_mut() {
            row.expectation = format!("{}: {}", p.what, row.expectation);
        }
    }
    s
}

/// Signing refused while the CA is DEACTIVATED.
pub async fn while_deactivated(probe: &Probe, tag: &str, csr_pem: &str) -> Section {
    let mut s = Section::new(
        "write.deactivated",
        "Sign End Csr on the DEACTIVATED throwaway CA",
    );
    provoke(probe, &mut s, &ON_DEACTIVATED, tag, csr_pem).await;
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::conformance::probe::Answer;

    #[test]
    fn every_provoked_error_with_another_message_is_reported_as_deviating() {
        for p in ON_ACTIVE.iter().chain(std::iter::once(&ON_DEACTIVATED)) {
            let (op, _, _) = call_of(p.check, "t", "csr", "01");
            let reply = |msg: &str| {
                let body = json!({"code": p.expected.code, "msg": msg, "data": null});
                Ok(Answer {
                    op,
                    request: "x".into(),
                    http_status: p.expected.http_status,
                    bytes: body.to_string().into_bytes(),
                    json: Some(body),
                })
            };
            let mut s = Section::new("write.errors", "e");
            assert!(
                expect::error(&mut s, p.check, &reply(p.expected.msg), p.expected),
                "{}",
                p.check
            );
            assert!(s.conforms());
            let mut s = Section::new("write.errors", "e");
            assert!(
                !expect::error(&mut s, p.check, &reply("Something else."), p.expected),
                "{}",
                p.check
            );
            assert!(!s.conforms(), "{}", p.check);
            assert!(s.rows[0].answer.contains("Something else."));
        }
    }

    #[test]
    fn each_provoked_error_sends_what_it_says() {
        let (op, path, body) = call_of("invalid_period", "t", "csr", "01");
        assert_eq!((op, path.len()), (Operation::SignEndCsr, 4));
        assert_eq!(body.unwrap()["period"], "0");
        let (op, path, body) = call_of("unknown_serial", "t", "csr", "01");
        assert_eq!(
            (op, path),
            (Operation::GetEndCert, vec!["ca", "t", "cert", "01"])
        );
        assert!(body.is_none());
        let (_, _, body) = call_of("key_type_mismatch", "t", "csr", "01");
        assert_eq!(body.unwrap()["keyType"], "RSA");
    }
}
