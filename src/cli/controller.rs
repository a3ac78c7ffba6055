//! `ncp-pca-issuer controller`: the operator.
//!
//! Lifecycle, with one [`CancellationToken`] at the root (cancelled on SIGTERM / Ctrl-C):
//! 1. the HTTP server (`/livez`, `/readyz`, `/metrics`) starts; `/readyz` answers 503;
//! 2. the shared watches start in every replica ([`Watches`]); once each has listed its kind,
//!    `/readyz` answers 200;
//! 3. the controllers run on those watches: under a child token per leadership term when leader
//!    election is on (only the leader writes), or under a child of the root token when it is off;
//! 4. on shutdown the token stops the controllers (the Lease is then released), the watches and
//!    the HTTP server. A lost leadership ends the process with an error, so the pod restarts and
//!    rejoins as a fresh candidate.

use crate::watches::Watches;
use crate::{controller, lease, metrics, server};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long the HTTP server may take to finish its requests in flight at exit.
const HTTP_DRAIN: Duration = Duration::from_secs(5);

/// `controller`'s arguments.
#[derive(Debug, clap::Args)]
pub struct ControllerArgs {
    /// Kubeconfig file (default: in-cluster configuration, then $KUBECONFIG / ~/.kube/config).
    #[arg(long)]
    kubeconfig: Option<std::path::PathBuf>,
    /// Namespace where ClusterPrivateCA credentials Secrets live (default: the controller's own
    /// namespace).
    #[arg(long, env = "CLUSTER_RESOURCE_NAMESPACE")]
    cluster_resource_namespace: Option<String>,
    /// Address of /livez, /readyz and /metrics (the kubelet probes the pod's IP: keep it reachable).
    #[arg(long, default_value = "0.0.0.0:8080")]
    http_addr: std::net::SocketAddr,
    /// Serve /metrics only to bearer tokens the API server authenticates (TokenReview) and allows
    /// `get` on the non-resource URL /metrics (SubjectAccessReview); /livez and /readyz stay open.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    metrics_auth: bool,
    /// Elect a leader so that only one replica writes.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
    /// Namespace of the leader election Lease (default: the cluster resource namespace).
    #[arg(long)]
    leader_election_namespace: Option<String>,
    /// Name of the leader election Lease.
    #[arg(long, default_value = "ncp-pca-issuer")]
    leader_election_lease: String,
    /// Seconds other replicas wait after the leader's last renewal before taking over the Lease.
    #[arg(long, default_value_t = lease::DEFAULT_LEASE_DURATION.as_secs())]
    leader_election_lease_duration_seconds: u64,
    /// Seconds the leader keeps failing to renew before it steps down (less than the lease
    /// duration).
    #[arg(long, default_value_t = lease::DEFAULT_RENEW_DEADLINE.as_secs())]
    leader_election_renew_deadline_seconds: u64,
    /// Seconds between renewals, and between attempts to acquire the Lease (less than the renew
    /// deadline).
    #[arg(long, default_value_t = lease::DEFAULT_RETRY_PERIOD.as_secs())]
    leader_election_retry_period_seconds: u64,
    /// CertificateRequests reconciled at once (the workers the fairness shares are taken of).
    #[arg(long, default_value_t = controller::DEFAULT_WORKERS)]
    concurrency: u16,
    /// Share of the workers one issuer may hold with NCP calls, in percent (1-100); a request whose
    /// issuer is at its share is requeued without holding a worker.
    #[arg(long, default_value_t = controller::fairness::DEFAULT_ISSUER_SHARE_PERCENT,
          value_parser = clap::value_parser!(u8).range(1..=100))]
    issuer_share_percent: u8,
    /// Share of the workers the issuers of one user-set endpoint may hold, in percent (1-100; NAVER's
    /// own endpoints are not bounded per endpoint).
    #[arg(long, default_value_t = controller::fairness::DEFAULT_ENDPOINT_SHARE_PERCENT,
          value_parser = clap::value_parser!(u8).range(1..=100))]
    endpoint_share_percent: u8,
    /// Largest NCP answer read, in bytes; a longer answer is cut off while it is read.
    #[arg(long, default_value_t = crate::ncp::client::DEFAULT_MAX_ANSWER_BYTES)]
    ncp_max_answer_bytes: usize,
    /// Seconds an issued certificate's validity may start in the future (NCP's clock ahead of ours)
    /// and still be accepted; beyond that the request retries (it is never failed for it).
    #[arg(long, default_value_t = controller::DEFAULT_CLOCK_SKEW_TOLERANCE.as_secs())]
    clock_skew_tolerance_seconds: u64,
    /// Seconds between health checks of a Ready issuer.
    #[arg(long, default_value_t = 300)]
    issuer_recheck_seconds: u64,
    /// Timeout of one NCP request, in seconds.
    #[arg(long, default_value_t = 30)]
    ncp_timeout_seconds: u64,
    /// Seconds a CertificateRequest keeps retrying retryable NCP failures before it fails.
    #[arg(long, default_value_t = 3600)]
    max_retry_seconds: u64,
    /// NCP's cap of issuances per CA: issuers warn at 80 % and 95 % of it and stop at it (lower
    /// it only for an emulator started with a lower --max-issuances-per-ca).
    #[arg(long, default_value_t = controller::issuer::NCP_SIGNING_LIMIT)]
    signing_limit: i64,
    /// Issuers warn (Headroom=False, a Warning event) when their CA or intermediate has fewer
    /// days than this left.
    #[arg(long, default_value_t = 30)]
    expiry_warning_days: u64,
}

