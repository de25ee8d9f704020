//! TLS termination end to end: certificates chosen by SNI (dynamic files and Kubernetes
//! Secrets), the default certificate and sniStrict, TLS options (versions, cipher suites,
//! client authentication), option conflicts, Traefik's domain-fronting 421 cases, TLS-only
//! routers, HTTPS redirection, HTTP/2 over ALPN and certificate hot reload.

mod common;

use std::time::{Duration, Instant};

use common::tls::{self as client, Ca};
use common::{origin, Sluice};
use serde_json::{json, Value};

/// A dynamic configuration file (JSON is YAML) with the given routers, TLS section and one
/// whoami service `app` pointing at `origin`.
fn dynamic(origin: &common::Origin, routers: Value, tls: Value) -> String {
    json!({
        "http": {
            "routers": routers,
            "services": {"app": {"loadBalancer": {"servers": [{"url": origin.url()}]}}},
        },
        "tls": tls,
    })
    .to_string()
}

fn certificate(issued: &client::Issued) -> Value {
    json!({"certFile": issued.cert, "keyFile": issued.key})
}

fn tls_router(rule: &str, tls: Value) -> Value {
    json!({"rule": rule, "service": "app", "tls": tls})
}

#[tokio::test(flavor = "multi_thread")]
async fn sni_picks_the_certificate_and_unknown_names_get_the_default() {
    let app = origin("app").await;
    let ca = Ca::new("test CA");
    let a = ca.issue(&["a.test"]);
    let b = ca.issue(&["b.test"]);
    let wild = ca.issue(&["*.wild.test"]);
    let config = dynamic(
        &app,
        json!({"all": tls_router("PathPrefix(`/`)", json!({}))}),
        json!({"certificates": [certificate(&a), certificate(&b), certificate(&wild)]}),
    );
    let sluice = Sluice::start(&[("tls.yaml", config)], &[]).await;

    for (sni, expected) in [("a.test", &a), ("b.test", &b), ("x.wild.test", &wild)] {
        let answer = client::get(sluice.addr, client::verifying(&ca), Some(sni), sni, "/")
            .await
            .unwrap_or_else(|e| panic!("{sni}: {e}\n{}", sluice.log_text()));
        assert_eq!(answer.status, 200);
        assert_eq!(answer.origin(), "app");
        let conn = client::connect(sluice.addr, client::trusting(), Some(sni), &[])
            .await
            .expect("connect");
        assert_eq!(
            conn.leaf.as_ref(),
            Some(&expected.der()),
            "certificate for {sni}"
        );
    }
    // One label only for wildcards, and unknown names: the generated default certificate.
    for sni in ["unknown.test", "y.x.wild.test"] {
        let conn = client::connect(sluice.addr, client::trusting(), Some(sni), &[])
            .await
            .expect("connect");
        let leaf = conn.leaf.expect("a certificate");
        assert_eq!(client::common_name(&leaf), "SLUICE DEFAULT CERT", "{sni}");
    }
    // A client checking names refuses the default certificate for an unknown name.
    let refused = client::get(
        sluice.addr,
        client::verifying(&ca),
        Some("unknown.test"),
        "unknown.test",
        "/",
    )
    .await;
    assert!(refused.is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_from_manifests_serve_by_sni_and_a_tls_store_sets_the_default() {
    let app = origin("app").await;
    let ca = Ca::new("test CA");
    let a = ca.issue(&["a.test"]);
    let b = ca.issue(&["b.test"]);
    let fallback = ca.issue(&["fallback.test"]);
    let b64 = |s: &str| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(s)
    };
    let secret = |name: &str, issued: &client::Issued| {
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: default\ntype: kubernetes.io/tls\ndata:\n  tls.crt: {}\n  tls.key: {}\n---\n",
            b64(&issued.cert),
            b64(&issued.key)
        )
    };
    let route = |name: &str, host: &str, secret: &str| {
        format!(
            "apiVersion: traefik.io/v1alpha1\nkind: IngressRoute\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  entryPoints: [web]\n  routes:\n  - match: Host(`{host}`)\n    kind: Rule\n    services:\n    - name: app\n      port: 80\n  tls:\n    secretName: {secret}\n---\n"
        )
    };
    let port = app.addr.port();
    let mut manifests = String::new();
    manifests += &secret("a-cert", &a);
    manifests += &secret("b-cert", &b);
    manifests += &secret("fallback-cert", &fallback);
    manifests += &route("a", "a.test", "a-cert");
    manifests += &route("b", "b.test", "b-cert");
    manifests += &format!(
        "apiVersion: traefik.io/v1alpha1\nkind: TLSStore\nmetadata:\n  name: default\n  namespace: default\nspec:\n  defaultCertificate:\n    secretName: fallback-cert\n---\n\
         apiVersion: v1\nkind: Service\nmetadata:\n  name: app\n  namespace: default\nspec:\n  ports:\n  - name: http\n    port: 80\n---\n\
         apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: app-1\n  namespace: default\n  labels:\n    kubernetes.io/service-name: app\naddressType: IPv4\nports:\n- name: http\n  port: {port}\nendpoints:\n- addresses: [127.0.0.1]\n  conditions:\n    ready: true\n"
    );
    let sluice = Sluice::start(&[("manifests.yaml", manifests)], &[]).await;
    for (sni, expected) in [("a.test", &a), ("b.test", &b)] {
        let mut conn = client::connect(sluice.addr, client::verifying(&ca), Some(sni), &[])
            .await
            .unwrap_or_else(|e| panic!("{sni}: {e}\n{}", sluice.log_text()));
        assert_eq!(conn.leaf.as_ref(), Some(&expected.der()));
        let answer = conn.get(sni, "/").await.expect("request");
        assert_eq!(answer.status, 200, "{}", sluice.log_text());
        assert_eq!(answer.origin(), "app");
    }
    let conn = client::connect(sluice.addr, client::trusting(), Some("other.test"), &[])
        .await
        .expect("connect");
    assert_eq!(
        conn.leaf.as_ref(),
        Some(&fallback.der()),
        "TLSStore default"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sni_strict_refuses_names_without_a_certificate() {
    let app = origin("app").await;
    let ca = Ca::new("test CA");
    let a = ca.issue(&["a.test"]);
    let config = dynamic(
        &app,
        json!({"a": tls_router("Host(`a.test`)", json!({}))}),
        json!({"certificates": [certificate(&a)], "options": {"default": {"sniStrict": true}}}),
    );
    let sluice = Sluice::start(&[("tls.yaml", config)], &[]).await;
    let ok = client::get(
        sluice.addr,
        client::verifying(&ca),
        Some("a.test"),
        "a.test",
        "/",
    )
    .await;
    assert_eq!(ok.expect("a.test").status, 200);
    for sni in [Some("unknown.test"), None] {
        let refused = client::connect(sluice.addr, client::trusting(), sni, &[]).await;
        assert!(refused.is_err(), "sniStrict must refuse {sni:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn options_restrict_versions_and_cipher_suites() {
    let app = origin("app").await;
    let ca = Ca::new("test CA");
    let modern = ca.issue(&["modern.test"]);
    let picky = ca.issue(&["picky.test"]);
    let config = dynamic(
        &app,
        json!({
            "modern": tls_router("Host(`modern.test`)", json!({"options": "modern"})),
            "picky": tls_router("Host(`picky.test`)", json!({"options": "picky"})),
        }),
        json!({
            "certificates": [certificate(&modern), certificate(&picky)],
            "options": {
                "modern": {"minVersion": "VersionTLS13"},
                "picky": {"maxVersion": "VersionTLS12",
                          "cipherSuites": ["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"]},
            }
        }),
    );
    let sluice = Sluice::start(&[("tls.yaml", config)], &[]).await;
    let tls12 = [&rustls::version::TLS12];
    let tls13 = [&rustls::version::TLS13];

    let refused = client::connect(
        sluice.addr,
        client::trusting_with(&tls12, None),
        Some("modern.test"),
        &[],
    )
    .await;
    assert!(
        refused.is_err(),
        "TLS 1.2 client must be refused by minVersion TLS1.3"
    );
    let conn = client::connect(
        sluice.addr,
        client::trusting_with(&tls13, None),
        Some("modern.test"),
        &[],
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", sluice.log_text()));
    assert_eq!(conn.version, Some(rustls::ProtocolVersion::TLSv1_3));

    let wrong_suite =
        client::trusting_with(&tls12, Some("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"));
    assert!(
        client::connect(sluice.addr, wrong_suite, Some("picky.test"), &[])
            .await
            .is_err()
    );
    let right_suite =
        client::trusting_with(&tls12, Some("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"));
    let mut conn = client::connect(sluice.addr, right_suite, Some("picky.test"), &[])
        .await
        .expect("listed suite");
    assert_eq!(conn.version, Some(rustls::ProtocolVersion::TLSv1_2));
    assert_eq!(
        conn.get("picky.test", "/").await.expect("request").status,
        200
    );
    // maxVersion TLS1.2: a TLS 1.3-only client is refused.
    assert!(client::connect(
        sluice.addr,
        client::trusting_with(&tls13, None),
        Some("picky.test"),
        &[]
    )
    .await
    .is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn client_auth_requires_a_certificate_signed_by_the_ca_and_passes_it_on() {
    let app = origin("app").await;
    let server_ca = Ca::new("server CA");
    let client_ca = Ca::new("client CA");
    let other_ca = Ca::new("other CA");
    let site = server_ca.issue(&["mtls.test"]);
    let config = dynamic(
        &app,
        json!({"mtls": {"rule": "Host(`mtls.test`)", "service": "app", "middlewares": ["cert"],
                        "tls": {"options": "mtls"}}}),
        json!({
            "certificates": [certificate(&site)],
            "options": {"mtls": {"clientAuth": {"caFiles": [client_ca.pem],
                                                 "clientAuthType": "RequireAndVerifyClientCert"}}}
        }),
    )
    .replace(
        "\"routers\"",
        "\"middlewares\":{\"cert\":{\"passTLSClientCert\":{\"pem\":true}}},\"routers\"",
    );
    let sluice = Sluice::start(&[("tls.yaml", config)], &[]).await;

    let anonymous = client::get(
        sluice.addr,
        client::trusting(),
        Some("mtls.test"),
        "mtls.test",
        "/",
    )
    .await;
    assert!(
        anonymous.is_err(),
        "no client certificate must be refused: {anonymous:?}"
    );
    let stranger = other_ca.issue(&["stranger.test"]);
    let strange = client::get(
        sluice.addr,
        client::trusting_with_client_cert(&stranger),
        Some("mtls.test"),
        "mtls.test",
        "/",
    )
    .await;
    assert!(
        strange.is_err(),
        "a certificate from another CA must be refused"
    );

    let member = client_ca.issue(&["member.test"]);
    let answer = client::get(
        sluice.addr,
        client::trusting_with_client_cert(&member),
        Some("mtls.test"),
        "mtls.test",
        "/",
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", sluice.log_text()));
    assert_eq!(answer.status, 200);
    let passed = answer
        .seen("X-Forwarded-Tls-Client-Cert")
        .expect("certificate passed on");
    let body: String = member
        .cert
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    assert!(passed.starts_with(&body), "origin got {passed}");
}

/// Traefik's TestWithDomainFronting: 421 when the Host header's router uses other TLS options
/// than the handshake did.
#[tokio::test(flavor = "multi_thread")]
async fn domain_fronting_across_options_is_a_421() {
    let site1 = origin("site1").await;
    let ca = Ca::new("test CA");
    let certs: Vec<_> = ["site1.test", "site2.test", "site3.test"]
        .iter()
        .map(|h| ca.issue(&[h]))
        .collect();
    let config = json!({
        "http": {
            "routers": {
                "site1": {"rule": "Host(`site1.test`)", "service": "site1", "tls": {}},
                "site2": {"rule": "Host(`site2.test`)", "service": "site2", "tls": {}},
                "site3": {"rule": "Host(`site3.test`)", "service": "site3", "tls": {"options": "mytls"}},
            },
            "services": {
                "site1": {"loadBalancer": {"servers": [{"url": site1.url()}]}},
                "site2": {"loadBalancer": {"servers": [{"url": site1.url()}]}},
                "site3": {"loadBalancer": {"servers": [{"url": site1.url()}]}},
            },
        },
        "tls": {
            "certificates": certs.iter().map(certificate).collect::<Vec<_>>(),
            "options": {"mytls": {"maxVersion": "VersionTLS12"}},
        },
    })
    .to_string();
    let sluice = Sluice::start(&[("tls.yaml", config)], &[]).await;
    let cases = [
        (Some("site1.test"), "site1.test", 200),
        (Some("site2.test"), "site1.test", 200),
        (Some("site1.test"), "site3.test", 421),
        (Some("site3.test"), "site1.test", 421),
        (Some("site3.test"), "site2.test", 421),
        (Some("site3.test"), "site3.test", 200),
        (None, "site3.test", 421),
        (None, "site1.test", 200),
    ];
    for (sni, host, status) in cases {
        let answer = client::get(sluice.addr, client::trusting(), sni, host, "/")
            .await
            .unwrap_or_else(|e| panic!("SNI {sni:?} Host {host}: {e}"));
        assert_eq!(
            answer.status, status,
            "SNI {sni:?} Host {host}: {}",
            answer.body
        );
        if status == 421 {
            assert_eq!(answer.body, "Misdirected Request\n");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn conflicting_options_for_one_host_fall_back_to_default() {
    let app = origin("app").await;
    let ca = Ca::new("test CA");
    let cert = ca.issue(&["shared.test"]);
    let config = dynamic(
        &app,
        json!({
            "one": tls_router("Host(`shared.test`) && Path(`/one`)", json!({"options": "modern"})),
            "two": tls_router("Host(`shared.test`) && Path(`/two`)", json!({})),
        }),
        json!({"certificates": [certificate(&cert)],
               "options": {"modern": {"minVersion": "VersionTLS13"}}}),
    );
    let sluice = Sluice::start(&[("tls.yaml", config)], &[]).await;
    // `default` options apply to the host, so a TLS 1.2 client is served on both routes.
    let tls12 = [&rustls::version::TLS12];
    let mut conn = client::connect(
        sluice.addr,
        client::trusting_with(&tls12, None),
        Some("shared.test"),
        &[],
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", sluice.log_text()));
    assert_eq!(
        conn.get("shared.test", "/one").await.expect("one").status,
        200
    );
    assert_eq!(
        conn.get("shared.test", "/two")
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", sluice.log_text()))
            .status,
        200
    );
    let log = sluice.log_text();
    assert!(
        log.contains("host `shared.test` is served with different TLS options"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_routers_serve_only_tls_and_http_routers_only_cleartext() {
    let app = origin("app").await;
    let ca = Ca::new("test CA");
    let cert = ca.issue(&["secure.test", "plain.test"]);
    let config = dynamic(
        &app,
        json!({
            "secure": tls_router("Host(`secure.test`)", json!({})),
            "plain": {"rule": "Host(`plain.test`)", "service": "app"},
        }),
        json!({"certificates": [certificate(&cert)]}),
    );
    let sluice = Sluice::start(&[("tls.yaml", config)], &[]).await;
    let url = sluice.url("/");
    assert_eq!(
        common::get(&url, &[("Host", "plain.test")]).await.status,
        200
    );
    assert_eq!(
        common::get(&url, &[("Host", "secure.test")]).await.status,
        404
    );
    let get = |host: &'static str| {
        client::get(sluice.addr, client::verifying(&ca), Some(host), host, "/")
    };
    assert_eq!(get("secure.test").await.expect("tls").status, 200);
    assert_eq!(get("plain.test").await.expect("tls").status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn entry_point_redirection_and_entry_point_tls() {
    let app = origin("app").await;
    let ca = Ca::new("test CA");
    let cert = ca.issue(&["site.test"]);
    let secure_port = common::free_port();
    // No `tls` on the router: the websecure entry point's `http.tls` makes it a TLS router.
    let config = json!({
        "http": {
            "routers": {"site": {"rule": "Host(`site.test`)", "service": "app", "entryPoints": ["websecure"]}},
            "services": {"app": {"loadBalancer": {"servers": [{"url": app.url()}]}}},
        },
        "tls": {"certificates": [certificate(&cert)]},
    })
    .to_string();
    let sluice = Sluice::start(
        &[("tls.yaml", config)],
        &[
            &format!("--entryPoints.websecure.address=127.0.0.1:{secure_port}"),
            "--entryPoints.web.http.redirections.entryPoint.to=websecure",
            "--entryPoints.websecure.http.tls=true",
        ],
    )
    .await;
    let answer = common::get(&sluice.url("/path?q=1"), &[("Host", "site.test")]).await;
    assert_eq!(answer.status, 301, "{}\n{}", answer.body, sluice.log_text());
    assert_eq!(
        answer.headers.get("location").and_then(|v| v.to_str().ok()),
        Some(format!("https://site.test:{secure_port}/path?q=1").as_str())
    );
    let secure = format!("127.0.0.1:{secure_port}").parse().expect("addr");
    let answer = client::get(
        secure,
        client::verifying(&ca),
        Some("site.test"),
        "site.test",
        "/",
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", sluice.log_text()));
    assert_eq!(answer.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn http2_over_alpn_and_forwarded_proto() {
    let app = origin("app").await;
    let ca = Ca::new("test CA");
    let cert = ca.issue(&["h2.test"]);
    let config = dynamic(
        &app,
        json!({"h2": tls_router("Host(`h2.test`)", json!({}))}),
        json!({"certificates": [certificate(&cert)]}),
    );
    let sluice = Sluice::start(&[("tls.yaml", config)], &[]).await;
    let mut conn = client::connect(
        sluice.addr,
        client::verifying(&ca),
        Some("h2.test"),
        &["h2", "http/1.1"],
    )
    .await
    .expect("connect");
    assert_eq!(conn.alpn.as_deref(), Some(&b"h2"[..]));
    let answer = conn.get("h2.test", "/").await.expect("h2 request");
    assert_eq!(answer.status, 200);
    assert_eq!(answer.seen("X-Forwarded-Proto"), Some("https"));
}

#[tokio::test(flavor = "multi_thread")]
async fn certificates_reload_without_dropping_open_connections() {
    let app = origin("app").await;
    let ca = Ca::new("test CA");
    let first = ca.issue(&["live.test"]);
    let second = ca.issue(&["live.test"]);
    let routers = json!({"live": tls_router("Host(`live.test`)", json!({}))});
    let sluice = Sluice::start(
        &[(
            "tls.yaml",
            dynamic(
                &app,
                routers.clone(),
                json!({"certificates": [certificate(&first)]}),
            ),
        )],
        &[],
    )
    .await;
    let mut open = client::connect(sluice.addr, client::verifying(&ca), Some("live.test"), &[])
        .await
        .expect("connect");
    assert_eq!(open.leaf.as_ref(), Some(&first.der()));
    assert_eq!(open.get("live.test", "/").await.expect("first").status, 200);

    sluice.write(
        "tls.yaml",
        &dynamic(
            &app,
            routers,
            json!({"certificates": [certificate(&second)]}),
        ),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let conn = client::connect(sluice.addr, client::verifying(&ca), Some("live.test"), &[])
            .await
            .expect("connect");
        if conn.leaf.as_ref() == Some(&second.der()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The connection opened before the reload still serves.
    assert_eq!(
        open.get("live.test", "/")
            .await
            .expect("after reload")
            .status,
        200
    );
}
