//! Connections lifecycle, large requests and ping mode, against a real PostgreSQL. Deliveries go
//! over HTTP to the real service; processing is driven step by step with a `Processor`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::helpers::{example, receive_only, test_config, TestApp, DATA_EXAMPLES};
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use serde_json::Value;
use sqlx::PgPool;
use terra_sink::Metrics;
use terra_sink::RevokedDataPolicy;
use terra_sink::{Outcome, Processor};

const OLD: &str = "40f7b0e1-89e2-43ac-a5b8-1e29c8d47cad";
const NEW: &str = "9c8b7a65-4321-4fed-a0b9-87c6d5e4f321";
const OTHER: &str = "0000aaaa-other-user";

/// The same example for another user.
fn example_for(name: &str, user: &str) -> String {
    example(name).replace(OLD, user)
}

/// Every table holding per-user rows.
const USER_TABLES: [&str; 11] = [
    "activity",
    "sleep",
    "daily",
    "body",
    "nutrition",
    "menstruation",
    "athlete",
    "samples",
    "planned_workouts",
    "hormone_samples",
    "health_observations",
];

fn processor(pool: &PgPool, policy: RevokedDataPolicy, max_attempts: i32) -> Processor {
    let mut config = test_config().worker;
    config.revoked_data = policy;
    config.max_attempts = max_attempts;
    config.ping.timeout = std::time::Duration::from_millis(500);
    config.ping.max_bytes = 64 * 1024;
    // One delivery per batch, so a test can step through the queue.
    config.batch_max_deliveries = 1;
    Processor::new(pool.clone(), config, Arc::new(Metrics::new()))
}

async fn deliver_all(app: &TestApp, bodies: &[String]) {
    for body in bodies {
        let res = app.deliver(body.as_bytes(), &[]).await;
        assert_eq!(res.status(), 200);
    }
}

/// Rows per table for `user` (tables with no rows for the user are left out).
async fn rows_of(pool: &PgPool, user: &str) -> Vec<(String, i64)> {
    let mut counts = Vec::new();
    for table in USER_TABLES {
        let n: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM terra.{table} WHERE user_id = $1"
        ))
        .bind(user)
        .fetch_one(pool)
        .await
        .unwrap();
        if n > 0 {
            counts.push((table.to_owned(), n));
        }
    }
    counts
}

#[derive(Debug, sqlx::FromRow)]
struct UserRow {
    provider: Option<String>,
    reference_id: Option<String>,
    scopes: Vec<String>,
    active: bool,
    status: String,
    replaced_by: Option<String>,
}

