//! The emulated account: its CAs, their keys, certificates, issued certificates, CRLs and users.

use super::clock::{Clock, to_ms};
use super::config::EmulatorConfig;
use super::faults::Faults;
use super::persist;
use super::stats::Stats;
use crate::ncp::messages::{self, ServiceMessage};
use crate::ncp::types::{
    CaCertInfo, CaDetail, CaInfo, CaStatus, CaType, KeyType, UrlInfo, X509Parameters,
};
use crate::pki::{CertInfo, NameAttr, PrivateKey, Signer};
use rand::Rng as _;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};
use tokio::sync::watch;

/// Everything the handlers share.
pub(crate) struct Shared {
    pub config: EmulatorConfig,
    pub base_url: String,
    pub state: Mutex<State>,
    pub stats: Mutex<Stats>,
    pub faults: Faults,
    pub clock: Clock,
    /// Flips to `true` when the server stops: releases the requests held by timeout faults.
    pub shutdown: watch::Sender<bool>,
}

impl Shared {
    pub(crate) fn new(config: EmulatorConfig, base_url: String, state: State) -> Self {
        Self {
            config,
            base_url,
            state: Mutex::new(state),
            stats: Mutex::new(Stats::default()),
            faults: Faults::default(),
            clock: Clock::default(),
            shutdown: watch::channel(false).0,
        }
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn stats(&self) -> MutexGuard<'_, Stats> {
        self.stats.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Saves the state file when something changed. A failed save is logged, not reported to the
    /// client: the change has happened in memory either way.
    pub(crate) fn persist_if_dirty(&self) {
        let mut st = self.state();
        if !st.dirty {
            return;
        }
        st.dirty = false;
        if let Some(path) = &self.config.state_file
            && let Err(e) = persist::save(path, &*st)
        {
            tracing::error!(error = %e, path = %path.display(), "cannot save emulator state");
        }
    }

    /// Forgets every CA, counter and fault, and resets the clock.
    pub(crate) fn reset(&self) {
        {
            let mut st = self.state();
            *st = State::default();
            st.dirty = true;
        }
        self.persist_if_dirty();
        *self.stats() = Stats::default();
        self.faults.clear();
        self.clock.reset();
        tracing::info!("emulator reset");
    }
}

/// Hours between Update CA to `DESTROYING` and the automatic deletion.
pub(crate) const DESTROY_DELAY_MS: i64 = 72 * 3_600_000;

/// Everything the emulator knows; serialised as the state file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct State {
    /// Last numeric id handed out (caId, caCertId).
    pub last_id: i64,
    /// CAs in creation order.
    pub cas: Vec<Ca>,
    /// Set by every mutation; the dispatcher saves the state file and clears it.
    #[serde(skip)]
    pub dirty: bool,
}

/// One CA.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct Ca {
    pub id: i64,
    pub cert_id: i64,
    pub tag: String,
    pub alias: String,
    pub memo: String,
    pub ca_type: CaType,
    pub status: CaStatus,
    /// Status to return to when a deletion is cancelled.
    pub status_before_destroy: Option<CaStatus>,
    pub key_type: KeyType,
    /// PKCS#8 PEM. Never logged.
    pub key_pem: String,
    /// The CA certificate; `None` while PENDING.
    pub cert_pem: Option<String>,
    /// Certificates above this CA: `[issuer, …, root]` (empty for a root).
    pub chain_pems: Vec<String>,
    /// The CSR of a PENDING intermediate.
    pub csr_pem: Option<String>,
    /// Tag of the issuing CA when it is one of ours.
    pub parent_tag: Option<String>,
    /// The subject asked for at creation.
    pub subject: X509Parameters,
    pub signing_count: u64,
    pub rgst_ms: i64,
    pub status_update_ms: i64,
    pub destroy_ms: Option<i64>,
    pub ocsp_url: Option<String>,
    /// CRL renewal period in days, once configured.
    pub crl_expiry_days: Option<u32>,
    pub crl: Option<CrlCache>,
    pub users: Vec<UserRecord>,
    /// Certificates this CA signed, in issuance order.
    pub certs: Vec<CertRecord>,
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ca")
            .field("tag", &self.tag)
            .field("alias", &self.alias)
            .field("status", &self.status)
            .field("key_pem", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// The current CRL of a CA.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CrlCache {
    pub number: u64,
    pub next_update_ms: i64,
    pub pem: String,
}

