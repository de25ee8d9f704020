//! A real pebble ACME server on loopback, and small challenge servers that answer
//! from `Challenges` the way Sluice's entry points do.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sluice_acme::{Certificate, Challenges, DomainStatus, ResolverHandle, ResolverSettings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};

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

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "sluice_acme=info".into()),
        )
        .with_test_writer()
        .try_init();
}

/// A port free right now on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port on 127.0.0.1")
}

/// What a pebble instance should look like.
#[derive(Clone, Default)]
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

/// A running pebble plus the DNS server that resolves every name to 127.0.0.1.
pub struct Pebble {
    pub directory: String,
    pub management: SocketAddr,
    /// CA of pebble's own HTTPS listener (for `caCertificates`).
    pub listener_ca: PathBuf,
    pub dir: tempfile::TempDir,
    pebble: Child,
    dns: Child,
}

/// Files for pebble's HTTPS listener: a CA and a leaf for 127.0.0.1 / localhost.
fn write_listener_certs(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "pebble listener test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap();
    let leaf = params.signed_by(&key, &issuer).unwrap();
    let ca_path = dir.join("listener-ca.pem");
    let cert_path = dir.join("listener-cert.pem");
    let key_path = dir.join("listener-key.pem");
    std::fs::write(&ca_path, ca.pem()).unwrap();
    std::fs::write(&cert_path, leaf.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (ca_path, cert_path, key_path)
}

impl Pebble {
    pub async fn start(options: PebbleOptions) -> Pebble {
        let dir = tempfile::tempdir().unwrap();
        Pebble::start_in(options, dir).await
    }

    /// Writes the configuration of a pebble without starting it, so a test can
    /// point a resolver at an ACME server that is down.
    pub fn prepare(options: &PebbleOptions, dir: &Path) -> (String, SocketAddr, PathBuf) {
        let (ca, cert, key) = write_listener_certs(dir);
        let listen_port = if options.listen_port == 0 {
            free_port()
        } else {
            options.listen_port
        };
        let management: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
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
        std::fs::write(
            dir.join("pebble.json"),
            serde_json::to_vec_pretty(&json!({ "pebble": config })).unwrap(),
        )
        .unwrap();
        (
            format!("https://127.0.0.1:{listen_port}/dir"),
            management,
            ca,
        )
    }

    pub async fn start_in(options: PebbleOptions, dir: tempfile::TempDir) -> Pebble {
        let (directory, management, listener_ca) = Pebble::prepare(&options, dir.path());
        Pebble::launch(dir, directory, management, listener_ca).await
    }

    /// Starts pebble from a configuration written by [`Pebble::prepare`].
    pub async fn launch(
        dir: tempfile::TempDir,
        directory: String,
        management: SocketAddr,
        listener_ca: PathBuf,
    ) -> Pebble {
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
        let log = std::fs::File::create(dir.path().join("pebble.log")).unwrap();
        let pebble = Command::new("pebble")
            .arg("-config")
            .arg(dir.path().join("pebble.json"))
            .arg("-dnsserver")
            .arg(format!("127.0.0.1:{dns_port}"))
            .env("PEBBLE_VA_NOSLEEP", "1")
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .expect("start pebble");
        let listen: SocketAddr = directory
            .trim_start_matches("https://")
            .trim_end_matches("/dir")
            .parse()
            .unwrap();
        let started = Instant::now();
        while TcpStream::connect(listen).await.is_err()
            || TcpStream::connect(management).await.is_err()
        {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "pebble did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Pebble {
            directory,
            management,
            listener_ca,
            dir,
            pebble,
            dns,
        }
    }

    /// Pebble's issuing root (regenerated at each start).
    pub async fn root_pem(&self) -> String {
        let pem = std::fs::read(&self.listener_ca).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        for der in rustls_pki_types::pem::PemObject::pem_slice_iter(&pem) {
            roots.add(der.unwrap()).unwrap();
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let tcp = TcpStream::connect(self.management).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .unwrap();
        // HTTP/1.0 keeps the body unchunked and ends it by closing.
        tls.write_all(b"GET /roots/0 HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .await
            .unwrap();
        let mut response = Vec::new();
        let _ = tls.read_to_end(&mut response).await;
        let text = String::from_utf8(response).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
            "{head}"
        );
        body.to_owned()
    }

    /// Stops pebble (the DNS server keeps running).
    pub async fn stop(mut self) -> tempfile::TempDir {
        let _ = self.pebble.kill().await;
        let _ = self.dns.kill().await;
        std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap())
    }

    /// Resolver settings pointing at this pebble (EC256 keys to keep tests fast).
    pub fn settings(&self, name: &str, challenge: Value, storage: &Path) -> ResolverSettings {
        settings_for(&self.directory, &self.listener_ca, name, challenge, storage)
    }
}

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
    for (k, v) in challenge.as_object().unwrap() {
        acme[k] = v.clone();
    }
    ResolverSettings::from_traefik(name, &acme).unwrap()
}

