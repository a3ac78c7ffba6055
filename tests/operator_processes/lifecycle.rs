//! The operator's lifecycle as a process sees it: `/readyz` follows the watches (a replica that
//! cannot list our kinds is not ready, a follower that can is), and `/metrics` forgets deleted
//! issuers and names everything `ncp_pca_issuer_*`.
//!
//! Each test runs `ncp-pca-issuer controller` as a child process, on its turn of
//! `OPERATOR_PROCESS_TURN`.

use crate::support;

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::{Api, DeleteParams, PostParams};
use ncp_pca_issuer::devcluster::process::{Supervised, tail};
use ncp_pca_issuer::ncp::types::KeyType;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::{
    CLUSTER_RESOURCE_NAMESPACE, client, cluster, dynamic, emulator_root_ca, eventually, namespace,
    ready_issuer,
};

const OPERATOR_BIN: &str = env!("CARGO_BIN_EXE_ncp-pca-issuer");

/// `ncp-pca-issuer controller` under the devcluster watchdog; its log is printed when a test fails.
struct Operator {
    /// Behind a lock so the polling closures can share `&Operator`.
    process: std::sync::Mutex<Supervised>,
    http: String,
    client: reqwest::Client,
}

impl Operator {
    /// Starts the operator with `kubeconfig`; `lease` = `(namespace, name)` turns leader election on.
    fn start(name: &str, kubeconfig: &Path, lease: Option<(&str, &str)>) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let log = cluster()
            .work_dir()
            .join("logs")
            .join(format!("lifecycle-{name}-{port}.log"));
        let mut args: Vec<String> = vec![
            format!("POD_NAME={name}"),
            OPERATOR_BIN.into(),
            "controller".into(),
            "--kubeconfig".into(),
            kubeconfig.display().to_string(),
            "--cluster-resource-namespace".into(),
            CLUSTER_RESOURCE_NAMESPACE.into(),
            "--http-addr".into(),
            format!("127.0.0.1:{port}"),
            "--issuer-recheck-seconds".into(),
            "10".into(),
            "--ncp-timeout-seconds".into(),
            "2".into(),
        ];
        match lease {
            Some((ns, lease)) => args.extend([
                "--leader-elect=true".into(),
                "--leader-election-namespace".into(),
                ns.into(),
                "--leader-election-lease".into(),
                lease.into(),
            ]),
            None => args.push("--leader-elect=false".into()),
        }
        let process =
            Supervised::start(name, Path::new("env"), &args, log).expect("operator process starts");
        Self {
            process: std::sync::Mutex::new(process),
            http: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::new(),
        }
    }

    fn process(&self) -> std::sync::MutexGuard<'_, Supervised> {
        self.process
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn assert_running(&self) {
        let mut process = self.process();
        if let Some(status) = process.exited() {
            panic!("operator exited ({status}):\n{}", process.log_tail(40));
        }
    }

    /// The status of `GET path`, `None` while the server does not answer.
    async fn status(&self, path: &str) -> Option<u16> {
        self.assert_running();
        self.client
            .get(format!("{}{path}", self.http))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()
            .map(|r| r.status().as_u16())
    }

    async fn metrics(&self) -> Option<String> {
        self.assert_running();
        self.client
            .get(format!("{}/metrics", self.http))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.process().log()).unwrap_or_default()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let mut process = self.process();
        if std::thread::panicking() {
            eprintln!(
                "----- operator log tail -----\n{}\n-----",
                tail(process.log(), 60)
            );
        }
        process.stop();
    }
}

/// Creates ServiceAccount `ns/sa` and a kubeconfig with a token for it.
async fn service_account_kubeconfig(client: &kube::Client, ns: &str, sa: &str) -> PathBuf {
    Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": sa}})).expect("sa"),
        )
        .await
        .expect("service account");
    support::service_account_kubeconfig(client, ns, sa).await
}

/// Read-only access to what the operator watches (no Lease, no writes): enough to become ready as
/// a follower, never enough to lead.
async fn grant_watch_rights(client: &kube::Client, name: &str, ns: &str, sa: &str) {
    let role: ClusterRole = serde_json::from_value(serde_json::json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": name},
        "rules": [
            {"apiGroups": ["pca.ncp-issuer.dev"], "resources": ["privatecas", "clusterprivatecas"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["cert-manager.io"], "resources": ["certificaterequests"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch"]}
        ]
    }))
    .expect("cluster role");
    Api::<ClusterRole>::all(client.clone())
        .create(&PostParams::default(), &role)
        .await
        .expect("cluster role created");
    support::bind_cluster_role(client, name, ns, sa).await;
}

/// The value of the sample `series` (name and labels) on a `/metrics` page.
fn sample<'a>(text: &'a str, series: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
}

