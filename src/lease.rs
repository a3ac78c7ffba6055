//! Leader election on a `coordination.k8s.io/v1` Lease, so that two replicas never both write.
//!
//! The protocol is the one client-go's `leaderelection` speaks, so `kubectl get lease` reads as
//! usual and the fields mean what operators expect:
//!
//! - **Acquire**: create the Lease (409 → another candidate was first), or, when it is free (no
//!   holder: never held, or released) or its holder's term has run out, replace it with our
//!   identity under the `resourceVersion` we read (409 → another candidate won the race).
//!   `acquireTime` is set and `leaseTransitions` incremented when the holder changes.
//! - **Renew**: every `retry_period`, replace it with a fresh `renewTime` under the
//!   `resourceVersion` we last wrote. A conflict is re-read: still ours → retry at once; someone
//!   else's, or deleted → we lost it. If no renewal succeeds within `renew_deadline` (measured from
//!   when the last successful write was *sent*), we step down. Since `renew_deadline <
//!   lease_duration`, we stop before any other candidate may take over.
//! - **Release** on graceful shutdown: the holder is cleared, so a successor takes over at its next
//!   retry instead of waiting out the lease.
//!
//! **Expiry and clock skew.** A holder's term has run out when `renewTime + leaseDurationSeconds`
//! (the lease's own duration) has passed on our wall clock ([`decide`]) **and** we have watched the
//! same version of the Lease, unchanged, for a full lease duration on our monotonic clock (as
//! client-go does). The second rule keeps a candidate whose clock runs ahead, or a holder whose clock
//! runs behind, from taking over a lease that is still being renewed.
//!
//! **Losing leadership.** [`LeaderElector::run`] gives the work a term token: a child of the
//! process's shutdown [`CancellationToken`], so a graceful shutdown cancels it too. On loss (renewal
//! deadline passed, lease taken over or deleted) the `is_leader` flag turns false, the term token is
//! cancelled (so tasks the work spawned stop writing too), the work future is dropped at once and
//! `run` returns [`LeaseError::Lost`]. An elector serves one term: the caller should exit the process
//! (the pod restarts and rejoins as a fresh candidate with fresh caches), never resume writing.
//!
//! Identities must be unique per process (e.g. `<pod name>_<random suffix>`): a candidate that finds
//! the lease held under its own identity treats it as its own.

use futures::FutureExt as _;
use futures::future::FusedFuture as _;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};
use std::future::Future;
use std::pin::pin;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::{Instant, sleep, sleep_until, timeout, timeout_at};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

/// Default time other candidates wait, after the last renewal, before taking over.
pub const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(15);
/// Default time the leader keeps trying to renew before it steps down.
pub const DEFAULT_RENEW_DEADLINE: Duration = Duration::from_secs(10);
/// Default interval between renewals, and between acquisition attempts.
pub const DEFAULT_RETRY_PERIOD: Duration = Duration::from_secs(2);
/// Lease duration assumed for a Lease that does not state a positive `leaseDurationSeconds`.
pub const FALLBACK_LEASE_DURATION_SECONDS: i32 = 15;
/// Acquisition attempts wait `retry_period * (1 + up to this factor)`, so candidates spread out.
const ACQUIRE_JITTER: f64 = 0.2;
/// Upper bound on the release call at shutdown; past it, successors simply wait out the lease.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// Which Lease to compete for, under which identity, with which timings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseConfig {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This candidate's identity, unique per process (written to `holderIdentity`).
    pub identity: String,
    /// How long others wait after the last renewal before taking over (written to
    /// `leaseDurationSeconds`, rounded up to whole seconds).
    pub lease_duration: Duration,
    /// How long the leader keeps failing to renew before it steps down; less than `lease_duration`.
    pub renew_deadline: Duration,
    /// Interval between renewals and between acquisition attempts; less than `renew_deadline`.
    pub retry_period: Duration,
}

