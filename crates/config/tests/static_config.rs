//! Static configuration: YAML/TOML files, defaults, flags, errors.

use std::path::{Path, PathBuf};

use serde_json::json;
use sluice_config::static_config::{ConfigError, StaticConfig};
use sluice_config::GoDuration;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn flags(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn yaml_and_toml_fixtures_agree() {
    let yaml = StaticConfig::load(Some(&fixture("static.yaml")), &[]).unwrap();
    let toml = StaticConfig::load(Some(&fixture("static.toml")), &[]).unwrap();
    assert_eq!(yaml, toml);

    let web = &yaml.entry_points["web"];
    assert_eq!(web.address, ":8000");
    let t = &web.transport;
    assert_eq!(
        t.responding_timeouts.read_timeout,
        GoDuration::from_secs(30)
    );
    // Unset siblings keep Traefik's defaults.
    assert_eq!(
        t.responding_timeouts.idle_timeout,
        GoDuration::from_secs(180)
    );
    assert_eq!(t.responding_timeouts.write_timeout, GoDuration::ZERO);
    assert_eq!(t.life_cycle.grace_time_out, GoDuration::from_secs(5));
    assert_eq!(t.life_cycle.request_accept_grace_timeout, GoDuration::ZERO);
    assert_eq!(web.forwarded_headers.trusted_ips, ["127.0.0.1/32"]);
    assert!(!web.as_default);

    let websecure = &yaml.entry_points["websecure"];
    assert!(websecure.as_default);
    assert_eq!(websecure.http, Some(json!({"tls": {}})));
    assert_eq!(
        websecure.transport.life_cycle.grace_time_out,
        GoDuration::from_secs(10)
    );
    // Entry points keep file order.
    let names: Vec<&str> = yaml.entry_points.keys().map(String::as_str).collect();
    assert_eq!(names, ["web", "websecure"]);

    assert_eq!(
        yaml.providers.providers_throttle_duration,
        Some(GoDuration::from_secs(1))
    );
    let file = yaml.providers.file.as_ref().unwrap();
    // Relative to the configuration file's directory.
    assert_eq!(file.directory, Some(fixture("dynamic")));
    assert!(!file.watch);
    assert_eq!(yaml.log.level, "DEBUG");
    assert_eq!(yaml.log.format.as_deref(), Some("json"));
    assert_eq!(yaml.api, Some(json!({"dashboard": true})));
    assert_eq!(yaml.core.default_rule_syntax.as_deref(), Some("v2"));
    assert!(yaml.providers.unsupported().is_empty());
}

#[test]
fn minimal_file_gets_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "sluice.yml",
        "entryPoints:\n  web:\n    address: :80\nproviders:\n  file:\n    filename: /etc/dyn.yaml\n",
    );
    let cfg = StaticConfig::load(Some(&p), &[]).unwrap();
    let web = &cfg.entry_points["web"];
    assert_eq!(
        web.transport.responding_timeouts.read_timeout,
        GoDuration::from_secs(60)
    );
    assert_eq!(
        web.transport.responding_timeouts.idle_timeout,
        GoDuration::from_secs(180)
    );
    assert_eq!(
        web.transport.life_cycle.grace_time_out,
        GoDuration::from_secs(10)
    );
    assert_eq!(web.transport.keep_alive_max_requests, 0);
    assert!(web.forwarded_headers.trusted_ips.is_empty());
    let file = cfg.providers.file.unwrap();
    assert!(file.watch, "watch defaults to true");
    assert_eq!(file.filename, Some(PathBuf::from("/etc/dyn.yaml")));
    assert_eq!(file.directory, None);
    assert_eq!(cfg.log.level, "INFO");
    assert_eq!(cfg.providers.providers_throttle_duration, None);

    // Empty and comment-only files are the defaults.
    for (name, text) in [("e.yaml", ""), ("c.yaml", "# nothing\n"), ("e.toml", "")] {
        let p = write(dir.path(), name, text);
        assert_eq!(
            StaticConfig::load(Some(&p), &[]).unwrap(),
            StaticConfig::default()
        );
    }
}

