//! Certificate signing requests: parsing with signature verification, creation, and signing.

use super::cert::{self, CertInfo, IssueOptions, Signer};
use super::error::PkiError;
use super::key::{PrivateKey, PublicKeyInfo};
use super::name::{Name, San};
use super::{pem, signature};
use rcgen::{BasicConstraints, CertificateParams, IsCa};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::FromDer;

/// PEM labels accepted for CSRs.
pub const CSR_LABELS: &[&str] = &["CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"];

/// A parsed CSR whose signature has been verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Csr {
    der: Vec<u8>,
    subject: Name,
    sans: Vec<San>,
    public_key: PublicKeyInfo,
    requests_ca: bool,
}

impl Csr {
    /// Parses a PEM CSR and verifies its self-signature. Subject alternative names of kinds other
    /// than DNS, IP, URI and e-mail are an error ([`PkiError::UnsupportedSan`]): they could not be
    /// carried into the certificate. Other requested extensions are ignored.
    pub fn from_pem(text: &str) -> Result<Self, PkiError> {
        Self::from_der(&pem::decode_one(text, CSR_LABELS)?)
    }

    /// Parses a DER CSR and verifies its self-signature.
    pub fn from_der(der: &[u8]) -> Result<Self, PkiError> {
        let (rest, csr) =
            X509CertificationRequest::from_der(der).map_err(|e| PkiError::Csr(e.to_string()))?;
        if !rest.is_empty() {
            return Err(PkiError::Csr("trailing bytes after request".into()));
        }
        let info = &csr.certification_request_info;
        let public_key = PublicKeyInfo::from_x509(&info.subject_pki)?;
        signature::verify_signed_by(der, public_key.spki_der())
            .map_err(|_| PkiError::CsrSignature)?;
        let subject = Name::from_x509(&info.subject)?;
        let mut sans = Vec::new();
        let mut requests_ca = false;
        if let Some(exts) = csr.requested_extensions() {
            for ext in exts {
                match ext {
                    ParsedExtension::SubjectAlternativeName(san) => {
                        for g in &san.general_names {
                            sans.push(San::from_x509(g)?);
                        }
                    }
                    ParsedExtension::BasicConstraints(bc) => requests_ca = bc.ca,
                    _ => {}
                }
            }
        }
        Ok(Self {
            der: der.to_vec(),
            subject,
            sans,
            public_key,
            requests_ca,
        })
    }

    /// The DER encoding.
    #[must_use]
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The PEM form.
    #[must_use]
    pub fn to_pem(&self) -> String {
        pem::encode("CERTIFICATE REQUEST", &self.der)
    }

    /// The requested subject.
    #[must_use]
    pub fn subject(&self) -> &Name {
        &self.subject
    }

    /// The requested subject alternative names.
    #[must_use]
    pub fn sans(&self) -> &[San] {
        &self.sans
    }

    /// The public key to certify.
    #[must_use]
    pub fn public_key(&self) -> &PublicKeyInfo {
        &self.public_key
    }

    /// Whether the CSR asks for basicConstraints cA=true.
    #[must_use]
    pub fn requests_ca(&self) -> bool {
        self.requests_ca
    }

    /// Signs the request as an end-entity certificate, keeping its subject and SANs.
    pub fn sign_leaf(&self, signer: &Signer, opts: &IssueOptions) -> Result<CertInfo, PkiError> {
        cert::sign_leaf(signer, &self.subject, &self.sans, &self.public_key, opts)
    }

    /// Signs the request as an intermediate CA certificate, keeping its subject.
    pub fn sign_ca(&self, signer: &Signer, opts: &IssueOptions) -> Result<CertInfo, PkiError> {
        cert::sign_ca(signer, &self.subject, &self.public_key, opts)
    }
}

/// Creates a PEM CSR for `key`. With `ca`, the request asks for basicConstraints cA=true.
pub fn create_csr(
    subject: &Name,
    sans: &[San],
    key: &PrivateKey,
    ca: bool,
) -> Result<String, PkiError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = subject.to_rcgen()?;
    params.subject_alt_names = sans.iter().map(San::to_rcgen).collect::<Result<_, _>>()?;
    if ca {
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    }
    let csr = params
        .serialize_request(key.pair())
        .map_err(|e| PkiError::Signing(e.to_string()))?;
    Ok(pem::encode("CERTIFICATE REQUEST", csr.der()))
}
