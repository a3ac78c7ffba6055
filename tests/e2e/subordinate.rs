//! Subordinate mode end to end: an intermediate whose key is generated in the cluster and whose
//! certificate NCP (the emulator) signs once, then cert-manager Certificates signed locally with it,
//! through the real cert-manager controller.
//!
//! Tests that count calls or watch the issuer's reconciles through Get Ca calls have an emulator of
//! their own.

use crate::support;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use ncp_pca_issuer::ncp::Operation;
use ncp_pca_issuer::ncp::types::KeyType;
use ncp_pca_issuer::pki::{CertInfo, PrivateKey, parse_certificates_pem};
use std::time::Duration;
use support::{
    certificate, client, dynamic, emulator, emulator_root_ca, emulator_root_ca_on, events_about,
    eventually, issued_secret, issuer_condition, issuer_ref, namespace, openssl_verify, operator,
    own_emulator, ready_issuer, ready_issuer_on,
};

fn certs(pem: &str) -> Vec<CertInfo> {
    parse_certificates_pem(pem).expect("certificates parse")
}

/// The NCP CA's root, as Get CA Chain gives it.
async fn ncp_root(emu: &ncp_pca_issuer::emulator::EmulatorHandle, ca: &str) -> CertInfo {
    let chain = support::ncp_client_on(emu)
        .get_ca_chain(ca)
        .await
        .expect("ca chain");
    certs(&chain)
        .into_iter()
        .find(CertInfo::is_self_signed)
        .expect("a root in the chain")
}

async fn secret_data(client: &kube::Client, ns: &str, name: &str) -> Option<Secret> {
    Api::<Secret>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .expect("read secret")
}

fn field(secret: &Secret, key: &str) -> String {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| String::from_utf8(b.0.clone()).expect("utf8"))
        .unwrap_or_default()
}

/// `status.subordinate.serialNumber` of an issuer.
async fn intermediate_serial(
    client: &kube::Client,
    ns: Option<&str>,
    kind: &str,
    name: &str,
) -> Option<String> {
    let plural = if kind == "PrivateCA" {
        "privatecas"
    } else {
        "clusterprivatecas"
    };
    let api = dynamic(client, ns, "pca.ncp-issuer.dev", "v1alpha1", kind, plural);
    let obj = api.get(name).await.ok()?;
    obj.data["status"]["subordinate"]["serialNumber"]
        .as_str()
        .map(str::to_string)
}

/// Every CertificateRequest of the namespace that failed (`Ready=False` with reason Failed).
async fn failed_requests(client: &kube::Client, ns: &str) -> Vec<String> {
    let crs = dynamic(
        client,
        Some(ns),
        "cert-manager.io",
        "v1",
        "CertificateRequest",
        "certificaterequests",
    );
    crs.list(&Default::default())
        .await
        .expect("list requests")
        .items
        .into_iter()
        .filter(|r| {
            r.data["status"]["conditions"].as_array().is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Ready" && c["reason"] == "Failed")
            })
        })
        .map(|r| {
            format!(
                "{}: {}",
                r.metadata.name.unwrap_or_default(),
                r.data["status"]
            )
        })
        .collect()
}

