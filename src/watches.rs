//! The cluster watches, one per kind and shared: a reflector for each of `PrivateCA`,
//! `ClusterPrivateCA` and `CertificateRequest`, started at boot in every replica (leader or follower)
//! and read by the controllers through subscriptions. There is no watch on Secrets (RBAC cannot limit
//! a cluster-wide list to metadata): credentials are read with a GET at each issuer health check.
//!
//! **Why they start at boot.** `/readyz` answers 200 once every one of these watches has listed its
//! kind (see [`Watches::synced`]); a follower runs the same watches, so it becomes ready on the same
//! terms, and a follower that takes over starts its controllers on warm caches. An identity that
//! may not list a kind never syncs that watch, so the process stays unready (and logs the refusal).
//!
//! **Why not `ReflectHandle`.** kube's own shared-stream subscriber replays nothing to a subscriber
//! that joins late (the controllers of a leadership term that begins after the caches have synced),
//! and it stalls when an announced object was deleted before it was read. Subscriptions here start
//! with a snapshot of the store once it has synced, skip objects that are gone, and turn a re-list or
//! a lagging subscriber into a fresh snapshot; the root stream never waits for a slow subscriber.
//! They feed kube's `Controller::for_shared_stream` and `watches_shared_stream`. Nothing here waits
//! on `Store::wait_until_ready`: a kube store wakes only one of its concurrent waiters, and the
//! controller's own wait must be that one; we keep a first-list signal of our own.

use crate::api::certmanager::CertificateRequest;
use crate::api::{ClusterPrivateCA, PrivateCA};
use futures::{Stream, StreamExt as _};
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt as _, watcher};
use std::collections::VecDeque;
use std::fmt::Debug;
use std::sync::Arc;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// Changes a subscriber may fall behind on before it is handed a fresh snapshot instead.
const SUBSCRIBER_BUFFER: usize = 1024;

/// What the root stream tells subscribers; objects are read from the store.
#[derive(Debug)]
enum Change<K: kube::Resource<DynamicType = ()>> {
    /// An object was created or changed.
    Applied(ObjectRef<K>),
    /// An object was deleted.
    Removed,
    /// The watch listed the kind again (first sync, or after it was interrupted).
    Relisted,
}

impl<K: kube::Resource<DynamicType = ()>> Clone for Change<K> {
    fn clone(&self) -> Self {
        match self {
            Self::Applied(r) => Self::Applied(r.clone()),
            Self::Removed => Self::Removed,
            Self::Relisted => Self::Relisted,
        }
    }
}

/// One kind's shared watch: its store and the fan-out of its changes. Cheap to clone.
#[derive(Clone)]
pub struct Shared<K: kube::Resource<DynamicType = ()> + 'static> {
    store: Store<K>,
    /// Weak, so subscriptions end when the root task (the only strong sender) stops.
    changes: broadcast::WeakSender<Change<K>>,
    /// Turns true at the first list. Our own signal, because a kube `Store` wakes only one of its
    /// concurrent `wait_until_ready` callers (the controller's own wait is that one).
    synced: watch::Receiver<bool>,
}

impl<K: kube::Resource<DynamicType = ()> + 'static> Debug for Shared<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

