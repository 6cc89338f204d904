//! SQL of `terra.users`: locking a batch's users, their current ids, what events say of them.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::store::PgText;

/// A user a batch touches, with what the payload says of it (for a user created by the batch).
#[derive(Debug, Clone, PartialEq)]
pub struct Seed {
    /// Terra user id.
    pub user_id: PgText,
    /// `user.provider`.
    pub provider: Option<PgText>,
    /// `user.reference_id`.
    pub reference_id: Option<PgText>,
    /// `user.scopes`, split.
    pub scopes: Vec<PgText>,
    /// When the delivery that names it was received.
    pub received_at: DateTime<Utc>,
    /// That delivery.
    pub event_id: i64,
}

/// Creates the users of `seeds` that do not exist yet and locks every one of them, in one
/// statement in user-id order: every writer takes user locks this way before touching any
/// user's rows, so two batches can never wait for each other in a cycle. An existing user is
/// locked without being updated (`WHERE false` still locks the conflicting row), so locking
/// leaves no dead row version behind.
pub async fn lock(conn: &mut PgConnection, seeds: &[Seed]) -> Result<(), sqlx::Error> {
    if seeds.is_empty() {
        return Ok(());
    }
    let mut seeds: Vec<&Seed> = seeds.iter().collect();
    seeds.sort_by(|a, b| a.user_id.cmp(&b.user_id));
    seeds.dedup_by(|a, b| a.user_id == b.user_id);
    let ids: Vec<&str> = seeds.iter().map(|s| s.user_id.as_str()).collect();
    let providers: Vec<Option<&str>> = seeds.iter().map(|s| s.provider.as_deref()).collect();
    let references: Vec<Option<&str>> = seeds.iter().map(|s| s.reference_id.as_deref()).collect();
    // Scopes travel as one comma-joined string per user (arrays cannot be ragged); scopes
    // never contain a comma, since Terra sends them comma-separated.
    let scopes: Vec<String> = seeds
        .iter()
        .map(|s| {
            let parts: Vec<&str> = s.scopes.iter().map(|x| x.as_str()).collect();
            parts.join(",")
        })
        .collect();
    let received: Vec<DateTime<Utc>> = seeds.iter().map(|s| s.received_at).collect();
    let events: Vec<i64> = seeds.iter().map(|s| s.event_id).collect();
    sqlx::query!(
        r#"
        INSERT INTO terra.users AS t
            (user_id, provider, reference_id, scopes, last_webhook_update, event_id)
        SELECT u.user_id, u.provider, u.reference_id,
               CASE WHEN u.scopes = '' THEN '{}'::text[] ELSE string_to_array(u.scopes, ',') END,
               u.received_at, u.event_id
        FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[],
                    $6::int8[]) AS u(user_id, provider, reference_id, scopes, received_at, event_id)
        ORDER BY u.user_id
        ON CONFLICT (user_id) DO UPDATE SET updated_at = t.updated_at WHERE false
        "#,
        &ids as &[&str],
        &providers as &[Option<&str>],
        &references as &[Option<&str>],
        &scopes,
        &received,
        &events,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Where the data of `ids` goes, for those among them whose data does not simply go to
/// themselves: the current id of each one replaced by `user_reauth` (following
/// `replaced_by`), and whether the delete policy deleted the current user's data. Every other
/// id is absent (served by the partial `users_redirected_idx`, so a batch of users who were
/// never re-keyed or deleted costs one probe of an almost empty index each).
pub async fn current(
    conn: &mut PgConnection,
    ids: &[&str],
) -> Result<HashMap<PgText, Current>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"
        WITH RECURSIVE chain(start, user_id, replaced_by, depth) AS (
            SELECT u.user_id, u.user_id, u.replaced_by, 0
            FROM terra.users u
            WHERE u.user_id = ANY($1)
              AND (u.replaced_by IS NOT NULL OR u.data_deleted_at IS NOT NULL)
            UNION ALL
            SELECT c.start, u.user_id, u.replaced_by, c.depth + 1
            FROM chain c JOIN terra.users u ON u.user_id = c.replaced_by
            WHERE c.depth < 16
        ), last AS (
            SELECT DISTINCT ON (start) start, user_id
            FROM chain ORDER BY start, depth DESC
        )
        SELECT last.start AS "start!", last.user_id AS "user_id!",
               u.data_deleted_at IS NOT NULL AS "data_deleted!"
        FROM last JOIN terra.users u ON u.user_id = last.user_id
        "#,
        ids as &[&str]
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let current = Current {
                user_id: PgText::from_stored(r.user_id),
                data_deleted: r.data_deleted,
            };
            (PgText::from_stored(r.start), current)
        })
        .collect())
}

