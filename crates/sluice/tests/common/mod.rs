//! Shared helpers for the end-to-end tests: spawn Sluice (as a real process), spawn whoami
//! origins, and a small HTTP client. Everything listens on 127.0.0.1; origins on ports the OS picks,
//! Sluice on ports below the OS's ephemeral range.

#![allow(dead_code)]

pub mod tls;
pub mod tutorial;

use std::collections::HashMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use sluice::whoami::Whoami;

/// Path of the fixtures folder.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A port that was free a moment ago, outside the range the kernel picks from (see
/// [`sluice_acme::testing::free_port`]).
pub fn free_port() -> u16 {
    sluice_acme::testing::free_port()
}

/// A running whoami origin.
pub struct Origin {
    pub name: String,
    pub addr: SocketAddr,
    pub whoami: Arc<Whoami>,
    task: tokio::task::JoinHandle<()>,
}

impl Origin {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts a whoami origin on an ephemeral loopback port.
pub async fn origin(name: &str) -> Origin {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind origin");
    let addr = listener.local_addr().expect("origin address");
    let whoami = Whoami::new(name);
    let task = tokio::spawn(whoami.clone().serve(listener));
    Origin {
        name: name.to_owned(),
        addr,
        whoami,
        task,
    }
}

/// A Sluice process serving one `web` entry point from a dynamic-config directory.
pub struct Sluice {
    pub child: Child,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    pub log: PathBuf,
}

impl Sluice {
    /// Starts Sluice on a fresh temporary directory holding `files` (name -> content), with
    /// extra static flags. Waits until the entry point accepts connections.
    pub async fn start(files: &[(&str, String)], extra_flags: &[&str]) -> Sluice {
        Sluice::start_at(free_port(), files, extra_flags).await
    }

    /// Like [`Sluice::start`], with the `web` entry point on `port` (chosen before something
    /// else must know it, e.g. an ACME server validating on that port).
    pub async fn start_at(port: u16, files: &[(&str, String)], extra_flags: &[&str]) -> Sluice {
        let dir = tempfile::tempdir().expect("temp dir");
        let dynamic = dir.path().join("dynamic");
        std::fs::create_dir(&dynamic).expect("dynamic dir");
        for (name, content) in files {
            std::fs::write(dynamic.join(name), content).expect("write fixture");
        }
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let log = dir.path().join("sluice.log");
        let log_file = std::fs::File::create(&log).expect("log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
        command
            .arg(format!("--entryPoints.web.address=127.0.0.1:{port}"))
            .arg(format!("--providers.file.directory={}", dynamic.display()))
            .arg("--log.level=INFO")
            .args(extra_flags)
            .stdout(Stdio::null())
            .stderr(log_file);
        let child = command.spawn().expect("spawn sluice");
        let mut sluice = Sluice {
            child,
            addr,
            dir,
            log,
        };
        sluice.wait_listening().await;
        sluice
    }

    async fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            // Something else answering on the port is not Sluice: check that it still runs.
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("sluice exited ({status}); log:\n{}", self.log_text());
            }
            if tokio::net::TcpStream::connect(self.addr).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "sluice did not listen on {}; log:\n{}",
            self.addr,
            self.log_text()
        );
    }

    /// The dynamic-config directory.
    pub fn dynamic_dir(&self) -> PathBuf {
        self.dir.path().join("dynamic")
    }

    /// Replaces (or creates) a dynamic-config file.
    pub fn write(&self, name: &str, content: &str) {
        let path = self.dynamic_dir().join(name);
        let mut file = std::fs::File::create(path).expect("open fixture");
        file.write_all(content.as_bytes()).expect("write fixture");
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// Peak resident memory (VmHWM) in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// Waits until `check` passes against the log, or panics after `limit`.
    pub async fn wait_for_log(&self, needle: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.log_text().contains(needle) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("`{needle}` not in the log:\n{}", self.log_text());
    }
}

impl Drop for Sluice {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A response reduced to what tests look at.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl Answer {
    /// The `Name:` line of a whoami answer.
    pub fn origin(&self) -> &str {
        self.body
            .lines()
            .find_map(|l| l.strip_prefix("Name: "))
            .unwrap_or("")
    }

    /// A header as the origin received it (`Name: value` lines of a whoami answer).
    pub fn seen(&self, header: &str) -> Option<&str> {
        let prefix = format!("{header}: ");
        self.body
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
    }
}

/// An HTTP/1.1 client with pooled connections.
pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// An HTTP/2 (h2c prior knowledge) client.
pub fn h2c_client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

/// Sends a request and reads the whole answer.
pub async fn send(
    client: &Client<HttpConnector, Full<Bytes>>,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<Answer, String> {
    let mut builder = http::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let request = builder
        .body(Full::new(Bytes::from(body.to_owned())))
        .map_err(|e| e.to_string())?;
    let response = client
        .request(request)
        .await
        .map_err(|e| format!("{e:?}"))?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok(Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// GET with headers; panics on transport errors.
pub async fn get(url: &str, headers: &[(&str, &str)]) -> Answer {
    send(&client(), "GET", url, headers, "")
        .await
        .expect("request")
}

/// Counts answers by origin name.
pub fn tally<'a>(names: impl IntoIterator<Item = &'a str>) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for name in names {
        *counts.entry(name.to_owned()).or_insert(0) += 1;
    }
    counts
}

/// Reads `tests/fixtures/NAME` and replaces each `${key}` with its value.
pub fn render(name: &str, vars: &[(&str, String)]) -> String {
    let mut text = std::fs::read_to_string(fixtures().join(name)).expect("read fixture");
    for (key, value) in vars {
        text = text.replace(&format!("${{{key}}}"), value);
    }
    assert!(!text.contains("${"), "unreplaced placeholder in {name}");
    text
}

/// Starts one origin per name and returns them with the `${name}` variables for [`render`].
pub async fn origins(names: &[&str]) -> (Vec<Origin>, Vec<(&'static str, String)>) {
    let mut started = Vec::new();
    let mut vars = Vec::new();
    for name in names {
        let o = origin(name).await;
        vars.push((
            Box::leak(name.to_string().into_boxed_str()) as &'static str,
            o.url(),
        ));
        started.push(o);
    }
    (started, vars)
}
