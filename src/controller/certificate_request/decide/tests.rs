use super::*;
use crate::api::certmanager::{CertificateRequestSpec, CertificateRequestStatus, RequestCondition};

fn cr(
    conditions: &[(&str, &str, Option<&str>)],
    annotations: &[(&str, &str)],
) -> CertificateRequest {
    let mut cr = CertificateRequest::new("r", CertificateRequestSpec::default());
    cr.status = Some(CertificateRequestStatus {
        conditions: conditions
            .iter()
            .map(|(t, s, r)| RequestCondition {
                type_: (*t).into(),
                status: (*s).into(),
                reason: r.map(Into::into),
                ..RequestCondition::default()
            })
            .collect(),
        ..CertificateRequestStatus::default()
    });
    cr.metadata.annotations = Some(
        annotations
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect(),
    );
    cr
}

#[test]
fn a_fresh_request_is_initialized_first() {
    assert_eq!(next(&cr(&[], &[])), Next::Initialize);
}

#[test]
fn an_unapproved_request_is_left_waiting() {
    assert_eq!(
        next(&cr(&[("Ready", "Unknown", Some("Initializing"))], &[])),
        Next::AwaitApproval
    );
}

#[test]
fn a_denied_request_is_marked_denied_even_before_initialisation() {
    assert_eq!(
        next(&cr(&[("Denied", "True", None)], &[])),
        Next::MarkDenied
    );
}

#[test]
fn final_states_are_never_touched_again() {
    assert_eq!(
        next(&cr(&[("Ready", "True", Some("Issued"))], &[])),
        Next::Ignore
    );
    assert_eq!(
        next(&cr(
            &[
                ("Ready", "False", Some("Failed")),
                ("Approved", "True", None)
            ],
            &[]
        )),
        Next::Ignore
    );
    assert_eq!(
        next(&cr(
            &[("Ready", "False", Some("Denied")), ("Denied", "True", None)],
            &[]
        )),
        Next::Ignore
    );
}

#[test]
fn an_approved_request_signs_unless_signing_already_started() {
    let approved = [
        ("Ready", "False", Some("Pending")),
        ("Approved", "True", None),
    ];
    assert_eq!(next(&cr(&approved, &[])), Next::Sign);
    assert_eq!(
        next(&cr(
            &approved,
            &[(ANNOTATION_SIGNING_STARTED, "t"), (ANNOTATION_CA_TAG, "ca")]
        )),
        Next::RecoverByKey {
            ca_tag: "ca".into()
        }
    );
    assert_eq!(
        next(&cr(
            &approved,
            &[
                (ANNOTATION_SIGNING_STARTED, "t"),
                (ANNOTATION_CA_TAG, "ca"),
                (ANNOTATION_SERIAL, "0a")
            ]
        )),
        Next::RecoverBySerial {
            ca_tag: "ca".into(),
            serial: "0a".into()
        }
    );
}

