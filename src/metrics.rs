//! Prometheus metrics, one registry per running service (no globals, so tests stay isolated).

use prometheus_client::encoding::{text::encode, EncodeLabelSet};
use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Metric, Registry};
use std::time::Duration;

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

/// Labels of the build information.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    /// The crate version of the running binary.
    pub version: &'static str,
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
    /// The request path's database pool, read at scrape time.
    pub pool: PoolGauges,
    /// The workers' own database pool, read at scrape time.
    pub processing_pool: PoolGauges,
    /// Seconds to process one batch of deliveries (see [`Metrics::observe_processing`]).
    pub processing_duration: Histogram,
    /// Seconds from a delivery's acknowledgement to its typed rows being committed.
    pub ack_to_typed_lag: Histogram,
    /// Deliveries per processing batch.
    pub processing_batch_size: Histogram,
    /// Deliveries per ledger group commit.
    pub ledger_commit_size: Histogram,
    /// Seconds workers deferred batches while the ledger writer was busy.
    pub yielded_to_ingest: Counter<f64, AtomicU64>,
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

/// Registers `metric` under `name` and hands it back (the registry keeps a handle).
fn registered<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M {
    registry.register(name, help, metric.clone());
    metric
}

/// Open, idle and largest number of connections of one database pool.
#[derive(Debug, Default)]
pub struct PoolGauges {
    /// Open connections.
    pub connections: Gauge,
    /// Open connections not in use (in use = open - idle).
    pub idle_connections: Gauge,
    /// The pool's configured maximum.
    pub max_connections: Gauge,
}

impl PoolGauges {
    /// Registers `<prefix>_connections`, `<prefix>_idle_connections` and
    /// `<prefix>_max_connections` for `what`, whose maximum is set by `max_setting`.
    fn registered(r: &mut Registry, prefix: &str, what: &str, max_setting: &str) -> Self {
        Self {
            connections: registered(r, &format!("{prefix}_connections"), &format!("Open connections in {what} (read at scrape time)"), Gauge::default()),
            idle_connections: registered(r, &format!("{prefix}_idle_connections"), &format!("Open connections of {what} not in use (read at scrape time); in use = open - idle"), Gauge::default()),
            max_connections: registered(r, &format!("{prefix}_max_connections"), &format!("Largest number of connections {what} opens ({max_setting})"), Gauge::default()),
        }
    }

    fn set(&self, pool: &sqlx::PgPool) {
        self.connections.set(i64::from(pool.size()));
        self.idle_connections
            .set(i64::try_from(pool.num_idle()).unwrap_or(i64::MAX));
        self.max_connections
            .set(i64::from(pool.options().get_max_connections()));
    }
}

