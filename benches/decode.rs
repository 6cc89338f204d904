//! Decode throughput of `Event::from_slice`, in MB/s of webhook body.
//!
//! `cargo bench --bench decode`. Payloads are built here, deterministically:
//! - `daily_typical`: one day at Terra's usual density (1-minute heart rate and MET samples,
//!   5-minute stress/activity-level samples, summaries, device data), ~0.3 MB;
//! - `activity_4h_1hz`: a 4-hour workout with 1 Hz heart rate, power, cadence, speed, position,
//!   distance and elevation samples (14,400 each), ~10 MB;
//! - `daily_official_example`: the tiny official example body (per-event overhead).
//!
//! Baselines: parsing the same bytes into `serde_json::Value`, and skipping them (`IgnoredAny`).

use criterion::{black_box, criterion_group, Criterion, Throughput};
use serde_json::{json, Value};
use terra_sink::model::Event;

/// Serialises `body` with `"type"` as the first key, as Terra sends it (and as in every official
/// example); `serde_json::Map` would otherwise sort it after `"data"`.
fn type_first(ty: &str, body: Value) -> Vec<u8> {
    let rest = serde_json::to_vec(&body).expect("serialisable");
    let mut out = format!("{{\"type\":\"{ty}\",").into_bytes();
    out.extend_from_slice(&rest[1..]);
    out
}

fn ts(base_secs: u64, offset: &str) -> String {
    let (h, m, s) = (base_secs / 3600 % 24, base_secs / 60 % 60, base_secs % 60);
    format!("2026-07-01T{h:02}:{m:02}:{s:02}.000000{offset}")
}

fn user() -> Value {
    json!({
        "user_id": "40f7b0e1-89e2-43ac-a5b8-1e29c8d47cad", "provider": "GARMIN",
        "last_webhook_update": "2026-07-01T09:12:33.891000+00:00",
        "scopes": "ACTIVITY_EXPORT,HEALTH_EXPORT", "reference_id": "your-user-123", "active": true
    })
}

fn device() -> Value {
    json!({"name": "Forerunner 965", "manufacturer": "Garmin", "software_version": "21.19",
           "hardware_version": null, "serial_number": "3412345678", "data_provided": ["HEART_RATE", "STEPS"]})
}

