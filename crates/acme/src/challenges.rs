//! Answers to pending ACME challenges, read by the entry points.
//!
//! The resolver publishes an answer before telling the ACME server a challenge is
//! ready and withdraws it once the authorization is settled. Entry points look
//! answers up: HTTP-01 on `/.well-known/acme-challenge/TOKEN`, TLS-ALPN-01 during a
//! handshake that offers ALPN `acme-tls/1` (RFC 8737).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use rustls::sign::CertifiedKey;

/// ALPN protocol of TLS-ALPN-01 validation handshakes.
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// URL path prefix of HTTP-01 validation requests.
pub const HTTP01_PATH_PREFIX: &str = "/.well-known/acme-challenge/";

/// Pending challenge answers, shared by resolvers and entry points. Cheap to clone.
#[derive(Clone, Default)]
pub struct Challenges {
    inner: Arc<Answers>,
}

#[derive(Default)]
struct Answers {
    http: RwLock<HashMap<String, String>>,
    tls: RwLock<HashMap<String, Arc<CertifiedKey>>>,
}

/// Why a TLS-ALPN-01 answer could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the acme-tls/1 certificate for {name}: {reason}")]
pub struct TlsAnswerError {
    name: String,
    reason: String,
}

impl std::fmt::Debug for Challenges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Challenges").finish_non_exhaustive()
    }
}

impl Challenges {
    /// An empty set of answers.
    pub fn new() -> Challenges {
        Challenges::default()
    }

    /// The key authorization to send as the body of
    /// `GET /.well-known/acme-challenge/{token}`, if that token is pending.
    pub fn http01(&self, token: &str) -> Option<String> {
        read(&self.inner.http).get(token).cloned()
    }

    /// The self-signed certificate carrying the `acmeIdentifier` extension for
    /// `server_name`, if a TLS-ALPN-01 challenge is pending for it.
    pub fn tls_alpn01(&self, server_name: &str) -> Option<Arc<CertifiedKey>> {
        read(&self.inner.tls)
            .get(&server_name.to_ascii_lowercase())
            .cloned()
    }

    pub(crate) fn publish_http01(&self, token: &str, key_authorization: &str) {
        write(&self.inner.http).insert(token.to_owned(), key_authorization.to_owned());
    }

    pub(crate) fn withdraw_http01(&self, token: &str) {
        write(&self.inner.http).remove(token);
    }

    /// Builds and publishes the TLS-ALPN-01 certificate for `name` from the SHA-256
    /// digest of the key authorization.
    pub(crate) fn publish_tls_alpn01(
        &self,
        name: &str,
        digest: &[u8],
    ) -> Result<(), TlsAnswerError> {
        let key = tls_alpn01_certificate(name, digest).map_err(|reason| TlsAnswerError {
            name: name.to_owned(),
            reason,
        })?;
        write(&self.inner.tls).insert(name.to_ascii_lowercase(), Arc::new(key));
        Ok(())
    }

    pub(crate) fn withdraw_tls_alpn01(&self, name: &str) {
        write(&self.inner.tls).remove(&name.to_ascii_lowercase());
    }
}

fn tls_alpn01_certificate(name: &str, digest: &[u8]) -> Result<CertifiedKey, String> {
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let mut params =
        rcgen::CertificateParams::new(vec![name.to_owned()]).map_err(|e| e.to_string())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    let key_der = rustls_pki_types::PrivateKeyDer::try_from(key.serialize_der())
        .map_err(|e| e.to_string())?;
    let signing_key =
        rustls::crypto::aws_lc_rs::sign::any_supported_type(&key_der).map_err(|e| e.to_string())?;
    Ok(CertifiedKey::new(vec![cert.der().clone()], signing_key))
}

// A poisoned lock only means another thread panicked mid-insert of a plain map
// entry; the map itself is still consistent, so keep serving.
fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_appear_and_disappear() {
        let c = Challenges::new();
        let shared = c.clone();
        assert_eq!(c.http01("tok"), None);
        c.publish_http01("tok", "tok.thumb");
        assert_eq!(shared.http01("tok").as_deref(), Some("tok.thumb"));
        c.withdraw_http01("tok");
        assert_eq!(shared.http01("tok"), None);

        c.publish_tls_alpn01("Www.Example.com", &[7u8; 32]).unwrap();
        let key = shared.tls_alpn01("www.example.com").unwrap();
        let der = key.cert[0].as_ref();
        // The acmeIdentifier OID 1.3.6.1.5.5.7.1.31 and the digest are in the certificate.
        let oid = [0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x01, 0x1f];
        assert!(der.windows(oid.len()).any(|w| w == oid));
        assert!(der.windows(32).any(|w| w == [7u8; 32]));
        c.withdraw_tls_alpn01("www.example.com");
        assert!(shared.tls_alpn01("www.example.com").is_none());
    }
}
