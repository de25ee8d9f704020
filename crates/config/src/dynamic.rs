//! The provider-neutral dynamic configuration, in Traefik's schema.
//!
//! Field names are Traefik's (`entryPoints`, `passHostHeader`, ...) in JSON,
//! YAML and TOML alike. Serialising with `serde_json` produces what Traefik's
//! `encoding/json` produces for the same Go value: `omitempty` everywhere
//! (empty strings, zero numbers, `false`, empty lists and maps, unset
//! options are absent) except `passHostHeader`, which is always written;
//! map keys come out sorted; fields are in Go struct order.
//!
//! Parts Sluice does not interpret yet (middlewares, TLS sections, TCP, UDP,
//! health checks, ...) are kept as `serde_json::Value` so that a valid
//! Traefik file still loads; those parts are not checked for unknown keys.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::duration::GoDuration;

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// A whole dynamic configuration, as one provider produces it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Configuration {
    /// HTTP routers, services, middlewares and transports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpConfiguration>,
    /// TCP section (not interpreted yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<Value>,
    /// UDP section (not interpreted yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udp: Option<Value>,
    /// TLS certificates, options and stores (not interpreted yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Value>,
}

impl Configuration {
    /// True when nothing at all is configured.
    pub fn is_empty(&self) -> bool {
        self.http.as_ref().is_none_or(HttpConfiguration::is_empty)
            && self.tcp.is_none()
            && self.udp.is_none()
            && self.tls.is_none()
    }
}

/// The `http` section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpConfiguration {
    /// Routers by name.
    #[serde(
        default,
        deserialize_with = "crate::nullable::or_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub routers: BTreeMap<String, Router>,
    /// Services by name.
    #[serde(
        default,
        deserialize_with = "crate::nullable::or_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub services: BTreeMap<String, Service>,
    /// Middlewares by name (each a one-key object such as `{"stripPrefix": {...}}`).
    #[serde(
        default,
        deserialize_with = "crate::nullable::or_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub middlewares: BTreeMap<String, Value>,
    /// Router models (defaults applied to routers of an entry point).
    #[serde(
        default,
        deserialize_with = "crate::nullable::or_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub models: BTreeMap<String, Value>,
    /// Servers transports by name.
    #[serde(
        default,
        deserialize_with = "crate::nullable::or_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub servers_transports: BTreeMap<String, Value>,
}

impl HttpConfiguration {
    /// True when no element of any kind is defined.
    pub fn is_empty(&self) -> bool {
        self.routers.is_empty()
            && self.services.is_empty()
            && self.middlewares.is_empty()
            && self.models.is_empty()
            && self.servers_transports.is_empty()
    }
}

/// An HTTP router.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Router {
    /// Entry points the router listens on; empty = the default ones.
    #[serde(
        default,
        deserialize_with = "crate::nullable::or_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub entry_points: Vec<String>,
    /// Middleware names, applied in order.
    #[serde(
        default,
        deserialize_with = "crate::nullable::or_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub middlewares: Vec<String>,
    /// Target service name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service: String,
    /// Matching rule, e.g. ``Host(`a.com`) && PathPrefix(`/x`)``.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub rule: String,
    /// Parent routers (multi-layer routing).
    #[serde(
        default,
        deserialize_with = "crate::nullable::or_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub parent_refs: Vec<String>,
    /// `v2` or `v3`; unset = the static `core.defaultRuleSyntax`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_syntax: Option<String>,
    /// Explicit priority; 0 = derived from the rule length.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub priority: i64,
    /// TLS settings; present (even empty) = the router serves HTTPS.
    #[serde(
        default,
        deserialize_with = "crate::nullable::present_object",
        skip_serializing_if = "Option::is_none"
    )]
    pub tls: Option<Value>,
    /// Access log / metrics / tracing switches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observability: Option<Value>,
}

/// Which of the mutually exclusive service types a [`Service`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServiceKind {
    /// `loadBalancer`: servers.
    LoadBalancer,
    /// `weighted`: weighted round robin over services.
    Weighted,
    /// `mirroring`: main service plus mirrors.
    Mirroring,
    /// `failover`: main service with a fallback.
    Failover,
    /// `highestRandomWeight`: rendezvous hashing over services.
    HighestRandomWeight,
}