#[tokio::test]
async fn certificates_from_a_subordinate_private_ca_verify_to_the_ncp_root_through_the_intermediate_after_one_sign_sub_csr_and_no_sign_end_csr()
 {
    operator();
    let emu = own_emulator();
    let client = client().await;
    let ns = namespace("sub-issue").await;
    let ca = emulator_root_ca_on(emu, KeyType::Rsa2048, 3650).await;
    ready_issuer_on(
        emu,
        &client,
        &ns,
        "sub",
        false,
        &ca,
        serde_json::json!({"subordinate": {"secretName": "sub-ca", "duration": "720h",
            "subject": {"commonName": "Team Intermediate", "organizations": ["Example"]}}}),
    )
    .await;

    // The intermediate's Secret: key generated here, certificate signed by NCP, root in ca.crt.
    let secret = secret_data(&client, &ns, "sub-ca")
        .await
        .expect("intermediate secret");
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
    let intermediate = certs(&field(&secret, "tls.crt")).remove(0);
    assert!(intermediate.is_ca);
    assert_eq!(
        intermediate.subject.to_string(),
        "O=Example, CN=Team Intermediate"
    );
    let key = PrivateKey::from_pem(&field(&secret, "tls.key")).expect("key parses");
    assert_eq!(key.spki_der(), intermediate.public_key.spki_der());
    let root = ncp_root(emu, &ca).await;
    assert_eq!(certs(&field(&secret, "ca.crt"))[0].der, root.der);
    assert_eq!(
        intermediate_serial(&client, Some(&ns), "PrivateCA", "sub")
            .await
            .as_deref(),
        Some(intermediate.serial.to_colon_hex().as_str())
    );

    // Three certificates: RSA, ECDSA P-256, and ECDSA P-384 (which NCP would not sign, but the
    // intermediate does), with the usages asked for.
    for (name, key) in [
        ("rsa", serde_json::json!({"algorithm": "RSA", "size": 2048})),
        (
            "p256",
            serde_json::json!({"algorithm": "ECDSA", "size": 256}),
        ),
        (
            "p384",
            serde_json::json!({"algorithm": "ECDSA", "size": 384}),
        ),
    ] {
        certificate(
            &client,
            &ns,
            name,
            serde_json::json!({
                "secretName": format!("{name}-tls"), "dnsNames": [format!("{name}.example.com")],
                "usages": ["digital signature", "key encipherment", "server auth", "client auth"],
                "privateKey": key, "issuerRef": issuer_ref("sub", "PrivateCA")
            }),
        )
        .await;
    }
    for name in ["rsa", "p256", "p384"] {
        let (tls, ca_crt) = issued_secret(&client, &ns, name, &format!("{name}-tls")).await;
        let verdict = openssl_verify(&tls, &ca_crt).expect("verifies through the intermediate");
        assert!(verdict.contains("OK"), "{verdict}");
        let chain = certs(&tls);
        assert_eq!(chain.len(), 2, "leaf and intermediate, no root");
        assert_eq!(chain[1].der, intermediate.der);
        assert_eq!(certs(&ca_crt)[0].der, root.der);
        let (_, leaf) = x509_parser::parse_x509_certificate(&chain[0].der).expect("leaf");
        let eku = leaf
            .extended_key_usage()
            .expect("eku ext")
            .expect("eku present")
            .value;
        assert!(eku.server_auth && eku.client_auth, "{name}: {eku:?}");
        // The leaf cannot outlive the intermediate (90 days asked, 30-day intermediate).
        assert!(chain[0].not_after <= intermediate.not_after);
    }

    // A CA certificate is refused, with the reason.
    certificate(
        &client,
        &ns,
        "sub-sub",
        serde_json::json!({
            "secretName": "sub-sub-tls", "commonName": "nested", "isCA": true,
            "privateKey": {"algorithm": "ECDSA", "size": 256},
            "issuerRef": issuer_ref("sub", "PrivateCA")
        }),
    )
    .await;
    let failed = eventually("the isCA request fails", Duration::from_secs(60), || {
        let client = client.clone();
        let ns = ns.clone();
        async move {
            let failed = failed_requests(&client, &ns).await;
            (!failed.is_empty()).then_some(failed)
        }
    })
    .await;
    assert!(
        failed[0].contains("end-entity certificates only"),
        "{failed:?}"
    );

    // NCP signed exactly one thing for this CA (the intermediate), and nothing ever called Sign End
    // Csr on this test's emulator.
    assert_eq!(emu.stats().issued_by(&ca), 1);
    assert_eq!(emu.stats().calls(Operation::SignEndCsr).total, 0);
    let listed = support::ncp_client_on(emu)
        .get_end_cert_list(&ca, None)
        .await
        .expect("list")
        .list_certs;
    assert_eq!(listed, [intermediate.serial.to_colon_hex()]);
}

