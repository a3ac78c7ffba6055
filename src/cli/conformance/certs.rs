//! The certificate checks of `--write` on the throwaway CA: Sign End Csr (with and without a period),
//! Sign Sub Csr, Issue End Cert with the defaults, Get End Cert List of every page, and which serials
//! a CRL lists.

use super::expect;
use super::probe::Probe;
use super::report::{Row, Section};
use super::shape;
use crate::ncp::Operation;
use crate::ncp::types::{Complete, EndCertList, IssuedCert, KeyType};
use crate::pki::{
    self, CertInfo, CrlInfo, KeyAlgorithm, Name, NameAttr, PrivateKey, PublicKeyInfo, Serial,
};
use serde_json::json;

/// Validity of the certificates the checks sign, in days.
pub const CERT_DAYS: &str = "1";

/// Most pages of a list walked while looking for something.
pub const MAX_PAGES: u32 = 100;

/// A fresh EC P-256 key's public half and a CSR for it.
pub struct Request {
    /// The CSR, PEM.
    pub csr_pem: String,
    /// The key it certifies.
    pub public_key: PublicKeyInfo,
}

/// A CSR for a new key (`ca`: asking for a CA certificate); `None` when the key cannot be made.
#[must_use]
pub fn request(common_name: &str, ca: bool) -> Option<Request> {
    let key = PrivateKey::generate(KeyType::Ec256).ok()?;
    let subject = Name::new().with(NameAttr::CommonName, common_name);
    Some(Request {
        csr_pem: pki::create_csr(&subject, &[], &key, ca).ok()?,
        public_key: key.public_key().ok()?,
    })
}

fn first_cert(pem: &str) -> Option<CertInfo> {
    pki::parse_certificates_pem(pem)
        .ok()
        .and_then(|c| c.into_iter().next())
}

