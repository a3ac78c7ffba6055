//! Certificate revocation lists: building (signed by a CA) and reading.

use super::cert::Signer;
use super::error::PkiError;
use super::name::Name;
use super::serial::Serial;
use super::{pem, signature};
use rcgen::{CertificateRevocationListParams, RevokedCertParams, SerialNumber};
use time::OffsetDateTime;
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;

/// PEM label of a CRL.
pub const CRL_LABEL: &str = "X509 CRL";

/// One revoked certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedCert {
    /// Its serial.
    pub serial: Serial,
    /// When it was revoked.
    pub revoked_at: OffsetDateTime,
}

/// A CRL, DER and PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crl {
    /// DER.
    pub der: Vec<u8>,
    /// PEM (`X509 CRL`).
    pub pem: String,
}

/// Builds a CRL signed by `signer` listing `revoked`; `number` is the CRL number extension.
pub fn build_crl(
    signer: &Signer,
    number: u64,
    this_update: OffsetDateTime,
    next_update: OffsetDateTime,
    revoked: &[RevokedCert],
) -> Result<Crl, PkiError> {
    let params = CertificateRevocationListParams {
        this_update: this_update.replace_nanosecond(0).unwrap_or(this_update),
        next_update: next_update.replace_nanosecond(0).unwrap_or(next_update),
        crl_number: SerialNumber::from(number),
        issuing_distribution_point: None,
        revoked_certs: revoked
            .iter()
            .map(|r| RevokedCertParams {
                serial_number: SerialNumber::from_slice(r.serial.as_bytes()),
                revocation_time: r.revoked_at.replace_nanosecond(0).unwrap_or(r.revoked_at),
                reason_code: None,
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: signer.key_id_method(),
    };
    let crl = params
        .signed_by(&signer.rcgen_issuer()?)
        .map_err(|e| PkiError::Signing(e.to_string()))?;
    let der = crl.der().to_vec();
    Ok(Crl {
        pem: pem::encode(CRL_LABEL, &der),
        der,
    })
}

/// What we read from a CRL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlInfo {
    /// The issuer.
    pub issuer: Name,
    /// thisUpdate.
    pub this_update: OffsetDateTime,
    /// nextUpdate, when present.
    pub next_update: Option<OffsetDateTime>,
    /// The revoked certificates.
    pub revoked: Vec<RevokedCert>,
    /// The DER encoding.
    pub der: Vec<u8>,
}

impl CrlInfo {
    /// Parses a DER CRL.
    pub fn from_der(der: &[u8]) -> Result<Self, PkiError> {
        let (rest, crl) =
            CertificateRevocationList::from_der(der).map_err(|e| PkiError::Crl(e.to_string()))?;
        if !rest.is_empty() {
            return Err(PkiError::Crl("trailing bytes after CRL".into()));
        }
        let revoked = crl
            .iter_revoked_certificates()
            .map(|r| {
                Ok(RevokedCert {
                    serial: Serial::from_bytes(r.raw_serial())?,
                    revoked_at: r.revocation_date.to_datetime(),
                })
            })
            .collect::<Result<_, PkiError>>()?;
        Ok(Self {
            issuer: Name::from_x509(crl.issuer())?,
            this_update: crl.last_update().to_datetime(),
            next_update: crl.next_update().map(|t| t.to_datetime()),
            revoked,
            der: der.to_vec(),
        })
    }

    /// Parses a PEM CRL.
    pub fn from_pem(text: &str) -> Result<Self, PkiError> {
        Self::from_der(&pem::decode_one(text, &[CRL_LABEL])?)
    }

    /// Whether `serial` is listed.
    #[must_use]
    pub fn is_revoked(&self, serial: &Serial) -> bool {
        self.revoked.iter().any(|r| &r.serial == serial)
    }

    /// Verifies the CRL's signature with the issuer's public key.
    pub fn verify_signed_by(&self, issuer_spki_der: &[u8]) -> Result<(), PkiError> {
        signature::verify_signed_by(&self.der, issuer_spki_der)
    }
}
