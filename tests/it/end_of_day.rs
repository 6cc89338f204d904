//! ISO 8601's end of day (`T24:00:00`) through the whole service: delivered over HTTP, processed,
//! and read back from the typed tables of a real PostgreSQL as the next day's midnight.

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::json;
use sqlx::PgPool;

const USER: &str = "0e7c8d8a-24de-4b8f-9d3a-2400000000aa";

/// `record_key`, `day`, `start_time`, `end_time` of a day row.
type DayRow = (
    String,
    Option<NaiveDate>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
);

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn day(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

/// Delivers `body` over HTTP and processes it (no background workers, so nothing races).
async fn deliver_and_process(pool: &PgPool, body: serde_json::Value) {
    let mut config = crate::helpers::test_config();
    config.worker.concurrency = 0;
    let app = crate::helpers::TestApp::spawn_with(pool.clone(), config).await;
    let reply = app.deliver(&serde_json::to_vec(&body).unwrap(), &[]).await;
    assert_eq!(reply.status(), 200, "{:?}", reply.text().await);
    app.stop().await;
    assert_eq!(crate::helpers::processor(pool).drain().await.unwrap(), 1);
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn end_of_day_times_are_the_next_midnight(pool: PgPool) {
    deliver_and_process(
        &pool,
        json!({"type": "daily", "user": {"user_id": USER, "provider": "GARMIN"}, "data": [{
            "metadata": {"start_time": "2025-10-01T24:00:00+00:00",
                         "end_time": "2025-10-02T24:00:00.000000+00:00"},
            "heart_rate_data": {"detailed": {"hr_samples": [
                {"timestamp": "2025-10-01T24:00:00+02:00", "bpm": 61},
                {"timestamp": "2025-10-01T24:00:01+00:00", "bpm": 62}
            ]}}
        }]}),
    )
    .await;
    let row: DayRow = sqlx::query_as(
        "SELECT record_key, day, start_time, end_time FROM terra.daily WHERE user_id = $1",
    )
    .bind(USER)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        row,
        (
            "2025-10-02".to_owned(),
            Some(day("2025-10-02")),
            Some(t("2025-10-02T00:00:00Z")),
            Some(t("2025-10-03T00:00:00Z"))
        )
    );
    // `24:00:01` is no time at all: that sample is left out (it stays in `data`).
    let samples: Vec<DateTime<Utc>> = sqlx::query_scalar(
        "SELECT ts FROM terra.samples WHERE user_id = $1 AND kind = 'heart_rate' ORDER BY ts",
    )
    .bind(USER)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(samples, [t("2025-10-01T22:00:00Z")]);
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn a_sleep_ending_at_the_end_of_a_day_wakes_the_next_day(pool: PgPool) {
    deliver_and_process(
        &pool,
        json!({"type": "sleep", "user": {"user_id": USER, "provider": "OURA"}, "data": [{
            "metadata": {"summary_id": "s24",
                         "start_time": "2025-10-01T16:00:00.000000+02:00",
                         "end_time": "2025-10-01T24:00:00.000000+02:00"}
        }]}),
    )
    .await;
    let row: (
        Option<NaiveDate>,
        Option<DateTime<Utc>>,
        Option<DateTime<Utc>>,
    ) = sqlx::query_as("SELECT wake_day, start_time, end_time FROM terra.sleep WHERE user_id = $1")
        .bind(USER)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        row,
        (
            Some(day("2025-10-02")),
            Some(t("2025-10-01T14:00:00Z")),
            Some(t("2025-10-01T22:00:00Z"))
        )
    );
}
