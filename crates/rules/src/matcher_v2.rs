//! The v2 HTTP matchers (`ruleSyntax: v2`): multi-argument forms and gorilla/mux templates.

use http::HeaderName;
use ipnet::IpNet;
use regex::Regex;

use crate::matcher::{
    canonical_name, check_common, client_ip_in, header_any, header_name, non_ascii, parse_ip_range,
    unsupported,
};
use crate::parser::Call;
use crate::request::RequestInfo;
use crate::template::{self, Kind};
use crate::{goregex, query, RuleError};

const V2_NAMES: &[&str] = &[
    "Host",
    "HostHeader",
    "HostRegexp",
    "Path",
    "PathPrefix",
    "Method",
    "Headers",
    "HeadersRegexp",
    "Query",
    "ClientIP",
];

/// A compiled v2 matcher. Lists are OR-ed, except header and query pairs, which must all match.
#[derive(Clone, Debug)]
pub(crate) enum MatcherV2 {
    /// Lower-cased hosts, compared exactly (one trailing dot tolerated on either side).
    Host(Vec<String>),
    /// Host templates, each with whether the request's port must be stripped before matching.
    HostRegexp(Vec<(Regex, bool)>),
    /// Path templates (anchored at both ends) or prefix templates (anchored at the start).
    Path(Vec<Regex>),
    Method(Vec<String>),
    /// Every (name, value) must be present; an empty value only requires presence.
    Headers(Vec<(Option<HeaderName>, String)>),
    HeadersRegexp(Vec<(Option<HeaderName>, Regex)>),
    /// (raw key, template regex over `key=value`), all must match.
    Query(Vec<(String, Regex)>),
    ClientIp(Vec<IpNet>),
}

impl MatcherV2 {
    /// Validates a call against the v2 matcher set and compiles it.
    pub(crate) fn compile(call: &Call) -> Result<MatcherV2, RuleError> {
        let name = canonical_name(&call.name, V2_NAMES).ok_or_else(|| unsupported(call))?;
        check_common(call, name)?;
        let args = &call.args;
        let fail = |i: usize, msg: String| RuleError {
            column: args[i].column,
            message: msg,
        };
        Ok(match name {
            "Host" | "HostHeader" => {
                let mut hosts = Vec::with_capacity(args.len());
                for (i, a) in args.iter().enumerate() {
                    if !a.value.is_ascii() {
                        return Err(fail(i, non_ascii(name, &a.value)));
                    }
                    hosts.push(a.value.to_ascii_lowercase());
                }
                MatcherV2::Host(hosts)
            }
            "HostRegexp" => {
                let mut res = Vec::with_capacity(args.len());
                for (i, a) in args.iter().enumerate() {
                    if !a.value.is_ascii() {
                        return Err(fail(i, non_ascii(name, &a.value)));
                    }
                    let re = template::compile(&a.value, Kind::Host)
                        .map_err(|e| fail(i, format!("{name}: {e}")))?;
                    res.push((re, template::ignores_port(&a.value)));
                }
                MatcherV2::HostRegexp(res)
            }
            "Path" | "PathPrefix" => {
                let kind = if name == "Path" {
                    Kind::Path
                } else {
                    Kind::PathPrefix
                };
                let mut res = Vec::with_capacity(args.len());
                for (i, a) in args.iter().enumerate() {
                    if !a.value.starts_with('/') {
                        return Err(fail(
                            i,
                            format!("{name}: path {:?} must start with a slash", a.value),
                        ));
                    }
                    let re = template::compile(&a.value, kind)
                        .map_err(|e| fail(i, format!("{name}: {e}")))?;
                    res.push(re);
                }
                MatcherV2::Path(res)
            }
            "Method" => MatcherV2::Method(args.iter().map(|a| a.value.to_uppercase()).collect()),
            "Headers" | "HeadersRegexp" => {
                if args.len() % 2 == 1 {
                    return Err(RuleError {
                        column: call.column,
                        message: format!(
                            "{name}: expects name/value pairs, got {} argument(s)",
                            args.len()
                        ),
                    });
                }
                if name == "Headers" {
                    MatcherV2::Headers(
                        args.chunks(2)
                            .map(|p| (header_name(&p[0].value), p[1].value.clone()))
                            .collect(),
                    )
                } else {
                    let mut pairs = Vec::with_capacity(args.len() / 2);
                    for (k, pair) in args.chunks(2).enumerate() {
                        let re = goregex::compile(&pair[1].value)
                            .map_err(|e| fail(2 * k + 1, format!("{name}: {e}")))?;
                        pairs.push((header_name(&pair[0].value), re));
                    }
                    MatcherV2::HeadersRegexp(pairs)
                }
            }
            "Query" => {
                // Each argument is split at its first '='; the pieces are then read as
                // key, value, key, value... exactly as gorilla's Queries does.
                let pieces: Vec<&str> = args
                    .iter()
                    .flat_map(|a| {
                        let (k, v) = match a.value.split_once('=') {
                            Some((k, v)) => (k, Some(v)),
                            None => (a.value.as_str(), None),
                        };
                        std::iter::once(k).chain(v)
                    })
                    .collect();
                if pieces.len() % 2 == 1 {
                    return Err(RuleError {
                        column: call.column,
                        message: format!("{name}: expects key=value pairs"),
                    });
                }
                let mut pairs = Vec::with_capacity(pieces.len() / 2);
                for pair in pieces.chunks(2) {
                    let tpl = format!("{}={}", pair[0], pair[1]);
                    let re = template::compile(&tpl, Kind::Query).map_err(|e| RuleError {
                        column: call.column,
                        message: format!("{name}: {e}"),
                    })?;
                    let key = tpl.split('=').next().unwrap_or_default().to_string();
                    pairs.push((key, re));
                }
                MatcherV2::Query(pairs)
            }
            "ClientIP" => {
                let mut nets = Vec::with_capacity(args.len());
                for (i, a) in args.iter().enumerate() {
                    nets.push(parse_ip_range(&a.value).map_err(|m| fail(i, m))?);
                }
                MatcherV2::ClientIp(nets)
            }
            _ => return Err(unsupported(call)),
        })
    }

