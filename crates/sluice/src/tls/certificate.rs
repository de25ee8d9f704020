//! Certificates and the store that picks one for a TLS handshake's server name.
//!
//! Selection follows Traefik: the server name (lower-cased) is matched against every name a
//! certificate carries (common name, DNS and IP SANs); an exact name beats a wildcard, a
//! wildcard covers one label (`*.example.com` matches `a.example.com`). No match: the store's
//! default certificate, or nothing when the TLS options say `sniStrict`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

/// A parsed certificate chain with its private key.
#[derive(Debug)]
pub struct Certificate {
    /// What rustls serves.
    pub key: Arc<CertifiedKey>,
    /// Names the leaf is valid for, lower-cased: common name first, then SANs.
    pub names: Vec<String>,
    /// End of the leaf's validity.
    pub not_after: SystemTime,
}

impl Certificate {
    /// Parses a PEM chain (leaf first) and a PEM private key.
    pub fn from_pem(chain: &[u8], key: &[u8], provider: &CryptoProvider) -> Result<Self, String> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("certificate PEM: {e}"))?;
        let leaf = chain
            .first()
            .ok_or("no CERTIFICATE block in the certificate PEM")?;
        let (names, not_after) = leaf_facts(leaf)?;
        let key =
            PrivateKeyDer::from_pem_slice(key).map_err(|e| format!("private key PEM: {e}"))?;
        let signing = provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| format!("private key: {e}"))?;
        let certified = CertifiedKey::new(chain, signing);
        certified
            .keys_match()
            .map_err(|e| format!("the private key does not belong to the certificate: {e}"))?;
        Ok(Self {
            key: Arc::new(certified),
            names,
            not_after,
        })
    }
}

/// Names (common name, DNS SANs, IP SANs) and expiry of a leaf certificate.
pub fn leaf_facts(leaf: &CertificateDer<'_>) -> Result<(Vec<String>, SystemTime), String> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let (_, cert) =
        X509Certificate::from_der(leaf.as_ref()).map_err(|e| format!("certificate: {e}"))?;
    let mut names = Vec::new();
    for cn in cert.subject().iter_common_name() {
        if let Ok(cn) = cn.as_str() {
            names.push(cn.trim().to_ascii_lowercase());
        }
    }
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(dns) => names.push(dns.trim().to_ascii_lowercase()),
                GeneralName::IPAddress(bytes) => {
                    names.extend(san_ip(bytes).map(|ip| ip.to_string()))
                }
                _ => {}
            }
        }
    }
    names.retain(|n| !n.is_empty());
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.clone()));
    let seconds = cert.validity().not_after.timestamp().max(0) as u64;
    Ok((names, UNIX_EPOCH + Duration::from_secs(seconds)))
}

/// An IP address subject alternative name (4 or 16 bytes), if well formed.
pub fn san_ip(bytes: &[u8]) -> Option<std::net::IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(std::net::IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(std::net::IpAddr::from),
        _ => None,
    }
}

/// The certificates of one runtime, indexed by name.
#[derive(Debug, Default)]
pub struct CertificateStore {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `*.example.com` certificates by their suffix `example.com`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
    count: usize,
}

impl CertificateStore {
    /// Indexes `certificates`; on a name shared by several, the first listed wins.
    pub fn new(certificates: &[Arc<Certificate>], default: Option<Arc<CertifiedKey>>) -> Self {
        let mut store = Self {
            default,
            count: certificates.len(),
            ..Self::default()
        };
        for certificate in certificates {
            for name in &certificate.names {
                let (map, key) = match name.strip_prefix("*.") {
                    Some(suffix) => (&mut store.wildcard, suffix.trim_end_matches('.')),
                    None => (&mut store.exact, name.trim_end_matches('.')),
                };
                map.entry(key.to_owned())
                    .or_insert_with(|| certificate.key.clone());
            }
        }
        store
    }

    /// The certificate for `server_name` (exact, then wildcard), if any matches.
    pub fn matching(&self, server_name: &str) -> Option<Arc<CertifiedKey>> {
        let name = server_name
            .trim()
            .trim_end_matches('.')
            .to_ascii_lowercase();
        if let Some(key) = self.exact.get(&name) {
            return Some(key.clone());
        }
        let (_, parent) = name.split_once('.')?;
        self.wildcard.get(parent).cloned()
    }

    /// The certificate to serve: the match, else the default unless `strict`.
    pub fn resolve(&self, server_name: Option<&str>, strict: bool) -> Option<Arc<CertifiedKey>> {
        if let Some(found) = server_name.and_then(|name| self.matching(name)) {
            return Some(found);
        }
        if strict {
            None
        } else {
            self.default.clone()
        }
    }

