//! The PodCertificateRequest signer (`certificates.k8s.io/v1beta1`, KEP-4317): requests the kubelet
//! makes for a pod's `podCertificate` projected volume, for one of our signer names. A request
//! carries a public key and a proof of possession, no CSR, so only subordinate issuers (an
//! NCP-anchored intermediate in the cluster) sign them; for a remote issuer the request fails.
//!
//! Every reconcile is:
//! 1. **fetch**: the request and its issuer;
//! 2. **decide**: the pure [`decide::plan`] (policy, key type, proof of possession, lifetime);
//! 3. **act**: signing with the intermediate (`sign`), which returns an [`status::Outcome`];
//! 4. **write**: [`status::write`], the one place that writes a request's status and its events.

pub mod decide;
pub mod status;

use super::Context;
use crate::controller::certificate_request::IssuerView;
use crate::controller::csr::Issuers;
use crate::controller::csr::decide::SignerRef;
use crate::controller::delays::{ISSUER_WAIT, MIN_BACKOFF};
use crate::controller::period::local_validity;
use crate::controller::signer_wake;
use crate::controller::subordinate;
use crate::pki::{IssueOptions, Name, PublicKeyInfo, San, assemble, sign_leaf};
use crate::reason::Reason;
use decide::{MIN_LIFETIME, Observed, Plan, begin_refresh_at};
use k8s_openapi::api::certificates::v1beta1::PodCertificateRequest;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt as _;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use status::{Outcome, Update, WriteStatusError};
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

