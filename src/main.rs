//! The `floe` command line: `serve`, `check` and `demo`.

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
    /// Run floe in front of three simulated Icecast relays on loopback and
    /// print the curl, player and dig lines to try; Ctrl-C stops it.
    Demo {
        /// DNS listen address (UDP and TCP).
        #[arg(long, value_name = "ADDR", default_value = floe::demo::DEFAULT_DNS)]
        dns: SocketAddr,
        /// HTTP listen address (port 0: any free port, printed).
        #[arg(long, value_name = "ADDR", default_value = floe::demo::DEFAULT_HTTP)]
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
        Command::Demo { dns, http } => {
            init_demo_logging();
            floe::demo::run(floe::demo::DemoOptions { dns, http })
        }
    }
}

/// The demo's screen is its output: besides warnings and errors only relay
/// state changes are logged (to stderr), unless RUST_LOG says otherwise.
fn init_demo_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,floe::poll=info,floe::dns=info"));
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
        tracing_subscriber::EnvFilter::new("info,hickory_server=warn,hickory_proto=warn,hickory_net=warn")
    });
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
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
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let instance = match Instance::start(loaded) {
            Ok(i) => i,
            Err(e) => {
                tracing::error!("{e}");
                return ExitCode::FAILURE;
            }
        };
        for a in &instance.http_addrs {
            tracing::info!("HTTP listening on {a}");
        }
        if let Err(e) = signals(&instance).await {
            tracing::error!("signal handling: {e}");
        }
        tracing::info!("shutting down");
        instance.stop();
        ExitCode::SUCCESS
    })
}

/// Waits for SIGTERM/SIGINT; reloads on SIGHUP.
async fn signals(instance: &Instance) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
            // A failed reload is logged and reported by the engine.
            _ = hup.recv() => if let Ok(warnings) = instance.reload() {
                for w in &warnings.0 { tracing::warn!("{w}"); }
            },
        }
    }
}
