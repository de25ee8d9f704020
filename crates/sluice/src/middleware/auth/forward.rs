//! `forwardAuth`: ask an HTTP authentication server about every request.
//!
//! The auth request is a GET (or the client's method with `preserveRequestMethod`) to `address`
//! carrying the client's headers and X-Forwarded-Method/-Proto/-Host/-Uri/-For describing the
//! original request. A 2xx answer lets the request through, with `authResponseHeaders` (and
//! headers matching `authResponseHeadersRegex`) copied from the auth answer into it; any other
//! answer is relayed to the client as is (status, headers, body), its Location made absolute
//! against `address` unless `preserveLocationHeader` is set.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::uri::{PathAndQuery, Scheme};
use http::{
    header, HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri,
};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use regex::Regex;
use serde::Deserialize;
use serde_json::Value;

use super::{canonical_name, parse_at};
use crate::dataplane::body::{empty, full, ProxyBody};
use crate::dataplane::request::Connection;
use crate::dataplane::upstream::Outgoing;
use crate::middleware::ip_allow_list::received_forwarded_for;
use crate::middleware::{Answer, Middleware, MiddlewareError, Next};
use crate::runtime::transport::tls::{host_server_name, LoadedPem, TlsConfigs};
use crate::runtime::transport::{ClientCertificate, ServersTransport};

/// How long one exchange with the auth server may take, answer body included (Traefik's).
const AUTH_TIMEOUT: Duration = Duration::from_secs(30);

/// The most Sluice buffers of a body when the configured limit is -1 (unlimited in Traefik):
/// larger bodies are treated as over the limit rather than held in memory.
pub const UNLIMITED_CEILING: usize = 16 << 20;

/// Hop-by-hop headers never sent to the auth server nor relayed from it.
const HOP_HEADERS: &[&str] = &[
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "trailers",
    "transfer-encoding",
    "upgrade",
];

/// The X-Forwarded headers Traefik manages (and removes when they are not trusted).
const FORWARDED_HEADERS: &[&str] = &[
    "x-forwarded-proto",
    "x-forwarded-scheme",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-server",
    "x-forwarded-uri",
    "x-forwarded-method",
    "x-forwarded-prefix",
    "x-forwarded-tls-client-cert",
    "x-forwarded-tls-client-cert-info",
    "x-scheme",
    "x-real-ip",
];

/// Traefik's `forwardAuth` options.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Options {
    address: Option<String>,
    tls: Option<Value>,
    trust_forward_header: Option<bool>,
    #[serde(default)]
    auth_response_headers: Vec<String>,
    auth_response_headers_regex: Option<String>,
    #[serde(default)]
    auth_request_headers: Vec<String>,
    max_response_body_size: Option<i64>,
    #[serde(default)]
    add_auth_cookies_to_response: Vec<String>,
    /// Only names the user in Traefik's access log; accepted for compatibility.
    #[allow(dead_code)]
    header_field: Option<String>,
    #[serde(default)]
    forward_body: bool,
    max_body_size: Option<i64>,
    #[serde(default)]
    preserve_location_header: bool,
    #[serde(default)]
    preserve_request_method: bool,
    #[serde(rename = "authSigninURL")]
    auth_signin_url: Option<String>,
}

/// `forwardAuth.tls`, for `https://` auth servers: a CA (file or inline PEM) to trust instead of
/// the default roots, a client certificate and key, or no verification at all.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct TlsOptions {
    ca: Option<String>,
    cert: Option<String>,
    key: Option<String>,
    #[serde(default)]
    insecure_skip_verify: bool,
    /// Server-side notion in Traefik's shared TLS type; meaningless for a client: accepted.
    #[allow(dead_code)]
    ca_optional: Option<bool>,
}

/// How to reach an `https://` auth server.
#[derive(Debug)]
struct AuthTls {
    config: Arc<rustls::ClientConfig>,
    server_name: rustls_pki_types::ServerName<'static>,
}

