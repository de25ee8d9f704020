//! `headers`: custom request and response headers, CORS, and security headers.
//!
//! Traefik builds this middleware from two layers, and Sluice keeps their order because it is
//! observable: the outer layer answers CORS preflights itself and applies the custom request
//! headers; the inner (security) layer then checks `allowedHosts` and decides the security
//! headers. On the way back the security headers are set first and the custom response headers
//! and CORS headers last, so a custom response header overrides a security header. The security
//! layer's "Bad Host" answer still passes through the outer layer.
//!
//! Fields Traefik v3 still accepts but no longer acts on (`sslRedirect`, `sslTemporaryRedirect`,
//! `sslHost`, `sslForceHost`, `featurePolicy`) are accepted and ignored, with a warning.
//!
//! Errors from the rest of the chain (origin unreachable, timeouts) are passed up unchanged so
//! outer middlewares such as retry still see them; unlike Traefik, their answers therefore do
//! not carry this middleware's response headers.

use std::sync::Arc;

use base64::Engine as _;
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, Version};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::paths::{parse, plain_error};
use super::{Answer, Middleware, MiddlewareError, Next};
use crate::dataplane::body::{empty, ProxyBody};
use crate::dataplane::request::Connection;
use crate::dataplane::upstream::Outgoing;

/// Compiles `headers`.
pub fn compile(spec: &Value) -> Result<Arc<dyn Middleware>, MiddlewareError> {
    let config: HeadersConfig = parse(spec)?;
    Ok(Arc::new(Headers::new(config)?))
}

/// A `name: value` map whose values may be written as strings, numbers or booleans (YAML does
/// not force quoting); order is kept so the result is predictable.
fn scalar_map<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<(String, String)>, D::Error> {
    let map = serde_json::Map::<String, Value>::deserialize(deserializer)?;
    map.into_iter()
        .map(|(name, value)| {
            let text = match value {
                Value::String(s) => s,
                Value::Null => String::new(),
                Value::Bool(b) => b.to_string(),
                Value::Number(n) => n.to_string(),
                other => {
                    return Err(serde::de::Error::custom(format!(
                        "the value of `{name}` must be text, not {other}"
                    )))
                }
            };
            Ok((name, text))
        })
        .collect()
}

/// Traefik's `Headers` options.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
struct HeadersConfig {
    #[serde(deserialize_with = "scalar_map")]
    custom_request_headers: Vec<(String, String)>,
    #[serde(deserialize_with = "scalar_map")]
    custom_response_headers: Vec<(String, String)>,

    access_control_allow_credentials: bool,
    access_control_allow_headers: Vec<String>,
    access_control_allow_methods: Vec<String>,
    access_control_allow_origin_list: Vec<String>,
    access_control_allow_origin_list_regex: Vec<String>,
    access_control_expose_headers: Vec<String>,
    access_control_max_age: Option<i64>,
    add_vary_header: bool,

    allowed_hosts: Vec<String>,
    hosts_proxy_headers: Vec<String>,
    #[serde(deserialize_with = "scalar_map")]
    ssl_proxy_headers: Vec<(String, String)>,
    sts_seconds: Option<i64>,
    sts_include_subdomains: bool,
    sts_preload: bool,
    #[serde(rename = "forceSTSHeader")]
    force_sts_header: bool,
    frame_deny: bool,
    custom_frame_options_value: String,
    content_type_nosniff: bool,
    browser_xss_filter: bool,
    #[serde(rename = "customBrowserXSSValue")]
    custom_browser_xss_value: String,
    content_security_policy: String,
    content_security_policy_report_only: String,
    public_key: String,
    referrer_policy: String,
    permissions_policy: String,
    is_development: bool,

    // Accepted for compatibility; Traefik v3 ignores them.
    feature_policy: Option<String>,
    ssl_redirect: Option<bool>,
    ssl_temporary_redirect: Option<bool>,
    ssl_host: Option<String>,
    ssl_force_host: Option<bool>,
}

