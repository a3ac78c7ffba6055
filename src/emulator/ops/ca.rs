//! CA lifecycle: Create CA, Get CA, Get CA List, Update CA, Delete CA, Activate Sub CA, Get Sub CSR,
//! Get CA Chain.

use super::common::{Ctx, OpResult, page, to_value, validity};
use crate::emulator::request::{Call, required, str_field};
use crate::emulator::state::{Ca, CertRecord, DESTROY_DELAY_MS, State, internal};
use crate::emulator::validate;
use crate::ncp::messages::{self, ServiceMessage};
use crate::ncp::types::{CaStatus, CaType, KeyType, Period, X509Parameters};
use crate::pki::{self, CertInfo, CertUrls, IssueOptions, Name, PrivateKey};
use serde_json::{Value, json};

/// A validated Create CA request.
struct NewCa {
    ca_type: CaType,
    issuer_tag: Option<String>,
    alias: String,
    memo: String,
    key_type: KeyType,
    period: Period,
    params: X509Parameters,
    subject: Name,
}

/// `POST /api/v1/ca?caType=…[&issuerTag=…]`.
pub(super) fn create(ctx: &Ctx<'_>, call: &Call) -> OpResult {
    let req = parse_create(call)?;
    // Check against the state before the (slow) key generation, and again after it.
    check_create(ctx, &ctx.lock(), &req)?;
    let key = PrivateKey::generate(req.key_type).map_err(|e| internal("generating a CA key", e))?;
    let mut st = ctx.lock();
    check_create(ctx, &st, &req)?;
    let id = st.next_id();
    let cert_id = st.next_id();
    let tag = st.new_tag();
    let mut ca = Ca {
        id,
        cert_id,
        tag,
        alias: req.alias.clone(),
        memo: req.memo.clone(),
        ca_type: req.ca_type,
        status: CaStatus::Active,
        status_before_destroy: None,
        key_type: req.key_type,
        key_pem: key.to_pkcs8_pem(),
        cert_pem: None,
        chain_pems: Vec::new(),
        csr_pem: None,
        parent_tag: req.issuer_tag.clone(),
        subject: req.params.clone(),
        signing_count: 0,
        rgst_ms: ctx.now_ms,
        status_update_ms: ctx.now_ms,
        destroy_ms: None,
        ocsp_url: None,
        crl_expiry_days: None,
        crl: None,
        users: Vec::new(),
        certs: Vec::new(),
    };
    match (&req.ca_type, &req.issuer_tag) {
        (CaType::PrivateRoot, _) => {
            let opts = IssueOptions::new(validity(ctx.now, Some(req.period), None)?);
            let cert = pki::self_signed_ca(&req.subject, &key, &opts)
                .map_err(|e| internal("self-signing a root", e))?;
            ca.cert_pem = Some(cert.to_pem());
        }
        (CaType::PrivateSub, Some(parent_tag)) => {
            let parent = st.find_mut(parent_tag)?;
            let signer = parent.signer()?;
            let mut opts = IssueOptions::new(validity(
                ctx.now,
                Some(req.period),
                Some(signer.certificate().not_after),
            )?);
            opts.urls = urls(parent, ctx.base());
            let public = key
                .public_key()
                .map_err(|e| internal("reading a new key", e))?;
            let cert = pki::sign_ca(&signer, &req.subject, &public, &opts)
                .map_err(|e| internal("signing a sub CA", e))?;
            record_issue(ctx, parent, &cert, true);
            ca.cert_pem = Some(cert.to_pem());
            ca.chain_pems = parent.issuing_chain();
        }
        (CaType::PrivateSub, None) => {
            let csr = pki::create_csr(&req.subject, &[], &key, true)
                .map_err(|e| internal("creating a sub CA CSR", e))?;
            ca.csr_pem = Some(csr);
            ca.status = CaStatus::Pending;
        }
    }
    tracing::info!(ca_tag = %ca.tag, alias = %ca.alias, status = %ca.status, "created CA");
    let answer = to_value(&ca.detail(ctx.base()));
    st.cas.push(ca);
    st.dirty = true;
    answer
}

