//! `--status-writes N`: what a CertificateRequest's Issued status write costs the API server, by
//! server-side apply (what the operator does: one field manager, only our fields) and by merge patch
//! (the whole `conditions` list, conditional on `resourceVersion`), measured in the same run on the same
//! control plane. The writes carry what the operator's Issued write carries (the Ready condition, an
//! ECDSA P-256 leaf and CA, base64), `concurrency` at a time, on requests nobody else reconciles (an
//! issuer group no controller serves). The phases run A B B A, so that drift on a noisy machine weighs
//! on both ways alike.

use anyhow::Context as _;
use futures::StreamExt as _;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use std::time::{Duration, Instant};

/// How a status is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    /// Server-side apply, field manager `ncp-pca-issuer`, forced.
    Apply,
    /// JSON merge patch with the whole conditions list and a resourceVersion precondition.
    Merge,
}

impl Way {
    fn label(self) -> &'static str {
        match self {
            Self::Apply => "server-side apply",
            Self::Merge => "merge patch",
        }
    }
}

/// What one way cost.
#[derive(Debug, Default, Clone)]
pub struct Cost {
    /// Writes done.
    pub writes: usize,
    /// Writes that failed (a conflict counts).
    pub failed: usize,
    /// CPU seconds of kube-apiserver during the phases of this way.
    pub apiserver_cpu: f64,
    /// CPU seconds of etcd during the phases of this way.
    pub etcd_cpu: f64,
    /// Wall time of the phases.
    pub wall: Duration,
    /// Sum of the write latencies.
    pub latency: Duration,
    /// `managedFields` bytes (JSON) of one written request.
    pub managed_fields_bytes: usize,
}

fn requests(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    super::dynamic(
        client,
        ns,
        "cert-manager.io",
        "v1",
        "CertificateRequest",
        "certificaterequests",
    )
}

/// A leaf and a CA of realistic size (ECDSA P-256), PEM.
fn chain() -> anyhow::Result<(String, String)> {
    use ncp_pca_issuer::ncp::types::KeyType;
    use ncp_pca_issuer::pki::{IssueOptions, Name, NameAttr, PrivateKey, Validity, self_signed_ca};
    let now = time::OffsetDateTime::now_utc();
    let opts = IssueOptions::new(Validity::new(now, now + time::Duration::days(90))?);
    let ca_key = PrivateKey::generate(KeyType::Ec256)?;
    let ca = self_signed_ca(
        &Name::new().with(NameAttr::CommonName, "bench root"),
        &ca_key,
        &opts,
    )?;
    let leaf_key = PrivateKey::generate(KeyType::Ec256)?;
    let leaf = self_signed_ca(
        &Name::new().with(NameAttr::CommonName, "leaf.bench.example.com"),
        &leaf_key,
        &opts,
    )?;
    Ok((format!("{}{}", leaf.to_pem(), ca.to_pem()), ca.to_pem()))
}

