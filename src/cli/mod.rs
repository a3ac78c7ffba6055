//! The command line: every subcommand's arguments and what it runs, so `main.rs` only parses, runs
//! and prints one error.

pub mod conformance;
pub mod controller;
#[cfg(feature = "dev")]
pub mod dev_cluster;
pub mod emulator;
pub mod migrate;
pub mod pca;
mod runtime;

use crate::telemetry;
use clap::{Parser, Subcommand};

/// `ncp-pca-issuer`'s arguments.
#[derive(Debug, Parser)]
#[command(
    name = "ncp-pca-issuer",
    version,
    about = "cert-manager external issuer for NAVER Cloud Platform Private CA"
)]
pub struct Cli {
    /// Log format.
    #[arg(long, value_enum, default_value_t, global = true, env = "LOG_FORMAT")]
    log_format: telemetry::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the operator: the PrivateCA, ClusterPrivateCA and CertificateRequest controllers.
    Controller(controller::ControllerArgs),
    /// Admin commands against a Private CA endpoint (or the emulator), JSON on stdout.
    Pca(pca::PcaArgs),
    /// Serve a local emulator of the NCP Private CA API.
    Emulator(emulator::EmulatorArgs),
    /// Print the CustomResourceDefinitions as YAML.
    Crdgen,
    /// Print (or `--apply`) the PrivateCA/ClusterPrivateCA equivalents of NAVER's issuers, and the
    /// lines that re-point Certificates and Ingresses.
    Migrate(migrate::MigrateArgs),
    /// Remove our revocation finalizer from every CertificateRequest (before uninstalling; revokes
    /// nothing).
    RemoveFinalizers {
        /// Kubeconfig file (default: in-cluster configuration, then $KUBECONFIG / ~/.kube/config).
        #[arg(long)]
        kubeconfig: Option<std::path::PathBuf>,
    },
    /// Start a local control plane (etcd, kube-apiserver, kube-controller-manager, cert-manager) on
    /// 127.0.0.1 for development; stops on Ctrl-C.
    #[cfg(feature = "dev")]
    DevCluster(dev_cluster::DevClusterArgs),
}

/// Runs the parsed command line (after installing logging and the crypto provider).
///
/// # Errors
///
/// Whatever stopped the subcommand, for `main` to print.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    telemetry::install_crypto_provider();
    let log = |default_filter| telemetry::init(cli.log_format, default_filter);
    match cli.command {
        Command::Controller(args) => {
            log("info,kube=warn");
            controller::run(args).await
        }
        Command::Pca(args) => {
            log("warn");
            // The admin commands' errors read as they are, without a cause chain.
            let out = match pca::run(args).await {
                Ok(out) => out,
                // A report that does not conform is printed as one that does; the status says it.
                Err(pca::PcaError::Nonconformant { output, summary }) => {
                    print!("{output}");
                    return Err(anyhow::Error::msg(summary));
                }
                Err(e) => return Err(anyhow::Error::msg(e.to_string())),
            };
            print!("{out}");
            Ok(())
        }
        Command::Emulator(args) => {
            log("info");
            emulator::run(args).await
        }
        Command::Migrate(args) => {
            log("warn");
            let out = migrate::run(args)
                .await
                .map_err(|e| anyhow::Error::msg(e.to_string()))?;
            print!("{out}");
            Ok(())
        }
        Command::Crdgen => {
            let yaml =
                crate::api::crd_yaml().map_err(|e| anyhow::anyhow!("cannot render CRDs: {e}"))?;
            print!("{yaml}");
            Ok(())
        }
        Command::RemoveFinalizers { kubeconfig } => {
            log("warn");
            remove_finalizers(kubeconfig).await
        }
        #[cfg(feature = "dev")]
        Command::DevCluster(args) => {
            log("info");
            dev_cluster::run(args).await
        }
    }
}

async fn remove_finalizers(kubeconfig: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    let client = runtime::kube_client(kubeconfig.as_deref()).await?;
    let released =
        crate::controller::certificate_request::revoke::remove_all_finalizers(&client).await?;
    for name in &released {
        println!("released {name}");
    }
    eprintln!("{} CertificateRequest(s) released", released.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    fn has_subcommand(name: &str) -> bool {
        Cli::command()
            .get_subcommands()
            .any(|c| c.get_name() == name)
    }

    #[test]
    fn parsed_arguments_never_show_a_secret_key_in_debug_output() {
        for args in [
            &[
                "ncp-pca-issuer",
                "emulator",
                "--access-key",
                "ak",
                "--secret-key",
                "s3cr3t-emu",
            ][..],
            &[
                "ncp-pca-issuer",
                "emulator",
                "--access-key",
                "ak",
                "--secret-key",
                "x",
                "--viewer-access-key",
                "vk",
                "--viewer-secret-key",
                "s3cr3t-viewer",
            ][..],
            &[
                "ncp-pca-issuer",
                "pca",
                "--secret-key",
                "s3cr3t-pca",
                "list",
            ][..],
        ] {
            let cli = Cli::try_parse_from(args).expect("parses");
            let shown = format!("{cli:?}");
            assert!(!shown.contains("s3cr3t"), "{shown}");
            assert!(shown.contains("<redacted>"), "{shown}");
        }
    }

    #[test]
    fn the_arguments_are_consistent() {
        Cli::command().debug_assert();
        assert!(has_subcommand("controller"));
    }

    #[cfg(not(feature = "dev"))]
    #[test]
    fn without_the_dev_feature_there_is_no_dev_cluster_subcommand() {
        assert!(!has_subcommand("dev-cluster"));
        assert!(
            Cli::try_parse_from(["ncp-pca-issuer", "dev-cluster"]).is_err(),
            "dev-cluster parses"
        );
    }

    #[cfg(feature = "dev")]
    #[test]
    fn with_the_dev_feature_there_is_a_dev_cluster_subcommand() {
        assert!(has_subcommand("dev-cluster"));
    }
}
