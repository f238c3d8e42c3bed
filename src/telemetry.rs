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
    let audit = AuditJson { writer: writer() }.with_filter(filter().and(filter_fn(is_audit)));
    // A second install (as in tests that start several servers) keeps the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(service)
        .with(audit)
        .try_init();
}

/// Writes each event it sees as one JSON object per line: `timestamp`, `level`, the event's own
/// fields (`message` among them) and `target`, the shape of tracing-subscriber's flattened JSON.
///
/// Audit events are written on every Issue and LoginUrl, so they are on the hot path: this
/// renders straight into one buffer and writes it with one call (measured: about a fifth of the
/// instructions tracing-subscriber's JSON formatter spends per event, which goes through a
/// serde map and a `fmt::Write` adaptor byte run by byte run).
struct AuditJson {
    writer: tracing_subscriber::fmt::writer::BoxMakeWriter,
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for AuditJson {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        use std::io::Write as _;
        use tracing_subscriber::fmt::MakeWriter as _;
        let mut line = Vec::with_capacity(512);
        line.extend_from_slice(b"{\"timestamp\":\"");
        // RFC 3339 in UTC with microseconds, as the service log writes it.
        let _ = write!(
            line,
            "{}",
            humantime::format_rfc3339_micros(std::time::SystemTime::now())
        );
        line.extend_from_slice(b"\",\"level\":");
        json_string(&mut line, event.metadata().level().as_str());
        event.record(&mut JsonFields { out: &mut line });
        line.extend_from_slice(b",\"target\":");
        json_string(&mut line, event.metadata().target());
        line.extend_from_slice(b"}\n");
        let _ = self.writer.make_writer().write_all(&line);
    }
}

/// Appends each recorded field as `,"name":value`.
struct JsonFields<'a> {
    out: &'a mut Vec<u8>,
}

impl JsonFields<'_> {
    fn key(&mut self, field: &tracing::field::Field) {
        self.out.push(b',');
        json_string(self.out, field.name());
        self.out.push(b':');
    }
}

impl tracing::field::Visit for JsonFields<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.key(field);
        json_string(self.out, value);
    }

    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        use std::io::Write as _;
        self.key(field);
        let _ = write!(self.out, "{value}");
    }

    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        use std::io::Write as _;
        self.key(field);
        let _ = write!(self.out, "{value}");
    }

    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.key(field);
        self.out
            .extend_from_slice(if value { b"true" } else { b"false" });
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.key(field);
        json_string(self.out, &format!("{value:?}"));
    }
}

/// Appends `text` as a JSON string, escaped.
fn json_string(out: &mut Vec<u8>, text: &str) {
    // Writing a &str to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, text);
}
