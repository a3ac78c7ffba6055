//! Subordinate mode (design.md §5): an intermediate CA whose key is generated here and whose certificate
//! NCP signs with Sign Sub Csr, kept in a Secret the issuer owns and renewed before it expires. The
//! issuer controller provisions and checks it ([`reconcile`]); the CertificateRequest controller signs
//! with it through the in-memory [`SignerCache`] ([`signer_for`]).
//!
//! A reconcile is:
//! 1. **fetch**: the Secret, the signer in memory, and what NCP said (the issuer controller's check);
//! 2. **decide**: the pure `plan::plan` — report, adopt the Secret, or provision — which also says
//!    what signs meanwhile;
//! 3. **act**: the Secret write, or the provisioning (`provision`) concluded by the pure
//!    `outcome::conclude`;
//! 4. **report**: the events, the signer cache (set in one place: from the plan before acting, from
//!    the outcome after), and the [`Outcome`] the issuer controller writes.
//!
//! Nothing signs with a key that does not match its certificate: every intermediate is checked by
//! [`decide::read_intermediate`] before it enters the cache, and a Secret found broken evicts it.

pub mod decide;
pub mod error;
mod outcome;
mod plan;
mod provision;
mod report;
mod secret;
#[cfg(test)]
pub(crate) mod testing;

use super::Context;
use super::delays::TRANSIENT_RETRY;
use super::events::{EventType, Note};
use crate::api::annotations::ANNOTATION_RENEW;
use crate::api::{IssuerResource, SubordinateSpec};
pub use crate::controller::signers::{LocalSigner, SignerCache};
use crate::pki::CertInfo;
pub use error::{SignerError, SubordinateError};
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt as _;
use kube::api::Api;
use plan::{NcpView, Observed, Step};
use provision::{Provision, Provisioned, SecretWriter};
pub use report::{Outcome, Upstream};
use secret::{intermediate_in, is_owned_by};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

