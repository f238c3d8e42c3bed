//! A smoke check for a deployed token-authority: issues a token through the gRPC port, verifies
//! it, and (with `--token`) verifies a token issued earlier, for example before a restart.
//!
//! ```text
//! cargo run --example smoke -- --addr 127.0.0.1:50051                # prints the new token
//! cargo run --example smoke -- --addr 127.0.0.1:50051 --token "$OLD"  # and checks the old one
//! ```
//!
//! Exits 0 only when every token verifies; the new token is the only thing on standard output.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use token_authority::proto::token_authority_client::TokenAuthorityClient;
use token_authority::proto::{IssueRequest, VerifyRequest};
use tonic::transport::{Channel, Endpoint};

/// Issues and verifies tokens against a running token-authority.
#[derive(Debug, Parser)]
struct Args {
    /// The service address.
    #[arg(long, default_value = "127.0.0.1:50051")]
    addr: String,
    /// The profile to issue and verify under.
    #[arg(long, default_value = "default")]
    profile: String,
    /// A token issued earlier that must still verify.
    #[arg(long)]
    token: Option<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args).await {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &Args) -> anyhow::Result<String> {
    let url = if args.addr.contains("://") {
        args.addr.clone()
    } else {
        format!("http://{}", args.addr)
    };
    let channel: Channel = Endpoint::from_shared(url.clone())?
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to {url}: {e}"))?;
    let mut client = TokenAuthorityClient::new(channel);
    let issued = client
        .issue(IssueRequest {
            profile: args.profile.clone(),
            subject: "smoke-check".to_owned(),
            ..Default::default()
        })
        .await?
        .into_inner();
    eprintln!("issued: kid {} ({})", issued.key_id, issued.algorithm);
    verify(&mut client, &args.profile, &issued.token, "the new token").await?;
    if let Some(old) = &args.token {
        verify(&mut client, &args.profile, old, "the earlier token").await?;
    }
    Ok(issued.token)
}

async fn verify(
    client: &mut TokenAuthorityClient<Channel>,
    profile: &str,
    token: &str,
    which: &str,
) -> anyhow::Result<()> {
    let answer = client
        .verify(VerifyRequest {
            token: token.to_owned(),
            profile: profile.to_owned(),
            audience: String::new(),
        })
        .await?
        .into_inner();
    anyhow::ensure!(
        answer.valid,
        "{which} was refused: {:?}: {}",
        answer.failure(),
        answer.detail
    );
    eprintln!("verified {which}: kid {}", answer.key_id);
    Ok(())
}
