//! SQL of `terra-sink reconcile`: the users terra-sink holds, and the changes that bring
//! `terra.users` in line with Terra's list. Every change follows the ordering rule of
//! lifecycle events (`terra.is_newer` on `status_ordering_ts`), with Terra's clock when it
//! answered as the change's timestamp, and locks users in user-id order like every writer.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// A user terra-sink holds, as reconcile compares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// Terra user id (stored form).
    pub user_id: String,
    /// `terra.users.status`.
    pub status: String,
}

/// Every user in `terra.users`, whatever its status.
pub async fn held_users(pool: &PgPool) -> Result<Vec<Held>, sqlx::Error> {
    let rows = sqlx::query!("SELECT user_id, status FROM terra.users ORDER BY user_id")
        .fetch_all(pool)
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| Held {
            user_id: r.user_id,
            status: r.status,
        })
        .collect())
}

/// A user Terra lists that terra-sink never saw, in stored form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser<'a> {
    /// Terra user id.
    pub user_id: &'a str,
    /// Provider, e.g. `GARMIN`.
    pub provider: Option<&'a str>,
    /// The developer's own id for the end user.
    pub reference_id: Option<&'a str>,
    /// Granted scopes.
    pub scopes: &'a [String],
    /// Terra's `active` flag.
    pub active: bool,
}

/// Creates `users` as connected (one statement, in user-id order); a user that appeared in the
/// meantime (a webhook) is left as it is. Returns the ids created.
pub async fn create(
    pool: &PgPool,
    users: &[NewUser<'_>],
    ordering_ts: i64,
) -> Result<Vec<String>, sqlx::Error> {
    if users.is_empty() {
        return Ok(Vec::new());
    }
    let mut users: Vec<&NewUser<'_>> = users.iter().collect();
    users.sort_by(|a, b| a.user_id.cmp(b.user_id));
    let ids: Vec<&str> = users.iter().map(|u| u.user_id).collect();
    let providers: Vec<Option<&str>> = users.iter().map(|u| u.provider).collect();
    let references: Vec<Option<&str>> = users.iter().map(|u| u.reference_id).collect();
    // Scopes never contain a comma (Terra sends them comma-separated), as in lifecycle's lock.
    let scopes: Vec<String> = users.iter().map(|u| u.scopes.join(",")).collect();
    let active: Vec<bool> = users.iter().map(|u| u.active).collect();
    sqlx::query_scalar!(
        r#"
        INSERT INTO terra.users AS t
            (user_id, provider, reference_id, scopes, active, status, status_ordering_ts,
             reconciled_at)
        SELECT u.user_id, u.provider, u.reference_id,
               CASE WHEN u.scopes = '' THEN '{}'::text[] ELSE string_to_array(u.scopes, ',') END,
               u.active, 'connected', $6, now()
        FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::bool[])
            AS u(user_id, provider, reference_id, scopes, active)
        ORDER BY u.user_id
        ON CONFLICT (user_id) DO NOTHING
        RETURNING t.user_id
        "#,
        &ids as &[&str],
        &providers as &[Option<&str>],
        &references as &[Option<&str>],
        &scopes,
        &active,
        ordering_ts,
    )
    .fetch_all(pool)
    .await
}

/// Marks the users of `ids` that are still connected, and whose status was not set by an event
/// newer than `ordering_ts`, as `missing_at_terra` with `reason` (inactive; data kept).
/// Returns the ids marked.
pub async fn mark_missing(
    pool: &PgPool,
    ids: &[&str],
    reason: &str,
    ordering_ts: i64,
) -> Result<Vec<String>, sqlx::Error> {
    set_status(
        pool,
        ids,
        "connected",
        "missing_at_terra",
        Some(reason),
        ordering_ts,
    )
    .await
}

/// Brings the users of `ids` that reconcile marked `missing_at_terra`, and that Terra lists
/// again, back to connected (unless a newer event set their status). Returns the ids restored.
pub async fn restore(
    pool: &PgPool,
    ids: &[&str],
    ordering_ts: i64,
) -> Result<Vec<String>, sqlx::Error> {
    set_status(
        pool,
        ids,
        "missing_at_terra",
        "connected",
        None,
        ordering_ts,
    )
    .await
}

/// Moves the users of `ids` whose status is `from` to `to`, under the ordering rule.
async fn set_status(
    pool: &PgPool,
    ids: &[&str],
    from: &str,
    to: &str,
    reason: Option<&str>,
    ordering_ts: i64,
) -> Result<Vec<String>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    // Locked in user-id order first, as the workers lock a batch's users: no deadlock cycle.
    sqlx::query_scalar!(
        r#"
        WITH locked AS (
            SELECT user_id FROM terra.users
            WHERE user_id = ANY($1) ORDER BY user_id FOR UPDATE
        )
        UPDATE terra.users AS u SET
            status = $3,
            status_reason = $4,
            active = ($3 = 'connected'),
            status_ordering_ts = $5,
            status_event_id = NULL,
            reconciled_at = now(),
            updated_at = now()
        FROM locked
        WHERE u.user_id = locked.user_id AND u.status = $2
          AND terra.is_newer($5, u.status_ordering_ts)
        RETURNING u.user_id
        "#,
        ids as &[&str],
        from,
        to,
        reason,
        ordering_ts,
    )
    .fetch_all(pool)
    .await
}

/// The time of the newest typed record of every connected, active user (`None`: no record),
/// from the per-user indexes of the six data tables.
pub async fn newest_data(
    pool: &PgPool,
) -> Result<Vec<(String, Option<DateTime<Utc>>)>, sqlx::Error> {
    // A day is midnight UTC, as the typed tables store a date alone.
    let rows = sqlx::query!(
        r#"
        SELECT u.user_id,
               greatest(
                   (SELECT max(start_time) FROM terra.activity t WHERE t.user_id = u.user_id),
                   (SELECT max(start_time) FROM terra.sleep t WHERE t.user_id = u.user_id),
                   (SELECT max(day) FROM terra.daily t WHERE t.user_id = u.user_id)
                       ::timestamp AT TIME ZONE 'UTC',
                   (SELECT max(day) FROM terra.body t WHERE t.user_id = u.user_id)
                       ::timestamp AT TIME ZONE 'UTC',
                   (SELECT max(day) FROM terra.nutrition t WHERE t.user_id = u.user_id)
                       ::timestamp AT TIME ZONE 'UTC',
                   (SELECT max(day) FROM terra.menstruation t WHERE t.user_id = u.user_id)
                       ::timestamp AT TIME ZONE 'UTC'
               ) AS newest
        FROM terra.users u
        WHERE u.status = 'connected' AND u.active
        ORDER BY u.user_id
        "#
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|r| (r.user_id, r.newest)).collect())
}
