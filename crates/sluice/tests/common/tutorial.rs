//! The canary tutorial's manifests and the routing it must show (WRR 1:2, sticky cookie,
//! 10% mirroring), shared by the file-mode and the Kubernetes-mode tests.

use std::path::Path;
use std::time::{Duration, Instant};

use super::{send, tally, Origin, Sluice};

/// The tutorial's manifests, with the demo ports replaced by the test origins' ports.
pub fn manifests(v1: &Origin, v2: &Origin) -> Vec<(String, String)> {
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

/// Weights 1:2 give one app-v1 in every three answers.
pub async fn assert_weighted_round_robin(sluice: &Sluice) {
    let client = super::client();
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

/// The tutorial's cookie pins a client to one version.
pub async fn assert_sticky_cookie(sluice: &Sluice) {
    let client = super::client();
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

/// 10% of requests are copied to app-v2 while the client only sees app-v1 (counted from the
/// origins' totals when called).
pub async fn assert_mirroring(origins: &[Origin], sluice: &Sluice) {
    let client = super::client();
    let (v1, v2) = (origins[0].whoami.requests(), origins[1].whoami.requests());
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
    while origins[1].whoami.requests() - v2 < 100 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(origins[0].whoami.requests() - v1, 1000);
    assert_eq!(origins[1].whoami.requests() - v2, 100);
}
