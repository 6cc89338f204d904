//! `terra-sink reconcile` against a local fake of Terra's REST API (wiremock on 127.0.0.1):
//! users created, marked and left alone, the ordering rule against lifecycle events, dry runs,
//! the gap backfill's requests, and refused credentials.

use std::time::Duration;

use chrono::{Days, NaiveDate, Utc};
use secrecy::SecretString;
use serde_json::{json, Value};
use sqlx::PgPool;
use terra_sink::backfill::ApiError;
use terra_sink::backfill::{BackfillConfig, DataType, Progress, Users, Window};
use terra_sink::reconcile::{
    self, GapBackfill, ReconcileConfig, ReconcileError, ScheduledReconcile, Summary,
};
use terra_sink::{ClientConfig, RetryPolicy};
use tokio::sync::watch;
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::helpers::binary::database_url;
use crate::helpers::{eventually, receive_only, TestApp};

const DEV_ID: &str = "dev-test-123";
const API_KEY: &str = "key-test-not-real";
const PROBLEM_401: &str = include_str!("../fixtures/terra-api/problem_unauthorized.json");
/// The user of Terra's official `auth` webhook example.
const EXAMPLE_USER: &str = "40f7b0e1-89e2-43ac-a5b8-1e29c8d47cad";
/// Terra's clock when the fake answers the listing.
const LISTED_AT: &str = "Wed, 02 Dec 2026 08:00:00 GMT";
const LISTED_AT_MS: i64 = 1_796_198_400_000;

fn client(server: &MockServer) -> ClientConfig {
    ClientConfig {
        base_url: server.uri(),
        dev_id: DEV_ID.to_owned(),
        api_key: SecretString::from(API_KEY.to_owned()),
        request_timeout: Duration::from_secs(10),
        retry: RetryPolicy {
            max_retries: 2,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(100),
        },
    }
}

fn config(server: &MockServer) -> ReconcileConfig {
    ReconcileConfig {
        client: client(server),
        dry_run: false,
        per_page: 2,
        allow_empty: false,
        gap: None,
        progress: Progress::Never,
    }
}

async fn run(pool: &PgPool, config: &ReconcileConfig) -> Result<Summary, ReconcileError> {
    let (_stop, stopped) = watch::channel(false);
    reconcile::run(pool, config, stopped).await
}

fn terra_user(id: &str) -> Value {
    json!({"user_id": id, "provider": "GARMIN", "reference_id": format!("ref-{id}"),
           "scopes": "ACTIVITY_EXPORT,HEALTH_EXPORT", "active": true,
           "created_at": "2026-01-01T00:00:00.000000+00:00", "last_webhook_update": null})
}

fn json_answer(status: u16, body: Value) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .insert_header("date", LISTED_AT)
        .set_body_raw(body.to_string().into_bytes(), "application/json")
}

/// Terra's `/subscriptions`, paged as its OpenAPI description says (`page`, `per_page`,
/// `data.next`), over `users`; `/userInfo` knows `also_known` and answers 404 for anyone else.
async fn fake_terra(users: &[&str], also_known: &[&str]) -> MockServer {
    let server = MockServer::start().await;
    let users: Vec<Value> = users.iter().map(|u| terra_user(u)).collect();
    Mock::given(method("GET"))
        .and(path("/subscriptions"))
        .and(header("dev-id", DEV_ID))
        .and(header("x-api-key", API_KEY))
        .respond_with(move |req: &Request| {
            let q = |k: &str| query(req, k).and_then(|v| v.parse::<usize>().ok());
            let (page, per_page) = (q("page").unwrap_or(0), q("per_page").unwrap_or(500));
            let pages = users.len().div_ceil(per_page).max(1);
            let results: Vec<Value> = users
                .iter()
                .skip(page * per_page)
                .take(per_page)
                .cloned()
                .collect();
            let next = (page + 1 < pages).then_some(page + 1);
            json_answer(
                200,
                json!({"data": {"next": next, "max_page": pages - 1, "results": results}}),
            )
        })
        .mount(&server)
        .await;
    let known: Vec<String> = also_known.iter().map(|s| (*s).to_owned()).collect();
    Mock::given(method("GET"))
        .and(path("/userInfo"))
        .respond_with(move |req: &Request| {
            let user = query(req, "user_id").unwrap_or_default();
            if known.contains(&user) {
                json_answer(200, json!({"user": terra_user(&user), "status": "success", "is_authenticated": true}))
            } else {
                ResponseTemplate::new(404).set_body_raw(
                    r#"{"type":"about:blank","title":"not found","instance":"/userInfo","detail":"user not found"}"#,
                    "application/problem+json",
                )
            }
        })
        .mount(&server)
        .await;
    server
}

