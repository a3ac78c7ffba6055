//! Subordinate mode (design.md §5): an intermediate CA whose key is generated here and whose certificate
//! NCP signs with Sign Sub Csr, kept in a Secret the issuer owns and renewed before it expires. The
//! issuer controller provisions and checks it ([`reconcile`]); the CertificateRequest controller signs
//! with it through the in-memory [`SignerCache`] ([`signer_for`]).
//!
//! Nothing signs with a key that does not match its certificate: every intermediate is checked by
//! [`decide::read_intermediate`] before it enters the cache, and a Secret found broken evicts it.

pub mod decide;

use super::conditions::Desired;
use super::issuer::TRANSIENT_RETRY;
use super::recovery::{find_issued, settle_window};
use super::{Context, IssuerError};
use crate::api::{IssuerResource, SubordinateSpec, SubordinateStatus};
use crate::controller::certificate_request::decide::period_days;
use crate::ncp::types::CaDetail;
use crate::ncp::{self, NcpError};
use crate::pki::{CertInfo, PrivateKey, create_csr, parse_certificates_pem};
use decide::{
    ANNOTATION_OWNER, ANNOTATION_PENDING_SINCE, ANNOTATION_RENEW, ANNOTATION_SPEC_HASH,
    Intermediate, KEY_CA_CRT, KEY_PENDING_KEY, KEY_TLS_CRT, KEY_TLS_KEY, Observed, SecretProblem,
    Wanted, Why,
};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt as _;
use kube::api::{Api, PostParams};
use kube::runtime::events::{Event, EventType};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use time::OffsetDateTime;

/// Reason of a Ready issuer in subordinate mode.
pub const REASON_INTERMEDIATE_READY: &str = "IntermediateReady";
/// The condition that carries NCP's view of the CA in subordinate mode (`Ready` is about the
/// intermediate there).
pub const UPSTREAM_READY: &str = "UpstreamReady";

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

    /// The signer of issuer `owner` (see [`owner_id`]), if loaded.
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

/// How an issuer names itself on the Secrets it owns: `Kind/namespace/name` or `Kind/name`.
#[must_use]
pub fn owner_id(kind: &str, namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) if !ns.is_empty() => format!("{kind}/{ns}/{name}"),
        _ => format!("{kind}/{name}"),
    }
}