#[test]
fn flags_override_the_file() {
    let cfg = StaticConfig::load(
        Some(&fixture("static.yaml")),
        &flags(&[
            ("--entryPoints.web.address", "127.0.0.1:9000"),
            (
                "entryPoints.web.forwardedHeaders.trustedIPs",
                "10.0.0.0/8,192.168.0.0/16",
            ),
            ("providers.file", ""),
            ("providers.file.watch", "true"),
            ("providers.file.directory", "elsewhere"),
            ("log.level", "WARN"),
        ]),
    )
    .unwrap();
    let web = &cfg.entry_points["web"];
    assert_eq!(web.address, "127.0.0.1:9000");
    assert_eq!(
        web.forwarded_headers.trusted_ips,
        ["10.0.0.0/8", "192.168.0.0/16"]
    );
    // File values next to the overridden ones stay.
    assert_eq!(
        web.transport.responding_timeouts.read_timeout,
        GoDuration::from_secs(30)
    );
    let file = cfg.providers.file.unwrap();
    assert!(file.watch);
    // From a flag: relative to the current directory, left as given.
    assert_eq!(file.directory, Some(PathBuf::from("elsewhere")));
    assert_eq!(cfg.log.level, "WARN");
}

#[test]
fn flag_keys_are_case_insensitive() {
    let cfg = StaticConfig::load(
        Some(&fixture("static.toml")),
        &flags(&[
            ("ENTRYPOINTS.WEB.ADDRESS", ":7000"),
            (
                "entrypoints.Web.transport.respondingtimeouts.idletimeout",
                "5",
            ),
            ("Providers.File.Watch", ""),
            ("entryPoints.Admin.address", ":9999"),
        ]),
    )
    .unwrap();
    // `WEB` matched the existing `web` entry point instead of adding one.
    let names: Vec<&str> = cfg.entry_points.keys().map(String::as_str).collect();
    assert_eq!(names, ["web", "websecure", "Admin"]);
    let web = &cfg.entry_points["web"];
    assert_eq!(web.address, ":7000");
    assert_eq!(
        web.transport.responding_timeouts.idle_timeout,
        GoDuration::from_secs(5)
    );
    assert!(cfg.providers.file.unwrap().watch);
    assert_eq!(cfg.entry_points["Admin"].address, ":9999");
}

#[test]
fn flags_alone_create_everything() {
    let cfg = StaticConfig::load(
        None,
        &flags(&[
            ("entryPoints.web.address", ":8000"),
            ("entryPoints.web.asDefault", ""),
            ("entryPoints.web.transport.keepAliveMaxRequests", "100"),
            ("entryPoints.web.transport.keepAliveMaxTime", "1m"),
            ("providers.file.filename", "dyn.yaml"),
            ("providers.kubernetesCRD", ""),
        ]),
    )
    .unwrap();
    let web = &cfg.entry_points["web"];
    assert!(web.as_default);
    assert_eq!(web.transport.keep_alive_max_requests, 100);
    assert_eq!(web.transport.keep_alive_max_time, GoDuration::from_secs(60));
    assert_eq!(
        web.transport.life_cycle.grace_time_out,
        GoDuration::from_secs(10)
    );
    assert_eq!(
        cfg.providers.file.unwrap().filename,
        Some(PathBuf::from("dyn.yaml"))
    );
    assert_eq!(cfg.providers.kubernetes_crd, Some(json!({})));
}

#[test]
fn unknown_key_in_yaml_names_path_and_position() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "sluice.yaml",
        "entryPoints:\n  web:\n    adress: \":80\"\n",
    );
    let e = StaticConfig::load(Some(&p), &[]).unwrap_err();
    assert_eq!(e.key_path(), Some("entryPoints.web.adress"));
    assert_eq!(e.position(), Some((3, Some(5))));
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!(
            "{}:3:5: entryPoints.web.adress: unknown field `adress`, expected one of",
            p.display()
        )),
        "{msg}"
    );
    assert!(msg.contains("address"), "{msg}");
}

#[test]
fn type_error_in_toml_names_path_and_position() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "sluice.toml",
        "[entryPoints.web]\naddress = \":80\"\n[entryPoints.web.transport.respondingTimeouts]\nreadTimeout = \"soon\"\n",
    );
    let e = StaticConfig::load(Some(&p), &[]).unwrap_err();
    assert_eq!(
        e.key_path(),
        Some("entryPoints.web.transport.respondingTimeouts.readTimeout")
    );
    assert_eq!(e.position(), Some((4, Some(15))));
    assert!(e.to_string().contains("invalid duration"), "{e}");

    let p = write(
        dir.path(),
        "deep.toml",
        "[providers.file]\nwatch = \"yes\"\n",
    );
    let e = StaticConfig::load(Some(&p), &[]).unwrap_err();
    assert_eq!(e.key_path(), Some("providers.file.watch"));
    assert_eq!(e.position(), Some((2, Some(9))));
}

