//! File provider: YAML/TOML parity, Traefik's JSON shape, defaults,
//! located errors, directory listing and merging.

use std::path::{Path, PathBuf};

use serde_json::json;
use sluice_config::dynamic::{Configuration, ServiceKind};
use sluice_config::file::{apply_defaults, list_files, merge, parse_file};
use sluice_config::{Diagnostic, GoDuration, Severity};

fn fixture(name: &str) -> (PathBuf, String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    (path, text)
}

fn load(name: &str) -> Configuration {
    let (path, text) = fixture(name);
    parse_file(&path, &text).unwrap_or_else(|d| panic!("{d}"))
}

fn parse_err(name: &str, text: &str) -> Diagnostic {
    match parse_file(Path::new(name), text) {
        Ok(cfg) => panic!("{name} parsed: {cfg:?}"),
        Err(d) => d,
    }
}

#[test]
fn yaml_and_toml_are_equal() {
    let yaml = load("dynamic.yaml");
    let toml = load("dynamic.toml");
    assert_eq!(yaml, toml);
    let mut yaml_d = yaml.clone();
    let mut toml_d = toml.clone();
    apply_defaults(&mut yaml_d);
    apply_defaults(&mut toml_d);
    assert_eq!(yaml_d, toml_d);
}

#[test]
fn typed_model() {
    let cfg = load("dynamic.yaml");
    let http = cfg.http.as_ref().unwrap();
    let r = &http.routers["web-app"];
    assert_eq!(r.entry_points, ["web", "websecure"]);
    assert_eq!(r.middlewares, ["strip-api", "auth"]);
    assert_eq!(r.service, "app");
    assert_eq!(r.rule, "Host(`example.com`) && PathPrefix(`/api`)");
    assert_eq!(r.rule_syntax.as_deref(), Some("v3"));
    assert_eq!(r.priority, 42);
    assert_eq!(
        r.tls,
        Some(json!({"options": "modern", "certResolver": "le"}))
    );

    let app = http.services["app"].load_balancer.as_ref().unwrap();
    assert_eq!(app.servers.len(), 2);
    assert_eq!(app.servers[0].weight, Some(3));
    assert!(app.servers[1].preserve_path);
    let cookie = app.sticky.as_ref().unwrap().cookie.as_ref().unwrap();
    assert_eq!(cookie.name, "app_sticky");
    assert!(cookie.secure && cookie.http_only);
    assert_eq!(cookie.same_site, "lax");
    assert_eq!(cookie.max_age, 3600);
    assert_eq!(app.servers_transport.as_deref(), Some("slow"));

    let legacy = http.services["legacy"].load_balancer.as_ref().unwrap();
    assert!(!legacy.pass_host_header());
    assert!(legacy.flush_interval().is_negative());

    assert_eq!(http.services["split"].kind(), Ok(ServiceKind::Weighted));
    assert_eq!(http.services["mirrored"].kind(), Ok(ServiceKind::Mirroring));
    assert_eq!(
        http.middlewares["strip-api"],
        json!({"stripPrefix": {"prefixes": ["/api"]}})
    );
    assert!(http.servers_transports.contains_key("slow"));
    assert!(cfg.tls.as_ref().unwrap()["options"]["modern"].is_object());
}

#[test]
fn defaults_follow_the_file_provider() {
    let mut cfg = load("dynamic.yaml");
    apply_defaults(&mut cfg);
    let http = cfg.http.as_ref().unwrap();

    let app = http.services["app"].load_balancer.as_ref().unwrap();
    assert_eq!(app.pass_host_header, Some(true));
    assert_eq!(app.strategy.as_deref(), Some("wrr"));
    assert_eq!(
        app.response_forwarding.as_ref().unwrap().flush_interval,
        Some(GoDuration::from_millis(100))
    );
    let cookie = app.sticky.as_ref().unwrap().cookie.as_ref().unwrap();
    assert_eq!(cookie.path.as_deref(), Some("/"));
    // Per-server weights are not defaulted (only WRR children are).
    assert_eq!(app.servers[1].weight, None);

    // Explicit values win over defaults.
    let legacy = http.services["legacy"].load_balancer.as_ref().unwrap();
    assert_eq!(legacy.pass_host_header, Some(false));
    assert_eq!(
        legacy.response_forwarding.as_ref().unwrap().flush_interval,
        Some(GoDuration::from_secs(-1))
    );

    let split = http.services["split"].weighted.as_ref().unwrap();
    assert_eq!(split.services[0].weight, Some(3));
    assert_eq!(split.services[1].weight, Some(1));
    // `cookie: {}` is present, so it gets the path default.
    let cookie = split.sticky.as_ref().unwrap().cookie.as_ref().unwrap();
    assert_eq!(cookie.path.as_deref(), Some("/"));

    let m = http.services["mirrored"].mirroring.as_ref().unwrap();
    assert_eq!(m.mirror_body, Some(true));
    assert_eq!(m.max_body_size, Some(-1));
}

