//! The two DER jobs x509-parser's typed structures do not do for us, done with the asn1-rs reader and
//! writer it re-exports (no hand-written TLV code):
//!
//! - splitting any signed structure (certificate, CSR, CRL) into the bytes a signature check needs.
//!   x509-parser's `AlgorithmIdentifier` keeps no encoding, and rustls matches algorithms on the exact
//!   DER of the identifier's contents, so the envelope is read generically;
//! - writing the Authority Information Access extension, which rcgen cannot emit.

use super::error::PkiError;
use x509_parser::asn1_rs::{Any, Class, FromDer, Header, Length, Oid, Sequence, Tag, ToDer};
use x509_parser::oid_registry::{
    OID_PKIX_ACCESS_DESCRIPTOR_CA_ISSUERS, OID_PKIX_ACCESS_DESCRIPTOR_OCSP,
    OID_PKIX_AUTHORITY_INFO_ACCESS,
};

/// The parts of a signed structure: `SEQUENCE { tbs, AlgorithmIdentifier, BIT STRING }`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Signed<'a> {
    /// The whole to-be-signed encoding (what the signature covers).
    pub tbs: &'a [u8],
    /// The contents of the signature AlgorithmIdentifier SEQUENCE.
    pub algorithm: &'a [u8],
    /// The signature bits (the BIT STRING contents after the unused-bits octet).
    pub signature: &'a [u8],
}

/// Reads one DER element with tag `tag` from the front of `input`: the element, its whole encoding
/// and what follows.
fn element(input: &[u8], tag: Tag) -> Option<(Any<'_>, &[u8], &[u8])> {
    let (rest, any) = Any::from_der(input).ok()?;
    (any.header.class() == Class::Universal && any.tag() == tag)
        .then(|| (any, &input[..input.len() - rest.len()], rest))
}

/// The contents of a BIT STRING that has no unused bits (signatures and keys are whole octets).
fn whole_octets<'a>(bits: &Any<'a>) -> Option<&'a [u8]> {
    match bits.data.split_first() {
        Some((0, octets)) => Some(octets),
        _ => None,
    }
}

/// Splits a signed structure (certificate, CSR, CRL); `None` when it is not one.
pub(crate) fn split_signed(der: &[u8]) -> Option<Signed<'_>> {
    let (outer, _, trailing) = element(der, Tag::Sequence)?;
    let (_, tbs, rest) = element(outer.data, Tag::Sequence)?;
    let (algorithm, _, rest) = element(rest, Tag::Sequence)?;
    let (signature, _, rest) = element(rest, Tag::BitString)?;
    if !trailing.is_empty() || !rest.is_empty() {
        return None;
    }
    Some(Signed {
        tbs,
        algorithm: algorithm.data,
        signature: whole_octets(&signature)?,
    })
}

/// Splits a SubjectPublicKeyInfo into the contents of its AlgorithmIdentifier and the key bits.
pub(crate) fn split_spki(der: &[u8]) -> Option<(&[u8], &[u8])> {
    let (outer, _, trailing) = element(der, Tag::Sequence)?;
    let (algorithm, _, rest) = element(outer.data, Tag::Sequence)?;
    let (key, _, rest) = element(rest, Tag::BitString)?;
    if !trailing.is_empty() || !rest.is_empty() {
        return None;
    }
    Some((algorithm.data, whole_octets(&key)?))
}

/// OID arcs of the Authority Information Access extension, as rcgen wants them.
pub(crate) fn aia_oid() -> Vec<u64> {
    OID_PKIX_AUTHORITY_INFO_ACCESS
        .iter()
        .map(Iterator::collect)
        .unwrap_or_default()
}

/// `[6] IMPLICIT IA5String`: GeneralName uniformResourceIdentifier.
const TAG_GN_URI: Tag = Tag(6);

fn encoding_error(e: impl std::fmt::Display) -> PkiError {
    PkiError::Signing(format!("cannot encode authority information access: {e}"))
}

/// The extnValue contents of an Authority Information Access extension.
pub(crate) fn authority_info_access(
    ocsp: Option<&str>,
    ca_issuers: Option<&str>,
) -> Result<Vec<u8>, PkiError> {
    let mut descriptions = Vec::new();
    for (method, url) in [
        (&OID_PKIX_ACCESS_DESCRIPTOR_OCSP, ocsp),
        (&OID_PKIX_ACCESS_DESCRIPTOR_CA_ISSUERS, ca_issuers),
    ] {
        let Some(url) = url else { continue };
        let header = Header::new(
            Class::ContextSpecific,
            false,
            TAG_GN_URI,
            Length::Definite(url.len()),
        );
        let mut description = Oid::to_der_vec(method).map_err(encoding_error)?;
        description.extend(
            Any::new(header, url.as_bytes())
                .to_der_vec()
                .map_err(encoding_error)?,
        );
        descriptions.extend(
            Sequence::new(description.into())
                .to_der_vec()
                .map_err(encoding_error)?,
        );
    }
    Sequence::new(descriptions.into())
        .to_der_vec()
        .map_err(encoding_error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::extensions::{AuthorityInfoAccess, GeneralName};

    #[test]
    fn authority_info_access_reads_back_with_x509_parser() {
        let long = format!("http://127.0.0.1/{}", "x".repeat(300));
        let value = authority_info_access(Some("http://127.0.0.1/ocsp"), Some(&long)).unwrap();
        assert_eq!(
            Oid::from(&aia_oid()).unwrap(),
            OID_PKIX_AUTHORITY_INFO_ACCESS
        );
        let (rest, aia) = AuthorityInfoAccess::from_der(&value).unwrap();
        assert!(rest.is_empty());
        let got: Vec<_> = aia
            .accessdescs
            .iter()
            .map(|d| match &d.access_location {
                GeneralName::URI(u) => (d.access_method.to_id_string(), u.to_string()),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            got,
            [
                (
                    "1.3.6.1.5.5.7.48.1".to_string(),
                    "http://127.0.0.1/ocsp".to_string()
                ),
                ("1.3.6.1.5.5.7.48.2".to_string(), long),
            ]
        );
        assert_eq!(authority_info_access(None, None).unwrap(), [0x30, 0x00]);
    }

    #[test]
    fn truncated_or_garbage_input_is_rejected() {
        for bad in [
            &[][..],
            &[0x30],
            &[0x30, 0x05, 1],
            &[0x30, 0x85, 1, 1, 1, 1, 1],
            &[0x1f, 0],
            &[0x30, 0x00],
            // tbs, algorithm and a BIT STRING with unused bits.
            &[0x30, 0x08, 0x30, 0x00, 0x30, 0x00, 0x03, 0x02, 0x01, 0xff],
            // A trailing byte after the structure.
            &[
                0x30, 0x08, 0x30, 0x00, 0x30, 0x00, 0x03, 0x02, 0x00, 0xff, 0x00,
            ],
        ] {
            assert!(split_signed(bad).is_none(), "{bad:?}");
            assert!(split_spki(bad).is_none(), "{bad:?}");
        }
        let signed = split_signed(&[
            0x30, 0x0a, 0x30, 0x01, 0x05, 0x30, 0x02, 0x06, 0x00, 0x03, 0x01, 0x00,
        ])
        .unwrap();
        assert_eq!(signed.tbs, [0x30, 0x01, 0x05]);
        assert_eq!(signed.algorithm, [0x06, 0x00]);
        assert!(signed.signature.is_empty());
    }
}
