//! How much room a revocation takes in each token store: writes N token-id revocations the way
//! `Revoke` does and reports the bytes per entry (the embedded file's growth; Redis's
//! `used_memory` growth, when `redis-server` is installed, on a throwaway instance), and how many
//! revocations per second the embedded store takes from one caller and from 64 at once.
//!
//! ```text
//! cargo run --release --example store_size -- 20000
//! ```

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use token_authority::core::clock::ManualClock;
use token_authority::state::config::StoreSettings;
use token_authority::state::store::Store;

/// A token id as the service makes them: 16 random-looking bytes in base64url (22 characters).
fn token_id(i: u64) -> String {
    format!("{:0>22}", format!("{i:x}q9Zr"))
}

async fn fill(store: &Store, n: u64, until: u64) {
    for i in 0..n {
        store
            .revoke_token("access", &token_id(i), until)
            .await
            .unwrap();
    }
}

fn redis_memory(port: u16) -> u64 {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "info", "memory"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    let clock = Arc::new(ManualClock::new(SystemTime::now()));
    let until = clock_now(&clock) + 300;

    let dir = tempfile::tempdir()?;
    let path = dir.path().join("tokens.redb");
    let store = Store::open(
        Some(&StoreSettings::Embedded { path: path.clone() }),
        clock.clone(),
    )?;
    let empty = std::fs::metadata(&path)?.len();
    let started = std::time::Instant::now();
    fill(&store, n, until).await;
    let full = std::fs::metadata(&path)?.len();
    println!(
        "embedded: {n} revocations in {:.1?} ({:.0}/s, one synced commit each), file {empty} → {full} bytes: {:.0} bytes per entry",
        started.elapsed(),
        n as f64 / started.elapsed().as_secs_f64(),
        (full - empty) as f64 / n as f64
    );

    // Concurrent callers share commits: every write queued while one commit syncs goes into the
    // next transaction.
    let store = Arc::new(store);
    let started = std::time::Instant::now();
    let callers: Vec<_> = (0..64u64)
        .map(|c| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..n / 64 {
                    store
                        .revoke_token("access", &token_id(n + c * n + i), until)
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for caller in callers {
        caller.await?;
    }
    println!(
        "embedded, 64 concurrent callers: {} revocations in {:.1?} ({:.0}/s)",
        n / 64 * 64,
        started.elapsed(),
        (n / 64 * 64) as f64 / started.elapsed().as_secs_f64()
    );
    drop(store);

    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let Ok(mut redis) = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
    else {
        println!("redis: redis-server is not installed");
        return Ok(());
    };
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(10));
    }
    let url = format!("redis://127.0.0.1:{port}/0");
    let store = Store::open(Some(&StoreSettings::Redis { url }), clock.clone())?;
    store.ping().await?;
    let before = redis_memory(port);
    let started = std::time::Instant::now();
    fill(&store, n, until).await;
    let after = redis_memory(port);
    println!(
        "redis: {n} revocations in {:.1?} ({:.0}/s, one round trip each), used_memory {before} → {after} bytes: {:.0} bytes per entry",
        started.elapsed(),
        n as f64 / started.elapsed().as_secs_f64(),
        (after - before) as f64 / n as f64
    );
    let _ = redis.kill();
    let _ = redis.wait();
    Ok(())
}

fn clock_now(clock: &ManualClock) -> u64 {
    use token_authority::core::clock::Clock as _;
    clock.unix_seconds()
}