impl AuthTls {
    /// Builds the client configuration with the same code as servers transports.
    fn new(options: Option<&TlsOptions>, host: &str) -> Result<Self, MiddlewareError> {
        let mut spec = ServersTransport::default();
        if let Some(options) = options {
            spec.insecure_skip_verify = options.insecure_skip_verify;
            spec.root_cas = options.ca.iter().cloned().collect();
            match (&options.cert, &options.key) {
                (Some(cert), Some(key)) => spec.certificates.push(ClientCertificate {
                    cert_file: cert.clone(),
                    key_file: key.clone(),
                }),
                (None, None) => {}
                _ => return Err(MiddlewareError::new("tls", "cert and key go together")),
            }
        }
        let pem = LoadedPem::load(&spec).map_err(|e| MiddlewareError::new("tls", e))?;
        let configs = TlsConfigs::build(&spec, &pem).map_err(|e| MiddlewareError::new("tls", e))?;
        let server_name = host_server_name(host).map_err(|e| MiddlewareError::new("address", e))?;
        Ok(Self {
            config: configs.http1,
            server_name,
        })
    }

    /// One exchange over a fresh TLS connection (auth servers over https are not pooled).
    async fn send(
        &self,
        address: &Uri,
        mut request: Request<Full<Bytes>>,
    ) -> Result<Response<hyper::body::Incoming>, String> {
        let authority = address.authority().ok_or("the address has no host")?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let port = authority.port_u16().unwrap_or(443);
        let stream = tokio::net::TcpStream::connect((host, port))
            .await
            .map_err(|e| e.to_string())?;
        let _ = stream.set_nodelay(true);
        let stream = tokio_rustls::TlsConnector::from(self.config.clone())
            .connect(self.server_name.clone(), stream)
            .await
            .map_err(|e| format!("TLS handshake: {e}"))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        // Origin-form request line, with the authority in Host.
        let path = address
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        *request.uri_mut() = Uri::from(path);
        if let Ok(value) = HeaderValue::from_str(authority.as_str()) {
            request
                .headers_mut()
                .entry(http::header::HOST)
                .or_insert(value);
        }
        sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())
    }
}

/// A compiled `forwardAuth` middleware.
#[derive(Debug)]
pub struct ForwardAuth {
    address: Uri,
    trust_forward_header: Option<bool>,
    /// Request headers sent to the auth server (lower-case); empty: all.
    auth_request_headers: Vec<HeaderName>,
    auth_response_headers: Vec<HeaderName>,
    auth_response_headers_regex: Option<Regex>,
    auth_cookies: Vec<String>,
    forward_body: bool,
    max_body_size: usize,
    max_response_body_size: usize,
    preserve_location_header: bool,
    preserve_request_method: bool,
    signin_url: Option<HeaderValue>,
    /// Set for `https://` addresses.
    tls: Option<AuthTls>,
}