fn parse_create(call: &Call) -> Result<NewCa, ServiceMessage> {
    let ca_type = match call.query("caType") {
        None | Some("") => return Err(messages::CA_TYPE_MISSING),
        Some(t) => CaType::parse(t).ok_or(messages::INVALID_CA_TYPE)?,
    };
    let issuer_tag = call
        .query("issuerTag")
        .filter(|t| !t.is_empty())
        .map(str::to_string);
    if ca_type == CaType::PrivateRoot && issuer_tag.is_some() {
        return Err(messages::INVALID_INPUT);
    }
    let body = call.body()?;
    let alias = validate::alias(str_field(&body, "alias")?.as_deref())?;
    let memo = validate::memo(str_field(&body, "memo")?)?;
    // NCP documents no message for a missing keyType or period: the nearest documented ones.
    let key_type = validate::key_type(&required(&body, "keyType", messages::INVALID_KEY_TYPE)?)?;
    let period = validate::period(&required(&body, "period", messages::INVALID_PERIOD)?, true)?;
    let params = validate::x509_parameters(&body)?;
    let (subject, _sans) = validate::subject(&params)?;
    Ok(NewCa {
        ca_type,
        issuer_tag,
        alias,
        memo,
        key_type,
        period,
        params,
        subject,
    })
}

fn check_create(ctx: &Ctx<'_>, st: &State, req: &NewCa) -> Result<(), ServiceMessage> {
    if st.cas.len() >= ctx.shared.config.max_cas {
        return Err(messages::CA_LIMIT_EXCEEDED);
    }
    if st.cas.iter().any(|c| c.alias == req.alias) {
        return Err(messages::ALIAS_EXISTS);
    }
    if let Some(parent_tag) = &req.issuer_tag {
        let parent = st.find(parent_tag)?;
        if parent.status != CaStatus::Active {
            return Err(messages::INVALID_ISSUER_CA_STATUS);
        }
        if parent.signing_count >= ctx.max_issuances() {
            return Err(messages::SIGNING_LIMIT_EXCEEDED);
        }
        validity(ctx.now, Some(req.period), Some(parent.not_after()?))?;
    }
    Ok(())
}

/// URLs of certificates a CA issues.
pub(super) fn urls(ca: &Ca, base: &str) -> CertUrls {
    CertUrls {
        crl: Some(ca.crl_url(base)),
        ocsp: ca.ocsp_url.clone(),
        ca_issuers: Some(ca.ca_url(base)),
    }
}

/// Records a certificate `ca` signed and counts it.
pub(super) fn record_issue(ctx: &Ctx<'_>, ca: &mut Ca, cert: &CertInfo, is_ca: bool) {
    ca.certs.push(CertRecord::from_cert(cert, is_ca));
    ca.signing_count += 1;
    ctx.count_issued(&ca.tag);
    tracing::info!(ca_tag = %ca.tag, serial = %cert.serial, is_ca, "issued certificate");
}

/// `GET /api/v1/ca/{caTag}`.
pub(super) fn get(ctx: &Ctx<'_>, call: &Call) -> OpResult {
    let tag = call.tag()?;
    to_value(&ctx.lock().find(tag)?.detail(ctx.base()))
}

/// `GET /api/v1/ca[?pageNo=n]`.
pub(super) fn list(ctx: &Ctx<'_>, call: &Call) -> OpResult {
    let page_no = validate::page_no(call.query("pageNo"))?;
    let st = ctx.lock();
    let details: Vec<_> = st.cas.iter().map(|c| c.detail(ctx.base())).collect();
    let (items, pages) = page(&details, page_no, ctx.shared.config.page_size);
    Ok(json!({
        "totalCnt": details.len(),
        "totalPageNo": pages,
        "currentPageNo": page_no,
        "caInfoList": to_value(&items)?,
    }))
}

