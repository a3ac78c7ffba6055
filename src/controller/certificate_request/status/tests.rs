use super::*;
use crate::api::certmanager::{CertificateRequestSpec, CertificateRequestStatus};

fn cr_with_ready(status: &str, reason: &str, message: &str) -> CertificateRequest {
    let mut cr = CertificateRequest::new("r", CertificateRequestSpec::default());
    cr.status = Some(CertificateRequestStatus {
        conditions: vec![RequestCondition {
            type_: "Ready".into(),
            status: status.into(),
            reason: Some(reason.into()),
            message: Some(message.into()),
            last_transition_time: Some(Time(Timestamp::from_second(10).unwrap())),
            observed_generation: None,
        }],
        ..CertificateRequestStatus::default()
    });
    cr
}

#[test]
fn an_unchanged_condition_is_not_written_again() {
    let cr = cr_with_ready("False", "Pending", "waiting");
    assert!(
        patch_body(
            &cr,
            &Update::condition(ConditionStatus::False, Reason::Pending, "waiting"),
            Timestamp::now()
        )
        .is_none()
    );
    assert!(
        patch_body(
            &cr,
            &Update::condition(ConditionStatus::False, Reason::Pending, "other"),
            Timestamp::now()
        )
        .is_some()
    );
}

#[test]
fn the_transition_time_is_kept_while_the_status_stays() {
    let cr = cr_with_ready("False", "Pending", "waiting");
    let body = patch_body(
        &cr,
        &Update::failed(Reason::Failed, Reason::InvalidRequest, "bad"),
        Timestamp::from_second(99).unwrap(),
    )
    .unwrap();
    assert_eq!(
        body["status"]["conditions"][0]["lastTransitionTime"],
        "1970-01-01T00:00:10Z"
    );
    assert_eq!(body["status"]["failureTime"], "1970-01-01T00:01:39Z");
}

#[test]
fn issued_status_carries_base64_pem_and_only_our_condition() {
    let cr = cr_with_ready("False", "Pending", "waiting");
    let body = patch_body(
        &cr,
        &Update::issued("CERT".into(), "CA".into(), "ok"),
        Timestamp::from_second(99).unwrap(),
    )
    .unwrap();
    assert_eq!(body["status"]["certificate"], "Q0VSVA==");
    assert_eq!(body["status"]["ca"], "Q0E=");
    assert_eq!(body["status"]["conditions"].as_array().unwrap().len(), 1);
    assert_eq!(
        body["status"]["conditions"][0]["lastTransitionTime"],
        "1970-01-01T00:01:39Z"
    );
}

#[test]
fn a_conditional_update_carries_the_resource_version() {
    let cr = cr_with_ready("False", "Pending", "waiting");
    let update = Update::issued("CERT".into(), "CA".into(), "ok");
    assert!(
        patch_body(&cr, &update, Timestamp::from_second(99).unwrap()).unwrap()["metadata"]
            .is_null()
    );
    let update = update.if_unchanged_since(Some("42".into()));
    let body = patch_body(&cr, &update, Timestamp::from_second(99).unwrap()).unwrap();
    assert_eq!(body["metadata"]["resourceVersion"], "42");
}
