//! The one place where errors become HTTP answers.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::signature::SignatureError;

/// Everything that can stop a delivery from being acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The signature check failed: 401, nothing stored.
    #[error(transparent)]
    Signature(#[from] SignatureError),
    /// The body is larger than the configured limit: 413.
    #[error("request body exceeds the limit of {limit} bytes")]
    BodyTooLarge {
        /// The configured limit in bytes.
        limit: usize,
    },
    /// The client did not send the whole body in time: 408.
    #[error("request body was not received within {0} s")]
    BodyReadTimeout(u64),
    /// The connection failed while the body was read: 400.
    #[error("could not read the request body")]
    BodyRead,
    /// Too many bodies are being received at once: 503 so that Terra retries.
    #[error("too many deliveries in flight; retry later")]
    Busy,
    /// The ledger could not be written: 503 so that Terra retries.
    #[error("delivery could not be stored; retry later")]
    Unavailable,
}

impl IngestError {
    /// The label used in logs and metrics.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Signature(_) => "rejected_signature",
            Self::BodyTooLarge { .. } => "rejected_too_large",
            Self::BodyReadTimeout(_) => "rejected_read_timeout",
            Self::BodyRead => "rejected_body_read",
            Self::Busy => "rejected_busy",
            Self::Unavailable => "persist_failed",
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            Self::Signature(_) => StatusCode::UNAUTHORIZED,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyReadTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::BodyRead => StatusCode::BAD_REQUEST,
            Self::Busy | Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// Seconds Terra is asked to wait before retrying after a 503.
const RETRY_AFTER_SECS: &str = "5";

impl IntoResponse for IngestError {
    fn into_response(self) -> Response {
        let reason = match &self {
            Self::Signature(e) => e.reason(),
            other => other.outcome(),
        };
        let body = Json(json!({ "error": reason, "message": self.to_string() }));
        let mut response = (self.status(), body).into_response();
        if matches!(self, Self::Busy | Self::Unavailable) {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECS),
            );
        }
        response
    }
}
