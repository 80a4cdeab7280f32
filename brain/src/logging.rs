//! Log lines on stderr, JSON or console, each carrying the environment
//! label (`Z4J_ENVIRONMENT`).

use std::fmt::Write as _;
use std::io::Write as _;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;

struct LineLayer {
    json: bool,
    environment: String,
}

#[derive(Default)]
struct Fields(serde_json::Map<String, serde_json::Value>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_owned(), format!("{value:?}").into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), value.into());
    }
}

impl<S: Subscriber> Layer<S> for LineLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let meta = event.metadata();
        let ts = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let level = level_name(*meta.level());
        let line = if self.json {
            let mut obj = serde_json::Map::new();
            obj.insert("timestamp".into(), ts.into());
            obj.insert("level".into(), level.into());
            obj.insert("logger".into(), meta.target().into());
            obj.insert("environment".into(), self.environment.clone().into());
            if let Some(m) = fields.0.remove("message") {
                obj.insert("event".into(), m);
            }
            obj.extend(fields.0);
            serde_json::Value::Object(obj).to_string()
        } else {
            let mut s = format!("{ts} {level:<8} [{}] {}", self.environment, meta.target());
            if let Some(m) = fields.0.remove("message") {
                let _ = write!(
                    s,
                    ": {}",
                    m.as_str().map_or_else(|| m.to_string(), str::to_owned)
                );
            }
            for (k, v) in fields.0 {
                let _ = write!(
                    s,
                    " {k}={}",
                    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
                );
            }
            s
        };
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    }
}

fn level_name(l: Level) -> &'static str {
    match l {
        Level::ERROR => "error",
        Level::WARN => "warning",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

/// `Z4J_LOG_LEVEL` names (Python's) to a filter.
pub fn level_filter(name: &str) -> LevelFilter {
    match name {
        "DEBUG" => LevelFilter::DEBUG,
        "WARNING" => LevelFilter::WARN,
        "ERROR" | "CRITICAL" => LevelFilter::ERROR,
        _ => LevelFilter::INFO,
    }
}

pub fn init(json: bool, level: &str, environment: &str) {
    let max = level_filter(level);
    // A global filter, not a per-layer one: per-layer filters compute
    // callsite interest through thread-local state, and callsites first hit
    // concurrently (PostgreSQL start-up: pool connections logging on several
    // threads) were cached as "never", silently dropping those log lines.
    let filter = tracing_subscriber::filter::filter_fn(move |m| {
        // sqlx logs every statement; keep only its warnings.
        *m.level() <= max && (!m.target().starts_with("sqlx") || *m.level() <= Level::WARN)
    });
    let layer = LineLayer {
        json,
        environment: environment.to_owned(),
    };
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(layer)
        .try_init();
}
