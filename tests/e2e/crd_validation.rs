//! The apiserver enforces the CRDs' schema: a `caTag` that cannot be an NCP tag (a dot segment, a
//! path, spaces) is refused when the issuer is applied, before any controller sees it.

use crate::support;

use serde_json::json;

fn issuer(kind: &str, name: &str, ca_tag: &str) -> serde_json::Value {
    json!({
        "apiVersion": "pca.ncp-issuer.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": name},
        "spec": {"caTag": ca_tag, "credentials": {"secretRef": {"name": "ncp-credentials"}}}
    })
}

#[tokio::test]
async fn the_apiserver_refuses_a_ca_tag_that_is_not_an_ncp_tag_and_accepts_one_that_is() {
    let client = support::client().await;
    let ns = support::namespace("crd-catag").await;
    let namespaced = support::dynamic(
        &client,
        Some(&ns),
        "pca.ncp-issuer.dev",
        "v1alpha1",
        "PrivateCA",
        "privatecas",
    );
    let cluster_scoped = support::dynamic(
        &client,
        None,
        "pca.ncp-issuer.dev",
        "v1alpha1",
        "ClusterPrivateCA",
        "clusterprivatecas",
    );

    for (i, bad) in ["..", ".", "a/b", "abc 123", "-abc", "abc-", "a..b", "tag\n"]
        .into_iter()
        .enumerate()
    {
        for (api, kind) in [
            (&namespaced, "PrivateCA"),
            (&cluster_scoped, "ClusterPrivateCA"),
        ] {
            let name = format!("bad-{i}");
            let err = support::apply(api, issuer(kind, &name, bad))
                .await
                .expect_err(&format!("{kind} with caTag {bad:?} was accepted"));
            let kube::Error::Api(status) = &err else {
                panic!("{kind} {bad:?}: not an apiserver refusal: {err:?}");
            };
            assert_eq!(status.code, 422, "{kind} {bad:?}: {status:?}");
            assert!(
                status.message.contains("spec.caTag"),
                "{kind} {bad:?}: {}",
                status.message
            );
        }
    }

    // Tags as NCP hands them out (and as the emulator makes them) are accepted.
    for (i, good) in [
        "abcd1234-efgh5678",
        "12345678-abcdefg",
        "ABCDEFGHI-123456789",
    ]
    .into_iter()
    .enumerate()
    {
        let name = format!("good-{i}");
        support::apply(&namespaced, issuer("PrivateCA", &name, good))
            .await
            .unwrap_or_else(|e| panic!("caTag {good:?} refused: {e}"));
        support::apply(
            &cluster_scoped,
            issuer("ClusterPrivateCA", &format!("{ns}-{name}"), good),
        )
        .await
        .unwrap_or_else(|e| panic!("caTag {good:?} refused: {e}"));
        cluster_scoped
            .delete(&format!("{ns}-{name}"), &Default::default())
            .await
            .expect("cleaned up");
    }
}
