//! The `ncp-pca-issuer` binary: parses arguments and hands over to the library.

use clap::{Parser, Subcommand};
use ncp_pca_issuer::{cli, telemetry};
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "ncp-pca-issuer",
    version,
    about = "cert-manager external issuer for NAVER Cloud Platform Private CA"
)]
struct Cli {
    /// Log format.
    #[arg(long, value_enum, default_value_t, global = true, env = "LOG_FORMAT")]
    log_format: telemetry::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the operator: the PrivateCA, ClusterPrivateCA and CertificateRequest controllers.
    Controller(ControllerArgs),
    /// Admin commands against a Private CA endpoint (or the emulator), JSON on stdout.
    Pca(cli::pca::PcaArgs),
    /// Serve a local emulator of the NCP Private CA API.
    Emulator(EmulatorArgs),
    /// Print the CustomResourceDefinitions as YAML.
    Crdgen,
    /// Remove our revocation finalizer from every CertificateRequest (before uninstalling; revokes
    /// nothing).
    RemoveFinalizers {
        /// Kubeconfig file (default: in-cluster configuration, then $KUBECONFIG / ~/.kube/config).
        #[arg(long)]
        kubeconfig: Option<std::path::PathBuf>,
    },
    /// Start a local control plane (etcd, kube-apiserver, kube-controller-manager, cert-manager) on
    /// 127.0.0.1 for development; stops on Ctrl-C.
    DevCluster(DevClusterArgs),
}

#[derive(Debug, clap::Args)]
struct ControllerArgs {
    /// Kubeconfig file (default: in-cluster configuration, then $KUBECONFIG / ~/.kube/config).
    #[arg(long)]
    kubeconfig: Option<std::path::PathBuf>,
    /// Namespace where ClusterPrivateCA credentials Secrets live (default: the controller's own
    /// namespace).
    #[arg(long, env = "CLUSTER_RESOURCE_NAMESPACE")]
    cluster_resource_namespace: Option<String>,
    /// Address of /livez, /readyz and /metrics.
    #[arg(long, default_value = "0.0.0.0:8080")]
    http_addr: std::net::SocketAddr,
    /// Elect a leader so that only one replica writes.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
    /// Namespace of the leader election Lease (default: the cluster resource namespace).
    #[arg(long)]
    leader_election_namespace: Option<String>,
    /// Name of the leader election Lease.
    #[arg(long, default_value = "ncp-pca-issuer")]
    leader_election_lease: String,
    /// CertificateRequests reconciled at once.
    #[arg(long, default_value_t = 8)]
    concurrency: u16,
    /// Seconds between health checks of a Ready issuer.
    #[arg(long, default_value_t = 300)]
    issuer_recheck_seconds: u64,
    /// Timeout of one NCP request, in seconds.
    #[arg(long, default_value_t = 30)]
    ncp_timeout_seconds: u64,
    /// Seconds a CertificateRequest keeps retrying retryable NCP failures before it fails.
    #[arg(long, default_value_t = 3600)]
    max_retry_seconds: u64,
}