async fn user(pool: &PgPool, id: &str) -> Option<UserRow> {
    sqlx::query_as(
        "SELECT provider, reference_id, scopes, active, status, replaced_by FROM terra.users WHERE user_id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await
    .unwrap()
}

async fn user_count(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM terra.users")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn auth_creates_the_user_and_failed_attempts_create_none(pool: PgPool) {
    let app = TestApp::spawn_with(pool.clone(), receive_only()).await;
    let processor = processor(&pool, RevokedDataPolicy::Keep, 3);

    deliver_all(&app, &[example("auth-authCancelled")]).await;
    // The legacy error form of `auth`.
    let legacy = r#"{"type":"auth","status":"error","message":"User failed to authenticate","reason":"session_expired","reference_id":"legacy-ref","widget_session_id":"w1"}"#;
    deliver_all(&app, &[legacy.to_owned()]).await;
    processor.drain().await.unwrap();
    assert_eq!(user_count(&pool).await, 0);
    let attempts: Vec<(String, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT event_type, reference_id, reason FROM terra.auth_attempts ORDER BY event_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        attempts,
        vec![
            (
                "auth_cancelled".to_owned(),
                Some("your-user-123".to_owned()),
                Some("access_denied".to_owned())
            ),
            (
                "auth".to_owned(),
                Some("legacy-ref".to_owned()),
                Some("session_expired".to_owned())
            ),
        ]
    );

    deliver_all(&app, &[example("auth-authSuccess")]).await;
    // The older success form, with reference_id at the top level.
    let older = format!(
        r#"{{"type":"auth","status":"success","reference_id":"top-level-ref","user":{{"user_id":"{OTHER}","provider":"FITBIT","scopes":""}}}}"#
    );
    deliver_all(&app, &[older]).await;
    processor.drain().await.unwrap();
    let u = user(&pool, OLD).await.unwrap();
    assert_eq!(u.provider.as_deref(), Some("GARMIN"));
    assert_eq!(u.reference_id.as_deref(), Some("your-user-123"));
    assert_eq!(u.scopes, vec!["ACTIVITY_EXPORT", "HEALTH_EXPORT"]);
    assert_eq!((u.status.as_str(), u.active), ("connected", true));
    let o = user(&pool, OTHER).await.unwrap();
    assert_eq!(o.reference_id.as_deref(), Some("top-level-ref"));
    assert!(o.scopes.is_empty());
    app.stop().await;
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn status_events_update_the_user_and_keep_its_data(pool: PgPool) {
    let app = TestApp::spawn_with(pool.clone(), receive_only()).await;
    let processor = processor(&pool, RevokedDataPolicy::Keep, 3);

    // Data for a user never seen before creates the user.
    deliver_all(&app, &[example("daily")]).await;
    processor.drain().await.unwrap();
    let u = user(&pool, OLD).await.unwrap();
    assert_eq!(
        (u.status.as_str(), u.provider.as_deref()),
        ("connected", Some("GARMIN"))
    );
    assert_eq!(u.reference_id.as_deref(), Some("your-user-123"));
    assert_eq!(
        u.scopes,
        vec!["ACTIVITY_EXPORT", "HEALTH_EXPORT"],
        "taken from the payload's user"
    );
    let last: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT last_webhook_update FROM terra.users WHERE user_id = $1")
            .bind(OLD)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(last.is_some());

    deliver_all(&app, &[example("permission_change")]).await;
    processor.drain().await.unwrap();
    let u = user(&pool, OLD).await.unwrap();
    assert_eq!(
        u.scopes,
        vec!["ACTIVITY_EXPORT", "HEALTH_EXPORT", "BODY_EXPORT"]
    );
    let removal = example("permission_change")
        .replace(r#""scopes_added": "BODY_EXPORT""#, r#""scopes_added": """#)
        .replace(
            r#""scopes_removed": """#,
            r#""scopes_removed": "ACTIVITY_EXPORT""#,
        );
    deliver_all(&app, &[removal]).await;
    processor.drain().await.unwrap();
    assert_eq!(
        user(&pool, OLD).await.unwrap().scopes,
        vec!["HEALTH_EXPORT", "BODY_EXPORT"]
    );

    deliver_all(&app, &[example("connection_error")]).await;
    processor.drain().await.unwrap();
    assert_eq!(user(&pool, OLD).await.unwrap().status, "connection_error");

    deliver_all(&app, &[example("access_revoked")]).await;
    processor.drain().await.unwrap();
    let u = user(&pool, OLD).await.unwrap();
    assert_eq!((u.status.as_str(), u.active), ("access_revoked", false));

    deliver_all(&app, &[example("deauth")]).await;
    processor.drain().await.unwrap();
    let u = user(&pool, OLD).await.unwrap();
    assert_eq!((u.status.as_str(), u.active), ("deauthenticated", false));
    // The default policy keeps the data.
    assert_eq!(rows_of(&pool, OLD).await[0], ("daily".to_owned(), 1));
    app.stop().await;
}

async fn reauth_moves_everything(pool: PgPool, auth_first: bool) {
    let app = TestApp::spawn_with(pool.clone(), receive_only()).await;
    let processor = processor(&pool, RevokedDataPolicy::Keep, 3);
    let new_auth = example("auth-authSuccess").replace(OLD, NEW);
    if auth_first {
        deliver_all(&app, std::slice::from_ref(&new_auth)).await;
    }
    let data: Vec<String> = DATA_EXAMPLES.iter().map(|n| example(n)).collect();
    deliver_all(&app, &data).await;
    deliver_all(
        &app,
        &[
            read_sample("planned_workout", OLD),
            read_sample("hormone", OLD),
        ],
    )
    .await;
    processor.drain().await.unwrap();
    let before = rows_of(&pool, OLD).await;
    assert!(before.len() >= 10, "data under the old id: {before:?}");

    deliver_all(&app, &[example("user_reauth")]).await;
    if !auth_first {
        deliver_all(&app, &[new_auth]).await;
    }
    processor.drain().await.unwrap();

    assert_eq!(
        rows_of(&pool, OLD).await,
        vec![],
        "nothing left under the old id"
    );
    assert_eq!(
        rows_of(&pool, NEW).await,
        before,
        "every row moved to the new id"
    );
    let old = user(&pool, OLD).await.unwrap();
    assert_eq!(
        (old.status.as_str(), old.replaced_by.as_deref()),
        ("replaced", Some(NEW))
    );
    assert!(!old.active);
    let new = user(&pool, NEW).await.unwrap();
    assert_eq!((new.status.as_str(), new.active), ("connected", true));
    let ledger_old: i64 =
        sqlx::query_scalar("SELECT count(*) FROM terra.deliveries WHERE user_id = $1")
            .bind(OLD)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(ledger_old, 0);

    // Reprocessing the old deliveries writes under the new id and changes nothing.
    sqlx::query("UPDATE terra.deliveries SET status = 'pending'")
        .execute(&pool)
        .await
        .unwrap();
    processor.drain().await.unwrap();
    assert_eq!(rows_of(&pool, OLD).await, vec![]);
    assert_eq!(rows_of(&pool, NEW).await, before);
    app.stop().await;
}

fn read_sample(name: &str, user: &str) -> String {
    let path = format!("{}/samples/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let body: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let sample_user = body["user"]["user_id"].as_str().unwrap().to_owned();
    serde_json::to_string(&body)
        .unwrap()
        .replace(&sample_user, user)
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn reauth_after_the_new_auth_moves_every_row(pool: PgPool) {
    reauth_moves_everything(pool, true).await;
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn reauth_before_the_new_auth_moves_every_row(pool: PgPool) {
    reauth_moves_everything(pool, false).await;
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn reauth_merges_records_both_ids_hold_newest_wins(pool: PgPool) {
    let app = TestApp::spawn_with(pool.clone(), receive_only()).await;
    let processor = processor(&pool, RevokedDataPolicy::Keep, 3);
    // The same day under both ids: the new id's copy is newer; the same activity: the old
    // id's copy is newer.
    let daily = example("daily");
    let newer_daily = daily
        .replace(OLD, NEW)
        .replace("\"steps\": ", "\"steps\": 1");
    app.deliver(daily.as_bytes(), &[("x-terra-ordering-timestamp", "100")])
        .await;
    app.deliver(
        newer_daily.as_bytes(),
        &[("x-terra-ordering-timestamp", "200")],
    )
    .await;
    let activity = example("activity");
    app.deliver(
        activity.as_bytes(),
        &[("x-terra-ordering-timestamp", "300")],
    )
    .await;
    app.deliver(
        activity.replace(OLD, NEW).as_bytes(),
        &[("x-terra-ordering-timestamp", "250")],
    )
    .await;
    processor.drain().await.unwrap();
    let new_steps: i64 = sqlx::query_scalar("SELECT steps FROM terra.daily WHERE user_id = $1")
        .bind(NEW)
        .fetch_one(&pool)
        .await
        .unwrap();

    deliver_all(&app, &[example("user_reauth")]).await;
    processor.drain().await.unwrap();
    let days: Vec<(i64, Option<i64>)> =
        sqlx::query_as("SELECT steps, ordering_ts FROM terra.daily WHERE user_id = $1")
            .bind(NEW)
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(days, vec![(new_steps, Some(200))]);
    let activities: Vec<Option<i64>> =
        sqlx::query_scalar("SELECT ordering_ts FROM terra.activity WHERE user_id = $1")
            .bind(NEW)
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(activities, vec![Some(300)]);
    // The losing copy's samples went with it: no doubled samples.
    let dup: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT source, record_key, kind, ts FROM terra.samples
         GROUP BY 1, 2, 3, 4 HAVING count(*) > 1) d",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(dup, 0);
    assert_eq!(rows_of(&pool, OLD).await, vec![]);
    app.stop().await;
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn reauth_without_old_user_only_records_the_new_one(pool: PgPool) {
    let app = TestApp::spawn_with(pool.clone(), receive_only()).await;
    let processor = processor(&pool, RevokedDataPolicy::Keep, 3);
    let mut body: Value = serde_json::from_str(&example("user_reauth")).unwrap();
    body["old_user"] = Value::Null;
    deliver_all(&app, &[body.to_string()]).await;
    processor.drain().await.unwrap();
    assert_eq!(user_count(&pool).await, 1);
    assert_eq!(user(&pool, NEW).await.unwrap().status, "connected");
    app.stop().await;
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn delete_policy_removes_every_row_of_the_user_and_nothing_else(pool: PgPool) {
    let app = TestApp::spawn_with(pool.clone(), receive_only()).await;
    let processor = processor(&pool, RevokedDataPolicy::Delete, 3);
    let mut bodies = Vec::new();
    for user in [OLD, OTHER] {
        bodies.extend(DATA_EXAMPLES.iter().map(|n| example_for(n, user)));
        bodies.push(read_sample("planned_workout", user));
        bodies.push(read_sample("health_observation", user));
    }
    deliver_all(&app, &bodies).await;
    processor.drain().await.unwrap();
    let other_before = rows_of(&pool, OTHER).await;
    assert_eq!(rows_of(&pool, OLD).await, other_before);
    let ledger_before: i64 = sqlx::query_scalar("SELECT count(*) FROM terra.deliveries")
        .fetch_one(&pool)
        .await
        .unwrap();

    deliver_all(&app, &[example("deauth")]).await;
    processor.drain().await.unwrap();
    assert_eq!(rows_of(&pool, OLD).await, vec![]);
    assert_eq!(rows_of(&pool, OTHER).await, other_before);
    let u = user(&pool, OLD).await.unwrap();
    assert_eq!(u.status, "deauthenticated");
    // The user's data deliveries (raw bodies) are gone too; the deauth itself stays.
    let ledger: Vec<(Option<String>, Option<String>)> =
        sqlx::query_as("SELECT user_id, event_type FROM terra.deliveries WHERE user_id = $1")
            .bind(OLD)
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        ledger,
        vec![(Some(OLD.to_owned()), Some("deauth".to_owned()))]
    );
    let ledger_after: i64 = sqlx::query_scalar("SELECT count(*) FROM terra.deliveries")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(ledger_after, ledger_before + 1 - 9);
    app.stop().await;
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn large_request_in_shuffled_order_ends_complete(pool: PgPool) {
    let app = TestApp::spawn_with(pool.clone(), receive_only()).await;
    let processor = processor(&pool, RevokedDataPolicy::Keep, 3);
    let reference = "d3f1a9c2-6b1e-4f0a-8f21-9e5b2c7a4d10";
    let header = ("terra-reference", reference);
    let daily = example("daily");
    // Five chunks; two have identical bodies and differ only by trace id.
    let mut chunks: Vec<(String, String)> = (1..=4)
        .map(|i| {
            let day = format!("2026-06-0{i}");
            (daily.replace("2026-07-01", &day), format!("chunk-{i}"))
        })
        .collect();
    chunks.push((chunks[0].0.clone(), "chunk-5".to_owned()));
    // Shuffled, processing notice in the middle, the announcement last.
    let order = [3usize, 0, 4, 2, 1];
    for (n, i) in order.iter().enumerate() {
        let (body, trace) = &chunks[*i];
        let res = app
            .deliver(body.as_bytes(), &[header, ("x-terra-trace-id", trace)])
            .await;
        assert_eq!(res.status(), 200);
        if n == 2 {
            app.deliver(example("large_request_processing").as_bytes(), &[header])
                .await;
            processor.drain().await.unwrap();
        }
    }
    // A redelivered chunk is not counted twice.
    app.deliver(
        chunks[2].0.as_bytes(),
        &[header, ("x-terra-trace-id", "chunk-3")],
    )
    .await;
    processor.drain().await.unwrap();
    let partial: (Option<i32>, i32, bool) = sqlx::query_as(
        "SELECT expected_payloads, received_payloads, complete FROM terra.large_requests",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(partial, (None, 5, false));

    let announcement = example("large_request_sending")
        .replace("\"expected_payloads\": 43", "\"expected_payloads\": 5");
    deliver_all(&app, &[announcement]).await;
    processor.drain().await.unwrap();
    let done: (String, Option<String>, Option<i32>, i32, bool, bool, bool) = sqlx::query_as(
        "SELECT reference, user_id, expected_payloads, received_payloads, complete,
                completed_at IS NOT NULL, first_chunk_at <= last_chunk_at
         FROM terra.large_requests",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        done,
        (
            reference.to_owned(),
            Some(OLD.to_owned()),
            Some(5),
            5,
            true,
            true,
            true
        )
    );
    let stored: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM terra.deliveries WHERE terra_reference = $1 AND event_type = 'daily'",
    )
    .bind(reference)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        stored, 5,
        "every chunk stored, none deduplicated against another"
    );
    app.stop().await;
}

/// A local stand-in for S3: `/ok`, `/slow` (never answers), `/big`, `/gone` (403) and
/// `/flaky` (500 twice, then the payload).
async fn fake_s3(payload: String) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let flaky_calls = Arc::new(AtomicUsize::new(0));
    let calls = flaky_calls.clone();
    let ok = payload.clone();
    let flaky = payload.clone();
    let app = Router::new()
        .route("/ok", get(move || async move { ok }))
        .route("/slow", get(std::future::pending::<String>))
        .route("/big", get(|| async { "x".repeat(200 * 1024) }))
        .route(
            "/gone",
            get(|| async { (StatusCode::FORBIDDEN, "expired") }),
        )
        .route(
            "/flaky",
            get(move || async move {
                if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                    Err(StatusCode::INTERNAL_SERVER_ERROR)
                } else {
                    Ok(flaky)
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, flaky_calls)
}

fn ping(addr: std::net::SocketAddr, path: &str, expires_in: i64) -> String {
    format!(
        r#"{{"type":"s3_payload","status":"success","url":"http://{addr}{path}","expires_in":{expires_in}}}"#
    )
}

async fn ledger(pool: &PgPool) -> Vec<(String, String, Option<i64>, Option<String>)> {
    sqlx::query_as("SELECT source, status, parent_id, last_error FROM terra.deliveries ORDER BY id")
        .fetch_all(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn ping_mode_downloads_and_processes_the_payload(pool: PgPool) {
    let (addr, _) = fake_s3(example("activity")).await;
    let app = TestApp::spawn_with(pool.clone(), receive_only()).await;
    let processor = processor(&pool, RevokedDataPolicy::Keep, 5);
    app.deliver(
        ping(addr, "/ok", 300).as_bytes(),
        &[("x-terra-ordering-timestamp", "777")],
    )
    .await;
    assert_eq!(
        processor.drain().await.unwrap(),
        2,
        "the ping, then its download"
    );
    let rows = ledger(&pool).await;
    assert_eq!(rows[0].0, "webhook");
    assert_eq!(rows[0].1, "done");
    assert_eq!(
        (rows[1].0.as_str(), rows[1].1.as_str()),
        ("s3_download", "done")
    );
    let ping_id: i64 = sqlx::query_scalar("SELECT min(id) FROM terra.deliveries")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows[1].2, Some(ping_id));
    let body: Vec<u8> =
        sqlx::query_scalar("SELECT b.body FROM terra.deliveries JOIN terra.delivery_bodies b ON b.delivery_id = id WHERE source = 's3_download'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(body, example("activity").into_bytes());
    let activity: (String, Option<i64>) =
        sqlx::query_as("SELECT user_id, ordering_ts FROM terra.activity")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(activity, (OLD.to_owned(), Some(777)));

    // Reprocessing the ping does not download or store it twice.
    sqlx::query("UPDATE terra.deliveries SET status = 'pending'")
        .execute(&pool)
        .await
        .unwrap();
    processor.drain().await.unwrap();
    assert_eq!(ledger(&pool).await.len(), 2);
    app.stop().await;
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn ping_mode_failures_are_recorded_retried_or_parked(pool: PgPool) {
    let (addr, flaky_calls) = fake_s3(example("sleep")).await;
    let app = TestApp::spawn_with(pool.clone(), receive_only()).await;
    let processor = processor(&pool, RevokedDataPolicy::Keep, 5);
    let step = || async { crate::helpers::step(&processor).await.unwrap().1 };

    // Slow server: the download times out and is retried later, while the URL is valid.
    app.deliver(ping(addr, "/slow", 300).as_bytes(), &[]).await;
    assert_eq!(step().await, Outcome::Failed);
    // Oversized: parked at once (retrying cannot help).
    app.deliver(ping(addr, "/big", 300).as_bytes(), &[]).await;
    assert_eq!(step().await, Outcome::Parked);
    // 4xx: the URL is expired or wrong: parked.
    app.deliver(ping(addr, "/gone", 300).as_bytes(), &[]).await;
    assert_eq!(step().await, Outcome::Parked);
    // A retryable failure after the URL expired: parked, not retried forever.
    app.deliver(ping(addr, "/slow", 0).as_bytes(), &[]).await;
    assert_eq!(step().await, Outcome::Parked);

    let rows = ledger(&pool).await;
    let errors: Vec<&str> = rows.iter().map(|r| r.3.as_deref().unwrap_or("")).collect();
    assert!(errors[0].contains("timed out"), "{errors:?}");
    assert_eq!(rows[0].1, "failed");
    assert!(errors[1].contains("exceeds the limit"), "{errors:?}");
    assert!(errors[2].contains("server answered 403"), "{errors:?}");
    assert!(errors[3].contains("expired"), "{errors:?}");
    assert!(
        rows.iter().all(|r| r.0 == "webhook"),
        "nothing was downloaded"
    );
    // No error mentions the pre-signed URL.
    assert!(
        errors.iter().all(|e| !e.contains("127.0.0.1")),
        "{errors:?}"
    );

    // Flaky server: fails twice, then succeeds; the failures were retried.
    sqlx::query("UPDATE terra.deliveries SET status = 'parked' WHERE status = 'failed'")
        .execute(&pool)
        .await
        .unwrap();
    app.deliver(ping(addr, "/flaky", 300).as_bytes(), &[]).await;
    assert_eq!(step().await, Outcome::Failed);
    sqlx::query("UPDATE terra.deliveries SET next_attempt_at = now() WHERE status = 'failed'")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(step().await, Outcome::Failed);
    sqlx::query("UPDATE terra.deliveries SET next_attempt_at = now() WHERE status = 'failed'")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(step().await, Outcome::Done);
    assert_eq!(flaky_calls.load(Ordering::SeqCst), 3);
    assert_eq!(
        step().await,
        Outcome::Done,
        "the downloaded payload is processed"
    );
    let sleeps: i64 = sqlx::query_scalar("SELECT count(*) FROM terra.sleep")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(sleeps, 1);
    app.stop().await;
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn ping_urls_must_be_https_unless_allowed(pool: PgPool) {
    let app = TestApp::spawn_with(pool.clone(), receive_only()).await;
    let mut config = test_config().worker;
    config.ping.allow_http = false;
    config.batch_max_deliveries = 1;
    let metrics = Arc::new(Metrics::new());
    let processor = Processor::new(pool.clone(), config, metrics.clone());
    app.deliver(
        br#"{"type":"s3_payload","status":"success","url":"http://127.0.0.1:9/x","expires_in":300}"#,
        &[],
    )
    .await;
    assert_eq!(
        crate::helpers::step(&processor).await.unwrap().1,
        Outcome::Parked
    );
    let error: String = sqlx::query_scalar("SELECT last_error FROM terra.deliveries")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(error.contains("scheme http is not allowed"), "{error}");
    assert!(metrics
        .render()
        .contains(r#"terra_sink_s3_downloads_total{outcome="refused"} 1"#));
    app.stop().await;
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn operational_and_unknown_events_stay_in_the_ledger_and_are_counted(pool: PgPool) {
    let app = TestApp::spawn_with(pool.clone(), receive_only()).await;
    let processor = processor(&pool, RevokedDataPolicy::Keep, 3);
    let bodies = [
        r#"{"type":"healthcheck","status":"success","creation_timestamp":"2026-11-01T00:00:00+00:00"}"#,
        r#"{"type":"processing","status":"processing","message":"Processing data","retry_after_seconds":60}"#,
        r#"{"type":"rate_limit_hit","status":"warning","message":"Rate limit reached"}"#,
        r#"{"type":"google_no_datasource","status":"warning","message":"No datasource"}"#,
        r#"{"type":"brand_new_kind","status":"success","anything":[1,2,3]}"#,
    ];
    for body in bodies {
        assert_eq!(app.deliver(body.as_bytes(), &[]).await.status(), 200);
    }
    assert_eq!(processor.drain().await.unwrap(), 5);
    let statuses: Vec<(Option<String>, String, String)> =
        sqlx::query_as("SELECT event_type, shape, status FROM terra.deliveries ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert!(statuses.iter().all(|s| s.2 == "done"), "{statuses:?}");
    assert_eq!(statuses[4].1, "unknown_type");
    assert_eq!(rows_of(&pool, OLD).await, vec![]);
    for table in ["users", "auth_attempts", "large_requests", "lab_reports"] {
        let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM terra.{table}"))
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(n, 0, "{table}");
    }
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    for ty in [
        "healthcheck",
        "processing",
        "rate_limit_hit",
        "google_no_datasource",
        "other",
    ] {
        let line =
            format!(r#"terra_sink_deliveries_total{{event_type="{ty}",outcome="stored"}} 1"#);
        assert!(metrics.contains(&line), "{line} in {metrics}");
    }
    app.stop().await;
}

#[derive(Debug, sqlx::FromRow)]
struct LabReportRow {
    terra_event_id: String,
    event_type: String,
    upload_id: Option<String>,
    session_id: Option<String>,
    reference_id: Option<String>,
    data: Value,
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn lab_reports_are_kept_by_terra_event_id_losslessly(pool: PgPool) {
    let app = TestApp::spawn_with(pool.clone(), receive_only()).await;
    let processor = processor(&pool, RevokedDataPolicy::Keep, 3);
    let completed = example("lab_report-completed");
    // Redelivered under another trace id: two ledger rows, one lab report.
    app.deliver(completed.as_bytes(), &[("x-terra-trace-id", "lab-1")])
        .await;
    app.deliver(completed.as_bytes(), &[("x-terra-trace-id", "lab-2")])
        .await;
    deliver_all(&app, &[example("lab_report-failed")]).await;
    assert_eq!(processor.drain().await.unwrap(), 3);

    let reports: Vec<LabReportRow> = sqlx::query_as(
        "SELECT terra_event_id, event_type, upload_id, session_id, reference_id, data
         FROM terra.lab_reports ORDER BY event_type",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(reports.len(), 2);
    let r = &reports[0];
    assert_eq!(r.terra_event_id, "evt_4a2b8c1d-3f9e-4c0a-8b21-9d6e5f2a1c7b");
    assert_eq!(r.event_type, "lab_report.completed");
    assert_eq!(r.upload_id.as_deref(), Some("upl_9d6e5f2a1c7b"));
    assert_eq!(r.session_id.as_deref(), Some("297405620317847552"));
    assert_eq!(r.reference_id.as_deref(), Some("your-patient-123"));
    let sent: Value = serde_json::from_str(&completed).unwrap();
    assert_eq!(r.data, sent, "the whole event, losslessly");
    assert_eq!(reports[1].event_type, "lab_report.failed");
    assert_eq!(reports[1].data["data"]["error"]["code"], "file_unreadable");
    app.stop().await;
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn data_moves_the_users_last_delivery_time_and_event_id_only_when_it_changes_the_user(
    pool: PgPool,
) {
    let app = TestApp::spawn_with(pool.clone(), receive_only()).await;
    let processor = processor(&pool, RevokedDataPolicy::Keep, 3);
    type Touched = (
        Option<i64>,
        Option<chrono::DateTime<chrono::Utc>>,
        Option<String>,
    );
    let touched = || async {
        sqlx::query_as::<_, Touched>(
            "SELECT event_id, last_webhook_update, reference_id FROM terra.users WHERE user_id = $1",
        )
        .bind(OLD)
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    let newest = || async {
        sqlx::query_as::<_, (i64, chrono::DateTime<chrono::Utc>)>(
            "SELECT id, received_at FROM terra.deliveries ORDER BY id DESC LIMIT 1",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
    };

    deliver_all(&app, &[example("daily")]).await;
    processor.drain().await.unwrap();
    let (first, first_at) = newest().await;
    assert_eq!(
        touched().await,
        (Some(first), Some(first_at), Some("your-user-123".into()))
    );

    // Same provider and reference: only the time of the newest delivery moves.
    deliver_all(&app, &[example("sleep")]).await;
    processor.drain().await.unwrap();
    let (second, second_at) = newest().await;
    assert!(second > first);
    assert_eq!(
        touched().await,
        (Some(first), Some(second_at), Some("your-user-123".into()))
    );

    // A new reference: that delivery changed the user.
    deliver_all(
        &app,
        &[example("body").replace("your-user-123", "moved-ref")],
    )
    .await;
    processor.drain().await.unwrap();
    let (third, third_at) = newest().await;
    assert_eq!(
        touched().await,
        (Some(third), Some(third_at), Some("moved-ref".into()))
    );
    app.stop().await;
}
