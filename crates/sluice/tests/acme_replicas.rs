//! Two Sluice replicas reading the same (fake) Kubernetes API share ACME certificates through
//! the Secret `sluice-acme`: the replica holding the Lease `sluice-acme` orders from a real
//! pebble, the other one only re-reads the Secret and serves what it holds, and takes the
//! Lease over once the leader is gone.
//!
//! Skips with a printed message when pebble is not installed.

mod common;

use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::tls as client;
use common::{origin, Answer, Origin, Sluice};
use rustls::ClientConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use serde_json::{json, Value};
use sluice_acme::testing::{free_port, pebble_installed, Pebble, PebbleOptions};
use sluice_kubernetes::fake::FakeApi;

/// Namespace of the Secret and the Lease: the fake client's default (no `POD_NAMESPACE`).
const NAMESPACE: &str = "default";

/// Lines only a replica that talks to the ACME server writes.
const ORDERING_LINES: [&str; 4] = [
    "obtaining certificate",
    "certificate obtained",
    "cannot obtain certificate",
    "ACME account registered",
];

/// Service `app` with an EndpointSlice pointing at `origin`, and an IngressRoute for
/// `shared.test` on `web` whose certificate comes from the resolver `pebble`.
fn cluster_objects(origin: &Origin) -> Vec<Value> {
    vec![
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "app", "namespace": NAMESPACE},
            "spec": {"ports": [{"name": "http", "port": 80}], "type": "ClusterIP"}
        }),
        json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "app-slice", "namespace": NAMESPACE,
                         "labels": {"kubernetes.io/service-name": "app"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": origin.addr.port()}],
            "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": true}}]
        }),
        json!({
            "apiVersion": "traefik.io/v1alpha1", "kind": "IngressRoute",
            "metadata": {"name": "shared", "namespace": NAMESPACE},
            "spec": {
                "entryPoints": ["web"],
                "routes": [{"match": "Host(`shared.test`)", "kind": "Rule",
                            "services": [{"name": "app", "port": 80}]}],
                "tls": {"certResolver": "pebble"}
            }
        }),
    ]
}

/// A replica on `port` against `fake`, with the resolver `pebble` answering HTTP-01 on `web`.
/// The `storage` file is given as in a file-provider setup; with a cluster it must stay unused.
async fn replica(
    port: u16,
    fake: &FakeApi,
    directory: &str,
    listener_ca: &std::path::Path,
    storage: &std::path::Path,
) -> Sluice {
    let base = "--certificatesResolvers.pebble.acme";
    let flags = [
        format!("--providers.kubernetesCRD.endpoint={}", fake.url()),
        "--providers.kubernetesCRD.throttleDuration=10ms".to_owned(),
        format!("{base}.caServer={directory}"),
        format!("{base}.caCertificates={}", listener_ca.display()),
        format!("{base}.storage={}", storage.display()),
        format!("{base}.email=ops@sluice.test"),
        format!("{base}.keyType=EC256"),
        format!("{base}.httpChallenge.entryPoint=web"),
    ];
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    Sluice::start_at(port, &[], &flags).await
}

/// The Lease's `holderIdentity`, if the Lease exists.
fn lease_holder(fake: &FakeApi) -> Option<String> {
    let lease = fake.get("coordination.k8s.io/v1", "Lease", NAMESPACE, "sluice-acme")?;
    lease
        .pointer("/spec/holderIdentity")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// Whether `holder` names the process `sluice` (identity `<pod or host name>-<pid>`).
fn names(holder: &str, sluice: &Sluice) -> bool {
    holder.ends_with(&format!("-{}", sluice.pid()))
}

/// Waits until the Lease names `sluice`; panics with both logs after `limit`.
async fn wait_leader(fake: &FakeApi, sluice: &Sluice, other: Option<&Sluice>, limit: Duration) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if lease_holder(fake).is_some_and(|h| names(&h, sluice)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "Lease holder {:?} is not pid {} after {limit:?}; log:\n{}\nother log:\n{}",
        lease_holder(fake),
        sluice.pid(),
        sluice.log_text(),
        other.map(Sluice::log_text).unwrap_or_default()
    );
}

