//! Leader election against a real kube-apiserver: exclusivity, hand-over on release, take-over after
//! expiry, stepping down when the lease is taken or deleted.

use crate::support;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams, PostParams};
use ncp_pca_issuer::lease::{LeaderElector, LeaseConfig, LeaseError, LossReason};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;

const LEASE_NAME: &str = "ncp-pca-issuer-test";
const LEASE_DURATION: Duration = Duration::from_secs(3);
const RENEW_DEADLINE: Duration = Duration::from_secs(2);
const RETRY_PERIOD: Duration = Duration::from_millis(500);
/// Room for API latency on a busy machine, on top of the protocol's own bounds.
const SLACK: Duration = Duration::from_secs(1);
/// How long to wait for a first leader.
const ELECTION_TIMEOUT: Duration = Duration::from_secs(15);
/// How often the exclusivity monitor looks at the candidates.
const MONITOR_INTERVAL: Duration = Duration::from_millis(5);

type RunResult = Result<Option<()>, LeaseError>;

fn config(ns: &str, identity: &str) -> LeaseConfig {
    LeaseConfig {
        lease_duration: LEASE_DURATION,
        renew_deadline: RENEW_DEADLINE,
        retry_period: RETRY_PERIOD,
        ..LeaseConfig::new(ns, LEASE_NAME, identity)
    }
}

/// Records which candidates are running leader work right now; more than one at once is a
/// violation, kept for the test to assert on.
#[derive(Clone, Default)]
struct Exclusive {
    working: Arc<Mutex<Vec<String>>>,
    violations: Arc<Mutex<Vec<String>>>,
}

struct Working {
    exclusive: Exclusive,
    identity: String,
}

impl Exclusive {
    fn enter(&self, identity: &str) -> Working {
        let mut working = self.working.lock().unwrap();
        working.push(identity.to_string());
        if working.len() > 1 {
            self.violation(format!("leader work running concurrently: {working:?}"));
        }
        Working {
            exclusive: self.clone(),
            identity: identity.to_string(),
        }
    }

    fn violation(&self, what: String) {
        self.violations.lock().unwrap().push(what);
    }

    fn working(&self) -> Vec<String> {
        self.working.lock().unwrap().clone()
    }

    fn assert_never_violated(&self) {
        let violations = self.violations.lock().unwrap();
        assert!(violations.is_empty(), "{violations:?}");
    }

    /// Flags any moment at which two candidates both say they lead.
    fn monitor(&self, flags: Vec<(String, watch::Receiver<bool>)>) -> JoinHandle<()> {
        let exclusive = self.clone();
        tokio::spawn(async move {
            loop {
                let leaders: Vec<_> = flags
                    .iter()
                    .filter(|(_, rx)| *rx.borrow())
                    .map(|(id, _)| id.clone())
                    .collect();
                if leaders.len() > 1 {
                    exclusive.violation(format!("two leaders at once: {leaders:?}"));
                }
                tokio::time::sleep(MONITOR_INTERVAL).await;
            }
        })
    }
}

impl Drop for Working {
    fn drop(&mut self) {
        let mut working = self.exclusive.working.lock().unwrap();
        working.retain(|id| *id != self.identity);
    }
}

struct Candidate {
    identity: String,
    is_leader: watch::Receiver<bool>,
    stop: CancellationToken,
    task: JoinHandle<RunResult>,
}

impl Candidate {
    fn start(client: &kube::Client, ns: &str, identity: &str, exclusive: &Exclusive) -> Self {
        let elector =
            LeaderElector::new(client.clone(), config(ns, identity)).expect("valid config");
        let is_leader = elector.subscribe();
        let stop = CancellationToken::new();
        let exclusive = exclusive.clone();
        let id = identity.to_string();
        let task = tokio::spawn(elector.run(stop.clone(), move |term| async move {
            let _working = exclusive.enter(&id);
            term.cancelled().await;
        }));
        Self {
            identity: identity.to_string(),
            is_leader,
            stop,
            task,
        }
    }

    fn is_leader(&self) -> bool {
        *self.is_leader.borrow()
    }

    fn flag(&self) -> (String, watch::Receiver<bool>) {
        (self.identity.clone(), self.is_leader.clone())
    }

