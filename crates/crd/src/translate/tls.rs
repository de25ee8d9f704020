//! TLS: certificates from Secrets, TLSOption and TLSStore objects.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};
use sluice_config::Diagnostic;

use crate::names::make_id;
use crate::store::Store;
use crate::types::Secret;

use super::located_diag;

/// Go's `tls.CipherSuites()` names: Traefik's default cipher list.
pub const DEFAULT_CIPHER_SUITES: [&str; 13] = [
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
];

/// Traefik's default ALPN protocols.
pub const DEFAULT_ALPN: [&str; 3] = ["h2", "http/1.1", "acme-tls/1"];

/// Certificates collected from Secrets, keyed `ns/secret` (each loaded
/// once; output sorted by key, as Traefik does).
#[derive(Default)]
pub struct Certificates {
    by_key: BTreeMap<String, Value>,
}

impl Certificates {
    /// Loads `ns/secret` unless already loaded; `store` names the TLS
    /// store it belongs to (none = default store).
    pub fn add_secret(
        &mut self,
        store: &Store<'_>,
        ns: &str,
        secret: &str,
        tls_store: Option<&str>,
    ) -> Result<(), String> {
        self.add_loaded(ns, secret, tls_store, || {
            certificate_blocks(store, ns, secret)
        })
    }

    /// [`Certificates::add_secret`] with the Secret's certificate and key from `load`, called
    /// only when `ns/secret` is not loaded yet.
    pub fn add_loaded(
        &mut self,
        ns: &str,
        secret: &str,
        tls_store: Option<&str>,
        load: impl FnOnce() -> Result<(String, String), String>,
    ) -> Result<(), String> {
        let key = format!("{ns}/{secret}");
        if self.by_key.contains_key(&key) {
            return Ok(());
        }
        let (cert, private) = load()?;
        let mut o = Map::new();
        o.insert("certFile".into(), json!(cert));
        o.insert("keyFile".into(), json!(private));
        if let Some(s) = tls_store {
            o.insert("stores".into(), json!([s]));
        }
        self.by_key.insert(key, Value::Object(o));
        Ok(())
    }

    /// The certificate list, sorted by `ns/secret`.
    pub fn into_list(self) -> Vec<Value> {
        self.by_key.into_values().collect()
    }
}

fn get_secret<'a>(store: &Store<'a>, ns: &str, name: &str) -> Result<&'a Secret, String> {
    store
        .secret(ns, name)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("secret {ns}/{name} does not exist"))
}

/// `tls.crt` and `tls.key` of a Secret.
pub fn certificate_blocks(
    store: &Store<'_>,
    ns: &str,
    name: &str,
) -> Result<(String, String), String> {
    let secret = get_secret(store, ns, name)?;
    let crt = secret.value("tls.crt");
    let key = secret.value("tls.key");
    let missing: Vec<&str> = [("tls.crt", &crt), ("tls.key", &key)]
        .iter()
        .filter(|(_, v)| v.is_none())
        .map(|(k, _)| *k)
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "secret {ns}/{name} is missing the following TLS data entries: {}",
            missing.join(", ")
        ));
    }
    let crt = crt.unwrap_or_default();
    let key = key.unwrap_or_default();
    let empty: Vec<&str> = [("tls.crt", &crt), ("tls.key", &key)]
        .iter()
        .filter(|(_, v)| v.is_empty())
        .map(|(k, _)| *k)
        .collect();
    if !empty.is_empty() {
        return Err(format!(
            "secret {ns}/{name} contains the following empty TLS data entries: {}",
            empty.join(", ")
        ));
    }
    Ok((crt, key))
}

/// The CA of a Secret: `tls.ca`, else `ca.crt`.
pub fn ca_from_secret(store: &Store<'_>, ns: &str, name: &str) -> Result<String, String> {
    let secret = get_secret(store, ns, name)?;
    secret
        .value("tls.ca")
        .or_else(|| secret.value("ca.crt"))
        .ok_or_else(|| format!("secret {ns}/{name} contains neither tls.ca nor ca.crt"))
}

/// The CA of a Secret for a transport: like [`ca_from_secret`], but a
/// Secret with a single entry is used whatever its key (Traefik keeps
/// this for compatibility).
pub fn ca_from_secret_lenient(store: &Store<'_>, ns: &str, name: &str) -> Result<String, String> {
    match ca_from_secret(store, ns, name) {
        Ok(ca) => Ok(ca),
        Err(e) => {
            let secret = get_secret(store, ns, name)?;
            if secret.data.len() + secret.string_data.len() == 1 {
                if let Some(k) = secret.data.keys().chain(secret.string_data.keys()).next() {
                    if let Some(v) = secret.value(k) {
                        return Ok(v);
                    }
                }
            }
            Err(e)
        }
    }
}

/// The CA of a ConfigMap: `tls.ca`, else `ca.crt`.
pub fn ca_from_config_map(store: &Store<'_>, ns: &str, name: &str) -> Result<String, String> {
    let cm = store
        .config_map(ns, name)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("config map {ns}/{name} does not exist"))?;
    cm.data
        .get("tls.ca")
        .or_else(|| cm.data.get("ca.crt"))
        .cloned()
        .ok_or_else(|| format!("config map {ns}/{name} contains neither tls.ca nor ca.crt"))
}

