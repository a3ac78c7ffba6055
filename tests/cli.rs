//! The binary as users run it: `ncp-pca-issuer emulator` as a process, driven by `ncp-pca-issuer pca …`.

mod support;

use ncp_pca_issuer::devcluster::process::Supervised;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ncp-pca-issuer");
const AK: &str = "cli-access-key";
const SK: &str = "cli-secret-key";

struct Emulator {
    _process: Supervised,
    url: String,
    port: u16,
    log: std::path::PathBuf,
}

fn start_emulator(dir: &Path, state_file: Option<&Path>) -> Emulator {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut args = vec![
        "emulator".to_string(),
        "--listen".into(),
        format!("127.0.0.1:{port}"),
        "--access-key".into(),
        AK.into(),
        "--secret-key".into(),
        SK.into(),
        // Our own client must sign the exact path and query with -v2.
        "--strict-signing".into(),
    ];
    if let Some(path) = state_file {
        args.push("--state-file".into());
        args.push(path.display().to_string());
    }
    let log = dir.join(format!("emulator-{port}.log"));
    let process =
        Supervised::start("emulator", Path::new(BIN), &args, log.clone()).expect("emulator starts");
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "emulator did not listen: {}",
            process.log_tail(20)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Emulator {
        _process: process,
        url,
        port,
        log,
    }
}

fn pca(emu: &Emulator, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("pca")
        .args(args)
        .env("NCP_PCA_ENDPOINT", &emu.url)
        .env("NCLOUD_ACCESS_KEY", AK)
        .env("NCLOUD_SECRET_KEY", SK)
        .output()
        .expect("pca runs")
}

fn ok_json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "pca failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json on stdout")
}

#[test]
fn a_user_creates_a_ca_signs_a_csr_and_revokes_it_with_the_cli_against_the_emulator_process() {
    let dir = tempfile::tempdir().unwrap();
    let emu = start_emulator(dir.path(), None);

    let created = ok_json(&pca(
        &emu,
        &[
            "create",
            "--alias",
            "cliroot",
            "--common-name",
            "CLI Root",
            "--key-type",
            "RSA2048",
        ],
    ));
    let tag = created["caInfo"]["caTag"]
        .as_str()
        .expect("caTag")
        .to_string();
    assert_eq!(created["caInfo"]["status"], "ACTIVE");

    let listed = ok_json(&pca(&emu, &["list"]));
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["caInfo"]["caTag"] == tag.as_str())
    );

    let key = rcgen::KeyPair::generate().unwrap();
    let csr = rcgen::CertificateParams::new(vec!["cli.example.com".to_string()])
        .unwrap()
        .serialize_request(&key)
        .unwrap();
    std::fs::write(dir.path().join("req.csr"), csr.pem().unwrap()).unwrap();
    let signed = ok_json(&pca(
        &emu,
        &[
            "sign",
            &tag,
            "--csr",
            dir.path().join("req.csr").to_str().unwrap(),
            "--period",
            "30",
        ],
    ));
    let serial = signed["serialNo"].as_str().expect("serial").to_string();

    // --pem prints the certificate and its chain, ready for openssl.
    let pem = pca(&emu, &["cert", &tag, &serial, "--pem"]);
    assert!(pem.status.success());
    let chain = pca(&emu, &["chain", &tag, "--pem"]);
    std::fs::write(dir.path().join("bundle.pem"), &pem.stdout).unwrap();
    std::fs::write(dir.path().join("root.pem"), &chain.stdout).unwrap();
    let verify = Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(dir.path().join("root.pem"))
        .arg(dir.path().join("bundle.pem"))
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );

    ok_json(&pca(&emu, &["revoke", &tag, &serial]));
    let crl = pca(&emu, &["crl", &tag, "--pem"]);
    let crl_text = String::from_utf8(crl.stdout).unwrap();
    let (_, pem) = x509_parser::pem::parse_x509_pem(crl_text.as_bytes()).expect("crl pem");
    let (_, crl) = x509_parser::parse_x509_crl(&pem.contents).expect("crl");
    let hex: Vec<String> = crl
        .iter_revoked_certificates()
        .map(|r| {
            r.raw_serial()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":")
        })
        .collect();
    assert!(
        hex.iter()
            .any(|h| h.trim_start_matches("00:") == serial.trim_start_matches("00:")),
        "{serial} not in {hex:?}"
    );
}

