//! `healthcheck`: one question to a running service's gRPC health endpoint, for container
//! health probes that have no grpc client of their own.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use super::{TlsOptions, connect, within};

/// Asks `addr` how `service` (empty: the whole server) is doing, prints the answer, and exits 0
/// only on SERVING; no answer within `timeout` is an error. Over TLS when `tls` has a CA.
pub async fn healthcheck(
    addr: &str,
    service: String,
    timeout: Duration,
    tls: &TlsOptions,
) -> anyhow::Result<ExitCode> {
    let (url, connecting) = connect(addr, tls)?;
    let check = async {
        let channel = connecting.await?;
        let answer = HealthClient::new(channel)
            .check(HealthCheckRequest { service })
            .await?;
        anyhow::Ok(answer.into_inner().status())
    };
    let status = within(&url, timeout, check)
        .await?
        .with_context(|| format!("health check of {url}"))?;
    println!("{}", status.as_str_name());
    Ok(if status == ServingStatus::Serving {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
