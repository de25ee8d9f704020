//! A reflector that keeps decoded objects: what each watcher has seen, applied event by event,
//! with the relist semantics of kube's reflector (a new initial list replaces the set
//! atomically at `InitDone`, so deletions missed during an outage disappear then).
//!
//! Objects are decoded once, when their event arrives, so building a snapshot never decodes.
//! Each decoded content gets a [`Revision`] from one counter for the whole process, kept while
//! the object stays the same (a relist or a repeated event does not renumber it). Removals get
//! one too, so a reflector can say what changed since a given revision
//! ([`Reflector::changes_since`]): what lets the translation redo only what a change touches.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use kube::core::DynamicObject;
use kube::runtime::watcher::Event;
use sluice_config::Diagnostic;
use sluice_crd::{Manifest, Revision, Versioned, SERVICE_NAME_LABEL};

use crate::kinds::Kind;

/// Stands in for a file name in diagnostics about objects read from the API.
pub const ORIGIN: &str = "kubernetes";

/// Namespace and name.
type Key = (String, String);

/// The next revision handed out (shared by every reflector, so revisions never repeat).
static NEXT_REVISION: AtomicU64 = AtomicU64::new(1);

/// The next reflector identity.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Stands for "not numbered yet" in a relist in progress.
const PENDING: Revision = 0;

/// Removals remembered at least, whatever the number of objects.
const MIN_REMOVALS: usize = 1024;

/// A new revision, higher than every one handed out before.
fn next_revision() -> Revision {
    NEXT_REVISION.fetch_add(1, Ordering::Relaxed)
}

/// The highest revision handed out so far: every object or removal numbered later comes
/// after it.
pub fn latest_revision() -> Revision {
    NEXT_REVISION.load(Ordering::Relaxed) - 1
}

/// A decoded object and its revision. Boxed: map nodes hold room for several entries, and
/// objects are large.
#[derive(Debug)]
struct Stored {
    manifest: Box<Manifest>,
    revision: Revision,
}

/// The objects of one watcher (one kind, one namespace or all).
#[derive(Debug)]
pub struct Reflector {
    /// The watched kind: list items of built-in kinds come without `apiVersion`/`kind`.
    kind: Kind,
    /// Tells reflectors apart.
    id: u64,
    /// By namespace then name: iterated in the order translation wants, and looked up without
    /// building keys.
    objects: BTreeMap<String, BTreeMap<String, Stored>>,
    len: usize,
    /// EndpointSlices' names by namespace and the Service of their
    /// `kubernetes.io/service-name` label.
    slices: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
    /// Objects that failed to decode, with why (reported in every snapshot).
    rejected: BTreeMap<Key, Diagnostic>,
    /// The relist in progress, between `Init` and `InitDone`.
    relist: Option<(BTreeMap<Key, Stored>, BTreeMap<Key, Diagnostic>)>,
    /// Whether a first full list has arrived.
    synced: bool,
    journal: Journal,
}

/// What changed, by revision: each present object under its revision, and the latest
/// removals.
#[derive(Debug, Default)]
struct Journal {
    present: BTreeMap<Revision, Key>,
    /// Oldest first; the oldest are forgotten beyond a bound.
    removed: BTreeMap<Revision, Key>,
    removed_at: HashMap<Key, Revision>,
    /// Removals numbered up to this one may have been forgotten.
    forgotten: Revision,
}

impl Journal {
    fn added(&mut self, key: &Key, revision: Revision) {
        if let Some(at) = self.removed_at.remove(key) {
            self.removed.remove(&at);
        }
        self.present.insert(revision, key.clone());
    }

    fn removed(&mut self, key: Key, revision: Revision, bound: usize) {
        self.present.remove(&revision);
        let at = next_revision();
        self.removed_at.insert(key.clone(), at);
        self.removed.insert(at, key);
        while self.removed.len() > bound {
            if let Some((at, key)) = self.removed.pop_first() {
                self.removed_at.remove(&key);
                self.forgotten = at;
            }
        }
    }
}

/// What an event did to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Nothing visible changed (relist in progress, or the same object again).
    Nothing,
    /// The set of objects changed.
    Changed,
}

impl Reflector {
    /// An empty store for `kind`.
    pub fn new(kind: Kind) -> Self {
        Reflector {
            kind,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            objects: BTreeMap::new(),
            len: 0,
            slices: BTreeMap::new(),
            rejected: BTreeMap::new(),
            relist: None,
            synced: false,
            journal: Journal::default(),
        }
    }

