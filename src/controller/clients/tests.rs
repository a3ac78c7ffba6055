use super::*;

fn spec(endpoint: &str) -> IssuerSpec {
    serde_json::from_value(serde_json::json!({
        "caTag": "tag",
        "endpoint": endpoint,
        "credentials": {"secretRef": {"name": "creds"}}
    }))
    .expect("issuer spec")
}

const TIMEOUT: Duration = Duration::from_secs(5);

fn key(generation: i64) -> ClientKey {
    ClientKey {
        generation: Some(generation),
        secret_version: Some("1".into()),
    }
}

#[test]
fn an_issuer_keeps_one_client_and_rotated_credentials_replace_it() {
    let cache = NcpClientCache::default();
    let first = spec("http://127.0.0.1:1");
    let old = Credentials::new("ak", "sk-1");
    cache
        .install("PrivateCA/a/x", key(1), &first, &old, TIMEOUT)
        .unwrap();
    cache
        .install("PrivateCA/a/x", key(1), &first, &old, TIMEOUT)
        .unwrap();
    assert_eq!(cache.len(), 1);
    cache
        .install(
            "PrivateCA/a/x",
            key(1),
            &first,
            &Credentials::new("ak", "sk-2"),
            TIMEOUT,
        )
        .unwrap();
    assert_eq!(cache.len(), 1, "the old client went with the rotation");
    cache
        .install(
            "PrivateCA/a/x",
            key(2),
            &spec("http://127.0.0.1:2"),
            &old,
            TIMEOUT,
        )
        .unwrap();
    assert_eq!(cache.len(), 1, "a new endpoint replaces the client too");
}

#[test]
fn issuers_with_the_same_settings_share_a_client_until_the_last_is_removed() {
    let cache = NcpClientCache::default();
    let spec = spec("http://127.0.0.1:1");
    let creds = Credentials::new("ak", "sk");
    cache
        .install("PrivateCA/a/x", key(1), &spec, &creds, TIMEOUT)
        .unwrap();
    cache
        .install("ClusterPrivateCA/y", key(1), &spec, &creds, TIMEOUT)
        .unwrap();
    assert_eq!(cache.len(), 1);
    assert!(cache.remove("PrivateCA/a/x"));
    assert!(!cache.remove("PrivateCA/a/x"));
    assert_eq!(cache.len(), 1, "still held by the other issuer");
    assert!(cache.remove("ClusterPrivateCA/y"));
    assert!(cache.is_empty());
}

#[test]
fn retain_forgets_the_clients_of_issuers_that_are_gone() {
    let cache = NcpClientCache::default();
    let creds = Credentials::new("ak", "sk");
    cache
        .install(
            "PrivateCA/a/x",
            key(1),
            &spec("http://127.0.0.1:1"),
            &creds,
            TIMEOUT,
        )
        .unwrap();
    cache
        .install(
            "PrivateCA/a/y",
            key(1),
            &spec("http://127.0.0.1:2"),
            &creds,
            TIMEOUT,
        )
        .unwrap();
    assert_eq!(cache.retain(|owner| owner == "PrivateCA/a/y"), 1);
    assert_eq!(cache.len(), 1);
    assert_eq!(cache.retain(|_| false), 1);
    assert!(cache.is_empty());
}

#[test]
fn a_bad_ca_bundle_is_an_error_and_the_issuer_holds_no_client_after_it() {
    let cache = NcpClientCache::default();
    let creds = Credentials::new("ak", "sk");
    let good = spec("http://127.0.0.1:1");
    cache
        .install("PrivateCA/a/x", key(1), &good, &creds, TIMEOUT)
        .unwrap();
    let mut bad = good;
    bad.ca_bundle = Some("not base64!".into());
    assert!(matches!(
        cache.install("PrivateCA/a/x", key(2), &bad, &creds, TIMEOUT),
        Err(IssuerError::CaBundle(_))
    ));
    assert!(cache.is_empty());
    assert!(cache.current("PrivateCA/a/x", Some(1)).is_none());
}

#[test]
fn requests_get_the_client_only_for_the_generation_the_check_saw() {
    let cache = NcpClientCache::default();
    let creds = Credentials::new("ak", "sk");
    let spec = spec("http://127.0.0.1:1");
    assert!(
        cache.current("PrivateCA/a/x", Some(1)).is_none(),
        "not checked yet"
    );
    cache
        .install("PrivateCA/a/x", key(1), &spec, &creds, TIMEOUT)
        .unwrap();
    assert!(cache.current("PrivateCA/a/x", Some(1)).is_some());
    assert!(
        cache.current("PrivateCA/a/x", Some(2)).is_none(),
        "the spec changed since the check"
    );
    assert_eq!(cache.key("PrivateCA/a/x"), Some(key(1)));
}

#[tokio::test]
async fn a_recheck_is_asked_once_per_client_and_a_replaced_client_is_announced() {
    use futures::StreamExt as _;
    let cache = NcpClientCache::default();
    let creds = Credentials::new("ak", "sk");
    let spec = spec("http://127.0.0.1:1");
    let mut notices = Box::pin(cache.notices());
    assert!(
        !cache.ask_recheck("PrivateCA/a/x"),
        "no client, nothing to re-check"
    );
    cache
        .install("PrivateCA/a/x", key(1), &spec, &creds, TIMEOUT)
        .unwrap();
    assert!(cache.ask_recheck("PrivateCA/a/x"));
    assert!(!cache.ask_recheck("PrivateCA/a/x"), "one ask per client");
    assert_eq!(
        notices.next().await,
        Some(Notice::RecheckAsked("PrivateCA/a/x".into()))
    );
    // The check read the same credentials: asks are possible again, nothing was replaced.
    cache
        .install("PrivateCA/a/x", key(1), &spec, &creds, TIMEOUT)
        .unwrap();
    assert!(cache.ask_recheck("PrivateCA/a/x"));
    // Rotated credentials: a new client, announced.
    cache
        .install(
            "PrivateCA/a/x",
            key(1),
            &spec,
            &Credentials::new("ak", "sk-2"),
            TIMEOUT,
        )
        .unwrap();
    assert_eq!(
        notices.next().await,
        Some(Notice::RecheckAsked("PrivateCA/a/x".into()))
    );
    assert_eq!(
        notices.next().await,
        Some(Notice::Replaced("PrivateCA/a/x".into()))
    );
}
