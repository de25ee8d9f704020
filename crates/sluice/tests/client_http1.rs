//! Sluice's HTTP/1.1 server side, against clients scripted byte by byte: pipelining, the
//! status codes Go's server gives malformed requests, `100 Continue`, chunked uploads, bodies
//! left unread, HTTP/1.0 and the idle timeout.

mod common;

use std::time::Duration;

use common::{origin, Sluice};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn routes(origin_url: &str) -> String {
    format!(
        r#"http:
  routers:
    a:
      rule: "Host(`a.local`)"
      service: a
  services:
    a:
      loadBalancer:
        servers:
          - url: "{origin_url}"
"#
    )
}

/// One answer read off a connection.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: String,
}

/// Reads one answer (Content-Length framed, as every answer in these tests is); None when the
/// connection closed first.
async fn read_answer(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Answer> {
    let end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        fill(stream, buf).await?;
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let status = head.get(9..12)?.parse().ok()?;
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())
                .flatten()
        })
        .unwrap_or(0);
    while buf.len() < end + length {
        fill(stream, buf).await?;
    }
    let body = String::from_utf8_lossy(&buf[end..end + length]).into_owned();
    buf.drain(..end + length);
    Some(Answer { status, head, body })
}

/// Writes `request` and reads the answer that comes back.
async fn ask(stream: &mut TcpStream, buf: &mut Vec<u8>, request: &[u8]) -> Answer {
    stream.write_all(request).await.expect("write");
    read_answer(stream, buf).await.expect("an answer")
}

async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<()> {
    let mut chunk = [0u8; 8192];
    match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk)).await {
        Ok(Ok(n)) if n > 0 => {
            buf.extend_from_slice(&chunk[..n]);
            Some(())
        }
        _ => None,
    }
}