    /// Applies one watcher event.
    pub fn apply(&mut self, event: Event<DynamicObject>) -> Applied {
        match event {
            Event::Init => {
                self.relist = Some(Default::default());
                Applied::Nothing
            }
            Event::InitApply(object) => {
                if self.relist.is_none() {
                    return Applied::Nothing;
                }
                let key = key(&object);
                let decoded = decode(self.kind, &object);
                // Numbered at InitDone if new or changed: it is not visible before.
                let revision = match (&decoded, self.get_stored(&key.0, &key.1)) {
                    (Some(Ok(manifest)), Some(p)) if *p.manifest == *manifest => p.revision,
                    _ => PENDING,
                };
                if let Some((objects, rejected)) = self.relist.as_mut() {
                    match decoded {
                        Some(Ok(manifest)) => {
                            rejected.remove(&key);
                            let manifest = Box::new(manifest);
                            objects.insert(key, Stored { manifest, revision });
                        }
                        Some(Err(diagnostic)) => {
                            objects.remove(&key);
                            rejected.insert(key, diagnostic);
                        }
                        None => {}
                    }
                }
                Applied::Nothing
            }
            Event::InitDone => {
                if let Some((objects, rejected)) = self.relist.take() {
                    self.replace(objects);
                    self.rejected = rejected;
                }
                self.synced = true;
                Applied::Changed
            }
            Event::Apply(object) => {
                let key = key(&object);
                match decode(self.kind, &object) {
                    Some(Ok(manifest)) => {
                        let was_rejected = self.rejected.remove(&key).is_some();
                        let changed = self.put(key, manifest);
                        if changed || was_rejected {
                            Applied::Changed
                        } else {
                            Applied::Nothing
                        }
                    }
                    Some(Err(diagnostic)) => {
                        self.remove(&key);
                        self.rejected.insert(key, diagnostic);
                        Applied::Changed
                    }
                    None => Applied::Nothing,
                }
            }
            Event::Delete(object) => {
                let key = key(&object);
                let removed = self.remove(&key);
                let rejected = self.rejected.remove(&key).is_some();
                if removed || rejected {
                    Applied::Changed
                } else {
                    Applied::Nothing
                }
            }
        }
    }

    /// Stores `manifest` under `key`; false when the same object was there already.
    fn put(&mut self, key: Key, manifest: Manifest) -> bool {
        if let Some(previous) = self.get_stored(&key.0, &key.1) {
            if *previous.manifest == manifest {
                return false;
            }
        }
        self.remove_quietly(&key);
        let revision = next_revision();
        self.journal.added(&key, revision);
        self.index_slice(&key, &manifest, true);
        self.objects.entry(key.0).or_default().insert(
            key.1,
            Stored {
                manifest: Box::new(manifest),
                revision,
            },
        );
        self.len += 1;
        true
    }

    /// Removes `key`, noting the removal; false when absent.
    fn remove(&mut self, key: &Key) -> bool {
        match self.remove_quietly(key) {
            Some(revision) => {
                let bound = MIN_REMOVALS.max(self.len);
                self.journal.removed(key.clone(), revision, bound);
                true
            }
            None => false,
        }
    }

    /// Takes `key` out of the maps; its revision if it was there.
    fn remove_quietly(&mut self, key: &Key) -> Option<Revision> {
        let names = self.objects.get_mut(&key.0)?;
        let stored = names.remove(&key.1)?;
        if names.is_empty() {
            self.objects.remove(&key.0);
        }
        self.len -= 1;
        self.journal.present.remove(&stored.revision);
        self.index_slice(key, &stored.manifest, false);
        Some(stored.revision)
    }

    /// Replaces every object with a relist's, numbering new and changed ones and noting the
    /// removal of those gone.
    fn replace(&mut self, relisted: BTreeMap<Key, Stored>) {
        let gone: Vec<(Key, Revision)> = self
            .objects
            .iter()
            .flat_map(|(ns, names)| {
                names.iter().filter_map(|(name, stored)| {
                    let key = (ns.clone(), name.clone());
                    (!relisted.contains_key(&key)).then_some((key, stored.revision))
                })
            })
            .collect();
        self.objects.clear();
        self.slices.clear();
        self.journal.present.clear();
        self.len = 0;
        for (key, mut stored) in relisted {
            if stored.revision == PENDING {
                stored.revision = next_revision();
            }
            self.journal.added(&key, stored.revision);
            self.index_slice(&key, &stored.manifest, true);
            self.objects.entry(key.0).or_default().insert(key.1, stored);
            self.len += 1;
        }
        let bound = MIN_REMOVALS.max(self.len);
        for (key, revision) in gone {
            self.journal.removed(key, revision, bound);
        }
    }