/// A 4 h workout sampled at 1 Hz.
pub fn large_activity() -> Vec<u8> {
    let n = 4 * 3600u64;
    let start = 7 * 3600;
    let t = |i: u64| ts(start + i, "+01:00");
    let f = |i: u64, a: f64, b: f64| a + b * ((i as f64) / 37.0).sin();
    let hr: Vec<Value> = (0..n)
        .map(|i| json!({"timestamp": t(i), "bpm": (f(i, 148.0, 12.0)).round(), "timer_duration_seconds": i}))
        .collect();
    let power: Vec<Value> = (0..n)
        .map(|i| json!({"timestamp": t(i), "watts": f(i, 231.0, 40.0).round(), "timer_duration_seconds": i}))
        .collect();
    let cadence: Vec<Value> = (0..n)
        .map(|i| json!({"timestamp": t(i), "cadence_rpm": f(i, 88.0, 6.0).round(), "timer_duration_seconds": i}))
        .collect();
    let speed: Vec<Value> = (0..n)
        .map(|i| json!({"timestamp": t(i), "speed_meters_per_second": (f(i, 8.3, 1.2) * 1000.0).round() / 1000.0, "timer_duration_seconds": i}))
        .collect();
    let position: Vec<Value> = (0..n)
        .map(|i| json!({"timestamp": t(i), "coords_lat_lng_deg": [51.501_364 + i as f64 * 1e-5, -0.141_890 + f(i, 0.0, 0.002)], "timer_duration_seconds": i}))
        .collect();
    let distance: Vec<Value> = (0..n)
        .map(|i| json!({"timestamp": t(i), "distance_meters": (i as f64 * 8.3 * 10.0).round() / 10.0, "timer_duration_seconds": i}))
        .collect();
    let elevation: Vec<Value> = (0..n)
        .map(|i| json!({"timestamp": t(i), "elev_meters": f(i, 35.0, 10.0), "timer_duration_seconds": i}))
        .collect();
    let body = json!({
        "version": "2022-03-16", "user": user(),
        "data": [{
            "metadata": {"name": "Long Ride", "summary_id": "123e4567-e89b-12d3-a456-426614174000",
                         "start_time": t(0), "end_time": t(n), "type": 1, "upload_type": 1,
                         "city": null, "country": "United Kingdom", "state": null},
            "device_data": device(),
            "heart_rate_data": {"summary": {"avg_hr_bpm": 148.2, "max_hr_bpm": 181, "min_hr_bpm": 96, "resting_hr_bpm": 52,
                                            "hr_zone_data": [{"zone": 1, "start_percentage": 50, "end_percentage": 60, "name": "Zone 1", "duration_seconds": 1200}]},
                                "detailed": {"hr_samples": hr, "hrv_samples_rmssd": [], "hrv_samples_sdnn": []}},
            "power_data": {"avg_watts": 231.4, "max_watts": 812, "power_samples": power},
            "movement_data": {"avg_cadence_rpm": 88, "max_cadence_rpm": 121, "avg_speed_meters_per_second": 8.3,
                              "cadence_samples": cadence, "speed_samples": speed},
            "position_data": {"start_pos_lat_lng_deg": [51.501364, -0.14189], "end_pos_lat_lng_deg": [51.64, -0.14],
                              "position_samples": position},
            "distance_data": {"summary": {"distance_meters": 119520.4, "steps": null, "elevation": {"gain_actual_meters": 812.0}},
                              "detailed": {"distance_samples": distance, "elevation_samples": elevation}},
            "calories_data": {"total_burned_calories": 3512.5, "net_activity_calories": 3102.2},
            "TSS_data": {"TSS_samples": [{"planned": 210, "actual": 224.5, "method": "POWER", "normalized_power_watts": 244}]},
            "energy_data": {"energy_kilojoules": 3332.0}
        }]
    });
    type_first("activity", body)
}

/// A day at Terra's usual daily density.
pub fn typical_daily() -> Vec<u8> {
    let t = |i: u64| ts(i, "+01:00");
    let hr: Vec<Value> = (0..1440u64)
        .map(|m| json!({"timestamp": t(m * 60), "bpm": 55 + (m % 40), "timer_duration_seconds": null}))
        .collect();
    let met: Vec<Value> = (0..1440u64)
        .map(|m| json!({"timestamp": t(m * 60), "level": 1.0 + (m % 7) as f64 * 0.3}))
        .collect();
    let stress: Vec<Value> = (0..288u64)
        .map(|m| json!({"timestamp": t(m * 300), "level": (m % 60) as f64}))
        .collect();
    let levels: Vec<Value> = (0..288u64)
        .map(|m| json!({"timestamp": t(m * 300), "activity_level": m % 6}))
        .collect();
    let body = json!({
        "version": "2022-03-16", "user": user(),
        "data": [{
            "metadata": {"start_time": "2026-07-01T00:00:00.000000+01:00", "end_time": "2026-07-02T00:00:00.000000+01:00", "upload_type": 1},
            "device_data": device(),
            "distance_data": {"steps": 11894, "distance_meters": 9412.7, "floors_climbed": 12,
                              "elevation": {"gain_actual_meters": 55.0}, "swimming": null, "detailed": null},
            "calories_data": {"total_burned_calories": 2450.8, "BMR_calories": 1720, "net_activity_calories": 730.8,
                              "calorie_samples": []},
            "active_durations_data": {"activity_seconds": 5340, "inactivity_seconds": 40000, "low_intensity_seconds": 3000,
                                      "moderate_intensity_seconds": 1800, "vigorous_intensity_seconds": 540,
                                      "num_continuous_inactive_periods": 4, "activity_levels_samples": levels},
            "heart_rate_data": {"summary": {"avg_hr_bpm": 68.0, "max_hr_bpm": 151, "min_hr_bpm": 48, "resting_hr_bpm": 52,
                                            "avg_hrv_rmssd": 41.2},
                                "detailed": {"hr_samples": hr}},
            "MET_data": {"avg_level": 1.4, "num_low_intensity_minutes": 300, "num_high_intensity_minutes": 9, "MET_samples": met},
            "stress_data": {"avg_stress_level": 31, "max_stress_level": 88, "samples": stress, "stress_rating": 2},
            "oxygen_data": {"avg_saturation_percentage": 96.5, "saturation_samples": [], "vo2max_ml_per_min_per_kg": 49.0},
            "scores": {"activity": 71, "recovery": 64, "sleep": 80},
            "strain_data": {"strain_level": 11.2}
        }]
    });
    type_first("daily", body)
}

