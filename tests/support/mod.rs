//! Shared by the cluster test binaries: one control plane per test binary, a namespace per test.
#![allow(dead_code)]

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use ncp_pca_issuer::devcluster::{Cluster, ClusterOptions};
use std::future::Future;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();

/// The control plane of this test binary, started on first use. A cluster that cannot start fails
/// the test with the reason: cluster tests never skip.
pub fn cluster() -> &'static Cluster {
    let started = CLUSTER.get_or_init(|| {
        ncp_pca_issuer::telemetry::install_crypto_provider();
        // `Cluster::start` blocks on a runtime of its own: keep it off the test's runtime thread.
        std::thread::spawn(|| {
            ClusterOptions::from_env()
                .and_then(Cluster::start)
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

/// Namespace where ClusterPrivateCA credentials live in tests (the cluster resource namespace).
pub const CLUSTER_RESOURCE_NAMESPACE: &str = "cert-manager";

/// Our CRDs applied and our controllers running (in-process, on a runtime thread of their own, once
/// per test binary — like one deployed operator serving every test).
pub fn operator() {
    let started = OPERATOR.get_or_init(|| {
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
                    };
                    let ctx = ncp_pca_issuer::controller::context(
                        client,
                        settings,
                        None,
                        Some("tests".into()),
                    );
                    let _ = tx.send(Ok(()));
                    ncp_pca_issuer::controller::run_all(ctx, 8, std::future::pending()).await;
                });
            })
            .map_err(|e| e.to_string())?;
        rx.recv().map_err(|e| e.to_string())?
    });
    if let Err(e) = started {
        panic!("the operator could not start: {e}");
    }
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
