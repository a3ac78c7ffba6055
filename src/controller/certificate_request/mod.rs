//! The CertificateRequest controller: cert-manager's external-issuer contract (design.md §3) with at
//! most one NCP signing per request (§4).
//!
//! Every reconcile is fetch → [`decide::next`] → one step → status by server-side apply.

pub mod decide;
mod local_steps;
mod ncp_steps;
pub mod revoke;
mod status;

use super::conditions;
use super::{Context, IssuerError, read_credentials};
use crate::api::certmanager::CertificateRequest;
use crate::api::issuer::GROUP;
use crate::api::{ClusterPrivateCA, IssuerResource, PrivateCA};
use decide::{Next, reason};
use futures::StreamExt as _;
use kube::ResourceExt as _;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use status::Update;
use std::sync::Arc;
use std::time::Duration;

/// How long a request waits before its issuer is looked at again (issuer changes also trigger it).
pub const ISSUER_WAIT: Duration = Duration::from_secs(60);
/// How long a new, unapproved request for a subordinate issuer waits for cert-manager's approver
/// before it is marked Initializing (approval usually comes within milliseconds).
pub const APPROVAL_GRACE: Duration = Duration::from_secs(2);
/// Safety-net requeue when a fresh read shows that a request moved on since the cached copy.
pub const STALE_RETRY: Duration = Duration::from_secs(1);
/// Shortest wait after a retryable failure.
pub const MIN_BACKOFF: Duration = Duration::from_secs(5);
/// Longest wait after a retryable failure.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Why a reconcile could not finish; retried by the error policy.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// A Kubernetes write failed.
    #[error("{what} for {namespace}/{name}: {source}")]
    Kube {
        /// What was written.
        what: &'static str,
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// The cause.
        source: kube::Error,
    },
}

/// Merge-patches a request's metadata (annotations, finalizers; a `resourceVersion` in the patch makes
/// it conditional).
async fn merge_metadata(
    client: &kube::Client,
    cr: &CertificateRequest,
    patch: &serde_json::Value,
) -> Result<(), kube::Error> {
    let api: Api<CertificateRequest> =
        Api::namespaced(client.clone(), &cr.namespace().unwrap_or_default());
    api.patch(
        &cr.name_any(),
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(patch),
    )
    .await
    .map(|_| ())
}

/// Whether the request names one of our issuer kinds.
#[must_use]
pub fn is_ours(cr: &CertificateRequest) -> bool {
    let r = &cr.spec.issuer_ref;
    r.group.as_deref() == Some(GROUP)
        && matches!(
            r.kind.as_deref(),
            Some(PrivateCA::KIND | ClusterPrivateCA::KIND)
        )
}

/// Backoff after a retryable failure, from the request's age: grows with it, bounded, jittered.
#[must_use]
pub fn backoff(age: Duration) -> Duration {
    let base = (age / 4).clamp(MIN_BACKOFF, MAX_BACKOFF);
    base + Duration::from_millis(rand::random::<u64>() % (base.as_millis() as u64 / 5 + 1))
}

/// The issuer a request names, as the controller needs it.
struct IssuerView {
    kind: &'static str,
    name: String,
    spec: crate::api::IssuerSpec,
    secret_namespace: String,
    ready: Option<(bool, String)>,
    ca_not_after_unix: Option<i64>,
    /// How the issuer names itself on the Secrets it owns (subordinate mode).
    owner: String,
    /// The root the issuer checked its intermediate against (subordinate mode).
    subordinate_root: Option<String>,
}

impl IssuerView {
    fn from<K: IssuerResource>(issuer: &K, crn: &str) -> Self {
        let status = issuer.issuer_status();
        let ready = status
            .and_then(|s| conditions::find(&s.conditions, conditions::READY))
            .map(|c| {
                let current = c.observed_generation.is_none()
                    || c.observed_generation == issuer.meta().generation;
                (
                    c.status == "True" && current,
                    format!("{}: {}", c.reason, c.message),
                )
            });
        let ca_not_after_unix = status
            .and_then(|s| s.ca.as_ref())
            .and_then(|ca| ca.not_after.as_deref())
            .and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok())
            .map(|t| t.as_second());
        Self {
            kind: K::KIND,
            name: issuer.name_any(),
            spec: issuer.issuer_spec().clone(),
            secret_namespace: issuer.secret_namespace(crn),
            ready,
            ca_not_after_unix,
            owner: crate::controller::subordinate::owner_id(
                K::KIND,
                issuer.meta().namespace.as_deref(),
                &issuer.name_any(),
            ),
            subordinate_root: status
                .and_then(|s| s.subordinate.as_ref())
                .map(|s| s.root_sha256.clone()),
        }
    }
}

