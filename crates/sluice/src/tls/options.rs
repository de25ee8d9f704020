//! TLS options (`tls.options.NAME`) compiled into rustls server configurations.
//!
//! rustls speaks TLS 1.2 and 1.3 only, with AEAD cipher suites: an option asking for TLS 1.0/1.1
//! starts at 1.2, and Go cipher suite or curve names rustls does not implement are skipped with a
//! warning. Names that Go itself does not know are errors, as in Traefik.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, SupportedKxGroup};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{
    ClientHello, NoServerSessionStorage, ResolvesServerCert, StoresServerSessions,
    WebPkiClientVerifier,
};
use rustls::sign::CertifiedKey;
use rustls::{
    DigitallySignedStruct, DistinguishedName, ProtocolVersion, RootCertStore, ServerConfig,
    SignatureScheme, SupportedCipherSuite, SupportedProtocolVersion,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, UnixTime};

use super::certificate::CertificateStore;
use super::settings::{file_or_content, OptionsConfig};

/// ALPN protocols offered when the options name none (Traefik's default minus `acme-tls/1`,
/// which Sluice answers before choosing options).
pub const DEFAULT_ALPN: &[&str] = &["h2", "http/1.1"];

/// State shared by every configuration of the process, so sessions resume across reloads.
#[derive(Debug)]
pub struct SessionState {
    pub provider: Arc<CryptoProvider>,
    ticketer: Option<Arc<dyn rustls::server::ProducesTickets>>,
    sessions: Arc<dyn StoresServerSessions>,
}

impl SessionState {
    /// Creates the process's ticket keys and session cache.
    pub fn new() -> Self {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let ticketer = match rustls::crypto::aws_lc_rs::Ticketer::new() {
            Ok(t) => Some(t),
            Err(error) => {
                tracing::warn!(%error, "session tickets are unavailable");
                None
            }
        };
        Self {
            provider,
            ticketer,
            sessions: rustls::server::ServerSessionMemoryCache::new(16 * 1024),
        }
    }
}

impl Default for SessionState {
    fn default() -> Self {
        Self::new()
    }
}

/// Options compiled for one runtime.
#[derive(Debug, Clone)]
pub struct CompiledOptions {
    pub config: Arc<ServerConfig>,
    /// Non-fatal remarks (unsupported but valid names), for diagnostics.
    pub warnings: Vec<String>,
}

/// Compiles options against a certificate store.
pub fn compile(
    options: &OptionsConfig,
    store: Arc<CertificateStore>,
    state: &SessionState,
) -> Result<CompiledOptions, String> {
    let mut warnings = Vec::new();
    let base = &state.provider;

    let min = version_rank(&options.min_version).unwrap_or(12);
    let max = version_rank(&options.max_version).unwrap_or(13);
    if max < 12 {
        return Err(format!(
            "maxVersion {}: Sluice (rustls) speaks TLS 1.2 and 1.3 only",
            options.max_version
        ));
    }
    if min < 12 {
        warnings.push(format!(
            "minVersion {}: TLS 1.0 and 1.1 are not supported; TLS 1.2 is the minimum",
            options.min_version
        ));
    }
    let mut tls12 = min <= 12 && max >= 12;
    let tls13 = max >= 13;

    let cipher_suites = if options.cipher_suites.is_empty() {
        base.cipher_suites.clone()
    } else {
        let mut chosen: Vec<SupportedCipherSuite> = base
            .cipher_suites
            .iter()
            .filter(|s| s.version() == &rustls::version::TLS13)
            .copied()
            .collect();
        for name in &options.cipher_suites {
            match cipher_suite(name, &base.cipher_suites) {
                Suite::Supported(suite) => {
                    if !chosen.contains(&suite) {
                        chosen.push(suite)
                    }
                }
                Suite::Tls13 => {}
                Suite::Unsupported => warnings.push(format!(
                    "cipherSuites: {name} is not implemented by rustls and is skipped"
                )),
                Suite::Unknown => return Err(format!("cipherSuites: unknown cipher suite {name}")),
            }
        }
        if tls12
            && !chosen
                .iter()
                .any(|s| s.version() == &rustls::version::TLS12)
        {
            warnings.push("cipherSuites: no TLS 1.2 suite is usable; TLS 1.2 is off".into());
            tls12 = false;
        }
        chosen
    };

    let kx_groups = if options.curve_preferences.is_empty() {
        base.kx_groups.clone()
    } else {
        let mut chosen: Vec<&'static dyn SupportedKxGroup> = Vec::new();
        for name in &options.curve_preferences {
            match curve(name) {
                Curve::Supported(group) => chosen.push(group),
                Curve::Unsupported => warnings.push(format!(
                    "curvePreferences: {name} is not implemented by rustls and is skipped"
                )),
                Curve::Unknown => return Err(format!("curvePreferences: unknown curve {name}")),
            }
        }
        if chosen.is_empty() {
            return Err("curvePreferences: none of the curves is usable".into());
        }
        chosen
    };

    let mut versions: Vec<&'static SupportedProtocolVersion> = Vec::new();
    if tls13 {
        versions.push(&rustls::version::TLS13);
    }
    if tls12 {
        versions.push(&rustls::version::TLS12);
    }
    if versions.is_empty() {
        return Err("no TLS version is left between minVersion and maxVersion".into());
    }

    let provider = Arc::new(CryptoProvider {
        cipher_suites,
        kx_groups,
        ..(**base).clone()
    });
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| format!("TLS options are inconsistent: {e}"))?;
    let verifier = client_verifier(options, &provider)?;
    let strict = options.sni_strict;
    let mut config = match verifier {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    }
    .with_cert_resolver(Arc::new(SniResolver { store, strict }));

    config.alpn_protocols = if options.alpn_protocols.is_empty() {
        DEFAULT_ALPN.iter().map(|p| p.as_bytes().to_vec()).collect()
    } else {
        options
            .alpn_protocols
            .iter()
            .filter(|p| p.as_str() != "acme-tls/1")
            .map(|p| p.as_bytes().to_vec())
            .collect()
    };
    if options.disable_session_tickets {
        config.session_storage = Arc::new(NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
    } else {
        config.session_storage = state.sessions.clone();
        if let Some(ticketer) = &state.ticketer {
            config.ticketer = ticketer.clone();
        }
    }
    Ok(CompiledOptions {
        config: Arc::new(config),
        warnings,
    })
}

