//! ACME end to end through the Sluice binary against a real pebble on 127.0.0.1: certificates
//! obtained with HTTP-01 and TLS-ALPN-01 answered by Sluice's own entry point and served to a
//! client that trusts only pebble's root, renewal of a stored certificate without restart, an
//! ACME server that is down at start, and routers naming a resolver that does not exist.
//!
//! Tests that need pebble skip with a printed message when it is not installed.

mod common;

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::tls::{self as client, Ca};
use common::{origin, Answer, Sluice};
use rustls::ClientConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use serde_json::{json, Value};
use sluice_acme::testing::{free_port, pebble_installed, Pebble, PebbleOptions};

/// How long a certificate may take to show up (pebble answers in well under a second; retries
/// after a failure wait 1 s, 2 s, 4 s...).
const ISSUE_LIMIT: Duration = Duration::from_secs(30);

/// A dynamic configuration file with the given routers, TLS section and one whoami service
/// `app` pointing at `origin`.
fn dynamic(origin: &common::Origin, routers: Value, tls: Value) -> String {
    json!({
        "http": {
            "routers": routers,
            "services": {"app": {"loadBalancer": {"servers": [{"url": origin.url()}]}}},
        },
        "tls": tls,
    })
    .to_string()
}

/// Static flags for a resolver `pebble` using the ACME server at `directory` (whose HTTPS
/// listener `listener_ca` signs), storing into `storage`, plus the `challenge` flag.
fn resolver_flags(
    directory: &str,
    listener_ca: &Path,
    storage: &Path,
    challenge: &str,
) -> Vec<String> {
    let base = "--certificatesResolvers.pebble.acme";
    vec![
        format!("{base}.caServer={directory}"),
        format!("{base}.caCertificates={}", listener_ca.display()),
        format!("{base}.storage={}", storage.display()),
        format!("{base}.email=ops@sluice.test"),
        // EC keys keep issuance fast.
        format!("{base}.keyType=EC256"),
        format!("{base}.{challenge}"),
    ]
}

async fn start(port: u16, files: &[(&str, String)], flags: &[String]) -> Sluice {
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    Sluice::start_at(port, files, &flags).await
}

/// GETs `/` on `name` over TLS (SNI and Host `name`) with `config` until the handshake verifies
/// and the answer is 200; panics with Sluice's log after `limit`.
async fn wait_served(
    sluice: &Sluice,
    config: &ClientConfig,
    name: &str,
    limit: Duration,
) -> Answer {
    let deadline = Instant::now() + limit;
    let mut last = String::new();
    while Instant::now() < deadline {
        match client::get(sluice.addr, config.clone(), Some(name), name, "/").await {
            Ok(answer) if answer.status == 200 => return answer,
            Ok(answer) => last = format!("status {}", answer.status),
            Err(error) => last = error,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "{name} not served with a verified certificate within {limit:?} (last: {last}); log:\n{}",
        sluice.log_text()
    );
}

/// The leaf certificate Sluice presents for `name`.
async fn served_leaf(sluice: &Sluice, name: &str) -> CertificateDer<'static> {
    client::connect(sluice.addr, client::trusting(), Some(name), &[])
        .await
        .expect("TLS connection")
        .leaf
        .expect("a certificate")
}

