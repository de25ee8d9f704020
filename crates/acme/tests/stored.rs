//! Stored certificates are served without any ACME server, and a Traefik
//! acme.json is read as Traefik wrote it.

mod common;

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::*;
use serde_json::json;
use sluice_acme::{Challenges, DomainState, Domains, FileStorage, Resolver};
use tokio::sync::watch;

#[tokio::test]
async fn traefik_acme_json_is_published_without_contacting_the_server() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("acme.json");
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["shop.example.com".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    // Written by hand in Traefik's layout: an RSA (PKCS#1) account and one certificate.
    let file = json!({
        "le": {
            "Account": {
                "Email": "ops@example.com",
                "Registration": {"body": {"status": "valid"}, "uri": "https://127.0.0.1:9/acme/acct/1"},
                "PrivateKey": STANDARD.encode(b"not-a-pkcs8-key"),
                "KeyType": "4096"
            },
            "Certificates": [{
                "domain": {"main": "shop.example.com"},
                "certificate": STANDARD.encode(cert.pem()),
                "key": STANDARD.encode(key.serialize_pem()),
                "Store": "default"
            }]
        }
    });
    std::fs::write(&path, file.to_string()).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    // The ACME server address is closed: nothing may be needed from it, and as a
    // follower the resolver does not even try.
    let listener_ca = dir.path().join("none.pem");
    let mut settings = settings_for(
        "https://127.0.0.1:9/dir",
        &listener_ca,
        "le",
        json!({"tlsChallenge": {}}),
        &path,
    );
    settings.ca_certificates.clear();
    let (leader_tx, leader_rx) = watch::channel(false);
    let handle = Resolver::spawn_with_leader(
        settings,
        Challenges::new(),
        Arc::new(FileStorage::new(&path)),
        Some(leader_rx),
    );
    handle.request(vec![
        Domains::new("shop.example.com"),
        Domains::new("new.example.com"),
    ]);
    let certs = wait_for_certificates(&handle, Duration::from_secs(10), |c| !c.is_empty()).await;
    assert_eq!(certs.len(), 1);
    assert_eq!(certs[0].domains.main, "shop.example.com");
    assert_eq!(certs[0].chain_pem, cert.pem());
    let status = wait_for_status(&handle, Duration::from_secs(10), |s| s.len() == 2).await;
    assert_eq!(status[0].state, DomainState::Valid);
    assert!(status[0].valid_until.is_some());
    // Not leader: the missing certificate waits instead of failing.
    assert_eq!(status[1].state, DomainState::Pending);

    // Leadership makes it try; the server is unreachable, so it fails and says so,
    // while the stored certificate keeps being served.
    leader_tx.send_replace(true);
    let status = wait_for_status(&handle, Duration::from_secs(10), |s| {
        s.len() == 2 && matches!(s[1].state, DomainState::Failing { .. })
    })
    .await;
    assert_eq!(status[0].state, DomainState::Valid);
    assert_eq!(handle.certificates().borrow().len(), 1);
}