/// The issuers as the request controller's issuer watches last saw them. A Ready issuer found here is
/// used as is (saving a read per request); anything else is read fresh from the API server, so a
/// request never waits on a stale "not Ready".
#[derive(Clone, Default)]
pub struct IssuerCache {
    private_cas: Option<Store<PrivateCA>>,
    cluster_private_cas: Option<Store<ClusterPrivateCA>>,
}

impl IssuerCache {
    fn ready_view(&self, cr: &CertificateRequest, crn: &str) -> Option<IssuerView> {
        let name = &cr.spec.issuer_ref.name;
        let view = match cr.spec.issuer_ref.kind.as_deref() {
            Some(ClusterPrivateCA::KIND) => self
                .cluster_private_cas
                .as_ref()?
                .get(&ObjectRef::new(name))
                .map(|i| IssuerView::from(&*i, crn)),
            _ => self
                .private_cas
                .as_ref()?
                .get(&ObjectRef::new(name).within(&cr.namespace().unwrap_or_default()))
                .map(|i| IssuerView::from(&*i, crn)),
        }?;
        matches!(view.ready, Some((true, _))).then_some(view)
    }
}

async fn fetch_issuer(
    cr: &CertificateRequest,
    ctx: &Context,
    cache: &IssuerCache,
) -> Result<Option<IssuerView>, kube::Error> {
    let crn = &ctx.settings.cluster_resource_namespace;
    if let Some(view) = cache.ready_view(cr, crn) {
        return Ok(Some(view));
    }
    let name = &cr.spec.issuer_ref.name;
    Ok(match cr.spec.issuer_ref.kind.as_deref() {
        Some(ClusterPrivateCA::KIND) => Api::<ClusterPrivateCA>::all(ctx.client.clone())
            .get_opt(name)
            .await?
            .map(|i| IssuerView::from(&i, crn)),
        _ => Api::<PrivateCA>::namespaced(ctx.client.clone(), &cr.namespace().unwrap_or_default())
            .get_opt(name)
            .await?
            .map(|i| IssuerView::from(&i, crn)),
    })
}

/// Reconciles one request.
///
/// # Errors
/// When a Kubernetes write fails (the error policy retries).
pub async fn reconcile(
    cr: Arc<CertificateRequest>,
    ctx: Arc<Context>,
) -> Result<Action, RequestError> {
    reconcile_with(cr, ctx, &IssuerCache::default()).await
}

/// [`reconcile`], with issuers looked up in `issuers` first.
///
/// # Errors
/// When a Kubernetes write fails (the error policy retries).
pub async fn reconcile_with(
    cr: Arc<CertificateRequest>,
    ctx: Arc<Context>,
    issuers: &IssuerCache,
) -> Result<Action, RequestError> {
    if !is_ours(&cr) {
        // Not ours: ignored silently (the watch filter makes this rare).
        return Ok(Action::await_change());
    }
    if cr.metadata.deletion_timestamp.is_some() {
        return revoke::on_delete(&cr, &ctx).await;
    }
    let step = decide::next(&cr);
    match step {
        // Final, or waiting for cert-manager's approver: its change wakes us.
        Next::Ignore | Next::AwaitApproval => Ok(Action::await_change()),
        // For a Ready subordinate issuer, signing in the cluster finishes within one reconcile, so an
        // Initializing status would only be overwritten, at the cost of an API write per certificate
        // (cert-manager's own CA issuer writes none). An approved request is signed at once; a new one
        // not yet approved gets a moment for cert-manager's approver before it is marked Initializing.
        Next::Initialize
            if !has_signing_annotations(&cr)
                && issuers
                    .ready_view(&cr, &ctx.settings.cluster_resource_namespace)
                    .is_some_and(|i| i.spec.subordinate.is_some()) =>
        {
            if cr.condition_true("Approved") {
                with_issuer(&cr, &ctx, issuers, Next::Sign).await
            } else if let Some(left) = approval_grace_left(&cr) {
                // Next: the approval wakes us; otherwise Initializing after the grace.
                Ok(Action::requeue(left))
            } else {
                initialize(&cr, &ctx).await
            }
        }
        Next::Initialize => initialize(&cr, &ctx).await,
        Next::MarkDenied => {
            status::apply(
                &cr,
                &ctx,
                Update::failed(reason::DENIED, "the request was denied by an approver"),
            )
            .await?;
            status::event(
                &cr,
                &ctx,
                true,
                reason::DENIED,
                "the request was denied; nothing was signed",
            )
            .await;
            Ok(Action::await_change())
        }
        Next::Sign => with_issuer(&cr, &ctx, issuers, step).await,
        Next::RecoverByKey { .. } | Next::RecoverBySerial { .. } => {
            // The watch cache can lag behind our own writes: a reconcile queued by the start marker may
            // still see the marker without the serial (or the serial without the Issued status) after
            // the request was finished. Recovery asks NCP, so it works on a fresh read.
            let Some(fresh) = read_fresh(&cr, &ctx).await? else {
                // Gone: nothing to recover.
                return Ok(Action::await_change());
            };
            match decide::next(&fresh) {
                step @ (Next::RecoverByKey { .. } | Next::RecoverBySerial { .. }) => {
                    with_issuer(&fresh, &ctx, issuers, step).await
                }
                // Already final: the cached copy was stale.
                Next::Ignore => Ok(Action::await_change()),
                // Moved on otherwise (marker cleared, …): the watch event of that write triggers the next
                // reconcile; the requeue is a safety net.
                _ => Ok(Action::requeue(STALE_RETRY)),
            }
        }
    }
}

