//! The two halves of `benches/grpc.sh` that need the generated types or ring itself:
//!
//! - `bodies`: against a running service, checks each benchmark call once (it must answer OK,
//!   and Verify must answer valid) and writes its request as a gRPC-framed body that `h2load`
//!   can replay (`DIR/NAME.bin`, plus `DIR/NAME.path` with the method path);
//! - `primitives`: the cost of the bare ring signature operations on this machine, so the
//!   script can compare each public-key call with 1 / (Health/Check cost + signature cost).
//!
//! ```text
//! cargo run --release --example grpc_bench -- bodies --addr 127.0.0.1:50051 --out /tmp/bodies
//! cargo run --release --example grpc_bench -- primitives
//! ```

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Parser, Subcommand};
use prost::Message;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _};
use token_authority::proto::token_authority_client::TokenAuthorityClient;
use token_authority::proto::{IssueRequest, LoginUrlRequest, VerifyRequest};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

#[derive(Debug, Parser)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check every benchmark call once and write its framed request body.
    Bodies {
        /// The service address (plaintext gRPC).
        #[arg(long, default_value = "127.0.0.1:50051")]
        addr: String,
        /// Where to write NAME.bin and NAME.path.
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the per-operation cost of ring's ES256 and Ed25519 sign and verify, in µs.
    Primitives,
}

/// The profiles `benches/grpc.toml` defines, one per algorithm family measured.
const PROFILES: &[(&str, &str)] = &[("hs256", "HS256"), ("es256", "ES256"), ("eddsa", "EdDSA")];

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    match Args::parse().command {
        Command::Bodies { addr, out } => bodies(&addr, &out).await,
        Command::Primitives => {
            primitives();
            Ok(())
        }
    }
}

async fn bodies(addr: &str, out: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out)?;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let mut health = HealthClient::new(channel.clone());
    let mut tokens = TokenAuthorityClient::new(channel);

    let check = HealthCheckRequest::default();
    health.check(check.clone()).await?;
    write(out, "health", "/grpc.health.v1.Health/Check", &check)?;

    for (profile, alg) in PROFILES {
        let issue = issue_request(profile);
        let issued = tokens.issue(issue.clone()).await?.into_inner();
        anyhow::ensure!(
            issued.algorithm == *alg,
            "{profile} signs with {}",
            issued.algorithm
        );
        write(
            out,
            &format!("issue-{profile}"),
            "/tokenauthority.v1.TokenAuthority/Issue",
            &issue,
        )?;

        let verify = VerifyRequest {
            token: issued.token,
            profile: profile.to_string(),
            audience: String::new(),
        };
        let verified = tokens.verify(verify.clone()).await?.into_inner();
        anyhow::ensure!(verified.valid, "a fresh {profile} token does not verify");
        write(
            out,
            &format!("verify-{profile}"),
            "/tokenauthority.v1.TokenAuthority/Verify",
            &verify,
        )?;
    }

    let login = LoginUrlRequest {
        profile: "login".into(),
        subject: "user-1234".into(),
        claims: issue_request("login").claims,
        next: "/dashboard".into(),
        ttl: None,
    };
    tokens.login_url(login.clone()).await?;
    write(
        out,
        "login-hs256",
        "/tokenauthority.v1.TokenAuthority/LoginUrl",
        &login,
    )?;
    Ok(())
}

/// A typical Issue: a subject and two custom claims.
fn issue_request(profile: &str) -> IssueRequest {
    use prost_types::{Struct, Value, value::Kind};
    let text = |s: &str| Value {
        kind: Some(Kind::StringValue(s.into())),
    };
    IssueRequest {
        profile: profile.into(),
        subject: "user-1234".into(),
        claims: Some(Struct {
            fields: [
                ("role".to_string(), text("editor")),
                ("email".to_string(), text("user-1234@example.com")),
            ]
            .into(),
        }),
        audience: Vec::new(),
        ttl: None,
    }
}

/// Writes `message` as one gRPC frame (uncompressed flag, big-endian length, bytes).
fn write(out: &Path, name: &str, path: &str, message: &impl Message) -> anyhow::Result<()> {
    let encoded = message.encode_to_vec();
    let mut framed = Vec::with_capacity(5 + encoded.len());
    framed.push(0);
    framed.extend_from_slice(&u32::try_from(encoded.len())?.to_be_bytes());
    framed.extend_from_slice(&encoded);
    std::fs::write(out.join(format!("{name}.bin")), framed)?;
    std::fs::write(out.join(format!("{name}.path")), path)?;
    Ok(())
}

fn primitives() {
    let rng = SystemRandom::new();
    let message = [0x5au8; 200];

    let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
    // Benchmark set-up: fresh keys from ring itself cannot fail on a working system RNG.
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).expect("P-256 key");
    let es256 = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).expect("P-256 key");
    let es256_public = signature::UnparsedPublicKey::new(
        &signature::ECDSA_P256_SHA256_FIXED,
        es256.public_key().as_ref().to_vec(),
    );
    let es256_sig = es256.sign(&rng, &message).expect("sign");
    report("es256_sign_us", || {
        es256.sign(&rng, &message).expect("sign");
    });
    report("es256_verify_us", || {
        es256_public
            .verify(&message, es256_sig.as_ref())
            .expect("verify");
    });

    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("Ed25519 key");
    let ed = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("Ed25519 key");
    let ed_public =
        signature::UnparsedPublicKey::new(&signature::ED25519, ed.public_key().as_ref().to_vec());
    let ed_sig = ed.sign(&message);
    report("eddsa_sign_us", || {
        ed.sign(&message);
    });
    report("eddsa_verify_us", || {
        ed_public.verify(&message, ed_sig.as_ref()).expect("verify");
    });
}

/// Prints `name=µs per call`, the median of seven timed batches.
fn report(name: &str, mut op: impl FnMut()) {
    const BATCH: u32 = 2_000;
    let mut batches: Vec<f64> = (0..7)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..BATCH {
                op();
            }
            started.elapsed().as_secs_f64() * 1e6 / f64::from(BATCH)
        })
        .collect();
    batches.sort_by(f64::total_cmp);
    println!("{name}={:.2}", batches[3]);
}
