//! Wire types of the NCP Private CA API.
//!
//! Serialisation produces the documented shape; deserialisation is tolerant where the documentation and
//! the service disagree: numbers sent as strings, `caChain` as a string or an array, a flat or nested
//! Update CA answer, `urlInfo` entries as a string or an array.

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The response envelope of every Private CA answer, success or service error.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope<T> {
    /// `SUCCESS`, or an upper-snake error code.
    pub code: String,
    /// `Success`, or the error message.
    #[serde(default)]
    pub msg: String,
    /// The operation's payload; `null` for write-only operations and errors.
    #[serde(default = "Option::default")]
    pub data: Option<T>,
}

/// The code of a successful envelope.
pub const SUCCESS: &str = "SUCCESS";

/// The API gateway's error body, returned before a request reaches the service.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GatewayErrorBody {
    /// The error.
    pub error: GatewayError,
}

/// The gateway error.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayError {
    /// Numeric gateway error code (documented as an integer, sent as a string).
    #[serde(deserialize_with = "de_string_or_number")]
    pub error_code: String,
    /// Short message, e.g. `Authentication Failed`.
    #[serde(default)]
    pub message: String,
    /// Optional detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
}

/// CA key types supported by the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyType {
    /// RSA 2048 bits.
    #[serde(rename = "RSA2048")]
    Rsa2048,
    /// RSA 4096 bits.
    #[serde(rename = "RSA4096")]
    Rsa4096,
    /// ECDSA on P-256.
    #[serde(rename = "EC256")]
    Ec256,
    /// ECDSA on P-521.
    #[serde(rename = "EC521")]
    Ec521,
}

impl KeyType {
    /// All key types, in documentation order.
    pub const ALL: [KeyType; 4] = [Self::Rsa2048, Self::Rsa4096, Self::Ec256, Self::Ec521];

    /// The wire name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rsa2048 => "RSA2048",
            Self::Rsa4096 => "RSA4096",
            Self::Ec256 => "EC256",
            Self::Ec521 => "EC521",
        }
    }

    /// Parses a wire name.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Root or intermediate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CaType {
    /// A private root CA.
    #[serde(rename = "PRIVATE_ROOT")]
    PrivateRoot,
    /// A private intermediate CA.
    #[serde(rename = "PRIVATE_SUB")]
    PrivateSub,
}

impl CaType {
    /// The wire name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PrivateRoot => "PRIVATE_ROOT",
            Self::PrivateSub => "PRIVATE_SUB",
        }
    }

    /// Parses a wire name.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "PRIVATE_ROOT" => Some(Self::PrivateRoot),
            "PRIVATE_SUB" => Some(Self::PrivateSub),
            _ => None,
        }
    }
}

/// The status of a CA.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CaStatus {
    /// Usable for issuance.
    Active,
    /// An intermediate waiting for its certificate (Activate Sub CA).
    Pending,
    /// Disabled by its owner.
    Deactivated,
    /// Scheduled for deletion.
    Destroying,
    /// A status this client does not know.
    Other(String),
}

impl CaStatus {
    /// The wire name.
    #[must_use]
    pub fn as_str(&self) -> &str {
        match self {
            Self::Active => "ACTIVE",
            Self::Pending => "PENDING",
            Self::Deactivated => "DEACTIVATED",
            Self::Destroying => "DESTROYING",
            Self::Other(s) => s,
        }
    }

    /// Parses a wire name (unknown values are kept verbatim).
    #[must_use]
    pub fn parse(s: &str) -> Self {
        match s {
            "ACTIVE" => Self::Active,
            "PENDING" => Self::Pending,
            "DEACTIVATED" => Self::Deactivated,
            "DESTROYING" => Self::Destroying,
            other => Self::Other(other.to_string()),
        }
    }
}

impl fmt::Display for CaStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for CaStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for CaStatus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Self::parse(&String::deserialize(d)?))
    }
}

/// Validity in days (`"1"`..`"3650"`) or the maximum the issuer allows (`"MAX"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// A number of days.
    Days(u32),
    /// As long as allowed.
    Max,
}

impl Period {
    /// Largest number of days the service accepts.
    pub const MAX_DAYS: u32 = 3650;

