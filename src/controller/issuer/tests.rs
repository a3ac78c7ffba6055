use super::*;
use crate::ncp::types::{CaCertInfo, CaInfo};

const CHAIN: &str = "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n";

fn detail(status: CaStatus, not_after_ms: i64, signing_count: i64) -> CaDetail {
    CaDetail {
        ca_info: CaInfo {
            ca_tag: "t".into(),
            alias: "root".into(),
            status,
            signing_count: Some(signing_count),
            ..CaInfo::default()
        },
        ca_cert_info: CaCertInfo {
            not_after_date: Some(not_after_ms),
            ..CaCertInfo::default()
        },
    }
}

fn now() -> Timestamp {
    Timestamp::from_millisecond(1_000_000).unwrap()
}

const RECHECK: Duration = Duration::from_secs(300);

#[test]
fn an_active_unexpired_ca_is_ready_and_its_counts_go_to_status_not_to_the_message() {
    let v = assess(
        "t",
        &detail(CaStatus::Active, 2_000_000, 100),
        CHAIN,
        NCP_SIGNING_LIMIT,
        now(),
        RECHECK,
    );
    assert_eq!(v.condition.status, ConditionStatus::True);
    assert_eq!(v.ca.as_ref().unwrap().issuances_remaining, 29_900);
    assert!(
        !v.condition.message.contains("29900"),
        "{}",
        v.condition.message
    );
    assert_eq!(v.requeue, RECHECK);
}

#[test]
fn a_ca_that_is_not_active_is_not_ready() {
    for status in [
        CaStatus::Deactivated,
        CaStatus::Pending,
        CaStatus::Destroying,
    ] {
        let v = assess(
            "t",
            &detail(status.clone(), 2_000_000, 0),
            CHAIN,
            NCP_SIGNING_LIMIT,
            now(),
            RECHECK,
        );
        assert_eq!(v.condition.reason, Reason::CANotActive);
        assert!(v.condition.message.contains(status.as_str()));
    }
}

#[test]
fn an_expired_ca_is_not_ready() {
    let v = assess(
        "t",
        &detail(CaStatus::Active, 999_999, 0),
        CHAIN,
        NCP_SIGNING_LIMIT,
        now(),
        RECHECK,
    );
    assert_eq!(v.condition.reason, Reason::CAExpired);
}

#[test]
fn a_ca_at_the_signing_limit_is_not_ready() {
    let v = assess(
        "t",
        &detail(CaStatus::Active, 2_000_000, 30_000),
        CHAIN,
        NCP_SIGNING_LIMIT,
        now(),
        RECHECK,
    );
    assert_eq!(v.condition.reason, Reason::SigningLimitReached);
}

#[test]
fn an_empty_chain_is_not_ready() {
    let v = assess(
        "t",
        &detail(CaStatus::Active, 2_000_000, 0),
        "",
        NCP_SIGNING_LIMIT,
        now(),
        RECHECK,
    );
    assert_eq!(v.condition.reason, Reason::CAChainInvalid);
}

#[test]
fn transient_errors_are_retried_sooner_than_permanent_ones() {
    let unreachable = IssuerError::Ncp(crate::ncp::NcpError::Connect {
        op: crate::ncp::Operation::GetCa,
        message: "refused".into(),
    });
    let spec = crate::api::IssuerSpec::default();
    let v = assess_error(&unreachable, "PrivateCA", &spec, RECHECK);
    assert_eq!(v.condition.reason, Reason::EndpointUnreachable);
    assert_eq!(v.requeue, TRANSIENT_RETRY);
    let missing = IssuerError::SecretNotFound {
        namespace: "a".into(),
        name: "b".into(),
    };
    let v = assess_error(&missing, "PrivateCA", &spec, RECHECK);
    assert_eq!(v.condition.reason, Reason::CredentialsNotFound);
    assert_eq!(v.requeue, RECHECK);
    assert!(
        v.condition
            .message
            .starts_with("credentials secret a/b not found: "),
        "{}",
        v.condition.message
    );
}

#[test]
fn a_missing_secret_says_where_each_kind_reads_it_and_points_across_namespaces_to_clusterprivateca()
{
    let missing = IssuerError::SecretNotFound {
        namespace: "team-a".into(),
        name: "ncp".into(),
    };
    let spec = crate::api::IssuerSpec::default();
    let private = assess_error(&missing, "PrivateCA", &spec, RECHECK).condition;
    assert_eq!(
        private.message,
        "credentials secret team-a/ncp not found: a PrivateCA reads its credentials Secret from \
         its own namespace only; create it in team-a, or use a ClusterPrivateCA to share one \
         Secret across namespaces"
    );
    let cluster = assess_error(&missing, "ClusterPrivateCA", &spec, RECHECK).condition;
    assert!(
        cluster
            .message
            .contains("cluster resource namespace (team-a, --cluster-resource-namespace)"),
        "{}",
        cluster.message
    );
}

