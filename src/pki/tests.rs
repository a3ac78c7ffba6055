//! End-to-end tests of the pki helpers: root → intermediate → leaf for every key type, CRLs, and the
//! rejection paths.

use super::*;
use crate::ncp::types::KeyType;
use std::net::{IpAddr, Ipv4Addr};
use time::{Duration, OffsetDateTime};

fn name(cn: &str) -> Name {
    Name::new()
        .with(NameAttr::Country, "KR")
        .with(NameAttr::Organization, "Example")
        .with(NameAttr::CommonName, cn)
}

fn days(start: OffsetDateTime, d: i64) -> Validity {
    Validity::new(start, start + Duration::days(d)).unwrap()
}

struct Pki {
    root: Signer,
    sub: Signer,
}

fn pki(kt: KeyType) -> Pki {
    let now = OffsetDateTime::now_utc();
    let root_key = PrivateKey::generate(kt).unwrap();
    let root_cert = self_signed_ca(
        &name("Root"),
        &root_key,
        &IssueOptions::new(days(now, 3650)),
    )
    .unwrap();
    let root = Signer::new(root_key, root_cert).unwrap();
    let sub_key = PrivateKey::generate(kt).unwrap();
    let csr = Csr::from_pem(&create_csr(&name("Sub"), &[], &sub_key, true).unwrap()).unwrap();
    assert!(csr.requests_ca());
    let sub_cert = csr
        .sign_ca(&root, &IssueOptions::new(days(now, 1000)))
        .unwrap();
    let sub = Signer::new(sub_key, sub_cert).unwrap();
    Pki { root, sub }
}

#[test]
fn a_leaf_from_a_csr_verifies_to_the_root_for_every_key_type() {
    for kt in KeyType::ALL {
        let p = pki(kt);
        let leaf_key = PrivateKey::generate(kt).unwrap();
        let sans = vec![
            San::Dns("a.example.com".into()),
            San::Ip(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))),
            San::Uri("spiffe://example/ns/x".into()),
            San::Email("ops@example.com".into()),
        ];
        let csr_pem = create_csr(&name("leaf"), &sans, &leaf_key, false).unwrap();
        let csr = Csr::from_pem(&csr_pem).unwrap();
        assert_eq!(csr.public_key().algorithm().key_type(), Some(kt));
        assert_eq!(csr.sans(), &sans[..]);
        let opts = IssueOptions::new(days(OffsetDateTime::now_utc(), 30));
        let leaf = csr.sign_leaf(&p.sub, &opts).unwrap();

        assert_eq!(leaf.serial, opts.serial);
        assert_eq!(leaf.subject, name("leaf"));
        assert_eq!(leaf.issuer, p.sub.certificate().subject);
        assert_eq!(leaf.sans, sans);
        assert!(!leaf.is_ca);
        assert_eq!(leaf.public_key.spki_der(), leaf_key.spki_der().as_slice());
        assert_eq!(leaf.not_after - leaf.not_before, Duration::days(30));

        let inter = [p.sub.certificate().clone()];
        let roots = [p.root.certificate().clone()];
        let path = verify_chain(&leaf, &inter, &roots, OffsetDateTime::now_utc()).unwrap();
        assert_eq!(path.len(), 2, "{kt}");
        assert_eq!(path[1].der, p.root.certificate().der);
        assert!(p.root.certificate().is_self_signed());
        assert!(!p.sub.certificate().is_self_signed());
    }
}

