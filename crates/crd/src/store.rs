//! The objects the provider can see, indexed like Traefik's informers.
//!
//! Visibility follows the provider options: only watched namespaces, the
//! label selector on Traefik's kinds, Helm release secrets ignored, Nodes
//! only when cluster-scope lookups are enabled. When one object exists in
//! both Traefik API groups, the `traefik.io` one wins (as in Traefik v2.11).
//!
//! A store is either built from a list of manifests ([`Store::new`]: its own
//! indexes, in the list's order) or laid over objects kept elsewhere
//! ([`Store::over`]: the Kubernetes provider's reflectors, read in place, so
//! that a rebuild does not index every object again).
//!
//! Lookups of one object by another (a route reading its Service) can be
//! recorded with the revisions they found, so that later one can tell
//! whether the same lookups would find the same objects
//! ([`Store::finds_the_same`]): what lets a translation be reused.

use std::cell::{OnceCell, RefCell};
use std::collections::HashMap;

use sluice_config::Diagnostic;

use crate::labels::LabelSelector;
use crate::manifest::{Manifest, Object, LEGACY_TRAEFIK_GROUP, TRAEFIK_GROUP};
use crate::options::CrdOptions;
use crate::types::{
    ConfigMap, EndpointSlice, Endpoints, IngressRoute, IngressRouteTcp, IngressRouteUdp,
    Middleware, MiddlewareTcp, Node, Secret, ServersTransport, ServersTransportTcp, Service,
    TlsOption, TlsStore, TraefikService,
};

/// Label linking an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Traefik's kinds, sorted as objects are (by kind name).
const TRAEFIK_KINDS: [&str; 10] = [
    "IngressRoute",
    "IngressRouteTCP",
    "IngressRouteUDP",
    "Middleware",
    "MiddlewareTCP",
    "ServersTransport",
    "ServersTransportTCP",
    "TLSOption",
    "TLSStore",
    "TraefikService",
];

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

/// Objects kept by their owner (the Kubernetes provider's reflectors), which a [`Store`] reads
/// in place. They are given as they are, the store applies visibility.
pub trait Objects {
    /// The objects of a kind in an API group (`""` for the core group), by namespace then
    /// name.
    fn list(&self, kind: &str, group: &str) -> Vec<Versioned<'_>>;

    /// One object (namespace `""` for cluster-scoped kinds).
    fn get(&self, kind: &str, group: &str, namespace: &str, name: &str) -> Option<Versioned<'_>>;

    /// The EndpointSlices of a namespace whose `kubernetes.io/service-name` label is
    /// `service`, by name.
    fn endpoint_slices(&self, namespace: &str, service: &str) -> Vec<Versioned<'_>>;
}

/// A lookup made by a translation, by what it asked for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Lookup {
    Service(String, String),
    EndpointSlices(String, String),
    Endpoints(String, String),
    Secret(String, String),
    ConfigMap(String, String),
    Nodes,
    IngressRoute(String, String),
}

/// A recorded lookup and the revisions it found, in the store's order (none: nothing was
/// there); for EndpointSlices, the names of the slices found too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Read {
    pub(crate) lookup: Lookup,
    found: Vec<Revision>,
    pub(crate) slices: Vec<String>,
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

/// Where lookups by name go.
enum Index<'a> {
    /// Maps built from a list of manifests.
    Built(Box<Built<'a>>),
    /// Objects kept elsewhere.
    Over(&'a dyn Objects),
}

/// The lookup maps of a store built from a list.
#[derive(Default)]
struct Built<'a> {
    services: HashMap<Key<'a>, Item<'a, Service>>,
    /// By namespace and the Service named in their `kubernetes.io/service-name` label.
    endpoint_slices: HashMap<Key<'a>, Vec<Item<'a, EndpointSlice>>>,
    endpoints: HashMap<Key<'a>, Item<'a, Endpoints>>,
    secrets: HashMap<Key<'a>, Item<'a, Secret>>,
    config_maps: HashMap<Key<'a>, Item<'a, ConfigMap>>,
    nodes: Vec<Item<'a, Node>>,
    /// The first IngressRoute of each namespace and name (index in `ingress_routes`), built
    /// on the first parent lookup.
    route_index: OnceCell<HashMap<Key<'a>, usize>>,
}

