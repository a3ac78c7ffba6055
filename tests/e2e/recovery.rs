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

#[tokio::test]
async fn a_certificate_whose_signing_answer_was_lost_is_still_revoked_when_its_certificate_is_deleted()
 {
    use std::time::Duration;
    use support::{dynamic, eventually, ncp_client_on};
    let emu = own_emulator();
    operator();
    let client = client().await;
    let ns = namespace("revoke-gap").await;
    let ca = emulator_root_ca_on(emu, KeyType::Ec256, 3650).await;
    ready_issuer_on(emu, &client, &ns, "pca", false, &ca, serde_json::json!({})).await;
    // The signing takes effect in NCP and its answer is lost; the recovery cannot list the CA's
    // certificates, so the request holds a start marker and no serial: recorded nowhere.
    emu.add_fault(
        FaultRule::new(FaultKind::CommitThenLoseResponse)
            .for_operation(Operation::SignEndCsr)
            .times(1),
    );
    emu.add_fault(
        FaultRule::new(FaultKind::Unavailable503).for_operation(Operation::GetEndCertList),
    );
    certificate(&client, &ns, "gap", serde_json::json!({
        "secretName": "gap-tls", "dnsNames": ["gap.example.com"], "privateKey": {"algorithm": "ECDSA"},
        "issuerRef": issuer_ref("pca", "PrivateCA")
    }))
    .await;
    let crs = dynamic(
        &client,
        Some(&ns),
        "cert-manager.io",
        "v1",
        "CertificateRequest",
        "certificaterequests",
    );
    let request = eventually(
        "a request signed in NCP with a start marker and no serial",
        Duration::from_secs(60),
        || async {
            if emu.stats().issued_by(&ca) != 1 {
                return None;
            }
            let list = crs.list(&Default::default()).await.ok()?;
            list.items.into_iter().find(|r| {
                let a = r.metadata.annotations.clone().unwrap_or_default();
                a.contains_key("pca.ncp-issuer.dev/signing-started")
                    && !a.contains_key("pca.ncp-issuer.dev/serial")
                    && r.data["status"]["certificate"].is_null()
            })
        },
    )
    .await;
    let name = request.metadata.name.clone().expect("name");
    // The Certificate goes (policy OnCertificateDeletion), and with it the request.
    dynamic(
        &client,
        Some(&ns),
        "cert-manager.io",
        "v1",
        "Certificate",
        "certificates",
    )
    .delete("gap", &Default::default())
    .await
    .expect("delete certificate");
    // NCP cannot be asked: the finalizer holds the request, and an event says so.
    eventually(
        "the revocation to wait, with an event",
        Duration::from_secs(60),
        || async {
            let held = crs.get_opt(&name).await.ok()??;
            held.metadata.deletion_timestamp.as_ref()?;
            support::events_about(&client, &ns, &name)
                .await
                .iter()
                .any(|(reason, _)| reason == "RevocationPending")
                .then_some(())
        },
    )
    .await;
    assert!(
        revoked_serials(emu, &ca).await.is_empty(),
        "nothing revoked yet"
    );

    // NCP answers again: the certificate is found by key, revoked, and the request released.
    emu.clear_faults();
    eventually("the request released", Duration::from_secs(90), || async {
        crs.get_opt(&name).await.ok()?.is_none().then_some(())
    })
    .await;
    let listed = ncp_client_on(emu)
        .get_end_cert_list(&ca, Some(1))
        .await
        .expect("the CA's certificates");
    assert_eq!(listed.list_certs.len(), 1, "one certificate in NCP");
    let serial = listed.list_certs[0].clone();
    let revoked = revoked_serials(emu, &ca).await;
    assert!(
        revoked.contains(&serial),
        "{serial} not in the CRL: {revoked:?}"
    );
    assert_eq!(emu.stats().issued_by(&ca), 1, "signed once, never again");
}

/// The serials in CA `ca`'s CRL (rotated first), in NCP's text form.
async fn revoked_serials(emu: &ncp_pca_issuer::emulator::EmulatorHandle, ca: &str) -> Vec<String> {
    let ncp = support::ncp_client_on(emu);
    ncp.rotate_crl(ca).await.expect("crl rotated");
    let crl = ncp.get_ca_crl(ca).await.expect("crl");
    let (_, pem) = x509_parser::pem::parse_x509_pem(crl.as_bytes()).expect("crl pem");
    let (_, crl) = x509_parser::parse_x509_crl(&pem.contents).expect("crl parses");
    crl.iter_revoked_certificates()
        .map(|r| {
            ncp_pca_issuer::pki::Serial::from_bytes(r.raw_serial())
                .expect("serial")
                .to_colon_hex()
        })
        .collect()
}