impl HeadersConfig {
    fn has_custom(&self) -> bool {
        !self.custom_request_headers.is_empty() || !self.custom_response_headers.is_empty()
    }

    fn has_cors(&self) -> bool {
        self.access_control_allow_credentials
            || !self.access_control_allow_headers.is_empty()
            || !self.access_control_allow_methods.is_empty()
            || !self.access_control_allow_origin_list.is_empty()
            || !self.access_control_allow_origin_list_regex.is_empty()
            || !self.access_control_expose_headers.is_empty()
            || self.access_control_max_age.is_some()
            || self.add_vary_header
    }

    fn has_secure(&self) -> bool {
        !self.allowed_hosts.is_empty()
            || !self.hosts_proxy_headers.is_empty()
            || self.ssl_redirect == Some(true)
            || self.ssl_temporary_redirect == Some(true)
            || self.ssl_force_host == Some(true)
            || self.ssl_host.as_deref().is_some_and(|h| !h.is_empty())
            || !self.ssl_proxy_headers.is_empty()
            || self.sts_seconds.is_some()
            || self.sts_include_subdomains
            || self.sts_preload
            || self.force_sts_header
            || self.frame_deny
            || !self.custom_frame_options_value.is_empty()
            || self.content_type_nosniff
            || self.browser_xss_filter
            || !self.custom_browser_xss_value.is_empty()
            || !self.content_security_policy.is_empty()
            || !self.content_security_policy_report_only.is_empty()
            || !self.public_key.is_empty()
            || !self.referrer_policy.is_empty()
            || self
                .feature_policy
                .as_deref()
                .is_some_and(|p| !p.is_empty())
            || !self.permissions_policy.is_empty()
            || self.is_development
    }
}

fn name(field: &str, text: &str) -> Result<HeaderName, MiddlewareError> {
    HeaderName::from_bytes(text.as_bytes())
        .map_err(|_| MiddlewareError::new(field, format!("`{text}` is not a valid header name")))
}

fn value(field: &str, text: &str) -> Result<HeaderValue, MiddlewareError> {
    HeaderValue::from_str(text)
        .map_err(|_| MiddlewareError::new(field, "contains characters a header cannot carry"))
}

/// What a custom request header does.
#[derive(Debug)]
enum RequestEdit {
    Remove(HeaderName),
    Set(HeaderName, HeaderValue),
    /// `Host` changes the Host sent upstream.
    Host(HeaderValue),
}

/// A joined list option and whether it holds the `*` wildcard.
#[derive(Debug)]
struct Joined {
    value: Option<HeaderValue>,
    wildcard: bool,
}

impl Joined {
    fn new(field: &str, items: &[String]) -> Result<Self, MiddlewareError> {
        let text = items.join(",");
        Ok(Self {
            value: if text.is_empty() {
                None
            } else {
                Some(value(field, &text)?)
            },
            wildcard: items.iter().any(|i| i == "*"),
        })
    }
}

/// The CORS options.
#[derive(Debug)]
struct Cors {
    allow_credentials: bool,
    allow_headers: Joined,
    allow_methods: Joined,
    origins: Vec<String>,
    origin_patterns: Vec<regex::Regex>,
    expose_headers: Joined,
    max_age: Option<HeaderValue>,
    add_vary: bool,
}

impl Cors {
    /// The Access-Control-Allow-Origin to send for `origin` (Traefik also answers for an absent
    /// Origin when the list holds `*`).
    fn allowed_origin(&self, origin: &str) -> Option<String> {
        for item in &self.origins {
            if item == origin {
                return Some(item.clone());
            }
            if item == "*" {
                // The wildcard cannot be combined with credentials: echo the origin instead.
                return Some(if self.allow_credentials {
                    origin.to_owned()
                } else {
                    item.clone()
                });
            }
        }
        self.origin_patterns
            .iter()
            .any(|p| p.is_match(origin))
            .then(|| origin.to_owned())
    }

