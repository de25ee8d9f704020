//! Traefik's CRD kinds (`traefik.io/v1alpha1`, and the legacy
//! `traefik.containo.us/v1alpha1` group, which has the same schema).
//!
//! Field names are the CRD's camelCase ones. Unknown fields are accepted
//! (objects read back from a cluster carry `status` and the like).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::meta::{IntOrString, ObjectMeta};
use super::null_default;

/// A `name` + optional `namespace` reference to another object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectReference {
    /// Referenced object name (`x@provider` for a cross-provider reference
    /// where the kind allows it).
    #[serde(default)]
    pub name: String,
    /// Namespace; empty = the referencing object's namespace.
    #[serde(default)]
    pub namespace: String,
}

/// `IngressRoute`: HTTP routers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct IngressRoute {
    /// Object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Specification.
    #[serde(default)]
    pub spec: IngressRouteSpec,
}

/// `IngressRoute.spec`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IngressRouteSpec {
    /// Ingress class; takes precedence over the deprecated annotation.
    #[serde(default)]
    pub ingress_class_name: Option<String>,
    /// Entry points; empty = the default ones.
    #[serde(default, deserialize_with = "null_default")]
    pub entry_points: Vec<String>,
    /// Routes, one router each.
    #[serde(default, deserialize_with = "null_default")]
    pub routes: Vec<Route>,
    /// TLS; present (even `{}`) = HTTPS routers.
    #[serde(default)]
    pub tls: Option<Tls>,
    /// Parent IngressRoutes (multi-layer routing).
    #[serde(default, deserialize_with = "null_default")]
    pub parent_refs: Vec<ObjectReference>,
}

/// One route of an IngressRoute.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    /// Rule, e.g. ``Host(`a.com`)``.
    #[serde(default, rename = "match")]
    pub match_: String,
    /// Only `Rule` (or empty) is supported.
    #[serde(default)]
    pub kind: String,
    /// Priority; 0 = rule length.
    #[serde(default)]
    pub priority: i64,
    /// Rule syntax (`v2`, `v3`).
    #[serde(default)]
    pub syntax: String,
    /// Target services.
    #[serde(default, deserialize_with = "null_default")]
    pub services: Vec<LoadBalancerSpec>,
    /// Middlewares, applied in order.
    #[serde(default, deserialize_with = "null_default")]
    pub middlewares: Vec<ObjectReference>,
    /// Access log / metrics / tracing switches.
    #[serde(default)]
    pub observability: Option<RouterObservability>,
}

/// `routes[].observability`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouterObservability {
    /// Access logs on/off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_logs: Option<bool>,
    /// Metrics on/off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<bool>,
    /// Tracing on/off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracing: Option<bool>,
    /// `minimal` or `detailed`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub trace_verbosity: String,
}

/// `IngressRoute.spec.tls`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Tls {
    /// Secret holding `tls.crt` / `tls.key`, same namespace.
    #[serde(default)]
    pub secret_name: String,
    /// TLSOption reference.
    #[serde(default)]
    pub options: Option<ObjectReference>,
    /// TLSStore reference (only `default` is usable).
    #[serde(default)]
    pub store: Option<ObjectReference>,
    /// Certificate resolver name.
    #[serde(default)]
    pub cert_resolver: String,
    /// Domains for the resolver.
    #[serde(default, deserialize_with = "null_default")]
    pub domains: Vec<Domain>,
}

/// A certificate domain: main name plus SANs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Domain {
    /// Main domain.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub main: String,
    /// Subject alternative names.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub sans: Vec<String>,
}

