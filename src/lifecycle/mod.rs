//! The account side of Terra: users and their connection status, failed connection attempts,
//! and large historical requests.
//!
//! The worker applies a batch's lifecycle events one by one, in delivery order, inside the
//! batch's transaction and after it locked every user the batch names ([`users::lock`]); a
//! user's status follows the newest event by ordering timestamp, whatever the arrival order.

mod forget;
pub mod requests;
pub mod users;

pub use forget::{forget, ForgetRequest, Forgotten};

use std::collections::HashSet;

use sqlx::PgConnection;

use crate::ledger::Provenance;
use crate::model::{
    AuthEvent, ConnectionErrorEvent, Event, PermissionChangeEvent, TerraUser, UserReauthEvent,
};
use crate::store::PgText;
use requests::{AuthAttempt, News, NewsKind};
use users::{Status, Update};

/// What happens to a user's stored health data on `deauth` and `access_revoked`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RevokedDataPolicy {
    /// Keep everything; only the user's status changes.
    #[default]
    Keep,
    /// Delete every health-data row of the user (typed tables and ledger bodies) in the same
    /// transaction that records the status; data arriving later is not stored until a newer
    /// `auth`.
    Delete,
}

/// True for the events that change a user's connection (applied by [`apply`]).
pub fn is_lifecycle(event: &Event) -> bool {
    matches!(
        event,
        Event::Auth(_)
            | Event::AuthCancelled(_)
            | Event::Deauth(_)
            | Event::AccessRevoked(_)
            | Event::ConnectionError(_)
            | Event::PermissionChange(_)
            | Event::UserReauth(_)
    )
}

/// Every user a lifecycle event names (the batch locks them before applying it).
pub fn users_named(event: &Event) -> Vec<&TerraUser> {
    match event {
        Event::UserReauth(e) => std::iter::once(&e.new_user)
            .chain(e.old_user.as_ref())
            .collect(),
        other => other.user().into_iter().collect(),
    }
}

/// The users `events` name that `forget` erased (see [`is_erased`]). Applying lifecycle
/// events never erases a user, so while they are applied this set can only grow smaller.
pub async fn erased_among<'a>(
    conn: &mut PgConnection,
    events: impl Iterator<Item = &'a Event>,
) -> Result<HashSet<String>, sqlx::Error> {
    let named: Vec<PgText> = events
        .flat_map(users_named)
        .map(|u| PgText::new(&u.user_id))
        .collect();
    let named: Vec<&str> = named.iter().map(PgText::as_str).collect();
    users::forgotten(conn, &named).await
}

/// True when a user the event names was erased by `forget` and the event may not bring it
/// back (only a newer `auth` does): such an event is acknowledged and not stored. Only users
/// in `erased` (from [`erased_among`]) are looked up.
pub async fn is_erased(
    conn: &mut PgConnection,
    origin: &Provenance,
    event: &Event,
    erased: &HashSet<String>,
) -> Result<bool, sqlx::Error> {
    let is_auth = matches!(event, Event::Auth(_));
    for user in users_named(event) {
        if !erased.contains(PgText::new(&user.user_id).as_str()) {
            continue;
        }
        if users::stays_forgotten(conn, &user.user_id, origin.ordering_ts, is_auth).await? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Applies one lifecycle event (other events are left alone).
pub async fn apply(
    conn: &mut PgConnection,
    origin: &Provenance,
    event: &Event,
    policy: RevokedDataPolicy,
) -> Result<(), sqlx::Error> {
    match event {
        Event::Auth(e) => auth(conn, origin, e).await,
        Event::AuthCancelled(e) => {
            let attempt = AuthAttempt {
                event_id: origin.delivery_id,
                event_type: "auth_cancelled",
                reference_id: e.reference_id.as_deref(),
                reason: e.reason.as_deref(),
                flow_id: e.flow_id.as_deref(),
                message: None,
                received_at: origin.received_at,
            };
            requests::record_auth_attempt(conn, &attempt).await
        }
        Event::Deauth(e) => {
            let message = e.message.as_deref();
            revoke(
                conn,
                origin,
                &e.user,
                Status::Deauthenticated,
                message,
                policy,
            )
            .await
        }
        Event::AccessRevoked(e) => {
            let message = e.message.as_deref();
            revoke(
                conn,
                origin,
                &e.user,
                Status::AccessRevoked,
                message,
                policy,
            )
            .await
        }
        Event::ConnectionError(e) => connection_error(conn, origin, e).await,
        Event::PermissionChange(e) => permission_change(conn, origin, e).await,
        Event::UserReauth(e) => reauth(conn, origin, e).await,
        _ => Ok(()),
    }
}

/// What every event carrying `user` says about it: it exists, with this provider and reference.
fn about<'a>(user: &'a TerraUser, origin: &Provenance) -> Update<'a> {
    Update {
        user_id: &user.user_id,
        provider: user.provider.as_deref(),
        reference_id: user.reference_id.as_deref(),
        ordering_ts: origin.ordering_ts,
        event_id: origin.delivery_id,
        ..Update::default()
    }
}

fn scopes_of(user: &TerraUser) -> Option<Vec<PgText>> {
    Some(user.scopes().map(PgText::new).collect())
}

