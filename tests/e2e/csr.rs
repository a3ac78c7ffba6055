//! End to end: Kubernetes CertificateSigningRequests for our signer names, approved as
//! `kubectl certificate approve` approves them (an update of the `/approval` subresource), signed
//! through NCP or in the cluster by a subordinate issuer.

use crate::support;

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::api::{Api, Patch, PatchParams, PostParams};
use ncp_pca_issuer::emulator::{FaultKind, FaultRule};
use ncp_pca_issuer::ncp::Operation;
use ncp_pca_issuer::ncp::types::KeyType;
use ncp_pca_issuer::pki::{Name, NameAttr, PrivateKey, San, create_csr};
use std::time::Duration;
use support::{
    client, emulator, emulator_root_ca, emulator_root_ca_on, eventually, namespace, ncp_client,
    ncp_client_on, openssl_verify, operator, own_emulator, ready_issuer, ready_issuer_on, stays,
};

const CA_ANNOTATION: &str = "experimental.cert-manager.io/ca";

fn csrs(client: &kube::Client) -> Api<CertificateSigningRequest> {
    Api::all(client.clone())
}

/// A CSR named `name` for `signer` with a fresh P-256 key and `dns` as its only SAN.
fn csr_object(name: &str, signer: &str, dns: &str) -> CertificateSigningRequest {
    let key = PrivateKey::generate(KeyType::Ec256).expect("key");
    let pem = create_csr(
        &Name::new().with(NameAttr::CommonName, dns),
        &[San::Dns(dns.to_string())],
        &key,
        false,
    )
    .expect("csr");
    serde_json::from_value(serde_json::json!({
        "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
        "metadata": {"name": name},
        "spec": {
            "signerName": signer, "expirationSeconds": 86400,
            "usages": ["digital signature", "server auth"],
            "request": base64_encode(pem.as_bytes()),
        }
    }))
    .expect("csr object")
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn base64_decode(text: &str) -> String {
    use base64::Engine as _;
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .expect("base64"),
    )
    .expect("utf8")
}

/// Adds `type_=True` to the CSR's conditions through the `/approval` subresource (an update, as
/// `kubectl certificate approve` / `deny` make it).
async fn decide(client: &kube::Client, name: &str, type_: &str) {
    let api = csrs(client);
    let mut csr = api.get(name).await.expect("csr");
    let status = csr.status.get_or_insert_with(Default::default);
    status.conditions.get_or_insert_with(Vec::new).push(
        serde_json::from_value(serde_json::json!({
            "type": type_, "status": "True", "reason": "KubectlApprove",
            "message": "This CSR was approved by the e2e test"
        }))
        .expect("condition"),
    );
    api.replace_subresource("approval", name, &PostParams::default(), &csr)
        .await
        .expect("approval updated");
}

async fn create(client: &kube::Client, csr: &CertificateSigningRequest) {
    csrs(client)
        .create(&PostParams::default(), csr)
        .await
        .expect("csr created");
}

/// `(status.certificate, root from cert-manager's CA annotation)` once the CSR is signed.
async fn signed(client: &kube::Client, name: &str) -> (String, String) {
    let api = csrs(client);
    eventually(
        &format!("CSR {name} signed"),
        Duration::from_secs(90),
        || async {
            let csr = api.get(name).await.ok()?;
            let cert = csr.status.as_ref()?.certificate.as_ref()?;
            let ca = csr.metadata.annotations.as_ref()?.get(CA_ANNOTATION)?;
            Some((String::from_utf8(cert.0.clone()).ok()?, base64_decode(ca)))
        },
    )
    .await
}

/// `(reason, message)` of the CSR's `Failed` condition once it is there.
async fn failed(client: &kube::Client, name: &str) -> (String, String) {
    let api = csrs(client);
    eventually(
        &format!("CSR {name} Failed"),
        Duration::from_secs(60),
        || async {
            let csr = api.get(name).await.ok()?;
            let c = csr
                .status?
                .conditions?
                .into_iter()
                .find(|c| c.type_ == "Failed" && c.status == "True")?;
            Some((c.reason.unwrap_or_default(), c.message.unwrap_or_default()))
        },
    )
    .await
}

fn untouched(csr: &CertificateSigningRequest) -> bool {
    let status = csr.status.clone().unwrap_or_default();
    status.certificate.is_none()
        && !status
            .conditions
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Failed")
        && csr
            .metadata
            .annotations
            .as_ref()
            .is_none_or(|a| !a.keys().any(|k| k.starts_with("pca.ncp-issuer.dev/")))
}