/// First touch: `Ready=Unknown/Initializing`.
async fn initialize(cr: &CertificateRequest, ctx: &Context) -> Result<Action, RequestError> {
    status::apply(
        cr,
        ctx,
        Update::condition("Unknown", reason::INITIALIZING, "request received"),
    )
    .await?;
    // The status write is itself a change: the next reconcile moves on.
    Ok(Action::await_change())
}

/// How long ago the request was created (zero when unknown).
pub(super) fn request_age(cr: &CertificateRequest) -> Duration {
    cr.metadata
        .creation_timestamp
        .as_ref()
        .and_then(|t| {
            Duration::try_from(k8s_openapi::jiff::Timestamp::now().duration_since(t.0)).ok()
        })
        .unwrap_or_default()
}

/// What is left of [`APPROVAL_GRACE`] for a new request; `None` once it is over, and when the creation
/// time is unknown or ahead of our clock (a skewed clock must not hold Initializing back).
fn approval_grace_left(cr: &CertificateRequest) -> Option<Duration> {
    let created = cr.metadata.creation_timestamp.as_ref()?;
    let age =
        Duration::try_from(k8s_openapi::jiff::Timestamp::now().duration_since(created.0)).ok()?;
    APPROVAL_GRACE
        .checked_sub(age)
        .filter(|left| !left.is_zero())
}

/// Whether a request carries our signing marker or serial (NCP signing started on it).
fn has_signing_annotations(cr: &CertificateRequest) -> bool {
    let annotations = cr.annotations();
    annotations.contains_key(decide::ANNOTATION_SIGNING_STARTED)
        || annotations.contains_key(decide::ANNOTATION_SERIAL)
}

/// The request as the API server has it now (`None` when it is gone).
async fn read_fresh(
    cr: &CertificateRequest,
    ctx: &Context,
) -> Result<Option<CertificateRequest>, RequestError> {
    let namespace = cr.namespace().unwrap_or_default();
    Api::<CertificateRequest>::namespaced(ctx.client.clone(), &namespace)
        .get_opt(&cr.name_any())
        .await
        .map_err(|source| RequestError::Kube {
            what: "read",
            namespace,
            name: cr.name_any(),
            source,
        })
}

/// Drops from the cached copy of a request what no reconcile reads, so that the cache of every
/// CertificateRequest in the cluster stays small: `managedFields` always (a JSON tree per field manager,
/// the largest part of a request), and for requests of other issuers everything but their identity and
/// `issuerRef` (their CSR, annotations and status, with the issued certificate).
pub fn prune(cr: &mut CertificateRequest) {
    cr.metadata.managed_fields = None;
    if !is_ours(cr) {
        cr.metadata.annotations = None;
        cr.metadata.labels = None;
        cr.spec.request = k8s_openapi::ByteString(Vec::new());
        cr.status = None;
    }
}