/// Where a user id's data goes now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Current {
    /// The id its data is stored under (itself unless replaced by `user_reauth`).
    pub user_id: PgText,
    /// The delete policy removed that user's data: new data is not stored.
    pub data_deleted: bool,
}

/// What a delivery says about its user, applied after the batch's lifecycle events.
#[derive(Debug, Clone, PartialEq)]
pub struct Facts {
    /// The user's current id.
    pub user_id: PgText,
    /// `user.provider` (kept when absent).
    pub provider: Option<PgText>,
    /// `user.reference_id` (kept when absent).
    pub reference_id: Option<PgText>,
    /// When the delivery was received.
    pub received_at: DateTime<Utc>,
    /// The delivery.
    pub event_id: i64,
}

/// Folds the facts of many deliveries (in delivery order) into one per user: what applying
/// them one by one would leave.
pub fn fold(facts: Vec<Facts>) -> Vec<Facts> {
    let mut by_user: HashMap<PgText, Facts> = HashMap::new();
    for f in facts {
        match by_user.get_mut(&f.user_id) {
            None => {
                by_user.insert(f.user_id.clone(), f);
            }
            Some(kept) => {
                kept.provider = f.provider.or(kept.provider.take());
                kept.reference_id = f.reference_id.or(kept.reference_id.take());
                kept.received_at = kept.received_at.max(f.received_at);
                kept.event_id = f.event_id;
            }
        }
    }
    let mut folded: Vec<Facts> = by_user.into_values().collect();
    folded.sort_by(|a, b| a.user_id.cmp(&b.user_id));
    folded
}

/// Records what deliveries say about their (already locked) users: provider and reference
/// when given, and the last delivery time. `event_id` moves only with a change of provider or
/// reference (or when unset): the indexed column left alone keeps this per-batch update HOT.
pub async fn touch(conn: &mut PgConnection, facts: &[Facts]) -> Result<(), sqlx::Error> {
    if facts.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = facts.iter().map(|f| f.user_id.as_str()).collect();
    let providers: Vec<Option<&str>> = facts.iter().map(|f| f.provider.as_deref()).collect();
    let references: Vec<Option<&str>> = facts.iter().map(|f| f.reference_id.as_deref()).collect();
    let received: Vec<DateTime<Utc>> = facts.iter().map(|f| f.received_at).collect();
    let events: Vec<i64> = facts.iter().map(|f| f.event_id).collect();
    sqlx::query!(
        r#"
        UPDATE terra.users AS t SET
            provider = coalesce(f.provider, t.provider),
            reference_id = coalesce(f.reference_id, t.reference_id),
            last_webhook_update = greatest(t.last_webhook_update, f.received_at),
            event_id = CASE
                WHEN t.event_id IS NULL
                     OR (coalesce(f.provider, t.provider), coalesce(f.reference_id, t.reference_id))
                        IS DISTINCT FROM (t.provider, t.reference_id)
                THEN f.event_id ELSE t.event_id END,
            updated_at = now()
        FROM UNNEST($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::int8[])
            AS f(user_id, provider, reference_id, received_at, event_id)
        WHERE t.user_id = f.user_id
          AND (t.event_id IS NULL
               OR (coalesce(f.provider, t.provider), coalesce(f.reference_id, t.reference_id),
                   greatest(t.last_webhook_update, f.received_at))
                  IS DISTINCT FROM (t.provider, t.reference_id, t.last_webhook_update))
        "#,
        &ids as &[&str],
        &providers as &[Option<&str>],
        &references as &[Option<&str>],
        &received,
        &events,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// A status a lifecycle event gives its user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// `connected` (auth, user_reauth's new user).
    Connected,
    /// `deauthenticated` (deauth).
    Deauthenticated,
    /// `access_revoked`.
    AccessRevoked,
    /// `connection_error`: the user must reconnect.
    ConnectionError,
    /// `replaced` (user_reauth's old user).
    Replaced,
}

impl Status {
    /// The column value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connected => "connected",
            Self::Deauthenticated => "deauthenticated",
            Self::AccessRevoked => "access_revoked",
            Self::ConnectionError => "connection_error",
            Self::Replaced => "replaced",
        }
    }

    /// The `active` flag it sets (`None`: unchanged).
    fn active(self) -> Option<bool> {
        match self {
            Self::Connected => Some(true),
            Self::ConnectionError => None,
            Self::Deauthenticated | Self::AccessRevoked | Self::Replaced => Some(false),
        }
    }
}

