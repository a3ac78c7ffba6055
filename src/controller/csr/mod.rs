//! The CertificateSigningRequest signer: Kubernetes' own `certificates.k8s.io/v1` CSRs whose
//! `signerName` names one of our issuers (`privatecas.pca.ncp-issuer.dev/<namespace>.<name>`,
//! `clusterprivatecas.pca.ncp-issuer.dev/<name>`), signed once approved, never approved by us.
//!
//! Every reconcile is:
//! 1. **fetch**: the CSR (fresh when it is recovering), its issuer, and — before a first signing —
//!    a SubjectAccessReview that the requester may `reference` the signer ([`authorize`]);
//! 2. **decide**: the pure [`decide::plan`];
//! 3. **act**: signing through NCP (`sign`) or in the cluster (`local`), which returns an [`status::Outcome`]
//!    (its only writes are the CSR's at-most-once annotations);
//! 4. **write**: [`status::write`], the one place that writes a CSR's status and its events.

pub mod decide;
mod error;
mod local;
mod sign;
pub mod status;

use super::Context;
use crate::api::{ClusterPrivateCA, PrivateCA};
use crate::controller::certificate_request::{IssuerLookup, IssuerView};
use crate::controller::delays::MIN_BACKOFF;
use crate::controller::signer_wake;
use decide::{Authorization, Next, Observed, Plan, SIGNERS_GROUP, SignerRef};
pub use error::CsrError;
use k8s_openapi::api::authorization::v1::SubjectAccessReview;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::ResourceExt as _;
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use std::sync::Arc;

/// The issuers as the shared watches last saw them (also used by the PodCertificateRequest signer).
#[derive(Clone)]
pub struct Issuers {
    /// PrivateCAs.
    pub private_cas: Store<PrivateCA>,
    /// ClusterPrivateCAs.
    pub cluster_private_cas: Store<ClusterPrivateCA>,
}

impl Issuers {
    /// The stores of the shared issuer `watches`.
    #[must_use]
    pub fn of(watches: &crate::watches::Watches) -> Self {
        Self {
            private_cas: watches.private_cas.store(),
            cluster_private_cas: watches.cluster_private_cas.store(),
        }
    }

    /// The issuer `signer` names: from the cache when Ready there, else read from the API server.
    pub async fn lookup(&self, ctx: &Context, signer: &SignerRef) -> IssuerLookup {
        let crn = &ctx.settings.cluster_resource_namespace;
        let cached = match signer {
            SignerRef::PrivateCA { namespace, name } => self
                .private_cas
                .get(&ObjectRef::new(name).within(namespace))
                .map(|i| IssuerView::from(&*i, crn)),
            SignerRef::ClusterPrivateCA { name } => self
                .cluster_private_cas
                .get(&ObjectRef::new(name))
                .map(|i| IssuerView::from(&*i, crn)),
        };
        if let Some(view) = cached.filter(IssuerView::is_ready) {
            return IssuerLookup::Found(Box::new(view));
        }
        let read = match signer {
            SignerRef::PrivateCA { namespace, name } => {
                Api::<PrivateCA>::namespaced(ctx.client.clone(), namespace)
                    .get_opt(name)
                    .await
                    .map(|i| i.map(|i| IssuerView::from(&i, crn)))
            }
            SignerRef::ClusterPrivateCA { name } => {
                Api::<ClusterPrivateCA>::all(ctx.client.clone())
                    .get_opt(name)
                    .await
                    .map(|i| i.map(|i| IssuerView::from(&i, crn)))
            }
        };
        match read {
            Ok(Some(view)) => IssuerLookup::Found(Box::new(view)),
            Ok(None) => IssuerLookup::Missing,
            Err(e) => {
                tracing::warn!(error = %e, signer = %signer.signer_name(), "cannot read issuer");
                IssuerLookup::Unreadable
            }
        }
    }
}

/// Whether the CSR's requester may `reference` the signer: resource `signers` in our group, named
/// after the issuer or `*`, in the issuer's namespace for a PrivateCA (as cert-manager checks it).
async fn authorize(
    ctx: &Context,
    csr: &CertificateSigningRequest,
    signer: &SignerRef,
) -> Authorization {
    for name in [signer.name(), "*"] {
        let review: SubjectAccessReview = match serde_json::from_value(serde_json::json!({
            "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": {
                "user": csr.spec.username, "groups": csr.spec.groups, "uid": csr.spec.uid,
                "extra": csr.spec.extra,
                "resourceAttributes": {
                    "group": SIGNERS_GROUP, "resource": "signers", "verb": "reference",
                    "namespace": signer.namespace().unwrap_or_default(), "name": name, "version": "*",
                }
            }
        })) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "cannot build a SubjectAccessReview");
                return Authorization::Unknown;
            }
        };
        match Api::<SubjectAccessReview>::all(ctx.client.clone())
            .create(&PostParams::default(), &review)
            .await
        {
            Ok(r) if r.status.as_ref().is_some_and(|s| s.allowed) => return Authorization::Allowed,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, csr = %csr.name_any(), "SubjectAccessReview failed");
                return Authorization::Unknown;
            }
        }
    }
    Authorization::Refused
}

