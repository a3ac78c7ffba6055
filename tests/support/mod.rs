//! Shared by the cluster test binaries (`tests/e2e`, `tests/operator_processes`, `tests/approval.rs`):
//! one control plane per test binary, a namespace per test, and an emulator of its own for every test
//! that injects faults or counts calls that are not per CA ([`own_emulator`]).
#![allow(dead_code)]

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use ncp_pca_issuer::devcluster::{Cluster, ClusterOptions};
use std::future::Future;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();
static CERT_MANAGER_ARGS: OnceLock<Vec<String>> = OnceLock::new();

/// cert-manager's controllers without its approver: approval is then the test's to give or refuse.
/// Call before the first [`cluster`] of a test binary, in every test of that binary.
pub fn without_cert_manager_approver() {
    CERT_MANAGER_ARGS.get_or_init(|| {
        vec![
            "--controllers=certificates-trigger,certificates-issuing,certificates-key-manager,\
             certificates-request-manager,certificates-readiness,certificates-revision-manager,\
             issuers,clusterissuers,certificaterequests-issuer-ca,certificaterequests-issuer-selfsigned"
                .to_string(),
        ]
    });
}

/// The control plane of this test binary, started on first use. A cluster that cannot start fails
/// the test with the reason: cluster tests never skip.
pub fn cluster() -> &'static Cluster {
    let started = CLUSTER.get_or_init(|| {
        ncp_pca_issuer::telemetry::install_crypto_provider();
        // `Cluster::start` blocks on a runtime of its own: keep it off the test's runtime thread.
        std::thread::spawn(|| {
            ClusterOptions::from_env()
                .map(|mut o| {
                    o.extra_crds
                        .push(ncp_pca_issuer::api::crd_yaml().expect("our CRDs render"));
                    o.cert_manager_args = CERT_MANAGER_ARGS.get().cloned().unwrap_or_default();
                    o
                })
                .and_then(|o| Cluster::start(&o))
                .map_err(|e| e.to_string())
        })
        .join()
        .unwrap_or_else(|_| Err("cluster start panicked".into()))
    });
    match started {
        Ok(c) => c,
        Err(e) => panic!("the test control plane could not start: {e}"),
    }
}

/// An admin client for the current test's runtime.
pub async fn client() -> kube::Client {
    cluster().client().await.expect("admin client")
}

/// A fresh namespace for one test.
pub async fn namespace(prefix: &str) -> String {
    cluster().unique_namespace(prefix).await.expect("namespace")
}

/// A dynamic API for `group/version kind` (plural given).
pub fn dynamic(
    client: &kube::Client,
    ns: Option<&str>,
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
) -> Api<DynamicObject> {
    let ar =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
    match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    }
}

/// Server-side-applies a JSON object through a dynamic API.
pub async fn apply(
    api: &Api<DynamicObject>,
    object: serde_json::Value,
) -> Result<DynamicObject, kube::Error> {
    let name = object["metadata"]["name"]
        .as_str()
        .expect("object has a name")
        .to_string();
    api.patch(
        &name,
        &PatchParams::apply("ncp-pca-issuer-tests").force(),
        &Patch::Apply(&object),
    )
    .await
}

/// Polls `check` until it returns `Some`, or panics after `timeout` with `what`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

static OPERATOR: OnceLock<Result<(), String>> = OnceLock::new();

/// NCP's cap per CA in the tests' emulators and operator: lowered, so that a test can bring a CA
/// near it (no test issues more than a few certificates from one CA otherwise).
pub const SIGNING_LIMIT: i64 = 100;

/// Namespace where ClusterPrivateCA credentials live in tests (the cluster resource namespace).
pub const CLUSTER_RESOURCE_NAMESPACE: &str = "cert-manager";