async fn with_issuer(
    cr: &CertificateRequest,
    ctx: &Context,
    issuers: &IssuerCache,
    step: Next,
) -> Result<Action, RequestError> {
    let issuer_ref = &cr.spec.issuer_ref;
    let kind = issuer_ref.kind.clone().unwrap_or_default();
    let issuer = match fetch_issuer(cr, ctx, issuers).await {
        Ok(Some(i)) => i,
        Ok(None) => {
            let msg = format!(
                "waiting for {kind} {:?}: it does not exist",
                issuer_ref.name
            );
            status::apply(cr, ctx, Update::condition("False", reason::PENDING, &msg)).await?;
            // Next: the issuer watch wakes us when it appears; the requeue is a safety net.
            return Ok(Action::requeue(ISSUER_WAIT));
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read issuer");
            return Ok(Action::requeue(MIN_BACKOFF));
        }
    };
    // Recovering a certificate that may already exist must not wait for the issuer to be Ready again:
    // only new signing does.
    if matches!(step, Next::Sign) {
        match &issuer.ready {
            Some((true, _)) => {}
            other => {
                let why = other
                    .as_ref()
                    .map_or("it has not been checked yet".to_string(), |(_, m)| {
                        m.clone()
                    });
                let msg = format!(
                    "waiting for {} {:?} to be Ready: {why}",
                    issuer.kind, issuer.name
                );
                status::apply(cr, ctx, Update::condition("False", reason::PENDING, &msg)).await?;
                // Next: the issuer's status change wakes us.
                return Ok(Action::requeue(ISSUER_WAIT));
            }
        }
    }
    // Subordinate mode signs new requests in the cluster; a request that started signing through NCP
    // before the mode was switched on is still recovered from NCP below.
    if let (Next::Sign, Some(sub)) = (&step, &issuer.spec.subordinate) {
        return local_steps::sign(cr, ctx, &issuer, &sub.secret_name).await;
    }
    let credentials =
        match read_credentials(&ctx.client, &issuer.secret_namespace, &issuer.spec).await {
            Ok(c) => c,
            Err(e) => return issuer_problem(cr, ctx, &e).await,
        };
    let ncp = match ctx.ncp_clients.get(
        &issuer.owner,
        &issuer.spec,
        &credentials,
        ctx.settings.ncp_request_timeout,
    ) {
        Ok(c) => c,
        Err(e) => return issuer_problem(cr, ctx, &e).await,
    };
    ncp_steps::run(cr, ctx, &issuer, &ncp, step).await
}

async fn issuer_problem(
    cr: &CertificateRequest,
    ctx: &Context,
    e: &IssuerError,
) -> Result<Action, RequestError> {
    let msg = format!("issuer cannot be used: {e}");
    status::apply(cr, ctx, Update::condition("False", reason::PENDING, &msg)).await?;
    // Next: issuer or Secret changes re-trigger through the issuer controller; retry as a fallback.
    Ok(Action::requeue(ISSUER_WAIT))
}

fn error_policy(cr: Arc<CertificateRequest>, error: &RequestError, _ctx: Arc<Context>) -> Action {
    tracing::warn!(namespace = %cr.namespace().unwrap_or_default(), name = %cr.name_any(), error = %error, "reconcile failed");
    Action::requeue(MIN_BACKOFF)
}

/// Runs the controller on the shared `watches` (requests, and both issuer kinds, which wake the
/// requests waiting on them and keep the issuer cache) until `shutdown` is cancelled.
pub async fn run(
    ctx: Arc<Context>,
    concurrency: u16,
    watches: &crate::watches::Watches,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let controller =
        Controller::for_shared_stream(watches.requests.objects(), watches.requests.store())
            .with_config(kube::runtime::controller::Config::default().concurrency(concurrency));
    let store = controller.store();
    let store2 = store.clone();
    // An issuer change (e.g. it turned Ready) wakes the requests waiting on it.
    let waiting_on = move |store: &kube::runtime::reflector::Store<CertificateRequest>,
                           kind: &'static str,
                           ns: Option<String>,
                           name: String| {
        store
            .state()
            .into_iter()
            .filter(|cr| {
                is_ours(cr)
                    && cr.spec.issuer_ref.kind.as_deref() == Some(kind)
                    && cr.spec.issuer_ref.name == name
                    && (ns.is_none() || cr.namespace() == ns)
                    && decide::next(cr) != Next::Ignore
            })
            .map(|cr| ObjectRef::from_obj(&*cr))
            .collect::<Vec<_>>()
    };
    let waiting_on2 = waiting_on;
    let issuers = IssuerCache {
        private_cas: Some(watches.private_cas.store()),
        cluster_private_cas: Some(watches.cluster_private_cas.store()),
    };
    controller
        .watches_shared_stream(watches.private_cas.objects(), move |i| {
            waiting_on(&store, PrivateCA::KIND, i.namespace(), i.name_any())
        })
        .watches_shared_stream(watches.cluster_private_cas.objects(), move |i| {
            waiting_on2(&store2, ClusterPrivateCA::KIND, None, i.name_any())
        })
        .graceful_shutdown_on(shutdown.cancelled_owned())
        .run(
            move |cr, ctx| {
                let issuers = issuers.clone();
                async move {
                    let started = std::time::Instant::now();
                    let result = reconcile_with(cr, ctx.clone(), &issuers).await;
                    let outcome = if result.is_ok() { "ok" } else { "error" };
                    ctx.metrics
                        .observe_reconcile("CertificateRequest", outcome, started.elapsed());
                    result
                }
            },
            error_policy,
            ctx,
        )
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "certificaterequest controller event");
            }
        })
        .await;
}
