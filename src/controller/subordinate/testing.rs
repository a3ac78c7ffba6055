//! What the tests of subordinate mode share: an NCP-like root with an intermediate under it, and the
//! Secret, cache entry and status that hold it.

use super::LocalSigner;
use super::decide::{KEY_CA_CRT, KEY_TLS_CRT, KEY_TLS_KEY, Wanted, read_intermediate, sha256_hex};
use crate::api::annotations::{ANNOTATION_CA_TAG, ANNOTATION_OWNER, ANNOTATION_SPEC_HASH};
use crate::api::{SubordinateSpec, SubordinateStatus};
use crate::ncp::types::KeyType;
use crate::pki::{
    IssueOptions, Name, NameAttr, PrivateKey, Signer, Validity, self_signed_ca, sign_ca,
};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;
use time::macros::datetime;

pub const OWNER: &str = "PrivateCA/ns/sub";
pub const NOW: OffsetDateTime = datetime!(2026-06-01 00:00 UTC);
pub const RECHECK: Duration = Duration::from_secs(300);

/// A root and an intermediate under it, valid 2026-01-01 .. 2027-01-01 (renewed from 2026-09-01).
pub struct Pki {
    /// The root.
    pub root: Signer,
    /// The intermediate's key.
    pub key_pem: String,
    /// The intermediate.
    pub chain_pem: String,
    /// The root, PEM (what the Secret's `ca.crt` holds).
    pub root_pem: String,
}

/// [`pki_valid`] for 2026-01-01 .. 2027-01-01.
pub fn pki() -> Pki {
    pki_valid(
        datetime!(2026-01-01 00:00 UTC),
        datetime!(2027-01-01 00:00 UTC),
    )
}

/// A root (2020 .. 2040), and an intermediate under it valid from `from` to `to`.
pub fn pki_valid(from: OffsetDateTime, to: OffsetDateTime) -> Pki {
    let opts = |from, to| IssueOptions::new(Validity::new(from, to).unwrap());
    let root_key = PrivateKey::generate(KeyType::Ec256).unwrap();
    let root_cert = self_signed_ca(
        &Name::new().with(NameAttr::CommonName, "root"),
        &root_key,
        &opts(
            datetime!(2020-01-01 00:00 UTC),
            datetime!(2040-01-01 00:00 UTC),
        ),
    )
    .unwrap();
    let root = Signer::new(root_key, root_cert).unwrap();
    let key = PrivateKey::generate(KeyType::Ec256).unwrap();
    let cert = sign_ca(
        &root,
        &Name::new().with(NameAttr::CommonName, "sub intermediate"),
        &key.public_key().unwrap(),
        &opts(from, to),
    )
    .unwrap();
    Pki {
        root_pem: root.certificate().to_pem(),
        root,
        key_pem: key.to_pkcs8_pem(),
        chain_pem: cert.to_pem(),
    }
}

impl Pki {
    pub fn root_pem(&self) -> String {
        self.root_pem.clone()
    }

    pub fn root_sha256(&self) -> String {
        sha256_hex(&self.root.certificate().der)
    }

    /// The Secret this issuer writes, holding this intermediate.
    pub fn secret(&self) -> Secret {
        let mut s = Secret::default();
        s.metadata.name = Some("s".into());
        s.metadata.annotations = Some(BTreeMap::from([
            (ANNOTATION_OWNER.to_string(), OWNER.to_string()),
            (ANNOTATION_SPEC_HASH.to_string(), wanted().digest()),
            (ANNOTATION_CA_TAG.to_string(), "tag".to_string()),
        ]));
        s.data = Some(BTreeMap::from([
            (
                KEY_TLS_KEY.to_string(),
                ByteString(self.key_pem.clone().into()),
            ),
            (
                KEY_TLS_CRT.to_string(),
                ByteString(self.chain_pem.clone().into()),
            ),
            (KEY_CA_CRT.to_string(), ByteString(self.root_pem().into())),
        ]));
        s
    }

    /// The same intermediate, as the cache holds it.
    pub fn signer(&self, secret_name: &str) -> Arc<LocalSigner> {
        Arc::new(LocalSigner {
            secret_name: secret_name.into(),
            intermediate: read_intermediate(
                Some(self.key_pem.as_bytes()),
                Some(self.chain_pem.as_bytes()),
                Some(self.root_pem().as_bytes()),
                NOW,
            )
            .unwrap(),
        })
    }

    /// What the status said after this intermediate was checked.
    pub fn status(&self) -> SubordinateStatus {
        SubordinateStatus {
            secret_name: "s".into(),
            root_sha256: self.root_sha256(),
            ..SubordinateStatus::default()
        }
    }
}

pub fn spec() -> SubordinateSpec {
    SubordinateSpec {
        secret_name: "s".into(),
        ..SubordinateSpec::default()
    }
}

pub fn wanted() -> Wanted {
    Wanted::from_spec(&spec(), "sub").unwrap()
}
