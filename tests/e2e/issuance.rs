//! End to end: cert-manager Certificates issued through PrivateCA / ClusterPrivateCA by our controllers,
//! against the real cert-manager controller and the NCP emulator.

use crate::support;

use ncp_pca_issuer::ncp::Operation;
use ncp_pca_issuer::ncp::types::KeyType;
use std::time::Duration;
use support::{
    certificate, client, dynamic, emulator, emulator_root_ca, eventually, issued_secret,
    issuer_ref, namespace, ncp_client, openssl_verify, operator, ready_issuer,
};
use x509_parser::extensions::GeneralName;

fn parse_leaf(tls_crt: &str) -> Vec<u8> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(tls_crt.as_bytes()).expect("pem");
    pem.contents
}

/// Whether `serial` is in the CA's CRL, after a rotation.
async fn in_crl(ca: &str, serial: &[u8]) -> Option<bool> {
    let ncp = ncp_client();
    ncp.rotate_crl(ca).await.ok()?;
    let crl = ncp.get_ca_crl(ca).await.ok()?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(crl.as_bytes()).ok()?;
    let (_, crl) = x509_parser::parse_x509_crl(&pem.contents).ok()?;
    Some(
        crl.iter_revoked_certificates()
            .any(|r| r.raw_serial() == serial),
    )
}

fn serial_of(tls_crt: &str) -> Vec<u8> {
    let der = parse_leaf(tls_crt);
    let (_, cert) = x509_parser::parse_x509_certificate(&der).expect("parses");
    cert.raw_serial().to_vec()
}

#[tokio::test]
async fn a_certificate_from_a_namespaced_private_ca_is_issued_with_the_sans_asked_for_and_verifies_to_ca_crt()
 {
    operator();
    let client = client().await;
    let ns = namespace("issue-pca").await;
    let ca = emulator_root_ca(KeyType::Rsa2048, 3650).await;
    ready_issuer(&client, &ns, "pca", false, &ca, serde_json::json!({})).await;

    certificate(
        &client,
        &ns,
        "web",
        serde_json::json!({
            "secretName": "web-tls", "commonName": "web.example.com",
            "dnsNames": ["web.example.com", "www.example.com"], "ipAddresses": ["10.1.2.3"],
            "uris": ["spiffe://cluster.local/ns/x/sa/web"], "emailAddresses": ["ops@example.com"],
            "privateKey": {"algorithm": "RSA", "size": 2048},
            "issuerRef": issuer_ref("pca", "PrivateCA")
        }),
    )
    .await;
    let (tls, ca_crt) = issued_secret(&client, &ns, "web", "web-tls").await;

    let verdict = openssl_verify(&tls, &ca_crt).expect("chain verifies to ca.crt");
    assert!(verdict.contains("OK"), "{verdict}");
    let der = parse_leaf(&tls);
    let (_, cert) = x509_parser::parse_x509_certificate(&der).expect("leaf parses");
    let sans = cert
        .subject_alternative_name()
        .expect("san ext")
        .expect("san present")
        .value
        .general_names
        .clone();
    let has = |want: &str| {
        sans.iter().any(|g| match g {
            GeneralName::DNSName(d) | GeneralName::RFC822Name(d) | GeneralName::URI(d) => {
                *d == want
            }
            GeneralName::IPAddress(ip) => *ip == [10u8, 1, 2, 3].as_slice() && want == "10.1.2.3",
            _ => false,
        })
    };
    for want in [
        "web.example.com",
        "www.example.com",
        "10.1.2.3",
        "spiffe://cluster.local/ns/x/sa/web",
        "ops@example.com",
    ] {
        assert!(has(want), "{want} missing from {sans:?}");
    }
    assert!(!cert.is_ca());
    assert_eq!(emulator().stats().issued_by(&ca), 1);
}

