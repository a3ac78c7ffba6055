//! Fairness between issuers: a bound on the NCP calls in flight per issuer and per endpoint, so that
//! one issuer whose NCP never answers (or one endpoint a namespace user pointed several issuers at)
//! holds at most its share of the CertificateRequest workers. A request whose issuer or endpoint is
//! at its bound does not wait for a slot: its reconcile ends at once and is requeued
//! ([`crate::controller::delays::FAIRNESS_RETRY`]), so the worker goes to another request.
//!
//! NAVER's own endpoints (public and government) have no per-endpoint bound: every issuer may use
//! them, and they are not a namespace user's choice. The per-issuer bound holds for them too.

use crate::ncp::{GOV_ENDPOINT, PUBLIC_ENDPOINT};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Default share of the workers one issuer may hold with NCP calls, in percent.
pub const DEFAULT_ISSUER_SHARE_PERCENT: u8 = 25;
/// Default share of the workers the issuers of one (user-set) endpoint may hold, in percent.
pub const DEFAULT_ENDPOINT_SHARE_PERCENT: u8 = 50;

/// What a bound counts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    /// An issuer, by owner id (`PrivateCA/ns/name`, `ClusterPrivateCA/name`).
    Issuer(String),
    /// An endpoint, by origin (`scheme://host:port`).
    Endpoint(String),
}

#[derive(Debug, Default)]
struct Counts(Mutex<HashMap<Key, usize>>);

impl Counts {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, usize>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The in-flight bounds. Cheap to share: permits hold an `Arc` of the counts.
#[derive(Debug)]
pub struct Fairness {
    counts: Arc<Counts>,
    per_issuer: usize,
    per_endpoint: usize,
}

/// Which bound a request met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Busy {
    /// Its issuer has this many NCP calls in flight.
    Issuer(usize),
    /// Its endpoint has this many NCP calls in flight.
    Endpoint(usize),
}

/// A slot taken by one reconcile; given back when dropped.
#[derive(Debug)]
pub struct Permit {
    counts: Arc<Counts>,
    keys: Vec<Key>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut counts = self.counts.lock();
        for key in &self.keys {
            if let Some(n) = counts.get_mut(key) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    counts.remove(key);
                }
            }
        }
    }
}

/// `percent` of `workers`, rounded up, at least 1 and at most `workers` (pure).
#[must_use]
pub fn share_of(workers: u16, percent: u8) -> usize {
    let workers = usize::from(workers.max(1));
    let percent = usize::from(percent.clamp(1, 100));
    (workers * percent).div_ceil(100).clamp(1, workers)
}

/// The origin an endpoint's bound is counted by; `None` for NAVER's own endpoints, and for an endpoint
/// that is not a URL (its client cannot be built, so no call is made).
fn endpoint_key(endpoint: Option<&str>) -> Option<String> {
    let endpoint = endpoint.map_or(PUBLIC_ENDPOINT, str::trim);
    let origin = reqwest::Url::parse(endpoint)
        .ok()?
        .origin()
        .ascii_serialization();
    let naver = [PUBLIC_ENDPOINT, GOV_ENDPOINT]
        .iter()
        .any(|n| reqwest::Url::parse(n).is_ok_and(|u| u.origin().ascii_serialization() == origin));
    (!naver && origin != "null").then_some(origin)
}

impl Fairness {
    /// Bounds for `workers` CertificateRequest workers: `issuer_share_percent` of them per issuer,
    /// `endpoint_share_percent` per user-set endpoint (each at least one).
    #[must_use]
    pub fn new(workers: u16, issuer_share_percent: u8, endpoint_share_percent: u8) -> Self {
        Self {
            counts: Arc::default(),
            per_issuer: share_of(workers, issuer_share_percent),
            per_endpoint: share_of(workers, endpoint_share_percent),
        }
    }

    /// The bound per issuer.
    #[must_use]
    pub fn per_issuer(&self) -> usize {
        self.per_issuer
    }

    /// The bound per user-set endpoint.
    #[must_use]
    pub fn per_endpoint(&self) -> usize {
        self.per_endpoint
    }