/// What a lifecycle event says about its user.
#[derive(Debug, Clone, Default)]
pub struct Update<'a> {
    /// Terra user id.
    pub user_id: &'a str,
    /// Provider, e.g. `GARMIN`.
    pub provider: Option<&'a str>,
    /// The customer's own id for the end user.
    pub reference_id: Option<&'a str>,
    /// Scopes to set (replacing the stored ones), in stored form.
    pub scopes: Option<Vec<PgText>>,
    /// The status it sets, with Terra's message or reason, if it sets one.
    pub status: Option<(Status, Option<&'a str>)>,
    /// `x-terra-ordering-timestamp` of the event.
    pub ordering_ts: Option<i64>,
    /// The ledger row making the change.
    pub event_id: i64,
}

/// Applies what a lifecycle event says about its (locked, existing) user. The status changes
/// only when the event is newer than the one that set the current status
/// (`terra.is_newer`). Returns whether it did.
pub async fn update(conn: &mut PgConnection, u: &Update<'_>) -> Result<bool, sqlx::Error> {
    let text = |s: Option<&str>| s.map(PgText::new);
    let user_id = PgText::new(u.user_id);
    let (provider, reference) = (text(u.provider), text(u.reference_id));
    let scopes: Option<Vec<&str>> = u
        .scopes
        .as_ref()
        .map(|s| s.iter().map(PgText::as_str).collect());
    let status = u.status.map(|(s, _)| s.as_str());
    let reason = text(u.status.and_then(|(_, r)| r));
    let active = u.status.and_then(|(s, _)| s.active());
    let applied = sqlx::query_scalar!(
        r#"
        WITH t AS (
            SELECT user_id, $6::text IS NOT NULL AND terra.is_newer($8, status_ordering_ts)
                   AS newer
            FROM terra.users WHERE user_id = $1
        )
        UPDATE terra.users AS u SET
            provider = coalesce($2, u.provider),
            reference_id = coalesce($3, u.reference_id),
            scopes = coalesce($4::text[], u.scopes),
            status = CASE WHEN t.newer THEN $6 ELSE u.status END,
            status_reason = CASE WHEN t.newer THEN $7 ELSE u.status_reason END,
            active = CASE WHEN t.newer THEN coalesce($5, u.active) ELSE u.active END,
            status_ordering_ts = CASE WHEN t.newer THEN $8 ELSE u.status_ordering_ts END,
            status_event_id = CASE WHEN t.newer THEN $9 ELSE u.status_event_id END,
            data_deleted_at = CASE WHEN t.newer AND $6 = 'connected' THEN NULL
                                   ELSE u.data_deleted_at END,
            forgotten_at = CASE WHEN t.newer AND $6 = 'connected' THEN NULL
                                ELSE u.forgotten_at END,
            event_id = $9,
            updated_at = now()
        FROM t WHERE u.user_id = t.user_id
        RETURNING t.newer AS "newer!"
        "#,
        user_id.as_str(),
        provider.as_deref(),
        reference.as_deref(),
        scopes.as_deref() as Option<&[&str]>,
        active,
        status,
        reason.as_deref(),
        u.ordering_ts,
        u.event_id,
    )
    .fetch_optional(conn)
    .await?;
    Ok(applied.unwrap_or(false))
}

