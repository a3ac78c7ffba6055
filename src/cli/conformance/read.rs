//! The read-only checks: Get CA List (and the same call signed the four ways clients sign), then Get
//! CA, Get CA Chain, Get CA CRL, Get CRL Config, Get CA User List, Get End Cert List and Get End Cert
//! on one CA.

use super::expect;
use super::probe::{Answer, Probe, SignatureStyle};
use super::report::{Row, Section, Verdict};
use super::shape;
use crate::ncp::messages;
use crate::ncp::types::{
    CaDetail, CaList, CaStatus, CaUser, Complete, CrlConfig, EndCert, EndCertList,
};
use crate::ncp::{NcpError, Operation};
use crate::pki::{self, CrlInfo, Serial};
use serde_json::Value;

/// Whether an answer is a success envelope.
fn accepted(answer: &Answer) -> bool {
    answer.http_status == 200
        && answer
            .json
            .as_ref()
            .and_then(|j| j.get("code"))
            .and_then(Value::as_str)
            == Some(crate::ncp::types::SUCCESS)
}

/// Whether an answer is a service error envelope (not a gateway error, not a success).
fn is_service_error(result: &Result<Answer, NcpError>) -> bool {
    result.as_ref().is_ok_and(|a| {
        !accepted(a)
            && a.json
                .as_ref()
                .is_some_and(|j| j.get("code").is_some() && j.get("error").is_none())
    })
}

/// Get CA List, page 1.
pub async fn ca_list(probe: &Probe) -> (Section, Option<CaList>) {
    let mut s = Section::new("get_ca_list", "Get CA List (GET /ca?pageNo=1)");
    let result = probe
        .call(Operation::GetCaList, &["ca"], &[("pageNo", "1")], None)
        .await;
    let list = expect::success::<CaList>(&mut s, &result, shape::CA_LIST, CaList::missing);
    if let Some(l) = &list {
        s.push(Row::new(
            "page_size",
            "10 CAs a page (the emulator's guess; seen only with more than 10 CAs)",
            format!(
                "{} of totalCnt {} on page 1 of {}",
                l.ca_info_list.len(),
                l.total_cnt,
                l.total_page_no
            ),
            Verdict::Observed,
        ));
    }
    (s, list)
}

/// The same read-only call signed the four ways: which the gateway accepts. Ours must be; the others
/// are recorded.
pub async fn signing_variants(probe: &Probe) -> Section {
    let mut s = Section::new(
        "signing_variants",
        "Signing variants (Get CA List, GET /ca?pageNo=1)",
    );
    for style in SignatureStyle::ALL {
        let result = probe
            .call_signed(
                Operation::GetCaList,
                &["ca"],
                &[("pageNo", "1")],
                None,
                style,
            )
            .await;
        let ours = style == SignatureStyle::V2PathAndQuery;
        let expectation = if ours {
            format!("{}: accepted", style.describe())
        } else {
            format!("{}: recorded", style.describe())
        };
        let row = match &result {
            Ok(answer) => {
                expect::record(&mut s, answer);
                let ok = accepted(answer);
                let said = if ok {
                    "accepted".to_string()
                } else {
                    format!("refused: {}", expect::describe(answer))
                };
                if ours {
                    Row::judged(style.name(), expectation, said, ok)
                } else {
                    Row::new(style.name(), expectation, said, Verdict::Observed)
                }
            }
            Err(e) => expect::no_answer(style.name(), &expectation, e),
        };
        s.push(row);
    }
    s
}

/// Which CA the per-CA checks run on: the one named, else the first ACTIVE CA listed.
#[must_use]
pub fn pick_target(named: Option<&str>, list: Option<&CaList>) -> Option<String> {
    if let Some(tag) = named {
        return Some(tag.to_string());
    }
    list?
        .ca_info_list
        .iter()
        .find(|c| c.ca_info.status == CaStatus::Active)
        .map(|c| c.ca_info.ca_tag.clone())
}

