//! The `sluice` binary: command line, logging, signals. Everything else lives in the library.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use sluice::explain::{explain, Question};
use sluice::proxy::{self, Proxy};
use sluice::whoami::Whoami;
use sluice_config::static_config::StaticConfig;
use sluice_config::Severity;

// glibc's allocator costs several percent of the request path under load; mimalloc keeps
// per-thread heaps, which fits the one-runtime-per-worker design.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Sluice: an edge router that speaks Traefik's configuration.
///
/// Traefik-style dotted flags override the static configuration file, e.g.
/// `--entryPoints.web.address=127.0.0.1:8000 --providers.file.directory=DIR`.
#[derive(Parser, Debug)]
#[command(name = "sluice", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: ConfigArgs,
}

#[derive(clap::Args, Debug, Clone, Default)]
struct ConfigArgs {
    /// Static configuration file (YAML or TOML).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the proxy (the default command).
    Run(ConfigArgs),
    /// Run a demo origin that answers with its name and the request it received.
    Whoami {
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "127.0.0.1:9000")]
        listen: String,
    },
    /// Show which router a request would match and which server it would reach.
    Explain {
        #[command(flatten)]
        config: ConfigArgs,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// Entry point receiving the request (default: the first one configured).
        #[arg(long = "entry-point")]
        entry_point: Option<String>,
        /// Request header, `Name: value` (repeatable).
        #[arg(short = 'H', long = "header")]
        headers: Vec<String>,
        /// Address of the client (for ClientIP rules).
        #[arg(long = "client-ip", default_value = "127.0.0.1")]
        client_ip: IpAddr,
        /// Request method.
        method: String,
        /// Request URL, e.g. http://example.com/path?q=1
        url: String,
    },
    /// Validate the configuration: exit 0 when valid, 1 with diagnostics otherwise.
    Check(ConfigArgs),
    /// Print the CustomResourceDefinitions of Traefik's kinds (both API groups), generated from
    /// the types Sluice reads them with; `--out DIR` writes one file per group instead.
    Crds {
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Start Sluice on the bundled example together with its two demo origins.
    Demo {
        /// Directory of the example: a static `sluice.yaml`, the configuration it points at, and
        /// a `TRY` file of commands to print.
        #[arg(long, default_value = "examples/tutorial")]
        dir: PathBuf,
    },
}

#[derive(clap::Args, Debug)]
struct DumpArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Print one provider's own output (`file`, `kubernetescrd`), with names as that provider
    /// writes them, instead of the merged configuration with `@provider` names.
    #[arg(long)]
    provider: Option<String>,
}

#[derive(Subcommand, Debug)]
enum ConfigCommand {
    /// Print the dynamic configuration as JSON, in Traefik's schema.
    Dump(DumpArgs),
}

