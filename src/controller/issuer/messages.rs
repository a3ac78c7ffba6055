//! The Ready condition's message when an issuer's check failed: the error, and what to do where the
//! error alone would not say it.

use super::super::IssuerError;
use super::super::kube_message::kube_message;
use crate::api::IssuerSpec;
use crate::reason::Reason;

/// The message for `error` of an issuer of `kind`: which endpoint has no such CA and how to list the
/// CAs there; where the kind reads its credentials Secret from (and, across namespaces, that a
/// ClusterPrivateCA is the way); what the API server said, without kube's `Debug` dump of it.
pub(super) fn not_ready(error: &IssuerError, kind: &str, spec: &IssuerSpec) -> String {
    match error {
        IssuerError::Ncp(_) if error.reason() == Reason::CANotFound => {
            let endpoint = spec
                .endpoint
                .as_deref()
                .unwrap_or(crate::ncp::PUBLIC_ENDPOINT);
            format!(
                "NCP at {endpoint} has no CA {} ({error}); list the CA tags these credentials \
                 can use with `ncp-pca-issuer pca list --endpoint {endpoint}`",
                spec.ca_tag
            )
        }
        IssuerError::SecretNotFound { namespace, .. } if kind == "PrivateCA" => format!(
            "{error}: a PrivateCA reads its credentials Secret from its own namespace only; \
             create it in {namespace}, or use a ClusterPrivateCA to share one Secret across \
             namespaces"
        ),
        IssuerError::SecretNotFound { namespace, .. } => format!(
            "{error}: a ClusterPrivateCA reads its credentials Secret from the controller's \
             cluster resource namespace ({namespace}, --cluster-resource-namespace)"
        ),
        IssuerError::SecretRead {
            namespace,
            name,
            source,
        } => format!(
            "cannot read credentials secret {namespace}/{name}: {}",
            kube_message(source)
        ),
        _ => error.to_string(),
    }
}
