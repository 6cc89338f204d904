//! Benchmark bodies: writes Terra-shaped deliveries, signed now, for `scripts/bench.sh`.
//!
//! ```text
//! TERRA_SIGNING_SECRET=whsec_bench cargo run --release --example bench_bodies -- \
//!     --kind typical --count 100000 --out typical.tsv
//! TERRA_SIGNING_SECRET=whsec_bench cargo run --release --example bench_bodies -- \
//!     --kind activity-4h --count 3 --dir large/
//! ```
//! `--kind typical` is a mix of ~5 KB deliveries (daily, sleep, activity, body, nutrition,
//! menstruation, and `auth`/`permission_change` account events) over many users and days, so
//! every delivery of a run is its own typed row. `--kind activity-4h` is a 4-hour workout with
//! 1 Hz samples (~9.5 MB). The bodies depend only on their index, so two runs write the same
//! bytes; only the signatures change, because Terra's signature tolerance is 300 s: write the
//! file right before the load that sends it.
//!
//! `--out FILE` writes one delivery per line, `<terra-signature>\t<x-terra-ordering-timestamp>\t
//! <body>` (the body is compact JSON, so it holds no tab or newline); `--dir DIR` writes
//! `DIR/<n>.json` (the exact body bytes) and `DIR/<n>.headers` (for `curl -H @file`).

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Duration, NaiveDate, Utc};
use secrecy::SecretString;
use serde_json::{json, Value};

type Error = Box<dyn std::error::Error>;

/// Ordering timestamps (ms) count up from here, one per delivery index.
const ORDERING_BASE_MS: i64 = 1_780_000_000_000;
/// Distinct users of a typical run unless `--users` says otherwise.
const DEFAULT_USERS: u64 = 1_000;
/// Upper bound on `--count`, so a typo cannot fill the disk.
const MAX_COUNT: u64 = 1_000_000;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Typical,
    Activity4h,
}

enum Output {
    Tsv(PathBuf),
    Dir(PathBuf),
}

struct Args {
    kind: Kind,
    count: u64,
    users: u64,
    output: Output,
    secret: SecretString,
}

fn parse_args() -> Result<Args, String> {
    let (mut kind, mut count, mut users) = (Kind::Typical, 10_000u64, DEFAULT_USERS);
    let (mut out, mut dir) = (None, None);
    let mut secret = std::env::var("TERRA_SIGNING_SECRET").ok();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--kind" => {
                kind = match value()?.as_str() {
                    "typical" => Kind::Typical,
                    "activity-4h" => Kind::Activity4h,
                    other => return Err(format!("--kind is typical or activity-4h, not {other}")),
                }
            }
            "--count" => count = value()?.parse().map_err(|e| format!("--count: {e}"))?,
            "--users" => users = value()?.parse().map_err(|e| format!("--users: {e}"))?,
            "--out" => out = Some(PathBuf::from(value()?)),
            "--dir" => dir = Some(PathBuf::from(value()?)),
            "--secret" => secret = Some(value()?),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    let output = match (out, dir) {
        (Some(path), None) => Output::Tsv(path),
        (None, Some(path)) => Output::Dir(path),
        _ => return Err("give exactly one of --out FILE or --dir DIR".into()),
    };
    if count == 0 || count > MAX_COUNT {
        return Err(format!("--count must be between 1 and {MAX_COUNT}"));
    }
    let secret = SecretString::from(secret.ok_or("set --secret or TERRA_SIGNING_SECRET")?);
    Ok(Args {
        kind,
        count,
        users: users.max(1),
        output,
        secret,
    })
}

/// A cheap deterministic spread of small values, so figures vary between bodies.
fn wobble(n: u64, salt: u64, modulo: u64) -> u64 {
    let x = n
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(salt.wrapping_mul(0xBF58_476D_1CE4_E5B9));
    (x ^ (x >> 31)) % modulo.max(1)
}

fn stamp(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
}

/// A UUID-shaped, stable user id.
fn user_id(u: u64) -> String {
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        wobble(u, 1, 1 << 32),
        wobble(u, 2, 1 << 16),
        wobble(u, 3, 1 << 12),
        wobble(u, 4, 1 << 12),
        u
    )
}

