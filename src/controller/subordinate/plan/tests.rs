//! One test per arm of the plan.

use super::*;
use crate::api::annotations::ANNOTATION_OWNER;
use crate::controller::conditions::ConditionStatus;
use crate::controller::delays::TRANSIENT_RETRY;
use crate::controller::subordinate::decide::{KEY_TLS_KEY, retry_after_value};
use crate::controller::subordinate::testing::{NOW, OWNER, Pki, RECHECK, pki, spec, wanted};
use crate::ncp::types::KeyType;
use crate::pki::PrivateKey;
use k8s_openapi::ByteString;
use std::collections::BTreeMap;
use time::macros::datetime;

fn ncp_up(p: Option<&Pki>) -> Option<NcpView> {
    Some(NcpView {
        out_of_service: false,
        verdict: Desired::ready(Reason::CAActive, "active"),
        ca: p.map(|p| p.root.certificate().clone()),
    })
}

/// What a reconcile observes, given the parts a test varies.
fn observed<'a>(
    spec: &'a SubordinateSpec,
    secret: Result<Option<Secret>, SubordinateError>,
    previous: Option<&'a SubordinateStatus>,
    ncp: Option<NcpView>,
) -> Observed<'a> {
    Observed {
        owner: OWNER,
        owner_ref: None,
        issuer_name: "sub",
        ca_tag: "tag",
        spec,
        namespace: "ns",
        renew_request: None,
        previous,
        secret,
        cached: None,
        ncp,
        now: NOW,
        recheck: RECHECK,
    }
}

fn report(plan: &Plan) -> &Outcome {
    match &plan.step {
        Step::Report(o) => o,
        other => panic!("a report expected, got {other:?}"),
    }
}

fn job(plan: &Plan) -> &Job {
    match &plan.step {
        Step::Provision(j) => j,
        other => panic!("a provisioning expected, got {other:?}"),
    }
}

fn reasons(notes: &[Note]) -> Vec<Reason> {
    notes.iter().map(|n| n.reason).collect()
}

#[test]
fn a_missing_secret_is_provisioned_and_reported_only_once_it_had_been_provisioned() {
    let s = spec();
    let plan = plan(observed(&s, Ok(None), None, ncp_up(None)));
    let j = job(&plan);
    assert_eq!(j.why, Why::Missing);
    assert!(j.current.is_none() && plan.signer().is_none());
    assert!(plan.found.is_empty(), "a first intermediate is no news");

    let previous = pki().status();
    let plan = super::plan(observed(&s, Ok(None), Some(&previous), ncp_up(None)));
    assert_eq!(job(&plan).why, Why::Missing);
    assert_eq!(reasons(&plan.found), [Reason::IntermediateMissing]);
    let related = plan.found[0].related.as_ref().expect("the secret");
    assert_eq!(
        (related.kind.as_deref(), related.name.as_deref()),
        (Some("Secret"), Some("s"))
    );
}

#[test]
fn a_secret_this_issuer_did_not_create_is_left_alone() {
    let s = spec();
    let mut theirs = pki().secret();
    theirs.metadata.annotations = None;
    let plan = plan(observed(&s, Ok(Some(theirs)), None, ncp_up(None)));
    let o = report(&plan);
    assert_eq!(o.ready.reason, Reason::SecretConflict);
    assert!(o.ready.message.contains("not created by this issuer"));
    assert_eq!(o.requeue, RECHECK);
    assert!(plan.signer().is_none());
}

#[test]
fn a_broken_intermediate_signs_nothing_and_is_replaced() {
    let s = spec();
    let p = pki();
    let mut broken = p.secret();
    broken.data.as_mut().unwrap().insert(
        KEY_TLS_KEY.into(),
        ByteString(
            PrivateKey::generate(KeyType::Ec256)
                .unwrap()
                .to_pkcs8_pem()
                .into(),
        ),
    );
    let mut o = observed(&s, Ok(Some(broken)), None, ncp_up(Some(&p)));
    o.cached = Some(p.signer("s"));
    let plan = plan(o);
    assert_eq!(reasons(&plan.found), [Reason::IntermediateInvalid]);
    let j = job(&plan);
    assert_eq!(j.why, Why::Invalid(SecretProblem::KeyMismatch));
    assert!(
        plan.signer().is_none(),
        "the cached intermediate is evicted"
    );
}

