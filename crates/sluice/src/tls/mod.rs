//! TLS termination: certificates, TLS options and the choice made for each handshake.
//!
//! * [`settings`]: the dynamic `tls` section and routers' `tls` blocks, as Traefik spells them.
//! * [`certificate`]: parsed certificates and the SNI-indexed store.
//! * [`options`]: TLS options compiled into rustls server configurations.
//! * [`acceptor`]: one connection's handshake, from ClientHello to a stream to serve HTTP on.
//! * [`acme`]: certificates obtained from ACME servers by `certificatesResolvers`.
//! * [`acme_secret`]: ACME state in a Kubernetes Secret, shared by replicas.
//!
//! A [`TlsRuntime`] is part of each runtime snapshot: a handshake reads the snapshot current when
//! it starts, so certificates and options change on reload without touching open connections.

pub mod acceptor;
pub mod acme;
pub mod acme_secret;
pub mod certificate;
pub mod options;
pub mod settings;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use rustls::ServerConfig;
use sluice_config::{Diagnostic, Severity};

use certificate::{Certificate, CertificateCache, CertificateStore};
use options::SessionState;
use settings::{OptionsConfig, TlsSection};

/// Name of the TLS options used when a router names none.
pub const DEFAULT_OPTIONS: &str = "default";

/// The TLS side of one runtime snapshot.
#[derive(Debug, Default)]
pub struct TlsRuntime {
    /// Compiled options by name; an error marks options that are broken (their handshakes fail).
    options: HashMap<String, Result<Arc<ServerConfig>, String>>,
    /// Per entry point: server name → options name, from the Host rules of TLS routers.
    hosts: HashMap<String, HashMap<String, String>>,
    store: Arc<CertificateStore>,
}

/// What a handshake will use.
#[derive(Debug, Clone)]
pub enum Choice {
    /// Serve with these options.
    Serve {
        options: Arc<str>,
        config: Arc<ServerConfig>,
    },
    /// The options for this server name are broken or missing: close the connection.
    Refuse(String),
}

impl TlsRuntime {
    /// The options a handshake on `entry_point` for `server_name` uses: the options of the
    /// routers whose Host names it, else `default`.
    pub fn choose(&self, entry_point: &str, server_name: Option<&str>) -> Choice {
        let name = server_name
            .map(|n| n.trim().trim_end_matches('.').to_ascii_lowercase())
            .and_then(|n| self.hosts.get(entry_point).and_then(|h| h.get(&n)))
            .map(String::as_str)
            .unwrap_or(DEFAULT_OPTIONS);
        match self.options.get(name) {
            Some(Ok(config)) => Choice::Serve {
                options: Arc::from(name),
                config: config.clone(),
            },
            Some(Err(reason)) => {
                Choice::Refuse(format!("TLS options `{name}` are broken: {reason}"))
            }
            None => Choice::Refuse(format!("TLS options `{name}` do not exist")),
        }
    }

    /// The certificate store of this snapshot.
    pub fn store(&self) -> &Arc<CertificateStore> {
        &self.store
    }

    /// Whether options of this name exist and compiled.
    pub fn has_options(&self, name: &str) -> Option<&Result<Arc<ServerConfig>, String>> {
        self.options.get(name)
    }
}

/// A TLS router as the TLS builder sees it.
#[derive(Debug, Clone)]
pub struct TlsRouter {
    pub name: String,
    pub entry_point: String,
    /// Host names of the rule (lower-cased; wildcards kept as `*.x`).
    pub hosts: Vec<String>,
    /// Qualified options name, or `default`.
    pub options: String,
}

/// Everything the TLS builder needs that outlives one runtime.
#[derive(Debug, Default)]
pub struct TlsState {
    pub sessions: SessionState,
    pub cache: CertificateCache,
}