/// Creates `count` requests for an issuer nobody serves and waits until cert-manager's approver has
/// approved them (its status write is then behind us), returning them as they are now.
async fn create_requests(
    client: &kube::Client,
    ns: &str,
    count: usize,
) -> anyhow::Result<Vec<DynamicObject>> {
    let api = requests(client, ns);
    let csr = base64_std(
        b"-----BEGIN CERTIFICATE REQUEST-----\nbench\n-----END CERTIFICATE REQUEST-----\n",
    );
    let names: Vec<String> = (0..count).map(|i| format!("sw-{i:05}")).collect();
    futures::stream::iter(names.clone())
        .map(|name| {
            let api = api.clone();
            let csr = csr.clone();
            async move {
                let obj: DynamicObject = serde_json::from_value(serde_json::json!({
                    "apiVersion": "cert-manager.io/v1", "kind": "CertificateRequest",
                    "metadata": {"name": name},
                    "spec": {"request": csr, "issuerRef": {"group": "status-bench.invalid", "kind": "Nobody", "name": "nobody"}}
                }))?;
                api.create(&PostParams::default(), &obj)
                    .await
                    .with_context(|| format!("create request {name}"))?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<Vec<()>>>()?;
    // cert-manager's approver approves what it may; then the requests are left alone.
    let deadline = Instant::now() + Duration::from_secs(60 + count as u64 / 10);
    loop {
        let list = api.list(&Default::default()).await?;
        let approved = list
            .items
            .iter()
            .filter(|r| super::condition(r, "Approved").is_some())
            .count();
        if approved == count || Instant::now() > deadline {
            return Ok(list.items);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn base64_std(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Writes the Issued status of each of `batch`, `concurrency` at a time, `way`; returns failures and
/// the summed latency.
async fn write_all(
    api: &Api<DynamicObject>,
    batch: &[DynamicObject],
    way: Way,
    concurrency: usize,
    (certificate, ca): (&str, &str),
) -> (usize, Duration) {
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let ready = serde_json::json!({
        "type": "Ready", "status": "True", "reason": "Issued",
        "message": "Certificate fetched from issuer successfully", "lastTransitionTime": now,
    });
    let results = futures::stream::iter(batch.iter().cloned())
        .map(|r| {
            let api = api.clone();
            let ready = ready.clone();
            let (certificate, ca) = (base64_std(certificate.as_bytes()), base64_std(ca.as_bytes()));
            async move {
                let name = r.metadata.name.clone().unwrap_or_default();
                let started = Instant::now();
                let result = match way {
                    Way::Apply => {
                        let body = serde_json::json!({
                            "apiVersion": "cert-manager.io/v1", "kind": "CertificateRequest",
                            "status": {"conditions": [ready], "certificate": certificate, "ca": ca},
                        });
                        api.patch_status(
                            &name,
                            &PatchParams::apply("ncp-pca-issuer").force(),
                            &Patch::Apply(&body),
                        )
                        .await
                    }
                    Way::Merge => {
                        let mut conditions: Vec<serde_json::Value> = r.data["status"]["conditions"]
                            .as_array()
                            .cloned()
                            .unwrap_or_default()
                            .into_iter()
                            .filter(|c| c["type"] != "Ready")
                            .collect();
                        conditions.push(ready);
                        let body = serde_json::json!({
                            "metadata": {"resourceVersion": r.metadata.resource_version},
                            "status": {"conditions": conditions, "certificate": certificate, "ca": ca},
                        });
                        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&body))
                            .await
                    }
                };
                (result.is_err(), started.elapsed())
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect::<Vec<_>>()
        .await;
    let failed = results.iter().filter(|(f, _)| *f).count();
    (failed, results.iter().map(|(_, d)| *d).sum())
}

/// Runs the comparison with `count` writes each way and returns the report section.
///
/// # Errors
/// When the requests cannot be created or listed.
pub async fn compare(
    client: &kube::Client,
    cluster: &ncp_pca_issuer::devcluster::Cluster,
    count: usize,
    concurrency: usize,
) -> anyhow::Result<String> {
    let ns = cluster.unique_namespace("bench-status").await?;
    super::progress(&format!(
        "status writes: {count} by server-side apply, {count} by merge patch"
    ));
    let all = create_requests(client, &ns, 2 * count).await?;
    tokio::time::sleep(super::SETTLE).await;
    let chain = chain()?;
    let api = requests(client, &ns);
    let half = count / 2;
    let (apply_set, merge_set) = all.split_at(count.min(all.len()));
    // A B B A.
    let phases = [
        (Way::Apply, &apply_set[..half]),
        (Way::Merge, &merge_set[..half.min(merge_set.len())]),
        (Way::Merge, &merge_set[half.min(merge_set.len())..]),
        (Way::Apply, &apply_set[half..]),
    ];
    let mut costs = [Cost::default(), Cost::default()];
    for (way, batch) in phases {
        let before = super::cpu_by_component();
        let started = Instant::now();
        let (failed, latency) =
            write_all(&api, batch, way, concurrency, (&chain.0, &chain.1)).await;
        let wall = started.elapsed();
        let after = super::cpu_by_component();
        let delta = |name: &str| {
            after.get(name).copied().unwrap_or(0.0) - before.get(name).copied().unwrap_or(0.0)
        };
        let cost = &mut costs[usize::from(way == Way::Merge)];
        cost.writes += batch.len();
        cost.failed += failed;
        cost.apiserver_cpu += delta("kube-apiserver");
        cost.etcd_cpu += delta("etcd");
        cost.wall += wall;
        cost.latency += latency;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    for (cost, set) in costs.iter_mut().zip([apply_set, merge_set]) {
        if let Some(first) = set.first().and_then(|r| r.metadata.name.clone()) {
            let obj = api.get(&first).await?;
            cost.managed_fields_bytes = serde_json::to_string(&obj.metadata.managed_fields)
                .map(|s| s.len())
                .unwrap_or_default();
        }
    }
    cluster.delete_namespace(&ns).await?;
    Ok(render(&costs, concurrency))
}

fn render(costs: &[Cost; 2], concurrency: usize) -> String {
    let per = |v: f64, n: usize| {
        if n == 0 {
            "-".to_string()
        } else {
            format!("{:.2}", v * 1000.0 / n as f64)
        }
    };
    let mut out = format!(
        "\nStatus write of an Issued request, each way on the same control plane (phases A B B A, {concurrency} in flight):\n"
    );
    out.push_str("  way                 writes  failed  apiserver CPU ms/write  etcd CPU ms/write  mean latency ms  writes/s  managedFields bytes\n");
    for (way, c) in [Way::Apply, Way::Merge].iter().zip(costs) {
        out.push_str(&format!(
            "  {:<18}  {:>6}  {:>6}  {:>22}  {:>17}  {:>15}  {:>8.0}  {:>19}\n",
            way.label(),
            c.writes,
            c.failed,
            per(c.apiserver_cpu, c.writes),
            per(c.etcd_cpu, c.writes),
            per(c.latency.as_secs_f64(), c.writes),
            c.writes as f64 / c.wall.as_secs_f64().max(1e-9),
            c.managed_fields_bytes,
        ));
    }
    if costs[0].apiserver_cpu > 0.0 && costs[1].apiserver_cpu > 0.0 {
        let ratio = (costs[1].apiserver_cpu / costs[1].writes.max(1) as f64)
            / (costs[0].apiserver_cpu / costs[0].writes.max(1) as f64);
        out.push_str(&format!(
            "  merge patch / server-side apply, apiserver CPU per write: {ratio:.2}\n"
        ));
    }
    out
}
