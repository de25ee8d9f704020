//! The dynamic configuration's `tls` section and a router's `tls` block, typed with Traefik's
//! field names. Parsing is strict: an unknown field is an error naming its path.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

/// The `tls` section of a dynamic configuration.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct TlsSection {
    /// Certificates added to the stores (all to `default` when `stores` is empty).
    #[serde(deserialize_with = "null_default")]
    pub certificates: Vec<CertificateConfig>,
    /// Named TLS options; `default` is used by routers naming none.
    #[serde(deserialize_with = "null_default")]
    pub options: BTreeMap<String, OptionsConfig>,
    /// Certificate stores; only `default` is used (as in Traefik).
    #[serde(deserialize_with = "null_default")]
    pub stores: BTreeMap<String, StoreConfig>,
}

/// One certificate: `certFile` and `keyFile`, each a path or the PEM text itself.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct CertificateConfig {
    pub cert_file: String,
    pub key_file: String,
    #[serde(deserialize_with = "null_default")]
    pub stores: Vec<String>,
}

/// A certificate store.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct StoreConfig {
    /// Served when no certificate matches the SNI.
    pub default_certificate: Option<CertificateConfig>,
    /// Take the default certificate from an ACME resolver for these domains.
    pub default_generated_cert: Option<GeneratedCert>,
}

/// `defaultGeneratedCert`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct GeneratedCert {
    pub resolver: String,
    pub domain: Option<Domain>,
}

/// A certificate's domains: `main` and its `sans`.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Domain {
    pub main: String,
    #[serde(deserialize_with = "null_default")]
    pub sans: Vec<String>,
}

/// Named TLS options.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct OptionsConfig {
    /// `VersionTLS10` … `VersionTLS13`; default TLS 1.2.
    pub min_version: String,
    pub max_version: String,
    /// Go cipher suite names; applies to TLS 1.2 (TLS 1.3 suites are not configurable, as in Go).
    #[serde(deserialize_with = "null_default")]
    pub cipher_suites: Vec<String>,
    #[serde(deserialize_with = "null_default")]
    pub curve_preferences: Vec<String>,
    pub client_auth: ClientAuthConfig,
    pub sni_strict: bool,
    /// Accepted and ignored, as in Traefik v3 (Go picks the order).
    pub prefer_server_cipher_suites: bool,
    #[serde(deserialize_with = "null_default")]
    pub alpn_protocols: Vec<String>,
    pub disable_session_tickets: bool,
}

/// `clientAuth`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct ClientAuthConfig {
    /// CA certificates (paths or PEM text) that client certificates must chain to.
    #[serde(deserialize_with = "null_default")]
    pub ca_files: Vec<String>,
    /// `NoClientCert`, `RequestClientCert`, `RequireAnyClientCert`, `VerifyClientCertIfGiven`,
    /// `RequireAndVerifyClientCert`; empty = the last one when CAs are given, else none.
    pub client_auth_type: String,
}

/// A router's `tls` block.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct RouterTls {
    /// TLS options name (qualified, or `default`); empty = `default`.
    pub options: String,
    /// ACME resolver obtaining certificates for this router's domains.
    pub cert_resolver: String,
    /// Domains to obtain certificates for; empty = the router's Host values.
    #[serde(deserialize_with = "null_default")]
    pub domains: Vec<Domain>,
}

fn null_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// Decodes a value, naming the path of the offending field on error (`options.x.sniStrict: …`).
pub fn decode<T: for<'de> Deserialize<'de>>(value: &Value) -> Result<T, String> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            e.inner().to_string()
        } else {
            format!("{path}: {}", e.inner())
        }
    })
}

/// Reads a Traefik "file or content" value: PEM text is used as is, anything else is a path.
pub fn file_or_content(value: &str) -> Result<Vec<u8>, String> {
    if value.trim_start().starts_with("-----BEGIN") {
        return Ok(value.as_bytes().to_vec());
    }
    if value.is_empty() {
        return Err("empty (neither a path nor PEM text)".into());
    }
    std::fs::read(Path::new(value)).map_err(|e| format!("cannot read `{value}`: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn traefik_section_decodes() {
        let section: TlsSection = decode(&json!({
            "certificates": [{"certFile": "a.pem", "keyFile": "a.key", "stores": ["default"]}],
            "options": {"default": {"minVersion": "VersionTLS12", "sniStrict": true,
                "clientAuth": {"caFiles": ["ca.pem"], "clientAuthType": "RequireAndVerifyClientCert"}}},
            "stores": {"default": {"defaultCertificate": {"certFile": "d.pem", "keyFile": "d.key"}}}
        }))
        .unwrap();
        assert_eq!(section.certificates[0].cert_file, "a.pem");
        assert!(section.options["default"].sni_strict);
        assert_eq!(
            section.options["default"].client_auth.ca_files,
            vec!["ca.pem"]
        );
        assert!(section.stores["default"].default_certificate.is_some());
    }

    #[test]
    fn unknown_fields_name_their_path() {
        let err =
            decode::<TlsSection>(&json!({"options": {"x": {"sniStrikt": true}}})).unwrap_err();
        assert!(err.starts_with("options.x"), "{err}");
        assert!(err.contains("sniStrikt"), "{err}");
    }

    #[test]
    fn pem_text_is_content_and_other_text_a_path() {
        assert_eq!(
            file_or_content("-----BEGIN CERTIFICATE-----\n").unwrap(),
            b"-----BEGIN CERTIFICATE-----\n"
        );
        let err = file_or_content("/nonexistent/cert.pem").unwrap_err();
        assert!(err.contains("/nonexistent/cert.pem"), "{err}");
    }
}