/// Which of `ids` are tombstones left by `forget` (erased, and no newer auth since).
pub async fn forgotten<'e>(
    db: impl sqlx::PgExecutor<'e>,
    ids: &[&str],
) -> Result<HashSet<String>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(HashSet::new());
    }
    let found = sqlx::query_scalar!(
        "SELECT user_id FROM terra.users WHERE user_id = ANY($1) AND forgotten_at IS NOT NULL",
        ids as &[&str]
    )
    .fetch_all(db)
    .await?;
    Ok(found.into_iter().collect())
}

/// Whether `forget` erased the user and an event with `ordering_ts` must leave it so: every
/// event but an `auth` newer than the erasure (`terra.is_newer`).
pub async fn stays_forgotten(
    conn: &mut PgConnection,
    user_id: &str,
    ordering_ts: Option<i64>,
    is_auth: bool,
) -> Result<bool, sqlx::Error> {
    let user_id = PgText::new(user_id);
    let stays = sqlx::query_scalar!(
        r#"
        SELECT NOT ($3 AND terra.is_newer($2, status_ordering_ts)) AS "stays!"
        FROM terra.users WHERE user_id = $1 AND forgotten_at IS NOT NULL
        "#,
        user_id.as_str(),
        ordering_ts,
        is_auth
    )
    .fetch_optional(conn)
    .await?;
    Ok(stays.unwrap_or(false))
}

/// The stored scopes of a user (empty when unknown).
pub async fn scopes(conn: &mut PgConnection, user_id: &str) -> Result<Vec<PgText>, sqlx::Error> {
    let user_id = PgText::new(user_id);
    let scopes = sqlx::query_scalar!(
        "SELECT scopes FROM terra.users WHERE user_id = $1",
        user_id.as_str()
    )
    .fetch_optional(conn)
    .await?;
    Ok(scopes
        .unwrap_or_default()
        .into_iter()
        .map(PgText::from_stored)
        .collect())
}

/// Links `old_id` to `new_id`, so the old id's data follows the new one from now on.
pub async fn set_replaced_by(
    conn: &mut PgConnection,
    old_id: &str,
    new_id: &str,
) -> Result<(), sqlx::Error> {
    let (old_id, new_id) = (PgText::new(old_id), PgText::new(new_id));
    sqlx::query!(
        "UPDATE terra.users SET replaced_by = $2, updated_at = now() WHERE user_id = $1",
        old_id.as_str(),
        new_id.as_str(),
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Moves every row of `old_id` to `new_id`, newest copy winning (SQL function `terra.rekey_user`).
pub async fn rekey(conn: &mut PgConnection, old_id: &str, new_id: &str) -> Result<(), sqlx::Error> {
    let (old_id, new_id) = (PgText::new(old_id), PgText::new(new_id));
    sqlx::query!(
        "SELECT terra.rekey_user($1, $2)",
        old_id.as_str(),
        new_id.as_str(),
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Deletes the user's health data (SQL function `terra.delete_user_data`) and marks it
/// deleted, so data arriving later is not stored; returns rows deleted.
pub async fn delete_data(
    conn: &mut PgConnection,
    user_id: &str,
    keep_delivery: i64,
) -> Result<i64, sqlx::Error> {
    let user_id = PgText::new(user_id);
    let n = sqlx::query_scalar!(
        r#"SELECT terra.delete_user_data($1, $2) AS "n!""#,
        user_id.as_str(),
        keep_delivery
    )
    .fetch_one(&mut *conn)
    .await?;
    sqlx::query!(
        "UPDATE terra.users SET data_deleted_at = now() WHERE user_id = $1",
        user_id.as_str()
    )
    .execute(conn)
    .await?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(user: &str, provider: Option<&str>, event_id: i64) -> Facts {
        Facts {
            user_id: PgText::new(user),
            provider: provider.map(PgText::new),
            reference_id: None,
            received_at: DateTime::from_timestamp(event_id, 0).unwrap_or_default(),
            event_id,
        }
    }

    #[test]
    fn facts_fold_as_if_applied_one_by_one() {
        let folded = fold(vec![
            facts("b", Some("OURA"), 1),
            facts("a", None, 2),
            facts("b", None, 3),
        ]);
        assert_eq!(folded.len(), 2);
        assert_eq!(folded[0].user_id, "a");
        let b = &folded[1];
        assert_eq!(
            (b.provider.as_deref(), b.event_id, b.received_at.timestamp()),
            (Some("OURA"), 3, 3)
        );
    }
}
