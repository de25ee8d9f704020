//! TLS test kit: a throwaway CA issuing certificates, rustls client configurations, and an HTTPS
//! request over one real TLS connection whose handshake facts the test can inspect.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::Answer;

/// A certificate authority for tests.
pub struct Ca {
    pub pem: String,
    params: rcgen::CertificateParams,
    key: rcgen::KeyPair,
}

/// A PEM certificate with its key.
#[derive(Clone)]
pub struct Issued {
    pub cert: String,
    pub key: String,
}

impl Issued {
    /// The leaf as DER, to compare with what a server presented.
    pub fn der(&self) -> CertificateDer<'static> {
        CertificateDer::pem_slice_iter(self.cert.as_bytes())
            .next()
            .expect("a certificate")
            .expect("PEM")
    }
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let key = rcgen::KeyPair::generate().expect("ca key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let cert = params.self_signed(&key).expect("ca cert");
        Ca {
            pem: cert.pem(),
            params,
            key,
        }
    }

    /// A leaf for `names` (DNS names or IPs), signed by this CA.
    pub fn issue(&self, names: &[&str]) -> Issued {
        let key = rcgen::KeyPair::generate().expect("leaf key");
        let params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("leaf params");
        let issuer = rcgen::Issuer::new(self.params.clone(), &self.key);
        let cert = params.signed_by(&key, &issuer).expect("leaf cert");
        Issued {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    /// A leaf for `names` that expires at `not_after`.
    pub fn issue_until(&self, names: &[&str], not_after: std::time::SystemTime) -> Issued {
        let key = rcgen::KeyPair::generate().expect("leaf key");
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("leaf params");
        params.not_after = not_after.into();
        let issuer = rcgen::Issuer::new(self.params.clone(), &self.key);
        let cert = params.signed_by(&key, &issuer).expect("leaf cert");
        Issued {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    pub fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(self.pem.as_bytes()) {
            roots.add(cert.expect("ca PEM")).expect("add root");
        }
        roots
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A client that checks the server's certificate against `ca`.
pub fn verifying(ca: &Ca) -> ClientConfig {
    ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(ca.roots())
        .with_no_client_auth()
}

/// A client that checks the server's certificate against the PEM roots `roots_pem` (e.g. an
/// ACME server's issuing root).
pub fn verifying_pem(roots_pem: &str) -> ClientConfig {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(roots_pem.as_bytes()) {
        roots.add(cert.expect("root PEM")).expect("add root");
    }
    ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// A client that accepts any server certificate (to look at what was served).
pub fn trusting() -> ClientConfig {
    trusting_with(&[&rustls::version::TLS13, &rustls::version::TLS12], None)
}

/// A trusting client limited to `versions`, optionally to one cipher suite, without a client
/// certificate.
pub fn trusting_with(
    versions: &[&'static rustls::SupportedProtocolVersion],
    suite: Option<&str>,
) -> ClientConfig {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    if let Some(name) = suite {
        provider
            .cipher_suites
            .retain(|s| format!("{:?}", s.suite()) == name);
        assert!(!provider.cipher_suites.is_empty(), "unknown suite {name}");
    }
    ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(versions)
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny))
        .with_no_client_auth()
}

/// A trusting client presenting `client` as its certificate.
pub fn trusting_with_client_cert(client: &Issued) -> ClientConfig {
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(client.cert.as_bytes())
            .collect::<Result<_, _>>()
            .expect("client chain");
    let key = PrivateKeyDer::from_pem_slice(client.key.as_bytes()).expect("client key");
    ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny))
        .with_client_auth_cert(chain, key)
        .expect("client auth")
}

#[derive(Debug)]
struct AcceptAny;

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// One TLS connection: the handshake's facts and a way to send requests on it.
pub struct Conn {
    pub leaf: Option<CertificateDer<'static>>,
    pub version: Option<rustls::ProtocolVersion>,
    pub alpn: Option<Vec<u8>>,
    sender: Sender,
}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

/// Connects to `addr` with SNI `sni` (None: no SNI sent) and ALPN `alpn`.
pub async fn connect(
    addr: SocketAddr,
    mut config: ClientConfig,
    sni: Option<&str>,
    alpn: &[&str],
) -> Result<Conn, String> {
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    let name = match sni {
        Some(name) => ServerName::try_from(name.to_owned()).map_err(|e| e.to_string())?,
        None => {
            config.enable_sni = false;
            ServerName::try_from("no-sni.invalid".to_owned()).map_err(|e| e.to_string())?
        }
    };
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let stream = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let (_, session) = stream.get_ref();
    let leaf = session
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.clone().into_owned());
    let version = session.protocol_version();
    let alpn = session.alpn_protocol().map(|p| p.to_vec());
    let io = TokioIo::new(stream);
    let sender = if alpn.as_deref() == Some(b"h2") {
        let (sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(|e| format!("h2: {e}"))?;
        tokio::spawn(conn);
        Sender::H2(sender)
    } else {
        let (sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| format!("h1: {e}"))?;
        tokio::spawn(conn);
        Sender::H1(sender)
    };
    Ok(Conn {
        leaf,
        version,
        alpn,
        sender,
    })
}

impl Conn {
    /// GET `path` with Host `host`.
    pub async fn get(&mut self, host: &str, path: &str) -> Result<Answer, String> {
        let request = http::Request::builder().method("GET");
        let (response, _) = match &mut self.sender {
            Sender::H1(sender) => {
                let request = request
                    .uri(path)
                    .header("Host", host)
                    .body(Full::new(Bytes::new()))
                    .map_err(|e| e.to_string())?;
                // The previous exchange may still be finishing on the connection task.
                sender
                    .ready()
                    .await
                    .map_err(|e| format!("connection: {e}"))?;
                (sender.send_request(request).await, ())
            }
            Sender::H2(sender) => {
                let request = request
                    .uri(format!("https://{host}{path}"))
                    .body(Full::new(Bytes::new()))
                    .map_err(|e| e.to_string())?;
                sender
                    .ready()
                    .await
                    .map_err(|e| format!("connection: {e}"))?;
                (sender.send_request(request).await, ())
            }
        };
        let response = response.map_err(|e| format!("request: {e}"))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok(Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}

/// Connects with `sni` and GETs `path` on `host` in one go.
pub async fn get(
    addr: SocketAddr,
    config: ClientConfig,
    sni: Option<&str>,
    host: &str,
    path: &str,
) -> Result<Answer, String> {
    connect(addr, config, sni, &["http/1.1"])
        .await?
        .get(host, path)
        .await
}

/// The common name of a certificate.
pub fn common_name(cert: &CertificateDer<'_>) -> String {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, parsed) = X509Certificate::from_der(cert.as_ref()).expect("x509");
    let name = parsed
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or("")
        .to_owned();
    name
}
