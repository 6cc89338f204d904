//! Typed storage (issue 4): writes every record a decoded Terra event carries into the typed
//! tables of the `terra` schema, inside the caller's transaction.
//!
//! Rules (see also `migrations/20261123000002_typed_store.sql` and the README's "Querying your data"):
//! - one row per record, keyed per user: activity and sleep by `metadata.summary_id` (else
//!   `start_time:<metadata.start_time>`, else the SHA-256 of the record's JSON text); daily,
//!   body, nutrition and menstruation by the day (first 10 characters of `metadata.start_time`,
//!   else the SHA-256); athlete by user. A record is never dropped for lack of a key.
//! - a copy replaces the stored row when its ordering timestamp is >= the stored one or either
//!   is missing; an older copy changes nothing (counted in [`Applied::records_skipped`]).
//! - a replaced record's samples are deleted and rewritten in the same transaction, under the
//!   row lock the upsert took, so concurrent workers never leave stale or doubled samples.
//! - `data` is the record's own JSON text taken from the raw body (not a re-encoding), with
//!   `\u0000` escapes made acceptable to jsonb ([`rows::jsonb_text`]).
//! - Terra-computed `data_enrichment` scores are never erased by a later copy that has them null.

pub mod rows;

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;
use sqlx::PgConnection;

use crate::db::store::{self as sql, Meta, Upserted};
use crate::model::{Event, TerraUser};
use rows::{Samples, Table};

/// Provenance of the records being written: the ledger row and Terra's ordering header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Source {
    /// `terra.deliveries.id` of the delivery being applied (stored as `event_id`).
    pub delivery_id: i64,
    /// Its `x-terra-ordering-timestamp`, in milliseconds.
    pub ordering_ts: Option<i64>,
}

/// What [`apply`] wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    /// Records inserted or replaced.
    pub records_written: u64,
    /// Records left alone because the stored copy has a newer ordering timestamp.
    pub records_skipped: u64,
    /// Rows written to `terra.samples`.
    pub samples_written: u64,
    /// Samples of written records left out of `terra.samples` for lack of a usable timestamp
    /// or value (they remain in the record's `data`).
    pub samples_skipped: u64,
}

/// Why [`apply`] failed. Nothing was half-written that the caller's rollback does not undo.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed (connection, timeout, serialization failure…): worth retrying.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The raw body does not hold the records the decoded event has (it was not the body the
    /// event was decoded from): retrying the same input cannot help.
    #[error("body does not match the decoded event: {0}")]
    BodyMismatch(String),
}

impl StoreError {
    /// True when retrying the same delivery cannot succeed.
    pub fn is_permanent(&self) -> bool {
        matches!(self, StoreError::BodyMismatch(_))
    }
}

/// The body's `data` array, each element borrowed as its exact JSON text.
#[derive(Deserialize)]
struct RawRecords<'a> {
    #[serde(borrow)]
    data: Vec<&'a RawValue>,
}

/// The body's `athlete` object, borrowed as its exact JSON text.
#[derive(Deserialize)]
struct RawAthlete<'a> {
    #[serde(borrow, default)]
    athlete: Option<&'a RawValue>,
}

fn raw_records(body: &[u8], expected: usize) -> Result<Vec<&RawValue>, StoreError> {
    let raw: RawRecords<'_> =
        serde_json::from_slice(body).map_err(|e| StoreError::BodyMismatch(e.to_string()))?;
    if raw.data.len() != expected {
        return Err(StoreError::BodyMismatch(format!(
            "the body has {} records, the event {expected}",
            raw.data.len()
        )));
    }
    Ok(raw.data)
}

/// The user's id and provider as `text` accepts them (see [`rows::pg_text`]).
fn user_text(user: &TerraUser) -> (Cow<'_, str>, Option<Cow<'_, str>>) {
    (
        rows::pg_text(&user.user_id),
        user.provider.as_deref().map(rows::pg_text),
    )
}

fn meta<'a>(
    user: &'a (Cow<'a, str>, Option<Cow<'a, str>>),
    data: &'a str,
    source: &Source,
) -> Meta<'a> {
    Meta {
        user_id: &user.0,
        provider: user.1.as_deref(),
        data,
        ordering_ts: source.ordering_ts,
        event_id: source.delivery_id,
    }
}

