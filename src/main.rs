//! The command line: parse arguments, set up logging, call the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use token_authority::api::server;
use token_authority::cli::TlsOptions;
use token_authority::cli::config_check::check_config;
use token_authority::cli::healthcheck::healthcheck;
use token_authority::cli::keys_generate::{GenerateOptions, generate_key};
use token_authority::cli::keys_list::{ListOptions, list_keys};
use token_authority::core::clock::SystemClock;
use token_authority::core::keys::Algorithm;
use token_authority::state::config::{Config, ConfigSource};
use token_authority::telemetry::{self, LogFormat, LogTarget};

/// Signs, verifies and wraps JSON Web Tokens for other backends, over gRPC.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Log line format.
    #[arg(
        long,
        value_enum,
        default_value = "text",
        env = "TOKEN_AUTHORITY_LOG_FORMAT"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gRPC service (on the embedded default configuration unless --config is given).
    Serve {
        /// A TOML configuration file; without it the embedded examples/default.toml is used.
        #[arg(long, env = "TOKEN_AUTHORITY_CONFIG")]
        config: Option<PathBuf>,
        /// Address to listen on, overriding server.listen (port 0 picks a free port).
        #[arg(long, value_parser = socket_addr)]
        listen: Option<SocketAddr>,
        /// Address for the JWKS / OpenID discovery HTTP listener, overriding server.http_listen.
        #[arg(long, value_parser = socket_addr)]
        http_listen: Option<SocketAddr>,
        /// Directory for generated keys; relative key paths in the config resolve against it.
        #[arg(long, default_value = "./data", env = "TOKEN_AUTHORITY_DATA_DIR")]
        data_dir: PathBuf,
    },
    /// Ask a running service's gRPC health endpoint; exit 0 only on SERVING.
    Healthcheck {
        /// The service address.
        #[arg(long, default_value = "127.0.0.1:50051")]
        addr: String,
        /// The service name to ask about; empty asks about the server as a whole.
        #[arg(long, default_value = "")]
        service: String,
        /// Give up after this long.
        #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
        timeout: Duration,
        #[command(flatten)]
        tls: TlsFlags,
    },
    /// Create signing keys, or list the keys a running service holds.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Check a configuration without starting the service.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create a private key (or HMAC secret) for a [[keys]] entry; prints its kid, public JWK
    /// and a config snippet. Without --out nothing is written or printed.
    Generate {
        /// The JWS algorithm the key is for.
        #[arg(long, value_parser = algorithm_parser())]
        algorithm: Algorithm,
        /// Write the key to this new file (mode 0600), or `-` for standard output.
        #[arg(long)]
        out: Option<PathBuf>,
        /// RSA modulus size (RS*/PS* only): 2048, 3072 or 4096; 2048 unless given.
        #[arg(long)]
        bits: Option<usize>,
        /// Replace the --out file if it exists.
        #[arg(long)]
        force: bool,
    },
    /// List every key of every profile of a running service (needs `[server] admin = true`).
    List {
        /// The service address.
        #[arg(long, default_value = "127.0.0.1:50051")]
        addr: String,
        /// Only this profile.
        #[arg(long)]
        profile: Option<String>,
        /// Print one JSON document instead of text.
        #[arg(long)]
        json: bool,
        /// Give up after this long.
        #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
        timeout: Duration,
        #[command(flatten)]
        tls: TlsFlags,
    },
}

/// How a command reaches a service that serves TLS (`[server.tls]`).
#[derive(Debug, clap::Args)]
struct TlsFlags {
    /// Speak TLS, trusting this CA (PEM) for the service's certificate.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// Present this client certificate (PEM, leaf first); needs --key-file and --ca-file.
    #[arg(long, requires = "key_file", requires = "ca_file")]
    cert_file: Option<PathBuf>,
    /// The private key of --cert-file (PEM).
    #[arg(long, requires = "cert_file")]
    key_file: Option<PathBuf>,
}

impl From<TlsFlags> for TlsOptions {
    fn from(flags: TlsFlags) -> TlsOptions {
        TlsOptions {
            ca_file: flags.ca_file,
            cert_file: flags.cert_file,
            key_file: flags.key_file,
        }
    }
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Load and check a configuration exactly as `serve` would, and print what it holds;
    /// writes nothing (keys that would be generated are not).
    Check {
        /// A TOML configuration file; without it the embedded examples/default.toml is checked.
        #[arg(long, env = "TOKEN_AUTHORITY_CONFIG")]
        config: Option<PathBuf>,
        /// Directory for generated keys; relative key paths in the config resolve against it.
        #[arg(long, default_value = "./data", env = "TOKEN_AUTHORITY_DATA_DIR")]
        data_dir: PathBuf,
    },
}

/// An `IP:PORT` listen address; the error says what to write instead of a host name.
fn socket_addr(text: &str) -> Result<SocketAddr, String> {
    text.parse().map_err(|_| {
        format!(
            "{text:?} is not IP:PORT; write an IP address and a port, such as 127.0.0.1:50061 or 0.0.0.0:50061 (host names such as localhost are not resolved)"
        )
    })
}

