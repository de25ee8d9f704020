//! Why an element could not be built, worded after Traefik's log messages.

use thiserror::Error;

use crate::store::NotWatched;

/// A refused reference to another object.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RefError {
    /// `x@kubernetescrd` while cross-namespace references are off: it could
    /// name an object of any namespace.
    #[error("when allowCrossNamespace is disabled, @kubernetescrd references are disallowed")]
    CrdProviderRef,
    /// Explicit other namespace while cross-namespace references are off.
    #[error("allowCrossNamespace is disabled, cross-namespace are disallowed")]
    CrossNamespace,
    /// `x@provider` from a namespace outside `crossProviderNamespaces`.
    #[error("namespace {0:?} is not in crossProviderNamespaces")]
    CrossProvider(String),
}

/// A failure to build a router or service.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BuildError {
    /// Route `kind` other than `Rule`.
    #[error("unsupported match kind {0:?}: only \"Rule\" is supported")]
    UnsupportedMatchKind(String),
    /// Empty `match`.
    #[error("empty match rule")]
    EmptyMatch,
    /// Bad middleware reference.
    #[error("invalid reference to middleware {name}: {cause}")]
    MiddlewareRef {
        /// Middleware name as written.
        name: String,
        /// Why.
        cause: RefError,
    },
    /// Bad TLSOption reference.
    #[error("invalid reference to TLSOption {name:?}: {cause}")]
    TlsOptionRef {
        /// TLSOption name as written.
        name: String,
        /// Why.
        cause: RefError,
    },
    /// Lookup outside the watched namespaces.
    #[error(transparent)]
    NotWatched(#[from] NotWatched),
    /// The Service does not exist.
    #[error("kubernetes service not found: {0}")]
    ServiceNotFound(String),
    /// Port 0 or "".
    #[error("ingressRoute service port not defined")]
    PortNotDefined,
    /// No such port on the Service.
    #[error("service port not found: {0}")]
    PortNotFound(String),
    /// healthCheck on a non-ExternalName Service.
    #[error("healthCheck allowed only for ExternalName services: {0}")]
    HealthCheckNotExternalName(String),
    /// ExternalName while `allowExternalNameServices` is off.
    #[error("externalName services not allowed: {0}")]
    ExternalNameNotAllowed(String),
    /// Scheme other than http/https/h2c.
    #[error("invalid scheme {0:?} specified")]
    InvalidScheme(String),
    /// nativeLB on a headless Service.
    #[error("getting native Kubernetes Service address: no clusterIP on headless service: {0}")]
    HeadlessService(String),
    /// nativeLB on a Service without ClusterIP.
    #[error("getting native Kubernetes Service address: no clusterIP found for service: {0}")]
    NoClusterIp(String),
    /// nodePortLB while cluster-scope lookups are disabled.
    #[error("nodes lookup is disabled")]
    NodesLookupDisabled,
    /// nodePortLB without any Node.
    #[error("nodes not found for NodePort service {0}")]
    NoNodes(String),
    /// nodePortLB with Nodes lacking InternalIP addresses.
    #[error("no servers were generated for service {0}")]
    NoNodeServers(String),
    /// No serving endpoint and `allowEmptyServices` off.
    #[error("no servers found for {0}")]
    NoServers(String),
    /// Unknown load-balancer strategy.
    #[error("load-balancer strategy {0} is not supported")]
    Strategy(String),
    /// A duration that does not parse.
    #[error("unable to parse {field}: {reason}")]
    Duration {
        /// Which option.
        field: &'static str,
        /// Parser message.
        reason: String,
    },
    /// `st@kubernetescrd` while cross-namespace references are off.
    #[error("invalid reference to serversTransport {0}: namespace-name@kubernetescrd format is not allowed when crossnamespace is disallowed")]
    ServersTransportCrdRef(String),
    /// `st@provider` from a namespace outside `crossProviderNamespaces`.
    #[error("serversTransport {name:?} reference is not allowed: namespace {namespace:?} is not in crossProviderNamespaces")]
    ServersTransportCrossProvider {
        /// Reference.
        name: String,
        /// Referencing namespace.
        namespace: String,
    },
    /// A service in another namespace while cross-namespace is off.
    #[error("service {service} not in the parent resource namespace {parent}")]
    ServiceNotInParentNamespace {
        /// `ns/name` of the target.
        service: String,
        /// Parent namespace.
        parent: String,
    },
    /// `svc@provider` from a namespace outside `crossProviderNamespaces`.
    #[error("service {name:?} reference is not allowed: namespace {namespace:?} is not in crossProviderNamespaces")]
    ServiceCrossProvider {
        /// Reference.
        name: String,
        /// Referencing namespace.
        namespace: String,
    },
    /// Service `kind` other than Service / TraefikService.
    #[error("unsupported service kind {0}")]
    UnsupportedServiceKind(String),
    /// Bad service-level middleware reference.
    #[error("could not create middleware keys: {0}")]
    ServiceMiddlewares(Box<BuildError>),
    /// TraefikService without a type.
    #[error("unspecified service type")]
    UnspecifiedServiceType,
    /// Failover main service.
    #[error("getting service: {0}")]
    FailoverService(Box<BuildError>),
    /// Failover fallback.
    #[error("getting fallback service: {0}")]
    FailoverFallback(Box<BuildError>),
    /// Parent in another namespace while cross-namespace is off.
    #[error("cross-namespace reference to parent IngressRoute {0} not allowed")]
    ParentCrossNamespace(String),
    /// Parent does not exist.
    #[error("parent IngressRoute {0} does not exist")]
    ParentMissing(String),
}

/// A [`BuildError`] with the field path it concerns inside its resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// Field path, e.g. `spec.routes[0].services[1].port`.
    pub field: String,
    /// The failure.
    pub error: BuildError,
}

impl Located {
    /// Wraps `error` at `field`.
    pub fn new(field: impl Into<String>, error: BuildError) -> Self {
        Located {
            field: field.into(),
            error,
        }
    }
}