/// Our CRDs applied and our controllers running (in-process, on a runtime thread of their own, once
/// per test binary — like one deployed operator serving every test).
pub fn operator() {
    let started = OPERATOR.get_or_init(|| {
        // The operator's warnings go to stderr (RUST_LOG overrides), uncaptured: they explain failures.
        ncp_pca_issuer::telemetry::init(ncp_pca_issuer::telemetry::LogFormat::Plain, "warn");
        let cluster = cluster();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("operator".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let setup = async {
                        let yaml = ncp_pca_issuer::api::crd_yaml().map_err(|e| e.to_string())?;
                        cluster.apply_crds(&yaml).await.map_err(|e| e.to_string())?;
                        cluster.client().await.map_err(|e| e.to_string())
                    };
                    let client = match setup.await {
                        Ok(c) => c,
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return;
                        }
                    };
                    let settings = ncp_pca_issuer::controller::Settings {
                        cluster_resource_namespace: CLUSTER_RESOURCE_NAMESPACE.into(),
                        issuer_recheck_interval: Duration::from_secs(10),
                        ncp_request_timeout: Duration::from_secs(2),
                        max_retry_duration: Duration::from_secs(60),
                        signing_limit: SIGNING_LIMIT,
                        workers: 8,
                        // Below the 120 s skew of the skew test, so that it shows the wait.
                        clock_skew_tolerance: Duration::from_secs(60),
                        ..Default::default()
                    };
                    // Never cancelled: the operator lives as long as the test binary.
                    let shutdown = tokio_util::sync::CancellationToken::new();
                    let watches = ncp_pca_issuer::watches::Watches::start(&client, &shutdown);
                    let ctx = ncp_pca_issuer::controller::context(
                        client,
                        settings,
                        operator_metrics().clone(),
                        Some("tests".into()),
                    );
                    let _ = tx.send(Ok(()));
                    ncp_pca_issuer::controller::run_all(ctx, &watches, 8, shutdown).await;
                });
            })
            .map_err(|e| e.to_string())?;
        rx.recv().map_err(|e| e.to_string())?
    });
    if let Err(e) = started {
        panic!("the operator could not start: {e}");
    }
}

/// The metrics of the in-process [`operator`] (what its `/metrics` would serve).
pub fn operator_metrics() -> &'static ncp_pca_issuer::metrics::Metrics {
    static METRICS: std::sync::OnceLock<ncp_pca_issuer::metrics::Metrics> =
        std::sync::OnceLock::new();
    METRICS.get_or_init(ncp_pca_issuer::metrics::Metrics::new)
}

/// Creates (or replaces) a credentials Secret.
pub async fn credentials_secret(
    client: &kube::Client,
    ns: &str,
    name: &str,
    data: &[(&str, &str)],
) {
    use k8s_openapi::api::core::v1::Secret;
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let string_data: serde_json::Map<String, serde_json::Value> = data
        .iter()
        .map(|(k, v)| {
            (
                (*k).to_string(),
                serde_json::Value::String((*v).to_string()),
            )
        })
        .collect();
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": string_data
    }))
    .expect("secret");
    api.patch(
        name,
        &PatchParams::apply("ncp-pca-issuer-tests").force(),
        &Patch::Apply(&secret),
    )
    .await
    .expect("secret applied");
}

/// Waits for the Ready condition of an issuer (`kind` PrivateCA or ClusterPrivateCA) to match.
pub async fn issuer_condition(
    client: &kube::Client,
    ns: Option<&str>,
    kind: &str,
    name: &str,
    status: &str,
    reason: &str,
) -> serde_json::Value {
    let (plural, ns) = if kind == "PrivateCA" {
        ("privatecas", ns)
    } else {
        ("clusterprivatecas", None)
    };
    let api = dynamic(client, ns, "pca.ncp-issuer.dev", "v1alpha1", kind, plural);
    let mut last = serde_json::Value::Null;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(obj) = api.get(name).await {
            let conditions = obj.data["status"]["conditions"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if let Some(ready) = conditions.iter().find(|c| c["type"] == "Ready") {
                if ready["status"] == status && ready["reason"] == reason {
                    return ready.clone();
                }
                last = ready.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "{kind} {name} never became Ready={status}/{reason}; last: {last}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Access key of the test emulator.
pub const EMU_AK: &str = "test-access-key";
/// Secret key of the test emulator.
pub const EMU_SK: &str = "test-secret-key-0123456789";

static EMULATOR: OnceLock<&'static ncp_pca_issuer::emulator::EmulatorHandle> = OnceLock::new();

/// The runtime that serves every emulator of this test binary, on a thread of its own, so that the
/// emulators outlive each test's runtime.
fn emulator_runtime() -> &'static tokio::runtime::Handle {
    static RUNTIME: OnceLock<tokio::runtime::Handle> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("emulators".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("emulator runtime");
                tx.send(runtime.handle().clone()).expect("handle sent");
                runtime.block_on(std::future::pending::<()>());
            })
            .expect("emulator thread");
        rx.recv().expect("emulator runtime started")
    })
}

