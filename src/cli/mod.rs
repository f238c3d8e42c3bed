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

/// The port `--addr` means when it names none: the service's, not HTTP's 80.
const DEFAULT_PORT: u16 = 50051;

/// The URL to dial for `--addr` (`HOST[:PORT]` or `http://HOST[:PORT]`), with port 50051 when
/// none is given. `https://` is refused: the service speaks plaintext gRPC, and a check that
/// silently dropped the TLS it was asked for would report SERVING for the wrong thing.
fn service_url(addr: &str) -> anyhow::Result<String> {
    let (scheme, rest) = addr.split_once("://").unwrap_or(("http", addr));
    match scheme {
        "http" => {}
        "https" => anyhow::bail!(
            "--addr {addr}: https is not supported, since the service serves plaintext gRPC; use HOST:PORT or http://HOST:PORT"
        ),
        other => anyhow::bail!(
            "--addr {addr}: unknown scheme {other:?}; use HOST:PORT or http://HOST:PORT"
        ),
    }
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    anyhow::ensure!(
        !authority.is_empty(),
        "--addr {addr}: no host; use HOST:PORT"
    );
    // An IPv6 address has colons of its own: only digits after the last one make a port.
    let has_port = authority
        .rsplit_once(':')
        .is_some_and(|(_, port)| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()));
    Ok(if has_port {
        format!("http://{authority}{path}")
    } else {
        format!("http://{authority}:{DEFAULT_PORT}{path}")
    })
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

#[cfg(test)]
mod tests {
    use super::service_url;

    #[test]
    fn an_address_without_a_port_means_the_service_port() {
        assert_eq!(service_url("127.0.0.1").unwrap(), "http://127.0.0.1:50051");
        assert_eq!(
            service_url("http://ta.internal").unwrap(),
            "http://ta.internal:50051"
        );
        assert_eq!(service_url("[::1]").unwrap(), "http://[::1]:50051");
        assert_eq!(service_url("[::1]:7000").unwrap(), "http://[::1]:7000");
        assert_eq!(service_url("10.0.0.5:80").unwrap(), "http://10.0.0.5:80");
    }

    #[test]
    fn https_and_other_schemes_are_refused_rather_than_checked_in_plaintext() {
        let e = service_url("https://ta.internal:50051").unwrap_err();
        assert!(e.to_string().contains("https is not supported"), "{e}");
        assert!(service_url("grpc://ta.internal").is_err());
        assert!(service_url("").is_err());
    }
}
