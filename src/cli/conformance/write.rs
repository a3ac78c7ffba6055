//! `--write`: the checks that change something, all on a throwaway root CA this module creates (alias
//! [`ALIAS_PREFIX`]…, [`CA_DAYS`] days) and deletes at the end whatever happened before; when it
//! cannot, the report carries the steps to delete it by hand.

use super::expect;
use super::probe::{Answer, Probe};
use super::read;
use super::report::{Cleanup, Row, Section};
use super::shape;
use crate::ncp::messages;
use crate::ncp::types::{
    CaDetail, CaList, CaStatus, Complete, CrlConfig, EndCertList, IssuedCert, KeyType, UpdatedCa,
};
use crate::ncp::{NcpError, Operation};
use crate::pki::{self, CrlInfo, Name, NameAttr, PrivateKey, PublicKeyInfo, Serial};
use serde_json::{Value, json};

/// Every throwaway CA's alias starts with this (then 6 hex digits: 13 characters, NCP allows 15).
pub const ALIAS_PREFIX: &str = "ncpconf";

/// Validity of the throwaway CA: the shortest that still lets Update CRL Config set its minimum of
/// 3 days (a CRL period must end before the CA does).
pub const CA_DAYS: u32 = 4;

/// Validity of the certificates it signs.
const CERT_DAYS: &str = "1";

/// CRL renewal period set by the check (NCP's minimum).
const CRL_EXPIRY: &str = "3";

/// The OCSP responder URL set and removed again (never contacted: `.invalid` does not resolve).
const OCSP_URL: &str = "http://ocsp.conformance.invalid/ocsp";

/// Most pages of a list walked while looking for something.
const MAX_PAGES: u32 = 100;

/// A key and its CSR.
struct Request {
    csr_pem: String,
    public_key: PublicKeyInfo,
}

fn request(common_name: &str, ca: bool) -> Option<Request> {
    let key = PrivateKey::generate(KeyType::Ec256).ok()?;
    let subject = Name::new().with(NameAttr::CommonName, common_name);
    Some(Request {
        csr_pem: pki::create_csr(&subject, &[], &key, ca).ok()?,
        public_key: key.public_key().ok()?,
    })
}

fn new_alias() -> String {
    format!("{ALIAS_PREFIX}{:06x}", rand::random::<u32>() & 0x00ff_ffff)
}

/// Runs the write checks; the throwaway CA is deleted before this returns (or the cleanup says why
/// not). `None` when no CA was created (then nothing is left behind).
pub async fn run(probe: &Probe) -> (Vec<Section>, Option<Cleanup>) {
    let mut sections = Vec::new();
    let alias = new_alias();
    let mut s = Section::new(
        "write.create_ca",
        format!("Create CA (POST /ca?caType=PRIVATE_ROOT), alias {alias}, {CA_DAYS} days"),
    );
    let body = json!({
        "alias": alias,
        "memo": "throwaway CA of `ncp-pca-issuer pca conformance --write`; safe to delete",
        "keyType": "EC256",
        "period": CA_DAYS.to_string(),
        "x509Parameters": {"commonName": format!("{alias} conformance root")},
    });
    let result = probe
        .call(
            Operation::CreateCa,
            &["ca"],
            &[("caType", "PRIVATE_ROOT")],
            Some(&body),
        )
        .await;
    let created = expect::success::<CaDetail>(&mut s, &result, shape::CA_DETAIL, CaDetail::missing);
    let tag = match &created {
        Some(d) => {
            s.push(status_row(&d.ca_info.status, &CaStatus::Active));
            Some(d.ca_info.ca_tag.clone())
        }
        // The answer may be lost while the CA exists: look for it by its alias.
        None => find_by_alias(probe, &alias).await,
    };
    sections.push(s);
    let Some(tag) = tag else {
        // Nothing was created: nothing to clean up.
        return (sections, None);
    };
    if created.is_some() {
        exercise(probe, &tag, &mut sections).await;
    }
    let cleanup = cleanup(probe, &tag, &alias, &mut sections).await;
    (sections, Some(cleanup))
}

