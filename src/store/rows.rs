//! Pure mapping from the typed Terra model to the rows and samples of the typed tables.
//!
//! No I/O: every function here turns a decoded record (plus, for keys, its raw JSON text) into
//! plain values that `db::store` binds. Which Terra field feeds which column is written once,
//! here, and repeated in the migration's `COMMENT ON COLUMN`s.

use std::borrow::Cow;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::model::{
    Activity, Body, Daily, DistanceDataDetailed, HeartRateData, Integer, METData, Menstruation,
    Nutrition, OxygenData, Sleep, TemperatureSample, Timestamp,
};

/// The table a record lands in; its name is also `terra.samples.source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// `terra.activity`.
    Activity,
    /// `terra.sleep`.
    Sleep,
    /// `terra.daily`.
    Daily,
    /// `terra.body`.
    Body,
    /// `terra.nutrition`.
    Nutrition,
    /// `terra.menstruation`.
    Menstruation,
}

impl Table {
    /// The table name without schema, as stored in `terra.samples.source`.
    pub fn as_str(self) -> &'static str {
        match self {
            Table::Activity => "activity",
            Table::Sleep => "sleep",
            Table::Daily => "daily",
            Table::Body => "body",
            Table::Nutrition => "nutrition",
            Table::Menstruation => "menstruation",
        }
    }
}

/// A Terra time as a `timestamptz`: the instant when it has an offset; otherwise the local
/// wall-clock time taken as UTC; a bare date is midnight UTC. `None` when unparseable, and for
/// years outside 1..=9999 (garbage, and PostgreSQL's range is narrower than chrono's: such a
/// value must not make the whole delivery fail; the original string stays in `data`).
pub fn to_utc(ts: &Timestamp) -> Option<DateTime<Utc>> {
    let utc = if let Some(instant) = ts.instant() {
        instant.with_timezone(&Utc)
    } else if let Some(local) = ts.local() {
        local.and_utc()
    } else if ts.as_str().len() == 10 {
        ts.date()?.and_hms_opt(0, 0, 0)?.and_utc()
    } else {
        return None;
    };
    (1..=9999).contains(&utc.year()).then_some(utc)
}

fn opt_utc(ts: Option<&Timestamp>) -> Option<DateTime<Utc>> {
    ts.and_then(to_utc)
}

/// The fallback key of a record that has no key field at all: its JSON text's SHA-256. Stable
/// across redeliveries of byte-identical records, which is the best that can be done.
pub fn digest_key(raw: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(raw.as_bytes())))
}

/// Key of an id-keyed record (activity, sleep): the id; without one (or an empty one),
/// `start_time:<metadata.start_time as sent>`; without that either, [`digest_key`].
pub fn id_key(id: Option<&str>, start: Option<&Timestamp>, raw: &str) -> String {
    match (id, start) {
        (Some(id), _) if !id.is_empty() => pg_text(id).into_owned(),
        (_, Some(start)) if !start.as_str().is_empty() => {
            format!("start_time:{}", pg_text(start.as_str()))
        }
        _ => digest_key(raw),
    }
}

/// Key and `day` of a day-keyed record: the first 10 characters of `metadata.start_time`;
/// without a day, [`digest_key`] and no date.
pub fn day_key(start: Option<&Timestamp>, raw: &str) -> (String, Option<NaiveDate>) {
    match start.and_then(Timestamp::day) {
        // Ten ASCII digits and dashes (checked by `Timestamp::day`): never a NUL.
        Some(day) => (day.into_owned(), start.and_then(Timestamp::date)),
        None => (digest_key(raw), None),
    }
}

/// The record's JSON text as PostgreSQL's jsonb accepts it: jsonb cannot hold U+0000, so each
/// `\u0000` escape becomes `\ufffd` (U+FFFD, the replacement character). Everything else is
/// untouched, and no copy is made when there is nothing to replace. The ledger keeps the bytes.
pub fn jsonb_text(raw: &str) -> Cow<'_, str> {
    const NUL: &[u8] = b"\\u0000";
    if !raw.contains("\\u0000") {
        return Cow::Borrowed(raw);
    }
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let (mut i, mut copied) = (0, 0);
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            i += 1;
            continue;
        }
        // A backslash starts an escape (a `\\` pair is skipped whole, so `\\u0000`, a literal
        // backslash followed by `u0000`, is left alone). A backslash byte never occurs inside a
        // multi-byte UTF-8 sequence, so `i` is a char boundary here.
        if bytes[i..].starts_with(NUL) {
            out.push_str(&raw[copied..i]);
            out.push_str("\\ufffd");
            i += NUL.len();
            copied = i;
        } else {
            i += 2;
        }
    }
    out.push_str(&raw[copied..]);
    Cow::Owned(out)
}

/// A string as PostgreSQL `text` accepts it: `text` cannot hold U+0000, which JSON strings
/// may carry (`\u0000`); it becomes U+FFFD, as in `data` (see [`jsonb_text`]).
pub fn pg_text(s: &str) -> Cow<'_, str> {
    if s.contains('\0') {
        Cow::Owned(s.replace('\0', "\u{fffd}"))
    } else {
        Cow::Borrowed(s)
    }
}

fn opt_text(s: Option<&str>) -> Option<Cow<'_, str>> {
    s.map(pg_text)
}

/// A Terra integer as a whole number: fractional values are rounded (the exact value stays in
/// `data`); values outside `i64` are `None`.
pub fn whole(v: Option<Integer>) -> Option<i64> {
    let v = v?;
    v.as_i64().or_else(|| {
        let r = v.as_f64().round();
        // 2^63 is exactly representable: [-2^63, 2^63) converts without saturating.
        (r.is_finite() && (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&r))
            .then_some(r as i64)
    })
}

