use super::*;
use RevocationPolicy::{Never, OnCertificateDeletion, OnRequestDeletion};

#[test]
fn never_revokes_nothing() {
    assert!(matches!(
        decide(Never, true, false, Some(false)),
        Verdict::Keep(_)
    ));
}

#[test]
fn on_certificate_deletion_revokes_only_once_the_certificate_is_gone() {
    assert!(matches!(
        decide(OnCertificateDeletion, true, true, Some(false)),
        Verdict::Keep(_)
    ));
    assert_eq!(
        decide(OnCertificateDeletion, true, false, Some(false)),
        Verdict::Revoke
    );
}

#[test]
fn on_request_deletion_revokes_unless_the_certificate_is_still_served() {
    assert_eq!(
        decide(OnRequestDeletion, true, true, Some(false)),
        Verdict::Revoke
    );
    assert!(matches!(
        decide(OnRequestDeletion, true, true, Some(true)),
        Verdict::Keep(_)
    ));
}

#[test]
fn doubt_about_what_is_served_never_revokes() {
    assert!(matches!(
        decide(OnRequestDeletion, true, true, None),
        Verdict::Unsure(_)
    ));
}

#[test]
fn the_serial_to_revoke_is_the_recorded_one_else_that_of_the_certificate_in_status() {
    use crate::api::certmanager::{CertificateRequestSpec, CertificateRequestStatus};
    use crate::pki::{IssueOptions, Name, NameAttr, PrivateKey, Validity, self_signed_ca};
    let key = PrivateKey::generate(crate::ncp::types::KeyType::Ec256).unwrap();
    let now = time::OffsetDateTime::now_utc();
    let cert = self_signed_ca(
        &Name::new().with(NameAttr::CommonName, "leaf"),
        &key,
        &IssueOptions::new(Validity::new(now, now + time::Duration::days(1)).unwrap()),
    )
    .unwrap();
    let mut cr = CertificateRequest::new("r", CertificateRequestSpec::default());
    assert_eq!(issued_serial(&cr), None, "nothing issued");
    cr.status = Some(CertificateRequestStatus {
        certificate: Some(k8s_openapi::ByteString(cert.to_pem().into_bytes())),
        ..CertificateRequestStatus::default()
    });
    assert_eq!(
        issued_serial(&cr),
        None,
        "signed in the cluster (no start marker): NCP knows no such serial"
    );
    cr.metadata.annotations = Some(
        [(
            crate::api::annotations::ANNOTATION_SIGNING_STARTED.to_string(),
            "2026-12-01T10:00:00Z".to_string(),
        )]
        .into(),
    );
    assert_eq!(issued_serial(&cr), Some(cert.serial.to_colon_hex()));
    cr.metadata
        .annotations
        .as_mut()
        .unwrap()
        .insert(ANNOTATION_SERIAL.to_string(), "0a:0b".to_string());
    assert_eq!(issued_serial(&cr).as_deref(), Some("0a:0b"));
}

#[test]
fn nothing_issued_means_nothing_to_revoke() {
    assert!(matches!(
        decide(OnRequestDeletion, false, false, Some(false)),
        Verdict::Keep(_)
    ));
}

#[test]
fn a_release_without_revocation_names_the_request_the_ca_and_the_serial_or_the_signing_window() {
    use crate::api::annotations::{ANNOTATION_CA_TAG, ANNOTATION_SIGNING_STARTED};
    use crate::api::certmanager::CertificateRequestSpec;
    let mut cr = CertificateRequest::new("web-1", CertificateRequestSpec::default());
    cr.metadata.namespace = Some("team-a".into());
    cr.metadata.annotations = Some(
        [
            (
                ANNOTATION_SIGNING_STARTED.to_string(),
                "2026-12-01T10:00:00Z".to_string(),
            ),
            (ANNOTATION_CA_TAG.to_string(), "ca-1".to_string()),
        ]
        .into(),
    );
    let settle = Duration::from_secs(65);
    let text = unrecorded::left_valid(&cr, settle);
    for part in [
        "team-a/web-1",
        "ca-1",
        "2026-12-01T10:00:00Z",
        "2026-12-01T10:01:05Z",
        "serial unknown",
    ] {
        assert!(text.contains(part), "{part} missing: {text}");
    }
    cr.metadata
        .annotations
        .as_mut()
        .unwrap()
        .insert(ANNOTATION_SERIAL.to_string(), "0a:0b".to_string());
    let text = unrecorded::left_valid(&cr, settle);
    assert!(
        text.contains("0a:0b") && text.contains("team-a/web-1") && text.contains("ca-1"),
        "{text}"
    );
}
