//! A gRPC load generator for a running token-authority: many concurrent callers on a few HTTP/2
//! connections, reporting throughput and latency percentiles.
//!
//! Start the service (release build), then, for example:
//!
//! ```text
//! cargo run --release -- serve --data-dir /tmp/ta-load &
//! cargo run --release --example load -- --rpc issue --profile default --requests 50000
//! cargo run --release --example load -- --rpc verify --profile sso --concurrency 64
//! ```
//!
//! `--rotate-every-ms N` also calls `KeyAdmin/RotateKey` on the profile every N ms during the run
//! (the service needs `[server] admin = true` and a managed profile), to measure calls while keys
//! rotate under them, e.g. with `examples/managed.toml`:
//!
//! ```text
//! cargo run --release --example load -- --rpc verify --profile internal --rotate-every-ms 100
//! ```
//!
//! Against a service with `[server.tls]`, `--ca-file` makes every connection TLS, and
//! `--cert-file`/`--key-file` add a client certificate (mTLS). `--rpc handshake` measures new
//! connections instead: each call is one TCP connection and one TLS handshake, nothing else.
//! To compare Issue over mTLS with plaintext on persistent connections, and to count handshakes
//! on one server core:
//!
//! ```text
//! taskset -c 0 ./target/release/token-authority serve --config tls.toml &
//! taskset -c 1 cargo run --release --example load -- --rpc issue --ca-file ca.pem \
//!     --cert-file client.pem --key-file client.key
//! taskset -c 1 cargo run --release --example load -- --rpc handshake --ca-file ca.pem \
//!     --cert-file client.pem --key-file client.key --requests 5000
//! ```
//!
//! Every answer is checked (an error status or a refused token counts as a failure), so a fast
//! run that fails is not mistaken for a fast service.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Parser, ValueEnum};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use token_authority::proto::key_admin_client::KeyAdminClient;
use token_authority::proto::token_authority_client::TokenAuthorityClient;
use token_authority::proto::{IssueRequest, LoginUrlRequest, RotateKeyRequest, VerifyRequest};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Rpc {
    Issue,
    Verify,
    LoginUrl,
    /// A new TCP connection and TLS handshake per call (needs --ca-file).
    Handshake,
}

/// Drives one RPC of a running token-authority and reports throughput and latency.
#[derive(Debug, Parser)]
struct Args {
    /// The service address.
    #[arg(long, default_value = "127.0.0.1:50051")]
    addr: String,
    /// Which RPC to call.
    #[arg(long, value_enum, default_value = "issue")]
    rpc: Rpc,
    /// The profile to use (for verify, a token is issued under it first).
    #[arg(long, default_value = "default")]
    profile: String,
    /// Total calls.
    #[arg(long, default_value_t = 20_000)]
    requests: u64,
    /// Calls in flight at once.
    #[arg(long, default_value_t = 32)]
    concurrency: u64,
    /// HTTP/2 connections the callers share.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Rotate the profile's managed key this often (milliseconds) while the load runs.
    #[arg(long)]
    rotate_every_ms: Option<u64>,
    /// Speak TLS, trusting this CA (PEM) for the service's certificate.
    #[arg(long)]
    ca_file: Option<std::path::PathBuf>,
    /// Present this client certificate (PEM), with --key-file: mTLS.
    #[arg(long, requires = "key_file", requires = "ca_file")]
    cert_file: Option<std::path::PathBuf>,
    /// The private key of --cert-file (PEM).
    #[arg(long, requires = "cert_file")]
    key_file: Option<std::path::PathBuf>,
}

