//! `ncp-pca-issuer migrate`: from NAVER's issuer (`privateca-issuer.ncloud.com`, kinds
//! `NcloudPCAIssuer` / `NcloudPCAClusterIssuer`) to `PrivateCA` / `ClusterPrivateCA`.
//!
//! Reads NAVER's issuer objects (from the cluster, or from YAML files), prints the equivalent issuers
//! as YAML, and as YAML comments the Certificates and Ingresses whose issuer reference must change,
//! each with the `kubectl` line that re-points it. `--apply` creates the new issuers; NAVER's are
//! never touched. The mapping itself ([`plan`]) is a pure function.

use crate::ncp::GOV_ENDPOINT;
use clap::Args;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::path::PathBuf;

/// NAVER's API group.
pub const NAVER_GROUP: &str = "privateca-issuer.ncloud.com";
/// NAVER's namespaced kind.
pub const NAVER_ISSUER: &str = "NcloudPCAIssuer";
/// NAVER's cluster-scoped kind.
pub const NAVER_CLUSTER_ISSUER: &str = "NcloudPCAClusterIssuer";
const OUR_GROUP: &str = "pca.ncp-issuer.dev";
const FIELD_MANAGER: &str = "ncp-pca-issuer-migrate";

/// `migrate` arguments.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// Kubeconfig file (default: in-cluster configuration, then $KUBECONFIG / ~/.kube/config).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Read NAVER's issuer objects from these YAML files (multi-document) instead of the cluster.
    /// Certificates and Ingresses are then not looked up.
    #[arg(long = "filename", short = 'f')]
    pub files: Vec<PathBuf>,
    /// Namespace where the controller reads `ClusterPrivateCA` credentials Secrets.
    #[arg(
        long,
        env = "CLUSTER_RESOURCE_NAMESPACE",
        default_value = "ncp-pca-issuer"
    )]
    pub cluster_resource_namespace: String,
    /// Create the new issuers in the cluster (server-side apply). NAVER's issuers are never deleted.
    #[arg(long, conflicts_with = "files")]
    pub apply: bool,
}

/// Why `migrate` failed.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file is not YAML.
    #[error("{path} is not YAML: {message}")]
    Yaml {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// No Kubernetes client could be configured.
    #[error("cannot configure a kubernetes client: {0}")]
    Kubeconfig(String),
    /// A call to the apiserver failed.
    #[error("cannot {what}: {source}")]
    Kube {
        /// What was being done.
        what: String,
        /// The cause.
        source: kube::Error,
    },
    /// The output could not be rendered.
    #[error("cannot render yaml: {0}")]
    Render(String),
}

/// One of NAVER's issuers, as read.
#[derive(Debug, Clone, PartialEq)]
pub struct NaverIssuer {
    /// `true` for `NcloudPCAClusterIssuer`.
    pub cluster: bool,
    /// Name.
    pub name: String,
    /// Namespace (`None` for a cluster issuer).
    pub namespace: Option<String>,
    /// Its `spec`.
    pub spec: Value,
}

impl NaverIssuer {
    /// Reads an object of one of NAVER's kinds (`None` for any other object).
    #[must_use]
    pub fn from_object(object: &Value) -> Option<Self> {
        let group = object["apiVersion"].as_str()?.split('/').next()?;
        let cluster = match object["kind"].as_str()? {
            NAVER_ISSUER => false,
            NAVER_CLUSTER_ISSUER => true,
            _ => return None,
        };
        if group != NAVER_GROUP {
            return None;
        }
        Some(Self {
            cluster,
            name: object["metadata"]["name"].as_str()?.to_string(),
            namespace: if cluster {
                None
            } else {
                Some(
                    object["metadata"]["namespace"]
                        .as_str()
                        .unwrap_or("default")
                        .to_string(),
                )
            },
            spec: object.get("spec").cloned().unwrap_or(Value::Null),
        })
    }
}

/// A Certificate or Ingress that names one of NAVER's issuers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// `Certificate` or `Ingress`.
    pub kind: &'static str,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// NAVER's issuer is a cluster issuer.
    pub cluster: bool,
    /// The issuer's name.
    pub issuer: String,
}