/// `auth`: a success connects the user; the legacy error form (or a success without a user)
/// is a failed attempt.
async fn auth(
    conn: &mut PgConnection,
    origin: &Provenance,
    e: &AuthEvent,
) -> Result<(), sqlx::Error> {
    if let (true, Some(user)) = (e.is_success(), e.user.as_ref()) {
        // The older form carries reference_id at the top level.
        let reference_id = user.reference_id.as_deref().or(e.reference_id.as_deref());
        let update = Update {
            reference_id,
            scopes: scopes_of(user),
            status: Some((Status::Connected, e.message.as_deref())),
            ..about(user, origin)
        };
        users::update(conn, &update).await?;
        return Ok(());
    }
    let user_reference = e.user.as_ref().and_then(|u| u.reference_id.as_deref());
    let attempt = AuthAttempt {
        event_id: origin.delivery_id,
        event_type: "auth",
        reference_id: user_reference.or(e.reference_id.as_deref()),
        reason: e.reason.as_deref(),
        flow_id: e.flow_id.as_deref(),
        message: e.message.as_deref(),
        received_at: origin.received_at,
    };
    requests::record_auth_attempt(conn, &attempt).await
}

/// `deauth` and `access_revoked`: the user is inactive; under the delete policy its health
/// data goes too — but only when this event is the newest word on the user.
async fn revoke(
    conn: &mut PgConnection,
    origin: &Provenance,
    user: &TerraUser,
    status: Status,
    message: Option<&str>,
    policy: RevokedDataPolicy,
) -> Result<(), sqlx::Error> {
    let update = Update {
        status: Some((status, message)),
        ..about(user, origin)
    };
    let newest = users::update(conn, &update).await?;
    if newest && policy == RevokedDataPolicy::Delete {
        let deleted = users::delete_data(conn, &user.user_id, origin.delivery_id).await?;
        tracing::info!(user_id = %user.user_id, status = status.as_str(), deleted, "deleted the user's health data (policy: delete)");
    }
    Ok(())
}

async fn connection_error(
    conn: &mut PgConnection,
    origin: &Provenance,
    e: &ConnectionErrorEvent,
) -> Result<(), sqlx::Error> {
    let update = Update {
        status: Some((Status::ConnectionError, e.message.as_deref())),
        ..about(&e.user, origin)
    };
    users::update(conn, &update).await.map(drop)
}

async fn permission_change(
    conn: &mut PgConnection,
    origin: &Provenance,
    e: &PermissionChangeEvent,
) -> Result<(), sqlx::Error> {
    let mut scopes = users::scopes(conn, &e.user.user_id).await?;
    if scopes.is_empty() {
        scopes = e.user.scopes().map(PgText::new).collect();
    }
    let added = e.scopes_added().map(PgText::new);
    let removed: Vec<PgText> = e.scopes_removed().map(PgText::new).collect();
    let update = Update {
        scopes: Some(apply_scope_change(scopes, added, &removed)),
        ..about(&e.user, origin)
    };
    users::update(conn, &update).await.map(drop)
}

/// `user_reauth`: the new id is connected; the old one (possibly never seen: its auth may
/// predate this service) is replaced, and every row it holds moves to the new id.
async fn reauth(
    conn: &mut PgConnection,
    origin: &Provenance,
    e: &UserReauthEvent,
) -> Result<(), sqlx::Error> {
    let update = Update {
        scopes: scopes_of(&e.new_user),
        status: Some((Status::Connected, None)),
        ..about(&e.new_user, origin)
    };
    users::update(conn, &update).await?;
    let Some(old) = e
        .old_user
        .as_ref()
        .filter(|o| o.user_id != e.new_user.user_id)
    else {
        return Ok(());
    };
    let replaced = Update {
        status: Some((Status::Replaced, Some("user_reauth"))),
        ..about(old, origin)
    };
    users::update(conn, &replaced).await?;
    users::rekey(conn, &old.user_id, &e.new_user.user_id).await?;
    users::set_replaced_by(conn, &old.user_id, &e.new_user.user_id).await
}

/// What a delivery says about large requests: the announcements, and any other delivery that
/// carries a `terra-reference` is a chunk (a ping is not; its download is).
pub fn large_request_news(event: &Event, origin: &Provenance) -> Option<News> {
    let at = origin.received_at;
    let header = origin.terra_reference.as_deref();
    let (reference, user, kind) = match event {
        Event::LargeRequestProcessing(e) => {
            let reference = e.reference.as_deref().or(header)?;
            (reference, Some(&e.user), NewsKind::Processing)
        }
        Event::LargeRequestSending(e) => {
            let reference = e.reference.as_deref().or(header)?;
            let expected = e.expected_payloads.and_then(|n| n.as_i64())?;
            let expected = i32::try_from(expected).unwrap_or(i32::MAX);
            (reference, Some(&e.user), NewsKind::Sending { expected })
        }
        Event::S3Payload(_) => return None,
        other => {
            let chunk = NewsKind::Chunk {
                delivery_id: origin.delivery_id,
            };
            (header?, other.user(), chunk)
        }
    };
    Some(News {
        reference: reference.to_owned(),
        user_id: user.map(|u| u.user_id.clone()),
        received_at: at,
        kind,
    })
}

/// Scopes after a `permission_change`: removed ones dropped, added ones appended, no repeats.
pub fn apply_scope_change(
    current: Vec<PgText>,
    added: impl Iterator<Item = PgText>,
    removed: &[PgText],
) -> Vec<PgText> {
    let mut scopes: Vec<PgText> = current
        .into_iter()
        .filter(|s| !removed.contains(s))
        .collect();
    for scope in added {
        if !scopes.contains(&scope) {
            scopes.push(scope);
        }
    }
    scopes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_changes() {
        let t = |v: &[&str]| v.iter().map(|s| PgText::new(s)).collect::<Vec<_>>();
        let after = apply_scope_change(
            t(&["ACTIVITY", "SLEEP"]),
            t(&["DAILY", "SLEEP"]).into_iter(),
            &t(&["ACTIVITY"]),
        );
        assert_eq!(after, t(&["SLEEP", "DAILY"]));
        assert!(apply_scope_change(vec![], std::iter::empty(), &t(&["X"])).is_empty());
    }
}
