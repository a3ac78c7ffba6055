//! CRL, OCSP and user operations: Get CA CRL, Rotate CRL, Get/Update CRL Config, Create/Delete
//! OCSP, Add/Delete CA User, Get CA User List.

use super::common::{Ctx, DEFAULT_CRL_EXPIRY_DAYS, OpResult};
use crate::emulator::clock::{from_ms, to_ms};
use crate::emulator::request::{Call, required, str_field};
use crate::emulator::state::{Ca, CrlCache, UserRecord, internal};
use crate::emulator::validate;
use crate::ncp::messages::{self, ServiceMessage};
use crate::pki::{self, RevokedCert, Serial};
use serde_json::{Value, json};
use time::Duration;

/// Rebuilds the CA's CRL when `force`, when there is none, or when it has passed its nextUpdate.
/// thisUpdate is now; nextUpdate is now plus the configured expiry (default 3 days).
/// Returns whether it was rebuilt.
pub(crate) fn ensure_crl(ctx: &Ctx<'_>, ca: &mut Ca, force: bool) -> Result<bool, ServiceMessage> {
    if !force
        && ca
            .crl
            .as_ref()
            .is_some_and(|c| c.next_update_ms > ctx.now_ms)
    {
        return Ok(false);
    }
    let signer = ca.signer()?;
    let number = ca.crl.as_ref().map_or(1, |c| c.number + 1);
    let days = ca.crl_expiry_days.unwrap_or(DEFAULT_CRL_EXPIRY_DAYS);
    let revoked: Vec<RevokedCert> = ca
        .certs
        .iter()
        .filter_map(|r| {
            let at = r.revoked_ms?;
            Some(RevokedCert {
                serial: Serial::parse(&r.serial).ok()?,
                revoked_at: from_ms(at),
            })
        })
        .collect();
    let next = ctx.now + Duration::days(i64::from(days));
    let crl = pki::build_crl(&signer, number, ctx.now, next, &revoked)
        .map_err(|e| internal("building a CRL", e))?;
    ca.crl = Some(CrlCache {
        number,
        next_update_ms: to_ms(next),
        pem: crl.pem,
    });
    Ok(true)
}

/// The current CRL (DER), rebuilt when due; for the unauthenticated `/ext/{caTag}/crl`.
pub(crate) fn current_crl_der(ctx: &Ctx<'_>, tag: &str) -> Result<Vec<u8>, ServiceMessage> {
    let mut st = ctx.lock();
    let ca = st.find_mut(tag)?;
    let rebuilt = ensure_crl(ctx, ca, false)?;
    let pem = ca.crl.as_ref().map(|c| c.pem.clone()).unwrap_or_default();
    st.dirty |= rebuilt;
    pki::pem::decode_one(&pem, &[pki::CRL_LABEL]).map_err(|e| internal("stored CRL unreadable", e))
}

/// `GET /api/v1/ca/{caTag}/crl`: the CRL as PEM.
pub(super) fn get_crl(ctx: &Ctx<'_>, call: &Call) -> OpResult {
    let tag = call.tag()?;
    let mut st = ctx.lock();
    let ca = st.find_mut(tag)?;
    let rebuilt = ensure_crl(ctx, ca, false)?;
    let pem = ca.crl.as_ref().map(|c| c.pem.clone()).unwrap_or_default();
    st.dirty |= rebuilt;
    Ok(Value::String(pem))
}

/// `POST /api/v1/ca/{caTag}/crl/rotate`.
pub(super) fn rotate(ctx: &Ctx<'_>, call: &Call) -> OpResult {
    let tag = call.tag()?;
    let mut st = ctx.lock();
    ensure_crl(ctx, st.find_mut(tag)?, true)?;
    st.dirty = true;
    Ok(Value::Null)
}

/// `GET /api/v1/ca/{caTag}/crl/config`: "The crl configuration doesn't exist." until Update CRL
/// Config has been called (the CRL itself is renewed every 3 days meanwhile).
pub(super) fn get_config(ctx: &Ctx<'_>, call: &Call) -> OpResult {
    let tag = call.tag()?;
    let st = ctx.lock();
    let days = st
        .find(tag)?
        .crl_expiry_days
        .ok_or(messages::CRL_CONFIG_NOT_FOUND)?;
    Ok(json!({"expiry": days.to_string()}))
}

