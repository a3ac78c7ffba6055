//! Input checks, each answering with NCP's verbatim message.

use super::request::{Body, str_field};
use crate::ncp::messages::{self, ServiceMessage};
use crate::ncp::types::{KeyType, Period, X509Parameters};
use crate::pki::{Name, NameAttr, San, Serial};
use std::net::IpAddr;

/// Longest alias (NCP: 15).
pub(crate) const ALIAS_MAX_CHARS: usize = 15;
/// Longest memo. NCP documents a limit but not its value; we chose 256 characters.
pub(crate) const MEMO_MAX_CHARS: usize = 256;
/// Longest common name and organization.
pub(crate) const CN_MAX_CHARS: usize = 64;
/// Longest organization unit, state, locality and street address.
pub(crate) const LONG_FIELD_MAX_CHARS: usize = 128;
/// Length of a sub-account id.
pub(crate) const ID_NO_CHARS: usize = 36;

/// `^[A-Za-z][A-Za-z0-9_-]{2,14}$`: missing, too long ("ca alias exceeded the allowed length."), or
/// otherwise malformed ("Invalid input.").
pub(crate) fn alias(value: Option<&str>) -> Result<String, ServiceMessage> {
    let alias = value.unwrap_or_default();
    if alias.is_empty() {
        return Err(messages::ALIAS_MISSING);
    }
    if alias.chars().count() > ALIAS_MAX_CHARS {
        return Err(messages::ALIAS_TOO_LONG);
    }
    let mut chars = alias.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !first_ok || !rest_ok || alias.chars().count() < 3 {
        return Err(messages::INVALID_INPUT);
    }
    Ok(alias.to_string())
}

/// A memo of at most [`MEMO_MAX_CHARS`].
pub(crate) fn memo(value: Option<String>) -> Result<String, ServiceMessage> {
    let memo = value.unwrap_or_default();
    if memo.chars().count() > MEMO_MAX_CHARS {
        return Err(messages::MEMO_TOO_LONG);
    }
    Ok(memo)
}

/// A key type wire name ("Invalid keyType." otherwise).
pub(crate) fn key_type(value: &str) -> Result<KeyType, ServiceMessage> {
    KeyType::parse(value).ok_or(messages::INVALID_KEY_TYPE)
}

/// A period: `"1"`..`"3650"`, or `MAX` (any case) when `allow_max`; otherwise "Invalid period value.".
pub(crate) fn period(value: &str, allow_max: bool) -> Result<Period, ServiceMessage> {
    match Period::parse(value.trim()) {
        Some(Period::Days(d)) if (1..=Period::MAX_DAYS).contains(&d) => Ok(Period::Days(d)),
        Some(Period::Max) if allow_max => Ok(Period::Max),
        _ => Err(messages::INVALID_PERIOD),
    }
}

/// `pageNo`: absent → 1; an integer ≥ 1; anything else "Invalid page no value.".
pub(crate) fn page_no(value: Option<&str>) -> Result<usize, ServiceMessage> {
    match value {
        None => Ok(1),
        Some(v) => match v.trim().parse::<usize>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => Err(messages::INVALID_PAGE_NO),
        },
    }
}

/// A serial path parameter: missing → "serial no is missing.", not colon hex → "Invalid serial no
/// value."; returned in canonical lowercase form.
pub(crate) fn serial(value: Option<&str>) -> Result<String, ServiceMessage> {
    match value {
        None | Some("") => Err(messages::SERIAL_NO_MISSING),
        Some(s) => Serial::parse(s)
            .map(|s| s.to_colon_hex())
            .map_err(|_| messages::INVALID_SERIAL_NO),
    }
}

/// A sub-account id: missing → "idNo is missing.", not 36 characters → "Invalid id no.".
pub(crate) fn id_no(value: Option<&str>) -> Result<String, ServiceMessage> {
    match value {
        None => Err(messages::ID_NO_MISSING),
        Some(s) if s.trim().is_empty() => Err(messages::ID_NO_MISSING),
        Some(s) if s.chars().count() != ID_NO_CHARS => Err(messages::INVALID_ID_NO),
        Some(s) => Ok(s.to_string()),
    }
}

