//! `ncp-pca-issuer emulator`: a local emulator of the NCP Private CA API.

use crate::emulator::{EmulatorConfig, serve_with_shutdown};
use crate::ncp::{Credentials, SecretKey};

/// `emulator`'s arguments.
#[derive(Debug, clap::Args)]
pub struct EmulatorArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8480")]
    listen: std::net::SocketAddr,
    /// Access key of the emulated account.
    #[arg(long, env = "NCLOUD_ACCESS_KEY", hide_env_values = true)]
    access_key: String,
    /// Secret key of the emulated account.
    #[arg(long, env = "NCLOUD_SECRET_KEY", hide_env_values = true)]
    secret_key: SecretKey,
    /// Access key of a read-only (NCP_PRIVATE_CA_VIEWER) sub account.
    #[arg(long, requires = "viewer_secret_key")]
    viewer_access_key: Option<String>,
    /// Secret key of the read-only sub account.
    #[arg(long, requires = "viewer_access_key")]
    viewer_secret_key: Option<SecretKey>,
    /// Keep CAs and certificates across restarts in this file (holds CA private keys; mode 0600).
    #[arg(long)]
    state_file: Option<std::path::PathBuf>,
    /// Serve the /_emulator/ fault-injection and counter endpoints (loopback listeners only).
    #[arg(long)]
    test_controls: bool,
    /// Most CAs at once (NCP: 10).
    #[arg(long, default_value_t = crate::emulator::DEFAULT_MAX_CAS)]
    max_cas: usize,
    /// Most certificates per CA (NCP: 30,000).
    #[arg(long, default_value_t = crate::emulator::DEFAULT_MAX_ISSUANCES_PER_CA)]
    max_issuances_per_ca: u64,
    /// Page size of Get CA List and Get End Cert List.
    #[arg(long, default_value_t = crate::emulator::DEFAULT_PAGE_SIZE)]
    page_size: usize,
    /// Base URL put into CA URLs, CRL distribution points and AIA (default: http://LISTEN).
    #[arg(long)]
    public_base_url: Option<String>,
    /// Accept only x-ncp-apigw-signature-v2 over the exact path and query (default: also -v1 and
    /// path-only signatures, as NAVER's SDKs sign).
    #[arg(long)]
    strict_signing: bool,
    /// Start the emulated NCP's clock this many milliseconds ahead of the wall clock (negative:
    /// behind), for clock-skew tests; request authentication keeps the wall clock.
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    clock_offset_ms: i64,
}

/// Serves the emulator until SIGTERM or Ctrl-C.
///
/// # Errors
///
/// When the address cannot be bound or serving fails.
pub async fn run(args: EmulatorArgs) -> anyhow::Result<()> {
    let mut config =
        EmulatorConfig::new(Credentials::new(args.access_key, args.secret_key.expose()));
    config.viewer_credentials = args
        .viewer_access_key
        .zip(args.viewer_secret_key)
        .map(|(ak, sk)| Credentials::new(ak, sk.expose()));
    config.state_file = args.state_file;
    config.test_controls = args.test_controls;
    config.max_cas = args.max_cas;
    config.max_issuances_per_ca = args.max_issuances_per_ca;
    config.page_size = args.page_size;
    config.public_base_url = args.public_base_url;
    config.strict_signing = args.strict_signing;
    config.clock_offset_ms = args.clock_offset_ms;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?;
    tracing::info!(listen = %listener.local_addr()?, test_controls = config.test_controls, "emulator serving");
    serve_with_shutdown(listener, config, super::runtime::wait_for_signal()).await?;
    Ok(())
}