fn user(u: u64) -> Value {
    const PROVIDERS: [&str; 5] = ["GARMIN", "FITBIT", "OURA", "WHOOP", "POLAR"];
    json!({
        "user_id": user_id(u),
        "provider": PROVIDERS[(u % 5) as usize],
        "last_webhook_update": "2026-07-01T09:12:33.891000+00:00",
        "scopes": "ACTIVITY_EXPORT,HEALTH_EXPORT,SLEEP_EXPORT,NUTRITION_EXPORT",
        "reference_id": format!("bench-ref-{u}"),
        "active": true
    })
}

/// One generated delivery: its body, event type and number of samples.
struct Delivery {
    body: Vec<u8>,
    event_type: &'static str,
    samples: usize,
}

/// A data event, keys in Terra's order (`type` first: serde_json would sort them).
fn data_event(event_type: &'static str, u: u64, record: Value, samples: usize) -> Delivery {
    let body = format!(
        r#"{{"type":"{event_type}","version":"2022-03-16","user":{},"data":[{record}]}}"#,
        user(u)
    );
    Delivery {
        body: body.into_bytes(),
        event_type,
        samples,
    }
}

/// `count` points of a series, one every `step` from `start`.
fn series(
    start: DateTime<Utc>,
    step: Duration,
    count: usize,
    point: impl Fn(usize, String) -> Value,
) -> Vec<Value> {
    (0..count)
        .map(|k| point(k, stamp(start + step * k as i32)))
        .collect()
}

fn daily(n: u64, u: u64, day: DateTime<Utc>) -> Delivery {
    let hr = series(
        day,
        Duration::minutes(40),
        36,
        |k, t| json!({"timestamp": t, "bpm": 52 + wobble(n, k as u64, 60), "timer_duration_seconds": null}),
    );
    let stress = series(
        day,
        Duration::hours(2),
        12,
        |k, t| json!({"timestamp": t, "level": wobble(n, 100 + k as u64, 80)}),
    );
    let samples = hr.len() + stress.len();
    let record = json!({
        "metadata": {"start_time": stamp(day), "end_time": stamp(day + Duration::days(1)),
                     "upload_type": 1, "timestamp_localization": 0},
        "distance_data": {"steps": 4_000 + wobble(n, 1, 12_000), "distance_meters": 5_123.4 + wobble(n, 2, 6_000) as f64,
                          "floors_climbed": wobble(n, 3, 20),
                          "elevation": {"gain_actual_meters": 42.5, "loss_actual_meters": 40.1, "max_meters": 88.0, "min_meters": 31.0}},
        "calories_data": {"total_burned_calories": 1_900.0 + wobble(n, 4, 1_200) as f64,
                          "net_activity_calories": 300.0 + wobble(n, 5, 700) as f64, "BMR_calories": 1_650.5},
        "active_durations_data": {"activity_seconds": 3_000 + wobble(n, 6, 4_000), "inactivity_seconds": 41_000,
                                  "low_intensity_seconds": 2_400, "moderate_intensity_seconds": 1_200,
                                  "vigorous_intensity_seconds": 600, "rest_seconds": 36_000},
        "heart_rate_data": {"summary": {"avg_hr_bpm": 68.0 + wobble(n, 7, 10) as f64, "resting_hr_bpm": 50 + wobble(n, 8, 12),
                                        "max_hr_bpm": 150 + wobble(n, 9, 30), "min_hr_bpm": 45, "avg_hrv_rmssd": 42.7},
                            "detailed": {"hr_samples": hr, "hrv_samples_rmssd": [], "hrv_samples_sdnn": []}},
        "stress_data": {"avg_stress_level": 30 + wobble(n, 10, 20), "max_stress_level": 88,
                        "rest_stress_duration_seconds": 21_000, "low_stress_duration_seconds": 9_000,
                        "medium_stress_duration_seconds": 3_600, "high_stress_duration_seconds": 900, "samples": stress},
        "oxygen_data": {"avg_saturation_percentage": 96.5, "vo2max_ml_per_min_per_kg": 44.2},
        "scores": {"recovery": wobble(n, 11, 100), "activity": wobble(n, 12, 100), "sleep": wobble(n, 13, 100)},
        "MET_data": {"avg_level": 1.4, "num_high_intensity_minutes": 12, "num_inactive_minutes": 820,
                     "num_low_intensity_minutes": 210, "num_moderate_intensity_minutes": 38},
        "data_enrichment": {"total_stress_score": wobble(n, 14, 100), "respiratory_score": 71.0, "resilience_score": 64},
        "device_data": {"name": "Forerunner 265", "manufacturer": "Garmin", "software_version": "19.18",
                        "hardware_version": "006-B4257-00", "serial_number": format!("33{:08}", n % 100_000_000),
                        "last_upload_date": stamp(day + Duration::hours(23))}
    });
    data_event("daily", u, record, samples)
}