    pub(crate) fn matches(&self, req: &RequestInfo<'_>) -> bool {
        match self {
            MatcherV2::Host(hosts) => {
                let host = req.host;
                if host.is_empty() {
                    return false;
                }
                let trimmed_req = host.strip_suffix('.').unwrap_or(host);
                hosts.iter().any(|h| {
                    host == h
                        || h.strip_suffix('.') == Some(host)
                        || (host.ends_with('.') && trimmed_req == h)
                })
            }
            MatcherV2::HostRegexp(res) => res.iter().any(|(re, strip_port)| {
                let host = if *strip_port {
                    req.raw_host
                        .find(':')
                        .map_or(req.raw_host, |i| &req.raw_host[..i])
                } else {
                    req.raw_host
                };
                re.is_match(host)
            }),
            MatcherV2::Path(res) => res.iter().any(|re| re.is_match(req.path)),
            MatcherV2::Method(methods) => methods.iter().any(|m| m == req.method),
            MatcherV2::Headers(pairs) => pairs.iter().all(|(name, value)| {
                header_any(req, name, |v| value.is_empty() || v == value.as_bytes())
            }),
            MatcherV2::HeadersRegexp(pairs) => pairs.iter().all(|(name, re)| {
                header_any(req, name, |v| re.is_match(&String::from_utf8_lossy(v)))
            }),
            MatcherV2::Query(pairs) => pairs.iter().all(|(key, re)| {
                // gorilla matches the template against "key=<first value>", or "" when absent.
                match query::first_value(req.query, key) {
                    Some(v) => re.is_match(&format!("{key}={v}")),
                    None => re.is_match(""),
                }
            }),
            MatcherV2::ClientIp(nets) => client_ip_in(req.client_ip, nets),
        }
    }

    pub(crate) fn literal_hosts(&self) -> Option<Vec<String>> {
        match self {
            MatcherV2::Host(hosts) if hosts.iter().all(|h| !h.contains('*')) => Some(
                hosts
                    .iter()
                    .map(|h| h.strip_suffix('.').unwrap_or(h).to_string())
                    .collect(),
            ),
            _ => None,
        }
    }

    pub(crate) fn hosts(&self) -> Vec<String> {
        match self {
            MatcherV2::Host(hosts) => hosts.clone(),
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{RequestInfo, Rule, Syntax};
    use http::HeaderMap;

    fn v2(text: &str) -> Rule {
        Rule::parse(text, Syntax::V2).unwrap()
    }

    fn req<'a>(
        host: &'a str,
        path: &'a str,
        query: &'a str,
        headers: &'a HeaderMap,
    ) -> RequestInfo<'a> {
        RequestInfo {
            method: "GET",
            host,
            raw_host: host,
            path,
            query,
            headers,
            client_ip: None,
        }
    }

