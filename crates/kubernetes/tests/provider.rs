//! The provider's production watch code against the fake API server on 127.0.0.1.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sluice_crd::CrdOptions;
use sluice_kubernetes::fake::FakeApi;
use sluice_kubernetes::{Provider, Settings, Snapshot};

fn service(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}], "type": "ClusterIP"}
    })
}

fn slice(service: &str, addresses: &[&str]) -> Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("{service}-abc"), "namespace": "default",
                     "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": addresses.iter().map(|a| json!({"addresses": [a], "conditions": {"ready": true}})).collect::<Vec<_>>()
    })
}

fn route(name: &str, host: &str, service: &str) -> Value {
    json!({
        "apiVersion": "traefik.io/v1alpha1", "kind": "IngressRoute",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"entryPoints": ["web"], "routes": [{"match": format!("Host(`{host}`)"), "kind": "Rule",
                 "services": [{"name": service, "port": 80}]}]}
    })
}

fn settings(options: CrdOptions) -> Settings {
    Settings {
        options,
        throttle: Duration::from_millis(20),
    }
}

/// Routers of a snapshot, by name.
fn routers(snapshot: &Snapshot) -> Vec<String> {
    snapshot
        .config
        .http
        .as_ref()
        .map(|h| h.routers.keys().cloned().collect())
        .unwrap_or_default()
}

/// Server URLs of a service of a snapshot.
fn servers(snapshot: &Snapshot, service: &str) -> Vec<String> {
    snapshot
        .config
        .http
        .as_ref()
        .and_then(|h| h.services.get(service))
        .and_then(|s| s.load_balancer.as_ref())
        .map(|lb| lb.servers.iter().map(|s| s.url.clone()).collect())
        .unwrap_or_default()
}

/// Waits until the latest snapshot passes `check`, or panics after `limit`.
async fn wait_until(
    provider: &Provider,
    limit: Duration,
    what: &str,
    check: impl Fn(&Snapshot) -> bool,
) -> Arc<Snapshot> {
    let mut rx = provider.subscribe();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(s) = rx.borrow_and_update().clone() {
            if check(&s) {
                return s;
            }
        }
        if tokio::time::timeout_at(deadline, rx.changed())
            .await
            .is_err()
        {
            let latest = provider.latest();
            panic!(
                "{what}: not seen within {limit:?}; latest: {:?}",
                latest.map(|s| (routers(&s), s.config.http.clone()))
            );
        }
    }
}

async fn app(fake: &FakeApi) {
    fake.apply(service("whoami")).unwrap();
    fake.apply(slice("whoami", &["10.0.0.1"])).unwrap();
    fake.apply(route("app", "app.example.com", "whoami"))
        .unwrap();
}

/// The service of the `app` route (named after the route when it has one service).
fn app_service(snapshot: &Snapshot) -> Option<String> {
    snapshot
        .config
        .http
        .as_ref()?
        .routers
        .iter()
        .find(|(name, _)| name.starts_with("default-app-"))
        .map(|(_, r)| r.service.clone())
}

/// Server URLs behind the `app` route.
fn app_servers(snapshot: &Snapshot) -> Vec<String> {
    app_service(snapshot)
        .map(|name| servers(snapshot, &name))
        .unwrap_or_default()
}

#[tokio::test]
async fn initial_sync_then_routes() {
    let fake = FakeApi::start().await.unwrap();
    app(&fake).await;
    let provider = Provider::start(fake.client(), settings(CrdOptions::default()));
    let first = tokio::time::timeout(Duration::from_secs(10), provider.synced())
        .await
        .expect("synced")
        .expect("a snapshot");
    assert_eq!(first.generation, 1);
    assert_eq!(first.objects, 3);
    assert_eq!(routers(&first).len(), 1, "{:?}", first.config);
    let name = app_service(&first).expect("router service");
    assert!(name.starts_with("default-app-"), "{name}");
    assert_eq!(servers(&first, &name), ["http://10.0.0.1:8080"]);
    let router = first
        .config
        .http
        .as_ref()
        .unwrap()
        .routers
        .values()
        .next()
        .unwrap()
        .clone();
    assert_eq!(router.rule, "Host(`app.example.com`)");
}

#[tokio::test]
async fn endpoint_slice_change_is_published_within_a_second() {
    let fake = FakeApi::start().await.unwrap();
    app(&fake).await;
    let provider = Provider::start(fake.client(), settings(CrdOptions::default()));
    provider.synced().await.expect("synced");
    let started = Instant::now();
    fake.apply(slice("whoami", &["10.0.0.2", "10.0.0.3"]))
        .unwrap();
    wait_until(&provider, Duration::from_secs(1), "new endpoints", |s| {
        app_servers(s) == ["http://10.0.0.2:8080", "http://10.0.0.3:8080"]
    })
    .await;
    println!("endpointslice change published in {:?}", started.elapsed());
}

#[tokio::test]
async fn deleting_an_ingress_route_removes_its_router() {
    let fake = FakeApi::start().await.unwrap();
    app(&fake).await;
    fake.apply(route("other", "other.example.com", "whoami"))
        .unwrap();
    let provider = Provider::start(fake.client(), settings(CrdOptions::default()));
    let first = provider.synced().await.unwrap();
    assert_eq!(routers(&first).len(), 2);
    assert!(fake.delete("IngressRoute", "default", "other"));
    let after = wait_until(&provider, Duration::from_secs(2), "route removed", |s| {
        routers(s).len() == 1
    })
    .await;
    assert!(
        routers(&after)[0].starts_with("default-app-"),
        "{:?}",
        routers(&after)
    );
}

