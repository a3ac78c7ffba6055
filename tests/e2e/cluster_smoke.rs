//! The test control plane itself: real kube-apiserver + etcd, kube-controller-manager and the real
//! cert-manager controller, and our generated CRDs.

use crate::support;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::{Api, DeleteParams, PostParams};
use std::time::Duration;
use support::{apply, client, cluster, dynamic, eventually, namespace};

const TIMEOUT: Duration = Duration::from_secs(120);

#[tokio::test]
async fn the_real_cert_manager_controller_issues_a_self_signed_certificate() {
    let client = client().await;
    let ns = namespace("smoke-selfsigned").await;
    let issuers = dynamic(
        &client,
        Some(&ns),
        "cert-manager.io",
        "v1",
        "Issuer",
        "issuers",
    );
    let certificates = dynamic(
        &client,
        Some(&ns),
        "cert-manager.io",
        "v1",
        "Certificate",
        "certificates",
    );
    apply(
        &issuers,
        serde_json::json!({
            "apiVersion": "cert-manager.io/v1", "kind": "Issuer",
            "metadata": {"name": "selfsigned"}, "spec": {"selfSigned": {}}
        }),
    )
    .await
    .expect("issuer");
    apply(&certificates, serde_json::json!({
        "apiVersion": "cert-manager.io/v1", "kind": "Certificate",
        "metadata": {"name": "demo"},
        "spec": {"secretName": "demo-tls", "commonName": "demo.example.com", "dnsNames": ["demo.example.com"],
                 "issuerRef": {"name": "selfsigned", "kind": "Issuer"}}
    }))
    .await
    .expect("certificate");

    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let crt = eventually(
        "the TLS secret written by cert-manager",
        TIMEOUT,
        || async {
            let secret = secrets.get_opt("demo-tls").await.ok().flatten()?;
            secret.data?.get("tls.crt").map(|b| b.0.clone())
        },
    )
    .await;
    let text = String::from_utf8(crt).expect("pem");
    let (_, pem) = x509_parser::pem::parse_x509_pem(text.as_bytes()).expect("pem parses");
    let cert = pem.parse_x509().expect("certificate parses");
    assert_eq!(
        cert.subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok()),
        Some("demo.example.com")
    );
}

#[tokio::test]
async fn a_deleted_namespace_disappears_because_the_controller_manager_runs() {
    let client = client().await;
    let ns = namespace("smoke-nsdelete").await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let cm: ConfigMap =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "x"}, "data": {"a": "b"}}))
            .unwrap();
    cms.create(&PostParams::default(), &cm)
        .await
        .expect("configmap");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .delete(&ns, &DeleteParams::default())
        .await
        .expect("delete namespace");
    eventually("the namespace to be gone", TIMEOUT, || async {
        matches!(namespaces.get_opt(&ns).await, Ok(None)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn our_generated_crds_apply_and_validate_private_ca_objects() {
    let yaml = ncp_pca_issuer::api::crd_yaml().expect("crds render");
    let names = cluster()
        .apply_crds(&yaml)
        .await
        .expect("our CRDs apply and become Established");
    assert_eq!(
        names,
        vec![
            "privatecas.pca.ncp-issuer.dev",
            "clusterprivatecas.pca.ncp-issuer.dev"
        ]
    );

    let client = client().await;
    let ns = namespace("smoke-crd").await;
    let pcas = dynamic(
        &client,
        Some(&ns),
        "pca.ncp-issuer.dev",
        "v1alpha1",
        "PrivateCA",
        "privatecas",
    );
    let created = apply(
        &pcas,
        serde_json::json!({
            "apiVersion": "pca.ncp-issuer.dev/v1alpha1", "kind": "PrivateCA",
            "metadata": {"name": "ok"},
            "spec": {"caTag": "abcd1234-efgh5678", "credentials": {"secretRef": {"name": "ncp"}}}
        }),
    )
    .await
    .expect("a valid PrivateCA is accepted");
    assert_eq!(
        created.data["spec"]["revocationPolicy"], "OnCertificateDeletion",
        "default applied by the schema"
    );

    let rejected = apply(
        &pcas,
        serde_json::json!({
            "apiVersion": "pca.ncp-issuer.dev/v1alpha1", "kind": "PrivateCA",
            "metadata": {"name": "bad"},
            "spec": {"credentials": {"secretRef": {"name": "ncp"}}, "revocationPolicy": "Sometimes"}
        }),
    )
    .await
    .expect_err("missing caTag and an unknown policy are refused");
    let kube::Error::Api(status) = rejected else {
        panic!("unexpected error {rejected:?}")
    };
    assert_eq!(status.code, 422, "{status:?}");
    assert!(status.message.contains("caTag"), "{}", status.message);
    assert!(
        status.message.contains("revocationPolicy"),
        "{}",
        status.message
    );
}
