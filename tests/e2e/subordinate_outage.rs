//! Subordinate mode when NCP misbehaves: the emulator refuses every call (a gateway 503 for every
//! operation) and certificates keep being issued with the in-cluster intermediate; the answer to Sign
//! Sub Csr is lost and the intermediate is recovered, not signed twice. Faults are the whole emulator's,
//! so every test here has an emulator of its own.

use crate::support;

use ncp_pca_issuer::emulator::{FaultKind, FaultRule};
use ncp_pca_issuer::ncp::Operation;
use ncp_pca_issuer::ncp::types::KeyType;
use std::time::Duration;
use support::{
    client, dynamic, emulator_root_ca_on, eventually, issued_secret, namespace, openssl_verify,
    operator, own_emulator, ready_issuer_on,
};

/// The issuer's condition of `type_`, as `(status, reason)`.
async fn condition(
    client: &kube::Client,
    ns: &str,
    name: &str,
    type_: &str,
) -> Option<(String, String)> {
    let api = dynamic(
        client,
        Some(ns),
        "pca.ncp-issuer.dev",
        "v1alpha1",
        "PrivateCA",
        "privatecas",
    );
    let obj = api.get(name).await.ok()?;
    let conditions = obj.data["status"]["conditions"].as_array()?.clone();
    let c = conditions.iter().find(|c| c["type"] == type_)?;
    Some((
        c["status"].as_str()?.to_string(),
        c["reason"].as_str()?.to_string(),
    ))
}

/// Waits until the issuer `sub`'s periodic check (10 s in tests) has seen NCP down.
async fn ncp_seen_down(client: &kube::Client, ns: &str) {
    eventually(
        "the issuer sees NCP down",
        Duration::from_secs(60),
        || async move {
            condition(client, ns, "sub", "UpstreamReady")
                .await
                .filter(|(status, _)| status == "False")
        },
    )
    .await;
}

#[tokio::test]
async fn certificates_keep_being_issued_while_the_emulator_refuses_every_call() {
    let emu = own_emulator();
    let (client, ns, ca) = support::subordinate_issuer_on(emu, "sub-outage").await;

    emu.add_fault(FaultRule::new(FaultKind::Unavailable503));
    let refused_before = emu.stats().calls(Operation::GetCa).rejected;
    // The issuer's periodic check (10 s in tests) sees the outage...
    ncp_seen_down(&client, &ns).await;
    // ...and stays Ready: it signs with the intermediate it has.
    assert_eq!(
        condition(&client, &ns, "sub", "Ready").await,
        Some(("True".to_string(), "IntermediateReady".to_string()))
    );

    for i in 0..3 {
        support::ecdsa_certificate(
            &client,
            &ns,
            &format!("web-{i}"),
            support::issuer_ref("sub", "PrivateCA"),
        )
        .await;
    }
    for i in 0..3 {
        let (tls, ca_crt) =
            issued_secret(&client, &ns, &format!("web-{i}"), &format!("web-{i}-tls")).await;
        let verdict = openssl_verify(&tls, &ca_crt).expect("verifies");
        assert!(verdict.contains("OK"), "{verdict}");
    }
    let stats = emu.stats();
    emu.clear_faults();
    assert!(
        stats.calls(Operation::GetCa).rejected > refused_before,
        "the outage was real: NCP calls were refused"
    );
    assert_eq!(stats.calls(Operation::SignEndCsr).total, 0);
    assert_eq!(stats.issued_by(&ca), 1, "the intermediate only");
}

