//! Trace context across the bus (W3C Trace Context, OpenTelemetry).
//!
//! The bus's spans are `tracing` spans: `publish` (the HTTP handler), `store.append` (the
//! append of a publish), `webhook.attempt` (each attempt) and `consumer.deliver` (each message a
//! consumer group hands out). [`continue_trace`] makes one a child of the trace an incoming or
//! stored `traceparent` names, and [`traceparent_of`] gives the `traceparent` to send onwards.
//! Both act through the `tracing-opentelemetry` layer, which the binary installs only when an
//! OTLP endpoint is configured; without it they do nothing (and [`traceparent_of`] answers
//! `None`), so the spans cost what any disabled `tracing` span costs.

use opentelemetry::Context;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The remote parent a W3C `traceparent` (`00-<trace id>-<span id>-<flags>`) names; `None` when
/// it is malformed or names the invalid (all-zero) trace or span.
pub fn parent_context(traceparent: &str) -> Option<Context> {
    let mut parts = traceparent.trim().split('-');
    let version = parts.next()?;
    let (trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?);
    if version.len() != 2 || version == "ff" || (version == "00" && parts.next().is_some()) {
        return None;
    }
    if trace.len() != 32 || span.len() != 16 || flags.len() != 2 {
        return None;
    }
    let trace_id = TraceId::from_hex(trace).ok()?;
    let span_id = SpanId::from_hex(span).ok()?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    if trace_id == TraceId::INVALID || span_id == SpanId::INVALID {
        return None;
    }
    let parent = SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::new(flags),
        true,
        TraceState::default(),
    );
    Some(Context::new().with_remote_span_context(parent))
}

/// Makes `span` a child of the trace `traceparent` names (nothing when it is absent or
/// malformed, or when no OpenTelemetry layer is installed).
pub fn continue_trace(span: &tracing::Span, traceparent: Option<&str>) {
    if let Some(parent) = traceparent.and_then(parent_context) {
        let _ = span.set_parent(parent);
    }
}

/// The `traceparent` naming `span`, to send onwards; `None` without an OpenTelemetry layer.
pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            sc.trace_id(),
            sc.span_id(),
            sc.trace_flags().to_u8()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparents_are_parsed_as_w3c_trace_context_says() {
        let cx = parent_context("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01").unwrap();
        let sc = cx.span().span_context().clone();
        assert_eq!(
            sc.trace_id().to_string(),
            "0af7651916cd43dd8448eb211c80319c"
        );
        assert_eq!(sc.span_id().to_string(), "b7ad6b7169203331");
        assert!(sc.is_sampled() && sc.is_remote());
        for bad in [
            "",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-x",
            "00-xyz7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ] {
            assert!(parent_context(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn without_an_opentelemetry_layer_nothing_is_sent_onwards() {
        let span = tracing::info_span!("publish");
        continue_trace(
            &span,
            Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        );
        assert_eq!(traceparent_of(&span), None);
    }
}
