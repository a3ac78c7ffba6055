//! The search against the emulator (which counts calls per operation): bounded calls on a busy CA,
//! an early stop at the first page older than the window, the call budget, and the index's bounds.

use super::index::MAX_ENTRIES_PER_CA;
use super::sought::Entry;
use super::sought::{fp, sans_fp};
use super::*;
use crate::emulator::{self, EmulatorConfig, EmulatorHandle};
use crate::ncp::Operation;
use crate::ncp::types::{CaType, KeyType, Period, X509Parameters};
use crate::pki::{Name, NameAttr, PrivateKey, San, create_csr};

const AK: &str = "recovery-test-ak";
const SK: &str = "recovery-test-sk-0123456789";
const SETTLE: Duration = Duration::from_secs(65);
const DAY_MS: i64 = 86_400_000;

async fn emulator() -> EmulatorHandle {
    crate::telemetry::install_crypto_provider();
    let mut config = EmulatorConfig::new(crate::ncp::Credentials::new(AK, SK));
    config.test_controls = true;
    emulator::spawn(config).await.expect("emulator starts")
}

fn client(emu: &EmulatorHandle) -> ncp::Client {
    ncp::Client::new(
        ncp::ClientConfig::new(crate::ncp::Credentials::new(AK, SK)).with_endpoint(emu.base_url()),
    )
    .expect("client")
}

async fn root_ca(ncp: &ncp::Client) -> String {
    let new = crate::ncp::NewCa {
        ca_type: CaType::PrivateRoot,
        issuer_tag: None,
        alias: "recovery".into(),
        memo: None,
        key_type: KeyType::Ec256,
        period: Period::Days(3650),
        subject: X509Parameters {
            common_name: Some("Recovery test root".into()),
            ..X509Parameters::default()
        },
    };
    ncp.create_ca(&new).await.expect("CA").ca_info.ca_tag
}

fn csr_for(name: &str) -> (String, Vec<u8>, Vec<San>) {
    let key = PrivateKey::generate(KeyType::Ec256).expect("key");
    let sans = vec![San::Dns(format!("{name}.example.com"))];
    let csr = create_csr(
        &Name::new().with(NameAttr::CommonName, name),
        &sans,
        &key,
        false,
    )
    .expect("csr");
    (csr, key.spki_der(), sans)
}

/// Signs `count` certificates for one filler key, `age_ms` in the emulator's past (the first one 2 s
/// before the others, so that the list's order can be told).
async fn seed(emu: &EmulatorHandle, ncp: &ncp::Client, ca_tag: &str, count: usize, age_ms: i64) {
    let (csr, _, _) = csr_for("filler");
    emu.advance_clock(-age_ms - 2000);
    ncp.sign_end_csr(ca_tag, &csr, Some(Period::Days(30)))
        .await
        .expect("filler signed");
    emu.advance_clock(2000);
    let count = count - 1;
    let per_task = count.div_ceil(8);
    let mut tasks = Vec::new();
    for t in 0..8 {
        let n = per_task.min(count.saturating_sub(t * per_task));
        let (ncp, ca_tag, csr) = (ncp.clone(), ca_tag.to_string(), csr.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..n {
                ncp.sign_end_csr(&ca_tag, &csr, Some(Period::Days(30)))
                    .await
                    .expect("filler signed");
            }
        }));
    }
    for t in tasks {
        t.await.expect("seeding task");
    }
    emu.advance_clock(age_ms);
}

fn lookups(emu: &EmulatorHandle) -> u64 {
    let s = emu.stats();
    s.calls(Operation::GetEndCertList).total + s.calls(Operation::GetEndCert).total
}

