//! Parsing certificates, and building CA and leaf certificates with rcgen.

use super::error::PkiError;
use super::key::{KeyAlgorithm, PrivateKey, PublicKeyInfo};
use super::name::{Name, San};
use super::serial::Serial;
use super::usage::Usages;
use super::{der, pem, signature};
use rcgen::{
    BasicConstraints, CertificateParams, CrlDistributionPoint, CustomExtension,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, SerialNumber,
};
use time::OffsetDateTime;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::{FromDer, X509Certificate};

/// PEM labels accepted for certificates.
pub const CERTIFICATE_LABELS: &[&str] = &["CERTIFICATE", "X509 CERTIFICATE", "TRUSTED CERTIFICATE"];

/// What we read from a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// The DER encoding.
    pub der: Vec<u8>,
    /// Serial number.
    pub serial: Serial,
    /// Subject.
    pub subject: Name,
    /// Issuer.
    pub issuer: Name,
    pub(crate) subject_raw: Vec<u8>,
    pub(crate) issuer_raw: Vec<u8>,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// The certified public key.
    pub public_key: PublicKeyInfo,
    /// basicConstraints cA.
    pub is_ca: bool,
    /// keyUsage keyCertSign, when the extension is present.
    pub key_cert_sign: Option<bool>,
    /// Subject alternative names of the kinds [`San`] models (others are not listed).
    pub sans: Vec<San>,
    /// Signature algorithm, e.g. `SHA256WithRSA`, `SHA256WithECDSA`.
    pub signature_algorithm: String,
    /// subjectKeyIdentifier, when present.
    pub subject_key_id: Option<Vec<u8>>,
}

impl CertInfo {
    /// Parses a DER certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, PkiError> {
        let (rest, cert) =
            X509Certificate::from_der(der).map_err(|e| PkiError::Certificate(e.to_string()))?;
        if !rest.is_empty() {
            return Err(PkiError::Certificate(
                "trailing bytes after certificate".into(),
            ));
        }
        let serial = Serial::from_bytes(cert.raw_serial())?;
        let subject = Name::from_x509(cert.subject())?;
        let issuer = Name::from_x509(cert.issuer())?;
        let public_key = PublicKeyInfo::from_x509(cert.public_key())?;
        let mut is_ca = false;
        let mut key_cert_sign = None;
        let mut sans = Vec::new();
        let mut subject_key_id = None;
        for ext in cert.extensions() {
            match ext.parsed_extension() {
                ParsedExtension::BasicConstraints(bc) => is_ca = bc.ca,
                ParsedExtension::KeyUsage(ku) => key_cert_sign = Some(ku.key_cert_sign()),
                ParsedExtension::SubjectKeyIdentifier(id) => subject_key_id = Some(id.0.to_vec()),
                ParsedExtension::SubjectAlternativeName(san) => {
                    sans.extend(
                        san.general_names
                            .iter()
                            .filter_map(|g| San::from_x509(g).ok()),
                    );
                }
                _ => {}
            }
        }
        Ok(Self {
            der: der.to_vec(),
            serial,
            subject_raw: cert.subject().as_raw().to_vec(),
            issuer_raw: cert.issuer().as_raw().to_vec(),
            subject,
            issuer,
            not_before: cert.validity().not_before.to_datetime(),
            not_after: cert.validity().not_after.to_datetime(),
            public_key,
            is_ca,
            key_cert_sign,
            sans,
            signature_algorithm: signature_algorithm_name(
                &cert.signature_algorithm.algorithm.to_id_string(),
            ),
            subject_key_id,
        })
    }

    /// Parses exactly one PEM certificate.
    pub fn from_pem(text: &str) -> Result<Self, PkiError> {
        Self::from_der(&pem::decode_one(text, CERTIFICATE_LABELS)?)
    }

    /// The PEM form.
    #[must_use]
    pub fn to_pem(&self) -> String {
        pem::encode("CERTIFICATE", &self.der)
    }

    /// Whether subject and issuer are the same name.
    #[must_use]
    pub fn is_self_issued(&self) -> bool {
        self.subject_raw == self.issuer_raw || self.subject == self.issuer
    }

    /// Whether the certificate is self-issued and its signature verifies with its own key.
    #[must_use]
    pub fn is_self_signed(&self) -> bool {
        self.is_self_issued()
            && signature::verify_signed_by(&self.der, self.public_key.spki_der()).is_ok()
    }
}

