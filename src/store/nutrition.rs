//! `terra.nutrition`: one row per user and day (Terra `nutrition` data[] item).

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::PgConnection;

use super::convert::{day_key, opt_utc};
use super::samples::Samples;
use super::table::{column, CommonColumns, Record, RecordTable, WrittenKey};
use super::text::PgText;
use crate::model::Nutrition;

/// The typed columns of a `terra.nutrition` row.
#[derive(Debug, Clone, PartialEq)]
pub struct NutritionRow {
    /// The local day of `metadata.start_time`.
    pub day: Option<NaiveDate>,
    /// `metadata.start_time`.
    pub start_time: Option<DateTime<Utc>>,
    /// `metadata.end_time`.
    pub end_time: Option<DateTime<Utc>>,
    /// `summary.macros.calories`.
    pub calories: Option<f64>,
    /// `summary.macros.protein_g`.
    pub protein_g: Option<f64>,
    /// `summary.macros.carbohydrates_g`.
    pub carbohydrates_g: Option<f64>,
    /// `summary.macros.fat_g`.
    pub fat_g: Option<f64>,
    /// `summary.water_ml`.
    pub water_ml: Option<f64>,
}

/// Maps a nutrition record to its key and columns; `raw` is its JSON text (fallback key).
pub fn map(n: &Nutrition, raw: &str) -> (PgText, NutritionRow) {
    let (record_key, day) = day_key(n.start_time(), raw);
    let summary = n.summary.as_ref();
    let macros = summary.and_then(|s| s.macros.as_ref());
    let row = NutritionRow {
        day,
        start_time: opt_utc(n.start_time()),
        end_time: opt_utc(n.end_time()),
        calories: macros.and_then(|m| m.calories),
        protein_g: macros.and_then(|m| m.protein_g),
        carbohydrates_g: macros.and_then(|m| m.carbohydrates_g),
        fat_g: macros.and_then(|m| m.fat_g),
        water_ml: summary.and_then(|s| s.water_ml),
    };
    (record_key, row)
}

/// The samples of a nutrition record.
pub fn samples(n: &Nutrition) -> Samples {
    let mut s = Samples::default();
    s.each("drink", n.drink_samples.as_ref(), |x| {
        (x.timestamp.as_ref(), x.drink_volume)
    });
    s
}

impl RecordTable for NutritionRow {
    const NAME: &'static str = "nutrition";
    const HAS_SAMPLES: bool = true;

    async fn upsert(
        conn: &mut PgConnection,
        rows: &[Record<Self>],
    ) -> Result<Vec<WrittenKey>, sqlx::Error> {
        let c = CommonColumns::of(rows);
        sqlx::query_as!(
            WrittenKey,
            r#"
            INSERT INTO terra.nutrition AS t
                (user_id, record_key, provider, day, start_time, end_time, calories, protein_g,
                 carbohydrates_g, fat_g, water_ml, data, ordering_ts, event_id)
            SELECT u.user_id, u.record_key, u.provider, u.day, u.start_time, u.end_time,
                   u.calories, u.protein_g, u.carbohydrates_g, u.fat_g, u.water_ml,
                   u.data::jsonb, u.ordering_ts, u.event_id
            FROM UNNEST($1::text[], $2::text[], $3::text[], $4::date[], $5::timestamptz[],
                        $6::timestamptz[], $7::float8[], $8::float8[], $9::float8[],
                        $10::float8[], $11::float8[], $12::text[], $13::int8[], $14::int8[])
                AS u(user_id, record_key, provider, day, start_time, end_time, calories,
                     protein_g, carbohydrates_g, fat_g, water_ml, data, ordering_ts, event_id)
            ON CONFLICT (user_id, record_key) DO UPDATE SET
                provider = EXCLUDED.provider,
                day = EXCLUDED.day,
                start_time = EXCLUDED.start_time,
                end_time = EXCLUDED.end_time,
                calories = EXCLUDED.calories,
                protein_g = EXCLUDED.protein_g,
                carbohydrates_g = EXCLUDED.carbohydrates_g,
                fat_g = EXCLUDED.fat_g,
                water_ml = EXCLUDED.water_ml,
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
            &column(rows, |r| r.calories) as &[Option<f64>],
            &column(rows, |r| r.protein_g) as &[Option<f64>],
            &column(rows, |r| r.carbohydrates_g) as &[Option<f64>],
            &column(rows, |r| r.fat_g) as &[Option<f64>],
            &column(rows, |r| r.water_ml) as &[Option<f64>],
            &c.data as &[&str],
            &c.ordering_ts as &[Option<i64>],
            &c.event_id,
        )
        .fetch_all(conn)
        .await
    }
}