#[tokio::test]
async fn an_approved_csr_for_a_cluster_private_ca_is_signed_once_by_ncp_and_verifies_to_the_ncp_root()
 {
    operator();
    let client = client().await;
    let ns = namespace("csr-ncp").await;
    let ca = emulator_root_ca(KeyType::Ec256, 3650).await;
    let issuer = format!("csr-{ns}");
    ready_issuer(&client, &ns, &issuer, true, &ca, serde_json::json!({})).await;
    let signer = format!("clusterprivatecas.pca.ncp-issuer.dev/{issuer}");
    let (approved, pending, denied) = (
        format!("{ns}-approved"),
        format!("{ns}-pending"),
        format!("{ns}-denied"),
    );
    create(
        &client,
        &csr_object(&pending, &signer, "pending.example.com"),
    )
    .await;
    create(&client, &csr_object(&denied, &signer, "denied.example.com")).await;
    decide(&client, &denied, "Denied").await;
    create(&client, &csr_object(&approved, &signer, "web.example.com")).await;
    decide(&client, &approved, "Approved").await;

    let (chain, root) = signed(&client, &approved).await;
    let ncp_root = ncp_client().get_ca_chain(&ca).await.expect("NCP root");
    let pem_der = |pem: &str| {
        x509_parser::pem::parse_x509_pem(pem.as_bytes())
            .expect("pem")
            .1
            .contents
    };
    assert_eq!(
        pem_der(&root),
        pem_der(&ncp_root),
        "the CA annotation holds the NCP root"
    );
    let verdict = openssl_verify(&chain, &ncp_root).expect("verifies to the NCP root");
    assert!(verdict.contains("OK"), "{verdict}");
    assert_eq!(emulator().stats().issued_by(&ca), 1, "one Sign End Csr");

    // The CSR that was not approved and the denied one stay as they were.
    stays(
        "unapproved and denied CSRs untouched",
        Duration::from_secs(3),
        || async {
            let p = csrs(&client).get(&pending).await.expect("pending");
            let d = csrs(&client).get(&denied).await.expect("denied");
            untouched(&p) && untouched(&d)
        },
    )
    .await;
    assert_eq!(emulator().stats().issued_by(&ca), 1);
    for name in [&approved, &pending, &denied] {
        let _ = csrs(&client).delete(name, &Default::default()).await;
    }
}

#[tokio::test]
async fn a_requester_may_use_only_the_signers_it_may_reference() {
    use k8s_openapi::api::core::v1::ServiceAccount;
    use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
    operator();
    let client = client().await;
    let ns = namespace("csr-ref").await;
    let other = namespace("csr-ref-other").await;
    let ca = emulator_root_ca(KeyType::Ec256, 3650).await;
    ready_issuer(&client, &ns, "pca", false, &ca, serde_json::json!({})).await;
    ready_issuer(&client, &other, "pca", false, &ca, serde_json::json!({})).await;
    let cluster_issuer = format!("csr-ref-{ns}");
    ready_issuer(
        &client,
        &ns,
        &cluster_issuer,
        true,
        &ca,
        serde_json::json!({}),
    )
    .await;

    // A requester that may create CSRs and reference the signers of namespace `ns` only.
    let sa = "requester";
    Api::<ServiceAccount>::namespaced(client.clone(), &ns)
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": sa}})).expect("sa"),
        )
        .await
        .expect("service account");
    let role = format!("csr-requester-{ns}");
    let _rbac = support::ClusterRbac(role.clone());
    let cluster_role = serde_json::from_value(serde_json::json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": role},
        "rules": [{"apiGroups": ["certificates.k8s.io"], "resources": ["certificatesigningrequests"],
                   "verbs": ["create", "get"]}]
    }))
    .expect("cluster role");
    Api::<k8s_openapi::api::rbac::v1::ClusterRole>::all(client.clone())
        .create(&PostParams::default(), &cluster_role)
        .await
        .expect("cluster role created");
    support::bind_cluster_role(&client, &role, &ns, sa).await;
    let reference: Role = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "reference-signers"},
        "rules": [{"apiGroups": ["pca.ncp-issuer.dev"], "resources": ["signers"], "verbs": ["reference"],
                   "resourceNames": ["pca"]}]
    }))
    .expect("role");
    Api::<Role>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &reference)
        .await
        .expect("role created");
    let binding: RoleBinding = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "reference-signers"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reference-signers"},
        "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": ns}]
    }))
    .expect("binding");
    Api::<RoleBinding>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &binding)
        .await
        .expect("binding created");
    let kubeconfig = support::service_account_kubeconfig(&client, &ns, sa).await;
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(&kubeconfig).expect("kubeconfig"),
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .expect("config");
    let requester = kube::Client::try_from(config).expect("requester client");

    let allowed = format!("{ns}-allowed");
    let elsewhere = format!("{ns}-elsewhere");
    let cluster_wide = format!("{ns}-cluster");
    for (name, signer) in [
        (&allowed, format!("privatecas.pca.ncp-issuer.dev/{ns}.pca")),
        (
            &elsewhere,
            format!("privatecas.pca.ncp-issuer.dev/{other}.pca"),
        ),
        (
            &cluster_wide,
            format!("clusterprivatecas.pca.ncp-issuer.dev/{cluster_issuer}"),
        ),
    ] {
        eventually(
            "the requester may create CSRs",
            Duration::from_secs(10),
            || async {
                csrs(&requester)
                    .create(
                        &PostParams::default(),
                        &csr_object(name, &signer, "x.example.com"),
                    )
                    .await
                    .ok()
            },
        )
        .await;
        decide(&client, name, "Approved").await;
    }

    let (chain, root) = signed(&client, &allowed).await;
    openssl_verify(&chain, &root).expect("verifies");
    for name in [&elsewhere, &cluster_wide] {
        let (reason, message) = failed(&client, name).await;
        assert_eq!(reason, "SignerReferenceDenied", "{message}");
        assert!(
            message.contains(&format!("system:serviceaccount:{ns}:{sa}"))
                && message.contains("reference"),
            "{message}"
        );
    }
    assert_eq!(
        emulator().stats().issued_by(&ca),
        1,
        "only the allowed CSR was signed"
    );
    for name in [&allowed, &elsewhere, &cluster_wide] {
        let _ = csrs(&client).delete(name, &Default::default()).await;
    }
}