    /// Waits for this candidate to lead; returns when it saw that.
    async fn wait_leader(&mut self, within: Duration) -> Instant {
        timeout(within, self.is_leader.wait_for(|leader| *leader))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{} did not become the leader within {within:?}",
                    self.identity
                )
            })
            .expect("elector alive");
        Instant::now()
    }

    /// Graceful stop: returns what `run` returned.
    async fn stop(self) -> RunResult {
        self.stop.cancel();
        timeout(RENEW_DEADLINE + SLACK * 5, self.task)
            .await
            .expect("run returns after shutdown")
            .expect("run does not panic")
    }
}

async fn lease(api: &Api<Lease>) -> Lease {
    api.get(LEASE_NAME).await.expect("lease")
}

fn holder(lease: &Lease) -> Option<String> {
    lease
        .spec
        .as_ref()
        .and_then(|s| s.holder_identity.clone())
        .filter(|h| !h.is_empty())
}

fn transitions(lease: &Lease) -> i32 {
    lease
        .spec
        .as_ref()
        .and_then(|s| s.lease_transitions)
        .unwrap_or(0)
}

fn renew_time(lease: &Lease) -> Timestamp {
    lease
        .spec
        .as_ref()
        .and_then(|s| s.renew_time.clone())
        .expect("renewTime")
        .0
}

fn acquire_time(lease: &Lease) -> Timestamp {
    lease
        .spec
        .as_ref()
        .and_then(|s| s.acquire_time.clone())
        .expect("acquireTime")
        .0
}

#[tokio::test]
async fn two_candidates_elect_exactly_one_leader_who_keeps_the_lease_while_renewing() {
    let client = support::client().await;
    let ns = support::namespace("lease-exclusive").await;
    let api: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let exclusive = Exclusive::default();
    // Each candidate talks to the API server through a proxy of its own, which shows it trying.
    let (proxy_a, proxy_b) = (
        Blackhole::start(support::cluster().api_url()).await,
        Blackhole::start(support::cluster().api_url()).await,
    );
    let a = Candidate::start(&proxy_a.client().await, &ns, "candidate-a", &exclusive);
    let b = Candidate::start(&proxy_b.client().await, &ns, "candidate-b", &exclusive);
    let monitor = exclusive.monitor(vec![a.flag(), b.flag()]);

    let deadline = Instant::now() + ELECTION_TIMEOUT;
    while !(a.is_leader() || b.is_leader()) {
        assert!(
            Instant::now() < deadline,
            "no leader within {ELECTION_TIMEOUT:?}"
        );
        tokio::time::sleep(MONITOR_INTERVAL).await;
    }
    let (leader, follower, follower_proxy) = if a.is_leader() {
        (a, b, &proxy_b)
    } else {
        (b, a, &proxy_a)
    };
    let first = lease(&api).await;
    assert_eq!(holder(&first).as_deref(), Some(leader.identity.as_str()));
    assert_eq!(
        transitions(&first),
        0,
        "a fresh lease has had no transition"
    );

    // Across two full lease durations (the follower would have taken over after one, had the
    // leader not renewed), and until the follower has provably kept trying (requests through its
    // proxy), the same candidate leads and the lease says so.
    let watch_until = Instant::now() + LEASE_DURATION * 2;
    let follower_sent = follower_proxy.sent();
    let tried = || follower_proxy.sent() >= follower_sent + 2;
    while Instant::now() < watch_until || !tried() {
        assert!(
            Instant::now() < watch_until + ELECTION_TIMEOUT,
            "{} sent no request while the other led",
            follower.identity
        );
        assert!(leader.is_leader(), "{} stepped down", leader.identity);
        assert!(!follower.is_leader(), "{} took over", follower.identity);
        let current = lease(&api).await;
        assert_eq!(holder(&current).as_deref(), Some(leader.identity.as_str()));
        assert_eq!(exclusive.working(), vec![leader.identity.clone()]);
        tokio::time::sleep(RETRY_PERIOD / 2).await;
    }
    let last = lease(&api).await;
    assert!(
        renew_time(&last) > renew_time(&first),
        "the leader renews the lease"
    );
    assert_eq!(transitions(&last), 0);
    assert_eq!(acquire_time(&last), acquire_time(&first));

    // A follower that is shut down never led; the leader returns its work's output and releases.
    assert!(matches!(follower.stop().await, Ok(None)));
    let leader_identity = leader.identity.clone();
    assert!(matches!(leader.stop().await, Ok(Some(()))));
    let released = lease(&api).await;
    assert_eq!(
        holder(&released),
        None,
        "{leader_identity} released the lease"
    );
    assert!(exclusive.working().is_empty());
    monitor.abort();
    exclusive.assert_never_violated();
}

