//! The typed client against the in-process emulator: every one of the 24 operations, retries, the
//! at-most-once rule for signing calls, and authentication failures.

use ncp_pca_issuer::emulator::{self, EmulatorConfig, EmulatorHandle};
use ncp_pca_issuer::ncp::types::{CaStatus, CaType, KeyType, Period, X509Parameters};
use ncp_pca_issuer::ncp::{
    Client, ClientConfig, Credentials, NcpError, NewCa, Operation, RetryPolicy,
};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const AK: &str = "test-access-key";
const SK: &str = "test-secret-key-0123456789";

/// A strict-signing emulator: our client must sign the exact path and query, with `-v2`.
async fn start() -> EmulatorHandle {
    ncp_pca_issuer::telemetry::install_crypto_provider();
    let mut config = EmulatorConfig::new(Credentials::new(AK, SK)).strict();
    config.test_controls = true;
    emulator::spawn(config).await.expect("emulator starts")
}

fn client_for(emu: &EmulatorHandle, secret: &str, timeout: Duration) -> Client {
    let mut config = ClientConfig::new(Credentials::new(AK, secret)).with_endpoint(emu.base_url());
    config.request_timeout = timeout;
    config.retry = RetryPolicy {
        max_attempts: 4,
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
    };
    Client::new(config).expect("client builds")
}

fn client(emu: &EmulatorHandle) -> Client {
    client_for(emu, SK, Duration::from_secs(30))
}

fn subject(cn: &str) -> X509Parameters {
    X509Parameters {
        common_name: Some(cn.to_string()),
        organization: Some("Example".into()),
        ..X509Parameters::default()
    }
}

fn new_root(alias: &str) -> NewCa {
    NewCa {
        ca_type: CaType::PrivateRoot,
        issuer_tag: None,
        alias: alias.into(),
        memo: Some("test root".into()),
        key_type: KeyType::Ec256,
        period: Period::Days(3650),
        subject: subject(&format!("{alias} Root")),
    }
}

fn csr(dns: &str) -> String {
    let key = rcgen::KeyPair::generate().expect("key");
    let params = rcgen::CertificateParams::new(vec![dns.to_string()]).expect("params");
    params
        .serialize_request(&key)
        .expect("csr")
        .pem()
        .expect("pem")
}

/// Runs `openssl verify` on a leaf with its chain (`chain` = [issuing CA, …, root]).
fn openssl_verify(dir: &Path, leaf: &str, chain: &[String]) -> String {
    let (root, intermediates) = chain.split_last().expect("chain has a root");
    std::fs::write(dir.join("leaf.pem"), leaf).unwrap();
    std::fs::write(dir.join("root.pem"), root).unwrap();
    let mut cmd = Command::new("openssl");
    cmd.arg("verify").arg("-CAfile").arg(dir.join("root.pem"));
    if !intermediates.is_empty() {
        std::fs::write(dir.join("untrusted.pem"), intermediates.concat()).unwrap();
        cmd.arg("-untrusted").arg(dir.join("untrusted.pem"));
    }
    let out = cmd
        .arg(dir.join("leaf.pem"))
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl verify failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn crl_serials(crl_pem: &str) -> Vec<String> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(crl_pem.as_bytes()).expect("crl is pem");
    let (_, crl) = x509_parser::parse_x509_crl(&pem.contents).expect("crl parses");
    crl.iter_revoked_certificates()
        .map(|r| {
            r.raw_serial()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":")
        })
        .collect()
}

fn normalise_serial(s: &str) -> String {
    // Compare serials without leading zero octets and case differences.
    let bytes: Vec<&str> = s.split(':').collect();
    let trimmed: Vec<&str> = bytes.iter().copied().skip_while(|b| *b == "00").collect();
    trimmed.join(":").to_lowercase()
}