/// A client certificate pair from a Secret.
pub fn auth_tls_secret(
    store: &Store<'_>,
    ns: &str,
    name: &str,
) -> Result<(String, String), String> {
    certificate_blocks(store, ns, name)
}

/// TLSOption objects -> `tls.options`.
pub fn build_tls_options(
    store: &Store<'_>,
    diags: &mut Vec<Diagnostic>,
) -> BTreeMap<String, Value> {
    let mut options = BTreeMap::new();
    let mut default_namespaces = Vec::new();
    for item in &store.tls_options {
        let o = item.obj;
        let ns = o.metadata.ns();
        let mut cas = Vec::new();
        for (i, secret) in o.spec.client_auth.secret_names.iter().enumerate() {
            match ca_from_secret(store, ns, secret) {
                Ok(ca) => cas.push(ca),
                Err(e) => diags.push(
                    located_diag(
                        item.manifest,
                        &format!("spec.clientAuth.secretNames[{i}]"),
                        format!("{e}; this CA is skipped"),
                    )
                    .with_resource(item.manifest.resource()),
                ),
            }
        }
        let mut id = make_id(ns, &o.metadata.name);
        if o.metadata.name == "default" {
            id = "default".to_string();
            default_namespaces.push(ns.to_string());
        }
        let mut out = Map::new();
        let s = &o.spec;
        if !s.min_version.is_empty() {
            out.insert("minVersion".into(), json!(s.min_version));
        }
        if !s.max_version.is_empty() {
            out.insert("maxVersion".into(), json!(s.max_version));
        }
        let ciphers: Vec<String> = match &s.cipher_suites {
            Some(c) => c.clone(),
            None => DEFAULT_CIPHER_SUITES
                .iter()
                .map(|c| c.to_string())
                .collect(),
        };
        if !ciphers.is_empty() {
            out.insert("cipherSuites".into(), json!(ciphers));
        }
        if !s.curve_preferences.is_empty() {
            out.insert("curvePreferences".into(), json!(s.curve_preferences));
        }
        let mut ca = Map::new();
        if !cas.is_empty() {
            ca.insert("caFiles".into(), json!(cas));
        }
        if !s.client_auth.client_auth_type.is_empty() {
            ca.insert(
                "clientAuthType".into(),
                json!(s.client_auth.client_auth_type),
            );
        }
        out.insert("clientAuth".into(), Value::Object(ca));
        if s.sni_strict {
            out.insert("sniStrict".into(), json!(true));
        }
        let alpn: Vec<String> = match &s.alpn_protocols {
            Some(a) => a.clone(),
            None => DEFAULT_ALPN.iter().map(|c| c.to_string()).collect(),
        };
        if !alpn.is_empty() {
            out.insert("alpnProtocols".into(), json!(alpn));
        }
        if s.disable_session_tickets {
            out.insert("disableSessionTickets".into(), json!(true));
        }
        options.insert(id, Value::Object(out));
    }
    if default_namespaces.len() > 1 {
        options.remove("default");
        diags.push(Diagnostic::error(format!(
            "TLSOption `default` defined in several namespaces ({}); all are ignored",
            default_namespaces.join(", ")
        )));
    }
    options
}

/// TLSStore objects -> `tls.stores` (their certificates go to `certs`).
pub fn build_tls_stores(
    store: &Store<'_>,
    certs: &mut Certificates,
    diags: &mut Vec<Diagnostic>,
) -> BTreeMap<String, Value> {
    let mut stores = BTreeMap::new();
    let mut default_namespaces = Vec::new();
    for item in &store.tls_stores {
        let t = item.obj;
        let ns = t.metadata.ns();
        let resource = item.manifest.resource();
        let mut id = make_id(ns, &t.metadata.name);
        if t.metadata.name == "default" {
            id = "default".to_string();
            default_namespaces.push(ns.to_string());
        }
        let mut out = Map::new();
        if let Some(dc) = &t.spec.default_certificate {
            match certificate_blocks(store, ns, &dc.secret_name) {
                Ok((c, k)) => {
                    out.insert(
                        "defaultCertificate".into(),
                        json!({"certFile": c, "keyFile": k}),
                    );
                }
                Err(e) => {
                    diags.push(
                        located_diag(
                            item.manifest,
                            "spec.defaultCertificate.secretName",
                            format!("{e}; TLSStore skipped"),
                        )
                        .with_resource(resource),
                    );
                    continue;
                }
            }
        }
        if let Some(g) = &t.spec.default_generated_cert {
            out.insert("defaultGeneratedCert".into(), json!(g));
        }
        for (i, c) in t.spec.certificates.iter().enumerate() {
            if let Err(e) = certs.add_secret(store, ns, &c.secret_name, Some(&id)) {
                diags.push(
                    located_diag(
                        item.manifest,
                        &format!("spec.certificates[{i}].secretName"),
                        format!("{e}; certificate skipped"),
                    )
                    .with_resource(resource.clone()),
                );
            }
        }
        stores.insert(id, Value::Object(out));
    }
    if default_namespaces.len() > 1 {
        stores.remove("default");
        diags.push(Diagnostic::error(format!(
            "TLSStore `default` defined in several namespaces ({}); all are ignored",
            default_namespaces.join(", ")
        )));
    }
    stores
}