#[tokio::test]
async fn a_lost_sign_sub_csr_answer_is_recovered_by_key_and_never_signed_twice() {
    let emu = own_emulator();
    operator();
    let client = client().await;
    let ns = namespace("sub-lost").await;
    let ca = emulator_root_ca_on(emu, KeyType::Ec256, 3650).await;
    // NCP signs the first Sign Sub Csr, and its answer never arrives (the client times out).
    emu.add_fault(
        FaultRule::new(FaultKind::CommitThenLoseResponse)
            .for_operation(Operation::SignSubCsr)
            .times(1),
    );
    ready_issuer_on(
        emu,
        &client,
        &ns,
        "sub",
        false,
        &ca,
        serde_json::json!({"subordinate": {"secretName": "sub-ca"}}),
    )
    .await;
    emu.clear_faults();
    let stats = emu.stats();
    assert!(
        stats.calls(Operation::SignSubCsr).lost >= 1,
        "the answer was lost"
    );
    assert_eq!(
        stats.issued_by(&ca),
        1,
        "one intermediate, recovered, not signed again"
    );
    let secret = kube::Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), &ns)
        .get("sub-ca")
        .await
        .expect("secret");
    let data = secret.data.unwrap_or_default();
    let text = |k: &str| {
        String::from_utf8(data.get(k).map(|b| b.0.clone()).unwrap_or_default()).unwrap_or_default()
    };
    let cert =
        ncp_pca_issuer::pki::parse_certificates_pem(&text("tls.crt")).expect("tls.crt")[0].clone();
    let listed = support::ncp_client_on(emu)
        .get_end_cert_list(&ca, None)
        .await
        .expect("list")
        .list_certs;
    assert_eq!(
        listed,
        [cert.serial.to_colon_hex()],
        "the recovered certificate is NCP's only one"
    );
    assert!(!data.contains_key("pending.key"));

    support::ecdsa_certificate(&client, &ns, "web", support::issuer_ref("sub", "PrivateCA")).await;
    let (tls, ca_crt) = issued_secret(&client, &ns, "web", "web-tls").await;
    assert!(openssl_verify(&tls, &ca_crt).is_ok());
}

#[tokio::test]
async fn a_refused_sign_sub_csr_is_retried_after_a_backoff_not_in_a_loop() {
    let emu = own_emulator();
    operator();
    let client = client().await;
    let ns = namespace("sub-refused").await;
    let ca = emulator_root_ca_on(emu, KeyType::Ec256, 3650).await;
    // NCP's gateway throttles every Sign Sub Csr (429: certainly not signed).
    emu.add_fault(FaultRule::new(FaultKind::Throttle429).for_operation(Operation::SignSubCsr));
    let before = emu.stats().calls(Operation::SignSubCsr).rejected;
    support::apply_issuer_on(
        emu,
        &client,
        &ns,
        "sub",
        false,
        &ca,
        serde_json::json!({"subordinate": {"secretName": "sub-ca"}}),
    )
    .await;
    // The first attempt: the client's own retries of a 429, then the attempt fails.
    let first = eventually("the first attempt fails", Duration::from_secs(60), || {
        let client = client.clone();
        let ns = ns.clone();
        async move {
            condition(&client, &ns, "sub", "Ready")
                .await
                .filter(|(status, _)| status == "False")
                .map(|_| emu.stats().calls(Operation::SignSubCsr).rejected - before)
        }
    })
    .await;
    assert!(first >= 1);
    let failed_at = std::time::Instant::now();
    // Our own Secret writes and status updates wake the issuer again, but it waits out the backoff:
    // first a reconcile that started after the failure was seen has run to its end...
    support::issuer_reconciled(emu, &client, Some(&ns), "PrivateCA", "sub").await;
    // ...and until 10 s after the failure (the backoff is longer), no other attempt.
    let rejected = || emu.stats().calls(Operation::SignSubCsr).rejected - before;
    support::stays(
        "Sign Sub Csr was called again within the backoff",
        Duration::from_secs(10).saturating_sub(failed_at.elapsed()),
        || async { rejected() == first },
    )
    .await;
    let later = rejected();
    emu.clear_faults();
    assert_eq!(
        later, first,
        "Sign Sub Csr was called again within the backoff"
    );
    assert_eq!(emu.stats().issued_by(&ca), 0);
    // After the backoff it succeeds.
    eventually(
        "the intermediate after the backoff",
        Duration::from_secs(90),
        || {
            let client = client.clone();
            let ns = ns.clone();
            async move {
                condition(&client, &ns, "sub", "Ready")
                    .await
                    .filter(|(status, reason)| status == "True" && reason == "IntermediateReady")
            }
        },
    )
    .await;
    assert_eq!(emu.stats().issued_by(&ca), 1);
}

