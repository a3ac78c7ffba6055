//! `ncp-pca-issuer pca …`: a thin admin command per client operation, JSON on stdout.

use super::conformance::{self, ConformanceArgs};
use crate::ncp::types::{CaDetail, CaStatus, CaType, KeyType, Period, X509Parameters};
use crate::ncp::{
    CallObserver, Client, ClientConfig, Credentials, NcpError, NewCa, Operation, PUBLIC_ENDPOINT,
    RetryPolicy, SecretKey,
};
use clap::{Args, Subcommand, ValueEnum};
use serde::Serialize;
use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Connection options shared by every `pca` command.
#[derive(Debug, Args)]
pub struct PcaArgs {
    /// Private CA endpoint (public, gov, or the emulator's URL).
    #[arg(long, env = "NCP_PCA_ENDPOINT", default_value = PUBLIC_ENDPOINT, global = true)]
    pub endpoint: String,
    /// NCP access key.
    #[arg(long, env = "NCLOUD_ACCESS_KEY", global = true, hide_env_values = true)]
    pub access_key: Option<String>,
    /// NCP secret key (prefer the environment variable: flags show up in process lists).
    #[arg(long, env = "NCLOUD_SECRET_KEY", global = true, hide_env_values = true)]
    pub secret_key: Option<SecretKey>,
    /// Extra PEM trust anchors for the endpoint's TLS certificate.
    #[arg(long, global = true)]
    pub ca_bundle: Option<PathBuf>,
    /// Timeout of one request, in seconds (at least 1).
    #[arg(long, default_value_t = 30, global = true, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout_secs: u64,
    /// Print PEM instead of JSON for commands that return certificates, chains, CRLs or CSRs.
    #[arg(long, global = true)]
    pub pem: bool,
    /// Output format. `table` is for `list` (its default on a terminal); elsewhere JSON is the default.
    #[arg(short = 'o', long = "output", value_enum, global = true)]
    pub output: Option<OutputFormat>,
    /// The operation.
    #[command(subcommand)]
    pub command: PcaCommand,
}

/// How to print an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// One line per CA (`list` only).
    Table,
    /// Pretty-printed JSON.
    Json,
    /// YAML.
    Yaml,
}

/// Key types, as accepted on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum KeyTypeArg {
    /// RSA 2048.
    #[value(name = "RSA2048")]
    Rsa2048,
    /// RSA 4096.
    #[value(name = "RSA4096")]
    Rsa4096,
    /// EC P-256.
    #[value(name = "EC256")]
    Ec256,
    /// EC P-521.
    #[value(name = "EC521")]
    Ec521,
}

impl From<KeyTypeArg> for KeyType {
    fn from(k: KeyTypeArg) -> Self {
        match k {
            KeyTypeArg::Rsa2048 => Self::Rsa2048,
            KeyTypeArg::Rsa4096 => Self::Rsa4096,
            KeyTypeArg::Ec256 => Self::Ec256,
            KeyTypeArg::Ec521 => Self::Ec521,
        }
    }
}

/// Subject fields for `create` and `issue`.
#[derive(Debug, Args)]
pub struct SubjectArgs {
    /// Common name.
    #[arg(long)]
    pub common_name: String,
    /// DNS names or e-mail addresses, comma-separated.
    #[arg(long)]
    pub alt_name: Option<String>,
    /// IP addresses, comma-separated.
    #[arg(long)]
    pub ip: Option<String>,
    /// Country.
    #[arg(long)]
    pub country: Option<String>,
    /// State or province.
    #[arg(long)]
    pub state_province: Option<String>,
    /// Locality.
    #[arg(long)]
    pub locality: Option<String>,
    /// Organization.
    #[arg(long)]
    pub organization: Option<String>,
    /// Organizational unit.
    #[arg(long)]
    pub organization_unit: Option<String>,
}

impl From<SubjectArgs> for X509Parameters {
    fn from(s: SubjectArgs) -> Self {
        Self {
            common_name: Some(s.common_name),
            alt_name: s.alt_name,
            ip: s.ip,
            country: s.country,
            state_province: s.state_province,
            locality: s.locality,
            organization: s.organization,
            organization_unit: s.organization_unit,
            ..Self::default()
        }
    }
}

