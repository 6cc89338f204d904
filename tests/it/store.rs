//! Typed storage against a real PostgreSQL: every official example lands in its table with the
//! right values, copies overwrite by Terra's ordering rules, samples are replaced atomically,
//! and every query of the README's "Querying your data" section runs.

use crate::helpers::example;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use sqlx::{PgPool, Row};
use terra_sink::ledger::Provenance;
use terra_sink::model::Event;
use terra_sink::store::{self, Applied, StoreError};

const USER: &str = "40f7b0e1-89e2-43ac-a5b8-1e29c8d47cad";

/// Writes `body` to the ledger (as the webhook would) and returns its id. Plain SQL, so these
/// tests do not depend on the ingest path's Rust types.
async fn ledger_row(pool: &PgPool, body: &[u8], ordering_ts: Option<i64>) -> i64 {
    static N: AtomicU64 = AtomicU64::new(0);
    let key = format!("trace:store-test-{}", N.fetch_add(1, Ordering::Relaxed));
    sqlx::query_scalar(
        "WITH d AS (
             INSERT INTO terra.deliveries (dedupe_key, ordering_ts, body_sha256, body_size, shape)
             VALUES ($1, $2, $4, $5, 'ok') RETURNING id, received_at
         ), b AS (
             INSERT INTO terra.delivery_bodies (delivery_id, received_at, body)
             SELECT id, received_at, $3 FROM d
         )
         SELECT id FROM d",
    )
    .bind(key)
    .bind(ordering_ts)
    .bind(body)
    .bind(Sha256::digest(body).to_vec())
    .bind(i32::try_from(body.len()).unwrap())
    .fetch_one(pool)
    .await
    .unwrap()
}

/// Stores `body` in the ledger and applies it in its own transaction, as the worker does.
async fn deliver(pool: &PgPool, body: &[u8], ordering_ts: Option<i64>) -> Applied {
    let id = ledger_row(pool, body, ordering_ts).await;
    let event = Event::from_slice(body).unwrap();
    let mut tx = pool.begin().await.unwrap();
    let source = Provenance {
        delivery_id: id,
        received_at: Utc::now(),
        terra_reference: None,
        ordering_ts,
    };
    let applied = store::apply(&mut tx, &source, &event, body).await.unwrap();
    tx.commit().await.unwrap();
    applied
}