#[test]
fn json_has_traefiks_shape() {
    let mut cfg = load("dynamic.yaml");
    apply_defaults(&mut cfg);
    let v = serde_json::to_value(&cfg).unwrap();
    let services = &v["http"]["services"];
    assert_eq!(
        services["legacy"],
        json!({"loadBalancer": {
            "servers": [{"url": "http://10.0.0.9:80"}],
            "strategy": "wrr",
            "passHostHeader": false,
            "responseForwarding": {"flushInterval": "-1s"}
        }})
    );
    assert_eq!(
        services["app"]["loadBalancer"]["servers"],
        json!([
            {"url": "http://10.0.0.1:8080", "weight": 3},
            {"url": "http://10.0.0.2:8080", "preservePath": true}
        ])
    );
    assert_eq!(
        services["app"]["loadBalancer"]["responseForwarding"],
        json!({"flushInterval": "100ms"})
    );
    assert_eq!(
        services["mirrored"],
        json!({"mirroring": {
            "service": "app",
            "mirrorBody": true,
            "maxBodySize": -1,
            "mirrors": [{"name": "legacy", "percent": 10}]
        }})
    );
    assert_eq!(
        services["split"]["weighted"]["sticky"],
        json!({"cookie": {"path": "/"}})
    );
    // Omitted empties: no middlewares/entryPoints/priority on this router.
    assert_eq!(
        v["http"]["routers"]["canary"],
        json!({"service": "split", "rule": "Host(`canary.example.com`)"})
    );
    // passHostHeader is written even when the file did not set it and no
    // defaults were applied.
    let raw = serde_json::to_value(load("dynamic.yaml")).unwrap();
    assert_eq!(
        raw["http"]["services"]["app"]["loadBalancer"]["passHostHeader"],
        json!(true)
    );
    assert!(raw["http"]["services"]["app"]["loadBalancer"]
        .get("strategy")
        .is_none());
    // Sorted map keys.
    let text = serde_json::to_string(&cfg).unwrap();
    let a = text.find("\"app\"").unwrap();
    let l = text.find("\"legacy\"").unwrap();
    assert!(a < l);
}

#[test]
fn json_round_trips() {
    let mut cfg = load("dynamic.yaml");
    apply_defaults(&mut cfg);
    let text = serde_json::to_string(&cfg).unwrap();
    let back: Configuration = serde_json::from_str(&text).unwrap();
    assert_eq!(back, cfg);
}

#[test]
fn empty_files_are_empty_configurations() {
    for (name, text) in [
        ("a.yaml", ""),
        ("a.yml", "# nothing yet\n\n"),
        ("a.yaml", "---\n# c\n"),
        ("a.toml", ""),
        ("a.toml", "# just a comment\n"),
    ] {
        let cfg = parse_file(Path::new(name), text).unwrap();
        assert!(cfg.is_empty(), "{name}: {text:?}");
    }
    let cfg = parse_file(Path::new("a.yaml"), "http:\n").unwrap();
    assert!(cfg.is_empty());
}

#[test]
fn yaml_syntax_error_position() {
    let d = parse_err(
        "bad.yaml",
        "http:\n  routers:\n    web:\n      rule: \"Host(`a`)\n",
    );
    assert_eq!(d.severity, Severity::Error);
    assert_eq!(d.file.as_deref(), Some(Path::new("bad.yaml")));
    // Reported at the opening quote.
    assert_eq!((d.line, d.column), (Some(4), Some(13)), "{d}");
    assert!(d.message.contains("unclosed quote"), "{d}");

    // Bad indentation: a key under a scalar.
    let d = parse_err(
        "bad.yaml",
        "http:\n  routers:\n    web:\n      rule: x\n     service: y\n",
    );
    assert_eq!((d.line, d.column), (Some(5), Some(6)), "{d}");
}

#[test]
fn yaml_type_error_deep_in_document() {
    let text = "\
http:
  routers:
    web:
      rule: Path(`/`)
  services:
    app:
      loadBalancer:
        servers:
          - url: http://a
          - url: http://b
            weight: heavy
";
    let d = parse_err("deep.yaml", text);
    assert_eq!((d.line, d.column), (Some(11), Some(21)), "{d}");
    assert_eq!(d.resource.as_deref(), Some("service `app`"));
    assert_eq!(d.field.as_deref(), Some("loadBalancer.servers[1].weight"));
    let shown = d.to_string();
    assert!(
        shown.starts_with(
            "deep.yaml:11:21: error: service `app`: field `loadBalancer.servers[1].weight`: "
        ),
        "{shown}"
    );
}