    /// The wire form.
    #[must_use]
    pub fn to_wire(self) -> String {
        match self {
            Self::Days(d) => d.to_string(),
            Self::Max => "MAX".to_string(),
        }
    }

    /// Parses the wire form, accepting `MAX` in any case; range checks are the service's job.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        if s.eq_ignore_ascii_case("max") {
            return Some(Self::Max);
        }
        s.parse().ok().map(Self::Days)
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_wire())
    }
}

impl Serialize for Period {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_wire())
    }
}

/// Subject and SAN parameters of Create CA and Issue End Cert.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct X509Parameters {
    /// Common name (1-64 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub common_name: Option<String>,
    /// DNS names or e-mail addresses, comma-separated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alt_name: Option<String>,
    /// IP addresses, comma-separated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// URIs, comma-separated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// Country.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// State or province (up to 128 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_province: Option<String>,
    /// Locality (up to 128 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locality: Option<String>,
    /// Organization (up to 64 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<String>,
    /// Organizational unit (up to 128 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization_unit: Option<String>,
    /// Street address (Issue End Cert only; up to 128 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub street_address: Option<String>,
}

/// Create CA request body (`caType` and `issuerTag` travel in the query).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateCaRequest {
    /// CA name, 3-15 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memo: Option<String>,
    /// Key type (wire name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_type: Option<String>,
    /// Validity (wire form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<String>,
    /// Subject.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "X509CaParameters"
    )]
    pub x509_parameters: Option<X509Parameters>,
}

/// URLs published for a CA.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UrlInfo {
    /// OCSP responder URLs.
    #[serde(default, deserialize_with = "de_string_list")]
    pub ocsp: Vec<String>,
    /// CRL distribution URLs.
    #[serde(default, deserialize_with = "de_string_list")]
    pub crl: Vec<String>,
    /// CA certificate URLs.
    #[serde(default, deserialize_with = "de_string_list")]
    pub ca: Vec<String>,
}

/// What the service knows of a CA.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CaInfo {
    /// Internal numeric id.
    #[serde(default, deserialize_with = "de_opt_i64")]
    pub ca_id: Option<i64>,
    /// Public id used in paths.
    #[serde(default)]
    pub ca_tag: String,
    /// Name.
    #[serde(default)]
    pub alias: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memo: Option<String>,
    /// `PRIVATE_ROOT` or `PRIVATE_SUB`.
    #[serde(default)]
    pub ca_type: String,
    /// Status.
    #[serde(default = "unknown_status")]
    pub status: CaStatus,
    /// Certificates signed by this CA.
    #[serde(default, deserialize_with = "de_opt_i64")]
    pub signing_count: Option<i64>,
    /// Registration time, ms since the epoch.
    #[serde(default, deserialize_with = "de_opt_i64")]
    pub rgst_date: Option<i64>,
    /// Last status change, ms since the epoch.
    #[serde(default, deserialize_with = "de_opt_i64")]
    pub status_update_date: Option<i64>,
    /// Scheduled deletion time, ms since the epoch.
    #[serde(
        default,
        deserialize_with = "de_opt_i64",
        skip_serializing_if = "Option::is_none"
    )]
    pub destroy_date: Option<i64>,
    /// NCP resource name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nrn: Option<String>,
    /// Published URLs.
    #[serde(default)]
    pub url_info: UrlInfo,
}

fn unknown_status() -> CaStatus {
    CaStatus::Other(String::new())
}

impl Default for CaStatus {
    fn default() -> Self {
        unknown_status()
    }
}

