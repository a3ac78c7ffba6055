//! Every requeue delay and time bound of the controllers, named, in one place.

use std::time::Duration;

/// How long a request waits before its issuer is looked at again (issuer changes also wake it).
pub const ISSUER_WAIT: Duration = Duration::from_secs(60);
/// How long a new, unapproved request waits for cert-manager's approver before it is marked
/// Initializing (approval usually comes within milliseconds).
pub const APPROVAL_GRACE: Duration = Duration::from_secs(2);
/// How soon a request whose issuer has no NCP client for its current generation yet (the issuer's
/// health check builds it: at start, and after a spec change) looks again; nothing is written meanwhile.
pub const CLIENT_WAIT: Duration = Duration::from_secs(1);
/// Safety-net requeue when a fresh read shows that a request moved on since the cached copy.
pub const STALE_RETRY: Duration = Duration::from_secs(1);
/// Requeue after a conditional write lost to a concurrent change (another replica, cert-manager).
pub const CONFLICT_RETRY: Duration = Duration::from_millis(200);
/// Requeue after the start marker was cleared because NCP certainly did not sign: sign again soon.
pub const RESIGN_AFTER_CLEAR: Duration = Duration::from_millis(100);
/// Requeue of a recovery search that spent its NCP call budget: it goes on where it stopped.
pub const RECOVERY_CONTINUE: Duration = Duration::from_secs(1);
/// Shortest wait after a retryable failure.
pub const MIN_BACKOFF: Duration = Duration::from_secs(5);
/// Longest wait after a retryable failure.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Retry delay of an issuer after a transient failure (NCP unreachable, throttled, API server hiccup).
pub const TRANSIENT_RETRY: Duration = Duration::from_secs(30);
/// An issuer's `lastCheckTime` alone is rewritten at most this often (each write wakes the requests
/// waiting on the issuer).
pub const STALE_CHECK_FLOOR: Duration = Duration::from_secs(5);
/// Wait between revocation attempts of a deleted request.
pub const REVOKE_RETRY: Duration = Duration::from_secs(15);
/// How long a deleted request's revocation is retried before the request is released anyway.
pub const REVOKE_GIVE_UP: Duration = Duration::from_secs(600);
/// Wait before asking NCP again after Sign Sub Csr gave an unusable intermediate (a retry is unlikely
/// to get a better answer, and each one counts against NCP's limit).
pub const UNUSABLE_ANSWER_RETRY: Duration = Duration::from_secs(3600);
/// Requeue of a request whose issuer (or endpoint) has its share of NCP calls in flight: it gives its
/// worker back and looks again soon.
pub const FAIRNESS_RETRY: Duration = Duration::from_millis(200);
/// Shortest wait for a signed certificate whose validity starts in the future (NCP's clock ahead).
pub const NOT_YET_VALID_FLOOR: Duration = Duration::from_secs(1);
/// Longest a signed certificate's validity may start in the future and still be waited for; beyond it
/// the signer's clock is broken, not skewed, and the request fails.
pub const NOT_YET_VALID_MAX_WAIT: Duration = Duration::from_secs(86_400);
/// Shortest requeue of a subordinate issuer before its intermediate's renewal.
pub const RENEWAL_FLOOR: Duration = Duration::from_secs(1);

/// Requeue of an issuer's ClusterTrustBundle when the cluster does not serve the API.
pub const TRUST_BUNDLE_API_RETRY: Duration = Duration::from_secs(3600);

/// Backoff after a retryable failure, from the request's age: grows with it, bounded by
/// [`MIN_BACKOFF`]..[`MAX_BACKOFF`], with up to 20 % jitter.
#[must_use]
pub fn backoff(age: Duration) -> Duration {
    let base = (age / 4).clamp(MIN_BACKOFF, MAX_BACKOFF);
    let spread = u64::try_from(base.as_millis() / 5).unwrap_or(u64::MAX);
    base + Duration::from_millis(rand::random::<u64>() % (spread + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_age_within_its_bounds() {
        for (age, low) in [(0, 5), (40, 10), (100_000, 300)] {
            let b = backoff(Duration::from_secs(age));
            assert!(b >= Duration::from_secs(low), "{age}: {b:?}");
            assert!(b <= Duration::from_secs(low) * 6 / 5, "{age}: {b:?}");
        }
    }
}
