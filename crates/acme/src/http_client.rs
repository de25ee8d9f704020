//! HTTPS client for talking to the ACME server, trusting `caCertificates`.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};

use crate::settings::ResolverSettings;

/// Why the client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A `caCertificates` file could not be read or holds no certificate.
    #[error("caCertificates {path}: {reason}")]
    CaCertificate {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// `caServerName` is not a valid DNS name or IP address.
    #[error("caServerName {name:?}: {reason}")]
    CaServerName {
        /// The configured name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The TLS configuration could not be built.
    #[error("TLS client configuration: {0}")]
    Tls(String),
}

/// An ACME HTTP client with Traefik's timeouts and trust settings.
pub(crate) struct AcmeHttpClient {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, BodyWrapper<Bytes>>,
    header_timeout: Duration,
    total_timeout: Duration,
}

impl AcmeHttpClient {
    pub(crate) fn new(settings: &ResolverSettings) -> Result<AcmeHttpClient, ClientError> {
        let mut roots = rustls::RootCertStore::empty();
        // As in Traefik, custom CA files replace the public roots unless
        // `caSystemCertPool` asks for both.
        if settings.ca_certificates.is_empty() || settings.ca_system_cert_pool {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        for path in &settings.ca_certificates {
            let error = |reason: String| ClientError::CaCertificate {
                path: path.display().to_string(),
                reason,
            };
            let pem = std::fs::read(path).map_err(|e| error(e.to_string()))?;
            let mut found = 0;
            for der in rustls_pki_types::pem::PemObject::pem_slice_iter(&pem) {
                let der: rustls_pki_types::CertificateDer<'static> =
                    der.map_err(|e| error(e.to_string()))?;
                roots.add(der).map_err(|e| error(e.to_string()))?;
                found += 1;
            }
            if found == 0 {
                return Err(error("no PEM certificate in the file".to_owned()));
            }
        }
        let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ClientError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only();
        if let Some(name) = &settings.ca_server_name {
            let name = rustls_pki_types::ServerName::try_from(name.clone()).map_err(|e| {
                ClientError::CaServerName {
                    name: name.clone(),
                    reason: e.to_string(),
                }
            })?;
            builder =
                builder.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name));
        }
        let connector = builder.enable_http1().enable_http2().build();
        Ok(AcmeHttpClient {
            client: Client::builder(TokioExecutor::new()).build(connector),
            header_timeout: settings.client_response_header_timeout,
            total_timeout: settings.client_timeout,
        })
    }
}

impl HttpClient for AcmeHttpClient {
    fn request(
        &self,
        req: http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let pending = self.client.request(req);
        let header_timeout = self.header_timeout;
        let total_timeout = self.total_timeout;
        Box::pin(async move {
            let exchange = async move {
                let response = tokio::time::timeout(header_timeout, pending)
                    .await
                    .map_err(|_| other("timed out waiting for the ACME server's response headers"))?
                    .map_err(|e| instant_acme::Error::Other(Box::new(e)))?;
                // The body is read here so that `clientTimeout` bounds the whole exchange.
                let (parts, body) = response.into_parts();
                let body = body
                    .collect()
                    .await
                    .map_err(instant_acme::Error::Hyper)?
                    .to_bytes();
                Ok(BytesResponse::from(http::Response::from_parts(
                    parts,
                    Full::new(body),
                )))
            };
            tokio::time::timeout(total_timeout, exchange)
                .await
                .map_err(|_| other("timed out talking to the ACME server"))?
        })
    }
}

fn other(message: &'static str) -> instant_acme::Error {
    instant_acme::Error::Str(message)
}
