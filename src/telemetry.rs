//! Builds the tracing subscriber, once: human-readable lines or JSON, level from `RUST_LOG`.
//!
//! Every call writes a log line and most write an audit event, so this is on the hot path and
//! measured with callgrind (`benches/grpc.sh`, README "Load"). Three choices come from there:
//! - text fields are written as tracing-subscriber writes them, but a plain string goes out as
//!   it is instead of through `Debug` and the ANSI painter char by char;
//! - JSON lines (the service log in `--log-format json`, and every audit event) are rendered
//!   straight into one buffer by [`JsonLines`], not through serde's map serializer;
//! - on the service's runtime threads lines are batched ([`output`]): a worker writes what it
//!   has when it runs out of work, when 32 KiB are waiting, or at the latest every 100 ms, so a
//!   busy service makes one `write(2)` for many lines instead of two per call.

use std::fmt;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::{RecordFields, VisitOutput as _};
use tracing_subscriber::fmt::format::{DefaultVisitor, Writer};
use tracing_subscriber::fmt::{FormatFields, time::FormatTime};

pub use output::{batch_this_thread, flush, try_flush};

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
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    output::set_target(target);
    let (ansi, level) = match target {
        LogTarget::Stdout => (std::io::stdout().is_terminal(), "info"),
        LogTarget::Stderr => (std::io::stderr().is_terminal(), "warn"),
    };
    let filter = || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let is_audit = |m: &tracing::Metadata<'_>| m.target() == crate::api::audit::TARGET;
    let service = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(output::Lines)
            .with_ansi(ansi)
            .with_timer(Micros)
            .fmt_fields(PlainFields)
            .boxed(),
        LogFormat::Json => JsonLines {
            span: true,
            write: output::write_line,
        }
        .boxed(),
    }
    .with_filter(filter().and(filter_fn(move |m| !is_audit(m))));
    // The audit record stands alone: no span fields, so nothing but what `api::audit` chose.
    let audit = JsonLines {
        span: false,
        write: output::write_line,
    }
    .with_filter(filter().and(filter_fn(is_audit)));
    // A second install (as in tests that start several servers) keeps the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(service)
        .with(audit)
        .try_init();
}

/// Where lines go: straight to the stream, or batched on the threads that asked for it.
mod output {
    use std::cell::Cell;
    use std::io::Write as _;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::LogTarget;

    /// Lines waiting on batching threads are written once this many bytes are waiting.
    const BATCH_BYTES: usize = 32 * 1024;

    static PENDING: Mutex<Vec<u8>> = Mutex::new(Vec::new());
    static TO_STDERR: AtomicBool = AtomicBool::new(false);

    thread_local! {
        static BATCHING: Cell<bool> = const { Cell::new(false) };
    }

    pub(super) fn set_target(target: LogTarget) {
        TO_STDERR.store(target == LogTarget::Stderr, Ordering::Relaxed);
    }

    /// Lines logged on this thread from now on wait for [`flush`] (or for 32 KiB of them).
    /// The service sets it on its runtime's threads and flushes whenever one parks, and every
    /// 100 ms; every other thread writes each line as it comes.
    pub fn batch_this_thread() {
        BATCHING.with(|b| b.set(true));
    }

    /// Writes every waiting line.
    pub fn flush() {
        // A panic while the lock was held leaves whole lines behind it: write them.
        let mut pending = PENDING.lock().unwrap_or_else(|e| e.into_inner());
        write_out(&mut pending);
    }