/// An HTTP service; exactly one of the type fields must be set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Service {
    /// Middlewares wrapping the service (Traefik v3.5+).
    #[serde(
        default,
        deserialize_with = "crate::nullable::or_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub middlewares: Vec<String>,
    /// Balancer over servers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<ServersLoadBalancer>,
    /// Highest-random-weight balancer over services (not interpreted yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub highest_random_weight: Option<Value>,
    /// Weighted round robin over services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weighted: Option<WeightedRoundRobin>,
    /// Mirroring.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirroring: Option<Mirroring>,
    /// Failover (not interpreted yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover: Option<Value>,
}

impl Service {
    /// The service type, or Traefik's error text when zero or several
    /// types are set.
    pub fn kind(&self) -> Result<ServiceKind, &'static str> {
        let set = [
            (self.load_balancer.is_some(), ServiceKind::LoadBalancer),
            (self.weighted.is_some(), ServiceKind::Weighted),
            (self.mirroring.is_some(), ServiceKind::Mirroring),
            (self.failover.is_some(), ServiceKind::Failover),
            (
                self.highest_random_weight.is_some(),
                ServiceKind::HighestRandomWeight,
            ),
        ];
        let mut kinds = set.iter().filter(|(on, _)| *on).map(|(_, k)| *k);
        match (kinds.next(), kinds.next()) {
            (Some(kind), None) => Ok(kind),
            (None, _) => Err("the service is missing a type"),
            (Some(_), Some(_)) => Err("multi-types service not supported"),
        }
    }
}

/// `loadBalancer`: a balancer over server URLs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServersLoadBalancer {
    /// Sticky sessions.
    #[serde(
        default,
        deserialize_with = "crate::nullable::present",
        skip_serializing_if = "Option::is_none"
    )]
    pub sticky: Option<Sticky>,
    /// Servers.
    #[serde(
        default,
        deserialize_with = "crate::nullable::or_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub servers: Vec<Server>,
    /// `wrr` (default), `p2c`, `hrw` or `leasttime`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<String>,
    /// Active health check (not interpreted yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<Value>,
    /// Passive health check (not interpreted yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passive_health_check: Option<Value>,
    /// Forward the client's Host header; unset means true.
    ///
    /// Traefik writes this field even when unset, so it is serialised as a
    /// plain boolean (`None` -> `true`).
    #[serde(default, serialize_with = "ser_pass_host_header")]
    pub pass_host_header: Option<bool>,
    /// Response flushing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_forwarding: Option<ResponseForwarding>,
    /// Name of the serversTransport to use; empty = `default@internal`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub servers_transport: Option<String>,
}

fn ser_pass_host_header<S: serde::Serializer>(v: &Option<bool>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_bool(v.unwrap_or(true))
}

impl ServersLoadBalancer {
    /// `passHostHeader` with its default applied.
    pub fn pass_host_header(&self) -> bool {
        self.pass_host_header.unwrap_or(true)
    }

    /// `responseForwarding.flushInterval` with its default (100ms) applied.
    pub fn flush_interval(&self) -> GoDuration {
        self.response_forwarding
            .as_ref()
            .and_then(|r| r.flush_interval)
            .unwrap_or(DEFAULT_FLUSH_INTERVAL)
    }
}

/// Default `responseForwarding.flushInterval`.
pub const DEFAULT_FLUSH_INTERVAL: GoDuration = GoDuration::from_millis(100);

/// `responseForwarding`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ResponseForwarding {
    /// Interval between flushes while copying the response body; negative
    /// = flush after every write. Zero is dropped from JSON like in Go.
    #[serde(default, skip_serializing_if = "flush_interval_omitted")]
    pub flush_interval: Option<GoDuration>,
}

fn flush_interval_omitted(v: &Option<GoDuration>) -> bool {
    v.is_none_or(GoDuration::is_zero)
}

/// One backend server.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Server {
    /// Server URL, e.g. `http://10.0.0.1:8080`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub url: String,
    /// Weight for the balancer; unset = 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i64>,
    /// Keep the server URL's path as a prefix of the forwarded path.
    #[serde(default, skip_serializing_if = "is_false")]
    pub preserve_path: bool,
    /// Set by providers for terminating endpoints: used only by sticky
    /// sessions, never picked otherwise. Traefik writes it to JSON but no
    /// file format can set it, hence no deserialisation.
    #[serde(default, skip_deserializing, skip_serializing_if = "is_false")]
    pub fenced: bool,
}

/// `weighted`: weighted round robin over services.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WeightedRoundRobin {
    /// Child services.
    #[serde(
        default,
        deserialize_with = "crate::nullable::or_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub services: Vec<WrrService>,
    /// Sticky sessions across children.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sticky: Option<Sticky>,
    /// `{}` = track children's health and propagate it.
    #[serde(
        default,
        deserialize_with = "crate::nullable::present_object",
        skip_serializing_if = "Option::is_none"
    )]
    pub health_check: Option<Value>,
}

