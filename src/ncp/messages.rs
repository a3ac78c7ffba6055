//! Service error messages, verbatim from NCP's error table, with the codes we pair them with.
//!
//! Only messages of the documented table belong here (a test checks a few that are not). Where NCP
//! documents no message for a case, the emulator answers the nearest documented one and lists the
//! choice among its deviations (see `crate::emulator`).
//!
//! The emulator answers with these; the client and the operator classify answers by them.

/// A service-level error: HTTP status, `code` and the verbatim `msg`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceMessage {
    /// Which message this is.
    pub id: MessageId,
    /// HTTP status the service answers with.
    pub http_status: u16,
    /// Upper-snake `code`.
    pub code: &'static str,
    /// Verbatim `msg`.
    pub msg: &'static str,
}

macro_rules! messages {
    ($($name:ident / $id:ident = ($status:expr, $code:expr, $msg:expr);)*) => {
        /// Which documented message an answer carried: decided once, when the answer is decoded, so
        /// that nothing downstream compares message text.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum MessageId {
            $(
                #[doc = $msg]
                $id,
            )*
        }
        $(
            #[doc = $msg]
            pub const $name: ServiceMessage = ServiceMessage { id: MessageId::$id, http_status: $status, code: $code, msg: $msg };
        )*
        /// Every message this module knows.
        pub const ALL: &[ServiceMessage] = &[$($name),*];
    };
}

