//! Path rewriting middlewares: `addPrefix`, `stripPrefix`, `stripPrefixRegex`, `replacePath`,
//! `replacePathRegex`.
//!
//! Traefik keeps two forms of the path (Go's `URL.Path`, decoded, and `URL.RawPath`, escaped) and
//! forwards `EscapedPath()`: the escaped form when it is a valid, consistent encoding of the
//! decoded one, otherwise a fresh encoding of the decoded path. Prefixes are compared with the
//! decoded path and cut from the escaped one escape by escape; regex replacements work on the
//! escaped path. Sluice keeps only the escaped path (`Outgoing::path_and_query`) between
//! middlewares and derives the decoded form when needed, which gives the same results.

use std::sync::Arc;

use bytes::Bytes;
use http::uri::{PathAndQuery, Uri};
use http::{header, HeaderName, HeaderValue, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use super::{Answer, Middleware, MiddlewareError, Next};
use crate::dataplane::body::{full, ProxyBody};
use crate::dataplane::request::Connection;
use crate::dataplane::upstream::Outgoing;

const X_FORWARDED_PREFIX: HeaderName = HeaderName::from_static("x-forwarded-prefix");
const X_REPLACED_PATH: HeaderName = HeaderName::from_static("x-replaced-path");

/// Compiles one of the path middlewares named by `kind`.
pub fn compile(kind: &str, spec: &Value) -> Result<Arc<dyn Middleware>, MiddlewareError> {
    match kind {
        "addPrefix" => AddPrefix::new(parse(spec)?).map(|m| Arc::new(m) as Arc<dyn Middleware>),
        "stripPrefix" => StripPrefix::new(parse(spec)?).map(|m| Arc::new(m) as Arc<dyn Middleware>),
        "stripPrefixRegex" => {
            StripPrefixRegex::new(parse(spec)?).map(|m| Arc::new(m) as Arc<dyn Middleware>)
        }
        "replacePath" => ReplacePath::new(parse(spec)?).map(|m| Arc::new(m) as Arc<dyn Middleware>),
        "replacePathRegex" => {
            ReplacePathRegex::new(parse(spec)?).map(|m| Arc::new(m) as Arc<dyn Middleware>)
        }
        other => Err(MiddlewareError::new(
            "",
            format!("`{other}` is not a path middleware"),
        )),
    }
}

/// Decodes a middleware's options; a missing body (`addPrefix:` with nothing under it) counts as
/// an empty object, as it does for Traefik.
pub(crate) fn parse<T: DeserializeOwned>(spec: &Value) -> Result<T, MiddlewareError> {
    let spec = if spec.is_null() {
        Value::Object(Default::default())
    } else {
        spec.clone()
    };
    serde_json::from_value(spec).map_err(|e| MiddlewareError::new("", e.to_string()))
}

/// An answer written by Sluice in the shape of Go's `http.Error`: plain text, `nosniff`, the
/// message followed by a newline.
pub(crate) fn plain_error(status: StatusCode, message: &str) -> Response<ProxyBody> {
    let mut response = Response::new(full(Bytes::from(format!("{message}\n"))));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// An already-decided answer as a chain result.
fn answer<'a>(response: Response<ProxyBody>) -> Answer<'a> {
    Box::pin(async move { Ok(response) })
}

/// An answer given instead of forwarding (boxed: it is the rare path).
pub(crate) type Refused = Box<Response<ProxyBody>>;

fn bad_request() -> Refused {
    Box::new(plain_error(StatusCode::BAD_REQUEST, "Bad Request"))
}

fn internal_error(message: &str) -> Refused {
    Box::new(plain_error(StatusCode::INTERNAL_SERVER_ERROR, message))
}

// ---------------------------------------------------------------------------------------------
// Path encoding, as Go's net/url does it.

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes every `%XX` (Go's `url.PathUnescape`); a malformed escape is an error naming it.
pub(crate) fn unescape(escaped: &str) -> Result<Vec<u8>, String> {
    let bytes = escaped.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let pair = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            );
            match pair {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 3;
                }
                _ => {
                    let end = (i + 3).min(bytes.len());
                    let bad = String::from_utf8_lossy(&bytes[i..end]);
                    return Err(format!("invalid URL escape \"{bad}\""));
                }
            }
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(out)
}

/// Whether Go leaves `b` as is when encoding a path.
fn path_safe(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_.~$&+,/:;=@".contains(&b)
}

/// Go's `escape(path, encodePath)`.
fn escape(decoded: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(decoded.len());
    for &b in decoded {
        if path_safe(b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
    }
    out
}

/// Go's `validEncoded(path, encodePath)`: only characters a path may carry unescaped.
fn valid_encoded(raw: &str) -> bool {
    raw.bytes()
        .all(|b| path_safe(b) || b"!'()*[]%".contains(&b))
}

/// Go's `URL.EscapedPath()`: `raw` when it is a valid encoding of `decoded`, else `decoded`
/// encoded afresh.
fn escaped_path(raw: &str, decoded: &[u8]) -> String {
    if valid_encoded(raw) && unescape(raw).is_ok_and(|d| d == decoded) {
        raw.to_owned()
    } else {
        escape(decoded)
    }
}

/// Go's `path.Join` on one element, keeping a trailing slash as `URL.JoinPath` does: removes
/// empty and `.` segments and resolves `..`.
fn join_clean(escaped: &str) -> String {
    let rooted = escaped.starts_with('/');
    let mut segments: Vec<&str> = Vec::new();
    for segment in escaped.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                if segments.last().is_some_and(|s| *s != "..") {
                    segments.pop();
                } else if !rooted {
                    segments.push("..");
                }
            }
            other => segments.push(other),
        }
    }
    let mut out = if rooted {
        String::from("/")
    } else {
        String::new()
    };
    out.push_str(&segments.join("/"));
    if out.is_empty() {
        out.push('.');
    }
    if escaped.ends_with('/') && !out.ends_with('/') {
        out.push('/');
    }
    out
}

