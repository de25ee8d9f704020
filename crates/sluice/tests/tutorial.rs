//! The canary tutorial (seed 002) end to end: the bundled manifests of `examples/tutorial`, with
//! the EndpointSlices pointed at test origins, served by Sluice over loopback.

mod common;

use std::time::Duration;

use common::tutorial::{self, manifests};
use common::{origins, send, Sluice};

async fn start() -> (Vec<common::Origin>, Sluice) {
    let (origins, _) = origins(&["app-v1", "app-v2"]).await;
    let files = manifests(&origins[0], &origins[1]);
    let borrowed: Vec<(&str, String)> =
        files.iter().map(|(n, t)| (n.as_str(), t.clone())).collect();
    let sluice = Sluice::start(&borrowed, &[]).await;
    (origins, sluice)
}

#[tokio::test(flavor = "multi_thread")]
async fn weighted_round_robin_gives_one_v1_in_every_three() {
    let (_origins, sluice) = start().await;
    tutorial::assert_weighted_round_robin(&sluice).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_tutorial_cookie_pins_a_client() {
    let (_origins, sluice) = start().await;
    tutorial::assert_sticky_cookie(&sluice).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mirroring_copies_ten_percent_and_the_client_sees_only_v1() {
    let (origins, sluice) = start().await;
    tutorial::assert_mirroring(&origins, &sluice).await;
}

const CURRENT_GROUP: &str = r#"
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata:
  name: modern
  namespace: default
spec:
  entryPoints: [web]
  routes:
    - match: Host(`modern.example.com`)
      kind: Rule
      services:
        - name: app-v1
          port: 80
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata:
  name: broken
  namespace: default
spec:
  entryPoints: [web]
  routes:
    - match: Host(`broken.example.com`)
      kind: Rule
      services:
        - name: app-v1
          port: 81
"#;

#[tokio::test(flavor = "multi_thread")]
async fn both_api_groups_and_one_broken_resource_among_valid_ones() {
    let (origins, _) = origins(&["app-v1", "app-v2"]).await;
    let mut files = manifests(&origins[0], &origins[1]);
    files.push(("modern.yaml".into(), CURRENT_GROUP.into()));
    let borrowed: Vec<(&str, String)> =
        files.iter().map(|(n, t)| (n.as_str(), t.clone())).collect();
    let sluice = Sluice::start(&borrowed, &[]).await;

    let legacy = send(
        &common::client(),
        "GET",
        &sluice.url("/"),
        &[("Host", "traefikservice-copy.kubesre.lc")],
        "",
    )
    .await
    .expect("request");
    assert_eq!(
        legacy.origin(),
        "app-v1",
        "traefik.containo.us resources serve"
    );
    let modern = send(
        &common::client(),
        "GET",
        &sluice.url("/"),
        &[("Host", "modern.example.com")],
        "",
    )
    .await
    .expect("request");
    assert_eq!(modern.origin(), "app-v1", "traefik.io resources serve");
    let broken = send(
        &common::client(),
        "GET",
        &sluice.url("/"),
        &[("Host", "broken.example.com")],
        "",
    )
    .await
    .expect("request");
    assert_eq!(broken.status, 404, "the broken route is skipped");
    sluice
        .wait_for_log(
            "modern.yaml:16: error: IngressRoute default/broken: field `spec.routes[0].services[0].port`: service port not found: 81",
            Duration::from_secs(2),
        )
        .await;
}