/// Reads `x509Parameters` (or the 2022 client's `X509CaParameters` / `X509EndCertParameters`).
pub(crate) fn x509_parameters(body: &Body) -> Result<X509Parameters, ServiceMessage> {
    let value = [
        "x509Parameters",
        "X509CaParameters",
        "X509EndCertParameters",
    ]
    .iter()
    .find_map(|k| body.get(*k).filter(|v| !v.is_null()))
    .ok_or(messages::X509_PARAMETERS_MISSING)?;
    let obj = value.as_object().ok_or(messages::INVALID_REQUEST)?;
    let field = |k: &str| str_field(obj, k).map(|v| v.filter(|s| !s.is_empty()));
    Ok(X509Parameters {
        common_name: field("commonName")?,
        alt_name: field("altName")?,
        ip: field("ip")?,
        uri: field("uri")?,
        country: field("country")?,
        state_province: field("stateProvince")?,
        locality: field("locality")?,
        organization: field("organization")?,
        organization_unit: field("organizationUnit")?,
        street_address: field("streetAddress")?,
    })
}

fn too_long(value: Option<&String>, max: usize) -> bool {
    value.is_some_and(|v| v.chars().count() > max)
}

fn list(value: Option<&String>) -> impl Iterator<Item = &str> {
    value
        .map(String::as_str)
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// Checks the subject fields and builds the certificate subject and SANs.
pub(crate) fn subject(p: &X509Parameters) -> Result<(Name, Vec<San>), ServiceMessage> {
    let cn = p
        .common_name
        .as_ref()
        .filter(|c| !c.trim().is_empty())
        .ok_or(messages::COMMON_NAME_MISSING)?;
    // NUL, LF and other control characters would be written into the certificate's subject.
    let fields = [
        &p.common_name,
        &p.alt_name,
        &p.ip,
        &p.uri,
        &p.country,
        &p.state_province,
        &p.locality,
        &p.organization,
        &p.organization_unit,
        &p.street_address,
    ];
    if fields.iter().any(|f| {
        f.as_deref()
            .is_some_and(|v| v.chars().any(char::is_control))
    }) {
        return Err(messages::INVALID_INPUT);
    }
    let checks = [
        (
            too_long(Some(cn), CN_MAX_CHARS),
            messages::COMMON_NAME_TOO_LONG,
        ),
        (
            too_long(p.organization.as_ref(), CN_MAX_CHARS),
            messages::ORGANIZATION_TOO_LONG,
        ),
        (
            too_long(p.organization_unit.as_ref(), LONG_FIELD_MAX_CHARS),
            messages::ORGANIZATION_UNIT_TOO_LONG,
        ),
        (
            too_long(p.state_province.as_ref(), LONG_FIELD_MAX_CHARS),
            messages::STATE_PROVINCE_TOO_LONG,
        ),
        (
            too_long(p.locality.as_ref(), LONG_FIELD_MAX_CHARS),
            messages::LOCALITY_TOO_LONG,
        ),
        (
            too_long(p.street_address.as_ref(), LONG_FIELD_MAX_CHARS),
            messages::STREET_ADDRESS_TOO_LONG,
        ),
    ];
    if let Some((_, msg)) = checks.into_iter().find(|(bad, _)| *bad) {
        return Err(msg);
    }

    let mut sans = Vec::new();
    for name in list(p.alt_name.as_ref()) {
        let ok = name.is_ascii() && !name.contains(char::is_whitespace);
        if !ok {
            return Err(messages::INVALID_INPUT);
        }
        sans.push(if name.contains('@') {
            San::Email(name.to_string())
        } else {
            San::Dns(name.to_string())
        });
    }
    for ip in list(p.ip.as_ref()) {
        sans.push(San::Ip(
            ip.parse::<IpAddr>().map_err(|_| messages::INVALID_IP)?,
        ));
    }
    for uri in list(p.uri.as_ref()) {
        let scheme_ok = uri.split_once(':').is_some_and(|(scheme, rest)| {
            !rest.is_empty()
                && scheme
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        });
        if !scheme_ok || !uri.is_ascii() || uri.contains(char::is_whitespace) {
            return Err(messages::INVALID_URI);
        }
        sans.push(San::Uri(uri.to_string()));
    }

    let mut name = Name::new();
    let parts = [
        (NameAttr::Country, &p.country),
        (NameAttr::StateOrProvince, &p.state_province),
        (NameAttr::Locality, &p.locality),
        (NameAttr::StreetAddress, &p.street_address),
        (NameAttr::Organization, &p.organization),
        (NameAttr::OrganizationalUnit, &p.organization_unit),
    ];
    for (attr, value) in parts {
        if let Some(v) = value {
            name.push(attr, v.clone());
        }
    }
    name.push(NameAttr::CommonName, cn.clone());
    Ok((name, sans))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_follow_the_documented_rules() {
        assert_eq!(alias(Some("CA002")).unwrap(), "CA002");
        assert_eq!(alias(Some("a-b_c")).unwrap(), "a-b_c");
        assert_eq!(alias(None).unwrap_err(), messages::ALIAS_MISSING);
        assert_eq!(alias(Some("")).unwrap_err(), messages::ALIAS_MISSING);
        assert_eq!(
            alias(Some("abcdefghijklmnop")).unwrap_err(),
            messages::ALIAS_TOO_LONG
        );
        for bad in ["ab", "1abc", "ab c", "abc!", "_abc"] {
            assert_eq!(
                alias(Some(bad)).unwrap_err(),
                messages::INVALID_INPUT,
                "{bad}"
            );
        }
    }

    #[test]
    fn periods_are_one_to_3650_days_or_max_where_allowed() {
        assert_eq!(period("1", false).unwrap(), Period::Days(1));
        assert_eq!(period("3650", false).unwrap(), Period::Days(3650));
        assert_eq!(period("max", true).unwrap(), Period::Max);
        for bad in ["0", "3651", "-1", "abc", "", "1.5"] {
            assert_eq!(
                period(bad, true).unwrap_err(),
                messages::INVALID_PERIOD,
                "{bad}"
            );
        }
        assert_eq!(period("MAX", false).unwrap_err(), messages::INVALID_PERIOD);
    }

    #[test]
    fn page_numbers_serials_and_id_numbers_are_checked() {
        assert_eq!(page_no(None).unwrap(), 1);
        assert_eq!(page_no(Some("3")).unwrap(), 3);
        for bad in ["0", "-1", "x", ""] {
            assert_eq!(page_no(Some(bad)).unwrap_err(), messages::INVALID_PAGE_NO);
        }
        assert_eq!(serial(Some("AB:01")).unwrap(), "ab:01");
        assert_eq!(
            serial(Some("xyz")).unwrap_err(),
            messages::INVALID_SERIAL_NO
        );
        assert_eq!(serial(None).unwrap_err(), messages::SERIAL_NO_MISSING);
        assert_eq!(id_no(Some("short")).unwrap_err(), messages::INVALID_ID_NO);
        assert_eq!(id_no(Some(" ")).unwrap_err(), messages::ID_NO_MISSING);
        assert!(id_no(Some("6e4c1234-5678-90ab-cdef-1234567a9baa")).is_ok());
    }

    #[test]
    fn subject_fields_have_their_documented_limits() {
        let ok = X509Parameters {
            common_name: Some("cn".into()),
            alt_name: Some("a.example, ops@example.com".into()),
            ip: Some("10.0.0.1,::1".into()),
            uri: Some("spiffe://x/y".into()),
            ..X509Parameters::default()
        };
        let (name, sans) = subject(&ok).unwrap();
        assert_eq!(name.common_name(), Some("cn"));
        assert_eq!(sans.len(), 5);
        let with = |f: fn(&mut X509Parameters)| {
            let mut p = ok.clone();
            f(&mut p);
            subject(&p).unwrap_err()
        };
        assert_eq!(
            with(|p| p.common_name = None),
            messages::COMMON_NAME_MISSING
        );
        assert_eq!(
            with(|p| p.common_name = Some("x".repeat(65))),
            messages::COMMON_NAME_TOO_LONG
        );
        assert_eq!(
            with(|p| p.organization = Some("x".repeat(65))),
            messages::ORGANIZATION_TOO_LONG
        );
        assert_eq!(
            with(|p| p.organization_unit = Some("x".repeat(129))),
            messages::ORGANIZATION_UNIT_TOO_LONG
        );
        assert_eq!(
            with(|p| p.state_province = Some("x".repeat(129))),
            messages::STATE_PROVINCE_TOO_LONG
        );
        assert_eq!(
            with(|p| p.locality = Some("x".repeat(129))),
            messages::LOCALITY_TOO_LONG
        );
        assert_eq!(
            with(|p| p.street_address = Some("x".repeat(129))),
            messages::STREET_ADDRESS_TOO_LONG
        );
        assert_eq!(
            with(|p| p.ip = Some("10.0.0.300".into())),
            messages::INVALID_IP
        );
        assert_eq!(
            with(|p| p.uri = Some("not a uri".into())),
            messages::INVALID_URI
        );
        assert_eq!(
            with(|p| p.alt_name = Some("bad name".into())),
            messages::INVALID_INPUT
        );
        assert_eq!(
            with(|p| p.common_name = Some("a\0b".into())),
            messages::INVALID_INPUT
        );
        assert_eq!(
            with(|p| p.organization = Some("line\nbreak".into())),
            messages::INVALID_INPUT
        );
    }
}
