//! The chaos soak behind `scripts/soak` (a command, not a test).
//!
//! One run starts a real local control plane (etcd, kube-apiserver, kube-controller-manager and the
//! cert-manager controller, see `ncp_pca_issuer::devcluster`), the NCP emulator in this process, and
//! our operator as `--replicas` separate processes (the release binary, with leader election), then:
//!
//! 1. seeds the CA with `--seed-certs` certificates a day in the emulator's past (a busy CA, so that
//!    every recovery searches a long list);
//! 2. injects faults at `--fault-rate` on signing (500, 429, timeout, commit-then-lose-the-answer),
//!    lookups (Get End Cert, Get End Cert List: 500, timeout) and revocation (500, timeout);
//! 3. creates `--count` Certificates at once, and SIGKILLs the leading replica every
//!    `--kill-interval-secs` (a fresh replica takes its place) until at least `--kills` kills are
//!    done and every Certificate is Ready, or `--timeout-secs` passes;
//! 4. deletes `--delete` of the Certificates (their requests go with them) and waits for their
//!    revocation finalizers to be released.
//!
//! It prints: Certificates created / Ready / Failed / stuck; certificates NCP signed vs Certificates
//! issued, and duplicates (certificates NCP signed more than once for one name); the same certificates
//! attributed to CertificateRequests (each request's uid, CSR key and serials are recorded by a watch,
//! so deleted ones count too): duplicates per request (one request signed twice: the real failure),
//! re-issues by cert-manager (several requests of one Certificate, each signed once), and
//! certificates attributable to no request; the revocation audit
//! (serials of the deleted Certificates revoked, serials served by live Certificates revoked);
//! panics in the operators' logs; their peak RSS; kills; and NCP lookups per recovered request.
//!
//! `--recovery-only` runs no cluster: it seeds a CA with `--seed-certs` certificates, loses the
//! answers of `--lost` signings, and prints how many NCP calls the recovery search (with the shared
//! per-CA index, as the operator runs it) makes per recovered request.
//!
//! Every process it starts runs under the devcluster watchdog and is stopped by PID at the end.
//! Everything listens on 127.0.0.1.

#[path = "bench_parts/objects.rs"]
mod objects;

use anyhow::{Context as _, bail};
use clap::Parser;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams};
use ncp_pca_issuer::controller::delays::RECOVERY_CONTINUE;
use ncp_pca_issuer::controller::recovery::{RecoveryIndex, Search, Sought, Window, find_issued};
use ncp_pca_issuer::devcluster::process::Supervised;
use ncp_pca_issuer::devcluster::{Cluster, ClusterOptions};
use ncp_pca_issuer::emulator::{EmulatorConfig, EmulatorHandle, FaultKind, FaultRule};
use ncp_pca_issuer::ncp::types::{CaType, KeyType, Period, X509Parameters};
use ncp_pca_issuer::ncp::{self, Credentials, Operation};
use ncp_pca_issuer::pki::{Name, NameAttr, PrivateKey, San, create_csr, parse_certificates_pem};
use objects::condition;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

const EMU_AK: &str = "soak-access-key";
const EMU_SK: &str = "soak-secret-key-0123456789";
const NS: &str = "soak";
const CLUSTER_RESOURCE_NAMESPACE: &str = "cert-manager";
const DOMAIN: &str = "soak.example.com";
/// How long an issuer, or an operator's `/readyz`, may take.
const READY_TIMEOUT: Duration = Duration::from_secs(90);
/// How often the Certificates are listed and the operators' memory sampled.
const POLL: Duration = Duration::from_secs(1);
/// How long the deleted Certificates' requests may take to be released.
const DELETE_TIMEOUT: Duration = Duration::from_secs(600);
/// The emulator's past, for the seeded certificates.
const SEED_AGE_MS: i64 = 86_400_000;