/// Traefik refuses (400) a rewritten path that `URL.JoinPath` would change: dot segments or
/// empty segments created by the rewrite. An empty path is left alone.
fn survives_normalisation(decoded: &[u8], escaped: &str) -> bool {
    if decoded.is_empty() {
        return true;
    }
    unescape(&join_clean(escaped)).is_ok_and(|d| d == decoded)
}

/// Go's `ensureLeadingSlash`.
fn leading_slash(path: &str) -> String {
    if path.is_empty() || path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    }
}

fn leading_slash_bytes(path: &[u8]) -> Vec<u8> {
    if path.is_empty() || path.starts_with(b"/") {
        path.to_vec()
    } else {
        let mut out = Vec::with_capacity(path.len() + 1);
        out.push(b'/');
        out.extend_from_slice(path);
        out
    }
}

/// How many bytes of the escaped path spell the first `decoded_len` decoded bytes.
fn encoded_prefix_len(raw: &str, decoded_len: usize) -> usize {
    let bytes = raw.as_bytes();
    let (mut i, mut decoded) = (0, 0);
    while i < bytes.len() && decoded < decoded_len {
        i += if bytes[i] == b'%' && i + 2 < bytes.len() {
            3
        } else {
            1
        };
        decoded += 1;
    }
    i.min(bytes.len())
}

/// The escaped path currently being forwarded.
pub(crate) fn current_path(outgoing: &Outgoing) -> &str {
    outgoing.path_and_query.path()
}