/// The resolver `pebble`'s certificates in a Traefik acme.json: (domain, leaf) pairs, checking
/// the layout on the way.
fn stored_certificates(storage: &Path) -> Vec<(Value, CertificateDer<'static>)> {
    let raw: Value =
        serde_json::from_slice(&std::fs::read(storage).expect("read acme.json")).expect("JSON");
    let certificates = raw["pebble"]["Certificates"]
        .as_array()
        .unwrap_or_else(|| panic!("no pebble.Certificates in {raw:#}"));
    certificates
        .iter()
        .map(|entry| {
            assert_eq!(entry["Store"], "default", "{entry:#}");
            let pem = STANDARD
                .decode(entry["certificate"].as_str().expect("certificate"))
                .expect("base64 certificate");
            let key = STANDARD
                .decode(entry["key"].as_str().expect("key"))
                .expect("base64 key");
            assert!(String::from_utf8_lossy(&key).contains("PRIVATE KEY"));
            let leaf = CertificateDer::pem_slice_iter(&pem)
                .next()
                .expect("a certificate")
                .expect("PEM");
            (entry["domain"].clone(), leaf)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn http01_certificate_is_issued_and_served_to_a_client_trusting_pebble() {
    if !pebble_installed() {
        return;
    }
    let port = free_port();
    let pebble = Pebble::start(PebbleOptions {
        http_port: port,
        tls_port: free_port(),
        ..Default::default()
    })
    .await;
    let app = origin("app").await;
    let config = dynamic(
        &app,
        json!({"secure": {"rule": "Host(`a.test`)", "service": "app", "tls": {"certResolver": "pebble"}}}),
        json!({}),
    );
    let storage = pebble.dir.path().join("acme.json");
    let flags = resolver_flags(
        &pebble.directory,
        &pebble.listener_ca,
        &storage,
        "httpChallenge.entryPoint=web",
    );
    let started = Instant::now();
    let sluice = start(port, &[("acme.yaml", config)], &flags).await;
    let trusting_pebble = client::verifying_pem(&pebble.root_pem().await);

    let answer = wait_served(&sluice, &trusting_pebble, "a.test", ISSUE_LIMIT).await;
    println!(
        "figure: HTTP-01 certificate served {} ms after Sluice was started",
        started.elapsed().as_millis()
    );
    assert_eq!(answer.origin(), "app");
    // The name is checked: the certificate is for a.test only.
    let other = client::get(
        sluice.addr,
        trusting_pebble.clone(),
        Some("b.test"),
        "a.test",
        "/",
    )
    .await;
    assert!(other.is_err(), "b.test must not verify: {other:?}");

    // Traefik's acme.json layout, holding the served certificate and the account.
    let served = served_leaf(&sluice, "a.test").await;
    let stored = stored_certificates(&storage);
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].0["main"], "a.test");
    assert_eq!(stored[0].1, served);
    let raw: Value = serde_json::from_slice(&std::fs::read(&storage).unwrap()).unwrap();
    assert_eq!(raw["pebble"]["Account"]["Email"], "ops@sluice.test");
    assert!(raw["pebble"]["Account"]["Registration"]["uri"]
        .as_str()
        .unwrap()
        .starts_with("https://127.0.0.1:"));
    assert!(sluice.log_text().contains("certificate obtained"));
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_alpn01_certificate_covers_main_and_sans_of_tls_domains() {
    if !pebble_installed() {
        return;
    }
    let port = free_port();
    let pebble = Pebble::start(PebbleOptions {
        http_port: free_port(),
        tls_port: port,
        ..Default::default()
    })
    .await;
    let app = origin("app").await;
    let config = dynamic(
        &app,
        json!({"secure": {
            "rule": "Host(`b.test`) || Host(`c.test`)",
            "service": "app",
            "tls": {"certResolver": "pebble", "domains": [{"main": "b.test", "sans": ["c.test"]}]},
        }}),
        json!({}),
    );
    let storage = pebble.dir.path().join("acme.json");
    let flags = resolver_flags(
        &pebble.directory,
        &pebble.listener_ca,
        &storage,
        "tlsChallenge=true",
    );
    let started = Instant::now();
    let sluice = start(port, &[("acme.yaml", config)], &flags).await;
    let trusting_pebble = client::verifying_pem(&pebble.root_pem().await);

    let answer = wait_served(&sluice, &trusting_pebble, "b.test", ISSUE_LIMIT).await;
    println!(
        "figure: TLS-ALPN-01 certificate served {} ms after Sluice was started",
        started.elapsed().as_millis()
    );
    assert_eq!(answer.origin(), "app");
    let answer = wait_served(&sluice, &trusting_pebble, "c.test", Duration::from_secs(1)).await;
    assert_eq!(answer.origin(), "app");
    // One certificate for both names.
    let leaf = served_leaf(&sluice, "b.test").await;
    assert_eq!(served_leaf(&sluice, "c.test").await, leaf);
    let stored = stored_certificates(&storage);
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].0, json!({"main": "b.test", "sans": ["c.test"]}));
    assert_eq!(stored[0].1, leaf);
}