/// Every visible object, by kind, in the order given. A store laid over objects kept elsewhere
/// lists no IngressRoute here: see [`Store::ingress_routes_in_order`] and
/// [`Store::visible_ingress_route`].
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
    index: Index<'a>,
    watched: Vec<String>,
    selector: LabelSelector,
    nodes_hidden: bool,
    /// Lookups made while recording.
    reads: RefCell<Option<Vec<Read>>>,
}

impl Default for Store<'_> {
    fn default() -> Self {
        Store {
            ingress_routes: Vec::new(),
            ingress_route_tcps: Vec::new(),
            ingress_route_udps: Vec::new(),
            traefik_services: Vec::new(),
            middlewares: Vec::new(),
            middleware_tcps: Vec::new(),
            tls_options: Vec::new(),
            tls_stores: Vec::new(),
            servers_transports: Vec::new(),
            servers_transport_tcps: Vec::new(),
            index: Index::Built(Box::default()),
            watched: Vec::new(),
            selector: LabelSelector::default(),
            nodes_hidden: false,
            reads: RefCell::new(None),
        }
    }
}

impl<'a> Store<'a> {
    /// Builds the visible set; problems (bad selector, shadowed legacy
    /// objects) are reported as diagnostics.
    pub fn new(
        objects: &[Versioned<'a>],
        options: &CrdOptions,
        diagnostics: &mut Vec<Diagnostic>,
    ) -> Self {
        let Some(mut store) = Store::empty(Index::Built(Box::default()), options, diagnostics)
        else {
            return Store::default();
        };

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

        let mut built = Built::default();
        for &object in objects {
            let m = object.manifest;
            let meta = m.object.meta();
            if m.object.is_cluster_scoped() {
                if store.nodes_hidden {
                    continue;
                }
            } else if !store.is_watched(meta.ns()) {
                continue;
            }
            if m.object.is_traefik_kind() {
                if !store.selector.matches(&meta.labels) {
                    continue;
                }
                if m.api_group != TRAEFIK_GROUP {
                    let key = (m.object.kind(), meta.ns(), meta.name.as_str());
                    if let Some(&winner) = current.get(&key) {
                        diagnostics.push(shadowed(m, objects[winner].manifest));
                        continue;
                    }
                }
            }
            let key = (meta.ns(), meta.name.as_str());
            let revision = object.revision;
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
                Object::Service(o) => {
                    built.services.insert(key, item!(o));
                }
                Object::EndpointSlice(o) => {
                    if let Some(service) = meta.labels.get(SERVICE_NAME_LABEL) {
                        built
                            .endpoint_slices
                            .entry((meta.ns(), service))
                            .or_default()
                            .push(item!(o));
                    }
                }
                Object::Endpoints(o) => {
                    built.endpoints.insert(key, item!(o));
                }
                Object::Secret(o) => {
                    if !helm_release(o) {
                        built.secrets.insert(key, item!(o));
                    }
                }
                Object::ConfigMap(o) => {
                    built.config_maps.insert(key, item!(o));
                }
                Object::Node(o) => built.nodes.push(item!(o)),
                _ => store.add_traefik_object(object),
            }
        }
        store.index = Index::Built(Box::new(built));
        store
    }

    /// A store over objects kept elsewhere, read in place: only Traefik's kinds other than
    /// IngressRoute are listed (few objects); everything else is looked up when asked for.
    /// Problems are reported as [`Store::new`] reports them for the same objects in order.
    pub fn over(
        objects: &'a dyn Objects,
        options: &CrdOptions,
        diagnostics: &mut Vec<Diagnostic>,
    ) -> Self {
        let Some(mut store) = Store::empty(Index::Over(objects), options, diagnostics) else {
            return Store::default();
        };
        // Objects are ordered by kind, then API group (the legacy group sorts first).
        for kind in TRAEFIK_KINDS {
            for group in [LEGACY_TRAEFIK_GROUP, TRAEFIK_GROUP] {
                // IngressRoutes are many: only the legacy ones are read here, for their
                // diagnostics; routes are looked up one by one.
                if kind == "IngressRoute" && group == TRAEFIK_GROUP {
                    continue;
                }
                for object in objects.list(kind, group) {
                    let m = object.manifest;
                    let meta = m.object.meta();
                    if !store.is_watched(meta.ns()) || !store.selector.matches(&meta.labels) {
                        continue;
                    }
                    if group != TRAEFIK_GROUP {
                        if let Some(winner) =
                            objects.get(kind, TRAEFIK_GROUP, meta.ns(), &meta.name)
                        {
                            diagnostics.push(shadowed(m, winner.manifest));
                            continue;
                        }
                    }
                    if kind != "IngressRoute" {
                        store.add_traefik_object(object);
                    }
                }
            }
        }
        store
    }