/// A child of a weighted service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WrrService {
    /// Service name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Weight; unset = 1 (the file provider writes the 1 explicitly).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i64>,
}

/// `mirroring`: serve from `service`, copy requests to mirrors.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Mirroring {
    /// Main service.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service: String,
    /// Send the body to mirrors; unset = true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror_body: Option<bool>,
    /// Largest body that is mirrored; unset or -1 = unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_body_size: Option<i64>,
    /// Mirrors with their percentage.
    #[serde(
        default,
        deserialize_with = "crate::nullable::or_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub mirrors: Vec<MirrorService>,
    /// `{}` = propagate the main service's health.
    #[serde(
        default,
        deserialize_with = "crate::nullable::present_object",
        skip_serializing_if = "Option::is_none"
    )]
    pub health_check: Option<Value>,
}

/// One mirror of a mirroring service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MirrorService {
    /// Service name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Percentage of requests mirrored (0-100).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub percent: i64,
}

/// `sticky`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Sticky {
    /// Cookie-based stickiness; present (even empty) = enabled.
    #[serde(
        default,
        deserialize_with = "crate::nullable::present",
        skip_serializing_if = "Option::is_none"
    )]
    pub cookie: Option<Cookie>,
}

/// `sticky.cookie`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Cookie {
    /// Cookie name; empty = derived from the service name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// `Secure` attribute.
    #[serde(default, skip_serializing_if = "is_false")]
    pub secure: bool,
    /// `HttpOnly` attribute.
    #[serde(default, skip_serializing_if = "is_false")]
    pub http_only: bool,
    /// `none`, `lax` or `strict`; anything else = no attribute.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub same_site: String,
    /// `Max-Age`; 0 = not sent.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_age: i64,
    /// `Path`; the file provider defaults it to `/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `Domain`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub domain: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn service_kind() {
        let mut s = Service::default();
        assert_eq!(s.kind(), Err("the service is missing a type"));
        s.load_balancer = Some(ServersLoadBalancer::default());
        assert_eq!(s.kind(), Ok(ServiceKind::LoadBalancer));
        s.weighted = Some(WeightedRoundRobin::default());
        assert_eq!(s.kind(), Err("multi-types service not supported"));
        s.load_balancer = None;
        assert_eq!(s.kind(), Ok(ServiceKind::Weighted));
        let f = Service {
            failover: Some(json!({})),
            ..Service::default()
        };
        assert_eq!(f.kind(), Ok(ServiceKind::Failover));
    }

    #[test]
    fn omitempty_and_pass_host_header() {
        let lb = ServersLoadBalancer {
            servers: vec![Server {
                url: "http://a".into(),
                ..Server::default()
            }],
            ..ServersLoadBalancer::default()
        };
        assert_eq!(
            serde_json::to_value(&lb).unwrap(),
            json!({"servers": [{"url": "http://a"}], "passHostHeader": true})
        );
        let r = Router::default();
        assert_eq!(serde_json::to_value(&r).unwrap(), json!({}));
        let c = Configuration::default();
        assert_eq!(serde_json::to_string(&c).unwrap(), "{}");
        assert!(c.is_empty());
    }

    #[test]
    fn fenced_serialised_but_not_read() {
        let s = Server {
            url: "http://a".into(),
            fenced: true,
            ..Server::default()
        };
        assert_eq!(
            serde_json::to_value(&s).unwrap(),
            json!({"url": "http://a", "fenced": true})
        );
        assert!(serde_json::from_value::<Server>(json!({"url": "x", "fenced": true})).is_err());
    }

    #[test]
    fn field_order_follows_go() {
        let lb = ServersLoadBalancer {
            sticky: Some(Sticky { cookie: None }),
            servers: vec![Server::default()],
            strategy: Some("wrr".into()),
            health_check: Some(json!({})),
            passive_health_check: Some(json!({})),
            pass_host_header: Some(false),
            response_forwarding: Some(ResponseForwarding {
                flush_interval: Some(GoDuration::from_millis(100)),
            }),
            servers_transport: Some("t".into()),
        };
        assert_eq!(
            serde_json::to_string(&lb).unwrap(),
            r#"{"sticky":{},"servers":[{}],"strategy":"wrr","healthCheck":{},"passiveHealthCheck":{},"passHostHeader":false,"responseForwarding":{"flushInterval":"100ms"},"serversTransport":"t"}"#
        );
    }
}
