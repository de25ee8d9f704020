//! Translation that reuses the previous one: what each IngressRoute contributes is kept with
//! the lookups it made in the store (Services, EndpointSlices, Endpoints, Nodes, parent
//! IngressRoutes, ...) and the revisions they found. The next translation takes it again when
//! the route has the same revision and every lookup finds the same revisions; a lookup that
//! found nothing counts too, so a route naming a missing Service is translated again when the
//! Service appears. Everything else (TLS stores and options, middlewares, TraefikServices,
//! transports) is translated every time: few objects, cheap.
//!
//! Routes name middlewares, TLS options, TraefikServices and transports without reading them,
//! so changing one of those never invalidates a route.
//!
//! The routers and services of all routes are kept merged: when several routes produce the
//! same name, the one that comes last wins, as when a full translation inserts them in turn.
//! Only the names produced by changed, new or removed routes are settled again, so a change
//! costs the lookups of every route plus the copy of the result, not a translation of
//! everything.

use std::collections::{BTreeMap, HashMap, HashSet};

use sluice_config::dynamic::Router;
use sluice_config::Diagnostic;

use crate::options::CrdOptions;
use crate::store::{Read, Revision, Store, Versioned};

use super::http::{translate_route, RouteOutput};
use super::services::Services;
use super::tls::{certificate_blocks, Certificates};
use super::{translate_store, Translation};

/// How much of the last translation was reused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reuse {
    /// IngressRoutes whose previous output was taken again.
    pub reused: usize,
    /// IngressRoutes translated (new, changed, or reading something that changed).
    pub translated: usize,
}

/// Keeps what the last translation computed, to translate the next set of objects without
/// redoing what did not change. The result is always the one [`super::translate_refs`] gives
/// for the same objects in the same order.
#[derive(Default)]
pub struct TranslationCache {
    /// The options everything here was computed with (other options start afresh).
    options: Option<CrdOptions>,
    /// Number of translations made, to tell what the last one saw.
    generation: u64,
    /// By IngressRoute revision.
    routes: HashMap<Revision, Memo>,
    /// Certificates loaded for routes, by namespace and Secret name.
    certificates: HashMap<(String, String), LoadedCertificate>,
    merged: Merged,
    reuse: Reuse,
}

/// One IngressRoute's output and how it was obtained.
struct Memo {
    output: RouteOutput,
    /// The lookups the translation made.
    reads: Vec<Read>,
    /// Index among the visible IngressRoutes (the last one, if the route came twice) in the
    /// last translation that saw it.
    position: usize,
    /// Generation of the last translation that saw it.
    seen: u64,
}

/// A Secret's certificate and key, or why they could not be read.
struct LoadedCertificate {
    /// The Secret's revision when loaded (none: absent or not visible).
    revision: Option<Revision>,
    blocks: Result<(String, String), String>,
    seen: u64,
}

/// Routers and services of every route, merged, with the routes producing each name.
#[derive(Default)]
struct Merged {
    routers: BTreeMap<String, Router>,
    services: Services,
    router_sources: HashMap<String, Vec<Revision>>,
    service_sources: HashMap<String, Vec<Revision>>,
}

/// Names whose merged value must be decided again.
#[derive(Default)]
struct Unsettled {
    routers: HashSet<String>,
    services: HashSet<String>,
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