    /// Number of certificates indexed.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when the store holds no certificate (a default may still be served).
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// Parsed certificates kept across reloads, so an unchanged certificate is not parsed again
/// and its key stays the same object.
#[derive(Debug, Default)]
pub struct CertificateCache {
    parsed: Mutex<HashMap<[u8; 32], Arc<Certificate>>>,
}

impl CertificateCache {
    /// The parsed certificate for this PEM pair, from the cache or freshly parsed.
    pub fn get(
        &self,
        chain: &[u8],
        key: &[u8],
        provider: &CryptoProvider,
    ) -> Result<Arc<Certificate>, String> {
        let mut hasher = Sha256::new();
        hasher.update((chain.len() as u64).to_be_bytes());
        hasher.update(chain);
        hasher.update(key);
        let digest: [u8; 32] = hasher.finalize().into();
        if let Some(found) = self.lock().get(&digest) {
            return Ok(found.clone());
        }
        let parsed = Arc::new(Certificate::from_pem(chain, key, provider)?);
        self.lock().insert(digest, parsed.clone());
        Ok(parsed)
    }

    /// Forgets every certificate not used by the runtime just built.
    pub fn retain_used(&self, used: &[Arc<Certificate>]) {
        self.lock()
            .retain(|_, c| used.iter().any(|u| Arc::ptr_eq(u, c)));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Arc<Certificate>>> {
        self.parsed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Common name of the self-signed certificate served when nothing else applies.
pub const DEFAULT_CERT_NAME: &str = "SLUICE DEFAULT CERT";

/// The self-signed default certificate, generated once per process.
pub fn generated_default(provider: &CryptoProvider) -> Option<Arc<CertifiedKey>> {
    static GENERATED: OnceLock<Option<Arc<CertifiedKey>>> = OnceLock::new();
    GENERATED
        .get_or_init(|| match self_signed(DEFAULT_CERT_NAME, provider) {
            Ok(key) => Some(key),
            Err(error) => {
                tracing::error!(%error, "cannot generate the default certificate");
                None
            }
        })
        .clone()
}

fn self_signed(common_name: &str, provider: &CryptoProvider) -> Result<Arc<CertifiedKey>, String> {
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    let not_before = SystemTime::now() - Duration::from_secs(3600);
    params.not_before = not_before.into();
    params.not_after = (not_before + Duration::from_secs(365 * 24 * 3600)).into();
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    let der = PrivateKeyDer::try_from(key.serialize_der()).map_err(|e| e.to_string())?;
    let signing = provider
        .key_provider
        .load_private_key(der)
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(CertifiedKey::new(
        vec![cert.der().clone()],
        signing,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider() -> CryptoProvider {
        rustls::crypto::aws_lc_rs::default_provider()
    }

    fn make(names: &[&str]) -> Arc<Certificate> {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.self_signed(&key).unwrap();
        Arc::new(
            Certificate::from_pem(
                cert.pem().as_bytes(),
                key.serialize_pem().as_bytes(),
                &provider(),
            )
            .unwrap(),
        )
    }

    #[test]
    fn exact_beats_wildcard_and_wildcards_cover_one_label() {
        let wild = make(&["*.example.com"]);
        let exact = make(&["a.example.com"]);
        let store = CertificateStore::new(&[wild.clone(), exact.clone()], None);
        let is = |name: &str, c: &Arc<Certificate>| {
            store
                .matching(name)
                .is_some_and(|k| Arc::ptr_eq(&k, &c.key))
        };
        assert!(is("a.example.com", &exact));
        assert!(is("A.Example.COM.", &exact));
        assert!(is("b.example.com", &wild));
        assert!(store.matching("x.b.example.com").is_none());
        assert!(store.matching("example.com").is_none());
    }

    #[test]
    fn default_unless_strict() {
        let cert = make(&["a.test"]);
        let fallback = generated_default(&provider()).unwrap();
        let store = CertificateStore::new(&[cert], Some(fallback.clone()));
        let got = store.resolve(Some("other.test"), false).unwrap();
        assert!(Arc::ptr_eq(&got, &fallback));
        assert!(store.resolve(Some("other.test"), true).is_none());
        assert!(store.resolve(None, true).is_none());
    }

    #[test]
    fn names_include_common_name_and_ip_sans() {
        let cert = make(&["a.test", "127.0.0.1"]);
        assert!(cert.names.contains(&"a.test".to_owned()));
        assert!(cert.names.contains(&"127.0.0.1".to_owned()));
        assert!(cert.not_after > SystemTime::now());
    }

    #[test]
    fn mismatched_key_is_refused() {
        let a = rcgen::KeyPair::generate().unwrap();
        let b = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["a.test".to_owned()])
            .unwrap()
            .self_signed(&a)
            .unwrap();
        let err = Certificate::from_pem(
            cert.pem().as_bytes(),
            b.serialize_pem().as_bytes(),
            &provider(),
        )
        .unwrap_err();
        assert!(err.contains("does not belong"), "{err}");
    }

    #[test]
    fn cache_returns_the_same_object_for_the_same_pem() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["a.test".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let cache = CertificateCache::default();
        let (c, k) = (cert.pem(), key.serialize_pem());
        let first = cache.get(c.as_bytes(), k.as_bytes(), &provider()).unwrap();
        let second = cache.get(c.as_bytes(), k.as_bytes(), &provider()).unwrap();
        assert!(Arc::ptr_eq(&first, &second));
        cache.retain_used(&[]);
        let third = cache.get(c.as_bytes(), k.as_bytes(), &provider()).unwrap();
        assert!(!Arc::ptr_eq(&first, &third));
    }
}
