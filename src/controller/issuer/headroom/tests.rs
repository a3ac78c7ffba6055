use super::*;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

const DAY: i64 = 86_400;

fn now() -> Timestamp {
    Timestamp::from_second(1_800_000_000).unwrap()
}

fn at(offset_secs: i64) -> String {
    Timestamp::from_second(now().as_second() + offset_secs)
        .unwrap()
        .to_string()
}

const LIMITS: Limits = Limits {
    signing_limit: 1000,
    expiry_warning: Duration::from_secs(30 * 86_400),
};

fn ca(signing_count: i64, expires_in_days: i64) -> CaSummary {
    CaSummary {
        signing_count,
        issuances_remaining: (LIMITS.signing_limit - signing_count).max(0),
        not_after: Some(at(expires_in_days * DAY)),
        ..CaSummary::default()
    }
}

fn intermediate(expires_in_days: i64, renewal_in_days: i64) -> SubordinateStatus {
    SubordinateStatus {
        secret_name: "sub-ca".into(),
        not_after: at(expires_in_days * DAY),
        renewal_time: at(renewal_in_days * DAY),
        ..SubordinateStatus::default()
    }
}

fn reasons(cs: &[Concern]) -> Vec<Reason> {
    cs.iter().map(|c| c.reason).collect()
}

#[test]
fn a_young_ca_far_from_the_cap_has_ample_headroom() {
    let cs = concerns("t", Some(&ca(799, 31)), None, &LIMITS, now());
    assert!(cs.is_empty(), "{cs:?}");
    let c = condition("t", true, &cs, &LIMITS).unwrap();
    assert_eq!(
        (c.type_, c.status, c.reason),
        (HEADROOM, ConditionStatus::True, Reason::AmpleHeadroom)
    );
    assert!(c.message.contains("30 days"), "{}", c.message);
}

#[test]
fn the_cap_warns_at_80_and_at_95_percent() {
    for (count, want) in [
        (800, Some(Reason::SigningLimitNear)),
        (949, Some(Reason::SigningLimitNear)),
        (950, Some(Reason::SigningLimitCritical)),
        (1000, Some(Reason::SigningLimitCritical)),
        (799, None),
    ] {
        let cs = concerns("t", Some(&ca(count, 365)), None, &LIMITS, now());
        assert_eq!(
            reasons(&cs),
            want.into_iter().collect::<Vec<_>>(),
            "{count}"
        );
    }
    let cs = concerns("t", Some(&ca(800, 365)), None, &LIMITS, now());
    assert!(cs[0].text.contains("80 %"), "{}", cs[0].text);
    assert!(cs[0].text.contains("1000"), "{}", cs[0].text);
}

#[test]
fn the_message_holds_no_counts_so_it_changes_only_with_the_situation() {
    let a = concerns("t", Some(&ca(810, 365)), None, &LIMITS, now());
    let b = concerns("t", Some(&ca(820, 365)), None, &LIMITS, now());
    assert_eq!(
        condition("t", true, &a, &LIMITS),
        condition("t", true, &b, &LIMITS)
    );
}

#[test]
fn a_ca_with_less_than_the_window_left_warns_and_an_expired_one_too() {
    for days in [29, 1, -1] {
        let cs = concerns("t", Some(&ca(0, days)), None, &LIMITS, now());
        assert_eq!(reasons(&cs), vec![Reason::CAExpiringSoon], "{days}");
        assert!(cs[0].text.contains("less than 30 days"), "{}", cs[0].text);
    }
    let short = Limits {
        expiry_warning: Duration::from_secs(7 * 86_400),
        ..LIMITS
    };
    assert!(concerns("t", Some(&ca(0, 8)), None, &short, now()).is_empty());
}

#[test]
fn an_intermediate_warns_only_when_it_expires_soon_and_its_renewal_is_overdue() {
    let root = ca(0, 3650);
    let renewing_on_time = intermediate(10, 3);
    assert!(concerns("t", Some(&root), Some(&renewing_on_time), &LIMITS, now()).is_empty());
    let overdue = intermediate(10, -3);
    let cs = concerns("t", Some(&root), Some(&overdue), &LIMITS, now());
    assert_eq!(reasons(&cs), vec![Reason::IntermediateExpiringSoon]);
    assert!(cs[0].text.contains("sub-ca"), "{}", cs[0].text);
    let far = intermediate(60, -3);
    assert!(concerns("t", Some(&root), Some(&far), &LIMITS, now()).is_empty());
}

