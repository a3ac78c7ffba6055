//! Why a request's reconcile could not finish.

use crate::controller::kube_message::kube_message;

/// Why a reconcile could not finish, named after the Kubernetes call that failed; retried by the error
/// policy.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// Reading the request fresh failed.
    #[error("read CertificateRequest {request}: {}", kube_message(source))]
    ReadRequest {
        /// `namespace/name`.
        request: String,
        /// The cause.
        source: kube::Error,
    },
    /// Writing the status failed.
    #[error(
        "write status of CertificateRequest {request}: {}",
        kube_message(source)
    )]
    WriteStatus {
        /// `namespace/name`.
        request: String,
        /// The cause.
        source: kube::Error,
    },
    /// Writing the start marker (and finalizer) before signing failed.
    #[error(
        "write signing marker on CertificateRequest {request}: {}",
        kube_message(source)
    )]
    WriteMarker {
        /// `namespace/name`.
        request: String,
        /// The cause.
        source: kube::Error,
    },
    /// Recording the serial after signing failed.
    #[error(
        "record serial on CertificateRequest {request}: {}",
        kube_message(source)
    )]
    RecordSerial {
        /// `namespace/name`.
        request: String,
        /// The cause.
        source: kube::Error,
    },
    /// Clearing the start marker failed.
    #[error(
        "clear signing marker on CertificateRequest {request}: {}",
        kube_message(source)
    )]
    ClearMarker {
        /// `namespace/name`.
        request: String,
        /// The cause.
        source: kube::Error,
    },
    /// Releasing the revocation finalizer failed.
    #[error(
        "release finalizer of CertificateRequest {request}: {}",
        kube_message(source)
    )]
    ReleaseFinalizer {
        /// `namespace/name`.
        request: String,
        /// The cause.
        source: kube::Error,
    },
}

impl RequestError {
    fn source_error(&self) -> &kube::Error {
        match self {
            Self::ReadRequest { source, .. }
            | Self::WriteStatus { source, .. }
            | Self::WriteMarker { source, .. }
            | Self::RecordSerial { source, .. }
            | Self::ClearMarker { source, .. }
            | Self::ReleaseFinalizer { source, .. } => source,
        }
    }

    /// Whether the write lost to a concurrent change (HTTP 409: a resourceVersion precondition).
    #[must_use]
    pub fn is_conflict(&self) -> bool {
        matches!(self.source_error(), kube::Error::Api(s) if s.code == 409)
    }
}
