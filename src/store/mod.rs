//! Typed storage: every record a decoded Terra event carries, written into the typed tables of
//! the `terra` schema, a whole batch of deliveries at a time.
//!
//! Rules (see also the migrations and the README's "Querying your data"):
//! - one row per record, keyed per user: activity and sleep by `metadata.summary_id` (else
//!   `start_time:<metadata.start_time>`, else the SHA-256 of the record's JSON text); daily,
//!   body, nutrition and menstruation by the day (first 10 characters of `metadata.start_time`,
//!   else the SHA-256); athlete by user. A record is never dropped for lack of a key.
//! - a copy replaces the stored row when `terra.is_newer(its ordering timestamp, the stored
//!   one)`; an older copy changes nothing (counted in [`Applied::records_skipped`]). Copies of
//!   one record in one batch are applied in delivery order, exactly as across batches.
//! - a replaced record's samples are replaced with it, in the same transaction, under the row
//!   lock its upsert took.
//! - `data` is the record's own JSON text taken from the raw body (not a re-encoding), made
//!   acceptable to jsonb ([`text::jsonb_text`]); every text column goes through [`PgText`].
//! - Terra-computed `data_enrichment` scores are never erased by a later copy that has them null.
//!
//! [`plan`] is pure (it runs off the async runtime); [`Batch::write`] is the I/O.

mod activity;
mod athlete;
mod body;
mod convert;
mod daily;
mod menstruation;
mod nutrition;
mod raw;
mod samples;
mod sleep;
mod table;
#[cfg(test)]
mod tests;
pub(crate) mod text;

use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::value::RawValue;
use sqlx::PgConnection;

use crate::ledger::Provenance;
use crate::model::{Event, TerraUser};
pub(crate) use activity::ActivityRow;
pub(crate) use athlete::AthleteRow;
pub(crate) use body::BodyRow;
pub(crate) use daily::DailyRow;
pub(crate) use menstruation::MenstruationRow;
pub(crate) use nutrition::NutritionRow;
pub(crate) use raw::{HealthObservationRow, HormoneRow, LabReportRow, PlannedWorkoutRow};
pub(crate) use samples::Samples;
pub(crate) use sleep::SleepRow;
pub(crate) use table::Record;
pub(crate) use text::PgText;

use table::Written;

/// What writing a batch's records produced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    /// Records inserted or replaced.
    pub records_written: u64,
    /// Records left alone because the stored copy is newer.
    pub records_skipped: u64,
    /// Samples written to `terra.sample_series`.
    pub samples_written: u64,
    /// Samples of written records left out for lack of a usable timestamp or value (they
    /// remain in the record's `data`).
    pub samples_skipped: u64,
}

impl std::ops::AddAssign for Applied {
    fn add_assign(&mut self, other: Self) {
        self.records_written += other.records_written;
        self.records_skipped += other.records_skipped;
        self.samples_written += other.samples_written;
        self.samples_skipped += other.samples_skipped;
    }
}

/// Why a delivery's records could not be stored.
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

/// Plans and writes the records of a single event (a batch of one) inside the caller's
/// transaction; the worker writes whole batches through [`Batch`].
pub async fn apply(
    conn: &mut PgConnection,
    origin: &Provenance,
    event: &Event,
    body: &[u8],
) -> Result<Applied, StoreError> {
    let mut batch = Batch::default();
    batch.add(plan(event, body, origin)?);
    Ok(batch.write(conn).await?)
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

/// A record of `user` with the provenance of its delivery.
fn record<R>(
    user: &TerraUser,
    origin: &Provenance,
    record_key: PgText,
    data: Arc<str>,
    row: R,
    samples: Samples,
) -> Record<R> {
    Record {
        user_id: PgText::new(&user.user_id),
        record_key,
        provider: text::opt(user.provider.as_deref()),
        data,
        delivery_id: origin.delivery_id,
        ordering_ts: origin.ordering_ts,
        row,
        samples: samples.into(),
    }
}

/// Maps the records of a data event, taking each record's JSON text from the raw body.
fn data_records<T, R>(
    user: &TerraUser,
    items: &[T],
    body: &[u8],
    origin: &Provenance,
    map: fn(&T, &str) -> (PgText, R),
    samples: fn(&T) -> Samples,
) -> Result<Vec<Record<R>>, StoreError> {
    let raws = raw_records(body, items.len())?;
    Ok(items
        .iter()
        .zip(raws)
        .map(|(item, raw)| {
            let raw = raw.get();
            let (key, row) = map(item, raw);
            let data = text::jsonb_text(raw).into();
            record(user, origin, key, data, row, samples(item))
        })
        .collect())
}

/// Maps raw-record items (kept whole) of a user.
fn raw_items<R>(
    user: &TerraUser,
    items: &[serde_json::Value],
    origin: &Provenance,
    map: fn(&serde_json::Value) -> (PgText, String, R),
) -> Vec<Record<R>> {
    items
        .iter()
        .map(|item| {
            let (key, json, row) = map(item);
            let data = text::jsonb_text(&json).into();
            record(user, origin, key, data, row, Samples::default())
        })
        .collect()
}

/// The records of one delivery, mapped to the rows of their table.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Records {
    /// Not a data event (lifecycle, healthcheck, …): nothing for the typed tables.
    #[default]
    None,
    /// `terra.activity` rows.
    Activity(Vec<Record<ActivityRow>>),
    /// `terra.sleep` rows.
    Sleep(Vec<Record<SleepRow>>),
    /// `terra.daily` rows.
    Daily(Vec<Record<DailyRow>>),
    /// `terra.body` rows.
    Body(Vec<Record<BodyRow>>),
    /// `terra.nutrition` rows.
    Nutrition(Vec<Record<NutritionRow>>),
    /// `terra.menstruation` rows.
    Menstruation(Vec<Record<MenstruationRow>>),
    /// The `terra.athlete` row.
    Athlete(Vec<Record<AthleteRow>>),
    /// `terra.planned_workouts` rows.
    PlannedWorkouts(Vec<Record<PlannedWorkoutRow>>),
    /// `terra.hormone_samples` rows.
    Hormones(Vec<Record<HormoneRow>>),
    /// `terra.health_observations` rows.
    HealthObservations(Vec<Record<HealthObservationRow>>),
    /// The `terra.lab_reports` row.
    LabReport(Vec<Record<LabReportRow>>),
}