#[tokio::test]
async fn a_foreign_intermediate_put_in_the_secret_while_ncp_is_down_never_signs() {
    use ncp_pca_issuer::pki::{
        IssueOptions, Name, NameAttr, PrivateKey, Signer, Validity, self_signed_ca, sign_ca,
    };
    let emu = own_emulator();
    let (client, ns, ca) = support::subordinate_issuer_on(emu, "sub-forged").await;
    let ncp_root = support::ncp_client_on(emu)
        .get_ca_chain(&ca)
        .await
        .expect("chain");

    // A self-made root and intermediate, consistent in themselves.
    let now = time::OffsetDateTime::now_utc();
    let opts = || {
        IssueOptions::new(
            Validity::new(now - time::Duration::HOUR, now + time::Duration::days(30))
                .expect("validity"),
        )
    };
    let root_key = PrivateKey::generate(KeyType::Ec256).expect("key");
    let root_cert = self_signed_ca(
        &Name::new().with(NameAttr::CommonName, "forged root"),
        &root_key,
        &opts(),
    )
    .expect("root");
    let root = Signer::new(root_key, root_cert).expect("signer");
    let key = PrivateKey::generate(KeyType::Ec256).expect("key");
    let forged = sign_ca(
        &root,
        &Name::new().with(NameAttr::CommonName, "sub intermediate"),
        &key.public_key().expect("public"),
        &opts(),
    )
    .expect("intermediate");

    emu.add_fault(FaultRule::new(FaultKind::Unavailable503));
    ncp_seen_down(&client, &ns).await;
    kube::Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), &ns)
        .patch(
            "sub-ca",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(serde_json::json!({"stringData": {
                "tls.key": key.to_pkcs8_pem(), "tls.crt": forged.to_pem(),
                "ca.crt": root.certificate().to_pem()}})),
        )
        .await
        .expect("swap");
    eventually(
        "the foreign intermediate is refused",
        Duration::from_secs(60),
        || {
            let client = client.clone();
            let ns = ns.clone();
            async move {
                condition(&client, &ns, "sub", "Ready")
                    .await
                    .filter(|(_, reason)| reason == "IntermediateUnverified")
            }
        },
    )
    .await;
    support::ecdsa_certificate(&client, &ns, "web", support::issuer_ref("sub", "PrivateCA")).await;
    let asked_at = std::time::Instant::now();
    // The positive sign: our controller saw web's request and is waiting for the issuer.
    let requests = dynamic(
        &client,
        Some(&ns),
        "cert-manager.io",
        "v1",
        "CertificateRequest",
        "certificaterequests",
    );
    eventually(
        "web's request waits for the issuer",
        Duration::from_secs(60),
        || async {
            let list = requests.list(&Default::default()).await.ok()?;
            list.items.iter().find_map(|r| {
                let ready = r.data["status"]["conditions"]
                    .as_array()?
                    .iter()
                    .find(|c| c["type"] == "Ready")?;
                (ready["reason"] == "Pending"
                    && ready["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("to be Ready")))
                .then_some(())
            })
        },
    )
    .await;
    // Then, for the rest of 5 s after the Certificate was created, the issuer stays not Ready.
    support::stays(
        "not Ready while the intermediate cannot be confirmed",
        Duration::from_secs(5).saturating_sub(asked_at.elapsed()),
        || async {
            let (status, _) = condition(&client, &ns, "sub", "Ready")
                .await
                .expect("ready");
            status == "False"
        },
    )
    .await;

    // NCP back: the foreign intermediate is replaced, and the certificate chains to NCP's root.
    emu.clear_faults();
    let (tls, ca_crt) = issued_secret(&client, &ns, "web", "web-tls").await;
    let chain = ncp_pca_issuer::pki::parse_certificates_pem(&tls).expect("chain");
    assert_ne!(
        chain[1].der, forged.der,
        "never signed by the foreign intermediate"
    );
    assert!(ncp_root.contains(ca_crt.trim()), "ca.crt is NCP's root");
    assert!(openssl_verify(&tls, &ca_crt).is_ok());
}