/// Picks the certificate by SNI from one runtime's store.
#[derive(Debug)]
struct SniResolver {
    store: Arc<CertificateStore>,
    strict: bool,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.store.resolve(hello.server_name(), self.strict)
    }
}

fn version_rank(name: &str) -> Option<u8> {
    match name {
        "VersionTLS10" => Some(10),
        "VersionTLS11" => Some(11),
        "VersionTLS12" => Some(12),
        "VersionTLS13" => Some(13),
        // Traefik ignores unknown or empty versions and keeps the default.
        _ => None,
    }
}

/// What a Go cipher suite name means for rustls.
pub(crate) enum Suite {
    Supported(SupportedCipherSuite),
    /// A TLS 1.3 suite: always on, as in Go.
    Tls13,
    /// A Go suite rustls does not implement (CBC, RC4, 3DES, RSA key exchange).
    Unsupported,
    Unknown,
}

/// Looks a Go cipher suite name up among `suites` (shared by entry points and
/// `serversTransports`).
pub(crate) fn cipher_suite(name: &str, suites: &[SupportedCipherSuite]) -> Suite {
    if matches!(
        name,
        "TLS_AES_128_GCM_SHA256" | "TLS_AES_256_GCM_SHA384" | "TLS_CHACHA20_POLY1305_SHA256"
    ) {
        return Suite::Tls13;
    }
    // Go also accepts the CHACHA20 names without their `_SHA256` tail.
    let full = if name.ends_with("_CHACHA20_POLY1305") {
        format!("{name}_SHA256")
    } else {
        name.to_owned()
    };
    match suites.iter().find(|s| format!("{:?}", s.suite()) == full) {
        Some(suite) => Suite::Supported(*suite),
        // A name Go knows that rustls lacks (CBC, RC4, 3DES, RSA key exchange).
        None if sluice_crd::translate::GO_CIPHER_SUITES.contains(&name) => Suite::Unsupported,
        None => Suite::Unknown,
    }
}