#[tokio::test]
async fn when_the_leader_releases_on_graceful_stop_the_other_takes_over_within_a_couple_of_retry_periods()
 {
    let client = support::client().await;
    let ns = support::namespace("lease-release").await;
    let api: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let exclusive = Exclusive::default();
    let mut a = Candidate::start(&client, &ns, "candidate-a", &exclusive);
    a.wait_leader(ELECTION_TIMEOUT).await;
    // b talks to the API server through a proxy, which shows it trying.
    let proxy_b = Blackhole::start(support::cluster().api_url()).await;
    let mut b = Candidate::start(&proxy_b.client().await, &ns, "candidate-b", &exclusive);
    let monitor = exclusive.monitor(vec![a.flag(), b.flag()]);
    // Let b compete for a few rounds against a live leader first: at least four retry periods, and
    // until it has provably tried (requests through its proxy).
    let competing_until = Instant::now() + RETRY_PERIOD * 4;
    let b_sent = proxy_b.sent();
    while Instant::now() < competing_until || proxy_b.sent() < b_sent + 2 {
        assert!(
            Instant::now() < competing_until + ELECTION_TIMEOUT,
            "b sent no request while a led"
        );
        assert!(!b.is_leader(), "b took over a lease that a renews");
        tokio::time::sleep(MONITOR_INTERVAL).await;
    }

    assert!(matches!(a.stop().await, Ok(Some(()))));
    let released_at = Instant::now();
    let took_over_at = b.wait_leader(LEASE_DURATION * 2 + SLACK).await;
    let hand_over = took_over_at - released_at;
    // Waiting out the lease would take at least LEASE_DURATION (3 s); a release is seen at b's next
    // retry (at most 1.2 retry periods) plus one API round trip.
    assert!(
        hand_over < RETRY_PERIOD * 2 + SLACK,
        "b took {hand_over:?} to take over a released lease"
    );
    assert!(hand_over < LEASE_DURATION);

    let current = lease(&api).await;
    assert_eq!(holder(&current).as_deref(), Some("candidate-b"));
    assert_eq!(transitions(&current), 1);
    assert_eq!(exclusive.working(), vec!["candidate-b".to_string()]);
    assert!(matches!(b.stop().await, Ok(Some(()))));
    monitor.abort();
    exclusive.assert_never_violated();
}

#[tokio::test]
async fn when_the_leader_stops_renewing_the_other_takes_over_only_after_the_lease_duration() {
    let client = support::client().await;
    let ns = support::namespace("lease-expiry").await;
    let api: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let exclusive = Exclusive::default();
    let mut a = Candidate::start(&client, &ns, "candidate-a", &exclusive);
    a.wait_leader(ELECTION_TIMEOUT).await;
    let mut b = Candidate::start(&client, &ns, "candidate-b", &exclusive);
    let monitor = exclusive.monitor(vec![a.flag(), b.flag()]);

    // A crash, as far as the lease can tell: no more renewals, no release.
    a.task.abort();
    assert!((&mut a.task).await.expect_err("aborted").is_cancelled());
    let aborted_at = Instant::now();
    assert!(
        !a.is_leader(),
        "an aborted elector does not look like a leader"
    );
    let last_renewal = renew_time(&lease(&api).await);

    let took_over_at = b
        .wait_leader(LEASE_DURATION + RETRY_PERIOD * 3 + SLACK)
        .await;
    let current = lease(&api).await;
    assert_eq!(holder(&current).as_deref(), Some("candidate-b"));
    assert_eq!(transitions(&current), 1);
    // b decided at its own `acquireTime`; it must have waited out a's last renewal plus the lease.
    let waited = acquire_time(&current).duration_since(last_renewal);
    assert!(
        waited >= SignedDuration::try_from(LEASE_DURATION).unwrap(),
        "b took over {waited:?} after a's last renewal, before the lease duration"
    );
    // a's last renewal was sent about one retry period before the abort (two, allowing for a slow
    // round trip): taking over sooner would mean b did not wait out the lease.
    assert!(
        took_over_at - aborted_at + RETRY_PERIOD * 2 >= LEASE_DURATION,
        "b took over {:?} after a stopped",
        took_over_at - aborted_at
    );
    assert!(matches!(b.stop().await, Ok(Some(()))));
    monitor.abort();
    exclusive.assert_never_violated();
}

