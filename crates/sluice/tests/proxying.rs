//! Proxying end to end: status codes, forwarded headers, Host handling, WebSocket, streaming.

mod common;

use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;

use common::{free_port, get, origin, render, Sluice};

async fn start() -> (common::Origin, Sluice) {
    let app = origin("app").await;
    let closed = format!("http://127.0.0.1:{}", free_port());
    let config = render("proxying.yaml", &[("app", app.url()), ("closed", closed)]);
    let sluice = Sluice::start(&[("proxying.yaml", config)], &[]).await;
    (app, sluice)
}

#[tokio::test(flavor = "multi_thread")]
async fn statuses_match_traefik() {
    let (_app, sluice) = start().await;
    let answer = get(&sluice.url("/unreachable"), &[]).await;
    assert_eq!((answer.status, answer.body.as_str()), (502, "Bad Gateway"));
    let answer = get(&sluice.url("/empty"), &[]).await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (503, "no available server\n")
    );
    let answer = get(&sluice.url("/slow?wait=2s"), &[]).await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (504, "Gateway Timeout")
    );
    let answer = get(&sluice.url("/slow?wait=10ms"), &[]).await;
    assert_eq!(answer.status, 200);
    let answer = get(&sluice.url("/pass"), &[("Host", "unknown.example")]).await;
    assert_eq!(answer.status, 200, "PathPrefix routes ignore the host");
}

#[tokio::test(flavor = "multi_thread")]
async fn forwarded_headers_and_host_reach_the_origin() {
    let (app, sluice) = start().await;
    let answer = get(
        &sluice.url("/pass/a?b=c"),
        &[
            ("Host", "shop.example.com:8443"),
            ("X-Forwarded-For", "203.0.113.9"),
            ("X-Real-Ip", "203.0.113.9"),
            ("X-Forwarded-Proto", "https"),
        ],
    )
    .await;
    assert_eq!(answer.status, 200);
    // The request line keeps the client's path; the server URL's path is ignored.
    assert!(
        answer.body.contains("GET /pass/a?b=c HTTP/1.1"),
        "{}",
        answer.body
    );
    assert_eq!(answer.seen("Host"), Some("shop.example.com:8443"));
    // The client is not trusted: its claims are replaced.
    assert_eq!(answer.seen("X-Forwarded-For"), Some("127.0.0.1"));
    assert_eq!(answer.seen("X-Real-Ip"), Some("127.0.0.1"));
    assert_eq!(answer.seen("X-Forwarded-Proto"), Some("http"));
    assert_eq!(
        answer.seen("X-Forwarded-Host"),
        Some("shop.example.com:8443")
    );
    assert_eq!(answer.seen("X-Forwarded-Port"), Some("8443"));
    assert!(answer
        .seen("X-Forwarded-Server")
        .is_some_and(|s| !s.is_empty()));

    let answer = get(&sluice.url("/nopass"), &[("Host", "shop.example.com")]).await;
    assert_eq!(answer.seen("Host"), Some(app.addr.to_string().as_str()));
    assert_eq!(answer.seen("X-Forwarded-Host"), Some("shop.example.com"));
}

#[tokio::test(flavor = "multi_thread")]
async fn trusted_clients_keep_their_forwarded_headers() {
    let app = origin("app").await;
    let closed = format!("http://127.0.0.1:{}", free_port());
    let config = render("proxying.yaml", &[("app", app.url()), ("closed", closed)]);
    let sluice = Sluice::start(
        &[("proxying.yaml", config)],
        &["--entryPoints.web.forwardedHeaders.trustedIPs=127.0.0.1/32"],
    )
    .await;
    let answer = get(
        &sluice.url("/pass"),
        &[
            ("X-Forwarded-For", "203.0.113.9"),
            ("X-Forwarded-Proto", "https"),
        ],
    )
    .await;
    assert_eq!(
        answer.seen("X-Forwarded-For"),
        Some("203.0.113.9, 127.0.0.1")
    );
    assert_eq!(answer.seen("X-Forwarded-Proto"), Some("https"));
}

