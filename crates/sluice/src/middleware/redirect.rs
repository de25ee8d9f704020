//! Redirect middlewares: `redirectScheme` and `redirectRegex`.
//!
//! Both build the URL the client asked for, rewrite it, and answer with a redirect when the
//! result differs from it; an unchanged URL lets the request through. The status is Traefik's:
//! 302 (301 when `permanent`) for GET, 307 (308 when `permanent`) for every other method, HEAD
//! included. The answer body is the status text and carries no Content-Type, as Traefik's.

use std::sync::{Arc, LazyLock};

use http::{header, HeaderValue, Method, Response, StatusCode, Version};
use regex::Regex;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::paths::{parse, plain_error};
use super::{Answer, Middleware, MiddlewareError, Next};
use crate::dataplane::body::{full, ProxyBody};
use crate::dataplane::request::Connection;
use crate::dataplane::upstream::Outgoing;

/// Compiles `redirectScheme` or `redirectRegex`.
pub fn compile(kind: &str, spec: &Value) -> Result<Arc<dyn Middleware>, MiddlewareError> {
    match kind {
        "redirectScheme" => Ok(Arc::new(RedirectScheme::new(parse(spec)?)?)),
        "redirectRegex" => Ok(Arc::new(RedirectRegex::new(parse(spec)?)?)),
        other => Err(MiddlewareError::new(
            "",
            format!("`{other}` is not a redirect middleware"),
        )),
    }
}

/// An absolute-form request target (`http://host:port/path`), split as Traefik splits it.
/// `\w` is spelled out because Go's is ASCII-only.
static ABSOLUTE_TARGET: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(https?)://(\[[0-9A-Za-z_:.]+\]|[0-9A-Za-z_.\-]+)?(:[0-9]+)?(.*)$")
        .unwrap_or_else(|e| unreachable!("constant pattern: {e}"))
});

/// The pattern `redirectScheme` rewrites the client's URL with: optional scheme, host, port, rest.
static SCHEME_PARTS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(https?://)?(\[[0-9A-Za-z_:.]+\]|[0-9A-Za-z_.\-]+)?(:[0-9]+)?(.*)$")
        .unwrap_or_else(|e| unreachable!("constant pattern: {e}"))
});

/// The request target as Go's `RequestURI` holds it: absolute-form for an HTTP/1 client that
/// sent one, otherwise the (possibly rewritten) path and query.
fn request_uri(outgoing: &Outgoing) -> String {
    let uri = outgoing.request.uri();
    let path_and_query = outgoing.path_and_query.as_str();
    match (uri.scheme_str(), uri.authority()) {
        (Some(scheme), Some(authority)) if outgoing.request.version() < Version::HTTP_2 => {
            format!("{scheme}://{authority}{path_and_query}")
        }
        _ => path_and_query.to_owned(),
    }
}

fn host_text(outgoing: &Outgoing) -> &str {
    outgoing.host.to_str().unwrap_or("")
}

/// Go's `net.SplitHostPort`, reduced to what is needed: `(host, ":port")` or `None`.
fn split_host_port(host: &str) -> Option<(&str, &str)> {
    if let Some(rest) = host.strip_prefix('[') {
        let end = rest.find(']')?;
        let port = rest[end + 1..].strip_prefix(':')?;
        return (!port.contains(':')).then(|| (&host[..end + 2], &host[end + 2..]));
    }
    let colon = host.rfind(':')?;
    if host[..colon].contains(':') {
        return None; // several colons without brackets: not host:port
    }
    Some((&host[..colon], &host[colon..]))
}