/// The tag of the CA with `alias`, walking Get CA List.
async fn find_by_alias(probe: &Probe, alias: &str) -> Option<String> {
    for page in 1..=MAX_PAGES {
        let page_no = page.to_string();
        let answer = probe
            .call(Operation::GetCaList, &["ca"], &[("pageNo", &page_no)], None)
            .await
            .ok()?;
        let list: CaList =
            crate::ncp::client::decode_answer(answer.op, answer.http_status, None, &answer.bytes)
                .ok()
                .flatten()?;
        if let Some(ca) = list.ca_info_list.iter().find(|c| c.ca_info.alias == alias) {
            return Some(ca.ca_info.ca_tag.clone());
        }
        if list.ca_info_list.is_empty() || i64::from(page) >= list.total_page_no {
            return None;
        }
    }
    None
}

fn status_row(got: &CaStatus, want: &CaStatus) -> Row {
    Row::judged(
        "status",
        format!("status {want}"),
        got.to_string(),
        got == want,
    )
}

/// Signs a CSR (End or Sub) and checks the certificate carries the CSR's key and is (not) a CA.
async fn sign(probe: &Probe, tag: &str, req: &Request, sub: bool) -> (Section, Option<String>) {
    let (op, path, id, title) = if sub {
        (
            Operation::SignSubCsr,
            ["ca", tag, "sub", "sign"],
            "write.sign_sub_csr",
            "Sign Sub Csr",
        )
    } else {
        (
            Operation::SignEndCsr,
            ["ca", tag, "cert", "sign"],
            "write.sign_end_csr",
            "Sign End Csr",
        )
    };
    let mut s = Section::new(id, format!("{title} (POST /{})", path.join("/")));
    let body = json!({"csrPem": req.csr_pem, "period": CERT_DAYS});
    let result = probe.call(op, &path, &[], Some(&body)).await;
    let issued = expect::success::<IssuedCert>(&mut s, &result, shape::SIGNED, IssuedCert::missing);
    let serial = issued.map(|i| {
        s.push(issued_row(&i, &req.public_key, sub));
        i.serial_no
    });
    (s, serial)
}

/// The issued certificate carries the CSR's key, is a CA certificate exactly when asked, and its
/// serial is the answer's `serialNo`.
#[must_use]
pub fn issued_row(issued: &IssuedCert, key: &PublicKeyInfo, ca: bool) -> Row {
    let expectation = format!(
        "a certificate for the CSR's key, {}, serial = serialNo",
        if ca { "a CA certificate" } else { "not a CA" }
    );
    let cert = pki::parse_certificates_pem(&issued.certificate)
        .ok()
        .and_then(|c| c.into_iter().next());
    let Some(cert) = cert else {
        return Row::judged("certificate", expectation, "certificate unreadable", false);
    };
    let same_serial = Serial::parse(&issued.serial_no).is_ok_and(|s| s == cert.serial);
    let ok = cert.public_key.same_key_as(key) && cert.is_ca == ca && same_serial;
    Row::judged(
        "certificate",
        expectation,
        format!(
            "key {}, CA {}, serial {} (serialNo {})",
            if cert.public_key.same_key_as(key) {
                "matches"
            } else {
                "differs"
            },
            cert.is_ca,
            cert.serial.to_colon_hex(),
            issued.serial_no
        ),
        ok,
    )
}

/// Every serial Get End Cert List lists, walking its pages.
async fn all_serials(probe: &Probe, tag: &str, s: &mut Section) -> Option<Vec<Serial>> {
    let mut all = Vec::new();
    for page in 1..=MAX_PAGES {
        let page_no = page.to_string();
        let result = probe
            .call(
                Operation::GetEndCertList,
                &["ca", tag, "cert"],
                &[("pageNo", &page_no)],
                None,
            )
            .await;
        let list =
            expect::success::<EndCertList>(s, &result, shape::END_CERT_LIST, EndCertList::missing)?;
        all.extend(list.list_certs.iter().filter_map(|c| Serial::parse(c).ok()));
        if list.list_certs.is_empty() || i64::from(page) >= list.total_page_no {
            break;
        }
    }
    Some(all)
}

/// Whether `serial` (colon hex as answered) is among `serials`.
fn listed(serials: &[Serial], serial: &str) -> bool {
    Serial::parse(serial).is_ok_and(|s| serials.contains(&s))
}

