//! The provider's watch loop: one kube-rs watcher per kind (and per namespace when namespaces
//! are restricted), each with kube's default backoff, feeding [`Reflector`]s; once every
//! reflector has its first full list, the stores are translated by the same translation as the
//! file provider and published as a [`Snapshot`]. A [`Translator`] keeps each IngressRoute's
//! output between builds, so a change translates only the routes it touches.
//!
//! Changes after that are throttled on the leading edge: a change arriving after a quiet
//! `throttle` period is published at once, changes inside the period are coalesced into one
//! rebuild at its end. Watch errors and API outages are retried with backoff while the last
//! snapshot stays published: stores are only replaced by a complete new list.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{BoxStream, SelectAll};
use futures_util::{FutureExt as _, StreamExt as _};
use kube::core::DynamicObject;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt as _;
use kube::Api;
use serde_json::Value;
use sluice_config::dynamic::Configuration;
use sluice_config::Diagnostic;
use sluice_crd::{CrdOptions, Reuse};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::kinds::{self, Kind};
use crate::store::{Applied, Reflector};
use crate::translator::Translator;

/// Annotation `kubectl apply` leaves on objects: a full copy of the object, never read here.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Traefik's default `providersThrottleDuration`.
pub const DEFAULT_THROTTLE: Duration = Duration::from_secs(2);

/// One translation of everything the provider sees.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The translated configuration, names unqualified (as `kubernetescrd` produces them).
    /// Shared with the translator, which reuses it once every snapshot holding it is dropped.
    pub config: Arc<Configuration>,
    /// Whether the configuration differs from the previous build's.
    pub changed: bool,
    /// Objects that could not be decoded and everything translation skipped.
    pub diagnostics: Vec<Diagnostic>,
    /// 1 for the first snapshot, then +1 for each published one.
    pub generation: u64,
    /// Objects in the stores when it was built.
    pub objects: usize,
    /// IngressRoutes whose translation was reused from the previous build, and translated.
    pub reuse: Reuse,
    /// Time spent building it (collecting the stores and translating).
    pub build_time: Duration,
}

/// How the provider runs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `providers.kubernetesCRD`.
    pub options: CrdOptions,
    /// Minimum time between two published snapshots.
    pub throttle: Duration,
}

impl Settings {
    /// Settings from the options: `throttleDuration` when set, else `fallback` (the static
    /// configuration's `providersThrottleDuration`, Traefik's 2 s by default).
    pub fn new(options: CrdOptions, fallback: Option<Duration>) -> Self {
        let throttle = options
            .throttle_duration
            .as_ref()
            .and_then(|d| d.as_std())
            .or(fallback)
            .unwrap_or(DEFAULT_THROTTLE);
        Settings { options, throttle }
    }
}

/// A running provider. Dropping it stops every watcher.
#[derive(Debug)]
pub struct Provider {
    snapshots: watch::Receiver<Option<Arc<Snapshot>>>,
    task: JoinHandle<()>,
}

impl Provider {
    /// Starts the watchers on `client`. Nothing is published before every store has its first
    /// full list.
    pub fn start(client: kube::Client, settings: Settings) -> Provider {
        let (tx, snapshots) = watch::channel(None);
        let task = tokio::spawn(run(client, settings, tx));
        Provider { snapshots, task }
    }

    /// The published snapshots (`None` until the first full sync).
    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<Snapshot>>> {
        self.snapshots.clone()
    }

    /// The latest snapshot, if any.
    pub fn latest(&self) -> Option<Arc<Snapshot>> {
        self.snapshots.borrow().clone()
    }