/// A certificate a CA signed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CertRecord {
    pub serial: String,
    pub cert_pem: String,
    pub common_name: String,
    pub not_before_ms: i64,
    pub not_after_ms: i64,
    pub public_key_algorithm: String,
    pub signature_algorithm: String,
    pub is_ca: bool,
    pub revoked_ms: Option<i64>,
}

impl CertRecord {
    pub(crate) fn from_cert(cert: &CertInfo, is_ca: bool) -> Self {
        Self {
            serial: cert.serial.to_colon_hex(),
            cert_pem: cert.to_pem(),
            common_name: cert.subject.common_name().unwrap_or_default().to_string(),
            not_before_ms: to_ms(cert.not_before),
            not_after_ms: to_ms(cert.not_after),
            public_key_algorithm: cert.public_key.algorithm().family().to_string(),
            signature_algorithm: cert.signature_algorithm.clone(),
            is_ca,
            revoked_ms: None,
        }
    }
}

/// A sub account with rights on a CA.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct UserRecord {
    pub id_no: String,
    pub login_id: String,
    pub mbr_no: i64,
}

/// Logs an internal failure and answers NCP's generic 500.
pub(crate) fn internal(what: &str, err: impl fmt::Display) -> ServiceMessage {
    tracing::error!(error = %err, "emulator internal error: {what}");
    messages::TEMPORARILY_UNAVAILABLE
}

impl State {
    pub(crate) fn next_id(&mut self) -> i64 {
        self.last_id += 1;
        self.last_id
    }

    pub(crate) fn find(&self, tag: &str) -> Result<&Ca, ServiceMessage> {
        self.cas
            .iter()
            .find(|c| c.tag == tag)
            .ok_or(messages::CA_NOT_FOUND)
    }

    pub(crate) fn find_mut(&mut self, tag: &str) -> Result<&mut Ca, ServiceMessage> {
        self.cas
            .iter_mut()
            .find(|c| c.tag == tag)
            .ok_or(messages::CA_NOT_FOUND)
    }

    /// A fresh caTag: two groups of eight lowercase letters and digits.
    pub(crate) fn new_tag(&self) -> String {
        const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let mut rng = rand::rng();
        loop {
            let mut group = || -> String {
                (0..8)
                    .map(|_| char::from(CHARS[rng.random_range(0..CHARS.len())]))
                    .collect()
            };
            let tag = format!("{}-{}", group(), group());
            if self.cas.iter().all(|c| c.tag != tag) {
                return tag;
            }
        }
    }

    /// Tags of `tag` and every CA below it.
    pub(crate) fn subtree(&self, tag: &str) -> Vec<String> {
        let mut out = vec![tag.to_string()];
        let mut i = 0;
        while i < out.len() {
            let parent = out[i].clone();
            let children: Vec<String> = self
                .cas
                .iter()
                .filter(|c| {
                    c.parent_tag.as_deref() == Some(parent.as_str()) && !out.contains(&c.tag)
                })
                .map(|c| c.tag.clone())
                .collect();
            out.extend(children);
            i += 1;
        }
        out
    }

    /// Removes a CA and its subordinates.
    pub(crate) fn remove_subtree(&mut self, tag: &str) -> Vec<String> {
        let doomed = self.subtree(tag);
        self.cas.retain(|c| !doomed.contains(&c.tag));
        self.dirty = true;
        doomed
    }

    /// Deletes the CAs whose 72-hour deletion delay has passed. Returns the deleted tags.
    pub(crate) fn expire(&mut self, now_ms: i64) -> Vec<String> {
        let due: Vec<String> = self
            .cas
            .iter()
            .filter(|c| {
                c.status == CaStatus::Destroying && c.destroy_ms.is_some_and(|d| d <= now_ms)
            })
            .map(|c| c.tag.clone())
            .collect();
        let mut deleted = Vec::new();
        for tag in due {
            if self.cas.iter().any(|c| c.tag == tag) {
                deleted.extend(self.remove_subtree(&tag));
            }
        }
        deleted
    }
}

impl Ca {
    pub(crate) fn certificate(&self) -> Result<CertInfo, ServiceMessage> {
        let pem = self
            .cert_pem
            .as_deref()
            .ok_or(messages::INVALID_CA_STATUS)?;
        CertInfo::from_pem(pem).map_err(|e| internal("stored CA certificate unreadable", e))
    }

