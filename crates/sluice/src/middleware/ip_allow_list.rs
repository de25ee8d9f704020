//! `ipAllowList` (and its deprecated name `ipWhiteList`): only clients whose IP is in
//! `sourceRange` get through; the others get `rejectStatusCode` (403 by default).
//!
//! Also home of Traefik's `ipStrategy` (which address counts as "the client"), shared with the
//! other middlewares that group requests by client (`inFlightReq`, `forwardAuth`).

use std::net::IpAddr;
use std::sync::Arc;

use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use ipnet::IpNet;
use serde::Deserialize;
use serde_json::Value;

use super::auth::parse_at;
use super::{Answer, Middleware, MiddlewareError, Next};
use crate::dataplane::body::full;
use crate::dataplane::request::Connection;
use crate::dataplane::upstream::Outgoing;

/// Traefik's `ipAllowList` options (`ipWhiteList` has the same minus `rejectStatusCode`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Options {
    #[serde(default)]
    source_range: Vec<String>,
    ip_strategy: Option<Value>,
    reject_status_code: Option<u16>,
}

/// Traefik's `ipStrategy` options.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct StrategyOptions {
    #[serde(default)]
    depth: i64,
    #[serde(default, rename = "excludedIPs")]
    excluded_ips: Vec<String>,
    ipv6_subnet: Option<i64>,
}

/// How the client's address is chosen.
#[derive(Debug, Clone)]
pub enum IpStrategy {
    /// The TCP peer (Traefik's default), optionally reduced to its IPv6 subnet.
    RemoteAddr { ipv6_subnet: Option<u8> },
    /// The `depth`-th X-Forwarded-For entry counting from the right (1 = last).
    Depth {
        depth: usize,
        ipv6_subnet: Option<u8>,
    },
    /// The right-most X-Forwarded-For entry not in the excluded set.
    Excluded(IpSet),
}

impl IpStrategy {
    /// Parses an `ipStrategy` object found at `path`; `None` is the remote-address strategy.
    pub fn parse(spec: Option<&Value>, path: &str) -> Result<Self, MiddlewareError> {
        let Some(spec) = spec else {
            return Ok(IpStrategy::RemoteAddr { ipv6_subnet: None });
        };
        let options: StrategyOptions = parse_at(spec, path)?;
        let subnet = || -> Result<Option<u8>, MiddlewareError> {
            match options.ipv6_subnet {
                None => Ok(None),
                Some(bits @ 1..=128) => Ok(Some(bits as u8)),
                Some(bits) => Err(MiddlewareError::new(
                    format!("{path}.ipv6Subnet"),
                    format!("{bits} is not a prefix length between 1 and 128"),
                )),
            }
        };
        if options.depth < 0 {
            return Err(MiddlewareError::new(
                format!("{path}.depth"),
                "must be 0 or more",
            ));
        }
        // As in Traefik, a depth wins over excluded IPs.
        if options.depth > 0 {
            return Ok(IpStrategy::Depth {
                depth: options.depth as usize,
                ipv6_subnet: subnet()?,
            });
        }
        if !options.excluded_ips.is_empty() {
            return IpSet::parse(&options.excluded_ips, &format!("{path}.excludedIPs"))
                .map(IpStrategy::Excluded);
        }
        Ok(IpStrategy::RemoteAddr {
            ipv6_subnet: subnet()?,
        })
    }

    /// The client address as text (empty when the strategy finds none), as Traefik computes it.
    pub fn client_ip(&self, connection: &Connection, headers: &HeaderMap) -> String {
        match self {
            IpStrategy::RemoteAddr { ipv6_subnet } => {
                let ip = connection.peer.ip().to_canonical();
                match ipv6_subnet {
                    Some(bits) => subnet_base(ip, *bits).to_string(),
                    None => ip.to_string(),
                }
            }
            IpStrategy::Depth { depth, ipv6_subnet } => {
                let entries = received_forwarded_for(headers);
                // An absent header counts as one empty entry, as Go's split does.
                let entries: Vec<&str> = if entries.is_empty() {
                    vec![""]
                } else {
                    entries
                };
                if entries.len() < *depth {
                    return String::new();
                }
                let entry = entries[entries.len() - depth];
                match (ipv6_subnet, entry.parse::<IpAddr>()) {
                    (Some(bits), Ok(ip)) => subnet_base(ip, *bits).to_string(),
                    _ => entry.to_owned(),
                }
            }
            IpStrategy::Excluded(excluded) => received_forwarded_for(headers)
                .into_iter()
                .rev()
                .filter(|entry| !entry.is_empty())
                .find(|entry| !parse_ip(entry).is_some_and(|ip| excluded.contains(ip)))
                .unwrap_or("")
                .to_owned(),
        }
    }
}

