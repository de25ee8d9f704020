//! One resolver's settings, read from Traefik's static `certificatesResolvers.NAME.acme`.
//!
//! Field names, defaults and renewal timing follow Traefik v3
//! (`pkg/provider/acme/provider.go`, `provider_acme_renewal.go`).

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Map, Value};
use sluice_config::GoDuration;

/// Let's Encrypt's production directory, Traefik's default `caServer`.
pub const LETS_ENCRYPT_PRODUCTION: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// Settings of one ACME certificate resolver.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolverSettings {
    /// The resolver's name (the key under `certificatesResolvers`).
    pub name: String,
    /// Account contact address (`email`); empty means no contact.
    pub email: String,
    /// Directory URL of the ACME server (`caServer`).
    pub ca_server: String,
    /// Where the JSON store lives (`storage`), for [`crate::FileStorage`].
    pub storage: PathBuf,
    /// Private key type of issued certificates (`keyType`).
    pub key_type: KeyType,
    /// Expected lifetime of issued certificates (`certificatesDuration`, hours).
    pub certificates_duration: Duration,
    /// A certificate is renewed when it expires within this period.
    pub renew_before: Duration,
    /// How often certificates are checked for renewal.
    pub renew_interval: Duration,
    /// How the ACME server validates control of a domain.
    pub challenge: ChallengeKind,
    /// External account binding (`eab`).
    pub eab: Option<ExternalAccount>,
    /// PEM files trusted for the ACME server's HTTPS certificate (`caCertificates`).
    pub ca_certificates: Vec<PathBuf>,
    /// Also trust the usual public roots when `caCertificates` is set (`caSystemCertPool`).
    pub ca_system_cert_pool: bool,
    /// Name to verify the ACME server's certificate against (`caServerName`).
    pub ca_server_name: Option<String>,
    /// Issuer common name of the preferred alternate chain (`preferredChain`).
    pub preferred_chain: Option<String>,
    /// ACME profile requested for new orders (`profile`).
    pub profile: Option<String>,
    /// Timeout of a whole HTTP exchange with the ACME server (`clientTimeout`).
    pub client_timeout: Duration,
    /// Timeout for the response headers of the ACME server (`clientResponseHeaderTimeout`).
    pub client_response_header_timeout: Duration,
    /// Backoff after failed attempts. Not a Traefik setting: Sluice's own retry policy.
    pub retry: Backoff,
    /// How often a replica that is not the leader re-reads the storage the leader writes.
    pub follower_refresh: Duration,
}

/// How ownership of the domains is proven.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChallengeKind {
    /// HTTP-01, answered on the named entry point (`httpChallenge`).
    Http01 {
        /// Entry point that serves `/.well-known/acme-challenge/`.
        entry_point: String,
        /// Wait between publishing the answer and asking for validation (`httpChallenge.delay`).
        delay: Duration,
    },
    /// TLS-ALPN-01, answered during the TLS handshake (`tlsChallenge`).
    TlsAlpn01,
}

/// Key type of issued certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// ECDSA P-256.
    Ec256,
    /// ECDSA P-384.
    Ec384,
    /// RSA 2048 bits.
    Rsa2048,
    /// RSA 4096 bits (Traefik's default).
    Rsa4096,
}

impl KeyType {
    /// The value Traefik writes in the stored account's `KeyType` (lego's `certcrypto.KeyType`).
    pub fn lego_name(self) -> &'static str {
        match self {
            KeyType::Ec256 => "P256",
            KeyType::Ec384 => "P384",
            KeyType::Rsa2048 => "2048",
            KeyType::Rsa4096 => "4096",
        }
    }
}

/// External account binding credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct ExternalAccount {
    /// Key identifier given by the CA (`eab.kid`).
    pub kid: String,
    /// The decoded HMAC key (`eab.hmacEncoded`, base64url).
    pub hmac_key: Vec<u8>,
}

impl std::fmt::Debug for ExternalAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The HMAC key is a secret: keep it out of logs.
        f.debug_struct("ExternalAccount")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// Exponential backoff between failed attempts: `base`, doubling, capped at `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Wait after the first failure.
    pub base: Duration,
    /// Longest wait.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_secs(1),
            max: Duration::from_secs(3600),
        }
    }
}