#[tokio::test]
async fn a_certificate_from_a_cluster_private_ca_with_an_ecdsa_key_is_issued() {
    operator();
    let client = client().await;
    let ns = namespace("issue-cpca").await;
    let ca = emulator_root_ca(KeyType::Ec256, 3650).await;
    let name = format!("cpca-{ns}");
    ready_issuer(&client, &ns, &name, true, &ca, serde_json::json!({})).await;

    certificate(
        &client,
        &ns,
        "api",
        serde_json::json!({
            "secretName": "api-tls", "dnsNames": ["api.example.com"], "duration": "24h",
            "privateKey": {"algorithm": "ECDSA", "size": 256},
            "issuerRef": issuer_ref(&name, "ClusterPrivateCA")
        }),
    )
    .await;
    let (tls, ca_crt) = issued_secret(&client, &ns, "api", "api-tls").await;

    openssl_verify(&tls, &ca_crt).expect("chain verifies");
    assert_eq!(
        emulator().stats().issued_by(&ca),
        1,
        "exactly one certificate signed for one request"
    );
}

#[tokio::test]
async fn an_is_ca_certificate_is_signed_with_sign_sub_csr_and_has_ca_basic_constraints() {
    operator();
    let client = client().await;
    let ns = namespace("issue-isca").await;
    // An emulator of its own: Sign Sub Csr calls are counted across CAs, and subordinate issuers in
    // other tests make them too.
    let emu = support::own_emulator();
    let ca = support::emulator_root_ca_on(emu, KeyType::Ec256, 3650).await;
    support::ready_issuer_on(emu, &client, &ns, "pca", false, &ca, serde_json::json!({})).await;
    let before = emu.stats().calls(Operation::SignSubCsr).success;

    certificate(&client, &ns, "inter", serde_json::json!({
        "secretName": "inter-tls", "commonName": "Team Intermediate", "isCA": true, "duration": "720h",
        "privateKey": {"algorithm": "ECDSA", "size": 256},
        "issuerRef": issuer_ref("pca", "PrivateCA")
    }))
    .await;
    let (tls, ca_crt) = issued_secret(&client, &ns, "inter", "inter-tls").await;

    openssl_verify(&tls, &ca_crt).expect("chain verifies");
    let der = parse_leaf(&tls);
    let (_, cert) = x509_parser::parse_x509_certificate(&der).expect("parses");
    assert!(cert.is_ca(), "basic constraints CA");
    assert!(
        emu.stats().calls(Operation::SignSubCsr).success > before,
        "Sign Sub Csr was used"
    );
}

