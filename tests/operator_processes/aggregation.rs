//! The chart's aggregated ClusterRoles on a control plane whose kube-controller-manager runs the
//! ClusterRole aggregation controller, as a real cluster's does: a user bound to the built-in `edit`
//! role in a namespace may create a PrivateCA there, one bound to `view` may only read it. No operator
//! runs here.

use crate::support;

use k8s_openapi::api::rbac::v1::{ClusterRole, RoleBinding};
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use std::time::Duration;
use support::{client, cluster, dynamic, eventually, namespace};

/// A client that acts as `user` (impersonation by the cluster admin).
async fn client_as(user: &str) -> kube::Client {
    let kubeconfig =
        kube::config::Kubeconfig::read_from(cluster().kubeconfig_path()).expect("kubeconfig");
    let mut config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .expect("client config");
    config.auth_info.impersonate = Some(user.to_string());
    config.auth_info.impersonate_groups = Some(vec!["system:authenticated".to_string()]);
    kube::Client::try_from(config).expect("impersonating client")
}

async fn bind(client: &kube::Client, ns: &str, role: &str, user: &str) {
    let binding: RoleBinding = serde_json::from_value(serde_json::json!({
        "metadata": {"name": format!("{user}-{role}")},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]
    }))
    .expect("binding");
    Api::<RoleBinding>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &binding)
        .await
        .expect("role binding created");
}

fn private_ca(name: &str) -> DynamicObject {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "pca.ncp-issuer.dev/v1alpha1", "kind": "PrivateCA",
        "metadata": {"name": name},
        "spec": {"caTag": "abcd1234-efgh5678", "credentials": {"secretRef": {"name": "ncp"}}}
    }))
    .expect("PrivateCA")
}

fn private_cas(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    dynamic(
        client,
        Some(ns),
        "pca.ncp-issuer.dev",
        "v1alpha1",
        "PrivateCA",
        "privatecas",
    )
}

#[tokio::test]
async fn a_user_bound_to_edit_can_create_a_private_ca_and_one_bound_to_view_can_only_read_it() {
    let admin = client().await;
    cluster()
        .apply_crds(&ncp_pca_issuer::api::crd_yaml().expect("CRDs"))
        .await
        .expect("CRDs applied");
    // The chart's aggregated ClusterRoles, as `helm template` renders them (release `agg`).
    let rendered = crate::monitoring::render_with_release("agg", &[]);
    let roles: Vec<ClusterRole> = crate::monitoring::documents(&rendered)
        .into_iter()
        .filter(|d| {
            d["kind"] == "ClusterRole"
                && d["metadata"]["labels"].as_object().is_some_and(|l| {
                    l.keys()
                        .any(|k| k.starts_with("rbac.authorization.k8s.io/aggregate-to-"))
                })
        })
        .map(|d| serde_json::from_value(d).expect("a ClusterRole"))
        .collect();
    assert_eq!(roles.len(), 2, "{roles:?}");
    let cluster_roles = Api::<ClusterRole>::all(admin.clone());
    for role in &roles {
        let name = role.metadata.name.clone().expect("role name");
        cluster_roles
            .patch(
                &name,
                &PatchParams::apply("aggregation-test").force(),
                &Patch::Apply(role),
            )
            .await
            .expect("aggregated role applied");
    }

    let ns = namespace("rbac-aggregation").await;
    bind(&admin, &ns, "edit", "alice").await;
    bind(&admin, &ns, "view", "bob").await;
    let alice = private_cas(&client_as("alice").await, &ns);
    let bob = private_cas(&client_as("bob").await, &ns);

    // The aggregation controller folds the roles into `edit` and `view` within moments.
    eventually(
        "alice (edit) to create a PrivateCA",
        Duration::from_secs(30),
        || async {
            alice
                .create(&PostParams::default(), &private_ca("by-alice"))
                .await
                .ok()
        },
    )
    .await;
    eventually("bob (view) to read it", Duration::from_secs(30), || async {
        bob.get("by-alice").await.ok()
    })
    .await;
    match bob
        .create(&PostParams::default(), &private_ca("by-bob"))
        .await
    {
        Err(kube::Error::Api(status)) if status.code == 403 => {}
        other => panic!("bob (view) was not refused: {other:?}"),
    }
}
