//! Pure decisions of ClusterTrustBundle publication: whether an issuer publishes ([`wanted`]), under
//! which name ([`bundle_name`], the signer-linked form of KEP-3257), what the bundle holds
//! ([`bundle_pem`]) and whether the bundle in the cluster must be written ([`needs_write`]).

use crate::api::issuer::TrustBundleSpec;
use crate::pki::{CertInfo, parse_certificates_pem};
use k8s_openapi::api::certificates::v1beta1::ClusterTrustBundle;

/// Label on every ClusterTrustBundle we publish (the sweep of deleted issuers selects on it).
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Its value.
pub const MANAGED_BY: &str = "ncp-pca-issuer";
/// What follows the signer-name prefix in a bundle's name.
pub const BUNDLE_SUFFIX: &str = "root";

/// Which issuers publish a ClusterTrustBundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Publication {
    /// None (the controller does not run).
    Off,
    /// Those whose spec has `trustBundle`.
    #[default]
    OptIn,
    /// Every issuer, unless its `spec.trustBundle.enabled` is false.
    All,
}

/// Whether an issuer with `spec.trustBundle` = `spec` publishes under `mode`.
#[must_use]
pub fn wanted(mode: Publication, spec: Option<&TrustBundleSpec>) -> bool {
    match (mode, spec) {
        (Publication::Off, _) => false,
        (_, Some(s)) => s.enabled,
        (Publication::All, None) => true,
        (Publication::OptIn, None) => false,
    }
}

/// The signer-linked bundle name of KEP-3257: the signer name with `/` replaced by `:`, then `:` and
/// a suffix (the API server refuses any other name for a bundle with `spec.signerName`).
#[must_use]
pub fn bundle_name(signer_name: &str) -> String {
    format!("{}:{BUNDLE_SUFFIX}", signer_name.replace('/', ":"))
}

/// Why no bundle can be built from what the issuer's CA chain holds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    /// The chain does not parse.
    #[error("the CA chain does not parse: {0}")]
    Parse(String),
    /// No self-signed certificate in it.
    #[error("the CA chain holds no root (self-signed) certificate")]
    NoRoot,
}

/// The bundle for a CA chain (`pems`, any order): exactly the roots, then, with
/// `include_intermediates`, the other CA certificates.
///
/// # Errors
/// When the chain does not parse or holds no root.
pub fn bundle_pem(pems: &[&str], include_intermediates: bool) -> Result<String, BundleError> {
    let mut certs: Vec<CertInfo> = Vec::new();
    for pem in pems {
        for c in parse_certificates_pem(pem).map_err(|e| BundleError::Parse(e.to_string()))? {
            if !certs.iter().any(|o| o.der == c.der) {
                certs.push(c);
            }
        }
    }
    let (roots, others): (Vec<&CertInfo>, Vec<&CertInfo>) =
        certs.iter().partition(|c| c.is_self_signed());
    if roots.is_empty() {
        return Err(BundleError::NoRoot);
    }
    let mut out: String = roots.iter().map(|c| c.to_pem()).collect();
    if include_intermediates {
        out.extend(others.iter().map(|c| c.to_pem()));
    }
    Ok(out)
}

/// Whether `existing` (the bundle in the cluster, if any) differs from what we would publish.
#[must_use]
pub fn needs_write(existing: Option<&ClusterTrustBundle>, signer_name: &str, pem: &str) -> bool {
    existing.is_none_or(|b| {
        b.spec.signer_name.as_deref() != Some(signer_name)
            || b.spec.trust_bundle != pem
            || b.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(MANAGED_BY_LABEL))
                .map(String::as_str)
                != Some(MANAGED_BY)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ncp::types::KeyType;
    use crate::pki::{IssueOptions, Name, NameAttr, PrivateKey, Signer, Validity, sign_ca};

    fn chain() -> (String, String) {
        let now = time::OffsetDateTime::now_utc();
        let validity = Validity::new(now, now + time::Duration::days(10)).expect("validity");
        let root_key = PrivateKey::generate(KeyType::Ec256).expect("key");
        let root = crate::pki::self_signed_ca(
            &Name::new().with(NameAttr::CommonName, "root"),
            &root_key,
            &IssueOptions::new(validity),
        )
        .expect("root");
        let signer = Signer::new(root_key, root.clone()).expect("signer");
        let sub_key = PrivateKey::generate(KeyType::Ec256).expect("key");
        let sub = sign_ca(
            &signer,
            &Name::new().with(NameAttr::CommonName, "sub"),
            &sub_key.public_key().expect("public"),
            &IssueOptions::new(validity),
        )
        .expect("sub");
        (root.to_pem(), sub.to_pem())
    }

    #[test]
    fn the_bundle_name_is_the_signer_linked_form() {
        assert_eq!(
            bundle_name("privatecas.pca.ncp-issuer.dev/team-a.pca"),
            "privatecas.pca.ncp-issuer.dev:team-a.pca:root"
        );
        assert_eq!(
            bundle_name("clusterprivatecas.pca.ncp-issuer.dev/ncp"),
            "clusterprivatecas.pca.ncp-issuer.dev:ncp:root"
        );
    }

    #[test]
    fn publication_follows_the_mode_and_the_issuer_spec() {
        let on = TrustBundleSpec {
            enabled: true,
            include_intermediates: false,
        };
        let off = TrustBundleSpec {
            enabled: false,
            include_intermediates: false,
        };
        assert!(!wanted(Publication::OptIn, None));
        assert!(wanted(Publication::OptIn, Some(&on)));
        assert!(wanted(Publication::All, None));
        assert!(!wanted(Publication::All, Some(&off)));
        assert!(!wanted(Publication::Off, Some(&on)));
    }

    #[test]
    fn the_bundle_holds_exactly_the_root_unless_intermediates_are_asked_for() {
        let (root, sub) = chain();
        let only_root = bundle_pem(&[&sub, &root], false).expect("bundle");
        assert_eq!(only_root, root);
        let both = bundle_pem(&[&sub, &root], true).expect("bundle");
        assert_eq!(both, format!("{root}{sub}"));
        assert_eq!(bundle_pem(&[&sub], false), Err(BundleError::NoRoot));
        assert!(matches!(
            bundle_pem(&["garbage"], false),
            Err(BundleError::Parse(_)) | Err(BundleError::NoRoot)
        ));
    }

    #[test]
    fn an_identical_bundle_is_not_written_again() {
        let (root, _) = chain();
        let signer = "clusterprivatecas.pca.ncp-issuer.dev/ncp";
        let bundle: ClusterTrustBundle = serde_json::from_value(serde_json::json!({
            "metadata": {"name": bundle_name(signer), "labels": {MANAGED_BY_LABEL: MANAGED_BY}},
            "spec": {"signerName": signer, "trustBundle": root}
        }))
        .expect("bundle");
        assert!(!needs_write(Some(&bundle), signer, &root));
        assert!(needs_write(Some(&bundle), signer, "other"));
        assert!(needs_write(None, signer, &root));
    }
}
