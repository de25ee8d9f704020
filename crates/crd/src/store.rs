//! The objects the provider can see, indexed like Traefik's informers.
//!
//! Visibility follows the provider options: only watched namespaces, the
//! label selector on Traefik's kinds, Helm release secrets ignored, Nodes
//! only when cluster-scope lookups are enabled. When one object exists in
//! both Traefik API groups, the `traefik.io` one wins (as in Traefik v2.11).
//!
//! Lookups of one object by another (a route reading its Service) can be
//! recorded with the revisions they found, so that a later store can tell
//! whether the same lookups would find the same objects
//! ([`Store::finds_the_same`]): what lets a translation be reused.

use std::cell::{OnceCell, RefCell};
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

/// Names one content of one object: two objects with the same revision are
/// equal. The Kubernetes provider numbers every decoded object; plain
/// translations use 0 throughout (they never compare revisions).
pub type Revision = u64;

/// A manifest and its [`Revision`].
#[derive(Debug, Clone, Copy)]
pub struct Versioned<'a> {
    /// The object.
    pub manifest: &'a Manifest,
    /// Its revision: equal revisions promise equal manifests.
    pub revision: Revision,
}

/// A lookup made by a translation, by what it asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Lookup {
    Service(String, String),
    EndpointSlices(String, String),
    Endpoints(String, String),
    Secret(String, String),
    ConfigMap(String, String),
    Nodes,
    IngressRoute(String, String),
}

/// A recorded lookup and the revisions it found, in the store's order
/// (none: nothing was there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Read {
    lookup: Lookup,
    found: Vec<Revision>,
}

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
    /// Its revision.
    pub revision: Revision,
}

impl<T> Clone for Item<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Item<'_, T> {}

/// Namespace and name, borrowed from the objects.
type Key<'a> = (&'a str, &'a str);

/// Every visible object, by kind, in the order given.
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
    services: HashMap<Key<'a>, Item<'a, Service>>,
    /// By namespace and the Service named in their `kubernetes.io/service-name` label.
    endpoint_slices: HashMap<Key<'a>, Vec<Item<'a, EndpointSlice>>>,
    endpoints: HashMap<Key<'a>, Item<'a, Endpoints>>,
    secrets: HashMap<Key<'a>, Item<'a, Secret>>,
    config_maps: HashMap<Key<'a>, Item<'a, ConfigMap>>,
    nodes: Vec<&'a Node>,
    node_revisions: Vec<Revision>,
    /// The first IngressRoute of each namespace and name (index in `ingress_routes`), built on
    /// the first parent lookup.
    route_index: OnceCell<HashMap<Key<'a>, usize>>,
    watched: Vec<String>,
    /// Lookups made while recording.
    reads: RefCell<Option<Vec<Read>>>,
}