/// A service reference with its load-balancing options (`LoadBalancerSpec`
/// in Traefik): a Kubernetes Service or a TraefikService.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancerSpec {
    /// Service name (`x@provider` for TraefikService cross-provider refs).
    #[serde(default)]
    pub name: String,
    /// `Service` (default) or `TraefikService`.
    #[serde(default)]
    pub kind: String,
    /// Namespace; empty = the parent's.
    #[serde(default)]
    pub namespace: String,
    /// Service-level middlewares.
    #[serde(default, deserialize_with = "null_default")]
    pub middlewares: Vec<ObjectReference>,
    /// Sticky sessions.
    #[serde(default)]
    pub sticky: Option<Sticky>,
    /// Service port, by number or name.
    #[serde(default)]
    pub port: IntOrString,
    /// `http`, `https` or `h2c`; empty = inferred.
    #[serde(default)]
    pub scheme: String,
    /// `wrr`, `p2c`, `hrw`, `leasttime` (or deprecated `RoundRobin`).
    #[serde(default)]
    pub strategy: String,
    /// Forward the client Host header (default true).
    #[serde(default)]
    pub pass_host_header: Option<bool>,
    /// Response flushing.
    #[serde(default)]
    pub response_forwarding: Option<ResponseForwarding>,
    /// ServersTransport name (`x@provider` allowed).
    #[serde(default)]
    pub servers_transport: String,
    /// Weight inside a weighted parent (default 1).
    #[serde(default)]
    pub weight: Option<i64>,
    /// Use the Service's ClusterIP instead of the endpoints.
    #[serde(default, rename = "nativeLB")]
    pub native_lb: Option<bool>,
    /// Use node IPs and the NodePort.
    #[serde(default, rename = "nodePortLB")]
    pub node_port_lb: bool,
    /// Active health check (ExternalName services only).
    #[serde(default)]
    pub health_check: Option<ServerHealthCheck>,
    /// Passive health check.
    #[serde(default)]
    pub passive_health_check: Option<PassiveServerHealthCheck>,
}

/// `sticky`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Sticky {
    /// Cookie stickiness.
    #[serde(default)]
    pub cookie: Option<Cookie>,
}

/// `sticky.cookie`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Cookie {
    /// Cookie name.
    #[serde(default)]
    pub name: String,
    /// `Secure`.
    #[serde(default)]
    pub secure: bool,
    /// `HttpOnly`.
    #[serde(default)]
    pub http_only: bool,
    /// `SameSite`.
    #[serde(default)]
    pub same_site: String,
    /// `Max-Age`.
    #[serde(default)]
    pub max_age: i64,
    /// `Path` (default `/`).
    #[serde(default)]
    pub path: Option<String>,
    /// `Domain`.
    #[serde(default)]
    pub domain: String,
}

/// `responseForwarding`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResponseForwarding {
    /// Duration string (or integer seconds).
    #[serde(default)]
    pub flush_interval: String,
}

/// `healthCheck` of a service reference.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServerHealthCheck {
    /// Scheme override.
    #[serde(default)]
    pub scheme: String,
    /// `http` or `grpc`.
    #[serde(default)]
    pub mode: String,
    /// Path.
    #[serde(default)]
    pub path: String,
    /// Method.
    #[serde(default)]
    pub method: String,
    /// Expected status.
    #[serde(default)]
    pub status: i64,
    /// Port override.
    #[serde(default)]
    pub port: i64,
    /// Interval (duration string or seconds).
    #[serde(default)]
    pub interval: Option<IntOrString>,
    /// Interval while unhealthy.
    #[serde(default)]
    pub unhealthy_interval: Option<IntOrString>,
    /// Timeout.
    #[serde(default)]
    pub timeout: Option<IntOrString>,
    /// Host header.
    #[serde(default)]
    pub hostname: String,
    /// Follow redirects (default true).
    #[serde(default)]
    pub follow_redirects: Option<bool>,
    /// Extra headers.
    #[serde(default, deserialize_with = "null_default")]
    pub headers: BTreeMap<String, String>,
}

/// `passiveHealthCheck`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PassiveServerHealthCheck {
    /// Window in which failures are counted.
    #[serde(default)]
    pub failure_window: Option<IntOrString>,
    /// Failures before the server is considered down.
    #[serde(default)]
    pub max_failed_attempts: Option<i64>,
}

/// `TraefikService`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TraefikService {
    /// Object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Specification.
    #[serde(default)]
    pub spec: TraefikServiceSpec,
}

