//! The data plane: entry points accept connections and every request runs through
//! [`request::handle`] on one runtime snapshot.

pub mod body;
pub mod downstream;
pub mod entrypoint;
pub mod error;
pub mod forwarded;
pub mod hop_by_hop;
pub mod http1;
pub mod mirror;
pub mod ping;
pub mod pool;
pub mod request;
pub mod upgrade;
pub mod upstream;
pub mod worker;
