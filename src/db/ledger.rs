//! The ledger table `terra.deliveries`: where every authenticated delivery is kept.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;

/// A delivery about to be written to the ledger.
#[derive(Debug)]
pub struct NewDelivery<'a> {
    /// Identifies the delivery across Terra's retries (see [`dedupe_key`]).
    pub dedupe_key: &'a str,
    /// Where the body came from (`webhook`, …).
    pub source: &'a str,
    /// The signature header's timestamp.
    pub signed_at: Option<DateTime<Utc>>,
    /// Event `type` when the body reveals it.
    pub event_type: Option<&'a str>,
    /// Terra user id when the body reveals it.
    pub user_id: Option<&'a str>,
    /// `x-terra-trace-id`.
    pub trace_id: Option<&'a str>,
    /// `terra-reference`.
    pub terra_reference: Option<&'a str>,
    /// `x-terra-ordering-timestamp`, in milliseconds.
    pub ordering_ts: Option<i64>,
    /// The raw body.
    pub body: &'a [u8],
    /// SHA-256 of the body.
    pub body_sha256: &'a [u8],
    /// What a first look at the body found (`ok`, `invalid_json`, …).
    pub shape: &'a str,
    /// Why the shape is not `ok`.
    pub shape_error: Option<&'a str>,
    /// The delivery this body was fetched for (ping mode).
    pub parent_id: Option<i64>,
}

/// What happened to a delivery written to the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// A new row with this id.
    New(i64),
    /// A redelivery of the row with this id; only its duplicate counter changed.
    Duplicate(i64),
}

impl Stored {
    /// The ledger row id.
    pub fn id(self) -> i64 {
        match self {
            Self::New(id) | Self::Duplicate(id) => id,
        }
    }
}

/// The key that makes redelivery idempotent: Terra's trace id is stable across its retries;
/// without one, the same body is the same delivery.
pub fn dedupe_key(trace_id: Option<&str>, body_sha256: &[u8]) -> String {
    match trace_id {
        Some(trace) => format!("trace:{trace}"),
        None => format!("sha256:{}", hex::encode(body_sha256)),
    }
}

/// Writes a delivery, or counts a repeat of one already stored. Returns once committed.
pub async fn insert(db: impl PgExecutor<'_>, d: &NewDelivery<'_>) -> Result<Stored, sqlx::Error> {
    let body_size = i32::try_from(d.body.len()).unwrap_or(i32::MAX);
    // `xmax = 0` is true only for a freshly inserted tuple, false when ON CONFLICT updated one.
    let row = sqlx::query!(
        r#"
        INSERT INTO terra.deliveries
            (dedupe_key, source, signed_at, event_type, user_id, trace_id, terra_reference,
             ordering_ts, body, body_sha256, body_size, shape, shape_error, parent_id)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
        ON CONFLICT (dedupe_key) DO UPDATE
            SET duplicates = terra.deliveries.duplicates + 1,
                last_duplicate_at = now()
        RETURNING id, (xmax = 0) AS "inserted!"
        "#,
        d.dedupe_key,
        d.source,
        d.signed_at,
        d.event_type,
        d.user_id,
        d.trace_id,
        d.terra_reference,
        d.ordering_ts,
        d.body,
        d.body_sha256,
        body_size,
        d.shape,
        d.shape_error,
        d.parent_id,
    )
    .fetch_one(db)
    .await?;
    Ok(if row.inserted {
        Stored::New(row.id)
    } else {
        Stored::Duplicate(row.id)
    })
}

/// True when a delivery with this dedupe key is already in the ledger.
pub async fn exists(db: impl PgExecutor<'_>, dedupe_key: &str) -> Result<bool, sqlx::Error> {
    let found = sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM terra.deliveries WHERE dedupe_key = $1) AS "found!""#,
        dedupe_key
    )
    .fetch_one(db)
    .await?;
    Ok(found)
}