impl<'a> Store<'a> {
    /// Builds the visible set; problems (bad selector, shadowed legacy
    /// objects) are reported as diagnostics.
    pub fn new(
        objects: &[Versioned<'a>],
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

        // Traefik kinds present in the current group, to shadow legacy ones (only needed when
        // some legacy object is there).
        let mut current: HashMap<(&'static str, &str, &str), usize> = HashMap::new();
        if objects
            .iter()
            .any(|o| o.manifest.object.is_traefik_kind() && o.manifest.api_group != TRAEFIK_GROUP)
        {
            for (i, o) in objects.iter().enumerate() {
                let m = o.manifest;
                if m.object.is_traefik_kind() && m.api_group == TRAEFIK_GROUP {
                    let meta = m.object.meta();
                    current.insert((m.object.kind(), meta.ns(), &meta.name), i);
                }
            }
        }

        for &Versioned {
            manifest: m,
            revision,
        } in objects
        {
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
                    let key = (m.object.kind(), meta.ns(), meta.name.as_str());
                    if let Some(&winner) = current.get(&key) {
                        let w = objects[winner].manifest;
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
            let key = (meta.ns(), meta.name.as_str());
            macro_rules! item {
                ($o:expr) => {
                    Item {
                        obj: $o,
                        manifest: m,
                        revision,
                    }
                };
            }
            match &m.object {
                Object::IngressRoute(o) => store.ingress_routes.push(item!(o)),
                Object::IngressRouteTcp(o) => store.ingress_route_tcps.push(item!(o)),
                Object::IngressRouteUdp(o) => store.ingress_route_udps.push(item!(o)),
                Object::TraefikService(o) => store.traefik_services.push(item!(o)),
                Object::Middleware(o) => store.middlewares.push(item!(o)),
                Object::MiddlewareTcp(o) => store.middleware_tcps.push(item!(o)),
                Object::TlsOption(o) => store.tls_options.push(item!(o)),
                Object::TlsStore(o) => store.tls_stores.push(item!(o)),
                Object::ServersTransport(o) => store.servers_transports.push(item!(o)),
                Object::ServersTransportTcp(o) => store.servers_transport_tcps.push(item!(o)),
                Object::Service(o) => {
                    store.services.insert(key, item!(o));
                }
                Object::EndpointSlice(o) => {
                    if let Some(service) = meta.labels.get(SERVICE_NAME_LABEL) {
                        store
                            .endpoint_slices
                            .entry((meta.ns(), service))
                            .or_default()
                            .push(item!(o));
                    }
                }
                Object::Endpoints(o) => {
                    store.endpoints.insert(key, item!(o));
                }
                Object::Secret(o) => {
                    // Traefik's secret informer filters `owner!=helm`.
                    if meta.labels.get("owner").map(String::as_str) != Some("helm") {
                        store.secrets.insert(key, item!(o));
                    }
                }
                Object::ConfigMap(o) => {
                    store.config_maps.insert(key, item!(o));
                }
                Object::Node(o) => {
                    store.nodes.push(o);
                    store.node_revisions.push(revision);
                }
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

    /// Starts recording lookups (dropping any recorded before).
    pub(crate) fn record(&self) {
        *self.reads.borrow_mut() = Some(Vec::new());
    }

    /// Stops recording and returns the lookups made since [`Store::record`].
    pub(crate) fn recorded(&self) -> Vec<Read> {
        self.reads.borrow_mut().take().unwrap_or_default()
    }

    fn note(&self, lookup: impl FnOnce() -> Lookup, found: impl Iterator<Item = Revision>) {
        if let Some(reads) = self.reads.borrow_mut().as_mut() {
            reads.push(Read {
                lookup: lookup(),
                found: found.collect(),
            });
        }
    }

    /// Whether every lookup of `reads` finds the same revisions here.
    pub(crate) fn finds_the_same(&self, reads: &[Read]) -> bool {
        reads.iter().all(|read| {
            let found = &read.found;
            match &read.lookup {
                Lookup::Service(ns, name) => same(
                    found,
                    self.services
                        .get(&(ns.as_str(), name.as_str()))
                        .map(|i| i.revision),
                ),
                Lookup::EndpointSlices(ns, service) => same(
                    found,
                    self.endpoint_slices
                        .get(&(ns.as_str(), service.as_str()))
                        .into_iter()
                        .flatten()
                        .map(|i| i.revision),
                ),
                Lookup::Endpoints(ns, name) => same(
                    found,
                    self.endpoints
                        .get(&(ns.as_str(), name.as_str()))
                        .map(|i| i.revision),
                ),
                Lookup::Secret(ns, name) => same(
                    found,
                    self.secrets
                        .get(&(ns.as_str(), name.as_str()))
                        .map(|i| i.revision),
                ),
                Lookup::ConfigMap(ns, name) => same(
                    found,
                    self.config_maps
                        .get(&(ns.as_str(), name.as_str()))
                        .map(|i| i.revision),
                ),
                Lookup::Nodes => same(found, self.node_revisions.iter().copied()),
                Lookup::IngressRoute(ns, name) => {
                    same(found, self.find_ingress_route(ns, name).map(|i| i.revision))
                }
            }
        })
    }

    /// A Service.
    pub fn service(&self, namespace: &str, name: &str) -> Result<Option<&'a Service>, NotWatched> {
        self.check("service", namespace, name)?;
        let item = self.services.get(&(namespace, name));
        self.note(
            || Lookup::Service(namespace.to_string(), name.to_string()),
            item.map(|i| i.revision).into_iter(),
        );
        Ok(item.map(|i| i.obj))
    }

    /// The EndpointSlices of a Service, by creation time then name.
    pub fn endpoint_slices(
        &self,
        namespace: &str,
        service: &str,
    ) -> Result<Vec<&'a EndpointSlice>, NotWatched> {
        self.check("endpointslices for service", namespace, service)?;
        let items = self
            .endpoint_slices
            .get(&(namespace, service))
            .map(Vec::as_slice)
            .unwrap_or_default();
        self.note(
            || Lookup::EndpointSlices(namespace.to_string(), service.to_string()),
            items.iter().map(|i| i.revision),
        );
        let mut slices: Vec<&EndpointSlice> = items.iter().map(|i| i.obj).collect();
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
        let item = self.endpoints.get(&(namespace, name));
        self.note(
            || Lookup::Endpoints(namespace.to_string(), name.to_string()),
            item.map(|i| i.revision).into_iter(),
        );
        item.map(|i| i.obj)
    }

    /// A Secret.
    pub fn secret(&self, namespace: &str, name: &str) -> Result<Option<&'a Secret>, NotWatched> {
        self.check("secret", namespace, name)?;
        let item = self.secrets.get(&(namespace, name));
        self.note(
            || Lookup::Secret(namespace.to_string(), name.to_string()),
            item.map(|i| i.revision).into_iter(),
        );
        Ok(item.map(|i| i.obj))
    }

    /// The revision of a Secret, if visible.
    pub(crate) fn secret_revision(&self, namespace: &str, name: &str) -> Option<Revision> {
        self.secrets.get(&(namespace, name)).map(|i| i.revision)
    }

    /// A ConfigMap.
    pub fn config_map(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<&'a ConfigMap>, NotWatched> {
        self.check("config map", namespace, name)?;
        let item = self.config_maps.get(&(namespace, name));
        self.note(
            || Lookup::ConfigMap(namespace.to_string(), name.to_string()),
            item.map(|i| i.revision).into_iter(),
        );
        Ok(item.map(|i| i.obj))
    }

    /// All Nodes (empty when cluster-scope lookups are disabled).
    pub fn nodes(&self) -> &[&'a Node] {
        self.note(|| Lookup::Nodes, self.node_revisions.iter().copied());
        &self.nodes
    }

    /// The first visible IngressRoute with this namespace and name.
    pub fn ingress_route(&self, namespace: &str, name: &str) -> Option<Item<'a, IngressRoute>> {
        let item = self.find_ingress_route(namespace, name);
        self.note(
            || Lookup::IngressRoute(namespace.to_string(), name.to_string()),
            item.map(|i| i.revision).into_iter(),
        );
        item
    }

    fn find_ingress_route(&self, namespace: &str, name: &str) -> Option<Item<'a, IngressRoute>> {
        let index = self.route_index.get_or_init(|| {
            let mut index = HashMap::with_capacity(self.ingress_routes.len());
            for (i, r) in self.ingress_routes.iter().enumerate() {
                let meta = &r.obj.metadata;
                index.entry((meta.ns(), meta.name.as_str())).or_insert(i);
            }
            index
        });
        index
            .get(&(namespace, name))
            .map(|&i| self.ingress_routes[i])
    }
}

/// Whether a lookup finds the recorded revisions again.
fn same(recorded: &[Revision], now: impl IntoIterator<Item = Revision>) -> bool {
    recorded.iter().copied().eq(now)
}