/// A Terra integer as an `integer` column (`None` outside `i32`).
pub fn int32(v: Option<Integer>) -> Option<i32> {
    whole(v).and_then(|v| i32::try_from(v).ok())
}

/// An open code's numeric value as an `integer` column.
fn code32(code: Option<i64>) -> Option<i32> {
    code.and_then(|v| i32::try_from(v).ok())
}

/// Columns every record table has besides the user and the bookkeeping.
#[derive(Debug, Clone, PartialEq)]
pub struct Common {
    /// The natural key (see [`id_key`] and [`day_key`]).
    pub record_key: String,
    /// `metadata.start_time`.
    pub start_time: Option<DateTime<Utc>>,
    /// `metadata.end_time`.
    pub end_time: Option<DateTime<Utc>>,
}

/// A `terra.activity` row.
#[derive(Debug, Clone, PartialEq)]
pub struct ActivityRow<'a> {
    /// Key and times.
    pub common: Common,
    /// `metadata.summary_id`.
    pub summary_id: Option<Cow<'a, str>>,
    /// First 10 characters of `metadata.start_time`.
    pub day: Option<NaiveDate>,
    /// `metadata.name`.
    pub name: Option<Cow<'a, str>>,
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

/// Maps an activity; `raw` is its JSON text (only for the fallback key).
pub fn activity<'a>(a: &'a Activity, raw: &str) -> ActivityRow<'a> {
    let meta = a.metadata.as_ref();
    let kind = meta.and_then(|m| m.r#type);
    let distance = a.distance_data.as_ref().and_then(|d| d.summary.as_ref());
    let hr = a.heart_rate_data.as_ref().and_then(|h| h.summary.as_ref());
    ActivityRow {
        common: Common {
            record_key: id_key(a.summary_id(), a.start_time(), raw),
            start_time: opt_utc(a.start_time()),
            end_time: opt_utc(a.end_time()),
        },
        summary_id: opt_text(a.summary_id()),
        day: a.start_time().and_then(Timestamp::date),
        name: opt_text(meta.and_then(|m| m.name.as_deref())),
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
    }
}

/// A `terra.sleep` row.
#[derive(Debug, Clone, PartialEq)]
pub struct SleepRow<'a> {
    /// Key and times.
    pub common: Common,
    /// `metadata.summary_id`.
    pub summary_id: Option<Cow<'a, str>>,
    /// First 10 characters of `metadata.end_time` (else of `start_time`).
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

/// Maps a sleep session; `raw` is its JSON text (only for the fallback key).
pub fn sleep<'a>(s: &'a Sleep, raw: &str) -> SleepRow<'a> {
    let meta = s.metadata.as_ref();
    let durations = s.sleep_durations_data.as_ref();
    let asleep = durations.and_then(|d| d.asleep.as_ref());
    let hr = s.heart_rate_data.as_ref().and_then(|h| h.summary.as_ref());
    let enrichment = s.data_enrichment.as_ref();
    SleepRow {
        common: Common {
            record_key: id_key(s.summary_id(), s.start_time(), raw),
            start_time: opt_utc(s.start_time()),
            end_time: opt_utc(s.end_time()),
        },
        summary_id: opt_text(s.summary_id()),
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
    }
}

