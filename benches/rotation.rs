//! What key rotation costs: planning (pure), making a key (ring + thumbprint), and a whole
//! operator rotation as `RotateKey` runs it (generate, write the key file and `state.json`
//! with fsyncs, rebuild and swap the profiles), plus Issue and Verify on a profile whose keys
//! have just rotated.
//!
//! Run: `cargo bench --bench rotation`. The file writes go to a temporary directory, so the
//! numbers include that disk's fsync latency.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use criterion::{Criterion, criterion_group, criterion_main};
use ring::rand::SystemRandom;
use token_authority::core::clock::{Clock as _, ManualClock};
use token_authority::core::keys::{self, Algorithm, Key, KeyId};
use token_authority::core::random::Random;
use token_authority::core::rotation::{self, KeyRecord, KeyTimes, RotationSpec};
use token_authority::core::token::{self, IssueRequest};
use token_authority::state::config::Config;
use token_authority::state::live::Live;

const CONFIG: &str = r#"
[profiles.default]
issuer = "https://auth.example.test"
ttl = "5m"
max_ttl = "1h"
[profiles.default.rotation]
algorithm = "ES256"
rotate_every = "24h"
"#;

fn rotation(c: &mut Criterion) {
    let spec = RotationSpec {
        algorithm: Algorithm::ES256,
        rotate_every: 86_400,
        publish_ahead: 3_900,
        verify_after: 3_600,
    };
    // A steady state: one retired key still verifying, the active one, its published successor.
    let now = 1_800_000_000;
    let records: Vec<KeyRecord> = [(now - 90_000, now - 3_600), (now - 3_600, now + 82_800)]
        .iter()
        .enumerate()
        .map(|(i, &(activate_at, retire_at))| KeyRecord {
            kid: KeyId::parse(&format!("k{i}")).expect("a valid key id"),
            algorithm: Algorithm::ES256,
            times: KeyTimes {
                publish_at: activate_at - 3_900,
                activate_at,
                retire_at,
                remove_at: retire_at + 3_600,
            },
        })
        .collect();
    c.bench_function("plan/steady", |b| {
        b.iter(|| rotation::plan(black_box(&spec), black_box(&records), black_box(now)))
    });

    let rng = SystemRandom::new();
    for alg in [Algorithm::ES256, Algorithm::EdDSA] {
        c.bench_function(&format!("new_key/{alg}"), |b| {
            b.iter(|| {
                let pem = keys::generate(alg, &rng).unwrap();
                let key = Key::from_material(KeyId::parse("new").unwrap(), alg, pem.as_bytes());
                key.unwrap().thumbprint().unwrap()
            })
        });
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = Config::from_toml(CONFIG, "bench", dir.path()).unwrap();
    let clock = Arc::new(ManualClock::new(SystemTime::now()));
    let live = Live::start(config, clock.clone()).unwrap();
    // revoke_previous keeps the key count constant, so every iteration does the same work.
    c.bench_function("rotate_key/ES256 (generate, write, fsync, swap)", |b| {
        b.iter(|| runtime.block_on(live.rotate("default", true)).unwrap())
    });

    let random = Random::new();
    let request = || IssueRequest {
        subject: "user-42".into(),
        claims: Default::default(),
        audience: Vec::new(),
        ttl: None,
    };
    clock.advance(Duration::from_secs(1));
    let snapshot = live.current();
    let profile = snapshot.profiles.get("default").unwrap();
    let issued = token::issue(profile, request(), clock.now(), &random).unwrap();
    c.bench_function("after_rotation/issue ES256", |b| {
        b.iter(|| token::issue(profile, request(), clock.now(), &random).unwrap())
    });
    c.bench_function("after_rotation/verify ES256", |b| {
        b.iter(|| token::verify(profile, &issued.token, None, clock.now()).unwrap())
    });
}

criterion_group!(benches, rotation);
criterion_main!(benches);
