//! The `PrivateCA` / `ClusterPrivateCA` controller: reads the credentials, asks NCP about the CA (Get
//! CA, Get CA Chain), builds the NCP client the issuer's requests use, and publishes `Ready` and what
//! NCP said in status. Re-checks periodically, when the spec changes, and when a request's NCP call
//! failed for a reason of the issuer's (see [`run`]); its own status writes trigger nothing.
//! In subordinate mode it also keeps the in-cluster intermediate (see [`super::subordinate`]).

use super::clients::ClientKey;
use super::conditions::{self, ConditionStatus, Desired};
use super::delays::{STALE_CHECK_FLOOR, TRANSIENT_RETRY};
use super::kube_message::kube_message;
use super::subordinate;
use super::{Context, FIELD_MANAGER, IssuerError, read_credentials};
use crate::api::issuer::CaSummary;
use crate::api::{IssuerResource, IssuerStatus, SubordinateStatus};
use crate::ncp::types::{CaDetail, CaStatus, split_pem_blocks};
use crate::reason::Reason;
use crate::watches::Shared;
use futures::StreamExt as _;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt as _;
use kube::api::{Patch, PatchParams};
use kube::runtime::WatchStreamExt as _;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::utils::{Predicate as _, PredicateConfig, predicates};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub mod headroom;
mod messages;
mod ready;

pub use ready::ready_event;

pub use super::context::NCP_SIGNING_LIMIT;

/// Why a reconcile failed, named after the failed call (NCP problems end up in the condition).
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// Writing the status failed.
    #[error("write status of {kind} {name}: {}", kube_message(source))]
    WriteStatus {
        /// Kind.
        kind: &'static str,
        /// Name.
        name: String,
        /// The cause.
        source: kube::Error,
    },
}

/// What checking the CA found.
#[derive(Debug)]
pub struct Verdict {
    /// The Ready condition.
    pub condition: Desired,
    /// What NCP said about the CA, when it answered.
    pub ca: Option<CaSummary>,
    /// When to look again.
    pub requeue: Duration,
}

/// Decides readiness from NCP's answer, `signing_limit` being NCP's cap per CA (pure).
#[must_use]
pub fn assess(
    ca_tag: &str,
    detail: &CaDetail,
    chain_pem: &str,
    signing_limit: i64,
    now: Timestamp,
    recheck: Duration,
) -> Verdict {
    let info = &detail.ca_info;
    let cert = &detail.ca_cert_info;
    let signing_count = info.signing_count.unwrap_or_default();
    let not_after = cert
        .not_after_date
        .and_then(|ms| Timestamp::from_millisecond(ms).ok());
    let summary = CaSummary {
        alias: info.alias.clone(),
        ca_type: info.ca_type.clone(),
        status: info.status.to_string(),
        common_name: cert.common_name.clone(),
        key_algorithm: cert.public_key_algorithm.clone(),
        serial_number: cert.serial_no.clone(),
        not_after: not_after.map(|t| t.to_string()),
        signing_count,
        issuances_remaining: (signing_limit - signing_count).max(0),
    };
    let condition = if info.status != CaStatus::Active {
        Desired::not_ready(
            Reason::CANotActive,
            format!(
                "NCP CA {ca_tag} is {}; it signs only while ACTIVE",
                info.status
            ),
        )
    } else if not_after.is_some_and(|t| t <= now) {
        Desired::not_ready(
            Reason::CAExpired,
            format!(
                "NCP CA {ca_tag} expired at {}",
                not_after.map(|t| t.to_string()).unwrap_or_default()
            ),
        )
    } else if summary.issuances_remaining == 0 {
        Desired::not_ready(
            Reason::SigningLimitReached,
            format!("NCP CA {ca_tag} has signed {signing_count} certificates, NCP's limit per CA"),
        )
    } else if split_pem_blocks(chain_pem).map_or(true, |b| b.is_empty()) {
        Desired::not_ready(
            Reason::CAChainInvalid,
            format!("Get CA Chain for {ca_tag} returned no certificate"),
        )
    } else {
        // No counts in the message: it changes only when readiness does (counts are in status.ca).
        Desired::ready(
            Reason::CAActive,
            format!(
                "NCP CA {} ({ca_tag}) is ACTIVE{}",
                info.alias,
                not_after
                    .map(|t| format!(", valid until {t}"))
                    .unwrap_or_default(),
            ),
        )
    };
    Verdict {
        condition,
        ca: Some(summary),
        requeue: recheck,
    }
}