/// The CA's own certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CaCertInfo {
    /// Internal id.
    #[serde(default, deserialize_with = "de_opt_i64")]
    pub ca_cert_id: Option<i64>,
    /// Subject common name.
    #[serde(default)]
    pub common_name: String,
    /// Issuer common name.
    #[serde(default)]
    pub issuer_name: String,
    /// Subject country.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// Subject state or province.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_province: Option<String>,
    /// Subject locality.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locality: Option<String>,
    /// Subject organization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<String>,
    /// Subject organizational unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization_unit: Option<String>,
    /// Validity start, ms since the epoch.
    #[serde(default, deserialize_with = "de_opt_i64")]
    pub not_before_date: Option<i64>,
    /// Validity end, ms since the epoch.
    #[serde(default, deserialize_with = "de_opt_i64")]
    pub not_after_date: Option<i64>,
    /// e.g. `RSA`, `EC`.
    #[serde(default)]
    pub public_key_algorithm: String,
    /// e.g. `SHA256WithRSA`.
    #[serde(default)]
    pub signature_algorithm: String,
    /// Colon-hex serial.
    #[serde(default)]
    pub serial_no: String,
    /// The CA certificate, PEM.
    #[serde(default)]
    pub cert_pem: String,
    /// The CA's chain, PEM, concatenated.
    #[serde(default)]
    pub chain_pem: String,
}

/// A CA with its certificate: the answer of Create CA, Get CA, Activate Sub CA and Get CA List items.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CaDetail {
    /// The CA.
    #[serde(default)]
    pub ca_info: CaInfo,
    /// Its certificate (absent while PENDING).
    #[serde(default)]
    pub ca_cert_info: CaCertInfo,
}

/// Update CA's answer: documented both flat (a `CaInfo`) and nested (`{caInfo, caCertInfo}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UpdatedCa {
    /// The CA after the update.
    pub ca_info: CaInfo,
    /// The certificate, when the nested form was returned.
    pub ca_cert_info: Option<CaCertInfo>,
}

impl<'de> Deserialize<'de> for UpdatedCa {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(d)?;
        if value.get("caInfo").is_some() {
            let detail: CaDetail = serde_json::from_value(value).map_err(de::Error::custom)?;
            let cert =
                (detail.ca_cert_info != CaCertInfo::default()).then_some(detail.ca_cert_info);
            Ok(Self {
                ca_info: detail.ca_info,
                ca_cert_info: cert,
            })
        } else {
            let info: CaInfo = serde_json::from_value(value).map_err(de::Error::custom)?;
            Ok(Self {
                ca_info: info,
                ca_cert_info: None,
            })
        }
    }
}

/// One page of Get CA List.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CaList {
    /// Number of CAs in all pages.
    #[serde(default, deserialize_with = "de_i64")]
    pub total_cnt: i64,
    /// Number of pages.
    #[serde(default, deserialize_with = "de_i64")]
    pub total_page_no: i64,
    /// This page (1-based).
    #[serde(default, deserialize_with = "de_i64")]
    pub current_page_no: i64,
    /// The CAs on this page.
    #[serde(default)]
    pub ca_info_list: Vec<CaDetail>,
}

/// A sub account with rights on a CA.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CaUser {
    /// Login id.
    #[serde(default)]
    pub login_id: String,
    /// Member number (a number in the docs, a string in the 2022 client).
    #[serde(default, alias = "mdrNo", deserialize_with = "de_opt_string_or_number")]
    pub mbr_no: Option<String>,
    /// Sub-account id (36 characters).
    #[serde(default)]
    pub id_no: String,
}

/// Add CA User body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AddCaUserRequest {
    /// Sub-account id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_no: Option<String>,
}

/// Create OCSP body (snake case on the wire).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CreateOcspRequest {
    /// The OCSP responder URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ocsp_servers: Option<String>,
}

/// CRL renewal period, in days, as a string.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrlConfig {
    /// Days between CRL renewals.
    #[serde(default, deserialize_with = "de_opt_string_or_number")]
    pub expiry: Option<String>,
}

/// Update CA body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UpdateCaRequest {
    /// New status: `ACTIVE`, `DEACTIVATED` or `DESTROYING`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// New memo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memo: Option<String>,
}

/// Activate Sub CA body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActivateSubCaRequest {
    /// The signed intermediate certificate, PEM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_pem: Option<String>,
    /// The signer's chain, PEM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_chain_pem: Option<String>,
}

/// Issue End Cert body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IssueEndCertRequest {
    /// Key type of the generated key (wire name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_type: Option<String>,
    /// Validity (wire form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<String>,
    /// Subject and SANs.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "X509EndCertParameters"
    )]
    pub x509_parameters: Option<X509Parameters>,
}