/// Command line of `scripts/soak`.
#[derive(Debug, Parser)]
#[command(
    name = "soak",
    about = "Chaos soak of ncp-pca-issuer: N Certificates, NCP faults, SIGKILLs, deletions; prints an audit"
)]
struct Args {
    /// Certificates created.
    #[arg(long, default_value_t = 200)]
    count: usize,
    /// Chance of a fault on each signing, lookup and revocation call (0.0..1.0).
    #[arg(long, default_value_t = 0.2)]
    fault_rate: f64,
    /// Seconds between SIGKILLs of the leading operator replica.
    #[arg(long, default_value_t = 15)]
    kill_interval_secs: u64,
    /// Kills at least this many times (the run goes on until then).
    #[arg(long, default_value_t = 6)]
    kills: usize,
    /// Operator replicas (leader election picks the one that works).
    #[arg(long, default_value_t = 2)]
    replicas: usize,
    /// Certificates deleted once all are Ready (their certificates must be revoked).
    #[arg(long, default_value_t = 50)]
    delete: usize,
    /// Certificates signed into the CA before the run, a day in the emulator's past.
    #[arg(long, default_value_t = 10_000)]
    seed_certs: usize,
    /// Latency the emulator adds to every operation, in milliseconds.
    #[arg(long, default_value_t = 20)]
    latency_ms: u64,
    /// The operators' `--ncp-timeout-seconds`.
    #[arg(long, default_value_t = 3)]
    ncp_timeout_seconds: u64,
    /// The operators' `--concurrency`.
    #[arg(long, default_value_t = 8)]
    concurrency: u16,
    /// Gives up waiting for Ready after this long.
    #[arg(long, default_value_t = 900)]
    timeout_secs: u64,
    /// Only the recovery benchmark (no cluster): NCP calls per recovered request on a CA with
    /// `--seed-certs` certificates.
    #[arg(long)]
    recovery_only: bool,
    /// Signings whose answers are lost, for `--recovery-only`.
    #[arg(long, default_value_t = 20)]
    lost: usize,
    /// The operator binary (built by `scripts/soak` with `cargo build --release`).
    #[arg(long, default_value = "target/release/ncp-pca-issuer")]
    operator_bin: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ncp_pca_issuer::telemetry::install_crypto_provider();
    ncp_pca_issuer::telemetry::init(
        ncp_pca_issuer::telemetry::LogFormat::Plain,
        "warn,kube_client::client::builder=off",
    );
    if !(0.0..1.0).contains(&args.fault_rate) {
        bail!("--fault-rate must be in 0.0..1.0");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    if args.recovery_only {
        return runtime.block_on(recovery_bench(&args));
    }
    runtime.block_on(run(&args))
}

fn progress(msg: &str) {
    eprintln!("soak: {msg}");
}

async fn emulator() -> anyhow::Result<EmulatorHandle> {
    let mut config = EmulatorConfig::new(Credentials::new(EMU_AK, EMU_SK));
    config.test_controls = true;
    Ok(ncp_pca_issuer::emulator::spawn(config).await?)
}

fn ncp_client(emulator: &EmulatorHandle) -> anyhow::Result<ncp::Client> {
    Ok(ncp::Client::new(
        ncp::ClientConfig::new(Credentials::new(EMU_AK, EMU_SK)).with_endpoint(emulator.base_url()),
    )?)
}

async fn root_ca(client: &ncp::Client) -> anyhow::Result<String> {
    let new = ncp::NewCa {
        ca_type: CaType::PrivateRoot,
        issuer_tag: None,
        alias: "soakroot".into(),
        memo: None,
        key_type: KeyType::Ec256,
        period: Period::Days(3650),
        subject: X509Parameters {
            common_name: Some("Soak Root CA".into()),
            ..X509Parameters::default()
        },
    };
    Ok(client.create_ca(&new).await?.ca_info.ca_tag)
}

/// A CSR for `name`, with its key's SPKI and its SANs.
fn csr_for(name: &str) -> anyhow::Result<(String, Vec<u8>, Vec<San>)> {
    let key = PrivateKey::generate(KeyType::Ec256)?;
    let sans = vec![San::Dns(format!("{name}.{DOMAIN}"))];
    let csr = create_csr(
        &Name::new().with(NameAttr::CommonName, name),
        &sans,
        &key,
        false,
    )?;
    Ok((csr, key.spki_der(), sans))
}

/// Signs `count` certificates for one filler key a day in the emulator's past (the first one a
/// moment earlier still, so that the list's order can be told).
async fn seed(
    emulator: &EmulatorHandle,
    client: &ncp::Client,
    ca_tag: &str,
    count: usize,
) -> anyhow::Result<()> {
    if count == 0 {
        return Ok(());
    }
    let (csr, _, _) = csr_for("filler")?;
    emulator.advance_clock(-SEED_AGE_MS - 2000);
    client
        .sign_end_csr(ca_tag, &csr, Some(Period::Days(30)))
        .await?;
    emulator.advance_clock(2000);
    let per_task = (count - 1).div_ceil(8);
    let mut tasks = Vec::new();
    for t in 0..8 {
        let n = per_task.min((count - 1).saturating_sub(t * per_task));
        let (client, ca_tag, csr) = (client.clone(), ca_tag.to_string(), csr.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..n {
                client
                    .sign_end_csr(&ca_tag, &csr, Some(Period::Days(30)))
                    .await?;
            }
            Ok::<(), ncp::NcpError>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    emulator.advance_clock(SEED_AGE_MS);
    Ok(())
}

fn lookups(emulator: &EmulatorHandle) -> u64 {
    let s = emulator.stats();
    s.calls(Operation::GetEndCertList).total + s.calls(Operation::GetEndCert).total
}

/// `--recovery-only`: NCP calls per recovered request on a busy CA.
async fn recovery_bench(args: &Args) -> anyhow::Result<()> {
    let emulator = emulator().await?;
    let client = ncp_client(&emulator)?;
    let ca_tag = root_ca(&client).await?;
    progress(&format!("seeding {} certificates", args.seed_certs));
    seed(&emulator, &client, &ca_tag, args.seed_certs).await?;
    let mut lost = Vec::new();
    for i in 0..args.lost {
        let (csr, spki, sans) = csr_for(&format!("lost{i}"))?;
        let started = k8s_openapi::jiff::Timestamp::now().as_millisecond();
        let serial = client
            .sign_end_csr(&ca_tag, &csr, Some(Period::Days(30)))
            .await?
            .serial_no;
        lost.push((serial, started, Sought::key_and_sans(&spki, &sans)));
    }
    let index = Arc::new(RecoveryIndex::default());
    let before = lookups(&emulator);
    let clock = Instant::now();
    let mut tasks = Vec::new();
    // The operator's settle window with its default 30 s NCP timeout.
    let settle = Duration::from_secs(65);
    for (i, (serial, started, sought)) in lost.into_iter().enumerate() {
        let (client, index, ca_tag) = (client.clone(), index.clone(), ca_tag.clone());
        tasks.push(tokio::spawn(async move {
            let window = Window::around(started, settle);
            let id = format!("lost{i}");
            loop {
                match find_issued(&client, &index, &ca_tag, &id, window, &sought).await? {
                    Search::Found(r) if r.serial == serial => return Ok(()),
                    Search::Found(r) => bail!("{id}: found {} instead of {serial}", r.serial),
                    Search::NotFound { .. } => bail!("{id}: not found"),
                    // As the operator does: requeue, and go on where it stopped.
                    Search::Unfinished => tokio::time::sleep(RECOVERY_CONTINUE).await,
                }
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    let calls = lookups(&emulator) - before;
    #[allow(clippy::cast_precision_loss)]
    let per = calls as f64 / args.lost.max(1) as f64;
    println!(
        "recovery: CA with {} certificates, {} lost answers recovered in {:.1} s with {calls} NCP calls: {per:.2} per recovered request (target <= 5) {}",
        args.seed_certs + args.lost,
        args.lost,
        clock.elapsed().as_secs_f64(),
        if per <= 5.0 { "OK" } else { "OVER" }
    );
    let _ = emulator.shutdown().await;
    Ok(())
}

/// The fault rules: `rate` split evenly over `kinds` for `op` (rules are tried in order, so each one's
/// probability is raised to make the shares equal).
fn faults(op: Operation, kinds: &[FaultKind], rate: f64) -> Vec<FaultRule> {
    #[allow(clippy::cast_precision_loss)]
    let share = rate / kinds.len() as f64;
    kinds
        .iter()
        .enumerate()
        .map(|(i, kind)| {
            #[allow(clippy::cast_precision_loss)]
            let p = share / (1.0 - share * i as f64);
            FaultRule::new(*kind).for_operation(op).with_probability(p)
        })
        .collect()
}

/// Server-side-applies a JSON object as the soak.
async fn apply(api: &Api<DynamicObject>, object: serde_json::Value) -> anyhow::Result<()> {
    objects::apply(api, object, "ncp-pca-soak").await
}

/// A dynamic API for one resource in the soak's namespace.
fn dynamic(
    client: &kube::Client,
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
) -> Api<DynamicObject> {
    objects::dynamic(client, NS, group, version, kind, plural)
}

/// One operator replica: a process under the devcluster watchdog.
struct Replica {
    process: Supervised,
    pid: u32,
    http: SocketAddr,
    binary: PathBuf,
    peak_kib: u64,
}

impl Replica {
    fn start(cluster: &Cluster, binary: &Path, args: &Args, n: usize) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let http = SocketAddr::from(([127, 0, 0, 1], port));
        let log = cluster
            .work_dir()
            .join("logs")
            .join(format!("ncp-pca-issuer-{n}.log"));
        let argv = vec![
            "controller".to_string(),
            format!("--kubeconfig={}", cluster.kubeconfig_path().display()),
            "--leader-elect=true".to_string(),
            format!("--cluster-resource-namespace={CLUSTER_RESOURCE_NAMESPACE}"),
            format!("--http-addr={http}"),
            format!("--concurrency={}", args.concurrency),
            format!("--ncp-timeout-seconds={}", args.ncp_timeout_seconds),
            "--issuer-recheck-seconds=30".to_string(),
        ];
        let process = Supervised::start(&format!("ncp-pca-issuer-{n}"), binary, &argv, log)
            .context("start an operator replica")?;
        let pid = find_child(process.pid(), binary, Duration::from_secs(30))?;
        Ok(Self {
            process,
            pid,
            http,
            binary: binary.to_path_buf(),
            peak_kib: 0,
        })
    }

    /// Updates the peak RSS (VmHWM) from `/proc`.
    fn sample(&mut self) {
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            && let Some(kib) = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            self.peak_kib = self.peak_kib.max(kib);
        }
    }

    async fn is_leader(&self, http: &reqwest::Client) -> bool {
        let Ok(r) = http
            .get(format!("http://{}/metrics", self.http))
            .send()
            .await
        else {
            return false;
        };
        r.text()
            .await
            .is_ok_and(|t| t.lines().any(|l| l.trim() == "ncp_pca_issuer_leader 1"))
    }

    /// SIGKILL, by PID.
    fn kill(&mut self) {
        self.sample();
        if is_process_of(self.pid, &self.binary) {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &self.pid.to_string()])
                .status();
        }
        self.process.stop();
    }

    fn stop(&mut self) {
        self.sample();
        self.process.stop();
        if is_process_of(self.pid, &self.binary) {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &self.pid.to_string()])
                .status();
        }
    }
}

fn is_process_of(pid: u32, binary: &Path) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
        cmdline
            .split(|b| *b == 0)
            .next()
            .is_some_and(|arg0| Path::new(&*String::from_utf8_lossy(arg0)) == binary)
    })
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(1))
        .and_then(|p| p.parse().ok())
}

