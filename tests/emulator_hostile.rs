//! The emulator against hostile or careless input, at the HTTP and TCP level: each case checks the
//! status, the envelope, and that the emulator still answers a good request afterwards.

use ncp_pca_issuer::emulator::{self, EmulatorConfig, EmulatorHandle};
use ncp_pca_issuer::ncp::messages::{self, ServiceMessage};
use ncp_pca_issuer::ncp::signing::{self, Credentials};
use ncp_pca_issuer::ncp::types::CaDetail;
use serde_json::{Value, json};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const AK: &str = "HOSTILETESTACCESSKEY";
const SK: &str = "hostile-test-secret-key-0123456789";

async fn start(tune: impl FnOnce(&mut EmulatorConfig)) -> EmulatorHandle {
    ncp_pca_issuer::telemetry::install_crypto_provider();
    let mut config = EmulatorConfig::new(Credentials::new(AK, SK));
    tune(&mut config);
    emulator::spawn(config).await.expect("emulator starts")
}

fn now_ms() -> String {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
        .to_string()
}

/// The three auth headers for `method target`, as raw header lines.
fn auth_lines(method: &str, target: &str) -> String {
    let ts = now_ms();
    let sig = Credentials::new(AK, SK).sign(method, target, &ts);
    format!(
        "{}: {ts}\r\n{}: {AK}\r\n{}: {sig}\r\n",
        signing::HEADER_TIMESTAMP,
        signing::HEADER_ACCESS_KEY,
        signing::HEADER_SIGNATURE_V2
    )
}

/// A raw answer: status and JSON body.
#[derive(Debug)]
struct Raw {
    status: u16,
    head: String,
    body: Value,
}

/// Reads one HTTP/1.1 response from `stream` (the request asked for `Connection: close`).
async fn read_response(stream: &mut TcpStream) -> Raw {
    let mut bytes = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut bytes)).await;
    assert!(read.is_ok(), "no complete answer within 20 s");
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Raw {
        status,
        head: head.to_string(),
        body: serde_json::from_str(body.trim()).unwrap_or(Value::String(body.to_string())),
    }
}

async fn connect(emu: &EmulatorHandle) -> TcpStream {
    TcpStream::connect(emu.addr()).await.expect("connects")
}

fn assert_gateway(raw: &Raw, status: u16, code: &str, message: &str) {
    assert_eq!(raw.status, status, "{raw:?}");
    assert_eq!(raw.body["error"]["errorCode"], code, "{raw:?}");
    assert_eq!(raw.body["error"]["message"], message, "{raw:?}");
    assert!(raw.body["error"]["details"].is_string(), "{raw:?}");
}

/// A signed request with reqwest; returns status and body.
async fn send(emu: &EmulatorHandle, method: &str, target: &str, body: Option<Value>) -> Raw {
    let ts = now_ms();
    let sig = Credentials::new(AK, SK).sign(method, target, &ts);
    let mut rb = reqwest::Client::new()
        .request(
            method.parse().unwrap(),
            format!("{}{target}", emu.base_url()),
        )
        .header("content-type", "application/json")
        .header(signing::HEADER_TIMESTAMP, ts)
        .header(signing::HEADER_ACCESS_KEY, AK)
        .header(signing::HEADER_SIGNATURE_V2, sig);
    if let Some(b) = body {
        rb = rb.body(b.to_string());
    }
    let resp = rb.send().await.expect("request sent");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    Raw {
        status,
        head: String::new(),
        body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
    }
}

fn assert_service(raw: &Raw, m: ServiceMessage) {
    assert_eq!(raw.status, m.http_status, "{m:?} / {raw:?}");
    assert_eq!(raw.body["code"], m.code, "{raw:?}");
    assert_eq!(raw.body["msg"], m.msg, "{raw:?}");
    assert!(raw.body["data"].is_null(), "{raw:?}");
}

/// The emulator still serves a good request.
async fn still_answers(emu: &EmulatorHandle) {
    let raw = send(emu, "GET", "/api/v1/ca", None).await;
    assert_eq!(raw.status, 200, "{raw:?}");
    assert_eq!(raw.body["code"], "SUCCESS");
}

async fn create_root(emu: &EmulatorHandle, alias: &str) -> CaDetail {
    let raw = send(
        emu,
        "POST",
        "/api/v1/ca?caType=PRIVATE_ROOT",
        Some(json!({"alias": alias, "keyType": "EC256", "period": "3650",
                    "x509Parameters": {"commonName": format!("{alias} Root")}})),
    )
    .await;
    assert_eq!(raw.status, 200, "{raw:?}");
    serde_json::from_value(raw.body["data"].clone()).unwrap()
}