/// Builds the TLS side of a runtime. Returns it with the resolved options of every
/// (router, entry point) pair, and diagnostics.
pub fn build(
    section: &TlsSection,
    routers: &[TlsRouter],
    extra: &[Arc<Certificate>],
    state: &TlsState,
) -> (
    TlsRuntime,
    HashMap<(String, String), String>,
    Vec<Diagnostic>,
) {
    let mut diagnostics = Vec::new();
    let mut report = |severity, resource: String, field: &str, message: String| {
        let mut d = Diagnostic::new(severity, message).with_resource(resource);
        if !field.is_empty() {
            d = d.with_field(field);
        }
        diagnostics.push(d)
    };
    let provider = &state.sessions.provider;

    // Certificates: all go to the one store Sluice has, `default`.
    let mut certificates: Vec<Arc<Certificate>> = Vec::new();
    for (i, cert) in section.certificates.iter().enumerate() {
        let resource = format!("tls.certificates[{i}]");
        if let Some(other) = cert.stores.iter().find(|s| s.as_str() != DEFAULT_OPTIONS) {
            report(
                Severity::Warning,
                resource.clone(),
                "stores",
                format!(
                    "store `{other}` is ignored: only the `default` store is used, as in Traefik"
                ),
            );
        }
        match load(cert, state) {
            Ok(c) => certificates.push(c),
            Err((field, reason)) => report(
                Severity::Error,
                resource,
                field,
                format!("{reason}; the certificate is skipped"),
            ),
        }
    }
    certificates.extend(extra.iter().cloned());

    let mut default_cert = None;
    for (name, store) in &section.stores {
        if name != DEFAULT_OPTIONS {
            report(
                Severity::Warning,
                format!("tls.stores.{name}"),
                "",
                "only the `default` store is used, as in Traefik".into(),
            );
            continue;
        }
        if let Some(domain) = store
            .default_generated_cert
            .as_ref()
            .and_then(|g| g.domain.as_ref())
            .filter(|_| store.default_certificate.is_none())
        {
            // The resolver's certificate for that domain, once it has one.
            let main = domain.main.to_ascii_lowercase();
            if let Some(found) = extra.iter().find(|c| c.names.contains(&main)) {
                default_cert = Some(found.key.clone());
            }
        }
        if let Some(cert) = &store.default_certificate {
            match load(cert, state) {
                Ok(c) => {
                    default_cert = Some(c.key.clone());
                    certificates.push(c);
                }
                Err((field, reason)) => report(
                    Severity::Error,
                    format!("tls.stores.{name}"),
                    &format!("defaultCertificate.{field}"),
                    format!("{reason}; the generated default certificate is served instead"),
                ),
            }
        }
    }
    // A store's default certificate is only a fallback: it must not win name matches over the
    // listed certificates, so it goes last (first listed wins on shared names).
    if let Some(key) = &default_cert {
        if let Some(pos) = certificates.iter().position(|c| Arc::ptr_eq(&c.key, key)) {
            let c = certificates.remove(pos);
            certificates.push(c);
        }
    }
    state.cache.retain_used(&certificates);
    let default_cert = default_cert.or_else(|| certificate::generated_default(provider));
    let store = Arc::new(CertificateStore::new(&certificates, default_cert));

    // Options, with Traefik's default when no provider defines `default`.
    let mut compiled = HashMap::new();
    let mut all: BTreeMap<&str, OptionsConfig> = section
        .options
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    all.entry(DEFAULT_OPTIONS).or_default();
    for (name, config) in all {
        match options::compile(&config, store.clone(), &state.sessions) {
            Ok(done) => {
                for warning in done.warnings {
                    report(
                        Severity::Warning,
                        format!("tls.options.{name}"),
                        "",
                        warning,
                    );
                }
                compiled.insert(name.to_owned(), Ok(done.config));
            }
            Err(reason) => {
                report(
                    Severity::Error,
                    format!("tls.options.{name}"),
                    "",
                    format!("{reason}; handshakes needing these options are refused"),
                );
                compiled.insert(name.to_owned(), Err(reason));
            }
        }
    }

    // Options per (router, entry point), with Traefik's conflict rule: one host served with two
    // different options on one entry point falls back to `default` for every router involved.
    let mut by_entry_point: BTreeMap<&str, Vec<&TlsRouter>> = BTreeMap::new();
    for router in routers {
        by_entry_point
            .entry(router.entry_point.as_str())
            .or_default()
            .push(router);
    }
    let mut resolved = HashMap::new();
    let mut hosts: HashMap<String, HashMap<String, String>> = HashMap::new();
    for (entry_point, group) in by_entry_point {
        let mut options_by_host: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        let mut conflicting: BTreeSet<&str> = BTreeSet::new();
        for router in &group {
            if router.hosts.is_empty() && router.options != DEFAULT_OPTIONS {
                conflicting.insert(&router.name);
                report(
                    Severity::Warning,
                    format!("router `{}`", router.name),
                    "tls.options",
                    format!(
                        "the rule names no Host, so TLS options `{}` cannot be chosen by SNI; \
                         `default` is used on entry point `{entry_point}`",
                        router.options
                    ),
                );
            }
            for host in &router.hosts {
                options_by_host
                    .entry(host)
                    .or_default()
                    .insert(&router.options);
            }
        }
        for (host, names) in &options_by_host {
            if names.len() < 2 {
                continue;
            }
            let involved: Vec<&str> = group
                .iter()
                .filter(|r| r.hosts.iter().any(|h| h == host))
                .map(|r| r.name.as_str())
                .collect();
            for name in &involved {
                conflicting.insert(name);
            }
            report(
                Severity::Error,
                format!("entry point `{entry_point}`"),
                "tls.options",
                format!(
                    "host `{host}` is served with different TLS options ({}) by routers {}; \
                     `default` options are used for all of them",
                    names.iter().cloned().collect::<Vec<_>>().join(", "),
                    involved.join(", ")
                ),
            );
        }
        let map = hosts.entry(entry_point.to_owned()).or_default();
        for router in &group {
            let name = if conflicting.contains(router.name.as_str()) {
                DEFAULT_OPTIONS.to_owned()
            } else {
                router.options.clone()
            };
            for host in &router.hosts {
                map.insert(host.clone(), name.clone());
            }
            resolved.insert((router.name.clone(), entry_point.to_owned()), name);
        }
    }

    (
        TlsRuntime {
            options: compiled,
            hosts,
            store,
        },
        resolved,
        diagnostics,
    )
}