fn timestamp(t: OffsetDateTime) -> Timestamp {
    Timestamp::from_second(t.unix_timestamp()).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// Signs the request with the subordinate issuer's intermediate.
async fn sign(
    pcr: &PodCertificateRequest,
    ctx: &Context,
    issuer: &IssuerView,
    key: &PublicKeyInfo,
    lifetime: Duration,
    sans: &[San],
) -> Outcome {
    let Some(sub) = &issuer.spec.subordinate else {
        // The plan sends only subordinate issuers here.
        return Outcome::requeue(ISSUER_WAIT);
    };
    let signer = match subordinate::signer_for(
        ctx,
        &issuer.owner,
        &issuer.secret_namespace,
        &sub.secret_name,
        issuer.subordinate_root.as_deref(),
    )
    .await
    {
        Ok(s) => s,
        // Next: the issuer's status change (a new intermediate) wakes us.
        Err(why) => {
            return Outcome::waiting(&format!("waiting for the intermediate: {why}"), ISSUER_WAIT);
        }
    };
    let intermediate = &signer.intermediate;
    let now = OffsetDateTime::now_utc();
    let validity = match local_validity(lifetime, now, intermediate.certificate().not_after) {
        Ok((v, _)) if v.not_after - v.not_before >= MIN_LIFETIME => v,
        // Next: the renewed intermediate (the issuer's status change) wakes us.
        _ => {
            return Outcome::waiting(
                "waiting for the intermediate: it ends in less than an hour and is being renewed",
                ISSUER_WAIT,
            );
        }
    };
    // No subject: the identity is the SPIFFE URI (and the policy's DNS names) in the SANs.
    let leaf = match sign_leaf(
        &intermediate.signer,
        &Name::new(),
        sans,
        key,
        &IssueOptions::new(validity),
    ) {
        Ok(c) => c,
        Err(e) => {
            let msg = format!("cannot sign the request: {e}");
            return Outcome::failed(Reason::SigningFailed, &msg);
        }
    };
    let chain = [
        intermediate.chain_pem.clone(),
        intermediate.root_pem.clone(),
    ];
    let issued = match assemble(key.spki_der(), &leaf.to_pem(), &chain, now) {
        Ok(i) => i,
        Err(e) => {
            let msg = format!("locally signed certificate: {e}");
            return Outcome::failed(Reason::CertificateUnusable, &msg);
        }
    };
    let (not_before, not_after) = (leaf.not_before, leaf.not_after);
    let update = Update::Issued {
        chain: issued.certificate_pem,
        not_before: timestamp(not_before),
        begin_refresh_at: timestamp(begin_refresh_at(not_before, not_after)),
        not_after: timestamp(not_after),
        // Conditional: a reconcile from a stale copy must not sign and write again.
        resource_version: pcr.metadata.resource_version.clone(),
    };
    let note = format!(
        "certificate signed in the cluster by intermediate {}, serial {}, valid until {}",
        intermediate.certificate().serial.to_colon_hex(),
        issued.serial,
        timestamp(not_after)
    );
    Outcome::issued(update, &note)
}

async fn reconcile(
    pcr: Arc<PodCertificateRequest>,
    ctx: Arc<Context>,
    issuers: &Issuers,
) -> Result<Action, WriteStatusError> {
    let Some(signer) = SignerRef::parse(&pcr.spec.signer_name) else {
        // Not ours: ignored silently.
        return Ok(Action::await_change());
    };
    if decide::is_final(&pcr) {
        // Final: never touched again.
        return Ok(Action::await_change());
    }
    // Fetch.
    let issuer = issuers.lookup(&ctx, &signer).await;
    // Decide.
    let plan = decide::plan(Observed {
        pcr: &pcr,
        signer: &signer,
        issuer,
    });
    // Act.
    let outcome = match plan {
        Plan::Write(outcome) => outcome,
        Plan::Sign {
            issuer,
            key,
            lifetime,
            sans,
        } => sign(&pcr, &ctx, &issuer, &key, lifetime, &sans).await,
    };
    // Write.
    status::write(&pcr, &ctx, outcome, signer.kind()).await
}

// The signature is kube's `Controller::run` error policy.
#[allow(clippy::needless_pass_by_value)]
fn error_policy(
    pcr: Arc<PodCertificateRequest>,
    error: &WriteStatusError,
    _ctx: Arc<Context>,
) -> Action {
    tracing::warn!(namespace = %pcr.namespace().unwrap_or_default(), name = %pcr.name_any(), error = %error, "PodCertificateRequest reconcile failed");
    Action::requeue(MIN_BACKOFF)
}

/// Whether the cluster serves PodCertificateRequests (`certificates.k8s.io/v1beta1`).
async fn served(client: &kube::Client) -> bool {
    client
        .list_api_group_resources("certificates.k8s.io/v1beta1")
        .await
        .is_ok_and(|l| {
            l.resources
                .iter()
                .any(|r| r.name == "podcertificaterequests")
        })
}

/// Runs the PodCertificateRequest signer until `shutdown` is cancelled; does nothing (and says so)
/// when the cluster does not serve the API.
pub async fn run(
    ctx: Arc<Context>,
    concurrency: u16,
    watches: &crate::watches::Watches,
    shutdown: tokio_util::sync::CancellationToken,
) {
    if !served(&ctx.client).await {
        tracing::info!(
            "the cluster does not serve certificates.k8s.io/v1beta1 podcertificaterequests: the PodCertificateRequest signer is off"
        );
        return;
    }
    let api = Api::<PodCertificateRequest>::all(ctx.client.clone());
    let controller = Controller::new(api, watcher::Config::default().any_semantic())
        .with_config(kube::runtime::controller::Config::default().concurrency(concurrency));
    let issuers = Issuers::of(watches);
    // An issuer change wakes the open requests naming it.
    let controller = signer_wake::wake_on_issuers(
        controller,
        watches,
        |p| &p.spec.signer_name,
        |p| !decide::is_final(p),
    );
    let reconciler = move |pcr, ctx| {
        let issuers = issuers.clone();
        async move { reconcile(pcr, ctx, &issuers).await }
    };
    signer_wake::drive(
        controller,
        ctx,
        shutdown,
        "PodCertificateRequest",
        reconciler,
        error_policy,
    )
    .await;
}
