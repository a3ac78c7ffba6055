//! What every operation shares: its context, its answer type, validity and paging.

use crate::emulator::state::{Shared, State};
use crate::ncp::messages::{self, ServiceMessage};
use crate::ncp::types::Period;
use crate::pki::Validity;
use serde_json::Value;
use std::sync::MutexGuard;
use time::{Duration, OffsetDateTime};

/// An operation's answer: the envelope's `data`, or a service error.
pub(crate) type OpResult = Result<Value, ServiceMessage>;

/// Default CRL renewal period, in days.
pub(crate) const DEFAULT_CRL_EXPIRY_DAYS: u32 = 3;

/// What an operation sees.
pub(crate) struct Ctx<'a> {
    pub shared: &'a Shared,
    pub now: OffsetDateTime,
    pub now_ms: i64,
}

impl Ctx<'_> {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.state()
    }

    pub(crate) fn base(&self) -> &str {
        &self.shared.base_url
    }

    pub(crate) fn max_issuances(&self) -> u64 {
        self.shared.config.max_issuances_per_ca
    }

    pub(crate) fn count_issued(&self, ca_tag: &str) {
        self.shared.stats().issued(ca_tag);
    }
}

/// Validity of a certificate issued at `now`: `period` days, or for `MAX` / no period the longest
/// allowed (3650 days, and never past the issuer's end). Past the issuer's end → "The CA validity
/// period can't be exceeded.".
pub(crate) fn validity(
    now: OffsetDateTime,
    period: Option<Period>,
    issuer_not_after: Option<OffsetDateTime>,
) -> Result<Validity, ServiceMessage> {
    let start = now.replace_nanosecond(0).unwrap_or(now);
    let longest = start + Duration::days(i64::from(Period::MAX_DAYS));
    let end = match period {
        Some(Period::Days(d)) => start + Duration::days(i64::from(d)),
        Some(Period::Max) | None => issuer_not_after.map_or(longest, |ca_end| ca_end.min(longest)),
    };
    if issuer_not_after.is_some_and(|ca_end| end > ca_end) {
        return Err(messages::CA_VALIDITY_EXCEEDED);
    }
    Validity::new(start, end).map_err(|_| messages::CA_VALIDITY_EXCEEDED)
}

/// One page of `items` and the number of pages.
pub(crate) fn page<T: Clone>(items: &[T], page_no: usize, size: usize) -> (Vec<T>, usize) {
    let size = size.max(1);
    let pages = items.len().div_ceil(size);
    let start = page_no.saturating_sub(1).saturating_mul(size);
    let slice = items.iter().skip(start).take(size).cloned().collect();
    (slice, pages)
}

/// Serialises a value that cannot fail to serialise (plain data).
pub(crate) fn to_value<T: serde::Serialize>(v: &T) -> OpResult {
    serde_json::to_value(v)
        .map_err(|e| crate::emulator::state::internal("serialising an answer", e))
}