#[tokio::test]
async fn an_approved_csr_for_a_subordinate_issuer_is_signed_in_the_cluster_without_an_ncp_call() {
    let emu = own_emulator();
    let (client, ns, _ca) = support::subordinate_issuer_on(emu, "csr-sub").await;
    let before = emu.stats().calls(Operation::SignEndCsr).total;
    let name = format!("{ns}-sub");
    create(
        &client,
        &csr_object(
            &name,
            &format!("privatecas.pca.ncp-issuer.dev/{ns}.sub"),
            "sub.example.com",
        ),
    )
    .await;
    decide(&client, &name, "Approved").await;

    let (chain, root) = signed(&client, &name).await;
    let verdict = openssl_verify(&chain, &root).expect("verifies to the NCP root");
    assert!(verdict.contains("OK"), "{verdict}");
    assert_eq!(
        ncp_pca_issuer::ncp::types::split_pem_blocks(&chain)
            .expect("pem")
            .len(),
        2,
        "leaf and intermediate"
    );
    assert_eq!(
        emu.stats().calls(Operation::SignEndCsr).total,
        before,
        "no NCP call"
    );
    let _ = csrs(&client).delete(&name, &Default::default()).await;
}

/// Refuses (403) status writes of CSRs labelled `test.ncp-issuer.dev/refuse-status`, as an RBAC
/// refusal would, with a ValidatingAdmissionPolicy (no webhook needed). Returns its name.
async fn refuse_labelled_csr_status_writes(client: &kube::Client, name: &str) {
    let policy = support::dynamic(
        client,
        None,
        "admissionregistration.k8s.io",
        "v1",
        "ValidatingAdmissionPolicy",
        "validatingadmissionpolicies",
    );
    support::apply(&policy, serde_json::json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{
                "apiGroups": ["certificates.k8s.io"], "apiVersions": ["v1"], "operations": ["UPDATE"],
                "resources": ["certificatesigningrequests/status"]}]},
            "validations": [{
                "expression": "!has(object.metadata.labels) || !('test.ncp-issuer.dev/refuse-status' in object.metadata.labels)",
                "message": "status writes refused by the test", "reason": "Forbidden"}]
        }
    }))
    .await
    .expect("policy");
    let binding = support::dynamic(
        client,
        None,
        "admissionregistration.k8s.io",
        "v1",
        "ValidatingAdmissionPolicyBinding",
        "validatingadmissionpolicybindings",
    );
    support::apply(&binding, serde_json::json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {"policyName": name, "validationActions": ["Deny"]}
    }))
    .await
    .expect("binding");
}

