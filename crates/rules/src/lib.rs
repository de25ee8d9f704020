//! Traefik HTTP routing rules: parser, matchers (v3 and v2 syntax) and the per-entry-point route
//! table.
//!
//! ```
//! use sluice_rules::{Rule, Syntax, RequestInfo};
//! let rule = Rule::parse("Host(`example.com`) && PathPrefix(`/api`)", Syntax::V3).unwrap();
//! let headers = http::HeaderMap::new();
//! let req = RequestInfo {
//!     method: "GET", host: "example.com", raw_host: "example.com:8080", path: "/api/users",
//!     query: "", headers: &headers, client_ip: None,
//! };
//! assert!(rule.matches(&req));
//! ```

mod goregex;
mod lexer;
mod matcher;
mod matcher_v2;
mod parser;
mod query;
mod request;
mod rule;
mod table;
mod template;

pub use request::{canonical_host, routing_path, sanitize_path, PathError, RequestInfo};
pub use rule::Rule;
pub use table::{default_priority, Route, RouteTable};

/// Which matcher set a rule uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Syntax {
    V2,
    V3,
}

impl Syntax {
    /// Maps a `ruleSyntax` value: `v2` (any case) selects v2; everything else, including `v3`,
    /// `default`, empty and unknown values, selects v3 (Traefik silently falls back to v3).
    pub fn from_name(name: &str) -> Syntax {
        if name.eq_ignore_ascii_case("v2") {
            Syntax::V2
        } else {
            Syntax::V3
        }
    }
}

/// A parse or validation error; `column` is 1-based, counted in characters of the rule text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column {column}: {message}")]
pub struct RuleError {
    pub column: usize,
    pub message: String,
}

impl RuleError {
    /// Two lines: the rule, then a caret under the error column (tabs are kept so the caret lines
    /// up in a terminal).
    pub fn pointer(&self, rule: &str) -> String {
        let pad: String = rule
            .chars()
            .take(self.column.saturating_sub(1))
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        format!("{rule}\n{pad}^")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_names() {
        assert_eq!(Syntax::from_name("v2"), Syntax::V2);
        assert_eq!(Syntax::from_name("V2"), Syntax::V2);
        assert_eq!(Syntax::from_name("v3"), Syntax::V3);
        assert_eq!(Syntax::from_name("default"), Syntax::V3);
        assert_eq!(Syntax::from_name(""), Syntax::V3);
        assert_eq!(Syntax::from_name("v4"), Syntax::V3);
    }

    #[test]
    fn pointer() {
        let rule = "Host(`a`) && Foo(`b`)";
        let err = Rule::parse(rule, Syntax::V3).unwrap_err();
        assert_eq!(err.column, 14);
        assert_eq!(err.pointer(rule), "Host(`a`) && Foo(`b`)\n             ^");
        assert_eq!(err.to_string(), format!("column 14: {}", err.message));
        let tabbed = RuleError {
            column: 3,
            message: String::new(),
        };
        assert_eq!(tabbed.pointer("\tab"), "\tab\n\t ^");
    }

    #[test]
    fn rule_is_send_sync_clone() {
        fn check<T: Send + Sync + Clone + std::fmt::Debug>() {}
        check::<Rule>();
        check::<RouteTable<String>>();
    }
}