/// The per-CA read-only checks on `tag`. `prefix` distinguishes the sections of the throwaway CA
/// (`write.`) from those of the CA the user named.
pub async fn per_ca(probe: &Probe, tag: &str, prefix: &str) -> Vec<Section> {
    let mut out = Vec::new();
    let id = |name: &str| format!("{prefix}{name}");

    let mut s = Section::new(id("get_ca"), format!("Get CA (GET /ca/{tag})"));
    let result = probe.call(Operation::GetCa, &["ca", tag], &[], None).await;
    let detail = expect::success::<CaDetail>(&mut s, &result, shape::CA_DETAIL, CaDetail::missing);
    if let Some(d) = &detail {
        s.push(Row::judged(
            "ca_tag",
            format!("caInfo.caTag is {tag}"),
            d.ca_info.ca_tag.clone(),
            d.ca_info.ca_tag == tag,
        ));
    }
    out.push(s);

    let mut s = Section::new(
        id("get_ca_chain"),
        format!("Get CA Chain (GET /ca/{tag}/chain)"),
    );
    let result = probe
        .call(Operation::GetCaChain, &["ca", tag, "chain"], &[], None)
        .await;
    if let Some(chain) = expect::success::<String>(&mut s, &result, shape::PEM, String::missing) {
        s.push(chain_row(&chain, detail.as_ref()));
    }
    out.push(s);

    let mut s = Section::new(id("get_ca_crl"), format!("Get CA CRL (GET /ca/{tag}/crl)"));
    let result = probe
        .call(Operation::GetCaCrl, &["ca", tag, "crl"], &[], None)
        .await;
    if let Some(crl) = expect::success::<String>(&mut s, &result, shape::PEM, String::missing) {
        let parsed = CrlInfo::from_pem(&crl);
        s.push(Row::judged(
            "crl_parses",
            "a PEM X509 CRL",
            match &parsed {
                Ok(c) => format!("a CRL listing {} serial(s)", c.revoked.len()),
                Err(e) => format!("not a CRL: {e}"),
            },
            parsed.is_ok(),
        ));
    }
    out.push(s);

    out.push(crl_config(probe, tag, &id("get_crl_config")).await);

    let mut s = Section::new(
        id("get_ca_user_list"),
        format!("Get CA User List (GET /ca/{tag}/users)"),
    );
    let result = probe
        .call(Operation::GetCaUserList, &["ca", tag, "users"], &[], None)
        .await;
    if let Some(users) = expect::success::<Vec<CaUser>>(&mut s, &result, shape::CA_USERS, |_| None)
        && users.is_empty()
    {
        s.push(Row::new(
            "mbr_no_type",
            "mbrNo is a number",
            "no user is granted on this CA, so the type of mbrNo is not seen (grant one with `pca add-user` and run again)",
            Verdict::Skipped,
        ));
    }
    out.push(s);

    let mut s = Section::new(
        id("get_end_cert_list"),
        format!("Get End Cert List (GET /ca/{tag}/cert?pageNo=1)"),
    );
    let result = probe
        .call(
            Operation::GetEndCertList,
            &["ca", tag, "cert"],
            &[("pageNo", "1")],
            None,
        )
        .await;
    let list =
        expect::success::<EndCertList>(&mut s, &result, shape::END_CERT_LIST, EndCertList::missing);
    out.push(s);

    let serial = list.as_ref().and_then(|l| l.list_certs.first().cloned());
    let mut s = Section::new(
        id("get_end_cert"),
        "Get End Cert (GET /ca/{caTag}/cert/{serialNo})",
    );
    match serial {
        Some(serial) => {
            s.title = format!("Get End Cert (GET /ca/{tag}/cert/{serial})");
            let result = probe
                .call(
                    Operation::GetEndCert,
                    &["ca", tag, "cert", &serial],
                    &[],
                    None,
                )
                .await;
            if let Some(cert) =
                expect::success::<EndCert>(&mut s, &result, shape::END_CERT, EndCert::missing)
            {
                s.push(end_cert_row(&cert, &serial));
            }
        }
        None => s.push(Row::new(
            "envelope",
            "an end certificate of the CA",
            "the CA has issued no certificate (or Get End Cert List failed)",
            Verdict::Skipped,
        )),
    }
    out.push(s);
    out
}

/// Get CRL Config: `expiry`, or, on a CA whose CRL was never configured, the documented message.
async fn crl_config(probe: &Probe, tag: &str, id: &str) -> Section {
    let mut s = Section::new(id, format!("Get CRL Config (GET /ca/{tag}/crl/config)"));
    let result = probe
        .call(
            Operation::GetCrlConfig,
            &["ca", tag, "crl", "config"],
            &[],
            None,
        )
        .await;
    if is_service_error(&result) {
        expect::error(
            &mut s,
            "not_configured",
            &result,
            messages::CRL_CONFIG_NOT_FOUND,
        );
    } else {
        expect::success::<CrlConfig>(&mut s, &result, shape::CRL_CONFIG, CrlConfig::missing);
    }
    s
}

