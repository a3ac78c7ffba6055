//! Recovery from NCP failures, end to end: faults are injected into an emulator of the test's own (a
//! fault applies to the next matching call, whichever issuer makes it), so these tests run
//! concurrently with the others.

use crate::support;

use ncp_pca_issuer::emulator::{FaultKind, FaultRule};
use ncp_pca_issuer::ncp::Operation;
use ncp_pca_issuer::ncp::types::KeyType;
use support::{
    certificate, client, emulator_root_ca_on, issued_secret, issuer_ref, namespace, openssl_verify,
    operator, own_emulator, ready_issuer_on,
};

#[tokio::test]
async fn a_lost_signing_response_still_ends_issued_with_exactly_one_certificate() {
    let emu = own_emulator();
    operator();
    let client = client().await;
    let ns = namespace("issue-lost").await;
    let ca = emulator_root_ca_on(emu, KeyType::Ec256, 3650).await;
    ready_issuer_on(emu, &client, &ns, "pca", false, &ca, serde_json::json!({})).await;
    // The next Sign End Csr commits, then never answers (the operator's NCP timeout is 2 s).
    emu.add_fault(
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
    assert_eq!(emu.stats().issued_by(&ca), 1, "recovered, not signed twice");
}

#[tokio::test]
async fn throttling_and_server_errors_are_retried_until_the_certificate_is_issued_once() {
    let emu = own_emulator();
    operator();
    let client = client().await;
    let ns = namespace("issue-flaky").await;
    let ca = emulator_root_ca_on(emu, KeyType::Ec256, 3650).await;
    ready_issuer_on(emu, &client, &ns, "pca", false, &ca, serde_json::json!({})).await;
    emu.add_fault(
        FaultRule::new(FaultKind::Throttle429)
            .for_operation(Operation::SignEndCsr)
            .times(2),
    );
    emu.add_fault(
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
        emu.stats().issued_by(&ca),
        1,
        "one certificate despite the failures"
    );
}
