//! Event types kept losslessly as raw records: `terra.planned_workouts`,
//! `terra.hormone_samples`, `terra.health_observations` (one row per user and record) and
//! `terra.lab_reports` (one row per Terra event id).

use chrono::{DateTime, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::PgConnection;

use super::convert::instant;
use super::table::{column, CommonColumns, Record, RecordTable, WrittenKey};
use super::text::{self, PgText};

/// A raw item's JSON text (re-encoded from the decoded value) and its key: the first of
/// `pointers` that leads to a non-empty string, else the SHA-256 of the text, so a record
/// without an id of its own is never dropped.
pub fn keyed_text(item: &Value, pointers: &[&str]) -> (PgText, String) {
    // Encoding a `Value` cannot fail (its map keys are strings).
    let text = serde_json::to_string(item).unwrap_or_default();
    let key = first_str(item, pointers).map_or_else(
        || PgText::from_plain(format!("sha256:{}", hex::encode(Sha256::digest(&text)))),
        PgText::new,
    );
    (key, text)
}

/// The first of `pointers` that leads to a non-empty string.
pub fn first_str<'v>(value: &'v Value, pointers: &[&str]) -> Option<&'v str> {
    pointers.iter().find_map(|p| {
        value
            .pointer(p)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    })
}

/// A `terra.planned_workouts` row.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedWorkoutRow {
    /// `planned_date`, else `details.metadata.planned_date`, as sent.
    pub planned_date: Option<PgText>,
}

/// Key (`planned_workout_id`, else `details.metadata.id`, else `workout_id`) and columns.
pub fn planned_workout(item: &Value) -> (PgText, String, PlannedWorkoutRow) {
    let keys = ["/planned_workout_id", "/details/metadata/id", "/workout_id"];
    let (key, text) = keyed_text(item, &keys);
    let dates = ["/planned_date", "/details/metadata/planned_date"];
    let planned_date = text::opt(first_str(item, &dates));
    (key, text, PlannedWorkoutRow { planned_date })
}

/// A `terra.hormone_samples` row.
#[derive(Debug, Clone, PartialEq)]
pub struct HormoneRow {
    /// `timestamp`, when it is an instant.
    pub ts: Option<DateTime<Utc>>,
}

/// Key (the sample's `timestamp` as sent) and columns.
pub fn hormone(item: &Value) -> (PgText, String, HormoneRow) {
    let (key, text) = keyed_text(item, &["/timestamp"]);
    let ts = first_str(item, &["/timestamp"]).and_then(instant);
    (key, text, HormoneRow { ts })
}

/// A `terra.health_observations` row.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthObservationRow {
    /// `metadata.start_time`, when it is an instant.
    pub start_time: Option<DateTime<Utc>>,
}

/// Key (`metadata.summary_id`, else `metadata.start_time`) and columns.
pub fn health_observation(item: &Value) -> (PgText, String, HealthObservationRow) {
    let (key, text) = keyed_text(item, &["/metadata/summary_id", "/metadata/start_time"]);
    let start_time = first_str(item, &["/metadata/start_time"]).and_then(instant);
    (key, text, HealthObservationRow { start_time })
}

/// A `terra.lab_reports` row: the whole event, keyed by Terra's own `event_id` (the record's
/// user is empty: lab reports carry no Terra user).
#[derive(Debug, Clone, PartialEq)]
pub struct LabReportRow {
    /// `lab_report.completed` or `lab_report.failed`.
    pub event_type: PgText,
    /// `upload_id`.
    pub upload_id: Option<PgText>,
    /// `data.session_id`.
    pub session_id: Option<PgText>,
    /// `data.reference_id`.
    pub reference_id: Option<PgText>,
    /// `occurred_at`.
    pub occurred_at: Option<DateTime<Utc>>,
}

/// Key (`event_id`) and columns of a lab report event, re-encoded as `value`.
pub fn lab_report(value: &Value, event_type: &str) -> (PgText, String, LabReportRow) {
    let (key, text) = keyed_text(value, &["/event_id"]);
    let row = LabReportRow {
        event_type: PgText::new(event_type),
        upload_id: text::opt(first_str(value, &["/upload_id"])),
        session_id: text::opt(first_str(value, &["/data/session_id"])),
        reference_id: text::opt(first_str(value, &["/data/reference_id"])),
        occurred_at: first_str(value, &["/occurred_at"]).and_then(instant),
    };
    (key, text, row)
}

impl RecordTable for PlannedWorkoutRow {
    const NAME: &'static str = "planned_workouts";
    const HAS_SAMPLES: bool = false;

    async fn upsert(
        conn: &mut PgConnection,
        rows: &[Record<Self>],
    ) -> Result<Vec<WrittenKey>, sqlx::Error> {
        let c = CommonColumns::of(rows);
        sqlx::query_as!(
            WrittenKey,
            r#"
            INSERT INTO terra.planned_workouts AS t
                (user_id, record_key, provider, planned_date, data, ordering_ts, event_id)
            SELECT u.user_id, u.record_key, u.provider, u.planned_date, u.data::jsonb,
                   u.ordering_ts, u.event_id
            FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int8[],
                        $7::int8[])
                AS u(user_id, record_key, provider, planned_date, data, ordering_ts, event_id)
            ON CONFLICT (user_id, record_key) DO UPDATE SET
                provider = EXCLUDED.provider, planned_date = EXCLUDED.planned_date,
                data = EXCLUDED.data, ordering_ts = EXCLUDED.ordering_ts,
                event_id = EXCLUDED.event_id, updated_at = now()
            WHERE terra.is_newer(EXCLUDED.ordering_ts, t.ordering_ts)
            RETURNING t.user_id, t.record_key
            "#,
            &c.user_id as &[&str],
            &c.record_key as &[&str],
            &c.provider as &[Option<&str>],
            &column(rows, |r| r.planned_date.as_deref()) as &[Option<&str>],
            &c.data as &[&str],
            &c.ordering_ts as &[Option<i64>],
            &c.event_id,
        )
        .fetch_all(conn)
        .await
    }
}