fn sleep(n: u64, u: u64, day: DateTime<Utc>) -> Delivery {
    let start = day - Duration::minutes(50 + wobble(n, 1, 60) as i64);
    const STAGES: [u8; 5] = [4, 5, 4, 6, 1];
    let hypnogram = series(
        start,
        Duration::minutes(10),
        48,
        |k, t| json!({"timestamp": t, "level": STAGES[k % STAGES.len()]}),
    );
    let hr = series(
        start,
        Duration::minutes(40),
        12,
        |k, t| json!({"timestamp": t, "bpm": 48 + wobble(n, k as u64, 12)}),
    );
    let samples = hypnogram.len() + hr.len();
    let record = json!({
        "metadata": {"summary_id": format!("bench-sleep-{n}"), "start_time": stamp(start),
                     "end_time": stamp(start + Duration::hours(8)), "is_nap": false, "upload_type": 1,
                     "timestamp_localization": 0},
        "sleep_durations_data": {
            "asleep": {"duration_asleep_state_seconds": 25_000 + wobble(n, 2, 3_000),
                       "duration_deep_sleep_state_seconds": 5_400, "duration_light_sleep_state_seconds": 14_000,
                       "duration_REM_sleep_state_seconds": 5_100, "num_REM_events": 4},
            "awake": {"duration_awake_state_seconds": 1_500, "num_wakeup_events": 3, "sleep_latency_seconds": 600,
                      "wake_up_latency_seconds": 120, "num_out_of_bed_events": 1},
            "other": {"duration_in_bed_seconds": 28_800},
            "sleep_efficiency": 90.0 + wobble(n, 3, 9) as f64,
            "hypnogram_samples": hypnogram},
        "heart_rate_data": {"summary": {"avg_hr_bpm": 54.0, "resting_hr_bpm": 47, "min_hr_bpm": 44, "max_hr_bpm": 71},
                            "detailed": {"hr_samples": hr}},
        "respiration_data": {"breaths_data": {"avg_breaths_per_min": 14.2, "max_breaths_per_min": 18.0, "min_breaths_per_min": 11.0},
                             "oxygen_saturation_data": {"avg_saturation_percentage": 95.8}},
        "readiness_data": {"readiness": wobble(n, 4, 100)},
        "temperature_data": {"delta": 0.2},
        "data_enrichment": {"sleep_score": 60 + wobble(n, 5, 40)},
        "scores": {"sleep": 60 + wobble(n, 6, 40)},
        "device_data": {"name": "Oura Ring Gen3", "manufacturer": "Oura", "software_version": "2.9.16",
                        "last_upload_date": stamp(start + Duration::hours(9))}
    });
    data_event("sleep", u, record, samples)
}

fn activity(n: u64, u: u64, day: DateTime<Utc>) -> Delivery {
    let start = day + Duration::hours(7) + Duration::minutes(wobble(n, 1, 60) as i64);
    let hr = series(
        start,
        Duration::minutes(1),
        44,
        |k, t| json!({"timestamp": t, "bpm": 120 + wobble(n, k as u64, 50), "timer_duration_seconds": k * 60}),
    );
    let laps = series(start, Duration::minutes(11), 4, |k, t| {
        json!({"start_time": t, "end_time": stamp(start + Duration::minutes(11 * (k as i64 + 1))),
               "distance_meters": 2_000.0, "calories": 110.0, "avg_hr_bpm": 140 + k, "avg_speed_meters_per_second": 3.0,
               "active_duration_seconds": 660, "trigger_method": "distance"})
    });
    let samples = hr.len();
    let record = json!({
        "metadata": {"summary_id": format!("bench-activity-{n}"), "name": "Morning Run", "type": 8, "upload_type": 1,
                     "start_time": stamp(start), "end_time": stamp(start + Duration::minutes(44)),
                     "city": "London", "country": "GB"},
        "distance_data": {"summary": {"distance_meters": 6_000.0 + wobble(n, 2, 4_000) as f64, "steps": 7_000 + wobble(n, 3, 2_000),
                                      "elevation": {"gain_actual_meters": 35.0, "loss_actual_meters": 34.0}}},
        "calories_data": {"total_burned_calories": 450.0 + wobble(n, 4, 200) as f64, "net_activity_calories": 380.5},
        "heart_rate_data": {"summary": {"avg_hr_bpm": 148.2, "max_hr_bpm": 181, "min_hr_bpm": 96, "resting_hr_bpm": 52},
                            "detailed": {"hr_samples": hr}},
        "movement_data": {"avg_speed_meters_per_second": 3.1, "max_speed_meters_per_second": 4.4, "avg_cadence_rpm": 168.0},
        "active_durations_data": {"activity_seconds": 2_640, "moderate_intensity_seconds": 1_500, "vigorous_intensity_seconds": 1_140},
        "lap_data": {"laps": laps},
        "device_data": {"name": "Forerunner 265", "manufacturer": "Garmin", "software_version": "19.18"}
    });
    data_event("activity", u, record, samples)
}

