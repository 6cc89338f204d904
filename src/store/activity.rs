//! `terra.activity`: one row per workout (Terra `activity` data[] item).

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::PgConnection;

use super::convert::{code32, id_key, opt_utc, whole};
use super::samples::Samples;
use super::table::{column, CommonColumns, Record, RecordTable, WrittenKey};
use super::text::{self, PgText};
use crate::model::{Activity, Timestamp};

/// The typed columns of a `terra.activity` row.
#[derive(Debug, Clone, PartialEq)]
pub struct ActivityRow {
    /// `metadata.summary_id`.
    pub summary_id: Option<PgText>,
    /// `metadata.start_time`.
    pub start_time: Option<DateTime<Utc>>,
    /// `metadata.end_time`.
    pub end_time: Option<DateTime<Utc>>,
    /// The local day of `metadata.start_time`.
    pub day: Option<NaiveDate>,
    /// `metadata.name`.
    pub name: Option<PgText>,
    /// `metadata.type`.
    pub activity_type: Option<i32>,
    /// Terra's title for `metadata.type`.
    pub activity_type_name: Option<&'static str>,
    /// `metadata.upload_type`.
    pub upload_type: Option<i32>,
    /// `active_durations_data.activity_seconds`.
    pub active_seconds: Option<f64>,
    /// `calories_data.total_burned_calories`.
    pub calories: Option<f64>,
    /// `distance_data.summary.distance_meters`.
    pub distance_meters: Option<f64>,
    /// `distance_data.summary.steps`.
    pub steps: Option<i64>,
    /// `heart_rate_data.summary.avg_hr_bpm`.
    pub avg_hr_bpm: Option<f64>,
    /// `heart_rate_data.summary.max_hr_bpm`.
    pub max_hr_bpm: Option<f64>,
    /// `power_data.avg_watts`.
    pub avg_watts: Option<f64>,
    /// `movement_data.avg_speed_meters_per_second`.
    pub avg_speed_meters_per_second: Option<f64>,
    /// `data_enrichment.strain_score`.
    pub strain_score: Option<f64>,
}

