//! The canary tutorial (seed 002) end to end: the bundled manifests of `examples/tutorial`, with
//! the EndpointSlices pointed at test origins, served by Sluice over loopback.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{origins, send, tally, Sluice};

/// The tutorial's manifests, with the demo ports replaced by the test origins' ports.
fn manifests(v1: &common::Origin, v2: &common::Origin) -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/tutorial/manifests");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("tutorial manifests") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path)
            .expect("read manifest")
            .replace("port: 9081", &format!("port: {}", v1.addr.port()))
            .replace("port: 9082", &format!("port: {}", v2.addr.port()));
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("x.yaml")
            .to_owned();
        files.push((name, text));
    }
    files
}

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
    let client = common::client();
    let mut seq = Vec::new();
    for _ in 0..9 {
        let answer = send(
            &client,
            "GET",
            &sluice.url("/"),
            &[("Host", "traefikservice-wrr.kubesre.lc")],
            "",
        )
        .await
        .expect("request");
        assert_eq!(answer.status, 200, "{}", sluice.log_text());
        seq.push(answer.origin().to_owned());
    }
    let counts = tally(seq.iter().map(String::as_str));
    assert_eq!((counts["app-v1"], counts["app-v2"]), (3, 6), "{seq:?}");
    for window in seq.windows(3) {
        assert_eq!(
            window.iter().filter(|o| *o == "app-v1").count(),
            1,
            "{seq:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_tutorial_cookie_pins_a_client() {
    let (_origins, sluice) = start().await;
    let client = common::client();
    let host = ("Host", "traefikservice-cokie.kubesre.lc");
    for (cookie, expected) in [
        ("cookie=default-app-v1-80", "app-v1"),
        ("cookie=default-app-v2-80", "app-v2"),
    ] {
        for _ in 0..5 {
            let answer = send(
                &client,
                "GET",
                &sluice.url("/"),
                &[host, ("Cookie", cookie)],
                "",
            )
            .await
            .expect("request");
            assert_eq!(answer.origin(), expected);
            // The legacy value is accepted and replaced by Traefik v3's form.
            let set = answer
                .headers
                .get("set-cookie")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            assert!(
                set.starts_with("cookie=") && !set.contains("default-app"),
                "{set}"
            );
        }
    }
    // A new client gets the v3 cookie; replaying it pins.
    let first = send(&client, "GET", &sluice.url("/"), &[host], "")
        .await
        .expect("request");
    let set = first
        .headers
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let pair = set.split(';').next().unwrap_or("").to_owned();
    assert_eq!(pair.len(), "cookie=".len() + 16, "{set}");
    for _ in 0..20 {
        let answer = send(
            &client,
            "GET",
            &sluice.url("/"),
            &[host, ("Cookie", &pair)],
            "",
        )
        .await
        .expect("request");
        assert_eq!(answer.origin(), first.origin());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn mirroring_copies_ten_percent_and_the_client_sees_only_v1() {
    let (origins, sluice) = start().await;
    let client = common::client();
    for _ in 0..1000 {
        let answer = send(
            &client,
            "GET",
            &sluice.url("/"),
            &[("Host", "traefikservice-copy.kubesre.lc")],
            "",
        )
        .await
        .expect("request");
        assert_eq!(answer.origin(), "app-v1");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while origins[1].whoami.requests() < 100 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(origins[0].whoami.requests(), 1000);
    assert_eq!(origins[1].whoami.requests(), 100);
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