impl Backoff {
    /// Wait after `failures` consecutive failures (1 = the first).
    pub fn delay(&self, failures: u32) -> Duration {
        let shift = failures.saturating_sub(1).min(31);
        self.base.saturating_mul(1u32 << shift).min(self.max)
    }
}

/// Why a resolver's settings were rejected. Every variant names the field path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// A field Traefik does not have.
    #[error("{path}: unknown field")]
    UnknownField {
        /// Full path of the field.
        path: String,
    },
    /// A field with a value of the wrong type or out of range.
    #[error("{path}: {reason}")]
    Invalid {
        /// Full path of the field.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A Traefik feature Sluice does not implement.
    #[error("{path}: not supported by Sluice: {reason}")]
    Unsupported {
        /// Full path of the field.
        path: String,
        /// What is missing.
        reason: String,
    },
}

/// Traefik's renewal timing: (renew when expiring within, check every), from the
/// configured certificate lifetime in hours (`getCertificateRenewDurations`).
pub fn renew_durations(certificates_duration_hours: u64) -> (Duration, Duration) {
    const HOUR: u64 = 3600;
    const DAY: u64 = 24 * HOUR;
    let h = |n: u64| Duration::from_secs(n * HOUR);
    let d = |n: u64| Duration::from_secs(n * DAY);
    match certificates_duration_hours {
        x if x >= 365 * 24 => (d(4 * 30), d(7)),
        x if x >= 3 * 30 * 24 => (d(30), d(1)),
        x if x >= 30 * 24 => (d(10), h(12)),
        x if x >= 6 * 24 => (d(2), h(2)),
        x if x >= 24 => (h(6), Duration::from_secs(10 * 60)),
        _ => (Duration::from_secs(20 * 60), Duration::from_secs(60)),
    }
}

impl ResolverSettings {
    /// Reads Traefik's `certificatesResolvers.<name>.acme` object.
    pub fn from_traefik(name: &str, acme: &Value) -> Result<ResolverSettings, SettingsError> {
        let base = format!("certificatesResolvers.{name}.acme");
        let empty = Map::new();
        let object = match acme {
            Value::Object(map) => map,
            Value::Null => &empty,
            _ => return Err(invalid(&base, "must be an object")),
        };

        let mut email = String::new();
        let mut ca_server = LETS_ENCRYPT_PRODUCTION.to_owned();
        let mut storage = PathBuf::from("acme.json");
        let mut key_type = KeyType::Rsa4096;
        let mut duration_hours: u64 = 3 * 30 * 24;
        let mut http = None;
        let mut tls = false;
        let mut eab = None;
        let mut ca_certificates = Vec::new();
        let mut ca_system_cert_pool = false;
        let mut ca_server_name = None;
        let mut preferred_chain = None;
        let mut profile = None;
        let mut client_timeout = Duration::from_secs(120);
        let mut client_response_header_timeout = Duration::from_secs(30);

        for (key, value) in object {
            let path = format!("{base}.{key}");
            match key.to_ascii_lowercase().as_str() {
                "email" => email = string(&path, value)?,
                "caserver" => {
                    let text = string(&path, value)?;
                    if !text.is_empty() {
                        ca_server = text;
                    }
                }
                "storage" => {
                    let text = string(&path, value)?;
                    if !text.is_empty() {
                        storage = PathBuf::from(text);
                    }
                }
                "keytype" => key_type = parse_key_type(&path, &string(&path, value)?)?,
                "certificatesduration" => duration_hours = positive_hours(&path, value)?,
                "httpchallenge" => http = Some(parse_http_challenge(&path, value)?),
                "tlschallenge" => {
                    tls = match value {
                        // The flag form `--certificatesResolvers.NAME.acme.tlsChallenge=true`.
                        Value::Bool(_) | Value::String(_) => boolean(&path, value)?,
                        _ => {
                            fields(&path, value, &[])?;
                            true
                        }
                    }
                }
                "dnschallenge" => {
                    if !value.is_null() {
                        return Err(unsupported(
                            &path,
                            "DNS-01 challenges need DNS provider plugins; use httpChallenge or tlsChallenge",
                        ));
                    }
                }
                "eab" => eab = parse_eab(&path, value)?,
                "cacertificates" => {
                    ca_certificates = strings(&path, value)?
                        .into_iter()
                        .map(PathBuf::from)
                        .collect()
                }
                "casystemcertpool" => ca_system_cert_pool = boolean(&path, value)?,
                "caservername" => ca_server_name = non_empty(string(&path, value)?),
                "preferredchain" => preferred_chain = non_empty(string(&path, value)?),
                "profile" => profile = non_empty(string(&path, value)?),
                "clienttimeout" => client_timeout = duration(&path, value)?,
                "clientresponseheadertimeout" => {
                    client_response_header_timeout = duration(&path, value)?
                }
                "emailaddresses" => {
                    if !strings(&path, value)?.is_empty() {
                        return Err(unsupported(&path, "e-mail addresses in the CSR"));
                    }
                }
                _ => return Err(SettingsError::UnknownField { path }),
            }
        }

        if client_timeout < client_response_header_timeout {
            return Err(invalid(
                &format!("{base}.clientTimeout"),
                "must be at least clientResponseHeaderTimeout",
            ));
        }
        // Traefik registers every configured challenge with lego, which then prefers
        // TLS-ALPN-01 over HTTP-01; Sluice keeps that preference.
        let challenge = match (tls, http) {
            (true, _) => ChallengeKind::TlsAlpn01,
            (false, Some(http)) => http,
            (false, None) => {
                return Err(invalid(
                    &base,
                    "no challenge configured: set httpChallenge.entryPoint or tlsChallenge",
                ))
            }
        };
        let (renew_before, renew_interval) = renew_durations(duration_hours);
        Ok(ResolverSettings {
            name: name.to_owned(),
            email,
            ca_server,
            storage,
            key_type,
            certificates_duration: Duration::from_secs(duration_hours.saturating_mul(3600)),
            renew_before,
            renew_interval,
            challenge,
            eab,
            ca_certificates,
            ca_system_cert_pool,
            ca_server_name,
            preferred_chain,
            profile,
            client_timeout,
            client_response_header_timeout,
            retry: Backoff::default(),
            follower_refresh: Duration::from_secs(10),
        })
    }
}