/// The child of the watchdog `watchdog` that runs `binary`.
fn find_child(watchdog: u32, binary: &Path, timeout: Duration) -> anyhow::Result<u32> {
    let deadline = Instant::now() + timeout;
    loop {
        for entry in std::fs::read_dir("/proc")?.filter_map(Result::ok) {
            if let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok())
                && is_process_of(pid, binary)
                && parent_of(pid) == Some(watchdog)
            {
                return Ok(pid);
            }
        }
        if Instant::now() > deadline {
            bail!("no {} under watchdog {watchdog}", binary.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What the Certificates say now.
#[derive(Debug, Default)]
struct Tally {
    ready: usize,
    failed: usize,
    stuck: Vec<String>,
}

async fn tally(certs: &Api<DynamicObject>) -> anyhow::Result<Tally> {
    let mut t = Tally::default();
    for c in certs.list(&ListParams::default()).await?.items {
        if condition(&c, "Ready").is_some_and(|r| r["status"] == "True") {
            t.ready += 1;
        } else if condition(&c, "Issuing").is_some_and(|r| r["reason"] == "Failed") {
            t.failed += 1;
        } else {
            t.stuck.push(c.metadata.name.unwrap_or_default());
        }
    }
    Ok(t)
}

/// The serial of the certificate a Certificate's Secret serves.
async fn served_serial(secrets: &Api<DynamicObject>, name: &str) -> Option<String> {
    use base64::Engine as _;
    let secret = secrets.get_opt(&format!("{name}-tls")).await.ok()??;
    let b64 = secret.data["data"]["tls.crt"].as_str()?;
    let pem = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    let certs = parse_certificates_pem(std::str::from_utf8(&pem).ok()?).ok()?;
    Some(certs.first()?.serial.to_colon_hex())
}

/// What the soak saw of one CertificateRequest while it existed (kept after it is deleted).
#[derive(Debug, Default)]
struct SeenRequest {
    name: String,
    /// The Certificate it belongs to (`cert-manager.io/certificate-name`).
    certificate: String,
    /// The public key its CSR asks to certify (SPKI DER).
    spki: Option<Vec<u8>>,
    /// Serials it was seen with: our serial annotation, and its status certificate.
    serials: BTreeSet<String>,
}

/// Every CertificateRequest seen by the soak's watch, by uid.
type SeenRequests = Arc<std::sync::Mutex<BTreeMap<String, SeenRequest>>>;

/// A serial in one spelling (lower-case colon hex, no leading zero octets), whatever its source.
fn normal_serial(text: &str) -> String {
    ncp_pca_issuer::pki::Serial::parse(text).map_or_else(|_| text.to_string(), |s| s.to_colon_hex())
}

fn b64_text(value: &serde_json::Value) -> Option<String> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value.as_str()?)
        .ok()?;
    String::from_utf8(bytes).ok()
}

/// Records what a request says now: its Certificate, its CSR's key (once), its serials.
fn record(seen: &SeenRequests, cr: &DynamicObject) {
    use ncp_pca_issuer::api::annotations::ANNOTATION_SERIAL;
    let Some(uid) = cr.metadata.uid.clone() else {
        return;
    };
    let annotations = cr.metadata.annotations.clone().unwrap_or_default();
    let mut seen = seen
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let entry = seen.entry(uid).or_default();
    entry.name = cr.metadata.name.clone().unwrap_or_default();
    if let Some(c) = annotations.get("cert-manager.io/certificate-name") {
        entry.certificate.clone_from(c);
    }
    if entry.spki.is_none() {
        entry.spki = b64_text(&cr.data["spec"]["request"])
            .and_then(|pem| ncp_pca_issuer::pki::Csr::from_pem(&pem).ok())
            .map(|csr| csr.public_key().spki_der().to_vec());
    }
    if let Some(serial) = annotations.get(ANNOTATION_SERIAL) {
        entry.serials.insert(normal_serial(serial));
    }
    if let Some(first) = b64_text(&cr.data["status"]["certificate"])
        .and_then(|pem| parse_certificates_pem(&pem).ok())
        .and_then(|c| c.into_iter().next())
    {
        entry.serials.insert(first.serial.to_colon_hex());
    }
}

/// Watches every CertificateRequest of the soak's namespace from before the first one exists, so
/// that requests cert-manager deletes (a replaced revision) are known too.
fn watch_requests(api: Api<DynamicObject>, seen: SeenRequests) -> tokio::task::JoinHandle<()> {
    use futures::StreamExt as _;
    use kube::runtime::WatchStreamExt as _;
    use kube::runtime::watcher::{self, Event};
    tokio::spawn(async move {
        let mut events = watcher::watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        while let Some(event) = events.next().await {
            if let Ok(Event::Apply(cr) | Event::InitApply(cr) | Event::Delete(cr)) = event {
                record(&seen, &cr);
            }
        }
    })
}

/// One certificate NCP signed during the soak.
struct Signed {
    serial: String,
    name: String,
    spki: Vec<u8>,
}

/// How the soak's certificates map onto the requests seen.
#[derive(Debug, Default)]
struct Attribution {
    /// Request uid → the serials NCP signed for it.
    by_request: BTreeMap<String, Vec<String>>,
    /// Attributed by a serial the request carried (annotation or status).
    by_serial: usize,
    /// Attributed by the request's CSR key alone.
    by_key: usize,
    /// Serials no request accounts for (with the reason).
    unattributed: Vec<String>,
}

/// Attributes each certificate to one request: the request that carried its serial, else the one
/// request whose CSR key it certifies. Several candidates or none leave it unattributed.
fn attribute(signed: &[Signed], seen: &BTreeMap<String, SeenRequest>) -> Attribution {
    let mut a = Attribution::default();
    for cert in signed {
        let by_serial: Vec<&String> = seen
            .iter()
            .filter(|(_, r)| r.serials.contains(&cert.serial))
            .map(|(uid, _)| uid)
            .collect();
        let by_key: Vec<&String> = seen
            .iter()
            .filter(|(_, r)| r.spki.as_deref() == Some(cert.spki.as_slice()))
            .map(|(uid, _)| uid)
            .collect();
        let uid = match (by_serial.as_slice(), by_key.as_slice()) {
            ([uid], _) => {
                a.by_serial += 1;
                (*uid).clone()
            }
            ([], [uid]) => {
                a.by_key += 1;
                (*uid).clone()
            }
            (s, k) => {
                a.unattributed.push(format!(
                    "{} ({}: {} requests by serial, {} by key)",
                    cert.serial,
                    cert.name,
                    s.len(),
                    k.len()
                ));
                continue;
            }
        };
        a.by_request
            .entry(uid)
            .or_default()
            .push(cert.serial.clone());
    }
    a
}

/// The per-request lines of the report: real duplicates (one request signed more than once), and
/// re-issues by cert-manager (several requests of one Certificate, each signed once).
fn request_report(a: &Attribution, seen: &BTreeMap<String, SeenRequest>, signed: usize) -> String {
    let label = |uid: &str| {
        seen.get(uid).map_or_else(
            || uid.to_string(),
            |r| format!("{} ({}, uid {uid})", r.name, r.certificate),
        )
    };
    let duplicated: Vec<String> = a
        .by_request
        .iter()
        .filter(|(_, s)| s.len() > 1)
        .map(|(uid, s)| format!("{}: {}", label(uid), s.join(" ")))
        .collect();
    let per_request: usize = a.by_request.values().map(|s| s.len() - 1).sum();
    let mut requests_of: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for uid in a.by_request.keys() {
        if let Some(r) = seen.get(uid) {
            requests_of
                .entry(r.certificate.as_str())
                .or_default()
                .push(r.name.as_str());
        }
    }
    let reissues: usize = requests_of.values().map(|r| r.len() - 1).sum();
    let reissued: Vec<String> = requests_of
        .iter()
        .filter(|(_, r)| r.len() > 1)
        .map(|(c, r)| format!("{c}: {}", r.join(" ")))
        .take(10)
        .collect();
    format!(
        "requests: {} seen by the watch; {signed} certificates attributed {} by serial + {} by CSR key; duplicates per request {per_request} {duplicated:?}; re-issues by cert-manager {reissues} {reissued:?}; attributable to no request {} {:?}\n",
        seen.len(),
        a.by_serial,
        a.by_key,
        a.unattributed.len(),
        a.unattributed.iter().take(10).collect::<Vec<_>>()
    )
}

/// The run's state the kill loop and the report share.
struct Fleet {
    replicas: Vec<Replica>,
    started: usize,
    kills: usize,
    http: reqwest::Client,
    /// Peak RSS of the replicas killed, KiB.
    retired: Vec<u64>,
}

impl Fleet {
    fn sample(&mut self) {
        for r in &mut self.replicas {
            r.sample();
        }
    }

    /// SIGKILLs the leader (the first replica when none says it leads), and starts a fresh one.
    async fn kill_leader(
        &mut self,
        cluster: &Cluster,
        binary: &Path,
        args: &Args,
    ) -> anyhow::Result<()> {
        let mut victim = 0;
        for (i, r) in self.replicas.iter().enumerate() {
            if r.is_leader(&self.http).await {
                victim = i;
                break;
            }
        }
        let mut dead = self.replicas.remove(victim);
        dead.kill();
        self.kills += 1;
        progress(&format!(
            "SIGKILL {} of {} (pid {}), peak RSS {} MiB",
            self.kills,
            args.kills,
            dead.pid,
            dead.peak_kib / 1024
        ));
        self.retired.push(dead.peak_kib);
        self.started += 1;
        self.replicas
            .push(Replica::start(cluster, binary, args, self.started)?);
        Ok(())
    }
}

#[allow(clippy::too_many_lines)]
async fn run(args: &Args) -> anyhow::Result<()> {
    let binary = std::fs::canonicalize(&args.operator_bin).with_context(|| {
        format!(
            "operator binary {} (scripts/soak builds it)",
            args.operator_bin.display()
        )
    })?;
    let mut options = ClusterOptions::from_env()?;
    options.extra_crds.push(ncp_pca_issuer::api::crd_yaml()?);
    progress("starting the control plane");
    let cluster = tokio::task::spawn_blocking(move || Cluster::start(&options))
        .await
        .context("control plane start task")??;
    let client = cluster.client().await?;
    cluster.ensure_namespace(NS).await?;
    let emulator = emulator().await?;
    let ncp = ncp_client(&emulator)?;
    let ca_tag = root_ca(&ncp).await?;
    progress(&format!(
        "seeding the CA with {} certificates",
        args.seed_certs
    ));
    seed(&emulator, &ncp, &ca_tag, args.seed_certs).await?;
    let seeded = emulator.stats().issued_by(&ca_tag);
    let result = soak(args, &cluster, &client, &emulator, &ca_tag, seeded, &binary).await;
    let logs = cluster.work_dir().join("logs");
    let kept = PathBuf::from("target/soak");
    let _ = std::fs::create_dir_all(&kept);
    if let Ok(entries) = std::fs::read_dir(&logs) {
        for e in entries.filter_map(Result::ok) {
            let name = e.file_name();
            if name.to_string_lossy().starts_with("ncp-pca-issuer") {
                let _ = std::fs::copy(e.path(), kept.join(name));
            }
        }
    }
    tokio::task::spawn_blocking(move || drop(cluster))
        .await
        .context("control plane stop task")?;
    let _ = emulator.shutdown().await;
    let report = result?;
    print!("{report}");
    eprintln!("soak: operator logs kept in {}", kept.display());
    Ok(())
}

#[allow(clippy::too_many_lines)]
async fn soak(
    args: &Args,
    cluster: &Cluster,
    client: &kube::Client,
    emulator: &EmulatorHandle,
    ca_tag: &str,
    seeded: u64,
    binary: &Path,
) -> anyhow::Result<String> {
    let mut fleet = Fleet {
        replicas: Vec::new(),
        started: 0,
        kills: 0,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(3))
            .build()?,
        retired: Vec::new(),
    };
    for _ in 0..args.replicas.max(1) {
        fleet.started += 1;
        fleet
            .replicas
            .push(Replica::start(cluster, binary, args, fleet.started)?);
    }
    let outcome = soak_with(
        args,
        client,
        emulator,
        ca_tag,
        seeded,
        &mut fleet,
        (cluster, binary),
    )
    .await;
    for r in &mut fleet.replicas {
        r.stop();
    }
    outcome.map(|mut report| {
        let peak = fleet
            .replicas
            .iter()
            .map(|r| r.peak_kib)
            .chain(fleet.retired.iter().copied())
            .max()
            .unwrap_or_default();
        let logs = cluster.work_dir().join("logs");
        let mut panics = 0;
        for n in 1..=fleet.started {
            let text = std::fs::read_to_string(logs.join(format!("ncp-pca-issuer-{n}.log")))
                .unwrap_or_default();
            panics += text.matches("panicked at").count();
        }
        report.push_str(&format!(
            "operators: {} processes, {} SIGKILLs, panics {panics}, peak RSS {:.1} MiB\n",
            fleet.started,
            fleet.kills,
            peak as f64 / 1024.0
        ));
        report
    })
}

