//! The parts of cert-manager's `cert-manager.io/v1` API that we read and write. Only the fields we use
//! are modelled; unknown fields are ignored on read and never sent on write (status goes through
//! server-side apply of just our fields).

use k8s_openapi::ByteString;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use serde::{Deserialize, Serialize};

/// A reference to the issuer of a request.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct IssuerRef {
    /// Issuer name.
    pub name: String,
    /// Issuer kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Issuer API group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// `CertificateRequest.spec`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "cert-manager.io",
    version = "v1",
    kind = "CertificateRequest",
    plural = "certificaterequests",
    namespaced,
    status = "CertificateRequestStatus",
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct CertificateRequestSpec {
    /// PEM CSR, base64 on the wire.
    pub request: ByteString,
    /// The issuer.
    pub issuer_ref: IssuerRef,
    /// Requested lifetime, a Go duration string (`"2160h"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    /// Whether a CA certificate is requested.
    #[serde(default, rename = "isCA")]
    pub is_ca: bool,
    /// Requested key usages.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub usages: Vec<String>,
}

/// A CertificateRequest condition (cert-manager's own type, close to `metav1.Condition`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RequestCondition {
    /// `Ready`, `Approved`, `Denied`, `InvalidRequest`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False`, `Unknown`.
    pub status: String,
    /// PascalCase reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the status last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    /// Generation observed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// `CertificateRequest.status`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CertificateRequestStatus {
    /// Conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<RequestCondition>,
    /// PEM certificate chain (leaf first), base64 on the wire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<ByteString>,
    /// PEM CA (the root), base64 on the wire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<ByteString>,
    /// When the request failed for good.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_time: Option<Time>,
}

impl CertificateRequest {
    /// Whether the request names one of our issuer kinds (group `pca.ncp-issuer.dev`, kind
    /// `PrivateCA` or `ClusterPrivateCA`).
    #[must_use]
    pub fn names_our_issuer(&self) -> bool {
        use super::IssuerResource as _;
        let r = &self.spec.issuer_ref;
        r.group.as_deref() == Some(super::issuer::GROUP)
            && matches!(
                r.kind.as_deref(),
                Some(super::PrivateCA::KIND | super::ClusterPrivateCA::KIND)
            )
    }

    /// The condition of `type_`, if present.
    #[must_use]
    pub fn condition(&self, type_: &str) -> Option<&RequestCondition> {
        self.status
            .as_ref()?
            .conditions
            .iter()
            .find(|c| c.type_ == type_)
    }

    /// Whether the condition of `type_` is `True`.
    #[must_use]
    pub fn condition_true(&self, type_: &str) -> bool {
        self.condition(type_).is_some_and(|c| c.status == "True")
    }
}

/// `Certificate.spec`: only what revocation decisions need.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "cert-manager.io",
    version = "v1",
    kind = "Certificate",
    plural = "certificates",
    namespaced,
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct CertificateSpec {
    /// The Secret the certificate is written to.
    pub secret_name: String,
}
