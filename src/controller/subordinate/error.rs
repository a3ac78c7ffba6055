//! Why subordinate mode has no usable intermediate: provisioning ([`SubordinateError`], with NCP's
//! unusable answers as [`AnswerError`]) and loading one for signing ([`SignerError`]). Messages never
//! include key material.

use super::decide::{SecretProblem, SpecError, Why};
use crate::api::annotations::ANNOTATION_OWNER;
use crate::controller::IssuerError;
use crate::controller::period::DurationError;
use crate::pki::{AssembleError, PkiError};
use crate::reason::Reason;

/// Why the intermediate could not be provisioned or read.
#[derive(Debug, thiserror::Error)]
pub enum SubordinateError {
    /// spec.subordinate cannot be used.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// No NCP period fits the intermediate's life (the CA expires within a day).
    #[error(transparent)]
    Period(DurationError),
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
    Generate(PkiError),
    /// Credentials or NCP.
    #[error(transparent)]
    Issuer(#[from] IssuerError),
    /// NCP answered with a certificate that cannot be used.
    #[error("ncp signed an intermediate that cannot be used: {0}")]
    Answer(#[from] AnswerError),
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
            Self::Spec(_) | Self::Period(_) => Reason::InvalidSpec,
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

/// The error of a failed read or write of the Secret `namespace/name`.
pub(super) fn secret_err(
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

/// Why NCP's answer to Sign Sub Csr cannot be stored.
#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    /// The answer's certificate is not a CA.
    #[error("NCP's answer holds no CA certificate")]
    NotCa,
    /// The certificate is not for the key, or its chain does not verify.
    #[error("{0}")]
    Assemble(AssembleError),
    /// The intermediate as it would be stored does not pass the Secret's own check.
    #[error("{0}")]
    Unusable(SecretProblem),
    /// The intermediate would be replaced as soon as stored.
    #[error("it would be replaced at once ({0})")]
    WouldBeReplaced(Why),
}

/// Why a subordinate issuer's intermediate cannot be loaded for signing (the request then waits).
#[derive(Debug, thiserror::Error)]
pub enum SignerError {
    /// Reading the Secret failed.
    #[error(
        "cannot read secret {namespace}/{name}: {}",
        crate::controller::kube_message::kube_message(source)
    )]
    ReadSecret {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// The cause.
        source: kube::Error,
    },
    /// The Secret does not exist (not provisioned yet).
    #[error("secret {namespace}/{name} does not exist yet")]
    Missing {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// The Secret does not carry the issuer's owner annotation.
    #[error("secret {namespace}/{name} was not created by this issuer")]
    NotOurs {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// The Secret holds no usable intermediate.
    #[error("secret {namespace}/{name}: {problem}")]
    Unusable {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// What is wrong with it.
        problem: SecretProblem,
    },
    /// The intermediate does not chain to the root the issuer checked against NCP.
    #[error(
        "the intermediate in secret {namespace}/{name} does not chain to the root this issuer checked against NCP"
    )]
    Unverified {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
}