/// Starts an emulator (test controls on, [`SIGNING_LIMIT`] issuances per CA, strict signing: our client must sign
/// the exact path and query with `-v2`) that lives as long as the test binary.
fn start_emulator() -> &'static ncp_pca_issuer::emulator::EmulatorHandle {
    let (tx, rx) = std::sync::mpsc::channel();
    emulator_runtime().spawn(async move {
        ncp_pca_issuer::telemetry::install_crypto_provider();
        let mut config = ncp_pca_issuer::emulator::EmulatorConfig::new(
            ncp_pca_issuer::ncp::Credentials::new(EMU_AK, EMU_SK),
        );
        config.test_controls = true;
        config.max_cas = 10_000;
        config.strict_signing = true;
        config.max_issuances_per_ca = u64::try_from(SIGNING_LIMIT).unwrap_or(u64::MAX);
        let _ = tx.send(ncp_pca_issuer::emulator::spawn(config).await);
    });
    let handle = rx
        .recv()
        .expect("emulator task answers")
        .expect("emulator starts");
    Box::leak(Box::new(handle))
}

/// The emulator shared by the tests of this binary that neither inject faults nor count calls
/// across CAs (per-CA counts such as `issued_by` are safe to share).
pub fn emulator() -> &'static ncp_pca_issuer::emulator::EmulatorHandle {
    EMULATOR.get_or_init(start_emulator)
}

/// An emulator for one test alone: its faults and call counts are that test's only, so tests that
/// inject faults or count calls run concurrently with the others.
pub fn own_emulator() -> &'static ncp_pca_issuer::emulator::EmulatorHandle {
    start_emulator()
}

/// A client of the shared test emulator.
pub fn ncp_client() -> ncp_pca_issuer::ncp::Client {
    ncp_client_on(emulator())
}

/// A client of `emu`.
pub fn ncp_client_on(
    emu: &ncp_pca_issuer::emulator::EmulatorHandle,
) -> ncp_pca_issuer::ncp::Client {
    let config = ncp_pca_issuer::ncp::ClientConfig::new(ncp_pca_issuer::ncp::Credentials::new(
        EMU_AK, EMU_SK,
    ))
    .with_endpoint(emu.base_url());
    ncp_pca_issuer::ncp::Client::new(config).expect("ncp client")
}

/// Creates a root CA in the shared emulator and returns its tag.
pub async fn emulator_root_ca(key_type: ncp_pca_issuer::ncp::types::KeyType, days: u32) -> String {
    emulator_root_ca_on(emulator(), key_type, days).await
}

/// Creates a root CA in `emu` and returns its tag.
pub async fn emulator_root_ca_on(
    emu: &ncp_pca_issuer::emulator::EmulatorHandle,
    key_type: ncp_pca_issuer::ncp::types::KeyType,
    days: u32,
) -> String {
    use ncp_pca_issuer::ncp::types::{CaType, Period, X509Parameters};
    let alias = format!("t{:08x}", rand_u32());
    let new = ncp_pca_issuer::ncp::NewCa {
        ca_type: CaType::PrivateRoot,
        issuer_tag: None,
        alias: alias.clone(),
        memo: None,
        key_type,
        period: Period::Days(days),
        subject: X509Parameters {
            common_name: Some(format!("{alias} Root CA")),
            ..X509Parameters::default()
        },
    };
    ncp_client_on(emu)
        .create_ca(&new)
        .await
        .expect("root CA created")
        .ca_info
        .ca_tag
}

fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    // The low 32 bits of the hash.
    u32::try_from(h.finish() & u64::from(u32::MAX)).unwrap_or_default()
}

/// Creates credentials and a `PrivateCA` (`cluster` = false) or `ClusterPrivateCA` pointing at `ca_tag`
/// in the shared emulator, with `extra_spec` merged into the spec (without waiting for it).
pub async fn apply_issuer(
    client: &kube::Client,
    ns: &str,
    name: &str,
    cluster: bool,
    ca_tag: &str,
    extra_spec: serde_json::Value,
) {
    apply_issuer_on(emulator(), client, ns, name, cluster, ca_tag, extra_spec).await;
}