#[test]
fn cli_errors_name_the_problem_and_never_show_the_secret_key() {
    let dir = tempfile::tempdir().unwrap();
    let emu = start_emulator(dir.path(), None);

    let missing = pca(&emu, &["get", "nosuch00-nosuch00"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("The CA doesn't exist."));

    let wrong = Command::new(BIN)
        .args(["pca", "list"])
        .env("NCP_PCA_ENDPOINT", &emu.url)
        .env("NCLOUD_ACCESS_KEY", AK)
        .env("NCLOUD_SECRET_KEY", "a-wrong-secret-value")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(!wrong.status.success());
    assert!(stderr.contains("Authentication Failed"), "{stderr}");
    assert!(!stderr.contains("a-wrong-secret-value"), "{stderr}");

    let no_creds = Command::new(BIN)
        .args(["pca", "list"])
        .env_remove("NCLOUD_ACCESS_KEY")
        .env_remove("NCLOUD_SECRET_KEY")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&no_creds.stderr).contains("missing credentials"));
}

/// `pca ARGS` with the given environment overrides (endpoint and keys default to the emulator's).
fn pca_with(emu: &Emulator, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("pca")
        .args(args)
        .env("NCP_PCA_ENDPOINT", &emu.url)
        .env("NCLOUD_ACCESS_KEY", AK)
        .env("NCLOUD_SECRET_KEY", SK);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("pca runs")
}

fn failed_with(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "succeeded: {stderr}");
    assert!(stderr.contains(needle), "{needle:?} not in {stderr}");
    assert!(!stderr.contains(SK), "{stderr}");
}

#[test]
fn cli_refuses_unusable_flags_and_says_what_to_check() {
    let dir = tempfile::tempdir().unwrap();
    let emu = start_emulator(dir.path(), None);

    failed_with(
        &pca(&emu, &["--timeout-secs", "0", "list"]),
        "--timeout-secs",
    );
    failed_with(
        &pca_with(&emu, &["list"], &[("NCLOUD_ACCESS_KEY", "")]),
        "missing credentials",
    );
    failed_with(
        &pca_with(&emu, &["list"], &[("NCLOUD_SECRET_KEY", " ")]),
        "missing credentials",
    );
    failed_with(
        &pca_with(&emu, &["list"], &[("NCLOUD_SECRET_KEY", "wrong-secret")]),
        "signature mismatch",
    );
    failed_with(
        &pca(&emu, &["--ca-bundle", "/nonexistent/bundle.pem", "list"]),
        "--ca-bundle /nonexistent/bundle.pem",
    );
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    failed_with(
        &pca(&emu, &["--ca-bundle", garbage.to_str().unwrap(), "list"]),
        "--ca-bundle",
    );
    let https = format!("https://127.0.0.1:{}", emu.port);
    failed_with(
        &pca_with(&emu, &["list"], &[("NCP_PCA_ENDPOINT", &https)]),
        "plain http",
    );
    failed_with(&pca(&emu, &["get", ".."]), "dot segment");
    failed_with(
        &pca(&emu, &["cert", "abcdefgh-abcdefgh", ".."]),
        "dot segment",
    );
    failed_with(&pca(&emu, &["get", "-o", "table", "x"]), "-o table");
}

#[test]
fn a_timeout_says_how_many_attempts_were_made_and_how_long_it_took() {
    let dir = tempfile::tempdir().unwrap();
    let emu = start_emulator(dir.path(), None);
    // Accepts connections (the kernel's backlog) and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let out = pca_with(
        &emu,
        &["--timeout-secs", "1", "list"],
        &[("NCP_PCA_ENDPOINT", &url)],
    );
    failed_with(&out, "gave up after 3 attempt(s) in ");
    failed_with(&out, "timed out after 1000 ms");
}

