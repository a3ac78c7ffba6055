//! Certificates: Issue End Cert, Sign End Csr, Sign Sub Csr, Get End Cert, Get End Cert List, Revoke
//! End Cert, Trim CA.

use super::ca::{record_issue, urls};
use super::common::{Ctx, OpResult, page, validity};
use super::crl::ensure_crl;
use crate::emulator::request::{Body, Call, required, str_field};
use crate::emulator::state::{Ca, internal};
use crate::emulator::validate;
use crate::ncp::messages::{self, ServiceMessage};
use crate::ncp::types::{CaStatus, KeyType, Period};
use crate::pki::{
    self, CertInfo, Csr, IssueOptions, KeyAlgorithm, PkiError, PrivateKey, PublicKeyInfo,
};
use serde_json::{Value, json};

/// Can `ca` sign one more certificate?
fn check_can_issue(ctx: &Ctx<'_>, ca: &Ca) -> Result<(), ServiceMessage> {
    if ca.status != CaStatus::Active {
        return Err(messages::INVALID_CA_STATUS);
    }
    if ca.signing_count >= ctx.max_issuances() {
        return Err(messages::SIGNING_LIMIT_EXCEEDED);
    }
    Ok(())
}

/// The Sign End/Sub Csr answer: `caChain` is an array `[issuing CA, …, root]`.
fn sign_answer(ca: &Ca, cert: &CertInfo) -> Value {
    json!({
        "certificate": cert.to_pem(),
        "caChain": ca.issuing_chain(),
        "ocspResponder": ca.ocsp_url.clone().unwrap_or_default(),
        "issuer": ca.cert_pem.clone().unwrap_or_default(),
        "serialNo": cert.serial.to_colon_hex(),
    })
}

/// Reads and checks the CSR of a sign request. The key is looked at before the signature: a key
/// that is not one of NCP's four types (RSA-1024, RSA-3072, P-384, Ed25519, …) is "Invalid key
/// type." whatever else is wrong, and only a CSR with a supported key can be "Invalid csr.".
fn parse_csr(body: &Body) -> Result<Csr, ServiceMessage> {
    let pem = required(body, "csrPem", messages::CSR_MISSING)?;
    if let Some(key) = csr_key(&pem)
        && key.key_type().is_none()
    {
        tracing::info!(key = %key, "rejected CSR: unsupported key type");
        return Err(messages::UNSUPPORTED_KEY_TYPE);
    }
    let csr = Csr::from_pem(&pem).map_err(|e| {
        if let PkiError::UnsupportedKey(what) = &e {
            tracing::info!(key = %what, "rejected CSR: unsupported key type");
            return messages::UNSUPPORTED_KEY_TYPE;
        }
        tracing::info!(error = %e, "rejected CSR");
        messages::INVALID_CSR
    })?;
    if csr.public_key().algorithm().key_type().is_none() {
        return Err(messages::UNSUPPORTED_KEY_TYPE);
    }
    Ok(csr)
}

/// The algorithm of a CSR's public key, read without checking the CSR's signature (`None` when the
/// CSR cannot be read that far, or the key is of no algorithm we know: both are decided later).
fn csr_key(pem: &str) -> Option<KeyAlgorithm> {
    use x509_parser::certification_request::X509CertificationRequest;
    use x509_parser::prelude::FromDer;
    let der = pki::pem::decode_one(pem, pki::CSR_LABELS).ok()?;
    let (_, csr) = X509CertificationRequest::from_der(&der).ok()?;
    PublicKeyInfo::from_x509(&csr.certification_request_info.subject_pki)
        .ok()
        .map(|k| k.algorithm())
}

/// The legacy `keyType` / `keyBits` fields older issuers send with Sign End Csr: when given they must
/// describe the CSR's key. `keyType` is a family (`RSA`, `EC`/`ECDSA`, which then needs `keyBits`) or
/// an NCP key type (`RSA2048`, …); `keyBits` one of 2048, 4096, 256, 521.
fn check_legacy_key_fields(body: &Body, key: KeyAlgorithm) -> Result<(), ServiceMessage> {
    let key_type = str_field(body, "keyType")?.filter(|s| !s.trim().is_empty());
    let key_bits = str_field(body, "keyBits")?.filter(|s| !s.trim().is_empty());
    if let Some(kt) = key_type {
        let (family, bits) = match kt.trim().to_ascii_uppercase().as_str() {
            "RSA" => ("RSA", None),
            "EC" | "ECDSA" => ("EC", None),
            other => match KeyType::parse(other) {
                Some(t) => {
                    let alg = KeyAlgorithm::from(t);
                    (alg.family(), Some(alg.bits()))
                }
                None => return Err(messages::INVALID_KEY_TYPE),
            },
        };
        if family != key.family() {
            return Err(messages::KEY_TYPE_MISMATCH);
        }
        if bits.is_some_and(|b| b != key.bits()) {
            return Err(messages::KEY_BITS_MISMATCH);
        }
        if bits.is_none() && key_bits.is_none() {
            return Err(messages::KEY_BITS_MISSING);
        }
    }
    if let Some(kb) = key_bits {
        let bits: u32 = kb
            .trim()
            .parse()
            .map_err(|_| messages::UNSUPPORTED_KEY_BITS)?;
        if ![2048, 4096, 256, 521].contains(&bits) {
            return Err(messages::UNSUPPORTED_KEY_BITS);
        }
        if bits != key.bits() {
            return Err(messages::KEY_BITS_MISMATCH);
        }
    }
    Ok(())
}