impl Args {
    /// The address as a URL, and the endpoint to connect to it with, TLS if asked.
    fn endpoint(&self) -> anyhow::Result<Endpoint> {
        let Some(ca) = &self.ca_file else {
            return Ok(Endpoint::from_shared(format!("http://{}", self.addr))?);
        };
        let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(
            std::fs::read(ca).with_context(|| format!("--ca-file {}", ca.display()))?,
        ));
        if let (Some(cert), Some(key)) = (&self.cert_file, &self.key_file) {
            tls = tls.identity(Identity::from_pem(
                std::fs::read(cert)?,
                std::fs::read(key)?,
            ));
        }
        Ok(Endpoint::from_shared(format!("https://{}", self.addr))?.tls_config(tls)?)
    }

    /// A bare TLS connector for `--rpc handshake`, with the same CA and client certificate.
    fn connector(&self) -> anyhow::Result<tokio_rustls::TlsConnector> {
        let ca = self
            .ca_file
            .as_ref()
            .context("--rpc handshake needs --ca-file")?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca)? {
            roots.add(cert?)?;
        }
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
        let mut config = match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => builder.with_client_auth_cert(
                CertificateDer::pem_file_iter(cert)?.collect::<Result<Vec<_>, _>>()?,
                PrivateKeyDer::from_pem_file(key)?,
            )?,
            _ => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"h2".to_vec()];
        // Every call is a full handshake: no session resumption.
        config.resumption = rustls::client::Resumption::disabled();
        Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if matches!(args.rpc, Rpc::Handshake) {
        return handshakes(&args).await;
    }
    let endpoint = args.endpoint()?;
    let mut clients = Vec::new();
    for _ in 0..args.connections.max(1) {
        clients.push(TokenAuthorityClient::new(endpoint.connect().await?));
    }
    let token = clients[0]
        .issue(IssueRequest {
            profile: args.profile.clone(),
            subject: "load-test".into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .token;

    let next = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let admin_channel = match args.rotate_every_ms {
        Some(_) => Some(endpoint.connect().await?),
        None => None,
    };
    let rotator = args
        .rotate_every_ms
        .zip(admin_channel)
        .map(|(every, channel)| {
            let mut admin = KeyAdminClient::new(channel);
            let (profile, next, total) = (args.profile.clone(), next.clone(), args.requests);
            tokio::spawn(async move {
                let mut took = Vec::new();
                let mut tick = tokio::time::interval(Duration::from_millis(every.max(1)));
                tick.tick().await;
                while next.load(Ordering::Relaxed) < total {
                    tick.tick().await;
                    let t = Instant::now();
                    let rotated = admin
                        .rotate_key(RotateKeyRequest {
                            profile: profile.clone(),
                            revoke_previous: false,
                        })
                        .await;
                    match rotated {
                        Ok(_) => took.push(t.elapsed()),
                        Err(status) => {
                            eprintln!("RotateKey failed: {status}");
                            break;
                        }
                    }
                }
                took
            })
        });
    let mut tasks = Vec::new();
    for worker in 0..args.concurrency.max(1) {
        let client = clients[worker as usize % clients.len()].clone();
        let (next, failures, token, profile) = (
            next.clone(),
            failures.clone(),
            token.clone(),
            args.profile.clone(),
        );
        let (rpc, total) = (args.rpc, args.requests);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < total {
                let t = Instant::now();
                let ok = call(client.clone(), rpc, &profile, &token).await;
                latencies.push(t.elapsed());
                if !ok {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
            }
            latencies
        }));
    }
    let mut latencies: Vec<Duration> = Vec::new();
    for task in tasks {
        latencies.extend(task.await?);
    }
    let elapsed = started.elapsed();
    if let Some(rotator) = rotator {
        let mut took = rotator.await?;
        took.sort();
        if !took.is_empty() {
            println!(
                "rotations {}  RotateKey p50 {:?}  max {:?}",
                took.len(),
                took[took.len() / 2],
                took.last().copied().unwrap_or_default()
            );
        }
    }
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!(
        "{:?} profile={} requests={} concurrency={} connections={}",
        args.rpc,
        args.profile,
        latencies.len(),
        args.concurrency,
        args.connections
    );
    println!(
        "throughput {:.0}/s  p50 {:?}  p90 {:?}  p99 {:?}  max {:?}  failures {}",
        latencies.len() as f64 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.90),
        pct(0.99),
        latencies.last().copied().unwrap_or_default(),
        failures.load(Ordering::Relaxed)
    );
    Ok(())
}

async fn call(
    mut client: TokenAuthorityClient<Channel>,
    rpc: Rpc,
    profile: &str,
    token: &str,
) -> bool {
    match rpc {
        Rpc::Issue => client
            .issue(IssueRequest {
                profile: profile.into(),
                subject: "load-test".into(),
                ..Default::default()
            })
            .await
            .is_ok(),
        Rpc::Verify => client
            .verify(VerifyRequest {
                token: token.into(),
                profile: profile.into(),
                audience: String::new(),
            })
            .await
            .is_ok_and(|r| r.into_inner().valid),
        Rpc::Handshake => false,
        Rpc::LoginUrl => client
            .login_url(LoginUrlRequest {
                profile: profile.into(),
                subject: "load-test".into(),
                next: "/".into(),
                ..Default::default()
            })
            .await
            .is_ok(),
    }
}

/// `--rpc handshake`: `--requests` new connections, `--concurrency` at a time, each one TCP
/// connect and one full TLS handshake; reports handshakes per second and their latency.
async fn handshakes(args: &Args) -> anyhow::Result<()> {
    let connector = args.connector()?;
    let addr: std::net::SocketAddr = args.addr.parse().context("--addr must be IP:PORT")?;
    let name = ServerName::IpAddress(addr.ip().into());
    let next = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency.max(1) {
        let (connector, name, next, failures) = (
            connector.clone(),
            name.clone(),
            next.clone(),
            failures.clone(),
        );
        let total = args.requests;
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < total {
                let t = Instant::now();
                let done = async {
                    let tcp = tokio::net::TcpStream::connect(addr).await?;
                    tcp.set_nodelay(true)?;
                    let stream = connector.connect(name.clone(), tcp).await?;
                    anyhow::Ok(stream)
                };
                match done.await {
                    Ok(stream) => {
                        latencies.push(t.elapsed());
                        drop(stream);
                    }
                    Err(e) => {
                        if failures.fetch_add(1, Ordering::Relaxed) == 0 {
                            eprintln!("handshake failed: {e:#}");
                        }
                    }
                }
            }
            latencies
        }));
    }
    let mut latencies: Vec<Duration> = Vec::new();
    for task in tasks {
        latencies.extend(task.await?);
    }
    let elapsed = started.elapsed();
    anyhow::ensure!(!latencies.is_empty(), "no handshake succeeded");
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!(
        "Handshake mtls={} requests={} concurrency={}",
        args.cert_file.is_some(),
        latencies.len(),
        args.concurrency
    );
    println!(
        "handshakes {:.0}/s  p50 {:?}  p90 {:?}  p99 {:?}  failures {}",
        latencies.len() as f64 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.90),
        pct(0.99),
        failures.load(Ordering::Relaxed)
    );
    Ok(())
}
