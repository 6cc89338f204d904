//! Prometheus metrics, one registry per running service (no globals, so tests stay isolated).

use prometheus_client::encoding::{text::encode, EncodeLabelSet};
use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::model::EVENT_TYPES;

/// Labels of a delivery outcome.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabels {
    /// Event type, or `other` for types Terra does not document, `none` when unreadable.
    pub event_type: String,
    /// `stored`, `duplicate` or `persist_failed`.
    pub outcome: &'static str,
}

/// Labels of a processing outcome.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProcessedLabels {
    /// `done`, `failed` (will retry) or `parked` (needs attention).
    pub outcome: &'static str,
}

/// Labels of the backlog gauge.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BacklogLabels {
    /// `pending` (never attempted) or `failed` (waiting for a retry).
    pub state: &'static str,
}

/// Labels of a signature rejection.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectionLabels {
    /// Why the signature check failed.
    pub reason: &'static str,
}

/// Labels of an HTTP request.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The matched route, or `unmatched`.
    pub route: String,
    /// HTTP status code.
    pub status: u16,
}

/// Histogram buckets for request latency.
#[derive(Debug, Clone)]
pub struct LatencyBuckets;

impl MetricConstructor<Histogram> for LatencyBuckets {
    fn new_metric(&self) -> Histogram {
        // 0.5 ms .. ~8 s.
        Histogram::new(exponential_buckets(0.0005, 2.0, 15))
    }
}

/// Every metric the service exports.
pub struct Metrics {
    registry: Registry,
    /// Deliveries by event type and outcome.
    pub deliveries: Family<DeliveryLabels, Counter>,
    /// Signature rejections by reason.
    pub signature_rejections: Family<RejectionLabels, Counter>,
    /// Redeliveries of a delivery already in the ledger.
    pub duplicates: Counter,
    /// Size of accepted delivery bodies.
    pub body_bytes: Histogram,
    /// Request latency by route and status.
    pub request_duration: Family<RequestLabels, Histogram, LatencyBuckets>,
    /// Deliveries processed into typed rows, by outcome.
    pub processed: Family<ProcessedLabels, Counter>,
    /// Ping-mode downloads, by outcome.
    pub downloads: Family<ProcessedLabels, Counter>,
    /// Deliveries waiting to be processed, by state (`pending`, `failed`), read at scrape time.
    pub backlog: Family<BacklogLabels, Gauge>,
    /// Age of the oldest delivery waiting to be processed, read at scrape time.
    pub backlog_oldest_age: Gauge<f64, AtomicU64>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric under the `terra_sink` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("terra_sink");
        let deliveries = Family::<DeliveryLabels, Counter>::default();
        registry.register(
            "deliveries",
            "Authenticated deliveries by event type and outcome",
            deliveries.clone(),
        );
        let signature_rejections = Family::<RejectionLabels, Counter>::default();
        registry.register(
            "signature_rejections",
            "Deliveries rejected by the signature check, by reason",
            signature_rejections.clone(),
        );
        let duplicates = Counter::default();
        registry.register(
            "duplicate_deliveries",
            "Redeliveries of a delivery already in the ledger",
            duplicates.clone(),
        );
        // 256 B .. 64 MiB.
        let body_bytes = Histogram::new(exponential_buckets(256.0, 4.0, 10));
        registry.register(
            "delivery_body_bytes",
            "Size of authenticated delivery bodies in bytes",
            body_bytes.clone(),
        );
        let request_duration = Family::new_with_constructor(LatencyBuckets);
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route and status",
            request_duration.clone(),
        );
        let processed = Family::<ProcessedLabels, Counter>::default();
        registry.register(
            "deliveries_processed",
            "Ledger deliveries processed into typed rows, by outcome (parked ones need attention)",
            processed.clone(),
        );
        let downloads = Family::<ProcessedLabels, Counter>::default();
        registry.register(
            "s3_downloads",
            "Ping-mode (s3_payload) downloads by outcome: ok, timeout, too_large, status, transport, refused",
            downloads.clone(),
        );
        let backlog = Family::<BacklogLabels, Gauge>::default();
        registry.register(
            "backlog",
            "Deliveries waiting to be processed into typed rows, by state (read at scrape time)",
            backlog.clone(),
        );
        let backlog_oldest_age = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "backlog_oldest_age_seconds",
            "Age of the oldest delivery waiting to be processed (read at scrape time)",
            backlog_oldest_age.clone(),
        );
        Self {
            registry,
            processed,
            downloads,
            backlog,
            backlog_oldest_age,
            deliveries,
            signature_rejections,
            duplicates,
            body_bytes,
            request_duration,
        }
    }

    /// Counts one delivery outcome; undocumented types share one label to bound cardinality.
    pub fn delivery(&self, event_type: Option<&str>, outcome: &'static str) {
        let event_type = match event_type {
            Some(t) if EVENT_TYPES.contains(&t) => t.to_owned(),
            Some(_) => "other".to_owned(),
            None => "none".to_owned(),
        };
        self.deliveries
            .get_or_create(&DeliveryLabels {
                event_type,
                outcome,
            })
            .inc();
    }

    /// Counts one processed delivery.
    pub fn processed(&self, outcome: &'static str) {
        self.processed
            .get_or_create(&ProcessedLabels { outcome })
            .inc();
    }

    /// Counts one ping-mode download attempt.
    pub fn download(&self, outcome: &'static str) {
        self.downloads
            .get_or_create(&ProcessedLabels { outcome })
            .inc();
    }

    /// Records the backlog read from the ledger.
    pub fn set_backlog(&self, backlog: &crate::ledger::Backlog) {
        self.backlog
            .get_or_create(&BacklogLabels { state: "pending" })
            .set(backlog.pending);
        self.backlog
            .get_or_create(&BacklogLabels { state: "failed" })
            .set(backlog.failed);
        self.backlog_oldest_age.set(backlog.oldest_age_secs);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
