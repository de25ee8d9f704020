//! A server: one origin address a load balancer can send requests to.

use http::uri::{Authority, Scheme, Uri};

/// How Sluice speaks to a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1 over TCP (`http://`).
    Http,
    /// HTTP/2 with prior knowledge over TCP (`h2c://`).
    H2c,
    /// TLS (`https://`): HTTP/2 or HTTP/1.1 as ALPN decides, per the servers transport.
    Https,
}

/// One origin of a load balancer, parsed once when the runtime is built.
#[derive(Debug)]
pub struct Server {
    /// The URL exactly as configured; also the server's name in logs and `explain`.
    pub url: String,
    pub protocol: Protocol,
    pub authority: Authority,
    /// Path of the configured URL, prepended to request paths only with `preservePath`.
    pub base_path: Option<String>,
}

/// Why a server URL cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ServerUrlError {
    #[error("`{0}` is not a valid URL: {1}")]
    Invalid(String, String),
    #[error("`{0}` has no host")]
    NoHost(String),
    #[error("`{0}` uses scheme `{1}`; supported schemes are http, https and h2c")]
    Scheme(String, String),
}

impl Server {
    /// Parses a server URL; `preserve_path` keeps its path (Traefik ignores it otherwise).
    pub fn parse(url: &str, preserve_path: bool) -> Result<Self, ServerUrlError> {
        let uri: Uri = url.parse().map_err(|e: http::uri::InvalidUri| {
            ServerUrlError::Invalid(url.to_owned(), e.to_string())
        })?;
        let protocol = match uri.scheme() {
            Some(s) if *s == Scheme::HTTP => Protocol::Http,
            Some(s) if *s == Scheme::HTTPS => Protocol::Https,
            Some(s) if s.as_str().eq_ignore_ascii_case("h2c") => Protocol::H2c,
            Some(s) => return Err(ServerUrlError::Scheme(url.to_owned(), s.to_string())),
            None => {
                return Err(ServerUrlError::Invalid(
                    url.to_owned(),
                    "missing scheme".into(),
                ))
            }
        };
        let authority = uri
            .authority()
            .filter(|a| !a.host().is_empty())
            .cloned()
            .ok_or_else(|| ServerUrlError::NoHost(url.to_owned()))?;
        let base_path = match uri.path() {
            "" | "/" => None,
            path if preserve_path => Some(path.trim_end_matches('/').to_owned()),
            _ => None,
        };
        Ok(Self {
            url: url.to_owned(),
            protocol,
            authority,
            base_path,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_http_and_h2c() {
        let s = Server::parse("http://127.0.0.1:8080/ignored", false).unwrap();
        assert_eq!(s.protocol, Protocol::Http);
        assert_eq!(s.authority.as_str(), "127.0.0.1:8080");
        assert_eq!(s.base_path, None);
        let s = Server::parse("h2c://10.0.0.1:9000/base/", true).unwrap();
        assert_eq!(s.protocol, Protocol::H2c);
        assert_eq!(s.base_path.as_deref(), Some("/base"));
        let s = Server::parse("https://origin.example", false).unwrap();
        assert_eq!(s.protocol, Protocol::Https);
        assert_eq!(s.authority.as_str(), "origin.example");
    }

    #[test]
    fn rejects_bad_urls() {
        assert!(matches!(
            Server::parse("ftp://x", false),
            Err(ServerUrlError::Scheme(..))
        ));
        assert!(Server::parse("127.0.0.1:80", false).is_err());
        assert!(Server::parse("http:///x", false).is_err());
    }
}