/// `PUT /api/v1/ca/{caTag}/crl/config`: `expiry` in days, at least 3 and within the CA's lifetime.
pub(super) fn update_config(ctx: &Ctx<'_>, call: &Call) -> OpResult {
    let tag = call.tag()?;
    let body = call.body()?;
    let expiry = required(&body, "expiry", messages::EXPIRY_MISSING)?;
    let days: u32 = expiry
        .trim()
        .parse()
        .ok()
        .filter(|d| *d >= DEFAULT_CRL_EXPIRY_DAYS)
        .ok_or(messages::INVALID_INPUT)?;
    let mut st = ctx.lock();
    let ca = st.find_mut(tag)?;
    if let Ok(end) = ca.not_after()
        && ctx.now + Duration::days(i64::from(days)) > end
    {
        return Err(messages::INVALID_INPUT);
    }
    ca.crl_expiry_days = Some(days);
    if ca.cert_pem.is_some() {
        ensure_crl(ctx, ca, true)?;
    }
    st.dirty = true;
    Ok(json!({"expiry": days.to_string()}))
}

/// `PUT /api/v1/ca/{caTag}/urls`: enables OCSP; the URL goes into `urlInfo.ocsp`, `ocspResponder`
/// and the AIA of certificates issued from now on.
pub(super) fn create_ocsp(ctx: &Ctx<'_>, call: &Call) -> OpResult {
    let tag = call.tag()?;
    let body = call.body()?;
    let url = required(&body, "ocsp_servers", messages::OCSP_SERVERS_MISSING)?;
    let url = url.trim();
    let valid = (url.starts_with("https://") || url.starts_with("http://"))
        && url.is_ascii()
        && !url.contains(char::is_whitespace)
        && url.len() > "https://".len();
    if !valid {
        return Err(messages::INVALID_INPUT);
    }
    let mut st = ctx.lock();
    st.find_mut(tag)?.ocsp_url = Some(url.to_string());
    st.dirty = true;
    Ok(Value::Null)
}

/// `DELETE /api/v1/ca/{caTag}/urls`.
pub(super) fn delete_ocsp(ctx: &Ctx<'_>, call: &Call) -> OpResult {
    let tag = call.tag()?;
    let mut st = ctx.lock();
    st.find_mut(tag)?.ocsp_url = None;
    st.dirty = true;
    Ok(Value::Null)
}

/// `POST /api/v1/ca/{caTag}/users`: a user already granted → "Invalid user.".
pub(super) fn add_user(ctx: &Ctx<'_>, call: &Call) -> OpResult {
    let tag = call.tag()?;
    let body = call.body()?;
    let id_no = validate::id_no(str_field(&body, "idNo")?.as_deref())?;
    let mut st = ctx.lock();
    let ca = st.find_mut(tag)?;
    if ca.users.iter().any(|u| u.id_no == id_no) {
        return Err(messages::INVALID_USER);
    }
    let login: String = id_no
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(8)
        .collect();
    let mbr_no = 2_761_000 + i64::try_from(ca.users.len()).unwrap_or_default();
    ca.users.push(UserRecord {
        login_id: format!("subaccount-{login}"),
        id_no,
        mbr_no,
    });
    st.dirty = true;
    Ok(Value::Null)
}

/// `GET /api/v1/ca/{caTag}/users`.
pub(super) fn list_users(ctx: &Ctx<'_>, call: &Call) -> OpResult {
    let tag = call.tag()?;
    Ok(ctx.lock().find(tag)?.user_list())
}

/// `DELETE /api/v1/ca/{caTag}/users/{idNo}`: a user not granted → "Invalid user.".
pub(super) fn delete_user(ctx: &Ctx<'_>, call: &Call) -> OpResult {
    let tag = call.tag()?;
    let id_no = validate::id_no(call.id_no.as_deref())?;
    let mut st = ctx.lock();
    let ca = st.find_mut(tag)?;
    let before = ca.users.len();
    ca.users.retain(|u| u.id_no != id_no);
    if ca.users.len() == before {
        return Err(messages::INVALID_USER);
    }
    st.dirty = true;
    Ok(Value::Null)
}
