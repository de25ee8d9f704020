//! Provider figures, printed (run with `cargo bench -p sluice-kubernetes --bench snapshot`):
//!
//! * scale: 10,000 IngressRoutes + 10,000 Services + 10,000 EndpointSlices fed through the
//!   reflector stores (the watcher's path minus HTTP): resident memory they add, time to build
//!   a full snapshot from them (nothing to reuse), and the cost of one EndpointSlice change and
//!   of one IngressRoute change (store update + incremental rebuild with the translator the
//!   provider keeps, the previous snapshot published meanwhile), and what copying the
//!   configuration would add;
//! * convergence: time from a change written to the fake API server to the snapshot carrying
//!   it, median and p99 over 100 changes, with the production watchers over HTTP.
//!
//! `SLUICE_BENCH_OBJECTS` changes the scale (default 10000). The figures are taken with the
//! allocator the binary runs on (mimalloc, see `crates/sluice/src/main.rs`).

use std::time::{Duration, Instant};

use kube::core::DynamicObject;
use kube::runtime::watcher::Event;
use serde_json::{json, Value};
use sluice_crd::{CrdOptions, Reuse};
use sluice_kubernetes::fake::FakeApi;
use sluice_kubernetes::kinds;
use sluice_kubernetes::store::Reflector;
use sluice_kubernetes::watch::{self, Provider, Settings};
use sluice_kubernetes::Translator;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn service(i: usize) -> Value {
    json!({
        "metadata": {"name": format!("svc-{i}"), "namespace": format!("ns-{}", i % 100),
                     "resourceVersion": "1", "uid": format!("uid-s-{i}"),
                     "creationTimestamp": "2024-01-01T00:00:00Z"},
        "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}], "type": "ClusterIP",
                 "clusterIP": format!("10.96.{}.{}", i / 250, i % 250)}
    })
}

fn slice(i: usize, last: u8) -> Value {
    json!({
        "metadata": {"name": format!("svc-{i}-abcde"), "namespace": format!("ns-{}", i % 100),
                     "labels": {"kubernetes.io/service-name": format!("svc-{i}")},
                     "resourceVersion": "1", "creationTimestamp": "2024-01-01T00:00:00Z"},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [
            {"addresses": [format!("10.1.{}.{last}", i % 250)], "conditions": {"ready": true}},
            {"addresses": [format!("10.2.{}.{last}", i % 250)], "conditions": {"ready": true}}
        ]
    })
}

fn route(i: usize) -> Value {
    json!({
        "apiVersion": "traefik.io/v1alpha1", "kind": "IngressRoute",
        "metadata": {"name": format!("route-{i}"), "namespace": format!("ns-{}", i % 100),
                     "resourceVersion": "1"},
        "spec": {"entryPoints": ["web"], "routes": [{
            "match": format!("Host(`app-{i}.example.com`) && PathPrefix(`/api`)"), "kind": "Rule",
            "services": [{"name": format!("svc-{i}"), "port": 80}]}]}
    })
}

/// Route `i` matching another path.
fn route_edited(i: usize, version: usize) -> Value {
    let mut r = route(i);
    r["spec"]["routes"][0]["match"] =
        format!("Host(`app-{i}.example.com`) && PathPrefix(`/v{version}`)").into();
    r
}

