use super::*;
use crate::api::IssuerSpec;
use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequestCondition, CertificateSigningRequestSpec,
    CertificateSigningRequestStatus,
};

fn csr(signer: &str, conditions: &[(&str, &str)]) -> CertificateSigningRequest {
    CertificateSigningRequest {
        metadata: kube::api::ObjectMeta {
            name: Some("c".into()),
            ..Default::default()
        },
        spec: CertificateSigningRequestSpec {
            signer_name: signer.into(),
            request: ByteString(b"x".to_vec()),
            username: Some("alice".into()),
            ..Default::default()
        },
        status: Some(CertificateSigningRequestStatus {
            conditions: Some(
                conditions
                    .iter()
                    .map(|(t, s)| CertificateSigningRequestCondition {
                        type_: (*t).into(),
                        status: (*s).into(),
                        ..Default::default()
                    })
                    .collect(),
            ),
            certificate: None,
        }),
    }
}

fn annotate(mut c: CertificateSigningRequest, k: &str, v: &str) -> CertificateSigningRequest {
    c.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(k.into(), v.into());
    c
}

const CLUSTER: &str = "clusterprivatecas.pca.ncp-issuer.dev/ncp";

fn view(subordinate: bool, readiness: Readiness) -> IssuerLookup {
    let mut spec: IssuerSpec = serde_json::from_value(serde_json::json!({
        "caTag": "t", "credentials": {"secretRef": {"name": "s"}}
    }))
    .expect("spec");
    if subordinate {
        spec.subordinate = serde_json::from_value(serde_json::json!({"secretName": "sub"})).ok();
    }
    IssuerLookup::Found(Box::new(IssuerView {
        kind: "ClusterPrivateCA",
        name: "ncp".into(),
        spec,
        secret_namespace: "cert-manager".into(),
        readiness,
        ca_not_after_unix: None,
        owner: "o".into(),
        generation: None,
        subordinate_root: None,
        reference: Default::default(),
    }))
}

fn plan_for(c: &CertificateSigningRequest, issuer: IssuerLookup, auth: Authorization) -> Plan {
    let signer = SignerRef::parse(&c.spec.signer_name).expect("ours");
    plan(Observed {
        csr: c,
        signer: &signer,
        refreshed: false,
        issuer,
        authorization: auth,
    })
}

#[test]
fn signer_names_of_both_kinds_parse_and_others_do_not() {
    assert_eq!(
        SignerRef::parse("privatecas.pca.ncp-issuer.dev/team-a.pca.v2"),
        Some(SignerRef::PrivateCA {
            namespace: "team-a".into(),
            name: "pca.v2".into()
        })
    );
    assert_eq!(
        SignerRef::parse(CLUSTER),
        Some(SignerRef::ClusterPrivateCA { name: "ncp".into() })
    );
    for other in [
        "kubernetes.io/kube-apiserver-client",
        "issuers.cert-manager.io/ns.name",
        "privatecas.pca.ncp-issuer.dev/no-dot",
        "privatecas.pca.ncp-issuer.dev/.name",
        "clusterprivatecas.pca.ncp-issuer.dev/",
        "clusterprivatecas.pca.ncp-issuer.dev/a/b",
    ] {
        assert_eq!(SignerRef::parse(other), None, "{other}");
    }
    let r = SignerRef::parse("privatecas.pca.ncp-issuer.dev/ns.n").expect("ours");
    assert_eq!(r.signer_name(), "privatecas.pca.ncp-issuer.dev/ns.n");
    assert_eq!(
        (r.kind(), r.namespace(), r.name()),
        ("PrivateCA", Some("ns"), "n")
    );
}

#[test]
fn only_an_approved_csr_that_is_not_denied_failed_or_signed_is_signed() {
    assert_eq!(next(&csr(CLUSTER, &[])), Next::AwaitApproval);
    assert_eq!(
        next(&csr(CLUSTER, &[("Approved", "False")])),
        Next::AwaitApproval
    );
    assert_eq!(next(&csr(CLUSTER, &[("Approved", "True")])), Next::Sign);
    assert_eq!(
        next(&csr(CLUSTER, &[("Approved", "True"), ("Denied", "True")])),
        Next::Ignore
    );
    assert_eq!(next(&csr(CLUSTER, &[("Denied", "True")])), Next::Ignore);
    assert_eq!(
        next(&csr(CLUSTER, &[("Approved", "True"), ("Failed", "True")])),
        Next::Ignore
    );
    let mut signed = csr(CLUSTER, &[("Approved", "True")]);
    if let Some(s) = signed.status.as_mut() {
        s.certificate = Some(ByteString(b"pem".to_vec()));
    }
    assert_eq!(next(&signed), Next::Ignore);
}