#[tokio::test]
async fn a_forced_rotation_replaces_the_intermediate_with_a_fresh_key_and_no_request_fails() {
    operator();
    let emu = own_emulator();
    let client = client().await;
    let ns = namespace("sub-rotate").await;
    let ca = emulator_root_ca_on(emu, KeyType::Ec256, 3650).await;
    let name = format!("rot-{ns}");
    let secret_name = format!("rot-{ns}");
    ready_issuer_on(
        emu,
        &client,
        &ns,
        &name,
        true,
        &ca,
        serde_json::json!({"subordinate": {"secretName": secret_name, "keyAlgorithm": "RSA2048"}}),
    )
    .await;
    let crn = support::CLUSTER_RESOURCE_NAMESPACE;
    let before = secret_data(&client, crn, &secret_name)
        .await
        .expect("secret");
    let old = certs(&field(&before, "tls.crt")).remove(0);
    let old_key = field(&before, "tls.key");

    let from = || issuer_ref(&name, "ClusterPrivateCA");
    support::ecdsa_certificate(&client, &ns, "before", from()).await;
    let (tls_before, ca_before) = issued_secret(&client, &ns, "before", "before-tls").await;

    // Ask for a rotation and keep requesting certificates while it happens.
    let api = dynamic(
        &client,
        None,
        "pca.ncp-issuer.dev",
        "v1alpha1",
        "ClusterPrivateCA",
        "clusterprivatecas",
    );
    api.patch(
        &name,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"metadata": {"annotations": {
            "pca.ncp-issuer.dev/renew-intermediate": "2026-11-28T00:00:00Z"}}})),
    )
    .await
    .expect("annotate");
    for i in 0..5 {
        support::ecdsa_certificate(&client, &ns, &format!("during-{i}"), from()).await;
    }
    let new_serial = eventually(
        "the intermediate is rotated",
        Duration::from_secs(60),
        || {
            let client = client.clone();
            let name = name.clone();
            let old_serial = old.serial.to_colon_hex();
            async move {
                intermediate_serial(&client, None, "ClusterPrivateCA", &name)
                    .await
                    .filter(|s| *s != old_serial)
            }
        },
    )
    .await;
    let after = secret_data(&client, crn, &secret_name)
        .await
        .expect("secret");
    let new = certs(&field(&after, "tls.crt")).remove(0);
    assert_eq!(new.serial.to_colon_hex(), new_serial);
    assert_ne!(field(&after, "tls.key"), old_key, "a fresh key");
    assert_ne!(new.public_key.spki_der(), old.public_key.spki_der());
    assert!(
        field(&after, "pending.key").is_empty(),
        "no pending key left"
    );

    support::ecdsa_certificate(&client, &ns, "after", from()).await;
    let (tls_after, ca_after) = issued_secret(&client, &ns, "after", "after-tls").await;
    assert_eq!(
        certs(&tls_after)[1].der,
        new.der,
        "signed by the new intermediate"
    );
    assert_eq!(certs(&tls_before)[1].der, old.der);
    for (tls, ca_crt) in [(&tls_before, &ca_before), (&tls_after, &ca_after)] {
        let verdict = openssl_verify(tls, ca_crt).expect("verifies");
        assert!(verdict.contains("OK"), "{verdict}");
    }
    for i in 0..5 {
        let n = format!("during-{i}");
        let (tls, ca_crt) = issued_secret(&client, &ns, &n, &format!("{n}-tls")).await;
        assert!(openssl_verify(&tls, &ca_crt).is_ok());
    }
    assert!(failed_requests(&client, &ns).await.is_empty());
    assert_eq!(emu.stats().issued_by(&ca), 2, "two intermediates, no leaf");

    // The same annotation value does not rotate again, once the controller has looked at the issuer
    // after the rotation (a reconcile that started after the new intermediate was seen has ended).
    support::issuer_reconciled(emu, &client, None, "ClusterPrivateCA", &name).await;
    assert_eq!(
        intermediate_serial(&client, None, "ClusterPrivateCA", &name).await,
        Some(new_serial)
    );
}

