//! Black-box tests of processing: deliveries acknowledged over HTTP become typed rows, exactly
//! once, across restarts and several instances.

use crate::helpers::binary::database_url;

use crate::helpers::{eventually, receive_only, TestApp};
use sqlx::PgPool;

/// A signed daily event for `day` (YYYY-MM-DD) with `steps`.
fn daily(user: &str, day: &str, steps: u32) -> Vec<u8> {
    format!(
        r#"{{"type":"daily","version":"2022-03-16","user":{{"user_id":"{user}","provider":"GARMIN","reference_id":null,"scopes":null,"active":true,"last_webhook_update":null}},"data":[{{"metadata":{{"start_time":"{day}T00:00:00.000000+00:00","end_time":"{day}T23:59:59.999999+00:00","upload_type":1}},"distance_data":{{"steps":{steps}}}}}]}}"#
    )
    .into_bytes()
}

async fn count_status(pool: &PgPool, status: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM terra.deliveries WHERE status = $1")
        .bind(status)
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn daily_steps(pool: &PgPool, user: &str) -> Vec<(String, Option<i64>)> {
    sqlx::query_as::<_, (String, Option<i64>)>(
        "SELECT day::text, steps::bigint FROM terra.daily WHERE user_id = $1 ORDER BY day",
    )
    .bind(user)
    .fetch_all(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn acknowledged_deliveries_become_typed_rows(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let res = app.deliver(&daily("u1", "2026-11-01", 1234), &[]).await;
    assert_eq!(res.status(), 200);
    eventually("delivery processed", || async {
        count_status(&pool, "done").await == 1
    })
    .await;
    assert_eq!(
        daily_steps(&pool, "u1").await,
        vec![("2026-11-01".to_owned(), Some(1234))]
    );
    app.stop().await;
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn undecodable_deliveries_are_parked_and_counted(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    app.deliver(b"definitely not json", &[]).await;
    app.deliver(
        br#"{"type":"daily","data":"not a list","user":{"user_id":"u1"}}"#,
        &[],
    )
    .await;
    eventually("both parked", || async {
        count_status(&pool, "parked").await == 2
    })
    .await;
    let errors: Vec<String> = sqlx::query_scalar(
        "SELECT last_error FROM terra.deliveries WHERE status = 'parked' ORDER BY id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(errors[0].starts_with("undecodable"), "{errors:?}");
    assert!(
        errors[1].contains("data"),
        "the error names the failing path: {errors:?}"
    );
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(
        metrics.contains(r#"terra_sink_deliveries_processed_total{outcome="parked"} 2"#),
        "{metrics}"
    );
    app.stop().await;
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn deliveries_acknowledged_before_a_stop_are_processed_after_restart(pool: PgPool) {
    // The first instance acknowledges but never processes (as if killed right after answering).
    let receiver = TestApp::spawn_with(pool.clone(), receive_only()).await;
    for day in ["2026-11-01", "2026-11-02", "2026-11-03"] {
        assert_eq!(
            receiver.deliver(&daily("u1", day, 10), &[]).await.status(),
            200
        );
    }
    let metrics = receiver
        .client
        .get(receiver.url("/metrics"))
        .send()
        .await
        .unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(
        metrics.contains(r#"terra_sink_backlog{state="pending"} 3"#),
        "{metrics}"
    );
    receiver.stop().await;
    assert_eq!(count_status(&pool, "pending").await, 3);
    assert!(daily_steps(&pool, "u1").await.is_empty());

    let restarted = TestApp::spawn(pool.clone()).await;
    eventually("all processed", || async {
        count_status(&pool, "done").await == 3
    })
    .await;
    assert_eq!(daily_steps(&pool, "u1").await.len(), 3);
    restarted.stop().await;
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn processing_has_its_own_connections_and_lower_priority_threads(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let res = app.deliver(&daily("u1", "2026-11-02", 10), &[]).await;
    assert_eq!(res.status(), 200);
    eventually("delivery processed", || async {
        count_status(&pool, "done").await == 1
    })
    .await;
    let own: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity
         WHERE datname = current_database() AND application_name = 'terra-sink processing'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(own >= 1, "no connection of the workers' own");
    #[cfg(target_os = "linux")]
    {
        let nices = thread_nices("terra-process");
        assert!(!nices.is_empty(), "no processing thread");
        assert!(nices.iter().all(|&n| n == 10), "{nices:?}");
    }
    app.stop().await;
}

/// The nice values of this process's threads named `name` (Linux).
#[cfg(target_os = "linux")]
fn thread_nices(name: &str) -> Vec<i64> {
    let mut nices = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim_end() != name {
            continue;
        }
        // A thread may end between the two reads.
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        // After "pid (comm) ", the 17th field is the nice value (proc(5), field 19).
        let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
        nices.push(after_comm.split(' ').nth(16).unwrap().parse().unwrap());
    }
    nices
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn two_instances_drain_one_ledger_exactly_once(pool: PgPool) {
    let receiver = TestApp::spawn_with(pool.clone(), receive_only()).await;
    let days: Vec<String> = (0..120)
        .map(|i| {
            let date = chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap() + chrono::Days::new(i);
            date.to_string()
        })
        .collect();
    for (i, day) in days.iter().enumerate() {
        let res = receiver.deliver(&daily("u2", day, i as u32), &[]).await;
        assert_eq!(res.status(), 200);
    }
    receiver.stop().await;

    let a = TestApp::spawn(pool.clone()).await;
    let b = TestApp::spawn(pool.clone()).await;
    eventually("all processed", || async {
        count_status(&pool, "done").await == 120
    })
    .await;
    a.stop().await;
    b.stop().await;

    // Each delivery was processed once: one attempt each, one row per day with its own value.
    let max_attempts: i32 = sqlx::query_scalar("SELECT max(attempts) FROM terra.deliveries")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(max_attempts, 1);
    let rows = daily_steps(&pool, "u2").await;
    assert_eq!(rows.len(), 120);
    for (i, (day, steps)) in rows.iter().enumerate() {
        assert_eq!((day, *steps), (&days[i], Some(i as i64)));
    }
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn failing_writes_are_retried_with_backoff_then_parked(pool: PgPool) {
    // Make every write to terra.daily fail, as a broken database would.
    sqlx::raw_sql(
        "CREATE FUNCTION fail_for_test() RETURNS trigger LANGUAGE plpgsql AS
             $$ BEGIN RAISE EXCEPTION 'disk on fire'; END $$;
         CREATE TRIGGER fail BEFORE INSERT OR UPDATE ON terra.daily
             FOR EACH ROW EXECUTE FUNCTION fail_for_test();",
    )
    .execute(&pool)
    .await
    .unwrap();
    let processor = crate::helpers::processor(&pool);
    let app = TestApp::spawn_with(pool.clone(), receive_only()).await;
    app.deliver(&daily("u3", "2026-11-05", 5), &[]).await;

    let outcome = crate::helpers::step(&processor).await.unwrap();
    assert_eq!(outcome.1, terra_sink::Outcome::Failed);
    let (status, attempts, error, delay): (String, i32, String, f64) = sqlx::query_as(
        "SELECT status, attempts, last_error,
                extract(epoch FROM next_attempt_at - now())::float8
         FROM terra.deliveries",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((status.as_str(), attempts), ("failed", 1));
    assert!(error.contains("disk on fire"), "{error}");
    assert!(delay > 0.5, "retried later, not at once: {delay}");
    // Not due yet, so nothing to do now.
    assert!(crate::helpers::step(&processor).await.is_none());

    // Make it due again: the second failure uses up the attempts and parks it.
    sqlx::query("UPDATE terra.deliveries SET next_attempt_at = now()")
        .execute(&pool)
        .await
        .unwrap();
    let outcome = crate::helpers::step(&processor).await.unwrap();
    assert_eq!(outcome.1, terra_sink::Outcome::Parked);
    assert!(daily_steps(&pool, "u3").await.is_empty());

    // Once the database is fixed, `reprocess` brings it in.
    sqlx::raw_sql("DROP TRIGGER fail ON terra.daily")
        .execute(&pool)
        .await
        .unwrap();
    let out = reprocess(&pool, &["--status", "parked"]);
    assert!(out.contains("1 deliveries queued"), "{out}");
    assert_eq!(
        daily_steps(&pool, "u3").await,
        vec![("2026-11-05".to_owned(), Some(5))]
    );
    app.stop().await;
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn reprocess_is_idempotent_and_needs_a_selection(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    app.deliver(&daily("u4", "2026-11-07", 7), &[]).await;
    app.deliver(&daily("u4", "2026-11-08", 8), &[]).await;
    eventually("processed", || async {
        count_status(&pool, "done").await == 2
    })
    .await;
    app.stop().await;
    let before = daily_steps(&pool, "u4").await;

    let out = reprocess(&pool, &["--type", "daily"]);
    assert!(out.contains("2 deliveries queued"), "{out}");
    let out = reprocess(&pool, &["--all"]);
    assert!(out.contains("2 deliveries processed"), "{out}");
    assert_eq!(daily_steps(&pool, "u4").await, before);
    assert_eq!(count_status(&pool, "done").await, 2);

    let refused = run_cli(&pool, &["reprocess"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--all"));
}

fn run_cli(pool: &PgPool, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_terra-sink"))
        .args(args)
        .env("DATABASE_URL", database_url(pool))
        .env_remove("TERRA_SIGNING_SECRET")
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap()
}

fn reprocess(pool: &PgPool, args: &[&str]) -> String {
    let mut all = vec!["reprocess"];
    all.extend_from_slice(args);
    let out = run_cli(pool, &all);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn a_killed_process_loses_nothing_it_acknowledged(pool: PgPool) {
    // The real binary, receiving only, killed with SIGKILL right after it acknowledged.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_terra-sink"))
        .arg("serve")
        .env("DATABASE_URL", database_url(&pool))
        .env("TERRA_SIGNING_SECRET", crate::helpers::SECRET)
        .env("TERRA_SINK_BIND", format!("127.0.0.1:{port}"))
        .env("TERRA_SINK_WORKERS", "0")
        .current_dir(std::env::temp_dir())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    eventually("the binary is up", || async {
        client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    for day in ["2026-10-01", "2026-10-02"] {
        let body = daily("killed", day, 42);
        let res = client
            .post(format!("{base}/webhooks/terra"))
            .header(
                "terra-signature",
                crate::helpers::sign(&body, crate::helpers::now()),
            )
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    child.kill().await.unwrap();
    assert_eq!(count_status(&pool, "pending").await, 2);

    let restarted = TestApp::spawn(pool.clone()).await;
    eventually("processed after restart", || async {
        count_status(&pool, "done").await == 2
    })
    .await;
    assert_eq!(daily_steps(&pool, "killed").await.len(), 2);
    restarted.stop().await;
}
