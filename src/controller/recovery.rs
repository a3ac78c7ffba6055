//! Finding a certificate whose signing answer was lost: NCP has no idempotency key, so before signing
//! again after an ambiguous failure we look through the CA's issued certificates for the one we asked
//! for. Used for CertificateRequests (by CSR key and SANs) and for subordinate intermediates (by key).

use super::Context;
use crate::ncp::{self, NcpError};
use crate::pki::CertInfo;
use std::time::Duration;

/// How far before the signing started a recovered certificate's notBefore may lie: clock skew between
/// us and NCP, and any backdating of notBefore.
pub const RECOVERY_SKEW: Duration = Duration::from_secs(3600);
/// Extra time, on top of twice the NCP request timeout, before a signing call that left no certificate
/// is considered never to have taken effect.
pub const RECOVERY_SETTLE_MARGIN: Duration = Duration::from_secs(5);

/// How long after a signing call started "not found" proves that it never took effect: a call that
/// timed out may still be running inside NCP.
#[must_use]
pub fn settle_window(ctx: &Context) -> Duration {
    ctx.settings.ncp_request_timeout * 2 + RECOVERY_SETTLE_MARGIN
}

/// A certificate found in NCP.
#[derive(Debug, Clone)]
pub struct Recovered {
    /// Its serial, as NCP names it.
    pub serial: String,
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The chain NCP gave with it, PEM.
    pub chain: Vec<String>,
}

/// A certificate of CA `ca_tag` issued since `started_ms` (Unix milliseconds, less [`RECOVERY_SKEW`])
/// that `matches`, newest first. NCP does not document the
/// list's order, so it is read off the first and last entries.
///
/// # Errors
/// When NCP cannot be asked.
pub async fn find_issued(
    ncp: &ncp::Client,
    ca_tag: &str,
    started_ms: i64,
    matches: impl Fn(&CertInfo) -> bool,
) -> Result<Option<Recovered>, NcpError> {
    let since = started_ms - i64::try_from(RECOVERY_SKEW.as_millis()).unwrap_or(0);
    let first = ncp.get_end_cert_list(ca_tag, Some(1)).await?;
    let pages = u32::try_from(first.total_page_no.max(1)).unwrap_or(1);
    let last = if pages > 1 {
        ncp.get_end_cert_list(ca_tag, Some(pages)).await?
    } else {
        first.clone()
    };
    let (Some(oldest_guess), Some(newest_guess)) =
        (first.list_certs.first(), last.list_certs.last())
    else {
        return Ok(None);
    };
    let ascending = if oldest_guess == newest_guess {
        true
    } else {
        let a = ncp
            .get_end_cert(ca_tag, oldest_guess)
            .await?
            .not_before_date;
        let b = ncp
            .get_end_cert(ca_tag, newest_guess)
            .await?
            .not_before_date;
        a <= b
    };
    let order: Vec<u32> = if ascending {
        (1..=pages).rev().collect()
    } else {
        (1..=pages).collect()
    };
    for page in order {
        let list = match page {
            1 => first.clone(),
            p if p == pages => last.clone(),
            p => ncp.get_end_cert_list(ca_tag, Some(p)).await?,
        };
        let serials: Vec<&String> = if ascending {
            list.list_certs.iter().rev().collect()
        } else {
            list.list_certs.iter().collect()
        };
        for serial in serials {
            let cert = ncp.get_end_cert(ca_tag, serial).await?;
            if cert.not_before_date.is_some_and(|nb| nb < since) {
                // Older than the start (with the skew margin): nothing newer is left to look at.
                return Ok(None);
            }
            let Ok(parsed) = crate::pki::parse_certificates_pem(&cert.cert_pem) else {
                continue;
            };
            if parsed.first().is_some_and(&matches) {
                return Ok(Some(Recovered {
                    serial: serial.clone(),
                    cert_pem: cert.cert_pem,
                    chain: cert.ca_chain,
                }));
            }
        }
    }
    Ok(None)
}
