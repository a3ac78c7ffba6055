//! The controller wiring the two native signers (CertificateSigningRequests, PodCertificateRequests)
//! share: a PrivateCA or ClusterPrivateCA change wakes the requests naming its signer that still
//! need work ([`wake_on_issuers`], over the pure [`waiting_on`]), and the controller runs until
//! shutdown with every reconcile timed in the metrics ([`drive`], [`timed`]).

use crate::controller::Context;
use crate::controller::csr::decide::SignerRef;
use crate::watches::Watches;
use futures::StreamExt as _;
use kube::ResourceExt as _;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;

/// The requests in `store` whose signer name (`signer_name`) names `target` and that `needs_work`
/// says are not done.
#[must_use]
pub fn waiting_on<K>(
    store: &Store<K>,
    target: &SignerRef,
    signer_name: fn(&K) -> &str,
    needs_work: fn(&K) -> bool,
) -> Vec<ObjectRef<K>>
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    store
        .state()
        .into_iter()
        .filter(|r| SignerRef::parse(signer_name(r)).as_ref() == Some(target) && needs_work(r))
        .map(|r| ObjectRef::from_obj(&*r))
        .collect()
}

/// `controller`, also woken by the shared issuer `watches`: a change of an issuer (e.g. it turned
/// Ready) wakes the requests in the controller's store that [`waiting_on`] finds for its signer.
#[must_use]
pub fn wake_on_issuers<K>(
    controller: Controller<K>,
    watches: &Watches,
    signer_name: fn(&K) -> &str,
    needs_work: fn(&K) -> bool,
) -> Controller<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let store = controller.store();
    let store2 = store.clone();
    controller
        .watches_shared_stream(watches.private_cas.objects(), move |i| {
            let target = SignerRef::PrivateCA {
                namespace: i.namespace().unwrap_or_default(),
                name: i.name_any(),
            };
            waiting_on(&store, &target, signer_name, needs_work)
        })
        .watches_shared_stream(watches.cluster_private_cas.objects(), move |i| {
            let target = SignerRef::ClusterPrivateCA { name: i.name_any() };
            waiting_on(&store2, &target, signer_name, needs_work)
        })
}

/// Runs `controller` until `shutdown` is cancelled: every `reconcile` [`timed`] as the controller of
/// `kind`, failures handed to `error_policy`, the controller's own errors logged at debug level.
pub async fn drive<K, E, Fut>(
    controller: Controller<K>,
    ctx: Arc<Context>,
    shutdown: tokio_util::sync::CancellationToken,
    kind: &'static str,
    reconcile: impl Fn(Arc<K>, Arc<Context>) -> Fut,
    error_policy: impl Fn(Arc<K>, &E, Arc<Context>) -> Action,
) where
    K: kube::Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    Fut: Future<Output = Result<Action, E>> + Send + 'static,
    E: std::error::Error + Send + 'static,
{
    controller
        .graceful_shutdown_on(shutdown.cancelled_owned())
        .run(
            move |request, ctx| {
                let reconciled = reconcile(request, ctx.clone());
                async move { timed(&ctx, kind, reconciled).await }
            },
            error_policy,
            ctx,
        )
        .for_each(|result| async move {
            if let Err(e) = result {
                let controller = kind.to_ascii_lowercase();
                tracing::debug!(error = %e, "{controller} controller event");
            }
        })
        .await;
}

/// Runs `reconcile` and records its duration and result (`ok` or `error`) for the controller of
/// `kind`.
///
/// # Errors
/// The reconcile's own.
pub async fn timed<T, E>(
    ctx: &Context,
    kind: &str,
    reconcile: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let started = std::time::Instant::now();
    let result = reconcile.await;
    let outcome = if result.is_ok() { "ok" } else { "error" };
    ctx.metrics
        .observe_reconcile(kind, outcome, started.elapsed());
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
    use kube::runtime::reflector::store::Writer;
    use kube::runtime::watcher::Event;

    fn csr(name: &str, signer: &str) -> CertificateSigningRequest {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "spec": {"signerName": signer, "request": ""},
        }))
        .expect("csr")
    }

    #[test]
    fn only_the_requests_naming_the_signer_that_need_work_are_woken() {
        let mut writer = Writer::<CertificateSigningRequest>::default();
        for c in [
            csr("mine", "clusterprivatecas.pca.ncp-issuer.dev/a"),
            csr("done", "clusterprivatecas.pca.ncp-issuer.dev/a"),
            csr("other", "clusterprivatecas.pca.ncp-issuer.dev/b"),
            csr("foreign", "example.com/a"),
        ] {
            writer.apply_watcher_event(&Event::Apply(c));
        }
        let woken = waiting_on(
            &writer.as_reader(),
            &SignerRef::ClusterPrivateCA { name: "a".into() },
            |c| &c.spec.signer_name,
            |c| c.name_any() != "done",
        );
        let names: Vec<_> = woken.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["mine"]);
    }
}
