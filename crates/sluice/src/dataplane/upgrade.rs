//! The client side of a switched protocol (WebSocket and other `Upgrade`s): the connection
//! the HTTP/1.1 server hands over once it has written a 101, for the tunnel to the origin.

use bytes::Bytes;
use tokio::sync::oneshot;

use super::downstream::Io;

/// A client connection after its 101, with the bytes the client sent past its request (a
/// WebSocket's first frames, say), which go to the origin first.
pub struct Upgraded {
    pub io: Box<dyn Io>,
    pub read_ahead: Bytes,
}

/// The client side of a tunnel that opens if the origin agrees to switch protocols.
pub struct ClientUpgrade(Option<oneshot::Receiver<Upgraded>>);

/// Why a tunnel has no client side.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    /// Only HTTP/1.1 switches protocols (an HTTP/2 request cannot).
    #[error("the client connection cannot switch protocols")]
    Unsupported,
    /// The connection ended before its 101 was written.
    #[error("the client connection closed before switching protocols")]
    Closed,
}

impl ClientUpgrade {
    /// The side the server sends through `receiver` after writing the 101.
    pub fn new(receiver: oneshot::Receiver<Upgraded>) -> Self {
        Self(Some(receiver))
    }

    /// For connections that cannot switch protocols.
    pub fn unsupported() -> Self {
        Self(None)
    }

    /// Waits for the server to hand the connection over.
    pub async fn wait(self) -> Result<Upgraded, UpgradeError> {
        match self.0 {
            Some(receiver) => receiver.await.map_err(|_| UpgradeError::Closed),
            None => Err(UpgradeError::Unsupported),
        }
    }
}