/// `TraefikService.spec`: exactly one type.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TraefikServiceSpec {
    /// Weighted round robin.
    #[serde(default)]
    pub weighted: Option<WeightedRoundRobin>,
    /// Mirroring.
    #[serde(default)]
    pub mirroring: Option<Mirroring>,
    /// Highest random weight.
    #[serde(default)]
    pub highest_random_weight: Option<HighestRandomWeight>,
    /// Failover.
    #[serde(default)]
    pub failover: Option<Failover>,
}

/// `weighted`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WeightedRoundRobin {
    /// Children.
    #[serde(default, deserialize_with = "null_default")]
    pub services: Vec<LoadBalancerSpec>,
    /// Sticky sessions across children.
    #[serde(default)]
    pub sticky: Option<Sticky>,
}

/// `mirroring`: the main service inline, plus mirrors.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Mirroring {
    /// The main service.
    #[serde(flatten)]
    pub service: LoadBalancerSpec,
    /// Mirror the body (default true).
    #[serde(default)]
    pub mirror_body: Option<bool>,
    /// Largest mirrored body (default -1 = unlimited).
    #[serde(default)]
    pub max_body_size: Option<i64>,
    /// Mirrors.
    #[serde(default, deserialize_with = "null_default")]
    pub mirrors: Vec<MirrorService>,
}

/// One mirror.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MirrorService {
    /// The mirror service.
    #[serde(flatten)]
    pub service: LoadBalancerSpec,
    /// Percentage mirrored.
    #[serde(default)]
    pub percent: i64,
}

/// `highestRandomWeight`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HighestRandomWeight {
    /// Children.
    #[serde(default, deserialize_with = "null_default")]
    pub services: Vec<LoadBalancerSpec>,
}

/// `failover`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Failover {
    /// Main service.
    #[serde(default)]
    pub service: LoadBalancerSpec,
    /// Fallback service.
    #[serde(default)]
    pub fallback: LoadBalancerSpec,
    /// Statuses that trigger the fallback.
    #[serde(default)]
    pub errors: FailoverError,
}

/// `failover.errors`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailoverError {
    /// Status ranges such as `500-599`.
    #[serde(default, deserialize_with = "null_default")]
    pub status: Vec<String>,
    /// Largest buffered request body.
    #[serde(default)]
    pub max_request_body_bytes: Option<i64>,
}

/// `Middleware`; the spec stays untyped until middlewares are interpreted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Middleware {
    /// Object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Specification: one key per middleware type.
    #[serde(default)]
    #[schemars(with = "shapes::FreeFormObject")]
    pub spec: Value,
}

/// `MiddlewareTCP`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MiddlewareTcp {
    /// Object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Specification.
    #[serde(default)]
    pub spec: MiddlewareTcpSpec,
}

/// `MiddlewareTCP.spec`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MiddlewareTcpSpec {
    /// `inFlightConn{amount}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<shapes::InFlightConn>")]
    pub in_flight_conn: Option<Value>,
    /// Deprecated `ipWhiteList{sourceRange}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<shapes::IpAllowList>")]
    pub ip_white_list: Option<Value>,
    /// `ipAllowList{sourceRange}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<shapes::IpAllowList>")]
    pub ip_allow_list: Option<Value>,
}

/// `IngressRouteTCP`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct IngressRouteTcp {
    /// Object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Specification.
    #[serde(default)]
    pub spec: IngressRouteTcpSpec,
}

/// `IngressRouteTCP.spec`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IngressRouteTcpSpec {
    /// Ingress class.
    #[serde(default)]
    pub ingress_class_name: Option<String>,
    /// Entry points.
    #[serde(default, deserialize_with = "null_default")]
    pub entry_points: Vec<String>,
    /// Routes.
    #[serde(default, deserialize_with = "null_default")]
    pub routes: Vec<RouteTcp>,
    /// TLS.
    #[serde(default)]
    pub tls: Option<TlsTcp>,
}

/// One TCP route.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteTcp {
    /// Rule, e.g. ``HostSNI(`*`)``.
    #[serde(default, rename = "match")]
    pub match_: String,
    /// Priority.
    #[serde(default)]
    pub priority: i64,
    /// Rule syntax.
    #[serde(default)]
    pub syntax: String,
    /// Services.
    #[serde(default, deserialize_with = "null_default")]
    pub services: Vec<ServiceTcp>,
    /// MiddlewareTCP references.
    #[serde(default, deserialize_with = "null_default")]
    pub middlewares: Vec<ObjectReference>,
}

