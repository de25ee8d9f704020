//! `https://` origins through `serversTransports`: certificate verification (self-signed
//! origin: rejected by default, accepted with insecureSkipVerify or rootCAs), serverName,
//! HTTP/2 via ALPN or HTTP/1.1 with disableHTTP2, and client certificates (mTLS).

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{get, Sluice};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A self-signed certificate for `localhost` and 127.0.0.1, as PEM (certificate, key).
fn self_signed() -> (String, String) {
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .expect("params")
        .self_signed(&key)
        .expect("self-signed");
    (cert.pem(), key.serialize_pem())
}

/// A CA and a client certificate it signed, as PEM (CA, client certificate, client key).
fn client_ca() -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().expect("ca key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "test client CA");
    let ca = ca_params.self_signed(&ca_key).expect("ca");
    let issuer = rcgen::Issuer::new(ca_params, &ca_key);
    let client_key = rcgen::KeyPair::generate().expect("client key");
    let client = rcgen::CertificateParams::new(vec!["client.test".to_owned()])
        .expect("client params")
        .signed_by(&client_key, &issuer)
        .expect("client cert");
    (ca.pem(), client.pem(), client_key.serialize_pem())
}

/// An https origin answering `Name: <name>` and the HTTP version it received, with ALPN
/// `alpn`, optionally requiring a client certificate from `client_ca`.
async fn https_origin(
    name: &'static str,
    cert: &str,
    key: &str,
    alpn: &[&[u8]],
    client_ca: Option<&str>,
) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert.as_bytes())
        .collect::<Result<_, _>>()
        .expect("cert PEM");
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key PEM");
    let builder = ServerConfig::builder();
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(ca.as_bytes()) {
                roots.add(c.expect("ca PEM")).expect("ca");
            }
            builder.with_client_cert_verifier(
                WebPkiClientVerifier::builder(Arc::new(roots))
                    .build()
                    .expect("client verifier"),
            )
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key).expect("server config");
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = service_fn(
                    move |req: http::Request<hyper::body::Incoming>| async move {
                        let body = format!(
                            "Name: {name}\nVersion: {:?}\nHost: {}\n",
                            req.version(),
                            req.uri()
                                .authority()
                                .map(|a| a.to_string())
                                .or_else(|| req
                                    .headers()
                                    .get("host")
                                    .and_then(|h| h.to_str().ok())
                                    .map(str::to_owned))
                                .unwrap_or_default()
                        );
                        Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(body))))
                    },
                );
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (addr, task)
}