    fn expose_value(&self) -> Option<&HeaderValue> {
        if self.expose_headers.wildcard && self.allow_credentials {
            return None;
        }
        self.expose_headers.value.as_ref()
    }

    /// Answers a preflight request without involving the origin.
    fn preflight(
        &self,
        request: &HeaderMap,
        origin: &str,
        method: &HeaderValue,
    ) -> Response<ProxyBody> {
        let mut response = Response::new(empty());
        let headers = response.headers_mut();
        if self.allow_credentials {
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        if self.allow_headers.wildcard && self.allow_credentials {
            if let Some(asked) = request
                .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
                .filter(|v| !v.is_empty())
            {
                headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked.clone());
            }
        } else if let Some(list) = &self.allow_headers.value {
            headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, list.clone());
        }
        if self.allow_methods.wildcard && self.allow_credentials {
            headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, method.clone());
        } else if let Some(list) = &self.allow_methods.value {
            headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, list.clone());
        }
        if let Some(allowed) = self
            .allowed_origin(origin)
            .and_then(|o| HeaderValue::from_str(&o).ok())
        {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allowed);
        }
        if let Some(max_age) = &self.max_age {
            headers.insert(header::ACCESS_CONTROL_MAX_AGE, max_age.clone());
        }
        if let Some(expose) = self.expose_value() {
            headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, expose.clone());
        }
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        response
    }

    /// Adds the CORS headers to an ordinary answer.
    fn decorate(&self, headers: &mut HeaderMap, origin: &str) {
        if let Some(allowed) = self
            .allowed_origin(origin)
            .and_then(|o| HeaderValue::from_str(&o).ok())
        {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allowed);
        }
        if self.allow_credentials {
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        if let Some(expose) = self.expose_value() {
            headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, expose.clone());
        }
        if !self.add_vary {
            return;
        }
        // Traefik reads the first Vary value only and replaces them all.
        let current = headers
            .get(header::VARY)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default();
        if current == "Origin" {
            return;
        }
        let vary = if current.is_empty() {
            "Origin".to_owned()
        } else {
            format!("{current},Origin")
        };
        if let Ok(vary) = HeaderValue::from_str(&vary) {
            headers.insert(header::VARY, vary);
        }
    }
}

/// A Content-Security-Policy value, with `$NONCE` standing for a fresh nonce per request.
#[derive(Debug)]
enum Policy {
    Fixed(HeaderValue),
    /// The text before and after each nonce.
    WithNonce(Vec<String>),
}

impl Policy {
    fn new(field: &str, text: &str) -> Result<Option<Self>, MiddlewareError> {
        if text.is_empty() {
            return Ok(None);
        }
        // Go's template form `%[1]s` and the `$NONCE` shorthand both mean the bare nonce
        // (`$NONCE` inside quotes as `'nonce-…'`).
        let template = text.replace("$NONCE", "'nonce-%[1]s'");
        if template.contains("%[1]s") {
            value(field, &template.replace("%[1]s", "x"))?;
            return Ok(Some(Policy::WithNonce(
                template.split("%[1]s").map(str::to_owned).collect(),
            )));
        }
        Ok(Some(Policy::Fixed(value(field, text)?)))
    }

    fn render(&self, nonce: &str) -> Option<HeaderValue> {
        match self {
            Policy::Fixed(v) => Some(v.clone()),
            Policy::WithNonce(parts) => HeaderValue::from_str(&parts.join(nonce)).ok(),
        }
    }
}

