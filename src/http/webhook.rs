//! `POST /webhooks/terra`: store the verified delivery in the ledger, then acknowledge.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::DateTime;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{AppState, IngestError, RequestStart, VerifiedDelivery};
use crate::db::ledger::{self, NewDelivery, Stored};
use crate::peek::peek;

/// Receives one Terra delivery. Answers 200 only once the delivery is committed to the ledger,
/// whatever its content: Terra retries every non-2xx, so a bad body is stored and judged later.
pub async fn receive(
    State(state): State<AppState>,
    Extension(RequestStart(start)): Extension<RequestStart>,
    delivery: Result<VerifiedDelivery, IngestError>,
) -> Response {
    let delivery = match delivery {
        Ok(delivery) => delivery,
        Err(err) => {
            if let IngestError::Signature(reason) = &err {
                state
                    .metrics
                    .signature_rejections
                    .get_or_create(&crate::metrics::RejectionLabels {
                        reason: reason.reason(),
                    })
                    .inc();
            }
            tracing::warn!(
                outcome = err.outcome(),
                reason = %err,
                latency_ms = start.elapsed().as_millis() as u64,
                "delivery rejected"
            );
            return err.into_response();
        }
    };

    let first_look = peek(&delivery.body);
    let sha = Sha256::digest(&delivery.body);
    let dedupe_key = ledger::dedupe_key(delivery.trace_id.as_deref(), &sha);
    let row = NewDelivery {
        dedupe_key: &dedupe_key,
        source: "webhook",
        signed_at: DateTime::from_timestamp(delivery.signed_at, 0),
        event_type: first_look.event_type.as_deref(),
        user_id: first_look.user_id.as_deref(),
        trace_id: delivery.trace_id.as_deref(),
        terra_reference: delivery.terra_reference.as_deref(),
        ordering_ts: delivery.ordering_ts,
        body: &delivery.body,
        body_sha256: &sha,
        shape: first_look.shape.label(),
        shape_error: first_look.shape.error(),
        parent_id: None,
    };
    let result = tokio::time::timeout(
        state.ingest.persist_timeout,
        ledger::insert(&state.pool, &row),
    )
    .await;

    let event_type = first_look.event_type.as_deref();
    let stored = match result {
        Ok(Ok(stored)) => stored,
        Ok(Err(err)) => return unavailable(&state, &delivery, event_type, start, &err),
        Err(_) => return unavailable(&state, &delivery, event_type, start, &"timed out"),
    };

    let outcome = match stored {
        Stored::New(_) => {
            state.wake.notify_one();
            "stored"
        }
        Stored::Duplicate(_) => {
            state.metrics.duplicates.inc();
            "duplicate"
        }
    };
    state.metrics.delivery(event_type, outcome);
    state.metrics.body_bytes.observe(delivery.body.len() as f64);
    tracing::info!(
        outcome,
        delivery_id = stored.id(),
        event_type,
        user_id = first_look.user_id.as_deref(),
        trace_id = delivery.trace_id.as_deref(),
        shape = first_look.shape.label(),
        bytes = delivery.body.len(),
        latency_ms = start.elapsed().as_millis() as u64,
        "delivery"
    );
    Json(json!({ "status": outcome, "delivery_id": stored.id() })).into_response()
}

fn unavailable(
    state: &AppState,
    delivery: &VerifiedDelivery,
    event_type: Option<&str>,
    start: std::time::Instant,
    cause: &dyn std::fmt::Display,
) -> Response {
    state.metrics.delivery(event_type, "persist_failed");
    tracing::error!(
        outcome = "persist_failed",
        event_type,
        trace_id = delivery.trace_id.as_deref(),
        bytes = delivery.body.len(),
        latency_ms = start.elapsed().as_millis() as u64,
        error = %cause,
        "delivery not stored; answering 503 so Terra retries"
    );
    IngestError::Unavailable.into_response()
}
