//! A reflector that keeps decoded objects: what each watcher has seen, applied event by event,
//! with the relist semantics of kube's reflector (a new initial list replaces the set
//! atomically at `InitDone`, so deletions missed during an outage disappear then).
//!
//! Objects are decoded once, when their event arrives, so building a snapshot never decodes.

use std::collections::HashMap;
use std::path::Path;

use kube::core::DynamicObject;
use kube::runtime::watcher::Event;
use sluice_config::Diagnostic;
use sluice_crd::Manifest;

use crate::kinds::Kind;

/// Stands in for a file name in diagnostics about objects read from the API.
pub const ORIGIN: &str = "kubernetes";

type Key = (String, String);

/// The objects of one watcher (one kind, one namespace or all).
#[derive(Debug)]
pub struct Reflector {
    /// The watched kind: list items of built-in kinds come without `apiVersion`/`kind`.
    kind: Kind,
    objects: HashMap<Key, Manifest>,
    /// Objects that failed to decode, with why (reported in every snapshot).
    rejected: HashMap<Key, Diagnostic>,
    /// The relist in progress, between `Init` and `InitDone`.
    relist: Option<(HashMap<Key, Manifest>, HashMap<Key, Diagnostic>)>,
    /// Whether a first full list has arrived.
    synced: bool,
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
            objects: HashMap::new(),
            rejected: HashMap::new(),
            relist: None,
            synced: false,
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
                if let Some((objects, rejected)) = self.relist.as_mut() {
                    insert(self.kind, objects, rejected, &object);
                }
                Applied::Nothing
            }
            Event::InitDone => {
                if let Some((objects, rejected)) = self.relist.take() {
                    self.objects = objects;
                    self.rejected = rejected;
                }
                self.synced = true;
                Applied::Changed
            }
            Event::Apply(object) => {
                let key = key(&object);
                let before = self.objects.get(&key).cloned();
                insert(self.kind, &mut self.objects, &mut self.rejected, &object);
                if before.as_ref() == self.objects.get(&key) && !self.rejected.contains_key(&key) {
                    Applied::Nothing
                } else {
                    Applied::Changed
                }
            }
            Event::Delete(object) => {
                let key = key(&object);
                let removed = self.objects.remove(&key).is_some();
                let rejected = self.rejected.remove(&key).is_some();
                if removed || rejected {
                    Applied::Changed
                } else {
                    Applied::Nothing
                }
            }
        }
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

    /// The decoded objects.
    pub fn objects(&self) -> impl Iterator<Item = &Manifest> {
        self.objects.values()
    }

    /// Why some objects could not be used.
    pub fn rejected(&self) -> impl Iterator<Item = &Diagnostic> {
        self.rejected.values()
    }

    /// Number of stored objects.
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    /// True when nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }
}

fn key(object: &DynamicObject) -> Key {
    (
        object.metadata.namespace.clone().unwrap_or_default(),
        object.metadata.name.clone().unwrap_or_default(),
    )
}

/// Decodes and stores one object; a malformed one is kept out, with the reason.
fn insert(
    kind: Kind,
    objects: &mut HashMap<Key, Manifest>,
    rejected: &mut HashMap<Key, Diagnostic>,
    object: &DynamicObject,
) {
    let key = key(object);
    let decoded = match serde_json::to_value(object) {
        Ok(mut value) => {
            value["apiVersion"] = kind.api_version().into();
            value["kind"] = kind.kind.into();
            sluice_crd::manifest_from_json(&value, Path::new(ORIGIN))
        }
        Err(error) => Some(Err(Diagnostic::error(format!(
            "cannot re-encode the object: {error}"
        )))),
    };
    match decoded {
        Some(Ok(manifest)) => {
            rejected.remove(&key);
            objects.insert(key, manifest);
        }
        Some(Err(diagnostic)) => {
            objects.remove(&key);
            rejected.insert(key, diagnostic);
        }
        None => {}
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
}
