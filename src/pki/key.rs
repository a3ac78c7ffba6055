//! Key pairs of the four NCP key types, and public keys of any RSA / NIST-curve size.

use super::error::PkiError;
use super::pem;
use crate::ncp::types::KeyType;
use rcgen::{KeyPair, PublicKeyData, SignatureAlgorithm};
use std::fmt;
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

const OID_RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";
const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";
const OID_P521: &str = "1.3.132.0.35";

/// A NIST elliptic curve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EcCurve {
    /// P-256 (prime256v1).
    P256,
    /// P-384 (secp384r1).
    P384,
    /// P-521 (secp521r1).
    P521,
}

impl EcCurve {
    /// Size of the curve in bits.
    #[must_use]
    pub fn bits(self) -> u32 {
        match self {
            Self::P256 => 256,
            Self::P384 => 384,
            Self::P521 => 521,
        }
    }
}

/// The algorithm and size of a public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyAlgorithm {
    /// RSA with a modulus of `bits` bits.
    Rsa {
        /// Modulus size.
        bits: u32,
    },
    /// ECDSA on a NIST curve.
    Ec(EcCurve),
}

impl KeyAlgorithm {
    /// The NCP key type, when the key is one of the four NCP supports.
    #[must_use]
    pub fn key_type(self) -> Option<KeyType> {
        match self {
            Self::Rsa { bits: 2048 } => Some(KeyType::Rsa2048),
            Self::Rsa { bits: 4096 } => Some(KeyType::Rsa4096),
            Self::Ec(EcCurve::P256) => Some(KeyType::Ec256),
            Self::Ec(EcCurve::P521) => Some(KeyType::Ec521),
            _ => None,
        }
    }

    /// `RSA` or `EC` (the family names NCP shows as `publicKeyAlgorithm`).
    #[must_use]
    pub fn family(self) -> &'static str {
        match self {
            Self::Rsa { .. } => "RSA",
            Self::Ec(_) => "EC",
        }
    }

    /// Key size in bits (RSA modulus, or curve size).
    #[must_use]
    pub fn bits(self) -> u32 {
        match self {
            Self::Rsa { bits } => bits,
            Self::Ec(curve) => curve.bits(),
        }
    }

    /// The algorithm a key of this kind signs with (what rcgen needs to encode the SPKI).
    fn rcgen_algorithm(self) -> &'static SignatureAlgorithm {
        match self {
            Self::Rsa { .. } => &rcgen::PKCS_RSA_SHA256,
            Self::Ec(EcCurve::P256) => &rcgen::PKCS_ECDSA_P256_SHA256,
            Self::Ec(EcCurve::P384) => &rcgen::PKCS_ECDSA_P384_SHA384,
            Self::Ec(EcCurve::P521) => &rcgen::PKCS_ECDSA_P521_SHA512,
        }
    }
}

impl From<KeyType> for KeyAlgorithm {
    fn from(kt: KeyType) -> Self {
        match kt {
            KeyType::Rsa2048 => Self::Rsa { bits: 2048 },
            KeyType::Rsa4096 => Self::Rsa { bits: 4096 },
            KeyType::Ec256 => Self::Ec(EcCurve::P256),
            KeyType::Ec521 => Self::Ec(EcCurve::P521),
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rsa { bits } => write!(f, "RSA {bits}"),
            Self::Ec(curve) => write!(f, "EC P-{}", curve.bits()),
        }
    }
}

/// A public key: its algorithm and its DER SubjectPublicKeyInfo.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PublicKeyInfo {
    algorithm: KeyAlgorithm,
    spki_der: Vec<u8>,
    key_bits: Vec<u8>,
}

impl PublicKeyInfo {
    /// Reads a DER SubjectPublicKeyInfo (RSA, or EC on P-256/P-384/P-521).
    pub fn from_spki_der(der: &[u8]) -> Result<Self, PkiError> {
        let (rest, spki) = SubjectPublicKeyInfo::from_der(der)
            .map_err(|e| PkiError::UnsupportedKey(format!("malformed public key: {e}")))?;
        if !rest.is_empty() {
            return Err(PkiError::UnsupportedKey(
                "trailing bytes after public key".into(),
            ));
        }
        Self::from_x509(&spki)
    }

