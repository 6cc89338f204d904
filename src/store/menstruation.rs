//! `terra.menstruation`: one row per user and day (Terra `menstruation` data[] item).

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::PgConnection;

use super::convert::{code32, day_key, int32, opt_utc};
use super::samples::Samples;
use super::table::{column, CommonColumns, Record, RecordTable, WrittenKey};
use super::text::PgText;
use crate::model::{Menstruation, Timestamp};

/// The typed columns of a `terra.menstruation` row.
#[derive(Debug, Clone, PartialEq)]
pub struct MenstruationRow {
    /// The local day of `metadata.start_time`.
    pub day: Option<NaiveDate>,
    /// `metadata.start_time`.
    pub start_time: Option<DateTime<Utc>>,
    /// `metadata.end_time`.
    pub end_time: Option<DateTime<Utc>>,
    /// `menstruation_data.period_length_days`.
    pub period_length_days: Option<i32>,
    /// `menstruation_data.cycle_length_days`.
    pub cycle_length_days: Option<i32>,
    /// `menstruation_data.day_in_cycle`.
    pub day_in_cycle: Option<i32>,
    /// `menstruation_data.current_phase`.
    pub current_phase: Option<i32>,
    /// Terra's title for `menstruation_data.current_phase`.
    pub current_phase_name: Option<&'static str>,
    /// `menstruation_data.period_start_date`.
    pub period_start_date: Option<NaiveDate>,
    /// `menstruation_data.is_predicted_cycle`.
    pub is_predicted_cycle: Option<bool>,
}

/// Maps a menstruation record to its key and columns; `raw` is its JSON text (fallback key).
pub fn map(m: &Menstruation, raw: &str) -> (PgText, MenstruationRow) {
    let (record_key, day) = day_key(m.start_time(), raw);
    let data = m.menstruation_data.as_ref();
    let phase = data.and_then(|d| d.current_phase);
    let row = MenstruationRow {
        day,
        start_time: opt_utc(m.start_time()),
        end_time: opt_utc(m.end_time()),
        period_length_days: int32(data.and_then(|d| d.period_length_days)),
        cycle_length_days: int32(data.and_then(|d| d.cycle_length_days)),
        day_in_cycle: int32(data.and_then(|d| d.day_in_cycle)),
        current_phase: code32(phase.and_then(|p| p.code())),
        current_phase_name: phase.and_then(|p| p.name()),
        period_start_date: data
            .and_then(|d| d.period_start_date.as_ref())
            .and_then(Timestamp::date),
        is_predicted_cycle: data.and_then(|d| d.is_predicted_cycle),
    };
    (record_key, row)
}

/// The samples of a menstruation record.
pub fn samples(m: &Menstruation) -> Samples {
    let mut s = Samples::default();
    let data = m.menstruation_data.as_ref();
    s.each(
        "menstruation_flow",
        data.and_then(|d| d.menstruation_flow.as_ref()),
        |x| (x.timestamp.as_ref(), x.flow.map(|f| f.0.as_f64())),
    );
    s
}

impl RecordTable for MenstruationRow {
    const NAME: &'static str = "menstruation";
    const HAS_SAMPLES: bool = true;

    async fn upsert(
        conn: &mut PgConnection,
        rows: &[Record<Self>],
    ) -> Result<Vec<WrittenKey>, sqlx::Error> {
        let c = CommonColumns::of(rows);
        sqlx::query_as!(
            WrittenKey,
            r#"
            INSERT INTO terra.menstruation AS t
                (user_id, record_key, provider, day, start_time, end_time, period_length_days,
                 cycle_length_days, day_in_cycle, current_phase, current_phase_name,
                 period_start_date, is_predicted_cycle, data, ordering_ts, event_id)
            SELECT u.user_id, u.record_key, u.provider, u.day, u.start_time, u.end_time,
                   u.period_length_days, u.cycle_length_days, u.day_in_cycle, u.current_phase,
                   u.current_phase_name, u.period_start_date, u.is_predicted_cycle,
                   u.data::jsonb, u.ordering_ts, u.event_id
            FROM UNNEST($1::text[], $2::text[], $3::text[], $4::date[], $5::timestamptz[],
                        $6::timestamptz[], $7::int4[], $8::int4[], $9::int4[], $10::int4[],
                        $11::text[], $12::date[], $13::bool[], $14::text[], $15::int8[],
                        $16::int8[])
                AS u(user_id, record_key, provider, day, start_time, end_time,
                     period_length_days, cycle_length_days, day_in_cycle, current_phase,
                     current_phase_name, period_start_date, is_predicted_cycle, data,
                     ordering_ts, event_id)
            ON CONFLICT (user_id, record_key) DO UPDATE SET
                provider = EXCLUDED.provider,
                day = EXCLUDED.day,
                start_time = EXCLUDED.start_time,
                end_time = EXCLUDED.end_time,
                period_length_days = EXCLUDED.period_length_days,
                cycle_length_days = EXCLUDED.cycle_length_days,
                day_in_cycle = EXCLUDED.day_in_cycle,
                current_phase = EXCLUDED.current_phase,
                current_phase_name = EXCLUDED.current_phase_name,
                period_start_date = EXCLUDED.period_start_date,
                is_predicted_cycle = EXCLUDED.is_predicted_cycle,
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
            &column(rows, |r| r.period_length_days) as &[Option<i32>],
            &column(rows, |r| r.cycle_length_days) as &[Option<i32>],
            &column(rows, |r| r.day_in_cycle) as &[Option<i32>],
            &column(rows, |r| r.current_phase) as &[Option<i32>],
            &column(rows, |r| r.current_phase_name) as &[Option<&str>],
            &column(rows, |r| r.period_start_date) as &[Option<NaiveDate>],
            &column(rows, |r| r.is_predicted_cycle) as &[Option<bool>],
            &c.data as &[&str],
            &c.ordering_ts as &[Option<i64>],
            &c.event_id,
        )
        .fetch_all(conn)
        .await
    }
}
