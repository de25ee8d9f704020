//! TLS towards `https://` origins: PEM loading, certificate verification and the rustls
//! client configurations of a servers transport.
//!
//! Everything here is built when the configuration is parsed, so a transport whose PEM
//! material or versions are unusable is an error naming the field (and the services using it
//! are reported invalid) rather than a failure at the first request.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
    SupportedCipherSuite, SupportedProtocolVersion,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use super::ServersTransport;

/// The PEM texts a transport refers to, read when the configuration is parsed.
///
/// Kept inside the parsed configuration so that a file whose content changed makes a
/// different transport (with fresh connections) on the next reload.
#[derive(Clone, Default, PartialEq)]
pub struct LoadedPem {
    root_cas: Vec<String>,
    /// (certificate chain, private key) per `certificates` entry.
    certificates: Vec<(String, String)>,
}

impl fmt::Debug for LoadedPem {
    // Private keys must not reach logs or fingerprints: show a digest of the material only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.root_cas.hash(&mut hasher);
        self.certificates.hash(&mut hasher);
        write!(f, "LoadedPem({:016x})", hasher.finish())
    }
}

/// Reads a PEM value the way Traefik's `FileOrContent` does: inline PEM text, else a file path.
pub(crate) fn read_pem(field: &str, value: &str) -> Result<String, String> {
    let bytes =
        crate::tls::settings::file_or_content(value).map_err(|e| format!("{field}: {e}"))?;
    String::from_utf8(bytes).map_err(|_| format!("{field}: `{value}` is not PEM text"))
}

fn parse_certs(field: &str, pem: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{field}: invalid PEM certificate: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{field}: no PEM certificate found"));
    }
    Ok(certs)
}

fn parse_key(field: &str, pem: &str) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| format!("{field}: invalid PEM private key: {e}"))
}

impl LoadedPem {
    /// Reads every `rootCAs` and `certificates` entry of `spec`.
    pub fn load(spec: &ServersTransport) -> Result<Self, String> {
        let root_cas = spec
            .root_cas
            .iter()
            .enumerate()
            .map(|(i, v)| read_pem(&format!("rootCAs[{i}]"), v))
            .collect::<Result<_, _>>()?;
        let certificates = spec
            .certificates
            .iter()
            .enumerate()
            .map(|(i, c)| {
                Ok((
                    read_pem(&format!("certificates[{i}].certFile"), &c.cert_file)?,
                    read_pem(&format!("certificates[{i}].keyFile"), &c.key_file)?,
                ))
            })
            .collect::<Result<_, String>>()?;
        Ok(Self {
            root_cas,
            certificates,
        })
    }
}

/// The rustls client configurations of one transport, built once.
#[derive(Debug, Clone)]
pub struct TlsConfigs {
    /// ALPN `h2, http/1.1`; None with `disableHTTP2`.
    pub h2: Option<Arc<ClientConfig>>,
    /// ALPN `http/1.1` only: HTTP/1.1 connections, and upgrades (which need HTTP/1.1).
    pub http1: Arc<ClientConfig>,
    /// `serverName`: SNI and verified name instead of the origin's host.
    pub server_name: Option<ServerName<'static>>,
}

fn version(field: &str, name: &str) -> Result<u8, String> {
    // Go's names; rustls has no TLS 1.0/1.1, so those minimums mean TLS 1.2 in practice.
    match name {
        "VersionTLS10" => Ok(10),
        "VersionTLS11" => Ok(11),
        "VersionTLS12" => Ok(12),
        "VersionTLS13" => Ok(13),
        other => Err(format!(
            "{field}: unknown TLS version `{other}` (VersionTLS10 to VersionTLS13)"
        )),
    }
}

/// The TLS 1.2 suites named in `cipherSuites` (Go names), plus every TLS 1.3 suite, which Go
/// does not let one configure either. Names rustls does not implement (CBC, RSA key exchange)
/// are skipped: best effort, as with Traefik's fallback on cipher-suite errors.
fn cipher_suites(names: &[String], all: &[SupportedCipherSuite]) -> Vec<SupportedCipherSuite> {
    if names.is_empty() {
        return all.to_vec();
    }
    let wanted: Vec<SupportedCipherSuite> = names
        .iter()
        .filter_map(|name| match crate::tls::options::cipher_suite(name, all) {
            crate::tls::options::Suite::Supported(suite) => Some(suite),
            _ => None,
        })
        .collect();
    all.iter()
        .filter(|s| matches!(s, SupportedCipherSuite::Tls13(_)) || wanted.contains(s))
        .copied()
        .collect()
}

