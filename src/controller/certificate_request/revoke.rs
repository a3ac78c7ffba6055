//! Revocation on deletion: the `pca.ncp-issuer.dev/revoke` finalizer, the issuer's revocation policy,
//! and the safety rules — never revoke what a live Certificate still serves, never hold a deletion
//! forever.

use super::decide::{ANNOTATION_CA_TAG, ANNOTATION_SERIAL, FINALIZER_REVOKE};
use super::{IssuerView, RequestError, fetch_issuer, status};
use crate::api::RevocationPolicy;
use crate::api::certmanager::{Certificate, CertificateRequest};
use crate::controller::{Context, read_credentials};
use crate::pki::parse_certificates_pem;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt as _;
use kube::api::Api;
use kube::runtime::controller::Action;
use std::time::Duration;

/// How long a deletion may wait for revocation before the finalizer is released anyway.
pub const REVOKE_GIVE_UP: Duration = Duration::from_secs(600);
/// Wait between revocation attempts.
pub const REVOKE_RETRY: Duration = Duration::from_secs(15);

/// What deleting the request means for its certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Revoke it.
    Revoke,
    /// Keep it, with the reason.
    Keep(&'static str),
}

/// The revocation decision (pure).
///
/// `certificate_exists`: the Certificate owning the request still exists. `served_serial`: the serial in
/// that Certificate's Secret, if readable.
#[must_use]
pub fn decide(
    policy: RevocationPolicy,
    serial: Option<&str>,
    certificate_exists: bool,
    served_serial: Option<&str>,
) -> Verdict {
    let Some(serial) = serial else {
        return Verdict::Keep("no certificate was issued for this request");
    };
    let still_served = served_serial.is_some_and(|s| normalize(s) == normalize(serial));
    match policy {
        RevocationPolicy::Never => Verdict::Keep("the issuer's revocation policy is Never"),
        _ if still_served => {
            Verdict::Keep("the certificate is still served by its Certificate's Secret")
        }
        RevocationPolicy::OnCertificateDeletion if certificate_exists => {
            Verdict::Keep("its Certificate still exists (policy OnCertificateDeletion)")
        }
        RevocationPolicy::OnCertificateDeletion | RevocationPolicy::OnRequestDeletion => {
            Verdict::Revoke
        }
    }
}

fn normalize(serial: &str) -> String {
    serial
        .to_ascii_lowercase()
        .split(':')
        .skip_while(|b| *b == "00")
        .collect::<Vec<_>>()
        .join(":")
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
            status::event(
                cr,
                ctx,
                false,
                "Revoked",
                &format!("certificate {serial} revoked in NCP"),
            )
            .await;
            ctx.metrics
                .certificate_revoked(cr.spec.issuer_ref.kind.as_deref().unwrap_or_default());
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
            status::event(cr, ctx, true, "RevocationFailed", &msg).await;
            release(cr, ctx).await?;
            Ok(Action::await_change())
        }
        Err(why) => {
            status::event(
                cr,
                ctx,
                true,
                "RevocationPending",
                &format!("cannot revoke yet, will retry: {why}"),
            )
            .await;
            // Next: another attempt; the deletion is released at the latest after REVOKE_GIVE_UP.
            Ok(Action::requeue(REVOKE_RETRY))
        }
    }
}