/// A `terra.daily` row.
#[derive(Debug, Clone, PartialEq)]
pub struct DailyRow {
    /// Key and times.
    pub common: Common,
    /// The day (see [`day_key`]).
    pub day: Option<NaiveDate>,
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

/// Maps a daily record; `raw` is its JSON text (only for the fallback key).
pub fn daily(d: &Daily, raw: &str) -> DailyRow {
    let (record_key, day) = day_key(d.start_time(), raw);
    let distance = d.distance_data.as_ref();
    let calories = d.calories_data.as_ref();
    let hr = d.heart_rate_data.as_ref().and_then(|h| h.summary.as_ref());
    DailyRow {
        common: Common {
            record_key,
            start_time: opt_utc(d.start_time()),
            end_time: opt_utc(d.end_time()),
        },
        day,
        upload_type: code32(
            d.metadata
                .as_ref()
                .and_then(|m| m.upload_type)
                .and_then(|u| u.code()),
        ),
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
    }
}

/// A `terra.body` row.
#[derive(Debug, Clone, PartialEq)]
pub struct BodyRow {
    /// Key and times.
    pub common: Common,
    /// The day (see [`day_key`]).
    pub day: Option<NaiveDate>,
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

/// Maps a body record; `raw` is its JSON text (only for the fallback key).
pub fn body(b: &Body, raw: &str) -> BodyRow {
    use crate::model::MeasurementDataSample as M;
    let (record_key, day) = day_key(b.start_time(), raw);
    let measurements = b.measurements_data.as_ref();
    // The value of the latest measurement (by measurement_time; on a tie or without times,
    // the later one in the array) that has the field.
    let latest = |field: fn(&M) -> Option<f64>| -> Option<f64> {
        let list = measurements.and_then(|m| m.measurements.as_ref())?;
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
    };
    let glucose = b.glucose_data.as_ref();
    BodyRow {
        common: Common {
            record_key,
            start_time: opt_utc(b.start_time()),
            end_time: opt_utc(b.end_time()),
        },
        day,
        weight_kg: measurements
            .and_then(|m| m.day_avg_weight_kg)
            .or_else(|| latest(|m| m.weight_kg)),
        bmi: measurements
            .and_then(|m| m.day_avg_bmi)
            .or_else(|| latest(|m| m.BMI)),
        bodyfat_percentage: measurements
            .and_then(|m| m.day_avg_bodyfat_percentage)
            .or_else(|| latest(|m| m.bodyfat_percentage)),
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
    }
}

/// A `terra.nutrition` row.
#[derive(Debug, Clone, PartialEq)]
pub struct NutritionRow {
    /// Key and times.
    pub common: Common,
    /// The day (see [`day_key`]).
    pub day: Option<NaiveDate>,
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

/// Maps a nutrition record; `raw` is its JSON text (only for the fallback key).
pub fn nutrition(n: &Nutrition, raw: &str) -> NutritionRow {
    let (record_key, day) = day_key(n.start_time(), raw);
    let summary = n.summary.as_ref();
    let macros = summary.and_then(|s| s.macros.as_ref());
    NutritionRow {
        common: Common {
            record_key,
            start_time: opt_utc(n.start_time()),
            end_time: opt_utc(n.end_time()),
        },
        day,
        calories: macros.and_then(|m| m.calories),
        protein_g: macros.and_then(|m| m.protein_g),
        carbohydrates_g: macros.and_then(|m| m.carbohydrates_g),
        fat_g: macros.and_then(|m| m.fat_g),
        water_ml: summary.and_then(|s| s.water_ml),
    }
}

/// A `terra.menstruation` row.
#[derive(Debug, Clone, PartialEq)]
pub struct MenstruationRow {
    /// Key and times.
    pub common: Common,
    /// The day (see [`day_key`]).
    pub day: Option<NaiveDate>,
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

/// Maps a menstruation record; `raw` is its JSON text (only for the fallback key).
pub fn menstruation(m: &Menstruation, raw: &str) -> MenstruationRow {
    let (record_key, day) = day_key(m.start_time(), raw);
    let data = m.menstruation_data.as_ref();
    let phase = data.and_then(|d| d.current_phase);
    MenstruationRow {
        common: Common {
            record_key,
            start_time: opt_utc(m.start_time()),
            end_time: opt_utc(m.end_time()),
        },
        day,
        period_length_days: int32(data.and_then(|d| d.period_length_days)),
        cycle_length_days: int32(data.and_then(|d| d.cycle_length_days)),
        day_in_cycle: int32(data.and_then(|d| d.day_in_cycle)),
        current_phase: code32(phase.and_then(|p| p.code())),
        current_phase_name: phase.and_then(|p| p.name()),
        period_start_date: data
            .and_then(|d| d.period_start_date.as_ref())
            .and_then(Timestamp::date),
        is_predicted_cycle: data.and_then(|d| d.is_predicted_cycle),
    }
}

/// A `terra.athlete` row, read from the event's raw `athlete` object.
#[derive(Debug, Clone, PartialEq)]
pub struct AthleteRow<'a> {
    /// `athlete.first_name`.
    pub first_name: Option<Cow<'a, str>>,
    /// `athlete.last_name`.
    pub last_name: Option<Cow<'a, str>>,
    /// `athlete.sex`.
    pub sex: Option<Cow<'a, str>>,
    /// `athlete.gender`.
    pub gender: Option<Cow<'a, str>>,
    /// `athlete.date_of_birth` (its date part).
    pub date_of_birth: Option<NaiveDate>,
    /// `athlete.age`.
    pub age: Option<i32>,
    /// `athlete.email`.
    pub email: Option<Cow<'a, str>>,
    /// `athlete.city`.
    pub city: Option<Cow<'a, str>>,
    /// `athlete.state`.
    pub state: Option<Cow<'a, str>>,
    /// `athlete.country`.
    pub country: Option<Cow<'a, str>>,
}

/// Maps the `athlete` object of an athlete event (fields of another type are `None`).
pub fn athlete(a: &Value) -> AthleteRow<'_> {
    let text = |k: &str| opt_text(a.get(k).and_then(Value::as_str));
    AthleteRow {
        first_name: text("first_name"),
        last_name: text("last_name"),
        sex: text("sex"),
        gender: text("gender"),
        date_of_birth: text("date_of_birth").and_then(|d| Timestamp::new(d).date()),
        age: a
            .get("age")
            .and_then(|v| {
                v.as_i64()
                    .or_else(|| v.as_f64().map(f64::round).map(|f| f as i64))
            })
            .and_then(|v| i32::try_from(v).ok()),
        email: text("email"),
        city: text("city"),
        state: text("state"),
        country: text("country"),
    }
}

/// The samples of one record, as the parallel arrays one `UNNEST` insert binds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Samples {
    /// `terra.samples.kind` of each sample.
    pub kind: Vec<&'static str>,
    /// `terra.samples.ts` of each sample.
    pub ts: Vec<DateTime<Utc>>,
    /// `terra.samples.value` of each sample.
    pub value: Vec<Option<f64>>,
    /// `terra.samples.value2` of each sample.
    pub value2: Vec<Option<f64>>,
    /// Samples left out because they have no usable timestamp or no value (they stay in `data`).
    pub skipped: u64,
}

impl Samples {
    /// Number of samples to write.
    pub fn len(&self) -> usize {
        self.kind.len()
    }

    /// True when there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.kind.is_empty()
    }

    /// Adds a two-valued sample (or counts it as skipped).
    fn push2(
        &mut self,
        kind: &'static str,
        ts: Option<&Timestamp>,
        value: Option<f64>,
        value2: Option<f64>,
    ) {
        match opt_utc(ts) {
            Some(ts) if value.is_some() || value2.is_some() => {
                self.kind.push(kind);
                self.ts.push(ts);
                self.value.push(value);
                self.value2.push(value2);
            }
            _ => self.skipped += 1,
        }
    }

    /// Adds every item of an optional sample list.
    fn each<T>(
        &mut self,
        kind: &'static str,
        items: Option<&Vec<T>>,
        f: impl Fn(&T) -> (Option<&Timestamp>, Option<f64>),
    ) {
        let Some(items) = items else { return };
        self.reserve(items.len());
        for item in items {
            let (ts, v) = f(item);
            self.push2(kind, ts, v, None);
        }
    }

