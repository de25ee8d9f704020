//! Translation that reuses the previous one, over objects kept elsewhere (the Kubernetes
//! provider's reflectors, see [`Objects`]).
//!
//! What each IngressRoute contributes is kept with the lookups its translation made in the
//! store (Services, EndpointSlices, Endpoints, Nodes, parent IngressRoutes, ...) and the
//! revisions they found; a lookup that found nothing counts too, so a route naming a missing
//! Service is translated again when the Service appears. Told which objects changed since the
//! previous translation, the cache translates again only the routes that changed and those
//! whose lookups may find something else; not told, it checks every route's lookups.
//! Everything else (TLS stores and options, middlewares, TraefikServices, transports) is
//! translated every time: few objects. Routes name middlewares, TLS options, TraefikServices
//! and transports without reading them, so changing one of those never touches a route.
//!
//! When several routes produce the same router or service name, the one that comes last in
//! the objects' order wins, as when a full translation inserts them in turn; the cache knows
//! the routes producing each name, so only names of routes translated again are decided again.
//!
//! Configurations are handed out shared ([`Arc`]); the cache keeps the last two, and once
//! nobody else holds the older one (the provider has published a newer one since), it brings
//! that one up to date, name by name, instead of copying every router and service: a change
//! then costs what it touches, not the size of the configuration.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use sluice_config::dynamic::{Configuration, Router};
use sluice_config::Diagnostic;

use crate::manifest::{LEGACY_TRAEFIK_GROUP, TRAEFIK_GROUP};
use crate::options::CrdOptions;
use crate::store::{slice_service, Item, Lookup, Objects, Read, Revision, Store};
use crate::types::IngressRoute;

use super::http::{translate_route, RouteOutput};
use super::services::Services;
use super::tls::{certificate_blocks, Certificates};
use super::translate_store;

/// Translations whose settled names are remembered: the older of the two configurations kept
/// is two translations behind when it is brought up to date.
const HISTORY: usize = 2;

/// An object that was added, changed or removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectRef<'a> {
    /// Its kind, as spelled in manifests.
    pub kind: &'a str,
    /// Its API group (`""` for the core group).
    pub group: &'a str,
    /// Its namespace (`""` for cluster-scoped kinds).
    pub namespace: &'a str,
    /// Its name.
    pub name: &'a str,
}

/// What [`TranslationCache::translate`] gives.
#[derive(Debug, Clone)]
pub struct CachedTranslation {
    /// The provider's configuration, with unqualified names. The cache keeps a reference, and
    /// reuses the configuration for a later translation once every other holder dropped it.
    pub config: Arc<Configuration>,
    /// Everything skipped or adjusted, located in the manifests.
    pub diagnostics: Vec<Diagnostic>,
    /// Whether the configuration differs from the one of the previous translation.
    pub changed: bool,
}

/// How much of the last translation was reused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reuse {
    /// IngressRoutes whose previous output was taken again.
    pub reused: usize,
    /// IngressRoutes translated (new, changed, or reading something that changed).
    pub translated: usize,
    /// Whether all routers and services were copied, no older configuration being free to
    /// bring up to date.
    pub copied: bool,
}

/// API group, namespace and name of an IngressRoute: its place in the objects' order.
type RouteKey = (String, String, String);

/// A route's key, shared by every index naming the route.
type Route = Arc<RouteKey>;

/// Keeps what the last translation computed, to translate the objects again without redoing
/// what did not change. The result is always the one [`super::translate_refs`] gives for the
/// same objects listed in their order (by kind, API group, namespace, name).
#[derive(Default)]
pub struct TranslationCache {
    /// The options everything here was computed with (other options start afresh).
    options: Option<CrdOptions>,
    /// Whether the memos describe the objects of the previous translation.
    complete: bool,
    /// Every visible route's output.
    routes: HashMap<Route, Memo>,
    /// The routes that made each lookup.
    readers: HashMap<Lookup, Vec<Route>>,
    /// The routes that found each EndpointSlice (namespace, name), whatever Service it
    /// belonged to then.
    slice_readers: HashMap<(String, String), Vec<Route>>,
    /// Routes with diagnostics or a certificate, reported at every translation, in order.
    reporting: BTreeSet<Route>,
    /// Certificates loaded for routes, by namespace and Secret name.
    certificates: HashMap<(String, String), LoadedCertificate>,
    sources: Sources,
    reuse: Reuse,
    /// Number of translations made.
    build: u64,
    /// The last configurations handed out, oldest first.
    outputs: VecDeque<Output>,
    /// The names settled by the last translations, oldest first.
    history: VecDeque<Settled>,
}

