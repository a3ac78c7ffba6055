//! Finding a certificate whose signing answer was lost: NCP has no idempotency key, so before signing
//! again after an ambiguous failure we look through the CA's issued certificates for the one we asked
//! for. Used for CertificateRequests (by CSR key and SANs) and for subordinate intermediates (by key).
//!
//! The search is cheap on a busy CA: it looks only at the marker's time [`Window`], reads the list
//! from its newest page and stops at the first page older than the window, at an empty page or at
//! `totalPageNo`; it makes at most [`RECOVERY_CALL_BUDGET`] NCP calls per reconcile (then the caller
//! requeues and the search goes on where it stopped); and every certificate it reads goes into the
//! shared per-CA [`RecoveryIndex`], so that the other recovering requests of the CA find it there
//! instead of reading it again.

mod index;
mod sought;
#[cfg(test)]
mod tests;

pub use index::{ENTRY_TTL, MAX_ENTRIES_PER_CA, MAX_INDEXED_CAS, RecoveryIndex, ca_key};
pub use sought::{Sought, Window};

use super::Context;
use crate::ncp::types::{EndCert, EndCertList};
use crate::ncp::{self, NcpError};
use index::Cursor;
use sought::{Entry, entry_of};
use std::time::Duration;

/// Clock skew between us and NCP (and any backdating of notBefore) that a recovered certificate's
/// notBefore may show on either side of the window.
pub const RECOVERY_SKEW: Duration = Duration::from_secs(300);
/// Extra time, on top of twice the NCP request timeout, before a signing call that left no certificate
/// is considered never to have taken effect.
pub const RECOVERY_SETTLE_MARGIN: Duration = Duration::from_secs(5);
/// At most this many NCP calls per search (one reconcile); a search that needs more is continued by
/// the next reconcile, where it stopped.
pub const RECOVERY_CALL_BUDGET: u32 = 20;
/// How many times a search follows a `totalPageNo` that moved under it before it gives up for this
/// reconcile (a hostile endpoint could move it on every answer).
const MAX_RETARGETS: u32 = 2;

/// How long after a signing call started "not found" proves that it never took effect: a call that
/// timed out may still be running inside NCP.
#[must_use]
pub fn settle_window(ctx: &Context) -> Duration {
    ctx.settings.ncp_request_timeout * 2 + RECOVERY_SETTLE_MARGIN
}

/// How much wider than [`RECOVERY_SKEW`] each side of a search window must be for the configured
/// clock-skew tolerance (`--clock-skew-tolerance-seconds`): a certificate NCP signed with its clock
/// that far off ours is still found ([`Window::widened`]).
#[must_use]
pub fn extra_skew(ctx: &Context) -> Duration {
    ctx.settings
        .clock_skew_tolerance
        .saturating_sub(RECOVERY_SKEW)
}

/// In which order Get End Cert List names the certificates (NCP does not document it; it is read
/// off the first and last entries once per CA).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Order {
    /// Oldest first: the newest are on the last page.
    Ascending,
    /// Newest first.
    Descending,
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

/// What a search came to.
#[derive(Debug, Clone)]
pub enum Search {
    /// The certificate.
    Found(Recovered),
    /// NCP has no such certificate in the window, as of when the search started: proof that a signing
    /// never took effect only if it had settled by then.
    NotFound {
        /// When the search started (wall clock, ms since the epoch).
        started_ms: i64,
    },
    /// The call budget of this reconcile is spent: search again soon, it goes on where it stopped.
    Unfinished,
}

/// Why a scan stopped early.
enum Stop {
    Ncp(NcpError),
    OutOfCalls,
}

impl From<NcpError> for Stop {
    fn from(e: NcpError) -> Self {
        Self::Ncp(e)
    }
}

/// One certificate, as the index has it, and as NCP gave it when it was read just now.
struct Read {
    entry: Entry,
    cert: Option<EndCert>,
}

fn now_ms() -> i64 {
    k8s_openapi::jiff::Timestamp::now().as_millisecond()
}

struct Scan<'a> {
    ncp: &'a ncp::Client,
    index: &'a RecoveryIndex,
    ca: String,
    ca_tag: &'a str,
    wanted: &'a Sought,
    calls: u32,
}

