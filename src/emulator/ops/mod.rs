//! The 24 operations. Each checks its input first (answering NCP's verbatim messages), then the
//! state, then mutates under the state lock.

mod ca;
mod certs;
mod crl;

use super::clock::from_ms;
use super::request::Call;
use super::state::Shared;
use super::state::State;
use crate::ncp::messages::{self, ServiceMessage};
use crate::ncp::operation::Operation;
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

/// Runs one call to completion (blocking: key generation and signing are CPU work).
pub(crate) fn execute(shared: &Shared, call: &Call) -> OpResult {
    let ctx = ctx(shared);
    let now_ms = ctx.now_ms;
    {
        let mut st = ctx.lock();
        let deleted = st.expire(now_ms);
        if !deleted.is_empty() {
            tracing::info!(ca_tags = ?deleted, "deleted CAs whose 72-hour deletion delay passed");
        }
    }
    use Operation as O;
    let result = match call.op {
        O::CreateCa => ca::create(&ctx, call),
        O::GetCa => ca::get(&ctx, call),
        O::GetCaList => ca::list(&ctx, call),
        O::UpdateCa => ca::update(&ctx, call),
        O::DeleteCa => ca::delete(&ctx, call),
        O::ActivateSubCa => ca::activate(&ctx, call),
        O::GetSubCsr => ca::sub_csr(&ctx, call),
        O::GetCaChain => ca::chain(&ctx, call),
        O::IssueEndCert => certs::issue(&ctx, call),
        O::SignEndCsr => certs::sign_end(&ctx, call),
        O::SignSubCsr => certs::sign_sub(&ctx, call),
        O::GetEndCert => certs::get(&ctx, call),
        O::GetEndCertList => certs::list(&ctx, call),
        O::RevokeEndCert => certs::revoke(&ctx, call),
        O::TrimCa => certs::trim(&ctx, call),
        O::GetCaCrl => crl::get_crl(&ctx, call),
        O::RotateCrl => crl::rotate(&ctx, call),
        O::GetCrlConfig => crl::get_config(&ctx, call),
        O::UpdateCrlConfig => crl::update_config(&ctx, call),
        O::CreateOcsp => crl::create_ocsp(&ctx, call),
        O::DeleteOcsp => crl::delete_ocsp(&ctx, call),
        O::AddCaUser => crl::add_user(&ctx, call),
        O::GetCaUserList => crl::list_users(&ctx, call),
        O::DeleteCaUser => crl::delete_user(&ctx, call),
    };
    shared.persist_if_dirty();
    result
}

fn ctx(shared: &Shared) -> Ctx<'_> {
    let now_ms = shared.clock.now_ms();
    Ctx {
        shared,
        now: from_ms(now_ms),
        now_ms,
    }
}

/// The DER CRL of a CA, for `/ext/{caTag}/crl`.
pub(crate) fn ext_crl_der(shared: &Shared, tag: &str) -> Result<Vec<u8>, ServiceMessage> {
    let result = crl::current_crl_der(&ctx(shared), tag);
    shared.persist_if_dirty();
    result
}

/// The DER certificate of a CA, for `/ext/{caTag}/ca`.
pub(crate) fn ext_ca_der(shared: &Shared, tag: &str) -> Result<Vec<u8>, ServiceMessage> {
    Ok(shared.state().find(tag)?.certificate()?.der)
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
    serde_json::to_value(v).map_err(|e| super::state::internal("serialising an answer", e))
}

#[cfg(test)]
mod tests;
