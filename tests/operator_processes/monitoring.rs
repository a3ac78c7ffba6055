//! The chart's monitoring: the PrometheusRule checked and unit tested with `promtool` against series
//! shaped as the operator exports them, and the Grafana dashboard. These tests start no control plane
//! and no operator (`helm template` and `promtool` only); the scrape of a running operator that checks
//! every name used here is in `process.rs`.

use ncp_pca_issuer::metrics::{IssuerGauges, Metrics};
use ncp_pca_issuer::ncp::Operation;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn chart_dir() -> PathBuf {
    repo().join("charts/ncp-pca-issuer")
}

/// The dashboard file the chart ships.
pub fn dashboard_path() -> PathBuf {
    chart_dir().join("dashboards/ncp-pca-issuer.json")
}

/// The PrometheusRule template.
pub fn rule_template_path() -> PathBuf {
    chart_dir().join("templates/prometheusrule.yaml")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `$PROMTOOL_BIN/promtool` if set, else what `tests/cluster/build-promtool.sh` built (cached).
fn promtool() -> &'static Path {
    static PROMTOOL: OnceLock<PathBuf> = OnceLock::new();
    PROMTOOL.get_or_init(|| {
        let dir = match std::env::var_os("PROMTOOL_BIN") {
            Some(dir) => PathBuf::from(dir),
            None => {
                let out = Command::new("bash")
                    .arg(repo().join("tests/cluster/build-promtool.sh"))
                    .stderr(Stdio::inherit())
                    .output()
                    .expect("build-promtool.sh runs");
                assert!(out.status.success(), "build-promtool.sh failed");
                let stdout = String::from_utf8_lossy(&out.stdout);
                PathBuf::from(stdout.lines().last().unwrap_or_default().trim())
            }
        };
        let bin = dir.join("promtool");
        assert!(bin.is_file(), "no promtool in {}", dir.display());
        bin
    })
}

/// `helm template` of the chart with `--set` values (helm from the control plane binaries; no
/// cluster needed).
fn render(sets: &[&str]) -> String {
    render_with_release("ncp-pca-issuer", sets)
}

