//! Access-control middlewares end to end: basicAuth, digestAuth, forwardAuth (against a small
//! auth server started here), ipAllowList/ipWhiteList, inFlightReq and passTLSClientCert.
//! Each test checks what the client gets and what the origin (or auth server) received.

mod common;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use common::{get, origins, render, send, Answer, Sluice};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use md5::{Digest as _, Md5};

/// What the auth server received.
#[derive(Debug, Clone)]
struct AuthRequest {
    method: String,
    uri: String,
    headers: http::HeaderMap,
    body: Bytes,
}

/// A tiny forwardAuth server: `X-Token: good` is allowed (with identity headers and cookies),
/// `X-Token: redirect` is sent to a relative login page, anything else is refused.
struct AuthServer {
    url: String,
    seen: Arc<Mutex<Vec<AuthRequest>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for AuthServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl AuthServer {
    fn requests(&self) -> Vec<AuthRequest> {
        self.seen.lock().unwrap().clone()
    }
}

async fn auth_server() -> AuthServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorder = seen.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let recorder = recorder.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| decide(req, recorder.clone()));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    AuthServer { url, seen, task }
}

async fn decide(
    req: http::Request<Incoming>,
    seen: Arc<Mutex<Vec<AuthRequest>>>,
) -> Result<http::Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let token = parts
        .headers
        .get("x-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    seen.lock().unwrap().push(AuthRequest {
        method: parts.method.to_string(),
        uri: parts.uri.to_string(),
        headers: parts.headers,
        body,
    });
    let response = match token.as_str() {
        "good" => http::Response::builder()
            .status(200)
            .header("X-Auth-User", "alice")
            .header("X-Auth-Extra-Role", "admin")
            .header("X-Auth-Extra-Role", "auditor")
            .header("X-Other", "not for the origin")
            .header("Set-Cookie", "session=s1; Path=/")
            .header("Set-Cookie", "other=o1")
            .body(Full::new(Bytes::from_static(b"ignored"))),
        "redirect" => http::Response::builder()
            .status(302)
            .header("Location", "/login?x=1")
            .header("X-Reason", "login first")
            .body(Full::new(Bytes::from_static(b"go login"))),
        _ => http::Response::builder()
            .status(401)
            .header("WWW-Authenticate", "Bearer realm=\"auth\"")
            .body(Full::new(Bytes::from_static(b"denied by auth"))),
    };
    Ok(response.unwrap())
}

/// Everything a test needs: one whoami origin, the auth server, and Sluice.
struct Setup {
    origin: common::Origin,
    auth: AuthServer,
    sluice: Sluice,
    _users_dir: tempfile::TempDir,
}

impl Setup {
    fn origin_requests(&self) -> u64 {
        self.origin.whoami.requests()
    }
}

/// Starts the fixture; `trusted` makes every client's X-Forwarded-* headers believed.
async fn start(trusted: bool) -> Setup {
    let (mut started, mut vars) = origins(&["app"]).await;
    let auth = auth_server().await;
    vars.push(("auth", auth.url.clone()));
    vars.push((
        "auth_down",
        format!("http://127.0.0.1:{}", common::free_port()),
    ));
    let users_dir = tempfile::tempdir().unwrap();
    let users_file = users_dir.path().join("htpasswd");
    std::fs::write(
        &users_file,
        "# staff\n\n  test16:$apr1$JI4wh3am$AmhephVqLTUyAVpFQeHZC0  \ntest:{SHA}qvTGHdzF6KLavt4PO0gs2a6pQ00=\n",
    )
    .unwrap();
    vars.push(("users_file", users_file.display().to_string()));
    let flags: &[&str] = if trusted {
        &["--entryPoints.web.forwardedHeaders.insecure=true"]
    } else {
        &[]
    };
    let sluice = Sluice::start(
        &[("auth.yaml", render("middleware_auth.yaml", &vars))],
        flags,
    )
    .await;
    Setup {
        origin: started.remove(0),
        auth,
        sluice,
        _users_dir: users_dir,
    }
}

