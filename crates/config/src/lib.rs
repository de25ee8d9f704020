//! Configuration of Sluice in Traefik's schema.
//!
//! * [`static_config`]: the static configuration (entry points, providers,
//!   log), loaded from a YAML/TOML file plus command-line flags.
//! * [`dynamic`]: the provider-neutral dynamic configuration model
//!   (routers, services, ...), serialising to Traefik's JSON form.
//! * [`file`](mod@file): the file provider's parsing, defaults, directory listing
//!   and merging (watching lives in the binary).
//! * [`Diagnostic`]: located problem reports shared by every layer.

pub mod diagnostic;
pub mod duration;
pub mod dynamic;
pub mod file;
mod nullable;
mod parse;
pub mod static_config;

pub use diagnostic::{Diagnostic, Severity};
pub use duration::GoDuration;