/// Sign End Csr / Sign Sub Csr body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignCsrRequest {
    /// The CSR, PEM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csr_pem: Option<String>,
    /// Validity (wire form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<String>,
    /// Legacy field sent by older issuers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_type: Option<String>,
    /// Legacy field sent by older issuers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_bits: Option<String>,
}

/// A PEM private key returned by Issue End Cert; never shown by `Debug`.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PrivateKeyPem(pub String);

impl fmt::Debug for PrivateKeyPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKeyPem(<redacted>)")
    }
}

/// The answer of Issue End Cert, Sign End Csr and Sign Sub Csr.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IssuedCert {
    /// The certificate, PEM.
    #[serde(default)]
    pub certificate: String,
    /// The generated private key (Issue End Cert only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<PrivateKeyPem>,
    /// The issuing CA's chain: issuing CA first, root last (a string or an array on the wire).
    #[serde(default, deserialize_with = "de_pem_list")]
    pub ca_chain: Vec<String>,
    /// OCSP responder.
    #[serde(default)]
    pub ocsp_responder: String,
    /// The issuing CA's certificate, PEM.
    #[serde(default)]
    pub issuer: String,
    /// Colon-hex serial.
    #[serde(default)]
    pub serial_no: String,
}

/// Get End Cert's answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndCert {
    /// Colon-hex serial.
    #[serde(default)]
    pub serial_no: String,
    /// Subject common name.
    #[serde(default)]
    pub common_name: String,
    /// Validity start, ms since the epoch.
    #[serde(default, deserialize_with = "de_opt_i64")]
    pub not_before_date: Option<i64>,
    /// Validity end, ms since the epoch.
    #[serde(default, deserialize_with = "de_opt_i64")]
    pub not_after_date: Option<i64>,
    /// e.g. `RSA`, `EC`.
    #[serde(default)]
    pub public_key_algorithm: String,
    /// e.g. `SHA256WithRSA`.
    #[serde(default)]
    pub signature_algorithm: String,
    /// The certificate, PEM.
    #[serde(default)]
    pub cert_pem: String,
    /// The issuing CA's chain (a string or an array on the wire).
    #[serde(default, deserialize_with = "de_pem_list")]
    pub ca_chain: Vec<String>,
    /// OCSP responder.
    #[serde(default)]
    pub ocsp_responder: String,
}

/// One page of Get End Cert List.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndCertList {
    /// Certificates in all pages.
    #[serde(default, deserialize_with = "de_i64")]
    pub total_cnt: i64,
    /// Serials on this page.
    #[serde(default)]
    pub list_certs: Vec<String>,
    /// Number of pages.
    #[serde(default, deserialize_with = "de_i64")]
    pub total_page_no: i64,
    /// This page (1-based).
    #[serde(default, deserialize_with = "de_i64")]
    pub current_page_no: i64,
}

/// Get Sub CSR's answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubCsr {
    /// The CSR, PEM.
    #[serde(default)]
    pub csr_pem: String,
}

// ---- what each answer must carry -------------------------------------------------------------

/// What a successful answer must carry: the client refuses an answer without it (a decode error),
/// rather than handing on an empty object.
pub trait Complete {
    /// The first required field that is absent or empty, by its wire name.
    fn missing(&self) -> Option<&'static str>;
}

fn blank(s: &str) -> bool {
    s.trim().is_empty()
}

impl Complete for CaDetail {
    fn missing(&self) -> Option<&'static str> {
        if blank(&self.ca_info.ca_tag) {
            Some("caInfo.caTag")
        } else if self.ca_info.status == CaStatus::default() {
            Some("caInfo.status")
        } else {
            None
        }
    }
}

impl Complete for UpdatedCa {
    fn missing(&self) -> Option<&'static str> {
        if blank(&self.ca_info.ca_tag) {
            Some("caTag")
        } else if self.ca_info.status == CaStatus::default() {
            Some("status")
        } else {
            None
        }
    }
}

impl Complete for CaList {
    fn missing(&self) -> Option<&'static str> {
        self.ca_info_list
            .iter()
            .find_map(Complete::missing)
            .map(|_| "caInfoList[].caInfo.caTag")
    }
}

