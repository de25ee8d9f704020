//! The reflectors' objects translated, reusing the previous translation: the reflectors are
//! read in place (nothing is copied or indexed again), and the changes since the previous
//! translation, which the reflectors keep by revision, tell the [`TranslationCache`] which
//! routes to translate again.

use std::collections::HashMap;

use sluice_crd::{
    CachedTranslation, CrdOptions, ObjectRef, Objects, Reuse, Revision, TranslationCache, Versioned,
};

use crate::store::{latest_revision, Reflector};

/// Translates the objects of a set of reflectors again and again.
#[derive(Default)]
pub struct Translator {
    cache: TranslationCache,
    /// The reflectors of the previous translation, and the latest revision then.
    previous: Option<(Vec<u64>, Revision)>,
}

impl Translator {
    /// A translator that has translated nothing yet.
    pub fn new() -> Self {
        Translator::default()
    }

    /// Translates the objects of `stores`: only what changed since the previous call is
    /// translated again, unless the reflectors are not the same ones (then every route's
    /// lookups are checked).
    pub fn translate(&mut self, stores: &[&Reflector], options: &CrdOptions) -> CachedTranslation {
        let latest = latest_revision();
        let mut ids: Vec<u64> = stores.iter().map(|s| s.id()).collect();
        ids.sort_unstable();
        let changes = match &self.previous {
            Some((previous, since)) if *previous == ids => changes_since(stores, *since),
            _ => None,
        };
        let objects = Stores::new(stores);
        let translation = self.cache.translate(&objects, changes.as_deref(), options);
        self.previous = Some((ids, latest));
        translation
    }

    /// What the last translation reused.
    pub fn last_reuse(&self) -> Reuse {
        self.cache.last_reuse()
    }
}

/// Every object of `stores` changed after revision `since`; `None` when some reflector forgot.
fn changes_since<'a>(stores: &[&'a Reflector], since: Revision) -> Option<Vec<ObjectRef<'a>>> {
    let mut changes = Vec::new();
    for store in stores {
        let kind = store.kind();
        changes.extend(
            store
                .changes_since(since)?
                .into_iter()
                .map(|(namespace, name)| ObjectRef {
                    kind: kind.kind,
                    group: kind.group,
                    namespace,
                    name,
                }),
        );
    }
    Some(changes)
}

/// Several reflectors seen as one set of objects.
struct Stores<'a> {
    /// Reflectors by kind and API group.
    groups: Vec<Vec<&'a Reflector>>,
    index: HashMap<(&'static str, &'static str), usize>,
}

impl<'a> Stores<'a> {
    fn new(stores: &[&'a Reflector]) -> Self {
        let mut all = Stores {
            groups: Vec::new(),
            index: HashMap::new(),
        };
        for store in stores {
            let kind = store.kind();
            let at = *all.index.entry((kind.kind, kind.group)).or_insert_with(|| {
                all.groups.push(Vec::new());
                all.groups.len() - 1
            });
            all.groups[at].push(store);
        }
        all
    }

    fn of(&self, kind: &str, group: &str) -> &[&'a Reflector] {
        match self.index.get(&(kind, group)) {
            Some(&at) => &self.groups[at],
            None => &[],
        }
    }
}

/// Several reflectors' objects of one kind (one per namespace, or the same namespace watched
/// twice) in one list, by namespace and name.
fn merged<'a>(
    lists: impl Iterator<Item = Vec<Versioned<'a>>>,
    several: bool,
) -> Vec<Versioned<'a>> {
    let mut all: Vec<Versioned<'a>> = lists.flatten().collect();
    if several {
        let key = |v: &Versioned<'a>| {
            let meta = v.manifest.object.meta();
            (meta.ns().to_string(), meta.name.clone())
        };
        all.sort_by_cached_key(key);
        all.dedup_by(|a, b| key(a) == key(b));
    }
    all
}

impl Objects for Stores<'_> {
    fn list(&self, kind: &str, group: &str) -> Vec<Versioned<'_>> {
        let stores = self.of(kind, group);
        merged(
            stores.iter().map(|s| s.versioned().collect()),
            stores.len() > 1,
        )
    }

    fn get(&self, kind: &str, group: &str, namespace: &str, name: &str) -> Option<Versioned<'_>> {
        self.of(kind, group)
            .iter()
            .find_map(|s| s.get(namespace, name))
    }

    fn endpoint_slices(&self, namespace: &str, service: &str) -> Vec<Versioned<'_>> {
        let stores = self.of("EndpointSlice", crate::kinds::ENDPOINT_SLICE.group);
        merged(
            stores.iter().map(|s| s.endpoint_slices(namespace, service)),
            stores.len() > 1,
        )
    }
}

