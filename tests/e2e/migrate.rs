//! `migrate` on a real control plane with NAVER's CRDs installed: NAVER's issuer becomes a
//! `PrivateCA` that turns Ready, and a Certificate re-pointed with the printed line is issued.

use crate::support;

use ncp_pca_issuer::cli::migrate::{self, MigrateArgs};
use ncp_pca_issuer::ncp::types::KeyType;
use serde_json::json;

/// NAVER's CRDs (the fixture's comment header dropped: `apply_crds` wants CRD documents only).
fn naver_crds() -> String {
    include_str!("../fixtures/naver-pca-issuer-crds.yaml")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn a_migrated_naver_issuer_becomes_ready_and_a_repointed_certificate_is_issued() {
    support::operator();
    let cluster = support::cluster();
    cluster
        .apply_crds(&naver_crds())
        .await
        .expect("NAVER's CRDs install");
    let client = support::client().await;
    let ns = support::namespace("migrate").await;
    let ca_tag = support::emulator_root_ca(KeyType::Ec256, 3650).await;
    support::credentials_secret(
        &client,
        &ns,
        "naver-ncp",
        &[("ak", support::EMU_AK), ("sk", support::EMU_SK)],
    )
    .await;
    let naver = support::dynamic(
        &client,
        Some(&ns),
        migrate::NAVER_GROUP,
        "v1alpha1",
        migrate::NAVER_ISSUER,
        "ncloudpcaissuers",
    );
    support::apply(
        &naver,
        json!({
            "apiVersion": "privateca-issuer.ncloud.com/v1alpha1", "kind": "NcloudPCAIssuer",
            "metadata": {"name": "legacy"},
            "spec": {"caTag": ca_tag, "keyType": "ECDSA", "keyBits": "256",
                     "ncloudApiGw": support::emulator().base_url(),
                     "secretRef": {"name": "naver-ncp",
                                   "accessKeyIDSelector": {"key": "ak"},
                                   "secretAccessKeySelector": {"key": "sk"}}}
        }),
    )
    .await
    .expect("NAVER's issuer applied");
    // A Certificate still pointing at NAVER's issuer (whose controller is not running here).
    support::ecdsa_certificate(
        &client,
        &ns,
        "moved",
        json!({"group": migrate::NAVER_GROUP, "kind": migrate::NAVER_ISSUER, "name": "legacy"}),
    )
    .await;

    let out = migrate::run(MigrateArgs {
        kubeconfig: Some(cluster.kubeconfig_path().to_path_buf()),
        files: Vec::new(),
        cluster_resource_namespace: support::CLUSTER_RESOURCE_NAMESPACE.into(),
        apply: true,
    })
    .await
    .expect("migrate runs");

    assert!(out.contains("kind: PrivateCA"), "{out}");
    assert!(out.contains("# applied PrivateCA legacy"), "{out}");
    let line = format!(
        "# kubectl -n {ns} patch certificate moved --type merge -p '{{\"spec\":{{\"issuerRef\":{{\"group\":\"pca.ncp-issuer.dev\",\"kind\":\"PrivateCA\",\"name\":\"legacy\"}}}}}}'"
    );
    assert!(out.contains(&line), "{line}\nnot in\n{out}");

    support::issuer_condition(
        &client,
        Some(&ns),
        "PrivateCA",
        "legacy",
        "True",
        "CAActive",
    )
    .await;
    // NAVER's issuer is left as it was.
    assert!(naver.get("legacy").await.is_ok());

    // The printed patch, as kubectl would send it.
    let patch_json = line
        .rsplit_once(" -p '")
        .map(|(_, p)| p.trim_end_matches('\''))
        .expect("patch body");
    let patch: serde_json::Value = serde_json::from_str(patch_json).expect("patch is json");
    let certs = support::dynamic(
        &client,
        Some(&ns),
        "cert-manager.io",
        "v1",
        "Certificate",
        "certificates",
    );
    certs
        .patch(
            "moved",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .expect("re-pointed");
    let (tls, ca) = support::issued_secret(&client, &ns, "moved", "moved-tls").await;
    support::openssl_verify(&tls, &ca).expect("the certificate verifies to the NCP root");
}