/// Reconciles one CSR.
///
/// # Errors
/// When a Kubernetes call fails (the error policy retries).
async fn reconcile(
    csr: Arc<CertificateSigningRequest>,
    ctx: Arc<Context>,
    issuers: &Issuers,
) -> Result<Action, CsrError> {
    let Some(signer) = SignerRef::parse(&csr.spec.signer_name) else {
        // Not ours: ignored silently.
        return Ok(Action::await_change());
    };
    // Fetch.
    let cached = decide::next(&csr);
    if matches!(cached, Next::Ignore | Next::AwaitApproval) {
        // Final, or not approved: a change wakes us.
        return Ok(Action::await_change());
    }
    let refreshed = decide::needs_fresh_read(&cached);
    let current = if refreshed {
        match Api::<CertificateSigningRequest>::all(ctx.client.clone())
            .get_opt(&csr.name_any())
            .await
        {
            Ok(Some(fresh)) => fresh,
            // Gone: nothing to recover.
            Ok(None) => return Ok(Action::await_change()),
            Err(source) => {
                return Err(CsrError::ReadCsr {
                    csr: csr.name_any(),
                    source,
                });
            }
        }
    } else {
        (*csr).clone()
    };
    let step = decide::next(&current);
    let authorization = if step == Next::Sign {
        authorize(&ctx, &current, &signer).await
    } else {
        Authorization::NotChecked
    };
    let issuer = match step {
        Next::Ignore | Next::AwaitApproval => IssuerLookup::NotNeeded,
        // A refused requester needs no issuer.
        _ if authorization == Authorization::Refused => IssuerLookup::NotNeeded,
        _ => issuers.lookup(&ctx, &signer).await,
    };
    // Decide.
    let plan = decide::plan(Observed {
        csr: &current,
        signer: &signer,
        refreshed,
        issuer,
        authorization,
    });
    // Act.
    let outcome = match plan {
        Plan::Write(outcome) => outcome,
        Plan::SignLocally(issuer) => local::sign(&current, &ctx, &issuer)
            .await
            .about(&issuer.reference),
        Plan::Ncp(issuer, step) => sign::through_ncp(&current, &ctx, &issuer, step)
            .await?
            .about(&issuer.reference),
    };
    // Write.
    status::write(&current, &ctx, outcome, signer.kind()).await
}

// The signature is kube's `Controller::run` error policy.
#[allow(clippy::needless_pass_by_value)]
fn error_policy(
    csr: Arc<CertificateSigningRequest>,
    error: &CsrError,
    _ctx: Arc<Context>,
) -> Action {
    tracing::warn!(name = %csr.name_any(), error = %error, "CSR reconcile failed");
    if error.is_retryable() {
        Action::requeue(MIN_BACKOFF)
    } else {
        Action::await_change()
    }
}

/// Runs the CSR signer until `shutdown` is cancelled: a watch of its own on CSRs (so an identity
/// without the CSR permissions leaves the other controllers and `/readyz` alone), woken by issuer
/// changes for the CSRs waiting on them.
pub async fn run(
    ctx: Arc<Context>,
    concurrency: u16,
    watches: &crate::watches::Watches,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let api = Api::<CertificateSigningRequest>::all(ctx.client.clone());
    let controller = Controller::new(api, watcher::Config::default().any_semantic())
        .with_config(kube::runtime::controller::Config::default().concurrency(concurrency));
    let issuers = Issuers::of(watches);
    // An issuer change (e.g. it turned Ready) wakes the approved CSRs naming it.
    let controller = signer_wake::wake_on_issuers(
        controller,
        watches,
        |csr| &csr.spec.signer_name,
        |csr| !matches!(decide::next(csr), Next::Ignore | Next::AwaitApproval),
    );
    let reconciler = move |csr, ctx| {
        let issuers = issuers.clone();
        async move { reconcile(csr, ctx, &issuers).await }
    };
    signer_wake::drive(
        controller,
        ctx,
        shutdown,
        "CertificateSigningRequest",
        reconciler,
        error_policy,
    )
    .await;
}