messages! {
    INVALID_REQUEST / InvalidRequest = (400, "INVALID_REQUEST", "Invalid request.");
    ID_NO_MISSING / IdNoMissing = (400, "EMPTY_ID_NO", "idNo is missing.");
    ALIAS_MISSING / AliasMissing = (400, "EMPTY_CA_ALIAS", "alias is missing.");
    COMMON_NAME_MISSING / CommonNameMissing = (400, "EMPTY_COMMON_NAME", "common name is missing.");
    X509_PARAMETERS_MISSING / X509ParametersMissing = (400, "EMPTY_X509_PARAMETERS", "x509Parameters are missing.");
    CSR_MISSING / CsrMissing = (400, "EMPTY_CSR", "csr is missing.");
    CERT_MISSING / CertMissing = (400, "EMPTY_CERT", "cert is missing.");
    STATUS_MISSING / StatusMissing = (400, "EMPTY_STATUS", "status is missing.");
    SERIAL_NO_MISSING / SerialNoMissing = (400, "EMPTY_SERIAL_NO", "serial no is missing.");
    CA_TYPE_MISSING / CaTypeMissing = (400, "EMPTY_CA_TYPE", "ca type is missing.");
    BODY_MISSING / BodyMissing = (400, "INVALID_REQUEST", "The request body is missing.");
    CA_TAG_MISSING / CaTagMissing = (400, "INVALID_PATH", "caTag is missing.");
    CHAIN_MISSING / ChainMissing = (400, "INVALID_INPUT_CA_CHAIN", "chain is missing.");
    EXPIRY_MISSING / ExpiryMissing = (400, "INVALID_INPUT", "expiry is missing.");
    OCSP_SERVERS_MISSING / OcspServersMissing = (400, "INVALID_INPUT", "ocsp_servers are missing.");
    INVALID_INPUT / InvalidInput = (400, "INVALID_INPUT", "Invalid input.");
    INVALID_CERTIFICATE_VALUE / InvalidCertificateValue = (400, "INVALID_INPUT_CERT", "Invalid certificate value.");
    INVALID_STATUS_VALUE / InvalidStatusValue = (400, "INVALID_INPUT_STATUS", "Invalid status value.");
    INVALID_PERIOD / InvalidPeriod = (400, "INVALID_INPUT_PERIOD", "Invalid period value.");
    INVALID_PAGE_NO / InvalidPageNo = (400, "INVALID_INPUT_PAGENUMBBER", "Invalid page no value.");
    INVALID_SERIAL_NO / InvalidSerialNo = (400, "INVALID_INPUT_SERIAL_NO", "Invalid serial no value.");
    ALIAS_TOO_LONG / AliasTooLong = (400, "EXCEED_CA_ALIAS", "ca alias exceeded the allowed length.");
    MEMO_TOO_LONG / MemoTooLong = (400, "INVALID_INPUT", "memo exceeded the allowed length.");
    COMMON_NAME_TOO_LONG / CommonNameTooLong = (400, "EXCEED_COMMON_NAME", "common name exceeded the allowed length.");
    ORGANIZATION_TOO_LONG / OrganizationTooLong = (400, "INVALID_INPUT", "organization exceeded the allowed length.");
    ORGANIZATION_UNIT_TOO_LONG / OrganizationUnitTooLong = (400, "INVALID_INPUT", "organization unit exceeded the allowed length.");
    STATE_PROVINCE_TOO_LONG / StateProvinceTooLong = (400, "INVALID_INPUT", "state province exceeded the allowed length.");
    LOCALITY_TOO_LONG / LocalityTooLong = (400, "INVALID_INPUT", "locality exceeded the allowed length.");
    STREET_ADDRESS_TOO_LONG / StreetAddressTooLong = (400, "INVALID_INPUT", "street address exceeded the allowed length.");
    UNSUPPORTED_KEY_BITS / UnsupportedKeyBits = (400, "INVALID_X509_KEY_TYPE", "Unsupported keyBits.");
    INVALID_KEY_TYPE / InvalidKeyType = (400, "INVALID_X509_KEY_TYPE", "Invalid keyType.");
    UNSUPPORTED_KEY_TYPE / UnsupportedKeyType = (400, "INVALID_X509_KEY_TYPE", "Invalid key type.");
    KEY_BITS_MISSING / KeyBitsMissing = (400, "INVALID_INPUT", "key bits are missing.");
    INVALID_CSR / InvalidCsr = (400, "INVALID_INPUT", "Invalid csr.");
    INVALID_ID_NO / InvalidIdNo = (400, "INVAILD_ID_NO", "Invalid id no.");
    INVALID_USER / InvalidUser = (400, "INVALID_USER", "Invalid user.");
    INVALID_IP / InvalidIp = (400, "INVALID_X509_IP", "Invalid ip.");
    INVALID_URI / InvalidUri = (400, "INVALID_X509_URI", "Invalid uir.");
    INVALID_CA_CHAIN / InvalidCaChain = (400, "INVALID_INPUT_CA_CHAIN", "Certificate validation failed: The CA chain is invalid.");
    CA_CERT_NOT_REVOCABLE / CaCertNotRevocable = (400, "INVALID_CERT", "The CA certificate can't be revoked.");
    KEY_BITS_MISMATCH / KeyBitsMismatch = (400, "INVALID_INPUT", "CSR's keyBits and the request body's keyBits don't match.");
    KEY_TYPE_MISMATCH / KeyTypeMismatch = (400, "INVALID_INPUT", "CSR's keyType and the request body's keyType don't match.");
    INVALID_STATUS / InvalidStatus = (400, "INVALID_STATUS", "Invalid status.");
    INVALID_CA_STATUS / InvalidCaStatus = (400, "INVALID_CA_STATUS", "Invalid ca status.");
    INVALID_ISSUER_CA_STATUS / InvalidIssuerCaStatus = (400, "INVALID_ISSUER_CA", "Invalid issuer ca status.");
    INVALID_CA_TYPE / InvalidCaType = (400, "INVALID_INPUT", "Invalid ca type.");
    INVALID_CERT / InvalidCert = (400, "INVALID_CERT", "Invalid cert.");
    SIGNING_LIMIT_EXCEEDED / SigningLimitExceeded = (400, "EXCEED_SIGNING_COUNT", "The maximum number of issuances has been exceeded. Certificate issuance can't exceed 30,000. If you need additional issuance, contact the customer center.");
    CA_VALIDITY_EXCEEDED / CaValidityExceeded = (400, "EXCEED_EXPIRY_DATE", "The CA validity period can't be exceeded.");
    CA_LIMIT_EXCEEDED / CaLimitExceeded = (400, "INVALID_INPUT", "The maximum number of CAs that can be created has been exceeded. Up to 10 root/intermediate CAs can be created.");
    ALIAS_EXISTS / AliasExists = (400, "ALREADY_EXIST_ALIAS", "This alias already exists.");
    EXPIRED_CERT / ExpiredCert = (400, "INVALID_CERT", "Expired cert.");
    CRL_CONFIG_NOT_FOUND / CrlConfigNotFound = (400, "NOT_FOUND", "The crl configuration doesn't exist.");
    CA_NOT_FOUND / CaNotFound = (400, "NOT_FOUND", "The CA doesn't exist.");
    CERT_NOT_FOUND / CertNotFound = (400, "NOT_FOUND", "The certificate doesn't exist.");
    TEMPORARILY_UNAVAILABLE / TemporarilyUnavailable = (500, "INTERNAL_SERVER_ERROR", "We apologize for the inconvenience. This is temporarily not available. If this error persists, please contact our customer center");
}

/// Finds the message entry for a verbatim `msg`.
#[must_use]
pub fn by_msg(msg: &str) -> Option<&'static ServiceMessage> {
    ALL.iter().find(|m| m.msg == msg)
}

/// Messages that appear in no NCP documentation and so must never be answered.
#[cfg(test)]
const UNDOCUMENTED: &[&str] = &["period is missing.", "key type is missing."];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_undocumented_message_is_in_the_table_and_every_message_is_unique() {
        for m in ALL {
            assert!(!UNDOCUMENTED.contains(&m.msg), "{}", m.msg);
        }
        let mut msgs: Vec<_> = ALL.iter().map(|m| m.msg).collect();
        msgs.sort_unstable();
        msgs.dedup();
        assert_eq!(msgs.len(), ALL.len());
        assert_eq!(by_msg("Invalid period value."), Some(&INVALID_PERIOD));
    }
}