/// Maps an activity to its key and columns; `raw` is its JSON text (only for the fallback key).
pub fn map(a: &Activity, raw: &str) -> (PgText, ActivityRow) {
    let meta = a.metadata.as_ref();
    let kind = meta.and_then(|m| m.r#type);
    let distance = a.distance_data.as_ref().and_then(|d| d.summary.as_ref());
    let hr = a.heart_rate_data.as_ref().and_then(|h| h.summary.as_ref());
    let row = ActivityRow {
        summary_id: text::opt(a.summary_id()),
        start_time: opt_utc(a.start_time()),
        end_time: opt_utc(a.end_time()),
        day: a.start_time().and_then(Timestamp::date),
        name: text::opt(meta.and_then(|m| m.name.as_deref())),
        activity_type: code32(kind.and_then(|k| k.code())),
        activity_type_name: kind.and_then(|k| k.name()),
        upload_type: code32(meta.and_then(|m| m.upload_type).and_then(|u| u.code())),
        active_seconds: a
            .active_durations_data
            .as_ref()
            .and_then(|d| d.activity_seconds),
        calories: a
            .calories_data
            .as_ref()
            .and_then(|c| c.total_burned_calories),
        distance_meters: distance.and_then(|d| d.distance_meters),
        steps: whole(distance.and_then(|d| d.steps)),
        avg_hr_bpm: hr.and_then(|h| h.avg_hr_bpm),
        max_hr_bpm: hr.and_then(|h| h.max_hr_bpm),
        avg_watts: a.power_data.as_ref().and_then(|p| p.avg_watts),
        avg_speed_meters_per_second: a
            .movement_data
            .as_ref()
            .and_then(|m| m.avg_speed_meters_per_second),
        strain_score: a.data_enrichment.as_ref().and_then(|e| e.strain_score),
    };
    (id_key(a.summary_id(), a.start_time(), raw), row)
}

/// The samples of an activity.
pub fn samples(a: &Activity) -> Samples {
    let mut s = Samples::default();
    s.heart_rate(a.heart_rate_data.as_ref());
    s.distance(a.distance_data.as_ref().and_then(|d| d.detailed.as_ref()));
    let calories = a.calories_data.as_ref();
    s.each(
        "calories",
        calories.and_then(|c| c.calorie_samples.as_ref()),
        |x| (x.timestamp.as_ref(), x.calories),
    );
    let power = a.power_data.as_ref();
    s.each("power", power.and_then(|p| p.power_samples.as_ref()), |x| {
        (x.timestamp.as_ref(), x.watts)
    });
    let movement = a.movement_data.as_ref();
    s.each(
        "speed",
        movement.and_then(|m| m.speed_samples.as_ref()),
        |x| (x.timestamp.as_ref(), x.speed_meters_per_second),
    );
    s.each(
        "cadence",
        movement.and_then(|m| m.cadence_samples.as_ref()),
        |x| (x.timestamp.as_ref(), x.cadence_rpm),
    );
    s.each(
        "torque",
        movement.and_then(|m| m.torque_samples.as_ref()),
        |x| (x.timestamp.as_ref(), x.torque_newton_meters),
    );
    let position = a.position_data.as_ref();
    s.each_pair(
        "position",
        position.and_then(|p| p.position_samples.as_ref()),
        |x| {
            let coords = x.coords_lat_lng_deg.as_deref().unwrap_or(&[]);
            let at = |i: usize| coords.get(i).copied().flatten();
            (x.timestamp.as_ref(), at(0), at(1))
        },
    );
    s.oxygen(a.oxygen_data.as_ref());
    s.met(a.MET_data.as_ref());
    s.activity_levels(a.active_durations_data.as_ref());
    s
}

impl RecordTable for ActivityRow {
    const NAME: &'static str = "activity";
    const HAS_SAMPLES: bool = true;

    async fn upsert(
        conn: &mut PgConnection,
        rows: &[Record<Self>],
    ) -> Result<Vec<WrittenKey>, sqlx::Error> {
        let c = CommonColumns::of(rows);
        sqlx::query_as!(
            WrittenKey,
            r#"
            INSERT INTO terra.activity AS t
                (user_id, record_key, provider, summary_id, start_time, end_time, day, name,
                 activity_type, activity_type_name, upload_type, active_seconds, calories,
                 distance_meters, steps, avg_hr_bpm, max_hr_bpm, avg_watts,
                 avg_speed_meters_per_second, strain_score, data, ordering_ts, event_id)
            SELECT u.user_id, u.record_key, u.provider, u.summary_id, u.start_time, u.end_time,
                   u.day, u.name, u.activity_type, u.activity_type_name, u.upload_type,
                   u.active_seconds, u.calories, u.distance_meters, u.steps, u.avg_hr_bpm,
                   u.max_hr_bpm, u.avg_watts, u.avg_speed_meters_per_second, u.strain_score,
                   u.data::jsonb, u.ordering_ts, u.event_id
            FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[],
                        $6::timestamptz[], $7::date[], $8::text[], $9::int4[], $10::text[],
                        $11::int4[], $12::float8[], $13::float8[], $14::float8[], $15::int8[],
                        $16::float8[], $17::float8[], $18::float8[], $19::float8[],
                        $20::float8[], $21::text[], $22::int8[], $23::int8[])
                AS u(user_id, record_key, provider, summary_id, start_time, end_time, day, name,
                     activity_type, activity_type_name, upload_type, active_seconds, calories,
                     distance_meters, steps, avg_hr_bpm, max_hr_bpm, avg_watts,
                     avg_speed_meters_per_second, strain_score, data, ordering_ts, event_id)
            ON CONFLICT (user_id, record_key) DO UPDATE SET
                provider = EXCLUDED.provider,
                summary_id = EXCLUDED.summary_id,
                start_time = EXCLUDED.start_time,
                end_time = EXCLUDED.end_time,
                day = EXCLUDED.day,
                name = EXCLUDED.name,
                activity_type = EXCLUDED.activity_type,
                activity_type_name = EXCLUDED.activity_type_name,
                upload_type = EXCLUDED.upload_type,
                active_seconds = EXCLUDED.active_seconds,
                calories = EXCLUDED.calories,
                distance_meters = EXCLUDED.distance_meters,
                steps = EXCLUDED.steps,
                avg_hr_bpm = EXCLUDED.avg_hr_bpm,
                max_hr_bpm = EXCLUDED.max_hr_bpm,
                avg_watts = EXCLUDED.avg_watts,
                avg_speed_meters_per_second = EXCLUDED.avg_speed_meters_per_second,
                strain_score = coalesce(EXCLUDED.strain_score, t.strain_score),
                data = terra.keep_enrichment(EXCLUDED.data, t.data),
                ordering_ts = EXCLUDED.ordering_ts,
                event_id = EXCLUDED.event_id,
                updated_at = now()
            WHERE terra.is_newer(EXCLUDED.ordering_ts, t.ordering_ts)
            RETURNING t.user_id, t.record_key
            "#,
            &c.user_id as &[&str],
            &c.record_key as &[&str],
            &c.provider as &[Option<&str>],
            &column(rows, |r| r.summary_id.as_deref()) as &[Option<&str>],
            &column(rows, |r| r.start_time) as &[Option<DateTime<Utc>>],
            &column(rows, |r| r.end_time) as &[Option<DateTime<Utc>>],
            &column(rows, |r| r.day) as &[Option<NaiveDate>],
            &column(rows, |r| r.name.as_deref()) as &[Option<&str>],
            &column(rows, |r| r.activity_type) as &[Option<i32>],
            &column(rows, |r| r.activity_type_name) as &[Option<&str>],
            &column(rows, |r| r.upload_type) as &[Option<i32>],
            &column(rows, |r| r.active_seconds) as &[Option<f64>],
            &column(rows, |r| r.calories) as &[Option<f64>],
            &column(rows, |r| r.distance_meters) as &[Option<f64>],
            &column(rows, |r| r.steps) as &[Option<i64>],
            &column(rows, |r| r.avg_hr_bpm) as &[Option<f64>],
            &column(rows, |r| r.max_hr_bpm) as &[Option<f64>],
            &column(rows, |r| r.avg_watts) as &[Option<f64>],
            &column(rows, |r| r.avg_speed_meters_per_second) as &[Option<f64>],
            &column(rows, |r| r.strain_score) as &[Option<f64>],
            &c.data as &[&str],
            &c.ordering_ts as &[Option<i64>],
            &c.event_id,
        )
        .fetch_all(conn)
        .await
    }
}
