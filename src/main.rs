//! The `ncp-pca-issuer` binary: parses arguments, runs the subcommand, prints its error.

use clap::Parser as _;
use ncp_pca_issuer::cli::{self, Cli};
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    match cli::run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
