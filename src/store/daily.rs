//! `terra.daily`: one row per user and day (Terra `daily` data[] item), a cumulative snapshot
//! that each newer copy replaces.

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::PgConnection;

use super::convert::{code32, day_key, opt_utc, whole};
use super::samples::Samples;
use super::table::{column, CommonColumns, Record, RecordTable, WrittenKey};
use super::text::PgText;
use crate::model::Daily;

/// The typed columns of a `terra.daily` row.
#[derive(Debug, Clone, PartialEq)]
pub struct DailyRow {
    /// The local day of `metadata.start_time`.
    pub day: Option<NaiveDate>,
    /// `metadata.start_time`.
    pub start_time: Option<DateTime<Utc>>,
    /// `metadata.end_time`.
    pub end_time: Option<DateTime<Utc>>,
    /// `metadata.upload_type`.
    pub upload_type: Option<i32>,
    /// `distance_data.steps`.
    pub steps: Option<i64>,
    /// `distance_data.distance_meters`.
    pub distance_meters: Option<f64>,
    /// `distance_data.floors_climbed`.
    pub floors_climbed: Option<i64>,
    /// `calories_data.total_burned_calories`.
    pub total_burned_calories: Option<f64>,
    /// `calories_data.net_activity_calories`.
    pub active_calories: Option<f64>,
    /// `active_durations_data.activity_seconds`.
    pub active_seconds: Option<f64>,
    /// `heart_rate_data.summary.avg_hr_bpm`.
    pub avg_hr_bpm: Option<f64>,
    /// `heart_rate_data.summary.max_hr_bpm`.
    pub max_hr_bpm: Option<f64>,
    /// `heart_rate_data.summary.resting_hr_bpm`.
    pub resting_hr_bpm: Option<f64>,
    /// `stress_data.avg_stress_level`.
    pub avg_stress_level: Option<f64>,
    /// `data_enrichment.total_stress_score`.
    pub total_stress_score: Option<f64>,
}

/// Maps a daily record to its key and columns; `raw` is its JSON text (for the fallback key).
pub fn map(d: &Daily, raw: &str) -> (PgText, DailyRow) {
    let (record_key, day) = day_key(d.start_time(), raw);
    let distance = d.distance_data.as_ref();
    let calories = d.calories_data.as_ref();
    let hr = d.heart_rate_data.as_ref().and_then(|h| h.summary.as_ref());
    let upload_type = d.metadata.as_ref().and_then(|m| m.upload_type);
    let row = DailyRow {
        day,
        start_time: opt_utc(d.start_time()),
        end_time: opt_utc(d.end_time()),
        upload_type: code32(upload_type.and_then(|u| u.code())),
        steps: whole(distance.and_then(|x| x.steps)),
        distance_meters: distance.and_then(|x| x.distance_meters),
        floors_climbed: whole(distance.and_then(|x| x.floors_climbed)),
        total_burned_calories: calories.and_then(|c| c.total_burned_calories),
        active_calories: calories.and_then(|c| c.net_activity_calories),
        active_seconds: d
            .active_durations_data
            .as_ref()
            .and_then(|a| a.activity_seconds),
        avg_hr_bpm: hr.and_then(|h| h.avg_hr_bpm),
        max_hr_bpm: hr.and_then(|h| h.max_hr_bpm),
        resting_hr_bpm: hr.and_then(|h| h.resting_hr_bpm),
        avg_stress_level: d.stress_data.as_ref().and_then(|s| s.avg_stress_level),
        total_stress_score: d
            .data_enrichment
            .as_ref()
            .and_then(|e| e.total_stress_score),
    };
    (record_key, row)
}

/// The samples of a daily record.
pub fn samples(d: &Daily) -> Samples {
    let mut s = Samples::default();
    s.heart_rate(d.heart_rate_data.as_ref());
    s.distance(d.distance_data.as_ref().and_then(|x| x.detailed.as_ref()));
    let calories = d.calories_data.as_ref();
    s.each(
        "calories",
        calories.and_then(|c| c.calorie_samples.as_ref()),
        |x| (x.timestamp.as_ref(), x.calories),
    );
    s.oxygen(d.oxygen_data.as_ref());
    s.met(d.MET_data.as_ref());
    s.activity_levels(d.active_durations_data.as_ref());
    let stress = d.stress_data.as_ref();
    s.each("stress", stress.and_then(|x| x.samples.as_ref()), |x| {
        (x.timestamp.as_ref(), x.level)
    });
    s.each(
        "body_battery",
        stress.and_then(|x| x.body_battery_samples.as_ref()),
        |x| (x.timestamp.as_ref(), x.level),
    );
    s
}

