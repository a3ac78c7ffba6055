//! Distinguished names and subject alternative names.

use super::error::PkiError;
use rcgen::{DistinguishedName, DnType, DnValue, SanType};
use std::fmt;
use std::net::IpAddr;
use x509_parser::asn1_rs::Tag;
use x509_parser::extensions::GeneralName;
use x509_parser::x509::X509Name;

/// A name attribute type.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NameAttr {
    /// `CN` (2.5.4.3).
    CommonName,
    /// `C` (2.5.4.6).
    Country,
    /// `ST` (2.5.4.8).
    StateOrProvince,
    /// `L` (2.5.4.7).
    Locality,
    /// `street` (2.5.4.9).
    StreetAddress,
    /// `O` (2.5.4.10).
    Organization,
    /// `OU` (2.5.4.11).
    OrganizationalUnit,
    /// Any other attribute, by OID arcs.
    Other(Vec<u64>),
}

impl NameAttr {
    fn arcs(&self) -> Vec<u64> {
        match self {
            Self::CommonName => vec![2, 5, 4, 3],
            Self::Country => vec![2, 5, 4, 6],
            Self::StateOrProvince => vec![2, 5, 4, 8],
            Self::Locality => vec![2, 5, 4, 7],
            Self::StreetAddress => vec![2, 5, 4, 9],
            Self::Organization => vec![2, 5, 4, 10],
            Self::OrganizationalUnit => vec![2, 5, 4, 11],
            Self::Other(arcs) => arcs.clone(),
        }
    }

    fn from_arcs(arcs: &[u64]) -> Self {
        match arcs {
            [2, 5, 4, 3] => Self::CommonName,
            [2, 5, 4, 6] => Self::Country,
            [2, 5, 4, 8] => Self::StateOrProvince,
            [2, 5, 4, 7] => Self::Locality,
            [2, 5, 4, 9] => Self::StreetAddress,
            [2, 5, 4, 10] => Self::Organization,
            [2, 5, 4, 11] => Self::OrganizationalUnit,
            other => Self::Other(other.to_vec()),
        }
    }

    fn short_name(&self) -> String {
        match self {
            Self::CommonName => "CN".into(),
            Self::Country => "C".into(),
            Self::StateOrProvince => "ST".into(),
            Self::Locality => "L".into(),
            Self::StreetAddress => "street".into(),
            Self::Organization => "O".into(),
            Self::OrganizationalUnit => "OU".into(),
            Self::Other(arcs) => arcs
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join("."),
        }
    }
}

/// The ASN.1 string type an attribute value is encoded with (kept so a name re-encodes identically).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StringEncoding {
    /// UTF8String (what we write by default).
    Utf8,
    /// PrintableString.
    Printable,
    /// IA5String.
    Ia5,
    /// TeletexString.
    Teletex,
    /// BMPString.
    Bmp,
    /// UniversalString.
    Universal,
}

/// One attribute of a name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NameEntry {
    /// The attribute type.
    pub attr: NameAttr,
    /// The value.
    pub value: String,
    /// Its string encoding.
    pub encoding: StringEncoding,
}

/// An X.509 distinguished name, attributes in order.
///
/// Limits (those of rcgen, which encodes it): one attribute per RDN, and one value per attribute
/// type (a repeated type keeps its last value).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Name {
    entries: Vec<NameEntry>,
}

impl Name {
    /// An empty name.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends an attribute (UTF8String; PrintableString for a printable country code).
    pub fn push(&mut self, attr: NameAttr, value: impl Into<String>) {
        let value = value.into();
        let encoding = if attr == NameAttr::Country && is_printable(&value) {
            StringEncoding::Printable
        } else {
            StringEncoding::Utf8
        };
        self.entries.retain(|e| e.attr != attr);
        self.entries.push(NameEntry {
            attr,
            value,
            encoding,
        });
    }

    /// Builder form of [`Name::push`].
    #[must_use]
    pub fn with(mut self, attr: NameAttr, value: impl Into<String>) -> Self {
        self.push(attr, value);
        self
    }

