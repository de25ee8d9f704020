//! Sluice as an ingress controller: the binary watches the fake Kubernetes API server (the
//! production watcher code, over HTTP on 127.0.0.1) and routes from what it lists and watches.

mod common;

use std::time::{Duration, Instant};

use common::tutorial::{self, manifests};
use common::{get, origins, Sluice};
use serde_json::{json, Value};
use sluice_kubernetes::fake::FakeApi;

/// Sluice reading the fake API, with /ping and /ready on `web`.
async fn start(fake: &FakeApi, files: &[(&str, String)]) -> Sluice {
    let endpoint = format!("--providers.kubernetesCRD.endpoint={}", fake.url());
    Sluice::start(
        files,
        &[
            &endpoint,
            "--providers.kubernetesCRD.throttleDuration=10ms",
            "--ping.entryPoint=web",
        ],
    )
    .await
}

/// Waits for `/ready` to answer 200.
async fn ready(sluice: &Sluice) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if get(&sluice.url("/ready"), &[]).await.status == 200 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("not ready; log:\n{}", sluice.log_text());
}

fn service(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"ports": [{"name": "http", "port": 80}], "type": "ClusterIP"}
    })
}

/// An EndpointSlice for `service` pointing at loopback origins.
fn slice(service: &str, origins: &[&common::Origin]) -> Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("{service}-slice"), "namespace": "default",
                     "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "ports": origins.iter().map(|o| json!({"name": "http", "port": o.addr.port()})).collect::<Vec<_>>(),
        "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": true}}]
    })
}

fn route(name: &str, host: &str, service: &str, middlewares: &[&str]) -> Value {
    json!({
        "apiVersion": "traefik.io/v1alpha1", "kind": "IngressRoute",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"entryPoints": ["web"], "routes": [{
            "match": format!("Host(`{host}`)"), "kind": "Rule",
            "middlewares": middlewares.iter().map(|m| json!({"name": m})).collect::<Vec<_>>(),
            "services": [{"name": service, "port": 80}]}]}
    })
}