/// `PUT /api/v1/ca/{caTag}`: status (and memo). Answers both the flat and the nested form at once.
pub(super) fn update(ctx: &Ctx<'_>, call: &Call) -> OpResult {
    let tag = call.tag()?;
    let body = call.body()?;
    let status = str_field(&body, "status")?.filter(|s| !s.is_empty());
    let memo = str_field(&body, "memo")?;
    if status.is_none() && memo.is_none() {
        return Err(messages::STATUS_MISSING);
    }
    let target = status
        .map(|s| match s.as_str() {
            "ACTIVE" => Ok(CaStatus::Active),
            "DEACTIVATED" => Ok(CaStatus::Deactivated),
            "DESTROYING" => Ok(CaStatus::Destroying),
            _ => Err(messages::INVALID_STATUS_VALUE),
        })
        .transpose()?;
    let memo = memo.map(|m| validate::memo(Some(m))).transpose()?;
    let mut st = ctx.lock();
    let ca = st.find_mut(tag)?;
    if let Some(target) = target {
        transition(ca, target, ctx.now_ms)?;
    }
    if let Some(memo) = memo {
        ca.memo = memo;
    }
    let answer = updated_answer(&ca.detail(ctx.base()));
    st.dirty = true;
    answer
}

/// Update CA's answer, a superset of both documented shapes: the flat `CaInfo` (the 2022 docs and
/// NAVER's client) with `caInfo` and `caCertInfo` beside it (the current docs).
fn updated_answer(detail: &crate::ncp::types::CaDetail) -> OpResult {
    let Value::Object(mut answer) = to_value(&detail.ca_info)? else {
        return Err(internal("serialising an answer", "caInfo is not an object"));
    };
    answer.insert("caInfo".into(), to_value(&detail.ca_info)?);
    answer.insert("caCertInfo".into(), to_value(&detail.ca_cert_info)?);
    Ok(Value::Object(answer))
}

/// The CA status machine: ACTIVE ⇄ DEACTIVATED; any → DESTROYING (deletion in 72 h); DESTROYING →
/// ACTIVE cancels (back to PENDING for a CA without certificate); the same status is a no-op;
/// everything else "Invalid ca status.".
pub(crate) fn transition(ca: &mut Ca, target: CaStatus, now_ms: i64) -> Result<(), ServiceMessage> {
    use CaStatus as S;
    match (&ca.status, &target) {
        (cur, t) if cur == t => {}
        (S::Active, S::Deactivated) | (S::Deactivated, S::Active) => ca.set_status(target, now_ms),
        (S::Destroying, S::Active) => {
            let back = match ca.status_before_destroy.take() {
                Some(S::Pending) => S::Pending,
                _ => S::Active,
            };
            ca.destroy_ms = None;
            ca.set_status(back, now_ms);
            tracing::info!(ca_tag = %ca.tag, "cancelled CA deletion");
        }
        (_, S::Destroying) => {
            ca.status_before_destroy = Some(ca.status.clone());
            ca.destroy_ms = Some(now_ms.saturating_add(DESTROY_DELAY_MS));
            ca.set_status(target, now_ms);
            tracing::info!(ca_tag = %ca.tag, "scheduled CA deletion");
        }
        _ => return Err(messages::INVALID_CA_STATUS),
    }
    Ok(())
}

/// `DELETE /api/v1/ca/{caTag}`: only a DESTROYING CA; its subordinates go with it.
pub(super) fn delete(ctx: &Ctx<'_>, call: &Call) -> OpResult {
    let tag = call.tag()?;
    let mut st = ctx.lock();
    if st.find(tag)?.status != CaStatus::Destroying {
        return Err(messages::INVALID_CA_STATUS);
    }
    let deleted = st.remove_subtree(tag);
    tracing::info!(ca_tags = ?deleted, "deleted CA");
    Ok(Value::Null)
}

