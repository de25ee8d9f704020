//! The life of one request, in order: take a runtime snapshot, clean the path, find the router,
//! set the forwarded headers, pick a server through the router's service, forward, relay.

use std::borrow::Cow;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use http::uri::PathAndQuery;
use http::{header, HeaderMap, HeaderValue, Request, Response, Uri};
use http_body_util::BodyExt as _;
use sluice_rules::{canonical_host, routing_path, sanitize_path, RequestInfo};

use super::body::{boxed, full, ProxyBody};
use super::error::ProxyError;
use super::forwarded::{self, Origin};
use super::hop_by_hop;
use super::mirror;
use super::upgrade::ClientUpgrade;
use super::upstream::{self, Outgoing};
use crate::middleware::Next;
use crate::runtime::service::{Failover, LoadBalancer, Mirroring};
use crate::runtime::sticky::StickyCookie;
use crate::runtime::strategy::{Strategy, Tracked};
use crate::runtime::{Runtime, Service};
use crate::tls::acceptor::{AlpnChallenges, TlsInfo};
use crate::tls::TlsState;

/// What every connection of every entry point shares.
#[derive(Debug)]
pub struct Shared {
    /// The current runtime; swapped by the reload loop.
    pub runtime: ArcSwap<Runtime>,
    /// This host's name, sent as X-Forwarded-Server.
    pub server_name: HeaderValue,
    /// Session tickets, session cache and crypto provider of TLS entry points.
    pub tls: Arc<TlsState>,
    /// Pending ACME challenges (HTTP-01 tokens, TLS-ALPN-01 certificates), when a resolver runs.
    pub challenges: Option<Arc<dyn Challenges>>,
    /// `/ping` and `/ready`, when `ping` is enabled.
    pub health: Option<super::ping::Health>,
}

/// Pending ACME challenges, answered before routing.
pub trait Challenges: AlpnChallenges {
    /// The key authorization to answer for an HTTP-01 `token` asked on `entry_point`, while it
    /// is pending and that entry point is one a resolver's `httpChallenge.entryPoint` names.
    fn http01(&self, entry_point: &str, token: &str) -> Option<String>;

    /// Whether a resolver validates HTTP-01 on `entry_point` (its challenge path is then
    /// answered by Sluice, never routed).
    fn serves_http01(&self, entry_point: &str) -> bool;
}

/// Where ACME servers fetch HTTP-01 answers (RFC 8555 §8.3).
pub const HTTP01_PREFIX: &str = "/.well-known/acme-challenge/";

/// Facts about one client connection, fixed when it is accepted.
#[derive(Debug)]
pub struct Connection {
    pub entry_point: Arc<str>,
    pub peer: SocketAddr,
    /// The peer's IP as a header value, for X-Forwarded-For and X-Real-Ip.
    pub peer_ip: HeaderValue,
    /// Whether this client's X-Forwarded-* headers are believed.
    pub trusted: bool,
    pub tls: bool,
    /// Handshake facts of a TLS connection.
    pub tls_info: Option<Arc<TlsInfo>>,
}

/// Handles one request from start to end on one runtime snapshot. `upgrade` is the client
/// side of a tunnel, for a request that asks to switch protocols on a connection that can.
pub async fn handle(
    shared: &Shared,
    connection: &Connection,
    request: Request<ProxyBody>,
    upgrade: Option<ClientUpgrade>,
) -> Response<ProxyBody> {
    if let Some(health) = &shared.health {
        if let Some(response) = super::ping::answer(health, &connection.entry_point, &request) {
            return response;
        }
    }
    let snapshot = shared.runtime.load_full();
    if let Some(answer) = shared
        .challenges
        .as_ref()
        .and_then(|c| http01_answer(c.as_ref(), connection, &request))
    {
        return answer;
    }
    let mut watch = ClientWatch::new(&request, connection);
    let response = match route_and_forward(&snapshot, shared, connection, request, upgrade).await {
        Ok(response) => response,
        Err(error) => {
            match &error {
                ProxyError::NoRouter => tracing::debug!(%error),
                _ => {
                    tracing::warn!(entry_point = %connection.entry_point, client = %connection.peer, %error)
                }
            }
            error.into_response()
        }
    };
    watch.answered();
    response
}