/// Get CA Chain starts with the CA's own certificate (the one Get CA shows).
#[must_use]
pub fn chain_row(chain: &str, detail: Option<&CaDetail>) -> Row {
    let expectation = "PEM certificates, the CA's own first (as Get CA's caCertInfo.serialNo)";
    let certs = match pki::parse_certificates_pem(chain) {
        Ok(c) if !c.is_empty() => c,
        Ok(_) => return Row::judged("chain_starts_with_ca", expectation, "no certificate", false),
        Err(e) => {
            return Row::judged(
                "chain_starts_with_ca",
                expectation,
                format!("not PEM certificates: {e}"),
                false,
            );
        }
    };
    let first = certs[0].serial.to_colon_hex();
    let ca_serial = detail
        .and_then(|d| Serial::parse(&d.ca_cert_info.serial_no).ok())
        .map(|s| s.to_colon_hex());
    match ca_serial {
        Some(ca) => Row::judged(
            "chain_starts_with_ca",
            expectation,
            format!("{} certificate(s), the first {first}", certs.len()),
            ca == first,
        ),
        None => Row::new(
            "chain_starts_with_ca",
            expectation,
            format!(
                "{} certificate(s); Get CA gave no serial to compare",
                certs.len()
            ),
            Verdict::Skipped,
        ),
    }
}

/// Get End Cert answers the certificate asked for.
#[must_use]
pub fn end_cert_row(cert: &EndCert, serial: &str) -> Row {
    let parsed = pki::parse_certificates_pem(&cert.cert_pem)
        .ok()
        .and_then(|c| c.into_iter().next());
    let same =
        |a: &str, b: &str| matches!((Serial::parse(a), Serial::parse(b)), (Ok(a), Ok(b)) if a == b);
    let ok = same(&cert.serial_no, serial)
        && parsed
            .as_ref()
            .is_some_and(|c| same(&c.serial.to_colon_hex(), serial));
    Row::judged(
        "serial_matches",
        format!("serialNo and certPem are certificate {serial}"),
        match &parsed {
            Some(c) => format!(
                "serialNo {}, certPem {}",
                cert.serial_no,
                c.serial.to_colon_hex()
            ),
            None => format!("serialNo {}, certPem unreadable", cert.serial_no),
        },
        ok,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ncp::types::{CaCertInfo, CaInfo};

    fn list(statuses: &[(&str, CaStatus)]) -> CaList {
        CaList {
            ca_info_list: statuses
                .iter()
                .map(|(tag, status)| CaDetail {
                    ca_info: CaInfo {
                        ca_tag: (*tag).to_string(),
                        status: status.clone(),
                        ..CaInfo::default()
                    },
                    ca_cert_info: CaCertInfo::default(),
                })
                .collect(),
            ..CaList::default()
        }
    }

    #[test]
    fn the_named_ca_wins_and_otherwise_the_first_active_one_is_checked() {
        let l = list(&[("a", CaStatus::Deactivated), ("b", CaStatus::Active)]);
        assert_eq!(pick_target(Some("x"), Some(&l)).as_deref(), Some("x"));
        assert_eq!(pick_target(None, Some(&l)).as_deref(), Some("b"));
        assert_eq!(pick_target(None, Some(&list(&[]))), None);
        assert_eq!(pick_target(None, None), None);
    }

    #[test]
    fn a_chain_that_does_not_start_with_the_ca_or_is_not_pem_deviates() {
        let ca = crate::pki::PrivateKey::generate(crate::ncp::types::KeyType::Ec256).unwrap();
        let name = crate::pki::Name::new().with(crate::pki::NameAttr::CommonName, "r");
        let now = time::OffsetDateTime::now_utc();
        let validity = crate::pki::Validity::new(now, now + time::Duration::days(2)).unwrap();
        let opts = crate::pki::IssueOptions::new(validity);
        let cert = crate::pki::self_signed_ca(&name, &ca, &opts).unwrap();
        let detail = |serial: &str| CaDetail {
            ca_cert_info: CaCertInfo {
                serial_no: serial.to_string(),
                ..CaCertInfo::default()
            },
            ..CaDetail::default()
        };
        let own = detail(&cert.serial.to_colon_hex());
        assert_eq!(
            chain_row(&cert.to_pem(), Some(&own)).verdict,
            Verdict::Conforms
        );
        assert_eq!(
            chain_row(&cert.to_pem(), Some(&detail("01:02"))).verdict,
            Verdict::Deviates
        );
        assert_eq!(chain_row("garbage", Some(&own)).verdict, Verdict::Deviates);
        assert_eq!(chain_row(&cert.to_pem(), None).verdict, Verdict::Skipped);

        let end = |serial: &str| EndCert {
            serial_no: serial.to_string(),
            cert_pem: cert.to_pem(),
            ..EndCert::default()
        };
        let s = cert.serial.to_colon_hex();
        assert_eq!(end_cert_row(&end(&s), &s).verdict, Verdict::Conforms);
        assert_eq!(end_cert_row(&end("01:02"), &s).verdict, Verdict::Deviates);
    }
}
