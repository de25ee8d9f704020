//! Load-balancing strategies end to end: p2c and leasttime favour a faster origin, hrw keeps a
//! client on one server.

mod common;

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};

use common::{origin, render, send, tally, Sluice};

/// An origin that answers `Name: slow` after 50 ms.
async fn slow_origin() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_req| async {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from_static(
                        b"Name: slow\n",
                    ))))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (url, task)
}

async fn start() -> (Vec<common::Origin>, tokio::task::JoinHandle<()>, Sluice) {
    let fast = origin("fast").await;
    let other = origin("other").await;
    let (slow, task) = slow_origin().await;
    let vars = vec![("fast", fast.url()), ("slow", slow), ("other", other.url())];
    let sluice = Sluice::start(
        &[("strategies.yaml", render("strategies.yaml", &vars))],
        &[],
    )
    .await;
    (vec![fast, other], task, sluice)
}

#[tokio::test(flavor = "multi_thread")]
async fn p2c_sends_less_to_the_slower_origin() {
    let (_o, _slow, sluice) = start().await;
    let mut workers = Vec::new();
    for _ in 0..16 {
        let url = sluice.url("/p2c");
        workers.push(tokio::spawn(async move {
            let client = common::client();
            let mut seen = Vec::new();
            for _ in 0..20 {
                let answer = send(&client, "GET", &url, &[], "").await.expect("request");
                seen.push(answer.origin().to_owned());
            }
            seen
        }));
    }
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.expect("worker"));
    }
    let counts = tally(all.iter().map(String::as_str));
    let (fast, slow) = (
        counts.get("fast").copied().unwrap_or(0),
        counts.get("slow").copied().unwrap_or(0),
    );
    println!("p2c over 320 concurrent requests: fast {fast}, slow {slow}");
    assert_eq!(fast + slow, 320);
    assert!(
        slow * 2 < fast,
        "the 50 ms slower origin should get well under half: fast {fast}, slow {slow}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn leasttime_learns_which_origin_is_faster() {
    let (_o, _slow, sluice) = start().await;
    let client = common::client();
    let mut seen = Vec::new();
    for _ in 0..20 {
        seen.push(
            send(&client, "GET", &sluice.url("/leasttime"), &[], "")
                .await
                .expect("request")
                .origin()
                .to_owned(),
        );
    }
    let slow = seen.iter().filter(|o| *o == "slow").count();
    assert!(slow <= 2, "{seen:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn hrw_keeps_one_client_on_one_server() {
    let (_o, _slow, sluice) = start().await;
    let client = common::client();
    let mut seen = Vec::new();
    for _ in 0..20 {
        seen.push(
            send(&client, "GET", &sluice.url("/hrw"), &[], "")
                .await
                .expect("request")
                .origin()
                .to_owned(),
        );
    }
    assert!(seen.iter().all(|o| *o == seen[0]), "{seen:?}");

    // The highestRandomWeight service does the same over child services.
    let mut seen = Vec::new();
    for _ in 0..20 {
        seen.push(
            send(&client, "GET", &sluice.url("/hrw-service"), &[], "")
                .await
                .expect("request")
                .origin()
                .to_owned(),
        );
    }
    assert!(
        !seen[0].is_empty() && seen.iter().all(|o| *o == seen[0]),
        "{seen:?}"
    );
}
