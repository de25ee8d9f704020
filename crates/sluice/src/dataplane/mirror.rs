//! Mirroring: the main service answers the client; chosen mirrors get a copy afterwards.
//!
//! The client never waits for a mirror and never sees a mirror's answer. Copies are sent only
//! once the main service has answered, so a request the client gave up on is not mirrored.
//! A body is read ahead only up to `maxBodySize` (or [`UNLIMITED_CAP`] when unlimited); a larger
//! body goes to the main service untouched and is not mirrored.

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Body as _;

use super::body::{boxed, empty, full, ProxyBody, Replay};
use super::error::ProxyError;
use super::upstream::Outgoing;
use crate::runtime::service::{Mirroring, Service};

/// Read-ahead cap for `maxBodySize: -1`, so one request can never pin unbounded memory.
pub const UNLIMITED_CAP: u64 = 16 * 1024 * 1024;

/// Serves `outgoing` through a mirroring service.
pub async fn serve(
    mirroring: &Mirroring,
    outgoing: Outgoing,
) -> Result<Response<ProxyBody>, ProxyError> {
    let chosen = mirroring.select();
    if chosen.is_empty() || outgoing.upgrade.is_some() {
        return super::request::serve(&mirroring.main, outgoing).await;
    }
    let Outgoing {
        request,
        path_and_query,
        host,
        upgrade,
    } = outgoing;
    let (parts, body) = request.into_parts();

    // Read the body ahead when mirrors should receive it.
    let (main_body, mirror_body) = if !mirroring.mirror_body || body.is_end_stream() {
        (body, Some(Bytes::new()))
    } else {
        let limit = mirroring.max_body_size.unwrap_or(UNLIMITED_CAP);
        read_ahead(body, limit).await?
    };

    let mut head = Request::new(());
    *head.method_mut() = parts.method.clone();
    *head.version_mut() = parts.version;
    *head.headers_mut() = parts.headers.clone();
    *head.extensions_mut() = parts.extensions.clone();
    let copies = mirror_body.map(|body| MirrorCopy {
        head,
        path_and_query: path_and_query.clone(),
        host: host.clone(),
        body,
    });

    let main = Outgoing {
        request: Request::from_parts(parts, main_body),
        path_and_query,
        host,
        upgrade,
    };
    let response = super::request::serve(&mirroring.main, main).await;

    if let Some(copy) = copies {
        let targets: Vec<Arc<Service>> = chosen
            .into_iter()
            .filter_map(|i| mirroring.mirrors.get(i).map(|(s, _)| s.clone()))
            .collect();
        tokio::spawn(async move {
            for target in targets {
                match super::request::serve(&target, copy.outgoing()).await {
                    Ok(answer) => {
                        // Drain so the pooled connection can be reused; the content is discarded.
                        let _ = answer.into_body().collect().await;
                    }
                    Err(error) => {
                        tracing::debug!(mirror = target.name(), %error, "mirror request failed")
                    }
                }
            }
        });
    }
    response
}

/// A request to replay to every chosen mirror.
struct MirrorCopy {
    head: Request<()>,
    path_and_query: http::uri::PathAndQuery,
    host: http::HeaderValue,
    body: Bytes,
}

impl MirrorCopy {
    fn outgoing(&self) -> Outgoing {
        let mut request = Request::new(if self.body.is_empty() {
            empty()
        } else {
            full(self.body.clone())
        });
        *request.method_mut() = self.head.method().clone();
        *request.version_mut() = self.head.version();
        *request.headers_mut() = self.head.headers().clone();
        *request.extensions_mut() = self.head.extensions().clone();
        if self.body.is_empty() {
            // Without the body (mirrorBody: false), the copy must not announce one.
            request.headers_mut().remove(http::header::CONTENT_LENGTH);
            request
                .headers_mut()
                .remove(http::header::TRANSFER_ENCODING);
        }
        Outgoing {
            request,
            path_and_query: self.path_and_query.clone(),
            host: self.host.clone(),
            upgrade: None,
        }
    }
}

/// Reads `body` up to `limit` bytes. Returns the body for the main request and, when the whole
/// body fit, a copy for mirrors.
async fn read_ahead(
    mut body: ProxyBody,
    limit: u64,
) -> Result<(ProxyBody, Option<Bytes>), ProxyError> {
    let mut chunks = Vec::new();
    let mut size: u64 = 0;
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| ProxyError::BadRequest(format!("reading request body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            size += data.len() as u64;
            chunks.push(data);
            if size > limit {
                return Ok((boxed(Replay::new(chunks, Some(body))), None));
            }
        }
    }
    let whole: Bytes = if chunks.len() == 1 {
        chunks.pop().unwrap_or_default()
    } else {
        let mut joined = Vec::with_capacity(size as usize);
        for chunk in &chunks {
            joined.extend_from_slice(chunk);
        }
        joined.into()
    };
    Ok((full(whole.clone()), Some(whole)))
}
