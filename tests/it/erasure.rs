//! Erasure of a person (`terra-sink forget`): nothing of theirs is left in any table, and what
//! Terra sends for them later is acknowledged and not stored until a newer `auth`.

use serde_json::Value;
use sqlx::PgPool;
use terra_sink::ForgetRequest;

use crate::helpers::binary::{database_url, output, scratch_dir, terra_sink};
use crate::helpers::{example, processor, receive_only, TestApp, DATA_EXAMPLES};

const ERASED: &str = "40f7b0e1-89e2-43ac-a5b8-1e29c8d47cad";
const KEPT: &str = "0000aaaa-kept-user";
/// The app's own id of the erased person (in the `auth` example).
const REFERENCE: &str = "your-user-123";
/// A value only the erased person's records carry.
const MARKER: &str = "erased-person-marker-7f3a";

/// `name`'s example for `user`; with `marker`, every record also carries [`MARKER`].
fn body_for(name: &str, user: &str, marker: bool) -> String {
    let mut text = example(name).replace(ERASED, user);
    if user != ERASED {
        text = text.replace(REFERENCE, "kept-reference");
    }
    let mut body: Value = serde_json::from_str(&text).unwrap();
    if marker {
        match &mut body["data"] {
            Value::Array(items) => items
                .iter_mut()
                .for_each(|item| item["marker"] = Value::from(MARKER)),
            item @ Value::Object(_) => item["marker"] = Value::from(MARKER),
            _ => {}
        }
    }
    body.to_string()
}

async fn send(app: &TestApp, body: &str, ordering_ts: Option<i64>) {
    let ts = ordering_ts.map(|t| t.to_string());
    let headers: Vec<(&str, &str)> = ts
        .iter()
        .map(|t| ("x-terra-ordering-timestamp", t.as_str()))
        .collect();
    let res = app.deliver(body.as_bytes(), &headers).await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
}

/// Every table of the `terra` schema (partitions included) with rows whose text holds `needle`
/// (as text, or as the hex of a raw body), and how many.
async fn tables_holding(pool: &PgPool, needle: &str) -> Vec<(String, i64)> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'terra' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
         ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert!(tables.len() >= 20, "every table is searched: {tables:?}");
    let mut found = Vec::new();
    for table in tables {
        let n: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM terra.{table} t
             WHERE strpos(t::text, $1) > 0 OR strpos(t::text, encode(convert_to($1, 'UTF8'), 'hex')) > 0"
        ))
        .bind(needle)
        .fetch_one(pool)
        .await
        .unwrap();
        if n > 0 {
            found.push((table, n));
        }
    }
    found
}

async fn typed_rows(pool: &PgPool, user: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM terra.daily WHERE user_id = $1)
              + (SELECT count(*) FROM terra.sleep WHERE user_id = $1)
              + (SELECT count(*) FROM terra.activity WHERE user_id = $1)
              + (SELECT count(*) FROM terra.sample_series WHERE user_id = $1)",
    )
    .bind(user)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// The erased person's whole history: an auth, data of every family, raw-record events, a
/// large request, a backfill window; another user's data beside it.
async fn deliver_history(app: &TestApp, pool: &PgPool) {
    send(app, &example("auth-authSuccess"), Some(1_000)).await;
    for name in DATA_EXAMPLES {
        send(app, &body_for(name, ERASED, true), Some(2_000)).await;
        send(app, &body_for(name, KEPT, false), Some(2_000)).await;
    }
    for name in ["large_request_processing", "large_request_sending"] {
        send(app, &example(name), Some(2_500)).await;
    }
    sqlx::query(
        "INSERT INTO terra.backfill_windows (user_id, data_type, start_date, end_date, status)
         VALUES ($1, 'daily', '2025-01-01', '2025-01-29', 'done')",
    )
    .bind(ERASED)
    .execute(pool)
    .await
    .unwrap();
    processor(pool).drain().await.unwrap();
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn forget_leaves_nothing_of_the_person_and_keeps_them_out(pool: PgPool) {
    let app = TestApp::spawn_with(pool.clone(), receive_only()).await;
    deliver_history(&app, &pool).await;
    assert!(typed_rows(&pool, ERASED).await > 0);
    let kept_before = typed_rows(&pool, KEPT).await;
    for needle in [ERASED, REFERENCE, MARKER] {
        assert!(!tables_holding(&pool, needle).await.is_empty(), "{needle}");
    }

    let forgotten = terra_sink::forget(
        &pool,
        &ForgetRequest {
            user_ids: vec![ERASED.to_owned()],
            ..ForgetRequest::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(forgotten.user_ids, vec![ERASED.to_owned()]);
    assert!(forgotten.rows_deleted > 20, "{forgotten:?}");
    assert_erased(&pool).await;
    assert_eq!(typed_rows(&pool, KEPT).await, kept_before);

    // Terra retries an old auth and data (new trace ids): acknowledged, not stored.
    send(&app, &example("auth-authSuccess"), Some(1_000)).await;
    send(&app, &body_for("daily", ERASED, true), Some(3_000)).await;
    send(&app, &body_for("sleep", ERASED, true), None).await;
    processor(&pool).drain().await.unwrap();
    assert_erased(&pool).await;

    // A newer auth connects the id again, and its data is stored from then on.
    let later = chrono::Utc::now().timestamp_millis() + 60_000;
    send(&app, &example("auth-authSuccess"), Some(later)).await;
    send(&app, &body_for("daily", ERASED, false), Some(later + 1)).await;
    processor(&pool).drain().await.unwrap();
    let status: String = sqlx::query_scalar("SELECT status FROM terra.users WHERE user_id = $1")
        .bind(ERASED)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(status, "connected");
    assert!(typed_rows(&pool, ERASED).await > 0);
    app.stop().await;
}

/// Only the tombstone names the person: their id, status `forgotten`, and the time.
async fn assert_erased(pool: &PgPool) {
    assert_eq!(
        tables_holding(pool, ERASED).await,
        vec![("users".to_owned(), 1)]
    );
    for needle in [REFERENCE, MARKER] {
        assert_eq!(tables_holding(pool, needle).await, vec![], "{needle}");
    }
    let (status, provider, reference, forgotten): (String, Option<String>, Option<String>, bool) =
        sqlx::query_as(
            "SELECT status, provider, reference_id, forgotten_at IS NOT NULL
             FROM terra.users WHERE user_id = $1",
        )
        .bind(ERASED)
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(
        (status.as_str(), provider, reference, forgotten),
        ("forgotten", None, None, true)
    );
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn forget_by_reference_id_from_the_command_line(pool: PgPool) {
    let app = TestApp::spawn_with(pool.clone(), receive_only()).await;
    deliver_history(&app, &pool).await;
    app.stop().await;
    let dir = scratch_dir("forget");
    let url = database_url(&pool);

    let (ok, stdout, stderr) = output(
        terra_sink(&dir)
            .args(["forget", "--reference-id", REFERENCE])
            .env("DATABASE_URL", &url),
    );
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains(&format!("forgot 1 user id(s): {ERASED}")),
        "{stdout}"
    );
    assert_erased(&pool).await;

    let (ok, _, stderr) = output(terra_sink(&dir).arg("forget").env("DATABASE_URL", &url));
    assert!(!ok);
    assert!(stderr.contains("--user-id"), "{stderr}");
    let (ok, _, stderr) = output(
        terra_sink(&dir)
            .args(["forget", "--reference-id", "nobody-has-this"])
            .env("DATABASE_URL", &url),
    );
    assert!(!ok);
    assert!(stderr.contains("nothing was deleted"), "{stderr}");
}
