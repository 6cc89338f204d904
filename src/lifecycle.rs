//! The account side of Terra: users and their connection status, failed connection attempts,
//! large historical requests, and the event types kept as raw records.
//!
//! Called by the worker for every decoded delivery, inside the same transaction as the typed
//! storage, so a delivery's effects land together or not at all.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::PgConnection;

use crate::db::lifecycle::{self as sql, LargeRequestNews, RawRecord, RawTable, UserUpdate};
use crate::model::{AuthEvent, Event, TerraUser};
use crate::store::rows::jsonb_text;

/// What happens to a user's stored health data on `deauth` and `access_revoked`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum RevokedDataPolicy {
    /// Keep everything; only the user's status changes.
    #[default]
    Keep,
    /// Delete every health-data row of the user (typed tables and ledger bodies) in the same
    /// transaction that records the status.
    Delete,
}

/// The delivery being applied, as the ledger knows it.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    /// Ledger row id.
    pub id: i64,
    /// When it was received.
    pub received_at: DateTime<Utc>,
    /// Its `terra-reference` header (large requests).
    pub terra_reference: Option<&'a str>,
    /// Its `x-terra-ordering-timestamp`.
    pub ordering_ts: Option<i64>,
}

/// Applies what `event` says about users, connections, large requests and raw records.
pub async fn apply(
    conn: &mut PgConnection,
    delivery: &Delivery<'_>,
    event: &Event,
    policy: RevokedDataPolicy,
) -> Result<(), sqlx::Error> {
    let about = |user| facts_about(user, delivery);
    let scopes_of = |user: &TerraUser| Some(user.scopes().map(str::to_owned).collect::<Vec<_>>());

    match event {
        Event::Auth(
            e @ AuthEvent {
                user: Some(user), ..
            },
        ) if e.is_success() => {
            // The older form carries reference_id at the top level.
            let reference_id = user.reference_id.as_deref().or(e.reference_id.as_deref());
            sql::upsert_user(
                conn,
                &UserUpdate {
                    reference_id,
                    scopes: scopes_of(user),
                    status: Some("connected"),
                    status_reason: e.message.as_deref(),
                    active: Some(true),
                    ..about(user)
                },
            )
            .await?;
        }
        Event::Auth(e) => {
            // The legacy error form (or a success without a user): no usable user.
            let user_reference = e.user.as_ref().and_then(|u| u.reference_id.as_deref());
            let attempt = sql::AuthAttempt {
                event_id: delivery.id,
                event_type: "auth",
                reference_id: user_reference.or(e.reference_id.as_deref()),
                reason: e.reason.as_deref(),
                flow_id: e.flow_id.as_deref(),
                message: e.message.as_deref(),
                received_at: delivery.received_at,
            };
            sql::record_auth_attempt(conn, &attempt).await?;
        }
        Event::AuthCancelled(e) => {
            let attempt = sql::AuthAttempt {
                event_id: delivery.id,
                event_type: "auth_cancelled",
                reference_id: e.reference_id.as_deref(),
                reason: e.reason.as_deref(),
                flow_id: e.flow_id.as_deref(),
                message: None,
                received_at: delivery.received_at,
            };
            sql::record_auth_attempt(conn, &attempt).await?;
        }
        Event::Deauth(e) => {
            revoke(
                conn,
                delivery,
                &e.user,
                "deauthenticated",
                e.message.as_deref(),
                policy,
            )
            .await?;
        }
        Event::AccessRevoked(e) => {
            revoke(
                conn,
                delivery,
                &e.user,
                "access_revoked",
                e.message.as_deref(),
                policy,
            )
            .await?;
        }
        Event::ConnectionError(e) => {
            sql::upsert_user(
                conn,
                &UserUpdate {
                    status: Some("connection_error"),
                    status_reason: e.message.as_deref(),
                    ..about(&e.user)
                },
            )
            .await?;
        }
        Event::PermissionChange(e) => {
            let mut scopes = sql::scopes(conn, &e.user.user_id).await?;
            if scopes.is_empty() {
                scopes = e.user.scopes().map(str::to_owned).collect();
            }
            let scopes = apply_scope_change(scopes, e.scopes_added(), e.scopes_removed());
            sql::upsert_user(
                conn,
                &UserUpdate {
                    scopes: Some(scopes),
                    ..about(&e.user)
                },
            )
            .await?;
        }
        Event::UserReauth(e) => {
            sql::upsert_user(
                conn,
                &UserUpdate {
                    scopes: scopes_of(&e.new_user),
                    status: Some("connected"),
                    active: Some(true),
                    ..about(&e.new_user)
                },
            )
            .await?;
            if let Some(old) = e
                .old_user
                .as_ref()
                .filter(|o| o.user_id != e.new_user.user_id)
            {
                // The old user may never have been seen (its auth predates this service).
                sql::upsert_user(conn, &about(old)).await?;
                sql::rekey_user(conn, &old.user_id, &e.new_user.user_id).await?;
                sql::mark_replaced(conn, &old.user_id, &e.new_user.user_id, delivery.id).await?;
            }
        }
        Event::LargeRequestProcessing(e) => {
            sql::upsert_user(conn, &about(&e.user)).await?;
            if let Some(reference) = e.reference.as_deref().or(delivery.terra_reference) {
                let user = Some(e.user.user_id.as_str());
                let news = LargeRequestNews::Processing;
                sql::large_request(conn, reference, user, &news, delivery.received_at).await?;
            }
        }
        Event::LargeRequestSending(e) => {
            sql::upsert_user(conn, &about(&e.user)).await?;
            let reference = e.reference.as_deref().or(delivery.terra_reference);
            let expected = e.expected_payloads.and_then(|n| n.as_i64());
            if let (Some(reference), Some(expected)) = (reference, expected) {
                let user = Some(e.user.user_id.as_str());
                let news = LargeRequestNews::Sending {
                    expected: i32::try_from(expected).unwrap_or(i32::MAX),
                };
                sql::large_request(conn, reference, user, &news, delivery.received_at).await?;
            }
        }
        Event::PlannedWorkout(e) => {
            sql::upsert_user(conn, &about(&e.user)).await?;
            for item in &e.data {
                let key = first_str(
                    item,
                    &["/planned_workout_id", "/details/metadata/id", "/workout_id"],
                );
                let planned_date =
                    first_str(item, &["/planned_date", "/details/metadata/planned_date"]);
                raw_record(
                    conn,
                    delivery,
                    &e.user,
                    RawTable::PlannedWorkouts,
                    item,
                    key,
                    None,
                    planned_date,
                )
                .await?;
            }
        }
        Event::Hormone(e) => {
            sql::upsert_user(conn, &about(&e.user)).await?;
            for item in &e.data {
                let ts = first_str(item, &["/timestamp"]);
                raw_record(
                    conn,
                    delivery,
                    &e.user,
                    RawTable::HormoneSamples,
                    item,
                    ts,
                    ts,
                    None,
                )
                .await?;
            }
        }
        Event::HealthObservation(e) => {
            sql::upsert_user(conn, &about(&e.user)).await?;
            for item in &e.data {
                let key = first_str(item, &["/metadata/summary_id", "/metadata/start_time"]);
                let start = first_str(item, &["/metadata/start_time"]);
                raw_record(
                    conn,
                    delivery,
                    &e.user,
                    RawTable::HealthObservations,
                    item,
                    key,
                    start,
                    None,
                )
                .await?;
            }
        }
        Event::LabReportCompleted(_) | Event::LabReportFailed(_) => {
            lab_report(conn, delivery, event).await?;
        }
        other => {
            // Data events and anything else carrying a user: a user never seen before is
            // created from the payload, and its last-delivery time is kept current.
            if let Some(user) = other.user() {
                sql::upsert_user(
                    conn,
                    &UserUpdate {
                        scopes_if_new: scopes_of(user),
                        ..about(user)
                    },
                )
                .await?;
            }
        }
    }

    // Any data delivery carrying a terra-reference is a chunk of a large request (the
    // announcements and the ping itself are not; a ping's download is).
    let is_chunk = !matches!(
        event,
        Event::LargeRequestProcessing(_) | Event::LargeRequestSending(_) | Event::S3Payload(_)
    );
    if let (true, Some(reference)) = (is_chunk, delivery.terra_reference) {
        let user = event.user_id();
        let news = LargeRequestNews::Chunk {
            delivery_id: delivery.id,
        };
        sql::large_request(conn, reference, user, &news, delivery.received_at).await?;
    }
    Ok(())
}