/// One command per operation.
#[derive(Debug, Subcommand)]
pub enum PcaCommand {
    /// Get CA List (all pages unless --page is given).
    List {
        /// Only this page (1-based).
        #[arg(long)]
        page: Option<u32>,
    },
    /// Get CA.
    Get {
        /// The CA's tag.
        ca_tag: String,
    },
    /// Create CA: a root, an intermediate under --issuer-tag, or (with --sub alone) a PENDING intermediate.
    Create {
        /// Name, 3-15 characters.
        #[arg(long)]
        alias: String,
        /// Create an intermediate (PRIVATE_SUB) instead of a root.
        #[arg(long)]
        sub: bool,
        /// Parent CA of an intermediate.
        #[arg(long, requires = "sub")]
        issuer_tag: Option<String>,
        /// Key type.
        #[arg(long, value_enum, default_value = "EC256")]
        key_type: KeyTypeArg,
        /// Validity in days (1-3650) or MAX.
        #[arg(long, default_value = "MAX", value_parser = parse_period)]
        period: Period,
        /// Memo.
        #[arg(long)]
        memo: Option<String>,
        /// Subject.
        #[command(flatten)]
        subject: SubjectArgs,
    },
    /// Update CA: status and/or memo.
    Update {
        /// The CA's tag.
        ca_tag: String,
        /// ACTIVE, DEACTIVATED or DESTROYING.
        #[arg(long)]
        status: Option<String>,
        /// Memo.
        #[arg(long)]
        memo: Option<String>,
    },
    /// Delete CA (only a DESTROYING one).
    Delete {
        /// The CA's tag.
        ca_tag: String,
    },
    /// Get CA Chain.
    Chain {
        /// The CA's tag.
        ca_tag: String,
    },
    /// Get CA CRL.
    Crl {
        /// The CA's tag.
        ca_tag: String,
    },
    /// Rotate CRL.
    RotateCrl {
        /// The CA's tag.
        ca_tag: String,
    },
    /// Get CRL Config, or Update CRL Config with --expiry.
    CrlConfig {
        /// The CA's tag.
        ca_tag: String,
        /// New CRL renewal period in days (at least 3).
        #[arg(long)]
        expiry: Option<u32>,
    },
    /// Trim CA: drop expired certificates.
    Trim {
        /// The CA's tag.
        ca_tag: String,
    },
    /// Sign End Csr, or Sign Sub Csr with --sub.
    Sign {
        /// The CA's tag.
        ca_tag: String,
        /// PEM CSR file (`-` for stdin).
        #[arg(long)]
        csr: PathBuf,
        /// Validity in days (or MAX for end certificates).
        #[arg(long, value_parser = parse_period)]
        period: Option<Period>,
        /// Sign an intermediate CA certificate (Sign Sub Csr).
        #[arg(long)]
        sub: bool,
    },
    /// Issue End Cert: the service generates the key (printed once, on stdout).
    Issue {
        /// The CA's tag.
        ca_tag: String,
        /// Key type.
        #[arg(long, value_enum, default_value = "EC256")]
        key_type: KeyTypeArg,
        /// Validity in days (1-3650) or MAX.
        #[arg(long, default_value = "30", value_parser = parse_period)]
        period: Period,
        /// Subject.
        #[command(flatten)]
        subject: SubjectArgs,
    },
    /// Get End Cert.
    Cert {
        /// The CA's tag.
        ca_tag: String,
        /// Colon-hex serial.
        serial_no: String,
    },
    /// Get End Cert List (all pages unless --page is given).
    Certs {
        /// The CA's tag.
        ca_tag: String,
        /// Only this page (1-based).
        #[arg(long)]
        page: Option<u32>,
    },
    /// Revoke End Cert.
    Revoke {
        /// The CA's tag.
        ca_tag: String,
        /// Colon-hex serial.
        serial_no: String,
    },
    /// Get CA User List.
    Users {
        /// The CA's tag.
        ca_tag: String,
    },
    /// Add CA User.
    AddUser {
        /// The CA's tag.
        ca_tag: String,
        /// Sub-account id (36 characters).
        id_no: String,
    },
    /// Delete CA User.
    DeleteUser {
        /// The CA's tag.
        ca_tag: String,
        /// Sub-account id.
        id_no: String,
    },
    /// Create OCSP: set the OCSP responder URL.
    Ocsp {
        /// The CA's tag.
        ca_tag: String,
        /// Responder URL.
        #[arg(long)]
        url: String,
    },
    /// Delete OCSP.
    DeleteOcsp {
        /// The CA's tag.
        ca_tag: String,
    },
    /// Get Sub CSR of a PENDING intermediate.
    SubCsr {
        /// The CA's tag.
        ca_tag: String,
    },
    /// Activate Sub CA with its signed certificate and the signer's chain.
    Activate {
        /// The CA's tag.
        ca_tag: String,
        /// PEM certificate file.
        #[arg(long)]
        cert: PathBuf,
        /// PEM chain file of the signer.
        #[arg(long)]
        chain: PathBuf,
    },
    /// Check the endpoint against what our client relies on and our emulator assumes: a table per
    /// operation (or `-o json` to attach to a bug report); exits non-zero when anything deviates.
    Conformance(ConformanceArgs),
}

