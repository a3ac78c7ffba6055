//! X.509 helpers: keys of the four NCP key types, CSR parsing with signature verification, CA and
//! leaf certificate building, certificate parsing, chain verification and CRLs.
//!
//! Used by the emulator (NCP's side) and by the operator (CSR checks, chain assembly, local signing
//! in subordinate mode). Every function returns a typed error on bad input; none panics.

mod cert;
mod chain;
mod crl;
mod csr;
mod der;
pub(crate) mod error;
mod key;
mod name;
pub mod pem;
mod serial;
mod signature;
mod usage;
mod verify;

pub use cert::{
    CERTIFICATE_LABELS, CertInfo, CertUrls, IssueOptions, Signer, Validity, parse_certificates_pem,
    self_signed_ca, sign_ca, sign_leaf, signature_algorithm_name,
};
pub use chain::{AssembleError, Issued, assemble, assemble_with_skew, missing_usages};
pub use crl::{CRL_LABEL, Crl, CrlInfo, RevokedCert, build_crl};
pub use csr::{CSR_LABELS, Csr, create_csr};
pub use error::{ChainError, PkiError};
pub use key::{EcCurve, KeyAlgorithm, PrivateKey, PublicKeyInfo};
pub use name::{Name, NameAttr, NameEntry, San, StringEncoding};
pub use serial::Serial;
pub use signature::verify_signed_by;
pub use usage::{UnknownUsage, Usages};
pub use verify::{MAX_CHAIN_LEN, verify_chain, verify_chain_with_skew};

#[cfg(test)]
mod tests;