/// The user a health-data event belongs to, for rewriting it to the user's current id (after a
/// `user_reauth`, late or reprocessed data of the old id belongs to the new one).
pub fn data_user_mut(event: &mut Event) -> Option<&mut TerraUser> {
    match event {
        Event::Activity(e) => Some(&mut e.user),
        Event::Body(e) => Some(&mut e.user),
        Event::Daily(e) => Some(&mut e.user),
        Event::Menstruation(e) => Some(&mut e.user),
        Event::Nutrition(e) => Some(&mut e.user),
        Event::Sleep(e) => Some(&mut e.user),
        Event::Athlete(e) => Some(&mut e.user),
        Event::PlannedWorkout(e) => Some(&mut e.user),
        Event::Hormone(e) => Some(&mut e.user),
        Event::HealthObservation(e) => Some(&mut e.user),
        _ => None,
    }
}

/// What every event carrying `user` says about it: it exists, with this provider and reference.
fn facts_about<'a>(user: &'a TerraUser, delivery: &Delivery<'_>) -> UserUpdate<'a> {
    UserUpdate {
        user_id: &user.user_id,
        provider: user.provider.as_deref(),
        reference_id: user.reference_id.as_deref(),
        received_at: delivery.received_at,
        event_id: delivery.id,
        ..UserUpdate::default()
    }
}

