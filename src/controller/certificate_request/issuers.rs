//! The issuer a request names, as the request controller needs it, and where it is read from: the
//! issuer watches' cache when it is Ready there (saving a read per request), the API server otherwise,
//! so a request never waits on a stale "not Ready".

use crate::api::certmanager::CertificateRequest;
use crate::api::{ClusterPrivateCA, IssuerResource, IssuerSpec, PrivateCA};
use crate::controller::conditions::{self, ConditionStatus};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::ResourceExt as _;
use kube::api::Api;
use kube::runtime::reflector::{ObjectRef, Store};

/// Whether an issuer may sign, as its own status says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// `Ready=True`, observed at the current generation.
    Ready,
    /// Not Ready, with the condition's reason and message.
    NotReady {
        /// `reason: message` of the issuer's Ready condition.
        why: String,
    },
    /// The issuer has not been checked yet.
    Unchecked,
}

/// The issuer a request names.
#[derive(Debug, Clone)]
pub struct IssuerView {
    /// `PrivateCA` or `ClusterPrivateCA`.
    pub kind: &'static str,
    /// Its name.
    pub name: String,
    /// Its spec.
    pub spec: IssuerSpec,
    /// Where its Secrets live.
    pub secret_namespace: String,
    /// Whether it may sign.
    pub readiness: Readiness,
    /// The NCP CA's NotAfter, as the issuer last saw it.
    pub ca_not_after_unix: Option<i64>,
    /// How the issuer names itself on the Secrets it owns (subordinate mode), and its NCP client.
    pub owner: String,
    /// Its `metadata.generation`: its NCP client is used only if built at this generation.
    pub generation: Option<i64>,
    /// The root the issuer checked its intermediate against (subordinate mode).
    pub subordinate_root: Option<String>,
    /// The issuer, as the related object of the request's events.
    pub reference: ObjectReference,
}

impl IssuerView {
    /// The view of `issuer`; `crn` is the cluster resource namespace.
    pub fn from<K: IssuerResource>(issuer: &K, crn: &str) -> Self {
        let status = issuer.issuer_status();
        let readiness =
            match status.and_then(|s| conditions::find(&s.conditions, conditions::READY)) {
                None => Readiness::Unchecked,
                Some(c) => {
                    let current = c.observed_generation.is_none()
                        || c.observed_generation == issuer.meta().generation;
                    if ConditionStatus::parse(&c.status) == ConditionStatus::True && current {
                        Readiness::Ready
                    } else {
                        Readiness::NotReady {
                            why: format!("{}: {}", c.reason, c.message),
                        }
                    }
                }
            };
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
            readiness,
            ca_not_after_unix,
            owner: issuer.owner_id(),
            generation: issuer.meta().generation,
            subordinate_root: status
                .and_then(|s| s.subordinate.as_ref())
                .map(|s| s.root_sha256.clone()),
            reference: issuer.object_ref(&()),
        }
    }

    /// Whether the issuer may sign now.
    #[must_use]
    pub fn is_ready(&self) -> bool {
        self.readiness == Readiness::Ready
    }
}

/// What the fetch phase found of a request's issuer.
#[derive(Debug, Clone)]
pub enum IssuerLookup {
    /// Not looked up: the decision does not need it.
    NotNeeded,
    /// Not Ready in the cache and not read (the first touch of a request only looks in the cache).
    NotCached,
    /// It does not exist.
    Missing,
    /// It could not be read.
    Unreadable,
    /// Found.
    Found(Box<IssuerView>),
}

/// The issuers as the request controller's issuer watches last saw them.
#[derive(Clone, Default)]
pub struct IssuerCache {
    /// PrivateCAs.
    pub private_cas: Option<Store<PrivateCA>>,
    /// ClusterPrivateCAs.
    pub cluster_private_cas: Option<Store<ClusterPrivateCA>>,
}

impl IssuerCache {
    /// The request's issuer from the cache, if it is Ready there.
    #[must_use]
    pub fn ready_view(&self, cr: &CertificateRequest, crn: &str) -> Option<IssuerView> {
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
        view.is_ready().then_some(view)
    }

    /// Kind, namespace and name of the cached issuer whose owner id is `owner`.
    #[must_use]
    pub fn issuer_named_by_owner(
        &self,
        owner: &str,
    ) -> Option<(&'static str, Option<String>, String)> {
        let private = self.private_cas.as_ref().and_then(|s| {
            s.state()
                .into_iter()
                .find(|i| i.owner_id() == owner)
                .map(|i| (PrivateCA::KIND, i.namespace(), i.name_any()))
        });
        private.or_else(|| {
            self.cluster_private_cas.as_ref().and_then(|s| {
                s.state()
                    .into_iter()
                    .find(|i| i.owner_id() == owner)
                    .map(|i| (ClusterPrivateCA::KIND, None, i.name_any()))
            })
        })
    }

    /// The request's issuer: from the cache when Ready there, else read from the API server.
    pub async fn lookup(
        &self,
        client: &kube::Client,
        cr: &CertificateRequest,
        crn: &str,
    ) -> IssuerLookup {
        if let Some(view) = self.ready_view(cr, crn) {
            return IssuerLookup::Found(Box::new(view));
        }
        let name = &cr.spec.issuer_ref.name;
        let read = match cr.spec.issuer_ref.kind.as_deref() {
            Some(ClusterPrivateCA::KIND) => Api::<ClusterPrivateCA>::all(client.clone())
                .get_opt(name)
                .await
                .map(|i| i.map(|i| IssuerView::from(&i, crn))),
            _ => Api::<PrivateCA>::namespaced(client.clone(), &cr.namespace().unwrap_or_default())
                .get_opt(name)
                .await
                .map(|i| i.map(|i| IssuerView::from(&i, crn))),
        };
        match read {
            Ok(Some(view)) => IssuerLookup::Found(Box::new(view)),
            Ok(None) => IssuerLookup::Missing,
            Err(e) => {
                tracing::warn!(error = %e, issuer = %name, "cannot read issuer");
                IssuerLookup::Unreadable
            }
        }
    }
}
