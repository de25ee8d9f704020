//! Sticky sessions: a cookie names the server (or child service) a client was sent to, so its
//! next requests go to the same place.
//!
//! Names and values follow Traefik v3, so clients moving between Traefik and Sluice keep their
//! session: the value is the first 16 hex digits of SHA-256 of the server URL or child service
//! name. Older Traefik values (the raw name, FNV-1 hex, FNV-1 of that hex) are accepted and
//! answered with a cookie in the current form.

use std::collections::HashMap;

use http::{header, HeaderMap, HeaderValue};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use sluice_config::dynamic::Cookie;

/// The sticky cookie of one balancer.
#[derive(Debug)]
pub struct StickyCookie {
    pub name: String,
    /// `; Path=/; ...` attributes appended to every Set-Cookie.
    attributes: String,
    /// Current-form value of each entry, by index.
    values: Vec<String>,
    /// Every accepted value -> (entry index, whether it is a legacy form to rewrite).
    accepted: HashMap<String, (usize, bool)>,
}

impl StickyCookie {
    /// `service` is the qualified name of the balancer (it seeds the default cookie name);
    /// `entries` are the handler names: server URLs, or child names as written in the config.
    pub fn new(config: &Cookie, service: &str, entries: &[String]) -> Self {
        let name = if config.name.is_empty() {
            default_name(service)
        } else {
            sanitize(&config.name)
        };
        let mut accepted = HashMap::new();
        let mut values = Vec::with_capacity(entries.len());
        for (index, entry) in entries.iter().enumerate() {
            let value = current_value(entry);
            let fnv = format!("{:x}", fnv1(entry.as_bytes()));
            let double = format!("{:x}", fnv1(fnv.as_bytes()));
            // Legacy forms first, so a collision never hides the current form.
            accepted.entry(entry.clone()).or_insert((index, true));
            accepted.entry(double).or_insert((index, true));
            accepted.entry(fnv).or_insert((index, true));
            accepted.insert(value.clone(), (index, false));
            values.push(value);
        }
        Self {
            name,
            attributes: attributes(config),
            values,
            accepted,
        }
    }

    /// The entry the request's cookie points to, and whether the cookie must be rewritten.
    pub fn lookup(&self, headers: &HeaderMap) -> Option<(usize, bool)> {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == self.name)
            .and_then(|(_, value)| self.accepted.get(value.trim_matches('"')).copied())
    }

    /// The Set-Cookie value pinning a client to entry `index`.
    pub fn set_cookie(&self, index: usize) -> Option<HeaderValue> {
        let value = self.values.get(index)?;
        HeaderValue::from_str(&format!("{}={value}{}", self.name, self.attributes)).ok()
    }
}

/// Traefik's default cookie name: `_` + 5 hex digits of SHA-1 of the qualified service name.
fn default_name(service: &str) -> String {
    let digest = Sha1::digest(format!("_TRAEFIK_BACKEND_{service}").as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("_{}", &hex[..5])
}

/// The v3 cookie value of an entry.
pub fn current_value(entry: &str) -> String {
    let digest = Sha256::digest(entry.as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Characters a cookie name may not hold become `_`.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "!#$%&'*+-.^`|~".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// FNV-1 (not 1a), 64 bits: what older Traefik versions used for cookie values.
fn fnv1(data: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in data {
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        hash ^= u64::from(*byte);
    }
    hash
}

/// Set-Cookie attributes in the order Go writes them.
fn attributes(config: &Cookie) -> String {
    let mut out = String::new();
    out.push_str("; Path=");
    out.push_str(
        config
            .path
            .as_deref()
            .filter(|p| !p.is_empty())
            .unwrap_or("/"),
    );
    if !config.domain.is_empty() {
        out.push_str("; Domain=");
        out.push_str(&config.domain);
    }
    if config.max_age > 0 {
        out.push_str(&format!("; Max-Age={}", config.max_age));
    } else if config.max_age < 0 {
        out.push_str("; Max-Age=0");
    }
    if config.http_only {
        out.push_str("; HttpOnly");
    }
    if config.secure {
        out.push_str("; Secure");
    }
    match config.same_site.to_ascii_lowercase().as_str() {
        "none" => out.push_str("; SameSite=None"),
        "lax" => out.push_str("; SameSite=Lax"),
        "strict" => out.push_str("; SameSite=Strict"),
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_names_match_traefik() {
        assert_eq!(current_value("http://10.10.0.1:80"), "30a57488489b105c");
        assert_eq!(current_value("default-whoami-80"), "3c7eb0accfc70196");
        assert_eq!(current_value("service1"), "e9c34be8fdc0142f");
        assert_eq!(default_name("whoami@file"), "_77b1f");
        assert_eq!(
            default_name("default-test-route-6b204d94623b3df4370c@kubernetescrd"),
            "_892d0"
        );
        assert_eq!(sanitize("my cookie;"), "my_cookie_");
    }

    #[test]
    fn legacy_values_are_accepted_and_rewritten() {
        let cookie = Cookie {
            name: "lvl1".into(),
            ..Default::default()
        };
        let sticky = StickyCookie::new(&cookie, "s@file", &["a".into(), "b".into()]);
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("other=1; lvl1=b"));
        assert_eq!(sticky.lookup(&headers), Some((1, true)));
        let current = format!("lvl1={}", current_value("b"));
        headers.insert(header::COOKIE, HeaderValue::from_str(&current).unwrap());
        assert_eq!(sticky.lookup(&headers), Some((1, false)));
        let fnv = format!("lvl1={:x}", fnv1(b"a"));
        headers.insert(header::COOKIE, HeaderValue::from_str(&fnv).unwrap());
        assert_eq!(sticky.lookup(&headers), Some((0, true)));
        headers.insert(header::COOKIE, HeaderValue::from_static("lvl1=unknown"));
        assert_eq!(sticky.lookup(&headers), None);
    }

    #[test]
    fn set_cookie_attributes_in_go_order() {
        let cookie = Cookie {
            name: "s".into(),
            secure: true,
            http_only: true,
            same_site: "LAX".into(),
            max_age: 60,
            path: Some("/app".into()),
            domain: "example.com".into(),
        };
        let sticky = StickyCookie::new(&cookie, "x@file", &["a".into()]);
        assert_eq!(
            sticky.set_cookie(0).unwrap(),
            format!(
                "s={}; Path=/app; Domain=example.com; Max-Age=60; HttpOnly; Secure; SameSite=Lax",
                current_value("a")
            )
            .as_str()
        );
        let negative = Cookie {
            max_age: -1,
            ..Default::default()
        };
        let sticky = StickyCookie::new(&negative, "x@file", &["a".into()]);
        assert!(sticky
            .set_cookie(0)
            .unwrap()
            .to_str()
            .unwrap()
            .ends_with("; Path=/; Max-Age=0"));
    }
}