/// Compiles `forwardAuth`.
pub fn compile(spec: &Value) -> Result<Arc<dyn Middleware>, MiddlewareError> {
    let options: Options = parse_at(spec, "")?;
    let tls_options: Option<TlsOptions> = match &options.tls {
        Some(tls) => Some(parse_at(tls, "tls")?),
        None => None,
    };
    let address = options
        .address
        .as_deref()
        .filter(|a| !a.is_empty())
        .ok_or_else(|| {
            MiddlewareError::new("address", "the authentication server's URL is required")
        })?;
    let address: Uri = address
        .parse()
        .map_err(|e| MiddlewareError::new("address", format!("`{address}` is not a URL: {e}")))?;
    let tls = match address.scheme_str() {
        Some("http") if address.authority().is_some() => None,
        Some("https") if address.authority().is_some() => Some(AuthTls::new(
            tls_options.as_ref(),
            address.host().unwrap_or_default(),
        )?),
        _ => {
            return Err(MiddlewareError::new(
                "address",
                "must be an absolute http:// or https:// URL",
            ))
        }
    };
    let names = |list: &[String], field: &str| -> Result<Vec<HeaderName>, MiddlewareError> {
        list.iter()
            .enumerate()
            .map(|(i, name)| {
                HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                    MiddlewareError::new(
                        format!("{field}[{i}]"),
                        format!("`{name}` is not a valid header name"),
                    )
                })
            })
            .collect()
    };
    let mut auth_request_headers = names(&options.auth_request_headers, "authRequestHeaders")?;
    // Trusting forwarded headers while filtering: the forwarded headers pass the filter too.
    if options.trust_forward_header == Some(true) && !auth_request_headers.is_empty() {
        auth_request_headers.extend(FORWARDED_HEADERS.iter().map(|h| HeaderName::from_static(h)));
    }
    let auth_response_headers_regex = match options.auth_response_headers_regex.as_deref() {
        None | Some("") => None,
        Some(pattern) => Some(Regex::new(pattern).map_err(|e| {
            MiddlewareError::new(
                "authResponseHeadersRegex",
                format!("invalid regular expression: {e}"),
            )
        })?),
    };
    let limit = |value: Option<i64>, field: &str| -> Result<usize, MiddlewareError> {
        match value {
            None => Ok(UNLIMITED_CEILING),
            Some(v) if v < 0 => Ok(UNLIMITED_CEILING),
            Some(v) => usize::try_from(v).map_err(|_| MiddlewareError::new(field, "too large")),
        }
    };
    if options.forward_body && options.max_body_size.is_none_or(|v| v < 0) {
        tracing::warn!(
            "forwardAuth: forwardBody without maxBodySize; bodies over {} MiB are refused",
            UNLIMITED_CEILING >> 20
        );
    }
    let signin_url = match options.auth_signin_url.as_deref() {
        None | Some("") => None,
        Some(url) => Some(HeaderValue::from_str(url).map_err(|_| {
            MiddlewareError::new("authSigninURL", "cannot be sent in a Location header")
        })?),
    };
    Ok(Arc::new(ForwardAuth {
        address,
        trust_forward_header: options.trust_forward_header,
        auth_request_headers,
        auth_response_headers: names(&options.auth_response_headers, "authResponseHeaders")?,
        auth_response_headers_regex,
        auth_cookies: options.add_auth_cookies_to_response,
        forward_body: options.forward_body,
        max_body_size: limit(options.max_body_size, "maxBodySize")?,
        max_response_body_size: limit(options.max_response_body_size, "maxResponseBodySize")?,
        preserve_location_header: options.preserve_location_header,
        preserve_request_method: options.preserve_request_method,
        signin_url,
        tls,
    }))
}

/// One pooled client for every forwardAuth middleware: auth servers are few and get a request
/// per client request, so keeping their connections alive matters.
fn client() -> &'static Client<HttpConnector, Full<Bytes>> {
    static CLIENT: OnceLock<Client<HttpConnector, Full<Bytes>>> = OnceLock::new();
    CLIENT.get_or_init(|| {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(AUTH_TIMEOUT));
        Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(connector)
    })
}

/// A response with only a status (Go's `WriteHeader` with no body).
fn status_only(status: StatusCode) -> Response<ProxyBody> {
    let mut response = Response::new(empty());
    *response.status_mut() = status;
    response
}

/// What the auth server said.
struct AuthAnswer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl ForwardAuth {
    /// The headers of the auth request.
    fn auth_headers(&self, connection: &Connection, outgoing: &Outgoing) -> HeaderMap {
        let original = outgoing.request.headers();
        let mut headers = original.clone();
        // Headers the client declared hop-by-hop in Connection, then the standard ones.
        let listed: Vec<String> = original
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|t| t.trim().to_ascii_lowercase())
            .filter(|t| !t.is_empty())
            .collect();
        for name in listed
            .iter()
            .map(String::as_str)
            .chain(HOP_HEADERS.iter().copied())
        {
            headers.remove(name);
        }
        // The auth request has its own host and body.
        headers.remove(header::HOST);
        headers.remove(header::CONTENT_LENGTH);

