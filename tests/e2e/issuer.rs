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

/// The condition `type_` of the PrivateCA `name` in `ns`, once it has `reason`.
async fn condition_with_reason(
    client: &kube::Client,
    ns: &str,
    name: &str,
    type_: &str,
    reason: &str,
) -> serde_json::Value {
    let api = dynamic(
        client,
        Some(ns),
        "pca.ncp-issuer.dev",
        "v1alpha1",
        "PrivateCA",
        "privatecas",
    );
    support::eventually(
        &format!("{type_} to say {reason}"),
        std::time::Duration::from_secs(60),
        || async {
            let obj = api.get(name).await.ok()?;
            obj.data["status"]["conditions"]
                .as_array()?
                .iter()
                .find(|c| c["type"] == type_ && c["reason"] == reason)
                .cloned()
        },
    )
    .await
}

/// The value of the operator's series `metric{issuer_kind="PrivateCA",namespace=ns,name=name}`.
fn issuer_gauge(metric: &str, ns: &str, name: &str) -> Option<String> {
    let series = format!(
        r#"ncp_pca_issuer_{metric}{{issuer_kind="PrivateCA",namespace="{ns}",name="{name}"}} "#
    );
    support::operator_metrics()
        .encode()
        .lines()
        .find_map(|l| l.strip_prefix(&series).map(str::to_string))
}

#[tokio::test]
async fn an_issuer_at_80_percent_of_the_cap_warns_and_the_gauge_shows_what_is_left() {
    use ncp_pca_issuer::ncp::types::{KeyType, Period, X509Parameters};
    operator();
    let client = client().await;
    let ns = namespace("issuer-cap").await;
    let ca = support::emulator_root_ca(KeyType::Ec256, 3650).await;
    support::ready_issuer(&client, &ns, "pca", false, &ca, serde_json::json!({})).await;
    condition_with_reason(&client, &ns, "pca", "Headroom", "AmpleHeadroom").await;

    // Bring the CA to 80 % of the (lowered) cap, outside the cluster: as other users of the CA would.
    let used = support::SIGNING_LIMIT * 80 / 100;
    let ncp = support::ncp_client();
    for i in 0..used {
        let subject = X509Parameters {
            common_name: Some(format!("filler-{i}.example.com")),
            ..X509Parameters::default()
        };
        ncp.issue_end_cert(&ca, KeyType::Ec256, Period::Days(1), &subject)
            .await
            .expect("issued");
    }

    let headroom = condition_with_reason(&client, &ns, "pca", "Headroom", "SigningLimitNear").await;
    assert_eq!(headroom["status"], "False", "{headroom}");
    assert!(
        headroom["message"]
            .as_str()
            .unwrap_or_default()
            .contains("80 %"),
        "{headroom}"
    );
    // Still Ready: it only warns.
    issuer_condition(&client, Some(&ns), "PrivateCA", "pca", "True", "CAActive").await;
    support::eventually(
        "a SigningLimitNear Warning event",
        std::time::Duration::from_secs(30),
        || async {
            support::events_about(&client, &ns, "pca")
                .await
                .into_iter()
                .find(|(reason, _)| reason == "SigningLimitNear")
        },
    )
    .await;
    let left = (support::SIGNING_LIMIT - used).to_string();
    assert_eq!(
        issuer_gauge("ca_issuances_remaining", &ns, "pca").as_deref(),
        Some(left.as_str())
    );
    assert_eq!(
        issuer_gauge("ca_signing_count", &ns, "pca").as_deref(),
        Some(used.to_string().as_str())
    );
    assert_eq!(
        issuer_gauge("ca_signing_limit", &ns, "pca").as_deref(),
        Some(support::SIGNING_LIMIT.to_string().as_str())
    );
}

#[tokio::test]
async fn an_issuer_whose_ca_expires_within_30_days_warns_and_the_gauge_says_when() {
    operator();
    let client = client().await;
    let ns = namespace("issuer-expiring").await;
    let ca = support::emulator_root_ca(ncp_pca_issuer::ncp::types::KeyType::Ec256, 20).await;
    support::ready_issuer(&client, &ns, "pca", false, &ca, serde_json::json!({})).await;

    let headroom = condition_with_reason(&client, &ns, "pca", "Headroom", "CAExpiringSoon").await;
    assert_eq!(headroom["status"], "False", "{headroom}");
    assert!(
        headroom["message"]
            .as_str()
            .unwrap_or_default()
            .contains("less than 30 days"),
        "{headroom}"
    );
    support::eventually(
        "a CAExpiringSoon Warning event",
        std::time::Duration::from_secs(30),
        || async {
            support::events_about(&client, &ns, "pca")
                .await
                .into_iter()
                .find(|(reason, _)| reason == "CAExpiringSoon")
        },
    )
    .await;
    let not_after: i64 = issuer_gauge("ca_not_after_timestamp_seconds", &ns, "pca")
        .and_then(|v| v.parse().ok())
        .expect("the CA's NotAfter gauge");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or_default();
    let days_left = (not_after - now) / 86_400;
    assert!((19..=20).contains(&days_left), "{days_left} days left");
}