    /// Writes every waiting line unless the buffer is in use, as it could be on this very
    /// thread when a panic hook runs: never blocks.
    pub fn try_flush() {
        match PENDING.try_lock() {
            Ok(mut pending) => write_out(&mut pending),
            Err(std::sync::TryLockError::Poisoned(e)) => write_out(&mut e.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => {}
        }
    }

    fn write_out(pending: &mut Vec<u8>) {
        if pending.is_empty() {
            return;
        }
        // A log line that cannot be written has nowhere better to go.
        let _ = if TO_STDERR.load(Ordering::Relaxed) {
            std::io::stderr().lock().write_all(pending)
        } else {
            std::io::stdout().lock().write_all(pending)
        };
        pending.clear();
    }

    /// Appends whole lines (each `write` is one event's line) in the order they were logged.
    pub(super) fn write_line(line: &[u8]) {
        let mut pending = PENDING.lock().unwrap_or_else(|e| e.into_inner());
        pending.extend_from_slice(line);
        if !BATCHING.with(Cell::get) || pending.len() >= BATCH_BYTES {
            write_out(&mut pending);
        }
    }

    /// The writer every layer writes its lines to.
    pub(super) struct Lines;

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            write_line(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Lines {
        type Writer = Lines;

        fn make_writer(&'a self) -> Lines {
            Lines
        }
    }
}

/// RFC 3339 in UTC with microseconds, as tracing-subscriber's own timer writes it, through
/// humantime (a quarter of the instructions).
struct Micros;

impl FormatTime for Micros {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        write!(
            w,
            "{}",
            humantime::format_rfc3339_micros(std::time::SystemTime::now())
        )
    }
}

/// tracing-subscriber's `DefaultFields`, byte for byte, with a short cut: without ANSI colours
/// a field whose value is printable ASCII needing no escape (every field the service logs per
/// call) is written directly, as `name="value"` or `name=123`. Everything else, the message
/// among it, goes through `DefaultVisitor` itself.
struct PlainFields;

impl<'w> FormatFields<'w> for PlainFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> fmt::Result {
        if writer.has_ansi_escapes() {
            let mut visitor = DefaultVisitor::new(writer, true);
            fields.record(&mut visitor);
            return visitor.finish();
        }
        let mut visitor = PlainVisitor {
            writer,
            empty: true,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct PlainVisitor<'w> {
    writer: Writer<'w>,
    empty: bool,
    result: fmt::Result,
}

impl PlainVisitor<'_> {
    /// One field as `DefaultVisitor` writes it: the separating space, `name=`, then what
    /// `value` writes; nothing for the fields it skips.
    fn field(
        &mut self,
        field: &tracing::field::Field,
        value: impl FnOnce(&mut Writer<'_>) -> fmt::Result,
    ) {
        let name = field.name();
        if self.result.is_err() || name.starts_with("log.") {
            return;
        }
        let name = name.strip_prefix("r#").unwrap_or(name);
        let w = &mut self.writer;
        let space = if std::mem::replace(&mut self.empty, false) {
            Ok(())
        } else {
            w.write_char(' ')
        };
        self.result = space
            .and_then(|()| w.write_str(name))
            .and_then(|()| w.write_char('='))
            .and_then(|()| value(w));
    }

    /// Hands one field to `DefaultVisitor`, which writes the separator itself.
    fn default(&mut self, record: impl FnOnce(&mut DefaultVisitor<'_>)) {
        let mut visitor = DefaultVisitor::new(self.writer.by_ref(), self.empty);
        record(&mut visitor);
        self.result = visitor.finish();
        self.empty = false;
    }

    fn number(&mut self, field: &tracing::field::Field, value: &dyn fmt::Display) {
        self.field(field, |w| write!(w, "{value}"));
    }
}

/// Printable ASCII with no `"` or `\`: what `Debug` writes unchanged between its quotes.
fn plain(text: &str) -> bool {
    // No early exit: the whole loop is a few vector instructions for a short string.
    !text.bytes().fold(false, |odd, b| {
        odd | !(0x20..0x7f).contains(&b) | (b == b'"') | (b == b'\\')
    })
}

impl tracing::field::Visit for PlainVisitor<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if self.result.is_err() {
            return;
        }
        if field.name() == "message" || !plain(value) {
            return self.default(|v| v.record_str(field, value));
        }
        self.field(field, |w| {
            w.write_char('"')
                .and_then(|()| w.write_str(value))
                .and_then(|()| w.write_char('"'))
        });
    }

    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.number(field, &value);
    }

    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.number(field, &value);
    }

    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.number(field, &value);
    }

    fn record_error(
        &mut self,
        field: &tracing::field::Field,
        value: &(dyn std::error::Error + 'static),
    ) {
        if self.result.is_ok() {
            self.default(|v| v.record_error(field, value));
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        if self.result.is_ok() {
            self.default(|v| v.record_debug(field, value));
        }
    }
}

/// Writes each event it sees as one JSON object per line: `timestamp`, `level`, the event's own
/// fields (`message` among them), `target` and, with `span`, the current span's fields and
/// name under `"span"`: the shape of tracing-subscriber's flattened JSON with the current span.
///
/// It renders straight into one buffer and writes it with one call (measured: about a fifth of
/// the instructions tracing-subscriber's JSON formatter spends per event, which goes through a
/// serde map and a `fmt::Write` adaptor byte run by byte run).
struct JsonLines {
    span: bool,
    /// Where each finished line goes: [`output::write_line`] outside tests.
    write: fn(&[u8]),
}

/// A span's fields as JSON members (`,"name":value` each), kept in its extensions.
struct SpanFields(Vec<u8>);

impl<S> tracing_subscriber::Layer<S> for JsonLines
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if !self.span {
            return;
        }
        if let Some(span) = ctx.span(id) {
            let mut fields = Vec::new();
            attrs.record(&mut JsonFields { out: &mut fields });
            span.extensions_mut().insert(SpanFields(fields));
        }
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if !self.span {
            return;
        }
        if let Some(span) = ctx.span(id)
            && let Some(fields) = span.extensions_mut().get_mut::<SpanFields>()
        {
            values.record(&mut JsonFields { out: &mut fields.0 });
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: tracing_subscriber::layer::Context<'_, S>) {
        use std::io::Write as _;
        let mut line = Vec::with_capacity(512);
        line.extend_from_slice(b"{\"timestamp\":\"");
        // RFC 3339 in UTC with microseconds, as the text log writes it.
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
        // The event's explicit parent, else the span it was entered in.
        let span = if self.span {
            event
                .parent()
                .and_then(|id| ctx.span(id))
                .or_else(|| ctx.lookup_current())
        } else {
            None
        };
        if let Some(span) = span {
            line.extend_from_slice(b",\"span\":{");
            if let Some(fields) = span.extensions().get::<SpanFields>() {
                // The members each start with a comma; the name closes the object.
                if let Some(rest) = fields.0.strip_prefix(b",") {
                    line.extend_from_slice(rest);
                    line.push(b',');
                }
            }
            line.extend_from_slice(b"\"name\":");
            json_string(&mut line, span.name());
            line.push(b'}');
        }
        line.extend_from_slice(b"}\n");
        (self.write)(&line);
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

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        use fmt::Write as _;
        self.key(field);
        self.out.push(b'"');
        let _ = write!(JsonEscaped(self.out), "{value:?}");
        self.out.push(b'"');
    }
}