impl LeaseConfig {
    /// A config with the default timings (15 s / 10 s / 2 s).
    #[must_use]
    pub fn new(
        namespace: impl Into<String>,
        name: impl Into<String>,
        identity: impl Into<String>,
    ) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
            identity: identity.into(),
            lease_duration: DEFAULT_LEASE_DURATION,
            renew_deadline: DEFAULT_RENEW_DEADLINE,
            retry_period: DEFAULT_RETRY_PERIOD,
        }
    }

    /// Checks names and timings: `0 < retry_period < renew_deadline < lease_duration`, and the
    /// lease duration fits `leaseDurationSeconds`.
    ///
    /// # Errors
    ///
    /// [`LeaseError::InvalidConfig`] naming the first problem.
    pub fn validate(&self) -> Result<(), LeaseError> {
        let invalid = |what: &'static str| Err(LeaseError::InvalidConfig(what));
        if self.namespace.is_empty() || self.name.is_empty() {
            return invalid("the lease namespace and name must not be empty");
        }
        if self.identity.is_empty() {
            return invalid("the identity must not be empty");
        }
        if self.retry_period.is_zero() {
            return invalid("the retry period must be positive");
        }
        if self.renew_deadline <= self.retry_period {
            return invalid("the renew deadline must be longer than the retry period");
        }
        if self.lease_duration <= self.renew_deadline {
            return invalid("the lease duration must be longer than the renew deadline");
        }
        if i32::try_from(self.lease_duration.as_secs()).is_err() {
            return invalid("the lease duration is too long");
        }
        Ok(())
    }

    /// `lease_duration` in whole seconds, rounded up (never shorter than the configured duration).
    #[must_use]
    pub fn lease_duration_seconds(&self) -> i32 {
        let secs =
            self.lease_duration.as_secs() + u64::from(self.lease_duration.subsec_nanos() > 0);
        i32::try_from(secs).unwrap_or(i32::MAX)
    }

    fn lease_ref(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// Leader election failed or ended.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// The [`LeaseConfig`] is unusable.
    #[error("invalid leader election config: {0}")]
    InvalidConfig(&'static str),
    /// This candidate was the leader and is no longer; its work has been stopped.
    #[error("lost leadership of lease {lease}: {reason}")]
    Lost {
        /// `namespace/name` of the Lease.
        lease: String,
        /// What happened.
        reason: LossReason,
    },
}

/// Why a leader stepped down.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LossReason {
    /// Another candidate holds the lease now.
    #[error("{holder} holds it now")]
    TakenOver {
        /// The new holder's identity.
        holder: String,
    },
    /// Someone else cleared the holder.
    #[error("someone else released it")]
    Released,
    /// The Lease object was deleted.
    #[error("the lease was deleted")]
    Deleted,
    /// No renewal succeeded within the renew deadline.
    #[error("no renewal succeeded within the renew deadline of {0:?}")]
    RenewDeadline(Duration),
}

/// What a candidate should do about a Lease it has just read (see [`decide`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Nobody holds it (never held, or released): take it now.
    Acquire,
    /// We hold it: renew it.
    Renew,
    /// Another holder's term has run out by the lease's own clock: take it over.
    TakeOver {
        /// The previous holder's identity.
        previous: String,
    },
    /// Another holder's term is current: wait.
    Wait {
        /// The current holder's identity.
        holder: String,
        /// When its term runs out unless renewed.
        expires: Timestamp,
    },
}

/// Decides, at wall-clock `now`, what candidate `identity` should do about `lease`: free (no spec,
/// no or empty holder) → [`Action::Acquire`]; ours → [`Action::Renew`]; someone else's whose
/// `renewTime` (or `acquireTime`) plus its `leaseDurationSeconds` (default
/// [`FALLBACK_LEASE_DURATION_SECONDS`]) has passed, or which has neither time →
/// [`Action::TakeOver`]; otherwise [`Action::Wait`].
///
/// [`LeaderElector`] takes over only when, in addition, it has watched the same version of the Lease
/// for a full lease duration (see the module documentation on clock skew).
#[must_use]
pub fn decide(now: Timestamp, lease: &Lease, identity: &str) -> Action {
    let Some(spec) = &lease.spec else {
        return Action::Acquire;
    };
    let holder = match spec.holder_identity.as_deref() {
        None | Some("") => return Action::Acquire,
        Some(holder) => holder,
    };
    if holder == identity {
        return Action::Renew;
    }
    let Some(last) = spec.renew_time.as_ref().or(spec.acquire_time.as_ref()) else {
        return Action::TakeOver {
            previous: holder.to_string(),
        };
    };
    let expires = last
        .0
        .checked_add(SignedDuration::from_secs(i64::from(
            lease_duration_seconds(spec),
        )))
        .unwrap_or(Timestamp::MAX);
    if now >= expires {
        Action::TakeOver {
            previous: holder.to_string(),
        }
    } else {
        Action::Wait {
            holder: holder.to_string(),
            expires,
        }
    }
}

