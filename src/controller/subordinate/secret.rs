//! Reading the intermediate's Secret: its keys, the intermediate in it, and who owns it.

use super::decide::{self, Intermediate, KEY_CA_CRT, KEY_TLS_CRT, KEY_TLS_KEY, SecretProblem};
use crate::api::annotations::ANNOTATION_OWNER;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt as _;
use time::OffsetDateTime;

/// A key of the Secret's data.
pub(super) fn data<'a>(secret: &'a Secret, key: &str) -> Option<&'a [u8]> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| b.0.as_slice())
}

pub(super) fn intermediate_in(
    secret: Option<&Secret>,
    now: OffsetDateTime,
) -> Result<Intermediate, SecretProblem> {
    let Some(secret) = secret else {
        return Err(SecretProblem::Empty);
    };
    decide::read_intermediate(
        data(secret, KEY_TLS_KEY),
        data(secret, KEY_TLS_CRT),
        data(secret, KEY_CA_CRT),
        now,
    )
}

pub(super) fn is_owned_by(secret: &Secret, owner: &str) -> bool {
    secret
        .annotations()
        .get(ANNOTATION_OWNER)
        .map(String::as_str)
        == Some(owner)
}