#[test]
fn a_start_marker_or_a_serial_means_recovery_before_any_second_signing() {
    let approved = csr(CLUSTER, &[("Approved", "True")]);
    let started = annotate(approved, ANNOTATION_SIGNING_STARTED, "t");
    let started = annotate(started, ANNOTATION_CA_TAG, "ca1");
    assert_eq!(
        next(&started),
        Next::RecoverByKey {
            ca_tag: "ca1".into()
        }
    );
    let serial = annotate(started, ANNOTATION_SERIAL, "abc");
    assert_eq!(
        next(&serial),
        Next::RecoverBySerial {
            ca_tag: "ca1".into(),
            serial: "abc".into()
        }
    );
    assert!(needs_fresh_read(&next(&serial)));
    // Recovery needs no SubjectAccessReview and goes to NCP even when the issuer is not Ready.
    let p = plan_for(
        &serial,
        view(true, Readiness::NotReady { why: "x".into() }),
        Authorization::NotChecked,
    );
    assert!(
        matches!(p, Plan::Ncp(_, NcpStep::RecoverBySerial { .. })),
        "{p:?}"
    );
}

#[test]
fn a_requester_who_may_not_reference_the_signer_fails_and_nothing_is_signed() {
    let c = csr(CLUSTER, &[("Approved", "True")]);
    let Plan::Write(o) = plan_for(&c, IssuerLookup::NotNeeded, Authorization::Refused) else {
        panic!("no signing")
    };
    let Some(super::super::status::Update::Failed { reason, message }) = o.update() else {
        panic!("failed: {o:?}")
    };
    assert_eq!(*reason, Reason::SignerReferenceDenied);
    assert!(
        message.contains("alice") && message.contains("reference"),
        "{message}"
    );
    // A review that could not be made is retried, not taken as a refusal.
    let Plan::Write(o) = plan_for(&c, view(false, Readiness::Ready), Authorization::Unknown) else {
        panic!("no signing")
    };
    assert!(o.update().is_none());
}

#[test]
fn an_allowed_requester_is_signed_by_ncp_or_in_the_cluster_once_the_issuer_is_ready() {
    let c = csr(CLUSTER, &[("Approved", "True")]);
    let ncp = plan_for(&c, view(false, Readiness::Ready), Authorization::Allowed);
    assert!(matches!(ncp, Plan::Ncp(_, NcpStep::Sign)), "{ncp:?}");
    let local = plan_for(&c, view(true, Readiness::Ready), Authorization::Allowed);
    assert!(matches!(local, Plan::SignLocally(_)), "{local:?}");
    for waiting in [
        view(false, Readiness::Unchecked),
        view(
            false,
            Readiness::NotReady {
                why: "CANotActive: x".into(),
            },
        ),
        IssuerLookup::Missing,
    ] {
        let Plan::Write(o) = plan_for(&c, waiting, Authorization::Allowed) else {
            panic!("waits")
        };
        assert!(o.update().is_none(), "a CSR has no pending condition");
        assert!(matches!(
            o.requeue_after(),
            crate::controller::certificate_request::status::Requeue::After(_)
        ));
    }
}

#[test]
fn the_duration_annotation_wins_over_expiration_seconds_as_in_cert_manager() {
    let mut c = csr(CLUSTER, &[]);
    assert_eq!(requested_duration(&c), Ok(period::DEFAULT_DURATION));
    c.spec.expiration_seconds = Some(7200);
    assert_eq!(requested_duration(&c), Ok(Duration::from_secs(7200)));
    let c = annotate(c, ANNOTATION_REQUEST_DURATION, "48h");
    assert_eq!(requested_duration(&c), Ok(Duration::from_secs(48 * 3600)));
    let bad = annotate(csr(CLUSTER, &[]), ANNOTATION_REQUEST_DURATION, "soon");
    assert!(requested_duration(&bad).is_err());
    assert!(!requests_ca(&c));
    assert!(requests_ca(&annotate(c, ANNOTATION_REQUEST_IS_CA, "true")));
}
