//! Writing a decoded batch in the claim's transaction: users locked first (in one order),
//! lifecycle events in delivery order, then every table set-based. A failing delivery is
//! isolated by splitting its part of the batch (savepoints), so batch-mates are not held back.

use std::collections::{HashMap, HashSet};
use std::ops::Range;

use sqlx::{Connection, PgConnection};

use super::decode::{Item, Work};
use crate::db::is_outage;
use crate::ledger::{self, NewDelivery};
use crate::lifecycle::{self, requests, users, RevokedDataPolicy};
use crate::store::{self, Applied, PgText};

/// Why a part of a batch could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// A statement failed (a delivery's data, or the database).
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// A user the batch writes for was re-keyed meanwhile by another batch: the users it locked
    /// are not the ones it must write; the whole batch starts again.
    #[error("a user was re-keyed by a concurrent batch")]
    UsersMoved,
}

impl WriteError {
    /// True when the database itself failed (connection lost, shutting down…): nothing can
    /// be written now, and splitting the batch would not help.
    pub fn is_outage(&self) -> bool {
        match self {
            Self::UsersMoved => false,
            Self::Database(err) => is_outage(err),
        }
    }
}

/// What the write decided for a delivery.
#[derive(Debug, Clone, PartialEq)]
pub enum Written {
    /// Its effects are in the transaction.
    Done,
    /// Its user's data was deleted by the delete policy: it was not stored, and its ledger row
    /// is gone.
    Discarded,
    /// It failed on its own, with this error.
    Failed(String),
}

/// The batch's users, locked before anything else is written.
pub struct Locked {
    ids: HashSet<PgText>,
}

/// Locks every user `items` name, and the users their data currently goes to.
pub async fn lock_users(conn: &mut PgConnection, items: &[Item]) -> Result<Locked, sqlx::Error> {
    let raw: Vec<&str> = data_users(items).map(|u| u.as_str()).collect();
    let current = users::current(conn, &raw).await?;
    let mut seeds = Vec::new();
    for item in items {
        seeds.extend(item.lifecycle_seeds());
        if let Some(user) = item.user() {
            seeds.push(user.seed(&user.user_id, &item.origin));
            if let Some(now) = current.get(&user.user_id) {
                seeds.push(user.seed(&now.user_id, &item.origin));
            }
        }
    }
    users::lock(conn, &seeds).await?;
    Ok(Locked {
        ids: seeds.into_iter().map(|s| s.user_id).collect(),
    })
}

fn data_users(items: &[Item]) -> impl Iterator<Item = &PgText> {
    items.iter().filter_map(|i| i.user().map(|u| &u.user_id))
}

/// Writes `items` (a part of the batch, in delivery order) inside the caller's transaction.
pub async fn write(
    conn: &mut PgConnection,
    items: &[Item],
    locked: &Locked,
    children: &HashMap<i64, NewDelivery>,
    policy: RevokedDataPolicy,
) -> Result<(Applied, Vec<Written>), WriteError> {
    let mut discarded = HashSet::new();
    let events = items.iter().filter_map(|i| match &i.work {
        Work::Lifecycle(event) => Some(&**event),
        _ => None,
    });
    let erased = lifecycle::erased_among(conn, events).await?;
    for (i, item) in items.iter().enumerate() {
        if let Work::Lifecycle(event) = &item.work {
            if lifecycle::is_erased(conn, &item.origin, event, &erased).await? {
                discarded.insert(i);
            } else {
                lifecycle::apply(conn, &item.origin, event, policy).await?;
            }
        }
    }
    let raw: Vec<&str> = data_users(items).map(|u| u.as_str()).collect();
    let current = users::current(conn, &raw).await?;
    if current.values().any(|c| !locked.ids.contains(&c.user_id)) {
        return Err(WriteError::UsersMoved);
    }
    discarded.extend((0..items.len()).filter(|&i| is_discarded(&items[i], &current)));
    let rekeyed: HashMap<PgText, PgText> = current
        .iter()
        .filter(|(from, to)| **from != to.user_id)
        .map(|(from, to)| (from.clone(), to.user_id.clone()))
        .collect();

    let kept = || {
        (0..items.len())
            .filter(|i| !discarded.contains(i))
            .map(|i| &items[i])
    };
    users::touch(conn, &users::fold(facts(kept(), &rekeyed))).await?;
    let mut batch = store::Batch::default();
    for item in kept() {
        if let Work::Data { records, .. } = &item.work {
            batch.add(records.clone());
        }
    }
    batch.rekey_users(&rekeyed);
    let applied = batch.write(conn).await?;
    let news: Vec<requests::News> = kept().filter_map(|i| i.news.clone()).collect();
    requests::record(conn, &news).await?;
    let downloads: Vec<NewDelivery> = kept()
        .filter_map(|i| children.get(&i.origin.delivery_id).cloned())
        .collect();
    if !downloads.is_empty() {
        ledger::insert(conn, &downloads).await?;
    }
    let gone: Vec<i64> = discarded
        .iter()
        .map(|&i| items[i].origin.delivery_id)
        .collect();
    if !gone.is_empty() {
        ledger::delete(conn, &gone).await?;
    }
    let written = (0..items.len())
        .map(|i| match discarded.contains(&i) {
            true => Written::Discarded,
            false => Written::Done,
        })
        .collect();
    Ok((applied, written))
}

