//! One tenant against the others, with the operator as the chart runs it (`ncp-pca-issuer controller`
//! with the chart's defaults: 16 workers, 30 s NCP timeout, the default fairness shares and answer
//! limit): a PrivateCA whose NCP never answers a signing call must not hold up another issuer's
//! requests, and an endpoint that answers 256 MiB must not blow up the operator's memory.
//!
//! Each test takes its turn on `OPERATOR_PROCESS_TURN` and has emulators of its own.

use crate::process::{OperatorProcess, Options};
use crate::support;

use kube::api::{Api, DynamicObject};
use ncp_pca_issuer::emulator::{FaultKind, FaultRule};
use ncp_pca_issuer::ncp::Operation;
use ncp_pca_issuer::ncp::types::KeyType;
use std::time::{Duration, Instant};
use support::{
    certificate, client, dynamic, emulator_root_ca_on, eventually, issuer_condition, issuer_ref,
    namespace, own_emulator, ready_issuer_on,
};

/// The chart's `controller.ncpTimeoutSeconds`.
const CHART_NCP_TIMEOUT_SECONDS: u64 = 30;

fn chart_defaults(name: &str) -> Options<'_> {
    Options {
        ncp_timeout_seconds: CHART_NCP_TIMEOUT_SECONDS,
        ..Options::admin(name)
    }
}

fn certificates(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    dynamic(
        client,
        Some(ns),
        "cert-manager.io",
        "v1",
        "Certificate",
        "certificates",
    )
}

fn ready_count(list: &[DynamicObject]) -> usize {
    list.iter()
        .filter(|c| {
            c.data["status"]["conditions"].as_array().is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
        })
        .count()
}

async fn ecdsa_certificates(client: &kube::Client, ns: &str, issuer: &str, kind: &str, n: usize) {
    for i in 0..n {
        certificate(
            client,
            ns,
            &format!("c{i}"),
            serde_json::json!({
                "secretName": format!("c{i}-tls"), "dnsNames": [format!("c{i}.example.com")],
                "privateKey": {"algorithm": "ECDSA"}, "issuerRef": issuer_ref(issuer, kind)
            }),
        )
        .await;
    }
}

#[tokio::test]
async fn thirty_requests_hanging_on_one_issuer_leave_ten_requests_of_another_issuer_ready_within_ten_seconds()
 {
    let _turn = crate::OPERATOR_PROCESS_TURN.lock().await;
    let noisy = own_emulator();
    let quiet = own_emulator();
    let client = client().await;
    let noisy_ns = namespace("noisy").await;
    let quiet_ns = namespace("quiet").await;
    let noisy_ca = emulator_root_ca_on(noisy, KeyType::Ec256, 3650).await;
    let quiet_ca = emulator_root_ca_on(quiet, KeyType::Ec256, 3650).await;
    let operator = OperatorProcess::start(chart_defaults("noisy-neighbour")).await;
    ready_issuer_on(
        noisy,
        &client,
        &noisy_ns,
        "pca",
        false,
        &noisy_ca,
        serde_json::json!({}),
    )
    .await;
    let cluster_issuer = format!("quiet-{quiet_ns}");
    ready_issuer_on(
        quiet,
        &client,
        &quiet_ns,
        &cluster_issuer,
        true,
        &quiet_ca,
        serde_json::json!({}),
    )
    .await;
    // The noisy tenant's NCP never answers a signing call.
    noisy.add_fault(FaultRule::new(FaultKind::Timeout).for_operation(Operation::SignEndCsr));

    ecdsa_certificates(&client, &noisy_ns, "pca", "PrivateCA", 30).await;
    // cert-manager has made all 30 requests, and the noisy issuer holds its share of the workers.
    let noisy_requests = dynamic(
        &client,
        Some(&noisy_ns),
        "cert-manager.io",
        "v1",
        "CertificateRequest",
        "certificaterequests",
    );
    eventually(
        "30 noisy requests, with signing calls hanging",
        Duration::from_secs(90),
        || async {
            let requests = noisy_requests.list(&Default::default()).await.ok()?;
            let hanging = noisy.stats().calls(Operation::SignEndCsr).lost;
            (requests.items.len() == 30 && hanging >= 2).then_some(())
        },
    )
    .await;

    let started = Instant::now();
    ecdsa_certificates(&client, &quiet_ns, &cluster_issuer, "ClusterPrivateCA", 10).await;
    let quiet_certs = certificates(&client, &quiet_ns);
    let ready = eventually(
        "the 10 quiet certificates to be Ready",
        Duration::from_secs(120),
        || async {
            let list = quiet_certs.list(&Default::default()).await.ok()?;
            (ready_count(&list.items) == 10).then(|| started.elapsed())
        },
    )
    .await;
    let hanging = noisy.stats().calls(Operation::SignEndCsr).lost;
    println!(
        "noisy neighbour: 10 quiet certificates Ready in {:.1} s with {hanging} noisy signing calls held",
        ready.as_secs_f64()
    );
    assert!(
        ready < Duration::from_secs(10),
        "10 certificates of the quiet issuer took {ready:?} while the noisy one hung"
    );
    let noisy_list = certificates(&client, &noisy_ns)
        .list(&Default::default())
        .await
        .expect("noisy certificates");
    assert_eq!(
        ready_count(&noisy_list.items),
        0,
        "the noisy issuer signed nothing"
    );
    drop(operator);
    noisy.clear_faults();
}

/// The peak resident set (VmHWM) of process `pid`, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmHWM")
}

#[tokio::test]
async fn a_256_mib_answer_keeps_the_operator_under_64_mib_and_the_issuer_reports_it() {
    let _turn = crate::OPERATOR_PROCESS_TURN.lock().await;
    let hostile = own_emulator();
    let client = client().await;
    let ns = namespace("huge").await;
    let ca = emulator_root_ca_on(hostile, KeyType::Ec256, 3650).await;
    let operator = OperatorProcess::start(chart_defaults("huge-answer")).await;
    hostile.add_fault(FaultRule::huge_body(256 * 1024 * 1024));

    support::apply_issuer_on(
        hostile,
        &client,
        &ns,
        "pca",
        false,
        &ca,
        serde_json::json!({}),
    )
    .await;
    let ready = issuer_condition(&client, Some(&ns), "PrivateCA", "pca", "False", "NcpError").await;
    let message = ready["message"].as_str().unwrap_or_default().to_string();
    // A second check of the issuer reads the endless answer again.
    support::issuer_reconciled(hostile, &client, Some(&ns), "PrivateCA", "pca").await;

    let peak_mib = peak_rss_kib(operator.pid) / 1024;
    println!("256 MiB answer: operator peak RSS {peak_mib} MiB");
    assert!(
        message.contains("is larger than the limit of 4194304 bytes"),
        "{message}"
    );
    assert!(peak_mib < 64, "peak RSS {peak_mib} MiB");
    drop(operator);
    hostile.clear_faults();
}
