//! Subordinate mode (design.md §5): an intermediate CA whose key is generated here and whose certificate
//! NCP signs with Sign Sub Csr, kept in a Secret the issuer owns and renewed before it expires. The
//! issuer controller provisions and checks it ([`reconcile`]); the CertificateRequest controller signs
//! with it through the in-memory [`SignerCache`] ([`signer_for`]).
//!
//! Nothing signs with a key that does not match its certificate: every intermediate is checked by
//! [`decide::read_intermediate`] before it enters the cache, and a Secret found broken evicts it.

pub mod decide;
mod provision;

use super::conditions::Desired;
use super::delays::{RENEWAL_FLOOR, TRANSIENT_RETRY};
use super::events::{EventAction, Note};
use super::{Context, IssuerError};
use crate::api::{IssuerResource, SubordinateSpec, SubordinateStatus};
use crate::ncp::{self, types::CaDetail};
use crate::pki::CertInfo;
use crate::reason::Reason;
use decide::{
    ANNOTATION_CA_TAG, ANNOTATION_OWNER, ANNOTATION_RENEW, ANNOTATION_RENEW_HANDLED,
    ANNOTATION_SPEC_HASH, Intermediate, KEY_CA_CRT, KEY_TLS_CRT, KEY_TLS_KEY, Observed,
    SecretProblem, Wanted, Why,
};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt as _;
use kube::api::Api;
use provision::{Provision, Provisioned, SecretWriter};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use time::OffsetDateTime;

pub use super::conditions::UPSTREAM_READY;

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

    fn put(&self, owner: &str, signer: Arc<LocalSigner>) {
        self.lock().insert(owner.to_string(), signer);
    }

    fn remove(&self, owner: &str) {
        self.lock().remove(owner);
    }
}

/// Why the intermediate could not be provisioned or read. Messages never include key material.
#[derive(Debug, thiserror::Error)]
pub enum SubordinateError {
    /// spec.subordinate cannot be used.
    #[error("{0}")]
    Spec(String),
    /// The Secret exists and is not ours.
    #[error(
        "secret {namespace}/{name} exists and was not created by this issuer (annotation {ANNOTATION_OWNER}); it is left alone: delete it or choose another spec.subordinate.secretName"
    )]
    Conflict {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// Reading or writing the Secret failed.
    #[error("cannot {verb} secret {namespace}/{name}: {}", describe(source))]
    Secret {
        /// `read` or `write`.
        verb: &'static str,
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// The cause.
        source: kube::Error,
    },
    /// Key or CSR generation failed.
    #[error("cannot generate the intermediate's key or request: {0}")]
    Generate(String),
    /// Credentials or NCP.
    #[error(transparent)]
    Issuer(#[from] IssuerError),
    /// NCP answered with a certificate that cannot be used.
    #[error("ncp signed an intermediate that cannot be used: {0}")]
    Answer(String),
}

/// A Kubernetes error in a sentence: the API server's own message for API errors.
fn describe(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}

impl SubordinateError {
    /// The condition / event reason.
    #[must_use]
    pub fn reason(&self) -> Reason {
        match self {
            Self::Spec(_) => Reason::InvalidSpec,
            Self::Conflict { .. } => Reason::SecretConflict,
            Self::Secret {
                source: kube::Error::Api(s),
                ..
            } if s.code == 403 => Reason::SecretForbidden,
            Self::Secret { .. } => Reason::SecretUnavailable,
            Self::Generate(_) => Reason::KeyGenerationFailed,
            Self::Issuer(e) => e.reason(),
            Self::Answer(_) => Reason::IntermediateInvalid,
        }
    }
}

fn secret_err(
    verb: &'static str,
    namespace: &str,
    name: &str,
) -> impl FnOnce(kube::Error) -> SubordinateError {
    let (namespace, name) = (namespace.to_string(), name.to_string());
    move |source| SubordinateError::Secret {
        verb,
        namespace,
        name,
        source,
    }
}

fn data<'a>(secret: &'a Secret, key: &str) -> Option<&'a [u8]> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| b.0.as_slice())
}

