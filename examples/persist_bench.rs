//! Typed-storage benchmark: how long `store::apply` takes to persist a 4-hour 1 Hz activity,
//! and how many typical daily/sleep records per second it writes.
//!
//! ```text
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
//!     cargo run --release --example persist_bench [-- --runs 5 --records 2000]
//! ```
//! Creates a scratch database `terra_sink_persist_bench_<pid>` on that server, migrates it, and
//! drops it at the end. Each delivery is applied in its own committed transaction, as the worker
//! does; timings include the commit (durable, default `synchronous_commit`).

use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{json, Value};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};
use terra_sink::ledger::Provenance;
use terra_sink::model::Event;
use terra_sink::store;

type Error = Box<dyn std::error::Error>;

fn stamp(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
}

/// A 4-hour ride at 1 Hz: heart rate, power, cadence, speed, position and distance samples.
fn activity_4h(summary_id: &str) -> Value {
    let start = Utc
        .with_ymd_and_hms(2026, 7, 1, 6, 0, 0)
        .single()
        .unwrap_or_default();
    let n = 4 * 3600;
    let at = |i: usize| stamp(start + chrono::Duration::seconds(i as i64));
    let series = |f: &dyn Fn(usize) -> Value| (0..n).map(f).collect::<Vec<_>>();
    json!({
        "metadata": {"summary_id": summary_id, "name": "Long ride", "type": 1, "upload_type": 1,
                     "start_time": at(0), "end_time": at(n)},
        "calories_data": {"total_burned_calories": 3100.5},
        "distance_data": {
            "summary": {"distance_meters": 120_000.0},
            "detailed": {"distance_samples": series(&|i| json!({"timestamp": at(i), "distance_meters": i as f64 * 8.3, "timer_duration_seconds": i}))}
        },
        "heart_rate_data": {
            "summary": {"avg_hr_bpm": 141.0, "max_hr_bpm": 178.0},
            "detailed": {"hr_samples": series(&|i| json!({"timestamp": at(i), "bpm": 120 + (i % 50), "timer_duration_seconds": i}))}
        },
        "power_data": {"avg_watts": 215.0,
                       "power_samples": series(&|i| json!({"timestamp": at(i), "watts": 180 + (i % 90), "timer_duration_seconds": i}))},
        "movement_data": {
            "avg_speed_meters_per_second": 8.3,
            "cadence_samples": series(&|i| json!({"timestamp": at(i), "cadence_rpm": 85 + (i % 10), "timer_duration_seconds": i})),
            "speed_samples": series(&|i| json!({"timestamp": at(i), "speed_meters_per_second": 8.0 + (i % 7) as f64 * 0.1, "timer_duration_seconds": i}))
        },
        "position_data": {"position_samples": series(&|i| json!({"timestamp": at(i), "coords_lat_lng_deg": [51.5 + i as f64 * 1e-5, -0.12 + i as f64 * 1e-5], "timer_duration_seconds": i}))}
    })
}

/// A typical daily record: 5-minute heart rate and stress samples plus the summaries.
fn daily(day: DateTime<Utc>) -> Value {
    let at = |i: usize| stamp(day + chrono::Duration::minutes(5 * i as i64));
    json!({
        "metadata": {"start_time": stamp(day), "end_time": stamp(day + chrono::Duration::days(1)), "upload_type": 1},
        "distance_data": {"steps": 9_876, "distance_meters": 7_210.5, "floors_climbed": 9},
        "calories_data": {"total_burned_calories": 2_410.2, "net_activity_calories": 520.0},
        "active_durations_data": {"activity_seconds": 4_020},
        "heart_rate_data": {"summary": {"avg_hr_bpm": 71.0, "max_hr_bpm": 152.0, "resting_hr_bpm": 54.0},
                            "detailed": {"hr_samples": (0..288).map(|i| json!({"timestamp": at(i), "bpm": 60 + i % 40})).collect::<Vec<_>>()}},
        "stress_data": {"avg_stress_level": 31.0,
                        "samples": (0..288).map(|i| json!({"timestamp": at(i), "level": i % 60})).collect::<Vec<_>>()}
    })
}

/// A typical night: 5-minute hypnogram and heart rate, durations and a score.
fn sleep(night: DateTime<Utc>) -> Value {
    let start = night - chrono::Duration::hours(1);
    let at = |i: usize| stamp(start + chrono::Duration::minutes(5 * i as i64));
    json!({
        "metadata": {"summary_id": format!("sleep-{}", night.timestamp()), "start_time": at(0), "end_time": at(96), "is_nap": false},
        "sleep_durations_data": {"asleep": {"duration_asleep_state_seconds": 26_000, "duration_deep_sleep_state_seconds": 5_000,
                                            "duration_REM_sleep_state_seconds": 6_000, "duration_light_sleep_state_seconds": 15_000},
                                 "awake": {"duration_awake_state_seconds": 1_200}, "sleep_efficiency": 92.0,
                                 "hypnogram_samples": (0..96).map(|i| json!({"timestamp": at(i), "level": 4 + i % 3})).collect::<Vec<_>>()},
        "heart_rate_data": {"summary": {"avg_hr_bpm": 55.0},
                            "detailed": {"hr_samples": (0..96).map(|i| json!({"timestamp": at(i), "bpm": 50 + i % 15})).collect::<Vec<_>>()}},
        "data_enrichment": {"sleep_score": 82.0}
    })
}

