//! The 24 Private CA operations: names, methods and idempotency.

use std::fmt;

/// One Private CA API operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operation {
    /// `POST /api/v1/ca/{caTag}/activate`
    ActivateSubCa,
    /// `POST /api/v1/ca/{caTag}/users`
    AddCaUser,
    /// `POST /api/v1/ca?caType=…[&issuerTag=…]`
    CreateCa,
    /// `PUT /api/v1/ca/{caTag}/urls`
    CreateOcsp,
    /// `DELETE /api/v1/ca/{caTag}`
    DeleteCa,
    /// `DELETE /api/v1/ca/{caTag}/users/{idNo}`
    DeleteCaUser,
    /// `DELETE /api/v1/ca/{caTag}/urls`
    DeleteOcsp,
    /// `GET /api/v1/ca/{caTag}`
    GetCa,
    /// `GET /api/v1/ca/{caTag}/chain`
    GetCaChain,
    /// `GET /api/v1/ca/{caTag}/crl`
    GetCaCrl,
    /// `GET /api/v1/ca[?pageNo=n]`
    GetCaList,
    /// `GET /api/v1/ca/{caTag}/users`
    GetCaUserList,
    /// `GET /api/v1/ca/{caTag}/crl/config`
    GetCrlConfig,
    /// `GET /api/v1/ca/{caTag}/cert/{serialNo}`
    GetEndCert,
    /// `GET /api/v1/ca/{caTag}/cert`
    GetEndCertList,
    /// `GET /api/v1/ca/{caTag}/sub/csr`
    GetSubCsr,
    /// `POST /api/v1/ca/{caTag}/cert`
    IssueEndCert,
    /// `POST /api/v1/ca/{caTag}/cert/{serialNo}/revoke`
    RevokeEndCert,
    /// `POST /api/v1/ca/{caTag}/crl/rotate`
    RotateCrl,
    /// `POST /api/v1/ca/{caTag}/cert/sign`
    SignEndCsr,
    /// `POST /api/v1/ca/{caTag}/sub/sign`
    SignSubCsr,
    /// `POST /api/v1/ca/{caTag}/trim`
    TrimCa,
    /// `PUT /api/v1/ca/{caTag}`
    UpdateCa,
    /// `PUT /api/v1/ca/{caTag}/crl/config`
    UpdateCrlConfig,
}

impl Operation {
    /// Every operation.
    pub const ALL: [Operation; 24] = [
        Self::ActivateSubCa,
        Self::AddCaUser,
        Self::CreateCa,
        Self::CreateOcsp,
        Self::DeleteCa,
        Self::DeleteCaUser,
        Self::DeleteOcsp,
        Self::GetCa,
        Self::GetCaChain,
        Self::GetCaCrl,
        Self::GetCaList,
        Self::GetCaUserList,
        Self::GetCrlConfig,
        Self::GetEndCert,
        Self::GetEndCertList,
        Self::GetSubCsr,
        Self::IssueEndCert,
        Self::RevokeEndCert,
        Self::RotateCrl,
        Self::SignEndCsr,
        Self::SignSubCsr,
        Self::TrimCa,
        Self::UpdateCa,
        Self::UpdateCrlConfig,
    ];

