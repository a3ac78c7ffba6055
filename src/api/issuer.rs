//! `PrivateCA` (namespaced) and `ClusterPrivateCA` (cluster-scoped): an NCP Private CA that signs
//! cert-manager CertificateRequests. Both kinds share one spec.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// API group of our kinds.
pub const GROUP: &str = "pca.ncp-issuer.dev";
/// API version of our kinds.
pub const VERSION: &str = "v1alpha1";
/// Default key of the access key in the credentials Secret (as NAVER's SDKs and issuer use).
pub const DEFAULT_ACCESS_KEY_KEY: &str = "NCLOUD_ACCESS_KEY";
/// Default key of the secret key in the credentials Secret.
pub const DEFAULT_SECRET_KEY_KEY: &str = "NCLOUD_SECRET_KEY";

/// Where and how to reach the NCP Private CA that signs, shared by `PrivateCA` and `ClusterPrivateCA`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IssuerSpec {
    /// Tag of the NCP Private CA that signs certificates (as shown by Get CA List, e.g. `abcd1234-efgh5678`).
    #[schemars(length(min = 1, max = 128))]
    pub ca_tag: String,

    /// Private CA API endpoint. Default: the public endpoint `https://pca.apigw.ntruss.com`.
    /// Government cloud: `https://privateca.apigw.gov-ntruss.com`. Any http(s) URL is accepted
    /// (for example the local emulator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,

    /// NCP API credentials (an access key and a secret key, ideally of a sub account limited to
    /// Private CA).
    pub credentials: Credentials,

    /// Extra PEM trust anchors (base64-encoded) for the endpoint's TLS certificate, e.g. for a proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<String>,

    /// When certificates issued through this issuer are revoked in NCP. `OnCertificateDeletion`
    /// (default): when a CertificateRequest is deleted and the Certificate it belonged to no longer
    /// exists. `OnRequestDeletion`: whenever a CertificateRequest is deleted, unless its certificate is
    /// still the one its Certificate's Secret serves. `Never`: never.
    #[serde(default)]
    pub revocation_policy: RevocationPolicy,
}

/// The credentials Secret.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Credentials {
    /// A Secret holding the keys. For a `PrivateCA` it is read from the PrivateCA's own namespace; for
    /// a `ClusterPrivateCA`, from the controller's cluster resource namespace.
    pub secret_ref: SecretKeysRef,
}

/// A Secret (in the namespace the issuer kind allows) and the keys within it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeysRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key of the access key within the Secret. Default `NCLOUD_ACCESS_KEY`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_key: Option<String>,
    /// Key of the secret key within the Secret. Default `NCLOUD_SECRET_KEY`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_key: Option<String>,
}

impl SecretKeysRef {
    /// The access key's key, defaulted.
    #[must_use]
    pub fn access_key_key(&self) -> &str {
        self.access_key_key
            .as_deref()
            .unwrap_or(DEFAULT_ACCESS_KEY_KEY)
    }

    /// The secret key's key, defaulted.
    #[must_use]
    pub fn secret_key_key(&self) -> &str {
        self.secret_key_key
            .as_deref()
            .unwrap_or(DEFAULT_SECRET_KEY_KEY)
    }
}

/// When to revoke issued certificates in NCP.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum RevocationPolicy {
    /// Never revoke.
    Never,
    /// Revoke when the request is deleted and its Certificate no longer exists.
    #[default]
    OnCertificateDeletion,
    /// Revoke when the request is deleted, unless its certificate is still served by its Certificate.
    OnRequestDeletion,
}

/// What the issuer controller observed.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IssuerStatus {
    /// `Ready` says whether CertificateRequests can be signed now, with the reason when not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// What NCP said about the CA at the last check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<CaSummary>,
    /// When NCP was last asked about the CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_check_time: Option<Time>,
}

