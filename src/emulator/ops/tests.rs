//! Unit tests of the operations: the CA status machine and the limits, without HTTP.

use super::common::{page, validity};
use super::*;
use crate::emulator::config::EmulatorConfig;
use crate::emulator::request::Call;
use crate::emulator::state::Shared;
use crate::emulator::state::State;
use crate::ncp::messages;
use crate::ncp::signing::Credentials;
use crate::ncp::types::Period;
use crate::ncp::types::{CaStatus, KeyType};
use crate::pki::{self, Csr, PrivateKey};
use serde_json::{Value, json};

fn shared_with(f: impl FnOnce(&mut EmulatorConfig)) -> Shared {
    let mut config = EmulatorConfig::new(Credentials::new("ak", "sk"));
    f(&mut config);
    Shared::new(config, "http://127.0.0.1:1".into(), State::default())
}

fn shared() -> Shared {
    shared_with(|_| {})
}

#[allow(clippy::needless_pass_by_value)] // calls read best with `json!` literals
fn call(op: Operation, tag: Option<&str>, query: &str, body: Value) -> Call {
    Call {
        op,
        ca_tag: tag.map(str::to_string),
        serial: None,
        id_no: None,
        query: crate::emulator::request::parse_query(Some(query)),
        body: if body.is_null() {
            Vec::new()
        } else {
            body.to_string().into_bytes()
        },
    }
}

fn create_body(alias: &str, period: &str) -> Value {
    json!({"alias": alias, "keyType": "EC256", "period": period, "x509Parameters": {"commonName": alias}})
}

fn create(s: &Shared, query: &str, alias: &str) -> Result<String, ServiceMessage> {
    let data = execute(
        s,
        &call(Operation::CreateCa, None, query, create_body(alias, "365")),
    )?;
    Ok(data["caInfo"]["caTag"].as_str().unwrap().to_string())
}

fn status(s: &Shared, tag: &str) -> CaStatus {
    s.state().find(tag).unwrap().status.clone()
}

fn update(s: &Shared, tag: &str, status: &str) -> OpResult {
    execute(
        s,
        &call(
            Operation::UpdateCa,
            Some(tag),
            "",
            json!({"status": status}),
        ),
    )
}

fn sign_end(s: &Shared, tag: &str) -> OpResult {
    let key = PrivateKey::generate(KeyType::Ec256).unwrap();
    let csr = pki::create_csr(
        &pki::Name::new().with(pki::NameAttr::CommonName, "leaf"),
        &[],
        &key,
        false,
    )
    .unwrap();
    execute(
        s,
        &call(
            Operation::SignEndCsr,
            Some(tag),
            "",
            json!({"csrPem": csr, "period": "30"}),
        ),
    )
}

#[test]
fn roots_and_parented_subs_are_active_and_unparented_subs_wait_for_activation() {
    let s = shared();
    let root = create(&s, "caType=PRIVATE_ROOT", "root1").unwrap();
    let sub = create(&s, &format!("caType=PRIVATE_SUB&issuerTag={root}"), "sub1").unwrap();
    let pending = create(&s, "caType=PRIVATE_SUB", "pending1").unwrap();
    assert_eq!(status(&s, &root), CaStatus::Active);
    assert_eq!(status(&s, &sub), CaStatus::Active);
    assert_eq!(status(&s, &pending), CaStatus::Pending);
    assert_eq!(
        s.state().find(&root).unwrap().signing_count,
        1,
        "the sub CA certificate counts"
    );
    // caTag: two groups of eight lowercase letters and digits.
    let (a, b) = root.split_once('-').unwrap();
    assert!([a, b].iter().all(|g| {
        g.len() == 8
            && g.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    }));

    let chain = execute(
        &s,
        &call(Operation::GetCaChain, Some(&sub), "", Value::Null),
    )
    .unwrap();
    assert_eq!(
        pki::parse_certificates_pem(chain.as_str().unwrap())
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        execute(
            &s,
            &call(Operation::GetCaChain, Some(&pending), "", Value::Null)
        )
        .unwrap_err(),
        messages::INVALID_CA_STATUS
    );
    assert_eq!(
        sign_end(&s, &pending).unwrap_err(),
        messages::INVALID_CA_STATUS
    );

    // Sign the pending CA's CSR with the sub CA, then activate it with the chain from the answer.
    let csr = execute(
        &s,
        &call(Operation::GetSubCsr, Some(&pending), "", Value::Null),
    )
    .unwrap();
    let signed = execute(
        &s,
        &call(
            Operation::SignSubCsr,
            Some(&sub),
            "",
            json!({"period": "100", "csrPem": csr["csrPem"]}),
        ),
    )
    .unwrap();
    let chain: Vec<String> = serde_json::from_value(signed["caChain"].clone()).unwrap();
    let bad = execute(
        &s,
        &call(
            Operation::ActivateSubCa,
            Some(&pending),
            "",
            json!({"certPem": signed["certificate"], "caChainPem": chain[0]}),
        ),
    );
    assert_eq!(
        bad.unwrap_err(),
        messages::INVALID_CA_CHAIN,
        "a chain without its root does not verify"
    );
    execute(
        &s,
        &call(
            Operation::ActivateSubCa,
            Some(&pending),
            "",
            json!({"certPem": signed["certificate"], "caChainPem": chain.concat()}),
        ),
    )
    .unwrap();
    assert_eq!(status(&s, &pending), CaStatus::Active);
    assert_eq!(
        execute(
            &s,
            &call(Operation::GetSubCsr, Some(&pending), "", Value::Null)
        )
        .unwrap_err(),
        messages::INVALID_CA_STATUS
    );
    sign_end(&s, &pending).unwrap();
}

