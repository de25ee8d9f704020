//! The `auth` middleware family (not built yet: routers using it are disabled with a diagnostic).

use std::sync::Arc;

use serde_json::Value;

use super::{Middleware, MiddlewareError};

/// Compiles the middleware; until it is built, every configuration is refused.
pub fn compile(kind: &str, spec: &Value) -> Result<Arc<dyn Middleware>, MiddlewareError> {
    let _ = (kind, spec);
    Err(MiddlewareError::new("", "this middleware is not supported yet"))
}
