//! `ncp-pca-issuer pca conformance` as users run it (the binary, as a process) against our emulator:
//! it must pass read-only and with `--write --yes`, leave no CA behind, show exactly the signing
//! variants strict mode accepts, and report a failed cleanup with the steps to finish it by hand.

use ncp_pca_issuer::emulator::{self, EmulatorConfig, EmulatorHandle, FaultKind, FaultRule};
use ncp_pca_issuer::ncp::types::{CaType, KeyType, Period, X509Parameters};
use ncp_pca_issuer::ncp::{Client, ClientConfig, Credentials, NewCa, Operation};
use serde_json::Value;
use std::process::Output;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_ncp-pca-issuer");
const AK: &str = "conformance-access-key";
const SK: &str = "conformance-secret-key-0123456789";

async fn start(strict: bool) -> EmulatorHandle {
    ncp_pca_issuer::telemetry::install_crypto_provider();
    let mut config = EmulatorConfig::new(Credentials::new(AK, SK));
    config.strict_signing = strict;
    emulator::spawn(config).await.expect("emulator starts")
}

fn client(emu: &EmulatorHandle) -> Client {
    Client::new(ClientConfig::new(Credentials::new(AK, SK)).with_endpoint(emu.base_url()))
        .expect("client")
}

/// A root CA that has signed one certificate, for the read-only checks.
async fn ca_with_a_certificate(emu: &EmulatorHandle) -> String {
    let c = client(emu);
    let tag = c
        .create_ca(&NewCa {
            ca_type: CaType::PrivateRoot,
            issuer_tag: None,
            alias: "userroot".into(),
            memo: None,
            key_type: KeyType::Ec256,
            period: Period::Days(30),
            subject: X509Parameters {
                common_name: Some("User Root".into()),
                ..X509Parameters::default()
            },
        })
        .await
        .expect("CA created")
        .ca_info
        .ca_tag;
    let key = rcgen::KeyPair::generate().unwrap();
    let csr = rcgen::CertificateParams::new(vec!["a.example.com".to_string()])
        .unwrap()
        .serialize_request(&key)
        .unwrap();
    c.sign_end_csr(&tag, &csr.pem().unwrap(), Some(Period::Days(1)))
        .await
        .expect("signed");
    tag
}

async fn conformance(emu: &EmulatorHandle, args: &[&str]) -> Output {
    conformance_as(emu, (AK, SK), args).await
}

async fn conformance_as(emu: &EmulatorHandle, (ak, sk): (&str, &str), args: &[&str]) -> Output {
    let run = tokio::process::Command::new(BIN)
        .arg("pca")
        .arg("conformance")
        .args(args)
        .env("NCP_PCA_ENDPOINT", emu.base_url())
        .env("NCLOUD_ACCESS_KEY", ak)
        .env("NCLOUD_SECRET_KEY", sk)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("conformance finishes within 2 minutes")
        .expect("conformance runs")
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn report(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("json report ({e}): {}", text(out)))
}

fn section<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["sections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("no section {id}"))
}

fn deviations(report: &Value) -> Vec<String> {
    report["sections"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| {
            s["rows"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|r| r["verdict"] == "deviates")
                .map(move |r| {
                    format!(
                        "{}.{}: {} / {}",
                        s["id"], r["check"], r["expectation"], r["answer"]
                    )
                })
        })
        .collect()
}

