//! Mirroring end to end with bodies, as Traefik's TestMirror / TestMirrorWithBody, and a slow
//! mirror that must not slow the main response.

mod common;

use std::convert::Infallible;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};

use common::{origins, send, Sluice};

fn config(main: &str, m1: &str, m2: &str, extra: &str) -> String {
    format!(
        r#"http:
  routers:
    mirrored:
      rule: "PathPrefix(`/`)"
      service: mirrored
  services:
    mirrored:
      mirroring:
        service: main
{extra}        mirrors:
          - name: mirror1
            percent: 10
          - name: mirror2
            percent: 50
    main:
      loadBalancer: {{servers: [{{url: "{main}"}}]}}
    mirror1:
      loadBalancer: {{servers: [{{url: "{m1}"}}]}}
    mirror2:
      loadBalancer: {{servers: [{{url: "{m2}"}}]}}
"#
    )
}

/// Sends 10 requests with `body`, then waits for the mirrors to settle; returns request and
/// body-byte counts at (main, mirror1, mirror2).
async fn run(extra: &str, body: &str) -> [(u64, u64); 3] {
    let (o, _) = origins(&["main", "mirror1", "mirror2"]).await;
    let sluice = Sluice::start(
        &[(
            "m.yaml",
            config(&o[0].url(), &o[1].url(), &o[2].url(), extra),
        )],
        &[],
    )
    .await;
    let client = common::client();
    for _ in 0..10 {
        let answer = send(&client, "POST", &sluice.url("/whoami"), &[], body)
            .await
            .expect("request");
        assert_eq!(answer.origin(), "main");
        assert!(
            answer.body.contains(&format!("Body-Bytes: {}", body.len())),
            "{}",
            answer.body
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let count = |i: usize| (o[i].whoami.requests(), o[i].whoami.body_bytes());
    [count(0), count(1), count(2)]
}

#[tokio::test(flavor = "multi_thread")]
async fn mirrors_get_their_share_with_the_same_body() {
    let body = "twenty bytes of body";
    assert_eq!(body.len(), 20);
    assert_eq!(run("", body).await, [(10, 200), (1, 20), (5, 100)]);
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_over_max_body_size_are_not_mirrored() {
    assert_eq!(
        run("        maxBodySize: 8\n", "12345").await,
        [(10, 50), (1, 5), (5, 25)]
    );
    assert_eq!(
        run("        maxBodySize: 8\n", "twenty bytes of body").await,
        [(10, 200), (0, 0), (0, 0)]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn mirror_body_false_mirrors_without_the_body() {
    assert_eq!(
        run("        mirrorBody: false\n", "twenty bytes of body").await,
        [(10, 200), (1, 0), (5, 0)]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_mirror_does_not_slow_the_main_response() {
    let (o, _) = origins(&["main", "mirror2"]).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let slow = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_req| async {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from_static(b"slow"))))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    let sluice = Sluice::start(
        &[("m.yaml", config(&o[0].url(), &slow, &o[1].url(), ""))],
        &[],
    )
    .await;
    let client = common::client();
    let started = Instant::now();
    // Request 1 is mirrored to the slow mirror (10%: requests 1, 11, ...).
    let answer = send(&client, "GET", &sluice.url("/"), &[], "")
        .await
        .expect("request");
    let elapsed = started.elapsed();
    assert_eq!(answer.origin(), "main");
    println!("main response with a 2 s mirror: {elapsed:?}");
    assert!(
        elapsed < Duration::from_secs(1),
        "the main response waited for the mirror: {elapsed:?}"
    );
}