/// The security options (Traefik's use of unrolled/secure).
#[derive(Debug)]
struct Secure {
    allowed_hosts: Vec<String>,
    hosts_proxy_headers: Vec<HeaderName>,
    ssl_proxy_headers: Vec<(HeaderName, String)>,
    /// The complete Strict-Transport-Security value, when `stsSeconds` is not 0.
    sts: Option<HeaderValue>,
    force_sts: bool,
    frame_options: Option<HeaderValue>,
    nosniff: bool,
    xss: Option<HeaderValue>,
    csp: Option<Policy>,
    csp_report_only: Option<Policy>,
    public_key: Option<HeaderValue>,
    referrer_policy: Option<HeaderValue>,
    permissions_policy: Option<HeaderValue>,
    development: bool,
}

const PUBLIC_KEY_PINS: HeaderName = HeaderName::from_static("public-key-pins");
const PERMISSIONS_POLICY: HeaderName = HeaderName::from_static("permissions-policy");

impl Secure {
    fn new(config: &HeadersConfig) -> Result<Self, MiddlewareError> {
        let sts = match config.sts_seconds.unwrap_or(0) {
            0 => None,
            seconds => {
                let mut text = format!("max-age={seconds}");
                if config.sts_include_subdomains {
                    text.push_str("; includeSubDomains");
                }
                if config.sts_preload {
                    text.push_str("; preload");
                }
                Some(value("stsSeconds", &text)?)
            }
        };
        let optional = |field: &str, text: &str| -> Result<Option<HeaderValue>, MiddlewareError> {
            if text.is_empty() {
                Ok(None)
            } else {
                value(field, text).map(Some)
            }
        };
        let frame_options = match optional(
            "customFrameOptionsValue",
            &config.custom_frame_options_value,
        )? {
            Some(v) => Some(v),
            None => config.frame_deny.then(|| HeaderValue::from_static("DENY")),
        };
        let xss = match optional("customBrowserXSSValue", &config.custom_browser_xss_value)? {
            Some(v) => Some(v),
            None => config
                .browser_xss_filter
                .then(|| HeaderValue::from_static("1; mode=block")),
        };
        Ok(Self {
            allowed_hosts: config.allowed_hosts.clone(),
            hosts_proxy_headers: config
                .hosts_proxy_headers
                .iter()
                .enumerate()
                .map(|(i, h)| name(&format!("hostsProxyHeaders[{i}]"), h))
                .collect::<Result<_, _>>()?,
            ssl_proxy_headers: config
                .ssl_proxy_headers
                .iter()
                .map(|(k, v)| Ok((name(&format!("sslProxyHeaders.{k}"), k)?, v.clone())))
                .collect::<Result<_, MiddlewareError>>()?,
            sts,
            force_sts: config.force_sts_header,
            frame_options,
            nosniff: config.content_type_nosniff,
            xss,
            csp: Policy::new("contentSecurityPolicy", &config.content_security_policy)?,
            csp_report_only: Policy::new(
                "contentSecurityPolicyReportOnly",
                &config.content_security_policy_report_only,
            )?,
            public_key: optional("publicKey", &config.public_key)?,
            referrer_policy: optional("referrerPolicy", &config.referrer_policy)?,
            permissions_policy: optional("permissionsPolicy", &config.permissions_policy)?,
            development: config.is_development,
        })
    }