#[tokio::test]
async fn a_request_waits_while_its_issuer_is_not_ready_and_is_issued_once_it_is() {
    operator();
    let client = client().await;
    let ns = namespace("issue-wait").await;
    let ca = emulator_root_ca(KeyType::Ec256, 3650).await;
    // The issuer exists but its credentials do not yet.
    let pcas = dynamic(
        &client,
        Some(&ns),
        "pca.ncp-issuer.dev",
        "v1alpha1",
        "PrivateCA",
        "privatecas",
    );
    support::apply(&pcas, serde_json::json!({
        "apiVersion": "pca.ncp-issuer.dev/v1alpha1", "kind": "PrivateCA", "metadata": {"name": "later"},
        "spec": {"caTag": ca, "endpoint": emulator().base_url(), "credentials": {"secretRef": {"name": "ncp-later"}}}
    }))
    .await
    .expect("issuer");
    certificate(&client, &ns, "w", serde_json::json!({
        "secretName": "w-tls", "dnsNames": ["w.example.com"], "privateKey": {"algorithm": "ECDSA"},
        "issuerRef": issuer_ref("later", "PrivateCA")
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
    let message = eventually(
        "the request to wait with Pending",
        Duration::from_secs(60),
        || async {
            let list = crs.list(&Default::default()).await.ok()?;
            let cr = list.items.first()?;
            let ready = cr.data["status"]["conditions"]
                .as_array()?
                .iter()
                .find(|c| c["type"] == "Ready")?
                .clone();
            (ready["reason"] == "Pending")
                .then(|| ready["message"].as_str().unwrap_or_default().to_string())
        },
    )
    .await;
    assert!(
        message.contains("later") && message.contains("Ready"),
        "{message}"
    );
    assert_eq!(emulator().stats().issued_by(&ca), 0);

    support::credentials_secret(
        &client,
        &ns,
        "ncp-later",
        &[
            ("NCLOUD_ACCESS_KEY", support::EMU_AK),
            ("NCLOUD_SECRET_KEY", support::EMU_SK),
        ],
    )
    .await;
    let (tls, ca_crt) = issued_secret(&client, &ns, "w", "w-tls").await;
    openssl_verify(&tls, &ca_crt).expect("verifies");
}

#[tokio::test]
async fn an_unsupported_key_fails_with_a_message_naming_what_is_supported_and_signs_nothing() {
    operator();
    let client = client().await;
    let ns = namespace("issue-p384").await;
    let ca = emulator_root_ca(KeyType::Ec256, 3650).await;
    ready_issuer(&client, &ns, "pca", false, &ca, serde_json::json!({})).await;

    certificate(&client, &ns, "p384", serde_json::json!({
        "secretName": "p384-tls", "dnsNames": ["p384.example.com"], "privateKey": {"algorithm": "ECDSA", "size": 384},
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
    let (message, failure_time) =
        eventually("the request to fail", Duration::from_secs(60), || async {
            let list = crs.list(&Default::default()).await.ok()?;
            let cr = list.items.first()?;
            let ready = cr.data["status"]["conditions"]
                .as_array()?
                .iter()
                .find(|c| c["type"] == "Ready")?
                .clone();
            (ready["reason"] == "Failed").then(|| {
                (
                    ready["message"].as_str().unwrap_or_default().to_string(),
                    cr.data["status"]["failureTime"].clone(),
                )
            })
        })
        .await;
    assert!(
        message.contains("P-384") || message.contains("384"),
        "{message}"
    );
    assert!(
        message.contains("P-256") && message.contains("RSA 2048"),
        "names what is supported: {message}"
    );
    assert!(failure_time.is_string(), "failureTime set");
    assert_eq!(emulator().stats().issued_by(&ca), 0);
}

#[tokio::test]
async fn deleting_a_certificate_revokes_its_certificate_in_ncp() {
    operator();
    let client = client().await;
    let ns = namespace("issue-revoke").await;
    let ca = emulator_root_ca(KeyType::Ec256, 3650).await;
    ready_issuer(&client, &ns, "pca", false, &ca, serde_json::json!({})).await;
    certificate(&client, &ns, "gone", serde_json::json!({
        "secretName": "gone-tls", "dnsNames": ["gone.example.com"], "privateKey": {"algorithm": "ECDSA"},
        "issuerRef": issuer_ref("pca", "PrivateCA")
    }))
    .await;
    let (tls, _) = issued_secret(&client, &ns, "gone", "gone-tls").await;
    let serial = serial_of(&tls);

    let certs = dynamic(
        &client,
        Some(&ns),
        "cert-manager.io",
        "v1",
        "Certificate",
        "certificates",
    );
    certs
        .delete("gone", &Default::default())
        .await
        .expect("delete certificate");

    eventually(
        "the serial in the CA's CRL",
        Duration::from_secs(90),
        || async { in_crl(&ca, &serial).await?.then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn with_the_never_policy_deleting_a_certificate_revokes_nothing() {
    operator();
    let client = client().await;
    let ns = namespace("issue-never").await;
    let ca = emulator_root_ca(KeyType::Ec256, 3650).await;
    ready_issuer(
        &client,
        &ns,
        "pca",
        false,
        &ca,
        serde_json::json!({"revocationPolicy": "Never"}),
    )
    .await;
    certificate(&client, &ns, "kept", serde_json::json!({
        "secretName": "kept-tls", "dnsNames": ["kept.example.com"], "privateKey": {"algorithm": "ECDSA"},
        "issuerRef": issuer_ref("pca", "PrivateCA")
    }))
    .await;
    let (tls, _) = issued_secret(&client, &ns, "kept", "kept-tls").await;
    let serial = serial_of(&tls);
    let crs = dynamic(
        &client,
        Some(&ns),
        "cert-manager.io",
        "v1",
        "CertificateRequest",
        "certificaterequests",
    );
    let list = crs.list(&Default::default()).await.expect("list");
    assert!(
        list.items.iter().all(|cr| !cr
            .metadata
            .finalizers
            .clone()
            .unwrap_or_default()
            .iter()
            .any(|f| f == "pca.ncp-issuer.dev/revoke")),
        "no finalizer under Never"
    );
    let certs = dynamic(
        &client,
        Some(&ns),
        "cert-manager.io",
        "v1",
        "Certificate",
        "certificates",
    );
    certs
        .delete("kept", &Default::default())
        .await
        .expect("delete");
    eventually(
        "the requests to be garbage collected",
        Duration::from_secs(60),
        || async {
            crs.list(&Default::default())
                .await
                .ok()?
                .items
                .is_empty()
                .then_some(())
        },
    )
    .await;
    assert_eq!(in_crl(&ca, &serial).await, Some(false), "not revoked");
}

async fn request_ready(client: &kube::Client, ns: &str, reason: &str) -> serde_json::Value {
    let crs = dynamic(
        client,
        Some(ns),
        "cert-manager.io",
        "v1",
        "CertificateRequest",
        "certificaterequests",
    );
    eventually(
        &format!("a request with Ready reason {reason}"),
        Duration::from_secs(60),
        || async {
            let list = crs.list(&Default::default()).await.ok()?;
            list.items.iter().find_map(|cr| {
                let ready = cr.data["status"]["conditions"]
                    .as_array()?
                    .iter()
                    .find(|c| c["type"] == "Ready")?
                    .clone();
                (ready["reason"] == reason).then_some(cr.data.clone())
            })
        },
    )
    .await
}

#[tokio::test]
async fn a_request_whose_csr_is_broken_fails_and_signs_nothing() {
    use base64::Engine as _;
    operator();
    let client = client().await;
    let ns = namespace("issue-badcsr").await;
    let ca = emulator_root_ca(KeyType::Ec256, 3650).await;
    ready_issuer(&client, &ns, "pca", false, &ca, serde_json::json!({})).await;
    let crs = dynamic(
        &client,
        Some(&ns),
        "cert-manager.io",
        "v1",
        "CertificateRequest",
        "certificaterequests",
    );
    let garbage =
        "-----BEGIN CERTIFICATE REQUEST-----\nbm90IGEgY3Ny\n-----END CERTIFICATE REQUEST-----\n";
    support::apply(&crs, serde_json::json!({
        "apiVersion": "cert-manager.io/v1", "kind": "CertificateRequest", "metadata": {"name": "broken"},
        "spec": {"request": base64::engine::general_purpose::STANDARD.encode(garbage),
                 "issuerRef": issuer_ref("pca", "PrivateCA")}
    }))
    .await
    .expect("request");

    let cr = request_ready(&client, &ns, "Failed").await;

    let ready = cr["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap()
        .clone();
    assert!(
        ready["message"]
            .as_str()
            .unwrap_or_default()
            .contains("not a valid CSR"),
        "{ready}"
    );
    assert!(cr["status"]["failureTime"].is_string());
    assert_eq!(emulator().stats().issued_by(&ca), 0);
}

#[tokio::test]
async fn a_duration_longer_than_the_ca_lives_is_clamped_to_the_ca_and_said_in_an_event() {
    operator();
    let client = client().await;
    let ns = namespace("issue-clamp").await;
    let ca = emulator_root_ca(KeyType::Ec256, 10).await;
    ready_issuer(&client, &ns, "pca", false, &ca, serde_json::json!({})).await;

    certificate(
        &client,
        &ns,
        "long",
        serde_json::json!({
            "secretName": "long-tls", "dnsNames": ["long.example.com"], "duration": "2160h",
            "privateKey": {"algorithm": "ECDSA"}, "issuerRef": issuer_ref("pca", "PrivateCA")
        }),
    )
    .await;
    let (tls, ca_crt) = issued_secret(&client, &ns, "long", "long-tls").await;

    let leaf_der = parse_leaf(&tls);
    let (_, leaf) = x509_parser::parse_x509_certificate(&leaf_der).expect("leaf");
    let (_, ca_pem) = x509_parser::pem::parse_x509_pem(ca_crt.as_bytes()).expect("ca pem");
    let (_, root) = x509_parser::parse_x509_certificate(&ca_pem.contents).expect("ca");
    assert!(
        leaf.validity().not_after <= root.validity().not_after,
        "never outlives the CA"
    );
    let days =
        (leaf.validity().not_after.timestamp() - leaf.validity().not_before.timestamp()) / 86_400;
    assert!(days <= 10, "clamped to the CA's life: {days} days");

    let events: kube::Api<k8s_openapi::api::events::v1::Event> =
        kube::Api::namespaced(client.clone(), &ns);
    let note = eventually(
        "an Issued event with the effective NotAfter",
        Duration::from_secs(30),
        || async {
            let list = events.list(&Default::default()).await.ok()?;
            list.items
                .iter()
                .find(|e| e.reason.as_deref() == Some("Issued"))
                .and_then(|e| e.note.clone())
        },
    )
    .await;
    assert!(note.contains("valid until"), "{note}");
}

/// Our part of a request's status: the Ready condition and the fields only we write.
fn our_status(request: &kube::api::DynamicObject) -> Option<serde_json::Value> {
    let status = &request.data["status"];
    let ready = status["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")?
        .clone();
    Some(serde_json::json!({
        "ready": ready, "certificate": status["certificate"], "ca": status["ca"],
        "failureTime": status["failureTime"],
    }))
}

/// Every version of every CertificateRequest in `ns`, as a watch delivers them (each write is one
/// version), until `done` says the collected versions are enough.
async fn request_versions_until(
    client: &kube::Client,
    ns: &str,
    started: tokio::sync::oneshot::Sender<()>,
    done: impl Fn(&[kube::api::DynamicObject]) -> bool,
) -> Vec<kube::api::DynamicObject> {
    use futures::StreamExt as _;
    use kube::runtime::watcher;
    let api = dynamic(
        client,
        Some(ns),
        "cert-manager.io",
        "v1",
        "CertificateRequest",
        "certificaterequests",
    );
    let mut events = std::pin::pin!(watcher(api, watcher::Config::default()));
    let mut started = Some(started);
    let mut versions = Vec::new();
    while let Some(event) = events.next().await {
        match event.expect("watch") {
            watcher::Event::InitDone => {
                if let Some(tx) = started.take() {
                    let _ = tx.send(());
                }
            }
            watcher::Event::Apply(obj) | watcher::Event::InitApply(obj) => {
                versions.push(obj);
                if done(&versions) {
                    return versions;
                }
            }
            watcher::Event::Init | watcher::Event::Delete(_) => {}
        }
    }
    versions
}

#[tokio::test]
async fn a_request_approved_at_first_sight_is_issued_through_ncp_with_exactly_one_status_write() {
    operator();
    let client = client().await;
    let ns = namespace("issue-one-write").await;
    let ca = emulator_root_ca(KeyType::Ec256, 3650).await;
    ready_issuer(&client, &ns, "pca", false, &ca, serde_json::json!({})).await;

    // Every version of the request, from before it exists until it is Ready.
    let (tx, rx) = tokio::sync::oneshot::channel();
    let watching = tokio::spawn({
        let client = client.clone();
        let ns = ns.clone();
        async move {
            request_versions_until(&client, &ns, tx, |versions| {
                versions.last().and_then(our_status).is_some_and(|s| {
                    s["ready"]["status"] == "True" || s["ready"]["reason"] == "Failed"
                })
            })
            .await
        }
    });
    tokio::time::timeout(Duration::from_secs(30), rx)
        .await
        .expect("the watch lists within 30 s")
        .expect("the watch started");
    support::ecdsa_certificate(&client, &ns, "once", issuer_ref("pca", "PrivateCA")).await;
    let (tls, ca_crt) = issued_secret(&client, &ns, "once", "once-tls").await;
    openssl_verify(&tls, &ca_crt).expect("verifies");
    let versions = tokio::time::timeout(Duration::from_secs(30), watching)
        .await
        .expect("the Ready version is seen")
        .expect("watch task");

    // Our status writes: the versions where our part of the status changed.
    let mut ours: Vec<serde_json::Value> = Vec::new();
    for v in &versions {
        if let Some(s) = our_status(v)
            && ours.last() != Some(&s)
        {
            ours.push(s);
        }
    }
    let reasons: Vec<&serde_json::Value> = ours.iter().map(|s| &s["ready"]["reason"]).collect();
    assert_eq!(
        reasons,
        [&serde_json::json!("Issued")],
        "one status write, Issued (no Initializing, no Pending) over {} versions",
        versions.len()
    );
    assert!(
        versions.iter().any(|v| v
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key("pca.ncp-issuer.dev/signing-started"))),
        "the start marker was written before signing"
    );
    let last = versions.last().expect("a version");
    assert!(
        last.metadata
            .annotations
            .as_ref()
            .is_none_or(|a| !a.contains_key("pca.ncp-issuer.dev/serial")),
        "no serial annotation when the Issued write succeeded"
    );
}

#[tokio::test]
async fn rotated_credentials_are_picked_up_by_requests_without_a_secret_read_per_request() {
    use ncp_pca_issuer::emulator::{EmulatorConfig, spawn};
    use ncp_pca_issuer::ncp::Credentials;
    operator();
    let client = client().await;
    let ns = namespace("issue-rotate").await;
    // An emulator of this test's own, with a read-only key besides the full one.
    let mut config = EmulatorConfig::new(Credentials::new(support::EMU_AK, support::EMU_SK));
    config.test_controls = true;
    config.strict_signing = true;
    config.viewer_credentials = Some(Credentials::new("viewer-ak", "viewer-sk-0123456789"));
    let emu = spawn(config).await.expect("emulator");
    let ca = support::emulator_root_ca_on(&emu, KeyType::Ec256, 3650).await;

    // The issuer starts with the read-only key: Get CA works, so it is Ready; signing does not.
    support::credentials_secret(
        &client,
        &ns,
        "creds",
        &[
            ("NCLOUD_ACCESS_KEY", "viewer-ak"),
            ("NCLOUD_SECRET_KEY", "viewer-sk-0123456789"),
        ],
    )
    .await;
    let pcas = dynamic(
        &client,
        Some(&ns),
        "pca.ncp-issuer.dev",
        "v1alpha1",
        "PrivateCA",
        "privatecas",
    );
    support::apply(
        &pcas,
        serde_json::json!({"apiVersion": "pca.ncp-issuer.dev/v1alpha1", "kind": "PrivateCA",
            "metadata": {"name": "pca"},
            "spec": {"caTag": ca, "endpoint": emu.base_url(), "credentials": {"secretRef": {"name": "creds"}}}}),
    )
    .await
    .expect("issuer");
    support::issuer_condition(&client, Some(&ns), "PrivateCA", "pca", "True", "CAActive").await;
    support::ecdsa_certificate(&client, &ns, "first", issuer_ref("pca", "PrivateCA")).await;
    let crs = dynamic(
        &client,
        Some(&ns),
        "cert-manager.io",
        "v1",
        "CertificateRequest",
        "certificaterequests",
    );
    eventually(
        "the request to wait for its issuer after NCP refused the read-only key",
        Duration::from_secs(60),
        || async {
            let list = crs.list(&Default::default()).await.ok()?;
            list.items.iter().find_map(|r| {
                our_status(r).filter(|s| {
                    s["ready"]["reason"] == "Pending"
                        && s["ready"]["message"]
                            .as_str()
                            .is_some_and(|m| m.contains("waiting for the issuer"))
                })
            })
        },
    )
    .await;
    assert_eq!(emu.stats().issued_by(&ca), 0);

    // The rotation: the full key. The issuer's next check reads it and builds a new client, which
    // wakes the waiting request.
    support::credentials_secret(
        &client,
        &ns,
        "creds",
        &[
            ("NCLOUD_ACCESS_KEY", support::EMU_AK),
            ("NCLOUD_SECRET_KEY", support::EMU_SK),
        ],
    )
    .await;
    let (tls, ca_crt) = issued_secret(&client, &ns, "first", "first-tls").await;
    openssl_verify(&tls, &ca_crt).expect("verifies");
    assert_eq!(
        emu.stats().issued_by(&ca),
        1,
        "signed once, with the rotated key"
    );

    // No Secret read per request: right after a check of the issuer (the next periodic one is 10 s
    // away), the Secret goes; requests made now are still signed, with the client that check built.
    support::issuer_reconciled(&emu, &client, Some(&ns), "PrivateCA", "pca").await;
    kube::Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), &ns)
        .delete("creds", &Default::default())
        .await
        .expect("secret deleted");
    for name in ["second", "third", "fourth"] {
        support::ecdsa_certificate(&client, &ns, name, issuer_ref("pca", "PrivateCA")).await;
    }
    for name in ["second", "third", "fourth"] {
        issued_secret(&client, &ns, name, &format!("{name}-tls")).await;
    }
    assert_eq!(emu.stats().issued_by(&ca), 4);
    // The check, not the requests, reads the Secret: the next one finds it gone.
    support::issuer_condition(
        &client,
        Some(&ns),
        "PrivateCA",
        "pca",
        "False",
        "CredentialsNotFound",
    )
    .await;
}

#[tokio::test]
async fn an_issuer_asks_ncp_once_per_change_and_not_again_for_its_own_status_write() {
    let emu = support::own_emulator();
    operator();
    let client = client().await;
    let ns = namespace("issuer-once").await;
    let ca = support::emulator_root_ca_on(emu, KeyType::Ec256, 3650).await;
    let calls = || {
        let stats = emu.stats();
        (
            stats.calls(Operation::GetCa).total,
            stats.calls(Operation::GetCaChain).total,
        )
    };
    support::ready_issuer_on(emu, &client, &ns, "pca", false, &ca, serde_json::json!({})).await;
    // Ready is written: the check that wrote it asked NCP once. Its own status write (and the
    // periodic re-check, 10 s away in these tests) must not make it ask again.
    assert_eq!(
        calls(),
        (1, 1),
        "one Get CA and one Get CA Chain for the first check"
    );
    support::stays(
        "no second Get CA / Get CA Chain after the issuer's own status write",
        Duration::from_secs(4),
        || async { calls() == (1, 1) },
    )
    .await;
    // A spec change: one more check, one more pair of calls.
    let pcas = dynamic(
        &client,
        Some(&ns),
        "pca.ncp-issuer.dev",
        "v1alpha1",
        "PrivateCA",
        "privatecas",
    );
    pcas.patch(
        "pca",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(serde_json::json!({"spec": {"revocationPolicy": "Never"}})),
    )
    .await
    .expect("spec changed");
    eventually(
        "the re-check of the new spec",
        Duration::from_secs(30),
        || async { (calls() == (2, 2)).then_some(()) },
    )
    .await;
    support::stays(
        "one check per spec change",
        Duration::from_secs(4),
        || async { calls() == (2, 2) },
    )
    .await;
}
