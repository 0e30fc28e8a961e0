//! The `floe` command line: `serve`, `check`, `demo`, `drain` and `explain`.

use clap::{Parser, Subcommand};
use floe::config;
use floe::diagnostic::Diagnostics;
use floe::reload::{Signals, notify_systemd};
use floe::serve::Instance;
use sd_notify::NotifyState;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Load-aware DNS + HTTP balancer for Icecast2 relays.
#[derive(Parser)]
#[command(name = "floe", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run DNS + HTTP + poller until SIGTERM/SIGINT; SIGHUP reloads.
    Serve {
        /// The TOML config file.
        #[arg(long, short)]
        config: PathBuf,
        /// Log format.
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
    },
    /// Load config and zones exactly as `serve` would and report every
    /// problem as file:line:col; exit 0 when valid, 1 when not.
    Check {
        /// The TOML config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Drain a relay of a running floe (no new listeners; current ones
    /// stay) through its admin endpoint, or lift the drain with --undo.
    Drain {
        /// The relay's name, as in the config.
        relay: String,
        /// Lift a runtime drain instead (a drain set in the config stays).
        #[arg(long)]
        undo: bool,
        /// The admin endpoint (default: the first `[admin] listen` of
        /// --config, else http://127.0.0.1:8081).
        #[arg(long, value_name = "URL")]
        admin: Option<String>,
        /// File holding the admin token.
        #[arg(long, value_name = "FILE")]
        token_file: Option<PathBuf>,
        /// Take the admin address and token from this config file.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Ask a running floe which relays are candidates for a mount, stream
    /// or balanced DNS name and why every other relay is excluded (from one
    /// snapshot, named by its generation).
    Explain {
        /// A mount path (`/live.ogg`), a stream name or a balanced DNS name
        /// (`live.stream.example.org.`).
        what: String,
        /// floe's HTTP address.
        #[arg(long, value_name = "URL", default_value_t = local_url(config::DEFAULT_HTTP_LISTEN))]
        url: String,
        /// Print the JSON form.
        #[arg(long)]
        json: bool,
        /// Explain for a listener at this address: its listener pool, the
        /// groups tried in order and the one answering.
        #[arg(long, value_name = "IP", conflicts_with = "pool")]
        client: Option<std::net::IpAddr>,
        /// Explain for a listener of this pool.
        #[arg(long, value_name = "NAME")]
        pool: Option<String>,
    },
    /// Run floe in front of three simulated Icecast relays on loopback and
    /// print the curl, player and dig lines to try; Ctrl-C stops it.
    Demo {
        /// DNS listen address (UDP and TCP).
        #[arg(long, value_name = "ADDR", default_value_t = config::DEFAULT_DNS_LISTEN)]
        dns: SocketAddr,
        /// HTTP listen address (port 0: any free port, printed).
        #[arg(long, value_name = "ADDR", default_value_t = config::DEFAULT_HTTP_LISTEN)]
        http: SocketAddr,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    let outcome = match Cli::parse().command {
        Command::Check { config } => check(&config),
        Command::Serve { config, log_format } => {
            // hickory logs every request at info: costly and noisy on the hot path.
            init_logging(
                "info,hickory_server=warn,hickory_proto=warn,hickory_net=warn",
                log_format,
            );
            return serve(config);
        }
        Command::Drain {
            relay,
            undo,
            admin,
            token_file,
            config,
        } => drain(&relay, undo, admin, token_file, config),
        Command::Explain {
            what,
            url,
            json,
            client,
            pool,
        } => explain(&url, &what, json, client, pool.as_deref()),
        Command::Demo { dns, http } => {
            // The demo's screen is its output: besides warnings and errors
            // only relay state changes are logged.
            init_logging("warn,floe::poll=info,floe::dns=info", LogFormat::Text);
            return floe::demo::run(floe::demo::DemoOptions { dns, http });
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr, filtered by RUST_LOG or else `default_filter`; colours
/// only on a terminal (not in a journal or a log file).
fn init_logging(default_filter: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// `floe check`: the summary on stdout, warnings or errors on stderr.
fn check(path: &Path) -> Result<(), String> {
    let loaded = config::load(path).map_err(|d| lines(&d))?;
    eprint!("{}", loaded.warnings);
    let c = &loaded.config;
    println!(
        "{}: ok ({} relays, {} streams, {} zones)",
        path.display(),
        c.relays.len(),
        c.streams.len(),
        loaded.zones.zones().len()
    );
    Ok(())
}

/// Diagnostics as one message, one per line.
fn lines(diags: &Diagnostics) -> String {
    let lines: Vec<String> = diags.0.iter().map(ToString::to_string).collect();
    lines.join("\n")
}

/// `floe serve`: runs until SIGTERM/SIGINT; SIGHUP reloads.
fn serve(path: PathBuf) -> ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let loaded = match config::load(&path) {
        Ok(l) => l,
        Err(diags) => {
            for d in &diags.0 {
                tracing::error!("{d}");
            }
            return ExitCode::FAILURE;
        }
    };
    for w in &loaded.warnings.0 {
        tracing::warn!("{w}");
    }
    match runtime().and_then(|rt| rt.block_on(run(loaded))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Starts floe from `loaded` and serves until SIGTERM/SIGINT.
async fn run(loaded: config::Loaded) -> Result<(), String> {
    // Handlers first: a SIGHUP or SIGTERM that arrives while starting (as
    // soon as the log shows an address) must not kill floe.
    let mut signals = Signals::new(true).map_err(|e| format!("signal handling: {e}"))?;
    let mut instance = Instance::start(loaded).map_err(|e| e.to_string())?;
    if let Err(e) = instance.watch_files() {
        tracing::warn!("cannot watch the config files ({e}); SIGHUP still reloads");
    }
    for a in &instance.http_addrs {
        tracing::info!("HTTP listening on {a}");
    }
    for a in &instance.http_proxy_addrs {
        tracing::info!("HTTP (PROXY protocol) listening on {a}");
    }
    for a in &instance.http_tls_addrs {
        tracing::info!("HTTPS listening on {a}");
    }
    notify_systemd(&[NotifyState::Ready]);
    while signals.next().await {
        tracing::info!("SIGHUP: reloading");
        // Warnings and failures are logged and reported by the reload.
        let _ = instance.reload();
    }
    tracing::info!("shutting down");
    notify_systemd(&[NotifyState::Stopping]);
    instance.stop();
    tracing::info!("stopped");
    Ok(())
}

/// `floe drain`: one authenticated POST to the admin endpoint.
fn drain(
    relay: &str,
    undo: bool,
    admin: Option<String>,
    token_file: Option<PathBuf>,
    config: Option<PathBuf>,
) -> Result<(), String> {
    let read =
        |path: &Path| std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()));
    let parsed = match &config {
        Some(path) => match config::parse(path, &read(path)?) {
            (Some(c), _) => Some(c),
            (None, diags) => return Err(lines(&diags)),
        },
        None => None,
    };
    let token = match (&token_file, &parsed) {
        (Some(file), _) => read(file)?.trim().to_string(),
        (None, Some(c)) => match &c.admin.token {
            Some(t) => String::from_utf8_lossy(t.expose()).into_owned(),
            None => {
                return Err(
                    "the config has no [admin] token: the admin endpoint is disabled".into(),
                );
            }
        },
        (None, None) => return Err("give --token-file FILE or --config FILE".into()),
    };
    let base = admin
        .or_else(|| {
            parsed
                .as_ref()
                .and_then(|c| c.admin.listen.first())
                .map(|&a| local_url(a))
        })
        .unwrap_or_else(|| local_url(config::DEFAULT_ADMIN_LISTEN));
    let url = format!(
        "{}/{}/{relay}",
        base.trim_end_matches('/'),
        if undo { "undrain" } else { "drain" }
    );
    let (status, body) = request(&url, Some(&token))?;
    print!("{body}");
    success(&url, status)
}

/// `floe explain`: GET `/explain/<mount>` or `/explain?name=<what>` from a
/// running floe (for a listener at `client`, or of `pool`) and print the
/// answer.
fn explain(
    base: &str,
    what: &str,
    json: bool,
    client: Option<std::net::IpAddr>,
    pool: Option<&str>,
) -> Result<(), String> {
    let mut url = url::Url::parse(base).map_err(|e| format!("--url {base}: {e}"))?;
    if what.starts_with('/') {
        url.set_path(&format!("/explain{what}"));
    } else {
        url.set_path("/explain");
        url.query_pairs_mut().append_pair("name", what);
    }
    if json {
        url.query_pairs_mut().append_pair("format", "json");
    }
    if let Some(ip) = client {
        url.query_pairs_mut().append_pair("client", &ip.to_string());
    }
    if let Some(p) = pool {
        url.query_pairs_mut().append_pair("pool", p);
    }
    let (status, body) = request(url.as_str(), None)?;
    if status.is_success() {
        print!("{body}");
    } else {
        eprint!("{body}");
    }
    success(url.as_str(), status)
}

/// One request to a running floe's admin or HTTP listener: `POST url` with
/// the bearer `token`, or `GET url` without one. The status and body; an
/// error names the URL.
fn request(url: &str, token: Option<&str>) -> Result<(reqwest::StatusCode, String), String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = runtime().map_err(|e| format!("{url}: {e}"))?;
    let answer = rt.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()?;
        let req = match token {
            Some(t) => client.post(url).bearer_auth(t),
            None => client.get(url),
        };
        let resp = req.send().await?;
        let status = resp.status();
        Ok::<_, reqwest::Error>((status, resp.text().await?))
    });
    answer.map_err(|e| format!("{url}: {e}"))
}

/// An error naming `url` unless `status` is a success.
fn success(url: &str, status: reqwest::StatusCode) -> Result<(), String> {
    (status.is_success().then_some(())).ok_or_else(|| format!("{url}: {status}"))
}

/// A runtime on this thread, for one command.
fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))
}

/// The URL to reach a listen address from this host: a wildcard address is
/// reached on loopback.
fn local_url(mut addr: SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    format!("http://{addr}")
}
