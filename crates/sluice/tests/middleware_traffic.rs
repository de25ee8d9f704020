//! Traffic middlewares end to end, through a real Sluice process: rateLimit (in memory and
//! shared through a real Redis), retry, circuitBreaker, buffering, compress, errors, grpcWeb.
//! Every test asserts both what the client got and what the origin saw.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::AsyncReadExt;

use common::{free_port, origin, send, Sluice};

type Body = BoxBody<Bytes, Infallible>;

/// What a programmable origin received.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    headers: http::HeaderMap,
    body: Bytes,
}

/// An origin answering with a closure (given the request number, from 0), recording requests.
struct Programmed {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Programmed {
    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
    fn h2c_url(&self) -> String {
        format!("h2c://{}", self.addr)
    }
    fn hits(&self) -> usize {
        self.seen.lock().map(|s| s.len()).unwrap_or(0)
    }
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Drop for Programmed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn text(status: u16, content_type: Option<&str>, body: impl Into<Bytes>) -> http::Response<Body> {
    let mut response = http::Response::new(Full::new(body.into()).boxed());
    *response.status_mut() = http::StatusCode::from_u16(status).expect("status");
    if let Some(ct) = content_type {
        response
            .headers_mut()
            .insert("content-type", ct.parse().expect("content type"));
    }
    response
}

async fn programmed<F>(answer: F) -> Programmed
where
    F: Fn(usize, &Seen) -> http::Response<Body> + Send + Sync + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let answer = Arc::new(answer);
    let record = seen.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let answer = answer.clone();
            let record = record.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                    let answer = answer.clone();
                    let record = record.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let seen = Seen {
                            method: parts.method.to_string(),
                            path: parts
                                .uri
                                .path_and_query()
                                .map(|p| p.to_string())
                                .unwrap_or_default(),
                            headers: parts.headers,
                            body,
                        };
                        let index = {
                            let mut all = record.lock().expect("lock");
                            all.push(seen.clone());
                            all.len() - 1
                        };
                        Ok::<_, Infallible>(answer(index, &seen))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Programmed { addr, seen, task }
}

/// An origin that accepts connections and closes them at once, counting them.
async fn slammer() -> (SocketAddr, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let count = Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    let task = tokio::spawn(async move {
        loop {
            if let Ok((mut stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                // Read what was sent so the close is a clean FIN, then hang up unanswered.
                let mut buf = [0u8; 4096];
                let _ =
                    tokio::time::timeout(Duration::from_millis(50), stream.read(&mut buf)).await;
                drop(stream);
            }
        }
    });
    (addr, count, task)
}

/// A raw answer: status, headers, body bytes.
struct Raw {
    status: u16,
    headers: http::HeaderMap,
    body: Bytes,
}

async fn fetch(method: &str, url: &str, headers: &[(&str, &str)], body: &str) -> Raw {
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let mut builder = http::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let request = builder
        .body(Full::new(Bytes::from(body.to_owned())))
        .expect("request");
    let response = client.request(request).await.expect("response");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    Raw {
        status,
        headers,
        body,
    }
}

fn dead_url() -> String {
    format!("http://127.0.0.1:{}", free_port())
}

// ---------------------------------------------------------------------------------------------
// rateLimit

#[tokio::test(flavor = "multi_thread")]
async fn rate_limit_burst_refusal_and_refill() {
    let app = origin("app").await;
    let config = format!(
        r#"
http:
  routers:
    limited:
      rule: "PathPrefix(`/limited`)"
      service: app
      middlewares: [limit]
    by-header:
      rule: "PathPrefix(`/by-header`)"
      service: app
      middlewares: [limit-by-header]
  middlewares:
    limit:
      rateLimit:
        average: 1
        period: 2s
        burst: 3
    limit-by-header:
      rateLimit:
        average: 1
        period: 1h
        sourceCriterion:
          requestHeaderName: X-Tenant
  services:
    app:
      loadBalancer:
        servers:
          - url: "{}"
"#,
        app.url()
    );
    let sluice = Sluice::start(&[("limits.yaml", config)], &[]).await;
    let client = common::client();
    for i in 0..3 {
        let answer = send(&client, "GET", &sluice.url("/limited"), &[], "")
            .await
            .expect("request");
        assert_eq!(answer.status, 200, "burst request {i}");
    }
    let refused = send(&client, "GET", &sluice.url("/limited"), &[], "")
        .await
        .expect("request");
    assert_eq!(refused.status, 429);
    assert_eq!(refused.body, "Too Many Requests");
    // The next token is about 2 s away (less the time the three requests took).
    let retry_after = refused
        .headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(
        retry_after == "2" || retry_after == "1",
        "Retry-After: {retry_after}"
    );
    let retry_in = refused
        .headers
        .get("x-retry-in")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(
        retry_in.ends_with('s') && retry_in.starts_with('1'),
        "X-Retry-In: {retry_in}"
    );
    assert_eq!(
        app.whoami.requests(),
        3,
        "the refused request never reached the origin"
    );

    // One token comes back every 2 s: waiting longer always finds it.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let answer = send(&client, "GET", &sluice.url("/limited"), &[], "")
        .await
        .expect("request");
    assert_eq!(answer.status, 200);
    let answer = send(&client, "GET", &sluice.url("/limited"), &[], "")
        .await
        .expect("request");
    assert_eq!(answer.status, 429, "only one token refilled");
    assert_eq!(app.whoami.requests(), 4);

    // Per-header sources: each tenant has its own bucket of one.
    let a = send(
        &client,
        "GET",
        &sluice.url("/by-header"),
        &[("X-Tenant", "a")],
        "",
    )
    .await
    .expect("request");
    let b = send(
        &client,
        "GET",
        &sluice.url("/by-header"),
        &[("X-Tenant", "b")],
        "",
    )
    .await
    .expect("request");
    let a2 = send(
        &client,
        "GET",
        &sluice.url("/by-header"),
        &[("X-Tenant", "a")],
        "",
    )
    .await
    .expect("request");
    assert_eq!((a.status, b.status, a2.status), (200, 200, 429));
}

/// A redis-server on an ephemeral loopback port, stopped on drop.
struct Redis {
    child: Child,
    port: u16,
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Finds redis-server, installing Debian's package when running as root.
fn ensure_redis_server() -> bool {
    if have("redis-server") {
        return true;
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"));
    if !root {
        return false;
    }
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "-q", "redis-server"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !install() {
        let _ = Command::new("apt-get")
            .args(["update", "-q"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        install();
    }
    have("redis-server")
}

async fn start_redis() -> Option<Redis> {
    let port = free_port();
    start_redis_with(port, &["--port".to_owned(), port.to_string()]).await
}

/// Starts redis-server with `args` (which make it listen on `port`).
async fn start_redis_with(port: u16, args: &[String]) -> Option<Redis> {
    if !ensure_redis_server() {
        return None;
    }
    let child = Command::new("redis-server")
        .args(args)
        .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let redis = Redis { child, port };
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Some(redis);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limit_in_redis_is_shared_by_two_sluice_processes() {
    let Some(redis) = start_redis().await else {
        println!("SKIPPED: the Redis rate-limit test needs redis-server, which is not installed and could not be installed");
        return;
    };
    let app = origin("app").await;
    let config = format!(
        r#"
http:
  routers:
    limited:
      rule: "PathPrefix(`/`)"
      service: app
      middlewares: [shared-limit]
  middlewares:
    shared-limit:
      rateLimit:
        average: 1
        period: 1h
        burst: 3
        redis:
          endpoints: ["127.0.0.1:{}"]
          dialTimeout: 2s
  services:
    app:
      loadBalancer:
        servers:
          - url: "{}"
"#,
        redis.port,
        app.url()
    );
    let one = Sluice::start(&[("limits.yaml", config.clone())], &[]).await;
    let two = Sluice::start(&[("limits.yaml", config)], &[]).await;
    let client = common::client();
    let mut statuses = Vec::new();
    for i in 0..6 {
        let sluice = if i % 2 == 0 { &one } else { &two };
        let answer = send(&client, "GET", &sluice.url("/"), &[], "")
            .await
            .expect("request");
        statuses.push(answer.status);
    }
    // One bucket of three for both instances: in memory each would have allowed three.
    assert_eq!(statuses, vec![200, 200, 200, 429, 429, 429]);
    assert_eq!(app.whoami.requests(), 3);

    // With Redis gone, the limiter answers 500 rather than letting traffic through unchecked.
    drop(redis);
    let answer = send(&client, "GET", &one.url("/"), &[], "")
        .await
        .expect("request");
    assert_eq!(answer.status, 500, "{}", answer.body);
    assert_eq!(app.whoami.requests(), 3);
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, both signed by it, as
/// PEM: (CA, server cert, server key, client cert, client key).
fn redis_pki() -> [String; 5] {
    let ca_key = rcgen::KeyPair::generate().expect("ca key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "test Redis CA");
    let ca = ca_params.self_signed(&ca_key).expect("ca");
    let issuer = rcgen::Issuer::new(ca_params, &ca_key);
    let server_key = rcgen::KeyPair::generate().expect("server key");
    let server = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .expect("server params")
        .signed_by(&server_key, &issuer)
        .expect("server cert");
    let client_key = rcgen::KeyPair::generate().expect("client key");
    let client = rcgen::CertificateParams::new(vec!["sluice.test".to_owned()])
        .expect("client params")
        .signed_by(&client_key, &issuer)
        .expect("client cert");
    [
        ca.pem(),
        server.pem(),
        server_key.serialize_pem(),
        client.pem(),
        client_key.serialize_pem(),
    ]
}

/// rateLimit through a Redis that only speaks TLS and wants a client certificate: with the
/// CA and a client certificate (from files, or inline as the CRD provider writes them) the
/// bucket works; without the client certificate, or without trusting the server, the limiter
/// cannot reach Redis and answers 500; insecureSkipVerify trusts any server.
#[tokio::test(flavor = "multi_thread")]
async fn rate_limit_in_redis_over_tls() {
    let pki = redis_pki();
    let dir = tempfile::tempdir().expect("temp dir");
    let [ca, server_cert, server_key, client_cert, client_key] = [
        "ca.crt",
        "server.crt",
        "server.key",
        "client.crt",
        "client.key",
    ]
    .map(|name| dir.path().join(name).display().to_string());
    for (path, pem) in [&ca, &server_cert, &server_key, &client_cert, &client_key]
        .into_iter()
        .zip(&pki)
    {
        std::fs::write(path, pem).expect("write PEM");
    }
    let port = free_port();
    let args = [
        "--port",
        "0",
        "--tls-port",
        &port.to_string(),
        "--tls-cert-file",
        &server_cert,
        "--tls-key-file",
        &server_key,
        "--tls-ca-cert-file",
        &ca,
    ]
    .map(str::to_owned);
    let Some(redis) = start_redis_with(port, &args).await else {
        println!("SKIPPED: the Redis TLS rate-limit test needs redis-server, which is not installed and could not be installed");
        return;
    };
    let app = origin("app").await;
    let inline = |pem: &str| serde_json::to_string(pem).expect("json string");
    let config = format!(
        r#"
http:
  routers:
    files:
      rule: "PathPrefix(`/files`)"
      service: app
      middlewares: [files]
    inline:
      rule: "PathPrefix(`/inline`)"
      service: app
      middlewares: [inline]
    insecure:
      rule: "PathPrefix(`/insecure`)"
      service: app
      middlewares: [insecure]
    no-client-cert:
      rule: "PathPrefix(`/no-client-cert`)"
      service: app
      middlewares: [no-client-cert]
    untrusted:
      rule: "PathPrefix(`/untrusted`)"
      service: app
      middlewares: [untrusted]
  middlewares:
    files:
      rateLimit:
        average: 1
        period: 1h
        burst: 2
        redis:
          endpoints: ["127.0.0.1:{port}"]
          dialTimeout: 2s
          tls:
            ca: "{ca}"
            cert: "{client_cert}"
            key: "{client_key}"
    inline:
      rateLimit:
        average: 1
        period: 1h
        burst: 1
        redis:
          endpoints: ["127.0.0.1:{port}"]
          dialTimeout: 2s
          tls:
            ca: {ca_pem}
            cert: {cert_pem}
            key: {key_pem}
    insecure:
      rateLimit:
        average: 1
        period: 1h
        burst: 1
        redis:
          endpoints: ["127.0.0.1:{port}"]
          dialTimeout: 2s
          tls:
            cert: "{client_cert}"
            key: "{client_key}"
            insecureSkipVerify: true
    no-client-cert:
      rateLimit:
        average: 1
        period: 1h
        redis:
          endpoints: ["127.0.0.1:{port}"]
          dialTimeout: 2s
          tls:
            ca: "{ca}"
    untrusted:
      rateLimit:
        average: 1
        period: 1h
        redis:
          endpoints: ["127.0.0.1:{port}"]
          dialTimeout: 2s
          tls:
            cert: "{client_cert}"
            key: "{client_key}"
  services:
    app:
      loadBalancer:
        servers:
          - url: "{app}"
"#,
        ca_pem = inline(&pki[0]),
        cert_pem = inline(&pki[3]),
        key_pem = inline(&pki[4]),
        app = app.url(),
    );
    let sluice = Sluice::start(&[("limits.yaml", config)], &[]).await;
    let client = common::client();
    let statuses = |path: &'static str, n: usize| {
        let client = client.clone();
        let url = sluice.url(path);
        async move {
            let mut all = Vec::new();
            for _ in 0..n {
                let answer = send(&client, "GET", &url, &[], "").await.expect("request");
                all.push(answer.status);
            }
            all
        }
    };
    assert_eq!(statuses("/files", 3).await, vec![200, 200, 429]);
    assert_eq!(statuses("/inline", 2).await, vec![200, 429]);
    assert_eq!(statuses("/insecure", 2).await, vec![200, 429]);
    assert_eq!(statuses("/no-client-cert", 1).await, vec![500]);
    assert_eq!(statuses("/untrusted", 1).await, vec![500]);
    assert_eq!(app.whoami.requests(), 4);
    // Each refusal is logged with the TLS reason.
    let log = sluice.log_text();
    assert!(log.contains("CertificateRequired"), "{log}");
    assert!(log.contains("UnknownIssuer"), "{log}");
    drop(redis);
}

// ---------------------------------------------------------------------------------------------
// retry

#[tokio::test(flavor = "multi_thread")]
async fn retry_network_errors_only_when_nothing_was_sent() {
    let app = origin("app").await;
    let (slam_addr, slammed, _slam_task) = slammer().await;
    let config = format!(
        r#"
http:
  routers:
    three:
      rule: "PathPrefix(`/three`)"
      service: two-dead-then-app
      middlewares: [retry3]
    two:
      rule: "PathPrefix(`/two`)"
      service: two-dead-then-app-b
      middlewares: [retry2]
    slam:
      rule: "PathPrefix(`/slam`)"
      service: slam
      middlewares: [retry3]
  middlewares:
    retry3:
      retry:
        attempts: 3
        initialInterval: 10ms
    retry2:
      retry:
        attempts: 2
  services:
    two-dead-then-app:
      loadBalancer:
        servers:
          - url: "{dead1}"
          - url: "{dead2}"
          - url: "{app}"
    two-dead-then-app-b:
      loadBalancer:
        servers:
          - url: "{dead1}"
          - url: "{dead2}"
          - url: "{app}"
    slam:
      loadBalancer:
        servers:
          - url: "http://{slam_addr}"
"#,
        dead1 = dead_url(),
        dead2 = dead_url(),
        app = app.url(),
    );
    let sluice = Sluice::start(&[("retry.yaml", config)], &[]).await;
    let client = common::client();
    // Round robin sends the first attempt to a dead server, the retry to the other dead one,
    // the third attempt to the live origin.
    let answer = send(&client, "POST", &sluice.url("/three"), &[], "payload")
        .await
        .expect("request");
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(app.whoami.requests(), 1);
    assert_eq!(
        answer.seen("Content-Length"),
        Some("7"),
        "the body was replayed whole"
    );
    // Two attempts are not enough to get past two dead servers.
    let answer = send(&client, "GET", &sluice.url("/two"), &[], "")
        .await
        .expect("request");
    assert_eq!((answer.status, answer.body.as_str()), (502, "Bad Gateway"));
    assert_eq!(
        app.whoami.requests(),
        1,
        "the live origin was never reached"
    );

    // An origin that takes the request and drops the connection may have acted on it:
    // Traefik does not retry then, and neither does Sluice.
    let answer = send(&client, "GET", &sluice.url("/slam"), &[], "")
        .await
        .expect("request");
    assert_eq!(answer.status, 502);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        slammed.load(Ordering::SeqCst),
        1,
        "one connection, no retry"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_on_listed_statuses_replays_the_body() {
    // Fails twice with 503, then echoes the body.
    let flaky = programmed(|n, seen| {
        if n % 3 < 2 {
            text(503, Some("text/plain"), "busy")
        } else {
            text(200, Some("text/plain"), seen.body.clone())
        }
    })
    .await;
    let config = format!(
        r#"
http:
  routers:
    idempotent:
      rule: "PathPrefix(`/put`)"
      service: flaky
      middlewares: [on-5xx]
    post:
      rule: "PathPrefix(`/post`)"
      service: flaky
      middlewares: [on-5xx]
    post-allowed:
      rule: "PathPrefix(`/allowed`)"
      service: flaky
      middlewares: [on-5xx-any-method]
  middlewares:
    on-5xx:
      retry:
        attempts: 3
        status: ["500-599"]
    on-5xx-any-method:
      retry:
        attempts: 3
        status: ["503"]
        retryNonIdempotentMethod: true
  services:
    flaky:
      loadBalancer:
        servers:
          - url: "{}"
"#,
        flaky.url()
    );
    let sluice = Sluice::start(&[("retry.yaml", config)], &[]).await;
    let client = common::client();
    let answer = send(&client, "PUT", &sluice.url("/put"), &[], "first body")
        .await
        .expect("request");
    assert_eq!((answer.status, answer.body.as_str()), (200, "first body"));
    assert_eq!(flaky.hits(), 3);
    let bodies: Vec<Bytes> = flaky.seen().iter().map(|s| s.body.clone()).collect();
    assert_eq!(
        bodies,
        vec![Bytes::from("first body"); 3],
        "every attempt got the whole body"
    );

    // POST is not idempotent: the 503 is the answer.
    let answer = send(&client, "POST", &sluice.url("/post"), &[], "second")
        .await
        .expect("request");
    assert_eq!((answer.status, answer.body.as_str()), (503, "busy"));
    assert_eq!(flaky.hits(), 4);

    // Unless allowed. (The origin's counter is at 4: it fails twice more, then answers.)
    let answer = send(&client, "POST", &sluice.url("/allowed"), &[], "third")
        .await
        .expect("request");
    assert_eq!((answer.status, answer.body.as_str()), (200, "third"));
    assert_eq!(flaky.hits(), 6);
    assert_eq!(flaky.seen()[5].method, "POST");
}

// ---------------------------------------------------------------------------------------------
// circuitBreaker

#[tokio::test(flavor = "multi_thread")]
async fn circuit_breaker_opens_on_5xx_and_recovers() {
    let app = origin("app").await;
    let config = format!(
        r#"
http:
  routers:
    guarded:
      rule: "PathPrefix(`/health`)"
      service: app
      middlewares: [breaker]
  middlewares:
    breaker:
      circuitBreaker:
        expression: "ResponseCodeRatio(500, 600, 0, 600) > 0.5"
        checkPeriod: 50ms
        fallbackDuration: 1s
        recoveryDuration: 2s
        responseCode: 503
  services:
    app:
      loadBalancer:
        servers:
          - url: "{}"
"#,
        app.url()
    );
    let sluice = Sluice::start(&[("cb.yaml", config)], &[]).await;
    let client = common::client();
    let set_health = |code: &'static str| {
        let url = format!("{}/health", app.url());
        async move {
            send(&common::client(), "POST", &url, &[], code)
                .await
                .expect("set health");
            let answer = send(&common::client(), "GET", &url, &[], "")
                .await
                .expect("read health");
            assert_eq!(
                answer.status.to_string(),
                code,
                "the origin now answers {code}"
            );
        }
    };
    let healthy = send(&client, "GET", &sluice.url("/health"), &[], "")
        .await
        .expect("request");
    assert_eq!(healthy.status, 200);

    set_health("500").await;
    let before = app.whoami.requests();
    // Failures pass through until a check sees them (at most one check period).
    let mut first_refusal = None;
    for i in 0..100 {
        let answer = send(&client, "GET", &sluice.url("/health"), &[], "")
            .await
            .expect("request");
        if answer.status == 503 {
            assert_eq!(answer.body, "Service Unavailable");
            first_refusal = Some(i);
            break;
        }
        assert_eq!(answer.status, 500);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(first_refusal.is_some(), "the breaker never opened");
    // Open: nothing reaches the origin.
    let reached = app.whoami.requests();
    assert!(reached > before);
    for _ in 0..5 {
        let answer = send(&client, "GET", &sluice.url("/health"), &[], "")
            .await
            .expect("request");
        assert_eq!(answer.status, 503);
    }
    assert_eq!(
        app.whoami.requests(),
        reached,
        "tripped: the origin is left alone"
    );

    // The origin heals; after the fallback duration the breaker lets a growing share through.
    set_health("200").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut passed = 0;
    let deadline = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < deadline {
        let answer = send(&client, "GET", &sluice.url("/health"), &[], "")
            .await
            .expect("request");
        assert!(
            answer.status == 200 || answer.status == 503,
            "{}",
            answer.status
        );
        if answer.status == 200 {
            passed += 1;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(passed > 0, "recovering lets some requests through");
    // Past the recovery duration: standby, everything passes.
    tokio::time::sleep(Duration::from_millis(800)).await;
    for _ in 0..10 {
        let answer = send(&client, "GET", &sluice.url("/health"), &[], "")
            .await
            .expect("request");
        assert_eq!(answer.status, 200);
    }
}

// ---------------------------------------------------------------------------------------------
// buffering

#[tokio::test(flavor = "multi_thread")]
async fn buffering_limits_and_retry_expression() {
    let echo = programmed(|_, seen| text(200, Some("text/plain"), seen.body.clone())).await;
    let app = origin("app").await;
    let config = format!(
        r#"
http:
  routers:
    small-requests:
      rule: "PathPrefix(`/upload`)"
      service: echo
      middlewares: [small-requests]
    small-answers:
      rule: "PathPrefix(`/data`)"
      service: app
      middlewares: [small-answers]
    replay:
      rule: "PathPrefix(`/replay`)"
      service: dead-then-echo
      middlewares: [replay]
  middlewares:
    small-requests:
      buffering:
        maxRequestBodyBytes: 10
    small-answers:
      buffering:
        maxResponseBodyBytes: 1000
    replay:
      buffering:
        retryExpression: "IsNetworkError() && Attempts() < 2"
  services:
    echo:
      loadBalancer:
        servers:
          - url: "{echo}"
    app:
      loadBalancer:
        servers:
          - url: "{app}"
    dead-then-echo:
      loadBalancer:
        servers:
          - url: "{dead}"
          - url: "{echo}"
"#,
        echo = echo.url(),
        app = app.url(),
        dead = dead_url(),
    );
    let sluice = Sluice::start(&[("buffering.yaml", config)], &[]).await;
    let client = common::client();
    let answer = send(&client, "POST", &sluice.url("/upload"), &[], "0123456789")
        .await
        .expect("request");
    assert_eq!((answer.status, answer.body.as_str()), (200, "0123456789"));
    assert_eq!(
        echo.seen()[0]
            .headers
            .get("content-length")
            .map(|v| v.as_bytes()),
        Some(&b"10"[..])
    );
    let answer = send(&client, "POST", &sluice.url("/upload"), &[], "0123456789A")
        .await
        .expect("request");
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (413, "Payload Too Large")
    );
    assert_eq!(echo.hits(), 1, "a refused body never reaches the origin");

    let answer = send(&client, "GET", &sluice.url("/data?size=1000"), &[], "")
        .await
        .expect("request");
    assert_eq!((answer.status, answer.body.len()), (200, 1000));
    let answer = send(&client, "GET", &sluice.url("/data?size=1001"), &[], "")
        .await
        .expect("request");
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (500, "Internal Server Error")
    );

    // First attempt: the dead server (502); the expression allows a second, to the echo.
    let answer = send(&client, "POST", &sluice.url("/replay"), &[], "again")
        .await
        .expect("request");
    assert_eq!((answer.status, answer.body.as_str()), (200, "again"));
    assert_eq!(echo.hits(), 2);
    // Next round: the echo first (no retry needed)...
    let answer = send(&client, "POST", &sluice.url("/replay"), &[], "x")
        .await
        .expect("request");
    assert_eq!(answer.status, 200);
    assert_eq!(echo.hits(), 3);
}

/// Bytes whose value depends on their position (a pseudo-random table with a prime period), so
/// a receiver can check every byte it gets is the right one at the right place.
struct Pattern {
    /// The table twice over, so any window up to one period is one slice.
    doubled: Vec<u8>,
}

impl Pattern {
    const PERIOD: usize = 65_521;

    fn new() -> Self {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let table: Vec<u8> = (0..Self::PERIOD)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect();
        let mut doubled = table.clone();
        doubled.extend_from_slice(&table);
        Self { doubled }
    }

    /// `len` bytes from stream position `offset`.
    fn bytes(&self, mut offset: u64, len: usize) -> Bytes {
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            let start = (offset % Self::PERIOD as u64) as usize;
            let n = (len - out.len()).min(Self::PERIOD);
            out.extend_from_slice(&self.doubled[start..start + n]);
            offset += n as u64;
        }
        Bytes::from(out)
    }

    /// Whether `data` is what the stream holds at `offset`.
    fn matches(&self, mut offset: u64, mut data: &[u8]) -> bool {
        while !data.is_empty() {
            let start = (offset % Self::PERIOD as u64) as usize;
            let n = data.len().min(Self::PERIOD);
            if data[..n] != self.doubled[start..start + n] {
                return false;
            }
            data = &data[n..];
            offset += n as u64;
        }
        true
    }

    /// A streaming body of `size` pattern bytes, in 64 KiB chunks.
    fn body(self: &Arc<Self>, size: u64) -> BoxBody<Bytes, std::io::Error> {
        const CHUNK: u64 = 64 * 1024;
        let pattern = self.clone();
        let stream = futures_util::stream::iter((0..size.div_ceil(CHUNK)).map(move |i| {
            let offset = i * CHUNK;
            let len = CHUNK.min(size - offset) as usize;
            Ok::<_, std::io::Error>(Frame::data(pattern.bytes(offset, len)))
        }));
        BodyExt::boxed(StreamBody::new(stream))
    }

    /// Reads `body` to its end: its length and whether every byte was in place.
    async fn check<B>(&self, mut body: B) -> (u64, bool)
    where
        B: hyper::body::Body<Data = Bytes> + Unpin,
        B::Error: std::fmt::Debug,
    {
        let mut len = 0u64;
        let mut intact = true;
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.expect("body frame").into_data() {
                intact &= self.matches(len, &data);
                len += data.len() as u64;
            }
        }
        (len, intact)
    }
}

/// An origin that checks uploads against [`Pattern`] as they stream in (answering
/// `"<length> <intact>"`, with 503 to the first upload to `/spill`), and streams `GET ?size=N` pattern
/// bytes; nothing is held whole.
async fn pattern_origin(pattern: Arc<Pattern>) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let uploads = Arc::new(AtomicUsize::new(0));
    let counter = uploads.clone();
    let refused = Arc::new(std::sync::atomic::AtomicBool::new(false));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let pattern = pattern.clone();
            let counter = counter.clone();
            let refused = refused.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                    let pattern = pattern.clone();
                    let counter = counter.clone();
                    let refused = refused.clone();
                    async move {
                        if req.method() == http::Method::GET {
                            let size: u64 = req
                                .uri()
                                .query()
                                .and_then(|q| q.strip_prefix("size="))
                                .and_then(|v| v.parse().ok())
                                .unwrap_or(0);
                            return Ok::<_, Infallible>(http::Response::new(pattern.body(size)));
                        }
                        let spill = req.uri().path().starts_with("/spill");
                        let (len, intact) = pattern.check(req.into_body()).await;
                        counter.fetch_add(1, Ordering::SeqCst);
                        let first = spill && !refused.swap(true, Ordering::SeqCst);
                        let mut response = http::Response::new(
                            Full::new(Bytes::from(format!("{len} {intact}")))
                                .map_err(|never| match never {})
                                .boxed(),
                        );
                        if first {
                            *response.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
                        }
                        Ok(response)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, uploads)
}

/// Files the process has open that no longer have a name (spilled bodies).
fn unnamed_open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .filter(|target| target.to_string_lossy().ends_with("(deleted)"))
                .count()
        })
        .unwrap_or(0)
}

/// 100 MB each way through buffering with 64 KiB in memory: the bodies spill to disk, arrive
/// intact (the upload twice, replayed by retryExpression), and the proxy's memory stays flat;
/// the maxima still hold on spilled bodies.
#[tokio::test(flavor = "multi_thread")]
async fn buffering_spills_large_bodies_to_disk() {
    const SIZE: u64 = 100 * 1024 * 1024;
    const MAX: u64 = 2 * 1024 * 1024;
    let pattern = Arc::new(Pattern::new());
    let (origin_addr, uploads) = pattern_origin(pattern.clone()).await;
    let config = format!(
        r#"
http:
  routers:
    spill:
      rule: "PathPrefix(`/spill`)"
      service: patterns
      middlewares: [spill]
    capped:
      rule: "PathPrefix(`/capped`)"
      service: patterns
      middlewares: [capped]
  middlewares:
    spill:
      buffering:
        memRequestBodyBytes: 65536
        memResponseBodyBytes: 65536
        retryExpression: "ResponseCode() == 503 && Attempts() < 2"
    capped:
      buffering:
        memRequestBodyBytes: 65536
        memResponseBodyBytes: 65536
        maxRequestBodyBytes: {MAX}
        maxResponseBodyBytes: {MAX}
  services:
    patterns:
      loadBalancer:
        servers:
          - url: "http://{origin_addr}"
"#
    );
    let sluice = Sluice::start(&[("spill.yaml", config)], &[]).await;
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<BoxBody<Bytes, std::io::Error>>();
    let post = |path: &str, size: u64| {
        http::Request::post(sluice.url(path))
            .body(pattern.body(size))
            .expect("request")
    };
    let get = |path: &str| {
        http::Request::get(sluice.url(path))
            .body(pattern.body(0))
            .expect("request")
    };

    // Limits first, on chunked uploads (no Content-Length to refuse early).
    let response = client.request(post("/capped", MAX)).await.expect("upload");
    assert_eq!(response.status(), 200, "exactly the maximum passes");
    let text = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    assert_eq!(text, format!("{MAX} true").as_bytes());
    let response = client
        .request(post("/capped", MAX + 1))
        .await
        .expect("upload");
    assert_eq!(response.status(), 413);
    assert_eq!(
        uploads.load(Ordering::SeqCst),
        1,
        "refused before the origin"
    );
    let response = client
        .request(get(&format!("/capped?size={MAX}")))
        .await
        .expect("download");
    assert_eq!(response.status(), 200);
    assert_eq!(
        pattern.check(response.into_body()).await,
        (MAX, true),
        "an answer of exactly the maximum passes"
    );
    let response = client
        .request(get(&format!("/capped?size={}", MAX + 1)))
        .await
        .expect("download");
    assert_eq!(response.status(), 500);
    let baseline_kib = sluice.peak_rss_kib();

    // Upload: the origin's first answer is 503, so the spilled body is sent a second time.
    let response = client.request(post("/spill", SIZE)).await.expect("upload");
    assert_eq!(response.status(), 200);
    let text = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    assert_eq!(text, format!("{SIZE} true").as_bytes());
    assert_eq!(
        uploads.load(Ordering::SeqCst),
        3,
        "one refusal, then the replay"
    );

    // Download: the whole answer is stored before the client gets its first byte.
    let response = client
        .request(get(&format!("/spill?size={SIZE}")))
        .await
        .expect("download");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response
            .headers()
            .get("content-length")
            .map(|v| v.as_bytes()),
        Some(SIZE.to_string().as_bytes())
    );
    assert_eq!(pattern.check(response.into_body()).await, (SIZE, true));

    let peak_kib = sluice.peak_rss_kib();
    let growth_mib = peak_kib.saturating_sub(baseline_kib) / 1024;
    println!(
        "sluice peak RSS: {} MiB before, {} MiB after buffering 100 MB up (sent twice) + 100 MB down (growth {growth_mib} MiB)",
        baseline_kib / 1024,
        peak_kib / 1024
    );
    assert!(
        growth_mib < 32,
        "RSS grew by {growth_mib} MiB: buffered bodies are held in memory"
    );
    // The temporary files go with the bodies.
    let deadline = Instant::now() + Duration::from_secs(5);
    while unnamed_open_files(sluice.pid()) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(unnamed_open_files(sluice.pid()), 0, "spill files left open");
}

// ---------------------------------------------------------------------------------------------
// compress

async fn decode(encoding: &str, data: &[u8]) -> Vec<u8> {
    use async_compression::tokio::bufread::{BrotliDecoder, GzipDecoder, ZstdDecoder};
    let mut out = Vec::new();
    match encoding {
        "gzip" => GzipDecoder::new(data).read_to_end(&mut out).await,
        "br" => BrotliDecoder::new(data).read_to_end(&mut out).await,
        "zstd" => ZstdDecoder::new(data).read_to_end(&mut out).await,
        other => panic!("unexpected encoding {other}"),
    }
    .expect("decodes");
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn compress_each_encoding_streams_large_answers_only() {
    let app = origin("app").await;
    let typed = programmed(|_, seen| {
        let kind = seen.path.trim_start_matches("/typed/").replace('_', "/");
        text(200, Some(&kind), "y".repeat(5000))
    })
    .await;
    let config = format!(
        r#"
http:
  routers:
    data:
      rule: "PathPrefix(`/data`)"
      service: app
      middlewares: [compress]
    typed:
      rule: "PathPrefix(`/typed`)"
      service: typed
      middlewares: [compress-html-only]
  middlewares:
    compress:
      compress: {{}}
    compress-html-only:
      compress:
        includedContentTypes: ["text/html"]
        minResponseBodyBytes: 100
  services:
    app:
      loadBalancer:
        servers:
          - url: "{}"
    typed:
      loadBalancer:
        servers:
          - url: "{}"
"#,
        app.url(),
        typed.url()
    );
    let sluice = Sluice::start(&[("compress.yaml", config)], &[]).await;
    let original = vec![b'x'; 300_000];
    for (accept, expected) in [
        ("gzip", "gzip"),
        ("br", "br"),
        ("zstd", "zstd"),
        ("gzip;q=0.2, br;q=0.5, zstd;q=0.9", "zstd"),
        ("zstd, br", "br"),
        ("*", "gzip"),
    ] {
        let raw = fetch(
            "GET",
            &sluice.url("/data?size=300000"),
            &[("Accept-Encoding", accept)],
            "",
        )
        .await;
        assert_eq!(raw.status, 200);
        assert_eq!(
            raw.headers.get("content-encoding").map(|v| v.as_bytes()),
            Some(expected.as_bytes()),
            "{accept}"
        );
        assert!(raw.headers.get("content-length").is_none());
        assert_eq!(
            raw.headers.get("vary").map(|v| v.as_bytes()),
            Some(&b"Accept-Encoding"[..])
        );
        assert!(
            raw.body.len() < 10_000,
            "{expected}: {} bytes",
            raw.body.len()
        );
        assert_eq!(
            decode(expected, &raw.body).await,
            original,
            "{expected} round trip"
        );
    }
    // Small answers, HEAD, no Accept-Encoding, identity: left alone.
    let raw = fetch(
        "GET",
        &sluice.url("/data?size=1023"),
        &[("Accept-Encoding", "gzip")],
        "",
    )
    .await;
    assert!(raw.headers.get("content-encoding").is_none());
    assert_eq!(
        raw.headers.get("content-length").map(|v| v.as_bytes()),
        Some(&b"1023"[..])
    );
    assert_eq!(raw.body.len(), 1023);
    assert_eq!(
        raw.headers.get("vary").map(|v| v.as_bytes()),
        Some(&b"Accept-Encoding"[..])
    );
    let raw = fetch(
        "GET",
        &sluice.url("/data?size=1024"),
        &[("Accept-Encoding", "gzip")],
        "",
    )
    .await;
    assert_eq!(
        raw.headers.get("content-encoding").map(|v| v.as_bytes()),
        Some(&b"gzip"[..]),
        "1024 is enough"
    );
    let raw = fetch(
        "HEAD",
        &sluice.url("/data?size=5000"),
        &[("Accept-Encoding", "gzip")],
        "",
    )
    .await;
    assert!(raw.headers.get("content-encoding").is_none());
    let raw = fetch("GET", &sluice.url("/data?size=5000"), &[], "").await;
    assert!(raw.headers.get("content-encoding").is_none());
    assert_eq!(raw.body.len(), 5000);
    let raw = fetch(
        "GET",
        &sluice.url("/data?size=5000"),
        &[("Accept-Encoding", "identity")],
        "",
    )
    .await;
    assert!(raw.headers.get("content-encoding").is_none());
    assert!(raw.headers.get("vary").is_none());
    let raw = fetch(
        "GET",
        &sluice.url("/data?size=5000"),
        &[("Accept-Encoding", "deflate")],
        "",
    )
    .await;
    assert!(
        raw.headers.get("content-encoding").is_none(),
        "nothing acceptable"
    );

    // includedContentTypes: only text/html is compressed.
    let raw = fetch(
        "GET",
        &sluice.url("/typed/text_html"),
        &[("Accept-Encoding", "br")],
        "",
    )
    .await;
    assert_eq!(
        raw.headers.get("content-encoding").map(|v| v.as_bytes()),
        Some(&b"br"[..])
    );
    assert_eq!(decode("br", &raw.body).await, vec![b'y'; 5000]);
    let raw = fetch(
        "GET",
        &sluice.url("/typed/application_json"),
        &[("Accept-Encoding", "br")],
        "",
    )
    .await;
    assert!(raw.headers.get("content-encoding").is_none());
    assert_eq!(raw.body.len(), 5000);
    assert_eq!(
        typed.seen()[0]
            .headers
            .get("accept-encoding")
            .map(|v| v.as_bytes()),
        Some(&b"br"[..])
    );
}

// ---------------------------------------------------------------------------------------------
// errors

#[tokio::test(flavor = "multi_thread")]
async fn error_pages_with_placeholders_and_rewrites() {
    let failing = programmed(|_, seen| {
        let code: u16 = seen
            .path
            .trim_start_matches("/fail/")
            .split('?')
            .next()
            .unwrap_or("500")
            .parse()
            .unwrap_or(500);
        text(code, Some("text/plain"), "original body")
    })
    .await;
    let pages = programmed(|_, seen| {
        text(
            200,
            Some("text/html"),
            format!("<p>page for {}</p>", seen.path),
        )
    })
    .await;
    let config = format!(
        r#"
http:
  routers:
    app:
      rule: "PathPrefix(`/fail`)"
      service: failing
      middlewares: [pages]
    unreachable:
      rule: "PathPrefix(`/gone`)"
      service: gone
      middlewares: [pages]
  middlewares:
    pages:
      errors:
        status: ["500-599", "404"]
        service: pages
        query: "/err/{{status}}?orig={{originalStatus}}&u={{url}}"
        statusRewrites:
          "418": 400
          "503": 500
  services:
    failing:
      loadBalancer:
        servers:
          - url: "{}"
    pages:
      loadBalancer:
        servers:
          - url: "{}"
    gone:
      loadBalancer:
        servers:
          - url: "{}"
"#,
        failing.url(),
        pages.url(),
        dead_url()
    );
    let sluice = Sluice::start(&[("errors.yaml", config)], &[]).await;
    let raw = fetch(
        "GET",
        &sluice.url("/fail/502?x=1"),
        &[("Host", "shop.example"), ("X-Custom", "kept")],
        "",
    )
    .await;
    assert_eq!(raw.status, 502);
    let url = "http%3A%2F%2Fshop.example%2Ffail%2F502%3Fx%3D1";
    assert_eq!(
        raw.body,
        format!("<p>page for /err/502?orig=502&u={url}</p>")
    );
    assert_eq!(
        raw.headers.get("content-type").map(|v| v.as_bytes()),
        Some(&b"text/html"[..])
    );
    let page_request = &pages.seen()[0];
    assert_eq!(page_request.method, "GET");
    assert_eq!(
        page_request.headers.get("x-custom").map(|v| v.as_bytes()),
        Some(&b"kept"[..])
    );
    assert_eq!(
        page_request.headers.get("host").map(|v| v.as_bytes()),
        Some(&b"shop.example"[..])
    );

    // Rewritten: 503 is answered 500, the page asked for with both codes.
    let raw = fetch("GET", &sluice.url("/fail/503"), &[], "").await;
    assert_eq!(raw.status, 500);
    assert!(
        String::from_utf8_lossy(&raw.body).contains("/err/500?orig=503&"),
        "{:?}",
        raw.body
    );
    // Statuses outside the list pass untouched.
    let raw = fetch("GET", &sluice.url("/fail/418"), &[], "").await;
    assert_eq!((raw.status, &raw.body[..]), (418, &b"original body"[..]));
    let raw = fetch("GET", &sluice.url("/fail/404"), &[], "").await;
    assert_eq!(raw.status, 404);
    assert!(raw.body.starts_with(b"<p>page for /err/404?orig=404"));
    // Sluice's own errors are caught too.
    let raw = fetch("GET", &sluice.url("/gone"), &[], "").await;
    assert_eq!(raw.status, 502);
    assert!(raw.body.starts_with(b"<p>page for /err/502?orig=502"));
    assert_eq!(failing.hits(), 4);
    assert_eq!(pages.hits(), 4);
}

// ---------------------------------------------------------------------------------------------
// grpcWeb

fn grpc_frame(message: &[u8]) -> Vec<u8> {
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(message);
    frame
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_web_binary_and_text_reach_a_grpc_origin() {
    // A gRPC origin: echoes the request message, then trailers.
    let grpc = programmed(|_, seen| {
        let body = seen.body.clone();
        let frames = vec![
            Ok::<_, Infallible>(Frame::data(body)),
            Ok(Frame::trailers({
                let mut t = http::HeaderMap::new();
                t.insert("grpc-status", "0".parse().expect("value"));
                t.insert("grpc-message", "fine".parse().expect("value"));
                t
            })),
        ];
        let mut response =
            http::Response::new(StreamBody::new(futures_util::stream::iter(frames)).boxed());
        response.headers_mut().insert(
            "content-type",
            "application/grpc+proto".parse().expect("ct"),
        );
        response
    })
    .await;
    let config = format!(
        r#"
http:
  routers:
    grpc:
      rule: "PathPrefix(`/pkg.Service`)"
      service: grpc
      middlewares: [grpc-web]
  middlewares:
    grpc-web:
      grpcWeb:
        allowOrigins: ["https://app.example"]
  services:
    grpc:
      loadBalancer:
        servers:
          - url: "{}"
"#,
        grpc.h2c_url()
    );
    let sluice = Sluice::start(&[("grpc.yaml", config)], &[]).await;
    let message = grpc_frame(b"hello");
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let request = http::Request::builder()
        .method("POST")
        .uri(sluice.url("/pkg.Service/Echo"))
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .header("origin", "https://app.example")
        .body(Full::new(Bytes::from(message.clone())))
        .expect("request");
    let response = client.request(request).await.expect("response");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/grpc-web+proto"
    );
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let trailer = b"grpc-status: 0\r\ngrpc-message: fine\r\n";
    let mut expected = message.clone();
    expected.push(0x80);
    expected.extend_from_slice(&(trailer.len() as u32).to_be_bytes());
    expected.extend_from_slice(trailer);
    assert_eq!(&body[..], &expected[..]);
    let seen = &grpc.seen()[0];
    assert_eq!(seen.headers["content-type"], "application/grpc+proto");
    assert_eq!(&seen.body[..], &message[..]);

    // The text form: base64 both ways.
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let raw = fetch(
        "POST",
        &sluice.url("/pkg.Service/Echo"),
        &[
            ("content-type", "application/grpc-web-text"),
            ("origin", "https://evil.example"),
        ],
        &b64.encode(&message),
    )
    .await;
    assert_eq!(
        raw.headers["content-type"],
        "application/grpc-web-text+proto"
    );
    assert!(
        raw.headers.get("access-control-allow-origin").is_none(),
        "origin not allowed"
    );
    let decoded = b64.decode(&raw.body).expect("base64 answer");
    assert_eq!(decoded, expected);
    assert_eq!(&grpc.seen()[1].body[..], &message[..]);
    assert_eq!(grpc.seen()[1].headers["content-type"], "application/grpc");

    // CORS preflight answered here.
    let raw = fetch(
        "OPTIONS",
        &sluice.url("/pkg.Service/Echo"),
        &[
            ("origin", "https://app.example"),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "content-type,x-grpc-web"),
        ],
        "",
    )
    .await;
    assert_eq!(raw.status, 204);
    assert_eq!(
        raw.headers["access-control-allow-origin"],
        "https://app.example"
    );
    assert_eq!(grpc.hits(), 2);
}
