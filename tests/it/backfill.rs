//! `terra-sink backfill` against a local fake of Terra's REST API (wiremock on 127.0.0.1): the
//! exact requests, window splitting, retries and limits, the acknowledgement answer, resuming,
//! and convergence with webhooks on the same typed rows.

use crate::helpers::binary::database_url;
use std::time::Duration;

use chrono::NaiveDate;
use secrecy::SecretString;
use serde_json::{json, Value};
use sqlx::PgPool;
use terra_sink::backfill::{self, BackfillConfig, BackfillError, Progress, Summary, Users};
use terra_sink::backfill::{ApiError, ClientConfig, RetryPolicy};
use terra_sink::backfill::{DataType, Window};
use tokio::sync::watch;
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const DEV_ID: &str = "dev-test-123";
const API_KEY: &str = "key-test-not-real";
const USER: &str = "40f7b0e1-89e2-43ac-a5b8-1e29c8d47cad";
const DAILY_EXAMPLE: &str = include_str!("../../schemas/terra/webhook-examples/daily.json");
const ACK: &str = include_str!("../fixtures/terra-api/data_sent_to_webhook.json");
const PROBLEM_401: &str = include_str!("../fixtures/terra-api/problem_unauthorized.json");
const STATUS_MESSAGE_500: &str = include_str!("../fixtures/terra-api/status_message_error.json");

fn d(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

fn config(server: &MockServer, start: &str, end: &str, types: &[DataType]) -> BackfillConfig {
    BackfillConfig {
        client: ClientConfig {
            base_url: server.uri(),
            dev_id: DEV_ID.to_owned(),
            api_key: SecretString::from(API_KEY.to_owned()),
            request_timeout: Duration::from_secs(10),
            retry: RetryPolicy {
                max_retries: 3,
                initial_backoff: Duration::from_millis(10),
                // Caps Retry-After too, so no test waits long.
                max_backoff: Duration::from_secs(1),
            },
        },
        users: Users::Listed(vec![USER.to_owned()]),
        types: types.to_vec(),
        range: Window {
            start: d(start),
            end: d(end),
        },
        window_days: 28,
        with_samples: true,
        refetch: false,
        day_budget: 0,
        budget_period: Duration::from_secs(60),
        concurrency: 1,
        progress: Progress::Never,
    }
}

async fn run(pool: &PgPool, config: &BackfillConfig) -> Result<Summary, BackfillError> {
    let (_stop, stopped) = watch::channel(false);
    backfill::run(pool, config, stopped).await
}

fn user_json() -> Value {
    json!({"user_id": USER, "provider": "GARMIN", "reference_id": "your-user-123",
           "scopes": "ACTIVITY_EXPORT,HEALTH_EXPORT", "active": true,
           "last_webhook_update": "2026-07-01T09:12:33.891000+00:00"})
}

/// A daily record for `day` as Terra's REST API returns it.
fn daily_record(day: NaiveDate, steps: u32) -> Value {
    json!({
        "metadata": {"start_time": format!("{day}T00:00:00.000000+00:00"),
                     "end_time": format!("{day}T23:59:59.999999+00:00"), "upload_type": 1},
        "distance_data": {"steps": steps}
    })
}

/// Terra's inline answer: `{user, data, type}`.
fn inline_answer(data_type: &str, records: Vec<Value>) -> ResponseTemplate {
    let body = json!({"user": user_json(), "data": records, "type": data_type});
    ResponseTemplate::new(200).set_body_raw(body.to_string().into_bytes(), "application/json")
}

/// The `start_date` and `end_date` a request asks for.
fn requested_dates(req: &Request) -> (NaiveDate, NaiveDate) {
    let q = |k: &str| {
        req.url
            .query_pairs()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.into_owned())
            .unwrap()
    };
    (d(&q("start_date")), d(&q("end_date")))
}

/// One record per day of `[start, end)`, like Terra for a window of daily data.
fn daily_answer_for(req: &Request) -> ResponseTemplate {
    let (start, end) = requested_dates(req);
    let records = start
        .iter_days()
        .take_while(|day| *day < end)
        .map(|day| daily_record(day, 1000))
        .collect();
    inline_answer("daily", records)
}

