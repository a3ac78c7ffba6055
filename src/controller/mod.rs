//! The controllers and what they share: the context, NCP clients built from issuer specs, and the
//! issuer-level errors. This file only wires them: its children never use anything defined here.

pub mod certificate_request;
mod clients;
pub mod conditions;
mod context;
mod credentials;
pub mod csr;
pub mod delays;
pub mod events;
pub mod failure;
pub mod fairness;
pub mod issuer;
pub mod kube_message;
pub mod period;
pub mod pod_certificate;
pub mod recovery;
pub mod request_outcome;
pub mod signer_wake;
mod signers;
pub mod subordinate;
pub mod trust_bundle;

pub use clients::NcpClientCache;
pub use context::{
    Context, DEFAULT_CLOCK_SKEW_TOLERANCE, DEFAULT_WORKERS, FIELD_MANAGER, Settings, context,
};
pub use credentials::{IssuerError, read_credentials};
use std::sync::Arc;

/// Which Kubernetes-native signing controllers run (each needs its own RBAC; see the chart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NativeSigning {
    /// The CertificateSigningRequest signer.
    pub csr: bool,
    /// Which issuers publish a ClusterTrustBundle.
    pub trust_bundles: trust_bundle::decide::Publication,
    /// The PodCertificateRequest signer (where the cluster serves the API).
    pub pod_certificates: bool,
}

impl Default for NativeSigning {
    /// The CSR and PodCertificateRequest signers on; trust bundles for the issuers that ask for one.
    fn default() -> Self {
        Self {
            csr: true,
            trust_bundles: trust_bundle::decide::Publication::OptIn,
            pod_certificates: true,
        }
    }
}

/// [`run_all_with`] with every Kubernetes-native signing controller on.
pub async fn run_all(
    ctx: Arc<Context>,
    watches: &crate::watches::Watches,
    concurrency: u16,
    term: tokio_util::sync::CancellationToken,
) {
    run_all_with(ctx, watches, concurrency, term, NativeSigning::default()).await;
}

/// Runs the PrivateCA, ClusterPrivateCA and CertificateRequest controllers, and the native signing
/// controllers `native` turns on, on the shared `watches` until `term` is cancelled (shutdown, or the
/// end of a leadership term), and forgets the metrics and NCP clients of deleted issuers meanwhile.
pub async fn run_all_with(
    ctx: Arc<Context>,
    watches: &crate::watches::Watches,
    concurrency: u16,
    term: tokio_util::sync::CancellationToken,
    native: NativeSigning,
) {
    let csr_term = term.clone();
    let csr_signer = async {
        if native.csr {
            csr::run(ctx.clone(), concurrency, watches, csr_term).await;
        }
    };
    let pcr_term = term.clone();
    let pod_certificates = async {
        if native.pod_certificates {
            pod_certificate::run(ctx.clone(), concurrency, watches, pcr_term).await;
        }
    };
    tokio::join!(
        csr_signer,
        pod_certificates,
        trust_bundle::run(ctx.clone(), watches, native.trust_bundles, term.clone()),
        issuer::run::<crate::api::PrivateCA>(ctx.clone(), &watches.private_cas, term.clone()),
        issuer::run::<crate::api::ClusterPrivateCA>(
            ctx.clone(),
            &watches.cluster_private_cas,
            term.clone()
        ),
        certificate_request::run(ctx.clone(), concurrency, watches, term.clone()),
        forget_deleted_issuers(&ctx, watches, term),
    );
}

/// Whenever issuers may have been deleted, drops the `issuer_ready` series and NCP clients of those
/// no longer in the stores.
async fn forget_deleted_issuers(
    ctx: &Context,
    watches: &crate::watches::Watches,
    term: tokio_util::sync::CancellationToken,
) {
    use crate::api::{ClusterPrivateCA, IssuerResource as _, PrivateCA};
    use futures::StreamExt as _;
    use kube::runtime::reflector::ObjectRef;
    let removals = futures::stream::select(
        watches.private_cas.removals(),
        watches.cluster_private_cas.removals(),
    );
    let mut removals = std::pin::pin!(removals.take_until(term.cancelled_owned()));
    let (private_cas, cluster_private_cas) = (
        watches.private_cas.store(),
        watches.cluster_private_cas.store(),
    );
    while removals.next().await.is_some() {
        let series = ctx.metrics.retain_issuers(PrivateCA::KIND, |ns, name| {
            private_cas.get(&ObjectRef::new(name).within(ns)).is_some()
        }) + ctx
            .metrics
            .retain_issuers(ClusterPrivateCA::KIND, |_, name| {
                cluster_private_cas.get(&ObjectRef::new(name)).is_some()
            });
        let live: std::collections::HashSet<String> = private_cas
            .state()
            .iter()
            .map(|i| i.owner_id())
            .chain(cluster_private_cas.state().iter().map(|i| i.owner_id()))
            .collect();
        let clients = ctx.ncp_clients.retain(|owner| live.contains(owner));
        let signers = ctx.subordinates.retain(|owner| live.contains(owner));
        if series + clients + signers > 0 {
            tracing::debug!(series, clients, signers, "forgot deleted issuers");
        }
    }
}