/// Parses every `CERTIFICATE` block of `text` (possibly none), in order.
pub fn parse_certificates_pem(text: &str) -> Result<Vec<CertInfo>, PkiError> {
    pem::decode_labeled(text, CERTIFICATE_LABELS)?
        .iter()
        .map(|der| CertInfo::from_der(der))
        .collect()
}

/// NCP-style names of signature algorithms; other algorithms show as their OID.
#[must_use]
pub fn signature_algorithm_name(oid: &str) -> String {
    match oid {
        "1.2.840.113549.1.1.5" => "SHA1WithRSA",
        "1.2.840.113549.1.1.11" => "SHA256WithRSA",
        "1.2.840.113549.1.1.12" => "SHA384WithRSA",
        "1.2.840.113549.1.1.13" => "SHA512WithRSA",
        "1.2.840.113549.1.1.10" => "RSASSA-PSS",
        "1.2.840.10045.4.3.2" => "SHA256WithECDSA",
        "1.2.840.10045.4.3.3" => "SHA384WithECDSA",
        "1.2.840.10045.4.3.4" => "SHA512WithECDSA",
        other => other,
    }
    .to_string()
}

/// A validity window, whole seconds (what X.509 can encode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// Start.
    pub not_before: OffsetDateTime,
    /// End.
    pub not_after: OffsetDateTime,
}

impl Validity {
    /// A window; sub-second parts are dropped, and the end must be after the start.
    pub fn new(not_before: OffsetDateTime, not_after: OffsetDateTime) -> Result<Self, PkiError> {
        let not_before = not_before.replace_nanosecond(0).unwrap_or(not_before);
        let not_after = not_after.replace_nanosecond(0).unwrap_or(not_after);
        if not_after <= not_before {
            return Err(PkiError::Validity(format!(
                "notAfter {not_after} is not after notBefore {not_before}"
            )));
        }
        Ok(Self {
            not_before,
            not_after,
        })
    }
}

/// URLs written into issued certificates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertUrls {
    /// CRL distribution point.
    pub crl: Option<String>,
    /// OCSP responder (Authority Information Access).
    pub ocsp: Option<String>,
    /// Where the issuer's certificate can be fetched (Authority Information Access).
    pub ca_issuers: Option<String>,
}

/// Serial, validity and URLs of a certificate to issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueOptions {
    /// Serial number.
    pub serial: Serial,
    /// Validity.
    pub validity: Validity,
    /// URLs to embed.
    pub urls: CertUrls,
    /// keyUsage and extendedKeyUsage of a leaf; `None`: NCP's profile (see [`sign_leaf`]).
    pub usages: Option<Usages>,
}

impl IssueOptions {
    /// A random serial, the given validity, no URLs.
    #[must_use]
    pub fn new(validity: Validity) -> Self {
        Self {
            serial: Serial::random(),
            validity,
            urls: CertUrls::default(),
            usages: None,
        }
    }
}

/// A CA key with its certificate: what signs certificates and CRLs.
#[derive(Debug)]
pub struct Signer {
    key: PrivateKey,
    cert: CertInfo,
}

impl Signer {
    /// Pairs a key with its certificate; fails when the certificate is for another key.
    pub fn new(key: PrivateKey, cert: CertInfo) -> Result<Self, PkiError> {
        if !key.public_key()?.same_key_as(&cert.public_key) {
            return Err(PkiError::KeyMismatch);
        }
        Ok(Self { key, cert })
    }

    /// Reads the key and certificate from PEM.
    pub fn from_pem(key_pem: &str, cert_pem: &str) -> Result<Self, PkiError> {
        Self::new(
            PrivateKey::from_pem(key_pem)?,
            CertInfo::from_pem(cert_pem)?,
        )
    }

