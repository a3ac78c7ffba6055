//! The 24 operations. Each checks its input first (answering NCP's verbatim messages), then the
//! state, then mutates under the state lock.

mod ca;
mod certs;
mod common;
mod crl;

pub(crate) use common::{Ctx, OpResult};

use super::clock::from_ms;
use super::request::Call;
use super::state::Shared;
use crate::ncp::messages::ServiceMessage;
use crate::ncp::operation::Operation;

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

#[cfg(test)]
mod tests;