#[derive(Debug, clap::Args)]
struct EmulatorArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8480")]
    listen: std::net::SocketAddr,
    /// Access key of the emulated account.
    #[arg(long, env = "NCLOUD_ACCESS_KEY", hide_env_values = true)]
    access_key: String,
    /// Secret key of the emulated account.
    #[arg(long, env = "NCLOUD_SECRET_KEY", hide_env_values = true)]
    secret_key: String,
    /// Access key of a read-only (NCP_PRIVATE_CA_VIEWER) sub account.
    #[arg(long, requires = "viewer_secret_key")]
    viewer_access_key: Option<String>,
    /// Secret key of the read-only sub account.
    #[arg(long, requires = "viewer_access_key")]
    viewer_secret_key: Option<String>,
    /// Keep CAs and certificates across restarts in this file (holds CA private keys; mode 0600).
    #[arg(long)]
    state_file: Option<std::path::PathBuf>,
    /// Serve the /_emulator/ fault-injection and counter endpoints (loopback listeners only).
    #[arg(long)]
    test_controls: bool,
    /// Most CAs at once (NCP: 10).
    #[arg(long, default_value_t = ncp_pca_issuer::emulator::DEFAULT_MAX_CAS)]
    max_cas: usize,
    /// Most certificates per CA (NCP: 30,000).
    #[arg(long, default_value_t = ncp_pca_issuer::emulator::DEFAULT_MAX_ISSUANCES_PER_CA)]
    max_issuances_per_ca: u64,
    /// Page size of Get CA List and Get End Cert List.
    #[arg(long, default_value_t = ncp_pca_issuer::emulator::DEFAULT_PAGE_SIZE)]
    page_size: usize,
    /// Base URL put into CA URLs, CRL distribution points and AIA (default: http://LISTEN).
    #[arg(long)]
    public_base_url: Option<String>,
    /// Accept only x-ncp-apigw-signature-v2 over the exact path and query (default: also -v1 and
    /// path-only signatures, as NAVER's SDKs sign).
    #[arg(long)]
    strict_signing: bool,
}

#[derive(Debug, clap::Args)]
struct DevClusterArgs {
    /// Directory for certificates, kubeconfig, etcd data and logs (kept after exit when given).
    #[arg(long)]
    work_dir: Option<std::path::PathBuf>,
    /// Do not apply our CRDs.
    #[arg(long)]
    no_crds: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::install_crypto_provider();
    match cli.command {
        Command::Emulator(args) => {
            telemetry::init(cli.log_format, "info");
            match emulator(args).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::RemoveFinalizers { kubeconfig } => {
            telemetry::init(cli.log_format, "warn");
            match remove_finalizers(kubeconfig).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Crdgen => match ncp_pca_issuer::api::crd_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: cannot render CRDs: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Controller(args) => {
            telemetry::init(cli.log_format, "info,kube=warn");
            match controller(args).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "controller stopped");
                    ExitCode::FAILURE
                }
            }
        }
        Command::DevCluster(args) => {
            telemetry::init(cli.log_format, "info");
            match dev_cluster(args).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Pca(args) => {
            telemetry::init(cli.log_format, "warn");
            match cli::pca::run(args).await {
                Ok(out) => {
                    print!("{out}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

async fn dev_cluster(args: DevClusterArgs) -> anyhow::Result<()> {
    use ncp_pca_issuer::devcluster::{Cluster, ClusterOptions};
    let mut options = ClusterOptions::from_env()?;
    if !args.no_crds {
        options.extra_crds.push(ncp_pca_issuer::api::crd_yaml()?);
    }
    if let Some(dir) = args.work_dir {
        options.work_dir = dir;
        options.remove_work_dir_on_exit = false;
    }
    let cluster = tokio::task::spawn_blocking(move || Cluster::start(options)).await??;
    if !args.no_crds {
        cluster
            .apply_crds(&ncp_pca_issuer::api::crd_yaml()?)
            .await?;
    }
    println!("export KUBECONFIG={}", cluster.kubeconfig_path().display());
    println!("export PATH={}:$PATH", cluster.bin_dir().display());
    eprintln!(
        "control plane running at {}; logs in {}/logs; Ctrl-C stops it",
        cluster.api_url(),
        cluster.work_dir().display()
    );
    wait_for_signal().await;
    eprintln!("stopping");
    tokio::task::spawn_blocking(move || drop(cluster)).await?;
    Ok(())
}

async fn kube_client(kubeconfig: Option<&std::path::Path>) -> anyhow::Result<kube::Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)?;
            kube::Config::from_custom_kubeconfig(
                kubeconfig,
                &kube::config::KubeConfigOptions::default(),
            )
            .await?
        }
        None => kube::Config::infer().await?,
    };
    Ok(kube::Client::try_from(config)?)
}

async fn remove_finalizers(kubeconfig: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    let client = kube_client(kubeconfig.as_deref()).await?;
    let released =
        ncp_pca_issuer::controller::certificate_request::revoke::remove_all_finalizers(&client)
            .await?;
    for name in &released {
        println!("released {name}");
    }
    eprintln!("{} CertificateRequest(s) released", released.len());
    Ok(())
}

async fn controller(args: ControllerArgs) -> anyhow::Result<()> {
    use ncp_pca_issuer::{controller, lease, metrics, server};
    use std::time::Duration;
    let client = kube_client(args.kubeconfig.as_deref()).await?;
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

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
    });