    pub(crate) fn from_x509(spki: &SubjectPublicKeyInfo<'_>) -> Result<Self, PkiError> {
        let oid = spki.algorithm.algorithm.to_id_string();
        let algorithm = match oid.as_str() {
            OID_RSA_ENCRYPTION => match spki.parsed() {
                Ok(PublicKey::RSA(rsa)) => {
                    let bits = u32::try_from(rsa.key_size())
                        .map_err(|_| PkiError::UnsupportedKey("RSA key too large".into()))?;
                    KeyAlgorithm::Rsa { bits }
                }
                _ => return Err(PkiError::UnsupportedKey("malformed RSA public key".into())),
            },
            OID_EC_PUBLIC_KEY => {
                let curve = spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.as_oid().ok())
                    .map(|o| o.to_id_string())
                    .ok_or_else(|| {
                        PkiError::UnsupportedKey("EC key without a named curve".into())
                    })?;
                match curve.as_str() {
                    OID_P256 => KeyAlgorithm::Ec(EcCurve::P256),
                    OID_P384 => KeyAlgorithm::Ec(EcCurve::P384),
                    OID_P521 => KeyAlgorithm::Ec(EcCurve::P521),
                    other => return Err(PkiError::UnsupportedKey(format!("EC curve {other}"))),
                }
            }
            other => return Err(PkiError::UnsupportedKey(format!("algorithm {other}"))),
        };
        Ok(Self {
            algorithm,
            spki_der: spki.raw.to_vec(),
            key_bits: spki.subject_public_key.data.to_vec(),
        })
    }

    /// The algorithm and size.
    #[must_use]
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    /// The DER SubjectPublicKeyInfo, as found in the CSR or certificate.
    #[must_use]
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// Whether both describe the same key (algorithm and key bits), whatever the SPKI encoding
    /// details (e.g. an RSA AlgorithmIdentifier with or without NULL parameters).
    #[must_use]
    pub fn same_key_as(&self, other: &PublicKeyInfo) -> bool {
        self.algorithm == other.algorithm && self.key_bits == other.key_bits
    }

    /// The PEM `PUBLIC KEY` form.
    #[must_use]
    pub fn to_pem(&self) -> String {
        pem::encode("PUBLIC KEY", &self.spki_der)
    }
}

/// rcgen's view of a public key we did not generate (the subject key of a certificate we sign).
impl PublicKeyData for PublicKeyInfo {
    fn der_bytes(&self) -> &[u8] {
        &self.key_bits
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.algorithm.rcgen_algorithm()
    }
}

/// A private key of one of the four NCP key types. `Debug` never shows the key.
pub struct PrivateKey {
    key_type: KeyType,
    pair: KeyPair,
}

impl PrivateKey {
    /// Generates a new key.
    pub fn generate(key_type: KeyType) -> Result<Self, PkiError> {
        let generated = match key_type {
            KeyType::Rsa2048 => {
                KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
            }
            KeyType::Rsa4096 => {
                KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_4096)
            }
            KeyType::Ec256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
            KeyType::Ec521 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P521_SHA512),
        };
        let pair = generated.map_err(|e| PkiError::KeyGeneration(e.to_string()))?;
        Ok(Self { key_type, pair })
    }

    /// Reads a PEM private key (PKCS#8, PKCS#1 or SEC1) of one of the four NCP key types.
    pub fn from_pem(pem_text: &str) -> Result<Self, PkiError> {
        let probe = KeyPair::from_pem(pem_text).map_err(|e| PkiError::PrivateKey(e.to_string()))?;
        let public = PublicKeyInfo::from_spki_der(&probe.subject_public_key_info())?;
        let algorithm = public.algorithm();
        let key_type = algorithm
            .key_type()
            .ok_or_else(|| PkiError::UnsupportedKey(algorithm.to_string()))?;
        // Re-read with the signing algorithm we use for this key type (the probe may have picked
        // another hash for the same curve).
        let pair = KeyPair::from_pem_and_sign_algo(
            pem_text,
            KeyAlgorithm::from(key_type).rcgen_algorithm(),
        )
        .map_err(|e| PkiError::PrivateKey(e.to_string()))?;
        Ok(Self { key_type, pair })
    }

    /// The key type.
    #[must_use]
    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// The private key as PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`). Handle with care.
    #[must_use]
    pub fn to_pkcs8_pem(&self) -> String {
        pem::encode("PRIVATE KEY", self.pair.serialized_der())
    }

    /// The public half.
    pub fn public_key(&self) -> Result<PublicKeyInfo, PkiError> {
        PublicKeyInfo::from_spki_der(&self.pair.subject_public_key_info())
    }

    /// The DER SubjectPublicKeyInfo of the public half.
    #[must_use]
    pub fn spki_der(&self) -> Vec<u8> {
        self.pair.subject_public_key_info()
    }

    pub(crate) fn pair(&self) -> &KeyPair {
        &self.pair
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey")
            .field("key_type", &self.key_type)
            .field("key", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_ncp_key_type_generates_and_reports_its_algorithm() {
        for kt in KeyType::ALL {
            let key = PrivateKey::generate(kt).unwrap();
            let public = key.public_key().unwrap();
            assert_eq!(public.algorithm().key_type(), Some(kt), "{kt}");
            assert_eq!(public.algorithm(), KeyAlgorithm::from(kt));
            let again = PrivateKey::from_pem(&key.to_pkcs8_pem()).unwrap();
            assert_eq!(again.key_type(), kt);
            assert_eq!(again.spki_der(), key.spki_der());
        }
    }

    #[test]
    fn debug_output_never_shows_the_private_key() {
        let key = PrivateKey::generate(KeyType::Ec256).unwrap();
        let pem = key.to_pkcs8_pem();
        let body = pem.lines().nth(1).unwrap();
        assert!(!format!("{key:?}").contains(body));
    }

    #[test]
    fn garbage_keys_are_errors() {
        assert!(PrivateKey::from_pem("nope").is_err());
        assert!(
            PrivateKey::from_pem(&pem::encode("PRIVATE KEY", b"\x30\x03\x02\x01\x00")).is_err()
        );
        assert!(PublicKeyInfo::from_spki_der(b"\x30\x00").is_err());
    }
}