    /// Adds every item of an optional two-valued sample list.
    fn each2<T>(
        &mut self,
        kind: &'static str,
        items: Option<&Vec<T>>,
        f: impl Fn(&T) -> (Option<&Timestamp>, Option<f64>, Option<f64>),
    ) {
        let Some(items) = items else { return };
        self.reserve(items.len());
        for item in items {
            let (ts, v, v2) = f(item);
            self.push2(kind, ts, v, v2);
        }
    }

    fn reserve(&mut self, n: usize) {
        self.kind.reserve(n);
        self.ts.reserve(n);
        self.value.reserve(n);
        self.value2.reserve(n);
    }

    fn heart_rate(&mut self, hr: Option<&HeartRateData>) {
        let detailed = hr.and_then(|h| h.detailed.as_ref());
        self.each(
            "heart_rate",
            detailed.and_then(|d| d.hr_samples.as_ref()),
            |s| (s.timestamp.as_ref(), s.bpm),
        );
        self.each(
            "hrv_rmssd",
            detailed.and_then(|d| d.hrv_samples_rmssd.as_ref()),
            |s| (s.timestamp.as_ref(), s.hrv_rmssd),
        );
        self.each(
            "hrv_sdnn",
            detailed.and_then(|d| d.hrv_samples_sdnn.as_ref()),
            |s| (s.timestamp.as_ref(), s.hrv_sdnn),
        );
    }

    fn distance(&mut self, detailed: Option<&DistanceDataDetailed>) {
        self.each(
            "steps",
            detailed.and_then(|d| d.step_samples.as_ref()),
            |s| (s.timestamp.as_ref(), s.steps),
        );
        self.each(
            "distance",
            detailed.and_then(|d| d.distance_samples.as_ref()),
            |s| (s.timestamp.as_ref(), s.distance_meters),
        );
        self.each(
            "floors_climbed",
            detailed.and_then(|d| d.floors_climbed_samples.as_ref()),
            |s| (s.timestamp.as_ref(), s.floors_climbed),
        );
        self.each(
            "elevation",
            detailed.and_then(|d| d.elevation_samples.as_ref()),
            |s| (s.timestamp.as_ref(), s.elev_meters),
        );
    }

    fn oxygen(&mut self, oxygen: Option<&OxygenData>) {
        self.each(
            "oxygen_saturation",
            oxygen.and_then(|o| o.saturation_samples.as_ref()),
            |s| (s.timestamp.as_ref(), s.percentage),
        );
        self.each("vo2max", oxygen.and_then(|o| o.vo2_samples.as_ref()), |s| {
            (s.timestamp.as_ref(), s.vo2max_ml_per_min_per_kg)
        });
    }

    fn met(&mut self, met: Option<&METData>) {
        self.each("met", met.and_then(|m| m.MET_samples.as_ref()), |s| {
            (s.timestamp.as_ref(), s.level)
        });
    }

    fn temperature(&mut self, kind: &'static str, samples: Option<&Vec<TemperatureSample>>) {
        self.each(kind, samples, |s| {
            (s.timestamp.as_ref(), s.temperature_celsius)
        });
    }
}

/// The samples of an activity.
pub fn activity_samples(a: &Activity) -> Samples {
    let mut s = Samples::default();
    s.heart_rate(a.heart_rate_data.as_ref());
    s.distance(a.distance_data.as_ref().and_then(|d| d.detailed.as_ref()));
    s.each(
        "calories",
        a.calories_data
            .as_ref()
            .and_then(|c| c.calorie_samples.as_ref()),
        |x| (x.timestamp.as_ref(), x.calories),
    );
    s.each(
        "power",
        a.power_data.as_ref().and_then(|p| p.power_samples.as_ref()),
        |x| (x.timestamp.as_ref(), x.watts),
    );
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
    s.each2(
        "position",
        a.position_data
            .as_ref()
            .and_then(|p| p.position_samples.as_ref()),
        |x| {
            let coords = x.coords_lat_lng_deg.as_deref().unwrap_or(&[]);
            let at = |i: usize| coords.get(i).copied().flatten();
            (x.timestamp.as_ref(), at(0), at(1))
        },
    );
    s.oxygen(a.oxygen_data.as_ref());
    s.met(a.MET_data.as_ref());
    s.each(
        "activity_level",
        a.active_durations_data
            .as_ref()
            .and_then(|d| d.activity_levels_samples.as_ref()),
        |x| (x.timestamp.as_ref(), x.activity_level.map(|l| l.0.as_f64())),
    );
    s
}

