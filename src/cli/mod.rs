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
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// The port `--addr` means when it names none: the service's, not HTTP's 80.
const DEFAULT_PORT: u16 = 50051;

/// How a command reaches the service: plaintext, or TLS with `--ca-file` (and a client
/// certificate with `--cert-file` and `--key-file`).
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// The CA that issued the service's certificate (PEM); TLS is used only when given.
    pub ca_file: Option<PathBuf>,
    /// A client certificate to present (PEM, leaf first), with `key_file`.
    pub cert_file: Option<PathBuf>,
    /// The private key of `cert_file` (PEM).
    pub key_file: Option<PathBuf>,
}

impl TlsOptions {
    /// The tonic TLS settings, or `None` for plaintext; unreadable files are errors naming the
    /// flag and the file.
    fn client_config(&self) -> anyhow::Result<Option<ClientTlsConfig>> {
        let read = |flag: &str, path: &Path| {
            std::fs::read(path).with_context(|| format!("{flag} {}: cannot read", path.display()))
        };
        let Some(ca_file) = &self.ca_file else {
            anyhow::ensure!(
                self.cert_file.is_none() && self.key_file.is_none(),
                "--cert-file and --key-file need --ca-file: a client certificate is only sent over TLS"
            );
            return Ok(None);
        };
        let mut config = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read("--ca-file", ca_file)?));
        match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => {
                config = config.identity(Identity::from_pem(
                    read("--cert-file", cert)?,
                    read("--key-file", key)?,
                ));
            }
            (None, None) => {}
            _ => anyhow::bail!("--cert-file and --key-file go together: give both or neither"),
        }
        Ok(Some(config))
    }
}

/// The URL of `addr` and a connection to it as `tls` says (plaintext without `--ca-file`);
/// the connection is made, TLS handshake included, by the returned future.
fn connect(
    addr: &str,
    tls: &TlsOptions,
) -> anyhow::Result<(String, impl Future<Output = anyhow::Result<Channel>>)> {
    let client_tls = tls.client_config()?;
    let url = service_url(addr, client_tls.is_some())?;
    let endpoint = Endpoint::from_shared(url.clone())?;
    let endpoint = match client_tls {
        Some(config) => endpoint
            .tls_config(config)
            .with_context(|| format!("cannot set up TLS for {url}"))?,
        None => endpoint,
    };
    let connecting = {
        let url = url.clone();
        async move {
            endpoint
                .connect()
                .await
                .with_context(|| format!("cannot connect to {url}"))
        }
    };
    Ok((url, connecting))
}

/// The URL to dial for `--addr` (`HOST[:PORT]`, `http://HOST[:PORT]` or, with TLS,
/// `https://HOST[:PORT]`), with port 50051 when none is given. `https://` without `--ca-file` is
/// refused: a check that silently dropped the TLS it was asked for would report SERVING for
/// the wrong thing, and a plaintext address with `--ca-file` is dialled over TLS.
fn service_url(addr: &str, tls: bool) -> anyhow::Result<String> {
    let (scheme, rest) = addr.split_once("://").unwrap_or(("", addr));
    match (scheme, tls) {
        ("", _) | ("http", false) | ("https", true) => {}
        ("https", false) => anyhow::bail!(
            "--addr {addr}: https needs --ca-file, the CA that issued the service's certificate (and --cert-file/--key-file for a client certificate)"
        ),
        ("http", true) => anyhow::bail!(
            "--addr {addr}: http:// is plaintext, but --ca-file asks for TLS; write HOST:PORT or https://HOST:PORT"
        ),
        (other, _) => anyhow::bail!(
            "--addr {addr}: unknown scheme {other:?}; use HOST:PORT, http://HOST:PORT or https://HOST:PORT"
        ),
    }
    let scheme = if tls { "https" } else { "http" };
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
        format!("{scheme}://{authority}{path}")
    } else {
        format!("{scheme}://{authority}:{DEFAULT_PORT}{path}")
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
        assert_eq!(
            service_url("127.0.0.1", false).unwrap(),
            "http://127.0.0.1:50051"
        );
        assert_eq!(
            service_url("http://ta.internal", false).unwrap(),
            "http://ta.internal:50051"
        );
        assert_eq!(service_url("[::1]", false).unwrap(), "http://[::1]:50051");
        assert_eq!(
            service_url("[::1]:7000", false).unwrap(),
            "http://[::1]:7000"
        );
        assert_eq!(
            service_url("10.0.0.5:80", false).unwrap(),
            "http://10.0.0.5:80"
        );
    }

    #[test]
    fn with_tls_an_address_is_dialled_as_https() {
        assert_eq!(
            service_url("ta.internal", true).unwrap(),
            "https://ta.internal:50051"
        );
        assert_eq!(
            service_url("https://10.0.0.5:7000", true).unwrap(),
            "https://10.0.0.5:7000"
        );
        let e = service_url("http://ta.internal", true).unwrap_err();
        assert!(e.to_string().contains("http:// is plaintext"), "{e}");
    }

    #[test]
    fn https_without_a_ca_and_other_schemes_are_refused_rather_than_checked_in_plaintext() {
        let e = service_url("https://ta.internal:50051", false).unwrap_err();
        assert!(e.to_string().contains("https needs --ca-file"), "{e}");
        assert!(service_url("grpc://ta.internal", false).is_err());
        assert!(service_url("", false).is_err());
    }
}