impl Complete for EndCertList {
    fn missing(&self) -> Option<&'static str> {
        self.list_certs
            .iter()
            .any(|s| blank(s))
            .then_some("listCerts[]")
    }
}

impl Complete for IssuedCert {
    fn missing(&self) -> Option<&'static str> {
        if blank(&self.certificate) {
            Some("certificate")
        } else if blank(&self.serial_no) {
            Some("serialNo")
        } else {
            None
        }
    }
}

impl Complete for EndCert {
    fn missing(&self) -> Option<&'static str> {
        blank(&self.cert_pem).then_some("certPem")
    }
}

impl Complete for SubCsr {
    fn missing(&self) -> Option<&'static str> {
        blank(&self.csr_pem).then_some("csrPem")
    }
}

impl Complete for CrlConfig {
    fn missing(&self) -> Option<&'static str> {
        self.expiry.as_deref().is_none_or(blank).then_some("expiry")
    }
}

/// PEM answers (Get CA Chain, Get CA CRL).
impl Complete for String {
    fn missing(&self) -> Option<&'static str> {
        (!self.contains("-----BEGIN ")).then_some("a PEM block")
    }
}

// ---- tolerant deserialisers -------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(untagged)]
enum Loose {
    Int(i64),
    Float(f64),
    Str(String),
    Null,
}

fn loose_to_i64<E: de::Error>(v: Loose) -> Result<Option<i64>, E> {
    match v {
        Loose::Int(i) => Ok(Some(i)),
        #[allow(clippy::cast_possible_truncation)]
        Loose::Float(f) if f.is_finite() => Ok(Some(f as i64)),
        Loose::Float(_) => Err(E::custom("non-finite number")),
        Loose::Str(s) if s.trim().is_empty() => Ok(None),
        Loose::Str(s) => s
            .trim()
            .parse::<i64>()
            .or_else(|_| {
                // A number sent as "1.7e12": milliseconds, whole by nature; the fraction is dropped.
                #[allow(clippy::cast_possible_truncation)]
                s.trim().parse::<f64>().map(|f| f as i64)
            })
            .map(Some)
            .map_err(|_| E::custom(format!("expected a number, got {s:?}"))),
        Loose::Null => Ok(None),
    }
}

fn de_opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    loose_to_i64(Loose::deserialize(d)?)
}

fn de_i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    Ok(loose_to_i64(Loose::deserialize(d)?)?.unwrap_or_default())
}

fn de_string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(de_opt_string_or_number(d)?.unwrap_or_default())
}

fn de_opt_string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Loose::deserialize(d)? {
        Loose::Int(i) => Some(i.to_string()),
        Loose::Float(f) => Some(f.to_string()),
        Loose::Str(s) => Some(s),
        Loose::Null => None,
    })
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
    Null,
}

fn de_string_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) if s.is_empty() => Vec::new(),
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
        OneOrMany::Null => Vec::new(),
    })
}

/// A chain given as one string of concatenated PEM blocks, or as an array of PEM strings, each of which
/// may itself hold several blocks: always returned as one PEM block per element.
fn de_pem_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let mut blocks = Vec::new();
    for text in de_string_list(d)? {
        blocks.extend(split_pem_blocks(&text).map_err(de::Error::custom)?);
    }
    Ok(blocks)
}