/// Replaces the forwarded path (keeping the query), and the request URI with it so later
/// middlewares see the rewritten target. A path that cannot be forwarded is a 400.
pub(crate) fn set_path(outgoing: &mut Outgoing, escaped: &str) -> Result<(), Refused> {
    let mut text = String::with_capacity(escaped.len() + 16);
    if !escaped.starts_with('/') {
        text.push('/');
    }
    text.push_str(escaped);
    if let Some(query) = outgoing.path_and_query.query() {
        text.push('?');
        text.push_str(query);
    }
    let path_and_query = PathAndQuery::try_from(text).map_err(|_| bad_request())?;
    let mut parts = outgoing.request.uri().clone().into_parts();
    parts.path_and_query = Some(path_and_query.clone());
    if let Ok(uri) = Uri::from_parts(parts) {
        *outgoing.request.uri_mut() = uri;
    }
    outgoing.path_and_query = path_and_query;
    Ok(())
}

fn header_value(field: &str, text: &str) -> Result<HeaderValue, MiddlewareError> {
    HeaderValue::from_str(text)
        .map_err(|_| MiddlewareError::new(field, "contains characters a header cannot carry"))
}

fn compile_regex(field: &str, pattern: &str) -> Result<regex::Regex, MiddlewareError> {
    regex::Regex::new(pattern)
        .map_err(|e| MiddlewareError::new(field, format!("invalid regular expression: {e}")))
}

fn compile_bytes_regex(field: &str, pattern: &str) -> Result<regex::bytes::Regex, MiddlewareError> {
    regex::bytes::Regex::new(pattern)
        .map_err(|e| MiddlewareError::new(field, format!("invalid regular expression: {e}")))
}

// ---------------------------------------------------------------------------------------------
// addPrefix

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct AddPrefixConfig {
    #[serde(default)]
    prefix: String,
}

/// `addPrefix`: puts `prefix` (a decoded path) in front of the path.
#[derive(Debug)]
struct AddPrefix {
    prefix: String,
}

impl AddPrefix {
    fn new(config: AddPrefixConfig) -> Result<Self, MiddlewareError> {
        if config.prefix.is_empty() {
            return Err(MiddlewareError::new("prefix", "prefix cannot be empty"));
        }
        Ok(Self {
            prefix: config.prefix,
        })
    }

    fn rewrite(&self, outgoing: &mut Outgoing) -> Result<(), Refused> {
        let raw = current_path(outgoing);
        let decoded = unescape(raw).map_err(|_| bad_request())?;
        let mut new_decoded = self.prefix.as_bytes().to_vec();
        new_decoded.extend_from_slice(&decoded);
        let new_decoded = leading_slash_bytes(&new_decoded);
        let new_raw = leading_slash(&format!("{}{raw}", self.prefix));
        let escaped = escaped_path(&new_raw, &new_decoded);
        set_path(outgoing, &escaped)
    }
}

// ---------------------------------------------------------------------------------------------
// stripPrefix

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct StripPrefixConfig {
    #[serde(default)]
    prefixes: Vec<String>,
    /// Deprecated in Traefik v3; when absent it counts as `false` (Traefik's code, whatever its
    /// doc comment says).
    #[serde(default)]
    force_slash: Option<bool>,
}

/// `stripPrefix`: removes the first matching prefix and records it in X-Forwarded-Prefix.
#[derive(Debug)]
struct StripPrefix {
    prefixes: Vec<(String, HeaderValue)>,
    force_slash: bool,
}