/// GETs `/` for shared.test over TLS until the certificate verifies and the answer is 200.
async fn wait_served(sluice: &Sluice, config: &ClientConfig, limit: Duration) -> Answer {
    let deadline = Instant::now() + limit;
    let mut last = String::new();
    while Instant::now() < deadline {
        match client::get(
            sluice.addr,
            config.clone(),
            Some("shared.test"),
            "shared.test",
            "/",
        )
        .await
        {
            Ok(answer) if answer.status == 200 => return answer,
            Ok(answer) => last = format!("status {}", answer.status),
            Err(error) => last = error,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "shared.test not served with a verified certificate within {limit:?} (last: {last}); log:\n{}",
        sluice.log_text()
    );
}

/// The leaf presented for SNI shared.test, verified against `config`'s roots.
async fn served_leaf(sluice: &Sluice, config: &ClientConfig) -> CertificateDer<'static> {
    client::connect(sluice.addr, config.clone(), Some("shared.test"), &[])
        .await
        .expect("TLS connection verifying against pebble's root")
        .leaf
        .expect("a certificate")
}

/// The resolver `pebble`'s entry of the `acme.json` key of Secret `sluice-acme`, checked for
/// Traefik's layout: its single certificate's leaf.
fn secret_leaf(fake: &FakeApi) -> CertificateDer<'static> {
    let secret = fake
        .get("v1", "Secret", NAMESPACE, "sluice-acme")
        .expect("Secret sluice-acme exists");
    let encoded = secret
        .pointer("/data/acme.json")
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no data.acme.json in {secret:#}"));
    let document: Value =
        serde_json::from_slice(&STANDARD.decode(encoded).expect("base64")).expect("JSON");
    let entry = &document["pebble"];
    assert_eq!(entry["Account"]["Email"], "ops@sluice.test", "{document:#}");
    assert!(entry["Account"]["PrivateKey"].is_string(), "{document:#}");
    let certificates = entry["Certificates"]
        .as_array()
        .unwrap_or_else(|| panic!("no pebble.Certificates in {document:#}"));
    assert_eq!(certificates.len(), 1, "{document:#}");
    let stored = &certificates[0];
    assert_eq!(stored["domain"]["main"], "shared.test", "{stored:#}");
    assert_eq!(stored["Store"], "default", "{stored:#}");
    let key = STANDARD
        .decode(stored["key"].as_str().expect("key"))
        .expect("base64 key");
    assert!(String::from_utf8_lossy(&key).contains("PRIVATE KEY"));
    let pem = STANDARD
        .decode(stored["certificate"].as_str().expect("certificate"))
        .expect("base64 certificate");
    CertificateDer::pem_slice_iter(&pem)
        .next()
        .expect("a certificate")
        .expect("PEM")
}

/// `sluice`'s log without colour escapes, so `field=value` can be matched.
fn plain_log(sluice: &Sluice) -> String {
    let log = sluice.log_text();
    let mut plain = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI sequences end with a letter (`m` for colours).
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
}

/// Waits until `check` holds for `sluice`'s plain log; panics with the log after `limit`.
async fn wait_plain_log(
    sluice: &Sluice,
    what: &str,
    check: impl Fn(&str) -> bool,
    limit: Duration,
) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check(&plain_log(sluice)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "{what} not in the log within {limit:?}:\n{}",
        plain_log(sluice)
    );
}