#[test]
fn list_prints_a_table_json_or_yaml() {
    let dir = tempfile::tempdir().unwrap();
    let emu = start_emulator(dir.path(), None);
    let created = ok_json(&pca(
        &emu,
        &[
            "create",
            "--alias",
            "tabled",
            "--common-name",
            "Tabled Root",
        ],
    ));
    let tag = created["caInfo"]["caTag"].as_str().unwrap().to_string();

    let table = pca(&emu, &["list", "-o", "table"]);
    assert!(table.status.success());
    let text = String::from_utf8(table.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    for column in [
        "TAG", "ALIAS", "TYPE", "STATUS", "KEY", "NOTAFTER", "SIGNED",
    ] {
        assert!(lines[0].contains(column), "{text}");
    }
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(row[0], tag);
    assert_eq!(&row[1..5], ["tabled", "PRIVATE_ROOT", "ACTIVE", "EC"]);
    assert!(row[5].ends_with('Z'), "{text}");
    assert_eq!(row[6], "0");

    let yaml = pca(&emu, &["list", "-o", "yaml"]);
    assert!(yaml.status.success());
    let text = String::from_utf8(yaml.stdout).unwrap();
    assert!(text.contains(&format!("caTag: {tag}")), "{text}");

    // Not a terminal: JSON unless asked otherwise.
    let listed = ok_json(&pca(&emu, &["list"]));
    assert_eq!(listed[0]["caInfo"]["caTag"], tag.as_str());
}

#[test]
fn emulator_logs_have_no_colour_in_a_file_name_unrouted_requests_and_a_taken_address() {
    use std::io::{Read as _, Write as _};
    let dir = tempfile::tempdir().unwrap();
    let emu = start_emulator(dir.path(), None);
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", emu.port)).unwrap();
    stream
        .write_all(b"GET /api/v1/nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let log = loop {
        let log = std::fs::read_to_string(&emu.log).unwrap_or_default();
        if log.contains("/api/v1/nowhere") || Instant::now() > deadline {
            break log;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        log.contains("no operation at this method and path"),
        "{log}"
    );
    assert!(!log.contains('\u{1b}'), "ANSI escapes in a log file: {log}");

    // A second emulator on the same address names it.
    let out = Command::new(BIN)
        .args(["emulator", "--listen"])
        .arg(format!("127.0.0.1:{}", emu.port))
        .args(["--access-key", AK, "--secret-key", SK])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!("cannot listen on 127.0.0.1:{}", emu.port)),
        "{stderr}"
    );
    assert!(!stderr.contains('\u{1b}'), "{stderr}");
}

#[test]
fn the_controller_names_the_http_address_it_cannot_listen_on() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // A kubeconfig is enough to build the client: nothing is asked of the API server before the
    // listener is bound.
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:1\nusers:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: x\n  context:\n    cluster: c\n    user: u\n    namespace: ns\ncurrent-context: x\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["controller", "--kubeconfig"])
        .arg(&kubeconfig)
        .arg("--http-addr")
        .arg(addr.to_string())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on {addr} (--http-addr)")),
        "{stderr}"
    );
    drop(taken);
}

#[test]
fn cas_survive_an_emulator_restart_with_a_state_file() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let tag = {
        let emu = start_emulator(dir.path(), Some(&state));
        ok_json(&pca(
            &emu,
            &["create", "--alias", "keptca", "--common-name", "Kept"],
        ))["caInfo"]["caTag"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let emu = start_emulator(dir.path(), Some(&state));
    let got = ok_json(&pca(&emu, &["get", &tag]));
    assert_eq!(got["caInfo"]["alias"], "keptca");
}

#[tokio::test]
async fn remove_finalizers_releases_every_request_that_carries_ours_and_keeps_other_finalizers() {
    use base64::Engine as _;
    let cluster = support::cluster();
    let client = support::client().await;
    let ns = support::namespace("cli-finalizers").await;
    let crs = support::dynamic(
        &client,
        Some(&ns),
        "cert-manager.io",
        "v1",
        "CertificateRequest",
        "certificaterequests",
    );
    let key = rcgen::KeyPair::generate().unwrap();
    let csr = rcgen::CertificateParams::new(vec!["f.example.com".to_string()])
        .unwrap()
        .serialize_request(&key)
        .unwrap();
    for (name, finalizers) in [
        (
            "ours",
            vec!["pca.ncp-issuer.dev/revoke", "example.com/keep"],
        ),
        ("theirs", vec!["example.com/keep"]),
    ] {
        support::apply(&crs, serde_json::json!({
            "apiVersion": "cert-manager.io/v1", "kind": "CertificateRequest",
            "metadata": {"name": name, "finalizers": finalizers},
            "spec": {"request": base64::engine::general_purpose::STANDARD.encode(csr.pem().unwrap()),
                     "issuerRef": {"group": "pca.ncp-issuer.dev", "kind": "PrivateCA", "name": "x"}}
        }))
        .await
        .expect("request");
    }

    let out = tokio::process::Command::new(BIN)
        .args(["remove-finalizers", "--kubeconfig"])
        .arg(cluster.kubeconfig_path())
        .output()
        .await
        .expect("runs");

    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("released {ns}/ours")));
    let finalizers = |name: &'static str| {
        let crs = crs.clone();
        async move {
            crs.get(name)
                .await
                .expect("request")
                .metadata
                .finalizers
                .unwrap_or_default()
        }
    };
    assert_eq!(
        finalizers("ours").await,
        vec!["example.com/keep".to_string()]
    );
    assert_eq!(
        finalizers("theirs").await,
        vec!["example.com/keep".to_string()]
    );
    // Let the namespace go away.
    for name in ["ours", "theirs"] {
        let patch = serde_json::json!({"metadata": {"finalizers": null}});
        crs.patch(
            name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .expect("cleared");
    }
}