/// The verdict for an issuer of `kind` whose check failed before NCP described the CA; the message
/// says what to do where the error alone would not ([`messages::not_ready`]).
#[must_use]
pub fn assess_error(
    error: &IssuerError,
    kind: &str,
    spec: &crate::api::IssuerSpec,
    recheck: Duration,
) -> Verdict {
    Verdict {
        condition: Desired::not_ready(error.reason(), messages::not_ready(error, kind, spec)),
        ca: None,
        requeue: if error.is_transient() {
            TRANSIENT_RETRY
        } else {
            recheck
        },
    }
}

async fn check<K: IssuerResource>(
    issuer: &K,
    ctx: &Context,
) -> Result<(CaDetail, String, crate::ncp::Client), IssuerError> {
    let spec = issuer.issuer_spec();
    let owner = issuer.owner_id();
    let namespace = issuer.secret_namespace(&ctx.settings.cluster_resource_namespace);
    // The one read of the credentials: the client built from them is what the issuer's requests use
    // until the next check.
    let read = match read_credentials(&ctx.client, &namespace, spec).await {
        Ok(read) => read,
        Err(e) => {
            // No usable credentials: the requests of this issuer get no client.
            ctx.ncp_clients.remove(&owner);
            return Err(e);
        }
    };
    let key = ClientKey {
        generation: issuer.meta().generation,
        secret_version: read.resource_version,
    };
    let ncp = ctx.ncp_clients.install(
        &owner,
        key,
        spec,
        &read.credentials,
        ctx.settings.ncp_request_timeout,
    )?;
    let detail = ncp.get_ca(&spec.ca_tag).await?;
    let chain = ncp.get_ca_chain(&spec.ca_tag).await?;
    Ok((detail, chain, ncp))
}

