//! Builds the tracing subscriber, once: human-readable lines or JSON, level from `RUST_LOG`.

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogTarget {
    /// Standard output, from `info` up: the service, whose output is its log.
    Stdout,
    /// Standard error, from `warn` up: the operator commands, whose standard output carries
    /// their answer (for `keys generate --out -`, the key itself).
    Stderr,
}

/// Installs the global subscriber; `RUST_LOG` overrides the target's default level.
///
/// Audit events (tracing target `audit`, see `api::audit`) are written as one JSON object per
/// line whatever the format, beside the service log on the same stream; `RUST_LOG` filters them
/// like any target (`RUST_LOG=warn,audit=info` keeps them with only warnings otherwise,
/// `audit=off` drops them).
pub fn init(format: LogFormat, target: LogTarget) {
    use std::io::IsTerminal as _;
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::filter::{FilterExt as _, filter_fn};
    use tracing_subscriber::fmt::writer::BoxMakeWriter;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let writer = || match target {
        LogTarget::Stdout => BoxMakeWriter::new(std::io::stdout),
        LogTarget::Stderr => BoxMakeWriter::new(std::io::stderr),
    };
    let (ansi, level) = match target {
        LogTarget::Stdout => (std::io::stdout().is_terminal(), "info"),
        LogTarget::Stderr => (std::io::stderr().is_terminal(), "warn"),
    };
    let filter = || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let is_audit = |m: &tracing::Metadata<'_>| m.target() == crate::api::audit::TARGET;
    let service = tracing_subscriber::fmt::layer()
        .with_writer(writer())
        .with_ansi(ansi);
    let service = match format {
        LogFormat::Text => service.boxed(),
        LogFormat::Json => service
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .boxed(),
    }
    .with_filter(filter().and(filter_fn(move |m| !is_audit(m))));
    // The audit record stands alone: no span fields, so nothing but what `api::audit` chose.
    let audit = tracing_subscriber::fmt::layer()
        .with_writer(writer())
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_filter(filter().and(filter_fn(is_audit)));
    // A second install (as in tests that start several servers) keeps the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(service)
        .with(audit)
        .try_init();
}