#[test]
fn syntax_errors_have_positions() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "s.yaml",
        "entryPoints:\n  web:\n    address: \":80\n",
    );
    let e = StaticConfig::load(Some(&p), &[]).unwrap_err();
    assert!(matches!(e, ConfigError::Invalid { .. }), "{e}");
    assert_eq!(e.position().map(|p| p.0), Some(3), "{e}");

    let p = write(dir.path(), "s.toml", "[entryPoints.web\naddress = 1\n");
    let e = StaticConfig::load(Some(&p), &[]).unwrap_err();
    assert_eq!(e.position().map(|p| p.0), Some(1), "{e}");
}

#[test]
fn missing_file() {
    let e = StaticConfig::load(Some(Path::new("/nonexistent/sluice.yaml")), &[]).unwrap_err();
    assert!(matches!(e, ConfigError::Read { .. }));
    assert!(
        e.to_string().starts_with("/nonexistent/sluice.yaml: "),
        "{e}"
    );
}

#[test]
fn traefik_only_sections_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "traefik.yml",
        "\
global:
  checkNewVersion: false
  sendAnonymousUsage: false
api:
  dashboard: true
  insecure: true
ping: {}
metrics:
  prometheus: {}
accessLog:
  format: json
tracing: {}
certificatesResolvers:
  le:
    acme:
      email: a@example.com
experimental:
  plugins: {}
serversTransport:
  insecureSkipVerify: true
providers:
  docker:
    exposedByDefault: false
entryPoints:
  web:
    address: :80
    http:
      redirections:
        entryPoint:
          to: websecure
          scheme: https
    proxyProtocol:
      trustedIPs: [10.0.0.0/8]
",
    );
    let cfg = StaticConfig::load(Some(&p), &[]).unwrap();
    assert_eq!(cfg.providers.unsupported(), ["docker"]);
    assert_eq!(
        cfg.entry_points["web"].http.as_ref().unwrap()["redirections"]["entryPoint"]["to"],
        "websecure"
    );
}

#[test]
fn keys_without_values() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "nulls.yaml",
        "entryPoints:\n  web:\n    address: :80\n    forwardedHeaders:\n      trustedIPs:\n    transport:\nproviders:\n  file:\napi:\nlog:\n",
    );
    let cfg = StaticConfig::load(Some(&p), &[]).unwrap();
    assert!(cfg.entry_points["web"]
        .forwarded_headers
        .trusted_ips
        .is_empty());
    assert_eq!(
        cfg.entry_points["web"].transport.life_cycle.grace_time_out,
        GoDuration::from_secs(10)
    );
    // `file:` and `api:` with no value are present, empty sections.
    assert!(cfg.providers.file.unwrap().watch);
    assert_eq!(cfg.api, Some(json!({})));
    assert_eq!(cfg.log.level, "INFO");
}

#[test]
fn flags_do_not_hide_a_malformed_file() {
    let dir = tempfile::tempdir().unwrap();
    // The file must be valid on its own, flags or not.
    let p = write(dir.path(), "list.yaml", "- a\n- b\n");
    for f in [flags(&[("log.level", "DEBUG")]), Vec::new()] {
        let e = StaticConfig::load(Some(&p), &f).unwrap_err();
        assert!(matches!(e, ConfigError::Invalid { .. }), "{e}");
        assert_eq!(e.position(), Some((1, Some(1))), "{e}");
    }

    // A flag into a section that the file set to a scalar.
    let p = write(dir.path(), "scalar.yaml", "api: 3\n");
    let e = StaticConfig::load(Some(&p), &flags(&[("api.insecure", "")])).unwrap_err();
    assert_eq!(
        e.to_string(),
        "flag `--api.insecure`: `api` is not a section"
    );
}

#[test]
fn section_flag_keeps_file_paths_relative_to_the_file() {
    let cfg = StaticConfig::load(
        Some(&fixture("static.yaml")),
        &flags(&[("providers.file", ""), ("providers.file.watch", "true")]),
    )
    .unwrap();
    let file = cfg.providers.file.unwrap();
    assert_eq!(file.directory, Some(fixture("dynamic")));
    assert!(file.watch);
}
