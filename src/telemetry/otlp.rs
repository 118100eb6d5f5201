//! A tracing layer that exports finished spans over OTLP/HTTP in its JSON encoding: each
//! span gets the trace id of its root (or of the `traceparent` field it was made with, for
//! a request from another node) and its parent's span id; a thread of its own sends them
//! in batches, and a full queue drops spans, never the node's work.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::Subscriber;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// Spans waiting for the exporter at most; more are dropped.
const QUEUE: usize = 8_192;
/// Spans sent in one request at most.
const BATCH: usize = 512;
/// Longest a finished span waits before it is sent.
const LINGER: Duration = Duration::from_secs(1);
/// The exporter thread's name; spans made on it are not exported (no feedback loop).
const THREAD: &str = "otlp-exporter";
/// Field whose value, a W3C `traceparent`, makes a span the child of a remote one.
pub const TRACEPARENT: &str = "traceparent";

/// The ids and times of a span, kept in its extensions.
#[derive(Debug, Clone, Copy)]
pub struct SpanIds {
    /// the trace it belongs to
    pub trace: u128,
    /// its own id
    pub span: u64,
    /// its parent's id (0: a root)
    pub parent: u64,
    start: u64,
}

impl SpanIds {
    /// The span as a W3C `traceparent` header value (sampled).
    pub fn traceparent(&self) -> String {
        format!("00-{:032x}-{:016x}-01", self.trace, self.span)
    }
}

/// Reads a W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`): the trace and parent span.
pub fn parse_traceparent(text: &str) -> Option<(u128, u64)> {
    let mut parts = text.trim().split('-');
    let (version, trace, span, _flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if version != "00" || trace.len() != 32 || span.len() != 16 || parts.next().is_some() {
        return None;
    }
    let trace = u128::from_str_radix(trace, 16).ok()?;
    let span = u64::from_str_radix(span, 16).ok()?;
    (trace != 0 && span != 0).then_some((trace, span))
}

/// A span's fields as OTLP attributes.
#[derive(Default)]
struct Fields(Vec<(String, String)>, Option<String>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.to_string());
    }
}

impl Fields {
    fn put(&mut self, field: &Field, value: String) {
        if field.name() == TRACEPARENT {
            self.1 = Some(value);
            return;
        }
        match self.0.iter_mut().find(|(k, _)| k == field.name()) {
            Some(slot) => slot.1 = value,
            None => self.0.push((field.name().to_string(), value)),
        }
    }
}

/// A finished span, as it is sent.
struct Finished {
    ids: SpanIds,
    name: &'static str,
    end: u64,
    fields: Vec<(String, String)>,
}

/// The layer that records spans for export.
pub struct OtlpLayer {
    queue: SyncSender<Finished>,
    dropped: Arc<AtomicU64>,
    next: AtomicU64,
}

/// The exporter's end: stops and flushes when dropped.
pub struct OtlpExporter {
    thread: Option<std::thread::JoinHandle<()>>,
    stop: Option<SyncSender<Finished>>,
}

