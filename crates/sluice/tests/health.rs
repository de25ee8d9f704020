//! Health checks, failover and health propagation, end to end: origins report 500 on /health and
//! the proxy takes them out of rotation, then back.

mod common;

use std::time::{Duration, Instant};

use common::{origins, render, send, Sluice};

async fn set_health(origin: &common::Origin, status: u16) {
    let answer = send(
        &common::client(),
        "POST",
        &format!("{}/health", origin.url()),
        &[],
        &status.to_string(),
    )
    .await
    .expect("set health");
    assert_eq!(answer.status, 200);
}

/// Sends `n` requests and returns the answering origins ("503" for no available server).
async fn answers(sluice: &Sluice, path: &str, n: usize) -> Vec<String> {
    let client = common::client();
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let answer = send(&client, "GET", &sluice.url(path), &[], "")
            .await
            .expect("request");
        out.push(if answer.status == 503 {
            "503".to_owned()
        } else {
            answer.origin().to_owned()
        });
    }
    out
}

/// Waits until every one of 10 requests gets an answer in `allowed`.
async fn settle(sluice: &Sluice, path: &str, allowed: &[&str]) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got = answers(sluice, path, 10).await;
        if got.iter().all(|o| allowed.contains(&o.as_str())) {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "{path}: still {got:?}, expected only {allowed:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn start() -> (Vec<common::Origin>, Sluice) {
    let (origins, vars) = origins(&["a", "b", "c", "d"]).await;
    let sluice = Sluice::start(&[("health.yaml", render("health.yaml", &vars))], &[]).await;
    (origins, sluice)
}

#[tokio::test(flavor = "multi_thread")]
async fn unhealthy_servers_leave_rotation_and_come_back() {
    let (o, sluice) = start().await;
    let both = answers(&sluice, "/pool", 4).await;
    assert!(
        both.contains(&"a".to_owned()) && both.contains(&"b".to_owned()),
        "{both:?}"
    );

    set_health(&o[1], 500).await;
    settle(&sluice, "/pool", &["a"]).await;
    set_health(&o[0], 500).await;
    settle(&sluice, "/pool", &["503"]).await;
    set_health(&o[0], 200).await;
    set_health(&o[1], 200).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got = answers(&sluice, "/pool", 4).await;
        if got.contains(&"a".to_owned()) && got.contains(&"b".to_owned()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "servers did not come back: {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn failover_goes_to_the_fallback_and_back() {
    let (o, sluice) = start().await;
    assert_eq!(answers(&sluice, "/failover", 5).await, vec!["c"; 5]);
    set_health(&o[2], 500).await;
    settle(&sluice, "/failover", &["d"]).await;
    set_health(&o[3], 500).await;
    settle(&sluice, "/failover", &["503"]).await;
    set_health(&o[2], 200).await;
    settle(&sluice, "/failover", &["c"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn parents_follow_their_childrens_health() {
    let (o, sluice) = start().await;
    let both = answers(&sluice, "/propagate", 4).await;
    assert!(
        both.contains(&"c".to_owned()) && both.contains(&"d".to_owned()),
        "{both:?}"
    );
    set_health(&o[2], 500).await;
    settle(&sluice, "/propagate", &["d"]).await;
    set_health(&o[3], 500).await;
    settle(&sluice, "/propagate", &["503"]).await;

    // The parent over a child without a health check is refused: its router does not exist.
    let answer = send(&common::client(), "GET", &sluice.url("/unwatched"), &[], "")
        .await
        .expect("request");
    assert_eq!(answer.status, 404);
    assert!(
        sluice
            .log_text()
            .contains("cannot follow the health of `plain@file`"),
        "{}",
        sluice.log_text()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn passive_checks_take_failing_servers_out_for_the_failure_window() {
    let (o, sluice) = start().await;
    set_health(&o[1], 500).await;
    let client = common::client();
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let answer = send(&client, "GET", &sluice.url("/health"), &[], "")
            .await
            .expect("request");
        statuses.push((answer.status, answer.body.trim().to_owned()));
    }
    // The failing answer itself reaches the client once; then only `a` answers.
    let failures = statuses.iter().filter(|(s, _)| *s == 500).count();
    assert_eq!(failures, 1, "{statuses:?}");
    assert!(
        statuses
            .iter()
            .skip_while(|(s, _)| *s != 500)
            .skip(1)
            .all(|(s, b)| *s == 200 && b == "a"),
        "{statuses:?}"
    );
    // After the window, b is tried again.
    set_health(&o[1], 200).await;
    tokio::time::sleep(Duration::from_millis(900)).await;
    let mut again = Vec::new();
    for _ in 0..4 {
        let answer = send(&client, "GET", &sluice.url("/health"), &[], "")
            .await
            .expect("request");
        again.push(answer.body.trim().to_owned());
    }
    assert!(
        again.iter().any(|name| name == "b"),
        "b is back in rotation: {again:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn failover_on_status_replays_the_request_to_the_fallback() {
    let (o, sluice) = start().await;
    let client = common::client();
    let host = ("Host", "status.example.com");
    let answer = send(&client, "GET", &sluice.url("/health"), &[host], "")
        .await
        .expect("request");
    assert_eq!((answer.status, answer.body.trim()), (200, "a"));
    set_health(&o[0], 503).await;
    let answer = send(&client, "GET", &sluice.url("/health"), &[host], "")
        .await
        .expect("request");
    assert_eq!(
        (answer.status, answer.body.trim()),
        (200, "b"),
        "main answered 503: the fallback answers"
    );
    let answer = send(&client, "PUT", &sluice.url("/upload"), &[host], "1234567")
        .await
        .expect("request");
    assert!(
        answer.body.contains("Body-Bytes: 7"),
        "small bodies are kept and forwarded: {}",
        answer.body
    );
    let answer = send(
        &client,
        "PUT",
        &sluice.url("/upload"),
        &[host],
        "a body over eight bytes",
    )
    .await
    .expect("request");
    assert_eq!(answer.status, 413);
}
