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
    /// Tag of the NCP Private CA that signs certificates (as shown by Get CA List, e.g. `abcd1234-efgh5678`):
    /// letters and digits in groups joined by `-`.
    #[schemars(
        length(min = 1, max = 128),
        regex(pattern = r"^[A-Za-z0-9]+(-[A-Za-z0-9]+)*$")
    )]
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

    /// Subordinate mode: when set, the controller keeps an intermediate CA in the cluster (key generated
    /// here, certificate signed by the NCP CA `caTag` with Sign Sub Csr) and signs CertificateRequests
    /// locally with it: no NCP call per certificate, no NCP issuance limit, and issuance goes on while NCP
    /// is unreachable. Certificates signed this way cannot be revoked in NCP (see the README).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subordinate: Option<SubordinateSpec>,
}

/// The in-cluster intermediate CA of subordinate mode.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubordinateSpec {
    /// Name of the Secret that holds the intermediate (`tls.key`, `tls.crt` = the intermediate and the
    /// chain above it without the root, `ca.crt` = the NCP root). It lives where the issuer reads its
    /// credentials (the PrivateCA's namespace; the cluster resource namespace for a ClusterPrivateCA).
    /// The controller creates and owns it; an existing Secret it did not create is never overwritten.
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,

    /// Subject of the intermediate. Default: common name `<issuer name> intermediate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<SubordinateSubject>,

    /// Key of the intermediate, one of the key types NCP signs: `EC256` (default), `EC521`, `RSA2048`,
    /// `RSA4096`. A change rotates the intermediate.
    #[serde(default)]
    pub key_algorithm: SubordinateKeyAlgorithm,

    /// Requested life of the intermediate, a Go duration (`8760h`), rounded up to whole days for NCP
    /// and clamped to 1..3650 days and to the NCP CA's own life. Default `8760h` (365 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,

    /// How long before its end the intermediate is replaced by a new one (fresh key), a Go duration.
    /// Default: a third of its life; at most two thirds of it (so that it is not renewed over and
    /// over). Locally signed certificates never outlive the intermediate, so a longer margin gives
    /// leaves longer lives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_before: Option<String>,
}

/// Subject of the intermediate certificate.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubordinateSubject {
    /// Common name (CN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub common_name: Option<String>,
    /// Organizations (O).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub organizations: Vec<String>,
    /// Organizational units (OU).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub organizational_units: Vec<String>,
    /// Countries (C), two-letter codes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub countries: Vec<String>,
    /// States or provinces (ST).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub provinces: Vec<String>,
    /// Localities (L).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub localities: Vec<String>,
}

/// Key type of the intermediate (NCP's names).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum SubordinateKeyAlgorithm {
    /// ECDSA P-256.
    #[default]
    #[serde(rename = "EC256")]
    Ec256,
    /// ECDSA P-521.
    #[serde(rename = "EC521")]
    Ec521,
    /// RSA 2048.
    #[serde(rename = "RSA2048")]
    Rsa2048,
    /// RSA 4096.
    #[serde(rename = "RSA4096")]
    Rsa4096,
}

impl SubordinateKeyAlgorithm {
    /// The NCP key type.
    #[must_use]
    pub fn key_type(self) -> crate::ncp::types::KeyType {
        use crate::ncp::types::KeyType;
        match self {
            Self::Ec256 => KeyType::Ec256,
            Self::Ec521 => KeyType::Ec521,
            Self::Rsa2048 => KeyType::Rsa2048,
            Self::Rsa4096 => KeyType::Rsa4096,
        }
    }
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
    /// The in-cluster intermediate, in subordinate mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subordinate: Option<SubordinateStatus>,
}

/// The intermediate that signs in subordinate mode.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubordinateStatus {
    /// The Secret that holds it.
    pub secret_name: String,
    /// Its serial (colon-separated hex, as NCP shows serials).
    pub serial_number: String,
    /// Its subject.
    pub subject: String,
    /// Its key type (`EC256`, `EC521`, `RSA2048`, `RSA4096`).
    pub key_algorithm: String,
    /// Start of its validity (RFC 3339).
    pub not_before: String,
    /// End of its validity (RFC 3339); locally signed certificates never outlive it.
    pub not_after: String,
    /// When it will be replaced by a new intermediate (RFC 3339).
    pub renewal_time: String,
    /// SHA-256 (hex) of the root the intermediate chains to (`ca.crt`), as checked against NCP. While
    /// NCP cannot be asked, only an intermediate under this root signs.
    #[serde(default)]
    pub root_sha256: String,
    /// The last value of the `pca.ncp-issuer.dev/renew-intermediate` annotation that was acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_renew_request: Option<String>,
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
    ),
    // The condition's message, with `kubectl get -o wide` (priority 1).
    printcolumn(
        name = "Message",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].message",
        priority = 1
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
    ),
    // The condition's message, with `kubectl get -o wide` (priority 1).
    printcolumn(
        name = "Message",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].message",
        priority = 1
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
    /// How the issuer names itself on the Secrets it owns: `Kind/namespace/name` or `Kind/name`.
    fn owner_id(&self) -> String {
        let name = self.meta().name.as_deref().unwrap_or_default();
        match self.meta().namespace.as_deref() {
            Some(ns) if !ns.is_empty() => format!("{}/{ns}/{name}", Self::KIND),
            _ => format!("{}/{name}", Self::KIND),
        }
    }
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

#[cfg(test)]
mod printer_column_tests {
    use super::{ClusterPrivateCA, PrivateCA};
    use kube::CustomResourceExt as _;

    /// (name, jsonPath, priority) of the served version's printer columns.
    fn columns(
        crd: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    ) -> Vec<(String, String, i32)> {
        crd.spec.versions[0]
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| (c.name.clone(), c.json_path.clone(), c.priority.unwrap_or(0)))
            .collect()
    }

    #[test]
    fn both_kinds_show_ready_reason_ca_age_and_with_wide_output_the_message() {
        for crd in [PrivateCA::crd(), ClusterPrivateCA::crd()] {
            let columns = columns(&crd);
            let names: Vec<&str> = columns.iter().map(|(n, _, _)| n.as_str()).collect();
            assert_eq!(names, ["Ready", "Reason", "CA", "Age", "Message"]);
            let (_, path, priority) = &columns[4];
            assert_eq!(path, ".status.conditions[?(@.type==\"Ready\")].message");
            assert_eq!(*priority, 1, "Message only with -o wide");
            assert!(columns[..4].iter().all(|(_, _, p)| *p == 0));
        }
    }
}
