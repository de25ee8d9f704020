//! One TLS handshake: read the ClientHello, answer an ACME TLS-ALPN-01 challenge if that is what
//! it asks for, else choose the TLS options for its server name and complete the handshake.

use std::sync::Arc;

use rustls::server::Acceptor;
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_rustls::server::TlsStream;
use tokio_rustls::LazyConfigAcceptor;

use super::options::{version_name, SessionState};
use super::{Choice, TlsRuntime};

/// The ALPN protocol of ACME's TLS-ALPN-01 challenge (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// Certificates answering TLS-ALPN-01 challenges, by server name.
pub trait AlpnChallenges: Send + Sync + std::fmt::Debug {
    /// The challenge certificate for `server_name`, while a challenge for it is pending.
    fn certificate(&self, server_name: &str) -> Option<Arc<CertifiedKey>>;
}

/// What the data plane knows about a TLS connection.
#[derive(Debug, Clone)]
pub struct TlsInfo {
    /// SNI as sent (lower-cased), if any.
    pub server_name: Option<String>,
    /// Name of the TLS options the handshake used (compared with the router's by the 421 check).
    pub options: Arc<str>,
    /// `TLS1.2` or `TLS1.3`.
    pub version: &'static str,
    /// The client's certificate chain, leaf first, when it sent one.
    pub peer_certificates: Option<Arc<Vec<CertificateDer<'static>>>>,
}

/// Why a TLS connection is not served.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    #[error("reading the ClientHello: {0}")]
    Hello(std::io::Error),
    #[error("handshake: {0}")]
    Handshake(std::io::Error),
    #[error("{0}")]
    Refused(String),
    #[error("TLS-ALPN-01 challenge answered for {0}")]
    ChallengeAnswered(String),
}

/// Performs the server side of a handshake on `stream`.
pub async fn accept<S>(
    stream: S,
    tls: &TlsRuntime,
    entry_point: &str,
    challenges: Option<&dyn AlpnChallenges>,
    state: &SessionState,
) -> Result<(TlsStream<S>, TlsInfo), AcceptError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let start = LazyConfigAcceptor::new(Acceptor::default(), stream)
        .await
        .map_err(AcceptError::Hello)?;
    let hello = start.client_hello();
    let server_name = hello.server_name().map(|n| n.to_ascii_lowercase());
    let wants_challenge = hello
        .alpn()
        .is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN));

    if wants_challenge {
        let name = server_name.clone().unwrap_or_default();
        let Some(certificate) = challenges.and_then(|c| c.certificate(&name)) else {
            return Err(AcceptError::Refused(format!(
                "acme-tls/1 asked for `{name}` but no challenge is pending"
            )));
        };
        let config = challenge_config(certificate, state)?;
        let mut stream = start
            .into_stream(config)
            .await
            .map_err(AcceptError::Handshake)?;
        // The validation is the handshake itself; nothing is served on this connection.
        let _ = stream.shutdown().await;
        return Err(AcceptError::ChallengeAnswered(name));
    }

    let (options, config) = match tls.choose(entry_point, server_name.as_deref()) {
        Choice::Serve { options, config } => (options, config),
        Choice::Refuse(reason) => return Err(AcceptError::Refused(reason)),
    };
    let stream = start
        .into_stream(config)
        .await
        .map_err(AcceptError::Handshake)?;
    let (_, session) = stream.get_ref();
    let info = TlsInfo {
        server_name,
        options,
        version: version_name(session.protocol_version()),
        peer_certificates: session
            .peer_certificates()
            .map(|chain| Arc::new(chain.iter().map(|c| c.clone().into_owned()).collect())),
    };
    Ok((stream, info))
}

fn challenge_config(
    certificate: Arc<CertifiedKey>,
    state: &SessionState,
) -> Result<Arc<ServerConfig>, AcceptError> {
    #[derive(Debug)]
    struct One(Arc<CertifiedKey>);
    impl rustls::server::ResolvesServerCert for One {
        fn resolve(&self, _: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
            Some(self.0.clone())
        }
    }
    let mut config = ServerConfig::builder_with_provider(state.provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| AcceptError::Refused(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(One(certificate)));
    config.alpn_protocols = vec![ACME_TLS_ALPN.to_vec()];
    Ok(Arc::new(config))
}