/// An HTTP server answering `/.well-known/acme-challenge/TOKEN` from `Challenges`.
pub async fn serve_http01(listener: TcpListener, challenges: Challenges) {
    use http_body_util::Full;
    use hyper::body::Bytes;
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let challenges = challenges.clone();
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let answer = req
                        .uri()
                        .path()
                        .strip_prefix(sluice_acme::HTTP01_PATH_PREFIX)
                        .and_then(|token| challenges.http01(token));
                    async move {
                        let response = match answer {
                            Some(body) => hyper::Response::new(Full::new(Bytes::from(body))),
                            None => hyper::Response::builder()
                                .status(404)
                                .body(Full::new(Bytes::new()))
                                .unwrap(),
                        };
                        Ok::<_, std::convert::Infallible>(response)
                    }
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

#[derive(Debug)]
struct AlpnAnswers(Challenges);

impl rustls::server::ResolvesServerCert for AlpnAnswers {
    fn resolve(
        &self,
        hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        let offers_acme = hello
            .alpn()
            .is_some_and(|mut protocols| protocols.any(|p| p == sluice_acme::ACME_TLS_ALPN));
        if !offers_acme {
            return None;
        }
        self.0.tls_alpn01(hello.server_name()?)
    }
}

/// A TLS server that completes acme-tls/1 handshakes with `Challenges::tls_alpn01`.
pub async fn serve_tls_alpn01(listener: TcpListener, challenges: Challenges) {
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_cert_resolver(Arc::new(AlpnAnswers(challenges)));
    config.alpn_protocols = vec![sluice_acme::ACME_TLS_ALPN.to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            if let Ok(mut tls) = acceptor.accept(stream).await {
                let _ = tls.shutdown().await;
            }
        });
    }
}

/// Serves `cert` on loopback and connects to it as `name` with a rustls client
/// that trusts only `root_pem`: the chain and the name must verify.
pub async fn handshake_with(cert: &Certificate, name: &str, root_pem: &str) -> Result<(), String> {
    let chain: Vec<rustls_pki_types::CertificateDer<'static>> =
        rustls_pki_types::pem::PemObject::pem_slice_iter(cert.chain_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
    let key =
        <rustls_pki_types::PrivateKeyDer as rustls_pki_types::pem::PemObject>::from_pem_slice(
            cert.key_pem.as_bytes(),
        )
        .map_err(|e| e.to_string())?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| e.to_string())?;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let serve = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        if let Ok(mut tls) = acceptor.accept(stream).await {
            let _ = tls.write_all(b"ok").await;
            let _ = tls.shutdown().await;
        }
    });

    let mut roots = rustls::RootCertStore::empty();
    for der in rustls_pki_types::pem::PemObject::pem_slice_iter(root_pem.as_bytes()) {
        roots
            .add(der.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let server_name = rustls_pki_types::ServerName::try_from(name.to_owned()).unwrap();
    let result = async {
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(client))
            .connect(server_name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        let mut body = Vec::new();
        let _ = tls.read_to_end(&mut body).await;
        if body == b"ok" {
            Ok(())
        } else {
            Err(format!("unexpected body {body:?}"))
        }
    }
    .await;
    serve.abort();
    result
}

/// Waits until the published certificates satisfy `done`.
pub async fn wait_for_certificates(
    handle: &ResolverHandle,
    limit: Duration,
    done: impl Fn(&[Certificate]) -> bool,
) -> Arc<Vec<Certificate>> {
    let mut rx = handle.certificates();
    let waited = tokio::time::timeout(limit, async {
        loop {
            let current = rx.borrow_and_update().clone();
            if done(&current) {
                return current;
            }
            if rx.changed().await.is_err() {
                panic!("resolver stopped");
            }
        }
    })
    .await;
    match waited {
        Ok(certs) => certs,
        Err(_) => panic!("timed out; status: {:#?}", handle.status()),
    }
}

/// Waits until the status satisfies `done`.
pub async fn wait_for_status(
    handle: &ResolverHandle,
    limit: Duration,
    done: impl Fn(&[DomainStatus]) -> bool,
) -> Vec<DomainStatus> {
    let mut rx = handle.status_updates();
    let waited = tokio::time::timeout(limit, async {
        loop {
            let current = rx.borrow_and_update().clone();
            if done(&current) {
                return current.as_ref().clone();
            }
            if rx.changed().await.is_err() {
                panic!("resolver stopped");
            }
        }
    })
    .await;
    match waited {
        Ok(status) => status,
        Err(_) => panic!("timed out; status: {:#?}", handle.status()),
    }
}

/// The serial number of a PEM chain's leaf, to tell certificates apart.
pub fn leaf_serial(chain_pem: &str) -> Vec<u8> {
    let der = rustls_pki_types::pem::PemObject::pem_slice_iter(chain_pem.as_bytes())
        .next()
        .unwrap()
        .map(|d: rustls_pki_types::CertificateDer<'static>| d.to_vec())
        .unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    cert.raw_serial().to_vec()
}
