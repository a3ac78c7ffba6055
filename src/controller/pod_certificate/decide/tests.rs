use super::*;
use crate::api::IssuerSpec;
use k8s_openapi::ByteString;
use rcgen::{PublicKeyData as _, SigningKey as _};

const UID: &str = "0f6c1b1e-3d5a-4a7e-9d8e-6f3d1c2b4a5e";

fn pcr(key: &rcgen::KeyPair, proof_of: &str, namespace: &str, sa: &str) -> PodCertificateRequest {
    let proof = key.sign(proof_of.as_bytes()).expect("sign");
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "p", "namespace": namespace},
        "spec": {
            "signerName": "privatecas.pca.ncp-issuer.dev/team-a.sub", "podName": "web-0", "podUID": UID,
            "serviceAccountName": sa, "serviceAccountUID": "sa-uid", "nodeName": "n1", "nodeUID": "n-uid",
            "maxExpirationSeconds": 7200,
            "pkixPublicKey": ByteString(key.subject_public_key_info()),
            "proofOfPossession": ByteString(proof),
        }
    }))
    .expect("pcr")
}

fn p256() -> rcgen::KeyPair {
    rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key")
}

fn signer() -> SignerRef {
    SignerRef::PrivateCA {
        namespace: "team-a".into(),
        name: "sub".into(),
    }
}

fn view(subordinate: bool, policy: Option<serde_json::Value>) -> IssuerLookup {
    let mut spec = serde_json::json!({"caTag": "t", "credentials": {"secretRef": {"name": "s"}}});
    if subordinate {
        spec["subordinate"] = serde_json::json!({"secretName": "sub-ca"});
    }
    if let Some(p) = policy {
        spec["podCertificates"] = p;
    }
    let spec: IssuerSpec = serde_json::from_value(spec).expect("spec");
    IssuerLookup::Found(Box::new(IssuerView {
        kind: "PrivateCA",
        name: "sub".into(),
        spec,
        secret_namespace: "team-a".into(),
        readiness: Readiness::Ready,
        ca_not_after_unix: None,
        owner: "o".into(),
        generation: None,
        subordinate_root: None,
        reference: Default::default(),
    }))
}

fn plan_for(p: &PodCertificateRequest, issuer: IssuerLookup) -> Plan {
    plan(Observed {
        pcr: p,
        signer: &signer(),
        issuer,
    })
}

fn written(plan: Plan) -> status::Update {
    match plan {
        Plan::Write(o) => o.update().cloned().expect("an update"),
        Plan::Sign { .. } => panic!("signs"),
    }
}

use super::super::status;

#[test]
fn a_request_within_the_policy_is_signed_with_the_spiffe_uri_and_the_shorter_lifetime() {
    let p = pcr(&p256(), UID, "team-a", "web");
    let Plan::Sign { sans, lifetime, .. } = plan_for(
        &p,
        view(
            true,
            Some(serde_json::json!({
                "dnsNames": ["$(serviceAccount).$(namespace).svc"], "maxDuration": "48h"
            })),
        ),
    ) else {
        panic!("signs")
    };
    assert_eq!(
        sans,
        vec![
            San::Uri("spiffe://cluster.local/ns/team-a/sa/web".into()),
            San::Dns("web.team-a.svc".into())
        ]
    );
    assert_eq!(
        lifetime,
        Duration::from_secs(7200),
        "maxExpirationSeconds wins"
    );
}

#[test]
fn a_remote_issuer_fails_the_request_and_points_to_subordinate_mode() {
    let p = pcr(&p256(), UID, "team-a", "web");
    let status::Update::Failed { reason, message } =
        written(plan_for(&p, view(false, Some(serde_json::json!({})))))
    else {
        panic!("failed")
    };
    assert_eq!(reason, Reason::PodCertificateNeedsSubordinate);
    assert!(message.contains("spec.subordinate"), "{message}");
}

#[test]
fn requests_outside_the_policy_are_denied() {
    let cases = [
        (None, "team-a", "web", "no spec.podCertificates"),
        (
            Some(serde_json::json!({})),
            "team-b",
            "web",
            "own namespace",
        ),
        (
            Some(serde_json::json!({"serviceAccounts": ["api"]})),
            "team-a",
            "web",
            "serviceAccounts",
        ),
    ];
    for (policy, ns, sa, want) in cases {
        let p = pcr(&p256(), UID, ns, sa);
        let status::Update::Denied { message } = written(plan_for(&p, view(true, policy))) else {
            panic!("denied: {want}")
        };
        assert!(message.contains(want), "{message}");
    }
}

#[test]
fn a_proof_of_possession_over_anything_but_the_pod_uid_fails() {
    let p = pcr(&p256(), "another-uid", "team-a", "web");
    assert_eq!(check_key(&p).err(), Some(KeyProblem::ProofOfPossession));
    let status::Update::Failed { reason, .. } =
        written(plan_for(&p, view(true, Some(serde_json::json!({})))))
    else {
        panic!("failed")
    };
    assert_eq!(reason, Reason::InvalidProofOfPossession);
    let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).expect("key");
    // P-384 is a key type we sign; its proof must be ECDSA with SHA-256, not SHA-384.
    assert_eq!(
        check_key(&pcr(&p384, UID, "team-a", "web")).err(),
        Some(KeyProblem::ProofOfPossession)
    );
}

#[test]
fn an_unsupported_key_type_fails_naming_what_is_supported() {
    let ed = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("key");
    let p = pcr(&ed, UID, "team-a", "web");
    let status::Update::Failed { reason, message } =
        written(plan_for(&p, view(true, Some(serde_json::json!({})))))
    else {
        panic!("failed")
    };
    assert_eq!(reason, Reason::UnsupportedKey);
    assert!(message.contains(SUPPORTED_KEYS), "{message}");
}

#[test]
fn refresh_begins_three_quarters_in_and_away_from_both_ends() {
    let nb = time::OffsetDateTime::UNIX_EPOCH;
    let hour = time::Duration::hours(1);
    assert_eq!(begin_refresh_at(nb, nb + hour * 4), nb + hour * 3);
    let short = begin_refresh_at(nb, nb + time::Duration::minutes(30));
    assert_eq!(short, nb + time::Duration::minutes(20));
}

#[test]
fn a_final_request_is_left_alone() {
    let mut p = pcr(&p256(), UID, "team-a", "web");
    assert!(!is_final(&p));
    p.status = serde_json::from_value(serde_json::json!({"conditions": [{
        "type": "Denied", "status": "True", "reason": "X", "message": "m",
        "lastTransitionTime": "2026-01-01T00:00:00Z"}]}))
    .ok();
    assert!(is_final(&p));
}
