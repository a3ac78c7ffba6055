//! What the subordinate controller is given (what NCP said) and what it concludes for the issuer's
//! status.

use super::decide::{Wanted, Why};
use crate::api::SubordinateStatus;
use crate::controller::conditions::Desired;
use crate::controller::signers::LocalSigner;
use crate::ncp::{self, types::CaDetail};
use crate::pki::CertInfo;
use k8s_openapi::api::core::v1::Secret;
use std::sync::Arc;
use std::time::Duration;

/// What NCP said in this reconcile, when it answered.
#[derive(Debug)]
pub struct Upstream<'a> {
    /// The client that reached it.
    pub ncp: &'a ncp::Client,
    /// Get CA.
    pub detail: &'a CaDetail,
    /// Get CA Chain.
    pub chain: &'a str,
    /// Whether NCP says the CA is out of service (not ACTIVE, or expired): local signing stops too.
    pub out_of_service: bool,
    /// NCP's verdict on the CA.
    pub verdict: &'a Desired,
}

/// What subordinate mode concluded for the issuer's status.
#[derive(Debug)]
pub struct Outcome {
    /// The Ready condition (about the intermediate).
    pub ready: Desired,
    /// The intermediate's status.
    pub status: Option<SubordinateStatus>,
    /// When to look again.
    pub requeue: Duration,
    /// What signs from now on (what the cache holds).
    pub(super) signer: Option<Arc<LocalSigner>>,
}

/// A provisioning to do, and what the issuer says meanwhile.
#[derive(Debug)]
pub struct Job {
    /// Why a new intermediate is needed.
    pub why: Why,
    /// Its settings.
    pub wanted: Wanted,
    /// The Secret as read (the base of every write).
    pub secret: Option<Secret>,
    /// The intermediate that goes on signing until its replacement is stored, if any.
    pub current: Option<Arc<LocalSigner>>,
    /// The renew annotation value `current` satisfies.
    pub renew_handled: Option<String>,
    /// The issuer's renew annotation (a new intermediate satisfies it).
    pub renew_request: Option<String>,
    /// The NCP CA's certificate, to check the new intermediate against.
    pub ncp_ca: Option<CertInfo>,
    /// The Secret's name before `spec.subordinate.secretName` changed.
    pub renamed_from: Option<String>,
    /// `status.subordinate` as last written (kept while there is no intermediate).
    pub previous: Option<SubordinateStatus>,
    /// Namespace of the Secret.
    pub namespace: String,
    /// Name of the Secret.
    pub name: String,
    /// `spec.caTag`.
    pub ca_tag: String,
}
