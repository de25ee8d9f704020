//! Load balancing end to end: Traefik's weighted round robin at every level, server weights,
//! and mirroring counts.

mod common;

use std::time::{Duration, Instant};

use common::{origins, render, send, tally, Sluice};

async fn start() -> (Vec<common::Origin>, Sluice) {
    let (origins, vars) = origins(&["a", "b", "c"]).await;
    let sluice = Sluice::start(&[("balancing.yaml", render("balancing.yaml", &vars))], &[]).await;
    (origins, sluice)
}

async fn sequence(sluice: &Sluice, path: &str, n: usize) -> String {
    let client = common::client();
    let mut seq = String::with_capacity(n);
    for _ in 0..n {
        let answer = send(&client, "GET", &sluice.url(path), &[], "")
            .await
            .expect("request");
        assert_eq!(answer.status, 200);
        seq.push_str(&answer.origin().to_uppercase());
    }
    seq
}

#[tokio::test(flavor = "multi_thread")]
async fn weights_one_to_two_give_one_a_in_every_three() {
    let (_origins, sluice) = start().await;
    let seq = sequence(&sluice, "/canary", 3000).await;
    let counts = tally(seq.split("").filter(|s| !s.is_empty()));
    assert_eq!(counts.get("A"), Some(&1000));
    assert_eq!(counts.get("B"), Some(&2000));
    for (i, window) in seq.as_bytes().windows(3).enumerate() {
        let a = window.iter().filter(|c| **c == b'A').count();
        assert_eq!(a, 1, "window at {i}: {}", String::from_utf8_lossy(window));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn nested_weights_multiply() {
    let (_origins, sluice) = start().await;
    // outer: a 1, inner 3; inner: b 1, c 2  =>  a 1/4, b 1/4, c 1/2.
    let seq = sequence(&sluice, "/nested", 400).await;
    let counts = tally(seq.split("").filter(|s| !s.is_empty()));
    assert_eq!(
        (counts["A"], counts["B"], counts["C"]),
        (100, 100, 200),
        "{seq:.40}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn server_weights_apply_inside_a_load_balancer() {
    let (_origins, sluice) = start().await;
    let seq = sequence(&sluice, "/servers", 8).await;
    let counts = tally(seq.split("").filter(|s| !s.is_empty()));
    assert_eq!((counts["A"], counts["B"]), (6, 2), "{seq}");
}

#[tokio::test(flavor = "multi_thread")]
async fn mirroring_copies_the_configured_share() {
    let (origins, sluice) = start().await;
    let seq = sequence(&sluice, "/mirrored", 1000).await;
    assert!(
        seq.chars().all(|c| c == 'A'),
        "the client only ever sees the main service"
    );
    // Mirrors are sent in the background: wait for them to arrive.
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline
        && (origins[1].whoami.requests() < 100 || origins[2].whoami.requests() < 500)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(origins[0].whoami.requests(), 1000);
    assert_eq!(origins[1].whoami.requests(), 100);
    assert_eq!(origins[2].whoami.requests(), 500);
}

#[tokio::test(flavor = "multi_thread")]
async fn sticky_cookies_pin_every_level() {
    let (_origins, sluice) = start().await;
    let client = common::client();
    let first = send(&client, "GET", &sluice.url("/sticky"), &[], "")
        .await
        .expect("request");
    let cookies: Vec<String> = first
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap_or("").to_owned())
        .collect();
    // The first pick of 1:2 is the heavier child: a load balancer with its own sticky level.
    assert_eq!(cookies.len(), 2, "{cookies:?}");
    assert!(
        cookies[0].starts_with("lvl1=")
            && cookies[0].ends_with("; Path=/; HttpOnly; SameSite=Strict"),
        "{cookies:?}"
    );
    assert!(
        cookies[1].starts_with("lvl2=") && cookies[1].ends_with("; Path=/"),
        "{cookies:?}"
    );
    let jar: Vec<&str> = cookies
        .iter()
        .map(|c| c.split(';').next().unwrap_or(""))
        .collect();
    let jar = jar.join("; ");
    for _ in 0..100 {
        let answer = send(
            &client,
            "GET",
            &sluice.url("/sticky"),
            &[("Cookie", &jar)],
            "",
        )
        .await
        .expect("request");
        assert_eq!(answer.origin(), first.origin());
        assert!(
            answer.headers.get("set-cookie").is_none(),
            "no new cookie while pinned"
        );
    }

    // The legacy value (the raw child name, as in Traefik's tutorial) pins too, and is rewritten.
    for _ in 0..5 {
        let answer = send(
            &client,
            "GET",
            &sluice.url("/sticky"),
            &[("Cookie", "lvl1=app-a")],
            "",
        )
        .await
        .expect("request");
        assert_eq!(answer.origin(), "a");
        let rewritten = answer
            .headers
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        assert!(
            rewritten.starts_with("lvl1=") && !rewritten.starts_with("lvl1=app-a"),
            "{rewritten}"
        );
    }
}