#[cfg(test)]
mod tests {
    use kube::core::DynamicObject;
    use kube::runtime::watcher::Event;
    use serde_json::{json, Value};
    use sluice_crd::Manifest;

    use super::*;
    use crate::kinds::{self, Kind};
    use crate::watch;

    /// xorshift64*: deterministic, no dependency.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n as u64) as usize
        }
    }

    fn object(value: Value) -> DynamicObject {
        serde_json::from_value(value).unwrap()
    }

    /// A random object of `kind` named `name` in namespace `a` (sometimes malformed).
    fn random(rng: &mut Rng, kind: Kind, name: &str) -> DynamicObject {
        let meta = json!({"name": name, "namespace": "a"});
        match kind.kind {
            "Service" => {
                let port = [json!(80), json!(80), json!(81), json!([80])][rng.below(4)].clone();
                object(json!({"metadata": meta,
                              "spec": {"ports": [{"name": "http", "port": port}]}}))
            }
            "EndpointSlice" => {
                let mut meta = meta;
                meta["labels"] =
                    json!({"kubernetes.io/service-name": format!("s{}", rng.below(3))});
                object(json!({"metadata": meta, "addressType": "IPv4",
                              "ports": [{"name": "http", "port": 8080}],
                              "endpoints": [{"addresses": [format!("10.0.0.{}", rng.below(4))]}]}))
            }
            _ => {
                let mut spec = json!({"routes": [{
                    "match": format!("Host(`{}`)", ["x", "y"][rng.below(2)]), "kind": "Rule",
                    "services": [{"name": format!("s{}", rng.below(3)), "port": 80},
                                 {"name": format!("s{}", rng.below(3)), "port": 80}]}]});
                if rng.below(5) == 0 {
                    spec["parentRefs"] = json!([{"name": format!("r{}", rng.below(3))}]);
                }
                object(json!({"apiVersion": kind.api_version(), "kind": kind.kind,
                              "metadata": meta, "spec": spec}))
            }
        }
    }

    #[test]
    fn reflector_changes_translate_as_from_scratch() {
        let kinds = [
            kinds::find("traefik.io/v1alpha1", "IngressRoute").unwrap(),
            kinds::find("traefik.containo.us/v1alpha1", "IngressRoute").unwrap(),
            kinds::SERVICE,
            kinds::ENDPOINT_SLICE,
        ];
        let prefixes = ["r", "r", "s", "e"];
        let mut stores: Vec<Reflector> = kinds.iter().map(|&k| Reflector::new(k)).collect();
        for store in &mut stores {
            store.apply(Event::InitDone);
        }
        let options = CrdOptions::default();
        let mut translator = Translator::new();
        let mut rng = Rng(0x5EED);
        let mut reused = 0;
        let mut published: Option<watch::Snapshot> = None;
        for step in 0..400 {
            let which = rng.below(kinds.len());
            let name = format!("{}{}", prefixes[which], rng.below(3));
            let store = &mut stores[which];
            match rng.below(10) {
                0 | 1 => {
                    store.apply(Event::Delete(object(
                        json!({"metadata": {"name": name, "namespace": "a"}}),
                    )));
                }
                2 => {
                    // A relist: some objects again, some changed, the others gone.
                    store.apply(Event::Init);
                    for i in 0..3 {
                        if rng.below(2) == 0 {
                            let relisted =
                                random(&mut rng, kinds[which], &format!("{}{i}", prefixes[which]));
                            store.apply(Event::InitApply(relisted));
                        }
                    }
                    store.apply(Event::InitDone);
                }
                _ => {
                    store.apply(Event::Apply(random(&mut rng, kinds[which], &name)));
                }
            }
            let snapshot = watch::build(&mut translator, stores.iter(), &options, step);
            reused += snapshot.reuse.reused;

            let mut all: Vec<&Manifest> = stores.iter().flat_map(|s| s.objects()).collect();
            all.sort_by_key(|m| {
                let meta = m.object.meta();
                (
                    m.object.kind(),
                    m.api_group.clone(),
                    meta.ns().to_string(),
                    meta.name.clone(),
                )
            });
            let expected = sluice_crd::translate_refs(&all, &options);
            let mut diagnostics: Vec<_> =
                stores.iter().flat_map(|s| s.rejected()).cloned().collect();
            diagnostics.extend(expected.diagnostics);
            assert_eq!(
                *snapshot.config, expected.config,
                "configuration differs at step {step}"
            );
            assert_eq!(
                snapshot.diagnostics, diagnostics,
                "diagnostics differ at step {step}"
            );
            if let Some(previous) = &published {
                assert_eq!(
                    snapshot.changed,
                    snapshot.config != previous.config,
                    "`changed` is wrong at step {step}"
                );
            }
            // Published, as the watch loop does: the one before is dropped.
            published = Some(snapshot);
        }
        assert!(reused > 0);
    }
}
