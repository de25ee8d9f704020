//! Middlewares: what runs between a router's match and its service, in declaration order.
//!
//! Each middleware is compiled once from its dynamic configuration (Traefik's field names) into a
//! value implementing [`Middleware`]. On the request path a router's middlewares form a chain:
//! each one receives the request and a [`Next`] handle for the rest of the chain (ending in the
//! router's service), so it can rewrite the request, answer early (redirects, auth, limits), or
//! wrap the rest (retry, circuit breaker, compression) and rewrite the response.

pub mod auth;
pub mod buffering;
pub mod circuit_breaker;
pub mod compress;
pub mod content_type;
pub mod errors;
pub mod grpc_web;
pub mod headers;
pub mod in_flight;
pub mod ip_allow_list;
pub mod pass_tls_client_cert;
pub mod paths;
pub mod rate_limit;
pub mod redirect;
pub mod retry;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use http::Response;
use serde_json::Value;

use crate::dataplane::body::ProxyBody;
use crate::dataplane::error::ProxyError;
use crate::dataplane::request::{serve, Connection};
use crate::dataplane::upstream::Outgoing;
use crate::runtime::Service;

/// The future a middleware returns: the response for the client, or an error Sluice answers for.
pub type Answer<'a> =
    Pin<Box<dyn Future<Output = Result<Response<ProxyBody>, ProxyError>> + Send + 'a>>;

/// One compiled middleware.
pub trait Middleware: Send + Sync + std::fmt::Debug {
    /// Handles a request; call `next.run(outgoing)` to pass it on.
    fn handle<'a>(
        &'a self,
        connection: &'a Connection,
        outgoing: Outgoing,
        next: Next<'a>,
    ) -> Answer<'a>;
}

/// The rest of a chain: the middlewares after the current one, then (inside a `chain`
/// middleware) the rest of the enclosing chain, and finally the router's service.
#[derive(Clone, Copy)]
pub struct Next<'a> {
    rest: &'a [Arc<dyn Middleware>],
    then: Option<&'a Next<'a>>,
    service: &'a Arc<Service>,
    connection: &'a Connection,
}

impl<'a> Next<'a> {
    /// A chain of `middlewares` ending in `service`.
    pub fn new(
        middlewares: &'a [Arc<dyn Middleware>],
        service: &'a Arc<Service>,
        connection: &'a Connection,
    ) -> Self {
        Self {
            rest: middlewares,
            then: None,
            service,
            connection,
        }
    }

    /// Runs the rest of the chain on `outgoing`.
    pub fn run(self, outgoing: Outgoing) -> Answer<'a> {
        match self.rest.split_first() {
            Some((first, rest)) => first.handle(self.connection, outgoing, Next { rest, ..self }),
            None => match self.then {
                Some(then) => then.run(outgoing),
                None => Box::pin(serve(self.service, outgoing)),
            },
        }
    }
}

/// Why a middleware configuration cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct MiddlewareError {
    /// Field path inside the middleware, e.g. `stripPrefix.prefixes[0]`.
    pub field: String,
    pub message: String,
}

impl MiddlewareError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// What a middleware may look up while it is compiled.
pub trait Resolver {
    /// A service by name, as written in the middleware's configuration (qualified with the
    /// middleware's own provider when it has none).
    fn service(&mut self, name: &str) -> Result<Arc<Service>, String>;
    /// Another middleware by name, likewise.
    fn middleware(&mut self, name: &str) -> Result<Arc<dyn Middleware>, String>;
}

/// Compiles `http.middlewares.NAME` (`config` is the object holding exactly one middleware type).
pub fn compile(
    name: &str,
    config: &Value,
    resolver: &mut dyn Resolver,
) -> Result<Arc<dyn Middleware>, MiddlewareError> {
    let Some(object) = config.as_object() else {
        return Err(MiddlewareError::new(
            "",
            "a middleware must be an object naming its type",
        ));
    };
    let mut types = object.iter();
    let (kind, spec) = match (types.next(), types.next()) {
        (Some(only), None) => only,
        (None, _) => return Err(MiddlewareError::new("", "the middleware has no type")),
        (Some((a, _)), Some((b, _))) => {
            return Err(MiddlewareError::new(
                "",
                format!("a middleware has exactly one type; this one has `{a}` and `{b}`"),
            ))
        }
    };
    let within = |e: MiddlewareError| MiddlewareError {
        field: if e.field.is_empty() {
            kind.clone()
        } else {
            format!("{kind}.{}", e.field)
        },
        message: e.message,
    };
    match kind.as_str() {
        "addPrefix" | "stripPrefix" | "stripPrefixRegex" | "replacePath" | "replacePathRegex" => {
            paths::compile(kind, spec).map_err(within)
        }
        "redirectScheme" | "redirectRegex" => redirect::compile(kind, spec).map_err(within),
        "headers" => headers::compile(spec).map_err(within),
        "contentType" => content_type::compile(spec).map_err(within),
        "basicAuth" | "digestAuth" | "forwardAuth" => auth::compile(kind, spec).map_err(within),
        "ipAllowList" | "ipWhiteList" => ip_allow_list::compile(spec).map_err(within),
        "inFlightReq" => in_flight::compile(spec).map_err(within),
        "passTLSClientCert" => pass_tls_client_cert::compile(spec).map_err(within),
        "rateLimit" => rate_limit::compile(name, spec).map_err(within),
        "retry" => retry::compile(spec).map_err(within),
        "circuitBreaker" => circuit_breaker::compile(spec).map_err(within),
        "buffering" => buffering::compile(spec).map_err(within),
        "compress" => compress::compile(spec).map_err(within),
        "errors" => errors::compile(spec, resolver).map_err(within),
        "grpcWeb" => grpc_web::compile(spec).map_err(within),
        "chain" => chain(spec, resolver).map_err(within),
        other => Err(MiddlewareError::new(other, "unknown middleware type")),
    }
}

/// `chain`: several middlewares used as one.
#[derive(Debug)]
struct Chain {
    members: Vec<Arc<dyn Middleware>>,
}

impl Middleware for Chain {
    fn handle<'a>(
        &'a self,
        connection: &'a Connection,
        outgoing: Outgoing,
        next: Next<'a>,
    ) -> Answer<'a> {
        Box::pin(async move {
            let inner = Next {
                rest: &self.members,
                then: Some(&next),
                service: next.service,
                connection,
            };
            inner.run(outgoing).await
        })
    }
}

fn chain(
    spec: &Value,
    resolver: &mut dyn Resolver,
) -> Result<Arc<dyn Middleware>, MiddlewareError> {
    let names = spec
        .get("middlewares")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            MiddlewareError::new("middlewares", "a list of middleware names is required")
        })?;
    let mut members = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let name = name
            .as_str()
            .ok_or_else(|| MiddlewareError::new(format!("middlewares[{i}]"), "must be a name"))?;
        members.push(
            resolver
                .middleware(name)
                .map_err(|e| MiddlewareError::new(format!("middlewares[{i}]"), e))?,
        );
    }
    Ok(Arc::new(Chain { members }))
}
