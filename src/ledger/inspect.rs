//! Reading the ledger for people: listing and showing deliveries, and what a reprocessing run
//! made of the deliveries it selected.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

use crate::ledger::Selection;

/// Which deliveries `deliveries list` shows. Empty filters match everything.
#[derive(Debug, Default, Clone)]
pub struct ListFilter {
    /// Processing states (pending, done, failed, parked).
    pub statuses: Vec<String>,
    /// Event types.
    pub event_types: Vec<String>,
    /// One Terra user id.
    pub user_id: Option<String>,
    /// Received at or after.
    pub since: Option<DateTime<Utc>>,
    /// At most this many, newest first.
    pub limit: i64,
}

/// One line of `deliveries list`.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Ledger id.
    pub id: i64,
    /// When it was received.
    pub received_at: DateTime<Utc>,
    /// webhook, backfill or s3_download.
    pub source: String,
    /// Event type, when the body reveals it.
    pub event_type: Option<String>,
    /// Terra user id, when the body reveals it.
    pub user_id: Option<String>,
    /// Processing state.
    pub status: String,
    /// Processing attempts so far.
    pub attempts: i32,
    /// Redeliveries counted on it.
    pub duplicates: i32,
    /// Body size in bytes.
    pub body_size: i32,
    /// Why the last attempt failed (failed and parked deliveries).
    pub last_error: Option<String>,
}

/// Deliveries matching `filter`, newest first.
pub async fn list(pool: &PgPool, filter: &ListFilter) -> Result<Vec<Summary>, sqlx::Error> {
    sqlx::query_as!(
        Summary,
        r#"
        SELECT id, received_at, source, event_type, user_id, status, attempts, duplicates,
               body_size, last_error
        FROM terra.deliveries
        WHERE (cardinality($1::text[]) = 0 OR status = ANY($1))
          AND (cardinality($2::text[]) = 0 OR event_type = ANY($2))
          AND ($3::text IS NULL OR user_id = $3)
          AND ($4::timestamptz IS NULL OR received_at >= $4)
        ORDER BY id DESC
        LIMIT $5
        "#,
        &filter.statuses,
        &filter.event_types,
        filter.user_id.as_deref(),
        filter.since,
        filter.limit,
    )
    .fetch_all(pool)
    .await
}

/// Everything the ledger keeps about one delivery.
#[derive(Debug, Clone)]
pub struct Detail {
    /// Ledger id.
    pub id: i64,
    /// Idempotency key (trace id or body hash).
    pub dedupe_key: String,
    /// webhook, backfill or s3_download.
    pub source: String,
    /// When it was received.
    pub received_at: DateTime<Utc>,
    /// The signature's timestamp.
    pub signed_at: Option<DateTime<Utc>>,
    /// Event type.
    pub event_type: Option<String>,
    /// Terra user id.
    pub user_id: Option<String>,
    /// `x-terra-trace-id`.
    pub trace_id: Option<String>,
    /// `terra-reference`.
    pub terra_reference: Option<String>,
    /// `x-terra-ordering-timestamp` in milliseconds.
    pub ordering_ts: Option<i64>,
    /// The raw body; `None` once retention removed it.
    pub body: Option<Vec<u8>>,
    /// Its size in bytes (kept when the body is removed).
    pub body_size: i32,
    /// SHA-256 of the body.
    pub body_sha256: Vec<u8>,
    /// What a first look at the body found.
    pub shape: String,
    /// Why the shape is not `ok`.
    pub shape_error: Option<String>,
    /// Redeliveries counted on it.
    pub duplicates: i32,
    /// The latest redelivery.
    pub last_duplicate_at: Option<DateTime<Utc>>,
    /// Processing state.
    pub status: String,
    /// Processing attempts so far.
    pub attempts: i32,
    /// When it is due (pending and failed deliveries).
    pub next_attempt_at: DateTime<Utc>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When processing finished (done or parked).
    pub processed_at: Option<DateTime<Utc>>,
    /// The ping this body was downloaded for.
    pub parent_id: Option<i64>,
}

/// One delivery by ledger id.
pub async fn get(pool: &PgPool, id: i64) -> Result<Option<Detail>, sqlx::Error> {
    sqlx::query_as!(
        Detail,
        r#"
        SELECT d.id, d.dedupe_key, d.source, d.received_at, d.signed_at, d.event_type,
               d.user_id, d.trace_id, d.terra_reference, d.ordering_ts,
               coalesce(b.body, k.body) AS body, d.body_size, d.body_sha256, d.shape, d.shape_error,
               d.duplicates, d.last_duplicate_at, d.status, d.attempts, d.next_attempt_at,
               d.last_error, d.processed_at, d.parent_id
        FROM terra.deliveries d
        LEFT JOIN terra.delivery_bodies b ON b.delivery_id = d.id AND b.received_at = d.received_at
        LEFT JOIN terra.delivery_bodies_kept k ON k.delivery_id = d.id
        WHERE d.id = $1
        "#,
        id
    )
    .fetch_optional(pool)
    .await
}

/// Locks the deliveries `selection` matches and returns their ids, so that what happens to
/// exactly them can be told after they are requeued and processed.
pub async fn lock_selected(
    conn: &mut PgConnection,
    selection: &Selection,
) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"
        SELECT id
        FROM terra.deliveries
        WHERE (cardinality($1::bigint[]) = 0 OR id = ANY($1))
          AND (cardinality($2::text[]) = 0 OR event_type = ANY($2))
          AND (cardinality($3::text[]) = 0 OR status = ANY($3))
          AND ($4::timestamptz IS NULL OR received_at >= $4)
          AND ($5::timestamptz IS NULL OR received_at < $5)
        ORDER BY id
        FOR UPDATE
        "#,
        &selection.ids,
        &selection.event_types,
        &selection.statuses,
        selection.since,
        selection.until,
    )
    .fetch_all(conn)
    .await
}

/// How many of `ids` are in each processing state.
pub async fn status_counts(pool: &PgPool, ids: &[i64]) -> Result<Vec<(String, i64)>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"
        SELECT status, count(*) AS "count!"
        FROM terra.deliveries
        WHERE id = ANY($1)
        GROUP BY status
        ORDER BY status
        "#,
        ids
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|r| (r.status, r.count)).collect())
}
