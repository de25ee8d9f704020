//! X-Forwarded-* and X-Real-Ip, set as Traefik sets them.
//!
//! Headers a client sends about itself are only believed from trusted addresses
//! (`forwardedHeaders.trustedIPs` or `insecure`); from anyone else they are removed first, so an
//! origin can rely on what it sees.

use std::net::IpAddr;

use http::{HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
const X_FORWARDED_SERVER: HeaderName = HeaderName::from_static("x-forwarded-server");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// Headers removed from untrusted clients (lower-case, `-` spelling; `_` spellings match too).
const MANAGED: &[&str] = &[
    "x-forwarded-proto",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-server",
    "x-forwarded-uri",
    "x-forwarded-method",
    "x-forwarded-prefix",
    "x-forwarded-tls-client-cert",
    "x-forwarded-tls-client-cert-info",
    "x-forwarded-scheme",
    "x-scheme",
    "x-real-ip",
];

/// An entry point's `forwardedHeaders` policy.
#[derive(Debug, Clone, Default)]
pub struct ForwardedPolicy {
    pub insecure: bool,
    pub trusted: Vec<IpNet>,
}

impl ForwardedPolicy {
    /// Parses `trustedIPs` entries (addresses or CIDRs).
    pub fn new(insecure: bool, trusted_ips: &[String]) -> Result<Self, String> {
        let trusted = trusted_ips
            .iter()
            .map(|entry| {
                entry
                    .parse::<IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("`{entry}` is neither an IP address nor a CIDR"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { insecure, trusted })
    }

    /// Whether headers from this client are kept.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.insecure || self.trusted.iter().any(|net| net.contains(&ip))
    }
}

/// Facts about the request the headers describe.
pub struct Origin<'a> {
    /// The client's address, already as a header value (computed once per connection).
    pub client_ip: &'a HeaderValue,
    pub trusted: bool,
    pub tls: bool,
    pub websocket: bool,
    /// The Host the client asked for, port included as sent.
    pub host: &'a str,
    /// `host` as a header value (empty when the request had none).
    pub host_value: &'a HeaderValue,
    /// This proxy's host name, for X-Forwarded-Server.
    pub server_name: &'a HeaderValue,
}

/// The forwarded headers of a request from an untrusted client that no middleware will look
/// at, kept aside instead of being added to its header map: an HTTP/1.1 origin connection
/// writes them straight into the request head ([`Deferred::encode`]); any other way of sending
/// puts them in the map first ([`Deferred::apply`]). Adding five headers with custom names to a
/// map (hashing each) cost more than the rest of the forwarding step. Carried in the request's
/// extensions from the entry point to the upstream step, like [`ClientAddress`], which it
/// replaces (X-Forwarded-For is one of its headers).
#[derive(Debug, Clone)]
pub struct Deferred {
    client_ip: HeaderValue,
    proto: &'static str,
    port: Option<HeaderValue>,
    host: HeaderValue,
    server_name: HeaderValue,
}

impl Deferred {
    /// Removes what an untrusted client sent of the managed headers and computes the ones to
    /// send.
    pub fn new(headers: &mut HeaderMap, origin: &Origin<'_>) -> Self {
        strip_managed(headers);
        Self {
            client_ip: origin.client_ip.clone(),
            proto: proto(origin),
            port: port(origin),
            host: origin.host_value.clone(),
            server_name: origin.server_name.clone(),
        }
    }

    /// The client's address (what X-Real-Ip will say).
    pub fn client_ip(&self) -> &HeaderValue {
        &self.client_ip
    }

    /// Adds the headers to `headers`, in the order [`apply`] and [`append_client`] add them.
    pub fn apply(self, headers: &mut HeaderMap) {
        headers.append(X_REAL_IP, self.client_ip.clone());
        headers.append(X_FORWARDED_PROTO, HeaderValue::from_static(self.proto));
        if let Some(port) = self.port {
            headers.append(X_FORWARDED_PORT, port);
        }
        if !self.host.is_empty() {
            headers.append(X_FORWARDED_HOST, self.host);
        }
        headers.append(X_FORWARDED_SERVER, self.server_name);
        headers.append(X_FORWARDED_FOR, self.client_ip);
    }

    /// Writes the headers as HTTP/1.1 field lines, in the same order.
    pub fn encode(&self, out: &mut Vec<u8>) {
        // `prefix` is the previous line's end and this line's name.
        let mut line = |prefix: &[u8], value: &[u8]| {
            out.extend_from_slice(prefix);
            out.extend_from_slice(value);
        };
        line(b"x-real-ip: ", self.client_ip.as_bytes());
        line(b"\r\nx-forwarded-proto: ", self.proto.as_bytes());
        if let Some(port) = &self.port {
            line(b"\r\nx-forwarded-port: ", port.as_bytes());
        }
        if !self.host.is_empty() {
            line(b"\r\nx-forwarded-host: ", self.host.as_bytes());
        }
        line(b"\r\nx-forwarded-server: ", self.server_name.as_bytes());
        line(b"\r\nx-forwarded-for: ", self.client_ip.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// Rewrites the forwarded headers of an outgoing request.
pub fn apply(headers: &mut HeaderMap, origin: &Origin<'_>) {
    if !origin.trusted {
        strip_managed(headers);
        // None of the headers set below is left: add them without looking first.
        append_all(headers, origin);
        return;
    }
    headers
        .entry(X_REAL_IP)
        .or_insert_with(|| origin.client_ip.clone());
    headers
        .entry(X_FORWARDED_PROTO)
        .or_insert(HeaderValue::from_static(proto(origin)));
    if !headers.contains_key(&X_FORWARDED_PORT) {
        if let Some(value) = port(origin) {
            headers.insert(X_FORWARDED_PORT, value);
        }
    }
    if !headers.contains_key(&X_FORWARDED_HOST) && !origin.host_value.is_empty() {
        headers.insert(X_FORWARDED_HOST, origin.host_value.clone());
    }
    headers.insert(X_FORWARDED_SERVER, origin.server_name.clone());
}

/// The forwarded headers for a request that carries none of them.
fn append_all(headers: &mut HeaderMap, origin: &Origin<'_>) {
    headers.append(X_REAL_IP, origin.client_ip.clone());
    headers.append(X_FORWARDED_PROTO, HeaderValue::from_static(proto(origin)));
    if let Some(port) = port(origin) {
        headers.append(X_FORWARDED_PORT, port);
    }
    if !origin.host_value.is_empty() {
        headers.append(X_FORWARDED_HOST, origin.host_value.clone());
    }
    headers.append(X_FORWARDED_SERVER, origin.server_name.clone());
}

/// X-Forwarded-Proto: the scheme, `ws`/`wss` for WebSocket upgrades.
fn proto(origin: &Origin<'_>) -> &'static str {
    match (origin.websocket, origin.tls) {
        (true, true) => "wss",
        (true, false) => "ws",
        (false, true) => "https",
        (false, false) => "http",
    }
}

/// X-Forwarded-Port: the Host's port, else the scheme's default (static values: no
/// allocation for the usual port-less Host).
fn port(origin: &Origin<'_>) -> Option<HeaderValue> {
    match host_port(origin.host) {
        Some(port) => HeaderValue::from_str(port).ok(),
        None if origin.tls => Some(HeaderValue::from_static("443")),
        None => Some(HeaderValue::from_static("80")),
    }
}

/// Removes every managed header, in `-` and `_` spellings.
fn strip_managed(headers: &mut HeaderMap) {
    // All managed names start with `x`; most requests carry none, so look before removing.
    if !headers.keys().any(|name| name.as_str().starts_with('x')) {
        return;
    }
    for name in MANAGED {
        headers.remove(*name);
    }
    let underscored: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().contains('_'))
        .filter(|name| MANAGED.contains(&name.as_str().replace('_', "-").as_str()))
        .cloned()
        .collect();
    for name in underscored {
        headers.remove(name);
    }
}

/// The connection's client, carried in a request's extensions from the entry point to the
/// upstream step, where it is appended to X-Forwarded-For (as Traefik's proxy does: middlewares
/// see the X-Forwarded-For the client sent, without Sluice's own entry).
#[derive(Debug, Clone)]
pub struct ClientAddress(pub HeaderValue);

/// Appends `client` to X-Forwarded-For.
pub fn append_client(headers: &mut HeaderMap, client: &ClientAddress) {
    append_forwarded_for(headers, client.0.clone());
}

/// `X-Forwarded-For: <prior values, folded>, <client>`.
fn append_forwarded_for(headers: &mut HeaderMap, ip: HeaderValue) {
    let mut values = headers.get_all(&X_FORWARDED_FOR).iter();
    let value = match (values.next(), values.next()) {
        (None, _) => ip,
        (Some(only), None) => {
            let mut joined = Vec::with_capacity(only.len() + 2 + ip.len());
            joined.extend_from_slice(only.as_bytes());
            joined.extend_from_slice(b", ");
            joined.extend_from_slice(ip.as_bytes());
            HeaderValue::from_bytes(&joined).unwrap_or(ip)
        }
        (Some(_), Some(_)) => {
            let mut joined: Vec<u8> = Vec::new();
            for value in headers.get_all(&X_FORWARDED_FOR) {
                joined.extend_from_slice(value.as_bytes());
                joined.extend_from_slice(b", ");
            }
            joined.extend_from_slice(ip.as_bytes());
            HeaderValue::from_bytes(&joined).unwrap_or(ip)
        }
    };
    headers.insert(X_FORWARDED_FOR, value);
}

/// The port of a Host value (`example.com:8080`, `[::1]:8080`), if any.
fn host_port(host: &str) -> Option<&str> {
    let (_, port) = host.rsplit_once(':')?;
    (!port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) && !host.ends_with(']'))
        .then_some(port)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin<'a>(
        trusted: bool,
        host: &'a str,
        host_value: &'a HeaderValue,
        name: &'a HeaderValue,
    ) -> Origin<'a> {
        static IP: HeaderValue = HeaderValue::from_static("10.1.2.3");
        Origin {
            client_ip: &IP,
            trusted,
            tls: false,
            websocket: false,
            host,
            host_value,
            server_name: name,
        }
    }

    #[test]
    fn untrusted_client_headers_are_replaced() {
        let name = HeaderValue::from_static("proxy-1");
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::from_static("1.1.1.1"));
        headers.insert("x-real-ip", HeaderValue::from_static("1.1.1.1"));
        headers.insert("x_forwarded_host", HeaderValue::from_static("evil"));
        headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        let host = HeaderValue::from_static("example.com:8080");
        apply(
            &mut headers,
            &origin(false, "example.com:8080", &host, &name),
        );
        assert!(
            !headers.contains_key("x-forwarded-for"),
            "the untrusted value is gone"
        );
        append_forwarded_for(&mut headers, HeaderValue::from_static("10.1.2.3"));
        assert_eq!(headers["x-forwarded-for"], "10.1.2.3");
        assert_eq!(headers["x-real-ip"], "10.1.2.3");
        assert_eq!(headers["x-forwarded-proto"], "http");
        assert_eq!(headers["x-forwarded-host"], "example.com:8080");
        assert_eq!(headers["x-forwarded-port"], "8080");
        assert_eq!(headers["x-forwarded-server"], "proxy-1");
        assert!(!headers.contains_key("x_forwarded_host"));
    }

    #[test]
    fn trusted_client_headers_are_kept_and_for_is_appended() {
        let name = HeaderValue::from_static("proxy-1");
        let mut headers = HeaderMap::new();
        headers.append("x-forwarded-for", HeaderValue::from_static("1.1.1.1"));
        headers.append("x-forwarded-for", HeaderValue::from_static("2.2.2.2"));
        headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        let host = HeaderValue::from_static("example.com");
        apply(&mut headers, &origin(true, "example.com", &host, &name));
        append_forwarded_for(&mut headers, HeaderValue::from_static("10.1.2.3"));
        assert_eq!(headers["x-forwarded-for"], "1.1.1.1, 2.2.2.2, 10.1.2.3");
        assert_eq!(headers["x-forwarded-proto"], "https");
        assert_eq!(headers["x-forwarded-port"], "80");
    }

    #[test]
    fn policy_parses_addresses_and_networks() {
        let policy =
            ForwardedPolicy::new(false, &["127.0.0.1".into(), "10.0.0.0/8".into()]).unwrap();
        assert!(policy.trusts("10.9.9.9".parse().unwrap()));
        assert!(policy.trusts("127.0.0.1".parse().unwrap()));
        assert!(!policy.trusts("192.0.2.1".parse().unwrap()));
        assert!(ForwardedPolicy::new(false, &["nope".into()]).is_err());
    }
}
