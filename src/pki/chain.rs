//! What an issued certificate becomes in a request's status: the chain checked against the request's
//! key and verified to a root, and the usages it allows.

use super::cert::{CertInfo, parse_certificates_pem};
use super::error::ChainError;
use super::verify::verify_chain_with_skew;

/// Why NCP's answer cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AssembleError {
    /// The certificate or the chain does not parse.
    #[error("ncp returned an unparsable certificate: {0}")]
    Parse(String),
    /// The certificate's key is not the CSR's.
    #[error("ncp returned a certificate for a different public key than the request's")]
    KeyMismatch,
    /// The chain does not verify.
    #[error("ncp returned a chain that does not verify: {0}")]
    Verify(String),
    /// The certificate (or a certificate of its chain) becomes valid later than the tolerance allows:
    /// the signer's clock is ahead of ours. It will verify once that time has come.
    #[error(
        "ncp returned a certificate that is not valid yet: {detail} (the signer's clock is ahead of ours by more than the tolerance)"
    )]
    NotYetValid {
        /// Which certificate and from when.
        detail: String,
        /// The latest start of validity in the chain.
        not_before: time::OffsetDateTime,
    },
    /// NCP returned no certificate.
    #[error("ncp returned no certificate")]
    Empty,
}

/// What goes into the request's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    /// Leaf then intermediates (PEM), never the self-signed root.
    pub certificate_pem: String,
    /// The root (PEM).
    pub ca_pem: String,
    /// End of the leaf's validity.
    pub not_after: time::OffsetDateTime,
    /// Colon-hex serial of the leaf.
    pub serial: String,
    /// The leaf, DER.
    pub leaf_der: Vec<u8>,
}

/// Builds `status.certificate` and `status.ca` from NCP's certificate and chain (any order), after
/// checking that the certificate carries the expected key (the CSR's, as DER SubjectPublicKeyInfo) and
/// that the chain verifies to a root.
///
/// # Errors
/// When anything does not parse, the key differs from the CSR's, or the chain does not verify.
pub fn assemble(
    spki_der: &[u8],
    certificate_pem: &str,
    chain_pems: &[String],
    now: time::OffsetDateTime,
) -> Result<Issued, AssembleError> {
    assemble_with_skew(
        spki_der,
        certificate_pem,
        chain_pems,
        now,
        time::Duration::ZERO,
    )
}

/// [`assemble`], accepting validities that start up to `not_before_tolerance` after `now` (the
/// signer's clock ahead of ours); a later start is [`AssembleError::NotYetValid`], which passes with
/// time.
///
/// # Errors
/// As [`assemble`].
pub fn assemble_with_skew(
    spki_der: &[u8],
    certificate_pem: &str,
    chain_pems: &[String],
    now: time::OffsetDateTime,
    not_before_tolerance: time::Duration,
) -> Result<Issued, AssembleError> {
    let leaf = parse_certificates_pem(certificate_pem)
        .map_err(|e| AssembleError::Parse(e.to_string()))?
        .into_iter()
        .next()
        .ok_or(AssembleError::Empty)?;
    if leaf.public_key.spki_der() != spki_der {
        return Err(AssembleError::KeyMismatch);
    }
    let mut pool: Vec<CertInfo> = Vec::new();
    for pem in chain_pems {
        for cert in parse_certificates_pem(pem).map_err(|e| AssembleError::Parse(e.to_string()))? {
            if cert.der != leaf.der && !pool.iter().any(|c| c.der == cert.der) {
                pool.push(cert);
            }
        }
    }
    // Trust anchors: the self-signed certificates NCP sent; when there is none (an intermediate whose
    // root lives elsewhere), the top of what was sent.
    let (mut roots, mut intermediates): (Vec<CertInfo>, Vec<CertInfo>) =
        pool.into_iter().partition(CertInfo::is_self_signed);
    if roots.is_empty() {
        let top = intermediates
            .iter()
            .position(|c| {
                !intermediates
                    .iter()
                    .any(|o| o.der != c.der && c.issuer == o.subject)
            })
            .ok_or_else(|| AssembleError::Verify("no issuer certificate in the chain".into()))?;
        roots.push(intermediates.remove(top));
    }
    let latest_start = std::iter::once(&leaf)
        .chain(&intermediates)
        .chain(&roots)
        .map(|c| c.not_before)
        .max()
        .unwrap_or(leaf.not_before);
    let path = verify_chain_with_skew(&leaf, &intermediates, &roots, now, not_before_tolerance)
        .map_err(|e| match e {
            ChainError::NotYetValid { .. } => AssembleError::NotYetValid {
                detail: e.to_string(),
                not_before: latest_start,
            },
            e => AssembleError::Verify(e.to_string()),
        })?;
    let Some((root, above_leaf)) = path.split_last() else {
        return Err(AssembleError::Verify(
            "the certificate is its own root".into(),
        ));
    };
    let mut certificate_pem = leaf.to_pem();
    for c in above_leaf {
        certificate_pem.push_str(&c.to_pem());
    }
    Ok(Issued {
        certificate_pem,
        ca_pem: root.to_pem(),
        not_after: leaf.not_after,
        serial: leaf.serial.to_string(),
        leaf_der: leaf.der.clone(),
    })
}

