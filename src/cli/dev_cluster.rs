//! `ncp-pca-issuer dev-cluster` (feature `dev` only): a local control plane for development.

use crate::devcluster::{Cluster, ClusterOptions};

/// `dev-cluster`'s arguments.
#[derive(Debug, clap::Args)]
pub struct DevClusterArgs {
    /// Directory for certificates, kubeconfig, etcd data and logs (kept after exit when given).
    #[arg(long)]
    work_dir: Option<std::path::PathBuf>,
    /// Do not apply our CRDs.
    #[arg(long)]
    no_crds: bool,
    /// The cert-manager controller's `--kube-api-qps` (cert-manager's default: 50). Raise it to compare
    /// issuers on equal terms: with the default, cert-manager's own client is the bottleneck.
    #[arg(long, value_name = "QPS")]
    cert_manager_kube_api_qps: Option<f64>,
    /// The cert-manager controller's `--kube-api-burst` (cert-manager's default: 100).
    #[arg(long, value_name = "BURST")]
    cert_manager_kube_api_burst: Option<u32>,
}

/// Starts the control plane, prints how to use it, and stops it on SIGTERM or Ctrl-C.
///
/// # Errors
///
/// When the control plane cannot start or the CRDs cannot be applied.
pub async fn run(args: DevClusterArgs) -> anyhow::Result<()> {
    let mut options = ClusterOptions::from_env()?.with_cert_manager_client_limits(
        args.cert_manager_kube_api_qps,
        args.cert_manager_kube_api_burst,
    );
    if !args.no_crds {
        options.extra_crds.push(crate::api::crd_yaml()?);
    }
    if let Some(dir) = args.work_dir {
        options.work_dir = dir;
        options.remove_work_dir_on_exit = false;
    }
    let cluster = tokio::task::spawn_blocking(move || Cluster::start(&options)).await??;
    if !args.no_crds {
        cluster.apply_crds(&crate::api::crd_yaml()?).await?;
    }
    println!("export KUBECONFIG={}", cluster.kubeconfig_path().display());
    println!("export PATH={}:$PATH", cluster.bin_dir().display());
    eprintln!(
        "control plane running at {}; logs in {}/logs; Ctrl-C stops it",
        cluster.api_url(),
        cluster.work_dir().display()
    );
    super::runtime::wait_for_signal().await;
    eprintln!("stopping");
    tokio::task::spawn_blocking(move || drop(cluster)).await?;
    Ok(())
}