fn basic(user: &str, password: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

fn header<'a>(answer: &'a Answer, name: &str) -> Option<&'a str> {
    answer.headers.get(name).and_then(|v| v.to_str().ok())
}

// ---------------------------------------------------------------------------------------------
// basicAuth

#[tokio::test(flavor = "multi_thread")]
async fn basic_auth_challenges_then_accepts_every_hash_type() {
    let s = start(false).await;
    let url = s.sluice.url("/basic/page");

    let denied = get(&url, &[]).await;
    assert_eq!(denied.status, 401);
    assert_eq!(
        header(&denied, "www-authenticate"),
        Some("Basic realm=\"traefik\"")
    );
    assert_eq!(header(&denied, "content-type"), Some("text/plain"));
    assert_eq!(denied.body, "401 Unauthorized\n");
    assert_eq!(
        s.origin_requests(),
        0,
        "a refused request never reaches the origin"
    );

    for (user, password) in [
        ("test", "hello"),
        ("test2", "hello2"),
        ("test3", "hello3"),
        ("classic", "password"),
    ] {
        let answer = get(&url, &[("Authorization", &basic(user, password))]).await;
        assert_eq!(answer.status, 200, "{user}");
        assert_eq!(
            answer.seen("X-Webauth-User"),
            Some(user),
            "headerField names the user"
        );
        assert!(
            answer.seen("Authorization").is_some(),
            "kept without removeHeader"
        );
    }
    assert_eq!(s.origin_requests(), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn basic_auth_refuses_wrong_unknown_and_plain_credentials() {
    let s = start(false).await;
    let url = s.sluice.url("/basic/page");
    for (user, password) in [
        ("test", "hellO"),
        ("test3", "hello"),
        ("nobody", "hello"),
        // A plain-text "hash" never matches, as in Traefik.
        ("plain", "plaintext"),
        ("test", ""),
    ] {
        let answer = get(&url, &[("Authorization", &basic(user, password))]).await;
        assert_eq!(answer.status, 401, "{user}:{password}");
        assert_eq!(
            header(&answer, "www-authenticate"),
            Some("Basic realm=\"traefik\"")
        );
    }
    for raw in ["Bearer abc", "Basic not-base64!", "Basic dGVzdA=="] {
        assert_eq!(
            get(&url, &[("Authorization", raw)]).await.status,
            401,
            "{raw}"
        );
    }
    assert_eq!(s.origin_requests(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn basic_auth_header_field_cannot_be_spoofed() {
    let s = start(false).await;
    let answer = get(
        &s.sluice.url("/basic/page"),
        &[
            ("Authorization", &basic("test", "hello")),
            ("X-WebAuth-User", "admin"),
        ],
    )
    .await;
    assert_eq!(answer.status, 200);
    let values: Vec<&str> = answer
        .body
        .lines()
        .filter_map(|l| l.strip_prefix("X-Webauth-User: "))
        .collect();
    assert_eq!(values, ["test"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn basic_auth_users_file_realm_and_remove_header() {
    let s = start(false).await;
    let url = s.sluice.url("/basic-file/x");
    let denied = get(&url, &[]).await;
    assert_eq!(denied.status, 401);
    assert_eq!(
        header(&denied, "www-authenticate"),
        Some("Basic realm=\"Staff Only\"")
    );

    for (user, password) in [("test16", "topsecret"), ("test", "hello")] {
        let answer = get(&url, &[("Authorization", &basic(user, password))]).await;
        assert_eq!(answer.status, 200, "{user}");
        assert_eq!(
            answer.seen("Authorization"),
            None,
            "removeHeader strips the credentials"
        );
    }
    // Users of the other middleware are not users of this one.
    let other = get(&url, &[("Authorization", &basic("test2", "hello2"))]).await;
    assert_eq!(other.status, 401);
}

// ---------------------------------------------------------------------------------------------
// digestAuth

fn md5_hex(text: &str) -> String {
    Md5::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A parameter of a `Digest ...` challenge.
fn param(challenge: &str, key: &str) -> Option<String> {
    let start = challenge.find(&format!("{key}="))? + key.len() + 1;
    let rest = &challenge[start..];
    let value = match rest.strip_prefix('"') {
        Some(quoted) => &quoted[..quoted.find('"')?],
        None => rest.split(',').next()?.trim(),
    };
    Some(value.to_owned())
}

struct DigestClient {
    nonce: String,
    opaque: String,
}

impl DigestClient {
    async fn challenge(url: &str) -> (Answer, DigestClient) {
        let answer = get(url, &[]).await;
        let challenge = header(&answer, "www-authenticate").unwrap_or("").to_owned();
        let client = DigestClient {
            nonce: param(&challenge, "nonce").unwrap_or_default(),
            opaque: param(&challenge, "opaque").unwrap_or_default(),
        };
        (answer, client)
    }

    fn authorization(&self, user: &str, realm: &str, password: &str, uri: &str, nc: u32) -> String {
        let ha1 = md5_hex(&format!("{user}:{realm}:{password}"));
        let ha2 = md5_hex(&format!("GET:{uri}"));
        let nc = format!("{nc:08x}");
        let cnonce = "0a4f113b";
        let response = md5_hex(&format!("{ha1}:{}:{nc}:{cnonce}:auth:{ha2}", self.nonce));
        format!(
            "Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{}\", uri=\"{uri}\", algorithm=MD5, \
             qop=auth, nc={nc}, cnonce=\"{cnonce}\", response=\"{response}\", opaque=\"{}\"",
            self.nonce, self.opaque
        )
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn digest_auth_challenge_response_and_nonce_counts() {
    let s = start(false).await;
    let uri = "/digest/page?q=1";
    let url = s.sluice.url(uri);

    let (denied, client) = DigestClient::challenge(&url).await;
    assert_eq!(denied.status, 401);
    assert_eq!(denied.body, "401 Unauthorized\n");
    let challenge = header(&denied, "www-authenticate").unwrap();
    assert!(
        challenge.starts_with("Digest realm=\"traefik\", nonce=\""),
        "{challenge}"
    );
    assert!(
        challenge.ends_with("algorithm=\"MD5\", qop=\"auth\""),
        "{challenge}"
    );
    assert!(!client.nonce.is_empty() && !client.opaque.is_empty());

    let ok = get(
        &url,
        &[(
            "Authorization",
            &client.authorization("alice", "traefik", "wonderland", uri, 1),
        )],
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.seen("X-Digest-User"), Some("alice"));
    assert_eq!(ok.seen("Authorization"), None, "removeHeader");

    // The same nonce count again is a replay: a fresh challenge, not stale.
    let replay = get(
        &url,
        &[(
            "Authorization",
            &client.authorization("alice", "traefik", "wonderland", uri, 1),
        )],
    )
    .await;
    assert_eq!(replay.status, 401);
    assert!(!header(&replay, "www-authenticate")
        .unwrap()
        .contains("stale"));

    let next = get(
        &url,
        &[(
            "Authorization",
            &client.authorization("alice", "traefik", "wonderland", uri, 3),
        )],
    )
    .await;
    assert_eq!(next.status, 200);
    // Going backwards is reported stale, so the client can retry with a new nonce.
    let backwards = get(
        &url,
        &[(
            "Authorization",
            &client.authorization("alice", "traefik", "wonderland", uri, 2),
        )],
    )
    .await;
    assert_eq!(backwards.status, 401);
    assert!(header(&backwards, "www-authenticate")
        .unwrap()
        .contains("stale=\"true\""));
    assert_eq!(s.origin_requests(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn digest_auth_refuses_bad_credentials() {
    let s = start(false).await;
    let uri = "/digest/page";
    let url = s.sluice.url(uri);
    let (_, client) = DigestClient::challenge(&url).await;
    let cases = [
        (
            "wrong password",
            client.authorization("alice", "traefik", "wonderlanD", uri, 1),
        ),
        // bob exists, but in another realm than the middleware's.
        (
            "other realm",
            client.authorization("bob", "other", "builder", uri, 1),
        ),
        (
            "unknown nonce",
            DigestClient {
                nonce: "bm9wZQ==".into(),
                opaque: client.opaque.clone(),
            }
            .authorization("alice", "traefik", "wonderland", uri, 1),
        ),
        (
            "wrong opaque",
            DigestClient {
                nonce: client.nonce.clone(),
                opaque: "x".into(),
            }
            .authorization("alice", "traefik", "wonderland", uri, 1),
        ),
        (
            "other uri",
            client.authorization("alice", "traefik", "wonderland", "/elsewhere", 1),
        ),
    ];
    for (what, authorization) in cases {
        let answer = get(&url, &[("Authorization", &authorization)]).await;
        assert_eq!(answer.status, 401, "{what}");
    }
    assert_eq!(s.origin_requests(), 0);
    // A URI that is a path prefix of the request is accepted (Traefik's leniency).
    let prefix = get(
        &url,
        &[(
            "Authorization",
            &client.authorization("alice", "traefik", "wonderland", "/digest/", 1),
        )],
    )
    .await;
    assert_eq!(prefix.status, 200);
}

// ---------------------------------------------------------------------------------------------
// forwardAuth

#[tokio::test(flavor = "multi_thread")]
async fn forward_auth_allows_and_copies_identity_headers() {
    let s = start(true).await;
    let answer = send(
        &common::client(),
        "POST",
        &s.sluice.url("/fwd/resource?q=1"),
        &[
            ("X-Token", "good"),
            ("X-Forwarded-For", "203.0.113.9"),
            ("X-Auth-User", "spoofed"),
            ("X-Auth-Extra-Stale", "from the client"),
            ("Connection", "X-Hop"),
            ("X-Hop", "hop-by-hop"),
        ],
        "payload",
    )
    .await
    .unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    // The origin sees the auth server's word, not the client's.
    assert_eq!(answer.seen("X-Auth-User"), Some("alice"));
    let roles: Vec<&str> = answer
        .body
        .lines()
        .filter_map(|l| l.strip_prefix("X-Auth-Extra-Role: "))
        .collect();
    assert_eq!(roles, ["admin", "auditor"]);
    assert_eq!(
        answer.seen("X-Auth-Extra-Stale"),
        None,
        "regex matches are replaced"
    );
    assert_eq!(
        answer.seen("X-Other"),
        None,
        "unlisted headers stay with the auth server"
    );
    assert_eq!(
        answer.seen("Body-Bytes"),
        Some("7"),
        "the body still reaches the origin"
    );
    // Only the listed auth cookie reaches the client.
    let cookies: Vec<&str> = answer
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    assert_eq!(cookies, ["session=s1; Path=/"]);

    let asked = s.auth.requests();
    assert_eq!(asked.len(), 1);
    let asked = &asked[0];
    assert_eq!(asked.method, "GET", "the auth request is a GET");
    assert_eq!(asked.uri, "/check");
    assert!(asked.body.is_empty(), "no body without forwardBody");
    let h = |name: &str| {
        asked
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    assert_eq!(h("x-forwarded-method"), "POST");
    assert_eq!(h("x-forwarded-uri"), "/fwd/resource?q=1");
    assert_eq!(h("x-forwarded-proto"), "http");
    assert_eq!(h("x-forwarded-host"), s.sluice.addr.to_string());
    assert_eq!(h("x-forwarded-for"), "203.0.113.9, 127.0.0.1");
    assert_eq!(h("x-token"), "good");
    assert_eq!(h("host"), s.auth.url.trim_start_matches("http://"));
    assert!(
        !asked.headers.contains_key("x-hop"),
        "headers named in Connection are not sent"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn forward_auth_refusal_is_relayed() {
    let s = start(true).await;
    let answer = get(&s.sluice.url("/fwd/secret"), &[]).await;
    assert_eq!(answer.status, 401);
    assert_eq!(answer.body, "denied by auth");
    assert_eq!(
        header(&answer, "www-authenticate"),
        Some("Bearer realm=\"auth\"")
    );
    assert_eq!(s.origin_requests(), 0);

    // A relative Location is made absolute against the auth server...
    let redirect = get(&s.sluice.url("/fwd/secret"), &[("X-Token", "redirect")]).await;
    assert_eq!(redirect.status, 302);
    assert_eq!(
        header(&redirect, "location"),
        Some(format!("{}/login?x=1", s.auth.url).as_str())
    );
    assert_eq!(header(&redirect, "x-reason"), Some("login first"));
    assert_eq!(redirect.body, "go login");
    // ...unless preserveLocationHeader is set.
    let preserved = get(
        &s.sluice.url("/fwd-preserve/secret"),
        &[("X-Token", "redirect")],
    )
    .await;
    assert_eq!(preserved.status, 302);
    assert_eq!(header(&preserved, "location"), Some("/login?x=1"));
    assert_eq!(s.origin_requests(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn forward_auth_untrusted_headers_method_and_body() {
    let s = start(true).await;
    let client = common::client();
    // trustForwardHeader: false drops the client's X-Forwarded-* before asking.
    let ok = get(
        &s.sluice.url("/fwd-preserve/a"),
        &[("X-Token", "good"), ("X-Forwarded-Prefix", "/evil")],
    )
    .await;
    assert_eq!(ok.status, 200);
    let asked = s.auth.requests().pop().unwrap();
    assert!(!asked.headers.contains_key("x-forwarded-prefix"));
    assert_eq!(asked.headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(asked.headers["x-forwarded-uri"], "/fwd-preserve/a");

    // Legacy mode (trustForwardHeader unset), preserveRequestMethod and forwardBody.
    let ok = send(
        &client,
        "PUT",
        &s.sluice.url("/fwd-legacy/b"),
        &[("X-Token", "good"), ("X-Forwarded-For", "203.0.113.9")],
        "hello body",
    )
    .await
    .unwrap();
    assert_eq!(ok.status, 200);
    assert_eq!(
        ok.seen("Body-Bytes"),
        Some("10"),
        "the origin still gets the body"
    );
    let asked = s.auth.requests().pop().unwrap();
    assert_eq!(asked.method, "PUT");
    assert_eq!(asked.body.as_ref(), b"hello body");
    assert_eq!(asked.headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(asked.headers["x-forwarded-method"], "PUT");

    // Over maxBodySize (16): 401, and neither the auth server nor the origin is asked.
    let before = s.auth.requests().len();
    let big = send(
        &client,
        "PUT",
        &s.sluice.url("/fwd-legacy/b"),
        &[("X-Token", "good")],
        "seventeen bytes!!",
    )
    .await
    .unwrap();
    assert_eq!(big.status, 401);
    assert_eq!(s.auth.requests().len(), before);
    assert_eq!(s.origin_requests(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn forward_auth_server_down_is_a_500() {
    let s = start(false).await;
    let answer = get(&s.sluice.url("/fwd-down/x"), &[("X-Token", "good")]).await;
    assert_eq!(answer.status, 500);
    assert_eq!(s.origin_requests(), 0);
}

// ---------------------------------------------------------------------------------------------
// ipAllowList / ipWhiteList

#[tokio::test(flavor = "multi_thread")]
async fn ip_allow_list_by_remote_address() {
    let s = start(false).await;
    assert_eq!(get(&s.sluice.url("/allow/x"), &[]).await.status, 200);
    let denied = get(&s.sluice.url("/deny/x"), &[]).await;
    assert_eq!(denied.status, 404, "rejectStatusCode");
    assert_eq!(denied.body, "Not Found");
    assert_eq!(s.origin_requests(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn ip_strategy_depth_and_excluded_ips_read_forwarded_for() {
    let s = start(true).await;
    let depth = |xff: &'static str| {
        let url = s.sluice.url("/depth/x");
        async move {
            let headers: Vec<(&str, &str)> = if xff.is_empty() {
                vec![]
            } else {
                vec![("X-Forwarded-For", xff)]
            };
            get(&url, &headers).await.status
        }
    };
    // depth 2 = second from the right of what the client sent.
    assert_eq!(depth("198.51.100.1, 203.0.113.5, 10.0.0.1").await, 200);
    assert_eq!(depth("203.0.113.5, 10.0.0.1, 10.0.0.2").await, 403);
    assert_eq!(depth("203.0.113.5").await, 403, "too short");
    assert_eq!(depth("").await, 403, "no header");

    let excluded = |xff: &'static str| {
        let url = s.sluice.url("/excluded/x");
        async move { get(&url, &[("X-Forwarded-For", xff)]).await }
    };
    let allowed = excluded("198.51.100.7, 10.1.1.1, 10.2.2.2").await;
    assert_eq!(allowed.status, 200);
    // The origin sees the header as received plus the peer.
    assert_eq!(
        allowed.seen("X-Forwarded-For"),
        Some("198.51.100.7, 10.1.1.1, 10.2.2.2, 127.0.0.1")
    );
    assert_eq!(
        excluded("198.51.100.7, 192.0.2.1, 10.2.2.2").await.status,
        403
    );
    let denied = excluded("10.1.1.1").await;
    assert_eq!(denied.status, 403);
    assert_eq!(denied.body, "Forbidden");
}

#[tokio::test(flavor = "multi_thread")]
async fn untrusted_forwarded_for_is_ignored_by_strategies() {
    let s = start(false).await;
    // The entry point drops an untrusted client's X-Forwarded-For: depth finds nothing.
    let answer = get(
        &s.sluice.url("/depth/x"),
        &[("X-Forwarded-For", "198.51.100.1, 203.0.113.5, 10.0.0.1")],
    )
    .await;
    assert_eq!(answer.status, 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_middleware_disables_its_router_with_a_diagnostic() {
    let s = start(false).await;
    assert_eq!(get(&s.sluice.url("/broken/x"), &[]).await.status, 404);
    s.sluice
        .wait_for_log("sourceRange[1]", Duration::from_secs(5))
        .await;
    assert!(s.sluice.log_text().contains("not-an-ip"));
}

// ---------------------------------------------------------------------------------------------
// inFlightReq

/// Waits until the origin has received `n` requests in total.
async fn wait_for_origin(s: &Setup, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.origin_requests() < n {
        assert!(
            Instant::now() < deadline,
            "origin saw {} of {n} requests",
            s.origin_requests()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn in_flight_limit_per_host() {
    let s = start(false).await;
    let slow_url = s.sluice.url("/inflight/slow?wait=1500ms");
    let slow: Vec<_> = (0..2)
        .map(|_| {
            let url = slow_url.clone();
            tokio::spawn(async move { get(&url, &[]).await.status })
        })
        .collect();
    wait_for_origin(&s, 2).await;

    let over = get(&s.sluice.url("/inflight/fast"), &[]).await;
    assert_eq!(over.status, 429);
    assert_eq!(over.body, "max connections reached: 2");
    // Another Host is another source.
    let other = get(
        &s.sluice.url("/inflight/fast"),
        &[("Host", "other.example")],
    )
    .await;
    assert_eq!(other.status, 200);

    for task in slow {
        assert_eq!(task.await.unwrap(), 200);
    }
    assert_eq!(
        get(&s.sluice.url("/inflight/fast"), &[]).await.status,
        200,
        "slots are given back"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn in_flight_limit_per_header() {
    let s = start(false).await;
    let url = s.sluice.url("/inflight-header/slow?wait=1500ms");
    let slow: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|tenant| {
            let url = url.clone();
            tokio::spawn(async move { get(&url, &[("X-Tenant", tenant)]).await.status })
        })
        .collect();
    wait_for_origin(&s, 2).await;
    let a_again = get(&s.sluice.url("/inflight-header/x"), &[("X-Tenant", "a")]).await;
    assert_eq!(a_again.status, 429);
    assert_eq!(a_again.body, "max connections reached: 1");
    assert_eq!(
        get(&s.sluice.url("/inflight-header/x"), &[("X-Tenant", "c")])
            .await
            .status,
        200
    );
    for task in slow {
        assert_eq!(task.await.unwrap(), 200, "both tenants got their slot");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn in_flight_slot_is_held_until_the_body_is_sent() {
    let s = start(false).await;
    // A large streamed body, left unread: the response headers are out, the body is not.
    let client = common::client();
    let request = http::Request::get(s.sluice.url("/data?size=67108864"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let pending = client.request(request).await.unwrap();
    assert_eq!(pending.status(), 200);

    let over = get(&s.sluice.url("/data?size=10"), &[]).await;
    assert_eq!(over.status, 429, "the first response is still streaming");

    drop(pending);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = get(&s.sluice.url("/data?size=10"), &[]).await;
        if answer.status == 200 {
            assert_eq!(answer.body.len(), 10);
            break;
        }
        assert!(Instant::now() < deadline, "the slot was never given back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn in_flight_slot_is_held_while_a_websocket_is_open() {
    use futures_util::{SinkExt as _, StreamExt as _};
    use tokio_tungstenite::tungstenite::{Error as WsError, Message};

    let s = start(false).await;
    let url = format!("ws://{}/echo", s.sluice.addr);
    let (mut ws, response) = tokio_tungstenite::connect_async(&url)
        .await
        .expect("websocket handshake");
    assert_eq!(response.status(), 101);
    ws.send(Message::text("ping")).await.expect("send");
    let echoed = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("echo in time")
        .expect("a message")
        .expect("a valid message");
    assert_eq!(echoed.into_text().expect("text").as_str(), "ping");

    // The 101 is long gone; the tunnel still holds the only slot.
    let over = get(&s.sluice.url("/data?size=10"), &[]).await;
    assert_eq!(over.status, 429, "the first WebSocket is still open");
    match tokio_tungstenite::connect_async(&url).await {
        Err(WsError::Http(refused)) => assert_eq!(refused.status(), 429),
        Err(other) => panic!("second WebSocket: unexpected error {other}"),
        Ok(_) => panic!("a second WebSocket was let in while the first is open"),
    }

    ws.close(None).await.expect("close");
    while let Some(Ok(_)) = ws.next().await {}
    drop(ws);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = get(&s.sluice.url("/data?size=10"), &[]).await;
        if answer.status == 200 {
            assert_eq!(answer.body.len(), 10);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the tunnel's slot was never given back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (mut again, response) = tokio_tungstenite::connect_async(&url)
        .await
        .expect("a WebSocket after the first one closed");
    assert_eq!(response.status(), 101);
    again.close(None).await.expect("close");
}

// ---------------------------------------------------------------------------------------------
// passTLSClientCert

#[tokio::test(flavor = "multi_thread")]
async fn pass_tls_client_cert_without_certificate_changes_nothing() {
    // From a trusted proxy, the headers pass untouched (Traefik sets them only from a
    // certificate, and there is none on plain HTTP).
    let trusted = start(true).await;
    let answer = get(
        &trusted.sluice.url("/cert/x"),
        &[
            ("X-Forwarded-Tls-Client-Cert", "MIIB"),
            ("X-Forwarded-Tls-Client-Cert-Info", "Subject%3D%22CN%3Da%22"),
        ],
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.seen("X-Forwarded-Tls-Client-Cert"), Some("MIIB"));
    assert_eq!(
        answer.seen("X-Forwarded-Tls-Client-Cert-Info"),
        Some("Subject%3D%22CN%3Da%22")
    );
    drop(trusted);

    // From anyone else they never reach the origin.
    let untrusted = start(false).await;
    let answer = get(
        &untrusted.sluice.url("/cert/x"),
        &[
            ("X-Forwarded-Tls-Client-Cert", "MIIB"),
            ("X-Forwarded-Tls-Client-Cert-Info", "forged"),
        ],
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.seen("X-Forwarded-Tls-Client-Cert"), None);
    assert_eq!(answer.seen("X-Forwarded-Tls-Client-Cert-Info"), None);
}
