//! The typed tables (`terra.activity`, `terra.sleep`, …, `terra.samples`): every statement that
//! writes them. The mapping from Terra's JSON to the bound values is in `store::rows`.
//!
//! Each upsert is `INSERT … ON CONFLICT … DO UPDATE … WHERE <copy is newer or a timestamp is
//! missing> RETURNING`: the conflicting row stays locked until the caller's transaction ends,
//! so two workers applying copies of one record are serialised, and the second one re-checks
//! the ordering against what the first wrote. No row returned means the copy was older.

use sqlx::PgConnection;

use crate::store::rows::{
    ActivityRow, AthleteRow, BodyRow, DailyRow, MenstruationRow, NutritionRow, Samples, SleepRow,
};

/// What every upsert binds besides the table's own columns.
#[derive(Debug, Clone, Copy)]
pub struct Meta<'a> {
    /// `user.user_id`.
    pub user_id: &'a str,
    /// `user.provider`.
    pub provider: Option<&'a str>,
    /// The record's JSON text, already made acceptable to jsonb.
    pub data: &'a str,
    /// `x-terra-ordering-timestamp` of the delivery.
    pub ordering_ts: Option<i64>,
    /// The ledger row being applied.
    pub event_id: i64,
}

/// Outcome of one upsert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upserted {
    /// A new row.
    Inserted,
    /// The stored row was replaced by this copy.
    Replaced,
    /// The stored row is newer: nothing changed.
    Older,
}

fn outcome(row: Option<bool>) -> Upserted {
    match row {
        Some(true) => Upserted::Inserted,
        Some(false) => Upserted::Replaced,
        None => Upserted::Older,
    }
}

/// Inserts or replaces an activity.
pub async fn upsert_activity(
    conn: &mut PgConnection,
    m: &Meta<'_>,
    r: &ActivityRow<'_>,
) -> Result<Upserted, sqlx::Error> {
    // `xmax = 0` is true only for a freshly inserted tuple.
    let row = sqlx::query_scalar!(
        r#"
        INSERT INTO terra.activity AS t
            (user_id, record_key, provider, summary_id, start_time, end_time, day, name,
             activity_type, activity_type_name, upload_type, active_seconds, calories,
             distance_meters, steps, avg_hr_bpm, max_hr_bpm, avg_watts,
             avg_speed_meters_per_second, strain_score, data, ordering_ts, event_id)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18,
                $19, $20, $21::text::jsonb, $22, $23)
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
        WHERE EXCLUDED.ordering_ts IS NULL OR t.ordering_ts IS NULL
           OR EXCLUDED.ordering_ts >= t.ordering_ts
        RETURNING (xmax = 0) AS "inserted!"
        "#,
        m.user_id,
        r.common.record_key,
        m.provider,
        r.summary_id.as_deref(),
        r.common.start_time,
        r.common.end_time,
        r.day,
        r.name.as_deref(),
        r.activity_type,
        r.activity_type_name,
        r.upload_type,
        r.active_seconds,
        r.calories,
        r.distance_meters,
        r.steps,
        r.avg_hr_bpm,
        r.max_hr_bpm,
        r.avg_watts,
        r.avg_speed_meters_per_second,
        r.strain_score,
        m.data,
        m.ordering_ts,
        m.event_id,
    )
    .fetch_optional(&mut *conn)
    .await?;
    Ok(outcome(row))
}

/// Inserts or replaces a sleep session.
pub async fn upsert_sleep(
    conn: &mut PgConnection,
    m: &Meta<'_>,
    r: &SleepRow<'_>,
) -> Result<Upserted, sqlx::Error> {
    let row = sqlx::query_scalar!(
        r#"
        INSERT INTO terra.sleep AS t
            (user_id, record_key, provider, summary_id, start_time, end_time, wake_day, is_nap,
             upload_type, asleep_seconds, deep_seconds, light_seconds, rem_seconds,
             awake_seconds, in_bed_seconds, sleep_efficiency, avg_hr_bpm, avg_hrv_rmssd,
             sleep_score, readiness_score, data, ordering_ts, event_id)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18,
                $19, $20, $21::text::jsonb, $22, $23)
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
        WHERE EXCLUDED.ordering_ts IS NULL OR t.ordering_ts IS NULL
           OR EXCLUDED.ordering_ts >= t.ordering_ts
        RETURNING (xmax = 0) AS "inserted!"
        "#,
        m.user_id,
        r.common.record_key,
        m.provider,
        r.summary_id.as_deref(),
        r.common.start_time,
        r.common.end_time,
        r.wake_day,
        r.is_nap,
        r.upload_type,
        r.asleep_seconds,
        r.deep_seconds,
        r.light_seconds,
        r.rem_seconds,
        r.awake_seconds,
        r.in_bed_seconds,
        r.sleep_efficiency,
        r.avg_hr_bpm,
        r.avg_hrv_rmssd,
        r.sleep_score,
        r.readiness_score,
        m.data,
        m.ordering_ts,
        m.event_id,
    )
    .fetch_optional(&mut *conn)
    .await?;
    Ok(outcome(row))
}

