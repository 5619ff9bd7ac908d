//! OpenTelemetry export: when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, the bus's spans (`publish`, `store.append`,
//! `webhook.attempt`, `consumer.deliver`; see `eventbus::telemetry`) are exported over OTLP/HTTP
//! (`OTEL_EXPORTER_OTLP_PROTOCOL`: `http/protobuf`, the default, or `http/json`), batched by
//! the SDK (`OTEL_BSP_*`), as service `OTEL_SERVICE_NAME` (default `eventbus`). Unset, no
//! exporter and no OpenTelemetry layer exist: the spans are plain `tracing` spans.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;

/// The tracer provider exporting over OTLP, when an endpoint is configured. Build it before the
/// async runtime starts (its HTTP client is a blocking one, on the SDK's export thread), and
/// [`SdkTracerProvider::shutdown`] it at exit to send what is batched.
pub fn otlp_provider() -> anyhow::Result<Option<SdkTracerProvider>> {
    let configured = [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|v| std::env::var(v).is_ok_and(|s| !s.trim().is_empty()));
    if !configured {
        return Ok(None);
    }
    let protocol = match std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL").as_deref() {
        Ok("http/json") => Protocol::HttpJson,
        Ok("http/protobuf") | Err(_) => Protocol::HttpBinary,
        Ok(other) => anyhow::bail!(
            "OTEL_EXPORTER_OTLP_PROTOCOL is `{other}`; this build exports `http/protobuf` (the \
             default) or `http/json`"
        ),
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(protocol)
        .build()
        .map_err(|e| anyhow::anyhow!("the OTLP exporter cannot start: {e}"))?;
    let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "eventbus".to_owned());
    Ok(Some(
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(Resource::builder().with_service_name(service).build())
            .build(),
    ))
}

/// The `tracing` layer that turns the bus's spans into OpenTelemetry spans of `provider`.
pub fn layer<S>(provider: &SdkTracerProvider) -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    use tracing_subscriber::Layer as _;
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("eventbus"))
        .with_filter(
            tracing_subscriber::filter::Targets::new()
                .with_target("eventbus", tracing::Level::INFO)
                .with_target("eventbus_server", tracing::Level::INFO),
        )
}
