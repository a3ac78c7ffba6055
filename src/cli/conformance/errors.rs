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
    Provoked {
        check: "unsupported_key_type",
        what: "Sign End Csr of a CSR with an EC P-384 key (not one of NCP's four key types)",
        expected: messages::UNSUPPORTED_KEY_TYPE,
    },
    Provoked {
        check: "sub_period_missing",
        what: "Sign Sub Csr without period",
        expected: messages::INVALID_PERIOD,
    },
    Provoked {
        check: "control_character",
        what: "Issue End Cert with a line feed in the common name",
        expected: messages::INVALID_INPUT,
    },
];

/// The error provoked on a DEACTIVATED CA.
pub const ON_DEACTIVATED: Provoked = Provoked {
    check: "sign_refused",
    what: "Sign End Csr while the CA is DEACTIVATED",
    expected: messages::INVALID_CA_STATUS,
};

/// What the provoked errors are made of.
struct Inputs<'a> {
    tag: &'a str,
    /// An EC P-256 leaf CSR.
    csr_pem: &'a str,
    /// An EC P-256 CA CSR.
    sub_csr_pem: &'a str,
    /// An EC P-384 CSR.
    p384_csr_pem: &'a str,
    /// A serial the CA never issued.
    serial: &'a str,
}

/// An EC P-384 CSR (a key type NCP does not sign); empty when it cannot be made.
fn p384_csr() -> String {
    rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384)
        .ok()
        .and_then(|key| {
            let params =
                rcgen::CertificateParams::new(vec!["p384.conformance.invalid".to_string()]).ok()?;
            params.serialize_request(&key).ok()?.pem().ok()
        })
        .unwrap_or_default()
}

/// The request of one provoked error: operation, path, body.
fn call_of<'a>(check: &str, i: &Inputs<'a>) -> (Operation, Vec<&'a str>, Option<Value>) {
    let (tag, csr_pem, serial) = (i.tag, i.csr_pem, i.serial);
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
        "unsupported_key_type" => (
            Operation::SignEndCsr,
            vec!["ca", tag, "cert", "sign"],
            Some(json!({"csrPem": i.p384_csr_pem, "period": "1"})),
        ),
        "sub_period_missing" => (
            Operation::SignSubCsr,
            vec!["ca", tag, "sub", "sign"],
            Some(json!({"csrPem": i.sub_csr_pem})),
        ),
        "control_character" => (
            Operation::IssueEndCert,
            vec!["ca", tag, "cert"],
            Some(
                json!({"keyType": "EC256", "period": "1", "x509Parameters": {"commonName": "line\nfeed"}}),
            ),
        ),
        // sign_refused
        _ => (
            Operation::SignEndCsr,
            vec!["ca", tag, "cert", "sign"],
            Some(json!({"csrPem": csr_pem, "period": "1"})),
        ),
    }
}

async fn provoke(probe: &Probe, s: &mut Section, p: &Provoked, inputs: &Inputs<'_>) {
    let (op, path, body) = call_of(p.check, inputs);
    let result = probe.call(op, &path, &[], body.as_ref()).await;
    expect::error(s, p.check, &result, p.expected);
    if let Some(row) = s.rows.last_mut() {
        row.expectation = format!("{}: {}", p.what, row.expectation);
    }
}

/// The documented errors on the ACTIVE throwaway CA `tag`, made of a leaf and a CA CSR.
pub async fn documented(probe: &Probe, tag: &str, csr_pem: &str, sub_csr_pem: &str) -> Section {
    let mut s = Section::new(
        "write.errors",
        "Documented errors provoked on the throwaway CA",
    );
    let serial = Serial::random().to_colon_hex();
    let p384 = p384_csr();
    let inputs = Inputs {
        tag,
        csr_pem,
        sub_csr_pem,
        p384_csr_pem: &p384,
        serial: &serial,
    };
    for p in ON_ACTIVE {
        provoke(probe, &mut s, p, &inputs).await;
    }
    s
}

/// Signing refused while the CA is DEACTIVATED.
pub async fn while_deactivated(probe: &Probe, tag: &str, csr_pem: &str) -> Section {
    let mut s = Section::new(
        "write.deactivated",
        "Sign End Csr on the DEACTIVATED throwaway CA",
    );
    let inputs = Inputs {
        tag,
        csr_pem,
        sub_csr_pem: "",
        p384_csr_pem: "",
        serial: "",
    };
    provoke(probe, &mut s, &ON_DEACTIVATED, &inputs).await;
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::conformance::probe::Answer;

    fn inputs() -> Inputs<'static> {
        Inputs {
            tag: "t",
            csr_pem: "csr",
            sub_csr_pem: "sub",
            p384_csr_pem: "p384",
            serial: "01",
        }
    }

    #[test]
    fn every_provoked_error_with_another_message_is_reported_as_deviating() {
        for p in ON_ACTIVE.iter().chain(std::iter::once(&ON_DEACTIVATED)) {
            let (op, _, _) = call_of(p.check, &inputs());
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
        let i = inputs();
        let (op, path, body) = call_of("invalid_period", &i);
        assert_eq!((op, path.len()), (Operation::SignEndCsr, 4));
        assert_eq!(body.unwrap()["period"], "0");
        let (op, path, body) = call_of("unknown_serial", &i);
        assert_eq!(
            (op, path),
            (Operation::GetEndCert, vec!["ca", "t", "cert", "01"])
        );
        assert!(body.is_none());
        let (_, _, body) = call_of("key_type_mismatch", &i);
        assert_eq!(body.unwrap()["keyType"], "RSA");
        let (op, _, body) = call_of("sub_period_missing", &i);
        assert_eq!(op, Operation::SignSubCsr);
        assert!(body.unwrap().get("period").is_none());
        let (_, _, body) = call_of("unsupported_key_type", &i);
        assert_eq!(body.unwrap()["csrPem"], "p384");
        assert!(p384_csr().contains("BEGIN CERTIFICATE REQUEST"));
    }
}