    #[test]
    fn hosts() {
        let h = HeaderMap::new();
        let r = v2("Host(`a.com`, `B.com.`)");
        assert!(r.matches(&req("a.com", "/", "", &h)));
        assert!(r.matches(&req("b.com", "/", "", &h)));
        assert!(r.matches(&req("a.com.", "/", "", &h)));
        assert!(!r.matches(&req("c.com", "/", "", &h)));
        assert!(!v2("Host(`*.a.com`)").matches(&req("x.a.com", "/", "", &h)));
        assert!(v2("HostHeader(`a.com`)").matches(&req("a.com", "/", "", &h)));
        assert!(Rule::parse("Host(`à.com`)", Syntax::V2).is_err());
    }

    #[test]
    fn host_regexp_uses_raw_host() {
        let h = HeaderMap::new();
        let r = v2("HostRegexp(`{sub:[a-z]+}.a.com`, `b.com`)");
        let mut info = req("", "/", "", &h);
        info.raw_host = "WWW.a.com:8080";
        assert!(r.matches(&info));
        info.raw_host = "b.com";
        assert!(r.matches(&info));
        info.raw_host = "bxcom";
        assert!(!r.matches(&info));
        let with_port = v2("HostRegexp(`b.com:{port:[0-9]+}`)");
        info.raw_host = "b.com:80";
        assert!(with_port.matches(&info));
    }

    #[test]
    fn paths() {
        let h = HeaderMap::new();
        let r = v2("Path(`/a`, `/b/{id:[0-9]+}`)");
        assert!(r.matches(&req("", "/a", "", &h)));
        assert!(r.matches(&req("", "/b/12", "", &h)));
        assert!(!r.matches(&req("", "/b/x", "", &h)));
        let p = v2("PathPrefix(`/css-{n:[0-9]?}`)");
        assert!(p.matches(&req("", "/css-222/x", "", &h)));
        assert!(!p.matches(&req("", "/css.css", "", &h)));
        assert!(Rule::parse("Path(`a`)", Syntax::V2).is_err());
    }

    #[test]
    fn headers_and_query() {
        let mut h = HeaderMap::new();
        h.insert("content-type", "application/json".parse().unwrap());
        h.insert("x-a", "1".parse().unwrap());
        assert!(v2("Headers(`Content-Type`, `application/json`)").matches(&req("", "/", "", &h)));
        assert!(
            v2("Headers(`Content-Type`, `application/json`, `X-A`, `1`)")
                .matches(&req("", "/", "", &h))
        );
        assert!(
            !v2("Headers(`Content-Type`, `application/json`, `X-A`, `2`)")
                .matches(&req("", "/", "", &h))
        );
        assert!(v2("HeadersRegexp(`Content-Type`, `json`)").matches(&req("", "/", "", &h)));
        assert!(Rule::parse("Headers(`a`)", Syntax::V2).is_err());
        assert!(Rule::parse("HeadersRegexp(`a`, `(`)", Syntax::V2).is_err());

        let q = v2("Query(`foo=bar`, `bar=baz`)");
        assert!(q.matches(&req("", "/", "foo=bar&bar=baz", &h)));
        assert!(!q.matches(&req("", "/", "bar=baz", &h)));
        assert!(v2("Query(`foo=b=ar`)").matches(&req("", "/", "foo=b=ar", &h)));
        assert!(v2("Query(`foo={v:[0-9]+}`)").matches(&req("", "/", "foo=12", &h)));
        assert!(v2("Query(`foo=`)").matches(&req("", "/", "foo=x", &h)));
        assert!(Rule::parse("Query(`foo`)", Syntax::V2).is_err());
    }

    #[test]
    fn methods_and_ips() {
        let h = HeaderMap::new();
        let mut info = req("", "/", "", &h);
        info.method = "POST";
        assert!(v2("Method(`get`, `post`)").matches(&info));
        info.client_ip = Some("10.0.0.5".parse().unwrap());
        assert!(v2("ClientIP(`11.0.0.0/16`, `10.0.0.0/16`)").matches(&info));
        assert!(!v2("ClientIP(`11.0.0.0/16`)").matches(&info));
        assert!(Rule::parse("ClientIP(`invalid`)", Syntax::V2).is_err());
    }

    #[test]
    fn v3_only_matchers_are_unknown() {
        for t in ["Header(`a`, `b`)", "PathRegexp(`/`)", "QueryRegexp(`a`)"] {
            assert_eq!(Rule::parse(t, Syntax::V2).unwrap_err().column, 1, "{t}");
        }
    }
}