/// What `migrate` prints (and, with `--apply`, creates).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// The new issuers.
    pub issuers: Vec<Value>,
    /// Things the user must do by hand (copy a Secret, check an endpoint).
    pub notes: Vec<String>,
    /// One `kubectl` line per Certificate or Ingress to re-point.
    pub patches: Vec<String>,
}

/// Maps NAVER's `ncloudApiGw` to our `spec.endpoint` (`None`: the default public endpoint).
fn endpoint(gateway: &str, notes: &mut Vec<String>, who: &str) -> Option<String> {
    let gw = gateway.trim().trim_end_matches('/');
    if gw.is_empty() {
        return None;
    }
    let host = gw
        .split_once("://")
        .map_or(gw, |(_, rest)| rest)
        .split(['/', ':'])
        .next()
        .unwrap_or_default();
    if host.ends_with("gov-ntruss.com") {
        Some(GOV_ENDPOINT.to_string())
    } else if host.ends_with("fin-ntruss.com") {
        notes.push(format!(
            "{who}: the financial-cloud Private CA endpoint https://pca.apigw.fin-ntruss.com is not verified; check it"
        ));
        Some("https://pca.apigw.fin-ntruss.com".to_string())
    } else if host.ends_with("ntruss.com") {
        // NAVER's API gateway of the public cloud: our default endpoint.
        None
    } else {
        Some(gw.to_string())
    }
}

/// The mapping: NAVER's issuers to ours, and the re-pointing of their users. Pure.
#[must_use]
pub fn plan(
    naver: &[NaverIssuer],
    references: &[Reference],
    cluster_resource_namespace: &str,
) -> Plan {
    let mut out = Plan::default();
    for issuer in naver {
        let who = match &issuer.namespace {
            Some(ns) => format!("{NAVER_ISSUER} {ns}/{}", issuer.name),
            None => format!("{NAVER_CLUSTER_ISSUER} {}", issuer.name),
        };
        let spec = &issuer.spec;
        let Some(ca_tag) = spec["caTag"].as_str().filter(|t| !t.is_empty()) else {
            out.notes.push(format!("{who}: no caTag; skipped"));
            continue;
        };
        let secret = &spec["secretRef"];
        let Some(secret_name) = secret["name"].as_str().filter(|n| !n.is_empty()) else {
            out.notes.push(format!(
                "{who}: no secretRef (NAVER's issuer then uses the controller's environment); create a Secret with NCLOUD_ACCESS_KEY and NCLOUD_SECRET_KEY and set spec.credentials.secretRef.name; skipped"
            ));
            continue;
        };
        let mut secret_ref = json!({"name": secret_name});
        if let Some(k) = secret["accessKeyIDSelector"]["key"]
            .as_str()
            .filter(|k| !k.is_empty())
        {
            secret_ref["accessKeyKey"] = json!(k);
        }
        if let Some(k) = secret["secretAccessKeySelector"]["key"]
            .as_str()
            .filter(|k| !k.is_empty())
        {
            secret_ref["secretKeyKey"] = json!(k);
        }
        let allowed_ns = issuer
            .namespace
            .as_deref()
            .unwrap_or(cluster_resource_namespace);
        if let Some(ns) = secret["namespace"]
            .as_str()
            .filter(|ns| !ns.is_empty() && *ns != allowed_ns)
        {
            out.notes.push(format!(
                "{who}: its Secret {ns}/{secret_name} must be copied to namespace {allowed_ns} (credentials are read only there)"
            ));
        } else if issuer.cluster && secret["namespace"].as_str().is_none_or(str::is_empty) {
            out.notes.push(format!(
                "{who}: make sure Secret {secret_name} exists in namespace {allowed_ns}"
            ));
        }
        let mut new_spec = json!({"caTag": ca_tag, "credentials": {"secretRef": secret_ref}});
        if let Some(ep) = endpoint(
            spec["ncloudApiGw"].as_str().unwrap_or_default(),
            &mut out.notes,
            &who,
        ) {
            new_spec["endpoint"] = json!(ep);
        }
        let mut metadata = json!({"name": issuer.name});
        if let Some(ns) = &issuer.namespace {
            metadata["namespace"] = json!(ns);
        }
        out.issuers.push(json!({
            "apiVersion": format!("{OUR_GROUP}/v1alpha1"),
            "kind": if issuer.cluster { "ClusterPrivateCA" } else { "PrivateCA" },
            "metadata": metadata,
            "spec": new_spec,
        }));
    }
    for r in references {
        let kind = if r.cluster {
            "ClusterPrivateCA"
        } else {
            "PrivateCA"
        };
        out.patches.push(match r.kind {
            "Ingress" => format!(
                "kubectl -n {} annotate ingress {} --overwrite cert-manager.io/issuer-group={OUR_GROUP} cert-manager.io/issuer-kind={kind}",
                r.namespace, r.name
            ),
            _ => format!(
                "kubectl -n {} patch certificate {} --type merge -p '{}'",
                r.namespace,
                r.name,
                json!({"spec": {"issuerRef": {"group": OUR_GROUP, "kind": kind, "name": r.issuer}}})
            ),
        });
    }
    out
}

