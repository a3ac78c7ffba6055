//! The issuance benchmark behind `scripts/bench` (a command, not a test).
//!
//! One run starts a real local control plane (etcd, kube-apiserver, kube-controller-manager and the
//! cert-manager controller, see `ncp_pca_issuer::devcluster`), the NCP emulator in this process with a
//! fixed latency on every operation, and our operator as a **separate process** (the release binary),
//! so that its memory can be read from `/proc/<pid>/status`. It then issues N Certificates end to end
//! through cert-manager, in batches, one issuer per batch:
//!
//! - `ncp`: a namespaced `PrivateCA` backed by the emulator (our operator signs through NCP);
//! - `sub`: a namespaced `PrivateCA` in subordinate mode (`spec.subordinate`, design.md §5): NCP signs
//!   its intermediate once, with Sign Sub Csr, while the issuer is set up; every CertificateRequest is
//!   then signed in the cluster, with no NCP call;
//! - `ca`: cert-manager's own CA issuer (`Issuer` with `spec.ca.secretName`), same cluster, same
//!   Certificate shape (ECDSA P-256 keys), as the yardstick.
//!
//! A batch creates all N Certificates at once (a few creates in flight), then waits, with a deadline,
//! until every one is Ready. Latency is measured **client-side**: from the moment the create was sent to
//! the moment a watch on the batch's namespace first showed the Certificate with `Ready=True`. Throughput
//! is N divided by the time from the first create sent to the last Ready seen. Server-side latencies
//! (`creationTimestamp` → Ready `lastTransitionTime`, 1-second resolution) are printed as a cross-check.
//!
//! Each issuer first gets a few warm-up Certificates (not measured). Besides throughput and latency,
//! the report gives the operator's peak and current RSS, NCP calls per Certificate and per
//! CertificateRequest (emulator counters, plus an audit of every certificate the CA signed), and where
//! the time goes: CPU seconds per certificate of each process and the API server's requests by verb
//! and resource. For `sub`, the NCP calls of the issuer's setup (the intermediate) are reported apart
//! from the batch's, and the audit checks that NCP signed the intermediate and none of the leaves, and
//! that every leaf Secret of the batch holds a certificate issued by the intermediate.
//!
//! Every process it starts runs under the devcluster watchdog and is stopped by PID at the end, on
//! error, and when this process dies. Everything listens on 127.0.0.1.

#[path = "bench_parts/objects.rs"]
mod objects;
#[path = "bench_parts/status_write.rs"]
mod status_write;

use anyhow::{Context as _, anyhow, bail};
use clap::{Parser, ValueEnum};
use futures::{StreamExt as _, TryStreamExt as _};
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::runtime::watcher;
use ncp_pca_issuer::devcluster::process::Supervised;
use ncp_pca_issuer::devcluster::{Cluster, ClusterOptions};
use ncp_pca_issuer::emulator::{EmulatorConfig, EmulatorHandle, FaultRule, Stats};
use ncp_pca_issuer::ncp::{self, Credentials, Operation};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Access key of the benchmark's emulator.
const EMU_AK: &str = "bench-access-key";
/// Secret key of the benchmark's emulator.
const EMU_SK: &str = "bench-secret-key-0123456789";
/// Namespace of the operator's cluster resources (and of its ClusterPrivateCA credentials).
const CLUSTER_RESOURCE_NAMESPACE: &str = "cert-manager";
/// How long an issuer may take to become Ready.
const ISSUER_READY_TIMEOUT: Duration = Duration::from_secs(90);
/// How long the operator may take to answer `/readyz`.
const OPERATOR_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the batch's Certificate watch may take to list what exists.
const WATCH_SYNC_TIMEOUT: Duration = Duration::from_secs(30);
/// Fixed part of a batch's deadline; each Certificate adds [`BATCH_TIMEOUT_PER_CERT`].
const BATCH_TIMEOUT_BASE: Duration = Duration::from_secs(120);
/// Per-Certificate part of a batch's deadline.
const BATCH_TIMEOUT_PER_CERT: Duration = Duration::from_millis(500);
/// How often the operator's resident memory is sampled during a batch.
const RSS_SAMPLE_INTERVAL: Duration = Duration::from_millis(200);
/// Pause before each measured batch so that earlier work (cert-manager's follow-up reconciles, event
/// writes) does not land in its measurement.
const SETTLE: Duration = Duration::from_secs(5);
/// Name of the `sub` issuer's intermediate Secret.
const SUB_SECRET_NAME: &str = "bench-intermediate";
/// Common name of the `sub` issuer's intermediate (the audit recognises it by this name).
const SUB_INTERMEDIATE_CN: &str = "Bench subordinate intermediate";
/// Ready reason of an issuer in subordinate mode (`IntermediateReady`, not `CAActive`).
const REASON_INTERMEDIATE_READY: &str = "IntermediateReady";
/// Domain of the Certificates of the `ncp` and `ca` batches.
const DOMAIN: &str = "bench.example.com";
/// Domain of the Certificates of the `sub` batch (the audit tells its leaves apart by it).
const SUB_DOMAIN: &str = "sub.bench.example.com";

/// Command line of `scripts/bench`.
#[derive(Debug, Parser)]
#[command(
    name = "bench",
    about = "Issue N Certificates through ncp-pca-issuer (NCP emulator) and through cert-manager's CA issuer, and compare"
)]
struct Args {
    /// Certificates per batch.
    #[arg(long, default_value_t = 200)]
    count: usize,
    /// Latency added by the emulator to every NCP operation, in milliseconds.
    #[arg(long, default_value_t = 50)]
    latency_ms: u64,
    /// `ncp`: only our issuer; `compare`: our issuer and cert-manager's CA issuer; `subordinate`: our
    /// issuer in subordinate mode and cert-manager's CA issuer; `all`: the three.
    #[arg(long, value_enum, default_value_t = Mode::Compare)]
    mode: Mode,
    /// Whether our batches or cert-manager's CA issuer's batch run first (all modes but `ncp`).
    #[arg(long, value_enum, default_value_t = Order::NcpFirst)]
    order: Order,
    /// The operator's `--concurrency` (CertificateRequests reconciled at once).
    #[arg(long, default_value_t = 8)]
    concurrency: u16,
    /// cert-manager controller's `--kube-api-qps` (its built-in default is 50).
    #[arg(long, default_value_t = 500.0)]
    cm_qps: f64,
    /// cert-manager controller's `--kube-api-burst` (its built-in default is 100).
    #[arg(long, default_value_t = 1000)]
    cm_burst: u32,
    /// Certificates issued through each issuer before the measured batches (not measured).
    #[arg(long, default_value_t = 10)]
    warmup: usize,
    /// Certificate creates in flight at once.
    #[arg(long, default_value_t = 16)]
    create_parallelism: usize,
    /// The operator binary (built by `scripts/bench` with `cargo build --release`).
    #[arg(long, default_value = "target/release/ncp-pca-issuer")]
    operator_bin: PathBuf,
    /// Extra environment for the operator process, `KEY=VALUE` (repeatable), e.g. `RUST_LOG=debug`.
    #[arg(long = "operator-env", value_parser = parse_env)]
    operator_env: Vec<(String, String)>,
    /// Command put in front of the operator binary, split on spaces (e.g. `heaptrack -o /tmp/op`).
    #[arg(long, default_value = "")]
    operator_wrapper: String,
    /// After the batches, write the Issued status of this many requests by server-side apply and as
    /// many by merge patch, and print what each way cost the API server (0: skip).
    #[arg(long, default_value_t = 0)]
    status_writes: usize,
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))
}

