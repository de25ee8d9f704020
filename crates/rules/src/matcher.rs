//! The v3 HTTP matchers: argument validation at parse time and matching per request.

use std::net::IpAddr;

use http::HeaderName;
use ipnet::IpNet;
use regex::Regex;

use crate::parser::Call;
use crate::request::RequestInfo;
use crate::{goregex, query, RuleError};

/// Names of the v3 matchers, in their canonical spelling.
const V3_NAMES: &[&str] = &[
    "Host",
    "HostRegexp",
    "Path",
    "PathPrefix",
    "PathRegexp",
    "Method",
    "Header",
    "HeaderRegexp",
    "Query",
    "QueryRegexp",
    "ClientIP",
];

/// A compiled v3 matcher (one leaf of a rule).
#[derive(Clone, Debug)]
pub(crate) enum Matcher {
    /// `Host(`*`)`: matches every request, even one without a host.
    HostAny,
    Host(HostPattern),
    HostRegexp(Regex),
    Path(String),
    PathPrefix(String),
    PathRegexp(Regex),
    Method(String),
    Header {
        name: Option<HeaderName>,
        value: String,
    },
    HeaderRegexp {
        name: Option<HeaderName>,
        re: Regex,
    },
    /// `Query(k)` is `Query(k, "")`.
    Query {
        key: String,
        value: String,
    },
    QueryRegexp {
        key: String,
        re: Regex,
    },
    ClientIp(IpNet),
}

/// A `Host` argument, lower-cased with one trailing dot removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum HostPattern {
    Exact(String),
    /// The argument started with `*`; holds the text after the `*` (normally `.example.com`).
    /// The first label of the request host is replaced by `*` and the rest compared.
    Wildcard(String),
}

impl HostPattern {
    pub(crate) fn new(arg: &str) -> HostPattern {
        let lower = arg.to_ascii_lowercase();
        let trimmed = lower.strip_suffix('.').unwrap_or(&lower).to_string();
        match trimmed.strip_prefix('*') {
            Some(rest) => HostPattern::Wildcard(rest.to_string()),
            None => HostPattern::Exact(trimmed),
        }
    }

    pub(crate) fn matches(&self, host: &str) -> bool {
        if host.is_empty() {
            return false;
        }
        let host = host.strip_suffix('.').unwrap_or(host);
        match self {
            HostPattern::Exact(want) => host.eq_ignore_ascii_case(want),
            HostPattern::Wildcard(suffix) => match host.find('.') {
                Some(dot) => host[dot..].eq_ignore_ascii_case(suffix),
                None => false,
            },
        }
    }

    /// The form used for host indexing, when the pattern is a plain name or a one-label wildcard.
    pub(crate) fn literal(&self) -> Option<String> {
        match self {
            HostPattern::Exact(h) => Some(h.clone()),
            HostPattern::Wildcard(s) if s.len() > 1 && s.starts_with('.') && !s.contains('*') => {
                Some(format!("*{s}"))
            }
            HostPattern::Wildcard(_) => None,
        }
    }
}