/// Whether the server closes the connection (within a few seconds) once `buf` is consumed.
async fn closes(stream: &mut TcpStream) -> bool {
    let mut chunk = [0u8; 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

async fn connect(sluice: &Sluice) -> TcpStream {
    TcpStream::connect(sluice.addr).await.expect("connect")
}

#[tokio::test(flavor = "multi_thread")]
async fn pipelined_requests_are_answered_in_order() {
    let origin = origin("piped").await;
    let sluice = Sluice::start(&[("a.yaml", routes(&origin.url()))], &[]).await;
    let mut stream = connect(&sluice).await;
    stream
        .write_all(
            b"GET /one HTTP/1.1\r\nHost: a.local\r\n\r\n\
              GET /two HTTP/1.1\r\nHost: a.local\r\n\r\n\
              GET /three HTTP/1.1\r\nHost: nobody.local\r\n\r\n",
        )
        .await
        .expect("write");
    let mut buf = Vec::new();
    let one = read_answer(&mut stream, &mut buf).await.expect("first");
    let two = read_answer(&mut stream, &mut buf).await.expect("second");
    let three = read_answer(&mut stream, &mut buf).await.expect("third");
    assert_eq!((one.status, two.status, three.status), (200, 200, 404));
    assert!(one.body.contains("GET /one HTTP/1.1"), "{}", one.body);
    assert!(two.body.contains("GET /two HTTP/1.1"), "{}", two.body);
    assert!(one.head.to_ascii_lowercase().contains("\r\ndate: "));
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_requests_get_the_status_go_gives_them() {
    let origin = origin("strict").await;
    let sluice = Sluice::start(&[("a.yaml", routes(&origin.url()))], &[]).await;
    let cases: [(&str, u16, &str); 7] = [
        (
            "GET / HTTP/1.1\r\n\r\n",
            400,
            "missing required Host header",
        ),
        (
            "GET / HTTP/1.1\r\nHost: a.local\r\nHost: b.local\r\n\r\n",
            400,
            "too many Host headers",
        ),
        (
            "POST / HTTP/1.1\r\nHost: a.local\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            400,
            "both Transfer-Encoding and Content-Length",
        ),
        (
            "POST / HTTP/1.1\r\nHost: a.local\r\nTransfer-Encoding: gzip\r\n\r\n",
            501,
            "unsupported transfer encoding",
        ),
        (
            "POST / HTTP/1.1\r\nHost: a.local\r\nContent-Length: 3, 4\r\n\r\n",
            400,
            "conflicting Content-Length",
        ),
        (
            "GET / HTTP/1.1\r\nHost: a.local\r\nExpect: teapot\r\n\r\n",
            417,
            "unsupported expectation",
        ),
        ("GET / HTTP/1.1\r\nHo st: a.local\r\n\r\n", 400, "400 Bad Request"),
    ];
    for (request, status, reason) in cases {
        let mut stream = connect(&sluice).await;
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut buf = Vec::new();
        let answer = read_answer(&mut stream, &mut buf)
            .await
            .unwrap_or_else(|| panic!("an answer to {request:?}"));
        assert_eq!(answer.status, status, "{request:?}: {answer:?}");
        assert!(answer.body.contains(reason), "{request:?}: {answer:?}");
        assert!(closes(&mut stream).await, "{request:?}: connection closed");
    }
    // A head past 1 MiB (Go's MaxHeaderBytes) is a 431.
    let mut stream = connect(&sluice).await;
    let mut request = b"GET / HTTP/1.1\r\nHost: a.local\r\n".to_vec();
    for i in 0..1100 {
        request.extend_from_slice(format!("X-Filler-{i}: {}\r\n", "f".repeat(1000)).as_bytes());
    }
    request.extend_from_slice(b"\r\n");
    // The server may answer and close before all of it is written.
    let _ = stream.write_all(&request).await;
    let mut buf = Vec::new();
    let answer = read_answer(&mut stream, &mut buf).await.expect("an answer");
    assert_eq!(answer.status, 431, "{answer:?}");
    // The proxy still serves.
    let mut stream = connect(&sluice).await;
    let answer = ask(
        &mut stream,
        &mut Vec::new(),
        b"GET /after HTTP/1.1\r\nHost: a.local\r\n\r\n",
    )
    .await;
    assert_eq!(answer.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn expect_continue_gets_the_go_ahead_then_the_answer() {
    let origin = origin("patient").await;
    let sluice = Sluice::start(&[("a.yaml", routes(&origin.url()))], &[]).await;
    let mut stream = connect(&sluice).await;
    stream
        .write_all(
            b"PUT /upload HTTP/1.1\r\nHost: a.local\r\nExpect: 100-continue\r\nContent-Length: 11\r\n\r\n",
        )
        .await
        .expect("write head");
    // No body is sent until the proxy says so.
    let mut buf = Vec::new();
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        fill(&mut stream, &mut buf).await.expect("100 Continue");
    }
    assert!(
        buf.starts_with(b"HTTP/1.1 100 Continue\r\n\r\n"),
        "{}",
        String::from_utf8_lossy(&buf)
    );
    buf.drain(..25);
    stream.write_all(b"hello world").await.expect("write body");
    let answer = read_answer(&mut stream, &mut buf).await.expect("answer");
    assert_eq!(answer.status, 200);
    assert!(answer.body.contains("Body-Bytes: 11"), "{}", answer.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn chunked_uploads_and_unread_bodies_keep_the_connection() {
    let origin = origin("chunks").await;
    let sluice = Sluice::start(&[("a.yaml", routes(&origin.url()))], &[]).await;
    let mut stream = connect(&sluice).await;
    let mut buf = Vec::new();
    // A chunked upload, sent in pieces, arrives whole.
    stream
        .write_all(b"POST /in HTTP/1.1\r\nHost: a.local\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        .await
        .expect("write");
    tokio::time::sleep(Duration::from_millis(50)).await;
    stream
        .write_all(b"7;ext=1\r\n, world\r\n0\r\n\r\n")
        .await
        .expect("write");
    let answer = read_answer(&mut stream, &mut buf).await.expect("answer");
    assert_eq!(answer.status, 200);
    assert!(answer.body.contains("Body-Bytes: 12"), "{}", answer.body);
    // A body nobody reads (no router): the 404 comes, the body is dropped, the connection
    // serves the next request.
    let body = "x".repeat(3000);
    let answer = ask(
        &mut stream,
        &mut buf,
        format!(
            "POST /none HTTP/1.1\r\nHost: nobody.local\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(answer.status, 404);
    let answer = ask(
        &mut stream,
        &mut buf,
        b"GET /next HTTP/1.1\r\nHost: a.local\r\n\r\n",
    )
    .await;
    assert_eq!(answer.status, 200);
    assert!(answer.body.contains("GET /next"), "{}", answer.body);
    assert_eq!(origin.whoami.body_bytes(), 12);
}

#[tokio::test(flavor = "multi_thread")]
async fn http10_clients_get_one_answer_per_connection_unless_they_keep_alive() {
    let origin = origin("old").await;
    let sluice = Sluice::start(&[("a.yaml", routes(&origin.url()))], &[]).await;
    let mut stream = connect(&sluice).await;
    let mut buf = Vec::new();
    let answer = ask(
        &mut stream,
        &mut buf,
        b"GET /old HTTP/1.0\r\nHost: a.local\r\n\r\n",
    )
    .await;
    assert!(answer.head.starts_with("HTTP/1.0 200 OK\r\n"), "{answer:?}");
    assert!(answer.head.contains("connection: close"), "{answer:?}");
    assert!(closes(&mut stream).await);

    let mut stream = connect(&sluice).await;
    for path in ["/a", "/b"] {
        let request =
            format!("GET {path} HTTP/1.0\r\nHost: a.local\r\nConnection: keep-alive\r\n\r\n");
        let answer = ask(&mut stream, &mut buf, request.as_bytes()).await;
        assert!(answer.head.contains("connection: keep-alive"), "{answer:?}");
        assert!(answer.body.contains(&format!("GET {path} ")), "{answer:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_connections_close_after_the_idle_timeout() {
    let origin = origin("idle").await;
    let sluice = Sluice::start(
        &[("a.yaml", routes(&origin.url()))],
        &["--entryPoints.web.transport.respondingTimeouts.idleTimeout=1s"],
    )
    .await;
    let mut stream = connect(&sluice).await;
    let answer = ask(
        &mut stream,
        &mut Vec::new(),
        b"GET / HTTP/1.1\r\nHost: a.local\r\n\r\n",
    )
    .await;
    assert_eq!(answer.status, 200);
    let waited = std::time::Instant::now();
    assert!(closes(&mut stream).await, "closed while idle");
    let waited = waited.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
        "closed after {waited:?}, with idleTimeout 1s"
    );
}