/// `IngressRouteTCP.spec.tls`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsTcp {
    /// Certificate secret.
    #[serde(default)]
    pub secret_name: String,
    /// Forward TLS untouched.
    #[serde(default)]
    pub passthrough: bool,
    /// TLSOption reference.
    #[serde(default)]
    pub options: Option<ObjectReference>,
    /// TLSStore reference.
    #[serde(default)]
    pub store: Option<ObjectReference>,
    /// Certificate resolver.
    #[serde(default)]
    pub cert_resolver: String,
    /// Domains.
    #[serde(default, deserialize_with = "null_default")]
    pub domains: Vec<Domain>,
}

/// A TCP service reference.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceTcp {
    /// Kubernetes Service name.
    #[serde(default)]
    pub name: String,
    /// Namespace.
    #[serde(default)]
    pub namespace: String,
    /// Port by number or name.
    #[serde(default)]
    pub port: IntOrString,
    /// Weight.
    #[serde(default)]
    pub weight: Option<i64>,
    /// Deprecated termination delay (ms).
    #[serde(default)]
    pub termination_delay: Option<i64>,
    /// PROXY protocol.
    #[serde(default)]
    pub proxy_protocol: Option<ProxyProtocol>,
    /// ServersTransportTCP name.
    #[serde(default)]
    pub servers_transport: String,
    /// TLS towards the backend.
    #[serde(default)]
    pub tls: bool,
    /// Use the ClusterIP.
    #[serde(default, rename = "nativeLB")]
    pub native_lb: Option<bool>,
    /// Use node IPs and the NodePort.
    #[serde(default, rename = "nodePortLB")]
    pub node_port_lb: bool,
}

/// `proxyProtocol`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProxyProtocol {
    /// Version 1 or 2.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub version: i64,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// `IngressRouteUDP`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct IngressRouteUdp {
    /// Object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Specification.
    #[serde(default)]
    pub spec: IngressRouteUdpSpec,
}

/// `IngressRouteUDP.spec`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IngressRouteUdpSpec {
    /// Ingress class.
    #[serde(default)]
    pub ingress_class_name: Option<String>,
    /// Entry points.
    #[serde(default, deserialize_with = "null_default")]
    pub entry_points: Vec<String>,
    /// Routes.
    #[serde(default, deserialize_with = "null_default")]
    pub routes: Vec<RouteUdp>,
}

/// One UDP route.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteUdp {
    /// Services.
    #[serde(default, deserialize_with = "null_default")]
    pub services: Vec<ServiceUdp>,
}

/// A UDP service reference.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceUdp {
    /// Kubernetes Service name.
    #[serde(default)]
    pub name: String,
    /// Namespace.
    #[serde(default)]
    pub namespace: String,
    /// Port by number or name.
    #[serde(default)]
    pub port: IntOrString,
    /// Weight.
    #[serde(default)]
    pub weight: Option<i64>,
    /// Use the ClusterIP.
    #[serde(default, rename = "nativeLB")]
    pub native_lb: Option<bool>,
    /// Use node IPs and the NodePort.
    #[serde(default, rename = "nodePortLB")]
    pub node_port_lb: bool,
}

/// `TLSOption`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TlsOption {
    /// Object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Specification.
    #[serde(default)]
    pub spec: TlsOptionSpec,
}

/// `TLSOption.spec`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsOptionSpec {
    /// Minimum TLS version (`VersionTLS12`).
    #[serde(default)]
    pub min_version: String,
    /// Maximum TLS version.
    #[serde(default)]
    pub max_version: String,
    /// Cipher suites.
    #[serde(default)]
    pub cipher_suites: Option<Vec<String>>,
    /// Curve preferences.
    #[serde(default, deserialize_with = "null_default")]
    pub curve_preferences: Vec<String>,
    /// Client authentication.
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// Reject unknown SNI.
    #[serde(default)]
    pub sni_strict: bool,
    /// ALPN protocols.
    #[serde(default, rename = "alpnProtocols")]
    pub alpn_protocols: Option<Vec<String>>,
    /// Disable session tickets.
    #[serde(default)]
    pub disable_session_tickets: bool,
    /// Deprecated, ignored.
    #[serde(default)]
    pub prefer_server_cipher_suites: Option<bool>,
}

