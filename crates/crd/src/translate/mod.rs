//! Manifests -> dynamic configuration, as Traefik's CRD provider builds it
//! (`loadConfigurationFromCRD`): element names are unqualified (no
//! `@kubernetescrd`), defaults are the provider's.

mod error;
mod http;
mod incremental;
mod middlewares;
mod refs;
mod servers;
mod services;
mod tls;
mod transports;

use std::collections::BTreeMap;

use serde_json::{json, Value};
use sluice_config::dynamic::{Configuration, HttpConfiguration};
use sluice_config::Diagnostic;

use crate::manifest::Manifest;
use crate::options::CrdOptions;
use crate::store::{Store, Versioned};

pub use error::{BuildError, Located, RefError};
pub use incremental::{CachedTranslation, ObjectRef, Reuse, TranslationCache};
pub use refs::PROVIDER_NAME;
pub use servers::{join_host_port, service_protocol};
pub use transports::GO_CIPHER_SUITES;

/// The result of a translation.
#[derive(Debug, Clone, Default)]
pub struct Translation {
    /// The provider's configuration, with unqualified names.
    pub config: Configuration,
    /// Everything skipped or adjusted, located in the manifests.
    pub diagnostics: Vec<Diagnostic>,
}

/// Translates manifests into the dynamic configuration. A broken route or
/// resource is skipped with a diagnostic; everything else translates.
pub fn translate(manifests: &[Manifest], options: &CrdOptions) -> Translation {
    let refs: Vec<&Manifest> = manifests.iter().collect();
    translate_refs(&refs, options)
}

/// [`translate`] over borrowed manifests, for callers that keep their objects elsewhere (the
/// Kubernetes provider's stores) and must not copy them for every rebuild.
pub fn translate_refs(manifests: &[&Manifest], options: &CrdOptions) -> Translation {
    let objects: Vec<Versioned<'_>> = manifests
        .iter()
        .map(|&manifest| Versioned {
            manifest,
            revision: 0,
        })
        .collect();
    let mut diags = Vec::new();
    let store = Store::new(&objects, options, &mut diags);
    translate_store(store, diags, options, |store, http, certs, diags| {
        http::load_ingress_routes(store, options, http, certs, diags)
    })
    .0
}

/// Everything a translation does, with the IngressRoutes' part (their routers and services in
/// `http`, their certificates, their diagnostics) left to `routes`, which runs once the TLS
/// stores have loaded their certificates. Also gives the names of the services the other
/// objects (middlewares' error pages, TraefikServices) put over the routes' ones.
fn translate_store(
    store: Store<'_>,
    mut diags: Vec<Diagnostic>,
    options: &CrdOptions,
    routes: impl FnOnce(
        &Store<'_>,
        &mut HttpConfiguration,
        &mut tls::Certificates,
        &mut Vec<Diagnostic>,
    ),
) -> (Translation, Vec<String>) {
    let mut certs = tls::Certificates::default();
    let stores = tls::build_tls_stores(&store, &mut certs, &mut diags);

    let mut http = HttpConfiguration::default();
    routes(&store, &mut http, &mut certs, &mut diags);
    let tls_options = tls::build_tls_options(&store, &mut diags);

    // Services of other objects replace the routes' ones of the same name.
    let mut others = services::Services::new();
    http.middlewares = middlewares::build_middlewares(&store, options, &mut others, &mut diags);
    let tcp_middlewares = middlewares::build_middleware_tcps(&store);

    // Traefik builds TraefikServices without nativeLBByDefault and without
    // the cluster-scope switch.
    for item in &store.traefik_services {
        let mut builder = services::ServiceBuilder {
            store: &store,
            options,
            native_lb_by_default: false,
            disable_cluster_scope: false,
            warnings: &mut diags,
        };
        if let Err(e) = builder.build_traefik_service(item.obj, &mut others) {
            diags.push(
                located_diag(
                    item.manifest,
                    &e.field,
                    format!("{}; TraefikService skipped", e.error),
                )
                .with_resource(item.manifest.resource()),
            );
        }
    }
    let replaced: Vec<String> = others.keys().cloned().collect();
    http.services.extend(others);
    http.servers_transports = transports::build_servers_transports(&store, &mut diags);
    let tcp_transports = transports::build_servers_transport_tcps(&store, &mut diags);

    let mut tcp = serde_json::Map::new();
    tcp.insert("middlewares".into(), json!(tcp_middlewares));
    tcp.insert("serversTransports".into(), json!(tcp_transports));

    let mut tls_section = serde_json::Map::new();
    let cert_list = certs.into_list();
    if !cert_list.is_empty() {
        tls_section.insert("certificates".into(), Value::Array(cert_list));
    }
    if !tls_options.is_empty() {
        tls_section.insert("options".into(), json!(tls_options));
    }
    if !stores.is_empty() {
        tls_section.insert("stores".into(), json!(stores));
    }

    let translation = Translation {
        config: Configuration {
            http: Some(http),
            tcp: non_empty(tcp),
            udp: None,
            tls: (!tls_section.is_empty()).then_some(Value::Object(tls_section)),
        },
        diagnostics: diags,
    };
    (translation, replaced)
}

/// Drops the empty maps of a section; `None` when nothing is left.
fn non_empty(section: serde_json::Map<String, Value>) -> Option<Value> {
    let kept: serde_json::Map<String, Value> = section
        .into_iter()
        .filter(|(_, v)| v.as_object().is_none_or(|o| !o.is_empty()))
        .collect();
    (!kept.is_empty()).then_some(Value::Object(kept))
}

/// A diagnostic located at a manifest, with a field path inside it.
pub(crate) fn located_diag(manifest: &Manifest, field: &str, message: String) -> Diagnostic {
    let mut d = Diagnostic::error(message).with_file(&manifest.file);
    // Objects read from the API server have no line (0).
    d.line = (manifest.line > 0).then_some(manifest.line);
    if !field.is_empty() {
        d = d.with_field(field);
    }
    d
}

/// Annotation carrying the (deprecated) ingress class.
const INGRESS_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";

/// Whether a route resource belongs to this provider: its class is
/// `spec.ingressClassName`, else the deprecated annotation; processed when
/// equal to the provider's class, or when the provider has none and the
/// class is empty or `traefik`.
pub(crate) fn class_matches(
    options: &CrdOptions,
    spec_class: Option<&str>,
    annotations: &BTreeMap<String, String>,
    manifest: &Manifest,
    diags: &mut Vec<Diagnostic>,
) -> bool {
    let class = match spec_class {
        Some(c) => c.to_string(),
        None => match annotations.get(INGRESS_CLASS_ANNOTATION) {
            Some(a) if !a.is_empty() => {
                let mut d = located_diag(
                    manifest,
                    "metadata.annotations",
                    format!("annotation `{INGRESS_CLASS_ANNOTATION}` is deprecated, use spec.ingressClassName"),
                )
                .with_resource(manifest.resource());
                d.severity = sluice_config::Severity::Warning;
                diags.push(d);
                a.clone()
            }
            _ => String::new(),
        },
    };
    options.ingress_class == class || (options.ingress_class.is_empty() && class == "traefik")
}