/// A row saying whether `serial` is in a list, expected `want`.
#[must_use]
pub fn membership_row(
    check: &str,
    what: &str,
    serials: &[Serial],
    serial: &str,
    want: bool,
) -> Row {
    let is = listed(serials, serial);
    Row::judged(
        check,
        format!(
            "{what} {serial} {}",
            if want { "listed" } else { "not listed" }
        ),
        if is { "listed" } else { "not listed" },
        is == want,
    )
}

/// A call whose answer must be `data: null`.
async fn unit_call(
    probe: &Probe,
    id: &str,
    title: String,
    op: Operation,
    path: &[&str],
    body: Option<&Value>,
) -> Section {
    let mut s = Section::new(id, title);
    let result = probe.call(op, path, &[], body).await;
    expect::success::<Value>(&mut s, &result, shape::NONE, |_| None);
    s
}

async fn get_ca(probe: &Probe, tag: &str, s: &mut Section) -> Option<CaDetail> {
    let result = probe.call(Operation::GetCa, &["ca", tag], &[], None).await;
    expect::success::<CaDetail>(s, &result, shape::CA_DETAIL, CaDetail::missing)
}

async fn update_ca(probe: &Probe, tag: &str, id: &str, status: CaStatus) -> Section {
    let mut s = Section::new(id, format!("Update CA to {status} (PUT /ca/{tag})"));
    let body = json!({"status": status.as_str()});
    let result = probe
        .call(Operation::UpdateCa, &["ca", tag], &[], Some(&body))
        .await;
    if let Some(updated) =
        expect::success::<UpdatedCa>(&mut s, &result, shape::UPDATED_CA, UpdatedCa::missing)
    {
        s.push(status_row(&updated.ca_info.status, &status));
    }
    s
}