/// Reconciles one issuer: fetch (credentials, Get CA, Get CA Chain) → assess (pure) → the
/// intermediate, in subordinate mode → [`status_change`] (pure) → one status write → an event when
/// `Ready` changed.
///
/// # Errors
/// When the status cannot be written (retried by the error policy).
pub async fn reconcile<K: IssuerResource>(
    issuer: Arc<K>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let spec = issuer.issuer_spec();
    let recheck = ctx.settings.issuer_recheck_interval;
    // Fetch.
    let checked = check(&*issuer, &ctx).await;
    // Assess.
    let mut verdict = match &checked {
        Ok((detail, chain, _)) => {
            let (limit, now) = (ctx.settings.signing_limit, Timestamp::now());
            assess(&spec.ca_tag, detail, chain, limit, now, recheck)
        }
        Err(e) => {
            let mut v = assess_error(e, K::KIND, spec, recheck);
            let message = &v.condition.message;
            tracing::info!(kind = K::KIND, name = %issuer.name_any(), error = %message, "issuer not ready");
            // Keep the last known CA description while NCP cannot be asked.
            v.ca = issuer.issuer_status().and_then(|s| s.ca.clone());
            v
        }
    };
    let mut conditions = vec![verdict.condition.clone()];
    let mut subordinate_status = None;
    if let Some(sub) = &spec.subordinate {
        // Subordinate mode: Ready is about the intermediate; NCP's view goes to UpstreamReady.
        let upstream = checked
            .as_ref()
            .ok()
            .map(|(detail, chain, ncp)| subordinate::Upstream {
                ncp,
                detail,
                chain,
                out_of_service: matches!(
                    verdict.condition.reason,
                    Reason::CANotActive | Reason::CAExpired
                ),
                verdict: &verdict.condition,
            });
        let outcome = subordinate::reconcile(&*issuer, &ctx, sub, upstream, recheck).await;
        let mut upstream_condition = verdict.condition.clone();
        upstream_condition.type_ = conditions::UPSTREAM_READY;
        conditions = vec![outcome.ready, upstream_condition];
        subordinate_status = outcome.status;
        verdict.requeue = verdict.requeue.min(outcome.requeue);
    }
    // Warnings before trouble (`Headroom`), and the gauges.
    let ready = conditions[0].status == ConditionStatus::True;
    let (ca, sub) = (verdict.ca.as_ref(), subordinate_status.as_ref());
    let room = headroom::assess(
        &spec.ca_tag,
        ready,
        ca,
        sub,
        &ctx.settings,
        Timestamp::now(),
    );
    conditions.extend(room.condition.clone());
    let namespace = issuer.meta().namespace.clone().unwrap_or_default();
    let name = issuer.name_any();
    ctx.metrics
        .set_issuer(K::KIND, &namespace, &name, &room.gauges);
    // Write.
    let old = issuer.issuer_status().cloned().unwrap_or_default();
    let Some(status) = status_change(
        &old,
        &conditions,
        &verdict,
        subordinate_status,
        Timestamp::now(),
        issuer.meta().generation,
    ) else {
        // Nothing new to say: no write (every write wakes the requests waiting on this issuer). Next:
        // the periodic re-check.
        return Ok(Action::requeue(verdict.requeue));
    };
    write_status(&*issuer, &ctx, &status).await?;
    let room_events = room.events(&old.conditions);
    for note in ready_event(&old, &conditions[0])
        .into_iter()
        .chain(room_events)
    {
        ctx.publish(&issuer.object_ref(&()), note).await;
    }
    // Next: the periodic re-check (sooner after a transient failure, or at the intermediate's renewal);
    // spec changes and re-checks asked by requests trigger an earlier reconcile (see `run`).
    Ok(Action::requeue(verdict.requeue))
}

/// The status to write, or `None` when the issuer already says it all (pure). Written when a
/// condition changes (type, status, reason, message or observed generation), a condition type goes
/// (`UpstreamReady` when subordinate mode does), the CA description or the intermediate changes, or
/// `lastCheckTime` is older than half the re-check (at least [`STALE_CHECK_FLOOR`]). Issuance counts
/// alone do not justify a write: they are refreshed with the periodic check. Only the condition types
/// in `desired` are kept; `lastTransitionTime` stays while a condition's status does.
#[must_use]
pub fn status_change(
    old: &IssuerStatus,
    desired: &[Desired],
    verdict: &Verdict,
    subordinate: Option<SubordinateStatus>,
    now: Timestamp,
    generation: Option<i64>,
) -> Option<IssuerStatus> {
    let mut new_conditions: Vec<_> = old
        .conditions
        .iter()
        .filter(|c| desired.iter().any(|d| d.type_ == c.type_))
        .cloned()
        .collect();
    for d in desired {
        new_conditions = conditions::merge(&new_conditions, d, generation, now);
    }
    let changed_condition = old.conditions.len() != new_conditions.len()
        || desired.iter().any(|d| {
            conditions::find(&old.conditions, d.type_)
                .is_none_or(|c| !d.is_stated_by(c) || c.observed_generation != generation)
        });
    let stale_check = old.last_check_time.as_ref().is_none_or(|t| {
        now.duration_since(t.0).as_secs()
            >= i64::try_from((verdict.requeue.as_secs() / 2).max(STALE_CHECK_FLOOR.as_secs()))
                .unwrap_or(i64::MAX)
    });
    let without_counts = |ca: &Option<CaSummary>| {
        ca.clone().map(|mut c| {
            c.signing_count = 0;
            c.issuances_remaining = 0;
            c
        })
    };
    if !changed_condition
        && without_counts(&old.ca) == without_counts(&verdict.ca)
        && old.subordinate == subordinate
        && !stale_check
    {
        return None;
    }
    Some(IssuerStatus {
        conditions: new_conditions,
        ca: verdict.ca.clone(),
        last_check_time: Some(Time(now)),
        subordinate,
    })
}