fn parse_period(s: &str) -> Result<Period, String> {
    Period::parse(s).ok_or_else(|| format!("{s:?} is not a number of days or MAX"))
}

/// Why a `pca` command failed.
#[derive(Debug, thiserror::Error)]
pub enum PcaError {
    /// The NCP call failed.
    #[error(transparent)]
    Ncp(#[from] NcpError),
    /// Every attempt of the call timed out.
    #[error("{source}; gave up after {attempts} attempt(s) in {total_ms} ms in all")]
    TimedOut {
        /// The last attempt's timeout.
        source: NcpError,
        /// Attempts made.
        attempts: u32,
        /// Time spent on the call, retries and backoff included.
        total_ms: u128,
    },
    /// Credentials were not given (or are empty).
    #[error(
        "missing credentials: set --access-key/--secret-key or NCLOUD_ACCESS_KEY/NCLOUD_SECRET_KEY (empty values count as missing)"
    )]
    MissingCredentials,
    /// The `--ca-bundle` file cannot be used.
    #[error("--ca-bundle {path}: {message}")]
    CaBundle {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// `-o table` for a command that has no table.
    #[error("-o table is only available for `list`; use -o json or -o yaml")]
    NoTable,
    /// Output could not be encoded.
    #[error("cannot encode output: {0}")]
    Encode(#[from] serde_json::Error),
    /// YAML output could not be encoded.
    #[error("cannot encode output as yaml: {0}")]
    Yaml(String),
    /// `conformance` could not run.
    #[error(transparent)]
    Conformance(#[from] conformance::ConformanceError),
    /// `conformance` ran and found deviations: `output` is the report, to print as a success's is.
    #[error("{summary}")]
    Nonconformant {
        /// The printed report.
        output: String,
        /// One line: what deviated.
        summary: String,
    },
}

/// Counts HTTP attempts, so that a timeout can say how many were made.
#[derive(Debug, Default)]
struct AttemptCounter(AtomicU32);

impl CallObserver for AttemptCounter {
    fn observe(&self, _op: Operation, _outcome: &str, _elapsed: Duration) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

fn read(path: &PathBuf) -> Result<String, PcaError> {
    let result = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(path)
    };
    result.map_err(|source| PcaError::ReadFile {
        path: path.clone(),
        source,
    })
}

/// What a command prints: JSON (or YAML), with `--pem` the PEM text when the answer carries one,
/// and for `list` a table.
struct Output {
    json: serde_json::Value,
    pem: Option<String>,
    table: Option<String>,
}

fn json(value: impl Serialize) -> Result<Output, PcaError> {
    Ok(Output {
        json: serde_json::to_value(value)?,
        pem: None,
        table: None,
    })
}

fn pem(text: String) -> Output {
    Output {
        json: serde_json::Value::String(text.clone()),
        pem: Some(text),
        table: None,
    }
}

/// `list` output: the JSON, and a table of tag, alias, type, status, key, NotAfter, signingCount.
fn ca_table(cas: &[CaDetail]) -> Result<Output, PcaError> {
    let header = [
        "TAG", "ALIAS", "TYPE", "STATUS", "KEY", "NOTAFTER", "SIGNED",
    ]
    .map(str::to_string);
    let rows: Vec<[String; 7]> = cas
        .iter()
        .map(|c| {
            [
                c.ca_info.ca_tag.clone(),
                c.ca_info.alias.clone(),
                c.ca_info.ca_type.clone(),
                c.ca_info.status.to_string(),
                dash(&c.ca_cert_info.public_key_algorithm),
                c.ca_cert_info
                    .not_after_date
                    .and_then(format_ms)
                    .unwrap_or_else(|| "-".into()),
                c.ca_info
                    .signing_count
                    .map_or_else(|| "-".into(), |n| n.to_string()),
            ]
        })
        .collect();
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        text.push_str(line.join("  ").trim_end());
        text.push('\n');
    }
    Ok(Output {
        json: serde_json::to_value(cas)?,
        pem: None,
        table: Some(text),
    })
}

fn dash(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s.to_string()
    }
}

/// Milliseconds since the epoch as an RFC 3339 UTC time, to the second.
fn format_ms(ms: i64) -> Option<String> {
    let t = time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000)).ok()?;
    t.format(&time::format_description::well_known::Rfc3339)
        .ok()
}