fn object(value: Value) -> DynamicObject {
    serde_json::from_value(value).expect("valid object")
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Feeds a store as a watcher's initial list does, one object at a time.
fn fill(kind: kinds::Kind, objects: impl Iterator<Item = DynamicObject>) -> Reflector {
    let mut store = Reflector::new(kind);
    store.apply(Event::Init);
    for o in objects {
        store.apply(Event::InitApply(o));
    }
    store.apply(Event::InitDone);
    store
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn scale(n: usize) {
    let route_kind = kinds::find("traefik.io/v1alpha1", "IngressRoute").expect("kind");
    // Objects are made one kind at a time so the figure is the stores', not the inputs'.
    let before = rss_kib();
    let mut routes = fill(route_kind, (0..n).map(|i| object(route(i))));
    let services = fill(kinds::SERVICE, (0..n).map(|i| object(service(i))));
    let mut slices = fill(kinds::ENDPOINT_SLICE, (0..n).map(|i| object(slice(i, 1))));
    let after = rss_kib();
    println!(
        "scale: {n} IngressRoutes + {n} Services + {n} EndpointSlices in the stores: RSS +{} MiB (process {} MiB)",
        (after.saturating_sub(before)) / 1024,
        after / 1024
    );

    let options = CrdOptions::default();
    // The translator the provider keeps, measured before anything else allocates and frees.
    let before = rss_kib();
    let mut translator = Translator::new();
    let mut published = watch::build(&mut translator, [&routes, &services, &slices], &options, 0);
    println!(
        "scale: the translator's memos and the configuration it keeps: RSS +{} MiB",
        rss_kib().saturating_sub(before) / 1024
    );

    let mut builds = Vec::new();
    let mut routers = 0;
    for generation in 0..5 {
        // A new translator: everything is translated, as for the first snapshot.
        let mut translator = Translator::new();
        let snapshot = watch::build(
            &mut translator,
            [&routes, &services, &slices],
            &options,
            generation,
        );
        routers = snapshot.config.http.as_ref().map_or(0, |h| h.routers.len());
        builds.push(snapshot.build_time);
    }
    let full = median(&mut builds);
    println!(
        "scale: full snapshot ({routers} routers), nothing to reuse (a new Translator): {full:?} (median of 5)"
    );

    // Translation from scratch, what every rebuild cost before the translator kept anything.
    let manifests: Vec<&sluice_crd::Manifest> = [&routes, &services, &slices]
        .iter()
        .flat_map(|s| s.objects())
        .collect();
    let mut translations = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let t = sluice_crd::translate_refs(&manifests, &options);
        translations.push(started.elapsed());
        drop(t);
    }
    let scratch = median(&mut translations);
    println!(
        "scale: translation from scratch (sluice_crd::translate_refs on the same objects): {scratch:?} (median of 5)"
    );
    drop(manifests);

    // As the watch loop runs: the previous snapshot stays published while the next is built.
    for (what, change) in [
        ("EndpointSlice", Change::Slice),
        ("IngressRoute", Change::Route),
    ] {
        let mut updates = Vec::new();
        let mut rebuilds = Vec::new();
        let mut reuse = Reuse::default();
        for k in 0..20 {
            let started = Instant::now();
            match change {
                Change::Slice => slices.apply(Event::Apply(object(slice(k * 7, 2 + k as u8)))),
                Change::Route => routes.apply(Event::Apply(object(route_edited(k * 7, k)))),
            };
            updates.push(started.elapsed());
            let snapshot = watch::build(
                &mut translator,
                [&routes, &services, &slices],
                &options,
                11 + k as u64,
            );
            rebuilds.push(snapshot.build_time);
            reuse = snapshot.reuse;
            assert!(snapshot.changed, "the change shows");
            published = snapshot;
        }
        let (update, rebuild) = (median(&mut updates), median(&mut rebuilds));
        let total = update + rebuild;
        println!(
            "scale: one {what} change: store update {update:?} + incremental rebuild {rebuild:?} = {total:?}: {:.1}% of a full snapshot, {:.1}% of a translation from scratch (medians of 20; last: {} routes reused, {} translated, configuration {})",
            total.as_secs_f64() * 100.0 / full.as_secs_f64(),
            total.as_secs_f64() * 100.0 / scratch.as_secs_f64(),
            reuse.reused,
            reuse.translated,
            if reuse.copied { "copied" } else { "brought up to date in place" },
        );
    }
    // When a reader still holds the older configuration, the translator copies instead.
    let mut copies = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let copy = sluice_config::dynamic::Configuration::clone(&published.config);
        copies.push(started.elapsed());
        drop(copy);
    }
    println!(
        "scale: copying the configuration instead (a reader still holding the older one) would add {:?} (median of 5)",
        median(&mut copies)
    );
}

#[derive(Clone, Copy)]
enum Change {
    Slice,
    Route,
}

fn servers(snapshot: &watch::Snapshot) -> Vec<String> {
    snapshot
        .config
        .http
        .as_ref()
        .and_then(|h| h.services.values().next())
        .and_then(|s| s.load_balancer.as_ref())
        .map(|lb| lb.servers.iter().map(|s| s.url.clone()).collect())
        .unwrap_or_default()
}

async fn convergence() {
    let fake = FakeApi::start().await.expect("fake API");
    let with_kind = |mut v: Value, api: &str, kind: &str| {
        v["apiVersion"] = api.into();
        v["kind"] = kind.into();
        v
    };
    fake.apply(with_kind(service(0), "v1", "Service"))
        .expect("apply");
    fake.apply(with_kind(
        slice(0, 1),
        "discovery.k8s.io/v1",
        "EndpointSlice",
    ))
    .expect("apply");
    fake.apply(route(0)).expect("apply");
    let provider = Provider::start(
        fake.client(),
        Settings {
            options: CrdOptions::default(),
            throttle: Duration::ZERO,
        },
    );
    provider.synced().await.expect("synced");
    let mut rx = provider.subscribe();
    let mut samples = Vec::with_capacity(100);
    for k in 0..100u8 {
        let last = 2 + k;
        let wanted = format!("http://10.1.0.{last}:8080");
        let started = Instant::now();
        fake.apply(with_kind(
            slice(0, last),
            "discovery.k8s.io/v1",
            "EndpointSlice",
        ))
        .expect("apply");
        loop {
            let seen = rx
                .borrow_and_update()
                .as_ref()
                .is_some_and(|s| servers(s).contains(&wanted));
            if seen {
                break;
            }
            tokio::time::timeout(Duration::from_secs(5), rx.changed())
                .await
                .expect("a snapshot within 5 s")
                .expect("provider running");
        }
        samples.push(started.elapsed());
    }
    samples.sort();
    println!(
        "convergence: API change -> published snapshot over 100 changes: median {:?}, p99 {:?}, max {:?}",
        samples[49], samples[98], samples[99]
    );
}

fn main() {
    // `cargo test --benches` runs bench targets with `--bench` absent: keep that quick.
    let benching = std::env::args().any(|a| a == "--bench");
    let n = std::env::var("SLUICE_BENCH_OBJECTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if benching { 10_000 } else { 200 });
    scale(n);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(convergence());
}
