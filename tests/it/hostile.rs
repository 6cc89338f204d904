//! Schema-valid but hostile input and out-of-order lifecycle traffic: nothing Terra can send is
//! fatal, and a user's state follows Terra's ordering, not the arrival order.

use std::sync::Arc;

use crate::helpers::{receive_only, test_config, TestApp};
use serde_json::{json, Value};
use sqlx::PgPool;
use terra_sink::Metrics;
use terra_sink::Processor;
use terra_sink::RevokedDataPolicy;

fn processor(pool: &PgPool, policy: RevokedDataPolicy, batch: usize) -> Processor {
    let mut config = test_config().worker;
    config.revoked_data = policy;
    config.batch_max_deliveries = batch;
    Processor::new(pool.clone(), config, Arc::new(Metrics::new()))
}

fn user(id: &str) -> Value {
    json!({"user_id": id, "provider": "GARMIN", "scopes": "ACTIVITY_EXPORT,HEALTH_EXPORT"})
}

fn daily(user_id: &str, day: &str, steps: i64) -> Value {
    json!({"type": "daily", "user": user(user_id), "data": [{
        "metadata": {"start_time": format!("{day}T00:00:00+00:00"), "upload_type": 1},
        "distance_data": {"steps": steps},
        "heart_rate_data": {"detailed": {"hr_samples": [
            {"timestamp": format!("{day}T10:00:00+00:00"), "bpm": 61}]}}}]})
}

async fn send(app: &TestApp, body: &Value, ordering_ts: Option<i64>) {
    let ts = ordering_ts.map(|t| t.to_string());
    let headers: Vec<(&str, &str)> = ts
        .as_deref()
        .map(|t| vec![("x-terra-ordering-timestamp", t)])
        .unwrap_or_default();
    let res = app.deliver(body.to_string().as_bytes(), &headers).await;
    assert_eq!(res.status(), 200, "{body}");
}