#[tokio::test]
async fn a_deleted_or_corrupted_intermediate_secret_is_detected_reported_and_provisioned_again() {
    operator();
    let client = client().await;
    let ns = namespace("sub-heal").await;
    let ca = emulator_root_ca(KeyType::Ec256, 3650).await;
    ready_issuer(
        &client,
        &ns,
        "heal",
        false,
        &ca,
        serde_json::json!({"subordinate": {"secretName": "heal-ca"}}),
    )
    .await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let first = intermediate_serial(&client, Some(&ns), "PrivateCA", "heal")
        .await
        .expect("serial");

    // Deleted: a new intermediate in a new Secret.
    secrets
        .delete("heal-ca", &DeleteParams::default())
        .await
        .expect("delete");
    let second = eventually(
        "a new intermediate after deletion",
        Duration::from_secs(60),
        || {
            let client = client.clone();
            let ns = ns.clone();
            let first = first.clone();
            async move {
                intermediate_serial(&client, Some(&ns), "PrivateCA", "heal")
                    .await
                    .filter(|s| *s != first)
            }
        },
    )
    .await;
    let secret = secret_data(&client, &ns, "heal-ca")
        .await
        .expect("re-created");
    assert_eq!(
        certs(&field(&secret, "tls.crt"))[0].serial.to_colon_hex(),
        second
    );

    // Corrupted: a key that is not the certificate's.
    let stranger = PrivateKey::generate(KeyType::Ec256).expect("key");
    secrets
        .patch(
            "heal-ca",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"stringData": {"tls.key": stranger.to_pkcs8_pem()}})),
        )
        .await
        .expect("tamper");
    let third = eventually(
        "a new intermediate after tampering",
        Duration::from_secs(60),
        || {
            let client = client.clone();
            let ns = ns.clone();
            let second = second.clone();
            async move {
                intermediate_serial(&client, Some(&ns), "PrivateCA", "heal")
                    .await
                    .filter(|s| *s != second)
            }
        },
    )
    .await;
    let secret = secret_data(&client, &ns, "heal-ca").await.expect("secret");
    let cert = certs(&field(&secret, "tls.crt")).remove(0);
    assert_eq!(cert.serial.to_colon_hex(), third);
    let key = PrivateKey::from_pem(&field(&secret, "tls.key")).expect("key");
    assert_eq!(
        key.spki_der(),
        cert.public_key.spki_der(),
        "key matches again"
    );
    assert_ne!(key.spki_der(), stranger.spki_der());

    let reasons: Vec<String> = events_about(&client, &ns, "heal")
        .await
        .into_iter()
        .map(|(r, _)| r)
        .collect();
    for want in [
        "IntermediateIssued",
        "IntermediateMissing",
        "IntermediateInvalid",
    ] {
        assert!(
            reasons.iter().any(|r| r == want),
            "{want} not in {reasons:?}"
        );
    }

    // And it signs with the healed intermediate.
    support::ecdsa_certificate(&client, &ns, "web", issuer_ref("heal", "PrivateCA")).await;
    let (tls, ca_crt) = issued_secret(&client, &ns, "web", "web-tls").await;
    assert_eq!(certs(&tls)[1].der, cert.der);
    assert!(openssl_verify(&tls, &ca_crt).is_ok());
    assert_eq!(
        emulator().stats().issued_by(&ca),
        3,
        "three intermediates, no leaf"
    );
}

#[tokio::test]
async fn a_secret_the_issuer_did_not_create_is_left_alone_and_reported() {
    operator();
    let client = client().await;
    let ns = namespace("sub-conflict").await;
    let ca = emulator_root_ca(KeyType::Ec256, 3650).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let theirs: Secret = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "taken"},
        "stringData": {"password": "hunter2"}
    }))
    .expect("secret");
    secrets
        .create(&Default::default(), &theirs)
        .await
        .expect("create");
    support::apply_issuer(
        &client,
        &ns,
        "clash",
        false,
        &ca,
        serde_json::json!({"subordinate": {"secretName": "taken"}}),
    )
    .await;
    let ready = issuer_condition(
        &client,
        Some(&ns),
        "PrivateCA",
        "clash",
        "False",
        "SecretConflict",
    )
    .await;
    assert!(
        ready["message"]
            .as_str()
            .unwrap_or_default()
            .contains("not created by this issuer"),
        "{ready}"
    );
    let after = secret_data(&client, &ns, "taken")
        .await
        .expect("still there");
    assert_eq!(field(&after, "password"), "hunter2");
    assert!(after.data.as_ref().is_some_and(|d| d.len() == 1));
    assert_eq!(emulator().stats().issued_by(&ca), 0);
}
