//! Why an issuer cannot be used, and reading its credentials Secret (in its own namespace only).

use crate::api::IssuerSpec;
use crate::ncp::{Credentials, NcpError};
use crate::reason::Reason;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;

/// Why an issuer cannot be used; each knows its condition reason and whether a retry soon may help.
#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    /// The credentials Secret is missing.
    #[error("credentials secret {namespace}/{name} not found")]
    SecretNotFound {
        /// Namespace searched (the only one this issuer kind may read).
        namespace: String,
        /// Secret name.
        name: String,
    },
    /// A key is missing or empty in the credentials Secret.
    #[error(
        "credentials secret {namespace}/{name} has no non-empty key {key:?} (its keys: {})",
        list_keys(present)
    )]
    SecretKeyMissing {
        /// Namespace.
        namespace: String,
        /// Secret name.
        name: String,
        /// The missing key.
        key: String,
        /// The keys the Secret has (names only, never values), to spot a typo.
        present: Vec<String>,
    },
    /// A key holds something that cannot be a credential (not UTF-8, or surrounded by whitespace only).
    #[error("credentials secret {namespace}/{name} key {key:?} is not valid text")]
    SecretKeyMalformed {
        /// Namespace.
        namespace: String,
        /// Secret name.
        name: String,
        /// The key.
        key: String,
    },
    /// `spec.caBundle` is not base64.
    #[error("spec.caBundle is not valid base64: {0}")]
    CaBundle(String),
    /// Reading the Secret failed.
    #[error(
        "cannot read credentials secret {namespace}/{name}: {}",
        crate::controller::kube_message::kube_message(source)
    )]
    SecretRead {
        /// Namespace.
        namespace: String,
        /// Secret name.
        name: String,
        /// The cause.
        source: kube::Error,
    },
    /// The NCP call failed.
    #[error(transparent)]
    Ncp(#[from] NcpError),
}

impl IssuerError {
    /// The condition / event reason.
    #[must_use]
    pub fn reason(&self) -> Reason {
        match self {
            Self::SecretNotFound { .. } => Reason::CredentialsNotFound,
            Self::SecretKeyMissing { .. } | Self::SecretKeyMalformed { .. } => {
                Reason::CredentialsInvalid
            }
            Self::CaBundle(_)
            | Self::Ncp(NcpError::InvalidRequest { .. } | NcpError::Redirected { .. }) => {
                Reason::InvalidSpec
            }
            Self::SecretRead { .. } => Reason::CredentialsUnreadable,
            Self::Ncp(e) if e.is_auth_failure() => Reason::AuthenticationFailed,
            Self::Ncp(e) if e.is_ca_not_found() => Reason::CANotFound,
            Self::Ncp(
                NcpError::Connect { .. } | NcpError::Timeout { .. } | NcpError::Transport { .. },
            ) => Reason::EndpointUnreachable,
            Self::Ncp(_) => Reason::NcpError,
        }
    }

    /// Whether a retry soon may help (otherwise the issuer waits for a change or the periodic check).
    #[must_use]
    pub fn is_transient(&self) -> bool {
        match self {
            Self::SecretRead { .. } => true,
            Self::Ncp(e) => e.is_retryable(),
            _ => false,
        }
    }
}

/// What an issuer's credentials Secret holds, and which version of it was read.
#[derive(Debug, Clone)]
pub struct SecretCredentials {
    /// The access key and secret key (`Debug` redacts the secret key).
    pub credentials: Credentials,
    /// The Secret's `metadata.resourceVersion`.
    pub resource_version: Option<String>,
}

/// Reads the access key and secret key from the issuer's credentials Secret, in `namespace` only (one
/// GET; only the issuer's health check calls this, never a request).
///
/// # Errors
/// When the Secret or a key is missing or unusable.
pub async fn read_credentials(
    client: &kube::Client,
    namespace: &str,
    spec: &IssuerSpec,
) -> Result<SecretCredentials, IssuerError> {
    let secret_ref = &spec.credentials.secret_ref;
    let name = secret_ref.name.clone();
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = api
        .get_opt(&name)
        .await
        .map_err(|source| IssuerError::SecretRead {
            namespace: namespace.to_string(),
            name: name.clone(),
            source,
        })?
        .ok_or_else(|| IssuerError::SecretNotFound {
            namespace: namespace.to_string(),
            name: name.clone(),
        })?;
    let value = |key: &str| -> Result<String, IssuerError> {
        let bytes = secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|b| b.0.clone())
            .or_else(|| {
                secret
                    .string_data
                    .as_ref()
                    .and_then(|d| d.get(key))
                    .map(|s| s.clone().into_bytes())
            })
            .filter(|b| !b.is_empty())
            .ok_or_else(|| IssuerError::SecretKeyMissing {
                namespace: namespace.to_string(),
                name: name.clone(),
                key: key.to_string(),
                present: key_names(&secret),
            })?;
        let text = String::from_utf8(bytes).map_err(|_| IssuerError::SecretKeyMalformed {
            namespace: namespace.to_string(),
            name: name.clone(),
            key: key.to_string(),
        })?;
        // Tolerate a trailing newline from `echo … | kubectl create secret`; refuse blank values.
        let trimmed = text.trim().to_string();
        if trimmed.is_empty() || trimmed.contains(char::is_whitespace) {
            return Err(IssuerError::SecretKeyMalformed {
                namespace: namespace.to_string(),
                name: name.clone(),
                key: key.to_string(),
            });
        }
        Ok(trimmed)
    };
    Ok(SecretCredentials {
        credentials: Credentials::new(
            value(secret_ref.access_key_key())?,
            value(secret_ref.secret_key_key())?,
        ),
        resource_version: secret.metadata.resource_version.clone(),
    })
}

/// The key names of `secret` (`data` and `stringData`), sorted, without duplicates.
fn key_names(secret: &Secret) -> Vec<String> {
    let mut names: Vec<String> = secret
        .data
        .iter()
        .flat_map(|d| d.keys().cloned())
        .chain(secret.string_data.iter().flat_map(|d| d.keys().cloned()))
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// `a, b` or `none`.
fn list_keys(keys: &[String]) -> String {
    if keys.is_empty() {
        "none".to_string()
    } else {
        keys.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    #[test]
    fn a_missing_key_names_the_keys_the_secret_has_and_no_value() {
        let secret = Secret {
            data: Some(
                [
                    ("acess_key".to_string(), ByteString(b"AK".to_vec())),
                    ("secret_key".to_string(), ByteString(b"top-secret".to_vec())),
                ]
                .into(),
            ),
            ..Secret::default()
        };
        let err = IssuerError::SecretKeyMissing {
            namespace: "ns".into(),
            name: "creds".into(),
            key: "access_key".into(),
            present: key_names(&secret),
        };
        let text = err.to_string();
        assert_eq!(
            text,
            "credentials secret ns/creds has no non-empty key \"access_key\" (its keys: acess_key, secret_key)"
        );
        assert!(!text.contains("top-secret"));
        assert_eq!(list_keys(&key_names(&Secret::default())), "none");
    }
}
