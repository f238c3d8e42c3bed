//! What the token store costs a call: `Verify` of a revocable profile next to a plain one with
//! the same key, and `Refresh` (verify, two issues, one atomic spend), on the embedded store
//! and on Redis over loopback.
//!
//! Calls go through `TokenAuthorityService` in process (spans, metrics, the store step), so the
//! gap between `verify/plain` and `verify/revocable` is exactly what the store adds; a gRPC
//! round trip (tens of µs on loopback) would only add the same amount to both.
//!
//! The Redis groups start their own `redis-server` on a free loopback port when it is
//! installed, and are left out (with a note on stderr) when it is not.
//!
//! Run: `cargo bench --bench lifecycle` (one group: `cargo bench --bench lifecycle -- embedded/`).

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use token_authority::api::metrics::Metrics;
use token_authority::api::service::TokenAuthorityService;
use token_authority::core::clock::ManualClock;
use token_authority::proto::token_authority_server::TokenAuthority as _;
use token_authority::proto::{IssueRequest, RefreshRequest, VerifyRequest};
use token_authority::state::config::Config;
use token_authority::state::live::Live;
use token_authority::state::store::Store;
use tonic::Request;

const SECRET: &[u8] = b"bench-secret-of-exactly-32-bytes";

fn config(store: &str) -> String {
    format!(
        r#"
{store}
[[keys]]
id = "hs"
algorithm = "HS256"
secret_file = "hs256.secret"

[profiles.plain]
signing_key = "hs"
claims = {{ token_type = "access" }}

[profiles.access]
signing_key = "hs"
claims = {{ token_type = "access" }}
revocable = true
[profiles.access.refresh]
profile = "refresh"
rotate = true
reuse_grace = "10s"

[profiles.refresh]
signing_key = "hs"
ttl = "24h"
claims = {{ token_type = "refresh" }}
"#
    )
}

struct Bench {
    service: TokenAuthorityService,
    runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

fn service(store: &str) -> Bench {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hs256.secret"), SECRET).unwrap();
    let config = Config::from_toml(&config(store), "bench", dir.path()).unwrap();
    let clock = Arc::new(ManualClock::new(SystemTime::now()));
    let service = runtime.block_on(async {
        let store = Arc::new(Store::open(config.store.as_ref(), clock.clone()).unwrap());
        let live = Live::start(config, clock).unwrap();
        TokenAuthorityService::new(live.clone(), Arc::new(Metrics::new(live))).with_store(store)
    });
    Bench {
        service,
        runtime,
        _dir: dir,
    }
}

impl Bench {
    fn issue(&self, profile: &str) -> String {
        let request = IssueRequest {
            profile: profile.into(),
            subject: "user-42".into(),
            ..Default::default()
        };
        let answer = self
            .runtime
            .block_on(self.service.issue(Request::new(request)))
            .unwrap();
        answer.into_inner().token
    }

    fn refresh_token(&self) -> String {
        let request = IssueRequest {
            profile: "access".into(),
            subject: "user-42".into(),
            ..Default::default()
        };
        let pair = self
            .runtime
            .block_on(self.service.issue_pair(Request::new(request)))
            .unwrap()
            .into_inner();
        pair.refresh.unwrap().token
    }

    fn verify(&self, profile: &str, token: &str) {
        let request = VerifyRequest {
            token: token.into(),
            profile: profile.into(),
            audience: String::new(),
        };
        let answer = self
            .runtime
            .block_on(self.service.verify(Request::new(request)))
            .unwrap();
        assert!(answer.get_ref().valid, "{}", answer.get_ref().detail);
    }

    fn refresh(&self, token: String) {
        let request = RefreshRequest {
            profile: "access".into(),
            refresh_token: token,
        };
        self.runtime
            .block_on(self.service.refresh(Request::new(request)))
            .unwrap();
    }
}

fn group(c: &mut Criterion, name: &str, bench: &Bench) {
    let plain = bench.issue("plain");
    let revocable = bench.issue("access");
    c.bench_function(&format!("{name}/verify/plain"), |b| {
        b.iter(|| bench.verify("plain", &plain))
    });
    c.bench_function(&format!("{name}/verify/revocable"), |b| {
        b.iter(|| bench.verify("access", &revocable))
    });
    c.bench_function(&format!("{name}/refresh/rotate"), |b| {
        b.iter_batched(
            || bench.refresh_token(),
            |token| bench.refresh(token),
            BatchSize::SmallInput,
        )
    });
}

/// A throwaway `redis-server` on a free loopback port, stopped when dropped.
struct Redis(Child, u16);

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn redis_server() -> Option<Redis> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
        .ok()?;
    let redis = Redis(child, port);
    for _ in 0..500 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(redis);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

fn lifecycle(c: &mut Criterion) {
    group(c, "embedded", &service(""));
    match redis_server() {
        Some(redis) => {
            let table = format!(
                "[store]\nbackend = \"redis\"\nurl = \"redis://127.0.0.1:{}/0\"\n",
                redis.1
            );
            group(c, "redis", &service(&table));
        }
        None => eprintln!("redis-server is not installed: the redis/ groups are left out"),
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = lifecycle
}
criterion_main!(benches);
