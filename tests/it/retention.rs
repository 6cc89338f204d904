//! Retention (`terra-sink prune`): whole day partitions of `terra.delivery_bodies` go, the
//! metadata and the typed rows stay, unprocessed deliveries keep their bodies; ledger rows no
//! stored row comes from go after the dedupe window; and the migration to the partitioned
//! layout keeps every body of a populated ledger.

use std::borrow::Cow;
use std::time::Duration;

use chrono::Utc;
use sqlx::migrate::Migrator;
use sqlx::PgPool;
use terra_sink::PruneShare;

use crate::helpers::{binary, eventually, example, ledger_count, processor, receive_only, TestApp};

const DAY: Duration = Duration::from_secs(24 * 3600);

/// A daily event whose data cannot be decoded: it is parked, and keeps its body.
const BROKEN: &[u8] = br#"{"type":"daily","user":{"user_id":"u1"},"data":"not a list"}"#;

async fn status_of(pool: &PgPool, id: i64) -> (String, Option<String>, bool) {
    sqlx::query_as(
        "SELECT d.status, d.last_error, b.delivery_id IS NOT NULL OR k.delivery_id IS NOT NULL
         FROM terra.deliveries d
         LEFT JOIN terra.delivery_bodies b ON b.delivery_id = d.id
         LEFT JOIN terra.delivery_bodies_kept k ON k.delivery_id = d.id
         WHERE d.id = $1",
    )
    .bind(id)
    .fetch_one(pool)
    .await
    .unwrap()
}

async fn typed_rows(pool: &PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM terra.daily) + (SELECT count(*) FROM terra.sleep)
              + (SELECT count(*) FROM terra.sample_series)",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn prune_drops_processed_bodies_and_keeps_everything_else(pool: PgPool) {
    let app = TestApp::spawn_with(pool.clone(), receive_only()).await;
    let (daily, sleep) = (example("daily"), example("sleep"));
    for body in [&daily, &sleep] {
        assert_eq!(app.deliver(body.as_bytes(), &[]).await.status(), 200);
    }
    assert_eq!(app.deliver(BROKEN, &[]).await.status(), 200);
    processor(&pool).drain().await.unwrap();
    let waiting = example("body");
    assert_eq!(app.deliver(waiting.as_bytes(), &[]).await.status(), 200);
    let typed_before = typed_rows(&pool).await;
    assert!(typed_before > 0);
    assert_eq!(status_of(&pool, 3).await.0, "parked");

    // Three days from now, with one day of retention: today's partition is due.
    let later = Utc::now() + chrono::Duration::days(3);
    let report = terra_sink::ledger::prune(&pool, DAY, None, PruneShare::default(), later)
        .await
        .unwrap();
    assert!(report.partitions_dropped >= 1, "{report:?}");
    assert_eq!((report.bodies_removed, report.bodies_kept), (2, 2));
    assert_eq!(status_of(&pool, 1).await, ("done".to_owned(), None, false));
    assert!(
        status_of(&pool, 3).await.2,
        "a parked delivery keeps its body"
    );
    assert_eq!(
        typed_rows(&pool).await,
        typed_before,
        "typed rows are untouched"
    );
    let shown = terra_sink::ledger::get(&pool, 1).await.unwrap().unwrap();
    assert_eq!((shown.body, shown.body_size), (None, daily.len() as i32));

    // A redelivery of a pruned body is still a duplicate, not a new delivery.
    assert_eq!(app.deliver(daily.as_bytes(), &[]).await.status(), 200);
    assert_eq!(ledger_count(&pool).await, 4);
    // Redeliveries are counted just after the answer.
    eventually("the redelivery is counted", || async {
        let n: i32 = sqlx::query_scalar("SELECT duplicates FROM terra.deliveries WHERE id = 1")
            .fetch_one(&pool)
            .await
            .unwrap();
        n == 1
    })
    .await;

    // The waiting delivery is processed from its kept body; a pruned one cannot be replayed
    // and says why.
    let mut conn = pool.acquire().await.unwrap();
    let replay = terra_sink::ledger::Selection {
        ids: vec![2],
        ..Default::default()
    };
    terra_sink::ledger::requeue(&mut conn, &replay)
        .await
        .unwrap();
    drop(conn);
    processor(&pool).drain().await.unwrap();
    assert_eq!(status_of(&pool, 4).await, ("done".to_owned(), None, true));
    let (status, error, _) = status_of(&pool, 2).await;
    assert_eq!(status, "parked");
    assert!(error.unwrap().contains("removed by retention"));

    // The kept body goes once its delivery is processed.
    let report = terra_sink::ledger::prune(&pool, DAY, None, PruneShare::default(), later)
        .await
        .unwrap();
    assert_eq!(report.bodies_removed, 1, "{report:?}");
    assert!(!status_of(&pool, 4).await.2);
    assert!(status_of(&pool, 3).await.2);
    app.stop().await;
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn prune_keeps_recent_bodies(pool: PgPool) {
    let app = TestApp::spawn_with(pool.clone(), receive_only()).await;
    assert_eq!(
        app.deliver(example("daily").as_bytes(), &[]).await.status(),
        200
    );
    processor(&pool).drain().await.unwrap();
    let report = terra_sink::ledger::prune(&pool, DAY, None, PruneShare::default(), Utc::now())
        .await
        .unwrap();
    assert_eq!((report.partitions_dropped, report.bodies_removed), (0, 0));
    assert!(status_of(&pool, 1).await.2);
    app.stop().await;
}