/// The X-Forwarded-For entries as the client sent them (trimmed, in order).
pub fn received_forwarded_for(headers: &HeaderMap) -> Vec<&str> {
    let Some(value) = headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) else {
        return Vec::new();
    };
    // Middlewares run before the upstream step appends the peer, so this is what was received.
    value.split(',').map(str::trim).collect()
}

/// The first address of `ip`'s IPv6 subnet of `bits` bits; IPv4 addresses are unchanged.
fn subnet_base(ip: IpAddr, bits: u8) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => ipnet::Ipv6Net::new(v6, bits)
            .map(|net| IpAddr::V6(net.network()))
            .unwrap_or(ip),
        v4 => v4,
    }
}

/// Parses an address as Traefik's checker does: a bare IP, or `ip:port` / `[ip]:port`.
/// IPv4-mapped IPv6 addresses are treated as IPv4, as Go's `net.IP` comparisons do.
fn parse_ip(text: &str) -> Option<IpAddr> {
    let ip = text
        .parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<std::net::SocketAddr>().ok().map(|s| s.ip()))?;
    Some(ip.to_canonical())
}

/// A set of addresses and networks.
#[derive(Debug, Clone)]
pub struct IpSet {
    networks: Vec<IpNet>,
}

impl IpSet {
    /// Parses IPs and CIDRs; `field` names the list for errors.
    pub fn parse(entries: &[String], field: &str) -> Result<Self, MiddlewareError> {
        let networks = entries
            .iter()
            .enumerate()
            .map(|(i, entry)| {
                let entry = entry.trim();
                entry
                    .parse::<IpAddr>()
                    .map(|ip| IpNet::from(ip.to_canonical()))
                    .or_else(|_| entry.parse::<IpNet>().map(|net| net.trunc()))
                    .map(|net| match net {
                        // `::ffff:10.0.0.0/104` and `10.0.0.0/8` are the same network.
                        IpNet::V6(v6) if v6.prefix_len() >= 96 => {
                            match v6.network().to_ipv4_mapped() {
                                Some(v4) => ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96)
                                    .map(IpNet::V4)
                                    .unwrap_or(net),
                                None => net,
                            }
                        }
                        other => other,
                    })
                    .map_err(|_| {
                        MiddlewareError::new(
                            format!("{field}[{i}]"),
                            format!("`{entry}` is neither an IP address nor a CIDR"),
                        )
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { networks })
    }

    /// Whether `ip` is in the set.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.networks.iter().any(|net| net.contains(&ip))
    }
}

/// A compiled `ipAllowList`.
#[derive(Debug)]
pub struct IpAllowList {
    allowed: IpSet,
    strategy: IpStrategy,
    reject: StatusCode,
}

/// Compiles `ipAllowList` / `ipWhiteList`.
pub fn compile(spec: &Value) -> Result<Arc<dyn Middleware>, MiddlewareError> {
    let options: Options = parse_at(spec, "")?;
    if options.source_range.is_empty() {
        return Err(MiddlewareError::new(
            "sourceRange",
            "at least one IP or CIDR is required",
        ));
    }
    let allowed = IpSet::parse(&options.source_range, "sourceRange")?;
    let strategy = IpStrategy::parse(options.ip_strategy.as_ref(), "ipStrategy")?;
    let reject = match options.reject_status_code {
        None | Some(0) => StatusCode::FORBIDDEN,
        Some(code) => StatusCode::from_u16(code)
            .ok()
            .filter(|s| s.canonical_reason().is_some())
            .ok_or_else(|| {
                MiddlewareError::new(
                    "rejectStatusCode",
                    format!("{code} is not a known HTTP status code"),
                )
            })?,
    };
    Ok(Arc::new(IpAllowList {
        allowed,
        strategy,
        reject,
    }))
}

impl Middleware for IpAllowList {
    fn handle<'a>(
        &'a self,
        connection: &'a Connection,
        outgoing: Outgoing,
        next: Next<'a>,
    ) -> Answer<'a> {
        let client = self
            .strategy
            .client_ip(connection, outgoing.request.headers());
        let allowed = parse_ip(&client).is_some_and(|ip| self.allowed.contains(ip));
        if allowed {
            return next.run(outgoing);
        }
        tracing::debug!(client = %client, "ipAllowList: rejected");
        let status = self.reject;
        Box::pin(async move {
            let mut response = Response::new(full(status.canonical_reason().unwrap_or("")));
            *response.status_mut() = status;
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn connection(peer: &str) -> Connection {
        let peer: std::net::SocketAddr = peer.parse().unwrap();
        Connection {
            entry_point: "web".into(),
            peer,
            peer_ip: HeaderValue::from_str(&peer.ip().to_string()).unwrap(),
            trusted: true,
            tls: false,
            tls_info: None,
        }
    }

    /// Headers as Sluice hands them to middlewares: the peer appended to what was received.
    fn xff(received: &str, peer: &str) -> HeaderMap {
        // What middlewares see: the header as received; the peer is appended later, upstream.
        let _ = peer;
        let mut h = HeaderMap::new();
        if !received.is_empty() {
            h.insert("x-forwarded-for", HeaderValue::from_str(received).unwrap());
        }
        h
    }

    fn strategy(spec: Value) -> IpStrategy {
        IpStrategy::parse(Some(&spec), "ipStrategy").unwrap()
    }

    #[test]
    fn depth_counts_from_the_right_of_what_was_received() {
        let c = connection("10.0.0.9:5000");
        let h = xff("1.1.1.1, 2.2.2.2,3.3.3.3", "10.0.0.9");
        assert_eq!(strategy(json!({"depth": 1})).client_ip(&c, &h), "3.3.3.3");
        assert_eq!(strategy(json!({"depth": 3})).client_ip(&c, &h), "1.1.1.1");
        assert_eq!(strategy(json!({"depth": 4})).client_ip(&c, &h), "");
        // Depth wins over excluded IPs.
        assert_eq!(
            strategy(json!({"depth": 2, "excludedIPs": ["2.2.2.2"]})).client_ip(&c, &h),
            "2.2.2.2"
        );
        // Nothing received: depth 1 finds an empty entry.
        assert_eq!(
            strategy(json!({"depth": 1})).client_ip(&c, &xff("", "10.0.0.9")),
            ""
        );
    }

    #[test]
    fn excluded_ips_skip_known_proxies() {
        let c = connection("10.0.0.9:5000");
        let h = xff("1.1.1.1, 2.2.2.2, 10.1.1.1", "10.0.0.9");
        assert_eq!(
            strategy(json!({"excludedIPs": ["10.0.0.0/8"]})).client_ip(&c, &h),
            "2.2.2.2"
        );
        assert_eq!(
            strategy(json!({"excludedIPs": ["10.0.0.0/8", "2.2.2.2"]})).client_ip(&c, &h),
            "1.1.1.1"
        );
        assert_eq!(
            strategy(json!({"excludedIPs": ["0.0.0.0/0"]})).client_ip(&c, &h),
            ""
        );
    }

    #[test]
    fn remote_addr_and_ipv6_subnets() {
        let c = connection("[2001:db8:1:2:3:4:5:6]:443");
        assert_eq!(
            strategy(json!({})).client_ip(&c, &HeaderMap::new()),
            "2001:db8:1:2:3:4:5:6"
        );
        assert_eq!(
            strategy(json!({"ipv6Subnet": 64})).client_ip(&c, &HeaderMap::new()),
            "2001:db8:1:2::"
        );
        let h = xff("2001:db8:aa:bb:cc:dd:ee:ff", "2001:db8:1:2:3:4:5:6");
        assert_eq!(
            strategy(json!({"depth": 1, "ipv6Subnet": 48})).client_ip(&c, &h),
            "2001:db8:aa::"
        );
        let v4 = connection("192.0.2.7:1");
        assert_eq!(
            strategy(json!({"ipv6Subnet": 64})).client_ip(&v4, &HeaderMap::new()),
            "192.0.2.7"
        );
    }

    #[test]
    fn invalid_options_name_their_field() {
        let err = |spec: Value| compile(&spec).unwrap_err().field;
        assert_eq!(err(json!({})), "sourceRange");
        assert_eq!(
            err(json!({"sourceRange": ["10.0.0.0/8", "nope"]})),
            "sourceRange[1]"
        );
        assert_eq!(
            err(json!({"sourceRange": ["1.2.3.4"], "ipStrategy": {"depht": 1}})),
            "ipStrategy.depht"
        );
        assert_eq!(
            err(json!({"sourceRange": ["1.2.3.4"], "ipStrategy": {"excludedIPs": ["x"]}})),
            "ipStrategy.excludedIPs[0]"
        );
        assert_eq!(
            err(json!({"sourceRange": ["1.2.3.4"], "ipStrategy": {"ipv6Subnet": 129}})),
            "ipStrategy.ipv6Subnet"
        );
        assert_eq!(
            err(json!({"sourceRange": ["1.2.3.4"], "rejectStatusCode": 999})),
            "rejectStatusCode"
        );
    }

    #[test]
    fn sets_match_addresses_networks_and_mapped_forms() {
        let set = IpSet::parse(
            &[
                "10.0.0.1/8".into(),
                "192.0.2.5".into(),
                "2001:db8::/32".into(),
            ],
            "x",
        )
        .unwrap();
        assert!(set.contains("10.200.0.1".parse().unwrap()));
        assert!(set.contains("192.0.2.5".parse().unwrap()));
        assert!(!set.contains("192.0.2.6".parse().unwrap()));
        assert!(set.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(set.contains("2001:db8:ffff::1".parse().unwrap()));
        assert_eq!(parse_ip("1.2.3.4:80"), Some("1.2.3.4".parse().unwrap()));
        assert_eq!(parse_ip("[::1]:80"), Some("::1".parse().unwrap()));
        assert_eq!(parse_ip(""), None);
    }
}
