//! Certificate serial numbers and their NCP text form (lowercase colon hex, `1a:2b:…`).

use super::error::PkiError;
use rand::RngCore as _;
use std::fmt;

/// A positive certificate serial number, stored without leading zero octets.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Serial(Vec<u8>);

impl Serial {
    /// Octets of a generated serial (the RFC 5280 maximum).
    pub const LEN: usize = 20;

    /// A random 20-octet serial: positive (first octet below 0x80) and without a leading zero octet,
    /// so it encodes in exactly 20 octets and prints as 20 colon-separated groups.
    #[must_use]
    pub fn random() -> Self {
        let mut bytes = [0u8; Self::LEN];
        rand::rng().fill_bytes(&mut bytes);
        bytes[0] &= 0x7f;
        if bytes[0] == 0 {
            bytes[0] = 0x01;
        }
        Self(bytes.to_vec())
    }

    /// A serial from its big-endian magnitude (leading zero octets are dropped).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PkiError> {
        let start = bytes.iter().take_while(|b| **b == 0).count();
        let trimmed = &bytes[start..];
        if trimmed.is_empty() {
            // Zero is a legal (if unwise) serial.
            return if bytes.is_empty() {
                Err(PkiError::Serial("empty serial".into()))
            } else {
                Ok(Self(vec![0]))
            };
        }
        Ok(Self(trimmed.to_vec()))
    }

    /// Parses colon hex (`1a:2b:…`, either case): 1 to 20 groups of exactly two hex digits.
    pub fn parse(text: &str) -> Result<Self, PkiError> {
        let groups: Vec<&str> = text.split(':').collect();
        if groups.is_empty() || groups.len() > Self::LEN {
            return Err(PkiError::Serial(format!(
                "{text:?} must have 1 to 20 octets"
            )));
        }
        let mut bytes = Vec::with_capacity(groups.len());
        for g in groups {
            if g.len() != 2 || !g.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(PkiError::Serial(format!(
                    "{text:?} is not colon-separated hex octets"
                )));
            }
            let byte = u8::from_str_radix(g, 16).map_err(|_| {
                PkiError::Serial(format!("{text:?} is not colon-separated hex octets"))
            })?;
            bytes.push(byte);
        }
        Self::from_bytes(&bytes)
    }

    /// The big-endian magnitude.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The NCP text form: lowercase hex octets joined by `:`.
    #[must_use]
    pub fn to_colon_hex(&self) -> String {
        self.0
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    }
}

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_colon_hex())
    }
}

impl fmt::Debug for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Serial({})", self.to_colon_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_serials_are_twenty_positive_octets_in_lowercase_colon_hex() {
        for _ in 0..200 {
            let s = Serial::random();
            assert_eq!(s.as_bytes().len(), 20);
            assert!(s.as_bytes()[0] > 0 && s.as_bytes()[0] < 0x80);
            let text = s.to_colon_hex();
            assert_eq!(text.len(), 20 * 3 - 1);
            assert_eq!(text, text.to_lowercase());
            assert_eq!(Serial::parse(&text).unwrap(), s);
        }
    }

    #[test]
    fn parsing_accepts_upper_case_and_rejects_bad_syntax() {
        assert_eq!(Serial::parse("1A:2b").unwrap().to_colon_hex(), "1a:2b");
        assert_eq!(Serial::parse("00:ff").unwrap().to_colon_hex(), "ff");
        for bad in [
            "",
            "1",
            "1a2b",
            "1a:2",
            "1a::2b",
            "zz:11",
            "1a:2b:",
            &["aa"; 21].join(":"),
        ] {
            assert!(Serial::parse(bad).is_err(), "{bad}");
        }
    }
}
