//! gRPC through the proxy: an HTTP/2 client, an h2c origin, unary and server-streaming calls,
//! with trailers (grpc-status) relayed.

mod common;

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};

use common::Sluice;

/// A gRPC message frame: uncompressed, 4-byte big-endian length, payload.
fn message(payload: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(5 + payload.len());
    out.push(0);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out.into()
}

/// An h2c origin: `/echo.Echo/Unary` answers one message, `/echo.Echo/Stream` three, each
/// followed by `grpc-status: 0` trailers.
async fn grpc_origin() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("h2c://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    |req: http::Request<hyper::body::Incoming>| async move {
                        let count = if req.uri().path().ends_with("/Stream") {
                            3
                        } else {
                            1
                        };
                        let _ = req.into_body().collect().await;
                        let mut trailers = http::HeaderMap::new();
                        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
                        let frames: Vec<Result<Frame<Bytes>, Infallible>> = (0..count)
                            .map(|i| Ok(Frame::data(message(format!("reply {i}").as_bytes()))))
                            .chain(std::iter::once(Ok(Frame::trailers(trailers))))
                            .collect();
                        let mut response =
                            http::Response::new(StreamBody::new(stream::iter(frames)));
                        response.headers_mut().insert(
                            "content-type",
                            http::HeaderValue::from_static("application/grpc"),
                        );
                        Ok::<_, Infallible>(response)
                    },
                );
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    url
}

#[tokio::test(flavor = "multi_thread")]
async fn unary_and_server_streaming_calls_keep_their_trailers() {
    let origin = grpc_origin().await;
    let config = format!(
        "http:\n  routers:\n    grpc:\n      rule: \"PathPrefix(`/echo.Echo/`)\"\n      service: grpc\n  services:\n    grpc:\n      loadBalancer:\n        servers:\n          - url: \"{origin}\"\n"
    );
    let sluice = Sluice::start(&[("grpc.yaml", config)], &[]).await;
    let stream = tokio::net::TcpStream::connect(sluice.addr)
        .await
        .expect("connect");
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2 handshake");
    tokio::spawn(connection);

    for (method, expected) in [("Unary", 1), ("Stream", 3)] {
        let request = http::Request::post(format!("http://grpc.example.com/echo.Echo/{method}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(Full::new(message(b"hello")))
            .expect("request");
        let response = tokio::time::timeout(Duration::from_secs(5), sender.send_request(request))
            .await
            .expect("in time")
            .expect("response");
        assert_eq!(response.status(), 200);
        let collected = response.into_body().collect().await.expect("body");
        let trailers = collected.trailers().cloned().expect("trailers relayed");
        assert_eq!(
            trailers.get("grpc-status").map(|v| v.as_bytes()),
            Some(&b"0"[..])
        );
        let data = collected.to_bytes();
        let mut replies = 0;
        let mut rest = &data[..];
        while rest.len() >= 5 {
            let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
            assert_eq!(&rest[5..5 + len], format!("reply {replies}").as_bytes());
            rest = &rest[5 + len..];
            replies += 1;
        }
        assert_eq!(replies, expected, "{method}");
    }
}

/// A gRPC health server answering `grpc.health.v1.Health/Check` with SERVING or NOT_SERVING
/// depending on `serving`.
async fn health_server(serving: std::sync::Arc<std::sync::atomic::AtomicBool>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let serving = serving.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let serving = serving.clone();
                        async move {
                            let path = req.uri().path().to_owned();
                            let _ = req.into_body().collect().await;
                            let mut trailers = http::HeaderMap::new();
                            trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
                            // HealthCheckResponse { status: 1 SERVING | 2 NOT_SERVING }.
                            let status = if serving.load(std::sync::atomic::Ordering::Relaxed) {
                                1
                            } else {
                                2
                            };
                            let payload = if path == "/grpc.health.v1.Health/Check" {
                                message(&[0x08, status])
                            } else {
                                message(b"app")
                            };
                            let frames: Vec<Result<Frame<Bytes>, Infallible>> =
                                vec![Ok(Frame::data(payload)), Ok(Frame::trailers(trailers))];
                            let mut response =
                                http::Response::new(StreamBody::new(stream::iter(frames)));
                            response.headers_mut().insert(
                                "content-type",
                                http::HeaderValue::from_static("application/grpc"),
                            );
                            Ok::<_, Infallible>(response)
                        }
                    });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    format!("h2c://{addr}")
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_health_checks_follow_the_serving_status() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let serving = Arc::new(AtomicBool::new(true));
    let origin = health_server(serving.clone()).await;
    let config = format!(
        "http:\n  routers:\n    grpc:\n      rule: \"PathPrefix(`/`)\"\n      service: grpc\n  services:\n    grpc:\n      loadBalancer:\n        healthCheck: {{mode: grpc, interval: 100ms, timeout: 80ms}}\n        servers:\n          - url: \"{origin}\"\n"
    );
    let sluice = Sluice::start(&[("grpc.yaml", config)], &[]).await;
    let status = || async {
        common::send(
            &common::h2c_client(),
            "POST",
            &sluice.url("/echo.Echo/Unary"),
            &[("content-type", "application/grpc")],
            "",
        )
        .await
        .expect("request")
        .status
    };
    assert_eq!(status().await, 200);
    serving.store(false, Ordering::Relaxed);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while status().await != 503 {
        assert!(
            std::time::Instant::now() < deadline,
            "NOT_SERVING did not take the server out"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    serving.store(true, Ordering::Relaxed);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while status().await != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "SERVING did not bring the server back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