    let metrics = metrics::Metrics::new();
    let readiness = server::Readiness::new();
    let listener = tokio::net::TcpListener::bind(args.http_addr).await?;
    let state = server::ServerState {
        metrics: metrics.clone(),
        readiness: readiness.clone(),
    };
    let http = tokio::spawn(server::serve(listener, state, stopped()));

    let settings = controller::Settings {
        cluster_resource_namespace: crn.clone(),
        issuer_recheck_interval: Duration::from_secs(args.issuer_recheck_seconds),
        ncp_request_timeout: Duration::from_secs(args.ncp_timeout_seconds),
        max_retry_duration: Duration::from_secs(args.max_retry_seconds),
    };
    let ctx = controller::context(
        client.clone(),
        settings,
        metrics.clone(),
        Some(identity.clone()),
    );
    // Probes never depend on NCP; a follower is ready too (it serves probes and metrics).
    readiness.set_ready();
    let result = if args.leader_elect {
        let ns = args.leader_election_namespace.clone().unwrap_or(crn);
        let elector = lease::LeaderElector::new(
            client,
            lease::LeaseConfig::new(ns, args.leader_election_lease.clone(), identity),
        )?;
        let mut leader = elector.subscribe();
        let gauge = metrics.clone();
        tokio::spawn(async move {
            loop {
                gauge.set_leader(*leader.borrow_and_update());
                if leader.changed().await.is_err() {
                    gauge.set_leader(false);
                    return;
                }
            }
        });
        let concurrency = args.concurrency;
        elector
            .run(stopped(), move |leadership| async move {
                tracing::info!("leading: starting controllers");
                controller::run_all(
                    ctx,
                    concurrency,
                    async move { leadership.cancelled().await },
                )
                .await;
            })
            .await
            .map(|_| ())
            .map_err(anyhow::Error::from)
    } else {
        metrics.set_leader(true);
        controller::run_all(ctx, args.concurrency, stopped()).await;
        Ok(())
    };
    if result.is_err() {
        // Leadership lost: stop serving so the process exits and its pod restarts with a new elector.
        http.abort();
    }
    let _ = http.await;
    result
}

/// SIGTERM (Kubernetes) or Ctrl-C.
async fn wait_for_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

async fn emulator(args: EmulatorArgs) -> anyhow::Result<()> {
    use ncp_pca_issuer::emulator::{EmulatorConfig, serve_with_shutdown};
    use ncp_pca_issuer::ncp::Credentials;
    let mut config = EmulatorConfig::new(Credentials::new(args.access_key, args.secret_key));
    config.viewer_credentials = args
        .viewer_access_key
        .zip(args.viewer_secret_key)
        .map(|(ak, sk)| Credentials::new(ak, sk));
    config.state_file = args.state_file;
    config.test_controls = args.test_controls;
    config.max_cas = args.max_cas;
    config.max_issuances_per_ca = args.max_issuances_per_ca;
    config.page_size = args.page_size;
    config.public_base_url = args.public_base_url;
    config.strict_signing = args.strict_signing;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?;
    tracing::info!(listen = %listener.local_addr()?, test_controls = config.test_controls, "emulator serving");
    serve_with_shutdown(listener, config, wait_for_signal()).await?;
    Ok(())
}