fn body(n: u64, u: u64, day: DateTime<Utc>) -> Delivery {
    let glucose = series(
        day,
        Duration::minutes(30),
        48,
        |k, t| json!({"timestamp": t, "blood_glucose_mg_per_dL": 80 + wobble(n, k as u64, 60)}),
    );
    let pressure = series(
        day + Duration::hours(8),
        Duration::hours(2),
        6,
        |k, t| json!({"timestamp": t, "systolic_bp": 110 + wobble(n, k as u64, 25), "diastolic_bp": 70 + wobble(n, 50 + k as u64, 15)}),
    );
    // The measurement adds three samples (weight, BMI, body fat).
    let samples = glucose.len() + pressure.len() + 3;
    let record = json!({
        "metadata": {"start_time": stamp(day), "end_time": stamp(day + Duration::days(1)), "timestamp_localization": 0},
        "measurements_data": {"measurements": [{"measurement_time": stamp(day + Duration::hours(7)),
                              "weight_kg": 60.0 + wobble(n, 1, 400) as f64 / 10.0, "bodyfat_percentage": 17.9, "BMI": 22.6,
                              "height_cm": 176.0, "muscle_mass_g": 32_100.0, "water_percentage": 58.1}]},
        "heart_data": {"heart_rate_data": {"summary": {"resting_hr_bpm": 52, "avg_hrv_sdnn": 48.2}}},
        "glucose_data": {"blood_glucose_samples": glucose, "day_avg_blood_glucose_mg_per_dL": 101.0},
        "blood_pressure_data": {"blood_pressure_samples": pressure},
        "oxygen_data": {"avg_saturation_percentage": 97.0},
        "temperature_data": {"day_avg_skin_temperature_celsius": 33.1, "day_avg_body_temperature_celsius": 36.7},
        "hydration_data": {"day_total_water_consumption_ml": 2_100.0},
        "device_data": {"name": "Index S2", "manufacturer": "Garmin", "software_version": "4.10",
                        "last_upload_date": stamp(day + Duration::hours(7))}
    });
    data_event("body", u, record, samples)
}

fn nutrition(n: u64, u: u64, day: DateTime<Utc>) -> Delivery {
    let meal = |k: u64, name: &str, kind: u64, hour: i64| {
        json!({"id": format!("meal-{n}-{k}"), "name": name, "type": kind,
               "timestamp": stamp(day + Duration::hours(hour)),
               "quantity": {"unit": 1, "amount": 150 + wobble(n, k, 300)},
               "macros": {"calories": 300 + wobble(n, 10 + k, 500), "protein_g": 20.5, "carbohydrates_g": 55.0,
                          "fat_g": 14.2, "fiber_g": 6.0, "sugar_g": 11.0, "sodium_mg": 420.0, "cholesterol_mg": 35.0},
               "micros": {"calcium_mg": 120.0, "iron_mg": 2.1, "potassium_mg": 380.0, "vitamin_C_mg": 12.0}})
    };
    let drinks = series(
        day + Duration::hours(8),
        Duration::hours(3),
        5,
        |k, t| json!({"timestamp": t, "drink_volume": 250 + wobble(n, k as u64, 250), "drink_unit": 9, "drink_name": "Water"}),
    );
    let samples = drinks.len();
    let record = json!({
        "metadata": {"start_time": stamp(day), "end_time": stamp(day + Duration::days(1))},
        "summary": {"macros": {"calories": 2_000 + wobble(n, 1, 800), "protein_g": 128.4, "carbohydrates_g": 231.0, "fat_g": 71.3,
                               "fiber_g": 28.0, "sugar_g": 60.0},
                    "micros": {"calcium_mg": 900.0, "iron_mg": 12.0, "potassium_mg": 3_100.0},
                    "water_ml": 2_300},
        "meals": [meal(1, "Porridge with berries", 1, 8), meal(2, "Coffee with milk", 2, 10),
                  meal(3, "Chicken salad", 3, 13), meal(4, "Apple", 4, 16),
                  meal(5, "Salmon, rice and broccoli", 5, 19), meal(6, "Greek yoghurt", 6, 21)],
        "drink_samples": drinks
    });
    data_event("nutrition", u, record, samples)
}