/// [`render`] as release `release`.
pub fn render_with_release(release: &str, sets: &[&str]) -> String {
    let bin = ncp_pca_issuer::devcluster::locate_binaries().expect("control plane binaries");
    let home = tempfile::tempdir().expect("helm home");
    let mut cmd = Command::new(bin.join("helm"));
    cmd.env("HELM_CACHE_HOME", home.path().join("cache"))
        .env("HELM_CONFIG_HOME", home.path().join("config"))
        .env("HELM_DATA_HOME", home.path().join("data"))
        .stdin(Stdio::null())
        .args(["template", release])
        .arg(chart_dir())
        .args(["--namespace", "cert-manager"]);
    for set in sets {
        cmd.args(["--set", set]);
    }
    let out = cmd.output().expect("helm runs");
    assert!(
        out.status.success(),
        "helm template failed:\n{}",
        text(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The documents of a multi-document YAML stream.
pub fn documents(yaml: &str) -> Vec<Value> {
    yaml.split("\n---")
        .filter(|d| {
            d.lines().any(|l| {
                let t = l.trim();
                !t.is_empty() && !t.starts_with('#') && t != "---"
            })
        })
        .map(|d| {
            serde_saphyr::from_str(d).unwrap_or_else(|e| panic!("YAML does not parse: {e}\n{d}"))
        })
        .collect()
}

fn of_kind(docs: &[Value], kind: &str) -> Vec<Value> {
    docs.iter().filter(|d| d["kind"] == kind).cloned().collect()
}

/// Every `ncp_pca_issuer_*` name in `text`.
pub fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("ncp_pca_issuer_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

/// Every metric name the chart's alerts and dashboard query.
pub fn names_the_chart_uses() -> BTreeSet<String> {
    let rules = std::fs::read_to_string(rule_template_path()).expect("rule template");
    let dashboard = std::fs::read_to_string(dashboard_path()).expect("dashboard");
    let mut names = metric_names(&rules);
    names.extend(metric_names(&dashboard));
    names
}

/// Labels Prometheus adds to every scraped series (the target's), not the operator.
const TARGET_LABELS: [&str; 4] = ["instance", "job", "pod", "container"];

/// `(series name, label names)` of every series on `page` (OpenMetrics text).
fn shapes(page: &str) -> BTreeSet<(String, BTreeSet<String>)> {
    page.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let end = l.find(['{', ' ']).unwrap_or(l.len());
            let labels = l[end..]
                .strip_prefix('{')
                .and_then(|s| s.split_once('}'))
                .map(|(inside, _)| {
                    inside
                        .split(',')
                        .filter_map(|kv| kv.split_once('=').map(|(k, _)| k.trim().to_string()))
                        .collect()
                })
                .unwrap_or_default();
            (l[..end].to_string(), labels)
        })
        .collect()
}

/// What a busy operator exports: every kind of series, with an issuer in subordinate mode.
fn busy_operator_page() -> String {
    let m = Metrics::new();
    m.observe_ncp_call(
        Operation::SignEndCsr,
        "NcpThrottled",
        Duration::from_secs(12),
    );
    m.certificate_failed("PrivateCA", "NcpRefused");
    m.set_leader(true);
    m.set_issuer(
        "PrivateCA",
        "team-a",
        "sub",
        &IssuerGauges {
            ready: true,
            ca_not_after: Some(2_000_000_000),
            ca_signing_count: Some(1),
            ca_issuances_remaining: Some(29_999),
            ca_signing_limit: Some(30_000),
            intermediate_not_after: Some(1_900_000_000),
            intermediate_renewal: Some(1_800_000_000),
        },
    );
    m.encode()
}

/// The alerts of the rendered rule's groups.
fn alerts(rule: &Value) -> Vec<Value> {
    rule["spec"]["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .collect()
}

const RUNBOOKS: &str = "https://runbooks.example/alerts.md";

#[test]
fn monitoring_is_off_by_default_and_renders_when_enabled() {
    let docs = documents(&render(&[]));
    assert!(of_kind(&docs, "PrometheusRule").is_empty());
    assert!(
        of_kind(&docs, "ConfigMap")
            .iter()
            .all(|c| c["metadata"]["labels"]["grafana_dashboard"].is_null()),
        "a dashboard ConfigMap by default"
    );

    let docs = documents(&render(&[
        "prometheusRule.enabled=true",
        "prometheusRule.labels.release=kube-prometheus",
        "prometheusRule.alertLabels.team=pki",
        "dashboard.enabled=true",
        "dashboard.namespace=monitoring",
    ]));
    let rules = of_kind(&docs, "PrometheusRule");
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0]["metadata"]["labels"]["release"], "kube-prometheus");
    let alerts = alerts(&rules[0]);
    assert!(alerts.len() >= 9, "{alerts:?}");
    for alert in &alerts {
        assert_eq!(alert["labels"]["team"], "pki", "{alert}");
        assert!(alert["labels"]["severity"].is_string(), "{alert}");
        for key in ["summary", "description"] {
            assert!(
                alert["annotations"][key]
                    .as_str()
                    .is_some_and(|s| !s.is_empty()),
                "{key} of {alert}"
            );
        }
        // No runbook_url unless the values say where the runbooks are.
        assert!(alert["annotations"]["runbook_url"].is_null(), "{alert}");
    }

    let dashboards: Vec<Value> = of_kind(&docs, "ConfigMap")
        .into_iter()
        .filter(|c| c["metadata"]["labels"]["grafana_dashboard"] == "1")
        .collect();
    assert_eq!(dashboards.len(), 1);
    assert_eq!(dashboards[0]["metadata"]["namespace"], "monitoring");
    let shipped: Value =
        serde_json::from_str(&std::fs::read_to_string(dashboard_path()).expect("dashboard"))
            .expect("the dashboard is JSON");
    let in_map: Value = serde_json::from_str(
        dashboards[0]["data"]["ncp-pca-issuer.json"]
            .as_str()
            .expect("dashboard data"),
    )
    .expect("the ConfigMap's dashboard is JSON");
    assert_eq!(in_map, shipped);
}

#[test]
fn every_alert_has_a_runbook_section_in_the_docs() {
    let docs = std::fs::read_to_string(repo().join("docs/metrics-and-alerts.md"))
        .expect("docs/metrics-and-alerts.md");
    let headings: BTreeSet<String> = docs
        .lines()
        .filter_map(|l| l.strip_prefix("### "))
        .map(|h| h.trim().to_lowercase())
        .collect();
    let rule = documents(&render(&[
        "prometheusRule.enabled=true",
        &format!("prometheusRule.runbookBaseUrl={RUNBOOKS}"),
    ]));
    for alert in alerts(&of_kind(&rule, "PrometheusRule")[0]) {
        let name = alert["alert"].as_str().expect("alert name");
        assert!(
            headings.contains(&name.to_lowercase()),
            "no `### {name}` runbook in docs/metrics-and-alerts.md"
        );
        assert_eq!(
            alert["annotations"]["runbook_url"],
            format!("{RUNBOOKS}#{}", name.to_lowercase()),
            "{alert}"
        );
    }
}

#[test]
fn the_rendered_rules_pass_promtool_check_and_each_alert_fires_and_stays_quiet_in_promtool_test() {
    let rule = documents(&render(&[
        "prometheusRule.enabled=true",
        &format!("prometheusRule.runbookBaseUrl={RUNBOOKS}"),
    ]));
    let rule = &of_kind(&rule, "PrometheusRule")[0];
    let dir = tempfile::tempdir().expect("temp dir");
    let rules_file = dir.path().join("alerts.rules.yaml");
    // JSON is YAML: the rule's spec (`groups:`) is exactly a Prometheus rule file.
    std::fs::write(&rules_file, rule["spec"].to_string()).expect("rules written");
    let test_source = repo().join("tests/monitoring/alerts.test.yaml");
    let test_file = dir.path().join("alerts.test.yaml");
    std::fs::copy(&test_source, &test_file).expect("test file copied");

    let check = Command::new(promtool())
        .args(["check", "rules"])
        .arg(&rules_file)
        .output()
        .expect("promtool runs");
    assert!(
        check.status.success(),
        "promtool check rules:\n{}",
        text(&check)
    );

    let run = Command::new(promtool())
        .args(["test", "rules"])
        .arg(&test_file)
        .output()
        .expect("promtool runs");
    assert!(run.status.success(), "promtool test rules:\n{}", text(&run));

    // Every alert is seen both firing and quiet (in some test, at some time).
    let tests: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(&test_source).expect("test file"))
            .expect("test file parses");
    let mut seen: BTreeMap<String, (bool, bool)> = BTreeMap::new();
    for case in tests["tests"].as_array().expect("tests") {
        for t in case["alert_rule_test"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            let name = t["alertname"].as_str().unwrap_or_default().to_string();
            let firing = t["exp_alerts"].as_array().is_some_and(|a| !a.is_empty());
            let entry = seen.entry(name).or_default();
            entry.0 |= firing;
            entry.1 |= !firing;
        }
    }
    for alert in alerts(rule) {
        let name = alert["alert"].as_str().expect("alert name");
        assert_eq!(
            seen.get(name),
            Some(&(true, true)),
            "{name} is not tested both firing and quiet"
        );
    }
}

