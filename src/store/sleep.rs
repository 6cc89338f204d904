//! `terra.sleep`: one row per sleep session (Terra `sleep` data[] item).

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::PgConnection;

use super::convert::{code32, id_key, opt_utc};
use super::samples::Samples;
use super::table::{column, CommonColumns, Record, RecordTable, WrittenKey};
use super::text::{self, PgText};
use crate::model::{Sleep, Timestamp};

/// The typed columns of a `terra.sleep` row.
#[derive(Debug, Clone, PartialEq)]
pub struct SleepRow {
    /// `metadata.summary_id`.
    pub summary_id: Option<PgText>,
    /// `metadata.start_time`.
    pub start_time: Option<DateTime<Utc>>,
    /// `metadata.end_time`.
    pub end_time: Option<DateTime<Utc>>,
    /// The local day of `metadata.end_time` (else of `start_time`).
    pub wake_day: Option<NaiveDate>,
    /// `metadata.is_nap`.
    pub is_nap: Option<bool>,
    /// `metadata.upload_type`.
    pub upload_type: Option<i32>,
    /// `sleep_durations_data.asleep.duration_asleep_state_seconds`.
    pub asleep_seconds: Option<f64>,
    /// `sleep_durations_data.asleep.duration_deep_sleep_state_seconds`.
    pub deep_seconds: Option<f64>,
    /// `sleep_durations_data.asleep.duration_light_sleep_state_seconds`.
    pub light_seconds: Option<f64>,
    /// `sleep_durations_data.asleep.duration_REM_sleep_state_seconds`.
    pub rem_seconds: Option<f64>,
    /// `sleep_durations_data.awake.duration_awake_state_seconds`.
    pub awake_seconds: Option<f64>,
    /// `sleep_durations_data.other.duration_in_bed_seconds`.
    pub in_bed_seconds: Option<f64>,
    /// `sleep_durations_data.sleep_efficiency`.
    pub sleep_efficiency: Option<f64>,
    /// `heart_rate_data.summary.avg_hr_bpm`.
    pub avg_hr_bpm: Option<f64>,
    /// `heart_rate_data.summary.avg_hrv_rmssd`.
    pub avg_hrv_rmssd: Option<f64>,
    /// `data_enrichment.sleep_score`.
    pub sleep_score: Option<f64>,
    /// `data_enrichment.readiness_score`.
    pub readiness_score: Option<f64>,
}

/// Maps a sleep session to its key and columns; `raw` is its JSON text (for the fallback key).
pub fn map(s: &Sleep, raw: &str) -> (PgText, SleepRow) {
    let meta = s.metadata.as_ref();
    let durations = s.sleep_durations_data.as_ref();
    let asleep = durations.and_then(|d| d.asleep.as_ref());
    let hr = s.heart_rate_data.as_ref().and_then(|h| h.summary.as_ref());
    let enrichment = s.data_enrichment.as_ref();
    let row = SleepRow {
        summary_id: text::opt(s.summary_id()),
        start_time: opt_utc(s.start_time()),
        end_time: opt_utc(s.end_time()),
        wake_day: s
            .end_time()
            .and_then(Timestamp::date)
            .or_else(|| s.start_time().and_then(Timestamp::date)),
        is_nap: meta.and_then(|m| m.is_nap),
        upload_type: code32(meta.and_then(|m| m.upload_type).and_then(|u| u.code())),
        asleep_seconds: asleep.and_then(|a| a.duration_asleep_state_seconds),
        deep_seconds: asleep.and_then(|a| a.duration_deep_sleep_state_seconds),
        light_seconds: asleep.and_then(|a| a.duration_light_sleep_state_seconds),
        rem_seconds: asleep.and_then(|a| a.duration_REM_sleep_state_seconds),
        awake_seconds: durations
            .and_then(|d| d.awake.as_ref())
            .and_then(|a| a.duration_awake_state_seconds),
        in_bed_seconds: durations
            .and_then(|d| d.other.as_ref())
            .and_then(|o| o.duration_in_bed_seconds),
        sleep_efficiency: durations.and_then(|d| d.sleep_efficiency),
        avg_hr_bpm: hr.and_then(|h| h.avg_hr_bpm),
        avg_hrv_rmssd: hr.and_then(|h| h.avg_hrv_rmssd),
        sleep_score: enrichment.and_then(|e| e.sleep_score),
        readiness_score: enrichment.and_then(|e| e.readiness_score),
    };
    (id_key(s.summary_id(), s.start_time(), raw), row)
}

/// The samples of a sleep session.
pub fn samples(sl: &Sleep) -> Samples {
    let mut s = Samples::default();
    s.heart_rate(sl.heart_rate_data.as_ref());
    s.each(
        "sleep_stage",
        sl.sleep_durations_data
            .as_ref()
            .and_then(|d| d.hypnogram_samples.as_ref()),
        |x| (x.timestamp.as_ref(), x.level.map(|l| l.0.as_f64())),
    );
    let respiration = sl.respiration_data.as_ref();
    s.each(
        "breathing_rate",
        respiration
            .and_then(|r| r.breaths_data.as_ref())
            .and_then(|b| b.samples.as_ref()),
        |x| (x.timestamp.as_ref(), x.breaths_per_min),
    );
    s.each(
        "oxygen_saturation",
        respiration
            .and_then(|r| r.oxygen_saturation_data.as_ref())
            .and_then(|o| o.samples.as_ref()),
        |x| (x.timestamp.as_ref(), x.percentage),
    );
    s.each(
        "snoring",
        respiration
            .and_then(|r| r.snoring_data.as_ref())
            .and_then(|o| o.samples.as_ref()),
        |x| (x.timestamp.as_ref(), x.duration_seconds),
    );
    s
}

