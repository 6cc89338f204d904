//! Liveness, readiness, metrics and the 404 answer.

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;

use super::AppState;
use crate::db::connect::{self, Target};
use crate::{db, ledger};

/// How long readiness waits for the database.
const READY_TIMEOUT: Duration = Duration::from_secs(1);

/// `GET /healthz`: the process is up.
pub async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`: the database answers and every migration is applied. Otherwise 503 with what
/// failed, where (host and port, never the password) and why.
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let (reason, error) = match tokio::time::timeout(READY_TIMEOUT, db::is_ready(&state.pool)).await
    {
        Ok(Ok(true)) => return (StatusCode::OK, Json(json!({ "status": "ready" }))),
        Ok(Ok(false)) => ("migrations not applied", None),
        Ok(Err(err)) => match diagnose(&state).await {
            Some(cause) => ("database unreachable", Some(cause)),
            None => ("database error", Some(err.to_string())),
        },
        Err(_) => match diagnose(&state).await {
            Some(cause) => ("database unreachable", Some(cause)),
            None => ("database did not answer in time", None),
        },
    };
    let target = Target::of(&state.pool.connect_options()).to_string();
    let mut body = json!({ "status": "not_ready", "reason": reason, "database": target });
    if let Some(error) = error {
        body["error"] = json!(error);
    }
    (StatusCode::SERVICE_UNAVAILABLE, Json(body))
}

/// Why the database cannot be reached, if it cannot (one direct connection attempt).
async fn diagnose(state: &AppState) -> Option<String> {
    connect::probe(&state.pool.connect_options(), READY_TIMEOUT)
        .await
        .err()
        .map(|e| e.to_string())
}

/// `GET /metrics`: Prometheus text format. The backlog gauges are read from the ledger here (if
/// the database does not answer quickly they keep their last value), the pool gauges from the
/// pools.
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    if let Ok(Ok(backlog)) = tokio::time::timeout(READY_TIMEOUT, ledger::backlog(&state.pool)).await
    {
        state.metrics.set_backlog(&backlog);
    }
    state.metrics.set_pool(&state.pool);
    if let Some(pool) = state.processing_pool.get() {
        state.metrics.set_processing_pool(pool);
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

/// Any path we do not serve.
pub async fn not_found() -> impl IntoResponse {
    (
        StatusCode::NOT_FOUND,
        Json(json!({ "error": "not_found", "message": "no such endpoint" })),
    )
}
