//! The operator as it runs in production: the `ncp-pca-issuer controller` binary as a child process
//! (never the in-process `support::operator()`), killed with SIGKILL mid-batch, run twice behind
//! leader election, run under a restricted RBAC identity, and through a forced renewal.
//!
//! Every operator process watches the whole cluster, so the tests run one at a time (on
//! `OPERATOR_PROCESS_TURN`, with the chart's operator test) and each stops its processes before the
//! next starts. Each test has an emulator of its own, for its faults and call counts.

use crate::support;

use k8s_openapi::api::authorization::v1::SubjectAccessReview;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use ncp_pca_issuer::devcluster::process::{Supervised, tail};
use ncp_pca_issuer::emulator::{FaultKind, FaultRule};
use ncp_pca_issuer::ncp::Operation;
use ncp_pca_issuer::ncp::types::KeyType;
use ncp_pca_issuer::pki::Serial;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::{
    CLUSTER_RESOURCE_NAMESPACE, certificate, client, cluster, dynamic, emulator_root_ca_on,
    eventually, issued_secret, issuer_ref, namespace, ncp_client_on, openssl_verify, own_emulator,
    ready_issuer_on,
};

const OPERATOR_BIN: &str = env!("CARGO_BIN_EXE_ncp-pca-issuer");
const SIGNING_STARTED: &str = "pca.ncp-issuer.dev/signing-started";
const SERIAL: &str = "pca.ncp-issuer.dev/serial";
const REVOKE_FINALIZER: &str = "pca.ncp-issuer.dev/revoke";

/// How the operator process is started.
pub(crate) struct Options<'a> {
    /// Goes into `POD_NAME`, so the process identity (Lease holder, events' reportingInstance) starts
    /// with it.
    pub(crate) name: &'a str,
    pub(crate) kubeconfig: PathBuf,
    /// `(namespace, lease name)` for `--leader-elect=true`; `None` runs without leader election.
    pub(crate) lease: Option<(&'a str, &'a str)>,
    pub(crate) ncp_timeout_seconds: u64,
}

impl<'a> Options<'a> {
    pub(crate) fn admin(name: &'a str) -> Self {
        Self {
            name,
            kubeconfig: cluster().kubeconfig_path().to_path_buf(),
            lease: None,
            ncp_timeout_seconds: 2,
        }
    }
}

/// `ncp-pca-issuer controller` running under the devcluster watchdog (it dies with this test binary);
/// its log is printed when a test fails while it is in scope.
pub(crate) struct OperatorProcess {
    name: String,
    process: Supervised,
    /// The operator's own pid (the watchdog's child), for SIGKILL.
    pub(crate) pid: u32,
    pub(crate) http_port: u16,
}

impl OperatorProcess {
    pub(crate) async fn start(options: Options<'_>) -> Self {
        let http_port = free_port();
        let log = cluster()
            .work_dir()
            .join("logs")
            .join(format!("operator-{}-{http_port}.log", options.name));
        let mut args: Vec<String> = vec![
            format!("POD_NAME={}", options.name),
            OPERATOR_BIN.into(),
            "controller".into(),
            "--kubeconfig".into(),
            options.kubeconfig.display().to_string(),
            "--cluster-resource-namespace".into(),
            CLUSTER_RESOURCE_NAMESPACE.into(),
            "--http-addr".into(),
            format!("127.0.0.1:{http_port}"),
            "--issuer-recheck-seconds".into(),
            "10".into(),
            "--ncp-timeout-seconds".into(),
            options.ncp_timeout_seconds.to_string(),
            "--max-retry-seconds".into(),
            "120".into(),
        ];
        match options.lease {
            Some((ns, lease)) => args.extend([
                "--leader-elect=true".into(),
                "--leader-election-namespace".into(),
                ns.into(),
                "--leader-election-lease".into(),
                lease.into(),
            ]),
            None => args.push("--leader-elect=false".into()),
        }
        // `env` execs the operator, so the watchdog's child is the operator itself.
        let process = Supervised::start(options.name, Path::new("env"), &args, log)
            .expect("operator process starts");
        let mut operator = Self {
            name: options.name.to_string(),
            pid: 0,
            process,
            http_port,
        };
        operator.pid = operator.wait_for_pid().await;
        operator.wait_live().await;
        operator
    }

