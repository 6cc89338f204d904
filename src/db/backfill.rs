//! `terra.backfill_windows`: which backfill windows are finished, so a new run skips them.

use chrono::NaiveDate;
use sqlx::PgPool;

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

/// Why the active users could not be listed.
#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    /// `terra.users` does not exist in this database yet.
    #[error("--all-users needs the table terra.users, which this database does not have yet; give --user-id instead")]
    NoUsersTable,
    /// The query failed.
    #[error("cannot list users: {0}")]
    Database(#[from] sqlx::Error),
}

/// Every active user in `terra.users` (a table a later migration adds, hence unchecked SQL).
pub async fn active_users(pool: &PgPool) -> Result<Vec<String>, UsersError> {
    let exists: bool =
        sqlx::query_scalar!(r#"SELECT to_regclass('terra.users') IS NOT NULL AS "exists!""#)
            .fetch_one(pool)
            .await?;
    if !exists {
        return Err(UsersError::NoUsersTable);
    }
    // `active IS NOT FALSE`: a user whose state is unknown is still worth asking Terra about.
    let users = sqlx::query_scalar::<_, String>(
        "SELECT DISTINCT user_id::text FROM terra.users WHERE active IS NOT FALSE ORDER BY 1",
    )
    .fetch_all(pool)
    .await?;
    Ok(users)
}