enum Outcome {
    Revoked(String),
    Kept(&'static str),
}

async fn attempt(cr: &CertificateRequest, ctx: &Context) -> Result<Outcome, String> {
    let serial = cr.annotations().get(ANNOTATION_SERIAL).cloned();
    let issuer: Option<IssuerView> = fetch_issuer(cr, ctx)
        .await
        .map_err(|e| format!("cannot read issuer: {e}"))?;
    let Some(issuer) = issuer else {
        return Err("its issuer no longer exists, so NCP cannot be reached".into());
    };
    let (certificate_exists, served) = certificate_state(cr, ctx).await?;
    match decide(
        issuer.spec.revocation_policy,
        serial.as_deref(),
        certificate_exists,
        served.as_deref(),
    ) {
        Verdict::Keep(why) => Ok(Outcome::Kept(why)),
        Verdict::Revoke => {
            let serial = serial.unwrap_or_default();
            let ca_tag = cr
                .annotations()
                .get(ANNOTATION_CA_TAG)
                .cloned()
                .unwrap_or_else(|| issuer.spec.ca_tag.clone());
            let credentials = read_credentials(&ctx.client, &issuer.secret_namespace, &issuer.spec)
                .await
                .map_err(|e| e.to_string())?;
            let ncp = ctx
                .ncp_clients
                .get(&issuer.spec, &credentials, ctx.settings.ncp_request_timeout)
                .map_err(|e| e.to_string())?;
            match ncp.revoke_end_cert(&ca_tag, &serial).await {
                Ok(()) => Ok(Outcome::Revoked(serial)),
                // Already gone in NCP (trimmed after expiry): nothing left to revoke.
                Err(e) if e.is_cert_not_found() => {
                    Ok(Outcome::Kept("the certificate no longer exists in NCP"))
                }
                Err(e) => Err(e.to_string()),
            }
        }
    }
}

/// Whether the owning Certificate exists, and the serial its Secret serves.
async fn certificate_state(
    cr: &CertificateRequest,
    ctx: &Context,
) -> Result<(bool, Option<String>), String> {
    let ns = cr.namespace().unwrap_or_default();
    let owner = cr
        .owner_references()
        .iter()
        .find(|o| o.kind == "Certificate" && o.api_version.starts_with("cert-manager.io/"));
    let Some(owner) = owner else {
        // A request made by hand: no Certificate can serve it.
        return Ok((false, None));
    };
    let certificates: Api<Certificate> = Api::namespaced(ctx.client.clone(), &ns);
    let certificate = certificates
        .get_opt(&owner.name)
        .await
        .map_err(|e| format!("cannot read Certificate {}: {e}", owner.name))?;
    let certificate = match certificate {
        Some(c) if c.uid().as_deref() == Some(owner.uid.as_str()) => c,
        // Gone, or replaced by a new object of the same name.
        _ => return Ok((false, None)),
    };
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let served = secrets
        .get_opt(&certificate.spec.secret_name)
        .await
        .map_err(|e| format!("cannot read Secret {}: {e}", certificate.spec.secret_name))?
        .and_then(|s| s.data)
        .and_then(|d| d.get("tls.crt").cloned())
        .and_then(|b| String::from_utf8(b.0).ok())
        .and_then(|pem| parse_certificates_pem(&pem).ok())
        .and_then(|certs| certs.into_iter().next())
        .map(|c| c.serial.to_string());
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
    match super::merge_metadata(&ctx.client, cr, &release_patch(cr)).await {
        // Released, or already gone.
        Ok(()) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(source) => Err(RequestError::Kube {
            what: "finalizer",
            namespace: cr.namespace().unwrap_or_default(),
            name: cr.name_any(),
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
            match super::merge_metadata(client, &current, &release_patch(&current)).await {
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
            decide(Never, Some("0a"), false, None),
            Verdict::Keep(_)
        ));
    }

    #[test]
    fn on_certificate_deletion_revokes_only_once_the_certificate_is_gone() {
        assert!(matches!(
            decide(OnCertificateDeletion, Some("0a"), true, Some("0b")),
            Verdict::Keep(_)
        ));
        assert_eq!(
            decide(OnCertificateDeletion, Some("0a"), false, None),
            Verdict::Revoke
        );
    }

    #[test]
    fn on_request_deletion_revokes_unless_the_certificate_is_still_served() {
        assert_eq!(
            decide(OnRequestDeletion, Some("0a"), true, Some("0b")),
            Verdict::Revoke
        );
        assert!(matches!(
            decide(OnRequestDeletion, Some("0A"), true, Some("00:0a")),
            Verdict::Keep(_)
        ));
    }

    #[test]
    fn nothing_issued_means_nothing_to_revoke() {
        assert!(matches!(
            decide(OnRequestDeletion, None, false, None),
            Verdict::Keep(_)
        ));
    }
}