async fn route_and_forward(
    runtime: &Runtime,
    shared: &Shared,
    connection: &Connection,
    mut request: Request<ProxyBody>,
    client_upgrade: Option<ClientUpgrade>,
) -> Result<Response<ProxyBody>, ProxyError> {
    let target = target(request.uri(), request.headers())?;
    let host = canonical_host(target.raw_host());
    let query = request.uri().query();
    let router = {
        let info = RequestInfo {
            method: request.method().as_str(),
            host: &host,
            raw_host: target.raw_host(),
            path: &target.routed_path,
            query: query.unwrap_or(""),
            headers: request.headers(),
            client_ip: Some(connection.peer.ip()),
        };
        let table = runtime
            .routes(&connection.entry_point, connection.tls)
            .ok_or(ProxyError::NoRouter)?;
        table
            .lookup(&info)
            .ok_or(ProxyError::NoRouter)?
            .value
            .clone()
    };
    tracing::trace!(router = %router.name, "matched");
    if let (Some(expected), Some(info)) = (&router.tls_options, &connection.tls_info) {
        if *expected != info.options {
            tracing::debug!(router = %router.name, sni = ?info.server_name, host = %target.raw_host(),
                handshake = %info.options, router_options = %expected, "TLS options differ: 421");
            return Err(ProxyError::Misdirected);
        }
    }

    // Reuse the request's own path and query unless sanitising changed the path.
    let path_and_query = match (&target.path, request.uri().path_and_query()) {
        (Cow::Borrowed(_), Some(original)) => original.clone(),
        _ => {
            let text = match query {
                Some(q) => format!("{}?{q}", target.path),
                None => target.path.into_owned(),
            };
            PathAndQuery::try_from(text)
                .map_err(|e| ProxyError::BadRequest(format!("path cannot be forwarded: {e}")))?
        }
    };
    let host = target.host;
    let raw_host = host.to_str().unwrap_or("");
    let upgrade = hop_by_hop::upgrade_protocol(request.headers());
    let websocket = upgrade
        .as_ref()
        .is_some_and(|p| p.as_bytes().eq_ignore_ascii_case(b"websocket"));
    let origin = Origin {
        client_ip: &connection.peer_ip,
        trusted: connection.trusted,
        tls: connection.tls,
        websocket,
        host: raw_host,
        host_value: &host,
        server_name: &shared.server_name,
    };
    if router.middlewares.is_empty() && !connection.trusted {
        // Nothing reads the headers before they are sent: write them when they are sent.
        let deferred = forwarded::Deferred::new(request.headers_mut(), &origin);
        request.extensions_mut().insert(deferred);
    } else {
        forwarded::apply(request.headers_mut(), &origin);
        request
            .extensions_mut()
            .insert(forwarded::ClientAddress(connection.peer_ip.clone()));
    }
    let upgrade = upgrade.map(|protocol| {
        (
            protocol,
            client_upgrade.unwrap_or_else(ClientUpgrade::unsupported),
        )
    });
    let outgoing = Outgoing {
        request,
        path_and_query,
        host,
        upgrade,
    };
    if router.middlewares.is_empty() {
        // No chain to run: await the service in place rather than build (and copy) a boxed
        // future for it.
        return serve(&router.service, outgoing).await;
    }
    Next::new(&router.middlewares, &router.service, connection)
        .run(outgoing)
        .await
}

/// The answer to an ACME HTTP-01 validation request, when it is one for a pending token.
fn http01_answer(
    challenges: &dyn Challenges,
    connection: &Connection,
    request: &Request<ProxyBody>,
) -> Option<Response<ProxyBody>> {
    // Like Traefik's internal challenge router: cleartext only, on the challenge entry points,
    // and every path under the prefix belongs to it (an unknown token is a 404).
    if connection.tls {
        return None;
    }
    let entry_point: &str = &connection.entry_point;
    let token = request.uri().path().strip_prefix(HTTP01_PREFIX)?;
    if !challenges.serves_http01(entry_point) {
        return None;
    }
    let Some(key_authorization) = challenges.http01(entry_point, token) else {
        return Some(ProxyError::NoRouter.into_response());
    };
    tracing::debug!(entry_point, token, "answering an ACME HTTP-01 challenge");
    Response::builder()
        .header(header::CONTENT_TYPE, "text/plain")
        .body(full(key_authorization))
        .ok()
}

/// Where a request is going, as routing sees it.
pub struct Target<'a> {
    /// Sanitised path, still escaped: what is forwarded.
    pub path: Cow<'a, str>,
    /// The path matchers see (see [`routing_path`]).
    pub routed_path: Cow<'a, str>,
    /// The host asked for, port included as sent: the Host header as received (shared, not
    /// copied), or built from the URI's authority (HTTP/2, absolute form); empty when there is
    /// neither.
    pub host: HeaderValue,
}

impl Target<'_> {
    /// The host asked for as text.
    pub fn raw_host(&self) -> &str {
        self.host.to_str().unwrap_or("")
    }
}