    /// The host the request is for: the first non-empty `hostsProxyHeaders` header, else Host.
    fn host<'r>(&self, outgoing: &'r Outgoing) -> &'r [u8] {
        let headers = outgoing.request.headers();
        self.hosts_proxy_headers
            .iter()
            .find_map(|name| headers.get(name).filter(|v| !v.is_empty()))
            .map_or(outgoing.host.as_bytes(), HeaderValue::as_bytes)
    }

    fn host_allowed(&self, outgoing: &Outgoing) -> bool {
        if self.allowed_hosts.is_empty() || self.development {
            return true;
        }
        let host = self.host(outgoing);
        self.allowed_hosts
            .iter()
            .any(|allowed| allowed.as_bytes().eq_ignore_ascii_case(host))
    }

    /// Whether the request counts as HTTPS: TLS, an `https://` absolute target, or one of the
    /// `sslProxyHeaders` with its exact value.
    fn is_ssl(&self, connection: &Connection, outgoing: &Outgoing) -> bool {
        let uri = outgoing.request.uri();
        let absolute_https = outgoing.request.version() < Version::HTTP_2
            && uri
                .scheme_str()
                .is_some_and(|s| s.eq_ignore_ascii_case("https"));
        if connection.tls || absolute_https {
            return true;
        }
        let headers = outgoing.request.headers();
        self.ssl_proxy_headers.iter().any(|(name, expected)| {
            headers
                .get(name)
                .is_some_and(|v| v.as_bytes() == expected.as_bytes())
        })
    }

    /// The security headers for one response.
    fn response_headers(&self, ssl: bool) -> Vec<(HeaderName, HeaderValue)> {
        let mut out = Vec::with_capacity(8);
        if let Some(sts) = &self.sts {
            if (ssl || self.force_sts) && !self.development {
                out.push((header::STRICT_TRANSPORT_SECURITY, sts.clone()));
            }
        }
        if let Some(v) = &self.frame_options {
            out.push((header::X_FRAME_OPTIONS, v.clone()));
        }
        if self.nosniff {
            out.push((
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ));
        }
        if let Some(v) = &self.xss {
            out.push((header::X_XSS_PROTECTION, v.clone()));
        }
        if let Some(v) = &self.public_key {
            if ssl && !self.development {
                out.push((PUBLIC_KEY_PINS, v.clone()));
            }
        }
        let needs_nonce = matches!(self.csp, Some(Policy::WithNonce(_)))
            || matches!(self.csp_report_only, Some(Policy::WithNonce(_)));
        let nonce = if needs_nonce {
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(rand::random::<[u8; 16]>())
        } else {
            String::new()
        };
        if let Some(v) = self.csp.as_ref().and_then(|p| p.render(&nonce)) {
            out.push((header::CONTENT_SECURITY_POLICY, v));
        }
        if let Some(v) = self.csp_report_only.as_ref().and_then(|p| p.render(&nonce)) {
            out.push((header::CONTENT_SECURITY_POLICY_REPORT_ONLY, v));
        }
        if let Some(v) = &self.referrer_policy {
            out.push((header::REFERRER_POLICY, v.clone()));
        }
        if let Some(v) = &self.permissions_policy {
            out.push((PERMISSIONS_POLICY, v.clone()));
        }
        out
    }
}

/// The compiled middleware.
#[derive(Debug)]
struct Headers {
    request: Vec<RequestEdit>,
    /// `None` removes the header.
    response: Vec<(HeaderName, Option<HeaderValue>)>,
    cors: Option<Cors>,
    secure: Option<Secure>,
}

