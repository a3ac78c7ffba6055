//! Durations and NCP periods: cert-manager's Go durations, NCP's whole-day `period`, and the validity of
//! certificates signed in the cluster. Shared by the request controller and the subordinate
//! provisioner.

use std::time::Duration;

/// cert-manager's default lifetime when `spec.duration` is unset.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(90 * 24 * 3600);
/// NCP's longest period, in days.
pub const MAX_PERIOD_DAYS: u64 = 3650;
const DAY: u64 = 24 * 3600;

/// Why a duration cannot be mapped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Not a Go duration.
    #[error("spec.duration {0:?} is not a duration")]
    Unparsable(String),
    /// The CA expires within a day.
    #[error(
        "the CA expires at {ca_not_after}, less than a day from now: NCP cannot issue for a shorter period"
    )]
    CaExpiresTooSoon {
        /// The CA's NotAfter.
        ca_not_after: String,
    },
}

/// Parses a Go duration (`"2160h0m0s"`, `"1h30m"`, `"90s"`, `"1.5h"`).
///
/// # Errors
/// When the text is not a positive duration.
pub fn parse_go_duration(text: &str) -> Result<Duration, DurationError> {
    let err = || DurationError::Unparsable(text.to_string());
    let s = text.trim();
    if s.is_empty() || s.starts_with('-') {
        return Err(err());
    }
    let s = s.strip_prefix('+').unwrap_or(s);
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(err)?;
        if num_len == 0 {
            return Err(err());
        }
        let value: f64 = rest[..num_len].parse().map_err(|_| err())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(err()),
        };
        total += value * scale;
        rest = &rest[unit_len..];
    }
    if !total.is_finite() || total > 1e12 {
        return Err(err());
    }
    Ok(Duration::from_secs_f64(total))
}

/// How much of the CA's life is kept out of reach when clamping a period: NCP counts the period from
/// when the call arrives (later than our `now`, on a clock that may differ from ours), and refuses a
/// period that passes the CA's end by even a second.
pub const CA_END_MARGIN: Duration = Duration::from_secs(300);

/// NCP `period` for a request: whole days rounded up, clamped to 1..=3650 and to the CA's remaining
/// life less [`CA_END_MARGIN`] (whole days, rounded down, so the certificate never outlives the CA).
///
/// # Errors
/// When the CA expires within a day.
pub fn period_days(
    requested: Duration,
    now_unix: i64,
    ca_not_after_unix: Option<i64>,
) -> Result<u64, DurationError> {
    let days = requested.as_secs().div_ceil(DAY).clamp(1, MAX_PERIOD_DAYS);
    let Some(ca_end) = ca_not_after_unix else {
        return Ok(days);
    };
    let margin = i64::try_from(CA_END_MARGIN.as_secs()).unwrap_or(i64::MAX);
    let left =
        u64::try_from(ca_end.saturating_sub(now_unix).saturating_sub(margin)).unwrap_or(0) / DAY;
    if left < 1 {
        return Err(DurationError::CaExpiresTooSoon {
            ca_not_after: k8s_openapi::jiff::Timestamp::from_second(ca_end)
                .map(|t| t.to_string())
                .unwrap_or_else(|_| ca_end.to_string()),
        });
    }
    Ok(days.min(left))
}

/// Validity of a certificate signed in the cluster: from `now` for `requested`, ending no later than the
/// intermediate (`ca_not_after`). Returns the window and whether it was shortened.
///
/// # Errors
/// When the intermediate has already expired.
pub fn local_validity(
    requested: Duration,
    now: time::OffsetDateTime,
    ca_not_after: time::OffsetDateTime,
) -> Result<(crate::pki::Validity, bool), crate::pki::PkiError> {
    let wanted = time::Duration::try_from(requested)
        .ok()
        .and_then(|d| now.checked_add(d))
        .unwrap_or(ca_not_after);
    let clamped = wanted > ca_not_after;
    crate::pki::Validity::new(now, wanted.min(ca_not_after)).map(|v| (v, clamped))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse() {
        assert_eq!(
            parse_go_duration("2160h0m0s").unwrap(),
            Duration::from_secs(2160 * 3600)
        );
        assert_eq!(
            parse_go_duration("1h30m").unwrap(),
            Duration::from_secs(5400)
        );
        assert_eq!(
            parse_go_duration("1.5h").unwrap(),
            Duration::from_secs(5400)
        );
        assert_eq!(parse_go_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_go_duration("0").unwrap(), Duration::ZERO);
        for bad in ["", "-1h", "h", "1x", "1", "abc", "1h-2m"] {
            assert!(parse_go_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn period_rounds_up_and_clamps_to_ncp_limits() {
        let day = 24 * 3600;
        assert_eq!(
            period_days(Duration::from_secs(3600), 0, None).unwrap(),
            1,
            "under a day is one day, not zero"
        );
        assert_eq!(
            period_days(Duration::from_secs(day + 1), 0, None).unwrap(),
            2
        );
        assert_eq!(
            period_days(Duration::from_secs(90 * day), 0, None).unwrap(),
            90
        );
        assert_eq!(
            period_days(Duration::from_secs(5000 * day), 0, None).unwrap(),
            3650
        );
        assert_eq!(period_days(Duration::ZERO, 0, None).unwrap(), 1);
    }

    #[test]
    fn period_never_outlives_the_ca() {
        let day = 24 * 3600;
        let now = 1_000_000;
        assert_eq!(
            period_days(
                Duration::from_secs(90 * day),
                now,
                Some(now + 10 * day as i64 + 301)
            )
            .unwrap(),
            10
        );
        // A CA created for exactly ten days, asked in the second it was made: NCP would count from a
        // later second, so nine days.
        assert_eq!(
            period_days(
                Duration::from_secs(90 * day),
                now,
                Some(now + 10 * day as i64)
            )
            .unwrap(),
            9
        );
        assert!(matches!(
            period_days(Duration::from_secs(day), now, Some(now + 3600)),
            Err(DurationError::CaExpiresTooSoon { .. })
        ));
    }

    #[test]
    fn a_locally_signed_certificate_lasts_as_asked_but_never_past_its_signer() {
        let now = time::macros::datetime!(2026-06-01 00:00 UTC);
        let end = time::macros::datetime!(2026-07-01 00:00 UTC);
        let (v, clamped) = local_validity(Duration::from_secs(3600), now, end).unwrap();
        assert_eq!(
            (v.not_before, v.not_after),
            (now, now + time::Duration::HOUR)
        );
        assert!(!clamped);
        let (v, clamped) = local_validity(DEFAULT_DURATION, now, end).unwrap();
        assert_eq!(v.not_after, end);
        assert!(clamped);
        assert!(local_validity(DEFAULT_DURATION, end, now).is_err());
    }
}
