//! The CertificateRequest controller: cert-manager's external-issuer contract (design.md §3) with at
//! most one NCP signing per request (§4).
//!
//! Every reconcile is:
//! 1. **fetch**: the request (fresh from the API server when it is recovering), and its issuer as far
//!    as the decision needs it ([`decide::issuer_needed`]);
//! 2. **decide**: the pure [`decide::plan`] — write an outcome at once, sign in the cluster, or talk to
//!    NCP (with the issuer gate, the subordinate fast path and the approval grace as its arms);
//! 3. **act**: the signing or recovery step, which returns an [`status::Outcome`] (its only writes are
//!    the request's own at-most-once metadata: start marker, serial);
//! 4. **write**: [`status::write`], the one place that writes a request's status and its events.

pub mod decide;
mod error;
mod issuers;
mod local_steps;
pub(crate) mod marker;
mod metadata;
mod ncp_steps;
pub mod revoke;
pub mod status;

use super::Context;
use crate::api::certmanager::CertificateRequest;
use crate::api::{ClusterPrivateCA, IssuerResource, PrivateCA};
use decide::{IssuerNeed, Next, Observed, Plan};
pub use error::RequestError;
use futures::StreamExt as _;
pub use issuers::{IssuerCache, IssuerLookup, IssuerView, Readiness};
use kube::ResourceExt as _;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use metadata::request_name;
use std::sync::Arc;

use crate::controller::clients::Notice;
use crate::controller::delays::{FAIRNESS_RETRY, MIN_BACKOFF};

/// Reconciles one request, with issuers looked up in `issuers` first.
///
/// # Errors
/// When a Kubernetes call fails (the error policy retries).
pub async fn reconcile_with(
    cr: Arc<CertificateRequest>,
    ctx: Arc<Context>,
    issuers: &IssuerCache,
) -> Result<Action, RequestError> {
    if !cr.names_our_issuer() {
        // Not ours: ignored silently (the watch filter makes this rare).
        return Ok(Action::await_change());
    }
    if cr.metadata.deletion_timestamp.is_some() {
        if !revoke::holds(&cr) {
            // Not ours to hold: nothing to do.
            return Ok(Action::await_change());
        }
        // Deletion: the revocation finalizer's own flow, on the request as it is (the cached copy of
        // a finished request lacks its certificate, see `watches::prune`).
        return match read_fresh(&cr, &ctx).await? {
            Some(fresh) => revoke::on_delete(&fresh, &ctx).await,
            // Gone already.
            None => Ok(Action::await_change()),
        };
    }
    // Fetch.
    let cached = decide::next(&cr);
    let refreshed = decide::needs_fresh_read(&cached);
    let current = if refreshed {
        match read_fresh(&cr, &ctx).await? {
            Some(fresh) => fresh,
            // Gone: nothing to recover.
            None => return Ok(Action::await_change()),
        }
    } else {
        (*cr).clone()
    };
    let crn = &ctx.settings.cluster_resource_namespace;
    let issuer = match decide::issuer_needed(&decide::next(&current)) {
        IssuerNeed::None => IssuerLookup::NotNeeded,
        IssuerNeed::CachedOnly => issuers
            .ready_view(&current, crn)
            .map_or(IssuerLookup::NotCached, |v| {
                IssuerLookup::Found(Box::new(v))
            }),
        IssuerNeed::Full => issuers.lookup(&ctx.client, &current, crn).await,
    };
    // Decide.
    let plan = decide::plan(Observed {
        cr: &current,
        refreshed,
        issuer,
        now: k8s_openapi::jiff::Timestamp::now(),
    });
    // Act.
    let outcome = match plan {
        Plan::Write(outcome) => outcome,
        Plan::SignLocally(issuer) => local_steps::sign(&current, &ctx, &issuer)
            .await
            .about(&issuer.reference),
        Plan::Ncp(issuer, step) => {
            match ctx
                .fairness
                .try_acquire(&issuer.owner, issuer.spec.endpoint.as_deref())
            {
                // Its issuer or endpoint has its share of NCP calls in flight: the worker goes to
                // another request, this one looks again soon.
                Err(_) => status::Outcome::requeue(FAIRNESS_RETRY),
                Ok(_slot) => ncp_steps::run(&current, &ctx, &issuer, step)
                    .await?
                    .about(&issuer.reference),
            }
        }
    };
    // Write.
    status::write(&current, &ctx, outcome).await
}

/// The request as the API server has it now (`None` when it is gone).
async fn read_fresh(
    cr: &CertificateRequest,
    ctx: &Context,
) -> Result<Option<CertificateRequest>, RequestError> {
    Api::<CertificateRequest>::namespaced(ctx.client.clone(), &cr.namespace().unwrap_or_default())
        .get_opt(&cr.name_any())
        .await
        .map_err(|source| RequestError::ReadRequest {
            request: request_name(cr),
            source,
        })
}

// The signature is kube's `Controller::run` error policy.
#[allow(clippy::needless_pass_by_value)]
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
                cr.names_our_issuer()
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
    // A new NCP client for an issuer (its check read rotated credentials, say) wakes the requests
    // that waited on the old one; no request reads the Secret itself.
    let store3 = controller.store();
    let lookup = issuers.clone();
    let replaced = ctx.ncp_clients.notices().flat_map(move |notice| {
        let woken = match notice {
            Notice::Replaced(owner) => lookup
                .issuer_named_by_owner(&owner)
                .map(|(kind, ns, name)| waiting_on(&store3, kind, ns, name))
                .unwrap_or_default(),
            Notice::RecheckAsked(_) => Vec::new(),
        };
        futures::stream::iter(woken)
    });
    controller
        .reconcile_on(replaced)
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