fn invalid(path: &str, reason: &str) -> SettingsError {
    SettingsError::Invalid {
        path: path.to_owned(),
        reason: reason.to_owned(),
    }
}

fn unsupported(path: &str, reason: &str) -> SettingsError {
    SettingsError::Unsupported {
        path: path.to_owned(),
        reason: reason.to_owned(),
    }
}

fn non_empty(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

fn string(path: &str, value: &Value) -> Result<String, SettingsError> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Null => Ok(String::new()),
        _ => Err(invalid(path, "must be a string")),
    }
}

fn boolean(path: &str, value: &Value) -> Result<bool, SettingsError> {
    match value {
        Value::Bool(b) => Ok(*b),
        Value::Null => Ok(false),
        // Static configuration from flags or environment variables arrives as text.
        Value::String(s) => s
            .parse::<bool>()
            .map_err(|_| invalid(path, "must be true or false")),
        _ => Err(invalid(path, "must be true or false")),
    }
}

fn strings(path: &str, value: &Value) -> Result<Vec<String>, SettingsError> {
    match value {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| string(&format!("{path}[{i}]"), item))
            .collect(),
        // Traefik's flag syntax gives lists as comma-separated text.
        Value::String(s) => Ok(s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()),
        _ => Err(invalid(path, "must be a list of strings")),
    }
}

fn positive_hours(path: &str, value: &Value) -> Result<u64, SettingsError> {
    let hours = match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    }
    .ok_or_else(|| invalid(path, "must be a whole number of hours"))?;
    if hours < 1 {
        return Err(invalid(
            path,
            "cannot manage certificates with a duration below 1 hour",
        ));
    }
    Ok(hours.unsigned_abs())
}

fn duration(path: &str, value: &Value) -> Result<Duration, SettingsError> {
    let text = match value {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        _ => return Err(invalid(path, "must be a duration such as \"30s\"")),
    };
    GoDuration::parse_traefik(&text)
        .map_err(|e| invalid(path, &e.to_string()))?
        .as_std()
        .ok_or_else(|| invalid(path, "must not be negative"))
}