#[test]
fn the_promtool_test_series_are_shaped_as_the_operator_exports_them() {
    let exported = shapes(&busy_operator_page());
    let tests: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(repo().join("tests/monitoring/alerts.test.yaml"))
            .expect("test file"),
    )
    .expect("test file parses");
    let mut checked = 0;
    for case in tests["tests"].as_array().expect("tests") {
        for s in case["input_series"].as_array().cloned().unwrap_or_default() {
            let series = s["series"].as_str().expect("series");
            let (name, mut labels) = shapes(&format!("{series} 0"))
                .into_iter()
                .next()
                .expect("a series");
            labels.retain(|l| !TARGET_LABELS.contains(&l.as_str()));
            assert!(
                exported.contains(&(name.clone(), labels.clone())),
                "the operator exports no {name} with labels {labels:?}; it exports {exported:#?}"
            );
            checked += 1;
        }
    }
    assert!(checked > 20, "{checked} series");
}

#[test]
fn the_dashboard_is_valid_and_queries_only_what_the_operator_exports() {
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(dashboard_path()).expect("dashboard"))
            .expect("the dashboard is JSON");
    assert_eq!(dashboard["uid"], "ncp-pca-issuer");
    let panels = dashboard["panels"].as_array().expect("panels");
    let titles: Vec<&str> = panels.iter().filter_map(|p| p["title"].as_str()).collect();
    for wanted in [
        "Issuance rate",
        "Request outcomes",
        "NCP latency by operation (p50, p99)",
        "Issuances remaining per CA",
        "Days to expiry",
        "Leader",
    ] {
        assert!(
            titles.contains(&wanted),
            "no {wanted:?} panel in {titles:?}"
        );
    }
    let mut ids = BTreeSet::new();
    for p in panels {
        assert!(ids.insert(p["id"].as_i64().expect("panel id")), "{p}");
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{p}");
        for t in targets {
            assert!(
                t["expr"]
                    .as_str()
                    .is_some_and(|e| e.contains("ncp_pca_issuer_")),
                "{t}"
            );
        }
    }
    let page = busy_operator_page();
    let exported: BTreeSet<String> = shapes(&page).into_iter().map(|(n, _)| n).collect();
    let wanted = names_the_chart_uses();
    let missing: Vec<&String> = wanted.iter().filter(|n| !exported.contains(*n)).collect();
    assert!(missing.is_empty(), "not exported: {missing:?}");
}