impl<K> Shared<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + Debug + Send + Sync + 'static,
{
    /// Starts the reflector over `events` (backed off on errors) until `shutdown` is cancelled.
    fn start<S>(kind: &'static str, events: S, shutdown: &CancellationToken) -> Self
    where
        S: Stream<Item = watcher::Result<watcher::Event<K>>> + Send + 'static,
    {
        let (store, writer) = reflector::store();
        let (tx, _) = broadcast::channel(SUBSCRIBER_BUFFER);
        let changes = tx.downgrade();
        let (synced_tx, synced) = watch::channel(false);
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let events = reflector::reflector(writer, events.default_backoff());
            let mut events = std::pin::pin!(events);
            loop {
                let event = tokio::select! {
                    () = shutdown.cancelled() => return,
                    event = events.next() => event,
                };
                // A send fails only when nobody subscribes (a follower): nothing to tell.
                let _ = match event {
                    None => return,
                    Some(Ok(watcher::Event::Apply(obj))) => {
                        tx.send(Change::Applied(ObjectRef::from_obj(&obj)))
                    }
                    Some(Ok(watcher::Event::Delete(_))) => tx.send(Change::Removed),
                    Some(Ok(watcher::Event::InitDone)) => {
                        debug!(kind, "watch listed");
                        synced_tx.send_replace(true);
                        tx.send(Change::Relisted)
                    }
                    Some(Ok(watcher::Event::Init | watcher::Event::InitApply(_))) => continue,
                    Some(Err(e)) => {
                        warn!(kind, error = %e, "watch failed; retrying");
                        continue;
                    }
                };
            }
        });
        Self {
            store,
            changes,
            synced,
        }
    }

    /// A receiver of changes; closed at once when the watch has stopped.
    fn subscribe(&self) -> broadcast::Receiver<Change<K>> {
        match self.changes.upgrade() {
            Some(tx) => tx.subscribe(),
            None => broadcast::channel(1).1,
        }
    }

    /// The store (empty until the first list, see [`Shared::synced`]). Do not wait on
    /// [`Store::wait_until_ready`]: with more than one waiter, kube wakes only one.
    #[must_use]
    pub fn store(&self) -> Store<K> {
        self.store.clone()
    }

    /// Resolves once the kind has been listed (never, when the watch cannot list it; at once when
    /// the watch has stopped).
    pub async fn synced(&self) {
        wait_synced(self.synced.clone()).await;
    }

    /// Every object once the kind has been listed, then every object created or changed, and every
    /// object again after a re-list (or when this subscriber fell behind). Ends when the watch stops.
    pub fn objects(&self) -> impl Stream<Item = Arc<K>> + Send + 'static {
        // Subscribed before the snapshot is taken, so nothing falls between the two.
        let changes = self.subscribe();
        let synced = self.synced.clone();
        let state = (changes, self.store.clone(), None::<VecDeque<Arc<K>>>);
        futures::stream::unfold(state, move |(mut changes, store, pending)| {
            let synced = synced.clone();
            async move {
                let mut pending = match pending {
                    Some(pending) => pending,
                    None => {
                        if !wait_synced(synced).await {
                            return None;
                        }
                        store.state().into()
                    }
                };
                loop {
                    if let Some(obj) = pending.pop_front() {
                        return Some((obj, (changes, store, Some(pending))));
                    }
                    match changes.recv().await {
                        Ok(Change::Applied(r)) => {
                            // Gone again already: its deletion needs no reconcile.
                            if let Some(obj) = store.get(&r) {
                                return Some((obj, (changes, store, Some(pending))));
                            }
                        }
                        Ok(Change::Removed) => {}
                        Ok(Change::Relisted) | Err(broadcast::error::RecvError::Lagged(_)) => {
                            pending.extend(store.state());
                        }
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            }
        })
    }

    /// Yields whenever objects may have been deleted (a delete event, a re-list, or this subscriber
    /// fell behind); the store already reflects it. Ends when the watch stops.
    pub fn removals(&self) -> impl Stream<Item = ()> + Send + 'static {
        let changes = self.subscribe();
        futures::stream::unfold(changes, |mut changes| async move {
            loop {
                match changes.recv().await {
                    Ok(Change::Applied(_)) => {}
                    Ok(Change::Removed | Change::Relisted)
                    | Err(broadcast::error::RecvError::Lagged(_)) => return Some(((), changes)),
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
    }
}

/// Waits for the first list; false when the watch stopped before it.
async fn wait_synced(mut synced: watch::Receiver<bool>) -> bool {
    synced.wait_for(|s| *s).await.is_ok() || *synced.borrow()
}

/// The watches behind the controllers.
#[derive(Debug, Clone)]
pub struct Watches {
    /// Every `PrivateCA`.
    pub private_cas: Shared<PrivateCA>,
    /// Every `ClusterPrivateCA`.
    pub cluster_private_cas: Shared<ClusterPrivateCA>,
    /// Every `CertificateRequest`, pruned of what the controller never reads (see
    /// [`prune`]).
    pub requests: Shared<CertificateRequest>,
}

impl Watches {
    /// Starts every watch; they run until `shutdown` is cancelled.
    #[must_use]
    pub fn start(client: &kube::Client, shutdown: &CancellationToken) -> Self {
        // Issuers are few: listed consistently. Requests may be many: listed from the API server's
        // watch cache.
        let consistent = watcher::Config::default;
        Self {
            private_cas: Shared::start(
                "PrivateCA",
                watcher(Api::<PrivateCA>::all(client.clone()), consistent()),
                shutdown,
            ),
            cluster_private_cas: Shared::start(
                "ClusterPrivateCA",
                watcher(Api::<ClusterPrivateCA>::all(client.clone()), consistent()),
                shutdown,
            ),
            requests: Shared::start(
                "CertificateRequest",
                watcher(
                    Api::<CertificateRequest>::all(client.clone()),
                    watcher::Config::default().any_semantic(),
                )
                .modify(prune),
                shutdown,
            ),
        }
    }

    /// Resolves once every watch has listed its kind: what `/readyz` waits for.
    pub async fn synced(&self) {
        tokio::join!(
            self.private_cas.synced(),
            self.cluster_private_cas.synced(),
            self.requests.synced(),
        );
    }
}

/// Drops from the cached copy of a request what no reconcile reads, so that the cache of every
/// CertificateRequest in the cluster stays small: `managedFields` always (a JSON tree per field manager,
/// the largest part of a request); for requests of other issuers everything but their identity and
/// `issuerRef` (their CSR, annotations and status, with the issued certificate); and for our requests
/// in a final state (Issued, Failed, Denied: never acted on again) their CSR and the certificate and CA
/// in their status. Their deletion (the revocation finalizer) reads the request fresh.
pub fn prune(cr: &mut CertificateRequest) {
    cr.metadata.managed_fields = None;
    if !cr.names_our_issuer() {
        cr.metadata.annotations = None;
        cr.metadata.labels = None;
        cr.spec.request = k8s_openapi::ByteString(Vec::new());
        cr.status = None;
    } else if is_final(cr) {
        cr.spec.request = k8s_openapi::ByteString(Vec::new());
        if let Some(status) = cr.status.as_mut() {
            status.certificate = None;
            status.ca = None;
        }
    }
}

/// Whether the request's Ready condition is final: True, or False with reason Failed or Denied.
fn is_final(cr: &CertificateRequest) -> bool {
    use crate::reason::Reason;
    cr.condition("Ready").is_some_and(|c| {
        c.status == "True"
            || [Reason::Failed.as_str(), Reason::Denied.as_str()]
                .contains(&c.reason.as_deref().unwrap_or_default())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::stream;
    use k8s_openapi::api::core::v1::ConfigMap;
    use std::time::Duration;
    use tokio::sync::mpsc;

    fn cm(name: &str, value: &str) -> ConfigMap {
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some(name.into());
        cm.metadata.namespace = Some("ns".into());
        cm.data = Some([("v".to_string(), value.to_string())].into());
        cm
    }

    /// A shared watch fed by hand through the returned sender.
    fn fed() -> (
        Shared<ConfigMap>,
        mpsc::UnboundedSender<watcher::Event<ConfigMap>>,
        CancellationToken,
    ) {
        let (tx, rx) = mpsc::unbounded_channel();
        let shutdown = CancellationToken::new();
        let events = stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|e| (Ok(e), rx)) },
        );
        (Shared::start("ConfigMap", events, &shutdown), tx, shutdown)
    }

    async fn next<S: Stream + Unpin>(s: &mut S) -> S::Item {
        tokio::time::timeout(Duration::from_secs(5), s.next())
            .await
            .expect("an item within 5 s")
            .expect("the stream goes on")
    }

    fn value(cm: &ConfigMap) -> &str {
        cm.data.as_ref().unwrap()["v"].as_str()
    }

    #[test]
    fn a_final_request_of_ours_is_cached_without_its_csr_and_certificate() {
        use crate::api::certmanager::{
            CertificateRequestSpec, CertificateRequestStatus, RequestCondition,
        };
        let request = |ready: &str, reason: &str| {
            let mut cr = CertificateRequest::new(
                "r",
                serde_json::from_value::<CertificateRequestSpec>(serde_json::json!({
                    "request": "Y3Ny",
                    "issuerRef": {"group": "pca.ncp-issuer.dev", "kind": "PrivateCA", "name": "pca"}
                }))
                .unwrap(),
            );
            cr.status = Some(CertificateRequestStatus {
                conditions: vec![RequestCondition {
                    type_: "Ready".into(),
                    status: ready.into(),
                    reason: Some(reason.into()),
                    ..RequestCondition::default()
                }],
                certificate: Some(k8s_openapi::ByteString(b"cert".to_vec())),
                ca: Some(k8s_openapi::ByteString(b"ca".to_vec())),
                ..CertificateRequestStatus::default()
            });
            cr
        };
        for (ready, reason) in [("True", "Issued"), ("False", "Failed"), ("False", "Denied")] {
            let mut cr = request(ready, reason);
            prune(&mut cr);
            assert!(cr.spec.request.0.is_empty(), "{reason}");
            let status = cr.status.as_ref().unwrap();
            assert!(
                status.certificate.is_none() && status.ca.is_none(),
                "{reason}"
            );
            assert_eq!(status.conditions.len(), 1, "the condition stays: {reason}");
        }
        // Still being worked on: kept whole.
        let mut pending = request("False", "Pending");
        prune(&mut pending);
        assert_eq!(pending.spec.request.0, b"csr");
        assert!(pending.status.unwrap().certificate.is_some());
    }

    #[tokio::test]
    async fn a_late_subscriber_starts_with_a_snapshot_then_follows_changes() {
        let (shared, tx, _shutdown) = fed();
        tx.send(watcher::Event::Init).unwrap();
        tx.send(watcher::Event::InitApply(cm("a", "1"))).unwrap();
        tx.send(watcher::Event::InitDone).unwrap();
        tokio::time::timeout(Duration::from_secs(5), shared.synced())
            .await
            .expect("synced");
        // Subscribed after the list: the snapshot still delivers `a`.
        let mut objects = Box::pin(shared.objects());
        assert_eq!(next(&mut objects).await.metadata.name.as_deref(), Some("a"));
        tx.send(watcher::Event::Apply(cm("b", "2"))).unwrap();
        assert_eq!(next(&mut objects).await.metadata.name.as_deref(), Some("b"));
        tx.send(watcher::Event::Apply(cm("a", "3"))).unwrap();
        assert_eq!(value(&*next(&mut objects).await), "3");
    }

    #[tokio::test]
    async fn every_subscriber_waiting_for_the_first_list_is_woken() {
        let (shared, tx, _shutdown) = fed();
        let mut first = Box::pin(shared.objects());
        let mut second = Box::pin(shared.objects());
        let waiters = tokio::spawn({
            let shared = shared.clone();
            async move { tokio::join!(shared.synced(), shared.synced()) }
        });
        // Let all of them wait before the list arrives.
        tokio::task::yield_now().await;
        tx.send(watcher::Event::Init).unwrap();
        tx.send(watcher::Event::InitApply(cm("a", "1"))).unwrap();
        tx.send(watcher::Event::InitDone).unwrap();
        let (a, b) = tokio::join!(next(&mut first), next(&mut second));
        assert_eq!(
            (a.metadata.name.as_deref(), b.metadata.name.as_deref()),
            (Some("a"), Some("a"))
        );
        tokio::time::timeout(Duration::from_secs(5), waiters)
            .await
            .expect("every synced() resolves")
            .unwrap();
    }

    #[tokio::test]
    async fn an_object_deleted_before_it_is_read_is_skipped_not_stalled_on() {
        let (shared, tx, _shutdown) = fed();
        tx.send(watcher::Event::Init).unwrap();
        tx.send(watcher::Event::InitDone).unwrap();
        let mut objects = Box::pin(shared.objects());
        let mut removals = Box::pin(shared.removals());
        shared.synced().await;
        tx.send(watcher::Event::Apply(cm("gone", "1"))).unwrap();
        tx.send(watcher::Event::Delete(cm("gone", "1"))).unwrap();
        tx.send(watcher::Event::Apply(cm("kept", "1"))).unwrap();
        next(&mut removals).await;
        assert_eq!(
            next(&mut objects).await.metadata.name.as_deref(),
            Some("kept")
        );
    }

    #[tokio::test]
    async fn a_relist_delivers_every_object_again_and_counts_as_a_removal() {
        let (shared, tx, _shutdown) = fed();
        tx.send(watcher::Event::Init).unwrap();
        tx.send(watcher::Event::InitApply(cm("a", "1"))).unwrap();
        tx.send(watcher::Event::InitDone).unwrap();
        let mut objects = Box::pin(shared.objects());
        assert_eq!(next(&mut objects).await.metadata.name.as_deref(), Some("a"));
        let mut removals = Box::pin(shared.removals());
        tx.send(watcher::Event::Init).unwrap();
        tx.send(watcher::Event::InitApply(cm("b", "1"))).unwrap();
        tx.send(watcher::Event::InitDone).unwrap();
        next(&mut removals).await;
        assert_eq!(next(&mut objects).await.metadata.name.as_deref(), Some("b"));
        assert_eq!(
            shared.store().state().len(),
            1,
            "a is gone after the re-list"
        );
    }

    #[tokio::test]
    async fn subscriptions_end_and_synced_resolves_once_the_watch_stops() {
        let (shared, tx, shutdown) = fed();
        tx.send(watcher::Event::Init).unwrap();
        tx.send(watcher::Event::InitDone).unwrap();
        shared.synced().await;
        let mut objects = Box::pin(shared.objects());
        let mut removals = Box::pin(shared.removals());
        shutdown.cancel();
        let end = tokio::time::timeout(Duration::from_secs(5), removals.next())
            .await
            .expect("ends within 5 s");
        assert!(end.is_none());
        let end = tokio::time::timeout(Duration::from_secs(5), objects.next())
            .await
            .expect("ends within 5 s");
        assert!(end.is_none());
        tokio::time::timeout(Duration::from_secs(5), shared.synced())
            .await
            .expect("synced resolves");
    }
}
