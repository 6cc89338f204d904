//! `terra.body`: one row per user and day (Terra `body` data[] item).

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::PgConnection;

use super::convert::{day_key, opt_utc};
use super::samples::Samples;
use super::table::{column, CommonColumns, Record, RecordTable, WrittenKey};
use super::text::PgText;
use crate::model::{Body, MeasurementDataSample};

/// The typed columns of a `terra.body` row.
#[derive(Debug, Clone, PartialEq)]
pub struct BodyRow {
    /// The local day of `metadata.start_time`.
    pub day: Option<NaiveDate>,
    /// `metadata.start_time`.
    pub start_time: Option<DateTime<Utc>>,
    /// `metadata.end_time`.
    pub end_time: Option<DateTime<Utc>>,
    /// `measurements_data.day_avg_weight_kg`, else the latest measurement's `weight_kg`.
    pub weight_kg: Option<f64>,
    /// `measurements_data.day_avg_bmi`, else the latest measurement's `BMI`.
    pub bmi: Option<f64>,
    /// `measurements_data.day_avg_bodyfat_percentage`, else the latest measurement's.
    pub bodyfat_percentage: Option<f64>,
    /// `heart_data.heart_rate_data.summary.resting_hr_bpm`.
    pub resting_hr_bpm: Option<f64>,
    /// `oxygen_data.avg_saturation_percentage`.
    pub avg_saturation_percentage: Option<f64>,
    /// `glucose_data.day_avg_blood_glucose_mg_per_dL` (or its lower-case variant).
    pub avg_blood_glucose_mg_per_dl: Option<f64>,
}

/// The value of the latest measurement (by measurement_time; on a tie or without times, the
/// later one in the array) that has the field.
fn latest(b: &Body, field: fn(&MeasurementDataSample) -> Option<f64>) -> Option<f64> {
    let list = b.measurements_data.as_ref()?.measurements.as_ref()?;
    list.iter()
        .filter_map(|m| Some((opt_utc(m.measurement_time.as_ref()), field(m)?)))
        .fold(
            None,
            |best: Option<(Option<DateTime<Utc>>, f64)>, cur| match best {
                Some(b) if b.0 > cur.0 => Some(b),
                _ => Some(cur),
            },
        )
        .map(|(_, v)| v)
}

/// Maps a body record to its key and columns; `raw` is its JSON text (for the fallback key).
pub fn map(b: &Body, raw: &str) -> (PgText, BodyRow) {
    let (record_key, day) = day_key(b.start_time(), raw);
    let measurements = b.measurements_data.as_ref();
    let glucose = b.glucose_data.as_ref();
    let row = BodyRow {
        day,
        start_time: opt_utc(b.start_time()),
        end_time: opt_utc(b.end_time()),
        weight_kg: measurements
            .and_then(|m| m.day_avg_weight_kg)
            .or_else(|| latest(b, |m| m.weight_kg)),
        bmi: measurements
            .and_then(|m| m.day_avg_bmi)
            .or_else(|| latest(b, |m| m.BMI)),
        bodyfat_percentage: measurements
            .and_then(|m| m.day_avg_bodyfat_percentage)
            .or_else(|| latest(b, |m| m.bodyfat_percentage)),
        resting_hr_bpm: b
            .heart_data
            .as_ref()
            .and_then(|h| h.heart_rate_data.as_ref())
            .and_then(|h| h.summary.as_ref())
            .and_then(|s| s.resting_hr_bpm),
        avg_saturation_percentage: b
            .oxygen_data
            .as_ref()
            .and_then(|o| o.avg_saturation_percentage),
        avg_blood_glucose_mg_per_dl: glucose.and_then(|g| {
            g.day_avg_blood_glucose_mg_per_dL
                .or(g.day_avg_blood_glucose_mg_per_dl)
        }),
    };
    (record_key, row)
}