impl RecordTable for DailyRow {
    const NAME: &'static str = "daily";
    const HAS_SAMPLES: bool = true;

    async fn upsert(
        conn: &mut PgConnection,
        rows: &[Record<Self>],
    ) -> Result<Vec<WrittenKey>, sqlx::Error> {
        let c = CommonColumns::of(rows);
        sqlx::query_as!(
            WrittenKey,
            r#"
            INSERT INTO terra.daily AS t
                (user_id, record_key, provider, day, start_time, end_time, upload_type, steps,
                 distance_meters, floors_climbed, total_burned_calories, active_calories,
                 active_seconds, avg_hr_bpm, max_hr_bpm, resting_hr_bpm, avg_stress_level,
                 total_stress_score, data, ordering_ts, event_id)
            SELECT u.user_id, u.record_key, u.provider, u.day, u.start_time, u.end_time,
                   u.upload_type, u.steps, u.distance_meters, u.floors_climbed,
                   u.total_burned_calories, u.active_calories, u.active_seconds, u.avg_hr_bpm,
                   u.max_hr_bpm, u.resting_hr_bpm, u.avg_stress_level, u.total_stress_score,
                   u.data::jsonb, u.ordering_ts, u.event_id
            FROM UNNEST($1::text[], $2::text[], $3::text[], $4::date[], $5::timestamptz[],
                        $6::timestamptz[], $7::int4[], $8::int8[], $9::float8[], $10::int8[],
                        $11::float8[], $12::float8[], $13::float8[], $14::float8[],
                        $15::float8[], $16::float8[], $17::float8[], $18::float8[],
                        $19::text[], $20::int8[], $21::int8[])
                AS u(user_id, record_key, provider, day, start_time, end_time, upload_type,
                     steps, distance_meters, floors_climbed, total_burned_calories,
                     active_calories, active_seconds, avg_hr_bpm, max_hr_bpm, resting_hr_bpm,
                     avg_stress_level, total_stress_score, data, ordering_ts, event_id)
            ON CONFLICT (user_id, record_key) DO UPDATE SET
                provider = EXCLUDED.provider,
                day = EXCLUDED.day,
                start_time = EXCLUDED.start_time,
                end_time = EXCLUDED.end_time,
                upload_type = EXCLUDED.upload_type,
                steps = EXCLUDED.steps,
                distance_meters = EXCLUDED.distance_meters,
                floors_climbed = EXCLUDED.floors_climbed,
                total_burned_calories = EXCLUDED.total_burned_calories,
                active_calories = EXCLUDED.active_calories,
                active_seconds = EXCLUDED.active_seconds,
                avg_hr_bpm = EXCLUDED.avg_hr_bpm,
                max_hr_bpm = EXCLUDED.max_hr_bpm,
                resting_hr_bpm = EXCLUDED.resting_hr_bpm,
                avg_stress_level = EXCLUDED.avg_stress_level,
                total_stress_score = coalesce(EXCLUDED.total_stress_score, t.total_stress_score),
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
            &column(rows, |r| r.day) as &[Option<NaiveDate>],
            &column(rows, |r| r.start_time) as &[Option<DateTime<Utc>>],
            &column(rows, |r| r.end_time) as &[Option<DateTime<Utc>>],
            &column(rows, |r| r.upload_type) as &[Option<i32>],
            &column(rows, |r| r.steps) as &[Option<i64>],
            &column(rows, |r| r.distance_meters) as &[Option<f64>],
            &column(rows, |r| r.floors_climbed) as &[Option<i64>],
            &column(rows, |r| r.total_burned_calories) as &[Option<f64>],
            &column(rows, |r| r.active_calories) as &[Option<f64>],
            &column(rows, |r| r.active_seconds) as &[Option<f64>],
            &column(rows, |r| r.avg_hr_bpm) as &[Option<f64>],
            &column(rows, |r| r.max_hr_bpm) as &[Option<f64>],
            &column(rows, |r| r.resting_hr_bpm) as &[Option<f64>],
            &column(rows, |r| r.avg_stress_level) as &[Option<f64>],
            &column(rows, |r| r.total_stress_score) as &[Option<f64>],
            &c.data as &[&str],
            &c.ordering_ts as &[Option<i64>],
            &c.event_id,
        )
        .fetch_all(conn)
        .await
    }
}