/// `POST /api/v1/ca/{caTag}/activate`: installs the externally signed certificate of a PENDING CA.
/// The chain must lead from the certificate to a self-signed certificate inside `caChainPem`.
pub(super) fn activate(ctx: &Ctx<'_>, call: &Call) -> OpResult {
    let tag = call.tag()?;
    let body = call.body()?;
    let cert_pem = required(&body, "certPem", messages::CERT_MISSING)?;
    let chain_pem = required(&body, "caChainPem", messages::CHAIN_MISSING)?;
    let cert = pki::parse_certificates_pem(&cert_pem)
        .ok()
        .and_then(|mut v| (!v.is_empty()).then(|| v.remove(0)))
        .ok_or(messages::INVALID_CERTIFICATE_VALUE)?;
    let chain = pki::parse_certificates_pem(&chain_pem)
        .ok()
        .filter(|c| !c.is_empty())
        .ok_or(messages::INVALID_CA_CHAIN)?;

    let mut st = ctx.lock();
    let ca = st.find(tag)?;
    if ca.status != CaStatus::Pending {
        return Err(messages::INVALID_CA_STATUS);
    }
    let key =
        PrivateKey::from_pem(&ca.key_pem).map_err(|e| internal("stored CA key unreadable", e))?;
    let public = key
        .public_key()
        .map_err(|e| internal("reading a CA key", e))?;
    if !cert.public_key.same_key_as(&public) || !cert.is_ca {
        return Err(messages::INVALID_CERT);
    }
    if ctx.now > cert.not_after {
        return Err(messages::EXPIRED_CERT);
    }
    let (roots, intermediates): (Vec<CertInfo>, Vec<CertInfo>) =
        chain.into_iter().partition(CertInfo::is_self_signed);
    let path = pki::verify_chain(&cert, &intermediates, &roots, ctx.now).map_err(|e| {
        tracing::info!(ca_tag = %tag, error = %e, "rejected sub CA activation");
        messages::INVALID_CA_CHAIN
    })?;
    let chain_pems: Vec<String> = path.iter().map(|c| c.to_pem()).collect();
    let Some(issuer_pem) = chain_pems.first() else {
        return Err(messages::INVALID_CA_CHAIN);
    };
    // Signed by one of our CAs: it is that CA's subordinate (deleted with it).
    let parent_tag = st
        .cas
        .iter()
        .find(|c| c.cert_pem.as_ref() == Some(issuer_pem))
        .map(|c| c.tag.clone());
    let ca = st.find_mut(tag)?;
    ca.chain_pems = chain_pems;
    ca.cert_pem = Some(cert.to_pem());
    ca.csr_pem = None;
    ca.parent_tag = parent_tag;
    ca.set_status(CaStatus::Active, ctx.now_ms);
    tracing::info!(ca_tag = %tag, "activated sub CA");
    let answer = to_value(&ca.detail(ctx.base()));
    st.dirty = true;
    answer
}

/// `GET /api/v1/ca/{caTag}/sub/csr`: only while PENDING.
pub(super) fn sub_csr(ctx: &Ctx<'_>, call: &Call) -> OpResult {
    let tag = call.tag()?;
    let st = ctx.lock();
    let ca = st.find(tag)?;
    match (&ca.status, &ca.csr_pem) {
        (CaStatus::Pending, Some(csr)) => Ok(json!({"csrPem": csr})),
        _ => Err(messages::INVALID_CA_STATUS),
    }
}

/// `GET /api/v1/ca/{caTag}/chain`: this CA's certificate, then its issuers up to the root, as one
/// string of concatenated PEM blocks.
pub(super) fn chain(ctx: &Ctx<'_>, call: &Call) -> OpResult {
    let tag = call.tag()?;
    let st = ctx.lock();
    let ca = st.find(tag)?;
    if ca.cert_pem.is_none() {
        return Err(messages::INVALID_CA_STATUS);
    }
    Ok(Value::String(ca.issuing_chain().concat()))
}