#[tokio::test(flavor = "multi_thread")]
async fn hop_by_hop_headers_do_not_cross() {
    let (_app, sluice) = start().await;
    let answer = get(
        &sluice.url("/pass"),
        &[
            ("Connection", "X-Private"),
            ("X-Private", "secret"),
            ("X-Public", "yes"),
        ],
    )
    .await;
    assert_eq!(answer.seen("X-Private"), None);
    assert_eq!(answer.seen("X-Public"), Some("yes"));
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_echo_through_the_proxy() {
    let (_app, sluice) = start().await;
    let url = format!("ws://{}/echo", sluice.addr);
    let (mut ws, response) = tokio_tungstenite::connect_async(&url)
        .await
        .expect("websocket handshake");
    assert_eq!(response.status(), 101);
    for i in 0..5 {
        let text = format!("message {i}");
        ws.send(tokio_tungstenite::tungstenite::Message::text(text.clone()))
            .await
            .expect("send");
        let echoed = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("echo in time")
            .expect("a message")
            .expect("a valid message");
        assert_eq!(echoed.into_text().expect("text").as_str(), text);
    }
    ws.close(None).await.expect("close");
}

/// 100 MB each way through the proxy; the proxy's peak RSS must stay far below the payload.
#[tokio::test(flavor = "multi_thread")]
async fn large_bodies_stream_with_bounded_memory() {
    const SIZE: u64 = 100 * 1024 * 1024;
    let (_app, sluice) = start().await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::combinators::BoxBody<Bytes, std::io::Error>>();
    // Warm up with a small request, so the baseline includes the first connection's buffers.
    let warm = http::Request::get(sluice.url("/data?size=1024"))
        .body(
            http_body_util::Empty::new()
                .map_err(|never| match never {})
                .boxed(),
        )
        .expect("request");
    let _ = client
        .request(warm)
        .await
        .expect("warm-up")
        .into_body()
        .collect()
        .await;
    let baseline_kib = sluice.peak_rss_kib();

    // Download.
    let request = http::Request::get(sluice.url(&format!("/data?size={SIZE}")))
        .body(
            http_body_util::Empty::new()
                .map_err(|never| match never {})
                .boxed(),
        )
        .expect("request");
    let response = client.request(request).await.expect("download");
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut received: u64 = 0;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.expect("frame").into_data() {
            received += data.len() as u64;
        }
    }
    assert_eq!(received, SIZE);

    // Upload, generated on the fly.
    let chunk = Bytes::from(vec![b'u'; 64 * 1024]);
    let chunks = (SIZE / chunk.len() as u64) as usize;
    let stream = futures_util::stream::iter(
        (0..chunks).map(move |_| Ok::<_, std::io::Error>(Frame::data(chunk.clone()))),
    );
    let request = http::Request::post(sluice.url("/upload"))
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .expect("request");
    let response = client.request(request).await.expect("upload");
    let text = String::from_utf8(
        response
            .into_body()
            .collect()
            .await
            .expect("answer")
            .to_bytes()
            .to_vec(),
    )
    .expect("utf8");
    assert!(text.contains(&format!("Body-Bytes: {SIZE}")), "{text}");

    let peak_kib = sluice.peak_rss_kib();
    let growth_mib = peak_kib.saturating_sub(baseline_kib) / 1024;
    println!(
        "sluice peak RSS: {} MiB before, {} MiB after 100 MB down + 100 MB up (growth {growth_mib} MiB)",
        baseline_kib / 1024,
        peak_kib / 1024
    );
    assert!(
        growth_mib < 32,
        "RSS grew by {growth_mib} MiB while streaming 200 MB: bodies are being buffered"
    );
}

/// Server-sent events pass through one by one: the origin sends the next event only after the
/// client has received the previous one, so any buffering in the proxy would stall the test.
#[tokio::test(flavor = "multi_thread")]
async fn server_sent_events_arrive_event_by_event() {
    use std::convert::Infallible;
    use std::time::Instant;
    use tokio::sync::mpsc;

    let (ack_tx, ack_rx) = mpsc::channel::<()>(1);
    let ack_rx = std::sync::Arc::new(tokio::sync::Mutex::new(ack_rx));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let origin = format!("http://{}", listener.local_addr().expect("addr"));
    let sent_at = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Instant>::new()));
    let origin_sent = sent_at.clone();
    tokio::spawn(async move {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let service = hyper::service::service_fn(move |_req| {
            let acks = ack_rx.clone();
            let sent = origin_sent.clone();
            async move {
                let stream = futures_util::stream::unfold(0u32, move |i| {
                    let acks = acks.clone();
                    let sent = sent.clone();
                    async move {
                        if i == 5 {
                            return None;
                        }
                        if i > 0 {
                            acks.lock().await.recv().await?;
                        }
                        sent.lock().map(|mut s| s.push(Instant::now())).ok();
                        let event = Bytes::from(format!("data: event {i}\n\n"));
                        Some((Ok::<_, Infallible>(Frame::data(event)), i + 1))
                    }
                });
                let mut response = http::Response::new(StreamBody::new(stream));
                response.headers_mut().insert(
                    "content-type",
                    http::HeaderValue::from_static("text/event-stream"),
                );
                Ok::<_, Infallible>(response)
            }
        });
        let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
            .await;
    });
    let config = format!(
        "http:\n  routers:\n    sse:\n      rule: \"PathPrefix(`/`)\"\n      service: sse\n  services:\n    sse:\n      loadBalancer:\n        servers:\n          - url: \"{origin}\"\n"
    );
    let sluice = Sluice::start(&[("sse.yaml", config)], &[]).await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<Bytes>>();
    let request = http::Request::get(sluice.url("/events"))
        .body(http_body_util::Empty::new())
        .expect("request");
    let response = client.request(request).await.expect("response");
    let mut body = response.into_body();
    let mut delays = Vec::new();
    for i in 0..5 {
        let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .unwrap_or_else(|_| panic!("event {i} was held back by the proxy"))
            .expect("frame")
            .expect("data");
        let data = frame.into_data().expect("data frame");
        assert_eq!(data, Bytes::from(format!("data: event {i}\n\n")));
        if let Some(sent) = sent_at.lock().ok().and_then(|s| s.get(i).copied()) {
            delays.push(sent.elapsed());
        }
        let _ = ack_tx.send(()).await;
    }
    println!("SSE delay per event through the proxy: {delays:?}");
}