    /// Adds (or removes) an EndpointSlice to the index by Service.
    fn index_slice(&mut self, key: &Key, manifest: &Manifest, add: bool) {
        if !matches!(manifest.object, sluice_crd::Object::EndpointSlice(_)) {
            return;
        }
        let Some(service) = manifest.object.meta().labels.get(SERVICE_NAME_LABEL) else {
            return;
        };
        if add {
            self.slices
                .entry(key.0.clone())
                .or_default()
                .entry(service.to_string())
                .or_default()
                .insert(key.1.clone());
        } else if let Some(services) = self.slices.get_mut(&key.0) {
            if let Some(names) = services.get_mut(service) {
                names.remove(&key.1);
                if names.is_empty() {
                    services.remove(service);
                }
            }
            if services.is_empty() {
                self.slices.remove(&key.0);
            }
        }
    }

    fn get_stored(&self, namespace: &str, name: &str) -> Option<&Stored> {
        self.objects.get(namespace)?.get(name)
    }

    /// Counts as listed, empty: the kind is not installed in the cluster (its list is 404), so
    /// waiting for it would never end. Its watcher keeps retrying, and fills the store if the
    /// CRD is installed later.
    pub fn mark_absent(&mut self) -> Applied {
        if self.synced {
            Applied::Nothing
        } else {
            self.synced = true;
            Applied::Changed
        }
    }

    /// Whether the first full list has arrived.
    pub fn synced(&self) -> bool {
        self.synced
    }

    /// The watched kind.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Tells this reflector from every other of the process.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The decoded objects, by namespace and name.
    pub fn objects(&self) -> impl Iterator<Item = &Manifest> {
        self.objects
            .values()
            .flat_map(|names| names.values().map(|s| &*s.manifest))
    }

    /// The decoded objects with their revisions, by namespace and name.
    pub fn versioned(&self) -> impl Iterator<Item = Versioned<'_>> {
        self.objects
            .values()
            .flat_map(|names| names.values().map(versioned))
    }

    /// One object.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Versioned<'_>> {
        self.get_stored(namespace, name).map(versioned)
    }

    /// The EndpointSlices of a Service (by their `kubernetes.io/service-name` label), by name.
    pub fn endpoint_slices(&self, namespace: &str, service: &str) -> Vec<Versioned<'_>> {
        self.slices
            .get(namespace)
            .and_then(|services| services.get(service))
            .into_iter()
            .flatten()
            .filter_map(|name| self.get(namespace, name))
            .collect()
    }

    /// Namespace and name of every object added, changed or removed after revision `since`
    /// (once each); `None` when removals that old are forgotten.
    pub fn changes_since(&self, since: Revision) -> Option<Vec<(&str, &str)>> {
        if since < self.journal.forgotten {
            return None;
        }
        let after = since.saturating_add(1);
        Some(
            self.journal
                .present
                .range(after..)
                .chain(self.journal.removed.range(after..))
                .map(|(_, (ns, name))| (ns.as_str(), name.as_str()))
                .collect(),
        )
    }

    /// Why some objects could not be used, by namespace and name.
    pub fn rejected(&self) -> impl Iterator<Item = &Diagnostic> {
        self.rejected.values()
    }

    /// Number of stored objects.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

fn versioned(stored: &Stored) -> Versioned<'_> {
    Versioned {
        manifest: &stored.manifest,
        revision: stored.revision,
    }
}

fn key(object: &DynamicObject) -> Key {
    (
        object.metadata.namespace.clone().unwrap_or_default(),
        object.metadata.name.clone().unwrap_or_default(),
    )
}