    /// A stable snake-case name (metrics labels, fault-injection keys); messages show
    /// [`Operation::ncp_name`].
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::ActivateSubCa => "activate_sub_ca",
            Self::AddCaUser => "add_ca_user",
            Self::CreateCa => "create_ca",
            Self::CreateOcsp => "create_ocsp",
            Self::DeleteCa => "delete_ca",
            Self::DeleteCaUser => "delete_ca_user",
            Self::DeleteOcsp => "delete_ocsp",
            Self::GetCa => "get_ca",
            Self::GetCaChain => "get_ca_chain",
            Self::GetCaCrl => "get_ca_crl",
            Self::GetCaList => "get_ca_list",
            Self::GetCaUserList => "get_ca_user_list",
            Self::GetCrlConfig => "get_crl_config",
            Self::GetEndCert => "get_end_cert",
            Self::GetEndCertList => "get_end_cert_list",
            Self::GetSubCsr => "get_sub_csr",
            Self::IssueEndCert => "issue_end_cert",
            Self::RevokeEndCert => "revoke_end_cert",
            Self::RotateCrl => "rotate_crl",
            Self::SignEndCsr => "sign_end_csr",
            Self::SignSubCsr => "sign_sub_csr",
            Self::TrimCa => "trim_ca",
            Self::UpdateCa => "update_ca",
            Self::UpdateCrlConfig => "update_crl_config",
        }
    }

    /// The operation's name as NCP's API guide titles it ("Get CA", "Sign End CSR"): what messages
    /// and logs show, so a user finds it in NCP's documentation. `Display` writes it.
    #[must_use]
    pub fn ncp_name(self) -> &'static str {
        match self {
            Self::ActivateSubCa => "Activate Sub CA",
            Self::AddCaUser => "Add CA User",
            Self::CreateCa => "Create CA",
            Self::CreateOcsp => "Create OCSP",
            Self::DeleteCa => "Delete CA",
            Self::DeleteCaUser => "Delete CA User",
            Self::DeleteOcsp => "Delete OCSP",
            Self::GetCa => "Get CA",
            Self::GetCaChain => "Get CA Chain",
            Self::GetCaCrl => "Get CA CRL",
            Self::GetCaList => "Get CA List",
            Self::GetCaUserList => "Get CA User List",
            Self::GetCrlConfig => "Get CRL Config",
            Self::GetEndCert => "Get End Cert",
            Self::GetEndCertList => "Get End Cert List",
            Self::GetSubCsr => "Get Sub CSR",
            Self::IssueEndCert => "Issue End Cert",
            Self::RevokeEndCert => "Revoke End Cert",
            Self::RotateCrl => "Rotate CRL",
            Self::SignEndCsr => "Sign End CSR",
            Self::SignSubCsr => "Sign Sub CSR",
            Self::TrimCa => "Trim CA",
            Self::UpdateCa => "Update CA",
            Self::UpdateCrlConfig => "Update CRL Config",
        }
    }

    /// Parses [`Operation::name`].
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|op| op.name() == name)
    }

    /// The HTTP method.
    #[must_use]
    pub fn method(self) -> http::Method {
        use http::Method;
        match self {
            Self::GetCa
            | Self::GetCaChain
            | Self::GetCaCrl
            | Self::GetCaList
            | Self::GetCaUserList
            | Self::GetCrlConfig
            | Self::GetEndCert
            | Self::GetEndCertList
            | Self::GetSubCsr => Method::GET,
            Self::CreateOcsp | Self::UpdateCa | Self::UpdateCrlConfig => Method::PUT,
            Self::DeleteCa | Self::DeleteCaUser | Self::DeleteOcsp => Method::DELETE,
            Self::ActivateSubCa
            | Self::AddCaUser
            | Self::CreateCa
            | Self::IssueEndCert
            | Self::RevokeEndCert
            | Self::RotateCrl
            | Self::SignEndCsr
            | Self::SignSubCsr
            | Self::TrimCa => Method::POST,
        }
    }

    /// Whether repeating the call after an ambiguous failure (timeout, lost connection, 5xx) can do no
    /// harm. Operations that create something (a CA, a certificate) are not: a repeat could create a
    /// second one, so the client retries them only when the request certainly never reached the service.
    #[must_use]
    pub fn is_idempotent(self) -> bool {
        !matches!(
            self,
            Self::CreateCa | Self::IssueEndCert | Self::SignEndCsr | Self::SignSubCsr
        )
    }

    /// Whether the operation issues a certificate (counts against the CA's signing limit).
    #[must_use]
    pub fn issues_certificate(self) -> bool {
        matches!(
            self,
            Self::IssueEndCert | Self::SignEndCsr | Self::SignSubCsr
        )
    }
}

/// NCP's name of the operation ([`Operation::ncp_name`]), e.g. "Get CA".
impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.ncp_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_name_round_trips_and_is_unique() {
        let mut names: Vec<_> = Operation::ALL.iter().map(|o| o.name()).collect();
        for op in Operation::ALL {
            assert_eq!(Operation::from_name(op.name()), Some(op));
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), 24);
    }

    #[test]
    fn messages_name_operations_as_ncps_api_guide_does() {
        assert_eq!(Operation::GetCa.to_string(), "Get CA");
        assert_eq!(Operation::SignEndCsr.to_string(), "Sign End CSR");
        assert_eq!(Operation::GetCaList.to_string(), "Get CA List");
        let mut titles: Vec<_> = Operation::ALL.iter().map(|o| o.ncp_name()).collect();
        titles.sort_unstable();
        titles.dedup();
        assert_eq!(titles.len(), 24);
        // Each title is the snake-case name in words (CSR, CRL, OCSP and CA in capitals).
        for op in Operation::ALL {
            assert_eq!(
                op.ncp_name().to_lowercase().replace(' ', "_"),
                op.name(),
                "{op:?}"
            );
        }
    }
}