fn body_of(ty: &str, records: Vec<Value>) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "type": ty,
        "version": "2022-03-16",
        "user": {"user_id": USER, "provider": "GARMIN"},
        "data": records,
    }))
    .unwrap()
}

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn day(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

/// An activity with `n` seconds of heart-rate (`bpm + i`) and power samples from 07:00 UTC.
fn activity_with_samples(summary_id: &str, n: usize, bpm: f64, calories: f64) -> Value {
    let start = t("2026-07-01T07:00:00Z");
    let stamp = |i: usize| {
        (start + Duration::seconds(i as i64))
            .format("%Y-%m-%dT%H:%M:%S%.6f+00:00")
            .to_string()
    };
    let hr: Vec<Value> = (0..n)
        .map(|i| json!({"timestamp": stamp(i), "bpm": bpm + i as f64}))
        .collect();
    let power: Vec<Value> = (0..n)
        .map(|i| json!({"timestamp": stamp(i), "watts": 200.0 + i as f64}))
        .collect();
    json!({
        "metadata": {"summary_id": summary_id, "name": "Ride", "type": 1, "upload_type": 1,
                     "start_time": stamp(0), "end_time": stamp(n)},
        "calories_data": {"total_burned_calories": calories},
        "heart_rate_data": {"detailed": {"hr_samples": hr}},
        "power_data": {"power_samples": power},
    })
}

async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn official_examples_land_in_their_tables(pool: PgPool) {
    for name in crate::helpers::DATA_EXAMPLES {
        let applied = deliver(&pool, &example(name).into_bytes(), Some(1_000)).await;
        assert_eq!(applied.records_written, 1, "{name}");
        assert_eq!(applied.records_skipped, 0, "{name}");
    }

    let a = sqlx::query!(
        r#"SELECT user_id, provider, record_key, summary_id, start_time, end_time, day, name,
                  activity_type, activity_type_name, upload_type, active_seconds, calories,
                  distance_meters, steps, avg_hr_bpm, max_hr_bpm, avg_watts,
                  avg_speed_meters_per_second, ordering_ts, event_id, data
           FROM terra.activity"#
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(a.user_id, USER);
    assert_eq!(a.provider.as_deref(), Some("GARMIN"));
    assert_eq!(
        a.summary_id.as_deref(),
        Some("123e4567-e89b-12d3-a456-426614174000")
    );
    assert_eq!(a.record_key, "123e4567-e89b-12d3-a456-426614174000");
    assert_eq!(a.start_time, Some(t("2026-07-01T07:04:11+01:00")));
    assert_eq!(a.end_time, Some(t("2026-07-01T07:52:48+01:00")));
    assert_eq!(a.day, Some(day("2026-07-01")));
    assert_eq!(a.name.as_deref(), Some("Morning Run"));
    assert_eq!(a.activity_type, Some(8));
    assert_eq!(a.activity_type_name.as_deref(), Some("Running"));
    assert_eq!(a.upload_type, Some(1));
    assert_eq!(a.active_seconds, None);
    assert_eq!(a.calories, Some(512.5));
    assert_eq!(a.distance_meters, Some(8250.4));
    assert_eq!(a.steps, Some(7902));
    assert_eq!(a.avg_hr_bpm, Some(148.2));
    assert_eq!(a.max_hr_bpm, Some(181.0));
    assert_eq!(a.avg_watts, None);
    assert_eq!(a.avg_speed_meters_per_second, None);
    assert_eq!(a.ordering_ts, Some(1_000));
    let event_body: Vec<u8> =
        sqlx::query_scalar("SELECT body FROM terra.delivery_bodies WHERE delivery_id = $1")
            .bind(a.event_id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(event_body, example("activity").into_bytes());
    // `data` is the record itself, equal to the JSON Terra sent.
    let sent: Value = serde_json::from_slice(&example("activity").into_bytes()).unwrap();
    assert_eq!(a.data, sent["data"][0]);

    let s = sqlx::query!(
        r#"SELECT record_key, summary_id, start_time, end_time, wake_day, is_nap, upload_type,
                  asleep_seconds, deep_seconds, light_seconds, rem_seconds, awake_seconds,
                  sleep_efficiency, avg_hr_bpm, sleep_score, data FROM terra.sleep"#
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    // The official sleep example has no summary_id: keyed by its start time.
    assert_eq!(s.summary_id, None);
    assert_eq!(s.record_key, "start_time:2026-06-30T23:12:00.000000+01:00");
    assert_eq!(s.start_time, Some(t("2026-06-30T23:12:00+01:00")));
    assert_eq!(s.end_time, Some(t("2026-07-01T07:02:00+01:00")));
    assert_eq!(s.wake_day, Some(day("2026-07-01")));
    assert_eq!(s.is_nap, Some(false));
    assert_eq!(s.upload_type, Some(1));
    assert_eq!(s.asleep_seconds, Some(25200.0));
    assert_eq!(s.deep_seconds, Some(5400.0));
    assert_eq!(s.light_seconds, None);
    assert_eq!(s.rem_seconds, Some(5100.0));
    assert_eq!(s.awake_seconds, Some(1500.0));
    assert_eq!(s.sleep_efficiency, Some(91.5));
    assert_eq!(s.avg_hr_bpm, None);
    assert_eq!(s.sleep_score, None);
    let sent: Value = serde_json::from_slice(&example("sleep").into_bytes()).unwrap();
    assert_eq!(s.data, sent["data"][0]);

    let d = sqlx::query!(
        r#"SELECT record_key, day, start_time, end_time, upload_type, steps, distance_meters,
                  floors_climbed, total_burned_calories, active_seconds, avg_hr_bpm,
                  resting_hr_bpm, avg_stress_level FROM terra.daily"#
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(d.record_key, "2026-07-01");
    assert_eq!(d.day, Some(day("2026-07-01")));
    assert_eq!(d.start_time, Some(t("2026-07-01T00:00:00+01:00")));
    assert_eq!(d.end_time, Some(t("2026-07-02T00:00:00+01:00")));
    assert_eq!(d.upload_type, Some(0));
    assert_eq!(d.steps, Some(11894));
    assert_eq!(d.distance_meters, Some(9412.7));
    assert_eq!(d.floors_climbed, None);
    assert_eq!(d.total_burned_calories, Some(2450.8));
    assert_eq!(d.active_seconds, Some(5340.0));
    assert_eq!(d.avg_hr_bpm, None);
    assert_eq!(d.resting_hr_bpm, None);
    assert_eq!(d.avg_stress_level, None);

    let b = sqlx::query!(
        r#"SELECT day, weight_kg, bmi, bodyfat_percentage, resting_hr_bpm,
                  avg_saturation_percentage, avg_blood_glucose_mg_per_dl FROM terra.body"#
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(b.day, Some(day("2026-07-01")));
    assert_eq!(b.weight_kg, Some(72.4));
    assert_eq!(b.bmi, Some(22.6));
    assert_eq!(b.bodyfat_percentage, Some(17.9));
    assert_eq!(b.resting_hr_bpm, Some(52.0));
    assert_eq!(b.avg_saturation_percentage, None);
    assert_eq!(b.avg_blood_glucose_mg_per_dl, None);
    // The body measurement is also a weight sample.
    let w = sqlx::query!(
        r#"SELECT ts AS "ts!", weight_kg, source AS "source!" FROM terra.weight_samples"#
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        (w.ts, w.weight_kg, w.source.as_str()),
        (t("2026-07-01T07:55:02+01:00"), Some(72.4), "body")
    );

    let n = sqlx::query!(
        r#"SELECT day, calories, protein_g, carbohydrates_g, fat_g, water_ml FROM terra.nutrition"#
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(n.day, Some(day("2026-07-01")));
    assert_eq!(n.calories, Some(2105.0));
    assert_eq!(n.protein_g, Some(128.4));
    assert_eq!(n.carbohydrates_g, Some(231.0));
    assert_eq!(n.fat_g, Some(71.3));
    assert_eq!(n.water_ml, Some(2300.0));

    let m = sqlx::query!(
        r#"SELECT day, period_length_days, cycle_length_days, day_in_cycle, current_phase,
                  current_phase_name, period_start_date, is_predicted_cycle
           FROM terra.menstruation"#
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(m.day, Some(day("2026-07-01")));
    assert_eq!(m.period_length_days, Some(5));
    assert_eq!(m.cycle_length_days, None);
    assert_eq!(m.day_in_cycle, Some(4));
    assert_eq!(m.current_phase, Some(1));
    assert_eq!(m.current_phase_name.as_deref(), Some("Period"));
    assert_eq!(m.period_start_date, Some(day("2026-06-28")));
    assert_eq!(m.is_predicted_cycle, Some(false));

    let p = sqlx::query!(
        r#"SELECT user_id, provider, first_name, last_name, sex, date_of_birth, email, city,
                  country, start_time, data FROM terra.athlete"#
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(p.user_id, USER);
    assert_eq!(p.provider.as_deref(), Some("GARMIN"));
    assert_eq!(p.first_name.as_deref(), Some("John"));
    assert_eq!(p.last_name.as_deref(), Some("Smith"));
    assert_eq!(p.sex.as_deref(), Some("male"));
    assert_eq!(p.date_of_birth, Some(day("1991-04-12")));
    assert_eq!(p.email.as_deref(), Some("john.smith@example.com"));
    assert_eq!(p.city.as_deref(), Some("San Francisco"));
    assert_eq!(p.country.as_deref(), Some("United States"));
    assert_eq!(p.start_time, None);
    let sent: Value = serde_json::from_slice(&example("athlete").into_bytes()).unwrap();
    assert_eq!(p.data, sent["athlete"]);
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn redelivering_a_record_leaves_one_row(pool: PgPool) {
    for _ in 0..5 {
        deliver(&pool, &example("activity").into_bytes(), Some(1_000)).await;
        deliver(&pool, &example("daily").into_bytes(), None).await;
        deliver(&pool, &example("sleep").into_bytes(), Some(1_000)).await;
    }
    assert_eq!(count(&pool, "SELECT count(*) FROM terra.activity").await, 1);
    assert_eq!(count(&pool, "SELECT count(*) FROM terra.daily").await, 1);
    assert_eq!(count(&pool, "SELECT count(*) FROM terra.sleep").await, 1);

    let body = body_of(
        "activity",
        vec![activity_with_samples("s1", 30, 100.0, 10.0)],
    );
    for _ in 0..4 {
        deliver(&pool, &body, Some(5)).await;
    }
    assert_eq!(count(&pool, "SELECT count(*) FROM terra.activity").await, 2);
    // 30 heart-rate + 30 power samples, not four times as many.
    assert_eq!(count(&pool, "SELECT count(*) FROM terra.samples").await, 60);
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn an_older_copy_never_overwrites_a_newer_one(pool: PgPool) {
    let v1 = body_of(
        "activity",
        vec![activity_with_samples("s1", 10, 100.0, 111.0)],
    );
    let v2 = body_of(
        "activity",
        vec![activity_with_samples("s1", 5, 150.0, 222.0)],
    );
    let applied = deliver(&pool, &v2, Some(2_000)).await;
    assert_eq!((applied.records_written, applied.samples_written), (1, 10));
    let applied = deliver(&pool, &v1, Some(1_000)).await;
    assert_eq!(
        applied,
        Applied {
            records_skipped: 1,
            ..Applied::default()
        }
    );
    let row = sqlx::query!("SELECT calories, ordering_ts FROM terra.activity")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!((row.calories, row.ordering_ts), (Some(222.0), Some(2_000)));
    let bpm: Vec<Option<f64>> =
        sqlx::query_scalar("SELECT bpm FROM terra.heart_rate_samples ORDER BY ts")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(bpm, [150.0, 151.0, 152.0, 153.0, 154.0].map(Some));
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn equal_or_missing_ordering_timestamps_replace(pool: PgPool) {
    let copy = |calories: f64| {
        body_of(
            "activity",
            vec![json!({"metadata": {"summary_id": "s1"},
                        "calories_data": {"total_burned_calories": calories}})],
        )
    };
    let calories = |pool: PgPool| async move {
        sqlx::query!("SELECT calories, ordering_ts FROM terra.activity")
            .fetch_one(&pool)
            .await
            .map(|r| (r.calories, r.ordering_ts))
            .unwrap()
    };
    deliver(&pool, &copy(1.0), Some(1_000)).await;
    deliver(&pool, &copy(2.0), Some(1_000)).await;
    assert_eq!(
        calories(pool.clone()).await,
        (Some(2.0), Some(1_000)),
        "equal ts"
    );
    deliver(&pool, &copy(3.0), None).await;
    assert_eq!(
        calories(pool.clone()).await,
        (Some(3.0), None),
        "new copy without ts"
    );
    deliver(&pool, &copy(4.0), Some(5)).await;
    assert_eq!(
        calories(pool.clone()).await,
        (Some(4.0), Some(5)),
        "stored without ts"
    );
    deliver(&pool, &copy(5.0), Some(4)).await;
    assert_eq!(calories(pool.clone()).await, (Some(4.0), Some(5)), "older");
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn a_later_copy_with_null_enrichment_keeps_the_score(pool: PgPool) {
    let sleep = |efficiency: f64, enrichment: Value| {
        body_of(
            "sleep",
            vec![json!({
                "metadata": {"summary_id": "sl1", "start_time": "2026-06-30T23:00:00+01:00",
                             "end_time": "2026-07-01T07:00:00+01:00"},
                "sleep_durations_data": {"sleep_efficiency": efficiency},
                "data_enrichment": enrichment,
            })],
        )
    };
    deliver(
        &pool,
        &sleep(
            90.0,
            json!({"sleep_score": 81.5, "readiness_score": 70, "sleep_contributors": {"a": 1.0}}),
        ),
        Some(1),
    )
    .await;
    deliver(
        &pool,
        &sleep(
            92.0,
            json!({"sleep_score": null, "readiness_score": 75, "sleep_contributors": null}),
        ),
        Some(2),
    )
    .await;
    let row = sqlx::query!(
        "SELECT sleep_score, readiness_score, sleep_efficiency, data FROM terra.sleep"
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(row.sleep_score, Some(81.5));
    assert_eq!(row.readiness_score, Some(75.0));
    assert_eq!(row.sleep_efficiency, Some(92.0));
    assert_eq!(
        row.data["data_enrichment"],
        json!({"sleep_score": 81.5, "readiness_score": 75, "sleep_contributors": {"a": 1.0}})
    );
    assert_eq!(row.data["sleep_durations_data"]["sleep_efficiency"], 92.0);

    // A copy without data_enrichment at all keeps it too.
    deliver(&pool, &sleep(93.0, Value::Null), Some(3)).await;
    let row = sqlx::query!("SELECT sleep_score, data FROM terra.sleep")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(row.sleep_score, Some(81.5));
    assert_eq!(row.data["data_enrichment"]["sleep_score"], 81.5);

    // A new score replaces the old one.
    deliver(&pool, &sleep(93.0, json!({"sleep_score": 60})), Some(4)).await;
    let score: Option<f64> = sqlx::query_scalar("SELECT sleep_score FROM terra.sleep")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(score, Some(60.0));

    // The same for activity and daily scores.
    let activity = |score: Value| {
        body_of(
            "activity",
            vec![
                json!({"metadata": {"summary_id": "a1"}, "data_enrichment": {"strain_score": score}}),
            ],
        )
    };
    deliver(&pool, &activity(json!(12.5)), Some(1)).await;
    deliver(&pool, &activity(Value::Null), Some(2)).await;
    let strain: Option<f64> = sqlx::query_scalar("SELECT strain_score FROM terra.activity")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(strain, Some(12.5));
    let daily = |score: Value, steps: i64| {
        body_of(
            "daily",
            vec![
                json!({"metadata": {"start_time": "2026-07-01T00:00:00+01:00"},
                        "distance_data": {"steps": steps},
                        "data_enrichment": {"total_stress_score": score}}),
            ],
        )
    };
    deliver(&pool, &daily(json!(45.5), 100), Some(1)).await;
    deliver(&pool, &daily(Value::Null, 200), Some(2)).await;
    let r = sqlx::query!("SELECT total_stress_score, steps FROM terra.daily")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!((r.total_stress_score, r.steps), (Some(45.5), Some(200)));
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn a_replaced_activity_keeps_exactly_the_new_samples(pool: PgPool) {
    deliver(
        &pool,
        &body_of(
            "activity",
            vec![activity_with_samples("s1", 20, 100.0, 1.0)],
        ),
        Some(1),
    )
    .await;
    // Another record's samples must survive the replacement.
    deliver(
        &pool,
        &body_of(
            "activity",
            vec![activity_with_samples("other", 3, 60.0, 1.0)],
        ),
        Some(1),
    )
    .await;
    let applied = deliver(
        &pool,
        &body_of("activity", vec![activity_with_samples("s1", 7, 130.0, 2.0)]),
        Some(2),
    )
    .await;
    assert_eq!(applied.samples_written, 14);
    let rows = sqlx::query!(
        r#"SELECT kind AS "kind!", ts AS "ts!", value FROM terra.samples WHERE record_key = 's1' ORDER BY kind, ts"#
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 14);
    for (i, r) in rows.iter().take(7).enumerate() {
        assert_eq!(r.kind, "heart_rate");
        assert_eq!(
            r.ts,
            t("2026-07-01T07:00:00Z") + Duration::seconds(i as i64)
        );
        assert_eq!(r.value, Some(130.0 + i as f64));
    }
    for (i, r) in rows.iter().skip(7).enumerate() {
        assert_eq!(r.kind, "power");
        assert_eq!(r.value, Some(200.0 + i as f64));
    }
    let hr = sqlx::query!(
        r#"SELECT user_id AS "user_id!", source AS "source!", record_key AS "record_key!", count(*) AS "n!"
           FROM terra.heart_rate_samples GROUP BY 1, 2, 3 ORDER BY 3"#
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let hr: Vec<_> = hr
        .iter()
        .map(|r| {
            (
                r.user_id.as_str(),
                r.source.as_str(),
                r.record_key.as_str(),
                r.n,
            )
        })
        .collect();
    assert_eq!(
        hr,
        [(USER, "activity", "other", 3), (USER, "activity", "s1", 7)]
    );
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn daily_snapshots_replace_rather_than_add(pool: PgPool) {
    let snapshot = |steps: i64, calories: f64, hr: &[f64]| {
        let samples: Vec<Value> = hr
            .iter()
            .enumerate()
            .map(
                |(i, bpm)| json!({"timestamp": format!("2026-07-01T0{i}:00:00+01:00"), "bpm": bpm}),
            )
            .collect();
        body_of(
            "daily",
            vec![json!({
                "metadata": {"start_time": "2026-07-01T00:00:00.000000+01:00",
                             "end_time": "2026-07-02T00:00:00.000000+01:00"},
                "distance_data": {"steps": steps},
                "calories_data": {"total_burned_calories": calories},
                "heart_rate_data": {"detailed": {"hr_samples": samples}},
            })],
        )
    };
    deliver(&pool, &snapshot(3_000, 900.0, &[60.0, 61.0]), Some(10)).await;
    deliver(
        &pool,
        &snapshot(8_000, 1_800.0, &[60.0, 61.0, 75.0]),
        Some(20),
    )
    .await;
    deliver(
        &pool,
        &snapshot(11_894, 2_450.8, &[60.0, 61.0, 75.0, 80.0]),
        Some(30),
    )
    .await;
    let r = sqlx::query!("SELECT steps, total_burned_calories, day FROM terra.daily")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        (r.steps, r.total_burned_calories, r.day),
        (Some(11_894), Some(2_450.8), Some(day("2026-07-01")))
    );
    let bpm: Vec<Option<f64>> = sqlx::query_scalar(
        "SELECT bpm FROM terra.heart_rate_samples WHERE source = 'daily' ORDER BY ts",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(bpm, [60.0, 61.0, 75.0, 80.0].map(Some));
    // The summary view shows the snapshot, not a sum.
    let steps: Option<i64> = sqlx::query_scalar(
        "SELECT steps FROM terra.daily_summary WHERE user_id = $1 AND day = '2026-07-01'",
    )
    .bind(USER)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(steps, Some(11_894));
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn records_without_their_key_are_kept_under_a_fallback_key(pool: PgPool) {
    let sleep_a = json!({"metadata": {"start_time": "2026-06-30T23:12:00+01:00"},
                         "sleep_durations_data": {"sleep_efficiency": 80}});
    let sleep_b = json!({"metadata": {"start_time": "2026-07-01T14:00:00+01:00", "is_nap": true}});
    deliver(
        &pool,
        &body_of("sleep", vec![sleep_a.clone(), sleep_b]),
        Some(1),
    )
    .await;
    let mut sleep_a2 = sleep_a.clone();
    sleep_a2["sleep_durations_data"]["sleep_efficiency"] = json!(85);
    deliver(&pool, &body_of("sleep", vec![sleep_a2]), Some(2)).await;
    let keys: Vec<(String, Option<f64>)> =
        sqlx::query_as("SELECT record_key, sleep_efficiency FROM terra.sleep ORDER BY record_key")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        keys,
        [
            (
                "start_time:2026-06-30T23:12:00+01:00".to_owned(),
                Some(85.0)
            ),
            ("start_time:2026-07-01T14:00:00+01:00".to_owned(), None),
        ]
    );

    // An activity without summary_id: by start time; with neither: by its content's digest.
    let no_id = json!({"metadata": {"start_time": "2026-07-01T07:00:00+01:00"}, "calories_data": {"total_burned_calories": 5}});
    let nothing = json!({"calories_data": {"total_burned_calories": 6}});
    let body = body_of("activity", vec![no_id, nothing]);
    let applied = deliver(&pool, &body, Some(1)).await;
    assert_eq!(applied.records_written, 2);
    deliver(&pool, &body, Some(1)).await;
    let keys: Vec<(String, Option<f64>)> =
        sqlx::query_as("SELECT record_key, calories FROM terra.activity ORDER BY calories")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert_eq!(
        keys[0],
        ("start_time:2026-07-01T07:00:00+01:00".to_owned(), Some(5.0))
    );
    assert!(keys[1].0.starts_with("sha256:"), "{keys:?}");

    // A daily record without a start time is kept, with no day.
    let daily = body_of("daily", vec![json!({"distance_data": {"steps": 5}})]);
    deliver(&pool, &daily, None).await;
    let r = sqlx::query!("SELECT record_key, day, steps FROM terra.daily")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(r.record_key.starts_with("sha256:"));
    assert_eq!((r.day, r.steps), (None, Some(5)));
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn data_is_the_record_as_sent_with_nul_made_storable(pool: PgPool) {
    // Hand-written body: key order, number spelling and an escaped NUL, as a provider might send.
    let body = br#"{"type":"activity","user":{"user_id":"u-nul"},"data":[
        {"metadata":{"summary_id":"n1","name":"A\u0000B","type":8},"z":1.50,"a":[1,2]},
        {"metadata":{"summary_id":"n2","name":"tab\there"}}]}"#;
    deliver(&pool, body, None).await;
    let rows: Vec<(String, Option<String>, Value)> =
        sqlx::query_as("SELECT record_key, name, data FROM terra.activity ORDER BY record_key")
            .fetch_all(&pool)
            .await
            .unwrap();
    // Text columns: U+0000 is written as U+FFFD followed by `0` (distinct from a real U+FFFD).
    assert_eq!(rows[0].1.as_deref(), Some("A\u{fffd}0B"));
    assert_eq!(
        rows[0].2,
        json!({"metadata":{"summary_id":"n1","name":"A\u{fffd}B","type":8},"z":1.5,"a":[1,2]})
    );
    assert_eq!(
        rows[1].2,
        json!({"metadata":{"summary_id":"n2","name":"tab\there"}})
    );
    // The ledger keeps the original bytes.
    let raw: Vec<u8> = sqlx::query_scalar("SELECT body FROM terra.delivery_bodies")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(raw, body);
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn concurrent_copies_are_serialised_by_the_row_lock(pool: PgPool) {
    let v1 = body_of(
        "activity",
        vec![activity_with_samples("c1", 10, 100.0, 1.0)],
    );
    let v2 = body_of("activity", vec![activity_with_samples("c1", 4, 150.0, 2.0)]);
    let id1 = ledger_row(&pool, &v1, Some(1)).await;
    let id2 = ledger_row(&pool, &v2, Some(2)).await;
    for (first, second) in [
        ((&v1, id1, 1), (&v2, id2, 2)),
        ((&v2, id2, 2), (&v1, id1, 1)),
    ] {
        sqlx::query("TRUNCATE terra.activity, terra.sample_series")
            .execute(&pool)
            .await
            .unwrap();
        // The first copy is written but not committed when the second one starts.
        let mut tx1 = pool.begin().await.unwrap();
        let e1 = Event::from_slice(first.0).unwrap();
        let s1 = Provenance {
            delivery_id: first.1,
            received_at: Utc::now(),
            terra_reference: None,
            ordering_ts: Some(first.2),
        };
        store::apply(&mut tx1, &s1, &e1, first.0).await.unwrap();
        let pool2 = pool.clone();
        let body2 = second.0.clone();
        let s2 = Provenance {
            delivery_id: second.1,
            received_at: Utc::now(),
            terra_reference: None,
            ordering_ts: Some(second.2),
        };
        let other = tokio::spawn(async move {
            let mut tx2 = pool2.begin().await.unwrap();
            let e2 = Event::from_slice(&body2).unwrap();
            let applied = store::apply(&mut tx2, &s2, &e2, &body2).await.unwrap();
            tx2.commit().await.unwrap();
            applied
        });
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(
            !other.is_finished(),
            "the second copy must wait for the row lock"
        );
        tx1.commit().await.unwrap();
        other.await.unwrap();
        // Whatever the order, version 2 and only its samples.
        let r = sqlx::query!("SELECT calories, ordering_ts FROM terra.activity")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!((r.calories, r.ordering_ts), (Some(2.0), Some(2)));
        let bpm: Vec<Option<f64>> =
            sqlx::query_scalar("SELECT bpm FROM terra.heart_rate_samples ORDER BY ts")
                .fetch_all(&pool)
                .await
                .unwrap();
        assert_eq!(bpm, [150.0, 151.0, 152.0, 153.0].map(Some));
        assert_eq!(count(&pool, "SELECT count(*) FROM terra.samples").await, 8);
    }
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn other_events_write_nothing(pool: PgPool) {
    for name in [
        "auth-authSuccess",
        "deauth",
        "user_reauth",
        "permission_change",
        "s3_upload",
    ] {
        let body = example(name).into_bytes();
        let applied = deliver(&pool, &body, Some(1)).await;
        assert_eq!(applied, Applied::default(), "{name}");
    }
    let athlete_without_profile = br#"{"type":"athlete","user":{"user_id":"u"},"athlete":null}"#;
    assert_eq!(
        deliver(&pool, athlete_without_profile, None).await,
        Applied::default()
    );
    for table in [
        "activity",
        "sleep",
        "daily",
        "body",
        "nutrition",
        "menstruation",
        "athlete",
        "samples",
    ] {
        let n = count(&pool, &format!("SELECT count(*) FROM terra.{table}")).await;
        assert_eq!(n, 0, "{table}");
    }
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn a_body_that_does_not_match_the_event_is_a_permanent_error(pool: PgPool) {
    let body = example("daily").into_bytes();
    let id = ledger_row(&pool, &body, None).await;
    let event = Event::from_slice(&body).unwrap();
    let mut tx = pool.begin().await.unwrap();
    let source = Provenance {
        delivery_id: id,
        received_at: Utc::now(),
        terra_reference: None,
        ordering_ts: None,
    };
    let err = store::apply(&mut tx, &source, &event, br#"{"data":[]}"#)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::BodyMismatch(_)), "{err}");
    assert!(err.is_permanent());
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn every_sample_kind_is_documented(pool: PgPool) {
    let listed: Vec<String> = sqlx::query_scalar("SELECT kind FROM terra.sample_kinds")
        .fetch_all(&pool)
        .await
        .unwrap();
    for kind in store::SAMPLE_KINDS {
        assert!(
            listed.iter().any(|k| k == kind),
            "{kind} missing from terra.sample_kinds"
        );
    }
    assert_eq!(listed.len(), store::SAMPLE_KINDS.len());

    // Every typed column of the record tables says where it comes from.
    let undocumented: Vec<String> = sqlx::query_scalar(
        r#"SELECT c.table_name || '.' || c.column_name
           FROM information_schema.columns c
           JOIN pg_class t ON t.relname = c.table_name
           JOIN pg_namespace n ON n.oid = t.relnamespace AND n.nspname = c.table_schema
           WHERE c.table_schema = 'terra' AND t.relkind = 'r'
             AND c.table_name IN ('activity', 'sleep', 'daily', 'body', 'nutrition',
                                  'menstruation', 'athlete', 'samples')
             AND col_description(t.oid, c.ordinal_position::int) IS NULL
             AND c.column_name NOT IN ('record_key')"#,
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(undocumented, Vec::<String>::new());
}

/// The ```sql blocks of the README's "Querying your data" section.
fn documented_queries() -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let readme = std::fs::read_to_string(&path).unwrap();
    let start = readme
        .find("<!-- querying:start")
        .expect("querying section start marker");
    let end = readme
        .find("<!-- querying:end -->")
        .expect("querying section end marker");
    let text = &readme[start..end];
    let mut queries = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match (&mut current, line.trim_start()) {
            (None, l) if l.starts_with("```sql") => current = Some(String::new()),
            (Some(q), l) if l.starts_with("```") => {
                queries.push(std::mem::take(q));
                current = None;
            }
            (Some(q), _) => {
                q.push_str(line);
                q.push('\n');
            }
            _ => {}
        }
    }
    queries
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn every_documented_query_runs_and_returns_rows(pool: PgPool) {
    for name in [
        "activity",
        "sleep",
        "daily",
        "body",
        "nutrition",
        "menstruation",
        "athlete",
    ] {
        deliver(&pool, &example(name).into_bytes(), Some(1)).await;
    }
    // The official examples carry no samples: add a workout that has some.
    deliver(
        &pool,
        &body_of(
            "activity",
            vec![activity_with_samples("ride-1", 600, 120.0, 300.0)],
        ),
        Some(1),
    )
    .await;
    let queries = documented_queries();
    assert!(queries.len() >= 8, "only {} queries", queries.len());
    for q in &queries {
        let rows = sqlx::raw_sql(q)
            .fetch_all(&pool)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{q}"));
        assert!(!rows.is_empty(), "no rows from:\n{q}");
        // Touch the first column so a query that only errors on decoding would show it.
        let _ = rows[0].columns().len();
    }
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn samples_of_every_source_reach_their_views(pool: PgPool) {
    let hr =
        |ts: &str, bpm: f64| json!({"detailed": {"hr_samples": [{"timestamp": ts, "bpm": bpm}]}});
    deliver(
        &pool,
        &body_of(
            "sleep",
            vec![json!({
                "metadata": {"summary_id": "n1", "start_time": "2026-06-30T23:00:00+01:00"},
                "heart_rate_data": hr("2026-06-30T23:30:00+01:00", 52.0),
                "sleep_durations_data": {"hypnogram_samples": [
                    {"timestamp": "2026-06-30T23:30:00+01:00", "level": 5}]},
            })],
        ),
        Some(1),
    )
    .await;
    deliver(
        &pool,
        &body_of(
            "body",
            vec![json!({
                "metadata": {"start_time": "2026-07-01T00:00:00+01:00"},
                "heart_data": {"heart_rate_data": hr("2026-07-01T08:00:00+01:00", 58.0)},
                "glucose_data": {"blood_glucose_samples": [
                    {"timestamp": "2026-07-01T08:00:00+01:00", "blood_glucose_mg_per_dL": 99.0}]},
            })],
        ),
        Some(1),
    )
    .await;
    deliver(
        &pool,
        &body_of(
            "daily",
            vec![json!({
                "metadata": {"start_time": "2026-07-01T00:00:00"},
                "heart_rate_data": hr("2026-07-01T12:00:00", 75.0),
            })],
        ),
        Some(1),
    )
    .await;
    deliver(
        &pool,
        &body_of(
            "activity",
            vec![json!({
                "metadata": {"summary_id": "w1"},
                "heart_rate_data": hr("2026-07-01T18:00:00Z", 150.0),
                "position_data": {"position_samples": [
                    {"timestamp": "2026-07-01T18:00:00Z", "coords_lat_lng_deg": [51.5, -0.12]}]},
            })],
        ),
        Some(1),
    )
    .await;
    let rows: Vec<(DateTime<Utc>, Option<f64>, String, String)> = sqlx::query_as(
        "SELECT ts, bpm, source, record_key FROM terra.heart_rate_samples
         WHERE user_id = $1 AND ts >= '2026-06-30' AND ts < '2026-07-02' ORDER BY ts",
    )
    .bind(USER)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        rows,
        [
            (
                t("2026-06-30T22:30:00Z"),
                Some(52.0),
                "sleep".into(),
                "n1".into()
            ),
            (
                t("2026-07-01T07:00:00Z"),
                Some(58.0),
                "body".into(),
                "2026-07-01".into()
            ),
            // No offset: the wall-clock time stored as UTC.
            (
                t("2026-07-01T12:00:00Z"),
                Some(75.0),
                "daily".into(),
                "2026-07-01".into()
            ),
            (
                t("2026-07-01T18:00:00Z"),
                Some(150.0),
                "activity".into(),
                "w1".into()
            ),
        ]
    );
    let stage: (i32, String) = sqlx::query_as("SELECT level, stage FROM terra.sleep_stage_samples")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(stage, (5, "deep".to_owned()));
    let pos: (Option<f64>, Option<f64>) =
        sqlx::query_as("SELECT lat, lng FROM terra.position_samples")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(pos, (Some(51.5), Some(-0.12)));
    let glucose: Option<f64> = sqlx::query_scalar("SELECT mg_per_dl FROM terra.glucose_samples")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(glucose, Some(99.0));
}