    /// A store without objects for `options`; `None` (and a diagnostic) when the label
    /// selector does not parse: Traefik cannot start its informers with a bad selector, and
    /// here nothing is visible.
    fn empty(
        index: Index<'a>,
        options: &CrdOptions,
        diagnostics: &mut Vec<Diagnostic>,
    ) -> Option<Self> {
        match LabelSelector::parse(&options.label_selector) {
            Ok(selector) => Some(Store {
                index,
                watched: options.namespaces.clone(),
                selector,
                nodes_hidden: options.disable_cluster_scope_resources,
                ..Store::default()
            }),
            Err(e) => {
                diagnostics.push(Diagnostic::error(e.to_string()).with_field("labelSelector"));
                None
            }
        }
    }

    /// Lists a visible object of Traefik's kinds (IngressRoutes aside).
    fn add_traefik_object(&mut self, object: Versioned<'a>) {
        let m = object.manifest;
        let revision = object.revision;
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
            Object::IngressRouteTcp(o) => self.ingress_route_tcps.push(item!(o)),
            Object::IngressRouteUdp(o) => self.ingress_route_udps.push(item!(o)),
            Object::TraefikService(o) => self.traefik_services.push(item!(o)),
            Object::Middleware(o) => self.middlewares.push(item!(o)),
            Object::MiddlewareTcp(o) => self.middleware_tcps.push(item!(o)),
            Object::TlsOption(o) => self.tls_options.push(item!(o)),
            Object::TlsStore(o) => self.tls_stores.push(item!(o)),
            Object::ServersTransport(o) => self.servers_transports.push(item!(o)),
            Object::ServersTransportTcp(o) => self.servers_transport_tcps.push(item!(o)),
            _ => {}
        }
    }

    fn is_watched(&self, namespace: &str) -> bool {
        self.watched.is_empty() || self.watched.iter().any(|n| n == namespace)
    }

    fn check(&self, what: &'static str, namespace: &str, name: &str) -> Result<(), NotWatched> {
        if self.is_watched(namespace) {
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

    fn note(&self, lookup: impl FnOnce() -> Lookup, found: &[Revision], slices: Vec<String>) {
        if let Some(reads) = self.reads.borrow_mut().as_mut() {
            reads.push(Read {
                lookup: lookup(),
                found: found.to_vec(),
                slices,
            });
        }
    }

    /// Whether every lookup of `reads` finds the same revisions here.
    pub(crate) fn finds_the_same(&self, reads: &[Read]) -> bool {
        reads.iter().all(|read| {
            let found: Vec<Revision> = match &read.lookup {
                Lookup::Service(ns, name) => revisions(self.find_service(ns, name)),
                Lookup::EndpointSlices(ns, service) => self
                    .find_endpoint_slices(ns, service)
                    .iter()
                    .map(|i| i.revision)
                    .collect(),
                Lookup::Endpoints(ns, name) => revisions(self.find_endpoints(ns, name)),
                Lookup::Secret(ns, name) => revisions(self.find_secret(ns, name)),
                Lookup::ConfigMap(ns, name) => revisions(self.find_config_map(ns, name)),
                Lookup::Nodes => self.find_nodes().iter().map(|i| i.revision).collect(),
                Lookup::IngressRoute(ns, name) => revisions(self.find_ingress_route(ns, name)),
            };
            found == read.found
        })
    }

    fn find_service(&self, namespace: &str, name: &str) -> Option<Item<'a, Service>> {
        match &self.index {
            Index::Built(b) => b.services.get(&(namespace, name)).copied(),
            Index::Over(objects) => {
                typed(objects.get("Service", "", namespace, name), |o| match o {
                    Object::Service(s) => Some(s),
                    _ => None,
                })
                .filter(|_| self.is_watched(namespace))
            }
        }
    }

    fn find_endpoint_slices(&self, namespace: &str, service: &str) -> Vec<Item<'a, EndpointSlice>> {
        match &self.index {
            Index::Built(b) => b
                .endpoint_slices
                .get(&(namespace, service))
                .cloned()
                .unwrap_or_default(),
            Index::Over(_) if !self.is_watched(namespace) => Vec::new(),
            Index::Over(objects) => objects
                .endpoint_slices(namespace, service)
                .into_iter()
                .filter_map(|v| {
                    typed(Some(v), |o| match o {
                        Object::EndpointSlice(s) => Some(s),
                        _ => None,
                    })
                })
                .collect(),
        }
    }

    fn find_endpoints(&self, namespace: &str, name: &str) -> Option<Item<'a, Endpoints>> {
        match &self.index {
            Index::Built(b) => b.endpoints.get(&(namespace, name)).copied(),
            Index::Over(objects) => {
                typed(objects.get("Endpoints", "", namespace, name), |o| match o {
                    Object::Endpoints(e) => Some(e),
                    _ => None,
                })
                .filter(|_| self.is_watched(namespace))
            }
        }
    }

    fn find_secret(&self, namespace: &str, name: &str) -> Option<Item<'a, Secret>> {
        match &self.index {
            Index::Built(b) => b.secrets.get(&(namespace, name)).copied(),
            Index::Over(objects) => {
                typed(objects.get("Secret", "", namespace, name), |o| match o {
                    Object::Secret(s) => Some(s),
                    _ => None,
                })
                .filter(|s| self.is_watched(namespace) && !helm_release(s.obj))
            }
        }
    }

    fn find_config_map(&self, namespace: &str, name: &str) -> Option<Item<'a, ConfigMap>> {
        match &self.index {
            Index::Built(b) => b.config_maps.get(&(namespace, name)).copied(),
            Index::Over(objects) => {
                typed(objects.get("ConfigMap", "", namespace, name), |o| match o {
                    Object::ConfigMap(c) => Some(c),
                    _ => None,
                })
                .filter(|_| self.is_watched(namespace))
            }
        }
    }

    fn find_nodes(&self) -> Vec<Item<'a, Node>> {
        match &self.index {
            Index::Built(b) => b.nodes.clone(),
            Index::Over(_) if self.nodes_hidden => Vec::new(),
            Index::Over(objects) => objects
                .list("Node", "")
                .into_iter()
                .filter_map(|v| {
                    typed(Some(v), |o| match o {
                        Object::Node(n) => Some(n),
                        _ => None,
                    })
                })
                .collect(),
        }
    }

    /// The first visible IngressRoute with this namespace and name.
    fn find_ingress_route(&self, namespace: &str, name: &str) -> Option<Item<'a, IngressRoute>> {
        match &self.index {
            Index::Built(b) => {
                let index = b.route_index.get_or_init(|| {
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
            // The legacy group comes first, but is visible only without a twin in the current
            // one.
            Index::Over(_) => self
                .visible_ingress_route(LEGACY_TRAEFIK_GROUP, namespace, name)
                .or_else(|| self.visible_ingress_route(TRAEFIK_GROUP, namespace, name)),
        }
    }

    /// For a store laid over objects: the IngressRoute of this API group, namespace and name
    /// if visible.
    pub fn visible_ingress_route(
        &self,
        group: &str,
        namespace: &str,
        name: &str,
    ) -> Option<Item<'a, IngressRoute>> {
        let Index::Over(objects) = &self.index else {
            return None;
        };
        let object = objects.get("IngressRoute", group, namespace, name)?;
        self.route_if_visible(object)
    }

    fn route_if_visible(&self, object: Versioned<'a>) -> Option<Item<'a, IngressRoute>> {
        let Index::Over(objects) = &self.index else {
            return None;
        };
        let m = object.manifest;
        let meta = m.object.meta();
        if !self.is_watched(meta.ns()) || !self.selector.matches(&meta.labels) {
            return None;
        }
        if m.api_group != TRAEFIK_GROUP
            && objects
                .get("IngressRoute", TRAEFIK_GROUP, meta.ns(), &meta.name)
                .is_some()
        {
            return None;
        }
        typed(Some(object), |o| match o {
            Object::IngressRoute(r) => Some(r),
            _ => None,
        })
    }

    /// Every visible IngressRoute in order: those of [`Store::new`], or, over objects kept
    /// elsewhere, those of the legacy group then those of the current one.
    pub fn ingress_routes_in_order(&self) -> Vec<Item<'a, IngressRoute>> {
        match &self.index {
            Index::Built(_) => self.ingress_routes.clone(),
            Index::Over(objects) => [LEGACY_TRAEFIK_GROUP, TRAEFIK_GROUP]
                .into_iter()
                .flat_map(|group| objects.list("IngressRoute", group))
                .filter_map(|object| self.route_if_visible(object))
                .collect(),
        }
    }

    /// A Service.
    pub fn service(&self, namespace: &str, name: &str) -> Result<Option<&'a Service>, NotWatched> {
        self.check("service", namespace, name)?;
        let item = self.find_service(namespace, name);
        self.note(
            || Lookup::Service(namespace.to_string(), name.to_string()),
            &revisions(item),
            Vec::new(),
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
        let items = self.find_endpoint_slices(namespace, service);
        if self.reads.borrow().is_some() {
            let found: Vec<Revision> = items.iter().map(|i| i.revision).collect();
            let names = items.iter().map(|i| i.obj.metadata.name.clone()).collect();
            self.note(
                || Lookup::EndpointSlices(namespace.to_string(), service.to_string()),
                &found,
                names,
            );
        }
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
        let item = self.find_endpoints(namespace, name);
        self.note(
            || Lookup::Endpoints(namespace.to_string(), name.to_string()),
            &revisions(item),
            Vec::new(),
        );
        item.map(|i| i.obj)
    }

    /// A Secret.
    pub fn secret(&self, namespace: &str, name: &str) -> Result<Option<&'a Secret>, NotWatched> {
        self.check("secret", namespace, name)?;
        let item = self.find_secret(namespace, name);
        self.note(
            || Lookup::Secret(namespace.to_string(), name.to_string()),
            &revisions(item),
            Vec::new(),
        );
        Ok(item.map(|i| i.obj))
    }

    /// The revision of a Secret, if visible.
    pub(crate) fn secret_revision(&self, namespace: &str, name: &str) -> Option<Revision> {
        self.find_secret(namespace, name).map(|i| i.revision)
    }

    /// A ConfigMap.
    pub fn config_map(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<&'a ConfigMap>, NotWatched> {
        self.check("config map", namespace, name)?;
        let item = self.find_config_map(namespace, name);
        self.note(
            || Lookup::ConfigMap(namespace.to_string(), name.to_string()),
            &revisions(item),
            Vec::new(),
        );
        Ok(item.map(|i| i.obj))
    }

    /// All Nodes (empty when cluster-scope lookups are disabled).
    pub fn nodes(&self) -> Vec<&'a Node> {
        let items = self.find_nodes();
        if self.reads.borrow().is_some() {
            let found: Vec<Revision> = items.iter().map(|i| i.revision).collect();
            self.note(|| Lookup::Nodes, &found, Vec::new());
        }
        items.iter().map(|i| i.obj).collect()
    }

    /// The first visible IngressRoute with this namespace and name.
    pub fn ingress_route(&self, namespace: &str, name: &str) -> Option<Item<'a, IngressRoute>> {
        let item = self.find_ingress_route(namespace, name);
        self.note(
            || Lookup::IngressRoute(namespace.to_string(), name.to_string()),
            &revisions(item),
            Vec::new(),
        );
        item
    }
}