/// The Ready condition of request `name`, once it has one with `reason`.
async fn request_with_reason(
    client: &kube::Client,
    ns: &str,
    name: &str,
    reason: &str,
    timeout: std::time::Duration,
) -> serde_json::Value {
    let crs = support::dynamic(
        client,
        Some(ns),
        "cert-manager.io",
        "v1",
        "CertificateRequest",
        "certificaterequests",
    );
    support::eventually(
        &format!("request {name} with Ready reason {reason}"),
        timeout,
        || async {
            let cr = crs.get(name).await.ok()?;
            let ready = cr.data["status"]["conditions"]
                .as_array()?
                .iter()
                .find(|c| c["type"] == "Ready")?
                .clone();
            (ready["reason"] == reason).then_some(cr.data)
        },
    )
    .await
}

#[tokio::test]
async fn an_unusable_signing_marker_warns_at_once_and_fails_when_the_retry_budget_ends() {
    use base64::Engine as _;
    use ncp_pca_issuer::api::annotations::ANNOTATION_SIGNING_STARTED;
    use ncp_pca_issuer::pki::{Name, NameAttr, PrivateKey, San, create_csr};
    use std::time::{Duration, Instant};
    let emu = own_emulator();
    operator();
    let client = client().await;
    let ns = namespace("marker-bad").await;
    let ca = emulator_root_ca_on(emu, KeyType::Ec256, 3650).await;
    ready_issuer_on(emu, &client, &ns, "pca", false, &ca, serde_json::json!({})).await;
    let key = PrivateKey::generate(KeyType::Ec256).expect("key");
    let csr = create_csr(
        &Name::new().with(NameAttr::CommonName, "marker"),
        &[San::Dns("marker.example.com".into())],
        &key,
        false,
    )
    .expect("csr");
    let crs = support::dynamic(
        &client,
        Some(&ns),
        "cert-manager.io",
        "v1",
        "CertificateRequest",
        "certificaterequests",
    );
    // Whoever may edit requests can write any marker: this one is not a time.
    let created = Instant::now();
    support::apply(&crs, serde_json::json!({
        "apiVersion": "cert-manager.io/v1", "kind": "CertificateRequest",
        "metadata": {"name": "bad-marker", "annotations": {ANNOTATION_SIGNING_STARTED: "yesterday-ish"}},
        "spec": {"request": base64::engine::general_purpose::STANDARD.encode(&csr),
                 "issuerRef": issuer_ref("pca", "PrivateCA")}
    }))
    .await
    .expect("request");

    // A Warning event at once, and the request no longer Initializing.
    let note = support::eventually("a MarkerUnusable event", Duration::from_secs(20), || {
        let client = client.clone();
        let ns = ns.clone();
        async move {
            support::events_about(&client, &ns, "bad-marker")
                .await
                .into_iter()
                .find(|(reason, _)| reason == "MarkerUnusable")
                .map(|(_, note)| note)
        }
    })
    .await;
    assert!(
        created.elapsed() < Duration::from_secs(20),
        "{:?}",
        created.elapsed()
    );
    assert!(
        note.contains("is not a time") && note.contains("not signed again"),
        "{note}"
    );
    request_with_reason(
        &client,
        &ns,
        "bad-marker",
        "Pending",
        Duration::from_secs(10),
    )
    .await;

    // The test operator's retry budget is 60 s: then Failed, with a clear message.
    let cr = request_with_reason(
        &client,
        &ns,
        "bad-marker",
        "Failed",
        Duration::from_secs(150),
    )
    .await;
    let ready = cr["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
        .cloned()
        .unwrap_or_default();
    let message = ready["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("is not a time")
            && message.contains("retry budget (60s)")
            && message.contains(&ca),
        "{message}"
    );
    assert!(cr["status"]["failureTime"].is_string());
    assert_eq!(emu.stats().issued_by(&ca), 0, "never signed");
    let events = support::events_about(&client, &ns, "bad-marker").await;
    assert_eq!(
        events.iter().filter(|(r, _)| r == "MarkerUnusable").count(),
        1,
        "one warning, not one per retry: {events:?}"
    );
}