impl RecordTable for HormoneRow {
    const NAME: &'static str = "hormone_samples";
    const HAS_SAMPLES: bool = false;

    async fn upsert(
        conn: &mut PgConnection,
        rows: &[Record<Self>],
    ) -> Result<Vec<WrittenKey>, sqlx::Error> {
        let c = CommonColumns::of(rows);
        sqlx::query_as!(
            WrittenKey,
            r#"
            INSERT INTO terra.hormone_samples AS t
                (user_id, record_key, provider, ts, data, ordering_ts, event_id)
            SELECT u.user_id, u.record_key, u.provider, u.ts, u.data::jsonb, u.ordering_ts,
                   u.event_id
            FROM UNNEST($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[],
                        $6::int8[], $7::int8[])
                AS u(user_id, record_key, provider, ts, data, ordering_ts, event_id)
            ON CONFLICT (user_id, record_key) DO UPDATE SET
                provider = EXCLUDED.provider, ts = EXCLUDED.ts, data = EXCLUDED.data,
                ordering_ts = EXCLUDED.ordering_ts, event_id = EXCLUDED.event_id,
                updated_at = now()
            WHERE terra.is_newer(EXCLUDED.ordering_ts, t.ordering_ts)
            RETURNING t.user_id, t.record_key
            "#,
            &c.user_id as &[&str],
            &c.record_key as &[&str],
            &c.provider as &[Option<&str>],
            &column(rows, |r| r.ts) as &[Option<DateTime<Utc>>],
            &c.data as &[&str],
            &c.ordering_ts as &[Option<i64>],
            &c.event_id,
        )
        .fetch_all(conn)
        .await
    }
}

impl RecordTable for HealthObservationRow {
    const NAME: &'static str = "health_observations";
    const HAS_SAMPLES: bool = false;

    async fn upsert(
        conn: &mut PgConnection,
        rows: &[Record<Self>],
    ) -> Result<Vec<WrittenKey>, sqlx::Error> {
        let c = CommonColumns::of(rows);
        sqlx::query_as!(
            WrittenKey,
            r#"
            INSERT INTO terra.health_observations AS t
                (user_id, record_key, provider, start_time, data, ordering_ts, event_id)
            SELECT u.user_id, u.record_key, u.provider, u.start_time, u.data::jsonb,
                   u.ordering_ts, u.event_id
            FROM UNNEST($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[],
                        $6::int8[], $7::int8[])
                AS u(user_id, record_key, provider, start_time, data, ordering_ts, event_id)
            ON CONFLICT (user_id, record_key) DO UPDATE SET
                provider = EXCLUDED.provider, start_time = EXCLUDED.start_time,
                data = EXCLUDED.data, ordering_ts = EXCLUDED.ordering_ts,
                event_id = EXCLUDED.event_id, updated_at = now()
            WHERE terra.is_newer(EXCLUDED.ordering_ts, t.ordering_ts)
            RETURNING t.user_id, t.record_key
            "#,
            &c.user_id as &[&str],
            &c.record_key as &[&str],
            &c.provider as &[Option<&str>],
            &column(rows, |r| r.start_time) as &[Option<DateTime<Utc>>],
            &c.data as &[&str],
            &c.ordering_ts as &[Option<i64>],
            &c.event_id,
        )
        .fetch_all(conn)
        .await
    }
}

impl RecordTable for LabReportRow {
    const NAME: &'static str = "lab_reports";
    const HAS_SAMPLES: bool = false;

    /// Lab reports carry no ordering timestamp of their own: the latest copy replaces.
    async fn upsert(
        conn: &mut PgConnection,
        rows: &[Record<Self>],
    ) -> Result<Vec<WrittenKey>, sqlx::Error> {
        let c = CommonColumns::of(rows);
        sqlx::query_as!(
            WrittenKey,
            r#"
            INSERT INTO terra.lab_reports AS t
                (terra_event_id, event_type, upload_id, session_id, reference_id, occurred_at,
                 data, event_id)
            SELECT u.terra_event_id, u.event_type, u.upload_id, u.session_id, u.reference_id,
                   u.occurred_at, u.data::jsonb, u.event_id
            FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                        $6::timestamptz[], $7::text[], $8::int8[])
                AS u(terra_event_id, event_type, upload_id, session_id, reference_id,
                     occurred_at, data, event_id)
            ON CONFLICT (terra_event_id) DO UPDATE SET
                event_type = EXCLUDED.event_type, upload_id = EXCLUDED.upload_id,
                session_id = EXCLUDED.session_id, reference_id = EXCLUDED.reference_id,
                occurred_at = EXCLUDED.occurred_at, data = EXCLUDED.data,
                event_id = EXCLUDED.event_id, updated_at = now()
            RETURNING ''::text AS "user_id!", t.terra_event_id AS record_key
            "#,
            &c.record_key as &[&str],
            &column(rows, |r| r.event_type.as_str()) as &[&str],
            &column(rows, |r| r.upload_id.as_deref()) as &[Option<&str>],
            &column(rows, |r| r.session_id.as_deref()) as &[Option<&str>],
            &column(rows, |r| r.reference_id.as_deref()) as &[Option<&str>],
            &column(rows, |r| r.occurred_at) as &[Option<DateTime<Utc>>],
            &c.data as &[&str],
            &c.event_id,
        )
        .fetch_all(conn)
        .await
    }
}
