//! The PrivateCA / ClusterPrivateCA controller against a real API server (and, where NCP must answer,
//! the emulator).

use crate::support;

use support::{apply, client, credentials_secret, dynamic, issuer_condition, namespace, operator};

fn private_ca(name: &str, secret: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "pca.ncp-issuer.dev/v1alpha1", "kind": "PrivateCA",
        "metadata": {"name": name},
        "spec": {"caTag": "abcd1234-efgh5678", "endpoint": "http://127.0.0.1:9", "credentials": {"secretRef": {"name": secret}}}
    })
}

#[tokio::test]
async fn a_private_ca_whose_secret_is_missing_says_credentials_not_found() {
    operator();
    let client = client().await;
    let ns = namespace("issuer-nosecret").await;
    let pcas = dynamic(
        &client,
        Some(&ns),
        "pca.ncp-issuer.dev",
        "v1alpha1",
        "PrivateCA",
        "privatecas",
    );
    apply(&pcas, private_ca("pca", "ncp-credentials"))
        .await
        .expect("privateca");

    let ready = issuer_condition(
        &client,
        Some(&ns),
        "PrivateCA",
        "pca",
        "False",
        "CredentialsNotFound",
    )
    .await;

    let message = ready["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with(&format!(
            "credentials secret {ns}/ncp-credentials not found: "
        )),
        "{message}"
    );
}