#[tokio::test(flavor = "multi_thread")]
async fn stored_certificate_near_expiry_is_served_then_renewed_without_restart() {
    if !pebble_installed() {
        return;
    }
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let setup = Pebble::prepare(
        &PebbleOptions {
            http_port: port,
            tls_port: free_port(),
            ..Default::default()
        },
        dir.path(),
    );
    // Two hours left: with the default 90-day certificatesDuration Traefik renews within 30
    // days of expiry, so this one is due at once.
    let old_ca = Ca::new("throwaway CA");
    let old = old_ca.issue_until(
        &["renew.test"],
        SystemTime::now() + Duration::from_secs(7200),
    );
    let storage_dir = tempfile::tempdir().unwrap();
    let storage = storage_dir.path().join("acme.json");
    let acme_json = json!({"pebble": {
        "Account": null,
        "Certificates": [{
            "domain": {"main": "renew.test"},
            "certificate": STANDARD.encode(&old.cert),
            "key": STANDARD.encode(&old.key),
            "Store": "default",
        }],
    }});
    std::fs::write(&storage, acme_json.to_string()).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&storage, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let app = origin("app").await;
    let config = dynamic(
        &app,
        json!({"secure": {"rule": "Host(`renew.test`)", "service": "app", "tls": {"certResolver": "pebble"}}}),
        json!({}),
    );
    let flags = resolver_flags(
        &setup.directory,
        &setup.listener_ca,
        &storage,
        "httpChallenge.entryPoint=web",
    );
    // The ACME server comes up only once the stored certificate has been seen served, so the
    // renewal cannot overtake that observation.
    let mut sluice = start(port, &[("acme.yaml", config)], &flags).await;
    let answer = wait_served(
        &sluice,
        &client::verifying(&old_ca),
        "renew.test",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(answer.origin(), "app");
    assert_eq!(served_leaf(&sluice, "renew.test").await, old.der());

    let pebble = Pebble::launch(dir, setup).await;
    let up = Instant::now();
    let trusting_pebble = client::verifying_pem(&pebble.root_pem().await);
    let answer = wait_served(&sluice, &trusting_pebble, "renew.test", ISSUE_LIMIT).await;
    println!(
        "figure: renewed certificate served {} ms after pebble came up",
        up.elapsed().as_millis()
    );
    assert_eq!(answer.origin(), "app");
    let renewed = served_leaf(&sluice, "renew.test").await;
    assert_ne!(renewed, old.der());
    // The process never exited, and the storage holds the renewed certificate only.
    assert!(sluice.child.try_wait().unwrap().is_none(), "Sluice exited");
    let stored = stored_certificates(&storage);
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0].1, renewed);
}

