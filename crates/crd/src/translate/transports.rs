//! ServersTransport and ServersTransportTCP objects.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};
use sluice_config::{Diagnostic, GoDuration};

use crate::names::{make_id, normalize};
use crate::store::Store;
use crate::types::{IntOrString, RootCa};

use super::located_diag;
use super::tls::{auth_tls_secret, ca_from_config_map, ca_from_secret_lenient as ca_from_secret};

/// Cipher suite names Traefik knows (Go's names, `pkg/tls` CipherSuites).
pub const GO_CIPHER_SUITES: [&str; 28] = [
    "TLS_RSA_WITH_RC4_128_SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
    "TLS_FALLBACK_SCSV",
];

fn tls_version(name: &str) -> Option<u16> {
    match name {
        "VersionTLS10" => Some(0x0301),
        "VersionTLS11" => Some(0x0302),
        "VersionTLS12" => Some(0x0303),
        "VersionTLS13" => Some(0x0304),
        _ => None,
    }
}

fn duration(v: &IntOrString) -> Result<GoDuration, String> {
    GoDuration::parse_traefik(&v.to_string()).map_err(|e| e.to_string())
}

/// Root CAs and client certificates shared by both transport kinds.
fn load_cas(
    store: &Store<'_>,
    ns: &str,
    legacy: &[String],
    root_cas: &[RootCa],
    field: &str,
    warn: &mut dyn FnMut(String, String),
) -> Vec<String> {
    let mut cas = Vec::new();
    for (i, s) in legacy.iter().enumerate() {
        match ca_from_secret(store, ns, s) {
            Ok(ca) => cas.push(ca),
            Err(e) => warn(
                format!("{field}rootCAsSecrets[{i}]"),
                format!("{e}; CA skipped"),
            ),
        }
    }
    for (i, ca) in root_cas.iter().enumerate() {
        let at = format!("{field}rootCAs[{i}]");
        let loaded = match (&ca.secret, &ca.config_map) {
            (Some(_), Some(_)) => Err("both secret and configMap are defined".to_string()),
            (Some(s), None) => ca_from_secret(store, ns, s),
            (None, Some(c)) => ca_from_config_map(store, ns, c),
            (None, None) => Err("neither secret nor configMap is defined".to_string()),
        };
        match loaded {
            Ok(ca) => cas.push(ca),
            Err(e) => warn(at, format!("{e}; CA skipped")),
        }
    }
    cas
}

fn load_certs(
    store: &Store<'_>,
    ns: &str,
    secrets: &[String],
    field: &str,
    warn: &mut dyn FnMut(String, String),
) -> Vec<Value> {
    let mut certs = Vec::new();
    for (i, s) in secrets.iter().enumerate() {
        match auth_tls_secret(store, ns, s) {
            Ok((c, k)) => certs.push(json!({"certFile": c, "keyFile": k})),
            Err(e) => warn(
                format!("{field}certificatesSecrets[{i}]"),
                format!("{e}; certificate skipped"),
            ),
        }
    }
    certs
}