        if self.trust_forward_header == Some(false) {
            remove_forwarded(&mut headers);
        }
        if !self.auth_request_headers.is_empty() {
            let mut kept = HeaderMap::new();
            for name in &self.auth_request_headers {
                for value in headers.get_all(name) {
                    kept.append(name.clone(), value.clone());
                }
            }
            headers = kept;
        }

        let peer = connection.peer_ip.clone();
        let proto = if connection.tls { "https" } else { "http" };
        let uri = HeaderValue::from_str(outgoing.path_and_query.as_str())
            .unwrap_or(HeaderValue::from_static("/"));
        let method = HeaderValue::from_str(outgoing.request.method().as_str())
            .unwrap_or(HeaderValue::from_static("GET"));
        match self.trust_forward_header {
            Some(_) => {
                if headers.contains_key("x-forwarded-for") {
                    // What the client sent (as Traefik's middlewares see it), then the peer.
                    let mut received = received_forwarded_for(original);
                    let peer_text = peer.to_str().unwrap_or("");
                    received.push(peer_text);
                    let joined = received.join(", ");
                    headers.insert(
                        "x-forwarded-for",
                        HeaderValue::from_str(&joined).unwrap_or(peer),
                    );
                } else {
                    headers.insert("x-forwarded-for", peer);
                }
                headers.entry("x-forwarded-method").or_insert(method);
                headers
                    .entry("x-forwarded-proto")
                    .or_insert(HeaderValue::from_static(proto));
                if !headers.contains_key("x-forwarded-port") {
                    let port = host_port(&outgoing.host).unwrap_or_else(|| {
                        let secure = connection.tls
                            || headers
                                .get("x-forwarded-proto")
                                .is_some_and(|p| p == "https" || p == "wss");
                        if secure { "443" } else { "80" }.to_owned()
                    });
                    if let Ok(port) = HeaderValue::from_str(&port) {
                        headers.insert("x-forwarded-port", port);
                    }
                }
                headers
                    .entry("x-forwarded-host")
                    .or_insert(outgoing.host.clone());
                headers.entry("x-forwarded-uri").or_insert(uri);
            }
            None => {
                // Traefik's historical behaviour when trustForwardHeader is not set.
                headers.insert("x-forwarded-for", peer);
                headers.insert("x-forwarded-proto", HeaderValue::from_static(proto));
                headers.insert("x-forwarded-method", method);
                headers.insert("x-forwarded-host", outgoing.host.clone());
                headers.insert("x-forwarded-uri", uri);
            }
        }
        headers
    }

    /// Sends the auth request and reads the answer (within the configured size).
    async fn ask(
        &self,
        headers: HeaderMap,
        method: Method,
        body: Bytes,
    ) -> Result<AuthAnswer, Response<ProxyBody>> {
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = method;
        *request.uri_mut() = self.address.clone();
        *request.headers_mut() = headers;
        let exchange = async {
            let sent = match &self.tls {
                Some(tls) => tls.send(&self.address, request).await,
                None => client().request(request).await.map_err(|e| e.to_string()),
            };
            let response = sent.map_err(|e| {
                tracing::warn!(address = %self.address, error = %e, "forwardAuth: auth server unreachable");
                status_only(StatusCode::INTERNAL_SERVER_ERROR)
            })?;
            let (parts, body) = response.into_parts();
            let body = read_limited(body, self.max_response_body_size)
                .await
                .map_err(|e| match e {
                    ReadError::TooLarge => {
                        tracing::debug!("forwardAuth: auth response body over maxResponseBodySize");
                        status_only(StatusCode::UNAUTHORIZED)
                    }
                    ReadError::Failed(e) => {
                        tracing::warn!(error = %e, "forwardAuth: reading the auth response failed");
                        status_only(StatusCode::INTERNAL_SERVER_ERROR)
                    }
                })?;
            Ok(AuthAnswer {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        match tokio::time::timeout(AUTH_TIMEOUT, exchange).await {
            Ok(result) => result,
            Err(_) => {
                tracing::warn!(address = %self.address, "forwardAuth: auth server timed out");
                Err(status_only(StatusCode::INTERNAL_SERVER_ERROR))
            }
        }
    }

    /// The client's answer when the auth server refuses.
    fn refusal(&self, answer: AuthAnswer, method: &Method) -> Response<ProxyBody> {
        if answer.status == StatusCode::UNAUTHORIZED {
            if let Some(url) = &self.signin_url {
                return redirect(url, method);
            }
        }
        let mut headers = answer.headers;
        for name in HOP_HEADERS {
            headers.remove(*name);
        }
        // The body is re-framed here; its length is recomputed.
        headers.remove(header::CONTENT_LENGTH);
        if let Some(location) = headers.get(header::LOCATION).cloned() {
            if !self.preserve_location_header {
                match location
                    .to_str()
                    .ok()
                    .and_then(|l| resolve(&self.address, l))
                {
                    Some(absolute) => {
                        if let Ok(value) = HeaderValue::from_str(&absolute) {
                            headers.insert(header::LOCATION, value);
                        }
                    }
                    None => return status_only(StatusCode::INTERNAL_SERVER_ERROR),
                }
            }
        }
        let mut response = Response::new(full(answer.body));
        *response.status_mut() = answer.status;
        *response.headers_mut() = headers;
        response
    }

    /// Copies the configured headers of a 2xx auth answer into the request.
    fn copy_response_headers(&self, answer: &HeaderMap, request: &mut HeaderMap) {
        for name in &self.auth_response_headers {
            request.remove(name);
            for value in answer.get_all(name) {
                request.append(name.clone(), value.clone());
            }
        }
        if let Some(regex) = &self.auth_response_headers_regex {
            let matching: Vec<HeaderName> = request
                .keys()
                .filter(|name| regex.is_match(&canonical_name(name.as_str())))
                .cloned()
                .collect();
            for name in matching {
                request.remove(name);
            }
            for (name, value) in answer {
                if regex.is_match(&canonical_name(name.as_str())) {
                    request.append(name.clone(), value.clone());
                }
            }
        }
    }
}

/// Why a body could not be read whole.
enum ReadError {
    TooLarge,
    Failed(String),
}

/// Reads a whole body of at most `limit` bytes.
async fn read_limited<B>(body: B, limit: usize) -> Result<Bytes, ReadError>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let mut body = body;
    let mut chunks = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ReadError::Failed(e.to_string()))?;
        if let Ok(data) = frame.into_data() {
            if chunks.len() + data.len() > limit {
                return Err(ReadError::TooLarge);
            }
            chunks.extend_from_slice(&data);
        }
    }
    Ok(chunks.freeze())
}

