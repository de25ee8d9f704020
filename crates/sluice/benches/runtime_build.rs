//! The binary's side of a Kubernetes change, printed (run with
//! `cargo bench -p sluice --bench runtime_build`): from the provider's translated configuration
//! (10,000 IngressRoutes, each with its Service and EndpointSlice) to a runtime, the steps the
//! reload loop takes for every published snapshot:
//!
//! * copying the snapshot's configuration, qualifying its names `@kubernetescrd` and merging
//!   it with the files' configuration (`Sources::combined`);
//! * building the runtime from it (`runtime::build`), first with nothing to reuse, then with the
//!   previous runtime as a reload has it.
//!
//! `SLUICE_BENCH_OBJECTS` changes the scale (default 10000). The allocator is the binary's.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sluice::provider;
use sluice::runtime::build::DEFAULT_PRECEDENCE;
use sluice::runtime::transport::Transports;
use sluice::runtime::{self, Settings};
use sluice::tls::TlsState;
use sluice_config::dynamic::Configuration;
use sluice_crd::{CrdOptions, Manifest};
use sluice_rules::Syntax;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn manifest(value: Value) -> Manifest {
    match sluice_crd::manifest_from_json(&value, Path::new("bench")) {
        Some(Ok(m)) => m,
        other => panic!("bench object does not decode: {other:?}"),
    }
}

/// Route `i`, its Service and its EndpointSlice, as in the provider's snapshot bench.
fn objects(i: usize) -> [Manifest; 3] {
    let ns = format!("ns-{}", i % 100);
    [
        manifest(json!({
            "apiVersion": "traefik.io/v1alpha1", "kind": "IngressRoute",
            "metadata": {"name": format!("route-{i}"), "namespace": ns},
            "spec": {"entryPoints": ["web"], "routes": [{
                "match": format!("Host(`app-{i}.example.com`) && PathPrefix(`/api`)"),
                "kind": "Rule", "services": [{"name": format!("svc-{i}"), "port": 80}]}]}
        })),
        manifest(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": format!("svc-{i}"), "namespace": ns},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}
        })),
        manifest(json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": format!("svc-{i}-abcde"), "namespace": ns,
                         "labels": {"kubernetes.io/service-name": format!("svc-{i}")}},
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": [format!("10.1.{}.1", i % 250)]},
                          {"addresses": [format!("10.2.{}.1", i % 250)]}]
        })),
    ]
}

/// What the reload loop does with a snapshot before building: copy, qualify, merge.
fn combined(files: &Configuration, snapshot: &Configuration) -> Configuration {
    let mut config = files.clone();
    provider::merge(
        &mut config,
        provider::qualify(snapshot.clone(), provider::kubernetes::PROVIDER),
    );
    config
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let n: usize = std::env::var("SLUICE_BENCH_OBJECTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if benching { 10_000 } else { 200 });
    let manifests: Vec<Manifest> = (0..n).flat_map(objects).collect();
    let snapshot = sluice_crd::translate(&manifests, &CrdOptions::default()).config;
    let routers = snapshot.http.as_ref().map_or(0, |h| h.routers.len());
    let files = Configuration::default();

    let settings = Settings {
        entry_points: vec!["web".into()],
        default_entry_points: vec!["web".into()],
        default_rule_syntax: Syntax::V3,
        precedence: DEFAULT_PRECEDENCE.iter().map(|p| p.to_string()).collect(),
        entry_point_http: HashMap::new(),
    };
    let transports = Transports::new(1);
    let tls = TlsState::default();
    // Building may start background work (health checks) on the current Tokio runtime.
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _guard = tokio.enter();

    let mut merges = Vec::new();
    let mut config = Configuration::default();
    for _ in 0..5 {
        let started = Instant::now();
        config = combined(&files, &snapshot);
        merges.push(started.elapsed());
    }
    println!(
        "runtime: {routers} routers from the provider: copy + qualify @kubernetescrd + merge {:?} (median of 5)",
        median(&mut merges)
    );

    let mut cold = Vec::new();
    let mut previous = None;
    for generation in 0..5 {
        let started = Instant::now();
        let (built, diagnostics) =
            runtime::build(&settings, &config, None, &transports, &tls, &[], generation);
        cold.push(started.elapsed());
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        assert_eq!(built.router_count(), routers);
        previous = Some(built);
    }
    println!(
        "runtime: runtime::build with nothing to reuse {:?} (median of 5)",
        median(&mut cold)
    );

    let mut warm = Vec::new();
    for generation in 5..10 {
        let started = Instant::now();
        let (built, _) = runtime::build(
            &settings,
            &config,
            previous.as_ref(),
            &transports,
            &tls,
            &[],
            generation,
        );
        warm.push(started.elapsed());
        previous = Some(built);
    }
    println!(
        "runtime: runtime::build with the previous runtime (a reload) {:?} (median of 5)",
        median(&mut warm)
    );
}