#[tokio::test]
async fn readyz_is_unavailable_until_the_watches_have_listed_even_for_a_follower() {
    let _serial = crate::OPERATOR_PROCESS_TURN.lock().await;
    let client = client().await;
    let ns = namespace("life-ready").await;
    let sa = "no-rights";
    let kubeconfig = service_account_kubeconfig(&client, &ns, sa).await;
    // Leader election on, but no right to the Lease: this replica stays a follower throughout.
    let operator = Operator::start("unready", &kubeconfig, Some((&ns, "lifecycle")));

    // Serving, refused by the API server, and not ready.
    eventually("/livez to answer", Duration::from_secs(30), || async {
        (operator.status("/livez").await == Some(200)).then_some(())
    })
    .await;
    eventually(
        "the operator to log the refused watches",
        Duration::from_secs(30),
        || async {
            let log = operator.log();
            (log.contains("watch failed") && log.contains("forbidden")).then_some(())
        },
    )
    .await;
    assert_eq!(operator.status("/readyz").await, Some(503));
    let metrics = operator.metrics().await.expect("metrics");
    assert_eq!(sample(&metrics, "ncp_pca_issuer_leader"), Some("0"));

    // Allowed to list and watch: ready, while still a follower.
    let role = format!("ncp-pca-issuer-{ns}");
    let _rbac = support::ClusterRbac(role.clone());
    grant_watch_rights(&client, &role, &ns, sa).await;
    let started = Instant::now();
    eventually(
        "/readyz to answer 200 once the watches may list",
        Duration::from_secs(90),
        || async { (operator.status("/readyz").await == Some(200)).then_some(()) },
    )
    .await;
    eprintln!(
        "ready {:?} after the rights were granted",
        started.elapsed()
    );
    let metrics = operator.metrics().await.expect("metrics");
    assert_eq!(
        sample(&metrics, "ncp_pca_issuer_leader"),
        Some("0"),
        "ready as a follower"
    );
    assert!(operator.log().contains("watches synced: ready"));
}

#[tokio::test]
async fn a_deleted_issuers_series_leave_metrics_and_every_name_is_prefixed() {
    let _serial = crate::OPERATOR_PROCESS_TURN.lock().await;
    let client = client().await;
    let ns = namespace("life-metrics").await;
    let ca = emulator_root_ca(KeyType::Ec256, 3650).await;
    let operator = Operator::start("metrics", cluster().kubeconfig_path(), None);
    eventually("/readyz to answer 200", Duration::from_secs(60), || async {
        (operator.status("/readyz").await == Some(200)).then_some(())
    })
    .await;

    ready_issuer(&client, &ns, "pca", false, &ca, serde_json::json!({})).await;
    let series = format!(
        r#"ncp_pca_issuer_issuer_ready{{issuer_kind="PrivateCA",namespace="{ns}",name="pca"}}"#
    );
    let text = eventually(
        "the issuer's series at 1",
        Duration::from_secs(30),
        || async {
            let text = operator.metrics().await?;
            (sample(&text, &series) == Some("1")).then_some(text)
        },
    )
    .await;
    // Only our names (the process metrics carry the prefix too).
    for line in text.lines().filter(|l| !l.is_empty() && *l != "# EOF") {
        let name = ["# TYPE ", "# HELP ", "# UNIT "]
            .iter()
            .find_map(|p| line.strip_prefix(p))
            .unwrap_or(line);
        assert!(name.starts_with("ncp_pca_issuer_"), "unprefixed: {line}");
    }
    assert_eq!(sample(&text, "ncp_pca_issuer_leader"), Some("1"));

    dynamic(
        &client,
        Some(&ns),
        "pca.ncp-issuer.dev",
        "v1alpha1",
        "PrivateCA",
        "privatecas",
    )
    .delete("pca", &DeleteParams::default())
    .await
    .expect("issuer deleted");
    eventually(
        "the deleted issuer's series to disappear",
        Duration::from_secs(30),
        || async {
            let text = operator.metrics().await?;
            (!text.contains(&format!(r#"namespace="{ns}",name="pca""#))).then_some(())
        },
    )
    .await;
}
