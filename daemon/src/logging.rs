//! Logs: JSON lines on stdout with Elastic Common Schema field names (`@timestamp`,
//! `log.level`, `message`, `service.name`, `log.logger`, `trace.id`, and each event's own
//! fields such as `withdrawal.id`), so Logstash ships them without renaming anything; or
//! compact text on a terminal. `trace.id` comes from the HTTP request being served
//! (the caller's W3C `traceparent`, else a fresh id).

use std::fmt;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber, span};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

/// A span's `trace.id`, kept in its extensions for the formatter.
struct TraceId(String);

/// Records the `trace.id` field of new spans.
pub struct TraceIds;

struct FieldGrab<'a> {
    name: &'a str,
    found: Option<String>,
}

impl Visit for FieldGrab<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == self.name {
            self.found = Some(value.to_owned());
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == self.name {
            self.found = Some(format!("{value:?}").trim_matches('"').to_owned());
        }
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for TraceIds {
    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        let mut grab = FieldGrab { name: "trace.id", found: None };
        attrs.record(&mut grab);
        if let (Some(t), Some(span)) = (grab.found, ctx.span(id)) {
            span.extensions_mut().insert(TraceId(t));
        }
    }
}

/// An event's fields as JSON values.
struct Fields(serde_json::Map<String, serde_json::Value>);

impl Visit for Fields {
    fn record_str(&mut self, f: &Field, v: &str) {
        self.0.insert(f.name().to_owned(), v.into());
    }
    fn record_u64(&mut self, f: &Field, v: u64) {
        self.0.insert(f.name().to_owned(), v.into());
    }
    fn record_i64(&mut self, f: &Field, v: i64) {
        self.0.insert(f.name().to_owned(), v.into());
    }
    fn record_bool(&mut self, f: &Field, v: bool) {
        self.0.insert(f.name().to_owned(), v.into());
    }
    fn record_f64(&mut self, f: &Field, v: f64) {
        self.0.insert(f.name().to_owned(), v.into());
    }
    fn record_error(&mut self, f: &Field, v: &(dyn std::error::Error + 'static)) {
        self.0.insert(f.name().to_owned(), v.to_string().into());
    }
    fn record_debug(&mut self, f: &Field, v: &dyn fmt::Debug) {
        self.0.insert(f.name().to_owned(), format!("{v:?}").into());
    }
}

/// The ECS JSON line format.
pub struct Ecs {
    pub service: &'static str,
}

impl<S, N> FormatEvent<S, N> for Ecs
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut w: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let mut ts = String::new();
        SystemTime.format_time(&mut Writer::new(&mut ts))?;
        let mut fields = Fields(serde_json::Map::new());
        event.record(&mut fields);
        let meta = event.metadata();
        let mut out = serde_json::Map::new();
        out.insert("@timestamp".into(), ts.into());
        out.insert("log.level".into(), meta.level().as_str().into());
        out.insert("message".into(), fields.0.remove("message").unwrap_or_default());
        out.insert("service.name".into(), self.service.into());
        out.insert("log.logger".into(), meta.target().into());
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                if let Some(t) = span.extensions().get::<TraceId>() {
                    out.insert("trace.id".into(), t.0.clone().into());
                }
            }
        }
        // The event's own fields keep their (ECS-style, dotted) names: `withdrawal.id`, …
        for (k, v) in fields.0 {
            out.entry(k).or_insert(v);
        }
        writeln!(w, "{}", serde_json::Value::Object(out))
    }
}

/// The trace id of an incoming request: the W3C `traceparent`'s, else a fresh one.
pub fn trace_id(headers: &axum::http::HeaderMap) -> String {
    headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split('-').nth(1))
        .filter(|t| t.len() == 32 && t.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_ascii_lowercase)
        .unwrap_or_else(|| uuid::Uuid::now_v7().simple().to_string())
}

/// Axum middleware: every request is served inside a span carrying its `trace.id`.
pub async fn with_trace(req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    use tracing::Instrument;
    let span = tracing::info_span!("request", "trace.id" = %trace_id(req.headers()));
    next.run(req).instrument(span).await
}
