//! Sluice's HTTP/1.1 client toward origins, against origins scripted byte by byte: framings the
//! whoami origin never produces, origins closing idle connections, answers that come early.

mod common;

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{client, send, Sluice};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// An origin running `script` on every connection it accepts (with the connection's index);
/// returns its URL and the number of connections accepted so far.
async fn scripted<F, Fut>(script: F) -> (String, Arc<AtomicUsize>)
where
    F: Fn(TcpStream, usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    let script = Arc::new(script);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let index = count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(script(stream, index));
        }
    });
    (url, accepted)
}

/// Reads one request head (up to the empty line); bytes read past it stay in `buf`.
async fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end + 4]).into_owned();
            buf.drain(..end + 4);
            return Some(head);
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Reads until `buf` holds at least `n` bytes.
async fn read_at_least(stream: &mut TcpStream, buf: &mut Vec<u8>, n: usize) {
    while buf.len() < n {
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
        }
    }
}

/// Decodes a complete chunked body; None while it is incomplete.
fn dechunk(raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        let line_end = at + raw[at..].windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&raw[at..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        at = line_end + 2;
        if size == 0 {
            return raw[at..].starts_with(b"\r\n").then_some(out);
        }
        if raw.len() < at + size + 2 {
            return None;
        }
        out.extend_from_slice(&raw[at..at + size]);
        at += size + 2;
    }
}

/// Sends a request whose body is `parts` (no length known in advance) and returns the answer's
/// status and body. The answer's head must come within 10 s, even if the body is still
/// streaming.
async fn send_streamed<S>(method: http::Method, url: &str, parts: S) -> (u16, Bytes)
where
    S: futures_util::Stream<Item = Result<Frame<Bytes>, std::convert::Infallible>>
        + Send
        + Unpin
        + 'static,
{
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<StreamBody<S>>();
    let request = http::Request::builder()
        .method(method)
        .uri(url)
        .body(StreamBody::new(parts))
        .expect("request");
    let response = tokio::time::timeout(Duration::from_secs(10), client.request(request))
        .await
        .expect("the answer's head came within 10 s")
        .expect("response");
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, body)
}

async fn sluice_for(origin: &str) -> Sluice {
    let config = format!(
        "http:\n  routers:\n    all:\n      rule: \"PathPrefix(`/`)\"\n      service: origin\n  services:\n    origin:\n      loadBalancer:\n        servers:\n          - url: \"{origin}\"\n"
    );
    Sluice::start(&[("origin.yaml", config)], &[]).await
}

