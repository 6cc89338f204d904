//! `terra.backfill_windows`: which backfill windows are finished, so a new run skips them;
//! `terra.backfill_requests`: what was sent to Terra when, so the day budget holds across runs.

use std::time::Duration;

use chrono::NaiveDate;
use sqlx::PgPool;

/// Why a backfill cannot use this database.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// Migrations are missing (a new database, or one migrated by an older terra-sink).
    #[error("this database is not set up for terra-sink (migrations are missing): run `terra-sink migrate` first (with the same DATABASE_URL)")]
    NotMigrated,
    /// The check itself failed.
    #[error("database error: {0}")]
    Database(#[from] crate::db::DbError),
}

/// Checks that every migration the backfill relies on is applied.
pub async fn check_schema(pool: &PgPool) -> Result<(), SchemaError> {
    if crate::db::is_ready(pool).await? {
        Ok(())
    } else {
        Err(SchemaError::NotMigrated)
    }
}

/// Records a request about to be sent; it counts until `deadline` from now unless
/// [`request_ended`] says it ended sooner. Returns its id.
pub async fn request_started(
    pool: &PgPool,
    user_id: &str,
    data_type: &str,
    start: NaiveDate,
    end: NaiveDate,
    deadline: Duration,
) -> Result<i64, sqlx::Error> {
    let deadline_ms = i64::try_from(deadline.as_millis()).unwrap_or(i64::MAX);
    sqlx::query_scalar!(
        r#"
        INSERT INTO terra.backfill_requests (user_id, data_type, start_date, end_date, counted_at)
        VALUES ($1, $2, $3, $4, clock_timestamp() + make_interval(secs => $5::bigint / 1000.0))
        RETURNING id
        "#,
        user_id,
        data_type,
        start,
        end,
        deadline_ms
    )
    .fetch_one(pool)
    .await
}

/// Records that request `id` has ended (its answer, or its failure, is in).
pub async fn request_ended(pool: &PgPool, id: i64) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"
        UPDATE terra.backfill_requests
        SET ended_at = clock_timestamp(), counted_at = least(counted_at, clock_timestamp())
        WHERE id = $1
        "#,
        id
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// A request of an earlier run that still counts against a user's day budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CountedRequest {
    /// Days it covered.
    pub days: u32,
    /// How long ago Terra last can have received it (negative: still in flight, or its end was
    /// never recorded and the deadline lies ahead), in whole milliseconds rounded down (so
    /// that a deadline ahead is never shortened).
    pub age_ms: i64,
}

/// The requests for `user_id` that Terra can have received within the last `period`.
pub async fn counted_requests(
    pool: &PgPool,
    user_id: &str,
    period: Duration,
) -> Result<Vec<CountedRequest>, sqlx::Error> {
    let period_ms = i64::try_from(period.as_millis()).unwrap_or(i64::MAX);
    let rows = sqlx::query!(
        r#"
        SELECT end_date - start_date AS "days!",
               floor(extract(epoch FROM clock_timestamp() - counted_at) * 1000)::bigint
                   AS "age_ms!"
        FROM terra.backfill_requests
        WHERE user_id = $1
          AND counted_at > clock_timestamp() - make_interval(secs => $2::bigint / 1000.0)
        ORDER BY counted_at
        "#,
        user_id,
        period_ms
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| CountedRequest {
            days: u32::try_from(r.days).unwrap_or(0),
            age_ms: r.age_ms,
        })
        .collect())
}

/// How a window ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowStatus {
    /// The answer is in the ledger, or had no records.
    Done,
    /// Terra will deliver the data through the webhook instead.
    Acknowledged,
    /// It failed; the next run tries again.
    Failed,
}

impl WindowStatus {
    /// The value stored in `status`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Done => "done",
            Self::Acknowledged => "acknowledged",
            Self::Failed => "failed",
        }
    }
}

/// The outcome of one window, as recorded.
#[derive(Debug)]
pub struct WindowRecord<'a> {
    /// Terra user id.
    pub user_id: &'a str,
    /// Data type (`daily`, …).
    pub data_type: &'a str,
    /// First day.
    pub start_date: NaiveDate,
    /// Exclusive end.
    pub end_date: NaiveDate,
    /// Outcome.
    pub status: WindowStatus,
    /// Records fetched (for `Done`).
    pub records: Option<i32>,
    /// Ledger row holding them.
    pub delivery_id: Option<i64>,
    /// Terra's reference (for `Acknowledged`).
    pub terra_reference: Option<&'a str>,
    /// Why it failed.
    pub last_error: Option<&'a str>,
}

/// Windows of `user_id`/`data_type` inside `[start, end)` that need no new request.
pub async fn finished(
    pool: &PgPool,
    user_id: &str,
    data_type: &str,
    start: NaiveDate,
    end: NaiveDate,
) -> Result<Vec<(NaiveDate, NaiveDate)>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"
        SELECT start_date, end_date
        FROM terra.backfill_windows
        WHERE user_id = $1 AND data_type = $2 AND start_date >= $3 AND end_date <= $4
          AND status IN ('done', 'acknowledged')
        "#,
        user_id,
        data_type,
        start,
        end
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| (r.start_date, r.end_date))
        .collect())
}

/// Records a window's outcome (a retry of a known window updates its row).
pub async fn record(pool: &PgPool, w: &WindowRecord<'_>) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"
        INSERT INTO terra.backfill_windows
            (user_id, data_type, start_date, end_date, status, records, delivery_id,
             terra_reference, last_error)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
        ON CONFLICT (user_id, data_type, start_date, end_date) DO UPDATE
            SET status = EXCLUDED.status,
                attempts = terra.backfill_windows.attempts + 1,
                records = EXCLUDED.records,
                delivery_id = EXCLUDED.delivery_id,
                terra_reference = EXCLUDED.terra_reference,
                last_error = EXCLUDED.last_error,
                updated_at = now()
        "#,
        w.user_id,
        w.data_type,
        w.start_date,
        w.end_date,
        w.status.as_str(),
        w.records,
        w.delivery_id,
        w.terra_reference,
        w.last_error,
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Every active user in `terra.users` (the run checked the schema is migrated first).
pub async fn active_users(pool: &PgPool) -> Result<Vec<String>, sqlx::Error> {
    // `active IS NOT FALSE`: a user whose state is unknown is still worth asking Terra about.
    sqlx::query_scalar!(
        "SELECT DISTINCT user_id FROM terra.users WHERE active IS NOT FALSE ORDER BY 1"
    )
    .fetch_all(pool)
    .await
}