fn menstruation(n: u64, u: u64, day: DateTime<Utc>) -> Delivery {
    let flow = series(
        day,
        Duration::hours(2),
        12,
        |k, t| json!({"timestamp": t, "flow": 1 + wobble(n, k as u64, 4)}),
    );
    let intervals = series(
        day - Duration::days(3),
        Duration::days(7),
        4,
        |k, t| json!({"start_timestamp": t, "end_timestamp": stamp(day + Duration::days(7 * k as i64 + 4)), "phase": 1 + k % 4}),
    );
    let samples = flow.len();
    let record = json!({
        "metadata": {"start_time": stamp(day), "end_time": stamp(day + Duration::days(1)), "timestamp_localization": 0},
        "menstruation_data": {"period_start_date": stamp(day - Duration::days(3)), "day_in_cycle": 1 + wobble(n, 1, 28),
                              "period_length_days": 5, "cycle_length_days": 28, "predicted_cycle_length_days": 28,
                              "current_phase": 1, "length_of_current_phase_days": 5, "days_until_next_phase": 2,
                              "is_predicted_cycle": false, "menstruation_flow": flow, "intervals": intervals,
                              "fertility_window_start": stamp(day + Duration::days(10)),
                              "fertility_window_end": stamp(day + Duration::days(15)),
                              "ovulation_day": stamp(day + Duration::days(14)),
                              "last_updated_time": stamp(day + Duration::hours(20))},
        "device_data": {"name": "Oura Ring Gen3", "manufacturer": "Oura"}
    });
    data_event("menstruation", u, record, samples)
}

fn account(n: u64, u: u64) -> Delivery {
    let (event_type, body) = if n % 2 == 0 {
        let body = format!(
            r#"{{"type":"auth","status":"success","message":"User has successfully authenticated","widget_session_id":"bench-session-{n}","user":{}}}"#,
            user(u)
        );
        ("auth", body)
    } else {
        let body = format!(
            r#"{{"type":"permission_change","status":"warning","message":"User permissions have been modified","version":"2022-03-16","scopes_added":"BODY_EXPORT","scopes_removed":"","user":{}}}"#,
            user(u)
        );
        ("permission_change", body)
    };
    Delivery {
        body: body.into_bytes(),
        event_type,
        samples: 0,
    }
}

/// Delivery `n` of the typical mix: user `n % users` on day `n / users` back from a base day, so
/// no two deliveries of one run write the same typed row; each user cycles through the types.
fn typical(n: u64, users: u64) -> Delivery {
    const MIX: [u8; 20] = *b"DDDDDSSSSAAABBBNNMXX";
    let (u, slot) = (n % users, n / users);
    let base = NaiveDate::from_ymd_opt(2026, 6, 30)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc())
        .unwrap_or_default();
    let day = base - Duration::days(slot as i64);
    match MIX[((slot + u) % 20) as usize] {
        b'D' => daily(n, u, day),
        b'S' => sleep(n, u, day),
        b'A' => activity(n, u, day),
        b'B' => body(n, u, day),
        b'N' => nutrition(n, u, day),
        b'M' => menstruation(n, u, day),
        _ => account(n, u),
    }
}

