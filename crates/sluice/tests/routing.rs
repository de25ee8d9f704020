//! Routing end to end: every matcher, combinations, priorities, ties and v2 syntax, over real
//! sockets, with HTTP/1.1 and h2c clients.

mod common;

use common::{get, h2c_client, origins, render, send, Sluice};

const NAMES: &[&str] = &[
    "host",
    "host-path",
    "wildcard",
    "hostregexp",
    "path",
    "pathregexp",
    "method",
    "header",
    "headerregexp",
    "query",
    "queryregexp",
    "clientip",
    "negation",
    "either",
    "prio-low",
    "prio-high",
    "tie-a",
    "tie-b",
    "v2",
];

/// A request (method, path, headers) and the origin expected to answer it, or "404".
type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], &'a str);

#[tokio::test(flavor = "multi_thread")]
async fn every_matcher_routes_as_traefik_does() {
    let (_origins, vars) = origins(NAMES).await;
    let sluice = Sluice::start(&[("routing.yaml", render("routing.yaml", &vars))], &[]).await;
    let client = common::client();

    // (method, path, headers, expected origin or "404")
    let cases: &[Case] = &[
        ("GET", "/", &[("Host", "a.example.com")], "host"),
        ("GET", "/", &[("Host", "A.Example.COM:8080")], "host"),
        ("GET", "/", &[("Host", "a.example.com.")], "host"),
        (
            "GET",
            "/api/users",
            &[("Host", "a.example.com")],
            "host-path",
        ),
        ("GET", "/apiv2", &[("Host", "a.example.com")], "host-path"),
        ("GET", "/", &[("Host", "x.wild.example.com")], "wildcard"),
        ("GET", "/", &[("Host", "x.y.wild.example.com")], "404"),
        ("GET", "/", &[("Host", "wild.example.com")], "404"),
        ("GET", "/", &[("Host", "abc.re.example.com")], "hostregexp"),
        ("GET", "/", &[("Host", "ab1.re.example.com")], "404"),
        ("GET", "/exact", &[], "path"),
        ("GET", "/exact/", &[], "404"),
        ("GET", "/items/42", &[], "pathregexp"),
        ("GET", "/items/4x", &[], "404"),
        ("DELETE", "/m/1", &[], "method"),
        ("GET", "/m/1", &[], "404"),
        ("GET", "/h", &[("X-Env", "staging")], "header"),
        ("GET", "/h", &[("X-Env", "Staging")], "404"),
        ("GET", "/h", &[("X-Team", "ops-blue")], "headerregexp"),
        ("GET", "/q?mobile=true", &[], "query"),
        ("GET", "/q?mobile=false", &[], "404"),
        ("GET", "/q?v=12", &[], "queryregexp"),
        ("GET", "/internal/x", &[], "clientip"),
        ("GET", "/elsewhere", &[], "404"),
        ("POST", "/neg", &[], "negation"),
        ("GET", "/neg", &[], "404"),
        ("GET", "/x", &[("Host", "or.example.com")], "either"),
        ("GET", "/y", &[("Host", "or.example.com")], "either"),
        ("GET", "/z", &[("Host", "or.example.com")], "404"),
        ("GET", "/prio", &[], "prio-high"),
        // Equal priority: routers are ordered by name.
        ("GET", "/tie", &[], "tie-a"),
        ("GET", "/v2/7", &[("Host", "v2b.example.com")], "v2"),
        ("GET", "/v2/x", &[("Host", "v2b.example.com")], "404"),
    ];
    let mut failures = Vec::new();
    for (method, path, headers, expected) in cases {
        let answer = send(&client, method, &sluice.url(path), headers, "")
            .await
            .expect("request");
        let got = if answer.status == 404 {
            assert_eq!(answer.body, "404 page not found\n");
            "404".to_owned()
        } else {
            assert_eq!(answer.status, 200, "{method} {path}: {answer:?}");
            answer.origin().to_owned()
        };
        if got != *expected {
            failures.push(format!(
                "{method} {path} {headers:?}: expected {expected}, got {got}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn h2c_clients_are_served_and_routed_by_authority() {
    let (_origins, vars) = origins(NAMES).await;
    let sluice = Sluice::start(&[("routing.yaml", render("routing.yaml", &vars))], &[]).await;
    let answer = send(&h2c_client(), "GET", &sluice.url("/exact"), &[], "")
        .await
        .expect("h2c request");
    assert_eq!(answer.status, 200);
    assert_eq!(answer.origin(), "path");
    assert!(
        answer.body.contains("GET /exact HTTP/1.1"),
        "origins are spoken to in HTTP/1.1"
    );

    // HTTP/2 carries the host in :authority; connect to loopback but ask for a.example.com.
    let stream = tokio::net::TcpStream::connect(sluice.addr)
        .await
        .expect("connect");
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .expect("h2 handshake");
    tokio::spawn(connection);
    let request = http::Request::get("http://a.example.com/api/x")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .expect("request");
    let response = sender.send_request(request).await.expect("h2 response");
    assert_eq!(response.status(), 200);
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .expect("body")
        .to_bytes();
    let body = String::from_utf8_lossy(&body);
    assert!(body.contains("Name: host-path"), "{body}");
    assert!(body.contains("Host: a.example.com"), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_paths_get_400_and_unknown_hosts_404() {
    let (_origins, vars) = origins(NAMES).await;
    let sluice = Sluice::start(&[("routing.yaml", render("routing.yaml", &vars))], &[]).await;
    let answer = get(&sluice.url("/exact%"), &[]).await;
    assert_eq!(answer.status, 400);
    let answer = get(
        &sluice.url("/nothing-here"),
        &[("Host", "nobody.example.org")],
    )
    .await;
    assert_eq!(answer.status, 404);
    // Dot segments are resolved before routing.
    let answer = get(&sluice.url("/items/../exact"), &[]).await;
    assert_eq!(answer.origin(), "path");
}