/// The Certificate's reference to one of NAVER's issuers, if it has one.
#[must_use]
pub fn certificate_reference(object: &Value) -> Option<Reference> {
    let issuer_ref = &object["spec"]["issuerRef"];
    if issuer_ref["group"].as_str() != Some(NAVER_GROUP) {
        return None;
    }
    let cluster = match issuer_ref["kind"].as_str()? {
        NAVER_ISSUER => false,
        NAVER_CLUSTER_ISSUER => true,
        _ => return None,
    };
    Some(Reference {
        kind: "Certificate",
        namespace: object["metadata"]["namespace"].as_str()?.to_string(),
        name: object["metadata"]["name"].as_str()?.to_string(),
        cluster,
        issuer: issuer_ref["name"].as_str()?.to_string(),
    })
}

/// The Ingress's reference (cert-manager's ingress-shim annotations) to one of NAVER's issuers.
#[must_use]
pub fn ingress_reference(ingress: &Ingress) -> Option<Reference> {
    let annotations = ingress.metadata.annotations.as_ref()?;
    let get = |k: &str| annotations.get(k).map(String::as_str);
    if get("cert-manager.io/issuer-group") != Some(NAVER_GROUP) {
        return None;
    }
    let (cluster, issuer) = match (
        get("cert-manager.io/issuer-kind"),
        get("cert-manager.io/issuer"),
        get("cert-manager.io/cluster-issuer"),
    ) {
        (Some(NAVER_CLUSTER_ISSUER), Some(name), _) | (_, None, Some(name)) => (true, name),
        (Some(NAVER_ISSUER) | None, Some(name), _) => (false, name),
        _ => return None,
    };
    Some(Reference {
        kind: "Ingress",
        namespace: ingress.metadata.namespace.clone()?,
        name: ingress.metadata.name.clone()?,
        cluster,
        issuer: issuer.to_string(),
    })
}

/// Renders the plan: the issuers as YAML documents, notes and `kubectl` lines as comments.
///
/// # Errors
/// When YAML cannot be rendered.
pub fn render(plan: &Plan) -> Result<String, MigrateError> {
    let mut out = String::new();
    out.push_str(
        "# ncp-pca-issuer migrate: issuers equivalent to NAVER's (NAVER's are left as they are)\n",
    );
    for issuer in &plan.issuers {
        out.push_str("---\n");
        out.push_str(
            &serde_saphyr::to_string(issuer).map_err(|e| MigrateError::Render(e.to_string()))?,
        );
    }
    if !plan.notes.is_empty() {
        out.push_str("---\n# To do by hand:\n");
        for n in &plan.notes {
            let _ = writeln!(out, "#   {n}");
        }
    }
    if plan.patches.is_empty() {
        out.push_str("# No Certificate or Ingress refers to NAVER's issuers.\n");
    } else {
        out.push_str(
            "# Re-point these Certificates and Ingresses once the new issuers are Ready:\n",
        );
        for p in &plan.patches {
            let _ = writeln!(out, "# {p}");
        }
    }
    Ok(out)
}

fn dynamic(
    client: &kube::Client,
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
) -> Api<DynamicObject> {
    let ar =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
    Api::all_with(client.clone(), &ar)
}

/// Lists every object of a kind, `[]` when the kind is not installed.
async fn list_all(api: &Api<DynamicObject>, what: &str) -> Result<Vec<Value>, MigrateError> {
    match api.list(&ListParams::default()).await {
        Ok(list) => list
            .items
            .into_iter()
            .map(|o| serde_json::to_value(o).map_err(|e| MigrateError::Render(e.to_string())))
            .collect(),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(Vec::new()),
        Err(source) => Err(MigrateError::Kube {
            what: format!("list {what}"),
            source,
        }),
    }
}

