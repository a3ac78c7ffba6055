//! PEM (RFC 7468) through the `pem` crate. [`blocks`] is the one PEM reader of the crate; the other
//! readers here only pick blocks by label from its answer.

use super::error::PkiError;

/// One decoded PEM block.
#[derive(Clone, PartialEq, Eq)]
pub struct PemBlock {
    /// The label between `BEGIN ` and `-----`, e.g. `CERTIFICATE`.
    pub label: String,
    /// The decoded contents.
    pub der: Vec<u8>,
}

impl PemBlock {
    /// The block on its own, encoded as [`encode`] does.
    #[must_use]
    pub fn to_pem(&self) -> String {
        encode(&self.label, &self.der)
    }
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

/// Encodes DER as PEM: LF line endings, 64-character Base64 lines, a trailing newline.
#[must_use]
pub fn encode(label: &str, der: &[u8]) -> String {
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    pem::encode_config(&pem::Pem::new(label, der), config)
}

/// Decodes every PEM block of `text`, in order; text outside blocks is ignored, and CRLF line endings
/// and indentation are accepted. A block whose body is not valid Base64, whose END label differs, that
/// carries RFC 1421 headers, or that has no END line at all is an error.
pub fn blocks(text: &str) -> Result<Vec<PemBlock>, PkiError> {
    let parsed = pem::parse_many(text).map_err(|e| PkiError::Pem(e.to_string()))?;
    // `pem` stops without a word at a BEGIN line that has no END line: such text is cut short, and
    // reading only the blocks before it would hide that.
    if text.matches("-----BEGIN ").count() != parsed.len() {
        return Err(PkiError::Pem("a BEGIN line has no END line".into()));
    }
    parsed
        .into_iter()
        .map(|p| {
            if p.tag().contains(['\r', '\n']) {
                return Err(PkiError::Pem("malformed BEGIN line".into()));
            }
            // Headers belong to legacy encrypted keys, which nothing here reads; dropping them would
            // change what the block means.
            if p.headers().iter().next().is_some() {
                return Err(PkiError::Pem(format!("{} block carries headers", p.tag())));
            }
            Ok(PemBlock {
                label: p.tag().to_string(),
                der: p.into_contents(),
            })
        })
        .collect()
}

/// Decodes the blocks of `text` whose label is one of `labels`.
pub fn decode_labeled(text: &str, labels: &[&str]) -> Result<Vec<Vec<u8>>, PkiError> {
    Ok(blocks(text)?
        .into_iter()
        .filter(|b| labels.contains(&b.label.as_str()))
        .map(|b| b.der)
        .collect())
}

/// Decodes exactly one block with one of `labels`; other blocks are an error too.
pub fn decode_one(text: &str, labels: &[&str]) -> Result<Vec<u8>, PkiError> {
    let mut found = blocks(text)?;
    match found.len() {
        0 => Err(PkiError::Pem(format!(
            "no {} block found",
            labels.join("/")
        ))),
        1 => {
            let block = found.remove(0);
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
        assert!(pem.ends_with("-----END CERTIFICATE-----\n") && !pem.contains('\r'));
        assert!(pem.lines().all(|l| l.len() <= 64 || l.starts_with("-----")));
        let twice = format!("junk\r\n{}\n  {}", pem.replace('\n', "\r\n"), pem);
        let found = blocks(&twice).unwrap();
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].label, "CERTIFICATE");
        assert_eq!(found[0].der, der);
        assert_eq!(found[1].to_pem(), pem);
    }

    #[test]
    fn malformed_pem_is_an_error_not_a_panic() {
        for bad in [
            "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----",
            "-----BEGIN CERTIFICATE-----\nAAAA\n",
            "-----BEGIN CERT",
            "-----BEGIN X-----\nAAAA\n-----END Y-----",
            "-----BEGIN X-----\nAAAA\n-----END X-----\n-----BEGIN X-----\nAAAA\n",
            "-----BEGIN X-----\nProc-Type: 4,ENCRYPTED\n\nAAAA\n-----END X-----",
        ] {
            assert!(blocks(bad).is_err(), "{bad}");
        }
        assert!(blocks("no pem here").unwrap().is_empty());
        assert!(decode_one("no pem here", &["CERTIFICATE"]).is_err());
        let pem = encode("PRIVATE KEY", b"x");
        assert!(decode_one(&pem, &["CERTIFICATE"]).is_err());
        assert!(!format!("{:?}", blocks(&pem).unwrap()).contains("eA"));
    }
}