fn main() -> ExitCode {
    let (args, flags) = split_dotted_flags(std::env::args().collect());
    let cli = Cli::parse_from(args);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("sluice: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli, flags)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("sluice: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli, flags: Vec<(String, String)>) -> anyhow::Result<ExitCode> {
    match cli.command {
        None => run(load_static(&cli.run, &flags)?).await,
        Some(Command::Run(args)) => run(load_static(&args, &flags)?).await,
        Some(Command::Whoami { name, listen }) => {
            init_logging("INFO");
            let listener = tokio::net::TcpListener::bind(&listen)
                .await
                .with_context(|| format!("whoami: cannot listen on {listen}"))?;
            tracing::info!(%name, address = %listener.local_addr()?, "whoami listening");
            tokio::select! {
                _ = Whoami::new(name).serve(listener) => {}
                _ = terminate() => {}
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Explain {
            config,
            json,
            entry_point,
            headers,
            client_ip,
            method,
            url,
        }) => explain_command(
            &config,
            &flags,
            json,
            entry_point,
            &headers,
            client_ip,
            &method,
            &url,
        ),
        Some(Command::Check(args)) => check(&args, &flags),
        Some(Command::Config {
            command: ConfigCommand::Dump(args),
        }) => {
            let config = load_static(&args.config, &flags)?;
            let (_, loaded, _) = proxy::load_once(&config)?;
            for diagnostic in &loaded.diagnostics {
                eprintln!("{diagnostic}");
            }
            let output = match &args.provider {
                None => &loaded.config,
                Some(name) => match loaded.providers.get(name) {
                    Some(config) => config,
                    None => bail!(
                        "provider `{name}` produced nothing (providers with output: {})",
                        loaded
                            .providers
                            .keys()
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                },
            };
            println!("{}", serde_json::to_string_pretty(output)?);
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Demo { dir }) => demo(&dir, &flags).await,
        Some(Command::Crds { out }) => {
            let files = sluice_crd::try_crd_definitions()?;
            match out {
                Some(dir) => {
                    std::fs::create_dir_all(&dir)
                        .with_context(|| format!("cannot create {}", dir.display()))?;
                    for (name, text) in files {
                        let path = dir.join(name);
                        std::fs::write(&path, text)
                            .with_context(|| format!("cannot write {}", path.display()))?;
                        println!("wrote {}", path.display());
                    }
                }
                None => {
                    for (_, text) in files {
                        print!("{text}");
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Runs the proxy until SIGTERM or SIGINT; SIGHUP reloads the dynamic configuration.
async fn run(config: StaticConfig) -> anyhow::Result<ExitCode> {
    init_logging(&config.log.level);
    let proxy = Proxy::start(&config).await?;
    serve_until_signal(proxy).await
}

async fn serve_until_signal(proxy: Proxy) -> anyhow::Result<ExitCode> {
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("cannot listen for SIGHUP")?;
    let stop = terminate();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = hangup.recv() => {
                tracing::info!("SIGHUP: reloading the dynamic configuration");
                proxy.reload();
            }
            _ = &mut stop => break,
        }
    }
    tracing::info!("shutting down: no new connections, finishing requests in flight");
    proxy.shutdown().await;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// Resolves on SIGTERM or SIGINT.
async fn terminate() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

fn load_static(args: &ConfigArgs, flags: &[(String, String)]) -> anyhow::Result<StaticConfig> {
    Ok(StaticConfig::load(args.config.as_deref(), flags)?)
}

#[allow(clippy::too_many_arguments)]
fn explain_command(
    args: &ConfigArgs,
    flags: &[(String, String)],
    json: bool,
    entry_point: Option<String>,
    headers: &[String],
    client_ip: IpAddr,
    method: &str,
    url: &str,
) -> anyhow::Result<ExitCode> {
    let config = match load_static(args, flags) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("sluice: {error:#}");
            return Ok(ExitCode::from(2));
        }
    };
    let (runtime, loaded, diagnostics) = match proxy::load_once(&config) {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("sluice: {error}");
            return Ok(ExitCode::from(2));
        }
    };
    let mut broken = false;
    for diagnostic in loaded.diagnostics.iter().chain(&diagnostics) {
        eprintln!("{diagnostic}");
        broken |= diagnostic.severity == Severity::Error && diagnostic.resource.is_none();
    }
    if broken {
        return Ok(ExitCode::from(2));
    }
    let entry_point = match entry_point.or_else(|| config.entry_points.keys().next().cloned()) {
        Some(name) => name,
        None => bail!("no entry point is configured"),
    };
    let mut header_map = http::HeaderMap::new();
    for header in headers {
        let (name, value) = header
            .split_once(':')
            .with_context(|| format!("header `{header}` is not `Name: value`"))?;
        header_map.append(
            http::HeaderName::from_bytes(name.trim().as_bytes())
                .with_context(|| format!("bad header name `{name}`"))?,
            http::HeaderValue::from_str(value.trim())
                .with_context(|| format!("bad header value in `{header}`"))?,
        );
    }
    let mut uri: http::Uri = url.parse().with_context(|| format!("bad URL `{url}`"))?;
    // An explicit Host header says which host is meant; the URL then only gives the path, as
    // with `curl -H 'Host: x' http://127.0.0.1:8000/path`.
    if header_map.contains_key(http::header::HOST) {
        if let Some(path) = uri.path_and_query().cloned() {
            uri = http::Uri::from(path);
        }
    }
    let question = Question {
        entry_point: &entry_point,
        method: http::Method::from_bytes(method.as_bytes())
            .with_context(|| format!("bad method `{method}`"))?,
        uri,
        headers: header_map,
        client_ip: Some(client_ip),
    };
    let answer = explain(&runtime, &question);
    if json {
        println!("{}", serde_json::to_string(&answer)?);
    } else {
        print!("{answer}");
    }
    Ok(ExitCode::SUCCESS)
}

fn check(args: &ConfigArgs, flags: &[(String, String)]) -> anyhow::Result<ExitCode> {
    let config = match load_static(args, flags) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("sluice: {error:#}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let (runtime, loaded, diagnostics) = match proxy::load_once(&config) {
        Ok(loaded) => loaded,
        Err(error) => {
            println!("{error}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let mut errors = 0;
    for diagnostic in loaded.diagnostics.iter().chain(&diagnostics) {
        println!("{diagnostic}");
        if diagnostic.severity == Severity::Error {
            errors += 1;
        }
    }
    if errors > 0 {
        println!("{errors} error(s)");
        return Ok(ExitCode::FAILURE);
    }
    println!(
        "configuration is valid: {} entry point(s), {} router route(s)",
        config.entry_points.len(),
        runtime.router_count()
    );
    Ok(ExitCode::SUCCESS)
}

/// The bundled example (the canary tutorial by default): two whoami origins plus Sluice.
async fn demo(dir: &Path, flags: &[(String, String)]) -> anyhow::Result<ExitCode> {
    let static_file = dir.join("sluice.yaml");
    if !static_file.exists() {
        bail!(
            "{} not found: run `sluice demo` from the repository root or pass --dir",
            static_file.display()
        );
    }
    let config = StaticConfig::load(Some(&static_file), flags)?;
    init_logging(&config.log.level);
    for (name, address) in [("app-v1", "127.0.0.1:9081"), ("app-v2", "127.0.0.1:9082")] {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("demo origin {name}: cannot listen on {address}"))?;
        tokio::spawn(Whoami::new(name).serve(listener));
    }
    let proxy = Proxy::start(&config).await?;
    let web = proxy
        .addresses()
        .first()
        .map(|(_, addr)| addr.to_string())
        .unwrap_or_default();
    println!("Sluice is serving {} on http://{web}", dir.display());
    if let Ok(lines) = std::fs::read_to_string(dir.join("TRY")) {
        println!("Try:");
        for line in lines.lines() {
            println!("  {}", line.replace("{web}", &web));
        }
    }
    println!(
        "Edit the files under {}: changes apply without a restart. Ctrl-C stops.",
        dir.display()
    );
    serve_until_signal(proxy).await
}

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level.to_ascii_lowercase()));
    // Colours only for a terminal: log files and pipes get plain `field=value` text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Takes Traefik-style dotted flags (`--entryPoints.web.address=:8000`, `--providers.file.watch`)
/// out of the arguments; what remains goes to clap.
fn split_dotted_flags(args: Vec<String>) -> (Vec<String>, Vec<(String, String)>) {
    let mut rest = Vec::with_capacity(args.len());
    let mut flags = Vec::new();
    for arg in args {
        if let Some(flag) = arg.strip_prefix("--") {
            let (key, value) = match flag.split_once('=') {
                Some((key, value)) => (key, Some(value)),
                None => (flag, None),
            };
            if key.contains('.') {
                flags.push((key.to_owned(), value.unwrap_or("true").to_owned()));
                continue;
            }
        }
        rest.push(arg);
    }
    (rest, flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_flags_are_split_from_clap_arguments() {
        let args = [
            "sluice",
            "explain",
            "--entryPoints.web.address=:8000",
            "--providers.file.watch",
            "GET",
            "http://x/",
        ]
        .map(String::from)
        .to_vec();
        let (rest, flags) = split_dotted_flags(args);
        assert_eq!(rest, ["sluice", "explain", "GET", "http://x/"]);
        assert_eq!(
            flags,
            [
                ("entryPoints.web.address".to_owned(), ":8000".to_owned()),
                ("providers.file.watch".to_owned(), "true".to_owned())
            ]
        );
    }
}
