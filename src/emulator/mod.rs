//! A local emulator of the NCP Private CA service, for tests, the demo and development loops.
//!
//! It serves the 24 operations at their documented paths behind an emulated API gateway (HMAC v2
//! authentication, gateway error envelopes), with real keys and certificates, the CA status machine,
//! NCP's limits and its verbatim error messages. Optional test controls inject faults (latency,
//! 500s, throttling, outages, timeouts, lost responses), count calls and certificates, and move the
//! emulator's clock.
//!
//! Every point where NCP's documentation is silent and the emulator had to guess is listed once,
//! in [`DEVIATIONS`], each with the `ncp-pca-issuer pca conformance` checks whose answers against
//! the real service settle it (see `ncp-pca-api.md` §10 for the open questions). Not guesses about
//! NCP: authentication uses the real wall clock, everything else the emulator's (offsettable) clock.

mod auth;
mod clock;
mod config;
mod faults;
mod listener;
mod ops;
mod persist;
mod request;
mod response;
mod routes;
mod server;
mod state;
mod stats;
mod validate;

pub use config::{
    DEFAULT_CLOCK_SKEW_MS, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_CAS,
    DEFAULT_MAX_ISSUANCES_PER_CA, DEFAULT_PAGE_SIZE, EmulatorConfig,
};
pub use faults::{DEFAULT_HUGE_BODY_BYTES, DEFAULT_NON_JSON_BODY, FaultKind, FaultRule};
pub use stats::{CallCounts, Stats};

use crate::ncp::types::CaStatus;
use state::Shared;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// One point where NCP's documentation is silent and the emulator had to guess.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deviation {
    /// What the emulator does.
    pub guess: &'static str,
    /// The `pca conformance` checks (`section.check`, as the report names them) whose answers
    /// against NCP settle the guess; empty when no check can provoke it safely.
    pub settled_by: &'static [&'static str],
    /// Why no check settles it, when none does.
    pub unchecked: Option<&'static str>,
}

