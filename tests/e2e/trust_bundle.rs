//! End to end: the NCP root published as a signer-linked ClusterTrustBundle for issuers with
//! `spec.trustBundle`, following a root change and removed with the issuer.

use crate::support;

use k8s_openapi::api::certificates::v1beta1::ClusterTrustBundle;
use kube::api::Api;
use ncp_pca_issuer::ncp::types::KeyType;
use std::time::Duration;
use support::{
    client, dynamic, emulator_root_ca, eventually, namespace, ncp_client, operator, ready_issuer,
};

fn ders(pem: &str) -> Vec<Vec<u8>> {
    ncp_pca_issuer::pki::parse_certificates_pem(pem)
        .expect("pem")
        .into_iter()
        .map(|c| c.der)
        .collect()
}

/// Waits until bundle `name` holds exactly the certificates of `pem`, for `signer`.
async fn bundle_holds(client: &kube::Client, name: &str, signer: &str, pem: &str) {
    let api: Api<ClusterTrustBundle> = Api::all(client.clone());
    let want = ders(pem);
    eventually(
        &format!("ClusterTrustBundle {name}"),
        Duration::from_secs(60),
        || async {
            let b = api.get_opt(name).await.ok()??;
            (b.spec.signer_name.as_deref() == Some(signer) && ders(&b.spec.trust_bundle) == want)
                .then_some(())
        },
    )
    .await;
}

async fn bundle_gone(client: &kube::Client, name: &str) {
    let api: Api<ClusterTrustBundle> = Api::all(client.clone());
    eventually(
        &format!("ClusterTrustBundle {name} removed"),
        Duration::from_secs(60),
        || async { matches!(api.get_opt(name).await, Ok(None)).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn a_cluster_private_ca_publishes_exactly_its_root_follows_a_root_change_and_takes_it_away_when_deleted()
 {
    operator();
    let client = client().await;
    let ns = namespace("ctb").await;
    let (first, second) = (
        emulator_root_ca(KeyType::Ec256, 3650).await,
        emulator_root_ca(KeyType::Ec256, 3650).await,
    );
    let issuer = format!("ctb-{ns}");
    ready_issuer(
        &client,
        &ns,
        &issuer,
        true,
        &first,
        serde_json::json!({"trustBundle": {}}),
    )
    .await;
    let signer = format!("clusterprivatecas.pca.ncp-issuer.dev/{issuer}");
    let name = format!("clusterprivatecas.pca.ncp-issuer.dev:{issuer}:root");
    let root = ncp_client().get_ca_chain(&first).await.expect("root");
    bundle_holds(&client, &name, &signer, &root).await;

    // A new root (the issuer now names another NCP CA): the bundle follows.
    ready_issuer(
        &client,
        &ns,
        &issuer,
        true,
        &second,
        serde_json::json!({"trustBundle": {}}),
    )
    .await;
    let new_root = ncp_client().get_ca_chain(&second).await.expect("root");
    bundle_holds(&client, &name, &signer, &new_root).await;

    dynamic(
        &client,
        None,
        "pca.ncp-issuer.dev",
        "v1alpha1",
        "ClusterPrivateCA",
        "clusterprivatecas",
    )
    .delete(&issuer, &Default::default())
    .await
    .expect("issuer deleted");
    bundle_gone(&client, &name).await;
}

#[tokio::test]
async fn a_subordinate_private_ca_publishes_the_ncp_root_not_its_intermediate_and_takes_it_away_when_deleted()
 {
    operator();
    let client = client().await;
    let ns = namespace("ctb-sub").await;
    let ca = emulator_root_ca(KeyType::Ec256, 3650).await;
    ready_issuer(
        &client,
        &ns,
        "sub",
        false,
        &ca,
        serde_json::json!({"subordinate": {"secretName": "sub-ca"}, "trustBundle": {}}),
    )
    .await;
    let signer = format!("privatecas.pca.ncp-issuer.dev/{ns}.sub");
    let name = format!("privatecas.pca.ncp-issuer.dev:{ns}.sub:root");
    let root = ncp_client().get_ca_chain(&ca).await.expect("root");
    bundle_holds(&client, &name, &signer, &root).await;

    dynamic(
        &client,
        Some(&ns),
        "pca.ncp-issuer.dev",
        "v1alpha1",
        "PrivateCA",
        "privatecas",
    )
    .delete("sub", &Default::default())
    .await
    .expect("issuer deleted");
    bundle_gone(&client, &name).await;
}
