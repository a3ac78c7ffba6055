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