/// Removes the managed X-Forwarded headers, `_` spellings included.
fn remove_forwarded(headers: &mut HeaderMap) {
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| FORWARDED_HEADERS.contains(&name.as_str().replace('_', "-").as_str()))
        .cloned()
        .collect();
    for name in doomed {
        headers.remove(name);
    }
}

/// The port of a Host value, if it has one.
fn host_port(host: &HeaderValue) -> Option<String> {
    let host = host.to_str().ok()?;
    let (_, port) = host.rsplit_once(':')?;
    (!port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) && !host.ends_with(']'))
        .then(|| port.to_owned())
}

/// A 302 to `url`, as Go's `http.Redirect` writes it.
fn redirect(url: &HeaderValue, method: &Method) -> Response<ProxyBody> {
    let body = if method == Method::GET || method == Method::HEAD {
        let text = url.to_str().unwrap_or("");
        let escaped = text
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&#34;")
            .replace('\'', "&#39;");
        format!("<a href=\"{escaped}\">Found</a>.\n\n")
    } else {
        String::new()
    };
    let mut response = Response::new(if method == Method::HEAD {
        empty()
    } else {
        full(body)
    });
    *response.status_mut() = StatusCode::FOUND;
    response.headers_mut().insert(header::LOCATION, url.clone());
    if method == Method::GET || method == Method::HEAD {
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
    }
    response
}