impl Matcher {
    /// Validates a call against the v3 matcher set and compiles it.
    pub(crate) fn compile(call: &Call) -> Result<Matcher, RuleError> {
        let name = canonical_name(&call.name, V3_NAMES).ok_or_else(|| unsupported(call))?;
        check_common(call, name)?;
        let args = &call.args;
        let arg = |i: usize| args[i].value.as_str();
        let fail = |i: usize, msg: String| RuleError {
            column: args[i].column,
            message: msg,
        };
        let regex =
            |i: usize| goregex::compile(arg(i)).map_err(|e| fail(i, format!("{name}: {e}")));
        Ok(match name {
            "Host" => {
                arity(call, name, 1, 1)?;
                if !arg(0).is_ascii() {
                    return Err(fail(0, non_ascii(name, arg(0))));
                }
                if arg(0) == "*" {
                    Matcher::HostAny
                } else {
                    Matcher::Host(HostPattern::new(arg(0)))
                }
            }
            "HostRegexp" => {
                arity(call, name, 1, 1)?;
                if !arg(0).is_ascii() {
                    return Err(fail(0, non_ascii(name, arg(0))));
                }
                Matcher::HostRegexp(regex(0)?)
            }
            "Path" | "PathPrefix" => {
                arity(call, name, 1, 1)?;
                if !arg(0).starts_with('/') {
                    return Err(fail(
                        0,
                        format!("{name}: path {:?} must start with /", arg(0)),
                    ));
                }
                if name == "Path" {
                    Matcher::Path(arg(0).to_string())
                } else {
                    Matcher::PathPrefix(arg(0).to_string())
                }
            }
            "PathRegexp" => {
                arity(call, name, 1, 1)?;
                Matcher::PathRegexp(regex(0)?)
            }
            "Method" => {
                arity(call, name, 1, 1)?;
                Matcher::Method(arg(0).to_uppercase())
            }
            "Header" => {
                arity(call, name, 2, 2)?;
                Matcher::Header {
                    name: header_name(arg(0)),
                    value: arg(1).to_string(),
                }
            }
            "HeaderRegexp" => {
                arity(call, name, 2, 2)?;
                Matcher::HeaderRegexp {
                    name: header_name(arg(0)),
                    re: regex(1)?,
                }
            }
            "Query" => {
                arity(call, name, 1, 2)?;
                Matcher::Query {
                    key: arg(0).to_string(),
                    value: args.get(1).map(|a| a.value.clone()).unwrap_or_default(),
                }
            }
            "QueryRegexp" => {
                arity(call, name, 1, 2)?;
                if args.len() == 1 {
                    Matcher::Query {
                        key: arg(0).to_string(),
                        value: String::new(),
                    }
                } else {
                    Matcher::QueryRegexp {
                        key: arg(0).to_string(),
                        re: regex(1)?,
                    }
                }
            }
            "ClientIP" => {
                arity(call, name, 1, 1)?;
                Matcher::ClientIp(parse_ip_range(arg(0)).map_err(|m| fail(0, m))?)
            }
            _ => return Err(unsupported(call)),
        })
    }

    pub(crate) fn matches(&self, req: &RequestInfo<'_>) -> bool {
        match self {
            Matcher::HostAny => true,
            Matcher::Host(pattern) => pattern.matches(req.host),
            Matcher::HostRegexp(re) => re.is_match(req.host),
            Matcher::Path(p) => req.path == p,
            Matcher::PathPrefix(p) => req.path.starts_with(p.as_str()),
            Matcher::PathRegexp(re) => re.is_match(req.path),
            Matcher::Method(m) => req.method == m,
            Matcher::Header { name, value } => header_any(req, name, |v| v == value.as_bytes()),
            Matcher::HeaderRegexp { name, re } => {
                header_any(req, name, |v| re.is_match(&String::from_utf8_lossy(v)))
            }
            Matcher::Query { key, value } => {
                query::any_pair(req.query, |k, v| k == key && v == value)
            }
            Matcher::QueryRegexp { key, re } => {
                query::any_pair(req.query, |k, v| k == key && re.is_match(v))
            }
            Matcher::ClientIp(net) => client_ip_in(req.client_ip, std::slice::from_ref(net)),
        }
    }

    /// Hosts this leaf restricts a request to, when used without negation.
    pub(crate) fn literal_hosts(&self) -> Option<Vec<String>> {
        match self {
            Matcher::Host(p) => p.literal().map(|h| vec![h]),
            _ => None,
        }
    }

    /// Host names this leaf mentions (for TLS domain collection). The catch-all `*` names no
    /// host, so it is left out.
    pub(crate) fn hosts(&self) -> Vec<String> {
        match self {
            Matcher::Host(HostPattern::Exact(h)) => vec![h.clone()],
            Matcher::Host(HostPattern::Wildcard(s)) => vec![format!("*{s}")],
            _ => Vec::new(),
        }
    }
}

