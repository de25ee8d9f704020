//! gorilla/mux route templates, as used by the v2 rule syntax.
//!
//! A template is literal text with `{name}` or `{name:pattern}` variables. Literal parts are
//! quoted, variables become groups (default pattern depends on the template kind), and the whole
//! is anchored at the start, and at the end unless it is a path prefix.

use regex::Regex;

use crate::goregex;

/// Where a template is used; decides the default variable pattern and anchoring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Host,
    Path,
    PathPrefix,
    Query,
}

/// Compiles a template into a regex (Go syntax for the variable patterns).
pub(crate) fn compile(template: &str, kind: Kind) -> Result<Regex, String> {
    let pattern = build_pattern(template, kind)?;
    goregex::compile(&pattern).map_err(|e| format!("template {template:?}: {e}"))
}

/// Whether a host template leaves the port out of the comparison: gorilla strips the request's
/// port unless the generated pattern mentions a `:` itself.
pub(crate) fn ignores_port(template: &str) -> bool {
    build_pattern(template, Kind::Host).is_ok_and(|p| !p.contains(':'))
}

/// The regex source for a template.
fn build_pattern(template: &str, kind: Kind) -> Result<String, String> {
    let default_pattern = match kind {
        Kind::Host => "[^.]+",
        Kind::Path | Kind::PathPrefix => "[^/]+",
        Kind::Query => ".*",
    };
    let spans = brace_spans(template)?;
    let mut pattern = String::from("^");
    let mut end = 0;
    for (open, close) in spans {
        pattern.push_str(&quote(&template[end..open]));
        let inner = &template[open + 1..close];
        let (name, var_pattern) = match inner.split_once(':') {
            Some((n, p)) => (n, p),
            None => (inner, default_pattern),
        };
        if name.is_empty() || var_pattern.is_empty() {
            return Err(format!(
                "missing name or pattern in {:?}",
                &template[open..=close]
            ));
        }
        // Each variable pattern must be valid on its own, as gorilla checks.
        goregex::translate(var_pattern)?;
        pattern.push('(');
        pattern.push_str(var_pattern);
        pattern.push(')');
        end = close + 1;
    }
    pattern.push_str(&quote(&template[end..]));
    if kind == Kind::Query && template.split_once('=').is_some_and(|(_, v)| v.is_empty()) {
        pattern.push_str(default_pattern);
    }
    if kind != Kind::PathPrefix {
        pattern.push('$');
    }
    if kind == Kind::Host {
        // Host names are case-insensitive (Traefik's v2 tests match `FOO.bar.com`).
        pattern.insert_str(0, "(?i)");
    }
    Ok(pattern)
}

/// Positions of the outermost `{`..`}` pairs; nested braces belong to the variable pattern.
fn brace_spans(template: &str) -> Result<Vec<(usize, usize)>, String> {
    let mut spans = Vec::new();
    let mut level = 0usize;
    let mut start = 0;
    for (i, b) in template.bytes().enumerate() {
        match b {
            b'{' => {
                if level == 0 {
                    start = i;
                }
                level += 1;
            }
            b'}' => {
                if level == 0 {
                    return Err(format!("unbalanced braces in {template:?}"));
                }
                level -= 1;
                if level == 0 {
                    spans.push((start, i));
                }
            }
            _ => {}
        }
    }
    if level != 0 {
        return Err(format!("unbalanced braces in {template:?}"));
    }
    Ok(spans)
}

/// Quotes literal text so the Go-regex translation leaves it literal.
fn quote(text: &str) -> String {
    regex::escape(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(t: &str, kind: Kind, s: &str) -> bool {
        compile(t, kind).unwrap().is_match(s)
    }

    #[test]
    fn host_templates() {
        assert!(m("{sub:[a-z]+}.example.com", Kind::Host, "www.example.com"));
        assert!(m("{sub:[a-z]+}.example.com", Kind::Host, "WWW.example.com"));
        assert!(!m(
            "{sub:[a-z]+}.example.com",
            Kind::Host,
            "wwwxexample.com"
        ));
        assert!(m("{sub}.example.com", Kind::Host, "a.example.com"));
        assert!(!m("{sub}.example.com", Kind::Host, "a.b.example.com"));
        assert!(!m("^[a-z]+$", Kind::Host, "abc"));
        assert!(m("(a", Kind::Host, "(a"));
        assert!(m("{x:a{2}}", Kind::Host, "aa"));
    }

    #[test]
    fn path_templates() {
        assert!(m("/api/{v:v[0-9]+}", Kind::Path, "/api/v2"));
        assert!(!m("/api/{v:v[0-9]+}", Kind::Path, "/api/v2/x"));
        assert!(m("/api/{v:v[0-9]+}", Kind::PathPrefix, "/api/v2/x"));
        assert!(m("/api/{id}", Kind::Path, "/api/42"));
        assert!(!m("/api/{id}", Kind::Path, "/api/4/2"));
    }

    #[test]
    fn query_templates() {
        assert!(m("foo=b=ar", Kind::Query, "foo=b=ar"));
        assert!(m("foo=", Kind::Query, "foo=anything"));
        assert!(m("foo={v:[0-9]+}", Kind::Query, "foo=12"));
        assert!(!m("foo={v:[0-9]+}", Kind::Query, "foo=1a"));
    }

    #[test]
    fn port_handling() {
        assert!(ignores_port("{sub:[a-z]+}.a.com"));
        assert!(!ignores_port("a.com:{port}"));
        assert!(!ignores_port("{hp:a.com:[0-9]+}"));
    }

    #[test]
    fn errors() {
        assert!(compile("{test", Kind::Host).is_err());
        assert!(compile("test}", Kind::Host).is_err());
        assert!(compile("{:x}", Kind::Host).is_err());
        assert!(compile("{x:}", Kind::Host).is_err());
        assert!(compile("{x:(}", Kind::Path).is_err());
    }
}
