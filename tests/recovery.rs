//! Recovery from NCP failures, end to end: faults are injected into the emulator, so the tests of this
//! binary run one at a time (a fault applies to the next matching call, whichever test makes it).

mod support;

use ncp_pca_issuer::emulator::{FaultKind, FaultRule};
use ncp_pca_issuer::ncp::Operation;
use ncp_pca_issuer::ncp::types::KeyType;
use support::{
    certificate, client, emulator, emulator_root_ca, issued_secret, issuer_ref, namespace,
    openssl_verify, operator, ready_issuer,
};

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test]
async fn a_lost_signing_response_still_ends_issued_with_exactly_one_certificate() {
    let _serial = ONE_AT_A_TIME.lock().await;
    operator();
    let client = client().await;
    let ns = namespace("issue-lost").await;
    let ca = emulator_root_ca(KeyType::Ec256, 3650).await;
    ready_issuer(&client, &ns, "pca", false, &ca, serde_json::json!({})).await;
    // The next Sign End Csr for any CA commits, then never answers (the operator's NCP timeout is 2 s).
    emulator().add_fault(
        FaultRule::new(FaultKind::CommitThenLoseResponse)
            .for_operation(Operation::SignEndCsr)
            .times(1),
    );

    certificate(&client, &ns, "lost", serde_json::json!({
        "secretName": "lost-tls", "dnsNames": ["lost.example.com"], "privateKey": {"algorithm": "ECDSA"},
        "issuerRef": issuer_ref("pca", "PrivateCA")
    }))
    .await;
    let (tls, ca_crt) = issued_secret(&client, &ns, "lost", "lost-tls").await;

    openssl_verify(&tls, &ca_crt).expect("verifies");
    assert_eq!(
        emulator().stats().issued_by(&ca),
        1,
        "recovered, not signed twice"
    );
}

#[tokio::test]
async fn throttling_and_server_errors_are_retried_until_the_certificate_is_issued_once() {
    let _serial = ONE_AT_A_TIME.lock().await;
    operator();
    let client = client().await;
    let ns = namespace("issue-flaky").await;
    let ca = emulator_root_ca(KeyType::Ec256, 3650).await;
    ready_issuer(&client, &ns, "pca", false, &ca, serde_json::json!({})).await;
    emulator().add_fault(
        FaultRule::new(FaultKind::Throttle429)
            .for_operation(Operation::SignEndCsr)
            .times(2),
    );
    emulator().add_fault(
        FaultRule::new(FaultKind::Error500)
            .for_operation(Operation::SignEndCsr)
            .times(1),
    );

    certificate(&client, &ns, "flaky", serde_json::json!({
        "secretName": "flaky-tls", "dnsNames": ["flaky.example.com"], "privateKey": {"algorithm": "ECDSA"},
        "issuerRef": issuer_ref("pca", "PrivateCA")
    }))
    .await;
    let (tls, ca_crt) = issued_secret(&client, &ns, "flaky", "flaky-tls").await;

    openssl_verify(&tls, &ca_crt).expect("verifies");
    assert_eq!(
        emulator().stats().issued_by(&ca),
        1,
        "one certificate despite the failures"
    );
}
