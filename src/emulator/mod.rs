//! A local emulator of the NCP Private CA service, for tests, the demo and development loops.
//!
//! It serves the 24 operations at their documented paths behind an emulated API gateway (HMAC v2
//! authentication, gateway error envelopes), with real keys and certificates, the CA status machine,
//! NCP's limits and its verbatim error messages. Optional test controls inject faults (latency,
//! 500s, throttling, outages, timeouts, lost responses), count calls and certificates, and move the
//! emulator's clock.
//!
//! Decisions where NCP's documentation is silent (see `ncp-pca-api.md` §10):
//! - Sign End Csr without `period` issues for as long as allowed: 3650 days, cut at the CA's end.
//!   Issue End Cert defaults `keyType` to the CA's and `period` to MAX. MAX for a root is 3650 days.
//! - `caChain` is an array `[issuing CA, …, root]` in Sign End/Sub Csr, one concatenated string in
//!   Issue End Cert and Get End Cert. Get CA Chain and `chainPem` are the CA's own certificate
//!   followed by its issuers up to the root.
//! - Get CRL Config answers "The crl configuration doesn't exist." until Update CRL Config is called;
//!   CRLs are renewed every 3 days meanwhile. Revocation, rotation, trimming and config updates rebuild
//!   the CRL at once; Get CA CRL rebuilds it when past its nextUpdate.
//! - Update CA answers a superset of both documented forms: the flat `CaInfo` fields (2022 docs,
//!   NAVER's client) with `caInfo` and `caCertInfo` beside them (current docs); the same status is a no-op; DESTROYING
//!   → ACTIVE cancels (back to PENDING for a CA that never got its certificate); DESTROYING →
//!   DEACTIVATED and PENDING → ACTIVE/DEACTIVATED are "Invalid ca status.".
//! - CSRs must carry one of the four NCP key types: any other key (RSA-1024, RSA-3072, P-384,
//!   Ed25519) is "Invalid key type.", checked before the CSR's signature; "Invalid csr." is for a
//!   CSR with a supported key that cannot be read or whose signature does not verify.
//! - Messages come only from NCP's documented table. Where it has none: a missing `keyType` in
//!   Create CA is "Invalid keyType.", a missing `period` (Create CA, Sign Sub Csr) "Invalid period
//!   value."; NUL, LF or another control character in a subject field is "Invalid input.".
//! - Gateway: a body longer than the limit (declared or sent) is 413 "Request Entity Too Large",
//!   answered before authentication and before `100 Continue`; a body cut short is 400 "Bad
//!   Request Exception"; a connection that sends nothing for `idle_timeout` (60 s) is closed.
//! - Signing is lenient by default (`-v1` or `-v2` header, signature over path and query or path
//!   alone, as NAVER's SDKs sign); `strict_signing` accepts only `-v2` over the exact target.
//! - Page size 10 (configurable); lists include DESTROYING CAs, revoked and expired certificates.
//! - Adding a user twice or deleting an absent user → "Invalid user."; memo limit 256 characters.
//! - Authentication uses the real wall clock; everything else uses the emulator's (offsettable) clock.

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