/// The lease's own duration, or the fallback when it states none.
fn lease_duration_seconds(spec: &LeaseSpec) -> i32 {
    spec.lease_duration_seconds
        .filter(|secs| *secs > 0)
        .unwrap_or(FALLBACK_LEASE_DURATION_SECONDS)
}

/// `lease` as written by `identity` taking or renewing it at `now`.
fn claimed(mut lease: Lease, identity: &str, now: Timestamp, duration_seconds: i32) -> Lease {
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    if spec.holder_identity.as_deref() != Some(identity) {
        spec.holder_identity = Some(identity.to_string());
        spec.acquire_time = Some(MicroTime(now));
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
    }
    spec.renew_time = Some(MicroTime(now));
    spec.lease_duration_seconds = Some(duration_seconds);
    lease
}

/// `lease` with its holder cleared at `now`, so that any candidate may take it at once.
fn released(mut lease: Lease, now: Timestamp) -> Lease {
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    spec.holder_identity = None;
    spec.acquire_time = None;
    spec.renew_time = Some(MicroTime(now));
    lease
}

/// The `is_leader` flag; turns false when dropped, so a dropped or aborted elector never looks like
/// a leader.
#[derive(Debug)]
struct LeaderFlag(watch::Sender<bool>);

impl LeaderFlag {
    fn set(&self, leader: bool) {
        self.0.send_replace(leader);
    }
}

impl Drop for LeaderFlag {
    fn drop(&mut self) {
        self.0.send_replace(false);
    }
}

/// The version of a held Lease we have been watching, and since when (monotonic).
#[derive(Debug)]
struct Observation {
    resource_version: Option<String>,
    since: Instant,
}

/// Our current term as leader.
#[derive(Debug)]
struct Term {
    /// The Lease as we last wrote it (its `resourceVersion` guards the next write).
    lease: Lease,
    /// When the last successful write was sent.
    renewed_at: Instant,
    /// When to try renewing next.
    next_attempt: Instant,
}

/// Outcome of one renewal attempt.
#[derive(Debug)]
enum Renewal {
    Renewed(Lease),
    /// Still ours, but changed under us: retry at once with this version.
    Refreshed(Lease),
    Lost(LossReason),
    Failed(kube::Error),
}

/// Competes for one Lease and runs work while it holds it.
#[derive(Debug)]
pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaseConfig,
    leader: LeaderFlag,
    is_leader: watch::Receiver<bool>,
}

impl LeaderElector {
    /// An elector for `config.namespace/config.name`.
    ///
    /// # Errors
    ///
    /// [`LeaseError::InvalidConfig`] when the config does not validate.
    pub fn new(client: kube::Client, config: LeaseConfig) -> Result<Self, LeaseError> {
        config.validate()?;
        let (tx, rx) = watch::channel(false);
        Ok(Self {
            api: Api::namespaced(client, &config.namespace),
            config,
            leader: LeaderFlag(tx),
            is_leader: rx,
        })
    }

