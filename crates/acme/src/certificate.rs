//! Certificates a resolver obtains, and the domain sets they are for.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// A set of names for one certificate: Traefik's `types.Domain` (`tls.domains[]`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
pub struct Domains {
    /// The main name (the certificate's common name).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub main: String,
    /// Further names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sans: Vec<String>,
}

impl Domains {
    /// A set with only a main name.
    pub fn new(main: impl Into<String>) -> Domains {
        Domains {
            main: main.into(),
            sans: Vec::new(),
        }
    }

    /// Main first, then the SANs, lower-cased, without duplicates or empty names.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::with_capacity(1 + self.sans.len());
        for name in std::iter::once(&self.main).chain(&self.sans) {
            let name = name.trim().trim_end_matches('.').to_ascii_lowercase();
            if !name.is_empty() && !names.contains(&name) {
                names.push(name);
            }
        }
        names
    }

    /// True when every name of `wanted` is one of these names or matched by one of
    /// these wildcards (`*.example.com` covers exactly one label).
    pub fn covers(&self, wanted: &Domains) -> bool {
        let have = self.names();
        wanted
            .names()
            .iter()
            .all(|name| have.iter().any(|h| name_matches(h, name)))
    }
}

fn name_matches(pattern: &str, name: &str) -> bool {
    if pattern == name {
        return true;
    }
    match (pattern.strip_prefix("*."), name.split_once('.')) {
        (Some(suffix), Some((label, rest))) => !label.is_empty() && rest == suffix,
        _ => false,
    }
}

/// A certificate with its key, as the TLS layer needs it.
#[derive(Clone, PartialEq, Eq)]
pub struct Certificate {
    /// The names it was requested for.
    pub domains: Domains,
    /// PEM chain, leaf first.
    pub chain_pem: String,
    /// PEM private key.
    pub key_pem: String,
    /// End of the leaf's validity.
    pub not_after: SystemTime,
}

impl std::fmt::Debug for Certificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key is a secret: keep it out of logs.
        f.debug_struct("Certificate")
            .field("domains", &self.domains)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// Why PEM data is not a usable certificate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    /// No `CERTIFICATE` block in the chain.
    #[error("no PEM certificate found")]
    NoCertificate,
    /// The leaf is not a parsable X.509 certificate.
    #[error("leaf certificate cannot be parsed: {0}")]
    Parse(String),
    /// No private key in the key PEM.
    #[error("no PEM private key found")]
    NoKey,
}

impl Certificate {
    /// Builds a certificate from PEM text, reading the leaf's expiry.
    pub fn from_pem(
        domains: Domains,
        chain_pem: String,
        key_pem: String,
    ) -> Result<Certificate, CertificateError> {
        let not_after = leaf_not_after(&chain_pem)?;
        if !key_pem.contains("PRIVATE KEY-----") {
            return Err(CertificateError::NoKey);
        }
        Ok(Certificate {
            domains,
            chain_pem,
            key_pem,
            not_after,
        })
    }

    /// Time left before expiry (zero once expired).
    pub fn remaining(&self, now: SystemTime) -> Duration {
        self.not_after.duration_since(now).unwrap_or(Duration::ZERO)
    }
}

fn leaf_not_after(chain_pem: &str) -> Result<SystemTime, CertificateError> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(chain_pem.as_bytes())
        .map_err(|_| CertificateError::NoCertificate)?;
    if pem.label != "CERTIFICATE" {
        return Err(CertificateError::NoCertificate);
    }
    let cert = pem
        .parse_x509()
        .map_err(|e| CertificateError::Parse(e.to_string()))?;
    let seconds = cert.validity().not_after.timestamp();
    Ok(match u64::try_from(seconds) {
        Ok(s) => UNIX_EPOCH + Duration::from_secs(s),
        Err(_) => UNIX_EPOCH,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coverage_handles_case_duplicates_and_wildcards() {
        let cert = Domains {
            main: "Example.com".into(),
            sans: vec!["*.example.com".into()],
        };
        assert!(cert.covers(&Domains::new("example.com")));
        assert!(cert.covers(&Domains {
            main: "www.example.com".into(),
            sans: vec!["api.example.com".into(), "EXAMPLE.com.".into()],
        }));
        assert!(!cert.covers(&Domains::new("a.b.example.com")));
        assert!(!cert.covers(&Domains::new("example.org")));
        assert_eq!(
            Domains {
                main: "a.io".into(),
                sans: vec!["A.io".into(), "b.io".into(), "".into()]
            }
            .names(),
            vec!["a.io", "b.io"]
        );
    }

    #[test]
    fn reads_expiry_from_pem() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["x.test".to_owned()]).unwrap();
        params.not_after = rcgen::date_time_ymd(2031, 5, 6);
        let cert = params.self_signed(&key).unwrap();
        let c =
            Certificate::from_pem(Domains::new("x.test"), cert.pem(), key.serialize_pem()).unwrap();
        let secs = c.not_after.duration_since(UNIX_EPOCH).unwrap().as_secs();
        assert_eq!(secs, 1_935_792_000); // 2031-05-06T00:00:00Z
        assert_eq!(
            Certificate::from_pem(Domains::new("x"), "junk".into(), key.serialize_pem()),
            Err(CertificateError::NoCertificate)
        );
        assert_eq!(
            Certificate::from_pem(Domains::new("x"), cert.pem(), "junk".into()),
            Err(CertificateError::NoKey)
        );
    }
}