async fn revoke(
    conn: &mut PgConnection,
    delivery: &Delivery<'_>,
    user: &TerraUser,
    status: &str,
    message: Option<&str>,
    policy: RevokedDataPolicy,
) -> Result<(), sqlx::Error> {
    sql::upsert_user(
        conn,
        &UserUpdate {
            user_id: &user.user_id,
            provider: user.provider.as_deref(),
            reference_id: user.reference_id.as_deref(),
            status: Some(status),
            status_reason: message,
            active: Some(false),
            received_at: delivery.received_at,
            event_id: delivery.id,
            scopes: None,
            scopes_if_new: None,
        },
    )
    .await?;
    if policy == RevokedDataPolicy::Delete {
        let deleted = sql::delete_user_data(conn, &user.user_id, delivery.id).await?;
        tracing::info!(user_id = %user.user_id, status, deleted, "deleted the user's health data (policy: delete)");
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn raw_record(
    conn: &mut PgConnection,
    delivery: &Delivery<'_>,
    user: &TerraUser,
    table: RawTable,
    item: &Value,
    key: Option<&str>,
    time: Option<&str>,
    planned_date: Option<&str>,
) -> Result<(), sqlx::Error> {
    let text = serde_json::to_string(item).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    // A record without its own id is keyed by its content, so it is never dropped.
    let key = key.map_or_else(
        || format!("sha256:{}", hex::encode(Sha256::digest(&text))),
        str::to_owned,
    );
    let data = jsonb_text(&text);
    sql::upsert_raw(
        conn,
        table,
        &RawRecord {
            user_id: &user.user_id,
            record_key: &key,
            provider: user.provider.as_deref(),
            time: time.and_then(parse_instant),
            planned_date,
            data: &data,
            ordering_ts: delivery.ordering_ts,
            event_id: delivery.id,
        },
    )
    .await
}

async fn lab_report(
    conn: &mut PgConnection,
    delivery: &Delivery<'_>,
    event: &Event,
) -> Result<(), sqlx::Error> {
    let value = event
        .to_value()
        .map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    let text = serde_json::to_string(&value).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    let terra_event_id = first_str(&value, &["/event_id"]).map_or_else(
        || format!("sha256:{}", hex::encode(Sha256::digest(&text))),
        str::to_owned,
    );
    let data = jsonb_text(&text);
    sql::upsert_lab_report(
        conn,
        &sql::LabReport {
            terra_event_id: &terra_event_id,
            event_type: event.type_name().unwrap_or("lab_report"),
            upload_id: first_str(&value, &["/upload_id"]),
            session_id: first_str(&value, &["/data/session_id"]),
            reference_id: first_str(&value, &["/data/reference_id"]),
            occurred_at: first_str(&value, &["/occurred_at"]).and_then(parse_instant),
            data: &data,
            event_id: delivery.id,
        },
    )
    .await
}

/// The first of `pointers` that leads to a non-empty string.
fn first_str<'v>(value: &'v Value, pointers: &[&str]) -> Option<&'v str> {
    pointers.iter().find_map(|p| {
        value
            .pointer(p)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    })
}

/// An RFC 3339 instant; a time without an offset is not an instant and gives `None`.
fn parse_instant(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Scopes after a `permission_change`: removed ones dropped, added ones appended, no repeats.
pub fn apply_scope_change<'a>(
    current: Vec<String>,
    added: impl Iterator<Item = &'a str>,
    removed: impl Iterator<Item = &'a str>,
) -> Vec<String> {
    let removed: Vec<&str> = removed.collect();
    let mut scopes: Vec<String> = current
        .into_iter()
        .filter(|s| !removed.contains(&s.as_str()))
        .collect();
    for scope in added {
        if !scopes.iter().any(|s| s == scope) {
            scopes.push(scope.to_owned());
        }
    }
    scopes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_changes() {
        let current = vec!["ACTIVITY".to_owned(), "SLEEP".to_owned()];
        let after = apply_scope_change(
            current,
            ["DAILY", "SLEEP"].into_iter(),
            ["ACTIVITY"].into_iter(),
        );
        assert_eq!(after, vec!["SLEEP".to_owned(), "DAILY".to_owned()]);
        assert!(apply_scope_change(vec![], std::iter::empty(), ["X"].into_iter()).is_empty());
    }

    #[test]
    fn pointers_and_instants() {
        let v: Value = serde_json::json!({"a": "", "b": {"c": "x"}});
        assert_eq!(first_str(&v, &["/a", "/b/c"]), Some("x"));
        assert_eq!(first_str(&v, &["/zz"]), None);
        assert!(parse_instant("2026-11-01T10:00:00+02:00").is_some());
        assert!(parse_instant("2026-11-01T10:00:00").is_none());
    }
}
