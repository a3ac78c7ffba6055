//! Errors of the X.509 helpers.

/// An X.509 operation failed. Every variant comes from bad input or an unsupported algorithm; none is a
/// programming error, so callers map them to their own answers (an NCP error message, a condition).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PkiError {
    /// The text holds no usable PEM block of the expected kind.
    #[error("invalid pem: {0}")]
    Pem(String),
    /// A certificate could not be parsed.
    #[error("cannot parse certificate: {0}")]
    Certificate(String),
    /// A certificate signing request could not be parsed.
    #[error("cannot parse certificate signing request: {0}")]
    Csr(String),
    /// A certificate signing request is not signed by the key it carries.
    #[error("certificate signing request signature is invalid")]
    CsrSignature,
    /// A certificate revocation list could not be parsed.
    #[error("cannot parse certificate revocation list: {0}")]
    Crl(String),
    /// A private key could not be parsed.
    #[error("cannot parse private key: {0}")]
    PrivateKey(String),
    /// The public key algorithm or size is not supported.
    #[error("unsupported public key: {0}")]
    UnsupportedKey(String),
    /// A subject alternative name of a kind we do not carry over (other name, directory name, ...).
    #[error("unsupported subject alternative name: {0}")]
    UnsupportedSan(String),
    /// A distinguished name could not be read or encoded.
    #[error("invalid distinguished name: {0}")]
    Name(String),
    /// A serial number is malformed.
    #[error("invalid serial number: {0}")]
    Serial(String),
    /// The private key is not the one certified by the certificate.
    #[error("private key does not match the certificate's public key")]
    KeyMismatch,
    /// Key generation failed.
    #[error("cannot generate key: {0}")]
    KeyGeneration(String),
    /// Building or signing a certificate, CSR or CRL failed.
    #[error("cannot sign: {0}")]
    Signing(String),
    /// A signature does not verify (or its algorithm is unsupported).
    #[error("signature verification failed: {0}")]
    Signature(String),
    /// A validity window is empty or out of range.
    #[error("invalid validity: {0}")]
    Validity(String),
}

/// A certificate chain did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// A certificate of the chain is expired at the verification time.
    #[error("certificate {subject} expired at {not_after}")]
    Expired {
        /// Subject of the certificate.
        subject: String,
        /// Its notAfter (RFC 3339).
        not_after: String,
    },
    /// A certificate of the chain is not yet valid at the verification time.
    #[error("certificate {subject} is not valid before {not_before}")]
    NotYetValid {
        /// Subject of the certificate.
        subject: String,
        /// Its notBefore (RFC 3339).
        not_before: String,
    },
    /// No certificate among the intermediates and roots issued this one.
    #[error("no issuer found for certificate {subject} (issuer {issuer})")]
    IssuerNotFound {
        /// Subject of the certificate whose issuer is missing.
        subject: String,
        /// The issuer name it asks for.
        issuer: String,
    },
    /// A certificate with the right name did not sign this one.
    #[error("signature of certificate {subject} does not verify with the key of {issuer}")]
    BadSignature {
        /// Subject of the certificate.
        subject: String,
        /// Subject of the candidate issuer.
        issuer: String,
    },
    /// An issuer in the chain is not a CA (no basicConstraints cA, or no keyCertSign).
    #[error("issuer {subject} is not a certificate authority")]
    NotCa {
        /// Subject of the offending issuer.
        subject: String,
    },
    /// The chain is longer than the limit or loops.
    #[error("certificate chain is longer than {max} certificates")]
    TooLong {
        /// The limit.
        max: usize,
    },
}