#[tokio::test]
async fn every_operation_of_the_client_works_against_the_emulator() {
    let emu = start().await;
    let c = client(&emu);
    let dir = tempfile::tempdir().unwrap();

    // Create CA (root), Get CA, Get CA List, Get CA Chain.
    let root = c.create_ca(&new_root("rootca")).await.expect("create root");
    let root_tag = root.ca_info.ca_tag.clone();
    assert_eq!(root.ca_info.status, CaStatus::Active);
    assert_eq!(root.ca_info.ca_type, "PRIVATE_ROOT");
    let got = c.get_ca(&root_tag).await.expect("get ca");
    assert_eq!(got.ca_info.alias, "rootca");
    assert!(got.ca_cert_info.cert_pem.contains("BEGIN CERTIFICATE"));
    let list = c.list_all_cas().await.expect("list");
    assert!(list.iter().any(|d| d.ca_info.ca_tag == root_tag));
    let page = c.get_ca_list(Some(1)).await.expect("page 1");
    assert_eq!(page.current_page_no, 1);
    assert!(page.total_cnt >= 1);
    let root_chain = c.get_ca_chain(&root_tag).await.expect("chain");
    assert!(root_chain.contains("BEGIN CERTIFICATE"));

    // An intermediate signed at once by its parent.
    let mut sub = new_root("subca");
    sub.ca_type = CaType::PrivateSub;
    sub.issuer_tag = Some(root_tag.clone());
    sub.period = Period::Days(365);
    let sub = c.create_ca(&sub).await.expect("create sub");
    let sub_tag = sub.ca_info.ca_tag.clone();
    assert_eq!(sub.ca_info.status, CaStatus::Active);

    // A PENDING intermediate: Get Sub CSR, Sign Sub Csr by the root, Activate Sub CA.
    let mut pending = new_root("pendingca");
    pending.ca_type = CaType::PrivateSub;
    pending.period = Period::Days(200);
    let pending = c.create_ca(&pending).await.expect("create pending sub");
    let pending_tag = pending.ca_info.ca_tag.clone();
    assert_eq!(pending.ca_info.status, CaStatus::Pending);
    let sub_csr = c.get_sub_csr(&pending_tag).await.expect("sub csr");
    assert!(sub_csr.csr_pem.contains("CERTIFICATE REQUEST"));
    let signed = c
        .sign_sub_csr(&root_tag, &sub_csr.csr_pem, 100)
        .await
        .expect("sign sub csr");
    let activated = c
        .activate_sub_ca(&pending_tag, &signed.certificate, &signed.ca_chain.concat())
        .await
        .expect("activate");
    assert_eq!(activated.ca_info.status, CaStatus::Active);

    // Sign End Csr under the intermediate: the chain verifies to the root with openssl.
    let leaf = c
        .sign_end_csr(&sub_tag, &csr("leaf.example.com"), Some(Period::Days(30)))
        .await
        .expect("sign end csr");
    assert!(leaf.ca_chain.len() >= 2, "chain = [intermediate, root]");
    let verdict = openssl_verify(dir.path(), &leaf.certificate, &leaf.ca_chain);
    assert!(verdict.contains("OK"), "{verdict}");

    // Issue End Cert: the service makes the key.
    let issued = c
        .issue_end_cert(
            &sub_tag,
            KeyType::Rsa2048,
            Period::Days(10),
            &subject("issued.example.com"),
        )
        .await
        .expect("issue end cert");
    assert!(
        issued
            .private_key
            .as_ref()
            .is_some_and(|k| k.0.contains("PRIVATE KEY"))
    );

    // Get End Cert List and Get End Cert.
    let serials = c
        .list_all_end_cert_serials(&sub_tag)
        .await
        .expect("cert list");
    for s in [&leaf.serial_no, &issued.serial_no] {
        assert!(serials.contains(s), "{s} missing from {serials:?}");
    }
    let first_page = c
        .get_end_cert_list(&sub_tag, None)
        .await
        .expect("cert list page");
    assert!(first_page.total_cnt >= 2);
    let fetched = c
        .get_end_cert(&sub_tag, &leaf.serial_no)
        .await
        .expect("get end cert");
    assert_eq!(fetched.cert_pem.trim(), leaf.certificate.trim());
    assert_eq!(
        c.get_ca(&sub_tag).await.unwrap().ca_info.signing_count,
        Some(2)
    );

    // Revoke End Cert, Rotate CRL, Get CA CRL.
    c.revoke_end_cert(&sub_tag, &leaf.serial_no)
        .await
        .expect("revoke");
    c.rotate_crl(&sub_tag).await.expect("rotate crl");
    let crl = c.get_ca_crl(&sub_tag).await.expect("crl");
    let revoked: Vec<String> = crl_serials(&crl)
        .iter()
        .map(|s| normalise_serial(s))
        .collect();
    assert!(
        revoked.contains(&normalise_serial(&leaf.serial_no)),
        "{revoked:?}"
    );
    assert!(!revoked.contains(&normalise_serial(&issued.serial_no)));

    // CRL config.
    let cfg = c
        .update_crl_config(&sub_tag, 5)
        .await
        .expect("update crl config");
    assert_eq!(cfg.expiry.as_deref(), Some("5"));
    assert_eq!(
        c.get_crl_config(&sub_tag)
            .await
            .expect("crl config")
            .expiry
            .as_deref(),
        Some("5")
    );

    // OCSP.
    let ocsp_url = format!("{}/ext/{sub_tag}/ocsp", emu.base_url());
    c.create_ocsp(&sub_tag, &ocsp_url)
        .await
        .expect("create ocsp");
    assert_eq!(
        c.get_ca(&sub_tag).await.unwrap().ca_info.url_info.ocsp,
        vec![ocsp_url]
    );
    c.delete_ocsp(&sub_tag).await.expect("delete ocsp");
    assert!(
        c.get_ca(&sub_tag)
            .await
            .unwrap()
            .ca_info
            .url_info
            .ocsp
            .is_empty()
    );

    // CA users.
    let id_no = "6e4c1234-5678-90ab-cdef-1234567a9baa";
    c.add_ca_user(&sub_tag, id_no).await.expect("add user");
    assert!(
        c.get_ca_user_list(&sub_tag)
            .await
            .unwrap()
            .iter()
            .any(|u| u.id_no == id_no)
    );
    c.delete_ca_user(&sub_tag, id_no)
        .await
        .expect("delete user");
    assert!(c.get_ca_user_list(&sub_tag).await.unwrap().is_empty());

    // Trim CA.
    c.trim_ca(&sub_tag).await.expect("trim");

    // Update CA: a DEACTIVATED CA refuses to sign; ACTIVE again signs.
    let updated = c
        .update_ca(&sub_tag, Some(&CaStatus::Deactivated), Some("paused"))
        .await
        .expect("deactivate");
    assert_eq!(updated.ca_info.status, CaStatus::Deactivated);
    let refused = c
        .sign_end_csr(&sub_tag, &csr("x.example.com"), None)
        .await
        .unwrap_err();
    assert_eq!(refused.service_msg(), Some("Invalid ca status."));
    c.update_ca(&sub_tag, Some(&CaStatus::Active), None)
        .await
        .expect("reactivate");
    c.sign_end_csr(&sub_tag, &csr("y.example.com"), None)
        .await
        .expect("signs again");

    // Delete CA: only once DESTROYING; afterwards it is gone.
    let not_yet = c.delete_ca(&pending_tag).await.unwrap_err();
    assert_eq!(not_yet.service_msg(), Some("Invalid ca status."));
    c.update_ca(&pending_tag, Some(&CaStatus::Destroying), None)
        .await
        .expect("destroying");
    c.delete_ca(&pending_tag).await.expect("delete");
    assert!(c.get_ca(&pending_tag).await.unwrap_err().is_ca_not_found());
}

