//! The Helm chart (`charts/ncp-pca-issuer`): lint, rendering, a server-side dry run, and an install
//! into the test control plane whose ServiceAccount — through a TokenRequest token, with our operator
//! run out of cluster — issues and revokes certificates end to end, and is refused what it does not
//! need. cert-manager's approver RBAC is checked with SubjectAccessReviews, as cert-manager's webhook
//! does.

use crate::support;

use base64::Engine as _;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret, ServiceAccount};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use ncp_pca_issuer::devcluster::process::Supervised;
use ncp_pca_issuer::ncp::types::KeyType;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;
use support::{
    client, cluster, credentials_secret, dynamic, emulator_root_ca, eventually, issued_secret,
    issuer_condition, issuer_ref, namespace, ncp_client, openssl_verify, ready_issuer,
};

/// The release name of the shared install: the chart's objects are then named `ncp-pca-issuer…`.
const RELEASE: &str = "ncp-pca-issuer";
/// cert-manager's controller, the default subject of the chart's approver binding.
const CERT_MANAGER_SA: &str = "system:serviceaccount:cert-manager:cert-manager";

fn chart_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/ncp-pca-issuer")
}

/// Helm's cache, config and data directories: private to this test binary, removed with the
/// control plane's work dir.
fn helm_home() -> &'static Path {
    static HOME: OnceLock<PathBuf> = OnceLock::new();
    HOME.get_or_init(|| {
        let dir = cluster().work_dir().join("helm-home");
        for sub in ["cache", "config", "data"] {
            std::fs::create_dir_all(dir.join(sub)).expect("helm home");
        }
        dir
    })
}

fn helm_command() -> Command {
    let home = helm_home();
    let mut cmd = Command::new(cluster().bin_dir().join("helm"));
    cmd.env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .env("KUBECONFIG", cluster().kubeconfig_path())
        .stdin(Stdio::null());
    cmd
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Runs helm; returns stdout, panics with everything helm said when it fails.
fn helm(args: &[&str]) -> String {
    let out = helm_command().args(args).output().expect("helm runs");
    assert!(
        out.status.success(),
        "helm {} failed ({}):\n{}",
        args.join(" "),
        out.status,
        text(&out)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// `helm template` of the chart in namespace `ns` with `--set` values, without the `helm test` hook.
fn render(ns: &str, sets: &[&str]) -> String {
    render_chart(ns, sets, false)
}

/// [`render`], with the `helm test` hook's objects.
fn render_with_tests(ns: &str, sets: &[&str]) -> String {
    render_chart(ns, sets, true)
}

fn render_chart(ns: &str, sets: &[&str], with_tests: bool) -> String {
    let chart = chart_dir();
    let mut args = vec![
        "template",
        RELEASE,
        chart.to_str().expect("utf-8 path"),
        "--namespace",
        ns,
    ];
    if !with_tests {
        args.push("--skip-tests");
    }
    for set in sets {
        args.extend(["--set", set]);
    }
    helm(&args)
}

/// The rendered objects, as JSON.
fn documents(yaml: &str) -> Vec<Value> {
    let mut docs = Vec::new();
    let mut current = String::new();
    for line in yaml.lines().chain(std::iter::once("---")) {
        if line == "---" {
            if current.lines().any(|l| {
                let t = l.trim();
                !t.is_empty() && !t.starts_with('#')
            }) {
                let doc: Value = serde_saphyr::from_str(&current)
                    .unwrap_or_else(|e| panic!("rendered YAML does not parse: {e}\n{current}"));
                docs.push(doc);
            }
            current.clear();
        } else {
            current.push_str(line);
            current.push('\n');
        }
    }
    docs
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn one<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found = of_kind(docs, kind);
    assert_eq!(found.len(), 1, "expected one {kind}, found {}", found.len());
    found[0]
}

fn kubectl(args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write as _;
    let mut child = Command::new(cluster().bin_dir().join("kubectl"))
        .arg("--kubeconfig")
        .arg(cluster().kubeconfig_path())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    let mut pipe = child.stdin.take().expect("stdin");
    pipe.write_all(stdin.unwrap_or_default().as_bytes())
        .expect("write stdin");
    drop(pipe);
    child.wait_with_output().expect("kubectl finishes")
}

/// Server-side dry run of `yaml`; returns what kubectl said (warnings included).
fn dry_run(yaml: &str) -> String {
    let out = kubectl(
        &[
            "apply",
            "--server-side",
            "--dry-run=server",
            "--force-conflicts",
            "--field-manager=chart-test",
            "-f",
            "-",
        ],
        Some(yaml),
    );
    assert!(
        out.status.success(),
        "server-side dry run failed ({}):\n{}",
        out.status,
        text(&out)
    );
    text(&out)
}

/// A namespace whose Pod Security admission warns about anything short of `restricted`.
async fn restricted_namespace(prefix: &str) -> String {
    let ns = namespace(prefix).await;
    let api: Api<Namespace> = Api::all(client().await);
    api.patch(
        &ns,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {
            "pod-security.kubernetes.io/warn": "restricted",
            "pod-security.kubernetes.io/audit": "restricted"
        }}})),
    )
    .await
    .expect("label namespace");
    ns
}

// ---------------------------------------------------------------------------------------------
// Lint and rendering
// ---------------------------------------------------------------------------------------------

#[test]
fn helm_lint_strict_is_clean_with_the_defaults_and_with_every_switch_flipped() {
    let chart = chart_dir();
    let chart = chart.to_str().expect("utf-8 path");
    for sets in [
        vec![],
        vec![
            "crds.enabled=false",
            "approver.enabled=false",
            "rbac.aggregateToDefaultRoles=false",
            "replicaCount=1",
            "leaderElection.enabled=false",
            "testHook.enabled=false",
        ],
        vec![
            "networkPolicy.enabled=true",
            "podMonitor.enabled=true",
            "subordinate.enabled=true",
            "global.imageRegistry=mirror.example",
            "serviceMonitor.enabled=true",
            "serviceMonitor.scrapeTimeout=10s",
            "priorityClassName=system-cluster-critical",
            "image.digest=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "imagePullSecrets[0].name=regcred",
            "extraArgs[0]=--concurrency=16",
            "extraEnv[0].name=FOO",
            "extraEnv[0].value=bar",
            "controller.logLevel=debug",
            "clusterResourceNamespace=pki",
        ],
    ] {
        let mut args = vec!["lint", "--strict", chart];
        for set in &sets {
            args.extend(["--set", set]);
        }
        let out = helm(&args);
        assert!(
            out.contains("0 chart(s) failed") && !out.contains("[WARNING]"),
            "helm lint --strict with {sets:?}:\n{out}"
        );
    }
}

#[test]
fn values_outside_the_schema_or_contradicting_each_other_are_refused() {
    let chart = chart_dir();
    let chart = chart.to_str().expect("utf-8 path");
    for (sets, says) in [
        (vec!["replicaCont=2"], "replicaCont"),
        (vec!["controller.logFormat=xml"], "logFormat"),
        (vec!["image.pullPolicy=Sometimes"], "pullPolicy"),
        (
            vec!["replicaCount=2", "leaderElection.enabled=false"],
            "needs leaderElection.enabled=true",
        ),
        (vec!["approver.subjects=null"], "approver.subjects"),
    ] {
        let mut args = vec!["template", "x", chart];
        for set in &sets {
            args.extend(["--set", set]);
        }
        let out = helm_command().args(&args).output().expect("helm runs");
        assert!(!out.status.success(), "{sets:?} was accepted");
        assert!(text(&out).contains(says), "{sets:?}: {}", text(&out));
    }
}

#[test]
fn the_crd_templates_render_exactly_what_crdgen_prints_and_sync_crds_check_agrees() {
    let strip = |mut crd: Value| {
        if let Some(meta) = crd["metadata"].as_object_mut() {
            meta.remove("labels");
            meta.remove("annotations");
        }
        crd
    };
    let rendered: Vec<Value> = of_kind(
        &documents(&render("default", &[])),
        "CustomResourceDefinition",
    )
    .into_iter()
    .cloned()
    .map(strip)
    .collect();
    let generated: Vec<Value> = documents(&ncp_pca_issuer::api::crd_yaml().expect("crdgen"))
        .into_iter()
        .map(strip)
        .collect();
    assert_eq!(generated.len(), 2);
    for crd in &generated {
        let name = &crd["metadata"]["name"];
        let chart = rendered
            .iter()
            .find(|r| r["metadata"]["name"] == *name)
            .unwrap_or_else(|| panic!("the chart has no CRD {name}"));
        assert!(
            chart == crd,
            "the chart's CRD {name} differs from `ncp-pca-issuer crdgen`: run \
             charts/ncp-pca-issuer/hack/sync-crds.sh"
        );
    }
    assert_eq!(rendered.len(), generated.len(), "the chart has extra CRDs");

    let check = Command::new("bash")
        .arg(chart_dir().join("hack/sync-crds.sh"))
        .arg("--check")
        .output()
        .expect("bash runs");
    assert!(
        check.status.success(),
        "sync-crds.sh --check: {}",
        text(&check)
    );
}