impl StripPrefix {
    fn new(config: StripPrefixConfig) -> Result<Self, MiddlewareError> {
        if config.force_slash.is_some() {
            tracing::warn!("stripPrefix: `forceSlash` is deprecated; remove it");
        }
        let prefixes = config
            .prefixes
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let p = p.trim();
                Ok((p.to_owned(), header_value(&format!("prefixes[{i}]"), p)?))
            })
            .collect::<Result<_, MiddlewareError>>()?;
        Ok(Self {
            prefixes,
            force_slash: config.force_slash.unwrap_or(false),
        })
    }

    fn rewrite(&self, outgoing: &mut Outgoing) -> Result<(), Refused> {
        let raw = current_path(outgoing).to_owned();
        let decoded = unescape(&raw).map_err(|_| bad_request())?;
        let Some((prefix, value)) = self
            .prefixes
            .iter()
            .find(|(p, _)| decoded.starts_with(p.as_bytes()))
        else {
            return Ok(());
        };
        let rest = &decoded[prefix.len()..];
        let raw_rest = &raw[encoded_prefix_len(&raw, prefix.len())..];
        let (new_decoded, new_raw) = if self.force_slash {
            let mut d = b"/".to_vec();
            d.extend_from_slice(rest.strip_prefix(b"/").unwrap_or(rest));
            (
                d,
                format!("/{}", raw_rest.strip_prefix('/').unwrap_or(raw_rest)),
            )
        } else {
            (leading_slash_bytes(rest), leading_slash(raw_rest))
        };
        let escaped = escaped_path(&new_raw, &new_decoded);
        if !survives_normalisation(&new_decoded, &escaped) {
            return Err(bad_request());
        }
        outgoing
            .request
            .headers_mut()
            .append(X_FORWARDED_PREFIX, value.clone());
        set_path(outgoing, &escaped)
    }
}

// ---------------------------------------------------------------------------------------------
// stripPrefixRegex

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct StripPrefixRegexConfig {
    #[serde(default)]
    regex: Vec<String>,
}

/// `stripPrefixRegex`: the first expression whose leftmost match starts the decoded path strips
/// that match; it goes to X-Forwarded-Prefix.
#[derive(Debug)]
struct StripPrefixRegex {
    expressions: Vec<regex::bytes::Regex>,
}

impl StripPrefixRegex {
    fn new(config: StripPrefixRegexConfig) -> Result<Self, MiddlewareError> {
        let expressions = config
            .regex
            .iter()
            .enumerate()
            .map(|(i, r)| compile_bytes_regex(&format!("regex[{i}]"), r.trim()))
            .collect::<Result<_, _>>()?;
        Ok(Self { expressions })
    }