    async fn wait_for_pid(&mut self) -> u32 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(pid) = child_running(self.process.pid(), OPERATOR_BIN) {
                return pid;
            }
            self.assert_running();
            assert!(
                Instant::now() < deadline,
                "operator {} never appeared under its watchdog",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn wait_live(&mut self) {
        let url = format!("http://127.0.0.1:{}/livez", self.http_port);
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            self.assert_running();
            let ok = http
                .get(&url)
                .timeout(Duration::from_secs(1))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "operator {} never answered {url}",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn assert_running(&mut self) {
        if let Some(status) = self.process.exited() {
            panic!(
                "operator {} exited ({status}):\n{}",
                self.name,
                self.process.log_tail(40)
            );
        }
    }

    /// SIGKILL to the operator's pid (no graceful shutdown, no Lease release), then waits for it to be
    /// gone.
    async fn kill(&mut self) {
        let status = std::process::Command::new("kill")
            .args(["-KILL", &self.pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -KILL {} failed", self.pid);
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.process.exited().is_none() {
            assert!(
                Instant::now() < deadline,
                "operator {} still running after SIGKILL",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.process.log()).unwrap_or_default()
    }

    /// The value of the `leader` gauge on `/metrics`.
    async fn leader_gauge(&self) -> Option<String> {
        let text = reqwest::get(format!("http://127.0.0.1:{}/metrics", self.http_port))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .find(|l| l.starts_with("ncp_pca_issuer_leader "))
            .and_then(|l| l.rsplit(' ').next())
            .map(str::to_string)
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "----- operator {} (pid {}) log tail -----\n{}\n-----",
                self.name,
                self.pid,
                tail(self.process.log(), 60)
            );
        }
        self.process.stop();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The pid of the child of `parent` whose argv[0] is `program` (found through /proc, never by name).
fn child_running(parent: u32, program: &str) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.find_map(|entry| {
        let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // `pid (comm) state ppid …`; comm may hold spaces and parentheses.
        let ppid: u32 = stat
            .rsplit_once(')')?
            .1
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        if ppid != parent {
            return None;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let argv0 = cmdline.split(|b| *b == 0).next()?;
        (argv0 == program.as_bytes()).then_some(pid)
    })
}

fn requests_api(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    dynamic(
        client,
        Some(ns),
        "cert-manager.io",
        "v1",
        "CertificateRequest",
        "certificaterequests",
    )
}

fn certificates_api(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    dynamic(
        client,
        Some(ns),
        "cert-manager.io",
        "v1",
        "Certificate",
        "certificates",
    )
}

fn is_ready(object: &DynamicObject) -> bool {
    object.data["status"]["conditions"]
        .as_array()
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

fn annotation<'a>(object: &'a DynamicObject, key: &str) -> Option<&'a str> {
    object
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

fn leaf_der(tls_crt: &str) -> Vec<u8> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(tls_crt.as_bytes()).expect("pem");
    pem.contents
}

fn serial_of(tls_crt: &str) -> Vec<u8> {
    let der = leaf_der(tls_crt);
    let (_, cert) = x509_parser::parse_x509_certificate(&der).expect("parses");
    cert.raw_serial().to_vec()
}

/// The leaf's serial in NCP's text form (lowercase colon hex, no leading zero octet), as the operator
/// records it in the serial annotation.
fn ncp_serial(serial: &[u8]) -> String {
    Serial::from_bytes(serial).expect("serial").to_colon_hex()
}

/// Whether `serial` is in the CA's CRL, after a rotation.
async fn in_crl(
    emu: &ncp_pca_issuer::emulator::EmulatorHandle,
    ca: &str,
    serial: &[u8],
) -> Option<bool> {
    let ncp = ncp_client_on(emu);
    ncp.rotate_crl(ca).await.ok()?;
    let crl = ncp.get_ca_crl(ca).await.ok()?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(crl.as_bytes()).ok()?;
    let (_, crl) = x509_parser::parse_x509_crl(&pem.contents).ok()?;
    Some(
        crl.iter_revoked_certificates()
            .any(|r| r.raw_serial() == serial),
    )
}

/// The Secret's `tls.crt` (empty when missing).
async fn tls_crt(client: &kube::Client, ns: &str, secret: &str) -> String {
    use k8s_openapi::api::core::v1::Secret;
    Api::<Secret>::namespaced(client.clone(), ns)
        .get_opt(secret)
        .await
        .ok()
        .flatten()
        .and_then(|s| s.data)
        .and_then(|d| d.get("tls.crt").map(|b| b.0.clone()))
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_default()
}

/// Events our controllers published in `ns`: `(reason, reportingInstance, regarding name)`.
async fn our_events(client: &kube::Client, ns: &str) -> Vec<(String, String, String)> {
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), ns);
    events
        .list(&Default::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter(|e| e.reporting_controller.as_deref() == Some("ncp-pca-issuer"))
        .map(|e| {
            (
                e.reason.unwrap_or_default(),
                e.reporting_instance.unwrap_or_default(),
                e.regarding.and_then(|r| r.name).unwrap_or_default(),
            )
        })
        .collect()
}

async fn lease_holder(client: &kube::Client, ns: &str, name: &str) -> Option<String> {
    Api::<Lease>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
        .filter(|h| !h.is_empty())
}

#[tokio::test]
async fn killing_the_controller_while_a_batch_is_being_issued_and_starting_it_again_leaves_every_certificate_ready_without_duplicates()
 {
    const COUNT: usize = 10;
    let _serial = crate::OPERATOR_PROCESS_TURN.lock().await;
    let emu = own_emulator();
    let client = client().await;
    let ns = namespace("proc-kill").await;
    let ca = emulator_root_ca_on(emu, KeyType::Ec256, 3650).await;
    let mut first = OperatorProcess::start(Options::admin("kill-first")).await;
    ready_issuer_on(emu, &client, &ns, "pca", false, &ca, serde_json::json!({})).await;
    // Every signing takes a second (under the 2 s NCP timeout), so the batch is in flight for a while;
    // the first three take effect in NCP and never answer, so the kill also strands certificates that
    // exist in NCP but are recorded nowhere.
    emu.add_fault(FaultRule::latency(1000).for_operation(Operation::SignEndCsr));
    emu.add_fault(
        FaultRule::new(FaultKind::CommitThenLoseResponse)
            .for_operation(Operation::SignEndCsr)
            .times(3),
    );
    let lost_before = emu.stats().calls(Operation::SignEndCsr).lost;

    for i in 0..COUNT {
        certificate(
            &client,
            &ns,
            &format!("c{i}"),
            serde_json::json!({
                "secretName": format!("c{i}-tls"), "dnsNames": [format!("c{i}.example.com")],
                "privateKey": {"algorithm": "ECDSA"}, "issuerRef": issuer_ref("pca", "PrivateCA")
            }),
        )
        .await;
    }
    let crs = requests_api(&client, &ns);
    let (issued, in_flight) = eventually(
        "some requests issued, others being signed, three signed without an answer",
        Duration::from_secs(120),
        || async {
            let stranded = emu.stats().calls(Operation::SignEndCsr).lost - lost_before;
            if stranded < 3 {
                return None;
            }
            let list = crs.list(&Default::default()).await.ok()?;
            let issued = list.items.iter().filter(|r| is_ready(r)).count();
            let in_flight = list
                .items
                .iter()
                .filter(|r| {
                    annotation(r, SIGNING_STARTED).is_some() && annotation(r, SERIAL).is_none()
                })
                .count();
            (issued >= 1 && in_flight >= 1).then_some((issued, in_flight))
        },
    )
    .await;
    first.kill().await;
    eprintln!("killed the operator with {issued} requests issued and {in_flight} being signed");
    assert!(issued < COUNT, "the kill came after the whole batch");

    let second = OperatorProcess::start(Options::admin("kill-second")).await;
    for i in 0..COUNT {
        let (tls, ca_crt) =
            issued_secret(&client, &ns, &format!("c{i}"), &format!("c{i}-tls")).await;
        openssl_verify(&tls, &ca_crt).unwrap_or_else(|e| panic!("c{i} does not verify: {e}"));
    }

    assert_eq!(
        emu.stats().issued_by(&ca),
        COUNT as u64,
        "exactly one certificate per request across the kill"
    );
    let requests = crs.list(&Default::default()).await.expect("requests").items;
    assert_eq!(requests.len(), COUNT, "one request per Certificate");
    let mut serials: Vec<&str> = requests
        .iter()
        .map(|r| annotation(r, SERIAL).expect("every request records its serial"))
        .collect();
    serials.sort_unstable();
    serials.dedup();
    assert_eq!(serials.len(), COUNT, "distinct serials");
    let recovered = second.log().matches("recovered a certificate").count();
    eprintln!("recovered by public key after the restart: {recovered}");
    assert!(
        recovered >= 1,
        "the restarted operator recovered none of the certificates signed without an answer"
    );
}

#[tokio::test]
async fn two_controllers_running_at_once_only_the_leader_writes() {
    let _serial = crate::OPERATOR_PROCESS_TURN.lock().await;
    let emu = own_emulator();
    let client = client().await;
    let ns = namespace("proc-leader").await;
    let lease = format!("leader-{ns}");
    let ca = emulator_root_ca_on(emu, KeyType::Ec256, 3650).await;
    let elect = |name| Options {
        lease: Some((ns.as_str(), lease.as_str())),
        ..Options::admin(name)
    };
    let mut a = Some(OperatorProcess::start(elect("elect-a")).await);
    let mut b = Some(OperatorProcess::start(elect("elect-b")).await);

    let holder = eventually("a Lease holder", Duration::from_secs(60), || {
        lease_holder(&client, &ns, &lease)
    })
    .await;
    let (leader_slot, follower_slot) = if holder.starts_with("elect-a_") {
        (&mut a, &mut b)
    } else {
        assert!(
            holder.starts_with("elect-b_"),
            "the Lease is held by {holder}, neither of ours"
        );
        (&mut b, &mut a)
    };
    let leader_name = leader_slot.as_ref().map(|p| p.name.clone()).unwrap();
    let follower_name = follower_slot.as_ref().map(|p| p.name.clone()).unwrap();
    ready_issuer_on(emu, &client, &ns, "pca", false, &ca, serde_json::json!({})).await;
    for i in 0..3 {
        certificate(
            &client,
            &ns,
            &format!("l{i}"),
            serde_json::json!({
                "secretName": format!("l{i}-tls"), "dnsNames": [format!("l{i}.example.com")],
                "privateKey": {"algorithm": "ECDSA"}, "issuerRef": issuer_ref("pca", "PrivateCA")
            }),
        )
        .await;
    }
    for i in 0..3 {
        let (tls, ca_crt) =
            issued_secret(&client, &ns, &format!("l{i}"), &format!("l{i}-tls")).await;
        openssl_verify(&tls, &ca_crt).expect("verifies");
    }
    assert_eq!(emu.stats().issued_by(&ca), 3, "no double signing");

    // Exactly one leads: the Lease did not move, one gauge says 1, the other 0, and every event our
    // controllers published came from the leader's identity.
    assert_eq!(
        lease_holder(&client, &ns, &lease).await.as_deref(),
        Some(holder.as_str())
    );
    let leader = leader_slot.as_ref().unwrap();
    let follower = follower_slot.as_ref().unwrap();
    assert_eq!(leader.leader_gauge().await.as_deref(), Some("1"));
    assert_eq!(follower.leader_gauge().await.as_deref(), Some("0"));
    assert!(
        !follower.log().contains("leading: starting controllers"),
        "the follower started its controllers:\n{}",
        follower.log()
    );
    let events = eventually(
        "an Issued event per request",
        Duration::from_secs(30),
        || async {
            let events = our_events(&client, &ns).await;
            let issued = events.iter().filter(|(r, _, _)| r == "Issued").count();
            (issued >= 3).then_some(events)
        },
    )
    .await;
    assert!(
        events.iter().all(|(_, instance, _)| *instance == holder),
        "an event not from the leader {holder}: {events:?}"
    );

    // The leader dies without releasing the Lease: the follower takes over once it expires and issues.
    leader_slot.as_mut().unwrap().kill().await;
    drop(leader_slot.take());
    let new_holder = eventually(
        "the follower to take the Lease",
        Duration::from_secs(60),
        || async {
            lease_holder(&client, &ns, &lease)
                .await
                .filter(|h| *h != holder)
        },
    )
    .await;
    assert!(
        new_holder.starts_with(&format!("{follower_name}_")),
        "the Lease went to {new_holder}, not the follower {follower_name} (leader was {leader_name})"
    );
    certificate(
        &client,
        &ns,
        "after",
        serde_json::json!({
            "secretName": "after-tls", "dnsNames": ["after.example.com"],
            "privateKey": {"algorithm": "ECDSA"}, "issuerRef": issuer_ref("pca", "PrivateCA")
        }),
    )
    .await;
    let (tls, ca_crt) = issued_secret(&client, &ns, "after", "after-tls").await;
    openssl_verify(&tls, &ca_crt).expect("verifies");
    assert_eq!(emu.stats().issued_by(&ca), 4);
    let crs = requests_api(&client, &ns);
    let after_request = crs
        .list(&Default::default())
        .await
        .expect("requests")
        .items
        .into_iter()
        .find(|r| {
            r.metadata
                .owner_references
                .as_ref()
                .is_some_and(|o| o.iter().any(|o| o.name == "after"))
        })
        .and_then(|r| r.metadata.name)
        .expect("the new request");
    let events = eventually(
        "the Issued event of the new request",
        Duration::from_secs(30),
        || async {
            let events = our_events(&client, &ns).await;
            events
                .iter()
                .any(|(r, _, name)| r == "Issued" && *name == after_request)
                .then_some(events)
        },
    )
    .await;
    for (reason, instance, name) in &events {
        if *name == after_request {
            assert_eq!(
                *instance, new_holder,
                "{reason} on the new request from someone else"
            );
        }
    }
    assert_eq!(
        follower_slot
            .as_ref()
            .unwrap()
            .leader_gauge()
            .await
            .as_deref(),
        Some("1")
    );
}

#[tokio::test]
async fn a_renewed_certificate_gets_a_new_certificate_in_its_secret_and_the_old_one_is_not_revoked_while_the_certificate_lives()
 {
    let _serial = crate::OPERATOR_PROCESS_TURN.lock().await;
    let emu = own_emulator();
    let client = client().await;
    let ns = namespace("proc-renew").await;
    let ca = emulator_root_ca_on(emu, KeyType::Ec256, 3650).await;
    let _operator = OperatorProcess::start(Options::admin("renew")).await;
    // The default revocation policy: OnCertificateDeletion.
    ready_issuer_on(emu, &client, &ns, "pca", false, &ca, serde_json::json!({})).await;
    certificate(&client, &ns, "renewed", serde_json::json!({
        "secretName": "renewed-tls", "dnsNames": ["renewed.example.com"], "revisionHistoryLimit": 1,
        "privateKey": {"algorithm": "ECDSA", "rotationPolicy": "Always"},
        "issuerRef": issuer_ref("pca", "PrivateCA")
    }))
    .await;
    let (first_tls, _) = issued_secret(&client, &ns, "renewed", "renewed-tls").await;
    let old_serial = serial_of(&first_tls);
    let crs = requests_api(&client, &ns);
    let first_requests = crs.list(&Default::default()).await.expect("requests").items;
    assert_eq!(first_requests.len(), 1);
    let first_request = first_requests[0].metadata.name.clone().expect("name");
    assert!(
        first_requests[0]
            .metadata
            .finalizers
            .as_ref()
            .is_some_and(|f| f.iter().any(|f| f == REVOKE_FINALIZER)),
        "the first request holds the revocation finalizer, so its deletion is ours to judge"
    );

    trigger_renewal(&client, &ns, "renewed").await;

    let new_tls = eventually(
        "a new certificate in the Secret",
        Duration::from_secs(120),
        || async {
            let tls = tls_crt(&client, &ns, "renewed-tls").await;
            (!tls.is_empty() && serial_of(&tls) != old_serial).then_some(tls)
        },
    )
    .await;
    let (tls, ca_crt) = issued_secret(&client, &ns, "renewed", "renewed-tls").await;
    assert_eq!(serial_of(&tls), serial_of(&new_tls));
    openssl_verify(&tls, &ca_crt).expect("the new certificate verifies");
    // revisionHistoryLimit 1: cert-manager deletes the first request; our finalizer must let it go
    // without revoking, since the Certificate lives.
    eventually(
        "the first request to be deleted (revisionHistoryLimit 1)",
        Duration::from_secs(90),
        || async {
            let list = crs.list(&Default::default()).await.ok()?;
            list.items
                .iter()
                .all(|r| r.metadata.name.as_deref() != Some(first_request.as_str()))
                .then_some(())
        },
    )
    .await;

    assert_eq!(
        in_crl(emu, &ca, &old_serial).await,
        Some(false),
        "the old certificate was revoked while its Certificate lives"
    );
    assert_eq!(
        emu.certificate_revoked(&ca, &ncp_serial(&old_serial)),
        Some(false)
    );
    assert_eq!(in_crl(emu, &ca, &serial_of(&tls)).await, Some(false));
    assert_eq!(emu.stats().issued_by(&ca), 2);
}

/// What `cmctl renew` does: sets `Issuing=True/ManuallyTriggered` on the Certificate's status with an
/// update of the status subresource.
async fn trigger_renewal(client: &kube::Client, ns: &str, name: &str) {
    let certs = certificates_api(client, ns);
    eventually(
        "the renewal to be triggered",
        Duration::from_secs(30),
        || async {
            let mut cert = certs.get(name).await.ok()?;
            let generation = cert.metadata.generation;
            let condition = serde_json::json!({
                "type": "Issuing", "status": "True", "reason": "ManuallyTriggered",
                "message": "Certificate re-issuance manually triggered",
                "lastTransitionTime": k8s_openapi::jiff::Timestamp::now().round(k8s_openapi::jiff::Unit::Second).ok()?.to_string(),
                "observedGeneration": generation,
            });
            let conditions = cert.data["status"]["conditions"].as_array_mut()?;
            conditions.retain(|c| c["type"] != "Issuing");
            conditions.push(condition);
            // A conflict (cert-manager wrote meanwhile) is retried with a fresh read.
            certs
                .replace_status(name, &PostParams::default(), &cert)
                .await
                .ok()
                .map(|_| ())
        },
    )
    .await;
}

/// RBAC rules the operator needs, each with why; `with_status_write` adds `patch` on
/// `certificaterequests/status`.
fn operator_rules(with_status_write: bool) -> serde_json::Value {
    let mut rules = vec![
        // The issuer controllers watch the issuers and read them for each request.
        serde_json::json!({"apiGroups": ["pca.ncp-issuer.dev"], "resources": ["privatecas", "clusterprivatecas"], "verbs": ["get", "list", "watch"]}),
        // Issuer status by server-side apply.
        serde_json::json!({"apiGroups": ["pca.ncp-issuer.dev"], "resources": ["privatecas/status", "clusterprivatecas/status"], "verbs": ["patch"]}),
        // Requests: watched; patched for the signing marker, the serial and the revocation finalizer.
        serde_json::json!({"apiGroups": ["cert-manager.io"], "resources": ["certificaterequests"], "verbs": ["get", "list", "watch", "patch"]}),
        // Revocation: is the owning Certificate still there?
        serde_json::json!({"apiGroups": ["cert-manager.io"], "resources": ["certificates"], "verbs": ["get"]}),
        // Credentials, and the served certificate for revocation decisions; watched (metadata) to
        // re-check issuers when their credentials change.
        serde_json::json!({"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch"]}),
        // The event recorder.
        serde_json::json!({"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]}),
    ];
    if with_status_write {
        // Request status (Ready, certificate, ca) by server-side apply.
        rules.push(serde_json::json!({"apiGroups": ["cert-manager.io"], "resources": ["certificaterequests/status"], "verbs": ["patch"]}));
    }
    serde_json::Value::Array(rules)
}

async fn apply_cluster_role(client: &kube::Client, name: &str, with_status_write: bool) {
    let role: ClusterRole = serde_json::from_value(serde_json::json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": name}, "rules": operator_rules(with_status_write)
    }))
    .expect("cluster role");
    Api::<ClusterRole>::all(client.clone())
        .patch(
            name,
            &PatchParams::apply("ncp-pca-issuer-tests").force(),
            &Patch::Apply(&role),
        )
        .await
        .expect("cluster role applied");
}

/// Whether the API server's authorizer lets `user` patch request status in `ns` right now.
async fn may_write_request_status(client: &kube::Client, user: &str, ns: &str) -> bool {
    let review: SubjectAccessReview = serde_json::from_value(serde_json::json!({
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": user, "groups": ["system:serviceaccounts", "system:authenticated"],
                 "resourceAttributes": {"namespace": ns, "verb": "patch", "group": "cert-manager.io",
                                        "resource": "certificaterequests", "subresource": "status"}}
    }))
    .expect("review");
    Api::<SubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .expect("subject access review")
        .status
        .is_some_and(|s| s.allowed)
}

/// The status write that follows signing is refused by RBAC. The operator cannot lack the permission
/// from the start: its first touch of a request is a status write (`Ready=Unknown/Initializing`), and
/// it signs nothing before that. So the permission is withdrawn while the signing call is in flight
/// (NCP answers after 4 s), checked with a SubjectAccessReview before the answer arrives, and given
/// back once the refusals are seen.
#[tokio::test]
async fn a_failed_status_write_after_signing_still_ends_issued_with_exactly_one_certificate() {
    let _serial = crate::OPERATOR_PROCESS_TURN.lock().await;
    let emu = own_emulator();
    let client = client().await;
    let ns = namespace("proc-status").await;
    let ca = emulator_root_ca_on(emu, KeyType::Ec256, 3650).await;

    // A restricted identity: a ServiceAccount bound to a ClusterRole with what the operator needs.
    let sa = "restricted-operator";
    Api::<ServiceAccount>::namespaced(client.clone(), &ns)
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": sa}})).expect("sa"),
        )
        .await
        .expect("service account");
    let role = format!("ncp-pca-issuer-{ns}");
    let _rbac = support::ClusterRbac(role.clone());
    apply_cluster_role(&client, &role, true).await;
    support::bind_cluster_role(&client, &role, &ns, sa).await;
    let user = format!("system:serviceaccount:{ns}:{sa}");
    let kubeconfig = support::service_account_kubeconfig(&client, &ns, sa).await;
    let operator = OperatorProcess::start(Options {
        kubeconfig,
        // Room for a 4 s signing call, the window in which the permission is taken away.
        ncp_timeout_seconds: 10,
        ..Options::admin("restricted")
    })
    .await;
    // The restricted identity is enough for the issuer to turn Ready.
    ready_issuer_on(emu, &client, &ns, "pca", false, &ca, serde_json::json!({})).await;
    emu.add_fault(FaultRule::latency(4000).for_operation(Operation::SignEndCsr));

