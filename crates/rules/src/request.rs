//! The request as matchers see it, and the host/path normalisation Traefik applies before routing.

use std::borrow::Cow;
use std::net::IpAddr;

/// What matchers see of a request. Built by the data plane per request; it only borrows.
#[derive(Clone, Copy, Debug)]
pub struct RequestInfo<'a> {
    /// Request method exactly as received (matching is case-sensitive, as in Traefik).
    pub method: &'a str,
    /// Canonical host (see [`canonical_host`]); `""` when the request has none.
    pub host: &'a str,
    /// Host as received (may carry a port); v2 `HostRegexp` matches against this.
    pub raw_host: &'a str,
    /// Routing path (see [`routing_path`]).
    pub path: &'a str,
    /// Raw query string without the `?`; `""` when absent.
    pub query: &'a str,
    /// Request headers.
    pub headers: &'a http::HeaderMap,
    /// Address of the connection peer (never taken from forwarding headers).
    pub client_ip: Option<IpAddr>,
}

/// Why a request path is refused before routing; every variant maps to HTTP 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The raw path contains a `#`.
    #[error("request path contains a fragment character '#'")]
    Fragment,
    /// A `%` is not followed by two hexadecimal digits.
    #[error("invalid percent-encoding in request path at byte {0}")]
    BadEscape(usize),
}

/// Turns a Host header value into the canonical host used by `Host`/`HostRegexp`: the port is
/// removed (with the brackets around an IPv6 literal, even when no port follows), surrounding
/// whitespace is trimmed and the result lower-cased.
pub fn canonical_host(raw: &str) -> Cow<'_, str> {
    let host = strip_port(raw).trim();
    // Hosts are nearly always ASCII: look at bytes before walking characters.
    if host.is_ascii() {
        return if host.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(host.to_ascii_lowercase())
        } else {
            Cow::Borrowed(host)
        };
    }
    if host.chars().any(|c| c.is_uppercase()) {
        Cow::Owned(host.to_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

/// Port stripping in the manner of Go's `net.SplitHostPort`, keeping the input when it does not
/// have the host:port shape (e.g. a bare IPv6 address).
fn strip_port(raw: &str) -> &str {
    if !raw.contains(':') && !raw.starts_with('[') {
        return raw;
    }
    if let Some(rest) = raw.strip_prefix('[') {
        if let Some(end) = rest.find(']') {
            let after = &rest[end + 1..];
            // `[::1]` and `[::1]:80` both lose the brackets; `[::1]x` is not host:port.
            if after.is_empty() || (after.starts_with(':') && !after[1..].contains(':')) {
                return &rest[..end];
            }
        }
        return raw;
    }
    match raw.find(':') {
        // More than one colon without brackets (a bare IPv6 address) is not host:port.
        Some(i) if !raw[i + 1..].contains(':') => &raw[..i],
        _ => raw,
    }
}

/// Characters RFC 3986 reserves; their escapes stay encoded in the routing path so that, e.g.,
/// `%2F` never turns into a path separator.
fn is_reserved(b: u8) -> bool {
    matches!(
        b,
        b':' | b'/'
            | b'?'
            | b'#'
            | b'['
            | b']'
            | b'@'
            | b'!'
            | b'$'
            | b'&'
            | b'\''
            | b'('
            | b')'
            | b'*'
            | b'+'
            | b','
            | b';'
            | b'='
    )
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes the escape at `bytes[i]` (which is `%`), or reports where it is malformed.
fn decode_escape(bytes: &[u8], i: usize) -> Result<u8, PathError> {
    let hi = bytes.get(i + 1).copied().and_then(hex_value);
    let lo = bytes.get(i + 2).copied().and_then(hex_value);
    match (hi, lo) {
        (Some(hi), Some(lo)) => Ok(hi << 4 | lo),
        _ => Err(PathError::BadEscape(i)),
    }
}

/// Computes the routing path from the escaped request path: every `%XX` is decoded except the
/// escapes of reserved characters and `%25`, which stay as they are. Decoded bytes that do not
/// form UTF-8 are replaced by U+FFFD (Go would keep the raw bytes; no rule can name them anyway).
pub fn routing_path(escaped_path: &str) -> Result<Cow<'_, str>, PathError> {
    if !escaped_path.contains('%') {
        return Ok(Cow::Borrowed(escaped_path));
    }
    let bytes = escaped_path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        let decoded = decode_escape(bytes, i)?;
        if decoded == b'%' || is_reserved(decoded) {
            out.extend_from_slice(&bytes[i..i + 3]);
        } else {
            out.push(decoded);
        }
        i += 3;
    }
    Ok(Cow::Owned(match String::from_utf8(out) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }))
}

/// Entry-point path hygiene applied before routing: refuses `#`, decodes escapes of unreserved
/// characters and upper-cases the remaining escapes, then resolves `.`/`..` segments and
/// collapses repeated slashes (a trailing slash is kept). The result is still escaped and is what
/// gets forwarded upstream.
pub fn sanitize_path(raw_path: &str) -> Result<Cow<'_, str>, PathError> {
    if raw_path.contains('#') {
        return Err(PathError::Fragment);
    }
    let normalized = normalize_escapes(raw_path)?;
    match clean_path(&normalized) {
        Some(cleaned) => Ok(Cow::Owned(cleaned)),
        None => Ok(normalized),
    }
}

