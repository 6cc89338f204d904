//! The `VerifiedDelivery` extractor: reads the raw body and checks Terra's signature over it.
//!
//! Handlers that take a `VerifiedDelivery` cannot see a body whose signature did not verify.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request};
use axum::http::HeaderMap;
use http_body_util::BodyExt;
use tokio::sync::OwnedSemaphorePermit;

use super::error::IngestError;
use super::AppState;
use crate::signature::{BodyCheck, SignatureError, SignatureHeader};

/// Header names Terra signs with (matched case-insensitively by `http`).
const SIGNATURE_HEADERS: [&str; 2] = ["terra-signature", "x-terra-signature"];

/// An authenticated delivery: the exact body bytes plus Terra's delivery headers.
#[derive(Debug)]
pub struct VerifiedDelivery {
    /// The body exactly as received.
    pub body: Bytes,
    /// The signature's `t`, Unix seconds.
    pub signed_at: i64,
    /// `x-terra-trace-id`: one per delivery, stable across retries.
    pub trace_id: Option<String>,
    /// `terra-reference`: shared by the chunks of a large request.
    pub terra_reference: Option<String>,
    /// `x-terra-ordering-timestamp` in milliseconds: higher is newer.
    pub ordering_ts: Option<i64>,
    /// This body's share of the in-flight body budget, returned when the delivery is dropped.
    _budget: OwnedSemaphorePermit,
}

impl FromRequest<AppState> for VerifiedDelivery {
    type Rejection = IngestError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        let limits = &state.ingest;

        // Cheap rejections first, before a possibly large body is read.
        let raw_header = signature_header(&parts.headers)?;
        let header = SignatureHeader::parse(raw_header)?;
        let declared_len = content_length(&parts.headers);
        if declared_len.is_some_and(|len| len > limits.max_body_bytes as u64) {
            return Err(IngestError::BodyTooLarge {
                limit: limits.max_body_bytes,
            });
        }

        // Bodies are read before the signature can be checked, so an unauthenticated client can
        // make us buffer: cap the total. Without Content-Length, reserve the whole limit.
        let reserve = declared_len.map_or(limits.max_body_bytes, |len| len as usize);
        let kib = u32::try_from(reserve.div_ceil(1024)).unwrap_or(u32::MAX);
        let budget = limits
            .body_budget
            .clone()
            .try_acquire_many_owned(kib)
            .map_err(|_| IngestError::Busy)?;

        // The signature is hashed as the body arrives; a stale one is refused before any of it.
        let mut check = state.verifier.begin(&header, unix_now())?;
        let body = tokio::time::timeout(
            limits.body_read_timeout,
            read_body(body, limits.max_body_bytes, declared_len, &mut check),
        )
        .await
        .map_err(|_| IngestError::BodyReadTimeout(limits.body_read_timeout.as_secs()))??;

        let signed_at = check.finish()?;
        Ok(Self {
            body,
            signed_at,
            trace_id: text_header(&parts.headers, "x-terra-trace-id"),
            terra_reference: text_header(&parts.headers, "terra-reference"),
            ordering_ts: text_header(&parts.headers, "x-terra-ordering-timestamp")
                .and_then(|v| v.parse().ok()),
            _budget: budget,
        })
    }
}

fn signature_header(headers: &HeaderMap) -> Result<&str, SignatureError> {
    let value = SIGNATURE_HEADERS
        .iter()
        .find_map(|name| headers.get(*name))
        .ok_or(SignatureError::MissingHeader)?;
    value
        .to_str()
        .map_err(|_| SignatureError::MalformedHeader("header is not visible ASCII"))
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(axum::http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

fn text_header(headers: &HeaderMap, name: &str) -> Option<String> {
    let value = headers.get(name)?.to_str().ok()?.trim();
    (!value.is_empty()).then(|| value.to_owned())
}

/// Reads the whole body, failing as soon as it exceeds `limit`, and feeds each piece to the
/// signature `check`. The buffer is sized from `Content-Length` up front, so a multi-megabyte
/// body is not copied while it grows.
async fn read_body(
    body: Body,
    limit: usize,
    declared_len: Option<u64>,
    check: &mut BodyCheck,
) -> Result<Bytes, IngestError> {
    let mut body = body;
    let capacity = declared_len.map_or(0, |len| usize::try_from(len).unwrap_or(limit).min(limit));
    let mut first: Option<Bytes> = None;
    let mut buf: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| IngestError::BodyRead)?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers carry nothing we keep
        };
        let total = first.as_ref().map_or(0, Bytes::len) + buf.len() + data.len();
        if total > limit {
            return Err(IngestError::BodyTooLarge { limit });
        }
        check.update(&data);
        // A body that arrives in one frame is kept as is, without a copy.
        match first.take() {
            None if buf.is_empty() => first = Some(data),
            None => buf.extend_from_slice(&data),
            Some(prev) => {
                buf.reserve(capacity.max(prev.len() + data.len()));
                buf.extend_from_slice(&prev);
                buf.extend_from_slice(&data);
            }
        }
    }
    Ok(first.unwrap_or_else(|| Bytes::from(buf)))
}

fn unix_now() -> i64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    i64::try_from(now.as_secs()).unwrap_or(i64::MAX)
}
