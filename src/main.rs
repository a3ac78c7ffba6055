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
