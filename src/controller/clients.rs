//! NCP clients, one per issuer, built by the issuer controller at each health check from what it read
//! (the issuer's spec and its credentials Secret) and used by the requests of that issuer, so that no
//! request reads a Secret; dropped with their issuer.

use super::credentials::IssuerError;
use crate::api::{IssuerResource, IssuerSpec};
use crate::ncp::{self, CallObserver, ClientConfig, Credentials};
use base64::Engine as _;
use futures::{Stream, StreamExt as _};
use kube::runtime::reflector::{ObjectRef, Store};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;

/// Notices a subscriber may fall behind on before older ones are dropped (each is a hint: the
/// periodic re-check and the requests' own requeues cover a dropped one).
const NOTICE_BUFFER: usize = 256;

/// What an issuer's health check read to build its client: the issuer's generation and the
/// credentials Secret's resourceVersion. A request uses the client only while the issuer it sees is at
/// that generation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientKey {
    /// `metadata.generation` of the issuer checked.
    pub generation: Option<i64>,
    /// `metadata.resourceVersion` of the credentials Secret read.
    pub secret_version: Option<String>,
}

/// What the cache tells its subscribers, by issuer owner id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A request's NCP call failed in a way that is the issuer's (authentication, CA not ACTIVE):
    /// check the issuer again (once per client built).
    RecheckAsked(String),
    /// The issuer's client was replaced by one built from something else (rotated credentials, a
    /// new endpoint): requests that waited on the old one may try again.
    Replaced(String),
}

/// NCP clients, cached so a reconcile does not rebuild TLS configuration and connection pools.
///
/// Each issuer (its owner id, see `IssuerResource::owner_id`) holds exactly one client, installed by
/// its health check ([`NcpClientCache::install`]) and read by its requests
/// ([`NcpClientCache::current`]); issuers whose endpoint, trust, credentials and timeout are the same
/// share it. A client is dropped, with its connection pool, as soon as no issuer holds it: when its
/// issuer's check builds something different (rotated credentials, a new endpoint), when the check
/// cannot read the credentials, and when its issuer is deleted ([`NcpClientCache::remove`],
/// [`NcpClientCache::retain`]).
pub struct NcpClientCache {
    clients: Mutex<Clients>,
    observer: Option<Arc<dyn CallObserver>>,
    /// Largest answer body of the clients built (`None`: the client's default).
    max_answer_bytes: Option<usize>,
    notices: broadcast::Sender<Notice>,
}

impl Default for NcpClientCache {
    fn default() -> Self {
        Self::with_observer(None)
    }
}

/// What one issuer holds.
#[derive(Debug, Clone)]
struct Held {
    digest: [u8; 32],
    key: ClientKey,
    /// A re-check was asked since this client was installed.
    recheck_asked: bool,
}

/// The cache's maps: what each issuer holds, and each digest's client and holder count.
#[derive(Default)]
struct Clients {
    by_owner: HashMap<String, Held>,
    by_digest: HashMap<[u8; 32], (ncp::Client, usize)>,
}

impl Clients {
    /// `owner` lets go of its client; the client goes when nobody holds it.
    fn release(&mut self, owner: &str) -> bool {
        let Some(held) = self.by_owner.remove(owner) else {
            return false;
        };
        if let Some((_, holders)) = self.by_digest.get_mut(&held.digest) {
            *holders -= 1;
            if *holders == 0 {
                self.by_digest.remove(&held.digest);
            }
        }
        true
    }
}

impl std::fmt::Debug for NcpClientCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NcpClientCache")
            .field("clients", &self.len())
            .finish_non_exhaustive()
    }
}

/// How to build a client, and the digest of everything that shapes it, secrets included (only the
/// digest is kept).
struct Recipe {
    endpoint: String,
    bundle: Option<Vec<u8>>,
    digest: [u8; 32],
}

impl Recipe {
    fn new(
        spec: &IssuerSpec,
        credentials: &Credentials,
        request_timeout: Duration,
    ) -> Result<Self, IssuerError> {
        let endpoint = spec
            .endpoint
            .clone()
            .unwrap_or_else(|| ncp::PUBLIC_ENDPOINT.to_string());
        let bundle = match &spec.ca_bundle {
            Some(b64) if !b64.trim().is_empty() => Some(
                base64::engine::general_purpose::STANDARD
                    .decode(b64.trim())
                    .map_err(|e| IssuerError::CaBundle(e.to_string()))?,
            ),
            _ => None,
        };
        let mut h = Sha256::new();
        for part in [
            endpoint.as_bytes(),
            bundle.as_deref().unwrap_or_default(),
            credentials.access_key.as_bytes(),
            credentials.secret_key.expose().as_bytes(),
            &request_timeout.as_millis().to_le_bytes(),
        ] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part);
        }
        Ok(Self {
            endpoint,
            bundle,
            digest: h.finalize().into(),
        })
    }
}

impl NcpClientCache {
    /// A cache whose clients report calls to `observer`.
    #[must_use]
    pub fn with_observer(observer: Option<Arc<dyn CallObserver>>) -> Self {
        Self {
            clients: Mutex::default(),
            observer,
            max_answer_bytes: None,
            notices: broadcast::channel(NOTICE_BUFFER).0,
        }
    }

