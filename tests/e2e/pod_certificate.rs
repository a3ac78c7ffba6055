//! End to end: PodCertificateRequests created as the kubelet creates them (a Node object, a Pod bound
//! to it, and the request made with a client certificate for `system:node:<name>` in
//! `system:nodes`, through the Node authorizer and NodeRestriction), signed by subordinate issuers.

use crate::support;

use k8s_openapi::api::certificates::v1beta1::PodCertificateRequest;
use k8s_openapi::api::core::v1::{Node, Pod, ServiceAccount};
use kube::api::{Api, PostParams};
use ncp_pca_issuer::ncp::types::KeyType;
use rcgen::{PublicKeyData as _, SigningKey as _};
use std::time::Duration;
use support::{
    client, cluster, emulator_root_ca, eventually, namespace, ncp_client, openssl_verify, operator,
    ready_issuer,
};

/// A client with a certificate for `system:node:<node>` in `system:nodes`, from the cluster's CA.
async fn node_client(node: &str) -> kube::Client {
    use base64::Engine as _;
    let dir = cluster().work_dir();
    let ca_key =
        rcgen::KeyPair::from_pem(&std::fs::read_to_string(dir.join("ca.key")).expect("ca.key"))
            .expect("ca key");
    let ca = rcgen::Issuer::from_ca_cert_pem(
        &std::fs::read_to_string(dir.join("ca.crt")).expect("ca.crt"),
        ca_key,
    )
    .expect("ca");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("system:node:{node}"));
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "system:nodes");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, &ca).expect("node certificate");
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let admin = kube::config::Kubeconfig::read_from(cluster().kubeconfig_path()).expect("admin");
    let ca_data = admin
        .clusters
        .first()
        .and_then(|c| c.cluster.as_ref())
        .and_then(|c| c.certificate_authority_data.clone())
        .expect("CA data");
    let yaml = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: dev\n  cluster:\n    server: {}\n    certificate-authority-data: {ca_data}\nusers:\n- name: node\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncontexts:\n- name: dev\n  context:\n    cluster: dev\n    user: node\ncurrent-context: dev\n",
        cluster().api_url(),
        b64(&cert.pem()),
        b64(&key.serialize_pem()),
    );
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&yaml).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("config");
    kube::Client::try_from(config).expect("node client")
}

/// The Node, the ServiceAccount and a Pod bound to the node; returns `(node uid, pod uid, sa uid)`.
async fn node_and_pod(
    client: &kube::Client,
    ns: &str,
    node: &str,
    pod: &str,
    sa: &str,
) -> (String, String, String) {
    let n: Node =
        serde_json::from_value(serde_json::json!({"metadata": {"name": node}})).expect("node");
    let n = Api::<Node>::all(client.clone())
        .create(&PostParams::default(), &n)
        .await
        .expect("node created");
    let s: ServiceAccount =
        serde_json::from_value(serde_json::json!({"metadata": {"name": sa}})).expect("sa");
    let s = Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &s)
        .await
        .expect("service account created");
    let p: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": pod},
        "spec": {"nodeName": node, "serviceAccountName": sa, "automountServiceAccountToken": false,
                 "containers": [{"name": "app", "image": "example.invalid/app:1"}]}
    }))
    .expect("pod");
    let p = Api::<Pod>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &p)
        .await
        .expect("pod created");
    (
        n.metadata.uid.expect("node uid"),
        p.metadata.uid.expect("pod uid"),
        s.metadata.uid.expect("sa uid"),
    )
}

struct Subject<'a> {
    ns: &'a str,
    node: &'a str,
    node_uid: &'a str,
    pod: &'a str,
    pod_uid: &'a str,
    sa: &'a str,
    sa_uid: &'a str,
}

/// A request as the kubelet makes it: a fresh P-256 key, its proof of possession over `proof_of`
/// (the pod UID, for a good one).
fn request(name: &str, signer: &str, who: &Subject<'_>, proof_of: &str) -> PodCertificateRequest {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let proof = key.sign(proof_of.as_bytes()).expect("proof");
    serde_json::from_value(serde_json::json!({
        "apiVersion": "certificates.k8s.io/v1beta1", "kind": "PodCertificateRequest",
        "metadata": {"name": name, "namespace": who.ns},
        "spec": {
            "signerName": signer, "podName": who.pod, "podUID": who.pod_uid,
            "serviceAccountName": who.sa, "serviceAccountUID": who.sa_uid,
            "nodeName": who.node, "nodeUID": who.node_uid, "maxExpirationSeconds": 7200,
            "pkixPublicKey": k8s_openapi::ByteString(key.subject_public_key_info()),
            "proofOfPossession": k8s_openapi::ByteString(proof),
        }
    }))
    .expect("request")
}