async fn origin_of(sluice: &Sluice, host: &str) -> (u16, String) {
    let answer = get(&sluice.url("/"), &[("Host", host)]).await;
    (answer.status, answer.origin().to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_tutorial_from_the_api_routes_as_in_file_mode() {
    let fake = FakeApi::start().await.unwrap();
    let (origins, _) = origins(&["app-v1", "app-v2"]).await;
    for (name, text) in manifests(&origins[0], &origins[1]) {
        fake.apply_yaml(&text)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let sluice = start(&fake, &[]).await;
    ready(&sluice).await;
    tutorial::assert_weighted_round_robin(&sluice).await;
    tutorial::assert_sticky_cookie(&sluice).await;
    tutorial::assert_mirroring(&origins, &sluice).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ready_only_after_the_first_full_sync_and_ping_always() {
    let fake = FakeApi::start().await.unwrap();
    let (origins, _) = origins(&["a"]).await;
    fake.apply(service("a")).unwrap();
    fake.apply(slice("a", &[&origins[0]])).unwrap();
    fake.apply(route("a", "a.example.com", "a", &[])).unwrap();
    fake.set_down(true);
    let sluice = start(&fake, &[]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(get(&sluice.url("/ping"), &[]).await.status, 200);
    let not_yet = get(&sluice.url("/ready"), &[]).await;
    assert_eq!(not_yet.status, 503, "{}", not_yet.body);
    assert_eq!(origin_of(&sluice, "a.example.com").await.0, 404);
    fake.set_down(false);
    ready(&sluice).await;
    assert_eq!(origin_of(&sluice, "a.example.com").await, (200, "a".into()));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_endpoint_slice_change_moves_traffic_within_a_second() {
    let fake = FakeApi::start().await.unwrap();
    let (origins, _) = origins(&["a", "b"]).await;
    fake.apply(service("app")).unwrap();
    fake.apply(slice("app", &[&origins[0]])).unwrap();
    fake.apply(route("app", "app.example.com", "app", &[]))
        .unwrap();
    let sluice = start(&fake, &[]).await;
    ready(&sluice).await;
    assert_eq!(
        origin_of(&sluice, "app.example.com").await,
        (200, "a".into())
    );

    let changed = Instant::now();
    fake.apply(slice("app", &[&origins[1]])).unwrap();
    let mut moved = None;
    while changed.elapsed() < Duration::from_secs(1) {
        if origin_of(&sluice, "app.example.com").await.1 == "b" {
            moved = Some(changed.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let moved =
        moved.unwrap_or_else(|| panic!("traffic did not move within 1 s:\n{}", sluice.log_text()));
    println!("traffic moved {moved:?} after the EndpointSlice change");
    for _ in 0..10 {
        assert_eq!(origin_of(&sluice, "app.example.com").await.1, "b");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_an_ingress_route_removes_its_route() {
    let fake = FakeApi::start().await.unwrap();
    let (origins, _) = origins(&["a"]).await;
    fake.apply(service("a")).unwrap();
    fake.apply(slice("a", &[&origins[0]])).unwrap();
    fake.apply(route("keep", "keep.example.com", "a", &[]))
        .unwrap();
    fake.apply(route("gone", "gone.example.com", "a", &[]))
        .unwrap();
    let sluice = start(&fake, &[]).await;
    ready(&sluice).await;
    assert_eq!(origin_of(&sluice, "gone.example.com").await.0, 200);
    assert!(fake.delete("IngressRoute", "default", "gone"));
    let deadline = Instant::now() + Duration::from_secs(5);
    while origin_of(&sluice, "gone.example.com").await.0 != 404 {
        assert!(Instant::now() < deadline, "route still served");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        origin_of(&sluice, "keep.example.com").await,
        (200, "a".into())
    );
}

const FILE_CONFIG: &str = r#"
http:
  middlewares:
    tag:
      headers:
        customRequestHeaders:
          X-Tagged-By: file
  routers:
    from-file:
      rule: Host(`file.example.com`)
      service: local
  services:
    local:
      loadBalancer:
        servers:
          - url: ${a}
"#;

const STRAY_MANIFEST: &str = r#"
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata:
  name: stray
  namespace: default
spec:
  routes:
    - match: Host(`stray.example.com`)
      kind: Rule
      services:
        - name: a
          port: 80
"#;

#[tokio::test(flavor = "multi_thread")]
async fn file_and_kubernetes_providers_together_with_cross_provider_references() {
    let fake = FakeApi::start().await.unwrap();
    let (origins, vars) = origins(&["a"]).await;
    fake.apply(service("a")).unwrap();
    fake.apply(slice("a", &[&origins[0]])).unwrap();
    fake.apply(route("tagged", "k8s.example.com", "a", &["tag@file"]))
        .unwrap();
    let mut dynamic = FILE_CONFIG.to_owned();
    for (key, value) in &vars {
        dynamic = dynamic.replace(&format!("${{{key}}}"), value);
    }
    let sluice = start(
        &fake,
        &[
            ("dynamic.yml", dynamic),
            ("stray.yaml", STRAY_MANIFEST.into()),
        ],
    )
    .await;
    ready(&sluice).await;
    // A route from the cluster using a middleware from the file.
    let answer = get(&sluice.url("/"), &[("Host", "k8s.example.com")]).await;
    assert_eq!(answer.status, 200, "{}", sluice.log_text());
    assert_eq!(answer.seen("X-Tagged-By"), Some("file"));
    // A route from the file.
    assert_eq!(
        origin_of(&sluice, "file.example.com").await,
        (200, "a".into())
    );
    // Manifest files are the cluster's business in this mode: ignored, with a warning.
    assert_eq!(origin_of(&sluice, "stray.example.com").await.0, 404);
    sluice
        .wait_for_log("read from the cluster", Duration::from_secs(2))
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_410_and_a_dropped_watch_lose_no_update() {
    let fake = FakeApi::start().await.unwrap();
    let (origins, _) = origins(&["a", "b", "c"]).await;
    fake.apply(service("app")).unwrap();
    fake.apply(slice("app", &[&origins[0]])).unwrap();
    fake.apply(route("app", "app.example.com", "app", &[]))
        .unwrap();
    let sluice = start(&fake, &[]).await;
    ready(&sluice).await;
    for (control, next) in [("expire", &origins[1]), ("drop", &origins[2])] {
        match control {
            "expire" => fake.expire_watches(),
            _ => fake.drop_watches(),
        }
        fake.apply(slice("app", &[next])).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while origin_of(&sluice, "app.example.com").await.1 != next.name {
            assert!(
                Instant::now() < deadline,
                "update after {control} lost:\n{}",
                sluice.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Convergence from an API change to routed traffic, over 100 EndpointSlice changes alternating
/// between two origins: every change must reach the data plane (5 s at most each); the median
/// and p99 are printed (a figure, not a timing assertion).
#[tokio::test(flavor = "multi_thread")]
async fn convergence_from_api_change_to_routing_over_100_changes() {
    let fake = FakeApi::start().await.unwrap();
    let (origins, _) = origins(&["a", "b"]).await;
    fake.apply(service("app")).unwrap();
    fake.apply(slice("app", &[&origins[0]])).unwrap();
    fake.apply(route("app", "app.example.com", "app", &[]))
        .unwrap();
    let sluice = start(&fake, &[]).await;
    ready(&sluice).await;
    let client = common::client();
    let mut times = Vec::with_capacity(100);
    for i in 0..100 {
        let (target, name) = if i % 2 == 0 {
            (&origins[1], "b")
        } else {
            (&origins[0], "a")
        };
        let changed = Instant::now();
        fake.apply(slice("app", &[target])).unwrap();
        loop {
            let answer = common::send(
                &client,
                "GET",
                &sluice.url("/"),
                &[("Host", "app.example.com")],
                "",
            )
            .await
            .expect("request");
            if answer.origin() == name {
                times.push(changed.elapsed());
                break;
            }
            assert!(
                changed.elapsed() < Duration::from_secs(5),
                "change {i} never reached the data plane:\n{}",
                sluice.log_text()
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    times.sort();
    println!(
        "API change -> routed traffic over {} changes (throttle 10 ms, debug build): median {:?}, p99 {:?}, max {:?}",
        times.len(),
        times[times.len() / 2],
        times[times.len() * 99 / 100 - 1],
        times[times.len() - 1]
    );
}
