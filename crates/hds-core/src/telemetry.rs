//! Logs, traces and trace-context propagation, set up once per process.
//!
//! Logs go to stderr through `tracing` (text or JSON). Every span is also an OpenTelemetry
//! span, so W3C trace context (`traceparent`) flows across HTTP requests and bus messages
//! whether or not traces are exported; when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, spans are
//! exported over OTLP/HTTP to it.

use std::collections::HashMap;

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::bus::Headers;
use crate::config::{LogFormat, TelemetrySettings};

pub const OTLP_ENDPOINT_ENV: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// Flushes exported spans when dropped (at the end of `main`).
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            // The exporter's HTTP client blocks: shut it down off the async runtime.
            let _ = std::thread::spawn(move || provider.shutdown()).join();
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("telemetry setup failed: {0}")]
pub struct TelemetryError(String);

/// Installs the global subscriber and propagator. A second call (tests, `hds up` starting
/// several services) leaves the first one in place.
pub fn init(service: &str, settings: &TelemetrySettings) -> Result<TelemetryGuard, TelemetryError> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());

    let mut builder = SdkTracerProvider::builder().with_resource(
        opentelemetry_sdk::Resource::builder()
            .with_service_name(service.to_owned())
            .build(),
    );
    let exporting = std::env::var_os(OTLP_ENDPOINT_ENV).is_some_and(|v| !v.is_empty());
    if exporting {
        // Built on a plain thread: the blocking HTTP client may not be created inside the
        // async runtime, and the batch processor exports from a thread of its own.
        let exporter = std::thread::spawn(|| {
            opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .build()
        })
        .join()
        .map_err(|_| TelemetryError("OTLP exporter setup panicked".into()))?
        .map_err(|e| TelemetryError(format!("OTLP exporter: {e}")))?;
        builder = builder.with_batch_exporter(exporter);
    }
    let provider = builder.build();
    let tracer = provider.tracer(service.to_owned());
    opentelemetry::global::set_tracer_provider(provider.clone());

    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.log_filter))
        .map_err(|e| {
            TelemetryError(format!(
                "telemetry.log_filter '{}': {e}",
                settings.log_filter
            ))
        })?;
    let fmt = match settings.log_format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .boxed(),
    };
    let installed = tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        // Spans at info and above: the services' own spans (requests, bus messages) are all
        // there. Without a filter every debug and trace span and event of the libraries below
        // (sqlx per statement, the AWS SDK per request) was built and recorded whether or not
        // anything exported it: a quarter of dicom-svc's CPU.
        .with(
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_filter(tracing_subscriber::filter::LevelFilter::INFO),
        )
        .try_init()
        .is_ok();
    if installed && exporting {
        tracing::info!(endpoint = ?std::env::var(OTLP_ENDPOINT_ENV).ok(), "exporting traces over OTLP");
    }
    Ok(TelemetryGuard {
        provider: installed.then_some(provider),
    })
}

struct HeaderInjector<'a>(&'a mut Headers);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.retain(|(k, _)| k != key);
        self.0.push((key.to_owned(), value.into_bytes()));
    }
}

struct HeaderExtractor<'a>(&'a Headers);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k.as_str()).collect()
    }
}

/// Adds the current span's W3C trace context to message headers, unless they carry one.
pub fn inject_into_headers(headers: &mut Headers) {
    if headers.iter().any(|(k, _)| k == "traceparent") {
        return;
    }
    let cx = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&cx, &mut HeaderInjector(headers))
    });
}

/// Makes `span` a child of the trace context carried in message headers.
pub fn set_parent_from_headers(span: &tracing::Span, headers: &Headers) {
    if !headers.iter().any(|(k, _)| k == "traceparent") {
        return;
    }
    let cx =
        opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(headers)));
    let _ = span.set_parent(cx);
}

/// Makes `span` a child of the trace context of HTTP request headers.
pub fn set_parent_from_http(span: &tracing::Span, headers: &actix_web::http::header::HeaderMap) {
    let map: HashMap<String, String> = ["traceparent", "tracestate"]
        .iter()
        .filter_map(|k| {
            headers
                .get(*k)
                .and_then(|v| v.to_str().ok())
                .map(|v| (k.to_string(), v.to_owned()))
        })
        .collect();
    if map.is_empty() {
        return;
    }
    let cx = opentelemetry::global::get_text_map_propagator(|p| p.extract(&map));
    let _ = span.set_parent(cx);
}

/// The W3C `traceparent` of the current span, to send on an outgoing HTTP request.
pub fn current_traceparent() -> Option<String> {
    let mut map: HashMap<String, String> = HashMap::new();
    let cx = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut map));
    map.remove("traceparent")
}