#[tokio::test]
async fn a_leader_whose_lease_is_taken_by_another_holder_steps_down_and_stops_its_work() {
    let client = support::client().await;
    let ns = support::namespace("lease-taken").await;
    let api: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let exclusive = Exclusive::default();
    let mut a = Candidate::start(&client, &ns, "candidate-a", &exclusive);
    a.wait_leader(ELECTION_TIMEOUT).await;

    let mut taken = lease(&api).await;
    let spec = taken.spec.as_mut().expect("spec");
    spec.holder_identity = Some("intruder".into());
    spec.renew_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
        Timestamp::now(),
    ));
    // Retry on conflict: a renews concurrently.
    let deadline = Instant::now() + ELECTION_TIMEOUT;
    loop {
        match api
            .replace(LEASE_NAME, &PostParams::default(), &taken)
            .await
        {
            Ok(_) => break,
            Err(kube::Error::Api(s)) if s.code == 409 && Instant::now() < deadline => {
                let fresh = lease(&api).await;
                taken.metadata.resource_version = fresh.metadata.resource_version;
            }
            Err(e) => panic!("cannot take the lease over: {e}"),
        }
    }

    let result = timeout(RETRY_PERIOD * 2 + SLACK, &mut a.task)
        .await
        .expect("a steps down at its next renewal")
        .expect("no panic");
    match result {
        Err(LeaseError::Lost {
            reason: LossReason::TakenOver { holder },
            ..
        }) => assert_eq!(holder, "intruder"),
        other => panic!("expected a loss to the intruder, got {other:?}"),
    }
    assert!(!a.is_leader());
    assert!(exclusive.working().is_empty(), "a's work was stopped");
    assert_eq!(holder(&lease(&api).await).as_deref(), Some("intruder"));
    exclusive.assert_never_violated();
}

#[tokio::test]
async fn a_leader_whose_lease_is_deleted_steps_down() {
    let client = support::client().await;
    let ns = support::namespace("lease-deleted").await;
    let api: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let exclusive = Exclusive::default();
    let mut a = Candidate::start(&client, &ns, "candidate-a", &exclusive);
    a.wait_leader(ELECTION_TIMEOUT).await;

    api.delete(LEASE_NAME, &DeleteParams::default())
        .await
        .expect("delete lease");
    let result = timeout(RETRY_PERIOD * 2 + SLACK, &mut a.task)
        .await
        .expect("a steps down at its next renewal")
        .expect("no panic");
    assert!(
        matches!(
            result,
            Err(LeaseError::Lost {
                reason: LossReason::Deleted,
                ..
            })
        ),
        "{result:?}"
    );
    assert!(!a.is_leader());
    assert!(exclusive.working().is_empty());
}