    /// A slot for one NCP step of issuer `owner` on `endpoint` (`None`: the public endpoint), or which
    /// bound is reached.
    ///
    /// # Errors
    /// [`Busy`] when the issuer or its endpoint is at its bound; nothing is taken then.
    pub fn try_acquire(&self, owner: &str, endpoint: Option<&str>) -> Result<Permit, Busy> {
        let issuer = Key::Issuer(owner.to_string());
        let endpoint = endpoint_key(endpoint).map(Key::Endpoint);
        let mut counts = self.counts.lock();
        let of = |key: &Key| counts.get(key).copied().unwrap_or(0);
        let at_issuer = of(&issuer);
        if at_issuer >= self.per_issuer {
            return Err(Busy::Issuer(at_issuer));
        }
        if let Some(key) = &endpoint {
            let at_endpoint = of(key);
            if at_endpoint >= self.per_endpoint {
                return Err(Busy::Endpoint(at_endpoint));
            }
        }
        let keys: Vec<Key> = std::iter::once(issuer).chain(endpoint).collect();
        for key in &keys {
            *counts.entry(key.clone()).or_insert(0) += 1;
        }
        drop(counts);
        Ok(Permit {
            counts: Arc::clone(&self.counts),
            keys,
        })
    }

    /// NCP steps of issuer `owner` in flight now.
    #[must_use]
    pub fn in_flight(&self, owner: &str) -> usize {
        self.counts
            .lock()
            .get(&Key::Issuer(owner.to_string()))
            .copied()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_share_is_rounded_up_and_never_zero_nor_more_than_all_workers() {
        assert_eq!(share_of(16, 25), 4);
        assert_eq!(share_of(8, 25), 2);
        assert_eq!(share_of(10, 25), 3);
        assert_eq!(share_of(1, 25), 1);
        assert_eq!(share_of(0, 25), 1);
        assert_eq!(share_of(16, 0), 1);
        assert_eq!(share_of(16, 200), 16);
    }

    #[test]
    fn an_issuer_at_its_bound_is_refused_until_a_permit_is_dropped() {
        let f = Fairness::new(16, 25, 100);
        let held: Vec<Permit> = (0..4)
            .map(|_| f.try_acquire("PrivateCA/a/x", None).unwrap())
            .collect();
        assert_eq!(f.in_flight("PrivateCA/a/x"), 4);
        assert_eq!(
            f.try_acquire("PrivateCA/a/x", None).unwrap_err(),
            Busy::Issuer(4)
        );
        // Another issuer is not affected.
        let other = f.try_acquire("ClusterPrivateCA/y", None).unwrap();
        drop(held);
        assert_eq!(f.in_flight("PrivateCA/a/x"), 0);
        assert!(f.try_acquire("PrivateCA/a/x", None).is_ok());
        drop(other);
        assert!(f.counts.lock().is_empty(), "nothing is left behind");
    }

    #[test]
    fn issuers_sharing_a_user_set_endpoint_share_its_bound_but_not_naver_s() {
        let f = Fairness::new(8, 100, 25);
        let hostile = Some("http://10.0.0.1:8080/api/v1");
        let a = f.try_acquire("PrivateCA/a/x", hostile).unwrap();
        let b = f
            .try_acquire("PrivateCA/a/y", Some("http://10.0.0.1:8080"))
            .unwrap();
        assert_eq!(
            f.try_acquire("PrivateCA/a/z", hostile).unwrap_err(),
            Busy::Endpoint(2)
        );
        // NCP's own endpoints have no per-endpoint bound.
        let public: Vec<Permit> = (0..6)
            .map(|i| {
                f.try_acquire(&format!("PrivateCA/b/{i}"), Some(PUBLIC_ENDPOINT))
                    .unwrap()
            })
            .collect();
        let gov = f.try_acquire("PrivateCA/c/0", Some(GOV_ENDPOINT)).unwrap();
        drop((a, b, public, gov));
        assert!(f.counts.lock().is_empty());
    }

    #[test]
    fn an_endpoint_that_is_not_a_url_is_not_counted() {
        assert_eq!(endpoint_key(Some("not a url")), None);
        assert_eq!(endpoint_key(None), None);
        assert_eq!(
            endpoint_key(Some(" https://pca.apigw.ntruss.com/api/v1 ")),
            None
        );
        assert_eq!(
            endpoint_key(Some("HTTP://Example.com:80/x")).as_deref(),
            Some("http://example.com")
        );
    }
}