#[tokio::test(flavor = "multi_thread")]
async fn chunked_answers_arrive_whole_and_keep_the_connection() {
    let (origin, accepted) = scripted(|mut stream, _| async move {
        let mut buf = Vec::new();
        while read_head(&mut stream, &mut buf).await.is_some() {
            let answer = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nx-digest: abc\r\n\r\n";
            if stream.write_all(answer.as_bytes()).await.is_err() {
                return;
            }
        }
    })
    .await;
    let sluice = sluice_for(&origin).await;
    // One client connection, so one Sluice worker and its pool serve every request.
    let stream = TcpStream::connect(sluice.addr).await.expect("connect");
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(connection);
    for _ in 0..3 {
        let request = http::Request::get("/")
            .header("host", "example.com")
            .body(http_body_util::Empty::<Bytes>::new())
            .expect("request");
        sender.ready().await.expect("connection ready");
        let response = sender.send_request(request).await.expect("response");
        assert_eq!(response.status(), 200);
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        assert_eq!(&body[..], b"hello, world");
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "one connection carried all three"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_origin_closing_an_idle_connection_costs_no_request() {
    // Every connection answers one request and is then closed by the origin while idle, without
    // announcing it: the next request finds a dead pooled connection.
    let (origin, accepted) = scripted(|mut stream, index| async move {
        let mut buf = Vec::new();
        if read_head(&mut stream, &mut buf).await.is_some() {
            let body = format!("connection {index}");
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(answer.as_bytes()).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    })
    .await;
    let sluice = sluice_for(&origin).await;
    let client = client();
    for round in 0..4 {
        let answer = send(&client, "GET", &sluice.url("/"), &[], "")
            .await
            .expect("answer");
        assert_eq!(answer.status, 200, "round {round}: {}", answer.body);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_early_answer_ends_the_upload() {
    // The origin refuses the upload as soon as it sees the head and never reads the body.
    let (origin, _) = scripted(|mut stream, _| async move {
        let mut buf = Vec::new();
        if read_head(&mut stream, &mut buf).await.is_some() {
            let _ = stream
                .write_all(b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 8\r\nconnection: close\r\n\r\ntoo big!")
                .await;
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
    })
    .await;
    let sluice = sluice_for(&origin).await;
    // A body that trickles for a minute: waiting for its end would time the test out.
    let trickle = Box::pin(futures_util::stream::unfold(0u32, |i| async move {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        (i < 120).then(|| {
            (
                Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from_static(b"0123456789"))),
                i + 1,
            )
        })
    }));
    let (status, body) = send_streamed(http::Method::POST, &sluice.url("/upload"), trickle).await;
    assert_eq!((status, &body[..]), (413, &b"too big!"[..]));
}

#[tokio::test(flavor = "multi_thread")]
async fn interim_answers_are_skipped_and_the_body_still_sent() {
    let (origin, _) = scripted(|mut stream, _| async move {
        let mut buf = Vec::new();
        let Some(head) = read_head(&mut stream, &mut buf).await else {
            return;
        };
        let _ = stream
            .write_all(
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\n",
            )
            .await;
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        read_at_least(&mut stream, &mut buf, length).await;
        let answer = format!(
            "HTTP/1.1 201 Created\r\ncontent-length: {}\r\n\r\n",
            buf.len()
        );
        let _ = stream.write_all(answer.as_bytes()).await;
        let _ = stream.write_all(&buf).await;
    })
    .await;
    let sluice = sluice_for(&origin).await;
    let answer = send(
        &client(),
        "POST",
        &sluice.url("/"),
        &[("Expect", "100-continue")],
        "the request body",
    )
    .await
    .expect("answer");
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (201, "the request body")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_of_unknown_length_go_chunked() {
    let (origin, _) = scripted(|mut stream, _| async move {
        let mut buf = Vec::new();
        let Some(head) = read_head(&mut stream, &mut buf).await else {
            return;
        };
        let body = loop {
            if let Some(body) = dechunk(&buf) {
                break body;
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let chunked = head.contains("transfer-encoding: chunked\r\n");
        let reply = format!("chunked={chunked} body={}", String::from_utf8_lossy(&body));
        let answer = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{reply}",
            reply.len()
        );
        let _ = stream.write_all(answer.as_bytes()).await;
    })
    .await;
    let sluice = sluice_for(&origin).await;
    let parts =
        futures_util::stream::iter(["streamed ", "in ", "pieces"].map(|p| {
            Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from_static(p.as_bytes())))
        }));
    let (status, body) = send_streamed(http::Method::PUT, &sluice.url("/"), parts).await;
    assert_eq!(
        (status, &body[..]),
        (200, &b"chunked=true body=streamed in pieces"[..])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn close_delimited_answers_stream_to_the_end() {
    let (origin, accepted) = scripted(|mut stream, index| async move {
        let mut buf = Vec::new();
        if read_head(&mut stream, &mut buf).await.is_some() {
            let answer =
                format!("HTTP/1.0 200 OK\r\ncontent-type: text/plain\r\n\r\nall of it, {index}");
            let _ = stream.write_all(answer.as_bytes()).await;
        }
    })
    .await;
    let sluice = sluice_for(&origin).await;
    let client = client();
    for index in 0..2 {
        let answer = send(&client, "GET", &sluice.url("/"), &[], "")
            .await
            .expect("answer");
        assert_eq!(answer.status, 200);
        assert_eq!(answer.body, format!("all of it, {index}"));
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        2,
        "a closed-delimited answer ends its connection"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_answers_are_bad_gateway() {
    for reply in [
        &b"SSH-2.0-OpenSSH_9.2\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\nabcd",
        b"HTTP/1.1 200 OK\r\nbad header line\r\n\r\n",
        b"",
    ] {
        let reply = reply.to_vec();
        let (origin, _) = scripted(move |mut stream, _| {
            let reply = reply.clone();
            async move {
                let mut buf = Vec::new();
                if read_head(&mut stream, &mut buf).await.is_some() {
                    let _ = stream.write_all(&reply).await;
                }
            }
        })
        .await;
        let sluice = sluice_for(&origin).await;
        let answer = send(&client(), "GET", &sluice.url("/"), &[], "")
            .await
            .expect("answer");
        assert_eq!(answer.status, 502, "{}", sluice.log_text());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_truncated_body_aborts_the_client_connection() {
    let (origin, _) = scripted(|mut stream, _| async move {
        let mut buf = Vec::new();
        if read_head(&mut stream, &mut buf).await.is_some() {
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\nonly this much")
                .await;
        }
    })
    .await;
    let sluice = sluice_for(&origin).await;
    let outcome = send(&client(), "GET", &sluice.url("/"), &[], "").await;
    assert!(
        outcome.is_err(),
        "a body cut short must not look complete: {:?}",
        outcome.map(|a| a.body.len())
    );
}