/// A TCP proxy to the API server that counts what its client sends and can be made to swallow
/// traffic: once `cut`, it holds every connection open and forwards nothing, so requests hang as they
/// do behind a broken network.
struct Blackhole {
    url: String,
    cut: watch::Sender<bool>,
    /// Reads from the client forwarded upstream: grows with every request the client sends.
    sent: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Blackhole {
    async fn start(upstream: &str) -> Self {
        let upstream_addr = upstream
            .trim_start_matches("https://")
            .trim_end_matches('/')
            .to_string();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let url = format!("https://{}", listener.local_addr().expect("proxy address"));
        let (cut, cut_rx) = watch::channel(false);
        let sent = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&sent);
        let task = tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    return;
                };
                let upstream_addr = upstream_addr.clone();
                let mut cut_rx = cut_rx.clone();
                let counter = Arc::clone(&counter);
                tokio::spawn(async move {
                    if *cut_rx.borrow() {
                        // Hold the connection, forward nothing.
                        std::future::pending::<()>().await;
                    }
                    let Ok(outbound) = TcpStream::connect(&upstream_addr).await else {
                        return;
                    };
                    let (mut from_client, mut to_client) = inbound.into_split();
                    let (mut from_server, mut to_server) = outbound.into_split();
                    let up = async move {
                        let mut buf = vec![0u8; 16 * 1024];
                        loop {
                            match from_client.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => {
                                    counter.fetch_add(1, Ordering::SeqCst);
                                    if to_server.write_all(&buf[..n]).await.is_err() {
                                        break;
                                    }
                                }
                            }
                        }
                        let _ = to_server.shutdown().await;
                    };
                    let down = async move {
                        let _ = tokio::io::copy(&mut from_server, &mut to_client).await;
                        let _ = to_client.shutdown().await;
                    };
                    tokio::select! {
                        _ = async { tokio::join!(up, down) } => {}
                        () = async { let _ = cut_rx.wait_for(|cut| *cut).await; } => {
                            // Keep both sockets open and silent.
                            std::future::pending::<()>().await;
                        }
                    }
                });
            }
        });
        Self {
            url,
            cut,
            sent,
            task,
        }
    }

    /// How many reads from its client the proxy has forwarded so far.
    fn sent(&self) -> u64 {
        self.sent.load(Ordering::SeqCst)
    }

    /// An admin client whose traffic goes through this proxy.
    async fn client(&self) -> kube::Client {
        let kubeconfig = kube::config::Kubeconfig::read_from(support::cluster().kubeconfig_path())
            .expect("kubeconfig");
        let mut config = kube::Config::from_custom_kubeconfig(
            kubeconfig,
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .expect("client config");
        config.cluster_url = self.url.parse().expect("proxy url");
        kube::Client::try_from(config).expect("proxied client")
    }

    fn cut(&self) {
        self.cut.send_replace(true);
    }
}

impl Drop for Blackhole {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn a_leader_that_cannot_reach_the_api_server_steps_down_within_the_renew_deadline_before_anyone_takes_over()
 {
    let client = support::client().await;
    let ns = support::namespace("lease-partition").await;
    let api: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let proxy = Blackhole::start(support::cluster().api_url()).await;
    let exclusive = Exclusive::default();
    let mut a = Candidate::start(&proxy.client().await, &ns, "candidate-a", &exclusive);
    a.wait_leader(ELECTION_TIMEOUT).await;
    let mut b = Candidate::start(&client, &ns, "candidate-b", &exclusive);
    let monitor = exclusive.monitor(vec![a.flag(), b.flag()]);
    // a leads and renews through the proxy while b competes.
    let before = renew_time(&lease(&api).await);
    support::eventually("a renewal through the proxy", LEASE_DURATION, || async {
        (renew_time(&lease(&api).await) > before).then_some(())
    })
    .await;

    proxy.cut();
    let cut_at = Instant::now();
    let last_renewal = renew_time(&lease(&api).await);
    let result = timeout(RENEW_DEADLINE + SLACK, &mut a.task)
        .await
        .expect("a steps down within the renew deadline")
        .expect("no panic");
    let stepped_down_at = Instant::now();
    assert!(
        matches!(
            result,
            Err(LeaseError::Lost {
                reason: LossReason::RenewDeadline(_),
                ..
            })
        ),
        "{result:?}"
    );
    assert!(!a.is_leader());
    assert!(exclusive.working().is_empty(), "a's work was stopped");
    assert!(
        !b.is_leader(),
        "b led before a stepped down ({:?} after the cut)",
        stepped_down_at - cut_at
    );

    b.wait_leader(LEASE_DURATION + RETRY_PERIOD * 3 + SLACK)
        .await;
    let current = lease(&api).await;
    assert_eq!(holder(&current).as_deref(), Some("candidate-b"));
    let waited = acquire_time(&current).duration_since(last_renewal);
    assert!(
        waited >= SignedDuration::try_from(LEASE_DURATION).unwrap(),
        "b took over {waited:?} after a's last renewal"
    );
    assert!(matches!(b.stop().await, Ok(Some(()))));
    monitor.abort();
    exclusive.assert_never_violated();
}