/// Decodes one object: `None` for a kind Sluice does not read, an error naming what is wrong
/// for a malformed one.
fn decode(kind: Kind, object: &DynamicObject) -> Option<Result<Manifest, Diagnostic>> {
    match serde_json::to_value(object) {
        Ok(mut value) => {
            value["apiVersion"] = kind.api_version().into();
            value["kind"] = kind.kind.into();
            sluice_crd::manifest_from_json(&value, Path::new(ORIGIN))
        }
        Err(error) => Some(Err(Diagnostic::error(format!(
            "cannot re-encode the object: {error}"
        )))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // As listed by the API server: no apiVersion/kind on items of built-in kinds.
    fn service(name: &str, port: serde_json::Value) -> DynamicObject {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"ports": [{"port": port}]}
        }))
        .unwrap()
    }

    #[test]
    fn relist_replaces_the_set_at_init_done() {
        let mut store = Reflector::new(crate::kinds::SERVICE);
        store.apply(Event::Init);
        store.apply(Event::InitApply(service("a", 80.into())));
        assert!(!store.synced());
        assert_eq!(store.apply(Event::InitDone), Applied::Changed);
        assert_eq!(store.len(), 1);
        store.apply(Event::Apply(service("b", 80.into())));
        assert_eq!(store.len(), 2);
        // A relist that no longer has `a`: kept until InitDone, then gone.
        store.apply(Event::Init);
        store.apply(Event::InitApply(service("b", 80.into())));
        assert_eq!(store.len(), 2);
        store.apply(Event::InitDone);
        let names: Vec<_> = store
            .objects()
            .map(|m| m.object.meta().name.clone())
            .collect();
        assert_eq!(names, ["b"]);
    }

    #[test]
    fn the_same_object_again_changes_nothing_and_bad_objects_are_reported() {
        let mut store = Reflector::new(crate::kinds::SERVICE);
        store.apply(Event::InitDone);
        assert_eq!(
            store.apply(Event::Apply(service("a", 80.into()))),
            Applied::Changed
        );
        assert_eq!(
            store.apply(Event::Apply(service("a", 80.into()))),
            Applied::Nothing
        );
        assert_eq!(
            store.apply(Event::Apply(service("a", serde_json::json!([1])))),
            Applied::Changed
        );
        assert!(store.is_empty());
        let d: Vec<_> = store.rejected().collect();
        assert_eq!(d[0].resource.as_deref(), Some("Service default/a"));
        assert_eq!(d[0].field.as_deref(), Some("spec.ports[0].port"));
        assert_eq!(
            store.apply(Event::Delete(service("a", 80.into()))),
            Applied::Changed
        );
        assert_eq!(store.rejected().count(), 0);
    }

    fn revisions(store: &Reflector) -> Vec<Revision> {
        store.versioned().map(|v| v.revision).collect()
    }

    #[test]
    fn revisions_change_with_the_content_only() {
        let mut store = Reflector::new(crate::kinds::SERVICE);
        store.apply(Event::Init);
        store.apply(Event::InitApply(service("a", 80.into())));
        store.apply(Event::InitApply(service("b", 80.into())));
        store.apply(Event::InitDone);
        let first = revisions(&store);
        assert_ne!(first[0], first[1]);

        // The same objects again, as events or as a relist: same revisions.
        store.apply(Event::Apply(service("a", 80.into())));
        store.apply(Event::Init);
        store.apply(Event::InitApply(service("a", 80.into())));
        store.apply(Event::InitApply(service("b", 80.into())));
        store.apply(Event::InitDone);
        assert_eq!(revisions(&store), first);

        // Another content: a new revision, never used before; the other keeps its own.
        store.apply(Event::Apply(service("b", 81.into())));
        let second = revisions(&store);
        assert_eq!(second[0], first[0]);
        assert!(second[1] > first[1]);
        // Back to the first content: still a new revision (the cache may hold the old one).
        store.apply(Event::Apply(service("b", 80.into())));
        assert!(revisions(&store)[1] > second[1]);
    }

    fn names(changes: Option<Vec<(&str, &str)>>) -> Option<Vec<String>> {
        changes.map(|c| c.into_iter().map(|(_, name)| name.to_string()).collect())
    }

    #[test]
    fn changes_since_a_revision_name_each_object_once() {
        let mut store = Reflector::new(crate::kinds::SERVICE);
        store.apply(Event::InitDone);
        store.apply(Event::Apply(service("a", 80.into())));
        store.apply(Event::Apply(service("b", 80.into())));
        let since = latest_revision();
        assert_eq!(names(store.changes_since(since)), Some(vec![]));

        // Changed twice, the same again, removed, added: each named once.
        store.apply(Event::Apply(service("a", 81.into())));
        store.apply(Event::Apply(service("a", 82.into())));
        store.apply(Event::Apply(service("b", 80.into())));
        store.apply(Event::Delete(service("b", 80.into())));
        store.apply(Event::Apply(service("c", 80.into())));
        let mut changed = names(store.changes_since(since)).unwrap();
        changed.sort();
        assert_eq!(changed, ["a", "b", "c"]);

        // A relist changing nothing changes nothing; one without `c` removes it.
        let since = latest_revision();
        store.apply(Event::Init);
        store.apply(Event::InitApply(service("a", 82.into())));
        store.apply(Event::InitApply(service("c", 80.into())));
        store.apply(Event::InitDone);
        assert_eq!(names(store.changes_since(since)), Some(vec![]));
        store.apply(Event::Init);
        store.apply(Event::InitApply(service("a", 82.into())));
        store.apply(Event::InitDone);
        assert_eq!(
            names(store.changes_since(since)),
            Some(vec!["c".to_string()])
        );
    }

    #[test]
    fn old_removals_are_forgotten_and_said_so() {
        let mut store = Reflector::new(crate::kinds::SERVICE);
        store.apply(Event::InitDone);
        let since = latest_revision();
        for i in 0..MIN_REMOVALS + 10 {
            store.apply(Event::Apply(service(&format!("s{i}"), 80.into())));
            store.apply(Event::Delete(service(&format!("s{i}"), 80.into())));
        }
        assert_eq!(store.changes_since(since), None);
        // Changes after the forgotten ones are still known.
        let recent = latest_revision();
        store.apply(Event::Apply(service("new", 80.into())));
        assert_eq!(
            names(store.changes_since(recent)),
            Some(vec!["new".to_string()])
        );
    }
}