impl TlsConfigs {
    /// Builds the client configurations of `spec` with the PEM material `pem`.
    pub fn build(spec: &ServersTransport, pem: &LoadedPem) -> Result<Self, String> {
        let mut provider = rustls::crypto::aws_lc_rs::default_provider();
        provider.cipher_suites = cipher_suites(&spec.cipher_suites, &provider.cipher_suites);
        if !provider
            .cipher_suites
            .iter()
            .any(|s| matches!(s, SupportedCipherSuite::Tls12(_)))
            && !spec.cipher_suites.is_empty()
        {
            tracing::warn!(
                suites = ?spec.cipher_suites,
                "serversTransport cipherSuites: no TLS 1.2 suite supported; TLS 1.3 only"
            );
        }
        let provider = Arc::new(provider);

        let min = match &spec.min_version {
            Some(v) => version("minVersion", v)?,
            None => 12,
        };
        let max = match &spec.max_version {
            Some(v) => version("maxVersion", v)?,
            None => 13,
        };
        let versions: Vec<&'static SupportedProtocolVersion> =
            [(12, &rustls::version::TLS12), (13, &rustls::version::TLS13)]
                .into_iter()
                .filter(|(v, _)| (min..=max).contains(v))
                .map(|(_, p)| p)
                .collect();
        if versions.is_empty() {
            return Err(format!(
                "minVersion/maxVersion: no TLS version between {min} and {max} (TLS 1.2 and 1.3 are supported)"
            ));
        }

        let mut roots = RootCertStore::empty();
        if pem.root_cas.is_empty() {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        for (i, text) in pem.root_cas.iter().enumerate() {
            let field = format!("rootCAs[{i}]");
            for cert in parse_certs(&field, text)? {
                roots
                    .add(cert)
                    .map_err(|e| format!("{field}: unusable CA certificate: {e}"))?;
            }
        }
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| format!("rootCAs: {e}"))?;
        let algorithms = provider.signature_verification_algorithms;
        // As in Traefik, peerCertURI replaces hostname verification (the chain is still checked
        // against the roots), and takes precedence over insecureSkipVerify.
        let verifier: Arc<dyn ServerCertVerifier> = match &spec.peer_cert_uri {
            Some(uri) if !uri.is_empty() => Arc::new(PeerUriVerifier {
                inner: webpki,
                uri: uri.clone(),
            }),
            _ if spec.insecure_skip_verify => Arc::new(AcceptAnyCert(algorithms)),
            _ => webpki,
        };

        let builder = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&versions)
            .map_err(|e| format!("minVersion/maxVersion/cipherSuites: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        // rustls presents one client certificate; Go would pick among several by the server's
        // accepted issuers. The first entry is used.
        let config = match pem.certificates.first() {
            Some((cert, key)) => {
                let chain = parse_certs("certificates[0].certFile", cert)?;
                let key = parse_key("certificates[0].keyFile", key)?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| format!("certificates[0]: {e}"))?
            }
            None => builder.with_no_client_auth(),
        };
        for (i, (cert, key)) in pem.certificates.iter().enumerate().skip(1) {
            parse_certs(&format!("certificates[{i}].certFile"), cert)?;
            parse_key(&format!("certificates[{i}].keyFile"), key)?;
        }

        let server_name = match &spec.server_name {
            Some(name) if !name.is_empty() => Some(
                ServerName::try_from(name.clone())
                    .map_err(|e| format!("serverName: `{name}`: {e}"))?,
            ),
            _ => None,
        };
        let mut http1 = config.clone();
        http1.alpn_protocols = vec![b"http/1.1".to_vec()];
        let h2 = (!spec.disable_http2).then(|| {
            let mut h2 = config;
            h2.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            Arc::new(h2)
        });
        Ok(Self {
            h2,
            http1: Arc::new(http1),
            server_name,
        })
    }
}

