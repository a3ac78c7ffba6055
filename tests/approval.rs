//! Approval gating, with cert-manager's approver switched off so the tests decide: an unapproved request
//! is left alone, a denied one ends Denied without any signing, an approved one is issued.
//!
//! A binary (and control plane) of its own, because its cert-manager must run without the approver:
//! the test control plane has no cert-manager webhook, so nothing checks the `approve` permission on
//! `signers`, and cert-manager's approver approves every CertificateRequest it sees within a second,
//! whatever its issuer or namespace (RBAC cannot stop it: it runs as `system:masters`). The other
//! cluster tests (`tests/e2e`) need that approver for their Certificates.

mod support;

use base64::Engine as _;
use kube::api::{Patch, PatchParams};
use ncp_pca_issuer::ncp::types::KeyType;
use std::time::Duration;
use support::{
    client, dynamic, emulator, emulator_root_ca, eventually, namespace, operator, ready_issuer,
    without_cert_manager_approver,
};

fn csr_pem(dns: &str) -> String {
    let key = rcgen::KeyPair::generate().expect("key");
    let params = rcgen::CertificateParams::new(vec![dns.to_string()]).expect("params");
    params
        .serialize_request(&key)
        .expect("csr")
        .pem()
        .expect("pem")
}

async fn request(
    client: &kube::Client,
    ns: &str,
    name: &str,
) -> kube::Api<kube::api::DynamicObject> {
    let crs = dynamic(
        client,
        Some(ns),
        "cert-manager.io",
        "v1",
        "CertificateRequest",
        "certificaterequests",
    );
    support::apply(&crs, serde_json::json!({
        "apiVersion": "cert-manager.io/v1", "kind": "CertificateRequest", "metadata": {"name": name},
        "spec": {
            "request": base64::engine::general_purpose::STANDARD.encode(csr_pem("approval.example.com")),
            "issuerRef": {"group": "pca.ncp-issuer.dev", "kind": "PrivateCA", "name": "pca"},
            "usages": ["digital signature", "server auth"]
        }
    }))
    .await
    .expect("request created");
    crs
}

async fn set_condition(crs: &kube::Api<kube::api::DynamicObject>, name: &str, type_: &str) {
    let patch = serde_json::json!({
        "apiVersion": "cert-manager.io/v1", "kind": "CertificateRequest",
        "status": {"conditions": [{"type": type_, "status": "True", "reason": "Test", "message": "set by the test",
                                   "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
    });
    crs.patch_status(
        name,
        &PatchParams::apply("test-approver").force(),
        &Patch::Apply(&patch),
    )
    .await
    .expect("condition set");
}

async fn ready_of(
    crs: &kube::Api<kube::api::DynamicObject>,
    name: &str,
) -> Option<serde_json::Value> {
    let cr = crs.get(name).await.ok()?;
    cr.data["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")
        .cloned()
}

/// An issuer `pca` with `extra_spec`, and a request for it: left at Initializing while unapproved,
/// issued once approved. Returns the CA's tag and the issued request.
async fn unapproved_then_approved(
    prefix: &str,
    extra_spec: serde_json::Value,
) -> (String, kube::api::DynamicObject) {
    without_cert_manager_approver();
    operator();
    let client = client().await;
    let ns = namespace(prefix).await;
    let ca = emulator_root_ca(KeyType::Ec256, 3650).await;
    ready_issuer(&client, &ns, "pca", false, &ca, extra_spec).await;
    let signed_before = emulator().stats().issued_by(&ca);
    let crs = request(&client, &ns, "r").await;

    let initial = eventually("first touch", Duration::from_secs(30), || async {
        ready_of(&crs, "r").await
    })
    .await;
    assert_eq!(initial["status"], "Unknown");
    assert_eq!(initial["reason"], "Initializing");
    // The controller has seen the request (its Initializing write, which wakes it again): give it
    // every chance to misbehave, checking all along that nothing was signed.
    support::stays(
        "an unapproved request stays Initializing, with nothing signed",
        Duration::from_secs(3),
        || async {
            let reason_kept = ready_of(&crs, "r")
                .await
                .is_some_and(|r| r["reason"] == "Initializing");
            let unsigned = crs
                .get("r")
                .await
                .is_ok_and(|cr| cr.data["status"]["certificate"].is_null());
            reason_kept && unsigned && emulator().stats().issued_by(&ca) == signed_before
        },
    )
    .await;

    set_condition(&crs, "r", "Approved").await;
    let issued = eventually("issued", Duration::from_secs(60), || async {
        ready_of(&crs, "r")
            .await
            .filter(|r| r["reason"] == "Issued")
    })
    .await;
    assert_eq!(issued["status"], "True");
    let cr = crs.get("r").await.expect("request");
    assert!(cr.data["status"]["certificate"].is_string());
    assert!(cr.data["status"]["ca"].is_string());
    (ca, cr)
}

#[tokio::test]
async fn an_unapproved_request_is_left_alone_and_is_issued_once_approved() {
    let (ca, _) = unapproved_then_approved("approval-wait", serde_json::json!({})).await;
    assert_eq!(emulator().stats().issued_by(&ca), 1);
}

#[tokio::test]
async fn an_unapproved_request_for_a_subordinate_issuer_is_left_alone_and_signed_in_the_cluster_once_approved()
 {
    let (ca, cr) = unapproved_then_approved(
        "approval-sub",
        serde_json::json!({"subordinate": {"secretName": "sub-ca"}}),
    )
    .await;
    // NCP signed the intermediate only; the leaf's chain goes through it.
    assert_eq!(emulator().stats().issued_by(&ca), 1);
    let chain = base64::engine::general_purpose::STANDARD
        .decode(
            cr.data["status"]["certificate"]
                .as_str()
                .expect("certificate"),
        )
        .expect("base64");
    let chain =
        ncp_pca_issuer::pki::parse_certificates_pem(&String::from_utf8(chain).expect("utf8"))
            .expect("chain");
    assert_eq!(chain.len(), 2, "leaf and intermediate");
    assert!(chain[1].is_ca);
}

#[tokio::test]
async fn a_denied_request_ends_denied_with_a_failure_time_and_nothing_is_signed() {
    without_cert_manager_approver();
    operator();
    let client = client().await;
    let ns = namespace("approval-deny").await;
    let ca = emulator_root_ca(KeyType::Ec256, 3650).await;
    ready_issuer(&client, &ns, "pca", false, &ca, serde_json::json!({})).await;
    let crs = request(&client, &ns, "d").await;
    set_condition(&crs, "d", "Denied").await;

    let denied = eventually("denied", Duration::from_secs(60), || async {
        ready_of(&crs, "d")
            .await
            .filter(|r| r["reason"] == "Denied")
    })
    .await;

    assert_eq!(denied["status"], "False");
    let cr = crs.get("d").await.expect("request");
    assert!(
        cr.data["status"]["failureTime"].is_string(),
        "failureTime set"
    );
    assert!(cr.data["status"]["certificate"].is_null());
    assert_eq!(
        emulator().stats().issued_by(&ca),
        0,
        "no signing call for a denied request"
    );
}