fn query(req: &Request, key: &str) -> Option<String> {
    req.url
        .query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

/// (path, query) of every request the fake received, in order.
async fn requested(server: &MockServer) -> Vec<(String, String)> {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.url.path().to_owned(),
                r.url.query().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

/// Stores a daily record of `day` for `user` the way Terra would send it (webhook, workers).
async fn daily_data(pool: &PgPool, user: &str, day: NaiveDate) {
    let body = json!({
        "type": "daily", "version": "2022-03-16",
        "user": {"user_id": user, "provider": "GARMIN"},
        "data": [{"metadata": {"start_time": format!("{day}T00:00:00.000000+00:00"),
                               "end_time": format!("{day}T23:59:59.999999+00:00"), "upload_type": 1},
                  "distance_data": {"steps": 1000}}]
    });
    let app = TestApp::spawn_with(pool.clone(), receive_only()).await;
    let res = app.deliver(body.to_string().as_bytes(), &[]).await;
    assert_eq!(res.status(), 200);
    app.stop().await;
    crate::helpers::processor(pool).drain().await.unwrap();
}

/// (status, active, status_reason) of a user.
async fn status(pool: &PgPool, user: &str) -> (String, bool, Option<String>) {
    sqlx::query_as("SELECT status, active, status_reason FROM terra.users WHERE user_id = $1")
        .bind(user)
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn connected(pool: &PgPool, users: &[&str]) {
    for user in users {
        sqlx::query("INSERT INTO terra.users (user_id, provider) VALUES ($1, 'OURA')")
            .bind(user)
            .execute(pool)
            .await
            .unwrap();
    }
}

async fn daily_rows(pool: &PgPool, user: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM terra.daily WHERE user_id = $1")
        .bind(user)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// provider, reference_id, scopes, status_ordering_ts, event_id.
type CreatedRow = (
    Option<String>,
    Option<String>,
    Vec<String>,
    Option<i64>,
    Option<i64>,
);

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn creates_unseen_users_marks_vanished_ones_and_leaves_the_rest(pool: PgPool) {
    let server = fake_terra(&["kept", "new-1", "new-2"], &[]).await;
    connected(&pool, &["kept"]).await;
    daily_data(&pool, "gone", NaiveDate::from_ymd_opt(2026, 11, 1).unwrap()).await;
    sqlx::query("INSERT INTO terra.users (user_id, status, active) VALUES ('old', 'deauthenticated', false)")
        .execute(&pool)
        .await
        .unwrap();

    let summary = run(&pool, &config(&server)).await.unwrap();

    assert_eq!((summary.listed, summary.pages, summary.held), (3, 2, 3));
    assert_eq!(summary.created, ["new-1", "new-2"]);
    assert_eq!(summary.marked, ["gone"]);
    assert_eq!(summary.unchanged, 2, "kept, and the deauthenticated one");
    assert!(summary.restored.is_empty() && summary.failures.is_empty());
    // Paged with the credentials, then the vanished user confirmed before it was marked.
    assert_eq!(
        requested(&server).await,
        [
            ("/subscriptions".to_owned(), "page=0&per_page=2".to_owned()),
            ("/subscriptions".to_owned(), "page=1&per_page=2".to_owned()),
            ("/userInfo".to_owned(), "user_id=gone".to_owned()),
        ]
    );
    let (provider, reference, scopes, status_ts, event): CreatedRow = sqlx::query_as(
        "SELECT provider, reference_id, scopes, status_ordering_ts, event_id FROM terra.users
         WHERE user_id = 'new-1' AND status = 'connected' AND active AND reconciled_at IS NOT NULL",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(provider.as_deref(), Some("GARMIN"));
    assert_eq!(reference.as_deref(), Some("ref-new-1"));
    assert_eq!(scopes, ["ACTIVITY_EXPORT", "HEALTH_EXPORT"]);
    assert_eq!((status_ts, event), (Some(LISTED_AT_MS), None));

    let (gone_status, active, reason) = status(&pool, "gone").await;
    assert_eq!((gone_status.as_str(), active), ("missing_at_terra", false));
    let reason = reason.unwrap();
    assert!(
        reason.contains("GET /subscriptions at 2026-12-02T08:00:00"),
        "{reason}"
    );
    assert_eq!(daily_rows(&pool, "gone").await, 1, "its data is kept");
    assert_eq!(status(&pool, "kept").await.0, "connected");
    assert_eq!(status(&pool, "old").await.0, "deauthenticated");

    // A second run finds nothing to change.
    let again = run(&pool, &config(&server)).await.unwrap();
    assert!(
        again.created.is_empty() && again.marked.is_empty(),
        "{again}"
    );
    assert_eq!(again.unchanged, 5);
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn a_user_missing_from_the_listing_that_terra_still_has_is_left_alone(pool: PgPool) {
    let server = fake_terra(&["a"], &["b"]).await;
    connected(&pool, &["a", "b"]).await;
    let summary = run(&pool, &config(&server)).await.unwrap();
    assert!(summary.marked.is_empty(), "{summary}");
    assert_eq!(summary.still_at_terra, ["b"]);
    assert_eq!(status(&pool, "b").await.0, "connected");
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn a_dry_run_reports_and_changes_nothing(pool: PgPool) {
    let server = fake_terra(&["kept", "new-1"], &[]).await;
    connected(&pool, &["kept", "gone"]).await;
    let snapshot = |pool: PgPool| async move {
        sqlx::query_scalar::<_, Value>(
            "SELECT jsonb_agg(to_jsonb(u) ORDER BY user_id) FROM terra.users u",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    let before = snapshot(pool.clone()).await;
    let mut cfg = config(&server);
    cfg.dry_run = true;
    let summary = run(&pool, &cfg).await.unwrap();
    assert_eq!(summary.created, ["new-1"]);
    assert_eq!(summary.marked, ["gone"]);
    let text = summary.to_string();
    assert!(text.contains("1 would be created"), "{text}");
    assert!(text.contains("dry run: nothing was changed"), "{text}");
    assert_eq!(snapshot(pool.clone()).await, before);
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn a_mark_and_lifecycle_events_follow_the_ordering_rule(pool: PgPool) {
    let server = fake_terra(&["kept"], &[]).await;
    connected(&pool, &["kept", EXAMPLE_USER, "re-authed"]).await;
    // An auth Terra sent after its listing: the lifecycle's newer status stands.
    sqlx::query("UPDATE terra.users SET status_ordering_ts = $1 WHERE user_id = 're-authed'")
        .bind(LISTED_AT_MS + 5_000)
        .execute(&pool)
        .await
        .unwrap();
    let summary = run(&pool, &config(&server)).await.unwrap();
    assert_eq!(summary.marked, [EXAMPLE_USER]);
    assert_eq!(status(&pool, "re-authed").await.0, "connected");

    let auth = crate::helpers::example("auth-authSuccess");
    let app = TestApp::spawn_with(pool.clone(), receive_only()).await;
    // An older auth arriving late does not undo the mark…
    let older = (LISTED_AT_MS - 1_000).to_string();
    let res = app
        .deliver(
            auth.as_bytes(),
            &[
                ("x-terra-ordering-timestamp", &older),
                ("x-terra-trace-id", "t-old"),
            ],
        )
        .await;
    assert_eq!(res.status(), 200);
    crate::helpers::processor(&pool).drain().await.unwrap();
    assert_eq!(status(&pool, EXAMPLE_USER).await.0, "missing_at_terra");
    // …a newer one brings the user back the normal way.
    let newer = (LISTED_AT_MS + 1_000).to_string();
    let res = app
        .deliver(
            auth.as_bytes(),
            &[
                ("x-terra-ordering-timestamp", &newer),
                ("x-terra-trace-id", "t-new"),
            ],
        )
        .await;
    assert_eq!(res.status(), 200);
    app.stop().await;
    crate::helpers::processor(&pool).drain().await.unwrap();
    let (now, active, _) = status(&pool, EXAMPLE_USER).await;
    assert_eq!((now.as_str(), active), ("connected", true));
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn a_marked_user_terra_lists_again_is_connected_again(pool: PgPool) {
    let server = fake_terra(&["back"], &[]).await;
    sqlx::query(
        "INSERT INTO terra.users (user_id, status, active, status_reason, status_ordering_ts)
         VALUES ('back', 'missing_at_terra', false, 'not listed', $1)",
    )
    .bind(LISTED_AT_MS - 86_400_000)
    .execute(&pool)
    .await
    .unwrap();
    let summary = run(&pool, &config(&server)).await.unwrap();
    assert_eq!(summary.restored, ["back"]);
    assert_eq!(
        status(&pool, "back").await,
        ("connected".to_owned(), true, None)
    );
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn an_empty_listing_marks_nobody_unless_allowed(pool: PgPool) {
    let server = fake_terra(&[], &[]).await;
    connected(&pool, &["a"]).await;
    let err = run(&pool, &config(&server)).await.unwrap_err();
    assert!(
        matches!(err, ReconcileError::EmptyListing { connected: 1 }),
        "{err:?}"
    );
    assert!(err.to_string().contains("--allow-empty"), "{err}");
    assert_eq!(status(&pool, "a").await.0, "connected");
    let mut cfg = config(&server);
    cfg.allow_empty = true;
    assert_eq!(run(&pool, &cfg).await.unwrap().marked, ["a"]);
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn refused_credentials_stop_with_a_clear_error_and_change_nothing(pool: PgPool) {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(401).set_body_raw(PROBLEM_401, "application/problem+json"),
        )
        .mount(&server)
        .await;
    connected(&pool, &["a"]).await;
    let err = run(&pool, &config(&server)).await.unwrap_err();
    let ReconcileError::Api { error, .. } = &err else {
        panic!("{err:?}");
    };
    assert!(
        matches!(error, ApiError::Auth { status: 401, .. }),
        "{error:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains("check TERRA_DEV_ID and TERRA_API_KEY"),
        "{message}"
    );
    assert!(!message.contains(API_KEY), "the key is never printed");
    assert_eq!(requested(&server).await.len(), 1, "no retry of a 401");
    assert_eq!(status(&pool, "a").await.0, "connected");
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn a_failing_listing_is_retried_then_reported_without_changes(pool: PgPool) {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(503).set_body_raw(
            r#"{"status":"error","message":"try later"}"#,
            "application/json",
        ))
        .mount(&server)
        .await;
    connected(&pool, &["a"]).await;
    let err = run(&pool, &config(&server)).await.unwrap_err();
    assert!(err.to_string().contains("HTTP 503: try later"), "{err}");
    assert_eq!(
        requested(&server).await.len(),
        3,
        "1 + max_retries attempts"
    );
    assert_eq!(status(&pool, "a").await.0, "connected");
}

fn gap_config(server: &MockServer, older_than: Duration, max_days: u32) -> ReconcileConfig {
    let today = Utc::now().date_naive();
    let backfill = BackfillConfig {
        client: client(server),
        users: Users::Listed(Vec::new()),
        types: vec![DataType::Daily],
        range: Window {
            start: today,
            end: today,
        },
        window_days: 28,
        with_samples: false,
        refetch: false,
        day_budget: 0,
        budget_period: Duration::from_secs(60),
        concurrency: 1,
        progress: Progress::Never,
    };
    ReconcileConfig {
        gap: Some(GapBackfill {
            older_than,
            max_days,
            backfill,
        }),
        ..config(server)
    }
}

/// (user_id, start_date, end_date) of every `/daily` request, sorted.
async fn daily_requests(server: &MockServer) -> Vec<(String, String, String)> {
    let mut seen: Vec<(String, String, String)> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == "/daily")
        .map(|r| {
            let q = |k: &str| query(r, k).unwrap_or_default();
            (q("user_id"), q("start_date"), q("end_date"))
        })
        .collect();
    seen.sort();
    seen
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn the_gap_backfill_asks_for_each_stale_users_missing_days(pool: PgPool) {
    let server = fake_terra(&["fresh", "stale", "new-1"], &[]).await;
    Mock::given(method("GET"))
        .and(path("/daily"))
        .and(query_param("to_webhook", "false"))
        .respond_with(json_answer(
            200,
            json!({"user": null, "data": [], "type": "daily"}),
        ))
        .mount(&server)
        .await;
    let today = Utc::now().date_naive();
    let days_ago = |n: u64| today.checked_sub_days(Days::new(n)).unwrap();
    daily_data(&pool, "fresh", today).await;
    daily_data(&pool, "stale", days_ago(10)).await;
    let tomorrow = today.succ_opt().unwrap().to_string();

    let summary = run(
        &pool,
        &gap_config(&server, Duration::from_secs(2 * 86_400), 30),
    )
    .await
    .unwrap();
    assert_eq!(summary.created, ["new-1"]);
    assert_eq!(
        daily_requests(&server).await,
        [
            // Never seen: the last 30 days, in windows of at most 28.
            (
                "new-1".to_owned(),
                days_ago(29).to_string(),
                days_ago(1).to_string()
            ),
            (
                "new-1".to_owned(),
                days_ago(1).to_string(),
                tomorrow.clone()
            ),
            // From its newest record's day to today.
            (
                "stale".to_owned(),
                days_ago(10).to_string(),
                tomorrow.clone()
            ),
        ]
    );
    let backfill = summary.backfill.as_ref().unwrap();
    assert_eq!((backfill.users, backfill.windows_done), (2, 3));
    assert_eq!(summary.gaps.len(), 2);
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn a_dry_run_names_the_gaps_without_backfilling(pool: PgPool) {
    let server = fake_terra(&["new-1"], &[]).await;
    let mut cfg = gap_config(&server, Duration::from_secs(86_400), 7);
    cfg.dry_run = true;
    let summary = run(&pool, &cfg).await.unwrap();
    assert_eq!(summary.gaps.len(), 1);
    assert_eq!(summary.gaps[0].1.days(), 7);
    assert!(summary.backfill.is_none());
    assert!(daily_requests(&server).await.is_empty());
    assert!(
        summary
            .to_string()
            .contains("gaps: 1 users would be backfilled"),
        "{summary}"
    );
}

fn reconcile_command(pool: &PgPool, server: &MockServer, args: &[&str]) -> std::process::Command {
    let mut cmd =
        crate::helpers::binary::terra_sink(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")));
    cmd.env("DATABASE_URL", database_url(pool))
        .env("TERRA_DEV_ID", DEV_ID)
        .env("TERRA_API_KEY", API_KEY)
        .env("RUST_LOG", "warn")
        .args(["reconcile", "--api-url", &server.uri(), "--no-progress"])
        .args(["--initial-backoff-ms", "10", "--max-retries", "1"])
        .args(args);
    cmd
}

async fn output(mut cmd: std::process::Command) -> (Option<i32>, String, String) {
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn the_command_reconciles_and_summarises(pool: PgPool) {
    let server = fake_terra(&["kept", "new-1"], &[]).await;
    connected(&pool, &["kept", "gone"]).await;
    let (code, stdout, stderr) = output(reconcile_command(&pool, &server, &["--dry-run"])).await;
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("1 would be marked missing_at_terra"),
        "{stdout}"
    );
    assert_eq!(status(&pool, "gone").await.0, "connected");

    let (code, stdout, stderr) = output(reconcile_command(&pool, &server, &[])).await;
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("Terra lists 2 users (1 pages); terra.users held 2"),
        "{stdout}"
    );
    assert!(
        stdout.contains("1 created, 1 marked missing_at_terra"),
        "{stdout}"
    );
    assert!(stdout.contains("marked: gone"), "{stdout}");
    assert_eq!(status(&pool, "gone").await.0, "missing_at_terra");
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn the_command_fails_clearly_on_refused_credentials_without_the_key(pool: PgPool) {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(401).set_body_raw(PROBLEM_401, "application/problem+json"),
        )
        .mount(&server)
        .await;
    let (code, stdout, stderr) = output(reconcile_command(&pool, &server, &[])).await;
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("check TERRA_DEV_ID and TERRA_API_KEY"),
        "{stderr}"
    );
    assert!(!stderr.contains(API_KEY) && !stdout.contains(API_KEY));

    let mut no_key = reconcile_command(&pool, &server, &[]);
    no_key.env_remove("TERRA_API_KEY");
    let (code, _, stderr) = output(no_key).await;
    assert_eq!(code, Some(1));
    assert!(stderr.contains("TERRA_API_KEY"), "{stderr}");
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn serve_reconciles_on_a_schedule(pool: PgPool) {
    let server = fake_terra(&["kept", "new-1"], &[]).await;
    connected(&pool, &["kept", "gone"]).await;
    let mut serve = receive_only();
    serve.reconcile = Some(ScheduledReconcile {
        every: Duration::from_millis(100),
        config: config(&server),
    });
    let app = TestApp::spawn_with(pool.clone(), serve).await;

    eventually(
        "the scheduled reconcile created and marked users",
        || async {
            let connected: Vec<String> = sqlx::query_scalar(
                "SELECT user_id FROM terra.users WHERE status = 'connected' ORDER BY user_id",
            )
            .fetch_all(&pool)
            .await
            .unwrap();
            connected == ["kept", "new-1"]
        },
    )
    .await;
    assert_eq!(status(&pool, "gone").await.0, "missing_at_terra");
    // It keeps running: the listing is asked for again.
    eventually("a second scheduled run", || async {
        let listings = requested(&server)
            .await
            .iter()
            .filter(|(path, query)| path == "/subscriptions" && query.starts_with("page=0&"))
            .count();
        listings >= 2
    })
    .await;
    app.stop().await;
}
