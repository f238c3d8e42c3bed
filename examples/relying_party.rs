//! A Rust backend verifying token-authority's tokens offline with the `jsonwebtoken` crate (12),
//! the way a team would add it to its own service: fetch the JWKS once, cache it for as long as
//! its `Cache-Control: max-age` says (within bounds), refetch early when a token names a `kid`
//! the cache does not know (a rotation), but at most once per `REFETCH_FLOOR`, so forged kids
//! cannot make us hammer the issuer. Copy `JwksCache` and `Verifier`; `main` is only a demo.
//!
//! Against the embedded default configuration (gRPC on 127.0.0.1:50051, JWKS on :8080):
//!
//! ```text
//! cargo run -- serve &
//! cargo run --example relying_party -- --token "$(cargo run -q --example smoke -- --profile default)"
//! ```
//!
//! It prints the verified claims, or why the token was refused (exit status 1).
//!
//! What `jsonwebtoken` does not check for you, and this code does: that the token's `alg` is
//! the one its key was published for (the JWK's `alg`), that `aud` is present when you expect
//! an audience (`jsonwebtoken` skips the check when the claim is missing unless `aud` is in
//! `required_spec_claims`), and that `iss` is the issuer you trust. It has no ES512.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use clap::Parser;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde_json::Value;
use tokio::sync::Mutex;

/// How long a JWKS is kept when the response names no max-age.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(300);
/// Bounds on the max-age honoured: a misconfigured issuer can neither make us fetch on every
/// request nor keep a withdrawn key for days.
pub const MIN_MAX_AGE: Duration = Duration::from_secs(30);
pub const MAX_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// An unknown kid triggers at most one refetch per this interval.
pub const REFETCH_FLOOR: Duration = Duration::from_secs(30);

/// One usable key of the set: built once per fetch, bound to the algorithm its JWK names.
pub struct CachedKey {
    pub key: DecodingKey,
    pub algorithm: Algorithm,
}

struct Fetched {
    keys: HashMap<String, Arc<CachedKey>>,
    fetched_at: Instant,
    max_age: Duration,
}

/// The issuer's JWKS, fetched over HTTP and cached per Cache-Control.
pub struct JwksCache {
    url: String,
    http: reqwest::Client,
    state: Mutex<Option<Fetched>>,
    fetches: std::sync::atomic::AtomicU64,
}

impl JwksCache {
    pub fn new(url: impl Into<String>) -> JwksCache {
        JwksCache {
            url: url.into(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
            state: Mutex::new(None),
            fetches: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// How many times the JWKS was fetched (for metrics, and to test the cache).
    pub fn fetches(&self) -> u64 {
        self.fetches.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The key for `kid` at `now`: from the cache while it is fresh, else after one fetch. The
    /// lock is held across the fetch so concurrent requests wait for one fetch, not start many.
    pub async fn key(&self, kid: &str, now: Instant) -> anyhow::Result<Arc<CachedKey>> {
        let mut state = self.state.lock().await;
        let stale = state
            .as_ref()
            .is_none_or(|s| now.duration_since(s.fetched_at) >= s.max_age);
        let unknown_may_refetch = state.as_ref().is_some_and(|s| {
            !s.keys.contains_key(kid) && now.duration_since(s.fetched_at) >= REFETCH_FLOOR
        });
        if stale || unknown_may_refetch {
            match self.fetch(now).await {
                Ok(fetched) => *state = Some(fetched),
                // Keep serving the last good set while the issuer is unreachable.
                Err(e) if state.is_some() => {
                    eprintln!("JWKS refetch failed, keeping the old set: {e:#}")
                }
                Err(e) => return Err(e),
            }
        }
        let fetched = state.as_ref().ok_or_else(|| anyhow!("no JWKS"))?;
        fetched
            .keys
            .get(kid)
            .cloned()
            .ok_or_else(|| anyhow!("kid {kid:?} is not in the issuer's JWKS"))
    }

    async fn fetch(&self, now: Instant) -> anyhow::Result<Fetched> {
        self.fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let response = self
            .http
            .get(&self.url)
            .send()
            .await
            .with_context(|| format!("GET {}", self.url))?
            .error_for_status()?;
        let max_age = response
            .headers()
            .get(reqwest::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(max_age)
            .unwrap_or(DEFAULT_MAX_AGE)
            .clamp(MIN_MAX_AGE, MAX_MAX_AGE);
        let set: JwkSet = serde_json::from_slice(&response.bytes().await?)
            .with_context(|| format!("{} is not a JWK Set", self.url))?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            // A key without kid or alg cannot be matched to a token safely; one we cannot use
            // (an ES512 key, an encryption key) is skipped, not fatal.
            let (Some(kid), Some(alg)) = (&jwk.common.key_id, &jwk.common.key_algorithm) else {
                continue;
            };
            let Ok(algorithm) = alg.to_string().parse::<Algorithm>() else {
                continue;
            };
            if let Ok(key) = DecodingKey::from_jwk(jwk) {
                keys.insert(kid.clone(), Arc::new(CachedKey { key, algorithm }));
            }
        }
        Ok(Fetched {
            keys,
            fetched_at: now,
            max_age,
        })
    }
}

/// `max-age=N` of a Cache-Control header.
fn max_age(header: &str) -> Option<Duration> {
    header.split(',').find_map(|part| {
        let seconds = part.trim().strip_prefix("max-age=")?;
        seconds.parse().ok().map(Duration::from_secs)
    })
}

/// What this backend accepts: tokens from one issuer, for one audience if it has one.
pub struct Verifier {
    pub jwks: JwksCache,
    pub issuer: String,
    pub audience: Option<String>,
}

impl Verifier {
    /// The claims of a token that verifies, or why it does not.
    pub async fn verify(&self, token: &str) -> anyhow::Result<Value> {
        let header = decode_header(token).context("the token's header")?;
        let kid = header.kid.context("the token names no kid")?;
        let cached = self.jwks.key(&kid, Instant::now()).await?;
        // The key decides the algorithm, never the token (RFC 8725 §3.1).
        if header.alg != cached.algorithm {
            bail!(
                "the token says {:?} but key {kid:?} is for {:?}",
                header.alg,
                cached.algorithm
            );
        }
        let mut validation = Validation::new(cached.algorithm);
        validation.leeway = 5;
        validation.set_issuer(&[&self.issuer]);
        let mut required = vec!["exp", "iss", "sub"];
        match &self.audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                // Without this, jsonwebtoken accepts a token that has no aud at all.
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        Ok(decode::<Value>(token, &cached.key, &validation)?.claims)
    }
}

/// Verifies a token from token-authority with jsonwebtoken and the published JWKS.
#[derive(Debug, Parser)]
struct Args {
    /// The token to verify.
    #[arg(long)]
    token: String,
    /// Where the issuer publishes its keys.
    #[arg(long, default_value = "http://127.0.0.1:8080/.well-known/jwks.json")]
    jwks_url: String,
    /// The `iss` the token must carry.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    issuer: String,
    /// The `aud` the token must carry, if this backend has one.
    #[arg(long)]
    audience: Option<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let verifier = Verifier {
        jwks: JwksCache::new(args.jwks_url),
        issuer: args.issuer,
        audience: args.audience,
    };
    match verifier.verify(args.token.trim()).await {
        Ok(claims) => {
            println!("{claims:#}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("refused: {e:#}");
            ExitCode::FAILURE
        }
    }
}