/// Sign End Csr (or Sign Sub Csr with `sub`) for [`CERT_DAYS`] days; the serial when it was signed.
pub async fn sign(probe: &Probe, tag: &str, req: &Request, sub: bool) -> (Section, Option<String>) {
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

/// Sign End Csr without `period`: the emulator signs until the CA's end (`ca_not_after_ms`).
pub async fn sign_without_period(
    probe: &Probe,
    tag: &str,
    req: &Request,
    ca_not_after_ms: Option<i64>,
) -> Section {
    let mut s = Section::new(
        "write.sign_end_csr_without_period",
        format!("Sign End Csr without period (POST /ca/{tag}/cert/sign)"),
    );
    let body = json!({"csrPem": req.csr_pem});
    let result = probe
        .call(
            Operation::SignEndCsr,
            &["ca", tag, "cert", "sign"],
            &[],
            Some(&body),
        )
        .await;
    if let Some(issued) =
        expect::success::<IssuedCert>(&mut s, &result, shape::SIGNED, IssuedCert::missing)
    {
        s.push(issued_row(&issued, &req.public_key, false));
        s.push(until_ca_end_row(&issued, ca_not_after_ms));
    }
    s
}

/// Issue End Cert with neither `keyType` nor `period`: the emulator uses the CA's key type (EC256)
/// and MAX, cut at the CA's end.
pub async fn issue_with_defaults(
    probe: &Probe,
    tag: &str,
    ca_not_after_ms: Option<i64>,
) -> Section {
    let mut s = Section::new(
        "write.issue_end_cert",
        format!("Issue End Cert without keyType and period (POST /ca/{tag}/cert)"),
    );
    let body = json!({"x509Parameters": {"commonName": "issued.conformance.invalid"}});
    let result = probe
        .call(
            Operation::IssueEndCert,
            &["ca", tag, "cert"],
            &[],
            Some(&body),
        )
        .await;
    if let Some(issued) =
        expect::success::<IssuedCert>(&mut s, &result, shape::ISSUED, IssuedCert::missing)
    {
        let algorithm = first_cert(&issued.certificate).map(|c| c.public_key.algorithm());
        let want = KeyAlgorithm::from(KeyType::Ec256);
        s.push(Row::judged(
            "default_key_type",
            format!("a key of the CA's type ({want})"),
            algorithm.map_or_else(|| "certificate unreadable".into(), |a| a.to_string()),
            algorithm == Some(want),
        ));
        s.push(until_ca_end_row(&issued, ca_not_after_ms));
    }
    s
}

/// The certificate lasts until the CA's end (within a second).
#[must_use]
pub fn until_ca_end_row(issued: &IssuedCert, ca_not_after_ms: Option<i64>) -> Row {
    let expectation = "notAfter = the CA's notAfter (as long as allowed)";
    let not_after_ms = first_cert(&issued.certificate).map(|c| c.not_after.unix_timestamp() * 1000);
    match (not_after_ms, ca_not_after_ms) {
        (Some(cert), Some(ca)) => Row::judged(
            "lasts_until_ca_end",
            expectation,
            format!("notAfter {} s before the CA's", (ca - cert) / 1000),
            (ca - cert).abs() < 1000,
        ),
        _ => Row::judged(
            "lasts_until_ca_end",
            expectation,
            "certificate or CA notAfter unreadable",
            false,
        ),
    }
}

/// The issued certificate carries the CSR's key, is a CA certificate exactly when asked, and its
/// serial is the answer's `serialNo`.
#[must_use]
pub fn issued_row(issued: &IssuedCert, key: &PublicKeyInfo, ca: bool) -> Row {
    let expectation = format!(
        "a certificate for the CSR's key, {}, serial = serialNo",
        if ca { "a CA certificate" } else { "not a CA" }
    );
    let Some(cert) = first_cert(&issued.certificate) else {
        return Row::judged("certificate", expectation, "certificate unreadable", false);
    };
    let same_key = cert.public_key.same_key_as(key);
    let same_serial = Serial::parse(&issued.serial_no).is_ok_and(|s| s == cert.serial);
    Row::judged(
        "certificate",
        expectation,
        format!(
            "key {}, CA {}, serial {} (serialNo {})",
            if same_key { "matches" } else { "differs" },
            cert.is_ca,
            cert.serial.to_colon_hex(),
            issued.serial_no
        ),
        same_key && cert.is_ca == ca && same_serial,
    )
}

/// Every serial Get End Cert List lists, walking its pages (each page judged in `s`).
pub async fn all_serials(probe: &Probe, tag: &str, s: &mut Section) -> Option<Vec<Serial>> {
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

/// A row saying whether `serial` is among `serials`, expected `want`.
#[must_use]
pub fn membership_row(
    check: &str,
    what: &str,
    serials: &[Serial],
    serial: &str,
    want: bool,
) -> Row {
    let is = Serial::parse(serial).is_ok_and(|s| serials.contains(&s));
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

/// Get CA CRL, and which of `expected` (check, what, serial, listed?) it lists.
pub async fn crl_lists(
    probe: &Probe,
    tag: &str,
    s: &mut Section,
    expected: &[(&str, &str, &str, bool)],
) {
    let result = probe
        .call(Operation::GetCaCrl, &["ca", tag, "crl"], &[], None)
        .await;
    let Some(pem) = expect::success::<String>(s, &result, shape::PEM, String::missing) else {
        return;
    };
    match CrlInfo::from_pem(&pem) {
        Ok(crl) => {
            let revoked: Vec<Serial> = crl.revoked.iter().map(|r| r.serial.clone()).collect();
            for (check, what, serial, want) in expected {
                s.push(membership_row(check, what, &revoked, serial, *want));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::conformance::report::Verdict;

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
    fn a_certificate_for_another_key_of_the_wrong_kind_or_lifetime_deviates() {
        let req = request("leaf", false).unwrap();
        let other = request("other", false).unwrap();
        let ca_key = PrivateKey::generate(KeyType::Ec256).unwrap();
        let name = Name::new().with(NameAttr::CommonName, "r");
        let now = time::OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .unwrap();
        let end = now + time::Duration::days(2);
        let validity = pki::Validity::new(now, end).unwrap();
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
            ..issued.clone()
        };
        assert_eq!(
            issued_row(&wrong_serial, &req.public_key, false).verdict,
            Verdict::Deviates
        );
        let end_ms = end.unix_timestamp() * 1000;
        assert_eq!(
            until_ca_end_row(&issued, Some(end_ms)).verdict,
            Verdict::Conforms
        );
        assert_eq!(
            until_ca_end_row(&issued, Some(end_ms + 86_400_000)).verdict,
            Verdict::Deviates
        );
        assert_eq!(until_ca_end_row(&issued, None).verdict, Verdict::Deviates);
    }
}
