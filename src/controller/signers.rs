//! The intermediates of subordinate issuers, in memory: what the CertificateRequest controller signs
//! with. The subordinate controller fills it; nothing else writes to it.

use super::subordinate::decide::Intermediate;
use crate::ncp::types::KeyType;
use crate::pki::{PkiError, PrivateKey};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// An intermediate ready to sign, with the Secret it came from.
#[derive(Debug)]
pub struct LocalSigner {
    /// Name of the Secret.
    pub secret_name: String,
    /// The checked intermediate.
    pub intermediate: Intermediate,
}

/// The intermediates of the subordinate issuers, by issuer.
#[derive(Default)]
pub struct SignerCache {
    signers: Mutex<HashMap<String, Arc<LocalSigner>>>,
}

impl std::fmt::Debug for SignerCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignerCache").finish_non_exhaustive()
    }
}

impl SignerCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<LocalSigner>>> {
        self.signers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The signer of issuer `owner` (see `IssuerResource::owner_id`), if loaded.
    #[must_use]
    pub fn get(&self, owner: &str) -> Option<Arc<LocalSigner>> {
        self.lock().get(owner).cloned()
    }

    pub(crate) fn put(&self, owner: &str, signer: Arc<LocalSigner>) {
        self.lock().insert(owner.to_string(), signer);
    }

    /// Forgets the signers of every issuer for which `keep(owner)` is false (deleted issuers);
    /// returns how many were forgotten.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) -> usize {
        let mut signers = self.lock();
        let before = signers.len();
        signers.retain(|owner, _| keep(owner));
        before - signers.len()
    }

    /// How many signers are held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no signer is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Holds `signer` for `owner`, or nothing.
    pub(crate) fn set(&self, owner: &str, signer: Option<Arc<LocalSigner>>) {
        match signer {
            Some(s) => self.put(owner, s),
            None => {
                self.lock().remove(owner);
            }
        }
    }
}

/// Generates a key on a blocking thread: RSA-4096 takes a second or more of CPU, which must not stall
/// the async runtime (and the reconciles and probes it serves).
///
/// # Errors
/// When generation fails, or its thread panicked.
pub async fn generate_key(key_type: KeyType) -> Result<PrivateKey, PkiError> {
    tokio::task::spawn_blocking(move || PrivateKey::generate(key_type))
        .await
        .map_err(|e| PkiError::KeyGeneration(format!("key generation task failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn a_key_is_generated_off_the_runtime_thread_which_keeps_serving() {
        // On a single-threaded runtime, a tick task only runs while generation is off-thread.
        let ticks = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = ticks.clone();
        let ticker = tokio::spawn(async move {
            loop {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        });
        let key = generate_key(KeyType::Rsa2048).await.unwrap();
        ticker.abort();
        assert!(key.spki_der().len() > 200);
        assert!(
            ticks.load(std::sync::atomic::Ordering::SeqCst) > 1,
            "the runtime was blocked while the key was generated"
        );
    }

    #[test]
    fn retain_forgets_the_signers_of_deleted_issuers() {
        let pki = crate::controller::subordinate::testing::pki();
        let cache = SignerCache::default();
        cache.put("PrivateCA/a/x", pki.signer("x-ca"));
        cache.put("PrivateCA/a/y", pki.signer("y-ca"));
        assert_eq!(cache.retain(|owner| owner == "PrivateCA/a/y"), 1);
        assert!(cache.get("PrivateCA/a/x").is_none());
        assert!(cache.get("PrivateCA/a/y").is_some());
        assert_eq!(cache.retain(|_| false), 1);
        assert!(cache.is_empty());
    }
}
