//! Traces: the spans the node makes, exported over OTLP when configured ([`otlp`]), and the
//! `traceparent` that carries a trace to another node.

pub mod otlp;

use tracing_subscriber::registry::LookupSpan;

pub use otlp::{OtlpExporter, OtlpLayer, TRACEPARENT};

/// The current span as a W3C `traceparent`, when spans are being exported; a request to
/// another node carries it so that the other node's spans join the same trace.
pub fn traceparent() -> Option<String> {
    tracing::Span::current()
        .with_subscriber(|(id, dispatch)| {
            let registry = dispatch.downcast_ref::<tracing_subscriber::Registry>()?;
            let span = registry.span(id)?;
            let ids = span.extensions().get::<otlp::SpanIds>().copied();
            ids.map(|ids| ids.traceparent())
        })
        .flatten()
}
