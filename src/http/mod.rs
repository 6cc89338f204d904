//! HTTP in: the router, the webhook endpoint and the health and metrics endpoints.

mod error;
mod health;
mod verified;
mod webhook;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use sqlx::PgPool;
use tower_http::catch_panic::CatchPanicLayer;
use tracing::Instrument;

pub use error::IngestError;
pub use verified::VerifiedDelivery;

use crate::metrics::{Metrics, RequestLabels};
use crate::signature::Verifier;

/// Limits applied to each delivery.
#[derive(Debug, Clone)]
pub struct IngestLimits {
    /// Largest accepted body in bytes.
    pub max_body_bytes: usize,
    /// Body bytes that may be held in memory at once, in KiB permits (see `VerifiedDelivery`).
    pub body_budget: Arc<tokio::sync::Semaphore>,
    /// Time a client gets to send the whole body.
    pub body_read_timeout: Duration,
}

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The database pool.
    pub pool: PgPool,
    /// Checks signatures against the configured secrets.
    pub verifier: Arc<Verifier>,
    /// Per-delivery limits.
    pub ingest: Arc<IngestLimits>,
    /// The service's metrics.
    pub metrics: Arc<Metrics>,
    /// Writes deliveries to the ledger, many per commit.
    pub ledger: crate::ledger::GroupCommit,
    /// The workers' own pool, once they run (for the metrics).
    pub processing_pool: Arc<std::sync::OnceLock<PgPool>>,
}

/// The main router: the webhook path, `/healthz`, `/readyz` and, unless served elsewhere,
/// `/metrics`. Unknown paths get 404, other methods 405.
pub fn router(state: AppState, webhook_path: &str, with_metrics: bool) -> Router {
    let mut router = Router::new()
        .route(webhook_path, post(webhook::receive))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz));
    if with_metrics {
        router = router.merge(metrics_router());
    }
    router
        .fallback(health::not_found)
        .layer(middleware::from_fn_with_state(
            state.metrics.clone(),
            record_latency,
        ))
        .layer(middleware::from_fn(trace_request))
        .layer(CatchPanicLayer::new())
        .with_state(state)
}

/// A router serving only `/metrics` (for a separate metrics port).
pub fn metrics_router() -> Router<AppState> {
    Router::new().route("/metrics", get(health::metrics))
}

/// Longest trace id put on a span; longer header values are cut (they are not Terra's).
const MAX_TRACE_ID_LEN: usize = 128;

/// Runs each request inside a `request` span carrying Terra's trace id, so every log line of a
/// delivery (and, with OTLP export, its span) can be found by that id.
async fn trace_request(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str());
    let span = tracing::info_span!(
        "request",
        method = %req.method(),
        route,
        trace_id = tracing::field::Empty,
        status = tracing::field::Empty,
    );
    if let Some(trace_id) = req
        .headers()
        .get("x-terra-trace-id")
        .and_then(|v| v.to_str().ok())
    {
        let end = trace_id
            .char_indices()
            .nth(MAX_TRACE_ID_LEN)
            .map_or(trace_id.len(), |(i, _)| i);
        span.record("trace_id", &trace_id[..end]);
    }
    let response = next.run(req).instrument(span.clone()).await;
    span.record("status", response.status().as_u16());
    response
}

/// When a request started, for the per-delivery log line.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestStart(pub Instant);

async fn record_latency(
    State(metrics): State<Arc<Metrics>>,
    mut req: Request,
    next: Next,
) -> Response {
    let start = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    req.extensions_mut().insert(RequestStart(start));
    let response = next.run(req).await;
    metrics
        .request_duration
        .get_or_create(&RequestLabels {
            route,
            status: response.status().as_u16(),
        })
        .observe(start.elapsed().as_secs_f64());
    response
}