/// Inserts or replaces a daily record (a snapshot of the day: replaced, never added up).
pub async fn upsert_daily(
    conn: &mut PgConnection,
    m: &Meta<'_>,
    r: &DailyRow,
) -> Result<Upserted, sqlx::Error> {
    let row = sqlx::query_scalar!(
        r#"
        INSERT INTO terra.daily AS t
            (user_id, record_key, provider, day, start_time, end_time, upload_type, steps,
             distance_meters, floors_climbed, total_burned_calories, active_calories,
             active_seconds, avg_hr_bpm, max_hr_bpm, resting_hr_bpm, avg_stress_level,
             total_stress_score, data, ordering_ts, event_id)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18,
                $19::text::jsonb, $20, $21)
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
        WHERE EXCLUDED.ordering_ts IS NULL OR t.ordering_ts IS NULL
           OR EXCLUDED.ordering_ts >= t.ordering_ts
        RETURNING (xmax = 0) AS "inserted!"
        "#,
        m.user_id,
        r.common.record_key,
        m.provider,
        r.day,
        r.common.start_time,
        r.common.end_time,
        r.upload_type,
        r.steps,
        r.distance_meters,
        r.floors_climbed,
        r.total_burned_calories,
        r.active_calories,
        r.active_seconds,
        r.avg_hr_bpm,
        r.max_hr_bpm,
        r.resting_hr_bpm,
        r.avg_stress_level,
        r.total_stress_score,
        m.data,
        m.ordering_ts,
        m.event_id,
    )
    .fetch_optional(&mut *conn)
    .await?;
    Ok(outcome(row))
}

/// Inserts or replaces a body record.
pub async fn upsert_body(
    conn: &mut PgConnection,
    m: &Meta<'_>,
    r: &BodyRow,
) -> Result<Upserted, sqlx::Error> {
    let row = sqlx::query_scalar!(
        r#"
        INSERT INTO terra.body AS t
            (user_id, record_key, provider, day, start_time, end_time, weight_kg, bmi,
             bodyfat_percentage, resting_hr_bpm, avg_saturation_percentage,
             avg_blood_glucose_mg_per_dl, data, ordering_ts, event_id)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13::text::jsonb, $14, $15)
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
        WHERE EXCLUDED.ordering_ts IS NULL OR t.ordering_ts IS NULL
           OR EXCLUDED.ordering_ts >= t.ordering_ts
        RETURNING (xmax = 0) AS "inserted!"
        "#,
        m.user_id,
        r.common.record_key,
        m.provider,
        r.day,
        r.common.start_time,
        r.common.end_time,
        r.weight_kg,
        r.bmi,
        r.bodyfat_percentage,
        r.resting_hr_bpm,
        r.avg_saturation_percentage,
        r.avg_blood_glucose_mg_per_dl,
        m.data,
        m.ordering_ts,
        m.event_id,
    )
    .fetch_optional(&mut *conn)
    .await?;
    Ok(outcome(row))
}

/// Inserts or replaces a nutrition record.
pub async fn upsert_nutrition(
    conn: &mut PgConnection,
    m: &Meta<'_>,
    r: &NutritionRow,
) -> Result<Upserted, sqlx::Error> {
    let row = sqlx::query_scalar!(
        r#"
        INSERT INTO terra.nutrition AS t
            (user_id, record_key, provider, day, start_time, end_time, calories, protein_g,
             carbohydrates_g, fat_g, water_ml, data, ordering_ts, event_id)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::text::jsonb, $13, $14)
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
        WHERE EXCLUDED.ordering_ts IS NULL OR t.ordering_ts IS NULL
           OR EXCLUDED.ordering_ts >= t.ordering_ts
        RETURNING (xmax = 0) AS "inserted!"
        "#,
        m.user_id,
        r.common.record_key,
        m.provider,
        r.day,
        r.common.start_time,
        r.common.end_time,
        r.calories,
        r.protein_g,
        r.carbohydrates_g,
        r.fat_g,
        r.water_ml,
        m.data,
        m.ordering_ts,
        m.event_id,
    )
    .fetch_optional(&mut *conn)
    .await?;
    Ok(outcome(row))
}