enum Curve {
    Supported(&'static dyn SupportedKxGroup),
    Unsupported,
    Unknown,
}

fn curve(name: &str) -> Curve {
    use rustls::crypto::aws_lc_rs::kx_group;
    match name.to_ascii_lowercase().as_str() {
        "curvep256" | "secp256r1" => Curve::Supported(kx_group::SECP256R1),
        "curvep384" | "secp384r1" => Curve::Supported(kx_group::SECP384R1),
        "x25519" => Curve::Supported(kx_group::X25519),
        "x25519mlkem768" => Curve::Supported(kx_group::X25519MLKEM768),
        "secp256r1mlkem768" => Curve::Supported(kx_group::SECP256R1MLKEM768),
        "curvep521" | "secp521r1" | "secp384r1mlkem1024" => Curve::Unsupported,
        _ => Curve::Unknown,
    }
}

/// The client certificate policy of `clientAuth`.
fn client_verifier(
    options: &OptionsConfig,
    provider: &Arc<CryptoProvider>,
) -> Result<Option<Arc<dyn ClientCertVerifier>>, String> {
    let auth = &options.client_auth;
    let mut roots = RootCertStore::empty();
    for (i, ca) in auth.ca_files.iter().enumerate() {
        let pem = file_or_content(ca).map_err(|e| format!("clientAuth.caFiles[{i}]: {e}"))?;
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| format!("clientAuth.caFiles[{i}]: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("clientAuth.caFiles[{i}]: {e}"))?;
            added += 1;
        }
        if added == 0 {
            return Err(format!("clientAuth.caFiles[{i}]: no CERTIFICATE block"));
        }
    }
    let kind = match auth.client_auth_type.as_str() {
        "" if roots.is_empty() => "NoClientCert",
        "" => "RequireAndVerifyClientCert",
        other => other,
    };
    let verified = |optional: bool| -> Result<Option<Arc<dyn ClientCertVerifier>>, String> {
        if roots.is_empty() {
            return Err(format!(
                "clientAuth.clientAuthType {kind} needs CA files (clientAuth.caFiles or secretNames)"
            ));
        }
        let builder =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots.clone()), provider.clone());
        let builder = if optional {
            builder.allow_unauthenticated()
        } else {
            builder
        };
        builder
            .build()
            .map(Some)
            .map_err(|e| format!("clientAuth: {e}"))
    };
    match kind {
        "NoClientCert" => Ok(None),
        "RequestClientCert" => Ok(Some(Arc::new(AnyClientCert {
            mandatory: false,
            provider: provider.clone(),
        }))),
        "RequireAnyClientCert" => Ok(Some(Arc::new(AnyClientCert {
            mandatory: true,
            provider: provider.clone(),
        }))),
        "VerifyClientCertIfGiven" => verified(true),
        "RequireAndVerifyClientCert" => verified(false),
        other => Err(format!(
            "clientAuth.clientAuthType: unknown type {other} (NoClientCert, RequestClientCert, \
             RequireAnyClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert)"
        )),
    }
}

/// Asks for a client certificate and accepts any (Go's RequestClientCert and
/// RequireAnyClientCert): the handshake signature is still checked, the chain is not.
#[derive(Debug)]
struct AnyClientCert {
    mandatory: bool,
    provider: Arc<CryptoProvider>,
}

impl ClientCertVerifier for AnyClientCert {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
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
            &self.provider.signature_verification_algorithms,
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
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Human name of a negotiated protocol version, for logs.
pub fn version_name(version: Option<ProtocolVersion>) -> &'static str {
    match version {
        Some(ProtocolVersion::TLSv1_3) => "TLS1.3",
        Some(ProtocolVersion::TLSv1_2) => "TLS1.2",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::settings::ClientAuthConfig;

    fn opts(f: impl FnOnce(&mut OptionsConfig)) -> OptionsConfig {
        let mut o = OptionsConfig::default();
        f(&mut o);
        o
    }

    fn build(o: &OptionsConfig) -> Result<CompiledOptions, String> {
        compile(
            o,
            Arc::new(CertificateStore::default()),
            &SessionState::new(),
        )
    }

    #[test]
    fn defaults_offer_both_versions_and_h2() {
        let c = build(&OptionsConfig::default()).unwrap();
        assert_eq!(
            c.config.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        assert!(c.warnings.is_empty());
    }

    #[test]
    fn go_names_map_to_rustls_suites() {
        let c = build(&opts(|o| {
            o.cipher_suites = vec![
                "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256".into(),
                "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305".into(),
                "TLS_RSA_WITH_AES_128_CBC_SHA".into(),
            ]
        }))
        .unwrap();
        let tls12: Vec<String> = c
            .config
            .crypto_provider()
            .cipher_suites
            .iter()
            .filter(|s| s.version() == &rustls::version::TLS12)
            .map(|s| format!("{:?}", s.suite()))
            .collect();
        assert_eq!(
            tls12,
            vec![
                "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
                "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"
            ]
        );
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        let err = build(&opts(|o| o.cipher_suites = vec!["TLS_MADE_UP".into()])).unwrap_err();
        assert!(err.contains("TLS_MADE_UP"), "{err}");
    }

    #[test]
    fn curves_and_versions_are_checked() {
        assert!(build(&opts(|o| o.curve_preferences = vec!["CurveP999".into()])).is_err());
        assert!(build(&opts(|o| o.curve_preferences = vec!["CurveP521".into()])).is_err());
        let ok = build(&opts(|o| {
            o.curve_preferences = vec!["CurveP521".into(), "X25519".into()]
        }))
        .unwrap();
        assert_eq!(ok.config.crypto_provider().kx_groups.len(), 1);
        assert!(build(&opts(|o| o.max_version = "VersionTLS11".into())).is_err());
    }

    #[test]
    fn verifying_client_auth_needs_a_ca() {
        let err = build(&opts(|o| {
            o.client_auth = ClientAuthConfig {
                ca_files: vec![],
                client_auth_type: "RequireAndVerifyClientCert".into(),
            }
        }))
        .unwrap_err();
        assert!(err.contains("needs CA files"), "{err}");
        assert!(build(&opts(
            |o| o.client_auth.client_auth_type = "Sometimes".into()
        ))
        .is_err());
        assert!(build(&opts(
            |o| o.client_auth.client_auth_type = "RequireAnyClientCert".into()
        ))
        .is_ok());
    }
}