#[tokio::test]
async fn a_namespaced_private_ca_cannot_read_credentials_from_another_namespace() {
    operator();
    let client = client().await;
    let ns = namespace("issuer-scope").await;
    let other = namespace("issuer-scope-other").await;
    credentials_secret(
        &client,
        &other,
        "shared",
        &[("NCLOUD_ACCESS_KEY", "ak"), ("NCLOUD_SECRET_KEY", "sk")],
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
    apply(&pcas, private_ca("pca", "shared"))
        .await
        .expect("privateca");

    let ready = issuer_condition(
        &client,
        Some(&ns),
        "PrivateCA",
        "pca",
        "False",
        "CredentialsNotFound",
    )
    .await;

    let message = ready["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("{ns}/shared")),
        "looked only in its own namespace: {message}"
    );
    assert!(!message.contains(&other), "{message}");
    assert!(
        message.contains("own namespace only") && message.contains("use a ClusterPrivateCA"),
        "says how to share credentials across namespaces: {message}"
    );
}

#[tokio::test]
async fn a_secret_without_the_secret_key_says_credentials_invalid_without_showing_values() {
    operator();
    let client = client().await;
    let ns = namespace("issuer-badsecret").await;
    credentials_secret(
        &client,
        &ns,
        "ncp",
        &[("NCLOUD_ACCESS_KEY", "my-access-key")],
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
    apply(&pcas, private_ca("pca", "ncp"))
        .await
        .expect("privateca");

    let ready = issuer_condition(
        &client,
        Some(&ns),
        "PrivateCA",
        "pca",
        "False",
        "CredentialsInvalid",
    )
    .await;

    let message = ready["message"].as_str().unwrap_or_default();
    assert!(message.contains("NCLOUD_SECRET_KEY"), "{message}");
    assert!(!message.contains("my-access-key"), "{message}");
}

#[tokio::test]
async fn a_cluster_private_ca_reads_its_secret_from_the_cluster_resource_namespace_only() {
    operator();
    let client = client().await;
    let elsewhere = namespace("issuer-cluster-elsewhere").await;
    let secret = format!("ncp-{elsewhere}");
    credentials_secret(
        &client,
        &elsewhere,
        &secret,
        &[("NCLOUD_ACCESS_KEY", "ak"), ("NCLOUD_SECRET_KEY", "sk")],
    )
    .await;
    let cpcas = dynamic(
        &client,
        None,
        "pca.ncp-issuer.dev",
        "v1alpha1",
        "ClusterPrivateCA",
        "clusterprivatecas",
    );
    let name = format!("cpca-{elsewhere}");
    let mut obj = private_ca(&name, &secret);
    obj["kind"] = "ClusterPrivateCA".into();
    apply(&cpcas, obj).await.expect("clusterprivateca");

    let ready = issuer_condition(
        &client,
        None,
        "ClusterPrivateCA",
        &name,
        "False",
        "CredentialsNotFound",
    )
    .await;
    assert!(
        ready["message"]
            .as_str()
            .unwrap_or_default()
            .contains(&format!("{}/{secret}", support::CLUSTER_RESOURCE_NAMESPACE))
    );

    // The same Secret in the cluster resource namespace is found; the endpoint then cannot be reached.
    credentials_secret(
        &client,
        support::CLUSTER_RESOURCE_NAMESPACE,
        &secret,
        &[("NCLOUD_ACCESS_KEY", "ak"), ("NCLOUD_SECRET_KEY", "sk")],
    )
    .await;
    issuer_condition(
        &client,
        None,
        "ClusterPrivateCA",
        &name,
        "False",
        "EndpointUnreachable",
    )
    .await;
}

#[tokio::test]
async fn wrong_credentials_make_the_issuer_not_ready_with_authentication_failed() {
    operator();
    let client = client().await;
    let ns = namespace("issuer-wrongkey").await;
    let ca = support::emulator_root_ca(ncp_pca_issuer::ncp::types::KeyType::Ec256, 3650).await;
    credentials_secret(
        &client,
        &ns,
        "ncp",
        &[
            ("NCLOUD_ACCESS_KEY", support::EMU_AK),
            ("NCLOUD_SECRET_KEY", "wrong-secret"),
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
    apply(&pcas, serde_json::json!({
        "apiVersion": "pca.ncp-issuer.dev/v1alpha1", "kind": "PrivateCA", "metadata": {"name": "pca"},
        "spec": {"caTag": ca, "endpoint": support::emulator().base_url(), "credentials": {"secretRef": {"name": "ncp"}}}
    }))
    .await
    .expect("privateca");

    let ready = issuer_condition(
        &client,
        Some(&ns),
        "PrivateCA",
        "pca",
        "False",
        "AuthenticationFailed",
    )
    .await;

    let message = ready["message"].as_str().unwrap_or_default();
    assert!(message.contains("Authentication Failed"), "{message}");
    assert!(!message.contains("wrong-secret"), "{message}");
}

#[tokio::test]
async fn a_deactivated_ca_makes_the_issuer_not_ready_and_reactivation_makes_it_ready_again() {
    use ncp_pca_issuer::ncp::types::CaStatus;
    operator();
    let client = client().await;
    let ns = namespace("issuer-deactivated").await;
    let ca = support::emulator_root_ca(ncp_pca_issuer::ncp::types::KeyType::Ec256, 3650).await;
    support::ready_issuer(&client, &ns, "pca", false, &ca, serde_json::json!({})).await;
    let ncp = support::ncp_client();

    ncp.update_ca(&ca, Some(&CaStatus::Deactivated), None)
        .await
        .expect("deactivate");
    let ready = issuer_condition(
        &client,
        Some(&ns),
        "PrivateCA",
        "pca",
        "False",
        "CANotActive",
    )
    .await;
    assert!(
        ready["message"]
            .as_str()
            .unwrap_or_default()
            .contains("DEACTIVATED"),
        "{ready}"
    );

    ncp.update_ca(&ca, Some(&CaStatus::Active), None)
        .await
        .expect("reactivate");
    issuer_condition(&client, Some(&ns), "PrivateCA", "pca", "True", "CAActive").await;
}

#[tokio::test]
async fn an_unknown_ca_tag_says_ca_not_found() {
    operator();
    let client = client().await;
    let ns = namespace("issuer-noca").await;
    support::apply_issuer(
        &client,
        &ns,
        "pca",
        false,
        "nosuch00-nosuch00",
        serde_json::json!({}),
    )
    .await;

    let ready = issuer_condition(
        &client,
        Some(&ns),
        "PrivateCA",
        "pca",
        "False",
        "CANotFound",
    )
    .await;
    assert!(
        ready["message"]
            .as_str()
            .unwrap_or_default()
            .contains("The CA doesn't exist."),
        "{ready}"
    );
    let message = ready["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("has no CA nosuch00-nosuch00")
            && message.contains("`ncp-pca-issuer pca list --endpoint http")
            && message.contains("Get CA: "),
        "names the endpoint and how to list its CAs: {message}"
    );
}
