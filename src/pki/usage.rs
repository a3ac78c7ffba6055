//! cert-manager key usages (`spec.usages` of a CertificateRequest) as X.509 keyUsage and
//! extendedKeyUsage, for certificates we sign ourselves (subordinate mode).

use rcgen::{ExtendedKeyUsagePurpose, KeyUsagePurpose};

/// keyUsage and extendedKeyUsage of a certificate to sign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usages {
    /// keyUsage bits (an empty list omits the extension).
    pub key: Vec<KeyUsagePurpose>,
    /// extendedKeyUsage purposes (an empty list omits the extension).
    pub extended: Vec<ExtendedKeyUsagePurpose>,
}

/// A usage cert-manager allows that we cannot encode, or a name cert-manager does not define.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown key usage {0:?}")]
pub struct UnknownUsage(pub String);

fn other(arcs: &[u64]) -> ExtendedKeyUsagePurpose {
    ExtendedKeyUsagePurpose::Other(arcs.to_vec())
}

impl Usages {
    /// What cert-manager's own issuers use when a request names no usage: digital signature and key
    /// encipherment, no extended usage.
    #[must_use]
    pub fn cert_manager_default() -> Self {
        Self {
            key: vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ],
            extended: Vec::new(),
        }
    }

    /// Maps cert-manager's usage names (`digital signature`, `server auth`, …); an empty list gives
    /// [`Usages::cert_manager_default`]. Repeated names count once.
    ///
    /// # Errors
    /// On a name cert-manager does not define.
    pub fn from_cert_manager(names: &[String]) -> Result<Self, UnknownUsage> {
        if names.is_empty() {
            return Ok(Self::cert_manager_default());
        }
        let mut out = Self {
            key: Vec::new(),
            extended: Vec::new(),
        };
        for name in names {
            let key = match name.as_str() {
                "signing" | "digital signature" => Some(KeyUsagePurpose::DigitalSignature),
                "content commitment" => Some(KeyUsagePurpose::ContentCommitment),
                "key encipherment" => Some(KeyUsagePurpose::KeyEncipherment),
                "key agreement" => Some(KeyUsagePurpose::KeyAgreement),
                "data encipherment" => Some(KeyUsagePurpose::DataEncipherment),
                "cert sign" => Some(KeyUsagePurpose::KeyCertSign),
                "crl sign" => Some(KeyUsagePurpose::CrlSign),
                "encipher only" => Some(KeyUsagePurpose::EncipherOnly),
                "decipher only" => Some(KeyUsagePurpose::DecipherOnly),
                _ => None,
            };
            if let Some(k) = key {
                if !out.key.contains(&k) {
                    out.key.push(k);
                }
                continue;
            }
            let extended = match name.as_str() {
                "any" => ExtendedKeyUsagePurpose::Any,
                "server auth" => ExtendedKeyUsagePurpose::ServerAuth,
                "client auth" => ExtendedKeyUsagePurpose::ClientAuth,
                "code signing" => ExtendedKeyUsagePurpose::CodeSigning,
                "email protection" | "s/mime" => ExtendedKeyUsagePurpose::EmailProtection,
                "timestamping" => ExtendedKeyUsagePurpose::TimeStamping,
                "ocsp signing" => ExtendedKeyUsagePurpose::OcspSigning,
                "ipsec end system" => other(&[1, 3, 6, 1, 5, 5, 7, 3, 5]),
                "ipsec tunnel" => other(&[1, 3, 6, 1, 5, 5, 7, 3, 6]),
                "ipsec user" => other(&[1, 3, 6, 1, 5, 5, 7, 3, 7]),
                "microsoft sgc" => other(&[1, 3, 6, 1, 4, 1, 311, 10, 3, 3]),
                "netscape sgc" => other(&[2, 16, 840, 1, 113_730, 4, 1]),
                _ => return Err(UnknownUsage(name.clone())),
            };
            if !out.extended.contains(&extended) {
                out.extended.push(extended);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_string()).collect()
    }

    #[test]
    fn no_usage_gives_cert_managers_default() {
        assert_eq!(
            Usages::from_cert_manager(&[]).unwrap(),
            Usages::cert_manager_default()
        );
    }

    #[test]
    fn key_and_extended_usages_are_split_and_deduplicated() {
        let u = Usages::from_cert_manager(&names(&[
            "digital signature",
            "signing",
            "key encipherment",
            "server auth",
            "client auth",
            "s/mime",
            "email protection",
            "ipsec user",
        ]))
        .unwrap();
        assert_eq!(
            u.key,
            [
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment
            ]
        );
        assert_eq!(u.extended.len(), 4);
        assert!(
            u.extended
                .contains(&ExtendedKeyUsagePurpose::EmailProtection)
        );
    }

    #[test]
    fn an_unknown_usage_is_an_error_naming_it() {
        assert_eq!(
            Usages::from_cert_manager(&names(&["server auth", "teleport"])),
            Err(UnknownUsage("teleport".into()))
        );
    }
}