    /// Follows whether this candidate is the leader right now (for metrics, logs and tests). It turns
    /// true once the lease is ours and false before the work is released or dropped.
    #[must_use]
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.is_leader.clone()
    }

    /// The config.
    #[must_use]
    pub fn config(&self) -> &LeaseConfig {
        &self.config
    }

    /// Waits to become the leader, then runs `work` while renewing the lease. `work` gets the term
    /// token, a child of `shutdown`: give it to every task that writes.
    ///
    /// - `shutdown` cancelled before leadership → `Ok(None)`.
    /// - `shutdown` cancelled while leading → the term token is cancelled with it, renewal continues
    ///   until the work returns, then the lease is released → `Ok(Some(output))`.
    /// - the work returns on its own → the lease is released → `Ok(Some(output))`.
    /// - leadership lost → the term token is cancelled and the work dropped at once →
    ///   `Err(LeaseError::Lost)`; the caller should exit.
    ///
    /// API errors while competing are logged and retried every `retry_period`.
    ///
    /// # Errors
    ///
    /// [`LeaseError::Lost`] when leadership was lost; the work has been stopped.
    pub async fn run<F, Fut>(
        self,
        shutdown: CancellationToken,
        work: F,
    ) -> Result<Option<Fut::Output>, LeaseError>
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future,
    {
        let mut stopping = pin!(shutdown.clone().cancelled_owned().fuse());
        let Some(mut term) = self.acquire(stopping.as_mut()).await else {
            return Ok(None);
        };
        info!(lease = %self.config.lease_ref(), identity = %self.config.identity, "became the leader");
        self.leader.set(true);

        let term_token = shutdown.child_token();
        let mut work = pin!(work(term_token.clone()));
        loop {
            tokio::select! {
                output = &mut work => {
                    self.leader.set(false);
                    self.release(term.lease).await;
                    return Ok(Some(output));
                }
                () = &mut stopping, if !stopping.is_terminated() => {
                    // The term token is cancelled with `shutdown`; keep renewing until the work has
                    // wound down, then release.
                    info!(lease = %self.config.lease_ref(), "shutting down: stopping the leader's work");
                }
                renewal = self.renew(&term) => match renewal {
                    Renewal::Renewed(lease) => {
                        term.lease = lease;
                        // Set when the attempt started, see `renew`.
                        term.renewed_at = term.next_attempt;
                        term.next_attempt += self.config.retry_period;
                    }
                    Renewal::Refreshed(lease) => {
                        debug!(lease = %self.config.lease_ref(), "lease changed under us but is still ours; renewing again");
                        term.lease = lease;
                        term.next_attempt = Instant::now();
                    }
                    Renewal::Failed(e) => {
                        warn!(error = %e, lease = %self.config.lease_ref(), "cannot renew the lease; retrying");
                        term.next_attempt = Instant::now() + self.config.retry_period;
                    }
                    Renewal::Lost(reason) => {
                        // Order matters: nobody may believe we lead once the token fires.
                        self.leader.set(false);
                        term_token.cancel();
                        error!(lease = %self.config.lease_ref(), reason = %reason, "lost leadership; stopping the leader's work");
                        // Returning drops the work future: it stops at its current await point.
                        return Err(LeaseError::Lost { lease: self.config.lease_ref(), reason });
                    }
                }
            }
        }
    }

    /// Competes until the lease is ours (`Some`) or `shutdown` fires (`None`).
    async fn acquire<S>(
        &self,
        mut shutdown: std::pin::Pin<&mut futures::future::Fuse<S>>,
    ) -> Option<Term>
    where
        S: Future<Output = ()>,
    {
        let mut observed: Option<Observation> = None;
        loop {
            let sent = Instant::now();
            // Bounded, so a hanging API server cannot stall us; a lost answer is repaired at the
            // next attempt (the lease then reads as ours).
            match timeout(self.config.renew_deadline, self.try_acquire(&mut observed)).await {
                Ok(Ok(Some(lease))) => {
                    let term = Term {
                        lease,
                        renewed_at: sent,
                        next_attempt: sent + self.config.retry_period,
                    };
                    if shutdown.is_terminated() || futures::poll!(shutdown.as_mut()).is_ready() {
                        // Shutdown came while we were acquiring: hand the lease straight back.
                        self.release(term.lease).await;
                        return None;
                    }
                    return Some(term);
                }
                // Held by another candidate, or we lost a race: try again after the retry period.
                Ok(Ok(None)) => {}
                Ok(Err(e)) => {
                    warn!(error = %e, lease = %self.config.lease_ref(), "cannot acquire the lease; retrying");
                }
                Err(_) => {
                    warn!(lease = %self.config.lease_ref(), timeout = ?self.config.renew_deadline, "acquiring the lease timed out; retrying");
                }
            }
            let jitter = 1.0 + ACQUIRE_JITTER * rand::random::<f64>();
            tokio::select! {
                () = &mut shutdown, if !shutdown.is_terminated() => return None,
                () = sleep(self.config.retry_period.mul_f64(jitter)) => {}
            }
        }
    }

    /// One acquisition attempt: `Some` with the Lease as written when it is now ours.
    async fn try_acquire(
        &self,
        observed: &mut Option<Observation>,
    ) -> Result<Option<Lease>, kube::Error> {
        let config = &self.config;
        let now = Timestamp::now();
        let Some(current) = self.api.get_opt(&config.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(config.name.clone()),
                    namespace: Some(config.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(config.identity.clone()),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_duration_seconds: Some(config.lease_duration_seconds()),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(created) => Ok(Some(created)),
                Err(e) if is_conflict(&e) => {
                    debug!(lease = %config.lease_ref(), "another candidate created the lease first");
                    Ok(None)
                }
                Err(e) => Err(e),
            };
        };

        let seen_at = Instant::now();
        let version = current.metadata.resource_version.clone();
        let since = match observed {
            Some(o) if o.resource_version == version => o.since,
            _ => {
                *observed = Some(Observation {
                    resource_version: version,
                    since: seen_at,
                });
                seen_at
            }
        };
        match decide(now, &current, &config.identity) {
            Action::Wait { holder, expires } => {
                debug!(lease = %config.lease_ref(), %holder, %expires, "the lease is held; waiting");
                return Ok(None);
            }
            Action::TakeOver { previous } => {
                let duration = current
                    .spec
                    .as_ref()
                    .map_or(FALLBACK_LEASE_DURATION_SECONDS, lease_duration_seconds);
                let watched = seen_at.duration_since(since);
                if watched < Duration::from_secs(u64::try_from(duration).unwrap_or(0)) {
                    // Expired by the wall clock, but not yet seen unchanged for a full term: the
                    // clocks may disagree. Look again at the next attempt.
                    debug!(lease = %config.lease_ref(), %previous, ?watched, "the holder's term looks over; confirming before taking over");
                    return Ok(None);
                }
                info!(lease = %config.lease_ref(), %previous, "the holder's term has run out; taking over");
            }
            Action::Acquire | Action::Renew => {}
        }
        let lease = claimed(
            current,
            &config.identity,
            now,
            config.lease_duration_seconds(),
        );
        match self
            .api
            .replace(&config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(written) => Ok(Some(written)),
            Err(e) if is_conflict(&e) => {
                debug!(lease = %config.lease_ref(), "another candidate wrote the lease first");
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Waits for the next renewal time, then renews, giving up at the renew deadline. On
    /// [`Renewal::Renewed`] the write was sent at `term.next_attempt` or later.
    async fn renew(&self, term: &Term) -> Renewal {
        sleep_until(term.next_attempt).await;
        let deadline = term.renewed_at + self.config.renew_deadline;
        let lost = Renewal::Lost(LossReason::RenewDeadline(self.config.renew_deadline));
        if Instant::now() >= deadline {
            return lost;
        }
        timeout_at(deadline, self.renew_once(term.lease.clone()))
            .await
            .unwrap_or(lost)
    }

    async fn renew_once(&self, lease: Lease) -> Renewal {
        let config = &self.config;
        let lease = claimed(
            lease,
            &config.identity,
            Timestamp::now(),
            config.lease_duration_seconds(),
        );
        let err = match self
            .api
            .replace(&config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(written) => return Renewal::Renewed(written),
            Err(e) => e,
        };
        if is_not_found(&err) {
            return Renewal::Lost(LossReason::Deleted);
        }
        if !is_conflict(&err) {
            return Renewal::Failed(err);
        }
        // Written by someone else since our last write: whose is it now?
        match self.api.get_opt(&config.name).await {
            Ok(None) => Renewal::Lost(LossReason::Deleted),
            Ok(Some(current)) => {
                match current
                    .spec
                    .as_ref()
                    .and_then(|s| s.holder_identity.as_deref())
                {
                    Some(holder) if holder == config.identity => Renewal::Refreshed(current),
                    None | Some("") => Renewal::Lost(LossReason::Released),
                    Some(holder) => Renewal::Lost(LossReason::TakenOver {
                        holder: holder.to_string(),
                    }),
                }
            }
            Err(e) => Renewal::Failed(e),
        }
    }

    /// Clears the holder (guarded by the `resourceVersion` we last wrote), best effort.
    async fn release(&self, lease: Lease) {
        let config = &self.config;
        let lease = released(lease, Timestamp::now());
        let params = PostParams::default();
        let call = self.api.replace(&config.name, &params, &lease);
        match timeout(RELEASE_TIMEOUT, call).await {
            Ok(Ok(_)) => info!(lease = %config.lease_ref(), "released the lease"),
            Ok(Err(e)) if is_conflict(&e) || is_not_found(&e) => {
                debug!(lease = %config.lease_ref(), "the lease was no longer ours to release");
            }
            Ok(Err(e)) => {
                warn!(error = %e, lease = %config.lease_ref(), "cannot release the lease; successors will wait for it to expire");
            }
            Err(_) => {
                warn!(lease = %config.lease_ref(), timeout = ?RELEASE_TIMEOUT, "releasing the lease timed out; successors will wait for it to expire");
            }
        }
    }
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(status) if status.code == 409)
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(status) if status.code == 404)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: &str = "me";
    const OTHER: &str = "other";

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).unwrap()
    }

    fn lease(holder: Option<&str>, renewed: Option<i64>, duration: Option<i32>) -> Lease {
        Lease {
            metadata: ObjectMeta::default(),
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_string),
                acquire_time: renewed.map(|s| MicroTime(at(s - 100))),
                renew_time: renewed.map(|s| MicroTime(at(s))),
                lease_duration_seconds: duration,
                lease_transitions: Some(3),
                ..LeaseSpec::default()
            }),
        }
    }

    #[test]
    fn a_lease_without_spec_or_holder_is_free() {
        let empty = Lease::default();
        assert_eq!(decide(at(0), &empty, ME), Action::Acquire);
        assert_eq!(
            decide(at(0), &lease(None, Some(0), Some(15)), ME),
            Action::Acquire
        );
    }

    #[test]
    fn a_released_lease_with_an_empty_holder_is_free_even_if_just_renewed() {
        assert_eq!(
            decide(at(1), &lease(Some(""), Some(0), Some(15)), ME),
            Action::Acquire
        );
    }

    #[test]
    fn a_lease_held_by_us_is_renewed_even_when_expired() {
        assert_eq!(
            decide(at(1), &lease(Some(ME), Some(0), Some(15)), ME),
            Action::Renew
        );
        assert_eq!(
            decide(at(100), &lease(Some(ME), Some(0), Some(15)), ME),
            Action::Renew
        );
    }

    #[test]
    fn a_fresh_lease_held_by_another_is_waited_for_until_renew_time_plus_its_own_duration() {
        assert_eq!(
            decide(at(14), &lease(Some(OTHER), Some(0), Some(15)), ME),
            Action::Wait {
                holder: OTHER.into(),
                expires: at(15)
            }
        );
        // The lease's own duration counts, not ours.
        assert_eq!(
            decide(at(59), &lease(Some(OTHER), Some(0), Some(60)), ME),
            Action::Wait {
                holder: OTHER.into(),
                expires: at(60)
            }
        );
    }

    #[test]
    fn an_expired_lease_held_by_another_is_taken_over() {
        let take_over = Action::TakeOver {
            previous: OTHER.into(),
        };
        assert_eq!(
            decide(at(15), &lease(Some(OTHER), Some(0), Some(15)), ME),
            take_over
        );
        assert_eq!(
            decide(at(16), &lease(Some(OTHER), Some(0), Some(15)), ME),
            take_over
        );
    }

    #[test]
    fn a_lease_without_a_positive_duration_uses_the_fallback_duration() {
        for duration in [None, Some(0), Some(-5)] {
            assert!(matches!(
                decide(at(14), &lease(Some(OTHER), Some(0), duration), ME),
                Action::Wait { .. }
            ));
            assert!(matches!(
                decide(at(15), &lease(Some(OTHER), Some(0), duration), ME),
                Action::TakeOver { .. }
            ));
        }
    }

    #[test]
    fn a_held_lease_without_renew_time_counts_from_acquire_time_or_is_expired() {
        let mut l = lease(Some(OTHER), Some(0), Some(15));
        let spec = l.spec.as_mut().unwrap();
        spec.renew_time = None;
        spec.acquire_time = Some(MicroTime(at(0)));
        assert!(matches!(decide(at(10), &l, ME), Action::Wait { .. }));
        l.spec.as_mut().unwrap().acquire_time = None;
        assert!(matches!(decide(at(10), &l, ME), Action::TakeOver { .. }));
    }

    #[test]
    fn claiming_another_holders_lease_sets_acquire_time_and_counts_a_transition() {
        let l = claimed(lease(Some(OTHER), Some(0), Some(60)), ME, at(100), 15);
        let spec = l.spec.unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some(ME));
        assert_eq!(spec.acquire_time, Some(MicroTime(at(100))));
        assert_eq!(spec.renew_time, Some(MicroTime(at(100))));
        assert_eq!(spec.lease_duration_seconds, Some(15));
        assert_eq!(spec.lease_transitions, Some(4));
    }

    #[test]
    fn renewing_our_own_lease_keeps_acquire_time_and_transitions() {
        let l = claimed(lease(Some(ME), Some(0), Some(15)), ME, at(2), 15);
        let spec = l.spec.unwrap();
        assert_eq!(spec.acquire_time, Some(MicroTime(at(-100))));
        assert_eq!(spec.renew_time, Some(MicroTime(at(2))));
        assert_eq!(spec.lease_transitions, Some(3));
    }

    #[test]
    fn releasing_clears_the_holder_so_the_lease_is_free_at_once() {
        let l = released(lease(Some(ME), Some(0), Some(15)), at(1));
        let spec = l.spec.as_ref().unwrap();
        assert_eq!(spec.holder_identity, None);
        assert_eq!(spec.acquire_time, None);
        assert_eq!(spec.lease_transitions, Some(3));
        assert_eq!(decide(at(1), &l, OTHER), Action::Acquire);
    }

    #[test]
    fn config_defaults_are_valid_and_bad_timings_are_rejected() {
        let ok = LeaseConfig::new("ns", "lease", "me");
        assert!(ok.validate().is_ok());
        assert_eq!(ok.lease_duration_seconds(), 15);

        let with = |f: fn(&mut LeaseConfig)| {
            let mut c = ok.clone();
            f(&mut c);
            c.validate()
        };
        assert!(with(|c| c.identity.clear()).is_err());
        assert!(with(|c| c.name.clear()).is_err());
        assert!(with(|c| c.retry_period = Duration::ZERO).is_err());
        assert!(with(|c| c.renew_deadline = c.retry_period).is_err());
        assert!(with(|c| c.lease_duration = c.renew_deadline).is_err());
        let err = with(|c| c.lease_duration = Duration::from_secs(5)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid leader election config: the lease duration must be longer than the renew deadline"
        );
    }

    #[test]
    fn a_fractional_lease_duration_is_rounded_up_to_whole_seconds() {
        let mut c = LeaseConfig::new("ns", "lease", "me");
        c.lease_duration = Duration::from_millis(2_500);
        assert_eq!(c.lease_duration_seconds(), 3);
    }

    #[test]
    fn the_leader_flag_turns_false_when_dropped() {
        let (tx, rx) = watch::channel(false);
        let flag = LeaderFlag(tx);
        flag.set(true);
        assert!(*rx.borrow());
        drop(flag);
        assert!(!*rx.borrow());
    }
}