/// Everything between creating the throwaway CA and deleting it.
async fn exercise(probe: &Probe, tag: &str, sections: &mut Vec<Section>) {
    let (Some(leaf_req), Some(sub_req)) = (
        request("leaf.conformance.invalid", false),
        request("conformance intermediate", true),
    ) else {
        let mut s = Section::new("write.keys", "Keys and CSRs");
        s.push(Row::judged(
            "generate",
            "EC P-256 keys and CSRs",
            "could not generate them",
            false,
        ));
        sections.push(s);
        return;
    };
    let (s, leaf) = sign(probe, tag, &leaf_req, false).await;
    sections.push(s);
    let (s, sub) = sign(probe, tag, &sub_req, true).await;
    sections.push(s);

    sections.extend(read::per_ca(probe, tag, "write.").await);

    let mut s = Section::new(
        "write.listing",
        format!("Get End Cert List of every page (GET /ca/{tag}/cert)"),
    );
    if let Some(serials) = all_serials(probe, tag, &mut s).await {
        if let Some(leaf) = &leaf {
            s.push(membership_row(
                "lists_leaf",
                "Sign End Csr's certificate",
                &serials,
                leaf,
                true,
            ));
        }
        if let Some(sub) = &sub {
            s.push(membership_row(
                "lists_intermediate",
                "Sign Sub Csr's certificate",
                &serials,
                sub,
                true,
            ));
        }
    }
    sections.push(s);

    if let Some(leaf) = &leaf {
        let path = ["ca", tag, "cert", leaf.as_str(), "revoke"];
        sections.push(
            unit_call(
                probe,
                "write.revoke_leaf",
                format!("Revoke End Cert of the leaf (POST /{})", path.join("/")),
                Operation::RevokeEndCert,
                &path,
                None,
            )
            .await,
        );
    }
    if let Some(sub) = &sub {
        let path = ["ca", tag, "cert", sub.as_str(), "revoke"];
        let mut s = Section::new(
            "write.revoke_intermediate",
            format!(
                "Revoke End Cert of the intermediate (POST /{})",
                path.join("/")
            ),
        );
        let result = probe.call(Operation::RevokeEndCert, &path, &[], None).await;
        expect::error(&mut s, "refused", &result, messages::CA_CERT_NOT_REVOCABLE);
        sections.push(s);
    }
    sections.push(
        unit_call(
            probe,
            "write.rotate_crl",
            format!("Rotate CRL (POST /ca/{tag}/crl/rotate)"),
            Operation::RotateCrl,
            &["ca", tag, "crl", "rotate"],
            None,
        )
        .await,
    );

    let mut s = Section::new(
        "write.crl_after_revocation",
        format!("Get CA CRL after the revocations (GET /ca/{tag}/crl)"),
    );
    let result = probe
        .call(Operation::GetCaCrl, &["ca", tag, "crl"], &[], None)
        .await;
    if let Some(pem) = expect::success::<String>(&mut s, &result, shape::PEM, String::missing) {
        match CrlInfo::from_pem(&pem) {
            Ok(crl) => {
                let revoked: Vec<Serial> = crl.revoked.iter().map(|r| r.serial.clone()).collect();
                if let Some(leaf) = &leaf {
                    s.push(membership_row(
                        "leaf_revoked",
                        "the revoked leaf",
                        &revoked,
                        leaf,
                        true,
                    ));
                }
                if let Some(sub) = &sub {
                    s.push(membership_row(
                        "intermediate_not_revoked",
                        "the intermediate (its revocation refused)",
                        &revoked,
                        sub,
                        false,
                    ));
                }
            }
            Err(e) => s.push(Row::judged(
                "crl_parses",
                "a PEM X509 CRL",
                format!("not a CRL: {e}"),
                false,
            )),
        }
    }
    sections.push(s);

    let mut s = Section::new(
        "write.update_crl_config",
        format!("Update CRL Config to {CRL_EXPIRY} days (PUT /ca/{tag}/crl/config)"),
    );
    let body = json!({"expiry": CRL_EXPIRY});
    let result = probe
        .call(
            Operation::UpdateCrlConfig,
            &["ca", tag, "crl", "config"],
            &[],
            Some(&body),
        )
        .await;
    if let Some(config) =
        expect::success::<CrlConfig>(&mut s, &result, shape::CRL_CONFIG, CrlConfig::missing)
    {
        s.push(expiry_row(&config));
    }
    let result = probe
        .call(
            Operation::GetCrlConfig,
            &["ca", tag, "crl", "config"],
            &[],
            None,
        )
        .await;
    if let Some(config) =
        expect::success::<CrlConfig>(&mut s, &result, shape::CRL_CONFIG, CrlConfig::missing)
    {
        let mut row = expiry_row(&config);
        row.check = "get_after_update".into();
        s.push(row);
    }
    sections.push(s);

    sections.push(ocsp(probe, tag).await);
    sections.push(super::errors::documented(probe, tag, &leaf_req.csr_pem).await);

    sections.push(
        update_ca(
            probe,
            tag,
            "write.update_ca_deactivated",
            CaStatus::Deactivated,
        )
        .await,
    );
    sections.push(super::errors::while_deactivated(probe, tag, &leaf_req.csr_pem).await);
    sections.push(update_ca(probe, tag, "write.update_ca_active", CaStatus::Active).await);
}

fn expiry_row(config: &CrlConfig) -> Row {
    let got = config.expiry.clone().unwrap_or_default();
    Row::judged(
        "expiry",
        format!("expiry {CRL_EXPIRY:?}"),
        format!("{got:?}"),
        got == CRL_EXPIRY,
    )
}

/// Create OCSP, the URL in Get CA; Delete OCSP, the URL gone.
async fn ocsp(probe: &Probe, tag: &str) -> Section {
    let mut s = Section::new(
        "write.ocsp",
        format!("Create OCSP, then Delete OCSP (PUT, DELETE /ca/{tag}/urls)"),
    );
    let body = json!({"ocsp_servers": OCSP_URL});
    let result = probe
        .call(
            Operation::CreateOcsp,
            &["ca", tag, "urls"],
            &[],
            Some(&body),
        )
        .await;
    expect::success::<Value>(&mut s, &result, shape::NONE, |_| None);
    if let Some(d) = get_ca(probe, tag, &mut s).await {
        let has = d.ca_info.url_info.ocsp.iter().any(|u| u == OCSP_URL);
        s.push(Row::judged(
            "ocsp_url_listed",
            format!("urlInfo.ocsp holds {OCSP_URL}"),
            format!("{:?}", d.ca_info.url_info.ocsp),
            has,
        ));
    }
    let result = probe
        .call(Operation::DeleteOcsp, &["ca", tag, "urls"], &[], None)
        .await;
    expect::success::<Value>(&mut s, &result, shape::NONE, |_| None);
    if let Some(d) = get_ca(probe, tag, &mut s).await {
        let gone = d.ca_info.url_info.ocsp.is_empty();
        s.push(Row::judged(
            "ocsp_url_removed",
            "urlInfo.ocsp empty",
            format!("{:?}", d.ca_info.url_info.ocsp),
            gone,
        ));
    }
    s
}