/// ServersTransport objects -> `http.serversTransports`.
pub fn build_servers_transports(
    store: &Store<'_>,
    diags: &mut Vec<Diagnostic>,
) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for item in &store.servers_transports {
        let st = item.obj;
        let ns = st.metadata.ns();
        let s = &st.spec;
        let resource = item.manifest.resource();
        let mut warn = |field: String, msg: String| {
            diags.push(located_diag(item.manifest, &field, msg).with_resource(resource.clone()));
        };
        let cas = load_cas(
            store,
            ns,
            &s.root_cas_secrets,
            &s.root_cas,
            "spec.",
            &mut warn,
        );
        let certs = load_certs(store, ns, &s.certificates_secrets, "spec.", &mut warn);

        let mut ciphers = Vec::new();
        if let Some(list) = &s.cipher_suites {
            for c in list {
                if GO_CIPHER_SUITES.contains(&c.as_str()) {
                    ciphers.push(c.clone());
                } else {
                    warn(
                        "spec.cipherSuites".into(),
                        format!(
                            "cipher suite not supported: {c}; the default cipher suites are used"
                        ),
                    );
                    ciphers.clear();
                    break;
                }
            }
        }
        let mut min = String::new();
        let mut max = String::new();
        let mut min_id = 0;
        let mut max_id = 0;
        if !s.min_version.is_empty() {
            match tls_version(&s.min_version) {
                Some(id) => {
                    min = s.min_version.clone();
                    min_id = id;
                }
                None => warn(
                    "spec.minVersion".into(),
                    format!("invalid TLS minimum version: {}", s.min_version),
                ),
            }
        }
        if !s.max_version.is_empty() {
            match tls_version(&s.max_version) {
                Some(id) => {
                    max = s.max_version.clone();
                    max_id = id;
                }
                None => warn(
                    "spec.maxVersion".into(),
                    format!("invalid TLS maximum version: {}", s.max_version),
                ),
            }
        }
        if !s.min_version.is_empty() && !s.max_version.is_empty() && min_id >= max_id {
            warn(
                "spec.minVersion".into(),
                format!(
                    "minVersion {} is not below maxVersion {}; using VersionTLS12 and no maximum",
                    s.min_version, s.max_version
                ),
            );
            min = "VersionTLS12".into();
            max.clear();
        }

        let mut timeouts: Vec<(&str, GoDuration)> = vec![
            ("dialTimeout", GoDuration::from_secs(30)),
            ("responseHeaderTimeout", GoDuration::ZERO),
            ("idleConnTimeout", GoDuration::from_secs(90)),
            ("readIdleTimeout", GoDuration::ZERO),
            ("pingTimeout", GoDuration::from_secs(15)),
        ];
        if let Some(ft) = &s.forwarding_timeouts {
            let given = [
                &ft.dial_timeout,
                &ft.response_header_timeout,
                &ft.idle_conn_timeout,
                &ft.read_idle_timeout,
                &ft.ping_timeout,
            ];
            for (slot, v) in timeouts.iter_mut().zip(given) {
                if let Some(v) = v {
                    match duration(v) {
                        Ok(d) => slot.1 = d,
                        Err(e) => warn(format!("spec.forwardingTimeouts.{}", slot.0), e),
                    }
                }
            }
        }
        let mut ft = Map::new();
        for (k, d) in timeouts {
            if !d.is_zero() {
                ft.insert(k.into(), json!(d.to_string()));
            }
        }

        let mut o = Map::new();
        put(
            &mut o,
            "serverName",
            json!(s.server_name),
            s.server_name.is_empty(),
        );
        put(
            &mut o,
            "insecureSkipVerify",
            json!(true),
            !s.insecure_skip_verify,
        );
        put(&mut o, "rootCAs", json!(cas), cas.is_empty());
        put(&mut o, "certificates", json!(certs), certs.is_empty());
        put(&mut o, "cipherSuites", json!(ciphers), ciphers.is_empty());
        put(&mut o, "minVersion", json!(min), min.is_empty());
        put(&mut o, "maxVersion", json!(max), max.is_empty());
        put(
            &mut o,
            "maxIdleConnsPerHost",
            json!(s.max_idle_conns_per_host),
            s.max_idle_conns_per_host == 0,
        );
        o.insert("forwardingTimeouts".into(), Value::Object(ft));
        put(&mut o, "disableHTTP2", json!(true), !s.disable_http2);
        put(
            &mut o,
            "peerCertURI",
            json!(s.peer_cert_uri),
            s.peer_cert_uri.is_empty(),
        );
        put(
            &mut o,
            "peerCertSANs",
            json!(s.peer_cert_sans),
            s.peer_cert_sans.is_empty(),
        );
        if let Some(sp) = &s.spiffe {
            o.insert("spiffe".into(), sp.clone());
        }
        out.insert(normalize(&make_id(ns, &st.metadata.name)), Value::Object(o));
    }
    out
}

/// ServersTransportTCP objects -> `tcp.serversTransports`.
pub fn build_servers_transport_tcps(
    store: &Store<'_>,
    diags: &mut Vec<Diagnostic>,
) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for item in &store.servers_transport_tcps {
        let st = item.obj;
        let ns = st.metadata.ns();
        let s = &st.spec;
        let resource = item.manifest.resource();
        let mut warn = |field: String, msg: String| {
            diags.push(located_diag(item.manifest, &field, msg).with_resource(resource.clone()));
        };
        let mut vals = [
            (
                "dialKeepAlive",
                GoDuration::from_secs(15),
                &s.dial_keep_alive,
            ),
            ("dialTimeout", GoDuration::from_secs(30), &s.dial_timeout),
            (
                "terminationDelay",
                GoDuration::from_millis(100),
                &s.termination_delay,
            ),
        ];
        let mut o = Map::new();
        for (k, d, given) in vals.iter_mut() {
            if let Some(v) = given {
                match duration(v) {
                    Ok(x) => *d = x,
                    Err(e) => warn(format!("spec.{k}"), e),
                }
            }
        }
        for (k, d, _) in &vals[..2] {
            put(&mut o, k, json!(d.to_string()), d.is_zero());
        }
        if let Some(pp) = &s.proxy_protocol {
            o.insert("proxyProtocol".into(), json!(pp));
        }
        let (k, d, _) = &vals[2];
        put(&mut o, k, json!(d.to_string()), d.is_zero());
        if let Some(tls) = &s.tls {
            let cas = load_cas(
                store,
                ns,
                &tls.root_cas_secrets,
                &tls.root_cas,
                "spec.tls.",
                &mut warn,
            );
            let certs = load_certs(store, ns, &tls.certificates_secrets, "spec.tls.", &mut warn);
            let mut t = Map::new();
            put(
                &mut t,
                "serverName",
                json!(tls.server_name),
                tls.server_name.is_empty(),
            );
            put(
                &mut t,
                "insecureSkipVerify",
                json!(true),
                !tls.insecure_skip_verify,
            );
            put(&mut t, "rootCAs", json!(cas), cas.is_empty());
            put(&mut t, "certificates", json!(certs), certs.is_empty());
            put(
                &mut t,
                "peerCertURI",
                json!(tls.peer_cert_uri),
                tls.peer_cert_uri.is_empty(),
            );
            if let Some(sp) = &tls.spiffe {
                t.insert("spiffe".into(), sp.clone());
            }
            o.insert("tls".into(), Value::Object(t));
        }
        out.insert(normalize(&make_id(ns, &st.metadata.name)), Value::Object(o));
    }
    out
}

fn put(o: &mut Map<String, Value>, k: &str, v: Value, empty: bool) {
    if !empty {
        o.insert(k.to_string(), v);
    }
}