#[test]
fn an_intermediate_never_checked_does_not_sign_while_ncp_is_down() {
    let s = spec();
    let p = pki();
    let other = pki().status();
    for previous in [None, Some(&other)] {
        let plan = plan(observed(&s, Ok(Some(p.secret())), previous, None));
        let o = report(&plan);
        assert_eq!(o.ready.reason, Reason::IntermediateUnverified);
        assert_eq!(o.requeue, TRANSIENT_RETRY);
        assert!(plan.signer().is_none());
    }
}

#[test]
fn a_checked_intermediate_keeps_signing_while_ncp_is_down() {
    let s = spec();
    let p = pki();
    let previous = p.status();
    let plan = plan(observed(&s, Ok(Some(p.secret())), Some(&previous), None));
    let o = report(&plan);
    assert_eq!(o.ready.status, ConditionStatus::True);
    assert_eq!(o.ready.reason, Reason::IntermediateReady);
    assert_eq!(o.requeue, RECHECK, "renewal is months away");
    assert_eq!(o.status.as_ref().unwrap().root_sha256, p.root_sha256());
    assert!(plan.signer().is_some());
    // The one in memory counts as checked too.
    let mut o = observed(&s, Ok(Some(p.secret())), None, None);
    o.cached = Some(p.signer("s"));
    assert_eq!(report(&super::plan(o)).ready.status, ConditionStatus::True);
}

#[test]
fn a_due_renewal_while_ncp_is_down_keeps_signing_and_asks_again_soon() {
    let s = spec();
    let p = pki();
    let previous = p.status();
    let mut o = observed(&s, Ok(Some(p.secret())), Some(&previous), None);
    o.now = datetime!(2026-10-01 00:00 UTC);
    let plan = plan(o);
    let o = report(&plan);
    assert_eq!(o.ready.status, ConditionStatus::True);
    assert!(
        o.ready.message.contains("NCP cannot be asked now"),
        "{}",
        o.ready.message
    );
    assert_eq!(o.requeue, TRANSIENT_RETRY);
    // Without an intermediate there is nothing to sign with.
    let plan = super::plan(observed(&s, Ok(None), None, None));
    assert_eq!(report(&plan).ready.reason, Reason::UpstreamUnavailable);
}

#[test]
fn a_due_renewal_provisions_while_the_current_intermediate_signs() {
    let s = spec();
    let p = pki();
    let mut o = observed(&s, Ok(Some(p.secret())), None, ncp_up(Some(&p)));
    o.now = datetime!(2026-10-01 00:00 UTC);
    let plan = plan(o);
    let j = job(&plan);
    assert_eq!(j.why, Why::RenewalDue);
    assert!(j.current.is_some() && plan.signer().is_some());
    assert!(plan.found.is_empty());
}

#[test]
fn a_renew_annotation_provisions_once_per_value() {
    let s = spec();
    let p = pki();
    let mut o = observed(&s, Ok(Some(p.secret())), None, ncp_up(Some(&p)));
    o.renew_request = Some("1");
    let plan = plan(o);
    assert_eq!(job(&plan).why, Why::Requested("1".into()));
    assert_eq!(job(&plan).renew_request.as_deref(), Some("1"));
    let mut handled = p.secret();
    handled
        .metadata
        .annotations
        .as_mut()
        .unwrap()
        .insert(ANNOTATION_RENEW_HANDLED.into(), "1".into());
    let mut o = observed(&s, Ok(Some(handled)), None, ncp_up(Some(&p)));
    o.renew_request = Some("1");
    let plan = super::plan(o);
    assert_eq!(report(&plan).ready.status, ConditionStatus::True);
    assert_eq!(
        report(&plan)
            .status
            .as_ref()
            .unwrap()
            .last_renew_request
            .as_deref(),
        Some("1")
    );
}

