//! A real local control plane for tests, the demo and development: etcd, kube-apiserver,
//! kube-controller-manager (garbage collection, namespace deletion) and the cert-manager controller,
//! all on 127.0.0.1, built from Go modules by `tests/cluster/build.sh`.
//!
//! Every child runs under a watchdog (see [`process`]) that stops it when this process exits, so a
//! panicking test binary leaves nothing behind.

pub mod certs;
pub mod process;

use base64::Engine as _;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use process::Supervised;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Field manager for what the harness applies.
const FIELD_MANAGER: &str = "ncp-pca-devcluster";
/// How long the apiserver may take to become ready on a busy 2-core machine.
const APISERVER_READY_TIMEOUT: Duration = Duration::from_secs(180);
/// How long etcd may take to become healthy.
const ETCD_READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a CRD may take to become Established.
const CRD_ESTABLISHED_TIMEOUT: Duration = Duration::from_secs(60);

/// Why the control plane could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The binaries are not there.
    #[error("cluster binaries: {0}")]
    Binaries(String),
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A component did not become ready.
    #[error("{component} did not become ready: {detail}")]
    NotReady {
        /// The component.
        component: String,
        /// What was seen, with the tail of its log.
        detail: String,
    },
    /// A Kubernetes API call failed.
    #[error("{what}: {source}")]
    Kube {
        /// What was being done.
        what: String,
        /// The cause.
        source: kube::Error,
    },
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ClusterError {
    let what = what.into();
    move |source| ClusterError::Io { what, source }
}

fn kube_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> ClusterError {
    let what = what.into();
    move |source| ClusterError::Kube { what, source }
}

/// Where the binaries are and what to start.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Directory with `etcd`, `kube-apiserver`, `kube-controller-manager`, `cert-manager-controller`,
    /// `kubectl`, `helm` and `cert-manager-crds/`.
    pub bin_dir: PathBuf,
    /// Working directory (certs, kubeconfig, etcd data, logs); created if missing.
    pub work_dir: PathBuf,
    /// Remove `work_dir` once this process has exited.
    pub remove_work_dir_on_exit: bool,
    /// Start the cert-manager controller.
    pub cert_manager: bool,
    /// cert-manager's cluster resource namespace.
    pub cert_manager_cluster_resource_namespace: String,
    /// More CRDs (multi-document YAML) to install before the controllers start.
    pub extra_crds: Vec<String>,
    /// Extra arguments of the cert-manager controller (e.g. `--controllers=…` without the approver).
    pub cert_manager_args: Vec<String>,
}

impl ClusterOptions {
    /// Options with the binaries found by [`locate_binaries`] and a fresh temporary work dir.
    ///
    /// # Errors
    /// When the binaries cannot be found or built.
    pub fn from_env() -> Result<Self, ClusterError> {
        let bin_dir = locate_binaries()?;
        let work_dir = std::env::temp_dir().join(format!(
            "ncp-pca-devcluster-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        Ok(Self {
            bin_dir,
            work_dir,
            remove_work_dir_on_exit: true,
            cert_manager: true,
            cert_manager_cluster_resource_namespace: "cert-manager".into(),
            extra_crds: Vec::new(),
            cert_manager_args: Vec::new(),
        })
    }
}

