//! The body type used on both sides of the proxy: a boxed stream of bytes, never buffered whole.

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Empty, Full};

/// Errors a body can carry.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request or response body streaming through Sluice.
pub type ProxyBody = BoxBody<Bytes, BoxError>;

/// A body holding `data`.
pub fn full(data: impl Into<Bytes>) -> ProxyBody {
    Full::new(data.into())
        .map_err(|never| match never {})
        .boxed()
}

/// An empty body.
pub fn empty() -> ProxyBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// Boxes any body whose errors convert into [`BoxError`].
pub fn boxed<B>(body: B) -> ProxyBody
where
    B: hyper::body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed()
}

/// A body that replays chunks already read, then streams the rest of the original body.
///
/// Used when a request body was read ahead (for mirroring) but turned out larger than allowed:
/// the main request must still get every byte, in order, without holding the rest in memory.
pub struct Replay {
    read: std::collections::VecDeque<Bytes>,
    rest: Option<ProxyBody>,
}

impl Replay {
    /// Replays `read`, then continues with `rest` (None: the body ended).
    pub fn new(read: Vec<Bytes>, rest: Option<ProxyBody>) -> Self {
        Self {
            read: read.into(),
            rest,
        }
    }
}

impl hyper::body::Body for Replay {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, BoxError>>> {
        if let Some(chunk) = self.read.pop_front() {
            return std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(chunk))));
        }
        match self.rest.as_mut() {
            Some(rest) => std::pin::Pin::new(rest).poll_frame(cx),
            None => std::task::Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.read.is_empty() && self.rest.as_ref().is_none_or(|r| r.is_end_stream())
    }
}