/// The `user_id` of every request the fake received, in order.
async fn users_asked(server: &MockServer) -> Vec<String> {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter_map(|r| {
            r.url
                .query_pairs()
                .find(|(k, _)| k == "user_id")
                .map(|(_, v)| v.into_owned())
        })
        .collect()
}

/// (path, start_date, end_date) of every request the fake received, in order.
async fn requested(server: &MockServer) -> Vec<(String, String, String)> {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| {
            let q = |k: &str| {
                r.url
                    .query_pairs()
                    .find(|(key, _)| key == k)
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default()
            };
            (r.url.path().to_owned(), q("start_date"), q("end_date"))
        })
        .collect()
}

fn window(p: &str, s: &str, e: &str) -> (String, String, String) {
    (p.to_owned(), s.to_owned(), e.to_owned())
}

async fn drain(pool: &PgPool) -> u64 {
    crate::helpers::processor(pool).drain().await.unwrap()
}

async fn window_statuses(pool: &PgPool) -> Vec<(String, String, String, String)> {
    sqlx::query_as(
        "SELECT data_type, start_date::text, end_date::text, status FROM terra.backfill_windows
         ORDER BY data_type, start_date",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn requests_carry_the_credentials_and_exact_query_in_windows_of_28_days(pool: PgPool) {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/daily"))
        .and(header("dev-id", DEV_ID))
        .and(header("x-api-key", API_KEY))
        .and(query_param("user_id", USER))
        .and(query_param("to_webhook", "false"))
        .and(query_param("with_samples", "true"))
        .respond_with(daily_answer_for)
        .mount(&server)
        .await;

    // 59 days: 28 + 28 + 3, end date exclusive.
    let summary = run(
        &pool,
        &config(&server, "2026-01-01", "2026-03-01", &[DataType::Daily]),
    )
    .await
    .unwrap();

    assert_eq!(
        requested(&server).await,
        vec![
            window("/daily", "2026-01-01", "2026-01-29"),
            window("/daily", "2026-01-29", "2026-02-26"),
            window("/daily", "2026-02-26", "2026-03-01"),
        ]
    );
    // Exactly these five parameters, nothing else.
    for r in server.received_requests().await.unwrap() {
        let mut keys: Vec<String> = r.url.query_pairs().map(|(k, _)| k.into_owned()).collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "end_date",
                "start_date",
                "to_webhook",
                "user_id",
                "with_samples"
            ]
        );
    }
    assert_eq!(summary.windows_done, 3);
    assert_eq!(summary.windows_failed, 0);
    assert_eq!(summary.records[&DataType::Daily], 59);
    assert_eq!(summary.deliveries_new, 3);

    // The ledger holds webhook-shaped bodies marked as backfilled, with no day twice.
    let rows: Vec<(String, String, Option<String>, Option<i64>)> = sqlx::query_as(
        "SELECT source, dedupe_key, event_type, ordering_ts FROM terra.deliveries ORDER BY id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 3);
    for (source, key, event_type, ordering_ts) in &rows {
        assert_eq!(source, "backfill");
        assert!(key.starts_with("backfill:"), "{key}");
        assert_eq!(event_type.as_deref(), Some("daily"));
        assert!(ordering_ts.is_some(), "ordered by Terra's answer time");
    }
    assert_eq!(drain(&pool).await, 3);
    let (days, first, last): (i64, String, String) = sqlx::query_as(
        "SELECT count(*), min(day)::text, max(day)::text FROM terra.daily WHERE user_id = $1",
    )
    .bind(USER)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        (days, first.as_str(), last.as_str()),
        (59, "2026-01-01", "2026-02-28")
    );
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn without_samples_the_flag_says_false(pool: PgPool) {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(query_param("with_samples", "false"))
        .respond_with(inline_answer("sleep", vec![]))
        .expect(1)
        .mount(&server)
        .await;
    let mut cfg = config(&server, "2026-01-01", "2026-01-02", &[DataType::Sleep]);
    cfg.with_samples = false;
    let summary = run(&pool, &cfg).await.unwrap();
    assert_eq!(summary.windows_done, 1);
    assert_eq!(summary.deliveries_new, 0, "an empty answer stores nothing");
    server.verify().await;
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn rate_limited_requests_are_retried_after_retry_after(pool: PgPool) {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "1")
                .set_body_raw(
                    r#"{"status":"error","message":"rate limit exceeded"}"#,
                    "application/json",
                ),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(daily_answer_for)
        .mount(&server)
        .await;

    let summary = run(
        &pool,
        &config(&server, "2026-01-01", "2026-01-08", &[DataType::Daily]),
    )
    .await
    .unwrap();
    let reqs = requested(&server).await;
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert_eq!(reqs[0], reqs[1], "the same window is asked again");
    assert_eq!(summary.windows_done, 1);
    assert_eq!(summary.records[&DataType::Daily], 7);
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn transient_server_errors_are_retried_with_backoff(pool: PgPool) {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(503).set_body_raw(
            r#"{"type":"about:blank","title":"service unavailable","instance":"/daily"}"#,
            "application/problem+json",
        ))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(daily_answer_for)
        .mount(&server)
        .await;

    let summary = run(
        &pool,
        &config(&server, "2026-01-01", "2026-01-03", &[DataType::Daily]),
    )
    .await
    .unwrap();
    assert_eq!(requested(&server).await.len(), 3);
    assert_eq!(summary.windows_done, 1);
    assert_eq!(summary.windows_failed, 0);
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn a_window_that_keeps_failing_is_reported_and_the_rest_continues(pool: PgPool) {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(query_param("start_date", "2026-01-01"))
        .respond_with(
            ResponseTemplate::new(500).set_body_raw(STATUS_MESSAGE_500, "application/json"),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(daily_answer_for)
        .mount(&server)
        .await;

    let summary = run(
        &pool,
        &config(&server, "2026-01-01", "2026-02-05", &[DataType::Daily]),
    )
    .await
    .unwrap();
    // 1 + max_retries attempts at the failing window, then the next window.
    assert_eq!(requested(&server).await.len(), 4 + 1);
    assert_eq!(summary.windows_failed, 1);
    assert_eq!(summary.windows_done, 1);
    assert!(
        summary.failures[0].contains("Internal error while fetching data from the provider"),
        "the {{status, message}} shape is parsed: {:?}",
        summary.failures
    );
    let text = summary.to_string();
    assert!(text.contains("1 failed"), "{text}");
    assert_eq!(
        window_statuses(&pool).await,
        vec![
            (
                "daily".into(),
                "2026-01-01".into(),
                "2026-01-29".into(),
                "failed".into()
            ),
            (
                "daily".into(),
                "2026-01-29".into(),
                "2026-02-05".into(),
                "done".into()
            ),
        ]
    );
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn unauthorized_stops_the_whole_backfill_with_a_clear_message(pool: PgPool) {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(401).set_body_raw(PROBLEM_401, "application/problem+json"),
        )
        .mount(&server)
        .await;

    let err = run(
        &pool,
        &config(
            &server,
            "2026-01-01",
            "2026-03-01",
            &[DataType::Daily, DataType::Sleep],
        ),
    )
    .await
    .unwrap_err();
    let BackfillError::Fatal { error, summary } = &err else {
        panic!("{err:?}");
    };
    assert!(
        matches!(error, ApiError::Auth { status: 401, .. }),
        "{error:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains("unauthorized: dev-id or x-api-key headers are missing"),
        "{message}"
    );
    assert!(message.contains("TERRA_API_KEY"), "{message}");
    assert!(!message.contains(API_KEY), "the key is never printed");
    assert!(summary.interrupted);
    assert_eq!(
        requested(&server).await.len(),
        1,
        "no request after the first 401"
    );
    assert_eq!(crate::helpers::ledger_count(&pool).await, 0);
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn forbidden_also_stops(pool: PgPool) {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(403).set_body_raw(
            r#"{"status":"error","message":"API key does not belong to this dev-id"}"#,
            "application/json",
        ))
        .mount(&server)
        .await;
    let err = run(
        &pool,
        &config(&server, "2026-01-01", "2026-03-01", &[DataType::Daily]),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("HTTP 403: API key does not belong to this dev-id"),
        "{err}"
    );
    assert_eq!(requested(&server).await.len(), 1);
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn an_acknowledgement_is_reported_as_coming_by_webhook_not_as_empty(pool: PgPool) {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/activity"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(ACK, "application/json"))
        .mount(&server)
        .await;
    let summary = run(
        &pool,
        &config(&server, "2026-01-01", "2026-01-15", &[DataType::Activity]),
    )
    .await
    .unwrap();
    assert_eq!(summary.windows_acknowledged, 1);
    assert_eq!(summary.windows_done, 0);
    assert_eq!(summary.total_records(), 0);
    assert!(
        summary
            .to_string()
            .contains("1 sent to the webhook by Terra"),
        "{summary}"
    );
    assert_eq!(crate::helpers::ledger_count(&pool).await, 0);
    let (status, reference): (String, Option<String>) = sqlx::query_as(
        "SELECT status, terra_reference FROM terra.backfill_windows WHERE data_type = 'activity'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(status, "acknowledged");
    assert_eq!(
        reference.as_deref(),
        Some("5a3c2540-7139-44c6-8158-f81196e2cf2e")
    );
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn an_interrupted_backfill_continues_where_it_stopped(pool: PgPool) {
    let server = MockServer::start().await;
    // First run: the third daily window hits revoked credentials, which stops everything.
    Mock::given(method("GET"))
        .and(path("/daily"))
        .and(query_param("start_date", "2026-02-26"))
        .respond_with(
            ResponseTemplate::new(401).set_body_raw(PROBLEM_401, "application/problem+json"),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/daily"))
        .respond_with(daily_answer_for)
        .mount(&server)
        .await;
    let cfg = config(
        &server,
        "2026-01-01",
        "2026-03-01",
        &[DataType::Daily, DataType::Sleep],
    );
    let err = run(&pool, &cfg).await.unwrap_err();
    assert!(matches!(err, BackfillError::Fatal { .. }), "{err:?}");
    assert_eq!(requested(&server).await.len(), 3);

    // Second run, credentials fixed: only what was not finished is asked for.
    server.reset().await;
    Mock::given(method("GET"))
        .and(path("/daily"))
        .respond_with(daily_answer_for)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/sleep"))
        .respond_with(inline_answer("sleep", vec![]))
        .mount(&server)
        .await;
    let summary = run(&pool, &cfg).await.unwrap();
    assert_eq!(
        requested(&server).await,
        vec![
            window("/daily", "2026-02-26", "2026-03-01"),
            window("/sleep", "2026-01-01", "2026-01-29"),
            window("/sleep", "2026-01-29", "2026-02-26"),
            window("/sleep", "2026-02-26", "2026-03-01"),
        ]
    );
    assert_eq!(summary.windows_skipped, 2);
    assert_eq!(summary.windows_done, 4);

    // Third run: nothing left to ask.
    server.reset().await;
    let summary = run(&pool, &cfg).await.unwrap();
    assert!(requested(&server).await.is_empty());
    assert_eq!(summary.windows_skipped, 6);

    // --refetch asks again; identical answers are not stored twice.
    Mock::given(method("GET"))
        .and(path("/daily"))
        .respond_with(daily_answer_for)
        .mount(&server)
        .await;
    let mut again = cfg.clone();
    again.refetch = true;
    again.types = vec![DataType::Daily];
    let before = crate::helpers::ledger_count(&pool).await;
    let summary = run(&pool, &again).await.unwrap();
    assert_eq!(summary.windows_done, 3);
    assert_eq!(summary.deliveries_duplicate, 3);
    assert_eq!(crate::helpers::ledger_count(&pool).await, before);
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn a_stop_request_leaves_the_remaining_windows_for_the_next_run(pool: PgPool) {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(daily_answer_for)
        .mount(&server)
        .await;
    let cfg = config(&server, "2026-01-01", "2026-03-01", &[DataType::Daily]);
    let (_stop, stopped) = watch::channel(true);
    let summary = backfill::run(&pool, &cfg, stopped).await.unwrap();
    assert!(summary.interrupted);
    assert!(summary.to_string().contains("run the same command again"));
    assert!(requested(&server).await.is_empty());
    let summary = run(&pool, &cfg).await.unwrap();
    assert_eq!(summary.windows_done, 3);
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn several_users_are_each_backfilled(pool: PgPool) {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(daily_answer_for)
        .mount(&server)
        .await;
    let mut cfg = config(&server, "2026-01-01", "2026-01-03", &[DataType::Daily]);
    cfg.users = Users::Listed(vec!["user-a".into(), "user-b".into(), "user-a".into()]);
    cfg.concurrency = 2;
    cfg.day_budget = 100;
    let summary = run(&pool, &cfg).await.unwrap();
    assert_eq!(summary.users, 2, "repeated ids are backfilled once");
    let mut users = users_asked(&server).await;
    users.sort();
    assert_eq!(users, ["user-a", "user-b"]);
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn a_forgotten_user_is_not_backfilled(pool: PgPool) {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(daily_answer_for)
        .mount(&server)
        .await;
    let request = terra_sink::ForgetRequest {
        user_ids: vec!["user-a".into()],
        ..Default::default()
    };
    terra_sink::forget(&pool, &request).await.unwrap();
    let mut cfg = config(&server, "2026-01-01", "2026-01-03", &[DataType::Daily]);
    cfg.users = Users::Listed(vec!["user-a".into(), "user-b".into()]);
    let summary = run(&pool, &cfg).await.unwrap();
    assert_eq!(summary.users, 1);
    let asked = users_asked(&server).await;
    assert_eq!(asked, ["user-b"]);
    let windows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM terra.backfill_windows WHERE user_id = 'user-a'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(windows, 0);
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn all_users_reads_terra_users_or_says_it_is_missing(pool: PgPool) {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(daily_answer_for)
        .mount(&server)
        .await;
    let mut cfg = config(&server, "2026-01-01", "2026-01-02", &[DataType::Daily]);
    cfg.users = Users::AllActive;
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('terra.users') IS NOT NULL")
        .fetch_one(&pool)
        .await
        .unwrap();
    if !exists {
        let err = run(&pool, &cfg).await.unwrap_err();
        assert!(err.to_string().contains("terra.users"), "{err}");
        return;
    }
    sqlx::query(
        "INSERT INTO terra.users (user_id, active) VALUES ('on-1', true), ('off-1', false), ('on-2', true)",
    )
    .execute(&pool)
    .await
    .unwrap();
    let summary = run(&pool, &cfg).await.unwrap();
    assert_eq!(summary.users, 2);
    let mut users = users_asked(&server).await;
    users.sort();
    assert_eq!(users, ["on-1", "on-2"]);
}

/// The typed row and samples of `USER`'s daily records, without provenance columns.
async fn daily_snapshot(pool: &PgPool) -> (Value, Value) {
    let rows: Value = sqlx::query_scalar(
        "SELECT coalesce(jsonb_agg(to_jsonb(t) - 'event_id' - 'ordering_ts' - 'created_at' - 'updated_at'
                                   ORDER BY record_key), '[]')
         FROM terra.daily t WHERE user_id = $1",
    )
    .bind(USER)
    .fetch_one(pool)
    .await
    .unwrap();
    let samples: Value = sqlx::query_scalar(
        "SELECT coalesce(jsonb_agg(to_jsonb(s) ORDER BY kind, ts), '[]')
         FROM terra.samples s WHERE user_id = $1",
    )
    .bind(USER)
    .fetch_one(pool)
    .await
    .unwrap();
    (rows, samples)
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn backfilled_records_become_the_same_rows_as_the_webhook_of_the_same_record(pool: PgPool) {
    // Terra's REST answer for the record of its official daily webhook example.
    let example: Value = serde_json::from_str(DAILY_EXAMPLE).unwrap();
    let answer = json!({"user": example["user"], "data": example["data"], "type": "daily"});
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/daily"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_raw(answer.to_string().into_bytes(), "application/json"),
        )
        .mount(&server)
        .await;
    let summary = run(
        &pool,
        &config(&server, "2026-07-01", "2026-07-02", &[DataType::Daily]),
    )
    .await
    .unwrap();
    assert_eq!(summary.records[&DataType::Daily], 1);
    drain(&pool).await;
    let from_backfill = daily_snapshot(&pool).await;
    assert_eq!(
        from_backfill.0.as_array().map(Vec::len),
        Some(1),
        "{from_backfill:?}"
    );

    // The same record by webhook, into the same empty tables.
    sqlx::query("DELETE FROM terra.sample_series")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM terra.daily")
        .execute(&pool)
        .await
        .unwrap();
    let mut receive_only = crate::helpers::test_config();
    receive_only.worker.concurrency = 0;
    let app = crate::helpers::TestApp::spawn_with(pool.clone(), receive_only).await;
    let res = app.deliver(DAILY_EXAMPLE.as_bytes(), &[]).await;
    assert_eq!(res.status(), 200);
    app.stop().await;
    drain(&pool).await;
    let from_webhook = daily_snapshot(&pool).await;
    assert_eq!(from_backfill, from_webhook);
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn backfill_and_webhooks_converge_by_answer_time(pool: PgPool) {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(inline_answer(
            "daily",
            vec![daily_record(d("2026-07-01"), 500)],
        ))
        .mount(&server)
        .await;
    run(
        &pool,
        &config(&server, "2026-07-01", "2026-07-02", &[DataType::Daily]),
    )
    .await
    .unwrap();
    drain(&pool).await;
    let steps = |pool: PgPool| async move {
        sqlx::query_scalar::<_, i64>("SELECT steps FROM terra.daily WHERE user_id = $1")
            .bind(USER)
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    assert_eq!(steps(pool.clone()).await, 500);

    let webhook = |steps: u32| {
        json!({"type": "daily", "version": "2022-03-16", "user": user_json(),
               "data": [daily_record(d("2026-07-01"), steps)]})
        .to_string()
    };
    let mut receive_only = crate::helpers::test_config();
    receive_only.worker.concurrency = 0;
    let app = crate::helpers::TestApp::spawn_with(pool.clone(), receive_only).await;
    // A copy Terra made an hour before the backfill asked arrives late: it changes nothing.
    let hour_ago = (chrono::Utc::now().timestamp_millis() - 3_600_000).to_string();
    let late = app
        .deliver(
            webhook(400).as_bytes(),
            &[("x-terra-ordering-timestamp", &hour_ago)],
        )
        .await;
    assert_eq!(late.status(), 200);
    drain(&pool).await;
    assert_eq!(steps(pool.clone()).await, 500);
    // A copy Terra makes after the backfill replaces it.
    let later = (chrono::Utc::now().timestamp_millis() + 60_000).to_string();
    let newer = app
        .deliver(
            webhook(900).as_bytes(),
            &[("x-terra-ordering-timestamp", &later)],
        )
        .await;
    assert_eq!(newer.status(), 200);
    app.stop().await;
    drain(&pool).await;
    assert_eq!(steps(pool.clone()).await, 900);
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn the_day_budget_paces_a_users_requests_without_losing_any(pool: PgPool) {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(daily_answer_for)
        .mount(&server)
        .await;
    // 2 days per 500 ms and 1-day windows: the third request waits for the first to age out.
    let mut cfg = config(&server, "2026-01-01", "2026-01-04", &[DataType::Daily]);
    cfg.window_days = 1;
    cfg.day_budget = 2;
    cfg.budget_period = Duration::from_millis(500);
    let summary = run(&pool, &cfg).await.unwrap();
    assert_eq!(summary.windows_done, 3);
    assert_eq!(
        requested(&server).await,
        vec![
            window("/daily", "2026-01-01", "2026-01-02"),
            window("/daily", "2026-01-02", "2026-01-03"),
            window("/daily", "2026-01-03", "2026-01-04"),
        ]
    );
}

fn backfill_command(pool: &PgPool, server: &MockServer, args: &[&str]) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_terra-sink"));
    cmd.current_dir(env!("CARGO_TARGET_TMPDIR"))
        .env("DATABASE_URL", database_url(pool))
        .env("TERRA_DEV_ID", DEV_ID)
        .env("TERRA_API_KEY", API_KEY)
        .env("RUST_LOG", "warn")
        .args(["backfill", "--api-url", &server.uri(), "--no-progress"])
        .args(["--initial-backoff-ms", "10", "--max-retries", "1"])
        .args(args);
    cmd
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn the_command_backfills_processes_and_summarises(pool: PgPool) {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/daily"))
        .respond_with(daily_answer_for)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/sleep"))
        .respond_with(
            ResponseTemplate::new(401).set_body_raw(PROBLEM_401, "application/problem+json"),
        )
        .mount(&server)
        .await;
    let mut ok = backfill_command(
        &pool,
        &server,
        &[
            "--user-id",
            USER,
            "--type",
            "daily",
            "--start-date",
            "2026-01-01",
            "--end-date",
            "2026-01-31",
        ],
    );
    let out = tokio::task::spawn_blocking(move || ok.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("daily         30 records"), "{stdout}");
    assert!(stdout.contains("2 deliveries processed"), "{stdout}");
    let days: i64 = sqlx::query_scalar("SELECT count(*) FROM terra.daily")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(days, 30);

    let mut refused = backfill_command(
        &pool,
        &server,
        &["--user-id", USER, "--type", "sleep", "--days", "3"],
    );
    let out = tokio::task::spawn_blocking(move || refused.output().unwrap())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success());
    assert!(
        stderr.contains("check TERRA_DEV_ID and TERRA_API_KEY"),
        "{stderr}"
    );
    assert!(!stderr.contains(API_KEY) && !String::from_utf8_lossy(&out.stdout).contains(API_KEY));
}

#[sqlx::test(migrations = false)]
async fn a_database_without_migrations_says_to_run_migrate(pool: PgPool) {
    let server = MockServer::start().await;
    let cfg = config(&server, "2026-01-01", "2026-01-02", &[DataType::Daily]);
    let err = run(&pool, &cfg).await.unwrap_err().to_string();
    assert!(err.contains("run `terra-sink migrate`"), "{err}");
    assert!(!err.contains("does not exist"), "{err}");
    assert!(
        requested(&server).await.is_empty(),
        "nothing asked of Terra"
    );
}

/// A fake Terra that notes when each request arrived and how many days it covered, and fails
/// the first `failures_per_window` attempts of each window with a 500.
struct Arrivals {
    seen: std::sync::Mutex<Vec<(std::time::Instant, i64)>>,
    attempts: std::sync::Mutex<std::collections::HashMap<String, u32>>,
    failures_per_window: u32,
}

impl Arrivals {
    fn new(failures_per_window: u32) -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self {
            seen: Default::default(),
            attempts: Default::default(),
            failures_per_window,
        })
    }

    /// The most days Terra saw within any `period` (arrivals at or after one, less than a
    /// period later), which is what its per-user limit counts.
    fn most_days_in_any(&self, period: Duration) -> i64 {
        let seen = self.seen.lock().unwrap().clone();
        seen.iter()
            .map(|&(from, _)| {
                seen.iter()
                    .filter(|&&(at, _)| at >= from && at < from + period)
                    .map(|&(_, days)| days)
                    .sum::<i64>()
            })
            .max()
            .unwrap_or(0)
    }
}

struct ArrivalsResponder(std::sync::Arc<Arrivals>);

async fn fake_terra_noting_arrivals(
    failures_per_window: u32,
) -> (MockServer, std::sync::Arc<Arrivals>) {
    let server = MockServer::start().await;
    let arrivals = Arrivals::new(failures_per_window);
    Mock::given(method("GET"))
        .respond_with(ArrivalsResponder(arrivals.clone()))
        .mount(&server)
        .await;
    (server, arrivals)
}

/// Daily data of `[start, end)` in 1-day windows, at most `days` days per `period_ms`.
fn paced(server: &MockServer, start: &str, end: &str, days: u32, period_ms: u64) -> BackfillConfig {
    let mut cfg = config(server, start, end, &[DataType::Daily]);
    cfg.window_days = 1;
    cfg.day_budget = days;
    cfg.budget_period = Duration::from_millis(period_ms);
    cfg
}

impl wiremock::Respond for ArrivalsResponder {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let (start, end) = requested_dates(req);
        let arrivals = &self.0;
        let days = (end - start).num_days();
        arrivals
            .seen
            .lock()
            .unwrap()
            .push((std::time::Instant::now(), days));
        let mut attempts = arrivals.attempts.lock().unwrap();
        let n = attempts.entry(start.to_string()).or_default();
        *n += 1;
        if *n <= arrivals.failures_per_window {
            return ResponseTemplate::new(500).set_body_raw(STATUS_MESSAGE_500, "application/json");
        }
        daily_answer_for(req)
    }
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn the_day_budget_counts_every_attempt_retries_included(pool: PgPool) {
    let (server, arrivals) = fake_terra_noting_arrivals(1).await;
    // 1-day windows, each answered 500 once then 200: six requests of one day each.
    let cfg = paced(&server, "2026-01-01", "2026-01-04", 2, 700);
    let summary = run(&pool, &cfg).await.unwrap();
    assert_eq!(summary.windows_done, 3);
    assert_eq!(requested(&server).await.len(), 6);
    assert_eq!(arrivals.most_days_in_any(cfg.budget_period), 2);
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn the_day_budget_holds_across_runs(pool: PgPool) {
    let (server, arrivals) = fake_terra_noting_arrivals(0).await;
    // The first run spends the whole budget; the next one (the command started again, as after
    // Ctrl-C, here for the following days) starts at once and must not start afresh.
    let first = paced(&server, "2026-01-01", "2026-01-03", 2, 700);
    assert_eq!(run(&pool, &first).await.unwrap().windows_done, 2);
    let second = paced(&server, "2026-01-03", "2026-01-05", 2, 700);
    assert_eq!(run(&pool, &second).await.unwrap().windows_done, 2);
    assert_eq!(requested(&server).await.len(), 4);
    assert_eq!(arrivals.most_days_in_any(first.budget_period), 2);
    // Every request is on record, ended.
    let unended: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM terra.backfill_requests WHERE ended_at IS NULL OR user_id <> $1",
    )
    .bind(USER)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(unended, 0);
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn a_request_whose_end_was_never_recorded_counts_until_its_deadline(pool: PgPool) {
    let (server, arrivals) = fake_terra_noting_arrivals(0).await;
    // A run that died mid-request: sent just now, deadline 400 ms ahead, no end.
    let started = std::time::Instant::now();
    sqlx::query(
        "INSERT INTO terra.backfill_requests (user_id, data_type, start_date, end_date, counted_at)
         VALUES ($1, 'daily', '2025-12-31', '2026-01-01', clock_timestamp() + interval '400 ms')",
    )
    .bind(USER)
    .execute(&pool)
    .await
    .unwrap();
    let cfg = paced(&server, "2026-01-01", "2026-01-02", 1, 300);
    assert_eq!(run(&pool, &cfg).await.unwrap().windows_done, 1);
    // It counted until its deadline plus a period, so the new request came after both.
    let (arrived, _) = arrivals.seen.lock().unwrap()[0];
    assert!(arrived >= started + Duration::from_millis(700));
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn ctrl_c_exits_130_with_the_summary_saying_it_stopped_early(pool: PgPool) {
    let server = MockServer::start().await;
    let (first_request, mut requested_once) = tokio::sync::mpsc::unbounded_channel();
    Mock::given(method("GET"))
        .respond_with(move |req: &Request| {
            let _ = first_request.send(());
            daily_answer_for(req)
        })
        .mount(&server)
        .await;
    // One day per minute and 1-day windows: after the first request the run waits for the
    // budget, which is where Ctrl-C finds it.
    let mut cmd = backfill_command(
        &pool,
        &server,
        &[
            "--user-id",
            USER,
            "--type",
            "daily",
            "--days",
            "3",
            "--window-days",
            "1",
            "--days-per-minute",
            "1",
        ],
    );
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().unwrap();
    requested_once.recv().await.unwrap();
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(130), "{stdout}");
    assert!(stdout.contains("stopped early"), "{stdout}");
    assert_eq!(requested(&server).await.len(), 1);
}