const fn settled(guess: &'static str, settled_by: &'static [&'static str]) -> Deviation {
    Deviation {
        guess,
        settled_by,
        unchecked: None,
    }
}

const fn unchecked(guess: &'static str, why: &'static str) -> Deviation {
    Deviation {
        guess,
        settled_by: &[],
        unchecked: Some(why),
    }
}

/// The emulator's guesses: the one list of them. Correct the emulator (and this list) when
/// `pca conformance` against NCP reports one of these checks as deviating.
pub const DEVIATIONS: &[Deviation] = &[
    settled(
        "Get End Cert List lists the intermediate certificates Sign Sub Csr made (the subordinate recovery path relies on it)",
        &["write.listing.lists_intermediate"],
    ),
    settled(
        "Revoke End Cert refuses an intermediate certificate: \"The CA certificate can't be revoked.\"",
        &[
            "write.revoke_intermediate.refused",
            "write.crl_after_rotation.intermediate_not_revoked",
        ],
    ),
    settled(
        "The gateway is lenient by default: the -v1 header, and a signature over the path alone on a request with a query, are accepted (as NAVER's SDKs sign); strict_signing accepts only -v2 over path and query",
        &[
            "signing_variants.v2_path_only",
            "signing_variants.v1_path_and_query",
            "signing_variants.v1_path_only",
        ],
    ),
    settled(
        "mbrNo is a JSON number in Get CA User List (NAVER's 2022 client types it a string)",
        &["get_ca_user_list.fields"],
    ),
    settled(
        "Update CA answers a superset of both documented forms: the flat CaInfo fields with caInfo and caCertInfo beside them",
        &["write.update_ca_deactivated.fields"],
    ),
    settled(
        "Update CA: ACTIVE <-> DEACTIVATED; any -> DESTROYING; DESTROYING -> ACTIVE cancels the deletion (back to PENDING for a CA that never got its certificate); the same status is a no-op; DESTROYING -> DEACTIVATED and PENDING -> ACTIVE/DEACTIVATED are \"Invalid ca status.\"",
        &[
            "write.update_ca_deactivated.status",
            "write.update_ca_active.status",
            "write.schedule_deletion.status",
            "write.cancel_deletion.status",
        ],
    ),
    settled(
        "Delete CA removes a DESTROYING CA (and its subordinates) at once; Get CA then answers \"The CA doesn't exist.\"",
        &["write.delete_ca.gone"],
    ),
    settled(
        "Lists include DESTROYING CAs and revoked certificates (and expired ones)",
        &[
            "write.delete_ca.lists_destroying",
            "write.listing.lists_revoked_leaf",
        ],
    ),
    settled(
        "Page size 10 in Get CA List and Get End Cert List (configurable); Get End Cert List accepts pageNo",
        &["get_ca_list.page_size", "get_end_cert_list.envelope"],
    ),
    settled(
        "Sign End Csr without period issues for as long as allowed: 3650 days, cut at the CA's end",
        &["write.sign_end_csr_without_period.lasts_until_ca_end"],
    ),
    settled(
        "Issue End Cert defaults keyType to the CA's and period to MAX (cut at the CA's end); MAX for a root is 3650 days",
        &[
            "write.issue_end_cert.default_key_type",
            "write.issue_end_cert.lasts_until_ca_end",
        ],
    ),
    settled(
        "caChain is an array [issuing CA, ..., root] in Sign End/Sub Csr, one concatenated string in Issue End Cert and Get End Cert",
        &[
            "write.sign_end_csr.fields",
            "write.sign_sub_csr.fields",
            "write.issue_end_cert.fields",
            "write.get_end_cert.fields",
        ],
    ),
    settled(
        "Get CA Chain and chainPem are the CA's own certificate followed by its issuers up to the root",
        &[
            "get_ca_chain.chain_starts_with_ca",
            "write.get_ca_chain.chain_starts_with_ca",
        ],
    ),
    settled(
        "Get CRL Config answers \"The crl configuration doesn't exist.\" until Update CRL Config is called (CRLs are renewed every 3 days meanwhile); Update CRL Config needs at least 3 days within the CA's lifetime, else \"Invalid input.\"",
        &[
            "write.get_crl_config.not_configured",
            "write.update_crl_config.get_after_update",
            "write.errors.crl_expiry_too_short",
        ],
    ),
    settled(
        "Revocation, rotation, trimming and CRL config updates rebuild the CRL at once; Get CA CRL rebuilds it when past its nextUpdate",
        &[
            "write.crl_before_rotation.leaf_revoked",
            "write.crl_after_rotation.leaf_revoked",
        ],
    ),
    settled(
        "CSRs must carry one of the four NCP key types: any other key (RSA-1024, RSA-3072, P-384, Ed25519) is \"Invalid key type.\", checked before the CSR's signature",
        &["write.errors.unsupported_key_type"],
    ),
    settled(
        "Sign End Csr's legacy keyType/keyBits, when sent, must describe the CSR's key (\"CSR's keyType and the request body's keyType don't match.\")",
        &["write.errors.key_type_mismatch"],
    ),
    settled(
        "Where NCP's table has no message: a missing period in Sign Sub Csr is \"Invalid period value.\", a control character in a subject field \"Invalid input.\"",
        &[
            "write.errors.sub_period_missing",
            "write.errors.control_character",
        ],
    ),
    unchecked(
        "A missing keyType in Create CA is \"Invalid keyType.\", a missing period \"Invalid period value.\"",
        "provoking it could create a CA the run did not mean to",
    ),
    settled(
        "Every service error is HTTP 400 (the outage message 500) with the code paired to its message in crate::ncp::messages (NCP documents messages, not codes)",
        &[
            "write.errors.unknown_serial",
            "write.errors.invalid_period",
            "write.deactivated.sign_refused",
        ],
    ),
    settled(
        "urlInfo entries are arrays of URLs; Create OCSP's URL shows in urlInfo.ocsp, Delete OCSP empties it",
        &[
            "get_ca.fields",
            "write.ocsp.ocsp_url_listed",
            "write.ocsp.ocsp_url_removed",
        ],
    ),
    settled(
        "Managed policies: NCP_PRIVATE_CA_MANAGER allows every operation; NCP_PRIVATE_CA_VIEWER reads only, and its writes get the gateway's 401 errorCode 210 \"Permission Denied\"",
        &["get_ca_list.envelope", "write.create_ca.envelope"],
    ),
    unchecked(
        "Gateway: a body longer than the limit (declared or sent) is 413 \"Request Entity Too Large\", answered before authentication and before 100 Continue; a body cut short is 400 \"Bad Request Exception\"; a connection silent for 60 s is closed",
        "needs malformed requests against NCP's gateway",
    ),
    unchecked(
        "Adding a user twice or deleting an absent user is \"Invalid user.\"; the memo limit is 256 characters",
        "needs a sub account's idNo; the run grants no user",
    ),
];

/// How long [`EmulatorHandle::shutdown`] waits for open connections before aborting the server.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

fn build(listener: &TcpListener, config: EmulatorConfig) -> io::Result<Arc<Shared>> {
    let addr = listener.local_addr()?;
    if config.test_controls && !addr.ip().is_loopback() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("emulator test controls are only allowed on a loopback address, not {addr}"),
        ));
    }
    let base_url = match &config.public_base_url {
        Some(url) => url.trim_end_matches('/').to_string(),
        None => {
            let ip = match addr.ip() {
                IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
                ip => ip,
            };
            format!("http://{}", SocketAddr::new(ip, addr.port()))
        }
    };
    let state = match &config.state_file {
        Some(path) => persist::load::<state::State>(path)?,
        None => state::State::default(),
    };
    let offset = config.clock_offset_ms;
    let shared = Arc::new(Shared::new(config, base_url, state));
    shared.clock.advance(offset);
    Ok(shared)
}

