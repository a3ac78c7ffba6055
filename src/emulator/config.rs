//! Emulator configuration.

use crate::ncp::signing::Credentials;
use std::path::PathBuf;
use std::time::Duration;

/// Default limit of CAs per account (NCP: 10).
pub const DEFAULT_MAX_CAS: usize = 10;
/// Default limit of certificates per CA (NCP: 30,000).
pub const DEFAULT_MAX_ISSUANCES_PER_CA: u64 = 30_000;
/// Default page size of Get CA List and Get End Cert List (undocumented by NCP).
pub const DEFAULT_PAGE_SIZE: usize = 10;
/// Default allowed clock skew of request timestamps (NCP: 5 minutes).
pub const DEFAULT_CLOCK_SKEW_MS: i64 = 300_000;
/// Default largest accepted request body.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

/// Default bound on a connection that sends nothing: half a request header, or an idle keep-alive.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// How an emulator behaves.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// The account's key pair: full access.
    pub credentials: Credentials,
    /// Optional second key pair with the `NCP_PRIVATE_CA_VIEWER` policy: reads only, writes get the
    /// gateway's 401 `Permission Denied`.
    pub viewer_credentials: Option<Credentials>,
    /// Most CAs that may exist at once.
    pub max_cas: usize,
    /// Most certificates one CA may sign (the error message always says 30,000, as NCP's does).
    pub max_issuances_per_ca: u64,
    /// Page size of the paged lists.
    pub page_size: usize,
    /// Largest accepted difference between a request's timestamp and the wall clock.
    pub clock_skew_ms: i64,
    /// Where to keep state across restarts (contains CA private keys; written with mode 0600).
    pub state_file: Option<PathBuf>,
    /// Serve the `/_emulator/` test-control endpoints (allowed on loopback listeners only).
    pub test_controls: bool,
    /// Base URL written into `urlInfo`, CRL distribution points and AIA (default: `http://` + the
    /// listen address, loopback when listening on all interfaces).
    pub public_base_url: Option<String>,
    /// Largest accepted request body; larger ones get the gateway's 413.
    pub max_body_bytes: usize,
    /// Strict signing: only `x-ncp-apigw-signature-v2`, computed over the exact request-target (path
    /// and query as received). Off (the default), the emulator is lenient as NAVER's gateway is
    /// towards NAVER's SDKs: the `-v1` header is accepted too, and so is a signature over the path
    /// alone. Our own client's and controller's tests run strict, so that a client that dropped the
    /// query from its signature fails them.
    pub strict_signing: bool,
    /// A connection that sends nothing for this long (half a header, an idle keep-alive) is closed.
    pub idle_timeout: Duration,
    /// Start the emulator's clock this far from the wall clock (an NCP whose clock is ahead: positive).
    pub clock_offset_ms: i64,
}

impl EmulatorConfig {
    /// Defaults matching NCP's documented limits.
    #[must_use]
    pub fn new(credentials: Credentials) -> Self {
        Self {
            credentials,
            viewer_credentials: None,
            max_cas: DEFAULT_MAX_CAS,
            max_issuances_per_ca: DEFAULT_MAX_ISSUANCES_PER_CA,
            page_size: DEFAULT_PAGE_SIZE,
            clock_skew_ms: DEFAULT_CLOCK_SKEW_MS,
            state_file: None,
            test_controls: false,
            public_base_url: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            strict_signing: false,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            clock_offset_ms: 0,
        }
    }

    /// The same configuration with strict signing (see [`EmulatorConfig::strict_signing`]).
    #[must_use]
    pub fn strict(mut self) -> Self {
        self.strict_signing = true;
        self
    }
}