    /// The same cache, whose clients read answers of at most `max` bytes.
    #[must_use]
    pub fn with_max_answer_bytes(mut self, max: usize) -> Self {
        self.max_answer_bytes = Some(max);
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Clients> {
        self.clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Installs the client of issuer `owner` (its `IssuerResource::owner_id`) for its spec and the
    /// credentials its health check read (`key` says from what); the client it held before is let go
    /// when these differ, and the requests of the issuer are told ([`Notice::Replaced`]).
    ///
    /// # Errors
    /// When `caBundle` is not base64 or the endpoint is unusable (the issuer then holds no client).
    pub fn install(
        &self,
        owner: &str,
        key: ClientKey,
        spec: &IssuerSpec,
        credentials: &Credentials,
        request_timeout: Duration,
    ) -> Result<ncp::Client, IssuerError> {
        let recipe = match Recipe::new(spec, credentials, request_timeout) {
            Ok(r) => r,
            Err(e) => {
                self.lock().release(owner);
                return Err(e);
            }
        };
        let digest = recipe.digest;
        let mut clients = self.lock();
        let shared = clients.by_digest.get(&digest).map(|(c, _)| c.clone());
        if let (Some(client), Some(held)) = (&shared, clients.by_owner.get_mut(owner))
            && held.digest == digest
        {
            // The same client as before: only what the check read is new.
            held.key = key;
            held.recheck_asked = false;
            return Ok(client.clone());
        }
        let client = match shared {
            Some(client) => client,
            None => match self.make(recipe, credentials, request_timeout) {
                Ok(client) => client,
                Err(e) => {
                    clients.release(owner);
                    return Err(e);
                }
            },
        };
        let replaced = clients.release(owner);
        clients
            .by_digest
            .entry(digest)
            .or_insert_with(|| (client.clone(), 0))
            .1 += 1;
        clients.by_owner.insert(
            owner.to_string(),
            Held {
                digest,
                key,
                recheck_asked: false,
            },
        );
        drop(clients);
        if replaced {
            // Nobody listening (a follower, a unit test) is fine.
            let _ = self.notices.send(Notice::Replaced(owner.to_string()));
        }
        Ok(client)
    }

    /// A client for `recipe`, reporting to the observer.
    fn make(
        &self,
        recipe: Recipe,
        credentials: &Credentials,
        request_timeout: Duration,
    ) -> Result<ncp::Client, IssuerError> {
        let mut config = ClientConfig::new(credentials.clone()).with_endpoint(recipe.endpoint);
        config.ca_bundle_pem = recipe.bundle;
        config.request_timeout = request_timeout;
        if let Some(max) = self.max_answer_bytes {
            config.max_answer_bytes = max;
        }
        let mut client = ncp::Client::new(config)?;
        if let Some(observer) = &self.observer {
            client = client.with_observer(observer.clone());
        }
        Ok(client)
    }

    /// The client the last health check of issuer `owner` built, if that check saw the issuer at
    /// `generation` (a request's issuer whose spec changed since waits for the next check).
    #[must_use]
    pub fn current(&self, owner: &str, generation: Option<i64>) -> Option<ncp::Client> {
        let clients = self.lock();
        let held = clients.by_owner.get(owner)?;
        if held.key.generation != generation {
            return None;
        }
        clients.by_digest.get(&held.digest).map(|(c, _)| c.clone())
    }

    /// What the last health check of issuer `owner` built its client from.
    #[must_use]
    pub fn key(&self, owner: &str) -> Option<ClientKey> {
        self.lock().by_owner.get(owner).map(|h| h.key.clone())
    }

    /// Asks the issuer controller to check issuer `owner` again (a request's call failed with an
    /// issuer-level error). Only the first ask per installed client is passed on: a batch of requests
    /// failing at once costs one check, and no request reads the Secret. True if passed on.
    pub fn ask_recheck(&self, owner: &str) -> bool {
        let mut clients = self.lock();
        let Some(held) = clients.by_owner.get_mut(owner) else {
            return false;
        };
        if held.recheck_asked {
            return false;
        }
        held.recheck_asked = true;
        drop(clients);
        let _ = self.notices.send(Notice::RecheckAsked(owner.to_string()));
        true
    }

    /// The notices from now on; ends never (the cache lives as long as the process). A subscriber
    /// that falls behind skips what it missed.
    pub fn notices(&self) -> impl Stream<Item = Notice> + Send + 'static {
        let rx = self.notices.subscribe();
        futures::stream::unfold(rx, |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(notice) => return Some((notice, rx)),
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
    }

    /// The issuers in `store` whose requests asked for a re-check ([`Notice::RecheckAsked`]), to
    /// trigger their controller.
    pub fn rechecks_asked<K: IssuerResource>(
        &self,
        store: Store<K>,
    ) -> impl Stream<Item = ObjectRef<K>> + Send + 'static {
        self.notices().filter_map(move |notice| {
            let found = match notice {
                Notice::RecheckAsked(owner) => store
                    .state()
                    .into_iter()
                    .find(|i| i.owner_id() == owner)
                    .map(|i| ObjectRef::from_obj(&*i)),
                Notice::Replaced(_) => None,
            };
            std::future::ready(found)
        })
    }

    /// Forgets the client of a deleted issuer; true if it held one.
    pub fn remove(&self, owner: &str) -> bool {
        self.lock().release(owner)
    }

    /// Forgets the clients of every issuer for which `keep(owner)` is false (after a re-list, for
    /// issuers deleted while the watch was down); returns how many issuers were forgotten.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) -> usize {
        let mut clients = self.lock();
        let gone: Vec<String> = clients
            .by_owner
            .keys()
            .filter(|owner| !keep(owner))
            .cloned()
            .collect();
        for owner in &gone {
            clients.release(owner);
        }
        gone.len()
    }

    /// How many distinct clients are cached.
    #[must_use]
    pub fn len(&self) -> usize {
        self.lock().by_digest.len()
    }

    /// How many issuers hold a client.
    #[must_use]
    pub fn issuers(&self) -> usize {
        self.lock().by_owner.len()
    }

    /// Whether no client is cached.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests;