fn issuer_owner_id<K: IssuerResource>(issuer: &K) -> String {
    owner_id(
        K::KIND,
        issuer.meta().namespace.as_deref(),
        &issuer.name_any(),
    )
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
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Spec(_) => "InvalidSpec",
            Self::Conflict { .. } => "SecretConflict",
            Self::Secret {
                source: kube::Error::Api(s),
                ..
            } if s.code == 403 => "SecretForbidden",
            Self::Secret { .. } => "SecretUnavailable",
            Self::Generate(_) => "KeyGenerationFailed",
            Self::Issuer(e) => e.reason(),
            Self::Answer(_) => "IntermediateInvalid",
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
pub async fn signer_for(
    ctx: &Context,
    owner: &str,
    secret_namespace: &str,
    secret_name: &str,
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
    /// Whether the NCP CA can sign (ACTIVE, unexpired, under its limit).
    pub can_sign: bool,
    /// Why not, when it cannot.
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
    let owner = issuer_owner_id(issuer);
    let namespace = issuer.secret_namespace(&ctx.settings.cluster_resource_namespace);
    let name = spec.secret_name.clone();
    let previous = issuer.issuer_status().and_then(|s| s.subordinate.clone());
    let not_ready = |e: &SubordinateError, requeue| {
        let mut message = e.to_string();
        if e.reason() == "SecretForbidden" {
            message.push_str(&format!(
                "; the Helm chart grants Secret writes per namespace: add {namespace:?} to the value subordinate.namespaces"
            ));
        }
        Outcome {
            ready: Desired::not_ready(e.reason(), message),
            status: None,
            requeue,
        }
    };
    let wanted = match Wanted::from_spec(spec, &issuer.name_any()) {
        Ok(w) => w,
        Err(msg) => {
            ctx.subordinates.remove(&owner);
            return not_ready(&SubordinateError::Spec(msg), recheck);
        }
    };
    let api = Api::<Secret>::namespaced(ctx.client.clone(), &namespace);
    let secret = match api.get_opt(&name).await {
        Ok(s) => s,
        Err(e) => {
            let e = secret_err("read", &namespace, &name)(e);
            // The cached intermediate (if any) still signs: a failed read says nothing about it.
            return not_ready(&e, TRANSIENT_RETRY);
        }
    };
    if let Some(s) = &secret
        && !is_owned_by(s, &owner)
    {
        ctx.subordinates.remove(&owner);
        return not_ready(
            &SubordinateError::Conflict {
                namespace: namespace.clone(),
                name,
            },
            recheck,
        );
    }
    let now = OffsetDateTime::now_utc();
    let current = intermediate_in(secret.as_ref(), now);
    match &current {
        Err(SecretProblem::Empty) if previous.is_some() && secret.is_none() => {
            ctx.subordinates.remove(&owner);
            publish(issuer, ctx, true, "IntermediateMissing", &format!("secret {namespace}/{name} with the intermediate was deleted; provisioning a new intermediate")).await;
        }
        Err(SecretProblem::Empty) => ctx.subordinates.remove(&owner),
        Err(p) => {
            ctx.subordinates.remove(&owner);
            publish(issuer, ctx, true, "IntermediateInvalid", &format!("secret {namespace}/{name}: {p}; nothing signs with it, provisioning a new intermediate")).await;
        }
        Ok(_) => {}
    }
    let ncp_chain = upstream
        .as_ref()
        .and_then(|u| parse_certificates_pem(u.chain).ok())
        .filter(|c| !c.is_empty());
    let renew_request = issuer.annotations().get(ANNOTATION_RENEW).cloned();
    let last_renew_request = previous.as_ref().and_then(|p| p.last_renew_request.clone());
    let why = decide::needs_new(
        &Observed {
            current: &current,
            spec_digest: secret
                .as_ref()
                .and_then(|s| s.annotations().get(ANNOTATION_SPEC_HASH))
                .map(String::as_str),
            ncp_chain: ncp_chain.as_deref(),
            renew_request: renew_request.as_deref(),
            last_renew_request: last_renew_request.as_deref(),
        },
        &wanted,
        now,
    );
    let keep = |intermediate: Intermediate, note: Option<String>, requeue: Option<Duration>| {
        let status = decide::status_of(&name, &intermediate, &wanted, last_renew_request.clone());
        let signer = Arc::new(LocalSigner {
            secret_name: name.clone(),
            intermediate,
        });
        ctx.subordinates.put(&owner, signer);
        let message = format!(
            "signing locally with intermediate {} (valid until {}, renewed from {}){}",
            status.serial_number,
            status.not_after,
            status.renewal_time,
            note.map(|n| format!("; {n}")).unwrap_or_default()
        );
        let until_renewal = status
            .renewal_time
            .parse::<Timestamp>()
            .ok()
            .and_then(|t| Duration::try_from(Timestamp::now().duration_until(t)).ok())
            .unwrap_or_default();
        Outcome {
            ready: Desired::ready(REASON_INTERMEDIATE_READY, message),
            status: Some(status),
            requeue: requeue
                .unwrap_or(recheck)
                .min(until_renewal.max(Duration::from_secs(1))),
        }
    };
    // An NCP CA that answered and cannot sign (deactivated, expired) stops local signing too: NCP stays
    // the point of control. An NCP that does not answer does not.
    if let Some(u) = &upstream
        && !u.can_sign
    {
        ctx.subordinates.remove(&owner);
        return Outcome {
            ready: Desired::not_ready(u.verdict.reason.clone(), u.verdict.message.clone()),
            status: previous,
            requeue: recheck,
        };
    }
    let (why, current) = match (why, current) {
        (None, Ok(intermediate)) => return keep(intermediate, None, None),
        // `needs_new` gives a reason whenever there is no usable intermediate.
        (why, current) => (why.unwrap_or(Why::Missing), current),
    };
    let Some(u) = upstream else {
        // NCP cannot be asked now: keep signing with what we have, if anything.
        return match current {
            Ok(i) => keep(
                i,
                Some(format!("{why}, but NCP cannot be asked now; retrying")),
                Some(TRANSIENT_RETRY),
            ),
            Err(_) => Outcome {
                ready: Desired::not_ready(
                    "UpstreamUnavailable",
                    format!(
                        "{why}, and NCP cannot be asked now (see the {UPSTREAM_READY} condition)"
                    ),
                ),
                status: None,
                requeue: TRANSIENT_RETRY,
            },
        };
    };
    let ca_not_after = u.detail.ca_cert_info.not_after_date.map(|ms| ms / 1000);
    let job = Provision {
        issuer_kind: K::KIND,
        ctx,
        ncp: u.ncp,
        ca_tag: &issuer.issuer_spec().ca_tag,
        ca_not_after,
        wanted: &wanted,
        namespace: &namespace,
        name: &name,
        owner: &owner,
        owner_ref: issuer.controller_owner_ref(&()).map(|mut r| {
            r.block_owner_deletion = None;
            r
        }),
    };
    match job.run(secret).await {
        Ok(Provisioned::Done(intermediate)) => {
            let intermediate = *intermediate;
            let serial = intermediate.certificate().serial.to_colon_hex();
            let (reason, verb) = if current.is_ok() {
                ("IntermediateRotated", "rotated to")
            } else {
                ("IntermediateIssued", "provisioned")
            };
            publish(
                issuer,
                ctx,
                false,
                reason,
                &format!(
                    "{why}: {verb} intermediate {serial} signed by NCP CA {}",
                    issuer.issuer_spec().ca_tag
                ),
            )
            .await;
            let mut out = keep(intermediate, None, None);
            if let (Why::Requested(v), Some(s)) = (&why, out.status.as_mut()) {
                s.last_renew_request = Some(v.clone());
            }
            out
        }
        Ok(Provisioned::Wait(after)) => match current {
            Ok(i) => keep(
                i,
                Some(format!(
                    "{why}; waiting for NCP's answer to an earlier Sign Sub Csr"
                )),
                Some(after),
            ),
            Err(_) => Outcome {
                ready: Desired::not_ready(
                    "Provisioning",
                    format!("{why}; waiting for NCP's answer to an earlier Sign Sub Csr"),
                ),
                status: None,
                requeue: after,
            },
        },
        Err(e) => {
            publish(
                issuer,
                ctx,
                true,
                "IntermediateProvisioningFailed",
                &format!("{why}: {e}"),
            )
            .await;
            let retry = if matches!(&e, SubordinateError::Issuer(i) if !i.is_transient()) {
                recheck
            } else {
                TRANSIENT_RETRY
            };
            match current {
                Ok(i) => keep(i, Some(format!("renewal failing: {e}")), Some(retry)),
                Err(_) => not_ready(&e, retry),
            }
        }
    }
}

async fn publish<K: IssuerResource>(
    issuer: &K,
    ctx: &Context,
    warning: bool,
    reason: &str,
    note: &str,
) {
    let event = Event {
        type_: if warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: reason.into(),
        note: Some(note.to_string()),
        action: "ProvisionIntermediate".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &issuer.object_ref(&())).await {
        tracing::warn!(error = %e, kind = K::KIND, name = %issuer.name_any(), "cannot publish event");
    }
    if warning {
        tracing::warn!(kind = K::KIND, name = %issuer.name_any(), reason, "{note}");
    } else {
        tracing::info!(kind = K::KIND, name = %issuer.name_any(), reason, "{note}");
    }
}

enum Provisioned {
    Done(Box<Intermediate>),
    /// An earlier Sign Sub Csr may still land: look again after this long.
    Wait(Duration),
}

/// One provisioning of an intermediate.
struct Provision<'a> {
    issuer_kind: &'static str,
    ctx: &'a Context,
    ncp: &'a ncp::Client,
    ca_tag: &'a str,
    ca_not_after: Option<i64>,
    wanted: &'a Wanted,
    namespace: &'a str,
    name: &'a str,
    owner: &'a str,
    owner_ref: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>,
}

