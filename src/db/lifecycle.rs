//! SQL of the connections lifecycle: `terra.users`, `terra.auth_attempts`, large requests, and the
//! raw-record tables (planned workouts, hormones, health observations, lab reports).

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

/// What an event says about a user; `None` fields leave the stored value alone.
#[derive(Debug, Default)]
pub struct UserUpdate<'a> {
    /// Terra user id.
    pub user_id: &'a str,
    /// Provider, e.g. `GARMIN`.
    pub provider: Option<&'a str>,
    /// The customer's own id for the end user.
    pub reference_id: Option<&'a str>,
    /// Scopes to set (replacing the stored ones).
    pub scopes: Option<Vec<String>>,
    /// Scopes for a user created by this update only (the payload's view, not news).
    pub scopes_if_new: Option<Vec<String>>,
    /// New status; a `replaced` user keeps its status whatever arrives later.
    pub status: Option<&'a str>,
    /// Why the status changed (Terra's message or reason).
    pub status_reason: Option<&'a str>,
    /// Connection active flag.
    pub active: Option<bool>,
    /// When the delivery was received.
    pub received_at: DateTime<Utc>,
    /// The ledger row making the change.
    pub event_id: i64,
}

/// Creates the user or updates what the event says about it.
pub async fn upsert_user(conn: &mut PgConnection, u: &UserUpdate<'_>) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"
        INSERT INTO terra.users AS t
            (user_id, provider, reference_id, scopes, status, status_reason, active,
             last_webhook_update, event_id)
        VALUES ($1, $2, $3, coalesce($4::text[], $10::text[], '{}'), coalesce($5, 'connected'), $6,
                coalesce($7, true), $8, $9)
        ON CONFLICT (user_id) DO UPDATE SET
            provider = coalesce(EXCLUDED.provider, t.provider),
            reference_id = coalesce($3, t.reference_id),
            scopes = coalesce($4::text[], t.scopes),
            status = CASE WHEN t.status = 'replaced' THEN t.status ELSE coalesce($5, t.status) END,
            status_reason = CASE WHEN $5 IS NULL OR t.status = 'replaced' THEN t.status_reason
                                 ELSE $6 END,
            active = CASE WHEN t.status = 'replaced' THEN false ELSE coalesce($7, t.active) END,
            last_webhook_update = greatest(t.last_webhook_update, EXCLUDED.last_webhook_update),
            event_id = EXCLUDED.event_id,
            updated_at = now()
        "#,
        u.user_id,
        u.provider,
        u.reference_id,
        u.scopes.as_deref(),
        u.status,
        u.status_reason,
        u.active,
        u.received_at,
        u.event_id,
        u.scopes_if_new.as_deref(),
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// The stored scopes of a user (empty when unknown).
pub async fn scopes(conn: &mut PgConnection, user_id: &str) -> Result<Vec<String>, sqlx::Error> {
    let scopes = sqlx::query_scalar!("SELECT scopes FROM terra.users WHERE user_id = $1", user_id)
        .fetch_optional(conn)
        .await?;
    Ok(scopes.unwrap_or_default())
}

/// Marks `old_id` as replaced by `new_id`.
pub async fn mark_replaced(
    conn: &mut PgConnection,
    old_id: &str,
    new_id: &str,
    event_id: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"
        UPDATE terra.users
        SET status = 'replaced', replaced_by = $2, active = false, event_id = $3,
            status_reason = 'user_reauth', updated_at = now()
        WHERE user_id = $1
        "#,
        old_id,
        new_id,
        event_id
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Moves every row of `old_id` to `new_id`, newest copy winning (SQL function `terra.rekey_user`).
pub async fn rekey_user(
    conn: &mut PgConnection,
    old_id: &str,
    new_id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!("SELECT terra.rekey_user($1, $2)", old_id, new_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Deletes the user's health data (SQL function `terra.delete_user_data`); returns rows deleted.
pub async fn delete_user_data(
    conn: &mut PgConnection,
    user_id: &str,
    keep_delivery: i64,
) -> Result<i64, sqlx::Error> {
    let n = sqlx::query_scalar!(
        r#"SELECT terra.delete_user_data($1, $2) AS "n!""#,
        user_id,
        keep_delivery
    )
    .fetch_one(conn)
    .await?;
    Ok(n)
}

/// The current id of a user: follows `replaced_by` from a user replaced by `user_reauth`.
pub async fn current_user_id(
    conn: &mut PgConnection,
    user_id: &str,
) -> Result<String, sqlx::Error> {
    let current = sqlx::query_scalar!(
        r#"
        WITH RECURSIVE chain(user_id, replaced_by, depth) AS (
            SELECT user_id, replaced_by, 0 FROM terra.users WHERE user_id = $1
            UNION ALL
            SELECT u.user_id, u.replaced_by, c.depth + 1
            FROM chain c JOIN terra.users u ON u.user_id = c.replaced_by
            WHERE c.depth < 16
        )
        SELECT user_id AS "user_id!" FROM chain ORDER BY depth DESC LIMIT 1
        "#,
        user_id
    )
    .fetch_optional(conn)
    .await?;
    Ok(current.unwrap_or_else(|| user_id.to_owned()))
}

/// A connection attempt that produced no user.
#[derive(Debug)]
pub struct AuthAttempt<'a> {
    /// The ledger row.
    pub event_id: i64,
    /// `auth_cancelled`, or `auth` for the legacy error form.
    pub event_type: &'a str,
    /// The customer's own id for the end user.
    pub reference_id: Option<&'a str>,
    /// Why it failed.
    pub reason: Option<&'a str>,
    /// Terra's flow id.
    pub flow_id: Option<&'a str>,
    /// Terra's message.
    pub message: Option<&'a str>,
    /// When it was received.
    pub received_at: DateTime<Utc>,
}

/// Records a connection attempt that produced no user.
pub async fn record_auth_attempt(
    conn: &mut PgConnection,
    a: &AuthAttempt<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"
        INSERT INTO terra.auth_attempts
            (event_id, event_type, reference_id, reason, flow_id, message, received_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7)
        ON CONFLICT (event_id) DO NOTHING
        "#,
        a.event_id,
        a.event_type,
        a.reference_id,
        a.reason,
        a.flow_id,
        a.message,
        a.received_at
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// What a large-request event or chunk says about a request.
#[derive(Debug)]
pub enum LargeRequestNews {
    /// `large_request_processing` arrived.
    Processing,
    /// `large_request_sending` arrived with this many payloads to come.
    Sending {
        /// `expected_payloads`.
        expected: i32,
    },
    /// A data delivery carrying the request's `terra-reference` arrived.
    Chunk {
        /// The chunk's ledger row.
        delivery_id: i64,
    },
}

/// Records news about a large request, creating it if this is the first word of it.
pub async fn large_request(
    conn: &mut PgConnection,
    reference: &str,
    user_id: Option<&str>,
    news: &LargeRequestNews,
    received_at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let (processing_at, announced_at, expected, chunk) = match news {
        LargeRequestNews::Processing => (Some(received_at), None, None, None),
        LargeRequestNews::Sending { expected } => (None, Some(received_at), Some(*expected), None),
        LargeRequestNews::Chunk { delivery_id } => (None, None, None, Some(*delivery_id)),
    };
    sqlx::query!(
        r#"
        INSERT INTO terra.large_requests AS t (reference, user_id, processing_at, announced_at, expected_payloads)
        VALUES ($1, $2, $3, $4, $5)
        ON CONFLICT (reference) DO UPDATE SET
            user_id = coalesce(t.user_id, EXCLUDED.user_id),
            processing_at = coalesce(t.processing_at, EXCLUDED.processing_at),
            announced_at = coalesce(t.announced_at, EXCLUDED.announced_at),
            expected_payloads = coalesce(EXCLUDED.expected_payloads, t.expected_payloads),
            updated_at = now()
        "#,
        reference,
        user_id,
        processing_at,
        announced_at,
        expected,
    )
    .execute(&mut *conn)
    .await?;
    if let Some(delivery_id) = chunk {
        sqlx::query!(
            r#"
            INSERT INTO terra.large_request_chunks (reference, delivery_id, received_at)
            VALUES ($1, $2, $3)
            ON CONFLICT DO NOTHING
            "#,
            reference,
            delivery_id,
            received_at
        )
        .execute(&mut *conn)
        .await?;
    }
    // Counts are derived from the chunks, so redelivery and reprocessing never double count.
    sqlx::query!(
        r#"
        UPDATE terra.large_requests AS t SET
            received_payloads = c.n,
            first_chunk_at = c.first_at,
            last_chunk_at = c.last_at,
            completed_at = CASE
                WHEN t.completed_at IS NULL AND t.expected_payloads IS NOT NULL
                     AND c.n >= t.expected_payloads THEN now()
                ELSE t.completed_at END
        FROM (SELECT count(*)::int AS n, min(received_at) AS first_at, max(received_at) AS last_at
              FROM terra.large_request_chunks WHERE reference = $1) AS c
        WHERE t.reference = $1
        "#,
        reference
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// A raw record kept losslessly in one of the raw-record tables.
#[derive(Debug)]
pub struct RawRecord<'a> {
    /// Terra user id.
    pub user_id: &'a str,
    /// The record's key for its user.
    pub record_key: &'a str,
    /// Provider.
    pub provider: Option<&'a str>,
    /// A time for the record, when it has one with an offset.
    pub time: Option<DateTime<Utc>>,
    /// `planned_date` of a planned workout.
    pub planned_date: Option<&'a str>,
    /// The record's JSON text.
    pub data: &'a str,
    /// `x-terra-ordering-timestamp`.
    pub ordering_ts: Option<i64>,
    /// The ledger row.
    pub event_id: i64,
}

/// Which raw-record table a record goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawTable {
    /// `terra.planned_workouts`.
    PlannedWorkouts,
    /// `terra.hormone_samples`.
    HormoneSamples,
    /// `terra.health_observations`.
    HealthObservations,
}

/// Upserts a raw record under the same overwrite rule as the typed tables: a copy replaces the
/// stored one when its ordering timestamp is >= the stored one or either is missing.
pub async fn upsert_raw(
    conn: &mut PgConnection,
    table: RawTable,
    r: &RawRecord<'_>,
) -> Result<(), sqlx::Error> {
    match table {
        RawTable::PlannedWorkouts => sqlx::query!(
            r#"
            INSERT INTO terra.planned_workouts AS t
                (user_id, record_key, provider, planned_date, data, ordering_ts, event_id)
            VALUES ($1, $2, $3, $4, $5::text::jsonb, $6, $7)
            ON CONFLICT (user_id, record_key) DO UPDATE SET
                provider = EXCLUDED.provider, planned_date = EXCLUDED.planned_date,
                data = EXCLUDED.data, ordering_ts = EXCLUDED.ordering_ts,
                event_id = EXCLUDED.event_id, updated_at = now()
            WHERE t.ordering_ts IS NULL OR EXCLUDED.ordering_ts IS NULL
               OR EXCLUDED.ordering_ts >= t.ordering_ts
            "#,
            r.user_id,
            r.record_key,
            r.provider,
            r.planned_date,
            r.data,
            r.ordering_ts,
            r.event_id
        )
        .execute(conn)
        .await
        .map(drop),
        RawTable::HormoneSamples => sqlx::query!(
            r#"
            INSERT INTO terra.hormone_samples AS t
                (user_id, record_key, provider, ts, data, ordering_ts, event_id)
            VALUES ($1, $2, $3, $4, $5::text::jsonb, $6, $7)
            ON CONFLICT (user_id, record_key) DO UPDATE SET
                provider = EXCLUDED.provider, ts = EXCLUDED.ts, data = EXCLUDED.data,
                ordering_ts = EXCLUDED.ordering_ts, event_id = EXCLUDED.event_id,
                updated_at = now()
            WHERE t.ordering_ts IS NULL OR EXCLUDED.ordering_ts IS NULL
               OR EXCLUDED.ordering_ts >= t.ordering_ts
            "#,
            r.user_id,
            r.record_key,
            r.provider,
            r.time,
            r.data,
            r.ordering_ts,
            r.event_id
        )
        .execute(conn)
        .await
        .map(drop),
        RawTable::HealthObservations => sqlx::query!(
            r#"
            INSERT INTO terra.health_observations AS t
                (user_id, record_key, provider, start_time, data, ordering_ts, event_id)
            VALUES ($1, $2, $3, $4, $5::text::jsonb, $6, $7)
            ON CONFLICT (user_id, record_key) DO UPDATE SET
                provider = EXCLUDED.provider, start_time = EXCLUDED.start_time,
                data = EXCLUDED.data, ordering_ts = EXCLUDED.ordering_ts,
                event_id = EXCLUDED.event_id, updated_at = now()
            WHERE t.ordering_ts IS NULL OR EXCLUDED.ordering_ts IS NULL
               OR EXCLUDED.ordering_ts >= t.ordering_ts
            "#,
            r.user_id,
            r.record_key,
            r.provider,
            r.time,
            r.data,
            r.ordering_ts,
            r.event_id
        )
        .execute(conn)
        .await
        .map(drop),
    }
}

/// A lab report event, keyed by Terra's own event id.
#[derive(Debug)]
pub struct LabReport<'a> {
    /// Terra's `event_id` (stable across redeliveries).
    pub terra_event_id: &'a str,
    /// `lab_report.completed` or `lab_report.failed`.
    pub event_type: &'a str,
    /// `upload_id`.
    pub upload_id: Option<&'a str>,
    /// `data.session_id`.
    pub session_id: Option<&'a str>,
    /// `data.reference_id`.
    pub reference_id: Option<&'a str>,
    /// `occurred_at`.
    pub occurred_at: Option<DateTime<Utc>>,
    /// The whole event's JSON text.
    pub data: &'a str,
    /// The ledger row.
    pub event_id: i64,
}

/// Upserts a lab report event.
pub async fn upsert_lab_report(
    conn: &mut PgConnection,
    r: &LabReport<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"
        INSERT INTO terra.lab_reports
            (terra_event_id, event_type, upload_id, session_id, reference_id, occurred_at, data, event_id)
        VALUES ($1, $2, $3, $4, $5, $6, $7::text::jsonb, $8)
        ON CONFLICT (terra_event_id) DO UPDATE SET
            event_type = EXCLUDED.event_type, upload_id = EXCLUDED.upload_id,
            session_id = EXCLUDED.session_id, reference_id = EXCLUDED.reference_id,
            occurred_at = EXCLUDED.occurred_at, data = EXCLUDED.data,
            event_id = EXCLUDED.event_id, updated_at = now()
        "#,
        r.terra_event_id,
        r.event_type,
        r.upload_id,
        r.session_id,
        r.reference_id,
        r.occurred_at,
        r.data,
        r.event_id
    )
    .execute(conn)
    .await?;
    Ok(())
}