/// `clientAuth`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientAuth {
    /// Secrets with CA certificates.
    #[serde(default, deserialize_with = "null_default")]
    pub secret_names: Vec<String>,
    /// `NoClientCert`, `RequestClientCert`, ...
    #[serde(default)]
    pub client_auth_type: String,
}

/// `TLSStore`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TlsStore {
    /// Object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Specification.
    #[serde(default)]
    pub spec: TlsStoreSpec,
}

/// `TLSStore.spec`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsStoreSpec {
    /// Default certificate secret.
    #[serde(default)]
    pub default_certificate: Option<CertificateRef>,
    /// Default certificate from a resolver.
    #[serde(default)]
    pub default_generated_cert: Option<GeneratedCert>,
    /// More certificates.
    #[serde(default, deserialize_with = "null_default")]
    pub certificates: Vec<CertificateRef>,
}

/// A certificate secret reference.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertificateRef {
    /// Secret name.
    #[serde(default)]
    pub secret_name: String,
}

/// `defaultGeneratedCert`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GeneratedCert {
    /// Resolver.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub resolver: String,
    /// Domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<Domain>,
}

/// `ServersTransport`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ServersTransport {
    /// Object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Specification.
    #[serde(default)]
    pub spec: ServersTransportSpec,
}

/// `ServersTransport.spec`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServersTransportSpec {
    /// SNI / verification name.
    #[serde(default)]
    pub server_name: String,
    /// Skip verification.
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// Root CAs from secrets or config maps.
    #[serde(default, rename = "rootCAs", deserialize_with = "null_default")]
    pub root_cas: Vec<RootCa>,
    /// Deprecated root CA secrets.
    #[serde(default, rename = "rootCAsSecrets", deserialize_with = "null_default")]
    pub root_cas_secrets: Vec<String>,
    /// Client certificate secrets.
    #[serde(default, deserialize_with = "null_default")]
    pub certificates_secrets: Vec<String>,
    /// Cipher suites.
    #[serde(default)]
    pub cipher_suites: Option<Vec<String>>,
    /// Minimum TLS version.
    #[serde(default)]
    pub min_version: String,
    /// Maximum TLS version.
    #[serde(default)]
    pub max_version: String,
    /// Idle connections per host.
    #[serde(default)]
    pub max_idle_conns_per_host: i64,
    /// Timeouts.
    #[serde(default)]
    pub forwarding_timeouts: Option<ForwardingTimeouts>,
    /// Disable HTTP/2.
    #[serde(default, rename = "disableHTTP2")]
    pub disable_http2: bool,
    /// Peer certificate URI SAN.
    #[serde(default, rename = "peerCertURI")]
    pub peer_cert_uri: String,
    /// Peer certificate SANs.
    #[serde(default, rename = "peerCertSANs", deserialize_with = "null_default")]
    #[schemars(with = "Vec<shapes::PeerCertSan>")]
    pub peer_cert_sans: Vec<Value>,
    /// SPIFFE.
    #[serde(default)]
    #[schemars(with = "Option<shapes::Spiffe>")]
    pub spiffe: Option<Value>,
}

/// `forwardingTimeouts`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ForwardingTimeouts {
    /// Dial timeout.
    #[serde(default)]
    pub dial_timeout: Option<IntOrString>,
    /// Response header timeout.
    #[serde(default)]
    pub response_header_timeout: Option<IntOrString>,
    /// Idle connection timeout.
    #[serde(default)]
    pub idle_conn_timeout: Option<IntOrString>,
    /// HTTP/2 read idle timeout.
    #[serde(default)]
    pub read_idle_timeout: Option<IntOrString>,
    /// HTTP/2 ping timeout.
    #[serde(default)]
    pub ping_timeout: Option<IntOrString>,
}

