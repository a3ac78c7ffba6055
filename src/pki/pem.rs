//! PEM encoding and decoding (RFC 7468), tolerant of CRLF, indentation and text around the blocks.

use super::PkiError;
use base64::Engine as _;

/// One decoded PEM block.
#[derive(Clone, PartialEq, Eq)]
pub struct PemBlock {
    /// The label between `BEGIN ` and `-----`, e.g. `CERTIFICATE`.
    pub label: String,
    /// The decoded contents.
    pub der: Vec<u8>,
}

impl std::fmt::Debug for PemBlock {
    // Private keys travel in PEM blocks: never print the contents.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PemBlock")
            .field("label", &self.label)
            .field("len", &self.der.len())
            .finish()
    }
}

/// Encodes DER as PEM with 64-character lines and a trailing newline.
#[must_use]
pub fn encode(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::with_capacity(b64.len() + b64.len() / 64 + 2 * label.len() + 40);
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    let bytes = b64.as_bytes();
    for chunk in bytes.chunks(64) {
        // base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}

/// Decodes every PEM block of `text`, in order. Text outside blocks is ignored; a block whose body is
/// not valid Base64 or whose END label differs is an error.
pub fn decode_all(text: &str) -> Result<Vec<PemBlock>, PkiError> {
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let after_begin = &rest[start + "-----BEGIN ".len()..];
        let label_end = after_begin
            .find("-----")
            .ok_or_else(|| PkiError::Pem("unterminated BEGIN line".into()))?;
        let label = &after_begin[..label_end];
        if label.contains('\n') {
            return Err(PkiError::Pem("malformed BEGIN line".into()));
        }
        let body_start = &after_begin[label_end + 5..];
        let end_marker = format!("-----END {label}-----");
        let body_end = body_start
            .find(&end_marker)
            .ok_or_else(|| PkiError::Pem(format!("missing END line for {label}")))?;
        let body: String = body_start[..body_end]
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(body.as_bytes())
            .map_err(|e| PkiError::Pem(format!("bad base64 in {label} block: {e}")))?;
        blocks.push(PemBlock {
            label: label.to_string(),
            der,
        });
        rest = &body_start[body_end + end_marker.len()..];
    }
    Ok(blocks)
}

/// Decodes the blocks of `text` whose label is one of `labels`.
pub fn decode_labeled(text: &str, labels: &[&str]) -> Result<Vec<Vec<u8>>, PkiError> {
    Ok(decode_all(text)?
        .into_iter()
        .filter(|b| labels.contains(&b.label.as_str()))
        .map(|b| b.der)
        .collect())
}

/// Decodes exactly one block with one of `labels`; other blocks are an error too.
pub fn decode_one(text: &str, labels: &[&str]) -> Result<Vec<u8>, PkiError> {
    let mut blocks = decode_all(text)?;
    match blocks.len() {
        0 => Err(PkiError::Pem(format!(
            "no {} block found",
            labels.join("/")
        ))),
        1 => {
            let block = blocks.remove(0);
            if labels.contains(&block.label.as_str()) {
                Ok(block.der)
            } else {
                Err(PkiError::Pem(format!(
                    "expected a {} block, found {}",
                    labels.join("/"),
                    block.label
                )))
            }
        }
        n => Err(PkiError::Pem(format!("expected one PEM block, found {n}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_blocks_decode_back_with_their_labels() {
        let der: Vec<u8> = (0..=200u8).collect();
        let pem = encode("CERTIFICATE", &der);
        assert!(pem.lines().all(|l| l.len() <= 64 || l.starts_with("-----")));
        let twice = format!("junk\r\n{}\n  {}", pem.replace('\n', "\r\n"), pem);
        let blocks = decode_all(&twice).unwrap();
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].label, "CERTIFICATE");
        assert_eq!(blocks[1].der, der);
    }

    #[test]
    fn malformed_pem_is_an_error_not_a_panic() {
        for bad in [
            "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----",
            "-----BEGIN CERTIFICATE-----\nAAAA\n",
            "-----BEGIN CERT",
            "-----BEGIN X-----\nAAAA\n-----END Y-----",
        ] {
            assert!(decode_all(bad).is_err(), "{bad}");
        }
        assert!(decode_one("no pem here", &["CERTIFICATE"]).is_err());
        let pem = encode("PRIVATE KEY", b"x");
        assert!(decode_one(&pem, &["CERTIFICATE"]).is_err());
        assert!(!format!("{:?}", decode_all(&pem).unwrap()).contains("eA"));
    }
}