/// Resolves one of the four accepted spellings of a matcher name (exact, lower, UPPER, and
/// Title-of-lowercase) to its canonical name.
pub(crate) fn canonical_name(name: &str, known: &[&'static str]) -> Option<&'static str> {
    known.iter().copied().find(|k| {
        if name == *k {
            return true;
        }
        let lower = k.to_lowercase();
        if name == lower || name == k.to_uppercase() {
            return true;
        }
        let mut title = String::with_capacity(lower.len());
        let mut chars = lower.chars();
        if let Some(first) = chars.next() {
            title.extend(first.to_uppercase());
            title.push_str(chars.as_str());
        }
        name == title
    })
}

pub(crate) fn unsupported(call: &Call) -> RuleError {
    RuleError {
        column: call.column,
        message: format!("unsupported matcher {:?}", call.name),
    }
}

/// Checks every matcher gets: at least one argument and no empty argument.
pub(crate) fn check_common(call: &Call, name: &str) -> Result<(), RuleError> {
    if call.args.is_empty() {
        return Err(RuleError {
            column: call.column,
            message: format!("{name}: no arguments given"),
        });
    }
    if let Some(empty) = call.args.iter().find(|a| a.value.is_empty()) {
        return Err(RuleError {
            column: empty.column,
            message: format!("{name}: empty argument"),
        });
    }
    Ok(())
}

/// Argument count check, `max == usize::MAX` meaning unbounded.
pub(crate) fn arity(call: &Call, name: &str, min: usize, max: usize) -> Result<(), RuleError> {
    let n = call.args.len();
    if n >= min && n <= max {
        return Ok(());
    }
    let expected = if min == max {
        format!("exactly {min}")
    } else if max == usize::MAX {
        format!("at least {min}")
    } else {
        format!("{min} to {max}")
    };
    // Point at the first surplus argument when there are too many, else at the name.
    let column = if n > max {
        call.args[max].column
    } else {
        call.column
    };
    Err(RuleError {
        column,
        message: format!("{name}: expects {expected} argument(s), got {n}"),
    })
}

pub(crate) fn non_ascii(name: &str, value: &str) -> String {
    format!("{name}: non-ASCII characters are not allowed in {value:?} (use punycode)")
}

/// Header names that cannot exist on the wire yield `None`, which never matches.
pub(crate) fn header_name(key: &str) -> Option<HeaderName> {
    HeaderName::from_bytes(key.as_bytes()).ok()
}

/// Whether any value of the header satisfies `pred` (each header line is one value).
pub(crate) fn header_any(
    req: &RequestInfo<'_>,
    name: &Option<HeaderName>,
    mut pred: impl FnMut(&[u8]) -> bool,
) -> bool {
    match name {
        Some(name) => req.headers.get_all(name).iter().any(|v| pred(v.as_bytes())),
        None => false,
    }
}

/// Parses an IP address or CIDR block, as Traefik's ClientIP accepts them.
pub(crate) fn parse_ip_range(text: &str) -> Result<IpNet, String> {
    if text.contains('/') {
        let net: IpNet = text
            .parse()
            .map_err(|_| format!("ClientIP: invalid CIDR {text:?}"))?;
        return Ok(net);
    }
    let ip: IpAddr = text
        .parse()
        .map_err(|_| format!("ClientIP: invalid IP address {text:?}"))?;
    Ok(IpNet::from(unmap(ip)))
}

/// Go treats an IPv4-mapped IPv6 address as the IPv4 address.
fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

pub(crate) fn client_ip_in(ip: Option<IpAddr>, nets: &[IpNet]) -> bool {
    match ip {
        Some(ip) => {
            let ip = unmap(ip);
            nets.iter().any(|n| n.contains(&ip))
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Rule, Syntax};
    use http::HeaderMap;

    pub(crate) struct Req {
        pub method: &'static str,
        pub host: &'static str,
        pub path: &'static str,
        pub query: &'static str,
        pub headers: HeaderMap,
        pub ip: Option<IpAddr>,
    }

    impl Req {
        pub fn new() -> Req {
            Req {
                method: "GET",
                host: "example.com",
                path: "/",
                query: "",
                headers: HeaderMap::new(),
                ip: None,
            }
        }
        pub fn info(&self) -> RequestInfo<'_> {
            RequestInfo {
                method: self.method,
                host: self.host,
                raw_host: self.host,
                path: self.path,
                query: self.query,
                headers: &self.headers,
                client_ip: self.ip,
            }
        }
    }

    fn rule(text: &str) -> Rule {
        Rule::parse(text, Syntax::V3).unwrap()
    }

    fn host_matches(rule_text: &str, host: &'static str) -> bool {
        let mut r = Req::new();
        r.host = host;
        rule(rule_text).matches(&r.info())
    }

    #[test]
    fn host() {
        assert!(host_matches("Host(`example.com`)", "example.com"));
        assert!(host_matches("Host(`EXAMPLE.com`)", "example.com"));
        assert!(host_matches("Host(`example.com.`)", "example.com"));
        assert!(host_matches("Host(`example.com`)", "example.com."));
        assert!(!host_matches("Host(`example.com`)", "example.org"));
        assert!(!host_matches("Host(`example.com`)", ""));
        assert!(!host_matches("Host(`a.com:8080`)", "a.com"));
        assert!(host_matches("Host(`*`)", ""));
        assert!(host_matches("Host(`*.example.com`)", "a.example.com"));
        assert!(!host_matches("Host(`*.example.com`)", "a.b.example.com"));
        assert!(!host_matches("Host(`*.example.com`)", "example.com"));
        assert!(!host_matches("Host(`*.example.com`)", "aexample.com"));
        assert!(!host_matches("Host(`*example.com`)", "aexample.com"));
        assert!(host_matches("Host(`10::10`)", "10::10"));
        assert!(Rule::parse("Host(`🦭.com`)", Syntax::V3).is_err());
        assert!(Rule::parse("Host(`a`, `b`)", Syntax::V3).is_err());
    }

    #[test]
    fn host_regexp() {
        assert!(host_matches(r"HostRegexp(`^[a-z-]+\.com$`)", "example.com"));
        assert!(!host_matches(r"HostRegexp(`^[A-Z]+\.com$`)", "example.com"));
        assert!(host_matches(r"HostRegexp(`example`)", "www.example.org"));
        assert!(!host_matches(
            r"HostRegexp(`{d:[a-z]+}\.com`)",
            "example.com"
        ));
        assert!(Rule::parse("HostRegexp(`(a`)", Syntax::V3).is_err());
    }

    fn path_matches(rule_text: &str, path: &'static str) -> bool {
        let mut r = Req::new();
        r.path = path;
        rule(rule_text).matches(&r.info())
    }

    #[test]
    fn paths() {
        assert!(path_matches("Path(`/css`)", "/css"));
        assert!(!path_matches("Path(`/css`)", "/css/"));
        assert!(path_matches("PathPrefix(`/api`)", "/apiv2"));
        assert!(!path_matches("PathPrefix(`/api`)", "/ap"));
        assert!(path_matches("PathRegexp(`^/(css|js)`)", "/js/x"));
        assert!(!path_matches("PathRegexp(`^/(css|js)`)", "/CSS"));
        assert!(path_matches("PathRegexp(`(?i)^/(css|js)`)", "/CSS"));
        assert!(path_matches("PathRegexp(`css`)", "/a/css"));
        assert!(Rule::parse("Path(`css`)", Syntax::V3).is_err());
        assert!(Rule::parse("PathPrefix(`css`)", Syntax::V3).is_err());
        assert!(Rule::parse("PathRegexp(`css`)", Syntax::V3).is_ok());
    }

    #[test]
    fn method() {
        let mut r = Req::new();
        assert!(rule("Method(`get`)").matches(&r.info()));
        r.method = "get";
        assert!(!rule("Method(`get`)").matches(&r.info()));
        assert!(!rule("Method(`GET`)").matches(&r.info()));
    }

    #[test]
    fn headers() {
        let mut r = Req::new();
        r.headers
            .append("x-forwarded-proto", "http".parse().unwrap());
        r.headers
            .append("x-forwarded-proto", "https".parse().unwrap());
        r.headers.append("x-list", "a, b".parse().unwrap());
        assert!(rule("Header(`X-Forwarded-Proto`, `https`)").matches(&r.info()));
        assert!(rule("Header(`x-forwarded-proto`, `https`)").matches(&r.info()));
        assert!(!rule("Header(`X-Forwarded-Proto`, `HTTPS`)").matches(&r.info()));
        assert!(!rule("Header(`X-List`, `a`)").matches(&r.info()));
        assert!(rule("Header(`X-List`, `a, b`)").matches(&r.info()));
        assert!(!rule("Header(`Bad Name`, `a`)").matches(&r.info()));
        assert!(rule("HeaderRegexp(`X-Forwarded-Proto`, `^https$`)").matches(&r.info()));
        assert!(rule("HeaderRegexp(`X-List`, `b`)").matches(&r.info()));
        assert!(!rule("HeaderRegexp(`X-Other`, `.*`)").matches(&r.info()));
        assert!(Rule::parse("Header(`a`)", Syntax::V3).is_err());
        assert!(Rule::parse("HeaderRegexp(`a`, `(`)", Syntax::V3).is_err());
    }

    fn query_matches(rule_text: &str, query: &'static str) -> bool {
        let mut r = Req::new();
        r.query = query;
        rule(rule_text).matches(&r.info())
    }

    #[test]
    fn query() {
        assert!(query_matches("Query(`q`, `traefik`)", "a=b&q=traefik"));
        assert!(query_matches("Query(`q`, `a b`)", "q=a+b"));
        assert!(query_matches("Query(`q`, `a b`)", "q=a%20b"));
        assert!(query_matches("Query(`q`, `x`)", "a=1;q=x"));
        assert!(!query_matches("Query(`q`, `x`)", "Q=x"));
        assert!(query_matches("Query(`mobile`)", "mobile"));
        assert!(query_matches("Query(`mobile`)", "mobile="));
        assert!(!query_matches("Query(`mobile`)", "mobile=true"));
        assert!(!query_matches("Query(`mobile`)", ""));
        assert!(query_matches("QueryRegexp(`mobile`)", "mobile"));
        assert!(query_matches("QueryRegexp(`q`, `^(a|b)$`)", "q=c&q=b"));
        assert!(!query_matches("QueryRegexp(`q`, `^(a|b)$`)", "q=c"));
        assert!(Rule::parse("Query(`q`, `a`, `b`)", Syntax::V3).is_err());
    }

    #[test]
    fn client_ip() {
        let mut r = Req::new();
        r.ip = Some("192.168.1.7".parse().unwrap());
        assert!(rule("ClientIP(`192.168.1.0/24`)").matches(&r.info()));
        assert!(!rule("ClientIP(`192.168.2.0/24`)").matches(&r.info()));
        assert!(rule("ClientIP(`192.168.1.7`)").matches(&r.info()));
        r.ip = Some("::ffff:192.168.1.7".parse().unwrap());
        assert!(rule("ClientIP(`192.168.1.0/24`)").matches(&r.info()));
        r.ip = Some("10::10".parse().unwrap());
        assert!(rule("ClientIP(`10::/16`)").matches(&r.info()));
        r.ip = None;
        assert!(!rule("ClientIP(`0.0.0.0/0`)").matches(&r.info()));
        assert!(Rule::parse("ClientIP(`1`)", Syntax::V3).is_err());
        assert!(Rule::parse("ClientIP(`10.0.0.0/33`)", Syntax::V3).is_err());
    }

    #[test]
    fn name_spellings() {
        for ok in ["PathPrefix", "pathprefix", "PATHPREFIX", "Pathprefix"] {
            assert!(
                Rule::parse(&format!("{ok}(`/a`)"), Syntax::V3).is_ok(),
                "{ok}"
            );
        }
        for bad in ["pathPrefix", "PAthPrefix", "PathPREFIX"] {
            let e = Rule::parse(&format!("!{bad}(`/a`)"), Syntax::V3).unwrap_err();
            assert_eq!(e.column, 2, "{bad}");
        }
        assert_eq!(canonical_name("CLIENTIP", V3_NAMES), Some("ClientIP"));
        assert_eq!(canonical_name("Clientip", V3_NAMES), Some("ClientIP"));
    }

    #[test]
    fn validation_columns() {
        let col = |t: &str| Rule::parse(t, Syntax::V3).unwrap_err().column;
        assert_eq!(col("Host()"), 1);
        assert_eq!(col("Path(`/a`) && Host(``)"), 20);
        assert_eq!(col("Host(`a`, `b`)"), 11);
        assert_eq!(col("Query(`a`, ``)"), 12);
        assert_eq!(col("Header(`a`)"), 1);
        assert_eq!(col("PathRegexp(`(`)"), 12);
        assert_eq!(col("Headers(`a`, `b`)"), 1);
        assert_eq!(col("HostHeader(`a`)"), 1);
    }
}
