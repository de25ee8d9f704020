//! Sending a request to a server and relaying its answer, tunnels included.

use http::uri::{PathAndQuery, Scheme, Uri};
use http::{header, HeaderValue, Request, Response, StatusCode, Version};
use std::any::Any;
use std::sync::Arc;
use tokio::io::AsyncWriteExt as _;

use super::body::{boxed, ProxyBody};
use super::error::ProxyError;
use super::forwarded;
use super::hop_by_hop;
use super::http1::{Connection, Switched};
use super::upgrade::ClientUpgrade;
use crate::runtime::server::{Protocol, Server};
use crate::runtime::service::LoadBalancer;

/// A new request with the head of `parts` (method, URI, version, headers, extensions) and
/// `body`: how a request is sent again (retries, failover, buffering).
pub fn rebuild(parts: &http::request::Parts, body: ProxyBody) -> Request<ProxyBody> {
    let mut request = Request::new(body);
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = parts.uri.clone();
    *request.version_mut() = parts.version;
    *request.headers_mut() = parts.headers.clone();
    *request.extensions_mut() = parts.extensions.clone();
    request
}

/// What must stay alive as long as a request's upgraded tunnel (an `inFlightReq` slot, say).
///
/// Middlewares add to it in the request's extensions; the forwarding step takes it out before
/// sending, and hands it to the tunnel when the origin switches protocols, or drops it when it
/// does not (the response then carries whatever the middleware attached to it).
#[derive(Clone, Default)]
pub struct TunnelHold(Vec<Arc<dyn Any + Send + Sync>>);

impl TunnelHold {
    /// Keeps `value` until the tunnel of `request` (if one opens) is closed.
    pub fn attach(request: &mut Request<ProxyBody>, value: Arc<dyn Any + Send + Sync>) {
        request
            .extensions_mut()
            .get_or_insert_default::<TunnelHold>()
            .0
            .push(value);
    }
}

/// What the request handler hands over for one upstream exchange.
pub struct Outgoing {
    pub request: Request<ProxyBody>,
    /// Path and query to send (sanitised by the entry point).
    pub path_and_query: PathAndQuery,
    /// The Host the client asked for.
    pub host: HeaderValue,
    /// For an upgrade request: the protocol and the client side of the future tunnel.
    pub upgrade: Option<(HeaderValue, ClientUpgrade)>,
}