#[test]
fn an_unknown_ca_names_the_endpoint_and_how_to_list_the_cas_there() {
    let not_found = IssuerError::Ncp(crate::ncp::NcpError::Service {
        op: crate::ncp::Operation::GetCa,
        http_status: 400,
        code: "NOT_FOUND".into(),
        msg: "The CA doesn't exist.".into(),
        known: Some(crate::ncp::messages::MessageId::CaNotFound),
    });
    let mut spec = crate::api::IssuerSpec {
        ca_tag: "abcd-1234".into(),
        ..Default::default()
    };
    let v = assess_error(&not_found, "ClusterPrivateCA", &spec, RECHECK);
    assert_eq!(v.condition.reason, Reason::CANotFound);
    assert_eq!(
        v.condition.message,
        "NCP at https://pca.apigw.ntruss.com has no CA abcd-1234 (Get CA: ncp service error \
         NOT_FOUND (http 400): The CA doesn't exist.); list the CA tags these credentials can use \
         with `ncp-pca-issuer pca list --endpoint https://pca.apigw.ntruss.com`"
    );
    spec.endpoint = Some("https://privateca.apigw.gov-ntruss.com".into());
    let v = assess_error(&not_found, "PrivateCA", &spec, RECHECK);
    assert!(
        v.condition
            .message
            .contains("pca list --endpoint https://privateca.apigw.gov-ntruss.com`"),
        "{}",
        v.condition.message
    );
}

fn ts(secs: i64) -> Timestamp {
    Timestamp::from_second(secs).unwrap()
}

fn ready_verdict() -> Verdict {
    assess(
        "t",
        &detail(CaStatus::Active, 2_000_000_000_000, 100),
        CHAIN,
        NCP_SIGNING_LIMIT,
        ts(1_000),
        RECHECK,
    )
}

/// The status written for `verdict` at `at`, from nothing.
fn first_status(verdict: &Verdict, at: i64) -> IssuerStatus {
    status_change(
        &IssuerStatus::default(),
        std::slice::from_ref(&verdict.condition),
        verdict,
        None,
        ts(at),
        Some(1),
    )
    .expect("a first status is written")
}

#[test]
fn a_first_check_writes_the_conditions_the_ca_and_the_check_time() {
    let v = ready_verdict();
    let s = first_status(&v, 1_000);
    assert_eq!(s.conditions.len(), 1);
    assert_eq!(s.conditions[0].status, "True");
    assert_eq!(s.conditions[0].observed_generation, Some(1));
    assert_eq!(s.ca, v.ca);
    assert_eq!(s.last_check_time, Some(Time(ts(1_000))));
}

#[test]
fn the_same_verdict_soon_after_writes_nothing_and_a_stale_check_time_is_refreshed() {
    let v = ready_verdict();
    let old = first_status(&v, 1_000);
    let desired = std::slice::from_ref(&v.condition);
    // Within half the re-check (150 s of 300 s): nothing new.
    assert_eq!(
        status_change(&old, desired, &v, None, ts(1_149), Some(1)),
        None
    );
    let refreshed = status_change(&old, desired, &v, None, ts(1_150), Some(1)).expect("stale");
    assert_eq!(refreshed.last_check_time, Some(Time(ts(1_150))));
    assert_eq!(
        refreshed.conditions[0].last_transition_time,
        Time(ts(1_000)),
        "the transition time stays"
    );
    // A short requeue is bounded below by the floor.
    let mut soon = ready_verdict();
    soon.requeue = Duration::from_secs(2);
    let at_floor = 1_000 + i64::try_from(STALE_CHECK_FLOOR.as_secs()).unwrap();
    assert_eq!(
        status_change(&old, desired, &soon, None, ts(at_floor - 1), Some(1)),
        None
    );
    assert!(status_change(&old, desired, &soon, None, ts(at_floor), Some(1)).is_some());
}

