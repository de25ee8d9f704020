//! End-to-end ACME against a real pebble on 127.0.0.1, validating challenges over
//! real sockets. Skips with a message when pebble is not installed.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use common::*;
use serde_json::json;
use sluice_acme::{
    Backoff, Certificate, Challenges, DomainState, Domains, FileStorage, Resolver, Storage,
    StoredState,
};
use tokio::net::TcpListener;

const LIMIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn http01_issues_a_certificate_a_client_trusting_pebble_accepts() {
    if !pebble_installed() {
        return;
    }
    init_tracing();
    let challenges = Challenges::new();
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let pebble = Pebble::start(PebbleOptions {
        http_port: http.local_addr().unwrap().port(),
        tls_port: free_port(),
        ..Default::default()
    })
    .await;
    tokio::spawn(serve_http01(http, challenges.clone()));

    let path = pebble.dir.path().join("acme.json");
    let settings = pebble.settings(
        "pebble",
        json!({"httpChallenge": {"entryPoint": "web"}}),
        &path,
    );
    let storage = Arc::new(FileStorage::new(&path));
    let handle = Resolver::spawn(settings, challenges.clone(), storage.clone());
    let wanted = Domains {
        main: "www.sluice.test".into(),
        sans: vec!["sluice.test".into()],
    };
    let started = Instant::now();
    handle.request(vec![wanted.clone()]);
    let certs = wait_for_certificates(&handle, LIMIT, |c| !c.is_empty()).await;
    println!(
        "figure: HTTP-01 certificate issued by pebble in {} ms (account registration included)",
        started.elapsed().as_millis()
    );

    let root = pebble.root_pem().await;
    assert_eq!(certs.len(), 1);
    assert_eq!(certs[0].domains, wanted);
    handshake_with(&certs[0], "www.sluice.test", &root)
        .await
        .unwrap();
    handshake_with(&certs[0], "sluice.test", &root)
        .await
        .unwrap();
    let wrong = handshake_with(&certs[0], "other.test", &root).await;
    assert!(wrong.is_err(), "a name outside the certificate must fail");
    let status = handle.status();
    assert_eq!(status.len(), 1);
    assert_eq!(status[0].state, DomainState::Valid);
    assert_eq!(status[0].valid_until, Some(certs[0].not_after));
    // The answer is withdrawn once the order is settled.
    assert!(challenges.http01("anything").is_none());

    // Stored in Traefik's format with the account, mode 0600.
    let stored = storage.load("pebble").await.unwrap();
    assert_eq!(stored.certificates, certs.as_ref().clone());
    assert!(stored
        .account
        .unwrap()
        .uri
        .starts_with("https://127.0.0.1:"));
    let raw: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(raw["pebble"]["Certificates"][0]["Store"], "default");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    // A second domain set reuses the stored account and adds a certificate.
    let started = Instant::now();
    handle.request(vec![wanted.clone(), Domains::new("api.sluice.test")]);
    let certs = wait_for_certificates(&handle, LIMIT, |c| c.len() == 2).await;
    println!(
        "figure: second HTTP-01 certificate (existing account) in {} ms",
        started.elapsed().as_millis()
    );
    let api = certs
        .iter()
        .find(|c| c.domains.main == "api.sluice.test")
        .unwrap();
    handshake_with(api, "api.sluice.test", &root).await.unwrap();
}

#[tokio::test]
async fn tls_alpn01_issues_a_certificate_a_client_trusting_pebble_accepts() {
    if !pebble_installed() {
        return;
    }
    init_tracing();
    let challenges = Challenges::new();
    let tls = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let pebble = Pebble::start(PebbleOptions {
        http_port: free_port(),
        tls_port: tls.local_addr().unwrap().port(),
        ..Default::default()
    })
    .await;
    tokio::spawn(serve_tls_alpn01(tls, challenges.clone()));

    let path = pebble.dir.path().join("acme.json");
    let mut settings = pebble.settings("alpn", json!({"tlsChallenge": {}}), &path);
    settings.key_type = sluice_acme::KeyType::Rsa2048;
    let handle = Resolver::spawn(
        settings,
        challenges.clone(),
        Arc::new(FileStorage::new(&path)),
    );
    let started = Instant::now();
    handle.request(vec![Domains::new("alpn.sluice.test")]);
    let certs = wait_for_certificates(&handle, LIMIT, |c| !c.is_empty()).await;
    println!(
        "figure: TLS-ALPN-01 certificate (RSA2048 key) issued by pebble in {} ms",
        started.elapsed().as_millis()
    );
    assert!(certs[0].key_pem.contains("PRIVATE KEY"));
    let root = pebble.root_pem().await;
    handshake_with(&certs[0], "alpn.sluice.test", &root)
        .await
        .unwrap();
    assert!(challenges.tls_alpn01("alpn.sluice.test").is_none());
}