/// A router on `/<path>` to `url` through transport `transport` (none when empty).
fn route(path: &str, url: &str, transport: &str) -> String {
    let transport = if transport.is_empty() {
        String::new()
    } else {
        format!("        serversTransport: {transport}\n")
    };
    format!(
        "    {path}:\n      rule: \"PathPrefix(`/{path}`)\"\n      service: {path}\n",
    ) + &format!(
        "SERVICE    {path}:\n      loadBalancer:\n{transport}        servers:\n          - url: {url}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_origins_through_servers_transports() {
    let (cert, key) = self_signed();
    let (ca, client_cert, client_key) = client_ca();
    let (both, _t1) = https_origin("secure", &cert, &key, &[b"h2", b"http/1.1"], None).await;
    let (h1only, _t2) = https_origin("h1only", &cert, &key, &[b"http/1.1"], None).await;
    let (mtls, _t3) = https_origin("mtls", &cert, &key, &[b"h2", b"http/1.1"], Some(&ca)).await;

    let files = tempfile::tempdir().expect("tempdir");
    let cert_path = files.path().join("origin.pem");
    std::fs::write(&cert_path, &cert).expect("write cert");
    let client_cert_path = files.path().join("client.pem");
    std::fs::write(&client_cert_path, &client_cert).expect("write client cert");
    let client_key_path = files.path().join("client.key");
    std::fs::write(&client_key_path, &client_key).expect("write client key");
    // A JSON string is a valid YAML double-quoted scalar: inline PEM with its newlines.
    let inline_cert = serde_json::to_string(&cert).expect("json");
    let inline_key = serde_json::to_string(&client_key).expect("json");

    let routes = [
        route("none", &format!("https://{both}"), ""),
        route("insecure", &format!("https://{both}"), "insecure"),
        route("rootfile", &format!("https://{both}"), "rootfile"),
        route("rootinline", &format!("https://{both}"), "rootinline"),
        route("wrongname", &format!("https://{both}"), "wrongname"),
        route("named", &format!("https://{both}"), "named"),
        route("http1", &format!("https://{both}"), "http1"),
        route("alpnh1", &format!("https://{h1only}"), "insecure"),
        route("mtlsnone", &format!("https://{mtls}"), "insecure"),
        route("mtls", &format!("https://{mtls}"), "mtls"),
        route("mtlsinline", &format!("https://{mtls}"), "mtlsinline"),
        route("broken", &format!("https://{both}"), "broken"),
    ];
    let (routers, services): (Vec<_>, Vec<_>) = routes
        .iter()
        .map(|r| {
            let (router, service) = r.split_once("SERVICE").expect("marker");
            (router.to_owned(), service.to_owned())
        })
        .unzip();
    let transports = format!(
            "    insecure:\n      insecureSkipVerify: true\n\
             \x20   rootfile:\n      rootCAs:\n        - {cert_path}\n\
             \x20   rootinline:\n      rootCAs:\n        - {inline_cert}\n\
             \x20   wrongname:\n      serverName: other.example\n      rootCAs:\n        - {cert_path}\n\
             \x20   named:\n      serverName: localhost\n      rootCAs:\n        - {cert_path}\n\
             \x20   http1:\n      insecureSkipVerify: true\n      disableHTTP2: true\n\
             \x20   mtls:\n      insecureSkipVerify: true\n      certificates:\n        - certFile: {client_cert_path}\n          keyFile: {client_key_path}\n\
             \x20   mtlsinline:\n      insecureSkipVerify: true\n      certificates:\n        - certFile: {inline_client_cert}\n          keyFile: {inline_key}\n\
             \x20   broken:\n      rootCAs:\n        - /nonexistent/ca.pem\n",
            cert_path = cert_path.display(),
            client_cert_path = client_cert_path.display(),
            client_key_path = client_key_path.display(),
            inline_client_cert = serde_json::to_string(&client_cert).expect("json"),
    );
    let config = format!(
        "http:\n  routers:\n{}  services:\n{}  serversTransports:\n{transports}",
        routers.concat(),
        services.concat(),
    );
    let sluice = Sluice::start(&[("dynamic.yml", config.clone())], &[]).await;
    sluice
        .wait_for_log(
            "rootCAs[0]: cannot read `/nonexistent/ca.pem`",
            Duration::from_secs(10),
        )
        .await;

    let check = |path: &'static str| {
        let url = sluice.url(&format!("/{path}"));
        async move { (get(&url, &[]).await, url) }
    };

    // Self-signed origin: refused by the default trust store, with the reason logged.
    let (answer, _) = check("none").await;
    assert_eq!(answer.status, 502, "{}", answer.body);
    let (answer, _) = check("wrongname").await;
    assert_eq!(answer.status, 502, "{}", answer.body);
    let (answer, _) = check("mtlsnone").await;
    assert_eq!(answer.status, 502, "{}", answer.body);

    for path in ["insecure", "rootfile", "rootinline", "named", "insecure"] {
        let (answer, url) = check(path).await;
        assert_eq!(
            answer.status,
            200,
            "{url}: {}\n{}",
            answer.body,
            sluice.log_text()
        );
        assert_eq!(answer.origin(), "secure");
        assert_eq!(answer.seen("Version"), Some("HTTP/2.0"), "{url}");
        // passHostHeader: the client's Host becomes `:authority`.
        assert_eq!(answer.seen("Host"), Some(sluice.addr.to_string().as_str()));
    }
    let (answer, _) = check("http1").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.seen("Version"), Some("HTTP/1.1"));
    // An origin offering only HTTP/1.1 in ALPN: first over the probing connection, then pooled.
    for _ in 0..3 {
        let (answer, _) = check("alpnh1").await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(answer.origin(), "h1only");
        assert_eq!(answer.seen("Version"), Some("HTTP/1.1"));
    }
    for path in ["mtls", "mtlsinline"] {
        let (answer, url) = check(path).await;
        assert_eq!(
            answer.status,
            200,
            "{url}: {}\n{}",
            answer.body,
            sluice.log_text()
        );
        assert_eq!(answer.origin(), "mtls");
    }
    // The service of an invalid transport is not served.
    let (answer, _) = check("broken").await;
    assert_ne!(answer.status, 200);

    let log = sluice.log_text();
    assert!(
        log.contains("UnknownIssuer") || log.contains("unknown issuer"),
        "TLS failure reason missing from the log:\n{log}"
    );
}

/// forwardAuth to an `https://` auth server: refused without trust, allowed with
/// `tls.insecureSkipVerify` or with the server's certificate as `tls.ca`.
#[tokio::test(flavor = "multi_thread")]
async fn forward_auth_over_https() {
    let (cert, key) = self_signed();
    let (auth, _auth_task) = https_origin("auth", &cert, &key, &[b"http/1.1"], None).await;
    let app = common::origin("app").await;
    let ca = serde_json::to_string(&cert).expect("quote");
    let config = format!(
        r#"http:
  routers:
    untrusted:
      rule: "PathPrefix(`/untrusted`)"
      middlewares: [untrusted]
      service: app
    skip:
      rule: "PathPrefix(`/skip`)"
      middlewares: [skip]
      service: app
    ca:
      rule: "PathPrefix(`/ca`)"
      middlewares: [ca]
      service: app
  middlewares:
    untrusted:
      forwardAuth: {{address: "https://{auth}/auth"}}
    skip:
      forwardAuth: {{address: "https://{auth}/auth", tls: {{insecureSkipVerify: true}}}}
    ca:
      forwardAuth: {{address: "https://{auth}/auth", tls: {{ca: {ca}}}}}
  services:
    app:
      loadBalancer:
        servers:
          - url: "{app}"
"#,
        app = app.url()
    );
    let sluice = Sluice::start(&[("auth.yml", config)], &[]).await;
    let untrusted = common::get(&sluice.url("/untrusted"), &[]).await;
    assert_eq!(untrusted.status, 500, "an unverifiable auth server denies");
    let skip = common::get(&sluice.url("/skip"), &[]).await;
    assert_eq!((skip.status, skip.origin()), (200, "app"));
    let ca = common::get(&sluice.url("/ca"), &[]).await;
    assert_eq!((ca.status, ca.origin()), (200, "app"));
}