/// A certificate answer: JSON, or with `--pem` the certificate followed by its chain.
fn cert_output(cert: &str, chain: &[String], whole: &impl Serialize) -> Result<Output, PcaError> {
    let mut text = cert.trim_end().to_string() + "\n";
    for c in chain {
        text.push_str(c.trim_end());
        text.push('\n');
    }
    Ok(Output {
        json: serde_json::to_value(whole)?,
        pem: Some(text),
        table: None,
    })
}

/// Runs a `pca` command and returns what to print.
///
/// # Errors
/// When credentials are missing, a file cannot be read, or the call fails.
pub async fn run(args: PcaArgs) -> Result<String, PcaError> {
    let access_key = args.access_key.filter(|s| !s.trim().is_empty());
    let secret_key = args.secret_key.filter(|s| !s.expose().trim().is_empty());
    let (Some(access_key), Some(secret_key)) = (access_key, secret_key) else {
        return Err(PcaError::MissingCredentials);
    };
    let mut config = ClientConfig::new(Credentials::new(access_key, secret_key.expose()))
        .with_endpoint(args.endpoint);
    config.request_timeout = Duration::from_secs(args.timeout_secs);
    config.retry = RetryPolicy::default();
    if let Some(path) = &args.ca_bundle {
        let text = read(path).map_err(|e| match e {
            PcaError::ReadFile { path, source } => PcaError::CaBundle {
                path,
                message: source.to_string(),
            },
            other => other,
        })?;
        config.ca_bundle_pem = Some(text.into_bytes());
    }
    if let PcaCommand::Conformance(c) = &args.command {
        return run_conformance(&config, c, args.output).await;
    }
    let client = Client::new(config).map_err(|e| match (&e, &args.ca_bundle) {
        (NcpError::InvalidRequest { message, .. }, Some(path)) if message.contains("caBundle") => {
            PcaError::CaBundle {
                path: path.clone(),
                message: message.replace("caBundle", "the file"),
            }
        }
        _ => PcaError::Ncp(e),
    })?;
    let counter = Arc::new(AttemptCounter::default());
    let client = client.with_observer(Arc::clone(&counter) as Arc<dyn CallObserver>);
    let is_list = matches!(args.command, PcaCommand::List { .. });
    if args.output == Some(OutputFormat::Table) && !is_list {
        return Err(PcaError::NoTable);
    }
    let started = Instant::now();
    let output = execute(&client, args.command).await.map_err(|e| match e {
        PcaError::Ncp(source @ NcpError::Timeout { .. }) => PcaError::TimedOut {
            source,
            attempts: counter.0.load(Ordering::Relaxed),
            total_ms: started.elapsed().as_millis(),
        },
        other => other,
    })?;
    let format = args
        .output
        .unwrap_or(if is_list && std::io::stdout().is_terminal() {
            OutputFormat::Table
        } else {
            OutputFormat::Json
        });
    Ok(match (output.pem, output.table, format) {
        (Some(text), _, _) if args.pem => text,
        (_, Some(table), OutputFormat::Table) => table,
        (_, _, OutputFormat::Yaml) => {
            serde_saphyr::to_string(&output.json).map_err(|e| PcaError::Yaml(e.to_string()))?
        }
        _ => serde_json::to_string_pretty(&output.json)? + "\n",
    })
}

/// `pca conformance`: the report, or [`PcaError::Nonconformant`] carrying it.
async fn run_conformance(
    config: &ClientConfig,
    args: &ConformanceArgs,
    output: Option<OutputFormat>,
) -> Result<String, PcaError> {
    let format = match output {
        None | Some(OutputFormat::Table) => conformance::Format::Table,
        Some(OutputFormat::Json) => conformance::Format::Json,
        Some(OutputFormat::Yaml) => conformance::Format::Yaml,
    };
    let outcome = conformance::run(config, args, format).await?;
    if outcome.report.conforms {
        return Ok(outcome.text);
    }
    let left = outcome
        .report
        .cleanup
        .as_ref()
        .filter(|c| !c.deleted)
        .map(|c| {
            format!(
                "; the throwaway CA {} was not deleted (steps in the report)",
                c.ca_tag
            )
        })
        .unwrap_or_default();
    Err(PcaError::Nonconformant {
        output: outcome.text,
        summary: format!(
            "the endpoint does not conform: {} check(s) deviate{left}",
            outcome.report.summary.deviates
        ),
    })
}