/// A daily summary of `day` for u1 with `steps`.
fn daily_version(day: &str, steps: i64) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "type": "daily", "user": {"user_id": "u1", "provider": "GARMIN"},
        "data": [{"metadata": {"start_time": format!("{day}T00:00:00+00:00"),
                               "end_time": format!("{day}T23:59:59+00:00"), "upload_type": 1},
                  "distance_data": {"steps": steps}}]
    }))
    .unwrap()
}

async fn ledger_ids(pool: &PgPool) -> Vec<i64> {
    sqlx::query_scalar("SELECT id FROM terra.deliveries ORDER BY id")
        .fetch_all(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn prune_forgets_superseded_ledger_rows_after_the_dedupe_window(pool: PgPool) {
    let app = TestApp::spawn_with(pool.clone(), receive_only()).await;
    let (older, newer) = (
        daily_version("2026-07-01", 100),
        daily_version("2026-07-01", 200),
    );
    // The user's auth (1) is the ledger row its users row comes from; the versions (2, 3) and
    // the parked delivery (4) follow.
    let auth = serde_json::to_vec(&serde_json::json!({
        "type": "auth", "status": "success", "user": {"user_id": "u1", "provider": "GARMIN"}
    }))
    .unwrap();
    for (body, ts) in [
        (&auth[..], "1"),
        (&older[..], "2"),
        (&newer[..], "3"),
        (BROKEN, "4"),
    ] {
        let res = app
            .deliver(body, &[("x-terra-ordering-timestamp", ts)])
            .await;
        assert_eq!(res.status(), 200);
    }
    processor(&pool).drain().await.unwrap();
    let stored = || async {
        let row: (Option<i64>, i64) =
            sqlx::query_as("SELECT steps, event_id FROM terra.daily WHERE day = '2026-07-01'")
                .fetch_one(&pool)
                .await
                .unwrap();
        row
    };
    assert_eq!(stored().await, (Some(200), 3));
    let week = Some(7 * DAY);

    // Past the body retention but inside the window, every ledger row stays.
    let in_window = Utc::now() + chrono::Duration::days(3);
    let report = terra_sink::ledger::prune(&pool, DAY, week, PruneShare::default(), in_window)
        .await
        .unwrap();
    assert!(report.bodies_removed >= 2, "{report:?}");
    assert_eq!(report.ledger_rows_removed, 0);
    assert_eq!(ledger_ids(&pool).await, [1, 2, 3, 4]);

    // Past the window, the superseded version goes; the auth, the stored version's row and the
    // parked delivery stay.
    let past_window = Utc::now() + chrono::Duration::days(10);
    let report = terra_sink::ledger::prune(&pool, DAY, week, PruneShare::default(), past_window)
        .await
        .unwrap();
    assert_eq!(report.ledger_rows_removed, 1, "{report:?}");
    assert_eq!(ledger_ids(&pool).await, [1, 3, 4]);
    assert_eq!(stored().await, (Some(200), 3));

    // Redelivered after the window, the old version is a new delivery, and the overwrite rule
    // still keeps the newer record. (Pruning "ten days from now" dropped today's partition:
    // upkeep makes it again.)
    terra_sink::ledger::prepare_partitions(&pool).await.unwrap();
    let res = app
        .deliver(&older, &[("x-terra-ordering-timestamp", "2")])
        .await;
    assert_eq!(res.status(), 200);
    processor(&pool).drain().await.unwrap();
    assert_eq!(ledger_ids(&pool).await, [1, 3, 4, 5]);
    assert_eq!(stored().await, (Some(200), 3));
    app.stop().await;
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn every_reference_to_the_ledger_is_indexed(pool: PgPool) {
    // Removing a ledger row checks each referencing table: without an index, by a full scan.
    let unindexed: Vec<String> = sqlx::query_scalar(
        "WITH refs AS (
             SELECT c.conrelid AS rel, c.conkey[1] AS col
             FROM pg_constraint c
             WHERE c.contype = 'f' AND c.confrelid = 'terra.deliveries'::regclass
             UNION
             SELECT r.tab, (SELECT attnum FROM pg_attribute WHERE attrelid = r.tab AND attname = r.col)
             FROM terra.ledger_references() AS r
         )
         SELECT refs.rel::regclass::text || '.' || a.attname
         FROM refs JOIN pg_attribute a ON a.attrelid = refs.rel AND a.attnum = refs.col
         WHERE NOT EXISTS (SELECT 1 FROM pg_index i
                           WHERE i.indrelid = refs.rel AND i.indkey[0] = refs.col)
         ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(unindexed.is_empty(), "{unindexed:?}");
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn a_body_goes_with_its_ledger_row(pool: PgPool) {
    let app = TestApp::spawn_with(pool.clone(), receive_only()).await;
    for kind in ["daily", "sleep", "body"] {
        assert_eq!(
            app.deliver(example(kind).as_bytes(), &[]).await.status(),
            200
        );
    }
    let bodies = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT delivery_id FROM terra.delivery_bodies ORDER BY delivery_id",
        )
        .fetch_all(&pool)
        .await
        .unwrap()
    };
    assert_eq!(bodies().await, [1, 2, 3]);

    // Every path that removes ledger rows (forget, the delete policy, prune) deletes them.
    sqlx::query("DELETE FROM terra.deliveries WHERE id IN (1, 3)")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(bodies().await, [2]);
    assert!(status_of(&pool, 2).await.2);

    // Later deliveries are stored with their bodies as before.
    assert_eq!(
        app.deliver(example("activity").as_bytes(), &[])
            .await
            .status(),
        200
    );
    assert_eq!(bodies().await, [2, 4]);
    app.stop().await;
}
/// The first migration of the partitioned layout.
const PARTITIONED: i64 = 20261202000100;

#[sqlx::test(migrations = false)]
async fn migrating_a_populated_ledger_keeps_every_body(pool: PgPool) {
    let all = &terra_sink::database::MIGRATOR;
    let before = Migrator {
        migrations: Cow::Owned(
            all.migrations
                .iter()
                .filter(|m| m.version < PARTITIONED)
                .cloned()
                .collect(),
        ),
        ..Migrator::DEFAULT
    };
    before.run(&pool).await.unwrap();
    // 3,000 deliveries received over the last 90 days, some processed, with distinct bodies.
    sqlx::query(
        "INSERT INTO terra.deliveries
             (dedupe_key, received_at, body, body_sha256, body_size, shape, status)
         SELECT 'trace:' || i, now() - make_interval(hours => i * 18 / 25),
                convert_to('{\"type\":\"daily\",\"n\":' || i || '}', 'UTF8'),
                sha256(convert_to('{\"type\":\"daily\",\"n\":' || i || '}', 'UTF8')),
                length('{\"type\":\"daily\",\"n\":' || i || '}'), 'ok',
                CASE WHEN i % 3 = 0 THEN 'pending' ELSE 'done' END
         FROM generate_series(1, 3000) AS i",
    )
    .execute(&pool)
    .await
    .unwrap();
    let digest = "SELECT count(*), md5(string_agg(encode(body, 'hex'), ',' ORDER BY id))";
    let expected: (i64, String) = sqlx::query_as(&format!("{digest} FROM terra.deliveries"))
        .fetch_one(&pool)
        .await
        .unwrap();

    all.run(&pool).await.unwrap();
    let moved: (i64, String) = sqlx::query_as(&format!(
        "{digest} FROM terra.deliveries d
         JOIN terra.delivery_bodies b ON b.delivery_id = d.id AND b.received_at = d.received_at"
    ))
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(moved, expected);
    assert_eq!(moved.0, 3000);
    let partitions: i64 = sqlx::query_scalar("SELECT count(*) FROM terra.body_partitions")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(
        partitions >= 3 + 15,
        "months of history, then days: {partitions}"
    );

    // Thirty days of retention removes the processed bodies of whole months before the cutoff
    // and keeps every unprocessed one.
    let report =
        terra_sink::ledger::prune(&pool, 30 * DAY, None, PruneShare::default(), Utc::now())
            .await
            .unwrap();
    assert!(report.partitions_dropped >= 1, "{report:?}");
    let left: (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE d.status = 'pending'), count(*)
         FROM terra.deliveries d
         WHERE EXISTS (SELECT 1 FROM terra.delivery_bodies b WHERE b.delivery_id = d.id)
            OR EXISTS (SELECT 1 FROM terra.delivery_bodies_kept k WHERE k.delivery_id = d.id)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(left.0, 1000, "every pending delivery keeps its body");
    assert_eq!(left.1 as u64, 3000 - report.bodies_removed as u64);
    let recent_removed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM terra.deliveries d WHERE d.received_at > now() - interval '30 days'
           AND NOT EXISTS (SELECT 1 FROM terra.delivery_bodies b WHERE b.delivery_id = d.id)
           AND NOT EXISTS (SELECT 1 FROM terra.delivery_bodies_kept k WHERE k.delivery_id = d.id)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(recent_removed, 0, "nothing younger than the retention goes");
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn the_prune_command_takes_its_pace(pool: PgPool) {
    let dir = binary::scratch_dir("prune-share");
    let run = |share: &str| {
        binary::terra_sink(&dir)
            .env("DATABASE_URL", binary::database_url(&pool))
            .args(["prune", "--older-than", "30d", "--prune-share", share])
            .output()
            .unwrap()
    };
    let out = run("100%");
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("removed 0 bodies"), "{stdout}");

    let out = run("0%");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("from 1% to 100%"), "{stderr}");
}
