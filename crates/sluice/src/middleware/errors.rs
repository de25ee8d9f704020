//! The `errors` middleware: when the rest of the chain answers with one of the configured
//! statuses, the client gets a page fetched from another service instead, with the original
//! status (or the one `statusRewrites` maps it to).
//!
//! This file also holds two helpers the traffic middlewares share: [`parse_spec`] (typed
//! decoding of a middleware's options, with the offending field named) and [`StatusRanges`]
//! (Traefik's `"500-599"` status lists, used by `errors` and `retry`).

use std::collections::BTreeMap;
use std::sync::Arc;

use http::uri::PathAndQuery;
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use super::{Answer, Middleware, MiddlewareError, Next, Resolver};
use crate::dataplane::body::empty;
use crate::dataplane::request::{serve, Connection};
use crate::dataplane::upstream::Outgoing;
use crate::runtime::Service;

/// Decodes a middleware's options into its typed form; serde's complaint becomes a
/// [`MiddlewareError`] naming the field when serde names one (unknown or missing fields).
pub(crate) fn parse_spec<T: DeserializeOwned>(spec: &Value) -> Result<T, MiddlewareError> {
    // `middlewareName: {}` and `middlewareName:` (null) both mean "all defaults".
    let spec = if spec.is_null() {
        Value::Object(Default::default())
    } else {
        spec.clone()
    };
    serde_json::from_value(spec).map_err(|e| {
        let message = e.to_string();
        let field = ["unknown field `", "missing field `", "duplicate field `"]
            .iter()
            .find_map(|marker| {
                let start = message.find(marker)? + marker.len();
                let end = message[start..].find('`')?;
                Some(message[start..start + end].to_owned())
            })
            .unwrap_or_default();
        MiddlewareError::new(field, message)
    })
}

/// A list of status codes and inclusive ranges, as Traefik writes them: `"404"`, `"500-599"`
/// (a comma-separated list inside one entry, `"404,500-599"`, is accepted too).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct StatusRanges(Vec<(u16, u16)>);

impl StatusRanges {
    /// Parses `entries`; `field` names the list in errors (`status`, `statusRewrites`).
    pub(crate) fn parse(entries: &[String], field: &str) -> Result<Self, MiddlewareError> {
        let mut ranges = Vec::new();
        for (i, entry) in entries.iter().enumerate() {
            for block in entry.split(',') {
                let block = block.trim();
                let (low, high) = block.split_once('-').unwrap_or((block, block));
                let code = |text: &str| {
                    text.trim().parse::<u16>().map_err(|_| {
                        MiddlewareError::new(
                            format!("{field}[{i}]"),
                            format!("`{entry}` is not a status code or a range like 500-599"),
                        )
                    })
                };
                let (low, high) = (code(low)?, code(high)?);
                if low > high {
                    return Err(MiddlewareError::new(
                        format!("{field}[{i}]"),
                        format!("`{entry}`: the range starts after it ends"),
                    ));
                }
                ranges.push((low, high));
            }
        }
        Ok(Self(ranges))
    }