#[test]
fn crds_are_kept_on_uninstall_by_default_and_can_be_left_out() {
    let keep = |docs: &[Value]| -> Vec<bool> {
        of_kind(docs, "CustomResourceDefinition")
            .iter()
            .map(|c| c["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep")
            .collect()
    };
    assert_eq!(keep(&documents(&render("default", &[]))), [true, true]);
    assert_eq!(
        keep(&documents(&render("default", &["crds.keep=false"]))),
        [false, false]
    );
    assert!(keep(&documents(&render("default", &["crds.enabled=false"]))).is_empty());
}

#[test]
fn the_deployment_runs_two_leader_elected_restricted_replicas_in_the_release_namespace() {
    let docs = documents(&render("pki-system", &[]));
    let deploy = one(&docs, "Deployment");
    assert_eq!(deploy["spec"]["replicas"], 2);
    let pod = &deploy["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let args: Vec<&str> = container["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for want in [
        "controller",
        "--leader-elect=true",
        "--cluster-resource-namespace=pki-system",
        "--leader-election-namespace=pki-system",
        "--http-addr=0.0.0.0:8080",
    ] {
        assert!(args.contains(&want), "{want} missing from {args:?}");
    }
    assert_eq!(container["ports"][0]["containerPort"], 8080);
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/livez");
    assert_eq!(container["livenessProbe"]["httpGet"]["port"], "http");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    let sc = &container["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let env: Vec<(&str, &str)> = container["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap_or_default(),
                e["valueFrom"]["fieldRef"]["fieldPath"]
                    .as_str()
                    .unwrap_or_default(),
            )
        })
        .collect();
    assert!(env.contains(&("POD_NAME", "metadata.name")), "{env:?}");
    assert!(
        env.contains(&("POD_NAMESPACE", "metadata.namespace")),
        "{env:?}"
    );
    assert_eq!(
        pod["serviceAccountName"],
        one(&docs, "ServiceAccount")["metadata"]["name"]
    );
    let pdb = one(&docs, "PodDisruptionBudget");
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"],
        deploy["spec"]["selector"]["matchLabels"]
    );
    assert!(of_kind(&docs, "ServiceMonitor").is_empty());
    assert_eq!(
        one(&docs, "Service")["spec"]["ports"][0]["targetPort"],
        "http"
    );

    // One replica: no PodDisruptionBudget (it would block every drain).
    let single = documents(&render("pki-system", &["replicaCount=1"]));
    assert!(of_kind(&single, "PodDisruptionBudget").is_empty());

    // Every scheduling and image knob reaches the pod.
    let custom = documents(&render(
        "pki-system",
        &[
            "clusterResourceNamespace=pki",
            "image.repository=registry.example/ncp",
            "image.tag=9.9.9",
            "image.pullPolicy=Always",
            "imagePullSecrets[0].name=regcred",
            "priorityClassName=critical",
            "nodeSelector.disk=ssd",
            "tolerations[0].key=dedicated",
            "tolerations[0].operator=Exists",
            "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].key=zone",
            "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].operator=Exists",
            "topologySpreadConstraints[0].maxSkew=1",
            "topologySpreadConstraints[0].topologyKey=topology.kubernetes.io/zone",
            "topologySpreadConstraints[0].whenUnsatisfiable=ScheduleAnyway",
            "extraArgs[0]=--concurrency=16",
            "extraEnv[0].name=FOO",
            "extraEnv[0].value=bar",
            "serviceMonitor.enabled=true",
        ],
    ));
    let deploy = one(&custom, "Deployment");
    let pod = &deploy["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(container["image"], "registry.example/ncp:9.9.9");
    assert_eq!(container["imagePullPolicy"], "Always");
    assert_eq!(pod["imagePullSecrets"][0]["name"], "regcred");
    assert_eq!(pod["priorityClassName"], "critical");
    assert_eq!(pod["nodeSelector"]["disk"], "ssd");
    assert_eq!(pod["tolerations"][0]["key"], "dedicated");
    assert!(pod["affinity"]["nodeAffinity"].is_object());
    assert_eq!(
        pod["topologySpreadConstraints"][0]["labelSelector"]["matchLabels"],
        deploy["spec"]["selector"]["matchLabels"],
        "a constraint without labelSelector selects the controller pods"
    );
    let args = container["args"].as_array().expect("args");
    assert!(args.contains(&json!("--cluster-resource-namespace=pki")));
    assert!(args.contains(&json!("--leader-election-namespace=pki-system")));
    assert!(args.contains(&json!("--concurrency=16")));
    assert!(
        container["env"]
            .as_array()
            .expect("env")
            .contains(&json!({"name": "FOO", "value": "bar"}))
    );
    let monitor = one(&custom, "ServiceMonitor");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "http-metrics");
    assert_eq!(
        one(&custom, "Service")["spec"]["ports"][0]["name"],
        "http-metrics"
    );
}

/// The controller container's arguments.
fn controller_args(docs: &[Value]) -> Vec<String> {
    one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("string argument").to_string())
        .collect()
}

/// How often each `--flag` occurs in `args` (by name, whether written `--flag=v` or `--flag v`).
fn flag_counts(args: &[String]) -> std::collections::BTreeMap<String, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for arg in args.iter().filter_map(|a| a.strip_prefix("--")) {
        let name = arg.split_once('=').map_or(arg, |(name, _)| name);
        *counts.entry(name.to_string()).or_default() += 1;
    }
    counts
}

/// The binary's own parser (the one `main` runs) on `controller` arguments as the pod gets them.
fn parse_as_the_binary_does(args: &[String]) -> Result<String, clap::Error> {
    use clap::Parser as _;
    let argv = std::iter::once("ncp-pca-issuer".to_string()).chain(args.iter().cloned());
    ncp_pca_issuer::cli::Cli::try_parse_from(argv).map(|cli| format!("{cli:?}"))
}