#[test]
fn the_most_urgent_concern_names_the_condition_and_every_concern_is_in_the_message() {
    let cs = concerns(
        "t",
        Some(&ca(850, 20)),
        Some(&intermediate(5, -1)),
        &LIMITS,
        now(),
    );
    assert_eq!(
        reasons(&cs),
        vec![
            Reason::CAExpiringSoon,
            Reason::IntermediateExpiringSoon,
            Reason::SigningLimitNear
        ]
    );
    let critical = concerns("t", Some(&ca(990, 20)), None, &LIMITS, now());
    assert_eq!(
        reasons(&critical),
        vec![Reason::SigningLimitCritical, Reason::CAExpiringSoon]
    );
    let c = condition("t", true, &cs, &LIMITS).unwrap();
    assert_eq!(
        (c.status, c.reason),
        (ConditionStatus::False, Reason::CAExpiringSoon)
    );
    for concern in &cs {
        assert!(c.message.contains(&concern.text), "{}", c.message);
    }
}

#[test]
fn nothing_known_means_no_condition() {
    assert_eq!(condition("t", false, &[], &LIMITS), None);
}

fn written(d: &Desired) -> Condition {
    Condition {
        type_: d.type_.to_string(),
        status: d.status.as_str().to_string(),
        reason: d.reason.as_str().to_string(),
        message: d.message.clone(),
        observed_generation: Some(1),
        last_transition_time: Time(now()),
    }
}

#[test]
fn each_new_concern_is_one_warning_event_and_a_stated_one_is_not_repeated() {
    let near = concerns("t", Some(&ca(800, 365)), None, &LIMITS, now());
    let near_c = condition("t", true, &near, &LIMITS).unwrap();
    let first = events(&[], Some(&near_c), &near);
    assert_eq!(first.len(), 1);
    assert_eq!(
        first[0].type_,
        crate::controller::events::EventType::Warning
    );
    assert_eq!(first[0].reason, Reason::SigningLimitNear);
    // Same situation at the next check: no event.
    assert!(events(&[written(&near_c)], Some(&near_c), &near).is_empty());
    // Crossing 95 %, then the CA nearing its end too: one event each time, for what is new.
    let critical = concerns("t", Some(&ca(960, 365)), None, &LIMITS, now());
    let critical_c = condition("t", true, &critical, &LIMITS).unwrap();
    let second = events(&[written(&near_c)], Some(&critical_c), &critical);
    assert_eq!(
        second.iter().map(|n| n.reason).collect::<Vec<_>>(),
        vec![Reason::SigningLimitCritical]
    );
    let both = concerns("t", Some(&ca(960, 10)), None, &LIMITS, now());
    let both_c = condition("t", true, &both, &LIMITS).unwrap();
    let third = events(&[written(&critical_c)], Some(&both_c), &both);
    assert_eq!(
        third.iter().map(|n| n.reason).collect::<Vec<_>>(),
        vec![Reason::CAExpiringSoon]
    );
}

#[test]
fn headroom_coming_back_is_one_normal_event_and_a_first_ample_check_none() {
    let ample = condition("t", true, &[], &LIMITS).unwrap();
    assert!(events(&[], Some(&ample), &[]).is_empty());
    let near = concerns("t", Some(&ca(800, 365)), None, &LIMITS, now());
    let near_c = condition("t", true, &near, &LIMITS).unwrap();
    let back = events(&[written(&near_c)], Some(&ample), &[]);
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].type_, crate::controller::events::EventType::Normal);
    assert_eq!(back[0].reason, Reason::AmpleHeadroom);
    assert!(events(&[written(&ample)], Some(&ample), &[]).is_empty());
}

#[test]
fn the_gauges_carry_what_ncp_and_the_intermediate_said_and_nothing_made_up() {
    let g = gauges(true, Some(&ca(800, 10)), Some(&intermediate(5, 2)), &LIMITS);
    assert_eq!(
        g,
        IssuerGauges {
            ready: true,
            ca_not_after: Some(now().as_second() + 10 * DAY),
            ca_signing_count: Some(800),
            ca_issuances_remaining: Some(200),
            ca_signing_limit: Some(1000),
            intermediate_not_after: Some(now().as_second() + 5 * DAY),
            intermediate_renewal: Some(now().as_second() + 2 * DAY),
        }
    );
    assert_eq!(
        gauges(false, None, None, &LIMITS),
        IssuerGauges {
            ready: false,
            ..IssuerGauges::default()
        }
    );
}