/// A configuration handed out.
struct Output {
    build: u64,
    config: Arc<Configuration>,
    /// Services of other objects (middlewares' error pages, TraefikServices) put over the
    /// routes' ones.
    replaced: Vec<String>,
}

/// Router and service names whose value a translation decided again.
#[derive(Default)]
struct Settled {
    build: u64,
    routers: Vec<String>,
    services: Vec<String>,
}

/// One IngressRoute's output and how it was obtained.
struct Memo {
    revision: Revision,
    output: RouteOutput,
    /// The lookups the translation made.
    reads: Vec<Read>,
}

/// A Secret's certificate and key, or why they could not be read.
struct LoadedCertificate {
    /// The Secret's revision when loaded (none: absent or not visible).
    revision: Option<Revision>,
    blocks: Result<(String, String), String>,
    /// Used by the last translation.
    used: bool,
}

/// The routes producing each router and service name.
#[derive(Default)]
struct Sources {
    routers: HashMap<String, Vec<Route>>,
    services: HashMap<String, Vec<Route>>,
}

/// Names whose value must be decided again (repeats allowed).
#[derive(Default)]
struct Unsettled {
    routers: Vec<String>,
    services: Vec<String>,
}

impl TranslationCache {
    /// An empty cache: the first translation computes everything.
    pub fn new() -> Self {
        TranslationCache::default()
    }

    /// What the last [`TranslationCache::translate`] reused.
    pub fn last_reuse(&self) -> Reuse {
        self.reuse
    }