    /// Waits for the first snapshot.
    pub async fn synced(&self) -> Option<Arc<Snapshot>> {
        let mut rx = self.snapshots.clone();
        let snapshot = rx.wait_for(Option::is_some).await.ok()?.clone();
        snapshot
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One watcher: a kind in one namespace (or all namespaces).
struct Source {
    kind: Kind,
    namespace: Option<String>,
    store: Reflector,
}

type Events = BoxStream<'static, (usize, Result<Event<DynamicObject>, watcher::Error>)>;

/// The watch loop's state.
struct Watches {
    client: kube::Client,
    options: CrdOptions,
    sources: Vec<Source>,
    streams: SelectAll<Events>,
    nodes_started: bool,
    /// What the previous builds translated.
    translator: Translator,
}

impl Watches {
    fn new(client: kube::Client, options: CrdOptions) -> Self {
        let mut watches = Watches {
            client,
            options,
            sources: Vec::new(),
            streams: SelectAll::new(),
            nodes_started: false,
            translator: Translator::new(),
        };
        for kind in kinds::watched() {
            watches.add(kind);
        }
        watches
    }

    /// Starts the watchers of one kind: one per watched namespace, or one for all.
    fn add(&mut self, kind: Kind) {
        let namespaces: Vec<Option<String>> =
            if !kind.namespaced || self.options.namespaces.is_empty() {
                vec![None]
            } else {
                // One watcher per namespace, even if the options name one twice.
                let mut namespaces = self.options.namespaces.clone();
                namespaces.sort();
                namespaces.dedup();
                namespaces.into_iter().map(Some).collect()
            };
        for namespace in namespaces {
            let index = self.sources.len();
            let resource = kind.api_resource();
            let api: Api<DynamicObject> = match &namespace {
                Some(ns) => Api::namespaced_with(self.client.clone(), ns, &resource),
                None => Api::all_with(self.client.clone(), &resource),
            };
            let mut config = watcher::Config::default();
            if kind.is_traefik() && !self.options.label_selector.is_empty() {
                config = config.labels(&self.options.label_selector);
            }
            if kind == kinds::SECRET {
                // Helm release secrets are large and never referenced (Traefik skips them).
                config = config.labels("owner!=helm");
            }
            let stream = watcher::watcher(api, config)
                .default_backoff()
                .modify(strip)
                .map(move |event| (index, event))
                .boxed();
            self.streams.push(stream);
            self.sources.push(Source {
                kind,
                namespace,
                store: Reflector::new(kind),
            });
        }
    }

    /// Applies one event; starts the Node watcher when a service first asks for `nodePortLB`.
    fn apply(&mut self, index: usize, event: Result<Event<DynamicObject>, watcher::Error>) -> bool {
        let Some(source) = self.sources.get_mut(index) else {
            return false;
        };
        let event = match event {
            Ok(event) => event,
            Err(watcher::Error::InitialListFailed(kube::Error::Api(status)))
                if status.code == 404 =>
            {
                let first = source.store.mark_absent() == Applied::Changed;
                if first {
                    tracing::info!(
                        kind = source.kind.kind,
                        group = source.kind.group,
                        "not served by the API server (CRD not installed?); counted as empty"
                    );
                }
                return first;
            }
            Err(error) => {
                tracing::warn!(
                    kind = source.kind.kind,
                    group = source.kind.group,
                    namespace = source.namespace.as_deref().unwrap_or("*"),
                    %error,
                    "watch failed; retrying with backoff, the last configuration stays in use"
                );
                return false;
            }
        };
        let wants_nodes = !self.nodes_started
            && !self.options.disable_cluster_scope_resources
            && matches!(
                source.kind.kind,
                "IngressRoute" | "IngressRouteTCP" | "TraefikService"
            )
            && uses_node_port_lb(&event);
        let changed = source.store.apply(event) == Applied::Changed;
        if wants_nodes {
            tracing::info!("a service uses nodePortLB: watching Nodes");
            self.nodes_started = true;
            self.add(kinds::NODE);
        }
        changed
    }

    fn synced(&self) -> bool {
        self.sources.iter().all(|s| s.store.synced())
    }

    /// Collects the stores and translates them.
    fn build(&mut self, generation: u64) -> Snapshot {
        build(
            &mut self.translator,
            self.sources.iter().map(|s| &s.store),
            &self.options,
            generation,
        )
    }
}

/// Translates the objects of `stores`: what the provider publishes. `translator` keeps what
/// the previous builds computed, so that only what changed since is translated again (a new
/// one translates everything).
pub fn build<'a>(
    translator: &mut Translator,
    stores: impl IntoIterator<Item = &'a Reflector>,
    options: &CrdOptions,
    generation: u64,
) -> Snapshot {
    let started = Instant::now();
    let stores: Vec<&Reflector> = stores.into_iter().collect();
    let translation = translator.translate(&stores, options);
    let mut diagnostics: Vec<Diagnostic> =
        stores.iter().flat_map(|s| s.rejected()).cloned().collect();
    diagnostics.extend(translation.diagnostics);
    Snapshot {
        config: translation.config,
        changed: translation.changed,
        diagnostics,
        generation,
        objects: stores.iter().map(|s| s.len()).sum(),
        reuse: translator.last_reuse(),
        build_time: started.elapsed(),
    }
}

/// Drops what is never read and costs memory: managed fields and kubectl's copy of the object.
fn strip(object: &mut DynamicObject) {
    object.metadata.managed_fields = None;
    if let Some(annotations) = object.metadata.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
    }
}