impl Headers {
    fn new(config: HeadersConfig) -> Result<Self, MiddlewareError> {
        let (custom, cors, secure) = (config.has_custom(), config.has_cors(), config.has_secure());
        if !custom && !cors && !secure {
            return Err(MiddlewareError::new(
                "",
                "headers configuration not valid: it sets nothing",
            ));
        }
        for (field, set) in [
            ("featurePolicy", config.feature_policy.is_some()),
            ("sslRedirect", config.ssl_redirect.is_some()),
            (
                "sslTemporaryRedirect",
                config.ssl_temporary_redirect.is_some(),
            ),
            ("sslHost", config.ssl_host.is_some()),
            ("sslForceHost", config.ssl_force_host.is_some()),
        ] {
            if set {
                tracing::warn!(
                    "headers: `{field}` is deprecated and has no effect (as in Traefik v3)"
                );
            }
        }
        let request = config
            .custom_request_headers
            .iter()
            .map(|(k, v)| {
                let field = format!("customRequestHeaders.{k}");
                let header = name(&field, k)?;
                Ok(if v.is_empty() {
                    RequestEdit::Remove(header)
                } else if header == header::HOST {
                    RequestEdit::Host(value(&field, v)?)
                } else {
                    RequestEdit::Set(header, value(&field, v)?)
                })
            })
            .collect::<Result<_, MiddlewareError>>()?;
        let response = config
            .custom_response_headers
            .iter()
            .map(|(k, v)| {
                let field = format!("customResponseHeaders.{k}");
                let header = name(&field, k)?;
                Ok((
                    header,
                    if v.is_empty() {
                        None
                    } else {
                        Some(value(&field, v)?)
                    },
                ))
            })
            .collect::<Result<_, MiddlewareError>>()?;
        let cors = if cors {
            Some(Cors {
                allow_credentials: config.access_control_allow_credentials,
                allow_headers: Joined::new(
                    "accessControlAllowHeaders",
                    &config.access_control_allow_headers,
                )?,
                allow_methods: Joined::new(
                    "accessControlAllowMethods",
                    &config.access_control_allow_methods,
                )?,
                origins: config.access_control_allow_origin_list.clone(),
                origin_patterns: config
                    .access_control_allow_origin_list_regex
                    .iter()
                    .enumerate()
                    .map(|(i, r)| {
                        regex::Regex::new(r).map_err(|e| {
                            MiddlewareError::new(
                                format!("accessControlAllowOriginListRegex[{i}]"),
                                format!("invalid regular expression: {e}"),
                            )
                        })
                    })
                    .collect::<Result<_, _>>()?,
                expose_headers: Joined::new(
                    "accessControlExposeHeaders",
                    &config.access_control_expose_headers,
                )?,
                max_age: config.access_control_max_age.map(HeaderValue::from),
                add_vary: config.add_vary_header,
            })
        } else {
            None
        };
        let secure = if secure {
            Some(Secure::new(&config)?)
        } else {
            None
        };
        Ok(Self {
            request,
            response,
            cors,
            secure,
        })
    }

    fn edit_request(&self, outgoing: &mut Outgoing) {
        for edit in &self.request {
            match edit {
                RequestEdit::Remove(name) => {
                    outgoing.request.headers_mut().remove(name);
                }
                RequestEdit::Set(name, value) => {
                    outgoing
                        .request
                        .headers_mut()
                        .insert(name.clone(), value.clone());
                }
                RequestEdit::Host(value) => outgoing.host = value.clone(),
            }
        }
    }

    /// The outer layer's work on the answer: custom response headers, then CORS.
    fn edit_response(&self, headers: &mut HeaderMap, origin: &str) {
        for (name, value) in &self.response {
            match value {
                Some(value) => {
                    headers.insert(name.clone(), value.clone());
                }
                None => {
                    headers.remove(name);
                }
            }
        }
        if let Some(cors) = &self.cors {
            cors.decorate(headers, origin);
        }
    }
}

fn header_text(headers: &HeaderMap, name: HeaderName) -> String {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default()
}