/// Splits concatenated PEM text into its blocks, each re-encoded on its own (LF line endings, trailing
/// newline). Text that is not PEM ([`crate::pki::pem::blocks`] says why) is an error.
pub fn split_pem_blocks(text: &str) -> Result<Vec<String>, crate::pki::error::PkiError> {
    use crate::pki::pem;
    Ok(pem::blocks(text)?
        .iter()
        .map(pem::PemBlock::to_pem)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_chain_is_accepted_as_a_string_or_as_an_array() {
        let pem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let two = format!("{pem}{pem}");
        let as_string: IssuedCert =
            serde_json::from_value(serde_json::json!({"caChain": two})).unwrap();
        let as_array: IssuedCert =
            serde_json::from_value(serde_json::json!({"caChain": [pem, pem]})).unwrap();
        assert_eq!(as_string.ca_chain.len(), 2);
        assert_eq!(as_string.ca_chain, as_array.ca_chain);
    }

    #[test]
    fn numbers_are_accepted_as_numbers_floats_or_strings() {
        let info: CaInfo = serde_json::from_value(serde_json::json!({
            "caId": "12", "signingCount": 3, "statusUpdateDate": 1.7e12, "rgstDate": null,
            "status": "ACTIVE", "urlInfo": {"ocsp": "http://o", "crl": ["http://c"]}
        }))
        .unwrap();
        assert_eq!(info.ca_id, Some(12));
        assert_eq!(info.signing_count, Some(3));
        assert_eq!(info.status_update_date, Some(1_700_000_000_000));
        assert_eq!(info.rgst_date, None);
        assert_eq!(info.status, CaStatus::Active);
        assert_eq!(info.url_info.ocsp, vec!["http://o".to_string()]);
        assert_eq!(info.url_info.crl, vec!["http://c".to_string()]);
    }

    #[test]
    fn update_ca_answer_is_accepted_flat_and_nested() {
        let flat: UpdatedCa =
            serde_json::from_value(serde_json::json!({"caTag": "a-b", "status": "DEACTIVATED"}))
                .unwrap();
        let nested: UpdatedCa = serde_json::from_value(
            serde_json::json!({"caInfo": {"caTag": "a-b", "status": "DEACTIVATED"}, "destroyDate": null}),
        )
        .unwrap();
        assert_eq!(flat.ca_info.ca_tag, "a-b");
        assert_eq!(flat.ca_info, nested.ca_info);
        assert_eq!(nested.ca_info.status, CaStatus::Deactivated);
    }

    #[test]
    fn gateway_error_code_is_accepted_as_a_number_or_a_string() {
        let a: GatewayErrorBody = serde_json::from_str(
            r#"{"error":{"errorCode":200,"message":"Authentication Failed"}}"#,
        )
        .unwrap();
        let b: GatewayErrorBody = serde_json::from_str(
            r#"{"error":{"errorCode":"200","message":"Authentication Failed"}}"#,
        )
        .unwrap();
        assert_eq!(a.error.error_code, "200");
        assert_eq!(b.error.error_code, "200");
    }

    #[test]
    fn period_wire_forms_round_trip() {
        assert_eq!(Period::parse("MAX"), Some(Period::Max));
        assert_eq!(Period::parse("Max"), Some(Period::Max));
        assert_eq!(Period::parse("30"), Some(Period::Days(30)));
        assert_eq!(Period::parse("x"), None);
        assert_eq!(Period::Days(7).to_wire(), "7");
    }

    #[test]
    fn unknown_ca_status_is_kept_verbatim() {
        let s: CaStatus = serde_json::from_str("\"FROZEN\"").unwrap();
        assert_eq!(s, CaStatus::Other("FROZEN".into()));
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"FROZEN\"");
    }

    #[test]
    fn private_key_is_redacted_in_debug_output() {
        let cert = IssuedCert {
            private_key: Some(PrivateKeyPem("-----BEGIN PRIVATE KEY-----\nSECRET".into())),
            ..IssuedCert::default()
        };
        assert!(!format!("{cert:?}").contains("SECRET"));
    }

    #[test]
    fn pem_blocks_are_split_and_normalised() {
        let text = "junk\r\n-----BEGIN CERTIFICATE-----\r\n  AAAA\r\n-----END CERTIFICATE-----\n\n-----BEGIN CERTIFICATE-----\nBB\nBB\n-----END CERTIFICATE-----";
        let blocks = split_pem_blocks(text).unwrap();
        assert_eq!(blocks.len(), 2);
        assert_eq!(
            blocks[0],
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
        );
        assert_eq!(
            blocks[1],
            "-----BEGIN CERTIFICATE-----\nBBBB\n-----END CERTIFICATE-----\n"
        );
        assert!(
            split_pem_blocks("-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----").is_err()
        );
        let garbage = serde_json::json!({"caChain": "-----BEGIN CERTIFICATE-----\nAAAA\n"});
        assert!(serde_json::from_value::<IssuedCert>(garbage).is_err());
    }
}
