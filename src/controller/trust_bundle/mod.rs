//! ClusterTrustBundle publication (`certificates.k8s.io/v1beta1`, KEP-3257): for each Ready issuer
//! that publishes ([`decide::wanted`]), a signer-linked bundle named after its signer name holding
//! the NCP root (and, on `spec.trustBundle.includeIntermediates`, the intermediates), kept in step
//! with the issuer and removed with it.
//!
//! Every reconcile of an issuer is:
//! 1. **fetch**: the issuer (from the watch), its CA chain (the subordinate intermediate's Secret, or
//!    NCP's Get CA Chain) and the bundle in the cluster;
//! 2. **decide**: [`decide::wanted`], [`decide::bundle_pem`], [`decide::needs_write`] (pure);
//! 3. **write**: one server-side apply or delete of the bundle, and its event on the issuer.
//!
//! Where the API is not served, the issuer gets a Warning event and is looked at again after
//! [`TRUST_BUNDLE_API_RETRY`]; nothing crashes. Issuers that are gone lose their bundle in a sweep run
//! whenever an issuer watch reports a removal (and once at start).

pub mod decide;

use super::Context;
use crate::api::{ClusterPrivateCA, IssuerResource, PrivateCA};
use crate::controller::certificate_request::{IssuerView, Readiness};
use crate::controller::csr::decide::SignerRef;
use crate::controller::delays::{ISSUER_WAIT, MIN_BACKOFF, TRUST_BUNDLE_API_RETRY};
use crate::controller::events::{EventAction, Note};
use crate::controller::subordinate;
use crate::reason::Reason;
use decide::{MANAGED_BY, MANAGED_BY_LABEL, Publication, bundle_name, bundle_pem, needs_write};
use futures::StreamExt as _;
use k8s_openapi::api::certificates::v1beta1::ClusterTrustBundle;
use kube::ResourceExt as _;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use std::sync::Arc;

/// Why a bundle could not be kept in step; retried by the error policy.
#[derive(Debug, thiserror::Error)]
pub enum TrustBundleError {
    /// Reading, writing or deleting the ClusterTrustBundle failed.
    #[error("write ClusterTrustBundle {name}: {source}")]
    WriteBundle {
        /// The bundle's name.
        name: String,
        /// The cause.
        source: kube::Error,
    },
}

/// The signer name of an issuer.
fn signer_of<K: IssuerResource>(issuer: &K) -> SignerRef {
    match issuer.meta().namespace.as_deref() {
        Some(ns) if !ns.is_empty() => SignerRef::PrivateCA {
            namespace: ns.to_string(),
            name: issuer.name_any(),
        },
        _ => SignerRef::ClusterPrivateCA {
            name: issuer.name_any(),
        },
    }
}

