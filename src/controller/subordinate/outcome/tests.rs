//! What a provisioning attempt concludes.

use super::*;
use crate::controller::conditions::ConditionStatus;
use crate::controller::events::EventType;
use crate::controller::subordinate::decide::Why;
use crate::controller::subordinate::testing::{NOW, Pki, RECHECK, pki, wanted};
use crate::ncp::NcpError;

fn reasons(notes: &[Note]) -> Vec<Reason> {
    notes.iter().map(|n| n.reason).collect()
}

fn job_for(p: &Pki, current: bool) -> Job {
    Job {
        why: Why::RenewalDue,
        wanted: wanted(),
        secret: None,
        current: current.then(|| p.signer("s")),
        renew_handled: None,
        renew_request: None,
        ncp_ca: None,
        renamed_from: None,
        previous: None,
        namespace: "ns".into(),
        name: "s".into(),
        ca_tag: "tag".into(),
    }
}

fn ncp_failure(e: NcpError) -> SubordinateError {
    SubordinateError::Issuer(IssuerError::Ncp(e))
}

fn throttled(retry_after_secs: Option<u64>) -> NcpError {
    NcpError::Gateway {
        op: crate::ncp::Operation::SignSubCsr,
        http_status: 429,
        error_code: "x".into(),
        message: "slow down".into(),
        details: None,
        retry_after_secs,
    }
}

#[test]
fn a_failed_provisioning_is_reported_and_backed_off_as_the_shared_classifier_says() {
    let p = pki();
    // The current intermediate goes on signing.
    let (o, notes) = conclude(
        &job_for(&p, true),
        Err(ncp_failure(throttled(None))),
        NOW,
        RECHECK,
    );
    assert_eq!(reasons(&notes), [Reason::IntermediateProvisioningFailed]);
    assert_eq!(notes[0].type_, EventType::Warning);
    assert_eq!(o.ready.status, ConditionStatus::True);
    assert!(o.ready.message.contains("renewal failing"));
    assert_eq!(o.requeue, TRANSIENT_RETRY);
    assert!(o.signer.is_some());
    // Without one, the issuer is not Ready; a longer Retry-After is honoured.
    let (o, _) = conclude(
        &job_for(&p, false),
        Err(ncp_failure(throttled(Some(120)))),
        NOW,
        RECHECK,
    );
    assert_eq!(o.ready.status, ConditionStatus::False);
    assert_eq!(o.requeue, Duration::from_secs(120));
    assert!(o.signer.is_none());
    // NCP refused: a retry soon will not help.
    let refused = NcpError::Service {
        op: crate::ncp::Operation::SignSubCsr,
        http_status: 400,
        code: "NOT_FOUND".into(),
        msg: "The CA doesn't exist.".into(),
        known: Some(crate::ncp::messages::MessageId::CaNotFound),
    };
    let (o, _) = conclude(&job_for(&p, false), Err(ncp_failure(refused)), NOW, RECHECK);
    assert_eq!(o.ready.reason, Reason::CANotFound);
    assert_eq!(o.requeue, RECHECK);
}

#[test]
fn a_new_intermediate_is_announced_and_signs() {
    let p = pki();
    let next = pki();
    let mut j = job_for(&p, true);
    j.renamed_from = Some("old".into());
    let fresh = Arc::try_unwrap(next.signer("s")).unwrap().intermediate;
    let (o, notes) = conclude(&j, Ok(Provisioned::Done(Box::new(fresh))), NOW, RECHECK);
    assert_eq!(
        reasons(&notes),
        [
            Reason::IntermediateRotated,
            Reason::IntermediateSecretChanged
        ]
    );
    assert_eq!(notes[0].type_, EventType::Normal);
    assert!(notes[0].text.contains("rotated to"), "{}", notes[0].text);
    assert_eq!(o.ready.status, ConditionStatus::True);
    assert_eq!(
        o.status.as_ref().unwrap().root_sha256,
        next.root_sha256(),
        "the new one"
    );
    let (_, notes) = conclude(
        &job_for(&p, false),
        Ok(Provisioned::Done(Box::new(
            Arc::try_unwrap(next.signer("s")).unwrap().intermediate,
        ))),
        NOW,
        RECHECK,
    );
    assert_eq!(reasons(&notes), [Reason::IntermediateIssued]);
}
