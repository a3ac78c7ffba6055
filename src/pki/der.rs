//! Just enough DER to split signed structures and to write the one extension rcgen lacks (AIA).
//!
//! The reader is bounds-checked everywhere and returns `None` on any malformed input.

/// A DER tag-length-value.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tlv<'a> {
    /// The (single-byte) tag.
    pub tag: u8,
    /// The contents.
    pub content: &'a [u8],
    /// The whole encoding: tag, length and contents.
    pub full: &'a [u8],
}

pub(crate) const TAG_SEQUENCE: u8 = 0x30;
pub(crate) const TAG_BIT_STRING: u8 = 0x03;

/// Reads one TLV from the front of `input`, returning it and the rest.
pub(crate) fn read_tlv(input: &[u8]) -> Option<(Tlv<'_>, &[u8])> {
    let (&tag, rest) = input.split_first()?;
    // High-tag-number form does not occur in the structures we read.
    if tag & 0x1f == 0x1f {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    let header_len = input.len() - rest.len();
    let content = &rest[..len];
    let full = &input[..header_len + len];
    Some((Tlv { tag, content, full }, &rest[len..]))
}

/// The parts of a signed structure (certificate, CSR, CRL): `SEQUENCE { tbs, algorithm, signature }`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Signed<'a> {
    /// The whole to-be-signed TLV (what the signature covers).
    pub tbs: &'a [u8],
    /// The contents of the signature AlgorithmIdentifier SEQUENCE.
    pub algorithm: &'a [u8],
    /// The signature bits (the BIT STRING contents after the unused-bits octet).
    pub signature: &'a [u8],
}

/// Splits a signed structure.
pub(crate) fn split_signed(der: &[u8]) -> Option<Signed<'_>> {
    let (outer, trailing) = read_tlv(der)?;
    if outer.tag != TAG_SEQUENCE || !trailing.is_empty() {
        return None;
    }
    let (tbs, rest) = read_tlv(outer.content)?;
    let (alg, rest) = read_tlv(rest)?;
    let (sig, rest) = read_tlv(rest)?;
    if tbs.tag != TAG_SEQUENCE
        || alg.tag != TAG_SEQUENCE
        || sig.tag != TAG_BIT_STRING
        || !rest.is_empty()
    {
        return None;
    }
    let (&unused, bits) = sig.content.split_first()?;
    if unused != 0 {
        return None;
    }
    Some(Signed {
        tbs: tbs.full,
        algorithm: alg.content,
        signature: bits,
    })
}

/// Splits a SubjectPublicKeyInfo into the contents of its AlgorithmIdentifier and the key bits.
pub(crate) fn split_spki(der: &[u8]) -> Option<(&[u8], &[u8])> {
    let (outer, trailing) = read_tlv(der)?;
    if outer.tag != TAG_SEQUENCE || !trailing.is_empty() {
        return None;
    }
    let (alg, rest) = read_tlv(outer.content)?;
    let (key, rest) = read_tlv(rest)?;
    if alg.tag != TAG_SEQUENCE || key.tag != TAG_BIT_STRING || !rest.is_empty() {
        return None;
    }
    let (&unused, bits) = key.content.split_first()?;
    (unused == 0).then_some((alg.content, bits))
}

/// Encodes a TLV.
pub(crate) fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// OID arcs of the Authority Information Access extension.
pub(crate) const OID_AIA: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 1, 1];
/// DER of `id-ad-ocsp`.
const OID_AD_OCSP: &[u8] = &[0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01];
/// DER of `id-ad-caIssuers`.
const OID_AD_CA_ISSUERS: &[u8] = &[0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x02];
/// `[6] IMPLICIT IA5String` (uniformResourceIdentifier).
const TAG_GN_URI: u8 = 0x86;

/// The extnValue contents of an Authority Information Access extension.
pub(crate) fn authority_info_access(ocsp: Option<&str>, ca_issuers: Option<&str>) -> Vec<u8> {
    let mut descriptions = Vec::new();
    for (oid, url) in [(OID_AD_OCSP, ocsp), (OID_AD_CA_ISSUERS, ca_issuers)] {
        if let Some(url) = url {
            let mut inner = oid.to_vec();
            inner.extend(tlv(TAG_GN_URI, url.as_bytes()));
            descriptions.extend(tlv(TAG_SEQUENCE, &inner));
        }
    }
    tlv(TAG_SEQUENCE, &descriptions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tlv_round_trips_short_and_long_lengths() {
        for len in [0usize, 1, 127, 128, 255, 256, 70_000] {
            let content = vec![7u8; len];
            let enc = tlv(TAG_SEQUENCE, &content);
            let (t, rest) = read_tlv(&enc).unwrap();
            assert_eq!(t.tag, TAG_SEQUENCE);
            assert_eq!(t.content.len(), len);
            assert_eq!(t.full.len(), enc.len());
            assert!(rest.is_empty());
        }
    }

    #[test]
    fn truncated_or_garbage_input_is_rejected() {
        for bad in [
            &[][..],
            &[0x30],
            &[0x30, 0x05, 1],
            &[0x30, 0x85, 1, 1, 1, 1, 1],
            &[0x1f, 0],
        ] {
            assert!(read_tlv(bad).is_none(), "{bad:?}");
        }
        assert!(split_signed(&[0x30, 0x00]).is_none());
        assert!(split_spki(&[0x30, 0x00]).is_none());
    }
}