    /// Translates `objects`. `changed` lists every object added, changed or removed since the
    /// previous call (revisions must name contents: an object whose content changed comes with
    /// a revision not used before); `None` when unknown, and every route's lookups are then
    /// checked.
    pub fn translate(
        &mut self,
        objects: &dyn Objects,
        changed: Option<&[ObjectRef<'_>]>,
        options: &CrdOptions,
    ) -> CachedTranslation {
        if self.options.as_ref() != Some(options) {
            *self = TranslationCache {
                options: Some(options.clone()),
                ..TranslationCache::default()
            };
        }
        let changed = changed.filter(|_| self.complete);
        self.build += 1;
        let mut diags = Vec::new();
        let store = Store::over(objects, options, &mut diags);
        let mut reuse = Reuse::default();
        let (translation, replaced) =
            translate_store(store, diags, options, |store, http, certs, diags| {
                let mut unsettled = Unsettled::default();
                reuse = match changed {
                    Some(changed) => {
                        self.apply_changes(objects, store, options, changed, &mut unsettled)
                    }
                    None => self.check_every_route(store, options, &mut unsettled),
                };
                let settled = Settled {
                    build: self.build,
                    routers: sorted(unsettled.routers),
                    services: sorted(unsettled.services),
                };
                self.history.push_back(settled);
                if self.history.len() > HISTORY {
                    self.history.pop_front();
                }
                (http.routers, http.services) = self.routes_configuration();
                self.report_routes(store, certs, diags);
            });
        self.complete = true;
        self.reuse = Reuse {
            copied: self.reuse.copied,
            ..reuse
        };

        let config = translation.config;
        let changed = self
            .outputs
            .back()
            .is_none_or(|previous| self.differs(previous, &config, &replaced));
        let config = Arc::new(config);
        self.outputs.push_back(Output {
            build: self.build,
            config: config.clone(),
            replaced,
        });
        if self.outputs.len() > 2 {
            self.outputs.pop_front();
        }
        CachedTranslation {
            config,
            diagnostics: translation.diagnostics,
            changed,
        }
    }

    /// The routes' routers and services: the older configuration if nobody else holds it, or a
    /// copy of the newest, brought up to date; the first time, every route's in turn.
    fn routes_configuration(&mut self) -> (BTreeMap<String, Router>, Services) {
        let Some(newest) = self.outputs.len().checked_sub(1) else {
            self.reuse.copied = true;
            return self.sources.fold(&self.routes);
        };
        // The newest one stays, to tell what this translation changes.
        let reusable = (0..newest).find(|&i| {
            let output = &self.outputs[i];
            // Names settled since must all be remembered.
            Arc::strong_count(&output.config) == 1
                && self
                    .history
                    .front()
                    .is_some_and(|h| h.build <= output.build + 1)
        });
        let (base, mut routers, mut services) = match reusable
            .and_then(|i| self.outputs.remove(i))
            .and_then(|output| {
                Some((
                    output.build,
                    output.replaced,
                    Arc::try_unwrap(output.config).ok()?,
                ))
            }) {
            Some((build, replaced, mut config)) => {
                self.reuse.copied = false;
                let http = config.http.take().unwrap_or_default();
                ((build, replaced), http.routers, http.services)
            }
            None => {
                self.reuse.copied = true;
                let output = &self.outputs[self.outputs.len() - 1];
                let (routers, services) = output
                    .config
                    .http
                    .as_ref()
                    .map(|h| (h.routers.clone(), h.services.clone()))
                    .unwrap_or_default();
                ((output.build, output.replaced.clone()), routers, services)
            }
        };
        let (since, replaced) = base;
        for name in replaced {
            let value = self.sources.service(&name, &self.routes);
            put(&mut services, name, value);
        }
        for settled in self.history.iter().filter(|h| h.build > since) {
            for name in &settled.routers {
                put(
                    &mut routers,
                    name.clone(),
                    self.sources.router(name, &self.routes),
                );
            }
            for name in &settled.services {
                put(
                    &mut services,
                    name.clone(),
                    self.sources.service(name, &self.routes),
                );
            }
        }
        (routers, services)
    }

    /// Whether `config` differs from the `previous` configuration: among routers and services,
    /// only the names settled by this translation and those other objects replace can.
    fn differs(&self, previous: &Output, config: &Configuration, replaced: &[String]) -> bool {
        let (Some(old), Some(new)) = (previous.config.http.as_ref(), config.http.as_ref()) else {
            return previous.config.http.is_some() != config.http.is_some();
        };
        let settled = self.history.back();
        let routers = settled.into_iter().flat_map(|s| &s.routers);
        let services = settled
            .into_iter()
            .flat_map(|s| &s.services)
            .chain(replaced)
            .chain(&previous.replaced);
        previous.config.tcp != config.tcp
            || previous.config.udp != config.udp
            || previous.config.tls != config.tls
            || old.middlewares != new.middlewares
            || old.models != new.models
            || old.servers_transports != new.servers_transports
            || routers
                .into_iter()
                .any(|name| old.routers.get(name) != new.routers.get(name))
            || services
                .into_iter()
                .any(|name| old.services.get(name) != new.services.get(name))
    }

    /// Takes again every route whose revision and lookups are unchanged, translates the others.
    fn check_every_route(
        &mut self,
        store: &Store<'_>,
        options: &CrdOptions,
        unsettled: &mut Unsettled,
    ) -> Reuse {
        let mut reuse = Reuse::default();
        let mut visible = HashSet::new();
        for item in store.ingress_routes_in_order() {
            let key = Arc::new(route_key(&item));
            if self.is_current(&key, &item, store) {
                reuse.reused += 1;
            } else {
                self.translate_route(key.clone(), Some(item), store, options, unsettled);
                reuse.translated += 1;
            }
            visible.insert(key);
        }
        let gone: Vec<Route> = self
            .routes
            .keys()
            .filter(|key| !visible.contains(*key))
            .cloned()
            .collect();
        for key in gone {
            self.translate_route(key, None, store, options, unsettled);
        }
        reuse
    }

    /// Translates again the routes `changed` may touch.
    fn apply_changes(
        &mut self,
        objects: &dyn Objects,
        store: &Store<'_>,
        options: &CrdOptions,
        changed: &[ObjectRef<'_>],
        unsettled: &mut Unsettled,
    ) -> Reuse {
        let mut touched: HashSet<Route> = HashSet::new();
        let mut lookups = Vec::new();
        for object in changed {
            let (ns, name) = (object.namespace.to_string(), object.name.to_string());
            match object.kind {
                "IngressRoute" => {
                    lookups.push(Lookup::IngressRoute(ns.clone(), name.clone()));
                    // Either group's object decides whether the other is visible.
                    for group in [LEGACY_TRAEFIK_GROUP, TRAEFIK_GROUP] {
                        touched.insert(Arc::new((group.to_string(), ns.clone(), name.clone())));
                    }
                }
                "Service" => lookups.push(Lookup::Service(ns, name)),
                "Endpoints" => lookups.push(Lookup::Endpoints(ns, name)),
                "Secret" => lookups.push(Lookup::Secret(ns, name)),
                "ConfigMap" => lookups.push(Lookup::ConfigMap(ns, name)),
                "Node" => lookups.push(Lookup::Nodes),
                "EndpointSlice" => {
                    // Routes that found it, and those looking for its Service now.
                    let service = objects
                        .get(object.kind, object.group, &ns, &name)
                        .and_then(|v| slice_service(v.manifest).map(str::to_string));
                    if let Some(service) = service {
                        lookups.push(Lookup::EndpointSlices(ns.clone(), service));
                    }
                    if let Some(routes) = self.slice_readers.get(&(ns, name)) {
                        touched.extend(routes.iter().cloned());
                    }
                }
                // Read by nothing kept here.
                _ => {}
            }
        }
        for lookup in lookups {
            if let Some(routes) = self.readers.get(&lookup) {
                touched.extend(routes.iter().cloned());
            }
        }

        let mut translated = 0;
        for key in touched {
            let item = store.visible_ingress_route(&key.0, &key.1, &key.2);
            if let Some(item) = item {
                if self.is_current(&key, &item, store) {
                    continue;
                }
            } else if !self.routes.contains_key(&key) {
                continue;
            }
            translated += usize::from(item.is_some());
            self.translate_route(key, item, store, options, unsettled);
        }
        Reuse {
            reused: self.routes.len() - translated,
            translated,
            ..Reuse::default()
        }
    }

    /// Whether the memo of `key` is the output `item` would give now.
    fn is_current(&self, key: &Route, item: &Item<'_, IngressRoute>, store: &Store<'_>) -> bool {
        self.routes
            .get(key)
            .is_some_and(|memo| memo.revision == item.revision && store.finds_the_same(&memo.reads))
    }

    /// Forgets the route's output, and translates `item` in its place if it is there.
    fn translate_route(
        &mut self,
        key: Route,
        item: Option<Item<'_, IngressRoute>>,
        store: &Store<'_>,
        options: &CrdOptions,
        unsettled: &mut Unsettled,
    ) {
        if let Some(memo) = self.routes.remove(&key) {
            self.sources.withdraw(&key, &memo.output, unsettled);
            for read in &memo.reads {
                unlink(&mut self.readers, &read.lookup, &key);
                if let Lookup::EndpointSlices(ns, _) = &read.lookup {
                    for slice in &read.slices {
                        unlink(&mut self.slice_readers, &(ns.clone(), slice.clone()), &key);
                    }
                }
            }
            self.reporting.remove(&key);
        }
        let Some(item) = item else {
            return;
        };
        store.record();
        let output = translate_route(store, options, &item);
        let reads = store.recorded();
        self.sources.contribute(&key, &output, unsettled);
        for read in &reads {
            link(&mut self.readers, read.lookup.clone(), &key);
            if let Lookup::EndpointSlices(ns, _) = &read.lookup {
                for slice in &read.slices {
                    link(&mut self.slice_readers, (ns.clone(), slice.clone()), &key);
                }
            }
        }
        if output.reports() {
            self.reporting.insert(key.clone());
        }
        self.routes.insert(
            key,
            Memo {
                revision: item.revision,
                output,
                reads,
            },
        );
    }

    /// Reports the diagnostics and certificates of the routes that have some, in order;
    /// certificates are loaded again only when their Secret changed.
    fn report_routes(
        &mut self,
        store: &Store<'_>,
        certs: &mut Certificates,
        diags: &mut Vec<Diagnostic>,
    ) {
        let loaded = &mut self.certificates;
        for certificate in loaded.values_mut() {
            certificate.used = false;
        }
        for key in &self.reporting {
            let (Some(memo), Some(item)) = (
                self.routes.get(key),
                store.visible_ingress_route(&key.0, &key.1, &key.2),
            ) else {
                continue;
            };
            memo.output.report(&item, certs, diags, |ns, secret| {
                let revision = store.secret_revision(ns, secret);
                let entry = loaded
                    .entry((ns.to_string(), secret.to_string()))
                    .or_insert_with(|| LoadedCertificate {
                        revision,
                        blocks: certificate_blocks(store, ns, secret),
                        used: true,
                    });
                if entry.revision != revision {
                    entry.revision = revision;
                    entry.blocks = certificate_blocks(store, ns, secret);
                }
                entry.used = true;
                entry.blocks.clone()
            });
        }
        loaded.retain(|_, certificate| certificate.used);
    }
}

fn route_key(item: &Item<'_, IngressRoute>) -> RouteKey {
    let meta = &item.obj.metadata;
    (
        item.manifest.api_group.clone(),
        meta.ns().to_string(),
        meta.name.clone(),
    )
}

fn link<K: std::hash::Hash + Eq>(index: &mut HashMap<K, Vec<Route>>, what: K, route: &Route) {
    let routes = index.entry(what).or_default();
    if !routes.contains(route) {
        routes.push(route.clone());
    }
}

fn unlink<K: std::hash::Hash + Eq + ?Sized, Q>(
    index: &mut HashMap<Q, Vec<Route>>,
    what: &K,
    route: &Route,
) where
    Q: std::hash::Hash + Eq + std::borrow::Borrow<K>,
{
    if let Some(routes) = index.get_mut(what) {
        routes.retain(|r| r != route);
        if routes.is_empty() {
            index.remove(what);
        }
    }
}

impl Sources {
    /// Adds the names a route produces.
    fn contribute(&mut self, route: &Route, output: &RouteOutput, unsettled: &mut Unsettled) {
        for (name, _) in &output.routers {
            link(&mut self.routers, name.clone(), route);
            unsettled.routers.push(name.clone());
        }
        for (name, _) in &output.services {
            link(&mut self.services, name.clone(), route);
            unsettled.services.push(name.clone());
        }
    }

    /// Removes the names a route produced.
    fn withdraw(&mut self, route: &Route, output: &RouteOutput, unsettled: &mut Unsettled) {
        for (name, _) in &output.routers {
            unlink(&mut self.routers, name.as_str(), route);
            unsettled.routers.push(name.clone());
        }
        for (name, _) in &output.services {
            unlink(&mut self.services, name.as_str(), route);
            unsettled.services.push(name.clone());
        }
    }

    /// The router of this name: the one of the last route producing it.
    fn router<'m>(&self, name: &str, routes: &'m HashMap<Route, Memo>) -> Option<&'m Router> {
        named(&last(self.routers.get(name), routes)?.output.routers, name)
    }