#[test]
fn the_status_machine_allows_only_the_documented_transitions() {
    let s = shared();
    let root = create(&s, "caType=PRIVATE_ROOT", "root1").unwrap();
    update(&s, &root, "DEACTIVATED").unwrap();
    assert_eq!(
        sign_end(&s, &root).unwrap_err(),
        messages::INVALID_CA_STATUS
    );
    update(&s, &root, "ACTIVE").unwrap();
    sign_end(&s, &root).unwrap();
    assert_eq!(
        update(&s, &root, "PENDING").unwrap_err(),
        messages::INVALID_STATUS_VALUE
    );
    assert_eq!(
        execute(&s, &call(Operation::UpdateCa, Some(&root), "", json!({}))).unwrap_err(),
        messages::STATUS_MISSING
    );
    assert_eq!(
        execute(&s, &call(Operation::DeleteCa, Some(&root), "", Value::Null)).unwrap_err(),
        messages::INVALID_CA_STATUS
    );
    let answer = update(&s, &root, "DESTROYING").unwrap();
    assert!(answer["caInfo"]["destroyDate"].as_i64().is_some());
    assert_eq!(
        update(&s, &root, "DEACTIVATED").unwrap_err(),
        messages::INVALID_CA_STATUS
    );
    update(&s, &root, "ACTIVE").unwrap();
    assert_eq!(status(&s, &root), CaStatus::Active);

    let pending = create(&s, "caType=PRIVATE_SUB", "pending1").unwrap();
    assert_eq!(
        update(&s, &pending, "ACTIVE").unwrap_err(),
        messages::INVALID_CA_STATUS
    );
    update(&s, &pending, "DESTROYING").unwrap();
    update(&s, &pending, "ACTIVE").unwrap();
    assert_eq!(
        status(&s, &pending),
        CaStatus::Pending,
        "cancelling returns a CA without certificate to PENDING"
    );
}

#[test]
fn deleting_a_destroying_ca_removes_its_subordinates_and_72_hours_do_it_automatically() {
    let s = shared();
    let root = create(&s, "caType=PRIVATE_ROOT", "root1").unwrap();
    let sub = create(&s, &format!("caType=PRIVATE_SUB&issuerTag={root}"), "sub1").unwrap();
    update(&s, &root, "DESTROYING").unwrap();
    execute(&s, &call(Operation::DeleteCa, Some(&root), "", Value::Null)).unwrap();
    assert!(s.state().cas.is_empty(), "{sub} went with its root");

    let root = create(&s, "caType=PRIVATE_ROOT", "root2").unwrap();
    let sub = create(&s, &format!("caType=PRIVATE_SUB&issuerTag={root}"), "sub2").unwrap();
    update(&s, &root, "DESTROYING").unwrap();
    s.clock.advance(72 * 3_600_000 - 60_000);
    execute(&s, &call(Operation::GetCa, Some(&sub), "", Value::Null)).unwrap();
    s.clock.advance(120_000);
    assert_eq!(
        execute(&s, &call(Operation::GetCa, Some(&sub), "", Value::Null)).unwrap_err(),
        messages::CA_NOT_FOUND
    );
    assert!(s.state().cas.is_empty());
}

#[test]
fn ca_count_alias_and_validity_limits_apply() {
    let s = shared_with(|c| c.max_cas = 2);
    let root = create(&s, "caType=PRIVATE_ROOT", "root1").unwrap();
    assert_eq!(
        create(&s, "caType=PRIVATE_ROOT", "root1").unwrap_err(),
        messages::ALIAS_EXISTS
    );
    assert_eq!(
        create(&s, "caType=PRIVATE_ROOT", "x").unwrap_err(),
        messages::INVALID_INPUT
    );
    let body = create_body("sub1", "366");
    let too_long = execute(
        &s,
        &call(
            Operation::CreateCa,
            None,
            &format!("caType=PRIVATE_SUB&issuerTag={root}"),
            body,
        ),
    );
    assert_eq!(too_long.unwrap_err(), messages::CA_VALIDITY_EXCEEDED);
    create(&s, "caType=PRIVATE_ROOT", "root2").unwrap();
    assert_eq!(
        create(&s, "caType=PRIVATE_ROOT", "root3").unwrap_err(),
        messages::CA_LIMIT_EXCEEDED
    );
    assert_eq!(
        create(&s, "caType=NOPE", "root3").unwrap_err(),
        messages::INVALID_CA_TYPE
    );
    assert_eq!(
        create(&s, "", "root3").unwrap_err(),
        messages::CA_TYPE_MISSING
    );
    assert_eq!(
        create(&s, "caType=PRIVATE_SUB&issuerTag=nope-nope", "sub9").unwrap_err(),
        messages::CA_LIMIT_EXCEEDED,
        "the CA limit is checked first"
    );
}