/// Reads and parses one `certFile`/`keyFile` pair (through the cache); on error, the field at
/// fault and why.
fn load(
    cert: &settings::CertificateConfig,
    state: &TlsState,
) -> Result<Arc<Certificate>, (&'static str, String)> {
    let chain = settings::file_or_content(&cert.cert_file).map_err(|e| ("certFile", e))?;
    let key = settings::file_or_content(&cert.key_file).map_err(|e| ("keyFile", e))?;
    state
        .cache
        .get(&chain, &key, &state.sessions.provider)
        .map_err(|e| ("certFile", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(name: &str, ep: &str, hosts: &[&str], options: &str) -> TlsRouter {
        TlsRouter {
            name: name.into(),
            entry_point: ep.into(),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            options: options.into(),
        }
    }

    fn section_with(names: &[&str]) -> TlsSection {
        let mut s = TlsSection::default();
        for n in names {
            s.options.insert(n.to_string(), OptionsConfig::default());
        }
        s
    }

    fn chosen(rt: &TlsRuntime, ep: &str, sni: &str) -> String {
        match rt.choose(ep, Some(sni)) {
            Choice::Serve { options, .. } => options.to_string(),
            Choice::Refuse(r) => format!("refused: {r}"),
        }
    }

    #[test]
    fn hosts_map_to_their_router_options() {
        let state = TlsState::default();
        let (rt, resolved, diags) = build(
            &section_with(&["strict@file"]),
            &[
                router("a@file", "websecure", &["a.test"], "strict@file"),
                router("b@file", "websecure", &["b.test"], "default"),
            ],
            &[],
            &state,
        );
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(chosen(&rt, "websecure", "A.test"), "strict@file");
        assert_eq!(chosen(&rt, "websecure", "b.test"), "default");
        assert_eq!(chosen(&rt, "websecure", "unknown.test"), "default");
        assert_eq!(chosen(&rt, "other", "a.test"), "default");
        assert_eq!(
            resolved[&("a@file".into(), "websecure".into())],
            "strict@file"
        );
    }

    #[test]
    fn conflicting_options_fall_back_to_default_for_every_router_involved() {
        let state = TlsState::default();
        let (rt, resolved, diags) = build(
            &section_with(&["x@file", "y@file"]),
            &[
                router("a@file", "websecure", &["same.test"], "x@file"),
                router("b@file", "websecure", &["same.test"], "y@file"),
                router("c@file", "other", &["same.test"], "x@file"),
            ],
            &[],
            &state,
        );
        assert_eq!(resolved[&("a@file".into(), "websecure".into())], "default");
        assert_eq!(resolved[&("b@file".into(), "websecure".into())], "default");
        // Conflicts are per entry point.
        assert_eq!(resolved[&("c@file".into(), "other".into())], "x@file");
        assert_eq!(chosen(&rt, "websecure", "same.test"), "default");
        let conflict = diags
            .iter()
            .find(|d| d.message.contains("same.test"))
            .expect("a conflict diagnostic");
        assert!(conflict.message.contains("a@file") && conflict.message.contains("b@file"));
    }

    #[test]
    fn broken_options_refuse_their_hosts_only() {
        let state = TlsState::default();
        let mut section = section_with(&[]);
        section.options.insert(
            "bad@file".into(),
            OptionsConfig {
                cipher_suites: vec!["TLS_NOPE".into()],
                ..Default::default()
            },
        );
        let (rt, _, diags) = build(
            &section,
            &[router("a@file", "websecure", &["a.test"], "bad@file")],
            &[],
            &state,
        );
        assert!(chosen(&rt, "websecure", "a.test").starts_with("refused"));
        assert_eq!(chosen(&rt, "websecure", "b.test"), "default");
        assert!(diags
            .iter()
            .any(|d| d.resource.as_deref() == Some("tls.options.bad@file")));
    }
}