impl Metrics {
    /// Creates and registers every metric under the `terra_sink` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("terra_sink");
        let r = &mut registry;
        let metrics = Self {
            deliveries: registered(r, "deliveries", "Authenticated deliveries by event type and outcome", Family::<DeliveryLabels, Counter>::default()),
            signature_rejections: registered(r, "signature_rejections", "Deliveries rejected by the signature check, by reason", Family::<RejectionLabels, Counter>::default()),
            duplicates: registered(r, "duplicate_deliveries", "Redeliveries of a delivery already in the ledger", Counter::default()),
            // 256 B .. 64 MiB.
            body_bytes: registered(r, "delivery_body_bytes", "Size of authenticated delivery bodies in bytes", Histogram::new(exponential_buckets(256.0, 4.0, 10))),
            request_duration: registered(r, "http_request_duration_seconds", "HTTP request latency by route and status", Family::new_with_constructor(LatencyBuckets)),
            processed: registered(r, "deliveries_processed", "Ledger deliveries processed into typed rows, by outcome (parked ones need attention)", Family::<ProcessedLabels, Counter>::default()),
            downloads: registered(r, "s3_downloads", "Ping-mode (s3_payload) downloads by outcome: ok, timeout, too_large, status, transport, refused", Family::<ProcessedLabels, Counter>::default()),
            backlog: registered(r, "backlog", "Deliveries waiting to be processed into typed rows, by state (read at scrape time)", Family::<BacklogLabels, Gauge>::default()),
            backlog_oldest_age: registered(r, "backlog_oldest_age_seconds", "Age of the oldest delivery waiting to be processed (read at scrape time)", Gauge::<f64, AtomicU64>::default()),
            pool: PoolGauges::registered(r, "db_pool", "the database pool", "TERRA_SINK_DB_MAX_CONNECTIONS"),
            processing_pool: PoolGauges::registered(r, "db_processing_pool", "the workers' own database pool", "TERRA_SINK_WORKERS + 1"),
            // 1 ms .. ~65 s.
            processing_duration: registered(r, "processing_duration_seconds", "Time to process one batch of ledger deliveries into typed rows, commit included", Histogram::new(exponential_buckets(0.001, 2.0, 17))),
            // 10 ms .. ~23 h: a backlog can take hours to drain.
            ack_to_typed_lag: registered(r, "ack_to_typed_lag_seconds", "Time from a delivery's acknowledgement (received_at) to its typed rows being committed (done)", Histogram::new(exponential_buckets(0.01, 3.0, 16))),
            // 1 .. 4096 deliveries.
            processing_batch_size: registered(r, "processing_batch_deliveries", "Deliveries processed together in one batch", Histogram::new(exponential_buckets(1.0, 2.0, 13))),
            ledger_commit_size: registered(r, "ledger_commit_deliveries", "Deliveries written to the ledger in one group commit", Histogram::new(exponential_buckets(1.0, 2.0, 13))),
            yielded_to_ingest: registered(r, "worker_yielded_to_ingest_seconds", "Time workers deferred processing while the ledger writer was busy acknowledging deliveries", Counter::default()),
            registry: Registry::default(),
        };
        r.register(
            "build",
            "The running binary's version (always 1)",
            Info::new(BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            }),
        );
        Self {
            registry,
            ..metrics
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

    /// Records the database pool's state (call at scrape time).
    pub fn set_pool(&self, pool: &sqlx::PgPool) {
        self.pool.set(pool);
    }

    /// Records the state of the workers' own pool (call at scrape time).
    pub fn set_processing_pool(&self, pool: &sqlx::PgPool) {
        self.processing_pool.set(pool);
    }

    /// Records how long one processing batch took, from claim to commit.
    pub fn observe_processing(&self, took: Duration) {
        self.processing_duration.observe(took.as_secs_f64());
    }

    /// Records the lag of one delivery whose typed rows were committed: from `received_at`
    /// (its acknowledgement) to `done_at` (e.g. `Utc::now()` right after the commit). A clock
    /// step backwards counts as 0.
    pub fn observe_ack_to_typed(
        &self,
        received_at: chrono::DateTime<chrono::Utc>,
        done_at: chrono::DateTime<chrono::Utc>,
    ) {
        let lag = (done_at - received_at).to_std().unwrap_or_default();
        self.ack_to_typed_lag.observe(lag.as_secs_f64());
    }

    /// Records how many deliveries one processing batch held.
    pub fn observe_batch_size(&self, deliveries: usize) {
        self.processing_batch_size.observe(deliveries as f64);
    }

    /// Records how many deliveries one ledger group commit wrote.
    pub fn observe_ledger_commit(&self, deliveries: usize) {
        self.ledger_commit_size.observe(deliveries as f64);
    }

    /// Time a worker deferred a batch while the ledger writer was busy.
    pub fn yielded_to_ingest(&self, took: Duration) {
        if !took.is_zero() {
            self.yielded_to_ingest.inc_by(took.as_secs_f64());
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_new_metrics_are_exposed_with_prometheus_names() {
        let metrics = Metrics::new();
        metrics.observe_processing(Duration::from_millis(30));
        let done = chrono::Utc::now();
        metrics.observe_ack_to_typed(done - chrono::Duration::milliseconds(2500), done);
        metrics.observe_ack_to_typed(done, done - chrono::Duration::seconds(1));
        metrics.observe_batch_size(64);
        metrics.observe_ledger_commit(8);
        let text = metrics.render();
        let version = env!("CARGO_PKG_VERSION");
        assert!(
            text.contains(&format!("terra_sink_build_info{{version=\"{version}\"}} 1")),
            "{text}"
        );
        for (name, sum) in [
            ("terra_sink_processing_duration_seconds", 0.03),
            ("terra_sink_processing_batch_deliveries", 64.0),
            ("terra_sink_ledger_commit_deliveries", 8.0),
        ] {
            assert!(
                text.contains(&format!("# TYPE {name} histogram")),
                "{name}: {text}"
            );
            assert!(text.contains(&format!("{name}_count 1")), "{name}: {text}");
            assert!(
                text.contains(&format!("{name}_sum {sum}")),
                "{name}: {text}"
            );
        }
        assert!(
            text.contains("terra_sink_ack_to_typed_lag_seconds_sum 2.5"),
            "a backwards clock adds 0: {text}"
        );
        assert!(
            text.contains("terra_sink_ack_to_typed_lag_seconds_count 2"),
            "{text}"
        );
    }
}