/// Checks that `value` is an object (or empty) holding only `known` fields.
fn fields<'a>(
    path: &str,
    value: &'a Value,
    known: &[&str],
) -> Result<Vec<(String, &'a Value)>, SettingsError> {
    match value {
        Value::Null => Ok(Vec::new()),
        Value::Object(map) => map
            .iter()
            .map(|(key, value)| {
                let lower = key.to_ascii_lowercase();
                if known.iter().any(|k| k.to_ascii_lowercase() == lower) {
                    Ok((lower, value))
                } else {
                    Err(SettingsError::UnknownField {
                        path: format!("{path}.{key}"),
                    })
                }
            })
            .collect(),
        _ => Err(invalid(path, "must be an object")),
    }
}

fn parse_key_type(path: &str, text: &str) -> Result<KeyType, SettingsError> {
    match text {
        // Traefik logs and falls back to RSA4096 for an empty value.
        "" | "RSA4096" => Ok(KeyType::Rsa4096),
        "EC256" => Ok(KeyType::Ec256),
        "EC384" => Ok(KeyType::Ec384),
        "RSA2048" => Ok(KeyType::Rsa2048),
        "RSA8192" => Err(unsupported(
            path,
            "RSA8192 keys cannot be generated here (rcgen/aws-lc-rs stop at 4096 bits); use RSA4096, RSA2048, EC384 or EC256",
        )),
        other => Err(invalid(
            path,
            &format!("unknown key type {other:?}; expected EC256, EC384, RSA2048, RSA4096 or RSA8192"),
        )),
    }
}

fn parse_http_challenge(path: &str, value: &Value) -> Result<ChallengeKind, SettingsError> {
    let mut entry_point = String::new();
    let mut delay = Duration::ZERO;
    for (key, value) in fields(path, value, &["entryPoint", "delay"])? {
        let field = format!("{path}.{key}");
        match key.as_str() {
            "entrypoint" => entry_point = string(&field, value)?,
            _ => delay = duration(&field, value)?,
        }
    }
    if entry_point.is_empty() {
        return Err(invalid(
            &format!("{path}.entryPoint"),
            "required: the entry point that answers HTTP-01 challenges",
        ));
    }
    Ok(ChallengeKind::Http01 { entry_point, delay })
}

fn parse_eab(path: &str, value: &Value) -> Result<Option<ExternalAccount>, SettingsError> {
    let mut kid = String::new();
    let mut hmac = String::new();
    for (key, value) in fields(path, value, &["kid", "hmacEncoded"])? {
        let field = format!("{path}.{key}");
        match key.as_str() {
            "kid" => kid = string(&field, value)?,
            _ => hmac = string(&field, value)?,
        }
    }
    if kid.is_empty() && hmac.is_empty() {
        return Ok(None);
    }
    if kid.is_empty() || hmac.is_empty() {
        return Err(invalid(path, "both kid and hmacEncoded are required"));
    }
    let hmac_key = decode_base64(&hmac).ok_or_else(|| {
        invalid(
            &format!("{path}.hmacEncoded"),
            "must be base64url (or base64) encoded",
        )
    })?;
    Ok(Some(ExternalAccount { kid, hmac_key }))
}

