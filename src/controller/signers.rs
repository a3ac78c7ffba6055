//! The intermediates of subordinate issuers, in memory: what the CertificateRequest controller signs
//! with. The subordinate controller fills it; nothing else writes to it.

use super::subordinate::decide::Intermediate;
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