/// The warning for a legacy-group object hidden by its twin in the current group.
fn shadowed(m: &Manifest, winner: &Manifest) -> Diagnostic {
    Diagnostic::warning(format!(
        "ignored: the same object also exists in API group {TRAEFIK_GROUP} ({}:{}), which takes precedence",
        winner.file.display(),
        winner.line
    ))
    .with_resource(m.resource())
    .with_file(&m.file)
    .with_position(m.line, 1)
}

/// Traefik's secret informer filters `owner!=helm`.
fn helm_release(secret: &Secret) -> bool {
    secret.metadata.labels.get("owner").map(String::as_str) == Some("helm")
}

/// An object as an item of the kind `pick` accepts.
fn typed<'a, T>(
    object: Option<Versioned<'a>>,
    pick: impl FnOnce(&'a Object) -> Option<&'a T>,
) -> Option<Item<'a, T>> {
    let object = object?;
    Some(Item {
        obj: pick(&object.manifest.object)?,
        manifest: object.manifest,
        revision: object.revision,
    })
}

fn revisions<T>(item: Option<Item<'_, T>>) -> Vec<Revision> {
    item.map(|i| i.revision).into_iter().collect()
}

/// The Service an EndpointSlice belongs to (its `kubernetes.io/service-name` label).
pub fn slice_service(object: &Manifest) -> Option<&str> {
    match &object.object {
        Object::EndpointSlice(s) => s
            .metadata
            .labels
            .get(SERVICE_NAME_LABEL)
            .map(String::as_str),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traefik_kinds_are_listed_in_the_order_objects_sort() {
        let mut sorted = TRAEFIK_KINDS;
        sorted.sort_unstable();
        assert_eq!(sorted, TRAEFIK_KINDS);
    }
}