#[test]
fn issuance_counts_alone_do_not_justify_a_write_but_other_ca_changes_do() {
    let v = ready_verdict();
    let old = first_status(&v, 1_000);
    let mut counted = ready_verdict();
    let ca = counted.ca.as_mut().unwrap();
    ca.signing_count += 7;
    ca.issuances_remaining -= 7;
    let desired = std::slice::from_ref(&counted.condition);
    assert_eq!(
        status_change(&old, desired, &counted, None, ts(1_010), Some(1)),
        None
    );
    counted.ca.as_mut().unwrap().serial_number = "other".into();
    let s = status_change(&old, desired, &counted, None, ts(1_010), Some(1)).expect("ca changed");
    assert_eq!(s.ca, counted.ca);
}

#[test]
fn a_changed_condition_or_generation_is_written_and_the_transition_time_moves_with_the_status() {
    let v = ready_verdict();
    let old = first_status(&v, 1_000);
    let desired = std::slice::from_ref(&v.condition);
    let s = status_change(&old, desired, &v, None, ts(1_010), Some(2)).expect("new generation");
    assert_eq!(s.conditions[0].observed_generation, Some(2));
    let down = assess_error(
        &IssuerError::SecretNotFound {
            namespace: "a".into(),
            name: "b".into(),
        },
        "PrivateCA",
        &crate::api::IssuerSpec::default(),
        RECHECK,
    );
    let s = status_change(
        &old,
        std::slice::from_ref(&down.condition),
        &down,
        None,
        ts(1_010),
        Some(1),
    )
    .expect("not ready any more");
    assert_eq!(s.conditions[0].status, "False");
    assert_eq!(s.conditions[0].reason, "CredentialsNotFound");
    assert_eq!(s.conditions[0].last_transition_time, Time(ts(1_010)));
}

#[test]
fn leaving_subordinate_mode_drops_upstream_ready_and_the_intermediate() {
    let v = ready_verdict();
    let mut upstream = v.condition.clone();
    upstream.type_ = conditions::UPSTREAM_READY;
    let intermediate = SubordinateStatus {
        secret_name: "s".into(),
        ..SubordinateStatus::default()
    };
    let both = [v.condition.clone(), upstream];
    let old = status_change(
        &IssuerStatus::default(),
        &both,
        &v,
        Some(intermediate.clone()),
        ts(1_000),
        Some(1),
    )
    .expect("first");
    assert_eq!(old.conditions.len(), 2);
    assert_eq!(
        status_change(
            &old,
            &both,
            &v,
            Some(intermediate.clone()),
            ts(1_010),
            Some(1)
        ),
        None
    );
    let mut renewed = intermediate;
    renewed.serial_number = "02".into();
    assert!(status_change(&old, &both, &v, Some(renewed), ts(1_010), Some(1)).is_some());
    let s = status_change(
        &old,
        std::slice::from_ref(&v.condition),
        &v,
        None,
        ts(1_010),
        Some(1),
    )
    .expect("mode changed");
    assert_eq!(s.conditions.len(), 1);
    assert_eq!(s.conditions[0].type_, conditions::READY);
    assert_eq!(s.subordinate, None);
}

#[test]
fn an_event_goes_out_when_ready_changes_status_or_reason_only() {
    let v = ready_verdict();
    let note = ready_event(&IssuerStatus::default(), &v.condition).expect("first Ready");
    assert_eq!(note.type_, crate::controller::events::EventType::Normal);
    assert_eq!(note.reason, Reason::CAActive);
    let old = first_status(&v, 1_000);
    let mut reworded = v.condition;
    reworded.message = "other words".into();
    assert!(ready_event(&old, &reworded).is_none());
    let down = Desired::not_ready(Reason::CANotActive, "down");
    let note = ready_event(&old, &down).expect("turned False");
    assert_eq!(note.type_, crate::controller::events::EventType::Warning);
    assert_eq!(note.text, "down");
}

#[test]
fn an_unreadable_secret_says_what_the_api_server_said_without_a_debug_dump() {
    let status: kube::core::Status = serde_json::from_value(serde_json::json!({
        "status": "Failure", "code": 403, "reason": "Forbidden",
        "message": "secrets \"ncp\" is forbidden"
    }))
    .expect("status");
    let unreadable = IssuerError::SecretRead {
        namespace: "team-a".into(),
        name: "ncp".into(),
        source: kube::Error::Api(Box::new(status)),
    };
    let spec = crate::api::IssuerSpec::default();
    let v = assess_error(&unreadable, "PrivateCA", &spec, RECHECK);
    assert_eq!(v.condition.reason, Reason::CredentialsUnreadable);
    assert_eq!(
        v.condition.message,
        "cannot read credentials secret team-a/ncp: secrets \"ncp\" is forbidden (HTTP 403 Forbidden)"
    );
}