#[test]
fn yaml_unknown_field_names_the_path() {
    let text = "\
http:
  services:
    app:
      loadBalancer:
        passHostHeader: true
        responseForwarding:
          flushIntreval: 1s
";
    let d = parse_err("typo.yaml", text);
    assert_eq!(d.resource.as_deref(), Some("service `app`"));
    assert_eq!(
        d.field.as_deref(),
        Some("loadBalancer.responseForwarding.flushIntreval")
    );
    assert_eq!((d.line, d.column), (Some(7), Some(11)), "{d}");
    assert!(d.message.contains("unknown field `flushIntreval`"), "{d}");

    let d = parse_err("top.yaml", "htp:\n  routers: {}\n");
    assert_eq!(d.resource, None);
    assert_eq!(d.field.as_deref(), Some("htp"));
    assert_eq!(d.line, Some(1));

    // Opaque sections accept anything.
    parse_file(
        Path::new("ok.yaml"),
        "http:\n  middlewares:\n    m:\n      someFutureMiddleware: {x: 1}\n",
    )
    .unwrap();
}

#[test]
fn yaml_bad_duration() {
    let d = parse_err(
        "d.yaml",
        "http:\n  services:\n    s:\n      loadBalancer:\n        responseForwarding:\n          flushInterval: 10 seconds\n",
    );
    assert_eq!((d.line, d.column), (Some(6), Some(26)), "{d}");
    assert_eq!(
        d.field.as_deref(),
        Some("loadBalancer.responseForwarding.flushInterval")
    );
    assert!(d.message.contains("invalid duration"), "{d}");
}

#[test]
fn toml_syntax_error_position() {
    let d = parse_err("bad.toml", "[http.routers.web]\nrule = \"x\"\nservice = \n");
    assert_eq!((d.line, d.column), (Some(3), Some(11)), "{d}");
    let d = parse_err("bad.toml", "[http.routers.web\nrule = \"x\"\n");
    assert_eq!(d.line, Some(1), "{d}");
}

#[test]
fn toml_type_and_unknown_errors() {
    let text = "\
[http.routers.web]
rule = \"Path(`/`)\"
priority = \"high\"
";
    let d = parse_err("t.toml", text);
    assert_eq!((d.line, d.column), (Some(3), Some(12)), "{d}");
    assert_eq!(d.resource.as_deref(), Some("router `web`"));
    assert_eq!(d.field.as_deref(), Some("priority"));

    let text = "\
[[http.services.app.loadBalancer.servers]]
url = \"http://a\"
[[http.services.app.loadBalancer.servers]]
url = \"http://b\"
wieght = 2
";
    let d = parse_err("t.toml", text);
    assert_eq!(d.field.as_deref(), Some("loadBalancer.servers[1].wieght"));
    assert_eq!((d.line, d.column), (Some(5), Some(1)), "{d}");
    assert!(d.message.contains("unknown field `wieght`"), "{d}");
}

#[test]
fn duplicates_keep_the_first() {
    let a = parse_file(
        Path::new("a.yaml"),
        "http:\n  routers:\n    r:\n      rule: Path(`/a`)\n      service: s\n  services:\n    s:\n      loadBalancer:\n        servers:\n          - url: http://a\n",
    )
    .unwrap();
    let b = parse_file(
        Path::new("b.toml"),
        "[http.routers.r]\nrule = \"Path(`/b`)\"\nservice = \"s\"\n[http.routers.other]\nrule = \"Path(`/o`)\"\nservice = \"s\"\n[http.middlewares.m.stripPrefix]\nprefixes = [\"/x\"]\n",
    )
    .unwrap();
    let c = parse_file(
        Path::new("c.yaml"),
        "http:\n  middlewares:\n    m:\n      addPrefix:\n        prefix: /y\n",
    )
    .unwrap();
    let (merged, diags) = merge(vec![
        (PathBuf::from("a.yaml"), a),
        (PathBuf::from("b.toml"), b),
        (PathBuf::from("c.yaml"), c),
    ]);
    let http = merged.http.unwrap();
    assert_eq!(http.routers["r"].rule, "Path(`/a`)");
    assert_eq!(http.routers["other"].rule, "Path(`/o`)");
    assert_eq!(
        http.middlewares["m"],
        json!({"stripPrefix": {"prefixes": ["/x"]}})
    );
    assert_eq!(diags.len(), 2, "{diags:?}");
    assert!(diags.iter().all(|d| d.severity == Severity::Warning));
    assert_eq!(
        diags[0].message,
        "HTTP router `r` already configured in a.yaml, skipping the one in b.toml"
    );
    assert_eq!(diags[0].file.as_deref(), Some(Path::new("b.toml")));
    assert_eq!(
        diags[1].message,
        "HTTP middleware `m` already configured in b.toml, skipping the one in c.yaml"
    );
}