#[test]
fn extra_args_override_the_flags_the_chart_sets_and_the_binary_accepts_what_renders() {
    // The defaults: every flag once, and the binary parses them.
    let defaults = controller_args(&documents(&render("pki-system", &[])));
    assert!(
        flag_counts(&defaults).values().all(|&n| n == 1),
        "{defaults:?}"
    );
    parse_as_the_binary_does(&defaults)
        .unwrap_or_else(|e| panic!("the binary refuses the default arguments {defaults:?}: {e}"));

    // values.yaml's own example, and the two spellings of a flag, for flags the chart sets; other
    // flags pass through in order.
    for (sets, want, override_of) in [
        (
            vec!["extraArgs[0]=--concurrency=16"],
            "concurrency: 16",
            "--concurrency=16",
        ),
        (
            vec!["extraArgs[0]=--log-format", "extraArgs[1]=plain"],
            "log_format: Plain",
            "--log-format=plain",
        ),
        (
            vec![
                "extraArgs[0]=--max-retry-seconds=60",
                "extraArgs[1]=--kubeconfig=/etc/k/config",
            ],
            "max_retry_seconds: 60",
            "--max-retry-seconds=60",
        ),
        (
            vec!["extraArgs[0]=--leader-election-lease-duration-seconds=30"],
            "leader_election_lease_duration_seconds: 30",
            "--leader-election-lease-duration-seconds=30",
        ),
    ] {
        let args = controller_args(&documents(&render("pki-system", &sets)));
        let counts = flag_counts(&args);
        assert!(
            counts.values().all(|&n| n == 1),
            "{sets:?} renders a flag twice: {args:?}"
        );
        assert_eq!(
            args.iter().filter(|a| *a == override_of).count(),
            1,
            "{sets:?}: {args:?}"
        );
        let parsed = parse_as_the_binary_does(&args)
            .unwrap_or_else(|e| panic!("the binary refuses {args:?} ({sets:?}): {e}"));
        assert!(parsed.contains(want), "{sets:?}: parsed {parsed}");
    }
    let passed_on = controller_args(&documents(&render(
        "pki-system",
        &["extraArgs[0]=--kubeconfig", "extraArgs[1]=/etc/k/config"],
    )));
    assert_eq!(
        passed_on[passed_on.len() - 2..],
        ["--kubeconfig", "/etc/k/config"]
    );
    assert!(parse_as_the_binary_does(&passed_on).is_ok());

    // What the chart rendered before: the binary exits on a repeated flag (so the checks above can
    // fail).
    let mut twice = defaults;
    twice.push("--concurrency=16".into());
    let refused = parse_as_the_binary_does(&twice).expect_err("a repeated flag parses");
    assert!(
        refused
            .to_string()
            .contains("cannot be used multiple times"),
        "{refused}"
    );

    // The objects that depend on a flag follow the effective value.
    let docs = documents(&render(
        "pki-system",
        &[
            "extraArgs[0]=--http-addr=0.0.0.0:9443",
            "extraArgs[1]=--leader-election-lease=other",
        ],
    ));
    let container = &one(&docs, "Deployment")["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["ports"][0]["containerPort"], 9443);
    assert_eq!(
        one(&docs, "Role")["rules"][1]["resourceNames"],
        json!(["other"])
    );
    // A chart flag without its value, and two unsigned replicas, are refused at render time.
    let chart = chart_dir();
    for (sets, says) in [
        (vec!["extraArgs[0]=--concurrency"], "has no value"),
        (
            vec!["extraArgs[0]=--leader-elect=false"],
            "needs leaderElection.enabled=true",
        ),
        (
            vec!["leaderElection.retryPeriodSeconds=12"],
            "retryPeriodSeconds < renewDeadlineSeconds",
        ),
    ] {
        let mut args = vec!["template", "x", chart.to_str().expect("utf-8 path")];
        for set in &sets {
            args.extend(["--set", set]);
        }
        let out = helm_command().args(&args).output().expect("helm runs");
        assert!(!out.status.success(), "{sets:?} was accepted");
        assert!(text(&out).contains(says), "{sets:?}: {}", text(&out));
    }
}

/// `helm install --dry-run=client` NOTES of the chart with `sets` (CRDs left out: the cluster's
/// belong to no release of this name, and Helm refuses to adopt them even in a dry run).
fn notes(sets: &[&str]) -> String {
    let chart = chart_dir();
    let mut args = vec![
        "install",
        "notes",
        chart.to_str().expect("utf-8 path"),
        "--dry-run=client",
        "--namespace",
        "pki-system",
        "--set",
        "crds.enabled=false",
    ];
    for set in sets {
        args.extend(["--set", set]);
    }
    let out = helm(&args);
    out.split_once("NOTES:")
        .map(|(_, notes)| notes.to_string())
        .unwrap_or_else(|| panic!("no NOTES in:\n{out}"))
}

#[test]
fn subordinate_mode_is_off_by_default_and_the_notes_say_how_to_turn_it_on() {
    let docs = documents(&render("pki-system", &[]));
    for kind in ["ClusterRole", "ClusterRoleBinding", "RoleBinding"] {
        assert!(
            !of_kind(&docs, kind).iter().any(|r| r["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .ends_with("-subordinate-secrets")),
            "the defaults render the subordinate {kind}"
        );
    }
    // No default rule writes a Secret anywhere.
    for role in of_kind(&docs, "ClusterRole")
        .iter()
        .chain(&of_kind(&docs, "Role"))
    {
        for rule in role["rules"].as_array().expect("rules") {
            if rule["resources"]
                .as_array()
                .expect("resources")
                .contains(&json!("secrets"))
            {
                for verb in ["create", "update", "patch", "delete"] {
                    assert!(
                        !rule["verbs"]
                            .as_array()
                            .expect("verbs")
                            .contains(&json!(verb)),
                        "{} may {verb} Secrets by default",
                        role["metadata"]["name"]
                    );
                }
            }
        }
    }
    let off = notes(&[]);
    assert!(off.contains("Subordinate mode is off"), "{off}");
    assert!(off.contains("--set subordinate.enabled=true"), "{off}");
    let on = notes(&["subordinate.enabled=true"]);
    assert!(
        on.contains("may create and update Secrets in namespace pki-system"),
        "{on}"
    );
    assert!(!on.contains("Subordinate mode is off"), "{on}");
}

#[test]
fn volumes_sidecars_monitors_and_a_registry_mirror_reach_the_rendered_objects() {
    let docs = documents(&render(
        "pki-system",
        &[
            "volumes[0].name=trust",
            "volumes[0].configMap.name=extra-anchors",
            "volumeMounts[0].name=trust",
            "volumeMounts[0].mountPath=/etc/trust",
            "extraContainers[0].name=proxy",
            "extraContainers[0].image=proxy:1",
            "image.registry=example.kr.ncr.ntruss.com",
            "serviceMonitor.enabled=true",
            "serviceMonitor.annotations.team=pki",
            "serviceMonitor.honorLabels=true",
            "serviceMonitor.relabelings[0].targetLabel=cluster",
            "serviceMonitor.relabelings[0].replacement=prod",
            "serviceMonitor.metricRelabelings[0].action=drop",
            "serviceMonitor.metricRelabelings[0].regex=go_.*",
            "podMonitor.enabled=true",
            "podMonitor.labels.release=prom",
            "podMonitor.scrapeTimeout=10s",
        ],
    ));
    let pod = &one(&docs, "Deployment")["spec"]["template"]["spec"];
    assert_eq!(
        pod["volumes"],
        json!([{"name": "trust", "configMap": {"name": "extra-anchors"}}])
    );
    let containers = pod["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 2);
    assert_eq!(
        containers[0]["volumeMounts"],
        json!([{"name": "trust", "mountPath": "/etc/trust"}])
    );
    assert_eq!(
        containers[0]["image"],
        "example.kr.ncr.ntruss.com/ncp-pca-issuer/ncp-pca-issuer:0.1.0"
    );
    assert_eq!(containers[1]["name"], "proxy");
    let monitor = one(&docs, "ServiceMonitor");
    assert_eq!(monitor["metadata"]["annotations"]["team"], "pki");
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!(endpoint["honorLabels"], true);
    assert_eq!(endpoint["relabelings"][0]["targetLabel"], "cluster");
    assert_eq!(endpoint["metricRelabelings"][0]["action"], "drop");
    let pods = one(&docs, "PodMonitor");
    assert_eq!(pods["metadata"]["labels"]["release"], "prom");
    assert_eq!(
        pods["spec"]["selector"]["matchLabels"],
        one(&docs, "Deployment")["spec"]["selector"]["matchLabels"]
    );
    let endpoint = &pods["spec"]["podMetricsEndpoints"][0];
    assert_eq!(endpoint["port"], containers[0]["ports"][0]["name"]);
    assert_eq!(endpoint["path"], "/metrics");
    assert_eq!(endpoint["scrapeTimeout"], "10s");
    assert_eq!(endpoint["honorLabels"], false);
    // A repository without a registry gets the mirror in front; a digest still wins over the tag.
    let image = |sets: &[&str]| {
        one(&documents(&render("pki-system", sets)), "Deployment")["spec"]["template"]["spec"]
            ["containers"][0]["image"]
            .clone()
    };
    assert_eq!(
        image(&[
            "global.imageRegistry=localhost:5000",
            "image.repository=team/ncp"
        ]),
        "localhost:5000/team/ncp:0.1.0"
    );
    assert_eq!(
        image(&[
            "global.imageRegistry=mirror.example",
            "image.registry=wins.example",
            "image.digest=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
        ]),
        "wins.example/ncp-pca-issuer/ncp-pca-issuer@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    );
}

#[test]
fn the_chart_readme_lists_every_value_and_is_fresh() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/chart-readme");
    let run = |arg: &str| {
        Command::new("python3")
            .arg(&script)
            .arg(arg)
            .stdin(Stdio::null())
            .output()
            .expect("python3 runs")
    };
    let check = run("--check");
    assert!(
        check.status.success(),
        "charts/ncp-pca-issuer/README.md is stale, run scripts/chart-readme: {}",
        text(&check)
    );
    // The script's small YAML reader reads values.yaml as a YAML parser does.
    let read = run("--values-json");
    assert!(read.status.success(), "{}", text(&read));
    let by_script: Value = serde_json::from_slice(&read.stdout).expect("JSON");
    let values = std::fs::read_to_string(chart_dir().join("values.yaml")).expect("values.yaml");
    let by_parser: Value = serde_saphyr::from_str(&values).expect("values.yaml parses");
    assert_eq!(by_script, by_parser);
    // Every leaf value has its row.
    let readme = std::fs::read_to_string(chart_dir().join("README.md")).expect("README");
    fn leaves(value: &Value, prefix: &str, out: &mut Vec<String>) {
        match value.as_object() {
            Some(map) if !map.is_empty() => {
                for (k, v) in map {
                    leaves(v, &format!("{prefix}{k}."), out);
                }
            }
            _ => out.push(prefix.trim_end_matches('.').to_string()),
        }
    }
    let mut keys = Vec::new();
    leaves(&by_parser, "", &mut keys);
    for key in keys {
        let row = |k: &str| readme.contains(&format!("| `{k}` |"));
        let mut documented = false;
        let mut path = key.as_str();
        loop {
            if row(path) {
                documented = true;
                break;
            }
            match path.rsplit_once('.') {
                Some((parent, _)) => path = parent,
                None => break,
            }
        }
        assert!(documented, "the chart README has no row for {key}");
    }
}

#[test]
fn the_network_policy_admits_only_the_http_port_and_lets_out_only_dns_the_api_server_and_ncp() {
    assert!(of_kind(&documents(&render("pki-system", &[])), "NetworkPolicy").is_empty());
    let docs = documents(&render("pki-system", &["networkPolicy.enabled=true"]));
    let policy = one(&docs, "NetworkPolicy");
    let deploy = one(&docs, "Deployment");
    assert_eq!(
        policy["spec"]["podSelector"]["matchLabels"],
        deploy["spec"]["selector"]["matchLabels"]
    );
    assert_eq!(policy["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
    // Ingress: one rule, the container's named HTTP port, from anywhere by default.
    let ingress = policy["spec"]["ingress"].as_array().expect("ingress");
    assert_eq!(ingress.len(), 1, "{ingress:?}");
    assert_eq!(
        ingress[0]["ports"],
        json!([{"port": "http", "protocol": "TCP"}])
    );
    assert!(ingress[0].get("from").is_none());
    assert_eq!(
        deploy["spec"]["template"]["spec"]["containers"][0]["ports"][0]["name"],
        "http"
    );
    // Egress: DNS to kube-dns, then the API server and NCP, each on its ports only.
    let egress = policy["spec"]["egress"].as_array().expect("egress");
    assert_eq!(egress.len(), 3, "{egress:?}");
    assert_eq!(
        egress[0]["ports"],
        json!([{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}])
    );
    assert_eq!(
        egress[0]["to"][0]["podSelector"]["matchLabels"]["k8s-app"],
        "kube-dns"
    );
    assert_eq!(
        egress[1]["ports"],
        json!([{"port": 443, "protocol": "TCP"}, {"port": 6443, "protocol": "TCP"}])
    );
    assert_eq!(
        egress[2]["ports"],
        json!([{"port": 443, "protocol": "TCP"}])
    );
    for rule in egress {
        assert!(
            rule["to"].as_array().is_some_and(|to| !to.is_empty()),
            "{rule}"
        );
    }

    // Narrowed: metrics from one namespace, NCP through known ranges, and a proxy.
    let docs = documents(&render(
        "pki-system",
        &[
            "networkPolicy.enabled=true",
            "networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.name=monitoring",
            "networkPolicy.ncpCIDRs={203.0.113.0/24,198.51.100.7/32}",
            "networkPolicy.apiServerCIDRs={10.0.0.1/32}",
            "networkPolicy.apiServerPorts={6443}",
            "networkPolicy.extraEgress[0].ports[0].port=3128",
        ],
    ));
    let policy = one(&docs, "NetworkPolicy");
    assert_eq!(
        policy["spec"]["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"]["name"],
        "monitoring"
    );
    let egress = policy["spec"]["egress"].as_array().expect("egress");
    assert_eq!(egress.len(), 4);
    assert_eq!(
        egress[1],
        json!({"to": [{"ipBlock": {"cidr": "10.0.0.1/32"}}],
               "ports": [{"port": 6443, "protocol": "TCP"}]})
    );
    assert_eq!(
        egress[2]["to"],
        json!([{"ipBlock": {"cidr": "203.0.113.0/24"}}, {"ipBlock": {"cidr": "198.51.100.7/32"}}])
    );
    assert_eq!(egress[3]["ports"][0]["port"], 3128);
    // An address range that is not one is refused by the schema.
    let out = helm_command()
        .args([
            "template",
            "x",
            chart_dir().to_str().expect("utf-8 path"),
            "--set",
            "networkPolicy.ncpCIDRs={pca.apigw.ntruss.com}",
        ])
        .output()
        .expect("helm runs");
    assert!(!out.status.success(), "a host name was accepted as a CIDR");
    assert!(text(&out).contains("ncpCIDRs"), "{}", text(&out));
}

/// The objects of the `helm test` hook.
fn test_hook(docs: &[Value]) -> Vec<&Value> {
    docs.iter()
        .filter(|d| d["metadata"]["annotations"]["helm.sh/hook"] == "test")
        .collect()
}

/// Every container of a Job's pod, init containers first (the order they run in).
fn job_steps(job: &Value) -> Vec<&Value> {
    let pod = &job["spec"]["template"]["spec"];
    pod["initContainers"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(pod["containers"].as_array().expect("containers"))
        .collect()
}

#[tokio::test]
async fn the_helm_test_hook_checks_readiness_and_the_crds_with_only_the_rights_it_needs() {
    let ns = namespace("chart-hook").await;
    let docs = documents(&render_with_tests(&ns, &["crds.enabled=false"]));
    let hook = test_hook(&docs);
    let mut kinds: Vec<&str> = hook.iter().filter_map(|d| d["kind"].as_str()).collect();
    kinds.sort_unstable();
    assert_eq!(
        kinds,
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "Job",
            "Role",
            "RoleBinding",
            "ServiceAccount"
        ]
    );
    let of = |kind: &str| -> &Value {
        hook.iter()
            .copied()
            .find(|d| d["kind"] == kind)
            .expect("hook object")
    };
    let job = of("Job");
    let deploy = one(&docs, "Deployment");
    let deployment = deploy["metadata"]["name"].as_str().expect("name");
    let steps = job_steps(job);
    let args: Vec<Vec<&str>> = steps
        .iter()
        .map(|c| {
            assert_eq!(c["command"], json!(["kubectl"]));
            c["args"]
                .as_array()
                .expect("args")
                .iter()
                .filter_map(Value::as_str)
                .collect()
        })
        .collect();
    assert_eq!(
        args[0],
        [
            "wait",
            "--namespace",
            ns.as_str(),
            "--for=condition=Available",
            &format!("deployment/{deployment}"),
            "--timeout=120s"
        ]
    );
    assert_eq!(args[1][..2], ["get", "privatecas.pca.ncp-issuer.dev"]);
    assert_eq!(
        args[2][..2],
        ["get", "clusterprivatecas.pca.ncp-issuer.dev"]
    );
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Never");
    assert_eq!(
        pod["serviceAccountName"],
        of("ServiceAccount")["metadata"]["name"]
    );
    // Its rights: that Deployment, by name, and listing our two kinds.
    assert_eq!(
        of("Role")["rules"],
        json!([{"apiGroups": ["apps"], "resources": ["deployments"],
                "resourceNames": [deployment], "verbs": ["get", "list", "watch"]}])
    );
    assert_eq!(
        of("ClusterRole")["rules"],
        json!([{"apiGroups": ["pca.ncp-issuer.dev"],
                "resources": ["privatecas", "clusterprivatecas"], "verbs": ["list"]}])
    );
    // Never selected as a controller pod (the PDB, Service and monitors select those).
    for labels in [
        &job["metadata"]["labels"],
        &job["spec"]["template"]["metadata"]["labels"],
    ] {
        assert_eq!(labels["app.kubernetes.io/component"], "test", "{labels}");
    }
    for step in &steps {
        assert_eq!(step["securityContext"]["readOnlyRootFilesystem"], true);
        assert_eq!(step["image"], "registry.k8s.io/kubectl:v1.35.0");
    }
    let mirrored = documents(&render_with_tests(
        &ns,
        &["global.imageRegistry=mirror.example"],
    ));
    let mirrored_job = test_hook(&mirrored)
        .into_iter()
        .find(|d| d["kind"] == "Job")
        .expect("Job");
    assert_eq!(
        job_steps(mirrored_job)[0]["image"],
        "mirror.example/kubectl:v1.35.0"
    );
    assert!(
        test_hook(&documents(&render_with_tests(
            &ns,
            &["testHook.enabled=false"]
        )))
        .is_empty()
    );

    // Run each step as the Job would, with a token of the hook's ServiceAccount: its RBAC and
    // the rendered Deployment applied (no kubelet here, so the Deployment's status is set by hand).
    let admin = client().await;
    let _cleanup = support::ClusterRbac(
        of("ClusterRole")["metadata"]["name"]
            .as_str()
            .expect("name")
            .to_string(),
    );
    let apply = |objects: Vec<&Value>| {
        let list = json!({"apiVersion": "v1", "kind": "List", "items": objects});
        let out = kubectl(&["apply", "-f", "-"], Some(&list.to_string()));
        assert!(out.status.success(), "kubectl apply: {}", text(&out));
    };
    apply(
        hook.iter()
            .copied()
            .filter(|d| d["kind"] != "Job")
            .collect(),
    );
    apply(vec![deploy]);
    let sa = of("ServiceAccount")["metadata"]["name"]
        .as_str()
        .expect("name");
    let kubeconfig = support::service_account_kubeconfig(&admin, &ns, sa).await;
    let run = |args: &[&str], timeout: Option<&str>| {
        let mut args: Vec<&str> = args.to_vec();
        if let Some(t) = timeout {
            args.retain(|a| !a.starts_with("--timeout="));
            args.push(t);
        }
        let out = Command::new(cluster().bin_dir().join("kubectl"))
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .expect("kubectl runs");
        (out.status.success(), text(&out))
    };
    // Not Available yet: the first step fails (so the passes below mean something).
    let (ok, said) = run(&args[0], Some("--timeout=2s"));
    assert!(!ok, "waited for an unavailable Deployment: {said}");
    assert!(!said.contains("forbidden"), "{said}");
    use k8s_openapi::api::apps::v1::Deployment;
    Api::<Deployment>::namespaced(admin.clone(), &ns)
        .patch_status(
            deployment,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {
                "observedGeneration": 1,
                "conditions": [{"type": "Available", "status": "True",
                                "reason": "MinimumReplicasAvailable", "message": "test"}]
            }})),
        )
        .await
        .expect("status patched");
    for (step, args) in steps.iter().zip(&args) {
        let (ok, said) = run(args, None);
        assert!(ok, "step {} failed: {said}", step["name"]);
    }
    // And nothing more: not even another Deployment, or Secrets.
    for args in [
        vec!["get", "deployments", "--namespace", ns.as_str()],
        vec!["get", "secrets", "--namespace", ns.as_str()],
        vec![
            "get",
            "certificaterequests.cert-manager.io",
            "--all-namespaces",
        ],
    ] {
        let (ok, said) = run(&args, None);
        assert!(!ok && said.contains("forbidden"), "{args:?}: {said}");
    }
}

// ---------------------------------------------------------------------------------------------
// The image (no Docker engine here: what the Dockerfile says, and what the binary links)
// ---------------------------------------------------------------------------------------------

/// The `cargo build …` commands of a shell script or Dockerfile (continuation lines joined,
/// comments left out).
fn cargo_builds(text: &str) -> Vec<String> {
    text.replace("\\\n", " ")
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let at = l.find("cargo build ")?;
            let command = l[at..].split("&&").next().unwrap_or_default();
            Some(command.split_whitespace().collect::<Vec<_>>().join(" "))
        })
        .collect()
}

#[test]
fn the_dockerfile_builds_as_ci_does_for_each_target_arch_with_oci_labels_and_a_base_the_binary_runs_on()
 {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).expect("Dockerfile");
    let ci = std::fs::read_to_string(root.join("scripts/test")).expect("scripts/test");
    let release = "cargo build --release --locked --bin ncp-pca-issuer";
    assert_eq!(cargo_builds(&ci), [release], "scripts/test's release build");
    assert_eq!(
        cargo_builds(&dockerfile),
        [release],
        "the Dockerfile's build"
    );
    // Multi-arch: built on the build platform for $TARGETARCH through CARGO_BUILD_TARGET (so the
    // command stays CI's), for the two architectures it maps.
    assert!(dockerfile.contains("FROM --platform=$BUILDPLATFORM"));
    assert!(dockerfile.contains("ARG TARGETARCH"));
    assert!(dockerfile.contains("echo \"export CARGO_BUILD_TARGET=$triple\""));
    for arch in ["amd64) arch=x86_64", "arm64) arch=aarch64"] {
        assert!(dockerfile.contains(arch), "{arch}");
    }
    // Dependencies are fetched from the manifest and lock file alone, before the sources come in.
    let fetch = dockerfile
        .find("cargo fetch --locked")
        .expect("cargo fetch");
    assert!(fetch < dockerfile.find("COPY src ./src").expect("COPY src"));
    assert!(dockerfile.contains("--mount=type=cache,target=/usr/local/cargo/registry"));
    // What the build reads is copied (crdgen embeds nothing else; no build script).
    for copy in [
        "COPY Cargo.toml Cargo.lock ./",
        "COPY src ./src",
        "COPY crds ./crds",
    ] {
        assert!(dockerfile.contains(copy), "{copy}");
    }
    assert!(
        !root.join("build.rs").exists(),
        "a build script the Dockerfile does not copy"
    );
    // OCI labels: the version and licence agree with Cargo.toml.
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("Cargo.toml");
    assert!(manifest.contains("license = \"Apache-2.0\""));
    for label in [
        "org.opencontainers.image.source=\"https://github.com/ncp-pca-issuer/ncp-pca-issuer\"",
        "org.opencontainers.image.version=\"${VERSION}\"",
        "org.opencontainers.image.licenses=\"Apache-2.0\"",
    ] {
        assert!(dockerfile.contains(label), "{label}");
    }
    assert!(dockerfile.contains(&format!("ARG VERSION={}", env!("CARGO_PKG_VERSION"))));
    // The runtime base is distroless/cc (glibc and libgcc): the binary needs nothing more.
    assert!(dockerfile.contains("FROM gcr.io/distroless/cc-debian12:nonroot"));
    let readelf = Command::new("readelf")
        .args(["-d", env!("CARGO_BIN_EXE_ncp-pca-issuer")])
        .output()
        .expect("readelf runs");
    assert!(readelf.status.success(), "{}", text(&readelf));
    let needed: Vec<String> = String::from_utf8_lossy(&readelf.stdout)
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| Some(l.split_once('[')?.1.trim_end_matches(']').to_string()))
        .collect();
    assert!(!needed.is_empty(), "readelf found no NEEDED entry");
    for lib in &needed {
        assert!(
            [
                "libc.so.6",
                "libm.so.6",
                "libgcc_s.so.1",
                "libdl.so.2",
                "libpthread.so.0",
                "librt.so.1"
            ]
            .contains(&lib.as_str())
                || lib.starts_with("ld-linux"),
            "the binary needs {lib}, which distroless/cc does not have: {needed:?}"
        );
    }
    // The build context leaves out the target directory and Git.
    let ignore = std::fs::read_to_string(root.join(".dockerignore")).expect(".dockerignore");
    for entry in ["target", ".git"] {
        assert!(ignore.lines().any(|l| l.trim() == entry), "{entry}");
    }
}

