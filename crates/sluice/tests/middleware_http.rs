//! HTTP rewriting middlewares end to end: path rewriting (addPrefix, stripPrefix,
//! stripPrefixRegex, replacePath, replacePathRegex), redirects (redirectScheme, redirectRegex),
//! headers (custom, CORS, security, allowedHosts) and contentType. Each test checks what the
//! client gets and, when the request goes through, what the origin received.

mod common;

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use common::{render, send, Answer, Origin, Sluice};
use http::{header, Response};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// An origin answering fixed bodies without a Content-Type, for content sniffing.
struct Raw {
    url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Raw {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type RawBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

fn raw_answer(path: &str) -> Response<RawBody> {
    let fixed = |bytes: &'static [u8]| Full::new(Bytes::from_static(bytes)).boxed();
    match path {
        "/html" => Response::new(fixed(b"  <html><body>hi</body></html>")),
        "/png" => Response::new(fixed(b"\x89PNG\x0D\x0A\x1A\x0A\0\0\0\rIHDR")),
        "/typed" => {
            let mut response = Response::new(fixed(b"<html>typed</html>"));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/x-custom"),
            );
            response
        }
        "/encoded" => {
            let mut response = Response::new(fixed(b"<html>not really gzip</html>"));
            response.headers_mut().insert(
                header::CONTENT_ENCODING,
                header::HeaderValue::from_static("gzip"),
            );
            response
        }
        "/chunks" => {
            // Three chunks with pauses: sniffing must not lose or reorder any of them.
            let stream = futures_util::stream::unfold(0u8, |i| async move {
                if i == 3 {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
                let chunk = if i == 0 {
                    Bytes::from_static(b"%PDF-")
                } else {
                    Bytes::from(vec![b'a' + i; 300])
                };
                Some((Ok::<_, Infallible>(Frame::data(chunk)), i + 1))
            });
            Response::new(StreamBody::new(stream).boxed())
        }
        _ => Response::new(fixed(b"")),
    }
}

async fn raw_origin() -> Raw {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind raw origin");
    let url = format!("http://{}", listener.local_addr().expect("raw address"));
    let task = tokio::spawn(async move {
        let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        while let Ok((stream, _)) = listener.accept().await {
            let builder = builder.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    |req: http::Request<hyper::body::Incoming>| async move {
                        Ok::<_, Infallible>(raw_answer(req.uri().path()))
                    },
                );
                let _ = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Raw { url, task }
}

struct Setup {
    app: Origin,
    _raw: Raw,
    sluice: Sluice,
}

async fn start_with(flags: &[&str]) -> Setup {
    let app = common::origin("app").await;
    let raw = raw_origin().await;
    let config = render(
        "middleware_http.yaml",
        &[("app", app.url()), ("raw", raw.url.clone())],
    );
    let sluice = Sluice::start(&[("middleware_http.yaml", config)], flags).await;
    // Wait for the first configuration to be served.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let probe = call(&sluice, "GET", "add.test", "/", &[]).await;
        if probe.status == 200 || std::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Setup {
        app,
        _raw: raw,
        sluice,
    }
}

async fn start() -> Setup {
    start_with(&[]).await
}

/// Sends `method path` for `host` with extra headers.
async fn call(
    sluice: &Sluice,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Answer {
    let mut all = vec![("Host", host)];
    all.extend_from_slice(headers);
    send(&common::client(), method, &sluice.url(path), &all, "")
        .await
        .expect("request")
}

/// The request line the whoami origin received, e.g. `GET /x HTTP/1.1`.
fn request_line(answer: &Answer) -> &str {
    answer.body.lines().nth(2).unwrap_or("")
}

fn header<'a>(answer: &'a Answer, name: &str) -> Option<&'a str> {
    answer
        .headers
        .get(name)
        .map(|v| v.to_str().expect("ASCII header"))
}

// ---------------------------------------------------------------------------------------------
// Paths

#[tokio::test(flavor = "multi_thread")]
async fn add_prefix_keeps_escapes_and_query() {
    let s = start().await;
    let a = call(&s.sluice, "GET", "add.test", "/x%2Fy/z?q=1%202", &[]).await;
    assert_eq!(a.status, 200);
    assert_eq!(request_line(&a), "GET /api/x%2Fy/z?q=1%202 HTTP/1.1");
    let a = call(&s.sluice, "GET", "add.test", "/", &[]).await;
    assert_eq!(request_line(&a), "GET /api/ HTTP/1.1");
}

#[tokio::test(flavor = "multi_thread")]
async fn strip_prefix_sets_forwarded_prefix_and_handles_edges() {
    let s = start().await;
    let a = call(&s.sluice, "GET", "strip.test", "/foo/a%2Fb?x=y", &[]).await;
    assert_eq!(request_line(&a), "GET /a%2Fb?x=y HTTP/1.1");
    assert_eq!(a.seen("X-Forwarded-Prefix"), Some("/foo"));

    // The second prefix (configured with spaces around it) is trimmed and used.
    let a = call(&s.sluice, "GET", "strip.test", "/bar/baz", &[]).await;
    assert_eq!(request_line(&a), "GET /baz HTTP/1.1");
    assert_eq!(a.seen("X-Forwarded-Prefix"), Some("/bar"));

    // Prefixes are plain string prefixes, not path segments (Traefik's behaviour).
    let a = call(&s.sluice, "GET", "strip.test", "/foobar", &[]).await;
    assert_eq!(request_line(&a), "GET /bar HTTP/1.1");

    // Stripping everything forwards `/`.
    let a = call(&s.sluice, "GET", "strip.test", "/foo", &[]).await;
    assert_eq!(request_line(&a), "GET / HTTP/1.1");

    // No prefix matches: untouched, no header.
    let a = call(&s.sluice, "GET", "strip.test", "/other", &[]).await;
    assert_eq!(request_line(&a), "GET /other HTTP/1.1");
    assert_eq!(a.seen("X-Forwarded-Prefix"), None);

    // A strip that leaves a dot segment behind is refused, as Traefik refuses it.
    let before = s.app.whoami.requests();
    let a = call(&s.sluice, "GET", "strip.test", "/foo./x", &[]).await;
    assert_eq!(a.status, 400);
    assert_eq!(a.body, "Bad Request\n");
    assert_eq!(s.app.whoami.requests(), before);
}

#[tokio::test(flavor = "multi_thread")]
async fn strip_prefix_force_slash_and_chains() {
    let s = start().await;
    let a = call(&s.sluice, "GET", "stripforce.test", "/foo/bar", &[]).await;
    assert_eq!(request_line(&a), "GET /bar HTTP/1.1");
    let a = call(&s.sluice, "GET", "stripforce.test", "/foobar", &[]).await;
    assert_eq!(request_line(&a), "GET /bar HTTP/1.1");

    // stripPrefix then addPrefix, in declaration order.
    let a = call(&s.sluice, "GET", "chain.test", "/foo/x", &[]).await;
    assert_eq!(request_line(&a), "GET /api/x HTTP/1.1");
    assert_eq!(a.seen("X-Forwarded-Prefix"), Some("/foo"));
}

#[tokio::test(flavor = "multi_thread")]
async fn strip_prefix_regex_strips_the_leading_match() {
    let s = start().await;
    let a = call(
        &s.sluice,
        "GET",
        "stripregex.test",
        "/users/42/profile",
        &[],
    )
    .await;
    assert_eq!(request_line(&a), "GET /profile HTTP/1.1");
    assert_eq!(a.seen("X-Forwarded-Prefix"), Some("/users/42"));

    // The first expression matches, but not at the start: the next one is tried.
    let a = call(&s.sluice, "GET", "stripregex.test", "/v2/users/7", &[]).await;
    assert_eq!(request_line(&a), "GET /users/7 HTTP/1.1");
    assert_eq!(a.seen("X-Forwarded-Prefix"), Some("/v2"));

    let a = call(&s.sluice, "GET", "stripregex.test", "/x/users/1", &[]).await;
    assert_eq!(request_line(&a), "GET /x/users/1 HTTP/1.1");
    assert_eq!(a.seen("X-Forwarded-Prefix"), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn replace_path_and_replace_path_regex() {
    let s = start().await;
    let a = call(&s.sluice, "GET", "replace.test", "/any/th%20ing?q=1", &[]).await;
    assert_eq!(request_line(&a), "GET /replaced?q=1 HTTP/1.1");
    assert_eq!(a.seen("X-Replaced-Path"), Some("/any/th%20ing"));

    let a = call(
        &s.sluice,
        "GET",
        "replaceregex.test",
        "/blog/42/hello-world?x",
        &[],
    )
    .await;
    assert_eq!(request_line(&a), "GET /posts/hello-world/42?x HTTP/1.1");
    assert_eq!(a.seen("X-Replaced-Path"), Some("/blog/42/hello-world"));

    let a = call(&s.sluice, "GET", "replaceregex.test", "/blog/x/y", &[]).await;
    assert_eq!(request_line(&a), "GET /blog/x/y HTTP/1.1");
    assert_eq!(a.seen("X-Replaced-Path"), None);

    // A replacement path that is not a valid escape sequence: Traefik's 500 with the reason.
    let before = s.app.whoami.requests();
    let a = call(&s.sluice, "GET", "replacebad.test", "/x", &[]).await;
    assert_eq!(a.status, 500);
    assert_eq!(a.body, "invalid URL escape \"%zz\"\n");
    assert_eq!(s.app.whoami.requests(), before);
}

// ---------------------------------------------------------------------------------------------
// Redirects

#[tokio::test(flavor = "multi_thread")]
async fn redirect_scheme_statuses_follow_the_method() {
    let s = start().await;
    let before = s.app.whoami.requests();
    let a = call(&s.sluice, "GET", "scheme.test", "/p?q=1", &[]).await;
    assert_eq!(a.status, 302);
    assert_eq!(header(&a, "location"), Some("https://scheme.test/p?q=1"));
    assert_eq!(a.body, "Found");
    assert_eq!(header(&a, "content-type"), None);

    // Every method other than GET (HEAD included) gets 307 so the method is kept.
    for method in ["POST", "HEAD", "DELETE"] {
        let a = call(&s.sluice, method, "scheme.test", "/p", &[]).await;
        assert_eq!(a.status, 307, "{method}");
        assert_eq!(header(&a, "location"), Some("https://scheme.test/p"));
    }

    // The client's port is dropped when no port is configured.
    let a = call(&s.sluice, "GET", "scheme.test:8000", "/p", &[]).await;
    assert_eq!(header(&a, "location"), Some("https://scheme.test/p"));

    // Permanent with a port: 301 for GET, 308 otherwise.
    let a = call(&s.sluice, "GET", "schemeport.test", "/x", &[]).await;
    assert_eq!(a.status, 301);
    assert_eq!(
        header(&a, "location"),
        Some("https://schemeport.test:8443/x")
    );
    assert_eq!(a.body, "Moved Permanently");
    let a = call(&s.sluice, "PUT", "schemeport.test", "/x", &[]).await;
    assert_eq!(a.status, 308);
    assert_eq!(
        s.app.whoami.requests(),
        before,
        "redirects never reach the origin"
    );

    // An untrusted client cannot claim HTTPS with X-Forwarded-Proto.
    let a = call(
        &s.sluice,
        "GET",
        "scheme.test",
        "/p",
        &[("X-Forwarded-Proto", "https")],
    )
    .await;
    assert_eq!(a.status, 302);
}

#[tokio::test(flavor = "multi_thread")]
async fn redirect_scheme_trusts_forwarded_proto_from_trusted_clients() {
    let s = start_with(&["--entryPoints.web.forwardedHeaders.insecure=true"]).await;
    let a = call(
        &s.sluice,
        "GET",
        "scheme.test",
        "/p",
        &[("X-Forwarded-Proto", "https")],
    )
    .await;
    assert_eq!(a.status, 200, "already on https: no redirect");
    assert_eq!(a.origin(), "app");
    // wss counts as https; the port differs from the configured one, so it still redirects.
    let a = call(
        &s.sluice,
        "GET",
        "schemeport.test",
        "/p",
        &[("X-Forwarded-Proto", "wss")],
    )
    .await;
    assert_eq!(a.status, 301);
    assert_eq!(
        header(&a, "location"),
        Some("https://schemeport.test:8443/p")
    );
    let a = call(
        &s.sluice,
        "GET",
        "schemeport.test:8443",
        "/p",
        &[("X-Forwarded-Proto", "https")],
    )
    .await;
    assert_eq!(a.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn redirect_regex_uses_captures_on_the_full_url() {
    let s = start().await;
    let a = call(&s.sluice, "GET", "regex.test", "/old/a/b?c=d", &[]).await;
    assert_eq!(a.status, 301);
    assert_eq!(header(&a, "location"), Some("https://new.test/new/a/b?c=d"));
    let a = call(&s.sluice, "POST", "regex.test", "/old/x", &[]).await;
    assert_eq!(a.status, 308);
    assert_eq!(header(&a, "location"), Some("https://new.test/new/x"));
    // No match: the request goes through.
    let a = call(&s.sluice, "GET", "regex.test", "/current", &[]).await;
    assert_eq!(a.status, 200);
    assert_eq!(request_line(&a), "GET /current HTTP/1.1");
}

// ---------------------------------------------------------------------------------------------
// Headers

#[tokio::test(flavor = "multi_thread")]
async fn custom_headers_set_and_remove() {
    let s = start().await;
    let a = call(
        &s.sluice,
        "GET",
        "custom.test",
        "/",
        &[("X-Remove-Me", "secret"), ("X-Script-Name", "client")],
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.seen("X-Script-Name"), Some("test"));
    assert_eq!(a.seen("X-Remove-Me"), None);
    assert_eq!(a.seen("Host"), Some("rewritten.test"));
    assert_eq!(header(&a, "x-custom-response"), Some("yes"));
    assert_eq!(
        header(&a, "content-type"),
        None,
        "an empty value removes the header"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cors_preflight_is_answered_by_the_proxy() {
    let s = start().await;
    let before = s.app.whoami.requests();
    let a = call(
        &s.sluice,
        "OPTIONS",
        "cors.test",
        "/resource",
        &[
            ("Origin", "https://a.test"),
            ("Access-Control-Request-Method", "PUT"),
            ("Access-Control-Request-Headers", "X-Custom"),
        ],
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body, "");
    assert_eq!(header(&a, "content-length"), Some("0"));
    assert_eq!(
        header(&a, "access-control-allow-origin"),
        Some("https://a.test")
    );
    assert_eq!(
        header(&a, "access-control-allow-methods"),
        Some("GET,OPTIONS,PUT")
    );
    assert_eq!(
        header(&a, "access-control-allow-headers"),
        Some("X-Custom,Content-Type")
    );
    assert_eq!(header(&a, "access-control-max-age"), Some("100"));
    assert_eq!(
        header(&a, "access-control-expose-headers"),
        Some("X-Exposed")
    );
    assert_eq!(header(&a, "access-control-allow-credentials"), None);
    assert_eq!(
        s.app.whoami.requests(),
        before,
        "the origin never sees a preflight"
    );

    // A preflight from a disallowed origin is still answered, without Allow-Origin.
    let a = call(
        &s.sluice,
        "OPTIONS",
        "cors.test",
        "/",
        &[
            ("Origin", "https://evil.test"),
            ("Access-Control-Request-Method", "GET"),
        ],
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(header(&a, "access-control-allow-origin"), None);

    // OPTIONS without Access-Control-Request-Method is an ordinary request.
    let a = call(
        &s.sluice,
        "OPTIONS",
        "cors.test",
        "/",
        &[("Origin", "https://a.test")],
    )
    .await;
    assert_eq!(a.origin(), "app");
    assert_eq!(s.app.whoami.requests(), before + 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn cors_simple_requests_and_disallowed_origins() {
    let s = start().await;
    let a = call(
        &s.sluice,
        "GET",
        "cors.test",
        "/",
        &[("Origin", "https://xyz.b.test")],
    )
    .await;
    assert_eq!(a.origin(), "app");
    assert_eq!(a.seen("Origin"), Some("https://xyz.b.test"));
    assert_eq!(
        header(&a, "access-control-allow-origin"),
        Some("https://xyz.b.test")
    );
    assert_eq!(
        header(&a, "access-control-expose-headers"),
        Some("X-Exposed")
    );
    assert_eq!(header(&a, "vary"), Some("Origin"));
    assert_eq!(header(&a, "access-control-allow-methods"), None);

    let a = call(
        &s.sluice,
        "GET",
        "cors.test",
        "/",
        &[("Origin", "https://evil.test")],
    )
    .await;
    assert_eq!(a.origin(), "app");
    assert_eq!(header(&a, "access-control-allow-origin"), None);
    assert_eq!(header(&a, "vary"), Some("Origin"));
}

#[tokio::test(flavor = "multi_thread")]
async fn cors_wildcards_with_credentials_echo_the_request() {
    let s = start().await;
    let a = call(
        &s.sluice,
        "OPTIONS",
        "corscred.test",
        "/",
        &[
            ("Origin", "https://any.test"),
            ("Access-Control-Request-Method", "PATCH"),
            ("Access-Control-Request-Headers", "X-A, X-B"),
        ],
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(
        header(&a, "access-control-allow-origin"),
        Some("https://any.test")
    );
    assert_eq!(header(&a, "access-control-allow-methods"), Some("PATCH"));
    assert_eq!(header(&a, "access-control-allow-headers"), Some("X-A, X-B"));
    assert_eq!(header(&a, "access-control-allow-credentials"), Some("true"));
    // `*` cannot be exposed together with credentials: Traefik leaves the header out.
    assert_eq!(header(&a, "access-control-expose-headers"), None);

    let a = call(
        &s.sluice,
        "GET",
        "corscred.test",
        "/",
        &[("Origin", "https://any.test")],
    )
    .await;
    assert_eq!(
        header(&a, "access-control-allow-origin"),
        Some("https://any.test")
    );
    assert_eq!(header(&a, "access-control-allow-credentials"), Some("true"));
    assert_eq!(header(&a, "vary"), None, "addVaryHeader is off");
}

#[tokio::test(flavor = "multi_thread")]
async fn security_headers_have_traefiks_values() {
    let s = start().await;
    let a = call(&s.sluice, "GET", "secure.test", "/", &[]).await;
    assert_eq!(a.status, 200);
    assert_eq!(
        header(&a, "strict-transport-security"),
        Some("max-age=31536000; includeSubDomains; preload")
    );
    assert_eq!(header(&a, "x-frame-options"), Some("DENY"));
    assert_eq!(header(&a, "x-content-type-options"), Some("nosniff"));
    // The custom response header wins over browserXssFilter's value.
    assert_eq!(header(&a, "x-xss-protection"), Some("0"));
    assert_eq!(
        header(&a, "content-security-policy"),
        Some("default-src 'self'")
    );
    let report_only = header(&a, "content-security-policy-report-only").unwrap_or("");
    assert!(
        report_only.starts_with("script-src 'nonce-")
            && report_only.len() > "script-src 'nonce-'".len(),
        "{report_only}"
    );
    assert_eq!(header(&a, "referrer-policy"), Some("same-origin"));
    assert_eq!(header(&a, "permissions-policy"), Some("camera=()"));
    // Public-Key-Pins only over HTTPS.
    assert_eq!(header(&a, "public-key-pins"), None);
    assert_eq!(header(&a, "feature-policy"), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn ssl_proxy_headers_see_custom_request_headers() {
    let s = start().await;
    // customRequestHeaders runs before the security layer, so the request counts as HTTPS.
    let a = call(&s.sluice, "GET", "ssl.test", "/", &[]).await;
    assert_eq!(a.seen("X-Forwarded-Proto"), Some("https"));
    assert_eq!(header(&a, "strict-transport-security"), Some("max-age=60"));
    assert_eq!(
        header(&a, "public-key-pins"),
        Some("pin-sha256=\"base64==\"")
    );
    assert_eq!(header(&a, "x-frame-options"), Some("SAMEORIGIN"));
    assert_eq!(header(&a, "x-xss-protection"), Some("1"));
}

#[tokio::test(flavor = "multi_thread")]
async fn allowed_hosts_refuse_other_hosts() {
    let s = start().await;
    let a = call(&s.sluice, "GET", "allowed.test", "/", &[]).await;
    assert_eq!(a.status, 200);
    assert_eq!(header(&a, "x-seen-by"), Some("headers"));

    let before = s.app.whoami.requests();
    let a = call(&s.sluice, "GET", "other.test", "/", &[]).await;
    assert_eq!(a.status, 500);
    assert_eq!(a.body, "Bad Host\n");
    // The outer layer still decorates the refusal.
    assert_eq!(header(&a, "x-seen-by"), Some("headers"));
    assert_eq!(s.app.whoami.requests(), before);

    // hostsProxyHeaders: the first non-empty one names the host.
    let a = call(
        &s.sluice,
        "GET",
        "other.test",
        "/",
        &[("X-Original-Host", "ALLOWED.test")],
    )
    .await;
    assert_eq!(a.status, 200);
    let a = call(
        &s.sluice,
        "GET",
        "allowed.test",
        "/",
        &[("X-Original-Host", "evil.test")],
    )
    .await;
    assert_eq!(a.status, 500);

    // isDevelopment turns off the host check and STS; v2-era fields are accepted and inert.
    let a = call(&s.sluice, "GET", "dev.test", "/", &[]).await;
    assert_eq!(a.status, 200);
    assert_eq!(header(&a, "strict-transport-security"), None);
    assert_eq!(header(&a, "feature-policy"), None);
    assert_eq!(header(&a, "location"), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_headers_options_disable_the_router() {
    let s = start().await;
    let a = call(&s.sluice, "GET", "typo.test", "/", &[]).await;
    assert_eq!(a.status, 404);
    s.sluice
        .wait_for_log("frameDenny", Duration::from_secs(5))
        .await;
}

// ---------------------------------------------------------------------------------------------
// contentType

#[tokio::test(flavor = "multi_thread")]
async fn content_type_is_sniffed_only_when_enabled() {
    let s = start().await;
    let a = call(&s.sluice, "GET", "sniff.test", "/html", &[]).await;
    assert_eq!(header(&a, "content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(a.body, "  <html><body>hi</body></html>");
    let a = call(&s.sluice, "GET", "sniff.test", "/png", &[]).await;
    assert_eq!(header(&a, "content-type"), Some("image/png"));
    let a = call(&s.sluice, "GET", "sniff.test", "/typed", &[]).await;
    assert_eq!(header(&a, "content-type"), Some("application/x-custom"));
    let a = call(&s.sluice, "GET", "sniff.test", "/encoded", &[]).await;
    assert_eq!(
        header(&a, "content-type"),
        None,
        "encoded bodies are not sniffed"
    );
    let a = call(&s.sluice, "GET", "sniff.test", "/empty", &[]).await;
    assert_eq!(header(&a, "content-type"), None, "nothing to sniff");

    let a = call(&s.sluice, "GET", "sniff.test", "/chunks", &[]).await;
    assert_eq!(header(&a, "content-type"), Some("application/pdf"));
    let expected = format!("%PDF-{}{}", "b".repeat(300), "c".repeat(300));
    assert_eq!(a.body, expected);

    // Without the middleware, or with autoDetect: false, Sluice adds nothing (Traefik v3).
    let a = call(&s.sluice, "GET", "nosniff.test", "/html", &[]).await;
    assert_eq!(header(&a, "content-type"), None);
    let a = call(&s.sluice, "GET", "sniffoff.test", "/html", &[]).await;
    assert_eq!(header(&a, "content-type"), None);
    assert_eq!(a.body, "  <html><body>hi</body></html>");
}