    /// Translates `objects`, reusing what the previous translations computed for routes whose
    /// revision and lookups are unchanged. Revisions must name contents: an object whose
    /// content changed must come with a revision not used before for another content.
    pub fn translate(&mut self, objects: &[Versioned<'_>], options: &CrdOptions) -> Translation {
        if self.options.as_ref() != Some(options) {
            *self = TranslationCache {
                options: Some(options.clone()),
                ..TranslationCache::default()
            };
        }
        self.generation += 1;
        let mut reuse = Reuse::default();
        let translation = translate_store(objects, options, |store, http, certs, diags| {
            reuse = self.update_routes(store, options);
            http.routers = self.merged.routers.clone();
            http.services = self.merged.services.clone();
            self.report_routes(store, certs, diags);
        });
        self.reuse = reuse;
        translation
    }

    /// Brings the memos and the merged routers and services up to date with `store`.
    fn update_routes(&mut self, store: &Store<'_>, options: &CrdOptions) -> Reuse {
        let generation = self.generation;
        let mut reuse = Reuse::default();
        let mut unsettled = Unsettled::default();
        // Reused routes must keep their relative order for the merged values of names they
        // share to stay right; otherwise every shared name is settled again.
        let mut reordered = false;
        let mut last_kept: Option<usize> = None;
        for (position, item) in store.ingress_routes.iter().enumerate() {
            let revision = item.revision;
            if let Some(memo) = self.routes.get_mut(&revision) {
                if memo.seen == generation {
                    // The same object again: it counts where it comes last.
                    memo.position = position;
                    reordered = true;
                    continue;
                }
                if store.finds_the_same(&memo.reads) {
                    reordered |= last_kept.is_some_and(|last| memo.position <= last);
                    last_kept = Some(memo.position);
                    memo.position = position;
                    memo.seen = generation;
                    reuse.reused += 1;
                    continue;
                }
            }
            if let Some(stale) = self.routes.remove(&revision) {
                self.merged
                    .withdraw(revision, &stale.output, &mut unsettled);
            }
            store.record();
            let output = translate_route(store, options, item);
            let reads = store.recorded();
            self.merged.contribute(revision, &output, &mut unsettled);
            self.routes.insert(
                revision,
                Memo {
                    output,
                    reads,
                    position,
                    seen: generation,
                },
            );
            reuse.translated += 1;
        }

        let gone: Vec<Revision> = self
            .routes
            .iter()
            .filter(|(_, memo)| memo.seen != generation)
            .map(|(&revision, _)| revision)
            .collect();
        for revision in gone {
            if let Some(memo) = self.routes.remove(&revision) {
                self.merged.withdraw(revision, &memo.output, &mut unsettled);
            }
        }

        if reordered {
            let shared = |sources: &HashMap<String, Vec<Revision>>| -> Vec<String> {
                sources
                    .iter()
                    .filter(|(_, routes)| routes.len() > 1)
                    .map(|(name, _)| name.clone())
                    .collect()
            };
            unsettled
                .routers
                .extend(shared(&self.merged.router_sources));
            unsettled
                .services
                .extend(shared(&self.merged.service_sources));
        }
        self.merged.settle(unsettled, &self.routes);
        reuse
    }

    /// Reports every route's diagnostics and certificate, in order; certificates are loaded
    /// again only when their Secret changed.
    fn report_routes(
        &mut self,
        store: &Store<'_>,
        certs: &mut Certificates,
        diags: &mut Vec<Diagnostic>,
    ) {
        let generation = self.generation;
        let loaded = &mut self.certificates;
        for item in &store.ingress_routes {
            let Some(memo) = self.routes.get(&item.revision) else {
                continue;
            };
            memo.output.report(item, certs, diags, |ns, secret| {
                let revision = store.secret_revision(ns, secret);
                let entry = loaded
                    .entry((ns.to_string(), secret.to_string()))
                    .or_insert_with(|| LoadedCertificate {
                        revision,
                        blocks: certificate_blocks(store, ns, secret),
                        seen: generation,
                    });
                if entry.revision != revision {
                    entry.revision = revision;
                    entry.blocks = certificate_blocks(store, ns, secret);
                }
                entry.seen = generation;
                entry.blocks.clone()
            });
        }
        loaded.retain(|_, certificate| certificate.seen == generation);
    }
}

impl Merged {
    /// Adds the names a route produces.
    fn contribute(&mut self, revision: Revision, output: &RouteOutput, unsettled: &mut Unsettled) {
        for name in output.routers.keys() {
            add_source(&mut self.router_sources, name, revision);
            unsettled.routers.insert(name.clone());
        }
        for name in output.services.keys() {
            add_source(&mut self.service_sources, name, revision);
            unsettled.services.insert(name.clone());
        }
    }

    /// Removes the names a route produced.
    fn withdraw(&mut self, revision: Revision, output: &RouteOutput, unsettled: &mut Unsettled) {
        for name in output.routers.keys() {
            remove_source(&mut self.router_sources, name, revision);
            unsettled.routers.insert(name.clone());
        }
        for name in output.services.keys() {
            remove_source(&mut self.service_sources, name, revision);
            unsettled.services.insert(name.clone());
        }
    }

    /// Decides the value of each unsettled name: the one of the last route producing it.
    fn settle(&mut self, unsettled: Unsettled, routes: &HashMap<Revision, Memo>) {
        for name in unsettled.routers {
            let value = last_source(&self.router_sources, &name, routes)
                .and_then(|memo| memo.output.routers.get(&name));
            put(&mut self.routers, name, value);
        }
        for name in unsettled.services {
            let value = last_source(&self.service_sources, &name, routes)
                .and_then(|memo| memo.output.services.get(&name));
            put(&mut self.services, name, value);
        }
    }
}

fn add_source(sources: &mut HashMap<String, Vec<Revision>>, name: &str, revision: Revision) {
    match sources.get_mut(name) {
        Some(routes) => routes.push(revision),
        None => {
            sources.insert(name.to_string(), vec![revision]);
        }
    }
}

fn remove_source(sources: &mut HashMap<String, Vec<Revision>>, name: &str, revision: Revision) {
    if let Some(routes) = sources.get_mut(name) {
        routes.retain(|&r| r != revision);
        if routes.is_empty() {
            sources.remove(name);
        }
    }
}

/// The memo of the route that comes last among those producing `name`.
fn last_source<'m>(
    sources: &HashMap<String, Vec<Revision>>,
    name: &str,
    routes: &'m HashMap<Revision, Memo>,
) -> Option<&'m Memo> {
    sources
        .get(name)?
        .iter()
        .filter_map(|revision| routes.get(revision))
        .max_by_key(|memo| memo.position)
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