/// The CA as NCP describes it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CaSummary {
    /// The CA's alias in NCP.
    #[serde(default)]
    pub alias: String,
    /// `PRIVATE_ROOT` or `PRIVATE_SUB`.
    #[serde(default)]
    pub ca_type: String,
    /// NCP status: `ACTIVE`, `PENDING`, `DEACTIVATED` or `DESTROYING`.
    #[serde(default)]
    pub status: String,
    /// Subject common name of the CA certificate.
    #[serde(default)]
    pub common_name: String,
    /// Public key algorithm of the CA certificate.
    #[serde(default)]
    pub key_algorithm: String,
    /// Serial of the CA certificate.
    #[serde(default)]
    pub serial_number: String,
    /// End of the CA certificate's validity (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
    /// Certificates this CA has signed.
    #[serde(default)]
    pub signing_count: i64,
    /// Issuances left under NCP's limit of 30,000 per CA.
    #[serde(default)]
    pub issuances_remaining: i64,
}

/// A namespaced NCP Private CA issuer: usable by CertificateRequests in its own namespace.
// The printer columns repeat `type_`, which clippy mistakes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[kube(
    group = "pca.ncp-issuer.dev",
    version = "v1alpha1",
    kind = "PrivateCA",
    plural = "privatecas",
    singular = "privateca",
    namespaced,
    status = "IssuerStatus",
    shortname = "pca",
    category = "cert-manager",
    doc = "An NCP Private CA that signs cert-manager CertificateRequests in this namespace.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(name = "CA", type_ = "string", json_path = ".spec.caTag"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
pub struct PrivateCASpec {
    /// The issuer's settings.
    #[serde(flatten)]
    pub issuer: IssuerSpec,
}

/// A cluster-scoped NCP Private CA issuer: usable by CertificateRequests in every namespace.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[kube(
    group = "pca.ncp-issuer.dev",
    version = "v1alpha1",
    kind = "ClusterPrivateCA",
    plural = "clusterprivatecas",
    singular = "clusterprivateca",
    status = "IssuerStatus",
    shortname = "cpca",
    category = "cert-manager",
    doc = "An NCP Private CA that signs cert-manager CertificateRequests in every namespace.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(name = "CA", type_ = "string", json_path = ".spec.caTag"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
pub struct ClusterPrivateCASpec {
    /// The issuer's settings.
    #[serde(flatten)]
    pub issuer: IssuerSpec,
}

/// What the controllers need from either issuer kind.
pub trait IssuerResource:
    kube::Resource<DynamicType = (), Scope = Self::ScopeOf>
    + Clone
    + std::fmt::Debug
    + serde::de::DeserializeOwned
    + Serialize
    + Send
    + Sync
    + 'static
{
    /// The kind's scope marker.
    type ScopeOf;
    /// `PrivateCA` or `ClusterPrivateCA`.
    const KIND: &'static str;
    /// The shared spec.
    fn issuer_spec(&self) -> &IssuerSpec;
    /// The status, if any.
    fn issuer_status(&self) -> Option<&IssuerStatus>;
    /// Where this issuer may read Secrets: its own namespace, or the cluster resource namespace.
    fn secret_namespace(&self, cluster_resource_namespace: &str) -> String;
    /// An API for this kind, in `namespace` for the namespaced kind.
    fn api(client: kube::Client, namespace: &str) -> kube::Api<Self>;
}

impl IssuerResource for PrivateCA {
    type ScopeOf = k8s_openapi::NamespaceResourceScope;
    const KIND: &'static str = "PrivateCA";
    fn issuer_spec(&self) -> &IssuerSpec {
        &self.spec.issuer
    }
    fn issuer_status(&self) -> Option<&IssuerStatus> {
        self.status.as_ref()
    }
    fn secret_namespace(&self, _cluster_resource_namespace: &str) -> String {
        self.metadata.namespace.clone().unwrap_or_default()
    }
    fn api(client: kube::Client, namespace: &str) -> kube::Api<Self> {
        kube::Api::namespaced(client, namespace)
    }
}

impl IssuerResource for ClusterPrivateCA {
    type ScopeOf = k8s_openapi::ClusterResourceScope;
    const KIND: &'static str = "ClusterPrivateCA";
    fn issuer_spec(&self) -> &IssuerSpec {
        &self.spec.issuer
    }
    fn issuer_status(&self) -> Option<&IssuerStatus> {
        self.status.as_ref()
    }
    fn secret_namespace(&self, cluster_resource_namespace: &str) -> String {
        cluster_resource_namespace.to_string()
    }
    fn api(client: kube::Client, _namespace: &str) -> kube::Api<Self> {
        kube::Api::all(client)
    }
}
