//! NCP clients built from issuer specs and credentials, one per issuer, dropped with their issuer.

use super::credentials::IssuerError;
use crate::api::IssuerSpec;
use crate::ncp::{self, CallObserver, ClientConfig, Credentials};
use base64::Engine as _;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// NCP clients, cached so a reconcile does not rebuild TLS configuration and connection pools.
///
/// Each issuer (its owner id, see `IssuerResource::owner_id`) holds exactly one client; issuers whose
/// endpoint, trust, credentials and timeout are the same share it. A client is dropped, with its
/// connection pool, as soon as no issuer holds it: when its issuer asks with something different
/// (rotated credentials, a new endpoint), and when its issuer is deleted ([`NcpClientCache::remove`],
/// [`NcpClientCache::retain`]).
#[derive(Default)]
pub struct NcpClientCache {
    clients: Mutex<Clients>,
    observer: Option<Arc<dyn CallObserver>>,
    /// Largest answer body of the clients built (`None`: the client's default).
    max_answer_bytes: Option<usize>,
}

/// The cache's maps: which digest each issuer holds, and each digest's client and holder count.
#[derive(Default)]
struct Clients {
    by_owner: HashMap<String, [u8; 32]>,
    by_digest: HashMap<[u8; 32], (ncp::Client, usize)>,
}

impl Clients {
    /// `owner` lets go of its client; the client goes when nobody holds it.
    fn release(&mut self, owner: &str) -> bool {
        let Some(digest) = self.by_owner.remove(owner) else {
            return false;
        };
        if let Some((_, holders)) = self.by_digest.get_mut(&digest) {
            *holders -= 1;
            if *holders == 0 {
                self.by_digest.remove(&digest);
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

impl NcpClientCache {
    /// A cache whose clients report calls to `observer`.
    #[must_use]
    pub fn with_observer(observer: Option<Arc<dyn CallObserver>>) -> Self {
        Self {
            clients: Mutex::default(),
            observer,
            max_answer_bytes: None,
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

    /// The client of issuer `owner` (its [`subordinate::owner_id`]) for its spec and credentials;
    /// the client it held before is let go when these differ.
    ///
    /// # Errors
    /// When `caBundle` is not base64 or the endpoint is unusable.
    pub fn get(
        &self,
        owner: &str,
        spec: &IssuerSpec,
        credentials: &Credentials,
        request_timeout: Duration,
    ) -> Result<ncp::Client, IssuerError> {
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
        // The digest covers everything that shapes the client, secrets included, so a rotated key
        // gets a new client; only the digest is kept.
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
        let digest: [u8; 32] = h.finalize().into();
        let mut clients = self.lock();
        if clients.by_owner.get(owner) == Some(&digest)
            && let Some((client, _)) = clients.by_digest.get(&digest)
        {
            return Ok(client.clone());
        }
        let client = match clients.by_digest.get(&digest) {
            Some((client, _)) => client.clone(),
            None => {
                let mut config = ClientConfig::new(credentials.clone()).with_endpoint(endpoint);
                config.ca_bundle_pem = bundle;
                config.request_timeout = request_timeout;
                if let Some(max) = self.max_answer_bytes {
                    config.max_answer_bytes = max;
                }
                let mut client = ncp::Client::new(config)?;
                if let Some(observer) = &self.observer {
                    client = client.with_observer(observer.clone());
                }
                client
            }
        };
        clients.release(owner);
        clients
            .by_digest
            .entry(digest)
            .or_insert_with(|| (client.clone(), 0))
            .1 += 1;
        clients.by_owner.insert(owner.to_string(), digest);
        Ok(client)
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

    /// Whether no client is cached.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(endpoint: &str) -> IssuerSpec {
        serde_json::from_value(serde_json::json!({
            "caTag": "tag",
            "endpoint": endpoint,
            "credentials": {"secretRef": {"name": "creds"}}
        }))
        .expect("issuer spec")
    }

    const TIMEOUT: Duration = Duration::from_secs(5);

    #[test]
    fn an_issuer_keeps_one_client_and_rotated_credentials_replace_it() {
        let cache = NcpClientCache::default();
        let first = spec("http://127.0.0.1:1");
        let old = Credentials::new("ak", "sk-1");
        cache.get("PrivateCA/a/x", &first, &old, TIMEOUT).unwrap();
        cache.get("PrivateCA/a/x", &first, &old, TIMEOUT).unwrap();
        assert_eq!(cache.len(), 1);
        cache
            .get(
                "PrivateCA/a/x",
                &first,
                &Credentials::new("ak", "sk-2"),
                TIMEOUT,
            )
            .unwrap();
        assert_eq!(cache.len(), 1, "the old client went with the rotation");
        cache
            .get("PrivateCA/a/x", &spec("http://127.0.0.1:2"), &old, TIMEOUT)
            .unwrap();
        assert_eq!(cache.len(), 1, "a new endpoint replaces the client too");
    }

    #[test]
    fn issuers_with_the_same_settings_share_a_client_until_the_last_is_removed() {
        let cache = NcpClientCache::default();
        let spec = spec("http://127.0.0.1:1");
        let creds = Credentials::new("ak", "sk");
        cache.get("PrivateCA/a/x", &spec, &creds, TIMEOUT).unwrap();
        cache
            .get("ClusterPrivateCA/y", &spec, &creds, TIMEOUT)
            .unwrap();
        assert_eq!(cache.len(), 1);
        assert!(cache.remove("PrivateCA/a/x"));
        assert!(!cache.remove("PrivateCA/a/x"));
        assert_eq!(cache.len(), 1, "still held by the other issuer");
        assert!(cache.remove("ClusterPrivateCA/y"));
        assert!(cache.is_empty());
    }

    #[test]
    fn retain_forgets_the_clients_of_issuers_that_are_gone() {
        let cache = NcpClientCache::default();
        let creds = Credentials::new("ak", "sk");
        cache
            .get(
                "PrivateCA/a/x",
                &spec("http://127.0.0.1:1"),
                &creds,
                TIMEOUT,
            )
            .unwrap();
        cache
            .get(
                "PrivateCA/a/y",
                &spec("http://127.0.0.1:2"),
                &creds,
                TIMEOUT,
            )
            .unwrap();
        assert_eq!(cache.retain(|owner| owner == "PrivateCA/a/y"), 1);
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.retain(|_| false), 1);
        assert!(cache.is_empty());
    }

    #[test]
    fn a_bad_ca_bundle_is_an_error_and_leaves_the_held_client_alone() {
        let cache = NcpClientCache::default();
        let creds = Credentials::new("ak", "sk");
        let good = spec("http://127.0.0.1:1");
        cache.get("PrivateCA/a/x", &good, &creds, TIMEOUT).unwrap();
        let mut bad = good;
        bad.ca_bundle = Some("not base64!".into());
        assert!(matches!(
            cache.get("PrivateCA/a/x", &bad, &creds, TIMEOUT),
            Err(IssuerError::CaBundle(_))
        ));
        assert_eq!(cache.len(), 1);
    }
}
