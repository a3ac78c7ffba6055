//! Every reason we write: condition reasons of our issuers and of CertificateRequests, and event
//! reasons. One enum, so a reason is never a free-form string, behaviour never hangs on a string
//! compare, and the README's reason tables can be checked against the code (a test does).
//!
//! A leaf module: it depends on nothing in the crate, so the NCP client, the controllers and the
//! metrics can all name reasons without a module cycle.

macro_rules! reasons {
    ($($(#[doc = $doc:expr])* $variant:ident,)*) => {
        /// A PascalCase reason, as written in conditions, events and metric labels.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Reason {
            $($(#[doc = $doc])* $variant,)*
        }

        impl Reason {
            /// Every reason, in declaration order.
            pub const ALL: &[Reason] = &[$(Reason::$variant),*];

            /// The reason as written.
            #[must_use]
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Reason::$variant => stringify!($variant),)*
                }
            }
        }
    };
}

reasons! {
    // CertificateRequest `Ready` reasons, as cert-manager defines them.
    /// First touch of a request that is not approved yet.
    Initializing,
    /// Waiting on something: the issuer, or a retryable failure.
    Pending,
    /// Failed for good (`failureTime` set).
    Failed,
    /// Denied by an approver (`failureTime` set).
    Denied,
    /// Signed; `status.certificate` and `status.ca` are set.
    Issued,

    // Why a CertificateRequest failed (the failure counter's `reason` label).
    /// The request itself is unusable: its CSR, duration or usages.
    InvalidRequest,
    /// The CSR's key type cannot be signed.
    UnsupportedKey,
    /// A subordinate issuer refuses to sign a CA.
    CARequestRefused,
    /// NCP refused to sign (a 4xx answer).
    NcpRefused,
    /// Retryable failures went on for longer than the retry budget.
    RetryBudgetSpent,
    /// The certificate NCP returned, or its chain, cannot be used.
    CertificateUnusable,
    /// The certificate recorded on the request no longer exists in NCP.
    CertificateGone,
    /// Signing in the cluster failed.
    SigningFailed,

    // CertificateRequest events.
    /// NCP takes no usage parameter and the issued certificate lacks a requested usage.
    UsagesNotHonoured,
    /// NCP signed a certificate whose validity starts later than the clock-skew tolerance allows
    /// (NCP's clock ahead of ours); it is used once valid.
    CertificateNotYetValid,
    /// The certificate was revoked in NCP after the request was deleted.
    Revoked,
    /// Revocation was refused or abandoned; the request was released anyway.
    RevocationFailed,
    /// Revocation could not be done yet and will be retried.
    RevocationPending,
    /// The signing-started marker is not a time, or lies in the future: the request is searched for
    /// in NCP within the retry budget, never signed again.
    MarkerUnusable,
    /// Signing started but its answer was not recorded: the certificate is looked for in NCP before
    /// any second signing.
    Recovering,

    // CertificateSigningRequest `Failed` reasons (and the reasons above, which apply too).
    /// The CSR's requester may not `reference` the signer.
    SignerReferenceDenied,

    // PodCertificateRequest `Denied` and `Failed` reasons (and the failure causes above).
    /// The issuer's `spec.podCertificates` policy refuses the request.
    PodCertificatePolicyDenied,
    /// The issuer signs through NCP, which cannot sign a request without a CSR.
    PodCertificateNeedsSubordinate,
    /// The request's proof of possession does not verify.
    InvalidProofOfPossession,

    // ClusterTrustBundle events on issuers.
    /// The issuer's ClusterTrustBundle was created or updated.
    TrustBundlePublished,
    /// The cluster does not serve the ClusterTrustBundle API.
    TrustBundleUnavailable,

    // Issuer `Ready` (and `UpstreamReady`) reasons.
    /// The NCP CA is ACTIVE and its chain is usable.
    CAActive,
    /// The NCP CA is not ACTIVE.
    CANotActive,
    /// The NCP CA has expired.
    CAExpired,
    /// The NCP CA has signed as many certificates as NCP allows.
    SigningLimitReached,
    /// Get CA Chain returned nothing usable.
    CAChainInvalid,
    /// The credentials Secret does not exist.
    CredentialsNotFound,
    /// A key of the credentials Secret is missing, empty or not text.
    CredentialsInvalid,
    /// The credentials Secret could not be read (API server error).
    CredentialsUnreadable,
    /// The issuer's spec cannot be used.
    InvalidSpec,
    /// NCP refused the credentials or their permissions.
    AuthenticationFailed,
    /// NCP has no CA with the spec's `caTag`.
    CANotFound,
    /// The NCP endpoint could not be reached.
    EndpointUnreachable,
    /// Any other NCP failure.
    NcpError,

    // Issuer `Headroom` reasons (and the Warning events that announce trouble before it comes).
    /// The CA is far from NCP's cap and from expiry, and so is the intermediate.
    AmpleHeadroom,
    /// The CA has used 80 % or more of NCP's cap of issuances.
    SigningLimitNear,
    /// The CA has used 95 % or more of NCP's cap of issuances.
    SigningLimitCritical,
    /// The CA expires within the warning window.
    CAExpiringSoon,
    /// The intermediate expires within the warning window and its renewal is overdue.
    IntermediateExpiringSoon,

    // Subordinate mode: `Ready` reasons and events of the in-cluster intermediate.
    /// The intermediate is valid and signs.
    IntermediateReady,
    /// A new intermediate is being provisioned.
    Provisioning,
    /// The Secret named by `spec.subordinate.secretName` belongs to someone else.
    SecretConflict,
    /// The operator may not read or write the intermediate's Secret.
    SecretForbidden,
    /// The intermediate's Secret could not be read or written.
    SecretUnavailable,
    /// The intermediate's key could not be generated.
    KeyGenerationFailed,
    /// The intermediate in the Secret, or NCP's answer, is unusable.
    IntermediateInvalid,
    /// The intermediate's Secret was deleted.
    IntermediateMissing,
    /// The intermediate could not be checked against the pinned NCP root.
    IntermediateUnverified,
    /// NCP could not be asked; the intermediate keeps signing.
    UpstreamUnavailable,
    /// The intermediate was replaced by a new one.
    IntermediateRotated,
    /// A first intermediate was issued.
    IntermediateIssued,
    /// The intermediate's Secret was changed by someone else and was restored.
    IntermediateSecretChanged,
    /// Sign Sub Csr failed for the intermediate.
    IntermediateProvisioningFailed,

    // NCP call outcomes (events on requests, metric labels).
    /// The service answered with an error envelope.
    NcpServiceError,
    /// The gateway refused the credentials (401/403).
    NcpAuthenticationFailed,
    /// The gateway throttled the call (429).
    NcpThrottled,
    /// Any other gateway error.
    NcpGatewayError,
    /// No answer within the timeout.
    NcpTimeout,
    /// The connection could not be opened.
    NcpUnreachable,
    /// The connection broke after the request was sent.
    NcpTransportError,
    /// The answer could not be decoded.
    NcpBadResponse,
    /// The request was not sent: an argument is unusable.
    NcpInvalidRequest,
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<Reason> for String {
    fn from(reason: Reason) -> Self {
        reason.as_str().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::Reason;

    #[test]
    fn every_reason_is_pascal_case_and_unique() {
        let mut seen = std::collections::HashSet::new();
        for r in Reason::ALL {
            let s = r.as_str();
            assert!(
                s.chars().next().is_some_and(|c| c.is_ascii_uppercase()),
                "{s}"
            );
            assert!(s.chars().all(|c| c.is_ascii_alphanumeric()), "{s}");
            assert!(seen.insert(s), "{s} twice");
        }
    }

    /// The rows of the README's "Reasons" table: the reason of each.
    fn readme_reasons() -> Vec<String> {
        let readme = include_str!("../README.md");
        let section = readme
            .split("\n### Reasons\n")
            .nth(1)
            .expect("README has a Reasons section");
        let table = section.split("\n#").next().unwrap_or_default();
        table
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| l.split('`').next())
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn the_readme_lists_every_reason() {
        let listed = readme_reasons();
        let all: Vec<String> = Reason::ALL.iter().map(|r| r.as_str().to_string()).collect();
        assert_eq!(
            listed, all,
            "README's Reasons table differs from Reason::ALL (same order)"
        );
    }

    #[test]
    fn every_reason_the_readme_names_elsewhere_exists() {
        // The reasons the README lists for an issuer's Ready condition.
        let readme = include_str!("../README.md");
        let known: std::collections::HashSet<&str> =
            Reason::ALL.iter().map(|r| r.as_str()).collect();
        let status = readme
            .split("**What `status` shows.**")
            .nth(1)
            .and_then(|s| s.split("\n\n").next())
            .expect("README says what status shows");
        let bullets: String = status
            .lines()
            .filter(|l| l.starts_with("- "))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(!bullets.is_empty(), "README lists the Ready reasons");
        for word in bullets.split('`').skip(1).step_by(2) {
            assert!(
                known.contains(word),
                "README names reason {word:?}, which the code never writes"
            );
        }
    }
}
