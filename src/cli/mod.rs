//! The operator commands, one file each; `main.rs` parses the command line and calls them.
//!
//! None of them serves anything. Their logs go to stderr, so stdout carries only the answer (for
//! `keys generate --out -`, only the key).

/// `config check`: load a configuration as `serve` would, print what it holds, write nothing.
pub mod config_check;
/// `healthcheck`: ask a running service's gRPC health endpoint, exit 0 only on SERVING.
pub mod healthcheck;
/// `keys generate`: make key material for a `[[keys]]` entry, never printing it by accident.
pub mod keys_generate;
/// `keys list`: print every key a running service holds, as text or one JSON document.
pub mod keys_list;

use std::io::Write as _;
use std::time::Duration;

use anyhow::{Context as _, anyhow};

/// The URL to dial for `--addr`: as given when it names a scheme, plain `http://` otherwise.
fn service_url(addr: &str) -> String {
    if addr.contains("://") {
        addr.to_owned()
    } else {
        format!("http://{addr}")
    }
}

/// What `ask` returns, or an error naming `url` once `timeout` has passed without an answer.
async fn within<T>(
    url: &str,
    timeout: Duration,
    ask: impl Future<Output = T>,
) -> anyhow::Result<T> {
    tokio::time::timeout(timeout, ask).await.map_err(|_| {
        anyhow!(
            "no answer from {url} within {}",
            humantime::format_duration(timeout)
        )
    })
}

/// Writes a whole report to stdout; a closed pipe is an error, not a panic as with `print!`.
fn print_report(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .context("cannot write to standard output")
}
