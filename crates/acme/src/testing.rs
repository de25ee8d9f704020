//! A real pebble ACME server on loopback for tests (feature `testing`): pebble plus
//! pebble-challtestsrv as its DNS server answering 127.0.0.1 for every name, validation
//! without pauses (`PEBBLE_VA_NOSLEEP`), and pebble's issuing root fetched from its
//! management interface.
//!
//! This is test support: it panics on any setup failure so the test fails with the reason.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use crate::ResolverSettings;

/// True when pebble and pebble-challtestsrv are on PATH; otherwise prints why the
/// test is skipped.
pub fn pebble_installed() -> bool {
    let found = ["pebble", "pebble-challtestsrv"].iter().all(|bin| {
        std::process::Command::new("sh")
            .args(["-c", &format!("command -v {bin}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    if !found {
        eprintln!("skipped: pebble not installed (apt-get install -y pebble)");
    }
    found
}

/// A port free right now on 127.0.0.1 (TCP and UDP), for a process that binds it later.
///
/// The port is taken from below the kernel's ephemeral range: a port handed out by `bind(0)`
/// can be handed out again to another test's listener or client socket before the process it
/// was meant for binds it, and that test then talks to the wrong server. Ports below the range
/// are never picked by the kernel, and a counter keeps this process from repeating itself.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let floor = 10_000u32;
    let ceiling = ephemeral_floor().max(floor + 1_000);
    let span = ceiling - floor;
    // Start where another test binary running at the same moment is unlikely to be.
    let _ = NEXT.compare_exchange(
        0,
        (std::process::id().wrapping_mul(7_919)) % span + 1,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..span {
        let port = (floor + NEXT.fetch_add(1, Ordering::SeqCst) % span) as u16;
        let tcp = std::net::TcpListener::bind(("127.0.0.1", port));
        let udp = std::net::UdpSocket::bind(("127.0.0.1", port));
        if tcp.is_ok() && udp.is_ok() {
            return port;
        }
    }
    panic!("no free port on 127.0.0.1 between {floor} and {ceiling}")
}

/// The lowest port the kernel hands out for `bind(0)` (Linux's default when unknown).
fn ephemeral_floor() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// What a pebble instance should look like.
#[derive(Debug, Clone, Default)]
pub struct PebbleOptions {
    /// Port the validation authority uses for HTTP-01.
    pub http_port: u16,
    /// Port the validation authority uses for TLS-ALPN-01.
    pub tls_port: u16,
    /// ACME listener port; 0 picks one.
    pub listen_port: u16,
    /// Require external account binding with these (kid, base64url HMAC) keys.
    pub eab_keys: Vec<(String, String)>,
}

/// A pebble configuration written to disk, not started yet (see [`Pebble::prepare`]).
#[derive(Debug, Clone)]
pub struct PebbleSetup {
    /// ACME directory URL.
    pub directory: String,
    /// Management interface (serves `/roots/0`).
    pub management: SocketAddr,
    /// CA of pebble's own HTTPS listener (for `caCertificates`).
    pub listener_ca: PathBuf,
}

/// A running pebble plus the DNS server that resolves every name to 127.0.0.1.
/// Both processes are killed when it is dropped.
#[derive(Debug)]
pub struct Pebble {
    /// ACME directory URL.
    pub directory: String,
    /// Management interface (serves `/roots/0`).
    pub management: SocketAddr,
    /// CA of pebble's own HTTPS listener (for `caCertificates`).
    pub listener_ca: PathBuf,
    /// Holds pebble's configuration and log (`pebble.log`).
    pub dir: tempfile::TempDir,
    pebble: Child,
    dns: Child,
}

/// Files for pebble's HTTPS listener: a CA and a leaf for 127.0.0.1 / localhost.
fn write_listener_certs(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "pebble listener test CA");
    let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().expect("listener key");
    let params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .expect("listener params");
    let leaf = params
        .signed_by(&key, &issuer)
        .expect("listener certificate");
    let ca_path = dir.join("listener-ca.pem");
    let cert_path = dir.join("listener-cert.pem");
    let key_path = dir.join("listener-key.pem");
    std::fs::write(&ca_path, ca.pem()).expect("write listener CA");
    std::fs::write(&cert_path, leaf.pem()).expect("write listener certificate");
    std::fs::write(&key_path, key.serialize_pem()).expect("write listener key");
    (ca_path, cert_path, key_path)
}

impl Pebble {
    /// Starts pebble in a fresh temporary directory.
    pub async fn start(options: PebbleOptions) -> Pebble {
        let dir = tempfile::tempdir().expect("temporary directory");
        Pebble::start_in(options, dir).await
    }

    /// Writes the configuration of a pebble without starting it, so a test can
    /// point a resolver at an ACME server that is down.
    pub fn prepare(options: &PebbleOptions, dir: &Path) -> PebbleSetup {
        let (ca, cert, key) = write_listener_certs(dir);
        let listen_port = if options.listen_port == 0 {
            free_port()
        } else {
            options.listen_port
        };
        let management: SocketAddr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut config = json!({
            "listenAddress": format!("127.0.0.1:{listen_port}"),
            "managementListenAddress": management.to_string(),
            "certificate": cert,
            "privateKey": key,
            "httpPort": options.http_port,
            "tlsPort": options.tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": !options.eab_keys.is_empty(),
        });
        if !options.eab_keys.is_empty() {
            let keys: serde_json::Map<String, Value> = options
                .eab_keys
                .iter()
                .map(|(kid, hmac)| (kid.clone(), Value::String(hmac.clone())))
                .collect();
            config["externalAccountMACKeys"] = Value::Object(keys);
        }
        let text = serde_json::to_vec_pretty(&json!({ "pebble": config })).expect("JSON");
        std::fs::write(dir.join("pebble.json"), text).expect("write pebble.json");
        PebbleSetup {
            directory: format!("https://127.0.0.1:{listen_port}/dir"),
            management,
            listener_ca: ca,
        }
    }

    /// Writes the configuration into `dir` and starts pebble.
    pub async fn start_in(options: PebbleOptions, dir: tempfile::TempDir) -> Pebble {
        let setup = Pebble::prepare(&options, dir.path());
        Pebble::launch(dir, setup).await
    }

    /// Starts pebble from a configuration written by [`Pebble::prepare`] and waits until its
    /// ACME and management listeners accept connections.
    pub async fn launch(dir: tempfile::TempDir, setup: PebbleSetup) -> Pebble {
        let dns_port = free_port();
        let dns = Command::new("pebble-challtestsrv")
            .args([
                "-dns01",
                &format!("127.0.0.1:{dns_port}"),
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
                "-management",
                &format!("127.0.0.1:{}", free_port()),
                "-defaultIPv6",
                "",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start pebble-challtestsrv");
        let log = std::fs::File::create(dir.path().join("pebble.log")).expect("pebble.log");
        let pebble = Command::new("pebble")
            .arg("-config")
            .arg(dir.path().join("pebble.json"))
            .arg("-dnsserver")
            .arg(format!("127.0.0.1:{dns_port}"))
            .env("PEBBLE_VA_NOSLEEP", "1")
            .stdout(Stdio::from(log.try_clone().expect("pebble.log")))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .expect("start pebble");
        let listen: SocketAddr = setup
            .directory
            .trim_start_matches("https://")
            .trim_end_matches("/dir")
            .parse()
            .expect("pebble listen address");
        let started = Instant::now();
        while TcpStream::connect(listen).await.is_err()
            || TcpStream::connect(setup.management).await.is_err()
        {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "pebble did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Pebble {
            directory: setup.directory,
            management: setup.management,
            listener_ca: setup.listener_ca,
            dir,
            pebble,
            dns,
        }
    }

    /// Pebble's issuing root (regenerated at each start), as PEM.
    pub async fn root_pem(&self) -> String {
        let pem = std::fs::read(&self.listener_ca).expect("read listener CA");
        let mut roots = rustls::RootCertStore::empty();
        for der in rustls_pki_types::pem::PemObject::pem_slice_iter(&pem) {
            roots
                .add(der.expect("listener CA PEM"))
                .expect("listener CA");
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        let tcp = TcpStream::connect(self.management)
            .await
            .expect("connect to pebble's management interface");
        let name = rustls_pki_types::ServerName::try_from("127.0.0.1").expect("server name");
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .expect("TLS to pebble's management interface");
        // HTTP/1.0 keeps the body unchunked and ends it by closing.
        tls.write_all(b"GET /roots/0 HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .await
            .expect("send /roots/0");
        let mut response = Vec::new();
        let _ = tls.read_to_end(&mut response).await;
        let text = String::from_utf8(response).expect("UTF-8 answer");
        let (head, body) = text.split_once("\r\n\r\n").expect("HTTP answer");
        assert!(
            head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
            "{head}"
        );
        body.to_owned()
    }

    /// Stops pebble and its DNS server; returns the directory to start again in.
    pub async fn stop(mut self) -> tempfile::TempDir {
        let _ = self.pebble.kill().await;
        let _ = self.dns.kill().await;
        std::mem::replace(
            &mut self.dir,
            tempfile::tempdir().expect("temporary directory"),
        )
    }

    /// Pebble's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pebble.log")).unwrap_or_default()
    }

    /// Resolver settings pointing at this pebble (EC256 keys to keep tests fast).
    pub fn settings(&self, name: &str, challenge: Value, storage: &Path) -> ResolverSettings {
        settings_for(&self.directory, &self.listener_ca, name, challenge, storage)
    }
}

/// Resolver settings for the ACME server at `directory` whose HTTPS listener is signed by
/// `listener_ca`, with `challenge`'s fields (e.g. `{"tlsChallenge": {}}`) added.
pub fn settings_for(
    directory: &str,
    listener_ca: &Path,
    name: &str,
    challenge: Value,
    storage: &Path,
) -> ResolverSettings {
    let mut acme = json!({
        "email": "ops@sluice.test",
        "caServer": directory,
        "caCertificates": [listener_ca],
        "storage": storage,
        "keyType": "EC256",
    });
    if let Value::Object(fields) = challenge {
        for (k, v) in fields {
            acme[k] = v;
        }
    }
    ResolverSettings::from_traefik(name, &acme).expect("resolver settings")
}