async fn run(
    listener: TcpListener,
    shared: Arc<Shared>,
    signal: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let addr = listener.local_addr()?;
    tracing::info!(
        %addr,
        base_url = %shared.base_url,
        test_controls = shared.config.test_controls,
        state_file = ?shared.config.state_file,
        cas = shared.state().cas.len(),
        "NCP Private CA emulator listening"
    );
    let app = server::router(Arc::clone(&shared));
    let stopping = Arc::clone(&shared);
    let listener = listener::IdleListener::new(listener, shared.config.idle_timeout);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            signal.await;
            tracing::info!("NCP Private CA emulator stopping");
            // Release the requests held by timeout faults so the connections can close.
            let _ = stopping.shutdown.send(true);
        })
        .await
}

/// Serves the emulator on `listener` until the process ends (or an I/O error).
pub async fn serve(listener: TcpListener, config: EmulatorConfig) -> io::Result<()> {
    serve_with_shutdown(listener, config, std::future::pending()).await
}

/// Serves the emulator on `listener` until `signal` completes, then shuts down gracefully.
///
/// Fails at once when the state file cannot be read, or when test controls are enabled on a
/// listener that is not bound to a loopback address.
pub async fn serve_with_shutdown(
    listener: TcpListener,
    config: EmulatorConfig,
    signal: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let shared = build(&listener, config)?;
    run(listener, shared, signal).await
}

/// Starts an emulator on `127.0.0.1` and an ephemeral port, in the background (for tests).
pub async fn spawn(config: EmulatorConfig) -> io::Result<EmulatorHandle> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let addr = listener.local_addr()?;
    let shared = build(&listener, config)?;
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(run(listener, Arc::clone(&shared), async move {
        let _ = rx.await;
    }));
    Ok(EmulatorHandle {
        addr,
        shared,
        stop: Some(tx),
        task: Some(task),
    })
}

/// A running emulator started by [`spawn`]. Stops when dropped or on [`EmulatorHandle::shutdown`].
///
/// The test controls are available here as methods whatever `test_controls` says (the process that
/// spawned the emulator is trusted).
pub struct EmulatorHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<io::Result<()>>>,
}

impl std::fmt::Debug for EmulatorHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmulatorHandle")
            .field("addr", &self.addr)
            .field("base_url", &self.shared.base_url)
            .finish_non_exhaustive()
    }
}

impl EmulatorHandle {
    /// `http://127.0.0.1:PORT` (or the configured public base URL): the client's endpoint.
    #[must_use]
    pub fn base_url(&self) -> &str {
        &self.shared.base_url
    }

    /// The listening address.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A snapshot of the counters.
    #[must_use]
    pub fn stats(&self) -> Stats {
        self.shared.stats().clone()
    }

    /// Adds a fault rule.
    pub fn add_fault(&self, rule: FaultRule) {
        self.shared.faults.add(rule);
    }

    /// The active fault rules.
    #[must_use]
    pub fn faults(&self) -> Vec<FaultRule> {
        self.shared.faults.list()
    }

    /// Removes every fault rule.
    pub fn clear_faults(&self) {
        self.shared.faults.clear();
    }

    /// Moves the emulator's clock (negative values move it back).
    pub fn advance_clock(&self, ms: i64) {
        self.shared.clock.advance(ms);
    }

    /// The emulator's time, in milliseconds since the Unix epoch.
    #[must_use]
    pub fn now_ms(&self) -> i64 {
        self.shared.clock.now_ms()
    }

    /// Forgets every CA, counter and fault, and resets the clock.
    pub fn reset(&self) {
        self.shared.reset();
    }

    /// The status of a CA, `None` when it does not exist (or was deleted).
    #[must_use]
    pub fn ca_status(&self, ca_tag: &str) -> Option<CaStatus> {
        let now = self.shared.clock.now_ms();
        let mut st = self.shared.state();
        st.expire(now);
        st.find(ca_tag).ok().map(|c| c.status.clone())
    }

    /// Whether a certificate is revoked (`None`: no such CA or certificate). NCP's API has no such
    /// query; tests use it to check revocation without parsing CRLs.
    #[must_use]
    pub fn certificate_revoked(&self, ca_tag: &str, serial: &str) -> Option<bool> {
        let serial = crate::pki::Serial::parse(serial).ok()?.to_colon_hex();
        let st = self.shared.state();
        let ca = st.find(ca_tag).ok()?;
        ca.find_cert(&serial).map(|c| c.revoked_ms.is_some())
    }

    /// Stops the server: releases held requests, waits for open connections (bounded), and returns
    /// the server's result.
    pub async fn shutdown(mut self) -> io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let Some(mut task) = self.task.take() else {
            return Ok(());
        };
        match tokio::time::timeout(SHUTDOWN_GRACE, &mut task).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => Err(io::Error::other(join)),
            Err(_) => {
                task.abort();
                Ok(())
            }
        }
    }
}

impl Drop for EmulatorHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