impl Scan<'_> {
    fn spend(&mut self) -> Result<(), Stop> {
        if self.calls >= RECOVERY_CALL_BUDGET {
            return Err(Stop::OutOfCalls);
        }
        self.calls += 1;
        Ok(())
    }

    async fn list(&mut self, page: u32) -> Result<EndCertList, Stop> {
        self.spend()?;
        let list = self.ncp.get_end_cert_list(self.ca_tag, Some(page)).await?;
        self.index.set_pages_hint(&self.ca, pages_of(&list).max(1));
        self.index.saw_page(
            &self.ca,
            page,
            pages_of(&list),
            list.total_cnt,
            &list.list_certs,
        );
        Ok(list)
    }

    async fn fetch(&mut self, serial: &str) -> Result<Option<EndCert>, Stop> {
        self.spend()?;
        match self.ncp.get_end_cert(self.ca_tag, serial).await {
            Ok(cert) => {
                self.index.insert(&self.ca, serial, entry_of(&cert));
                Ok(Some(cert))
            }
            Err(e) if e.is_cert_not_found() => {
                self.index.remove(&self.ca, serial);
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The index's entry, or NCP's certificate (`None`: it no longer exists).
    async fn read(&mut self, serial: &str) -> Result<Option<Read>, Stop> {
        if let Some(entry) = self.index.get(&self.ca, serial) {
            return Ok(Some(Read { entry, cert: None }));
        }
        Ok(self.fetch(serial).await?.map(|cert| Read {
            entry: entry_of(&cert),
            cert: Some(cert),
        }))
    }

    /// The certificate, read from NCP (again if need be), if it is the one.
    async fn confirm(
        &mut self,
        serial: &str,
        cert: Option<EndCert>,
        window: Window,
    ) -> Result<Option<Recovered>, Stop> {
        let cert = match cert {
            Some(c) => c,
            None => match self.fetch(serial).await? {
                Some(c) => c,
                None => return Ok(None),
            },
        };
        if window.excludes(entry_of(&cert).not_before_ms) {
            return Ok(None);
        }
        let Ok(parsed) = crate::pki::parse_certificates_pem(&cert.cert_pem) else {
            return Ok(None);
        };
        if !parsed.first().is_some_and(|c| self.wanted.matches(c)) {
            return Ok(None);
        }
        Ok(Some(Recovered {
            serial: serial.to_string(),
            cert_pem: cert.cert_pem,
            chain: cert.ca_chain,
        }))
    }
}

fn pages_of(list: &EndCertList) -> u32 {
    u32::try_from(list.total_page_no.max(0)).unwrap_or(u32::MAX)
}

/// Looks for the certificate `wanted` of CA `ca_tag` with a notBefore in `window`, with at most
/// [`RECOVERY_CALL_BUDGET`] NCP calls. `search_id` names the search (the request or the issuer), so
/// that an [`Search::Unfinished`] one goes on where it stopped.
///
/// # Errors
/// When NCP cannot be asked.
pub async fn find_issued(
    ncp: &ncp::Client,
    index: &RecoveryIndex,
    ca_tag: &str,
    search_id: &str,
    window: Window,
    wanted: &Sought,
) -> Result<Search, NcpError> {
    let mut scan = Scan {
        ncp,
        index,
        ca: ca_key(ncp.base_url().as_str(), ncp.access_key(), ca_tag),
        ca_tag,
        wanted,
        calls: 0,
    };
    // One search per CA at a time: the others come back once it has filled the index.
    let ca = scan.ca.clone();
    let Some(_claim) = index.claim(&ca) else {
        return Ok(Search::Unfinished);
    };
    let cursor = index
        .cursor(&scan.ca, search_id)
        .filter(|c| c.window == window);
    let started_ms = cursor.map_or_else(now_ms, |c| c.started_ms);
    let mut at = cursor;
    let result = search(&mut scan, window, &mut at, started_ms).await;
    match result {
        Ok(found) => {
            index.clear_cursor(&scan.ca, search_id);
            Ok(match found {
                Some(r) => Search::Found(r),
                None => Search::NotFound { started_ms },
            })
        }
        Err(Stop::OutOfCalls) => {
            if let Some(c) = at {
                index.set_cursor(&scan.ca, search_id, c);
            }
            Ok(Search::Unfinished)
        }
        Err(Stop::Ncp(e)) => {
            // The next attempt goes on where this one stopped.
            if let Some(c) = at {
                index.set_cursor(&scan.ca, search_id, c);
            }
            Err(e)
        }
    }
}

/// The search proper; `at` is where it stands (kept up to date, for the caller to save when it stops
/// early).
async fn search(
    scan: &mut Scan<'_>,
    window: Window,
    at: &mut Option<Cursor>,
    started_ms: i64,
) -> Result<Option<Recovered>, Stop> {
    // Another search of this CA may have read it already.
    for serial in scan.index.candidates(&scan.ca, scan.wanted, window) {
        if let Some(found) = scan.confirm(&serial, None, window).await? {
            return Ok(Some(found));
        }
    }
    let mut pages: Vec<(u32, EndCertList)> = Vec::new();
    let order = match scan.index.order(&scan.ca) {
        Some(o) => o,
        None => match detect_order(scan, &mut pages).await? {
            Some(o) => o,
            // The list is empty.
            None => return Ok(None),
        },
    };
    let resumed = at.is_some();
    let mut page = match *at {
        // Go one page back towards the newest: certificates may have moved by a few places.
        Some(c) => match order {
            Order::Ascending => c.page.saturating_add(1),
            Order::Descending => c.page.saturating_sub(1).max(1),
        },
        None => match order {
            Order::Ascending => scan.index.pages_hint(&scan.ca).unwrap_or(1).max(1),
            Order::Descending => 1,
        },
    };
    let mut retargets = 0;
    let mut first_read = true;
    // `totalPageNo` and `totalCnt` of the last answer.
    let mut known: Option<(u32, i64)> = None;
    loop {
        let cached = match (order, known) {
            // A full page of an oldest-first list, below the last one this search read: unchanged
            // unless the list shrank, which the next real answer tells.
            (Order::Ascending, Some((pages_then, cnt))) if page < pages_then => {
                scan.index.page(&scan.ca, page).map(|serials| EndCertList {
                    total_cnt: cnt,
                    list_certs: serials,
                    total_page_no: i64::from(pages_then),
                    current_page_no: i64::from(page),
                })
            }
            _ => None,
        };
        let list = match (pages.iter().position(|(p, _)| *p == page), cached) {
            (Some(i), _) => pages.swap_remove(i).1,
            (None, Some(list)) => list,
            (None, None) => scan.list(page).await?,
        };
        let total = pages_of(&list);
        known = Some((total, list.total_cnt));
        let newest = match order {
            Order::Ascending => total.max(1),
            Order::Descending => 1,
        };
        let off_end = page > total.max(1);
        let shrunk = at.is_some_and(|c| list.total_cnt < c.total_cnt);
        // Follow `totalPageNo` when the newest page is not where the hint said (certificates were
        // issued since), when the page is past the end, or when certificates were removed since the
        // search started (pages moved: start over) — a bounded number of times, as a hostile
        // endpoint could move it on every answer.
        let retarget = off_end
            || shrunk
            || (first_read && !resumed && order == Order::Ascending && page < newest);
        first_read = false;
        if shrunk {
            *at = None;
        }
        if retarget && retargets < MAX_RETARGETS {
            retargets += 1;
            page = newest;
            continue;
        }
        let cursor = at.get_or_insert(Cursor {
            window,
            page,
            started_ms,
            total_cnt: list.total_cnt,
        });
        cursor.page = page;
        if off_end || list.list_certs.is_empty() {
            // Past `totalPageNo`, or an empty page: the list ends here.
            return Ok(None);
        }
        let serials: Vec<String> = match order {
            Order::Ascending => list.list_certs.iter().rev().cloned().collect(),
            Order::Descending => list.list_certs.clone(),
        };
        for serial in serials {
            let Some(read) = scan.read(&serial).await? else {
                continue;
            };
            if window.is_older(read.entry.not_before_ms) {
                // The first certificate older than the window: everything further is older still.
                return Ok(None);
            }
            if window.is_newer(read.entry.not_before_ms) || !scan.wanted.matches_entry(&read.entry)
            {
                continue;
            }
            if let Some(found) = scan.confirm(&serial, read.cert, window).await? {
                return Ok(Some(found));
            }
        }
        page = match order {
            Order::Ascending if page > 1 => page - 1,
            Order::Descending if page < total => page + 1,
            _ => return Ok(None),
        };
    }
}

/// Reads the list's order off its first and last entries, keeping the pages it read in `pages`;
/// `None` when the list is empty. An order that cannot be told (equal notBefore) is used for this
/// search without being remembered: then every certificate has the same notBefore, and either order
/// finds the same.
async fn detect_order(
    scan: &mut Scan<'_>,
    pages: &mut Vec<(u32, EndCertList)>,
) -> Result<Option<Order>, Stop> {
    let first = scan.list(1).await?;
    let total = pages_of(&first).max(1);
    let Some(oldest_guess) = first.list_certs.first().cloned() else {
        return Ok(None);
    };
    let last = if total > 1 {
        scan.list(total).await?
    } else {
        first.clone()
    };
    pages.push((1, first));
    let Some(newest_guess) = last.list_certs.last().cloned() else {
        return Ok(Some(Order::Ascending));
    };
    if total > 1 {
        pages.push((total, last));
    }
    if oldest_guess == newest_guess {
        return Ok(Some(Order::Ascending));
    }
    let a = scan
        .read(&oldest_guess)
        .await?
        .and_then(|r| r.entry.not_before_ms);
    let b = scan
        .read(&newest_guess)
        .await?
        .and_then(|r| r.entry.not_before_ms);
    Ok(Some(match (a, b) {
        (Some(a), Some(b)) if a != b => {
            let order = if a < b {
                Order::Ascending
            } else {
                Order::Descending
            };
            scan.index.set_order(&scan.ca, order);
            order
        }
        _ => Order::Ascending,
    }))
}