/// Data for a user whose newest lifecycle event deleted their data is not stored.
fn is_discarded(item: &Item, current: &HashMap<PgText, users::Current>) -> bool {
    let Work::Data {
        user: Some(user), ..
    } = &item.work
    else {
        return false;
    };
    current.get(&user.user_id).is_some_and(|c| c.data_deleted)
}

/// What each delivery says about its user, under the user's current id.
fn facts<'a>(
    items: impl Iterator<Item = &'a Item>,
    rekeyed: &HashMap<PgText, PgText>,
) -> Vec<users::Facts> {
    items
        .filter_map(|item| {
            let user = item.user()?;
            // Only data is re-keyed; other events speak of the id they name.
            let moves = matches!(item.work, Work::Data { .. });
            let user_id = match (moves, rekeyed.get(&user.user_id)) {
                (true, Some(now)) => now.clone(),
                _ => user.user_id.clone(),
            };
            Some(users::Facts {
                user_id,
                provider: user.provider.clone(),
                reference_id: user.reference_id.clone(),
                received_at: item.origin.received_at,
                event_id: item.origin.delivery_id,
            })
        })
        .collect()
}

/// Writes `items`, isolating failures: a part that fails is rolled back to its savepoint and
/// split in two, down to the single delivery that fails, which gets its own error; every
/// other part stays in the transaction. Returns each item's outcome.
pub async fn write_isolated(
    tx: &mut PgConnection,
    items: &[Item],
    locked: &Locked,
    children: &HashMap<i64, NewDelivery>,
    policy: RevokedDataPolicy,
) -> Result<(Applied, Vec<Written>), WriteError> {
    let mut applied = Applied::default();
    let mut outcomes: Vec<Option<Written>> = vec![None; items.len()];
    // Parts in delivery order: the next part is the last pushed.
    let mut parts: Vec<Range<usize>> = Vec::new();
    parts.push(0..items.len());
    while let Some(part) = parts.pop() {
        if part.is_empty() {
            continue;
        }
        let mut savepoint = tx.begin().await?;
        match write(
            &mut savepoint,
            &items[part.clone()],
            locked,
            children,
            policy,
        )
        .await
        {
            Ok((part_applied, written)) => {
                savepoint.commit().await?;
                applied += part_applied;
                for (slot, w) in outcomes[part].iter_mut().zip(written) {
                    *slot = Some(w);
                }
            }
            Err(err) if err.is_outage() || matches!(err, WriteError::UsersMoved) => {
                return Err(err)
            }
            Err(err) => {
                savepoint.rollback().await?;
                if part.len() == 1 {
                    outcomes[part.start] = Some(Written::Failed(err.to_string()));
                } else {
                    let mid = part.start + part.len() / 2;
                    parts.push(mid..part.end);
                    parts.push(part.start..mid);
                }
            }
        }
    }
    let written = outcomes
        .into_iter()
        .map(|o| o.unwrap_or(Written::Failed("not written".to_owned())))
        .collect();
    Ok((applied, written))
}