#[tokio::test]
async fn a_body_cut_short_is_a_400_gateway_error_not_413() {
    let emu = start(|_| {}).await;
    let target = "/api/v1/ca?caType=PRIVATE_ROOT";
    let mut stream = connect(&emu).await;
    let head = format!(
        "POST {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: 200\r\n{}\r\n",
        auth_lines("POST", target)
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(br#"{"alias": "cut"#).await.unwrap();
    stream.shutdown().await.unwrap();
    let raw = read_response(&mut stream).await;
    assert_gateway(&raw, 400, "100", "Bad Request Exception");
    assert!(
        raw.head
            .to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{raw:?}"
    );
    still_answers(&emu).await;
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_and_expect_100_continue_gets_413_at_once() {
    let emu = start(|c| c.max_body_bytes = 1024).await;
    let target = "/api/v1/ca?caType=PRIVATE_ROOT";

    // Sent in full.
    let big = json!({"alias": "big", "memo": "x".repeat(4096)});
    let raw = send(&emu, "POST", target, Some(big)).await;
    assert_gateway(&raw, 413, "430", "Request Entity Too Large");

    // Declared with Expect: 100-continue, never sent: the answer is 413, not 100.
    let mut stream = connect(&emu).await;
    let head = format!(
        "POST {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: 10000000\r\nExpect: 100-continue\r\n{}\r\n",
        auth_lines("POST", target)
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut first = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut first))
        .await
        .expect("an immediate answer")
        .unwrap();
    let line = String::from_utf8_lossy(&first[..n]).into_owned();
    assert!(line.starts_with("HTTP/1.1 413"), "{line:?}");
    drop(stream);
    still_answers(&emu).await;
}

#[tokio::test]
async fn a_connection_that_sends_half_a_header_is_closed_after_the_idle_timeout() {
    let emu = start(|c| c.idle_timeout = Duration::from_millis(500)).await;
    let mut stream = connect(&emu).await;
    stream
        .write_all(b"GET /api/v1/ca HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(15), stream.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the connection was still open after 15 s");
    assert!(started.elapsed() >= Duration::from_millis(400));
    still_answers(&emu).await;
}

#[tokio::test]
async fn control_characters_in_subject_fields_are_invalid_input() {
    let emu = start(|_| {}).await;
    for (field, value) in [
        ("commonName", "evil\u{0}root"),
        ("organization", "line\nbreak"),
        ("locality", "tab\there"),
    ] {
        let raw = send(
            &emu,
            "POST",
            "/api/v1/ca?caType=PRIVATE_ROOT",
            Some(json!({"alias": "ctl", "keyType": "EC256", "period": "30",
                        "x509Parameters": {"commonName": "ok", field: value}})),
        )
        .await;
        assert_service(&raw, messages::INVALID_INPUT);
    }
    let root = create_root(&emu, "ctlroot").await;
    let raw = send(
        &emu,
        "POST",
        &format!("/api/v1/ca/{}/cert", root.ca_info.ca_tag),
        Some(json!({"x509Parameters": {"commonName": "leaf\r\nInjected: yes"}})),
    )
    .await;
    assert_service(&raw, messages::INVALID_INPUT);
    still_answers(&emu).await;
}

/// A PEM CSR made by openssl with `-newkey SPEC`.
fn openssl_csr(newkey: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("openssl")
        .args(["req", "-new", "-nodes", "-subj", "/CN=weak.example"])
        .args(newkey)
        .arg("-keyout")
        .arg(dir.path().join("key.pem"))
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn every_weak_or_unsupported_csr_key_gets_invalid_key_type() {
    let emu = start(|_| {}).await;
    let root = create_root(&emu, "keyroot").await;
    let target = format!("/api/v1/ca/{}/cert/sign", root.ca_info.ca_tag);
    for spec in [
        vec!["-newkey", "rsa:1024"],
        vec!["-newkey", "rsa:3072"],
        vec!["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"],
        vec!["-newkey", "ed25519"],
    ] {
        let csr = openssl_csr(&spec);
        let raw = send(&emu, "POST", &target, Some(json!({"csrPem": csr}))).await;
        assert_service(&raw, messages::UNSUPPORTED_KEY_TYPE);
    }
    // A supported key with a broken signature is "Invalid csr.".
    let good = openssl_csr(&["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]);
    let raw = send(&emu, "POST", &target, Some(json!({"csrPem": good}))).await;
    assert_eq!(raw.status, 200, "{raw:?}");
    let raw = send(
        &emu,
        "POST",
        &target,
        Some(json!({"csrPem": "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"})),
    )
    .await;
    assert_service(&raw, messages::INVALID_CSR);
    still_answers(&emu).await;
}

#[tokio::test]
async fn a_missing_key_type_or_period_is_answered_with_documented_messages_only() {
    let emu = start(|_| {}).await;
    let create = |body: Value| send(&emu, "POST", "/api/v1/ca?caType=PRIVATE_ROOT", Some(body));
    let raw = create(json!({"alias": "nokey", "period": "30",
                            "x509Parameters": {"commonName": "x"}}))
    .await;
    assert_service(&raw, messages::INVALID_KEY_TYPE);
    let raw = create(json!({"alias": "noperiod", "keyType": "EC256",
                            "x509Parameters": {"commonName": "x"}}))
    .await;
    assert_service(&raw, messages::INVALID_PERIOD);
    assert!(messages::by_msg("period is missing.").is_none());
    assert!(messages::by_msg("key type is missing.").is_none());
    still_answers(&emu).await;
}

#[tokio::test]
async fn update_ca_answers_both_the_flat_and_the_nested_shape() {
    let emu = start(|_| {}).await;
    let root = create_root(&emu, "updroot").await;
    let tag = root.ca_info.ca_tag;
    let raw = send(
        &emu,
        "PUT",
        &format!("/api/v1/ca/{tag}"),
        Some(json!({"status": "DEACTIVATED"})),
    )
    .await;
    assert_eq!(raw.status, 200, "{raw:?}");
    let data = &raw.body["data"];
    // NAVER's 2022 client reads a flat CaInfo …
    assert_eq!(data["caTag"], tag.as_str());
    assert_eq!(data["status"], "DEACTIVATED");
    assert!(data["alias"].is_string() && data["signingCount"].is_number());
    // … the current docs a nested one.
    assert_eq!(data["caInfo"]["caTag"], tag.as_str());
    assert_eq!(data["caInfo"]["status"], "DEACTIVATED");
    assert!(
        data["caCertInfo"]["certPem"]
            .as_str()
            .is_some_and(|p| p.contains("BEGIN CERTIFICATE"))
    );
    still_answers(&emu).await;
}

#[tokio::test]
async fn strict_signing_refuses_a_path_only_signature_on_a_query_request_and_lenient_accepts_it() {
    for strict in [true, false] {
        let emu = start(|c| c.strict_signing = strict).await;
        let target = "/api/v1/ca?pageNo=1";
        let ts = now_ms();
        let creds = Credentials::new(AK, SK);
        let attempt = |header: &'static str, signed: &str| {
            let sig = creds.sign("GET", signed, &ts);
            let rb = reqwest::Client::new()
                .get(format!("{}{target}", emu.base_url()))
                .header(signing::HEADER_TIMESTAMP, &ts)
                .header(signing::HEADER_ACCESS_KEY, AK)
                .header(header, sig);
            async move { rb.send().await.unwrap().status().as_u16() }
        };
        let path_only_v2 = attempt(signing::HEADER_SIGNATURE_V2, "/api/v1/ca").await;
        let path_only_v1 = attempt(signing::HEADER_SIGNATURE_V1, "/api/v1/ca").await;
        let exact_v1 = attempt(signing::HEADER_SIGNATURE_V1, target).await;
        let exact_v2 = attempt(signing::HEADER_SIGNATURE_V2, target).await;
        if strict {
            assert_eq!((path_only_v2, path_only_v1, exact_v1), (401, 401, 401));
        } else {
            assert_eq!((path_only_v2, path_only_v1, exact_v1), (200, 200, 200));
        }
        assert_eq!(exact_v2, 200);
        still_answers(&emu).await;
    }
}

#[tokio::test]
async fn a_401_tells_a_signature_mismatch_from_a_clock_skew_in_its_details() {
    let emu = start(|c| c.strict_signing = true).await;
    let target = "/api/v1/ca";
    let http = reqwest::Client::new();
    let ts = now_ms();
    let wrong = Credentials::new(AK, "wrong").sign("GET", target, &ts);
    let resp = http
        .get(format!("{}{target}", emu.base_url()))
        .header(signing::HEADER_TIMESTAMP, &ts)
        .header(signing::HEADER_ACCESS_KEY, AK)
        .header(signing::HEADER_SIGNATURE_V2, wrong)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["error"]["details"]
            .as_str()
            .unwrap()
            .starts_with("signature mismatch"),
        "{body}"
    );
    let old = (ts.parse::<i64>().unwrap() - 600_000).to_string();
    let sig = Credentials::new(AK, SK).sign("GET", target, &old);
    let resp = http
        .get(format!("{}{target}", emu.base_url()))
        .header(signing::HEADER_TIMESTAMP, &old)
        .header(signing::HEADER_ACCESS_KEY, AK)
        .header(signing::HEADER_SIGNATURE_V2, sig)
        .send()
        .await
        .unwrap();
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["error"]["details"]
            .as_str()
            .unwrap()
            .starts_with("clock skew"),
        "{body}"
    );
    still_answers(&emu).await;
}

#[tokio::test]
async fn unrouted_paths_get_the_gateway_404() {
    let emu = start(|_| {}).await;
    for target in ["/api/v1/ca/t/nope", "/api/v1/ca/t/cert/x/y/z"] {
        let raw = send(&emu, "GET", target, None).await;
        assert_gateway(&raw, 404, "300", "Not Found Exception");
    }
    still_answers(&emu).await;
}
