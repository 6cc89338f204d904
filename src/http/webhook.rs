//! `POST /webhooks/terra`: store the verified delivery in the ledger, then acknowledge.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::json;

use super::{AppState, IngestError, RequestStart, VerifiedDelivery};
use crate::ledger::{Arrival, LedgerError, NewDelivery, Stored, LARGE_BODY_BYTES};

/// Receives one Terra delivery. Answers 200 only once the delivery is committed to the ledger,
/// whatever its content: Terra retries every non-2xx, so a bad body is stored and judged later.
pub async fn receive(
    State(state): State<AppState>,
    Extension(RequestStart(start)): Extension<RequestStart>,
    delivery: Result<VerifiedDelivery, IngestError>,
) -> Response {
    let delivery = match delivery {
        Ok(delivery) => delivery,
        Err(err) => return rejected(&state, err, start),
    };
    let row = match ledger_row(&delivery).await {
        Ok(row) => row,
        Err(err) => return rejected(&state, err, start),
    };
    let event_type = row.event_type.clone();
    let user_id = row.user_id.clone();
    let shape = row.shape;
    let stored = match state.ledger.write(row).await {
        Ok(stored) => stored,
        Err(err) => return unavailable(&state, &delivery, event_type.as_deref(), start, &err),
    };
    let outcome = match stored {
        Stored::New(_) => "stored",
        Stored::Duplicate(_) => {
            state.metrics.duplicates.inc();
            "duplicate"
        }
    };
    state.metrics.delivery(event_type.as_deref(), outcome);
    state.metrics.body_bytes.observe(delivery.body.len() as f64);
    tracing::info!(
        outcome,
        delivery_id = stored.id(),
        event_type = event_type.as_deref(),
        user_id = user_id.as_deref(),
        trace_id = delivery.trace_id.as_deref(),
        shape,
        bytes = delivery.body.len(),
        latency_ms = start.elapsed().as_millis() as u64,
        "delivery"
    );
    Json(json!({ "status": outcome, "delivery_id": stored.id() })).into_response()
}

/// The delivery's ledger row. A large body's is built on the blocking pool, where its
/// milliseconds of reading hold up no other request; should that panic, the answer is a `503`.
async fn ledger_row(delivery: &VerifiedDelivery) -> Result<NewDelivery, IngestError> {
    let body = delivery.body.clone();
    let arrival = Arrival::Webhook {
        signed_at: delivery.signed_at,
        trace_id: delivery.trace_id.clone(),
        terra_reference: delivery.terra_reference.clone(),
        ordering_ts: delivery.ordering_ts,
    };
    if body.len() < LARGE_BODY_BYTES {
        return Ok(NewDelivery::new(body, arrival));
    }
    tokio::task::spawn_blocking(move || NewDelivery::new(body, arrival))
        .await
        .map_err(|_| IngestError::Unavailable)
}

fn rejected(state: &AppState, err: IngestError, start: std::time::Instant) -> Response {
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
    err.into_response()
}

fn unavailable(
    state: &AppState,
    delivery: &VerifiedDelivery,
    event_type: Option<&str>,
    start: std::time::Instant,
    cause: &LedgerError,
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