/// Polls until the issuer is Ready.
async fn wait_issuer(issuers: &Api<DynamicObject>, fleet: &mut Fleet) -> anyhow::Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        fleet.sample();
        if let Some(i) = issuers.get_opt("soak").await?
            && condition(&i, "Ready").is_some_and(|r| r["status"] == "True")
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the PrivateCA is not Ready within {READY_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn name_of(i: usize) -> String {
    format!("soak-{i:04}")
}

#[allow(clippy::too_many_lines, clippy::cast_precision_loss)]
async fn soak_with(
    args: &Args,
    client: &kube::Client,
    emulator: &EmulatorHandle,
    ca_tag: &str,
    seeded: u64,
    fleet: &mut Fleet,
    (cluster, binary): (&Cluster, &Path),
) -> anyhow::Result<String> {
    use futures::StreamExt as _;
    let secrets = dynamic(client, "", "v1", "Secret", "secrets");
    apply(
        &secrets,
        serde_json::json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "ncp-credentials"},
            "stringData": {"NCLOUD_ACCESS_KEY": EMU_AK, "NCLOUD_SECRET_KEY": EMU_SK}
        }),
    )
    .await?;
    let issuers = dynamic(
        client,
        "pca.ncp-issuer.dev",
        "v1alpha1",
        "PrivateCA",
        "privatecas",
    );
    apply(
        &issuers,
        serde_json::json!({
            "apiVersion": "pca.ncp-issuer.dev/v1alpha1", "kind": "PrivateCA", "metadata": {"name": "soak"},
            "spec": {"caTag": ca_tag, "endpoint": emulator.base_url(),
                     "credentials": {"secretRef": {"name": "ncp-credentials"}}}
        }),
    )
    .await?;
    wait_issuer(&issuers, fleet).await?;
    progress("issuer Ready; injecting faults");
    let rate = args.fault_rate;
    let mut rules = faults(
        Operation::SignEndCsr,
        &[
            FaultKind::Error500,
            FaultKind::Throttle429,
            FaultKind::Timeout,
            FaultKind::CommitThenLoseResponse,
        ],
        rate,
    );
    for op in [
        Operation::GetEndCert,
        Operation::GetEndCertList,
        Operation::RevokeEndCert,
    ] {
        rules.extend(faults(op, &[FaultKind::Error500, FaultKind::Timeout], rate));
    }
    for rule in rules {
        emulator.add_fault(rule);
    }
    emulator.add_fault(FaultRule::latency(args.latency_ms));
    let before = emulator.stats();
    let crs = dynamic(
        client,
        "cert-manager.io",
        "v1",
        "CertificateRequest",
        "certificaterequests",
    );
    let seen_requests = SeenRequests::default();
    let watch = watch_requests(crs.clone(), seen_requests.clone());

    // Create every Certificate at once (a few creates in flight).
    let certs = dynamic(
        client,
        "cert-manager.io",
        "v1",
        "Certificate",
        "certificates",
    );
    let created_at = Instant::now();
    let creates = futures::stream::iter(0..args.count)
        .map(|i| {
            let certs = certs.clone();
            async move {
                let name = name_of(i);
                apply(
                    &certs,
                    serde_json::json!({
                        "apiVersion": "cert-manager.io/v1", "kind": "Certificate", "metadata": {"name": name},
                        "spec": {"secretName": format!("{name}-tls"), "dnsNames": [format!("{name}.{DOMAIN}")],
                                 "privateKey": {"algorithm": "ECDSA"},
                                 "issuerRef": {"group": "pca.ncp-issuer.dev", "kind": "PrivateCA", "name": "soak"}}
                    }),
                )
                .await
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    let created = creates.iter().filter(|r| r.is_ok()).count();
    progress(&format!("{created} Certificates created"));

    // Until every one is Ready (or Failed) and the kills are done, or the deadline.
    let deadline = created_at + Duration::from_secs(args.timeout_secs);
    let interval = Duration::from_secs(args.kill_interval_secs.max(1));
    let mut next_kill = Instant::now() + interval;
    let mut last_report = Instant::now();
    let mut all_ready_after = None;
    let tally_now = loop {
        fleet.sample();
        let t = tally(&certs).await?;
        if t.ready + t.failed >= args.count && all_ready_after.is_none() {
            all_ready_after = Some(created_at.elapsed());
        }
        if (t.ready + t.failed >= args.count && fleet.kills >= args.kills)
            || Instant::now() > deadline
        {
            break t;
        }
        if fleet.kills < args.kills && Instant::now() >= next_kill {
            fleet.kill_leader(cluster, binary, args).await?;
            next_kill = Instant::now() + interval;
        }
        if last_report.elapsed() > Duration::from_secs(10) {
            progress(&format!(
                "{:.0} s: Ready {}, Failed {}, pending {}, kills {}",
                created_at.elapsed().as_secs_f64(),
                t.ready,
                t.failed,
                t.stuck.len(),
                fleet.kills
            ));
            last_report = Instant::now();
        }
        tokio::time::sleep(POLL).await;
    };
    let issued_requests = crs
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .filter(|cr| condition(cr, "Ready").is_some_and(|r| r["status"] == "True"))
        .count();

    // What each Certificate serves, then delete the first `--delete`.
    let mut served: BTreeMap<String, String> = BTreeMap::new();
    let tls = dynamic(client, "", "v1", "Secret", "secrets");
    for i in 0..args.count {
        if let Some(serial) = served_serial(&tls, &name_of(i)).await {
            served.insert(name_of(i), serial);
        }
    }
    let deleted: BTreeSet<String> = (0..args.delete.min(args.count)).map(name_of).collect();
    progress(&format!("deleting {} Certificates", deleted.len()));
    let delete_started = Instant::now();
    for name in &deleted {
        certs.delete(name, &DeleteParams::background()).await?;
    }
    let released_after = loop {
        fleet.sample();
        let left = crs
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .filter(|cr| {
                cr.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get("cert-manager.io/certificate-name"))
                    .is_some_and(|n| deleted.contains(n))
            })
            .count();
        if left == 0 {
            break Some(delete_started.elapsed());
        }
        if delete_started.elapsed() > DELETE_TIMEOUT {
            progress(&format!(
                "{left} requests of deleted Certificates still held"
            ));
            break None;
        }
        tokio::time::sleep(POLL).await;
    };

    // The audit, without faults.
    emulator.clear_faults();
    let after = emulator.stats();
    let ncp = ncp_client(emulator)?;
    let serials = ncp.list_all_end_cert_serials(ca_tag).await?;
    // The emulator lists oldest first: the seeded certificates come first.
    let skip = usize::try_from(seeded).unwrap_or(usize::MAX);
    let mut by_name: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut signed_certs = Vec::new();
    for serial in serials.iter().skip(skip) {
        let cert = ncp.get_end_cert(ca_tag, serial).await?;
        let parsed = parse_certificates_pem(&cert.cert_pem)
            .ok()
            .and_then(|c| c.into_iter().next());
        let name = parsed
            .as_ref()
            .and_then(|c| {
                c.sans.iter().find_map(|s| match s {
                    San::Dns(d) => d.strip_suffix(&format!(".{DOMAIN}")).map(str::to_string),
                    _ => None,
                })
            })
            .unwrap_or_else(|| format!("(unnamed {serial})"));
        by_name
            .entry(name.clone())
            .or_default()
            .push(serial.clone());
        signed_certs.push(Signed {
            serial: normal_serial(serial),
            name,
            spki: parsed
                .map(|c| c.public_key.spki_der().to_vec())
                .unwrap_or_default(),
        });
    }
    // The requests still present, in case the watch missed a last change; then stop it.
    for cr in crs.list(&ListParams::default()).await?.items {
        record(&seen_requests, &cr);
    }
    watch.abort();
    let requests_line = {
        let seen = seen_requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        request_report(&attribute(&signed_certs, &seen), &seen, signed_certs.len())
    };
    let signed: usize = by_name.values().map(Vec::len).sum();
    let duplicates: usize = by_name.values().map(|v| v.len().saturating_sub(1)).sum();
    let duplicated: Vec<&String> = by_name
        .iter()
        .filter(|(_, v)| v.len() > 1)
        .map(|(n, _)| n)
        .take(10)
        .collect();
    let revoked = |serial: &str| emulator.certificate_revoked(ca_tag, serial) == Some(true);
    let deleted_served: Vec<&String> = deleted.iter().filter_map(|n| served.get(n)).collect();
    let deleted_revoked = deleted_served.iter().filter(|s| revoked(s)).count();
    let live_served: Vec<&String> = served
        .iter()
        .filter(|(n, _)| !deleted.contains(*n))
        .map(|(_, s)| s)
        .collect();
    let live_revoked = live_served.iter().filter(|s| revoked(s)).count();
    let deleted_all: Vec<&String> = deleted
        .iter()
        .filter_map(|n| by_name.get(n))
        .flatten()
        .collect();
    let deleted_all_revoked = deleted_all.iter().filter(|s| revoked(s)).count();
    let logs = cluster.work_dir().join("logs");
    let mut recovered = 0;
    for n in 1..=fleet.started {
        recovered += std::fs::read_to_string(logs.join(format!("ncp-pca-issuer-{n}.log")))
            .unwrap_or_default()
            .matches("recovered a certificate whose signing answer was lost")
            .count();
    }
    let delta = |op: Operation| {
        let (a, b) = (after.calls(op), before.calls(op));
        (a.total - b.total, a.success - b.success)
    };
    let (sign_total, _) = delta(Operation::SignEndCsr);
    let (get_total, get_ok) = delta(Operation::GetEndCert);
    let (list_total, list_ok) = delta(Operation::GetEndCertList);
    let secs = |d: Option<Duration>| {
        d.map_or_else(
            || "never".to_string(),
            |d| format!("{:.0} s", d.as_secs_f64()),
        )
    };
    let mut out = String::new();
    out.push_str(&format!(
        "soak: {} Certificates, faults {:.0} % on sign/lookup/revoke, latency {} ms, {} replicas, kill every {} s, CA seeded with {seeded} certificates\n",
        args.count,
        rate * 100.0,
        args.latency_ms,
        args.replicas,
        args.kill_interval_secs
    ));
    out.push_str(&format!(
        "certificates: created {created}, Ready {}, Failed {}, stuck {} {:?}; all settled after {}\n",
        tally_now.ready,
        tally_now.failed,
        tally_now.stuck.len(),
        tally_now.stuck.iter().take(10).collect::<Vec<_>>(),
        secs(all_ready_after)
    ));
    out.push_str(&format!(
        "ncp: {signed} certificates signed during the soak for {} names, {issued_requests} requests issued; duplicates {duplicates} {duplicated:?}; Sign End Csr calls {sign_total}, faults injected {}\n",
        by_name.len(),
        after.faults_injected - before.faults_injected
    ));
    out.push_str(&requests_line);
    out.push_str(&format!(
        "revocation: {} deleted, {deleted_revoked}/{} served serials revoked, all their certificates {deleted_all_revoked}/{} revoked; {live_revoked}/{} serials served by live Certificates revoked; requests released after {}\n",
        deleted.len(),
        deleted_served.len(),
        deleted_all.len(),
        live_served.len(),
        secs(released_after)
    ));
    let lookups = get_total + list_total;
    out.push_str(&format!(
        "recovery: {recovered} requests recovered by key; lookups Get End Cert {get_total} ({get_ok} ok) + List {list_total} ({list_ok} ok) = {lookups}{}\n",
        if recovered > 0 {
            format!(", {:.1} per recovered request (includes serial fetches and the audit-free revocation path)", lookups as f64 / recovered as f64)
        } else {
            String::new()
        }
    ));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(name: &str, certificate: &str, spki: &[u8], serials: &[&str]) -> SeenRequest {
        SeenRequest {
            name: name.into(),
            certificate: certificate.into(),
            spki: Some(spki.to_vec()),
            serials: serials.iter().map(|s| (*s).to_string()).collect(),
        }
    }

    fn cert(serial: &str, name: &str, spki: &[u8]) -> Signed {
        Signed {
            serial: serial.into(),
            name: name.into(),
            spki: spki.to_vec(),
        }
    }

    #[test]
    fn a_second_certificate_for_one_request_is_a_duplicate_and_a_new_revision_a_reissue() {
        let seen = BTreeMap::from([
            ("u1".to_string(), request("c-1", "c", b"k1", &["01"])),
            ("u2".to_string(), request("c-2", "c", b"k2", &["02"])),
            ("u3".to_string(), request("d-1", "d", b"k3", &["03"])),
            ("u4".to_string(), request("e-1", "e", b"k4", &[])),
            ("u5".to_string(), request("e-2", "e", b"k4", &[])),
        ]);
        let signed = [
            cert("01", "c", b"k1"),
            cert("02", "c", b"k2"),
            cert("03", "d", b"k3"),
            // Signed for u3's key, its serial recorded nowhere: u3 was signed twice.
            cert("04", "d", b"k3"),
            // Two requests with this key and neither carries the serial: nobody's for sure.
            cert("05", "e", b"k4"),
            cert("06", "f", b"k9"),
        ];
        let a = attribute(&signed, &seen);
        assert_eq!((a.by_serial, a.by_key), (3, 1));
        assert_eq!(a.by_request["u3"], ["03", "04"]);
        assert_eq!(a.unattributed.len(), 2);
        let line = request_report(&a, &seen, signed.len());
        assert!(
            line.contains("duplicates per request 1 [\"d-1 (d, uid u3): 03 04\"]"),
            "{line}"
        );
        assert!(
            line.contains("re-issues by cert-manager 1 [\"c: c-1 c-2\"]"),
            "{line}"
        );
        assert!(line.contains("attributable to no request 2"), "{line}");
    }
}