fn intermediate_in(
    secret: Option<&Secret>,
    now: OffsetDateTime,
) -> Result<Intermediate, SecretProblem> {
    let Some(secret) = secret else {
        return Err(SecretProblem::Empty);
    };
    decide::read_intermediate(
        data(secret, KEY_TLS_KEY),
        data(secret, KEY_TLS_CRT),
        data(secret, KEY_CA_CRT),
        now,
    )
}

fn is_owned_by(secret: &Secret, owner: &str) -> bool {
    secret
        .annotations()
        .get(ANNOTATION_OWNER)
        .map(String::as_str)
        == Some(owner)
}

/// The signer of a subordinate issuer, for the CertificateRequest controller: from the cache, else read
/// and checked from its Secret.
///
/// # Errors
/// A message saying why there is no usable intermediate (the request then waits).
/// Only an intermediate under `verified_root` (the SHA-256 of the root the issuer controller checked
/// against NCP and published in status) is loaded from the Secret.
pub async fn signer_for(
    ctx: &Context,
    owner: &str,
    secret_namespace: &str,
    secret_name: &str,
    verified_root: Option<&str>,
) -> Result<Arc<LocalSigner>, String> {
    if let Some(s) = ctx.subordinates.get(owner)
        && s.secret_name == secret_name
    {
        return Ok(s);
    }
    let secret = Api::<Secret>::namespaced(ctx.client.clone(), secret_namespace)
        .get_opt(secret_name)
        .await
        .map_err(|e| format!("cannot read secret {secret_namespace}/{secret_name}: {e}"))?
        .ok_or_else(|| format!("secret {secret_namespace}/{secret_name} does not exist yet"))?;
    if !is_owned_by(&secret, owner) {
        return Err(format!(
            "secret {secret_namespace}/{secret_name} was not created by this issuer"
        ));
    }
    let intermediate = intermediate_in(Some(&secret), OffsetDateTime::now_utc())
        .map_err(|p| format!("secret {secret_namespace}/{secret_name}: {p}"))?;
    if verified_root != Some(intermediate.root_sha256.as_str()) {
        return Err(format!(
            "the intermediate in secret {secret_namespace}/{secret_name} does not chain to the root this issuer checked against NCP"
        ));
    }
    let signer = Arc::new(LocalSigner {
        secret_name: secret_name.to_string(),
        intermediate,
    });
    ctx.subordinates.put(owner, signer.clone());
    Ok(signer)
}

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
}