fn body(ty: &str, record: Value) -> Result<Vec<u8>, Error> {
    Ok(serde_json::to_vec(&json!({
        "type": ty, "version": "2022-03-16",
        "user": {"user_id": "bench-user", "provider": "GARMIN"},
        "data": [record],
    }))?)
}

async fn ledger_row(pool: &PgPool, body: &[u8], key: &str, ts: i64) -> Result<i64, Error> {
    Ok(sqlx::query_scalar(
        "WITH d AS (
             INSERT INTO terra.deliveries (dedupe_key, ordering_ts, body_sha256, body_size, shape)
             VALUES ($1, $2, '\\x00', $4, 'ok') RETURNING id, received_at
         ), b AS (
             INSERT INTO terra.delivery_bodies (delivery_id, received_at, body)
             SELECT id, received_at, $3 FROM d
         )
         SELECT id FROM d",
    )
    .bind(key)
    .bind(ts)
    .bind(body)
    .bind(i32::try_from(body.len())?)
    .fetch_one(pool)
    .await?)
}

/// Decodes and applies one delivery in its own transaction; returns (decode, apply, commit).
async fn persist(
    conn: &mut PgConnection,
    id: i64,
    ts: i64,
    body: &[u8],
) -> Result<(Duration, Duration, Duration, store::Applied), Error> {
    let t0 = Instant::now();
    let event = Event::from_slice(body)?;
    let t1 = Instant::now();
    let mut tx = conn.begin().await?;
    let source = Provenance {
        delivery_id: id,
        received_at: chrono::Utc::now(),
        terra_reference: None,
        ordering_ts: Some(ts),
    };
    let applied = store::apply(&mut tx, &source, &event, body).await?;
    let t2 = Instant::now();
    tx.commit().await?;
    let t3 = Instant::now();
    Ok((t1 - t0, t2 - t1, t3 - t2, applied))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

async fn run(pool: &PgPool, runs: usize, records: usize) -> Result<(), Error> {
    let mut conn = pool.acquire().await?;

    let ride = body("activity", activity_4h("ride-4h"))?;
    println!(
        "4-hour 1 Hz activity: {:.2} MB body, 6 series x 14,400 samples",
        ride.len() as f64 / 1e6
    );
    for run in 0..runs {
        let ts = run as i64 + 1;
        let id = ledger_row(pool, &ride, &format!("ride-{run}"), ts).await?;
        let (decode, apply, commit, applied) = persist(&mut conn, id, ts, &ride).await?;
        println!(
            "  run {run} ({}): decode {:.0} ms, store::apply {:.0} ms, commit {:.0} ms, total {:.0} ms; {} samples",
            if run == 0 { "first insert" } else { "replace" },
            ms(decode),
            ms(apply),
            ms(commit),
            ms(decode + apply + commit),
            applied.samples_written
        );
    }

    let start = Utc
        .with_ymd_and_hms(2020, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_default();
    let mut bodies = Vec::with_capacity(records);
    for i in 0..records {
        let day = start + chrono::Duration::days((i / 2) as i64);
        bodies.push(if i % 2 == 0 {
            body("daily", daily(day))?
        } else {
            body("sleep", sleep(day))?
        });
    }
    let mut ids = Vec::with_capacity(records);
    for (i, b) in bodies.iter().enumerate() {
        ids.push(ledger_row(pool, b, &format!("typical-{i}"), 1).await?);
    }
    let avg = bodies.iter().map(Vec::len).sum::<usize>() / records.max(1);
    let t0 = Instant::now();
    let mut samples = 0;
    let mut in_apply = Duration::ZERO;
    for (b, id) in bodies.iter().zip(&ids) {
        let (_, apply, _, applied) = persist(&mut conn, *id, 1, b).await?;
        samples += applied.samples_written;
        in_apply += apply;
    }
    let elapsed = t0.elapsed();
    println!(
        "typical daily/sleep records ({records}, one per delivery and transaction, ~{:.1} KB and ~{} samples each): {:.0} records/s end to end ({:.2} ms each; store::apply {:.2} ms), {} samples",
        avg as f64 / 1e3,
        samples / records.max(1) as u64,
        records as f64 / elapsed.as_secs_f64(),
        ms(elapsed) / records as f64,
        ms(in_apply) / records as f64,
        samples
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (mut runs, mut records) = (5usize, 2_000usize);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--runs" => runs = value.parse()?,
            "--records" => records = value.parse()?,
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let db = format!("terra_sink_persist_bench_{}", std::process::id());
    let mut admin = PgConnection::connect(&url).await?;
    sqlx::query(&format!("CREATE DATABASE {db}"))
        .execute(&mut admin)
        .await?;
    let base = url.rsplit_once('/').map_or(url.as_str(), |(b, _)| b);
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(&format!("{base}/{db}"))
        .await?;
    let result = async {
        terra_sink::database::migrate(&pool).await?;
        run(&pool, runs, records).await
    }
    .await;
    pool.close().await;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {db}"))
        .execute(&mut admin)
        .await?;
    result
}