#[tokio::test]
async fn a_lost_signing_response_is_a_timeout_that_is_not_retried_while_the_certificate_exists() {
    let emu = start().await;
    let c = client(&emu);
    let ca = c
        .create_ca(&new_root("lostca"))
        .await
        .unwrap()
        .ca_info
        .ca_tag;
    emu.add_fault(
        emulator::FaultRule::new(emulator::FaultKind::CommitThenLoseResponse)
            .for_operation(Operation::SignEndCsr)
            .times(1),
    );
    let impatient = client_for(&emu, SK, Duration::from_millis(700));

    let err = impatient
        .sign_end_csr(&ca, &csr("lost.example.com"), None)
        .await
        .unwrap_err();

    assert!(matches!(err, NcpError::Timeout { .. }), "{err:?}");
    let stats = emu.stats();
    assert_eq!(
        stats.calls(Operation::SignEndCsr).total,
        1,
        "a sign call is never repeated after a timeout"
    );
    assert_eq!(
        stats.certificates_issued_total, 1,
        "the emulator did issue the certificate"
    );
    // The certificate can be found again: this is what the operator's recovery relies on.
    assert_eq!(c.list_all_end_cert_serials(&ca).await.unwrap().len(), 1);
}

#[tokio::test]
async fn throttling_is_retried_for_every_operation_but_a_signing_5xx_is_not() {
    let emu = start().await;
    let c = client(&emu);
    let ca = c
        .create_ca(&new_root("retryca"))
        .await
        .unwrap()
        .ca_info
        .ca_tag;

    emu.add_fault(
        emulator::FaultRule::new(emulator::FaultKind::Throttle429)
            .for_operation(Operation::GetCa)
            .times(2),
    );
    c.get_ca(&ca)
        .await
        .expect("get ca succeeds after two throttled attempts");
    assert_eq!(emu.stats().calls(Operation::GetCa).total, 3);

    emu.add_fault(
        emulator::FaultRule::new(emulator::FaultKind::Throttle429)
            .for_operation(Operation::SignEndCsr)
            .times(1),
    );
    c.sign_end_csr(&ca, &csr("a.example.com"), None)
        .await
        .expect("throttled sign is retried");
    assert_eq!(emu.stats().calls(Operation::SignEndCsr).total, 2);

    emu.add_fault(
        emulator::FaultRule::new(emulator::FaultKind::Error500)
            .for_operation(Operation::SignEndCsr)
            .times(1),
    );
    let err = c
        .sign_end_csr(&ca, &csr("b.example.com"), None)
        .await
        .unwrap_err();
    assert!(
        err.is_retryable(),
        "the caller may retry later, knowing the risk"
    );
    assert_eq!(
        emu.stats().calls(Operation::SignEndCsr).total,
        3,
        "no automatic repeat of a 5xx sign"
    );
    assert_eq!(emu.stats().certificates_issued_total, 1);

    emu.add_fault(
        emulator::FaultRule::new(emulator::FaultKind::Error500)
            .for_operation(Operation::GetCa)
            .times(1),
    );
    c.get_ca(&ca)
        .await
        .expect("an idempotent read is retried after a 5xx");
}