/// A root CA source: exactly one of secret / configMap.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RootCa {
    /// Secret name.
    #[serde(default)]
    pub secret: Option<String>,
    /// ConfigMap name.
    #[serde(default)]
    pub config_map: Option<String>,
}

/// `ServersTransportTCP`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ServersTransportTcp {
    /// Object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Specification.
    #[serde(default)]
    pub spec: ServersTransportTcpSpec,
}

/// `ServersTransportTCP.spec`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServersTransportTcpSpec {
    /// Dial timeout.
    #[serde(default)]
    pub dial_timeout: Option<IntOrString>,
    /// Keep-alive period.
    #[serde(default)]
    pub dial_keep_alive: Option<IntOrString>,
    /// PROXY protocol.
    #[serde(default)]
    pub proxy_protocol: Option<ProxyProtocol>,
    /// Termination delay.
    #[serde(default)]
    pub termination_delay: Option<IntOrString>,
    /// TLS towards the backend.
    #[serde(default)]
    pub tls: Option<TlsClientConfig>,
}

/// `ServersTransportTCP.spec.tls`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsClientConfig {
    /// Server name.
    #[serde(default)]
    pub server_name: String,
    /// Skip verification.
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// Root CAs.
    #[serde(default, rename = "rootCAs", deserialize_with = "null_default")]
    pub root_cas: Vec<RootCa>,
    /// Deprecated root CA secrets.
    #[serde(default, rename = "rootCAsSecrets", deserialize_with = "null_default")]
    pub root_cas_secrets: Vec<String>,
    /// Client certificate secrets.
    #[serde(default, deserialize_with = "null_default")]
    pub certificates_secrets: Vec<String>,
    /// Peer certificate URI.
    #[serde(default, rename = "peerCertURI")]
    pub peer_cert_uri: String,
    /// Peer certificate SANs.
    #[serde(default, rename = "peerCertSANs", deserialize_with = "null_default")]
    #[schemars(with = "Vec<shapes::PeerCertSan>")]
    pub peer_cert_sans: Vec<Value>,
    /// SPIFFE.
    #[serde(default)]
    #[schemars(with = "Option<shapes::Spiffe>")]
    pub spiffe: Option<Value>,
}

/// Schema-only shapes of fields the serde types keep as raw JSON: they
/// give the generated CRD schema ([`crate::definition`]) Traefik's
/// structure without changing how the fields are read.
mod shapes {
    // Only their schemas are used; the fields are never read.
    #![allow(dead_code)]

    use schemars::JsonSchema;

    /// Any object, kept as written (middleware configurations).
    pub type FreeFormObject = serde_json::Map<String, serde_json::Value>;

    /// `inFlightConn` of a MiddlewareTCP.
    #[derive(JsonSchema)]
    #[serde(rename_all = "camelCase")]
    pub struct InFlightConn {
        /// Most simultaneous connections per source IP.
        #[serde(default)]
        pub amount: Option<i64>,
    }

    /// `ipAllowList` (and deprecated `ipWhiteList`) of a MiddlewareTCP.
    #[derive(JsonSchema)]
    #[serde(rename_all = "camelCase")]
    pub struct IpAllowList {
        /// Allowed source IPs or CIDR ranges.
        #[serde(default)]
        pub source_range: Option<Vec<String>>,
    }

    /// One entry of `peerCertSANs`.
    #[derive(JsonSchema)]
    #[serde(rename_all = "camelCase")]
    pub struct PeerCertSan {
        /// SAN type (`DNSName`, `IPAddress`, `URI`, `EmailAddress`).
        #[serde(default, rename = "type")]
        pub type_: Option<String>,
        /// Expected value.
        #[serde(default)]
        pub value: Option<String>,
    }

    /// `spiffe` of a servers transport.
    #[derive(JsonSchema)]
    #[serde(rename_all = "camelCase")]
    pub struct Spiffe {
        /// Accepted SPIFFE IDs.
        #[serde(default)]
        pub ids: Option<Vec<String>>,
        /// Accepted trust domain.
        #[serde(default)]
        pub trust_domain: Option<String>,
    }
}
