//! Batch-shaped processing and the group-committed ledger, against a real PostgreSQL: whatever
//! shares a batch or a commit resolves exactly as if it had come alone.

use std::sync::Arc;
use std::time::Duration;

use crate::helpers::{eventually, receive_only, test_config, TestApp};
use serde_json::{json, Value};
use sqlx::PgPool;
use terra_sink::Metrics;
use terra_sink::{Outcome, Processor};

const OLD: &str = "old-user";
const NEW: &str = "new-user";

/// A processor claiming whole batches.
fn batch_processor(pool: &PgPool) -> Processor {
    let mut config = test_config().worker;
    config.max_attempts = 3;
    Processor::new(pool.clone(), config, Arc::new(Metrics::new()))
}

/// A daily event for `user` and `day` with `steps`, a heart-rate series of `samples` and,
/// when given, a Terra-computed stress score.
fn daily(user: &str, day: &str, steps: i64, samples: usize, score: Option<f64>) -> Vec<u8> {
    let hr: Vec<Value> = (0..samples)
        .map(|i| json!({"timestamp": format!("{day}T10:{:02}:00+00:00", i % 60), "bpm": 60 + i}))
        .collect();
    let record = json!({
        "metadata": {"start_time": format!("{day}T00:00:00+00:00"),
                     "end_time": format!("{day}T23:59:59+00:00"), "upload_type": 1},
        "distance_data": {"steps": steps},
        "heart_rate_data": {"detailed": {"hr_samples": hr}},
        "data_enrichment": {"total_stress_score": score},
    });
    serde_json::to_vec(&json!({
        "type": "daily", "user": {"user_id": user, "provider": "GARMIN"}, "data": [record]
    }))
    .unwrap()
}

async fn deliver(app: &TestApp, body: &[u8], ordering_ts: Option<i64>) {
    let ts = ordering_ts.map(|t| t.to_string());
    let headers: Vec<(&str, &str)> = ts
        .as_deref()
        .map(|t| vec![("x-terra-ordering-timestamp", t)])
        .unwrap_or_default();
    let res = app.deliver(body, &headers).await;
    assert_eq!(
        res.status(),
        200,
        "{}",
        res.text().await.unwrap_or_default()
    );
}

