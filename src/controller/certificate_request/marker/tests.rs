use super::*;

const SETTLE: Duration = Duration::from_secs(65);
const BUDGET: Duration = Duration::from_secs(3600);

fn t(s: &str) -> Timestamp {
    s.parse().unwrap()
}

#[test]
fn a_marker_is_a_time_unparsable_or_in_the_future() {
    let now = t("2026-12-01T10:00:00Z");
    assert_eq!(read_marker(None, now), None);
    assert_eq!(
        read_marker(Some("2026-12-01T09:59:00Z"), now),
        Some(Marker::At(t("2026-12-01T09:59:00Z")))
    );
    for bad in ["", "garbage", "1733000000", "2026-13-01T00:00:00Z"] {
        assert_eq!(
            read_marker(Some(bad), now),
            Some(Marker::Unparsable),
            "{bad:?}"
        );
    }
    // A replica whose clock runs a little ahead: still a usable time.
    assert_eq!(
        read_marker(Some("2026-12-01T10:04:00Z"), now),
        Some(Marker::At(t("2026-12-01T10:04:00Z")))
    );
    assert_eq!(
        read_marker(Some("2026-12-01T10:06:00Z"), now),
        Some(Marker::Future(t("2026-12-01T10:06:00Z")))
    );
}

#[test]
fn the_window_is_around_the_marker_or_since_the_request_was_created() {
    let now = t("2026-12-01T10:00:00Z");
    let at = t("2026-12-01T09:59:00Z");
    assert_eq!(
        window(Marker::At(at), None, now, SETTLE, BUDGET, Duration::ZERO),
        Window::around(at.as_millisecond(), SETTLE)
    );
    let created = t("2026-12-01T09:30:00Z");
    for marker in [
        Marker::Unparsable,
        Marker::Future(t("2027-01-01T00:00:00Z")),
    ] {
        let w = window(marker, Some(created), now, SETTLE, BUDGET, Duration::ZERO);
        assert_eq!(
            w.since_ms,
            created.as_millisecond() - i64::try_from(RECOVERY_SKEW.as_millis()).unwrap()
        );
        assert!(w.until_ms > now.as_millisecond() + 86_400_000 * 365);
        // The same on the next reconcile, so that an unfinished search goes on.
        let later = t("2026-12-01T10:05:00Z");
        assert_eq!(
            window(marker, Some(created), later, SETTLE, BUDGET, Duration::ZERO),
            w
        );
    }
    let unknown = window(
        Marker::Unparsable,
        None,
        now,
        SETTLE,
        BUDGET,
        Duration::ZERO,
    );
    assert_eq!(
        unknown.since_ms,
        now.as_millisecond() - 3_600_000 - i64::try_from(RECOVERY_SKEW.as_millis()).unwrap()
    );
}

#[test]
fn not_found_re_signs_only_after_a_search_that_started_once_the_signing_settled() {
    let at = t("2026-12-01T10:00:00Z");
    let settled = at.as_millisecond() + 65_000;
    let now = t("2026-12-01T10:00:30Z");
    assert_eq!(
        after_not_found(
            Marker::At(at),
            settled - 1,
            now,
            SETTLE,
            Duration::ZERO,
            BUDGET,
            "ca"
        ),
        AfterNotFound::Wait(Duration::from_secs(35))
    );
    let now = t("2026-12-01T10:01:10Z");
    assert_eq!(
        after_not_found(
            Marker::At(at),
            settled - 1,
            now,
            SETTLE,
            Duration::ZERO,
            BUDGET,
            "ca"
        ),
        AfterNotFound::Wait(RESIGN_AFTER_CLEAR),
        "settled by now, but the search started before: search again"
    );
    assert_eq!(
        after_not_found(
            Marker::At(at),
            settled,
            now,
            SETTLE,
            Duration::ZERO,
            BUDGET,
            "ca"
        ),
        AfterNotFound::Resign
    );
}

#[test]
fn an_unusable_marker_is_retried_within_the_budget_then_fails_never_re_signs() {
    let now = t("2026-12-01T10:00:00Z");
    for marker in [
        Marker::Unparsable,
        Marker::Future(t("2027-01-01T00:00:00Z")),
    ] {
        // Even a search that started long after everything settled proves nothing.
        let late = now.as_millisecond() + 86_400_000;
        let young = Duration::from_secs(10);
        let AfterNotFound::Retry { message, after } =
            after_not_found(marker, late, now, SETTLE, young, BUDGET, "ca-1")
        else {
            panic!("{marker:?}: retry expected");
        };
        assert!(after >= crate::controller::delays::MIN_BACKOFF, "{after:?}");
        assert!(message.contains(ANNOTATION_SIGNING_STARTED), "{message}");
        assert!(
            message.contains("ca-1") && message.contains("not signed again"),
            "{message}"
        );
        assert_eq!(
            message,
            unusable_message(marker, "ca-1"),
            "stable across attempts"
        );
        let old = BUDGET + Duration::from_secs(1);
        let AfterNotFound::Fail { message } =
            after_not_found(marker, late, now, SETTLE, old, BUDGET, "ca-1")
        else {
            panic!("{marker:?}: failure expected");
        };
        assert!(
            message.contains("retry budget (3600s)") && message.contains("ca-1"),
            "{message}"
        );
    }
    assert!(unusable_message(Marker::Unparsable, "c").contains("is not a time"));
    assert!(
        unusable_message(Marker::Future(t("2027-01-01T00:00:00Z")), "c")
            .contains("lies in the future (2027-01-01T00:00:00Z")
    );
}

#[test]
fn a_recovering_request_says_so_with_a_stable_message() {
    let at = t("2026-12-01T10:00:00Z");
    let m = recovering_message(Marker::At(at), "ca-9");
    assert!(
        m.contains("2026-12-01T10:00:00Z") && m.contains("ca-9"),
        "{m}"
    );
    assert_eq!(m, recovering_message(Marker::At(at), "ca-9"));
}

#[test]
fn a_clock_skew_tolerance_above_the_recovery_skew_widens_the_window_on_both_sides() {
    let now = t("2026-12-01T10:00:00Z");
    let at = t("2026-12-01T09:59:00Z");
    let plain = window(Marker::At(at), None, now, SETTLE, BUDGET, Duration::ZERO);
    let wide = window(
        Marker::At(at),
        None,
        now,
        SETTLE,
        BUDGET,
        Duration::from_secs(600),
    );
    assert_eq!(wide.since_ms, plain.since_ms - 600_000);
    assert_eq!(wide.until_ms, plain.until_ms + 600_000);
}