/// `POST /api/v1/ca/{caTag}/cert/sign`. `period` (body, or the 2022 client's query parameter) is
/// optional: without it the certificate lasts as long as allowed (3650 days, or the CA's end).
pub(super) fn sign_end(ctx: &Ctx<'_>, call: &Call) -> OpResult {
    let tag = call.tag()?;
    let body = call.body()?;
    let csr = parse_csr(&body)?;
    check_legacy_key_fields(&body, csr.public_key().algorithm())?;
    let period =
        match str_field(&body, "period")?.or_else(|| call.query("period").map(str::to_string)) {
            Some(p) if !p.trim().is_empty() => Some(validate::period(&p, true)?),
            _ => None,
        };
    sign_csr(ctx, tag, &csr, period, false)
}

/// `POST /api/v1/ca/{caTag}/sub/sign`: an intermediate CA certificate; `period` required, no MAX.
pub(super) fn sign_sub(ctx: &Ctx<'_>, call: &Call) -> OpResult {
    let tag = call.tag()?;
    let body = call.body()?;
    // NCP documents no message for a missing period: the nearest documented one.
    let period = validate::period(&required(&body, "period", messages::INVALID_PERIOD)?, false)?;
    let csr = parse_csr(&body)?;
    sign_csr(ctx, tag, &csr, Some(period), true)
}

/// Signs a CSR with CA `tag`: a leaf, or (`as_ca`) an intermediate CA certificate.
fn sign_csr(ctx: &Ctx<'_>, tag: &str, csr: &Csr, period: Option<Period>, as_ca: bool) -> OpResult {
    let mut st = ctx.lock();
    let ca = st.find_mut(tag)?;
    check_can_issue(ctx, ca)?;
    let signer = ca.signer()?;
    let mut opts = IssueOptions::new(validity(
        ctx.now,
        period,
        Some(signer.certificate().not_after),
    )?);
    opts.urls = urls(ca, ctx.base());
    let cert = if as_ca {
        csr.sign_ca(&signer, &opts)
            .map_err(|e| internal("signing a sub CA", e))?
    } else {
        csr.sign_leaf(&signer, &opts)
            .map_err(|e| internal("signing a leaf", e))?
    };
    record_issue(ctx, ca, &cert, as_ca);
    let answer = sign_answer(ca, &cert);
    st.dirty = true;
    Ok(answer)
}

/// `POST /api/v1/ca/{caTag}/cert`: the service generates the key. `keyType` defaults to the CA's,
/// `period` to MAX. `caChain` is one string here.
pub(super) fn issue(ctx: &Ctx<'_>, call: &Call) -> OpResult {
    let tag = call.tag()?;
    let body = call.body()?;
    let key_type = str_field(&body, "keyType")?
        .filter(|s| !s.is_empty())
        .map(|k| validate::key_type(&k))
        .transpose()?;
    let period = match str_field(&body, "period")?.filter(|s| !s.trim().is_empty()) {
        Some(p) => validate::period(&p, true)?,
        None => Period::Max,
    };
    let params = validate::x509_parameters(&body)?;
    let (subject, sans) = validate::subject(&params)?;

    // Check before generating the key (slow for RSA 4096), and again after.
    let key_type = {
        let st = ctx.lock();
        let ca = st.find(tag)?;
        check_can_issue(ctx, ca)?;
        validity(ctx.now, Some(period), Some(ca.not_after()?))?;
        key_type.unwrap_or(ca.key_type)
    };
    let key = PrivateKey::generate(key_type).map_err(|e| internal("generating a key", e))?;
    let public = key
        .public_key()
        .map_err(|e| internal("reading a new key", e))?;

    let mut st = ctx.lock();
    let ca = st.find_mut(tag)?;
    check_can_issue(ctx, ca)?;
    let signer = ca.signer()?;
    let mut opts = IssueOptions::new(validity(
        ctx.now,
        Some(period),
        Some(signer.certificate().not_after),
    )?);
    opts.urls = urls(ca, ctx.base());
    let cert = pki::sign_leaf(&signer, &subject, &sans, &public, &opts)
        .map_err(|e| internal("signing a leaf", e))?;
    record_issue(ctx, ca, &cert, false);
    let answer = json!({
        "privateKey": key.to_pkcs8_pem(),
        "certificate": cert.to_pem(),
        "caChain": ca.issuing_chain().concat(),
        "ocspResponder": ca.ocsp_url.clone().unwrap_or_default(),
        "issuer": ca.cert_pem.clone().unwrap_or_default(),
        "serialNo": cert.serial.to_colon_hex(),
    });
    st.dirty = true;
    Ok(answer)
}

