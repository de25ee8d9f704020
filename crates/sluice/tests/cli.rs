//! The command line: `explain` (text and JSON), `check`, `config dump`, and Traefik's rule
//! conformance tables run through `sluice explain --json`.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn sluice(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .output()
        .expect("run sluice")
}

fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, content) in files {
        std::fs::write(dir.path().join(name), content).expect("write");
    }
    dir
}

fn flags(dir: &Path) -> [String; 2] {
    [
        "--entryPoints.web.address=127.0.0.1:0".to_owned(),
        format!("--providers.file.directory={}", dir.display()),
    ]
}

const SIMPLE: &str = r#"
http:
  routers:
    api:
      rule: "Host(`api.example.com`) && PathPrefix(`/v1`)"
      service: api
    site:
      rule: "Host(`www.example.com`)"
      service: split
  services:
    api:
      loadBalancer:
        servers:
          - url: "http://10.0.0.1:8080"
    split:
      weighted:
        services:
          - name: api
            weight: 1
          - name: other
            weight: 2
    other:
      loadBalancer:
        servers:
          - url: "http://10.0.0.2:8080"
"#;

#[test]
fn explain_names_router_service_and_server() {
    let dir = dir_with(&[("simple.yaml", SIMPLE)]);
    let [ep, provider] = flags(dir.path());
    let out = sluice(&[
        "explain",
        &ep,
        &provider,
        "--json",
        "GET",
        "http://api.example.com/v1/users",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(answer["router"], "api@file");
    assert_eq!(answer["service"], "api@file");
    assert_eq!(answer["server"], "http://10.0.0.1:8080");
    assert_eq!(answer["priority"], 44);

    // Weighted 1:2: the first pick of a fresh runtime is the heavier child.
    let out = sluice(&[
        "explain",
        &ep,
        &provider,
        "--json",
        "GET",
        "http://www.example.com/",
    ]);
    let answer: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(answer["service"], "split@file");
    assert_eq!(
        answer["path"],
        serde_json::json!(["split@file", "other@file"])
    );
    assert_eq!(answer["server"], "http://10.0.0.2:8080");

    let out = sluice(&[
        "explain",
        &ep,
        &provider,
        "--json",
        "GET",
        "http://nobody.example.com/",
    ]);
    let answer: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(answer["router"], Value::Null);
    assert_eq!(answer["status"], 404);

    let out = sluice(&[
        "explain",
        &ep,
        &provider,
        "-H",
        "Host: api.example.com",
        "GET",
        "/v1",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("router:      api@file (priority 44)"),
        "{text}"
    );
}

#[test]
fn explain_exits_2_when_the_configuration_does_not_load() {
    let dir = dir_with(&[("broken.yaml", "http:\n  routers: [\n")]);
    let [ep, provider] = flags(dir.path());
    let out = sluice(&["explain", &ep, &provider, "GET", "http://x/"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("broken.yaml:"), "{stderr}");
}

#[test]
fn check_reports_each_broken_router_with_its_field() {
    let dir = dir_with(&[("simple.yaml", SIMPLE)]);
    let [ep, provider] = flags(dir.path());
    let out = sluice(&["check", &ep, &provider]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let broken = r#"
http:
  routers:
    bad-rule:
      rule: "Host(`a.com`) && Pathh(`/x`)"
      service: svc
    missing-service:
      rule: "Path(`/x`)"
      service: nowhere
  services:
    svc:
      loadBalancer:
        servers:
          - url: "http://127.0.0.1:1"
"#;
    let dir = dir_with(&[("broken.yaml", broken)]);
    let [ep, provider] = flags(dir.path());
    let out = sluice(&["check", &ep, &provider]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("bad-rule@file"), "{stdout}");
    assert!(stdout.contains("column 18"), "{stdout}");
    assert!(
        stdout.contains("service `nowhere@file` does not exist"),
        "{stdout}"
    );
}

#[test]
fn config_dump_prints_traefik_json() {
    let dir = dir_with(&[("simple.yaml", SIMPLE)]);
    let [ep, provider] = flags(dir.path());
    let out = sluice(&["config", "dump", &ep, &provider]);
    assert!(out.status.success());
    let dump: Value = serde_json::from_slice(&out.stdout).expect("json");
    let lb = &dump["http"]["services"]["api@file"]["loadBalancer"];
    assert_eq!(lb["passHostHeader"], true);
    assert_eq!(lb["strategy"], "wrr");
    assert_eq!(lb["responseForwarding"]["flushInterval"], "100ms");
    assert_eq!(dump["http"]["routers"]["api@file"]["service"], "api@file");
}

/// The corpus lives beside the project in CI; a fresh clone does not have it.
fn corpus(name: &str) -> Option<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/conformance/rules")
        .join(name);
    match std::fs::read_to_string(&path) {
        Ok(text) => Some(text),
        Err(_) => {
            println!(
                "conformance corpus not found at {}: skipped",
                path.display()
            );
            None
        }
    }
}

/// Origin-form target and Host of a corpus request.
fn target(request: &Value) -> (String, String) {
    let host = request["host"].as_str().unwrap_or("").to_owned();
    if let Some(raw) = request["raw"].as_str() {
        let line = raw.lines().next().unwrap_or("");
        let target = line.split(' ').nth(1).unwrap_or("/");
        return (strip_authority(target), host);
    }
    let url = request["url"].as_str().unwrap_or("/");
    (strip_authority(url), host)
}

fn strip_authority(url: &str) -> String {
    for scheme in ["http://", "https://"] {
        if let Some(rest) = url.strip_prefix(scheme) {
            return match rest.find(['/', '?']) {
                Some(i) if rest[i..].starts_with('?') => format!("/{}", &rest[i..]),
                Some(i) => rest[i..].to_owned(),
                None => "/".to_owned(),
            };
        }
    }
    if url.is_empty() {
        "/".to_owned()
    } else {
        url.to_owned()
    }
}

fn routers_yaml(routes: &[(String, String, String, i64)]) -> String {
    let mut yaml = String::from("http:\n  routers:\n");
    for (id, rule, syntax, priority) in routes {
        yaml.push_str(&format!(
            "    {id}:\n      rule: {}\n      ruleSyntax: {syntax}\n      priority: {priority}\n      service: svc\n",
            serde_json::to_string(rule).expect("quote")
        ));
    }
    yaml.push_str("  services:\n    svc:\n      loadBalancer:\n        servers:\n          - url: \"http://127.0.0.1:1\"\n");
    yaml
}

fn explain_json(dir: &Path, request: &Value, extra: &[&str]) -> (Value, String) {
    let (target, host) = target(request);
    let method = request["method"].as_str().unwrap_or("GET");
    let [ep, provider] = flags(dir);
    let mut args: Vec<String> = vec!["explain".into(), ep, provider, "--json".into()];
    args.extend(extra.iter().map(|s| s.to_string()));
    if !host.is_empty() {
        args.push("-H".into());
        args.push(format!("Host: {host}"));
    }
    if let Some(headers) = request["headers"].as_object() {
        for (name, values) in headers {
            for value in values.as_array().into_iter().flatten() {
                args.push("-H".into());
                args.push(format!("{name}: {}", value.as_str().unwrap_or("")));
            }
        }
    }
    let remote = request["remoteAddr"].as_str().unwrap_or("");
    let ip = remote
        .parse::<std::net::SocketAddr>()
        .map(|a| a.ip().to_string())
        .or_else(|_| remote.parse::<std::net::IpAddr>().map(|ip| ip.to_string()))
        .unwrap_or_else(|_| "192.0.2.1".to_owned());
    args.push("--client-ip".into());
    args.push(ip);
    args.push(method.into());
    args.push(target);
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(&args)
        .output()
        .expect("run explain");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (value, stderr)
}

/// Reasons a corpus line cannot be replayed through a real request; every other line must agree.
fn unreplayable(line: &Value) -> Option<&'static str> {
    if line.get("notes").is_some() {
        return Some("non-canonical header name set directly in a Go map");
    }
    let rule = line["rule"].as_str().unwrap_or("");
    let request = &line["request"];
    if line["requestDecorator"] == Value::Bool(false)
        && line["ruleSyntax"] != "v2"
        && rule.to_ascii_lowercase().contains("host")
    {
        return Some("v3 host matching without Traefik's request decorator");
    }
    let remote = request["remoteAddr"].as_str().unwrap_or("");
    if rule.to_ascii_lowercase().contains("clientip")
        && remote.parse::<std::net::SocketAddr>().is_err()
        && remote.parse::<std::net::IpAddr>().is_err()
    {
        return Some("unparseable remote address");
    }
    None
}

#[test]
fn rule_conformance_through_explain() {
    let Some(text) = corpus("http.jsonl") else {
        return;
    };
    let (mut passed, mut skipped, mut failures) = (0, 0, Vec::new());
    for line in text.lines() {
        let case: Value = serde_json::from_str(line).expect("corpus line");
        if case["expected"] != "parse_error" && unreplayable(&case).is_some() {
            skipped += 1;
            continue;
        }
        let rule = case["rule"].as_str().unwrap_or("").to_owned();
        let syntax = case["ruleSyntax"].as_str().unwrap_or("v3").to_owned();
        let dir = dir_with(&[(
            "r.yaml",
            &routers_yaml(&[("r".into(), rule.clone(), syntax.clone(), 0)]),
        )]);
        let request = if case["request"].is_null() {
            serde_json::json!({"method": "GET", "url": "/", "host": "example.com"})
        } else {
            case["request"].clone()
        };
        let (answer, stderr) = explain_json(dir.path(), &request, &[]);
        let got = if answer["router"] == "r@file" {
            "match"
        } else if stderr.contains("router `r@file`") && stderr.contains("rule") {
            "parse_error"
        } else {
            "nomatch"
        };
        if got == case["expected"] {
            passed += 1;
        } else {
            failures.push(format!(
                "{} [{syntax}] {rule:?}: expected {}, got {got}",
                case["desc"], case["expected"]
            ));
        }
    }
    println!("rule conformance via explain: {passed} passed, {skipped} skipped (not replayable over the wire), {} failed", failures.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn priority_conformance_through_explain() {
    let Some(text) = corpus("http_priority.jsonl") else {
        return;
    };
    let mut passed = 0;
    for line in text.lines() {
        let case: Value = serde_json::from_str(line).expect("corpus line");
        let routes: Vec<(String, String, String, i64)> = case["routes"]
            .as_array()
            .expect("routes")
            .iter()
            .map(|r| {
                let id = r["id"].as_str().unwrap_or("");
                let provider = r["provider"].as_str().unwrap_or("");
                (
                    // Routers of other providers are written with their qualified names.
                    if provider.is_empty() {
                        id.to_owned()
                    } else {
                        format!("{id}@{provider}")
                    },
                    r["rule"].as_str().unwrap_or("").to_owned(),
                    r["ruleSyntax"].as_str().unwrap_or("v3").to_owned(),
                    r["priority"].as_i64().unwrap_or(0),
                )
            })
            .collect();
        let dir = dir_with(&[("r.yaml", &routers_yaml(&routes))]);
        let precedence = format!(
            "--providers.precedence={}",
            case["providersPrecedence"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p.as_str())
                .collect::<Vec<_>>()
                .join(",")
        );
        let (answer, stderr) = explain_json(dir.path(), &case["request"], &[&precedence]);
        let winner = case["expected"].as_str().unwrap_or("");
        let expected = routes
            .iter()
            .map(|r| r.0.clone())
            .find(|id| id == winner || id.starts_with(&format!("{winner}@")))
            .map(|id| {
                if id.contains('@') {
                    id
                } else {
                    format!("{id}@file")
                }
            })
            .unwrap_or_default();
        assert_eq!(
            answer["router"],
            Value::String(expected),
            "{}: {stderr}",
            case["desc"]
        );
        passed += 1;
    }
    println!("priority conformance via explain: {passed} passed");
}

const SIMPLE_TOML: &str = r#"
[http.routers.api]
rule = "Host(`api.example.com`) && PathPrefix(`/v1`)"
service = "api"

[http.services.api.loadBalancer]
[[http.services.api.loadBalancer.servers]]
url = "http://10.0.0.1:8080"
"#;

#[test]
fn a_toml_dynamic_file_routes_like_its_yaml_twin() {
    let yaml = dir_with(&[("simple.yaml", SIMPLE)]);
    let toml = dir_with(&[("simple.toml", SIMPLE_TOML)]);
    let mut answers = Vec::new();
    for dir in [yaml.path(), toml.path()] {
        let [ep, provider] = flags(dir);
        let out = sluice(&[
            "explain",
            &ep,
            &provider,
            "--json",
            "GET",
            "http://api.example.com/v1/users",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let answer: Value = serde_json::from_slice(&out.stdout).expect("json");
        answers.push((
            answer["router"].clone(),
            answer["server"].clone(),
            answer["priority"].clone(),
        ));
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0].1, "http://10.0.0.1:8080");
}