/// A stored certificate that expires within `renew_before` is published at once,
/// then replaced by a fresh one from pebble, and the storage is updated.
#[tokio::test]
async fn certificate_near_expiry_is_renewed_republished_and_stored() {
    if !pebble_installed() {
        return;
    }
    init_tracing();
    let challenges = Challenges::new();
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let pebble = Pebble::start(PebbleOptions {
        http_port: http.local_addr().unwrap().port(),
        tls_port: free_port(),
        ..Default::default()
    })
    .await;
    tokio::spawn(serve_http01(http, challenges.clone()));

    // A stored certificate with 2 hours left; the default 90-day duration renews
    // within 30 days of expiry.
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["renew.sluice.test".to_owned()]).unwrap();
    params.not_after = (SystemTime::now() + Duration::from_secs(7200)).into();
    let old = Certificate::from_pem(
        Domains::new("renew.sluice.test"),
        params.self_signed(&key).unwrap().pem(),
        key.serialize_pem(),
    )
    .unwrap();
    let path = pebble.dir.path().join("acme.json");
    let storage = Arc::new(FileStorage::new(&path));
    storage
        .save(
            "renewing",
            &StoredState {
                account: None,
                certificates: vec![old.clone()],
            },
        )
        .await
        .unwrap();

    let settings = pebble.settings(
        "renewing",
        json!({"httpChallenge": {"entryPoint": "web"}}),
        &path,
    );
    assert_eq!(settings.renew_before, Duration::from_secs(30 * 86400));
    let handle = Resolver::spawn(settings, challenges, storage.clone());
    let first = wait_for_certificates(&handle, LIMIT, |c| !c.is_empty()).await;
    assert_eq!(
        first.as_ref(),
        &vec![old.clone()],
        "the stored certificate is published first"
    );

    let started = Instant::now();
    handle.request(vec![Domains::new("renew.sluice.test")]);
    let renewed = wait_for_certificates(&handle, LIMIT, |c| c.len() == 1 && c[0] != old).await;
    println!(
        "figure: renewal against pebble in {} ms",
        started.elapsed().as_millis()
    );
    assert_ne!(
        leaf_serial(&renewed[0].chain_pem),
        leaf_serial(&old.chain_pem)
    );
    assert!(renewed[0].not_after > old.not_after + Duration::from_secs(86400));
    let root = pebble.root_pem().await;
    handshake_with(&renewed[0], "renew.sluice.test", &root)
        .await
        .unwrap();
    // The old certificate is gone from storage and the new one is there.
    let stored = storage.load("renewing").await.unwrap();
    assert_eq!(stored.certificates, renewed.as_ref().clone());
    wait_for_status(&handle, LIMIT, |s| {
        s.len() == 1 && s[0].state == DomainState::Valid
    })
    .await;
}

/// With the ACME server down, attempts fail, are reported with the error and the
/// next retry time, and back off; once pebble is up the certificate is issued.
#[tokio::test]
async fn pebble_down_is_retried_with_backoff_until_it_comes_up() {
    if !pebble_installed() {
        return;
    }
    init_tracing();
    let challenges = Challenges::new();
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let options = PebbleOptions {
        http_port: http.local_addr().unwrap().port(),
        tls_port: free_port(),
        ..Default::default()
    };
    tokio::spawn(serve_http01(http, challenges.clone()));
    let dir = tempfile::tempdir().unwrap();
    let setup = Pebble::prepare(&options, dir.path());
    let path = dir.path().join("acme.json");
    let mut settings = settings_for(
        &setup.directory,
        &setup.listener_ca,
        "retrying",
        json!({"httpChallenge": {"entryPoint": "web"}}),
        &path,
    );
    settings.retry = Backoff {
        base: Duration::from_millis(100),
        max: Duration::from_millis(800),
    };
    let handle = Resolver::spawn(settings, challenges, Arc::new(FileStorage::new(&path)));
    let first_attempt = Instant::now();
    handle.request(vec![Domains::new("down.sluice.test")]);

    // Failures are counted and the retry time grows: 100 ms, 200, 400, 800, 800...
    let status = wait_for_status(&handle, LIMIT, |s| {
        matches!(s, [st] if matches!(st.state, DomainState::Failing { attempts, .. } if attempts >= 4))
    })
    .await;
    let DomainState::Failing {
        last_error,
        next_retry,
        attempts,
    } = &status[0].state
    else {
        unreachable!()
    };
    println!("status while pebble is down: attempts={attempts} error={last_error}");
    // Four attempts are separated by at least 100 + 200 + 400 ms: no hot loop.
    assert!(first_attempt.elapsed() >= Duration::from_millis(700));
    assert!(
        last_error.contains("registering the ACME account"),
        "{last_error}"
    );
    assert!(
        last_error.to_lowercase().contains("connect"),
        "the error says the connection failed: {last_error}"
    );
    let wait = next_retry
        .unwrap()
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    assert!(
        wait <= Duration::from_millis(800),
        "backoff is capped: {wait:?}"
    );
    assert!(handle.certificates().borrow().is_empty());

    let pebble = Pebble::launch(dir, setup).await;
    let started = Instant::now();
    let certs = wait_for_certificates(&handle, LIMIT, |c| !c.is_empty()).await;
    println!(
        "figure: certificate issued {} ms after pebble came up",
        started.elapsed().as_millis()
    );
    let root = pebble.root_pem().await;
    handshake_with(&certs[0], "down.sluice.test", &root)
        .await
        .unwrap();
    wait_for_status(&handle, LIMIT, |s| s[0].state == DomainState::Valid).await;
}