impl Drop for OtlpExporter {
    fn drop(&mut self) {
        // the layer keeps its own sender: the exporter stops at the marker span below
        if let Some(stop) = self.stop.take() {
            let _ = stop.try_send(Finished {
                ids: SpanIds {
                    trace: 0,
                    span: 0,
                    parent: 0,
                    start: 0,
                },
                name: "",
                end: 0,
                fields: Vec::new(),
            });
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Nanoseconds since the Unix epoch.
fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// A random-enough 64-bit value: the clock, a counter and the process id, mixed.
fn random(counter: &AtomicU64) -> u64 {
    let mut x = now_nanos()
        ^ counter.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
        ^ (u64::from(std::process::id()) << 32);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (x ^ (x >> 31)) | 1
}

impl OtlpLayer {
    /// A layer sending to `<endpoint>/v1/traces` as `service`, and its exporter thread.
    pub fn new(
        endpoint: &str,
        service: &str,
        timeout: Duration,
    ) -> std::io::Result<(OtlpLayer, OtlpExporter)> {
        let (queue, spans) = sync_channel(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
        let service = service.to_string();
        let lost = Arc::clone(&dropped);
        let thread = std::thread::Builder::new()
            .name(THREAD.to_string())
            .spawn(move || export(spans, &url, &service, timeout, &lost))?;
        Ok((
            OtlpLayer {
                queue: queue.clone(),
                dropped,
                next: AtomicU64::new(1),
            },
            OtlpExporter {
                thread: Some(thread),
                stop: Some(queue),
            },
        ))
    }
}

impl<S> Layer<S> for OtlpLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if std::thread::current().name() == Some(THREAD) {
            return;
        }
        let Some(span) = ctx.span(id) else { return };
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        let parent = span
            .parent()
            .and_then(|p| p.extensions().get::<SpanIds>().copied());
        let remote = fields.1.as_deref().and_then(parse_traceparent);
        let (trace, parent) = match (remote, parent) {
            (Some((trace, parent)), _) => (trace, parent),
            (None, Some(p)) => (p.trace, p.span),
            (None, None) => (
                (u128::from(random(&self.next)) << 64) | u128::from(random(&self.next)),
                0,
            ),
        };
        let ids = SpanIds {
            trace,
            span: random(&self.next),
            parent,
            start: now_nanos(),
        };
        let mut ext = span.extensions_mut();
        ext.insert(ids);
        ext.insert(fields);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            if let Some(fields) = span.extensions_mut().get_mut::<Fields>() {
                values.record(fields);
            }
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let mut ext = span.extensions_mut();
        let Some(ids) = ext.get_mut::<SpanIds>().map(|ids| *ids) else {
            return;
        };
        let fields = ext.remove::<Fields>().map(|f| f.0).unwrap_or_default();
        let finished = Finished {
            ids,
            name: span.name(),
            end: now_nanos(),
            fields,
        };
        match self.queue.try_send(finished) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The exporter thread: batches spans and posts them until the stop marker comes.
fn export(
    spans: Receiver<Finished>,
    url: &str,
    service: &str,
    timeout: Duration,
    lost: &AtomicU64,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "otlp exporter cannot start; no spans are exported");
            return;
        }
    };
    crate::storage::objects::install_crypto_provider();
    let client = match reqwest::Client::builder().timeout(timeout).build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "otlp exporter cannot make an http client; no spans are exported");
            return;
        }
    };
    let mut batch: Vec<Finished> = Vec::with_capacity(BATCH);
    let mut reported_lost = 0;
    let mut failing = false;
    loop {
        let (stop, timed_out) = match spans.recv_timeout(LINGER) {
            Ok(f) if f.ids.span == 0 => (true, false),
            Ok(f) => {
                batch.push(f);
                (false, false)
            }
            Err(RecvTimeoutError::Timeout) => (false, true),
            Err(RecvTimeoutError::Disconnected) => (true, false),
        };
        if !batch.is_empty() && (stop || timed_out || batch.len() >= BATCH) {
            let body = encode(&batch, service);
            batch.clear();
            let sent = runtime.block_on(async {
                client
                    .post(url)
                    .header("content-type", "application/json")
                    .body(body.to_string())
                    .send()
                    .await
                    .and_then(|r| r.error_for_status())
            });
            match sent {
                Ok(_) if failing => {
                    failing = false;
                    tracing::info!(url, "otlp collector takes spans again");
                }
                Ok(_) => {}
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(url, error = %e, "otlp collector refused spans; they are dropped until it answers");
                }
                Err(_) => {}
            }
        }
        let now_lost = lost.load(Ordering::Relaxed);
        if now_lost > reported_lost {
            tracing::warn!(
                dropped = now_lost - reported_lost,
                "otlp span queue full; spans dropped"
            );
            reported_lost = now_lost;
        }
        if stop {
            return;
        }
    }
}

/// Spans in OTLP's JSON encoding (ids as hex, times as decimal strings).
fn encode(spans: &[Finished], service: &str) -> Value {
    let spans: Vec<Value> = spans
        .iter()
        .map(|s| {
            let mut span = json!({
                "traceId": format!("{:032x}", s.ids.trace),
                "spanId": format!("{:016x}", s.ids.span),
                "name": s.name,
                "kind": 1,
                "startTimeUnixNano": s.ids.start.to_string(),
                "endTimeUnixNano": s.end.to_string(),
                "attributes": s.fields.iter().map(|(k, v)| json!({
                    "key": k,
                    "value": {"stringValue": v},
                })).collect::<Vec<_>>(),
            });
            if s.ids.parent != 0 {
                span["parentSpanId"] = json!(format!("{:016x}", s.ids.parent));
            }
            span
        })
        .collect();
    json!({"resourceSpans": [{
        "resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": service}},
        ]},
        "scopeSpans": [{
            "scope": {"name": "akosha", "version": env!("CARGO_PKG_VERSION")},
            "spans": spans,
        }],
    }]})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparents_read_back_and_bad_ones_are_refused() {
        let ids = SpanIds {
            trace: 0xabc,
            span: 0x12,
            parent: 0,
            start: 0,
        };
        assert_eq!(parse_traceparent(&ids.traceparent()), Some((0xabc, 0x12)));
        for bad in [
            "",
            "01-00000000000000000000000000000abc-0000000000000012-01",
            "00-abc-12-01",
            "00-00000000000000000000000000000000-0000000000000012-01",
            "00-0000000000000000000000000000zabc-0000000000000012-01",
        ] {
            assert_eq!(parse_traceparent(bad), None, "{bad}");
        }
    }
}