async fn execute(client: &Client, command: PcaCommand) -> Result<Output, PcaError> {
    use PcaCommand as C;
    let done = || json(serde_json::json!({"result": "ok"}));
    match command {
        C::List { page: Some(p) } => {
            let list = client.get_ca_list(Some(p)).await?;
            let mut out = ca_table(&list.ca_info_list)?;
            out.json = serde_json::to_value(&list)?;
            Ok(out)
        }
        C::List { page: None } => ca_table(&client.list_all_cas().await?),
        C::Get { ca_tag } => json(client.get_ca(&ca_tag).await?),
        C::Create {
            alias,
            sub,
            issuer_tag,
            key_type,
            period,
            memo,
            subject,
        } => {
            let new = NewCa {
                ca_type: if sub {
                    CaType::PrivateSub
                } else {
                    CaType::PrivateRoot
                },
                issuer_tag,
                alias,
                memo,
                key_type: key_type.into(),
                period,
                subject: subject.into(),
            };
            json(client.create_ca(&new).await?)
        }
        C::Update {
            ca_tag,
            status,
            memo,
        } => {
            let status = status.as_deref().map(CaStatus::parse);
            json(
                client
                    .update_ca(&ca_tag, status.as_ref(), memo.as_deref())
                    .await?,
            )
        }
        C::Delete { ca_tag } => {
            client.delete_ca(&ca_tag).await?;
            done()
        }
        C::Chain { ca_tag } => Ok(pem(client.get_ca_chain(&ca_tag).await?)),
        C::Crl { ca_tag } => Ok(pem(client.get_ca_crl(&ca_tag).await?)),
        C::RotateCrl { ca_tag } => {
            client.rotate_crl(&ca_tag).await?;
            done()
        }
        C::CrlConfig {
            ca_tag,
            expiry: None,
        } => json(client.get_crl_config(&ca_tag).await?),
        C::CrlConfig {
            ca_tag,
            expiry: Some(days),
        } => json(client.update_crl_config(&ca_tag, days).await?),
        C::Trim { ca_tag } => {
            client.trim_ca(&ca_tag).await?;
            done()
        }
        C::Sign {
            ca_tag,
            csr,
            period,
            sub,
        } => {
            let csr = read(&csr)?;
            let issued = if sub {
                let days = match period {
                    Some(Period::Days(d)) => d,
                    // Sign Sub Csr takes days only; MAX or nothing means the longest the service allows.
                    Some(Period::Max) | None => Period::MAX_DAYS,
                };
                client.sign_sub_csr(&ca_tag, &csr, days).await?
            } else {
                client.sign_end_csr(&ca_tag, &csr, period).await?
            };
            cert_output(&issued.certificate, &issued.ca_chain, &issued)
        }
        C::Issue {
            ca_tag,
            key_type,
            period,
            subject,
        } => json(
            client
                .issue_end_cert(&ca_tag, key_type.into(), period, &subject.into())
                .await?,
        ),
        C::Cert { ca_tag, serial_no } => {
            let cert = client.get_end_cert(&ca_tag, &serial_no).await?;
            cert_output(&cert.cert_pem, &cert.ca_chain, &cert)
        }
        C::Certs {
            ca_tag,
            page: Some(p),
        } => json(client.get_end_cert_list(&ca_tag, Some(p)).await?),
        C::Certs { ca_tag, page: None } => json(client.list_all_end_cert_serials(&ca_tag).await?),
        C::Revoke { ca_tag, serial_no } => {
            client.revoke_end_cert(&ca_tag, &serial_no).await?;
            done()
        }
        C::Users { ca_tag } => json(client.get_ca_user_list(&ca_tag).await?),
        C::AddUser { ca_tag, id_no } => {
            client.add_ca_user(&ca_tag, &id_no).await?;
            done()
        }
        C::DeleteUser { ca_tag, id_no } => {
            client.delete_ca_user(&ca_tag, &id_no).await?;
            done()
        }
        C::Ocsp { ca_tag, url } => {
            client.create_ocsp(&ca_tag, &url).await?;
            done()
        }
        C::DeleteOcsp { ca_tag } => {
            client.delete_ocsp(&ca_tag).await?;
            done()
        }
        C::SubCsr { ca_tag } => Ok(pem(client.get_sub_csr(&ca_tag).await?.csr_pem)),
        C::Activate {
            ca_tag,
            cert,
            chain,
        } => json(
            client
                .activate_sub_ca(&ca_tag, &read(&cert)?, &read(&chain)?)
                .await?,
        ),
        // `run` answers it before building a client: it needs the configuration, not a client.
        C::Conformance(_) => Err(PcaError::Ncp(NcpError::InvalidRequest {
            op: Operation::GetCaList,
            message: "conformance needs the client configuration, not a client".into(),
        })),
    }
}