#[test]
fn the_signing_limit_stops_issuance_and_revocation_reaches_the_crl() {
    let s = shared_with(|c| c.max_issuances_per_ca = 2);
    let root = create(&s, "caType=PRIVATE_ROOT", "root1").unwrap();
    let first = sign_end(&s, &root).unwrap();
    sign_end(&s, &root).unwrap();
    assert_eq!(
        sign_end(&s, &root).unwrap_err(),
        messages::SIGNING_LIMIT_EXCEEDED
    );

    let serial = first["serialNo"].as_str().unwrap().to_string();
    let mut revoke = call(Operation::RevokeEndCert, Some(&root), "", Value::Null);
    revoke.serial = Some(serial.clone());
    execute(&s, &revoke).unwrap();
    let crl = execute(&s, &call(Operation::GetCaCrl, Some(&root), "", Value::Null)).unwrap();
    let crl = pki::CrlInfo::from_pem(crl.as_str().unwrap()).unwrap();
    assert!(crl.is_revoked(&pki::Serial::parse(&serial).unwrap()));

    let own = s
        .state()
        .find(&root)
        .unwrap()
        .certificate()
        .unwrap()
        .serial
        .to_colon_hex();
    revoke.serial = Some(own);
    assert_eq!(
        execute(&s, &revoke).unwrap_err(),
        messages::CA_CERT_NOT_REVOCABLE
    );
}

#[test]
fn a_csr_with_an_unsupported_key_or_mismatching_legacy_fields_is_refused() {
    let s = shared();
    let root = create(&s, "caType=PRIVATE_ROOT", "root1").unwrap();
    let key = PrivateKey::generate(KeyType::Rsa2048).unwrap();
    let csr = pki::create_csr(
        &pki::Name::new().with(pki::NameAttr::CommonName, "x"),
        &[],
        &key,
        false,
    )
    .unwrap();
    assert!(Csr::from_pem(&csr).is_ok());
    let sign = |extra: Value| {
        let mut body = json!({"csrPem": csr});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        execute(&s, &call(Operation::SignEndCsr, Some(&root), "", body))
    };
    assert!(sign(json!({"keyType": "RSA", "keyBits": "2048"})).is_ok());
    assert!(sign(json!({"keyType": "RSA2048"})).is_ok());
    assert_eq!(
        sign(json!({"keyType": "ECDSA", "keyBits": "256"})).unwrap_err(),
        messages::KEY_TYPE_MISMATCH
    );
    assert_eq!(
        sign(json!({"keyType": "RSA", "keyBits": "4096"})).unwrap_err(),
        messages::KEY_BITS_MISMATCH
    );
    assert_eq!(
        sign(json!({"keyType": "RSA4096"})).unwrap_err(),
        messages::KEY_BITS_MISMATCH
    );
    assert_eq!(
        sign(json!({"keyType": "RSA"})).unwrap_err(),
        messages::KEY_BITS_MISSING
    );
    assert_eq!(
        sign(json!({"keyBits": "1024"})).unwrap_err(),
        messages::UNSUPPORTED_KEY_BITS
    );
    assert_eq!(
        sign(json!({"keyType": "DSA"})).unwrap_err(),
        messages::INVALID_KEY_TYPE
    );
    assert_eq!(
        sign(json!({"period": "0"})).unwrap_err(),
        messages::INVALID_PERIOD
    );
}

#[test]
fn certificate_validity_is_cut_or_refused_at_the_issuers_end() {
    // CA certificates carry whole seconds.
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap();
    let ca_end = now + time::Duration::days(10);
    let v = validity(now, None, Some(ca_end)).unwrap();
    assert_eq!(v.not_after, ca_end);
    let v = validity(now, Some(Period::Max), Some(ca_end)).unwrap();
    assert_eq!(v.not_after, ca_end);
    assert_eq!(
        validity(now, Some(Period::Days(11)), Some(ca_end)).unwrap_err(),
        messages::CA_VALIDITY_EXCEEDED
    );
    let v = validity(now, Some(Period::Max), None).unwrap();
    assert_eq!((v.not_after - v.not_before).whole_days(), 3650);
    assert_eq!(
        validity(now, None, Some(now - time::Duration::days(1))).unwrap_err(),
        messages::CA_VALIDITY_EXCEEDED
    );
}

#[test]
fn pages_split_lists_by_the_page_size() {
    let items: Vec<u32> = (1..=25).collect();
    assert_eq!(page(&items, 1, 10), ((1..=10).collect(), 3));
    assert_eq!(page(&items, 3, 10), ((21..=25).collect(), 3));
    assert_eq!(page(&items, 4, 10).0, Vec::<u32>::new());
    assert_eq!(page::<u32>(&[], 1, 10), (vec![], 0));
}