#[test]
fn chain_verification_reports_missing_issuers_expiry_bad_signatures_and_non_cas() {
    let p = pki(KeyType::Ec256);
    let other = pki(KeyType::Ec256);
    let now = OffsetDateTime::now_utc();
    let key = PrivateKey::generate(KeyType::Ec256).unwrap();
    let public = key.public_key().unwrap();
    let leaf = sign_leaf(
        &p.sub,
        &name("l"),
        &[],
        &public,
        &IssueOptions::new(days(now, 10)),
    )
    .unwrap();
    let inter = [p.sub.certificate().clone()];
    let roots = [p.root.certificate().clone()];

    let no_inter = verify_chain(&leaf, &[], &roots, now).unwrap_err();
    assert!(
        matches!(no_inter, ChainError::IssuerNotFound { .. }),
        "{no_inter}"
    );

    let later = verify_chain(&leaf, &inter, &roots, now + Duration::days(11)).unwrap_err();
    assert!(matches!(later, ChainError::Expired { .. }), "{later}");

    // Same names, other keys: the signature gives it away.
    let wrong_root = [other.root.certificate().clone()];
    let bad =
        verify_chain(&leaf, &[other.sub.certificate().clone()], &wrong_root, now).unwrap_err();
    assert!(matches!(bad, ChainError::BadSignature { .. }), "{bad}");

    // A leaf cannot act as an issuer.
    let leaf_signer = Signer::new(key, leaf.clone()).unwrap();
    let k2 = PrivateKey::generate(KeyType::Ec256)
        .unwrap()
        .public_key()
        .unwrap();
    let grandchild = sign_leaf(
        &leaf_signer,
        &name("g"),
        &[],
        &k2,
        &IssueOptions::new(days(now, 1)),
    )
    .unwrap();
    let not_ca = verify_chain(
        &grandchild,
        &[leaf, p.sub.certificate().clone()],
        &roots,
        now,
    )
    .unwrap_err();
    assert!(matches!(not_ca, ChainError::NotCa { .. }), "{not_ca}");
}

#[test]
fn a_tampered_csr_is_rejected() {
    let key = PrivateKey::generate(KeyType::Ec256).unwrap();
    let csr = Csr::from_pem(
        &create_csr(&name("x"), &[San::Dns("x.example".into())], &key, false).unwrap(),
    )
    .unwrap();
    let mut der = csr.der().to_vec();
    // Flip a byte of the CN value inside the signed part.
    let pos = der.windows(1).rposition(|w| w == b"x").unwrap();
    der[pos] = b'y';
    assert_eq!(Csr::from_der(&der).unwrap_err(), PkiError::CsrSignature);
    assert!(Csr::from_pem("garbage").is_err());
    assert!(Csr::from_der(&[0x30, 0x03, 0x02, 0x01, 0x00]).is_err());
}

#[test]
fn a_crl_lists_revoked_serials_and_verifies_with_the_ca_key() {
    let p = pki(KeyType::Rsa2048);
    let now = OffsetDateTime::now_utc();
    let revoked = vec![
        RevokedCert {
            serial: Serial::random(),
            revoked_at: now,
        },
        RevokedCert {
            serial: Serial::random(),
            revoked_at: now - Duration::hours(1),
        },
    ];
    let crl = build_crl(&p.sub, 7, now, now + Duration::days(3), &revoked).unwrap();
    let parsed = CrlInfo::from_pem(&crl.pem).unwrap();
    assert_eq!(parsed.issuer, p.sub.certificate().subject);
    assert_eq!(parsed.revoked.len(), 2);
    assert!(parsed.is_revoked(&revoked[0].serial));
    assert!(!parsed.is_revoked(&Serial::random()));
    parsed
        .verify_signed_by(p.sub.certificate().public_key.spki_der())
        .unwrap();
    assert!(
        parsed
            .verify_signed_by(p.root.certificate().public_key.spki_der())
            .is_err()
    );
    let empty = build_crl(&p.root, 1, now, now + Duration::days(3), &[]).unwrap();
    assert!(CrlInfo::from_der(&empty.der).unwrap().revoked.is_empty());
}

#[test]
fn a_signer_refuses_a_key_that_is_not_the_certificates() {
    let p = pki(KeyType::Ec256);
    let other = PrivateKey::generate(KeyType::Ec256).unwrap();
    assert_eq!(
        Signer::new(other, p.root.certificate().clone()).unwrap_err(),
        PkiError::KeyMismatch
    );
}

