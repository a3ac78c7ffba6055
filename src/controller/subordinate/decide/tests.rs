use super::*;
use crate::api::SubordinateSubject;
use crate::pki::{IssueOptions, Validity, sign_leaf};
use time::macros::datetime;

const NOW: OffsetDateTime = datetime!(2026-06-01 00:00 UTC);

fn opts(from: OffsetDateTime, to: OffsetDateTime) -> IssueOptions {
    IssueOptions::new(Validity::new(from, to).unwrap())
}

use crate::controller::subordinate::testing::{Pki, pki_valid as pki};

fn read(p: &Pki, at: OffsetDateTime) -> Result<Intermediate, SecretProblem> {
    read_intermediate(
        Some(p.key_pem.as_bytes()),
        Some(p.chain_pem.as_bytes()),
        Some(p.root_pem.as_bytes()),
        at,
    )
}

fn spec() -> SubordinateSpec {
    SubordinateSpec {
        secret_name: "s".into(),
        ..SubordinateSpec::default()
    }
}

#[test]
fn an_empty_spec_means_an_ec256_intermediate_named_after_the_issuer_for_a_year() {
    let w = Wanted::from_spec(&spec(), "sub").unwrap();
    assert_eq!(w.key_type, KeyType::Ec256);
    assert_eq!(w.subject.to_string(), "CN=sub intermediate");
    assert_eq!(w.duration, DEFAULT_INTERMEDIATE_DURATION);
    assert_eq!(w.renew_before, None);
}

#[test]
fn the_subject_and_durations_come_from_the_spec_and_bad_durations_are_named() {
    let mut s = spec();
    s.subject = Some(SubordinateSubject {
        common_name: Some("Mesh CA".into()),
        organizations: vec!["Example".into()],
        countries: vec!["KR".into()],
        ..SubordinateSubject::default()
    });
    s.duration = Some("720h".into());
    s.renew_before = Some("240h".into());
    let w = Wanted::from_spec(&s, "sub").unwrap();
    assert_eq!(w.subject.to_string(), "C=KR, O=Example, CN=Mesh CA");
    assert_eq!(w.duration, Duration::from_secs(720 * 3600));
    assert_eq!(w.renew_before, Some(Duration::from_secs(240 * 3600)));
    s.renew_before = Some("soon".into());
    let e = Wanted::from_spec(&s, "sub").unwrap_err().to_string();
    assert!(e.contains("renewBefore"), "{e}");
}

#[test]
fn the_digest_changes_with_the_key_type_and_the_subject_only() {
    let base = Wanted::from_spec(&spec(), "sub").unwrap();
    let mut longer = spec();
    longer.duration = Some("87600h".into());
    assert_eq!(
        Wanted::from_spec(&longer, "sub").unwrap().digest(),
        base.digest()
    );
    let mut rsa = spec();
    rsa.key_algorithm = crate::api::SubordinateKeyAlgorithm::Rsa2048;
    assert_ne!(
        Wanted::from_spec(&rsa, "sub").unwrap().digest(),
        base.digest()
    );
    assert_ne!(
        Wanted::from_spec(&spec(), "other").unwrap().digest(),
        base.digest()
    );
}

#[test]
fn a_matching_key_certificate_and_root_is_an_intermediate() {
    let p = pki(
        datetime!(2026-01-01 00:00 UTC),
        datetime!(2027-01-01 00:00 UTC),
    );
    let i = read(&p, NOW).unwrap();
    assert_eq!(i.certificate().subject.to_string(), "CN=sub intermediate");
    assert_eq!(i.root_pem, p.root_pem);
    assert_eq!(i.root_sha256, sha256_hex(&p.root.certificate().der));
}

#[test]
fn the_pinned_root_is_the_one_the_chain_reaches_not_the_first_in_ca_crt() {
    let real = pki(
        datetime!(2026-01-01 00:00 UTC),
        datetime!(2027-01-01 00:00 UTC),
    );
    let forged = pki(
        datetime!(2026-01-01 00:00 UTC),
        datetime!(2027-01-01 00:00 UTC),
    );
    let mixed = Pki {
        root_pem: format!("{}{}", real.root_pem, forged.root_pem),
        ..forged
    };
    let i = read(&mixed, NOW).unwrap();
    assert_ne!(i.root_sha256, sha256_hex(&real.root.certificate().der));
}

#[test]
fn nothing_in_the_secret_is_empty_not_broken() {
    assert_eq!(
        read_intermediate(None, Some(b""), None, NOW).unwrap_err(),
        SecretProblem::Empty
    );
}

#[test]
fn a_key_that_is_not_the_certificates_is_refused() {
    let mut p = pki(
        datetime!(2026-01-01 00:00 UTC),
        datetime!(2027-01-01 00:00 UTC),
    );
    p.key_pem = PrivateKey::generate(KeyType::Ec256).unwrap().to_pkcs8_pem();
    assert_eq!(read(&p, NOW).unwrap_err(), SecretProblem::KeyMismatch);
    p.key_pem = "garbage".into();
    assert_eq!(read(&p, NOW).unwrap_err(), SecretProblem::KeyUnreadable);
}