#[test]
fn secrets_are_writable_for_subordinate_mode_only_in_the_namespaces_the_values_name() {
    let bindings = |sets: &[&str]| -> (Vec<String>, usize) {
        let docs = documents(&render("pki-system", sets));
        let namespaces = of_kind(&docs, "RoleBinding")
            .into_iter()
            .filter(|b| b["roleRef"]["name"] == "ncp-pca-issuer-subordinate-secrets")
            .map(|b| {
                b["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect();
        let cluster_wide = of_kind(&docs, "ClusterRoleBinding")
            .into_iter()
            .filter(|b| b["roleRef"]["name"] == "ncp-pca-issuer-subordinate-secrets")
            .count();
        (namespaces, cluster_wide)
    };
    // Off by default; when on, the cluster resource namespace (the release's) and those listed.
    assert_eq!(bindings(&[]), (vec![], 0));
    let on = "subordinate.enabled=true";
    assert_eq!(bindings(&[on]), (vec!["pki-system".to_string()], 0));
    assert_eq!(
        bindings(&[on, "clusterResourceNamespace=certs"]),
        (vec!["certs".to_string()], 0)
    );
    assert_eq!(
        bindings(&[on, "extraArgs[0]=--cluster-resource-namespace=certs"]),
        (vec!["certs".to_string()], 0)
    );
    assert_eq!(
        bindings(&[on, "subordinate.namespaces={team-a,pki-system}"]),
        (vec!["pki-system".to_string(), "team-a".to_string()], 0)
    );
    assert_eq!(bindings(&[on, "subordinate.namespaces={*}"]), (vec![], 1));
    assert_eq!(bindings(&["subordinate.enabled=false"]), (vec![], 0));
    let docs = documents(&render("pki-system", &["subordinate.enabled=false"]));
    assert!(
        !of_kind(&docs, "ClusterRole")
            .iter()
            .any(|r| r["metadata"]["name"] == "ncp-pca-issuer-subordinate-secrets")
    );
}

#[test]
fn rbac_never_writes_secrets_keeps_leases_to_the_release_namespace_and_aggregates_our_kinds() {
    let docs = documents(&render("pki-system", &["subordinate.enabled=true"]));
    let cluster_roles = of_kind(&docs, "ClusterRole");
    let roles = of_kind(&docs, "Role");
    for role in cluster_roles.iter().chain(&roles) {
        for rule in role["rules"].as_array().expect("rules") {
            let verbs: Vec<&str> = rule["verbs"]
                .as_array()
                .expect("verbs")
                .iter()
                .filter_map(Value::as_str)
                .collect();
            let resources = rule["resources"].as_array().expect("resources");
            assert!(
                !verbs.contains(&"*")
                    && !resources.contains(&json!("*"))
                    && !rule["apiGroups"]
                        .as_array()
                        .expect("groups")
                        .contains(&json!("*")),
                "wildcard in {}: {rule}",
                role["metadata"]["name"]
            );
            if resources.contains(&json!("secrets")) {
                if role["metadata"]["name"] == "ncp-pca-issuer-subordinate-secrets" {
                    assert_eq!(verbs, ["create", "update"], "subordinate secrets: {rule}");
                } else {
                    assert_eq!(verbs, ["get", "list", "watch"], "secrets: {rule}");
                }
            }
            if resources.contains(&json!("leases")) {
                assert_eq!(role["kind"], "Role", "leases only in the Role: {rule}");
            }
        }
    }
    let leases = one(&docs, "Role");
    assert_eq!(leases["metadata"]["namespace"], "pki-system");
    assert_eq!(
        leases["rules"][1]["resourceNames"],
        json!(["ncp-pca-issuer"])
    );
    let aggregated = |label: &str| -> Vec<&Value> {
        cluster_roles
            .iter()
            .copied()
            .filter(|r| {
                r["metadata"]["labels"][format!("rbac.authorization.k8s.io/aggregate-to-{label}")]
                    == "true"
            })
            .collect()
    };
    for label in ["view", "edit", "admin"] {
        assert!(
            !aggregated(label).is_empty(),
            "nothing aggregates to {label}"
        );
    }
    let approver = cluster_roles
        .iter()
        .find(|r| r["metadata"]["name"] == "ncp-pca-issuer-approver")
        .expect("approver ClusterRole");
    assert_eq!(
        approver["rules"],
        json!([{
            "apiGroups": ["cert-manager.io"], "resources": ["signers"], "verbs": ["approve"],
            "resourceNames": ["privatecas.pca.ncp-issuer.dev/*", "clusterprivatecas.pca.ncp-issuer.dev/*"]
        }])
    );
    let binding = of_kind(&docs, "ClusterRoleBinding")
        .into_iter()
        .find(|b| b["metadata"]["name"] == "ncp-pca-issuer-approver")
        .expect("approver binding");
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": "cert-manager", "namespace": "cert-manager"}])
    );

    let custom = documents(&render(
        "pki-system",
        &[
            "approver.subjects[0].kind=ServiceAccount",
            "approver.subjects[0].name=cm",
            "approver.subjects[0].namespace=security",
        ],
    ));
    let binding = of_kind(&custom, "ClusterRoleBinding")
        .into_iter()
        .find(|b| b["metadata"]["name"] == "ncp-pca-issuer-approver")
        .expect("approver binding");
    assert_eq!(binding["subjects"][0]["namespace"], "security");

    let off = documents(&render("pki-system", &["approver.enabled=false"]));
    assert!(
        of_kind(&off, "ClusterRole")
            .iter()
            .chain(&of_kind(&off, "ClusterRoleBinding"))
            .all(|r| !r["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .ends_with("-approver")),
        "approver.enabled=false still renders the approver RBAC"
    );
}

#[tokio::test]
async fn the_rendered_chart_passes_a_server_side_dry_run_and_pod_security_restricted() {
    let ns = restricted_namespace("chart-dry").await;
    // Our CRDs are already installed by the test harness: the dry run applies the chart's copy over
    // them (same content; --force-conflicts takes the fields over from the harness' field manager).
    for sets in [
        vec![],
        vec!["approver.enabled=false", "replicaCount=1"],
        vec![
            "crds.enabled=false",
            "topologySpreadConstraints[0].maxSkew=1",
            "topologySpreadConstraints[0].topologyKey=topology.kubernetes.io/zone",
            "topologySpreadConstraints[0].whenUnsatisfiable=ScheduleAnyway",
            "imagePullSecrets[0].name=regcred",
            "extraEnv[0].name=FOO",
            "extraEnv[0].value=bar",
            "nodeSelector.disk=ssd",
            "tolerations[0].key=dedicated",
            "tolerations[0].operator=Exists",
        ],
    ] {
        let said = dry_run(&render_with_tests(&ns, &sets));
        assert!(
            said.contains("serverside-applied (server dry run)"),
            "{said}"
        );
        assert!(
            !said.contains("PodSecurity"),
            "the pod template is not restricted with {sets:?}:\n{said}"
        );
    }
    // The Pod Security check above can fail: a weakened security context is reported.
    let said = dry_run(&render(
        &ns,
        &[
            "crds.enabled=false",
            "securityContext.allowPrivilegeEscalation=true",
        ],
    ));
    assert!(said.contains("PodSecurity"), "{said}");
}

// ---------------------------------------------------------------------------------------------
// The installed chart
// ---------------------------------------------------------------------------------------------

/// What the shared install created.
struct Release {
    namespace: String,
    service_account: String,
    notes: String,
}

/// Installs the chart once per test binary (defaults, CRDs included, subordinate mode on) into a
/// fresh namespace.
fn installed() -> &'static Release {
    static RELEASE_ONCE: OnceLock<Release> = OnceLock::new();
    RELEASE_ONCE.get_or_init(|| {
        let namespace = format!("chart-{:08x}", rand::random::<u32>());
        // The harness created our CRDs before this release existed; let Helm adopt them (as an
        // upgrade from CRDs applied by hand would), so the chart's CRD templates are applied too.
        for crd in [
            "privatecas.pca.ncp-issuer.dev",
            "clusterprivatecas.pca.ncp-issuer.dev",
        ] {
            for args in [
                vec![
                    "label",
                    "--overwrite",
                    "crd",
                    crd,
                    "app.kubernetes.io/managed-by=Helm",
                ],
                vec![
                    "annotate",
                    "--overwrite",
                    "crd",
                    crd,
                    &format!("meta.helm.sh/release-name={RELEASE}"),
                    &format!("meta.helm.sh/release-namespace={namespace}"),
                ],
            ] {
                let out = kubectl(&args, None);
                assert!(out.status.success(), "kubectl {args:?}: {}", text(&out));
            }
        }
        let chart = chart_dir();
        let out = helm(&[
            "install",
            RELEASE,
            chart.to_str().expect("utf-8 path"),
            "--namespace",
            &namespace,
            "--create-namespace",
            // The end-to-end test below signs through a subordinate ClusterPrivateCA.
            "--set",
            "subordinate.enabled=true",
        ]);
        Release {
            namespace,
            service_account: RELEASE.to_string(),
            notes: out,
        }
    })
}

/// A token of the chart's ServiceAccount from the TokenRequest API.
async fn service_account_token(release: &Release) -> String {
    let api: Api<ServiceAccount> = Api::namespaced(client().await, &release.namespace);
    let request = serde_json::from_value(json!({
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": {"expirationSeconds": 3600}
    }))
    .expect("token request");
    api.create_token_request(&release.service_account, &PostParams::default(), &request)
        .await
        .expect("token issued")
        .status
        .expect("token status")
        .token
}

/// A kubeconfig with the admin kubeconfig's server and CA and `token` as the only credential.
async fn token_kubeconfig(release: &Release, dir: &Path) -> PathBuf {
    let admin = kube::config::Kubeconfig::read_from(cluster().kubeconfig_path()).expect("admin");
    let admin_cluster = admin.clusters[0].cluster.clone().expect("cluster entry");
    let ca = match (
        admin_cluster.certificate_authority_data,
        admin_cluster.certificate_authority,
    ) {
        (Some(data), _) => data,
        (None, Some(path)) => base64::engine::general_purpose::STANDARD
            .encode(std::fs::read(path).expect("read CA file")),
        (None, None) => panic!("the admin kubeconfig names no CA"),
    };
    let token = service_account_token(release).await;
    let yaml = format!(
        "apiVersion: v1\nkind: Config\n\
         clusters: [{{name: test, cluster: {{server: \"{server}\", certificate-authority-data: \"{ca}\"}}}}]\n\
         users: [{{name: sa, user: {{token: \"{token}\"}}}}]\n\
         contexts: [{{name: sa, context: {{cluster: test, user: sa, namespace: \"{ns}\"}}}}]\n\
         current-context: sa\n",
        server = admin_cluster.server.expect("server"),
        ns = release.namespace,
    );
    let path = dir.join("token.kubeconfig");
    std::fs::write(&path, yaml).expect("write kubeconfig");
    path
}

async fn client_from(kubeconfig: &Path) -> kube::Client {
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(kubeconfig).expect("token kubeconfig"),
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .expect("config");
    kube::Client::try_from(config).expect("client")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// Whether `serial` is in the CA's CRL, after a rotation.
async fn in_crl(ca: &str, serial: &[u8]) -> Option<bool> {
    let ncp = ncp_client();
    ncp.rotate_crl(ca).await.ok()?;
    let crl = ncp.get_ca_crl(ca).await.ok()?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(crl.as_bytes()).ok()?;
    let (_, crl) = x509_parser::parse_x509_crl(&pem.contents).ok()?;
    Some(
        crl.iter_revoked_certificates()
            .any(|r| r.raw_serial() == serial),
    )
}

fn serial_of(tls_crt: &str) -> Vec<u8> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(tls_crt.as_bytes()).expect("pem");
    let (_, cert) = x509_parser::parse_x509_certificate(&pem.contents).expect("parses");
    cert.raw_serial().to_vec()
}

#[tokio::test]
async fn with_only_the_charts_service_account_token_the_operator_issues_and_revokes_certificates() {
    // Its operator process watches the whole cluster: no other may run meanwhile.
    let _turn = crate::OPERATOR_PROCESS_TURN.lock().await;
    let release = installed();
    assert!(
        release
            .notes
            .contains("create secret generic ncp-credentials"),
        "NOTES say how to go on:\n{}",
        release.notes
    );
    let admin = client().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = token_kubeconfig(release, dir.path()).await;
    let port = free_port();
    let log = dir.path().join("operator.log");
    let mut operator = Supervised::start(
        "operator",
        Path::new("env"),
        &[
            "RUST_LOG=info,ncp_pca_issuer=debug".to_string(),
            env!("CARGO_BIN_EXE_ncp-pca-issuer").to_string(),
            "controller".to_string(),
            "--log-format=plain".to_string(),
            format!("--kubeconfig={}", kubeconfig.display()),
            format!("--cluster-resource-namespace={}", release.namespace),
            format!("--http-addr=127.0.0.1:{port}"),
            "--leader-elect=true".to_string(),
            format!("--leader-election-namespace={}", release.namespace),
            "--issuer-recheck-seconds=10".to_string(),
            "--ncp-timeout-seconds=5".to_string(),
        ],
        log.clone(),
    )
    .expect("operator starts");

    // It serves its probes and wins the Lease the chart's Role allows.
    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/readyz");
    eventually("the operator's /readyz", Duration::from_secs(60), || {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let ok = http.get(&url).send().await.ok()?.status().is_success();
            ok.then_some(())
        }
    })
    .await;
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(admin.clone(), &release.namespace);
    eventually(
        "the operator to hold the Lease",
        Duration::from_secs(60),
        || {
            let leases = leases.clone();
            async move {
                let lease = leases.get_opt("ncp-pca-issuer").await.ok()??;
                lease
                    .spec?
                    .holder_identity
                    .filter(|h| !h.is_empty())
                    .map(|_| ())
            }
        },
    )
    .await;

    // A PrivateCA: credentials read from its own namespace.
    let ns = namespace("chart-issue").await;
    let ca = emulator_root_ca(KeyType::Ec256, 3650).await;
    ready_issuer(&admin, &ns, "pca", false, &ca, json!({})).await;
    support::ecdsa_certificate(&admin, &ns, "web", issuer_ref("pca", "PrivateCA")).await;
    let (tls, ca_crt) = issued_secret(&admin, &ns, "web", "web-tls").await;
    let verdict = openssl_verify(&tls, &ca_crt).expect("chain verifies");
    assert!(verdict.contains("OK"), "{verdict}");

    // A ClusterPrivateCA: credentials read from the cluster resource namespace (the release's).
    let cluster_ca = format!("chart-{ns}");
    credentials_secret(
        &admin,
        &release.namespace,
        "ncp-cluster",
        &[
            ("NCLOUD_ACCESS_KEY", support::EMU_AK),
            ("NCLOUD_SECRET_KEY", support::EMU_SK),
        ],
    )
    .await;
    let cpcas = dynamic(
        &admin,
        None,
        "pca.ncp-issuer.dev",
        "v1alpha1",
        "ClusterPrivateCA",
        "clusterprivatecas",
    );
    support::apply(
        &cpcas,
        json!({
            "apiVersion": "pca.ncp-issuer.dev/v1alpha1", "kind": "ClusterPrivateCA",
            "metadata": {"name": cluster_ca},
            "spec": {"caTag": ca, "endpoint": support::emulator().base_url(),
                     "credentials": {"secretRef": {"name": "ncp-cluster"}},
                     "subordinate": {"secretName": format!("{cluster_ca}-intermediate")}}
        }),
    )
    .await
    .expect("ClusterPrivateCA applied");
    // In subordinate mode: the chart lets it keep its intermediate in the cluster resource namespace.
    issuer_condition(
        &admin,
        None,
        "ClusterPrivateCA",
        &cluster_ca,
        "True",
        "IntermediateReady",
    )
    .await;
    // A subordinate PrivateCA in a namespace the values do not list cannot write its Secret.
    support::apply(
        &dynamic(
            &admin,
            Some(&ns),
            "pca.ncp-issuer.dev",
            "v1alpha1",
            "PrivateCA",
            "privatecas",
        ),
        json!({
            "apiVersion": "pca.ncp-issuer.dev/v1alpha1", "kind": "PrivateCA",
            "metadata": {"name": "sub"},
            "spec": {"caTag": ca, "endpoint": support::emulator().base_url(),
                     "credentials": {"secretRef": {"name": "ncp-pca"}},
                     "subordinate": {"secretName": "sub-intermediate"}}
        }),
    )
    .await
    .expect("PrivateCA applied");
    let forbidden = issuer_condition(
        &admin,
        Some(&ns),
        "PrivateCA",
        "sub",
        "False",
        "SecretForbidden",
    )
    .await;
    assert!(
        forbidden["message"]
            .as_str()
            .unwrap_or_default()
            .contains("forbidden"),
        "{forbidden}"
    );
    support::ecdsa_certificate(
        &admin,
        &ns,
        "api",
        issuer_ref(&cluster_ca, "ClusterPrivateCA"),
    )
    .await;
    let (tls2, ca_crt2) = issued_secret(&admin, &ns, "api", "api-tls").await;
    assert!(openssl_verify(&tls2, &ca_crt2).is_ok());

    // Events were published (events.k8s.io create).
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(admin.clone(), &ns);
    eventually(
        "an event from the operator on the PrivateCA",
        Duration::from_secs(30),
        || {
            let events = events.clone();
            async move {
                let list = events.list(&ListParams::default()).await.ok()?;
                list.items
                    .iter()
                    .any(|e| {
                        e.reporting_controller.as_deref() == Some("ncp-pca-issuer")
                            && e.regarding.as_ref().and_then(|r| r.kind.as_deref())
                                == Some("PrivateCA")
                    })
                    .then_some(())
            }
        },
    )
    .await;

    // Revocation on deletion: the Certificate goes, its request is garbage collected, the operator
    // reads the Certificate (gone) and revokes, then releases its finalizer.
    let certs = dynamic(
        &admin,
        Some(&ns),
        "cert-manager.io",
        "v1",
        "Certificate",
        "certificates",
    );
    certs
        .delete("web", &DeleteParams::background())
        .await
        .expect("delete Certificate");
    let serial = serial_of(&tls);
    eventually(
        "the deleted Certificate's serial in the CRL",
        Duration::from_secs(90),
        || {
            let (ca, serial) = (ca.clone(), serial.clone());
            async move { in_crl(&ca, &serial).await.filter(|&revoked| revoked) }
        },
    )
    .await;
    let crs = dynamic(
        &admin,
        Some(&ns),
        "cert-manager.io",
        "v1",
        "CertificateRequest",
        "certificaterequests",
    );
    eventually(
        "the revoked request to be released and gone",
        Duration::from_secs(60),
        || {
            let crs = crs.clone();
            async move {
                let list = crs.list(&ListParams::default()).await.ok()?;
                let left = list.items.iter().any(|r| {
                    r.metadata
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get("cert-manager.io/certificate-name"))
                        .map(String::as_str)
                        == Some("web")
                });
                (!left).then_some(())
            }
        },
    )
    .await;

    assert!(
        operator.exited().is_none(),
        "the operator exited:\n{}",
        operator.log_tail(40)
    );
    let said = std::fs::read_to_string(&log).expect("operator log");
    // Refusals other than the Secret write that the subordinate PrivateCA above is meant to be refused.
    let refused =
        |l: &&str| l.to_lowercase().contains("forbidden") && !l.contains("sub-intermediate");
    assert!(
        !said.lines().any(|l| refused(&l)),
        "the operator was refused something:\n{}",
        said.lines()
            .filter(refused)
            .take(10)
            .collect::<Vec<_>>()
            .join("\n")
    );
    operator.stop();
}

/// The HTTP status of a refused call (`None` when it succeeded).
fn refused<T>(result: Result<T, kube::Error>) -> Option<u16> {
    match result {
        Ok(_) => None,
        Err(kube::Error::Api(status)) => Some(status.code),
        Err(e) => panic!("not an API answer: {e}"),
    }
}

#[tokio::test]
async fn the_charts_service_account_is_forbidden_what_the_operator_does_not_need() {
    use k8s_openapi::api::coordination::v1::Lease;
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let release = installed();
    let dir = tempfile::tempdir().expect("tempdir");
    let sa = client_from(&token_kubeconfig(release, dir.path()).await).await;
    let other = namespace("chart-deny").await;
    let admin = client().await;
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "precious"}, "stringData": {"k": "v"}
    }))
    .expect("secret");
    Api::<Secret>::namespaced(admin.clone(), &other)
        .create(&PostParams::default(), &secret)
        .await
        .expect("admin creates a secret");

    // What it needs works with this token (so the refusals below are RBAC, not a broken token).
    let secrets: Api<Secret> = Api::namespaced(sa.clone(), &other);
    assert!(secrets.get("precious").await.is_ok(), "get secret");
    assert!(
        Api::<Secret>::all(sa.clone())
            .list_metadata(&ListParams::default().limit(1))
            .await
            .is_ok(),
        "list secrets cluster-wide"
    );

    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let dry_delete = DeleteParams {
        dry_run: true,
        ..DeleteParams::default()
    };
    let dry_patch = PatchParams {
        dry_run: true,
        ..PatchParams::default()
    };
    let crds: Api<CustomResourceDefinition> = Api::all(sa.clone());
    assert_eq!(
        refused(
            crds.delete("privatecas.pca.ncp-issuer.dev", &dry_delete)
                .await
        ),
        Some(403),
        "delete a CustomResourceDefinition"
    );
    assert_eq!(
        refused(
            Api::<Pod>::namespaced(sa.clone(), &release.namespace)
                .list(&ListParams::default())
                .await
        ),
        Some(403),
        "list pods"
    );
    assert_eq!(
        refused(
            Api::<Pod>::all(sa.clone())
                .list(&ListParams::default())
                .await
        ),
        Some(403),
        "list pods cluster-wide"
    );
    let mut fresh = secret.clone();
    fresh.metadata.name = Some("planted".into());
    assert_eq!(
        refused(secrets.create(&dry, &fresh).await),
        Some(403),
        "create a secret"
    );
    let current = secrets.get("precious").await.expect("get");
    assert_eq!(
        refused(secrets.replace("precious", &dry, &current).await),
        Some(403),
        "update a secret"
    );
    assert_eq!(
        refused(
            secrets
                .patch(
                    "precious",
                    &dry_patch,
                    &Patch::Merge(json!({"stringData": {"k": "w"}}))
                )
                .await
        ),
        Some(403),
        "patch a secret"
    );
    assert_eq!(
        refused(secrets.delete("precious", &dry_delete).await),
        Some(403),
        "delete a secret"
    );
    // Leases only in the release namespace, and only its own Lease once it exists.
    let lease: Lease =
        serde_json::from_value(json!({"metadata": {"name": "ncp-pca-issuer"}})).expect("lease");
    assert_eq!(
        refused(
            Api::<Lease>::namespaced(sa.clone(), &other)
                .create(&dry, &lease)
                .await
        ),
        Some(403),
        "create a Lease outside the release namespace"
    );
    assert_eq!(
        refused(
            Api::<Lease>::namespaced(sa.clone(), &release.namespace)
                .get("someone-elses-lease")
                .await
        ),
        Some(403),
        "read another Lease in the release namespace"
    );
    // Our issuers' spec and cert-manager's objects are not ours to write.
    let pcas = dynamic(
        &sa,
        Some(&other),
        "pca.ncp-issuer.dev",
        "v1alpha1",
        "PrivateCA",
        "privatecas",
    );
    assert_eq!(
        refused(
            pcas.create(
                &dry,
                &serde_json::from_value(json!({
                    "apiVersion": "pca.ncp-issuer.dev/v1alpha1", "kind": "PrivateCA",
                    "metadata": {"name": "x"},
                    "spec": {"caTag": "t", "credentials": {"secretRef": {"name": "s"}}}
                }))
                .expect("object"),
            )
            .await
        ),
        Some(403),
        "create a PrivateCA"
    );
    let crs = dynamic(
        &sa,
        Some(&other),
        "cert-manager.io",
        "v1",
        "CertificateRequest",
        "certificaterequests",
    );
    assert_eq!(
        refused(crs.delete("any", &dry_delete).await),
        Some(403),
        "delete a CertificateRequest"
    );
    let certificates = dynamic(
        &sa,
        Some(&other),
        "cert-manager.io",
        "v1",
        "Certificate",
        "certificates",
    );
    assert_eq!(
        refused(certificates.list(&ListParams::default()).await),
        Some(403),
        "list Certificates"
    );
    // The operator never approves its own requests.
    assert!(
        !signer_allowed(
            &admin,
            &format!(
                "system:serviceaccount:{}:{}",
                release.namespace, release.service_account
            ),
            "privatecas.pca.ncp-issuer.dev/*"
        )
        .await,
        "the operator may approve requests"
    );
}

