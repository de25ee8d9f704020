//! Hot reload and lifecycle: rewrites under load, broken files, SIGHUP, graceful shutdown.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{get, origins, send, Sluice};

fn config(a: &str, b: &str, generation: usize) -> String {
    format!(
        r#"http:
  routers:
    stable:
      rule: "PathPrefix(`/stable`)"
      service: a
    generation:
      rule: "Path(`/gen-{generation}`)"
      service: b
  services:
    a:
      loadBalancer:
        servers:
          - url: "{a}"
    b:
      loadBalancer:
        servers:
          - url: "{b}"
"#
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn rewriting_the_file_under_load_drops_nothing() {
    let (o, _) = origins(&["a", "b"]).await;
    let (a, b) = (o[0].url(), o[1].url());
    let sluice = Sluice::start(&[("live.yaml", config(&a, &b, 0))], &[]).await;

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (stop, ok, failed, url) = (
            stop.clone(),
            ok.clone(),
            failed.clone(),
            sluice.url("/stable"),
        );
        load.push(tokio::spawn(async move {
            let client = common::client();
            while !stop.load(Ordering::Relaxed) {
                match send(&client, "GET", &url, &[], "").await {
                    Ok(answer) if answer.status == 200 && answer.origin() == "a" => {
                        ok.fetch_add(1, Ordering::Relaxed)
                    }
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }

    let mut worst = Duration::ZERO;
    for generation in 1..=100 {
        sluice.write("live.yaml", &config(&a, &b, generation));
        let written = Instant::now();
        let url = sluice.url(&format!("/gen-{generation}"));
        loop {
            let answer = get(&url, &[]).await;
            if answer.status == 200 {
                assert_eq!(answer.origin(), "b");
                break;
            }
            assert!(
                written.elapsed() < Duration::from_secs(1),
                "generation {generation} not served within 1 s"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        worst = worst.max(written.elapsed());
    }
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.expect("load task");
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    println!(
        "100 rewrites: {ok} requests answered, {failed} failed, slowest new route after {worst:?}"
    );
    assert!(ok > 100, "the load loop ran ({ok})");
    assert_eq!(failed, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broken_file_is_reported_and_the_last_good_routes_keep_serving() {
    let (o, _) = origins(&["a", "b"]).await;
    let sluice = Sluice::start(&[("live.yaml", config(&o[0].url(), &o[1].url(), 1))], &[]).await;
    assert_eq!(get(&sluice.url("/stable"), &[]).await.origin(), "a");

    sluice.write("live.yaml", "http:\n  routers:\n    broken: [\n");
    sluice
        .wait_for_log("live.yaml:3", Duration::from_secs(3))
        .await;
    assert_eq!(get(&sluice.url("/stable"), &[]).await.origin(), "a");
    assert_eq!(get(&sluice.url("/gen-1"), &[]).await.origin(), "b");

    // A fixed file is picked up again.
    sluice.write("live.yaml", &config(&o[0].url(), &o[1].url(), 2));
    let deadline = Instant::now() + Duration::from_secs(3);
    while get(&sluice.url("/gen-2"), &[]).await.status != 200 {
        assert!(Instant::now() < deadline, "fixed file not reloaded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_when_watching_is_off() {
    let (o, _) = origins(&["a", "b"]).await;
    let sluice = Sluice::start(
        &[("live.yaml", config(&o[0].url(), &o[1].url(), 1))],
        &["--providers.file.watch=false"],
    )
    .await;
    sluice.write("live.yaml", &config(&o[0].url(), &o[1].url(), 2));
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        get(&sluice.url("/gen-2"), &[]).await.status,
        404,
        "no watching: no reload yet"
    );
    sluice.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(3);
    while get(&sluice.url("/gen-2"), &[]).await.status != 200 {
        assert!(Instant::now() < deadline, "SIGHUP did not reload");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_finishes_requests_in_flight_then_exits_zero() {
    let (o, _) = origins(&["a", "b"]).await;
    let mut sluice =
        Sluice::start(&[("live.yaml", config(&o[0].url(), &o[1].url(), 1))], &[]).await;
    let url = sluice.url("/stable?wait=1s");
    let slow = tokio::spawn(async move { get(&url, &[]).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    sluice.signal("TERM");
    let answer = slow.await.expect("slow request");
    assert_eq!(answer.status, 200, "the request in flight completes");
    assert_eq!(answer.origin(), "a");
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(status) = sluice.child.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "sluice did not exit");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status.code(), Some(0));
    assert!(
        tokio::net::TcpStream::connect(sluice.addr).await.is_err(),
        "listener closed"
    );
}

fn limited(a: &str, extra_router: bool) -> String {
    let extra = if extra_router {
        "    extra:\n      rule: \"Path(`/extra`)\"\n      service: a\n"
    } else {
        ""
    };
    format!(
        r#"http:
  routers:
    limited:
      rule: "PathPrefix(`/limited`)"
      middlewares: [limit]
      service: a
{extra}  middlewares:
    limit:
      rateLimit:
        average: 1
        period: 1h
        burst: 2
  services:
    a:
      loadBalancer:
        servers:
          - url: "{a}"
"#
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn unchanged_middlewares_keep_their_state_across_reloads() {
    let (o, _) = origins(&["a"]).await;
    let sluice = Sluice::start(&[("live.yaml", limited(&o[0].url(), false))], &[]).await;
    let statuses = async || {
        let mut out = Vec::new();
        for _ in 0..3 {
            out.push(get(&sluice.url("/limited"), &[]).await.status);
        }
        out
    };
    assert_eq!(statuses().await, vec![200, 200, 429]);
    // An unrelated change reloads the configuration; the rate limiter keeps its empty bucket.
    sluice.write("live.yaml", &limited(&o[0].url(), true));
    let deadline = Instant::now() + Duration::from_secs(3);
    while get(&sluice.url("/extra"), &[]).await.status != 200 {
        assert!(Instant::now() < deadline, "reload not applied");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(get(&sluice.url("/limited"), &[]).await.status, 429);
}