#[test]
fn a_leaf_another_root_or_an_expired_intermediate_is_refused() {
    let p = pki(
        datetime!(2026-01-01 00:00 UTC),
        datetime!(2027-01-01 00:00 UTC),
    );
    // A leaf in tls.crt.
    let leaf_key = PrivateKey::generate(KeyType::Ec256).unwrap();
    let leaf = sign_leaf(
        &p.root,
        &Name::new().with(NameAttr::CommonName, "leaf"),
        &[],
        &leaf_key.public_key().unwrap(),
        &opts(
            datetime!(2026-01-01 00:00 UTC),
            datetime!(2027-01-01 00:00 UTC),
        ),
    )
    .unwrap();
    let as_leaf = Pki {
        key_pem: leaf_key.to_pkcs8_pem(),
        chain_pem: leaf.to_pem(),
        ..pki(
            datetime!(2026-01-01 00:00 UTC),
            datetime!(2027-01-01 00:00 UTC),
        )
    };
    assert_eq!(read(&as_leaf, NOW).unwrap_err(), SecretProblem::NotCa);
    // Another root in ca.crt.
    let other = pki(
        datetime!(2026-01-01 00:00 UTC),
        datetime!(2027-01-01 00:00 UTC),
    );
    let crossed = Pki {
        root_pem: other.root_pem,
        ..pki(
            datetime!(2026-01-01 00:00 UTC),
            datetime!(2027-01-01 00:00 UTC),
        )
    };
    assert!(matches!(read(&crossed, NOW), Err(SecretProblem::Chain(_))));
    // Expired.
    assert!(matches!(
        read(&p, datetime!(2028-01-01 00:00 UTC)),
        Err(SecretProblem::Chain(_))
    ));
}

#[test]
fn renewal_comes_a_third_of_the_life_early_unless_renew_before_says_otherwise() {
    let from = datetime!(2026-01-01 00:00 UTC);
    let to = datetime!(2026-01-31 00:00 UTC);
    assert_eq!(
        renewal_time(from, to, None),
        datetime!(2026-01-21 00:00 UTC)
    );
    assert_eq!(
        renewal_time(from, to, Some(Duration::from_secs(24 * 3600))),
        datetime!(2026-01-30 00:00 UTC)
    );
    // A margin as long as the life itself would renew at once, forever: at most two thirds of it.
    assert_eq!(
        renewal_time(from, to, Some(Duration::from_secs(60 * 24 * 3600))),
        datetime!(2026-01-11 00:00 UTC)
    );
    assert_eq!(
        renewal_time(from, to, Some(Duration::from_secs(29 * 24 * 3600))),
        datetime!(2026-01-11 00:00 UTC)
    );
}

fn observed<'a>(
    current: &'a Result<Intermediate, SecretProblem>,
    digest: Option<&'a str>,
) -> Observed<'a> {
    Observed {
        current,
        spec_digest: digest,
        signed_by_tag: Some("tag"),
        ca_tag: "tag",
        ncp_ca: None,
        renew_request: None,
        renew_handled: None,
    }
}

#[test]
fn a_current_intermediate_is_kept_until_its_renewal_time() {
    let w = Wanted::from_spec(&spec(), "sub").unwrap();
    let digest = w.digest();
    let p = pki(
        datetime!(2026-01-01 00:00 UTC),
        datetime!(2027-01-01 00:00 UTC),
    );
    let current = read(&p, NOW);
    assert_eq!(needs_new(&observed(&current, Some(&digest)), &w, NOW), None);
    assert_eq!(
        needs_new(
            &observed(&current, Some(&digest)),
            &w,
            datetime!(2026-10-01 00:00 UTC)
        ),
        Some(Why::RenewalDue)
    );
    assert_eq!(
        needs_new(&observed(&current, Some("other")), &w, NOW),
        Some(Why::SpecChanged)
    );
    let missing = Err(SecretProblem::Empty);
    assert_eq!(
        needs_new(&observed(&missing, None), &w, NOW),
        Some(Why::Missing)
    );
    let broken = Err(SecretProblem::KeyMismatch);
    assert_eq!(
        needs_new(&observed(&broken, Some(&digest)), &w, NOW),
        Some(Why::Invalid(SecretProblem::KeyMismatch))
    );
}

#[test]
fn a_renew_request_rotates_once_per_value() {
    let w = Wanted::from_spec(&spec(), "sub").unwrap();
    let digest = w.digest();
    let p = pki(
        datetime!(2026-01-01 00:00 UTC),
        datetime!(2027-01-01 00:00 UTC),
    );
    let current = read(&p, NOW);
    let mut o = observed(&current, Some(&digest));
    o.renew_request = Some("1");
    assert_eq!(needs_new(&o, &w, NOW), Some(Why::Requested("1".into())));
    o.renew_handled = Some("1");
    assert_eq!(needs_new(&o, &w, NOW), None);
}

#[test]
fn an_intermediate_from_another_ncp_ca_is_replaced() {
    let w = Wanted::from_spec(&spec(), "sub").unwrap();
    let digest = w.digest();
    let p = pki(
        datetime!(2026-01-01 00:00 UTC),
        datetime!(2027-01-01 00:00 UTC),
    );
    let current = read(&p, NOW);
    let mut o = observed(&current, Some(&digest));
    o.ncp_ca = Some(p.root.certificate());
    assert_eq!(needs_new(&o, &w, NOW), None);
    // NCP's CA is another one (caTag now names another CA, or the CA was replaced).
    let other = pki(
        datetime!(2026-01-01 00:00 UTC),
        datetime!(2027-01-01 00:00 UTC),
    );
    o.ncp_ca = Some(other.root.certificate());
    assert_eq!(needs_new(&o, &w, NOW), Some(Why::NotFromCa));
    // The Secret says another caTag signed it: no need to ask NCP.
    o.ncp_ca = None;
    o.ca_tag = "new-tag";
    assert_eq!(needs_new(&o, &w, NOW), Some(Why::NotFromCa));
}