/// `$TEST_CLUSTER_BIN` if set, else the output of `tests/cluster/build.sh` (seconds when cached).
///
/// # Errors
/// When the directory is missing or the build fails.
pub fn locate_binaries() -> Result<PathBuf, ClusterError> {
    if let Some(dir) = std::env::var_os("TEST_CLUSTER_BIN") {
        let dir = PathBuf::from(dir);
        return if dir.join("kube-apiserver").is_file() {
            Ok(dir)
        } else {
            Err(ClusterError::Binaries(format!(
                "TEST_CLUSTER_BIN={} holds no kube-apiserver",
                dir.display()
            )))
        };
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cluster/build.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(io(format!("run {}", script.display())))?;
    if !out.status.success() {
        return Err(ClusterError::Binaries(format!(
            "{} failed ({})",
            script.display(),
            out.status
        )));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let dir = stdout.lines().last().unwrap_or_default().trim().to_string();
    if dir.is_empty() {
        return Err(ClusterError::Binaries(
            "build.sh printed no directory".into(),
        ));
    }
    Ok(PathBuf::from(dir))
}

/// A running control plane. Dropping it stops every process.
#[derive(Debug)]
pub struct Cluster {
    options: ClusterOptions,
    kubeconfig_path: PathBuf,
    kubeconfig: Kubeconfig,
    api_url: String,
    // Stopped in reverse order of start by `Drop`.
    processes: Vec<Supervised>,
}

fn free_port() -> Result<u16, ClusterError> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(io("bind a free port"))?;
    Ok(listener.local_addr().map_err(io("read the port"))?.port())
}

impl Cluster {
    /// Starts etcd, kube-apiserver, kube-controller-manager, cert-manager's CRDs and (optionally) its
    /// controller. Blocking: it runs its own small runtime, so call it outside async code (or from a
    /// separate thread).
    ///
    /// # Errors
    /// When any component fails to start; the error carries the tail of its log.
    pub fn start(options: &ClusterOptions) -> Result<Self, ClusterError> {
        let started = Instant::now();
        let dir = options.work_dir.clone();
        std::fs::create_dir_all(dir.join("logs"))
            .map_err(io(format!("create {}", dir.display())))?;
        if options.remove_work_dir_on_exit {
            process::remove_when_gone(&dir).map_err(io("start cleanup watchdog"))?;
        }
        let certs = certs::generate(&dir).map_err(ClusterError::Other)?;
        let bin = |name: &str| options.bin_dir.join(name);
        let log = |name: &str| dir.join("logs").join(format!("{name}.log"));
        let mut processes = Vec::new();

        // etcd
        let (etcd_port, peer_port) = (free_port()?, free_port()?);
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let etcd_args = vec![
            "--name=e0".to_string(),
            format!("--data-dir={}", dir.join("etcd").display()),
            format!("--listen-client-urls={etcd_url}"),
            format!("--advertise-client-urls={etcd_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster=e0={peer_url}"),
            "--unsafe-no-fsync=true".to_string(),
            "--log-level=warn".to_string(),
        ];
        processes.push(
            Supervised::start("etcd", &bin("etcd"), &etcd_args, log("etcd"))
                .map_err(io("start etcd"))?,
        );

        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(io("build runtime"))?;
        runtime.block_on(wait_http_ok(
            &format!("{etcd_url}/health"),
            ETCD_READY_TIMEOUT,
            processes.last_mut().map(|p| p as &mut Supervised),
            "etcd",
        ))?;

        // kube-apiserver
        let api_port = free_port()?;
        let api_url = format!("https://127.0.0.1:{api_port}");
        let f = |name: &str| dir.join(name).display().to_string();
        let api_args = vec![
            format!("--etcd-servers={etcd_url}"),
            "--bind-address=127.0.0.1".to_string(),
            format!("--secure-port={api_port}"),
            "--advertise-address=127.0.0.1".to_string(),
            "--endpoint-reconciler-type=none".to_string(),
            format!("--tls-cert-file={}", f("apiserver.crt")),
            format!("--tls-private-key-file={}", f("apiserver.key")),
            format!("--client-ca-file={}", f("ca.crt")),
            format!("--service-account-issuer={api_url}"),
            format!("--service-account-key-file={}", f("sa.pub")),
            format!("--service-account-signing-key-file={}", f("sa.key")),
            "--service-cluster-ip-range=10.0.0.0/24".to_string(),
            "--authorization-mode=RBAC".to_string(),
            "--disable-admission-plugins=ServiceAccount".to_string(),
            "--allow-privileged=true".to_string(),
            "--enable-priority-and-fairness=false".to_string(),
            "--profiling=false".to_string(),
            format!("--cert-dir={}", f("apiserver-certs")),
            "--v=1".to_string(),
        ];
        processes.push(
            Supervised::start(
                "kube-apiserver",
                &bin("kube-apiserver"),
                &api_args,
                log("kube-apiserver"),
            )
            .map_err(io("start kube-apiserver"))?,
        );

        let kubeconfig_yaml = kubeconfig_yaml(&api_url, &certs);
        let kubeconfig_path = dir.join("admin.kubeconfig");
        std::fs::write(&kubeconfig_path, &kubeconfig_yaml).map_err(io("write kubeconfig"))?;
        let kubeconfig = Kubeconfig::from_yaml(&kubeconfig_yaml)
            .map_err(|e| ClusterError::Other(format!("kubeconfig: {e}")))?;

        let mut cluster = Self {
            options: options.clone(),
            kubeconfig_path,
            kubeconfig,
            api_url,
            processes,
        };
        runtime.block_on(cluster.wait_apiserver_ready())?;

        // Every CRD before the controller manager: its garbage collector maps resource types at start
        // and refreshes only every 30 s, so objects of later CRDs would not be collected for a while.
        runtime.block_on(cluster.install_cert_manager_crds())?;
        for yaml in &options.extra_crds {
            runtime.block_on(cluster.apply_crds(yaml))?;
        }
        // kube-controller-manager: garbage collection, namespace deletion and ClusterRole aggregation
        // (so that roles labelled `aggregate-to-edit` reach the built-in `edit`, as in a real cluster).
        let kcm_args = vec![
            format!("--kubeconfig={}", cluster.kubeconfig_path.display()),
            "--controllers=garbagecollector,namespace,clusterrole-aggregation".to_string(),
            "--leader-elect=false".to_string(),
            "--bind-address=127.0.0.1".to_string(),
            "--secure-port=0".to_string(),
            "--use-service-account-credentials=false".to_string(),
            "--v=1".to_string(),
        ];
        cluster.processes.push(
            Supervised::start(
                "kube-controller-manager",
                &bin("kube-controller-manager"),
                &kcm_args,
                log("kube-controller-manager"),
            )
            .map_err(io("start kube-controller-manager"))?,
        );

        // cert-manager: its namespace, then the controller.
        if options.cert_manager {
            let ns = options.cert_manager_cluster_resource_namespace.clone();
            runtime.block_on(cluster.ensure_namespace(&ns))?;
            let mut cm_args = vec![
                format!("--kubeconfig={}", cluster.kubeconfig_path.display()),
                format!("--cluster-resource-namespace={ns}"),
            ];
            cm_args.extend(options.cert_manager_args.iter().cloned());
            cluster.processes.push(
                Supervised::start(
                    "cert-manager-controller",
                    &bin("cert-manager-controller"),
                    &cm_args,
                    log("cert-manager-controller"),
                )
                .map_err(io("start cert-manager-controller"))?,
            );
        }
        cluster.check_alive()?;
        tracing::info!(
            kubeconfig = %cluster.kubeconfig_path.display(),
            seconds = started.elapsed().as_secs_f32(),
            "control plane ready"
        );
        Ok(cluster)
    }

    /// Path of the admin kubeconfig.
    #[must_use]
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig_path
    }

    /// The apiserver URL.
    #[must_use]
    pub fn api_url(&self) -> &str {
        &self.api_url
    }

    /// The binaries directory.
    #[must_use]
    pub fn bin_dir(&self) -> &Path {
        &self.options.bin_dir
    }

    /// The working directory.
    #[must_use]
    pub fn work_dir(&self) -> &Path {
        &self.options.work_dir
    }

    /// A new admin client. Build one per tokio runtime (each `#[tokio::test]` has its own).
    ///
    /// # Errors
    /// When the kubeconfig is unusable.
    pub async fn client(&self) -> Result<kube::Client, ClusterError> {
        let config = kube::Config::from_custom_kubeconfig(
            self.kubeconfig.clone(),
            &KubeConfigOptions::default(),
        )
        .await
        .map_err(|e| ClusterError::Other(format!("kubeconfig: {e}")))?;
        kube::Client::try_from(config).map_err(kube_err("build client"))
    }

    /// Fails when a component has exited.
    ///
    /// # Errors
    /// Names the component, its exit status and the tail of its log.
    pub fn check_alive(&mut self) -> Result<(), ClusterError> {
        for p in &mut self.processes {
            if let Some(status) = p.exited() {
                return Err(ClusterError::NotReady {
                    component: p.log().display().to_string(),
                    detail: format!("exited ({status}):\n{}", p.log_tail(30)),
                });
            }
        }
        Ok(())
    }

    async fn wait_apiserver_ready(&mut self) -> Result<(), ClusterError> {
        let deadline = Instant::now() + APISERVER_READY_TIMEOUT;
        loop {
            if let Some(p) = self.processes.last_mut()
                && let Some(status) = p.exited()
            {
                return Err(ClusterError::NotReady {
                    component: "kube-apiserver".into(),
                    detail: format!("exited ({status}):\n{}", p.log_tail(30)),
                });
            }
            let last = match self.client().await {
                Ok(client) => {
                    let req = http::Request::get("/readyz")
                        .body(Vec::new())
                        .map_err(|e| ClusterError::Other(e.to_string()))?;
                    match client.request_text(req).await {
                        Ok(body) if body.trim() == "ok" => return Ok(()),
                        Ok(body) => body,
                        Err(e) => e.to_string(),
                    }
                }
                Err(e) => e.to_string(),
            };
            if Instant::now() > deadline {
                let tail = self
                    .processes
                    .last()
                    .map(|p| p.log_tail(30))
                    .unwrap_or_default();
                return Err(ClusterError::NotReady {
                    component: "kube-apiserver".into(),
                    detail: format!(
                        "no ready answer within {APISERVER_READY_TIMEOUT:?}: {last}\n{tail}"
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Creates a namespace if missing.
    ///
    /// # Errors
    /// When the API call fails.
    pub async fn ensure_namespace(&self, name: &str) -> Result<(), ClusterError> {
        let client = self.client().await?;
        let api: Api<Namespace> = Api::all(client);
        let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": name}}))
            .map_err(|e| ClusterError::Other(e.to_string()))?;
        match api.create(&PostParams::default(), &ns).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            Err(e) => Err(kube_err(format!("create namespace {name}"))(e)),
        }
    }

    /// Creates a namespace with a unique name starting with `prefix`.
    ///
    /// # Errors
    /// When the API call fails.
    pub async fn unique_namespace(&self, prefix: &str) -> Result<String, ClusterError> {
        let name = format!("{prefix}-{:08x}", rand::random::<u32>());
        self.ensure_namespace(&name).await?;
        Ok(name)
    }

    /// Deletes a namespace (and so, with the controller manager running, everything in it).
    ///
    /// # Errors
    /// When the API call fails.
    pub async fn delete_namespace(&self, name: &str) -> Result<(), ClusterError> {
        let api: Api<Namespace> = Api::all(self.client().await?);
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(kube_err(format!("delete namespace {name}"))(e)),
        }
    }

    /// Server-side-applies every CRD in a multi-document YAML and waits until each is Established.
    ///
    /// # Errors
    /// When a document is not a CRD, the apply fails, or a CRD is not Established in time.
    pub async fn apply_crds(&self, yaml: &str) -> Result<Vec<String>, ClusterError> {
        let api: Api<CustomResourceDefinition> = Api::all(self.client().await?);
        let mut names = Vec::new();
        for doc in yaml
            .split("\n---")
            .map(str::trim)
            .filter(|d| !d.is_empty() && *d != "---")
        {
            let doc = doc.trim_start_matches("---").trim();
            if doc.is_empty() {
                continue;
            }
            let crd: CustomResourceDefinition = serde_saphyr::from_str(doc)
                .map_err(|e| ClusterError::Other(format!("not a CRD document: {e}")))?;
            let name = crd.metadata.name.clone().unwrap_or_default();
            api.patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&crd),
            )
            .await
            .map_err(kube_err(format!("apply CRD {name}")))?;
            names.push(name);
        }
        for name in &names {
            let deadline = Instant::now() + CRD_ESTABLISHED_TIMEOUT;
            loop {
                let crd = api
                    .get(name)
                    .await
                    .map_err(kube_err(format!("get CRD {name}")))?;
                let established = crd
                    .status
                    .and_then(|s| s.conditions)
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True");
                if established {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(ClusterError::NotReady {
                        component: format!("CRD {name}"),
                        detail: "not Established".into(),
                    });
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        Ok(names)
    }

    async fn install_cert_manager_crds(&self) -> Result<(), ClusterError> {
        let dir = self.options.bin_dir.join("cert-manager-crds");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(io(format!("read {}", dir.display())))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(ClusterError::Binaries(format!(
                "no CRDs in {}",
                dir.display()
            )));
        }
        let mut all = String::new();
        for file in files {
            all.push_str("\n---\n");
            all.push_str(
                &std::fs::read_to_string(&file).map_err(io(format!("read {}", file.display())))?,
            );
        }
        self.apply_crds(&all).await.map(|_| ())
    }

    /// Stops every process, last started first.
    pub fn stop(&mut self) {
        while let Some(mut p) = self.processes.pop() {
            p.stop();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An admin kubeconfig with the certificates inlined.
fn kubeconfig_yaml(api_url: &str, certs: &certs::ClusterCerts) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: dev\n  cluster:\n    server: {api_url}\n    certificate-authority-data: {ca}\nusers:\n- name: admin\n  user:\n    client-certificate-data: {cert}\n    client-key-data: {key}\ncontexts:\n- name: dev\n  context:\n    cluster: dev\n    user: admin\ncurrent-context: dev\n",
        ca = b64(&certs.ca_pem),
        cert = b64(&certs.admin_cert_pem),
        key = b64(&certs.admin_key_pem),
    )
}

/// Polls `url` until it answers 2xx.
async fn wait_http_ok(
    url: &str,
    timeout: Duration,
    mut process: Option<&mut Supervised>,
    component: &str,
) -> Result<(), ClusterError> {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(p) = process.as_deref_mut()
            && let Some(status) = p.exited()
        {
            return Err(ClusterError::NotReady {
                component: component.into(),
                detail: format!("exited ({status}):\n{}", p.log_tail(30)),
            });
        }
        let last = match http.get(url).timeout(Duration::from_secs(2)).send().await {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => r.status().to_string(),
            Err(e) => e.to_string(),
        };
        if Instant::now() > deadline {
            let tail = process.map(|p| p.log_tail(30)).unwrap_or_default();
            return Err(ClusterError::NotReady {
                component: component.into(),
                detail: format!("{url}: {last}\n{tail}"),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
