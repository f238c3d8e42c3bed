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
//! Every answer is checked (an error status or a refused token counts as a failure), so a fast
//! run that fails is not mistaken for a fast service.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use token_authority::proto::key_admin_client::KeyAdminClient;
use token_authority::proto::token_authority_client::TokenAuthorityClient;
use token_authority::proto::{IssueRequest, LoginUrlRequest, RotateKeyRequest, VerifyRequest};
use tonic::transport::{Channel, Endpoint};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Rpc {
    Issue,
    Verify,
    LoginUrl,
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
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let endpoint = Endpoint::from_shared(format!("http://{}", args.addr))?;
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