/// What to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Only our issuer.
    Ncp,
    /// Our issuer, then (or before) cert-manager's CA issuer.
    Compare,
    /// Our issuer in subordinate mode, then (or before) cert-manager's CA issuer.
    Subordinate,
    /// Our issuer, our issuer in subordinate mode, then (or before) cert-manager's CA issuer.
    All,
}

/// Batch order in all modes but `ncp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Order {
    /// Our issuer(s) first (the CA issuer's batch then runs on a cluster that already holds N more
    /// objects per batch before it).
    #[value(alias = "ours-first")]
    NcpFirst,
    /// cert-manager's CA issuer first.
    CaFirst,
}

/// Which issuer a batch goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IssuerKind {
    /// Our `PrivateCA`, backed by the emulator.
    Ncp,
    /// Our `PrivateCA` in subordinate mode: an intermediate NCP signed once, signing in the cluster.
    Subordinate,
    /// cert-manager's CA issuer.
    Ca,
}

impl IssuerKind {
    /// The report's name of the batch (a column header, at most 18 characters).
    fn label(self) -> &'static str {
        match self {
            Self::Ncp => "ncp-pca-issuer",
            Self::Subordinate => "ncp-pca-issuer sub",
            Self::Ca => "cert-manager CA",
        }
    }

    /// Prefix of the batch's namespace.
    fn namespace_prefix(self) -> &'static str {
        match self {
            Self::Ncp => "bench-ncp",
            Self::Subordinate => "bench-sub",
            Self::Ca => "bench-ca",
        }
    }

    /// Domain of the batch's Certificates (common name and DNS name `<name>.<domain>`).
    fn domain(self) -> &'static str {
        match self {
            Self::Ncp | Self::Ca => DOMAIN,
            Self::Subordinate => SUB_DOMAIN,
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ncp_pca_issuer::telemetry::install_crypto_provider();
    // The apiserver readiness polls of the devcluster log connection errors until it answers.
    ncp_pca_issuer::telemetry::init(
        ncp_pca_issuer::telemetry::LogFormat::Plain,
        "warn,kube_client::client::builder=off",
    );
    if args.count == 0 {
        bail!("--count must be at least 1");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let operator_bin = std::fs::canonicalize(&args.operator_bin).with_context(|| {
        format!(
            "operator binary {} (build it with `cargo build --release --bin ncp-pca-issuer`)",
            args.operator_bin.display()
        )
    })?;

    // 1. The control plane, with cert-manager's client limits raised (see `--cm-qps`).
    let mut options = ClusterOptions::from_env()?
        .with_cert_manager_client_limits(Some(args.cm_qps), Some(args.cm_burst));
    options.extra_crds.push(ncp_pca_issuer::api::crd_yaml()?);
    progress("starting the control plane");
    let started = Instant::now();
    let cluster = tokio::task::spawn_blocking(move || Cluster::start(&options))
        .await
        .context("control plane start task")??;
    progress(&format!(
        "control plane ready in {:.0} s ({})",
        started.elapsed().as_secs_f64(),
        cluster.work_dir().display()
    ));
    let client = cluster.client().await?;

    // 2. The emulator, with the latency on every operation.
    let mut config = EmulatorConfig::new(Credentials::new(EMU_AK, EMU_SK));
    config.test_controls = true;
    config.max_cas = 10_000;
    let emulator = ncp_pca_issuer::emulator::spawn(config)
        .await
        .context("emulator")?;
    emulator.add_fault(FaultRule::latency(args.latency_ms));
    let ca_tag = emulator_root_ca(&emulator).await?;

    // 3. Our operator, a separate process.
    let mut operator = Operator::start(&cluster, &operator_bin, &args)?;
    operator.wait_ready().await?;
    progress(&format!("operator running, pid {}", operator.pid));

    let result = batches(&args, &cluster, &client, &emulator, &ca_tag, &mut operator).await;
    let result = match result {
        Ok(run) => audit(&emulator, &ca_tag, &client, &run)
            .await
            .map(|audit| format!("{}{audit}", run.report)),
        Err(e) => Err(e),
    };
    let result = match result {
        Ok(report) if args.status_writes > 0 => status_write::compare(
            &client,
            &cluster,
            args.status_writes,
            usize::from(args.concurrency),
        )
        .await
        .map(|section| format!("{report}{section}")),
        other => other,
    };

    // The operator is stopped by PID whatever happened (its Drop does the same on an early return).
    operator.stop();
    // Its log outlives the control plane's work dir.
    let kept_log = PathBuf::from("target/bench/ncp-pca-issuer.log");
    let kept = std::fs::create_dir_all("target/bench")
        .and_then(|()| std::fs::copy(&operator.log, &kept_log))
        .is_ok();
    tokio::task::spawn_blocking(move || drop(cluster))
        .await
        .context("control plane stop task")?;
    let _ = emulator.shutdown().await;
    let report = result.map_err(|e| {
        if kept {
            e.context(format!(
                "benchmark failed; operator log: {}",
                kept_log.display()
            ))
        } else {
            e.context("benchmark failed")
        }
    })?;
    print!("{report}");
    if kept {
        eprintln!("bench: operator log kept in {}", kept_log.display());
    }
    Ok(())
}

/// Audits every certificate the emulator's CA signed: how many per Certificate (by common name), to
/// show that no request was signed twice, and, with a `sub` batch, that NCP signed its intermediate
/// and none of its leaves (the leaves are checked in the cluster instead: each Certificate's Secret
/// must hold a certificate issued by the intermediate). The latency fault is lifted first, so that
/// reading a few thousand certificates takes seconds.
async fn audit(
    emulator: &EmulatorHandle,
    ca_tag: &str,
    kube_client: &kube::Client,
    run: &Run,
) -> anyhow::Result<String> {
    use std::fmt::Write as _;
    emulator.clear_faults();
    let client = ncp::Client::new(
        ncp::ClientConfig::new(Credentials::new(EMU_AK, EMU_SK)).with_endpoint(emulator.base_url()),
    )?;
    let serials = client.list_all_end_cert_serials(ca_tag).await?;
    let names: Vec<String> = futures::stream::iter(serials.iter())
        .map(|serial| {
            let client = client.clone();
            async move {
                client
                    .get_end_cert(ca_tag, serial)
                    .await
                    .map(|c| c.common_name)
            }
        })
        .buffer_unordered(8)
        .try_collect()
        .await?;
    // What the CA signed, by kind: the `sub` issuer's intermediates, leaves of `sub` Certificates (there
    // must be none), and the rest (the `ncp` batches' leaves).
    let sub_suffix = format!(".{SUB_DOMAIN}");
    let intermediates = names.iter().filter(|n| *n == SUB_INTERMEDIATE_CN).count();
    let sub_leaves = names.iter().filter(|n| n.ends_with(&sub_suffix)).count();
    let mut counts: HashMap<String, u32> = HashMap::new();
    for name in names
        .into_iter()
        .filter(|n| n != SUB_INTERMEDIATE_CN && !n.ends_with(&sub_suffix))
    {
        *counts.entry(name).or_default() += 1;
    }
    let leaves: u32 = counts.values().sum();
    let mut twice: Vec<(String, u32)> = counts
        .iter()
        .filter(|(_, c)| **c > 1)
        .map(|(n, c)| (n.clone(), *c))
        .collect();
    twice.sort();
    let mut out = String::new();
    if run.kinds.contains(&IssuerKind::Ncp) || leaves > 0 {
        out.push_str(&if twice.is_empty() {
            format!(
                "NCP audit: {leaves} certificates signed for {} Certificates (warm-up included), none twice\n",
                counts.len()
            )
        } else {
            format!(
                "NCP audit: {leaves} certificates signed for {} Certificates (warm-up included); signed more than once: {}\n",
                counts.len(),
                twice
                    .iter()
                    .map(|(n, c)| format!("{n} x{c}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        });
    }
    if let Some(setup) = &run.subordinate {
        let (local, total) = leaves_issued_by(kube_client, &setup.namespace, SUB_INTERMEDIATE_CN)
            .await
            .context("read the sub batch's Secrets")?;
        let _ = writeln!(
            out,
            "NCP audit, subordinate: {intermediates} intermediate signed (Sign Sub Csr), {sub_leaves} leaves of its Certificates signed by NCP  (target 1 and 0: {}); in the cluster, {local} of {total} Certificate Secrets (warm-up included) hold a leaf issued by CN={SUB_INTERMEDIATE_CN}  (target all: {})",
            verdict(intermediates == 1 && sub_leaves == 0),
            verdict(total > 0 && local == total)
        );
    }
    Ok(out)
}

/// Of the Certificates' Secrets in `ns` (`*-tls`), how many hold a certificate whose issuer's common
/// name is `issuer_cn`, and how many there are.
async fn leaves_issued_by(
    client: &kube::Client,
    ns: &str,
    issuer_cn: &str,
) -> anyhow::Result<(usize, usize)> {
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), ns);
    let mut local = 0;
    let mut total = 0;
    for secret in secrets.list(&ListParams::default()).await?.items {
        if !secret
            .metadata
            .name
            .as_ref()
            .is_some_and(|n| n.ends_with("-tls"))
        {
            continue;
        }
        total += 1;
        let Some(crt) = secret.data.as_ref().and_then(|d| d.get("tls.crt")) else {
            continue;
        };
        let issued_here = x509_parser::pem::parse_x509_pem(&crt.0)
            .ok()
            .and_then(|(_, pem)| {
                let (_, cert) = x509_parser::parse_x509_certificate(&pem.contents).ok()?;
                let cn = cert
                    .issuer()
                    .iter_common_name()
                    .next()?
                    .as_str()
                    .ok()?
                    .to_string();
                Some(cn == issuer_cn)
            })
            .unwrap_or(false);
        if issued_here {
            local += 1;
        }
    }
    Ok((local, total))
}

/// What [`batches`] produced: the report, and what the audit needs to know of the run.
struct Run {
    /// The rendered report.
    report: String,
    /// The batches, in the order they ran.
    kinds: Vec<IssuerKind>,
    /// The `sub` issuer's setup, when there was a `sub` batch.
    subordinate: Option<SubordinateSetup>,
}

/// What setting up the `sub` issuer took, before any Certificate (and outside every measurement).
#[derive(Debug, Clone)]
struct SubordinateSetup {
    /// The issuer's namespace.
    namespace: String,
    /// Sign Sub Csr calls (all outcomes) from the apply of the issuer to its `IntermediateReady`.
    sign_sub_csr: u64,
    /// Every NCP call in that time, by operation (the other issuers' periodic checks included).
    ncp_calls: Vec<(String, u64)>,
    /// From the apply of the issuer to `Ready=True` with reason `IntermediateReady`.
    ready_after: Duration,
    /// The intermediate's serial (`status.subordinate.serialNumber`).
    serial: String,
    /// The `UpstreamReady` condition's status and reason, e.g. `True (CAActive)`.
    upstream: String,
}

/// Runs the batches in the chosen order and renders the report.
async fn batches(
    args: &Args,
    cluster: &Cluster,
    client: &kube::Client,
    emulator: &EmulatorHandle,
    ca_tag: &str,
    operator: &mut Operator,
) -> anyhow::Result<Run> {
    let kinds = batch_order(args.mode, args.order);
    let mut subordinate = None;
    // Both issuers first, each warmed up with a few Certificates (apiserver watch caches, cert-manager's
    // informers and code paths, our operator's NCP connections), so that neither batch pays for a cold
    // cluster.
    let mut issuers = Vec::new();
    for kind in &kinds {
        let ns = cluster.unique_namespace(kind.namespace_prefix()).await?;
        let issuer_ref = match kind {
            IssuerKind::Ncp => ncp_issuer(client, &ns, emulator, ca_tag, false).await?,
            IssuerKind::Subordinate => {
                let before = emulator.stats();
                let started = Instant::now();
                let issuer_ref = ncp_issuer(client, &ns, emulator, ca_tag, true).await?;
                let ready_after = started.elapsed();
                let after = emulator.stats();
                let (serial, upstream) = subordinate_status(client, &ns).await?;
                let setup = SubordinateSetup {
                    namespace: ns.clone(),
                    sign_sub_csr: after.calls(Operation::SignSubCsr).total
                        - before.calls(Operation::SignSubCsr).total,
                    ncp_calls: call_delta(&before, &after),
                    ready_after,
                    serial,
                    upstream,
                };
                progress(&format!(
                    "{}: intermediate {} Ready in {:.1} s, {} Sign Sub Csr",
                    kind.label(),
                    setup.serial,
                    setup.ready_after.as_secs_f64(),
                    setup.sign_sub_csr
                ));
                subordinate = Some(setup);
                issuer_ref
            }
            IssuerKind::Ca => ca_issuer(client, &ns).await?,
        };
        if args.warmup > 0 {
            progress(&format!(
                "{}: warming up with {} Certificates",
                kind.label(),
                args.warmup
            ));
            run_batch(
                args,
                client,
                &ns,
                *kind,
                &issuer_ref,
                ("warmup", args.warmup),
                emulator,
                operator,
            )
            .await
            .context("warm-up")?;
        }
        issuers.push((*kind, ns, issuer_ref));
    }
    let mut results = Vec::new();
    for (kind, ns, issuer_ref) in &issuers {
        tokio::time::sleep(SETTLE).await;
        progress(&format!(
            "{}: issuing {} Certificates in namespace {ns}",
            kind.label(),
            args.count
        ));
        let result = run_batch(
            args,
            client,
            ns,
            *kind,
            issuer_ref,
            ("cert", args.count),
            emulator,
            operator,
        )
        .await?;
        progress(&format!(
            "{}: {} Ready in {:.1} s",
            kind.label(),
            args.count,
            result.wall.as_secs_f64()
        ));
        results.push(result);
    }
    Ok(Run {
        report: render(args, &results, subordinate.as_ref(), operator),
        kinds,
        subordinate,
    })
}

/// The batches of a run, in order: ours (`ncp`, then `sub`) and cert-manager's CA issuer's before or
/// after them.
fn batch_order(mode: Mode, order: Order) -> Vec<IssuerKind> {
    let mut kinds = match mode {
        Mode::Ncp | Mode::Compare => vec![IssuerKind::Ncp],
        Mode::Subordinate => vec![IssuerKind::Subordinate],
        Mode::All => vec![IssuerKind::Ncp, IssuerKind::Subordinate],
    };
    match (mode, order) {
        (Mode::Ncp, _) => {}
        (_, Order::NcpFirst) => kinds.push(IssuerKind::Ca),
        (_, Order::CaFirst) => kinds.insert(0, IssuerKind::Ca),
    }
    kinds
}

/// Prints a progress line on stderr (the report goes to stdout).
fn progress(msg: &str) {
    eprintln!("bench: {msg}");
}

/// Creates the emulator's root CA (EC P-256, ten years) and returns its tag.
async fn emulator_root_ca(emulator: &EmulatorHandle) -> anyhow::Result<String> {
    use ncp::types::{CaType, KeyType, Period, X509Parameters};
    let client = ncp::Client::new(
        ncp::ClientConfig::new(Credentials::new(EMU_AK, EMU_SK)).with_endpoint(emulator.base_url()),
    )?;
    let new = ncp::NewCa {
        ca_type: CaType::PrivateRoot,
        issuer_tag: None,
        alias: "benchroot".into(),
        memo: None,
        key_type: KeyType::Ec256,
        period: Period::Days(3650),
        subject: X509Parameters {
            common_name: Some("Bench Root CA".into()),
            ..X509Parameters::default()
        },
    };
    Ok(client.create_ca(&new).await?.ca_info.ca_tag)
}

use objects::{condition, dynamic};

fn certificates(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    dynamic(
        client,
        ns,
        "cert-manager.io",
        "v1",
        "Certificate",
        "certificates",
    )
}

/// Server-side-applies a JSON object as the benchmark.
async fn apply(api: &Api<DynamicObject>, object: serde_json::Value) -> anyhow::Result<()> {
    objects::apply(api, object, "ncp-pca-bench").await
}

/// Whether an object's `status.conditions` has `Ready=True`.
fn is_ready(obj: &DynamicObject) -> bool {
    ready_condition(obj).is_some_and(|c| c["status"] == "True")
}

fn ready_condition(obj: &DynamicObject) -> Option<&serde_json::Value> {
    condition(obj, "Ready")
}

/// Polls until the named object is Ready (with `reason`, when given), or fails after `timeout` with
/// its last Ready condition.
async fn wait_ready(
    api: &Api<DynamicObject>,
    name: &str,
    reason: Option<&str>,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let mut last = serde_json::Value::Null;
    loop {
        if let Some(obj) = api.get_opt(name).await? {
            if is_ready(&obj)
                && reason.is_none_or(|r| ready_condition(&obj).is_some_and(|c| c["reason"] == r))
            {
                return Ok(());
            }
            last = ready_condition(&obj).cloned().unwrap_or_default();
        }
        if Instant::now() > deadline {
            bail!("{name} not Ready within {timeout:?}; last Ready condition: {last}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Credentials Secret and a `PrivateCA` on the emulator's CA, Ready; returns the issuerRef. With
/// `subordinate`, the PrivateCA is in subordinate mode (an EC P-256 intermediate in the Secret
/// [`SUB_SECRET_NAME`], named [`SUB_INTERMEDIATE_CN`]) and Ready means reason `IntermediateReady`.
async fn ncp_issuer(
    client: &kube::Client,
    ns: &str,
    emulator: &EmulatorHandle,
    ca_tag: &str,
    subordinate: bool,
) -> anyhow::Result<serde_json::Value> {
    let secrets = dynamic(client, ns, "", "v1", "Secret", "secrets");
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
        ns,
        "pca.ncp-issuer.dev",
        "v1alpha1",
        "PrivateCA",
        "privatecas",
    );
    let mut issuer = serde_json::json!({
        "apiVersion": "pca.ncp-issuer.dev/v1alpha1", "kind": "PrivateCA", "metadata": {"name": "bench"},
        "spec": {"caTag": ca_tag, "endpoint": emulator.base_url(),
                 "credentials": {"secretRef": {"name": "ncp-credentials"}}}
    });
    if subordinate {
        issuer["spec"]["subordinate"] = serde_json::json!({
            "secretName": SUB_SECRET_NAME,
            "subject": {"commonName": SUB_INTERMEDIATE_CN},
        });
    }
    apply(&issuers, issuer).await?;
    let reason = subordinate.then_some(REASON_INTERMEDIATE_READY);
    wait_ready(&issuers, "bench", reason, ISSUER_READY_TIMEOUT).await?;
    Ok(serde_json::json!({"group": "pca.ncp-issuer.dev", "kind": "PrivateCA", "name": "bench"}))
}

/// A CA key pair Secret (EC P-256, made with rcgen) and a cert-manager CA `Issuer` on it, Ready;
/// returns the issuerRef.
async fn ca_issuer(client: &kube::Client, ns: &str) -> anyhow::Result<serde_json::Value> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Bench cert-manager CA");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    params.not_after = rcgen::date_time_ymd(2035, 1, 1);
    let cert = params.self_signed(&key)?;
    let secrets = dynamic(client, ns, "", "v1", "Secret", "secrets");
    apply(
        &secrets,
        serde_json::json!({
            "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": "bench-ca"},
            "stringData": {"tls.crt": cert.pem(), "tls.key": key.serialize_pem()}
        }),
    )
    .await?;
    let issuers = dynamic(client, ns, "cert-manager.io", "v1", "Issuer", "issuers");
    apply(
        &issuers,
        serde_json::json!({
            "apiVersion": "cert-manager.io/v1", "kind": "Issuer", "metadata": {"name": "bench"},
            "spec": {"ca": {"secretName": "bench-ca"}}
        }),
    )
    .await?;
    wait_ready(&issuers, "bench", None, ISSUER_READY_TIMEOUT).await?;
    Ok(serde_json::json!({"group": "cert-manager.io", "kind": "Issuer", "name": "bench"}))
}

/// The `sub` issuer's intermediate serial and its `UpstreamReady` condition (`status (reason)`).
async fn subordinate_status(client: &kube::Client, ns: &str) -> anyhow::Result<(String, String)> {
    let issuers = dynamic(
        client,
        ns,
        "pca.ncp-issuer.dev",
        "v1alpha1",
        "PrivateCA",
        "privatecas",
    );
    let obj = issuers
        .get("bench")
        .await
        .context("get the sub PrivateCA")?;
    let serial = obj.data["status"]["subordinate"]["serialNumber"]
        .as_str()
        .unwrap_or("?")
        .to_string();
    let upstream = condition(&obj, "UpstreamReady").map_or_else(
        || "absent".to_string(),
        |c| {
            format!(
                "{} ({})",
                c["status"].as_str().unwrap_or("?"),
                c["reason"].as_str().unwrap_or("?")
            )
        },
    );
    Ok((serial, upstream))
}

/// Our operator, running as its own process under the devcluster watchdog.
struct Operator {
    process: Supervised,
    /// The operator's own PID (the watchdog's child), for `/proc/<pid>/status`.
    pid: u32,
    http: SocketAddr,
    log: PathBuf,
    binary: PathBuf,
    http_client: reqwest::Client,
}

impl Operator {
    fn start(cluster: &Cluster, binary: &Path, args: &Args) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let http = SocketAddr::from(([127, 0, 0, 1], port));
        let log = cluster.work_dir().join("logs").join("ncp-pca-issuer.log");
        let mut argv = vec![
            "controller".to_string(),
            format!("--kubeconfig={}", cluster.kubeconfig_path().display()),
            "--leader-elect=false".to_string(),
            format!("--cluster-resource-namespace={CLUSTER_RESOURCE_NAMESPACE}"),
            format!("--http-addr={http}"),
            format!("--concurrency={}", args.concurrency),
        ];
        // The watchdog passes its arguments through and the environment is inherited: extra variables
        // go in front through `env`, a wrapper (heaptrack, perf …) in front of the binary.
        let mut command: Vec<String> = Vec::new();
        if !args.operator_env.is_empty() {
            command.push("env".into());
            command.extend(args.operator_env.iter().map(|(k, v)| format!("{k}={v}")));
        }
        command.extend(args.operator_wrapper.split_whitespace().map(str::to_string));
        command.push(binary.display().to_string());
        command.append(&mut argv);
        let program = PathBuf::from(command.remove(0));
        let argv = command;
        let process = Supervised::start("ncp-pca-issuer", &program, &argv, log.clone())
            .context("start the operator")?;
        let pid = find_descendant(process.pid(), binary, Duration::from_secs(30))?;
        Ok(Self {
            process,
            pid,
            http,
            log,
            binary: binary.to_path_buf(),
            http_client: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()?,
        })
    }

    /// Fails when the operator has exited, with the tail of its log.
    fn check_alive(&mut self) -> anyhow::Result<()> {
        match self.process.exited() {
            Some(status) => bail!(
                "the operator exited ({status}):\n{}",
                self.process.log_tail(30)
            ),
            None => Ok(()),
        }
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + OPERATOR_READY_TIMEOUT;
        let url = format!("http://{}/readyz", self.http);
        loop {
            self.check_alive()?;
            if let Ok(r) = self.http_client.get(&url).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "operator not ready within {OPERATOR_READY_TIMEOUT:?}:\n{}",
                    self.process.log_tail(30)
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// `(VmHWM, VmRSS)` in KiB.
    fn memory(&self) -> anyhow::Result<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .with_context(|| format!("read /proc/{}/status", self.pid))?;
        let field = |name: &str| -> anyhow::Result<u64> {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .ok_or_else(|| anyhow!("no {name} in /proc/{}/status", self.pid))
        };
        Ok((field("VmHWM:")?, field("VmRSS:")?))
    }

    /// The operator's CertificateRequest reconcile counters and its Sign End Csr latency, from
    /// `/metrics`.
    async fn counters(&self) -> anyhow::Result<OperatorCounters> {
        let text = self
            .http_client
            .get(format!("http://{}/metrics", self.http))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        // Sum of the samples of `metric` whose labels include `label`.
        let sum = |metric: &str, label: &str| -> f64 {
            text.lines()
                .filter(|l| l.starts_with(&format!("{metric}{{")) && l.contains(label))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum()
        };
        let cr = r#"controller="CertificateRequest""#;
        let sign = r#"operation="sign_end_csr""#;
        Ok(OperatorCounters {
            reconciles: sum("ncp_pca_issuer_reconcile_total", cr),
            reconcile_seconds: sum("ncp_pca_issuer_reconcile_duration_seconds_sum", cr),
            sign_calls: sum("ncp_pca_issuer_ncp_request_duration_seconds_count", sign),
            sign_seconds: sum("ncp_pca_issuer_ncp_request_duration_seconds_sum", sign),
        })
    }

    /// Stops the operator by PID: TERM through its watchdog, then KILL if it is somehow still there.
    fn stop(&mut self) {
        self.process.stop();
        if is_process_of(self.pid, &self.binary) {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &self.pid.to_string()])
                .status();
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether `pid` is a running process of `binary` (first word of its command line).
fn is_process_of(pid: u32, binary: &Path) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
        cmdline.split(|b| *b == 0).next().is_some_and(|arg0| {
            Path::new(std::ffi::OsStr::new(&*String::from_utf8_lossy(arg0))) == binary
        })
    })
}

/// The parent PID of `pid`, from `/proc/<pid>/stat`.
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name: state, ppid, …
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(1))
        .and_then(|p| p.parse().ok())
}

/// Finds the descendant of `ancestor` that runs `binary` (its child, or deeper when a wrapper such as
/// `env` or `heaptrack` starts it), within `timeout`.
fn find_descendant(ancestor: u32, binary: &Path, timeout: Duration) -> anyhow::Result<u32> {
    let deadline = Instant::now() + timeout;
    loop {
        for entry in std::fs::read_dir("/proc")?.filter_map(Result::ok) {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if !is_process_of(pid, binary) {
                continue;
            }
            let mut up = parent_of(pid);
            for _ in 0..8 {
                match up {
                    Some(p) if p == ancestor => return Ok(pid),
                    Some(p) if p > 1 => up = parent_of(p),
                    _ => break,
                }
            }
        }
        if Instant::now() > deadline {
            bail!(
                "no {} process under watchdog {ancestor} within {timeout:?}",
                binary.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Clock ticks per second of `/proc/<pid>/stat` times (USER_HZ, 100 on Linux x86_64 and arm64).
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

/// CPU seconds (user + system) used so far by this process and by each of its descendants, summed by
/// command name (`kube-apiserver`, `etcd`, `cert-manager-co…`, `ncp-pca-issuer`, …). This process is
/// `bench` (the watches and the in-process emulator).
fn cpu_by_component() -> std::collections::BTreeMap<String, f64> {
    let me = std::process::id();
    let mut out = std::collections::BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.filter_map(Result::ok) {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = stat[open + 1..close].to_string();
        // After the command name: state (0), ppid (1), …, utime (11), stime (12).
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        let mut ours = pid == me;
        let mut up = fields.get(1).and_then(|p| p.parse::<u32>().ok());
        for _ in 0..8 {
            match up {
                Some(p) if p == me => {
                    ours = true;
                    break;
                }
                Some(p) if p > 1 => up = parent_of(p),
                _ => break,
            }
        }
        if ours && comm != "sh" && comm != "sleep" {
            let name = if pid == me {
                "bench+emulator".to_string()
            } else {
                comm
            };
            *out.entry(name).or_default() += (ticks(11) + ticks(12)) / CLOCK_TICKS_PER_SECOND;
        }
    }
    out
}

/// The API server's request counts (`apiserver_request_total`) by `verb resource[/subresource]`.
async fn apiserver_requests(
    client: &kube::Client,
) -> anyhow::Result<std::collections::BTreeMap<String, f64>> {
    let req = http::Request::get("/metrics").body(Vec::new())?;
    let text = client
        .request_text(req)
        .await
        .context("apiserver /metrics")?;
    let mut out = std::collections::BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
    {
        let label = |name: &str| -> String {
            line.split(&format!("{name}=\""))
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap_or_default()
                .to_string()
        };
        let Some(value) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) else {
            continue;
        };
        let sub = label("subresource");
        let key = format!(
            "{} {}{}",
            label("verb"),
            label("resource"),
            if sub.is_empty() {
                String::new()
            } else {
                format!("/{sub}")
            }
        );
        *out.entry(key).or_default() += value;
    }
    Ok(out)
}

/// Counters read from the operator's `/metrics`.
#[derive(Debug, Clone, Copy, Default)]
struct OperatorCounters {
    /// CertificateRequest reconciles.
    reconciles: f64,
    /// Time spent in them.
    reconcile_seconds: f64,
    /// Sign End Csr calls, as the operator saw them.
    sign_calls: f64,
    /// Time spent in them.
    sign_seconds: f64,
}

impl std::ops::Sub for OperatorCounters {
    type Output = Self;
    fn sub(self, o: Self) -> Self {
        Self {
            reconciles: self.reconciles - o.reconciles,
            reconcile_seconds: self.reconcile_seconds - o.reconcile_seconds,
            sign_calls: self.sign_calls - o.sign_calls,
            sign_seconds: self.sign_seconds - o.sign_seconds,
        }
    }
}

/// What one batch measured.
struct BatchResult {
    kind: IssuerKind,
    /// First create sent → last Ready seen.
    wall: Duration,
    /// Client-side request-to-Ready latencies, sorted.
    latencies: Vec<Duration>,
    /// Server-side latencies in whole seconds, sorted.
    server_latencies: Vec<i64>,
    /// Emulator counters, after minus before.
    ncp_calls: Vec<(String, u64)>,
    sign_end_csr_success: u64,
    /// Sign End Csr and Sign Sub Csr calls, all outcomes (0 for a `sub` batch: leaves are signed in the
    /// cluster).
    ncp_signing_calls: u64,
    /// Certificates the emulator signed (any operation, any CA).
    ncp_certificates_signed: u64,
    /// CertificateRequests in the namespace at the end (N when nothing was re-issued).
    requests: usize,
    /// CertificateRequests seen during the batch, deleted ones included, and how many were deleted.
    requests_seen: (usize, usize),
    /// The operator's counters, after minus before.
    operator: OperatorCounters,
    /// API server requests during the batch, by verb and resource.
    apiserver: std::collections::BTreeMap<String, f64>,
    /// CPU seconds used during the batch, by component.
    cpu: std::collections::BTreeMap<String, f64>,
    /// Highest operator VmRSS sampled during the batch, KiB.
    rss_peak_sampled_kib: u64,
    /// Operator VmHWM and VmRSS at the end of the batch, KiB.
    hwm_kib: u64,
    rss_kib: u64,
}

/// Creates `n` Certificates named `<prefix>-NNNNN` on `issuer_ref` in `ns` and waits until all are
/// Ready.
#[allow(clippy::too_many_arguments)]
async fn run_batch(
    args: &Args,
    client: &kube::Client,
    ns: &str,
    kind: IssuerKind,
    issuer_ref: &serde_json::Value,
    (prefix, n): (&'static str, usize),
    emulator: &EmulatorHandle,
    operator: &mut Operator,
) -> anyhow::Result<BatchResult> {
    let api = certificates(client, ns);
    let stats_before = emulator.stats();
    let counters_before = operator.counters().await?;
    let cpu_before = cpu_by_component();
    let requests_before = apiserver_requests(client).await?;

    // The watch starts (and lists) before the first create, so no Ready is missed.
    let ready: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let changed = Arc::new(tokio::sync::Notify::new());
    let (synced_tx, synced_rx) = tokio::sync::oneshot::channel::<()>();
    let watch = tokio::spawn({
        let api = api.clone();
        let ready = ready.clone();
        let changed = changed.clone();
        async move {
            let mut synced = Some(synced_tx);
            let mut events = std::pin::pin!(watcher(api, watcher::Config::default()));
            while let Some(event) = events.next().await {
                let obj = match event {
                    Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => o,
                    Ok(watcher::Event::InitDone) => {
                        if let Some(tx) = synced.take() {
                            let _ = tx.send(());
                        }
                        continue;
                    }
                    // Restarts and errors: the watcher re-lists by itself.
                    Ok(_) | Err(_) => continue,
                };
                if is_ready(&obj)
                    && let Some(name) = obj.metadata.name.clone()
                    && name.starts_with(prefix)
                {
                    let now = Instant::now();
                    let mut map = ready
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    map.entry(name).or_insert(now);
                    drop(map);
                    changed.notify_one();
                }
            }
        }
    });
    // Aborts the watch on every exit path.
    struct AbortOnDrop(tokio::task::JoinHandle<()>);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let _watch = AbortOnDrop(watch);
    // Every CertificateRequest of the batch that ever existed, deleted ones included (cert-manager
    // replaces a request now and then under load; each one is signed once).
    let seen_requests: Arc<Mutex<(std::collections::HashSet<String>, usize)>> = Arc::default();
    let request_watch = tokio::spawn({
        let api = dynamic(
            client,
            ns,
            "cert-manager.io",
            "v1",
            "CertificateRequest",
            "certificaterequests",
        );
        let seen = seen_requests.clone();
        async move {
            let mut events = std::pin::pin!(watcher(api, watcher::Config::default()));
            while let Some(event) = events.next().await {
                let (obj, deleted) = match event {
                    Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => (o, false),
                    Ok(watcher::Event::Delete(o)) => (o, true),
                    Ok(_) | Err(_) => continue,
                };
                if obj
                    .metadata
                    .name
                    .as_ref()
                    .is_some_and(|n| n.starts_with(prefix))
                    && let Some(uid) = obj.metadata.uid
                {
                    let mut seen = seen
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    seen.0.insert(uid);
                    if deleted {
                        seen.1 += 1;
                    }
                }
            }
        }
    });
    let _request_watch = AbortOnDrop(request_watch);
    tokio::time::timeout(WATCH_SYNC_TIMEOUT, synced_rx)
        .await
        .context("the Certificate watch did not sync")?
        .context("the Certificate watch ended")?;

    // Memory sampler.
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = tokio::spawn({
        let sampling = sampling.clone();
        let pid = operator.pid;
        async move {
            let mut peak = 0u64;
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                if let Some(rss) = std::fs::read_to_string(format!("/proc/{pid}/status"))
                    .ok()
                    .and_then(|s| {
                        s.lines()
                            .find_map(|l| l.strip_prefix("VmRSS:"))
                            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                    })
                {
                    peak = peak.max(rss);
                }
                tokio::time::sleep(RSS_SAMPLE_INTERVAL).await;
            }
            peak
        }
    });

    // Every Certificate at once (a few creates in flight), each with the instant its create was sent.
    let started = Instant::now();
    let sent: HashMap<String, Instant> = futures::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            let issuer_ref = issuer_ref.clone();
            async move {
                let name = format!("{prefix}-{i:05}");
                let body: DynamicObject = serde_json::from_value(serde_json::json!({
                    "apiVersion": "cert-manager.io/v1", "kind": "Certificate",
                    "metadata": {"name": name},
                    "spec": {
                        "secretName": format!("{name}-tls"),
                        "commonName": format!("{name}.{}", kind.domain()),
                        "dnsNames": [format!("{name}.{}", kind.domain())],
                        "privateKey": {"algorithm": "ECDSA", "size": 256},
                        "issuerRef": issuer_ref,
                    }
                }))?;
                let at = Instant::now();
                api.create(&PostParams::default(), &body)
                    .await
                    .with_context(|| format!("create Certificate {name}"))?;
                anyhow::Ok((name, at))
            }
        })
        .buffer_unordered(args.create_parallelism.max(1))
        .try_collect()
        .await?;
    progress(&format!(
        "{}: {n} Certificates created in {:.1} s",
        kind.label(),
        started.elapsed().as_secs_f64()
    ));

    // Wait, with a deadline, until every one is Ready.
    let timeout =
        BATCH_TIMEOUT_BASE + BATCH_TIMEOUT_PER_CERT * u32::try_from(n).unwrap_or(u32::MAX);
    let deadline = started + timeout;
    let mut last_progress = Instant::now();
    loop {
        let done = ready
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len();
        if done >= n {
            break;
        }
        operator.check_alive()?;
        if Instant::now() > deadline {
            sampling.store(false, std::sync::atomic::Ordering::Relaxed);
            let stuck = describe_unready(&api, &ready).await;
            bail!(
                "{}: only {done} of {n} Certificates Ready within {timeout:?}; not Ready (first 10):\n{stuck}",
                kind.label()
            );
        }
        if last_progress.elapsed() >= Duration::from_secs(5) {
            progress(&format!(
                "{}: {done}/{n} Ready after {:.0} s",
                kind.label(),
                started.elapsed().as_secs_f64()
            ));
            last_progress = Instant::now();
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), changed.notified()).await;
    }
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let rss_peak_sampled_kib = sampler.await.unwrap_or_default();

    let ready = ready
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let last_ready = ready.values().max().copied().unwrap_or(started);
    let mut latencies: Vec<Duration> = sent
        .iter()
        .filter_map(|(name, at)| ready.get(name).map(|r| r.saturating_duration_since(*at)))
        .collect();
    latencies.sort();

    let list = api.list(&ListParams::default()).await?;
    let mut server_latencies: Vec<i64> = list
        .items
        .iter()
        .filter_map(|c| {
            let created = c.metadata.creation_timestamp.as_ref()?.0.as_second();
            let ready_at = ready_condition(c)?["lastTransitionTime"]
                .as_str()?
                .parse::<k8s_openapi::jiff::Timestamp>()
                .ok()?
                .as_second();
            Some(ready_at - created)
        })
        .collect();
    server_latencies.sort_unstable();
    let requests = dynamic(
        client,
        ns,
        "cert-manager.io",
        "v1",
        "CertificateRequest",
        "certificaterequests",
    )
    .list(&ListParams::default())
    .await?
    .items
    .iter()
    .filter(|r| {
        r.metadata
            .name
            .as_ref()
            .is_some_and(|n| n.starts_with(prefix))
    })
    .count();

    // Late creations and deletions settle within the pause before the next batch; read them now.
    let requests_seen = {
        let seen = seen_requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (seen.0.len(), seen.1)
    };
    let stats_after = emulator.stats();
    let (hwm_kib, rss_kib) = operator.memory()?;
    let counters = operator.counters().await? - counters_before;
    let apiserver = apiserver_requests(client)
        .await?
        .into_iter()
        .map(|(k, after)| {
            let before = requests_before.get(&k).copied().unwrap_or(0.0);
            (k, after - before)
        })
        .filter(|(_, d)| *d >= 1.0)
        .collect();
    let cpu = cpu_by_component()
        .into_iter()
        .map(|(name, after)| {
            let before = cpu_before.get(&name).copied().unwrap_or(0.0);
            (name, after - before)
        })
        .filter(|(_, used)| *used > 0.0)
        .collect();
    Ok(BatchResult {
        kind,
        wall: last_ready.saturating_duration_since(started),
        latencies,
        server_latencies,
        ncp_calls: call_delta(&stats_before, &stats_after),
        sign_end_csr_success: stats_after.calls(Operation::SignEndCsr).success
            - stats_before.calls(Operation::SignEndCsr).success,
        ncp_signing_calls: [Operation::SignEndCsr, Operation::SignSubCsr]
            .iter()
            .map(|op| stats_after.calls(*op).total - stats_before.calls(*op).total)
            .sum(),
        ncp_certificates_signed: stats_after.certificates_issued_total
            - stats_before.certificates_issued_total,
        requests,
        requests_seen,
        operator: counters,
        apiserver,
        cpu,
        rss_peak_sampled_kib,
        hwm_kib,
        rss_kib,
    })
}

/// The first few Certificates not seen Ready, with their Ready condition, for a timeout message.
async fn describe_unready(
    api: &Api<DynamicObject>,
    ready: &Arc<Mutex<HashMap<String, Instant>>>,
) -> String {
    let ready: Vec<String> = ready
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .keys()
        .cloned()
        .collect();
    match api.list(&ListParams::default()).await {
        Ok(list) => list
            .items
            .iter()
            .filter(|c| c.metadata.name.as_ref().is_none_or(|n| !ready.contains(n)))
            .take(10)
            .map(|c| {
                format!(
                    "  {}: {}",
                    c.metadata.name.clone().unwrap_or_default(),
                    c.data["status"]["conditions"]
                )
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Err(e) => format!("  (cannot list Certificates: {e})"),
    }
}

/// Calls per operation (all outcomes) between two snapshots, non-zero only.
fn call_delta(before: &Stats, after: &Stats) -> Vec<(String, u64)> {
    after
        .calls
        .iter()
        .map(|(op, c)| {
            let b = before.calls.get(op).map_or(0, |b| b.total);
            (op.clone(), c.total - b)
        })
        .filter(|(_, d)| *d > 0)
        .collect()
}

/// Nearest-rank percentile of sorted values.
fn percentile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    // A rank between 1 and the number of values: a whole number that fits.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let rank = (p / 100.0 * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted.get(rank.min(sorted.len()) - 1).copied()
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

fn secs(d: Option<Duration>) -> String {
    d.map_or("-".into(), |d| format!("{:.2}", d.as_secs_f64()))
}

/// The report: one column per issuer, then the ratio and the targets.
fn render(
    args: &Args,
    results: &[BatchResult],
    subordinate: Option<&SubordinateSetup>,
    operator: &Operator,
) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().nth(2).map(str::to_string))
        .unwrap_or_default();
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "ncp-pca-issuer benchmark, {now}, {cpus} CPUs (15-min load average at the end {load}); {} Certificates per issuer (ECDSA P-256, after {} warm-up ones), emulator latency {} ms on every NCP operation",
        args.count, args.warmup, args.latency_ms
    );
    let _ = writeln!(
        out,
        "operator: release binary, separate process, --concurrency {}; cert-manager: --kube-api-qps {} --kube-api-burst {}, 5 workers per controller; batches: {}",
        args.concurrency,
        args.cm_qps,
        args.cm_burst,
        results
            .iter()
            .map(|r| r.kind.label())
            .collect::<Vec<_>>()
            .join(" then ")
    );
    let _ = writeln!(
        out,
        "latency = client-side, Certificate create sent → Ready=True seen by a watch; throughput = N / (first create → last Ready)"
    );
    let _ = writeln!(out);
    let col =
        |f: &dyn Fn(&BatchResult) -> String| -> Vec<String> { results.iter().map(f).collect() };
    let rows: Vec<(&str, Vec<String>)> = vec![
        ("issuer", col(&|r| r.kind.label().to_string())),
        (
            "wall time, first create → last Ready (s)",
            col(&|r| format!("{:.2}", r.wall.as_secs_f64())),
        ),
        (
            "throughput (certificates/s)",
            col(&|r| format!("{:.2}", throughput(r))),
        ),
        (
            "latency p50 (s)",
            col(&|r| secs(percentile(&r.latencies, 50.0))),
        ),
        (
            "latency p99 (s)",
            col(&|r| secs(percentile(&r.latencies, 99.0))),
        ),
        (
            "latency max (s)",
            col(&|r| secs(r.latencies.last().copied())),
        ),
        (
            "server-side p50 / p99 (s, 1 s resolution)",
            col(&|r| {
                format!(
                    "{} / {}",
                    percentile(&r.server_latencies, 50.0).map_or("-".into(), |v| v.to_string()),
                    percentile(&r.server_latencies, 99.0).map_or("-".into(), |v| v.to_string())
                )
            }),
        ),
        (
            "CertificateRequests at the end",
            col(&|r| r.requests.to_string()),
        ),
        (
            "CertificateRequests seen / deleted by cert-manager",
            col(&|r| format!("{} / {}", r.requests_seen.0, r.requests_seen.1)),
        ),
        (
            "NCP Sign End Csr calls per certificate",
            col(&|r| format!("{:.2}", r.sign_end_csr_success as f64 / args.count as f64)),
        ),
        (
            "NCP signing calls (End + Sub Csr) per certificate",
            col(&|r| format!("{:.2}", r.ncp_signing_calls as f64 / args.count as f64)),
        ),
        (
            "NCP calls per certificate (all operations)",
            col(&|r| {
                let total: u64 = r.ncp_calls.iter().map(|(_, c)| c).sum();
                format!("{:.2}", total as f64 / args.count as f64)
            }),
        ),
        (
            "operator CertificateRequest reconciles per cert",
            col(&|r| format!("{:.2}", r.operator.reconciles / args.count as f64)),
        ),
        (
            "operator mean reconcile time (ms)",
            col(&|r| mean_ms(r.operator.reconcile_seconds, r.operator.reconciles)),
        ),
        (
            "operator mean Sign End Csr time (ms)",
            col(&|r| mean_ms(r.operator.sign_seconds, r.operator.sign_calls)),
        ),
        (
            "operator RSS peak sampled in batch (MiB)",
            col(&|r| mib(r.rss_peak_sampled_kib)),
        ),
        (
            "operator VmHWM at batch end (MiB)",
            col(&|r| mib(r.hwm_kib)),
        ),
        (
            "operator VmRSS at batch end (MiB)",
            col(&|r| mib(r.rss_kib)),
        ),
    ];
    let ncp_breakdown: Vec<String> = results
        .iter()
        .map(|r| {
            if r.ncp_calls.is_empty() {
                return "none".to_string();
            }
            r.ncp_calls
                .iter()
                .map(|(op, c)| format!("{op}={c}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    let mut breakdowns = vec![("NCP calls during batch", ncp_breakdown)];
    let cpu_breakdown: Vec<String> = results
        .iter()
        .map(|r| {
            r.cpu
                .iter()
                .map(|(name, used)| format!("{name}={:.1}", used * 1000.0 / args.count as f64))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    breakdowns.push(("CPU ms per certificate, by process", cpu_breakdown));
    let request_breakdown: Vec<String> = results
        .iter()
        .map(|r| {
            let mut by_count: Vec<(&String, &f64)> = r.apiserver.iter().collect();
            by_count.sort_by(|a, b| b.1.total_cmp(a.1));
            let total: f64 = r.apiserver.values().sum();
            let top = by_count
                .iter()
                .take(12)
                .map(|(k, v)| format!("{k}={:.2}", *v / args.count as f64))
                .collect::<Vec<_>>()
                .join(", ");
            format!("total={:.1}: {top}", total / args.count as f64)
        })
        .collect();
    breakdowns.push(("API server requests per certificate", request_breakdown));
    let width = rows
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    for (label, values) in &rows {
        let _ = write!(out, "{label:<width$}");
        for v in values {
            let _ = write!(out, "  {v:>18}");
        }
        let _ = writeln!(out);
    }
    for (label, values) in &breakdowns {
        for (r, v) in results.iter().zip(values) {
            let _ = writeln!(out, "{label} ({}): {v}", r.kind.label());
        }
    }
    let _ = writeln!(out);
    let ours = results.iter().find(|r| r.kind == IssuerKind::Ncp);
    let theirs = results.iter().find(|r| r.kind == IssuerKind::Ca);
    if let (Some(ours), Some(theirs)) = (ours, theirs) {
        let ratio = throughput(ours) / throughput(theirs);
        let _ = writeln!(
            out,
            "throughput ratio ours / CA issuer: {ratio:.2}  (target ≥ 0.80: {})",
            verdict(ratio >= 0.8)
        );
    }
    let sub = results.iter().find(|r| r.kind == IssuerKind::Subordinate);
    if let (Some(sub), Some(theirs)) = (sub, theirs) {
        let ratio = throughput(sub) / throughput(theirs);
        let _ = writeln!(
            out,
            "throughput ratio subordinate / CA issuer: {ratio:.2}  (target ≥ 1.00: {}); p50 {} s vs {} s, p99 {} s vs {} s",
            verdict(ratio >= 1.0),
            secs(percentile(&sub.latencies, 50.0)),
            secs(percentile(&theirs.latencies, 50.0)),
            secs(percentile(&sub.latencies, 99.0)),
            secs(percentile(&theirs.latencies, 99.0)),
        );
    }
    if let Some(sub) = sub {
        let signing = [Operation::SignEndCsr.name(), Operation::SignSubCsr.name()];
        let others: Vec<String> = sub
            .ncp_calls
            .iter()
            .filter(|(op, _)| !signing.contains(&op.as_str()))
            .map(|(op, c)| format!("{op}={c}"))
            .collect();
        let _ = writeln!(
            out,
            "subordinate: NCP signing calls per certificate: {:.2} ({} Sign End Csr / Sign Sub Csr calls and {} certificates signed by NCP for {} certificates, {} requests)  (target 0: {}); other NCP calls during the batch: {}",
            sub.ncp_signing_calls as f64 / args.count as f64,
            sub.ncp_signing_calls,
            sub.ncp_certificates_signed,
            args.count,
            sub.requests_seen.0,
            verdict(sub.ncp_signing_calls == 0 && sub.ncp_certificates_signed == 0),
            if others.is_empty() {
                "none".to_string()
            } else {
                format!("{} (issuer checks, not per certificate)", others.join(" "))
            }
        );
    }
    if let Some(setup) = subordinate {
        let _ = writeln!(
            out,
            "subordinate: intermediate: {} Sign Sub Csr at setup (serial {}, Ready with reason {REASON_INTERMEDIATE_READY} {:.1} s after the PrivateCA was applied; UpstreamReady {}; NCP calls at setup: {})",
            setup.sign_sub_csr,
            setup.serial,
            setup.ready_after.as_secs_f64(),
            setup.upstream,
            setup
                .ncp_calls
                .iter()
                .map(|(op, c)| format!("{op}={c}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    if let Some(ours) = ours {
        let per_cert = ours.sign_end_csr_success as f64 / args.count as f64;
        let per_request = ours.sign_end_csr_success as f64 / ours.requests_seen.0.max(1) as f64;
        let _ = writeln!(
            out,
            "NCP signing calls per certificate: {per_cert:.2}, per CertificateRequest: {per_request:.2} ({} signings, {} requests)  (target exactly 1.00: {})",
            ours.sign_end_csr_success,
            ours.requests_seen.0,
            verdict(usize::try_from(ours.sign_end_csr_success).ok() == Some(ours.requests_seen.0))
        );
        if ours.requests_seen.0 > args.count {
            let _ = writeln!(
                out,
                "  cert-manager made {} CertificateRequests more than Certificates (and deleted {}): each request is signed once, so those Certificates were signed more than once",
                ours.requests_seen.0 - args.count,
                ours.requests_seen.1
            );
        }
    }
    if let Ok((hwm, rss)) = operator.memory() {
        let _ = writeln!(
            out,
            "operator peak RSS (VmHWM) over the whole run: {} MiB, current {} MiB  (target < 40 MiB at 1,000 Certificates: {})",
            mib(hwm),
            mib(rss),
            if args.count >= 1000 {
                verdict(hwm < 40 * 1024)
            } else {
                "run --count 1000 to check"
            }
        );
    }
    out
}

fn mean_ms(seconds: f64, count: f64) -> String {
    if count > 0.0 {
        format!("{:.0}", seconds * 1000.0 / count)
    } else {
        "-".into()
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

fn throughput(r: &BatchResult) -> f64 {
    let secs = r.wall.as_secs_f64();
    if secs > 0.0 {
        r.latencies.len() as f64 / secs
    } else {
        0.0
    }
}