    pub(crate) fn signer(&self) -> Result<Signer, ServiceMessage> {
        let cert = self.certificate()?;
        let key = PrivateKey::from_pem(&self.key_pem)
            .map_err(|e| internal("stored CA key unreadable", e))?;
        Signer::new(key, cert)
            .map_err(|e| internal("stored CA key does not match its certificate", e))
    }

    /// The chain of certificates this CA issues under: `[this CA, …, root]`.
    pub(crate) fn issuing_chain(&self) -> Vec<String> {
        self.cert_pem
            .iter()
            .chain(&self.chain_pems)
            .cloned()
            .collect()
    }

    pub(crate) fn find_cert(&self, serial: &str) -> Option<&CertRecord> {
        self.certs.iter().find(|c| c.serial == serial)
    }

    pub(crate) fn set_status(&mut self, status: CaStatus, now_ms: i64) {
        self.status = status;
        self.status_update_ms = now_ms;
    }

    pub(crate) fn crl_url(&self, base: &str) -> String {
        format!("{base}/ext/{}/crl", self.tag)
    }

    pub(crate) fn ca_url(&self, base: &str) -> String {
        format!("{base}/ext/{}/ca", self.tag)
    }

    /// The `{caInfo, caCertInfo}` answer.
    pub(crate) fn detail(&self, base: &str) -> CaDetail {
        let info = CaInfo {
            ca_id: Some(self.id),
            ca_tag: self.tag.clone(),
            alias: self.alias.clone(),
            memo: Some(self.memo.clone()),
            ca_type: self.ca_type.as_str().to_string(),
            status: self.status.clone(),
            signing_count: Some(i64::try_from(self.signing_count).unwrap_or(i64::MAX)),
            rgst_date: Some(self.rgst_ms),
            status_update_date: Some(self.status_update_ms),
            destroy_date: self.destroy_ms,
            nrn: Some(format!("nrn:PUB:PrivateCA::emulator:CA/{}", self.tag)),
            url_info: UrlInfo {
                ocsp: self.ocsp_url.iter().cloned().collect(),
                crl: vec![self.crl_url(base)],
                ca: vec![self.ca_url(base)],
            },
        };
        CaDetail {
            ca_info: info,
            ca_cert_info: self.cert_info(),
        }
    }

    fn cert_info(&self) -> CaCertInfo {
        let Ok(cert) = self.certificate() else {
            // PENDING: no certificate yet; show what was asked for.
            return CaCertInfo {
                ca_cert_id: Some(self.cert_id),
                common_name: self.subject.common_name.clone().unwrap_or_default(),
                country: self.subject.country.clone(),
                state_province: self.subject.state_province.clone(),
                locality: self.subject.locality.clone(),
                organization: self.subject.organization.clone(),
                organization_unit: self.subject.organization_unit.clone(),
                public_key_algorithm: crate::pki::KeyAlgorithm::from(self.key_type)
                    .family()
                    .to_string(),
                ..CaCertInfo::default()
            };
        };
        let get = |attr: NameAttr| cert.subject.get(&attr).map(str::to_string);
        CaCertInfo {
            ca_cert_id: Some(self.cert_id),
            common_name: cert.subject.common_name().unwrap_or_default().to_string(),
            issuer_name: cert.issuer.common_name().unwrap_or_default().to_string(),
            country: get(NameAttr::Country),
            state_province: get(NameAttr::StateOrProvince),
            locality: get(NameAttr::Locality),
            organization: get(NameAttr::Organization),
            organization_unit: get(NameAttr::OrganizationalUnit),
            not_before_date: Some(to_ms(cert.not_before)),
            not_after_date: Some(to_ms(cert.not_after)),
            public_key_algorithm: cert.public_key.algorithm().family().to_string(),
            signature_algorithm: cert.signature_algorithm.clone(),
            serial_no: cert.serial.to_colon_hex(),
            cert_pem: cert.to_pem(),
            chain_pem: self.issuing_chain().concat(),
        }
    }

    /// The answer of Get CA User List (`mbrNo` is a number, as documented).
    pub(crate) fn user_list(&self) -> serde_json::Value {
        self.users
            .iter()
            .map(|u| serde_json::json!({"loginId": u.login_id, "mbrNo": u.mbr_no, "idNo": u.id_no}))
            .collect()
    }

    /// The time this CA's certificate expires.
    pub(crate) fn not_after(&self) -> Result<time::OffsetDateTime, ServiceMessage> {
        Ok(self.certificate()?.not_after)
    }
}