/// DESTROYING, Delete CA, and Get CA to see it gone.
async fn cleanup(probe: &Probe, tag: &str, alias: &str, sections: &mut Vec<Section>) -> Cleanup {
    sections.push(
        update_ca(
            probe,
            tag,
            "write.update_ca_destroying",
            CaStatus::Destroying,
        )
        .await,
    );
    let mut s = Section::new("write.delete_ca", format!("Delete CA (DELETE /ca/{tag})"));
    let result = probe
        .call(Operation::DeleteCa, &["ca", tag], &[], None)
        .await;
    let deleted_ok = is_success(&result);
    expect::success::<Value>(&mut s, &result, shape::NONE, |_| None);
    let result = probe.call(Operation::GetCa, &["ca", tag], &[], None).await;
    let gone = expect::error(&mut s, "gone", &result, messages::CA_NOT_FOUND);
    sections.push(s);
    let deleted = deleted_ok && gone;
    Cleanup {
        ca_tag: tag.to_string(),
        alias: alias.to_string(),
        deleted,
        manual_steps: if deleted {
            Vec::new()
        } else {
            Cleanup::manual_steps_for(tag, alias)
        },
    }
}

fn is_success(result: &Result<Answer, NcpError>) -> bool {
    result.as_ref().is_ok_and(|a| {
        a.http_status == 200
            && a.json
                .as_ref()
                .and_then(|j| j.get("code"))
                .and_then(Value::as_str)
                == Some(crate::ncp::types::SUCCESS)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::conformance::report::Verdict;

    #[test]
    fn the_alias_fits_ncp_s_limit_and_carries_the_prefix() {
        let a = new_alias();
        assert!(a.starts_with(ALIAS_PREFIX));
        assert!((3..=15).contains(&a.chars().count()), "{a}");
    }

    #[test]
    fn a_listing_without_the_intermediate_or_a_crl_with_it_deviates() {
        let a = Serial::random();
        let b = Serial::random();
        let serials = vec![a.clone()];
        let row =
            |s: &Serial, want| membership_row("x", "c", &serials, &s.to_colon_hex(), want).verdict;
        assert_eq!(row(&a, true), Verdict::Conforms);
        assert_eq!(row(&b, true), Verdict::Deviates);
        assert_eq!(row(&a, false), Verdict::Deviates);
        assert_eq!(row(&b, false), Verdict::Conforms);
    }

    #[test]
    fn a_certificate_for_another_key_or_of_the_wrong_kind_deviates() {
        let req = request("leaf", false).unwrap();
        let other = request("other", false).unwrap();
        let ca_key = PrivateKey::generate(KeyType::Ec256).unwrap();
        let name = Name::new().with(NameAttr::CommonName, "r");
        let now = time::OffsetDateTime::now_utc();
        let validity = pki::Validity::new(now, now + time::Duration::days(2)).unwrap();
        let root = pki::self_signed_ca(&name, &ca_key, &pki::IssueOptions::new(validity)).unwrap();
        let signer = pki::Signer::new(ca_key, root).unwrap();
        let csr = pki::Csr::from_pem(&req.csr_pem).unwrap();
        let leaf = csr
            .sign_leaf(&signer, &pki::IssueOptions::new(validity))
            .unwrap();
        let issued = IssuedCert {
            certificate: leaf.to_pem(),
            serial_no: leaf.serial.to_colon_hex(),
            ..IssuedCert::default()
        };
        assert_eq!(
            issued_row(&issued, &req.public_key, false).verdict,
            Verdict::Conforms
        );
        assert_eq!(
            issued_row(&issued, &other.public_key, false).verdict,
            Verdict::Deviates
        );
        assert_eq!(
            issued_row(&issued, &req.public_key, true).verdict,
            Verdict::Deviates
        );
        let wrong_serial = IssuedCert {
            serial_no: "01:02".into(),
            ..issued
        };
        assert_eq!(
            issued_row(&wrong_serial, &req.public_key, false).verdict,
            Verdict::Deviates
        );
    }
}