#[tokio::test]
async fn a_wrong_secret_key_is_an_authentication_failure_that_is_not_retried() {
    let emu = start().await;
    let c = client_for(&emu, "not-the-secret", Duration::from_secs(5));
    let err = c.get_ca_list(None).await.unwrap_err();
    assert!(err.is_auth_failure(), "{err:?}");
    assert!(!err.is_retryable());
    assert!(!err.to_string().contains("not-the-secret"));
    assert_eq!(
        emu.stats().calls(Operation::GetCaList).success,
        0,
        "rejected at the gateway"
    );
}

#[tokio::test]
async fn a_dot_segment_parameter_never_reaches_another_operation() {
    let emu = start().await;
    let c = client(&emu);
    let ca = c
        .create_ca(&new_root("dotca"))
        .await
        .unwrap()
        .ca_info
        .ca_tag;
    let id = "6e4c1234-5678-90ab-cdef-1234567a9baa";
    let serial = "0a:0b";
    let before = emu.stats();
    for bad in [".", ".."] {
        let pem = "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n";
        let subject = subject("x");
        let results: Vec<(&str, Result<(), NcpError>)> = vec![
            (
                "activate_sub_ca",
                c.activate_sub_ca(bad, pem, pem).await.map(drop),
            ),
            ("add_ca_user", c.add_ca_user(bad, id).await),
            ("create_ocsp", c.create_ocsp(bad, "http://o").await),
            ("delete_ca", c.delete_ca(bad).await),
            ("delete_ca_user tag", c.delete_ca_user(bad, id).await),
            ("delete_ca_user id", c.delete_ca_user(&ca, bad).await),
            ("delete_ocsp", c.delete_ocsp(bad).await),
            ("get_ca", c.get_ca(bad).await.map(drop)),
            ("get_ca_chain", c.get_ca_chain(bad).await.map(drop)),
            ("get_ca_crl", c.get_ca_crl(bad).await.map(drop)),
            ("get_ca_user_list", c.get_ca_user_list(bad).await.map(drop)),
            ("get_crl_config", c.get_crl_config(bad).await.map(drop)),
            (
                "get_end_cert tag",
                c.get_end_cert(bad, serial).await.map(drop),
            ),
            (
                "get_end_cert serial",
                c.get_end_cert(&ca, bad).await.map(drop),
            ),
            (
                "get_end_cert_list",
                c.get_end_cert_list(bad, None).await.map(drop),
            ),
            ("get_sub_csr", c.get_sub_csr(bad).await.map(drop)),
            (
                "issue_end_cert",
                c.issue_end_cert(bad, KeyType::Ec256, Period::Days(1), &subject)
                    .await
                    .map(drop),
            ),
            ("revoke_end_cert tag", c.revoke_end_cert(bad, serial).await),
            ("revoke_end_cert serial", c.revoke_end_cert(&ca, bad).await),
            ("rotate_crl", c.rotate_crl(bad).await),
            (
                "sign_end_csr",
                c.sign_end_csr(bad, &csr("a.example"), None).await.map(drop),
            ),
            (
                "sign_sub_csr",
                c.sign_sub_csr(bad, &csr("a.example"), 10).await.map(drop),
            ),
            ("trim_ca", c.trim_ca(bad).await),
            (
                "update_ca",
                c.update_ca(bad, Some(&CaStatus::Active), None)
                    .await
                    .map(drop),
            ),
            (
                "update_crl_config",
                c.update_crl_config(bad, 3).await.map(drop),
            ),
        ];
        assert_eq!(results.len(), 25);
        for (what, result) in results {
            let err = result.expect_err(what);
            assert!(
                matches!(err, NcpError::InvalidRequest { .. }),
                "{what} {bad:?}: {err:?}"
            );
            assert!(err.to_string().contains("dot segment"), "{err}");
        }
    }
    assert_eq!(
        emu.stats(),
        before,
        "nothing was sent: no other operation was called"
    );
}

