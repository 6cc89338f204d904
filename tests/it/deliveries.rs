//! `terra-sink deliveries list|show|resend`, `reprocess`'s outcome and `send`'s header flags,
//! through the real binary against the real app on a random port and a fresh database.

use crate::helpers::binary::{output, terra_sink};
use crate::helpers::{test_config, TestApp, SECRET};
use sqlx::PgPool;

const DAILY: &str = r#"{"type":"daily","version":"2022-03-16","user":{"user_id":"user-a","provider":"GARMIN","reference_id":null,"scopes":null,"active":true,"last_webhook_update":null},"data":[{"metadata":{"start_time":"2026-11-01T00:00:00.000000+00:00","end_time":"2026-11-01T23:59:59.999999+00:00","upload_type":1},"distance_data":{"steps":77}}]}"#;

fn cli(pool: &PgPool, args: &[&str]) -> (bool, String, String) {
    let dir = crate::helpers::binary::scratch_dir("deliveries");
    output(
        terra_sink(&dir)
            .args(args)
            .env("DATABASE_URL", crate::helpers::binary::database_url(pool))
            .env("TERRA_SIGNING_SECRET", SECRET),
    )
}

/// A receive-only app holding a processed daily delivery (id 1, trace `t-daily`) and a parked
/// undecodable one (id 2).
async fn ledger_with_done_and_parked(pool: &PgPool) -> TestApp {
    let mut config = test_config();
    config.worker.concurrency = 0;
    let app = TestApp::spawn_with(pool.clone(), config).await;
    let res = app
        .deliver(DAILY.as_bytes(), &[("x-terra-trace-id", "t-daily")])
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(app.deliver(b"definitely not json", &[]).await.status(), 200);
    crate::helpers::processor(pool).drain().await.unwrap();
    app
}