/// Step 3 of the entry-point chain: canonical form of percent-escapes.
fn normalize_escapes(raw: &str) -> Result<Cow<'_, str>, PathError> {
    if !raw.contains('%') {
        return Ok(Cow::Borrowed(raw));
    }
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            // Copy the whole run up to the next '%' so multi-byte characters stay intact.
            let next = raw[i..].find('%').map_or(raw.len(), |n| i + n);
            out.push_str(&raw[i..next]);
            i = next;
            continue;
        }
        let decoded = decode_escape(bytes, i)?;
        if is_unreserved(decoded) {
            out.push(char::from(decoded));
        } else {
            out.push('%');
            out.push_str(&raw[i + 1..i + 3].to_ascii_uppercase());
        }
        i += 3;
    }
    if out == raw {
        Ok(Cow::Borrowed(raw))
    } else {
        Ok(Cow::Owned(out))
    }
}

/// `path.Clean` with the trailing slash preserved; `None` when the path is already clean.
/// Paths that do not start with `/` (e.g. `*`) are left alone.
fn clean_path(path: &str) -> Option<String> {
    if path.is_empty() {
        return Some("/".to_string());
    }
    if !path.starts_with('/') || is_clean(path) {
        return None;
    }
    let mut segments: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(path.len());
    for seg in &segments {
        out.push('/');
        out.push_str(seg);
    }
    // Root stays "/", and a trailing slash of the input survives cleaning.
    if out.is_empty() || path.ends_with('/') {
        out.push('/');
    }
    Some(out)
}

/// Fast check so the common, already-clean path needs no allocation.
fn is_clean(path: &str) -> bool {
    !path.contains("//")
        && !path.contains("/./")
        && !path.contains("/../")
        && !path.ends_with("/.")
        && !path.ends_with("/..")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_hosts() {
        assert_eq!(canonical_host("example.com"), "example.com");
        assert_eq!(canonical_host("Example.COM:8080"), "example.com");
        assert_eq!(canonical_host("[10::10]:80"), "10::10");
        assert_eq!(canonical_host("[::1]"), "::1");
        assert_eq!(canonical_host("10::10"), "10::10");
        assert_eq!(canonical_host(" example.com "), "example.com");
        assert_eq!(canonical_host("example.com:"), "example.com");
        assert_eq!(canonical_host("example.com."), "example.com.");
        assert_eq!(canonical_host(""), "");
        assert!(matches!(canonical_host("a.b"), Cow::Borrowed(_)));
    }

    #[test]
    fn routing_paths() {
        assert_eq!(routing_path("/foo%20bar").unwrap(), "/foo bar");
        assert_eq!(routing_path("/a%2Fb").unwrap(), "/a%2Fb");
        assert_eq!(routing_path("/a%2fb").unwrap(), "/a%2fb");
        assert_eq!(routing_path("/100%25").unwrap(), "/100%25");
        assert_eq!(routing_path("/%7Bx%7D").unwrap(), "/{x}");
        assert_eq!(routing_path("/caf%C3%A9").unwrap(), "/café");
        assert_eq!(routing_path("/a%3Bb%3D").unwrap(), "/a%3Bb%3D");
        assert_eq!(routing_path("/a%"), Err(PathError::BadEscape(2)));
        assert_eq!(routing_path("/a%4"), Err(PathError::BadEscape(2)));
        assert_eq!(routing_path("/a%zz"), Err(PathError::BadEscape(2)));
        assert!(matches!(routing_path("/plain").unwrap(), Cow::Borrowed(_)));
        assert_eq!(routing_path("/%FF").unwrap(), "/\u{FFFD}");
    }

    #[test]
    fn sanitize() {
        assert_eq!(sanitize_path("/a#b"), Err(PathError::Fragment));
        assert_eq!(sanitize_path("/a%"), Err(PathError::BadEscape(2)));
        assert_eq!(sanitize_path("/%61%2f%7e").unwrap(), "/a%2F~");
        assert_eq!(sanitize_path("/a//b/./c/../d").unwrap(), "/a/b/d");
        assert_eq!(sanitize_path("/a/b/").unwrap(), "/a/b/");
        assert_eq!(sanitize_path("/a/b/..").unwrap(), "/a");
        assert_eq!(sanitize_path("/a/b/../").unwrap(), "/a/");
        assert_eq!(sanitize_path("/../../x").unwrap(), "/x");
        assert_eq!(sanitize_path("/%2E%2E/x").unwrap(), "/x");
        assert_eq!(sanitize_path("//").unwrap(), "/");
        assert_eq!(sanitize_path("").unwrap(), "/");
        assert_eq!(sanitize_path("*").unwrap(), "*");
        assert_eq!(sanitize_path("/é%20").unwrap(), "/é%20");
        assert!(matches!(
            sanitize_path("/api/v1").unwrap(),
            Cow::Borrowed(_)
        ));
    }
}