/// Serves one canned answer to every request, on 127.0.0.1 (an endpoint that answers the wrong
/// operation's shape).
async fn canned(body: &'static str) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf).await;
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(answer.as_bytes()).await;
        }
    });
    url
}

#[tokio::test]
async fn a_success_answer_without_what_the_operation_returns_is_a_decode_error() {
    ncp_pca_issuer::telemetry::install_crypto_provider();
    // The answer Get CA List gives, to a Get CA.
    let url = canned(
        r#"{"code":"SUCCESS","msg":"Success","data":{"totalCnt":0,"totalPageNo":0,"currentPageNo":1,"caInfoList":[]}}"#,
    )
    .await;
    let mut config = ClientConfig::new(Credentials::new(AK, SK)).with_endpoint(url);
    config.retry = RetryPolicy::none();
    let c = Client::new(config).unwrap();
    let err = c.get_ca("abcdefgh-12345678").await.unwrap_err();
    assert!(matches!(err, NcpError::Decode { .. }), "{err:?}");
    assert!(err.to_string().contains("caInfo.caTag"), "{err}");
    let err = c.get_end_cert("t", "0a:0b").await.unwrap_err();
    assert!(err.to_string().contains("certPem"), "{err}");
    let err = c.get_ca_chain("t").await.unwrap_err();
    assert!(matches!(err, NcpError::Decode { .. }), "{err:?}");
    // The list itself is complete.
    assert!(c.get_ca_list(None).await.unwrap().ca_info_list.is_empty());
}
