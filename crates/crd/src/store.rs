//! The objects the provider can see, indexed like Traefik's informers.
//!
//! Visibility follows the provider options: only watched namespaces, the
//! label selector on Traefik's kinds, Helm release secrets ignored, Nodes
//! only when cluster-scope lookups are enabled. When one object exists in
//! both Traefik API groups, the `traefik.io` one wins (as in Traefik v2.11).

use std::collections::HashMap;

use sluice_config::Diagnostic;

use crate::labels::LabelSelector;
use crate::manifest::{Manifest, Object, TRAEFIK_GROUP};
use crate::options::CrdOptions;
use crate::types::{
    ConfigMap, EndpointSlice, Endpoints, IngressRoute, IngressRouteTcp, IngressRouteUdp,
    Middleware, MiddlewareTcp, Node, Secret, ServersTransport, ServersTransportTcp, Service,
    TlsOption, TlsStore, TraefikService,
};

/// Label linking an EndpointSlice to its Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// A lookup that is refused because the namespace is not watched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failed to get {what} {namespace}/{name}: namespace is not within watched namespaces")]
pub struct NotWatched {
    /// `service`, `secret`, ...
    pub what: &'static str,
    /// Namespace asked for.
    pub namespace: String,
    /// Name asked for.
    pub name: String,
}

/// A visible object with the manifest it came from.
pub struct Item<'a, T> {
    /// The typed object.
    pub obj: &'a T,
    /// Its manifest (file, line).
    pub manifest: &'a Manifest,
}

impl<T> Clone for Item<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Item<'_, T> {}

/// Every visible object, by kind, in file order.
#[derive(Default)]
pub struct Store<'a> {
    pub ingress_routes: Vec<Item<'a, IngressRoute>>,
    pub ingress_route_tcps: Vec<Item<'a, IngressRouteTcp>>,
    pub ingress_route_udps: Vec<Item<'a, IngressRouteUdp>>,
    pub traefik_services: Vec<Item<'a, TraefikService>>,
    pub middlewares: Vec<Item<'a, Middleware>>,
    pub middleware_tcps: Vec<Item<'a, MiddlewareTcp>>,
    pub tls_options: Vec<Item<'a, TlsOption>>,
    pub tls_stores: Vec<Item<'a, TlsStore>>,
    pub servers_transports: Vec<Item<'a, ServersTransport>>,
    pub servers_transport_tcps: Vec<Item<'a, ServersTransportTcp>>,
    services: HashMap<(String, String), &'a Service>,
    /// By namespace and the Service named in their `kubernetes.io/service-name` label.
    endpoint_slices: HashMap<(String, String), Vec<&'a EndpointSlice>>,
    endpoints: HashMap<(String, String), &'a Endpoints>,
    secrets: HashMap<(String, String), &'a Secret>,
    config_maps: HashMap<(String, String), &'a ConfigMap>,
    nodes: Vec<&'a Node>,
    watched: Vec<String>,
}