/// `insecureSkipVerify`: any certificate chain and name are accepted, but the handshake
/// signatures are still checked, so the peer must hold the key of the certificate it shows.
#[derive(Debug)]
struct AcceptAnyCert(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// `peerCertURI`: the chain must verify against the roots and the end-entity certificate must
/// carry this URI subject alternative name; the host name is not checked (Traefik's
/// `VerifyPeerCertificate`).
#[derive(Debug)]
struct PeerUriVerifier {
    inner: Arc<WebPkiServerVerifier>,
    uri: String,
}

impl ServerCertVerifier for PeerUriVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Ok(_)
            | Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => {}
            Err(e) => return Err(e),
        }
        if uri_sans(end_entity).contains(&self.uri.as_bytes()) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "peer certificate has no URI SAN `{}` (peerCertURI)",
                self.uri
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// One DER element: (tag, contents, rest). Only definite lengths up to 4 bytes (X.509 is DER).
fn der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | *b as usize);
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The URI entries of the subjectAltName extension of an X.509 certificate. A small DER walk:
/// the TLS stack already parsed and verified the certificate, only this lookup is missing.
fn uri_sans(cert: &[u8]) -> Vec<&[u8]> {
    const SAN_OID: &[u8] = &[0x55, 0x1d, 0x11]; // 2.5.29.17
    let mut uris = Vec::new();
    let Some((_, certificate, _)) = der(cert) else {
        return uris;
    };
    let Some((_, mut tbs, _)) = der(certificate) else {
        return uris;
    };
    while let Some((tag, content, rest)) = der(tbs) {
        tbs = rest;
        // [3] EXPLICIT Extensions
        if tag != 0xa3 {
            continue;
        }
        let Some((_, mut extensions, _)) = der(content) else {
            break;
        };
        while let Some((_, extension, rest)) = der(extensions) {
            extensions = rest;
            let Some((0x06, oid, mut fields)) = der(extension) else {
                continue;
            };
            if oid != SAN_OID {
                continue;
            }
            while let Some((tag, value, rest)) = der(fields) {
                fields = rest;
                if tag != 0x04 {
                    continue; // the `critical` flag
                }
                let Some((_, mut names, _)) = der(value) else {
                    break;
                };
                while let Some((tag, name, rest)) = der(names) {
                    names = rest;
                    // [6] IMPLICIT IA5String: uniformResourceIdentifier
                    if tag == 0x86 {
                        uris.push(name);
                    }
                }
            }
        }
    }
    uris
}

/// The name to present (SNI) and verify for an origin host (IP literals included).
pub fn host_server_name(host: &str) -> Result<ServerName<'static>, String> {
    let literal = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    ServerName::try_from(literal.to_owned()).map_err(|e| format!("`{host}`: {e}"))
}

/// The provider the configurations start from, for tests.
#[cfg(test)]
fn provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::aws_lc_rs::default_provider()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed(uri: Option<&str>) -> rcgen::CertifiedKey<rcgen::KeyPair> {
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
        if let Some(uri) = uri {
            params
                .subject_alt_names
                .push(rcgen::SanType::URI(uri.try_into().expect("ia5")));
        }
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("cert");
        rcgen::CertifiedKey {
            cert,
            signing_key: key,
        }
    }

    #[test]
    fn finds_uri_sans() {
        let c = self_signed(Some("spiffe://example.org/web"));
        let uris = uri_sans(c.cert.der());
        assert_eq!(uris, vec![b"spiffe://example.org/web".as_slice()]);
        assert!(uri_sans(self_signed(None).cert.der()).is_empty());
        assert!(uri_sans(b"\x30\x80garbage").is_empty());
    }

    #[test]
    fn cipher_suites_are_filtered_best_effort() {
        let all = provider().cipher_suites;
        let some = cipher_suites(
            &[
                "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305".to_owned(),
                "TLS_RSA_WITH_AES_128_CBC_SHA".to_owned(),
            ],
            &all,
        );
        let tls12: Vec<_> = some
            .iter()
            .filter(|s| matches!(s, SupportedCipherSuite::Tls12(_)))
            .map(|s| format!("{:?}", s.suite()))
            .collect();
        assert_eq!(tls12, ["TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"]);
        assert!(some
            .iter()
            .any(|s| matches!(s, SupportedCipherSuite::Tls13(_))));
    }
}
