//! Signature verification of certificates, CSRs and CRLs.
//!
//! Signatures are checked with the aws-lc-rs algorithms rustls ships (the same table webpki uses),
//! matched on the DER AlgorithmIdentifiers. x509-parser's own `verify` cannot check P-521 signatures,
//! and EC521 is one of the four NCP key types.

use super::der;
use super::error::PkiError;
use rustls::pki_types::SignatureVerificationAlgorithm;

fn algorithms() -> &'static [&'static dyn SignatureVerificationAlgorithm] {
    rustls::crypto::aws_lc_rs::default_provider()
        .signature_verification_algorithms
        .all
}

/// Verifies that `signed_der` (a certificate, CSR or CRL) was signed by the key in `signer_spki_der`.
pub fn verify_signed_by(signed_der: &[u8], signer_spki_der: &[u8]) -> Result<(), PkiError> {
    let signed = der::split_signed(signed_der)
        .ok_or_else(|| PkiError::Signature("malformed signed structure".into()))?;
    let (key_alg, key_bits) = der::split_spki(signer_spki_der)
        .ok_or_else(|| PkiError::Signature("malformed signer public key".into()))?;
    let mut supported = false;
    for alg in algorithms() {
        if alg.signature_alg_id().as_ref() != signed.algorithm
            || alg.public_key_alg_id().as_ref() != key_alg
        {
            continue;
        }
        supported = true;
        if alg
            .verify_signature(key_bits, signed.tbs, signed.signature)
            .is_ok()
        {
            return Ok(());
        }
    }
    Err(PkiError::Signature(if supported {
        "signature does not match the signer's key".into()
    } else {
        "unsupported signature or key algorithm".into()
    }))
}