/// Works out the target of a request; a malformed path is a 400.
pub fn target<'a>(uri: &'a Uri, headers: &HeaderMap) -> Result<Target<'a>, ProxyError> {
    let path = sanitize_path(uri.path()).map_err(|e| ProxyError::BadRequest(e.to_string()))?;
    let routed_path = match &path {
        Cow::Borrowed(p) => routing_path(p).map_err(|e| ProxyError::BadRequest(e.to_string()))?,
        Cow::Owned(p) => Cow::Owned(
            routing_path(p)
                .map_err(|e| ProxyError::BadRequest(e.to_string()))?
                .into_owned(),
        ),
    };
    // Absolute-form targets and HTTP/2 carry the host in the URI; it wins over the Host header.
    let host = match uri.authority() {
        Some(authority) if !authority.host().is_empty() => {
            HeaderValue::from_str(authority.as_str()).ok()
        }
        _ => headers
            .get(header::HOST)
            .filter(|value| value.to_str().is_ok())
            .cloned(),
    }
    .unwrap_or(HeaderValue::from_static(""));
    Ok(Target {
        path,
        routed_path,
        host,
    })
}

/// Sends a request through a service tree: weighted services pick a child, mirroring services
/// copy, load balancers pick a server and forward.
pub async fn serve(
    service: &Arc<Service>,
    outgoing: Outgoing,
) -> Result<Response<ProxyBody>, ProxyError> {
    // Sticky cookies to set on the answer, one per sticky level passed through.
    let mut cookies = Vec::new();
    let mut current = service;
    let response = loop {
        match &**current {
            Service::Weighted(weighted) => {
                let index = sticky_pick(
                    weighted.sticky.as_ref(),
                    &outgoing,
                    &mut cookies,
                    |i| weighted.is_up(i),
                    // Only hash-based picks need the client's address.
                    || {
                        weighted
                            .pick_index(weighted.hrw.as_ref().and_then(|_| client_ip(&outgoing)))
                    },
                );
                current = index
                    .and_then(|i| weighted.children.get(i))
                    .ok_or_else(|| ProxyError::NoServer(weighted.name.clone()))?;
            }
            Service::LoadBalancer(lb) => {
                let index = sticky_pick(
                    lb.sticky.as_ref(),
                    &outgoing,
                    &mut cookies,
                    |i| lb.health.is_up(i),
                    || {
                        let client = (lb.strategy == Strategy::Hrw)
                            .then(|| client_ip(&outgoing))
                            .flatten();
                        lb.pick_index(client)
                    },
                )
                .ok_or_else(|| ProxyError::NoServer(lb.name.clone()))?;
                break forward_tracked(lb, index, outgoing).await;
            }
            Service::Mirroring(mirroring) => break serve_mirroring(mirroring, outgoing).await,
            Service::Failover(failover) if failover.errors.is_some() && failover.main.is_up() => {
                break serve_failover(failover, outgoing).await;
            }
            Service::Failover(failover) => {
                current = failover
                    .pick()
                    .ok_or_else(|| ProxyError::NoServer(failover.name.clone()))?;
            }
            Service::Noop(name) => return Err(ProxyError::NoServer(name.clone())),
        }
    };
    let mut response = response?;
    for cookie in cookies {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

/// Forwards to a server, counting the request as in flight (until its response body ends) and
/// timing its first byte when the balancer's strategy uses them.
async fn forward_tracked(
    lb: &LoadBalancer,
    index: usize,
    mut outgoing: Outgoing,
) -> Result<Response<ProxyBody>, ProxyError> {
    let Some(server) = lb.servers.get(index) else {
        return Err(ProxyError::NoServer(lb.name.clone()));
    };
    if let Some(client) = outgoing
        .request
        .extensions()
        .get::<forwarded::ClientAddress>()
        .cloned()
    {
        forwarded::append_client(outgoing.request.headers_mut(), &client);
    }
    // One await of the forwarding future: each await site of it would take room of its own in
    // this function's future (and in every connection's task).
    let tracked = lb.strategy.tracks_load() || lb.passive.is_some();
    let in_flight = lb.strategy.tracks_load().then(|| lb.load.begin(index));
    let started = tracked.then(Instant::now);
    let result = upstream::forward(lb, server, outgoing).await;
    if !tracked {
        return result;
    }
    if let Some(passive) = &lb.passive {
        let failed = match &result {
            Ok(response) => response.status().is_server_error(),
            Err(error) => matches!(
                error,
                ProxyError::OriginUnreachable { .. } | ProxyError::OriginTimeout { .. }
            ),
        };
        passive.record(index, failed, &lb.health, lb.check.is_some());
    }
    match (in_flight, started) {
        (Some(in_flight), Some(started)) => {
            lb.load.record_ttfb(index, started.elapsed());
            result.map(|response| response.map(|body| boxed(Tracked::new(body, in_flight))))
        }
        _ => result,
    }
}

/// The client address for hash-based strategies: X-Real-Ip, which the entry point sets to the
/// connection's peer (or keeps from a trusted proxy in front).
fn client_ip(outgoing: &Outgoing) -> Option<std::net::IpAddr> {
    let request = &outgoing.request;
    request
        .headers()
        .get("x-real-ip")
        .or_else(|| {
            request
                .extensions()
                .get::<forwarded::Deferred>()
                .map(forwarded::Deferred::client_ip)
        })
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// Picks by cookie when the request carries a valid one for an entry that is up, else by
/// `pick`, and records the cookie to set: on every pick not made by cookie, and when a legacy
/// cookie value must be rewritten.
fn sticky_pick(
    sticky: Option<&StickyCookie>,
    outgoing: &Outgoing,
    cookies: &mut Vec<HeaderValue>,
    up: impl Fn(usize) -> bool,
    pick: impl FnOnce() -> Option<usize>,
) -> Option<usize> {
    let Some(sticky) = sticky else { return pick() };
    let (index, set) = match sticky
        .lookup(outgoing.request.headers())
        .filter(|(i, _)| up(*i))
    {
        Some((index, rewrite)) => (index, rewrite),
        None => (pick()?, true),
    };
    if set {
        cookies.extend(sticky.set_cookie(index));
    }
    Some(index)
}

type Answer<'a> =
    Pin<Box<dyn Future<Output = Result<Response<ProxyBody>, ProxyError>> + Send + 'a>>;

/// Failover on status: the body is kept (up to the limit) so the fallback can get the same
/// request when main answers with one of the listed statuses.
fn serve_failover(failover: &Failover, outgoing: Outgoing) -> Answer<'_> {
    Box::pin(async move {
        let Some(errors) = &failover.errors else {
            return serve(&failover.main, outgoing).await;
        };
        let Outgoing {
            request,
            path_and_query,
            host,
            upgrade,
        } = outgoing;
        let (parts, mut body) = request.into_parts();
        let mut kept = Vec::new();
        let mut size: u64 = 0;
        while let Some(frame) = body.frame().await {
            let frame =
                frame.map_err(|e| ProxyError::BadRequest(format!("reading request body: {e}")))?;
            if let Ok(data) = frame.into_data() {
                size += data.len() as u64;
                if errors.max_request_body_bytes.is_some_and(|max| size > max) {
                    return Ok(ProxyError::PayloadTooLarge.into_response());
                }
                kept.push(data);
            }
        }
        let whole: bytes::Bytes = kept.concat().into();
        let again = |parts: &http::request::Parts| upstream::rebuild(parts, full(whole.clone()));
        let first = Outgoing {
            request: again(&parts),
            path_and_query: path_and_query.clone(),
            host: host.clone(),
            upgrade: None,
        };
        let response = serve(&failover.main, first).await?;
        if !errors.matches(response.status().as_u16()) {
            return Ok(response);
        }
        drop(response);
        let second = Outgoing {
            request: again(&parts),
            path_and_query,
            host,
            upgrade,
        };
        serve(&failover.fallback, second).await
    })
}

/// Mirroring services call [`serve`] again; the box breaks the recursion.
fn serve_mirroring(mirroring: &Mirroring, outgoing: Outgoing) -> Answer<'_> {
    Box::pin(mirror::serve(mirroring, outgoing))
}

/// Logs a request whose client went away before it was answered (Traefik's 499).
struct ClientWatch<'a> {
    started: Instant,
    method: http::Method,
    uri: http::Uri,
    connection: &'a Connection,
    answered: bool,
}

impl<'a> ClientWatch<'a> {
    fn new<B>(request: &Request<B>, connection: &'a Connection) -> Self {
        Self {
            started: Instant::now(),
            method: request.method().clone(),
            uri: request.uri().clone(),
            connection,
            answered: false,
        }
    }

    fn answered(&mut self) {
        self.answered = true;
    }
}

impl Drop for ClientWatch<'_> {
    fn drop(&mut self) {
        if !self.answered {
            tracing::info!(
                status = 499,
                elapsed = ?self.started.elapsed(),
                client = %self.connection.peer,
                entry_point = %self.connection.entry_point,
                "client closed request: {} {}",
                self.method,
                self.uri
            );
        }
    }
}