/// The algorithm names, listed in `--help` and in the error for an unknown one.
fn algorithm_parser() -> impl clap::builder::TypedValueParser<Value = Algorithm> {
    use clap::builder::{PossibleValuesParser, TypedValueParser as _};
    PossibleValuesParser::new(Algorithm::ALL.map(Algorithm::name))
        .try_map(|name| name.parse::<Algorithm>())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if matches!(cli.command, Command::Serve { .. }) {
        // The service's own threads batch their log lines and write them whenever they run out
        // of work (and every 100 ms, see `serve`): one write(2) for many calls' lines.
        builder
            .on_thread_start(telemetry::batch_this_thread)
            .on_thread_park(telemetry::flush)
            .on_thread_stop(telemetry::flush);
    }
    let runtime = match builder.build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Serve {
            config,
            listen,
            http_listen,
            data_dir,
        } => {
            telemetry::init(cli.log_format, LogTarget::Stdout);
            let panics = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                telemetry::try_flush();
                panics(info);
            }));
            let served = runtime.block_on(serve(config, listen, http_listen, data_dir));
            telemetry::flush();
            served
        }
        Command::Healthcheck {
            addr,
            service,
            timeout,
            tls,
        } => runtime.block_on(healthcheck(&addr, service, timeout, &tls.into())),
        Command::Keys { command } => {
            telemetry::init(cli.log_format, LogTarget::Stderr);
            match command {
                KeysCommand::Generate {
                    algorithm,
                    out,
                    bits,
                    force,
                } => generate_key(&GenerateOptions {
                    algorithm,
                    out,
                    bits,
                    force,
                }),
                KeysCommand::List {
                    addr,
                    profile,
                    json,
                    timeout,
                    tls,
                } => runtime.block_on(list_keys(&ListOptions {
                    addr,
                    profile,
                    json,
                    timeout,
                    tls: tls.into(),
                })),
            }
            .map(|()| ExitCode::SUCCESS)
        }
        Command::Config {
            command: ConfigCommand::Check { config, data_dir },
        } => {
            telemetry::init(cli.log_format, LogTarget::Stderr);
            check_config(config.as_deref(), &data_dir).map(|()| ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(
    config: Option<PathBuf>,
    listen: Option<SocketAddr>,
    http_listen: Option<SocketAddr>,
    data_dir: PathBuf,
) -> anyhow::Result<ExitCode> {
    let source = config.map_or(ConfigSource::Embedded, ConfigSource::File);
    // Taken over before anything slow, so an early SIGHUP cannot end the process (its default).
    let hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
    let started = std::time::Instant::now();
    // The addresses come from a check that writes nothing, so a second `serve` on a busy port
    // fails before it creates key files beside the first one's.
    let checked = Config::check(source.clone(), &data_dir)?;
    let addr = listen.unwrap_or(checked.listen);
    checked.check_exposure(addr)?;
    let grpc = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let http = match http_listen.or(checked.http_listen) {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} (server.http_listen)"))?,
        ),
        None => None,
    };
    let config = Config::load(source, &data_dir)?;
    tracing::info!(
        config = %config.origin,
        load_ms = started.elapsed().as_millis() as u64,
        "configuration loaded: keys parsed, profiles checked"
    );
    let server = server::Server::new(config, Arc::new(SystemClock))?;
    tokio::spawn(reload_on_sighup(hangups, server.live()));
    // A worker that never runs out of work still writes its lines out this often.
    tokio::spawn(async {
        let mut every = tokio::time::interval(std::time::Duration::from_millis(100));
        loop {
            every.tick().await;
            telemetry::flush();
        }
    });
    server
        .serve(server::Listeners { grpc, http }, shutdown_signal())
        .await?;
    Ok(ExitCode::SUCCESS)
}

/// Reloads the configuration on every SIGHUP; a refused reload is logged by `reload` itself.
async fn reload_on_sighup(
    hangups: std::io::Result<tokio::signal::unix::Signal>,
    live: Arc<token_authority::state::live::Live>,
) {
    let mut hangups = match hangups {
        Ok(stream) => stream,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGHUP; reload only through the Reload RPC");
            return;
        }
    };
    while hangups.recv().await.is_some() {
        tracing::info!(signal = "SIGHUP", "reload requested");
        let _ = live.reload().await;
    }
}

/// Completes on SIGTERM or SIGINT (Ctrl-C).
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    // Both handlers are installed now, before the service says it is listening; installed on
    // first poll instead, a signal sent right after the `listening` line could still meet the
    // default action and end the process without draining.
    let terminate = signal(SignalKind::terminate());
    let interrupt = signal(SignalKind::interrupt());
    async move {
        let wait = |stream: std::io::Result<tokio::signal::unix::Signal>, name: &'static str| async move {
            match stream {
                Ok(mut stream) => {
                    stream.recv().await;
                }
                Err(e) => {
                    tracing::error!(error = %e, signal = name, "cannot listen for the signal");
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::select! {
            () = wait(terminate, "SIGTERM") => tracing::info!(signal = "SIGTERM", "shutdown requested"),
            () = wait(interrupt, "SIGINT") => tracing::info!(signal = "SIGINT", "shutdown requested"),
        }
    }
}