/// SubjectAccessReview for `approve` on `signers.cert-manager.io` named `signer`, exactly as
/// cert-manager's approval webhook asks it.
async fn signer_allowed(admin: &kube::Client, user: &str, signer: &str) -> bool {
    use k8s_openapi::api::authorization::v1::SubjectAccessReview;
    let mut groups = vec!["system:authenticated".to_string()];
    if let Some(rest) = user.strip_prefix("system:serviceaccount:") {
        groups.push("system:serviceaccounts".into());
        if let Some((ns, _)) = rest.split_once(':') {
            groups.push(format!("system:serviceaccounts:{ns}"));
        }
    }
    let review: SubjectAccessReview = serde_json::from_value(json!({
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {
            "user": user, "groups": groups,
            "resourceAttributes": {
                "group": "cert-manager.io", "resource": "signers", "verb": "approve",
                "name": signer, "version": "*"
            }
        }
    }))
    .expect("review");
    Api::<SubjectAccessReview>::all(admin.clone())
        .create(&PostParams::default(), &review)
        .await
        .expect("SubjectAccessReview")
        .status
        .expect("status")
        .allowed
}

/// The signer names cert-manager's webhook checks for a request (any one allowed is enough):
/// `<plural>.<group>/*`, then `…/<namespace>.<name>` or, for a cluster-scoped issuer, `…/<name>`.
/// RBAC compares resourceNames literally (no globbing): the chart's `…/*` entries match the first
/// name, which the webhook always asks about, so they cover every issuer of the kind.
fn webhook_signer_names(plural: &str, namespace: Option<&str>, name: &str) -> [String; 2] {
    let base = format!("{plural}.pca.ncp-issuer.dev");
    [
        format!("{base}/*"),
        match namespace {
            Some(ns) => format!("{base}/{ns}.{name}"),
            None => format!("{base}/{name}"),
        },
    ]
}