#[test]
fn certificates_carry_the_urls_they_are_given() {
    let p = pki(KeyType::Ec256);
    let key = PrivateKey::generate(KeyType::Ec256)
        .unwrap()
        .public_key()
        .unwrap();
    let mut opts = IssueOptions::new(days(OffsetDateTime::now_utc(), 1));
    opts.urls = CertUrls {
        crl: Some("http://127.0.0.1/ext/t/crl".into()),
        ocsp: Some("http://127.0.0.1/ext/t/ocsp".into()),
        ca_issuers: Some("http://127.0.0.1/ext/t/ca".into()),
    };
    let leaf = sign_leaf(&p.sub, &name("u"), &[], &key, &opts).unwrap();
    let text = String::from_utf8_lossy(&leaf.der).to_string();
    for url in ["ext/t/crl", "ext/t/ocsp", "ext/t/ca"] {
        assert!(text.contains(url), "{url}");
    }
    // The AIA extension rcgen cannot write reads back as one, under its own OID.
    let (_, cert) = x509_parser::parse_x509_certificate(&leaf.der).unwrap();
    let aia = cert
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            x509_parser::extensions::ParsedExtension::AuthorityInfoAccess(a) => Some(a),
            _ => None,
        })
        .expect("an authorityInfoAccess extension");
    let locations: Vec<String> = aia
        .accessdescs
        .iter()
        .map(|d| format!("{} {}", d.access_method.to_id_string(), d.access_location))
        .collect();
    assert_eq!(
        locations,
        [
            "1.3.6.1.5.5.7.48.1 URI(http://127.0.0.1/ext/t/ocsp)",
            "1.3.6.1.5.5.7.48.2 URI(http://127.0.0.1/ext/t/ca)"
        ]
    );
}

#[test]
fn garbage_certificates_are_errors() {
    assert!(CertInfo::from_pem("").is_err());
    assert!(CertInfo::from_der(&[0x30, 0x80]).is_err());
    assert!(parse_certificates_pem("nothing").unwrap().is_empty());
    assert!(CrlInfo::from_der(&[1, 2, 3]).is_err());
}

#[test]
fn a_validity_starting_within_the_tolerance_is_accepted_and_a_later_one_waits() {
    let p = pki(KeyType::Ec256);
    let now = OffsetDateTime::now_utc();
    let key = PrivateKey::generate(KeyType::Ec256).unwrap();
    let public = key.public_key().unwrap();
    // Signed by a CA whose clock is 120 s ahead of ours.
    let ahead = now + Duration::seconds(120);
    let leaf = sign_leaf(
        &p.sub,
        &name("l"),
        &[],
        &public,
        &IssueOptions::new(days(ahead, 10)),
    )
    .unwrap();
    let chain = [p.sub.certificate().to_pem(), p.root.certificate().to_pem()];
    let spki = key.spki_der();
    let pem = leaf.to_pem();
    // No tolerance: not valid yet, and the error says when it will be.
    let err = assemble(&spki, &pem, &chain, now).unwrap_err();
    let AssembleError::NotYetValid { not_before, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(*not_before, leaf.not_before);
    assert!(err.to_string().contains("not valid yet"), "{err}");
    // 60 s of tolerance is not enough; 5 minutes is.
    assert!(matches!(
        assemble_with_skew(&spki, &pem, &chain, now, Duration::seconds(60)),
        Err(AssembleError::NotYetValid { .. })
    ));
    let issued = assemble_with_skew(&spki, &pem, &chain, now, Duration::minutes(5)).unwrap();
    assert_eq!(issued.leaf_der, leaf.der);
    // Expiry is not moved by the tolerance.
    let later = now + Duration::days(10) + Duration::seconds(121);
    assert!(matches!(
        assemble_with_skew(&spki, &pem, &chain, later, Duration::minutes(5)),
        Err(AssembleError::Verify(_))
    ));
}