fn bench(c: &mut Criterion) {
    let official = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/schemas/terra/webhook-examples/daily.json"
    ))
    .expect("vendored example");
    let large = large_activity();
    // Worst case for dispatch: `type` after `data` (the peek must skip the whole body).
    let mut type_last: Value = serde_json::from_slice(&large).expect("valid");
    let ty = type_last["type"].take();
    let obj = type_last.as_object_mut().expect("object");
    obj.remove("type");
    obj.insert("zz_type_last".into(), Value::Null);
    let mut type_last = serde_json::to_vec(&type_last).expect("serialisable");
    let tail = format!(",\"type\":{ty}}}");
    type_last.pop();
    type_last.extend_from_slice(tail.as_bytes());
    let payloads = [
        ("activity_4h_1hz", large),
        ("activity_4h_1hz_type_last", type_last),
        ("daily_typical", typical_daily()),
        ("daily_official_example", official),
    ];
    for (name, bytes) in &payloads {
        // The benchmark measures real decoding, not an error path.
        assert!(Event::from_slice(bytes).is_ok(), "{name} decodes");
        let mut g = c.benchmark_group(*name);
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        if bytes.len() > 1_000_000 {
            g.sample_size(20);
        }
        g.bench_function("Event::from_slice", |b| {
            b.iter(|| Event::from_slice(black_box(bytes)))
        });
        g.bench_function("baseline: serde_json::Value", |b| {
            b.iter(|| serde_json::from_slice::<Value>(black_box(bytes)))
        });
        g.bench_function("baseline: IgnoredAny (scan only)", |b| {
            b.iter(|| serde_json::from_slice::<serde::de::IgnoredAny>(black_box(bytes)))
        });
        g.finish();
    }
}

/// CPU time (user + system) consumed by this thread so far, from /proc (Linux only).
fn thread_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0) // USER_HZ is 100 on Linux
}

/// MB per CPU-second of this thread: the per-core figure, robust to other load on the machine
/// (wall-clock criterion numbers drop when other processes compete for the 2 cores).
fn cpu_time_throughput() {
    let payloads = [
        ("activity_4h_1hz", large_activity()),
        ("daily_typical", typical_daily()),
    ];
    for (name, bytes) in &payloads {
        let Some(start) = thread_cpu_seconds() else {
            return;
        };
        let mut iterations = 0u64;
        let mut used = 0.0;
        while used < 3.0 {
            for _ in 0..10 {
                black_box(Event::from_slice(black_box(bytes)).is_ok());
            }
            iterations += 10;
            used = thread_cpu_seconds().unwrap_or(start + 3.0) - start;
        }
        let mb = (bytes.len() as f64 * iterations as f64) / 1e6;
        println!(
            "cpu-time throughput {name}: {:.0} MB per CPU-second ({} bytes x {iterations} in {used:.2} s CPU)",
            mb / used,
            bytes.len()
        );
    }
}

criterion_group!(benches, bench);

fn main() {
    // `cargo bench` passes --bench; listing (nextest --list) and test mode must stay quiet and
    // quick, so the CPU-time measurement only runs for a real benchmark run.
    if std::env::args().any(|a| a == "--bench") {
        cpu_time_throughput();
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