async fn client(kubeconfig: Option<&std::path::Path>) -> Result<kube::Client, MigrateError> {
    let err = |e: &dyn std::fmt::Display| MigrateError::Kubeconfig(e.to_string());
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path).map_err(|e| err(&e))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| err(&e))?
        }
        None => kube::Config::infer().await.map_err(|e| err(&e))?,
    };
    kube::Client::try_from(config).map_err(|e| err(&e))
}

fn read_files(files: &[PathBuf]) -> Result<Vec<NaverIssuer>, MigrateError> {
    let mut out = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(path).map_err(|source| MigrateError::ReadFile {
            path: path.clone(),
            source,
        })?;
        let docs: Vec<Value> =
            serde_saphyr::from_multiple(&text).map_err(|e| MigrateError::Yaml {
                path: path.clone(),
                message: e.to_string(),
            })?;
        out.extend(docs.iter().filter_map(NaverIssuer::from_object));
    }
    Ok(out)
}

/// Runs `migrate` and returns what to print.
///
/// # Errors
/// When a file or the cluster cannot be read, or `--apply` fails.
pub async fn run(args: MigrateArgs) -> Result<String, MigrateError> {
    if !args.files.is_empty() {
        let naver = read_files(&args.files)?;
        return render(&plan(&naver, &[], &args.cluster_resource_namespace));
    }
    let client = client(args.kubeconfig.as_deref()).await?;
    let mut naver = Vec::new();
    for (kind, plural) in [
        (NAVER_ISSUER, "ncloudpcaissuers"),
        (NAVER_CLUSTER_ISSUER, "ncloudpcaclusterissuers"),
    ] {
        let api = dynamic(&client, NAVER_GROUP, "v1alpha1", kind, plural);
        naver.extend(
            list_all(&api, plural)
                .await?
                .iter()
                .filter_map(NaverIssuer::from_object),
        );
    }
    let certificates = dynamic(
        &client,
        "cert-manager.io",
        "v1",
        "Certificate",
        "certificates",
    );
    let mut references: Vec<Reference> = list_all(&certificates, "certificates")
        .await?
        .iter()
        .filter_map(certificate_reference)
        .collect();
    let ingresses: Api<Ingress> = Api::all(client.clone());
    let list = ingresses
        .list(&ListParams::default())
        .await
        .map_err(|source| MigrateError::Kube {
            what: "list ingresses".into(),
            source,
        })?;
    references.extend(list.items.iter().filter_map(ingress_reference));
    let plan = plan(&naver, &references, &args.cluster_resource_namespace);
    let mut out = render(&plan)?;
    if args.apply {
        for issuer in &plan.issuers {
            let (kind, plural) = match issuer["kind"].as_str() {
                Some("ClusterPrivateCA") => ("ClusterPrivateCA", "clusterprivatecas"),
                _ => ("PrivateCA", "privatecas"),
            };
            let ar = ApiResource::from_gvk_with_plural(
                &GroupVersionKind::gvk(OUR_GROUP, "v1alpha1", kind),
                plural,
            );
            let name = issuer["metadata"]["name"].as_str().unwrap_or_default();
            let api: Api<DynamicObject> = match issuer["metadata"]["namespace"].as_str() {
                Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
                None => Api::all_with(client.clone(), &ar),
            };
            api.patch(
                name,
                &PatchParams::apply(FIELD_MANAGER),
                &Patch::Apply(issuer),
            )
            .await
            .map_err(|source| MigrateError::Kube {
                what: format!("apply {kind} {name}"),
                source,
            })?;
            let _ = writeln!(out, "# applied {kind} {name}");
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naver(cluster: bool, spec: Value) -> NaverIssuer {
        NaverIssuer {
            cluster,
            name: "old".into(),
            namespace: (!cluster).then(|| "apps".to_string()),
            spec,
        }
    }

    #[test]
    fn every_field_of_naver_s_spec_maps_or_is_dropped_with_a_reason() {
        let p = plan(
            &[naver(
                false,
                json!({"caTag": "abcd1234-efgh5678", "keyType": "RSA", "keyBits": "2048",
                       "ncloudApiGw": "https://privateca.apigw.gov-ntruss.com",
                       "secretRef": {"name": "ncp", "namespace": "other",
                                     "accessKeyIDSelector": {"key": "ak"},
                                     "secretAccessKeySelector": {"key": "sk"}}}),
            )],
            &[],
            "ncp-pca-issuer",
        );
        assert_eq!(
            p.issuers,
            vec![json!({
                "apiVersion": "pca.ncp-issuer.dev/v1alpha1", "kind": "PrivateCA",
                "metadata": {"name": "old", "namespace": "apps"},
                "spec": {"caTag": "abcd1234-efgh5678", "endpoint": GOV_ENDPOINT,
                         "credentials": {"secretRef": {"name": "ncp", "accessKeyKey": "ak", "secretKeyKey": "sk"}}}
            })]
        );
        assert_eq!(p.notes.len(), 1, "{:?}", p.notes);
        assert!(p.notes[0].contains("other/ncp must be copied to namespace apps"));
    }

    #[test]
    fn public_gateway_maps_to_the_default_and_other_urls_are_kept() {
        let mut notes = Vec::new();
        assert_eq!(
            endpoint("https://ncloud.apigw.ntruss.com", &mut notes, "x"),
            None
        );
        assert_eq!(endpoint("", &mut notes, "x"), None);
        assert_eq!(
            endpoint("http://127.0.0.1:8480/", &mut notes, "x").as_deref(),
            Some("http://127.0.0.1:8480")
        );
        assert!(notes.is_empty());
    }

    #[test]
    fn issuers_without_ca_tag_or_secret_are_skipped_with_a_note() {
        let p = plan(
            &[
                naver(true, json!({"secretRef": {"name": "s"}})),
                naver(true, json!({"caTag": "a-b"})),
            ],
            &[],
            "ncp-pca-issuer",
        );
        assert!(p.issuers.is_empty());
        assert_eq!(p.notes.len(), 2);
    }

    #[test]
    fn references_become_exact_kubectl_lines() {
        let cert = json!({"metadata": {"namespace": "apps", "name": "web"},
                          "spec": {"issuerRef": {"group": NAVER_GROUP, "kind": NAVER_CLUSTER_ISSUER, "name": "old"}}});
        let r = certificate_reference(&cert).unwrap();
        assert!(r.cluster);
        let other = json!({"metadata": {"namespace": "apps", "name": "x"},
                           "spec": {"issuerRef": {"kind": "Issuer", "name": "ca"}}});
        assert!(certificate_reference(&other).is_none());
        let mut ingress = Ingress::default();
        ingress.metadata.namespace = Some("apps".into());
        ingress.metadata.name = Some("front".into());
        ingress.metadata.annotations = Some(
            [
                ("cert-manager.io/issuer", "old"),
                ("cert-manager.io/issuer-kind", NAVER_ISSUER),
                ("cert-manager.io/issuer-group", NAVER_GROUP),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        );
        let i = ingress_reference(&ingress).unwrap();
        assert!(!i.cluster);
        let p = plan(&[], &[r, i], "ncp-pca-issuer");
        assert_eq!(
            p.patches,
            vec![
                r#"kubectl -n apps patch certificate web --type merge -p '{"spec":{"issuerRef":{"group":"pca.ncp-issuer.dev","kind":"ClusterPrivateCA","name":"old"}}}'"#.to_string(),
                "kubectl -n apps annotate ingress front --overwrite cert-manager.io/issuer-group=pca.ncp-issuer.dev cert-manager.io/issuer-kind=PrivateCA".to_string(),
            ]
        );
        let text = render(&p).unwrap();
        assert!(text.contains("# kubectl -n apps patch certificate web"));
    }

    #[test]
    fn yaml_files_are_read_for_naver_kinds_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("naver.yaml");
        std::fs::write(
            &path,
            "apiVersion: privateca-issuer.ncloud.com/v1alpha1\nkind: NcloudPCAClusterIssuer\nmetadata:\n  name: c\nspec:\n  caTag: a-b\n  secretRef:\n    name: s\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n",
        )
        .unwrap();
        let read = read_files(&[path]).unwrap();
        assert_eq!(read.len(), 1);
        assert!(read[0].cluster);
        let text = render(&plan(&read, &[], "ncp-pca-issuer")).unwrap();
        assert!(text.contains("kind: ClusterPrivateCA"), "{text}");
    }
}
