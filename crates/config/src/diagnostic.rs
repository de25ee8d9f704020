//! Diagnostics about configuration: where a problem is and what it is.
//!
//! Every layer (file parsing, providers, the runtime builder) reports
//! problems as [`Diagnostic`]s so that they render the same way:
//! `file:line:col: error: router `x`: field `rule`: message`.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

/// How serious a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The element (or whole file) could not be used.
    Error,
    /// Something was ignored or adjusted; the rest still applies.
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One problem found in configuration, with as much location as is known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// The file the problem is in, when it comes from a file.
    pub file: Option<PathBuf>,
    /// 1-based line.
    pub line: Option<usize>,
    /// 1-based column.
    pub column: Option<usize>,
    /// The configuration element concerned, e.g. `router web-app` or
    /// `IngressRoute default/app`.
    pub resource: Option<String>,
    /// The field inside the resource (or the full key path when no resource
    /// could be identified), e.g. `rule` or `loadBalancer.servers[0].url`.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl Diagnostic {
    /// An error with only a message; add location with the `with_*` methods.
    pub fn error(message: impl Into<String>) -> Self {
        Diagnostic::new(Severity::Error, message)
    }

    /// A warning with only a message; add location with the `with_*` methods.
    pub fn warning(message: impl Into<String>) -> Self {
        Diagnostic::new(Severity::Warning, message)
    }

    /// A diagnostic of the given severity with only a message.
    pub fn new(severity: Severity, message: impl Into<String>) -> Self {
        Diagnostic {
            severity,
            file: None,
            line: None,
            column: None,
            resource: None,
            field: None,
            message: message.into(),
        }
    }

    /// Sets the file.
    pub fn with_file(mut self, file: impl Into<PathBuf>) -> Self {
        self.file = Some(file.into());
        self
    }

    /// Sets line and column (both 1-based).
    pub fn with_position(mut self, line: usize, column: usize) -> Self {
        self.line = Some(line);
        self.column = Some(column);
        self
    }

    /// Sets the resource, e.g. `router web-app`.
    pub fn with_resource(mut self, resource: impl Into<String>) -> Self {
        self.resource = Some(resource.into());
        self
    }

    /// Sets the field, e.g. `rule`.
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// True for [`Severity::Error`].
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{}:", file.display())?;
            if let Some(line) = self.line {
                write!(f, "{line}:")?;
                if let Some(col) = self.column {
                    write!(f, "{col}:")?;
                }
            }
            f.write_str(" ")?;
        } else if let Some(line) = self.line {
            write!(f, "line {line}")?;
            if let Some(col) = self.column {
                write!(f, ", column {col}")?;
            }
            f.write_str(": ")?;
        }
        write!(f, "{}: ", self.severity)?;
        if let Some(resource) = &self.resource {
            write!(f, "{resource}: ")?;
        }
        if let Some(field) = &self.field {
            write!(f, "field `{field}`: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for Diagnostic {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_full() {
        let d = Diagnostic::error("unexpected end of input")
            .with_file("dyn/app.yaml")
            .with_position(3, 7)
            .with_resource("router `x`")
            .with_field("rule");
        assert_eq!(
            d.to_string(),
            "dyn/app.yaml:3:7: error: router `x`: field `rule`: unexpected end of input"
        );
    }

    #[test]
    fn display_omits_absent_parts() {
        assert_eq!(Diagnostic::warning("hm").to_string(), "warning: hm");
        assert_eq!(
            Diagnostic::warning("dup").with_file("a.toml").to_string(),
            "a.toml: warning: dup"
        );
        assert_eq!(
            Diagnostic::error("bad")
                .with_resource("IngressRoute default/app")
                .to_string(),
            "error: IngressRoute default/app: bad"
        );
        assert_eq!(
            Diagnostic::error("bad").with_position(2, 1).to_string(),
            "line 2, column 1: error: bad"
        );
    }
}