use super::super::issuers::IssuerView;
use crate::api::{IssuerSpec, SubordinateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

fn view(readiness: Readiness, subordinate: bool) -> IssuerView {
    let mut spec: IssuerSpec = serde_json::from_value(serde_json::json!({
        "caTag": "ca",
        "credentials": {"secretRef": {"name": "creds"}}
    }))
    .unwrap();
    if subordinate {
        spec.subordinate = Some(
            serde_json::from_value::<SubordinateSpec>(serde_json::json!({"secretName": "s"}))
                .unwrap(),
        );
    }
    IssuerView {
        kind: "ClusterPrivateCA",
        name: "ca".into(),
        spec,
        secret_namespace: "cert-manager".into(),
        readiness,
        ca_not_after_unix: None,
        owner: "ClusterPrivateCA/ca".into(),
        generation: Some(1),
        subordinate_root: None,
        reference: Default::default(),
    }
}

fn observe(cr: &CertificateRequest, issuer: IssuerLookup, refreshed: bool) -> Plan {
    plan(Observed {
        cr,
        refreshed,
        issuer,
        now: Timestamp::from_second(1_000).unwrap(),
    })
}

fn written(plan: &Plan) -> (Option<Reason>, super::super::status::Requeue) {
    match plan {
        Plan::Write(o) => (o.update().map(|u| u.reason()), o.requeue_after()),
        other => panic!("expected a write, got {other:?}"),
    }
}

const APPROVED: [(&str, &str, Option<&str>); 2] = [
    ("Ready", "False", Some("Pending")),
    ("Approved", "True", None),
];

#[test]
fn signing_waits_for_a_ready_issuer_and_says_why() {
    let cr = cr(&APPROVED, &[]);
    for readiness in [
        Readiness::Unchecked,
        Readiness::NotReady {
            why: "CANotActive: disabled".into(),
        },
    ] {
        let p = observe(
            &cr,
            IssuerLookup::Found(Box::new(view(readiness, false))),
            false,
        );
        let Plan::Write(o) = &p else { panic!("{p:?}") };
        assert_eq!(o.update().map(|u| u.reason()), Some(Reason::Pending));
        assert_eq!(
            o.requeue_after(),
            super::super::status::Requeue::After(ISSUER_WAIT)
        );
    }
    assert!(matches!(
        observe(
            &cr,
            IssuerLookup::Found(Box::new(view(Readiness::Ready, false))),
            false
        ),
        Plan::Ncp(_, NcpStep::Sign)
    ));
    assert!(matches!(
        observe(
            &cr,
            IssuerLookup::Found(Box::new(view(Readiness::Ready, true))),
            false
        ),
        Plan::SignLocally(_)
    ));
}

#[test]
fn a_missing_issuer_is_waited_for_and_an_unreadable_one_retried() {
    let cr = cr(&APPROVED, &[]);
    assert_eq!(
        written(&observe(&cr, IssuerLookup::Missing, false)),
        (
            Some(Reason::Pending),
            super::super::status::Requeue::After(ISSUER_WAIT)
        )
    );
    assert_eq!(
        written(&observe(&cr, IssuerLookup::Unreadable, false)),
        (None, super::super::status::Requeue::After(MIN_BACKOFF))
    );
}

#[test]
fn recovery_does_not_wait_for_the_issuer_to_be_ready() {
    let cr = cr(
        &APPROVED,
        &[(ANNOTATION_SIGNING_STARTED, "t"), (ANNOTATION_CA_TAG, "ca")],
    );
    let p = observe(
        &cr,
        IssuerLookup::Found(Box::new(view(Readiness::Unchecked, true))),
        true,
    );
    assert!(
        matches!(&p, Plan::Ncp(_, NcpStep::RecoverByKey { ca_tag }) if ca_tag == "ca"),
        "{p:?}"
    );
}

#[test]
fn a_fresh_read_that_moved_on_is_not_acted_on() {
    let done = cr(&[("Ready", "True", Some("Issued"))], &[]);
    assert_eq!(
        written(&observe(&done, IssuerLookup::NotNeeded, true)),
        (None, super::super::status::Requeue::OnChange)
    );
    let cleared = cr(&APPROVED, &[]);
    assert_eq!(
        written(&observe(&cleared, IssuerLookup::NotNeeded, true)),
        (None, super::super::status::Requeue::After(STALE_RETRY))
    );
}

#[test]
fn the_first_touch_signs_at_once_an_approved_request_of_an_issuer_ready_in_the_cache() {
    let ready_sub = || IssuerLookup::Found(Box::new(view(Readiness::Ready, true)));
    let ready_ncp = || IssuerLookup::Found(Box::new(view(Readiness::Ready, false)));
    // Approved when first seen: signed in the cluster, or through NCP; no Initializing write.
    let approved_new = cr(&[("Approved", "True", None)], &[]);
    assert!(matches!(
        observe(&approved_new, ready_sub(), false),
        Plan::SignLocally(_)
    ));
    assert!(matches!(
        observe(&approved_new, ready_ncp(), false),
        Plan::Ncp(_, NcpStep::Sign)
    ));
    // Not approved, within the grace: wait for the approver without a write.
    let mut young = cr(&[], &[]);
    young.metadata.creation_timestamp = Some(Time(Timestamp::from_second(999).unwrap()));
    for issuer in [ready_sub(), ready_ncp()] {
        assert_eq!(
            written(&observe(&young, issuer, false)),
            (
                None,
                super::super::status::Requeue::After(Duration::from_secs(1))
            )
        );
    }
    // Not approved, grace over: Initializing.
    let mut old = young;
    old.metadata.creation_timestamp = Some(Time(Timestamp::from_second(10).unwrap()));
    for issuer in [ready_sub(), ready_ncp()] {
        assert_eq!(
            written(&observe(&old, issuer, false)).0,
            Some(Reason::Initializing)
        );
    }
    // An issuer not Ready in the cache: Initializing, then the wait for it.
    for issuer in [
        IssuerLookup::Found(Box::new(view(Readiness::Unchecked, false))),
        IssuerLookup::NotCached,
    ] {
        assert_eq!(
            written(&observe(&approved_new, issuer, false)).0,
            Some(Reason::Initializing)
        );
    }
}

#[test]
fn a_request_signed_at_first_sight_is_recovered_not_initialized_when_its_answer_was_lost() {
    // The start marker, no Ready condition (the Issued write never came): recovery, read fresh.
    let marked = cr(
        &[("Approved", "True", None)],
        &[(ANNOTATION_SIGNING_STARTED, "t"), (ANNOTATION_CA_TAG, "ca")],
    );
    let step = next(&marked);
    assert_eq!(
        step,
        Next::RecoverByKey {
            ca_tag: "ca".into()
        }
    );
    assert!(needs_fresh_read(&step));
    let p = observe(
        &marked,
        IssuerLookup::Found(Box::new(view(Readiness::Ready, true))),
        true,
    );
    assert!(
        matches!(&p, Plan::Ncp(_, NcpStep::RecoverByKey { ca_tag }) if ca_tag == "ca"),
        "{p:?}"
    );
    // The fresh read shows the Issued write landed after all: left alone.
    let done = cr(
        &[
            ("Ready", "True", Some("Issued")),
            ("Approved", "True", None),
        ],
        &[(ANNOTATION_SIGNING_STARTED, "t")],
    );
    assert_eq!(
        written(&observe(&done, IssuerLookup::NotNeeded, true)),
        (None, super::super::status::Requeue::OnChange)
    );
}

#[test]
fn a_denied_request_is_marked_denied() {
    let denied = cr(&[("Ready", "Unknown", None), ("Denied", "True", None)], &[]);
    assert_eq!(
        written(&observe(&denied, IssuerLookup::NotNeeded, false)).0,
        Some(Reason::Denied)
    );
}