#[test]
fn a_pending_retry_after_is_waited_out_without_asking_ncp_for_the_same_attempt_only() {
    let s = spec();
    let mut waiting = Secret::default();
    waiting.metadata.annotations = Some(BTreeMap::from([
        (ANNOTATION_OWNER.to_string(), OWNER.to_string()),
        (
            ANNOTATION_RETRY_AFTER.to_string(),
            retry_after_value(
                jiff(NOW),
                Duration::from_secs(60),
                &attempt_key(&wanted(), "tag", None),
            ),
        ),
    ]));
    let plan = plan(observed(&s, Ok(Some(waiting.clone())), None, ncp_up(None)));
    let o = report(&plan);
    assert_eq!(o.ready.reason, Reason::Provisioning);
    assert!(
        o.ready
            .message
            .contains("next attempt at 2026-06-01T00:01:00Z"),
        "{}",
        o.ready.message
    );
    assert_eq!(o.requeue, Duration::from_secs(60));
    // A new renew request is another attempt: no wait.
    let mut o = observed(&s, Ok(Some(waiting.clone())), None, ncp_up(None));
    o.renew_request = Some("again");
    assert_eq!(job(&super::plan(o)).why, Why::Missing);
    // Nor once the time has passed.
    let mut o = observed(&s, Ok(Some(waiting)), None, ncp_up(None));
    o.now = datetime!(2026-06-01 00:01 UTC);
    assert_eq!(job(&super::plan(o)).why, Why::Missing);
}

#[test]
fn a_ca_ncp_says_is_out_of_service_stops_local_signing() {
    let s = spec();
    let p = pki();
    let mut down = ncp_up(Some(&p)).unwrap();
    down.out_of_service = true;
    down.verdict = Desired::not_ready(Reason::CANotActive, "NCP CA tag is DISABLED");
    let previous = p.status();
    let plan = plan(observed(
        &s,
        Ok(Some(p.secret())),
        Some(&previous),
        Some(down),
    ));
    let o = report(&plan);
    assert_eq!(o.ready.reason, Reason::CANotActive);
    assert_eq!(o.ready.message, "NCP CA tag is DISABLED");
    assert_eq!(o.status.as_ref(), Some(&previous), "the last status stays");
    assert!(plan.signer().is_none());
}

fn read_failure() -> SubordinateError {
    SubordinateError::Secret {
        verb: "read",
        namespace: "ns".into(),
        name: "s".into(),
        source: kube::Error::Api(Box::new(kube::core::Status {
            code: 500,
            message: "etcd is sulking".into(),
            ..kube::core::Status::default()
        })),
    }
}

#[test]
fn a_failed_secret_read_keeps_the_intermediate_in_memory_signing() {
    let s = spec();
    let p = pki();
    let mut o = observed(&s, Err(read_failure()), None, ncp_up(Some(&p)));
    o.cached = Some(p.signer("s"));
    let plan = plan(o);
    let o = report(&plan);
    assert_eq!(o.ready.status, ConditionStatus::True);
    assert!(o.ready.message.contains("etcd is sulking"));
    assert_eq!(o.requeue, TRANSIENT_RETRY);
    assert!(plan.signer().is_some());
    let plan = super::plan(observed(&s, Err(read_failure()), None, ncp_up(Some(&p))));
    assert_eq!(report(&plan).ready.reason, Reason::SecretUnavailable);
    assert!(plan.signer().is_none());
}

#[test]
fn an_unusable_spec_is_reported() {
    let mut s = spec();
    s.duration = Some("a while".into());
    let plan = plan(observed(&s, Ok(None), None, ncp_up(None)));
    let o = report(&plan);
    assert_eq!(o.ready.reason, Reason::InvalidSpec);
    assert!(o.ready.message.contains("spec.subordinate.duration"));
    assert_eq!(o.requeue, RECHECK);
}

#[test]
fn a_renamed_secret_drops_the_old_signer_and_provisions_in_the_new_one() {
    let s = spec();
    let p = pki();
    let mut previous = p.status();
    previous.secret_name = "old".into();
    let mut o = observed(&s, Ok(None), Some(&previous), ncp_up(Some(&p)));
    o.cached = Some(p.signer("old"));
    let plan = plan(o);
    let j = job(&plan);
    assert_eq!(j.renamed_from.as_deref(), Some("old"));
    assert!(plan.found.is_empty(), "not reported as a deleted secret");
    assert!(plan.signer().is_none());
}

#[test]
fn a_secret_owned_by_no_one_or_an_earlier_issuer_is_adopted() {
    let s = spec();
    let p = pki();
    let owner_ref = OwnerReference {
        uid: "new-uid".into(),
        ..OwnerReference::default()
    };
    let mut o = observed(&s, Ok(Some(p.secret())), None, ncp_up(Some(&p)));
    o.owner_ref = Some(&owner_ref);
    let plan = plan(o);
    assert!(matches!(&plan.step, Step::Adopt(_, o) if o.ready.status == ConditionStatus::True));
}