/// Inserts or replaces a menstruation record.
pub async fn upsert_menstruation(
    conn: &mut PgConnection,
    m: &Meta<'_>,
    r: &MenstruationRow,
) -> Result<Upserted, sqlx::Error> {
    let row = sqlx::query_scalar!(
        r#"
        INSERT INTO terra.menstruation AS t
            (user_id, record_key, provider, day, start_time, end_time, period_length_days,
             cycle_length_days, day_in_cycle, current_phase, current_phase_name,
             period_start_date, is_predicted_cycle, data, ordering_ts, event_id)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14::text::jsonb, $15,
                $16)
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
        WHERE EXCLUDED.ordering_ts IS NULL OR t.ordering_ts IS NULL
           OR EXCLUDED.ordering_ts >= t.ordering_ts
        RETURNING (xmax = 0) AS "inserted!"
        "#,
        m.user_id,
        r.common.record_key,
        m.provider,
        r.day,
        r.common.start_time,
        r.common.end_time,
        r.period_length_days,
        r.cycle_length_days,
        r.day_in_cycle,
        r.current_phase,
        r.current_phase_name,
        r.period_start_date,
        r.is_predicted_cycle,
        m.data,
        m.ordering_ts,
        m.event_id,
    )
    .fetch_optional(&mut *conn)
    .await?;
    Ok(outcome(row))
}

/// Inserts or replaces the user's profile.
pub async fn upsert_athlete(
    conn: &mut PgConnection,
    m: &Meta<'_>,
    r: &AthleteRow<'_>,
) -> Result<Upserted, sqlx::Error> {
    let row = sqlx::query_scalar!(
        r#"
        INSERT INTO terra.athlete AS t
            (user_id, provider, first_name, last_name, sex, gender, date_of_birth, age, email,
             city, state, country, data, ordering_ts, event_id)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13::text::jsonb, $14, $15)
        ON CONFLICT (user_id) DO UPDATE SET
            provider = EXCLUDED.provider,
            first_name = EXCLUDED.first_name,
            last_name = EXCLUDED.last_name,
            sex = EXCLUDED.sex,
            gender = EXCLUDED.gender,
            date_of_birth = EXCLUDED.date_of_birth,
            age = EXCLUDED.age,
            email = EXCLUDED.email,
            city = EXCLUDED.city,
            state = EXCLUDED.state,
            country = EXCLUDED.country,
            data = EXCLUDED.data,
            ordering_ts = EXCLUDED.ordering_ts,
            event_id = EXCLUDED.event_id,
            updated_at = now()
        WHERE EXCLUDED.ordering_ts IS NULL OR t.ordering_ts IS NULL
           OR EXCLUDED.ordering_ts >= t.ordering_ts
        RETURNING (xmax = 0) AS "inserted!"
        "#,
        m.user_id,
        m.provider,
        r.first_name.as_deref(),
        r.last_name.as_deref(),
        r.sex.as_deref(),
        r.gender.as_deref(),
        r.date_of_birth,
        r.age,
        r.email.as_deref(),
        r.city.as_deref(),
        r.state.as_deref(),
        r.country.as_deref(),
        m.data,
        m.ordering_ts,
        m.event_id,
    )
    .fetch_optional(&mut *conn)
    .await?;
    Ok(outcome(row))
}

/// Replaces the samples of one record: deletes what it had, then writes `samples` in one
/// statement. Call only after the record's upsert wrote, inside the same transaction, so its
/// row lock covers the samples too. Returns the number of samples written.
pub async fn replace_samples(
    conn: &mut PgConnection,
    user_id: &str,
    source: &str,
    record_key: &str,
    samples: &Samples,
) -> Result<u64, sqlx::Error> {
    // Even a first insert deletes: samples left behind by a record deleted by hand must not
    // double up with the new ones. With the index this costs one probe.
    sqlx::query!(
        "DELETE FROM terra.samples WHERE user_id = $1 AND source = $2 AND record_key = $3",
        user_id,
        source,
        record_key,
    )
    .execute(&mut *conn)
    .await?;
    if samples.is_empty() {
        return Ok(0);
    }
    let done = sqlx::query!(
        r#"
        INSERT INTO terra.samples (user_id, source, record_key, kind, ts, value, value2)
        SELECT $1, $2, $3, u.kind, u.ts, u.value, u.value2
        FROM UNNEST($4::text[], $5::timestamptz[], $6::float8[], $7::float8[])
            AS u(kind, ts, value, value2)
        "#,
        user_id,
        source,
        record_key,
        &samples.kind as &[&str],
        &samples.ts,
        &samples.value as &[Option<f64>],
        &samples.value2 as &[Option<f64>],
    )
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected())
}