/// `GET /api/v1/ca/{caTag}/cert/{serialNo}`.
pub(super) fn get(ctx: &Ctx<'_>, call: &Call) -> OpResult {
    let tag = call.tag()?;
    let serial = validate::serial(call.serial.as_deref())?;
    let st = ctx.lock();
    let ca = st.find(tag)?;
    let rec = ca.find_cert(&serial).ok_or(messages::CERT_NOT_FOUND)?;
    Ok(json!({
        "serialNo": rec.serial,
        "commonName": rec.common_name,
        "notBeforeDate": rec.not_before_ms,
        "notAfterDate": rec.not_after_ms,
        "publicKeyAlgorithm": rec.public_key_algorithm,
        "signatureAlgorithm": rec.signature_algorithm,
        "certPem": rec.cert_pem,
        "caChain": ca.issuing_chain().concat(),
        "ocspResponder": ca.ocsp_url.clone().unwrap_or_default(),
    }))
}

/// `GET /api/v1/ca/{caTag}/cert[?pageNo=n]`: serials in issuance order, revoked and expired included.
pub(super) fn list(ctx: &Ctx<'_>, call: &Call) -> OpResult {
    let tag = call.tag()?;
    let page_no = validate::page_no(call.query("pageNo"))?;
    let st = ctx.lock();
    let ca = st.find(tag)?;
    let serials: Vec<String> = ca.certs.iter().map(|c| c.serial.clone()).collect();
    let (items, pages) = page(&serials, page_no, ctx.shared.config.page_size);
    Ok(json!({
        "totalCnt": serials.len(),
        "listCerts": items,
        "totalPageNo": pages,
        "currentPageNo": page_no,
    }))
}

/// `POST /api/v1/ca/{caTag}/cert/{serialNo}/revoke`: revoking twice keeps the first time; the CRL is
/// rebuilt at once.
pub(super) fn revoke(ctx: &Ctx<'_>, call: &Call) -> OpResult {
    let tag = call.tag()?;
    let serial = validate::serial(call.serial.as_deref())?;
    let mut st = ctx.lock();
    let ca = st.find_mut(tag)?;
    let own_serial = ca.certificate().ok().map(|c| c.serial.to_colon_hex());
    if own_serial.as_deref() == Some(serial.as_str()) {
        return Err(messages::CA_CERT_NOT_REVOCABLE);
    }
    let rec = ca
        .certs
        .iter_mut()
        .find(|c| c.serial == serial)
        .ok_or(messages::CERT_NOT_FOUND)?;
    if rec.is_ca {
        return Err(messages::CA_CERT_NOT_REVOCABLE);
    }
    if rec.revoked_ms.is_none() {
        rec.revoked_ms = Some(ctx.now_ms);
        tracing::info!(ca_tag = %tag, serial = %serial, "revoked certificate");
    }
    if ca.cert_pem.is_some() {
        ensure_crl(ctx, ca, true)?;
    }
    st.dirty = true;
    Ok(Value::Null)
}

/// `POST /api/v1/ca/{caTag}/trim`: forgets expired certificates (they leave the CRL too).
pub(super) fn trim(ctx: &Ctx<'_>, call: &Call) -> OpResult {
    let tag = call.tag()?;
    let mut st = ctx.lock();
    let ca = st.find_mut(tag)?;
    let before = ca.certs.len();
    ca.certs.retain(|c| c.not_after_ms >= ctx.now_ms);
    let removed = before - ca.certs.len();
    if removed > 0 && ca.cert_pem.is_some() {
        ensure_crl(ctx, ca, true)?;
    }
    tracing::info!(ca_tag = %tag, removed, "trimmed expired certificates");
    st.dirty = true;
    Ok(Value::Null)
}
