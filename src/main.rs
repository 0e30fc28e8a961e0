//! The `floe` command line: `serve`, `check`, `demo`, `drain` and `explain`.

use clap::{Parser, Subcommand};
use floe::config;
use floe::serve::Instance;
use std::net::SocketAddr;
use std::path::PathBuf;
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
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => check(&config),
        Command::Serve { config, log_format } => {
            init_logging(log_format);
            serve(config)
        }
        Command::Drain {
            relay,
            undo,
            admin,
            token_file,
            config,
        } => drain(&relay, undo, admin, token_file, config),
        Command::Explain { what, url, json } => explain(&url, &what, json),
        Command::Demo { dns, http } => {
            init_demo_logging();
            floe::demo::run(floe::demo::DemoOptions { dns, http })
        }
    }
}

/// The demo's screen is its output: besides warnings and errors only relay
/// state changes are logged (to stderr), unless RUST_LOG says otherwise.
fn init_demo_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("warn,floe::poll=info,floe::dns=info")
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn check(path: &std::path::Path) -> ExitCode {
    match config::load(path) {
        Ok(loaded) => {
            for w in &loaded.warnings.0 {
                eprintln!("{w}");
            }
            let c = &loaded.config;
            println!(
                "{}: ok ({} relays, {} streams, {} zones)",
                path.display(),
                c.relays.len(),
                c.streams.len(),
                loaded.zones.zones().len()
            );
            ExitCode::SUCCESS
        }
        Err(diags) => {
            for d in &diags.0 {
                eprintln!("{d}");
            }
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    // hickory logs every request at info: costly and noisy on the hot path.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(
            "info,hickory_server=warn,hickory_proto=warn,hickory_net=warn",
        )
    });
    // No colour codes in a journal or a log file.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

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
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        // Handlers first: a SIGHUP or SIGTERM that arrives while starting
        // (as soon as the log shows an address) must not kill floe.
        let signals = match Signals::new() {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("signal handling: {e}");
                return ExitCode::FAILURE;
            }
        };
        let mut instance = match Instance::start(loaded) {
            Ok(i) => i,
            Err(e) => {
                tracing::error!("{e}");
                return ExitCode::FAILURE;
            }
        };
        if let Err(e) = instance.watch_files() {
            tracing::warn!("cannot watch the config files ({e}); SIGHUP still reloads");
        }
        for a in &instance.http_addrs {
            tracing::info!("HTTP listening on {a}");
        }
        floe::reload::notify_systemd(&[sd_notify::NotifyState::Ready]);
        signals.serve(&instance).await;
        tracing::info!("shutting down");
        floe::reload::notify_systemd(&[sd_notify::NotifyState::Stopping]);
        instance.stop();
        tracing::info!("stopped");
        ExitCode::SUCCESS
    })
}

/// SIGTERM/SIGINT stop floe; SIGHUP reloads.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the handlers (inside the runtime).
    fn new() -> std::io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// Returns on SIGTERM/SIGINT; reloads on SIGHUP.
    async fn serve(mut self, instance: &Instance) {
        loop {
            tokio::select! {
                _ = self.term.recv() => return,
                _ = self.int.recv() => return,
                // Warnings and failures are logged and reported by the reload.
                _ = self.hup.recv() => {
                    tracing::info!("SIGHUP: reloading");
                    let _ = instance.reload();
                }
            }
        }
    }
}

/// `floe drain`: one authenticated POST to the admin endpoint.
fn drain(
    relay: &str,
    undo: bool,
    admin: Option<String>,
    token_file: Option<PathBuf>,
    config: Option<PathBuf>,
) -> ExitCode {
    let parsed = match &config {
        Some(path) => {
            let text = match std::fs::read_to_string(path) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("{}: {e}", path.display());
                    return ExitCode::FAILURE;
                }
            };
            match config::parse(path, &text) {
                (Some(c), _) => Some(c),
                (None, diags) => {
                    for d in &diags.0 {
                        eprintln!("{d}");
                    }
                    return ExitCode::FAILURE;
                }
            }
        }
        None => None,
    };
    let token = match (&token_file, &parsed) {
        (Some(file), _) => match std::fs::read_to_string(file) {
            Ok(t) => t.trim().to_string(),
            Err(e) => {
                eprintln!("{}: {e}", file.display());
                return ExitCode::FAILURE;
            }
        },
        (None, Some(c)) => match &c.admin.token {
            Some(t) => String::from_utf8_lossy(t.expose()).into_owned(),
            None => {
                eprintln!("the config has no [admin] token: the admin endpoint is disabled");
                return ExitCode::FAILURE;
            }
        },
        (None, None) => {
            eprintln!("give --token-file FILE or --config FILE");
            return ExitCode::FAILURE;
        }
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
    match request(&url, Some(&token)) {
        Ok((status, body)) => {
            print!("{body}");
            if status.is_success() {
                ExitCode::SUCCESS
            } else {
                eprintln!("{url}: {status}");
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("{url}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `floe explain`: GET `/explain/<mount>` or `/explain?name=<what>` from a
/// running floe and print the answer.
fn explain(base: &str, what: &str, json: bool) -> ExitCode {
    let mut url = match url::Url::parse(base) {
        Ok(u) => u,
        Err(e) => {
            eprintln!("--url {base}: {e}");
            return ExitCode::FAILURE;
        }
    };
    if what.starts_with('/') {
        url.set_path(&format!("/explain{what}"));
    } else {
        url.set_path("/explain");
        url.query_pairs_mut().append_pair("name", what);
    }
    if json {
        url.query_pairs_mut().append_pair("format", "json");
    }
    match request(url.as_str(), None) {
        Ok((status, body)) if status.is_success() => {
            print!("{body}");
            ExitCode::SUCCESS
        }
        Ok((status, body)) => {
            eprint!("{body}");
            eprintln!("{url}: {status}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("{url}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One request to a running floe's admin or HTTP listener: `POST url` with
/// the bearer `token`, or `GET url` without one. The status and body.
fn request(url: &str, token: Option<&str>) -> Result<(reqwest::StatusCode, String), String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
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
    answer.map_err(|e| e.to_string())
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