/// Forwards `outgoing` to `server` of `lb` and returns the origin's response.
pub async fn forward(
    lb: &LoadBalancer,
    server: &Server,
    outgoing: Outgoing,
) -> Result<Response<ProxyBody>, ProxyError> {
    let Outgoing {
        mut request,
        path_and_query,
        host,
        upgrade,
    } = outgoing;

    let path_and_query = match &server.base_path {
        Some(base) => PathAndQuery::try_from(format!("{base}{path_and_query}"))
            .map_err(|e| ProxyError::BadRequest(format!("path cannot be forwarded: {e}")))?,
        None => path_and_query,
    };
    // HTTP/1.1 connections are ours and take the origin-form target as is (so do https
    // connections: the HTTP/2 pool fills in `:scheme` and `:authority` itself); the h2c client
    // wants the absolute form to pick its connection and fill in `:authority`.
    *request.uri_mut() = match server.protocol {
        Protocol::Http | Protocol::Https => Uri::from(path_and_query),
        Protocol::H2c => Uri::builder()
            .scheme(Scheme::HTTP)
            .authority(server.authority.clone())
            .path_and_query(path_and_query)
            .build()
            .map_err(|e| ProxyError::Internal(format!("upstream URI: {e}")))?,
    };
    *request.version_mut() = match server.protocol {
        Protocol::Http | Protocol::Https => Version::HTTP_11,
        Protocol::H2c => Version::HTTP_2,
    };
    let hold = request.extensions_mut().remove::<TunnelHold>();
    // Only the HTTP/1.1 pool of cleartext origins writes deferred forwarded headers itself.
    if server.protocol != Protocol::Http {
        if let Some(deferred) = request.extensions_mut().remove::<forwarded::Deferred>() {
            deferred.apply(request.headers_mut());
        }
    }
    let headers = request.headers_mut();
    hop_by_hop::remove(
        headers,
        upgrade.as_ref().map(|(protocol, _)| protocol.clone()),
    );
    let host = if lb.pass_host_header {
        host
    } else {
        HeaderValue::from_str(server.authority.as_str()).unwrap_or(host)
    };
    headers.insert(header::HOST, host);

    let transport = &lb.transport;
    // Upgrades need HTTP/1.1 (as in Traefik), so they never take the HTTP/2 pool.
    let https2 = transport.https2().filter(|_| upgrade.is_none());
    // Pinned where it is: the exchange's future is large, and moving it into the timeout
    // would copy it on every request.
    let sent = std::pin::pin!(async {
        match server.protocol {
            Protocol::Http => transport
                .http1()
                .send(&server.authority, request)
                .await
                .map_err(|e| classify(&server.url, &e)),
            Protocol::Https => match https2 {
                // Boxed: the HTTP/2 exchange's future is several kilobytes, and every
                // connection's task would otherwise reserve room for it.
                Some(pool) => {
                    Box::pin(pool.send(&server.authority, transport.https1(), request)).await
                }
                None => transport.https1().send(&server.authority, request).await,
            }
            .map_err(|e| classify(&server.url, &e)),
            Protocol::H2c => match Box::pin(transport.h2c().request(request)).await {
                Ok(response) => {
                    let (parts, body) = response.into_parts();
                    Ok(Response::from_parts(parts, boxed(body)))
                }
                Err(e) => Err(classify(&server.url, &e)),
            },
        }
    });
    let mut response = match transport.response_header_timeout {
        Some(limit) => match tokio::time::timeout(limit, sent).await {
            Ok(result) => result?,
            Err(_) => {
                return Err(ProxyError::OriginTimeout {
                    server: server.url.clone(),
                    reason: format!("no response headers within {limit:?}"),
                })
            }
        },
        None => sent.await?,
    };

    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        let origin_side = response
            .extensions_mut()
            .remove::<Switched>()
            .and_then(|s| s.take());
        if let (Some((_, client_side)), Some(origin_side)) = (upgrade, origin_side) {
            tokio::spawn(tunnel(client_side, origin_side, hold));
        }
        return Ok(response);
    }
    hop_by_hop::remove(response.headers_mut(), None);
    Ok(response)
}

/// Copies bytes both ways between the client and the origin once the client side has switched
/// protocols (what either side sent past the 101 exchange goes first); `_hold` is released
/// when the tunnel closes.
async fn tunnel(client: ClientUpgrade, origin: Connection, _hold: Option<TunnelHold>) {
    let client = match client.wait().await {
        Ok(client) => client,
        Err(error) => {
            tracing::debug!(%error, "upgrade did not complete");
            return;
        }
    };
    let (mut client, client_early) = (client.io, client.read_ahead);
    let (mut origin, early) = origin.into_parts();
    if !early.is_empty() {
        if let Err(error) = client.write_all(&early).await {
            tracing::debug!(%error, "tunnel closed with an error");
            return;
        }
    }
    if !client_early.is_empty() {
        if let Err(error) = origin.write_all(&client_early).await {
            tracing::debug!(%error, "tunnel closed with an error");
            return;
        }
    }
    if let Err(error) = tokio::io::copy_bidirectional(&mut client, &mut origin).await {
        tracing::debug!(%error, "tunnel closed with an error");
    }
}

/// Sorts a client error into 504 (timed out) or 502 (anything else the origin did, TLS
/// failures included: the reason, logged, carries the rustls error, e.g. an unknown issuer).
fn classify(server: &str, error: &(dyn std::error::Error + 'static)) -> ProxyError {
    let mut source = error.source();
    let mut reason = error.to_string();
    while let Some(cause) = source {
        reason = format!("{reason}: {cause}");
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::TimedOut {
                return ProxyError::OriginTimeout {
                    server: server.to_owned(),
                    reason,
                };
            }
        }
        source = cause.source();
    }
    ProxyError::OriginUnreachable {
        server: server.to_owned(),
        reason,
    }
}
