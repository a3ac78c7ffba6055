//! Hostile endpoints and skewed clocks, end to end: a PrivateCA's `spec.endpoint` is set by namespace
//! users, so a second emulator of the test's own plays the hostile endpoint (redirects, HTML pages,
//! endless answers) or an NCP whose clock is ahead. Each test has its own emulator, so they run
//! concurrently with the others.

use crate::support;

use ncp_pca_issuer::emulator::FaultRule;
use ncp_pca_issuer::ncp::types::KeyType;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use support::{
    apply_issuer_on, certificate, client, dynamic, emulator_root_ca_on, events_about, eventually,
    issued_secret, issuer_condition, issuer_ref, namespace, operator, own_emulator,
    ready_issuer_on,
};

/// Text that a hostile endpoint serves; it must never be read back through our status or events.
const SECRET_TEXT: &str = "INTERNAL-PAGE-TEXT-0xC0FFEE";

/// A server that answers every connection with [`SECRET_TEXT`] in a JSON body, and counts them.
async fn secret_server() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let url = format!("http://{}/", listener.local_addr().expect("addr"));
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt as _;
        while let Ok((mut stream, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            let body = format!(r#"{{"code":"SUCCESS","msg":"{SECRET_TEXT}","data":null}}"#);
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(answer.as_bytes()).await;
        }
    });
    (url, hits)
}

/// The issuer's whole status and the events about it, as one text to search.
async fn everything_shown(client: &kube::Client, ns: &str, name: &str) -> String {
    let api = dynamic(
        client,
        Some(ns),
        "pca.ncp-issuer.dev",
        "v1alpha1",
        "PrivateCA",
        "privatecas",
    );
    let status = api
        .get(name)
        .await
        .map(|o| o.data["status"].to_string())
        .unwrap_or_default();
    let events = events_about(client, ns, name).await;
    format!("{status} {events:?}")
}

#[tokio::test]
async fn an_endpoint_that_redirects_is_not_followed_and_the_issuer_says_so_without_any_body_text() {
    let emu = own_emulator();
    operator();
    let client = client().await;
    let ns = namespace("hostile-redirect").await;
    let ca = emulator_root_ca_on(emu, KeyType::Ec256, 3650).await;
    let (target, hits) = secret_server().await;
    emu.add_fault(FaultRule::redirect(target));

    apply_issuer_on(emu, &client, &ns, "pca", false, &ca, serde_json::json!({})).await;
    let ready = issuer_condition(
        &client,
        Some(&ns),
        "PrivateCA",
        "pca",
        "False",
        "InvalidSpec",
    )
    .await;

    let message = ready["message"].as_str().unwrap_or_default();
    assert!(message.contains("redirect"), "{message}");
    assert!(message.contains("not followed"), "{message}");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "nobody connected to where the redirect pointed"
    );
    let shown = everything_shown(&client, &ns, "pca").await;
    assert!(!shown.contains(SECRET_TEXT), "{shown}");
}