/// External account binding: pebble requiring EAB accepts the right key and
/// rejects a wrong one (reported, not fatal).
#[tokio::test]
async fn external_account_binding_is_sent_and_checked() {
    if !pebble_installed() {
        return;
    }
    init_tracing();
    let hmac = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";
    let challenges = Challenges::new();
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let pebble = Pebble::start(PebbleOptions {
        http_port: http.local_addr().unwrap().port(),
        tls_port: free_port(),
        eab_keys: vec![("kid-1".into(), hmac.into())],
        ..Default::default()
    })
    .await;
    tokio::spawn(serve_http01(http, challenges.clone()));

    let bad_path = pebble.dir.path().join("bad.json");
    let mut bad = pebble.settings(
        "eab",
        json!({"httpChallenge": {"entryPoint": "web"}, "eab": {"kid": "kid-1", "hmacEncoded": "d3Jvbmcta2V5"}}),
        &bad_path,
    );
    bad.retry.base = Duration::from_secs(30);
    let rejected = Resolver::spawn(
        bad,
        challenges.clone(),
        Arc::new(FileStorage::new(&bad_path)),
    );
    rejected.request(vec![Domains::new("eab-bad.sluice.test")]);
    let status = wait_for_status(&rejected, LIMIT, |s| {
        s.iter()
            .any(|s| matches!(s.state, DomainState::Failing { .. }))
    })
    .await;
    println!("status with a wrong EAB key: {:?}", status[0].state);
    let DomainState::Failing { last_error, .. } = &status[0].state else {
        unreachable!()
    };
    assert!(
        last_error.contains("external account binding"),
        "{last_error}"
    );

    let path = pebble.dir.path().join("acme.json");
    let settings = pebble.settings(
        "eab",
        json!({"httpChallenge": {"entryPoint": "web"}, "eab": {"kid": "kid-1", "hmacEncoded": hmac}}),
        &path,
    );
    let handle = Resolver::spawn(settings, challenges, Arc::new(FileStorage::new(&path)));
    handle.request(vec![Domains::new("eab.sluice.test")]);
    let certs = wait_for_certificates(&handle, LIMIT, |c| !c.is_empty()).await;
    let root = pebble.root_pem().await;
    handshake_with(&certs[0], "eab.sluice.test", &root)
        .await
        .unwrap();
}

/// A CA that lost the stored account (pebble keeps nothing across restarts)
/// answers `accountDoesNotExist`; the resolver registers again and carries on.
#[tokio::test]
async fn account_unknown_after_ca_restart_is_registered_again() {
    if !pebble_installed() {
        return;
    }
    init_tracing();
    let challenges = Challenges::new();
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let options = PebbleOptions {
        http_port: http.local_addr().unwrap().port(),
        tls_port: free_port(),
        listen_port: free_port(),
        ..Default::default()
    };
    tokio::spawn(serve_http01(http, challenges.clone()));
    let pebble = Pebble::start(options.clone()).await;
    let path = pebble.dir.path().join("acme.json");
    let mut settings = pebble.settings(
        "restart",
        json!({"httpChallenge": {"entryPoint": "web"}}),
        &path,
    );
    settings.retry.base = Duration::from_millis(100);
    let storage = Arc::new(FileStorage::new(&path));
    let handle = Resolver::spawn(settings, challenges, storage.clone());
    handle.request(vec![Domains::new("one.sluice.test")]);
    wait_for_certificates(&handle, LIMIT, |c| c.len() == 1).await;
    let first_account = storage.load("restart").await.unwrap().account.unwrap().uri;

    let dir = pebble.stop().await;
    let pebble = Pebble::start_in(options, dir).await;
    handle.request(vec![
        Domains::new("one.sluice.test"),
        Domains::new("two.sluice.test"),
    ]);
    let certs = wait_for_certificates(&handle, LIMIT, |c| c.len() == 2).await;
    let second_account = storage.load("restart").await.unwrap().account.unwrap().uri;
    assert_ne!(first_account, second_account);
    let two = certs
        .iter()
        .find(|c| c.domains.main == "two.sluice.test")
        .unwrap();
    handshake_with(two, "two.sluice.test", &pebble.root_pem().await)
        .await
        .unwrap();
}