#[tokio::test]
async fn a_410_forces_a_relist_and_loses_no_update() {
    let fake = FakeApi::start().await.unwrap();
    app(&fake).await;
    fake.apply(route("other", "other.example.com", "whoami"))
        .unwrap();
    let provider = Provider::start(fake.client(), settings(CrdOptions::default()));
    provider.synced().await.unwrap();
    let lists = fake.lists();
    // Changes made while the history is compacted: only a relist can see the deletion.
    fake.expire_watches();
    assert!(fake.delete("IngressRoute", "default", "other"));
    fake.apply(slice("whoami", &["10.0.0.9"])).unwrap();
    let after = wait_until(&provider, Duration::from_secs(10), "both changes", |s| {
        routers(s).len() == 1 && app_servers(s) == ["http://10.0.0.9:8080"]
    })
    .await;
    assert!(routers(&after)[0].starts_with("default-app-"));
    // The open watches may deliver the changes before they end with their 410: the relist
    // can come after the snapshot.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while fake.lists() <= lists && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(fake.lists() > lists, "the watchers listed again");
}

#[tokio::test]
async fn a_dropped_watch_resumes_and_loses_no_update() {
    let fake = FakeApi::start().await.unwrap();
    app(&fake).await;
    let provider = Provider::start(fake.client(), settings(CrdOptions::default()));
    provider.synced().await.unwrap();
    fake.drop_watches();
    fake.apply(slice("whoami", &["10.0.0.7"])).unwrap();
    fake.apply(route("late", "late.example.com", "whoami"))
        .unwrap();
    wait_until(
        &provider,
        Duration::from_secs(10),
        "changes made during the drop",
        |s| routers(s).len() == 2 && app_servers(s) == ["http://10.0.0.7:8080"],
    )
    .await;
}

#[tokio::test]
async fn namespaces_and_label_selector_limit_what_is_seen() {
    let fake = FakeApi::start().await.unwrap();
    app(&fake).await;
    let mut labelled = route("labelled", "l.example.com", "whoami");
    labelled["metadata"]["labels"] = json!({"team": "a"});
    fake.apply(labelled).unwrap();
    let mut elsewhere = route("elsewhere", "e.example.com", "whoami");
    elsewhere["metadata"]["namespace"] = "prod".into();
    fake.apply(elsewhere).unwrap();

    let options: CrdOptions =
        serde_json::from_value(json!({"namespaces": ["default"], "labelSelector": "team=a"}))
            .unwrap();
    let provider = Provider::start(fake.client(), settings(options));
    let first = provider.synced().await.unwrap();
    let names = routers(&first);
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(names[0].starts_with("default-labelled-"), "{names:?}");
}

#[tokio::test]
async fn a_malformed_object_is_reported_and_the_rest_routes() {
    let fake = FakeApi::start().await.unwrap();
    app(&fake).await;
    let mut bad = route("bad", "bad.example.com", "whoami");
    bad["spec"]["routes"][0]["services"][0]["port"] = json!([80]);
    fake.apply(bad).unwrap();
    let provider = Provider::start(fake.client(), settings(CrdOptions::default()));
    let first = provider.synced().await.unwrap();
    assert_eq!(routers(&first).len(), 1);
    let d = first
        .diagnostics
        .iter()
        .find(|d| d.resource.as_deref() == Some("IngressRoute default/bad"))
        .expect("a diagnostic for the bad route");
    assert_eq!(d.field.as_deref(), Some("spec.routes[0].services[0].port"));
}

/// The API down for 30 s: the last configuration stays published, and a change made during
/// the outage arrives once the API is back.
#[tokio::test]
async fn an_api_outage_keeps_the_last_configuration() {
    let fake = FakeApi::start().await.unwrap();
    app(&fake).await;
    let provider = Provider::start(fake.client(), settings(CrdOptions::default()));
    let first = provider.synced().await.unwrap();
    fake.set_down(true);
    fake.apply(slice("whoami", &["10.0.0.5"])).unwrap();
    let outage = Instant::now();
    while outage.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let latest = provider.latest().expect("still published");
        assert_eq!(latest.generation, first.generation);
        assert_eq!(app_servers(&latest), ["http://10.0.0.1:8080"]);
    }
    fake.set_down(false);
    // kube's default backoff caps at 30 s between attempts.
    wait_until(
        &provider,
        Duration::from_secs(45),
        "the change made during the outage",
        |s| app_servers(s) == ["http://10.0.0.5:8080"],
    )
    .await;
}

#[tokio::test]
async fn a_group_whose_crds_are_not_installed_counts_as_empty() {
    let fake = FakeApi::start().await.unwrap();
    fake.set_group_missing("traefik.containo.us", true);
    app(&fake).await;
    let provider = Provider::start(fake.client(), settings(CrdOptions::default()));
    let first = tokio::time::timeout(Duration::from_secs(10), provider.synced())
        .await
        .expect("synced without the legacy group")
        .unwrap();
    assert_eq!(routers(&first).len(), 1);
}