/// Checks the issuer's intermediate and provisions or renews it when needed.
pub async fn reconcile<K: IssuerResource>(
    issuer: &K,
    ctx: &Context,
    spec: &SubordinateSpec,
    upstream: Option<Upstream<'_>>,
    recheck: Duration,
) -> Outcome {
    let owner = issuer.owner_id();
    let namespace = issuer.secret_namespace(&ctx.settings.cluster_resource_namespace);
    let name = spec.secret_name.clone();
    let previous = issuer.issuer_status().and_then(|s| s.subordinate.clone());
    // Errors keep the last known intermediate in status.
    let fail = |e: &SubordinateError, requeue| {
        let mut message = e.to_string();
        if e.reason() == Reason::SecretForbidden {
            message.push_str(&format!(
                "; the Helm chart grants Secret writes per namespace: add {namespace:?} to the value subordinate.namespaces"
            ));
        }
        Outcome {
            ready: Desired::not_ready(e.reason(), message),
            status: previous.clone(),
            requeue,
        }
    };
    let wanted = match Wanted::from_spec(spec, &issuer.name_any()) {
        Ok(w) => w,
        Err(msg) => {
            ctx.subordinates.remove(&owner);
            return fail(&SubordinateError::Spec(msg), recheck);
        }
    };
    let renamed = previous.as_ref().is_some_and(|p| p.secret_name != name);
    if renamed {
        ctx.subordinates.remove(&owner);
    }
    let secret = match Api::<Secret>::namespaced(ctx.client.clone(), &namespace)
        .get_opt(&name)
        .await
    {
        Ok(s) => s,
        Err(e) => {
            let e = secret_err("read", &namespace, &name)(e);
            // A failed read says nothing about the intermediate already checked: it goes on signing.
            return match ctx.subordinates.get(&owner) {
                Some(cached) if cached.secret_name == name => ready_outcome(
                    decide::status_of(
                        &name,
                        &cached.intermediate,
                        &wanted,
                        previous.and_then(|p| p.last_renew_request),
                    ),
                    Some(e.to_string()),
                    Some(TRANSIENT_RETRY),
                    recheck,
                ),
                _ => fail(&e, TRANSIENT_RETRY),
            };
        }
    };
    if let Some(s) = &secret
        && !is_owned_by(s, &owner)
    {
        ctx.subordinates.remove(&owner);
        let conflict = SubordinateError::Conflict {
            namespace: namespace.clone(),
            name: name.clone(),
        };
        return fail(&conflict, recheck);
    }
    let now = OffsetDateTime::now_utc();
    let current = intermediate_in(secret.as_ref(), now);
    match &current {
        Err(SecretProblem::Empty) if previous.is_some() && !renamed && secret.is_none() => {
            ctx.subordinates.remove(&owner);
            publish(issuer, ctx, true, Reason::IntermediateMissing, &format!("secret {namespace}/{name} with the intermediate was deleted; provisioning a new intermediate")).await;
        }
        Err(SecretProblem::Empty) => ctx.subordinates.remove(&owner),
        Err(p) => {
            ctx.subordinates.remove(&owner);
            publish(issuer, ctx, true, Reason::IntermediateInvalid, &format!("secret {namespace}/{name}: {p}; nothing signs with it, provisioning a new intermediate")).await;
        }
        Ok(_) => {}
    }
    // NCP stays the point of control: a CA it says is out of service stops local signing too. An NCP
    // that does not answer does not.
    if let Some(u) = upstream.as_ref().filter(|u| u.out_of_service) {
        ctx.subordinates.remove(&owner);
        return Outcome {
            ready: Desired::not_ready(u.verdict.reason, u.verdict.message.clone()),
            status: previous,
            requeue: recheck,
        };
    }
    let annotation = |key: &str| {
        secret
            .as_ref()
            .and_then(|s| s.annotations().get(key))
            .cloned()
    };
    let renew_handled = annotation(ANNOTATION_RENEW_HANDLED);
    let renew_request = issuer.annotations().get(ANNOTATION_RENEW).cloned();
    let ncp_ca = upstream
        .as_ref()
        .and_then(|u| CertInfo::from_pem(&u.detail.ca_cert_info.cert_pem).ok());
    let (digest, signed_by_tag) = (
        annotation(ANNOTATION_SPEC_HASH),
        annotation(ANNOTATION_CA_TAG),
    );
    let why = decide::needs_new(
        &Observed {
            current: &current,
            spec_digest: digest.as_deref(),
            signed_by_tag: signed_by_tag.as_deref(),
            ca_tag: &issuer.issuer_spec().ca_tag,
            ncp_ca: ncp_ca.as_ref(),
            renew_request: renew_request.as_deref(),
            renew_handled: renew_handled.as_deref(),
        },
        &wanted,
        now,
    );
    let keep = |intermediate: Intermediate,
                renew_handled: Option<String>,
                note: Option<String>,
                requeue: Option<Duration>| {
        let status = decide::status_of(&name, &intermediate, &wanted, renew_handled);
        ctx.subordinates.put(
            &owner,
            Arc::new(LocalSigner {
                secret_name: name.clone(),
                intermediate,
            }),
        );
        ready_outcome(status, note, requeue, recheck)
    };
    let writer = SecretWriter {
        ctx,
        namespace: &namespace,
        name: &name,
        owner: &owner,
        owner_ref: issuer.controller_owner_ref(&()).map(|mut r| {
            r.block_owner_deletion = None;
            r
        }),
    };
    let current = match current {
        // Without NCP to confirm it, only the intermediate this issuer already checked is trusted (not,
        // say, an older Secret restored from a backup).
        Ok(i) if upstream.is_none() && !already_checked(ctx, &owner, previous.as_ref(), &i) => {
            ctx.subordinates.remove(&owner);
            return Outcome {
                ready: Desired::not_ready(
                    Reason::IntermediateUnverified,
                    format!(
                        "secret {namespace}/{name} holds intermediate {}, which does not chain to the root this issuer last checked; it is used once NCP can confirm it (see the {UPSTREAM_READY} condition)",
                        i.certificate().serial.to_colon_hex()
                    ),
                ),
                status: previous,
                requeue: TRANSIENT_RETRY,
            };
        }
        other => other,
    };
    let (why, current) = match (why, current) {
        (None, Ok(intermediate)) => {
            if let Some(s) = secret.as_ref().filter(|s| !writer.owner_ref_current(s))
                && let Err(e) = writer.write(Some(s.clone()), BTreeMap::new(), &[]).await
            {
                tracing::warn!(error = %e, "cannot update the intermediate secret's owner reference");
            }
            return keep(intermediate, renew_handled, None, None);
        }
        // `needs_new` gives a reason whenever there is no usable intermediate.
        (why, current) => (why.unwrap_or(Why::Missing), current),
    };
    // An intermediate of another CA than the spec's signs nothing more.
    let current = current.and_then(|i| {
        if why.current_still_signs() {
            Ok(i)
        } else {
            ctx.subordinates.remove(&owner);
            Err(SecretProblem::Empty)
        }
    });
    let Some(u) = upstream else {
        // NCP cannot be asked now: keep signing with what we have, if anything.
        return match current {
            Ok(i) => keep(
                i,
                renew_handled,
                Some(format!("{why}, but NCP cannot be asked now")),
                Some(TRANSIENT_RETRY),
            ),
            Err(_) => Outcome {
                ready: Desired::not_ready(
                    Reason::UpstreamUnavailable,
                    format!(
                        "{why}, and NCP cannot be asked now (see the {UPSTREAM_READY} condition)"
                    ),
                ),
                status: previous,
                requeue: TRANSIENT_RETRY,
            },
        };
    };
    let job = Provision {
        issuer_kind: K::KIND,
        writer,
        ncp: u.ncp,
        ca_tag: &issuer.issuer_spec().ca_tag,
        ca_not_after: u.detail.ca_cert_info.not_after_date.map(|ms| ms / 1000),
        ca_chain: u.chain,
        wanted: &wanted,
        ncp_ca: ncp_ca.as_ref(),
        renew_request: renew_request.clone(),
        recheck,
    };
    match job.run(secret).await {
        Ok(Provisioned::Done(intermediate)) => {
            let serial = intermediate.certificate().serial.to_colon_hex();
            let (reason, verb) = if current.is_ok() {
                (Reason::IntermediateRotated, "rotated to")
            } else {
                (Reason::IntermediateIssued, "provisioned")
            };
            let old = current
                .as_ref()
                .map(|i| format!(" (was {})", i.certificate().serial.to_colon_hex()))
                .unwrap_or_default();
            publish(
                issuer,
                ctx,
                false,
                reason,
                &format!(
                    "{why}: {verb} intermediate {serial}{old} signed by NCP CA {}",
                    issuer.issuer_spec().ca_tag
                ),
            )
            .await;
            if let Some(p) = previous.as_ref().filter(|_| renamed) {
                publish(issuer, ctx, true, Reason::IntermediateSecretChanged, &format!(
                    "spec.subordinate.secretName changed from {old} to {name}: the intermediate is now in {namespace}/{name}; secret {namespace}/{old} is no longer used but still holds a CA key, delete it",
                    old = p.secret_name
                )).await;
            }
            keep(*intermediate, renew_request, None, None)
        }
        Ok(Provisioned::Wait(after)) => {
            // An absolute time, so that the message (and status) stays the same while waiting.
            let at = Timestamp::now()
                .checked_add(k8s_openapi::jiff::SignedDuration::from_secs(
                    i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
                ))
                .unwrap_or(Timestamp::MAX)
                .round(k8s_openapi::jiff::Unit::Second)
                .unwrap_or(Timestamp::MAX);
            let note = format!("{why}; next attempt at {at}");
            match current {
                Ok(i) => keep(i, renew_handled, Some(note), Some(after)),
                Err(_) => Outcome {
                    ready: Desired::not_ready(Reason::Provisioning, note),
                    status: previous,
                    requeue: after,
                },
            }
        }
        Err(e) => {
            publish(
                issuer,
                ctx,
                true,
                Reason::IntermediateProvisioningFailed,
                &format!("{why}: {e}"),
            )
            .await;
            let retry = if matches!(&e, SubordinateError::Issuer(i) if !i.is_transient()) {
                recheck
            } else {
                TRANSIENT_RETRY
            };
            match current {
                Ok(i) => keep(
                    i,
                    renew_handled,
                    Some(format!("renewal failing: {e}")),
                    Some(retry),
                ),
                Err(_) => fail(&e, retry),
            }
        }
    }
}