async fn status_of(pool: &PgPool, user_id: &str) -> (String, Option<String>) {
    sqlx::query_as("SELECT status, replaced_by FROM terra.users WHERE user_id = $1")
        .bind(user_id)
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn nul_characters_anywhere_are_stored_never_parked(pool: PgPool) {
    let app = TestApp::spawn_with(pool.clone(), receive_only()).await;
    let bodies = [
        json!({"type": "auth", "status": "success", "reference_id": "ref\u{0}",
               "user": {"user_id": "u1", "reference_id": "ref\u{0}", "scopes": "A\u{0},B"}}),
        json!({"type": "permission_change", "scopes_added": "X\u{0}", "scopes_removed": "",
               "user": {"user_id": "u1"}}),
        json!({"type": "deauth", "status": "success", "message": "bye\u{0}",
               "user": {"user_id": "u1"}}),
        json!({"type": "large_request_sending", "reference": "big\u{0}", "expected_payloads": 2,
               "user": {"user_id": "u1"}}),
        json!({"type": "lab_report.completed", "event_id": "evt\u{0}",
               "data": {"session_id": "s\u{0}", "reference_id": "r\u{0}"}}),
        json!({"type": "planned_workout", "user": {"user_id": "u1"},
               "data": [{"planned_workout_id": "a\u{0}"}, {"planned_workout_id": "a\u{fffd}"}]}),
        json!({"type": "hormone", "user": {"user_id": "u1"},
               "data": [{"timestamp": "2026-07-01T07:05:00\u{0}", "lh_mIU_per_ml": 8.4}]}),
        json!({"type": "health_observation", "user": {"user_id": "u1"},
               "data": [{"metadata": {"summary_id": "obs\u{0}"}}]}),
        // A user id with a NUL is acknowledged (the ledger stores it) and its data lands.
        daily("u\u{0}2", "2026-07-01", 5),
        json!({"type": "brand_new_type\u{0}", "user": {"user_id": "u\u{0}3"}}),
    ];
    for body in &bodies {
        send(&app, body, None).await;
    }
    processor(&pool, RevokedDataPolicy::Keep, 500)
        .drain()
        .await
        .unwrap();
    let not_done: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT status, last_error FROM terra.deliveries WHERE status <> 'done'")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert!(not_done.is_empty(), "{not_done:?}");

    // Keys stay distinct: the escape itself is escaped.
    let keys: Vec<String> =
        sqlx::query_scalar("SELECT record_key FROM terra.planned_workouts ORDER BY record_key")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(keys, ["a\u{fffd}0", "a\u{fffd}\u{fffd}"]);
    let (reference, scopes): (Option<String>, Vec<String>) =
        sqlx::query_as("SELECT reference_id, scopes FROM terra.users WHERE user_id = 'u1'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(reference.as_deref(), Some("ref\u{fffd}0"));
    assert_eq!(scopes, ["A\u{fffd}0", "B", "X\u{fffd}0"]);
    let reason: Option<String> =
        sqlx::query_scalar("SELECT status_reason FROM terra.users WHERE user_id = 'u1'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(reason.as_deref(), Some("bye\u{fffd}0"));
    let lab: (String, Option<String>) =
        sqlx::query_as("SELECT terra_event_id, session_id FROM terra.lab_reports")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        lab,
        ("evt\u{fffd}0".to_owned(), Some("s\u{fffd}0".to_owned()))
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM terra.hormone_samples").await,
        1
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM terra.health_observations").await,
        1
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM terra.large_requests").await,
        1
    );
    let daily_user: String = sqlx::query_scalar("SELECT user_id FROM terra.daily")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(daily_user, "u\u{fffd}02");
    app.stop().await;
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn a_users_status_follows_the_newest_event_not_the_last_arrival(pool: PgPool) {
    let app = TestApp::spawn_with(pool.clone(), receive_only()).await;
    let processor = processor(&pool, RevokedDataPolicy::Keep, 1);
    let error = json!({"type": "connection_error", "message": "expired", "user": user("u1")});
    let deauth = json!({"type": "deauth", "message": "bye", "user": user("u1")});
    send(&app, &error, Some(2000)).await;
    send(&app, &deauth, Some(1000)).await;
    processor.drain().await.unwrap();
    assert_eq!(status_of(&pool, "u1").await.0, "connection_error");

    // 'replaced' is a status like the others: a newer deauth of the old id shows, and the
    // link to the new id stays.
    let reauth = json!({"type": "user_reauth", "old_user": user("u1"), "new_user": user("u2")});
    send(&app, &reauth, Some(3000)).await;
    processor.drain().await.unwrap();
    assert_eq!(
        status_of(&pool, "u1").await,
        ("replaced".to_owned(), Some("u2".to_owned()))
    );
    send(
        &app,
        &json!({"type": "deauth", "user": user("u1")}),
        Some(4000),
    )
    .await;
    // A retried deauth of the new id, older than its reauth, changes nothing.
    send(
        &app,
        &json!({"type": "deauth", "user": user("u2")}),
        Some(2500),
    )
    .await;
    processor.drain().await.unwrap();
    assert_eq!(
        status_of(&pool, "u1").await,
        ("deauthenticated".to_owned(), Some("u2".to_owned()))
    );
    assert_eq!(status_of(&pool, "u2").await.0, "connected");

    // Without ordering timestamps, arrival order decides.
    send(&app, &json!({"type": "deauth", "user": user("u3")}), None).await;
    send(
        &app,
        &json!({"type": "auth", "status": "success", "user": user("u3")}),
        None,
    )
    .await;
    processor.drain().await.unwrap();
    assert_eq!(status_of(&pool, "u3").await.0, "connected");
    app.stop().await;
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn concurrent_rekeys_and_data_never_deadlock(pool: PgPool) {
    let app = TestApp::spawn_with(pool.clone(), receive_only()).await;
    // Ten users get data, are re-keyed mid-stream, and get more data under both ids.
    for round in 0..6 {
        for u in 0..10 {
            let day = format!("2026-07-{:02}", round + 1);
            send(&app, &daily(&format!("old{u}"), &day, round), None).await;
            send(&app, &daily(&format!("new{u}"), &day, round + 100), None).await;
            if round == 2 {
                let reauth = json!({"type": "user_reauth",
                    "old_user": user(&format!("old{u}")), "new_user": user(&format!("new{u}"))});
                send(&app, &reauth, None).await;
            }
        }
    }
    // Four workers with small batches drain it at once.
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let p = processor(&pool, RevokedDataPolicy::Keep, 7);
            tokio::spawn(async move { p.drain().await })
        })
        .collect();
    for w in workers {
        w.await.unwrap().unwrap();
    }
    let bad: Vec<(i64, String, i32, Option<String>)> = sqlx::query_as(
        "SELECT id, status, attempts, last_error FROM terra.deliveries
         WHERE status <> 'done' OR attempts <> 1 OR last_error IS NOT NULL",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(
        bad.is_empty(),
        "every delivery applied once, no deadlock: {bad:?}"
    );
    let left_under_old = count(
        &pool,
        "SELECT count(*) FROM terra.daily WHERE user_id LIKE 'old%'",
    )
    .await;
    assert_eq!(left_under_old, 0);
    assert_eq!(count(&pool, "SELECT count(*) FROM terra.daily").await, 60);
    app.stop().await;
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn deleted_data_does_not_come_back_until_a_newer_auth(pool: PgPool) {
    let app = TestApp::spawn_with(pool.clone(), receive_only()).await;
    let processor = processor(&pool, RevokedDataPolicy::Delete, 500);
    send(&app, &daily("u1", "2026-07-01", 5), Some(1000)).await;
    send(
        &app,
        &json!({"type": "deauth", "user": user("u1")}),
        Some(2000),
    )
    .await;
    processor.drain().await.unwrap();
    assert_eq!(count(&pool, "SELECT count(*) FROM terra.daily").await, 0);

    // Terra retries the data delivery (another attempt, another trace id) after the deauth.
    let res = app
        .deliver(
            daily("u1", "2026-07-01", 5).to_string().as_bytes(),
            &[
                ("x-terra-trace-id", "retry-1"),
                ("x-terra-ordering-timestamp", "1000"),
            ],
        )
        .await;
    assert_eq!(res.status(), 200, "acknowledged");
    processor.drain().await.unwrap();
    assert_eq!(count(&pool, "SELECT count(*) FROM terra.daily").await, 0);
    assert_eq!(count(&pool, "SELECT count(*) FROM terra.samples").await, 0);
    let data_bodies = count(
        &pool,
        "SELECT count(*) FROM terra.deliveries WHERE event_type = 'daily'",
    )
    .await;
    assert_eq!(data_bodies, 0, "not stored in the ledger either");

    // A newer auth reconnects the user: data is stored again.
    send(
        &app,
        &json!({"type": "auth", "status": "success", "user": user("u1")}),
        Some(3000),
    )
    .await;
    send(&app, &daily("u1", "2026-07-02", 7), Some(3100)).await;
    processor.drain().await.unwrap();
    assert_eq!(count(&pool, "SELECT count(*) FROM terra.daily").await, 1);
    app.stop().await;
}