async fn scalar<T>(pool: &PgPool, sql: &str) -> T
where
    T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send + Unpin,
{
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

/// Every row of a one-column query.
async fn column<T>(pool: &PgPool, sql: &str) -> Vec<T>
where
    T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send + Unpin,
{
    sqlx::query_scalar(sql).fetch_all(pool).await.unwrap()
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn two_versions_of_a_record_in_one_batch_resolve_by_ordering_timestamp(pool: PgPool) {
    let app = TestApp::spawn_with(pool.clone(), receive_only()).await;
    let processor = batch_processor(&pool);
    // Both arrival orders, each pair processed in one batch: the newer copy wins and its
    // samples replace the older one's, exactly as if the two had come in separate batches.
    for (i, newer_first) in [true, false].into_iter().enumerate() {
        let day = format!("2026-07-0{}", i + 1);
        let old = daily("u1", &day, 100, 5, Some(40.0));
        let new = daily("u1", &day, 200, 3, None);
        let ordered = if newer_first {
            [(new.clone(), 2), (old.clone(), 1)]
        } else {
            [(old.clone(), 1), (new.clone(), 2)]
        };
        for (body, ts) in &ordered {
            deliver(&app, body, Some(*ts)).await;
        }
        let report = processor.process_batch().await.unwrap().unwrap();
        assert_eq!(report.outcomes.len(), 2, "one batch holds both");
        assert!(report.outcomes.iter().all(|(_, o)| *o == Outcome::Done));
        let row: (Option<i64>, Option<f64>, Option<i64>) = sqlx::query_as(
            "SELECT steps, total_stress_score, ordering_ts FROM terra.daily WHERE day = $1::date",
        )
        .bind(&day)
        .fetch_one(&pool)
        .await
        .unwrap();
        // The score the older copy had is kept only when that copy was stored first (a later
        // older copy changes nothing, as one by one).
        let score = if newer_first { None } else { Some(40.0) };
        assert_eq!(
            row,
            (Some(200), score, Some(2)),
            "newer first: {newer_first}"
        );
        let samples: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM terra.heart_rate_samples WHERE record_key = $1",
        )
        .bind(&day)
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(samples, 3, "the winning copy's samples only");
    }
    app.stop().await;
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn a_bad_delivery_fails_alone_and_its_batch_mates_are_stored(pool: PgPool) {
    // Every write of user "poison" fails, as a row the database rejects would.
    sqlx::raw_sql(
        "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS
             $$ BEGIN IF NEW.user_id = 'poison' THEN RAISE EXCEPTION 'rejected row'; END IF;
                RETURN NEW; END $$;
         CREATE TRIGGER poison BEFORE INSERT OR UPDATE ON terra.daily
             FOR EACH ROW EXECUTE FUNCTION poison();",
    )
    .execute(&pool)
    .await
    .unwrap();
    let app = TestApp::spawn_with(pool.clone(), receive_only()).await;
    let users = ["u1", "u2", "poison", "u3", "u4", "u5"];
    for user in users {
        deliver(&app, &daily(user, "2026-07-01", 1, 2, None), None).await;
    }
    // An undecodable body in the same batch is parked on its own.
    let res = app.deliver(br#"{"type":"daily","data":"nope"}"#, &[]).await;
    assert_eq!(res.status(), 200);

    let report = batch_processor(&pool)
        .process_batch()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(report.outcomes.len(), 7);
    let outcomes: Vec<Outcome> = report.outcomes.iter().map(|(_, o)| *o).collect();
    use Outcome::{Done, Failed, Parked};
    assert_eq!(outcomes, [Done, Done, Failed, Done, Done, Done, Parked]);
    let stored: Vec<String> =
        column(&pool, "SELECT user_id FROM terra.daily ORDER BY user_id").await;
    assert_eq!(stored, ["u1", "u2", "u3", "u4", "u5"]);
    let errors: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT status, last_error FROM terra.deliveries WHERE status <> 'done' ORDER BY id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(errors[0].0, "failed");
    assert!(
        errors[0]
            .1
            .as_deref()
            .unwrap_or("")
            .contains("rejected row"),
        "{errors:?}"
    );
    assert_eq!(errors[1].0, "parked");
    assert!(
        errors[1].1.as_deref().unwrap_or("").contains("undecodable"),
        "{errors:?}"
    );
    // The samples of the stored ones are there, none of the failed one.
    assert_eq!(
        scalar::<i64>(&pool, "SELECT count(*) FROM terra.samples").await,
        10
    );
    app.stop().await;
}

/// The user ids of the deliveries `terra.claim_batch` locks for `tx`, in queue order.
async fn claim_users(tx: &mut sqlx::PgConnection, max_count: i32, max_scan: i32) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT d.user_id FROM terra.claim_batch($1, 9223372036854775807, $2) c JOIN terra.deliveries d USING (id)
         ORDER BY c.id",
    )
    .bind(max_count)
    .bind(max_scan)
    .fetch_all(tx)
    .await
    .unwrap()
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn a_claim_leaves_the_deliveries_of_users_another_batch_holds(pool: PgPool) {
    let app = TestApp::spawn_with(pool.clone(), receive_only()).await;
    deliver(&app, &daily("u1", "2026-07-01", 1, 2, None), None).await;
    deliver(&app, &daily("u1", "2026-07-02", 2, 2, None), None).await;
    deliver(&app, &daily("u2", "2026-07-01", 3, 2, None), None).await;
    app.stop().await;

    // One batch holds u1 through its first delivery.
    let mut first = pool.begin().await.unwrap();
    assert_eq!(claim_users(&mut first, 1, 100).await, ["u1"]);
    // Another claim takes u2's only: u1's second delivery waits for the batch holding u1.
    let mut second = pool.begin().await.unwrap();
    assert_eq!(claim_users(&mut second, 10, 100).await, ["u2"]);
    second.rollback().await.unwrap();
    // A claim looks no further than its scan: the one candidate is held.
    let mut narrow = pool.begin().await.unwrap();
    assert!(claim_users(&mut narrow, 10, 1).await.is_empty());
    narrow.rollback().await.unwrap();
    // A whole batch meanwhile processes u2 alone.
    let report = batch_processor(&pool)
        .process_batch()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(report.outcomes.len(), 1);
    let done: Vec<String> = column(&pool, "SELECT user_id FROM terra.daily").await;
    assert_eq!(done, ["u2"]);

    // Once the first batch ends, u1's deliveries are claimed together, in order.
    first.rollback().await.unwrap();
    let report = batch_processor(&pool)
        .process_batch()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(report.outcomes.len(), 2);
    let steps: Vec<i64> = column(
        &pool,
        "SELECT steps FROM terra.daily WHERE user_id = 'u1' ORDER BY day",
    )
    .await;
    assert_eq!(steps, [1, 2]);
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn claims_start_at_the_queue_head_and_the_next_look_finds_what_was_due_before_it(
    pool: PgPool,
) {
    let app = TestApp::spawn_with(pool.clone(), receive_only()).await;
    deliver(&app, &daily("u1", "2026-07-01", 1, 2, None), None).await;
    let mut config = test_config().worker;
    config.claim_start_refresh = Duration::from_secs(3600);
    let looked = Processor::new(pool.clone(), config, Arc::new(Metrics::new()));
    let report = looked.process_batch().await.unwrap().unwrap();
    assert_eq!(report.outcomes.len(), 1);

    // Due from an hour before the head `looked` found, as a delivery whose transaction began
    // that long before it committed would be.
    deliver(&app, &daily("u2", "2026-07-01", 2, 2, None), None).await;
    app.stop().await;
    sqlx::query(
        "UPDATE terra.deliveries SET next_attempt_at = now() - interval '1 hour'
         WHERE status = 'pending'",
    )
    .execute(&pool)
    .await
    .unwrap();
    // Claims from the start already found do not reach it...
    assert!(looked.process_batch().await.unwrap().is_none());
    // ...the next look at the head does (a processor that has not looked yet looks first).
    let report = batch_processor(&pool)
        .process_batch()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(report.outcomes.len(), 1);
    let users: Vec<String> = column(&pool, "SELECT user_id FROM terra.daily ORDER BY 1").await;
    assert_eq!(users, ["u1", "u2"]);
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn a_reauth_and_the_users_data_in_one_batch_end_under_the_new_id(pool: PgPool) {
    let app = TestApp::spawn_with(pool.clone(), receive_only()).await;
    deliver(&app, &daily(OLD, "2026-07-01", 10, 2, None), None).await;
    let reauth = json!({
        "type": "user_reauth", "status": "success",
        "old_user": {"user_id": OLD, "provider": "GARMIN"},
        "new_user": {"user_id": NEW, "provider": "GARMIN"},
    });
    deliver(&app, reauth.to_string().as_bytes(), None).await;
    // Late data of the old id, after the reauth.
    deliver(&app, &daily(OLD, "2026-07-02", 20, 2, None), None).await;
    deliver(&app, &daily(NEW, "2026-07-03", 30, 2, None), None).await;

    let report = batch_processor(&pool)
        .process_batch()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(report.outcomes.len(), 4);
    assert!(
        report.outcomes.iter().all(|(_, o)| *o == Outcome::Done),
        "{report:?}"
    );
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT user_id, record_key FROM terra.daily ORDER BY record_key")
            .fetch_all(&pool)
            .await
            .unwrap();
    let expected: Vec<(String, String)> = ["2026-07-01", "2026-07-02", "2026-07-03"]
        .iter()
        .map(|d| (NEW.to_owned(), (*d).to_owned()))
        .collect();
    assert_eq!(rows, expected);
    let old_samples: i64 =
        sqlx::query_scalar("SELECT count(*) FROM terra.samples WHERE user_id = $1")
            .bind(OLD)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(old_samples, 0);
    let old: (String, Option<String>) =
        sqlx::query_as("SELECT status, replaced_by FROM terra.users WHERE user_id = $1")
            .bind(OLD)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(old, ("replaced".to_owned(), Some(NEW.to_owned())));
    app.stop().await;
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn two_copies_of_a_trace_id_in_one_group_commit_are_one_delivery(pool: PgPool) {
    let mut config = receive_only();
    // One writer and a long gathering window: concurrent requests share one commit.
    config.group_commit.concurrency = 1;
    config.group_commit.window = Duration::from_millis(300);
    let app = TestApp::spawn_with(pool.clone(), config).await;
    let body = daily("u1", "2026-07-01", 1, 1, None);
    let other = daily("u2", "2026-07-01", 1, 1, None);
    let send = |body: Vec<u8>, trace: &'static str| {
        let app = &app;
        async move {
            let res = app.deliver(&body, &[("x-terra-trace-id", trace)]).await;
            assert_eq!(res.status(), 200);
            res.json::<Value>().await.unwrap()
        }
    };
    let (a, b, c) = tokio::join!(
        send(body.clone(), "t-1"),
        send(body.clone(), "t-1"),
        send(other, "t-2")
    );
    let mut statuses = [a["status"].clone(), b["status"].clone()];
    statuses.sort_by_key(|s| s.to_string());
    assert_eq!(statuses, [json!("duplicate"), json!("stored")]);
    assert_eq!(a["delivery_id"], b["delivery_id"]);
    assert_eq!(c["status"], "stored");
    let rows: Vec<(String, i32)> =
        sqlx::query_as("SELECT dedupe_key, duplicates FROM terra.deliveries ORDER BY dedupe_key")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        rows,
        [("trace:t-1".to_owned(), 1), ("trace:t-2".to_owned(), 0)]
    );
    app.stop().await;
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn every_body_of_a_group_commit_is_stored_with_its_own_delivery(pool: PgPool) {
    let mut config = receive_only();
    config.group_commit.concurrency = 1;
    config.group_commit.window = Duration::from_millis(300);
    let app = TestApp::spawn_with(pool.clone(), config).await;
    // Stored before the group: its redelivery inside the group inserts nothing, so the
    // group's new rows are not at their requests' positions.
    let sent: Vec<(String, Vec<u8>)> = (0..4)
        .map(|i| {
            (
                format!("t-{i}"),
                daily(&format!("u{i}"), "2026-07-01", i, 1 + 7 * i as usize, None),
            )
        })
        .collect();
    let res = app
        .deliver(&sent[0].1, &[("x-terra-trace-id", "t-0")])
        .await;
    assert_eq!(res.status(), 200);
    let answers = futures_util::future::join_all(sent.iter().rev().map(|(trace, body)| {
        let app = &app;
        async move {
            app.deliver(body, &[("x-terra-trace-id", trace)])
                .await
                .status()
        }
    }))
    .await;
    assert!(answers.iter().all(|&status| status == 200), "{answers:?}");
    let stored: Vec<(String, Vec<u8>)> = sqlx::query_as(
        "SELECT d.trace_id, b.body FROM terra.deliveries d
         JOIN terra.delivery_bodies b ON b.delivery_id = d.id AND b.received_at = d.received_at
         ORDER BY d.trace_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(stored, sent);
    app.stop().await;
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn a_writer_connection_lost_between_groups_is_replaced_without_a_503(pool: PgPool) {
    let mut config = receive_only();
    // One writer, which keeps its connection from one group to the next for the whole test.
    config.group_commit.concurrency = 1;
    config.group_commit.keep_connections = Duration::from_secs(3600);
    let app = TestApp::spawn_with(pool.clone(), config).await;
    deliver(&app, &daily("u1", "2026-07-01", 1, 1, None), None).await;
    // The server ends the kept connection between two groups, as a restart would.
    let ended: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()
           AND state = 'idle' AND query = 'COMMIT'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(ended, [true], "the writer kept one connection");
    // The next group finds it lost and writes through a fresh one, within the same request.
    deliver(&app, &daily("u1", "2026-07-02", 1, 1, None), None).await;
    assert_eq!(
        scalar::<i64>(&pool, "SELECT count(*) FROM terra.deliveries").await,
        2
    );
    app.stop().await;
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn the_writer_leaves_one_connection_of_the_pool_to_everything_else(pool: PgPool) {
    // A pool of one connection: the writer may not keep it between groups.
    let small = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with((*pool.connect_options()).clone())
        .await
        .unwrap();
    let mut config = receive_only();
    config.group_commit.keep_connections = Duration::from_secs(3600);
    let app = TestApp::spawn_with(small.clone(), config).await;
    deliver(&app, &daily("u1", "2026-07-01", 1, 1, None), None).await;
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM terra.deliveries")
        .fetch_one(&small)
        .await
        .expect("the pool's connection is free again after the group");
    assert_eq!(count, 1);
    app.stop().await;
    small.close().await;
}

/// Terminates the backends of this test's database that sleep in `pg_sleep` (a statement the
/// test made slow), as a database crash would, once one is there.
async fn kill_sleeping_backend(pool: &PgPool) {
    eventually("a backend sleeping in the statement", || async {
        let killed: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event = 'PgSleep'
               AND pid <> pg_backend_pid()",
        )
        .fetch_all(pool)
        .await
        .unwrap();
        killed.contains(&true)
    })
    .await;
}

async fn drop_slow_trigger(pool: &PgPool, table: &str) {
    sqlx::raw_sql(&format!("DROP TRIGGER slow ON {table}"))
        .execute(pool)
        .await
        .unwrap();
}

async fn make_slow(pool: &PgPool, table: &str) {
    sqlx::raw_sql(&format!(
        "CREATE OR REPLACE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS
             $$ BEGIN PERFORM pg_sleep(30); RETURN NEW; END $$;
         CREATE TRIGGER slow BEFORE INSERT ON {table}
             FOR EACH STATEMENT EXECUTE FUNCTION slow();"
    ))
    .execute(pool)
    .await
    .unwrap();
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn a_database_crash_mid_batch_loses_nothing_and_applies_nothing_twice(pool: PgPool) {
    let app = TestApp::spawn_with(pool.clone(), receive_only()).await;
    for i in 0..20 {
        deliver(
            &app,
            &daily("u1", &format!("2026-07-{:02}", i + 1), i, 3, None),
            None,
        )
        .await;
    }
    make_slow(&pool, "terra.sample_series").await;
    let processor = batch_processor(&pool);
    let batch = tokio::spawn({
        let processor = processor.clone();
        async move { processor.process_batch().await }
    });
    kill_sleeping_backend(&pool).await;
    assert!(batch.await.unwrap().is_err(), "the batch saw the crash");
    // Nothing of the batch was committed.
    assert_eq!(
        scalar::<i64>(&pool, "SELECT count(*) FROM terra.daily").await,
        0
    );
    assert_eq!(
        scalar::<i64>(
            &pool,
            "SELECT count(*) FROM terra.deliveries WHERE status = 'pending' AND attempts = 0"
        )
        .await,
        20
    );
    drop_slow_trigger(&pool, "terra.sample_series").await;
    processor.drain().await.unwrap();
    assert_eq!(
        scalar::<i64>(&pool, "SELECT count(*) FROM terra.daily").await,
        20
    );
    assert_eq!(
        scalar::<i64>(&pool, "SELECT count(*) FROM terra.samples").await,
        60
    );
    let attempts: Vec<i32> = column(&pool, "SELECT DISTINCT attempts FROM terra.deliveries").await;
    assert_eq!(attempts, [1], "each delivery applied once");
    app.stop().await;
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn a_database_crash_mid_group_commit_answers_503_and_stores_nothing(pool: PgPool) {
    let mut config = receive_only();
    config.persist_timeout = Duration::from_secs(20);
    // All five requests in one group, on one connection.
    config.group_commit.concurrency = 1;
    config.group_commit.window = Duration::from_millis(300);
    let app = TestApp::spawn_with(pool.clone(), config).await;
    make_slow(&pool, "terra.deliveries").await;
    let bodies: Vec<Vec<u8>> = (0..5)
        .map(|i| daily("u1", &format!("2026-07-0{}", i + 1), i, 1, None))
        .collect();
    let requests = bodies.iter().map(|b| app.deliver(b, &[]));
    let (answers, ()) = tokio::join!(
        futures_util::future::join_all(requests),
        kill_sleeping_backend(&pool)
    );
    drop_slow_trigger(&pool, "terra.deliveries").await;
    let stored = scalar::<i64>(&pool, "SELECT count(*) FROM terra.deliveries").await;
    let acknowledged = answers.iter().filter(|r| r.status() == 200).count() as i64;
    // Every 200 is in the ledger and every 503 is not (nothing acknowledged was lost).
    assert_eq!(stored, acknowledged);
    assert!(answers
        .iter()
        .all(|r| r.status() == 200 || r.status() == 503));
    assert_eq!(acknowledged, 0, "the crashed group was not acknowledged");
    // Terra retries: each delivery ends in the ledger exactly once.
    for body in &bodies {
        deliver(&app, body, None).await;
    }
    assert_eq!(
        scalar::<i64>(&pool, "SELECT count(*) FROM terra.deliveries").await,
        5
    );
    app.stop().await;
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn a_503_means_not_stored_even_when_the_commit_would_come_late(pool: PgPool) {
    let mut config = receive_only();
    config.persist_timeout = Duration::from_millis(500);
    let app = TestApp::spawn_with(pool.clone(), config).await;
    // The insert takes longer than the deadline, but does finish.
    sqlx::raw_sql(
        "CREATE FUNCTION slow_once() RETURNS trigger LANGUAGE plpgsql AS
             $$ BEGIN PERFORM pg_sleep(1.5); RETURN NEW; END $$;
         CREATE TRIGGER slow BEFORE INSERT ON terra.deliveries
             FOR EACH STATEMENT EXECUTE FUNCTION slow_once();",
    )
    .execute(&pool)
    .await
    .unwrap();
    let res = app
        .deliver(&daily("u1", "2026-07-01", 1, 1, None), &[])
        .await;
    assert_eq!(res.status(), 503);
    assert!(res.headers().contains_key("retry-after"));
    // Once the slow statement has finished, the group must have rolled back its row.
    eventually("the slow insert finished", || async {
        scalar::<i64>(
            &pool,
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event = 'PgSleep'",
        )
        .await
            == 0
    })
    .await;
    app.stop().await;
    assert_eq!(
        scalar::<i64>(&pool, "SELECT count(*) FROM terra.deliveries").await,
        0
    );
}