    /// The attributes, in order.
    #[must_use]
    pub fn entries(&self) -> &[NameEntry] {
        &self.entries
    }

    /// The value of the first attribute of a type.
    #[must_use]
    pub fn get(&self, attr: &NameAttr) -> Option<&str> {
        self.entries
            .iter()
            .find(|e| &e.attr == attr)
            .map(|e| e.value.as_str())
    }

    /// The common name.
    #[must_use]
    pub fn common_name(&self) -> Option<&str> {
        self.get(&NameAttr::CommonName)
    }

    /// Whether the name has no attribute.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub(crate) fn from_x509(name: &X509Name<'_>) -> Result<Self, PkiError> {
        let mut out = Self::new();
        for attr in name.iter_attributes() {
            let arcs: Vec<u64> = attr
                .attr_type()
                .iter()
                .ok_or_else(|| PkiError::Name("attribute OID too large".into()))?
                .collect();
            let value = attr.attr_value();
            let data = value.data;
            let utf8 = || {
                std::str::from_utf8(data)
                    .map(str::to_string)
                    .map_err(|_| PkiError::Name("attribute value is not valid text".into()))
            };
            let (value, encoding) = match value.header.tag() {
                Tag::Utf8String => (utf8()?, StringEncoding::Utf8),
                Tag::PrintableString | Tag::NumericString => (utf8()?, StringEncoding::Printable),
                Tag::Ia5String => (utf8()?, StringEncoding::Ia5),
                Tag::T61String => (utf8()?, StringEncoding::Teletex),
                Tag::BmpString => (decode_utf16be(data)?, StringEncoding::Bmp),
                Tag::UniversalString => (decode_utf32be(data)?, StringEncoding::Universal),
                other => {
                    return Err(PkiError::Name(format!(
                        "unsupported attribute value type {other}"
                    )));
                }
            };
            let attr = NameAttr::from_arcs(&arcs);
            out.entries.retain(|e| e.attr != attr);
            out.entries.push(NameEntry {
                attr,
                value,
                encoding,
            });
        }
        Ok(out)
    }

    pub(crate) fn to_rcgen(&self) -> Result<DistinguishedName, PkiError> {
        let mut dn = DistinguishedName::new();
        for e in &self.entries {
            let bad =
                |_| PkiError::Name(format!("value {:?} does not fit its string type", e.value));
            let value = match e.encoding {
                StringEncoding::Utf8 => DnValue::Utf8String(e.value.clone()),
                StringEncoding::Printable => {
                    DnValue::PrintableString(e.value.as_str().try_into().map_err(bad)?)
                }
                StringEncoding::Ia5 => {
                    DnValue::Ia5String(e.value.as_str().try_into().map_err(bad)?)
                }
                StringEncoding::Teletex => {
                    DnValue::TeletexString(e.value.as_str().try_into().map_err(bad)?)
                }
                StringEncoding::Bmp => {
                    DnValue::BmpString(e.value.as_str().try_into().map_err(bad)?)
                }
                StringEncoding::Universal => {
                    DnValue::UniversalString(e.value.as_str().try_into().map_err(bad)?)
                }
            };
            let ty = match &e.attr {
                NameAttr::CommonName => DnType::CommonName,
                NameAttr::Country => DnType::CountryName,
                NameAttr::StateOrProvince => DnType::StateOrProvinceName,
                NameAttr::Locality => DnType::LocalityName,
                NameAttr::Organization => DnType::OrganizationName,
                NameAttr::OrganizationalUnit => DnType::OrganizationalUnitName,
                other => DnType::CustomDnType(other.arcs()),
            };
            dn.push(ty, value);
        }
        Ok(dn)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .entries
            .iter()
            .map(|e| format!("{}={}", e.attr.short_name(), e.value))
            .collect();
        f.write_str(&parts.join(", "))
    }
}

fn is_printable(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_ascii_alphanumeric() || " '()+,-./:=?".contains(c))
}