#[tokio::test]
async fn a_lost_ncp_answer_and_refused_status_writes_still_end_with_exactly_one_certificate() {
    let emu = own_emulator();
    operator();
    let client = client().await;
    let ns = namespace("csr-lost").await;
    let ca = emulator_root_ca_on(emu, KeyType::Ec256, 3650).await;
    let issuer = format!("csr-lost-{ns}");
    ready_issuer_on(emu, &client, &ns, &issuer, true, &ca, serde_json::json!({})).await;
    let policy = format!("refuse-csr-status-{ns}");
    refuse_labelled_csr_status_writes(&client, &policy).await;
    let label =
        serde_json::json!({"metadata": {"labels": {"test.ncp-issuer.dev/refuse-status": "yes"}}});
    // The policy is in force: a status write of a labelled CSR of the test's own is refused.
    let probe = format!("{ns}-probe");
    let mut probe_csr = csr_object(&probe, "example.com/not-ours", "probe.example.com");
    probe_csr.metadata.labels = Some(
        [(
            "test.ncp-issuer.dev/refuse-status".to_string(),
            "yes".to_string(),
        )]
        .into(),
    );
    create(&client, &probe_csr).await;
    eventually("the policy to refuse status writes", Duration::from_secs(30), || async {
        let patch = serde_json::json!({"status": {"conditions": [{"type": "Failed", "status": "True", "reason": "Probe", "message": "probe"}]}});
        match csrs(&client)
            .patch_status(&probe, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Err(kube::Error::Api(s)) if s.code == 403 => Some(()),
            _ => None,
        }
    })
    .await;

    // The next Sign End Csr commits, then never answers (the operator's NCP timeout is 2 s).
    emu.add_fault(
        FaultRule::new(FaultKind::CommitThenLoseResponse)
            .for_operation(Operation::SignEndCsr)
            .times(1),
    );
    let name = format!("{ns}-lost");
    let mut object = csr_object(
        &name,
        &format!("clusterprivatecas.pca.ncp-issuer.dev/{issuer}"),
        "lost.example.com",
    );
    object.metadata.labels = Some(
        [(
            "test.ncp-issuer.dev/refuse-status".to_string(),
            "yes".to_string(),
        )]
        .into(),
    );
    create(&client, &object).await;
    decide(&client, &name, "Approved").await;

    // Recovered by key (serial recorded), root annotated just before the status write, which is
    // refused: the operator attempted it.
    eventually(
        "the recovered serial and a refused status write",
        Duration::from_secs(90),
        || async {
            let csr = csrs(&client).get(&name).await.ok()?;
            let a = csr.metadata.annotations?;
            (a.contains_key("pca.ncp-issuer.dev/serial") && a.contains_key(CA_ANNOTATION))
                .then_some(())
        },
    )
    .await;
    stays(
        "not signed while status writes are refused",
        Duration::from_secs(6),
        || async {
            let csr = csrs(&client).get(&name).await.expect("csr");
            csr.status.and_then(|s| s.certificate).is_none() && emu.stats().issued_by(&ca) == 1
        },
    )
    .await;

    let mut unlabel = label.clone();
    unlabel["metadata"]["labels"]["test.ncp-issuer.dev/refuse-status"] = serde_json::Value::Null;
    csrs(&client)
        .patch(&name, &PatchParams::default(), &Patch::Merge(&unlabel))
        .await
        .expect("label removed");
    let (chain, _root) = signed(&client, &name).await;
    let ncp_root = ncp_client_on(emu).get_ca_chain(&ca).await.expect("root");
    openssl_verify(&chain, &ncp_root).expect("verifies");
    assert_eq!(
        emu.stats().issued_by(&ca),
        1,
        "exactly one certificate in NCP"
    );
    assert_eq!(
        emu.stats().calls(Operation::SignEndCsr).total,
        1,
        "signed once"
    );

    for csr in [&name, &probe] {
        let _ = csrs(&client).delete(csr, &Default::default()).await;
    }
    for (kind, plural) in [
        (
            "ValidatingAdmissionPolicyBinding",
            "validatingadmissionpolicybindings",
        ),
        ("ValidatingAdmissionPolicy", "validatingadmissionpolicies"),
    ] {
        let api = support::dynamic(
            &client,
            None,
            "admissionregistration.k8s.io",
            "v1",
            kind,
            plural,
        );
        let _ = api.delete(&policy, &Default::default()).await;
    }
}