    /// The CA certificate.
    #[must_use]
    pub fn certificate(&self) -> &CertInfo {
        &self.cert
    }

    /// The CA key.
    #[must_use]
    pub fn key(&self) -> &PrivateKey {
        &self.key
    }

    pub(crate) fn key_id_method(&self) -> KeyIdMethod {
        match &self.cert.subject_key_id {
            Some(id) => KeyIdMethod::PreSpecified(id.clone()),
            None => KeyIdMethod::Sha256,
        }
    }

    pub(crate) fn rcgen_issuer(&self) -> Result<Issuer<'static, &KeyPair>, PkiError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = self.cert.subject.to_rcgen()?;
        params.key_identifier_method = self.key_id_method();
        // Empty: rcgen then does not second-guess the CA's key usage (an external CA may omit it).
        params.key_usages = Vec::new();
        Ok(Issuer::new(params, self.key.pair()))
    }
}

fn base_params(subject: &Name, opts: &IssueOptions) -> Result<CertificateParams, PkiError> {
    let mut p = CertificateParams::default();
    p.distinguished_name = subject.to_rcgen()?;
    p.serial_number = Some(SerialNumber::from_slice(opts.serial.as_bytes()));
    p.not_before = opts.validity.not_before;
    p.not_after = opts.validity.not_after;
    if let Some(url) = &opts.urls.crl {
        p.crl_distribution_points = vec![CrlDistributionPoint {
            uris: vec![url.clone()],
        }];
    }
    if opts.urls.ocsp.is_some() || opts.urls.ca_issuers.is_some() {
        p.custom_extensions.push(CustomExtension::from_oid_content(
            &der::aia_oid(),
            der::authority_info_access(opts.urls.ocsp.as_deref(), opts.urls.ca_issuers.as_deref())?,
        ));
    }
    Ok(p)
}

fn ca_params(subject: &Name, opts: &IssueOptions) -> Result<CertificateParams, PkiError> {
    let mut p = base_params(subject, opts)?;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(p)
}

fn finish(cert: Result<rcgen::Certificate, rcgen::Error>) -> Result<CertInfo, PkiError> {
    let cert = cert.map_err(|e| PkiError::Signing(e.to_string()))?;
    CertInfo::from_der(cert.der())
}

/// A self-signed root CA certificate.
pub fn self_signed_ca(
    subject: &Name,
    key: &PrivateKey,
    opts: &IssueOptions,
) -> Result<CertInfo, PkiError> {
    let params = ca_params(subject, opts)?;
    finish(params.self_signed(key.pair()))
}

/// An intermediate CA certificate for `public_key`, signed by `signer`.
pub fn sign_ca(
    signer: &Signer,
    subject: &Name,
    public_key: &PublicKeyInfo,
    opts: &IssueOptions,
) -> Result<CertInfo, PkiError> {
    let mut params = ca_params(subject, opts)?;
    params.use_authority_key_identifier_extension = true;
    finish(params.signed_by(public_key, &signer.rcgen_issuer()?))
}

/// An end-entity certificate for `public_key`, signed by `signer`, basicConstraints cA=false. Usages are
/// `opts.usages` when given, else NCP's profile: keyUsage digitalSignature (plus keyEncipherment for RSA
/// keys), extendedKeyUsage serverAuth + clientAuth.
pub fn sign_leaf(
    signer: &Signer,
    subject: &Name,
    sans: &[San],
    public_key: &PublicKeyInfo,
    opts: &IssueOptions,
) -> Result<CertInfo, PkiError> {
    let mut params = base_params(subject, opts)?;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    if matches!(public_key.algorithm(), KeyAlgorithm::Rsa { .. }) {
        params.key_usages.push(KeyUsagePurpose::KeyEncipherment);
    }
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    if let Some(usages) = &opts.usages {
        params.key_usages.clone_from(&usages.key);
        params.extended_key_usages.clone_from(&usages.extended);
    }
    params.subject_alt_names = sans.iter().map(San::to_rcgen).collect::<Result<_, _>>()?;
    params.use_authority_key_identifier_extension = true;
    finish(params.signed_by(public_key, &signer.rcgen_issuer()?))
}