/// The samples of a daily record.
pub fn daily_samples(d: &Daily) -> Samples {
    let mut s = Samples::default();
    s.heart_rate(d.heart_rate_data.as_ref());
    s.distance(d.distance_data.as_ref().and_then(|x| x.detailed.as_ref()));
    s.each(
        "calories",
        d.calories_data
            .as_ref()
            .and_then(|c| c.calorie_samples.as_ref()),
        |x| (x.timestamp.as_ref(), x.calories),
    );
    s.oxygen(d.oxygen_data.as_ref());
    s.met(d.MET_data.as_ref());
    s.each(
        "activity_level",
        d.active_durations_data
            .as_ref()
            .and_then(|x| x.activity_levels_samples.as_ref()),
        |x| (x.timestamp.as_ref(), x.activity_level.map(|l| l.0.as_f64())),
    );
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

/// The samples of a sleep session.
pub fn sleep_samples(sl: &Sleep) -> Samples {
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

/// The samples of a body record.
pub fn body_samples(b: &Body) -> Samples {
    let mut s = Samples::default();
    let heart = b.heart_data.as_ref();
    s.heart_rate(heart.and_then(|h| h.heart_rate_data.as_ref()));
    s.each2(
        "rr_interval",
        heart.and_then(|h| h.rr_interval_samples.as_ref()),
        |x| (x.timestamp.as_ref(), x.rr_interval_ms, x.hr_bpm),
    );
    s.each(
        "pulse_wave_velocity",
        heart.and_then(|h| h.pulse_wave_velocity_samples.as_ref()),
        |x| {
            (
                x.timestamp.as_ref(),
                x.pulse_wave_velocity_meters_per_second,
            )
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
    s.each(
        "ketone",
        b.ketone_data
            .as_ref()
            .and_then(|k| k.ketone_samples.as_ref()),
        |x| (x.timestamp.as_ref(), x.ketone_mg_per_dL),
    );
    s.each2(
        "blood_pressure",
        b.blood_pressure_data
            .as_ref()
            .and_then(|p| p.blood_pressure_samples.as_ref()),
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
    s.each(
        "hydration",
        b.hydration_data
            .as_ref()
            .and_then(|h| h.hydration_amount_samples.as_ref()),
        |x| (x.timestamp.as_ref(), x.hydration_kg),
    );
    let measurements = b
        .measurements_data
        .as_ref()
        .and_then(|m| m.measurements.as_ref());
    // A measurement carries several values; a missing one is simply not a sample (not skipped).
    if let Some(list) = measurements {
        for m in list {
            let at = m.measurement_time.as_ref();
            for (kind, v) in [
                ("weight", m.weight_kg),
                ("bmi", m.BMI),
                ("bodyfat_percentage", m.bodyfat_percentage),
            ] {
                if v.is_some() {
                    s.push2(kind, at, v, None);
                }
            }
        }
    }
    s
}

/// The samples of a nutrition record.
pub fn nutrition_samples(n: &Nutrition) -> Samples {
    let mut s = Samples::default();
    s.each("drink", n.drink_samples.as_ref(), |x| {
        (x.timestamp.as_ref(), x.drink_volume)
    });
    s
}

/// The samples of a menstruation record.
pub fn menstruation_samples(m: &Menstruation) -> Samples {
    let mut s = Samples::default();
    s.each(
        "menstruation_flow",
        m.menstruation_data
            .as_ref()
            .and_then(|d| d.menstruation_flow.as_ref()),
        |x| (x.timestamp.as_ref(), x.flow.map(|f| f.0.as_f64())),
    );
    s
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Event;

    fn ts(s: &str) -> Timestamp {
        Timestamp::new(s)
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn first_activity(json: &str) -> Activity {
        match Event::from_slice(json.as_bytes()).unwrap() {
            Event::Activity(mut e) => e.data.remove(0),
            other => panic!("not an activity: {other:?}"),
        }
    }

    fn wrap(ty: &str, record: &str) -> String {
        format!(r#"{{"type":"{ty}","user":{{"user_id":"u1"}},"data":[{record}]}}"#)
    }

    #[test]
    fn times_with_and_without_offset() {
        assert_eq!(
            to_utc(&ts("2026-07-01T07:04:11.250000+01:00")),
            Some(utc("2026-07-01T06:04:11.25Z"))
        );
        // No offset: the wall-clock time, taken as UTC.
        assert_eq!(
            to_utc(&ts("2026-06-30T23:12:00.000000")),
            Some(utc("2026-06-30T23:12:00Z"))
        );
        assert_eq!(to_utc(&ts("2026-06-28")), Some(utc("2026-06-28T00:00:00Z")));
        assert_eq!(
            to_utc(&ts("2026-07-01T09:12:33Z")),
            Some(utc("2026-07-01T09:12:33Z"))
        );
        assert_eq!(to_utc(&ts("yesterday")), None);
        assert_eq!(to_utc(&ts("0000-01-01T00:00:00Z")), None);
        assert_eq!(to_utc(&ts("+20000-01-01T00:00:00Z")), None);
        assert_eq!(
            to_utc(&ts("9999-12-31T23:59:59Z")),
            Some(utc("9999-12-31T23:59:59Z"))
        );
        assert_eq!(to_utc(&ts("")), None);
    }

    #[test]
    fn keys_fall_back_but_never_vanish() {
        let start = ts("2026-07-01T07:04:11+01:00");
        assert_eq!(id_key(Some("abc"), Some(&start), "{}"), "abc");
        assert_eq!(
            id_key(None, Some(&start), "{}"),
            "start_time:2026-07-01T07:04:11+01:00"
        );
        assert_eq!(
            id_key(Some(""), Some(&start), "{}"),
            "start_time:2026-07-01T07:04:11+01:00"
        );
        let digest = id_key(None, None, r#"{"a":1}"#);
        assert!(
            digest.starts_with("sha256:") && digest.len() == 7 + 64,
            "{digest}"
        );
        assert_eq!(digest, id_key(None, None, r#"{"a":1}"#));
        assert_ne!(digest, id_key(None, None, r#"{"a":2}"#));

        let (key, day) = day_key(Some(&ts("2026-07-01T00:00:00.000000+01:00")), "{}");
        assert_eq!(key, "2026-07-01");
        assert_eq!(day, NaiveDate::from_ymd_opt(2026, 7, 1));
        // The day as written, even when the instant falls on another UTC day.
        let (key, _) = day_key(Some(&ts("2026-06-30T23:30:00-05:00")), "{}");
        assert_eq!(key, "2026-06-30");
        let (key, day) = day_key(None, "{}");
        assert!(key.starts_with("sha256:"));
        assert_eq!(day, None);
    }

    #[test]
    fn nul_escapes_are_replaced_only_where_they_are_escapes() {
        assert!(matches!(jsonb_text(r#"{"a":"b"}"#), Cow::Borrowed(_)));
        assert_eq!(jsonb_text(r#"{"a":"x\u0000y"}"#), r#"{"a":"x\ufffdy"}"#);
        assert_eq!(
            jsonb_text(r#"{"\u0000":"\u0000\u0000"}"#),
            r#"{"\ufffd":"\ufffd\ufffd"}"#
        );
        // `\\u0000` is a literal backslash followed by "u0000": valid in jsonb, kept.
        assert_eq!(jsonb_text(r#"{"a":"\\u0000"}"#), r#"{"a":"\\u0000"}"#);
        assert_eq!(jsonb_text(r#"{"a":"\\\u0000"}"#), r#"{"a":"\\\ufffd"}"#);
        assert_eq!(jsonb_text(r#"{"é":"ü\u0000"}"#), r#"{"é":"ü\ufffd"}"#);
        // Other escapes are untouched.
        assert_eq!(
            jsonb_text(r#"["\u00001","\u0001"]"#),
            r#"["\ufffd1","\u0001"]"#
        );
    }

    #[test]
    fn nul_characters_never_reach_text_columns() {
        assert!(matches!(pg_text("abc"), Cow::Borrowed("abc")));
        assert_eq!(pg_text("a\0b\0"), "a\u{fffd}b\u{fffd}");
        assert_eq!(id_key(Some("x\0"), None, "{}"), "x\u{fffd}");
        assert_eq!(
            id_key(None, Some(&ts("2026\0")), "{}"),
            "start_time:2026\u{fffd}"
        );
    }

    #[test]
    fn whole_numbers() {
        assert_eq!(whole(Some(Integer::from_i64(7902))), Some(7902));
        assert_eq!(whole(Some(Integer::from_f64(7902.0))), Some(7902));
        assert_eq!(whole(Some(Integer::from_f64(7902.5))), Some(7903));
        assert_eq!(whole(Some(Integer::from_f64(1e30))), None);
        assert_eq!(whole(None), None);
        assert_eq!(int32(Some(Integer::from_i64(1 << 40))), None);
        assert_eq!(int32(Some(Integer::from_i64(28))), Some(28));
    }

    #[test]
    fn activity_columns_come_from_the_right_fields() {
        let a = first_activity(&wrap(
            "activity",
            r#"{"metadata":{"name":"Ride","summary_id":"s1","type":1,"upload_type":2,
                "start_time":"2026-07-01T07:00:00+01:00","end_time":"2026-07-01T08:00:00+01:00"},
               "active_durations_data":{"activity_seconds":3300},
               "calories_data":{"total_burned_calories":700.5,"net_activity_calories":600},
               "distance_data":{"summary":{"distance_meters":30000.5,"steps":12.0}},
               "heart_rate_data":{"summary":{"avg_hr_bpm":140.5,"max_hr_bpm":171}},
               "power_data":{"avg_watts":201.5},
               "movement_data":{"avg_speed_meters_per_second":8.3},
               "data_enrichment":{"strain_score":12.5}}"#,
        ));
        let row = activity(&a, "{}");
        assert_eq!(row.common.record_key, "s1");
        assert_eq!(row.common.start_time, Some(utc("2026-07-01T06:00:00Z")));
        assert_eq!(row.common.end_time, Some(utc("2026-07-01T07:00:00Z")));
        assert_eq!(row.summary_id.as_deref(), Some("s1"));
        assert_eq!(row.day, NaiveDate::from_ymd_opt(2026, 7, 1));
        assert_eq!(row.name.as_deref(), Some("Ride"));
        assert_eq!(row.activity_type, Some(1));
        assert_eq!(row.activity_type_name, Some("Biking"));
        assert_eq!(row.upload_type, Some(2));
        assert_eq!(row.active_seconds, Some(3300.0));
        assert_eq!(row.calories, Some(700.5));
        assert_eq!(row.distance_meters, Some(30000.5));
        assert_eq!(row.steps, Some(12));
        assert_eq!(row.avg_hr_bpm, Some(140.5));
        assert_eq!(row.max_hr_bpm, Some(171.0));
        assert_eq!(row.avg_watts, Some(201.5));
        assert_eq!(row.avg_speed_meters_per_second, Some(8.3));
        assert_eq!(row.strain_score, Some(12.5));
    }

    #[test]
    fn empty_activity_maps_to_nulls_with_a_fallback_key() {
        let a = first_activity(&wrap("activity", "{}"));
        let row = activity(&a, "{}");
        assert_eq!(row.common.record_key, digest_key("{}"));
        assert_eq!(row.calories, None);
        assert_eq!(row.activity_type_name, None);
        assert!(activity_samples(&a).is_empty());
    }

    #[test]
    fn activity_samples_cover_every_series() {
        let a = first_activity(&wrap(
            "activity",
            r#"{"heart_rate_data":{"detailed":{
                    "hr_samples":[{"timestamp":"2026-07-01T07:00:00+01:00","bpm":120},
                                  {"timestamp":"2026-07-01T07:00:01+01:00","bpm":null},
                                  {"bpm":121},
                                  {"timestamp":"2026-07-01T07:00:02","bpm":122}],
                    "hrv_samples_rmssd":[{"timestamp":"2026-07-01T07:00:00Z","hrv_rmssd":40}]}},
                "power_data":{"power_samples":[{"timestamp":"2026-07-01T07:00:00Z","watts":250}]},
                "movement_data":{"speed_samples":[{"timestamp":"2026-07-01T07:00:00Z","speed_meters_per_second":3.5}],
                                 "cadence_samples":[{"timestamp":"2026-07-01T07:00:00Z","cadence_rpm":90}]},
                "distance_data":{"detailed":{"distance_samples":[{"timestamp":"2026-07-01T07:00:00Z","distance_meters":10}],
                                             "elevation_samples":[{"timestamp":"2026-07-01T07:00:00Z","elev_meters":55}]}},
                "position_data":{"position_samples":[
                    {"timestamp":"2026-07-01T07:00:00Z","coords_lat_lng_deg":[51.5,-0.12]},
                    {"timestamp":"2026-07-01T07:00:01Z","coords_lat_lng_deg":[null,null]},
                    {"timestamp":"2026-07-01T07:00:02Z","coords_lat_lng_deg":[51.6]}]}}"#,
        ));
        let s = activity_samples(&a);
        let got: Vec<_> = (0..s.len())
            .map(|i| (s.kind[i], s.ts[i].to_rfc3339(), s.value[i], s.value2[i]))
            .collect();
        let t0 = "2026-07-01T07:00:00+00:00".to_owned();
        assert_eq!(
            got,
            vec![
                (
                    "heart_rate",
                    "2026-07-01T06:00:00+00:00".to_owned(),
                    Some(120.0),
                    None
                ),
                // No offset: wall clock as UTC.
                (
                    "heart_rate",
                    "2026-07-01T07:00:02+00:00".to_owned(),
                    Some(122.0),
                    None
                ),
                ("hrv_rmssd", t0.clone(), Some(40.0), None),
                ("distance", t0.clone(), Some(10.0), None),
                ("elevation", t0.clone(), Some(55.0), None),
                ("power", t0.clone(), Some(250.0), None),
                ("speed", t0.clone(), Some(3.5), None),
                ("cadence", t0.clone(), Some(90.0), None),
                ("position", t0, Some(51.5), Some(-0.12)),
                (
                    "position",
                    "2026-07-01T07:00:02+00:00".to_owned(),
                    Some(51.6),
                    None
                ),
            ]
        );
        // The null bpm, the sample without a timestamp and the empty position.
        assert_eq!(s.skipped, 3);
    }

    #[test]
    fn sleep_columns_and_samples() {
        let e = Event::from_slice(
            wrap(
                "sleep",
                r#"{"metadata":{"start_time":"2026-06-30T23:12:00+01:00","end_time":"2026-07-01T07:02:00+01:00","is_nap":false,"upload_type":2},
                    "sleep_durations_data":{"asleep":{"duration_asleep_state_seconds":25200,"duration_deep_sleep_state_seconds":5400,
                        "duration_light_sleep_state_seconds":14700,"duration_REM_sleep_state_seconds":5100},
                        "awake":{"duration_awake_state_seconds":1500},"other":{"duration_in_bed_seconds":28200},"sleep_efficiency":91.5,
                        "hypnogram_samples":[{"timestamp":"2026-06-30T23:12:00+01:00","level":1},{"timestamp":"2026-06-30T23:30:00+01:00","level":5}]},
                    "heart_rate_data":{"summary":{"avg_hr_bpm":55.5,"avg_hrv_rmssd":48}},
                    "respiration_data":{"breaths_data":{"samples":[{"timestamp":"2026-06-30T23:30:00+01:00","breaths_per_min":14}]}},
                    "data_enrichment":{"sleep_score":81,"readiness_score":77}}"#,
            )
            .as_bytes(),
        )
        .unwrap();
        let Event::Sleep(e) = e else { panic!() };
        let s = &e.data[0];
        let row = sleep(s, "{}");
        assert_eq!(
            row.common.record_key,
            "start_time:2026-06-30T23:12:00+01:00"
        );
        assert_eq!(row.summary_id.as_deref(), None);
        assert_eq!(row.wake_day, NaiveDate::from_ymd_opt(2026, 7, 1));
        assert_eq!(row.is_nap, Some(false));
        assert_eq!(row.upload_type, Some(2));
        assert_eq!(row.asleep_seconds, Some(25200.0));
        assert_eq!(row.deep_seconds, Some(5400.0));
        assert_eq!(row.light_seconds, Some(14700.0));
        assert_eq!(row.rem_seconds, Some(5100.0));
        assert_eq!(row.awake_seconds, Some(1500.0));
        assert_eq!(row.in_bed_seconds, Some(28200.0));
        assert_eq!(row.sleep_efficiency, Some(91.5));
        assert_eq!(row.avg_hr_bpm, Some(55.5));
        assert_eq!(row.avg_hrv_rmssd, Some(48.0));
        assert_eq!(row.sleep_score, Some(81.0));
        assert_eq!(row.readiness_score, Some(77.0));
        let samples = sleep_samples(s);
        assert_eq!(
            samples.kind,
            ["sleep_stage", "sleep_stage", "breathing_rate"]
        );
        assert_eq!(samples.value, [Some(1.0), Some(5.0), Some(14.0)]);
    }

    #[test]
    fn day_records_map_their_columns() {
        let Event::Daily(e) = Event::from_slice(
            wrap(
                "daily",
                r#"{"metadata":{"start_time":"2026-07-01T00:00:00+01:00","end_time":"2026-07-02T00:00:00+01:00","upload_type":1},
                    "distance_data":{"steps":11894,"distance_meters":9412.7,"floors_climbed":12},
                    "calories_data":{"total_burned_calories":2450.8,"net_activity_calories":600.5},
                    "active_durations_data":{"activity_seconds":5340},
                    "heart_rate_data":{"summary":{"avg_hr_bpm":70,"max_hr_bpm":160,"resting_hr_bpm":52}},
                    "stress_data":{"avg_stress_level":31,"samples":[{"timestamp":"2026-07-01T10:00:00+01:00","level":40}]},
                    "data_enrichment":{"total_stress_score":45.5}}"#,
            )
            .as_bytes(),
        )
        .unwrap() else {
            panic!()
        };
        let d = &e.data[0];
        let row = daily(d, "{}");
        assert_eq!(row.common.record_key, "2026-07-01");
        assert_eq!(row.day, NaiveDate::from_ymd_opt(2026, 7, 1));
        assert_eq!(row.upload_type, Some(1));
        assert_eq!(row.steps, Some(11894));
        assert_eq!(row.distance_meters, Some(9412.7));
        assert_eq!(row.floors_climbed, Some(12));
        assert_eq!(row.total_burned_calories, Some(2450.8));
        assert_eq!(row.active_calories, Some(600.5));
        assert_eq!(row.active_seconds, Some(5340.0));
        assert_eq!(row.avg_hr_bpm, Some(70.0));
        assert_eq!(row.max_hr_bpm, Some(160.0));
        assert_eq!(row.resting_hr_bpm, Some(52.0));
        assert_eq!(row.avg_stress_level, Some(31.0));
        assert_eq!(row.total_stress_score, Some(45.5));
        assert_eq!(daily_samples(d).kind, ["stress"]);

        let Event::Body(e) = Event::from_slice(
            wrap(
                "body",
                r#"{"metadata":{"start_time":"2026-07-01T00:00:00+01:00"},
                    "measurements_data":{"measurements":[
                        {"measurement_time":"2026-07-01T19:00:00+01:00","weight_kg":72.9},
                        {"measurement_time":"2026-07-01T07:55:02+01:00","weight_kg":72.4,"bodyfat_percentage":17.9,"BMI":22.6}]},
                    "glucose_data":{"day_avg_blood_glucose_mg_per_dL":96.5,
                        "blood_glucose_samples":[{"timestamp":"2026-07-01T08:00:00+01:00","blood_glucose_mg_per_dL":101}]},
                    "oxygen_data":{"avg_saturation_percentage":97.5},
                    "blood_pressure_data":{"blood_pressure_samples":[{"timestamp":"2026-07-01T08:00:00+01:00","systolic_bp":121,"diastolic_bp":79}]},
                    "heart_data":{"heart_rate_data":{"summary":{"resting_hr_bpm":52}}}}"#,
            )
            .as_bytes(),
        )
        .unwrap() else {
            panic!()
        };
        let b = &e.data[0];
        let row = body(b, "{}");
        // The latest measurement by time, not by array position.
        assert_eq!(row.weight_kg, Some(72.9));
        assert_eq!(row.bmi, Some(22.6));
        assert_eq!(row.bodyfat_percentage, Some(17.9));
        assert_eq!(row.resting_hr_bpm, Some(52.0));
        assert_eq!(row.avg_saturation_percentage, Some(97.5));
        assert_eq!(row.avg_blood_glucose_mg_per_dl, Some(96.5));
        let s = body_samples(b);
        assert_eq!(
            s.kind,
            [
                "glucose",
                "blood_pressure",
                "weight",
                "weight",
                "bmi",
                "bodyfat_percentage"
            ]
        );
        assert_eq!(s.value[1], Some(121.0));
        assert_eq!(s.value2[1], Some(79.0));

        let Event::Menstruation(e) = Event::from_slice(
            wrap(
                "menstruation",
                r#"{"metadata":{"start_time":"2026-07-01T00:00:00+01:00"},
                    "menstruation_data":{"period_start_date":"2026-06-28","day_in_cycle":4,"period_length_days":5,
                        "cycle_length_days":28,"current_phase":1,"is_predicted_cycle":false}}"#,
            )
            .as_bytes(),
        )
        .unwrap() else {
            panic!()
        };
        let row = menstruation(&e.data[0], "{}");
        assert_eq!(row.period_length_days, Some(5));
        assert_eq!(row.cycle_length_days, Some(28));
        assert_eq!(row.day_in_cycle, Some(4));
        assert_eq!(row.current_phase, Some(1));
        assert_eq!(row.current_phase_name, Some("Period"));
        assert_eq!(row.period_start_date, NaiveDate::from_ymd_opt(2026, 6, 28));
        assert_eq!(row.is_predicted_cycle, Some(false));

        let Event::Nutrition(e) = Event::from_slice(
            wrap(
                "nutrition",
                r#"{"metadata":{"start_time":"2026-07-01T00:00:00+01:00"},
                    "summary":{"macros":{"calories":2105,"protein_g":128.4,"carbohydrates_g":231,"fat_g":71.3},"water_ml":2300}}"#,
            )
            .as_bytes(),
        )
        .unwrap() else {
            panic!()
        };
        let row = nutrition(&e.data[0], "{}");
        assert_eq!(row.common.record_key, "2026-07-01");
        assert_eq!(row.calories, Some(2105.0));
        assert_eq!(row.protein_g, Some(128.4));
        assert_eq!(row.carbohydrates_g, Some(231.0));
        assert_eq!(row.fat_g, Some(71.3));
        assert_eq!(row.water_ml, Some(2300.0));
    }

    #[test]
    fn athlete_fields() {
        let v: Value = serde_json::from_str(
            r#"{"first_name":"John","last_name":"Smith","sex":"male","date_of_birth":"1991-04-12",
                "age":35,"email":"j@example.com","city":"SF","state":"CA","country":"US","gender":7}"#,
        )
        .unwrap();
        let row = athlete(&v);
        assert_eq!(row.first_name.as_deref(), Some("John"));
        assert_eq!(row.last_name.as_deref(), Some("Smith"));
        assert_eq!(row.sex.as_deref(), Some("male"));
        assert_eq!(row.gender.as_deref(), None, "not a string");
        assert_eq!(row.date_of_birth, NaiveDate::from_ymd_opt(1991, 4, 12));
        assert_eq!(row.age, Some(35));
        assert_eq!(row.email.as_deref(), Some("j@example.com"));
        assert_eq!(row.city.as_deref(), Some("SF"));
        assert_eq!(row.state.as_deref(), Some("CA"));
        assert_eq!(row.country.as_deref(), Some("US"));
        assert_eq!(athlete(&Value::Null).first_name.as_deref(), None);
    }

    #[test]
    fn sample_kind_list_is_complete_and_unique() {
        let mut kinds = SAMPLE_KINDS.to_vec();
        kinds.sort_unstable();
        kinds.dedup();
        assert_eq!(kinds.len(), SAMPLE_KINDS.len());
    }
}