    fn rewrite(&self, outgoing: &mut Outgoing) -> Result<(), Refused> {
        let raw = current_path(outgoing).to_owned();
        let decoded = unescape(&raw).map_err(|_| bad_request())?;
        for expression in &self.expressions {
            let Some(found) = expression.find(&decoded) else {
                continue;
            };
            let prefix = found.as_bytes();
            // Traefik takes the leftmost match and only uses it when the path starts with it.
            if prefix.is_empty() || !decoded.starts_with(prefix) {
                continue;
            }
            let new_decoded = leading_slash_bytes(&decoded[prefix.len()..]);
            let new_raw = leading_slash(&raw[encoded_prefix_len(&raw, prefix.len())..]);
            let escaped = escaped_path(&new_raw, &new_decoded);
            if let Ok(value) = HeaderValue::from_bytes(prefix) {
                outgoing
                    .request
                    .headers_mut()
                    .append(X_FORWARDED_PREFIX, value);
            }
            if !survives_normalisation(&new_decoded, &escaped) {
                return Err(bad_request());
            }
            return set_path(outgoing, &escaped);
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// replacePath

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ReplacePathConfig {
    #[serde(default)]
    path: String,
}

/// `replacePath`: forwards `path` (taken as escaped) and records the old escaped path in
/// X-Replaced-Path.
#[derive(Debug)]
struct ReplacePath {
    path: String,
}

impl ReplacePath {
    fn new(config: ReplacePathConfig) -> Result<Self, MiddlewareError> {
        Ok(Self { path: config.path })
    }

    fn rewrite(&self, outgoing: &mut Outgoing) -> Result<(), Refused> {
        let old = HeaderValue::from_str(current_path(outgoing)).map_err(|_| bad_request())?;
        outgoing.request.headers_mut().append(X_REPLACED_PATH, old);
        // Traefik answers 500 with the decoding error when the configured path is malformed.
        let decoded = unescape(&self.path).map_err(|e| internal_error(&e))?;
        set_path(outgoing, &escaped_path(&self.path, &decoded))
    }
}

// ---------------------------------------------------------------------------------------------
// replacePathRegex

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ReplacePathRegexConfig {
    #[serde(default)]
    regex: String,
    #[serde(default)]
    replacement: String,
}

/// `replacePathRegex`: rewrites the escaped path with every match replaced (`$1`, `${name}`).
#[derive(Debug)]
struct ReplacePathRegex {
    regex: regex::Regex,
    replacement: String,
}

impl ReplacePathRegex {
    fn new(config: ReplacePathRegexConfig) -> Result<Self, MiddlewareError> {
        Ok(Self {
            regex: compile_regex("regex", config.regex.trim())?,
            replacement: config.replacement.trim().to_owned(),
        })
    }

    fn rewrite(&self, outgoing: &mut Outgoing) -> Result<(), Refused> {
        let current = current_path(outgoing).to_owned();
        if !self.regex.is_match(&current) {
            return Ok(());
        }
        let old = HeaderValue::from_str(&current).map_err(|_| bad_request())?;
        outgoing.request.headers_mut().append(X_REPLACED_PATH, old);
        let new_raw = self
            .regex
            .replace_all(&current, self.replacement.as_str())
            .into_owned();
        let decoded = unescape(&new_raw).map_err(|e| internal_error(&e))?;
        let escaped = escaped_path(&new_raw, &decoded);
        if !survives_normalisation(&decoded, &escaped) {
            return Err(bad_request());
        }
        set_path(outgoing, &escaped)
    }
}

/// Every path middleware is a rewrite of the outgoing request that may refuse it instead.
macro_rules! path_middleware {
    ($($kind:ty),*) => {$(
        impl Middleware for $kind {
            fn handle<'a>(
                &'a self,
                _: &'a Connection,
                mut outgoing: Outgoing,
                next: Next<'a>,
            ) -> Answer<'a> {
                match self.rewrite(&mut outgoing) {
                    Ok(()) => next.run(outgoing),
                    Err(response) => answer(*response),
                }
            }
        }
    )*};
}

path_middleware!(
    AddPrefix,
    StripPrefix,
    StripPrefixRegex,
    ReplacePath,
    ReplacePathRegex
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescape_decodes_and_names_bad_escapes() {
        assert_eq!(unescape("/a%20b%2Fc").unwrap(), b"/a b/c");
        assert_eq!(
            unescape("/a%zzb").unwrap_err(),
            "invalid URL escape \"%zz\""
        );
        assert_eq!(unescape("/a%2").unwrap_err(), "invalid URL escape \"%2\"");
    }

    #[test]
    fn escaped_path_keeps_a_consistent_raw_form() {
        assert_eq!(escaped_path("/a%2Fb", b"/a/b"), "/a%2Fb");
        assert_eq!(escaped_path("/a b", b"/a b"), "/a%20b");
        // Inconsistent raw form: the decoded path wins, freshly encoded.
        assert_eq!(escaped_path("/a%20b/x", b"/a%20b/x"), "/a%2520b/x");
        assert_eq!(escape("/é?".as_bytes()), "/%C3%A9%3F");
    }

    #[test]
    fn join_clean_matches_go_path_join() {
        assert_eq!(join_clean("/a//b"), "/a/b");
        assert_eq!(join_clean("/a/./b/../c/"), "/a/c/");
        assert_eq!(join_clean("/../x"), "/x");
        assert_eq!(join_clean("/"), "/");
        assert_eq!(join_clean("a/../../b"), "../b");
        assert!(survives_normalisation(b"/a/b/", "/a/b/"));
        assert!(!survives_normalisation(b"//x", "//x"));
        assert!(!survives_normalisation(b"/./x", "/./x"));
        assert!(survives_normalisation(b"/a/../b", "/a%2F..%2Fb"));
    }

    #[test]
    fn encoded_prefix_len_counts_escapes_as_one_byte() {
        assert_eq!(encoded_prefix_len("/a%2Fb/c", 4), 6);
        assert_eq!(encoded_prefix_len("/api/x", 4), 4);
        assert_eq!(encoded_prefix_len("/ab", 10), 3);
    }
}