    certificate(
        &client,
        &ns,
        "denied-status",
        serde_json::json!({
            "secretName": "denied-status-tls", "dnsNames": ["denied-status.example.com"],
            "privateKey": {"algorithm": "ECDSA"}, "issuerRef": issuer_ref("pca", "PrivateCA")
        }),
    )
    .await;
    let crs = requests_api(&client, &ns);
    let request = eventually(
        "the operator to start signing",
        Duration::from_secs(60),
        || async {
            let list = crs.list(&Default::default()).await.ok()?;
            let r = list.items.first()?;
            annotation(r, SIGNING_STARTED).and(r.metadata.name.clone())
        },
    )
    .await;
    // While NCP is signing, the operator loses the right to write request status.
    apply_cluster_role(&client, &role, false).await;
    eventually(
        "the authorizer to deny the status write",
        Duration::from_secs(10),
        || async { (!may_write_request_status(&client, &user, &ns).await).then_some(()) },
    )
    .await;
    let cr = crs.get(&request).await.expect("request");
    assert!(
        annotation(&cr, SERIAL).is_none() && !is_ready(&cr),
        "the signing call finished before the permission was withdrawn; the test proves nothing"
    );

    let serial = eventually(
        "the serial annotation (signed, status not written)",
        Duration::from_secs(30),
        || async {
            let cr = crs.get(&request).await.ok()?;
            annotation(&cr, SERIAL).map(str::to_string)
        },
    )
    .await;
    // At least two refused status writes: the first after signing, then a retry that recovers by
    // serial instead of signing again.
    eventually(
        "two refused status writes in the operator's log",
        Duration::from_secs(30),
        || async {
            let refused = operator
                .log()
                .lines()
                .filter(|l| {
                    l.contains(&format!(
                        "write status of CertificateRequest {ns}/{request}"
                    )) && l.contains("forbidden")
                })
                .count();
            (refused >= 2).then_some(())
        },
    )
    .await;
    let cr = crs.get(&request).await.expect("request");
    assert!(!is_ready(&cr), "Ready without the right to write status?");
    assert_eq!(emu.stats().issued_by(&ca), 1);