/// Searches until found or not found, counting the reconciles (each within the call budget).
async fn search_to_end(
    ncp: &ncp::Client,
    index: &RecoveryIndex,
    ca_tag: &str,
    id: &str,
    window: Window,
    sought: &Sought,
) -> (Search, u32) {
    for reconcile in 1..=100 {
        match find_issued(ncp, index, ca_tag, id, window, sought)
            .await
            .expect("NCP answers")
        {
            // The requeue of a real reconcile, shortened.
            Search::Unfinished => tokio::time::sleep(Duration::from_millis(20)).await,
            done => return (done, reconcile),
        }
    }
    panic!("{id}: no end after 100 reconciles");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn recovery_on_a_ca_with_10000_certificates_takes_at_most_5_calls_per_request() {
    let emu = emulator().await;
    let ncp = client(&emu);
    let ca_tag = root_ca(&ncp).await;
    seed(&emu, &ncp, &ca_tag, 10_000, DAY_MS).await;
    // Ten signings whose answers were "lost", a second apart at most.
    let mut lost = Vec::new();
    for i in 0..10 {
        let (csr, spki, sans) = csr_for(&format!("lost{i}"));
        let started = k8s_openapi::jiff::Timestamp::now().as_millisecond();
        let serial = ncp
            .sign_end_csr(&ca_tag, &csr, Some(Period::Days(30)))
            .await
            .expect("signed")
            .serial_no;
        lost.push((serial, started, Sought::key_and_sans(&spki, &sans)));
    }
    let index = RecoveryIndex::default();
    let before = lookups(&emu);
    let mut tasks = Vec::new();
    let index = std::sync::Arc::new(index);
    for (i, (serial, started, sought)) in lost.into_iter().enumerate() {
        let (ncp, index, ca_tag) = (ncp.clone(), index.clone(), ca_tag.clone());
        tasks.push(tokio::spawn(async move {
            let window = Window::around(started, SETTLE);
            let (found, _) =
                search_to_end(&ncp, &index, &ca_tag, &format!("r{i}"), window, &sought).await;
            match found {
                Search::Found(r) => assert_eq!(r.serial, serial),
                other => panic!("r{i}: {other:?}"),
            }
        }));
    }
    for t in tasks {
        t.await.expect("search");
    }
    let calls = lookups(&emu) - before;
    eprintln!("{calls} NCP calls for 10 recovered requests on a CA with 10,010 certificates");
    assert!(
        calls <= 5 * 10,
        "{calls} NCP calls for 10 recovered requests on a CA with 10,010 certificates"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_found_stops_at_the_first_page_older_than_the_window() {
    let emu = emulator().await;
    let ncp = client(&emu);
    let ca_tag = root_ca(&ncp).await;
    seed(&emu, &ncp, &ca_tag, 300, DAY_MS).await;
    let (_, spki, sans) = csr_for("never-signed");
    let index = RecoveryIndex::default();
    let before = lookups(&emu);
    let started = k8s_openapi::jiff::Timestamp::now().as_millisecond();
    let (result, reconciles) = search_to_end(
        &ncp,
        &index,
        &ca_tag,
        "never",
        Window::around(started, SETTLE),
        &Sought::key_and_sans(&spki, &sans),
    )
    .await;
    assert!(
        matches!(result, Search::NotFound { started_ms } if started_ms >= started),
        "{result:?}"
    );
    assert_eq!(reconciles, 1);
    // Order detection (page 1, last page, their two ends), then the last page, already in hand:
    // its newest certificate is older than the window.
    assert_eq!(lookups(&emu) - before, 4);
    // The order is known now: a second search reads the last page and one certificate (cached).
    let before = lookups(&emu);
    let (result, _) = search_to_end(
        &ncp,
        &index,
        &ca_tag,
        "never-again",
        Window::around(started, SETTLE),
        &Sought::key_and_sans(&spki, &sans),
    )
    .await;
    assert!(matches!(result, Search::NotFound { .. }), "{result:?}");
    assert_eq!(
        lookups(&emu) - before,
        1,
        "one list call, the rest from the index"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_beyond_the_call_budget_goes_on_where_it_stopped() {
    let emu = emulator().await;
    let ncp = client(&emu);
    let ca_tag = root_ca(&ncp).await;
    let started = k8s_openapi::jiff::Timestamp::now().as_millisecond();
    seed(&emu, &ncp, &ca_tag, 30, 0).await;
    let (csr, spki, sans) = csr_for("buried");
    let serial = ncp
        .sign_end_csr(&ca_tag, &csr, Some(Period::Days(30)))
        .await
        .expect("signed")
        .serial_no;
    // 60 more certificates inside the window bury it under six pages.
    seed(&emu, &ncp, &ca_tag, 60, 0).await;
    let index = RecoveryIndex::default();
    let sought = Sought::key_and_sans(&spki, &sans);
    let window = Window::around(started, SETTLE);
    let mut reconciles = 0;
    let found = loop {
        reconciles += 1;
        let before = lookups(&emu);
        let result = find_issued(&ncp, &index, &ca_tag, "buried", window, &sought)
            .await
            .expect("NCP answers");
        let calls = lookups(&emu) - before;
        assert!(calls <= u64::from(RECOVERY_CALL_BUDGET), "{calls} calls");
        match result {
            Search::Unfinished => assert!(reconciles < 10, "no progress"),
            Search::Found(r) => break r,
            Search::NotFound { .. } => panic!("not found"),
        }
    };
    assert_eq!(found.serial, serial);
    assert!(
        reconciles >= 3,
        "{reconciles}: 60 certificates before it need several budgets"
    );
}

#[test]
fn windows_exclude_only_known_times_outside_them() {
    let w = Window::around(1_000_000_000, SETTLE);
    let margin = i64::try_from((SETTLE + RECOVERY_SKEW).as_millis()).unwrap();
    assert!(!w.excludes(None));
    assert!(!w.excludes(Some(1_000_000_000 - margin)));
    assert!(w.excludes(Some(1_000_000_000 - margin - 1)));
    assert!(w.excludes(Some(1_000_000_000 + margin + 1)));
    assert!(w.is_older(Some(0)) && !w.is_newer(Some(0)));
}

#[test]
fn sought_matches_the_key_and_exact_san_set_or_a_ca_key() {
    let (_, spki, sans) = csr_for("a");
    let sought = Sought::key_and_sans(&spki, &sans);
    let entry = |key: &[u8], s: &[San], is_ca| Entry {
        not_before_ms: Some(1),
        fingerprint: Some(super::sought::Fingerprint {
            key: fp(key),
            sans: sans_fp(s),
            is_ca,
        }),
    };
    assert!(sought.matches_entry(&entry(&spki, &sans, false)));
    let mut more = sans.clone();
    more.push(San::Dns("b.example.com".into()));
    assert!(!sought.matches_entry(&entry(&spki, &more, false)));
    assert!(!sought.matches_entry(&entry(b"other", &sans, false)));
    let ca = Sought::ca_key(&spki);
    assert!(ca.matches_entry(&entry(&spki, &[], true)));
    assert!(!ca.matches_entry(&entry(&spki, &[], false)));
    assert!(!sought.matches_entry(&Entry {
        not_before_ms: None,
        fingerprint: None
    }));
}

#[test]
fn the_index_is_bounded_per_ca_and_in_cas() {
    let index = RecoveryIndex::default();
    let entry = Entry {
        not_before_ms: Some(1),
        fingerprint: None,
    };
    for i in 0..(MAX_ENTRIES_PER_CA + 100) {
        index.insert("ca", &format!("s{i}"), entry.clone());
    }
    assert!(index.len() <= MAX_ENTRIES_PER_CA, "{}", index.len());
    assert!(
        index
            .get("ca", &format!("s{}", MAX_ENTRIES_PER_CA + 99))
            .is_some()
    );
    for c in 0..(MAX_INDEXED_CAS + 10) {
        index.insert(&format!("ca{c}"), "s", entry.clone());
    }
    assert!(index.len() <= MAX_ENTRIES_PER_CA + MAX_INDEXED_CAS);
    // Two endpoints (tenants) with the same CA tag never share entries.
    assert_ne!(ca_key("http://a", "k", "t"), ca_key("http://b", "k", "t"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn later_searches_read_only_the_newest_page_of_a_busy_window() {
    let emu = emulator().await;
    let ncp = client(&emu);
    let ca_tag = root_ca(&ncp).await;
    seed(&emu, &ncp, &ca_tag, 100, DAY_MS).await;
    // Fifty certificates inside the window, none the one sought.
    seed(&emu, &ncp, &ca_tag, 50, 0).await;
    let started = k8s_openapi::jiff::Timestamp::now().as_millisecond();
    let (_, spki, sans) = csr_for("absent");
    let sought = Sought::key_and_sans(&spki, &sans);
    let window = Window::around(started, SETTLE);
    let index = RecoveryIndex::default();
    let (first, _) = search_to_end(&ncp, &index, &ca_tag, "one", window, &sought).await;
    assert!(matches!(first, Search::NotFound { .. }), "{first:?}");
    let before = lookups(&emu);
    let (second, reconciles) = search_to_end(&ncp, &index, &ca_tag, "two", window, &sought).await;
    assert!(matches!(second, Search::NotFound { .. }), "{second:?}");
    assert_eq!(reconciles, 1);
    assert_eq!(
        lookups(&emu) - before,
        1,
        "the newest page; the full pages below it and their certificates come from the index"
    );
}