/// The samples of a body record.
pub fn samples(b: &Body) -> Samples {
    let mut s = Samples::default();
    let heart = b.heart_data.as_ref();
    s.heart_rate(heart.and_then(|h| h.heart_rate_data.as_ref()));
    s.each_pair(
        "rr_interval",
        heart.and_then(|h| h.rr_interval_samples.as_ref()),
        |x| (x.timestamp.as_ref(), x.rr_interval_ms, x.hr_bpm),
    );
    s.each(
        "pulse_wave_velocity",
        heart.and_then(|h| h.pulse_wave_velocity_samples.as_ref()),
        |x| {
            let v = x.pulse_wave_velocity_meters_per_second;
            (x.timestamp.as_ref(), v)
        },
    );
    s.oxygen(b.oxygen_data.as_ref());
    let glucose = b.glucose_data.as_ref();
    s.each(
        "glucose",
        glucose.and_then(|g| g.blood_glucose_samples.as_ref()),
        |x| (x.timestamp.as_ref(), x.blood_glucose_mg_per_dL),
    );
    s.each(
        "glucose_detailed",
        glucose.and_then(|g| g.detailed_blood_glucose_samples.as_ref()),
        |x| (x.timestamp.as_ref(), x.blood_glucose_mg_per_dL),
    );
    let ketones = b.ketone_data.as_ref();
    s.each(
        "ketone",
        ketones.and_then(|k| k.ketone_samples.as_ref()),
        |x| (x.timestamp.as_ref(), x.ketone_mg_per_dL),
    );
    let pressure = b.blood_pressure_data.as_ref();
    s.each_pair(
        "blood_pressure",
        pressure.and_then(|p| p.blood_pressure_samples.as_ref()),
        |x| (x.timestamp.as_ref(), x.systolic_bp, x.diastolic_bp),
    );
    let temperature = b.temperature_data.as_ref();
    s.temperature(
        "body_temperature",
        temperature.and_then(|t| t.body_temperature_samples.as_ref()),
    );
    s.temperature(
        "skin_temperature",
        temperature.and_then(|t| t.skin_temperature_samples.as_ref()),
    );
    s.temperature(
        "ambient_temperature",
        temperature.and_then(|t| t.ambient_temperature_samples.as_ref()),
    );
    let hydration = b.hydration_data.as_ref();
    s.each(
        "hydration",
        hydration.and_then(|h| h.hydration_amount_samples.as_ref()),
        |x| (x.timestamp.as_ref(), x.hydration_kg),
    );
    measurement_samples(&mut s, b);
    s
}

/// A measurement carries several values; a missing one is simply not a sample (not skipped).
fn measurement_samples(s: &mut Samples, b: &Body) {
    let measurements = b.measurements_data.as_ref();
    for m in measurements
        .and_then(|m| m.measurements.as_ref())
        .into_iter()
        .flatten()
    {
        let at = m.measurement_time.as_ref();
        for (kind, v) in [
            ("weight", m.weight_kg),
            ("bmi", m.BMI),
            ("bodyfat_percentage", m.bodyfat_percentage),
        ] {
            if v.is_some() {
                s.push(kind, at, v);
            }
        }
    }
}

impl RecordTable for BodyRow {
    const NAME: &'static str = "body";
    const HAS_SAMPLES: bool = true;

    async fn upsert(
        conn: &mut PgConnection,
        rows: &[Record<Self>],
    ) -> Result<Vec<WrittenKey>, sqlx::Error> {
        let c = CommonColumns::of(rows);
        sqlx::query_as!(
            WrittenKey,
            r#"
            INSERT INTO terra.body AS t
                (user_id, record_key, provider, day, start_time, end_time, weight_kg, bmi,
                 bodyfat_percentage, resting_hr_bpm, avg_saturation_percentage,
                 avg_blood_glucose_mg_per_dl, data, ordering_ts, event_id)
            SELECT u.user_id, u.record_key, u.provider, u.day, u.start_time, u.end_time,
                   u.weight_kg, u.bmi, u.bodyfat_percentage, u.resting_hr_bpm,
                   u.avg_saturation_percentage, u.avg_blood_glucose_mg_per_dl, u.data::jsonb,
                   u.ordering_ts, u.event_id
            FROM UNNEST($1::text[], $2::text[], $3::text[], $4::date[], $5::timestamptz[],
                        $6::timestamptz[], $7::float8[], $8::float8[], $9::float8[],
                        $10::float8[], $11::float8[], $12::float8[], $13::text[], $14::int8[],
                        $15::int8[])
                AS u(user_id, record_key, provider, day, start_time, end_time, weight_kg, bmi,
                     bodyfat_percentage, resting_hr_bpm, avg_saturation_percentage,
                     avg_blood_glucose_mg_per_dl, data, ordering_ts, event_id)
            ON CONFLICT (user_id, record_key) DO UPDATE SET
                provider = EXCLUDED.provider,
                day = EXCLUDED.day,
                start_time = EXCLUDED.start_time,
                end_time = EXCLUDED.end_time,
                weight_kg = EXCLUDED.weight_kg,
                bmi = EXCLUDED.bmi,
                bodyfat_percentage = EXCLUDED.bodyfat_percentage,
                resting_hr_bpm = EXCLUDED.resting_hr_bpm,
                avg_saturation_percentage = EXCLUDED.avg_saturation_percentage,
                avg_blood_glucose_mg_per_dl = EXCLUDED.avg_blood_glucose_mg_per_dl,
                data = EXCLUDED.data,
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
            &column(rows, |r| r.weight_kg) as &[Option<f64>],
            &column(rows, |r| r.bmi) as &[Option<f64>],
            &column(rows, |r| r.bodyfat_percentage) as &[Option<f64>],
            &column(rows, |r| r.resting_hr_bpm) as &[Option<f64>],
            &column(rows, |r| r.avg_saturation_percentage) as &[Option<f64>],
            &column(rows, |r| r.avg_blood_glucose_mg_per_dl) as &[Option<f64>],
            &c.data as &[&str],
            &c.ordering_ts as &[Option<i64>],
            &c.event_id,
        )
        .fetch_all(conn)
        .await
    }
}
