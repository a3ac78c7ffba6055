//! The README's Ingress example, end to end: cert-manager's ingress-shim (run by the test cert-manager)
//! turns an annotated Ingress into a Certificate, which our issuer signs.

use crate::support;

use support::{apply, client, dynamic, issued_secret, namespace, openssl_verify, operator};

/// The annotations of the README's "**5. Ingress.**" example.
fn readme_ingress_annotations() -> serde_json::Map<String, serde_json::Value> {
    let readme = include_str!("../../README.md");
    let section = readme
        .split("**5. Ingress.**")
        .nth(1)
        .expect("README has the Ingress step");
    let yaml = section
        .split("```yaml\n")
        .nth(1)
        .and_then(|s| s.split("```").next())
        .expect("the Ingress step has a YAML block");
    let doc: serde_json::Value = serde_saphyr::from_str(yaml).expect("the README's YAML parses");
    doc["metadata"]["annotations"]
        .as_object()
        .cloned()
        .expect("the example has annotations")
}

#[tokio::test]
async fn the_readme_s_ingress_example_gets_a_certificate_from_a_cluster_private_ca() {
    operator();
    let client = client().await;
    let ns = namespace("ingress").await;
    let ca = support::emulator_root_ca(ncp_pca_issuer::ncp::types::KeyType::Ec256, 3650).await;
    // Cluster-scoped, so a name of this test's own.
    let issuer = format!("{ns}-ncp");
    support::ready_issuer(&client, &ns, &issuer, true, &ca, serde_json::json!({})).await;

    let mut annotations = readme_ingress_annotations();
    assert_eq!(
        annotations["cert-manager.io/issuer-kind"],
        "ClusterPrivateCA"
    );
    assert_eq!(
        annotations["cert-manager.io/issuer-group"],
        "pca.ncp-issuer.dev"
    );
    annotations.insert("cert-manager.io/issuer".into(), issuer.clone().into());
    let ingresses = dynamic(
        &client,
        Some(&ns),
        "networking.k8s.io",
        "v1",
        "Ingress",
        "ingresses",
    );
    apply(
        &ingresses,
        serde_json::json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": "web", "annotations": annotations},
            "spec": {
                "tls": [{"hosts": ["web.example.com"], "secretName": "web-tls"}],
                "rules": [{"host": "web.example.com", "http": {"paths": [{
                    "path": "/", "pathType": "Prefix",
                    "backend": {"service": {"name": "web", "port": {"number": 80}}}
                }]}}]
            }
        }),
    )
    .await
    .expect("Ingress applied");

    // The shim names the Certificate after the TLS Secret.
    let (tls, ca_crt) = issued_secret(&client, &ns, "web-tls", "web-tls").await;
    openssl_verify(&tls, &ca_crt).unwrap_or_else(|e| panic!("web-tls does not verify: {e}"));
    let certs = dynamic(
        &client,
        Some(&ns),
        "cert-manager.io",
        "v1",
        "Certificate",
        "certificates",
    );
    let cert = certs.get("web-tls").await.expect("the shim's Certificate");
    assert_eq!(cert.data["spec"]["issuerRef"]["name"], issuer.as_str());
    assert_eq!(cert.data["spec"]["issuerRef"]["kind"], "ClusterPrivateCA");
    assert_eq!(
        cert.data["spec"]["dnsNames"],
        serde_json::json!(["web.example.com"])
    );
}