/// Appends `text` as a JSON string.
fn json_string(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    escape_into(out, text);
    out.push(b'"');
}

/// A `fmt::Write` that appends what it is given JSON-escaped, for `Debug` values.
struct JsonEscaped<'a>(&'a mut Vec<u8>);

impl fmt::Write for JsonEscaped<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        escape_into(self.0, s);
        Ok(())
    }
}

/// Appends `text` escaped for a JSON string: `"`, `\` and the control characters, as
/// serde_json escapes them; everything else as it is.
fn escape_into(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    // Nearly every value needs no escape: tell at once (no early exit, so it vectorizes).
    if !bytes.iter().fold(false, |odd, &b| {
        odd | (b < 0x20) | (b == b'"') | (b == b'\\')
    }) {
        out.extend_from_slice(bytes);
        return;
    }
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..0x20 => {
                out.extend_from_slice(&bytes[start..i]);
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(b >> 4)],
                    HEX[usize::from(b & 0xf)],
                ]);
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(escape);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_are_escaped_exactly_as_serde_json_escapes_them() {
        let samples = [
            "plain",
            "",
            "quote \" backslash \\ slash /",
            "new\nline\r\ttab \u{8} \u{c} \u{0} \u{1f} \u{7f}",
            "caf\u{e9} \u{1F600} \u{2028}",
            "\u{1b}[31mred",
        ];
        for sample in samples {
            let mut ours = Vec::new();
            json_string(&mut ours, sample);
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                serde_json::to_string(sample).unwrap(),
                "{sample:?}"
            );
        }
    }

    /// What a text layer writes for a fixed set of events, with `PlainFields` or without.
    fn text_of(plain_fields: bool) -> String {
        use std::sync::{Arc, Mutex};
        use tracing_subscriber::Layer as _;
        use tracing_subscriber::layer::SubscriberExt as _;
        #[derive(Clone)]
        struct Capture(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Capture {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let captured = Capture(Arc::default());
        let writer = captured.clone();
        let base = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .without_time()
            .with_writer(move || writer.clone());
        let layer = if plain_fields {
            base.fmt_fields(PlainFields).boxed()
        } else {
            base.boxed()
        };
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            let error = std::io::Error::other("disk \"full\"");
            let none: Option<&str> = None;
            tracing::info!(
                rpc = "Issue",
                profile = Some("bench-hs256"),
                none,
                latency_us = 42u64,
                delta = -3i64,
                ok = true,
                "call finished"
            );
            tracing::warn!(
                quoted = "say \"hi\"",
                unicode = "caf\u{e9}",
                escape = "\u{1b}[31mred",
                shown = %"display \"value\"",
                debug = ?vec![1, 2],
                r#type = "raw",
                error = &error as &(dyn std::error::Error + 'static),
                "message with \u{1b}[0m and \"quotes\""
            );
            let span = tracing::info_span!("outer", call = "Verify", n = 7u64);
            let _in = span.enter();
            tracing::error!(name = "in span", "inside");
        });
        let bytes = captured.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn text_fields_come_out_exactly_as_tracing_subscriber_writes_them() {
        let ours = text_of(true);
        let theirs = text_of(false);
        assert_eq!(ours, theirs);
        assert!(
            ours.contains(
                "call finished rpc=\"Issue\" profile=\"bench-hs256\" latency_us=42 delta=-3 ok=true"
            ),
            "{ours}"
        );
        assert!(ours.contains("outer{call=\"Verify\" n=7}"), "{ours}");
    }

    static JSON_LINES: std::sync::Mutex<Vec<u8>> = std::sync::Mutex::new(Vec::new());

    #[test]
    fn json_lines_are_json_with_the_fields_at_the_top_and_the_current_span_under_span() {
        use tracing_subscriber::layer::SubscriberExt as _;
        let layer = JsonLines {
            span: true,
            write: |line| JSON_LINES.lock().unwrap().extend_from_slice(line),
        };
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
            tracing::info!(
                rpc = "Issue",
                latency_us = 42u64,
                ok = true,
                "call finished"
            );
            let span = tracing::info_span!("outer", call = "Verify", n = 7u64);
            let _in = span.enter();
            tracing::warn!(detail = "say \"hi\"\n", shown = ?vec![1, 2], "inside");
        });
        let text = String::from_utf8(JSON_LINES.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        let first = &lines[0];
        assert_eq!(first["level"], "INFO");
        assert_eq!(first["message"], "call finished");
        assert_eq!(first["rpc"], "Issue");
        assert_eq!(first["latency_us"], 42);
        assert_eq!(first["ok"], true);
        assert!(first.get("span").is_none(), "{first}");
        assert!(first["timestamp"].as_str().unwrap().ends_with('Z'));
        let second = &lines[1];
        assert_eq!(second["detail"], "say \"hi\"\n");
        assert_eq!(second["shown"], "[1, 2]");
        assert_eq!(
            second["span"],
            serde_json::json!({"call": "Verify", "n": 7, "name": "outer"})
        );
        assert_eq!(second["target"], module_path!());
    }

    #[test]
    fn plain_strings_are_those_debug_leaves_as_they_are() {
        for text in ["Issue", "bench-hs256", "a b/c:d=e", "", "~!@#$%^&*()"] {
            assert!(plain(text), "{text:?}");
            assert_eq!(format!("{text:?}"), format!("\"{text}\""));
        }
        for text in ["a\"b", "a\\b", "tab\t", "caf\u{e9}", "\u{1b}[0m", "\u{7f}"] {
            assert!(!plain(text), "{text:?}");
        }
    }
}