fn decode_base64(text: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
    use base64::Engine;
    let text = text.trim();
    URL_SAFE_NO_PAD
        .decode(text)
        .or_else(|_| URL_SAFE.decode(text))
        .or_else(|_| STANDARD.decode(text))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_follow_traefik() {
        let s = ResolverSettings::from_traefik("le", &json!({"tlsChallenge": {}})).unwrap();
        assert_eq!(s.ca_server, LETS_ENCRYPT_PRODUCTION);
        assert_eq!(s.storage, PathBuf::from("acme.json"));
        assert_eq!(s.key_type, KeyType::Rsa4096);
        assert_eq!(s.certificates_duration, Duration::from_secs(2160 * 3600));
        assert_eq!(s.renew_before, Duration::from_secs(30 * 86400));
        assert_eq!(s.renew_interval, Duration::from_secs(86400));
        assert_eq!(s.challenge, ChallengeKind::TlsAlpn01);
        assert_eq!(s.client_timeout, Duration::from_secs(120));
    }

    #[test]
    fn tls_challenge_from_a_flag_is_a_boolean() {
        let on = ResolverSettings::from_traefik("le", &json!({"tlsChallenge": true})).unwrap();
        assert_eq!(on.challenge, ChallengeKind::TlsAlpn01);
        let text = ResolverSettings::from_traefik("le", &json!({"tlsChallenge": "true"})).unwrap();
        assert_eq!(text.challenge, ChallengeKind::TlsAlpn01);
        let off = ResolverSettings::from_traefik(
            "le",
            &json!({"tlsChallenge": false, "httpChallenge": {"entryPoint": "web"}}),
        )
        .unwrap();
        assert!(matches!(off.challenge, ChallengeKind::Http01 { .. }));
        let err =
            ResolverSettings::from_traefik("le", &json!({"tlsChallenge": "yes"})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "certificatesResolvers.le.acme.tlsChallenge: must be true or false"
        );
    }

    #[test]
    fn reads_every_field() {
        let s = ResolverSettings::from_traefik(
            "pebble",
            &json!({
                "email": "ops@example.com",
                "caServer": "https://127.0.0.1:14000/dir",
                "storage": "/data/acme.json",
                "keyType": "EC384",
                "certificatesDuration": "24",
                "httpChallenge": {"entryPoint": "web", "delay": "2s"},
                "eab": {"kid": "kid-1", "hmacEncoded": "aGVsbG8"},
                "caCertificates": ["/ca.pem"],
                "caServerName": "pebble",
                "preferredChain": "ISRG Root X1",
                "profile": "shortlived",
                "clientTimeout": 60,
                "clientResponseHeaderTimeout": "10s"
            }),
        )
        .unwrap();
        assert_eq!(s.email, "ops@example.com");
        assert_eq!(s.key_type, KeyType::Ec384);
        assert_eq!(
            s.challenge,
            ChallengeKind::Http01 {
                entry_point: "web".into(),
                delay: Duration::from_secs(2)
            }
        );
        assert_eq!(s.eab.as_ref().unwrap().hmac_key, b"hello");
        assert_eq!(s.renew_before, Duration::from_secs(6 * 3600));
        assert_eq!(s.renew_interval, Duration::from_secs(600));
        assert_eq!(s.ca_certificates, vec![PathBuf::from("/ca.pem")]);
        assert_eq!(s.ca_server_name.as_deref(), Some("pebble"));
        assert_eq!(s.profile.as_deref(), Some("shortlived"));
        assert_eq!(s.client_timeout, Duration::from_secs(60));
    }

    #[test]
    fn errors_name_the_field() {
        let err = |v: Value| {
            ResolverSettings::from_traefik("le", &v)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err(json!({"tlsChallenge": {}, "caServr": "x"})),
            "certificatesResolvers.le.acme.caServr: unknown field"
        );
        assert_eq!(
            err(json!({"httpChallenge": {"entryPoint": "web", "port": 80}})),
            "certificatesResolvers.le.acme.httpChallenge.port: unknown field"
        );
        assert!(err(json!({"dnsChallenge": {"provider": "route53"}}))
            .starts_with("certificatesResolvers.le.acme.dnsChallenge: not supported"));
        assert!(err(json!({"tlsChallenge": {}, "keyType": "RSA8192"}))
            .starts_with("certificatesResolvers.le.acme.keyType: not supported"));
        assert!(
            err(json!({"tlsChallenge": {}, "keyType": "DSA"})).contains("unknown key type \"DSA\"")
        );
        assert!(err(json!({"tlsChallenge": {}, "certificatesDuration": 0}))
            .starts_with("certificatesResolvers.le.acme.certificatesDuration:"));
        assert!(err(json!({"email": "a@b"})).contains("no challenge configured"));
        assert!(err(json!({"httpChallenge": {}})).contains("httpChallenge.entryPoint: required"));
        assert!(err(json!({"tlsChallenge": {}, "eab": {"kid": "k"}})).contains("eab: both"));
    }

    #[test]
    fn renewal_table_matches_traefik() {
        let days = |n: u64| Duration::from_secs(n * 86400);
        assert_eq!(renew_durations(365 * 24).0, days(120));
        assert_eq!(renew_durations(2160), (days(30), days(1)));
        assert_eq!(renew_durations(30 * 24).0, days(10));
        assert_eq!(renew_durations(7 * 24).0, days(2));
        assert_eq!(renew_durations(23).0, Duration::from_secs(1200));
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let b = Backoff::default();
        assert_eq!(b.delay(1), Duration::from_secs(1));
        assert_eq!(b.delay(2), Duration::from_secs(2));
        assert_eq!(b.delay(5), Duration::from_secs(16));
        assert_eq!(b.delay(40), Duration::from_secs(3600));
    }
}