#[test]
fn merge_tls_and_tcp() {
    let a = parse_file(
        Path::new("a.yaml"),
        "tls:\n  certificates:\n    - certFile: a.crt\n      keyFile: a.key\n  options:\n    o: {minVersion: VersionTLS12}\ntcp:\n  routers:\n    t: {rule: \"HostSNI(`*`)\", service: s}\n",
    )
    .unwrap();
    let b = parse_file(
        Path::new("b.yaml"),
        "tls:\n  certificates:\n    - certFile: b.crt\n      keyFile: b.key\n  options:\n    o: {minVersion: VersionTLS13}\ntcp:\n  routers:\n    t: {rule: \"HostSNI(`b`)\", service: s}\n",
    )
    .unwrap();
    let (merged, diags) = merge(vec![
        (PathBuf::from("a.yaml"), a),
        (PathBuf::from("b.yaml"), b),
    ]);
    let tls = merged.tls.unwrap();
    assert_eq!(tls["certificates"].as_array().unwrap().len(), 2);
    assert_eq!(tls["options"]["o"]["minVersion"], "VersionTLS12");
    assert_eq!(merged.tcp.unwrap()["routers"]["t"]["rule"], "HostSNI(`*`)");
    let messages: Vec<&str> = diags.iter().map(|d| d.message.as_str()).collect();
    assert_eq!(
        messages,
        [
            "TCP router `t` already configured in a.yaml, skipping the one in b.yaml",
            "TLS options `o` already configured in a.yaml, skipping the one in b.yaml",
        ]
    );
}

#[test]
fn directory_listing_and_merge() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
    std::fs::create_dir_all(root.join(".git")).unwrap();
    let write = |p: &str, t: &str| std::fs::write(root.join(p), t).unwrap();
    let router =
        |rule: &str| format!("http:\n  routers:\n    r:\n      rule: {rule}\n      service: s\n");
    write("b.yaml", &router("Path(`/b`)"));
    write(
        "a.toml",
        "[http.routers.r]\nrule = \"Path(`/a`)\"\nservice = \"s\"\n",
    );
    write("sub/c.yml", &router("Path(`/c`)"));
    write("sub/deeper/d.yaml", &router("Path(`/d`)"));
    write("notes.txt", "ignored");
    write(".hidden.yaml", &router("Path(`/h`)"));
    write("b.yaml~", &router("Path(`/tilde`)"));
    write(".b.yaml.swp", "binary junk");
    write(".git/config.yaml", &router("Path(`/git`)"));

    let files = list_files(root).unwrap();
    let rel: Vec<String> = files
        .iter()
        .map(|p| p.strip_prefix(root).unwrap().display().to_string())
        .collect();
    assert_eq!(rel, ["a.toml", "b.yaml", "sub/c.yml", "sub/deeper/d.yaml"]);

    let parsed: Vec<(PathBuf, Configuration)> = files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let cfg = parse_file(&p, &text).unwrap();
            (p, cfg)
        })
        .collect();
    let (merged, diags) = merge(parsed);
    assert_eq!(merged.http.unwrap().routers["r"].rule, "Path(`/a`)");
    assert_eq!(diags.len(), 3);
    assert!(diags[0].to_string().contains("a.toml, skipping the one in"));

    assert!(list_files(&root.join("missing")).is_err());
}

#[test]
fn keys_without_values() {
    let text = "\
http:
  routers:
    r:
      rule: Path(`/`)
      service: s
      entryPoints:
      tls:
  services:
    s:
      loadBalancer:
        sticky:
          cookie:
        servers:
    w:
      weighted:
        services:
        healthCheck:
  middlewares:
";
    let cfg = parse_file(Path::new("n.yaml"), text).unwrap();
    let http = cfg.http.unwrap();
    let r = &http.routers["r"];
    assert!(r.entry_points.is_empty());
    // `tls:` with no value turns TLS on, like `tls: {}`.
    assert_eq!(r.tls, Some(json!({})));
    let lb = http.services["s"].load_balancer.as_ref().unwrap();
    assert!(lb.servers.is_empty());
    assert!(lb.sticky.as_ref().unwrap().cookie.is_some());
    assert_eq!(
        http.services["w"].weighted.as_ref().unwrap().health_check,
        Some(json!({}))
    );
    assert!(http.middlewares.is_empty());
}