impl Provision<'_> {
    /// Writes the Secret: `data` replaces ours, annotations are set (`None` removes), conditional on
    /// the resourceVersion of `base` (a create when there is none).
    async fn write(
        &self,
        base: Option<Secret>,
        data: BTreeMap<String, Option<Vec<u8>>>,
        annotations: &[(&str, Option<String>)],
    ) -> Result<Secret, SubordinateError> {
        let api = Api::<Secret>::namespaced(self.ctx.client.clone(), self.namespace);
        let exists = base.is_some();
        let mut secret = base.unwrap_or_else(|| Secret {
            type_: Some("kubernetes.io/tls".into()),
            ..Secret::default()
        });
        secret.metadata.name = Some(self.name.to_string());
        secret.metadata.namespace = Some(self.namespace.to_string());
        secret.metadata.managed_fields = None;
        let labels = secret.metadata.labels.get_or_insert_with(BTreeMap::new);
        labels.insert(
            "app.kubernetes.io/managed-by".into(),
            "ncp-pca-issuer".into(),
        );
        let notes = secret
            .metadata
            .annotations
            .get_or_insert_with(BTreeMap::new);
        notes.insert(ANNOTATION_OWNER.into(), self.owner.to_string());
        for (k, v) in annotations {
            match v {
                Some(v) => notes.insert((*k).to_string(), v.clone()),
                None => notes.remove(*k),
            };
        }
        if let Some(r) = &self.owner_ref {
            let refs = secret
                .metadata
                .owner_references
                .get_or_insert_with(Vec::new);
            if !refs.iter().any(|o| o.uid == r.uid) {
                refs.push(r.clone());
            }
        }
        let map = secret.data.get_or_insert_with(BTreeMap::new);
        // A kubernetes.io/tls Secret must have both keys, if empty.
        for key in [KEY_TLS_KEY, KEY_TLS_CRT] {
            map.entry(key.into())
                .or_insert_with(|| ByteString(Vec::new()));
        }
        for (k, v) in data {
            match v {
                Some(v) => map.insert(k, ByteString(v)),
                None => map.remove(&k),
            };
        }
        let pp = PostParams {
            field_manager: Some(super::FIELD_MANAGER.into()),
            ..PostParams::default()
        };
        let result = if exists {
            api.replace(self.name, &pp, &secret).await
        } else {
            api.create(&pp, &secret).await
        };
        result.map_err(secret_err("write", self.namespace, self.name))
    }

    async fn run(&self, secret: Option<Secret>) -> Result<Provisioned, SubordinateError> {
        let pending_key = secret
            .as_ref()
            .and_then(|s| data(s, KEY_PENDING_KEY))
            .and_then(|b| std::str::from_utf8(b).ok())
            .and_then(|pem| PrivateKey::from_pem(pem).ok())
            .filter(|k| k.key_type() == self.wanted.key_type);
        let pending_since = secret
            .as_ref()
            .and_then(|s| s.annotations().get(ANNOTATION_PENDING_SINCE))
            .and_then(|t| t.parse::<Timestamp>().ok());
        // A Sign Sub Csr for the pending key may have taken effect without its answer reaching us: look
        // for it before signing again.
        let mut pending_key = pending_key;
        if let Some(since) = pending_since
            && let Some(key) = pending_key.take()
        {
            let spki = key.spki_der();
            let found = find_issued(self.ncp, self.ca_tag, since.as_millisecond(), |c| {
                c.public_key.spki_der() == spki.as_slice() && c.is_ca
            })
            .await
            .map_err(IssuerError::from)?;
            if let Some((serial, cert_pem, chain)) = found {
                tracing::info!(
                    kind = self.issuer_kind,
                    owner = self.owner,
                    serial,
                    "recovered an intermediate whose signing answer was lost"
                );
                return self
                    .finish(secret, key, &cert_pem, &chain)
                    .await
                    .map(|i| Provisioned::Done(Box::new(i)));
            }
            let age =
                Duration::try_from(Timestamp::now().duration_since(since)).unwrap_or_default();
            let settle = settle_window(self.ctx);
            if age < settle {
                return Ok(Provisioned::Wait(settle - age));
            }
            pending_key = Some(key);
        }
        let key = match pending_key {
            Some(k) => k,
            None => PrivateKey::generate(self.wanted.key_type)
                .map_err(|e| SubordinateError::Generate(e.to_string()))?,
        };
        let csr = create_csr(&self.wanted.subject, &[], &key, true)
            .map_err(|e| SubordinateError::Generate(e.to_string()))?;
        let days = period_days(
            self.wanted.duration,
            Timestamp::now().as_second(),
            self.ca_not_after,
        )
        .map_err(|e| SubordinateError::Spec(e.to_string()))?;
        // Record the key and that signing starts before calling NCP.
        let marked = self
            .write(
                secret,
                BTreeMap::from([(
                    KEY_PENDING_KEY.to_string(),
                    Some(key.to_pkcs8_pem().into_bytes()),
                )]),
                &[(ANNOTATION_PENDING_SINCE, Some(Timestamp::now().to_string()))],
            )
            .await?;
        let answer = self
            .ncp
            .sign_sub_csr(self.ca_tag, &csr, u32::try_from(days).unwrap_or(u32::MAX))
            .await;
        match answer {
            Ok(issued) => self
                .finish(Some(marked), key, &issued.certificate, &issued.ca_chain)
                .await
                .map(|i| Provisioned::Done(Box::new(i))),
            Err(e) => {
                if definitely_not_signed(&e) {
                    // Nothing to recover: the next attempt signs at once (with the same key).
                    let _ = self
                        .write(
                            Some(marked),
                            BTreeMap::new(),
                            &[(ANNOTATION_PENDING_SINCE, None)],
                        )
                        .await;
                }
                Err(IssuerError::from(e).into())
            }
        }
    }

    /// Checks NCP's answer and stores the new intermediate in place of the old one.
    async fn finish(
        &self,
        secret: Option<Secret>,
        key: PrivateKey,
        cert_pem: &str,
        chain: &[String],
    ) -> Result<Intermediate, SubordinateError> {
        let now = OffsetDateTime::now_utc();
        let (tls_crt, ca_crt) =
            assemble(&key, cert_pem, chain, now).map_err(SubordinateError::Answer)?;
        let key_pem = key.to_pkcs8_pem();
        let intermediate = decide::read_intermediate(
            Some(key_pem.as_bytes()),
            Some(tls_crt.as_bytes()),
            Some(ca_crt.as_bytes()),
            now,
        )
        .map_err(|p| SubordinateError::Answer(p.to_string()))?;
        self.write(
            secret,
            BTreeMap::from([
                (KEY_TLS_KEY.to_string(), Some(key_pem.into_bytes())),
                (KEY_TLS_CRT.to_string(), Some(tls_crt.into_bytes())),
                (KEY_CA_CRT.to_string(), Some(ca_crt.into_bytes())),
                (KEY_PENDING_KEY.to_string(), None),
            ]),
            &[
                (ANNOTATION_PENDING_SINCE, None),
                (ANNOTATION_SPEC_HASH, Some(self.wanted.digest())),
            ],
        )
        .await?;
        Ok(intermediate)
    }
}