    apply_cluster_role(&client, &role, true).await;
    let (tls, ca_crt) = issued_secret(&client, &ns, "denied-status", "denied-status-tls").await;
    openssl_verify(&tls, &ca_crt).expect("verifies");
    assert_eq!(
        Serial::parse(&serial).map(|s| s.to_colon_hex()).ok(),
        Some(ncp_serial(&serial_of(&tls))),
        "the Secret holds the certificate recorded before the status write failed"
    );
    assert_eq!(
        emu.stats().issued_by(&ca),
        1,
        "signed once despite the failed status writes"
    );
}

#[tokio::test]
async fn a_frozen_controller_whose_signing_calls_are_still_running_in_ncp_does_not_make_its_successor_sign_again()
 {
    const COUNT: usize = 4;
    let _serial = crate::OPERATOR_PROCESS_TURN.lock().await;
    let emu = own_emulator();
    let client = client().await;
    let ns = namespace("proc-freeze").await;
    let ca = emulator_root_ca_on(emu, KeyType::Ec256, 3650).await;
    let mut first = OperatorProcess::start(Options::admin("freeze-first")).await;
    ready_issuer_on(emu, &client, &ns, "pca", false, &ca, serde_json::json!({})).await;
    // NCP takes 15 s to sign the frozen operator's calls; its successor (10 s NCP timeout, so a 25 s settle window) looks for them long before they land; the first operator is frozen mid-call, so its connections stay open and
    // every signing completes inside NCP a few seconds after its successor has started looking.
    emu.add_fault(
        FaultRule::latency(15_000)
            .for_operation(Operation::SignEndCsr)
            .times(u32::try_from(COUNT).expect("a small count")),
    );
    let calls_before = emu.stats().calls(Operation::SignEndCsr).total;

    for i in 0..COUNT {
        certificate(
            &client,
            &ns,
            &format!("f{i}"),
            serde_json::json!({
                "secretName": format!("f{i}-tls"), "dnsNames": [format!("f{i}.example.com")],
                "privateKey": {"algorithm": "ECDSA"}, "issuerRef": issuer_ref("pca", "PrivateCA")
            }),
        )
        .await;
    }
    let crs = requests_api(&client, &ns);
    eventually(
        "every request to be in the middle of signing",
        Duration::from_secs(60),
        || async {
            let list = crs.list(&Default::default()).await.ok()?;
            let signing = list
                .items
                .iter()
                .filter(|r| annotation(r, SIGNING_STARTED).is_some())
                .count();
            // The calls have reached NCP, not merely been marked.
            let received = emu.stats().calls(Operation::SignEndCsr).total - calls_before;
            (signing == COUNT && received == COUNT as u64).then_some(())
        },
    )
    .await;
    let frozen = std::process::Command::new("kill")
        .args(["-STOP", &first.pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(frozen.success());

    let _second = OperatorProcess::start(Options {
        ncp_timeout_seconds: 10,
        ..Options::admin("freeze-second")
    })
    .await;
    for i in 0..COUNT {
        let (tls, ca_crt) =
            issued_secret(&client, &ns, &format!("f{i}"), &format!("f{i}-tls")).await;
        openssl_verify(&tls, &ca_crt).unwrap_or_else(|e| panic!("f{i} does not verify: {e}"));
    }

    assert_eq!(
        emu.stats().issued_by(&ca),
        COUNT as u64,
        "the successor waited for the frozen calls to land instead of signing again"
    );
    first.kill().await;
}

#[tokio::test]
async fn a_running_operator_exports_every_metric_the_chart_s_alerts_and_dashboard_use() {
    let _serial = crate::OPERATOR_PROCESS_TURN.lock().await;
    let emu = own_emulator();
    let client = client().await;
    let ns = namespace("proc-metrics").await;
    let ca = emulator_root_ca_on(emu, KeyType::Ec256, 3650).await;
    let operator = OperatorProcess::start(Options::admin("metrics-names")).await;
    // A plain issuer (the CA gauges) and a subordinate one (the intermediate's gauges too).
    ready_issuer_on(emu, &client, &ns, "pca", false, &ca, serde_json::json!({})).await;
    ready_issuer_on(
        emu,
        &client,
        &ns,
        "sub",
        false,
        &ca,
        serde_json::json!({"subordinate": {"secretName": "sub-ca"}}),
    )
    .await;

    let wanted = crate::monitoring::names_the_chart_uses();
    assert!(wanted.len() > 10, "{wanted:?}");
    let url = format!("http://127.0.0.1:{}/metrics", operator.http_port);
    // The intermediate's series come with the subordinate issuer's first Ready check: poll.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let page = reqwest::get(&url)
            .await
            .expect("/metrics answers")
            .text()
            .await
            .expect("/metrics body");
        let exported: std::collections::BTreeSet<&str> = page
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split(['{', ' ']).next())
            .collect();
        let missing: Vec<&String> = wanted
            .iter()
            .filter(|n| !exported.contains(n.as_str()))
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the alerts or the dashboard use {missing:?}, which the operator does not export:\n{page}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
