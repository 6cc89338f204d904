//! The ledger as a work queue: claiming batches of deliveries and recording their outcomes.
//!
//! A claim is a row lock (`FOR NO KEY UPDATE SKIP LOCKED`) held by the processing transaction,
//! so a delivery is processed by exactly one worker, a crash simply releases it for another,
//! and several instances can drain one database.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::types::PgInterval;
use sqlx::PgConnection;

use super::{DeliveryStatus, Provenance};

/// A delivery claimed for processing.
#[derive(Debug)]
pub struct Claimed {
    /// Ledger row id.
    pub id: i64,
    /// The raw body; `None` when retention removed it before the delivery was requeued.
    pub body: Option<Vec<u8>>,
    /// `x-terra-ordering-timestamp` of the delivery.
    pub ordering_ts: Option<i64>,
    /// Attempts before this one.
    pub attempts: i32,
    /// When it was received.
    pub received_at: DateTime<Utc>,
    /// Its `terra-reference` header.
    pub terra_reference: Option<String>,
    /// Its `x-terra-trace-id` header.
    pub trace_id: Option<String>,
}

impl Claimed {
    /// What the typed storage records about where the delivery came from.
    pub fn provenance(&self) -> Provenance {
        Provenance {
            delivery_id: self.id,
            received_at: self.received_at,
            terra_reference: self.terra_reference.clone(),
            ordering_ts: self.ordering_ts,
        }
    }
}

/// Locks up to `max_count` deliveries due at or after `from` (see [`claim_start`]), skipping
/// rows other workers hold and the deliveries of users another batch is claiming or writing
/// (`terra.claim_batch`), in queue order, and returns those whose bodies fit in `max_bytes`
/// together (at least one). The rest of the locked rows are released when the transaction
/// ends. Served by the partial queue index in its order, so the backlog is never sorted.
pub async fn claim(
    conn: &mut PgConnection,
    max_count: i64,
    max_bytes: i64,
    from: DateTime<Utc>,
) -> Result<Vec<Claimed>, sqlx::Error> {
    let max_count = i32::try_from(max_count.max(1)).unwrap_or(i32::MAX);
    // One function, so the locks and the bodies are read with one snapshot.
    sqlx::query_as!(
        Claimed,
        r#"
        SELECT id AS "id!", body, ordering_ts, attempts AS "attempts!",
               received_at AS "received_at!", terra_reference, trace_id
        FROM terra.claim_batch($1, $2, $3, $4)
        "#,
        max_count,
        max_bytes,
        max_count.saturating_mul(CLAIM_SCAN),
        from,
    )
    .fetch_all(conn)
    .await
}

/// Where claims may start walking the queue: [`CLAIM_START_MARGIN`] before its first due
/// delivery (`terra.claim_start`). Finding it walks the entries of every delivery processed
/// since the oldest open transaction began, which claims that start there do not.
pub async fn claim_start(conn: &mut PgConnection) -> Result<DateTime<Utc>, sqlx::Error> {
    let margin = PgInterval::try_from(CLAIM_START_MARGIN).map_err(sqlx::Error::Encode)?;
    sqlx::query_scalar!(r#"SELECT terra.claim_start($1) AS "start!""#, margin)
        .fetch_one(conn)
        .await
}

/// How far before the queue's head claims start, so that a delivery committed after the head
/// was found, by a transaction that began up to this long before, is still within their reach.
const CLAIM_START_MARGIN: Duration = Duration::from_secs(10);

/// How many due deliveries, per delivery wanted, a claim looks at before it gives up on the
/// rest of the queue (belonging to users other batches hold) until the next claim.
const CLAIM_SCAN: i32 = 4;

/// The outcome of one claimed delivery, to be recorded.
#[derive(Debug, Clone, PartialEq)]
pub enum Settled {
    /// Processed: mark it done.
    Done(i64),
    /// Failed; retry after the delay.
    Failed {
        /// Ledger row id.
        id: i64,
        /// Why, for `last_error`.
        error: String,
        /// When to try again.
        retry_in: Duration,
    },
    /// Can never succeed: park it until it is reprocessed.
    Parked {
        /// Ledger row id.
        id: i64,
        /// Why, for `last_error`.
        error: String,
    },
}

/// Records the outcomes of a batch: one statement per kind of outcome. `processed_at` is the
/// time of the statement, not of the transaction's start, so it covers the batch's own work.
pub async fn record_outcomes(
    conn: &mut PgConnection,
    outcomes: &[Settled],
) -> Result<(), sqlx::Error> {
    let mut done = Vec::new();
    let (mut failed, mut failed_errors, mut retry_at) = (Vec::new(), Vec::new(), Vec::new());
    let (mut parked, mut parked_errors) = (Vec::new(), Vec::new());
    let now = Utc::now();
    for outcome in outcomes {
        match outcome {
            Settled::Done(id) => done.push(*id),
            Settled::Failed {
                id,
                error,
                retry_in,
            } => {
                failed.push(*id);
                failed_errors.push(error.as_str());
                let delay = chrono::Duration::from_std(*retry_in)
                    .unwrap_or_else(|_| chrono::Duration::hours(1));
                retry_at.push(now + delay);
            }
            Settled::Parked { id, error } => {
                parked.push(*id);
                parked_errors.push(error.as_str());
            }
        }
    }
    if !done.is_empty() {
        sqlx::query!(
            r#"
            UPDATE terra.deliveries
            SET status = $2, attempts = attempts + 1, processed_at = clock_timestamp(), last_error = NULL
            WHERE id = ANY($1)
            "#,
            &done,
            DeliveryStatus::Done as DeliveryStatus,
        )
        .execute(&mut *conn)
        .await?;
    }
    if !failed.is_empty() {
        sqlx::query!(
            r#"
            UPDATE terra.deliveries AS d
            SET status = $4, attempts = d.attempts + 1, last_error = f.error,
                next_attempt_at = f.retry_at
            FROM UNNEST($1::int8[], $2::text[], $3::timestamptz[]) AS f(id, error, retry_at)
            WHERE d.id = f.id
            "#,
            &failed,
            &failed_errors as &[&str],
            &retry_at,
            DeliveryStatus::Failed as DeliveryStatus,
        )
        .execute(&mut *conn)
        .await?;
    }
    if !parked.is_empty() {
        sqlx::query!(
            r#"
            UPDATE terra.deliveries AS d
            SET status = $3, attempts = d.attempts + 1, last_error = p.error,
                processed_at = clock_timestamp()
            FROM UNNEST($1::int8[], $2::text[]) AS p(id, error)
            WHERE d.id = p.id
            "#,
            &parked,
            &parked_errors as &[&str],
            DeliveryStatus::Parked as DeliveryStatus,
        )
        .execute(&mut *conn)
        .await?;
    }
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