/// Resolves a Location reference against the auth server's URL (RFC 3986 §5.2, as Go's
/// `URL.ResolveReference`). `None` when the reference is not a URL.
fn resolve(base: &Uri, reference: &str) -> Option<String> {
    if reference.chars().any(|c| c.is_ascii_control() || c == ' ') {
        return None;
    }
    let scheme = base.scheme().unwrap_or(&Scheme::HTTP);
    let authority = base.authority().map(|a| a.as_str()).unwrap_or("");
    // Absolute: has a scheme before any `/`, `?` or `#`.
    if let Some(colon) = reference.find(':') {
        let head = &reference[..colon];
        if !head.is_empty()
            && head.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && head
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        {
            return Some(reference.to_owned());
        }
    }
    if let Some(rest) = reference.strip_prefix("//") {
        return Some(format!("{scheme}://{rest}"));
    }
    let (without_fragment, fragment) = match reference.split_once('#') {
        Some((r, f)) => (r, Some(f)),
        None => (reference, None),
    };
    let (path, query) = match without_fragment.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (without_fragment, None),
    };
    let base_pq = base
        .path_and_query()
        .map(PathAndQuery::as_str)
        .unwrap_or("/");
    let (base_path, base_query) = match base_pq.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (base_pq, None),
    };
    let (path, query) = if path.is_empty() {
        (base_path.to_owned(), query.or(base_query))
    } else if path.starts_with('/') {
        (remove_dot_segments(path), query)
    } else {
        let dir = &base_path[..base_path.rfind('/').map(|i| i + 1).unwrap_or(0)];
        (remove_dot_segments(&format!("{dir}{path}")), query)
    };
    let mut out = format!("{scheme}://{authority}{path}");
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    Some(out)
}