/// The requested cert-manager usages that the issued certificate does not allow. NCP takes no usage
/// parameter, so this is how a request learns that it got less than it asked for. An absent keyUsage
/// or extendedKeyUsage extension restricts nothing (RFC 5280).
#[must_use]
pub fn missing_usages(requested: &[String], leaf_der: &[u8]) -> Vec<String> {
    use x509_parser::extensions::ParsedExtension;
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(leaf_der) else {
        return requested.to_vec();
    };
    let mut ku = None;
    let mut eku = None;
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::KeyUsage(k) => ku = Some(*k),
            ParsedExtension::ExtendedKeyUsage(e) => eku = Some(e.clone()),
            _ => {}
        }
    }
    let has_ku = |f: fn(&x509_parser::extensions::KeyUsage) -> bool| ku.as_ref().is_none_or(f);
    let has_eku = |f: fn(&x509_parser::extensions::ExtendedKeyUsage) -> bool| {
        eku.as_ref().is_none_or(|e| e.any || f(e))
    };
    requested
        .iter()
        .filter(|usage| {
            let allowed = match usage.as_str() {
                "signing" | "digital signature" => has_ku(|k| k.digital_signature()),
                "content commitment" => has_ku(|k| k.non_repudiation()),
                "key encipherment" => has_ku(|k| k.key_encipherment()),
                "key agreement" => has_ku(|k| k.key_agreement()),
                "data encipherment" => has_ku(|k| k.data_encipherment()),
                "cert sign" => has_ku(|k| k.key_cert_sign()),
                "crl sign" => has_ku(|k| k.crl_sign()),
                "encipher only" => has_ku(|k| k.encipher_only()),
                "decipher only" => has_ku(|k| k.decipher_only()),
                "any" => eku.as_ref().is_none_or(|e| e.any),
                "server auth" => has_eku(|e| e.server_auth),
                "client auth" => has_eku(|e| e.client_auth),
                "code signing" => has_eku(|e| e.code_signing),
                "email protection" | "s/mime" => has_eku(|e| e.email_protection),
                "timestamping" => has_eku(|e| e.time_stamping),
                "ocsp signing" => has_eku(|e| e.ocsp_signing),
                // Usages x509-parser does not name (ipsec, sgc): only an absent extension allows them.
                _ => eku.is_none(),
            };
            !allowed
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf_with(
        kus: Vec<rcgen::KeyUsagePurpose>,
        ekus: Vec<rcgen::ExtendedKeyUsagePurpose>,
    ) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["a.example".to_string()]).unwrap();
        params.key_usages = kus;
        params.extended_key_usages = ekus;
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn usages_the_certificate_allows_are_not_reported() {
        let der = leaf_with(
            vec![
                rcgen::KeyUsagePurpose::DigitalSignature,
                rcgen::KeyUsagePurpose::KeyEncipherment,
            ],
            vec![
                rcgen::ExtendedKeyUsagePurpose::ServerAuth,
                rcgen::ExtendedKeyUsagePurpose::ClientAuth,
            ],
        );
        let asked: Vec<String> = [
            "digital signature",
            "key encipherment",
            "server auth",
            "client auth",
        ]
        .map(String::from)
        .to_vec();
        assert!(missing_usages(&asked, &der).is_empty());
    }

    #[test]
    fn usages_the_certificate_lacks_are_reported() {
        let der = leaf_with(
            vec![rcgen::KeyUsagePurpose::DigitalSignature],
            vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth],
        );
        let asked: Vec<String> = ["digital signature", "code signing", "cert sign"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            missing_usages(&asked, &der),
            vec!["code signing".to_string(), "cert sign".to_string()]
        );
    }

    #[test]
    fn absent_extensions_restrict_nothing() {
        let der = leaf_with(vec![], vec![]);
        let asked: Vec<String> = ["code signing", "cert sign", "ipsec user"]
            .map(String::from)
            .to_vec();
        assert!(missing_usages(&asked, &der).is_empty());
    }
}