/// The signer of a subordinate issuer, for the CertificateRequest controller: from the cache, else read
/// and checked from its Secret.
///
/// Only an intermediate under `verified_root` (the SHA-256 of the root the issuer controller checked
/// against NCP and published in status) is loaded from the Secret.
///
/// # Errors
/// Why there is no usable intermediate (the request then waits).
pub async fn signer_for(
    ctx: &Context,
    owner: &str,
    secret_namespace: &str,
    secret_name: &str,
    verified_root: Option<&str>,
) -> Result<Arc<LocalSigner>, SignerError> {
    if let Some(s) = ctx.subordinates.get(owner)
        && s.secret_name == secret_name
    {
        return Ok(s);
    }
    let (namespace, name) = (secret_namespace.to_string(), secret_name.to_string());
    let secret = match Api::<Secret>::namespaced(ctx.client.clone(), secret_namespace)
        .get_opt(secret_name)
        .await
    {
        Ok(Some(s)) => s,
        Ok(None) => return Err(SignerError::Missing { namespace, name }),
        Err(source) => {
            return Err(SignerError::ReadSecret {
                namespace,
                name,
                source,
            });
        }
    };
    if !is_owned_by(&secret, owner) {
        return Err(SignerError::NotOurs { namespace, name });
    }
    let intermediate = match intermediate_in(Some(&secret), OffsetDateTime::now_utc()) {
        Ok(i) => i,
        Err(problem) => {
            return Err(SignerError::Unusable {
                namespace,
                name,
                problem,
            });
        }
    };
    if verified_root != Some(intermediate.root_sha256.as_str()) {
        return Err(SignerError::Unverified { namespace, name });
    }
    let signer = Arc::new(LocalSigner {
        secret_name: secret_name.to_string(),
        intermediate,
    });
    ctx.subordinates.put(owner, signer.clone());
    Ok(signer)
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
    let name = &spec.secret_name;
    let owner_ref = issuer.controller_owner_ref(&()).map(|mut r| {
        r.block_owner_deletion = None;
        r
    });
    // Fetch.
    let secret = Api::<Secret>::namespaced(ctx.client.clone(), &namespace)
        .get_opt(name)
        .await
        .map_err(error::secret_err("read", &namespace, name));
    let now = OffsetDateTime::now_utc();
    // Decide.
    let plan = plan::plan(Observed {
        owner: &owner,
        owner_ref: owner_ref.as_ref(),
        issuer_name: &issuer.name_any(),
        ca_tag: &issuer.issuer_spec().ca_tag,
        spec,
        namespace: &namespace,
        renew_request: issuer
            .annotations()
            .get(ANNOTATION_RENEW)
            .map(String::as_str),
        previous: issuer.issuer_status().and_then(|s| s.subordinate.as_ref()),
        secret,
        cached: ctx.subordinates.get(&owner),
        ncp: upstream.as_ref().map(|u| NcpView {
            out_of_service: u.out_of_service,
            verdict: u.verdict.clone(),
            ca: CertInfo::from_pem(&u.detail.ca_cert_info.cert_pem).ok(),
        }),
        now,
        recheck,
    });
    // What the plan refused signs nothing more, even while NCP is asked for its replacement.
    ctx.subordinates.set(&owner, plan.signer());
    for note in plan.found {
        publish(issuer, ctx, note).await;
    }
    let writer = SecretWriter {
        ctx,
        namespace: &namespace,
        name,
        owner: &owner,
        owner_ref,
    };
    // Act.
    let outcome = match plan.step {
        Step::Report(outcome) => outcome,
        Step::Adopt(secret, outcome) => {
            if let Err(e) = writer.write(Some(*secret), BTreeMap::new(), &[]).await {
                tracing::warn!(error = %e, "cannot update the intermediate secret's owner reference");
            }
            outcome
        }
        Step::Provision(job) => match upstream {
            Some(u) => provision(issuer, ctx, writer, *job, &u, recheck).await,
            // The plan provisions only when NCP answered; were it otherwise, the next reconcile
            // decides again.
            None => outcome::conclude(&job, Ok(Provisioned::Wait(TRANSIENT_RETRY)), now, recheck).0,
        },
    };
    // Report.
    ctx.subordinates.set(&owner, outcome.signer.clone());
    outcome
}

/// Runs `job` against NCP and concludes it, with its events.
async fn provision<K: IssuerResource>(
    issuer: &K,
    ctx: &Context,
    writer: SecretWriter<'_>,
    mut job: report::Job,
    u: &Upstream<'_>,
    recheck: Duration,
) -> Outcome {
    let result = Provision {
        issuer_kind: K::KIND,
        writer,
        ncp: u.ncp,
        ca_tag: &job.ca_tag,
        ca_not_after: u.detail.ca_cert_info.not_after_date.map(|ms| ms / 1000),
        ca_chain: u.chain,
        wanted: &job.wanted,
        ncp_ca: job.ncp_ca.as_ref(),
        renew_request: job.renew_request.clone(),
        recheck,
    }
    .run(job.secret.take())
    .await;
    let (outcome, notes) = outcome::conclude(&job, result, OffsetDateTime::now_utc(), recheck);
    for note in notes {
        publish(issuer, ctx, note).await;
    }
    outcome
}

/// Publishes an event about the intermediate on the issuer, and logs it.
async fn publish<K: IssuerResource>(issuer: &K, ctx: &Context, note: Note) {
    let (reason, text) = (note.reason, note.text.clone());
    let warning = note.type_ == EventType::Warning;
    ctx.publish(&issuer.object_ref(&()), note).await;
    if warning {
        tracing::warn!(kind = K::KIND, name = %issuer.name_any(), %reason, "{text}");
    } else {
        tracing::info!(kind = K::KIND, name = %issuer.name_any(), %reason, "{text}");
    }
}