/// [`apply_issuer`] with an issuer whose endpoint is `emu`.
pub async fn apply_issuer_on(
    emu: &ncp_pca_issuer::emulator::EmulatorHandle,
    client: &kube::Client,
    ns: &str,
    name: &str,
    cluster: bool,
    ca_tag: &str,
    extra_spec: serde_json::Value,
) {
    let (kind, plural, secret_ns) = if cluster {
        (
            "ClusterPrivateCA",
            "clusterprivatecas",
            CLUSTER_RESOURCE_NAMESPACE,
        )
    } else {
        ("PrivateCA", "privatecas", ns)
    };
    let secret = format!("ncp-{name}");
    credentials_secret(
        client,
        secret_ns,
        &secret,
        &[("NCLOUD_ACCESS_KEY", EMU_AK), ("NCLOUD_SECRET_KEY", EMU_SK)],
    )
    .await;
    let mut spec = serde_json::json!({
        "caTag": ca_tag, "endpoint": emu.base_url(), "credentials": {"secretRef": {"name": secret}}
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra_spec.as_object()) {
        spec.extend(extra.clone());
    }
    let api = dynamic(
        client,
        (!cluster).then_some(ns),
        "pca.ncp-issuer.dev",
        "v1alpha1",
        kind,
        plural,
    );
    apply(&api, serde_json::json!({"apiVersion": "pca.ncp-issuer.dev/v1alpha1", "kind": kind, "metadata": {"name": name}, "spec": spec}))
        .await
        .expect("issuer applied");
}

/// [`apply_issuer`], then waits until the issuer is Ready (`IntermediateReady` in subordinate mode,
/// `CAActive` otherwise).
pub async fn ready_issuer(
    client: &kube::Client,
    ns: &str,
    name: &str,
    cluster: bool,
    ca_tag: &str,
    extra_spec: serde_json::Value,
) {
    ready_issuer_on(emulator(), client, ns, name, cluster, ca_tag, extra_spec).await;
}

/// [`ready_issuer`] with an issuer whose endpoint is `emu`.
pub async fn ready_issuer_on(
    emu: &ncp_pca_issuer::emulator::EmulatorHandle,
    client: &kube::Client,
    ns: &str,
    name: &str,
    cluster: bool,
    ca_tag: &str,
    extra_spec: serde_json::Value,
) {
    let reason = if extra_spec.get("subordinate").is_some() {
        "IntermediateReady"
    } else {
        "CAActive"
    };
    apply_issuer_on(emu, client, ns, name, cluster, ca_tag, extra_spec).await;
    let kind = if cluster {
        "ClusterPrivateCA"
    } else {
        "PrivateCA"
    };
    issuer_condition(client, (!cluster).then_some(ns), kind, name, "True", reason).await;
}

/// The operator, a namespace (`prefix-…`), a new emulator CA (EC P-256) and a Ready subordinate
/// `PrivateCA` named `sub` on it, whose intermediate is kept in Secret `sub-ca`. Returns the client,
/// the namespace and the CA's tag.
pub async fn subordinate_issuer(prefix: &str) -> (kube::Client, String, String) {
    subordinate_issuer_on(emulator(), prefix).await
}

/// [`subordinate_issuer`] on `emu`.
pub async fn subordinate_issuer_on(
    emu: &ncp_pca_issuer::emulator::EmulatorHandle,
    prefix: &str,
) -> (kube::Client, String, String) {
    operator();
    let client = client().await;
    let ns = namespace(prefix).await;
    let ca = emulator_root_ca_on(emu, ncp_pca_issuer::ncp::types::KeyType::Ec256, 3650).await;
    ready_issuer_on(
        emu,
        &client,
        &ns,
        "sub",
        false,
        &ca,
        serde_json::json!({"subordinate": {"secretName": "sub-ca"}}),
    )
    .await;
    (client, ns, ca)
}

/// `(reason, note)` of the events about the object `name` in namespace `ns`.
pub async fn events_about(client: &kube::Client, ns: &str, name: &str) -> Vec<(String, String)> {
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), ns);
    events
        .list(&Default::default())
        .await
        .map(|l| {
            l.items
                .into_iter()
                .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
                .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default()
}

/// An `issuerRef` to one of our issuers (`kind` PrivateCA or ClusterPrivateCA).
pub fn issuer_ref(name: &str, kind: &str) -> serde_json::Value {
    serde_json::json!({"group": "pca.ncp-issuer.dev", "kind": kind, "name": name})
}

/// A Certificate `name` from `issuer_ref`: ECDSA P-256 key, DNS name `<name>.example.com`, Secret
/// `<name>-tls`.
pub async fn ecdsa_certificate(
    client: &kube::Client,
    ns: &str,
    name: &str,
    issuer_ref: serde_json::Value,
) {
    certificate(
        client,
        ns,
        name,
        serde_json::json!({
            "secretName": format!("{name}-tls"), "dnsNames": [format!("{name}.example.com")],
            "privateKey": {"algorithm": "ECDSA", "size": 256},
            "issuerRef": issuer_ref
        }),
    )
    .await;
}

/// Creates a cert-manager Certificate.
pub async fn certificate(client: &kube::Client, ns: &str, name: &str, spec: serde_json::Value) {
    let api = dynamic(
        client,
        Some(ns),
        "cert-manager.io",
        "v1",
        "Certificate",
        "certificates",
    );
    apply(&api, serde_json::json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate", "metadata": {"name": name}, "spec": spec}))
        .await
        .expect("certificate applied");
}

/// Waits for a Certificate to be Ready and returns its Secret's `tls.crt` and `ca.crt`.
pub async fn issued_secret(
    client: &kube::Client,
    ns: &str,
    certificate: &str,
    secret: &str,
) -> (String, String) {
    use k8s_openapi::api::core::v1::Secret;
    let certs = dynamic(
        client,
        Some(ns),
        "cert-manager.io",
        "v1",
        "Certificate",
        "certificates",
    );
    let crs = dynamic(
        client,
        Some(ns),
        "cert-manager.io",
        "v1",
        "CertificateRequest",
        "certificaterequests",
    );
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let ready = certs.get(certificate).await.ok().is_some_and(|c| {
            c.data["status"]["conditions"].as_array().is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
        });
        if ready {
            break;
        }
        if Instant::now() > deadline {
            let requests: Vec<String> = crs
                .list(&Default::default())
                .await
                .map(|l| {
                    l.items
                        .iter()
                        .map(|r| {
                            format!(
                                "{}: {}",
                                r.metadata.name.clone().unwrap_or_default(),
                                r.data["status"]
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            panic!("Certificate {ns}/{certificate} not Ready in time; requests: {requests:#?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let secret = Api::<Secret>::namespaced(client.clone(), ns)
        .get(secret)
        .await
        .expect("secret");
    let data = secret.data.unwrap_or_default();
    let get = |k: &str| {
        String::from_utf8(data.get(k).map(|b| b.0.clone()).unwrap_or_default()).expect("utf8")
    };
    (get("tls.crt"), get("ca.crt"))
}

/// `openssl verify -CAfile ca.crt -untrusted <rest of tls.crt> <leaf>`; returns openssl's output.
pub fn openssl_verify(tls_crt: &str, ca_crt: &str) -> Result<String, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let blocks =
        ncp_pca_issuer::ncp::types::split_pem_blocks(tls_crt).map_err(|e| e.to_string())?;
    let (leaf, rest) = blocks.split_first().ok_or("tls.crt holds no certificate")?;
    std::fs::write(dir.path().join("leaf.pem"), leaf).map_err(|e| e.to_string())?;
    std::fs::write(dir.path().join("ca.pem"), ca_crt).map_err(|e| e.to_string())?;
    let mut cmd = std::process::Command::new("openssl");
    cmd.arg("verify")
        .arg("-CAfile")
        .arg(dir.path().join("ca.pem"));
    if !rest.is_empty() {
        std::fs::write(dir.path().join("untrusted.pem"), rest.concat())
            .map_err(|e| e.to_string())?;
        cmd.arg("-untrusted").arg(dir.path().join("untrusted.pem"));
    }
    let out = cmd
        .arg(dir.path().join("leaf.pem"))
        .output()
        .map_err(|e| e.to_string())?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
}

/// Polls `check` over `window` and panics with `what` the first time it returns false. Only for use
/// after a positive sign that the controller has seen the object (a status write, an event, a
/// completed reconcile): it then gives a misbehaving controller room to show itself.
pub async fn stays<F, Fut>(what: &str, window: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let until = Instant::now() + window;
    loop {
        assert!(check().await, "{what}");
        if Instant::now() >= until {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits until a reconcile of the issuer `kind`/`name` that started after this call has finished: the
/// positive sign that the controller looked at the issuer as it is now.
///
/// Every reconcile of an issuer calls NCP's Get Ca exactly once, at its start, and a controller never
/// runs two reconciles of one object at once. So: touch the issuer (a change of an annotation of the
/// test's, which every issuer watch event wakes), wait for a Get Ca call (reconcile A started), touch it
/// again and wait for one more call (reconcile B started, so A finished). `emu` must be the issuer's
/// own emulator ([`own_emulator`]), used by no other issuer and not failing Get Ca.
pub async fn issuer_reconciled(
    emu: &ncp_pca_issuer::emulator::EmulatorHandle,
    client: &kube::Client,
    ns: Option<&str>,
    kind: &str,
    name: &str,
) {
    use ncp_pca_issuer::ncp::Operation;
    let plural = if kind == "PrivateCA" {
        "privatecas"
    } else {
        "clusterprivatecas"
    };
    let api = dynamic(client, ns, "pca.ncp-issuer.dev", "v1alpha1", kind, plural);
    let get_ca = || emu.stats().calls(Operation::GetCa).total;
    for round in 0..2 {
        let before = get_ca();
        api.patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"annotations": {
                "test.ncp-issuer.dev/poke": format!("{}-{round}", rand_u32())}}})),
        )
        .await
        .expect("issuer touched");
        eventually(
            &format!("a reconcile of {kind} {name} (round {round})"),
            Duration::from_secs(60),
            || async { (get_ca() > before).then_some(()) },
        )
        .await;
    }
}

/// A kubeconfig for the existing ServiceAccount `ns/sa` with a token from the TokenRequest API; server and CA from the admin
/// kubeconfig.
pub async fn service_account_kubeconfig(
    client: &kube::Client,
    ns: &str,
    sa: &str,
) -> std::path::PathBuf {
    let request: k8s_openapi::api::authentication::v1::TokenRequest =
        serde_json::from_value(serde_json::json!({
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "spec": {"expirationSeconds": 3600}
        }))
        .expect("token request");
    let token = Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(client.clone(), ns)
        .create_subresource::<_, k8s_openapi::api::authentication::v1::TokenRequest>(
            "token",
            sa,
            &kube::api::PostParams::default(),
            &request,
        )
        .await
        .expect("token issued")
        .status
        .expect("token status")
        .token;
    let admin = kube::config::Kubeconfig::read_from(cluster().kubeconfig_path()).expect("admin");
    let ca = admin
        .clusters
        .first()
        .and_then(|c| c.cluster.as_ref())
        .and_then(|c| c.certificate_authority_data.clone())
        .expect("admin kubeconfig has the CA");
    let yaml = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: dev\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: {sa}\n  user:\n    token: {token}\ncontexts:\n- name: dev\n  context:\n    cluster: dev\n    user: {sa}\n    namespace: {ns}\ncurrent-context: dev\n",
        server = cluster().api_url(),
    );
    let path = cluster().work_dir().join(format!("{ns}-{sa}.kubeconfig"));
    std::fs::write(&path, yaml).expect("kubeconfig written");
    path
}

/// Removes the test's cluster-scoped RBAC objects when the test ends.
pub struct ClusterRbac(pub String);

impl Drop for ClusterRbac {
    fn drop(&mut self) {
        let name = self.0.clone();
        // Drop runs outside async: a small runtime of its own on another thread.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let client = cluster().client().await.ok()?;
                let _ = Api::<k8s_openapi::api::rbac::v1::ClusterRoleBinding>::all(client.clone())
                    .delete(&name, &kube::api::DeleteParams::default())
                    .await;
                let _ = Api::<k8s_openapi::api::rbac::v1::ClusterRole>::all(client)
                    .delete(&name, &kube::api::DeleteParams::default())
                    .await;
                Some(())
            })
        })
        .join();
    }
}

/// Binds ClusterRole `name` to ServiceAccount `ns/sa` (a ClusterRoleBinding of the same name).
pub async fn bind_cluster_role(client: &kube::Client, name: &str, ns: &str, sa: &str) {
    use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
    let binding: ClusterRoleBinding = serde_json::from_value(serde_json::json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": ns}]
    }))
    .expect("binding");
    Api::<ClusterRoleBinding>::all(client.clone())
        .create(&kube::api::PostParams::default(), &binding)
        .await
        .expect("binding created");
}