/// Whether an applied object asks for `nodePortLB` somewhere in its spec.
fn uses_node_port_lb(event: &Event<DynamicObject>) -> bool {
    fn search(value: &Value) -> bool {
        match value {
            Value::Object(map) => map
                .iter()
                .any(|(k, v)| (k == "nodePortLB" && v == &Value::Bool(true)) || search(v)),
            Value::Array(items) => items.iter().any(search),
            _ => false,
        }
    }
    match event {
        Event::Apply(object) | Event::InitApply(object) => {
            object.data.get("spec").is_some_and(search)
        }
        _ => false,
    }
}

async fn run(client: kube::Client, settings: Settings, tx: watch::Sender<Option<Arc<Snapshot>>>) {
    let mut watches = Watches::new(client, settings.options.clone());
    let mut generation = 0u64;
    let mut dirty = false;
    let mut last_build: Option<Instant> = None;
    loop {
        let due = match (dirty && watches.synced(), last_build) {
            (false, _) => None,
            (true, None) => Some(tokio::time::Instant::now()),
            (true, Some(at)) => Some(tokio::time::Instant::from_std(at + settings.throttle)),
        };
        tokio::select! {
            next = watches.streams.next() => {
                let Some((index, event)) = next else { return };
                dirty |= watches.apply(index, event);
                // Take every event already waiting, so a burst makes one rebuild.
                while let Some(Some((index, event))) = watches.streams.next().now_or_never() {
                    dirty |= watches.apply(index, event);
                }
            }
            _ = sleep_until(due) => {
                generation += 1;
                let snapshot = watches.build(generation);
                last_build = Some(Instant::now());
                dirty = false;
                // The translator tells a change; without one, the published configuration is
                // compared to be sure.
                let same = !snapshot.changed
                    && tx
                        .borrow()
                        .as_ref()
                        .is_some_and(|previous| previous.config == snapshot.config);
                if same {
                    generation -= 1;
                    tracing::debug!("kubernetes: no change in the translated configuration");
                    continue;
                }
                tracing::info!(
                    generation,
                    objects = snapshot.objects,
                    routers = snapshot.config.http.as_ref().map_or(0, |h| h.routers.len()),
                    routes_reused = snapshot.reuse.reused,
                    routes_translated = snapshot.reuse.translated,
                    build_ms = snapshot.build_time.as_millis() as u64,
                    "kubernetes: configuration built"
                );
                tx.send_replace(Some(Arc::new(snapshot)));
            }
        }
    }
}

async fn sleep_until(due: Option<tokio::time::Instant>) {
    match due {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_port_lb_is_found_anywhere_in_a_route() {
        let route: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "traefik.io/v1alpha1", "kind": "IngressRoute",
            "metadata": {"name": "a", "namespace": "default"},
            "spec": {"routes": [{"match": "Host(`a`)", "services": [{"name": "s", "port": 80, "nodePortLB": true}]}]}
        }))
        .unwrap();
        assert!(uses_node_port_lb(&Event::Apply(route.clone())));
        assert!(!uses_node_port_lb(&Event::Delete(route)));
    }

    #[test]
    fn strip_drops_managed_fields_and_the_last_applied_copy() {
        let mut object: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "a", "namespace": "default",
                "managedFields": [{"manager": "kubectl"}],
                "annotations": {LAST_APPLIED: "{}", "keep": "me"}},
            "data": {"k": "dg=="}
        }))
        .unwrap();
        strip(&mut object);
        assert!(object.metadata.managed_fields.is_none());
        let annotations = object.metadata.annotations.unwrap();
        assert_eq!(annotations.len(), 1);
        assert!(object.data.get("data").is_some());
    }

    #[test]
    fn throttle_comes_from_the_option_then_the_fallback() {
        let options: CrdOptions =
            serde_json::from_value(serde_json::json!({"throttleDuration": "100ms"})).unwrap();
        assert_eq!(
            Settings::new(options, None).throttle,
            Duration::from_millis(100)
        );
        assert_eq!(
            Settings::new(CrdOptions::default(), Some(Duration::from_secs(1))).throttle,
            Duration::from_secs(1)
        );
        assert_eq!(
            Settings::new(CrdOptions::default(), None).throttle,
            DEFAULT_THROTTLE
        );
    }
}
