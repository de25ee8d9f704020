//! Small challenge servers that answer from `Challenges` the way Sluice's entry points do,
//! and waits on a resolver's published state. Pebble itself comes from
//! `sluice_acme::testing`.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

pub use sluice_acme::testing::*;
use sluice_acme::{Certificate, Challenges, DomainStatus, ResolverHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "sluice_acme=info".into()),
        )
        .with_test_writer()
        .try_init();
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