/// Maps every record `event` carries (pure). `body` must be the raw body `event` was decoded
/// from: each data record's `data` is taken from it verbatim.
pub fn plan(event: &Event, body: &[u8], origin: &Provenance) -> Result<Records, StoreError> {
    Ok(match event {
        Event::Activity(e) => Records::Activity(data_records(
            &e.user,
            &e.data,
            body,
            origin,
            activity::map,
            activity::samples,
        )?),
        Event::Sleep(e) => Records::Sleep(data_records(
            &e.user,
            &e.data,
            body,
            origin,
            sleep::map,
            sleep::samples,
        )?),
        Event::Daily(e) => Records::Daily(data_records(
            &e.user,
            &e.data,
            body,
            origin,
            daily::map,
            daily::samples,
        )?),
        Event::Body(e) => Records::Body(data_records(
            &e.user,
            &e.data,
            body,
            origin,
            body::map,
            body::samples,
        )?),
        Event::Nutrition(e) => Records::Nutrition(data_records(
            &e.user,
            &e.data,
            body,
            origin,
            nutrition::map,
            nutrition::samples,
        )?),
        Event::Menstruation(e) => Records::Menstruation(data_records(
            &e.user,
            &e.data,
            body,
            origin,
            menstruation::map,
            menstruation::samples,
        )?),
        Event::Athlete(e) => plan_athlete(&e.user, e.athlete.as_ref(), body, origin)?,
        other => plan_raw(other, origin),
    })
}

/// The profile of an athlete event (nothing when it is absent or null; the ledger has it).
fn plan_athlete(
    user: &TerraUser,
    athlete: Option<&serde_json::Value>,
    body: &[u8],
    origin: &Provenance,
) -> Result<Records, StoreError> {
    let raw: RawAthlete<'_> =
        serde_json::from_slice(body).map_err(|e| StoreError::BodyMismatch(e.to_string()))?;
    let (Some(raw), Some(athlete)) = (raw.athlete, athlete) else {
        return Ok(Records::None);
    };
    if athlete.is_null() {
        return Ok(Records::None);
    }
    let data = text::jsonb_text(raw.get()).into();
    let row = athlete::map(athlete);
    let rec = record(user, origin, athlete::key(), data, row, Samples::default());
    Ok(Records::Athlete(vec![rec]))
}

/// The event types kept as raw records; other events have no records.
fn plan_raw(event: &Event, origin: &Provenance) -> Records {
    match event {
        Event::PlannedWorkout(e) => {
            Records::PlannedWorkouts(raw_items(&e.user, &e.data, origin, raw::planned_workout))
        }
        Event::Hormone(e) => Records::Hormones(raw_items(&e.user, &e.data, origin, raw::hormone)),
        Event::HealthObservation(e) => Records::HealthObservations(raw_items(
            &e.user,
            &e.data,
            origin,
            raw::health_observation,
        )),
        Event::LabReportCompleted(_) | Event::LabReportFailed(_) => {
            // Kept whole, re-encoded (the value is the lossless decoding of the body).
            let Ok(value) = event.to_value() else {
                return Records::None;
            };
            let event_type = event.type_name().unwrap_or("lab_report");
            let (key, json, row) = raw::lab_report(&value, event_type);
            let data = text::jsonb_text(&json).into();
            Records::LabReport(vec![Record {
                user_id: PgText::default(),
                record_key: key,
                provider: None,
                data,
                delivery_id: origin.delivery_id,
                ordering_ts: origin.ordering_ts,
                row,
                samples: Arc::default(),
            }])
        }
        _ => Records::None,
    }
}