/// Whether `i` chains to the root this issuer last checked against NCP (pinned in status), or is the
/// intermediate it holds in memory.
fn already_checked(
    ctx: &Context,
    owner: &str,
    previous: Option<&SubordinateStatus>,
    i: &Intermediate,
) -> bool {
    previous.is_some_and(|p| !p.root_sha256.is_empty() && p.root_sha256 == i.root_sha256)
        || ctx
            .subordinates
            .get(owner)
            .is_some_and(|c| c.intermediate.certificate().der == i.certificate().der)
}

/// `Ready=True` for an intermediate; requeued at `requeue`, else at the renewal time or `recheck`.
fn ready_outcome(
    status: SubordinateStatus,
    note: Option<String>,
    requeue: Option<Duration>,
    recheck: Duration,
) -> Outcome {
    let message = format!(
        "signing locally with intermediate {} (valid until {}, renewed from {}){}",
        status.serial_number,
        status.not_after,
        status.renewal_time,
        note.map(|n| format!("; {n}")).unwrap_or_default()
    );
    let requeue = requeue.unwrap_or_else(|| {
        let until_renewal = status
            .renewal_time
            .parse::<Timestamp>()
            .ok()
            .and_then(|t| Duration::try_from(Timestamp::now().duration_until(t)).ok())
            .unwrap_or_default();
        recheck.min(until_renewal.max(RENEWAL_FLOOR))
    });
    Outcome {
        ready: Desired::ready(Reason::IntermediateReady, message),
        status: Some(status),
        requeue,
    }
}

async fn publish<K: IssuerResource>(
    issuer: &K,
    ctx: &Context,
    warning: bool,
    reason: Reason,
    note: &str,
) {
    let event = if warning {
        Note::warning(reason, note, EventAction::ProvisionIntermediate)
    } else {
        Note::normal(reason, note, EventAction::ProvisionIntermediate)
    };
    ctx.publish(&issuer.object_ref(&()), event).await;
    if warning {
        tracing::warn!(kind = K::KIND, name = %issuer.name_any(), %reason, "{note}");
    } else {
        tracing::info!(kind = K::KIND, name = %issuer.name_any(), %reason, "{note}");
    }
}