impl Middleware for Headers {
    fn handle<'a>(
        &'a self,
        connection: &'a Connection,
        mut outgoing: Outgoing,
        next: Next<'a>,
    ) -> Answer<'a> {
        if let Some(cors) = &self.cors {
            let headers = outgoing.request.headers();
            let method = headers
                .get(header::ACCESS_CONTROL_REQUEST_METHOD)
                .filter(|v| !v.is_empty());
            let origin = header_text(headers, header::ORIGIN);
            if let Some(method) = method {
                if !origin.is_empty() && outgoing.request.method() == Method::OPTIONS {
                    let response = cors.preflight(headers, &origin, method);
                    return Box::pin(async move { Ok(response) });
                }
            }
        }
        self.edit_request(&mut outgoing);
        // CORS answers for the Origin as it is sent upstream, after the custom headers.
        let origin = header_text(outgoing.request.headers(), header::ORIGIN);
        Box::pin(async move {
            let mut response = match &self.secure {
                None => next.run(outgoing).await?,
                Some(secure) if !secure.host_allowed(&outgoing) => {
                    plain_error(StatusCode::INTERNAL_SERVER_ERROR, "Bad Host")
                }
                Some(secure) => {
                    let added = secure.response_headers(secure.is_ssl(connection, &outgoing));
                    let mut response = next.run(outgoing).await?;
                    let headers = response.headers_mut();
                    for (name, value) in added {
                        headers.insert(name, value);
                    }
                    response
                }
            };
            self.edit_response(response.headers_mut(), &origin);
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: Value) -> Result<Headers, MiddlewareError> {
        Headers::new(parse(&json)?)
    }

    #[test]
    fn refuses_typos_and_empty_configurations() {
        let typo = config(serde_json::json!({"frameDenny": true})).unwrap_err();
        assert!(typo.message.contains("frameDenny"), "{typo}");
        assert!(config(serde_json::json!({})).is_err());
        assert!(config(serde_json::json!({"customRequestHeaders": {}})).is_err());
        let bad =
            config(serde_json::json!({"accessControlAllowOriginListRegex": ["("]})).unwrap_err();
        assert_eq!(bad.field, "accessControlAllowOriginListRegex[0]");
        let bad =
            config(serde_json::json!({"customRequestHeaders": {"Bad Name": "x"}})).unwrap_err();
        assert_eq!(bad.field, "customRequestHeaders.Bad Name");
    }

    #[test]
    fn accepts_traefik_spellings_and_v2_fields() {
        let h = config(serde_json::json!({
            "forceSTSHeader": true, "stsSeconds": 10, "customBrowserXSSValue": "0",
            "sslRedirect": true, "sslHost": "a.test", "featurePolicy": "x", "sslForceHost": true,
            "sslTemporaryRedirect": false, "customRequestHeaders": {"X-Num": 5, "X-Off": null}
        }))
        .unwrap();
        let secure = h.secure.as_ref().unwrap();
        let names: Vec<_> = secure
            .response_headers(false)
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(
            names,
            vec![header::STRICT_TRANSPORT_SECURITY, header::X_XSS_PROTECTION]
        );
        assert!(matches!(&h.request[0], RequestEdit::Set(_, v) if v == "5"));
        assert!(matches!(&h.request[1], RequestEdit::Remove(_)));
    }

    #[test]
    fn origin_matching_follows_traefik() {
        let h = config(serde_json::json!({
            "accessControlAllowOriginList": ["https://a.test", "*"],
            "accessControlAllowCredentials": true
        }))
        .unwrap();
        let cors = h.cors.as_ref().unwrap();
        assert_eq!(
            cors.allowed_origin("https://a.test").as_deref(),
            Some("https://a.test")
        );
        assert_eq!(
            cors.allowed_origin("https://b.test").as_deref(),
            Some("https://b.test")
        );
        let h = config(serde_json::json!({
            "accessControlAllowOriginListRegex": ["^https://.*\\.example\\.com$"]
        }))
        .unwrap();
        let cors = h.cors.as_ref().unwrap();
        assert_eq!(
            cors.allowed_origin("https://x.example.com").as_deref(),
            Some("https://x.example.com")
        );
        assert_eq!(cors.allowed_origin("https://example.org"), None);
    }

    #[test]
    fn nonce_policies_change_per_response() {
        let h = config(serde_json::json!({"contentSecurityPolicy": "script-src $NONCE"})).unwrap();
        let secure = h.secure.as_ref().unwrap();
        let first = secure.response_headers(false)[0].1.clone();
        let second = secure.response_headers(false)[0].1.clone();
        let text = first.to_str().unwrap();
        assert!(
            text.starts_with("script-src 'nonce-") && text.ends_with('\''),
            "{text}"
        );
        assert_ne!(first, second);
    }
}