/// A 4-hour workout at 1 Hz: heart rate, power, cadence, speed, distance and position.
fn activity_4h(n: u64) -> Delivery {
    const POINTS: usize = 4 * 3600;
    let start = NaiveDate::from_ymd_opt(2026, 7, 1)
        .and_then(|d| d.and_hms_opt(6, 0, 0))
        .map(|d| d.and_utc())
        .unwrap_or_default()
        + Duration::days(n as i64);
    let second = Duration::seconds(1);
    let hr = series(
        start,
        second,
        POINTS,
        |k, t| json!({"timestamp": t, "bpm": 120 + k % 50, "timer_duration_seconds": k}),
    );
    let power = series(
        start,
        second,
        POINTS,
        |k, t| json!({"timestamp": t, "watts": 180 + k % 90, "timer_duration_seconds": k}),
    );
    let cadence = series(
        start,
        second,
        POINTS,
        |k, t| json!({"timestamp": t, "cadence_rpm": 85 + k % 10, "timer_duration_seconds": k}),
    );
    let speed = series(
        start,
        second,
        POINTS,
        |k, t| json!({"timestamp": t, "speed_meters_per_second": 8.0 + (k % 7) as f64 * 0.1, "timer_duration_seconds": k}),
    );
    let distance = series(
        start,
        second,
        POINTS,
        |k, t| json!({"timestamp": t, "distance_meters": k as f64 * 8.3, "timer_duration_seconds": k}),
    );
    let position = series(
        start,
        second,
        POINTS,
        |k, t| json!({"timestamp": t, "coords_lat_lng_deg": [51.5 + k as f64 * 1e-5, -0.12 + k as f64 * 1e-5], "timer_duration_seconds": k}),
    );
    let record = json!({
        "metadata": {"summary_id": format!("bench-ride-4h-{n}"), "name": "Long ride", "type": 1, "upload_type": 1,
                     "start_time": stamp(start), "end_time": stamp(start + second * POINTS as i32)},
        "calories_data": {"total_burned_calories": 3_100.5},
        "distance_data": {"summary": {"distance_meters": 120_000.0}, "detailed": {"distance_samples": distance}},
        "heart_rate_data": {"summary": {"avg_hr_bpm": 141.0, "max_hr_bpm": 178.0}, "detailed": {"hr_samples": hr}},
        "power_data": {"avg_watts": 215.0, "power_samples": power},
        "movement_data": {"avg_speed_meters_per_second": 8.3, "cadence_samples": cadence, "speed_samples": speed},
        "position_data": {"position_samples": position}
    });
    data_event("activity", 0, record, 6 * POINTS)
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Where the signed deliveries go.
enum Sink {
    Tsv(BufWriter<File>),
    Dir(PathBuf),
}

impl Sink {
    fn open(output: &Output) -> std::io::Result<Self> {
        Ok(match output {
            Output::Tsv(path) => Self::Tsv(BufWriter::new(File::create(path)?)),
            Output::Dir(dir) => {
                fs::create_dir_all(dir)?;
                Self::Dir(dir.clone())
            }
        })
    }

    fn write(
        &mut self,
        n: u64,
        signature: &str,
        ordering: i64,
        body: &[u8],
    ) -> std::io::Result<()> {
        match self {
            Self::Tsv(out) => {
                write!(out, "{signature}\t{ordering}\t")?;
                out.write_all(body)?;
                out.write_all(b"\n")
            }
            Self::Dir(dir) => {
                fs::write(dir.join(format!("{n}.json")), body)?;
                let headers = format!(
                    "content-type: application/json\nterra-signature: {signature}\nx-terra-ordering-timestamp: {ordering}\n"
                );
                fs::write(dir.join(format!("{n}.headers")), headers)
            }
        }
    }

    fn finish(self) -> std::io::Result<()> {
        match self {
            Self::Tsv(mut out) => out.flush(),
            Self::Dir(_) => Ok(()),
        }
    }
}

fn main() -> Result<(), Error> {
    let args = parse_args().map_err(|e| format!("bench_bodies: {e}"))?;
    let signed_at = unix_now();
    let mut sink = Sink::open(&args.output)?;
    let (mut bytes, mut samples) = (0usize, 0usize);
    let mut types: Vec<(&str, u64)> = Vec::new();
    for n in 0..args.count {
        let d = match args.kind {
            Kind::Typical => typical(n, args.users),
            Kind::Activity4h => activity_4h(n),
        };
        let ordering = ORDERING_BASE_MS + n as i64;
        let signature = terra_sink::sign(&args.secret, signed_at, &d.body);
        sink.write(n, &signature, ordering, &d.body)?;
        bytes += d.body.len();
        samples += d.samples;
        match types.iter_mut().find(|(t, _)| *t == d.event_type) {
            Some((_, c)) => *c += 1,
            None => types.push((d.event_type, 1)),
        }
    }
    sink.finish()?;
    let mix: Vec<String> = types.iter().map(|(t, c)| format!("{t}={c}")).collect();
    println!(
        "bodies={} avg_bytes={} avg_samples={:.1} signed_at={} mix={}",
        args.count,
        bytes as u64 / args.count,
        samples as f64 / args.count as f64,
        signed_at,
        mix.join(",")
    );
    Ok(())
}