#[tokio::test(flavor = "multi_thread")]
async fn acme_server_down_leaves_other_routes_serving_and_the_certificate_follows() {
    if !pebble_installed() {
        return;
    }
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let setup = Pebble::prepare(
        &PebbleOptions {
            http_port: port,
            tls_port: free_port(),
            ..Default::default()
        },
        dir.path(),
    );
    let app = origin("app").await;
    let ca = Ca::new("file CA");
    let file_cert = ca.issue(&["file.test"]);
    let config = dynamic(
        &app,
        json!({
            "plain": {"rule": "Host(`plain.test`)", "service": "app"},
            "file": {"rule": "Host(`file.test`)", "service": "app", "tls": {}},
            "acme": {"rule": "Host(`down.test`)", "service": "app", "tls": {"certResolver": "pebble"}},
        }),
        json!({"certificates": [{"certFile": file_cert.cert, "keyFile": file_cert.key}]}),
    );
    let storage = dir.path().join("acme.json");
    let flags = resolver_flags(
        &setup.directory,
        &setup.listener_ca,
        &storage,
        "httpChallenge.entryPoint=web",
    );
    let sluice = start(port, &[("acme.yaml", config)], &flags).await;

    // The resolver fails and says it will retry...
    sluice
        .wait_for_log("cannot obtain certificate", Duration::from_secs(10))
        .await;
    let log = sluice.log_text();
    let failure = log
        .lines()
        .find(|l| l.contains("cannot obtain certificate"))
        .unwrap();
    assert!(failure.contains("down.test"), "{failure}");
    assert!(failure.contains("retry_in_ms"), "{failure}");
    // ...while everything else is served: plain HTTP, TLS with a file certificate, and the
    // ACME router itself with the default certificate. Checked until it has retried (after
    // the default backoff of 1 s).
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut rounds = 0;
    while sluice
        .log_text()
        .matches("cannot obtain certificate")
        .count()
        < 2
    {
        assert!(
            Instant::now() < deadline,
            "no retry:\n{}",
            sluice.log_text()
        );
        rounds += 1;
        let plain = common::get(&sluice.url("/"), &[("Host", "plain.test")]).await;
        assert_eq!(plain.status, 200);
        assert_eq!(plain.origin(), "app");
        let file = client::get(
            sluice.addr,
            client::verifying(&ca),
            Some("file.test"),
            "file.test",
            "/",
        )
        .await
        .expect("file certificate verifies");
        assert_eq!(file.status, 200);
        let default = served_leaf(&sluice, "down.test").await;
        assert_eq!(client::common_name(&default), "SLUICE DEFAULT CERT");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(rounds >= 2, "routes checked {rounds} times while failing");
    let attempts = sluice
        .log_text()
        .matches("cannot obtain certificate")
        .count();

    let pebble = Pebble::launch(dir, setup).await;
    let up = Instant::now();
    let trusting_pebble = client::verifying_pem(&pebble.root_pem().await);
    let answer = wait_served(&sluice, &trusting_pebble, "down.test", ISSUE_LIMIT).await;
    println!(
        "figure: certificate served {} ms after pebble came up ({attempts} failed attempts before)",
        up.elapsed().as_millis()
    );
    assert_eq!(answer.origin(), "app");
    let plain = common::get(&sluice.url("/"), &[("Host", "plain.test")]).await;
    assert_eq!(plain.status, 200);
}

/// Pebble validates HTTP-01 on the `other` entry point while the resolver names `web`: Sluice
/// answers challenges only on `httpChallenge.entryPoint`, as Traefik does, so validation fails.
#[tokio::test(flavor = "multi_thread")]
async fn http01_is_answered_only_on_the_challenge_entry_point() {
    if !pebble_installed() {
        return;
    }
    let other = free_port();
    let pebble = Pebble::start(PebbleOptions {
        http_port: other,
        tls_port: free_port(),
        ..Default::default()
    })
    .await;
    let app = origin("app").await;
    let config = dynamic(
        &app,
        json!({"secure": {"rule": "Host(`elsewhere.test`)", "service": "app", "tls": {"certResolver": "pebble"}}}),
        json!({}),
    );
    let storage = pebble.dir.path().join("acme.json");
    let mut flags = resolver_flags(
        &pebble.directory,
        &pebble.listener_ca,
        &storage,
        "httpChallenge.entryPoint=web",
    );
    flags.push(format!("--entryPoints.other.address=127.0.0.1:{other}"));
    let sluice = start(free_port(), &[("acme.yaml", config)], &flags).await;
    sluice
        .wait_for_log("cannot obtain certificate", Duration::from_secs(15))
        .await;
    let log = sluice.log_text();
    let failure = log
        .lines()
        .find(|l| l.contains("cannot obtain certificate"))
        .unwrap();
    assert!(failure.contains("404"), "{failure}");
    let leaf = served_leaf(&sluice, "elsewhere.test").await;
    assert_eq!(client::common_name(&leaf), "SLUICE DEFAULT CERT");
}

/// A router naming a resolver that is not configured: reported with the router and resolver
/// names, and the route served with the default certificate — with other resolvers configured
/// and with none at all. No ACME server is involved.
#[tokio::test(flavor = "multi_thread")]
async fn router_naming_an_unknown_resolver_is_reported_and_served_with_the_default_certificate() {
    let app = origin("app").await;
    let config = dynamic(
        &app,
        json!({"secure": {"rule": "Host(`lost.test`)", "service": "app", "tls": {"certResolver": "missing"}}}),
        json!({}),
    );
    let storage_dir = tempfile::tempdir().unwrap();
    let storage = storage_dir.path().join("acme.json");
    let with_other = resolver_flags(
        // Never contacted: no router names this resolver.
        "https://127.0.0.1:9/dir",
        &storage_dir.path().join("none.pem"),
        &storage,
        "tlsChallenge=true",
    );
    for flags in [with_other, Vec::new()] {
        let sluice = start(free_port(), &[("acme.yaml", config.clone())], &flags).await;
        sluice
            .wait_for_log(
                "certificate resolver `missing` does not exist",
                Duration::from_secs(10),
            )
            .await;
        let log = sluice.log_text();
        let line = log
            .lines()
            .find(|l| l.contains("certificate resolver `missing` does not exist"))
            .unwrap();
        assert!(line.contains("router `secure@file`"), "{line}");
        assert!(line.contains("tls.certResolver"), "{line}");
        let answer = client::get(
            sluice.addr,
            client::trusting(),
            Some("lost.test"),
            "lost.test",
            "/",
        )
        .await
        .expect("served");
        assert_eq!(answer.status, 200);
        assert_eq!(answer.origin(), "app");
        let leaf = served_leaf(&sluice, "lost.test").await;
        assert_eq!(client::common_name(&leaf), "SLUICE DEFAULT CERT");
    }
}

/// On the HTTP-01 entry point the challenge path belongs to Sluice, as to Traefik's internal
/// router: an unknown token is a 404 even under a catch-all router, and other paths route as
/// usual. No ACME server is involved.
#[tokio::test(flavor = "multi_thread")]
async fn unknown_challenge_tokens_are_a_404_on_the_challenge_entry_point() {
    let app = origin("app").await;
    let config = dynamic(
        &app,
        json!({"all": {"rule": "PathPrefix(`/`)", "service": "app"}}),
        json!({}),
    );
    let storage_dir = tempfile::tempdir().unwrap();
    let flags = resolver_flags(
        "https://127.0.0.1:9/dir",
        &storage_dir.path().join("none.pem"),
        &storage_dir.path().join("acme.json"),
        "httpChallenge.entryPoint=web",
    );
    let sluice = start(free_port(), &[("acme.yaml", config)], &flags).await;
    let unknown = common::get(&sluice.url("/.well-known/acme-challenge/nope"), &[]).await;
    assert_eq!(unknown.status, 404, "{}", sluice.log_text());
    assert_eq!(
        unknown.origin(),
        "",
        "the origin must not see challenge paths"
    );
    let other = common::get(&sluice.url("/page"), &[]).await;
    assert_eq!(other.status, 200);
    assert_eq!(other.origin(), "app");
}