    /// The service of this name: the one of the last route producing it.
    fn service<'m>(
        &self,
        name: &str,
        routes: &'m HashMap<Route, Memo>,
    ) -> Option<&'m sluice_config::dynamic::Service> {
        named(
            &last(self.services.get(name), routes)?.output.services,
            name,
        )
    }

    /// Every route's routers and services in turn, the later replacing the earlier; the maps
    /// are built at once from sorted names.
    fn fold(&self, routes: &HashMap<Route, Memo>) -> (BTreeMap<String, Router>, Services) {
        let mut ordered: Vec<(&Route, &Memo)> = routes.iter().collect();
        ordered.sort_unstable_by(|a, b| a.0.cmp(b.0));
        (
            last_of_each(ordered.iter().flat_map(|(_, m)| &m.output.routers)),
            last_of_each(ordered.iter().flat_map(|(_, m)| &m.output.services)),
        )
    }
}

/// The entry of `name` in a list sorted by name.
fn named<'m, V>(entries: &'m [(String, V)], name: &str) -> Option<&'m V> {
    let at = entries
        .binary_search_by(|(n, _)| n.as_str().cmp(name))
        .ok()?;
    Some(&entries[at].1)
}

/// The memo of the route that comes last among `sources`.
fn last<'m>(sources: Option<&Vec<Route>>, routes: &'m HashMap<Route, Memo>) -> Option<&'m Memo> {
    routes.get(sources?.iter().max()?)
}

/// A map of `entries`, the last of equal names winning.
fn last_of_each<'m, V: Clone + 'm>(
    entries: impl Iterator<Item = &'m (String, V)>,
) -> BTreeMap<String, V> {
    let mut entries: Vec<(&String, &V)> = entries.map(|(name, value)| (name, value)).collect();
    // Stable: equal names stay in the routes' order.
    entries.sort_by(|a, b| a.0.cmp(b.0));
    let mut unique: Vec<(String, V)> = Vec::with_capacity(entries.len());
    for (i, (name, value)) in entries.iter().enumerate() {
        if entries.get(i + 1).is_none_or(|next| next.0 != *name) {
            unique.push(((*name).clone(), (*value).clone()));
        }
    }
    unique.into_iter().collect()
}

/// Names once each, in order.
fn sorted(mut names: Vec<String>) -> Vec<String> {
    names.sort_unstable();
    names.dedup();
    names
}

fn put<V: Clone>(map: &mut BTreeMap<String, V>, name: String, value: Option<&V>) {
    match value {
        Some(v) => {
            map.insert(name, v.clone());
        }
        None => {
            map.remove(&name);
        }
    }
}
