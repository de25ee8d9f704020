//! Names Traefik's CRD provider gives to generated elements.

use sha2::{Digest, Sha256};

/// Traefik's `provider.Normalize`: every run of characters that are not
/// letters or digits becomes one `-`; leading and trailing runs vanish.
pub fn normalize(name: &str) -> String {
    name.split(|c: char| !(c.is_alphabetic() || c.is_numeric()))
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}

/// `ns-name`, or `name` when the namespace is empty.
pub fn make_id(namespace: &str, name: &str) -> String {
    if namespace.is_empty() {
        name.to_string()
    } else {
        format!("{namespace}-{name}")
    }
}

/// `name-<hex of the first 10 bytes of SHA-256(rule)>` (the "service key"
/// Traefik derives router names from).
pub fn service_key(rule: &str, ingress_name: &str) -> String {
    let digest = Sha256::digest(rule.as_bytes());
    let hex: String = digest.iter().take(10).map(|b| format!("{b:02x}")).collect();
    format!("{ingress_name}-{hex}")
}

/// The HTTP router key of a route: `Normalize(ns-name-<20 hex>)`.
pub fn router_key(namespace: &str, ingress_name: &str, rule: &str) -> String {
    normalize(&make_id(namespace, &service_key(rule, ingress_name)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_like_traefik() {
        assert_eq!(normalize("test.route"), "test-route");
        assert_eq!(normalize("a--b"), "a-b");
        assert_eq!(normalize("-.a_b.-"), "a-b");
        assert_eq!(normalize("default-whoami-80"), "default-whoami-80");
        assert_eq!(normalize("héllo wörld"), "héllo-wörld");
        assert_eq!(normalize(""), "");
    }

    #[test]
    fn router_key_hash() {
        assert_eq!(
            router_key(
                "default",
                "test.route",
                "Host(`foo.com`) && PathPrefix(`/bar`)"
            ),
            "default-test-route-6b204d94623b3df4370c"
        );
        assert_eq!(make_id("", "x"), "x");
    }
}