#[tokio::test]
async fn an_endpoint_that_answers_an_html_page_is_described_and_none_of_the_page_is_shown() {
    let emu = own_emulator();
    operator();
    let client = client().await;
    let ns = namespace("hostile-html").await;
    let ca = emulator_root_ca_on(emu, KeyType::Ec256, 3650).await;
    emu.add_fault(FaultRule::non_json_body(format!(
        "<html><body>{SECRET_TEXT}</body></html>"
    )));

    apply_issuer_on(emu, &client, &ns, "pca", false, &ca, serde_json::json!({})).await;
    let ready = issuer_condition(&client, Some(&ns), "PrivateCA", "pca", "False", "NcpError").await;

    let message = ready["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("not json (content type text/html; charset=utf-8,"),
        "{message}"
    );
    let shown = everything_shown(&client, &ns, "pca").await;
    assert!(!shown.contains(SECRET_TEXT), "{shown}");
}

#[tokio::test]
async fn an_endless_answer_is_cut_off_and_the_issuer_reports_it() {
    let emu = own_emulator();
    operator();
    let client = client().await;
    let ns = namespace("hostile-huge").await;
    let ca = emulator_root_ca_on(emu, KeyType::Ec256, 3650).await;
    // 256 MiB, streamed without a length; the operator reads at most its default limit.
    emu.add_fault(FaultRule::huge_body(256 * 1024 * 1024));

    apply_issuer_on(emu, &client, &ns, "pca", false, &ca, serde_json::json!({})).await;
    let ready = issuer_condition(&client, Some(&ns), "PrivateCA", "pca", "False", "NcpError").await;

    let message = ready["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("is larger than the limit of 4194304 bytes"),
        "{message}"
    );
}

/// The Ready reasons a request of `ns` has shown so far, polled until it is Issued.
async fn issued_without_failing(
    client: &kube::Client,
    ns: &str,
    name: &str,
    within: Duration,
) -> Vec<String> {
    let crs = dynamic(
        client,
        Some(ns),
        "cert-manager.io",
        "v1",
        "CertificateRequest",
        "certificaterequests",
    );
    let mut seen: Vec<String> = Vec::new();
    let deadline = Instant::now() + within;
    loop {
        let list = crs.list(&Default::default()).await.expect("requests");
        for cr in &list.items {
            let reason = cr.data["status"]["conditions"]
                .as_array()
                .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
                .and_then(|c| c["reason"].as_str())
                .unwrap_or_default()
                .to_string();
            assert_ne!(reason, "Failed", "a request failed: {}", cr.data["status"]);
            if !reason.is_empty() && seen.last() != Some(&reason) {
                seen.push(reason.clone());
            }
            if reason == "Issued" {
                return seen;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{ns}/{name} not Issued within {within:?}; reasons seen: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn not_before_unix(tls_crt: &str) -> i64 {
    let (_, pem) = x509_parser::pem::parse_x509_pem(tls_crt.as_bytes()).expect("pem");
    let (_, cert) = x509_parser::parse_x509_certificate(&pem.contents).expect("parses");
    cert.validity().not_before.timestamp()
}

fn now_unix() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970");
    i64::try_from(now.as_secs()).expect("fits")
}

#[tokio::test]
async fn an_ncp_clock_2_s_ahead_is_within_the_tolerance_and_the_certificate_is_issued_at_once() {
    let emu = own_emulator();
    operator();
    let client = client().await;
    let ns = namespace("skew-2s").await;
    let ca = emulator_root_ca_on(emu, KeyType::Ec256, 3650).await;
    ready_issuer_on(emu, &client, &ns, "pca", false, &ca, serde_json::json!({})).await;
    emu.advance_clock(2_000);

    certificate(&client, &ns, "skew", serde_json::json!({
        "secretName": "skew-tls", "dnsNames": ["skew.example.com"], "privateKey": {"algorithm": "ECDSA"},
        "issuerRef": issuer_ref("pca", "PrivateCA")
    }))
    .await;
    let seen = issued_without_failing(&client, &ns, "skew", Duration::from_secs(60)).await;
    let (tls, _) = issued_secret(&client, &ns, "skew", "skew-tls").await;

    // Issued by the skewed NCP: its validity starts after our clock's now.
    let starts_in = not_before_unix(&tls) - now_unix();
    assert!((0..=3).contains(&starts_in), "starts in {starts_in} s");
    assert!(!seen.iter().any(|r| r == "Failed"), "{seen:?}");
    assert_eq!(emu.stats().issued_by(&ca), 1, "signed once");
}

#[tokio::test]
async fn an_ncp_clock_120_s_ahead_is_beyond_the_tolerance_so_the_request_waits_and_is_issued_with_one_signing()
 {
    // The shared operator's tolerance is 60 s (tests/support), its retry budget 60 s: the wait is not
    // bound by the budget.
    let emu = own_emulator();
    operator();
    let client = client().await;
    let ns = namespace("skew-120s").await;
    let ca = emulator_root_ca_on(emu, KeyType::Ec256, 3650).await;
    ready_issuer_on(emu, &client, &ns, "pca", false, &ca, serde_json::json!({})).await;
    emu.advance_clock(120_000);

    certificate(&client, &ns, "skew", serde_json::json!({
        "secretName": "skew-tls", "dnsNames": ["skew.example.com"], "privateKey": {"algorithm": "ECDSA"},
        "issuerRef": issuer_ref("pca", "PrivateCA")
    }))
    .await;
    let seen = issued_without_failing(&client, &ns, "skew", Duration::from_secs(150)).await;
    let (tls, _) = issued_secret(&client, &ns, "skew", "skew-tls").await;

    // Issued once the start was within the 60 s tolerance, not before.
    let starts_in = not_before_unix(&tls) - now_unix();
    assert!((0..=61).contains(&starts_in), "starts in {starts_in} s");
    assert!(
        seen.iter().any(|r| r == "Pending"),
        "the request waited: {seen:?}"
    );
    assert_eq!(
        emu.stats().issued_by(&ca),
        1,
        "read back, never signed again"
    );
    let crs = dynamic(
        &client,
        Some(&ns),
        "cert-manager.io",
        "v1",
        "CertificateRequest",
        "certificaterequests",
    );
    let list = crs.list(&Default::default()).await.expect("requests");
    let name = list.items[0].metadata.name.clone().unwrap_or_default();
    let events = events_about(&client, &ns, &name).await;
    assert!(
        events
            .iter()
            .any(|(reason, _)| reason == "CertificateNotYetValid"),
        "{events:?}"
    );
}

/// A token of a new ServiceAccount `ns/name`, from the TokenRequest API.
async fn service_account_token(client: &kube::Client, ns: &str, name: &str) -> String {
    use k8s_openapi::api::authentication::v1::TokenRequest;
    use k8s_openapi::api::core::v1::ServiceAccount;
    use kube::api::{Api, PostParams};
    let accounts = Api::<ServiceAccount>::namespaced(client.clone(), ns);
    let account: ServiceAccount =
        serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).expect("sa");
    accounts
        .create(&PostParams::default(), &account)
        .await
        .expect("service account created");
    let request: TokenRequest =
        serde_json::from_value(serde_json::json!({"spec": {"expirationSeconds": 600}}))
            .expect("token request");
    accounts
        .create_subresource::<_, TokenRequest>("token", name, &PostParams::default(), &request)
        .await
        .expect("token issued")
        .status
        .expect("token status")
        .token
}

#[tokio::test]
async fn authenticated_metrics_are_served_only_to_a_token_allowed_to_get_them_and_probes_stay_open()
{
    use k8s_openapi::api::rbac::v1::ClusterRole;
    use kube::api::{Api, PostParams};
    use ncp_pca_issuer::server::{self, MetricsAuth, ServerState};
    let client = client().await;
    let ns = namespace("metrics-auth").await;
    let role = format!("metrics-reader-{ns}");
    let _cleanup = support::ClusterRbac(role.clone());
    let reader: ClusterRole = serde_json::from_value(serde_json::json!({
        "metadata": {"name": role},
        "rules": [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]
    }))
    .expect("role");
    Api::<ClusterRole>::all(client.clone())
        .create(&PostParams::default(), &reader)
        .await
        .expect("role created");
    let allowed = service_account_token(&client, &ns, "scraper").await;
    let other = service_account_token(&client, &ns, "other").await;
    support::bind_cluster_role(&client, &role, &ns, "scraper").await;

    let state = ServerState {
        metrics_auth: Some(MetricsAuth::kubernetes(client.clone())),
        ..ServerState::default()
    };
    state.readiness.set_ready();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server::serve(listener, state, async {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::new();
    let scrape = |token: Option<&str>| {
        let mut request = http.get(format!("{base}/metrics"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move { request.send().await.expect("answers").status().as_u16() }
    };

    assert_eq!(scrape(None).await, 401, "no token");
    assert_eq!(scrape(Some("not-a-token")).await, 401, "unknown token");
    assert_eq!(
        scrape(Some(&other)).await,
        403,
        "authenticated, not allowed"
    );
    // RBAC bindings take a moment to reach the authorizer.
    eventually(
        "the scraper's binding to allow /metrics",
        Duration::from_secs(30),
        || async { (scrape(Some(&allowed)).await == 200).then_some(()) },
    )
    .await;
    for probe in ["/livez", "/readyz"] {
        let status = http
            .get(format!("{base}{probe}"))
            .send()
            .await
            .expect("answers")
            .status();
        assert_eq!(status, 200, "{probe} without a token");
    }
    let _ = stop.send(());
    let _ = serving.await;
}