/// Removes `.` and `..` segments from an absolute path.
fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    let mut trailing_slash = false;
    for (i, segment) in segments.iter().enumerate() {
        match *segment {
            "." => trailing_slash = i == last,
            ".." => {
                out.pop();
                trailing_slash = i == last;
            }
            s => {
                out.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut result = format!("/{}", out.join("/"));
    if trailing_slash && !result.ends_with('/') {
        result.push('/');
    }
    result
}

/// The name of a Set-Cookie value (`name=value; attributes`).
fn cookie_name(value: &HeaderValue) -> Option<&str> {
    let text = value.to_str().ok()?;
    let (name, _) = text.split_once('=')?;
    let name = name.trim();
    (!name.is_empty()).then_some(name)
}

impl Middleware for ForwardAuth {
    fn handle<'a>(
        &'a self,
        connection: &'a Connection,
        mut outgoing: Outgoing,
        next: Next<'a>,
    ) -> Answer<'a> {
        Box::pin(async move {
            let method = outgoing.request.method().clone();
            let auth_method = if self.preserve_request_method {
                method.clone()
            } else {
                Method::GET
            };

            // A CONNECT body of unknown length is tunnel data, never sent to the auth server.
            let tunnel = method == Method::CONNECT
                && !outgoing
                    .request
                    .headers()
                    .contains_key(header::CONTENT_LENGTH);
            let mut auth_body = Bytes::new();
            if self.forward_body && !tunnel {
                let body = std::mem::replace(outgoing.request.body_mut(), empty());
                match read_limited(body, self.max_body_size).await {
                    Ok(bytes) => {
                        auth_body = bytes;
                        *outgoing.request.body_mut() = full(auth_body.clone());
                    }
                    Err(ReadError::TooLarge) => {
                        tracing::debug!(
                            limit = self.max_body_size,
                            "forwardAuth: request body over maxBodySize"
                        );
                        return Ok(status_only(StatusCode::UNAUTHORIZED));
                    }
                    Err(ReadError::Failed(e)) => {
                        tracing::debug!(error = %e, "forwardAuth: reading the request body failed");
                        return Ok(status_only(StatusCode::INTERNAL_SERVER_ERROR));
                    }
                }
            }

            let headers = self.auth_headers(connection, &outgoing);
            let answer = match self.ask(headers, auth_method, auth_body).await {
                Ok(answer) => answer,
                Err(response) => return Ok(response),
            };
            if !answer.status.is_success() {
                tracing::debug!(status = %answer.status, "forwardAuth: refused");
                return Ok(self.refusal(answer, &method));
            }

            self.copy_response_headers(&answer.headers, outgoing.request.headers_mut());
            let auth_cookies: Vec<HeaderValue> = answer
                .headers
                .get_all(header::SET_COOKIE)
                .iter()
                .cloned()
                .collect();
            let mut response = next.run(outgoing).await?;
            if auth_cookies.iter().any(|c| cookie_name(c).is_some()) {
                let wanted = |value: &HeaderValue| {
                    cookie_name(value).is_some_and(|n| self.auth_cookies.iter().any(|w| w == n))
                };
                let kept: Vec<HeaderValue> = response
                    .headers()
                    .get_all(header::SET_COOKIE)
                    .iter()
                    .filter(|c| cookie_name(c).is_some() && !wanted(c))
                    .cloned()
                    .collect();
                let headers = response.headers_mut();
                headers.remove(header::SET_COOKIE);
                for cookie in kept
                    .into_iter()
                    .chain(auth_cookies.into_iter().filter(|c| wanted(c)))
                {
                    headers.append(header::SET_COOKIE, cookie);
                }
            }
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn locations_resolve_against_the_address() {
        let base: Uri = "http://auth.local:9000/verify/token?x=1".parse().unwrap();
        let r = |s: &str| resolve(&base, s).unwrap();
        assert_eq!(
            r("https://login.example/start"),
            "https://login.example/start"
        );
        assert_eq!(r("//cdn.example/a"), "http://cdn.example/a");
        assert_eq!(
            r("/login?next=%2F"),
            "http://auth.local:9000/login?next=%2F"
        );
        assert_eq!(r("login"), "http://auth.local:9000/verify/login");
        assert_eq!(r("../up/./x"), "http://auth.local:9000/up/x");
        assert_eq!(r("?y=2"), "http://auth.local:9000/verify/token?y=2");
        assert!(resolve(&base, "bad url").is_none());
    }

    #[test]
    fn options_are_checked() {
        let err = |spec: Value| compile(&spec).unwrap_err().field;
        assert_eq!(err(json!({})), "address");
        assert_eq!(err(json!({"address": "auth.local"})), "address");
        assert_eq!(err(json!({"address": "ftp://auth.local"})), "address");
        assert_eq!(
            err(json!({"address": "http://a", "authResponseHeadersRegex": "("})),
            "authResponseHeadersRegex"
        );
        assert_eq!(
            err(json!({"address": "http://a", "authResponseHeaders": ["bad name"]})),
            "authResponseHeaders[0]"
        );
        assert_eq!(
            err(json!({"address": "http://a", "tls": {"insecureSkipVerfy": true}})),
            "tls.insecureSkipVerfy"
        );
        assert_eq!(
            err(json!({"address": "http://a", "trustForwardHeaders": true})),
            "trustForwardHeaders"
        );
        assert!(compile(&json!({
            "address": "http://a:9/auth", "tls": {"ca": "x", "cert": "y", "key": "z", "insecureSkipVerify": true, "caOptional": true},
            "trustForwardHeader": true, "authResponseHeaders": ["X-User"], "authResponseHeadersRegex": "^X-",
            "authRequestHeaders": ["Cookie"], "addAuthCookiesToResponse": ["s"], "headerField": "X-U",
            "forwardBody": true, "maxBodySize": 10, "maxResponseBodySize": 100, "preserveLocationHeader": true,
            "preserveRequestMethod": true, "authSigninURL": "https://login"
        }))
        .is_ok());
    }

    #[test]
    fn dot_segments() {
        assert_eq!(remove_dot_segments("/a/b/../c/./d"), "/a/c/d");
        assert_eq!(remove_dot_segments("/a/.."), "/");
        assert_eq!(remove_dot_segments("/a/b/."), "/a/b/");
    }
}