impl RecordTable for SleepRow {
    const NAME: &'static str = "sleep";
    const HAS_SAMPLES: bool = true;

    async fn upsert(
        conn: &mut PgConnection,
        rows: &[Record<Self>],
    ) -> Result<Vec<WrittenKey>, sqlx::Error> {
        let c = CommonColumns::of(rows);
        sqlx::query_as!(
            WrittenKey,
            r#"
            INSERT INTO terra.sleep AS t
                (user_id, record_key, provider, summary_id, start_time, end_time, wake_day,
                 is_nap, upload_type, asleep_seconds, deep_seconds, light_seconds, rem_seconds,
                 awake_seconds, in_bed_seconds, sleep_efficiency, avg_hr_bpm, avg_hrv_rmssd,
                 sleep_score, readiness_score, data, ordering_ts, event_id)
            SELECT u.user_id, u.record_key, u.provider, u.summary_id, u.start_time, u.end_time,
                   u.wake_day, u.is_nap, u.upload_type, u.asleep_seconds, u.deep_seconds,
                   u.light_seconds, u.rem_seconds, u.awake_seconds, u.in_bed_seconds,
                   u.sleep_efficiency, u.avg_hr_bpm, u.avg_hrv_rmssd, u.sleep_score,
                   u.readiness_score, u.data::jsonb, u.ordering_ts, u.event_id
            FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[],
                        $6::timestamptz[], $7::date[], $8::bool[], $9::int4[], $10::float8[],
                        $11::float8[], $12::float8[], $13::float8[], $14::float8[],
                        $15::float8[], $16::float8[], $17::float8[], $18::float8[],
                        $19::float8[], $20::float8[], $21::text[], $22::int8[], $23::int8[])
                AS u(user_id, record_key, provider, summary_id, start_time, end_time, wake_day,
                     is_nap, upload_type, asleep_seconds, deep_seconds, light_seconds,
                     rem_seconds, awake_seconds, in_bed_seconds, sleep_efficiency, avg_hr_bpm,
                     avg_hrv_rmssd, sleep_score, readiness_score, data, ordering_ts, event_id)
            ON CONFLICT (user_id, record_key) DO UPDATE SET
                provider = EXCLUDED.provider,
                summary_id = EXCLUDED.summary_id,
                start_time = EXCLUDED.start_time,
                end_time = EXCLUDED.end_time,
                wake_day = EXCLUDED.wake_day,
                is_nap = EXCLUDED.is_nap,
                upload_type = EXCLUDED.upload_type,
                asleep_seconds = EXCLUDED.asleep_seconds,
                deep_seconds = EXCLUDED.deep_seconds,
                light_seconds = EXCLUDED.light_seconds,
                rem_seconds = EXCLUDED.rem_seconds,
                awake_seconds = EXCLUDED.awake_seconds,
                in_bed_seconds = EXCLUDED.in_bed_seconds,
                sleep_efficiency = EXCLUDED.sleep_efficiency,
                avg_hr_bpm = EXCLUDED.avg_hr_bpm,
                avg_hrv_rmssd = EXCLUDED.avg_hrv_rmssd,
                sleep_score = coalesce(EXCLUDED.sleep_score, t.sleep_score),
                readiness_score = coalesce(EXCLUDED.readiness_score, t.readiness_score),
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
            &column(rows, |r| r.wake_day) as &[Option<NaiveDate>],
            &column(rows, |r| r.is_nap) as &[Option<bool>],
            &column(rows, |r| r.upload_type) as &[Option<i32>],
            &column(rows, |r| r.asleep_seconds) as &[Option<f64>],
            &column(rows, |r| r.deep_seconds) as &[Option<f64>],
            &column(rows, |r| r.light_seconds) as &[Option<f64>],
            &column(rows, |r| r.rem_seconds) as &[Option<f64>],
            &column(rows, |r| r.awake_seconds) as &[Option<f64>],
            &column(rows, |r| r.in_bed_seconds) as &[Option<f64>],
            &column(rows, |r| r.sleep_efficiency) as &[Option<f64>],
            &column(rows, |r| r.avg_hr_bpm) as &[Option<f64>],
            &column(rows, |r| r.avg_hrv_rmssd) as &[Option<f64>],
            &column(rows, |r| r.sleep_score) as &[Option<f64>],
            &column(rows, |r| r.readiness_score) as &[Option<f64>],
            &c.data as &[&str],
            &c.ordering_ts as &[Option<i64>],
            &c.event_id,
        )
        .fetch_all(conn)
        .await
    }
}