/// Runs the operator until SIGTERM / Ctrl-C, or until leadership is lost.
///
/// # Errors
///
/// When the client or the HTTP listener cannot be set up, the leader election config is invalid,
/// or leadership was lost.
pub async fn run(args: ControllerArgs) -> anyhow::Result<()> {
    let client = super::runtime::kube_client(args.kubeconfig.as_deref()).await?;
    let crn = args
        .cluster_resource_namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_string());
    let identity = format!(
        "{}_{:08x}",
        std::env::var("POD_NAME")
            .or_else(|_| std::env::var("HOSTNAME"))
            .unwrap_or_else(|_| "ncp-pca-issuer".into()),
        rand::random::<u32>()
    );
    tracing::info!(cluster_resource_namespace = %crn, identity = %identity, "starting");
    let shutdown = super::runtime::cancelled_on_signal();

    let metrics = metrics::Metrics::new();
    let readiness = server::Readiness::new();
    let listener = tokio::net::TcpListener::bind(args.http_addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {} (--http-addr): {e}", args.http_addr))?;
    let state = server::ServerState {
        metrics: metrics.clone(),
        readiness: readiness.clone(),
        metrics_auth: args
            .metrics_auth
            .then(|| server::MetricsAuth::kubernetes(client.clone())),
    };
    let http = tokio::spawn(server::serve(
        listener,
        state,
        shutdown.clone().cancelled_owned(),
    ));

    let watches = Arc::new(Watches::start(&client, &shutdown));
    tokio::spawn(ready_when_synced(
        watches.clone(),
        readiness,
        shutdown.clone(),
    ));

    let settings = controller::Settings {
        cluster_resource_namespace: crn.clone(),
        issuer_recheck_interval: Duration::from_secs(args.issuer_recheck_seconds),
        ncp_request_timeout: Duration::from_secs(args.ncp_timeout_seconds),
        max_retry_duration: Duration::from_secs(args.max_retry_seconds),
        signing_limit: args.signing_limit,
        expiry_warning: Duration::from_secs(args.expiry_warning_days.saturating_mul(86_400)),
        ncp_max_answer_bytes: args.ncp_max_answer_bytes,
        workers: args.concurrency,
        issuer_share_percent: args.issuer_share_percent,
        endpoint_share_percent: args.endpoint_share_percent,
        clock_skew_tolerance: Duration::from_secs(args.clock_skew_tolerance_seconds),
    };
    let ctx = controller::context(
        client.clone(),
        settings,
        metrics.clone(),
        Some(identity.clone()),
    );
    let concurrency = args.concurrency;
    let result = if args.leader_elect {
        let ns = args.leader_election_namespace.clone().unwrap_or(crn);
        let config = lease::LeaseConfig {
            lease_duration: Duration::from_secs(args.leader_election_lease_duration_seconds),
            renew_deadline: Duration::from_secs(args.leader_election_renew_deadline_seconds),
            retry_period: Duration::from_secs(args.leader_election_retry_period_seconds),
            ..lease::LeaseConfig::new(ns, args.leader_election_lease.clone(), identity)
        };
        let elector = lease::LeaderElector::new(client, config)?;
        tokio::spawn(follow_leadership(elector.subscribe(), metrics));
        elector
            .run(shutdown.clone(), move |term| async move {
                tracing::info!("leading: starting controllers");
                controller::run_all(ctx, &watches, concurrency, term).await;
            })
            .await
            .map(drop)
            .map_err(anyhow::Error::from)
    } else {
        metrics.set_leader(true);
        controller::run_all(ctx, &watches, concurrency, shutdown.child_token()).await;
        Ok(())
    };
    // However the controllers ended, everything else stops too.
    shutdown.cancel();
    match tokio::time::timeout(HTTP_DRAIN, http).await {
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "http server failed"),
        Ok(_) => {}
        Err(_) => tracing::warn!(timeout = ?HTTP_DRAIN, "http server did not drain in time"),
    }
    result
}

/// Marks the process ready once every watch has listed its kind (see [`server`]).
async fn ready_when_synced(
    watches: Arc<Watches>,
    readiness: server::Readiness,
    shutdown: CancellationToken,
) {
    tokio::select! {
        () = watches.synced() => {
            if !shutdown.is_cancelled() {
                tracing::info!("watches synced: ready");
                readiness.set_ready();
            }
        }
        () = shutdown.cancelled() => {}
    }
}

/// Keeps the `leader` gauge equal to the elector's flag.
async fn follow_leadership(
    mut leader: tokio::sync::watch::Receiver<bool>,
    metrics: metrics::Metrics,
) {
    loop {
        metrics.set_leader(*leader.borrow_and_update());
        if leader.changed().await.is_err() {
            metrics.set_leader(false);
            return;
        }
    }
}
