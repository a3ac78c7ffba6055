//! Annotation and finalizer names: user-facing API (users read them, scripts and `remove-finalizers`
//! act on them), so they live in one place.

// On CertificateRequests.
/// Annotation written before the NCP signing call: signing may have happened from here on.
pub const ANNOTATION_SIGNING_STARTED: &str = "pca.ncp-issuer.dev/signing-started";
/// Annotation with the serial NCP gave the certificate.
pub const ANNOTATION_SERIAL: &str = "pca.ncp-issuer.dev/serial";
/// Annotation with the NCP CA (`caTag`) that signed: on a request (for recovery and revocation) and on
/// an intermediate's Secret.
pub const ANNOTATION_CA_TAG: &str = "pca.ncp-issuer.dev/ca-tag";
/// Finalizer that revokes the certificate on deletion (per the issuer's revocation policy).
pub const FINALIZER_REVOKE: &str = "pca.ncp-issuer.dev/revoke";

// On the Secret of a subordinate issuer's intermediate (and one on the issuer).
/// Annotation on the Secret naming the issuer that owns it (`Kind/namespace/name`).
pub const ANNOTATION_OWNER: &str = "pca.ncp-issuer.dev/owner";
/// Annotation on the Secret: digest of the settings the intermediate was made with (key type,
/// subject); a change rotates it.
pub const ANNOTATION_SPEC_HASH: &str = "pca.ncp-issuer.dev/intermediate-spec";
/// Annotation on the Secret: when the pending key was sent to NCP (RFC 3339).
pub const ANNOTATION_PENDING_SINCE: &str = "pca.ncp-issuer.dev/pending-since";
/// Annotation on the issuer: set it to a new value (a timestamp, say) to have the intermediate renewed
/// now, with a fresh key.
pub const ANNOTATION_RENEW: &str = "pca.ncp-issuer.dev/renew-intermediate";
/// Annotation on the Secret: the value of [`ANNOTATION_RENEW`] the intermediate in it satisfies
/// (written with the intermediate, so that a request is acted on exactly once).
pub const ANNOTATION_RENEW_HANDLED: &str = "pca.ncp-issuer.dev/renew-handled";
/// Annotation on the Secret: no Sign Sub Csr before this time (RFC 3339), after a failed one.
pub const ANNOTATION_RETRY_AFTER: &str = "pca.ncp-issuer.dev/retry-after";
