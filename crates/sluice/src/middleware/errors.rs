//! The `errors` middleware family (not built yet: routers using it are disabled with a diagnostic).

use std::sync::Arc;

use serde_json::Value;

use super::{Middleware, MiddlewareError, Resolver};

/// Compiles the middleware; until it is built, every configuration is refused.
pub fn compile(spec: &Value, resolver: &mut dyn Resolver) -> Result<Arc<dyn Middleware>, MiddlewareError> {
    let _ = (spec, resolver);
    Err(MiddlewareError::new("", "this middleware is not supported yet"))
}