async fn webhook_allows(admin: &kube::Client, user: &str, names: &[String; 2]) -> bool {
    for name in names {
        if signer_allowed(admin, user, name).await {
            return true;
        }
    }
    false
}

#[tokio::test]
async fn cert_managers_service_account_may_approve_requests_for_both_kinds_and_no_one_else_may() {
    installed();
    let admin = client().await;
    let private = webhook_signer_names("privatecas", Some("team-a"), "pca");
    let cluster_wide = webhook_signer_names("clusterprivatecas", None, "ncp");
    for names in [&private, &cluster_wide] {
        assert!(
            signer_allowed(&admin, CERT_MANAGER_SA, &names[0]).await,
            "cert-manager may not approve {}",
            names[0]
        );
        assert!(webhook_allows(&admin, CERT_MANAGER_SA, names).await);
        for user in [
            "system:serviceaccount:cert-manager:someone-else",
            "system:serviceaccount:team-a:default",
            "jane",
        ] {
            assert!(
                !webhook_allows(&admin, user, names).await,
                "{user} may approve {names:?}"
            );
        }
    }
    // Only our signers: cert-manager's own issuers, and other groups, are not granted by our chart.
    for other in [
        "issuers.cert-manager.io/*",
        "clusterissuers.cert-manager.io/*",
        "privatecas.example.com/*",
    ] {
        assert!(
            !signer_allowed(&admin, CERT_MANAGER_SA, other).await,
            "the chart grants {other}"
        );
    }
}