impl Records {
    /// The user the records belong to (`None` for lab reports and non-data events).
    pub fn user_id(&self) -> Option<&PgText> {
        macro_rules! first_user {
            ($($v:ident),*) => {
                match self {
                    $( Records::$v(r) => r.first().map(|r| &r.user_id), )*
                    Records::LabReport(_) | Records::None => None,
                }
            };
        }
        first_user!(
            Activity,
            Sleep,
            Daily,
            Body,
            Nutrition,
            Menstruation,
            Athlete,
            PlannedWorkouts,
            Hormones,
            HealthObservations
        )
    }
}

/// The records of many deliveries, gathered per table, in delivery order.
#[derive(Debug, Default)]
pub struct Batch {
    activity: Vec<Record<ActivityRow>>,
    sleep: Vec<Record<SleepRow>>,
    daily: Vec<Record<DailyRow>>,
    body: Vec<Record<BodyRow>>,
    nutrition: Vec<Record<NutritionRow>>,
    menstruation: Vec<Record<MenstruationRow>>,
    athlete: Vec<Record<AthleteRow>>,
    planned_workouts: Vec<Record<PlannedWorkoutRow>>,
    hormones: Vec<Record<HormoneRow>>,
    health_observations: Vec<Record<HealthObservationRow>>,
    lab_reports: Vec<Record<LabReportRow>>,
}

/// Rewrites each record's user to its current id (`current` maps old ids to new ones).
fn rekey<R>(records: &mut [Record<R>], current: &HashMap<PgText, PgText>) {
    for r in records {
        if let Some(id) = current.get(&r.user_id) {
            r.user_id = id.clone();
        }
    }
}

impl Batch {
    /// Adds the records of the next delivery.
    pub fn add(&mut self, records: Records) {
        match records {
            Records::None => {}
            Records::Activity(r) => self.activity.extend(r),
            Records::Sleep(r) => self.sleep.extend(r),
            Records::Daily(r) => self.daily.extend(r),
            Records::Body(r) => self.body.extend(r),
            Records::Nutrition(r) => self.nutrition.extend(r),
            Records::Menstruation(r) => self.menstruation.extend(r),
            Records::Athlete(r) => self.athlete.extend(r),
            Records::PlannedWorkouts(r) => self.planned_workouts.extend(r),
            Records::Hormones(r) => self.hormones.extend(r),
            Records::HealthObservations(r) => self.health_observations.extend(r),
            Records::LabReport(r) => self.lab_reports.extend(r),
        }
    }

    /// Moves records of users replaced by `user_reauth` to their current id.
    pub fn rekey_users(&mut self, current: &HashMap<PgText, PgText>) {
        if current.is_empty() {
            return;
        }
        rekey(&mut self.activity, current);
        rekey(&mut self.sleep, current);
        rekey(&mut self.daily, current);
        rekey(&mut self.body, current);
        rekey(&mut self.nutrition, current);
        rekey(&mut self.menstruation, current);
        rekey(&mut self.athlete, current);
        rekey(&mut self.planned_workouts, current);
        rekey(&mut self.hormones, current);
        rekey(&mut self.health_observations, current);
    }

    /// Writes every record, table by table in a fixed order (so concurrent writers lock rows
    /// in one order), then the samples of the records written, inside the caller's
    /// transaction.
    pub async fn write(self, conn: &mut PgConnection) -> Result<Applied, sqlx::Error> {
        let mut out = Written::default();
        table::write(conn, self.activity, &mut out).await?;
        table::write(conn, self.sleep, &mut out).await?;
        table::write(conn, self.daily, &mut out).await?;
        table::write(conn, self.body, &mut out).await?;
        table::write(conn, self.nutrition, &mut out).await?;
        table::write(conn, self.menstruation, &mut out).await?;
        table::write(conn, self.athlete, &mut out).await?;
        table::write(conn, self.planned_workouts, &mut out).await?;
        table::write(conn, self.hormones, &mut out).await?;
        table::write(conn, self.health_observations, &mut out).await?;
        table::write(conn, self.lab_reports, &mut out).await?;
        let (mut applied, samples) = out.into_samples();
        applied.samples_written = samples::replace(conn, &samples).await?;
        Ok(applied)
    }
}

/// Every sample kind the mapping can produce (each must be listed in `terra.sample_kinds`).
pub const SAMPLE_KINDS: &[&str] = &[
    "heart_rate",
    "hrv_rmssd",
    "hrv_sdnn",
    "rr_interval",
    "pulse_wave_velocity",
    "steps",
    "distance",
    "floors_climbed",
    "elevation",
    "calories",
    "power",
    "speed",
    "cadence",
    "torque",
    "position",
    "oxygen_saturation",
    "vo2max",
    "met",
    "activity_level",
    "stress",
    "body_battery",
    "sleep_stage",
    "breathing_rate",
    "snoring",
    "glucose",
    "glucose_detailed",
    "ketone",
    "blood_pressure",
    "body_temperature",
    "skin_temperature",
    "ambient_temperature",
    "hydration",
    "weight",
    "bmi",
    "bodyfat_percentage",
    "drink",
    "menstruation_flow",
];