fn ordering_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| ORDERING_LINES.iter().any(|n| l.contains(n)))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_share_one_certificate_ordered_by_the_lease_holder_only() {
    if !pebble_installed() {
        println!("skipped: pebble is not installed");
        return;
    }
    let fake = FakeApi::start().await.unwrap();
    let app = origin("app").await;
    for object in cluster_objects(&app) {
        fake.apply(object).unwrap();
    }
    // Pebble validates HTTP-01 on replica A's port only; it comes up once both replicas run,
    // so the follower has read an empty Secret and must pick the certificate up by re-reading.
    let port_a = free_port();
    let pebble_dir = tempfile::tempdir().unwrap();
    let setup = Pebble::prepare(
        &PebbleOptions {
            http_port: port_a,
            tls_port: free_port(),
            ..Default::default()
        },
        pebble_dir.path(),
    );
    let storage_dir = tempfile::tempdir().unwrap();
    let storage = storage_dir.path().join("acme.json");

    let mut a = replica(
        port_a,
        &fake,
        &setup.directory,
        &setup.listener_ca,
        &storage,
    )
    .await;
    // A is the only candidate: it creates the Lease at its first round.
    wait_leader(&fake, &a, None, Duration::from_secs(10)).await;
    let b = replica(
        free_port(),
        &fake,
        &setup.directory,
        &setup.listener_ca,
        &storage,
    )
    .await;
    b.wait_for_log("ACME state in Secret sluice-acme", Duration::from_secs(10))
        .await;
    wait_plain_log(
        &b,
        "an empty Secret read",
        |log| log.contains("certificates=0"),
        Duration::from_secs(10),
    )
    .await;

    let pebble = Pebble::launch(pebble_dir, setup).await;
    let up = Instant::now();
    let trusting_pebble = client::verifying_pem(&pebble.root_pem().await);
    let answer = wait_served(&a, &trusting_pebble, Duration::from_secs(30)).await;
    let leader_served = up.elapsed();
    assert_eq!(answer.origin(), "app");
    let answer = wait_served(&b, &trusting_pebble, Duration::from_secs(20)).await;
    let follower_served = up.elapsed();
    assert_eq!(answer.origin(), "app");
    println!(
        "figure: leader served the certificate {} ms after pebble came up, the follower {} ms \
         ({} ms later)",
        leader_served.as_millis(),
        follower_served.as_millis(),
        (follower_served - leader_served).as_millis()
    );

    // One Lease holder, A, all along; B never led.
    let holder = lease_holder(&fake).expect("Lease sluice-acme");
    assert!(names(&holder, &a), "holder {holder}, A is pid {}", a.pid());
    assert!(a.log_text().contains("became leader"));
    assert!(!b.log_text().contains("became leader"), "{}", b.log_text());

    // The same certificate everywhere: both replicas and the Secret, in Traefik's layout.
    let leaf = served_leaf(&a, &trusting_pebble).await;
    assert_eq!(served_leaf(&b, &trusting_pebble).await, leaf);
    assert_eq!(secret_leaf(&fake), leaf);
    assert!(
        !storage.exists(),
        "the storage file is not used with a cluster"
    );

    // Only the leader talked to pebble.
    let a_log = a.log_text();
    assert!(a_log.contains("certificate obtained"), "{a_log}");
    assert_eq!(a_log.matches("certificate obtained").count(), 1, "{a_log}");
    let b_log = plain_log(&b);
    assert!(ordering_lines(&b_log).is_empty(), "{b_log}");
    assert!(b_log.contains("certificates=1"), "{b_log}");

    // The leader goes away without releasing the Lease (killed): B takes it over once the
    // record has stayed unchanged for the lease duration (15 s), and orders nothing, since
    // the Secret holds a valid certificate.
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    let killed = Instant::now();
    wait_leader(&fake, &b, None, Duration::from_secs(25)).await;
    println!(
        "figure: the follower took the Lease over {} ms after the leader was killed",
        killed.elapsed().as_millis()
    );
    b.wait_for_log("became leader", Duration::from_secs(5))
        .await;
    // After becoming leader the resolver re-reads the Secret before deciding to order.
    let reloaded = |log: &str| {
        log.find("became leader")
            .is_some_and(|at| log[at..].contains("certificates=1"))
    };
    wait_plain_log(
        &b,
        "the Secret re-read after becoming leader",
        reloaded,
        Duration::from_secs(5),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let b_log = plain_log(&b);
    assert!(ordering_lines(&b_log).is_empty(), "{b_log}");
    assert_eq!(served_leaf(&b, &trusting_pebble).await, leaf);
    assert_eq!(secret_leaf(&fake), leaf);
}
