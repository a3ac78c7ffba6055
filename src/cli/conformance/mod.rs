//! `ncp-pca-issuer pca conformance`: checks an NCP Private CA endpoint (the real service, or our
//! emulator) against what our client relies on and what our emulator assumes, so the first user with
//! an NCP account can settle every guess the emulator had to make (listed with the check that settles
//! each in `crate::emulator`'s deviations list).
//!
//! Read-only by default: Get CA List, the same call signed the four ways clients sign, then Get CA,
//! Get CA Chain, Get CA CRL, Get CRL Config, Get CA User List, Get End Cert List and Get End Cert on
//! one CA. `--write` (confirmed, or `--yes`) adds the checks that change something, on a throwaway
//! root CA that is deleted at the end (see [`write`]). Each call is one section of the report (our
//! expectation, the answer, a verdict per check); the command succeeds only when nothing deviates.

mod certs;
mod errors;
mod expect;
mod probe;
mod read;
pub mod report;
mod shape;
mod write;

use crate::ncp::{ClientConfig, NcpError};
use report::Report;

/// `pca conformance`'s own arguments (the endpoint and credentials are `pca`'s).
#[derive(Debug, clap::Args)]
pub struct ConformanceArgs {
    /// The CA the read-only checks run on (default: the first ACTIVE CA of Get CA List).
    #[arg(long)]
    pub ca_tag: Option<String>,
    /// Also run the checks that change something, on a throwaway root CA (alias `ncpconf…`, 4 days)
    /// created for them and deleted at the end.
    #[arg(long)]
    pub write: bool,
    /// With --write: do not ask for confirmation.
    #[arg(long, requires = "write")]
    pub yes: bool,
}

/// How the report is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A table per operation.
    Table,
    /// JSON, with the raw answers (certificates and keys redacted).
    Json,
    /// The same as YAML.
    Yaml,
}

/// Why the conformance run could not be made (a run that finds deviations is not an error: its
/// report says so).
#[derive(Debug, thiserror::Error)]
pub enum ConformanceError {
    /// The endpoint or the CA bundle is unusable.
    #[error(transparent)]
    Client(#[from] NcpError),
    /// `--write` was not confirmed.
    #[error("--write not confirmed: nothing was created (pass --yes to skip the question)")]
    NotConfirmed,
    /// The confirmation could not be read.
    #[error("cannot read the confirmation from stdin: {0}")]
    Confirm(std::io::Error),
    /// The report could not be encoded.
    #[error("cannot encode the report: {0}")]
    Encode(String),
}

/// A finished run: the report and its printed form.
#[derive(Debug)]
pub struct Outcome {
    /// The report.
    pub report: Report,
    /// What to print.
    pub text: String,
}

/// Asks on stderr whether to go on with `--write`; reads one line of stdin.
async fn confirm(endpoint: &str, access_key: &str) -> Result<(), ConformanceError> {
    eprint!(
        "--write creates a throwaway root CA (alias {}…, {} days) in the account of access key {access_key} at {endpoint}, \
         signs two certificates with it, revokes one, changes its CRL, OCSP and status settings, and deletes it.\n\
         Type yes to go on: ",
        write::ALIAS_PREFIX,
        write::CA_DAYS
    );
    let line = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    })
    .await
    .map_err(|e| ConformanceError::Confirm(std::io::Error::other(e)))?
    .map_err(ConformanceError::Confirm)?;
    if matches!(line.trim().to_ascii_lowercase().as_str(), "yes" | "y") {
        Ok(())
    } else {
        Err(ConformanceError::NotConfirmed)
    }
}

/// Runs the checks against the endpoint of `config`.
///
/// # Errors
/// When the endpoint is unusable, `--write` is not confirmed, or the report cannot be encoded.
pub async fn run(
    config: &ClientConfig,
    args: &ConformanceArgs,
    format: Format,
) -> Result<Outcome, ConformanceError> {
    let probe = probe::Probe::new(config)?;
    let endpoint = probe.base_url().to_string();
    if args.write && !args.yes {
        confirm(&endpoint, &config.credentials.access_key).await?;
    }
    let mut sections = Vec::new();
    let (list_section, list) = read::ca_list(&probe).await;
    sections.push(list_section);
    sections.push(read::signing_variants(&probe).await);
    match read::pick_target(args.ca_tag.as_deref(), list.as_ref()) {
        Some(tag) => sections.extend(read::per_ca(&probe, &tag, "").await),
        None => {
            let mut s = report::Section::new("target", "The CA of the read-only checks");
            s.push(report::Row::new(
                "ca",
                "--ca-tag, or an ACTIVE CA in Get CA List",
                "no ACTIVE CA listed: the per-CA read-only checks did not run (pass --ca-tag, or --write)",
                report::Verdict::Skipped,
            ));
            sections.push(s);
        }
    }
    let mut cleanup = None;
    if args.write {
        let (write_sections, left) = write::run(&probe).await;
        sections.extend(write_sections);
        cleanup = left;
    }
    let mode = if args.write { "write" } else { "read-only" };
    let report = Report::new(endpoint, mode, sections, cleanup);
    let text = match format {
        Format::Table => report.to_table(),
        Format::Json => {
            serde_json::to_string_pretty(&report)
                .map_err(|e| ConformanceError::Encode(e.to_string()))?
                + "\n"
        }
        Format::Yaml => {
            serde_saphyr::to_string(&report).map_err(|e| ConformanceError::Encode(e.to_string()))?
        }
    };
    Ok(Outcome { report, text })
}