async fn run(pool: &PgPool, args: &[&'static str]) -> (bool, String, String) {
    let pool = pool.clone();
    let args = args.to_vec();
    tokio::task::spawn_blocking(move || cli(&pool, &args))
        .await
        .unwrap()
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn deliveries_are_listed_with_filters_and_the_reason_of_parked_ones(pool: PgPool) {
    let app = ledger_with_done_and_parked(&pool).await;
    let (ok, all, stderr) = run(&pool, &["deliveries", "list"]).await;
    assert!(ok, "{stderr}");
    let lines: Vec<&str> = all.lines().collect();
    assert_eq!(lines.len(), 3, "{all}");
    assert!(lines[0].starts_with("ID"), "{all}");
    assert!(
        lines[1].trim_start().starts_with("2 "),
        "newest first: {all}"
    );
    assert!(
        lines[1].contains("parked") && lines[1].contains("undecodable"),
        "{all}"
    );
    assert!(
        lines[2].contains("daily") && lines[2].contains("user-a"),
        "{all}"
    );

    let (_, parked, _) = run(&pool, &["deliveries", "list", "--status", "parked"]).await;
    assert_eq!(parked.lines().count(), 2, "{parked}");
    assert!(parked.contains("undecodable"), "{parked}");
    let (_, daily, _) = run(
        &pool,
        &["deliveries", "list", "--type", "daily", "--user", "user-a"],
    )
    .await;
    assert_eq!(daily.lines().count(), 2, "{daily}");
    assert!(daily.contains("done"), "{daily}");
    let (_, nobody, _) = run(&pool, &["deliveries", "list", "--user", "someone-else"]).await;
    assert_eq!(nobody.trim(), "no deliveries match");
    let (_, later, _) = run(
        &pool,
        &["deliveries", "list", "--since", "2999-01-01T00:00:00Z"],
    )
    .await;
    assert_eq!(later.trim(), "no deliveries match");
    app.stop().await;
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn a_delivery_is_shown_with_its_metadata_and_body(pool: PgPool) {
    let app = ledger_with_done_and_parked(&pool).await;
    let (ok, shown, stderr) = run(&pool, &["deliveries", "show", "1"]).await;
    assert!(ok, "{stderr}");
    assert!(shown.contains("trace_id           t-daily"), "{shown}");
    assert!(shown.contains("status             done"), "{shown}");
    assert!(shown.contains("event_type         daily"), "{shown}");
    assert!(shown.ends_with(&format!("\n\n{DAILY}\n")), "{shown}");

    let (ok, body, _) = run(&pool, &["deliveries", "show", "1", "--body-only"]).await;
    assert!(ok);
    assert_eq!(body, DAILY, "byte for byte");

    let (ok, parked, _) = run(&pool, &["deliveries", "show", "2"]).await;
    assert!(ok);
    assert!(
        parked.contains("last_error         undecodable"),
        "{parked}"
    );

    let (ok, _, stderr) = run(&pool, &["deliveries", "show", "99"]).await;
    assert!(!ok);
    assert!(stderr.contains("no delivery with id 99"), "{stderr}");
    app.stop().await;
}

/// A stand-in staging receiver on loopback that keeps what it is sent.
async fn staging_receiver() -> (String, crate::helpers::binary::Recorded) {
    let (base, received) =
        crate::helpers::binary::recorder("/hook", r#"{"status":"stored"}"#).await;
    (format!("{base}/hook"), received)
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn a_delivery_is_resent_byte_for_byte_and_re_signed(pool: PgPool) {
    let app = ledger_with_done_and_parked(&pool).await;
    let (url, received) = staging_receiver().await;
    let (ok, stdout, stderr) = {
        let pool = pool.clone();
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            cli(&pool, &["deliveries", "resend", "1", "--url", &url])
        })
        .await
        .unwrap()
    };
    assert!(ok, "{stdout} {stderr}");
    assert!(stdout.starts_with("HTTP 200 OK"), "{stdout}");
    let (headers, body) = received.lock().unwrap().pop().unwrap();
    assert_eq!(body, DAILY.as_bytes());
    assert_eq!(headers["x-terra-trace-id"], "t-daily");
    let verifier =
        terra_sink::Verifier::new(&[secrecy::SecretString::from(SECRET.to_owned())], 300);
    let signature = headers["terra-signature"].to_str().unwrap();
    verifier
        .verify(Some(signature), &body, crate::helpers::now())
        .expect("signed now with the configured secret");

    // Resent to the service itself: a redelivery of the same trace id.
    let own = app.url("/webhooks/terra");
    let (ok, stdout, _) = tokio::task::spawn_blocking({
        let pool = pool.clone();
        move || cli(&pool, &["deliveries", "resend", "1", "--url", &own])
    })
    .await
    .unwrap();
    assert!(ok);
    assert!(stdout.contains("\"duplicate\""), "{stdout}");
    app.stop().await;
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn reprocess_fails_with_a_summary_when_everything_is_parked_again(pool: PgPool) {
    let app = ledger_with_done_and_parked(&pool).await;
    let (ok, stdout, stderr) = run(&pool, &["reprocess", "--status", "parked"]).await;
    assert!(!ok, "{stdout}");
    assert!(
        stdout.contains("1 deliveries queued for reprocessing"),
        "{stdout}"
    );
    assert!(
        stdout.contains("all 1 selected deliveries were parked again: 0 done, 1 parked again"),
        "{stdout}"
    );
    assert!(
        stderr.contains("not every selected delivery was processed"),
        "{stderr}"
    );

    // Selecting the good one too: still a failure, and the summary counts both.
    let (ok, stdout, _) = run(&pool, &["reprocess", "--all"]).await;
    assert!(!ok);
    assert!(
        stdout.contains("2 selected: 1 done, 1 parked again"),
        "{stdout}"
    );

    let (ok, stdout, stderr) = run(&pool, &["reprocess", "--type", "daily"]).await;
    assert!(ok, "{stderr}");
    assert!(stdout.contains("1 selected: 1 done"), "{stdout}");
    app.stop().await;
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn send_sets_the_ordering_timestamp_the_reference_and_an_old_signature_time(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let url = app.url("/webhooks/terra");
    let send = move |extra: &[&str]| {
        let dir = crate::helpers::binary::scratch_dir("send-flags");
        let mut args = vec!["send", "--sample", "daily", "--url", url.as_str()];
        args.extend_from_slice(extra);
        output(
            terra_sink(&dir)
                .args(&args)
                .env("TERRA_SIGNING_SECRET", SECRET),
        )
    };
    let flags = [
        "--trace-id",
        "t-flags",
        "--ordering-timestamp",
        "1767225600123",
        "--reference",
        "ref-42",
        "--signature-age",
        "60",
    ];
    let (ok, stdout, stderr) = tokio::task::spawn_blocking({
        let send = send.clone();
        move || send(&flags)
    })
    .await
    .unwrap();
    assert!(ok, "{stdout} {stderr}");
    let (ordering, reference, signed_age): (Option<i64>, Option<String>, f64) = sqlx::query_as(
        "SELECT ordering_ts, terra_reference, extract(epoch FROM received_at - signed_at)::float8
         FROM terra.deliveries WHERE trace_id = 't-flags'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(ordering, Some(1_767_225_600_123));
    assert_eq!(reference.as_deref(), Some("ref-42"));
    assert!((59.0..120.0).contains(&signed_age), "{signed_age}");

    // Older than the tolerance (300 s): rejected, and the command says so.
    let (ok, stdout, _) = tokio::task::spawn_blocking(move || {
        send(&["--trace-id", "t-old", "--signature-age", "600"])
    })
    .await
    .unwrap();
    assert!(!ok);
    assert!(stdout.starts_with("HTTP 401"), "{stdout}");
    assert!(stdout.contains("timestamp_out_of_tolerance"), "{stdout}");
    app.stop().await;
}