async fn aliases(emu: &EmulatorHandle) -> Vec<String> {
    client(emu)
        .list_all_cas()
        .await
        .expect("list")
        .into_iter()
        .map(|c| c.ca_info.alias)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_read_only_and_the_write_run_pass_against_the_emulator_and_leave_no_ca_behind() {
    let emu = start(false).await;
    let tag = ca_with_a_certificate(&emu).await;

    let out = conformance(&emu, &["--ca-tag", &tag, "-o", "json"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let read = report(&out);
    assert_eq!(read["conforms"], true, "{:?}", deviations(&read));
    assert_eq!(read["mode"], "read-only");
    assert_eq!(
        section(&read, "get_end_cert")["rows"][0]["verdict"],
        "conforms"
    );
    // The lenient emulator accepts every variant.
    for row in section(&read, "signing_variants")["rows"]
        .as_array()
        .unwrap()
    {
        assert_eq!(row["answer"], "accepted", "{row}");
    }
    // Without --ca-tag the first ACTIVE CA is checked; the table is the default output.
    let out = conformance(&emu, &[]).await;
    assert!(out.status.success(), "{}", text(&out));
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        table.contains("== Get CA (GET /ca/") && table.contains("RESULT: conforms"),
        "{table}"
    );

    let out = conformance(&emu, &["--write", "--yes", "-o", "json"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let write = report(&out);
    assert_eq!(write["conforms"], true, "{:?}", deviations(&write));
    assert_eq!(write["cleanup"]["deleted"], true);
    let raw = out.stdout.clone();
    let shown = String::from_utf8_lossy(&raw);
    assert!(
        !shown.contains("-----BEGIN"),
        "a certificate or key is in the report"
    );
    assert!(!shown.contains(SK));
    assert_eq!(
        aliases(&emu).await,
        ["userroot"],
        "the throwaway CA is gone"
    );

    // Every guess the emulator lists is settled by a check the write run made.
    let names: Vec<String> = write["sections"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| {
            s["rows"].as_array().unwrap().iter().map(move |r| {
                format!(
                    "{}.{}",
                    s["id"].as_str().unwrap(),
                    r["check"].as_str().unwrap()
                )
            })
        })
        .collect();
    for d in emulator::DEVIATIONS {
        for check in d.settled_by {
            assert!(
                names.iter().any(|n| n == check),
                "{check} ({}) is not a check of the write run",
                d.guess
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_strict_signing_the_variant_table_shows_exactly_the_variant_strict_mode_accepts() {
    let emu = start(true).await;
    let tag = ca_with_a_certificate(&emu).await;
    let out = conformance(&emu, &["--ca-tag", &tag, "-o", "json"]).await;
    // Only the variants our client does not use are refused: the run still conforms.
    assert!(out.status.success(), "{}", text(&out));
    let r = report(&out);
    let rows: Vec<(String, bool)> = section(&r, "signing_variants")["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            (
                row["check"].as_str().unwrap().to_string(),
                row["answer"] == "accepted",
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("v2_path_and_query".to_string(), true),
            ("v2_path_only".to_string(), false),
            ("v1_path_and_query".to_string(), false),
            ("v1_path_only".to_string(), false),
        ]
    );
    let refused = &section(&r, "signing_variants")["rows"][3]["answer"];
    assert!(
        refused.as_str().unwrap().contains("Authentication Failed"),
        "{refused}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_on_delete_ca_is_reported_the_cleanup_steps_are_printed_and_the_exit_is_non_zero() {
    let emu = start(false).await;
    emu.add_fault(FaultRule::new(FaultKind::Error500).for_operation(Operation::DeleteCa));
    let out = conformance(&emu, &["--write", "--yes"]).await;
    assert!(!out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let left: Vec<String> = aliases(&emu).await;
    assert_eq!(left.len(), 1, "{left:?}");
    let cas = client(&emu).list_all_cas().await.unwrap();
    let tag = &cas[0].ca_info.ca_tag;
    assert!(stdout.contains("DEVIATES"), "{stdout}");
    assert!(stdout.contains("temporarily not available"), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "ncp-pca-issuer pca update {tag} --status DESTROYING"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("ncp-pca-issuer pca delete {tag}")),
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("the throwaway CA {tag} was not deleted")),
        "{stderr}"
    );

    // The printed steps work.
    emu.clear_faults();
    client(&emu).delete_ca(tag).await.expect("deleted by hand");
    assert!(aliases(&emu).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_without_yes_and_without_a_yes_on_stdin_creates_nothing() {
    let emu = start(false).await;
    let out = conformance(&emu, &["--write"]).await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--write not confirmed"),
        "{}",
        text(&out)
    );
    assert!(aliases(&emu).await.is_empty());
    assert_eq!(emu.stats().calls(Operation::CreateCa).total, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_key_conforms_read_only_and_its_write_run_names_the_denied_operation_and_creates_nothing()
 {
    ncp_pca_issuer::telemetry::install_crypto_provider();
    let mut config = EmulatorConfig::new(Credentials::new(AK, SK));
    config.viewer_credentials = Some(Credentials::new("viewer-key", "viewer-secret"));
    let emu = emulator::spawn(config).await.expect("emulator starts");
    let tag = ca_with_a_certificate(&emu).await;
    let viewer = ("viewer-key", "viewer-secret");
    let out = conformance_as(&emu, viewer, &["--ca-tag", &tag, "-o", "json"]).await;
    assert!(out.status.success(), "{}", text(&out));

    let out = conformance_as(&emu, viewer, &["--write", "--yes", "-o", "json"]).await;
    assert!(!out.status.success(), "{}", text(&out));
    let r = report(&out);
    let create = &section(&r, "write.create_ca")["rows"][0];
    assert_eq!(create["check"], "envelope");
    assert!(
        create["answer"]
            .as_str()
            .unwrap()
            .contains("permission denied"),
        "{create}"
    );
    assert!(r.get("cleanup").is_none(), "nothing was created: {r}");
    assert_eq!(aliases(&emu).await, ["userroot"]);
}
