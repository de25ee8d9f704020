//! Replays Traefik's own rule tests (converted to JSON lines in the shared conformance corpus)
//! against this crate: `rules/http.jsonl` (one rule, one request) and `rules/http_priority.jsonl`
//! (several routes, one request, expected winner).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;
use sluice_rules::{canonical_host, routing_path, RequestInfo, Route, RouteTable, Rule, Syntax};

/// Lines that cannot be reproduced and why, keyed by (desc, rule). Empty: every other line passes.
const ALLOWED_FAILURES: &[(&str, &str, &str)] = &[];

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance/rules")
}

/// Everything a request line provides, owned so `RequestInfo` can borrow from it.
struct OwnedRequest {
    method: String,
    host: String,
    raw_host: String,
    path: String,
    query: String,
    headers: HeaderMap,
    client_ip: Option<IpAddr>,
}

impl OwnedRequest {
    fn from_json(req: &Value, decorated: bool) -> OwnedRequest {
        let s = |k: &str| req.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        // `host` is what Go's net/http derived from the URL / raw request (req.Host); the request
        // decorator is what turns it into the canonical host v3 Host matchers read.
        let go_host = s("host");
        let host = if decorated {
            canonical_host(&go_host).into_owned()
        } else {
            String::new()
        };
        let target = match req.get("raw").and_then(Value::as_str) {
            Some(raw) => raw
                .lines()
                .next()
                .and_then(|line| line.split(' ').nth(1))
                .unwrap_or("")
                .to_string(),
            None => s("url"),
        };
        let escaped = escaped_path(&target);
        let path = routing_path(escaped)
            .map(|p| p.into_owned())
            .unwrap_or_else(|e| panic!("routing path of {target:?}: {e}"));
        let mut headers = HeaderMap::new();
        if let Some(map) = req.get("headers").and_then(Value::as_object) {
            for (name, values) in map {
                let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
                for v in values.as_array().into_iter().flatten() {
                    let v = HeaderValue::from_str(v.as_str().unwrap()).unwrap();
                    headers.append(name.clone(), v);
                }
            }
        }
        let remote = s("remoteAddr");
        let client_ip = remote
            .parse::<SocketAddr>()
            .map(|a| a.ip())
            .or_else(|_| remote.parse::<IpAddr>())
            .ok();
        OwnedRequest {
            method: s("method"),
            host,
            raw_host: go_host,
            path,
            query: s("query"),
            headers,
            client_ip,
        }
    }

    fn info(&self) -> RequestInfo<'_> {
        RequestInfo {
            method: &self.method,
            host: &self.host,
            raw_host: &self.raw_host,
            path: &self.path,
            query: &self.query,
            headers: &self.headers,
            client_ip: self.client_ip,
        }
    }
}

/// The escaped path part of an absolute URL or origin-form target.
fn escaped_path(target: &str) -> &str {
    let rest = match target.find("://") {
        Some(i) => {
            let after = &target[i + 3..];
            let end = after.find(['/', '?', '#']).unwrap_or(after.len());
            &after[end..]
        }
        None => target,
    };
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    &rest[..end]
}

fn read_lines(file: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(file).unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn non_canonical_header_note(line: &Value) -> bool {
    line.get("notes")
        .and_then(Value::as_array)
        .is_some_and(|notes| {
            notes
                .iter()
                .any(|n| n.as_str().is_some_and(|n| n.contains("canonical form")))
        })
}

#[test]
fn http_rules() {
    let dir = corpus_dir();
    if !dir.is_dir() {
        println!("conformance corpus not found at {}, skipped", dir.display());
        return;
    }
    let (mut passed, mut skipped, mut allowed) = (0, 0, 0);
    let mut failures = Vec::new();
    for (n, line) in read_lines(&dir.join("http.jsonl")).iter().enumerate() {
        let rule_text = line["rule"].as_str().unwrap();
        let desc = line["desc"].as_str().unwrap_or("");
        if non_canonical_header_note(line) {
            // Go's test put a non-canonical name straight into the header map, which a real
            // request cannot do (names are case-insensitive on the wire).
            skipped += 1;
            continue;
        }
        let syntax = Syntax::from_name(line["ruleSyntax"].as_str().unwrap_or(""));
        let expected = line["expected"].as_str().unwrap();
        let parsed = Rule::parse(rule_text, syntax);
        let outcome = match (&parsed, line.get("request")) {
            (Err(_), _) => "parse_error".to_string(),
            (Ok(rule), Some(req)) if !req.is_null() => {
                let decorated = line["requestDecorator"].as_bool().unwrap_or(false);
                let owned = OwnedRequest::from_json(req, decorated);
                if rule.matches(&owned.info()) {
                    "match".to_string()
                } else {
                    "nomatch".to_string()
                }
            }
            (Ok(_), _) => "parsed (no request)".to_string(),
        };
        if outcome == expected {
            passed += 1;
        } else if ALLOWED_FAILURES
            .iter()
            .any(|(d, r, _)| *d == desc && *r == rule_text)
        {
            allowed += 1;
        } else {
            failures.push(format!(
                "line {}: {desc:?} rule {rule_text:?} ({syntax:?}): expected {expected}, got {outcome}{}\n  request: {}",
                n + 1,
                match &parsed {
                    Err(e) => format!(" [{e}]"),
                    Ok(_) => String::new(),
                },
                line["request"]
            ));
        }
    }
    println!(
        "http.jsonl: {passed} passed, {skipped} skipped (non-canonical header names), {allowed} allowed failures, {} failed",
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn http_priority() {
    let dir = corpus_dir();
    if !dir.is_dir() {
        println!("conformance corpus not found at {}, skipped", dir.display());
        return;
    }
    let mut passed = 0;
    let mut failures = Vec::new();
    for line in read_lines(&dir.join("http_priority.jsonl")) {
        let precedence: Vec<&str> = line["providersPrecedence"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        // Provider precedence breaks priority ties (earlier wins, unknown loses); RouteTable keeps
        // the given order among equal priorities, so order the input by provider rank first.
        let provider_rank = |p: &str| {
            precedence
                .iter()
                .position(|q| *q == p)
                .unwrap_or(precedence.len())
        };
        let mut routes: Vec<(usize, Route<String>)> = line["routes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let syntax = Syntax::from_name(r["ruleSyntax"].as_str().unwrap_or(""));
                let rule = Rule::parse(r["rule"].as_str().unwrap(), syntax).unwrap();
                let rank = provider_rank(r["provider"].as_str().unwrap_or(""));
                (
                    rank,
                    Route {
                        rule,
                        priority: r["priority"].as_i64().unwrap(),
                        value: r["id"].as_str().unwrap().to_string(),
                    },
                )
            })
            .collect();
        routes.sort_by_key(|(rank, _)| *rank);
        let table = RouteTable::new(routes.into_iter().map(|(_, r)| r).collect());
        let decorated = line["requestDecorator"].as_bool().unwrap_or(false);
        let owned = OwnedRequest::from_json(&line["request"], decorated);
        let winner = table.lookup(&owned.info()).map(|r| r.value.as_str());
        let expected = line["expected"].as_str();
        if winner == expected {
            passed += 1;
        } else {
            failures.push(format!(
                "{:?}: expected {expected:?}, got {winner:?}",
                line["desc"]
            ));
        }
    }
    println!(
        "http_priority.jsonl: {passed} passed, {} failed",
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
