//! Every way a request can fail inside Sluice, and the answer the client gets for it.
//!
//! The statuses and bodies are Traefik's, so clients and monitoring see the same thing.

use http::{header, HeaderValue, Response, StatusCode};

use super::body::{full, ProxyBody};

/// Why Sluice answered a request itself instead of relaying the origin's answer.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("no router matches the request")]
    NoRouter,
    #[error("service `{0}` has no available server")]
    NoServer(String),
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("request body larger than allowed")]
    PayloadTooLarge,
    #[error("origin {server} did not answer in time: {reason}")]
    OriginTimeout { server: String, reason: String },
    #[error("origin {server} failed: {reason}")]
    OriginUnreachable { server: String, reason: String },
    #[error("the TLS handshake used other TLS options than the router's (misdirected request)")]
    Misdirected,
    #[error("internal error: {0}")]
    Internal(String),
}

impl ProxyError {
    /// The status Traefik answers with in the same situation.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::NoRouter => StatusCode::NOT_FOUND,
            ProxyError::NoServer(_) => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ProxyError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::OriginTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::OriginUnreachable { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::Misdirected => StatusCode::MISDIRECTED_REQUEST,
            ProxyError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The response sent to the client.
    pub fn into_response(self) -> Response<ProxyBody> {
        let status = self.status();
        let body: &'static str = match self {
            ProxyError::NoRouter => "404 page not found\n",
            ProxyError::NoServer(_) => "no available server\n",
            ProxyError::BadRequest(_) => "400 Bad Request\n",
            ProxyError::PayloadTooLarge => "Request Entity Too Large",
            ProxyError::OriginTimeout { .. } => "Gateway Timeout",
            ProxyError::OriginUnreachable { .. } => "Bad Gateway",
            ProxyError::Misdirected => "Misdirected Request\n",
            ProxyError::Internal(_) => "Internal Server Error",
        };
        let mut response = Response::new(full(body));
        *response.status_mut() = status;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        response
    }
}