    /// Whether no range was given.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `code` is in one of the ranges.
    pub(crate) fn contains(&self, code: u16) -> bool {
        self.0
            .iter()
            .any(|(low, high)| (*low..=*high).contains(&code))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Spec {
    #[serde(default)]
    status: Vec<String>,
    #[serde(default)]
    status_rewrites: BTreeMap<String, u16>,
    #[serde(default)]
    service: String,
    #[serde(default)]
    query: String,
    error_request_headers: Option<Vec<String>>,
}

/// The compiled `errors` middleware.
#[derive(Debug)]
struct ErrorPages {
    statuses: StatusRanges,
    /// Checked in key order; the first range holding the status wins.
    rewrites: Vec<(StatusRanges, StatusCode)>,
    service: Arc<Service>,
    query: String,
    /// Headers copied onto the page request; `None` copies them all.
    request_headers: Option<Vec<HeaderName>>,
}

/// Compiles `errors`; the page service is looked up through `resolver`.
pub fn compile(
    spec: &Value,
    resolver: &mut dyn Resolver,
) -> Result<Arc<dyn Middleware>, MiddlewareError> {
    let spec: Spec = parse_spec(spec)?;
    if spec.status.is_empty() {
        return Err(MiddlewareError::new(
            "status",
            "at least one status or range is required",
        ));
    }
    let statuses = StatusRanges::parse(&spec.status, "status")?;
    let mut rewrites = Vec::with_capacity(spec.status_rewrites.len());
    for (from, to) in &spec.status_rewrites {
        let field = format!("statusRewrites.{from}");
        let ranges = StatusRanges::parse(std::slice::from_ref(from), &field)
            .map_err(|e| MiddlewareError::new(field.clone(), e.message))?;
        let to = StatusCode::from_u16(*to)
            .ok()
            .filter(|s| s.as_u16() >= 100)
            .ok_or_else(|| {
                MiddlewareError::new(field.clone(), format!("{to} is not a valid status code"))
            })?;
        rewrites.push((ranges, to));
    }
    if spec.service.is_empty() {
        return Err(MiddlewareError::new(
            "service",
            "the service serving the error pages is required",
        ));
    }
    let service = resolver
        .service(&spec.service)
        .map_err(|e| MiddlewareError::new("service", e))?;
    let query = format!("/{}", spec.query.trim_start_matches('/'));
    // Check the template once with every placeholder filled, so a bad query fails at load time.
    let sample = fill(&query, 500, 500, "http%3A%2F%2Fexample.com%2F");
    PathAndQuery::try_from(sample.as_str()).map_err(|e| {
        MiddlewareError::new(
            "query",
            format!("`{}` is not a valid path: {e}", spec.query),
        )
    })?;
    let request_headers = match spec.error_request_headers {
        None => None,
        Some(names) => Some(
            names
                .iter()
                .enumerate()
                .map(|(i, name)| {
                    HeaderName::try_from(name.as_str()).map_err(|_| {
                        MiddlewareError::new(
                            format!("errorRequestHeaders[{i}]"),
                            format!("`{name}` is not a header name"),
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    Ok(Arc::new(ErrorPages {
        statuses,
        rewrites,
        service,
        query,
        request_headers,
    }))
}

/// Replaces the query's placeholders.
fn fill(query: &str, status: u16, original: u16, url: &str) -> String {
    query
        .replace("{status}", &status.to_string())
        .replace("{originalStatus}", &original.to_string())
        .replace("{url}", url)
}

/// Percent-encodes like Go's `url.QueryEscape` (space as `+`), for the `{url}` placeholder.
fn query_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3 / 2);
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

impl Middleware for ErrorPages {
    fn handle<'a>(
        &'a self,
        connection: &'a Connection,
        outgoing: Outgoing,
        next: Next<'a>,
    ) -> Answer<'a> {
        Box::pin(async move {
            // What the page request needs from the original, kept before the request moves on.
            let headers = match &self.request_headers {
                None => outgoing.request.headers().clone(),
                Some(names) => {
                    let mut kept = HeaderMap::new();
                    for name in names {
                        for value in outgoing.request.headers().get_all(name) {
                            kept.append(name.clone(), value.clone());
                        }
                    }
                    kept
                }
            };
            let host = outgoing.host.clone();
            let original_url = self.query.contains("{url}").then(|| {
                let scheme = if connection.tls { "https" } else { "http" };
                let host = host.to_str().unwrap_or("");
                query_escape(&format!("{scheme}://{host}{}", outgoing.path_and_query))
            });

            let response = match next.run(outgoing).await {
                Ok(response) => response,
                // Sluice's own error answers are caught too, as Traefik's are.
                Err(error) => error.into_response(),
            };
            let original = response.status().as_u16();
            if !self.statuses.contains(original) {
                return Ok(response);
            }
            drop(response);
            let status = self
                .rewrites
                .iter()
                .find(|(from, _)| from.contains(original))
                .map(|(_, to)| *to)
                .unwrap_or_else(|| {
                    StatusCode::from_u16(original).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
                });

            let path = fill(
                &self.query,
                status.as_u16(),
                original,
                original_url.as_deref().unwrap_or(""),
            );
            let Ok(path_and_query) = PathAndQuery::try_from(path.as_str()) else {
                return Ok(plain(status));
            };
            let mut request = Request::new(empty());
            *request.method_mut() = Method::GET;
            *request.uri_mut() = http::Uri::from(path_and_query.clone());
            *request.headers_mut() = headers;
            // The page request has no body, whatever the original carried.
            request.headers_mut().remove(header::CONTENT_LENGTH);
            request.headers_mut().remove(header::TRANSFER_ENCODING);
            request.headers_mut().remove(header::CONTENT_TYPE);
            let page = Outgoing {
                request,
                path_and_query,
                host,
                upgrade: None,
            };
            let mut answer = match serve(&self.service, page).await {
                Ok(answer) => answer,
                Err(error) => {
                    tracing::debug!(%error, "error page service failed");
                    error.into_response()
                }
            };
            *answer.status_mut() = status;
            Ok(answer)
        })
    }
}

/// A bare answer with `status` and its reason phrase, as Go's `http.Error` writes it.
fn plain(status: StatusCode) -> Response<crate::dataplane::body::ProxyBody> {
    let text = format!("{}\n", status.canonical_reason().unwrap_or(""));
    let mut response = Response::new(crate::dataplane::body::full(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_and_match() {
        let ranges = StatusRanges::parse(
            &["404".into(), "500-503".into(), "418,429".into()],
            "status",
        )
        .unwrap();
        for code in [404, 500, 502, 503, 418, 429] {
            assert!(ranges.contains(code), "{code}");
        }
        for code in [200, 403, 405, 499, 504] {
            assert!(!ranges.contains(code), "{code}");
        }
    }

    #[test]
    fn bad_ranges_name_the_entry() {
        let error = StatusRanges::parse(&["500".into(), "5xx".into()], "status").unwrap_err();
        assert_eq!(error.field, "status[1]");
        let error = StatusRanges::parse(&["599-500".into()], "status").unwrap_err();
        assert!(error.message.contains("starts after"), "{error}");
    }

    #[test]
    fn placeholders_are_filled_and_url_escaped() {
        let url = query_escape("http://h.example/a b?x=1&y=2");
        assert_eq!(url, "http%3A%2F%2Fh.example%2Fa+b%3Fx%3D1%26y%3D2");
        assert_eq!(
            fill("/{status}/{originalStatus}?u={url}", 404, 418, "U"),
            "/404/418?u=U"
        );
    }

    #[test]
    fn unknown_fields_are_named() {
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields, rename_all = "camelCase")]
        #[allow(dead_code)]
        struct S {
            status: Vec<String>,
        }
        let error = parse_spec::<S>(&serde_json::json!({"status": [], "statsu": 1})).unwrap_err();
        assert_eq!(error.field, "statsu");
    }
}
