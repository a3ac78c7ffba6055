//! Why a CSR's reconcile could not finish.

/// Why a reconcile could not finish, named after the Kubernetes call that failed; retried by the error
/// policy.
#[derive(Debug, thiserror::Error)]
pub enum CsrError {
    /// Reading the CSR fresh failed.
    #[error("read CertificateSigningRequest {csr}: {source}")]
    ReadCsr {
        /// Its name.
        csr: String,
        /// The cause.
        source: kube::Error,
    },
    /// Writing the status (or the CA annotation that goes with it) failed.
    #[error("write status of CertificateSigningRequest {csr}: {source}")]
    WriteStatus {
        /// Its name.
        csr: String,
        /// The cause.
        source: kube::Error,
    },
    /// Writing the start marker before signing failed.
    #[error("write signing marker on CertificateSigningRequest {csr}: {source}")]
    WriteMarker {
        /// Its name.
        csr: String,
        /// The cause.
        source: kube::Error,
    },
    /// Recording the serial after signing failed.
    #[error("record serial on CertificateSigningRequest {csr}: {source}")]
    RecordSerial {
        /// Its name.
        csr: String,
        /// The cause.
        source: kube::Error,
    },
    /// Clearing the start marker failed.
    #[error("clear signing marker on CertificateSigningRequest {csr}: {source}")]
    ClearMarker {
        /// Its name.
        csr: String,
        /// The cause.
        source: kube::Error,
    },
}

impl CsrError {
    fn source_error(&self) -> &kube::Error {
        match self {
            Self::ReadCsr { source, .. }
            | Self::WriteStatus { source, .. }
            | Self::WriteMarker { source, .. }
            | Self::RecordSerial { source, .. }
            | Self::ClearMarker { source, .. } => source,
        }
    }

    /// Whether the write lost to a concurrent change (HTTP 409).
    #[must_use]
    pub fn is_conflict(&self) -> bool {
        matches!(self.source_error(), kube::Error::Api(s) if s.code == 409)
    }

    /// Whether retrying can help: every Kubernetes failure here is retried with backoff, except a
    /// refusal that no retry changes (the CSR is gone, or the request is invalid).
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        !matches!(self.source_error(), kube::Error::Api(s) if s.code == 404 || s.code == 422)
    }
}
