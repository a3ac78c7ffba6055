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
    /// Admin commands against a Private CA endpoint (or the emulator), JSON on stdout.
    Pca(cli::pca::PcaArgs),
    /// Print the CustomResourceDefinitions as YAML.
    Crdgen,
    /// Start a local control plane (etcd, kube-apiserver, kube-controller-manager, cert-manager) on
    /// 127.0.0.1 for development; stops on Ctrl-C.
    DevCluster(DevClusterArgs),
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
    tokio::signal::ctrl_c().await?;
    eprintln!("stopping");
    tokio::task::spawn_blocking(move || drop(cluster)).await?;
    Ok(())
}