/// Writes `status` (server-side apply, our field manager).
async fn write_status<K: IssuerResource>(
    issuer: &K,
    ctx: &Context,
    status: &IssuerStatus,
) -> Result<(), ReconcileError> {
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::KIND,
        "status": status,
    });
    let api = K::api(
        ctx.client.clone(),
        issuer.meta().namespace.as_deref().unwrap_or_default(),
    );
    api.patch_status(
        &issuer.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map(|_| ())
    .map_err(|source| ReconcileError::WriteStatus {
        kind: K::KIND,
        name: issuer.name_any(),
        source,
    })
}

// The signature is kube's `Controller::run` error policy.
#[allow(clippy::needless_pass_by_value)]
fn error_policy<K: IssuerResource>(
    issuer: Arc<K>,
    error: &ReconcileError,
    _ctx: Arc<Context>,
) -> Action {
    tracing::warn!(kind = K::KIND, name = %issuer.name_any(), error = %error, "reconcile failed");
    Action::requeue(TRANSIENT_RETRY)
}

/// Runs the controller for one issuer kind on the shared `issuers` watch until `shutdown` is
/// cancelled.
///
/// An issuer is checked (credentials GET, Get CA, Get CA Chain) when it is first seen, when its spec
/// (generation) or its annotations change — not on the status writes of its own checks —, at the
/// periodic re-check, and when one of its requests hit an issuer-level NCP failure
/// ([`NcpClientCache::ask_recheck`](super::NcpClientCache::ask_recheck)). There is no watch on
/// Secrets: rotated credentials are read at the next of these (touching an annotation of the issuer
/// re-checks it at once).
pub async fn run<K: IssuerResource>(
    ctx: Arc<Context>,
    issuers: &Shared<K>,
    shutdown: CancellationToken,
) {
    let store = issuers.store();
    let changed = issuers
        .objects()
        .map(|issuer| Ok::<K, kube::runtime::watcher::Error>((*issuer).clone()))
        .predicate_filter(
            predicates::generation.combine(predicates::annotations),
            PredicateConfig::default(),
        )
        .filter_map(|issuer| std::future::ready(issuer.ok().map(Arc::new)));
    let controller = Controller::for_shared_stream(changed, store.clone());
    let live = store.clone();
    let asked = ctx.ncp_clients.rechecks_asked(store);
    controller
        .reconcile_on(asked)
        .graceful_shutdown_on(shutdown.cancelled_owned())
        .run(
            move |issuer, ctx| {
                let live = live.clone();
                async move {
                    let started = std::time::Instant::now();
                    let result = reconcile::<K>(issuer.clone(), ctx.clone()).await;
                    let outcome = if result.is_ok() { "ok" } else { "error" };
                    ctx.metrics
                        .observe_reconcile(K::KIND, outcome, started.elapsed());
                    if live.get(&ObjectRef::from_obj(&*issuer)).is_none() {
                        // Deleted while this reconcile ran: undo what it recorded.
                        ctx.metrics.remove_issuer(
                            K::KIND,
                            issuer.meta().namespace.as_deref().unwrap_or_default(),
                            &issuer.name_any(),
                        );
                        ctx.ncp_clients.remove(&issuer.owner_id());
                    }
                    result
                }
            },
            error_policy::<K>,
            ctx,
        )
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(kind = K::KIND, error = %e, "controller event");
            }
        })
        .await;
}

#[cfg(test)]
mod tests;