/// Counts an upsert and, when it wrote, replaces the record's samples.
async fn finish(
    conn: &mut PgConnection,
    applied: &mut Applied,
    upserted: Upserted,
    user_id: &str,
    table: Table,
    record_key: &str,
    samples: impl FnOnce() -> Samples,
) -> Result<(), StoreError> {
    if upserted == Upserted::Older {
        tracing::debug!(table = table.as_str(), record_key, "older copy skipped");
        applied.records_skipped += 1;
        return Ok(());
    }
    applied.records_written += 1;
    let samples = samples();
    applied.samples_skipped += samples.skipped;
    applied.samples_written +=
        sql::replace_samples(conn, user_id, table.as_str(), record_key, &samples).await?;
    Ok(())
}

/// Writes the records of one data event: map each, upsert it, then replace its samples.
macro_rules! apply_records {
    ($conn:expr, $applied:expr, $source:expr, $body:expr, $event:expr,
     $table:expr, $row:path, $upsert:path, $samples:path) => {{
        let event = $event;
        let raws = raw_records($body, event.data.len())?;
        let user = user_text(&event.user);
        for (record, raw) in event.data.iter().zip(raws) {
            let raw = raw.get();
            let row = $row(record, raw);
            let data = rows::jsonb_text(raw);
            let upserted = $upsert(&mut *$conn, &meta(&user, &data, $source), &row).await?;
            finish(
                &mut *$conn,
                $applied,
                upserted,
                &user.0,
                $table,
                &row.common.record_key,
                || $samples(record),
            )
            .await?;
        }
    }};
}

/// Writes every typed row an event carries, inside the caller's transaction.
///
/// `body` must be the raw body `event` was decoded from: each record's `data` is taken from it
/// verbatim. Events other than the six data types and `athlete` write nothing.
pub async fn apply(
    conn: &mut PgConnection,
    source: &Source,
    event: &Event,
    body: &[u8],
) -> Result<Applied, StoreError> {
    let mut applied = Applied::default();
    let a = &mut applied;
    match event {
        Event::Activity(e) => apply_records!(
            conn,
            a,
            source,
            body,
            e,
            Table::Activity,
            rows::activity,
            sql::upsert_activity,
            rows::activity_samples
        ),
        Event::Sleep(e) => apply_records!(
            conn,
            a,
            source,
            body,
            e,
            Table::Sleep,
            rows::sleep,
            sql::upsert_sleep,
            rows::sleep_samples
        ),
        Event::Daily(e) => apply_records!(
            conn,
            a,
            source,
            body,
            e,
            Table::Daily,
            rows::daily,
            sql::upsert_daily,
            rows::daily_samples
        ),
        Event::Body(e) => apply_records!(
            conn,
            a,
            source,
            body,
            e,
            Table::Body,
            rows::body,
            sql::upsert_body,
            rows::body_samples
        ),
        Event::Nutrition(e) => apply_records!(
            conn,
            a,
            source,
            body,
            e,
            Table::Nutrition,
            rows::nutrition,
            sql::upsert_nutrition,
            rows::nutrition_samples
        ),
        Event::Menstruation(e) => apply_records!(
            conn,
            a,
            source,
            body,
            e,
            Table::Menstruation,
            rows::menstruation,
            sql::upsert_menstruation,
            rows::menstruation_samples
        ),
        Event::Athlete(e) => {
            let raw: RawAthlete<'_> = serde_json::from_slice(body)
                .map_err(|err| StoreError::BodyMismatch(err.to_string()))?;
            // No profile in the event (absent or null): nothing to store; the ledger has it.
            let (Some(raw), Some(athlete)) = (raw.athlete, e.athlete.as_ref()) else {
                return Ok(applied);
            };
            if athlete.is_null() {
                return Ok(applied);
            }
            let data = rows::jsonb_text(raw.get());
            let row = rows::athlete(athlete);
            let user = user_text(&e.user);
            match sql::upsert_athlete(conn, &meta(&user, &data, source), &row).await? {
                Upserted::Older => a.records_skipped += 1,
                Upserted::Inserted | Upserted::Replaced => a.records_written += 1,
            }
        }
        // Lifecycle and other events are not typed records: `crate::lifecycle` handles them.
        _ => {}
    }
    Ok(applied)
}