fn is_unserved(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// Why the issuer's CA chain could not be read.
#[derive(Debug, thiserror::Error)]
enum ChainError {
    /// The subordinate intermediate is not usable.
    #[error(transparent)]
    Intermediate(#[from] subordinate::SignerError),
    /// The issuer's health check has not built an NCP client for its current generation yet.
    #[error("the issuer's health check has not built its NCP client yet")]
    NoClient,
    /// Get CA Chain failed.
    #[error(transparent)]
    Ncp(#[from] crate::ncp::NcpError),
}

/// The issuer's CA chain, as PEM texts (the root among them).
async fn ca_chain(ctx: &Context, view: &IssuerView) -> Result<Vec<String>, ChainError> {
    if let Some(sub) = &view.spec.subordinate {
        let signer = subordinate::signer_for(
            ctx,
            &view.owner,
            &view.secret_namespace,
            &sub.secret_name,
            view.subordinate_root.as_deref(),
        )
        .await?;
        return Ok(vec![
            signer.intermediate.chain_pem.clone(),
            signer.intermediate.root_pem.clone(),
        ]);
    }
    let ncp = ctx
        .ncp_clients
        .current(&view.owner, view.generation)
        .ok_or(ChainError::NoClient)?;
    Ok(vec![ncp.get_ca_chain(&view.spec.ca_tag).await?])
}

async fn reconcile<K: IssuerResource>(
    issuer: Arc<K>,
    ctx: Arc<Context>,
    mode: Publication,
) -> Result<Action, TrustBundleError> {
    let signer = signer_of(&*issuer);
    let signer_name = signer.signer_name();
    let name = bundle_name(&signer_name);
    let api: Api<ClusterTrustBundle> = Api::all(ctx.client.clone());
    let write_err = |source| TrustBundleError::WriteBundle {
        name: name.clone(),
        source,
    };
    let spec = issuer.issuer_spec();
    let existing = match api.get_opt(&name).await {
        Ok(b) => b,
        Err(e) if is_unserved(&e) => None,
        Err(e) => return Err(write_err(e)),
    };
    if !decide::wanted(mode, spec.trust_bundle.as_ref()) {
        if existing.is_some() {
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(write_err(e)),
            }
        }
        // Next: a spec change wakes us.
        return Ok(Action::await_change());
    }
    let view = IssuerView::from(&*issuer, &ctx.settings.cluster_resource_namespace);
    if view.readiness != Readiness::Ready {
        // Not Ready: the last published root stays (a passing failure must not withdraw trust);
        // the issuer's status change wakes us.
        return Ok(Action::await_change());
    }
    let chain = match ca_chain(&ctx, &view).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(issuer = %view.owner, error = %e, "cannot read the CA chain for the ClusterTrustBundle");
            return Ok(Action::requeue(ISSUER_WAIT));
        }
    };
    let include = spec
        .trust_bundle
        .as_ref()
        .is_some_and(|t| t.include_intermediates);
    let refs: Vec<&str> = chain.iter().map(String::as_str).collect();
    let pem = match bundle_pem(&refs, include) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(issuer = %view.owner, error = %e, "no ClusterTrustBundle");
            return Ok(Action::requeue(ISSUER_WAIT));
        }
    };
    let recheck = Action::requeue(ctx.settings.issuer_recheck_interval);
    if !needs_write(existing.as_ref(), &signer_name, &pem) {
        return Ok(recheck);
    }
    let mut body = serde_json::json!({
        "apiVersion": "certificates.k8s.io/v1beta1", "kind": "ClusterTrustBundle",
        "metadata": {"name": name, "labels": {MANAGED_BY_LABEL: MANAGED_BY}},
        "spec": {"signerName": signer_name, "trustBundle": pem},
    });
    if let (None, Some(owner)) = (signer.namespace(), issuer.controller_owner_ref(&())) {
        // A cluster-scoped owner: the garbage collector removes the bundle with the issuer too.
        body["metadata"]["ownerReferences"] = serde_json::json!([owner]);
    }
    let reference = issuer.object_ref(&());
    match api
        .patch(
            &name,
            &PatchParams::apply(crate::controller::FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
    {
        Ok(_) => {
            let note =
                format!("ClusterTrustBundle {name} holds the NCP root of signer {signer_name}");
            ctx.publish(
                &reference,
                Note::normal(Reason::TrustBundlePublished, note, EventAction::CheckCA),
            )
            .await;
            Ok(recheck)
        }
        Err(e) if is_unserved(&e) => {
            let note = "the ClusterTrustBundle API (certificates.k8s.io/v1beta1 clustertrustbundles) is not served by this cluster: enable the ClusterTrustBundle feature gate and runtime-config, or turn trust bundles off (--trust-bundles=off)";
            ctx.publish(
                &reference,
                Note::warning(Reason::TrustBundleUnavailable, note, EventAction::CheckCA),
            )
            .await;
            // Next: looked at again much later; nothing else depends on it.
            Ok(Action::requeue(TRUST_BUNDLE_API_RETRY))
        }
        Err(e) => Err(write_err(e)),
    }
}

// The signature is kube's `Controller::run` error policy.
#[allow(clippy::needless_pass_by_value)]
fn error_policy<K: IssuerResource>(
    issuer: Arc<K>,
    error: &TrustBundleError,
    _ctx: Arc<Context>,
) -> Action {
    tracing::warn!(issuer = %issuer.owner_id(), error = %error, "trust bundle reconcile failed");
    Action::requeue(MIN_BACKOFF)
}

async fn run_for<K: IssuerResource>(
    ctx: Arc<Context>,
    issuers: &crate::watches::Shared<K>,
    mode: Publication,
    shutdown: tokio_util::sync::CancellationToken,
) {
    Controller::for_shared_stream(issuers.objects(), issuers.store())
        .graceful_shutdown_on(shutdown.cancelled_owned())
        .run(
            move |issuer, ctx| reconcile::<K>(issuer, ctx, mode),
            error_policy::<K>,
            ctx,
        )
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(kind = K::KIND, error = %e, "trust bundle controller event");
            }
        })
        .await;
}

/// Deletes our bundles whose issuer no longer exists.
async fn sweep(ctx: &Context, watches: &crate::watches::Watches) {
    let api: Api<ClusterTrustBundle> = Api::all(ctx.client.clone());
    let ours = ListParams::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"));
    let Ok(list) = api.list(&ours).await else {
        // Not served, or not allowed: nothing we published can exist.
        return;
    };
    let (private_cas, cluster_private_cas) = (
        watches.private_cas.store(),
        watches.cluster_private_cas.store(),
    );
    for bundle in list.items {
        let live = match bundle
            .spec
            .signer_name
            .as_deref()
            .and_then(SignerRef::parse)
        {
            Some(SignerRef::PrivateCA { namespace, name }) => private_cas
                .get(&ObjectRef::<PrivateCA>::new(&name).within(&namespace))
                .is_some(),
            Some(SignerRef::ClusterPrivateCA { name }) => cluster_private_cas
                .get(&ObjectRef::<ClusterPrivateCA>::new(&name))
                .is_some(),
            // Not a bundle of our signers: leave it alone.
            None => true,
        };
        if !live {
            let name = bundle.name_any();
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {
                    tracing::info!(bundle = %name, "removed the ClusterTrustBundle of a deleted issuer")
                }
                Err(e) => {
                    tracing::warn!(bundle = %name, error = %e, "cannot remove a ClusterTrustBundle")
                }
            }
        }
    }
}

/// Publishes the bundles of both issuer kinds under `mode` and sweeps those of deleted issuers,
/// until `shutdown` is cancelled.
pub async fn run(
    ctx: Arc<Context>,
    watches: &crate::watches::Watches,
    mode: Publication,
    shutdown: tokio_util::sync::CancellationToken,
) {
    if mode == Publication::Off {
        return;
    }
    let removals = futures::stream::select(
        watches.private_cas.removals(),
        watches.cluster_private_cas.removals(),
    );
    let sweeps = async {
        let mut removals = std::pin::pin!(removals.take_until(shutdown.clone().cancelled_owned()));
        while removals.next().await.is_some() {
            sweep(&ctx, watches).await;
        }
    };
    tokio::join!(
        run_for::<PrivateCA>(ctx.clone(), &watches.private_cas, mode, shutdown.clone()),
        run_for::<ClusterPrivateCA>(
            ctx.clone(),
            &watches.cluster_private_cas,
            mode,
            shutdown.clone()
        ),
        sweeps,
    );
}