/// The `(type, reason, message)` of the request's final condition once there is one.
async fn final_condition(
    api: &Api<PodCertificateRequest>,
    name: &str,
) -> (String, String, String, PodCertificateRequest) {
    eventually(
        &format!("PodCertificateRequest {name} final"),
        Duration::from_secs(90),
        || async {
            let p = api.get(name).await.ok()?;
            let c = p
                .status
                .as_ref()?
                .conditions
                .as_ref()?
                .iter()
                .find(|c| {
                    matches!(c.type_.as_str(), "Issued" | "Denied" | "Failed") && c.status == "True"
                })?
                .clone();
            Some((c.type_, c.reason, c.message, p))
        },
    )
    .await
}

#[tokio::test]
async fn pod_certificate_requests_made_as_the_node_are_issued_within_the_policy_and_refused_outside_it()
 {
    operator();
    let client = client().await;
    let ns = namespace("pcr").await;
    let ca = emulator_root_ca(KeyType::Ec256, 3650).await;
    ready_issuer(&client, &ns, "sub", false, &ca, serde_json::json!({
        "subordinate": {"secretName": "sub-ca"}, "podCertificates": {"trustDomain": "example.org"}
    }))
    .await;
    ready_issuer(&client, &ns, "strict", false, &ca, serde_json::json!({
        "subordinate": {"secretName": "strict-ca"}, "podCertificates": {"serviceAccounts": ["other"]}
    }))
    .await;
    ready_issuer(
        &client,
        &ns,
        "remote",
        false,
        &ca,
        serde_json::json!({"podCertificates": {}}),
    )
    .await;
    let node = format!("node-{ns}");
    let (node_uid, pod_uid, sa_uid) = node_and_pod(&client, &ns, &node, "web-0", "web").await;
    let who = Subject {
        ns: &ns,
        node: &node,
        node_uid: &node_uid,
        pod: "web-0",
        pod_uid: &pod_uid,
        sa: "web",
        sa_uid: &sa_uid,
    };
    let as_node: Api<PodCertificateRequest> = Api::namespaced(node_client(&node).await, &ns);
    let signer = |issuer: &str| format!("privatecas.pca.ncp-issuer.dev/{ns}.{issuer}");

    for (name, issuer) in [
        ("issued", "sub"),
        ("outside", "strict"),
        ("remote", "remote"),
    ] {
        as_node
            .create(
                &PostParams::default(),
                &request(name, &signer(issuer), &who, &pod_uid),
            )
            .await
            .unwrap_or_else(|e| panic!("the node may create {name}: {e}"));
    }
    // A wrong proof of possession never gets in: the API server checks it on create (and so do we,
    // see the unit tests of pod_certificate::decide).
    let wrong = as_node
        .create(
            &PostParams::default(),
            &request("wrong-pop", &signer("sub"), &who, "not-the-pod-uid"),
        )
        .await;
    assert!(
        matches!(&wrong, Err(kube::Error::Api(s)) if s.code == 422 && s.message.contains("proofOfPossession")),
        "{wrong:?}"
    );

    let admin: Api<PodCertificateRequest> = Api::namespaced(client.clone(), &ns);
    let (type_, reason, message, issued) = final_condition(&admin, "issued").await;
    assert_eq!(
        (type_.as_str(), reason.as_str()),
        ("Issued", "Issued"),
        "{message}"
    );
    let status = issued.status.expect("status");
    let chain = status.certificate_chain.expect("chain");
    let root = ncp_client().get_ca_chain(&ca).await.expect("NCP root");
    let verdict = openssl_verify(&chain, &root).expect("chains to the NCP root");
    assert!(verdict.contains("OK"), "{verdict}");
    let leaf = ncp_pca_issuer::pki::parse_certificates_pem(&chain)
        .expect("pem")
        .remove(0);
    let uri = format!("spiffe://example.org/ns/{ns}/sa/web");
    assert!(
        leaf.sans
            .contains(&ncp_pca_issuer::pki::San::Uri(uri.clone())),
        "{uri} in {:?}",
        leaf.sans
    );
    let (not_before, refresh, not_after) = (
        status.not_before.expect("notBefore").0,
        status.begin_refresh_at.expect("beginRefreshAt").0,
        status.not_after.expect("notAfter").0,
    );
    assert!(not_before < refresh && refresh < not_after);
    assert!(
        not_after.duration_since(not_before).as_secs() <= 7200,
        "within maxExpirationSeconds"
    );

    let (type_, reason, message, _) = final_condition(&admin, "outside").await;
    assert_eq!(
        (type_.as_str(), reason.as_str()),
        ("Denied", "PodCertificatePolicyDenied"),
        "{message}"
    );
    assert!(message.contains("serviceAccounts"), "{message}");
    let (type_, reason, message, _) = final_condition(&admin, "remote").await;
    assert_eq!(
        (type_.as_str(), reason.as_str()),
        ("Failed", "PodCertificateNeedsSubordinate"),
        "{message}"
    );
    assert!(message.contains("subordinate mode"), "{message}");

    let _ = Api::<Node>::all(client.clone())
        .delete(&node, &Default::default())
        .await;
}