/// Whether a failed call certainly signed nothing (so no recovery is needed before the next one).
fn definitely_not_signed(e: &NcpError) -> bool {
    let unreadable_success =
        matches!(e, NcpError::Decode { http_status, .. } if (200..300).contains(http_status));
    e.certainly_not_applied() || (!e.is_retryable() && !unreadable_success)
}

/// `tls.crt` (the intermediate, then NCP's chain without the root) and `ca.crt` (the root) from NCP's
/// answer, after checking that the certificate is a CA for `key` and chains to a self-signed root.
fn assemble(
    key: &PrivateKey,
    cert_pem: &str,
    chain: &[String],
    now: OffsetDateTime,
) -> Result<(String, String), String> {
    let cert = parse_certificates_pem(cert_pem)
        .map_err(|e| e.to_string())?
        .into_iter()
        .next()
        .ok_or("no certificate")?;
    if cert.public_key.spki_der() != key.spki_der().as_slice() {
        return Err("the certificate is for another key than the one sent".into());
    }
    if !cert.is_ca {
        return Err("the certificate is not a CA certificate".into());
    }
    let mut pool: Vec<CertInfo> = Vec::new();
    for pem in chain {
        for c in parse_certificates_pem(pem).map_err(|e| e.to_string())? {
            if c.der != cert.der && !pool.iter().any(|p| p.der == c.der) {
                pool.push(c);
            }
        }
    }
    let (roots, intermediates): (Vec<CertInfo>, Vec<CertInfo>) =
        pool.into_iter().partition(CertInfo::is_self_signed);
    if roots.is_empty() {
        return Err("NCP's chain holds no root certificate".into());
    }
    let path =
        crate::pki::verify_chain(&cert, &intermediates, &roots, now).map_err(|e| e.to_string())?;
    let Some((root, between)) = path.split_last() else {
        return Err("the intermediate is its own root".into());
    };
    let mut tls_crt = cert.to_pem();
    for c in between {
        tls_crt.push_str(&c.to_pem());
    }
    Ok((tls_crt, root.to_pem()))
}