impl<'a> Store<'a> {
    /// Builds the visible set; problems (bad selector, shadowed legacy
    /// objects) are reported as diagnostics.
    pub fn new(
        manifests: &[&'a Manifest],
        options: &CrdOptions,
        diagnostics: &mut Vec<Diagnostic>,
    ) -> Self {
        let selector = match LabelSelector::parse(&options.label_selector) {
            Ok(s) => s,
            Err(e) => {
                // Traefik cannot start its informers with a bad selector;
                // here nothing of Traefik's kinds is visible.
                diagnostics.push(Diagnostic::error(e.to_string()).with_field("labelSelector"));
                return Store::default();
            }
        };
        let mut store = Store {
            watched: options.namespaces.clone(),
            ..Store::default()
        };
        let watched =
            |ns: &str| options.namespaces.is_empty() || options.namespaces.iter().any(|n| n == ns);

        // Traefik kinds present in the current group, to shadow legacy ones.
        let mut current: HashMap<(&'static str, String, String), usize> = HashMap::new();
        for (i, m) in manifests.iter().enumerate() {
            if m.object.is_traefik_kind() && m.api_group == TRAEFIK_GROUP {
                let meta = m.object.meta();
                current.insert(
                    (m.object.kind(), meta.ns().to_string(), meta.name.clone()),
                    i,
                );
            }
        }

        for &m in manifests {
            let meta = m.object.meta();
            if m.object.is_cluster_scoped() {
                if options.disable_cluster_scope_resources {
                    continue;
                }
            } else if !watched(meta.ns()) {
                continue;
            }
            if m.object.is_traefik_kind() {
                if !selector.matches(&meta.labels) {
                    continue;
                }
                if m.api_group != TRAEFIK_GROUP {
                    let key = (m.object.kind(), meta.ns().to_string(), meta.name.clone());
                    if let Some(&winner) = current.get(&key) {
                        let w = manifests[winner];
                        diagnostics.push(
                            Diagnostic::warning(format!(
                                "ignored: the same object also exists in API group {TRAEFIK_GROUP} ({}:{}), which takes precedence",
                                w.file.display(),
                                w.line
                            ))
                            .with_resource(m.resource())
                            .with_file(&m.file)
                            .with_position(m.line, 1),
                        );
                        continue;
                    }
                }
            }
            let key = || (meta.ns().to_string(), meta.name.clone());
            match &m.object {
                Object::IngressRoute(o) => store.ingress_routes.push(Item {
                    obj: o,
                    manifest: m,
                }),
                Object::IngressRouteTcp(o) => store.ingress_route_tcps.push(Item {
                    obj: o,
                    manifest: m,
                }),
                Object::IngressRouteUdp(o) => store.ingress_route_udps.push(Item {
                    obj: o,
                    manifest: m,
                }),
                Object::TraefikService(o) => store.traefik_services.push(Item {
                    obj: o,
                    manifest: m,
                }),
                Object::Middleware(o) => store.middlewares.push(Item {
                    obj: o,
                    manifest: m,
                }),
                Object::MiddlewareTcp(o) => store.middleware_tcps.push(Item {
                    obj: o,
                    manifest: m,
                }),
                Object::TlsOption(o) => store.tls_options.push(Item {
                    obj: o,
                    manifest: m,
                }),
                Object::TlsStore(o) => store.tls_stores.push(Item {
                    obj: o,
                    manifest: m,
                }),
                Object::ServersTransport(o) => store.servers_transports.push(Item {
                    obj: o,
                    manifest: m,
                }),
                Object::ServersTransportTcp(o) => store.servers_transport_tcps.push(Item {
                    obj: o,
                    manifest: m,
                }),
                Object::Service(o) => {
                    store.services.insert(key(), o);
                }
                Object::EndpointSlice(o) => {
                    if let Some(service) = meta.labels.get(SERVICE_NAME_LABEL) {
                        store
                            .endpoint_slices
                            .entry((meta.ns().to_string(), service.clone()))
                            .or_default()
                            .push(o);
                    }
                }
                Object::Endpoints(o) => {
                    store.endpoints.insert(key(), o);
                }
                Object::Secret(o) => {
                    // Traefik's secret informer filters `owner!=helm`.
                    if meta.labels.get("owner").map(String::as_str) != Some("helm") {
                        store.secrets.insert(key(), o);
                    }
                }
                Object::ConfigMap(o) => {
                    store.config_maps.insert(key(), o);
                }
                Object::Node(o) => store.nodes.push(o),
            }
        }
        store
    }

    fn check(&self, what: &'static str, namespace: &str, name: &str) -> Result<(), NotWatched> {
        if self.watched.is_empty() || self.watched.iter().any(|n| n == namespace) {
            Ok(())
        } else {
            Err(NotWatched {
                what,
                namespace: namespace.to_string(),
                name: name.to_string(),
            })
        }
    }

    /// A Service.
    pub fn service(&self, namespace: &str, name: &str) -> Result<Option<&'a Service>, NotWatched> {
        self.check("service", namespace, name)?;
        Ok(self
            .services
            .get(&(namespace.to_string(), name.to_string()))
            .copied())
    }

    /// The EndpointSlices of a Service, by creation time then name.
    pub fn endpoint_slices(
        &self,
        namespace: &str,
        service: &str,
    ) -> Result<Vec<&'a EndpointSlice>, NotWatched> {
        self.check("endpointslices for service", namespace, service)?;
        let mut slices: Vec<&EndpointSlice> = self
            .endpoint_slices
            .get(&(namespace.to_string(), service.to_string()))
            .cloned()
            .unwrap_or_default();
        slices.sort_by(|a, b| {
            let ta = a.metadata.creation_timestamp.as_deref().unwrap_or("");
            let tb = b.metadata.creation_timestamp.as_deref().unwrap_or("");
            ta.cmp(tb)
                .then_with(|| a.metadata.name.cmp(&b.metadata.name))
        });
        Ok(slices)
    }

    /// The legacy Endpoints object of a Service.
    pub fn endpoints(&self, namespace: &str, name: &str) -> Option<&'a Endpoints> {
        self.endpoints
            .get(&(namespace.to_string(), name.to_string()))
            .copied()
    }

    /// A Secret.
    pub fn secret(&self, namespace: &str, name: &str) -> Result<Option<&'a Secret>, NotWatched> {
        self.check("secret", namespace, name)?;
        Ok(self
            .secrets
            .get(&(namespace.to_string(), name.to_string()))
            .copied())
    }

    /// A ConfigMap.
    pub fn config_map(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<&'a ConfigMap>, NotWatched> {
        self.check("config map", namespace, name)?;
        Ok(self
            .config_maps
            .get(&(namespace.to_string(), name.to_string()))
            .copied())
    }

    /// All Nodes (empty when cluster-scope lookups are disabled).
    pub fn nodes(&self) -> &[&'a Node] {
        &self.nodes
    }
}