fn decode_utf16be(data: &[u8]) -> Result<String, PkiError> {
    if !data.len().is_multiple_of(2) {
        return Err(PkiError::Name("odd-length BMPString".into()));
    }
    let units: Vec<u16> = data
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16(&units).map_err(|_| PkiError::Name("invalid BMPString".into()))
}

fn decode_utf32be(data: &[u8]) -> Result<String, PkiError> {
    if !data.len().is_multiple_of(4) {
        return Err(PkiError::Name("bad UniversalString length".into()));
    }
    data.chunks_exact(4)
        .map(|c| {
            char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                .ok_or_else(|| PkiError::Name("invalid UniversalString".into()))
        })
        .collect()
}

/// A subject alternative name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum San {
    /// A DNS name.
    Dns(String),
    /// An IP address.
    Ip(IpAddr),
    /// A URI.
    Uri(String),
    /// An e-mail address (rfc822Name).
    Email(String),
}

impl San {
    pub(crate) fn from_x509(name: &GeneralName<'_>) -> Result<Self, PkiError> {
        Ok(match name {
            GeneralName::DNSName(s) => Self::Dns((*s).to_string()),
            GeneralName::URI(s) => Self::Uri((*s).to_string()),
            GeneralName::RFC822Name(s) => Self::Email((*s).to_string()),
            GeneralName::IPAddress(bytes) => match bytes.len() {
                4 => Self::Ip(IpAddr::from(
                    <[u8; 4]>::try_from(*bytes).map_err(|_| bad_ip())?,
                )),
                16 => Self::Ip(IpAddr::from(
                    <[u8; 16]>::try_from(*bytes).map_err(|_| bad_ip())?,
                )),
                _ => return Err(bad_ip()),
            },
            GeneralName::OtherName(oid, _) => {
                return Err(PkiError::UnsupportedSan(format!("other name {oid}")));
            }
            GeneralName::DirectoryName(_) => {
                return Err(PkiError::UnsupportedSan("directory name".into()));
            }
            GeneralName::RegisteredID(_) => {
                return Err(PkiError::UnsupportedSan("registered id".into()));
            }
            GeneralName::X400Address(_) | GeneralName::EDIPartyName(_) => {
                return Err(PkiError::UnsupportedSan("x400 / edi party name".into()));
            }
            GeneralName::Invalid(_, _) => {
                return Err(PkiError::UnsupportedSan("malformed general name".into()));
            }
        })
    }

    pub(crate) fn to_rcgen(&self) -> Result<SanType, PkiError> {
        let ia5 = |s: &str| {
            s.try_into()
                .map_err(|_| PkiError::UnsupportedSan(format!("{s:?} is not ASCII")))
        };
        Ok(match self {
            Self::Dns(s) => SanType::DnsName(ia5(s)?),
            Self::Uri(s) => SanType::URI(ia5(s)?),
            Self::Email(s) => SanType::Rfc822Name(ia5(s)?),
            Self::Ip(ip) => SanType::IpAddress(*ip),
        })
    }
}

fn bad_ip() -> PkiError {
    PkiError::UnsupportedSan("IP address of bad length".into())
}

impl fmt::Display for San {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Dns(s) => write!(f, "DNS:{s}"),
            Self::Ip(ip) => write!(f, "IP:{ip}"),
            Self::Uri(s) => write!(f, "URI:{s}"),
            Self::Email(s) => write!(f, "email:{s}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_keep_order_and_one_value_per_type() {
        let name = Name::new()
            .with(NameAttr::Country, "KR")
            .with(NameAttr::Organization, "org")
            .with(NameAttr::CommonName, "x")
            .with(NameAttr::CommonName, "y");
        assert_eq!(name.to_string(), "C=KR, O=org, CN=y");
        assert_eq!(name.entries()[0].encoding, StringEncoding::Printable);
        assert_eq!(name.common_name(), Some("y"));
        assert!(name.to_rcgen().is_ok());
    }

    #[test]
    fn non_ascii_sans_are_rejected_when_encoding() {
        assert!(San::Dns("bücher.example".into()).to_rcgen().is_err());
        assert!(San::Dns("a.example".into()).to_rcgen().is_ok());
    }
}
