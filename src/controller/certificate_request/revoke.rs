//! Revocation on deletion: the `pca.ncp-issuer.dev/revoke` finalizer, the issuer's revocation policy,
//! and the safety rules — never revoke what a live Certificate still serves, never hold a deletion
//! forever.

use crate::controller::kube_message::kube_message;

use super::error::RequestError;
use super::issuers::{IssuerCache, IssuerLookup};
use super::metadata::request_name;
use crate::api::RevocationPolicy;
use crate::api::annotations::{ANNOTATION_CA_TAG, ANNOTATION_SERIAL, FINALIZER_REVOKE};
use crate::api::certmanager::{Certificate, CertificateRequest};
use crate::controller::delays::{REVOKE_GIVE_UP, REVOKE_RETRY};
use crate::controller::events::{EventAction, Note};
use crate::controller::{Context, IssuerError, read_credentials};
use crate::ncp::NcpError;
use crate::pki::parse_certificates_pem;
use crate::reason::Reason;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::Resource as _;
use kube::ResourceExt as _;
use kube::api::Api;
use kube::runtime::controller::Action;
use std::time::Duration;

/// Why revocation cannot be done yet (retried until [`REVOKE_GIVE_UP`]).
#[derive(Debug, thiserror::Error)]
enum Blocked {
    /// The issuer could not be read.
    #[error("cannot read the issuer")]
    IssuerUnreadable,
    /// The issuer is gone.
    #[error("its issuer no longer exists, so NCP cannot be reached")]
    IssuerGone,
    /// The owning Certificate could not be read.
    #[error("cannot read Certificate {name}: {}", kube_message(source))]
    CertificateUnreadable {
        /// Its name.
        name: String,
        /// The cause.
        source: kube::Error,
    },
    /// Whether the certificate is still served is not known.
    #[error("{0}")]
    Unsure(&'static str),
    /// The issuer cannot be used (credentials).
    #[error(transparent)]
    Issuer(#[from] IssuerError),
    /// NCP failed in a way a retry may fix.
    #[error(transparent)]
    Ncp(NcpError),
}

/// What deleting the request means for its certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Revoke it.
    Revoke,
    /// Keep it, with the reason.
    Keep(&'static str),
    /// Cannot tell yet whether it is still served: try again (and never revoke on doubt).
    Unsure(&'static str),
}

/// The revocation decision (pure).
///
/// `certificate_exists`: the Certificate owning the request exists and is not being deleted.
/// `still_served`: whether that Certificate's Secret serves this request's certificate (`None` when the
/// Secret could not be read or parsed).
#[must_use]
pub fn decide(
    policy: RevocationPolicy,
    issued: bool,
    certificate_exists: bool,
    still_served: Option<bool>,
) -> Verdict {
    if !issued {
        return Verdict::Keep("no certificate was issued for this request");
    }
    match policy {
        RevocationPolicy::Never => Verdict::Keep("the issuer's revocation policy is Never"),
        _ if still_served == Some(true) => {
            Verdict::Keep("the certificate is still served by its Certificate's Secret")
        }
        RevocationPolicy::OnCertificateDeletion if certificate_exists => {
            Verdict::Keep("its Certificate still exists (policy OnCertificateDeletion)")
        }
        RevocationPolicy::OnRequestDeletion if certificate_exists && still_served.is_none() => {
            Verdict::Unsure(
                "cannot read its Certificate's Secret to tell whether the certificate is still served",
            )
        }
        RevocationPolicy::OnCertificateDeletion | RevocationPolicy::OnRequestDeletion => {
            Verdict::Revoke
        }
    }
}

/// Handles a request being deleted while it carries our finalizer.
///
/// # Errors
/// When a Kubernetes write fails.
pub async fn on_delete(cr: &CertificateRequest, ctx: &Context) -> Result<Action, RequestError> {
    if !cr.finalizers().iter().any(|f| f == FINALIZER_REVOKE) {
        // Not ours to hold: nothing to do.
        return Ok(Action::await_change());
    }
    let waited = cr
        .metadata
        .deletion_timestamp
        .as_ref()
        .and_then(|t| Duration::try_from(Timestamp::now().duration_since(t.0)).ok())
        .unwrap_or_default();
    match attempt(cr, ctx).await {
        Ok(Outcome::Revoked(serial)) => {
            let note = Note::normal(
                Reason::Revoked,
                format!("certificate {serial} revoked in NCP"),
                EventAction::Revoke,
            );
            ctx.publish(&cr.object_ref(&()), note).await;
            ctx.metrics
                .certificate_revoked(cr.spec.issuer_ref.kind.as_deref().unwrap_or_default());
            release(cr, ctx).await?;
            Ok(Action::await_change())
        }
        Ok(Outcome::Refused(why)) => {
            let msg = format!("NCP refused to revoke, releasing the request: {why}");
            let note = Note::warning(Reason::RevocationFailed, msg, EventAction::Revoke);
            ctx.publish(&cr.object_ref(&()), note).await;
            release(cr, ctx).await?;
            Ok(Action::await_change())
        }
        Ok(Outcome::Kept(why)) => {
            tracing::debug!(name = %cr.name_any(), why, "not revoking");
            release(cr, ctx).await?;
            Ok(Action::await_change())
        }
        Err(why) if waited >= REVOKE_GIVE_UP => {
            let msg = format!(
                "revocation abandoned after {}s, releasing the request: {why}",
                waited.as_secs()
            );
            let note = Note::warning(Reason::RevocationFailed, msg, EventAction::Revoke);
            ctx.publish(&cr.object_ref(&()), note).await;
            release(cr, ctx).await?;
            Ok(Action::await_change())
        }
        Err(why) => {
            let note = Note::warning(
                Reason::RevocationPending,
                format!("cannot revoke yet, will retry: {why}"),
                EventAction::Revoke,
            );
            ctx.publish(&cr.object_ref(&()), note).await;
            // Next: another attempt; the deletion is released at the latest after REVOKE_GIVE_UP.
            Ok(Action::requeue(REVOKE_RETRY))
        }
    }
}

enum Outcome {
    Revoked(String),
    Kept(&'static str),
    /// NCP refused for good: retrying cannot help.
    Refused(String),
}

async fn attempt(cr: &CertificateRequest, ctx: &Context) -> Result<Outcome, Blocked> {
    let Some(serial) = cr.annotations().get(ANNOTATION_SERIAL).cloned() else {
        return Ok(Outcome::Kept("no certificate was issued for this request"));
    };
    let crn = &ctx.settings.cluster_resource_namespace;
    let issuer = match IssuerCache::default().lookup(&ctx.client, cr, crn).await {
        IssuerLookup::Found(issuer) => issuer,
        IssuerLookup::Missing => return Err(Blocked::IssuerGone),
        _ => return Err(Blocked::IssuerUnreadable),
    };
    if issuer.spec.revocation_policy == RevocationPolicy::Never {
        return Ok(Outcome::Kept("the issuer's revocation policy is Never"));
    }
    let (certificate_exists, still_served) = certificate_state(cr, ctx).await?;
    match decide(
        issuer.spec.revocation_policy,
        true,
        certificate_exists,
        still_served,
    ) {
        Verdict::Keep(why) => Ok(Outcome::Kept(why)),
        Verdict::Unsure(why) => Err(Blocked::Unsure(why)),
        Verdict::Revoke => {
            let ca_tag = cr
                .annotations()
                .get(ANNOTATION_CA_TAG)
                .cloned()
                .unwrap_or_else(|| issuer.spec.ca_tag.clone());
            let credentials =
                read_credentials(&ctx.client, &issuer.secret_namespace, &issuer.spec).await?;
            let ncp = ctx.ncp_clients.get(
                &issuer.owner,
                &issuer.spec,
                &credentials,
                ctx.settings.ncp_request_timeout,
            )?;
            match ncp.revoke_end_cert(&ca_tag, &serial).await {
                Ok(()) => Ok(Outcome::Revoked(serial)),
                // Already gone in NCP (trimmed after expiry): nothing left to revoke.
                Err(e) if e.is_cert_not_found() => {
                    Ok(Outcome::Kept("the certificate no longer exists in NCP"))
                }
                Err(e) if e.is_retryable() => Err(Blocked::Ncp(e)),
                Err(e) => Ok(Outcome::Refused(e.to_string())),
            }
        }
    }
}

/// The first certificate of a PEM bundle, DER.
fn leaf_der(pem: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(pem).ok()?;
    parse_certificates_pem(text)
        .ok()?
        .into_iter()
        .next()
        .map(|c| c.der)
}

/// Whether the owning Certificate exists (and is not being deleted), and whether its Secret serves
/// this request's certificate (`None`: unknown).
async fn certificate_state(
    cr: &CertificateRequest,
    ctx: &Context,
) -> Result<(bool, Option<bool>), Blocked> {
    let ns = cr.namespace().unwrap_or_default();
    let owner = cr
        .owner_references()
        .iter()
        .find(|o| o.kind == "Certificate" && o.api_version.starts_with("cert-manager.io/"));
    let Some(owner) = owner else {
        // A request made by hand: no Certificate can serve it.
        return Ok((false, Some(false)));
    };
    let certificates: Api<Certificate> = Api::namespaced(ctx.client.clone(), &ns);
    let certificate = certificates.get_opt(&owner.name).await.map_err(|source| {
        Blocked::CertificateUnreadable {
            name: owner.name.clone(),
            source,
        }
    })?;
    let certificate = match certificate {
        Some(c)
            if c.uid().as_deref() == Some(owner.uid.as_str())
                && c.metadata.deletion_timestamp.is_none() =>
        {
            c
        }
        // Gone, being deleted, or replaced by a new object of the same name.
        _ => return Ok((false, Some(false))),
    };
    let Some(ours) = cr
        .status
        .as_ref()
        .and_then(|s| s.certificate.as_ref())
        .and_then(|b| leaf_der(&b.0))
    else {
        // Never written to status, so cert-manager never put it in the Secret.
        return Ok((true, Some(false)));
    };
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let served = match secrets.get_opt(&certificate.spec.secret_name).await {
        Ok(Some(secret)) => match secret.data.and_then(|d| d.get("tls.crt").cloned()) {
            Some(crt) => leaf_der(&crt.0).map(|der| der == ours),
            None => Some(false),
        },
        Ok(None) => Some(false),
        Err(_) => None,
    };
    Ok((true, served))
}

/// A merge patch that drops our finalizer and keeps everyone else's, conditional on `resourceVersion`.
fn release_patch(cr: &CertificateRequest) -> serde_json::Value {
    let remaining: Vec<&String> = cr
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER_REVOKE)
        .collect();
    serde_json::json!({"metadata": {"resourceVersion": cr.resource_version(), "finalizers": remaining}})
}

async fn release(cr: &CertificateRequest, ctx: &Context) -> Result<(), RequestError> {
    match super::metadata::merge_metadata(&ctx.client, cr, &release_patch(cr)).await {
        // Released, or already gone.
        Ok(()) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(source) => Err(RequestError::ReleaseFinalizer {
            request: request_name(cr),
            source,
        }),
    }
}

/// Removes our finalizer from every CertificateRequest in the cluster, revoking nothing (for
/// uninstalling). Returns `namespace/name` of each request released.
///
/// # Errors
/// When listing fails; a request that changes under us is retried, one that vanished is skipped.
pub async fn remove_all_finalizers(client: &kube::Client) -> Result<Vec<String>, kube::Error> {
    let all: Api<CertificateRequest> = Api::all(client.clone());
    let mut released = Vec::new();
    for cr in all.list(&kube::api::ListParams::default()).await?.items {
        if !cr.finalizers().iter().any(|f| f == FINALIZER_REVOKE) {
            continue;
        }
        let ns = cr.namespace().unwrap_or_default();
        let api: Api<CertificateRequest> = Api::namespaced(client.clone(), &ns);
        let mut current = cr;
        for _ in 0..5 {
            match super::metadata::merge_metadata(client, &current, &release_patch(&current)).await
            {
                Ok(()) => {
                    released.push(format!("{ns}/{}", current.name_any()));
                    break;
                }
                Err(kube::Error::Api(s)) if s.code == 404 => break,
                // Changed under us: read it again and retry.
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    match api.get_opt(&current.name_any()).await? {
                        Some(fresh) => current = fresh,
                        None => break,
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(released)
}

#[cfg(test)]
mod tests {
    use super::*;
    use RevocationPolicy::{Never, OnCertificateDeletion, OnRequestDeletion};

    #[test]
    fn never_revokes_nothing() {
        assert!(matches!(
            decide(Never, true, false, Some(false)),
            Verdict::Keep(_)
        ));
    }

    #[test]
    fn on_certificate_deletion_revokes_only_once_the_certificate_is_gone() {
        assert!(matches!(
            decide(OnCertificateDeletion, true, true, Some(false)),
            Verdict::Keep(_)
        ));
        assert_eq!(
            decide(OnCertificateDeletion, true, false, Some(false)),
            Verdict::Revoke
        );
    }

    #[test]
    fn on_request_deletion_revokes_unless_the_certificate_is_still_served() {
        assert_eq!(
            decide(OnRequestDeletion, true, true, Some(false)),
            Verdict::Revoke
        );
        assert!(matches!(
            decide(OnRequestDeletion, true, true, Some(true)),
            Verdict::Keep(_)
        ));
    }

    #[test]
    fn doubt_about_what_is_served_never_revokes() {
        assert!(matches!(
            decide(OnRequestDeletion, true, true, None),
            Verdict::Unsure(_)
        ));
    }

    #[test]
    fn nothing_issued_means_nothing_to_revoke() {
        assert!(matches!(
            decide(OnRequestDeletion, false, false, Some(false)),
            Verdict::Keep(_)
        ));
    }
}
