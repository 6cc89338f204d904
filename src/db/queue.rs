//! The ledger as a work queue: claiming deliveries for processing and recording the outcome.
//!
//! A claim is a row lock (`FOR UPDATE SKIP LOCKED`) held by the processing transaction, so a
//! delivery is processed by exactly one worker, and a crash simply releases it for another.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

/// A delivery claimed for processing.
#[derive(Debug)]
pub struct Claimed {
    /// Ledger row id.
    pub id: i64,
    /// The raw body.
    pub body: Vec<u8>,
    /// `x-terra-ordering-timestamp` of the delivery.
    pub ordering_ts: Option<i64>,
    /// Attempts before this one.
    pub attempts: i32,
    /// When it was received.
    pub received_at: DateTime<Utc>,
    /// Its `terra-reference` header.
    pub terra_reference: Option<String>,
}

/// Locks the next delivery that is due, skipping rows other workers hold.
pub async fn claim_next(conn: &mut PgConnection) -> Result<Option<Claimed>, sqlx::Error> {
    sqlx::query_as!(
        Claimed,
        r#"
        SELECT id, body, ordering_ts, attempts, received_at, terra_reference
        FROM terra.deliveries
        WHERE status IN ('pending', 'failed') AND next_attempt_at <= now()
        ORDER BY next_attempt_at, id
        LIMIT 1
        FOR UPDATE SKIP LOCKED
        "#
    )
    .fetch_optional(conn)
    .await
}

/// Marks a delivery as fully processed.
pub async fn mark_done(conn: &mut PgConnection, id: i64) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"
        UPDATE terra.deliveries
        SET status = 'done', attempts = attempts + 1, processed_at = now(), last_error = NULL
        WHERE id = $1
        "#,
        id
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Records a failed attempt; the delivery is retried after `retry_in`.
pub async fn mark_failed(
    conn: &mut PgConnection,
    id: i64,
    error: &str,
    retry_in: Duration,
) -> Result<(), sqlx::Error> {
    let retry_at: DateTime<Utc> =
        Utc::now() + chrono::Duration::from_std(retry_in).unwrap_or(chrono::Duration::hours(1));
    sqlx::query!(
        r#"
        UPDATE terra.deliveries
        SET status = 'failed', attempts = attempts + 1, last_error = $2, next_attempt_at = $3
        WHERE id = $1
        "#,
        id,
        error,
        retry_at
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Parks a delivery that can never succeed (undecodable, or out of attempts).
pub async fn mark_parked(conn: &mut PgConnection, id: i64, error: &str) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"
        UPDATE terra.deliveries
        SET status = 'parked', attempts = attempts + 1, last_error = $2, processed_at = now()
        WHERE id = $1
        "#,
        id,
        error
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// A one-line summary of the ledger by processing state, e.g. `done=12 parked=1`.
pub async fn count_by_status(pool: &sqlx::PgPool) -> Result<String, sqlx::Error> {
    let rows = sqlx::query!(
        r#"SELECT status, count(*) AS "count!" FROM terra.deliveries GROUP BY status ORDER BY status"#
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .iter()
        .map(|r| format!("{}={}", r.status, r.count))
        .collect::<Vec<_>>()
        .join(" "))
}

/// Which deliveries `reprocess` puts back in the queue. Empty filters select everything.
#[derive(Debug, Default, Clone)]
pub struct Selection {
    /// Only these ledger ids.
    pub ids: Vec<i64>,
    /// Only these event types.
    pub event_types: Vec<String>,
    /// Only deliveries in one of these processing states.
    pub statuses: Vec<String>,
    /// Received at or after.
    pub since: Option<DateTime<Utc>>,
    /// Received before.
    pub until: Option<DateTime<Utc>>,
}

/// Puts the selected deliveries back in the queue, due now, with a fresh attempt budget.
/// Returns how many were selected.
pub async fn requeue(conn: &mut PgConnection, s: &Selection) -> Result<u64, sqlx::Error> {
    let done = sqlx::query!(
        r#"
        UPDATE terra.deliveries
        SET status = 'pending', attempts = 0, next_attempt_at = now(), last_error = NULL,
            processed_at = NULL
        WHERE (cardinality($1::bigint[]) = 0 OR id = ANY($1))
          AND (cardinality($2::text[]) = 0 OR event_type = ANY($2))
          AND (cardinality($3::text[]) = 0 OR status = ANY($3))
          AND ($4::timestamptz IS NULL OR received_at >= $4)
          AND ($5::timestamptz IS NULL OR received_at < $5)
        "#,
        &s.ids,
        &s.event_types,
        &s.statuses,
        s.since,
        s.until,
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// The backlog: deliveries waiting to be processed, by state, and the age of the oldest one.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Backlog {
    /// Never attempted yet.
    pub pending: i64,
    /// Failed at least once, waiting for a retry.
    pub failed: i64,
    /// Seconds since the oldest of them was received (0 when there is none).
    pub oldest_age_secs: f64,
}

/// Reads the backlog through the queue's partial index (cheap however large the ledger).
pub async fn backlog(pool: &sqlx::PgPool) -> Result<Backlog, sqlx::Error> {
    let row = sqlx::query!(
        r#"
        SELECT count(*) FILTER (WHERE status = 'pending') AS "pending!",
               count(*) FILTER (WHERE status = 'failed') AS "failed!",
               coalesce(extract(epoch FROM now() - min(received_at)), 0)::float8 AS "oldest!"
        FROM terra.deliveries
        WHERE status IN ('pending', 'failed')
        "#
    )
    .fetch_one(pool)
    .await?;
    Ok(Backlog {
        pending: row.pending,
        failed: row.failed,
        oldest_age_secs: row.oldest,
    })
}