/// Sends the redirect answer.
fn redirect(method: &Method, location: &str, permanent: bool) -> Response<ProxyBody> {
    let get = method == Method::GET;
    let status = match (permanent, get) {
        (false, true) => StatusCode::FOUND,
        (false, false) => StatusCode::TEMPORARY_REDIRECT,
        (true, true) => StatusCode::MOVED_PERMANENTLY,
        (true, false) => StatusCode::PERMANENT_REDIRECT,
    };
    let Ok(location) = HeaderValue::from_str(location) else {
        return plain_error(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
    };
    let mut response = Response::new(full(status.canonical_reason().unwrap_or("")));
    *response.status_mut() = status;
    response.headers_mut().insert(header::LOCATION, location);
    response
}

fn answer<'a>(response: Response<ProxyBody>) -> Answer<'a> {
    Box::pin(async move { Ok(response) })
}

// ---------------------------------------------------------------------------------------------
// redirectScheme

/// A port given as text or as a number.
fn port_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Port {
        Text(String),
        Number(u64),
    }
    Ok(match Port::deserialize(deserializer)? {
        Port::Text(text) => text,
        Port::Number(n) => n.to_string(),
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RedirectSchemeConfig {
    #[serde(default)]
    scheme: String,
    #[serde(default, deserialize_with = "port_text")]
    port: String,
    #[serde(default)]
    permanent: bool,
}

/// `redirectScheme`: sends the client to the same URL on another scheme (and port).
#[derive(Debug)]
struct RedirectScheme {
    scheme: String,
    /// `:port`, or empty when no port or the scheme's default port was configured.
    port: String,
    permanent: bool,
}

impl RedirectScheme {
    fn new(config: RedirectSchemeConfig) -> Result<Self, MiddlewareError> {
        if config.scheme.is_empty() {
            return Err(MiddlewareError::new(
                "scheme",
                "you must provide a target scheme",
            ));
        }
        if !config.port.is_empty() && config.port.parse::<u16>().is_err() {
            return Err(MiddlewareError::new(
                "port",
                format!("`{}` is not a port number", config.port),
            ));
        }
        let default_port = (config.scheme == "http" && config.port == "80")
            || (config.scheme == "https" && config.port == "443");
        let port = if config.port.is_empty() || default_port {
            String::new()
        } else {
            format!(":{}", config.port)
        };
        Ok(Self {
            scheme: config.scheme,
            port,
            permanent: config.permanent,
        })
    }

    /// The URL the client used, as Traefik reconstructs it: TLS and X-Forwarded-Proto decide
    /// the scheme, and the scheme's default port is dropped.
    fn client_url(connection: &Connection, outgoing: &Outgoing) -> String {
        let raw_host = host_text(outgoing);
        let (mut host, mut port) = match split_host_port(raw_host) {
            Some((h, p)) => (h.to_owned(), p.to_owned()),
            None => (raw_host.to_owned(), String::new()),
        };
        let mut scheme = "http";
        let mut uri = request_uri(outgoing);
        if let Some(parts) = ABSOLUTE_TARGET.captures(&uri) {
            scheme = if &parts[1] == "https" {
                "https"
            } else {
                "http"
            };
            if let Some(h) = parts.get(2).filter(|m| !m.is_empty()) {
                host = h.as_str().to_owned();
            }
            if let Some(p) = parts.get(3).filter(|m| !m.is_empty()) {
                port = p.as_str().to_owned();
            }
            uri = parts.get(4).map_or("", |m| m.as_str()).to_owned();
        }
        if connection.tls {
            scheme = "https";
        }
        if let Some(proto) = outgoing
            .request
            .headers()
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
        {
            // A previous hop may say ws/wss for an upgrade; in HTTP terms that is http/https.
            if proto.eq_ignore_ascii_case("http") || proto.eq_ignore_ascii_case("ws") {
                scheme = "http";
            } else if proto.eq_ignore_ascii_case("https") || proto.eq_ignore_ascii_case("wss") {
                scheme = "https";
            }
        }
        if (scheme == "http" && port == ":80") || (scheme == "https" && port == ":443") {
            port.clear();
        }
        format!("{scheme}://{host}{port}{uri}")
    }

    /// Where to send the client, or `None` when it is already there.
    fn target(&self, old: &str) -> Option<String> {
        let parts = SCHEME_PARTS.captures(old)?;
        let host = parts.get(2).map_or("", |m| m.as_str());
        let rest = parts.get(4).map_or("", |m| m.as_str());
        let new = format!("{}://{host}{}{rest}", self.scheme, self.port);
        (new != old).then_some(new)
    }
}

impl Middleware for RedirectScheme {
    fn handle<'a>(
        &'a self,
        connection: &'a Connection,
        outgoing: Outgoing,
        next: Next<'a>,
    ) -> Answer<'a> {
        let old = Self::client_url(connection, &outgoing);
        match self.target(&old) {
            Some(location) => answer(redirect(
                outgoing.request.method(),
                &location,
                self.permanent,
            )),
            None => next.run(outgoing),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// redirectRegex

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RedirectRegexConfig {
    #[serde(default)]
    regex: String,
    #[serde(default)]
    replacement: String,
    #[serde(default)]
    permanent: bool,
}

/// `redirectRegex`: matches the full request URL and redirects to the replacement.
#[derive(Debug)]
struct RedirectRegex {
    regex: Regex,
    replacement: String,
    permanent: bool,
}

impl RedirectRegex {
    fn new(config: RedirectRegexConfig) -> Result<Self, MiddlewareError> {
        let regex = Regex::new(&config.regex).map_err(|e| {
            MiddlewareError::new("regex", format!("invalid regular expression: {e}"))
        })?;
        Ok(Self {
            regex,
            replacement: config.replacement,
            permanent: config.permanent,
        })
    }

    /// The request URL: scheme from TLS only (not X-Forwarded-Proto), Host as sent.
    fn raw_url(connection: &Connection, outgoing: &Outgoing) -> String {
        let mut scheme = "http";
        let mut host = host_text(outgoing).to_owned();
        let mut port = String::new();
        let mut uri = request_uri(outgoing);
        if let Some(parts) = ABSOLUTE_TARGET.captures(&uri) {
            scheme = if &parts[1] == "https" {
                "https"
            } else {
                "http"
            };
            if let Some(h) = parts.get(2).filter(|m| !m.is_empty()) {
                host = h.as_str().to_owned();
            }
            if let Some(p) = parts.get(3).filter(|m| !m.is_empty()) {
                port = p.as_str().to_owned();
            }
            uri = parts.get(4).map_or("", |m| m.as_str()).to_owned();
        }
        if connection.tls {
            scheme = "https";
        }
        format!("{scheme}://{host}{port}{uri}")
    }
}

impl Middleware for RedirectRegex {
    fn handle<'a>(
        &'a self,
        connection: &'a Connection,
        outgoing: Outgoing,
        next: Next<'a>,
    ) -> Answer<'a> {
        let old = Self::raw_url(connection, &outgoing);
        if !self.regex.is_match(&old) {
            return next.run(outgoing);
        }
        let new = self.regex.replace_all(&old, self.replacement.as_str());
        if new == old {
            return next.run(outgoing);
        }
        answer(redirect(outgoing.request.method(), &new, self.permanent))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_host_port_like_go() {
        assert_eq!(split_host_port("a.test:8080"), Some(("a.test", ":8080")));
        assert_eq!(split_host_port("a.test"), None);
        assert_eq!(split_host_port("[::1]:80"), Some(("[::1]", ":80")));
        assert_eq!(split_host_port("[::1]"), None);
        assert_eq!(split_host_port("::1"), None);
    }

    #[test]
    fn scheme_target_drops_default_ports_and_detects_no_change() {
        let https = RedirectScheme::new(RedirectSchemeConfig {
            scheme: "https".into(),
            port: "443".into(),
            permanent: false,
        })
        .unwrap();
        assert_eq!(
            https.target("http://a.test:8000/x?y=1").as_deref(),
            Some("https://a.test/x?y=1")
        );
        assert_eq!(https.target("https://a.test/x"), None);
        let custom = RedirectScheme::new(RedirectSchemeConfig {
            scheme: "https".into(),
            port: "8443".into(),
            permanent: true,
        })
        .unwrap();
        assert_eq!(
            custom.target("http://[::1]/").as_deref(),
            Some("https://[::1]:8443/")
        );
        assert_eq!(custom.target("https://a.test:8443/"), None);
    }

    #[test]
    fn statuses_follow_the_method() {
        assert_eq!(redirect(&Method::GET, "/x", false).status(), 302);
        assert_eq!(redirect(&Method::HEAD, "/x", false).status(), 307);
        assert_eq!(redirect(&Method::POST, "/x", false).status(), 307);
        assert_eq!(redirect(&Method::GET, "/x", true).status(), 301);
        assert_eq!(redirect(&Method::PUT, "/x", true).status(), 308);
    }
}
